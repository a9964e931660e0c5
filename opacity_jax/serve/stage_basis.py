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
MEMBERS_FILE = "stage_basis_members.npz"     # jackknife members (bin/train_ensemble)
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


def load_members(workdir, meta: dict, params: dict):
    """The jackknife members' arrays {name: (K, nZ, ...)} recorded in model.json['ensemble'],
    or None when the workdir has none. Refuses members whose file fails its SHA-256 or that
    were fitted to other tables than the workdir's current full fit (stale)."""
    ens = meta.get("ensemble")
    path = Path(workdir) / MEMBERS_FILE
    if not ens or not path.exists():
        return None
    if ens.get("upstream_tables_sha256") != meta["stage_basis"]["tables_sha256"]:
        raise CheckpointError(f"{path}: the members were fitted to other stage tables than "
                              f"{Path(workdir) / TABLES_FILE} (the full fit changed since); "
                              f"re-run bin/train_ensemble --workdir={workdir} --overwrite")
    arrays = load_tables(path, ens["sha256"])
    for k, v in arrays.items():
        if k not in params or v.shape[1:] != np.shape(params[k]):
            raise ValueError(f"{path}: array {k!r} of shape {v.shape} does not match the full "
                             f"fit's {np.shape(params.get(k))} (members x that shape expected)")
    return arrays


@functools.lru_cache(maxsize=8)
def _predictor(spec):
    return jax.jit(lambda p, c, lt, lr: sb.log_kappa(p, c, spec, lt, lr))


def predict_log_kappa(spec, consts, params, element_pos, log10_t, log10_rho,
                      chunk: int = DEFAULT_CHUNK, float64: bool = False):
    """ln kappa (N, nE) [ln cm^2/g] of the element at position `element_pos` (of the stacked
    params/consts) at N points log10 T [eV], log10 rho [g/cm^3], in fixed chunks of `chunk`
    points (`opacity_jax.serve.chunks`).

    float64=True evaluates the same trained (float32) arrays in float64 arithmetic (jax x64
    mode): the reference that separates the model's float32 rounding (~1e-5 of kappa, from
    ln-space terms of magnitude ~1e2-1e3) from the model itself. Serving uses float32."""
    dtype = np.float64 if float64 else np.float32
    lt = np.asarray(log10_t, dtype).ravel()
    lr = np.asarray(log10_rho, dtype).ravel()
    if lt.size == 0:
        return np.zeros((0, spec.n_energy), dtype)
    if float64:
        with _compat.enable_x64():
            p = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[element_pos],
                                                             _wide(a)), params)
            c = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[element_pos],
                                                             _wide(a)), consts)
            f = _predictor(spec)          # traced again for float64 inputs, then cached
            return map_chunks(lambda a, b: np.asarray(f(p, c, jnp.asarray(a), jnp.asarray(b))),
                              [lt, lr], chunk)
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[element_pos], params)
    c = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[element_pos], consts)
    f = _predictor(spec)
    return map_chunks(lambda a, b: f(p, c, jnp.asarray(a), jnp.asarray(b)), [lt, lr], chunk)


def _wide(a):
    """float64 for floating arrays, the array's own dtype otherwise (ints, bools)."""
    a = np.asarray(a)
    return np.float64 if np.issubdtype(a.dtype, np.floating) else a.dtype


@functools.lru_cache(maxsize=8)
def _point_fn(spec):
    return lambda args, lt, lr: sb.point(args[0], args[1], spec, lt, lr)["log_kappa"]


@functools.lru_cache(maxsize=8)
def _fast_point_fn(spec):
    return lambda args, lt, lr: sb.fast_point(args[0], args[1], spec, lt, lr)


class StageBasisSurrogate:
    """A trained Saha-structured surrogate (see module docstring).

    Attributes: elements (nZ,) atomic numbers; energy_edges_ev (nE + 1,) [eV]; energy_ev (nE,);
    domain {'temperature_ev': [lo, hi], 'density_gcc': [lo, hi]}; members: K jackknife members
    (bin/train_ensemble; 1 without); regressor = 'stage_basis'.

    With members, `spectrum`/`planck_mean`/`rosseland_mean(return_std=True)` return the full
    fit and the members' standard deviation, and `interval` the calibrated bounds
    (`opacity_jax.experiments.stage_basis.calibrate`).
    """

    regressor = MODEL_NAME

    def __init__(self, meta: dict, params: dict, chunk: int = DEFAULT_CHUNK,
                 on_domain_error: str = "raise", outside: str = "raise",
                 member_params=None, workdir=None):
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
        self.member_params = member_params
        self.members = 1 if member_params is None else int(member_params["log_a"].shape[0])
        self.workdir = None if workdir is None else Path(workdir)

    @classmethod
    def load(cls, workdir, on_domain_error: str = "raise", chunk: int = DEFAULT_CHUNK,
             outside: str = "raise", ensemble=None):
        """Load from a training workdir (model.json + the digest-checked tables); `outside`:
        the policy outside the validity envelope (`envelope.POLICIES`); ensemble: None loads
        the jackknife members when the workdir has them, True requires them, False skips
        them."""
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
        members = load_members(workdir, meta, params) if ensemble is not False else None
        if ensemble and members is None:
            raise FileNotFoundError(f"{workdir} holds no jackknife members: run "
                                    f"bin/train_ensemble --workdir={workdir}")
        return cls(meta, params, chunk=chunk, on_domain_error=on_domain_error, outside=outside,
                   member_params=members, workdir=workdir)

    def element_position(self, element) -> int:
        """Position on the model's element axis of a symbol or atomic number."""
        return _el.position_in(self.elements, element)

    def check_domain(self, temperature_ev, density_gcc):
        """Broadcast (N,) float64 T [eV], rho [g/cm^3]; DomainError (or a warning) outside."""
        return check_domain(self.domain, temperature_ev, density_gcc, self.on_domain_error)

    def check_query(self, element, temperature_ev, density_gcc):
        """(pos, t, rho, nan_mask): the query validated as `Surrogate.check_query` does."""
        return query_check(self, element, temperature_ev, density_gcc)

    def log_spectrum(self, element, temperature_ev, density_gcc,
                     float64: bool = False) -> np.ndarray:
        """(N, nE) ln kappa [ln cm^2/g] (finite everywhere inside the envelope; NaN rows
        outside it with outside='nan'). float64=True: the same model evaluated in float64
        arithmetic (`predict_log_kappa`), the reference of the portable weights."""
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        lk = predict_log_kappa(self.spec, self.consts, self.params, pos, np.log10(t),
                               np.log10(r), self.chunk, float64=float64)
        return nan_rows(lk, nan)

    def spectrum(self, element, temperature_ev, density_gcc, return_std: bool = False,
                 float64: bool = False):
        """(N, nE) kappa [cm^2/g] float64 on the model's bins: the full fit; with return_std
        also the members' standard deviation (zeros without members); float64: evaluated in
        float64 arithmetic, as `log_spectrum`."""
        k = np.exp(self.log_spectrum(element, temperature_ev, density_gcc, float64)
                   .astype(np.float64))
        if not return_std:
            return k
        if self.member_params is None:
            return k, np.zeros_like(k)
        return k, self.spectrum_members(element, temperature_ev, density_gcc).std(0)

    def spectrum_members(self, element, temperature_ev, density_gcc) -> np.ndarray:
        """(K, N, nE) kappa [cm^2/g] float64 of every jackknife member (ValueError without
        members)."""
        if self.member_params is None:
            raise ValueError("this surrogate has no members: run bin/train_ensemble")
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        out = [np.exp(nan_rows(predict_log_kappa(self.spec, self.consts, p, pos, np.log10(t),
                                                 np.log10(r), self.chunk), nan)
                      .astype(np.float64)) for p in self._member_list()]
        return np.stack(out)

    def _member_list(self):
        m = self.member_params
        return [{k: v[i] for k, v in m.items()} for i in range(self.members)]

    def _means_of(self, fn, params, pos, t, r, nan) -> np.ndarray:
        """(N,) fn(kappa) [cm^2/g] of the model `params` at checked points, chunk by chunk."""
        def one(tc, rc):    # one chunk's spectra at a time
            k = np.exp(predict_log_kappa(self.spec, self.consts, params, pos, np.log10(tc),
                                         np.log10(rc), self.chunk).astype(np.float64))
            with _compat.enable_x64():
                return np.asarray(fn(jnp.asarray(k), self.energy_edges_ev, jnp.asarray(tc)))
        return nan_rows(map_chunks(one, [t, r], self.chunk), nan)

    def _mean(self, fn, element, temperature_ev, density_gcc, return_std):
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        m = self._means_of(fn, self.params, pos, t, r, nan)
        if not return_std:
            return m
        if self.member_params is None:
            return m, np.zeros_like(m)
        return m, np.stack([self._means_of(fn, p, pos, t, r, nan)
                            for p in self._member_list()]).std(0)

    def interval(self, quantity: str, element, temperature_ev, density_gcc,
                 level: float = 0.95):
        """Calibrated (lower, upper) bounds [cm^2/g]: 10 ** (log10 x +- q_L (s + beta)), x the
        full fit's kappa per bin ('kappa', (N, nE)) or kappa_P / kappa_R ('planck' /
        'rosseland', (N,)), s the members' std of log10 x, q_L and beta fitted by bin/evaluate
        on the validation nodes (<workdir>/eval/ensemble_calibration.json). Refuses a level
        whose fit is marked degenerate."""
        names = {"kappa": "log_kappa", "planck": "log_planck", "rosseland": "log_rosseland"}
        if quantity not in names:
            raise ValueError(f"quantity must be one of {sorted(names)}, got {quantity!r}")
        if self.member_params is None or self.workdir is None:
            raise ValueError("calibrated intervals need jackknife members: run "
                             "bin/train_ensemble, then bin/evaluate")
        path = workdir_lib.eval_dir(self.workdir) / "ensemble_calibration.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run bin/evaluate --workdir="
                                    f"{self.workdir} first")
        cal = workdir_lib.read_json(path)
        if int(cal.get("members", -1)) != self.members or cal.get("kind") != "jackknife":
            raise ValueError(f"{path} was fitted for other members ({cal.get('members')} "
                             f"{cal.get('kind')}); re-run bin/evaluate")
        entry = cal["quantities"][names[quantity]]
        key = f"{float(level):g}"
        conf = entry["multipliers"]
        if key not in conf:
            raise ValueError(f"{path} holds no multiplier for level {key}; available: "
                             f"{sorted(k for k in conf if k not in ('beta', 'spread_weight'))}")
        if key in entry.get("degenerate_levels", []):
            raise ValueError(f"{path}: the {names[quantity]} calibration at level {key} is "
                             f"degenerate (too few calibration nodes, or members that agree "
                             f"exactly); no interval")
        w = float(conf.get("spread_weight", 1.0))     # 0: constant width (spread uninformative)
        half_of = lambda sd: float(conf[key]) * (w * sd + float(conf.get("beta", 0.0)))  # noqa: E731
        if quantity == "kappa":
            k = self.spectrum(element, temperature_ev, density_gcc)
            lm = np.log10(self.spectrum_members(element, temperature_ev, density_gcc))
            mid, half = np.log10(k), half_of(lm.std(0))
        else:
            fn = planck.planck_mean if quantity == "planck" else planck.rosseland_mean
            pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
            mid = np.log10(np.maximum(self._means_of(fn, self.params, pos, t, r, nan), 1e-300))
            mem = np.stack([self._means_of(fn, p, pos, t, r, nan) for p in self._member_list()])
            half = half_of(np.log10(np.maximum(mem, 1e-300)).std(0))
        return 10.0 ** (mid - half), 10.0 ** (mid + half)

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
