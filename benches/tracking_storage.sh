#!/usr/bin/env bash
# Tracking throughput by storage backend: wrk against `trackrelay serve`
# (release build) on the pixel, once with SQLite and once with a private
# PostgreSQL cluster on the same machine (initdb as the postgres user in a
# temporary directory, Unix socket, fsync on: the server's defaults). Then
# the hits each stored are counted and compared with wrk's answers.
#
#   benches/tracking_storage.sh             # 10 s per run, 64 connections
#   DURATION=5 benches/tracking_storage.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)

cargo build --release --locked --quiet
BIN=target/release/trackrelay

work=$(mktemp -d)
chown postgres:postgres "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

runuser -u postgres -- "$PGBIN/initdb" --auth=trust -U postgres -D "$work/pg" >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-k $work -c listen_addresses=''" start >/dev/null

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# config NAME STORAGE_LINE: a config on fresh ports.
config() {
    local tport aport
    tport=$(free_port)
    aport=$(free_port)
    cat >"$work/$1.toml" <<TOML
[tracking]
listen = "127.0.0.1:$tport"
base_url = "http://127.0.0.1:$tport"
[[tracking.keys]]
id = "k1"
secret = "benchmark key, at least 32 bytes long"
[api]
listen = "127.0.0.1:$aport"
token = "bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd"
[storage]
path = "$work/$1.db"
$2
[[routes]]
id = "default"
track_opens = true
track_clicks = true
TOML
    echo "$tport"
}

# bench NAME STORAGE_LINE: prints "rps p50 p99 answered".
bench() {
    local port open pid out
    port=$(config "$1" "$2")
    printf 'From: a@example.com\nTo: bob@example.com\nSubject: bench\nMIME-Version: 1.0\nContent-Type: text/html\n\n<html><body><p>x</p></body></html>\n' |
        "$BIN" rewrite --config "$work/$1.toml" --route default --recipient bob@example.com >"$work/$1.eml"
    open=$(grep -o "/o/[A-Za-z0-9_-]*" "$work/$1.eml" | head -1)
    "$BIN" serve --config "$work/$1.toml" 2>"$work/$1.log" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.1
    done
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port$open")
    kill -TERM "$pid"
    wait "$pid"
    echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out") $(awk '$1 == "99%" {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}

sqlite=$(bench sqlite "")
pg=$(bench pg "url = \"postgresql://postgres@/postgres?host=$work&sslmode=disable\"")
stored_sqlite=$(sqlite3 "$work/sqlite.db" "SELECT count(*) FROM observations")
stored_pg=$(runuser -u postgres -- psql -h "$work" -U postgres -Atc "SELECT count(*) FROM observations")

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, pixel; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| storage | requests/s | p50 | p99 | answered | stored |"
echo "|---|---|---|---|---|---|"
read -r r50 p50 p99 n <<<"$sqlite"
echo "| SQLite | $r50 | $p50 | $p99 | $n | $stored_sqlite |"
read -r r50 p50 p99 n <<<"$pg"
echo "| PostgreSQL (same machine) | $r50 | $p50 | $p99 | $n | $stored_pg |"
