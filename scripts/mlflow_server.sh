#!/usr/bin/env bash
# A shared MLflow tracking server, as teams run it: `mlflow server` on a PostgreSQL backend store, with artifacts
# proxied by the server (--serve-artifacts, MLflow's default, into --artifacts-destination). Every client, on any
# machine, sends runs, metrics, models and artifacts over HTTP; nothing goes to the clients' own folders.
#   scripts/mlflow_server.sh start DIR [OPTIONS] [-- MLFLOW_SERVER_ARGS]   start it, print its tracking URI
#   scripts/mlflow_server.sh stop DIR                                      stop it (and the PostgreSQL it started)
# DIR holds the server's state: server.log, server.pid, tracking_uri, and by default postgres/ and artifacts/; with
# authentication also auth/ (private: MLflow's user database, its config, the server's session secret).
# Options of start:
#   --port N                    the server's port (default 5000)
#   --host ADDR                 the interface it listens on (default 127.0.0.1: this machine only). For other
#                               machines: --host 0.0.0.0 -- --allowed-hosts 'NAME,NAME:PORT' with the names clients
#                               use (MLflow answers only localhost and private-IP Host headers unless told more).
#                               Beyond 127.0.0.1 authentication is on unless --no-auth.
#   --auth                      MLflow's authentication (`mlflow server --app-name basic-auth`) on 127.0.0.1 too,
#                               e.g. behind a TLS proxy on this machine (docs/security.md)
#   --no-auth                   serve beyond 127.0.0.1 without a login: everyone who reaches the port may read, change
#                               and delete every run, artifact and registered model (prints a warning)
#   --admin NAME                the admin account (default admin), created at the first start with authentication
#   --admin-password-file F     its password (12 characters or more) at that first start: a file only its owner may
#                               read (mode 0600); else MLFLOW_AUTH_ADMIN_PASSWORD. There is no default password.
#   --backend-store-uri URL     an existing database (postgresql://USER@HOST:PORT/DB, its password in PGPASSWORD or
#                               the server user's ~/.pgpass, never in the URL); default: a PostgreSQL server started
#                               in DIR/postgres by scripts/pg_server.sh, database `mlflow`, on 127.0.0.1; with
#                               authentication it takes a password too (PGPASSWORD, else one generated into
#                               DIR/postgres.password, mode 0600)
#   --pg-port N                 that PostgreSQL server's port (default 55433; pg_server.sh's own default is 55432)
#   --artifacts-destination D   where the server stores artifacts: a folder or an object store URI such as
#                               s3://bucket/path (default DIR/artifacts)
#   --workers N                 server worker processes (default 2)
#   --wait S                    seconds to wait for the server to answer (default 180; a new database is migrated
#                               first)
#   -- ARGS                     passed on to `mlflow server` (--allowed-hosts, --cors-allowed-origins, ...)
# Clients: export MLFLOW_TRACKING_URI=<the printed URI> (and, with authentication, MLFLOW_TRACKING_USERNAME and
# MLFLOW_TRACKING_PASSWORD, or MLflow's ~/.mlflow/credentials), then `dvc repro` or `reslab tune` as usual.
# Accounts: scripts/mlflow_accounts.py (as the admin). Threats and what stops each: docs/security.md.
# The mlflow command: $MLFLOW, else the project's .venv/bin/mlflow, else mlflow on PATH.
set -euo pipefail
usage="usage: mlflow_server.sh start DIR [--port N] [--host ADDR] [--auth | --no-auth] [--admin NAME]
       [--admin-password-file F] [--backend-store-uri URL] [--pg-port N] [--artifacts-destination D] [--workers N]
       [--wait S] [-- MLFLOW_SERVER_ARGS] | stop DIR"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}
[ "$cmd" = start ] || [ "$cmd" = stop ] || { echo "$usage" >&2; exit 2; }
[ -n "${2:-}" ] || { echo "$usage" >&2; exit 2; }
dir=$(realpath -m "$2")
shift 2
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
# No server-side job runner (MLflow's GenAI jobs: judges, prompt optimisation, which run code inside the server, in a
# dozen processes): reslab runs none. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it on.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

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
auth="" admin=${MLFLOW_AUTH_ADMIN_USERNAME:-admin} admin_password_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?$usage}; shift 2 ;;
    --host) host=${2:?$usage}; shift 2 ;;
    --auth|--no-auth)
      want=$([ "$1" = --auth ] && echo on || echo off)
      [ -z "$auth" ] || [ "$auth" = "$want" ] \
        || { echo "mlflow_server.sh: --auth and --no-auth exclude each other" >&2; exit 2; }
      auth=$want; shift ;;
    --admin) admin=${2:?$usage}; shift 2 ;;
    --admin-password-file) admin_password_file=${2:?$usage}; shift 2 ;;
    --backend-store-uri) backend=${2:?$usage}; shift 2 ;;
    --pg-port) pg_port=${2:?$usage}; shift 2 ;;
    --artifacts-destination) artifacts=${2:?$usage}; shift 2 ;;
    --workers) workers=${2:?$usage}; shift 2 ;;
    --wait) wait_s=${2:?$usage}; shift 2 ;;
    --) shift; break ;;
    *) echo "mlflow_server.sh: unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done

# Authentication: the default beyond this machine; refused without an admin password at the first start.
case "$host" in 127.*|localhost|::1|'[::1]') loopback=1 ;; *) loopback="" ;; esac
[ -n "$auth" ] || auth=$([ -n "$loopback" ] && echo off || echo on)
case "$backend" in
  *://*:*@*) echo "mlflow_server.sh: --backend-store-uri holds a password, which would show in ps and in logs: take it" \
               "out of the URL and give it to the server's user in PGPASSWORD or ~/.pgpass (mode 0600)" >&2; exit 2 ;;
esac
admin_password=""
if [ "$auth" = on ]; then
  if [ -n "$admin_password_file" ]; then
    [ -f "$admin_password_file" ] && [ -r "$admin_password_file" ] \
      || { echo "mlflow_server.sh: --admin-password-file $admin_password_file: no such readable file" >&2; exit 2; }
    mode=$(stat -c %a "$admin_password_file")
    case "$mode" in
      *00) ;;
      *) echo "mlflow_server.sh: --admin-password-file $admin_password_file has mode $mode: others may read it;" \
           "chmod 600 $admin_password_file" >&2; exit 2 ;;
    esac
    IFS= read -r admin_password <"$admin_password_file" || true
    [ -n "$admin_password" ] \
      || { echo "mlflow_server.sh: --admin-password-file $admin_password_file is empty" >&2; exit 2; }
  else
    admin_password=${MLFLOW_AUTH_ADMIN_PASSWORD:-}
  fi
  if [ -z "$admin_password" ] && [ ! -f "$dir/auth/users.db" ]; then  # later starts: MLflow has its admin
    if [ -n "$loopback" ]; then
      why="--auth: the first start" or_not=""
    else
      why="--host $host serves other machines, so authentication is on, and its first start"
      or_not="; or --no-auth to let everyone who reaches the port read, change and delete every run and model"
    fi
    echo "mlflow_server.sh: $why needs the admin's password (MLflow has no default): set MLFLOW_AUTH_ADMIN_PASSWORD" \
      "or pass --admin-password-file FILE (mode 0600, 12 characters or more)$or_not (docs/security.md)" >&2
    exit 2
  fi
elif [ -z "$loopback" ]; then
  echo "mlflow_server.sh: warning: --no-auth on $host: everyone who can reach port $port may read, change and delete" \
    "every run, artifact and registered model, and move @champion (docs/security.md)" >&2
fi

mlflow=${MLFLOW:-}
[ -n "$mlflow" ] || { [ -x "$here/../.venv/bin/mlflow" ] && mlflow=$(realpath "$here/../.venv/bin/mlflow"); } || true
[ -n "$mlflow" ] || mlflow=$(command -v mlflow) \
  || { echo "mlflow_server.sh: mlflow not found (run make setup, or set MLFLOW=/path/to/mlflow)" >&2; exit 3; }
[ -x "$mlflow" ] || { echo "mlflow_server.sh: MLFLOW=$mlflow is not an executable" >&2; exit 3; }
python=$(dirname "$mlflow")/python; [ -x "$python" ] || python=python3

mkdir -p "$dir"
if pid=$(server_pid); then
  echo "mlflow_server.sh: a server from $dir is already running (pid $pid, $(cat "$dir/tracking_uri" 2>/dev/null));" \
    "stop it first: scripts/mlflow_server.sh stop $dir" >&2
  exit 1
fi

# A secret only its owner reads: created (mode 0600) the first time, the same afterwards.
secret_file() {
  [ -s "$1" ] || (umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$1")
  cat "$1"
}

server_env=()
if [ "$auth" = on ]; then
  mkdir -p -m 700 "$dir/auth"
  (umask 077 && cat >"$dir/auth/auth.ini" <<EOF
# Written by scripts/mlflow_server.sh at every start (docs/security.md): MLflow's authentication (basic-auth).
[mlflow]
# every account may read what it holds no grant on; writing needs a grant (scripts/mlflow_accounts.py)
default_permission = READ
database_uri = sqlite:///$dir/auth/users.db
admin_username = $admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# a checked login is remembered for 60 s per worker: a changed password or a deleted account takes up to that long
auth_cache_ttl_seconds = 60
EOF
  )
  server_env+=(MLFLOW_AUTH_CONFIG_PATH="$dir/auth/auth.ini"
               MLFLOW_FLASK_SERVER_SECRET_KEY="$(secret_file "$dir/auth/flask_secret")")
  [ -z "$admin_password" ] || server_env+=(MLFLOW_AUTH_ADMIN_PASSWORD="$admin_password")
fi

if [ -z "$backend" ]; then
  pg_args=()
  if [ "$auth" = on ]; then  # its database as closed as the server: a password, even on 127.0.0.1
    PGPASSWORD=${PGPASSWORD:-$(secret_file "$dir/postgres.password")}
    export PGPASSWORD
    pg_args=(--password)
  fi
  # exits 3 where PostgreSQL is missing
  pg_url=$(bash "$here/pg_server.sh" start "$dir/postgres" "$pg_port" "${pg_args[@]}")
  touch "$dir/postgres.started"
  if [ "$(psql "$pg_url" -wqtAc "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")" != 1 ]; then
    psql "$pg_url" -wqc "CREATE DATABASE mlflow"
  fi
  backend="${pg_url%/*}/mlflow"
fi
case "$artifacts" in
  *://*) ;;                                            # an object store: the server's credentials reach it
  *) artifacts=$(realpath -m "$artifacts"); mkdir -p "$artifacts" ;;
esac

# Its own session (setsid), so that `stop` ends the server and its workers as one process group; run from DIR, so
# that nothing the server writes by default lands in the caller's folder. Secrets reach it in its environment
# (exported by the shell: on no command line).
app=(); [ "$auth" = off ] || app=(--app-name basic-auth)
(for setting in "${server_env[@]}"; do export "${setting?}"; done
 cd "$dir" && exec setsid "$mlflow" server "${app[@]}" --backend-store-uri "$backend" \
   --serve-artifacts --artifacts-destination "$artifacts" --host "$host" --port "$port" --workers "$workers" "$@" \
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
