#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and multi-worker sweeps; on 127.0.0.1 unless told otherwise.
#   scripts/pg_server.sh start DIR [PORT] [--host ADDR] [--password]
#                                           init a cluster in DIR (if new), start it, print its URL (never a password)
#   scripts/pg_server.sh stop DIR           stop it
#   scripts/pg_server.sh install            make sure the server binaries and psql are there: as root on Debian,
#                                           installs Debian's postgresql when they are not (.ci/run does this)
# The URL serves both Optuna (`reslab tune --storage URL`) and MLflow (`MLFLOW_TRACKING_URI=URL`).
# Authentication: on 127.0.0.1 every local connection is trusted (--auth=trust), as fits a throwaway server. With
# --host ADDR other than 127.0.0.1, or with --password, every connection needs the password of user `reslab`
# (SCRAM-SHA-256, in a pg_hba.conf this script writes at every start). The password comes from PGPASSWORD, else from
# the first line of the password file (PGPASSFILE, default ~/.pgpass, mode 0600) for user reslab on PORT; it is set
# at every start (to change it: change it there, stop, start), never on a command line or in a log. Clients use the
# same variables (libpq reads them): put no password in the URL. The connection itself is not encrypted: beyond a
# trusted network, give PostgreSQL a certificate (ssl = on) or reach it through a tunnel (docs/security.md).
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql). Run as root, it runs the server as
# the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail
usage="usage: pg_server.sh start DIR [PORT] [--host ADDR] [--password] | stop DIR | install"
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
shift 2
port=55432 host=127.0.0.1 password_wanted=""
case "${1:-}" in [0-9]*) port=$1; shift ;; esac
while [ $# -gt 0 ]; do
  case "$1" in
    --host) host=${2:?$usage}; shift 2 ;;
    --password) password_wanted=1; shift ;;
    *) echo "pg_server.sh: unknown argument $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
case "$host" in 127.*|localhost|::1) ;; *) password_wanted=1 ;; esac
initdb=$(bin_of initdb); pg_ctl=$(bin_of pg_ctl); postgres=$(bin_of postgres)
[ -n "$initdb" ] && [ -n "$pg_ctl" ] || { echo "pg_server.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 3; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The password of user reslab: PGPASSWORD, else the first line of the password file for user reslab (or *) on this
# port (or *), in libpq's format (host:port:database:user:password, \: and \\ escaped). Exits when there is none.
reslab_password() {
  if [ -n "${PGPASSWORD:-}" ]; then printf '%s' "$PGPASSWORD"; return; fi
  local file=${PGPASSFILE:-$HOME/.pgpass} mode found
  if [ -f "$file" ]; then
    mode=$(stat -c %a "$file")
    case "$mode" in
      *00) ;;
      *) echo "pg_server.sh: $file has mode $mode: libpq ignores a password file that others may read;" \
           "chmod 600 $file" >&2
         exit 1 ;;
    esac
    found=$(awk -v port="$port" -v user=reslab '
      /^[[:space:]]*(#|$)/ { next }
      { line = $0; gsub(/\\\\/, "\001", line); gsub(/\\:/, "\002", line)
        n = split(line, f, ":")
        if (n >= 5 && (f[2] == port || f[2] == "*") && (f[4] == user || f[4] == "*")) {
          pw = f[5]; for (i = 6; i <= n; i++) pw = pw ":" f[i]
          gsub(/\002/, ":", pw); gsub(/\001/, "\\", pw); printf "%s", pw; exit
        } }' "$file")
    [ -n "$found" ] && { printf '%s' "$found"; return; }
  fi
  echo "pg_server.sh: a server on $host needs a password for user reslab (SCRAM-SHA-256), and none is set: set" \
    "PGPASSWORD, or add a line *:$port:*:reslab:PASSWORD to ${PGPASSFILE:-~/.pgpass} (mode 0600)" >&2
  exit 1
}

# Who may connect, and how: written at every start, so that the file always says what this start was asked for.
write_hba() {
  local method=$1
  {
    echo "# Written by scripts/pg_server.sh at every start ($method): see the script's header."
    echo "local all all $method"
    echo "host  all all 127.0.0.1/32 $method"
    echo "host  all all ::1/128 $method"
    case "$host" in
      127.*|localhost|::1) ;;
      *) echo "host  all all 0.0.0.0/0 $method"; echo "host  all all ::/0 $method" ;;
    esac
  } | as_owner tee "$dir/data/pg_hba.conf" >/dev/null
}

# Sets the role's password in single-user mode (no server running, nothing listening): the SQL travels on stdin, so
# the password is on no command line, and statements are not logged.
set_password() {
  local quoted out
  quoted=$(printf '%s' "$1" | sed "s/'/''/g")
  out=$(printf "ALTER ROLE reslab PASSWORD '%s';\n" "$quoted" \
        | as_owner "$postgres" --single -D "$dir/data" -c password_encryption=scram-sha-256 \
            -c log_min_error_statement=panic postgres 2>&1) || true
  case "$out" in
    *ERROR*|*FATAL*) echo "pg_server.sh: could not set the password of user reslab in $dir/data" >&2; exit 1 ;;
  esac
}

case "$cmd" in
  start)
    if [ -n "$password_wanted" ]; then password=$(reslab_password); fi
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
    if [ -n "$password_wanted" ]; then
      set_password "$password"
      write_hba scram-sha-256
    else
      write_hba trust
    fi
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=$host -p $port -k $dir -c max_connections=200 -c fsync=off" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    case "$host" in 0.0.0.0|'*'|::) url_host=$(hostname -f 2>/dev/null || hostname) ;; *:*) url_host="[$host]" ;;
                    *) url_host=$host ;; esac
    echo "postgresql://reslab@$url_host:$port/postgres"
    ;;
  stop)
    as_owner "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "$usage" >&2; exit 2 ;;
esac
