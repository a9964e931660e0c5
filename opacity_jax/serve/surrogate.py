"""The public inference API: `Surrogate.load(workdir)` and batched, jit'd opacity queries.

    s = Surrogate.load("runs/cae")                     # everything comes from the workdir
    kappa = s.spectrum("Nd", temperature_ev=[0.3, 1.0], density_gcc=[1e-13, 1e-12])  # (2, nE)
    kp = s.planck_mean("Nd", 0.3, 1e-13)               # cm^2/g
    dk_dt, dk_drho = s.derivatives("Nd", 0.3, 1e-13)   # smooth regressors only

Deep ensembles are served by the same class: an FC-NN trained with `fcnn.ensemble = K`, or a
CAE workdir with a latent-MLP ensemble (bin/train_ensemble) loaded with `ensemble=True`, holds
K members; `spectrum`, `planck_mean` and `rosseland_mean` then return the member mean, and with
`return_std=True` also the member standard deviation (each member's Planck/Rosseland mean is
computed from its own spectrum, so the spread is carried through the nonlinear means):

    s = Surrogate.load("runs/fcnn_ens")                        # K members
    kp, kp_std = s.planck_mean("Nd", 0.3, 1e-13, return_std=True)

Queries outside the training domain raise `DomainError` (or warn with `on_domain_error="warn"`);
nothing is silently extrapolated. Inside the domain, queries outside the model's validity envelope
(`s.envelope`: per element the convex hull of its training nodes in log T, log rho;
`opacity_jax.serve.envelope`) follow `outside=`: 'raise' (default), 'clamp' (onto the hull),
'nan' or 'warn'. Unknown elements raise ValueError naming the allowed ones.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from opacity_jax.data import grid as _grid
from opacity_jax.data import transforms
from opacity_jax.data.transforms import SpectrumScaling
from opacity_jax.errors import CheckpointError, check_domain
from opacity_jax.models.cae import CAE
from opacity_jax.models.mlp import FCNN, MLP
from opacity_jax.models.physics_features import PhysicsFeatures
from opacity_jax.physics import elements as _el
from opacity_jax.physics import planck
from opacity_jax.serve import envelope as envelope_lib
from opacity_jax.serve.chunks import DEFAULT_CHUNK, check_chunk, map_chunks
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.workdir import MODEL_FILE

# model.json keys each spectrum surrogate needs (checked on load, naming the missing one).
COMMON_KEYS = ["elements", "energy_edges_ev", "domain", "scaling.name", "scaling.scale"]
REQUIRED = {"cae": ["cae.latent_dim", "latent.regressors", "latent.x_standardizer",
                    "latent.z_mean", "latent.z_std"],
            "fcnn": ["fcnn.hidden", "fcnn.x_standardizer"]}


def member_major(flat, n_entities: int, members: int):
    """Params trained on the entity axis as entities x members (member-fastest, as
    `EntityData.replicate`), leaves (n_entities * K, ...) -> leaves (K, n_entities, ...)."""
    def f(a):
        a = jnp.asarray(a)
        if a.shape[0] != n_entities * members:
            raise ValueError(f"parameter leaf with leading axis {a.shape[0]} is not "
                             f"{n_entities} entities x {members} members")
        return jnp.swapaxes(a.reshape((n_entities, members) + a.shape[1:]), 0, 1)
    return jax.tree_util.tree_map(f, flat)


class Surrogate:
    """A trained opacity surrogate loaded from a workdir (see module docstring).

    Attributes:
      elements: (nZ,) atomic numbers served; energy_edges_ev: (nE + 1,) [eV];
      energy_ev: (nE,) bin centres; domain: dict of [min, max] for temperature_ev, density_gcc;
      regressor: 'mlp', 'xgboost' or 'fcnn' (the path used by `spectrum`);
      members: K, the number of ensemble members (1 for a single network);
      physics_features: the `models.physics_features.PhysicsFeatures` the regressor was trained
        with (latent.physics_features / fcnn.physics_features), computed at query time, or None.

    params: {'cae': (nZ, ...) leaves} and {'mlp' or 'fcnn': (K, nZ, ...) leaves} (member axis
    first, element axis second).
    """

    def __init__(self, meta: dict, params: dict, boosters=None, regressor: str = "mlp",
                 on_domain_error: str = "raise", chunk: int = DEFAULT_CHUNK,
                 outside: str = "raise"):
        if on_domain_error not in ("raise", "warn"):
            raise ValueError("on_domain_error must be 'raise' or 'warn'")
        self.chunk = check_chunk(chunk)
        self.outside = envelope_lib.check_policy(outside)
        self.envelope = envelope_lib.Envelope.from_meta(meta)
        self.meta = meta
        net = params.get("fcnn", params.get("mlp"))
        self.members = int(jax.tree_util.tree_leaves(net)[0].shape[0]) if net is not None else 1
        self.on_domain_error = on_domain_error
        self.elements = np.asarray(meta["elements"], np.int32)
        self.energy_edges_ev = np.asarray(meta["energy_edges_ev"], np.float64)
        self.energy_ev = _grid.bin_centers_ev(self.energy_edges_ev)
        self.domain = meta["domain"]
        self.scaling = SpectrumScaling.from_dict(meta["scaling"])
        self.regressor = regressor
        self._params = params
        self._boosters = boosters
        self.physics_features = None
        self._scale = jnp.asarray(self.scaling.scale, jnp.float32)
        self._shift = jnp.asarray(self.scaling.shift, jnp.float32)
        if meta["model"] == "cae":
            c = meta["cae"]
            self._cae = CAE.from_meta(c)
            lat = meta["latent"]
            xs = transforms.Standardizer.from_dict(lat["x_standardizer"])
            self._x_standardizer = xs
            self._x_mean = jnp.asarray(xs.mean, jnp.float32)
            self._x_std = jnp.asarray(xs.std, jnp.float32)
            self._z_mean = jnp.asarray(lat["z_mean"], jnp.float32)
            self._z_std = jnp.asarray(lat["z_std"], jnp.float32)
            self.physics_features = (PhysicsFeatures.from_dict(lat["physics_features"])
                           if lat.get("physics_features") else None)
            if regressor == "mlp":
                self._mlp = MLP(hidden=tuple(lat["mlp_hidden"]), n_out=c["latent_dim"])
        elif meta["model"] == "fcnn":
            f = meta["fcnn"]
            self._fcnn = FCNN(hidden=tuple(f["hidden"]), dropout=f["dropout"])
            xs = transforms.Standardizer.from_dict(f["x_standardizer"])
            self._x_mean = jnp.asarray(xs.mean, jnp.float32)
            self._x_std = jnp.asarray(xs.std, jnp.float32)
            self.physics_features = (PhysicsFeatures.from_dict(f["physics_features"])
                           if f.get("physics_features") else None)
        self._jit_scaled = jax.jit(self._scaled_impl)
        self._jit_decode = jax.jit(self._decode_impl)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, workdir, regressor: Optional[str] = None, on_domain_error: str = "raise",
             ensemble: Optional[bool] = None, chunk: int = DEFAULT_CHUNK,
             outside: str = "raise") -> "Surrogate":
        """Load from a training workdir.

        Args:
          regressor: 'mlp' (smooth, default when trained), 'xgboost' (piecewise constant) or
            None for the best available (CAE runs only).
          on_domain_error: 'raise' (DomainError) or 'warn' for queries outside the domain.
          outside: policy for queries outside the validity envelope (`envelope.POLICIES`).
          ensemble: CAE runs: True serves the latent-MLP ensemble of bin/train_ensemble
            (ValueError if there is none); None/False the single (fine-tuned) latent MLP.
            FC-NN runs: None/True serve all K trained members, False the first one only.
          chunk: points per compiled call; larger queries run in chunks of this size, so
            memory stays bounded (`opacity_jax.serve.chunks`).
        """
        workdir = Path(workdir)
        meta = workdir_lib.read_model_meta(workdir)
        if meta.get("model") == "stage_basis":
            from opacity_jax.serve.stage_basis import StageBasisSurrogate
            return StageBasisSurrogate.load(workdir, on_domain_error=on_domain_error,
                                            chunk=chunk, outside=outside)
        mf = workdir_lib.model_path(workdir)
        if meta["model"] not in REQUIRED:
            raise ValueError(f"{mf}: model {meta['model']!r} is not a spectrum surrogate "
                             f"(one of {sorted(REQUIRED)} or 'stage_basis')")
        workdir_lib.require_keys(meta, mf, COMMON_KEYS + REQUIRED[meta["model"]])
        restore_params = functools.partial(workdir_lib.restore_params, meta=meta)
        params, boosters = {}, None
        n_z = len(meta.get("elements", ()))
        if meta["model"] == "cae":
            available = meta["latent"]["regressors"]
            if regressor is None:
                regressor = "mlp" if "mlp" in available else available[0]
            if regressor not in available:
                raise ValueError(f"regressor {regressor!r} not trained in {workdir}; "
                                 f"available: {available}")
            if ensemble:
                ens = meta.get("ensemble")
                if not ens:
                    raise ValueError(f"{workdir} holds no ensemble; run bin/train_ensemble "
                                     f"--workdir={workdir} first")
                if regressor != "mlp":
                    raise ValueError("latent ensembles are MLPs; load with regressor='mlp'")
            params["cae"] = restore_params(workdir, "cae")
            if ensemble:
                params["mlp"] = member_major(restore_params(workdir, ens["label"]), n_z,
                                             int(ens["members"]))
                meta = dict(meta, latent=dict(meta["latent"], mlp_hidden=ens["hidden"]))
            elif regressor == "mlp":
                if meta["latent"].get("mlp_finetuned"):
                    single = restore_params(workdir, "latent_mlp_finetune")["mlp"]
                else:
                    single = restore_params(workdir, "latent_mlp")
                params["mlp"] = member_major(single, n_z, 1)
            else:
                from opacity_jax.models import latent as latent_lib
                want = meta["latent"].get("xgb_sha256")
                if want is not None and (not (workdir / "xgb").is_dir() or
                                         workdir_lib.file_digest(workdir / "xgb") != want):
                    raise CheckpointError(
                        f"{workdir / 'xgb'}: the XGBoost boosters are missing or differ from the "
                        f"ones {mf} records (corrupt, or from another run); re-run bin/train "
                        f"--workdir={workdir}")
                boosters = latent_lib.load_boosters(workdir / "xgb")
        elif meta["model"] == "fcnn":
            regressor = "fcnn"
            k = int(meta["fcnn"].get("members", 1))
            mp = member_major(restore_params(workdir, "fcnn"), n_z, k)
            if ensemble is False and k > 1:
                mp = jax.tree_util.tree_map(lambda a: a[:1], mp)
            params["fcnn"] = mp
        else:
            raise ValueError(f"unknown model {meta['model']!r} in {workdir / MODEL_FILE}")
        out = cls(meta, params, boosters, regressor, on_domain_error, chunk, outside)
        out.workdir = workdir
        return out

    # -- validation ---------------------------------------------------------------------------
    def element_position(self, element) -> int:
        """Position on the model's element axis of a symbol or atomic number."""
        return _el.position_in(self.elements, element)

    def _check(self, t, r):
        return check_domain(self.domain, t, r, self.on_domain_error)

    def check_query(self, element, temperature_ev, density_gcc):
        """Validate a query: (pos, t, rho, nan_mask) with (N,) float64 T [eV] and rho
        [g/cm^3] to evaluate at (moved onto the envelope for outside='clamp') and the (N,)
        points whose outputs are NaN (outside='nan'). DomainError outside the domain, and
        outside the envelope for outside='raise'."""
        return envelope_lib.query_check(self, element, temperature_ev, density_gcc)

    # -- networks -----------------------------------------------------------------------------
    def _features(self, pos, t, r):
        """Latent-regressor inputs (N, 2 [+ F]): standardized (log10 T, log10 rho) and, when
        trained with them, the element's physics features computed here (differentiable)."""
        x = (jnp.stack([jnp.log10(t), jnp.log10(r)], -1) - self._x_mean) / self._x_std
        if self.physics_features is None:
            return x
        return jnp.concatenate([x, self.physics_features.standardized(pos, t, r).astype(x.dtype)], -1)

    def _decode_impl(self, pos, z_std):
        p = jax.tree_util.tree_map(lambda a: a[pos], self._params["cae"])
        z = z_std * self._z_std[pos] + self._z_mean[pos]
        return self._cae.apply(p, z, method=self._cae.decode)

    def _scaled_impl(self, pos, t, r):
        """Scaled spectra (K, N, nE) of every member for one element position,
        differentiable in t, r."""
        net = self._params["fcnn" if self.regressor == "fcnn" else "mlp"]
        return jax.vmap(lambda mp: self._member_scaled(mp, pos, t, r))(net)

    def _member_scaled(self, member_params, pos, t, r):
        """Scaled spectra (N, nE) of one member (params with leading element axis)."""
        p = jax.tree_util.tree_map(lambda a: a[pos], member_params)
        if self.regressor == "fcnn":
            # the bin centres in float32 as trained; log10 in the query's precision
            log_e = jnp.log10(jnp.asarray(self.energy_ev, jnp.float32).astype(t.dtype))
            n, ne = t.shape[0], log_e.shape[0]
            pts = jnp.concatenate([jnp.broadcast_to(log_e[None, :, None], (n, ne, 1)),
                                   jnp.broadcast_to(jnp.stack([jnp.log10(t), jnp.log10(r)],
                                                              -1)[:, None, :], (n, ne, 2))], -1)
            xs = (pts - self._x_mean) / self._x_std
            if self.physics_features is not None:
                f = self.physics_features.standardized(pos, t, r).astype(xs.dtype)
                xs = jnp.concatenate([xs, jnp.broadcast_to(f[:, None, :], (n, ne, f.shape[-1]))],
                                     -1)
            return self._fcnn.apply(p, xs.reshape(n * ne, -1)).reshape(n, ne)
        return self._decode_impl(pos, self._mlp.apply(p, self._features(pos, t, r)))

    def _to_kappa(self, y, pos):
        sc = self.scaling
        return transforms.inverse_spectrum_scaling(y, sc.name, sc.eps, sc.floor_decades,
                                                   self._scale[pos], self._shift[pos])

    # -- public queries -----------------------------------------------------------------------
    def _members_chunk(self, pos, t, r) -> np.ndarray:
        """(K, n, nE) float32 kappa [cm^2/g] of one chunk of checked points."""
        if self.regressor == "xgboost":
            zs = self._tree_latents(pos, t, r)
            y = self._jit_decode(pos, jnp.asarray(zs))[None]
        else:
            y = self._jit_scaled(pos, jnp.asarray(t, jnp.float32), jnp.asarray(r, jnp.float32))
        return np.asarray(self._to_kappa(y, pos))

    def _members_chunk64(self, pos, t, r) -> np.ndarray:
        """(K, n, nE) float64 kappa [cm^2/g]: the same trained float32 weights evaluated in
        float64 arithmetic (jax x64), the reference of the portable weights."""
        from opacity_jax import _compat
        with _compat.enable_x64():
            if self.regressor == "xgboost":
                z = self._tree_latents(pos, t, r)
                y = self._jit_decode(pos, jnp.asarray(z, jnp.float64))[None]
            else:
                y = self._jit_scaled(pos, jnp.asarray(t, jnp.float64),
                                     jnp.asarray(r, jnp.float64))
            return np.asarray(self._to_kappa(y, pos), np.float64)

    def _tree_latents(self, pos, t, r) -> np.ndarray:
        """(n, latent) float32 standardized latents of the XGBoost boosters."""
        from opacity_jax.models import latent as latent_lib
        z = int(self.elements[pos])
        # Same float64 standardization as at training time, then float32: grid nodes sit
        # exactly on the trees' split thresholds, and a float32 round-off would put them in
        # the neighbouring cell.
        feats = self._x_standardizer.transform(np.stack([np.log10(t), np.log10(r)], -1))
        if self.physics_features is not None:
            feats = np.concatenate([feats, self.physics_features.standardized_float64(pos, t, r)],
                                   -1)
        return latent_lib.predict_xgb(self._boosters[0][z], feats.astype(np.float32),
                                      self._boosters[1][z])

    def spectrum_members(self, element, temperature_ev, density_gcc,
                         float64: bool = False) -> np.ndarray:
        """(K, N, nE) float32 opacity spectra [cm^2/g] of every ensemble member (K = 1 for a
        single network) at N points (temperature_ev [eV], density_gcc [g/cm^3]; scalars
        broadcast), evaluated in chunks of `chunk` points. float64=True: the same model in
        float64 arithmetic (jax x64; float64 output), the reference that separates the
        network's float32 rounding from the model (portable weights are checked against it)."""
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        fn = self._members_chunk64 if float64 else self._members_chunk
        k = map_chunks(lambda tc, rc: fn(pos, tc, rc), [t, r], self.chunk, out_axis=1)
        if nan.any():
            k = k.copy()
            k[:, nan] = np.nan
        return k

    def _member_means(self, fn, pos, t, r) -> np.ndarray:
        """(K, N) fn(kappa) [cm^2/g] of every member at checked points, chunk by chunk (the
        spectra of one chunk at a time are held)."""
        def one(tc, rc):
            k = self._members_chunk(pos, tc, rc)
            if k.shape[0] == 1:
                return np.asarray(fn(jnp.asarray(k[0]), self.energy_edges_ev,
                                     jnp.asarray(tc)))[None]
            from opacity_jax import _compat
            # float64: cold member spectra reach ~1e-100 cm^2/g and must not flush to zero.
            with _compat.enable_x64():
                return np.asarray(fn(jnp.asarray(k.astype(np.float64)), self.energy_edges_ev,
                                     jnp.asarray(np.asarray(tc, np.float64))))
        return map_chunks(one, [t, r], self.chunk, out_axis=1)

    def spectrum(self, element, temperature_ev, density_gcc, return_std: bool = False,
                 float64: bool = False):
        """Opacity spectra kappa [cm^2/g] on the model's energy bins.

        Args:
          element: symbol or Z; temperature_ev (N,) [eV]; density_gcc (N,) [g/cm^3]
            (scalars broadcast).
          return_std: also return the ensemble members' standard deviation (zeros for K = 1).
          float64: evaluate in float64 arithmetic (`spectrum_members`).
        Returns:
          (N, nE) float32 numpy array (float64 with float64=True): the member mean; with
          return_std, (mean, std).
        """
        k = self.spectrum_members(element, temperature_ev, density_gcc, float64)
        mean = k[0] if k.shape[0] == 1 else k.mean(0)
        return (mean, k.std(0)) if return_std else mean

    def _means(self, fn, element, temperature_ev, density_gcc, return_std):
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)
        m = self._member_means(fn, pos, t, r)
        if nan.any():
            m = np.array(m, dtype=np.float64)
            m[:, nan] = np.nan
        mean = m[0] if m.shape[0] == 1 else m.mean(0)
        return (mean, m.std(0)) if return_std else mean

    def planck_mean(self, element, temperature_ev, density_gcc, return_std: bool = False):
        """(N,) band-limited Planck mean of the predicted total spectrum [cm^2/g]; for an
        ensemble the mean over members of each member's Planck mean (and with return_std their
        standard deviation, as a (mean, std) pair)."""
        return self._means(planck.planck_mean, element, temperature_ev, density_gcc, return_std)

    def rosseland_mean(self, element, temperature_ev, density_gcc, return_std: bool = False):
        """(N,) band-limited Rosseland mean of the predicted total spectrum [cm^2/g]; ensembles
        as `planck_mean`."""
        return self._means(planck.rosseland_mean, element, temperature_ev, density_gcc,
                           return_std)

    def interval(self, quantity: str, element, temperature_ev, density_gcc,
                 level: float = 0.95):
        """Calibrated (lower, upper) bounds [cm^2/g] from an ensemble's conformal intervals.

        The interval is 10 ** (m +- q_L (s + beta)), with m, s the member mean and standard
        deviation of log10(x) (x = kappa + eps per bin, or each member's Planck / Rosseland
        mean) and q_L, beta the split-conformal multipliers that `ensemble.calibrate_workdir`
        (run by bin/evaluate) fitted on data disjoint from the training data and stored in
        <workdir>/eval/ensemble_calibration.json.

        Args:
          quantity: 'kappa' (per bin, (N, nE)), 'planck' or 'rosseland' ((N,)).
          element, temperature_ev [eV], density_gcc [g/cm^3]: as `spectrum`.
          level: a coverage level stored in the calibration file (0.68 or 0.95).
        Returns:
          (lower, upper) arrays [cm^2/g].
        """
        names = {"kappa": "log_kappa", "planck": "log_planck", "rosseland": "log_rosseland"}
        if quantity not in names:
            raise ValueError(f"quantity must be one of {sorted(names)}, got {quantity!r}")
        if self.members < 2:
            raise ValueError("calibrated intervals need an ensemble (members >= 2)")
        path = workdir_lib.eval_dir(getattr(self, "workdir", ".")) / "ensemble_calibration.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run bin/evaluate --workdir="
                                    f"{getattr(self, 'workdir', '<workdir>')} first")
        cal = json.loads(path.read_text())
        if int(cal.get("members", self.members)) != self.members:
            raise ValueError(f"{path} was fitted for {cal['members']} members, this surrogate "
                             f"has {self.members}; re-run bin/evaluate")
        conf = cal["quantities"][names[quantity]].get("conformal_multipliers")
        key = f"{float(level):g}"
        if not conf or key not in conf:
            raise ValueError(f"{path} holds no conformal multiplier for level {key}; "
                             f"available: {sorted(k for k in (conf or {}) if k != 'beta')}")
        if key in cal["quantities"][names[quantity]].get("degenerate_levels", []):
            raise ValueError(f"{path}: the {names[quantity]} calibration at level {key} is "
                             f"degenerate (the members agree exactly at most calibration "
                             f"points, or too few points for the level); no interval")
        q, beta = float(conf[key]), float(conf.get("beta", 0.0))
        if quantity == "kappa":
            eps = float(cal.get("eps", 1e-10))
            lx = np.log10(self.spectrum_members(element, temperature_ev, density_gcc)
                          .astype(np.float64) + eps)
        else:
            fn = planck.planck_mean if quantity == "planck" else planck.rosseland_mean
            pos, t, r, _ = self.check_query(element, temperature_ev, density_gcc)
            m = self._member_means(fn, pos, t, r)
            lx = np.log10(np.maximum(m, 1e-300))
        half = q * (lx.std(0) + beta)
        mid = lx.mean(0)
        return 10.0 ** (mid - half), 10.0 ** (mid + half)

    def device_pipeline(self, dtype=jnp.float32, node_tol: Optional[float] = None):
        """The whole query as one jit'd device function (`opacity_jax.serve.pipeline.DevicePipeline`):
        (element, T, rho) -> latent (MLP or the XGBoost trees as an exact lookup table) ->
        decoder -> kappa (N, nE) -> Planck/Rosseland means (N,), with no host round trip."""
        from opacity_jax.serve import pipeline
        kw = {} if node_tol is None else {"node_tol": node_tol}
        return pipeline.DevicePipeline.from_surrogate(self, dtype=dtype, **kw)

    def derivatives(self, element, temperature_ev, density_gcc):
        """(dkappa/dT [cm^2/g/eV], dkappa/drho [cm^5/g^2]), each (N, nE), by autodiff (of
        the member mean for an ensemble).

        Only for smooth regressors (latent MLP, FC-NN); XGBoost trees are piecewise constant
        (zero derivative almost everywhere), so they raise ValueError.
        """
        if self.regressor == "xgboost":
            raise ValueError("derivatives are undefined for the XGBoost latent regressor "
                             "(piecewise constant in T and rho); load with regressor='mlp'")
        pos, t, r, nan = self.check_query(element, temperature_ev, density_gcc)

        def one(tt, rr):
            # Derivative of the ensemble mean (the member mean for K > 1).
            y = self._scaled_impl(pos, tt[None], rr[None])[:, 0]
            return jnp.mean(self._to_kappa(y, pos), axis=0)

        jac = jax.jit(jax.vmap(jax.jacfwd(one, argnums=(0, 1))))
        dt, dr = map_chunks(lambda tc, rc: jac(jnp.asarray(tc, jnp.float32),
                                               jnp.asarray(rc, jnp.float32)), [t, r], self.chunk)
        return (envelope_lib.nan_rows(np.asarray(dt), nan),
                envelope_lib.nan_rows(np.asarray(dr), nan))
