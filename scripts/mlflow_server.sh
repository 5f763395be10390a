#!/usr/bin/env bash
# A shared MLflow tracking server, as teams run it: `mlflow server` on a PostgreSQL backend store, with artifacts
# proxied by the server (--serve-artifacts, MLflow's default, into --artifacts-destination). Every client, on any
# machine, sends runs, metrics, models and artifacts over HTTP; nothing goes to the clients' own folders.
#   scripts/mlflow_server.sh start DIR [OPTIONS] [-- MLFLOW_SERVER_ARGS]   start it, print its tracking URI
#   scripts/mlflow_server.sh stop DIR                                      stop it (and the PostgreSQL it started)
# DIR holds the server's state: server.log, server.pid, tracking_uri, and by default postgres/ and artifacts/.
# Options of start:
#   --port N                    the server's port (default 5000)
#   --host ADDR                 the interface it listens on (default 127.0.0.1: this machine only). For other
#                               machines: --host 0.0.0.0 -- --allowed-hosts 'NAME,NAME:PORT' with the names clients
#                               use (MLflow answers only localhost and private-IP Host headers unless told more)
#   --backend-store-uri URL     an existing database (postgresql://USER@HOST:PORT/DB); default: a PostgreSQL server
#                               started in DIR/postgres by scripts/pg_server.sh, database `mlflow`
#   --pg-port N                 that PostgreSQL server's port (default 55433; pg_server.sh's own default is 55432)
#   --artifacts-destination D   where the server stores artifacts: a folder or an object store URI such as
#                               s3://bucket/path (default DIR/artifacts)
#   --workers N                 server worker processes (default 2)
#   --wait S                    seconds to wait for the server to answer (default 180; a new database is migrated
#                               first)
#   -- ARGS                     passed on to `mlflow server` (--allowed-hosts, --cors-allowed-origins, ...)
# Clients: export MLFLOW_TRACKING_URI=<the printed URI>, then `dvc repro` or `reslab tune` as usual.
# The mlflow command: $MLFLOW, else the project's .venv/bin/mlflow, else mlflow on PATH.
set -euo pipefail
usage="usage: mlflow_server.sh start DIR [--port N] [--host ADDR] [--backend-store-uri URL] [--pg-port N]
       [--artifacts-destination D] [--workers N] [--wait S] [-- MLFLOW_SERVER_ARGS] | stop DIR"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}
[ "$cmd" = start ] || [ "$cmd" = stop ] || { echo "$usage" >&2; exit 2; }
[ -n "${2:-}" ] || { echo "$usage" >&2; exit 2; }
dir=$(realpath -m "$2")
shift 2
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

# True when the pid in DIR/server.pid is a live mlflow process (not a stale file or a reused pid).
server_pid() {
  local pid
  pid=$(cat "$dir/server.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q mlflow && echo "$pid"
}

if [ "$cmd" = stop ]; then
  if pid=$(server_pid); then
    kill -TERM -- "-$pid" 2>/dev/null || true  # the server's whole process group: uvicorn and its workers
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/server.pid"
  if [ -f "$dir/postgres.started" ]; then
    bash "$here/pg_server.sh" stop "$dir/postgres"
    rm -f "$dir/postgres.started"
  fi
  exit 0
fi

port=5000 host=127.0.0.1 backend="" pg_port=55433 artifacts="$dir/artifacts" workers=2 wait_s=180
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?$usage}; shift 2 ;;
    --host) host=${2:?$usage}; shift 2 ;;
    --backend-store-uri) backend=${2:?$usage}; shift 2 ;;
    --pg-port) pg_port=${2:?$usage}; shift 2 ;;
    --artifacts-destination) artifacts=${2:?$usage}; shift 2 ;;
    --workers) workers=${2:?$usage}; shift 2 ;;
    --wait) wait_s=${2:?$usage}; shift 2 ;;
    --) shift; break ;;
    *) echo "mlflow_server.sh: unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done

mlflow=${MLFLOW:-}
[ -n "$mlflow" ] || { [ -x "$here/../.venv/bin/mlflow" ] && mlflow=$(realpath "$here/../.venv/bin/mlflow"); } || true
[ -n "$mlflow" ] || mlflow=$(command -v mlflow) \
  || { echo "mlflow_server.sh: mlflow not found (run make setup, or set MLFLOW=/path/to/mlflow)" >&2; exit 3; }
python=$(dirname "$mlflow")/python; [ -x "$python" ] || python=python3

mkdir -p "$dir"
if pid=$(server_pid); then
  echo "mlflow_server.sh: a server from $dir is already running (pid $pid, $(cat "$dir/tracking_uri" 2>/dev/null));" \
    "stop it first: scripts/mlflow_server.sh stop $dir" >&2
  exit 1
fi

if [ -z "$backend" ]; then
  pg_url=$(bash "$here/pg_server.sh" start "$dir/postgres" "$pg_port")  # exits 3 where PostgreSQL is missing
  touch "$dir/postgres.started"
  if [ "$(psql "$pg_url" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")" != 1 ]; then
    psql "$pg_url" -qc "CREATE DATABASE mlflow"
  fi
  backend="${pg_url%/*}/mlflow"
fi
case "$artifacts" in
  *://*) ;;                                            # an object store: the server's credentials reach it
  *) artifacts=$(realpath -m "$artifacts"); mkdir -p "$artifacts" ;;
esac

# Its own session (setsid), so that `stop` ends the server and its workers as one process group; run from DIR, so
# that nothing the server writes by default lands in the caller's folder.
(cd "$dir" && exec setsid "$mlflow" server --backend-store-uri "$backend" --serve-artifacts \
   --artifacts-destination "$artifacts" --host "$host" --port "$port" --workers "$workers" "$@" \
   >"$dir/server.log" 2>&1 </dev/null) &
echo $! >"$dir/server.pid"

case "$host" in 0.0.0.0|::|'[::]') probe_host=127.0.0.1; url_host=$(hostname -f 2>/dev/null || hostname) ;;
                *) probe_host=$host; url_host=$host ;; esac
case "$url_host" in *:*) url_host="[$url_host]" ;; esac  # an IPv6 address
case "$probe_host" in *:*) probe_host="[$probe_host]" ;; esac
uri="http://$url_host:$port"
ready() {
  "$python" - "http://$probe_host:$port/health" <<'EOF'
import sys, urllib.request
try:
    sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)
except Exception:
    sys.exit(1)
EOF
}
deadline=$((SECONDS + wait_s))
until ready; do
  if ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
    echo "mlflow_server.sh: the server did not come up on $host:$port; its log ($dir/server.log) ends:" >&2
    tail -n 30 "$dir/server.log" >&2
    bash "$0" stop "$dir" >&2 || true
    exit 1
  fi
  sleep 0.5
done
echo "$uri" >"$dir/tracking_uri"
echo "$uri"
