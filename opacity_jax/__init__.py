"""opacity_jax: JAX/Flax surrogates that reconstruct incomplete opacity and cross-section tables."""

__version__ = "0.1.0"
