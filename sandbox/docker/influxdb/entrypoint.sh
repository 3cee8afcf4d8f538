#!/bin/bash
# What the official influxdb:1.x image's entrypoint does, for the test stand-in: on an empty data
# volume, start influxd on 127.0.0.1:$INFLUXDB_INIT_PORT without auth and without HTTPS (as the
# official init-influxdb.sh does), create the database and the admin, write and read users named by
# the INFLUXDB_* variables, stop it, then exec the command.
set -euo pipefail

init() {
    [ -d /var/lib/influxdb/meta ] && return 0
    [ -n "${INFLUXDB_DB:-}${INFLUXDB_ADMIN_USER:-}" ] || return 0
    local port="${INFLUXDB_INIT_PORT:-8086}"
    INFLUXDB_HTTP_BIND_ADDRESS="127.0.0.1:$port" INFLUXDB_HTTP_AUTH_ENABLED=false \
        INFLUXDB_HTTP_HTTPS_ENABLED=false "$@" &
    local pid=$!
    for _ in $(seq 1 60); do
        curl -sf "http://127.0.0.1:$port/ping" && break
        sleep 0.5
    done
    q() { curl -sf -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=$1" >/dev/null; }
    [ -n "${INFLUXDB_DB:-}" ] && q "CREATE DATABASE \"$INFLUXDB_DB\""
    [ -n "${INFLUXDB_ADMIN_USER:-}" ] && \
        q "CREATE USER \"$INFLUXDB_ADMIN_USER\" WITH PASSWORD '$INFLUXDB_ADMIN_PASSWORD' WITH ALL PRIVILEGES"
    for role in WRITE READ; do
        local user_var="INFLUXDB_${role}_USER" pass_var="INFLUXDB_${role}_USER_PASSWORD"
        if [ -n "${!user_var:-}" ]; then
            q "CREATE USER \"${!user_var}\" WITH PASSWORD '${!pass_var}'"
            [ -n "${INFLUXDB_DB:-}" ] && q "GRANT $role ON \"$INFLUXDB_DB\" TO \"${!user_var}\""
        fi
    done
    kill -TERM "$pid"
    wait "$pid" || true
}

if [ "${1:0:1}" = '-' ]; then set -- influxd "$@"; fi
if [ "$1" = influxd ]; then init "$@"; fi
exec "$@"
