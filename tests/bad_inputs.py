"""A corpus of bad inputs and the outcome of each: every one must be a clear error.

    python3 tests/bad_inputs.py --fixtures=tests/fixtures/bad_inputs     # (re)writes fixtures
    python3 tests/bad_inputs.py --out=reports/reliability/corpus.md       # trains a tiny workdir

The first command writes the corpus's committed fixtures: every bad input file (text tables,
masks, spectrum tables, HDF5 datasets, model.json files, a binary file) under
tests/fixtures/bad_inputs/, and manifest.json listing each case: its kind and name, the command
or API call it makes, the fixture files it reads, the recipe that derives its input from a
trained workdir (edited model.json, truncated or corrupt checkpoints: those cases need a
trained model, built at test time, so they are recipes rather than files) or the config values
it sets, and the fragments the error must contain (the file, line, field or flag, and the
allowed values). tests/test_bad_inputs.py checks that this script reproduces the committed
fixtures byte for byte, then runs every case of the manifest on the test session's tiny
workdir and requires 100 % clear errors. The second command runs the same corpus and writes
the table of cases by outcome.

Outcomes:
  clear   - a user error (`opacity_jax.cli.USER_ERRORS`) with a one-line message that names the
            thing (file / line / field / flag) and, where the case lists them, the allowed
            values; nothing left behind (no config.json, no empty output folder);
  correct - a case whose correct behaviour is to work (e.g. `--element=60`, a Z) and did;
  unclear - a user error whose message misses the thing, spans lines, or left debris;
  silent  - no error;
  crash   - any other exception (a traceback for the user).
Most cases call the library functions bin/ scripts call (cheap, in-process); a few run the bin/
scripts as subprocesses. Large inputs (a 300,000-point query) are not fixtures: they are made
in code by the tests that use them (tests/test_experiment.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures" / "bad_inputs"
MANIFEST = "manifest.json"
WRITE_COMMAND = "python3 tests/bad_inputs.py --fixtures=tests/fixtures/bad_inputs"
# Recipe ops that change model.json only (`apply_edits`): the workdir copy can share the rest.
MODEL_JSON_OPS = ("truncate", "copy", "drop", "set", "reverse", "set_item", "swap_elements")


class Context:
    """Where one corpus run lives: `root` holds a copy of the fixtures (outputs go there too),
    `workdir` is the trained CAE workdir the model.json / checkpoint / query cases start from.
    `values()` are the workdir-dependent numbers the cases' calls and expected fragments name
    ('{sym}', '{cae_step}', ...)."""

    def __init__(self, root: Path, workdir: Optional[Path]):
        self.root, self.workdir = Path(root), workdir
        self._values = None
        self._variants = 0

    def path(self, rel: str) -> Path:
        return self.root / rel

    def values(self) -> dict:
        if self._values is None:
            meta = json.loads((self.workdir / "model.json").read_text())
            zs = list(meta["elements"])
            (t0, t1), (r0, r1) = meta["domain"]["temperature_ev"], meta["domain"]["density_gcc"]
            self._values = {
                "sym": str(workdir_symbols(zs)[0]), "z": str(zs[0]),
                "z_out": str(next(z for z in (92, 58, 63, 96) if z not in zs)),
                "t": math.sqrt(t0 * t1), "r": math.sqrt(r0 * r1), "t0": t0, "t1": t1,
                "r0": r0, "r1": r1, "cae_step": meta["stages"]["cae"]["step"],
                "ft": ("latent_mlp_finetune" if meta["latent"].get("mlp_finetuned")
                       else "latent_mlp")}
        return self._values

    def variant(self, recipe: dict) -> Path:
        """A copy of the workdir with the recipe's edits applied (`apply_edits`)."""
        self._variants += 1
        w = self.root / "workdirs" / f"w{self._variants}"
        w.parent.mkdir(exist_ok=True)
        edits = recipe.get("edits", [])
        if recipe.get("copy") != "full" and all(
                e["op"] in MODEL_JSON_OPS or (e["op"] == "delete" and e["path"] == "model.json")
                for e in edits):
            # Hard links: only model.json is replaced (unlinked first), the rest is read-only.
            shutil.copytree(self.workdir, w, copy_function=os.link)
            (w / "model.json").unlink()
            shutil.copy(self.workdir / "model.json", w / "model.json")
        else:
            shutil.copytree(self.workdir, w)
        apply_edits(w, edits, self.values(), self.root)
        return w


@dataclasses.dataclass
class Case:
    """One bad input: `run(ctx)` must raise a clear error naming every string of `expect`
    (case-insensitive; '{name}' fields filled from `Context.values`), unless `accept` (then it
    must succeed). `debris(ctx)` lists paths a failed run must not leave behind. `call` is the
    command / API call in words, `inputs` the fixture files it reads, `recipe` how its input is
    derived (workdir edits, config values): the manifest records all of these. `slow` cases
    (training, large queries, several seconds each) run in the standalone command only."""
    kind: str
    name: str
    call: str
    run: Callable[[Context], object]
    expect: Sequence[str] = ()
    accept: bool = False
    inputs: Sequence[str] = ()
    recipe: Optional[dict] = None
    debris: Callable[[Context], List[Path]] = lambda ctx: []
    slow: bool = False

    def spec(self) -> dict:
        """The case's manifest entry."""
        return {"kind": self.kind, "name": self.name, "call": self.call,
                "inputs": list(self.inputs), "recipe": self.recipe,
                "expect": list(self.expect), "accept": self.accept, "slow": self.slow}


def outcome(case: Case, ctx: Context, expect: Optional[Sequence[str]] = None):
    """(outcome, message) of running `case` (see module docstring); `expect` (default the
    case's own) are the fragments the message must contain."""
    from opacity_jax import cli
    expect = case.expect if expect is None else expect
    try:
        case.run(ctx)
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
    vals = ctx.values() if any("{" in x for x in expect) else {}
    want = [x.format(**vals) for x in expect]
    left = [str(p) for p in case.debris(ctx) if p.exists()]
    ok = ("\n" not in msg.strip() and all(x.lower() in msg.lower() for x in want)
          and not left)
    return ("clear" if ok else "unclear"), (msg.strip() + (f" [debris: {left}]" if left else ""))


# ------------------------------------------------------------------------------ fixtures
def tiny_dataset(path: Path, elements=(60,), n_t: int = 6, n_r: int = 6,
                 n_energy: int = 32) -> Path:
    """A small valid HDF5 dataset (`elements`, n_energy bins, n_t T x n_r rho) of smooth
    synthetic spectra (made without the generator: the corpus needs a valid file, not
    physics)."""
    from opacity_jax.data import grid, h5file
    from opacity_jax.data.dataset import Dataset
    t, rho = grid.temperatures_ev()[8:8 + n_t], grid.densities_gcc()[::3][:n_r]
    edges = grid.energy_edges_ev(n_energy, 1.0, 1e4)
    e = np.sqrt(edges[1:] * edges[:-1])
    one = 1e3 * e[None, None, :] ** -1.5 * t[:, None, None] * (rho[None, :, None] / 1e-13) ** 0.1
    kappa = np.stack([one * (1.0 + 0.5 * i) for i in range(len(elements))]).astype(np.float32)
    ds = Dataset(np.asarray(elements, np.int32), t, rho, edges, kappa, {}, None, None,
                 np.ones(kappa.shape[:3], bool), {"source": "synthetic corpus fixture"})
    return h5file.save_dataset(ds, path)


def tiny_workdir(root: Path) -> Path:
    """A tiny trained CAE workdir on Nd + U (both latent regressors) for the standalone
    command."""
    from configs import cae as cae_config
    from opacity_jax.train import experiment
    cfg = cae_config.get_config()
    cfg.data.path = str(tiny_dataset(root / "tiny_train.h5", elements=(60, 92)))
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


# Fixture files: relative path -> bytes. The HDF5 files are written by h5py into a scratch
# folder (`hdf5_files`); everything else is built here.
_GOOD_TABLE = ["# log10_rho  T  kappa"] + [f"{r:.1f} {t:.1f} {(13.0 + r) * t:.4f}"
                                           for r in (-12.0, -11.0, -10.0)
                                           for t in (1000.0, 2000.0, 3000.0)]
_HOLE_TABLE = list(_GOOD_TABLE)
_HOLE_TABLE[5] = _HOLE_TABLE[5].rsplit(" ", 1)[0] + " nan"

TEXT_TABLES = {   # name -> (bytes, expected fragments besides the file name)
    "binary file (random bytes)": (bytes(range(256)) * 4, ["not UTF-8"]),
    "binary file with NUL bytes": (b"# a b c\n1 2 3\n\0\0\0\n", ["NUL"]),
    "empty file": (b"", []),
    "header only": (b"# log10_rho T kappa\n", []),
    "non-numeric value in a data row": (
        "\n".join(_GOOD_TABLE[:4] + ["-11.0 2000.0 abc"]).encode(), ["line 5", "abc"]),
    "row with a missing column": ("\n".join(_GOOD_TABLE[:4] + ["-11.0 2000.0"]).encode(),
                                  ["line 5", "columns"]),
    "header names 2 columns, rows have 3": ("\n".join(["# T kappa"] + _GOOD_TABLE[1:]).encode(),
                                            ["header"]),
    "NaN coordinate": ("\n".join(_GOOD_TABLE[:3] + ["nan 2000.0 1.0"]).encode(),
                       ["line 4", "log10_rho"]),
    "infinite opacity": ("\n".join(_GOOD_TABLE[:3] + ["-11.0 2000.0 1e999"]).encode(),
                         ["line 4", "kappa"]),
    "negative opacity": ("\n".join(_GOOD_TABLE[:3] + ["-11.0 2000.0 -1.0"]).encode(),
                         ["line 4", "kappa"]),
    "duplicate grid point": ("\n".join(_GOOD_TABLE + [_GOOD_TABLE[1]]).encode(),
                             ["line 11", "duplicate"]),
    "coordinate off by 1e-9": (
        "\n".join(_GOOD_TABLE[:6] + ["-11.000000011 3000.0 nan"]).encode(),
        ["log10_rho", "line 7"]),
    "single column": (b"# kappa\n1.0\n2.0\n", []),
    "latin-1 text": ("# log10_rho T kappa \xe9\n1 2 3\n".encode("latin-1"), []),
    "no missing entries": ("\n".join(_GOOD_TABLE).encode(), ["nothing to complete"]),
    "small valid table (8 known entries)": (("\n".join(_HOLE_TABLE) + "\n").encode(),
                                            ["8 known entries", "at least"]),
}

_SPEC_HEAD = "# Z = 60\n# T = 0.5 eV\n# rho = 1e-13 g/cm3\n"
_SPEC_ROWS = "1.0 6.0 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n"
SPECTRUM_TABLES = {   # name -> (text, expected fragments besides the file name)
    "total != bb + bf + ff + es": (
        _SPEC_HEAD + "1.0 9.0 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n", ["line 4", "total"]),
    "missing Z": ("# T = 0.5 eV\n# rho = 1e-13\n" + _SPEC_ROWS, ["'Z'"]),
    "missing T": ("# Z = 60\n# rho = 1e-13\n" + _SPEC_ROWS, ["'T'"]),
    "unknown temperature unit": (_SPEC_HEAD.replace("eV", "furlong") + _SPEC_ROWS,
                                 ["furlong"]),
    "negative temperature": (_SPEC_HEAD.replace("0.5 eV", "-0.5 eV") + _SPEC_ROWS,
                             ["line 2", "T"]),
    "5 columns": (_SPEC_HEAD + "1.0 6.0 1.0 2.0 2.0\n2.0 3.0 1.0 1.0 0.5\n", ["line 4"]),
    "energies not increasing": (
        _SPEC_HEAD + "2.0 3.0 1.0 1.0 0.5 0.5\n1.0 6.0 1.0 2.0 2.0 1.0\n", ["line 5", "energy"]),
    "one data row": (_SPEC_HEAD + "1.0 6.0 1.0 2.0 2.0 1.0\n", ["at least 2"]),
    "Z contradicts element": ("# Z = 60\n# element = U\n# T = 0.5\n# rho = 1e-13\n" + _SPEC_ROWS,
                              ["element"]),
    "non-numeric opacity": (_SPEC_HEAD + "1.0 x 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                            ["line 4", "'x'"]),
    "NaN opacity": (_SPEC_HEAD + "1.0 nan 1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                    ["line 4"]),
    "negative component": (_SPEC_HEAD + "1.0 4.0 -1.0 2.0 2.0 1.0\n2.0 3.0 1.0 1.0 0.5 0.5\n",
                           ["line 4", "negative"]),
    "T given twice": (_SPEC_HEAD + "# T = 0.7 eV\n" + _SPEC_ROWS, ["twice"]),
}

# HDF5 variants of the good fixture dataset: name -> expected fragments besides the file name.
HDF5_EXPECT = {"empty file": [], "truncated to half": [], "text file named .h5": [],
               "corrupt kappa chunk": ["corrupt"], "no format attribute": [],
               "format_version 99": ["99"], "unknown kappa unit": ["furlong"],
               "missing kappa": ["kappa"], "temperature axis one node short": ["shape"],
               "NaN in kappa": ["kappa", "index"], "negative kappa": ["kappa"],
               "integer kappa": [], "provenance not JSON": ["provenance"]}
HDF5_VIA_TRAIN = ("corrupt kappa chunk", "truncated to half", "NaN in kappa")
# The fixture dataset is smaller than the training one: 4 T x 4 rho x 16 bins, one element.
H5_SHAPE = dict(n_t=4, n_r=4, n_energy=16)


def _npy(array) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def hdf5_files(scratch: Path) -> Dict[str, bytes]:
    """h5/good.h5 and h5/h<i>.h5, one per HDF5_EXPECT entry (in its order)."""
    import h5py

    from opacity_jax.data import h5file
    good = tiny_dataset(scratch / "good.h5", **H5_SHAPE)
    raw = good.read_bytes()
    out = {"h5/good.h5": raw}
    with h5py.File(good, "r") as h:
        off = h["kappa"].id.get_offset() if h["kappa"].chunks is None else \
            h["kappa"].id.get_chunk_info(0).byte_offset
    bad = bytearray(raw)
    for k in range(64):            # bytes inside the (compressed) kappa chunk: the header opens
        bad[off + 16 + k] ^= 0xFF

    def reshape_t(h):
        t = h["temperature_ev"][()]
        del h["temperature_ev"]
        h["temperature_ev"] = t[:-1]

    def set_kappa(index, value):
        def f(h):
            k = h["kappa"][()]
            k[index] = value
            h["kappa"][...] = k
        return f

    def int_kappa(h):
        k = h["kappa"][()]
        del h["kappa"]
        h["kappa"] = k.astype(np.int32)
    edits = {
        "empty file": b"", "truncated to half": raw[: len(raw) // 2],
        "text file named .h5": b"not an hdf5 file\n", "corrupt kappa chunk": bytes(bad),
        "no format attribute": lambda h: h.attrs.__delitem__("format"),
        "format_version 99": lambda h: h.attrs.__setitem__("format_version", 99),
        "unknown kappa unit": lambda h: h.attrs.__setitem__(
            "units", json.dumps(dict(h5file.UNITS, kappa="furlong"))),
        "missing kappa": lambda h: h.__delitem__("kappa"),
        "temperature axis one node short": reshape_t,
        "NaN in kappa": set_kappa((0, 1, 2, 3), np.nan),
        "negative kappa": set_kappa((0, 0, 0, 0), -1.0),
        "integer kappa": int_kappa,
        "provenance not JSON": lambda h: h.attrs.__setitem__("provenance", "{oops"),
    }
    assert list(edits) == list(HDF5_EXPECT)
    for i, (name, edit) in enumerate(edits.items()):
        f = scratch / f"h{i}.h5"
        if isinstance(edit, bytes):
            f.write_bytes(edit)
        else:
            shutil.copy(good, f)
            with h5py.File(f, "r+") as h:
                edit(h)
        out[f"h5/h{i}.h5"] = f.read_bytes()
    return out


MODEL_JSON_FILES = {"model_json/empty.json": b"", "model_json/binary.json": bytes(range(256)),
                    "model_json/list.json": b"[1, 2]"}


def fixture_files(scratch: Path) -> Dict[str, bytes]:
    """Every fixture file: relative path -> bytes."""
    files = {f"tables/t{i}.txt": data for i, (data, _) in enumerate(TEXT_TABLES.values())}
    files["tables/holes.txt"] = ("\n".join(_HOLE_TABLE) + "\n").encode()
    files["tables/shape.npy"] = _npy(np.zeros((2, 2), bool))
    files["tables/float.npy"] = _npy(np.full((3, 3), 0.5))
    files["tables/text.npy"] = b"not a numpy file"
    files.update({f"spectra/s{i}.txt": text.encode()
                  for i, (text, _) in enumerate(SPECTRUM_TABLES.values())})
    files["spectra/binary.txt"] = bytes(range(256))
    files.update(hdf5_files(scratch))
    files.update(MODEL_JSON_FILES)
    files["binary.dat"] = bytes(range(256)) * 8
    return files


# ------------------------------------------------------------------------- workdir recipes
def _node(d, dotted: str):
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d[p]
    return d, parts[-1]


def _state_files(folder: Path) -> List[Path]:
    """The array data files of one checkpoint's state (orbax's 'd/' chunk files)."""
    return [f for f in sorted(folder.rglob("*")) if f.is_file() and f.stat().st_size > 64
            and "d" in f.parts[-2:-1]]


def apply_edits(w: Path, edits: Sequence[dict], values: dict, fixtures: Path) -> None:
    """Apply recipe `edits` to the workdir copy `w`. Ops (each a dict with 'op'):

    model.json: 'truncate' (keep `fraction` of the text), 'copy' (replace by fixture file
    `from`), 'delete' (`path`, a file or folder), 'drop' / 'set' (dotted `key`, `value`),
    'reverse' (dotted `key`, a list), 'set_item' (`key`, `index`, `value`), 'swap_elements'
    (the served list reversed, or another Z for one element);
    checkpoints (`stage`: a label, '@mlp' for the served latent MLP stage, '*' every stage):
    'truncate_state' (`steps`: 'recorded' or 'all'; half of every data file), 'flip_bit' (one
    bit in the middle of the recorded step's first data file), 'truncate_meta' (`chars` kept of
    the recorded step's metadata files); other files: 'truncate_files' (`glob`, `bytes` kept),
    'write' (`path`, `text`).
    """
    from opacity_jax.train import workdir as wl
    mj = w / "model.json"
    meta = json.loads(mj.read_text()) if mj.exists() else {}

    def stages(label):
        if label == "*":
            return sorted(p.name for p in (w / "checkpoints").iterdir())
        return [values["ft"] if label == "@mlp" else label]

    def recorded(label):
        return meta["stages"][label]["step"]
    for e in edits:
        op = e["op"]
        if op == "truncate":
            text = mj.read_text()
            mj.write_text(text[: int(len(text) * e["fraction"])])
        elif op == "copy":
            shutil.copy(fixtures / e["from"], mj)
        elif op == "delete":
            p = w / e["path"]
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        elif op in ("drop", "set", "reverse", "set_item", "swap_elements"):
            m = json.loads(mj.read_text())
            if op == "swap_elements":
                served = list(m["elements"])
                m["elements"] = served[::-1] if len(served) > 1 else [
                    92 if served != [92] else 60]
            else:
                node, leaf = _node(m, e["key"])
                if op == "drop":
                    del node[leaf]
                elif op == "set":
                    node[leaf] = e["value"]
                elif op == "reverse":
                    node[leaf] = node[leaf][::-1]
                else:
                    node[leaf][e["index"]] = e["value"]
            mj.write_text(json.dumps(m))
        elif op == "truncate_state":
            for label in stages(e["stage"]):
                folder = wl.checkpoint_dir(w, label)
                steps = [int(s.name) for s in folder.iterdir() if s.name.isdigit()] \
                    if e["steps"] == "all" else [recorded(label)]
                for s in steps:
                    for g in _state_files(folder / str(s) / "state"):
                        g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
        elif op == "flip_bit":
            label = stages(e["stage"])[0]
            g = _state_files(wl.checkpoint_dir(w, label) / str(recorded(label)) / "state")[0]
            b = bytearray(g.read_bytes())
            b[len(b) // 2] ^= 1
            g.write_bytes(bytes(b))
        elif op == "truncate_meta":
            label = stages(e["stage"])[0]
            for g in (wl.checkpoint_dir(w, label) / str(recorded(label)) / "meta").rglob("*"):
                if g.is_file():
                    g.write_text(g.read_text()[: e["chars"]])
        elif op == "truncate_files":
            for g in sorted(w.glob(e["glob"])):
                g.write_bytes(g.read_bytes()[: e["bytes"]])
        elif op == "write":
            (w / e["path"]).write_text(e["text"])
        else:
            raise ValueError(f"unknown recipe op {op!r}")


def _surrogate_case(kind, name, edits, expect, load=None):
    """A case loading a Surrogate from a workdir copy edited by `edits`."""
    from opacity_jax.serve.surrogate import Surrogate
    load = load or {}
    args = "".join(f", {k}={v!r}" for k, v in load.items())
    recipe = {"edits": list(edits), "load": load}
    return Case(kind, name, f"Surrogate.load(<edited workdir>{args})",
                lambda ctx: Surrogate.load(ctx.variant(recipe), **load), expect, recipe=recipe)


# ---------------------------------------------------------------------------------- cases
def text_table_cases() -> List[Case]:
    """bin/complete inputs: text tables, masks, flags (completion.run / read_table)."""
    from ml_collections import ConfigDict

    from configs import complete as complete_config
    from opacity_jax.experiments import completion
    cfg = complete_config.get_config("tiny") if _has_preset("tiny") else \
        complete_config.get_config()
    cases = []
    for i, (name, (_, exp)) in enumerate(TEXT_TABLES.items()):
        rel = f"tables/t{i}.txt"
        cases.append(Case(
            "text table (bin/complete)", name, f"bin/complete --input={rel} --output=<out{i}>",
            lambda ctx, rel=rel, i=i: completion.run(cfg, str(ctx.path(rel)),
                                                     str(ctx.path(f"tables/out{i}"))),
            [Path(rel).name] + exp, inputs=[rel],
            debris=lambda ctx, i=i: [ctx.path(f"tables/out{i}")]))
    vc = ConfigDict(cfg.to_dict())
    vc.table.value_columns = "bogus"

    def out(ctx):
        return str(ctx.path("tables/out_flags"))

    def holes(ctx):
        return str(ctx.path("tables/holes.txt"))

    def empty_dir(ctx):
        ctx.path("tables/empty_dir").mkdir(exist_ok=True)
        return completion.run(cfg, str(ctx.path("tables/empty_dir")), out(ctx))
    flag_cases = [
        ("--input does not exist", "bin/complete --input=tables/missing.txt", [],
         lambda ctx: completion.run(cfg, str(ctx.path("tables/missing.txt")), out(ctx)),
         ["missing.txt"]),
        ("--input: an empty folder (no JLODK Ye*/ folders)",
         "bin/complete --input=tables/empty_dir (made empty at test time)", [], empty_dir,
         ["empty_dir"]),
        ("--mask of the wrong shape", "bin/complete --input=tables/holes.txt "
         "--mask=tables/shape.npy", ["tables/holes.txt", "tables/shape.npy"],
         lambda ctx: completion.run(cfg, holes(ctx), out(ctx), str(ctx.path("tables/shape.npy"))),
         ["mask", "shape"]),
        ("--mask holding 0.5", "bin/complete --input=tables/holes.txt --mask=tables/float.npy",
         ["tables/holes.txt", "tables/float.npy"],
         lambda ctx: completion.run(cfg, holes(ctx), out(ctx), str(ctx.path("tables/float.npy"))),
         ["mask", "boolean"]),
        ("--mask not a .npy file", "bin/complete --input=tables/holes.txt "
         "--mask=tables/text.npy", ["tables/holes.txt", "tables/text.npy"],
         lambda ctx: completion.run(cfg, holes(ctx), out(ctx), str(ctx.path("tables/text.npy"))),
         ["text.npy"]),
        ("--mask missing", "bin/complete --input=tables/holes.txt --mask=tables/nomask.npy",
         ["tables/holes.txt"],
         lambda ctx: completion.run(cfg, holes(ctx), out(ctx),
                                    str(ctx.path("tables/nomask.npy"))), ["nomask.npy"]),
        ("--evaluate=bogus", "bin/complete --input=tables/holes.txt --evaluate=bogus",
         ["tables/holes.txt"],
         lambda ctx: completion.run(cfg, holes(ctx), out(ctx), None, ["bogus"]),
         ["--evaluate", "bogus", "random20"]),
        ("--output is an existing file", "bin/complete --input=tables/holes.txt "
         "--output=tables/holes.txt", ["tables/holes.txt"],
         lambda ctx: completion.run(cfg, holes(ctx), holes(ctx)), ["--output", "not a folder"]),
        ("--output in a missing folder", "bin/complete --input=tables/holes.txt "
         "--output=tables/nope/out", ["tables/holes.txt"],
         lambda ctx: completion.run(cfg, holes(ctx), str(ctx.path("tables/nope/out"))),
         ["--output", "does not exist"]),
        ("table.value_columns=bogus", "bin/complete --input=tables/holes.txt "
         "--config.table.value_columns=bogus", ["tables/holes.txt"],
         lambda ctx: completion.run(vc, holes(ctx), out(ctx)), ["bogus", "header"]),
    ]
    for name, call, inputs, fn, exp in flag_cases:
        cases.append(Case("bin/complete flags", name, call, fn, exp, inputs=inputs,
                          debris=lambda ctx: [ctx.path("tables/out_flags")]))
    return cases


def _has_preset(name):
    from configs import complete as complete_config
    try:
        complete_config.get_config(name)
        return True
    except ValueError:
        return False


def spectrum_table_cases() -> List[Case]:
    """Per-spectrum text tables (data.spectrum_tables.read_spectrum_table)."""
    from opacity_jax.data import spectrum_tables as st
    cases = []
    names = list(SPECTRUM_TABLES) + ["binary file"]
    expects = [e for _, e in SPECTRUM_TABLES.values()] + [["UTF-8"]]
    for i, (name, exp) in enumerate(zip(names, expects)):
        rel = f"spectra/s{i}.txt" if i < len(SPECTRUM_TABLES) else "spectra/binary.txt"
        cases.append(Case("spectrum table", name, f"read_spectrum_table({rel!r})",
                          lambda ctx, rel=rel: st.read_spectrum_table(ctx.path(rel)),
                          [Path(rel).name] + exp, inputs=[rel]))
    return cases


def hdf5_cases() -> List[Case]:
    """Canonical HDF5 dataset files (h5file.load_dataset; bin/train's data.path)."""
    from configs import cae as cae_config
    from opacity_jax.data import h5file
    from opacity_jax.train import experiment
    cases = []
    rels = {}
    for i, (name, exp) in enumerate(HDF5_EXPECT.items()):
        rel = rels[name] = f"h5/h{i}.h5"
        cases.append(Case("HDF5 dataset", name, f"load_dataset({rel!r})",
                          lambda ctx, rel=rel: h5file.load_dataset(ctx.path(rel)),
                          [Path(rel).name] + exp, inputs=[rel]))

    # The same through bin/train's data loading (the config names the file).
    def via_train(rel):
        def run(ctx):
            cfg = cae_config.get_config()
            cfg.data.path, cfg.data.elements = str(ctx.path(rel)), ""
            cfg.data.n_energy = H5_SHAPE["n_energy"]
            return experiment.load_data(cfg.data)
        return run
    for name in HDF5_VIA_TRAIN:
        rel = rels[name]
        cases.append(Case("HDF5 dataset", f"{name} (via bin/train data loading)",
                          f"bin/train --config.data.path={rel} (its data loading)",
                          via_train(rel), [Path(rel).name] + HDF5_EXPECT[name], inputs=[rel]))
    # bin/train itself into a new workdir: the error, and no workdir left behind.
    def train_new(ctx):
        cfg = cae_config.get_config()
        cfg.data.path, cfg.data.elements = str(ctx.path(rels["corrupt kappa chunk"])), ""
        cfg.data.n_energy = H5_SHAPE["n_energy"]
        return experiment.run(cfg, ctx.path("h5_runs/wd"), progress=False)
    cases.append(Case("HDF5 dataset", "corrupt kappa chunk (bin/train into a new workdir)",
                      f"bin/train --workdir=h5_runs/wd --config.data.path="
                      f"{rels['corrupt kappa chunk']}", train_new,
                      [Path(rels["corrupt kappa chunk"]).name, "corrupt"],
                      inputs=[rels["corrupt kappa chunk"]],
                      debris=lambda ctx: [ctx.path("h5_runs")]))
    cases.append(Case("HDF5 dataset", "element not in the file",
                      "load_dataset('h5/good.h5', elements=[92])",
                      lambda ctx: h5file.load_dataset(ctx.path("h5/good.h5"), elements=[92]),
                      ["92", "good.h5"], inputs=["h5/good.h5"]))
    return cases


def model_json_cases() -> List[Case]:
    """Edited, truncated or mismatched model.json files (Surrogate.load)."""
    K = "model.json"
    cases = [
        _surrogate_case(K, "truncated", [{"op": "truncate", "fraction": 0.5}],
                        ["model.json", "invalid JSON"]),
        _surrogate_case(K, "empty", [{"op": "copy", "from": "model_json/empty.json"}],
                        ["model.json", "line 1"]),
        _surrogate_case(K, "binary", [{"op": "copy", "from": "model_json/binary.json"}],
                        ["model.json", "UTF-8"]),
        _surrogate_case(K, "a JSON list", [{"op": "copy", "from": "model_json/list.json"}],
                        ["model.json", "object"]),
        _surrogate_case(K, "deleted", [{"op": "delete", "path": "model.json"}],
                        ["model.json", "not found"]),
        _surrogate_case(K, "no 'model'", [{"op": "drop", "key": "model"}],
                        ["model.json", "'model'"]),
        _surrogate_case(K, "model = 'bogus'", [{"op": "set", "key": "model", "value": "bogus"}],
                        ["model.json", "bogus"]),
        _surrogate_case(K, "model = 42", [{"op": "set", "key": "model", "value": 42}],
                        ["'model'"]),
    ]
    for key in ("elements", "domain", "energy_edges_ev", "scaling", "cae.latent_dim",
                "latent.z_mean", "latent.z_std", "latent.x_standardizer", "latent.regressors"):
        cases.append(_surrogate_case(K, f"no '{key}'", [{"op": "drop", "key": key}],
                                     ["model.json", key]))
    cases += [
        _surrogate_case(K, "elements in another order than the checkpoint's",
                        [{"op": "swap_elements"}], ["model.json", "elements", "order"]),
        _surrogate_case(K, "elements [60, 60]", [{"op": "set", "key": "elements",
                                                  "value": [60, 60]}], ["elements"]),
        _surrogate_case(K, "element Z = 200", [{"op": "set", "key": "elements", "value": [200]}],
                        ["elements"]),
        _surrogate_case(K, "domain widened in temperature",
                        [{"op": "set_item", "key": "domain.temperature_ev", "index": 1,
                          "value": 100.0}], ["domain.temperature_ev", "training grid"]),
        _surrogate_case(K, "domain widened in density",
                        [{"op": "set_item", "key": "domain.density_gcc", "index": 0,
                          "value": 1e-30}], ["domain.density_gcc"]),
        _surrogate_case(K, "domain [hi, lo]", [{"op": "reverse", "key": "domain.temperature_ev"}],
                        ["domain.temperature_ev"]),
        _surrogate_case(K, "domain as a string", [{"op": "set", "key": "domain.density_gcc",
                                                   "value": "wide"}], ["domain.density_gcc"]),
        _surrogate_case(K, "energy edges decreasing", [{"op": "reverse",
                                                        "key": "energy_edges_ev"}],
                        ["energy_edges_ev"]),
        _surrogate_case(K, "stages not a mapping", [{"op": "set", "key": "stages",
                                                     "value": [1, 2]}], ["stages"]),
        _surrogate_case(K, "stage step of a checkpoint that does not exist",
                        [{"op": "set", "key": "stages.cae.step", "value": 999}],
                        ["checkpoints/cae/999", "missing"]),
        _surrogate_case(K, "stage digest of another run",
                        [{"op": "set", "key": "stages.cae.state_sha256", "value": "0" * 64}],
                        ["checkpoints/cae", "another run"]),
        _surrogate_case(K, "regressor listed but not trained",
                        [{"op": "set", "key": "latent.regressors", "value": ["mlp"]}],
                        ["xgboost", "available"], load={"regressor": "xgboost"}),
        _surrogate_case(K, "ensemble asked, none trained", [], ["bin/train_ensemble"],
                        load={"ensemble": True}),
    ]
    return cases


def checkpoint_cases() -> List[Case]:
    """Truncated / corrupt checkpoints and boosters (inference refuses, naming the file)."""
    K = "checkpoint"
    xgb = {"regressor": "xgboost"}
    return [
        _surrogate_case(K, "CAE checkpoint truncated",
                        [{"op": "truncate_state", "stage": "cae", "steps": "recorded"}],
                        ["checkpoints/cae/{cae_step}", "re-run bin/train"]),
        _surrogate_case(K, "every CAE checkpoint truncated",
                        [{"op": "truncate_state", "stage": "cae", "steps": "all"}],
                        ["checkpoints/cae/", "re-run bin/train"]),
        _surrogate_case(K, "one flipped bit in the CAE state",
                        [{"op": "flip_bit", "stage": "cae"}], ["checkpoints/cae/{cae_step}"]),
        _surrogate_case(K, "one flipped bit in the latent-MLP state",
                        [{"op": "flip_bit", "stage": "@mlp"}], ["checkpoints/{ft}/"]),
        _surrogate_case(K, "CAE checkpoint folder deleted",
                        [{"op": "delete", "path": "checkpoints/cae"}], ["checkpoints/cae"]),
        _surrogate_case(K, "CAE checkpoint meta truncated",
                        [{"op": "truncate_meta", "stage": "cae", "chars": 20}],
                        ["checkpoints/cae/{cae_step}"]),
        _surrogate_case(K, "XGBoost booster truncated",
                        [{"op": "truncate_files", "glob": "xgb/*.ubj", "bytes": 100}],
                        ["xgb", "re-run bin/train"], load=xgb),
        _surrogate_case(K, "XGBoost index.json corrupt",
                        [{"op": "write", "path": "xgb/index.json", "text": "{"}], ["xgb"],
                        load=xgb),
        _surrogate_case(K, "XGBoost folder deleted", [{"op": "delete", "path": "xgb"}], ["xgb"],
                        load=xgb),
    ]


def workdir_symbols(zs):
    """Element symbols of atomic numbers `zs`."""
    from opacity_jax.physics import elements as el
    return [el.SYMBOLS[el.element_index(int(z))] for z in zs]


def query_cases() -> List[Case]:
    """Bad queries: bin/predict flags (its helpers and prediction_table) and the API. Values
    in braces come from the workdir (`Context.values`: t, r the geometric middle of its
    domain, t1 its top temperature, r0 its lowest density, sym / z its first element, z_out an
    element it does not serve)."""
    from opacity_jax import cli
    from opacity_jax.serve import predict
    from opacity_jax.serve.surrogate import Surrogate

    def v(ctx):
        return ctx.values()

    def table(element, t="t", r="r", n_t=1):
        def run(ctx):
            x = v(ctx)
            el = element.format(**x)
            t_ = x["t1"] * 10 if t == "t1*10" else x["t"]
            r_ = x["r0"] / 100 if r == "r0/100" else x["r"]
            return predict.prediction_table(ctx.workdir, el, [t_] * n_t, [r_])
        return run

    def sur(fn):
        return lambda ctx: fn(Surrogate.load(ctx.workdir), v(ctx))
    P, A = "bin/predict flags", "Surrogate API"
    cases = [
        Case(P, "--element=60 (a Z, as --help says)", "bin/predict --element={z}",
             table("{z}"), accept=True),
        Case(P, "--element=nd (lower case symbol)", "bin/predict --element=<symbol, lower "
             "case>", lambda ctx: table(v(ctx)["sym"].lower())(ctx), accept=True),
        Case(P, "--element=Xx", "bin/predict --element=Xx", table("Xx"), ["'Xx'", "57-71"]),
        Case(P, "--element=Fe (not an f-element)", "bin/predict --element=Fe", table("Fe"),
             ["'Fe'"]),
        Case(P, "--element=<Z not served>", "bin/predict --element={z_out}", table("{z_out}"),
             ["not served", "{sym}"]),
        Case(P, "--element=200", "bin/predict --element=200", table("200"), ["200"]),
        Case(P, "--temperature_ev=abc", "bin/predict --temperature_ev=abc",
             lambda ctx: cli.numbers("temperature_ev", ["abc"]), ["--temperature_ev", "'abc'"]),
        Case(P, "--temperature_ev=nan", "bin/predict --temperature_ev=nan",
             lambda ctx: cli.numbers("temperature_ev", ["nan"]), ["--temperature_ev", "finite"]),
        Case(P, "--temperature_ev=-1", "bin/predict --temperature_ev=-1",
             lambda ctx: cli.numbers("temperature_ev", ["-1"]), ["--temperature_ev", "> 0"]),
        Case(P, "--temperature_ev=inf", "bin/predict --temperature_ev=inf",
             lambda ctx: cli.numbers("temperature_ev", ["inf"]), ["--temperature_ev"]),
        Case(P, "--density=1e-13x", "bin/predict --density=1e-13x",
             lambda ctx: cli.numbers("density", ["1e-13x"]), ["--density", "'1e-13x'"]),
        Case(P, "--density=0", "bin/predict --density=0",
             lambda ctx: cli.numbers("density", ["0"]), ["--density"]),
        Case(P, "two temperatures, one density",
             "bin/predict --element={sym} --temperature_ev={t},{t} --density={r}",
             table("{sym}", n_t=2), ["one density per temperature"]),
        Case(P, "temperature above the domain",
             "bin/predict --element={sym} --temperature_ev=<10 x the domain's top> "
             "--density={r}", table("{sym}", t="t1*10"), ["temperature_ev", "training domain"]),
        Case(P, "density below the domain",
             "bin/predict --element={sym} --temperature_ev={t} --density=<the domain's lowest "
             "/ 100>", table("{sym}", r="r0/100"), ["density_gcc", "training domain"]),
        Case(P, "--output in a missing folder", "bin/predict --output=predict_out/missing/u.txt",
             lambda ctx: cli.output_file("output", str(ctx.path("predict_out/missing/u.txt"))),
             ["--output", "does not exist"]),
        Case(P, "--output is a folder", "bin/predict --output=<the workdir>",
             lambda ctx: cli.output_file("output", str(ctx.workdir)), ["--output", "folder"]),
        Case(P, "--workdir does not exist", "bin/predict --workdir=nowhere --element={sym}",
             lambda ctx: predict.prediction_table(ctx.path("nowhere"), v(ctx)["sym"],
                                                  [v(ctx)["t"]], [v(ctx)["r"]]),
             ["nowhere", "model.json", "not found"]),
        Case(A, "2-D temperature array", "Surrogate.spectrum({sym}, <2x2 array of {t}>, {r})",
             sur(lambda s, x: s.spectrum(x["sym"], np.full((2, 2), x["t"]), x["r"])),
             ["temperature_ev", "1-D"]),
        Case(A, "temperature as text", "Surrogate.spectrum({sym}, 'hot', {r})",
             sur(lambda s, x: s.spectrum(x["sym"], "hot", x["r"])), ["temperature_ev", "hot"]),
        Case(A, "3 temperatures, 2 densities", "Surrogate.spectrum({sym}, [{t}] * 3, [{r}] * 2)",
             sur(lambda s, x: s.spectrum(x["sym"], [x["t"]] * 3, [x["r"]] * 2)),
             ["temperature_ev", "density_gcc"]),
        Case(A, "NaN density", "Surrogate.planck_mean({sym}, {t}, nan)",
             sur(lambda s, x: s.planck_mean(x["sym"], x["t"], np.nan)), ["density_gcc"]),
        Case(A, "element None", "Surrogate.spectrum(None, {t}, {r})",
             sur(lambda s, x: s.spectrum(None, x["t"], x["r"])), ["None"]),
        Case(A, "chunk = 0", "Surrogate.load(<workdir>, chunk=0)",
             lambda ctx: Surrogate.load(ctx.workdir, chunk=0), ["chunk"]),
        Case(A, "on_domain_error='ignore'", "Surrogate.load(<workdir>, on_domain_error='ignore')",
             lambda ctx: Surrogate.load(ctx.workdir, on_domain_error="ignore"),
             ["on_domain_error"]),
        Case(A, "regressor='bogus'", "Surrogate.load(<workdir>, regressor='bogus')",
             lambda ctx: Surrogate.load(ctx.workdir, regressor="bogus"), ["bogus", "available"]),
    ]
    return cases


def _with(cfg, key: str, value):
    """A copy of ConfigDict `cfg` with dotted `key` set to `value`, of any type (as a config
    file or a Python caller may write it; flags would be type-checked by ml_collections)."""
    from ml_collections import ConfigDict
    d = cfg.to_dict()
    node, leaf = _node(d, key)
    node[leaf] = value
    return ConfigDict(d)


def encode_value(value):
    """JSON form of a config value: non-finite floats as {'float': 'nan' | 'inf' | '-inf'}."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def decode_value(value):
    """Inverse of `encode_value`."""
    if isinstance(value, dict) and set(value) == {"float"}:
        return float(value["float"])
    return value


CONFIG_VALUES = [   # (config, key, value, expected fragments)
    ("cae", "train.max_seconds", -1.0, ["train.max_seconds", ">= 0"]),
    ("cae", "train.max_seconds", float("nan"), ["train.max_seconds"]),
    ("cae", "train.max_seconds", float("inf"), ["train.max_seconds", "finite"]),
    ("cae", "train.min_delta", float("nan"), ["train.min_delta", "finite"]),
    ("cae", "train.min_delta", -0.1, ["train.min_delta"]),
    ("cae", "train.learning_rate", 0.0, ["train.learning_rate", "> 0"]),
    ("cae", "train.learning_rate", float("nan"), ["train.learning_rate"]),
    ("cae", "train.learning_rate", -1e-3, ["train.learning_rate"]),
    ("cae", "train.epochs", 0, ["train.epochs", ">= 1"]),
    ("cae", "train.epochs", 2.5, ["train.epochs", "integer"]),
    ("cae", "train.epochs", "ten", ["train.epochs", "integer"]),
    ("cae", "train.batch_size", 0, ["train.batch_size"]),
    ("cae", "train.batch_size", -3, ["train.batch_size"]),
    ("cae", "train.patience", -1, ["train.patience"]),
    ("cae", "train.plateau_factor", 1.5, ["train.plateau_factor", "(0, 1)"]),
    ("cae", "train.plateau_factor", 0.0, ["train.plateau_factor"]),
    ("cae", "train.eval_every", 0, ["train.eval_every"]),
    ("cae", "train.checkpoint_every", 0, ["train.checkpoint_every"]),
    ("cae", "train.weight_decay", -1.0, ["train.weight_decay"]),
    ("cae", "train.grad_clip", float("nan"), ["train.grad_clip"]),
    ("cae", "train.min_lr_scale", 0.0, ["train.min_lr_scale"]),
    ("cae", "train.seed", True, ["train.seed"]),
    ("cae", "latent.regressor", "bogus", ["latent.regressor", "'xgboost', 'mlp', 'both'"]),
    ("cae", "latent.mlp_train.epochs", 0, ["latent.mlp_train.epochs"]),
    ("cae", "latent.finetune_train.learning_rate", float("nan"),
     ["latent.finetune_train.learning_rate"]),
    ("cae", "latent.finetune_train.max_seconds", -5.0, ["latent.finetune_train.max_seconds"]),
    ("cae", "data.split", "bogus", ["data.split", "heldout_nodes"]),
    ("cae", "data.test_fraction", 1.5, ["data.test_fraction", "(0, 1)"]),
    ("cae", "data.test_fraction", 0.0, ["data.test_fraction"]),
    ("cae", "data.val_fraction", -0.1, ["data.val_fraction"]),
    ("cae", "data.n_energy", 0, ["data.n_energy"]),
    ("cae", "data.n_energy", "200", ["data.n_energy"]),
    ("cae", "data.scaling", "sqrt", ["data.scaling", "cbrt"]),
    ("cae", "data.elements", "Xx", ["data.elements", "'Xx'"]),
    ("cae", "data.elements", "Nd,Fe", ["data.elements", "'Fe'"]),
    ("cae", "data.path", "/nonexistent/data.h5", ["data.path", "/nonexistent/data.h5"]),
    ("cae", "loss.name", "huber", ["loss.name", "wmse"]),
    ("cae", "model", "transformer", ["config.model", "'cae'"]),
    ("cae", "seed", "zero", ["config.seed", "integer"]),
    ("fcnn", "fcnn.ensemble", 0, ["fcnn.ensemble"]),
    ("fcnn", "loss.name", "bogus", ["loss.name"]),
    ("stage_basis", "stage_basis.min_fraction", 2.0, ["stage_basis.min_fraction", "(0, 1)"]),
    ("stage_basis", "stage_basis.row_steps", 0, ["stage_basis.row_steps"]),
    ("stage_basis", "data.split", "bogus", ["data.split"]),
    ("stage_basis", "train.min_delta", float("nan"), ["train.min_delta"]),
    ("xsec", "data.floor", 2.0, ["data.floor"]),
    ("xsec", "loss.name", "mse", ["loss.name", "msle"]),
    ("xsec", "xsec.ensemble", 0, ["xsec.ensemble"]),
    ("classifier", "classifier.ensemble", 0, ["classifier.ensemble"]),
]


def _config(name):
    from configs import cae as cae_config
    from opacity_jax import config_files
    return cae_config.get_config() if name == "cae" else config_files.load(name)


def config_cases() -> List[Case]:
    """Bad config values: each must fail before any data is loaded, leaving no workdir."""
    from opacity_jax.train import experiment

    def train(recipe, wd):
        def run(ctx):
            (key, value), = recipe["set"].items()
            cfg = _with(_config(recipe["config"]), key, decode_value(value))
            ctx.path("cfg").mkdir(exist_ok=True)
            return experiment.run(cfg, ctx.path(wd), progress=False)
        return run
    cases = []
    for i, (name, key, value, exp) in enumerate(CONFIG_VALUES):
        recipe = {"config": name, "set": {key: encode_value(value)}}
        wd = f"cfg/c{i}"
        label = f"{key} = {value!r}" if name == "cae" else f"{name}: {key} = {value!r}"
        cases.append(Case("config value (bin/train)", label,
                          f"bin/train --config=configs/{name}.py --workdir={wd} with "
                          f"config.{key} = {value!r}", train(recipe, wd), exp, recipe=recipe,
                          debris=lambda ctx, wd=wd: [ctx.path(wd)]))
    # A missing parent of --workdir is created (a fresh clone has no runs/), so the case is a
    # bad config in a missing folder: the error, and no folder left behind.
    recipe = {"config": "cae", "set": {"train.max_seconds": -1.0}}
    cases.append(Case("bin/train flags", "--workdir in a missing folder, bad config value",
                      "bin/train --config=configs/cae.py --workdir=no/such/wd with "
                      "config.train.max_seconds = -1.0",
                      lambda ctx: experiment.run(_with(_config("cae"), "train.max_seconds",
                                                       -1.0), ctx.path("no/such/wd")),
                      ["train.max_seconds"], recipe=recipe, debris=lambda ctx: [ctx.path("no")]))
    return cases


def subprocess_cases() -> List[Case]:
    """A few cases through the bin/ scripts themselves (one-line 'bin/x: ...' errors)."""
    recipe = {"edits": [{"op": "truncate_state", "stage": "*", "steps": "all"}]}

    def predict_truncated(ctx):
        t = ctx.values()["t0"]
        return _bin("predict", f"--workdir={ctx.variant(recipe)}", "--element=Nd",
                    f"--temperature_ev={t * 1.01}", "--density=1e-13")
    return [
        Case("bin/ subprocess", "bin/predict, every checkpoint truncated",
             "bin/predict --workdir=<edited workdir> --element=Nd --temperature_ev=<1.01 x "
             "the domain's lowest> --density=1e-13", predict_truncated,
             ["bin/predict:", "checkpoints/cae/", "re-run bin/train"], recipe=recipe),
        Case("bin/ subprocess", "bin/complete on a binary file",
             "bin/complete --input=binary.dat --output=c_out",
             lambda ctx: _bin("complete", f"--input={ctx.path('binary.dat')}",
                              f"--output={ctx.path('c_out')}"),
             ["bin/complete:", "binary.dat", "UTF-8"], inputs=["binary.dat"],
             debris=lambda ctx: [ctx.path("c_out")]),
    ]


def all_cases(subprocesses: bool = True, slow: bool = True) -> List[Case]:
    """Every case of the corpus, in manifest order (without the bin/ subprocess or the slow
    ones when asked)."""
    cases = (text_table_cases() + spectrum_table_cases() + hdf5_cases() + model_json_cases()
             + checkpoint_cases() + query_cases() + config_cases() + subprocess_cases()
             + slow_cases())
    return [c for c in cases if (subprocesses or c.kind != "bin/ subprocess")
            and (slow or not c.slow)]


def slow_cases() -> List[Case]:
    """Cases that train or evaluate for seconds: the standalone command runs them."""
    from opacity_jax.serve.surrogate import Surrogate
    from opacity_jax.train import experiment
    from opacity_jax.train import workdir as wl

    def large_query(ctx):
        x = ctx.values()
        n = 300_000
        rng = np.random.default_rng(0)
        t = np.exp(rng.uniform(np.log(x["t0"]), np.log(x["t1"]), n))
        r = np.exp(rng.uniform(np.log(x["r0"]), np.log(x["r1"]), n))
        k = Surrogate.load(ctx.workdir).spectrum(x["sym"], t, r)
        if k.shape[0] != n or not np.all(np.isfinite(k)):
            raise AssertionError(f"300,000-point query gave shape {k.shape}")

    # A full copy: training writes beside the workdir's files.
    diverge = {"edits": [], "copy": "full", "set": {"train.learning_rate": 1e6}}

    def diverging(ctx):
        w = ctx.variant(diverge)
        before = (w / "config.json").read_bytes()
        cfg = wl.read_config(w)
        (key, value), = diverge["set"].items()
        cfg = _with(cfg, key, value)
        try:
            experiment.run(cfg, w, progress=False)
        finally:
            # Correct behaviour besides the error: the workdir still serves its model, with
            # the config it was trained with.
            if (w / "config.json").read_bytes() != before:
                raise AssertionError("config.json was overwritten by the diverged run")
            Surrogate.load(w).spectrum(ctx.values()["sym"], ctx.values()["t"],
                                       ctx.values()["r"])
    h3 = "h5/h3.h5"
    return [
        Case("Surrogate API", "300,000-point spectrum query", "Surrogate.spectrum({sym}, "
             "<300,000 temperatures>, <300,000 densities>) (in the domain)", large_query,
             accept=True, slow=True),
        Case("config value (bin/train)", "train.learning_rate = 1e6 on a trained workdir",
             "bin/train --workdir=<a trained workdir> --config.train.learning_rate=1e6 (its "
             "config otherwise)", diverging, ["cae", "non-finite", "learning_rate"],
             recipe=diverge, slow=True),
        Case("bin/ subprocess", "bin/train on a corrupt kappa chunk",
             f"bin/train --config=configs/cae.py --workdir=h5_sub/wd --config.data.path={h3}",
             lambda ctx: _bin("train", "--config=configs/cae.py",
                              f"--workdir={ctx.path('h5_sub/wd')}",
                              f"--config.data.path={ctx.path(h3)}", "--config.data.elements=",
                              f"--config.data.n_energy={H5_SHAPE['n_energy']}"),
             ["bin/train:", "h3.h5", "corrupt"], inputs=[h3],
             debris=lambda ctx: [ctx.path("h5_sub")], slow=True),
        Case("bin/ subprocess", "bin/predict --element=60 (a Z)",
             "bin/predict --workdir=<workdir> --element={z} --temperature_ev={t} --density={r}",
             lambda ctx: _bin("predict", f"--workdir={ctx.workdir}",
                              f"--element={ctx.values()['z']}",
                              f"--temperature_ev={ctx.values()['t']}",
                              f"--density={ctx.values()['r']}"), accept=True, slow=True),
    ]


# ------------------------------------------------------------------- manifest and running
def manifest(scratch: Path) -> dict:
    """The manifest: what wrote the fixtures, the HDF5 library that wrote the .h5 files, and
    every case's entry (`Case.spec`)."""
    import h5py
    return {"written_by": WRITE_COMMAND, "hdf5_version": h5py.version.hdf5_version,
            "h5py_version": h5py.version.version,
            "cases": [c.spec() for c in all_cases()]}


def manifest_text(m: dict) -> str:
    """manifest.json's text: one line per case (diffs show which cases changed)."""
    head = json.dumps({k: v for k, v in m.items() if k != "cases"}, ensure_ascii=False)[:-1]
    return (head + ', "cases": [\n' + ",\n".join(json.dumps(c, ensure_ascii=False)
                                                for c in m["cases"]) + "\n]}\n")


def write_fixtures(folder: Path) -> List[Path]:
    """Write every fixture file and manifest.json under `folder` (replacing what was there);
    returns the paths written."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="bad_inputs_fx_") as scratch:
        files = fixture_files(Path(scratch))
        files[MANIFEST] = manifest_text(manifest(Path(scratch))).encode()
        # The fixtures are bytes, whatever they look like: no end-of-line conversion by git.
        files[".gitattributes"] = b"* -text\n"
    if folder.exists():
        shutil.rmtree(folder)
    out = []
    for rel, data in sorted(files.items()):
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out.append(p)
    return out


def read_manifest(folder: Path = FIXTURES) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))


def corpus(root: Path, workdir: Path, subprocesses: bool = True, slow: bool = False,
           fixtures: Path = FIXTURES) -> tuple:
    """(Context, [(case, manifest entry)]) of every case of the committed manifest, with the
    fixtures copied under `root` and `workdir` (a trained CAE workdir, both regressors, with
    stage records) as the model the workdir cases edit. Raises AssertionError when the code's
    cases and the manifest disagree (re-run the fixture script)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(fixtures, root, dirs_exist_ok=True)
    entries = read_manifest(fixtures)["cases"]
    cases = all_cases(subprocesses, slow)
    entries = [e for e in entries if (subprocesses or e["kind"] != "bin/ subprocess")
               and (slow or not e["slow"])]
    specs = [c.spec() for c in cases]
    if specs != entries:
        diff = [(a and a["name"], b and b["name"]) for a, b in zip(specs, entries) if a != b]
        raise AssertionError(f"tests/bad_inputs.py and {fixtures / MANIFEST} disagree "
                             f"({len(specs)} vs {len(entries)} cases; first: {diff[:3]}); "
                             f"re-run {WRITE_COMMAND}")
    return Context(root, Path(workdir)), list(zip(cases, entries))


def run_corpus(ctx: Context, pairs) -> list:
    """[(case, outcome, message)] for every (case, manifest entry), judged by the manifest
    entry's expected fragments."""
    return [(c, *outcome(c, ctx, e["expect"])) for c, e in pairs]


def table_markdown(results) -> str:
    """The corpus table: counts by outcome and kind, then every case with its message."""
    kinds = list(dict.fromkeys(c.kind for c, _, _ in results))
    names = ["clear", "correct", "unclear", "silent", "crash"]
    lines = ["# Bad-input corpus: outcome of every case", "",
             "Written by `python3 tests/bad_inputs.py --out=reports/reliability/corpus.md` from "
             "the committed fixtures (tests/fixtures/bad_inputs/, manifest.json; written by "
             f"`{WRITE_COMMAND}`). tests/test_bad_inputs.py runs the same corpus but its `slow` "
             "cases (training runs, a 300,000-point query; marked * below) and requires every "
             "case to be `clear` or `correct`.", "",
             "| kind | cases | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for k in kinds + ["all"]:
        rs = [o for c, o, _ in results if k == "all" or c.kind == k]
        lines.append(f"| {k} | {len(rs)} | " + " | ".join(str(rs.count(n)) for n in names)
                     + " |")
    lines += ["", "| kind | case | outcome | message |", "|---|---|---|---|"]
    for c, o, m in results:
        m = m.replace("|", "\\|")
        lines.append(f"| {c.kind} | {c.name.replace('|', '/')}{' *' if c.slow else ''} | {o} "
                     f"| {m[:240]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the outcome table here "
                    "(e.g. reports/reliability/corpus.md)")
    ap.add_argument("--fixtures", default=None, help="write the fixtures and manifest into "
                    "this folder (tests/fixtures/bad_inputs) instead of running the corpus")
    ap.add_argument("--workdir", default=None, help="a trained tiny CAE workdir to copy "
                    "(default: train one)")
    args = ap.parse_args(argv)
    if args.fixtures:
        written = write_fixtures(Path(args.fixtures))
        size = sum(p.stat().st_size for p in written)
        print(f"wrote {len(written)} files ({size / 1024:.0f} KiB) under {args.fixtures}")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as tmp:
        tmp = Path(tmp)
        wd = Path(args.workdir) if args.workdir else tiny_workdir(tmp)
        ctx, pairs = corpus(tmp / "corpus", wd, slow=True)
        results = run_corpus(ctx, pairs)
        text = table_markdown(results)
        # Paths of the temporary folder are not part of the result.
        text = text.replace(str(tmp), "<tmp>")
    out = Path(args.out or "reports/reliability/corpus.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    bad = [(c.name, o) for c, o, _ in results if o not in ("clear", "correct")]
    print(f"{len(results)} cases, {len(bad)} not clear; wrote {out}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
