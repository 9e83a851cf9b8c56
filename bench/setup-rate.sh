#!/usr/bin/env bash
# Tunnel setup latency, standalone vs clustered, in one run: the ignored test
# `bench_setup_rate` of node/tests/cluster_netns.rs clears and re-establishes an IKE
# SA (IKE_SA_INIT + IKE_AUTH with the first child SA) SETUP_ROUNDS times (default 30)
# on a standalone vpnd pair, then on a chassis cluster's primary against its vpnd
# peer, timing each from the initiator's own log (IKE_SA_INIT sent -> child pair
# installed). The standalone pair is the in-run reference; the ratio is what the
# cluster's write-ahead commits cost (the IKE SA record and the child SA record with
# its first sequence reservation go through Raft before the pair is used).
#
#   sudo bench/setup-rate.sh
#
# Environment: SETUP_ROUNDS, PROFILE (release | debug, default release),
# CARGO_TARGET_DIR. Needs root, iproute2, tcpdump and ping.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
[ "${PROFILE:-release}" = release ] && profile=(--release)
cargo test "${profile[@]}" -p node --test cluster_netns bench_setup_rate -- --ignored --nocapture 2>&1 |
    grep -E "setups|ratio|panicked|test result"
