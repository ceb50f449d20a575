"""Calls trackrelay's sending API with the official Lettermint Python SDK
(PyPI lettermint==3.2.0, installed by .ci/packages), for tests/send_api.rs.

Reads one call as JSON on stdin: {"base_url", "token", "op": "send" |
"batch" | "ping", "message" or "messages", "idempotency_key"}; prints the
SDK's result as JSON: {"ok": value} or {"error": {"class", "status", "code",
"message", "errors", "details", "retry_after"}}, so the test checks what the
SDK made of each answer.
"""

import json
import sys

import lettermint


def main() -> None:
    call = json.load(sys.stdin)
    client = lettermint.Lettermint(
        sending_token=call["token"], base_url=call["base_url"], timeout=60
    )
    key = call.get("idempotency_key")
    try:
        if call["op"] == "ping":
            result = client.emails.ping()
        elif call["op"] == "batch":
            result = client.emails.send_batch(call["messages"], idempotency_key=key)
        else:
            result = client.emails.send(call["message"], idempotency_key=key)
        print(json.dumps({"ok": result}))
    except lettermint.LettermintError as error:
        print(
            json.dumps(
                {
                    "error": {
                        "class": type(error).__name__,
                        "status": getattr(error, "status", None),
                        "code": getattr(error, "code", None),
                        "message": str(error),
                        "errors": getattr(error, "errors", None),
                        "details": getattr(error, "details", None),
                        "retry_after": getattr(error, "retry_after", None),
                    }
                }
            )
        )
    finally:
        client.close()


if __name__ == "__main__":
    main()
