"""Active learning against the LTE generator: spend new spectra where the ensemble disagrees.

Per element, start from a sparse random subset of the (T, rho) grid; then repeat: train a
K-member ensemble of smooth MLPs (log T, log rho) -> log10 spectrum, all elements x members as
entities of the one training loop; score every unqueried candidate node by the ensemble's
disagreement (RMS over energy bins of the member standard deviation of log10 kappa); query the
oracle at the top-k, skipping candidates next to a node already picked in the same batch
(`select_batch`); retrain. The random strategy draws k candidates uniformly instead, from the
same initial set, test set and training seeds, so the two curves differ only in what was asked.

The oracle is `OpacityGenerator` (standing in for an atomic-structure code). Its cost is per
temperature (ion spectra) rather than per point, so `Oracle` evaluates an element's whole
candidate grid once, lazily, and each query reveals one of those spectra and is counted; this is
exactly what calling `spectra(z, T, rho, edges)` at the node returns (the generator is
deterministic), at a fraction of the cost.

Held-out test nodes (a seeded fraction of the grid) are never candidates and never queried.
Error on them: mean over test spectra of the RMS over bins of log10(kappa + eps) [dex], averaged
over elements; plus the median relative error of the band-limited Planck mean.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from opacity_jax.data import generator, grid
from opacity_jax.experiments import ensemble as ens
from opacity_jax.models.mlp import SmoothMLP
from opacity_jax.physics import elements as _el
from opacity_jax.train import loop
from opacity_jax.train import workdir as workdir_lib
from opacity_jax.train.experiment import regression_task
from opacity_jax.train.task import pack_ragged

STRATEGIES = ("active", "random")


class Oracle:
    """Counts and serves generator spectra at (element, T-index, rho-index) grid nodes.

    Args:
      elements: symbols or Z; temperature_ev (nT,), density_gcc (nR,) the candidate grid;
      energy_edges_ev (nE + 1,); gen: an OpacityGenerator (default configuration if None).
    """

    def __init__(self, elements, temperature_ev, density_gcc, energy_edges_ev, gen=None):
        self.elements = list(elements)
        self.temperature_ev = np.asarray(temperature_ev, np.float64)
        self.density_gcc = np.asarray(density_gcc, np.float64)
        self.edges = np.asarray(energy_edges_ev, np.float64)
        self.gen = gen or generator.OpacityGenerator()
        self._grid: Dict[int, np.ndarray] = {}
        self.n_queries = 0

    def _element_grid(self, e: int) -> np.ndarray:
        if e not in self._grid:
            out = self.gen.grid_spectra(self.elements[e], self.temperature_ev, self.density_gcc,
                                        self.edges)
            self._grid[e] = out["kappa"]
        return self._grid[e]

    def query(self, e: int, nodes: np.ndarray) -> np.ndarray:
        """(n, nE) spectra [cm^2/g] of element position e at nodes (n, 2) = (iT, iR); counted."""
        nodes = np.asarray(nodes, np.int64).reshape(-1, 2)
        self.n_queries += len(nodes)
        return self._element_grid(e)[nodes[:, 0], nodes[:, 1]]

    def truth(self, e: int, nodes: np.ndarray) -> np.ndarray:
        """Spectra for scoring held-out nodes (not counted as queries)."""
        nodes = np.asarray(nodes, np.int64).reshape(-1, 2)
        return self._element_grid(e)[nodes[:, 0], nodes[:, 1]]


@dataclasses.dataclass
class ActiveConfig:
    """Knobs of `run_experiment`. Their values live in configs/active.py only (build one with
    `config_from(config)`); the grid sizes default to the NIST-LANL grid's."""

    elements: tuple
    n_energy: int
    log_eps: float
    n_initial: int
    rounds: int
    k: int
    test_fraction: float
    members: int
    hidden: tuple
    seeds: tuple
    diversity_radius: int
    train: dict
    n_temperature: int = grid.N_TEMPERATURES
    n_density: int = grid.N_DENSITIES

    def __post_init__(self):
        if isinstance(self.elements, str):
            self.elements = tuple(s.strip() for s in self.elements.split(",") if s.strip())
        for s in self.elements:
            _el.element_index(int(s) if str(s).isdigit() else s)   # raises on unknown names
        checks = [("n_initial", self.n_initial >= 2, ">= 2"), ("rounds", self.rounds >= 1, ">= 1"),
                  ("k", self.k >= 1, ">= 1"),
                  ("members", self.members >= 2, ">= 2: disagreement needs two"),
                  ("test_fraction", 0 < self.test_fraction < 1, "in (0, 1)"),
                  ("n_energy", self.n_energy >= 2, ">= 2"),
                  ("seeds", len(self.seeds) >= 1, "at least one seed")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"active.{name} = {getattr(self, name)!r} is out of range "
                                 f"(allowed: {allowed})")
        n_nodes = self.n_temperature * self.n_density
        n_test = int(round(self.test_fraction * n_nodes))
        need = self.n_initial + self.rounds * self.k
        if need > n_nodes - n_test:
            raise ValueError(f"n_initial + rounds * k = {need} exceeds the {n_nodes - n_test} "
                             "candidate nodes per element")


def _features(t_ev, r_gcc):
    return np.stack([np.log10(t_ev), np.log10(r_gcc)], -1)


class Learner:
    """Model, task and compiled trainer shared by every round, strategy and seed.

    Each element's queried set is padded to the final budget, so every round has the same
    array shapes and the step, evaluation and prediction compile once per experiment.
    """

    def __init__(self, cfg: ActiveConfig, n_out: int, n_pad: int):
        self.cfg, self.n_pad = cfg, int(n_pad)
        self.model = SmoothMLP(hidden=tuple(cfg.hidden), n_out=int(n_out))
        self.task = regression_task(self.model, "active_mlp")
        self.trainers: Dict[int, loop.Trainer] = {}

    def fit(self, xs_all, ys_all, queried, seed: int):
        """Train K members per element on its queried nodes; return member predictions
        (E, K, n, nE) of every node in log10 units, and the seconds taken."""
        rows, stats = [], []
        for e in range(len(queried)):
            y = ys_all[e][queried[e]]
            m, s = y.mean(), max(y.std(), 1e-6)
            stats.append((m, s))
            rows.append({"x": xs_all[queried[e]].astype(np.float32),
                         "y": ((y - m) / s).astype(np.float32)})
        data = pack_ragged(rows, pad_to=self.n_pad)
        if seed not in self.trainers:
            lcfg = loop.LoopConfig.from_config(dict(self.cfg.train, seed=int(seed)))
            self.trainers[seed] = loop.Trainer(self.task, lcfg)
        tr = self.trainers[seed]
        t0 = time.perf_counter()
        # No validation split on a few dozen points: early stopping is off and the loop's
        # "val" is the training data, so the kept params are the best-fitting ones.
        res = ens.train_ensemble(self.task, data, data, tr.cfg, self.cfg.members, trainer=tr)
        mp = res.member_params()
        preds = []
        for e in range(len(queried)):
            p_e = jax.tree_util.tree_map(lambda a: a[e], mp)
            out = ens.predict_members(self.model.apply, p_e, xs_all.astype(np.float32))
            preds.append(out * stats[e][1] + stats[e][0])
        return np.stack(preds), time.perf_counter() - t0


def _score(cfg, preds, ys_all, kappa_all, test, edges, t_ev):
    """Test metrics from member predictions (E, K, n, nE) and log targets (E, n, nE)."""
    from opacity_jax import _compat
    from opacity_jax.physics import planck
    mean = preds.mean(1)
    rms = np.sqrt(np.mean((mean[:, test] - ys_all[:, test]) ** 2, -1))         # (E, nTest)
    kap = np.maximum(10.0 ** mean[:, test] - cfg.log_eps, 0.0)
    with _compat.enable_x64():
        tt = jnp.asarray(np.broadcast_to(t_ev[test], kap.shape[:2]))
        pp = np.asarray(planck.planck_mean(jnp.asarray(kap), edges, tt))
        pt = np.asarray(planck.planck_mean(jnp.asarray(kappa_all[:, test]), edges, tt))
    with np.errstate(divide="ignore", invalid="ignore"):
        prel = np.abs(pp / pt - 1.0)
    std = preds.std(1).mean(-1)[:, test]                                       # (E, nTest)
    return {"rms_dex_mean": float(rms.mean()), "rms_dex_median": float(np.median(rms)),
            "per_element_rms_dex_mean": rms.mean(1).tolist(),
            "planck_rel_median": float(np.nanmedian(prel)),
            "spread_error_corr": float(np.corrcoef(std.ravel(), rms.ravel())[0, 1])}


def run_strategy(cfg: ActiveConfig, strategy: str, seed: int, oracle: Oracle,
                 progress: bool = False, learner: Optional[Learner] = None) -> dict:
    """One active or random run; returns the learning curve (list of per-round records).

    learner: share one across runs of an experiment to compile the training step once.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    learner = learner or Learner(cfg, oracle.edges.size - 1, cfg.n_initial + cfg.rounds * cfg.k)
    n_t, n_r = oracle.temperature_ev.size, oracle.density_gcc.size
    n_nodes = n_t * n_r
    nodes = np.stack(np.unravel_index(np.arange(n_nodes), (n_t, n_r)), -1)
    t_ev = oracle.temperature_ev[nodes[:, 0]]
    xs = _features(t_ev, oracle.density_gcc[nodes[:, 1]])
    xs = (xs - xs.mean(0)) / xs.std(0)
    n_el = len(oracle.elements)
    # Test set and initial design depend on the seed only, so both strategies share them.
    rng = np.random.default_rng([int(seed), 7])
    test = np.zeros((n_el, n_nodes), bool)
    queried = np.zeros((n_el, n_nodes), bool)
    for e in range(n_el):
        perm = rng.permutation(n_nodes)
        n_test = int(round(cfg.test_fraction * n_nodes))
        test[e, perm[:n_test]] = True
        queried[e, perm[n_test:n_test + cfg.n_initial]] = True
    pick_rng = np.random.default_rng([int(seed), 8])
    n_e = oracle.edges.size - 1
    ys = np.zeros((n_el, n_nodes, n_e))
    kap = np.zeros((n_el, n_nodes, n_e))
    for e in range(n_el):
        q = np.flatnonzero(queried[e])
        kap[e, q] = oracle.query(e, nodes[q])
        kap[e, test[e]] = oracle.truth(e, nodes[test[e]])
    ys = np.log10(kap + cfg.log_eps)
    curve = []
    for rnd in range(cfg.rounds + 1):
        preds, secs = learner.fit(xs, ys, queried, seed)
        sc = {}
        for e in range(n_el):
            m = _score(cfg, preds[e:e + 1], ys[e:e + 1], kap[e:e + 1], test[e], oracle.edges,
                       t_ev)
            sc[e] = m
        rec = {"round": rnd, "queried_per_element": int(queried[0].sum()),
               "queried_total": int(queried.sum()),
               "rms_dex_mean": float(np.mean([sc[e]["rms_dex_mean"] for e in sc])),
               "rms_dex_median": float(np.mean([sc[e]["rms_dex_median"] for e in sc])),
               "planck_rel_median": float(np.mean([sc[e]["planck_rel_median"] for e in sc])),
               "per_element_rms_dex_mean": [sc[e]["rms_dex_mean"] for e in sc],
               "spread_error_corr": float(np.mean([sc[e]["spread_error_corr"] for e in sc])),
               "train_seconds": round(secs, 2)}
        curve.append(rec)
        logging.info("%s seed %d round %d: %s", strategy, seed, rnd, rec)
        if progress:
            print(f"{strategy} seed={seed} round={rnd} queried/elem={rec['queried_per_element']}"
                  f" rms={rec['rms_dex_mean']:.4f} dex", flush=True)
        if rnd == cfg.rounds:
            break
        for e in range(n_el):
            cand = np.flatnonzero(~queried[e] & ~test[e])
            if strategy == "active":
                # Disagreement: RMS over bins of the member std of log10 kappa [dex].
                score = np.sqrt(np.mean(preds[e].std(0) ** 2, -1))[cand]
                pick = select_batch(score, nodes[cand], cfg.k, cfg.diversity_radius)
                pick = cand[pick]
            else:
                pick = pick_rng.choice(cand, size=min(cfg.k, cand.size), replace=False)
            kap[e, pick] = oracle.query(e, nodes[pick])
            ys[e, pick] = np.log10(kap[e, pick] + cfg.log_eps)
            queried[e, pick] = True
    return {"strategy": strategy, "seed": int(seed), "curve": curve}


def select_batch(score: np.ndarray, nodes: np.ndarray, k: int, radius: int = 1) -> np.ndarray:
    """Greedy top-k by score with local exclusion: after a pick, candidates within `radius`
    grid steps (Chebyshev) of it are skipped for this batch, unless nothing else is left.

    Top-k alone spends a batch on one high-disagreement patch, whose members' errors are
    correlated; one query there already lowers the disagreement of its neighbours.

    Args:
      score: (n,) disagreement per candidate; nodes: (n, 2) grid indices; k: batch size;
      radius: exclusion radius in grid steps (0 = plain top-k).
    Returns:
      (min(k, n),) positions into score, in pick order.
    """
    order = np.argsort(-np.asarray(score), kind="stable")
    picked: list = []
    blocked = np.zeros(len(order), bool)
    for i in order:
        if len(picked) == k:
            break
        if blocked[i]:
            continue
        picked.append(int(i))
        if radius > 0:
            blocked |= np.max(np.abs(nodes - nodes[i]), axis=1) <= radius
    for i in order:        # too few unblocked candidates: fill with the next best
        if len(picked) == k:
            break
        if int(i) not in picked:
            picked.append(int(i))
    return np.asarray(picked, np.int64)


def queries_to_reach(curve_q, curve_err, target: float) -> Optional[float]:
    """Smallest query count at which a (monotone-interpolated) curve reaches `target` error.

    Linear interpolation between rounds; None if never reached.
    """
    q = np.asarray(curve_q, np.float64)
    err = np.asarray(curve_err, np.float64)
    for i in range(len(err)):
        if err[i] <= target:
            if i == 0:
                return float(q[0])
            # Linear between round i-1 (above target) and round i (at or below).
            f = (err[i - 1] - target) / max(err[i - 1] - err[i], 1e-300)
            return float(q[i - 1] + f * (q[i] - q[i - 1]))
    return None


def run_experiment(cfg: ActiveConfig, out_dir=None, progress: bool = False) -> dict:
    """Active vs random over cfg.seeds; writes active_learning.json and the curve plot.

    Returns a dict with per-run curves, seed-averaged curves, and the headline comparison:
    queries (per element, counting the initial design, and counting acquisitions only) at which
    the active curve reaches the random strategy's final error, and their ratios (target <= 0.6).
    """
    t0 = time.perf_counter()
    edges = grid.energy_edges_ev(cfg.n_energy)
    oracle = Oracle(cfg.elements, grid.temperatures_ev(cfg.n_temperature),
                    grid.densities_gcc(cfg.n_density), edges)
    learner = Learner(cfg, cfg.n_energy, cfg.n_initial + cfg.rounds * cfg.k)
    runs = []
    for seed in cfg.seeds:
        for strategy in STRATEGIES:
            runs.append(run_strategy(cfg, strategy, seed, oracle, progress, learner))
    avg = {}
    for strategy in STRATEGIES:
        cs = [r["curve"] for r in runs if r["strategy"] == strategy]
        avg[strategy] = {
            "queried_per_element": [c["queried_per_element"] for c in cs[0]],
            "rms_dex_mean": np.mean([[c["rms_dex_mean"] for c in cc] for cc in cs], 0).tolist(),
            "rms_dex_mean_std": np.std([[c["rms_dex_mean"] for c in cc] for cc in cs],
                                       0).tolist(),
            "planck_rel_median": np.mean([[c["planck_rel_median"] for c in cc] for cc in cs],
                                         0).tolist()}
    q = np.asarray(avg["active"]["queried_per_element"], np.float64)
    target = avg["random"]["rms_dex_mean"][-1]
    reach = queries_to_reach(q, avg["active"]["rms_dex_mean"], target)
    final_q = float(q[-1])
    headline = {
        "metric": "mean over test spectra of RMS log10 error [dex], averaged over elements "
                  "and seeds",
        "random_final_error": target, "active_final_error": avg["active"]["rms_dex_mean"][-1],
        "random_final_queries_per_element": final_q,
        "active_queries_to_reach_random_final": reach,
        "ratio_total_queries": None if reach is None else reach / final_q,
        "ratio_acquired_queries": (None if reach is None else
                                   (reach - cfg.n_initial) / (final_q - cfg.n_initial)),
        "ratio_target": 0.6,
    }
    result = {"config": dataclasses.asdict(cfg), "headline": headline, "mean_curves": avg,
              "runs": runs, "oracle_queries_counted": oracle.n_queries,
              "seconds": round(time.perf_counter() - t0, 1)}
    if out_dir is not None:
        out = Path(out_dir)
        workdir_lib.write_json(out / "active_learning.json", result)
        plot_curves(avg, out / "active_vs_random.png", cfg)
    return result


def plot_curves(avg: dict, path, cfg: ActiveConfig) -> Path:
    """Held-out error vs queried spectra per element, active and random (mean +- std)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for s, c in (("active", "C3"), ("random", "C0")):
        q = np.asarray(avg[s]["queried_per_element"])
        m = np.asarray(avg[s]["rms_dex_mean"])
        sd = np.asarray(avg[s]["rms_dex_mean_std"])
        axes[0].plot(q, m, "o-", color=c, ms=3, label=s)
        axes[0].fill_between(q, m - sd, m + sd, color=c, alpha=0.2)
        axes[1].plot(q, avg[s]["planck_rel_median"], "o-", color=c, ms=3, label=s)
    axes[0].set_ylabel("test RMS log10 kappa error [dex]")
    axes[1].set_ylabel("median |Planck mean rel. error|")
    for a in axes:
        a.set_xlabel("queried spectra per element")
        a.set_yscale("log")
        a.legend(fontsize=8)
    fig.suptitle(f"active vs random: {','.join(map(str, cfg.elements))}, {cfg.n_energy} bins, "
                 f"K={cfg.members}, seeds {list(cfg.seeds)}", fontsize=9)
    fig.tight_layout()
    return ens.save_figure(fig, path)


def config_from(c) -> ActiveConfig:
    """ActiveConfig from a configs/active.py ConfigDict (seeds = seed, seed + 1, ...)."""
    return ActiveConfig(elements=str(c.elements), n_energy=int(c.n_energy),
                        log_eps=float(c.log_eps), n_initial=int(c.n_initial),
                        rounds=int(c.rounds), k=int(c.k), test_fraction=float(c.test_fraction),
                        members=int(c.members), hidden=tuple(c.hidden),
                        seeds=tuple(int(c.seed) + i for i in range(int(c.n_seeds))),
                        diversity_radius=int(c.diversity_radius), train=dict(c.train))


def summary_text(res: dict) -> str:
    """Headline lines of a `run_experiment` result."""
    h = res["headline"]
    reach = h["active_queries_to_reach_random_final"]
    lines = [f"random: final error {h['random_final_error']:.4g} dex after "
             f"{h['random_final_queries_per_element']:.0f} spectra per element",
             f"active: final error {h['active_final_error']:.4g} dex; reaches random's final "
             f"error after {'never' if reach is None else f'{reach:.1f}'} spectra per element",
             f"ratio (all spectra) {h['ratio_total_queries']}, ratio (acquired only) "
             f"{h['ratio_acquired_queries']} (target <= {h['ratio_target']})",
             f"took {res['seconds']} s"]
    return "\n".join(lines)
