#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and local multi-worker sweeps.
#   scripts/pg_server.sh start DIR [PORT]   init a cluster in DIR (if new), start it, print its URL
#   scripts/pg_server.sh stop DIR           stop it
#   scripts/pg_server.sh install            make sure the server binaries and psql are there: as root on Debian,
#                                           installs Debian's postgresql when they are not (.ci/run does this)
# The URL serves both Optuna (`reslab tune --storage URL`) and MLflow (`MLFLOW_TRACKING_URI=URL`).
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql). Run as root, it runs the server as
# the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail
usage="usage: pg_server.sh start DIR [PORT] | stop DIR | install"
cmd=${1:?$usage}

# Debian keeps the server binaries off PATH, in /usr/lib/postgresql/<major>/bin.
bin_of() {
  command -v "$1" 2>/dev/null && return
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 || true  # none: empty, not an exit (set -e)
}
have_server() { [ -n "$(bin_of initdb)" ] && [ -n "$(bin_of pg_ctl)" ] && command -v psql >/dev/null; }

if [ "$cmd" = install ]; then
  have_server && exit 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "pg_server.sh: PostgreSQL server binaries not found (Debian, as root: apt-get install postgresql)" >&2
    exit 3
  fi
  echo "pg_server.sh: PostgreSQL server binaries not found; installing Debian's postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # No default cluster, so that installing starts no server: start DIR makes its own.
  apt-get install -y -q --no-install-recommends postgresql-common >/dev/null
  sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  apt-get install -y -q --no-install-recommends postgresql >/dev/null
  have_server || { echo "pg_server.sh: installed postgresql, yet initdb, pg_ctl or psql is still missing" >&2; exit 1; }
  echo "pg_server.sh: installed $("$(bin_of pg_ctl)" --version)" >&2
  exit 0
fi

dir=$(realpath -m "${2:?$usage}")
port=${3:-55432}
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
    echo "$usage" >&2; exit 2 ;;
esac
