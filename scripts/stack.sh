#!/usr/bin/env bash
# make up / make down: FlakeGuard as it runs in production, on this machine, without Docker.
#
#   scripts/stack.sh up      PostgreSQL, Redis, migrate, gunicorn, one worker per
#                            queue, Beat and Flower; returns once /health is ok
#   scripts/stack.sh status  what runs, and /health
#   scripts/stack.sh down    stops everything (the data stays for the next `up`)
#   scripts/stack.sh clean   down, then removes the data
#
# Everything lives in STACK_DIR (default .stack/): the databases, one log per
# process in logs/, pid files, and env (the settings every process gets, with
# a SECRET_KEY, metrics token and Flower password made on the first `up`).
# Ports: web WEB_PORT (8000), Flower FLOWER_PORT (5555), worker metrics from
# METRICS_PORT (9808) up, one per worker; PostgreSQL and Redis on free ports.
set -euo pipefail

LOG_NAME=stack
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

STACK_DIR=$(mkdir -p "${STACK_DIR:-$ROOT/.stack}" && cd "${STACK_DIR:-$ROOT/.stack}" && pwd)
VENV_BIN=${VENV_BIN:-$ROOT/.venv/bin}
LOGS=$STACK_DIR/logs
RUN=$STACK_DIR/run
WORKERS=(ingest:runs-ingest:2 analyze:runs-analyze:1 recompute:tests-recompute:1 polling:polling:1 scheduler:scheduler:1)

write_env() {
    [ -f "$STACK_DIR/env" ] && return
    local secret token flower
    secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')
    token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    flower=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
    cat >"$STACK_DIR/env" <<EOF
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
WEB_PORT=${WEB_PORT:-8000}
FLOWER_PORT=${FLOWER_PORT:-5555}
METRICS_PORT=${METRICS_PORT:-9808}
SECRET_KEY=$secret
FLAKEGUARD_METRICS_TOKEN=$token
FLOWER_BASIC_AUTH=flakeguard:$flower
EOF
    chmod 600 "$STACK_DIR/env"
}

load_env() {
    set -a
    # shellcheck disable=SC1091
    . "$STACK_DIR/env"
    set +a
    export DATABASE_URL="postgres://flakeguard@127.0.0.1:$PG_PORT/flakeguard"
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    # Plain http on localhost: a deployment behind TLS keeps the secure defaults.
    export SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false LOG_LEVEL=${LOG_LEVEL:-INFO}
    export ALLOWED_HOSTS=localhost,127.0.0.1 CSRF_TRUSTED_ORIGINS="http://localhost:$WEB_PORT,http://127.0.0.1:$WEB_PORT"
    export FLAKEGUARD_BASE_URL="http://127.0.0.1:$WEB_PORT"
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start NAME COMMAND...: in its own session, logging to logs/NAME.log.
start() {
    local name=$1; shift
    if running "$name"; then log "$name already runs"; return; fi
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
}

start_postgres() {
    mkdir -p "$STACK_DIR/pg"
    pg_user_for "$STACK_DIR/pg"
    if [ ${#RUN_AS[@]} -gt 0 ] && ! "${RUN_AS[@]}" test -x "$STACK_DIR/pg"; then
        log "PostgreSQL runs as the postgres user, which cannot enter $STACK_DIR; set STACK_DIR to a folder it can reach"
        exit 1
    fi
    if [ ! -d "$STACK_DIR/pg/data" ]; then
        log "initializing PostgreSQL in $STACK_DIR/pg"
        "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$STACK_DIR/pg/data" -U flakeguard --auth=trust -E UTF8 >/dev/null
        FRESH_DB=1
    fi
    if ! "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$STACK_DIR/pg/data" status >/dev/null 2>&1; then
        "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$STACK_DIR/pg/data" -l "$STACK_DIR/pg/server.log" -w -t 60 \
            -o "-p $PG_PORT -k $STACK_DIR/pg -c listen_addresses=127.0.0.1" start >/dev/null
    fi
    if [ "${FRESH_DB:-}" = 1 ]; then "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U flakeguard flakeguard; fi
}

up() {
    ensure_services_installed
    mkdir -p "$LOGS" "$RUN"
    write_env
    load_env
    log "PostgreSQL on $PG_PORT, Redis on $REDIS_PORT, logs in $LOGS"
    start_postgres
    start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STACK_DIR" --appendonly yes
    wait_for_redis "$REDIS_PORT"
    log "migrating"
    (cd "$ROOT" && "$VENV_BIN/python" manage.py migrate --noinput -v 0 >>"$LOGS/migrate.log" 2>&1) \
        || { log "migrate failed; see $LOGS/migrate.log"; exit 1; }
    (cd "$ROOT" && PORT=$WEB_PORT PROMETHEUS_MULTIPROC_DIR=$STACK_DIR/metrics/web \
        start web "$VENV_BIN/gunicorn" --config python:flakeguard.gunicorn flakeguard.wsgi:application)
    local port=$METRICS_PORT entry name queue concurrency
    for entry in "${WORKERS[@]}"; do
        IFS=: read -r name queue concurrency <<<"$entry"
        (cd "$ROOT" && FLAKEGUARD_METRICS_PORT=$port PROMETHEUS_MULTIPROC_DIR=$STACK_DIR/metrics/$name \
            FLAKEGUARD_HEARTBEAT_DIR=$STACK_DIR/heartbeat/$name \
            start "worker-$name" "$VENV_BIN/celery" -A flakeguard worker -Q "$queue" -n "$name@%h" \
                -c "$concurrency" -l INFO)
        port=$((port + 1))
    done
    (cd "$ROOT" && FLAKEGUARD_HEARTBEAT_DIR=$STACK_DIR/heartbeat/beat \
        start beat "$VENV_BIN/celery" -A flakeguard beat -l INFO)
    (cd "$ROOT" && start flower "$VENV_BIN/celery" -A flakeguard flower --address=127.0.0.1 --port="$FLOWER_PORT")
    log "waiting for /health"
    for _ in $(seq 1 120); do
        if health >/dev/null; then
            log "up: http://127.0.0.1:$WEB_PORT/ · Flower http://127.0.0.1:$FLOWER_PORT/ (${FLOWER_BASIC_AUTH%%:*} / ${FLOWER_BASIC_AUTH#*:})"
            log "metrics: curl -H 'Authorization: Bearer $FLAKEGUARD_METRICS_TOKEN' http://127.0.0.1:$WEB_PORT/metrics; workers on :$METRICS_PORT-$((port - 1))"
            log "logs: $LOGS · stop with make down"
            return
        fi
        sleep 1
    done
    log "not healthy after 120 s:"; health >&2 || true; exit 1
}

health() {
    python3 - "$WEB_PORT" <<'EOF'
import json, sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as r:
        body = json.load(r)
except urllib.error.HTTPError as e:
    body = json.load(e)
except OSError as e:
    body = {"status": f"unreachable: {e}"}
print(json.dumps(body, indent=2))
sys.exit(0 if body.get("status") == "ok" else 1)
EOF
}

# stop_processes NAME...: SIGTERM to each one's process group at once (Celery's
# warm shutdown, gunicorn's graceful one), then wait; SIGKILL after 30 s.
stop_processes() {
    local name pid pids=()
    for name in "$@"; do
        [ -f "$RUN/$name.pid" ] || continue
        pid=$(cat "$RUN/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            pids+=("$name:$pid")
        fi
        rm -f "$RUN/$name.pid"
    done
    for _ in $(seq 1 60); do
        local left=()
        for entry in "${pids[@]}"; do kill -0 "${entry#*:}" 2>/dev/null && left+=("$entry"); done
        pids=("${left[@]}")
        [ ${#pids[@]} -eq 0 ] && return
        sleep 0.5
    done
    for entry in "${pids[@]}"; do
        log "${entry%%:*} did not stop in 30 s: killed"
        kill -KILL -- "-${entry#*:}" 2>/dev/null || true
    done
}

down() {
    [ -f "$STACK_DIR/env" ] || { log "nothing to stop"; return; }
    load_env
    local entry names=(flower beat web)
    for entry in "${WORKERS[@]}"; do names+=("worker-${entry%%:*}"); done
    stop_processes "${names[@]}"
    stop_processes redis
    if [ -d "$STACK_DIR/pg/data" ]; then
        PG_BIN=$(pg_bindir)
        pg_user_for "$STACK_DIR/pg"
        "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$STACK_DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    log "down (data kept in $STACK_DIR; scripts/stack.sh clean removes it)"
}

status() {
    [ -f "$STACK_DIR/env" ] || { log "not set up"; return 1; }
    load_env
    local f
    for f in "$RUN"/*.pid; do
        [ -e "$f" ] || continue
        f=$(basename "$f" .pid)
        if running "$f"; then echo "$f: running"; else echo "$f: stopped"; fi
    done
    health || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    clean) down; rm -rf "$STACK_DIR" ;;
    *) echo "usage: $0 up|down|status|clean" >&2; exit 2 ;;
esac
