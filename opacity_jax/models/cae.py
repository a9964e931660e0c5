"""Convolutional autoencoder for binned opacity spectra (thesis Table 1, made consistent).

Encoder: 3 x Conv1D (kernel 5, stride 2, 'SAME') 32 -> 64 -> 128 takes 200 bins to 128 x 25,
flattened (3200) -> Dense -> 16-d latent. Decoder mirrors it: Dense -> 128 x 25, transposed
convolutions 64 -> 32 -> 1 (kernel 5, stride 2) back to 200 bins. (The thesis's "128 x 5" and
"12825" are slips for 128 x 25 = 3200.) ~0.21 M parameters at 200 bins.
Any input length divisible by 2^len(channels) works.

Full resolution (>= 14,900 points, e.g. 15000 bins; configs/cae_fullres.py): `strides` sets one
stride per encoder stage (the decoder mirrors them), so a deeper, more aggressively strided
encoder keeps the flattened size small: channels (16, 32, 64, 128, 128) with strides
(5, 5, 5, 3, 2) take 15000 bins to 128 x 20 (2560) with 0.36 M parameters per element, and the
widest activation (16 x 3000 after the first stage) is 3.2x the input instead of 16x at
stride 2 / 32 channels. `dtype=jnp.bfloat16` (config `cae.dtype = "bfloat16"`) computes
activations in bf16 with float32 parameters (halves activation memory); outputs are float32.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class CAE(nn.Module):
    """x (B, nE) scaled spectrum -> reconstruction (B, nE); `encode`/`decode` for the latent."""

    n_bins: int = 200
    latent_dim: int = 16
    channels: Sequence[int] = (32, 64, 128)
    kernel: int = 5
    strides: Sequence[int] = ()   # one per encoder stage; () = all 2 (the thesis CAE)
    dtype: Any = None             # activation dtype (None = that of the float32 params)

    def _strides(self):
        st = tuple(int(s) for s in self.strides) or (2,) * len(self.channels)
        if len(st) != len(self.channels) or min(st) < 1:
            raise ValueError(f"CAE strides {st} must give one stride >= 1 per channel stage "
                             f"{tuple(self.channels)}")
        return st

    def setup(self):
        strides = self._strides()
        stride = math.prod(strides)
        if self.n_bins % stride:
            raise ValueError(f"CAE needs n_bins divisible by {stride}, got {self.n_bins}")
        self.enc = [nn.Conv(c, (self.kernel,), strides=(s,), padding="SAME", dtype=self.dtype)
                    for c, s in zip(self.channels, strides)]
        self.to_latent = nn.Dense(self.latent_dim, dtype=self.dtype)
        self._len = self.n_bins // stride
        self.from_latent = nn.Dense(self._len * self.channels[-1], dtype=self.dtype)
        outs = list(self.channels[:-1])[::-1] + [1]
        self.dec = [nn.ConvTranspose(c, (self.kernel,), strides=(s,), padding="SAME",
                                     dtype=self.dtype)
                    for c, s in zip(outs, strides[::-1])]

    def encode(self, x):
        """(B, nE) -> (B, latent_dim)."""
        h = x[..., None]
        for conv in self.enc:
            h = nn.relu(conv(h))
        z = self.to_latent(h.reshape(h.shape[0], -1))
        return z if self.dtype is None else z.astype(jnp.float32)

    def decode(self, z):
        """(B, latent_dim) -> (B, nE)."""
        h = nn.relu(self.from_latent(z)).reshape(z.shape[0], self._len, self.channels[-1])
        for i, conv in enumerate(self.dec):
            h = conv(h)
            if i < len(self.dec) - 1:
                h = nn.relu(h)
        return h[..., 0] if self.dtype is None else h[..., 0].astype(jnp.float32)

    def __call__(self, x, train: bool = False):
        return self.decode(self.encode(x))

    def to_meta(self) -> dict:
        """The architecture as model.json's 'cae' entry (the activation dtype is a training
        choice and is not stored: loaders compute in float32)."""
        return {"latent_dim": self.latent_dim, "channels": list(self.channels),
                "kernel": self.kernel, "n_bins": self.n_bins, "strides": list(self.strides)}

    @classmethod
    def from_meta(cls, c, dtype=None) -> "CAE":
        """The CAE of a model.json 'cae' entry (or a config's `cae` section plus 'n_bins');
        workdirs written before 'strides' was recorded get the default (all 2)."""
        return cls(n_bins=int(c["n_bins"]), latent_dim=int(c["latent_dim"]),
                   channels=tuple(c["channels"]), kernel=int(c["kernel"]),
                   strides=tuple(c.get("strides", ())), dtype=dtype)


def activation_dtype(name: str):
    """Config string -> CAE `dtype`: 'float32' -> None (the default), 'bfloat16' -> bf16."""
    table = {"float32": None, "bfloat16": jnp.bfloat16}
    if name not in table:
        raise ValueError(f"cae.dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]
