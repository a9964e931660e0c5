"""The seven-ion photodissociation cross-section table sigma_{vJ}(lambda) and its splits.

``generate_xsec_table`` evaluates :mod:`opacity_jax.physics.molecular` for every bound level
(v, J <= J_max) of each molecular ion on that ion's wavelength grid (log-spaced over the window
where sigma_{v=0} exceeds 1e-4 of its maximum) and returns a tidy DataFrame, one row per
(molecule, v, J, wavelength):

    molecule (str), v (int32), J (int32), E_vJ_hartree (float64, < 0 from the lower state's
    dissociation limit), wavelength_nm (float64, vacuum), sigma_cm2 (float64, >= 0)

Rows are sorted by molecule (in MOLECULE_NAMES order), J, v, wavelength. ``xsec_arrays`` turns the
frame into dense per-molecule arrays; ``save_xsec_table`` / ``load_xsec_table`` store it as CSV
(``.csv``, optionally ``.csv.gz``) or HDF5 (``.h5``/``.hdf5``), atomically.

Cost, measured on the 2-core development CPU while another job used ~1.3 cores: J_max = 20 and
200 wavelengths give 5229 levels and 1.05 M rows in 55-66 s (Li2+ and Na2+, with 1645 and 2772
levels, take ~75 % of it); J_max = 30 gives 7439 levels, 1.49 M rows in 73 s. DEFAULT_J_MAX = 20
keeps a 4x margin under the 5-minute budget on a busy machine. Files: 36 MB HDF5 (gzip), 78 MB CSV
for J_max = 20.

Splits (``split_xsec_table``), all seeded per molecule with np.random.default_rng([seed, crc32]):
  * "levels": a fraction of each molecule's (v, J) pairs is held out whole;
  * "wavelength_windows": contiguous wavelength windows (never touching the grid ends) are held
    out for every level of the molecule;
  * "v_levels": whole vibrational levels (all their J) are held out, never the lowest or the
    highest v of the molecule, so the test is interpolation in v.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from opacity_jax import __version__
from opacity_jax.data.parsing import open_hdf5, require_file
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import molecular as _mol
from opacity_jax.train.workdir import atomic_write

__all__ = [
    "DEFAULT_J_MAX", "DEFAULT_N_WAVELENGTHS", "XSEC_COLUMNS", "SPLIT_KINDS",
    "generate_xsec_table", "xsec_arrays", "save_xsec_table", "load_xsec_table",
    "XsecSplit", "split_xsec_table",
]

DEFAULT_J_MAX = 20
DEFAULT_N_WAVELENGTHS = 200
XSEC_COLUMNS = ("molecule", "v", "J", "E_vJ_hartree", "wavelength_nm", "sigma_cm2")
SPLIT_KINDS = ("levels", "wavelength_windows", "v_levels")
_HDF5_FORMAT = "opacity_jax.xsec_table"
_DTYPES = {"v": np.int32, "J": np.int32, "E_vJ_hartree": np.float64,
           "wavelength_nm": np.float64, "sigma_cm2": np.float64}


def generate_xsec_table(molecules: Sequence = _mol.MOLECULE_NAMES, J_max: int = DEFAULT_J_MAX,
                        n_wavelengths: int = DEFAULT_N_WAVELENGTHS,
                        progress: Optional[Callable[[dict], None]] = None,
                        method: str = "auto") -> pd.DataFrame:
    """Compute the cross-section table of several molecular ions.

    Args:
      molecules: names from molecular.MOLECULE_NAMES (or Molecule objects).
      J_max: largest rotational quantum number (levels with zero nuclear-spin weight skipped).
      n_wavelengths: points of each molecule's wavelength grid (molecular.wavelength_grid).
      progress: optional callable receiving a dict {"molecule", "molecule_index",
        "n_molecules", "fraction" (0-1 within the molecule), "elapsed_s"} after every J' step
        and once per molecule with fraction 1.0.
      method: passed to molecular.cross_sections ("auto", "grid" or "direct").
    Returns:
      DataFrame with XSEC_COLUMNS; n rows = sum over molecules of n_levels x n_wavelengths.
    """
    if int(J_max) < 0:
        raise ValueError(f"J_max must be >= 0, got {J_max}")
    if int(n_wavelengths) < 2:
        raise ValueError(f"n_wavelengths must be >= 2, got {n_wavelengths}")
    t0 = time.perf_counter()
    mols = [_mol.get_molecule(m) for m in molecules]
    frames = []
    for i, mol in enumerate(mols):
        def report(done, total, _i=i, _name=mol.name):
            if progress is not None:
                progress({"molecule": _name, "molecule_index": _i, "n_molecules": len(mols),
                          "fraction": done / max(total, 1),
                          "elapsed_s": time.perf_counter() - t0})

        levels = _mol.bound_levels(mol, int(J_max))
        lam = _mol.wavelength_grid(mol, int(n_wavelengths))
        sigma = _mol.cross_sections(mol, levels["v"], levels["J"], lam, method=method,
                                    progress=report)
        n_lev, n_lam = sigma.shape
        frames.append(pd.DataFrame({
            "molecule": np.repeat(np.array([mol.name], dtype=object), n_lev * n_lam),
            "v": np.repeat(levels["v"], n_lam).astype(np.int32),
            "J": np.repeat(levels["J"], n_lam).astype(np.int32),
            "E_vJ_hartree": np.repeat(levels["energy_hartree"], n_lam),
            "wavelength_nm": np.tile(lam, n_lev),
            "sigma_cm2": sigma.ravel(),
        }))
        report(1, 1)
    if not frames:
        return _empty_frame()
    return pd.concat(frames, ignore_index=True)


def _empty_frame() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=object if c == "molecule" else _DTYPES[c])
                       for c in XSEC_COLUMNS})
    return df


def xsec_arrays(df: pd.DataFrame) -> dict:
    """Dense per-molecule arrays from a table of generate_xsec_table's layout.

    Args:
      df: DataFrame with XSEC_COLUMNS whose rows for each molecule form a full
        (level x wavelength) grid.
    Returns:
      {molecule: {"v": (n_lev,) int32, "J": (n_lev,) int32, "energy_hartree": (n_lev,),
      "wavelength_nm": (n_lam,), "sigma_cm2": (n_lev, n_lam)}}, levels sorted by (J, v),
      wavelengths increasing.
    Raises:
      ValueError: missing columns or a molecule whose rows are not a complete grid.
    """
    missing = [c for c in XSEC_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    out = {}
    for name, sub in df.groupby("molecule", sort=False):
        sub = sub.sort_values(["J", "v", "wavelength_nm"], kind="stable")
        lam = np.unique(sub["wavelength_nm"].to_numpy())
        lev = sub[["v", "J"]].drop_duplicates()
        if len(sub) != len(lev) * lam.size:
            raise ValueError(f"{name}: {len(sub)} rows are not a full {len(lev)} levels x "
                             f"{lam.size} wavelengths grid")
        sig = sub["sigma_cm2"].to_numpy(np.float64).reshape(len(lev), lam.size)
        lam_rows = sub["wavelength_nm"].to_numpy().reshape(len(lev), lam.size)
        if not np.array_equal(lam_rows, np.broadcast_to(lam, lam_rows.shape)):
            raise ValueError(f"{name}: levels do not share one wavelength grid")
        first = sub.drop_duplicates(["v", "J"])
        out[name] = {"v": first["v"].to_numpy(np.int32), "J": first["J"].to_numpy(np.int32),
                     "energy_hartree": first["E_vJ_hartree"].to_numpy(np.float64),
                     "wavelength_nm": lam, "sigma_cm2": sig}
    return out


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------

def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        return "hdf5"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise ValueError(f"unknown table extension for {path} (use .csv, .csv.gz, .h5 or .hdf5)")


def _check_frame(df: pd.DataFrame) -> None:
    missing = [c for c in XSEC_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    for c in ("E_vJ_hartree", "wavelength_nm", "sigma_cm2"):
        arr = df[c].to_numpy(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{c}: non-finite values; cannot save")
    if np.any(df["sigma_cm2"].to_numpy(np.float64) < 0):
        raise ValueError("sigma_cm2: negative values; cannot save")
    if np.any(df["wavelength_nm"].to_numpy(np.float64) <= 0):
        raise ValueError("wavelength_nm: non-positive values; cannot save")


def save_xsec_table(df: pd.DataFrame, path, *, provenance: Optional[dict] = None) -> Path:
    """Write the table atomically as CSV (.csv / .csv.gz) or HDF5 (.h5 / .hdf5).

    CSV floats use 17 significant digits ('%.17g'), so a round trip is bit-exact. HDF5 stores
    one 1-D dataset per column (molecule as UTF-8 strings, gzip level 1), attrs format,
    units (JSON), provenance (JSON), writer.

    Args:
      df: DataFrame with XSEC_COLUMNS (extra columns are ignored).
      path: target file; its directory must exist.
      provenance: optional JSON-serialisable dict stored in HDF5 (ignored for CSV).
    Returns:
      The path written.
    Raises:
      ValueError: missing columns, NaN/Inf, negative sigma, non-positive wavelengths, unknown
        extension.
    """
    path = Path(path)
    kind = _kind(path)
    _check_frame(df)
    data = df[list(XSEC_COLUMNS)]
    if kind == "csv":
        compression = "gzip" if path.name.lower().endswith(".gz") else None

        def write(tmp):
            data.to_csv(tmp, index=False, float_format="%.17g", compression=compression)
        return atomic_write(path, write)

    import h5py
    prov = json.dumps(provenance or {})

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = _HDF5_FORMAT
            f.attrs["format_version"] = 1
            f.attrs["units"] = json.dumps({"E_vJ_hartree": "hartree", "wavelength_nm": "nm",
                                           "sigma_cm2": "cm^2"})
            f.attrs["provenance"] = prov
            f.attrs["writer"] = f"opacity_jax {__version__}"
            opts = dict(compression="gzip", compression_opts=1) if len(data) else {}
            f.create_dataset("molecule", data=data["molecule"].astype(str).to_numpy().astype(
                object), dtype=h5py.string_dtype("utf-8"), **opts)
            for c in XSEC_COLUMNS[1:]:
                f.create_dataset(c, data=data[c].to_numpy(_DTYPES[c]), **opts)
    return atomic_write(path, write)


def load_xsec_table(path) -> pd.DataFrame:
    """Read a table written by save_xsec_table.

    Args:
      path: .csv, .csv.gz, .h5 or .hdf5 file.
    Returns:
      DataFrame with XSEC_COLUMNS and their dtypes.
    Raises:
      FileNotFoundError: missing file.
      DataFormatError: wrong format/columns, NaN/Inf, negative sigma, non-positive wavelength
        (names the file, the 1-based CSV line where there is one, and the column).
    """
    path = require_file(path)
    kind = _kind(path)
    if kind == "csv":
        try:
            df = pd.read_csv(path, dtype={"molecule": str})
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataFormatError(f"not a readable CSV table ({exc})", path=path) from None
        missing = [c for c in XSEC_COLUMNS if c not in df.columns]
        if missing:
            raise DataFormatError(f"missing columns {missing}", path=path, line=1,
                                  field=missing[0])
        df = df[list(XSEC_COLUMNS)]
        line_of = lambda i: int(i) + 2  # noqa: E731 - header is line 1
    else:
        with open_hdf5(path) as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt != _HDF5_FORMAT:
                raise DataFormatError(f"format is {fmt!r}, expected {_HDF5_FORMAT!r}", path=path,
                                      field="format")
            cols = {}
            for c in XSEC_COLUMNS:
                if c not in f:
                    raise DataFormatError("missing dataset", path=path, field=c)
                cols[c] = f[c][()]
            cols["molecule"] = np.array([m.decode() if isinstance(m, bytes) else str(m)
                                         for m in cols["molecule"]], dtype=object)
        sizes = {c: len(v) for c, v in cols.items()}
        if len(set(sizes.values())) > 1:
            raise DataFormatError(f"datasets differ in length {sizes}", path=path)
        df = pd.DataFrame(cols)
        line_of = lambda i: None  # noqa: E731
    for c in XSEC_COLUMNS[1:]:
        try:
            vals = pd.to_numeric(df[c], errors="raise").to_numpy(np.float64)
        except (ValueError, TypeError):
            bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            i = int(np.argmax(bad.to_numpy()))
            raise DataFormatError(f"non-numeric value {df[c].iloc[i]!r}", path=path,
                                  line=line_of(i), field=c) from None
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFormatError(f"non-finite value {vals[i]!r}", path=path, line=line_of(i),
                                  field=c)
        if c == "sigma_cm2" and np.any(vals < 0):
            i = int(np.argmax(vals < 0))
            raise DataFormatError(f"negative cross-section {vals[i]!r}", path=path,
                                  line=line_of(i), field=c)
        if c == "wavelength_nm" and np.any(vals <= 0):
            i = int(np.argmax(vals <= 0))
            raise DataFormatError(f"non-positive wavelength {vals[i]!r}", path=path,
                                  line=line_of(i), field=c)
        if c in ("v", "J"):
            if np.any(vals != np.round(vals)) or np.any(vals < 0):
                i = int(np.argmax((vals != np.round(vals)) | (vals < 0)))
                raise DataFormatError(f"{c} must be a non-negative integer, got {vals[i]!r}",
                                      path=path, line=line_of(i), field=c)
        df[c] = vals.astype(_DTYPES[c])
    if df["molecule"].isna().any():
        i = int(np.argmax(df["molecule"].isna().to_numpy()))
        raise DataFormatError("empty molecule name", path=path, line=line_of(i), field="molecule")
    df["molecule"] = df["molecule"].astype(object)
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class XsecSplit:
    """A train/test split of the rows of an xsec table.

    Attributes:
      kind: one of SPLIT_KINDS.
      train, test: (n_rows,) bool masks, disjoint, covering every row.
      held_out: {molecule: what was held out}: list of (v, J) pairs ("levels"), list of
        (lambda_lo, lambda_hi) nm windows, inclusive ("wavelength_windows"), or list of v
        ("v_levels").
    """

    kind: str
    train: np.ndarray
    test: np.ndarray
    held_out: dict


def _rng(seed: int, name: str) -> np.random.Generator:
    # Per-molecule streams: adding or removing a molecule does not change the others' splits.
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode("utf-8"))])


def split_xsec_table(df: pd.DataFrame, kind: str, fraction: float = 0.1, seed: int = 0,
                     n_windows: int = 2) -> XsecSplit:
    """Seeded train/test split of an xsec table.

    Args:
      df: DataFrame with XSEC_COLUMNS.
      kind: "levels" (held-out (v, J) pairs), "wavelength_windows" (held-out contiguous
        wavelength windows, the same for every level of a molecule) or "v_levels" (held-out whole
        vibrational levels, all J; never the lowest or highest v).
      fraction: target test fraction in (0, 1) of levels / wavelength points / v values per
        molecule (round half up, at least 1 where the molecule allows any).
      seed: integer seed.
      n_windows: number of windows for "wavelength_windows" (the held-out points are split
        evenly among them; windows never touch the grid ends and never abut).
    Returns:
      XsecSplit with row masks aligned with df's rows.
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"kind must be one of {SPLIT_KINDS}, got {kind!r}")
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    test = np.zeros(len(df), dtype=bool)
    held = {}
    mol_col = df["molecule"].to_numpy()
    for name in pd.unique(mol_col):
        rows = np.flatnonzero(mol_col == name)
        sub = df.iloc[rows]
        rng = _rng(seed, name)
        if kind == "levels":
            lev = sub[["v", "J"]].drop_duplicates().to_numpy()
            n = min(max(1, int(np.floor(fraction * len(lev) + 0.5))), len(lev) - 1)
            pick = lev[np.sort(rng.choice(len(lev), size=n, replace=False))] if n > 0 else lev[:0]
            keys = {(int(a), int(b)) for a, b in pick}
            vj = sub[["v", "J"]].to_numpy()
            mask = np.array([(int(a), int(b)) in keys for a, b in vj], dtype=bool)
            held[name] = sorted(keys)
        elif kind == "v_levels":
            vs = np.unique(sub["v"].to_numpy())
            inner = vs[1:-1]
            n = min(max(1, int(np.floor(fraction * vs.size + 0.5))), inner.size)
            pick = np.sort(rng.choice(inner, size=n, replace=False)) if n > 0 else inner[:0]
            mask = np.isin(sub["v"].to_numpy(), pick)
            held[name] = [int(x) for x in pick]
        else:
            lam = np.unique(sub["wavelength_nm"].to_numpy())
            idx = _window_indices(lam.size, fraction, n_windows, rng)
            windows = []
            for w in idx:
                windows.append((float(lam[w[0]]), float(lam[w[-1]])))
            chosen = lam[np.concatenate(idx)] if idx else lam[:0]
            mask = np.isin(sub["wavelength_nm"].to_numpy(), chosen)
            held[name] = windows
        test[rows[mask]] = True
    return XsecSplit(kind=kind, train=~test, test=test, held_out=held)


def _window_indices(n: int, fraction: float, n_windows: int, rng) -> list:
    """Index arrays of n_windows disjoint, non-adjacent windows inside 1..n-2."""
    total = max(1, int(np.floor(fraction * n + 0.5)))
    n_windows = max(1, min(int(n_windows), total))
    widths = [total // n_windows + (1 if i < total % n_windows else 0) for i in range(n_windows)]
    # Interior points 1..n-2 must hold the windows plus a gap of >= 1 between them.
    free = (n - 2) - sum(widths) - (n_windows - 1)
    if free < 0:
        raise ValueError(f"cannot place {n_windows} windows of {widths} points in a grid of {n}")
    # Random composition of the free points into n_windows + 1 gaps.
    cuts = np.sort(rng.integers(0, free + 1, size=n_windows))
    gaps = np.diff(np.concatenate([[0], cuts, [free]]))
    out = []
    pos = 1 + gaps[0]
    for i, w in enumerate(widths):
        out.append(np.arange(pos, pos + w))
        pos += w + 1 + (gaps[i + 1] if i + 1 < len(gaps) - 1 else 0)
    return out
