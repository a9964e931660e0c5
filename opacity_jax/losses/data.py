"""Data losses on (possibly padded) batches; all reduce with a per-sample weight mask.

* mse:  mean (y_hat - y)^2.
* wmse: the thesis's gradient-weighted MSE (eq. 4): w_i = 1 + alpha |y_{i+1} - y_i| on the
  *target* spectrum, emphasising steep line edges (alpha = 50 there); the last bin reuses the
  last difference so every bin has a weight.
* msle: mean (log1p(y_hat) - log1p(y))^2 for non-negative quantities (cross-sections).
"""

from __future__ import annotations

import jax.numpy as jnp


def masked_mean(per_sample, weight):
    """Weighted mean of (B,) per-sample values; padding (weight 0) never contributes."""
    return jnp.sum(per_sample * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def gradient_weights(target, alpha: float = 50.0):
    """(..., nE) WMSE weights 1 + alpha |target_{i+1} - target_i| along the last axis."""
    d = jnp.abs(jnp.diff(target, axis=-1))
    d = jnp.concatenate([d, d[..., -1:]], axis=-1)
    return 1.0 + alpha * d


def mse(pred, target, weight, point_weight=None):
    """Masked MSE; pred/target (B, ...) ; weight (B,); optional point_weight like pred."""
    sq = (pred - target) ** 2
    if point_weight is not None:
        sq = sq * point_weight
    per = jnp.mean(sq.reshape(sq.shape[0], -1), axis=-1)
    return masked_mean(per, weight)


def wmse(pred, target, weight, alpha: float = 50.0):
    """Masked gradient-weighted MSE (thesis eq. 4) over spectra (B, nE)."""
    return mse(pred, target, weight, gradient_weights(target, alpha))


def msle(pred, target, weight):
    """Masked mean squared log error for non-negative pred/target (B, ...)."""
    return mse(jnp.log1p(jnp.maximum(pred, 0.0)), jnp.log1p(jnp.maximum(target, 0.0)), weight)


DATA_LOSSES = {"mse": mse, "wmse": wmse, "msle": msle}


def get_data_loss(name: str):
    """Data loss by name; ValueError naming the allowed names otherwise."""
    if name not in DATA_LOSSES:
        raise ValueError(f"unknown data loss {name!r}; allowed: {sorted(DATA_LOSSES)}")
    return DATA_LOSSES[name]
