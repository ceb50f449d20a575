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
#   PG=1 TARGETS=pixel benches/tracking_http.sh    # also trackrelay on PostgreSQL
#   PG=1 PG_OPTIONS='-c synchronous_commit=off' benches/tracking_http.sh  # server settings
#
# PG=1 starts a private PostgreSQL cluster on the same machine (initdb as
# the postgres user in the work directory, Unix socket, fsync on: the
# server's defaults) and a second `trackrelay serve` storing there; each
# round then measures nginx, trackrelay on SQLite and trackrelay on
# PostgreSQL in turn. The PostgreSQL server's own CPU (postmaster and
# its backends) is reported per request apart from trackrelay's, which
# gives the database cost per 1,000 hits (docs/scaling.md).
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
PG=${PG:-0}
if [ "$PG" = 1 ] && ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then need+=(postgresql); fi
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
# nginx workers and PostgreSQL run as unprivileged users: let them in.
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$PG" = 1 ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# config NAME STORAGE_LINE: trackrelay's default settings but fresh ports
# and the database; sets TPORT_<NAME> and APORT_<NAME>.
config() {
    local tport aport sport
    tport=$(free_port)
    aport=$(free_port)
    sport=$(free_port)
    cat >"$work/$1.toml" <<TOML
[smtp]
listen = "127.0.0.1:$sport"
[tracking]
listen = "127.0.0.1:$tport"
base_url = "http://127.0.0.1:$tport"
${TRACKING_EXTRA:-}
[[tracking.keys]]
id = "k1"
secret = "Zq8vN2kL5xR7tP1wY4mB9cF3hJ6dG0sA"
[api]
listen = "127.0.0.1:$aport"
token = "bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd"
[storage]
$2
[[routes]]
id = "default"
track_opens = true
track_clicks = true
TOML
    printf -v "TPORT_$1" '%s' "$tport"
    printf -v "APORT_$1" '%s' "$aport"
}
config trackrelay "path = \"$work/bench.db\""
TPORT=$TPORT_trackrelay
APORT=$APORT_trackrelay
NPORT=$(free_port)

# One real message through the rewriter gives a real pixel and click URL.
printf 'From: a@example.com\nTo: bob@example.com\nSubject: bench\nMIME-Version: 1.0\nContent-Type: text/html\n\n<html><body><a href="https://example.com/landing?utm_source=mail">x</a></body></html>\n' |
    "$BIN" rewrite --config "$work/trackrelay.toml" --route default --recipient bob@example.com >"$work/msg.eml"
OPEN=$(grep -o "/o/[A-Za-z0-9_-]*" "$work/msg.eml" | head -1)
CLICK=$(grep -o "/c/[A-Za-z0-9_-]*" "$work/msg.eml" | head -1)

nice -n "$NICE" "$BIN" serve --config "$work/trackrelay.toml" 2>"$work/trackrelay.log" &
TPID=$!
pids+=("$TPID")

SERVERS="nginx trackrelay"
if [ "$PG" = 1 ]; then
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir "$work/pg"
    chown postgres:postgres "$work/pg"
    runuser -u postgres -- "$PGBIN/initdb" --auth=trust -U postgres -D "$work/pg" >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
        -o "-k $work/pg -c listen_addresses='' ${PG_OPTIONS:-}" start >/dev/null
    PGMASTER=$(head -1 "$work/pg/postmaster.pid")
    config pg "url = \"postgresql://postgres@/postgres?host=$work/pg&sslmode=disable\""
    nice -n "$NICE" "$BIN" serve --config "$work/pg.toml" 2>"$work/trackrelay-pg.log" &
    PPID_PG=$!
    pids+=("$PPID_PG")
    SERVERS="nginx trackrelay pg"
fi

mkdir -p "$work/www" "$work/tmp"
# nginx workers run as an unprivileged user: let them read the GIF.
chmod 755 "$work/www"
printf 'GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b' >"$work/www/pixel.gif"
sed -e "s#__PORT__#$NPORT#g" -e "s#__ROOT__#$work#g" -e "s#__WORKERS__#$WORKERS#g" \
    benches/nginx_tracking.conf >"$work/nginx.conf"
nice -n "$NICE" "$NGINX" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
NPID=$!
pids+=("$NPID")

for port in "$TPORT" "$NPORT" ${TPORT_pg:-}; do
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
if [ "$PG" = 1 ]; then
    [ "$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$TPORT_pg$OPEN")" = "200 43" ]
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TPORT_pg$CLICK")" = "302" ]
fi

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

# PostgreSQL's processes: the postmaster and its backends (the writer's
# and the pool's connections live as long as the server).
db_pids() {
    [ "$PG" = 1 ] || return 0
    echo "$PGMASTER $(pgrep -P "$PGMASTER" | tr '\n' ' ')"
}

# run NAME URL PIDS...: wrk with latency percentiles; prints
# "rps p50 p99 answered errors cpu_us_per_request load db_cpu_us_per_request".
run() {
    local name=$1 url=$2 out c0 c1 dbpids d0 d1
    shift 2
    dbpids=$(db_pids)
    c0=$(ticks "$@")
    # shellcheck disable=SC2086 # the pids are words
    d0=$(ticks $dbpids)
    out=$(nice -n "$NICE" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
    c1=$(ticks "$@")
    # shellcheck disable=SC2086
    d1=$(ticks $dbpids)
    echo "$out" >"$work/wrk-$name.txt"
    local rps p50 p99 answered bad cpu
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    answered=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
    cpu=$(awk -v c=$((c1 - c0)) -v n="$answered" -v hz="$HZ" 'BEGIN {printf "%.1f", c * 1e6 / hz / n}')
    dbcpu=$(awk -v c=$((d1 - d0)) -v n="$answered" -v hz="$HZ" 'BEGIN {printf "%.1f", c * 1e6 / hz / n}')
    echo "$rps $p50 $p99 $answered ${bad:-0} $cpu $(cut -d' ' -f1 /proc/loadavg) $dbcpu"
}

declare -A R
declare -A ANSWERED=([pixel]=0 [click]=0)
declare -A ANSWERED_PG=([pixel]=0 [click]=0)
for target in $TARGETS; do
    path=$OPEN
    [ "$target" = click ] && path=$CLICK
    for round in $(seq "$ROUNDS"); do
        # shellcheck disable=SC2086 # the worker pids are words
        R[nginx-$target-$round]=$(run "nginx-$target-$round" "http://127.0.0.1:$NPORT$path" $NGINX_WORKERS)
        R[trackrelay-$target-$round]=$(run "trackrelay-$target-$round" "http://127.0.0.1:$TPORT$path" "$TPID")
        read -r _ _ _ answered _ <<<"${R[trackrelay-$target-$round]}"
        ANSWERED[$target]=$((ANSWERED[$target] + answered))
        if [ "$PG" = 1 ]; then
            R[pg-$target-$round]=$(run "pg-$target-$round" "http://127.0.0.1:$TPORT_pg$path" "$PPID_PG")
            read -r _ _ _ answered _ <<<"${R[pg-$target-$round]}"
            ANSWERED_PG[$target]=$((ANSWERED_PG[$target] + answered))
        fi
    done
done

# How many hits were answered before their commit (outcome="queued").
hits=$(curl -s -H "Authorization: Bearer bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd" "http://127.0.0.1:$APORT/metrics" | grep '^trackrelay_tracking_hits_total' || true)
# SIGTERM: trackrelay flushes every queued hit before it exits.
kill -TERM "$TPID"
wait "$TPID"
opens=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE kind = 'open'")
clicks=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE kind = 'click'")
if [ "$PG" = 1 ]; then
    kill -TERM "$PPID_PG"
    wait "$PPID_PG"
    pg_count() {
        runuser -u postgres -- "$PGBIN/psql" -h "$work/pg" -U postgres -Atc \
            "SELECT count(*) FROM observations WHERE kind = '$1'"
    }
    opens_pg=$(pg_count open)
    clicks_pg=$(pg_count click)
fi

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, each in turn; $(nproc) cores; nginx worker_processes $WORKERS; nice $NICE; $ROUNDS rounds"
echo
echo "| path | round | server | requests/s | p50 | p99 | CPU µs/request | database CPU µs/request | load | /nginx |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in $TARGETS; do
    for round in $(seq "$ROUNDS"); do
        read -r nrps _ <<<"${R[nginx-$target-$round]}"
        for server in $SERVERS; do
            read -r rps p50 p99 _ bad cpu load dbcpu <<<"${R[$server-$target-$round]}"
            ratio="—"
            [ "$server" != nginx ] && ratio=$(awk -v t="$rps" -v n="$nrps" 'BEGIN {printf "%.2f×", t / n}')
            [ "$bad" = 0 ] || ratio="$ratio ($bad non-2xx/3xx)"
            label=$server
            db="—"
            [ "$server" = trackrelay ] && label="trackrelay (SQLite)" && db="(in process)"
            [ "$server" = pg ] && label="trackrelay (PostgreSQL)" && db=$dbcpu
            echo "| $([ "$target" = pixel ] && echo /o/ || echo /c/) | $round | $label | $rps | $p50 | $p99 | $cpu | $db | $load | $ratio |"
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
    if [ "$PG" = 1 ]; then
        if [ "$target" = pixel ]; then stored=$((opens_pg - 1)); else stored=$((clicks_pg - 1)); fi
        answered=${ANSWERED_PG[$target]}
        verdict="every answered hit stored"
        [ "$stored" -lt "$answered" ] && verdict="MISSING $((answered - stored)) answered hits"
        echo "$target on PostgreSQL: $verdict (stored $stored, wrk answered $answered)"
    fi
done
echo
echo "trackrelay hit outcomes (queued = answered before its commit, stored after):"
echo "$hits"
