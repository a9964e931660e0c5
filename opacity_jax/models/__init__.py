"""Model families, one module each (flax linen: params are a pytree, apply is pure)."""
