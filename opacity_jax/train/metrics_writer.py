"""Scalar metrics: JSON lines always, TensorBoard event files when tensorboardX is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


class MetricWriter:
    """Append scalar metrics per step to `<directory>/<label>.jsonl` (+ TensorBoard events).

    TensorBoard: `tensorboard --logdir <directory>` shows the runs (one sub-folder per label).
    With directory=None nothing is written.
    """

    def __init__(self, directory: Optional[Path], label: str):
        self._fh = None
        self._tb = None
        if directory is None:
            return
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._fh = open(directory / f"{label}.jsonl", "a", encoding="utf-8")
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
