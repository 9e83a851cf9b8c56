//! Remote access through a dial-up gateway, with strongSwan's charon as the road
//! warrior (a real client that asks for a virtual IP over CP):
//!
//! ```text
//! lan-a 10.1.0.10 ── 10.1.0.1 gw-a 192.0.2.1 ── 192.0.2.2 gw-b (charon, vip 10.99.0.x)
//!                          (vpnd, pool 10.99.0.0/24)
//! ```
//!
//! Needs root (namespaces, TUN) and strongSwan with kernel-libipsec (installed by
//! `.ci/run`); without them the test fails saying what is missing.

use std::time::{Duration, Instant};

use lab as common;
use lab::strongswan::{self, Charon};
use lab::{LAN_A_HOST, Lab, Vpnctl, WorkDir};

const VPND: &str = env!("CARGO_BIN_EXE_vpnd");
const VPNCTL: &str = env!("CARGO_BIN_EXE_vpnctl");
const PSK: &str = "road warriors example key";

/// gw-a: a dial-up gateway for anyone@example.net (group IKE ID, PSK) handing out
/// 10.99.0.10-200, LAN 10.1.0.0/16 behind it.
fn gateway_config() -> String {
    format!(
        r#"[system]
host-name = "gw-a"

[security.ike.proposal.ike-aes128gcm]
authentication-method = "pre-shared-keys"
dh-group = "group19"
encryption-algorithm = "aes-128-gcm"
authentication-algorithm = "sha-256"

[security.ike.policy.ra-pol]
proposals = ["ike-aes128gcm"]
pre-shared-key.ascii-text = "{PSK}"

[security.ike.gateway.ra-clients]
ike-policy = "ra-pol"
dynamic.user-at-hostname = "example.net"
dynamic.ike-user-type = "group-ike-id"
local-address = "192.0.2.1"
local-identity.hostname = "gw-a.example.net"
aaa.access-profile = "ra-pool"

[security.ipsec.proposal.esp-aes128gcm]
protocol = "esp"
encryption-algorithm = "aes-128-gcm"

[security.ipsec.policy.ra-ipsec]
proposals = ["esp-aes128gcm"]

[security.ipsec.vpn.ra]
bind-interface = "st0.0"
ike.gateway = "ra-clients"
ike.ipsec-policy = "ra-ipsec"
traffic-selector.corp = {{ local-ip = "10.1.0.0/16", remote-ip = "10.99.0.0/24" }}

[security.address-pools.ra-pool]
family.inet = {{ network = "10.99.0.0/24", range = {{ low = "10.99.0.10", high = "10.99.0.200" }}, dns-server = ["10.1.0.53"] }}

[interfaces.st0.unit.0]
family.inet.address = "10.99.0.1/24"

[services.management]
listen = "127.0.0.1:50051"
"#
    )
}

/// A charon road warrior at `local` whose connections are `(name, identity)`, each
/// asking for a virtual IP.
fn road_warrior_config(local: &str, clients: &[(&str, &str)]) -> String {
    let conn = |name: &str, id: &str| {
        format!(
            "    {name} {{
        version = 2
        local_addrs = {local}
        remote_addrs = 192.0.2.1
        vips = 0.0.0.0
        proposals = aes128gcm16-prfsha256-ecp256
        encap = yes
        mobike = no
        local {{
            auth = psk
            id = {id}
        }}
        remote {{
            auth = psk
            id = gw-a.example.net
        }}
        children {{
            corp {{
                remote_ts = 10.1.0.0/16
                esp_proposals = aes128gcm16
                start_action = none
            }}
        }}
    }}
"
        )
    };
    let secret = |name: &str, id: &str| {
        format!(
            "    ike-{name} {{
        id-1 = {id}
        id-2 = gw-a.example.net
        secret = \"{PSK}\"
    }}
"
        )
    };
    let conns: String = clients.iter().map(|(n, id)| conn(n, id)).collect();
    let secrets: String = clients.iter().map(|(n, id)| secret(n, id)).collect();
    format!("connections {{\n{conns}}}\nsecrets {{\n{secrets}}}\n")
}

/// charon's `--list-sas` shows the virtual IP `vip` and a child SA between it and the
/// gateway's LAN.
fn narrowed_to(sas: &str, vip: &str) -> bool {
    let lines: Vec<&str> = sas.lines().map(str::trim).collect();
    lines.iter().any(|l| l.ends_with(&format!("[{vip}]")))
        && lines.contains(&format!("local  {vip}/32").as_str())
        && lines.contains(&"remote 10.1.0.0/16")
}

/// Pings the LAN host behind the gateway from virtual IP `vip` in namespace `ns`.
fn ping_from(lab: &Lab, ns: &str, vip: &str) -> Result<(), String> {
    let out = lab
        .ns(ns)
        .exec(
            "ping",
            &["-c", "5", "-i", "0.2", "-w", "10", "-I", vip, LAN_A_HOST],
        )
        .map_err(|e| format!("{e:#}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Road warriors in the group get 10.99.0.10 and .11 from the pool over CP and reach
/// the LAN behind the gateway from them at the same time (each client's traffic goes to
/// its own SAs), and show up on the gateway as peers of the dial-up gateway; one outside
/// the group is refused (AUTHENTICATION_FAILED); after a client leaves, its gateway is
/// gone and its address is handed out again.
#[test]
fn netns_remote_access_client_gets_an_address() {
    assert!(common::is_root(), "{}", common::ROOT_HINT);
    assert!(strongswan::available(), "{}", strongswan::INSTALL_HINT);
    let _serial = common::netns_test_lock().unwrap_or_else(|e| panic!("{e:#}"));
    let pid = std::process::id();
    let dir = WorkDir::create(&format!("vpnd-ra-{pid}")).expect("work directory");
    let mut lab: Lab =
        common::site_to_site(VPND, &format!("ra{pid}"), dir).expect("site-to-site topology");
    let pki = lab.dir.path.join("pki");
    node::mgmt::pki::init(&pki, &[], false).expect("vpnctl pki init");
    lab.daemon_args = vec!["--pki".into(), pki.display().to_string()];
    lab.start_vpnd("gw-a", &gateway_config())
        .expect("vpnd gw-a");
    lab.daemon("gw-a")
        .wait_log(&["vpnd running"], 1, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // A second road warrior on a link of its own.
    lab.add_router("rw2").expect("namespace rw2");
    lab.link(
        ("rw2", "wan0", "198.51.100.2/24"),
        ("gw-a", "wan1", "198.51.100.1/24"),
    )
    .expect("link rw2-gw-a");
    lab.ns("rw2")
        .ip(&["route", "add", "default", "via", "198.51.100.1"])
        .expect("rw2 default route");
    let charon = Charon::start(
        &lab.ns_name("gw-b"),
        lab.dir.path.join("charon"),
        &road_warrior_config(
            "192.0.2.2",
            &[
                ("alice", "alice@example.net"),
                ("mallory", "mallory@example.org"),
            ],
        ),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let bob = Charon::start(
        &lab.ns_name("rw2"),
        lab.dir.path.join("charon-bob"),
        &road_warrior_config("198.51.100.2", &[("bob", "bob@example.net")]),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let initiate = |conn: &str| {
        charon
            .swanctl(&["--initiate", "--child", "corp", "--ike", conn])
            .expect("swanctl --initiate")
    };

    let out = initiate("alice");
    let sas = charon.list_sas().unwrap_or_default();
    assert!(
        out.status.success(),
        "alice: {}\n{sas}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.logs(),
        charon.tail(40)
    );
    assert!(
        narrowed_to(&sas, "10.99.0.10"),
        "alice's child SA is not narrowed to her pool address: {sas}"
    );
    let out = bob
        .swanctl(&["--initiate", "--child", "corp", "--ike", "bob"])
        .expect("swanctl --initiate");
    let bob_sas = bob.list_sas().unwrap_or_default();
    assert!(out.status.success(), "bob: {bob_sas}\n{}", lab.logs());
    assert!(narrowed_to(&bob_sas, "10.99.0.11"), "{bob_sas}");
    // Both at once: each client's traffic must find its own SAs.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ping_from(&lab, "gw-b", "10.99.0.10"));
        let b = s.spawn(|| ping_from(&lab, "rw2", "10.99.0.11"));
        (
            a.join().expect("alice's ping"),
            b.join().expect("bob's ping"),
        )
    });
    assert!(
        a.is_ok() && b.is_ok(),
        "alice: {a:?}\nbob: {b:?}\n{}",
        lab.logs()
    );

    let ctl = Vpnctl::new(VPNCTL, &pki);
    let ike = ctl
        .json(
            &lab.ns_name("gw-a"),
            &["show", "security", "ike", "security-associations"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let peers: Vec<&serde_json::Value> = ike
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|sa| sa["gateway"] == "ra-clients")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(peers.len(), 2, "{ike}");
    for client in ["192.0.2.2:", "198.51.100.2:"] {
        assert!(
            peers
                .iter()
                .any(|p| p["remote"].as_str().is_some_and(|r| r.starts_with(client))),
            "{client}: {ike}"
        );
    }

    // Each client is a tunnel of its own, anchored by itself, through st0.policy.
    let map = ctl
        .json(
            &lab.ns_name("gw-a"),
            &["show", "security", "ike", "tunnel-map"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let tunnels = map
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["gateway"] == "ra-clients" && t["tunnel"] == "st0.policy")
                .count()
        })
        .unwrap_or_default();
    assert_eq!(tunnels, 2, "{map}");

    let out = initiate("mallory");
    assert!(
        !out.status.success(),
        "mallory@example.org is outside the group and must be refused: {}",
        charon.list_sas().unwrap_or_default()
    );
    assert!(
        !lab.daemon("gw-a").log_text().contains("10.99.0.11"),
        "an address was handed to a refused client"
    );

    let out = charon
        .swanctl(&["--terminate", "--ike", "alice"])
        .expect("swanctl --terminate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("alice's gateway to end", Duration::from_secs(10), || {
        ctl.json(
            &lab.ns_name("gw-a"),
            &["show", "security", "ike", "security-associations"],
        )
        .is_ok_and(|v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .filter(|sa| {
                        sa["remote"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("192.0.2.2:"))
                    })
                    .count()
                    == 0
            })
        })
    });
    ping_from(&lab, "rw2", "10.99.0.11").unwrap_or_else(|e| panic!("bob after alice left: {e}"));
    let out = initiate("alice");
    let sas = charon.list_sas().unwrap_or_default();
    assert!(out.status.success(), "alice again: {sas}\n{}", lab.logs());
    assert!(
        narrowed_to(&sas, "10.99.0.10"),
        "the address was not released: {sas}"
    );
    ping_from(&lab, "gw-b", "10.99.0.10").unwrap_or_else(|e| panic!("alice again: {e}"));
}
