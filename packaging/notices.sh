#!/usr/bin/env bash
# Writes THIRD-PARTY-NOTICES.md from Cargo.lock: every crate the lock file
# names (all targets and platforms, so the file never lags the lock), its
# version, its licence as its Cargo.toml declares it, and where its source is.
# Run after any change to Cargo.lock; tests/package.rs fails until you do.
#   packaging/notices.sh            # rewrites THIRD-PARTY-NOTICES.md
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --locked --format-version 1 | python3 packaging/notices.py > THIRD-PARTY-NOTICES.md.tmp
mv THIRD-PARTY-NOTICES.md.tmp THIRD-PARTY-NOTICES.md
echo "THIRD-PARTY-NOTICES.md: $(grep -c '^| `' THIRD-PARTY-NOTICES.md) crates"
