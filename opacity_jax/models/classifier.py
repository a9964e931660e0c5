"""Multitask convolutional classifier for the inverse problem spectrum -> (element, T, rho, Zbar).

Thesis Table 3 (§2.4): a 200-bin cube-root-scaled spectrum goes through 4 x Conv1D (kernel 5,
ReLU) 1 -> 16 -> 32 -> 64 -> 128 with strides 2, 2, 2, 5 ('SAME' padding: 200 -> 100 -> 50 ->
25 -> 5 positions), is flattened (128 x 5 = 640) and projected to a 128-d ReLU latent. Linear heads
read the latent: element logits (softmax over the dataset's elements), log10 T, log10 rho and the
mean ionic charge Zbar (the last added for the Saha loss of §4.4.2).

Attention variant (thesis §4.4.1, `encoder='attention'`): the same convolutions, but after the
first `attention_at` of them (default 3: 25 segments of 64 channels, each segment covering 8 bins)
`attention_blocks` pre-LayerNorm transformer blocks (multi-head self-attention + MLP, residual,
learned positional embedding) let every segment weigh the whole spectrum before the remaining
convolution(s) and the dense latent. The conv variant is the special case of zero blocks.

The regression heads are trained on standardised targets; the module de-standardises them with
the `target_mean` / `target_std` fields, so its outputs are physical and the module is
self-contained for inference.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

ENCODERS = ("conv", "attention")
# Order of the regression targets in target_mean / target_std.
TARGETS = ("log10_t", "log10_rho", "zbar")


class AttentionBlock(nn.Module):
    """Pre-LN transformer block over segments: (B, L, C) -> (B, L, C)."""

    n_heads: int = 4
    mlp_ratio: int = 2
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, train: bool = False):
        c = h.shape[-1]
        a = nn.LayerNorm()(h)
        a = nn.MultiHeadDotProductAttention(num_heads=self.n_heads, qkv_features=c,
                                            dropout_rate=self.dropout,
                                            deterministic=not train)(a, a)
        h = h + a
        m = nn.LayerNorm()(h)
        m = nn.Dense(self.mlp_ratio * c)(m)
        m = nn.Dense(c)(nn.gelu(m))
        if self.dropout > 0:
            m = nn.Dropout(self.dropout, deterministic=not train)(m)
        return h + m


class MultitaskClassifier(nn.Module):
    """x (B, nE) scaled spectra (or (B, nE, C) channels) -> dict of per-spectrum predictions.

    Outputs (all (B,) unless noted): 'logits' (B, n_classes), 'log10_t' [log10 eV], 't_ev' [eV],
    'log10_rho' [log10 g/cm^3], 'zbar' [elementary charges], 'latent' (B, latent_dim) and the
    standardised head values 'std_log10_t', 'std_log10_rho', 'std_zbar' (what the data loss
    compares). With `density_uncertainty`, a fourth linear head gives the predicted spread of
    log10 rho: 'log10_rho_sigma' [dex] and 'std_log_sigma_rho' (ln sigma, standardised units).
    nE must be divisible by prod(strides) (40 for the thesis strides).
    """

    n_classes: int = 28
    channels: Sequence[int] = (16, 32, 64, 128)
    strides: Sequence[int] = (2, 2, 2, 5)
    kernel: int = 5
    latent_dim: int = 128
    encoder: str = "conv"
    attention_at: int = 3
    attention_blocks: int = 1
    attention_heads: int = 4
    dropout: float = 0.0
    target_mean: Sequence[float] = (0.0, 0.0, 0.0)
    target_std: Sequence[float] = (1.0, 1.0, 1.0)
    density_uncertainty: bool = False

    def _check(self, n_bins: int):
        if self.encoder not in ENCODERS:
            raise ValueError(f"classifier encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if len(self.channels) != len(self.strides):
            raise ValueError(f"channels {tuple(self.channels)} and strides {tuple(self.strides)} "
                             "must have the same length")
        total = 1
        for s in self.strides:
            total *= int(s)
        if n_bins % total:
            raise ValueError(f"classifier needs n_bins divisible by prod(strides) = {total}, "
                             f"got {n_bins}")
        if self.encoder == "attention" and not 1 <= self.attention_at <= len(self.channels):
            raise ValueError(f"attention_at must lie in 1..{len(self.channels)}, "
                             f"got {self.attention_at}")

    @nn.compact
    def __call__(self, x, train: bool = False):
        # (B, nE) single-channel spectra or (B, nE, C) multi-channel inputs.
        h = x[..., None] if x.ndim == 2 else x
        self._check(h.shape[1])
        for i, (c, s) in enumerate(zip(self.channels, self.strides)):
            if self.encoder == "attention" and i == self.attention_at:
                h = self._attend(h, train)
            h = nn.relu(nn.Conv(int(c), (self.kernel,), strides=(int(s),), padding="SAME")(h))
        if self.encoder == "attention" and self.attention_at == len(self.channels):
            h = self._attend(h, train)
        z = nn.relu(nn.Dense(self.latent_dim)(h.reshape(h.shape[0], -1)))
        if self.dropout > 0:
            z = nn.Dropout(self.dropout, deterministic=not train)(z)
        logits = nn.Dense(self.n_classes, name="element_head")(z)
        n_out = len(TARGETS) + (1 if self.density_uncertainty else 0)
        std = nn.Dense(n_out, name="regression_heads")(z)   # one linear map per target
        mean = jnp.asarray(self.target_mean, std.dtype)
        scale = jnp.asarray(self.target_std, std.dtype)
        phys = mean + scale * std[:, :len(TARGETS)]
        out = {"logits": logits, "latent": z,
               "log10_t": phys[:, 0], "log10_rho": phys[:, 1], "zbar": phys[:, 2],
               "std_log10_t": std[:, 0], "std_log10_rho": std[:, 1], "std_zbar": std[:, 2]}
        out["t_ev"] = 10.0 ** out["log10_t"]
        if self.density_uncertainty:
            # ln sigma of the standardised log10 rho, kept in a range where exp() is tame.
            out["std_log_sigma_rho"] = jnp.clip(std[:, 3], -7.0, 3.0)
            out["log10_rho_sigma"] = scale[1] * jnp.exp(out["std_log_sigma_rho"])
        return out

    def _attend(self, h, train):
        # Learned positional embedding: attention alone is permutation-invariant, but an
        # energy segment's position is what identifies it.
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), h.shape[1:])
        h = h + pos
        for _ in range(self.attention_blocks):
            h = AttentionBlock(n_heads=self.attention_heads, dropout=self.dropout)(h, train)
        return h
