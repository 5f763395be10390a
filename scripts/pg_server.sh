#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and local multi-worker sweeps.
#   scripts/pg_server.sh start DIR [PORT]   init a cluster in DIR (if new), start it, print its URL
#   scripts/pg_server.sh stop DIR           stop it
# The URL serves both Optuna (`reslab tune --storage URL`) and MLflow (`MLFLOW_TRACKING_URI=URL`).
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql). Run as root, it runs the server as
# the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail
cmd=${1:?usage: pg_server.sh start|stop DIR [PORT]}
dir=$(realpath -m "${2:?usage: pg_server.sh start|stop DIR [PORT]}")
port=${3:-55432}

bin_of() {
  command -v "$1" 2>/dev/null && return
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}
initdb=$(bin_of initdb); pg_ctl=$(bin_of pg_ctl)
[ -n "$initdb" ] && [ -n "$pg_ctl" ] || { echo "pg_server.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 3; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir"
      runuser -u postgres -- test -x "$dir" \
        || { echo "pg_server.sh: $dir is not reachable by user postgres (a parent folder is private?)" >&2; exit 1; }
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$initdb" -D "$dir/data" -U reslab --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://reslab@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_owner "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: pg_server.sh start|stop DIR [PORT]" >&2; exit 2 ;;
esac
