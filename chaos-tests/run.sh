#!/usr/bin/env bash
# The full chaos matrix as one command (root): builds vpnd, vpnctl and the harness,
# then runs every scenario, each in a fresh namespace lab, and writes
# target/chaos/chaos-matrix.{json,md}. Arguments go to `chaos` (e.g. --only NAME,
# --list). Exit status 1 if a scenario failed.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p node -p chaos-tests --bins
dir=target/$([ "$profile" = release ] && echo release || echo debug)
exec "$dir/chaos" --out target/chaos "$@"
