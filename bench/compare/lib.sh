# shellcheck shell=bash
# Helpers shared by bench/compare.sh and its parts (sourced, not run): the processes
# and namespaces a run owns, CPU accounting from /proc, and result records.
#
# Every process a part starts goes through `spawn`, which remembers its PID; `cleanup`
# (the EXIT trap of compare.sh) stops exactly those and deletes the namespaces whose
# names start with $NS_PREFIX, so a failed run leaves nothing behind and nothing else
# is touched.

NS_PREFIX=${NS_PREFIX:-cmp-}
PIDS=()

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# spawn LOGFILE CMD...: runs CMD in the background, output to LOGFILE; the PID is in
# $SPAWNED. `ip netns exec` and `sh -c 'exec ...'` exec their command, so the PID is the
# daemon's own (what /proc/PID/stat and the signals below need).
spawn() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 </dev/null &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# stop_pid PID: SIGTERM, up to 3 s for a clean exit (IKE Deletes), then SIGKILL.
stop_pid() {
    local pid=$1 _
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

del_namespaces() {
    local ns
    for ns in $(ip netns list | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

cleanup() {
    stop_all
    del_namespaces
}

# nsx NAME CMD...: CMD inside namespace $NS_PREFIX$NAME.
nsx() {
    local ns=$NS_PREFIX$1
    shift
    ip netns exec "$ns" "$@"
}

# new_ns NAME...: fresh namespaces with loopback up.
new_ns() {
    local n
    for n in "$@"; do
        ip netns del "$NS_PREFIX$n" 2>/dev/null || true
        ip netns add "$NS_PREFIX$n"
        ip -n "$NS_PREFIX$n" link set lo up
    done
}

# veth A DEV_A ADDR_A B DEV_B ADDR_B: a veth pair between namespaces A and B, up.
veth() {
    ip -n "$NS_PREFIX$1" link add "$2" type veth peer name "$5" netns "$NS_PREFIX$4"
    ip -n "$NS_PREFIX$1" addr add "$3" dev "$2"
    ip -n "$NS_PREFIX$4" addr add "$6" dev "$5"
    ip -n "$NS_PREFIX$1" link set "$2" up
    ip -n "$NS_PREFIX$4" link set "$5" up
}

# wait_until SECONDS CMD...: polls CMD every 0.2 s; fails after SECONDS.
wait_until() {
    local limit=$1 _
    shift
    for _ in $(seq $((limit * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

# CPU accounting. Nanoseconds on CPU of the processes, summed over their threads
# (/proc/PID/task/TID/schedstat: /proc/PID/stat counts in 10 ms ticks, too coarse
# for a few dozen IKE setups; the daemons' threads live as long as they do), and
# non-idle ticks of the whole machine (user nice system irq softirq steal), so kernel
# work no process is charged with (softirq forwarding, the veth) still shows in the
# machine figure.
# shellcheck disable=SC2034 # used by the parts
HZ=$(getconf CLK_TCK)
proc_cpu_ns() {
    local pid
    for pid in "$@"; do
        cat /proc/"$pid"/task/*/schedstat 2>/dev/null || true
    done | awk '{ns += $1} END {printf "%.0f\n", ns}'
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# Resident set size of PID in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# record KEY=VALUE...: one JSON object per line in $RESULTS (numbers stay numbers,
# everything else is quoted), read back by report.py.
record() {
    local kv out="" k v
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        if [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
            out+="\"$k\": $v, "
        else
            v=${v//\\/\\\\}
            out+="\"$k\": \"${v//\"/\\\"}\", "
        fi
    done
    echo "{${out%, }}" >>"$RESULTS"
}
