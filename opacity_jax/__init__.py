"""opacity_jax: JAX/Flax surrogates that reconstruct incomplete opacity and cross-section tables."""

__version__ = "0.1.0"

from opacity_jax import _moved

_moved.install()
