#!/usr/bin/env bash
# Throughput through Postfix with and without trackrelay as its milter,
# measured with Postfix's own load tools (as benches/relay_smtp.sh does for
# the relay):
#
#   postfix:        smtp-source ─▶ Postfix ─▶ smtp-sink
#   postfix+milter: smtp-source ─▶ Postfix (smtpd_milters = trackrelay) ─▶ smtp-sink
#
# Two private Postfix instances, identical but for smtpd_milters, relay to
# one smtp-sink. The message is the relay benchmark's newsletter (40-50 KB
# multipart/alternative, every link tracked, a pixel added). Each round
# sends BENCH_MESSAGES messages over BENCH_CONCURRENCY sessions to one
# instance, then the other, and the clock stops when the sink has counted
# every message (Postfix's queue is drained). The machine is shared, so
# the rounds alternate and the report gives each configuration's range.
#
# Usage (as root: smtp-sink drops to nobody, Postfix needs root to start):
#   benches/milter_postfix.sh
# Environment: BENCH_ROUNDS (5), BENCH_MESSAGES (400), BENCH_CONCURRENCY
#   (8), TRACKRELAY_CORPUS (../shared/corpus), BENCH_TEMPLATE (an HTML
#   file), TRACKRELAY_BIN (a built trackrelay instead of target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${BENCH_ROUNDS:-5}
messages=${BENCH_MESSAGES:-400}
sessions=${BENCH_CONCURRENCY:-8}
corpus=${TRACKRELAY_CORPUS:-$(cd .. && pwd)/shared/corpus}
template=${BENCH_TEMPLATE:-$corpus/html/colorlib-email-templates/template-3.html}
bin=${TRACKRELAY_BIN:-}

die() { echo "milter_postfix.sh: $*" >&2; exit 1; }
log() { printf '== %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (smtp-sink -u nobody, private Postfix instances)"
for cmd in smtp-source smtp-sink postfix python3; do
    command -v "$cmd" >/dev/null || die "$cmd is missing: run .ci/packages"
done
[ -f "$template" ] || die "no template $template (set TRACKRELAY_CORPUS or BENCH_TEMPLATE)"

work=$(mktemp -d /tmp/milter-bench.XXXXXX)
chmod 755 "$work" # Postfix daemons (user postfix) open files below it
pids=()
cleanup() {
    set +e
    for dir in "$work"/pf-*; do
        [ -f "$dir/main.cf" ] || continue
        local master
        master=$(tr -d ' ' <"$dir/queue/pid/master.pid" 2>/dev/null)
        postfix -c "$dir" stop >/dev/null 2>&1
        for _ in $(seq 100); do
            [ -n "$master" ] && [ -d "/proc/$master" ] || break
            sleep 0.1
        done
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
calc() { python3 -c "print($1)"; }

# Waits (at most 30 s) until something answers on a port; with a second
# argument "smtp", until it greets with 220.
wait_listening() {
    for _ in $(seq 300); do
        if python3 - "$1" "${2:-}" 2>/dev/null <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
if sys.argv[2] == "smtp":
    assert s.recv(512).startswith(b"220")
    s.sendall(b"QUIT\r\n")
EOF
        then return 0; fi
        sleep 0.1
    done
    die "nothing listens on port $1"
}

# The relay benchmark's newsletter: the template with real links, a
# text/plain part, both quoted-printable.
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
open(sys.argv[2], "w").write(f"""From: Example News <news@example.com>
To: reader@example.org
Subject: Benchmark newsletter
Date: Thu, 26 Nov 2026 10:00:00 +0000
Message-ID: <milter-bench@example.com>
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
""")
print(len(open(sys.argv[2], "rb").read()), count)
EOF
}

start_sink() {
    sink_port=$(free_port)
    smtp-sink -u nobody -c -m 512 "127.0.0.1:$sink_port" 1024 \
        >"$work/sink.counters" 2>"$work/sink.err" &
    sink_pid=$!
    pids+=("$sink_pid")
    wait_listening "$sink_port" smtp
}

sink_count() {
    local n
    n=$(tail -c 200 "$work/sink.counters" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1)
    echo "${n#mesg=}"
}

start_trackrelay() {
    milter_port=$(free_port)
    cat >"$work/trackrelay.toml" <<EOF
[smtp]
listen = "127.0.0.1:$(free_port)"
[upstream]
url = "dir:$work/outbox"
[tracking]
listen = "127.0.0.1:$(free_port)"
base_url = "https://t.example.com"
[[tracking.keys]]
id = "k1"
secret = "milter-bench-secret-0123456789abcdef"
[api]
listen = "127.0.0.1:$(free_port)"
token = "milter-bench-token-9Fq2Lm7Xv4Rk8Pw3"
[storage]
path = "$work/trackrelay.db"
[milter]
listen = "127.0.0.1:$milter_port"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
EOF
    "$bin" check-config --config "$work/trackrelay.toml" >/dev/null
    "$bin" serve --config "$work/trackrelay.toml" 2>"$work/trackrelay.log" &
    relay_pid=$!
    pids+=("$relay_pid")
    wait_listening "$milter_port"
}

# A private Postfix instance named $1 relaying to the sink; $2 is added to
# main.cf. Prints its smtpd port.
start_postfix() {
    local dir="$work/pf-$1" port
    port=$(free_port)
    mkdir -p "$dir/queue" "$dir/data"
    chown postfix "$dir/data"
    cat >"$dir/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $1.bench
syslog_name = postfix-$1
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
$2
EOF
    awk -v listen="127.0.0.1:$port" '
        /^#/ || /^[ \t]/ || NF < 8 { print; next }
        $1 == "smtp" && $2 == "inet" { $1 = listen }
        { $5 = "n"; print }' /etc/postfix/master.cf >"$dir/master.cf"
    postfix -c "$dir" start >/dev/null 2>&1 || { grep -v warning "$dir/maillog" >&2; die "postfix $1 did not start"; }
    wait_listening "$port" smtp
    echo "$port"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One round: $messages messages to port $1; prints the seconds until the
# sink has them all.
round() {
    local before t0 t1
    before=$(sink_count)
    t0=$(date +%s.%N)
    smtp-source -s "$sessions" -m "$messages" -f news@example.com -t reader@example.org \
        -M bench.client -F "$work/message.eml" "127.0.0.1:$1" 2>>"$work/source.err" \
        || die "smtp-source failed on port $1"
    local start=$SECONDS
    while [ "$(sink_count)" -lt $((before + messages)) ]; do
        [ $((SECONDS - start)) -gt 300 ] && die "port $1: the sink has $(sink_count) of $((before + messages))"
        sleep 0.01
    done
    t1=$(date +%s.%N)
    calc "$t1 - $t0"
}

if [ -z "$bin" ]; then
    log "building trackrelay (cargo build --release)"
    cargo build --release --locked -q
    bin=target/release/trackrelay
    build="commit $(git rev-parse --short HEAD)"
else
    build="binary $bin"
fi
info=$(make_message)
log "message: ${info% *} bytes, ${info#* } links"
start_sink
start_trackrelay
plain_port=$(start_postfix plain "")
milter_port_pf=$(start_postfix milter "smtpd_milters = inet:127.0.0.1:$milter_port
milter_default_action = tempfail
milter_protocol = 6")
load=$(cut -d' ' -f1-3 /proc/loadavg)

# Warm-up (process pools, page cache), not counted.
round "$plain_port" >/dev/null
round "$milter_port_pf" >/dev/null
plain=()
milter=()
cpu0=$(cpu_ticks "$relay_pid")
for r in $(seq "$rounds"); do
    s=$(round "$plain_port")
    plain+=("$(calc "round($messages / $s)")")
    s=$(round "$milter_port_pf")
    milter+=("$(calc "round($messages / $s)")")
    log "round $r: postfix ${plain[-1]} msg/s, postfix+milter ${milter[-1]} msg/s"
done
cpu_ms=$(( ($(cpu_ticks "$relay_pid") - cpu0) * 1000 / $(getconf CLK_TCK) ))
rewritten=$(grep -c 'milter: rewritten' "$work/trackrelay.log" || true)
failed=$(grep -c 'milter: not rewritten' "$work/trackrelay.log" || true)
tracked=$(grep 'milter: rewritten' "$work/trackrelay.log" | grep -c 'opens=true' || true)

range() { python3 -c "import sys; v = sorted(map(int, sys.argv[1:])); print(f'{v[0]}–{v[-1]} (median {v[len(v)//2]})')" "$@"; }
ratio() { python3 -c "
import sys
n = len(sys.argv) // 2
a, b = list(map(int, sys.argv[1:n + 1])), list(map(int, sys.argv[n + 1:]))
r = sorted(m / p for m, p in zip(a, b))
print(f'{r[0]:.2f}–{r[-1]:.2f}')" "$@"; }

cat <<EOF
## Milter

\`benches/milter_postfix.sh\` (as root; BENCH_ROUNDS=$rounds, BENCH_MESSAGES=$messages,
BENCH_CONCURRENCY=$sessions), $(date -u +%Y-%m-%d), $build,
on $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),
Postfix $(postconf -d -h mail_version 2>/dev/null); load average $load at the start
(the machine is shared).

Message: ${info% *} bytes (the relay benchmark's newsletter, ${info#* } links; the
milter adds a pixel and tracks every link). Two Postfix instances, identical
but for \`smtpd_milters\`, relay to one smtp-sink; each round sends $messages
messages over $sessions sessions to one, then the other; the clock stops when
the sink has counted every message (the queue is drained).

| configuration | msg/s over $rounds rounds |
| --- | ---: |
| Postfix alone | $(range "${plain[@]}") |
| Postfix + trackrelay milter | $(range "${milter[@]}") |

Milter ÷ alone, round by round: $(ratio "${milter[@]}" "${plain[@]}").
trackrelay's CPU time: $(calc "round($cpu_ms / ($rounds * $messages), 2)") ms per message;
it logged $rewritten rewritten messages ($tracked with a pixel) and $failed not rewritten.
EOF
