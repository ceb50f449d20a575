"""Baseline: throughput of pytracking's HTML adaptation over the HTML corpus.

For every ``*.html`` file under ``$TRACKRELAY_CORPUS/html`` (default
``/work/shared/corpus/html``), calls ``pytracking.html.adapt_html`` with open
tracking (1x1 pixel before ``</body>``) and click tracking (every
``<a href="http(s)://...">`` rewritten) turned on. One warm-up pass, then
``--rounds`` timed passes; only the ``adapt_html`` calls are timed
(``time.perf_counter``). Exceptions are caught per file and counted by type.

Throughput: ``mb_per_s`` = (bytes of ALL files attempted, ok or failed,
x rounds) / timed seconds, with MB = 1e6 bytes. The time spent on failed
files (until they raise) is included in ``seconds``.

Prints a summary on stderr and one JSON line on stdout.

    pip install -r benches/requirements.txt
    python3 benches/pytracking_baseline.py [--rounds N]
"""
import argparse
import codecs
import collections
import json
import os
import re
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytracking
from pytracking.html import adapt_html

# pytracking has no HMAC-only signing; its one integrity option is
# `encryption_bytestring_key`, which wraps each link's JSON payload in a
# Fernet token (AES-128-CBC + HMAC-SHA256, random IV). We use a fixed Fernet
# key so tokens are authenticated, the closest match to HMAC-signed tokens.
# The webhook URL is only used when a tracking hit is received; it is set for
# completeness and not embedded in links (include_webhook_url=False).
CONFIG = pytracking.Configuration(
    base_open_tracking_url="https://t.example.com/o/",
    base_click_tracking_url="https://t.example.com/c/",
    webhook_url="https://hooks.example.com/tracking",
    include_webhook_url=False,
    encryption_bytestring_key=b"dHJhY2tyZWxheS1iZW5jaC1mZXJuZXQta2V5LTAwMDA=",
)
METADATA = {"message_id": "bench-0001", "recipient": "user@example.com"}

META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def to_str(data: bytes) -> str:
    """Decode a file for adapt_html (docs say "unicode or bytestring"; we pass
    str so every file gets a defined charset). Order: BOM, BOM-less UTF-16
    (NUL bytes), <meta> charset, strict UTF-8, else latin-1. This decoding is
    done once, before and outside the timed calls."""
    if data.startswith(codecs.BOM_UTF8):
        return data.decode("utf-8-sig")
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return data.decode("utf-16")
    head = data[:4096]
    if head.count(0) > len(head) // 4:
        odd_nuls = head[1::2].count(0) > head[0::2].count(0)
        return data.decode("utf-16-le" if odd_nuls else "utf-16-be", "replace")
    m = META_CHARSET.search(head)
    for charset in ([m.group(1).decode("ascii")] if m else []) + ["utf-8"]:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return data.decode("latin-1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    root = Path(os.environ.get("TRACKRELAY_CORPUS", "/work/shared/corpus")) / "html"
    files = sorted(root.rglob("*.html"))
    if not files:
        sys.exit(f"no .html files under {root}")
    docs = []  # (path, input byte count, decoded text)
    for path in files:
        data = path.read_bytes()
        docs.append((path, len(data), to_str(data)))

    def one_pass():
        seconds, fails = 0.0, {}
        for path, _, text in docs:
            t0 = time.perf_counter()
            try:
                adapt_html(text, METADATA, click_tracking=True,
                           open_tracking=True, configuration=CONFIG)
            except Exception as e:  # noqa: BLE001 - every failure is data
                fails[path] = type(e).__name__
            seconds += time.perf_counter() - t0
        return seconds, fails

    one_pass()  # warm-up
    seconds, fails, best = 0.0, {}, float("inf")
    for _ in range(args.rounds):
        s, fails = one_pass()
        seconds += s
        best = min(best, s)

    total_bytes = sum(n for _, n, _ in docs)
    ok_bytes = sum(n for p, n, _ in docs if p not in fails)
    failures = dict(collections.Counter(fails.values()).most_common())
    mb_per_s = total_bytes * args.rounds / 1e6 / seconds

    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    log(f"pytracking {version('pytracking')} (lxml {version('lxml')}), "
        f"Python {sys.version.split()[0]}, corpus {root}")
    log(f"files: {len(docs)}  ok: {len(docs) - len(fails)}  failed: {len(fails)}")
    log(f"input: {total_bytes / 1e6:.3f} MB over all files, "
        f"{ok_bytes / 1e6:.3f} MB over successfully adapted files")
    log(f"timed: {args.rounds} rounds, {seconds:.3f} s in adapt_html -> "
        f"{mb_per_s:.2f} MB/s (ALL input bytes attempted, MB = 1e6 B)")
    for kind, count in failures.items():
        log(f"  failure {kind}: {count}")
    for path, kind in sorted(fails.items()):
        log(f"    {kind}: {path.relative_to(root)}")

    print(json.dumps({
        "tool": "pytracking", "version": version("pytracking"),
        "files": len(docs), "ok": len(docs) - len(fails), "failed": len(fails),
        "failures": failures, "input_bytes": total_bytes,
        "ok_input_bytes": ok_bytes, "rounds": args.rounds,
        "seconds": round(seconds, 6), "mb_per_s": round(mb_per_s, 3),
        "best_round_mb_per_s": round(total_bytes / 1e6 / best, 3),
    }))


if __name__ == "__main__":
    main()
