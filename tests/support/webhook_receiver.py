"""A webhook receiver for tests/webhooks.rs: verifies every request with
the standardwebhooks package, or with `--format lettermint` the official
Lettermint SDK's Webhook.verify (PyPI lettermint) -- implementations
independent of ours -- and logs one JSON line per request.

    webhook_receiver.py --port P --log FILE --secret whsec_... [--secret ...]
                        [--fail N] [--fail-status 500] [--format lettermint]
                        [--hold FILE]

Each secret is checked on its own (so every signature of a rotation must
verify); with lettermint, a copy of the body with one byte changed must be
refused, and the line keeps the raw body and headers for the Node SDK's
check. The first N requests get --fail-status, the rest 204.
HTTP/1.1 with keep-alive; each line says which TCP connection (numbered
from 1 in accept order) carried the request.

With --hold, requests are not answered while FILE exists: each logs a line
with "held": true when it starts waiting, and its usual line once the file
is gone ("status" is what it was answered). A request whose client closes
the connection meanwhile (a sender killed mid-try) is never answered: its
line says "abandoned": true and "status": null.
"""

import argparse
import json
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

args = None
lock = threading.Lock()
seen = 0
connections = 0


class Handler(BaseHTTPRequestHandler):
    # One handler per TCP connection; HTTP/1.1 keeps it open between requests.
    protocol_version = "HTTP/1.1"

    def setup(self):
        global connections
        super().setup()
        with lock:
            connections += 1
            self.connection_number = connections

    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        verified = [verify(secret, body, headers) for secret in args.secret]
        abandoned = self.held(headers.get("webhook-id"))
        with lock:
            seen += 1
            n = seen
            status = args.fail_status if n <= args.fail else 204
            if abandoned:
                status = None
            line = {
                "at": time.time(),
                "n": n,
                "connection": self.connection_number,
                "status": status,
                "id": headers.get("webhook-id"),
                "timestamp": headers.get("webhook-timestamp"),
                "signatures": signatures(headers),
                "verified": verified,
                "body": json.loads(body),
                "abandoned": abandoned,
            }
            if args.format == "lettermint":
                tampered = body.replace(b'"data":{', b'"data":{"x":1,', 1)
                line["tampered"] = [verify(s, tampered, headers) for s in args.secret]
                line["raw"] = body.decode()
                line["headers"] = headers
            write_line(line)
        if abandoned:
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def held(self, delivery_id):
        """Waits while the hold file exists; True when the client closed
        the connection meanwhile (the request is then never answered)."""
        if not args.hold or not os.path.exists(args.hold):
            return False
        with lock:
            write_line({"held": True, "id": delivery_id, "connection": self.connection_number})
        while os.path.exists(args.hold):
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if not readable:
                continue
            try:
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except OSError:
                return True
            time.sleep(0.05)  # bytes of a next request: not a close
        return False

    def log_message(self, *a):
        pass


def write_line(line):
    """Appends one JSON line to the log (the caller holds the lock)."""
    with open(args.log, "a") as f:
        f.write(json.dumps(line) + "\n")


def verify(secret, body, headers):
    """True, or why the verifier refused the request."""
    try:
        if args.format == "lettermint":
            import lettermint

            lettermint.Webhook(secret).verify(body, headers)
        else:
            Webhook(secret).verify(body, headers)
        return True
    except Exception as e:  # noqa: BLE001 - reported to the test
        return f"{type(e).__name__}: {e}"


def signatures(headers):
    """How many signatures the request carries."""
    if args.format == "lettermint":
        return headers.get("x-lettermint-signature", "").count("v1=")
    return len(headers.get("webhook-signature", "").split(" "))


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--secret", action="append", required=True)
    p.add_argument("--fail", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=500)
    p.add_argument("--format", choices=["standard", "lettermint"], default="standard")
    p.add_argument("--hold", help="while this file exists, requests wait unanswered")
    args = p.parse_args()
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
