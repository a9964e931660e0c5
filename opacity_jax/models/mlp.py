"""The one multilayer perceptron, and the named variants the families use.

`MLP` (B, n_in) -> (B, n_out): Dense hidden layers with ReLU or SiLU, optional dropout, a linear
output, optionally a scalar output (B,) and a second, log-variance head. The variants only set
defaults, so their parameter trees are the same as the MLP's (Dense_0 ... Dense_n in creation
order) and checkpoints of either load into the other.

- `FCNN` (thesis FC-NN): standardized (log E, log T, log rho) -> scaled kappa (B,), 4 x 512 ReLU.
- `SmoothMLP`: SiLU, smooth in its inputs, so interpolation is smooth (active learning).
- `GaussianMLP`: SiLU with a mean and a clipped log-variance head (deep ensembles, completion).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "silu": nn.silu}


class MLP(nn.Module):
    """MLP (B, n_in) -> (B, n_out).

    hidden: widths of the hidden layers; activation: 'relu' or 'silu'; dropout: rate after each
    hidden layer (active with train=True and a 'dropout' rng); scalar_output: return (B,) for
    n_out = 1; gaussian: also return a log-variance head, clipped to [min_log_var,
    max_log_var] so a Gaussian NLL cannot run away on points it fits exactly, as (mu, log_var).
    """

    hidden: Sequence[int] = (64, 64)
    n_out: int = 16
    activation: str = "relu"
    dropout: float = 0.0
    scalar_output: bool = False
    gaussian: bool = False
    min_log_var: float = -16.0
    max_log_var: float = 12.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLP activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        act = ACTIVATIONS[self.activation]
        h = x
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        out = nn.Dense(self.n_out)(h)
        if self.gaussian:
            log_var = jnp.clip(nn.Dense(self.n_out)(h), self.min_log_var, self.max_log_var)
            return out, log_var
        return out[..., 0] if self.scalar_output else out


class FCNN(MLP):
    """Thesis FC-NN: (B, 3) standardized (log E, log T, log rho) -> (B,) scaled kappa; ReLU."""

    hidden: Sequence[int] = (512, 512, 512, 512)
    n_out: int = 1
    scalar_output: bool = True


class SmoothMLP(MLP):
    """SiLU MLP (B, n_in) -> (B, n_out): smooth in its inputs, so interpolation is smooth."""

    hidden: Sequence[int] = (64, 64, 64)
    n_out: int = 40
    activation: str = "silu"


class GaussianMLP(MLP):
    """SiLU MLP with a mean and a log-variance head: (B, n_in) -> ((B, n_out), (B, n_out))."""

    hidden: Sequence[int] = (128, 128, 128)
    n_out: int = 1
    activation: str = "silu"
    gaussian: bool = True
