# shellcheck shell=bash
# Control-plane part of bench/compare.sh (sourced): IKE SA + child SA setups per
# second and memory per IKE SA, vpnd as responder against charon as responder, under
# the same initiator: a charon (kernel-libipsec) in namespace `ini` driven over VICI
# by vici_rate.py, in namespace pair
#
#   ini 192.0.2.100..100+N ==veth== 192.0.2.2 rsp
#
# Per authentication (PSK with ECP-256, PSK with Curve25519, ECDSA P-256
# certificates; IKE AES-128-GCM/PRF-SHA-256, child AES-128-GCM without PFS):
#   seq  CP_SEQ sequential setups of one connection (initiate, child up, terminate):
#        latency, and setups/s = setups / time spent setting up;
#   fan  CP_SAS connections initiated at once, each from its own address: setups/s
#        until all child SAs are up, the responder's CPU per setup, and its RSS
#        before and after (memory per IKE SA with one child SA).
# The fan test uses one address per IKE SA because vpnd is a site-to-site gateway:
# it keeps one IKE SA per configured peer (`[security.ike.gateway]` matched by the
# peer's address; dynamic peers / remote access are not built, issue 4), so a second
# IKE_SA_INIT from an address that has an established SA negotiates its replacement,
# never a second SA beside it. Its configuration therefore has one gateway, vpn and
# st0 unit per initiator address; charon as responder gets one connection for the
# whole /24.

CP_AUTHS=${CP_AUTHS:-"psk-ecp256 psk-x25519 ecdsa-p256"}

cp_ike_swan() {
    case $1 in
        psk-x25519) echo aes128gcm16-prfsha256-x25519 ;;
        *) echo aes128gcm16-prfsha256-ecp256 ;;
    esac
}

# Initiator address of connection I (0 is the sequential test's "a-b").
cp_addr() { echo "192.0.2.$((100 + $1))"; }

cp_topology() {
    cleanup
    new_ns ini rsp
    veth ini ini0 "$(cp_addr 0)/24" rsp rsp0 192.0.2.2/24
    local i
    for i in $(seq "$CP_SAS"); do
        ip -n "${NS_PREFIX}ini" addr add "$(cp_addr "$i")/24" dev ini0
    done
    # An address inside each local traffic selector: kernel-libipsec installs the
    # route into its TUN with a source address from it, and refuses the child SA
    # (TS_UNACCEPTABLE) when there is none.
    ip -n "${NS_PREFIX}rsp" addr add 10.2.0.1/32 dev lo
    for i in $(seq 0 "$CP_SAS"); do
        ip -n "${NS_PREFIX}ini" addr add "10.1.$i.1/32" dev lo
    done
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
    charon_conf "$d" "$extra" >"$d/strongswan.conf"
    if [ "$auth" = ecdsa-p256 ]; then
        cp "$WORK/pki/ca.pem" "$d/x509ca/"
        cp "$WORK/pki/$side.pem" "$d/x509/"
        cp "$WORK/pki/$side.key" "$d/private/"
    fi
}

cp_secrets() {
    printf 'secrets {\n    ike-bench {\n        id-a = a.test\n        id-b = b.test\n        secret = "%s"\n    }\n}\n' "$DP_PSK"
}

# The initiator: connection a-b from address 0 and c1..cN from addresses 1..N.
cp_start_initiator() {
    local auth=$1 d=$WORK/cp-ini i name
    cp_charon_dir "$d" "$auth" a "    reuse_ikesa = no"
    {
        echo "connections {"
        for i in $(seq 0 "$CP_SAS"); do
            name=c$i
            [ "$i" = 0 ] && name=a-b
            cat <<EOF
    $name {
        version = 2
        local_addrs = $(cp_addr "$i")
        remote_addrs = 192.0.2.2
        proposals = $(cp_ike_swan "$auth")
        encap = yes
        mobike = no
$(swan_auth_block a "$auth" b)
        children {
            net {
                local_ts = 10.1.$i.0/24
                remote_ts = 10.2.0.0/16
                mode = tunnel
                esp_proposals = aes128gcm16
                start_action = none
            }
        }
    }
EOF
        done
        echo "}"
        [ "$auth" = ecdsa-p256 ] || cp_secrets
    } >"$d/swanctl.conf"
    start_charon ini "$d"
    INI_PID=$SPAWNED
}

cp_start_charon_responder() {
    local auth=$1 d=$WORK/cp-rsp
    # DoS protection off, as the shared strongSwan kit's responder: the test measures
    # IKE work, not cookies.
    cp_charon_dir "$d" "$auth" b "    dos_protection = no
    block_threshold = 100000
    cookie_threshold = 100000
    init_limit_half_open = 0"
    {
        cat <<EOF
connections {
    rsp {
        version = 2
        local_addrs = 192.0.2.2
        remote_addrs = 192.0.2.0/24
        proposals = $(cp_ike_swan "$auth")
        encap = yes
        mobike = no
        unique = never
$(swan_auth_block b "$auth" a)
        children {
            net {
                local_ts = 10.2.0.0/16
                remote_ts = 10.1.0.0/16
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

# vpnd as responder: one gateway + vpn + st0 unit per initiator address.
cp_vpnd_config() {
    local auth=$1 i method dh policy
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
    for i in $(seq 0 "$CP_SAS"); do
        vpnd_tunnel "$i" "$(cp_addr "$i")" 192.0.2.2 b.test a.test responder-only \
            10.2.0.0/16 "10.1.$i.0/24" "10.254.$i.1/30"
    done
}

cp_start_vpnd_responder() {
    local auth=$1
    cp_vpnd_config "$auth" >"$WORK/cp-vpnd.toml"
    spawn "$WORK/cp-vpnd.log" env NO_COLOR=1 ip netns exec "${NS_PREFIX}rsp" \
        "$VPND" --config "$WORK/cp-vpnd.toml" --log warn run
    RSP_PID=$SPAWNED
    # `--log warn` keeps per-setup logging out of the measurement; wait for its port.
    wait_until 20 sh -c "ip netns exec ${NS_PREFIX}rsp ss -uln | grep -q '192.0.2.2:500 '" ||
        die "vpnd responder did not bind UDP 500: $(tail -5 "$WORK/cp-vpnd.log")"
}

vici() { "$PYTHON" "$HERE/compare/vici_rate.py" "$WORK/cp-ini/run/charon.vici" "$@"; }

# cpu_ms_per NS N: milliseconds of CPU per item.
cpu_ms_per() { awk -v t="$1" -v n="$2" 'BEGIN {printf "%.3f", n ? t / 1e6 / n : 0}'; }

# cp_measure RESPONDER AUTH REP
cp_measure() {
    local responder=$1 auth=$2 rep=$3 out rss0 rss1 p0 p1 i0 i1
    # One setup first: certificates parsed, caches warm, neighbours resolved.
    vici seq 1 >/dev/null || true
    p0=$(proc_cpu_ns "$RSP_PID")
    i0=$(proc_cpu_ns "$INI_PID")
    out=$(vici seq "$CP_SEQ") || out='{"error": "vici seq failed"}'
    p1=$(proc_cpu_ns "$RSP_PID")
    i1=$(proc_cpu_ns "$INI_PID")
    log "$responder $auth seq: $out"
    # CPU per cycle here: a setup and its Delete.
    record section=control test=seq responder="$responder" auth="$auth" rep="$rep" \
        rsp_cpu_ms_per_setup="$(cpu_ms_per $((p1 - p0)) "$CP_SEQ")" \
        ini_cpu_ms_per_setup="$(cpu_ms_per $((i1 - i0)) "$CP_SEQ")" \
        setups_per_s="$(jq -r '.setups_per_s // 0' <<<"$out")" \
        median_ms="$(jq -r '.median_ms // 0' <<<"$out")" \
        p95_ms="$(jq -r '.p95_ms // 0' <<<"$out")" fails="$(jq -r '.fails // 0' <<<"$out")" n="$CP_SEQ"
    sleep 0.5
    rss0=$(rss_kib "$RSP_PID")
    p0=$(proc_cpu_ns "$RSP_PID")
    i0=$(proc_cpu_ns "$INI_PID")
    out=$(vici fan "$CP_SAS") || out='{"error": "vici fan failed"}'
    p1=$(proc_cpu_ns "$RSP_PID")
    i1=$(proc_cpu_ns "$INI_PID")
    sleep 1
    rss1=$(rss_kib "$RSP_PID")
    local est
    est=$(jq -r '.established // 0' <<<"$out")
    log "$responder $auth fan: $out; responder RSS ${rss0} -> ${rss1} KiB"
    record section=control test=fan responder="$responder" auth="$auth" rep="$rep" \
        setups_per_s="$(jq -r '.setups_per_s // 0' <<<"$out")" established="$est" k="$CP_SAS" \
        wall_s="$(jq -r '.wall_s // 0' <<<"$out")" \
        rsp_cpu_ms_per_setup="$(cpu_ms_per $((p1 - p0)) "$est")" \
        ini_cpu_ms_per_setup="$(cpu_ms_per $((i1 - i0)) "$est")" \
        rss_before_kib="$rss0" rss_after_kib="$rss1" \
        kib_per_sa="$(awk -v a="$rss0" -v b="$rss1" -v n="$est" 'BEGIN {printf "%.1f", n ? (b - a) / n : 0}')"
    vici down "$CP_SAS" >/dev/null || true
}

run_control() {
    local rep auth responder
    cp_certs
    for rep in $(seq "$CP_REPEAT"); do
        for auth in $CP_AUTHS; do
            for responder in vpnd strongswan; do
                log "control plane round $rep/$CP_REPEAT: $responder responder, $auth"
                cp_topology
                if [ "$responder" = vpnd ]; then
                    cp_start_vpnd_responder "$auth"
                else
                    cp_start_charon_responder "$auth"
                fi
                cp_start_initiator "$auth"
                cp_measure "$responder" "$auth" "$rep"
                cleanup
            done
        done
    done
}
