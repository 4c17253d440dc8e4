#!/usr/bin/env bash
# The real services gort's integration tests talk to: a throwaway PostgreSQL
# cluster and a Redis server, both on loopback, both owned by this script.
#
#   tools/services.sh start    install what is missing (apt-get), start both
#   tools/services.sh stop     stop both and delete their data
#   tools/services.sh status   say what runs
#   tools/services.sh env      print the variables the tests read
#
# The tests find the servers through GORT_PG_URL and GORT_REDIS_URL (the
# defaults below, printed by `env`). A test whose server is missing says so
# on stderr and skips, unless CI=true, where it fails. `.ci/run` calls
# `start` before the tests and `stop` on exit.
#
# Data lives under $GORT_SERVICES_DIR (default target/services), never in a
# system cluster: the cluster is created with `initdb` (trust auth, loopback
# only) and removed by `stop`. PostgreSQL refuses to run as root, so under
# root the cluster belongs to the `postgres` user the Debian package creates.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR=${GORT_SERVICES_DIR:-$PWD/target/services}
PG_PORT=${GORT_PG_PORT:-55432}
REDIS_PORT=${GORT_REDIS_PORT:-56379}
PG_DATA=$DIR/pg
REDIS_DIR=$DIR/redis

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    [[ -n $bin ]] && echo "$bin"
}

install_missing() {
    local want=()
    pg_bin >/dev/null || want+=(postgresql)
    command -v redis-server >/dev/null || want+=(redis-server)
    if ((${#want[@]})); then
        echo "services: installing ${want[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}"
    fi
    # The Debian package starts its own cluster and server; ours are separate
    # (other ports, other data), so theirs are left alone.
}

# Run a PostgreSQL tool as the cluster's owner.
as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start_pg() {
    local bin
    bin=$(pg_bin)
    # One cluster per machine: a server another checkout started on the
    # port is used as it is.
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
        return
    fi
    mkdir -p "$DIR"
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        mkdir -p "$PG_DATA"
        [[ $(id -u) == 0 ]] && chown postgres: "$PG_DATA" && chmod 700 "$PG_DATA"
        as_owner "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if as_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        return
    fi
    # max_connections: the tests open up to a few hundred connections at once.
    as_owner "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA -c max_connections=400 -c fsync=off" >/dev/null
    echo "services: postgresql on 127.0.0.1:$PG_PORT"
}

stop_pg() {
    local bin
    bin=$(pg_bin) || return 0
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        as_owner "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DATA"
}

start_redis() {
    mkdir -p "$REDIS_DIR"
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        return
    fi
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
        --save '' --appendonly no --maxclients 4000 \
        --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/log"
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "services: redis on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
    if command -v redis-cli >/dev/null; then
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    rm -rf "$REDIS_DIR"
}

print_env() {
    echo "export GORT_PG_URL='host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres'"
    echo "export GORT_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/'"
}

case "${1:-}" in
start)
    install_missing
    start_pg
    start_redis
    ;;
stop)
    stop_redis
    stop_pg
    ;;
status)
    bin=$(pg_bin) && as_owner "$bin/pg_ctl" -D "$PG_DATA" status || true
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null || echo "redis: not running"
    ;;
env) print_env ;;
*)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
