#!/usr/bin/env bash
# Does big-mail rewriting stall the tracking server? Two 8 MB HTML messages
# with ~186k links each are relayed at once (SMTP in, dir: upstream out)
# while one client polls /healthz back to back; prints the /healthz
# latency (p50, p99, max) idle and during the rewrites, per binary.
# Compare a build before the rewrite pool with the current one:
#
#   benches/rewrite_stall.sh                          # target/release/trackrelay
#   benches/rewrite_stall.sh /tmp/trackrelay-old target/release/trackrelay
#
# Needs python3. Prints a Markdown table (docs/benchmarks.md, "Rewriting
# off the async workers", has the figures).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    cargo build --release --locked --quiet
    set -- target/release/trackrelay
fi

echo "| binary | phase | /healthz requests | p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|"
for bin in "$@"; do
    work=$(mktemp -d)
    port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    smtp=$(port); tracking=$(port); api=$(port)
    cat > "$work/trackrelay.toml" <<TOML
[smtp]
listen = "127.0.0.1:$smtp"
max_message_bytes = 104857600
[upstream]
url = "dir:$work/outbox"
[tracking]
listen = "127.0.0.1:$tracking"
base_url = "https://t.example.com"
[[tracking.keys]]
id = "k1"
secret = "0123456789abcdef0123456789abcdef"
[api]
listen = "127.0.0.1:$api"
token = "bench-token"
[storage]
path = "$work/trackrelay.db"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
TOML
    "$bin" serve --config "$work/trackrelay.toml" 2>"$work/log" &
    pid=$!
    BIN="$bin" SMTP=$smtp TRACKING=$tracking python3 - <<'PY'
import http.client, os, smtplib, statistics, threading, time

smtp, tracking = int(os.environ["SMTP"]), int(os.environ["TRACKING"])
for _ in range(200):
    try:
        http.client.HTTPConnection("127.0.0.1", tracking, timeout=1).request("GET", "/healthz")
        break
    except OSError:
        time.sleep(0.05)

links = 186_000
body = "".join(f'<a href="https://example.com/p/{i}">{i}</a>\r\n' for i in range(links))
message = ("From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n" + body
           + "</body></html>\r\n").encode()

def poll(seconds=None, until=None):
    conn = http.client.HTTPConnection("127.0.0.1", tracking, timeout=60)
    took, end = [], time.monotonic() + (seconds or 0)
    while (until is None and time.monotonic() < end) or (until is not None and not until.is_set()):
        t = time.perf_counter()
        conn.request("GET", "/healthz", headers={"Host": "t.example.com"})
        r = conn.getresponse(); r.read()
        assert r.status == 200, r.status
        took.append((time.perf_counter() - t) * 1000)
    return took

def send():
    with smtplib.SMTP("127.0.0.1", smtp, timeout=600) as c:
        c.sendmail("a@example.com", ["b@example.com"], message)

def row(phase, took):
    took = sorted(took)
    p = lambda q: took[min(len(took) - 1, int(q * len(took)))]
    print(f"| {os.path.basename(os.environ['BIN'])} | {phase} | {len(took)} | "
          f"{p(0.5):.2f} | {p(0.99):.2f} | {took[-1]:.1f} |")

row("idle", poll(seconds=3))
done = threading.Event()
senders = [threading.Thread(target=send) for _ in range(2)]
result = []
poller = threading.Thread(target=lambda: result.extend(poll(until=done)))
poller.start()
start = time.monotonic()
for s in senders: s.start()
for s in senders: s.join()
done.set(); poller.join()
row(f"2 × 8 MB rewrites ({time.monotonic() - start:.1f} s)", result)
PY
    kill -TERM $pid; wait $pid || true
    rm -rf "$work"
done
