#!/usr/bin/env bash
# vpnd side by side with strongSwan (charon + kernel-libipsec) and boringtun (userspace
# WireGuard), every figure next to its in-run reference and as a ratio (issue 7):
#
#   sudo bench/compare.sh                 # everything, ~13 min once built
#   sudo QUICK=1 bench/compare.sh         # short runs, one round, no cluster part (~4 min)
#
# 1. Dataplane (compare/dataplane.sh): two gateway namespaces joined by a veth, a LAN
#    host behind each, iperf3 between the LAN hosts: TCP throughput, UDP 1400 B and
#    64 B datagrams per second delivered to the receiving host (sender unlimited) and
#    loss, and CPU seconds per gigabit (the gateway processes' CPU time, summed over
#    their threads' schedstat, and the whole machine's non-idle time from /proc/stat),
#    for vpnd (IKEv2, then ESP with AES-128-GCM, AES-256-GCM, AES-128/256-CBC +
#    HMAC-SHA-256-128; raw ESP as configured by default, and vpnd-udp with
#    force-udp-encapsulation, ESP in UDP as the others use), charon with
#    kernel-libipsec at both ends (the same proposals), boringtun at both ends, and the
#    bare link (plain routing through the same namespaces: the reference, measured in
#    every round).
# 2. Control plane (compare/control.sh): IKE SA + child SA setups per second, vpnd as
#    responder against charon as responder under the same load (tools/ikeload, the
#    ike crate's initiator, many peer addresses, one thread), PSK/ECP-256,
#    PSK/Curve25519 and ECDSA P-256 certificates, sequential and CP_INFLIGHT at once;
#    responder CPU per setup and RSS per IKE SA. Then issue 4's scale test: CP_SCALE
#    tunnels brought up and held against each (setups/s, RSS per tunnel, CPU).
# 3. Cluster: bench/cluster-failover.sh with CLUSTER_KILLS kills per heartbeat setting,
#    and `cargo bench -p sa-sync --bench commit` (Raft commit latency).
#
# Writes OUT.json (every measurement and the aggregated figures) and OUT.md (the
# tables the README's Benchmarks section shows); OUT defaults to
# $CARGO_TARGET_DIR/bench/compare-DATE. Installs what it needs: the apt packages of
# .ci/run plus wireguard-tools and jq, boringtun-cli (cargo install --locked into
# $CARGO_TARGET_DIR/bench-tools, the crates.io userspace WireGuard the issue names),
# and python3 for the report.
#
# Environment: OUT, QUICK=1, DP_SECONDS (per iperf3 run, default 5), DP_REPEAT (rounds,
# default 2), DP_SYSTEMS (default "bare vpnd vpnd-udp strongswan boringtun"), DP_PROPOSALS
# (default "aes128gcm aes256gcm aes128cbc-sha256 aes256cbc-sha256"), VPND_WORKERS (SPU
# workers, default 1, vpnd's default), CP_SEQ (sequential setups, default 50), CP_SAS
# (setups of the fan test, default 3000: at 1,000 a fan lasted 0.15 s and its rate
# swung 25 % between runs), CP_INFLIGHT (setups at once, default 64), CP_REPEAT (rounds
# of the control part, medians reported, default 3), CP_AUTHS, CP_SCALE (tunnel counts of the scale test, default
# "1000 10000", against one dial-up gateway; CP_SCALE_DIALUP=0 for one gateway per peer,
# which skips a count the machine's memory cannot hold), CLUSTER=0 (skip the
# cluster part; the README then keeps its last figures), CLUSTER_KILLS (default 5),
# CLUSTER_SETTINGS (default "200x3 100x3"), PARTS (default "dataplane control scale cluster"),
# INSTALL=0 (do not install anything), CARGO_TARGET_DIR.
# Needs root (namespaces, TUN, charon). The machine is shared and has 2 vCPUs: compare
# ratios, not absolute figures, and repeat.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "needs root (network namespaces, TUN devices, charon): run with sudo" >&2
    exit 2
fi

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    : "${DP_SECONDS:=3}" "${DP_REPEAT:=1}" "${CP_SEQ:=20}" "${CP_SAS:=200}" "${CP_REPEAT:=1}" "${CLUSTER:=0}"
fi
DP_SECONDS=${DP_SECONDS:-5}
DP_REPEAT=${DP_REPEAT:-2}
DP_SYSTEMS=${DP_SYSTEMS:-"bare vpnd vpnd-udp strongswan boringtun"}
DP_PROPOSALS=${DP_PROPOSALS:-"aes128gcm aes256gcm aes128cbc-sha256 aes256cbc-sha256"}
VPND_WORKERS=${VPND_WORKERS:-1}
CP_SEQ=${CP_SEQ:-50}
CP_SAS=${CP_SAS:-3000}
CP_REPEAT=${CP_REPEAT:-3}
CLUSTER=${CLUSTER:-1}
CLUSTER_KILLS=${CLUSTER_KILLS:-5}
CLUSTER_SETTINGS=${CLUSTER_SETTINGS:-"200x3 100x3"}
PARTS=${PARTS:-"dataplane control scale cluster"}
[ "$CLUSTER" = 1 ] || PARTS=${PARTS//cluster/}
TOOLS=$CARGO_TARGET_DIR/bench-tools
OUT=${OUT:-$CARGO_TARGET_DIR/bench/compare-$(date -u +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d /tmp/bench-compare.XXXXXX)
RESULTS=$WORK/results.jsonl
mkdir -p "$(dirname "$OUT")"
: >"$RESULTS"

# shellcheck source=bench/compare/lib.sh
. "$HERE/compare/lib.sh"
# shellcheck source=bench/compare/dataplane.sh
. "$HERE/compare/dataplane.sh"
# shellcheck source=bench/compare/control.sh
. "$HERE/compare/control.sh"
trap 'cleanup; log "work directory (configurations, logs, iperf3 JSON): $WORK"' EXIT
trap 'exit 130' INT TERM

install_tools() {
    local packages=(iproute2 iputils-ping tcpdump iperf3 procps jq openssl python3
        wireguard-tools strongswan-charon strongswan-swanctl libcharon-extra-plugins
        libstrongswan-standard-plugins libstrongswan-extra-plugins)
    local missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        # --no-install-recommends: wireguard-tools would pull in a kernel otherwise.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    if [ ! -x "$TOOLS/bin/boringtun-cli" ]; then
        log "cargo install boringtun-cli into $TOOLS"
        cargo install boringtun-cli --locked --root "$TOOLS"
    fi
}

[ "${INSTALL:-1}" = 1 ] && install_tools
BORINGTUN=$TOOLS/bin/boringtun-cli
PYTHON=python3
for tool in iperf3 jq wg swanctl openssl /usr/lib/ipsec/charon "$BORINGTUN" "$PYTHON"; do
    command -v "$tool" >/dev/null || die "$tool missing (run without INSTALL=0)"
done

log "building vpnd (release)"
(cd "$ROOT" && cargo build --release -q -p node --bin vpnd)
VPND=$CARGO_TARGET_DIR/release/vpnd

record section=meta date="$(date -u +%Y-%m-%dT%H:%M:%SZ)" kernel="$(uname -r)" \
    cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" cpus="$(nproc)" \
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)" commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    strongswan="$(dpkg-query -W -f='${Version}' strongswan-charon)" iperf3="$(iperf3 --version | head -1)" \
    boringtun="$("$BORINGTUN" --version 2>/dev/null | head -1)" vpnd_workers="$VPND_WORKERS" \
    dp_seconds="$DP_SECONDS" dp_repeat="$DP_REPEAT" cp_seq="$CP_SEQ" cp_sas="$CP_SAS"

run_cluster() {
    local setting line
    log "cluster: failover gap, $CLUSTER_KILLS kills per setting ($CLUSTER_SETTINGS)"
    FAILOVER_KILLS=$CLUSTER_KILLS SETTINGS=$CLUSTER_SETTINGS OUT=$WORK/failover.txt \
        "$HERE/cluster-failover.sh" >&2 || log "cluster-failover.sh failed; see $WORK/failover.txt*"
    for setting in $CLUSTER_SETTINGS; do
        line=$(grep -E '^BENCH ' "$WORK/failover.txt.$setting.log" 2>/dev/null | tail -1 || true)
        [ -n "$line" ] || continue
        # BENCH heartbeat=H kills=N median_ms=M p99_ms=P lease_ms=L median_ratio=R p99_ratio=Q
        # shellcheck disable=SC2046
        record section=cluster test=failover $(tr ' ' '\n' <<<"${line#BENCH }")
    done
    log "cluster: Raft commit latency (cargo bench -p sa-sync --bench commit)"
    (cd "$ROOT" && COMMIT_BENCH_N=${COMMIT_N:-300} cargo bench -q -p sa-sync --bench commit) >"$WORK/commit.txt" 2>&1 ||
        log "commit bench failed; see $WORK/commit.txt"
    # "NAME  p50  X ms  p99  Y ms  mean Z ms" lines and the ratio line, kept verbatim.
    local what
    for what in "raft commit" "raft-engine append" "gRPC mTLS" "ratio commit"; do
        line=$(grep -m1 "^$what" "$WORK/commit.txt" || true)
        [ -n "$line" ] && record section=cluster test=commit what="$what" line="$(tr -s ' ' <<<"$line")"
    done
}

for part in $PARTS; do
    "run_$part"
done

"$PYTHON" "$HERE/compare/report.py" "$RESULTS" "$OUT"
log "results: $OUT.md, $OUT.json"
cat "$OUT.md"
