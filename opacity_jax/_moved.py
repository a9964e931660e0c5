"""Old import paths of modules that moved into packages, kept working.

`import opacity_jax.surrogate` (and `from opacity_jax import inverse`, ...) return the module at
its new home, the very same module object, so attributes, monkeypatching and isinstance checks
behave exactly as before. No file is left at the old path: a file there would be a second place
to edit. Code inside opacity_jax imports the new paths (tests/test_structure.py checks it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old dotted name -> new dotted name
MOVED = {
    "opacity_jax.surrogate": "opacity_jax.serve.surrogate",
    "opacity_jax.pipeline": "opacity_jax.serve.pipeline",
    "opacity_jax.trees": "opacity_jax.models.trees",
    "opacity_jax.serve.trees": "opacity_jax.models.trees",
    "opacity_jax.export": "opacity_jax.serve.export",
    "opacity_jax.predict": "opacity_jax.serve.predict",
    "opacity_jax.inverse": "opacity_jax.experiments.inverse",
    "opacity_jax.xsec_experiment": "opacity_jax.experiments.xsec",
    "opacity_jax.completion": "opacity_jax.experiments.completion",
    "opacity_jax.ensemble": "opacity_jax.experiments.ensemble",
    "opacity_jax.active": "opacity_jax.experiments.active",
    "opacity_jax.ablation": "opacity_jax.experiments.ablation",
    "opacity_jax.models.fcnn": "opacity_jax.models.mlp",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names; loading one imports the new module and puts it in sys.modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None   # a placeholder module; exec_module replaces it

    def exec_module(self, module):
        # The import system returns whatever sys.modules holds for the name after exec_module.
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


def install() -> None:
    """Register the finder once (called by opacity_jax/__init__.py)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        # First: an editable install's finder would otherwise map the old name to an old file.
        sys.meta_path.insert(0, _AliasFinder())
