#!/usr/bin/env python3
"""Sending API throughput against SMTP, same run, same message (issue 18).

Starts smtp-sink (Postfix's load tool, .ci/packages) as the upstream and one
trackrelay (`serve`, tracking on, a [send] listener), then sends the same
email — html + text, three links, ~6 KB — three ways, each for about
BENCH_SECONDS:

  api-single: POST /v1/send, one email per request;
  api-batch:  POST /v1/send/batch, BENCH_BATCH emails per request;
  smtp:       SMTP (smtplib), one message per transaction, the MIME that
              Python's email package builds from the same fields;

each with BENCH_CONCURRENCY clients on keep-alive connections. Every path
answers only after the upstream accepted, so msg/s are comparable; the
ratios to SMTP are the figures to compare (the machine is shared).

Usage: benches/send_api.py  (TRACKRELAY_BIN: the binary, default
target/release/trackrelay, else target/debug/trackrelay)
"""

import http.client
import json
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
TOKEN = "lm_Bench7Qx2Vb9Nw4Lr8Kt3Zp6Hs1Jd5Fy"
HTML = "<html><body>" + "".join(
    f"<p>Paragraph {i} of the newsletter with some words in it, "
    f"<a href=\"https://example.com/article/{i % 3}\">read more</a>.</p>"
    for i in range(60)
) + "</body></html>"
TEXT = "The newsletter in plain text. https://example.com/article/0\n" * 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {port}")


def email_json(i: int) -> dict:
    return {"from": "News <news@acme.test>", "to": [f"reader{i}@example.test"],
            "subject": "This week's news", "html": HTML, "text": TEXT}


def smtp_bytes(i: int) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "News <news@acme.test>", f"reader{i}@example.test", "This week's news"
    m.set_content(TEXT)
    m.add_alternative(HTML, subtype="html")
    return m.as_bytes()


def run(name: str, worker) -> float:
    """Runs `worker(stop_time)` in CONCURRENCY threads; messages per second."""
    counts = [0] * CONCURRENCY
    stop = time.monotonic() + SECONDS

    def body(slot: int) -> None:
        counts[slot] = worker(stop)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(CONCURRENCY)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    rate = sum(counts) / elapsed
    print(f"{name:11} {sum(counts):7d} messages in {elapsed:5.1f} s: {rate:8.1f} msg/s", flush=True)
    return rate


def api_worker(port: int, batch: int):
    def work(stop: float) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        sent = 0
        headers = {"x-lettermint-token": TOKEN, "Content-Type": "application/json"}
        # Built once: the client's own cost stays out of the figures.
        if batch:
            path, body = "/v1/send/batch", json.dumps([email_json(k) for k in range(batch)])
        else:
            path, body = "/v1/send", json.dumps(email_json(0))
        while time.monotonic() < stop:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 202:
                sys.exit(f"{path}: {resp.status}")
            sent += batch or 1
        conn.close()
        return sent
    return work


def smtp_worker(port: int):
    def work(stop: float) -> int:
        sent = 0
        message = smtp_bytes(0)  # built once, as the API bodies
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.ehlo("bench")
            while time.monotonic() < stop:
                s.sendmail("news@acme.test", ["reader0@example.test"], message)
                sent += 1
        return sent
    return work


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.environ.get("TRACKRELAY_BIN") or next(
        p for p in (f"{root}/target/release/trackrelay", f"{root}/target/debug/trackrelay")
        if os.path.exists(p))
    work = tempfile.mkdtemp(prefix="send-bench.")
    sink_port, smtp_port, send_port = free_port(), free_port(), free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1000"])
    config = f"""
[smtp]
listen = "127.0.0.1:{smtp_port}"
hostname = "bench.test"
[upstream]
url = "smtp://127.0.0.1:{sink_port}"
[tracking]
listen = "127.0.0.1:{free_port()}"
base_url = "https://t.example.com"
[[tracking.keys]]
id = "k1"
secret = "0123456789abcdef0123456789abcdef"
[api]
listen = "127.0.0.1:{free_port()}"
token = "bench-api-token-4Hn8Vq2Lx7Rk9Pw3Zs6Jd"
[storage]
path = "{work}/trackrelay.db"
[[routes]]
id = "default"
track_opens = true
track_clicks = true
[send]
listen = "127.0.0.1:{send_port}"
rate_per_minute = 100000000
max_batch = {max(BATCH, 1)}
[[send.tokens]]
token = "{TOKEN}"
"""
    with open(f"{work}/trackrelay.toml", "w") as f:
        f.write(config)
    server = subprocess.Popen([binary, "serve", "--config", f"{work}/trackrelay.toml"],
                              stdout=subprocess.DEVNULL, stderr=open(f"{work}/log", "w"))
    try:
        wait_port(sink_port)
        wait_port(smtp_port)
        wait_port(send_port)
        print(f"binary {binary}, {CONCURRENCY} clients, {SECONDS:g} s each, "
              f"batch {BATCH}, load {os.getloadavg()[0]:.1f}", flush=True)
        smtp = run("smtp", smtp_worker(smtp_port))
        single = run("api-single", api_worker(send_port, 0))
        batch = run("api-batch", api_worker(send_port, BATCH))
        print(f"api-single / smtp = {single / smtp:.2f}; api-batch / smtp = {batch / smtp:.2f}")
    finally:
        server.terminate()
        server.wait()
        sink.terminate()
        sink.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
