"""A webhook receiver for tests/webhooks.rs: verifies every request with
the standardwebhooks package, or with `--format lettermint` the official
Lettermint SDK's Webhook.verify (PyPI lettermint) -- implementations
independent of ours -- and logs one JSON line per request.

    webhook_receiver.py --port P --log FILE --secret whsec_... [--secret ...]
                        [--fail N] [--fail-status 500] [--format lettermint]

Each secret is checked on its own (so every signature of a rotation must
verify); with lettermint, a copy of the body with one byte changed must be
refused, and the line keeps the raw body and headers for the Node SDK's
check. The first N requests get --fail-status, the rest 204.
HTTP/1.1 with keep-alive; each line says which TCP connection (numbered
from 1 in accept order) carried the request.
"""

import argparse
import json
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
        with lock:
            seen += 1
            n = seen
            status = args.fail_status if n <= args.fail else 204
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
            }
            if args.format == "lettermint":
                tampered = body.replace(b'"data":{', b'"data":{"x":1,', 1)
                line["tampered"] = [verify(s, tampered, headers) for s in args.secret]
                line["raw"] = body.decode()
                line["headers"] = headers
            with open(args.log, "a") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


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
    args = p.parse_args()
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
