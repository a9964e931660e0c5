#!/bin/bash
# Calibrated perturbed-prior arm on the default seven-ion table (J_max 12, 100 wavelengths;
# generated and cached by any default cross-section run) without Na2+ (six ions), per split.
# Run from the repository root.
T=${OPACITY_JAX_CACHE:-$HOME/.cache/opacity_jax}/xsec_all7_J12_L100_b23587e245bf.h5
for s in levels v_levels wavelength_windows; do
  wd=runs/six/${s}__xsec_prior_perturbed_calibrated__continuous
  echo "== $s $(date -u +%T)"
  bin/train --config=configs/xsec_prior.py:perturbed --workdir=$wd --config.data.split=$s \
    --config.data.path=$T --config.data.molecules=H2+,He2+,HeH+,LiH+,NaH+,Li2+ \
    --config.train.max_seconds=120 --config.prior.shift_head=False --progress=false && \
    bin/evaluate_xsec --workdir=$wd
  echo "== done $s $(date -u +%T)"
  cp $wd/eval/metrics.json reports/xsec_prior_calibrated/$s.json
  cp $wd/eval/xsec_true_vs_pred.png reports/xsec_prior_calibrated/${s}__xsec_true_vs_pred.png
done
