#!/usr/bin/env bash
# The demo: a real local scaling study, strong and weak, each ending with an HTML report
# (plots embedded) beside its study file in results/. Run by `make demo` (which sets up
# .venv first). A rerun resumes: points already recorded are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p results
for study in demo-strong demo-weak; do
  echo
  echo "=== scaling study: $study ==="
  hpc study run "$study" --out "results/$study.h5"
done
echo
hpc show results/demo-strong.h5 results/demo-weak.h5
echo
echo "Reports (open in a browser):"
for study in demo-strong demo-weak; do echo "  $PWD/results/$study.html"; done
echo "Study files: results/demo-*.h5 (schema in docs/SCHEMA.md, studies in docs/STUDIES.md)"
