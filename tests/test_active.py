"""Active learning: query accounting, test nodes never queried, same start for both strategies."""

import dataclasses

import numpy as np
import pytest

from configs import active as active_config
from opacity_jax import active
from opacity_jax.data import generator, grid

# The knobs' only home is configs/active.py; tests override fields of a preset.
BASE = active.config_from(active_config.get_config("quick"))

SMALL = generator.GeneratorConfig(seed=2, line_cap=600, level_cap=100)


@pytest.fixture(scope="module")
def setup():
    cfg = dataclasses.replace(BASE, elements=("Nd",), n_energy=12, n_temperature=8, n_density=6,
                              n_initial=6, rounds=2, k=3, test_fraction=0.25, members=2,
                              hidden=(16,), seeds=(0,),
                              train=dict(epochs=20, batch_size=64, learning_rate=3e-3,
                                         eval_every=10, checkpoint_every=1000))
    oracle = active.Oracle(cfg.elements, grid.temperatures_ev(8)[2:], grid.densities_gcc(6),
                           grid.energy_edges_ev(12), generator.OpacityGenerator(SMALL))
    learner = active.Learner(cfg, 12, cfg.n_initial + cfg.rounds * cfg.k)
    runs = {s: active.run_strategy(cfg, s, 0, oracle, learner=learner)
            for s in active.STRATEGIES}
    return cfg, oracle, runs


def test_query_accounting_and_shared_start(setup):
    cfg, oracle, runs = setup
    # 6 initial + 2 rounds x 3, per strategy, one element.
    assert oracle.n_queries == 2 * (cfg.n_initial + cfg.rounds * cfg.k)
    for r in runs.values():
        q = [c["queried_per_element"] for c in r["curve"]]
        assert q == [6, 9, 12]
        assert all(np.isfinite(c["rms_dex_mean"]) for c in r["curve"])
    # Round 0 trains on the same nodes with the same seeds: identical errors.
    a0, r0 = runs["active"]["curve"][0], runs["random"]["curve"][0]
    assert a0["rms_dex_mean"] == pytest.approx(r0["rms_dex_mean"], rel=1e-6)


def test_oracle_matches_the_generator_at_a_node():
    oracle = active.Oracle(["Nd"], grid.temperatures_ev(8)[2:], grid.densities_gcc(6),
                           grid.energy_edges_ev(12), generator.OpacityGenerator(SMALL))
    k = oracle.query(0, np.array([[1, 2]]))
    direct = oracle.gen.spectra("Nd", oracle.temperature_ev[1], oracle.density_gcc[2],
                                oracle.edges)["kappa"]
    np.testing.assert_allclose(k, direct, rtol=1e-12)
    assert oracle.n_queries == 1
    oracle.truth(0, np.array([[0, 0]]))
    assert oracle.n_queries == 1          # scoring held-out nodes is not a query


def test_queries_to_reach_and_config_checks():
    assert active.queries_to_reach([10, 20, 30], [1.0, 0.5, 0.2], 0.5) == 20.0
    assert active.queries_to_reach([10, 20, 30], [1.0, 0.6, 0.2], 0.4) == pytest.approx(25.0)
    assert active.queries_to_reach([10, 20], [1.0, 0.9], 0.5) is None
    assert active.queries_to_reach([10, 20], [0.4, 0.3], 0.5) == 10.0
    with pytest.raises(ValueError, match="members"):
        dataclasses.replace(BASE, members=1)
    with pytest.raises(ValueError, match="exceeds"):
        dataclasses.replace(BASE, n_initial=300, rounds=10, k=10)
    with pytest.raises(ValueError, match="unknown element"):
        dataclasses.replace(BASE, elements="Nd,Xx")
    with pytest.raises(ValueError, match="strategy"):
        active.run_strategy(BASE, "greedy", 0, None)


def test_config_file_presets():
    for preset in ("default", "quick", "large"):
        cfg = active.config_from(active_config.get_config(preset))
        assert cfg.members >= 2 and len(cfg.seeds) >= 1
    with pytest.raises(ValueError, match="unknown preset"):
        active_config.get_config("huge")


def test_select_batch_spreads_picks():
    nodes = np.array([[0, 0], [0, 1], [1, 1], [5, 5], [9, 9]])
    score = np.array([5.0, 4.9, 4.8, 1.0, 0.5])
    np.testing.assert_array_equal(active.select_batch(score, nodes, 2, radius=0), [0, 1])
    np.testing.assert_array_equal(active.select_batch(score, nodes, 3, radius=1), [0, 3, 4])
    # Not enough unblocked candidates: the best remaining fill the batch.
    np.testing.assert_array_equal(active.select_batch(score[:3], nodes[:3], 2, radius=1), [0, 1])
