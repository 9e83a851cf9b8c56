# shellcheck shell=bash
# Control-plane part of bench/compare.sh (sourced): IKE SA + child SA setups per
# second, responder CPU per setup and memory per IKE SA, vpnd as responder against
# charon as responder under the same load: tools/ikeload (the ike crate's initiator,
# one thread, every simulated peer on one socket pair) in namespace `ini`, against
#
#   ini 192.0.2.1 (peers 172.16.0.1 + i, AnyIP route) ==veth== 192.0.2.2 rsp
#
# Per authentication (PSK with ECP-256, PSK with Curve25519, ECDSA P-256
# certificates; IKE AES-128-GCM/PRF-SHA-256, child AES-128-GCM without PFS, ESP in
# UDP as kernel-libipsec needs):
#   seq  CP_SEQ setups one at a time: latency (p50) and setups/s;
#   fan  CP_SAS setups, CP_INFLIGHT at once: setups/s until all child SAs are up, the
#        responder's CPU per setup, and its RSS before and after (memory per IKE SA
#        with one child SA).
# and issue 4's scale test (run_scale, PSK/ECP-256): CP_SCALE tunnels (default 1,000 and
# 10,000, against one dial-up gateway; the per-peer configuration, CP_SCALE_DIALUP=0,
# needs ~3 GB of kernel memory for 10,000 st0 units, see CP_KIB_PER_UNIT) brought
# up and held, setups/s, RSS per tunnel and CPU seconds.
#
# ikeload replaces charon as the initiator (driven over VICI until 2026-11-27): that
# charon needed as much CPU per setup as the responder and capped the ratio at ~1.5x.
#
# Each peer has its own address. For the control-plane tests vpnd is configured as a
# site-to-site gateway: one IKE SA per configured peer (`[security.ike.gateway]`
# matched by the peer's address), so one gateway, vpn and st0 unit per peer (a st0
# unit takes one vpn). The scale test gives vpnd what charon gets, one connection for
# every peer: a dial-up gateway (`dynamic`, every peer presenting a.test, shared IKE
# ID) with one vpn on one st0 unit (CP_SCALE_DIALUP=0 for the per-peer configuration,
# whose st0 units cost ~270 KiB of kernel memory each); charon gets one
# connection with remote_addrs = %any. Peer i proposes TSi 10.128.0.0 + i*256 /24
# (ikeload --ts-base) and TSr 10.2.0.0/16.

CP_AUTHS=${CP_AUTHS:-"psk-ecp256 psk-x25519 ecdsa-p256"}
CP_INFLIGHT=${CP_INFLIGHT:-64}
CP_SCALE=${CP_SCALE:-"1000 10000"}
# Kernel memory an st0 unit holds (SUnreclaim growth, 2,006 units: the 256 transmit
# queues of a multi-queue TUN device; its default qdiscs, another ~2 MB, are never
# allocated since the dataplane sets noqueue before link up): the scale test skips a
# count the machine cannot hold rather than run it out of memory.
CP_KIB_PER_UNIT=300
CP_SCALE_DIALUP=${CP_SCALE_DIALUP:-1}
CP_FIRST_PEER=172.16.0.1

cp_ike_swan() {
    case $1 in
        psk-x25519) echo aes128gcm16-prfsha256-x25519 ;;
        *) echo aes128gcm16-prfsha256-ecp256 ;;
    esac
}

cp_topology() {
    cleanup
    new_ns ini rsp
    veth ini ini0 192.0.2.1/24 rsp rsp0 192.0.2.2/24
    # Every address of 172.16/16 is local in ini (AnyIP), so ikeload sends from and
    # receives at any of them without 10,000 configured addresses.
    ip -n "${NS_PREFIX}ini" route add local 172.16.0.0/16 dev lo
    ip -n "${NS_PREFIX}rsp" route add 172.16.0.0/16 via 192.0.2.1
    # An address inside the responder's traffic selector: kernel-libipsec installs
    # its routes with a source address from it and refuses the child SA
    # (TS_UNACCEPTABLE) when there is none.
    ip -n "${NS_PREFIX}rsp" addr add 10.2.0.1/32 dev lo
    nsx ini ping -c1 -W2 192.0.2.2 >/dev/null
}

# A CA and ECDSA P-256 certificates for a.test (initiator) and b.test (responder),
# keys as PKCS#8 PEM, like node/tests/interop_strongswan.rs makes with rcgen; openssl
# here because this is a shell script and Debian has it.
cp_certs() {
    local d=$WORK/pki n
    [ -f "$d/b.pem" ] && return 0
    mkdir -p "$d"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$d/ca.key" -subj "/C=US/O=Bench/CN=Bench CA" -days 30 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$d/ca.pem" 2>/dev/null
    for n in a b; do
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$n.key" 2>/dev/null
        openssl req -new -key "$d/$n.key" -subj "/C=US/O=Bench/CN=$n.test" -out "$d/$n.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s.test\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' "$n" >"$d/$n.ext"
        openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
            -extfile "$d/$n.ext" -out "$d/$n.pem" 2>/dev/null
    done
}

# swan_auth_block SIDE AUTH PEER_SIDE: the local/remote sections of a connection.
swan_auth_block() {
    local me=$1 auth=$2 peer=$3
    if [ "$auth" = ecdsa-p256 ]; then
        printf '        local {\n            auth = pubkey\n            certs = %s.pem\n            id = %s.test\n        }\n' "$me" "$me"
        printf '        remote {\n            auth = pubkey\n            id = %s.test\n        }\n' "$peer"
    else
        printf '        local {\n            auth = psk\n            id = %s.test\n        }\n' "$me"
        printf '        remote {\n            auth = psk\n            id = %s.test\n        }\n' "$peer"
    fi
}

# charon_dir D AUTH SIDE EXTRA: D with strongswan.conf and the credentials for AUTH.
cp_charon_dir() {
    local d=$1 auth=$2 side=$3 extra=$4
    rm -rf "$d"
    mkdir -p "$d/run" "$d/x509" "$d/x509ca" "$d/private"
    # File log at -1 (errors only), as vpnd runs with `--log warn`: per-setup log lines
    # are work the measured responder would do and the other would not.
    charon_conf "$d" "$extra" -1 >"$d/strongswan.conf"
    if [ "$auth" = ecdsa-p256 ]; then
        cp "$WORK/pki/ca.pem" "$d/x509ca/"
        cp "$WORK/pki/$side.pem" "$d/x509/"
        cp "$WORK/pki/$side.key" "$d/private/"
    fi
}

cp_secrets() {
    printf 'secrets {\n    ike-bench {\n        id-a = a.test\n        id-b = b.test\n        secret = "%s"\n    }\n}\n' "$DP_PSK"
}

cp_start_charon_responder() {
    local auth=$1 d=$WORK/cp-rsp
    # DoS protection off, as the shared strongSwan kit's responder: the test measures
    # IKE work, not cookies. The IKE SA table sized as strongSwan's documentation
    # advises for many SAs (its default is one bucket, so its cost per setup grows
    # with the SAs it holds: 0.8 ms at 1,000, 5.4 ms at 10,000 before).
    cp_charon_dir "$d" "$auth" b "    dos_protection = no
    ikesa_table_size = 4096
    ikesa_table_segments = 16
    block_threshold = 100000
    cookie_threshold = 100000
    init_limit_half_open = 0"
    {
        cat <<EOF
connections {
    rsp {
        version = 2
        local_addrs = 192.0.2.2
        remote_addrs = %any
        proposals = $(cp_ike_swan "$auth")
        encap = yes
        mobike = no
        unique = never
$(swan_auth_block b "$auth" a)
        children {
            net {
                local_ts = 10.2.0.0/16
                remote_ts = 10.128.0.0/9
                mode = tunnel
                esp_proposals = aes128gcm16
                start_action = none
            }
        }
    }
}
EOF
        [ "$auth" = ecdsa-p256 ] || cp_secrets
    } >"$d/swanctl.conf"
    start_charon rsp "$d"
    RSP_PID=$SPAWNED
}

# ipv4 BASE STEP I: BASE + STEP * I as a dotted quad.
ipv4() {
    local IFS=. a b c d n
    read -r a b c d <<<"$1"
    n=$(((a << 24) + (b << 16) + (c << 8) + d + $2 * $3))
    echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))"
}

# cp_vpnd_config AUTH N: vpnd as responder to peers 0..N-1, one gateway + vpn + st0
# unit each (st0 addresses 100.64.0.1 + 4i /30).
cp_vpnd_config() {
    local auth=$1 n=$2 i method dh policy
    dh=group19
    [ "$auth" = psk-x25519 ] && dh=group31
    if [ "$auth" = ecdsa-p256 ]; then
        method=ecdsa-signatures-256
        policy="certificate.local-certificate = \"$WORK/pki/b.pem\"
certificate.private-key = \"$WORK/pki/b.key\"
certificate.trusted-ca = [\"$WORK/pki/ca.pem\"]"
    else
        method=pre-shared-keys
        policy="pre-shared-key.ascii-text = \"$DP_PSK\""
    fi
    vpnd_policy "$method" "$dh" "$policy" 'encryption-algorithm = "aes-128-gcm"'
    for ((i = 0; i < n; i++)); do
        vpnd_tunnel "$i" "$(ipv4 "$CP_FIRST_PEER" 1 "$i")" 192.0.2.2 b.test a.test responder-only \
            10.2.0.0/16 "$(ipv4 10.128.0.0 256 "$i")/24" "$(ipv4 100.64.0.1 4 "$i")/30"
    done
}

# cp_vpnd_dialup_config: vpnd as responder to any number of peers through one dial-up
# gateway (PSK/ECP-256): each peer gets a gateway actor of its own as it calls.
cp_vpnd_dialup_config() {
    vpnd_policy pre-shared-keys group19 "pre-shared-key.ascii-text = \"$DP_PSK\"" 'encryption-algorithm = "aes-128-gcm"'
    cat <<EOF

[security.ike.gateway.peers]
ike-policy = "pol"
dynamic.hostname = "a.test"
dynamic.ike-user-type = "shared-ike-id"
local-address = "192.0.2.2"
local-identity.hostname = "b.test"
version = "v2-only"

[security.ipsec.vpn.peers]
bind-interface = "st0.0"
ike.gateway = "peers"
ike.ipsec-policy = "ipol"

[interfaces.st0.unit.0]
family.inet.address = "100.64.0.1/30"
EOF
}

cp_start_vpnd_responder() {
    local auth=$1 n=$2
    if [ "${3:-}" = dialup ]; then
        cp_vpnd_dialup_config >"$WORK/cp-vpnd.toml"
    else
        cp_vpnd_config "$auth" "$n" >"$WORK/cp-vpnd.toml"
    fi
    spawn "$WORK/cp-vpnd.log" env NO_COLOR=1 ip netns exec "${NS_PREFIX}rsp" \
        "$VPND" --config "$WORK/cp-vpnd.toml" --log warn run
    RSP_PID=$SPAWNED
    # `--log warn` keeps per-setup logging out of the measurement; wait for its port
    # (thousands of st0 units take a while to create).
    wait_until $((20 + n / 50)) sh -c "ip netns exec ${NS_PREFIX}rsp ss -uln | grep -q '192.0.2.2:500 '" ||
        die "vpnd responder did not bind UDP 500: $(tail -5 "$WORK/cp-vpnd.log")"
}

# cp_start RESPONDER AUTH N [dialup]: the topology and the responder for N peers.
cp_start() {
    cp_topology
    if [ "$1" = vpnd ]; then
        cp_start_vpnd_responder "$2" "$3" "${4:-}"
    else
        cp_start_charon_responder "$2"
    fi
}

# ikeload AUTH COUNT INFLIGHT FIRST: COUNT setups from peers FIRST, FIRST + 1, ...
# (indices: peer i is at 172.16.0.1 + i and proposes 10.128.0.0 + 256i /24) against
# the responder $RSP_PID; prints ikeload's JSON report.
ikeload() {
    local auth=$1 count=$2 inflight=$3 first=$4 args=()
    case $auth in
        psk-x25519) args=(--dh x25519 --psk "$DP_PSK") ;;
        psk-ecp256) args=(--dh ecp256 --psk "$DP_PSK") ;;
        ecdsa-p256) args=(--dh ecp256 --cert "$WORK/pki/a.pem" --key "$WORK/pki/a.key" --ca "$WORK/pki/ca.pem") ;;
    esac
    nsx ini "$IKELOAD" --target 192.0.2.2 --first-source "$(ipv4 "$CP_FIRST_PEER" 1 "$first")" \
        --ts-base "$(ipv4 10.128.0.0 256 "$first")" --count "$count" --inflight "$inflight" --encap \
        --responder-pid "$RSP_PID" --timeout-s $((60 + count / 50)) "${args[@]}" 2>>"$WORK/ikeload.err" ||
        echo '{"error": "ikeload failed"}'
}

# cp_record SECTION TEST RESPONDER AUTH REP JSON: one record of ikeload's report.
cp_record() {
    local section=$1 test=$2 responder=$3 auth=$4 rep=$5 out=$6
    record section="$section" test="$test" responder="$responder" auth="$auth" rep="$rep" \
        k="$(jq -r '.count // 0' <<<"$out")" established="$(jq -r '.established // 0' <<<"$out")" \
        fails="$(jq -r '.failed // 0' <<<"$out")" failures="$(jq -c '.failures // {}' <<<"$out")" \
        inflight="$(jq -r '.inflight // 0' <<<"$out")" setups_per_s="$(jq -r '.setups_per_s // 0' <<<"$out")" \
        median_ms="$(jq -r '.p50_ms // 0' <<<"$out")" p90_ms="$(jq -r '.p90_ms // 0' <<<"$out")" \
        p99_ms="$(jq -r '.p99_ms // 0' <<<"$out")" wall_s="$(jq -r '.wall_s // 0' <<<"$out")" \
        rsp_cpu_s="$(jq -r '.responder_cpu_s // 0' <<<"$out")" \
        rsp_cpu_ms_per_setup="$(jq -r '.responder_cpu_ms_per_setup // 0' <<<"$out")" \
        ini_cpu_ms_per_setup="$(jq -r 'if (.established // 0) > 0 then .loadgen_cpu_s * 1000 / .established else 0 end' <<<"$out")" \
        rss_before_kib="$(jq -r '.responder_rss_before_kib // 0' <<<"$out")" \
        rss_after_kib="$(jq -r '.responder_rss_after_kib // 0' <<<"$out")" \
        kib_per_sa="$(jq -r '.responder_kib_per_tunnel // 0' <<<"$out")"
}

# cp_measure RESPONDER AUTH REP: seq then fan against one fresh responder; every setup
# comes from a new peer, so each is a new IKE SA there.
cp_measure() {
    local responder=$1 auth=$2 rep=$3 out
    cp_start "$responder" "$auth" $((1 + CP_SEQ + CP_SAS))
    # One setup first: certificates parsed, caches warm, neighbours resolved.
    ikeload "$auth" 1 1 0 >/dev/null
    out=$(ikeload "$auth" "$CP_SEQ" 1 1)
    log "$responder $auth seq: $out"
    cp_record control seq "$responder" "$auth" "$rep" "$out"
    out=$(ikeload "$auth" "$CP_SAS" "$CP_INFLIGHT" $((1 + CP_SEQ)))
    log "$responder $auth fan: $out"
    cp_record control fan "$responder" "$auth" "$rep" "$out"
    cleanup
}

build_ikeload() {
    if [ ! -x "${IKELOAD:-}" ]; then
        log "building tools/ikeload (release)"
        (cd "$ROOT" && cargo build --release -q -p ikeload)
        IKELOAD=$CARGO_TARGET_DIR/release/ikeload
    fi
}

run_control() {
    local rep auth responder
    build_ikeload
    cp_certs
    for rep in $(seq "$CP_REPEAT"); do
        for auth in $CP_AUTHS; do
            for responder in vpnd strongswan; do
                log "control plane round $rep/$CP_REPEAT: $responder responder, $auth"
                cp_measure "$responder" "$auth" "$rep"
            done
        done
    done
}

# Issue 4's scale test: N tunnels brought up and held against each responder,
# PSK/ECP-256, CP_INFLIGHT at once.
run_scale() {
    local n responder out avail
    build_ikeload
    local shape=dialup
    [ "$CP_SCALE_DIALUP" = 1 ] || shape=per-peer
    for n in $CP_SCALE; do
        avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
        if [ "$shape" = per-peer ] && [ $((n * CP_KIB_PER_UNIT)) -gt $((avail / 2)) ]; then
            log "scale: skipping $n tunnels: vpnd's st0 units would need ~$((n * CP_KIB_PER_UNIT / 1024)) MiB of kernel memory, $((avail / 1024)) MiB available"
            continue
        fi
        for responder in vpnd strongswan; do
            log "scale: $n tunnels, $responder responder ($shape)"
            cp_start "$responder" psk-ecp256 "$n" "$shape"
            out=$(ikeload psk-ecp256 "$n" "$CP_INFLIGHT" 0)
            log "scale $n $responder: $out"
            cp_record scale "$n" "$responder" psk-ecp256 1 "$out"
            cleanup
        done
    done
}
