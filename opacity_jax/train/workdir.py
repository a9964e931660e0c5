"""The workdir: file names, atomic writes, JSON, model metadata and checkpoint restore.

A trained workdir holds

    model.json                 metadata every loader needs (MODEL_FILE; `model` names the family)
    config.json                the training config (CONFIG_FILE)
    checkpoints/<label>/       orbax checkpoints of one training stage (checkpoint_dir)
    eval/                      metrics.json, figures and reports of evaluation (eval_dir)

Every file is written atomically (temporary file in the same folder, fsync, rename, fsync of the
folder), so a crash never leaves a half-written model.json or table. This module sits below
`data`, `train` and `serve`: it imports nothing from opacity_jax at module level, and orbax only
when parameters are restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

MODEL_FILE = "model.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
EVAL_DIR = "eval"


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
# model metadata and parameters
def read_model_meta(workdir, hint: str = "run bin/train") -> dict:
    """The workdir's model.json as a dict; FileNotFoundError saying how to create it if absent."""
    mf = model_path(workdir)
    if not mf.exists():
        raise FileNotFoundError(f"{mf} not found: not a trained workdir ({hint})")
    return json.loads(mf.read_text())


def write_model_meta(workdir, meta: dict) -> Path:
    """Write model.json atomically (the last step of training: its presence marks a finished
    run)."""
    return write_json(model_path(workdir), meta)


def read_config(workdir):
    """The training config recorded in config.json, as an ml_collections ConfigDict."""
    from ml_collections import ConfigDict
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a trained workdir (run bin/train)")
    return ConfigDict(json.loads(path.read_text()))


def write_config(workdir, config) -> Path:
    """Record the training config (an ml_collections ConfigDict) as config.json."""
    return write_json(Path(workdir) / CONFIG_FILE, json.loads(config.to_json_best_effort()))


def restore_params(workdir, label: str):
    """Best parameters of training stage `label` (pytree of jnp arrays, entity axis first).

    FileNotFoundError if the stage has no checkpoint, IOError if none of them is readable.
    """
    import jax
    import jax.numpy as jnp

    # orbax is only needed here; importing it lazily keeps the writers above light for `data`.
    from opacity_jax.train.checkpoint import Checkpointer

    ck = Checkpointer(checkpoint_dir(workdir, label))
    if not ck.steps():
        raise FileNotFoundError(f"no checkpoint in {ck.directory}; train first")
    out = ck.restore_any()
    ck.close()
    if out is None:
        raise IOError(f"no readable checkpoint in {ck.directory}")
    return jax.tree_util.tree_map(jnp.asarray, out[1]["best_params"])
