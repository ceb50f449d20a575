#!/usr/bin/env bash
# Relay throughput, measured with Postfix's own load tools (Debian package
# postfix; .ci/packages installs it). One run compares three paths:
#
#   direct:     smtp-source ─▶ smtp-sink
#   trackrelay: smtp-source ─▶ trackrelay (tracking on) ─▶ smtp-sink
#   postfix:    smtp-source ─▶ Postfix (relayhost = the sink) ─▶ smtp-sink
#
# at each concurrency (smtp-source -s N), with a 40-50 KB multipart/
# alternative newsletter built from a template of the shared corpus. Each
# cell sends messages for about BENCH_SECONDS: a calibration run picks a
# message count M that takes ~2 s, and `smtp-source -m M` runs repeat
# until the time is up. The clock stops when the sink has counted every
# message, so Postfix, which answers before it delivers, is timed until its
# queue is drained. trackrelay answers only after the sink did.
#
# Reported: msg/s (messages / wall time), the time per message at
# concurrency 1 and what trackrelay adds to the direct path, trackrelay's
# CPU time per message and its peak RSS (VmHWM).
#
# Usage (as root: smtp-sink drops to nobody, Postfix needs root to start):
#   benches/relay_smtp.sh               print the results
#   benches/relay_smtp.sh --write-doc   also put them in docs/benchmarks.md
# Environment: BENCH_SECONDS (10), BENCH_CONCURRENCY ("1 8 32"),
#   BENCH_DKIM (rsa or ed25519: trackrelay also DKIM-signs every copy),
#   BENCH_TEMPLATE (an HTML file), TRACKRELAY_CORPUS (../shared/corpus),
#   TRACKRELAY_BIN (a trackrelay binary to measure instead of building
#   target/release/trackrelay, e.g. another branch's build),
#   BENCH_PG=1 (a fourth path: trackrelay storing its records in a private
#   PostgreSQL cluster on the same machine, started by this script).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${BENCH_SECONDS:-10}
levels=${BENCH_CONCURRENCY:-1 8 32}
corpus=${TRACKRELAY_CORPUS:-$(cd .. && pwd)/shared/corpus}
template=${BENCH_TEMPLATE:-$corpus/html/colorlib-email-templates/template-3.html}
bin=${TRACKRELAY_BIN:-}
write_doc=0
[ "${1:-}" = "--write-doc" ] && write_doc=1

die() { echo "relay_smtp.sh: $*" >&2; exit 1; }
log() { printf '== %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (smtp-sink -u nobody, a private Postfix instance)"
for cmd in smtp-source smtp-sink postfix python3; do
    command -v "$cmd" >/dev/null || die "$cmd is missing: run .ci/packages"
done
[ -f "$template" ] || die "no template $template (set TRACKRELAY_CORPUS or BENCH_TEMPLATE)"

work=$(mktemp -d /tmp/relay-bench.XXXXXX)
chmod 755 "$work" # Postfix daemons (user postfix) open files below it
pids=()
cleanup() {
    set +e
    if [ -f "$work/pg/postmaster.pid" ]; then
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
    fi
    if [ -f "$work/postfix/main.cf" ]; then
        local master
        master=$(cat "$work/postfix/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
        postfix -c "$work/postfix" stop >/dev/null 2>&1
        # The master must be gone before its queue is removed.
        for _ in $(seq 100); do
            [ -n "$master" ] && [ -d "/proc/$master" ] || break
            sleep 0.1
        done
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
# Arithmetic on decimals (Python syntax; True/False for comparisons).
calc() { python3 -c "print($1)"; }

# Waits (at most 30 s) until something greets with 220 on a port.
wait_listening() {
    for _ in $(seq 300); do
        if python3 - "$1" 2>/dev/null <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
assert s.recv(512).startswith(b"220")
s.sendall(b"QUIT\r\n")
EOF
        then return 0; fi
        sleep 0.1
    done
    die "nothing greets on port $1 ($2)"
}

# ---------------------------------------------------------------- message
# The template as a newsletter: placeholder links ("#") become real ones
# (a template ships with "#"; a sent newsletter has URLs that get tracked),
# a text/plain part made from the visible text, both quoted-printable, in
# a multipart/alternative message. LF line ends: smtp-source sends CRLF.
make_message() {
    python3 - "$template" "$work/message.eml" <<'EOF'
import html, quopri, re, sys
page = open(sys.argv[1], encoding="utf-8").read()
count = 0
def link(_):
    global count
    count += 1
    return f'href="https://www.example.com/news/item-{count}?utm_source=newsletter&amp;utm_medium=email"'
page = re.sub(r'href="#"', link, page)
visible = re.sub(r"(?s)<(style|head)[^>]*>.*?</\1>", " ", page)
words = html.unescape(re.sub(r"<[^>]+>", " ", visible)).split()
lines, line = [], ""
for w in words:
    if line and len(line) + len(w) + 1 > 72:
        lines.append(line)
        line = w
    else:
        line = f"{line} {w}".strip()
lines.append(line)
qp = lambda s: quopri.encodestring(s.encode("utf-8")).decode("ascii")
message = f"""From: Example News <news@example.com>
To: reader@example.org
Subject: Benchmark newsletter
Date: Thu, 26 Nov 2026 10:00:00 +0000
Message-ID: <relay-bench@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_bench_alt"

--=_bench_alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

{qp(chr(10).join(lines))}
--=_bench_alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

{qp(page)}
--=_bench_alt--
"""
open(sys.argv[2], "w").write(message)
print(len(message.encode()), count)
EOF
}

# ------------------------------------------------------------------ sink
# One smtp-sink for every path; -c prints running counters ("mesg=N") to
# its stdout, which is how the clock knows when all messages arrived.
start_sink() {
    sink_port=$(free_port)
    smtp-sink -u nobody -c -m 512 "127.0.0.1:$sink_port" 1024 \
        >"$work/sink.counters" 2>"$work/sink.err" &
    sink_pid=$!
    pids+=("$sink_pid")
    wait_listening "$sink_port" smtp-sink
}

sink_count() {
    local n
    n=$(tail -c 200 "$work/sink.counters" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1)
    echo "${n#mesg=}"
}

wait_sink() { # target count, what
    local start=$SECONDS
    while [ "$(sink_count)" -lt "$1" ]; do
        if [ $((SECONDS - start)) -gt 300 ]; then
            tail -5 "$work/postfix/maillog" >&2 2>/dev/null || true
            die "$2: the sink has $(sink_count) of $1 messages after 300 s"
        fi
        sleep 0.01
    done
}

# ------------------------------------------------------------ trackrelay
start_trackrelay() { # name, [storage] line
    local name=$1 relay_port
    relay_port=$(free_port)
    cat >"$work/$name.toml" <<EOF
[smtp]
listen = "127.0.0.1:$relay_port"
hostname = "relay.bench"
[upstream]
url = "smtp://127.0.0.1:$sink_port"
starttls = "off"
# Keep a connection per concurrent client (the default, 16, is for 16).
max_idle_connections = 64
[tracking]
listen = "127.0.0.1:$(free_port)"
base_url = "https://t.example.com"
[[tracking.keys]]
id = "k1"
secret = "relay-bench-secret-0123456789abcdef"
[api]
listen = "127.0.0.1:$(free_port)"
token = "relay-bench-token-9Fq2Lm7Xv4Rk8Pw3Z"
[storage]
$2
[[routes]]
id = "default"
track_opens = true
track_clicks = true
EOF
    # BENCH_DKIM=rsa|ed25519: every copy is also DKIM-signed (docs/dkim.md).
    if [ -n "${BENCH_DKIM:-}" ]; then
        "$bin" dkim keygen --domain example.com --selector bench \
            --algorithm "$BENCH_DKIM" --out "$work/dkim.pem" >/dev/null
        printf '[[dkim.keys]]\ndomain = "example.com"\nselector = "bench"\nprivate_key = "%s"\n' \
            "$work/dkim.pem" >>"$work/$name.toml"
    fi
    "$bin" check-config --config "$work/$name.toml" >/dev/null
    # What the relay will do to the message, with the same code and config.
    local rewritten
    rewritten=$("$bin" rewrite --config "$work/$name.toml" \
        --route default --recipient reader@example.org <"$work/message.eml")
    clicks=$(grep -o 'https://t.example.com/c/' <<<"$rewritten" | wc -l)
    opens=$(grep -o 'https://t.example.com/o/' <<<"$rewritten" | wc -l)
    [ "$clicks" -gt 0 ] && [ "$opens" -eq 1 ] || die "the message is not tracked ($clicks clicks, $opens opens)"
    "$bin" serve --config "$work/$name.toml" 2>"$work/$name.log" &
    relay_pid[$name]=$!
    port[$name]=$relay_port
    pids+=("${relay_pid[$name]}")
    wait_listening "$relay_port" "$name"
}
declare -A relay_pid port

# BENCH_PG=1: a private cluster (initdb as the postgres user in the work
# directory, Unix socket only, fsync on: the server's defaults).
start_postgres() {
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$pgbin" ] || die "BENCH_PG=1 needs Debian's postgresql: run .ci/packages"
    mkdir "$work/pg"
    chown postgres "$work/pg"
    runuser -u postgres -- "$pgbin/initdb" --auth=trust -U postgres -D "$work/pg" >/dev/null
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
        -o "-k $work/pg -c listen_addresses=''" start >/dev/null
}

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# --------------------------------------------------------------- postfix
# A private instance, as in tests/support/postfix.rs: own config, queue
# and maillog; Postfix's defaults otherwise (queue files are fsynced, as a
# store-and-forward MTA must; delivery concurrency to one destination 20).
start_postfix() {
    local dir="$work/postfix"
    postfix_port=$(free_port)
    mkdir -p "$dir/queue" "$dir/data"
    chown postfix "$dir/data"
    cat >"$dir/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
syslog_name = postfix-bench
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
relayhost = [127.0.0.1]:$sink_port
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_peername_lookup = no
EOF
    # The stock master.cf: smtpd on our port, nothing chrooted.
    awk -v listen="127.0.0.1:$postfix_port" '
        /^#/ || /^[ \t]/ || NF < 8 { print; next }
        $1 == "smtp" && $2 == "inet" { $1 = listen }
        { $5 = "n"; print }' /etc/postfix/master.cf >"$dir/master.cf"
    postfix -c "$dir" start >/dev/null 2>&1 || { grep -v warning "$dir/maillog" >&2; die "postfix did not start"; }
    wait_listening "$postfix_port" postfix
}

# ------------------------------------------------------------------ runs
# One run: N sessions, M messages. Prints the wall time in seconds and the
# CPU time of smtp-source, smtp-sink and trackrelay in milliseconds.
run() { # path port sessions messages
    local before relay0 sink0 out t0 rc source_cpu t1 relay=${relay_pid[${1/direct/trackrelay}]:-${relay_pid[trackrelay]}}
    before=$(sink_count)
    relay0=$(cpu_ticks "$relay")
    sink0=$(cpu_ticks "$sink_pid")
    # smtp-source under a small Python parent that reports its CPU time.
    out=$(python3 - "$work/source.err" smtp-source -s "$3" -m "$4" \
        -f news@example.com -t reader@example.org -M bench.client \
        -F "$work/message.eml" "127.0.0.1:$2" <<'EOF'
import resource, subprocess, sys, time
start = time.time()
with open(sys.argv[1], "a") as err:
    rc = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stderr=err).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(start, rc, usage.ru_utime + usage.ru_stime)
EOF
    )
    read -r t0 rc source_cpu <<<"$out"
    [ "$rc" = 0 ] || { tail -3 "$work/source.err" >&2; die "$1: smtp-source failed"; }
    wait_sink $((before + $4)) "$1"
    t1=$(now)
    echo "$(calc "$t1 - $t0") $(calc "round($source_cpu * 1000)")" \
        "$(ticks_ms $(($(cpu_ticks "$sink_pid") - sink0)))" \
        "$(ticks_ms $(($(cpu_ticks "$relay") - relay0)))"
}
ticks_ms() { echo $(($1 * 1000 / $(getconf CLK_TCK))); }

# Grows the message count until a run lasts a second; prints the count
# that should last about 2 s (one chunk of a measurement).
calibrate() { # path port sessions
    local m=$((5 * $3 > 20 ? 5 * $3 : 20)) out secs
    while :; do
        out=$(run "$1" "$2" "$3" "$m")
        secs=${out%% *}
        if [ "$(calc "$secs >= 1 or $m >= 500000")" = True ]; then
            calc "max($3, round($m / $secs * 2))"
            return
        fi
        m=$((m * 5))
    done
}

# Runs chunks of smtp-source until $seconds have passed (so a rate that
# changes after calibration cannot stretch a run), then records the cell.
declare -A rate per_msg count secs_of cpu hwm
measure() { # path port sessions
    local chunk m=0 s=0 source=0 sink=0 relay=0 secs source_ms sink_ms relay_ms
    chunk=$(calibrate "$@")
    while [ "$(calc "$s < $seconds")" = True ]; do
        read -r secs source_ms sink_ms relay_ms <<<"$(run "$1" "$2" "$3" "$chunk")"
        m=$((m + chunk))
        s=$(calc "$s + $secs")
        source=$((source + source_ms))
        sink=$((sink + sink_ms))
        relay=$((relay + relay_ms))
    done
    rate[$1,$3]=$(calc "round($m / $s)")
    per_msg[$1,$3]=$(calc "round($s / $m * 1000, 2)")
    count[$1,$3]=$m
    secs_of[$1,$3]=$(calc "round($s, 1)")
    # CPU milliseconds per message: smtp-source / smtp-sink / trackrelay.
    cpu[$1,$3]="$(calc "round($source / $m, 2)") / $(calc "round($sink / $m, 2)") / $(calc "round($relay / $m, 2)")"
    log "$1 at $3: $m messages in ${secs_of[$1,$3]} s = ${rate[$1,$3]} msg/s"
}

# ---------------------------------------------------------------- main
if [ -z "$bin" ]; then
    log "building trackrelay (cargo build --release)"
    cargo build --release --locked -q
    bin=target/release/trackrelay
    build="commit $(git rev-parse --short HEAD)"
else
    build="binary $bin"
fi
message_info=$(make_message)
size=${message_info% *}
links=${message_info#* }
log "message: $size bytes, $links placeholder links made real"
start_sink
start_trackrelay trackrelay "path = \"$work/trackrelay.db\""
paths="direct trackrelay postfix"
if [ "${BENCH_PG:-0}" = 1 ]; then
    start_postgres
    start_trackrelay trackrelay-pg "url = \"postgresql://postgres@/postgres?host=$work/pg&sslmode=disable\""
    paths="direct trackrelay trackrelay-pg postfix"
fi
start_postfix
load=$(cut -d' ' -f1-3 /proc/loadavg)

for n in $levels; do
    for path in $paths; do
        case $path in
        direct) measure direct "$sink_port" "$n" ;;
        postfix) measure postfix "$postfix_port" "$n" ;;
        *) measure "$path" "${port[$path]}" "$n" ;;
        esac
    done
    hwm[$n]=$(awk '/VmHWM/ {print $2}' "/proc/${relay_pid[trackrelay]}/status")
done
relays=$(grep -c 'relayed' "$work/trackrelay.log" || true)

# ---------------------------------------------------------------- report
report() {
    local first last n vs_postfix vs_direct
    first=$(echo "$levels" | awk '{print $1}')
    last=$(echo "$levels" | awk '{print $NF}')
    echo "## Relay throughput"
    echo
    echo "\`benches/relay_smtp.sh\` (as root; BENCH_SECONDS=$seconds, concurrency $levels),"
    echo "$(date -u +%Y-%m-%d), $build,"
    echo "on $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),"
    echo "Linux $(uname -r), Postfix $(postconf -d -h mail_version 2>/dev/null);"
    echo "load average $load at the start (the machine is shared)."
    echo
    echo "Message: $size bytes, multipart/alternative (text/plain and text/html, both"
    echo "quoted-printable), from \`${template#"$corpus"/html/}\` with its $links"
    echo "placeholder links (\`#\`) made into URLs; trackrelay adds a pixel and rewrites"
    echo "every link, one recipient per message. smtp-source opens one session per"
    echo "message. Each cell: about $seconds s of sending, in runs of \`smtp-source -s N -m M\`"
    echo "with M picked for ~2 s by a calibration run; the clock stops when the sink"
    echo "has counted every message (for Postfix: its queue is drained)."
    echo
    echo "| concurrency | direct msg/s | trackrelay msg/s | Postfix msg/s | trackrelay ÷ Postfix | trackrelay ÷ direct | trackrelay VmHWM |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for n in $levels; do
        echo "| $n | ${rate[direct,$n]} | ${rate[trackrelay,$n]} | ${rate[postfix,$n]} |" \
            "$(calc "round(${rate[trackrelay,$n]} / ${rate[postfix,$n]}, 2)")× |" \
            "$(calc "round(${rate[trackrelay,$n]} / ${rate[direct,$n]} * 100)")% |" \
            "$(calc "round(${hwm[$n]} / 1024, 1)") MiB |"
    done
    if [ "${BENCH_PG:-0}" = 1 ]; then
        echo
        echo "Records in PostgreSQL (a private cluster on the same machine, Unix socket)"
        echo "instead of SQLite, measured in the same run:"
        echo
        echo "| concurrency | trackrelay (SQLite) msg/s | trackrelay (PostgreSQL) msg/s | PostgreSQL ÷ SQLite | PostgreSQL ÷ Postfix | CPU ms/message, trackrelay (PostgreSQL) |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
        for n in $levels; do
            echo "| $n | ${rate[trackrelay,$n]} | ${rate[trackrelay-pg,$n]} |" \
                "$(calc "round(${rate[trackrelay-pg,$n]} / ${rate[trackrelay,$n]}, 2)")× |" \
                "$(calc "round(${rate[trackrelay-pg,$n]} / ${rate[postfix,$n]}, 2)")× |" \
                "${cpu[trackrelay-pg,$n]##* / } |"
        done
    fi
    echo
    echo "Time per message at concurrency $first: direct ${per_msg[direct,$first]} ms," \
        "through trackrelay ${per_msg[trackrelay,$first]} ms, so trackrelay adds" \
        "$(calc "round(${per_msg[trackrelay,$first]} - ${per_msg[direct,$first]}, 2)") ms;" \
        "through Postfix ${per_msg[postfix,$first]} ms (until delivered)."
    echo "Peak RSS of trackrelay (VmHWM) over the whole run: ${hwm[$last]} kB."
    echo
    echo "CPU milliseconds per message, smtp-source / smtp-sink / trackrelay (2 cores"
    echo "shared by all of them and by Postfix's processes, not counted here):"
    echo
    echo "| concurrency | direct | through trackrelay | through Postfix |"
    echo "| ---: | ---: | ---: | ---: |"
    for n in $levels; do
        echo "| $n | ${cpu[direct,$n]} | ${cpu[trackrelay,$n]} | ${cpu[postfix,$n]} |"
    done
    echo
    echo -n "Messages per cell (direct / trackrelay / Postfix):"
    for n in $levels; do
        echo -n " c=$n: ${count[direct,$n]} / ${count[trackrelay,$n]} / ${count[postfix,$n]};"
    done
    echo " trackrelay logged $relays relayed copies in all (calibrations included)."
    echo
    vs_postfix=$(calc "${rate[trackrelay,$last]} >= 2 * ${rate[postfix,$last]}")
    vs_direct=$(calc "${rate[trackrelay,$last]} * 2 >= ${rate[direct,$last]}")
    echo "Targets at concurrency $last: ≥ 2× Postfix: $([ "$vs_postfix" = True ] && echo met || echo MISSED);" \
        "≥ 50% of direct: $([ "$vs_direct" = True ] && echo met || echo MISSED)."
}

report | tee "$work/report.md"
if [ "$write_doc" = 1 ]; then
    # The generated block sits between two markers under "## Relay
    # throughput"; text after the end marker (notes, analysis) is kept.
    python3 - "$work/report.md" docs/benchmarks.md <<'EOF'
import os, re, sys
report = open(sys.argv[1]).read().rstrip()
heading, _, body = report.partition("\n")
begin, end = "<!-- relay_smtp.sh: begin -->", "<!-- relay_smtp.sh: end -->"
block = f"{begin}\n{body.strip()}\n{end}"
path = sys.argv[2]
doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
if begin in doc and end in doc:
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, count=1, flags=re.S)
elif re.search(r"^## Relay throughput$", doc, re.M):
    doc = re.sub(r"^## Relay throughput\n", lambda _: f"{heading}\n\n{block}\n", doc, count=1, flags=re.M)
else:
    doc = doc.rstrip() + f"\n\n{heading}\n\n{block}\n"
open(path, "w").write(doc)
EOF
    log "wrote docs/benchmarks.md (section Relay throughput)"
fi
