#!/usr/bin/env bash
# Tunnel throughput: iperf3 TCP through the ESP tunnel of the `manual_tunnel` example AND
# over the bare veth between the same two namespaces, in the same run, with CPU seconds.
#
#   sudo bench/tunnel-throughput.sh [SECONDS]          (default 10 s per measurement)
#
# Environment: WORKERS (SPU workers per endpoint, default 2), ENCAP (udp | raw, default udp),
# REPEAT (tunnel/bare measurement pairs, default 1; the machine is shared, so compare the
# ratio of each pair rather than absolute numbers),
# STEERING (1: kernel steers ESP-in-UDP to the anchor by SPI; 0: flow hash + handoff),
# OUT (results file, default /tmp/tunnel-throughput-DATE.txt), CARGO_TARGET_DIR.
# Needs root, iproute2 and iperf3:
#   apt-get update && apt-get install -y --no-install-recommends tcpdump iperf3 iputils-ping
set -euo pipefail

DURATION=${1:-${DURATION:-10}}
WORKERS=${WORKERS:-2}
STEERING=${STEERING:-1}
REPEAT=${REPEAT:-1}
ENCAP=${ENCAP:-udp}
OUT=${OUT:-/tmp/tunnel-throughput-$(date +%Y%m%d-%H%M%S).txt}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if [ "$(id -u)" != 0 ]; then
    echo "needs root (network namespaces, TUN, raw sockets): run with sudo" >&2
    exit 2
fi
command -v iperf3 >/dev/null || {
    echo "iperf3 missing: apt-get install -y --no-install-recommends iperf3" >&2
    exit 2
}
case "$ENCAP" in udp | raw) ;; *) echo "ENCAP must be udp or raw" >&2; exit 2 ;; esac

(cd "$ROOT" && cargo build --release -p dataplane --example manual_tunnel)
BIN=$CARGO_TARGET_DIR/release/examples/manual_tunnel

args=(--hold --workers "$WORKERS")
[ "$ENCAP" = raw ] && args+=(--raw-esp)
[ "$STEERING" = 0 ] && args+=(--no-steering)
LOG=$(mktemp)
"$BIN" "${args[@]}" >"$LOG" 2>&1 &
TUNNEL_PID=$!
IPERF_PID=

cleanup() {
    [ -n "$IPERF_PID" ] && kill "$IPERF_PID" 2>/dev/null || true
    # SIGINT makes the example print its counters and tear the namespaces down.
    kill -INT "$TUNNEL_PID" 2>/dev/null || true
    wait "$TUNNEL_PID" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

for _ in $(seq 300); do
    grep -q '^READY' "$LOG" && break
    if ! kill -0 "$TUNNEL_PID" 2>/dev/null; then
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
grep -q '^READY' "$LOG" || { echo "tunnel did not come up in 30 s" >&2; cat "$LOG" >&2; exit 1; }

ip netns exec vpnB iperf3 -s >/dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5

# CPU ticks (user + system) of the dataplane process, and non-idle ticks of the machine.
proc_ticks() { awk '{print $14 + $15}' "/proc/$TUNNEL_PID/stat"; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)

# Prints "Mbit/s dataplane_cpu_s machine_cpu_s".
measure() {
    local dst=$1 p0 b0 mbps p1 b1
    p0=$(proc_ticks)
    b0=$(busy_ticks)
    mbps=$(ip netns exec vpnA iperf3 -c "$dst" -t "$DURATION" -f m |
        awk '/receiver/ {print $(NF-2)}')
    p1=$(proc_ticks)
    b1=$(busy_ticks)
    awk -v m="${mbps:-0}" -v p=$((p1 - p0)) -v b=$((b1 - b0)) -v hz="$HZ" \
        'BEGIN {printf "%s %.2f %.2f\n", m, p / hz, b / hz}'
}

ROWS=()
for r in $(seq "$REPEAT"); do
    echo "[$r/$REPEAT] measuring ${DURATION} s through the tunnel (10.2.0.1, $ENCAP, $WORKERS workers) ..."
    read -r T_MBPS T_DP T_SYS < <(measure 10.2.0.1)
    echo "[$r/$REPEAT] measuring ${DURATION} s over the bare veth (192.0.2.2) ..."
    read -r B_MBPS B_DP B_SYS < <(measure 192.0.2.2)
    ROWS+=("$r $T_MBPS $T_DP $T_SYS $B_MBPS $B_SYS")
done

{
    echo "# tunnel-throughput $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -r) $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# iperf3 TCP, ${DURATION} s each, vpnA -> vpnB; ESP AES-128-GCM, encap=$ENCAP, workers=$WORKERS, steering=$STEERING"
    printf '%-4s %-12s %12s %22s %20s\n' run path Mbit/s "dataplane CPU s" "machine CPU s"
    for row in "${ROWS[@]}"; do
        read -r r T_MBPS T_DP T_SYS B_MBPS B_SYS <<<"$row"
        printf '%-4s %-12s %12s %22s %20s\n' "$r" tunnel "$T_MBPS" "$T_DP" "$T_SYS"
        printf '%-4s %-12s %12s %22s %20s\n' "$r" bare-veth "$B_MBPS" "-" "$B_SYS"
        awk -v r="$r" -v t="$T_MBPS" -v b="$B_MBPS" 'BEGIN {
            if (b > 0) printf "%-4s ratio tunnel/bare: %.3f\n", r, t / b; else print r " ratio tunnel/bare: n/a" }'
    done
} | tee "$OUT"

kill "$IPERF_PID" 2>/dev/null || true
IPERF_PID=
kill -INT "$TUNNEL_PID"
wait "$TUNNEL_PID" || true
sed -n '/^Counters/,$p' "$LOG" | tee -a "$OUT"
echo "results written to $OUT"
