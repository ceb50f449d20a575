"""dkimpy (PyPI), the independent DKIM signer and verifier of tests/dkim.rs.

  dkimpy.py sign KEYFILE DOMAIN SELECTOR < message   -> signed message
      KEYFILE: PEM; RSA as it is, Ed25519 as the 32-byte seed dkimpy takes.
  dkimpy.py verify DOMAIN SELECTOR TXT < message     -> one line per signature
      "pass d=... s=..." or "fail d=... s=..."; the TXT record is the DNS
      answer for SELECTOR._domainkey.DOMAIN (no network).
"""
import base64
import subprocess
import sys

import dkim


def ed25519_seed(path):
    der = subprocess.run(["openssl", "pkey", "-in", path, "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der[-32:])


def sign(path, domain, selector):
    message = sys.stdin.buffer.read()
    text = subprocess.run(["openssl", "pkey", "-in", path, "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    if text.startswith("ED25519"):
        key, algo = ed25519_seed(path), b"ed25519-sha256"
    else:
        key, algo = open(path, "rb").read(), b"rsa-sha256"
    sig = dkim.sign(message, selector.encode(), domain.encode(), key,
                    signature_algorithm=algo,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    sys.stdout.buffer.write(sig + message)


def verify(domain, selector, txt):
    message = sys.stdin.buffer.read()
    name = f"{selector}._domainkey.{domain}."

    def dnsfunc(query, timeout=5):
        q = query.decode() if isinstance(query, bytes) else query
        return txt.encode() if q.rstrip(".") == name.rstrip(".") else None

    d = dkim.DKIM(message)
    count = sum(1 for line in message.split(b"\n") if line.lower().startswith(b"dkim-signature:"))
    for i in range(count):
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
        print(("pass" if ok else "fail"), f"d={d.domain.decode() if d.domain else '?'}",
              f"s={d.selector.decode() if d.selector else '?'}")


if __name__ == "__main__":
    if sys.argv[1] == "sign":
        sign(*sys.argv[2:5])
    else:
        verify(*sys.argv[2:5])
