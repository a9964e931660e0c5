#!/bin/bash
# HeH+ table from approximate curves with holes, completed and scored (demo.py docstring).
# Run from the repository root.
set -e
D=${1:-runs/xc_demo}
python3 reports/xsec_completion/demo.py make --dir=$D
rm -rf $D/out
bin/complete_xsec --input=$D/in --output=$D/out | tee $D/complete.txt
python3 reports/xsec_completion/demo.py score --dir=$D --json=reports/xsec_completion/heh_perturbed.json
