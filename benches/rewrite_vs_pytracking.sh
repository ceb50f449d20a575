#!/usr/bin/env bash
# Rewrite throughput: trackrelay (benches/rewrite.rs, release) vs pytracking
# (benches/pytracking_baseline.py) over the same HTML corpus, in one run.
#
#   benches/rewrite_vs_pytracking.sh              # 5 rounds each
#   BENCH_ROUNDS=20 benches/rewrite_vs_pytracking.sh
#
# Env: BENCH_ROUNDS (timed rounds for both tools, default 5),
#      TRACKRELAY_CORPUS (corpus root, default ../shared/corpus),
#      CARGO_TARGET_DIR (passed through to cargo), PYTHON (default python3).
# Prints both tools' full reports on stderr, then a summary; exits non-zero
# if a tool fails to run. Works from any directory (cds to the repo root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS="${BENCH_ROUNDS:-5}"
PYTHON="${PYTHON:-python3}"
CORPUS="${TRACKRELAY_CORPUS:-$PWD/../shared/corpus}"
export TRACKRELAY_CORPUS="$CORPUS"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if ! "$PYTHON" -c 'import pytracking.html, lxml, cryptography' 2>/dev/null; then
    echo "== installing pytracking baseline requirements" >&2
    "$PYTHON" -m pip install --quiet -r benches/requirements.txt
fi

echo "== cargo bench --bench rewrite -- --rounds $ROUNDS" >&2
# The table goes to stderr; the JSON lines to stdout (captured).
cargo bench --bench rewrite -- --rounds "$ROUNDS" >"$tmp/trackrelay.jsonl"

echo >&2
echo "== $PYTHON benches/pytracking_baseline.py --rounds $ROUNDS" >&2
"$PYTHON" benches/pytracking_baseline.py --rounds "$ROUNDS" >"$tmp/pytracking.json"

echo >&2
"$PYTHON" - "$tmp/trackrelay.jsonl" "$tmp/pytracking.json" "$ROUNDS" <<'EOF'
import json
import sys

tr_path, py_path, rounds = sys.argv[1:4]
tr = {}
for line in open(tr_path):
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line)
        tr[d["workload"]] = d
py = json.loads(open(py_path).read().strip().splitlines()[-1])
html = tr["html"]

if html["html_bytes"] != py["input_bytes"] or html["files"] != py["files"]:
    print(f"WARNING: inputs differ: trackrelay {html['files']} files / "
          f"{html['html_bytes']} B, pytracking {py['files']} files / "
          f"{py['input_bytes']} B", file=sys.stderr)

ratio = html["mb_per_s_html"] / py["mb_per_s"]
print(f"Rewrite throughput, HTML corpus ({py['files']} files, "
      f"{py['input_bytes'] / 1e6:.3f} MB HTML, {rounds} rounds, MB = 1e6 B)")
print(f"  pytracking {py['version']} adapt_html : {py['mb_per_s']:10.2f} MB/s   "
      f"failures: {py['failed']} {py['failures'] or ''}".rstrip())
print(f"  trackrelay rewrite (html)      : {html['mb_per_s_html']:10.2f} MB/s   "
      f"failures: {html['failures']} {html['parts_skipped'] or ''}".rstrip())
py_ok = py["ok_input_bytes"] * py["rounds"] / 1e6 / py["seconds"]
print(f"  (pytracking over the bytes of the {py['ok']} files it adapted only: {py_ok:.2f} MB/s;"
      f" the ratio below uses its all-files figure, the conservative one)")
print(f"  ratio trackrelay / pytracking  : {ratio:10.2f}x   (target >= 20x, zero failures)")
if "off" in html:
    print(f"  trackrelay tracking off (parse + copy): {html['off']['mb_per_s_html']:.2f} MB/s HTML")
print(f"  trackrelay html over message bytes: {html['mb_per_s']:.2f} MB/s "
      f"({html['bytes'] / 1e6:.3f} MB)")
if "mime" in tr:
    m = tr["mime"]
    off = f", tracking off {m['off']['mb_per_s']:.2f} MB/s" if "off" in m else ""
    print(f"  trackrelay mime workload ({m['files']} .eml, {m['bytes'] / 1e6:.3f} MB): "
          f"{m['mb_per_s']:.2f} MB/s{off}; failures: {m['failures']} "
          f"{[f['file'] for f in m['failed_files']]}")
best_ratio = html["best_round_mb_per_s_html"] / py["best_round_mb_per_s"]
print(f"  best rounds (the least disturbed pass of each, for a shared machine): "
      f"trackrelay {html['best_round_mb_per_s_html']:.2f} MB/s, pytracking "
      f"{py['best_round_mb_per_s']:.2f} MB/s, ratio {best_ratio:.2f}x")
verdict = "MET" if ratio >= 20 and html["failures"] == 0 else "NOT MET"
print(f"  target (>= 20x, zero failures on html): {verdict}")
print("JSON " + json.dumps({
    "pytracking_mb_per_s": py["mb_per_s"], "pytracking_failures": py["failed"],
    "trackrelay_mb_per_s_html": html["mb_per_s_html"],
    "trackrelay_failures": html["failures"],
    "trackrelay_off_mb_per_s_html": html.get("off", {}).get("mb_per_s_html"),
    "ratio": round(ratio, 3), "best_round_ratio": round(best_ratio, 3),
}))
EOF
