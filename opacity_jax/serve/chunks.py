"""Large queries in fixed-size chunks, so memory stays bounded however many points are asked.

Every loader (`Surrogate`, `StageBasisSurrogate`, `XsecSurrogate`) evaluates N points as
ceil(N / chunk) calls of one compiled function on exactly `chunk` points (the last chunk padded
by repeating its final point, the padding dropped again), so a query never allocates more than
one chunk's intermediates, one compilation serves every size above `chunk`, and the result of a
query is bit-identical from call to call for a fixed chunk size. Queries of at most `chunk`
points run as one batch.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

DEFAULT_CHUNK = 2048   # points per call: ~80 KB of intermediates per point for the CAE decoder


def check_chunk(chunk) -> int:
    """`chunk` as a positive int; ValueError naming the argument otherwise."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer (points per call), got {chunk!r}")
    return int(chunk)


def map_chunks(fn: Callable, inputs: Sequence[np.ndarray], chunk: int, out_axis: int = 0):
    """fn over fixed-size chunks of the leading axis of `inputs` (see module docstring).

    Args:
      fn: (*chunk_inputs) -> array or tuple of arrays whose axis `out_axis` runs over the
        chunk's points.
      inputs: arrays with the same leading length N.
      chunk: points per call (>= 1).
      out_axis: the points axis of fn's outputs.
    Returns:
      fn's output(s) for all N points, as numpy arrays concatenated along `out_axis`.
    """
    chunk = check_chunk(chunk)
    inputs = [np.asarray(a) for a in inputs]
    n = inputs[0].shape[0]
    if n <= chunk:
        out = fn(*inputs)
        return tuple(np.asarray(o) for o in out) if isinstance(out, tuple) else np.asarray(out)
    parts, single = [], False
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        args = [a[i:i + m] for a in inputs]
        if m < chunk:
            args = [np.concatenate([a, np.repeat(a[-1:], chunk - m, axis=0)]) for a in args]
        out = fn(*args)
        single = not isinstance(out, tuple)
        out = (out,) if single else out
        parts.append([np.take(np.asarray(o), np.arange(m), axis=out_axis) for o in out])
    cat = tuple(np.concatenate([p[k] for p in parts], axis=out_axis)
                for k in range(len(parts[0])))
    return cat[0] if single else cat
