"""The canonical HDF5 dataset file (``save_dataset`` / ``load_dataset``): one Dataset per file.

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

The reader raises :class:`~opacity_jax.errors.DataFormatError` naming the file and the field, and
``FileNotFoundError`` naming the path for a missing file. The writer is atomic (a temporary file
in the target directory, fsynced and renamed over the target), so a crash or exception never
leaves a half-written file behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np

from opacity_jax import __version__
from opacity_jax.data.dataset import COMPONENTS, Dataset
from opacity_jax.data.parsing import (DENSITY_UNITS, KAPPA_UNITS, first_bad_opacity,
                                      normalize_unit, open_hdf5, repr_number, require_file)
from opacity_jax.errors import DataFormatError
from opacity_jax.train.workdir import atomic_write, json_default

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "UNITS", "save_dataset", "load_dataset"]

FORMAT_NAME = "opacity_jax.dataset"
FORMAT_VERSION = 1
UNITS = {"kappa": "cm^2/g", "temperature": "eV", "density": "g/cm^3", "energy": "eV"}

# Chunks hold whole spectra and stay under HDF5's default 1 MiB chunk cache, so tools that do not
# enlarge the cache still read each chunk once.
_CHUNK_BYTES = 1 << 20
_READ_CACHE_BYTES = 64 << 20
_COMPRESSION = {
    "gzip": dict(compression="gzip", compression_opts=1, shuffle=True),
    "lzf": dict(compression="lzf", shuffle=True),
    None: {},
}

_DATASET_UNITS = {"kappa": KAPPA_UNITS,
                  "temperature": {"ev"},
                  "density": {u for u, f in DENSITY_UNITS.items() if f == 1.0},
                  "energy": {"ev"}}


def _attr_str(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return str(value)


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
        bad = first_bad_opacity(arr)
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
    f = open_hdf5(path, rdcc_nbytes=_READ_CACHE_BYTES)
    try:
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
                bad = first_bad_opacity(arr)
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
    except OSError as exc:
        # h5py reports a corrupt chunk or a truncated file as a bare OSError on read.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFormatError(f"unreadable HDF5 data ({reason}); the file is corrupt or "
                              "truncated - re-create or re-download it", path=path) from None
    try:
        return Dataset(elements=out_elements, kappa=kappa, components=components, zbar=zbar,
                       charge_fractions=charge_fractions, valid=valid, provenance=provenance,
                       **axes)
    except ValueError as exc:  # axis ordering/positivity, checked by Dataset.validate
        raise DataFormatError(str(exc), path=path) from None
