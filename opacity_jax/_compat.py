"""Small shims over JAX APIs that moved between the supported releases (jax 0.5 - 0.11)."""

import contextlib

import jax


def enable_x64():
    """Context manager enabling float64 in JAX inside a `with` block only."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax import experimental  # older releases
    return experimental.enable_x64()


@contextlib.contextmanager
def nullcontext():
    yield
