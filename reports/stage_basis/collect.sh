#!/usr/bin/env bash
# Re-creates the measurements in this folder (2-core CPU; see README.md for the wall times), then
# copies each run's evaluation files here. Usage: bash reports/stage_basis/collect.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs}
if [[ "${SKIP_TRAINING:-0}" != 1 ]]; then
  run() { w=$1; preset=$2; off=$3; shift 3
          bin/train --config=configs/stage_basis.py$preset --workdir="$runs/$w" "$@"
          bin/evaluate --workdir="$runs/$w" --offgrid="$off"; }
  run sb "" 40
  run sb_cpu ":cpu" 20
  run sb_cpu_random ":cpu" 0 --config.data.split=random
  run sb_cpu_rows ":cpu" 0 --config.data.split=heldout_t_rows
  run sb_rows "" 0 --config.data.split=heldout_t_rows
  run sb_random "" 0 --config.data.split=random
  run sb_seed1 "" 0 --config.data.generator_seed=1
  run sb_seed1_nocorr "" 0 --config.data.generator_seed=1 --config.stage_basis.correction=False
  run sb_nocorr "" 0 --config.stage_basis.correction=False
  run sb_ipd "" 0 --config.data.continuum_lowering=debye
  run sb_ipd_nocorr "" 0 --config.data.continuum_lowering=debye --config.stage_basis.correction=False
fi
for w in sb sb_rows sb_random sb_seed1 sb_seed1_nocorr sb_nocorr sb_ipd sb_ipd_nocorr sb_cpu sb_cpu_rows sb_cpu_random; do
  [[ -f "$runs/$w/eval/report.md" ]] || continue
  mkdir -p "reports/stage_basis/$w"
  for f in report.md metrics.json offgrid.md offgrid.json; do
    [[ -f "$runs/$w/eval/$f" ]] && cp "$runs/$w/eval/$f" "reports/stage_basis/$w/"
  done
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps({'train_summary': m['train_summary'], 'stage_basis': {k: m['stage_basis'][k] for k in ('n_stages', 'windows', 'correction', 'prior')}, 'dataset_provenance': m['dataset_provenance']}, indent=1))" "$runs/$w/model.json" > "reports/stage_basis/$w/model_summary.json"
done
python3 reports/stage_basis/summarize.py > reports/stage_basis/summary.md
