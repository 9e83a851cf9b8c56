#!/usr/bin/env bash
# Runs every fuzz target of the ike crate for SECONDS each (default 60).
# Only stable Rust is installed, so cargo-fuzz's nightly flags are unlocked with
# RUSTC_BOOTSTRAP=1. The seed corpus in corpus/<target>/ is committed; new inputs found
# during a run are written to a scratch copy so the committed seeds stay small.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
    scratch="$(mktemp -d)"
    if [ -d "corpus/$target" ]; then
        cp -r "corpus/$target/." "$scratch/"
    fi
    echo "== $target for ${SECONDS_PER_TARGET}s"
    cargo fuzz run "$target" "$scratch" -- -max_total_time="$SECONDS_PER_TARGET"
    rm -rf "$scratch"
done
