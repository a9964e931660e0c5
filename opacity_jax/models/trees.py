"""XGBoost tree ensembles with two inputs, evaluated exactly in JAX as a lookup table.

A boosted ensemble over two features is piecewise constant on the grid spanned by its split
thresholds: every tree compares feature f against some threshold t and goes left iff
`x_f < t` (xgboost's rule, in float32). Collect the distinct thresholds t^f_1 < ... < t^f_n of
each feature; a point's cell along f is the number of thresholds <= x_f (0..n), i.e.
`searchsorted(thresholds_f, x_f, side='right')`, and every point of a cell takes the same path
through every tree. So the ensemble equals a (n0 + 1, n1 + 1, n_out) table, filled by evaluating
the booster once at one representative point per cell: the cell's left threshold itself (it lies
in the cell because ties go right) and, for cell 0, a point below the first threshold. No
leaf values, base scores or tree-to-output maps are reimplemented: the table is xgboost's own
`predict` (with the early-stopped `iteration_range`) at those points, so it agrees with it
exactly wherever the float32 features agree.

Missing values are irrelevant here (the inputs are finite log T, log rho); categorical splits
are rejected.

    table = TreeTable.from_booster(booster, best_iteration)
    z = table(x)          # x (N, 2) float32 standardized features -> (N, n_out)
    tabs = stack_tables([table_nd, table_u])     # per-element tables on one entity axis
    z = lookup(tabs, element_pos, x)
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# 2 features x (256 + 1) cells is xgboost's default max_bin; guard against pathological models.
MAX_CELLS = 4_000_000


def _trees_json(booster) -> tuple:
    """(gbtree model dict, n_features) from the JSON model (thresholds there are float32-exact)."""
    model = json.loads(booster.save_raw("json"))
    gb = model["learner"]["gradient_booster"]
    if gb.get("name") == "dart":
        gb = gb["gbtree"]
    if gb.get("name") not in (None, "gbtree"):
        raise ValueError(f"only tree boosters can be tabulated, got {gb.get('name')!r}")
    return gb["model"], int(model["learner"]["learner_model_param"]["num_feature"])


def split_thresholds(booster, best_iteration: Optional[int] = None) -> list:
    """Distinct split thresholds per feature of the trees in rounds [0, best_iteration].

    Args:
      booster: a trained `xgboost.Booster` with 2 numerical features.
      best_iteration: last boosting round used by predictions (None = all rounds).
    Returns:
      [t0, t1]: sorted unique float32 arrays (n_f,), in the booster's feature units.
    """
    model, n_feat = _trees_json(booster)
    if n_feat != 2:
        raise ValueError(f"TreeTable needs a booster with 2 input features, got {n_feat}")
    trees = model["trees"]
    indptr = model.get("iteration_indptr")
    if best_iteration is not None and indptr and len(indptr) > best_iteration + 1:
        # Trees of later rounds only add thresholds (harmlessly finer cells); skip them anyway.
        trees = trees[: int(indptr[best_iteration + 1])]
    cuts = [[], []]
    for t in trees:
        left = np.asarray(t["left_children"])
        inner = left >= 0
        if np.any(np.asarray(t.get("split_type", [0] * left.size))[inner] != 0):
            raise ValueError("categorical splits cannot be tabulated")
        feat = np.asarray(t["split_indices"])[inner]
        cond = np.asarray(t["split_conditions"], np.float64)[inner].astype(np.float32)
        for f in (0, 1):
            cuts[f].append(cond[feat == f])
    return [np.unique(np.concatenate(c)).astype(np.float32) if c else np.zeros(0, np.float32)
            for c in cuts]


def representative_points(thresholds: np.ndarray) -> np.ndarray:
    """(n + 1,) float32 points, one inside each cell of sorted float32 `thresholds` (n,).

    Cell i >= 1 is [t_i, t_{i+1}) (ties go right), so t_i itself represents it; cell 0 is
    (-inf, t_1), represented by a point safely below t_1 (0 when there are no thresholds).
    """
    t = np.asarray(thresholds, np.float32)
    if t.size == 0:
        return np.zeros(1, np.float32)
    below = np.float32(t[0] - max(1.0, abs(float(t[0]))))
    return np.concatenate([[below], t]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TreeTable:
    """A two-feature tree ensemble as thresholds + cell table (see module docstring).

    Attributes:
      t0: (n0,) float32 sorted thresholds of feature 0; t1: (n1,) of feature 1.
      values: (n0 + 1, n1 + 1, n_out) float32 ensemble output per cell.
    """

    t0: np.ndarray
    t1: np.ndarray
    values: np.ndarray

    @classmethod
    def from_booster(cls, booster, best_iteration: Optional[int] = None) -> "TreeTable":
        """Tabulate `booster` as used by `booster.predict(..., iteration_range=(0, best + 1))`.

        Args:
          booster: trained `xgboost.Booster` with 2 features and n_out >= 1 outputs.
          best_iteration: early-stopped last round (None = all rounds).
        """
        import xgboost as xgb

        t0, t1 = split_thresholds(booster, best_iteration)
        n_cells = (t0.size + 1) * (t1.size + 1)
        if n_cells > MAX_CELLS:
            raise ValueError(f"{n_cells} cells exceed TreeTable.MAX_CELLS = {MAX_CELLS}")
        p0, p1 = np.meshgrid(representative_points(t0), representative_points(t1), indexing="ij")
        pts = np.stack([p0.ravel(), p1.ravel()], -1).astype(np.float32)
        rng = (0, best_iteration + 1) if best_iteration is not None else (0, 0)
        out = booster.predict(xgb.DMatrix(pts), iteration_range=rng)
        values = np.asarray(out, np.float32).reshape(t0.size + 1, t1.size + 1, -1)
        return cls(t0, t1, values)

    @property
    def n_out(self) -> int:
        """Number of outputs per point (latent dimension)."""
        return int(self.values.shape[-1])

    def __call__(self, x, tol: float = 0.0):
        """Ensemble output at x (N, 2) [booster feature units] -> (N, n_out), jit-able.

        tol >= 0 moves ties within `tol` of a threshold to the right-hand cell (see `lookup`).
        """
        return _lookup_one(jnp.asarray(self.t0), jnp.asarray(self.t1), jnp.asarray(self.values),
                           jnp.asarray(x, jnp.float32), tol)


def _cell(thresholds, x, tol):
    # Sorted thresholds: count of t <= x == searchsorted(side='right'). 'compare_all' is one
    # broadcast compare + sum, which suits GPUs and short (<= few hundred) threshold lists;
    # +inf padding (stacked tables) is never <= a finite x, so it never counts.
    return jnp.searchsorted(thresholds, x + tol, side="right", method="compare_all")


def _lookup_one(t0, t1, values, x, tol=0.0):
    i = _cell(t0, x[..., 0], tol)
    j = _cell(t1, x[..., 1], tol)
    return values[i, j]


@dataclasses.dataclass(frozen=True)
class StackedTables:
    """Per-entity TreeTables padded onto one leading entity axis (a pytree of arrays).

    Attributes:
      t0: (nZ, max n0) float32, padded with +inf; t1: (nZ, max n1);
      values: (nZ, max n0 + 1, max n1 + 1, n_out), padded cells are never addressed.
    """

    t0: jax.Array
    t1: jax.Array
    values: jax.Array


jax.tree_util.register_dataclass(StackedTables, data_fields=["t0", "t1", "values"],
                                 meta_fields=[])


def stack_tables(tables: Sequence[TreeTable]) -> StackedTables:
    """Pad a list of TreeTables (same n_out) onto one entity axis."""
    if not tables:
        raise ValueError("no tables to stack")
    n_out = {t.n_out for t in tables}
    if len(n_out) != 1:
        raise ValueError(f"tables have different output sizes {sorted(n_out)}")
    m0 = max(1, max(t.t0.size for t in tables))
    m1 = max(1, max(t.t1.size for t in tables))
    t0 = np.full((len(tables), m0), np.inf, np.float32)
    t1 = np.full((len(tables), m1), np.inf, np.float32)
    vals = np.zeros((len(tables), m0 + 1, m1 + 1, n_out.pop()), np.float32)
    for k, t in enumerate(tables):
        t0[k, :t.t0.size] = t.t0
        t1[k, :t.t1.size] = t.t1
        vals[k, :t.t0.size + 1, :t.t1.size + 1] = t.values
    return StackedTables(jnp.asarray(t0), jnp.asarray(t1), jnp.asarray(vals))


def lookup(tables: StackedTables, entity, x, tol: float = 0.0):
    """Output of entity `entity`'s ensemble at x (N, 2) -> (N, n_out); jit-able, entity traced.

    Args:
      tables: StackedTables. entity: int32 scalar position on the entity axis.
      x: (N, 2) float32 features in the boosters' units.
      tol: ties within tol of a threshold go right. 0 reproduces `booster.predict` bit for bit
        on float32 features; the device pipeline uses a small tol because its features are
        computed in float32 on the device, while xgboost's hist cuts sit exactly on the training
        features (grid nodes), which must land right of their threshold as in training.
    """
    return _lookup_one(tables.t0[entity], tables.t1[entity], tables.values[entity],
                       jnp.asarray(x, jnp.float32), tol)
