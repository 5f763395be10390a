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

timed() {  # NAME DIR COMMAND...: run, log, print the wall time
  local name=$1 dir=$2 start
  shift 2
  start=$(date +%s.%N)
  (cd "$dir" && PYTHONPATH="$dir/src" "$@") >"$work/$name.log" 2>&1
  python -c "print(f'{\"$name\":<34} {$(date +%s.%N) - $start:7.1f} s')"
}

echo "# $(git rev-parse --short HEAD), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores," \
  "torch $(python -c 'import torch; print(torch.__version__)'), ray $(python -c 'import ray; print(ray.__version__)')," \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -Is)"
clone local
clone ray
timed "local: reslab repro (make run)" "$work/local" reslab repro
token=$work/ray-auth-token
python -c "import secrets; print(secrets.token_hex(32))" >"$token" && chmod 600 "$token"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token
timed "ray: ray start --head" "$work/ray" ray start --head --port 6390 --num-cpus "$(nproc)" --include-dashboard=false \
  --temp-dir "$work/ray-session"
timed "ray: reslab repro --executor ray" "$work/ray" reslab repro --executor ray --address 127.0.0.1:6390
(cd "$work/ray" && ray stop >/dev/null 2>&1 || true)
for f in reports/comparison.md metrics/evaluate.json dvc.lock; do
  if cmp -s "$work/local/$f" "$work/ray/$f"; then echo "$f: identical"; else echo "$f: DIFFERENT"; fi
done
echo "verdict (local): $(sed -n 's/^\*\*Verdict: \(.*\)\*\*.*/\1/p' "$work/local/reports/comparison.md")"
grep -h "training stage(s)\|done on\|done in" "$work/local: reslab repro (make run).log" "$work/ray: reslab repro --executor ray.log" 2>/dev/null | sed 's/^/  /' || true
