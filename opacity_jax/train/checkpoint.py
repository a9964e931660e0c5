"""Checkpoints through orbax's CheckpointManager, wrapped so an API change touches one file.

Each checkpoint holds a pytree of arrays (`state`) and a JSON document (`meta`: config,
normalisation statistics, energy grid, provenance, package version, history). The JSON also
carries a SHA-256 of the state's bytes, so silent corruption is detected on restore; a checkpoint
that fails to restore or verify is reported and the previous one is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


def tree_digest(tree) -> str:
    """SHA-256 over the leaves' dtypes, shapes and bytes, in tree order."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_failed_reads(grace_s: float = 0.5):
    """Keep orbax's "Event loop is closed" noise off stderr when a restore fails.

    A failed read leaves tensorstore callbacks that fire into orbax's closed asyncio loop from
    a background thread, each printing a traceback to the process's stderr (fd 2) - dozens of
    them, burying the one-line error. While the block runs (and for `grace_s` after it failed)
    fd 2 goes to a temporary file; everything else written there is passed on.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):      # no real fd 2 (embedded interpreters)
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            if failed:
                time.sleep(grace_s)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            if "Event loop is closed" in text:
                # The threads' tracebacks interleave, so drop traceback lines, not blocks.
                text = "".join(
                    line for line in text.splitlines(keepends=True)
                    if not (line.startswith(("Traceback (most recent call last)", " ", "\t"))
                            or "Event loop is closed" in line or not line.strip()))
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


def _to_numpy(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x), tree)


class Checkpointer:
    """Save/restore (state pytree, meta dict) pairs under `directory/<step>/`.

    Args:
      directory: checkpoint root (created).
      max_to_keep: how many of the newest checkpoints to keep (>= 2 so a corrupt newest one
        still leaves a good one).
    """

    def __init__(self, directory, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max(2, int(max_to_keep)),
                                                 create=True))

    def steps(self) -> list:
        """Finalised checkpoint steps, ascending (partial writes are never listed)."""
        return sorted(self._mngr.all_steps())

    def save(self, step: int, state, meta: dict) -> str:
        """Write checkpoint `step` (blocking until it is finalised on disk); returns the state's
        SHA-256 (`tree_digest`), also stored in the meta as 'state_sha256'."""
        state = _to_numpy(state)
        meta = dict(meta)
        meta["state_sha256"] = tree_digest(state)
        json.dumps(meta)   # fail here, not half-way through the write
        self._mngr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self._mngr.wait_until_finished()
        return meta["state_sha256"]

    def clear(self) -> None:
        """Delete every checkpoint of this folder (a stage that must be re-fitted)."""
        for s in self.steps():
            self._mngr.delete(s)

    def restore_meta(self, step: Optional[int] = None) -> Optional[dict]:
        """The JSON part of checkpoint `step` (default newest readable), or None."""
        for s in ([step] if step is not None else self.steps()[::-1]):
            try:
                with _quiet_failed_reads():
                    out = self._mngr.restore(s, args=ocp.args.Composite(
                        meta=ocp.args.JsonRestore()))
                return out["meta"]
            except Exception as e:   # noqa: BLE001 - any failure means "try the previous one"
                logging.warning("checkpoint %s/%s: meta unreadable (%s)", self.directory, s, e)
        return None

    def _restore_verified(self, step: int, state_args):
        with _quiet_failed_reads():
            out = self._mngr.restore(step, args=ocp.args.Composite(
                state=state_args, meta=ocp.args.JsonRestore()))
        state, meta = _to_numpy(out["state"]), out["meta"]
        want = meta.get("state_sha256")
        if want is not None and tree_digest(state) != want:
            raise IOError("state digest mismatch (corrupt files)")
        return int(step), state, meta

    def restore(self, abstract_state, step: Optional[int] = None) -> Optional[Tuple[int, Any, dict]]:
        """Newest good checkpoint (or `step`) as (step, state, meta); None if there is none.

        `abstract_state` is a pytree with the target structure/shapes/dtypes. A checkpoint that
        raises on restore or whose digest does not match is skipped with a warning naming it.
        """
        abstract_state = _to_numpy(abstract_state)
        for s in ([step] if step is not None else self.steps()[::-1]):
            try:
                return self._restore_verified(s, ocp.args.StandardRestore(abstract_state))
            except Exception as e:   # noqa: BLE001 - any failure means "use the previous one"
                logging.warning("checkpoint %s/%s is corrupt or partial (%s); trying the previous "
                                "one", self.directory, s, e)
                print(f"warning: checkpoint {self.directory}/{s} is corrupt or partial ({e}); "
                      "falling back to the previous one")
        return None

    def restore_exact(self, step: int) -> Tuple[int, Any, dict]:
        """Checkpoint `step` exactly, as `restore_any` reads it, verified against its digest;
        raises (IOError on a digest mismatch, orbax's error otherwise) instead of falling back.
        For inference, which must never mix checkpoints."""
        return self._restore_verified(int(step), ocp.args.StandardRestore())

    def restore_any(self, step: Optional[int] = None) -> Optional[Tuple[int, Any, dict]]:
        """Like `restore` but without a target structure: the saved pytree as numpy arrays
        (dicts for named tuples). For inference, which needs params only."""
        for s in ([step] if step is not None else self.steps()[::-1]):
            try:
                return self._restore_verified(s, ocp.args.StandardRestore())
            except Exception as e:   # noqa: BLE001
                logging.warning("checkpoint %s/%s unreadable (%s); trying the previous one",
                                self.directory, s, e)
        return None

    def close(self):
        self._mngr.close()
