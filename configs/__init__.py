"""Config files for bin/train and the other tools (`--config=configs/<name>.py[:preset]`).

Each file defines `get_config(preset=None)` returning an ml_collections.ConfigDict. The files are
loaded by path, not installed, so a config that builds on another one loads its sibling with
`opacity_jax.config_files.sibling(__file__, "<name>")` (configs/fcnn.py on cae.py, xsec_pinn.py
on xsec.py, cae_fullres.py on cae.py), and loop sections are written as
`opacity_jax.config_files.train_section(field=value, ...)`: LoopConfig's defaults plus the
fields that differ.
"""
