"""Latent regressors (T, rho) -> CAE latent code: the MLP lives in fcnn.MLP; this is XGBoost.

Per element, one booster maps standardized (log10 T, log10 rho) (and, with
latent.physics_features, the element's physics features: `models.physics_features`) to the
standardized 16-d latent
(500 trees, learning rate 0.05, leaf-wise growth with 31 leaves, early stopping after 100 rounds
without validation improvement; the multi-output strategy is configurable). Trees are piecewise
constant between their split thresholds: no interpolation between grid nodes and zero dkappa/dT,
so the Surrogate refuses derivatives through them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from opacity_jax.train import workdir as workdir_lib

# Inputs of every booster, in order; `physics_features.feature_names` follow when enabled.
FEATURE_NAMES = ("log_t", "log_rho")
XGB_DEFAULTS = dict(n_estimators=500, learning_rate=0.05, max_leaves=31,
                    early_stopping_rounds=100, multi_strategy="one_output_per_tree", nthread=1)


def _params(cfg: dict, seed: int) -> dict:
    return {"learning_rate": cfg["learning_rate"], "grow_policy": "lossguide",
            "max_leaves": int(cfg["max_leaves"]), "max_depth": 0, "tree_method": "hist",
            "multi_strategy": cfg["multi_strategy"], "objective": "reg:squarederror",
            "nthread": int(cfg["nthread"]), "seed": int(seed)}


def fit_xgb(x_train: np.ndarray, z_train: np.ndarray, x_val: np.ndarray, z_val: np.ndarray,
            cfg: Optional[dict] = None, seed: int = 0):
    """Fit one booster (n, F) -> (n, latent). Returns (booster, best_iteration)."""
    import xgboost as xgb

    c = dict(XGB_DEFAULTS, **(cfg or {}))
    if c["multi_strategy"] not in ("one_output_per_tree", "multi_output_tree"):
        raise ValueError(f"xgb.multi_strategy must be 'one_output_per_tree' or "
                         f"'multi_output_tree', got {c['multi_strategy']!r}")
    dtrain = xgb.DMatrix(x_train, label=z_train)
    dval = xgb.DMatrix(x_val, label=z_val)
    booster = xgb.train(_params(c, seed), dtrain, int(c["n_estimators"]),
                        evals=[(dval, "val")], early_stopping_rounds=int(c["early_stopping_rounds"]),
                        verbose_eval=False)
    return booster, int(booster.best_iteration)


def predict_xgb(booster, x: np.ndarray, best_iteration: int) -> np.ndarray:
    """(n, F) -> (n, latent) with the early-stopped number of rounds."""
    import xgboost as xgb

    out = booster.predict(xgb.DMatrix(np.asarray(x, np.float32)),
                          iteration_range=(0, best_iteration + 1))
    return np.asarray(out, np.float32).reshape(len(x), -1)


def feature_importance(booster, names=None) -> dict:
    """Total gain of each input {name: gain}, 0 for an unused feature; names default to
    FEATURE_NAMES ('log_t', 'log_rho'), the physics features follow them when used."""
    score = booster.get_score(importance_type="total_gain")
    return {n: float(score.get(f"f{i}", 0.0)) for i, n in enumerate(names or FEATURE_NAMES)}


def save_boosters(directory, boosters: dict, best_iterations: dict) -> None:
    """Write `<Z>.ubj` per element and `index.json` (atomic per file)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for z, b in boosters.items():
        tmp = d / f".{z}.tmp.ubj"   # suffix tells xgboost the format
        b.save_model(str(tmp))
        tmp.replace(d / f"{z}.ubj")
    workdir_lib.write_json(d / "index.json", {str(z): int(i) for z, i in best_iterations.items()})


def load_boosters(directory) -> tuple:
    """Inverse of save_boosters: ({Z: booster}, {Z: best_iteration})."""
    import xgboost as xgb

    d = Path(directory)
    index = json.loads((d / "index.json").read_text())
    boosters, best = {}, {}
    for z, it in index.items():
        b = xgb.Booster()
        b.load_model(str(d / f"{z}.ubj"))
        boosters[int(z)], best[int(z)] = b, int(it)
    return boosters, best
