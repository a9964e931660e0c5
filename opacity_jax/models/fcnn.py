"""Fully connected network (thesis FC-NN): standardized (E, T, rho) -> scaled kappa."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class FCNN(nn.Module):
    """MLP with ReLU hidden layers and a linear scalar output.

    Input (B, n_features) standardized features (log E, log T, log rho); output (B,) scaled kappa.
    Thesis: 4 x 512.
    """

    hidden: Sequence[int] = (512, 512, 512, 512)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = x
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(1)(h)[..., 0]


class MLP(nn.Module):
    """Generic MLP (B, n_in) -> (B, n_out); ReLU hidden layers, linear output."""

    hidden: Sequence[int] = (64, 64)
    n_out: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = x
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.n_out)(h)
