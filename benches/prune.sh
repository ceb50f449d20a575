#!/usr/bin/env bash
# Minimisation (issue 8): the time `trackrelay prune` takes to minimise a
# million observations older than raw_signal_days, alone and beside a
# running tracking server under wrk load, and the tracking server's p99
# with and without it (the approach of benches/tracking_http.sh).
#
#   benches/prune.sh                      # 1,000,000 rows, 30 s wrk runs
#   ROWS=200000 DURATION=10 benches/prune.sh
#   PAUSE_MS=0 benches/prune.sh           # prune's pause between batches
#
# The rows are written straight into the schema by sqlite3 (60 days old,
# ~0.5 KiB each: a real IP, user agent and request headers). The server
# runs with raw_signal_days = 3650 so its own hourly task has nothing to
# do; `prune` runs with a second config (raw_signal_days = 28) on the same
# database. Prints a Markdown table (docs/benchmarks.md, "Privacy").
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
DURATION=${DURATION:-30}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PAUSE_MS=${PAUSE_MS:-20}
BATCH_ROWS=${BATCH_ROWS:-1000}

cargo build --release --locked --quiet
BIN=$PWD/target/release/trackrelay

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

config() { # config FILE RAW_SIGNAL_DAYS
    cat >"$1" <<TOML
[tracking]
listen = "127.0.0.1:$TPORT"
base_url = "http://127.0.0.1:$TPORT"
[[tracking.keys]]
id = "k1"
secret = "Hv3nQ8zL1pW6tR9xK2mB7cF4jD0sG5aY"
[api]
listen = "127.0.0.1:$APORT"
token = "bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd"
[storage]
path = "$work/bench.db"
[retention]
raw_signal_days = $2
[[routes]]
id = "default"
track_opens = true
track_clicks = true
TOML
}
config "$work/serve.toml" 3650
config "$work/prune.toml" 28

prune() {
    "$BIN" prune --config "$work/prune.toml" --batch-rows "$BATCH_ROWS" --pause-ms "$PAUSE_MS"
}

# The schema (prune opens and migrates), then ROWS old observations.
"$BIN" prune --config "$work/prune.toml" --dry-run >/dev/null
old_ms=$(( ($(date +%s) - 60 * 86400) * 1000 ))
sqlite3 "$work/bench.db" <<SQL
PRAGMA journal_mode = WAL;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
INSERT INTO observations (id, message_id, kind, recipient_id, link, url, at_ms, method, host,
                          ip, user_agent, headers, key_id)
SELECT printf('%08x-%04x-7000-8000-%012x', $old_ms / 65536 + i / 1000, i % 65536, i),
       printf('0193%04x-0000-7000-8000-%012x', i / 10 % 65536, i / 10),
       CASE i % 3 WHEN 0 THEN 'click' ELSE 'open' END,
       printf('rid%07d', i / 10), NULL, NULL, $old_ms + i * 2, 'GET', 't.example.com',
       printf('%d.%d.%d.%d', 1 + i % 223, i / 256 % 256, i / 65536 % 256, i % 256),
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
       '[["host","t.example.com"],["user-agent","Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"],["accept","image/avif,image/webp,*/*"],["accept-language","en-GB,en;q=0.9"],["accept-encoding","gzip, deflate, br"],["x-forwarded-for","' || i || '"]]',
       'k1'
FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
cp "$work/bench.db" "$work/pristine.db"
size=$(du -m "$work/bench.db" | cut -f1)
fresh() { cp "$work/pristine.db" "$work/bench.db"; rm -f "$work/bench.db-wal" "$work/bench.db-shm"; }

# 1. prune alone.
start=$(date +%s.%N)
prune >/dev/null
alone=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
minimised=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE ip_hash IS NOT NULL")
raw_left=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE ip_hash IS NULL")

# 2. the server under wrk, without and with prune running.
fresh
"$BIN" rewrite --config "$work/serve.toml" --route default --recipient bob@example.com >"$work/msg.eml" <<'EOF'
From: a@example.com
To: bob@example.com
Subject: bench
MIME-Version: 1.0
Content-Type: text/html

<html><body><a href="https://example.com/landing">x</a></body></html>
EOF
OPEN=$(grep -o "/o/[A-Za-z0-9_-]*" "$work/msg.eml" | head -1)
"$BIN" serve --config "$work/serve.toml" 2>"$work/serve.log" &
TPID=$!
pids+=("$TPID")
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$TPORT/healthz" && break
    sleep 0.1
done

wrk_run() { # prints "rps p50 p99 max"
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$TPORT$OPEN")
    echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out") \
$(awk '$1 == "99%" {print $2}' <<<"$out") $(awk '$1 == "Latency" {print $4}' <<<"$out")"
}
base=$(wrk_run)
load_base=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s.%N)
prune >"$work/prune.out" &
PPID_=$!
during=$(wrk_run)
load_during=$(cut -d' ' -f1 /proc/loadavg)
wait "$PPID_"
under_load=$(awk '/took/ {print $2}' "$work/prune.out")
failed=$(curl -s -H "Authorization: Bearer bench-token-9Fq2Lm7Xv4Rk8Pw3Zs6Jd" "http://127.0.0.1:$APORT/metrics" | awk '/^trackrelay_storage_commit_failures_total/ {print $2}')
minimised_2=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM observations WHERE ip_hash IS NOT NULL")

echo
echo "$ROWS observations ($size MiB database); batches of $BATCH_ROWS rows, ${PAUSE_MS} ms pause; $(nproc) cores; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on /o/"
echo
echo "| run | prune time | minimised | pixel requests/s | p50 | p99 | max | load avg |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| prune alone | ${alone} s | $minimised ($raw_left raw left) | — | — | — | — | — |"
read -r rps p50 p99 max <<<"$base"
echo "| server alone | — | — | $rps | $p50 | $p99 | $max | $load_base |"
read -r rps p50 p99 max <<<"$during"
echo "| server + prune | ${under_load} s | $minimised_2 | $rps | $p50 | $p99 | $max | $load_during |"
echo
echo "server commits failed (locked) meanwhile: ${failed:-?}; 'commit failed' log lines: $(grep -c 'commit failed' "$work/serve.log" || true)"
