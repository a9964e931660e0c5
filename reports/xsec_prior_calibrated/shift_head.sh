#!/bin/bash
# Lobe-shift head of the residual net (prior.shift_head), before / after, one ion per run
# (data.molecules: the table of that ion alone, generated and cached; its splits are the
# per-molecule splits of the seven-ion table). Li2+ with the package's curves (its calibrated
# perturbed prior is the exact-curve prior: the fitted shift rounds to 0.030 eV, README.md), HeH+
# with the calibrated perturbed prior, plus Li2+ with the calibrated perturbed prior on (v, J).
# The 'before' arms were run at commit 75b72a3 (no shift head), which computes the same as
# --config.prior.shift_head=False here. Run from the repository root; writes
# reports/xsec_prior_calibrated/shift_head.json (collect_shift_head.py).
R=${RUNS:-runs/shift_head}
arm() {  # name preset molecule split shift_head
  bin/train --config=configs/xsec_prior.py:$2 --workdir=$R/$1 --config.data.molecules=$3 \
    --config.data.split=$4 --config.prior.shift_head=$5 --config.train.max_seconds=120 \
    --progress=false && bin/evaluate_xsec --workdir=$R/$1
}
for s in levels v_levels wavelength_windows; do
  arm li2_before_$s default Li2+ $s False; arm li2_shift_$s default Li2+ $s True
  arm heh_before_$s perturbed HeH+ $s False; arm heh_shift_$s perturbed HeH+ $s True
done
arm li2p_before_levels perturbed Li2+ levels False; arm li2p_shift_levels perturbed Li2+ levels True
python3 reports/xsec_prior_calibrated/collect_shift_head.py $R
