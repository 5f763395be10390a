#!/usr/bin/env bash
# One replicated study as a user runs it: a clone of this commit, a data set, params overrides, `reslab repro`; the
# report lands in benchmarks/results/ with a header saying what ran, where and how long.
#
#   bash benchmarks/study_run.sh NAME DATA [KEY=VALUE ...]
#   bash benchmarks/study_run.sh builtin-kfold-10 builtin replicates.folds=5 'replicates.seeds=[1,2,3,4,5,6,7,8,9,10]'
#   bash benchmarks/study_run.sh clipart-holdout-10 .reslab/clipart filter.min_images_per_class=50 \
#       replicates.design=holdout 'replicates.seeds=[1,2,3,4,5,6,7,8,9,10]'
#
# DATA: an ImageFolder, or `builtin` (the generated set, as make run makes it). Values are YAML. The clone is
# STUDY_DIR/NAME (default .reslab/studies/NAME); it reuses this checkout's .venv, its own sources first on the path.
# With STUDY_EVALUATE_ONLY=1 an existing clone only takes this checkout's statistics/ and reruns `evaluate` (the
# trained models are kept): for a change of the interval's arithmetic.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
name=$1 data=$2
shift 2
work=${STUDY_DIR:-$repo/.reslab/studies}/$name
export PATH="$repo/.venv/bin:$PATH" PYTHONPATH="$work/src" MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true \
  DVC_NO_ANALYTICS=1
unset MLFLOW_TRACKING_URI
started=$(date +%s)
if [ "${STUDY_EVALUATE_ONLY:-0}" = 1 ]; then
  rm -rf "$work/src/reslab/statistics" && cp -r "$repo/src/reslab/statistics" "$work/src/reslab/statistics"
  (cd "$work" && dvc repro evaluate)
else
  rm -rf "$work"
  git clone -q "$repo" "$work"
  if [ "$data" = builtin ]; then
    (cd "$work" && reslab data synth --out data)
  else
    cp -r "$data" "$work/data"
  fi
  (cd "$work" && dvc add -q data && python - "$@" <<'EOF'
import sys
import yaml
from pathlib import Path
from reslab.config import write_params
write_params(Path("params.yaml"), {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])})
EOF
  )
  (cd "$work" && reslab repro)
fi
wall=$(( $(date +%s) - started ))
out=benchmarks/results/$name-$(date +%F).md
if [ "${STUDY_EVALUATE_ONLY:-0}" = 1 ]; then
  note="<!-- evaluate rerun in that clone with the statistics/ of $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src/reslab/statistics || echo '+changes'): ${wall} s; $(date +%F) -->"
else
  echo "<!-- reports/comparison.md of \`bash benchmarks/study_run.sh $name $data $*\` (a clone of $(git -C "$work" rev-parse --short HEAD), reslab repro); $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, torch $(python -c 'import torch; print(torch.__version__)'); wall ${wall} s; $(date +%F) -->" > "$work/.study-header"
  note=""
fi
{
  cat "$work/.study-header"
  [ -z "$note" ] || echo "$note"
  cat "$work/reports/comparison.md"
} > "$out"
echo "$out"
