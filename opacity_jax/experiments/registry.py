"""Which module trains, loads and evaluates each model family.

A family module exposes

    train(config, workdir, progress=True) -> dict     summary; writes model.json last
    load(workdir, **options)                          the family's inference object
    evaluate(workdir, **options) -> dict              metrics; writes <workdir>/eval/
    report(metrics) -> str                            the text bin/evaluate prints

and is named here by the `model` string it writes into model.json (= `config.model` of its
configs). Modules are imported by dotted name on first use, so a family's dependencies load
only when that family is used, and a new family is one line in FAMILIES.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from opacity_jax.train import workdir as workdir_lib

# model name (config.model / model.json["model"]) -> family module
FAMILIES = {
    "cae": "opacity_jax.experiments.spectra",
    "fcnn": "opacity_jax.experiments.spectra",
    "classifier": "opacity_jax.experiments.inverse",
    "xsec": "opacity_jax.experiments.xsec",
    "xsec_pinn": "opacity_jax.experiments.xsec",
    "xsec_prior": "opacity_jax.experiments.xsec",
    "stage_basis": "opacity_jax.experiments.stage_basis",
}


def names() -> list:
    """The registered model names, sorted."""
    return sorted(FAMILIES)


def family(model: str) -> ModuleType:
    """The family module of model name `model`; ValueError naming the allowed names."""
    if model not in FAMILIES:
        raise ValueError(f"config.model / model.json 'model' must be one of {names()}, "
                         f"got {model!r}")
    return importlib.import_module(FAMILIES[model])


def family_of_workdir(workdir) -> ModuleType:
    """The family module of the model trained in `workdir` (its model.json's 'model')."""
    meta = workdir_lib.read_model_meta(workdir)
    return family(meta.get("model"))


def train(config, workdir, progress: bool = True) -> dict:
    """Train `config.model` into `workdir` (see the family module); returns its summary."""
    return family(config.model).train(config, workdir, progress=progress)


def load(workdir, **options):
    """The inference object of the model in `workdir` (Surrogate, InverseModel, ...)."""
    return family_of_workdir(workdir).load(workdir, **options)


def evaluate(workdir, **options) -> dict:
    """Evaluate the model in `workdir` with its family's evaluation; returns the metrics."""
    return family_of_workdir(workdir).evaluate(workdir, **options)
