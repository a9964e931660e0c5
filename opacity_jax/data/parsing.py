"""Shared pieces of the dataset file readers and writers: unit spellings, text lines and rows,
``key = value`` header pairs, checks on opacity arrays, and the error helpers they use.

Used by :mod:`~opacity_jax.data.h5file`, :mod:`~opacity_jax.data.spectrum_tables`,
:mod:`~opacity_jax.data.jlodk` and :mod:`~opacity_jax.data.xsec_io`. Errors are
:class:`~opacity_jax.errors.DataFormatError` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from opacity_jax.errors import DataFormatError
from opacity_jax.physics import constants as _const

__all__ = [
    "KAPPA_UNITS", "DENSITY_UNITS", "TEMPERATURE_UNITS", "normalize_unit", "require_file",
    "first_bad_opacity", "repr_number", "read_text_lines", "split_row", "parse_rows",
    "check_nonnegative", "header_pairs", "open_hdf5",
]


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------

def normalize_unit(unit: str) -> str:
    """Unit spelling for comparison: lower case, '**' as '^', no spaces or brackets."""
    u = str(unit).strip().lower().replace("**", "^")
    for ch in " []()":
        u = u.replace(ch, "")
    return u


# Accepted spellings (after normalize_unit) of the opacity unit cm^2/g.
KAPPA_UNITS = {"cm^2/g", "cm2/g", "cm^2g^-1", "cm2g-1", "cm^2.g^-1"}
# Density unit spelling -> factor to g/cm^3.
DENSITY_UNITS = {
    **{u: 1.0 for u in ("g/cm^3", "g/cm3", "g/cc", "gcc", "gcm^-3", "gcm-3", "g.cm^-3", "g/ccm")},
    **{u: 1e-3 for u in ("kg/m^3", "kg/m3", "kgm^-3", "kgm-3", "kg.m^-3")},
}
# Temperature unit spelling -> factor to eV (kelvin through k_B of physics.constants).
TEMPERATURE_UNITS = {"ev": 1.0, "kev": 1e3, "k": _const.K_BOLTZMANN_EV_K,
                     "kelvin": _const.K_BOLTZMANN_EV_K}


# ---------------------------------------------------------------------------------------------
# Text rows and checks
# ---------------------------------------------------------------------------------------------

def require_file(path) -> Path:
    """`path` as a Path; FileNotFoundError if absent, DataFormatError if not a regular file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise DataFormatError("is not a regular file", path=path)
    return path


def open_hdf5(path, **kwargs):
    """An existing file opened read-only with h5py (kwargs to h5py.File); DataFormatError
    naming it (field 'format') when it is not readable HDF5."""
    import h5py

    path = require_file(path)
    try:
        return h5py.File(path, "r", **kwargs)
    except OSError as exc:
        raise DataFormatError(f"not a readable HDF5 file ({exc})", path=path,
                              field="format") from None


def first_bad_opacity(arr: np.ndarray, allow_nan: bool = False):
    """The first NaN/Inf/negative entry of an opacity array, in C order.

    Args:
      arr: opacities of any shape [cm^2/g].
      allow_nan: NaN (a hole) is accepted; Inf never is.
    Returns:
      (index tuple, value, reason) with reason "negative" or "non-finite", or None.
    """
    arr = np.asarray(arr)
    if arr.size == 0:
        return None
    # Scan slice by slice along axis 0 so the temporary masks stay small for big grids.
    blocks = [arr] if arr.ndim < 2 else (arr[i] for i in range(arr.shape[0]))
    for i, sub in enumerate(blocks):
        sub = np.asarray(sub)
        bad = np.isinf(sub) if allow_nan else ~np.isfinite(sub)
        bad |= sub < 0
        if bad.any():
            flat = int(np.argmax(bad))
            local = np.unravel_index(flat, sub.shape)
            index = tuple(int(j) for j in local) if arr.ndim < 2 else (i,) + tuple(
                int(j) for j in local)
            value = float(sub[local])
            reason = "negative" if np.isfinite(value) else "non-finite"
            return index, value, reason
    return None


def repr_number(x) -> str:
    """repr of a scalar without numpy 2's ``np.float64(...)`` wrapper, for error messages."""
    return repr(x.item()) if isinstance(x, np.generic) else repr(x)


def read_text_lines(path) -> list:
    """Lines of a text file without line terminators; list index + 1 is the line number."""
    path = require_file(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(f"not UTF-8 text ({exc.reason})", path=path, line=line,
                              field="encoding") from None
    # Explicit newline handling (not str.splitlines) so line numbers match what editors show.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def split_row(text: str) -> list:
    """Fields of one table row: comma-separated when it holds a comma, else whitespace."""
    if "," in text:
        return [tok.strip() for tok in text.strip().strip(",").split(",")] if text.strip() else []
    return text.split()


def parse_rows(path, rows: Sequence, columns: Sequence[str], nan_ok: Sequence[int] = ()):
    """Parse numeric rows.

    Args:
      rows: sequence of (line_number, text).
      columns: column names (used in error messages).
      nan_ok: indices of columns in which NaN is accepted (Inf never is).
    Returns:
      (n, len(columns)) float64 array.
    """
    ncol = len(columns)
    tokens = []
    for lineno, text in rows:
        toks = split_row(text)
        if len(toks) != ncol:
            field = columns[len(toks)] if len(toks) < ncol else f"column {ncol + 1}"
            raise DataFormatError(
                f"expected {ncol} columns ({', '.join(columns)}), found {len(toks)}",
                path=path, line=lineno, field=field)
        tokens.extend(toks)
    try:
        values = np.array(tokens, dtype=np.float64).reshape(len(rows), ncol)
    except ValueError:
        # Slow path, only on error: find the offending token with the same parser.
        for lineno, text in rows:
            for col, tok in enumerate(split_row(text)):
                try:
                    np.array([tok], dtype=np.float64)
                except ValueError:
                    raise DataFormatError(f"non-numeric value {tok!r}", path=path, line=lineno,
                                          field=columns[col]) from None
        raise
    bad = ~np.isfinite(values)
    for col in nan_ok:
        bad[:, col] = np.isinf(values[:, col])
    if bad.any():
        r, c = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise DataFormatError(f"non-finite value {repr_number(values[r, c])}", path=path,
                              line=rows[r][0], field=columns[c])
    return values


def check_nonnegative(path, values, line_numbers, columns, cols) -> None:
    """DataFormatError (file, line, field) at the first negative value in columns ``cols``.

    Args:
      path: the file the rows came from (for the message).
      values: (n, len(columns)) parsed rows (from parse_rows); NaN holes pass.
      line_numbers: (n,) 1-based line number of each row.
      columns: column names.
      cols: indices of the opacity columns [cm^2/g] to check.
    """
    sub = values[:, cols]
    neg = sub < 0  # NaN compares False, so holes pass
    if neg.any():
        r, c = np.unravel_index(int(np.argmax(neg)), neg.shape)
        raise DataFormatError(f"negative opacity {repr_number(sub[r, c])}", path=path,
                              line=int(line_numbers[r]), field=columns[cols[c]])


_PAIR = re.compile(
    r"^\s*(?P<key>[A-Za-z][A-Za-z0-9_ ]*?)\s*(?:[\[(](?P<kunit>[^\])]*)[\])])?\s*[:=]\s*"
    r"(?P<value>.*?)\s*$")


def header_pairs(text: str) -> list:
    """(key, key_unit, value) pairs of one comment line; [] when it holds none."""
    pieces = re.split(r"[;,]", text)
    if len(pieces) > 1 and not all(re.search(r"[:=]", p) for p in pieces):
        pieces = [text]  # commas belong to a value or to free text
    pairs = []
    for piece in pieces:
        m = _PAIR.match(piece)
        if m:
            pairs.append((m["key"], m["kunit"], m["value"]))
    return pairs
