"""Serving: load trained workdirs and answer queries, without importing the trainer.

    from opacity_jax.serve import Surrogate
    s = Surrogate.load("runs/cae")

Modules: `surrogate` (opacity spectra and means, `Surrogate`), `xsec` (cross-section nets,
`XsecSurrogate`), `inverse` (spectrum -> element, T, rho, Zbar, `InverseModel`), `pipeline`
(fused jit'd device pipeline, `DevicePipeline`), `trees` (XGBoost boosters as JAX functions),
`export` (StableHLO / serialized artifacts), `predict` (text tables of predictions).
"""

from opacity_jax.serve.inverse import InverseModel
from opacity_jax.serve.pipeline import DevicePipeline
from opacity_jax.serve.surrogate import Surrogate
from opacity_jax.serve.xsec import XsecSurrogate

__all__ = ["DevicePipeline", "InverseModel", "Surrogate", "XsecSurrogate"]
