#!/usr/bin/env bash
# stac_api_local.sh - a throw-away STAC API (stac-fastapi-pgstac over PostgreSQL + PostGIS)
# on 127.0.0.1, by hand. The test suite starts its own through tests/stacapi.py; this is for
# manual runs. Transactions (POST/PUT/DELETE) are on. A stop/start keeps the data.
#
# Usage: scripts/stac_api_local.sh start|stop|restart|status|env|clean
#   start   create the API venv if absent, initdb + start PostgreSQL, CREATE DATABASE,
#           pypgstac migrate, start uvicorn, wait for /_mgmt/ping (idempotent)
#   stop    stop the API (TERM, then KILL after 20 s), then PostgreSQL (idempotent)
#   status  what runs, and whether the API answers ping
#   env     print exports for clients: eval "$(scripts/stac_api_local.sh env)"
#   clean   stop, then delete the state directory (not an external STAC_API_VENV)
#
# Needs (Debian): apt-get install postgresql postgresql-15-postgis-3. As root, PostgreSQL runs
# as the "postgres" user (it refuses to run as root), so STATE_DIR must be reachable by it.
#
# Settings (environment variables):
#   STAC_API_DIR      state directory                                [/tmp/stac-api-local-$USER]
#   STAC_API_PORT     API port                                       [8082]
#   STAC_API_PG_PORT  PostgreSQL port                                [55433]
#   STAC_API_VENV     the API's own venv (created with pip if absent) [$STAC_API_DIR/venv]
#   STAC_API_PYTHON   python that creates the venv                   [python3]
#   STAC_API_PG_BIN   PostgreSQL bin directory       [newest /usr/lib/postgresql/*/bin]
set -euo pipefail

# The API's packages, tested together (keep in step with API_PINS in tests/stacapi.py).
# They go into their own venv, never the project's: their pins would clash with ours.
PINS=("pypgstac[psycopg]==0.10.0" "stac-fastapi-pgstac==7.2.0" "uvicorn==0.54.0")

DIR=${STAC_API_DIR:-/tmp/stac-api-local-${USER:-$(id -un)}}
PORT=${STAC_API_PORT:-8082}
PG_PORT=${STAC_API_PG_PORT:-55433}
VENV=${STAC_API_VENV:-$DIR/venv}
PYTHON=${STAC_API_PYTHON:-python3}
DB=stac
URL=http://127.0.0.1:$PORT
DSN=postgresql://postgres@127.0.0.1:$PG_PORT/$DB
PGDIR=$DIR/pg
PIDFILE=$DIR/api.pid

log() { printf '[stac_api_local %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n ${STAC_API_PG_BIN:-} ]]; then PG_BIN=$STAC_API_PG_BIN
else PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true); fi
[[ -n $PG_BIN ]] || PG_BIN=$(pg_config --bindir 2>/dev/null || true)

as_pg() { # run a PostgreSQL server command as the postgres user when we are root
  if [[ $(id -u) == 0 ]]; then (cd "$PGDIR" && runuser -u postgres -- "$@"); else "$@"; fi
}

psql_() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

api_alive() { # print the pid if the pid file names a live uvicorn
  local pid
  [[ -s $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "uvicorn" && echo "$pid"
}

pg_alive() { [[ -f $PGDIR/data/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; }

ping_() { curl -s -m 2 "$URL/_mgmt/ping" 2>/dev/null | grep -q PONG; }

check() {
  [[ -n $PG_BIN && -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] \
    || die "PostgreSQL server not found (apt-get install postgresql postgresql-15-postgis-3, or set STAC_API_PG_BIN)"
  local share
  share=$("$PG_BIN/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$(basename "$(dirname "$PG_BIN")")")
  [[ -f $share/extension/postgis.control ]] \
    || die "PostGIS missing for $PG_BIN (apt-get install postgresql-$(basename "$(dirname "$PG_BIN")")-postgis-3)"
  if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to run PostgreSQL as"
  fi
}

ensure_venv() {
  [[ -f $VENV/.complete ]] && return 0
  log "creating the API venv $VENV (about 30 s)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >"$DIR/venv.log" 2>&1 \
    || { tail -20 "$DIR/venv.log" >&2; rm -rf "$VENV"; die "pip install ${PINS[*]} failed"; }
  printf '%s\n' "${PINS[@]}" >"$VENV/.complete"
}

start() {
  check
  if pid=$(api_alive) && ping_; then log "already running (pid $pid) at $URL"; return 0; fi
  local t0=$SECONDS
  mkdir -p "$DIR"
  ensure_venv
  if [[ ! -f $PGDIR/data/PG_VERSION ]]; then
    rm -rf "$PGDIR"; mkdir -p "$PGDIR"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$PGDIR"
    as_pg test -w "$PGDIR" || die "the postgres user cannot write $PGDIR (set STAC_API_DIR elsewhere, e.g. under /tmp)"
    as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1 \
      || { tail -20 "$DIR/initdb.log" >&2; die "initdb failed"; }
  fi
  if ! pg_alive; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGDIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -20 "$PGDIR/postgres.log" >&2; die "PostgreSQL did not start (port $PG_PORT taken?)"; }
  fi
  if [[ -z $(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    psql_ -d postgres -c "CREATE DATABASE $DB;"
  fi
  # pgstac's migration creates the postgis, btree_gist and unaccent extensions; it is idempotent
  "$VENV/bin/python" -m pypgstac.pypgstac migrate --dsn "$DSN" >>"$DIR/migrate.log" 2>&1 \
    || { tail -20 "$DIR/migrate.log" >&2; die "pypgstac migrate failed"; }
  ping_ && die "something else already answers on $URL"
  # PGPASSWORD must be set even with trust auth; transactions are off unless enabled
  PGUSER=postgres PGPASSWORD=unused PGHOST=127.0.0.1 PGPORT=$PG_PORT PGDATABASE=$DB \
    ENABLE_TRANSACTIONS_EXTENSIONS=true \
    setsid "$VENV/bin/python" -m uvicorn stac_fastapi.pgstac.app:create_app --factory \
    --host 127.0.0.1 --port "$PORT" </dev/null >>"$DIR/api.log" 2>&1 &
  echo $! >"$PIDFILE"
  local i
  for i in $(seq 600); do
    ping_ && break
    api_alive >/dev/null || { tail -20 "$DIR/api.log" >&2; die "the API exited, see $DIR/api.log"; }
    sleep 0.1
  done
  ping_ || { tail -20 "$DIR/api.log" >&2; die "no ping answer within 60 s, see $DIR/api.log"; }
  log "ready at $URL in ~$((SECONDS - t0)) s (api pid $(<"$PIDFILE"), PostgreSQL on 127.0.0.1:$PG_PORT)"
}

stop() {
  local pid i
  if pid=$(api_alive); then
    kill -TERM "$pid"
    for i in $(seq 200); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    if [[ -d /proc/$pid ]]; then log "sending KILL to $pid"; kill -KILL "$pid"; fi
    log "API stopped ($pid)"
  fi
  rm -f "$PIDFILE"
  if [[ -n $PG_BIN ]] && pg_alive; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null
    log "PostgreSQL stopped"
  fi
}

status() {
  if pid=$(api_alive); then
    echo "API running (pid $pid) at $URL, ping: $(ping_ && echo PONG || echo 'no answer')"
  else
    echo "API stopped"
  fi
  if pg_alive; then echo "PostgreSQL running on 127.0.0.1:$PG_PORT ($PGDIR/data)"; else echo "PostgreSQL stopped"; fi
}

env_() {
  cat <<EOF
export STAC_API_URL=$URL
export PGHOST=127.0.0.1
export PGPORT=$PG_PORT
export PGUSER=postgres
export PGPASSWORD=unused
export PGDATABASE=$DB
EOF
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) env_ ;;
  clean) stop; rm -rf "$PGDIR" "$DIR"; log "removed $DIR" ;;
  *) sed -n '2,23p' "$0"; exit 2 ;;
esac
