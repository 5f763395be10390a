#!/usr/bin/env bash
# `make run`'s pipeline with the local executor vs `reslab repro --executor ray` on a local Ray cluster (`ray start
# --head`, this machine's cores), each in a fresh clone of this commit with the built-in data set, one after the
# other: wall times side by side, and whether the two give the same reports/comparison.md, metrics/evaluate.json and
# dvc.lock. Prints a report; commit it as benchmarks/results/executors-<machine>-<date>.txt.
#
#   bash benchmarks/executors.sh
#
# The clones reuse this checkout's .venv (install excluded from both times) with their own sources first on the
# path, as benchmarks/study_run.sh does. BENCH_DIR (default .reslab/bench-executors) holds them.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${BENCH_DIR:-$repo/.reslab/bench-executors}
export PATH="$repo/.venv/bin:$PATH" MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true DVC_NO_ANALYTICS=1 \
  RAY_USAGE_STATS_ENABLED=0
unset MLFLOW_TRACKING_URI RAY_ADDRESS
rm -rf "$work" && mkdir -p "$work"

clone() {  # a fresh clone with the built-in data set (as make run makes it)
  git clone -q "$repo" "$work/$1"
  (cd "$work/$1" && PYTHONPATH="$work/$1/src" reslab data synth --out data >/dev/null)
}

timed() {  # LOG DIR COMMAND...: run in DIR with its output in LOG, print the command and its wall time
  local log=$1 dir=$2 start
  shift 2
  start=$(date +%s.%N)
  (cd "$dir" && PYTHONPATH="$dir/src" "$@") >"$work/$log" 2>&1
  python -c "import sys; print(f'{sys.argv[1]:<52} {$(date +%s.%N) - $start:7.1f} s')" "$*"
}

echo "# $(git rev-parse --short HEAD), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores," \
  "torch $(python -c 'import torch; print(torch.__version__)'), ray $(python -c 'import ray; print(ray.__version__)')," \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -Is)"
clone local
clone ray
timed local.log "$work/local" reslab repro
session=$(mktemp -d /tmp/ray-bench-XXXX)  # short: Ray's socket paths have a length limit
trap 'pkill -KILL -f "$session" 2>/dev/null || true; rm -rf "$session"' EXIT  # this cluster only (not `ray stop`)
token=$work/ray-auth-token
python -c "import secrets; print(secrets.token_hex(32))" >"$token" && chmod 600 "$token"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token
timed ray-start.log "$work/ray" ray start --head --port 6390 --num-cpus "$(nproc)" --include-dashboard=false \
  --temp-dir "$session"
timed ray.log "$work/ray" reslab repro --executor ray --address 127.0.0.1:6390
for f in reports/comparison.md metrics/evaluate.json dvc.lock; do
  if cmp -s "$work/local/$f" "$work/ray/$f"; then echo "$f: identical"; else echo "$f: DIFFERENT"; fi
done
echo "verdict (local): $(sed -n 's/^\*\*Verdict: \(.*\)\*\*.*/\1/p' "$work/local/reports/comparison.md")"
grep -h "training stage(s)\|done on\|done in" "$work/local.log" "$work/ray.log" | sed 's/^/  /' || true
