"""A corpus of bad inputs and the outcome of each: every one must be a clear error.

    python3 tests/bad_inputs.py --out=reports/reliability/corpus.md     # trains a tiny workdir

builds the corpus under a temporary folder (bad text tables, spectrum tables, HDF5 files,
model.json files, truncated checkpoints, bad flags and config values, bad queries), runs every
case and writes the table of cases by outcome. tests/test_bad_inputs.py runs the same corpus on
the test session's tiny workdir and requires 100 % clear errors.

Outcomes:
  clear   - a user error (`opacity_jax.cli.USER_ERRORS`) with a one-line message that names the
            thing (file / line / field / flag) and, where the case lists them, the allowed
            values; nothing left behind (no config.json, no empty output folder);
  correct - a case whose correct behaviour is to work (e.g. `--element=60`, a Z) and did;
  unclear - a user error whose message misses the thing, spans lines, or left debris;
  silent  - no error;
  crash   - any other exception (a traceback for the user).
Most cases call the library functions bin/ scripts call (cheap, in-process); a few run the bin/
scripts as subprocesses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclasses.dataclass
class Case:
    """One bad input: `run()` must raise a clear error naming every string of `expect`
    (case-insensitive), unless `accept` (then it must succeed). `debris()` lists paths a failed
    run must not leave behind."""
    kind: str
    name: str
    run: Callable[[], object]
    expect: Sequence[str] = ()
    accept: bool = False
    debris: Callable[[], List[Path]] = lambda: []


def outcome(case: Case):
    """(outcome, message) of running `case` (see module docstring)."""
    from opacity_jax import cli
    try:
        case.run()
    except cli.USER_ERRORS as e:
        msg = str(e)
    except SystemExit as e:           # bin/ scripts run as subprocesses report this way
        msg = str(e.code)
        if e.code in (0, None):
            return ("correct" if case.accept else "silent"), ""
    except Exception as e:            # noqa: BLE001 - the point is to catch everything
        return "crash", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    else:
        return ("correct" if case.accept else "silent"), ""
    if case.accept:
        return "crash", msg[:200]
    left = [str(p) for p in case.debris() if p.exists()]
    ok = ("\n" not in msg.strip() and all(x.lower() in msg.lower() for x in case.expect)
          and not left)
    return ("clear" if ok else "unclear"), (msg.strip() + (f" [debris: {left}]" if left else ""))


# ------------------------------------------------------------------------------ fixtures
def tiny_dataset(path: Path) -> Path:
    """A small valid HDF5 dataset (Nd, 32 bins, 6 T x 6 rho) of smooth synthetic spectra
    (made without the generator: the corpus needs a valid file, not physics)."""
    from opacity_jax.data import grid, h5file
    from opacity_jax.data.dataset import Dataset
    t, rho = grid.temperatures_ev()[8:14], grid.densities_gcc()[::3][:6]
    edges = grid.energy_edges_ev(32, 1.0, 1e4)
    e = np.sqrt(edges[1:] * edges[:-1])
    kappa = (1e3 * e[None, None, :] ** -1.5 * t[:, None, None] * (rho[None, :, None] / 1e-13)
             ** 0.1)[None].astype(np.float32)
    ds = Dataset(np.asarray([60], np.int32), t, rho, edges, kappa, {}, None, None,
                 np.ones(kappa.shape[:3], bool), {"source": "synthetic corpus fixture"})
    return h5file.save_dataset(ds, path)


def tiny_workdir(root: Path) -> Path:
    """A tiny trained CAE workdir (both latent regressors) for the standalone command."""
    from configs import cae as cae_config
    from opacity_jax.train import experiment
    cfg = cae_config.get_config()
    cfg.data.path = str(tiny_dataset(root / "tiny_train.h5"))
    cfg.data.elements, cfg.data.n_energy = "", 32
    cfg.cae.channels, cfg.cae.latent_dim, cfg.latent.mlp_hidden = (8, 16), 4, (8,)
    for sec, n in ((cfg.train, 3), (cfg.latent.mlp_train, 4), (cfg.latent.finetune_train, 2)):
        sec.epochs, sec.batch_size, sec.max_seconds = n, 16, 0.0
    cfg.latent.xgb.n_estimators, cfg.latent.xgb.early_stopping_rounds = 8, 4
    experiment.run(cfg, root / "tiny_run", progress=False)
    return root / "tiny_run"


def _bin(name, *args):
    out = subprocess.run([sys.executable, str(ROOT / "bin" / name), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        err = out.stderr.strip()
        # A one-line "bin/x: message" is the clear form; anything else is reported as is.
        raise SystemExit(err if err else f"exit status {out.returncode}")
    return out.stdout


# ---------------------------------------------------------------------------------- cases
def text_table_cases(root: Path) -> List[Case]:
    """bin/complete inputs: text tables, masks, flags (completion.run / read_table)."""
    from ml_collections import ConfigDict

    from configs import complete as complete_config
    from opacity_jax.experiments import completion
    d = root / "tables"
    d.mkdir()
    good = ["# log10_rho  T  kappa"] + [f"{r:.1f} {t:.1f} {(13.0 + r) * t:.4f}"
                                        for r in (-12.0, -11.0, -10.0)
                                        for t in (1000.0, 2000.0, 3000.0)]
    hole = list(good)
    hole[5] = hole[5].rsplit(" ", 1)[0] + " nan"
    files = {
        "binary file (random bytes)": bytes(range(256)) * 4,
        "binary file with NUL bytes": b"# a b c\n1 2 3\n\0\0\0\n",
        "empty file": b"",
        "header only": b"# log10_rho T kappa\n",
        "non-numeric value in a data row": "\n".join(good[:4] + ["-11.0 2000.0 abc"]).encode(),
        "row with a missing column": "\n".join(good[:4] + ["-11.0 2000.0"]).encode(),
        "header names 2 columns, rows have 3": "\n".join(["# T kappa"] + good[1:]).encode(),
        "NaN coordinate": "\n".join(good[:3] + ["nan 2000.0 1.0"]).encode(),
        "infinite opacity": "\n".join(good[:3] + ["-11.0 2000.0 1e999"]).encode(),
        "negative opacity": "\n".join(good[:3] + ["-11.0 2000.0 -1.0"]).encode(),
        "duplicate grid point": "\n".join(good + [good[1]]).encode(),
        "coordinate off by 1e-9": "\n".join(good[:6] + ["-11.000000011 3000.0 nan"]).encode(),
        "single column": b"# kappa\n1.0\n2.0\n",
        "latin-1 text": "# log10_rho T kappa \xe9\n1 2 3\n".encode("latin-1"),
        "no missing entries": "\n".join(good).encode(),
        "small valid table (8 known entries)": ("\n".join(hole) + "\n").encode(),
    }
    expects = {"binary file (random bytes)": ["not UTF-8"],
               "binary file with NUL bytes": ["NUL"],
               "non-numeric value in a data row": ["line 5", "abc"],
               "row with a missing column": ["line 5", "columns"],
               "header names 2 columns, rows have 3": ["header"],
               "NaN coordinate": ["line 4", "log10_rho"],
               "infinite opacity": ["line 4", "kappa"],
               "negative opacity": ["line 4", "kappa"],
               "duplicate grid point": ["line 11", "duplicate"],
               "coordinate off by 1e-9": ["log10_rho", "line 7"],
               "no missing entries": ["nothing to complete"],
               "small valid table (8 known entries)": ["8 known entries", "at least"]}
    cfg = complete_config.get_config("tiny") if _has_preset("tiny") else \
        complete_config.get_config()
    cases = []
    for i, (name, data) in enumerate(files.items()):
        f = d / f"t{i}.txt"
        f.write_bytes(data)
        out = d / f"out{i}"
        cases.append(Case("text table (bin/complete)", name,
                          lambda f=f, out=out: completion.run(cfg, str(f), str(out)),
                          [f.name] + expects.get(name, []), debris=lambda out=out: [out]))
    holes = d / "holes.txt"
    holes.write_text("\n".join(hole) + "\n")
    out = d / "out_flags"
    m_shape, m_float, m_text = d / "shape.npy", d / "float.npy", d / "text.npy"
    np.save(m_shape, np.zeros((2, 2), bool))
    np.save(m_float, np.full((3, 3), 0.5))
    m_text.write_text("not a numpy file")
    vc = ConfigDict(cfg.to_dict())
    vc.table.value_columns = "bogus"
    flag_cases = [
        ("--input does not exist", lambda: completion.run(cfg, str(d / "missing.txt"), str(out)),
         ["missing.txt"]),
        ("--input: an empty folder (no JLODK Ye*/ folders)",
         lambda: (d / "empty_dir").mkdir(exist_ok=True) or completion.run(
             cfg, str(d / "empty_dir"), str(out)), ["empty_dir"]),
        ("--mask of the wrong shape", lambda: completion.run(cfg, str(holes), str(out),
                                                             str(m_shape)), ["mask", "shape"]),
        ("--mask holding 0.5", lambda: completion.run(cfg, str(holes), str(out), str(m_float)),
         ["mask", "boolean"]),
        ("--mask not a .npy file", lambda: completion.run(cfg, str(holes), str(out),
                                                          str(m_text)), ["text.npy"]),
        ("--mask missing", lambda: completion.run(cfg, str(holes), str(out),
                                                  str(d / "nomask.npy")), ["nomask.npy"]),
        ("--evaluate=bogus", lambda: completion.run(cfg, str(holes), str(out), None, ["bogus"]),
         ["--evaluate", "bogus", "random20"]),
        ("--output is an existing file", lambda: completion.run(cfg, str(holes), str(holes)),
         ["--output", "not a folder"]),
        ("--output in a missing folder", lambda: completion.run(
            cfg, str(holes), str(d / "nope" / "out")), ["--output", "does not exist"]),
        ("table.value_columns=bogus", lambda: completion.run(vc, str(holes), str(out)),
         ["bogus", "header"]),
    ]
    for name, fn, exp in flag_cases:
        cases.append(Case("bin/complete flags", name, fn, exp, debris=lambda: [out]))
    return cases


def _has_preset(name):
    from configs import complete as complete_config
    try:
        complete_config.get_config(name)
        return True
    except ValueError:
        return False


def spectrum_table_cases(root: Path) -> List[Case]:
    """Per-spectrum text tables (data.spectrum_tables.read_spectrum_table)."""
    from opacity_jax.data import spectrum_tables as st
    d = root / "spectra"
    d.mkdir()
    head = "# Z = 60\n# T = 0.5 eV\n# rho = 1e-13 g/cm3\n"
    rows = "1.0 6.0 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n"
    files = {
        "total != bb + bf + ff + es": (head + "1.0 9.0 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                                       ["line 4", "total"]),
        "missing Z": ("# T = 0.5 eV\n# rho = 1e-13\n" + rows, ["'Z'"]),
        "missing T": ("# Z = 60\n# rho = 1e-13\n" + rows, ["'T'"]),
        "unknown temperature unit": (head.replace("eV", "furlong") + rows, ["furlong"]),
        "negative temperature": (head.replace("0.5 eV", "-0.5 eV") + rows, ["line 2", "T"]),
        "5 columns": (head + "1.0 6.0 1.0 2.0 2.0\n2.0 3.0 1.0 1.0 0.5\n", ["line 4"]),
        "energies not increasing": (head + "2.0 3.0 1.0 1.0 0.5 0.5\n1.0 6.0 1.0 2.0 2.0 1.0\n",
                                    ["line 5", "energy"]),
        "one data row": (head + "1.0 6.0 1.0 2.0 2.0 1.0\n", ["at least 2"]),
        "Z contradicts element": ("# Z = 60\n# element = U\n# T = 0.5\n# rho = 1e-13\n" + rows,
                                  ["element"]),
        "non-numeric opacity": (head + "1.0 x 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                                ["line 4", "'x'"]),
        "NaN opacity": (head + "1.0 nan 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                        ["line 4"]),
        "negative component": (head + "1.0 4.0 -1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                               ["line 4", "negative"]),
        "T given twice": (head + "# T = 0.7 eV\n" + rows, ["twice"]),
    }
    cases = []
    for i, (name, (text, exp)) in enumerate(files.items()):
        f = d / f"s{i}.txt"
        f.write_text(text)
        cases.append(Case("spectrum table", name, lambda f=f: st.read_spectrum_table(f),
                          [f.name] + exp))
    b = d / "binary.txt"
    b.write_bytes(bytes(range(256)))
    cases.append(Case("spectrum table", "binary file", lambda: st.read_spectrum_table(b),
                      [b.name, "UTF-8"]))
    return cases


def hdf5_cases(root: Path, good: Path) -> List[Case]:
    """Canonical HDF5 dataset files (h5file.load_dataset; bin/train's data.path)."""
    import h5py

    from configs import cae as cae_config
    from opacity_jax.data import h5file
    from opacity_jax.train import experiment
    d = root / "h5"
    d.mkdir()
    raw = good.read_bytes()
    variants = {}

    def variant(name, data=None, edit=None):
        f = d / f"h{len(variants)}.h5"
        if data is not None:
            f.write_bytes(data)
        else:
            shutil.copy(good, f)
            with h5py.File(f, "r+") as h:
                edit(h)
        variants[name] = f
        return f

    variant("empty file", b"")
    variant("truncated to half", raw[: len(raw) // 2])
    variant("text file named .h5", b"not an hdf5 file\n")
    # Flip bytes inside the (compressed) kappa chunks: the header still opens.
    with h5py.File(good, "r") as h:
        off = h["kappa"].id.get_offset() if h["kappa"].chunks is None else \
            h["kappa"].id.get_chunk_info(0).byte_offset
    bad = bytearray(raw)
    for k in range(64):
        bad[off + 16 + k] ^= 0xFF
    variant("corrupt kappa chunk", bytes(bad))
    variant("no format attribute", edit=lambda h: h.attrs.__delitem__("format"))
    variant("format_version 99", edit=lambda h: h.attrs.__setitem__("format_version", 99))
    variant("unknown kappa unit", edit=lambda h: h.attrs.__setitem__(
        "units", json.dumps(dict(h5file.UNITS, kappa="furlong"))))
    variant("missing kappa", edit=lambda h: h.__delitem__("kappa"))

    def reshape_t(h):
        t = h["temperature_ev"][()]
        del h["temperature_ev"]
        h["temperature_ev"] = t[:-1]
    variant("temperature axis one node short", edit=reshape_t)

    def nan_kappa(h):
        k = h["kappa"][()]
        k[0, 1, 2, 3] = np.nan
        h["kappa"][...] = k
    variant("NaN in kappa", edit=nan_kappa)

    def neg_kappa(h):
        k = h["kappa"][()]
        k[0, 0, 0, 0] = -1.0
        h["kappa"][...] = k
    variant("negative kappa", edit=neg_kappa)

    def int_kappa(h):
        k = h["kappa"][()]
        del h["kappa"]
        h["kappa"] = k.astype(np.int32)
    variant("integer kappa", edit=int_kappa)
    variant("provenance not JSON", edit=lambda h: h.attrs.__setitem__("provenance", "{oops"))
    expects = {"corrupt kappa chunk": ["corrupt"], "missing kappa": ["kappa"],
               "NaN in kappa": ["kappa", "index"], "negative kappa": ["kappa"],
               "temperature axis one node short": ["shape"], "format_version 99": ["99"],
               "unknown kappa unit": ["furlong"], "provenance not JSON": ["provenance"]}
    cases = [Case("HDF5 dataset", name, lambda f=f: h5file.load_dataset(f),
                  [f.name] + expects.get(name, [])) for name, f in variants.items()]
    # The same through bin/train's data loading (the config names the file).
    for name in ("corrupt kappa chunk", "truncated to half", "NaN in kappa"):
        cfg = cae_config.get_config()
        cfg.data.path, cfg.data.elements, cfg.data.n_energy = str(variants[name]), "", 32
        cases.append(Case("HDF5 dataset", f"{name} (via bin/train data loading)",
                          lambda cfg=cfg: experiment.load_data(cfg.data),
                          [variants[name].name] + expects.get(name, [])))
    cases.append(Case("HDF5 dataset", "element not in the file",
                      lambda: h5file.load_dataset(good, elements=[92]), ["92", good.name]))
    return cases


def model_json_cases(root: Path, workdir: Path) -> List[Case]:
    """Edited, truncated or mismatched model.json files (Surrogate.load)."""
    from opacity_jax.serve.surrogate import Surrogate
    base = json.loads((workdir / "model.json").read_text())
    cases = []

    def wd_with(name, text=None, edit=None, expect=(), load=lambda w: Surrogate.load(w)):
        w = root / f"mj{len(cases)}"
        # Hard links: only model.json is replaced (unlinked first), the rest is read-only here.
        shutil.copytree(workdir, w, copy_function=os.link)
        (w / "model.json").unlink()
        if edit is not None:
            m = json.loads(json.dumps(base))
            edit(m)
            text = json.dumps(m)
        if text is not None:
            (w / "model.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        cases.append(Case("model.json", name, lambda: load(w), expect))

    full = json.dumps(base)
    wd_with("truncated", full[: len(full) // 2], expect=["model.json", "invalid JSON"])
    wd_with("empty", "", expect=["model.json", "line 1"])
    wd_with("binary", bytes(range(256)), expect=["model.json", "UTF-8"])
    wd_with("a JSON list", "[1, 2]", expect=["model.json", "object"])
    wd_with("deleted", None, expect=["model.json", "not found"])

    def drop(*keys):
        def f(m):
            node = m
            for k in keys[:-1]:
                node = node[k]
            del node[keys[-1]]
        return f

    def setv(value, *keys):
        def f(m):
            node = m
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value
        return f
    wd_with("no 'model'", edit=drop("model"), expect=["model.json", "'model'"])
    wd_with("model = 'bogus'", edit=setv("bogus", "model"), expect=["model.json", "bogus"])
    wd_with("model = 42", edit=setv(42, "model"), expect=["'model'"])
    for key in (("elements",), ("domain",), ("energy_edges_ev",), ("scaling",),
                ("cae", "latent_dim"), ("latent", "z_mean"), ("latent", "z_std"),
                ("latent", "x_standardizer"), ("latent", "regressors")):
        wd_with(f"no '{'.'.join(key)}'", edit=drop(*key),
                expect=["model.json", ".".join(key)])
    served = list(base["elements"])
    other = served[::-1] if len(served) > 1 else [92 if served != [92] else 60]
    wd_with(f"elements {other} against the checkpoint's {served}",
            edit=setv(other, "elements"), expect=["model.json", "elements", "order"])
    wd_with("elements [60, 60]", edit=setv([60, 60], "elements"), expect=["elements"])
    wd_with("element Z = 200", edit=setv([200], "elements"), expect=["elements"])
    wd_with("domain widened in temperature", edit=lambda m: m["domain"].__setitem__(
        "temperature_ev", [m["domain"]["temperature_ev"][0], 100.0]),
        expect=["domain.temperature_ev", "training grid"])
    wd_with("domain widened in density", edit=lambda m: m["domain"].__setitem__(
        "density_gcc", [1e-30, m["domain"]["density_gcc"][1]]),
        expect=["domain.density_gcc"])
    wd_with("domain [hi, lo]", edit=lambda m: m["domain"].__setitem__(
        "temperature_ev", m["domain"]["temperature_ev"][::-1]),
        expect=["domain.temperature_ev"])
    wd_with("domain as a string", edit=setv("wide", "domain", "density_gcc"),
            expect=["domain.density_gcc"])
    wd_with("energy edges decreasing", edit=lambda m: m.__setitem__(
        "energy_edges_ev", m["energy_edges_ev"][::-1]), expect=["energy_edges_ev"])
    wd_with("stages not a mapping", edit=setv([1, 2], "stages"), expect=["stages"])
    wd_with("stage step of a checkpoint that does not exist",
            edit=setv(999, "stages", "cae", "step"), expect=["checkpoints/cae/999", "missing"])
    wd_with("stage digest of another run", edit=setv("0" * 64, "stages", "cae", "state_sha256"),
            expect=["checkpoints/cae", "another run"])
    wd_with("regressor listed but not trained", edit=setv(["mlp"], "latent", "regressors"),
            expect=["xgboost", "available"],
            load=lambda w: Surrogate.load(w, regressor="xgboost"))
    wd_with("ensemble asked, none trained", edit=lambda m: None,
            expect=["bin/train_ensemble"], load=lambda w: Surrogate.load(w, ensemble=True))
    return cases


def checkpoint_cases(root: Path, workdir: Path) -> List[Case]:
    """Truncated / corrupt checkpoints and boosters (inference refuses, naming the file)."""
    from opacity_jax.serve.surrogate import Surrogate
    from opacity_jax.train import workdir as wl
    meta = json.loads((workdir / "model.json").read_text())
    cases = []

    def broken(name, edit, expect, load=lambda w: Surrogate.load(w)):
        w = root / f"ck{len(cases)}"
        shutil.copytree(workdir, w)
        edit(w)
        cases.append(Case("checkpoint", name, lambda: load(w), expect))

    def data_files(folder: Path):
        return [f for f in sorted(folder.rglob("*")) if f.is_file() and f.stat().st_size > 64
                and "d" in f.parts[-2:-1]]

    def truncate(label, step=None, every=False):
        def f(w):
            steps = [step] if step else (
                [int(s.name) for s in wl.checkpoint_dir(w, label).iterdir() if s.name.isdigit()]
                if every else [meta["stages"][label]["step"]])
            for s in steps:
                for g in data_files(wl.checkpoint_dir(w, label) / str(s) / "state"):
                    g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
        return f

    def flip(label):
        def f(w):
            g = data_files(wl.checkpoint_dir(w, label) / str(meta["stages"][label]["step"]) /
                           "state")[0]
            b = bytearray(g.read_bytes())
            b[len(b) // 2] ^= 1
            g.write_bytes(bytes(b))
        return f
    cae_step = meta["stages"]["cae"]["step"]
    ft = "latent_mlp_finetune" if meta["latent"].get("mlp_finetuned") else "latent_mlp"
    broken("CAE checkpoint truncated", truncate("cae"), [f"checkpoints/cae/{cae_step}",
                                                         "re-run bin/train"])
    broken("every CAE checkpoint truncated", truncate("cae", every=True),
           ["checkpoints/cae/", "re-run bin/train"])
    broken("one flipped bit in the CAE state", flip("cae"), [f"checkpoints/cae/{cae_step}"])
    broken("one flipped bit in the latent-MLP state", flip(ft), [f"checkpoints/{ft}/"])
    broken("CAE checkpoint folder deleted",
           lambda w: shutil.rmtree(wl.checkpoint_dir(w, "cae")), ["checkpoints/cae"])
    broken("CAE checkpoint meta truncated", lambda w: [
        g.write_text(g.read_text()[:20]) for g in
        (wl.checkpoint_dir(w, "cae") / str(cae_step) / "meta").rglob("*") if g.is_file()],
        [f"checkpoints/cae/{cae_step}"])
    broken("XGBoost booster truncated", lambda w: [
        g.write_bytes(g.read_bytes()[:100]) for g in (w / "xgb").glob("*.ubj")],
        ["xgb", "re-run bin/train"], load=lambda w: Surrogate.load(w, regressor="xgboost"))
    broken("XGBoost index.json corrupt", lambda w: (w / "xgb" / "index.json").write_text("{"),
           ["xgb"], load=lambda w: Surrogate.load(w, regressor="xgboost"))
    broken("XGBoost folder deleted", lambda w: shutil.rmtree(w / "xgb"), ["xgb"],
           load=lambda w: Surrogate.load(w, regressor="xgboost"))
    return cases


def workdir_symbols(zs):
    """Element symbols of atomic numbers `zs`."""
    from opacity_jax.physics import elements as el
    return [el.SYMBOLS[el.element_index(int(z))] for z in zs]


def query_cases(workdir: Path) -> List[Case]:
    """Bad queries: bin/predict flags (its helpers and prediction_table) and the API."""
    from opacity_jax import cli
    from opacity_jax.serve import predict
    from opacity_jax.serve.surrogate import Surrogate
    s = Surrogate.load(workdir)
    z_out = next(z for z in (92, 58, 63, 96) if z not in s.elements.tolist())
    sym = str(workdir_symbols(s.elements)[0])
    (t0, t1), (r0, r1) = s.domain["temperature_ev"], s.domain["density_gcc"]
    t, r = float(np.sqrt(t0 * t1)), float(np.sqrt(r0 * r1))
    out_dir = workdir.parent / "predict_out"
    cases = [
        Case("bin/predict flags", "--element=60 (a Z, as --help says)",
             lambda: predict.prediction_table(workdir, str(s.elements[0]), [t], [r]),
             accept=True),
        Case("bin/predict flags", "--element=nd (lower case symbol)",
             lambda: predict.prediction_table(workdir, sym.lower(), [t], [r]), accept=True),
        Case("bin/predict flags", "--element=Xx", lambda: predict.prediction_table(
            workdir, "Xx", [t], [r]), ["'Xx'", "57-71"]),
        Case("bin/predict flags", "--element=Fe (not an f-element)",
             lambda: predict.prediction_table(workdir, "Fe", [t], [r]), ["'Fe'"]),
        Case("bin/predict flags", f"--element={z_out} (not served)",
             lambda: predict.prediction_table(workdir, str(z_out), [t], [r]),
             ["not served", sym]),
        Case("bin/predict flags", "--element=200", lambda: predict.prediction_table(
            workdir, "200", [t], [r]), ["200"]),
        Case("bin/predict flags", "--temperature_ev=abc",
             lambda: cli.numbers("temperature_ev", ["abc"]), ["--temperature_ev", "'abc'"]),
        Case("bin/predict flags", "--temperature_ev=nan",
             lambda: cli.numbers("temperature_ev", ["nan"]), ["--temperature_ev", "finite"]),
        Case("bin/predict flags", "--temperature_ev=-1",
             lambda: cli.numbers("temperature_ev", ["-1"]), ["--temperature_ev", "> 0"]),
        Case("bin/predict flags", "--temperature_ev=inf",
             lambda: cli.numbers("temperature_ev", ["inf"]), ["--temperature_ev"]),
        Case("bin/predict flags", "--density=1e-13x",
             lambda: cli.numbers("density", ["1e-13x"]), ["--density", "'1e-13x'"]),
        Case("bin/predict flags", "--density=0", lambda: cli.numbers("density", ["0"]),
             ["--density"]),
        Case("bin/predict flags", "two temperatures, one density",
             lambda: predict.prediction_table(workdir, sym, [t, t], [r]),
             ["one density per temperature"]),
        Case("bin/predict flags", "temperature above the domain",
             lambda: predict.prediction_table(workdir, sym, [t1 * 10], [r]),
             ["temperature_ev", "training domain"]),
        Case("bin/predict flags", "density below the domain",
             lambda: predict.prediction_table(workdir, sym, [t], [r0 / 100]),
             ["density_gcc", "training domain"]),
        Case("bin/predict flags", "--output in a missing folder",
             lambda: cli.output_file("output", str(out_dir / "missing" / "u.txt")),
             ["--output", "does not exist"]),
        Case("bin/predict flags", "--output is a folder",
             lambda: cli.output_file("output", str(workdir)), ["--output", "folder"]),
        Case("bin/predict flags", "--workdir does not exist",
             lambda: predict.prediction_table(workdir.parent / "nowhere", sym, [t], [r]),
             ["nowhere", "model.json", "not found"]),
        Case("Surrogate API", "2-D temperature array",
             lambda: s.spectrum(sym, np.full((2, 2), t), r), ["temperature_ev", "1-D"]),
        Case("Surrogate API", "temperature as text", lambda: s.spectrum(sym, "hot", r),
             ["temperature_ev", "hot"]),
        Case("Surrogate API", "3 temperatures, 2 densities",
             lambda: s.spectrum(sym, [t] * 3, [r] * 2), ["temperature_ev", "density_gcc"]),
        Case("Surrogate API", "NaN density", lambda: s.planck_mean(sym, t, np.nan),
             ["density_gcc"]),
        Case("Surrogate API", "element None", lambda: s.spectrum(None, t, r), ["None"]),
        Case("Surrogate API", "chunk = 0", lambda: Surrogate.load(workdir, chunk=0), ["chunk"]),
        Case("Surrogate API", "on_domain_error='ignore'",
             lambda: Surrogate.load(workdir, on_domain_error="ignore"), ["on_domain_error"]),
        Case("Surrogate API", "regressor='bogus'", lambda: Surrogate.load(workdir,
                                                                          regressor="bogus"),
             ["bogus", "available"]),
    ]
    return cases


def _with(cfg, key: str, value):
    """A copy of ConfigDict `cfg` with dotted `key` set to `value`, of any type (as a config
    file or a Python caller may write it; flags would be type-checked by ml_collections)."""
    from ml_collections import ConfigDict
    d = cfg.to_dict()
    node, leaf = d, key.split(".")
    for part in leaf[:-1]:
        node = node[part]
    node[leaf[-1]] = value
    return ConfigDict(d)


def config_cases(root: Path) -> List[Case]:
    """Bad config values: each must fail before any data is loaded, leaving no workdir."""
    from configs import cae as cae_config
    from opacity_jax import config_files
    from opacity_jax.train import experiment
    values = [
        ("train.max_seconds", -1.0, ["train.max_seconds", ">= 0"]),
        ("train.max_seconds", float("nan"), ["train.max_seconds"]),
        ("train.max_seconds", float("inf"), ["train.max_seconds", "finite"]),
        ("train.min_delta", float("nan"), ["train.min_delta", "finite"]),
        ("train.min_delta", -0.1, ["train.min_delta"]),
        ("train.learning_rate", 0.0, ["train.learning_rate", "> 0"]),
        ("train.learning_rate", float("nan"), ["train.learning_rate"]),
        ("train.learning_rate", -1e-3, ["train.learning_rate"]),
        ("train.epochs", 0, ["train.epochs", ">= 1"]),
        ("train.epochs", 2.5, ["train.epochs", "integer"]),
        ("train.epochs", "ten", ["train.epochs", "integer"]),
        ("train.batch_size", 0, ["train.batch_size"]),
        ("train.batch_size", -3, ["train.batch_size"]),
        ("train.patience", -1, ["train.patience"]),
        ("train.plateau_factor", 1.5, ["train.plateau_factor", "(0, 1)"]),
        ("train.plateau_factor", 0.0, ["train.plateau_factor"]),
        ("train.eval_every", 0, ["train.eval_every"]),
        ("train.checkpoint_every", 0, ["train.checkpoint_every"]),
        ("train.weight_decay", -1.0, ["train.weight_decay"]),
        ("train.grad_clip", float("nan"), ["train.grad_clip"]),
        ("train.min_lr_scale", 0.0, ["train.min_lr_scale"]),
        ("train.seed", True, ["train.seed"]),
        ("latent.regressor", "bogus", ["latent.regressor", "'xgboost', 'mlp', 'both'"]),
        ("latent.mlp_train.epochs", 0, ["latent.mlp_train.epochs"]),
        ("latent.finetune_train.learning_rate", float("nan"),
         ["latent.finetune_train.learning_rate"]),
        ("latent.finetune_train.max_seconds", -5.0, ["latent.finetune_train.max_seconds"]),
        ("data.split", "bogus", ["data.split", "heldout_nodes"]),
        ("data.test_fraction", 1.5, ["data.test_fraction", "(0, 1)"]),
        ("data.test_fraction", 0.0, ["data.test_fraction"]),
        ("data.val_fraction", -0.1, ["data.val_fraction"]),
        ("data.n_energy", 0, ["data.n_energy"]),
        ("data.n_energy", "200", ["data.n_energy"]),
        ("data.scaling", "sqrt", ["data.scaling", "cbrt"]),
        ("data.elements", "Xx", ["data.elements", "'Xx'"]),
        ("data.elements", "Nd,Fe", ["data.elements", "'Fe'"]),
        ("data.path", "/nonexistent/data.h5", ["data.path", "/nonexistent/data.h5"]),
        ("loss.name", "huber", ["loss.name", "wmse"]),
        ("model", "transformer", ["config.model", "'cae'"]),
        ("seed", "zero", ["config.seed", "integer"]),
    ]
    cases = []
    for i, (key, value, exp) in enumerate(values):
        cfg = _with(cae_config.get_config(), key, value)
        wd = root / "cfg" / f"c{i}"
        (root / "cfg").mkdir(exist_ok=True)
        cases.append(Case("config value (bin/train)", f"{key} = {value!r}",
                          lambda cfg=cfg, wd=wd: experiment.run(cfg, wd, progress=False), exp,
                          debris=lambda wd=wd: [wd]))
    others = [("fcnn", "fcnn.ensemble", 0, ["fcnn.ensemble"]),
              ("fcnn", "loss.name", "bogus", ["loss.name"]),
              ("stage_basis", "stage_basis.min_fraction", 2.0, ["stage_basis.min_fraction",
                                                                "(0, 1)"]),
              ("stage_basis", "stage_basis.row_steps", 0, ["stage_basis.row_steps"]),
              ("stage_basis", "data.split", "bogus", ["data.split"]),
              ("stage_basis", "train.min_delta", float("nan"), ["train.min_delta"]),
              ("xsec", "data.floor", 2.0, ["data.floor"]),
              ("xsec", "loss.name", "mse", ["loss.name", "msle"]),
              ("xsec", "xsec.ensemble", 0, ["xsec.ensemble"]),
              ("classifier", "classifier.ensemble", 0, ["classifier.ensemble"])]
    for j, (name, key, value, exp) in enumerate(others):
        cfg = _with(config_files.load(name), key, value)
        wd = root / "cfg" / f"o{j}"
        cases.append(Case("config value (bin/train)", f"{name}: {key} = {value!r}",
                          lambda cfg=cfg, wd=wd: experiment.run(cfg, wd, progress=False), exp,
                          debris=lambda wd=wd: [wd]))
    # A missing parent of --workdir is created (a fresh clone has no runs/), so the case is a
    # bad config in a missing folder: the error, and no folder left behind.
    cases.append(Case("bin/train flags", "--workdir in a missing folder, bad config value",
                      lambda: experiment.run(_with(cae_config.get_config(), "train.max_seconds",
                                                   -1.0), root / "no" / "such" / "wd"),
                      ["train.max_seconds"], debris=lambda: [root / "no"]))
    return cases


def subprocess_cases(root: Path, workdir: Path) -> List[Case]:
    """A few cases through the bin/ scripts themselves (one-line 'bin/x: ...' errors)."""
    binary = root / "binary.dat"
    binary.write_bytes(bytes(range(256)) * 8)
    t = json.loads((workdir / "model.json").read_text())["domain"]["temperature_ev"][0]
    broken = root / "all_truncated"
    shutil.copytree(workdir, broken)
    for g in (broken / "checkpoints").rglob("*"):
        if g.is_file() and g.stat().st_size > 64 and "d" in g.parts[-2:-1]:
            g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
    return [
        Case("bin/ subprocess", "bin/predict, every checkpoint truncated",
             lambda: _bin("predict", f"--workdir={broken}", "--element=Nd",
                          f"--temperature_ev={t * 1.01}", "--density=1e-13"),
             ["bin/predict:", "checkpoints/cae/", "re-run bin/train"]),
        Case("bin/ subprocess", "bin/complete on a binary file",
             lambda: _bin("complete", f"--input={binary}", f"--output={root / 'c_out'}"),
             ["bin/complete:", "binary.dat", "UTF-8"], debris=lambda: [root / "c_out"]),
    ]


def corpus(root: Path, workdir: Path, subprocesses: bool = True) -> List[Case]:
    """Every case, built under `root` from the trained CAE workdir `workdir` (both regressors,
    with stage records)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    good = tiny_dataset(root / "good.h5") if not (root / "good.h5").exists() else root / "good.h5"
    cases = (text_table_cases(root) + spectrum_table_cases(root) + hdf5_cases(root, good)
             + model_json_cases(root, workdir) + checkpoint_cases(root, workdir)
             + query_cases(workdir) + config_cases(root))
    if subprocesses:
        cases += subprocess_cases(root, workdir)
    return cases


def run_corpus(cases: Sequence[Case]) -> list:
    """[(case, outcome, message)] for every case."""
    return [(c, *outcome(c)) for c in cases]


def table_markdown(results) -> str:
    """The corpus table: counts by outcome and kind, then every case with its message."""
    kinds = list(dict.fromkeys(c.kind for c, _, _ in results))
    names = ["clear", "correct", "unclear", "silent", "crash"]
    lines = ["# Bad-input corpus: outcome of every case", "",
             "Written by `python3 tests/bad_inputs.py --out=reports/reliability/corpus.md` "
             "(tests/test_bad_inputs.py runs the same corpus and requires every case to be "
             "`clear` or `correct`).", "",
             "| kind | cases | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for k in kinds + ["all"]:
        rs = [o for c, o, _ in results if k == "all" or c.kind == k]
        lines.append(f"| {k} | {len(rs)} | " + " | ".join(str(rs.count(n)) for n in names)
                     + " |")
    lines += ["", "| kind | case | outcome | message |", "|---|---|---|---|"]
    for c, o, m in results:
        m = m.replace("|", "\\|")
        lines.append(f"| {c.kind} | {c.name} | {o} | {m[:240]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/reliability/corpus.md")
    ap.add_argument("--workdir", default=None, help="a trained tiny CAE workdir to copy "
                    "(default: train one)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as tmp:
        tmp = Path(tmp)
        wd = Path(args.workdir) if args.workdir else tiny_workdir(tmp)
        results = run_corpus(corpus(tmp / "corpus", wd))
        text = table_markdown(results)
        # Paths of the temporary folder are not part of the result.
        text = text.replace(str(tmp), "<tmp>")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    bad = [(c.name, o) for c, o, _ in results if o not in ("clear", "correct")]
    print(f"{len(results)} cases, {len(bad)} not clear; wrote {out}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
