"""Config files (configs/*.py) by path or name, and the shared `train` section.

configs/ is not an installed package: bin/train hands config files to ml_collections by path.
So a config that builds on a sibling (configs/fcnn.py on configs/cae.py) loads it with
`sibling(__file__, "cae")`, and tools that need several configs (bin/ablation,
bin/xsec_report) use `load("xsec", preset)`; this module is the one place that imports a
config file by path.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def load_module(path) -> ModuleType:
    """The config module at `path` (a .py file), loaded once per path."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    name = f"opacity_jax_config_{path.stem}_{abs(hash(str(path))):x}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def sibling(file, name: str) -> ModuleType:
    """Config module `name` in the same folder as config file `file` (pass `__file__`)."""
    return load_module(Path(file).with_name(f"{name}.py"))


def load(name: str, preset: Optional[str] = None) -> ml_collections.ConfigDict:
    """`get_config(preset)` of configs/<name>.py (or of the file `name` if it is a path)."""
    path = Path(name) if name.endswith(".py") else CONFIG_DIR / f"{name}.py"
    return load_module(path).get_config(preset)


def spectrum_data_section(elements: str, split: str, **fields) -> ml_collections.ConfigDict:
    """The `data` section the opacity-spectrum configs share: path "" (the embedded generator's
    cached grid), generator_seed 0, continuum_lowering "none" (or "debye"), n_energy 200 bins,
    test / val fractions 0.1, with `elements` ("" = all 28; symbols comma-separated), `split`
    ("heldout_nodes", "random", "heldout_t_rows") and any other field overridden by `fields`."""
    d = {"path": "", "generator_seed": 0, "continuum_lowering": "none", "elements": elements,
         "n_energy": 200, "split": split, "test_fraction": 0.1, "val_fraction": 0.1}
    d.update(fields)
    return ml_collections.ConfigDict(d)


def train_section(**fields) -> ml_collections.ConfigDict:
    """A `train` section: every `LoopConfig` field at its default, overridden by `fields`.

    `seed` is left out unless given, so the loop takes the config's top-level seed. Unknown
    field names are a ValueError naming the allowed ones (as LoopConfig.from_config).
    """
    from opacity_jax.train.loop import LoopConfig   # the defaults' only home

    names = [f.name for f in dataclasses.fields(LoopConfig)]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValueError(f"unknown train config keys {unknown}; allowed: {sorted(names)}")
    defaults = dataclasses.asdict(LoopConfig())
    return ml_collections.ConfigDict({n: fields.get(n, defaults[n]) for n in names
                                      if n != "seed" or n in fields})
