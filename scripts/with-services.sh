#!/usr/bin/env bash
# Runs a command with throwaway PostgreSQL and Redis servers (WITH_SERVICES_DURABLE=1: a
# PostgreSQL that syncs to disk as production does, for benchmarks).
#
# Installs postgresql and redis-server with apt-get when they are missing,
# starts both on free loopback ports in a temporary folder (PostgreSQL as an
# unprivileged user, since initdb refuses root), exports DATABASE_URL and
# REDIS_URL (and a throwaway SECRET_KEY) for the command, and stops and removes both when it ends.
set -euo pipefail

LOG_NAME=with-services
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
ensure_services_installed

WORK=$(mktemp -d /tmp/flakeguard-services.XXXXXX)
chmod 755 "$WORK"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
mkdir -p "$WORK/pg"
pg_user_for "$WORK/pg"

cleanup() {
    local rc=$?
    "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    if [ -n "${REDIS_PID:-}" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

log "starting PostgreSQL ($PG_BIN) on port $PG_PORT"
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -U flakeguard --auth=trust -E UTF8 --no-sync >/dev/null
# Throwaway data: durability settings off for speed, unless WITH_SERVICES_DURABLE=1
# asks for a server that syncs as production does (benchmarks).
DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
if [ "${WITH_SERVICES_DURABLE:-}" = 1 ]; then DURABILITY=""; log "PostgreSQL with production durability"; fi
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 $DURABILITY -c max_connections=200 -c shared_buffers=256MB" \
    start >/dev/null
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U flakeguard flakeguard

log "starting Redis on port $REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
wait_for_redis "$REDIS_PORT"

export DATABASE_URL="postgres://flakeguard@127.0.0.1:$PG_PORT/flakeguard"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
# Outside the embedded default the app refuses to start without a secret of its own.
SECRET_KEY=${SECRET_KEY:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')}
export SECRET_KEY
log "DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL"
set +e
"$@"
rc=$?
set -e
exit $rc
