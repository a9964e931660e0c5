"""Convolutional autoencoder for binned opacity spectra (thesis Table 1, made consistent).

Encoder: 3 x Conv1D (kernel 5, stride 2, 'SAME') 32 -> 64 -> 128 takes 200 bins to 128 x 25,
flattened (3200) -> Dense -> 16-d latent. Decoder mirrors it: Dense -> 128 x 25, transposed
convolutions 64 -> 32 -> 1 (kernel 5, stride 2) back to 200 bins. (The thesis's "128 x 5" and
"12825" are slips for 128 x 25 = 3200.) ~0.21 M parameters at 200 bins.
Any input length divisible by 2^len(channels) works.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class CAE(nn.Module):
    """x (B, nE) scaled spectrum -> reconstruction (B, nE); `encode`/`decode` for the latent."""

    n_bins: int = 200
    latent_dim: int = 16
    channels: Sequence[int] = (32, 64, 128)
    kernel: int = 5

    def setup(self):
        stride = 2 ** len(self.channels)
        if self.n_bins % stride:
            raise ValueError(f"CAE needs n_bins divisible by {stride}, got {self.n_bins}")
        self.enc = [nn.Conv(c, (self.kernel,), strides=(2,), padding="SAME")
                    for c in self.channels]
        self.to_latent = nn.Dense(self.latent_dim)
        self._len = self.n_bins // stride
        self.from_latent = nn.Dense(self._len * self.channels[-1])
        outs = list(self.channels[:-1])[::-1] + [1]
        self.dec = [nn.ConvTranspose(c, (self.kernel,), strides=(2,), padding="SAME")
                    for c in outs]

    def encode(self, x):
        """(B, nE) -> (B, latent_dim)."""
        h = x[..., None]
        for conv in self.enc:
            h = nn.relu(conv(h))
        return self.to_latent(h.reshape(h.shape[0], -1))

    def decode(self, z):
        """(B, latent_dim) -> (B, nE)."""
        h = nn.relu(self.from_latent(z)).reshape(z.shape[0], self._len, self.channels[-1])
        for i, conv in enumerate(self.dec):
            h = conv(h)
            if i < len(self.dec) - 1:
                h = nn.relu(h)
        return h[..., 0]

    def __call__(self, x, train: bool = False):
        return self.decode(self.encode(x))
