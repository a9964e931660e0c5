"""Serving the Saha-structured surrogate (`model.json["model"] == "stage_basis"`).

    s = StageBasisSurrogate.load("runs/sb")           # or opacity_jax.surrogate.Surrogate.load
    kappa = s.spectrum("Nd", [0.3, 1.0], [1e-13, 1e-12])   # (2, nE) cm^2/g, float64
    kp = s.planck_mean("Nd", 0.3, 1e-13)
    dk_dt, dk_drho = s.derivatives("Nd", 0.3, 1e-13)

The model is evaluated in log space (ln kappa never underflows, so no bin is ever an exact zero
unless exp(ln kappa) underflows float64); spectra are returned in float64. Large queries run in
chunks of `chunk` points (bounded memory). Queries outside the training domain raise DomainError;
outside the validity envelope they follow `outside=` (`opacity_jax.serve.envelope`).
Nothing here imports the trainer.
"""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax import _compat
from opacity_jax.data import grid as _grid
from opacity_jax.errors import CheckpointError, check_domain
from opacity_jax.models import stage_basis as sb
from opacity_jax.physics import elements as _el
from opacity_jax.physics import planck
from opacity_jax.serve import envelope as envelope_lib
from opacity_jax.serve.chunks import DEFAULT_CHUNK, check_chunk, map_chunks
from opacity_jax.serve.envelope import nan_rows, query_check
from opacity_jax.train import workdir as workdir_lib

MODEL_NAME = "stage_basis"
TABLES_FILE = "stage_basis_tables.npz"
REQUIRED_KEYS = ["elements", "energy_edges_ev", "domain"] + [   # model.json, checked on load
    f"stage_basis.{k}" for k in ("n_stages", "n_energy", "knots_log10_t", "correction",
                                 "windows", "knot_mask", "tables_sha256")]


def spec_from_meta(meta: dict):
    """(StageBasisSpec, stacked ElementConsts) from a model.json written by training."""
    m = meta["stage_basis"]
    spec = sb.StageBasisSpec(
        n_stages=int(m["n_stages"]), n_energy=int(m["n_energy"]),
        knots_log10_t=tuple(m["knots_log10_t"]), energy_edges_ev=tuple(meta["energy_edges_ev"]),
        correction=bool(m["correction"]))
    consts = sb.stack_consts([
        sb.element_consts(int(z), spec.n_stages, int(w[0]), np.asarray(km, bool))
        for z, w, km in zip(meta["elements"], m["windows"], m["knot_mask"])])
    return spec, consts


def load_tables(path, sha256: str) -> dict:
    """Read the fitted arrays (.npz, no pickle), refusing a file whose SHA-256 differs from the
    one recorded in model.json."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the workdir holds no fitted stage-basis "
                                "model (run bin/train)")
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise CheckpointError(f"{path}: SHA-256 {got[:12]}... differs from {sha256[:12]}... recorded in "
                      "model.json; the file is corrupt or from another run - re-run bin/train "
                      "with --overwrite")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@functools.lru_cache(maxsize=8)
def _predictor(spec):
    return jax.jit(lambda p, c, lt, lr: sb.log_kappa(p, c, spec, lt, lr))


def predict_log_kappa(spec, consts, params, element_pos, log10_t, log10_rho,
                      chunk: int = DEFAULT_CHUNK):
    """ln kappa (N, nE) [ln cm^2/g] of the element at position `element_pos` (of the stacked
    params/consts) at N points log10 T [eV], log10 rho [g/cm^3], in fixed chunks of `chunk`
    points (`opacity_jax.serve.chunks`)."""
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[element_pos], params)
    c = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[element_pos], consts)
    f = _predictor(spec)
    lt = np.asarray(log10_t, np.float32).ravel()
    lr = np.asarray(log10_rho, np.float32).ravel()
    if lt.size == 0:
        return np.zeros((0, spec.n_energy), np.float32)
    return map_chunks(lambda a, b: f(p, c, jnp.asarray(a), jnp.asarray(b)), [lt, lr], chunk)


@functools.lru_cache(maxsize=8)
def _point_fn(spec):
    return lambda args, lt, lr: sb.point(args[0], args[1], spec, lt, lr)["log_kappa"]


@functools.lru_cache(maxsize=8)
def _fast_point_fn(spec):
    return lambda args, lt, lr: sb.fast_point(args[0], args[1], spec, lt, lr)


class StageBasisSurrogate:
    """A trained Saha-structured surrogate (see module docstring).

    Attributes: elements (nZ,) atomic numbers; energy_edges_ev (nE + 1,) [eV]; energy_ev (nE,);
    domain {'temperature_ev': [lo, hi], 'density_gcc': [lo, hi]}; members = 1; regressor =
    'stage_basis'.
    """

    regressor = MODEL_NAME
    members = 1

    def __init__(self, meta: dict, params: dict, chunk: int = DEFAULT_CHUNK,
                 on_domain_error: str = "raise", outside: str = "raise"):
        if on_domain_error not in ("raise", "warn"):
            raise ValueError("on_domain_error must be 'raise' or 'warn'")
        self.outside = envelope_lib.check_policy(outside)
        self.envelope = envelope_lib.Envelope.from_meta(meta)
        self.meta = meta
        self.spec, self.consts = spec_from_meta(meta)
        self.params = params
        self.chunk = check_chunk(chunk)
        self.on_domain_error = on_domain_error
        self.elements = np.asarray(meta["elements"], np.int32)
        self.energy_edges_ev = np.asarray(meta["energy_edges_ev"], np.float64)
        self.energy_ev = _grid.bin_centers_ev(self.energy_edges_ev)
        self.domain = meta["domain"]

    @classmethod
    def load(cls, workdir, on_domain_error: str = "raise", chunk: int = DEFAULT_CHUNK,
             outside: str = "raise"):
        """Load from a training workdir (model.json + the digest-checked tables); `outside`:
        the policy outside the validity envelope (`envelope.POLICIES`)."""
        workdir = Path(workdir)
        meta = workdir_lib.read_model_meta(workdir)
        if meta.get("model") != MODEL_NAME:
            raise ValueError(f"{workdir_lib.model_path(workdir)}: model {meta.get('model')!r} is "
                             f"not {MODEL_NAME!r}")
        workdir_lib.require_keys(meta, workdir_lib.model_path(workdir), REQUIRED_KEYS)
        params = load_tables(workdir / TABLES_FILE, meta["stage_basis"]["tables_sha256"])
        n_z = len(meta["elements"])
        for k, v in params.items():
            if v.shape[:1] != (n_z,):
                raise ValueError(f"{workdir / TABLES_FILE}: array {k!r} has leading axis "
                                 f"{v.shape[:1]}, model.json lists {n_z} elements")
        return cls(meta, params, chunk=chunk, on_domain_error=on_domain_error, outside=outside)

    def element_position(self, element) -> int:
        """Position on the model's element axis of a symbol or atomic number."""
        return _el.position_in(self.elements, element)

    def check_domain(self, temperature_ev, density_gcc):
        """Broadcast (N,) float64 T [eV], rho [g/cm^3]; DomainError (or a warning) outside."""
        return check_domain(self.domain, temperature_ev, density_gcc, self.on_domain_error)

    def check_query(self, element, temperature_ev, density_gcc):
        """(pos, t, rho, nan_mask): the query validated as `Surrogate.check_query` does."""
        return query_check(self, element, temperature_ev, density_gcc)

    def log_spectrum(self, element, temperature_ev, density_gcc) -> np.ndarray:
        """(N, nE) ln kappa [ln cm^2/g] (finite everywhere inside the envelope; NaN rows
        outside it with outside='nan')."""
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        lk = predict_log_kappa(self.spec, self.consts, self.params, pos, np.log10(t),
                               np.log10(r), self.chunk)
        return nan_rows(lk, nan)

    def spectrum(self, element, temperature_ev, density_gcc, return_std: bool = False):
        """(N, nE) kappa [cm^2/g] float64 on the model's bins (return_std: zeros, one member)."""
        k = np.exp(self.log_spectrum(element, temperature_ev, density_gcc).astype(np.float64))
        return (k, np.zeros_like(k)) if return_std else k

    def _mean(self, fn, element, temperature_ev, density_gcc, return_std):
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)

        def one(tc, rc):    # one chunk's spectra at a time
            k = np.exp(predict_log_kappa(self.spec, self.consts, self.params, pos, np.log10(tc),
                                         np.log10(rc), self.chunk).astype(np.float64))
            with _compat.enable_x64():
                return np.asarray(fn(jnp.asarray(k), self.energy_edges_ev, jnp.asarray(tc)))

        m = nan_rows(map_chunks(one, [t, r], self.chunk), nan)
        return (m, np.zeros_like(m)) if return_std else m

    def planck_mean(self, element, temperature_ev, density_gcc, return_std: bool = False):
        """(N,) band-limited Planck mean of the predicted spectrum [cm^2/g] (with return_std,
        also the members' spread: zeros, one member)."""
        return self._mean(planck.planck_mean, element, temperature_ev, density_gcc, return_std)

    def rosseland_mean(self, element, temperature_ev, density_gcc, return_std: bool = False):
        """(N,) band-limited Rosseland mean of the predicted spectrum [cm^2/g] (return_std as
        `planck_mean`)."""
        return self._mean(planck.rosseland_mean, element, temperature_ev, density_gcc,
                          return_std)

    def log_kappa_function(self, element):
        """(fn, args): a pure JAX function fn(args, log10 T [eV], log10 rho [g/cm^3]) of scalars
        -> (nE,) ln kappa [ln cm^2/g], and the element's arrays to pass as `args`.
        Differentiable and jit/vmap-able; fn is the same object for every element of a model, so
        a jit'd caller compiles once. No domain check: the caller keeps its arguments inside
        `domain`, e.g. by clipping."""
        pos = self.element_position(element)
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[pos], self.params)
        c = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[pos], self.consts)
        return _point_fn(self.spec), (p, c)

    def fast_log_kappa_function(self, element, points_per_interval: int = 64):
        """(fn, args) as `log_kappa_function`, for the fast path (`models.stage_basis.tabulate`):
        ln A, the boundary corrections and the T-only free-free terms tabulated once on a
        log10 T grid of `points_per_interval` cells per knot interval, so a query costs a
        linear interpolation of those tables, the Saha solve (16 bisection steps before the
        Newton polish instead of 36: `sb.FAST_BISECTION_STEPS`) and the stage mixing. Differs from
        the full model by the linear-vs-PCHIP interpolation error, which falls as
        points_per_interval^-2 (tests/test_stage_basis.py states the tolerance); the tables
        take G x n_stages x nE float32 (G = (valid knots - 1) x points_per_interval + 1)."""
        pos = self.element_position(element)
        p = jax.tree_util.tree_map(lambda a: np.asarray(a)[pos], self.params)
        c = jax.tree_util.tree_map(lambda a: np.asarray(a)[pos], self.consts)
        tables = sb.tabulate(p, c, self.spec, points_per_interval)
        return _fast_point_fn(self.spec), (tables, jax.tree_util.tree_map(jnp.asarray, c))

    def derivatives(self, element, temperature_ev, density_gcc):
        """(dkappa/dT [cm^2/g/eV], dkappa/drho [cm^5/g^2]), each (N, nE), by autodiff through
        the Saha solve (implicit derivative) and the T interpolation."""
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[pos], self.params)
        c = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[pos], self.consts)

        def one(tt, rr):
            return jnp.exp(sb.point(p, c, self.spec, jnp.log10(tt), jnp.log10(rr))["log_kappa"])

        jac = jax.jit(jax.vmap(jax.jacfwd(one, argnums=(0, 1))))
        dt, dr = map_chunks(lambda a, b: jac(jnp.asarray(a, jnp.float32),
                                             jnp.asarray(b, jnp.float32)), [t, r], self.chunk)
        return (nan_rows(dt.astype(np.float64), nan), nan_rows(dr.astype(np.float64), nan))
