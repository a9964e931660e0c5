"""The whole surrogate as one jit'd device function: (element, T, rho) -> kappa(E) and means.

    pipe = Surrogate.load("runs/cae", regressor="xgboost").device_pipeline()
    out = pipe("Nd", [0.3, 1.0], [1e-13, 1e-12])
    out["kappa"]      # (2, nE) cm^2/g
    out["planck"]     # (2,) band-limited Planck mean, cm^2/g
    out["rosseland"]  # (2,) band-limited Rosseland mean, cm^2/g

Stages, all inside one `jax.jit` (no host round trip): standardized features (log10 T, log10 rho)
-> latent code (the latent MLP, or the element's XGBoost ensemble as an exact lookup table from
`opacity_jax.models.trees`) -> the element's CAE decoder -> inverse scaling -> kappa -> Planck and
Rosseland means (`opacity_jax.physics.planck`). The element is a traced int32 position on the
model's element axis, so one compilation serves every element. `DevicePipeline.apply` is the pure
function `(params, element_pos, t, r) -> dict`, the form that `jax.export`, sharded inference
(`opacity_jax.distributed`) and the benchmark use; calling the object validates the query on the
host first (domain, element) as `Surrogate` does.

bf16: `dtype=jnp.bfloat16` runs the latent MLP and the decoder with bf16 parameters and
activations (the tree table, the inverse scaling and the Planck/Rosseland weights stay float32,
whose softmax would lose the Wien tail in bf16).
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.data import grid as _grid
from opacity_jax.data import transforms
from opacity_jax.models.cae import CAE
from opacity_jax.models.mlp import MLP
from opacity_jax.physics import planck
from opacity_jax.models import trees as trees_lib
from opacity_jax.serve.envelope import nan_rows

# Standardized-feature tolerance for ties at tree thresholds (see trees.lookup): float32 on the
# device moves a grid-node feature by a few 1e-7, grid nodes are >= 0.05 apart in these units.
NODE_TOL = 1e-5


def _take(tree, e):
    return jax.tree_util.tree_map(lambda a: a[e], tree)


class DevicePipeline:
    """One jit'd (element, T, rho) -> kappa, Planck/Rosseland function (see module docstring).

    Build with `Surrogate.device_pipeline()` / `DevicePipeline.from_surrogate` (trained) or
    `DevicePipeline.random` (random weights of a given size, for benchmarks).

    Attributes:
      params: pytree of device arrays; leading axis nZ for per-element leaves.
      regressor: 'mlp' or 'xgboost'; dtype: decoder/MLP compute dtype;
      elements: (nZ,) atomic numbers; energy_edges_ev: (nE + 1,) [eV].
    """

    def __init__(self, *, cae: CAE, params: dict, regressor: str, energy_edges_ev,
                 scaling_name: str, scaling_eps: float, elements, mlp: Optional[MLP] = None,
                 dtype=jnp.float32, node_tol: float = NODE_TOL,
                 validate: Optional[Callable] = None, scaling_floor_decades: float = 0.0):
        if regressor not in ("mlp", "xgboost"):
            raise ValueError(f"device pipeline regressor must be 'mlp' or 'xgboost', "
                             f"got {regressor!r}")
        if scaling_name not in ("cbrt", "log"):
            raise ValueError(f"unknown spectrum scaling {scaling_name!r}")
        self.cae, self.mlp, self.regressor = cae, mlp, regressor
        self.dtype = jnp.dtype(dtype)
        self.node_tol = float(node_tol)
        self.scaling_name, self.scaling_eps = scaling_name, float(scaling_eps)
        self.scaling_floor_decades = float(scaling_floor_decades)
        self.energy_edges_ev = np.asarray(energy_edges_ev, np.float64)
        self.elements = np.asarray(elements, np.int32)
        self._validate = validate
        self._source_params = params   # uncast, so with_dtype never round-trips through bf16
        cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, self.dtype), t)
        p = dict(params)
        p["cae"] = cast(p["cae"])
        if regressor == "mlp":
            p["latent"] = cast(p["latent"])
        self.params = p
        self._jit = jax.jit(self.apply)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_surrogate(cls, s, dtype=jnp.float32, node_tol: float = NODE_TOL) -> "DevicePipeline":
        """The pipeline of a loaded `Surrogate` (CAE model, its current latent regressor)."""
        if s.meta["model"] != "cae":
            raise ValueError(f"the device pipeline needs a CAE surrogate, got {s.meta['model']!r}")
        if s.physics_features is not None:
            raise ValueError("the device pipeline takes (log10 T, log10 rho) inputs; this "
                             "surrogate was trained with latent.physics_features (serve it with "
                             "Surrogate.spectrum)")
        if s.regressor == "xgboost":
            boosters, best = s._boosters
            latent = trees_lib.stack_tables([
                trees_lib.TreeTable.from_booster(boosters[int(z)], best[int(z)])
                for z in s.elements])
        else:
            if s.members != 1:
                raise ValueError(f"the device pipeline serves one latent MLP; this surrogate "
                                 f"holds a {s.members}-member ensemble (load it with "
                                 f"ensemble=False)")
            latent = jax.tree_util.tree_map(lambda a: a[0], s._params["mlp"])
        params = {"cae": s._params["cae"], "latent": latent, "x_mean": s._x_mean,
                  "x_std": s._x_std, "z_mean": s._z_mean, "z_std": s._z_std, "scale": s._scale,
                  "shift": s._shift}
        return cls(cae=s._cae, mlp=getattr(s, "_mlp", None), params=params,
                   regressor=s.regressor, energy_edges_ev=s.energy_edges_ev,
                   scaling_name=s.scaling.name, scaling_eps=s.scaling.eps, elements=s.elements,
                   dtype=dtype, node_tol=node_tol, validate=s,
                   scaling_floor_decades=s.scaling.floor_decades)

    @classmethod
    def random(cls, n_elements: int = 28, n_bins: int = 200, latent_dim: int = 16,
               channels=(32, 64, 128), kernel: int = 5, strides=(), mlp_hidden=(64, 64),
               regressor: str = "mlp", n_thresholds=(26, 16), dtype=jnp.float32,
               seed: int = 0) -> "DevicePipeline":
        """Random weights of the given architecture (throughput does not depend on them).

        n_thresholds: (n0, n1) split thresholds per feature of the random tree tables (the
        NIST-LANL grid's 27 x 17 nodes give at most 26 x 16).
        """
        key = jax.random.key(seed)
        k_cae, k_mlp, k_tab = jax.random.split(key, 3)
        cae = CAE(n_bins=n_bins, latent_dim=latent_dim, channels=tuple(channels), kernel=kernel,
                  strides=tuple(strides))
        keys = jax.random.split(k_cae, n_elements)
        # jit: an eager vmap'd init dispatches (and compiles) every op separately.
        cae_p = jax.jit(jax.vmap(lambda k: cae.init(k, jnp.zeros((1, n_bins)))))(keys)
        mlp = None
        if regressor == "mlp":
            mlp = MLP(hidden=tuple(mlp_hidden), n_out=latent_dim)
            latent = jax.jit(jax.vmap(lambda k: mlp.init(k, jnp.zeros((1, 2)))))(
                jax.random.split(k_mlp, n_elements))
        else:
            rng = np.random.default_rng(seed)
            tabs = [trees_lib.TreeTable(
                np.sort(rng.uniform(-2, 2, n_thresholds[0])).astype(np.float32),
                np.sort(rng.uniform(-2, 2, n_thresholds[1])).astype(np.float32),
                rng.normal(size=(n_thresholds[0] + 1, n_thresholds[1] + 1, latent_dim))
                .astype(np.float32)) for _ in range(n_elements)]
            latent = trees_lib.stack_tables(tabs)
        params = {"cae": cae_p, "latent": latent,
                  "x_mean": jnp.asarray([np.log10(0.3), -10.0], jnp.float32),
                  "x_std": jnp.asarray([1.0, 3.0], jnp.float32),
                  "z_mean": jnp.zeros((n_elements, latent_dim), jnp.float32),
                  "z_std": jnp.ones((n_elements, latent_dim), jnp.float32),
                  "scale": jnp.ones((n_elements,), jnp.float32),
                  "shift": jnp.zeros((n_elements,), jnp.float32)}
        return cls(cae=cae, mlp=mlp, params=params, regressor=regressor,
                   energy_edges_ev=_grid.energy_edges_ev(n_bins), scaling_name="cbrt",
                   scaling_eps=1e-10, elements=np.arange(57, 57 + n_elements), dtype=dtype)

    def with_dtype(self, dtype) -> "DevicePipeline":
        """The same pipeline computing the MLP/decoder in `dtype` (e.g. jnp.bfloat16)."""
        return DevicePipeline(cae=self.cae, params=self._source_params, regressor=self.regressor,
                              energy_edges_ev=self.energy_edges_ev, scaling_name=self.scaling_name,
                              scaling_eps=self.scaling_eps, elements=self.elements, mlp=self.mlp,
                              dtype=dtype, node_tol=self.node_tol, validate=self._validate,
                              scaling_floor_decades=self.scaling_floor_decades)

    # -- pure stages (jit/vmap/export-able) ---------------------------------------------------
    @staticmethod
    def features(params, t, r):
        """(N,) T [eV], (N,) rho [g/cm^3] -> (N, 2) standardized (log10 T, log10 rho), float32."""
        x = jnp.stack([jnp.log10(t.astype(jnp.float32)), jnp.log10(r.astype(jnp.float32))], -1)
        return (x - params["x_mean"]) / params["x_std"]

    def latent(self, params, element, t, r):
        """Standardized latent codes (N, latent_dim) float32 of element position `element`."""
        x = self.features(params, t, r)
        if self.regressor == "xgboost":
            return trees_lib.lookup(params["latent"], element, x, self.node_tol)
        out = self.mlp.apply(_take(params["latent"], element), x.astype(self.dtype))
        return out.astype(jnp.float32)

    def decode(self, params, element, z_std):
        """(N, latent_dim) standardized codes -> (N, nE) scaled spectra (float32)."""
        z = z_std * params["z_std"][element] + params["z_mean"][element]
        p = _take(params["cae"], element)
        y = self.cae.apply(p, z.astype(self.dtype), method=self.cae.decode)
        return y.astype(jnp.float32)

    def to_kappa(self, params, element, y):
        """(N, nE) scaled spectra -> kappa [cm^2/g], the inverse of the training scaling
        (`transforms.inverse_spectrum_scaling`: > 0 for floored 'log' targets)."""
        return transforms.inverse_spectrum_scaling(
            y, self.scaling_name, self.scaling_eps, self.scaling_floor_decades,
            params["scale"][element], params["shift"][element])

    def apply(self, params, element, t, r):
        """The fused pipeline (pure; no validation).

        Args:
          params: `self.params` (or a cast/sharded copy). element: int32 scalar position on
            the element axis (traced). t: (N,) temperature [eV]; r: (N,) density [g/cm^3].
        Returns:
          {'kappa': (N, nE) cm^2/g, 'planck': (N,) cm^2/g, 'rosseland': (N,) cm^2/g}, float32.
        """
        t = t.astype(jnp.float32)
        y = self.decode(params, element, self.latent(params, element, t, r))
        kappa = self.to_kappa(params, element, y)
        return {"kappa": kappa,
                "planck": planck.planck_mean(kappa, self.energy_edges_ev, t),
                "rosseland": planck.rosseland_mean(kappa, self.energy_edges_ev, t)}

    def apply_all(self, params, t, r):
        """Every element at once: (N,) T, (N,) rho -> dict of (nZ, N, ...) arrays."""
        pos = jnp.arange(self.elements.size, dtype=jnp.int32)
        return jax.vmap(lambda e: self.apply(params, e, t, r))(pos)

    # -- host-side convenience ----------------------------------------------------------------
    def element_position(self, element) -> int:
        """Position of a symbol / Z on the element axis (ValueError if not served)."""
        if self._validate is not None:
            return self._validate.element_position(element)
        z = int(element)
        hits = np.nonzero(self.elements == z)[0]
        if hits.size != 1:
            raise ValueError(f"element {element!r} not in {self.elements.tolist()}")
        return int(hits[0])

    def __call__(self, element, temperature_ev, density_gcc) -> dict:
        """Validated query: element symbol or Z; T (N,) [eV], rho (N,) [g/cm^3] (scalars
        broadcast) -> {'kappa': (N, nE), 'planck': (N,), 'rosseland': (N,)} numpy float32."""
        if self._validate is not None:
            # the surrogate's domain and validity-envelope policy (outside=)
            pos, t, r, nan = self._validate.check_query(element, temperature_ev, density_gcc)
        else:
            pos = self.element_position(element)
            t, r = np.broadcast_arrays(np.atleast_1d(temperature_ev), np.atleast_1d(density_gcc))
            nan = np.zeros(t.shape, bool)
        out = self._jit(self.params, jnp.int32(pos), jnp.asarray(t, jnp.float32),
                        jnp.asarray(r, jnp.float32))
        return {k: nan_rows(np.asarray(v), nan) for k, v in out.items()}

    @functools.cached_property
    def n_bins(self) -> int:
        """Number of energy bins nE."""
        return int(self.energy_edges_ev.size - 1)
