#!/usr/bin/env bash
# Runs a command with throwaway PostgreSQL and Redis servers (WITH_SERVICES_DURABLE=1: a
# PostgreSQL that syncs to disk as production does, for benchmarks).
#
# Installs postgresql and redis-server with apt-get when they are missing,
# starts both on free loopback ports in a temporary folder (PostgreSQL as an
# unprivileged user, since initdb refuses root), exports DATABASE_URL and
# REDIS_URL (and a throwaway SECRET_KEY) for the command, and stops and removes both when it ends.
set -euo pipefail

log() { echo "with-services: $*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        log "missing $*; install it or run as root"; exit 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        log "apt-get update"
        apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
}

PG_BIN=$(pg_bindir)
if [ -z "$PG_BIN" ]; then apt_install postgresql; PG_BIN=$(pg_bindir); fi
command -v redis-server >/dev/null 2>&1 || apt_install redis-server

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

WORK=$(mktemp -d /tmp/flakeguard-services.XXXXXX)
chmod 755 "$WORK"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
    PG_USER=postgres
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    RUN_AS=(runuser -u "$PG_USER" --)
    mkdir -p "$WORK/pg"
    chown "$PG_USER" "$WORK/pg"
else
    mkdir -p "$WORK/pg"
fi

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
for _ in $(seq 1 50); do
    if python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $REDIS_PORT), 0.2); s.sendall(b'PING\r\n'); sys.exit(0 if s.recv(16).startswith(b'+PONG') else 1)" 2>/dev/null; then break; fi
    sleep 0.1
done

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
