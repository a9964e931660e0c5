"""Tests for the one training loop (entity axis, padding, early stopping, checkpoints)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opacity_jax.models.cae import CAE
from opacity_jax.models.mlp import FCNN, MLP
from opacity_jax.train import loop
from opacity_jax.train.checkpoint import Checkpointer
from opacity_jax.train.experiment import regression_task
from opacity_jax.train.task import EntityData, Task, pack_ragged


def _linear_rows(n_rows=3, counts=(40, 25, 60), seed=0):
    """Entity r learns y = a_r . x + b_r (a different target per entity)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_rows):
        x = rng.normal(size=(counts[r], 2)).astype(np.float32)
        a = np.array([1.0 + r, -0.5 * r], np.float32)
        y = (x @ a + 0.3 * r)[:, None].astype(np.float32) * np.ones((1, 3), np.float32)
        rows.append({"x": x, "y": y})
    return rows


def _task():
    return regression_task(MLP(hidden=(16,), n_out=3), "mlp")


def dataclasses_replace(cfg, **kw):
    return dataclasses.replace(cfg, **kw)


def _cfg(**kw):
    base = dict(epochs=8, batch_size=16, learning_rate=1e-2, seed=1, checkpoint_every=2)
    base.update(kw)
    return loop.LoopConfig(**base)


def test_model_shapes():
    x = jnp.ones((4, 200))
    cae = CAE()
    p = cae.init(jax.random.key(0), x)
    chex.assert_shape(cae.apply(p, x), (4, 200))
    chex.assert_shape(cae.apply(p, x, method=cae.encode), (4, 16))
    f = FCNN(hidden=(8, 8))
    chex.assert_shape(f.apply(f.init(jax.random.key(0), jnp.ones((5, 3))), jnp.ones((5, 3))), (5,))
    with pytest.raises(ValueError, match="divisible by 8"):
        CAE(n_bins=100).init(jax.random.key(0), jnp.ones((1, 100)))


def test_loss_decreases_on_tiny_problem():
    rows = _linear_rows()
    data = pack_ragged(rows)
    res = loop.train(_task(), data, data, _cfg(epochs=30), progress=False)
    first = np.asarray(res.history[0]["val_loss"])
    assert np.all(res.best_val < 0.2 * first)


def test_vmapped_equals_one_by_one():
    rows = _linear_rows()
    data = pack_ragged(rows)
    together = loop.train(_task(), data, data, _cfg(), progress=False)
    for e in range(3):
        alone_data = data.select([e])
        alone = loop.train(_task(), alone_data, alone_data, _cfg(), progress=False)
        got = jax.tree_util.tree_map(lambda a: a[e], together.last_params)
        want = jax.tree_util.tree_map(lambda a: a[0], alone.last_params)
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


def test_padding_does_not_affect_other_entities():
    rows = _linear_rows()
    base = pack_ragged(rows)
    # Same entities, padded to a much larger common length with garbage in the padding.
    padded = pack_ragged(rows, pad_to=200)
    padded.arrays["x"][:, 60:] = 1e6
    a = loop.train(_task(), base, base, _cfg(), progress=False)
    b = loop.train(_task(), padded, padded, _cfg(), progress=False)
    chex.assert_trees_all_close(a.last_params, b.last_params, rtol=1e-5, atol=1e-6)


def test_per_entity_early_stopping_masks_stopped_entities():
    rows = _linear_rows()
    train = pack_ragged(rows)
    # Entity 1 validates on pure noise, so it cannot improve after its first evaluations.
    val_rows = [dict(r) for r in rows]
    rng = np.random.default_rng(5)
    val_rows[1] = {"x": rng.normal(size=(25, 2)).astype(np.float32),
                   "y": rng.normal(size=(25, 3)).astype(np.float32) * 10}
    val = pack_ragged(val_rows)
    cfg = _cfg(epochs=40, patience=3, min_delta=0.05)
    res = loop.train(_task(), train, val, cfg, progress=False)
    stop = int(res.stopped_epoch[1])
    assert 0 <= stop < 39
    # Learnable entities outlive the noisy one.
    for e in (0, 2):
        assert res.stopped_epoch[e] == -1 or res.stopped_epoch[e] > stop
    # A stopped entity is frozen (masked, not retrained): training only up to its stop epoch
    # leaves it with the same parameters as the full run.
    short = loop.train(_task(), train, val, dataclasses_replace(cfg, epochs=stop + 1),
                       progress=False)
    chex.assert_trees_all_equal(jax.tree_util.tree_map(lambda a: a[1], short.last_params),
                                jax.tree_util.tree_map(lambda a: a[1], res.last_params))


def test_plateau_reduces_lr_per_entity():
    rows = _linear_rows()
    train = pack_ragged(rows)
    val_rows = [dict(r) for r in rows]
    rng = np.random.default_rng(7)
    val_rows[0] = {"x": rng.normal(size=(40, 2)).astype(np.float32),
                   "y": rng.normal(size=(40, 3)).astype(np.float32) * 10}
    res = loop.train(_task(), train, pack_ragged(val_rows),
                     _cfg(epochs=20, plateau_patience=2, min_delta=0.05), progress=False)
    lr = np.asarray(res.history[-1]["lr_scale"])
    assert lr[0] < 1.0


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    data = pack_ragged(_linear_rows())
    full = loop.train(_task(), data, data, _cfg(), workdir=str(tmp_path / "a"), progress=False)
    part = loop.train(_task(), data, data, _cfg(), workdir=str(tmp_path / "b"), progress=False,
                      stop_after_epochs=5)
    assert part.epochs_run == 5
    resumed = loop.train(_task(), data, data, _cfg(), workdir=str(tmp_path / "b"), progress=False)
    assert resumed.epochs_run == 8
    chex.assert_trees_all_equal(full.last_params, resumed.last_params)
    chex.assert_trees_all_equal(full.params, resumed.params)


def test_corrupt_checkpoint_falls_back(tmp_path, capsys):
    data = pack_ragged(_linear_rows())
    loop.train(_task(), data, data, _cfg(), workdir=str(tmp_path), progress=False)
    ck = Checkpointer(tmp_path / "checkpoints" / "train")
    steps = ck.steps()
    assert steps[-1] == 8 and len(steps) >= 2
    # Corrupt every data file of the newest checkpoint.
    newest = tmp_path / "checkpoints" / "train" / str(steps[-1]) / "state"
    for f in newest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "d" in f.parts[-2:-1]:
            f.write_bytes(b"\0" * f.stat().st_size)
    state = loop.Trainer(_task(), _cfg()).init(data)
    got = ck.restore(state)
    assert got is not None and got[0] == steps[-2]
    assert "falling back" in capsys.readouterr().out


def test_nan_loss_stops_with_clear_error(tmp_path):
    rows = _linear_rows()
    rows[2]["y"][:] = np.nan
    data = pack_ragged(rows)
    with pytest.raises(loop.TrainingDiverged, match=r"entities \[2\]"):
        loop.train(_task(), data, data, _cfg(), workdir=str(tmp_path), progress=False)


def test_bad_loop_config_values():
    with pytest.raises(ValueError, match="unknown train config keys"):
        loop.LoopConfig.from_config({"epochs": 3, "lr": 1e-3})
    with pytest.raises(ValueError, match="batch_size"):
        loop.LoopConfig.from_config({"batch_size": 0})
    with pytest.raises(ValueError, match="plateau_factor"):
        loop.LoopConfig.from_config({"plateau_factor": 1.5})


def test_ensemble_axis_replicates_rows():
    data = pack_ragged(_linear_rows())
    ens = data.replicate(2)
    assert ens.n_entities == 6
    np.testing.assert_array_equal(ens.entity_row, [0, 0, 1, 1, 2, 2])
    res = loop.train(_task(), ens, ens, _cfg(epochs=3), progress=False)
    w = res.last_params["params"]["Dense_0"]["kernel"]
    assert not np.allclose(w[0], w[1])   # members differ (own seeds)
