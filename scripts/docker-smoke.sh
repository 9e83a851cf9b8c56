#!/usr/bin/env bash
# Smoke test of the docker compose deployment (docker-compose.yml):
#
#   1. scripts/docker-build.sh (static binaries, FROM scratch images, docker/pki);
#   2. docker compose up -d, then waits (bounded) until lan1 reaches lan2 through the
#      tunnel (UDP echo, then ICMP);
#   3. vpnctl show chassis cluster status from the host (published management ports);
#   4. sequence-numbered UDP probes lan1 -> lan2 -> lan1 every 5 ms while the primary of
#      redundancy group 1 is killed (docker compose kill: SIGKILL); checks that the other
#      node takes over, that traffic resumes through it (its st0.0 counters), with no
#      datagram delivered twice, and that the peer kept its IKE SA (no renegotiation);
#   5. docker compose down -v.
#
# Exits non-zero with a message naming the failed step (and the containers' logs).
# Runs under its own compose project (vpnd-smoke), so it does not touch a deployment
# brought up by hand, but it needs the same subnets and ports: stop that one first.
#
#   SKIP_BUILD=1      reuse the images and certificates already built
#   KEEP=1            leave the deployment running at the end (docker compose -p
#                     vpnd-smoke down -v removes it)
#   ESTABLISH_S=90    bound for the tunnel to come up after `up`
#   TAKEOVER_S=10     bound for the failover gap (the configuration's lease is 600 ms)
#   CARGO_TARGET_DIR  where docker-build.sh put the binaries (vpnctl is used from there)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-vpnd-smoke}"
vpnctl_bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/vpnctl"
pki=docker/pki
establish_s="${ESTABLISH_S:-90}"
takeover_s="${TAKEOVER_S:-10}"
flow_s=20
kill_after_s=5
lan2=10.2.0.10:7001
declare -A port=([node0]="${VPND_NODE0_PORT:-50051}" [node1]="${VPND_NODE1_PORT:-50052}" [peer]="${VPND_PEER_PORT:-50053}")

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    echo "docker-smoke: FAIL: neither \`docker compose\` nor docker-compose is installed" >&2
    exit 1
fi

tmp=$(mktemp -d)
up=false
cleanup() {
    local rc=$?
    if $up; then
        if [ "${KEEP:-0}" = 1 ]; then
            echo "docker-smoke: KEEP=1: left running (${compose[*]} -p $COMPOSE_PROJECT_NAME down -v)"
        else
            "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
        fi
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT

fail() {
    echo >&2
    echo "docker-smoke: FAIL: $*" >&2
    if $up && [ -n "$("${compose[@]}" ps -q 2>/dev/null)" ]; then
        echo "---- container logs (last 40 lines each) ----" >&2
        for s in witness node0 node1 peer lan1 lan2; do
            echo "-- $s" >&2
            "${compose[@]}" logs --no-color --tail=40 "$s" 2>&1 | sed 's/^/   /' >&2 || true
        done
    fi
    exit 1
}

step() { echo "== $*"; }

now_ms() { date +%s%3N; }

# JSON field extraction with jq, or python3 where jq is missing.
json() {
    if command -v jq >/dev/null; then
        jq -r "$1"
    else
        python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].lstrip(".").split("."):
    v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$1"
    fi
}

vpnctl() {
    local member=$1
    shift
    "$vpnctl_bin" --pki "$pki" --server "127.0.0.1:${port[$member]}" "$@"
}

# The primary of redundancy group 1 as `member` sees it (empty if none or no answer).
primary_seen_by() {
    vpnctl "$1" --json show chassis cluster status 2>/dev/null | {
        if command -v jq >/dev/null; then
            jq -r '.redundancy_groups[] | select(.redundancy_group == 1) | .nodes[] | select(.status == "primary") | .node'
        else
            python3 -c 'import json,sys
s=json.load(sys.stdin)
print("\n".join(n["node"] for g in s["redundancy_groups"] if g["redundancy_group"]==1 for n in g["nodes"] if n["status"]=="primary"))'
        fi
    } 2>/dev/null || true
}

# The peer's established IKE SAs as "spi_i/spi_r" lines.
peer_ike_spis() {
    vpnctl peer --json show security ike security-associations | {
        if command -v jq >/dev/null; then
            jq -r '.[] | select(.state == "established") | "\(.spi_i)/\(.spi_r)"'
        else
            python3 -c 'import json,sys
print("\n".join(f"{s[\"spi_i\"]}/{s[\"spi_r\"]}" for s in json.load(sys.stdin) if s["state"]=="established"))'
        fi
    }
}

# st0.0 packets (rx + tx) of a gateway container, read from the host.
st0_packets() {
    local id pid
    id=$("${compose[@]}" ps -q "$1")
    pid=$(docker inspect -f '{{.State.Pid}}' "$id")
    # "st0.0: rx-bytes rx-packets ... (8 rx fields) tx-bytes tx-packets ..."
    sed -n 's/^ *st0\.0: *//p' "/proc/$pid/net/dev" | awk '{ n += $2 + $10 } END { print n + 0 }'
}

# ---------------------------------------------------------------------------------------
t_start=$(date +%s)
if [ "${SKIP_BUILD:-0}" = 1 ]; then
    step "build: skipped (SKIP_BUILD=1)"
    t_build=0
else
    step "build: scripts/docker-build.sh"
    scripts/docker-build.sh || fail "scripts/docker-build.sh failed"
    t_build=$(($(date +%s) - t_start))
fi
[ -x "$vpnctl_bin" ] || fail "no vpnctl at $vpnctl_bin (run scripts/docker-build.sh)"
[ -f "$pki/ca.pem" ] || fail "no certificates in $pki (run scripts/docker-build.sh)"

step "docker compose up -d (project $COMPOSE_PROJECT_NAME)"
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
t_up=$(now_ms)
up=true
"${compose[@]}" up -d >"$tmp/up.log" 2>&1 ||
    fail "docker compose up failed (a deployment using the same subnets or ports still running? stop it first):
$(cat "$tmp/up.log")"

step "waiting for lan1 -> lan2 through the tunnel (at most ${establish_s} s)"
deadline=$(($(date +%s) + establish_s))
until "${compose[@]}" exec -T lan1 /probe wait "$lan2" --timeout-s 5 >"$tmp/wait.out" 2>&1; do
    for s in node0 node1 peer witness; do
        state=$(docker inspect -f '{{.State.Status}}' "$("${compose[@]}" ps -q "$s")" 2>/dev/null || echo missing)
        [ "$state" = running ] || fail "$s is $state (it should run)"
    done
    [ "$(date +%s)" -lt "$deadline" ] || fail "no UDP echo from lan2 ($lan2) through the tunnel within ${establish_s} s: $(cat "$tmp/wait.out")"
done
t_traffic=$(($(now_ms) - t_up))
echo "tunnel up: UDP lan1 -> lan2 -> lan1 $(printf '%d.%03d' $((t_traffic / 1000)) $((t_traffic % 1000))) s after compose up"
"${compose[@]}" exec -T lan1 /probe ping 10.2.0.10 --count 3 --min 3 ||
    fail "ICMP echo lan1 -> lan2 through the tunnel"

step "vpnctl from the host: show chassis cluster status (node0, 127.0.0.1:${port[node0]})"
vpnctl node0 show chassis cluster status || fail "vpnctl show chassis cluster status against node0"
p0=$(primary_seen_by node0)
p1=$(primary_seen_by node1)
[ -n "$p0" ] && [ "$p0" = "$p1" ] ||
    fail "the nodes do not agree on one primary of redundancy group 1 (node0 says '${p0}', node1 says '${p1}')"
primary=$p0
survivor=node1
[ "$primary" = node1 ] && survivor=node0
echo "primary of redundancy group 1: $primary (both nodes agree)"
spis_before=$(peer_ike_spis) || fail "vpnctl show security ike security-associations against the peer"
[ "$(echo "$spis_before" | grep -c /)" = 1 ] ||
    fail "the peer should hold exactly one established IKE SA, it holds: ${spis_before:-none}"
vpnctl peer show security ipsec security-associations || true

step "failover: kill -9 of $primary under traffic (UDP probes every 5 ms for ${flow_s} s)"
"${compose[@]}" exec -T lan1 /probe flow "$lan2" --interval-ms 5 --duration-s "$flow_s" --json \
    >"$tmp/flow.json" 2>"$tmp/flow.err" &
flow_pid=$!
sleep "$kill_after_s"
kill -0 "$flow_pid" 2>/dev/null || fail "the probe flow ended early: $(cat "$tmp/flow.err" "$tmp/flow.json")"
st0_before=$(st0_packets "$survivor")
t_kill=$(now_ms)
"${compose[@]}" kill "$primary" >/dev/null 2>&1 || fail "docker compose kill $primary"
deadline=$(($(date +%s) + takeover_s))
while [ "$(primary_seen_by "$survivor")" != "$survivor" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$survivor did not become primary of group 1 within ${takeover_s} s of killing $primary"
    sleep 0.2
done
t_takeover=$(($(now_ms) - t_kill))
echo "$survivor primary $(printf '%d.%03d' $((t_takeover / 1000)) $((t_takeover % 1000))) s after the kill (as its management API reports it)"
wait "$flow_pid" || fail "the probe flow failed: $(cat "$tmp/flow.err" "$tmp/flow.json")"
st0_after=$(st0_packets "$survivor")
flow=$(cat "$tmp/flow.json")
echo "probe: $flow"
sent=$(json .sent <<<"$flow")
received=$(json .received <<<"$flow")
duplicates=$(json .duplicates <<<"$flow")
gap=$(json .longest_gap_ms <<<"$flow")
gap_start=$(json .gap_start_ms <<<"$flow")
last=$(json .last_reply_ms <<<"$flow")
duration=$(json .duration_ms <<<"$flow")
[ "$duplicates" = 0 ] || fail "$duplicates probe datagrams came back twice (a replayed ESP packet was accepted)"
[ "$last" != null ] || fail "no probe reply at all during the failover run"
awk -v l="$last" -v d="$duration" 'BEGIN { exit !(d - l < 1000) }' ||
    fail "traffic did not resume through $survivor: the last reply came ${last} ms into a ${duration} ms run"
awk -v g="$gap" -v b="$takeover_s" 'BEGIN { exit !(g < b * 1000) }' ||
    fail "failover gap ${gap} ms exceeds ${takeover_s} s"
carried=$((st0_after - st0_before))
[ "$carried" -ge 1000 ] ||
    fail "$survivor's st0.0 carried only $carried packets during the run: traffic did not go through it"
echo "traffic resumed through $survivor: its st0.0 carried $carried packets; $received of $sent probes came back"
echo "failover gap: ${gap} ms (replies stopped ${gap_start} ms into the run; kill at ~$((kill_after_s * 1000)) ms)"
spis_after=$(peer_ike_spis) || fail "vpnctl show security ike security-associations against the peer after the failover"
[ "$spis_after" = "$spis_before" ] ||
    fail "the peer's IKE SA changed (renegotiated instead of resumed): before ${spis_before}, after ${spis_after:-none}"
echo "the peer kept its IKE SA ($spis_after): the takeover resumed it"

step "vpnctl show chassis cluster status ($survivor, 127.0.0.1:${port[$survivor]})"
vpnctl "$survivor" show chassis cluster status || fail "vpnctl show chassis cluster status against $survivor"

step "docker compose down -v"
if [ "${KEEP:-0}" != 1 ]; then
    "${compose[@]}" down -v --remove-orphans >"$tmp/down.log" 2>&1 ||
        fail "docker compose down -v: $(cat "$tmp/down.log")"
    up=false
fi
echo "docker-smoke: PASS (build ${t_build} s, compose up to traffic $(printf '%d.%03d' $((t_traffic / 1000)) $((t_traffic % 1000))) s, failover gap ${gap} ms, total $(($(date +%s) - t_start)) s)"
