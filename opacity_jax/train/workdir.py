"""The workdir: file names, atomic writes, JSON, model metadata and checkpoint restore.

A trained workdir holds

    model.json                 metadata every loader needs (MODEL_FILE; `model` names the family)
    config.json                the training config (CONFIG_FILE), written once it is validated
    fingerprint.json           what must not change between runs (FINGERPRINT_FILE, `fingerprint`)
    stages.json                per training stage: what it was fitted on, its checkpoint step and
                               state digest (STAGES_FILE, `record_stage`); copied into model.json
    .lock                      pid of the bin/train that holds the workdir (LOCK_FILE, `lock`)
    checkpoints/<label>/       orbax checkpoints of one training stage (checkpoint_dir)
    checkpoints/<label>.replaced/  a stale fit set aside while the stage is re-fitted (gone
                               once the re-fit has a checkpoint; train.loop)
    metrics/<label>.jsonl      one record per evaluated epoch (train.metrics_writer)
    metrics/tensorboard/<label>/  the same as a TensorBoard event file
    eval/                      metrics.json, figures and reports of evaluation (eval_dir)

Every file is written atomically (temporary file in the same folder, fsync, rename, fsync of the
folder), so a crash never leaves a half-written model.json or table.

Reliability rules kept here:

* A workdir belongs to one dataset, split, element list and model architecture: `fingerprint`
  records them and `check_fingerprint` refuses a run whose config differs, naming the fields
  (bin/train --overwrite discards the workdir's results instead, `clear`).
* One bin/train per workdir at a time (`lock`: an exclusive lock file holding the pid; a lock
  left by a dead process is replaced).
* Inference restores exactly the checkpoint step that model.json records for each stage and
  refuses one whose digest fails (`restore_params`), so it never combines statistics of one run
  with parameters of another.

This module sits below `data`, `train` and `serve`: at module level it imports only
`opacity_jax.errors`, and orbax only when parameters are restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from opacity_jax.errors import CheckpointError, DataFormatError, WorkdirError

MODEL_FILE = "model.json"
CONFIG_FILE = "config.json"
FINGERPRINT_FILE = "fingerprint.json"
STAGES_FILE = "stages.json"
LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoints"
METRICS_DIR = "metrics"
EVAL_DIR = "eval"
# Everything a training run writes into a workdir (what `clear` removes); other files there
# (a user's data file, notes) are left alone.
OWNED = [MODEL_FILE, CONFIG_FILE, FINGERPRINT_FILE, STAGES_FILE, CHECKPOINT_DIR, METRICS_DIR,
         EVAL_DIR, "xgb", "stage_basis_tables.npz"]


def model_path(workdir) -> Path:
    """Path of the workdir's model.json."""
    return Path(workdir) / MODEL_FILE


def checkpoint_dir(workdir, label: str) -> Path:
    """Folder of the orbax checkpoints of training stage `label` (e.g. 'cae', 'latent_mlp')."""
    return Path(workdir) / CHECKPOINT_DIR / label


def eval_dir(workdir) -> Path:
    """Folder that evaluation writes metrics, figures and reports into."""
    return Path(workdir) / EVAL_DIR


# --------------------------------------------------------------------------------------------
# atomic writes
def _new_file_mode(target: Path) -> int:
    # mkstemp creates 0600 files; give the result the mode an ordinary open() would have had.
    if target.exists():
        return target.stat().st_mode & 0o7777
    umask = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    if umask is None:  # non-Linux: os.umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_path(path, directory: bool = False) -> None:
    flags = os.O_RDONLY if directory else os.O_RDWR
    if directory:
        if not hasattr(os, "O_DIRECTORY"):  # Windows cannot fsync directories
            return
        flags |= os.O_DIRECTORY
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some filesystems refuse directory fsync; file data must be synced
            raise
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename tmp over ``path``; on any exception remove tmp.

    The parent folder must exist. Returns `path` as a Path.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {parent} does not exist")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.tmp", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        _fsync_path(tmp)
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Without this the rename itself may not survive a power cut.
    _fsync_path(parent, directory=True)
    return path


def write_text(path, text: str) -> Path:
    """Write a UTF-8 text file atomically (newlines written as given)."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    return atomic_write(path, write)


def write_bytes(path, data: bytes) -> Path:
    """Write a binary file atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def json_default(obj):
    """`json.dumps(default=...)` hook: numpy scalars and numpy/jax arrays become numbers and
    lists, paths strings; anything else is a TypeError naming its type."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"value of type {type(obj).__name__} is not JSON-serialisable")


def write_json(path, obj) -> Path:
    """Write `obj` as indented JSON atomically, creating the parent folder; numpy values and
    paths allowed (`json_default`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(obj, indent=1, default=json_default) + "\n")


# --------------------------------------------------------------------------------------------
# digests
def digest_json(obj) -> str:
    """SHA-256 (hex) of `obj` as canonical JSON (sorted keys; numpy values allowed)."""
    text = json.dumps(obj, sort_keys=True, default=json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path) -> str:
    """SHA-256 (hex) of a file's bytes, or of a folder's files (relative names and bytes, in
    sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f is not path:
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# fingerprint: what must not change between runs in one workdir
SPLIT_KEYS = ("split", "test_fraction", "val_fraction", "n_windows")
ENTITY_KEYS = ("elements", "molecules")


def _plain(config) -> dict:
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(dict(config), default=json_default))


def _dotted(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def fingerprint(config, architecture=None) -> dict:
    """The fields of a training config that must stay the same for every run in one workdir.

    Args:
      config: the run's ConfigDict (or mapping) with `model`, `seed` and a `data` section.
      architecture: dotted config keys that define the model's shape (default: the section
        named like the model, e.g. `cae`, or its prefix before '_', e.g. `xsec` for
        'xsec_pinn').
    Returns:
      {'model': name, 'architecture': {key: value}, 'data': {data section without the split and
      entity keys, 'file_sha256' of data.path when it names a file or folder}, 'split': {split
      keys, 'seed'}, 'elements': the data's element / molecule list}. Hashing a data file reads
      it once (about a second per GB).
    """
    c = _plain(config)
    model = c.get("model")
    if architecture is None:
        sec = model if model in c else str(model).split("_")[0]
        architecture = (sec,) if sec in c else ()
    data = dict(c.get("data") or {})
    out = {"model": model,
           "architecture": {k: _dotted(c, k) for k in architecture},
           "split": {k: data.pop(k) for k in SPLIT_KEYS if k in data},
           "elements": {k: data.pop(k) for k in ENTITY_KEYS if k in data}}
    out["split"]["seed"] = c.get("seed")
    path = data.get("path")
    if path and Path(path).exists():
        data["file_sha256"] = file_digest(path)
    out["data"] = data
    return out


def _flat(d, prefix=""):
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def fingerprint_differences(old: dict, new: dict) -> list:
    """['field.key: old -> new', ...] for every leaf that differs between two fingerprints."""
    a, b = _flat(old), _flat(new)
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            short = lambda v: (repr(v)[:12] + "...") if isinstance(v, str) and len(v) > 40 \
                else repr(v)
            out.append(f"{k}: {short(a.get(k, '<unset>'))} -> {short(b.get(k, '<unset>'))}")
    return out


def check_fingerprint(workdir, fp: dict, overwrite: bool = False) -> None:
    """Compare `fp` with the workdir's fingerprint.json.

    A workdir without one (new, or written by an older version) passes. A difference raises
    WorkdirError naming every differing field, unless `overwrite`, which discards the workdir's
    results (`clear`). Nothing is written here (see `write_fingerprint`).
    """
    path = Path(workdir) / FINGERPRINT_FILE
    if not path.exists():
        return
    old = read_json(path)
    diff = fingerprint_differences(old, json.loads(json.dumps(fp, default=json_default)))
    if not diff:
        return
    if overwrite:
        clear(workdir)
        return
    fields = sorted({d.split(".")[0].split(":")[0] for d in diff})
    raise WorkdirError(
        f"{workdir} holds a run with a different {', '.join(fields)} ({'; '.join(diff)}); "
        f"resuming would mix the two. Use a new --workdir, or pass --overwrite to discard the "
        f"workdir's checkpoints and results")


def write_fingerprint(workdir, fp: dict) -> Path:
    """Record the run's fingerprint (after `check_fingerprint` passed)."""
    return write_json(Path(workdir) / FINGERPRINT_FILE, fp)


def clear(workdir) -> None:
    """Remove everything a training run wrote into `workdir` (OWNED), keeping other files and
    the lock."""
    for name in OWNED:
        p = Path(workdir) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def remove_empty_dirs(path) -> None:
    """Remove `path` and the folders below it that hold no files (what a run that failed before
    writing anything leaves); folders with files are kept."""
    path = Path(path)
    if not path.is_dir():
        return
    for d in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


# --------------------------------------------------------------------------------------------
# lock: one training run per workdir
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _lock_holder(path: Path) -> Optional[tuple]:
    try:
        pid, host = path.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def _busy(workdir, path, holder) -> WorkdirError:
    who = f"pid {holder[0]} on {holder[1]}" if holder else "another process"
    return WorkdirError(f"{workdir} is in use by another bin/train ({who}; lock file {path}); "
                        "wait for it to finish or use another --workdir")


@contextlib.contextmanager
def lock(workdir, create: bool = True):
    """Hold the workdir's exclusive lock (LOCK_FILE, holding 'pid host') while the block runs.

    A second holder fails at once with WorkdirError naming the holder's pid. The lock is an
    `fcntl.flock` on the file, so the system releases it when its process dies; the pid in a
    lock file whose process is gone is reported as stale and replaced. Where `fcntl` does not
    exist the file itself is the lock (created exclusively; replaced if its pid is dead).
    create: make the workdir (not its parents) if it does not exist; otherwise a missing
    workdir is a FileNotFoundError.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        if not create or not workdir.parent.is_dir():
            raise FileNotFoundError(f"workdir {workdir} not found")
        workdir.mkdir(exist_ok=True)
    path = workdir / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()}\n"
    try:
        import fcntl
    except ImportError:   # pragma: no cover - Windows
        fcntl = None
    fd = None
    for _ in range(5):
        if fcntl is None:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                break
            except FileExistsError:
                holder = _lock_holder(path)
                if holder and holder[1] == socket.gethostname() and not _pid_alive(holder[0]):
                    with contextlib.suppress(OSError):
                        path.unlink()
                    continue
                raise _busy(workdir, path, holder) from None
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _lock_holder(path)
            os.close(fd)
            raise _busy(workdir, path, holder) from None
        # The file may have been removed by its previous holder between open and flock.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
        fd = None
    if fd is None:
        raise _busy(workdir, path, _lock_holder(path))
    stale = _lock_holder(path)
    if stale and stale[0] != os.getpid():
        from absl import logging
        logging.warning("%s: replacing the stale lock of pid %d (no longer running)", path,
                        stale[0])
    os.ftruncate(fd, 0)
    os.write(fd, me.encode())
    os.fsync(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _lock_holder(path) == (os.getpid(), socket.gethostname()):
                path.unlink()
        os.close(fd)


# --------------------------------------------------------------------------------------------
# training stages: what each was fitted on, and which checkpoint holds its result
def read_stages(workdir) -> dict:
    """{label: record} of the workdir's stages.json ({} if there is none)."""
    path = Path(workdir) / STAGES_FILE
    return read_json(path) if path.exists() else {}


def record_stage(workdir, label: str, record: dict) -> Path:
    """Record training stage `label`'s result: {'fitted_on': digest of its inputs, 'step':
    checkpoint step holding the result, 'state_sha256': that checkpoint's digest, ...}."""
    stages = read_stages(workdir)
    stages[label] = record
    return write_json(Path(workdir) / STAGES_FILE, stages)


# --------------------------------------------------------------------------------------------
# model metadata and parameters
def read_json(path) -> dict:
    """A JSON object from `path`; DataFormatError naming the file and line if it is not one."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not UTF-8 text (byte {e.start}); expected a JSON file",
                              path=path) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"invalid JSON ({e.msg}, column {e.colno}); the file is truncated "
                              "or edited", path=path, line=e.lineno) from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    return obj


def _check_pair(meta, path, key, name):
    v = meta.get(key, {}).get(name) if isinstance(meta.get(key), dict) else None
    ok = (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
          and all(np.isfinite(v)) and 0 < v[0] <= v[1])
    if not ok:
        raise DataFormatError(f"must be [lo, hi] with 0 < lo <= hi, got {v!r}", path=path,
                              field=f"{key}.{name}")
    return v


def validate_model_meta(meta: dict, path) -> dict:
    """Check the fields every loader relies on; DataFormatError naming the field otherwise.

    'model' a string; 'elements' (when present) a list of distinct known atomic numbers;
    'energy_edges_ev' increasing and positive; 'domain' [lo, hi] pairs for temperature_ev [eV]
    and density_gcc [g/cm^3] that equal the range of the grid recorded in 'temperature_ev' /
    'density_gcc' (a widened domain would extrapolate); 'stages' {label: {'step': int,
    'state_sha256': str}}. Returns `meta`.
    """
    if not isinstance(meta.get("model"), str):
        raise DataFormatError(f"missing or not a string: {meta.get('model')!r}", path=path,
                              field="model")
    if "elements" in meta:
        from opacity_jax.physics import elements as el
        zs = meta["elements"]
        if not (isinstance(zs, list) and zs and all(isinstance(z, int) for z in zs)
                and len(set(zs)) == len(zs)) or not set(zs) <= set(el.ATOMIC_NUMBERS.tolist()):
            raise DataFormatError(f"must be a list of distinct atomic numbers (57-71, 89-103), "
                                  f"got {zs!r}", path=path, field="elements")
    if "energy_edges_ev" in meta:
        e = np.asarray(meta["energy_edges_ev"], dtype=object)
        try:
            e = e.astype(np.float64)
            ok = e.ndim == 1 and e.size >= 2 and np.all(np.isfinite(e)) and e[0] > 0 and \
                np.all(np.diff(e) > 0)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataFormatError("must be an increasing list of positive numbers [eV]",
                                  path=path, field="energy_edges_ev")
    if "domain" in meta:
        for name in ("temperature_ev", "density_gcc"):
            lo, hi = _check_pair(meta, path, "domain", name)
            grid = meta.get(name)
            if grid is not None:
                try:
                    g = np.asarray(grid, np.float64)
                    g_lo, g_hi = float(g.min()), float(g.max())
                except (TypeError, ValueError):
                    raise DataFormatError("must be a list of numbers", path=path,
                                          field=name) from None
                if not (np.isclose(lo, g_lo, rtol=1e-9, atol=0) and
                        np.isclose(hi, g_hi, rtol=1e-9, atol=0)):
                    raise DataFormatError(
                        f"[{lo:.6g}, {hi:.6g}] is not the range [{g_lo:.6g}, {g_hi:.6g}] of the "
                        f"training grid in {name!r}; the file was edited - re-run bin/train",
                        path=path, field=f"domain.{name}")
    stages = meta.get("stages", {})
    if not isinstance(stages, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("step"), int) and
            isinstance(r.get("state_sha256"), str) for r in stages.values()):
        raise DataFormatError("must map stage labels to {'step': int, 'state_sha256': str}",
                              path=path, field="stages")
    return meta


def require_keys(meta: dict, path, keys) -> None:
    """DataFormatError naming the first dotted key of `keys` missing from `meta`."""
    for key in keys:
        if _dotted(meta, key) is None:
            raise DataFormatError("missing (the file is incomplete or from another version; "
                                  "re-run bin/train)", path=path, field=key)


def read_model_meta(workdir, hint: str = "run bin/train") -> dict:
    """The workdir's model.json as a dict, validated (`validate_model_meta`);
    FileNotFoundError saying how to create it if absent, DataFormatError naming the file and
    field if it is corrupt."""
    mf = model_path(workdir)
    if not mf.exists():
        raise FileNotFoundError(f"{mf} not found: not a trained workdir ({hint})")
    return validate_model_meta(read_json(mf), mf)


def write_model_meta(workdir, meta: dict) -> Path:
    """Write model.json atomically (the last step of training: its presence marks a finished
    run), with the stage records of stages.json under 'stages' (which checkpoint step holds
    each stage's parameters, and its digest)."""
    stages = read_stages(workdir)
    if stages:
        meta["stages"] = {k: {"step": int(v["step"]), "state_sha256": v["state_sha256"],
                              "fitted_on": v.get("fitted_on")} for k, v in stages.items()}
    return write_json(model_path(workdir), meta)


def read_config(workdir):
    """The training config recorded in config.json, as an ml_collections ConfigDict."""
    from ml_collections import ConfigDict
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a trained workdir (run bin/train)")
    return ConfigDict(read_json(path))


def write_config(workdir, config) -> Path:
    """Record the training config (an ml_collections ConfigDict) as config.json."""
    return write_json(Path(workdir) / CONFIG_FILE, json.loads(config.to_json_best_effort()))


def restore_params(workdir, label: str, meta: Optional[dict] = None):
    """Best parameters of training stage `label` (pytree of jnp arrays, entity axis first),
    for inference.

    The checkpoint step is the one model.json (`meta`, read if not given) records for the
    stage, and its state must match the recorded digest: a corrupt or missing checkpoint is an
    IOError naming it and saying how to recover, never a silent fall-back to another step
    (whose parameters would not match the statistics in model.json). The element / molecule
    list stored in the checkpoint must equal model.json's. Workdirs written before stage
    records existed restore their newest checkpoint, equally strictly. Raises CheckpointError
    (an OSError).
    """
    import jax
    import jax.numpy as jnp

    # orbax is only needed here; importing it lazily keeps the writers above light for `data`.
    from opacity_jax.train.checkpoint import Checkpointer

    if meta is None:
        meta = read_model_meta(workdir)
    folder = checkpoint_dir(workdir, label)
    if not folder.exists():
        raise FileNotFoundError(f"no checkpoint in {folder}; train first (bin/train)")
    ck = Checkpointer(folder)
    try:
        rec = meta.get("stages", {}).get(label)
        steps = ck.steps()
        step = int(rec["step"]) if rec else (steps[-1] if steps else None)
        recover = (f"re-run bin/train on {workdir} (it re-fits from the last good checkpoint), "
                   f"or bin/train --overwrite to start afresh")
        if step is None or step not in steps:
            raise CheckpointError(f"{folder}/{step}: the checkpoint model.json records for stage "
                          f"{label!r} is missing (steps present: {steps}); {recover}")
        try:
            _, state, ck_meta = ck.restore_exact(step)
        except Exception as e:   # noqa: BLE001 - any failure is the same for the user
            raise CheckpointError(f"{folder}/{step}: checkpoint unreadable or corrupt "
                          f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}); "
                          f"{recover}") from None
        if rec and ck_meta.get("state_sha256") != rec["state_sha256"]:
            raise CheckpointError(f"{folder}/{step}: checkpoint digest differs from the one in "
                          f"{model_path(workdir)} (it belongs to another run); {recover}")
        for key in ENTITY_KEYS:
            if key in meta and key in ck_meta and list(meta[key]) != list(ck_meta[key]):
                raise DataFormatError(
                    f"lists {key} {meta[key]} but checkpoint {folder}/{step} was trained on "
                    f"{ck_meta[key]} (order matters); the file was edited - re-run bin/train",
                    path=model_path(workdir), field=key)
    finally:
        ck.close()
    return jax.tree_util.tree_map(jnp.asarray, state["best_params"])
