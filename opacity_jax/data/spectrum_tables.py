"""Readers and writers: the canonical HDF5 dataset file, per-spectrum text tables, JLODK tables.

Three formats live here:

* **Canonical HDF5 file** (``save_dataset`` / ``load_dataset``): one :class:`Dataset` per file.
  Layout (format ``"opacity_jax.dataset"``, ``format_version`` 1)::

      /elements          (nZ,)           int32   atomic numbers
      /temperature_ev    (nT,)           float64 [eV]
      /density_gcc       (nR,)           float64 [g/cm^3]
      /energy_edges_ev   (nE + 1,)       float64 [eV]
      /kappa             (nZ, nT, nR, nE) float32 [cm^2/g], chunked per (Z, T) row of spectra
      /components/{bb,bf,ff,es}          same shape/dtype/chunking as kappa (when present)
      /zbar              (nZ, nT, nR)    float (when present)
      /charge_fractions  (nZ, nT, nR, nQ) float (when present)
      /valid             (nZ, nT, nR)    bool
      attrs: format, format_version, units (JSON), provenance (JSON), writer

  Default filter: gzip level 1 + byte shuffle. Measured on a (28, 27, 17, 200) float32 grid it
  costs ~10x the (tiny) uncompressed write time but halves the file once the smooth component
  arrays are included; gzip is used rather than the slightly faster lzf because every HDF5
  reader (C, Fortran, Julia, h5dump) decodes deflate, while lzf exists only in h5py.

* **Per-spectrum text tables** (NIST-LANL-like exports; ``read_spectrum_table``,
  ``write_spectrum_table``, ``read_spectrum_directory``): ``#`` header lines with ``key = value``
  pairs, then 6 numeric columns (energy [eV], total, bb, bf, ff, es [cm^2/g]).

* **JLODK Planck-mean tables** (Tanaka et al. 2020; ``read_jlodk``, ``write_jlodk``): folders
  ``Ye<Ye>/`` of ``Planck_Mean_Opacity_Ye<Ye>_Time<days>.txt`` files with 5 columns
  (log10 rho, T [K], bb, es, total [cm^2/g]).

Every reader raises :class:`~opacity_jax.errors.DataFormatError` naming the file, the 1-based line
(where there is one) and the field, and ``FileNotFoundError`` naming the path for a missing file.
Every writer is atomic: it writes a temporary file in the target directory, fsyncs it and renames
it over the target, so a crash or exception never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np

from opacity_jax import __version__
from opacity_jax.data import grid as _grid
from opacity_jax.data.dataset import COMPONENTS, Dataset
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import constants as _const
from opacity_jax.physics import elements as _el
from opacity_jax.train.workdir import atomic_write, json_default, write_text

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "UNITS", "SPECTRUM_COLUMNS", "JLODK_COLUMNS",
    "save_dataset", "load_dataset",
    "SpectrumTable", "read_spectrum_table", "write_spectrum_table", "read_spectrum_directory",
    "JlodkTable", "read_jlodk", "write_jlodk",
]

FORMAT_NAME = "opacity_jax.dataset"
FORMAT_VERSION = 1
UNITS = {"kappa": "cm^2/g", "temperature": "eV", "density": "g/cm^3", "energy": "eV"}

SPECTRUM_COLUMNS = ("energy_ev", "total", "bb", "bf", "ff", "es")
JLODK_COLUMNS = ("log10_rho", "temperature_k", "bb", "es", "total")

# Chunks hold whole spectra and stay under HDF5's default 1 MiB chunk cache, so tools that do not
# enlarge the cache still read each chunk once.
_CHUNK_BYTES = 1 << 20
_READ_CACHE_BYTES = 64 << 20
_COMPRESSION = {
    "gzip": dict(compression="gzip", compression_opts=1, shuffle=True),
    "lzf": dict(compression="lzf", shuffle=True),
    None: {},
}


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------

def normalize_unit(unit: str) -> str:
    """Unit spelling for comparison: lower case, '**' as '^', no spaces or brackets."""
    u = str(unit).strip().lower().replace("**", "^")
    for ch in " []()":
        u = u.replace(ch, "")
    return u


_KAPPA_UNITS = {"cm^2/g", "cm2/g", "cm^2g^-1", "cm2g-1", "cm^2.g^-1"}
_DENSITY_UNITS = {  # factor to g/cm^3
    **{u: 1.0 for u in ("g/cm^3", "g/cm3", "g/cc", "gcc", "gcm^-3", "gcm-3", "g.cm^-3", "g/ccm")},
    **{u: 1e-3 for u in ("kg/m^3", "kg/m3", "kgm^-3", "kgm-3", "kg.m^-3")},
}
_TEMPERATURE_UNITS = {"ev": 1.0, "kev": 1e3, "k": _const.K_BOLTZMANN_EV_K,
                      "kelvin": _const.K_BOLTZMANN_EV_K}
_DATASET_UNITS = {"kappa": _KAPPA_UNITS,
                  "temperature": {"ev"},
                  "density": {u for u, f in _DENSITY_UNITS.items() if f == 1.0},
                  "energy": {"ev"}}


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

def require_file(path) -> Path:
    """`path` as a Path; FileNotFoundError if absent, DataFormatError if not a regular file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise DataFormatError("is not a regular file", path=path)
    return path


def _first_bad_opacity(arr: np.ndarray, allow_nan: bool = False):
    """(index tuple, value, reason) of the first NaN/Inf/negative entry in C order, or None."""
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


def _attr_str(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return str(value)


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


def _check_nonnegative(path, values, line_numbers, columns, cols) -> None:
    sub = values[:, cols]
    neg = sub < 0  # NaN compares False, so holes pass
    if neg.any():
        r, c = np.unravel_index(int(np.argmax(neg)), neg.shape)
        raise DataFormatError(f"negative opacity {repr_number(sub[r, c])}", path=path,
                              line=int(line_numbers[r]), field=columns[cols[c]])


def _decimals(values: np.ndarray, minimum: int) -> int:
    """Fewest fixed-point decimals (>= minimum) that reproduce every value exactly."""
    values = np.asarray(values, dtype=np.float64).ravel()
    for d in range(minimum, 18):
        if all(float(f"{v:.{d}f}") == v for v in values.tolist()):
            return d
    return 17


# ---------------------------------------------------------------------------------------------
# Canonical HDF5 dataset file
# ---------------------------------------------------------------------------------------------

def _chunks(shape) -> Optional[tuple]:
    if any(int(s) == 0 for s in shape):
        return None
    _, _, nr, ne = (int(s) for s in shape)
    rows = max(1, min(nr, _CHUNK_BYTES // (4 * ne)))
    return (1, 1, rows, ne)


def save_dataset(ds: Dataset, path, *, compression: Optional[str] = "gzip") -> Path:
    """Write ``ds`` to the canonical HDF5 file at ``path`` atomically.

    Args:
      ds: the Dataset; kappa and components (nZ, nT, nR, nE) are stored as float32 [cm^2/g],
        axes as float64 (temperature [eV], density [g/cm^3], energy edges [eV]).
      path: target file; its directory must exist. An existing file is replaced only once the
        new one is complete.
      compression: "gzip" (level 1 + shuffle, default; portable), "lzf" (+ shuffle; h5py only)
        or None.
    Returns:
      The path written.
    Raises:
      ValueError: NaN/Inf/negative opacities (fill holes with 0 and mark them ``valid=False``),
        values that overflow float32, unknown compression.
      TypeError: provenance that is not JSON-serialisable.
    """
    if compression not in _COMPRESSION:
        raise ValueError(f"compression must be one of {list(_COMPRESSION)}, got {compression!r}")
    ds.validate()
    # Everything that can fail on content is checked before the temp file exists.
    provenance = json.dumps(ds.provenance, default=json_default)
    spectra = {"kappa": np.asarray(ds.kappa, dtype=np.float32)}
    for name in COMPONENTS:
        if name in ds.components:
            spectra[f"components/{name}"] = np.asarray(ds.components[name], dtype=np.float32)
    for field, arr in spectra.items():
        bad = _first_bad_opacity(arr)
        if bad is not None:
            index, value, reason = bad
            raise ValueError(f"{field}: {reason} value {value!r} at index {index} "
                             f"(after conversion to float32); cannot save")
    optional = {}
    for name in ("zbar", "charge_fractions"):
        arr = getattr(ds, name)
        if arr is not None:
            arr = np.asarray(arr)
            optional[name] = arr if arr.dtype in (np.float32, np.float64) else arr.astype(
                np.float64)
    chunks = _chunks(ds.shape)
    filters = _COMPRESSION[compression] if chunks is not None else {}

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["units"] = json.dumps(UNITS)
            f.attrs["provenance"] = provenance
            f.attrs["writer"] = f"opacity_jax {__version__}"
            f.create_dataset("elements", data=np.asarray(ds.elements, dtype=np.int32))
            f.create_dataset("temperature_ev", data=ds.temperature_ev)
            f.create_dataset("density_gcc", data=ds.density_gcc)
            f.create_dataset("energy_edges_ev", data=ds.energy_edges_ev)
            for field, arr in spectra.items():
                f.create_dataset(field, data=arr, chunks=chunks, **filters)
            for name, arr in optional.items():
                f.create_dataset(name, data=arr)
            f.create_dataset("valid", data=np.asarray(ds.valid, dtype=bool))

    return atomic_write(path, write)


_REQUIRED_DATASETS = ("elements", "temperature_ev", "density_gcc", "energy_edges_ev", "kappa",
                      "valid")


def _check_header(f, path) -> None:
    if "format" not in f.attrs:
        raise DataFormatError(f"not an {FORMAT_NAME} file (no 'format' attribute)", path=path,
                              field="format")
    fmt = _attr_str(f.attrs["format"])
    if fmt != FORMAT_NAME:
        raise DataFormatError(f"format is {fmt!r}, expected {FORMAT_NAME!r}", path=path,
                              field="format")
    version = f.attrs.get("format_version")
    try:
        ok = version is not None and int(version) == version and int(version) == FORMAT_VERSION
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataFormatError(f"format_version is {repr_number(version)}; this reader understands "
                              f"{FORMAT_VERSION}", path=path, field="format_version")
    if "units" not in f.attrs:
        raise DataFormatError("missing 'units' attribute", path=path, field="units")
    try:
        units = json.loads(_attr_str(f.attrs["units"]))
    except ValueError:
        units = None
    if not isinstance(units, dict):
        raise DataFormatError("'units' attribute is not a JSON object", path=path, field="units")
    for key, accepted in _DATASET_UNITS.items():
        got = units.get(key)
        if got is None:
            raise DataFormatError(f"units has no entry for {key!r}", path=path,
                                  field=f"units.{key}")
        if normalize_unit(got) not in accepted:
            raise DataFormatError(f"unknown unit {got!r} for {key} (expected {UNITS[key]!r})",
                                  path=path, field=f"units.{key}")


def _read_rows(dset, rows: Optional[list]) -> np.ndarray:
    if rows is None:
        out = np.empty(dset.shape, dtype=dset.dtype)
        if out.size:
            dset.read_direct(out)
        return out
    # One hyperslab per requested element: the chunks never span two elements, so nothing
    # outside the subset is read or decompressed.
    out = np.empty((len(rows),) + tuple(dset.shape[1:]), dtype=dset.dtype)
    if out.size:
        for j, i in enumerate(rows):
            dset.read_direct(out, np.s_[i], np.s_[j])
    return out


def load_dataset(path, elements: Optional[Sequence[int]] = None) -> Dataset:
    """Read a canonical HDF5 file written by :func:`save_dataset`.

    Args:
      path: the file.
      elements: optional atomic numbers to load (in this order); only those rows of the
        (nZ, ...) arrays are read from disk. None loads every element.
    Returns:
      Dataset with kappa/components (nZ', nT, nR, nE) float32 [cm^2/g], temperature_ev (nT,)
      [eV], density_gcc (nR,) [g/cm^3], energy_edges_ev (nE + 1,) [eV], valid (nZ', nT, nR).
    Raises:
      FileNotFoundError: ``path`` does not exist (message names it).
      DataFormatError: not an HDF5 file, wrong ``format``/``format_version``, unknown units,
        missing or mis-shaped dataset, NaN/Inf/negative opacity (names the field and the index
        of the first bad value).
      ValueError: a requested element is not in the file.
    """
    path = require_file(path)
    try:
        f = h5py.File(path, "r", rdcc_nbytes=_READ_CACHE_BYTES)
    except OSError as exc:
        raise DataFormatError(f"not a readable HDF5 file ({exc})", path=path,
                              field="format") from None
    with f:
        _check_header(f, path)
        for name in _REQUIRED_DATASETS:
            if not isinstance(f.get(name), h5py.Dataset):
                raise DataFormatError("missing dataset", path=path, field=name)
        all_elements = np.asarray(f["elements"][()])
        axes = {name: np.asarray(f[name][()], dtype=np.float64)
                for name in ("temperature_ev", "density_gcc", "energy_edges_ev")}
        for name, arr in [("elements", all_elements)] + list(axes.items()):
            if arr.ndim != 1:
                raise DataFormatError(f"expected a 1-D array, got shape {arr.shape}", path=path,
                                      field=name)
        full = (all_elements.size, axes["temperature_ev"].size, axes["density_gcc"].size,
                max(axes["energy_edges_ev"].size - 1, 0))
        expected = {"kappa": full, "valid": full[:3]}
        comp_group = f.get("components")
        comp_names = []
        if comp_group is not None and not isinstance(comp_group, h5py.Group):
            raise DataFormatError("expected a group", path=path, field="components")
        if comp_group is not None:
            for name in comp_group:
                if name not in COMPONENTS:
                    raise DataFormatError(f"unknown component (allowed: {COMPONENTS})", path=path,
                                          field=f"components/{name}")
                comp_names.append(name)
                expected[f"components/{name}"] = full
        if "zbar" in f:
            expected["zbar"] = full[:3]
        for name, shape in expected.items():
            if tuple(f[name].shape) != shape:
                raise DataFormatError(f"shape {f[name].shape}, expected {shape}", path=path,
                                      field=name)
        if "charge_fractions" in f:
            shape = tuple(f["charge_fractions"].shape)
            if len(shape) != 4 or shape[:3] != full[:3]:
                raise DataFormatError(f"shape {shape}, expected {full[:3]} + (n_charge,)",
                                      path=path, field="charge_fractions")

        if elements is None:
            rows = None
            out_elements = all_elements
        else:
            wanted = [int(z) for z in np.atleast_1d(np.asarray(elements)).tolist()]
            if len(set(wanted)) != len(wanted):
                raise ValueError(f"elements contains duplicates: {wanted}")
            missing = [z for z in wanted if z not in all_elements.tolist()]
            if missing:
                raise ValueError(f"elements {missing} not in {path} "
                                 f"(has {all_elements.tolist()})")
            rows = [int(np.nonzero(all_elements == z)[0][0]) for z in wanted]
            out_elements = np.asarray(wanted, dtype=np.int32)

        def spectra(name):
            arr = _read_rows(f[name], rows)
            if not np.issubdtype(arr.dtype, np.floating):
                raise DataFormatError(f"dtype {arr.dtype} is not floating point", path=path,
                                      field=name)
            arr = arr.astype(np.float32, copy=False)
            bad = _first_bad_opacity(arr)
            if bad is not None:
                index, value, reason = bad
                if rows is not None:  # report the index as stored in the file
                    index = (rows[index[0]],) + index[1:]
                raise DataFormatError(f"{reason} value {value!r} at index {index}", path=path,
                                      field=name)
            return arr

        kappa = spectra("kappa")
        components = {name: spectra(f"components/{name}")
                      for name in COMPONENTS if name in comp_names}
        zbar = _read_rows(f["zbar"], rows) if "zbar" in f else None
        charge_fractions = (_read_rows(f["charge_fractions"], rows)
                            if "charge_fractions" in f else None)
        valid = _read_rows(f["valid"], rows).astype(bool)
        provenance = {}
        if "provenance" in f.attrs:
            try:
                provenance = json.loads(_attr_str(f.attrs["provenance"]))
            except ValueError:
                raise DataFormatError("'provenance' attribute is not JSON", path=path,
                                      field="provenance") from None
    try:
        return Dataset(elements=out_elements, kappa=kappa, components=components, zbar=zbar,
                       charge_fractions=charge_fractions, valid=valid, provenance=provenance,
                       **axes)
    except ValueError as exc:  # axis ordering/positivity, checked by Dataset.validate
        raise DataFormatError(str(exc), path=path) from None


# ---------------------------------------------------------------------------------------------
# Per-spectrum text tables
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SpectrumTable:
    """One opacity spectrum at a single (Z, T, rho) node, as read from a text table.

    Attributes:
      z: atomic number.
      temperature_ev: temperature [eV].
      density_gcc: mass density [g/cm^3].
      energy_ev: (n,) strictly increasing photon energies [eV] (point values).
      kappa: (n,) total monochromatic opacity [cm^2/g].
      components: dict name -> (n,) [cm^2/g] for names in COMPONENTS ("bb", "bf", "ff", "es").
      zbar: mean ionic charge, or None when the table does not give it.
      source: the file it was read from, or None.
    """

    z: int
    temperature_ev: float
    density_gcc: float
    energy_ev: np.ndarray
    kappa: np.ndarray
    components: dict = dataclasses.field(default_factory=dict)
    zbar: Optional[float] = None
    source: Optional[str] = None

    def __post_init__(self):
        self.z = int(self.z)
        self.temperature_ev = float(self.temperature_ev)
        self.density_gcc = float(self.density_gcc)
        self.zbar = None if self.zbar is None else float(self.zbar)
        self.energy_ev = np.asarray(self.energy_ev, dtype=np.float64)
        self.kappa = np.asarray(self.kappa, dtype=np.float64)
        self.components = {k: np.asarray(v, dtype=np.float64) for k, v in self.components.items()}
        if self.energy_ev.ndim != 1 or self.kappa.shape != self.energy_ev.shape:
            raise ValueError(f"energy_ev {self.energy_ev.shape} and kappa {self.kappa.shape} "
                             "must be equal-length 1-D arrays")
        for name, arr in self.components.items():
            if name not in COMPONENTS:
                raise ValueError(f"unknown component {name!r}; allowed: {COMPONENTS}")
            if arr.shape != self.energy_ev.shape:
                raise ValueError(f"component {name!r} has shape {arr.shape}, "
                                 f"expected {self.energy_ev.shape}")

    @property
    def energy_edges_ev(self) -> np.ndarray:
        """(n + 1,) bin edges [eV] around the point energies (grid.edges_from_centers_ev)."""
        return _grid.edges_from_centers_ev(self.energy_ev)


_PAIR = re.compile(
    r"^\s*(?P<key>[A-Za-z][A-Za-z0-9_ ]*?)\s*(?:[\[(](?P<kunit>[^\])]*)[\])])?\s*[:=]\s*"
    r"(?P<value>.*?)\s*$")
_NUMBER = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?)\s*(?P<unit>.*)$")
_HEADER_KEYS = {
    "z": "Z", "atomic_number": "Z", "atomicnumber": "Z",
    "element": "element", "symbol": "element",
    "t": "T", "temp": "T", "temperature": "T", "kt": "T",
    "rho": "rho", "density": "rho", "dens": "rho",
    "zbar": "zbar", "z_bar": "zbar", "mean_charge": "zbar", "zmean": "zbar",
}


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


def _canonical_key(key: str):
    """(canonical name, unit suffix) for a header key, or (None, None) if not ours."""
    k = re.sub(r"\s+", "_", key.strip().lower())
    if k in _HEADER_KEYS:
        return _HEADER_KEYS[k], None
    if "_" in k:
        base, suffix = k.split("_", 1)
        if base in _HEADER_KEYS and _HEADER_KEYS[base] in ("T", "rho"):
            return _HEADER_KEYS[base], suffix
    return None, None


def _header_number(path, lineno, field, raw_key, value, units: Sequence[Optional[str]],
                   table: Optional[dict], default_unit: Optional[str]) -> float:
    m = _NUMBER.match(value)
    if not m:
        raise DataFormatError(f"{raw_key}: expected a number, got {value!r}", path=path,
                              line=lineno, field=field)
    number = float(m["num"].replace("d", "e").replace("D", "e"))
    given = [normalize_unit(u) for u in list(units) + [m["unit"]] if u and normalize_unit(u)]
    if table is None:
        if given:
            raise DataFormatError(f"{raw_key}: unexpected unit {given[0]!r} on a dimensionless "
                                  "value", path=path, line=lineno, field=field)
        return number
    if len(set(given)) > 1:
        raise DataFormatError(f"{raw_key}: conflicting units {sorted(set(given))}", path=path,
                              line=lineno, field=field)
    unit = given[0] if given else default_unit
    if unit not in table:
        raise DataFormatError(f"{raw_key}: unknown unit {unit!r} (accepted: "
                              f"{', '.join(sorted(table))})", path=path, line=lineno, field=field)
    return number * table[unit]


def read_spectrum_table(path) -> SpectrumTable:
    """Read one per-spectrum text table (NIST-LANL-like export).

    Format: ``#`` lines form the header, with ``key = value`` or ``key: value`` pairs (several
    per line may be separated by ``,`` or ``;``); keys are case-insensitive and unknown keys are
    ignored:

      * ``Z`` (atomic number) or ``element`` (symbol or name, via elements.element_index);
      * ``T`` / ``temperature`` with unit eV (default), keV or K, given as a key suffix
        (``T_eV``, ``T_K``), in brackets (``T [K]``) or after the value (``T = 5802 K``);
        kelvin is converted with k_B from physics.constants;
      * ``rho`` / ``density`` in g/cm^3 (default; ``g/cm3``, ``g/cc``, ``g cm^-3``) or kg/m^3;
      * optional ``zbar``.

    Then data rows, whitespace- or comma-separated, exactly 6 columns: photon energy [eV],
    total, bound-bound, bound-free, free-free, scattering opacity [cm^2/g].

    Returns:
      SpectrumTable with (n,) float64 arrays, n >= 2.
    Raises:
      FileNotFoundError: missing file.
      DataFormatError (file, 1-based line, field): wrong column count, non-numeric, NaN/Inf,
        negative opacity, non-positive or non-increasing energy, fewer than 2 rows, missing
        Z/T/rho header, unknown or conflicting unit.
    """
    path = require_file(path)
    lines = read_text_lines(path)
    header = {}   # canonical field -> (value, line)
    rows = []
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            rows.append((lineno, line))
            continue
        for raw_key, kunit, value in header_pairs(stripped.lstrip("#")):
            field, suffix = _canonical_key(raw_key)
            if field is None:
                continue
            if field in header:
                raise DataFormatError(f"{raw_key} given twice (first on line {header[field][1]})",
                                      path=path, line=lineno, field=field)
            if field == "element":
                try:
                    z = int(_el.ATOMIC_NUMBERS[_el.element_index(value)])
                except ValueError as exc:
                    raise DataFormatError(str(exc), path=path, line=lineno,
                                          field=field) from None
                header[field] = (z, lineno)
            elif field == "Z":
                z = _header_number(path, lineno, field, raw_key, value, [kunit, suffix], None,
                                   None)
                if z != int(z) or z < 1:
                    raise DataFormatError(f"{raw_key}: atomic number must be a positive integer, "
                                          f"got {value!r}", path=path, line=lineno, field=field)
                header[field] = (int(z), lineno)
            elif field == "T":
                header[field] = (_header_number(path, lineno, field, raw_key, value,
                                                [kunit, suffix], _TEMPERATURE_UNITS, "ev"),
                                 lineno)
            elif field == "rho":
                header[field] = (_header_number(path, lineno, field, raw_key, value,
                                                [kunit, suffix], _DENSITY_UNITS, "g/cm^3"),
                                 lineno)
            else:  # zbar
                header[field] = (_header_number(path, lineno, field, raw_key, value,
                                                [kunit, suffix], None, None), lineno)
            v = header[field][0]
            if field in ("T", "rho") and not (math.isfinite(v) and v > 0):
                raise DataFormatError(f"{raw_key} must be finite and positive, got {value!r}",
                                      path=path, line=lineno, field=field)
            if field == "zbar" and not (math.isfinite(v) and v >= 0):
                raise DataFormatError(f"{raw_key} must be finite and >= 0, got {value!r}",
                                      path=path, line=lineno, field=field)

    header_end = rows[0][0] if rows else len(lines)
    if "Z" in header and "element" in header and header["Z"][0] != header["element"][0]:
        raise DataFormatError(f"Z = {header['Z'][0]} contradicts element "
                              f"(Z = {header['element'][0]})", path=path,
                              line=header["element"][1], field="element")
    z = header.get("Z", header.get("element"))
    for field, have in (("Z", z), ("T", header.get("T")), ("rho", header.get("rho"))):
        if have is None:
            hint = " (or 'element')" if field == "Z" else ""
            raise DataFormatError(f"missing header key {field!r}{hint} before the data",
                                  path=path, line=header_end, field=field)

    values = parse_rows(path, rows, SPECTRUM_COLUMNS)
    line_numbers = np.array([r[0] for r in rows], dtype=np.int64)
    if len(rows) < 2:
        raise DataFormatError(f"need at least 2 data rows, found {len(rows)}", path=path,
                              line=header_end, field="energy_ev")
    _check_nonnegative(path, values, line_numbers, SPECTRUM_COLUMNS, [1, 2, 3, 4, 5])
    energy = values[:, 0]
    if energy[0] <= 0:
        raise DataFormatError(f"photon energy must be positive, got {repr_number(energy[0])}",
                              path=path, line=int(line_numbers[0]), field="energy_ev")
    step_bad = np.flatnonzero(np.diff(energy) <= 0)
    if step_bad.size:
        r = int(step_bad[0]) + 1
        raise DataFormatError(f"energies not strictly increasing ({repr_number(energy[r - 1])} then "
                              f"{repr_number(energy[r])})", path=path, line=int(line_numbers[r]),
                              field="energy_ev")
    return SpectrumTable(
        z=z[0], temperature_ev=header["T"][0], density_gcc=header["rho"][0],
        energy_ev=energy, kappa=values[:, 1],
        components={name: values[:, 2 + i] for i, name in enumerate(("bb", "bf", "ff", "es"))},
        zbar=header["zbar"][0] if "zbar" in header else None, source=str(path))


def write_spectrum_table(path, table: SpectrumTable) -> Path:
    """Write ``table`` atomically in the format :func:`read_spectrum_table` reads.

    Header values and data use Python's shortest round-trip float repr, so reading the file back
    gives bit-identical float64 values. T is written in eV, rho in g/cm^3.

    Args:
      path: target file (its directory must exist).
      table: SpectrumTable with all four components "bb", "bf", "ff", "es" ((n,) [cm^2/g]).
    Returns:
      The path written.
    Raises:
      ValueError: missing components, non-finite or negative opacities, energies not positive
        and strictly increasing (the file would not read back).
    """
    missing = [c for c in ("bb", "bf", "ff", "es") if c not in table.components]
    if missing:
        raise ValueError(f"table lacks components {missing}; the text format has 6 columns")
    cols = [table.energy_ev, table.kappa] + [table.components[c] for c in ("bb", "bf", "ff", "es")]
    data = np.stack(cols, axis=1)
    bad = _first_bad_opacity(data[:, 1:])
    if bad is not None:
        (r, c), value, reason = bad
        raise ValueError(f"{SPECTRUM_COLUMNS[c + 1]}: {reason} value {value!r} at row {r}")
    e = table.energy_ev
    if e.size < 2 or not np.all(np.isfinite(e)) or e[0] <= 0 or np.any(np.diff(e) <= 0):
        raise ValueError("energy_ev must hold >= 2 finite, positive, strictly increasing values")
    out = [f"# opacity_jax spectrum table (opacity_jax {__version__})", f"# Z = {table.z}"]
    with contextlib.suppress(ValueError):
        out.append(f"# element = {_el.SYMBOLS[_el.element_index(table.z)]}")
    out.append(f"# T = {table.temperature_ev!r} eV")
    out.append(f"# rho = {table.density_gcc!r} g/cm^3")
    if table.zbar is not None:
        out.append(f"# zbar = {table.zbar!r}")
    out.append("# columns: energy [eV]  total  bb  bf  ff  es [cm^2/g]")
    out.extend(" ".join(f"{v!r:>24}" for v in row) for row in data.tolist())
    return write_text(path, "\n".join(out) + "\n")


def _cluster(values: Sequence[float], rtol: float) -> np.ndarray:
    """Sorted distinct values, merging those within rtol of a group's smallest member."""
    reps = []
    for v in sorted(values):
        if not reps or v > reps[-1] * (1.0 + rtol):
            reps.append(v)
    return np.asarray(reps, dtype=np.float64)


def _match(axis: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(axis - value) / axis))


def read_spectrum_directory(directory, pattern: str = "*.txt", *, rtol: float = 1e-6,
                            mixed_zbar: str = "error") -> Dataset:
    """Assemble a Dataset from a directory of per-spectrum text tables.

    The grid is the sorted distinct atomic numbers, temperatures and densities found in the
    files (T and rho values within relative ``rtol`` count as one node). Grid nodes without a
    file get ``valid = False`` and kappa, components (and zbar) 0. Point energies become bin
    edges via grid.edges_from_centers_ev, and the point values are stored as the bin values.

    Args:
      directory: folder holding the tables.
      pattern: glob pattern selecting the tables.
      rtol: relative tolerance for matching T, rho and energies between files.
      mixed_zbar: what to do when some files give zbar and others do not: "error" (default:
        such a mix usually means the files come from different exports) or "drop" (return
        zbar None and note it in the provenance).
    Returns:
      Dataset with kappa and all four components (nZ, nT, nR, nE) float32 [cm^2/g], zbar
      (nZ, nT, nR) when every file gives it, provenance recording directory and file count.
    Raises:
      FileNotFoundError: missing directory or no file matching ``pattern``.
      DataFormatError: any bad table (see read_spectrum_table); two files for the same node;
        energy grids that differ (names both files and the first differing index); mixed zbar
        with mixed_zbar="error".
    """
    if mixed_zbar not in ("error", "drop"):
        raise ValueError(f"mixed_zbar must be 'error' or 'drop', got {mixed_zbar!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    files = sorted(p for p in directory.glob(pattern) if p.is_file())
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} in {directory}")
    tables = [read_spectrum_table(p) for p in files]

    ref = tables[0]
    for t in tables[1:]:
        a, b = ref.energy_ev, t.energy_ev
        n = min(a.size, b.size)
        diff = np.flatnonzero(np.abs(a[:n] - b[:n]) > rtol * np.abs(a[:n]))
        if diff.size or a.size != b.size:
            i = int(diff[0]) if diff.size else n
            what = (f"{repr_number(b[i])} vs {repr_number(a[i])} eV" if diff.size else
                    f"{b.size} points vs {a.size}")
            raise DataFormatError(f"energy grid differs from {ref.source}: first difference at "
                                  f"index {i} ({what})", path=t.source, field="energy_ev")

    have_zbar = [t for t in tables if t.zbar is not None]
    lack_zbar = [t for t in tables if t.zbar is None]
    zbar_note = None
    if have_zbar and lack_zbar:
        if mixed_zbar == "error":
            raise DataFormatError(f"zbar given in {len(have_zbar)} files (e.g. "
                                  f"{have_zbar[0].source}) but not in {len(lack_zbar)} (e.g. this "
                                  "one); pass mixed_zbar='drop' to ignore zbar",
                                  path=lack_zbar[0].source, field="zbar")
        zbar_note = f"zbar dropped: given in {len(have_zbar)} of {len(tables)} files"

    zs = np.asarray(sorted({t.z for t in tables}), dtype=np.int32)
    temps = _cluster([t.temperature_ev for t in tables], rtol)
    rhos = _cluster([t.density_gcc for t in tables], rtol)
    shape = (zs.size, temps.size, rhos.size, ref.energy_ev.size)
    kappa = np.zeros(shape, dtype=np.float32)
    components = {name: np.zeros(shape, dtype=np.float32) for name in ("bb", "bf", "ff", "es")}
    zbar = np.zeros(shape[:3], dtype=np.float64) if (have_zbar and not lack_zbar) else None
    owner = {}
    for t in tables:
        node = (int(np.searchsorted(zs, t.z)), _match(temps, t.temperature_ev),
                _match(rhos, t.density_gcc))
        if node in owner:
            raise DataFormatError(f"same (Z, T, rho) node as {owner[node]} (Z={t.z}, "
                                  f"T={t.temperature_ev!r} eV, rho={t.density_gcc!r} g/cm^3)",
                                  path=t.source, field="node")
        owner[node] = t.source
        for name, arr, src in [("total", kappa, t.kappa)] + [
                (c, components[c], t.components[c]) for c in components]:
            arr[node] = src
            if not np.all(np.isfinite(arr[node])):
                raise DataFormatError("value overflows float32", path=t.source, field=name)
        if zbar is not None:
            zbar[node] = t.zbar
    valid = np.zeros(shape[:3], dtype=bool)
    for node in owner:
        valid[node] = True

    provenance = {"source": "spectrum_directory", "directory": str(directory.resolve()),
                  "pattern": pattern, "n_files": len(files), "n_missing_nodes": int((~valid).sum()),
                  "reader": "opacity_jax.data.io.read_spectrum_directory",
                  "opacity_jax_version": __version__,
                  "energy": "point energies; edges from grid.edges_from_centers_ev"}
    if zbar_note:
        provenance["note"] = zbar_note
    return Dataset(elements=zs, temperature_ev=temps, density_gcc=rhos,
                   energy_edges_ev=_grid.edges_from_centers_ev(ref.energy_ev), kappa=kappa,
                   components=components, zbar=zbar, valid=valid, provenance=provenance)


# ---------------------------------------------------------------------------------------------
# JLODK Planck-mean tables
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class JlodkTable:
    """JLODK Planck-mean opacities on a (Ye, time, density, temperature) grid.

    Attributes:
      ye: (nY,) electron fractions, increasing.
      time_days: (nt,) times since merger [days], increasing.
      log10_rho: (nRho,) log10 of mass density [g/cm^3], increasing.
      temperature_k: (nT,) temperatures [K], increasing.
      kappa_bb: (nY, nt, nRho, nT) float64 bound-bound (expansion) Planck mean [cm^2/g].
      kappa_es: (nY, nt, nRho, nT) float64 electron-scattering opacity [cm^2/g] (exact zeros
        occur at low T).
      kappa_total: (nY, nt, nRho, nT) float64 total Planck mean = bb + es [cm^2/g].
        All three may hold NaN for missing entries when read with allow_nan=True.
      source: (nY, nt) nested tuple of the files read, () for a table built in memory.
      root: the folder read, or None.
    """

    ye: np.ndarray
    time_days: np.ndarray
    log10_rho: np.ndarray
    temperature_k: np.ndarray
    kappa_bb: np.ndarray
    kappa_es: np.ndarray
    kappa_total: np.ndarray
    source: tuple = ()
    root: Optional[str] = None

    def __post_init__(self):
        for name in ("ye", "time_days", "log10_rho", "temperature_k"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            setattr(self, name, arr)
        for name in ("kappa_bb", "kappa_es", "kappa_total"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != self.shape:
                raise ValueError(f"{name} has shape {arr.shape}, axes imply {self.shape}")
            setattr(self, name, arr)

    @property
    def shape(self) -> tuple:
        """(nY, nt, nRho, nT)."""
        return (self.ye.size, self.time_days.size, self.log10_rho.size, self.temperature_k.size)


_NUM = r"(\d+(?:\.\d*)?)"
_YE_DIR = re.compile(rf"^Ye{_NUM}$")
_JLODK_FILE = re.compile(rf"^Planck_Mean_Opacity_Ye{_NUM}_Time{_NUM}\.txt$")
_JLODK_HEADER = re.compile(
    r"Ye\s*=\s*([+-]?[\d.]+(?:[eE][+-]?\d+)?)\s*,\s*time\s*=\s*([+-]?[\d.]+(?:[eE][+-]?\d+)?)",
    re.IGNORECASE)


def _read_jlodk_file(path, allow_nan: bool, total_rtol: float):
    """Parse one JLODK file -> (values (n, 5), line numbers (n,), header (ye, t) or None)."""
    lines = read_text_lines(path)
    rows, header = [], None
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = _JLODK_HEADER.search(stripped)
            if m and header is None:
                header = (float(m[1]), float(m[2]), lineno)
            continue
        rows.append((lineno, line))
    if not rows:
        raise DataFormatError("no data rows", path=path, line=len(lines), field="rows")
    values = parse_rows(path, rows, JLODK_COLUMNS, nan_ok=(2, 3, 4) if allow_nan else ())
    line_numbers = np.array([r[0] for r in rows], dtype=np.int64)
    _check_nonnegative(path, values, line_numbers, JLODK_COLUMNS, [2, 3, 4])
    bb, es, total = values[:, 2], values[:, 3], values[:, 4]
    expect = bb + es
    scale = np.maximum(np.abs(total), np.abs(expect))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(scale > 0, np.abs(total - expect) / np.where(scale > 0, scale, 1.0), 0.0)
    rel = np.where(np.isnan(rel), 0.0, rel)  # holes (allow_nan) are not mismatches
    bad = rel > total_rtol
    if bad.any():
        w = int(np.argmax(rel))
        raise DataFormatError(
            f"total != bb + es beyond relative tolerance {total_rtol:g} on {int(bad.sum())} "
            f"row(s); worst mismatch: relative {rel[w]:.3g} (total={repr_number(total[w])}, "
            f"bb + es={repr_number(expect[w])})", path=path, line=int(line_numbers[w]), field="total")
    return values, line_numbers, header


def _jlodk_grid(path, values, line_numbers):
    """(log10_rho (nRho,), temperature_k (nT,)) from the first file; rows run T fastest."""
    lr, temp = values[:, 0], values[:, 1]
    starts = np.flatnonzero(np.r_[True, lr[1:] != lr[:-1]])
    n_t = int(starts[1]) if starts.size > 1 else lr.size
    for b, s in enumerate(starts):
        length = (int(starts[b + 1]) if b + 1 < starts.size else lr.size) - int(s)
        if length != n_t:
            raise DataFormatError(f"block of log10_rho = {repr_number(lr[s])} has {length} rows, the "
                                  f"first block has {n_t}; rows must form a log10_rho x T grid",
                                  path=path, line=int(line_numbers[s]), field="log10_rho")
    log10_rho, temperature = lr[starts], temp[:n_t]
    for name, axis, idx in (("log10_rho", log10_rho, starts), ("temperature_k", temperature,
                                                               np.arange(n_t))):
        dec = np.flatnonzero(np.diff(axis) <= 0)
        if dec.size:
            r = int(idx[dec[0] + 1])
            raise DataFormatError(f"{name} not strictly increasing", path=path,
                                  line=int(line_numbers[r]), field=name)
    mismatch = np.flatnonzero(temp != np.tile(temperature, starts.size))
    if mismatch.size:
        r = int(mismatch[0])
        raise DataFormatError(f"temperature {repr_number(temp[r])} K, expected "
                              f"{repr_number(temperature[r % n_t])} (same T sequence in every density "
                              "block)", path=path,
                              line=int(line_numbers[r]), field="temperature_k")
    return log10_rho, temperature


def _discover_jlodk(root: Path) -> dict:
    """{ye: {time: path}} from the folder layout."""
    found = {}
    ye_dirs = {}
    for d in sorted(root.iterdir()):
        m = _YE_DIR.match(d.name)
        if not (m and d.is_dir()):
            continue
        ye = float(m[1])
        if ye in ye_dirs:
            raise DataFormatError(f"Ye = {ye} appears twice ({ye_dirs[ye].name}, {d.name})",
                                  path=d, field="Ye")
        ye_dirs[ye] = d
        times = {}
        for p in sorted(d.iterdir()):
            fm = _JLODK_FILE.match(p.name)
            if not (fm and p.is_file()):
                continue
            if float(fm[1]) != ye:
                raise DataFormatError(f"file name says Ye = {fm[1]} but it lies in {d.name}",
                                      path=p, field="Ye")
            t = float(fm[2])
            if t in times:
                raise DataFormatError(f"time {t} days appears twice (also {times[t].name})",
                                      path=p, field="time")
            times[t] = p
        found[ye] = times
    if not found:
        raise DataFormatError("no Ye<value> folders with Planck_Mean_Opacity_Ye*_Time*.txt files",
                              path=root, field="Ye")
    return found


def read_jlodk(root, *, allow_nan: bool = False, total_rtol: float = 1e-6) -> JlodkTable:
    """Read a JLODK Planck-mean opacity table tree.

    Layout: ``root/Ye<Ye>/Planck_Mean_Opacity_Ye<Ye>_Time<days>.txt``; Ye and times are sorted
    numerically. Each file holds ``#`` header lines and rows of 5 columns: log10 rho [g/cm^3],
    T [K], bound-bound, electron-scattering and total Planck-mean opacity [cm^2/g], with T
    running fastest (30 x 50 = 1500 rows in the published table).

    Args:
      root: the folder holding the Ye* folders.
      allow_nan: accept 'nan' in the three opacity columns (tables with holes); default False.
      total_rtol: relative tolerance of the check total == bb + es (published data: ~4e-10).
    Returns:
      JlodkTable with kappa_* of shape (nY, nt, nRho, nT) float64 [cm^2/g].
    Raises:
      FileNotFoundError: missing root.
      DataFormatError (file, line, field): wrong column count, non-numeric, NaN (unless
        allow_nan) or Inf, negative opacity, total != bb + es (reports the worst row), a grid
        differing from the first file's, header Ye/time contradicting the file name, and
        missing (Ye, time) files (listed).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such directory: {root}")
    found = _discover_jlodk(root)
    ye = sorted(found)
    times = sorted(set().union(*(set(v) for v in found.values())))
    missing = [(y, t) for y in ye for t in times if t not in found[y]]
    if missing:
        listing = "; ".join(f"Ye={y:g} t={t:g}d" for y, t in missing[:50])
        more = f" (+{len(missing) - 50} more)" if len(missing) > 50 else ""
        raise DataFormatError(f"missing {len(missing)} of {len(ye) * len(times)} (Ye, time) "
                              f"files: {listing}{more}", path=root, field="files")

    shape = None
    ref = None
    out = {}
    for i, y in enumerate(ye):
        for j, t in enumerate(times):
            path = found[y][t]
            values, line_numbers, header = _read_jlodk_file(path, allow_nan, total_rtol)
            if header is not None:
                for name, claimed, actual in (("Ye", header[0], y), ("time", header[1], t)):
                    if not math.isclose(claimed, actual, rel_tol=1e-9, abs_tol=1e-12):
                        raise DataFormatError(f"header says {name} = {claimed:g}, file name says "
                                              f"{actual:g}", path=path, line=header[2],
                                              field=name)
            if ref is None:
                log10_rho, temperature = _jlodk_grid(path, values, line_numbers)
                ref = (path, values[:, :2])
                shape = (len(ye), len(times), log10_rho.size, temperature.size)
                out = {k: np.empty(shape, dtype=np.float64) for k in ("bb", "es", "total")}
            else:
                ref_path, ref_grid = ref
                if values.shape[0] != ref_grid.shape[0]:
                    raise DataFormatError(f"{values.shape[0]} data rows, {ref_path} has "
                                          f"{ref_grid.shape[0]}", path=path,
                                          line=int(line_numbers[-1]), field="rows")
                diff = values[:, :2] != ref_grid
                if diff.any():
                    r, c = np.unravel_index(int(np.argmax(diff)), diff.shape)
                    raise DataFormatError(f"{JLODK_COLUMNS[c]} {repr_number(values[r, c])} differs "
                                          f"from {repr_number(ref_grid[r, c])} in {ref_path} (grids "
                                          "must agree)",
                                          path=path, line=int(line_numbers[r]),
                                          field=JLODK_COLUMNS[c])
            for k, col in (("bb", 2), ("es", 3), ("total", 4)):
                out[k][i, j] = values[:, col].reshape(shape[2:])
    source = tuple(tuple(str(found[y][t]) for t in times) for y in ye)
    return JlodkTable(ye=np.asarray(ye), time_days=np.asarray(times), log10_rho=log10_rho,
                      temperature_k=temperature, kappa_bb=out["bb"], kappa_es=out["es"],
                      kappa_total=out["total"], source=source, root=str(root))


def _label(x: float, minimum_decimals: int) -> str:
    return f"{x:.{_decimals([x], minimum_decimals)}f}"


def write_jlodk(table: JlodkTable, root, *, total_rtol: float = 1e-6,
                newline: str = "\n") -> list:
    """Write ``table`` in the JLODK file layout under ``root`` (one atomic write per file).

    Files are ``root/Ye<Ye>/Planck_Mean_Opacity_Ye<Ye>_Time<days>.txt`` (Ye with >= 2 decimals,
    time with >= 1, more when needed to be exact), with the original header and column widths.
    The grid columns use the fewest fixed decimals that reproduce the axes exactly; the opacity
    columns use ``%.9E`` (10 significant digits, relative error <= 5e-10; the published files
    give bb and es to 3 digits) so a round trip through read_jlodk is lossless to ~1e-9. NaN is
    written as ``nan`` (read it back with ``allow_nan=True``).

    Args:
      table: JlodkTable, kappa_* (nY, nt, nRho, nT) [cm^2/g].
      root: output folder (created if needed); existing files of the same name are replaced.
      total_rtol: the check total == bb + es applied before writing, as read_jlodk applies it.
      newline: line terminator (the published files use "\\r\\n").
    Returns:
      List of the paths written, Ye-major.
    Raises:
      ValueError: Inf or negative opacity, total != bb + es, axes not strictly increasing.
    """
    for name in ("ye", "time_days", "log10_rho", "temperature_k"):
        axis = getattr(table, name)
        if not np.all(np.isfinite(axis)) or np.any(np.diff(axis) <= 0):
            raise ValueError(f"{name} must be finite and strictly increasing")
    if np.any(table.ye < 0) or np.any(table.time_days < 0):
        raise ValueError("ye and time_days must be non-negative (they are written into names)")
    for name in ("kappa_bb", "kappa_es", "kappa_total"):
        bad = _first_bad_opacity(getattr(table, name), allow_nan=True)
        if bad is not None:
            index, value, reason = bad
            raise ValueError(f"{name}: {reason} value {value!r} at index {index}")
    expect = table.kappa_bb + table.kappa_es
    scale = np.maximum(np.abs(expect), np.abs(table.kappa_total))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(table.kappa_total - expect) / np.where(scale > 0, scale, 1.0)
    rel = np.where(np.isnan(rel), 0.0, rel)
    if np.any(rel > total_rtol):
        w = np.unravel_index(int(np.argmax(rel)), rel.shape)
        raise ValueError(f"kappa_total != kappa_bb + kappa_es: worst relative mismatch "
                         f"{rel[w]:.3g} at index {tuple(int(i) for i in w)}")

    root = Path(root)
    d_rho = _decimals(table.log10_rho, 1)
    d_t = _decimals(table.temperature_k, 1)
    n_rho, n_t = table.log10_rho.size, table.temperature_k.size
    grid_cols = [f"{v:10.{d_rho}f}" for v in np.repeat(table.log10_rho, n_t).tolist()]
    grid_cols = [a + f"{v:21.{d_t}f}" for a, v in
                 zip(grid_cols, np.tile(table.temperature_k, n_rho).tolist())]

    def num(v, width):
        return f"{'nan':>{width}}" if math.isnan(v) else f"{v:{width}.9E}"

    written = []
    for i, ye in enumerate(table.ye.tolist()):
        ye_s = _label(ye, 2)
        folder = root / f"Ye{ye_s}"
        folder.mkdir(parents=True, exist_ok=True)
        for j, t in enumerate(table.time_days.tolist()):
            t_s = _label(t, 1)
            lines = [f"# Ye = {ye_s},  time = {t_s}day",
                     "# [1] Density in Logspace [g cm^-3]",
                     "# [2] Temperature [K]",
                     "# [3] Bound-Bound Opacity [cm^2 g^-1]",
                     "# [4] Electron Scatter Opacity [cm^2 g^-1]",
                     "# [5] Planck Mean Opacity [cm^2 g^-1]"]
            bb = table.kappa_bb[i, j].ravel().tolist()
            es = table.kappa_es[i, j].ravel().tolist()
            tot = table.kappa_total[i, j].ravel().tolist()
            lines.extend(g + num(a, 21) + num(b, 21) + num(c, 26)
                         for g, a, b, c in zip(grid_cols, bb, es, tot))
            path = folder / f"Planck_Mean_Opacity_Ye{ye_s}_Time{t_s}.txt"
            written.append(write_text(path, newline.join(lines) + newline))
    return written
