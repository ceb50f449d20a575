#!/usr/bin/env bash
# Tracking server throughput: wrk against `trackrelay serve` (release
# build) and against nginx serving the same GIF and a 302 from a static
# config (benches/nginx_tracking.conf), on loopback. Then every hit
# trackrelay stored is counted and compared with the responses wrk got.
#
#   benches/tracking_http.sh            # 15 s per run, 64 connections
#   DURATION=5 CONNECTIONS=32 benches/tracking_http.sh
#   NICE=-10 benches/tracking_http.sh   # ahead of other work on a shared machine
#   TRACKING_EXTRA='commit_wait_ms = 5' benches/tracking_http.sh   # other [tracking] keys
#
# Installs wrk and nginx with apt-get when they are missing. Prints a
# Markdown table (docs/benchmarks.md, "Tracking server", has the figures).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-auto}
# NICE=-10 runs both servers and wrk ahead of other work on a shared
# machine (the same priority for all three, so the comparison stays fair).
NICE=${NICE:-0}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --locked --quiet
BIN=target/release/trackrelay

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
TPORT=$(free_port)
APORT=$(free_port)
NPORT=$(free_port)

# trackrelay: default settings but the ports and the database.
cat >"$work/trackrelay.toml" <<TOML
[tracking]
listen = "127.0.0.1:$TPORT"
base_url = "http://127.0.0.1:$TPORT"
${TRACKING_EXTRA:-}
[[tracking.keys]]
id = "k1"
secret = "benchmark key, at least 32 bytes long"
[api]
listen = "127.0.0.1:$APORT"
token = "bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd"
[storage]
path = "$work/bench.db"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
TOML

# One real message through the rewriter gives a real pixel and click URL.
printf 'From: a@example.com\nTo: bob@example.com\nSubject: bench\nMIME-Version: 1.0\nContent-Type: text/html\n\n<html><body><a href="https://example.com/landing?utm_source=mail">x</a></body></html>\n' |
    "$BIN" rewrite --config "$work/trackrelay.toml" --route default --recipient bob@example.com >"$work/msg.eml"
OPEN=$(grep -o "/o/[A-Za-z0-9_-]*" "$work/msg.eml" | head -1)
CLICK=$(grep -o "/c/[A-Za-z0-9_-]*" "$work/msg.eml" | head -1)

nice -n "$NICE" "$BIN" serve --config "$work/trackrelay.toml" 2>"$work/trackrelay.log" &
TPID=$!
pids+=("$TPID")

mkdir -p "$work/www" "$work/tmp"
# nginx workers run as an unprivileged user: let them read the GIF.
chmod 755 "$work" "$work/www"
printf 'GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b' >"$work/www/pixel.gif"
sed -e "s#__PORT__#$NPORT#g" -e "s#__ROOT__#$work#g" -e "s#__WORKERS__#$WORKERS#g" \
    benches/nginx_tracking.conf >"$work/nginx.conf"
nice -n "$NICE" "$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
pids+=("$!")

for port in "$TPORT" "$NPORT"; do
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.1
    done
done
# Both must answer as expected before anything is measured.
[ "$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$TPORT$OPEN")" = "200 43" ]
[ "$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$NPORT$OPEN")" = "200 43" ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TPORT$CLICK")" = "302" ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NPORT$CLICK")" = "302" ]
# (the two checks on trackrelay above stored one open and one click)

# run NAME URL: wrk with latency percentiles; prints "rps p50 p99 answered errors".
run() {
    local out
    out=$(nice -n "$NICE" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$2")
    echo "$out" >"$work/wrk-$1.txt"
    local rps p50 p99 answered bad
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    answered=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
    echo "$rps $p50 $p99 $answered ${bad:-0}"
}

declare -A R
load="" # 1-minute load average after each run: the machine may be shared
for target in pixel click; do
    path=$OPEN
    [ "$target" = click ] && path=$CLICK
    R[nginx-$target]=$(run "nginx-$target" "http://127.0.0.1:$NPORT$path")
    load+=" $(cut -d' ' -f1 /proc/loadavg)"
    R[trackrelay-$target]=$(run "trackrelay-$target" "http://127.0.0.1:$TPORT$path")
    load+=" $(cut -d' ' -f1 /proc/loadavg)"
done

# How many hits were answered before their commit (outcome="queued").
hits=$(curl -s -H "Authorization: Bearer bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd" "http://127.0.0.1:$APORT/metrics" | grep '^trackrelay_tracking_hits_total' || true)
# SIGTERM: trackrelay flushes every queued hit before it exits.
kill -TERM "$TPID"
wait "$TPID"
opens=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE kind = 'open'")
clicks=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE kind = 'click'")

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency; $(nproc) cores; nginx worker_processes $WORKERS; nice $NICE; load average after each run:$load"
echo
echo "| server | path | requests/s | p50 | p99 | answered | non-2xx/3xx | hits stored |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in pixel click; do
    for server in nginx trackrelay; do
        read -r rps p50 p99 answered bad <<<"${R[$server-$target]}"
        stored="—"
        if [ "$server" = trackrelay ]; then
            if [ "$target" = pixel ]; then stored=$((opens - 1)); else stored=$((clicks - 1)); fi
        fi
        echo "| $server | $([ "$target" = pixel ] && echo /o/ || echo /c/) ($target) | $rps | $p50 | $p99 | $answered | $bad | $stored |"
    done
done
echo
for target in pixel click; do
    read -r nrps _ <<<"${R[nginx-$target]}"
    read -r trps _ _ answered _ <<<"${R[trackrelay-$target]}"
    if [ "$target" = pixel ]; then stored=$((opens - 1)); else stored=$((clicks - 1)); fi
    ratio=$(awk -v t="$trps" -v n="$nrps" 'BEGIN {printf "%.0f", 100 * t / n}')
    verdict="every answered hit stored"
    [ "$stored" -lt "$answered" ] && verdict="MISSING $((answered - stored)) answered hits"
    echo "$target: trackrelay at $ratio% of nginx's requests/s; $verdict (stored $stored, wrk answered $answered; wrk does not count requests still in flight when it stops)"
done
echo
echo "trackrelay hit outcomes (queued = answered before its commit, stored after):"
echo "$hits"
