#!/usr/bin/env bash
# Load test of the store list: GET /api/v1/stores?limit=50 with an HQ token, driven by wrk
# (loadtests/store-list.lua). Local only: refuses any host but 127.0.0.1 / localhost.
#
#   loadtests/store-list.sh                       # 10 s, 32 connections, 2 threads
#   DURATION=5s CONNECTIONS=64 loadtests/store-list.sh
#
# Needs the services (scripts/dev-env up) and a running api (`make run`, or
# `storeops api|all`) on HTTP_ADDR (default 127.0.0.1:8080).
# Environment: DURATION (10s), CONNECTIONS (32), THREADS (2), HTTP_ADDR,
# AUTH_JWT_SECRET (default: the local development secret `make run` uses).
# Exit status: 0 when every response was 2xx/3xx and no socket errors occurred.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}

die() {
    printf 'store-list: ERROR: %s\n' "$*" >&2
    exit 1
}
log() { printf 'store-list: %s\n' "$*" >&2; }

[[ $DURATION =~ ^[0-9]+[smh]?$ ]] || die "DURATION must look like 10s, 1m (got '$DURATION')"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer (got '$CONNECTIONS')"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer (got '$THREADS')"
((CONNECTIONS >= THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"

# wrk from the distribution when it is missing.
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (apt-get)"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "wrk is missing and sudo is not available; install wrk"
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq wrk >&2
fi

# DATABASE_URL etc. of the local services (not needed by wrk, but `storeops token` reads
# the same configuration as every other command).
eval "$(scripts/dev-env env)"
export AUTH_JWT_SECRET="${AUTH_JWT_SECRET:-storeops-local-development-secret-only}"

addr=${HTTP_ADDR:-127.0.0.1:8080}
host=${addr%:*}
port=${addr##*:}
case "$host" in
    127.0.0.1 | localhost) ;;
    *) die "HTTP_ADDR host '$host' is not 127.0.0.1 or localhost; this script only loads a local api" ;;
esac
[[ $port =~ ^[0-9]+$ ]] || die "HTTP_ADDR '$addr' has no port"
url="http://${host}:${port}/api/v1/stores?limit=50"

bin=target/debug/storeops
[ -x "$bin" ] || die "$bin is missing; build it first (cargo build)"
STOREOPS_TOKEN=$("$bin" token --role hq --sub loadtest-store-list --ttl 3600)
export STOREOPS_TOKEN

# One request first, so a down api or a bad token fails clearly instead of as wrk noise.
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    -H "Authorization: Bearer $STOREOPS_TOKEN" "$url" || true)
[ "$status" = 200 ] || die "GET $url answered '${status:-no response}', want 200 (is the api running? make run)"

log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency GET $url"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 5s --latency \
    -s loadtests/store-list.lua "$url" | tee "$out"

if grep -qE '^ *(Non-2xx or 3xx responses|Socket errors):' "$out"; then
    die "some requests failed (see above)"
fi
