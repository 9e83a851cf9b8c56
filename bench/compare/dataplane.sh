# shellcheck shell=bash
# Dataplane part of bench/compare.sh (sourced): one topology for every system,
#
#   lana 10.1.0.10 -- 10.1.0.1 gwa 192.0.2.1 ==veth== 192.0.2.2 gwb 10.2.0.1 -- 10.2.0.10 lanb
#
# built afresh for each system, with iperf3 between the LAN hosts, so the gateways
# forward (as a VPN gateway does) and iperf3's own CPU is not charged to them. The
# tunnel interface MTU is 1400 for every system (charon's kernel-libipsec fixes its
# TUN at 1400; vpnd's st0 and boringtun's wg are set to match), so the inner packets
# are the same size everywhere. The bare link is the same four namespaces with plain
# routes instead of a tunnel.
#
# Systems and their transports: vpnd <-> vpnd negotiates IKEv2 and, with no NAT
# between them, carries raw ESP (IP protocol 50); vpnd-udp is the same with
# force-udp-encapsulation, so ESP in UDP 4500 as the others; charon <-> charon with
# kernel-libipsec always encapsulates ESP in UDP 4500 (libipsec cannot receive raw
# ESP); boringtun is WireGuard over UDP (ChaCha20-Poly1305, its only cipher).

DP_PSK="bench-compare-psk-0123456789"
DP_IKE_STRONGSWAN="aes128gcm16-prfsha256-ecp256"

dp_topology() {
    cleanup
    new_ns lana gwa gwb lanb
    veth gwa wan0 192.0.2.1/24 gwb wan0 192.0.2.2/24
    veth lana eth0 10.1.0.10/24 gwa lan0 10.1.0.1/24
    veth lanb eth0 10.2.0.10/24 gwb lan0 10.2.0.1/24
    ip -n "${NS_PREFIX}lana" route add default via 10.1.0.1
    ip -n "${NS_PREFIX}lanb" route add default via 10.2.0.1
    nsx gwa sysctl -qw net.ipv4.ip_forward=1
    nsx gwb sysctl -qw net.ipv4.ip_forward=1
    # Resolve the neighbours now: a first ARP lost while a veth comes up costs 1 s.
    nsx gwa ping -c1 -W2 192.0.2.2 >/dev/null
    nsx lana ping -c1 -W2 10.1.0.1 >/dev/null
    nsx lanb ping -c1 -W2 10.2.0.1 >/dev/null
}

# Junos (vpnd) and strongSwan spellings of each ESP proposal.
dp_vpnd_esp() {
    case $1 in
        aes128gcm) echo 'encryption-algorithm = "aes-128-gcm"' ;;
        aes256gcm) echo 'encryption-algorithm = "aes-256-gcm"' ;;
        aes128cbc-sha256) printf '%s\n' 'encryption-algorithm = "aes-128-cbc"' 'authentication-algorithm = "hmac-sha-256-128"' ;;
        aes256cbc-sha256) printf '%s\n' 'encryption-algorithm = "aes-256-cbc"' 'authentication-algorithm = "hmac-sha-256-128"' ;;
        *) die "unknown proposal $1" ;;
    esac
}
dp_swan_esp() {
    case $1 in
        aes128gcm) echo aes128gcm16 ;;
        aes256gcm) echo aes256gcm16 ;;
        aes128cbc-sha256) echo aes128-sha256 ;;
        aes256cbc-sha256) echo aes256-sha256 ;;
        *) die "unknown proposal $1" ;;
    esac
}

# vpnd_policy METHOD DH POLICY ESP: the IKE proposal "ike1" (AES-128-GCM, SHA-256,
# DH group DH) and policy "pol" (METHOD, credentials POLICY), and the IPsec proposal
# "esp1" (ESP lines) and policy "ipol" that every tunnel of a benchmark configuration
# uses; the control part shares them.
vpnd_policy() {
    cat <<EOF
[security.ike.proposal.ike1]
authentication-method = "$1"
dh-group = "$2"
encryption-algorithm = "aes-128-gcm"
authentication-algorithm = "sha-256"
lifetime-seconds = 28800

[security.ike.policy.pol]
proposals = ["ike1"]
$3

[security.ipsec.proposal.esp1]
protocol = "esp"
$4
lifetime-seconds = 3600

[security.ipsec.policy.ipol]
proposals = ["esp1"]
EOF
}

# vpnd_tunnel N PEER LOCAL LOCAL_ID REMOTE_ID ESTABLISH LOCAL_TS REMOTE_TS ST0_ADDR
# [GATEWAY_LINES]: gateway gN to PEER and route-based vpn vN on st0.N (MTU 1400, see
# above).
vpnd_tunnel() {
    cat <<EOF

[security.ike.gateway.g$1]
ike-policy = "pol"
address = ["$2"]
local-address = "$3"
local-identity.hostname = "$4"
remote-identity.hostname = "$5"
version = "v2-only"
${10:-}

[security.ipsec.vpn.v$1]
bind-interface = "st0.$1"
ike.gateway = "g$1"
ike.ipsec-policy = "ipol"
establish-tunnels = "$6"
traffic-selector.lan = { local-ip = "$7", remote-ip = "$8" }

[interfaces.st0.unit.$1]
family.inet.address = "$9"
family.inet.mtu = 1400
EOF
}

# vpnd_site_config SIDE PROPOSAL [GATEWAY_LINES]: the shape of
# node/tests/data/site-a.toml and site-b.toml with the proposal under test; a
# initiates, b only responds. No management API: nothing here asks it anything.
vpnd_site_config() {
    vpnd_policy pre-shared-keys group19 "pre-shared-key.ascii-text = \"$DP_PSK\"" "$(dp_vpnd_esp "$2")"
    if [ "$1" = a ]; then
        vpnd_tunnel 0 192.0.2.2 192.0.2.1 a.test b.test immediately 10.1.0.0/16 10.2.0.0/16 10.255.0.1/30 "${3:-}"
        printf '\n[routing-options.static.route."10.2.0.0/16"]\nnext-hop = "st0.0"\n'
    else
        vpnd_tunnel 0 192.0.2.1 192.0.2.2 b.test a.test responder-only 10.2.0.0/16 10.1.0.0/16 10.255.0.2/30 "${3:-}"
        printf '\n[routing-options.static.route."10.1.0.0/16"]\nnext-hop = "st0.0"\n'
    fi
}

# Each dp_up_* brings one system up in a fresh topology and sets GW_PIDS.
dp_up_bare() {
    dp_topology
    ip -n "${NS_PREFIX}gwa" route add 10.2.0.0/16 via 192.0.2.2
    ip -n "${NS_PREFIX}gwb" route add 10.1.0.0/16 via 192.0.2.1
    GW_PIDS=()
}

# dp_up_vpnd PROPOSAL [GATEWAY_LINES]
dp_up_vpnd() {
    local proposal=$1 side
    dp_topology
    GW_PIDS=()
    for side in b a; do
        vpnd_site_config "$side" "$proposal" "${2:-}" >"$WORK/vpnd-$side.toml"
        spawn "$WORK/vpnd-$side.log" env NO_COLOR=1 ip netns exec "${NS_PREFIX}gw$side" \
            "$VPND" --config "$WORK/vpnd-$side.toml" --workers "$VPND_WORKERS" --log info run
        GW_PIDS+=("$SPAWNED")
        # The responder's socket first, or the first IKE_SA_INIT meets a closed port.
        if [ "$side" = b ]; then
            wait_until 10 grep -q "vpnd running" "$WORK/vpnd-b.log" || die "vpnd b did not start: $(tail -5 "$WORK/vpnd-b.log")"
        fi
    done
}

# vpnd with ESP in UDP 4500, the transport charon (kernel-libipsec) and boringtun use:
# both ends claim a NAT, as charon's encap=yes does. Its send path batches with UDP
# GSO, where raw ESP costs a system call per packet.
dp_up_vpnd_udp() {
    dp_up_vpnd "$1" "force-udp-encapsulation = true"
}

# charon_conf DIR [EXTRA [LEVEL]]: strongswan.conf for a charon whose files live in
# DIR, as in lab/src/strongswan.rs (kernel-libipsec before kernel-netlink; no XFRM
# here). EXTRA is added to the charon section (the control part relaxes DoS protection
# and sizes the IKE SA table); LEVEL is the file log's level (default 1).
charon_conf() {
    local d=$1 extra=${2:-} level=${3:-1}
    cat <<EOF
charon {
    load_modular = no
    load = random nonce openssl aes sha1 sha2 hmac gcm curve25519 gmp kdf pem pkcs1 pkcs8 pubkey x509 kernel-libipsec kernel-netlink socket-default vici
    port = 500
    port_nat_t = 4500
    send_vendor_id = no
    retransmit_tries = 3
    retransmit_timeout = 2.0
$extra
    plugins {
        vici {
            socket = unix://$d/run/charon.vici
        }
    }
    filelog {
        main {
            path = $d/charon.log
            time_format = %H:%M:%S
            time_add_ms = yes
            flush_line = yes
            default = $level
        }
    }
}
swanctl {
    socket = unix://$d/run/charon.vici
}
EOF
}

# start_charon NS DIR: charon in namespace NS with its configuration in DIR (and a
# private /run there: its pid file path is fixed), connections loaded. Sets SPAWNED.
start_charon() {
    local ns=$1 d=$2
    spawn "$d/charon.stdout" ip netns exec "$NS_PREFIX$ns" sh -c \
        "mount --bind '$d/run' /run && exec env STRONGSWAN_CONF='$d/strongswan.conf' /usr/lib/ipsec/charon"
    local pid=$SPAWNED
    wait_until 10 test -S "$d/run/charon.vici" || die "charon in $ns did not open its vici socket: $(cat "$d/charon.stdout")"
    swanctl_at "$d" --load-all --file "$d/swanctl.conf" >"$d/load.txt" 2>&1 || die "swanctl --load-all in $d: $(cat "$d/load.txt")"
    SPAWNED=$pid
}

swanctl_at() {
    local d=$1
    shift
    STRONGSWAN_CONF=$d/strongswan.conf SWANCTL_DIR=$d timeout 60 swanctl "$@" --uri "unix://$d/run/charon.vici"
}

dp_up_strongswan() {
    local proposal=$1 side esp me peer my_lan peer_lan d
    esp=$(dp_swan_esp "$proposal")
    dp_topology
    GW_PIDS=()
    for side in b a; do
        if [ "$side" = a ]; then
            me=192.0.2.1 peer=192.0.2.2 my_lan=10.1.0.0/16 peer_lan=10.2.0.0/16
        else
            me=192.0.2.2 peer=192.0.2.1 my_lan=10.2.0.0/16 peer_lan=10.1.0.0/16
        fi
        d=$WORK/charon-$side
        rm -rf "$d"
        mkdir -p "$d/run"
        charon_conf "$d" >"$d/strongswan.conf"
        cat >"$d/swanctl.conf" <<EOF
connections {
    tun {
        version = 2
        local_addrs = $me
        remote_addrs = $peer
        proposals = $DP_IKE_STRONGSWAN
        encap = yes
        mobike = no
        local {
            auth = psk
            id = $side.test
        }
        remote {
            auth = psk
        }
        children {
            net {
                local_ts = $my_lan
                remote_ts = $peer_lan
                mode = tunnel
                esp_proposals = $esp
                start_action = none
            }
        }
    }
}
secrets {
    ike-tun {
        id-a = a.test
        id-b = b.test
        secret = "$DP_PSK"
    }
}
EOF
        start_charon "gw$side" "$d"
        GW_PIDS+=("$SPAWNED")
    done
    swanctl_at "$WORK/charon-a" --initiate --ike tun --child net >"$WORK/charon-a/initiate.txt" 2>&1 ||
        die "charon could not initiate: $(tail -5 "$WORK/charon-a/initiate.txt")"
}

dp_up_boringtun() {
    local side me peer peer_lan wg pub
    dp_topology
    GW_PIDS=()
    for side in a b; do
        (umask 077 && wg genkey >"$WORK/wg-$side.key")
        wg pubkey <"$WORK/wg-$side.key" >"$WORK/wg-$side.pub"
    done
    for side in a b; do
        # Distinct interface names: boringtun's UAPI socket is /run/wireguard/IF.sock
        # in the shared /run, and `wg` finds it by the name.
        wg=bench-wg$side
        if [ "$side" = a ]; then
            me=1 peer=192.0.2.2 peer_lan=10.2.0.0/16 pub=$WORK/wg-b.pub
        else
            me=2 peer=192.0.2.1 peer_lan=10.1.0.0/16 pub=$WORK/wg-a.pub
        fi
        spawn "$WORK/boringtun-$side.log" ip netns exec "${NS_PREFIX}gw$side" \
            "$BORINGTUN" "$wg" --foreground --disable-drop-privileges
        GW_PIDS+=("$SPAWNED")
        wait_until 10 test -S "/var/run/wireguard/$wg.sock" || die "boringtun did not open its socket: $(cat "$WORK/boringtun-$side.log")"
        nsx "gw$side" wg set "$wg" private-key "$WORK/wg-$side.key" listen-port 51820 \
            peer "$(cat "$pub")" allowed-ips "$peer_lan,10.255.0.0/30" endpoint "$peer:51820"
        ip -n "${NS_PREFIX}gw$side" addr add "10.255.0.$me/30" dev "$wg"
        ip -n "${NS_PREFIX}gw$side" link set "$wg" mtu 1400 up
        ip -n "${NS_PREFIX}gw$side" route add "$peer_lan" dev "$wg"
    done
}

# UDP datagrams that reached lanb's UDP layer (InDatagrams + InErrors of
# /proc/net/snmp): what the path delivered, whether or not iperf3's socket had room.
# With an unlimited sender the iperf3 receiver is the bottleneck even on the bare link
# (its losses are UdpRcvbufErrors at lanb, not drops on the way), so this, not
# iperf3's own count, is the dataplane's packet rate.
udp_arrived() {
    # shellcheck disable=SC2016 # awk fields, not shell
    nsx lanb awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 }
        else print $c["InDatagrams"] + $c["InErrors"] }' /proc/net/snmp
}

# dp_measure SYSTEM PROPOSAL REP: TCP, UDP 1400 B and UDP 64 B from lana to lanb,
# each DP_SECONDS long, one record each with the gateways' and the machine's CPU.
dp_measure() {
    local system=$1 proposal=$2 rep=$3 kind len json p0 b0 p1 b1 t0 t1 u0 u1
    wait_until 20 nsx lana ping -c1 -W1 10.2.0.10 || die "$system $proposal: no traffic through the tunnel"
    spawn "$WORK/iperf3-server.log" ip netns exec "${NS_PREFIX}lanb" iperf3 -s -B 10.2.0.10
    local server=$SPAWNED
    wait_until 10 nsx lana bash -c 'exec 3<>/dev/tcp/10.2.0.10/5201' || die "iperf3 server did not come up"
    for kind in tcp udp1400 udp64; do
        local args=(-c 10.2.0.10 -t "$DP_SECONDS" -J)
        case $kind in
            udp1400) args+=(-u -b 0 -l 1400) ;;
            udp64) args+=(-u -b 0 -l 64) ;;
        esac
        json=$WORK/iperf-$system-$proposal-$kind-$rep.json
        t0=$(date +%s%N)
        u0=$(udp_arrived)
        p0=$(proc_cpu_ns "${GW_PIDS[@]}")
        b0=$(busy_ticks)
        nsx lana timeout $((DP_SECONDS + 20)) iperf3 "${args[@]}" >"$json" 2>"${json%.json}.err" || true
        p1=$(proc_cpu_ns "${GW_PIDS[@]}")
        b1=$(busy_ticks)
        u1=$(udp_arrived)
        t1=$(date +%s%N)
        # bits and datagrams the receiver got; for UDP, iperf3's lost_packets comes from
        # the server's sequence numbers.
        local got
        got=$(jq -r 'if .error then "error \(.error)" else
            (.end.sum_received // .end.sum) as $s |
            if .start.test_start.protocol == "UDP" then
              "\(.end.sum.packets - .end.sum.lost_packets) \(.end.sum.lost_percent) \(.end.sum.seconds) \(.end.sum.packets)"
            else "\($s.bytes) \($s.seconds)" end end' "$json" 2>/dev/null || echo "error unreadable")
        if [[ $got == error* ]]; then
            log "$system $proposal $kind: iperf3 failed: $got"
            record section=dataplane system="$system" proposal="$proposal" rep="$rep" test="$kind" error="$got"
            continue
        fi
        local gw_cpu sys_cpu wall
        gw_cpu=$(awk -v t=$((p1 - p0)) 'BEGIN {printf "%.3f", t / 1e9}')
        sys_cpu=$(awk -v t=$((b1 - b0)) -v hz="$HZ" 'BEGIN {printf "%.3f", t / hz}')
        wall=$(awk -v t=$((t1 - t0)) 'BEGIN {printf "%.3f", t / 1e9}')
        if [ "$kind" = tcp ]; then
            read -r bytes secs <<<"$got"
            record section=dataplane system="$system" proposal="$proposal" rep="$rep" test=tcp \
                mbps="$(awk -v b="$bytes" -v s="$secs" 'BEGIN {printf "%.1f", b * 8 / s / 1e6}')" \
                gbits="$(awk -v b="$bytes" 'BEGIN {printf "%.4f", b * 8 / 1e9}')" \
                gw_cpu_s="$gw_cpu" sys_cpu_s="$sys_cpu" wall_s="$wall"
            log "$system $proposal tcp: $(awk -v b="$bytes" -v s="$secs" 'BEGIN {printf "%.0f", b * 8 / s / 1e6}') Mbit/s, gateways ${gw_cpu} CPU s, machine ${sys_cpu} CPU s"
        else
            read -r rx loss secs sent <<<"$got"
            len=${kind#udp}
            record section=dataplane system="$system" proposal="$proposal" rep="$rep" test="$kind" \
                pps="$(awk -v r="$((u1 - u0))" -v s="$secs" 'BEGIN {printf "%.0f", r / s}')" \
                iperf3_rx_pps="$(awk -v r="$rx" -v s="$secs" 'BEGIN {printf "%.0f", r / s}')" \
                sent_pps="$(awk -v r="$sent" -v s="$secs" 'BEGIN {printf "%.0f", r / s}')" \
                loss_pct="$(awk -v l="$loss" 'BEGIN {printf "%.2f", l}')" \
                gbits="$(awk -v r="$((u1 - u0))" -v l="$len" 'BEGIN {printf "%.4f", r * l * 8 / 1e9}')" \
                gw_cpu_s="$gw_cpu" sys_cpu_s="$sys_cpu" wall_s="$wall"
            log "$system $proposal $kind: $(awk -v r="$((u1 - u0))" -v s="$secs" 'BEGIN {printf "%.0f", r / s}') pps delivered to lanb, $(awk -v r="$rx" -v s="$secs" 'BEGIN {printf "%.0f", r / s}') read by iperf3, loss ${loss}%, gateways ${gw_cpu} CPU s"
        fi
    done
    stop_pid "$server"
}

# The whole dataplane part: DP_REPEAT rounds, each measuring the bare link first (the
# reference of that round), then every system, so slow drift on the shared machine
# touches reference and systems alike.
run_dataplane() {
    local rep system proposal
    for rep in $(seq "$DP_REPEAT"); do
        for system in $DP_SYSTEMS; do
            case $system in
                bare | boringtun) proposals=(-) ;;
                *) read -r -a proposals <<<"$DP_PROPOSALS" ;;
            esac
            for proposal in "${proposals[@]}"; do
                local label=$proposal
                case $system in boringtun) label=chacha20poly1305 ;; bare) label=none ;; esac
                log "dataplane round $rep/$DP_REPEAT: $system $label"
                "dp_up_${system//-/_}" "$proposal"
                dp_measure "$system" "$label" "$rep"
                cleanup
            done
        done
    done
}
