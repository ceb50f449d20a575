#!/usr/bin/env bash
# Tracking server throughput, measured as the outside check does it: nginx
# with 2 worker processes and `access_log off` serving the same 43-byte GIF
# (and a 302, benches/nginx_tracking.conf), then `wrk -t2 -c64 -d10s
# --latency` against each in turn, nothing reniced, on loopback. The pair
# is repeated ROUNDS times (nginx, trackrelay, nginx, trackrelay, ...), so
# the two are measured under the same load, and from the second round on
# trackrelay also judges the hits of the rounds before (its classification
# pipeline runs `classifier.wait_seconds` after a hit), as it would under
# sustained traffic. Then every hit trackrelay stored is counted and
# compared with the responses wrk got.
#
#   benches/tracking_http.sh                       # 3 rounds of 10 s, pixel and click
#   ROUNDS=5 TARGETS=pixel benches/tracking_http.sh
#   DURATION=15 CONNECTIONS=32 WORKERS=auto benches/tracking_http.sh
#   NICE=-10 benches/tracking_http.sh              # not the outside check: both reniced
#   TRACKING_EXTRA='commit_wait_ms = 5' benches/tracking_http.sh   # other [tracking] keys
#   TRACKRELAY_BIN=/path/to/trackrelay benches/tracking_http.sh    # another build
#
# Besides requests/s and latency it prints the CPU time each server used
# per request (user + system, from /proc, nginx's workers summed): on a
# machine shared with other work that figure moves far less than
# requests/s. The 1-minute load average is printed with every figure.
#
# Installs wrk and nginx with apt-get when they are missing. Prints a
# Markdown table (docs/benchmarks.md, "Tracking server", has the figures).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-pixel click}
# NICE=-10 runs both servers and wrk ahead of other work on a shared
# machine (the same priority for all three). The outside check renices
# nothing: keep 0 to compare with it.
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

BIN=${TRACKRELAY_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --locked --quiet
    BIN=target/release/trackrelay
fi

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
SPORT=$(free_port)
NPORT=$(free_port)

# trackrelay: default settings but the ports and the database.
cat >"$work/trackrelay.toml" <<TOML
[smtp]
listen = "127.0.0.1:$SPORT"
[tracking]
listen = "127.0.0.1:$TPORT"
base_url = "http://127.0.0.1:$TPORT"
${TRACKING_EXTRA:-}
[[tracking.keys]]
id = "k1"
secret = "Zq8vN2kL5xR7tP1wY4mB9cF3hJ6dG0sA"
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
NPID=$!
pids+=("$NPID")

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

# CPU time (user + system, clock ticks) of the given processes.
ticks() {
    local t=0 f
    for pid in "$@"; do
        read -r -a f <"/proc/$pid/stat"
        t=$((t + f[13] + f[14]))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
NGINX_WORKERS=$(pgrep -P "$NPID" | tr '\n' ' ')

# run NAME URL PIDS...: wrk with latency percentiles; prints
# "rps p50 p99 answered errors cpu_us_per_request load".
run() {
    local name=$1 url=$2 out c0 c1
    shift 2
    c0=$(ticks "$@")
    out=$(nice -n "$NICE" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
    c1=$(ticks "$@")
    echo "$out" >"$work/wrk-$name.txt"
    local rps p50 p99 answered bad cpu
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    answered=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
    cpu=$(awk -v c=$((c1 - c0)) -v n="$answered" -v hz="$HZ" 'BEGIN {printf "%.1f", c * 1e6 / hz / n}')
    echo "$rps $p50 $p99 $answered ${bad:-0} $cpu $(cut -d' ' -f1 /proc/loadavg)"
}

declare -A R
declare -A ANSWERED=([pixel]=0 [click]=0)
for target in $TARGETS; do
    path=$OPEN
    [ "$target" = click ] && path=$CLICK
    for round in $(seq "$ROUNDS"); do
        # shellcheck disable=SC2086 # the worker pids are words
        R[nginx-$target-$round]=$(run "nginx-$target-$round" "http://127.0.0.1:$NPORT$path" $NGINX_WORKERS)
        R[trackrelay-$target-$round]=$(run "trackrelay-$target-$round" "http://127.0.0.1:$TPORT$path" "$TPID")
        read -r _ _ _ answered _ <<<"${R[trackrelay-$target-$round]}"
        ANSWERED[$target]=$((ANSWERED[$target] + answered))
    done
done

# How many hits were answered before their commit (outcome="queued").
hits=$(curl -s -H "Authorization: Bearer bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd" "http://127.0.0.1:$APORT/metrics" | grep '^trackrelay_tracking_hits_total' || true)
# SIGTERM: trackrelay flushes every queued hit before it exits.
kill -TERM "$TPID"
wait "$TPID"
opens=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE kind = 'open'")
clicks=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE kind = 'click'")

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, each in turn; $(nproc) cores; nginx worker_processes $WORKERS; nice $NICE; $ROUNDS rounds"
echo
echo "| path | round | server | requests/s | p50 | p99 | CPU µs/request | load | trackrelay/nginx |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in $TARGETS; do
    for round in $(seq "$ROUNDS"); do
        read -r nrps _ <<<"${R[nginx-$target-$round]}"
        for server in nginx trackrelay; do
            read -r rps p50 p99 _ bad cpu load <<<"${R[$server-$target-$round]}"
            ratio="—"
            [ "$server" = trackrelay ] && ratio=$(awk -v t="$rps" -v n="$nrps" 'BEGIN {printf "%.2f×", t / n}')
            [ "$bad" = 0 ] || ratio="$ratio ($bad non-2xx/3xx)"
            echo "| $([ "$target" = pixel ] && echo /o/ || echo /c/) | $round | $server | $rps | $p50 | $p99 | $cpu | $load | $ratio |"
        done
    done
done
echo
for target in $TARGETS; do
    if [ "$target" = pixel ]; then stored=$((opens - 1)); else stored=$((clicks - 1)); fi
    answered=${ANSWERED[$target]}
    verdict="every answered hit stored"
    [ "$stored" -lt "$answered" ] && verdict="MISSING $((answered - stored)) answered hits"
    echo "$target: $verdict (stored $stored, wrk answered $answered; wrk does not count requests still in flight when it stops)"
done
echo
echo "trackrelay hit outcomes (queued = answered before its commit, stored after):"
echo "$hits"
