"""Photodissociation cross-section nets sigma_{vJ}(lambda) (Sakan et al. 2025, Sec. 2.3-2.4).

Both nets map a batch of per-sample *descriptors* to y = log10(sigma / sigma_ref), the
cross-section relative to a per-molecule scale (see `opacity_jax.xsec_experiment`). One net
serves one molecule; the seven molecules are seven parameter sets on the training loop's entity
axis, so "the molecule one-hot selects the net" is the entity index, never an input feature.

Descriptors, x (B, N_DESCRIPTORS) float32, columns (the DESCRIPTORS names):

  0 lam   lambda / lambda_max          (lambda_max: largest wavelength of the molecule's grid)
  1 v     vibrational quantum number   (integer-valued float)
  2 J     rotational quantum number    (integer-valued float)
  3 v_rel v / v_max of the molecule    (continuous v encoding)
  4 e_rel E_vJ / |E_min| of the molecule, in [-1, 0)  (continuous level-energy encoding)
  5 w_rel photon energy h c / lambda / |E_min|
  6 u     (lambda - lambda_min) / (lambda_max - lambda_min), position in the molecule's grid

Features are built inside the nets (not stored: a dense one-hot table of 7 molecules x ~10^5
padded samples x ~150 columns would take most of a gigabyte), and the one-hot blocks of the first
layer are row gathers (`OneHotDense`, identical to a Dense layer on the one-hot vector):

* published (`XsecMLP`): [lam, onehot(v; n_v), onehot(J; n_j)] -> ReLU MLP, dropout -> y;
* residual on a physics prior (`XsecPrior`): y = log10(sigma_prior / sigma_ref) + g(...), the
  prior from the bound states and potential curves (`physics.reflection`), passed in as extra
  columns after the descriptors (PRIOR_FEATURES);
* physics-informed (`XsecPINN`): the same plus 1/lam, (J+1)/(2J+1), J/(2J+1), the fragments'
  kinetic energy and a Fourier encoding of the wavelength, and the output has the
  photodissociation form built in (Srekovic et al. 2020, paper eq. 1):

      sigma / sigma_ref = (1 / lam) [ (J+1)/(2J+1) A + J/(2J+1) B ],   A, B = softplus(net) >= 0

  (sigma is proportional to the photon energy, i.e. to 1/lambda, times the two J' = J +- 1
  branch strengths |D|^2).

`v_encoding` picks how v enters: 'onehot' (the published design; cannot generalise to a v never
seen in training, whose first-layer weights stay at their random initial values), 'continuous'
([v_rel, e_rel, sqrt(-e_rel)] instead of the one-hot; for held-out whole v levels) or 'both'.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

DESCRIPTORS = ("lam", "v", "J", "v_rel", "e_rel", "w_rel", "u")
N_DESCRIPTORS = len(DESCRIPTORS)
V_ENCODINGS = ("onehot", "continuous", "both")

_LN10 = 2.302585092994046


def _check(v_encoding: str):
    if v_encoding not in V_ENCODINGS:
        raise ValueError(f"v_encoding must be one of {V_ENCODINGS}, got {v_encoding!r}")


def published_features(x, n_v: int, n_j: int, v_encoding: str = "onehot", extra=None):
    """Dense feature matrix the first layer sees (for inspection and tests; the nets gather).

    Args:
      x: (B, N_DESCRIPTORS) descriptors (module docstring). n_v / n_j: one-hot widths (largest
        v / J of any molecule + 1; out-of-range values give all-zero rows). v_encoding: see
        V_ENCODINGS. extra: optional (B, E) continuous features appended to the continuous part.
    Returns:
      (B, F) float32: [lam, (v_rel, e_rel, sqrt(-e_rel)) if continuous, extra, onehot(v) if
      one-hot, onehot(J)] - the row order of the first layer's kernel.
    """
    cont, idx, sizes = _split_inputs(x, n_v, n_j, v_encoding)
    if extra is not None:
        cont = jnp.concatenate([cont, extra], axis=-1)
    onehots = [nn.one_hot(i, n) for i, n in zip(idx, sizes)]
    return jnp.concatenate([cont] + onehots, axis=-1).astype(jnp.float32)


def branch_factors(j):
    """Hoenl-London-like branch weights of paper eq. 1 for rotational quantum numbers j (B,).

    Returns ((J+1)/(2J+1), J/(2J+1)), each (B,) float; the second is 0 at J = 0.
    """
    j = jnp.asarray(j, jnp.float32)
    return (j + 1.0) / (2.0 * j + 1.0), j / (2.0 * j + 1.0)


class OneHotDense(nn.Module):
    """Dense layer on [continuous features, one-hot(idx_1; n_1), one-hot(idx_2; n_2), ...].

    Mathematically nn.Dense on the concatenated features (one kernel (C + sum n_k, width),
    LeCun-normal init over that fan-in, zero bias), but the one-hot blocks are row gathers, so
    the ~150-wide one-hot input costs nothing. Out-of-range indices give the zero one-hot row.
    Call: cont (B, C), idx tuple of (B,) int arrays -> (B, width).
    """

    width: int
    sizes: Sequence[int]

    @nn.compact
    def __call__(self, cont, idx):
        c = cont.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (c + sum(self.sizes), self.width))
        bias = self.param("bias", nn.initializers.zeros, (self.width,))
        h = cont @ kernel[:c] + bias
        off = c
        for i, n in zip(idx, self.sizes):
            ok = (i >= 0) & (i < n)
            h = h + kernel[off + jnp.clip(i, 0, n - 1)] * ok[:, None]
            off += n
        return h


def _split_inputs(x, n_v: int, n_j: int, v_encoding: str):
    """(cont (B, C), idx tuple, sizes) equivalent to published_features(x, ...)."""
    _check(v_encoding)
    cont = [x[:, 0:1]]
    idx, sizes = [], []
    if v_encoding in ("onehot", "both"):
        idx.append(jnp.round(x[:, 1]).astype(jnp.int32))
        sizes.append(n_v)
    if v_encoding in ("continuous", "both"):
        # sqrt(-e_rel) is close to linear in v near the dissociation limit (a Morse-like
        # well's levels crowd there), so it helps the net interpolate between v.
        cont += [x[:, 3:4], x[:, 4:5], jnp.sqrt(jnp.maximum(-x[:, 4:5], 0.0))]
    idx.append(jnp.round(x[:, 2]).astype(jnp.int32))
    sizes.append(n_j)
    return jnp.concatenate(cont, axis=-1), tuple(idx), tuple(sizes)


def _trunk(cont, idx, sizes, hidden: Sequence[int], dropout: float, train: bool):
    """ReLU MLP whose first layer is a OneHotDense; dropout after every hidden layer."""
    h = cont
    for k, width in enumerate(hidden):
        h = OneHotDense(width, sizes)(h, idx) if k == 0 else nn.Dense(width)(h)
        h = nn.relu(h)
        if dropout > 0:
            h = nn.Dropout(dropout, deterministic=not train)(h)
    return h


class XsecMLP(nn.Module):
    """Published design: [lam, onehot v, onehot J] -> ReLU MLP with dropout -> y (B,).

    Attributes: n_v, n_j one-hot widths; hidden layer widths; dropout rate (paper: 0.2);
    v_encoding (V_ENCODINGS). Call: x (B, N_DESCRIPTORS) -> (B,) log10(sigma / sigma_ref).
    """

    n_v: int
    n_j: int
    hidden: Sequence[int] = (256, 256, 256)
    dropout: float = 0.2
    v_encoding: str = "onehot"

    @nn.compact
    def __call__(self, x, train: bool = False):
        cont, idx, sizes = _split_inputs(x, self.n_v, self.n_j, self.v_encoding)
        h = _trunk(cont, idx, sizes, self.hidden, self.dropout, train)
        return nn.Dense(1)(h)[..., 0]

    def features(self, x):
        """(B, F) input features (for inspection / tests)."""
        return published_features(x, self.n_v, self.n_j, self.v_encoding)


def log_softplus(a):
    """log(softplus(a)), finite for every finite a (= a below -15, where softplus ~ e^a)."""
    safe = jnp.maximum(a, -15.0)
    return jnp.where(a > -15.0, jnp.log(nn.softplus(safe)), a)


class XsecPINN(nn.Module):
    """Physics-informed variant: paper eq. 1 built into the output (module docstring).

    Inputs: the published features plus 1/lam (photon energy), (J+1)/(2J+1), J/(2J+1), the
    fragments' kinetic energy (E_vJ + h c / lambda) / |E_min| up to a constant (`kinetic_energy`;
    the variable sigma really depends on: curves of one v at neighbouring J nearly coincide on
    it), and `n_fourier` sine/cosine pairs of the position u in the molecule's wavelength window
    at frequencies pi x geomspace(1, fourier_max) (sigma(lambda) maps the oscillating |chi_v|^2
    of the bound level onto the photon energy - the reflection principle - so it has up to ~v/2
    lobes in the window, which a ReLU net of one scalar input learns only slowly).
    The net's two outputs a, b give the non-negative branch strengths (J' = J + 1, J - 1) [units
    of sigma_ref] A = softplus(a), B = softplus(b), and

        y = log10( (1/lam) [ (J+1)/(2J+1) A + J/(2J+1) B ] ),

    evaluated in log space (log softplus is ~a for a << 0) so A, B can span many decades.
    Call: x (B, N_DESCRIPTORS) -> (B,) y; `branches(x)` -> (A, B), each (B,) >= 0.
    """

    n_v: int
    n_j: int
    hidden: Sequence[int] = (256, 256, 256)
    dropout: float = 0.0
    v_encoding: str = "onehot"
    kinetic_energy: bool = True
    n_fourier: int = 24
    fourier_max: float = 128.0

    def _extra(self, x):
        hp, hm = branch_factors(x[:, 2])
        parts = [1.0 / x[:, 0:1], hp[:, None], hm[:, None]]
        if self.kinetic_energy:
            parts.append(x[:, 4:5] + x[:, 5:6])
        if self.n_fourier > 0:
            k = jnp.pi * jnp.geomspace(1.0, self.fourier_max, self.n_fourier)
            parts += [jnp.sin(x[:, 6:7] * k), jnp.cos(x[:, 6:7] * k)]
        return jnp.concatenate(parts, axis=-1)

    def _features(self, x):
        return published_features(x, self.n_v, self.n_j, self.v_encoding, self._extra(x))

    @nn.compact
    def _raw_branches(self, x, train: bool):
        cont, idx, sizes = _split_inputs(x, self.n_v, self.n_j, self.v_encoding)
        cont = jnp.concatenate([cont, self._extra(x)], axis=-1)
        h = _trunk(cont, idx, sizes, self.hidden, self.dropout, train)
        ab = nn.Dense(2)(h)
        return ab[:, 0], ab[:, 1]

    def __call__(self, x, train: bool = False):
        a, b = self._raw_branches(x, train)
        hp, hm = branch_factors(x[:, 2])
        # log h_- at J = 0 is -inf; -80 keeps logaddexp and its gradient finite while
        # contributing e^-80 of nothing.
        log_hm = jnp.where(hm > 0, jnp.log(jnp.maximum(hm, 1e-30)), -80.0)
        s = jnp.logaddexp(jnp.log(hp) + log_softplus(a), log_hm + log_softplus(b))
        return (s - jnp.log(x[:, 0])) / _LN10

    def branches(self, x):
        """(A, B): the non-negative branch strengths [sigma_ref units], each (B,)."""
        a, b = self._raw_branches(x, False)
        return nn.softplus(a), nn.softplus(b)

    def features(self, x):
        """(B, F) input features (for inspection / tests)."""
        return self._features(x)


PRIOR_FEATURES = ("log_prior", "node_depth", "r_c_rel")
N_PRIOR_FEATURES = len(PRIOR_FEATURES)
# With XsecPrior.shift_head, after PRIOR_FEATURES: the prior's local slope and curvature along
# the molecule's wavelength grid (serve.xsec.prior_slope_features).
SHIFT_FEATURES = ("prior_slope", "prior_curvature")
N_SHIFT_FEATURES = len(SHIFT_FEATURES)


class XsecPrior(nn.Module):
    """Residual net on a semiclassical prior: y = y_prior + g(features) (B,).

    Inputs: x (B, N_DESCRIPTORS + N_PRIOR_FEATURES): the descriptors, then the prior features of
    `physics.reflection.prior_features` (PRIOR_FEATURES): log_prior = log10(sigma_prior /
    sigma_ref) (floored like the target), node_depth (how far sigma_prior sits above its node
    fill, in units of 3 dex: ~0 at a node of chi_vJ) and r_c_rel (turning point of the J' = J + 1
    branch over the lower curve's r_e). g sees the published features (v_encoding), 1/lam, the
    branch factors, the fragments' kinetic energy, n_fourier sin/cos pairs of u and the prior
    features; its output layer starts at zero, so an untrained net is exactly the prior, and is
    multiplied by residual_scale [dex] (the prior's errors are ~1e-3 dex: at unit scale one Adam
    step moves the output by more than that, and training never settles below the prior).

    shift_head: x carries SHIFT_FEATURES too (s, c: the first and second differences of the
    floored log10 sigma_prior per step of the molecule's wavelength grid [dex]) and

        g = residual_scale (a + b s + c_2 c),   (a, b, c_2) = Dense(3, zero init)(trunk),

    the first terms of log sigma_prior(lambda - delta) + a: the prior's semiclassical error is
    mostly a small misplacement of the lobes of sigma(lambda) (a phase error of the Airy form),
    whose log error b s alternates sign from lobe to lobe. Where the lobes are a few grid
    points wide (Li2+, v up to 79: the prior's log error has lag-1 autocorrelation -0.02 along
    the grid, reports/xsec_prior_calibrated/README.md) no smooth g of (lambda, v, J, E) can
    represent it, while a smooth b(v, J, lambda) times s can (s correlates 0.5-0.65 with it).
    Call: x -> (B,) log10(sigma / sigma_ref); `residual(x)` -> g (B,) [dex].
    """

    n_v: int
    n_j: int
    hidden: Sequence[int] = (128, 128, 128)
    dropout: float = 0.0
    v_encoding: str = "continuous"
    n_fourier: int = 8
    fourier_max: float = 32.0
    residual_scale: float = 0.01
    shift_head: bool = False

    @property
    def n_inputs(self) -> int:
        return N_DESCRIPTORS + N_PRIOR_FEATURES + (N_SHIFT_FEATURES if self.shift_head else 0)

    def _extra(self, x):
        hp, hm = branch_factors(x[:, 2])
        parts = [1.0 / x[:, 0:1], hp[:, None], hm[:, None], x[:, 4:5] + x[:, 5:6],
                 x[:, N_DESCRIPTORS:self.n_inputs]]
        if self.n_fourier > 0:
            k = jnp.pi * jnp.geomspace(1.0, self.fourier_max, self.n_fourier)
            parts += [jnp.sin(x[:, 6:7] * k), jnp.cos(x[:, 6:7] * k)]
        return jnp.concatenate(parts, axis=-1)

    @nn.compact
    def residual(self, x, train: bool = False):
        """g(x) (B,) [dex]: the learned correction to log10 sigma_prior."""
        names = PRIOR_FEATURES + (SHIFT_FEATURES if self.shift_head else ())
        if x.shape[-1] != self.n_inputs:
            raise ValueError(f"XsecPrior (shift_head={self.shift_head}) needs x with "
                             f"{self.n_inputs} columns (descriptors + {names}), got "
                             f"{x.shape[-1]}")
        cont, idx, sizes = _split_inputs(x, self.n_v, self.n_j, self.v_encoding)
        cont = jnp.concatenate([cont, self._extra(x)], axis=-1)
        h = _trunk(cont, idx, sizes, self.hidden, self.dropout, train)
        if not self.shift_head:
            return self.residual_scale * nn.Dense(1, kernel_init=nn.initializers.zeros)(h)[..., 0]
        abc = nn.Dense(3, kernel_init=nn.initializers.zeros)(h)
        k = N_DESCRIPTORS + N_PRIOR_FEATURES
        return self.residual_scale * (abc[:, 0] + abc[:, 1] * x[:, k] + abc[:, 2] * x[:, k + 1])

    def __call__(self, x, train: bool = False):
        return x[:, N_DESCRIPTORS] + self.residual(x, train)

    def features(self, x):
        """(B, F) input features (for inspection / tests)."""
        return published_features(x, self.n_v, self.n_j, self.v_encoding, self._extra(x))


MODELS = {"xsec": XsecMLP, "xsec_pinn": XsecPINN, "xsec_prior": XsecPrior}


def make_model(name: str, n_v: int, n_j: int, hidden: Sequence[int], dropout: float,
               v_encoding: str = "onehot", kinetic_energy: bool = True, n_fourier: int = 24,
               fourier_max: float = 128.0, shift_head: bool = False) -> nn.Module:
    """The net named by config.model (MODELS: 'xsec', 'xsec_pinn', 'xsec_prior'); ValueError
    otherwise.

    kinetic_energy applies to 'xsec_pinn' only (XsecPINN); n_fourier / fourier_max to
    'xsec_pinn' and 'xsec_prior' (XsecPrior); shift_head to 'xsec_prior' only.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    _check(v_encoding)
    if int(n_v) < 1 or int(n_j) < 1:
        raise ValueError(f"n_v and n_j must be >= 1, got {n_v}, {n_j}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    kw = dict(n_v=int(n_v), n_j=int(n_j), hidden=tuple(int(h) for h in hidden),
              dropout=float(dropout), v_encoding=v_encoding)
    if name in ("xsec_pinn", "xsec_prior"):
        if int(n_fourier) < 0 or float(fourier_max) < 1.0:
            raise ValueError(f"n_fourier must be >= 0 and fourier_max >= 1, got {n_fourier}, "
                             f"{fourier_max}")
        kw.update(n_fourier=int(n_fourier), fourier_max=float(fourier_max))
        if name == "xsec_pinn":
            kw["kinetic_energy"] = bool(kinetic_energy)
        else:
            kw["shift_head"] = bool(shift_head)
    return MODELS[name](**kw)
