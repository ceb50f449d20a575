#!/usr/bin/env python3
"""Independent MIME equivalence check of rewritten messages (issue 15).

Reads lines `NAME<TAB>INPUT_PATH<TAB>OUTPUT_PATH` on stdin, parses both files
with Python's `email` package (not the parser the rewrite uses) and checks
that the rewrite changed nothing but HTML bodies:

- the same MIME tree: content types, order, dispositions, filenames,
  boundaries, preambles and epilogues, and no new parse defects;
- every part that is not text/html has the same decoded bytes;
- every text/html part decodes in its declared transfer encoding and
  charset, when the input's did;
- the same header fields in every part, apart from X-LM-* (removed by the
  rewrite) and Content-Transfer-Encoding of a re-encoded HTML part.

Prints one line per problem (`NAME: what`), one `uncheckable<TAB>NAME<TAB>why`
line per input Python itself cannot read through (then nothing is said of
its output), and a final `checked N` line; exits 1 when there was a
problem. One run for all pairs keeps it fast.
"""

import binascii
import codecs
import email
import email.policy
import sys


def parts(msg):
    """Every part in document order (message/rfc822 payloads included)."""
    return list(msg.walk())


def shape(part):
    return (
        part.get_content_type(),
        part.get_content_disposition(),
        part.get_filename(),
        part.is_multipart(),
        part.get_boundary(),
        len(part.get_payload()) if part.is_multipart() else None,
        part.preamble,
        part.epilogue,
        sorted(type(d).__name__ for d in part.defects),
    )


def headers(part):
    return [
        (k, v)
        for k, v in part.items()
        if not k.lower().startswith("x-lm-")
    ]


def is_html(part):
    return part.get_content_type() == "text/html" and not part.is_multipart()


def decodes_strictly(part):
    """The body decodes in its transfer encoding without guessing."""
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    raw = part.get_payload(decode=False)
    if isinstance(raw, list):
        return True
    if cte == "base64":
        try:
            data = raw.encode("ascii")
            binascii.a2b_base64(b"".join(data.split()), strict_mode=True)
        except (UnicodeEncodeError, binascii.Error):
            return False
    return True


def charset_decodes(part):
    body = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        return True  # an unknown label: nothing to check against
    try:
        body.decode(charset)
        return True
    except UnicodeDecodeError:
        return False


class Uncheckable(Exception):
    pass


def read_through(raw):
    """The parts of a message and what is compared of them, or an error."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    a = parts(msg)
    for p in a:
        shape(p)
        headers(p)
        if not p.is_multipart():
            p.get_payload(decode=True)
    return a


def check(name, before_bytes, after_bytes):
    problems = []
    try:
        a = read_through(before_bytes)
    except Exception as e:  # Python's own parser gives up on the input
        raise Uncheckable(f"{type(e).__name__}: {e}")
    try:
        b = read_through(after_bytes)
    except Exception as e:
        return [f"{name}: output unreadable: {type(e).__name__}: {e}"]
    if len(a) != len(b):
        return [f"{name}: {len(a)} parts became {len(b)}"]
    for i, (p, q) in enumerate(zip(a, b)):
        where = f"{name}: part {i} ({p.get_content_type()})"
        if shape(p) != shape(q):
            problems.append(f"{where}: shape {shape(p)!r} became {shape(q)!r}")
            continue
        hp, hq = headers(p), headers(q)
        if is_html(p):
            cte = "content-transfer-encoding"
            hp = [h for h in hp if h[0].lower() != cte]
            hq = [h for h in hq if h[0].lower() != cte]
        if hp != hq:
            problems.append(f"{where}: header fields changed {hp!r} -> {hq!r}")
        if p.is_multipart():
            continue
        if not is_html(p):
            if p.get_payload(decode=True) != q.get_payload(decode=True):
                problems.append(f"{where}: decoded bytes changed")
            continue
        if decodes_strictly(p) and not decodes_strictly(q):
            problems.append(f"{where}: HTML does not decode in its transfer encoding")
        if charset_decodes(p) and not charset_decodes(q):
            problems.append(f"{where}: HTML does not decode in its charset")
    return problems


def main():
    checked = 0
    problems = []
    for line in sys.stdin:
        name, before, after = line.rstrip("\n").split("\t")
        with open(before, "rb") as f:
            before_bytes = f.read()
        with open(after, "rb") as f:
            after_bytes = f.read()
        try:
            problems.extend(check(name, before_bytes, after_bytes))
        except Uncheckable as e:
            print(f"uncheckable\t{name}\t{e}".replace("\n", " "))
            continue
        checked += 1
    for p in problems:
        print(p)
    print(f"checked {checked}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
