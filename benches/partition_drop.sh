#!/usr/bin/env bash
# Retention on PostgreSQL (issue 16, docs/scaling.md "Partitioning by
# time"): what removing one month of hits costs as row deletes (what an
# unpartitioned table needs) and as a DROP of its partition (what retention
# does now), in one run on one private cluster.
#
#   benches/partition_drop.sh               # 1,000,000 hits in the month
#   ROWS=200000 benches/partition_drop.sh
#
# Two identical months of ROWS hits each (~0.5 KiB: IP, user agent,
# headers), built by the real migrations (`trackrelay migrate`), then
# filled by generate_series. One month is deleted with one DELETE by time
# range (the row-by-row path), the other dropped. Prints a Markdown table
# (docs/benchmarks.md, "Retention on PostgreSQL").
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}

cargo build --quiet --bin trackrelay
BIN=$PWD/target/debug/trackrelay
PG=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d)
chown postgres:postgres "$work"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    as_pg "$PG/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

as_pg "$PG/initdb" --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 -U postgres -D "$work/data" >/dev/null
as_pg "$PG/pg_ctl" -D "$work/data" -w -l "$work/log" \
    -o "-k $work -c listen_addresses='' -F" start >/dev/null
psql() { as_pg "$PG/psql" -X -q -h "$work" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

# The real schema: `trackrelay migrate` on a minimal config.
cat >"$work/t.toml" <<EOF
[tracking]
base_url = "http://127.0.0.1:8080"
[[tracking.keys]]
id = "k1"
secret = "bench-only-secret-0123456789abcdefghijkl"
[storage]
url = "postgresql://postgres@/postgres?host=$work&sslmode=disable"
[upstream]
url = "dir:$work/outbox"
[[routes]]
id = "default"
EOF
"$BIN" migrate --config "$work/t.toml" >/dev/null

# Two months a year ago, partitioned as a running node would have made them.
a=$(psql -At -c "SELECT trackrelay_month_start((extract(epoch FROM now()) * 1000)::bigint, -12)")
b=$(psql -At -c "SELECT trackrelay_month_start($a, 1)")
fill() {
    psql -c "SELECT trackrelay_month_partition('observations', $1)" >/dev/null
    psql -c "INSERT INTO observations (id, message_id, kind, recipient_id, at_ms, method, host,
                 ip, user_agent, headers, key_id)
             SELECT gen_random_uuid(), gen_random_uuid(), 'open', 'rid', $1 + (i % 2000000000),
                 'GET', 't.example.com', '198.51.100.' || (i % 250),
                 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15',
                 '[[\"user-agent\",\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)\"],
                   [\"accept\",\"image/avif,image/webp,image/apng,image/*,*/*;q=0.8\"],
                   [\"accept-language\",\"en-GB,en;q=0.9\"]]', 'k1'
             FROM generate_series(1, $ROWS) i"
}
fill "$a"
fill "$b"
psql -c "VACUUM ANALYZE observations" >/dev/null
part_a=$(psql -At -c "SELECT trackrelay_month_partition('observations', $a)")
part_b=$(psql -At -c "SELECT trackrelay_month_partition('observations', $b)")
size() { psql -At -c "SELECT pg_size_pretty(pg_total_relation_size('$1'))"; }
size_before=$(size "$part_a")

ms() { date +%s%3N; }
t0=$(ms)
psql -c "DELETE FROM observations WHERE at_ms >= $a AND at_ms < $b"
t1=$(ms)
size_after_delete=$(size "$part_a")
t2=$(ms)
psql -c "DROP TABLE $part_b"
t3=$(ms)

echo "| Removing one month of $ROWS hits (PostgreSQL $(basename "$(dirname "$PG")")) | Time | Disk afterwards |"
echo "|---|---|---|"
echo "| DELETE by time range (row by row) | $((t1 - t0)) ms | $size_after_delete of $size_before kept until VACUUM makes it reusable |"
echo "| DROP of the month's partition | $((t3 - t2)) ms | 0 (files removed) |"
