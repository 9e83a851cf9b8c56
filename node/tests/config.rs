//! Configuration parsing, validation and the resolved model, tested through the public
//! API: examples parse, and every validation error names the right line, key and reason.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::sa::{DfBit, Direction, InboundSa, OutboundSa, Protocol};
use node::config::model::{
    Auth, AuthMethod, Binding, DpdMode, Establish, IkeUserType, IpsecProtocol, Member, NextHop,
    PolicyAction, Remote,
};
use node::config::{DEFAULT_SITE_A, DEFAULT_SITE_B};
use node::runtime::spec::{RethSpec, cluster_spec};
use node::{Config, ConfigError};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const EXAMPLES: &[&str] = &[
    "site-a.toml",
    "site-b.toml",
    "hub.toml",
    "remote-access.toml",
    "policy-based.toml",
    "manual.toml",
    "cluster.toml",
];

fn example(name: &str) -> Config {
    Config::load(Path::new(DATA).join(name)).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

/// Site A with `from` replaced by `to` (which must occur exactly once).
fn site_a_with(from: &str, to: &str) -> String {
    assert_eq!(DEFAULT_SITE_A.matches(from).count(), 1, "{from:?}");
    DEFAULT_SITE_A.replace(from, to)
}

/// The 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

fn errors(text: &str) -> String {
    match Config::parse(text, "t.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that one line of the errors is at `needle`'s line and has `key` and `reason`.
#[track_caller]
fn assert_error(text: &str, needle: &str, key: &str, reason: &str) {
    let all = errors(text);
    let line = line_of(text, needle);
    let prefix = format!("t.toml:{line}:");
    assert!(
        all.lines().any(|l| l.starts_with(&prefix)
            && l.contains(&format!(": {key}: "))
            && l.contains(reason)),
        "no error at line {line} for {key} containing {reason:?}; got:\n{all}"
    );
}

// ---- examples ----

#[test]
fn every_example_parses_and_validates() {
    for name in EXAMPLES {
        example(name);
    }
    Config::parse(DEFAULT_SITE_A, "site-a").unwrap();
    Config::parse(DEFAULT_SITE_B, "site-b").unwrap();
}

#[test]
fn site_a_resolves_to_iana_numbers() {
    let c = example("site-a.toml");
    assert_eq!(c.host_name.as_deref(), Some("gw-a"));
    let gw = c.gateway("gw-b").unwrap();
    assert_eq!(
        gw.remote,
        Remote::Static(vec!["192.0.2.2".parse().unwrap()])
    );
    assert_eq!(gw.local_address, Some("192.0.2.1".parse().unwrap()));
    let [p] = &gw.ike_proposals[..] else { panic!() };
    assert_eq!((p.encr.id, p.encr.key_bits), (20, Some(128)));
    assert_eq!((p.prf, p.integ, p.dh_group), (5, None, 19));
    assert_eq!(p.auth_method, AuthMethod::PreSharedKeys);
    assert_eq!(p.lifetime, Duration::from_secs(28_800));
    let dpd = gw.dpd.unwrap();
    assert_eq!(
        (dpd.interval, dpd.threshold, dpd.mode),
        (Duration::from_secs(10), 5, DpdMode::Optimized)
    );
    assert!(matches!(&gw.auth, Auth::Psk(k) if k.expose() == b"site-a-to-site-b example key"));

    let vpn = c.vpn("to-b").unwrap();
    assert_eq!(vpn.binding, Binding::Route { unit: 0 });
    assert_eq!(vpn.gateway, "gw-b");
    assert_eq!(vpn.pfs_group, Some(19));
    assert_eq!(vpn.establish, Establish::Immediately);
    assert_eq!(vpn.options.anti_replay, Some(1024));
    assert_eq!(vpn.options.df_bit, DfBit::Clear);
    let [esp] = &vpn.ipsec_proposals[..] else {
        panic!()
    };
    assert_eq!(
        esp.encr.map(|e| e.encr_alg()),
        Some(Some(EncrAlg::AesGcm128))
    );
    assert_eq!(esp.integ, None);
    let [ts] = &vpn.traffic_selectors[..] else {
        panic!()
    };
    assert_eq!(ts.local.to_string_pair(), ("10.1.0.0".into(), 16));
    assert_eq!(ts.remote.to_string_pair(), ("10.2.0.0".into(), 16));

    assert_eq!(c.interfaces[0].name(), "st0.0");
    assert_eq!(c.routes[0].next_hop, NextHop::St0 { unit: 0 });
    assert_eq!(
        c.services.management,
        Some("127.0.0.1:50051".parse().unwrap())
    );
    assert_eq!(c.services.metrics, Some("127.0.0.1:9108".parse().unwrap()));
}

/// `(network, length)` of a prefix, to compare without constructing one.
trait PrefixPair {
    fn to_string_pair(&self) -> (String, u8);
}

impl PrefixPair for dataplane::selector::IpPrefix {
    fn to_string_pair(&self) -> (String, u8) {
        (self.network().to_string(), self.prefix_len())
    }
}

#[test]
fn site_b_mirrors_site_a() {
    let (a, b) = (example("site-a.toml"), example("site-b.toml"));
    let (ga, gb) = (&a.gateways[0], &b.gateways[0]);
    assert_eq!(ga.remote, Remote::Static(vec![gb.local_address.unwrap()]));
    assert_eq!(gb.remote, Remote::Static(vec![ga.local_address.unwrap()]));
    assert_eq!(ga.local_id, gb.remote_id);
    assert_eq!(ga.remote_id, gb.local_id);
    let (ta, tb) = (
        &a.vpns[0].traffic_selectors[0],
        &b.vpns[0].traffic_selectors[0],
    );
    assert_eq!((ta.local, ta.remote), (tb.remote, tb.local));
    match (&ga.auth, &gb.auth) {
        (Auth::Psk(x), Auth::Psk(y)) => assert_eq!(x.expose(), y.expose()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn predefined_sets_expand_in_policies() {
    let c = example("hub.toml");
    let spoke2 = c.gateway("spoke2").unwrap();
    let names: Vec<_> = spoke2
        .ike_proposals
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["pre-g2-aes128-sha", "pre-g2-3des-sha"]);
    let vpn = c.vpn("to-spoke2").unwrap();
    let names: Vec<_> = vpn
        .ipsec_proposals
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["g2-esp-3des-sha", "g2-esp-aes128-sha"]);
    assert_eq!(vpn.pfs_group, Some(2), "standard implies PFS group 2");
    assert_eq!(vpn.options.df_bit, DfBit::Copy);
    assert!(vpn.options.copy_outer_dscp);
    assert_eq!(vpn.options.anti_replay, Some(512), "global window applies");

    let spoke1 = c.gateway("spoke1").unwrap();
    assert_eq!(spoke1.ike_proposals[0].integ, Some(13));
    assert_eq!(spoke1.ike_proposals[0].prf, 6);
    assert_eq!(spoke1.dpd.unwrap().mode, DpdMode::ProbeIdleTunnel);
    assert!(matches!(&spoke1.auth, Auth::Psk(k) if k.expose() == b"key-for-spoke1"));
    let esp = &c.vpn("to-spoke1").unwrap().ipsec_proposals[0];
    assert_eq!(esp.lifetime_kilobytes, Some(10_000_000));
    assert_eq!(c.interfaces[1].mtu, Some(1400));

    // An explicit perfect-forward-secrecy wins over the set's group.
    let c = example("policy-based.toml");
    assert_eq!(c.vpns[0].pfs_group, Some(14));
    assert_eq!(c.vpns[0].ipsec_proposals.len(), 4);
}

#[test]
fn remote_access_gateway_is_dynamic_with_a_pool_and_certificates() {
    let c = example("remote-access.toml");
    let gw = c.gateway("ra-clients").unwrap();
    let Remote::Dynamic(m) = &gw.remote else {
        panic!("{:?}", gw.remote)
    };
    assert_eq!(m.user_type, IkeUserType::GroupIkeId);
    assert_eq!(m.identity.iana_type(), 3);
    assert_eq!(gw.address_pool.as_deref(), Some("ra-pool"));
    let Auth::Certificate(cert) = &gw.auth else {
        panic!()
    };
    assert_eq!(
        cert.trusted_ca,
        [Path::new(DATA).join("certs/ca.pem")],
        "relative to the file"
    );
    assert_eq!(
        gw.ike_proposals[0].prf, 6,
        "AES-256-GCM without a hash defaults to SHA-384"
    );
    assert_eq!(gw.ike_proposals[0].auth_method.iana(), 9);
    assert_eq!(gw.nat_keepalive, Duration::from_secs(10));
    let pool = c.pool("ra-pool").unwrap().inet.as_ref().unwrap();
    assert_eq!(pool.low, "10.99.0.10".parse::<IpAddr>().unwrap());
    assert_eq!(pool.dns_servers, ["10.1.0.53".parse::<IpAddr>().unwrap()]);
    assert!(c.vpn("ra").unwrap().options.esn);
}

#[test]
fn policy_based_vpn_takes_selectors_from_its_policy() {
    let c = example("policy-based.toml");
    let vpn = c.vpn("to-branch").unwrap();
    let Binding::Policy { id, policies } = &vpn.binding else {
        panic!()
    };
    assert!(*id >= node::config::model::POLICY_BINDING_BASE);
    assert_eq!(policies, &["trust/untrust/to-branch"]);
    let sels: Vec<_> = vpn
        .traffic_selectors
        .iter()
        .map(|t| (t.local.to_string_pair(), t.remote.to_string_pair()))
        .collect();
    assert_eq!(
        sels,
        [
            (("10.1.0.0".into(), 16), ("10.2.0.0".into(), 16)),
            (("10.1.0.0".into(), 16), ("10.3.0.0".into(), 16)),
        ]
    );
    assert_eq!(vpn.options.anti_replay, None);
    let actions: Vec<_> = c.policies.iter().map(|p| &p.action).collect();
    assert_eq!(
        actions,
        [
            &PolicyAction::Tunnel("to-branch".into()),
            &PolicyAction::Permit,
            &PolicyAction::Deny
        ]
    );
}

#[test]
fn manual_vpn_maps_to_an_installable_dataplane_sa_pair() {
    let c = example("manual.toml");
    let m = c.manual_vpn("manual-b").unwrap();
    let pair = m.sa_pair();
    assert_eq!(
        (pair.inbound.direction, pair.inbound.spi),
        (Direction::Inbound, 4096)
    );
    assert_eq!(
        (pair.outbound.direction, pair.outbound.spi),
        (Direction::Outbound, 4097)
    );
    assert_eq!(pair.inbound.encr, EncrAlg::AesGcm128);
    assert_eq!(pair.inbound.integ, IntegAlg::None);
    assert_ne!(*pair.inbound.encr_key, *pair.outbound.encr_key);
    assert_eq!(pair.inbound.encr_key[0], 0x00);
    assert_eq!(pair.outbound.encr_key[0], 0x10);
    assert_eq!(
        pair.inbound.key().dst,
        "192.0.2.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        pair.outbound.key().dst,
        "192.0.2.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(pair.outbound.udp_encap.map(|u| u.remote_port), Some(4500));
    assert_eq!(pair.outbound.binding, 1);
    assert_eq!(pair.outbound.df_bit, DfBit::Set);
    assert_eq!(pair.outbound.replay_window, 0);
    assert_eq!(pair.outbound.selectors.len(), 1);
    InboundSa::new(pair.inbound).unwrap();
    OutboundSa::new(pair.outbound).unwrap();

    // Junos form: one SPI, one key set, both directions.
    let m = c.manual_vpn("manual-c").unwrap();
    assert_eq!((m.spi, m.remote_spi), (300, 300));
    assert_eq!(m.protocol, IpsecProtocol::Esp);
    let pair = m.sa_pair();
    assert_eq!(pair.inbound.protocol, Protocol::Esp);
    assert_eq!(pair.inbound.integ, IntegAlg::HmacSha256_128);
    assert_eq!(*pair.inbound.integ_key, *pair.outbound.integ_key);
    assert_eq!(
        pair.inbound.integ_key.as_slice(),
        b"0123456789abcdef0123456789abcdef"
    );
    assert!(pair.inbound.udp_encap.is_none());
    InboundSa::new(pair.inbound).unwrap();
    OutboundSa::new(pair.outbound).unwrap();
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = example("site-a.toml");
    let dump = format!("{c:?}");
    assert!(!dump.contains("site-a-to-site-b"), "{dump}");
    assert!(dump.contains("redacted"));
    let c = example("hub.toml");
    assert!(!format!("{c:?}").contains("key-for-spoke2"));
    let c = example("manual.toml");
    let dump = format!("{c:?}");
    assert!(!dump.contains("0123456789abcdef"), "{dump}");
    assert!(!dump.contains("[0, 1, 2, 3"), "{dump}");
}

#[test]
fn load_reports_a_missing_file() {
    let e = Config::load("/nonexistent/vpn.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/vpn.toml: cannot read configuration"),
        "{e}"
    );
}

// ---- references ----

#[test]
fn gateway_to_undefined_ike_policy() {
    let text = site_a_with("ike-policy = \"ike-pol\"", "ike-policy = \"ike-pl\"");
    let line = line_of(&text, "ike-policy = \"ike-pl\"");
    let all = errors(&text);
    assert_eq!(
        all,
        format!(
            "t.toml:{line}:14: security.ike.gateway.gw-b.ike-policy: references undefined ike policy \"ike-pl\" (defined: ike-pol)"
        )
    );
}

#[test]
fn policy_to_undefined_proposal() {
    let text = site_a_with(
        "proposals = [\"ike-aes128gcm\"]",
        "proposals = [\"ike-aes128gcm\", \"ike-p2\"]",
    );
    assert_error(
        &text,
        "\"ike-p2\"",
        "security.ike.policy.ike-pol.proposals",
        "references undefined ike proposal \"ike-p2\" (defined: ike-aes128gcm)",
    );
    let text = site_a_with(
        "proposals = [\"esp-aes128gcm\"]",
        "proposals = [\"esp-p9\"]",
    );
    assert_error(
        &text,
        "\"esp-p9\"",
        "security.ipsec.policy.ipsec-pol.proposals",
        "references undefined ipsec proposal \"esp-p9\"",
    );
}

#[test]
fn vpn_to_undefined_gateway_and_ipsec_policy() {
    let text = site_a_with("ike.gateway = \"gw-b\"", "ike.gateway = \"gw-c\"");
    assert_error(
        &text,
        "\"gw-c\"",
        "security.ipsec.vpn.to-b.ike.gateway",
        "references undefined ike gateway \"gw-c\" (defined: gw-b)",
    );
    let text = site_a_with(
        "ike.ipsec-policy = \"ipsec-pol\"",
        "ike.ipsec-policy = \"ipsec-p\"",
    );
    assert_error(
        &text,
        "\"ipsec-p\"",
        "security.ipsec.vpn.to-b.ike.ipsec-policy",
        "references undefined ipsec policy \"ipsec-p\" (defined: ipsec-pol)",
    );
}

#[test]
fn tunnel_policy_to_undefined_or_route_based_vpn() {
    let text = format!(
        "{DEFAULT_SITE_A}\n[security.policies.from-zone.trust.to-zone.untrust.policy.p1]\n\
         match = {{ source-address = [\"any\"], destination-address = [\"any\"], application = \"any\" }}\n\
         then.permit.tunnel.ipsec-vpn = \"to-c\"\n\
         [security.policies.from-zone.trust.to-zone.untrust.policy.p2]\n\
         match = {{ source-address = [\"any\"], destination-address = [\"any\"], application = \"any\" }}\n\
         then.permit.tunnel.ipsec-vpn = \"to-b\"\n"
    );
    assert_error(
        &text,
        "\"to-c\"",
        "security.policies.from-zone.trust.to-zone.untrust.policy.p1.then.permit.tunnel.ipsec-vpn",
        "references undefined ipsec vpn \"to-c\" (defined: to-b)",
    );
    assert_error(
        &text,
        "ipsec-vpn = \"to-b\"",
        "security.policies.from-zone.trust.to-zone.untrust.policy.p2.then.permit.tunnel.ipsec-vpn",
        "is route-based",
    );
}

#[test]
fn undefined_address_pool() {
    let text = std::fs::read_to_string(Path::new(DATA).join("remote-access.toml"))
        .unwrap()
        .replace(
            "aaa.access-profile = \"ra-pool\"",
            "aaa.access-profile = \"ra-pol\"",
        );
    assert_error(
        &text,
        "access-profile = \"ra-pol\"",
        "security.ike.gateway.ra-clients.aaa.access-profile",
        "references undefined address pool \"ra-pol\" (defined: ra-pool)",
    );
}

#[test]
fn bind_interface_to_undefined_unit_and_route_to_undefined_unit() {
    let text = site_a_with("bind-interface = \"st0.0\"", "bind-interface = \"st0.7\"");
    assert_error(
        &text,
        "\"st0.7\"",
        "security.ipsec.vpn.to-b.bind-interface",
        "references undefined interface \"st0.7\" (defined: st0.0)",
    );
    let text = site_a_with("next-hop = \"st0.0\"", "next-hop = \"st0.3\"");
    assert_error(
        &text,
        "\"st0.3\"",
        "routing-options.static.route.\"10.2.0.0/16\".next-hop",
        "references undefined interface \"st0.3\"",
    );
}

// ---- algorithms ----

#[test]
fn aead_with_ipsec_authentication_algorithm_is_rejected() {
    for aead in ["aes-128-gcm", "chacha20-poly1305"] {
        let text = site_a_with(
            "encryption-algorithm = \"aes-128-gcm\"\nlifetime-seconds = 3600",
            &format!(
                "encryption-algorithm = \"{aead}\"\nauthentication-algorithm = \"hmac-sha-256-128\"\nlifetime-seconds = 3600"
            ),
        );
        assert_error(
            &text,
            "\"hmac-sha-256-128\"",
            "security.ipsec.proposal.esp-aes128gcm.authentication-algorithm",
            &format!("not allowed with encryption-algorithm {aead}"),
        );
    }
}

#[test]
fn ah_with_encryption_is_rejected() {
    let text = site_a_with("protocol = \"esp\"", "protocol = \"ah\"");
    assert_error(
        &text,
        "encryption-algorithm = \"aes-128-gcm\"\nlifetime-seconds = 3600",
        "security.ipsec.proposal.esp-aes128gcm.encryption-algorithm",
        "not allowed with protocol ah",
    );
}

#[test]
fn cbc_without_ipsec_integrity_is_rejected() {
    let text = site_a_with(
        "encryption-algorithm = \"aes-128-gcm\"\nlifetime-seconds = 3600",
        "encryption-algorithm = \"aes-128-cbc\"\nlifetime-seconds = 3600",
    );
    assert_error(
        &text,
        "[security.ipsec.proposal.esp-aes128gcm]",
        "security.ipsec.proposal.esp-aes128gcm.authentication-algorithm",
        "missing (required with a non-AEAD encryption-algorithm)",
    );
}

#[test]
fn unknown_dh_group_lists_the_accepted_ones() {
    let text = site_a_with("dh-group = \"group19\"", "dh-group = \"group3\"");
    assert_error(
        &text,
        "\"group3\"",
        "security.ike.proposal.ike-aes128gcm.dh-group",
        "unknown DH group \"group3\" (expected one of: group1, group2, group5, group14,",
    );
    let text = site_a_with("keys = \"group19\"", "keys = \"group99\"");
    assert_error(
        &text,
        "\"group99\"",
        "security.ipsec.policy.ipsec-pol.perfect-forward-secrecy.keys",
        "unknown DH group \"group99\"",
    );
}

#[test]
fn unknown_proposal_set() {
    let text = site_a_with(
        "proposals = [\"ike-aes128gcm\"]",
        "proposal-set = \"strong\"",
    );
    assert_error(
        &text,
        "\"strong\"",
        "security.ike.policy.ike-pol.proposal-set",
        "unknown proposal-set \"strong\" (expected one of: basic, compatible, standard,",
    );
}

#[test]
fn signature_proposal_with_pre_shared_key_is_rejected() {
    let text = site_a_with(
        "proposals = [\"ike-aes128gcm\"]",
        "proposal-set = \"prime-128\"",
    );
    assert_error(
        &text,
        "\"prime-128\"",
        "security.ike.policy.ike-pol.proposal-set",
        "uses a signature method but the policy authenticates with a pre-shared-key",
    );
}

#[test]
fn ikev1_with_aead_proposal_is_rejected() {
    let text = site_a_with("version = \"v2-only\"", "version = \"v1-only\"");
    assert_error(
        &text,
        "\"v1-only\"",
        "security.ike.gateway.gw-b.version",
        "IKEv1 cannot use AEAD proposal \"ike-aes128gcm\"",
    );
}

// ---- addresses ----

#[test]
fn bad_prefixes_and_addresses_are_quoted() {
    let text = site_a_with("local-ip = \"10.1.0.0/16\"", "local-ip = \"10.1.0.0/33\"");
    assert_error(
        &text,
        "\"10.1.0.0/33\"",
        "security.ipsec.vpn.to-b.traffic-selector.lan.local-ip",
        "invalid prefix \"10.1.0.0/33\"",
    );
    let text = site_a_with("remote-ip = \"10.2.0.0/16\"", "remote-ip = \"10.2.3.4/16\"");
    assert_error(
        &text,
        "\"10.2.3.4/16\"",
        "security.ipsec.vpn.to-b.traffic-selector.lan.remote-ip",
        "prefix \"10.2.3.4/16\" has host bits set (did you mean 10.2.0.0/16?)",
    );
    let text = site_a_with("address = [\"192.0.2.2\"]", "address = [\"192.0.2.300\"]");
    assert_error(
        &text,
        "\"192.0.2.300\"",
        "security.ike.gateway.gw-b.address",
        "invalid IP address \"192.0.2.300\"",
    );
    let text = site_a_with("listen = \"127.0.0.1:9108\"", "listen = \"localhost\"");
    assert_error(
        &text,
        "\"localhost\"",
        "services.metrics.listen",
        "invalid socket address \"localhost\"",
    );
}

#[test]
fn address_family_mismatches() {
    let text = site_a_with("address = [\"192.0.2.2\"]", "address = [\"2001:db8::2\"]");
    assert_error(
        &text,
        "\"2001:db8::2\"",
        "security.ike.gateway.gw-b.address",
        "address family mismatch: \"2001:db8::2\" and local-address \"192.0.2.1\"",
    );
    let text = site_a_with(
        "remote-ip = \"10.2.0.0/16\"",
        "remote-ip = \"2001:db8:2::/48\"",
    );
    assert_error(
        &text,
        "\"2001:db8:2::/48\"",
        "security.ipsec.vpn.to-b.traffic-selector.lan.remote-ip",
        "address family mismatch",
    );
    let text = site_a_with("family.inet.address", "family.inet6.address");
    assert_error(
        &text,
        "family.inet6.address",
        "interfaces.st0.unit.0.family.inet6.address",
        "address family mismatch: \"10.255.0.1/30\" in family inet6",
    );
}

// ---- tunnel options ----

#[test]
fn anti_replay_window_must_be_a_power_of_two_in_range() {
    for bad in ["1000", "32", "16384"] {
        let text = site_a_with(
            "anti-replay-window-size = 1024",
            &format!("anti-replay-window-size = {bad}"),
        );
        assert_error(
            &text,
            &format!("anti-replay-window-size = {bad}"),
            "security.ipsec.vpn.to-b.anti-replay-window-size",
            &format!("{bad} is not a power of two in 64..8192"),
        );
    }
    let text = format!("[security.ipsec]\nanti-replay-window-size = 100\n{DEFAULT_SITE_A}");
    assert_error(
        &text,
        "anti-replay-window-size = 100",
        "security.ipsec.anti-replay-window-size",
        "100 is not a power of two",
    );
}

#[test]
fn no_anti_replay_conflicts_with_a_window_size() {
    let text = site_a_with(
        "anti-replay-window-size = 1024",
        "anti-replay-window-size = 1024\nno-anti-replay = true",
    );
    assert_error(
        &text,
        "no-anti-replay = true",
        "security.ipsec.vpn.to-b.no-anti-replay",
        "conflicts with anti-replay-window-size = 1024",
    );
}

#[test]
fn one_st0_unit_cannot_serve_two_vpns() {
    let text = format!(
        "{DEFAULT_SITE_A}\n[security.ipsec.vpn.to-b2]\nbind-interface = \"st0.0\"\n\
         ike.gateway = \"gw-b\"\nike.ipsec-policy = \"ipsec-pol\"\n"
    );
    let needle =
        "bind-interface = \"st0.0\"\nike.gateway = \"gw-b\"\nike.ipsec-policy = \"ipsec-pol\"\n";
    let all = errors(&text);
    let line = text[..text.rfind(needle).unwrap()].matches('\n').count() + 1;
    assert_eq!(
        all,
        format!(
            "t.toml:{line}:18: security.ipsec.vpn.to-b2.bind-interface: st0.0 is already bound to vpn \"to-b\""
        )
    );
}

#[test]
fn dpd_ranges() {
    let text = site_a_with(
        "{ interval = 10, threshold = 5 }",
        "{ interval = 1, threshold = 6 }",
    );
    assert_error(
        &text,
        "interval = 1,",
        "security.ike.gateway.gw-b.dead-peer-detection.interval",
        "1 is out of range 2..60 seconds",
    );
    assert_error(
        &text,
        "interval = 1,",
        "security.ike.gateway.gw-b.dead-peer-detection.threshold",
        "6 is out of range 1..5",
    );
    let text = site_a_with(
        "{ interval = 10, threshold = 5 }",
        "{ interval = 61, mode = \"sometimes\" }",
    );
    assert_error(
        &text,
        "interval = 61",
        "security.ike.gateway.gw-b.dead-peer-detection.interval",
        "61 is out of range 2..60 seconds",
    );
    assert_error(
        &text,
        "interval = 61",
        "security.ike.gateway.gw-b.dead-peer-detection.mode",
        "unknown dead-peer-detection mode \"sometimes\"",
    );
}

#[test]
fn lifetime_ranges() {
    let text = site_a_with("lifetime-seconds = 28800", "lifetime-seconds = 90000");
    assert_error(
        &text,
        "lifetime-seconds = 90000",
        "security.ike.proposal.ike-aes128gcm.lifetime-seconds",
        "90000 is out of range 180..86400 seconds",
    );
    let text = site_a_with("lifetime-seconds = 3600", "lifetime-seconds = 179");
    assert_error(
        &text,
        "lifetime-seconds = 179",
        "security.ipsec.proposal.esp-aes128gcm.lifetime-seconds",
        "179 is out of range 180..86400 seconds",
    );
    let text = site_a_with(
        "lifetime-seconds = 3600",
        "lifetime-seconds = 3600\nlifetime-kilobytes = 10",
    );
    assert_error(
        &text,
        "lifetime-kilobytes = 10",
        "security.ipsec.proposal.esp-aes128gcm.lifetime-kilobytes",
        "10 is out of range 64..4294967294 kilobytes",
    );
}

// ---- authentication ----

#[test]
fn psk_and_certificate_both_or_neither() {
    let text = site_a_with(
        "pre-shared-key.ascii-text = \"site-a-to-site-b example key\"",
        "pre-shared-key.ascii-text = \"k\"\ncertificate = { local-certificate = \"a.pem\", private-key = \"a.key\", trusted-ca = [\"ca.pem\"] }",
    );
    assert_error(
        &text,
        "certificate = {",
        "security.ike.policy.ike-pol.certificate",
        "pre-shared-key and certificate are both set; choose one",
    );
    let text = site_a_with(
        "pre-shared-key.ascii-text = \"site-a-to-site-b example key\"",
        "",
    );
    assert_error(
        &text,
        "[security.ike.policy.ike-pol]",
        "security.ike.policy.ike-pol",
        "needs pre-shared-key or certificate",
    );
}

#[test]
fn bad_hexadecimal_psk() {
    let text = site_a_with(
        "pre-shared-key.ascii-text = \"site-a-to-site-b example key\"",
        "pre-shared-key.hexadecimal = \"abc\"",
    );
    assert_error(
        &text,
        "\"abc\"",
        "security.ike.policy.ike-pol.pre-shared-key.hexadecimal",
        "invalid hexadecimal key",
    );
}

// ---- manual keys ----

fn manual_text() -> String {
    std::fs::read_to_string(Path::new(DATA).join("manual.toml")).unwrap()
}

#[test]
fn manual_key_length_states_the_expected_bytes() {
    let text = manual_text().replace(
        "key.hexadecimal = \"000102030405060708090a0b0c0d0e0f10111213\"",
        "key.hexadecimal = \"000102030405060708090a0b0c0d0e0f\"",
    );
    assert_error(
        &text,
        "key.hexadecimal = \"000102030405060708090a0b0c0d0e0f\"",
        "security.ipsec.vpn.manual-b.manual.encryption.key.hexadecimal",
        "aes-128-gcm needs a 20-byte key (cipher key + 4-byte salt), got 16 bytes",
    );
    let text = manual_text().replace(
        "ascii-text = \"0123456789abcdef0123456789abcdef\"",
        "ascii-text = \"short\"",
    );
    assert_error(
        &text,
        "\"short\"",
        "security.ipsec.vpn.manual-c.manual.authentication.key.ascii-text",
        "hmac-sha-256-128 needs a 32-byte key, got 5 bytes",
    );
}

#[test]
fn manual_spi_below_256_is_rejected() {
    let text = manual_text().replace("spi = 300", "spi = 255");
    assert_error(
        &text,
        "spi = 255",
        "security.ipsec.vpn.manual-c.manual.spi",
        "255 is out of range 256..4294967295 (SPIs 1..255 are reserved)",
    );
    let text = manual_text().replace("remote-spi = 4097", "remote-spi = 0");
    assert_error(
        &text,
        "remote-spi = 0",
        "security.ipsec.vpn.manual-b.manual.remote-spi",
        "0 is out of range 256..",
    );
}

#[test]
fn manual_aead_needs_a_distinct_key_per_direction() {
    let text = manual_text().replace(
        ", remote-key.hexadecimal = \"101112131415161718191a1b1c1d1e1f20212223\"",
        "",
    );
    assert_error(
        &text,
        "key.hexadecimal = \"000102",
        "security.ipsec.vpn.manual-b.manual.encryption.remote-key",
        "would reuse AEAD nonces",
    );
}

#[test]
fn manual_aead_with_authentication_and_ah_with_encryption() {
    let text = manual_text().replace(
        "udp-encapsulation = true,",
        "udp-encapsulation = true, authentication = { algorithm = \"hmac-sha1-96\", key.hexadecimal = \"00\" },",
    );
    assert_error(
        &text,
        "authentication = { algorithm = \"hmac-sha1-96\"",
        "security.ipsec.vpn.manual-b.manual.authentication",
        "not allowed with an AEAD encryption algorithm",
    );
    let text = manual_text().replace("protocol = \"esp\"", "protocol = \"ah\"");
    assert_error(
        &text,
        "encryption = { algorithm = \"aes-128-gcm\"",
        "security.ipsec.vpn.manual-b.manual.encryption",
        "not allowed with protocol ah",
    );
}

// ---- reporting ----

#[test]
fn all_errors_are_reported_in_file_order() {
    let text = site_a_with("dh-group = \"group19\"", "dh-group = \"group3\"")
        .replace("ike-policy = \"ike-pol\"", "ike-policy = \"nope\"")
        .replace(
            "anti-replay-window-size = 1024",
            "anti-replay-window-size = 1000",
        )
        .replace("remote-ip = \"10.2.0.0/16\"", "remote-ip = \"10.2.0.0\"");
    let e = Config::parse(&text, "t.toml").unwrap_err();
    let lines: Vec<_> = e.diagnostics().iter().map(|d| d.line).collect();
    assert_eq!(
        lines,
        [
            line_of(&text, "\"group3\""),
            line_of(&text, "\"nope\""),
            line_of(&text, "= 1000"),
            line_of(&text, "remote-ip"),
        ],
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 4, "{e}");
}

#[test]
fn unknown_keys_are_rejected_with_their_position() {
    let text = site_a_with(
        "nat-keepalive = 20",
        "nat-keepalive = 20\nnat-keepalive-interval = 20",
    );
    let line = line_of(&text, "nat-keepalive-interval");
    let all = errors(&text);
    assert!(
        all.starts_with(&format!(
            "t.toml:{line}:1: security.ike.gateway.gw-b.nat-keepalive-interval: unknown field `nat-keepalive-interval`"
        )),
        "{all}"
    );
    let text = site_a_with(
        "encryption-algorithm = \"aes-128-gcm\"\nauthentication-algorithm",
        "encryption-algorithim = \"aes-128-gcm\"\nauthentication-algorithm",
    );
    assert_error(
        &text,
        "encryption-algorithim",
        "security.ike.proposal.ike-aes128gcm.encryption-algorithim",
        "unknown field `encryption-algorithim`",
    );
    // Junos' reth-count is not needed here (reths are counted from [interfaces]).
    let text = cluster_with("cluster-id = 1\n", "cluster-id = 1\nreth-count = 2\n");
    assert_error(
        &text,
        "reth-count",
        "chassis.cluster.reth-count",
        "unknown field `reth-count`",
    );
}

#[test]
fn syntax_and_type_errors_carry_positions() {
    let text = site_a_with("nat-keepalive = 20", "nat-keepalive = \"twenty\"");
    assert_error(
        &text,
        "\"twenty\"",
        "security.ike.gateway.gw-b.nat-keepalive",
        "invalid type: string \"twenty\", expected i64",
    );
    let text = site_a_with("nat-keepalive = 20", "nat-keepalive = = 20");
    let all = errors(&text);
    assert!(
        all.starts_with(&format!("t.toml:{}:", line_of(&text, "= = 20"))),
        "{all}"
    );
}

// ---- chassis cluster ----

const CLUSTER: &str = include_str!("data/cluster.toml");

/// The cluster example with `from` replaced by `to` (which must occur exactly once).
fn cluster_with(from: &str, to: &str) -> String {
    assert_eq!(CLUSTER.matches(from).count(), 1, "{from:?}");
    CLUSTER.replace(from, to)
}

/// Like [`assert_error`], and the column is that of `needle` too: the error points at
/// the very value or key.
#[track_caller]
fn assert_error_at(text: &str, needle: &str, key: &str, reason: &str) {
    assert_error_after(text, "", needle, key, reason);
}

/// [`assert_error_at`] for the first `needle` after `anchor`.
#[track_caller]
fn assert_error_after(text: &str, anchor: &str, needle: &str, key: &str, reason: &str) {
    let from = text
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor:?} not in text"));
    let at = from
        + text[from..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in text after {anchor:?}"));
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at]
        .rsplit('\n')
        .next()
        .map_or(0, |l| l.chars().count())
        + 1;
    let all = errors(text);
    let prefix = format!("t.toml:{line}:{column}: {key}: ");
    assert!(
        all.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(reason)),
        "no error {prefix}...{reason:?}; got:\n{all}"
    );
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn cluster_example_resolves() {
    let c = example("cluster.toml");
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!(cl.cluster_id, 1);
    assert_eq!(cl.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(cl.heartbeat_threshold, 3);
    assert_eq!(cl.data_directory, PathBuf::from("/var/lib/vpnd/cluster"));
    assert_eq!(
        cl.control_addresses,
        [
            (Member::Node0, addr("10.255.0.1:7400")),
            (Member::Node1, addr("10.255.0.2:7400")),
            (Member::Witness, addr("10.255.0.3:7400")),
        ]
    );
    let ids: Vec<u8> = cl.redundancy_groups.iter().map(|g| g.id).collect();
    assert_eq!(ids, [0, 1]);
    let rg0 = cl.redundancy_group(0).unwrap();
    assert_eq!((rg0.priority, rg0.preempt), ([200, 100], None));
    let rg1 = cl.redundancy_group(1).unwrap();
    assert_eq!(rg1.preempt, Some(Duration::from_secs(10)));
    assert_eq!(
        rg1.interface_monitor,
        [("reth0".to_owned(), 255), ("eth1".to_owned(), 255)]
    );
    assert_eq!(rg1.spu_weight, Some(128));
    let [ip] = &rg1.ip_monitoring[..] else {
        panic!("{:?}", rg1.ip_monitoring)
    };
    assert_eq!(ip.address, "198.51.100.254".parse::<IpAddr>().unwrap());
    assert_eq!(
        (ip.weight, ip.interval, ip.threshold),
        (255, Duration::from_secs(1), 5)
    );
    let names: Vec<&str> = c.reths.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["reth0", "reth1"]);
    assert_eq!(
        c.reth_with_address("198.51.100.1".parse().unwrap())
            .map(|r| r.redundancy_group),
        Some(1)
    );
}

#[test]
fn cluster_spec_for_each_member() {
    let c = example("cluster.toml");
    let node1 = cluster_spec(&c, Some(Member::Node1)).unwrap().unwrap();
    assert_eq!(node1.me, Member::Node1);
    assert_eq!(node1.members.len(), 3);
    assert_eq!(node1.data_dir, PathBuf::from("/var/lib/vpnd/cluster/node1"));
    assert_eq!(node1.ha.cluster_id, 1);
    assert_eq!(node1.ha.lease(), Duration::from_secs(3));
    let rg1 = node1.ha.group(1).unwrap();
    assert_eq!(rg1.priority, [200, 100]);
    assert_eq!(rg1.preempt, Some(Duration::from_secs(10)));
    assert_eq!(rg1.spu_weight, 128);
    // reth0 is monitored as this node's child interface of it.
    assert_eq!(
        rg1.interface_monitor,
        [("eth0".to_owned(), 255), ("eth1".to_owned(), 255)]
    );
    assert_eq!(rg1.ip_monitor.len(), 1);
    assert_eq!(
        node1.reths[0],
        RethSpec {
            name: "reth0".into(),
            group: 1,
            interface: "eth0".into(),
            addresses: vec![("198.51.100.1".parse().unwrap(), 24)],
        }
    );
    assert_eq!(node1.gateway_group("remote"), Some(1));
    assert_eq!(node1.ha.group(0).unwrap().spu_weight, 0, "the ha default");

    let witness = cluster_spec(&c, Some(Member::Witness)).unwrap().unwrap();
    assert_eq!(
        witness.data_dir,
        PathBuf::from("/var/lib/vpnd/cluster/witness")
    );
    assert!(witness.reths.is_empty(), "the witness carries no reth");
    let rg1 = witness.ha.group(1).unwrap();
    assert!(rg1.interface_monitor.is_empty() && rg1.ip_monitor.is_empty());
    assert_eq!(rg1.priority, [200, 100]);
}

#[test]
fn cluster_member_and_section_go_together() {
    let c = example("cluster.toml");
    let e = cluster_spec(&c, None).unwrap_err();
    assert_eq!(e.object, "chassis.cluster");
    assert!(e.reason.contains("--node node0, node1 or witness"), "{e}");
    let standalone = example("site-a.toml");
    assert_eq!(cluster_spec(&standalone, None), Ok(None));
    let e = cluster_spec(&standalone, Some(Member::Node0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--node: node0 given, but the configuration has no [chassis.cluster]"
    );
}

#[test]
fn a_witness_needs_only_the_cluster_section() {
    let end = CLUSTER.find("[interfaces.reth0]").unwrap();
    let witness = CLUSTER[..end].replace("interface-monitor.reth0.weight = 255", "");
    let c = Config::parse(&witness, "witness.toml").unwrap_or_else(|e| panic!("{e}"));
    let spec = cluster_spec(&c, Some(Member::Witness)).unwrap().unwrap();
    assert_eq!(spec.members[2], (Member::Witness, addr("10.255.0.3:7400")));
}

#[test]
fn relative_data_directory_is_resolved_against_the_file() {
    let dir = std::env::temp_dir().join(format!("cluster-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        cluster_with("\"/var/lib/vpnd/cluster\"", "\"state\""),
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(c.cluster.unwrap().data_directory, dir.join("state"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cluster_ranges() {
    for (from, to, needle, key, reason) in [
        (
            "cluster-id = 1",
            "cluster-id = 256",
            "256",
            "chassis.cluster.cluster-id",
            "256 is out of range 1..255",
        ),
        (
            "heartbeat-interval = 1000",
            "heartbeat-interval = 50",
            "50",
            "chassis.cluster.heartbeat-interval",
            "50 is out of range 100..2000 milliseconds",
        ),
        (
            "heartbeat-threshold = 3",
            "heartbeat-threshold = 9",
            "9",
            "chassis.cluster.heartbeat-threshold",
            "9 is out of range 3..8",
        ),
        (
            "preempt = { delay = 10 }",
            "preempt = { delay = 0 }",
            "0 }",
            "chassis.cluster.redundancy-group.1.preempt.delay",
            "0 is out of range 1..21600 seconds",
        ),
        (
            "spu-weight = 128",
            "spu-weight = 256",
            "256",
            "chassis.cluster.redundancy-group.1.spu-weight",
            "256 is out of range 0..255",
        ),
        (
            "interface-monitor.eth1.weight = 255",
            "interface-monitor.eth1.weight = -1",
            "-1",
            "chassis.cluster.redundancy-group.1.interface-monitor.eth1.weight",
            "-1 is out of range 0..255",
        ),
        (
            "retry-count = 5",
            "retry-count = 4",
            "4\n",
            "chassis.cluster.redundancy-group.1.ip-monitoring.retry-count",
            "4 is out of range 5..15",
        ),
        (
            "retry-interval = 1",
            "retry-interval = 31",
            "31",
            "chassis.cluster.redundancy-group.1.ip-monitoring.retry-interval",
            "31 is out of range 1..30 seconds",
        ),
    ] {
        assert_error_after(&cluster_with(from, to), to, needle, key, reason);
    }
}

#[test]
fn redundancy_group_priorities() {
    // The second occurrence: group 1's node0 priority.
    let at = CLUSTER.rfind("node.0.priority = 200").unwrap();
    let text = format!(
        "{}node.0.priority = 255{}",
        &CLUSTER[..at],
        &CLUSTER[at + "node.0.priority = 200".len()..]
    );
    assert_error_after(
        &text,
        "node.0.priority = 255",
        "255",
        "chassis.cluster.redundancy-group.1.node.0.priority",
        "255 is out of range 1..254",
    );
    let text = cluster_with(
        "[chassis.cluster.redundancy-group.0]\nnode.0.priority = 200\n",
        "[chassis.cluster.redundancy-group.0]\nnode.0.priority = 0\n",
    );
    assert_error_at(
        &text,
        "0\nnode.1",
        "chassis.cluster.redundancy-group.0.node.0.priority",
        "0 is out of range 1..254",
    );
    // A missing priority is reported at the group's header.
    let text = cluster_with(
        "[chassis.cluster.redundancy-group.0]\nnode.0.priority = 200\nnode.1.priority = 100\n",
        "[chassis.cluster.redundancy-group.0]\nnode.0.priority = 200\n",
    );
    assert_error_after(
        &text,
        "redundancy-group.0]",
        "0]",
        "chassis.cluster.redundancy-group.0.node.1.priority",
        "missing (required)",
    );
    let text = cluster_with(
        "node.1.priority = 100\npreempt",
        "node.1.priority = 100\nnode.2.priority = 50\npreempt",
    );
    assert_error_at(
        &text,
        "2.priority",
        "chassis.cluster.redundancy-group.1.node.2",
        "unknown node \"2\" (expected 0 or 1: the witness owns no group)",
    );
}

#[test]
fn redundancy_group_numbers_and_group_zero() {
    let text = cluster_with(
        "[chassis.cluster.redundancy-group.0]",
        "[chassis.cluster.redundancy-group.2]",
    );
    assert_error_at(
        &text,
        "[chassis.cluster]",
        "chassis.cluster.redundancy-group.0",
        "missing (redundancy group 0, the control plane, is required)",
    );
    let text = cluster_with(
        "[chassis.cluster.redundancy-group.1]",
        "[chassis.cluster.redundancy-group.01]",
    );
    assert_error_at(
        &text,
        "01]",
        "chassis.cluster.redundancy-group.01",
        "invalid redundancy group \"01\" (expected a number 0..128)",
    );
    let text = cluster_with(
        "[chassis.cluster.redundancy-group.0]",
        "[chassis.cluster.redundancy-group.129]",
    );
    assert_error_at(
        &text,
        "129",
        "chassis.cluster.redundancy-group.129",
        "invalid redundancy group \"129\" (expected a number 0..128)",
    );
    // Group 0 is the control plane: no preempt, no monitoring (as in Junos).
    let text = cluster_with(
        "[chassis.cluster.redundancy-group.0]\nnode.0.priority = 200\nnode.1.priority = 100\n",
        "[chassis.cluster.redundancy-group.0]\nnode.0.priority = 200\nnode.1.priority = 100\npreempt = {}\ninterface-monitor.eth9.weight = 10\n",
    );
    assert_error_at(
        &text,
        "{}",
        "chassis.cluster.redundancy-group.0.preempt",
        "not allowed in redundancy group 0",
    );
    assert_error_at(
        &text,
        "eth9",
        "chassis.cluster.redundancy-group.0.interface-monitor",
        "not allowed in redundancy group 0",
    );
}

#[test]
fn bare_preempt_takes_the_junos_delay() {
    let text = cluster_with("preempt = { delay = 10 }", "preempt = {}");
    let c = Config::parse(&text, "t.toml").unwrap();
    let rg1 = c.cluster.unwrap().redundancy_groups[1].clone();
    assert_eq!(rg1.preempt, Some(Duration::from_secs(1)));
}

#[test]
fn every_member_needs_a_control_address() {
    let text = cluster_with(
        "[chassis.cluster.witness]\ncontrol-address = \"10.255.0.3:7400\"\n",
        "",
    );
    assert_error_at(
        &text,
        "[chassis.cluster]",
        "chassis.cluster.witness.control-address",
        "missing (witness's cluster link address is required)",
    );
    let text = cluster_with(
        "[chassis.cluster.node.1]\ncontrol-address = \"10.255.0.2:7400\"\n",
        "[chassis.cluster.node.1]\n",
    );
    assert_error_at(
        &text,
        "1]\n",
        "chassis.cluster.node.1.control-address",
        "missing (required)",
    );
    let text = cluster_with("\"10.255.0.2:7400\"", "\"10.255.0.2\"");
    assert_error_at(
        &text,
        "\"10.255.0.2\"",
        "chassis.cluster.node.1.control-address",
        "invalid socket address \"10.255.0.2\" (expected address:port)",
    );
    let text = cluster_with("\"10.255.0.2:7400\"", "\"0.0.0.0:7400\"");
    assert_error_at(
        &text,
        "\"0.0.0.0:7400\"",
        "chassis.cluster.node.1.control-address",
        "must be a reachable address and port",
    );
    let text = cluster_with("\"10.255.0.3:7400\"", "\"10.255.0.1:7400\"");
    assert_error_at(
        &text,
        "\"10.255.0.1:7400\"\n\n# The control",
        "chassis.cluster.witness.control-address",
        "10.255.0.1:7400 is already the control-address of node0",
    );
    let text = cluster_with("[chassis.cluster.node.1]", "[chassis.cluster.node.2]");
    assert_error_at(
        &text,
        "2]",
        "chassis.cluster.node.2",
        "unknown node \"2\" (expected 0 or 1; the third member is [chassis.cluster.witness])",
    );
}

#[test]
fn reth_references_and_shape() {
    let text = cluster_with(
        "description = \"LAN\"\nredundant-ether-options.redundancy-group = 1",
        "description = \"LAN\"\nredundant-ether-options.redundancy-group = 2",
    );
    assert_error_at(
        &text,
        "2\nchild",
        "interfaces.reth1.redundant-ether-options.redundancy-group",
        "references undefined redundancy group 2 (defined: 0, 1)",
    );
    let text = cluster_with(
        "description = \"LAN\"\nredundant-ether-options.redundancy-group = 1",
        "description = \"LAN\"\nredundant-ether-options.redundancy-group = 0",
    );
    assert_error_at(
        &text,
        "0\nchild",
        "interfaces.reth1.redundant-ether-options.redundancy-group",
        "redundancy group 0 is the control plane; a reth belongs to group 1 or above",
    );
    assert_eq!(errors(&text).lines().count(), 1, "{}", errors(&text));
    let text = cluster_with(
        "child-interface = { node0 = \"eth1\", node1 = \"eth1\" }",
        "child-interface = { node0 = \"eth1\" }",
    );
    assert_error_at(
        &text,
        "{ node0 = \"eth1\" }",
        "interfaces.reth1.child-interface.node1",
        "missing (required)",
    );
    let text = cluster_with(
        "unit.0.family.inet.address = \"10.1.0.1/16\"",
        "unit.1.family.inet.address = \"10.1.0.1/16\"",
    );
    assert_error_at(
        &text,
        "1.family",
        "interfaces.reth1.unit.1",
        "only unit 0 is supported",
    );
    let text = cluster_with("\"10.1.0.1/16\"", "\"198.51.100.1/24\"");
    assert_error_at(
        &text,
        "\"198.51.100.1/24\"\n\n[security",
        "interfaces.reth1.unit.0.family.inet.address",
        "198.51.100.1 is already an address of reth0",
    );
    let text = cluster_with("[interfaces.reth1]", "[interfaces.eth1]");
    assert_error_at(
        &text,
        "eth1]",
        "interfaces.eth1",
        "unknown interface \"eth1\" (expected st0 or reth0..reth127",
    );
    let text = cluster_with(
        "interface-monitor.reth0.weight",
        "interface-monitor.reth7.weight",
    );
    assert_error_at(
        &text,
        "reth7",
        "chassis.cluster.redundancy-group.1.interface-monitor.reth7",
        "references undefined reth interface \"reth7\" (defined: reth0, reth1)",
    );
}

#[test]
fn reths_need_a_cluster() {
    let text = format!(
        "{DEFAULT_SITE_A}\n[interfaces.reth0]\nredundant-ether-options.redundancy-group = 1\n"
    );
    assert_error_at(
        &text,
        "reth0]",
        "interfaces.reth0",
        "redundant Ethernet interfaces need a chassis cluster ([chassis.cluster])",
    );
}

#[test]
fn ip_monitoring_addresses() {
    let text = cluster_with(
        "family.inet.\"198.51.100.254\".weight = 255",
        "family.inet.\"2001:db8::1\".weight = 255",
    );
    assert_error_at(
        &text,
        "\"2001:db8::1\"",
        "chassis.cluster.redundancy-group.1.ip-monitoring.family.inet.\"2001:db8::1\"",
        "address family mismatch: \"2001:db8::1\" in family inet",
    );
    let text = cluster_with(
        "family.inet.\"198.51.100.254\".weight = 255",
        "family.inet.\"198.51.100.254\" = {}",
    );
    assert_error_at(
        &text,
        "\"198.51.100.254\" = {}",
        "chassis.cluster.redundancy-group.1.ip-monitoring.family.inet.\"198.51.100.254\".weight",
        "missing (required)",
    );
}

#[test]
fn clustered_tunnels_must_use_reth_addresses() {
    let text = cluster_with(
        "local-address = \"198.51.100.1\"",
        "local-address = \"192.0.2.1\"",
    );
    assert_error_at(
        &text,
        "\"192.0.2.1\"",
        "security.ike.gateway.remote.local-address",
        "192.0.2.1 is not a reth address: in a chassis cluster a tunnel's local address must move with its redundancy group (reth addresses: 198.51.100.1 (reth0), 10.1.0.1 (reth1))",
    );
    let text = cluster_with(
        "local-address = \"198.51.100.1\"   # reth0: moves with redundancy group 1\n",
        "",
    );
    assert_error_at(
        &text,
        "remote]",
        "security.ike.gateway.remote.local-address",
        "missing (required in a chassis cluster",
    );
}

#[test]
fn cluster_section_is_required_whole() {
    let text = cluster_with("cluster-id = 1\n", "");
    assert_error_at(
        &text,
        "[chassis.cluster]",
        "chassis.cluster.cluster-id",
        "missing (required)",
    );
}

/// `vpnd check` with and without `--node` / `VPND_NODE`: no root needed.
#[test]
fn vpnd_takes_the_member_from_the_command_line() {
    let vpnd = |args: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vpnd"));
        cmd.args(args).env_remove("VPND_NODE");
        if let Some(node) = env {
            cmd.env("VPND_NODE", node);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cluster = format!("{DATA}/cluster.toml");
    let site_a = format!("{DATA}/site-a.toml");
    let (ok, _, err) = vpnd(&["--config", &cluster, "check"], None);
    assert!(!ok);
    assert!(
        err.contains("chassis.cluster: the configuration is for a chassis cluster: say which member this is with --node node0, node1 or witness (or VPND_NODE)"),
        "{err}"
    );
    let (ok, out, err) = vpnd(&["--config", &cluster, "--node", "node1", "check"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("chassis cluster 1 member node1 (2 redundancy groups, 2 reth interfaces)"),
        "{out}"
    );
    let (ok, out, err) = vpnd(&["--config", &cluster, "check"], Some("witness"));
    assert!(ok, "{err}");
    assert!(
        out.contains("member witness (2 redundancy groups, 0 reth"),
        "{out}"
    );
    let (ok, _, err) = vpnd(&["--config", &site_a, "--node", "node0", "check"], None);
    assert!(!ok);
    assert!(
        err.contains("--node: node0 given, but the configuration has no [chassis.cluster]"),
        "{err}"
    );
    let (ok, _, err) = vpnd(&["--config", &cluster, "--node", "node2", "check"], None);
    assert!(!ok);
    assert!(err.contains("unknown cluster member \"node2\""), "{err}");
}

#[test]
fn vpn_mode_key_log_and_initial_contact_reach_the_engine() {
    use ike::engine::IpsecMode;
    use node::runtime::NodeSpec;
    let text = site_a_with(
        "df-bit = \"clear\"",
        "df-bit = \"clear\"\nmode = \"transport\"",
    ) + "\n[security.ike.traceoptions]\nkey-log = \"/var/log/vpnd-keys\"\n";
    let cfg = Config::parse(&text, "t.toml").unwrap();
    assert_eq!(cfg.key_log, Some(PathBuf::from("/var/log/vpnd-keys")));
    let spec = NodeSpec::from_config(&cfg, 1).unwrap();
    let g = &spec.gateways[0];
    assert_eq!(g.ike.child_mode, IpsecMode::Transport);
    assert!(g.ike.key_log && g.key_log.is_some());
    // The only VPN to its peer: when it has no IKE SA, the node has none with the peer.
    assert!(g.ike.initial_contact);
    // Defaults: tunnel mode, no key log.
    let plain = NodeSpec::from_config(&example("site-a.toml"), 1).unwrap();
    let g = &plain.gateways[0];
    assert_eq!(g.ike.child_mode, IpsecMode::Tunnel);
    assert!(!g.ike.key_log && g.key_log.is_none());

    // A second VPN to the same peer: neither may claim to be the only contact.
    let two = DEFAULT_SITE_A.to_owned()
        + "\n[security.ipsec.vpn.to-b-again]\nbind-interface = \"st0.1\"\n\
           ike.gateway = \"gw-b\"\nike.ipsec-policy = \"ipsec-pol\"\n\
           \n[interfaces.st0.unit.1]\nfamily.inet.address = \"10.255.1.1/30\"\n";
    let spec = NodeSpec::from_config(&Config::parse(&two, "t.toml").unwrap(), 1).unwrap();
    assert_eq!(spec.gateways.len(), 2);
    assert!(spec.gateways.iter().all(|g| !g.ike.initial_contact));
}

#[test]
fn bad_mode_and_relative_key_log_are_errors() {
    let text = site_a_with("df-bit = \"clear\"", "df-bit = \"clear\"\nmode = \"beet\"");
    assert_error(
        &text,
        "mode = \"beet\"",
        "security.ipsec.vpn.to-b.mode",
        "unknown mode \"beet\" (expected one of: tunnel, transport)",
    );
    let text = DEFAULT_SITE_A.to_owned() + "\n[security.ike.traceoptions]\nkey-log = \"keys\"\n";
    assert_error(
        &text,
        "key-log = \"keys\"",
        "security.ike.traceoptions.key-log",
        "must be an absolute directory path",
    );
}

#[test]
fn force_udp_encapsulation_reaches_the_ike_config() {
    let plain = Config::parse(DEFAULT_SITE_A, "site-a").unwrap();
    assert!(!plain.gateway("gw-b").unwrap().force_encap);
    let text = site_a_with(
        "nat-keepalive = 20",
        "nat-keepalive = 20\nforce-udp-encapsulation = true",
    );
    let c = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(c.gateway("gw-b").unwrap().force_encap);
    let spec = node::runtime::NodeSpec::from_config(&c, 1).unwrap();
    assert!(spec.gateways[0].ike.force_encap);
}

/// `protocol = "ah"` proposals are negotiated by IKE as AH suites (integrity and ESN,
/// no cipher), and refused beside `force-udp-encapsulation`: AH has no UDP
/// encapsulation.
#[test]
fn ah_proposals_reach_the_ike_config() {
    use ike::engine::ChildSuite;
    let ah = site_a_with(
        "protocol = \"esp\"\nencryption-algorithm = \"aes-128-gcm\"",
        "protocol = \"ah\"\nauthentication-algorithm = \"hmac-sha-256-128\"",
    );
    let c = Config::parse(&ah, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let spec = node::runtime::NodeSpec::from_config(&c, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        spec.gateways[0].ike.child_suites,
        vec![ChildSuite::Ah {
            integ: ike::crypto::Integ::HmacSha256_128,
            esn: false,
        }]
    );
    let forced = ah.replace(
        "nat-keepalive = 20",
        "nat-keepalive = 20\nforce-udp-encapsulation = true",
    );
    let c = Config::parse(&forced, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let e = node::runtime::NodeSpec::from_config(&c, 1).unwrap_err();
    assert!(e.to_string().contains("AH has no UDP encapsulation"), "{e}");
}

#[test]
fn manual_key_vpns_are_refused_in_a_chassis_cluster() {
    let cluster = std::fs::read_to_string(Path::new(DATA).join("cluster.toml")).unwrap();
    let manual = manual_text();
    let start = manual.find("[security.ipsec.vpn.manual-b]").unwrap();
    let vpn: String = manual[start..]
        .lines()
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{cluster}\n{vpn}\n");
    let Err(e) = Config::parse(&text, "t.toml") else {
        panic!("a manual-key VPN was accepted in a chassis cluster");
    };
    let e = e.to_string();
    assert!(
        e.contains("security.ipsec.vpn.manual-b.manual")
            && e.contains("not supported in a chassis cluster"),
        "{e}"
    );
}

#[test]
fn dial_up_gateways_are_refused_in_a_chassis_cluster() {
    let cluster = std::fs::read_to_string(Path::new(DATA).join("cluster.toml")).unwrap();
    let text = cluster
        .replace(
            "address = [\"203.0.113.2\"]",
            "dynamic.hostname = \"remote.example.net\"",
        )
        .replace("establish-tunnels = \"immediately\"\n", "");
    assert_ne!(text, cluster);
    assert_error(
        &text,
        "dynamic.hostname",
        "security.ike.gateway.remote.dynamic",
        "dial-up (dynamic) gateways are not supported in a chassis cluster yet",
    );
}

#[test]
fn vpn_monitor_options_default_to_junos_and_are_range_checked() {
    let site_a = Config::parse(DEFAULT_SITE_A, "a.toml").expect("site A");
    assert_eq!(site_a.vpn_monitor_options.interval, Duration::from_secs(10));
    assert_eq!(site_a.vpn_monitor_options.threshold, 10);
    let set = format!(
        "{DEFAULT_SITE_A}\n[security.ipsec.vpn-monitor-options]\ninterval = 2\nthreshold = 3\n"
    );
    let c = Config::parse(&set, "t.toml").expect("in range");
    assert_eq!(c.vpn_monitor_options.interval, Duration::from_secs(2));
    assert_eq!(c.vpn_monitor_options.threshold, 3);
    let bad = format!(
        "{DEFAULT_SITE_A}\n[security.ipsec.vpn-monitor-options]\ninterval = 1\nthreshold = 17\n"
    );
    assert_error(
        &bad,
        "interval = 1\nthreshold = 17",
        "security.ipsec.vpn-monitor-options.interval",
        "out of range 2..3600",
    );
    assert_error(
        &bad,
        "threshold = 17",
        "security.ipsec.vpn-monitor-options.threshold",
        "out of range 1..16",
    );
}
