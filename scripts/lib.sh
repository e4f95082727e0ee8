# Shell helpers shared by with-services.sh (throwaway services for tests and
# benchmarks) and stack.sh (make up / make down): finding or installing
# PostgreSQL and Redis, and picking free loopback ports.

log() { echo "${LOG_NAME:-flakeguard}: $*" >&2; }

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

# PG_BIN, and redis-server on the PATH, installing either when missing.
ensure_services_installed() {
    PG_BIN=$(pg_bindir)
    if [ -z "$PG_BIN" ]; then apt_install postgresql; PG_BIN=$(pg_bindir); fi
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# RUN_AS: how to run PostgreSQL's tools (initdb refuses root), owning folder $1.
pg_user_for() {
    RUN_AS=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        RUN_AS=(runuser -u postgres --)
        chown postgres "$1"
    fi
}

wait_for_redis() {
    local port=$1
    for _ in $(seq 1 50); do
        if python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $port), 0.2); s.sendall(b'PING\r\n'); sys.exit(0 if s.recv(16).startswith(b'+PONG') else 1)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "Redis on port $port did not answer"; return 1
}
