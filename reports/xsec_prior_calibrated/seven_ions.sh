#!/bin/bash
# The residual net with the lobe-shift head (prior.shift_head, default on) on all seven ions
# (Na2+ included), three splits: first on the prior from perturbed curves calibrated on the
# training rows (configs/xsec_prior.py:perturbed), then on the package's exact curves (default).
# Every arm trains at most 120 s. Run from the repository root; writes
# reports/xsec_prior_calibrated/seven_ions.json (collect_seven_ions.py) and a log per arm.
set -e
R=${RUNS:-runs/seven_ions}
mkdir -p "$R"
arm() {  # name preset split
  ( time ( bin/train --config=configs/xsec_prior.py:$2 --workdir=$R/$1 --config.data.split=$3 \
      --config.train.max_seconds=120 --progress=false && bin/evaluate_xsec --workdir=$R/$1 ) ) \
      > "$R/$1.log" 2>&1
}
for p in perturbed default; do
  for s in levels v_levels wavelength_windows; do arm ${p}_$s $p $s; done
done
python3 reports/xsec_prior_calibrated/collect_seven_ions.py $R
