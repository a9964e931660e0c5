"""Scalar metrics: JSON lines always, TensorBoard event files when tensorboardX is installed.

A resumed stage continues its log: records at or after the step it resumes from (written by the
interrupted run after its last checkpoint) are dropped first, so no step appears twice; the
workdir lock (`train.workdir.lock`) keeps two runs from appending to one file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


class MetricWriter:
    """Append scalar metrics per step to `<directory>/<label>.jsonl` (+ TensorBoard events).

    TensorBoard: `tensorboard --logdir <directory>` shows the runs (one sub-folder per label).
    With directory=None nothing is written.
    """

    def __init__(self, directory: Optional[Path], label: str, first_step: int = 0):
        """first_step: the step training resumes from; earlier records are kept, later ones
        (and a half-written last line) removed. 0 starts the log afresh."""
        self._fh = None
        self._tb = None
        if directory is None:
            return
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{label}.jsonl"
        keep = []
        if path.exists() and first_step > 0:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("step"), int) and \
                        rec["step"] < first_step:
                    keep.append(line + "\n")
        from opacity_jax.train import workdir as workdir_lib
        workdir_lib.write_text(path, "".join(keep))
        self._fh = open(path, "a", encoding="utf-8")
        try:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(directory / "tensorboard" / label))
        except ImportError:
            self._tb = None

    def write(self, step: int, scalars: dict) -> None:
        """Record `scalars` (name -> float) at `step`."""
        if self._fh is not None:
            self._fh.write(json.dumps({"step": int(step), **{k: float(v) for k, v in
                                                            scalars.items()}}) + "\n")
            self._fh.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), int(step))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
