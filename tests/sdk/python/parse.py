"""Parses one delivered message (stdin) with Python's `email` package, an
independent MIME parser, for tests/send_api.rs; prints its structure as
JSON: the top-level headers, and each leaf part's content type,
disposition, filename, Content-ID and decoded content (text as text,
anything else as base64)."""

import base64
import json
import sys
from email import policy
from email.parser import BytesParser

message = BytesParser(policy=policy.default).parse(sys.stdin.buffer)
parts = []
for part in message.walk():
    if part.is_multipart():
        parts.append({"type": part.get_content_type(), "multipart": True})
        continue
    payload = part.get_payload(decode=True) or b""
    leaf = {
        "type": part.get_content_type(),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "content_id": part.get("Content-ID"),
    }
    if part.get_content_maintype() == "text":
        leaf["text"] = payload.decode(part.get_content_charset() or "utf-8")
    else:
        leaf["base64"] = base64.b64encode(payload).decode()
    parts.append(leaf)
headers = {}
for name, value in message.items():
    headers.setdefault(name.lower(), []).append(str(value))
print(json.dumps({"headers": headers, "parts": parts, "defects": len(message.defects)}))
