"""Tests for the dataset file formats: HDF5 dataset files (data.h5file), spectrum text tables
(data.spectrum_tables), JLODK tables (data.jlodk), read through the old path opacity_jax.data.io."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from opacity_jax.data import grid
from opacity_jax.data import io
from opacity_jax.data.dataset import Dataset
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import constants

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
JLODK_ROOT = SHARED_DATA / "jlodk_planck_mean"


def assert_error(exc_info, path, line=None, field=None):
    """The error names the file (and the line and field when given) in attributes and text."""
    exc = exc_info.value
    msg = str(exc)
    assert Path(path).name in msg, msg
    assert exc.path is not None and Path(exc.path).name == Path(path).name, msg
    if line is not None:
        assert exc.line == line, msg
        assert f"line {line}" in msg, msg
    if field is not None:
        assert exc.field == field, msg
        assert repr(field) in msg, msg


def leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# The old path
# ---------------------------------------------------------------------------------------------

def test_old_path_re_exports_the_modules_objects():
    # data.io holds no logic of its own: every name is the object of the module that defines it.
    import inspect

    from opacity_jax.data import h5file, jlodk, parsing, spectrum_tables
    homes = {h5file: ["FORMAT_NAME", "FORMAT_VERSION", "UNITS", "save_dataset", "load_dataset"],
             spectrum_tables: ["SPECTRUM_COLUMNS", "SpectrumTable", "read_spectrum_table",
                               "write_spectrum_table", "read_spectrum_directory"],
             jlodk: ["JLODK_COLUMNS", "JlodkTable", "read_jlodk", "write_jlodk"],
             parsing: ["header_pairs", "normalize_unit", "parse_rows", "read_text_lines",
                       "repr_number", "require_file", "split_row"]}
    assert sorted(io.__all__) == sorted(n for names in homes.values() for n in names)
    for module, names in homes.items():
        for name in names:
            assert getattr(io, name) is getattr(module, name), name
    assert not [n for n, v in vars(io).items()
                if (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == io.__name__]


# ---------------------------------------------------------------------------------------------
# HDF5 dataset file
# ---------------------------------------------------------------------------------------------

def make_dataset(seed=0, shape=(3, 4, 5, 6), full=True):
    rng = np.random.default_rng(seed)
    nz, nt, nr, ne = shape
    comps = {c: rng.random(shape).astype(np.float32) for c in ("bb", "bf", "ff", "es")} if full \
        else {}
    valid = rng.random(shape[:3]) > 0.2
    return Dataset(
        elements=np.array([57, 60, 92, 26][:nz]),
        temperature_ev=np.geomspace(0.01, 5.0, nt),
        density_gcc=np.geomspace(1e-20, 1e-4, nr),
        energy_edges_ev=grid.energy_edges_ev(ne),
        kappa=(10.0 ** rng.uniform(-3, 5, shape)).astype(np.float32),
        components=comps,
        zbar=rng.uniform(0, 3, shape[:3]) if full else None,
        charge_fractions=rng.dirichlet(np.ones(4), size=shape[:3]) if full else None,
        valid=valid,
        provenance={"source": "test", "seed": np.int64(seed), "nested": {"a": [1, 2.5]}},
    )


def assert_datasets_equal(a, b):
    np.testing.assert_array_equal(a.elements, b.elements)
    for name in ("temperature_ev", "density_gcc", "energy_edges_ev", "kappa", "valid"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert b.kappa.dtype == np.float32
    assert sorted(a.components) == sorted(b.components)
    for name in a.components:
        np.testing.assert_array_equal(a.components[name], b.components[name], err_msg=name)
        assert b.components[name].dtype == np.float32
    for name in ("zbar", "charge_fractions"):
        if getattr(a, name) is None:
            assert getattr(b, name) is None
        else:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("compression", ["gzip", "lzf", None])
def test_save_load_roundtrip(tmp_path, compression):
    ds = make_dataset()
    path = tmp_path / "ds.h5"
    assert io.save_dataset(ds, path, compression=compression) == path
    back = io.load_dataset(path)
    assert_datasets_equal(ds, back)
    assert back.provenance == {"source": "test", "seed": 0, "nested": {"a": [1, 2.5]}}
    assert back.valid.dtype == bool
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == io.FORMAT_NAME
        assert int(f.attrs["format_version"]) == 1
        assert json.loads(f.attrs["units"]) == io.UNITS
        assert json.loads(f.attrs["provenance"])["source"] == "test"
        assert f["kappa"].dtype == np.float32
        assert f["kappa"].chunks == (1, 1, 5, 6)
        assert f["kappa"].compression == compression
        assert set(f["components"]) == {"bb", "bf", "ff", "es"}
    assert leftovers(tmp_path) == []


def test_roundtrip_without_optional_fields(tmp_path):
    ds = make_dataset(full=False)
    io.save_dataset(ds, tmp_path / "ds.h5")
    back = io.load_dataset(tmp_path / "ds.h5")
    assert_datasets_equal(ds, back)
    assert back.components == {} and back.zbar is None and back.charge_fractions is None


def test_load_element_subset(tmp_path):
    ds = make_dataset()
    io.save_dataset(ds, tmp_path / "ds.h5")
    sub = io.load_dataset(tmp_path / "ds.h5", elements=[92, 57])
    np.testing.assert_array_equal(sub.elements, [92, 57])
    np.testing.assert_array_equal(sub.kappa, ds.kappa[[2, 0]])
    np.testing.assert_array_equal(sub.components["bf"], ds.components["bf"][[2, 0]])
    np.testing.assert_array_equal(sub.zbar, ds.zbar[[2, 0]])
    np.testing.assert_array_equal(sub.valid, ds.valid[[2, 0]])
    with pytest.raises(ValueError, match="70"):
        io.load_dataset(tmp_path / "ds.h5", elements=[70])


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    ds = make_dataset()
    target = tmp_path / "ds.h5"
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "kappa":  # the axes are already in the temp file by now
            raise OSError("simulated disk failure")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="simulated"):
        io.save_dataset(ds, target)
    assert list(tmp_path.iterdir()) == []

    # An existing file survives a failed overwrite untouched.
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    io.save_dataset(ds, target)
    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="simulated"):
        io.save_dataset(make_dataset(seed=1), target)
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    assert [p.name for p in tmp_path.iterdir()] == ["ds.h5"]
    assert_datasets_equal(ds, io.load_dataset(target))


def test_save_rejects_bad_values_before_writing(tmp_path):
    ds = make_dataset()
    ds.kappa[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"kappa.*\(1, 2, 3, 4\)"):
        io.save_dataset(ds, tmp_path / "ds.h5")
    ds = make_dataset()
    ds.provenance["bad"] = object()
    with pytest.raises(TypeError):
        io.save_dataset(ds, tmp_path / "ds.h5")
    assert list(tmp_path.iterdir()) == []


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        io.load_dataset(tmp_path / "nope.h5")


def test_load_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello\n")
    with pytest.raises(DataFormatError) as ei:
        io.load_dataset(path)
    assert_error(ei, path, field="format")


def _edit_attr(name, value):
    def edit(f):
        f.attrs[name] = value
    return edit


def _delete(name):
    def edit(f):
        del f[name]
    return edit


def _set_value(name, index, value):
    def edit(f):
        f[name][index] = value
    return edit


@pytest.mark.parametrize("edit, field, needle", [
    (_edit_attr("format", "something.else"), "format", "something.else"),
    (_edit_attr("format_version", 2), "format_version", "2"),
    (_delete("density_gcc"), "density_gcc", "missing"),
    (_delete("valid"), "valid", "missing"),
    (_edit_attr("units", json.dumps({**io.UNITS, "temperature": "K"})), "units.temperature", "K"),
    (_edit_attr("units", json.dumps({**io.UNITS, "kappa": "m^2/kg"})), "units.kappa", "m^2/kg"),
    (_edit_attr("units", "not json"), "units", "JSON"),
    (_set_value("kappa", (1, 2, 3, 4), np.nan), "kappa", "(1, 2, 3, 4)"),
    (_set_value("kappa", (0, 1, 0, 5), np.inf), "kappa", "(0, 1, 0, 5)"),
    (_set_value("components/bf", (2, 0, 4, 1), -1.0), "components/bf", "(2, 0, 4, 1)"),
])
def test_load_bad_file(tmp_path, edit, field, needle):
    path = tmp_path / "bad.h5"
    io.save_dataset(make_dataset(), path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(DataFormatError) as ei:
        io.load_dataset(path)
    assert_error(ei, path, field=field)
    assert needle in str(ei.value)


def test_subset_reports_file_index(tmp_path):
    path = tmp_path / "bad.h5"
    io.save_dataset(make_dataset(), path)
    with h5py.File(path, "r+") as f:
        f["kappa"][2, 1, 1, 1] = -3.0
    io.load_dataset(path, elements=[57])  # the bad row is never read
    with pytest.raises(DataFormatError, match=r"\(2, 1, 1, 1\)"):
        io.load_dataset(path, elements=[92])


# ---------------------------------------------------------------------------------------------
# Spectrum text tables
# ---------------------------------------------------------------------------------------------

ROWS = ["0.1 10.0 4.0 3.0 2.0 1.0",
        "0.2 9.0 4.0 2.5 1.5 1.0",
        "0.4 8.0 3.5 2.5 1.0 1.0",
        "0.8 7.5 3.5 2.5 0.5 1.0"]


def spectrum_text(header=("Z = 60", "T_eV = 0.5", "rho = 1e-10 g/cm^3"), rows=ROWS):
    return "".join(f"# {h}\n" for h in header) + "".join(f"{r}\n" for r in rows)


def test_read_spectrum_table_basic(tmp_path):
    path = tmp_path / "nd.txt"
    path.write_text(spectrum_text(header=("NIST-LANL export", "Z = 60", "T_eV = 0.5",
                                          "rho = 1e-10 g/cm^3", "zbar = 1.25",
                                          "columns: energy total bb bf ff es")))
    t = io.read_spectrum_table(path)
    assert (t.z, t.temperature_ev, t.density_gcc, t.zbar) == (60, 0.5, 1e-10, 1.25)
    np.testing.assert_array_equal(t.energy_ev, [0.1, 0.2, 0.4, 0.8])
    np.testing.assert_array_equal(t.kappa, [10.0, 9.0, 8.0, 7.5])
    np.testing.assert_array_equal(t.components["ff"], [2.0, 1.5, 1.0, 0.5])
    assert sorted(t.components) == ["bb", "bf", "es", "ff"]
    np.testing.assert_allclose(t.energy_edges_ev, grid.edges_from_centers_ev(t.energy_ev))
    assert t.source == str(path)


@pytest.mark.parametrize("header, z, t_ev, rho", [
    (("Z = 60", "T = 0.5 eV", "rho = 1e-10 g/cc"), 60, 0.5, 1e-10),
    (("z: 60", "temperature: 0.5", "density: 1e-10 g/cm3"), 60, 0.5, 1e-10),
    (("element = Nd", "T = 5802 K", "density = 1e-7 kg/m^3"), 60,
     5802 * constants.K_BOLTZMANN_EV_K, 1e-10),
    (("Element: uranium", "T [K] = 5802", "rho_gcc = 1e-10"), 92,
     5802 * constants.K_BOLTZMANN_EV_K, 1e-10),
    (("Z = 60, T_K = 11604.5, rho = 1e-10 g cm^-3",), 60, 11604.5 * constants.K_BOLTZMANN_EV_K,
     1e-10),
    (("Z = 57", "T = 0.002 keV", "RHO = 1e-10"), 57, 2.0, 1e-10),
])
def test_spectrum_header_variants(tmp_path, header, z, t_ev, rho):
    path = tmp_path / "t.txt"
    path.write_text(spectrum_text(header=header))
    t = io.read_spectrum_table(path)
    assert t.z == z
    assert t.temperature_ev == pytest.approx(t_ev, rel=1e-12)
    assert t.density_gcc == pytest.approx(rho, rel=1e-12)
    assert t.zbar is None


def test_spectrum_comma_separated_and_crlf(tmp_path):
    path = tmp_path / "c.csv"
    text = spectrum_text(rows=[r.replace(" ", ", ") for r in ROWS])
    path.write_bytes(text.replace("\n", "\r\n").encode())
    t = io.read_spectrum_table(path)
    np.testing.assert_array_equal(t.components["bb"], [4.0, 4.0, 3.5, 3.5])


def test_spectrum_write_read_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    n = 50
    comps = {c: rng.random(n) * 10 ** rng.uniform(-5, 5, n) for c in ("bb", "bf", "ff", "es")}
    table = io.SpectrumTable(z=94, temperature_ev=0.123456789012345, density_gcc=3.3e-13,
                             energy_ev=np.geomspace(0.1, 10, n), kappa=sum(comps.values()),
                             components=comps, zbar=2.0 / 3.0)
    path = io.write_spectrum_table(tmp_path / "pu.txt", table)
    back = io.read_spectrum_table(path)
    assert (back.z, back.temperature_ev, back.density_gcc, back.zbar) == (
        94, table.temperature_ev, table.density_gcc, table.zbar)
    np.testing.assert_array_equal(back.energy_ev, table.energy_ev)
    np.testing.assert_array_equal(back.kappa, table.kappa)
    for c in comps:
        np.testing.assert_array_equal(back.components[c], comps[c])
    assert leftovers(tmp_path) == []


HDR = ("Z = 60", "T_eV = 0.5", "rho = 1e-10 g/cm^3")


@pytest.mark.parametrize("header, rows, line, field", [
    # wrong column count (5 instead of 6) on the second data row = line 5
    (HDR, [ROWS[0], "0.2 9.0 4.0 2.5 1.5", *ROWS[2:]], 5, "es"),
    (HDR, [ROWS[0], ROWS[1], "0.4 8.0 3.5 2.5 1.0 1.0 7.0", ROWS[3]], 6, "column 7"),
    (HDR, [ROWS[0], ROWS[1], "0.4 8.0 3.5 abc 1.0 1.0", ROWS[3]], 6, "bf"),
    (HDR, [ROWS[0], ROWS[1], ROWS[2], "0.8 nan 3.5 2.5 0.5 1.0"], 7, "total"),
    (HDR, [ROWS[0], "0.2 9.0 4.0 2.5 inf 1.0", *ROWS[2:]], 5, "ff"),
    (HDR, [ROWS[0], ROWS[1], "0.4 8.0 -3.5 2.5 1.0 1.0", ROWS[3]], 6, "bb"),
    (HDR, [ROWS[0], ROWS[1], "0.2 8.0 3.5 2.5 1.0 1.0", ROWS[3]], 6, "energy_ev"),
    (HDR, ["-0.1 10.0 4.0 3.0 2.0 1.0", *ROWS[1:]], 4, "energy_ev"),
    (HDR, [ROWS[0]], 4, "energy_ev"),
    (("T_eV = 0.5", "rho = 1e-10 g/cm^3"), ROWS, 3, "Z"),
    (("Z = 60", "rho = 1e-10 g/cm^3"), ROWS, 3, "T"),
    (("Z = 60", "T_eV = 0.5"), ROWS, 3, "rho"),
    (("Z = 60", "T = 0.5 furlong", "rho = 1e-10"), ROWS, 2, "T"),
    (("Z = 60", "T = 0.5", "rho = 1e-10 lb/ft^3"), ROWS, 3, "rho"),
    (("Z = 60", "T_eV = 0.5 K", "rho = 1e-10"), ROWS, 2, "T"),
    (("Z = 60", "T = hot", "rho = 1e-10"), ROWS, 2, "T"),
    (("Z = 60", "T = -1 eV", "rho = 1e-10"), ROWS, 2, "T"),
    (("element = Xx", "T = 1", "rho = 1e-10"), ROWS, 1, "element"),
    (("Z = 60", "element = U", "T = 1", "rho = 1e-10"), ROWS, 2, "element"),
    (("Z = 60.5", "T = 1", "rho = 1e-10"), ROWS, 1, "Z"),
    (("Z = 60", "T = 1", "T = 2", "rho = 1e-10"), ROWS, 3, "T"),
])
def test_spectrum_bad_inputs(tmp_path, header, rows, line, field):
    path = tmp_path / "bad_table.txt"
    path.write_text(spectrum_text(header=header, rows=rows))
    with pytest.raises(DataFormatError) as ei:
        io.read_spectrum_table(path)
    assert_error(ei, path, line=line, field=field)


def test_spectrum_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        io.read_spectrum_table(tmp_path / "absent.txt")


def test_spectrum_not_utf8(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"# Z = 60\n# T = 1\n\xff\xfe\x00\n")
    with pytest.raises(DataFormatError) as ei:
        io.read_spectrum_table(path)
    assert_error(ei, path, line=3, field="encoding")


def _table(z, t, rho, energy=None, scale=1.0, zbar=None):
    energy = np.geomspace(0.1, 10.0, 7) if energy is None else energy
    rng = np.random.default_rng(z * 1000 + int(t * 100) + int(-np.log10(rho)))
    comps = {c: scale * rng.random(energy.size) for c in ("bb", "bf", "ff", "es")}
    return io.SpectrumTable(z=z, temperature_ev=t, density_gcc=rho, energy_ev=energy,
                            kappa=sum(comps.values()), components=comps, zbar=zbar)


def _write_grid(directory, skip=(), zbar=True):
    directory.mkdir(exist_ok=True)
    tables = {}
    for z in (92, 60):
        for t in (1.0, 0.5):
            for rho in (1e-8, 1e-12):
                if (z, t, rho) in skip:
                    continue
                tab = _table(z, t, rho, zbar=(z / 30 + t) if zbar else None)
                io.write_spectrum_table(directory / f"Z{z}_T{t}_rho{rho:g}.txt", tab)
                tables[z, t, rho] = tab
    return tables


def test_spectrum_directory_with_missing_node(tmp_path):
    tables = _write_grid(tmp_path / "spec", skip={(60, 1.0, 1e-12)})
    # A node written with T off by 1e-9 relative still lands on the same grid point.
    tab = tables[92, 0.5, 1e-8]
    tab.temperature_ev *= 1 + 1e-9
    io.write_spectrum_table(tmp_path / "spec" / "Z92_T0.5_rho1e-08.txt", tab)
    ds = io.read_spectrum_directory(tmp_path / "spec")
    np.testing.assert_array_equal(ds.elements, [60, 92])
    np.testing.assert_allclose(ds.temperature_ev, [0.5, 1.0], rtol=1e-8)
    np.testing.assert_array_equal(ds.density_gcc, [1e-12, 1e-8])
    assert ds.shape == (2, 2, 2, 7)
    expected_valid = np.ones((2, 2, 2), bool)
    expected_valid[0, 1, 0] = False
    np.testing.assert_array_equal(ds.valid, expected_valid)
    assert np.all(ds.kappa[0, 1, 0] == 0) and ds.zbar[0, 1, 0] == 0
    src = tables[92, 1.0, 1e-12]
    np.testing.assert_array_equal(ds.kappa[1, 1, 0], src.kappa.astype(np.float32))
    np.testing.assert_array_equal(ds.components["es"][1, 1, 0], src.components["es"].astype(
        np.float32))
    assert ds.zbar[1, 1, 0] == pytest.approx(src.zbar)
    np.testing.assert_allclose(ds.energy_edges_ev, grid.edges_from_centers_ev(src.energy_ev))
    assert ds.provenance["n_files"] == 7
    assert ds.provenance["directory"] == str((tmp_path / "spec").resolve())
    # And it survives the canonical file.
    io.save_dataset(ds, tmp_path / "spec.h5")
    assert_datasets_equal(ds, io.load_dataset(tmp_path / "spec.h5"))


def test_spectrum_directory_energy_mismatch(tmp_path):
    d = tmp_path / "spec"
    _write_grid(d)
    energy = np.geomspace(0.1, 10.0, 7)
    energy[3] *= 1.01
    io.write_spectrum_table(d / "Z92_T1.0_rho1e-08.txt", _table(92, 1.0, 1e-8, energy=energy,
                                                                 zbar=4.0))
    with pytest.raises(DataFormatError) as ei:
        io.read_spectrum_directory(d)
    msg = str(ei.value)
    assert "Z92_T1.0_rho1e-08.txt" in msg and "Z60_T0.5_rho1e-08.txt" in msg, msg
    assert "index 3" in msg and ei.value.field == "energy_ev"


def test_spectrum_directory_duplicate_node(tmp_path):
    d = tmp_path / "spec"
    _write_grid(d)
    io.write_spectrum_table(d / "copy.txt", _table(60, 0.5, 1e-8 * (1 + 1e-8), zbar=1.0))
    with pytest.raises(DataFormatError) as ei:
        io.read_spectrum_directory(d)
    msg = str(ei.value)
    assert "copy.txt" in msg and "Z60_T0.5_rho1e-08.txt" in msg and ei.value.field == "node"


def test_spectrum_directory_mixed_zbar(tmp_path):
    d = tmp_path / "spec"
    _write_grid(d)
    io.write_spectrum_table(d / "Z92_T1.0_rho1e-08.txt", _table(92, 1.0, 1e-8, zbar=None))
    with pytest.raises(DataFormatError) as ei:
        io.read_spectrum_directory(d)
    assert_error(ei, d / "Z92_T1.0_rho1e-08.txt", field="zbar")
    ds = io.read_spectrum_directory(d, mixed_zbar="drop")
    assert ds.zbar is None and "zbar" in ds.provenance["note"]


def test_spectrum_directory_no_zbar_and_empty(tmp_path):
    _write_grid(tmp_path / "spec", zbar=False)
    assert io.read_spectrum_directory(tmp_path / "spec").zbar is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        io.read_spectrum_directory(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        io.read_spectrum_directory(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# JLODK tables
# ---------------------------------------------------------------------------------------------

def make_jlodk(seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, 3, 3, 4)
    bb = 10.0 ** rng.uniform(-6, 2, shape)
    es = 10.0 ** rng.uniform(-10, -1, shape)
    es[:, :, :, 0] = 0.0  # exact zeros are legal
    bb[0, 1, 2, 3] = 0.0
    return io.JlodkTable(ye=[0.15, 0.25], time_days=[0.5, 1.0, 7.0],
                         log10_rho=[-19.5, -19.0, -18.5], temperature_k=[1000, 1500, 2000, 2500],
                         kappa_bb=bb, kappa_es=es, kappa_total=bb + es)


def assert_jlodk_close(a, b, rtol=1e-9):
    for name in ("ye", "time_days", "log10_rho", "temperature_k"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("kappa_bb", "kappa_es", "kappa_total"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol, atol=0,
                                   err_msg=name)


def test_jlodk_synthetic_roundtrip(tmp_path):
    table = make_jlodk()
    written = io.write_jlodk(table, tmp_path / "jl")
    assert len(written) == 6
    assert written[0] == tmp_path / "jl" / "Ye0.15" / "Planck_Mean_Opacity_Ye0.15_Time0.5.txt"
    back = io.read_jlodk(tmp_path / "jl")
    assert_jlodk_close(table, back)
    assert np.all(back.kappa_es[..., 0] == 0.0)
    assert back.source[1][2].endswith("Planck_Mean_Opacity_Ye0.25_Time7.0.txt")
    assert leftovers(tmp_path / "jl" / "Ye0.15") == []


def _jlodk_file(root, ye="0.15", t="1.0"):
    return root / f"Ye{ye}" / f"Planck_Mean_Opacity_Ye{ye}_Time{t}.txt"


def _replace_data_line(path, data_index, new_line):
    lines = path.read_text().split("\n")
    lines[6 + data_index] = new_line  # 6 header lines in written files
    path.write_text("\n".join(lines))
    return 7 + data_index  # 1-based line number


@pytest.mark.parametrize("new_line, field", [
    ("     -19.5               1000.0      1.0E+00", "es"),
    ("     -19.5               1000.0      1.0E+00      2.0E+00      3.0E+00    4.0", "column 6"),
    ("     -19.5               1000.0      x.0E+00      2.0E+00      3.0E+00", "bb"),
    ("     -19.5               1000.0      nan      2.0E+00      3.0E+00", "bb"),
    ("     -19.5               1000.0      1.0E+00      inf      3.0E+00", "es"),
    ("     -19.5               1000.0      1.0E+00      -2.0E+00      -1.0E+00", "es"),
    ("     -19.5               1000.0      1.0E+00      2.0E+00      3.1E+00", "total"),
    ("     -19.5               1100.0      1.0E+00      2.0E+00      3.0E+00", "temperature_k"),
    ("     -19.0               1000.0      1.0E+00      2.0E+00      3.0E+00", "log10_rho"),
])
def test_jlodk_bad_inputs(tmp_path, new_line, field):
    root = tmp_path / "jl"
    io.write_jlodk(make_jlodk(), root)
    # The file read second, so grid errors are reported against the first one.
    path = _jlodk_file(root, "0.15", "1.0")
    line = _replace_data_line(path, 0, new_line)
    with pytest.raises(DataFormatError) as ei:
        io.read_jlodk(root)
    assert_error(ei, path, line=line, field=field)
    if field in ("temperature_k", "log10_rho"):
        assert "Planck_Mean_Opacity_Ye0.15_Time0.5.txt" in str(ei.value)


def test_jlodk_total_mismatch_reports_worst(tmp_path):
    root = tmp_path / "jl"
    io.write_jlodk(make_jlodk(), root)
    path = _jlodk_file(root)
    _replace_data_line(path, 1, "     -19.5               1500.0      1.0E+00      1.0E+00      "
                                "2.00001E+00")
    worst = _replace_data_line(path, 5, "     -19.0               1500.0      1.0E+00      "
                                        "1.0E+00      2.5E+00")
    with pytest.raises(DataFormatError) as ei:
        io.read_jlodk(root)
    assert_error(ei, path, line=worst, field="total")
    assert "2 row(s)" in str(ei.value) and "worst" in str(ei.value)


def test_jlodk_first_file_bad_grid(tmp_path):
    root = tmp_path / "jl"
    io.write_jlodk(make_jlodk(), root)
    path = _jlodk_file(root, "0.15", "0.5")
    # Temperatures of the second density block out of step with the first.
    line = _replace_data_line(path, 5, "     -19.0               1600.0      1.0E+00      "
                                       "1.0E+00      2.0E+00")
    with pytest.raises(DataFormatError) as ei:
        io.read_jlodk(root)
    assert_error(ei, path, line=line, field="temperature_k")


def test_jlodk_allow_nan(tmp_path):
    table = make_jlodk()
    for name in ("kappa_bb", "kappa_es", "kappa_total"):
        getattr(table, name)[1, 2, 0, 1] = np.nan
    table.kappa_total[0, 0, 1, 1] = np.nan
    root = tmp_path / "jl"
    io.write_jlodk(table, root)
    with pytest.raises(DataFormatError) as ei:
        io.read_jlodk(root)
    assert ei.value.field == "total" and "nan" in str(ei.value)
    back = io.read_jlodk(root, allow_nan=True)
    assert_jlodk_close(table, back)
    assert np.isnan(back.kappa_total[0, 0, 1, 1]) and np.isnan(back.kappa_bb[1, 2, 0, 1])
    assert np.isfinite(back.kappa_bb[0, 0, 1, 1])


def test_jlodk_missing_combinations(tmp_path):
    root = tmp_path / "jl"
    io.write_jlodk(make_jlodk(), root)
    os.remove(_jlodk_file(root, "0.25", "7.0"))
    os.remove(_jlodk_file(root, "0.15", "0.5"))
    with pytest.raises(DataFormatError) as ei:
        io.read_jlodk(root)
    msg = str(ei.value)
    assert "missing 2 of 6" in msg and "Ye=0.25 t=7d" in msg and "Ye=0.15 t=0.5d" in msg
    assert ei.value.field == "files"
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        io.read_jlodk(tmp_path / "no_such_root")


def test_jlodk_header_contradicts_name(tmp_path):
    root = tmp_path / "jl"
    io.write_jlodk(make_jlodk(), root)
    path = _jlodk_file(root)
    path.write_text(path.read_text().replace("time = 1.0day", "time = 2.0day"))
    with pytest.raises(DataFormatError) as ei:
        io.read_jlodk(root)
    assert_error(ei, path, line=1, field="time")


def test_jlodk_write_rejects_inconsistent_total(tmp_path):
    table = make_jlodk()
    table.kappa_total[0, 0, 0, 0] *= 1.01
    with pytest.raises(ValueError, match="worst"):
        io.write_jlodk(table, tmp_path / "jl")


@pytest.fixture(scope="module")
def jlodk_real():
    if not JLODK_ROOT.is_dir():
        pytest.skip(f"reference data not found at {JLODK_ROOT} (the shared/data folder beside "
                    "the repository is only present on the project's machines)")
    return io.read_jlodk(JLODK_ROOT)


def test_jlodk_real_table(jlodk_real):
    t = jlodk_real
    assert t.shape == (4, 21, 30, 50)
    assert t.kappa_bb.shape == t.kappa_es.shape == t.kappa_total.shape == (4, 21, 30, 50)
    np.testing.assert_allclose(t.log10_rho, np.arange(-19.5, -4.99, 0.5), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(t.temperature_k, np.arange(1000.0, 25501.0, 500.0))
    np.testing.assert_allclose(t.ye, [0.1, 0.2, 0.3, 0.4], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(t.time_days, [0.5] + list(np.arange(1.0, 21.0)))
    np.testing.assert_allclose(t.kappa_total, t.kappa_bb + t.kappa_es, rtol=1e-8, atol=0)
    assert np.any(t.kappa_es == 0.0)
    assert np.all(t.kappa_bb >= 0) and np.all(np.isfinite(t.kappa_total))
    assert t.kappa_total.max() / t.kappa_total[t.kappa_total > 0].min() > 1e6  # many decades
    assert Path(t.source[3][20]).name == "Planck_Mean_Opacity_Ye0.40_Time20.0.txt"


def test_jlodk_real_roundtrip_subset(jlodk_real, tmp_path):
    t = jlodk_real
    sub = io.JlodkTable(ye=t.ye[1:3], time_days=t.time_days[[0, 5, 20]],
                        log10_rho=t.log10_rho[::3], temperature_k=t.temperature_k[10:30],
                        kappa_bb=t.kappa_bb[1:3][:, [0, 5, 20]][:, :, ::3, 10:30],
                        kappa_es=t.kappa_es[1:3][:, [0, 5, 20]][:, :, ::3, 10:30],
                        kappa_total=t.kappa_total[1:3][:, [0, 5, 20]][:, :, ::3, 10:30])
    written = io.write_jlodk(sub, tmp_path / "jl", newline="\r\n")
    assert written[0].name == "Planck_Mean_Opacity_Ye0.20_Time0.5.txt"
    first = written[0].read_bytes().split(b"\r\n")
    assert first[0] == b"# Ye = 0.20,  time = 0.5day"
    assert first[6].split()[:2] == [b"-19.5", b"6000.0"]
    back = io.read_jlodk(tmp_path / "jl")
    assert_jlodk_close(sub, back, rtol=1e-7)
    # The published values have <= 10 significant digits, so the round trip is exact.
    np.testing.assert_array_equal(back.kappa_es, sub.kappa_es)
    np.testing.assert_array_equal(back.kappa_total, sub.kappa_total)
