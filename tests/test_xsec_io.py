"""Tests for the per-level cross-section tables (data.xsec_io) and the xsec table files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opacity_jax.data import xsec_generator as xg
from opacity_jax.data.xsec_io import XsecTable, read_xsec_table, write_xsec_table
from opacity_jax.errors import DataFormatError
from opacity_jax.physics import constants


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


GOOD = """# molecule = H2+
# v = 2, J = 3
# E_vJ = -0.07 hartree
wavelength [nm], sigma [cm^2]
80.0, 1.0e-19
100.0, 5.5e-18
120.0, 2.0e-18
"""


def write(tmp_path, text, name="t.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_good_table(tmp_path):
    t = read_xsec_table(write(tmp_path, GOOD))
    assert (t.molecule, t.v, t.J) == ("H2+", 2, 3)
    assert t.energy_hartree == -0.07
    assert np.array_equal(t.wavelength_nm, [80.0, 100.0, 120.0])
    assert np.array_equal(t.sigma_cm2, [1e-19, 5.5e-18, 2e-18])
    assert t.source.endswith("t.txt")


def test_units_and_order(tmp_path):
    text = ("# molecule: Na2+\n# v = 0\n# J = 1\n# E_vJ [eV] = -0.95\n"
            "# wavelength unit = angstrom; sigma unit = m^2\n"
            "3000 2e-22\n2500 3e-22\n2000 1e-22\n")
    t = read_xsec_table(write(tmp_path, text))
    assert np.allclose(t.wavelength_nm, [200.0, 250.0, 300.0])     # decreasing rows -> sorted
    assert np.allclose(t.sigma_cm2, [1e-18, 3e-18, 2e-18])
    assert t.energy_hartree == pytest.approx(-0.95 / constants.HARTREE_EV)
    # Units may also come from the column names; energies in cm^-1.
    text = ("# molecule = HeH+\n# v = 1\n# J = 0\n# E_vJ = -15000 cm^-1\n"
            "wavelength_um,sigma_cm2\n0.05,1e-18\n0.06,2e-18\n")
    t = read_xsec_table(write(tmp_path, text, "b.csv"))
    assert np.allclose(t.wavelength_nm, [50.0, 60.0])
    assert t.energy_hartree == pytest.approx(-15000 / constants.HARTREE_CM1)


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    lam = np.sort(rng.uniform(50, 500, 40))
    sig = 10 ** rng.uniform(-25, -16, 40)
    sig[3] = 0.0
    t = XsecTable("Li2+", 12, 7, lam, sig, energy_hartree=-0.0123456789012345)
    p = write_xsec_table(tmp_path / "x.txt", t)
    back = read_xsec_table(p)
    assert np.array_equal(back.wavelength_nm, lam) and np.array_equal(back.sigma_cm2, sig)
    assert back.energy_hartree == t.energy_hartree
    assert (back.molecule, back.v, back.J) == ("Li2+", 12, 7)
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]


def test_writer_refuses_unreadable_tables(tmp_path):
    lam = np.array([1.0, 2.0, 3.0])
    for bad in (XsecTable("H2+", 0, 0, lam, np.array([1.0, -1.0, 1.0])),
                XsecTable("H2+", 0, 0, lam, np.array([1.0, np.nan, 1.0])),
                XsecTable("H2+", 0, 0, lam[::-1], np.ones(3)),
                XsecTable("H2+", 0, 0, lam[:1], np.ones(1)),
                XsecTable("", 0, 0, lam, np.ones(3))):
        with pytest.raises(ValueError):
            write_xsec_table(tmp_path / "bad.txt", bad)
    assert not (tmp_path / "bad.txt").exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_xsec_table(tmp_path / "nope.txt")


HEAD = "# molecule = H2+\n# v = 0\n# J = 0\n"


@pytest.mark.parametrize("body,line,field", [
    ("80 1e-18\n90 2e-18 7\n", 5, "column 3"),          # too many columns
    ("80 1e-18\n90\n", 5, "sigma"),                    # too few
    ("80 1e-18\n9O 2e-18\n", 5, "wavelength"),         # non-numeric (letter O)
    ("80 1e-18\n90 abc\n", 5, "sigma"),
    ("80 1e-18\n90 nan\n", 5, "sigma"),
    ("80 1e-18\ninf 2e-18\n", 5, "wavelength"),
    ("80 1e-18\n90 -2e-18\n", 5, "sigma"),             # negative sigma
    ("80 1e-18\n90 2e-18\n85 1e-18\n", 6, "wavelength"),  # non-monotonic
    ("80 1e-18\n80 2e-18\n", 5, "wavelength"),         # repeated
    ("-80 1e-18\n90 2e-18\n", 4, "wavelength"),        # non-positive
    ("80 1e-18\n", 4, "wavelength"),                   # one row
])
def test_bad_rows(tmp_path, body, line, field):
    p = write(tmp_path, HEAD + body)
    with pytest.raises(DataFormatError) as e:
        read_xsec_table(p)
    assert_error(e, p, line, field)


@pytest.mark.parametrize("head,line,field", [
    ("# v = 0\n# J = 0\n", 3, "molecule"),
    ("# molecule = H2+\n# J = 0\n", 3, "v"),
    ("# molecule = H2+\n# v = 0\n", 3, "J"),
    ("# molecule = H2+\n# v = 1.5\n# J = 0\n", 2, "v"),
    ("# molecule = H2+\n# v = 0\n# J = -1\n", 3, "J"),
    ("# molecule = H2+\n# v = 0\n# v = 1\n# J = 0\n", 3, "v"),
    (HEAD + "# wavelength unit = furlong\n", 4, "wavelength_unit"),
    (HEAD + "# sigma unit = barn\n", 4, "sigma_unit"),
    (HEAD + "# E_vJ = -1 kcal\n", 4, "E_vJ"),
    (HEAD + "# E_vJ = minus one\n", 4, "E_vJ"),
    (HEAD + "wavelength [parsec], sigma [cm^2]\n", 4, "wavelength_unit"),
    (HEAD + "# wavelength unit = nm\nwavelength [angstrom], sigma [cm^2]\n", 5,
     "wavelength_unit"),
])
def test_bad_headers(tmp_path, head, line, field):
    p = write(tmp_path, head + "80 1e-18\n90 2e-18\n")
    with pytest.raises(DataFormatError) as e:
        read_xsec_table(p)
    assert_error(e, p, line, field)


def test_not_utf8(tmp_path):
    p = tmp_path / "bin.txt"
    p.write_bytes(HEAD.encode() + b"80 1e-18\n\xff\xfe 2\n")
    with pytest.raises(DataFormatError) as e:
        read_xsec_table(p)
    assert_error(e, p, 5, "encoding")


# ---------------------------------------------------------------------------------------------
# Whole-table files (data.xsec_generator)
# ---------------------------------------------------------------------------------------------

def small_frame():
    return pd.DataFrame({
        "molecule": ["H2+"] * 3 + ["HeH+"] * 3,
        "v": np.array([0, 0, 0, 1, 1, 1], dtype=np.int32),
        "J": np.array([0, 0, 0, 2, 2, 2], dtype=np.int32),
        "E_vJ_hartree": [-0.097] * 3 + [-0.05] * 3,
        "wavelength_nm": [80.0, 100.0, 120.0, 40.0, 50.0, 60.0],
        "sigma_cm2": [1e-19, 7e-18, 2e-18, 0.0, 3e-18, 1e-18],
    })


def test_table_file_bad_inputs(tmp_path):
    df = small_frame()
    p = xg.save_xsec_table(df, tmp_path / "t.csv")
    text = p.read_text().splitlines()
    assert text[0] == ",".join(xg.XSEC_COLUMNS)
    q = tmp_path / "neg.csv"
    q.write_text(text[0] + "\nH2+,0,0,-0.097,80,1e-19\nH2+,0,0,-0.097,100,-7e-18\n")
    with pytest.raises(DataFormatError) as e:
        xg.load_xsec_table(q)
    assert_error(e, q, 3, "sigma_cm2")
    q.write_text(text[0] + "\n" + "H2+,0,0,-0.097,abc,1e-18\n")
    with pytest.raises(DataFormatError) as e:
        xg.load_xsec_table(q)
    assert_error(e, q, 2, "wavelength_nm")
    q.write_text("molecule,v,J,E_vJ_hartree,sigma_cm2\nH2+,0,0,-0.1,1e-18\n")
    with pytest.raises(DataFormatError) as e:
        xg.load_xsec_table(q)
    assert_error(e, q, 1, "wavelength_nm")
    q.write_text(text[0] + "\n" + "H2+,0,0,-0.097,100,inf\n")
    with pytest.raises(DataFormatError) as e:
        xg.load_xsec_table(q)
    assert_error(e, q, 2, "sigma_cm2")
    with pytest.raises(FileNotFoundError):
        xg.load_xsec_table(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError) as e:
        xg.load_xsec_table(junk)
    assert_error(e, junk, field="format")
    bad_df = df.copy()
    bad_df.loc[2, "sigma_cm2"] = -1.0
    with pytest.raises(ValueError):
        xg.save_xsec_table(bad_df, tmp_path / "x.h5")
    with pytest.raises(ValueError):
        xg.save_xsec_table(df, tmp_path / "x.parquet")
    assert not (tmp_path / "x.h5").exists()


def test_xsec_arrays_needs_full_grid():
    df = small_frame()
    arrays = xg.xsec_arrays(df)
    assert arrays["H2+"]["sigma_cm2"].shape == (1, 3)
    second = df.iloc[:3].assign(v=np.int32(1), E_vJ_hartree=-0.08)
    two = pd.concat([df.iloc[:3], second], ignore_index=True)
    assert xg.xsec_arrays(two)["H2+"]["sigma_cm2"].shape == (2, 3)
    with pytest.raises(ValueError):
        xg.xsec_arrays(two.drop(index=4))
