"""Workdir reliability: fingerprint, lock, config.json only for valid runs, metrics logs without
repeats, stage digests (stale stages re-fitted), training budgets without compilation, strict
checkpoint restore for inference."""

import json
import os
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from configs import cae as cae_config
from opacity_jax.errors import CheckpointError, DataFormatError, WorkdirError
from opacity_jax.models.mlp import MLP
from opacity_jax.train import experiment, loop
from opacity_jax.train import workdir as wl
from opacity_jax.train.experiment import regression_task
from opacity_jax.train.task import pack_ragged


def _rows(seed=0, counts=(30, 20)):
    rng = np.random.default_rng(seed)
    out = []
    for r, n in enumerate(counts):
        x = rng.normal(size=(n, 2)).astype(np.float32)
        out.append({"x": x, "y": (x @ np.array([1.0 + r, -0.5], np.float32))[:, None]
                    .astype(np.float32)})
    return out


def _task():
    return regression_task(MLP(hidden=(8,), n_out=1), "mlp")


def _cfg(**kw):
    base = dict(epochs=6, batch_size=8, learning_rate=1e-2, seed=3, checkpoint_every=2)
    base.update(kw)
    return loop.LoopConfig(**base)


# ------------------------------------------------------------------------------ fingerprint
def test_fingerprint_mismatch_names_the_fields_unless_overwrite(tmp_path):
    cfg = cae_config.get_config()
    fp = wl.fingerprint(cfg, ("cae", "latent.mlp_hidden"))
    assert fp["split"] == {"split": "heldout_nodes", "test_fraction": 0.1, "val_fraction": 0.1,
                           "seed": 0}
    assert fp["elements"] == {"elements": "Ce,Nd,Eu,Er,U,Cm"}
    wl.check_fingerprint(tmp_path, fp)                 # a new workdir passes
    wl.write_fingerprint(tmp_path, fp)
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    wl.check_fingerprint(tmp_path, wl.fingerprint(cfg, ("cae", "latent.mlp_hidden")))
    cfg.data.split = "random"
    cfg.data.elements = "Nd,U"
    cfg.cae.latent_dim = 8
    cfg.train.learning_rate = 1.0          # not fingerprinted: the stage digest re-fits instead
    new = wl.fingerprint(cfg, ("cae", "latent.mlp_hidden"))
    with pytest.raises(WorkdirError) as e:
        wl.check_fingerprint(tmp_path, new)
    msg = str(e.value)
    assert "architecture, elements, split" in msg and "--overwrite" in msg
    assert "split.split: 'heldout_nodes' -> 'random'" in msg
    assert "architecture.cae.latent_dim: 16 -> 8" in msg and "learning_rate" not in msg
    assert (tmp_path / "model.json").exists()
    wl.check_fingerprint(tmp_path, new, overwrite=True)
    assert not (tmp_path / "model.json").exists() and not (tmp_path / "fingerprint.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"      # not the run's: kept


def test_data_file_digest_is_fingerprinted(tmp_path):
    f = tmp_path / "data.h5"
    f.write_bytes(b"abc")
    cfg = cae_config.get_config()
    cfg.data.path = str(f)
    a = wl.fingerprint(cfg)
    f.write_bytes(b"abd")
    b = wl.fingerprint(cfg)
    assert a["data"]["file_sha256"] != b["data"]["file_sha256"]
    assert wl.fingerprint_differences(a, b)[0].startswith("data.file_sha256")


def test_run_refuses_a_changed_split_before_any_work_and_writes_nothing(tmp_path):
    wd = tmp_path / "wd"
    cfg = cae_config.get_config()
    wd.mkdir()
    wl.write_fingerprint(wd, wl.fingerprint(cfg, ("cae", "latent.mlp_hidden")))
    (wd / "config.json").write_text('{"old": 1}')
    cfg.data.split = "random"
    t0 = time.perf_counter()
    with pytest.raises(WorkdirError, match="split"):
        experiment.run(cfg, wd, progress=False)
    assert time.perf_counter() - t0 < 5           # no data loaded, nothing trained
    assert json.loads((wd / "config.json").read_text()) == {"old": 1}
    assert not (wd / ".lock").exists()


def test_bad_config_leaves_no_workdir_and_no_config_json(tmp_path):
    for key, value, field in (("train.max_seconds", -1.0, "train.max_seconds"),
                              ("train.min_delta", float("nan"), "train.min_delta"),
                              ("latent.regressor", "bogus", "latent.regressor"),
                              ("latent.mlp_train.epochs", 0, "latent.mlp_train.epochs")):
        cfg = cae_config.get_config()
        sec, _, leaf = key.rpartition(".")
        node = cfg
        for part in sec.split("."):
            node = node[part]
        node[leaf] = value
        wd = tmp_path / key
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            experiment.run(cfg, wd, progress=False)
        assert not wd.exists(), key
    # An existing workdir keeps its config.json.
    wd = tmp_path / "old"
    wd.mkdir()
    (wd / "config.json").write_text('{"old": 1}')
    cfg = cae_config.get_config()
    cfg.latent.regressor = "bogus"
    with pytest.raises(ValueError, match="'xgboost', 'mlp', 'both'"):
        experiment.run(cfg, wd, progress=False)
    assert json.loads((wd / "config.json").read_text()) == {"old": 1}


# ------------------------------------------------------------------------------------- lock
def test_second_holder_fails_at_once_naming_the_pid(tmp_path):
    with wl.lock(tmp_path) as path:
        assert path.read_text().split()[0] == str(os.getpid())
        t0 = time.perf_counter()
        with pytest.raises(WorkdirError, match=f"pid {os.getpid()}"):
            with wl.lock(tmp_path):
                pass
        assert time.perf_counter() - t0 < 1
        # Another process, too (bin/train's path: experiment.run takes the lock first).
        code = ("import sys; from opacity_jax.train import workdir as w\n"
                "try:\n    w.lock(sys.argv[1]).__enter__()\n"
                "except w.WorkdirError as e:\n    print(e); sys.exit(3)\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 3 and "in use by another bin/train" in out.stdout
    assert not path.exists()          # released
    with wl.lock(tmp_path):
        pass


def test_stale_lock_of_a_dead_pid_is_replaced(tmp_path):
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                       capture_output=True, text=True)
    dead = int(p.stdout)
    import socket
    (tmp_path / ".lock").write_text(f"{dead} {socket.gethostname()}\n")
    with wl.lock(tmp_path) as path:
        assert path.read_text().split()[0] == str(os.getpid())


# ---------------------------------------------------------------------- metrics and stages
def _steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def _events(folder):
    """[(tag, step, value)] of every scalar event in the TensorBoard files of `folder`: a plain
    TFRecord reader (8-byte length, 4-byte CRC, data, 4-byte CRC), independent of the writer's,
    that stops at a torn last record."""
    from tensorboardX.proto.event_pb2 import Event
    rows = []
    for f in sorted(folder.glob("*tfevents*")):
        raw, pos = f.read_bytes(), 0
        while pos + 12 <= len(raw):
            n = int.from_bytes(raw[pos:pos + 8], "little")
            if pos + 16 + n > len(raw):
                break
            ev = Event.FromString(raw[pos + 12:pos + 12 + n])
            rows += [(v.tag, ev.step, v.simple_value) for v in ev.summary.value]
            pos += 16 + n
    return rows


def test_resumed_metrics_log_never_repeats_records(tmp_path):
    pytest.importorskip("tensorboardX")
    data = pack_ragged(_rows())
    loop.train(_task(), data, data, _cfg(), workdir=tmp_path / "a", progress=False)
    loop.train(_task(), data, data, _cfg(), workdir=tmp_path / "b", progress=False,
               stop_after_epochs=3)        # epoch 2 logged, but the last checkpoint is at 2
    jsonl, tb = tmp_path / "b" / "metrics" / "train.jsonl", tmp_path / "b" / "metrics" / \
        "tensorboard" / "train"
    assert _steps(jsonl) == [0, 1, 2]
    assert sorted({s for _, s, _ in _events(tb)}) == [0, 1, 2]
    # A kill -9 mid-write: a torn last line / record, and an event file of an older writer
    # holding a repeat of epoch 1 and the epoch 2 the resume re-runs.
    with open(jsonl, "a") as f:
        f.write('{"step": 3, "train_')
    ev_file = next(tb.glob("*tfevents*"))
    old = ev_file.read_bytes()
    with open(ev_file, "ab") as f:
        f.write(old[-30:-7])
    (tb / "events.out.tfevents.1.host").write_bytes(old)
    loop.train(_task(), data, data, _cfg(), workdir=tmp_path / "b", progress=False)
    a = (tmp_path / "a" / "metrics" / "train.jsonl").read_text()
    b = jsonl.read_text()
    assert _steps(jsonl) == list(range(6))
    assert a == b
    # Every (tag, step) once, with the uninterrupted run's values (resume is bit-identical).
    got, ref = _events(tb), _events(tmp_path / "a" / "metrics" / "tensorboard" / "train")
    keys = [(t, s) for t, s, _ in got]
    assert len(keys) == len(set(keys)) == 4 * 6
    assert sorted(got) == sorted(ref)
    assert {t for t, _ in keys} == {"train_loss_mean", "val_loss_mean", "active_entities",
                                    "lr_scale_mean"}
    ref_loss = {json.loads(line)["step"]: json.loads(line)["val_loss_mean"]
                for line in a.splitlines()}
    assert {s: v for t, s, v in got if t == "val_loss_mean"} == pytest.approx(ref_loss,
                                                                               rel=1e-6)
    # A stage re-fitted from scratch (other inputs) starts both logs afresh.
    loop.train(_task(), data, data, _cfg(learning_rate=3e-2), workdir=tmp_path / "b",
               progress=False)
    keys = [(t, s) for t, s, _ in _events(tb)]
    assert _steps(jsonl) == list(range(6)) and len(keys) == len(set(keys)) == 24


def test_stage_with_changed_inputs_is_refitted_not_resumed(tmp_path):
    old, new = pack_ragged(_rows(0)), pack_ragged(_rows(1))
    loop.train(_task(), old, old, _cfg(), workdir=tmp_path, progress=False)
    first = wl.read_stages(tmp_path)["train"]
    assert first["step"] == 6 and first["finished"]
    # Same inputs: the finished stage is re-used (no epoch trained).
    again = loop.train(_task(), old, old, _cfg(), workdir=tmp_path, progress=False)
    assert again.fitted_on == first["fitted_on"] and len(again.history) == 6
    # Changed data (e.g. an upstream encoder trained further): re-fitted from scratch, equal to
    # a fresh run on the new data.
    refit = loop.train(_task(), new, new, _cfg(), workdir=tmp_path, progress=False)
    fresh = loop.train(_task(), new, new, _cfg(), workdir=tmp_path / "fresh", progress=False)
    chex.assert_trees_all_equal(refit.params, fresh.params)
    assert refit.fitted_on != first["fitted_on"]
    assert _steps(tmp_path / "metrics" / "train.jsonl") == list(range(6))
    # A changed setting other than the budget re-fits too; a larger budget resumes.
    lr = loop.train(_task(), new, new, _cfg(learning_rate=3e-2), workdir=tmp_path,
                    progress=False)
    assert lr.fitted_on != refit.fitted_on
    more = loop.train(_task(), new, new, _cfg(learning_rate=3e-2, epochs=8), workdir=tmp_path,
                      progress=False, stop_after_epochs=1)
    assert more.fitted_on == lr.fitted_on and more.epochs_run == 7
    # A deliberate warm start (bin/ablation marks copied checkpoints): resumed once although
    # fitted on other inputs, then recorded as fitted on these.
    (wl.checkpoint_dir(tmp_path, "train") / loop.WARM_START).write_text("")
    warm = loop.train(_task(), old, old, _cfg(epochs=8), workdir=tmp_path, progress=False)
    assert warm.epochs_run == 8 and len(warm.history) == 8
    assert wl.read_stages(tmp_path)["train"]["fitted_on"] == warm.fitted_on


def test_failed_refit_gives_the_previous_fit_back(tmp_path):
    """A stale stage is set aside, not deleted, while it is re-fitted: a re-fit that diverges
    (here on data holding a NaN; a too-large learning rate does the same) puts it back with its
    metrics, so the workdir still serves the model it served; a re-fit killed before its first
    checkpoint gets it back on the next run; one with a checkpoint replaces it."""
    good = pack_ragged(_rows(0))
    bad_rows = _rows(0)
    bad_rows[1]["y"][3] = np.nan
    bad = pack_ragged(bad_rows)
    first = loop.train(_task(), good, good, _cfg(), workdir=tmp_path, progress=False)
    ck_dir = wl.checkpoint_dir(tmp_path, "train")
    files = {p: p.read_bytes() for p in sorted(ck_dir.rglob("*")) if p.is_file()}
    record = wl.read_stages(tmp_path)["train"]
    log = (tmp_path / "metrics" / "train.jsonl").read_bytes()
    with pytest.raises(loop.TrainingDiverged, match="learning_rate"):
        loop.train(_task(), bad, bad, _cfg(), workdir=tmp_path, progress=False)
    assert {p: p.read_bytes() for p in sorted(ck_dir.rglob("*")) if p.is_file()} == files
    assert wl.read_stages(tmp_path)["train"] == record
    assert (tmp_path / "metrics" / "train.jsonl").read_bytes() == log
    assert not (ck_dir.parent / "train.replaced").exists()
    chex.assert_trees_all_equal(wl.restore_params(tmp_path, "train", {"stages": {
        "train": record}}), first.params)
    # Killed (here: stopped) before the new fit's first checkpoint: the next run on the old
    # inputs finds its finished fit again (no epoch trained).
    loop.train(_task(), pack_ragged(_rows(1)), pack_ragged(_rows(1)), _cfg(), workdir=tmp_path,
               progress=False, stop_after_epochs=1)
    assert (ck_dir.parent / "train.replaced").exists()
    again = loop.train(_task(), good, good, _cfg(), workdir=tmp_path, progress=False,
                       stop_after_epochs=0)
    assert again.fitted_on == record["fitted_on"] and again.epochs_run == 6
    assert not (ck_dir.parent / "train.replaced").exists()
    # Past its first checkpoint the new fit is the one kept.
    new = pack_ragged(_rows(1))
    loop.train(_task(), new, new, _cfg(), workdir=tmp_path, progress=False, stop_after_epochs=3)
    assert not (ck_dir.parent / "train.replaced").exists()
    assert loop.train(_task(), new, new, _cfg(), workdir=tmp_path, progress=False
                      ).fitted_on != record["fitted_on"]


def test_run_that_fails_on_its_data_leaves_no_workdir(tmp_path):
    import bad_inputs
    cfg = cae_config.get_config()
    cfg.data.path = str(bad_inputs.FIXTURES / "h5" / "h3.h5")      # a corrupt kappa chunk
    cfg.data.elements, cfg.data.n_energy = "", bad_inputs.H5_SHAPE["n_energy"]
    with pytest.raises(DataFormatError, match="h3.h5.*corrupt"):
        experiment.run(cfg, tmp_path / "runs" / "wd", progress=False)
    assert not (tmp_path / "runs").exists()


def test_budget_counts_training_not_compilation(tmp_path):
    class SlowCompile(loop.Trainer):
        def _timed(self, key, fn, *args):
            if key in self._compiled:
                return fn(*args)
            return super()._timed(key, lambda *a: (time.sleep(1.0), fn(*a))[1], *args)

    data = pack_ragged(_rows())
    cfg = _cfg(epochs=5, max_seconds=0.8)
    res = loop.train(_task(), data, data, cfg, progress=False, trainer=SlowCompile(_task(), cfg))
    assert res.compile_seconds >= 2.0          # step and evaluation: >= 1 s each
    assert res.epochs_run == 5                 # 2 s of "compilation" charged nothing


# ------------------------------------------------------------------------ strict inference
def _trained_meta(tmp_path):
    data = pack_ragged(_rows())
    meta = {"model": "mlp", "elements": [60, 92]}
    loop.train(_task(), data, data, _cfg(), workdir=tmp_path, meta=meta, progress=False)
    wl.write_model_meta(tmp_path, dict(meta))
    return json.loads((tmp_path / "model.json").read_text())


def test_inference_restores_the_recorded_checkpoint_or_refuses(tmp_path):
    meta = _trained_meta(tmp_path)
    assert meta["stages"]["train"]["step"] == 6
    good = wl.restore_params(tmp_path, "train")
    assert good["params"]["Dense_0"]["kernel"].shape == (2, 2, 8)
    # Elements swapped in model.json: named, not served.
    with pytest.raises(DataFormatError, match="order matters"):
        wl.restore_params(tmp_path, "train", dict(meta, elements=[92, 60]))
    # The recorded checkpoint corrupt: refused, naming it, although older good ones exist (their
    # parameters would not match the rest of model.json).
    ck_dir = wl.checkpoint_dir(tmp_path, "train")
    for f in sorted((ck_dir / "6" / "state").rglob("*")):
        if f.is_file() and f.stat().st_size > 64 and "d" in f.parts[-2:-1]:
            f.write_bytes(f.read_bytes()[:-16] + bytes(16))
    with pytest.raises(CheckpointError) as e:
        wl.restore_params(tmp_path, "train")
    assert f"{ck_dir}/6" in str(e.value) and "re-run bin/train" in str(e.value)
    # A model.json pointing at a checkpoint that is gone.
    with pytest.raises(CheckpointError, match="missing"):
        wl.restore_params(tmp_path, "train", dict(meta, stages={"train": dict(
            meta["stages"]["train"], step=99)}))


def test_model_json_is_validated(tmp_path):
    meta = {"model": "cae", "elements": [60, 92], "temperature_ev": [0.1, 0.5, 1.0],
            "density_gcc": [1e-14, 1e-12], "energy_edges_ev": [1.0, 2.0, 3.0],
            "domain": {"temperature_ev": [0.1, 1.0], "density_gcc": [1e-14, 1e-12]}}
    wl.validate_model_meta(meta, "m.json")
    bad = dict(meta, domain={"temperature_ev": [0.1, 5.0], "density_gcc": [1e-14, 1e-12]})
    with pytest.raises(DataFormatError, match=r"m.json, field 'domain.temperature_ev'"):
        wl.validate_model_meta(bad, "m.json")
    with pytest.raises(DataFormatError, match="field 'elements'"):
        wl.validate_model_meta(dict(meta, elements=[60, 60]), "m.json")
    (tmp_path / "model.json").write_text('{"model": "cae", "elem')
    with pytest.raises(DataFormatError, match=r"model.json, line 1: invalid JSON"):
        wl.read_model_meta(tmp_path)
