"""Model families: one module per family, each with the verbs `train`, `load` and `evaluate`.

`registry.family(name)` imports the module that serves a `config.model` / `model.json["model"]`
name on first use, so importing this package imports no family (and no trainer).
"""
