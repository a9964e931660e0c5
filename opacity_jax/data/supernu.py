"""SuperNu's opacity-table layouts (NIST-LANL tables as the radiative-transfer code SuperNu reads
them), in and out, and its coarsening onto group grids.

Two layouts (facts from SuperNu's public source: `tbxsmod.f`, `read_tbxs`, `read_tbxs_hdf5`,
`coarsen_tbxs`, and `GAS/tabular_opacity.f`):

* **Text**: one file per element and density, ``op_<sym>_1Em<NN>gcc.table`` with the lower-case
  symbol (``op_u_...`` for a one-letter symbol) and NN = 04 ... 20 (rho = 10^-NN g/cm^3); SuperNu
  opens them from ``./Table/``. A file holds nT temperature blocks (27 in SuperNu), each: a header
  line read list-directed as (word, number, T [eV]); one line skipped; then 7 x nP values
  (nP = 14900 in SuperNu) read list-directed, so line breaks are free but the count is enforced,
  and data after the last block is an error. Per point: column 1 photon energy [eV] (ascending);
  4 / 5 / 6 bound-bound / bound-free / free-free absorption [cm^2/g], summed by SuperNu; 7
  scattering [cm^2/g], averaged over the points (a plain mean) into one grey opacity; 2 and 3 are
  not used by SuperNu. This package writes the total (bb + bf + ff + scattering) in column 2 and
  the absorption (bb + bf + ff) in column 3.
* **HDF5** ``opacities.h5``: ``temperature_grid`` (nT,) [eV], ``density_grid`` (nR,) ascending
  [g/cm^3], ``wavelength_grid`` (nP,) dimensionless, with column 1 = T x wavelength_grid (energies
  scale with T), and one dataset per element named by its lower-case symbol, C-order shape
  (nR, nT, nP, 6) holding columns 2-7 (Fortran sees (6, nP, nT, nR)); float64.

How the points are held. `SupernuTable` keeps exactly what the files hold: per (element, T,
rho) block the nP point energies [eV] and the six value columns, float64, **point values** (not
bin averages), plus `energy_ratio` (the HDF5 ``wavelength_grid``) when every block's energies
are T x that grid. Both readers and writers round-trip it bit for bit (text via Python's
shortest round-trip repr). `to_dataset` turns it into the canonical `Dataset`, whose spectra
are bin averages on one energy axis shared by all nodes: each bin's value is the exact mean over
the bin of the piecewise-linear interpolant of the points - the same quantity SuperNu's
`coarsen_tbxs` forms for its groups (`group_means`) - so a per-T energy grid becomes one axis
without any other approximation; a bin not covered by a block's energies is an error (pass a
narrower `energy_edges_ev`). Points on one shared grid with `energy_edges_ev=None` are held as
the values of bins centred on the points (`grid.edges_from_centers_ev`), as the per-spectrum
text reader does.

SuperNu's own numbers. SuperNu holds the raw table in float32 (`tb_raw` is real*4, energies
included) and coarsens in float32; `coarsen_tbxs` (and `grey_scattering_single`) reproduce that
arithmetic operation for operation, so the group opacities a SuperNu build holds are known here
exactly (tests/fortran/read_supernu.f90 matches them bit for bit); `group_means` is the float64
integral, which they approach to SuperNu's rounding (up to 7.4e-5 at full size).

Per element at partial density. SuperNu interpolates each element's table at the element's
partial density rho_Z = X_Z rho (linear in T, linear in log rho, clamped at the table edges:
`interpolate_groups`) and sums rho_Z kappa_Z; each table is the opacity of a pure-element plasma
at density rho_Z with its own electrons. That is what `from_generator` writes (the generator's
single-element `spectra`); the generator's `mixture_spectra` instead ionizes all elements
against one shared electron density, which this per-element sum does not reproduce.

Errors: readers raise `DataFormatError` naming the file, the 1-based line (text) or dataset
(HDF5) and the field; `FileNotFoundError` names a missing file. Writers are atomic.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from opacity_jax import __version__
from opacity_jax.data import grid as _grid
from opacity_jax.data.dataset import Dataset
from opacity_jax.data.parsing import open_hdf5, read_text_lines, require_file
from opacity_jax.errors import DataFormatError
from opacity_jax.models.baselines import bilinear_points
from opacity_jax.physics import constants as C
from opacity_jax.physics import elements as _el
from opacity_jax.train.workdir import atomic_write, write_text

__all__ = ["N_POINTS", "N_TEMPERATURES", "DENSITY_EXPONENTS", "HDF5_NAME", "SupernuTable",
           "text_file_name", "density_for_exponent", "read_text_layout", "write_text_layout",
           "read_hdf5_layout", "write_hdf5_layout", "group_means", "coarsen_tbxs",
           "grey_scattering", "grey_scattering_single",
           "interpolate_groups", "wavelength_edges_cm", "to_dataset", "from_generator",
           "from_surrogate", "default_energy_ratio", "is_supernu_source"]

N_POINTS = 14900                         # points per (T, rho) block in SuperNu (`ngr`)
N_TEMPERATURES = 27                      # temperature blocks per file (`tb_ntemp`)
N_COLUMNS = 7                            # values per point
DENSITY_EXPONENTS = tuple(range(4, 21))  # NN of op_<sym>_1Em<NN>gcc.table: rho = 1e-4 ... 1e-20
HDF5_NAME = "opacities.h5"
TEXT_DIR = "Table"                       # SuperNu opens Table/op_...
COLUMN_NAMES = ("energy_ev", "total", "absorption", "bb", "bf", "ff", "scattering")
_FILE_RE = re.compile(r"^op_([a-z]{1,2})_1Em(\d\d)gcc\.table$")


def density_for_exponent(nn: int) -> float:
    """rho [g/cm^3] = 10^-NN of a file name's NN (SuperNu computes it as 10d0**(-NN))."""
    return float(10.0 ** (-int(nn)))


def _exponent_for_density(rho: float) -> int:
    nn = int(round(-np.log10(rho)))
    if nn not in DENSITY_EXPONENTS or density_for_exponent(nn) != float(rho):
        raise ValueError(f"density {rho!r} g/cm^3 has no SuperNu file name: the text layout "
                         f"needs rho = 10^-NN exactly (density_for_exponent), NN in 4..20")
    return nn


def text_file_name(element, density_gcc: float) -> str:
    """``op_<sym>_1Em<NN>gcc.table`` for an element (symbol or Z) at rho = 10^-NN g/cm^3."""
    sym = _el.SYMBOLS[_el.element_index(element)].lower()
    return f"op_{sym}_1Em{_exponent_for_density(density_gcc):02d}gcc.table"


@dataclasses.dataclass
class SupernuTable:
    """What SuperNu's files hold, per element, temperature and density block.

    Attributes:
      elements: (nZ,) atomic numbers.
      temperature_ev: (nT,) block temperatures [eV] (ascending).
      density_gcc: (nR,) densities [g/cm^3] (ascending; the element's partial density).
      energy_ev: (nZ, nT, nR, nP) column 1, point energies [eV], ascending in each block
        (may be a broadcast read-only view).
      columns: (nZ, nT, nR, nP, 6) float64 columns 2-7 [cm^2/g]: total, absorption (both unused
        by SuperNu), bound-bound, bound-free, free-free, scattering.
      energy_ratio: (nP,) the HDF5 ``wavelength_grid`` (energy_ev = T x energy_ratio in every
        block), or None when the energies are not of that form.
      provenance: JSON-serialisable dict.
    """

    elements: np.ndarray
    temperature_ev: np.ndarray
    density_gcc: np.ndarray
    energy_ev: np.ndarray
    columns: np.ndarray
    energy_ratio: Optional[np.ndarray] = None
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.elements = np.asarray(self.elements, np.int32)
        self.temperature_ev = np.asarray(self.temperature_ev, np.float64)
        self.density_gcc = np.asarray(self.density_gcc, np.float64)
        shape = (self.elements.size, self.temperature_ev.size, self.density_gcc.size)
        if tuple(self.energy_ev.shape[:3]) != shape or self.energy_ev.ndim != 4:
            raise ValueError(f"energy_ev has shape {self.energy_ev.shape}, expected {shape} "
                             "+ (nP,)")
        want = tuple(self.energy_ev.shape) + (N_COLUMNS - 1,)
        if tuple(self.columns.shape) != want:
            raise ValueError(f"columns has shape {self.columns.shape}, expected {want}")
        for name, ax in (("temperature_ev", self.temperature_ev),
                         ("density_gcc", self.density_gcc)):
            if np.any(~np.isfinite(ax)) or np.any(ax <= 0) or np.any(np.diff(ax) <= 0):
                raise ValueError(f"{name} must be positive and strictly increasing")

    @property
    def n_points(self) -> int:
        """nP, the points per block."""
        return int(self.energy_ev.shape[-1])

    def element_position(self, element) -> int:
        """Position of an element (symbol or Z) on the element axis."""
        return _el.position_in(self.elements, element)

    def absorption(self) -> np.ndarray:
        """(nZ, nT, nR, nP) bb + bf + ff [cm^2/g], the part SuperNu coarsens."""
        return self.columns[..., 2] + self.columns[..., 3] + self.columns[..., 4]


def default_energy_ratio(n_points: int = N_POINTS) -> np.ndarray:
    """(n_points,) E/T ratios, log-spaced over [E_MIN/T_MAX, E_MAX/T_MIN] = [0.02, 1000], so that
    T x ratio covers the generator's 0.1-10 eV band at every NIST-LANL temperature (0.01-5 eV).
    The NIST-LANL tables' own ratio grid is not public here; pass yours for a real layout."""
    return np.geomspace(_grid.E_MIN_EV / _grid.T_MAX_EV, _grid.E_MAX_EV / _grid.T_MIN_EV,
                        int(n_points))


def _ratio_of(temperature_ev, energy_ev) -> Optional[np.ndarray]:
    """The common E/T grid when every block's energies equal T x ratio to 4 ulps (a text file
    holds the products, whose quotient by T can differ from the original ratio in the last
    bit); None otherwise."""
    ratio = energy_ev[0, 0, 0] / temperature_ev[0]
    want = temperature_ev[None, :, None, None] * ratio
    ok = np.abs(energy_ev - want) <= 4 * np.finfo(np.float64).eps * np.abs(energy_ev)
    return ratio if np.all(ok) else None


# --------------------------------------------------------------------------------------------
# text layout
def _number(tok: str) -> float:
    """A Fortran list-directed real: 1.0, 1e-3, 1.0d-3, 1.0D+03."""
    return float(tok.replace("d", "e").replace("D", "e"))


def _tokens(line: str) -> list:
    return line.replace(",", " ").split()


def _is_number(tok: str) -> bool:
    try:
        _number(tok)
    except ValueError:
        return False
    return True


def _read_text_file(path: Path, n_points: Optional[int], n_temperatures: Optional[int]):
    """(temperatures (nT,), block values (nT, nP, 7)) of one file, read as SuperNu reads it."""
    lines = read_text_lines(path)
    n = len(lines)
    temps, blocks = [], []
    i = 0
    while True:
        while i < n and not lines[i].strip():
            i += 1
        if i >= n:
            break
        if n_temperatures is not None and len(temps) == n_temperatures:
            raise DataFormatError(f"data after the last of {n_temperatures} temperature blocks "
                                  "(SuperNu: 'body too long')", path=path, line=i + 1,
                                  field="body")
        head = _tokens(lines[i])
        if len(head) < 3 or _is_number(head[0]):
            raise DataFormatError(f"expected a block header 'word number T[eV]', got "
                                  f"{lines[i].strip()[:60]!r}", path=path, line=i + 1,
                                  field="header")
        try:
            t = _number(head[1]), _number(head[2])
        except ValueError:
            raise DataFormatError(f"header fields 2 and 3 must be numbers, got {head[1:3]}",
                                  path=path, line=i + 1, field="temperature_ev") from None
        if not (np.isfinite(t[1]) and t[1] > 0):
            raise DataFormatError(f"temperature must be finite and positive, got {head[2]!r}",
                                  path=path, line=i + 1, field="temperature_ev")
        if i + 1 >= n:
            raise DataFormatError("file ends after a block header (a skipped line and the data "
                                  "must follow)", path=path, line=i + 1, field="body")
        start = i + 2
        # The block runs to the next header (first token not a number) or the end of file.
        stop = start
        need = None if n_points is None else N_COLUMNS * n_points
        count = 0
        while stop < n:
            tok = _tokens(lines[stop])
            if tok and not _is_number(tok[0]):
                break
            count += len(tok)
            stop += 1
            if need is not None and count >= need:
                break
        text = " ".join(lines[start:stop]).replace("d", "e").replace("D", "e").replace(",", " ")
        try:
            vals = np.array(text.split(), dtype=np.float64)
        except ValueError:
            for ln in range(start, stop):
                for tok in _tokens(lines[ln]):
                    if not _is_number(tok):
                        raise DataFormatError(f"not a number: {tok!r}", path=path, line=ln + 1,
                                              field="body") from None
            raise
        if need is not None and vals.size != need:
            raise DataFormatError(f"block at T = {head[2]} holds {vals.size} values, expected "
                                  f"7 x {n_points} = {need}" + (" (extra values on the last "
                                  "line)" if vals.size > need else ""), path=path,
                                  line=stop if vals.size < need else stop, field="body")
        if vals.size == 0 or vals.size % N_COLUMNS:
            raise DataFormatError(f"block at T = {head[2]} holds {vals.size} values, not a "
                                  "positive multiple of 7 columns", path=path, line=start + 1,
                                  field="body")
        block = vals.reshape(-1, N_COLUMNS)
        if blocks and block.shape != blocks[0].shape:
            raise DataFormatError(f"block at T = {head[2]} has {block.shape[0]} points, the "
                                  f"first block {blocks[0].shape[0]}", path=path, line=start + 1,
                                  field="body")
        bad = ~np.isfinite(block)
        bad[:, 1:] |= block[:, 1:] < 0
        if np.any(bad):
            r, c = np.argwhere(bad)[0]
            raise DataFormatError(f"non-finite or negative value {block[r, c]!r} at point "
                                  f"{r + 1}", path=path, line=start + 1 + (r * N_COLUMNS) //
                                  max(len(_tokens(lines[start])), 1), field=COLUMN_NAMES[c])
        e = block[:, 0]
        if e[0] <= 0 or np.any(np.diff(e) <= 0):
            r = int(np.flatnonzero(np.diff(e) <= 0)[0]) + 1 if e[0] > 0 else 0
            raise DataFormatError(f"photon energies must be positive and strictly ascending "
                                  f"(point {r + 1}: {e[r]!r} eV)", path=path, line=start + 1,
                                  field="energy_ev")
        temps.append(t[1])
        blocks.append(block)
        i = stop
    if not blocks:
        raise DataFormatError("no temperature block", path=path, line=1, field="header")
    if n_temperatures is not None and len(blocks) != n_temperatures:
        raise DataFormatError(f"{len(blocks)} temperature blocks, expected {n_temperatures}",
                              path=path, line=n, field="header")
    return np.asarray(temps), np.stack(blocks)


def read_text_layout(directory, elements: Optional[Sequence] = None,
                     n_points: Optional[int] = None,
                     n_temperatures: Optional[int] = None) -> SupernuTable:
    """Read SuperNu's text tables ``op_<sym>_1Em<NN>gcc.table`` from `directory` (its
    ``Table/`` folder, or that folder's parent).

    Args:
      directory: folder holding the files (``<directory>/Table`` is used when it exists).
      elements: symbols / Z to read (None: every element with a file).
      n_points, n_temperatures: enforce SuperNu's sizes (14900, 27; `N_POINTS`,
        `N_TEMPERATURES`) or a reduced grid; None infers them from the first file and requires
        every file to agree.
    Returns:
      SupernuTable (densities 10^-NN ascending; temperatures from the block headers, which
      must agree between files as SuperNu assumes).
    Raises:
      FileNotFoundError: no such folder, or an (element, density) file missing from the
        element x density rectangle (names it). DataFormatError: file, line and field of a
        malformed header or block, a wrong value count, a non-finite or negative value,
        non-ascending energies, data after the last block, or temperatures that differ
        between files.
    """
    d = Path(directory)
    if (d / TEXT_DIR).is_dir():
        d = d / TEXT_DIR
    if not d.is_dir():
        raise FileNotFoundError(f"no such folder: {d}")
    found = {}
    for p in sorted(d.iterdir()):
        m = _FILE_RE.match(p.name)
        if m:
            try:
                z = int(_el.ATOMIC_NUMBERS[_el.element_index(m[1])])
            except ValueError:
                continue
            found[(z, int(m[2]))] = p
    if elements is not None:
        zs = [int(_el.ATOMIC_NUMBERS[_el.element_index(e)]) for e in elements]
    else:
        zs = sorted({z for z, _ in found})
    if not zs:
        raise FileNotFoundError(f"{d}: no op_<sym>_1Em<NN>gcc.table files")
    nns = sorted({nn for z, nn in found if z in zs}, reverse=True)   # ascending density
    for z in zs:
        for nn in nns:
            if (z, nn) not in found:
                name = text_file_name(z, density_for_exponent(nn))
                raise FileNotFoundError(f"missing file {d / name} (each element needs every "
                                        "density present)")
    temps, data = None, []
    for z in zs:
        per_rho = []
        for nn in nns:
            path = found[(z, nn)]
            t, block = _read_text_file(path, n_points, n_temperatures)
            if temps is None:
                temps, n_points, n_temperatures = t, block.shape[1], block.shape[0]
            elif not np.array_equal(t, temps):
                raise DataFormatError(f"block temperatures {t[:3].tolist()}... differ from those "
                                      f"of the first file {temps[:3].tolist()}...", path=path,
                                      line=1, field="temperature_ev")
            per_rho.append(block)
        data.append(np.stack(per_rho, axis=1))       # (nT, nR, nP, 7)
    arr = np.stack(data)                             # (nZ, nT, nR, nP, 7)
    energy = arr[..., 0]
    return SupernuTable(elements=zs, temperature_ev=temps,
                        density_gcc=[density_for_exponent(nn) for nn in nns], energy_ev=energy,
                        columns=arr[..., 1:], energy_ratio=_ratio_of(temps, energy),
                        provenance={"source": str(d), "layout": "supernu text",
                                    "reader": "opacity_jax.data.supernu.read_text_layout"})


def write_text_layout(table: SupernuTable, directory) -> list:
    """Write one ``op_<sym>_1Em<NN>gcc.table`` per element and density into `directory`
    (created; SuperNu reads them from ``./Table``). Values use Python's shortest round-trip
    repr, so `read_text_layout` gives bit-identical arrays; one line per point (7 values).

    Returns the paths written. ValueError for a density that is not 10^-NN (NN in 4..20).
    """
    d = Path(directory)
    names = [[text_file_name(z, r) for r in table.density_gcc] for z in table.elements]
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for iz, z in enumerate(table.elements):
        for ir in range(table.density_gcc.size):
            out = []
            for it, t in enumerate(table.temperature_ev):
                out.append(f"temperature {it + 1} {float(t)!r}")
                out.append("energy_eV total absorption bound-bound bound-free free-free "
                           "scattering (cm^2/g)")
                block = np.concatenate([table.energy_ev[iz, it, ir][:, None],
                                        table.columns[iz, it, ir]], axis=1)
                out.extend(" ".join(map(repr, row)) for row in block.tolist())
            written.append(write_text(d / names[iz][ir], "\n".join(out) + "\n"))
    return written


# --------------------------------------------------------------------------------------------
# HDF5 layout
def read_hdf5_layout(path, elements: Optional[Sequence] = None) -> SupernuTable:
    """Read SuperNu's ``opacities.h5`` (layout in the module docstring).

    Args:
      path: the file; elements: symbols / Z to read (None: every dataset named by a
        lower-case element symbol).
    Returns:
      SupernuTable with energy_ev = temperature_grid x wavelength_grid (broadcast view) and
      energy_ratio = wavelength_grid.
    Raises:
      FileNotFoundError; DataFormatError naming the file and the dataset for a missing or
      mis-shaped dataset, a non-finite or negative value, non-ascending axes or ratios.
    """
    import h5py

    path = require_file(path)
    with open_hdf5(path) as f:
        axes = {}
        for name in ("temperature_grid", "density_grid", "wavelength_grid"):
            if not isinstance(f.get(name), h5py.Dataset):
                raise DataFormatError("missing dataset", path=path, field=name)
            a = np.asarray(f[name][()], np.float64)
            if a.ndim != 1 or a.size < 1 or np.any(~np.isfinite(a)) or np.any(a <= 0) \
                    or np.any(np.diff(a) <= 0):
                raise DataFormatError(f"expected a positive, strictly ascending 1-D array, got "
                                      f"shape {a.shape}", path=path, field=name)
            axes[name] = a
        t, r, w = axes["temperature_grid"], axes["density_grid"], axes["wavelength_grid"]
        symbols = {s.lower(): int(z) for s, z in zip(_el.SYMBOLS, _el.ATOMIC_NUMBERS)}
        if elements is None:
            names = [k for k in f if k in symbols]
            names.sort(key=lambda k: symbols[k])
        else:
            names = [_el.SYMBOLS[_el.element_index(e)].lower() for e in elements]
        if not names:
            raise DataFormatError("no element dataset (named by a lower-case symbol)", path=path,
                                  field="<symbol>")
        shape = (r.size, t.size, w.size, N_COLUMNS - 1)
        cols = []
        for name in names:
            if not isinstance(f.get(name), h5py.Dataset):
                raise DataFormatError(f"missing dataset (has {sorted(f.keys())})", path=path,
                                      field=name)
            if tuple(f[name].shape) != shape:
                raise DataFormatError(f"shape {f[name].shape}, expected (density, temperature, "
                                      f"point, column 2-7) = {shape}", path=path, field=name)
            a = np.asarray(f[name][()], np.float64)
            bad = ~np.isfinite(a) | (a < 0)
            if np.any(bad):
                idx = tuple(int(v) for v in np.argwhere(bad)[0])
                raise DataFormatError(f"non-finite or negative value {a[idx]!r} at index {idx}",
                                      path=path, field=name)
            cols.append(np.transpose(a, (1, 0, 2, 3)))        # (nT, nR, nP, 6)
        prov = {"source": str(path), "layout": "supernu hdf5",
                "reader": "opacity_jax.data.supernu.read_hdf5_layout"}
        if "provenance" in f.attrs:
            prov["file_provenance"] = str(f.attrs["provenance"])
    zs = [symbols[n] for n in names]
    energy = np.broadcast_to(t[None, :, None, None] * w, (len(zs), t.size, r.size, w.size))
    return SupernuTable(elements=zs, temperature_ev=t, density_gcc=r, energy_ev=energy,
                        columns=np.stack(cols), energy_ratio=w, provenance=prov)


def write_hdf5_layout(table: SupernuTable, path, attrs: Optional[dict] = None) -> Path:
    """Write `table` as SuperNu's ``opacities.h5`` (float64, C order (nR, nT, nP, 6) per
    element, datasets named by lower-case symbols).

    ValueError when the table's energies are not T x one ratio grid (`energy_ratio` None): the
    HDF5 layout cannot hold other energy grids.
    """
    import h5py

    if table.energy_ratio is None:
        raise ValueError("the HDF5 layout stores energies as temperature_grid x wavelength_grid; "
                         "this table's energies are not of that form (write the text layout)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["writer"] = f"opacity_jax {__version__}"
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            for name, arr, unit in (("temperature_grid", table.temperature_ev, "eV"),
                                    ("density_grid", table.density_gcc, "g/cm^3"),
                                    ("wavelength_grid", table.energy_ratio,
                                     "dimensionless: photon energy [eV] / T [eV]")):
                f.create_dataset(name, data=np.asarray(arr, np.float64)).attrs["units"] = unit
            for iz, z in enumerate(table.elements):
                d = f.create_dataset(_el.SYMBOLS[_el.element_index(int(z))].lower(),
                                     data=np.ascontiguousarray(
                                         np.transpose(table.columns[iz], (1, 0, 2, 3)),
                                         np.float64))
                d.attrs["columns"] = "total, absorption, bound-bound, bound-free, free-free, " \
                                     "scattering [cm^2/g]"

    return atomic_write(path, write)


def is_supernu_source(path) -> bool:
    """True for a folder of SuperNu text tables or an HDF5 file with SuperNu's axes."""
    p = Path(path)
    if p.is_dir():
        d = p / TEXT_DIR if (p / TEXT_DIR).is_dir() else p
        return any(_FILE_RE.match(q.name) for q in d.iterdir())
    if p.is_file() and p.suffix in (".h5", ".hdf5"):
        import h5py
        try:
            with h5py.File(p, "r") as f:
                return "wavelength_grid" in f and "temperature_grid" in f
        except OSError:
            return False
    return False


# --------------------------------------------------------------------------------------------
# coarsening and lookup
def wavelength_edges_cm(group_edges_ev) -> np.ndarray:
    """Group edges [eV] (ascending) -> SuperNu's wavelength edges `wl` [cm] (ascending):
    lambda = h c / E."""
    e = np.asarray(group_edges_ev, np.float64)
    return (C.H_PLANCK_ERG_S * C.C_LIGHT_CM_S / C.EV_ERG) / e[::-1]


def group_means(energy_ev, values, group_edges_ev) -> np.ndarray:
    """Group means of point values, as SuperNu's `coarsen_tbxs` forms them (in float64).

    Between consecutive points the values are linear in photon energy; each group's value is
    the integral of that interpolant over the part of the group inside the points' range,
    divided by the whole group width (a group partly outside the points is diluted, one wholly
    outside is 0, as in SuperNu).

    Args:
      energy_ev: (..., nP) ascending point energies [eV] (broadcast against values).
      values: (..., nP) point values (e.g. absorption [cm^2/g]).
      group_edges_ev: (nG + 1,) ascending group edges [eV].
    Returns:
      (..., nG) float64 group means, ascending energy.
    """
    e = np.asarray(energy_ev, np.float64)
    v = np.asarray(values, np.float64)
    e, v = np.broadcast_arrays(e, v)
    g = np.asarray(group_edges_ev, np.float64)
    if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("group_edges_ev must be a strictly ascending 1-D array of >= 2 edges")
    lead = e.shape[:-1]
    e2 = e.reshape(-1, e.shape[-1])
    v2 = v.reshape(-1, v.shape[-1])
    out = np.empty((e2.shape[0], g.size - 1))
    for k in range(e2.shape[0]):
        ek, vk = e2[k], v2[k]
        cum = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(ek) * (vk[1:] + vk[:-1]))])
        x = np.clip(g, ek[0], ek[-1])
        i = np.clip(np.searchsorted(ek, x, side="right") - 1, 0, ek.size - 2)
        vx = vk[i] + (vk[i + 1] - vk[i]) * (x - ek[i]) / (ek[i + 1] - ek[i])
        f = cum[i] + 0.5 * (x - ek[i]) * (vk[i] + vx)
        out[k] = np.diff(f) / np.diff(g)
    return out.reshape(lead + (g.size - 1,))


def coarsen_tbxs(energy_ev, components, group_edges_ev) -> np.ndarray:
    """Group means of point values with SuperNu's own single-precision arithmetic.

    `group_means` integrates in float64; SuperNu's `coarsen_tbxs` holds the raw table in
    float32 (`tb_raw` is real*4, so the point energies and values are rounded to float32 on
    reading) and accumulates in float32. This reproduces it operation for operation, so that a
    table's group opacities are known as a SuperNu build holds them:

    * group edges as inverse energies [1/eV], `evinv = eV wl / (h c)` from the wavelength edges
      `wl = wavelength_edges_cm(group_edges_ev)` that SuperNu is given (float64);
    * segments between consecutive points visited from the highest energy down; for each
      group k overlapping the segment, in inverse energy, [x1, x2] = [max(1/E_hi, evinv_k),
      min(1/E_lo, evinv_k+1)], and the float64 weights w3 = (E_hi - E(x1)) / (E_hi - E_lo),
      w4 = (E(x2) - E_lo) / (E_hi - E_lo) in SuperNu's algebraic form;
    * per component (bound-bound, bound-free, free-free separately), float32 end values
      c1 = v_hi (1 - w3) + v_lo w3 and c2 = v_hi w4 + v_lo (1 - w4), added as
      0.5 (x2 - x1) / (x1 x2) (c1 + c2) to a float32 segment sum, which is added to the float32
      group sum; finally each group sum is multiplied by float32(evinv_k evinv_k+1 /
      (evinv_k+1 - evinv_k)), i.e. divided by the group's energy width.

    Against `group_means` of the float64 values it differs by SuperNu's rounding (float32
    values and sums): up to 7.4e-5 relative with ~1900 points per group at full size
    (tests/test_supernu.py, slow test).

    Args:
      energy_ev: (..., nP) ascending point energies [eV].
      components: (..., nP, nC) point values [cm^2/g] summed by SuperNu (columns 4-6: bb, bf,
        ff), in that order.
      group_edges_ev: (nG + 1,) ascending group edges [eV].
    Returns:
      (..., nG) float32 group means [cm^2/g], ascending energy (SuperNu stores them by
      ascending wavelength: reverse the last axis).
    """
    e = np.asarray(energy_ev, np.float64)
    v = np.asarray(components, np.float64)
    if v.ndim < 2 or v.shape[:-1] != e.shape:
        raise ValueError(f"components must have shape energy_ev.shape + (nC,) = "
                         f"{e.shape} + (nC,), got {v.shape}")
    g = np.asarray(group_edges_ev, np.float64)
    if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("group_edges_ev must be a strictly ascending 1-D array of >= 2 edges")
    evinv = (C.EV_ERG * wavelength_edges_cm(g)) / (C.H_PLANCK_ERG_S * C.C_LIGHT_CM_S)
    n_g = g.size - 1
    # SuperNu's final factor per group, ascending wavelength
    factor = (evinv[1:] * evinv[:-1] / (evinv[1:] - evinv[:-1])).astype(np.float32)
    lead = e.shape[:-1]
    e2 = e.reshape(-1, e.shape[-1]).astype(np.float32)
    v2 = v.reshape((-1,) + v.shape[-2:]).astype(np.float32)
    out = np.zeros((e2.shape[0], n_g), np.float32)
    half = np.float32(0.5)
    for b in range(e2.shape[0]):
        # segments highest energy first: point igr + 1 (high E, short wavelength) and igr
        x_short = 1.0 / e2[b, 1:][::-1].astype(np.float64)
        x_long = 1.0 / e2[b, :-1][::-1].astype(np.float64)
        v_hi = v2[b, 1:][::-1]
        v_lo = v2[b, :-1][::-1]
        for k in range(n_g):
            x1 = np.maximum(x_short, evinv[k])
            x2 = np.minimum(x_long, evinv[k + 1])
            m = x2 > x1                      # segments overlapping group k (others add 0)
            if not m.any():
                continue
            xs, xl, y1, y2 = x_short[m], x_long[m], x1[m], x2[m]
            w3 = xl * (y1 - xs) / (y1 * (xl - xs))
            w4 = xs * (xl - y2) / (y2 * (xl - xs))
            width = (half * ((y2 - y1) / (y1 * y2)).astype(np.float32))[:, None]
            c1 = v_hi[m] * (1.0 - w3).astype(np.float32)[:, None] \
                + v_lo[m] * w3.astype(np.float32)[:, None]
            c2 = v_hi[m] * w4.astype(np.float32)[:, None] \
                + v_lo[m] * (1.0 - w4).astype(np.float32)[:, None]
            terms = width * (c1 + c2)                      # (n_seg, nC) float32
            seg = np.zeros(terms.shape[0], np.float32)
            for c in range(terms.shape[1]):                # components added one by one
                seg = seg + terms[:, c]
            # np.cumsum adds in order (np.sum would add pairwise): SuperNu's running sum
            out[b, n_g - 1 - k] = np.cumsum(seg, dtype=np.float32)[-1] * factor[k]
    return out.reshape(lead + (n_g,))


def grey_scattering_single(table: SupernuTable) -> np.ndarray:
    """(nZ, nT, nR) float32 grey scattering [cm^2/g] as SuperNu forms it from its float32 raw
    table: column 7 rounded to float32, summed in order in float32, divided by nP in float32."""
    col = table.columns[..., 5].astype(np.float32)
    return np.cumsum(col, axis=-1, dtype=np.float32)[..., -1] / np.float32(col.shape[-1])


def grey_scattering(table: SupernuTable) -> np.ndarray:
    """(nZ, nT, nR) SuperNu's grey scattering opacity [cm^2/g]: the plain mean of column 7 over
    the points (not energy-weighted)."""
    return table.columns[..., 5].mean(axis=-1)


def interpolate_groups(group_table, temperature_ev_axis, density_gcc_axis, temperature_ev,
                       partial_density_gcc) -> np.ndarray:
    """SuperNu's `tabular_opacity` lookup of one element's group table at N cells.

    Bilinear, linear in T and in log rho, with the query clamped to the table's edges (no
    extrapolation), on the element's partial density rho_Z = X_Z rho.

    Args:
      group_table: (nT, nR, ...) group means [cm^2/g] (or (nT, nR) grey values);
      temperature_ev_axis: (nT,) [eV]; density_gcc_axis: (nR,) [g/cm^3];
      temperature_ev, partial_density_gcc: (N,) cell values.
    Returns:
      (N, ...) [cm^2/g]; the cell's macroscopic opacity is rho_Z times this, summed over elements.
    """
    return bilinear_points(group_table, temperature_ev_axis, np.log(density_gcc_axis),
                           np.asarray(temperature_ev, np.float64),
                           np.log(np.asarray(partial_density_gcc, np.float64)),
                           log_values=False, outside="clamp")


# --------------------------------------------------------------------------------------------
# canonical dataset
def to_dataset(table: SupernuTable, energy_edges_ev=None) -> Dataset:
    """The canonical Dataset of a SupernuTable (how the points are held: module docstring).

    Args:
      table: the layout's contents.
      energy_edges_ev: (nE + 1,) common bin edges [eV]; each bin gets the group mean of the
        points (`group_means`) of bb, bf, ff and scattering. None: the blocks must share one
        energy grid, held as bins centred on the points.
    Returns:
      Dataset with kappa = bb + bf + ff + scattering and components bb, bf, ff, es (columns 4-7;
      SuperNu ignores columns 2-3 and so does this), float32 [cm^2/g].
    Raises:
      ValueError: energy_edges_ev None with per-block energy grids, or a bin not covered by a
        block's points (names the element, T and rho).
    """
    names = ("bb", "bf", "ff", "es")
    cols = {n: table.columns[..., 2 + i] for i, n in enumerate(names)}
    if energy_edges_ev is None:
        e0 = table.energy_ev[0, 0, 0]
        if not np.array_equal(np.broadcast_to(e0, table.energy_ev.shape), table.energy_ev):
            raise ValueError("the blocks' point energies differ (e.g. they scale with T); give "
                             "energy_edges_ev to average them onto one bin grid")
        edges = _grid.edges_from_centers_ev(e0)
        comps = {n: v.astype(np.float32) for n, v in cols.items()}
    else:
        edges = np.asarray(energy_edges_ev, np.float64)
        lo, hi = table.energy_ev[..., 0], table.energy_ev[..., -1]
        bad = (lo > edges[0]) | (hi < edges[-1])
        if np.any(bad):
            iz, it, ir = np.argwhere(bad)[0]
            raise ValueError(
                f"{_el.SYMBOLS[_el.element_index(int(table.elements[iz]))]} at T = "
                f"{float(table.temperature_ev[it])!r} eV, rho = "
                f"{float(table.density_gcc[ir])!r} g/cm^3: points "
                f"span [{lo[iz, it, ir]:.4g}, {hi[iz, it, ir]:.4g}] eV, not the bins' "
                f"[{edges[0]:.4g}, {edges[-1]:.4g}] eV; pass narrower energy_edges_ev")
        comps = {n: group_means(table.energy_ev, v, edges).astype(np.float32)
                 for n, v in cols.items()}
    kappa = (comps["bb"].astype(np.float64) + comps["bf"] + comps["ff"] + comps["es"])
    prov = dict(table.provenance, energy=(
        "point values held as bins centred on the points" if energy_edges_ev is None else
        "bin means of the piecewise-linear interpolant of the points (supernu.group_means)"))
    return Dataset(elements=table.elements, temperature_ev=table.temperature_ev,
                   density_gcc=table.density_gcc, energy_edges_ev=edges,
                   kappa=kappa.astype(np.float32), components=comps, provenance=prov)


def load_source(path, elements: Optional[Sequence] = None, energy_edges_ev=None) -> Dataset:
    """Dataset from a SuperNu source: a folder of text tables or an ``opacities.h5``.

    energy_edges_ev: common bins [eV] (default: 0.1-10 eV log-spaced, one bin per point, the
    band the package's models cover, clipped to what every block's points span)."""
    p = Path(path)
    table = read_text_layout(p, elements) if p.is_dir() else read_hdf5_layout(p, elements)
    if energy_edges_ev is None:
        lo = max(_grid.E_MIN_EV, float(table.energy_ev[..., 0].max()))
        hi = min(_grid.E_MAX_EV, float(table.energy_ev[..., -1].min()))
        if not lo < hi:
            raise DataFormatError(f"the blocks' energy ranges share no part of "
                                  f"[{_grid.E_MIN_EV}, {_grid.E_MAX_EV}] eV", path=p,
                                  field="energy_ev")
        energy_edges_ev = _grid.energy_edges_ev(table.n_points, lo, hi)
    return to_dataset(table, energy_edges_ev)


# --------------------------------------------------------------------------------------------
# writing from the generator and from surrogates
def _axes(temperatures_ev, densities_gcc, energy_ratio):
    t = _grid.temperatures_ev() if temperatures_ev is None else np.asarray(temperatures_ev, float)
    exact = np.asarray([density_for_exponent(n) for n in DENSITY_EXPONENTS[::-1]])
    r = exact if densities_gcc is None else np.asarray(densities_gcc, float).copy()
    for k, v in enumerate(r):   # 10^-NN up to rounding (e.g. from geomspace) -> exactly 10^-NN
        near = np.flatnonzero(np.abs(exact / v - 1.0) < 1e-9)
        if near.size:
            r[k] = exact[near[0]]
    w = default_energy_ratio() if energy_ratio is None else np.asarray(energy_ratio, float)
    if w.ndim != 1 or w.size < 2 or np.any(w <= 0) or np.any(np.diff(w) <= 0):
        raise ValueError("energy_ratio must be a positive, strictly ascending 1-D array")
    return t, r, w


def from_generator(elements: Sequence, temperatures_ev=None, densities_gcc=None,
                   energy_ratio=None, config=None, progress=None) -> SupernuTable:
    """SuperNu tables from the embedded LTE generator, per element at its partial density.

    Each point value at E = T x ratio is the generator's line-binned opacity over a bin centred
    on the point (edges at the geometric midpoints to the neighbours: the generator's
    native-resolution quantity). The generator covers 0.1-10 eV; points whose bin leaves that
    band are written as 0 in every column (recorded in provenance['coverage_ev']).

    Args:
      elements: symbols / Z; temperatures_ev: (nT,) [eV] (default the 27 NIST-LANL values);
      densities_gcc: (nR,) 10^-NN values (default the 17 of SuperNu); energy_ratio: (nP,)
        E/T grid (default `default_energy_ratio()`); config: generator.GeneratorConfig.
    Returns:
      SupernuTable with energy_ratio set (writable in both layouts).
    """
    from opacity_jax.data import generator as gen_lib

    t, r, w = _axes(temperatures_ev, densities_gcc, energy_ratio)
    gen = gen_lib.OpacityGenerator(config or gen_lib.GeneratorConfig())
    zs = [int(_el.ATOMIC_NUMBERS[_el.element_index(e)]) for e in elements]
    energy = np.broadcast_to((t[:, None] * w)[None, :, None, :], (len(zs), t.size, r.size, w.size))
    cols = np.zeros(energy.shape + (N_COLUMNS - 1,))
    for iz, z in enumerate(zs):
        for it, tt in enumerate(t):
            e = energy[iz, it, 0]
            edges = _grid.edges_from_centers_ev(e)
            inside = np.flatnonzero((edges[:-1] >= _grid.E_MIN_EV) & (edges[1:] <= _grid.E_MAX_EV))
            if inside.size == 0:
                continue
            a, b = int(inside[0]), int(inside[-1]) + 1
            out = gen.spectra(z, np.full(r.size, tt), r, edges[a:b + 1])
            bb, bf, ff, es = (out[k] for k in ("bb", "bf", "ff", "es"))
            cols[iz, it, :, a:b] = np.stack([bb + bf + ff + es, bb + bf + ff, bb, bf, ff, es], -1)
        if progress is not None:
            progress(iz + 1, len(zs), _el.SYMBOLS[_el.element_index(z)])
    prov = {"source": "opacity_jax embedded LTE generator (single element at its partial "
                      "density)", "package_version": __version__,
            "seed": (config or gen_lib.GeneratorConfig()).seed,
            "coverage_ev": [_grid.E_MIN_EV, _grid.E_MAX_EV],
            "outside_coverage": "0 in every column"}
    return SupernuTable(elements=zs, temperature_ev=t, density_gcc=r,
                        energy_ev=np.ascontiguousarray(energy), columns=cols, energy_ratio=w,
                        provenance=prov)


def from_surrogate(model, elements: Optional[Sequence] = None, temperatures_ev=None,
                   densities_gcc=None, energy_ratio=None) -> SupernuTable:
    """SuperNu tables from a trained forward surrogate (`opacity_jax.serve.surrogate.load`),
    per element at its partial density.

    The surrogates predict bin averages of the total opacity on their own energy bins: each
    point gets the value of the model bin holding it (a point on an edge takes the upper bin).
    The total goes into columns 2, 3 and 4 (SuperNu then counts it, scattering included, as
    absorption) and columns 5-7 are 0. Points outside the model's energy bins are 0 in every
    column. Queries follow the model's domain check (raise outside its training domain).

    Args:
      model: Surrogate / StageBasisSurrogate (anything with elements, energy_edges_ev and
        spectrum(element, T, rho)); elements: symbols / Z (None: all served);
      temperatures_ev, densities_gcc, energy_ratio: as `from_generator`.
    """
    t, r, w = _axes(temperatures_ev, densities_gcc, energy_ratio)
    zs = [int(z) for z in model.elements] if elements is None else [
        int(_el.ATOMIC_NUMBERS[_el.element_index(e)]) for e in elements]
    edges = np.asarray(model.energy_edges_ev, np.float64)
    tt, rr = np.meshgrid(t, r, indexing="ij")
    energy = np.broadcast_to((t[:, None] * w)[None, :, None, :], (len(zs), t.size, r.size, w.size))
    cols = np.zeros(energy.shape + (N_COLUMNS - 1,))
    for iz, z in enumerate(zs):
        k = np.asarray(model.spectrum(z, tt.ravel(), rr.ravel()), np.float64)
        k = k.reshape(t.size, r.size, -1)
        for it in range(t.size):
            e = energy[iz, it, 0]
            b = np.searchsorted(edges, e, side="right") - 1
            ok = (e >= edges[0]) & (e < edges[-1])
            vals = np.where(ok[None, :], k[it][:, np.clip(b, 0, edges.size - 2)], 0.0)
            cols[iz, it, :, :, 0] = vals
            cols[iz, it, :, :, 1] = vals
            cols[iz, it, :, :, 2] = vals
    prov = {"source": f"opacity_jax surrogate ({getattr(model, 'regressor', '?')})",
            "workdir": str(getattr(model, "workdir", "")), "package_version": __version__,
            "coverage_ev": [float(edges[0]), float(edges[-1])],
            "outside_coverage": "0 in every column",
            "columns": "total in columns 2-4 (bins of the model), 5-7 zero"}
    return SupernuTable(elements=zs, temperature_ev=t, density_gcc=r,
                        energy_ev=np.ascontiguousarray(energy), columns=cols, energy_ratio=w,
                        provenance=prov)
