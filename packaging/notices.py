#!/usr/bin/env python3
"""`cargo metadata` JSON on stdin -> THIRD-PARTY-NOTICES.md on stdout.

Called by packaging/notices.sh. One table row per crate of Cargo.lock,
sorted by name and version; crates under a file-level copyleft licence
(MPL-2.0) are listed again with where their unmodified source is, which
is what MPL-2.0 section 3.2 asks of a binary distribution.
"""
import json
import sys

COPYLEFT = ("MPL-2.0",)


def source(pkg):
    """The crates.io download of this exact version, and the repository."""
    where = f"https://crates.io/api/v1/crates/{pkg['name']}/{pkg['version']}/download"
    if pkg.get("repository"):
        where += f" ({pkg['repository']})"
    return where


def main():
    meta = json.load(sys.stdin)
    own = {p["id"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
    crates = sorted(
        (p for p in meta["packages"] if p["id"] not in own),
        key=lambda p: (p["name"], p["version"]),
    )
    out = sys.stdout
    out.write(
        "# Third-party notices\n\n"
        "trackrelay (MIT OR Apache-2.0, see LICENSE-MIT and LICENSE-APACHE) is built from\n"
        "the crates below, each under the licence its author declares. The list is\n"
        "generated from Cargo.lock by `packaging/notices.sh`; it names every crate in\n"
        "the lock file, including those only used on other platforms or by the tests.\n"
        "The full licence texts are in each crate's source package.\n\n"
        "## Crates under the Mozilla Public License 2.0\n\n"
        "These files are used unmodified. MPL-2.0 is a file-level copyleft: their source\n"
        "code is available at the locations below (the crates.io download of the exact\n"
        "version built in, and the project's repository).\n\n"
    )
    for p in crates:
        lic = p.get("license") or "see crate"
        if any(c in lic for c in COPYLEFT):
            out.write(f"- `{p['name']}` {p['version']} ({lic}): {source(p)}\n")
    out.write("\n## All crates\n\n| crate | version | licence | source |\n|---|---|---|---|\n")
    for p in crates:
        lic = (p.get("license") or p.get("license_file") or "see crate").replace("|", "\\|")
        out.write(f"| `{p['name']}` | {p['version']} | {lic} | {p.get('repository') or ''} |\n")


if __name__ == "__main__":
    main()
