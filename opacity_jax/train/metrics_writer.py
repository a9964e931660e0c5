"""Scalar metrics: JSON lines always, a TensorBoard event file when tensorboardX is installed.

A resumed stage continues its logs: records at or after the step it resumes from (written by the
interrupted run after its last checkpoint) are dropped first, so no (tag, step) appears twice;
a stage that starts afresh (step 0, e.g. re-fitted because an upstream stage changed) starts
both logs afresh. The workdir lock (`train.workdir.lock`) keeps two runs from appending to one
file.

TensorBoard: each label has one event file, `<directory>/tensorboard/<label>/EVENT_FILE`, written
here record by record (TFRecord framing with masked CRC-32C, `tensorboardX.proto` Event
messages) rather than by `tensorboardX.SummaryWriter`: the writer starts a new timestamped file
per run, and its `purge_step` only asks TensorBoard to hide the repeated steps while every file
still holds them. Keeping one file lets a resume rewrite it (atomically) without the dropped
records; event files an older writer left in the folder are merged into it once.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import List, Optional, Tuple

EVENT_FILE = "events.out.tfevents.0.opacity_jax"


def _tensorboard_protos():
    """(Event, Summary, masked_crc32c) from tensorboardX, or None when it is not installed."""
    try:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.record_writer import masked_crc32c
    except ImportError:
        return None
    return Event, Summary, masked_crc32c


def _frame(data: bytes, masked_crc32c) -> bytes:
    """One TFRecord: length (uint64 LE), its masked CRC, the data, the data's masked CRC."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header)) + data
            + struct.pack("<I", masked_crc32c(data)))


def read_event_records(path) -> List[bytes]:
    """Serialized Event messages of the TFRecord file `path`, up to the first torn or corrupt
    record (a run killed mid-write leaves at most its last record half-written)."""
    protos = _tensorboard_protos()
    if protos is None:
        raise ImportError("reading TensorBoard event files needs tensorboardX")
    crc = protos[2]
    raw = Path(path).read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(raw):
        header = raw[pos:pos + 8]
        (n,) = struct.unpack("<Q", header)
        if struct.unpack("<I", raw[pos + 8:pos + 12])[0] != crc(header) or \
                pos + 16 + n > len(raw):
            break
        data = raw[pos + 12:pos + 12 + n]
        if struct.unpack("<I", raw[pos + 12 + n:pos + 16 + n])[0] != crc(data):
            break
        out.append(data)
        pos += 16 + n
    return out


def read_scalars(folder) -> List[Tuple[str, int, float, float]]:
    """[(tag, step, value, wall_time [s])] of the scalar events in every event file of `folder`
    (one label's TensorBoard folder), in file order."""
    Event = _tensorboard_protos()[0]
    rows = []
    for f in sorted(Path(folder).glob("*tfevents*")):
        for data in read_event_records(f):
            ev = Event.FromString(data)
            for v in ev.summary.value:
                rows.append((v.tag, int(ev.step), float(v.simple_value), float(ev.wall_time)))
    return rows


class MetricWriter:
    """Append scalar metrics per step to `<directory>/<label>.jsonl` (+ TensorBoard events).

    TensorBoard: `tensorboard --logdir <directory>/tensorboard` shows the runs (one sub-folder
    per label). With directory=None nothing is written.
    """

    def __init__(self, directory: Optional[Path], label: str, first_step: int = 0):
        """first_step: the step training resumes from; earlier records are kept, later ones
        (and a half-written last record) removed. 0 starts the logs afresh."""
        self._fh = None
        self._tb = None
        if directory is None:
            return
        from opacity_jax.train import workdir as workdir_lib
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
        workdir_lib.write_text(path, "".join(keep))
        self._fh = open(path, "a", encoding="utf-8")
        protos = _tensorboard_protos()
        if protos is not None:
            self._open_events(directory / "tensorboard" / label, first_step, protos)

    def _open_events(self, folder: Path, first_step: int, protos) -> None:
        """Rewrite the label's event file with the events before `first_step` (merging files of
        an older writer, first record of each (tag, step) kept), then append to it."""
        from opacity_jax.train import workdir as workdir_lib
        Event, Summary, crc = protos
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / EVENT_FILE
        # The fixed file first: after a crash between the rewrite below and the removal of
        # older files, its records are the ones kept.
        files = ([target] if target.exists() else []) + sorted(
            f for f in folder.glob("*tfevents*") if f != target)
        seen, kept = set(), [_frame(Event(wall_time=time.time(), step=0,
                                          file_version="brain.Event:2").SerializeToString(),
                                    crc)]
        for f in files if first_step > 0 else []:
            for data in read_event_records(f):
                ev = Event.FromString(data)
                if not ev.HasField("summary") or ev.step >= first_step:
                    continue
                key = tuple(v.tag for v in ev.summary.value), int(ev.step)
                if key not in seen:
                    seen.add(key)
                    kept.append(_frame(data, crc))
        workdir_lib.write_bytes(target, b"".join(kept))
        for f in files:
            if f != target:
                f.unlink()
        self._tb = (open(target, "ab"), Event, Summary, crc)

    def write(self, step: int, scalars: dict) -> None:
        """Record `scalars` (name -> float) at `step`."""
        if self._fh is not None:
            self._fh.write(json.dumps({"step": int(step), **{k: float(v) for k, v in
                                                            scalars.items()}}) + "\n")
            self._fh.flush()
        if self._tb is not None:
            fh, Event, Summary, crc = self._tb
            now = time.time()
            fh.write(b"".join(
                _frame(Event(wall_time=now, step=int(step), summary=Summary(value=[
                    Summary.Value(tag=k, simple_value=float(v))])).SerializeToString(), crc)
                for k, v in scalars.items()))
            fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb[0].close()
            self._tb = None
