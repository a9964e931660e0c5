"""Model families: one module per family, each with the verbs `train`, `load` and `evaluate`.

`registry.family(name)` imports the module that serves a `config.model` / `model.json["model"]`
name on first use, so importing this package imports no family (and no trainer).

Families (in the registry): `spectra` ('cae', 'fcnn'), `inverse` ('classifier'), `xsec`
('xsec', 'xsec_pinn'). Built on them, with their own entry points: `ensemble` (deep ensembles
of a trained workdir and their calibration), `completion` (tables with holes), `active`
(active learning against the generator), `ablation` (physics-loss ablation over the families).
"""
