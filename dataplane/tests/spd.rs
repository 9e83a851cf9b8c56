//! SPD and traffic-selector behaviour: ordering, ports, ICMP, IPv6 extension headers,
//! fragments, prefix edge cases and cache invalidation.

use std::net::IpAddr;

use dataplane::selector::{FlowKey, IpPrefix, IpRange, PortRange, Selector, SelectorError, proto};
use dataplane::spd::{LookupCache, Policy, PolicyAction, Spd, SpdError};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pfx(s: &str) -> IpPrefix {
    s.parse().unwrap()
}

fn policy(name: &str, selector: Selector, action: PolicyAction) -> Policy {
    Policy {
        name: name.to_owned(),
        selector,
        action,
    }
}

/// An IPv4 packet with the given protocol, flags/offset field and payload.
fn ipv4(src: &str, dst: &str, protocol: u8, frag_field: u16, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        panic!("not IPv4")
    };
    let total = 20 + payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag_field.to_be_bytes());
    p.extend_from_slice(&[64, protocol, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet whose extension headers are `exts` (type, length in bytes), then `upper`.
fn ipv6(src: &str, dst: &str, exts: &[(u8, usize)], upper: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
        panic!("not IPv6")
    };
    let mut body = Vec::new();
    for (i, (_, len)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(upper, |e| e.0);
        let mut h = vec![0u8; *len];
        h[0] = next;
        h[1] = (len / 8 - 1) as u8;
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(payload);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(exts.first().map_or(upper, |e| e.0));
    p.push(64);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&body);
    p
}

fn ports(sp: u16, dp: u16) -> Vec<u8> {
    let mut v = sp.to_be_bytes().to_vec();
    v.extend_from_slice(&dp.to_be_bytes());
    v.extend_from_slice(&[0; 16]);
    v
}

fn lan_to_dc() -> Selector {
    Selector::new(pfx("10.1.0.0/16"), pfx("192.168.0.0/16"))
}

#[test]
fn empty_spd_denies_everything() {
    let spd = Spd::new();
    let k = FlowKey::new(ip("10.1.1.1"), ip("192.168.1.1"), proto::TCP, 1, 2);
    assert!(spd.lookup(&k).is_none());
}

#[test]
fn discard_before_protect_shadows_it() {
    let mut spd = Spd::new();
    let telnet = lan_to_dc()
        .with_protocol(proto::TCP)
        .with_dst_ports(PortRange::single(23));
    spd.push(policy("no-telnet", telnet, PolicyAction::Discard))
        .unwrap();
    spd.push(policy("vpn", lan_to_dc(), PolicyAction::Protect(7)))
        .unwrap();
    let telnet_key = FlowKey::new(ip("10.1.2.3"), ip("192.168.9.9"), proto::TCP, 40000, 23);
    let ssh_key = FlowKey::new(ip("10.1.2.3"), ip("192.168.9.9"), proto::TCP, 40000, 22);
    assert_eq!(
        spd.lookup(&telnet_key).unwrap().action,
        PolicyAction::Discard
    );
    assert_eq!(
        spd.lookup(&ssh_key).unwrap().action,
        PolicyAction::Protect(7)
    );

    // Moving the protect policy in front shadows the discard instead.
    let vpn = spd.remove("vpn").unwrap();
    spd.insert(0, vpn).unwrap();
    assert_eq!(spd.lookup(&telnet_key).unwrap().name, "vpn");
}

#[test]
fn any_protocol_policy_interleaves_with_protocol_policies_in_order() {
    let mut spd = Spd::new();
    spd.push(policy(
        "udp-first",
        lan_to_dc().with_protocol(proto::UDP),
        PolicyAction::Bypass,
    ))
    .unwrap();
    spd.push(policy("all", lan_to_dc(), PolicyAction::Protect(1)))
        .unwrap();
    spd.push(policy(
        "tcp-late",
        lan_to_dc().with_protocol(proto::TCP),
        PolicyAction::Discard,
    ))
    .unwrap();
    let udp = FlowKey::new(ip("10.1.0.1"), ip("192.168.0.1"), proto::UDP, 53, 53);
    let tcp = FlowKey::new(ip("10.1.0.1"), ip("192.168.0.1"), proto::TCP, 5, 80);
    assert_eq!(spd.lookup(&udp).unwrap().name, "udp-first");
    assert_eq!(spd.lookup(&tcp).unwrap().name, "all");
}

#[test]
fn port_ranges_select() {
    let mut spd = Spd::new();
    let web = lan_to_dc()
        .with_protocol(proto::TCP)
        .with_src_ports(PortRange::new(1024, 65535).unwrap())
        .with_dst_ports(PortRange::new(80, 443).unwrap());
    spd.push(policy("web", web, PolicyAction::Protect(3)))
        .unwrap();
    let key = |sp, dp| FlowKey::new(ip("10.1.0.1"), ip("192.168.0.1"), proto::TCP, sp, dp);
    assert!(spd.lookup(&key(50000, 443)).is_some());
    assert!(spd.lookup(&key(50000, 80)).is_some());
    assert!(spd.lookup(&key(50000, 444)).is_none());
    assert!(spd.lookup(&key(1023, 443)).is_none());
    let udp = FlowKey::new(ip("10.1.0.1"), ip("192.168.0.1"), proto::UDP, 50000, 443);
    assert!(spd.lookup(&udp).is_none());
}

#[test]
fn icmp_type_and_code_sit_in_the_port_fields() {
    // Echo request: type 8, code 0.
    let pkt = ipv4(
        "10.1.0.1",
        "192.168.0.1",
        proto::ICMP,
        0,
        &[8, 0, 0, 0, 0, 1, 0, 1],
    );
    let k = FlowKey::from_packet(&pkt).unwrap();
    assert_eq!((k.src_port, k.dst_port, k.ports_opaque), (8, 0, false));

    let mut spd = Spd::new();
    let echo = lan_to_dc()
        .with_protocol(proto::ICMP)
        .with_src_ports(PortRange::single(8))
        .with_dst_ports(PortRange::single(0));
    spd.push(policy("ping", echo, PolicyAction::Protect(9)))
        .unwrap();
    assert_eq!(spd.lookup(&k).unwrap().name, "ping");

    // Destination unreachable (type 3, code 4) is not an echo request.
    let unreach = ipv4(
        "10.1.0.1",
        "192.168.0.1",
        proto::ICMP,
        0,
        &[3, 4, 0, 0, 0, 0, 5, 0],
    );
    let k = FlowKey::from_packet(&unreach).unwrap();
    assert_eq!((k.src_port, k.dst_port), (3, 4));
    assert!(spd.lookup(&k).is_none());

    // The reply travels the other way; the reversed selector keeps type/code in place.
    let reply_sel = echo.with_src_ports(PortRange::single(0)).reversed();
    let reply = ipv4(
        "192.168.0.1",
        "10.1.0.1",
        proto::ICMP,
        0,
        &[0, 0, 0, 0, 0, 1, 0, 1],
    );
    assert!(reply_sel.matches(&FlowKey::from_packet(&reply).unwrap()));
}

#[test]
fn icmpv6_type_and_code() {
    let pkt = ipv6(
        "2001:db8::1",
        "2001:db8:1::1",
        &[],
        proto::ICMPV6,
        &[128, 0, 0, 0, 0, 0, 0, 0],
    );
    let k = FlowKey::from_packet(&pkt).unwrap();
    assert_eq!(
        (k.protocol, k.src_port, k.dst_port),
        (proto::ICMPV6, 128, 0)
    );
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    let exts = [
        (proto::HOP_BY_HOP, 8),
        (proto::DEST_OPTS, 16),
        (proto::ROUTING, 24),
        (proto::DEST_OPTS, 8),
    ];
    let pkt = ipv6(
        "2001:db8::1",
        "2001:db8:1::1",
        &exts,
        proto::TCP,
        &ports(1234, 443),
    );
    let k = FlowKey::from_packet(&pkt).unwrap();
    assert_eq!(
        k,
        FlowKey::new(
            ip("2001:db8::1"),
            ip("2001:db8:1::1"),
            proto::TCP,
            1234,
            443
        )
    );
    let mut spd = Spd::new();
    let sel = Selector::new(pfx("2001:db8::/48"), pfx("2001:db8:1::/48"))
        .with_protocol(proto::TCP)
        .with_dst_ports(PortRange::single(443));
    spd.push(policy("v6", sel, PolicyAction::Protect(2)))
        .unwrap();
    assert_eq!(spd.lookup(&k).unwrap().name, "v6");
    // An IPv4 key never matches an IPv6 policy.
    let v4 = FlowKey::new(ip("10.0.0.1"), ip("10.0.0.2"), proto::TCP, 1234, 443);
    assert!(spd.lookup(&v4).is_none());
}

#[test]
fn ah_and_esp_are_next_layer_protocols_not_skipped() {
    let pkt = ipv6(
        "2001:db8::1",
        "2001:db8::2",
        &[(proto::HOP_BY_HOP, 8)],
        50,
        &[0; 16],
    );
    let k = FlowKey::from_packet(&pkt).unwrap();
    assert_eq!(k.protocol, 50);
    assert!(k.ports_opaque);
}

#[test]
fn first_fragment_has_ports_non_first_are_opaque() {
    // IPv4: MF set, offset 0 -> ports; offset 8 -> opaque.
    let first = ipv4(
        "10.1.0.1",
        "192.168.0.1",
        proto::UDP,
        0x2000,
        &ports(5000, 53),
    );
    let k = FlowKey::from_packet(&first).unwrap();
    assert_eq!((k.src_port, k.dst_port, k.ports_opaque), (5000, 53, false));
    let later = ipv4("10.1.0.1", "192.168.0.1", proto::UDP, 1, &[0xab; 16]);
    let k = FlowKey::from_packet(&later).unwrap();
    assert_eq!(
        (k.protocol, k.src_port, k.dst_port, k.ports_opaque),
        (proto::UDP, 0, 0, true)
    );

    // IPv6: Fragment header with offset 8 -> opaque, protocol from the Fragment header.
    let mut frag = vec![proto::UDP, 0, 0, 8 | 1, 0, 0, 0, 42];
    frag.extend_from_slice(&[0xcd; 16]);
    let mut v6 = ipv6(
        "2001:db8::1",
        "2001:db8::2",
        &[(proto::HOP_BY_HOP, 8)],
        proto::FRAGMENT,
        &frag,
    );
    let k = FlowKey::from_packet(&v6).unwrap();
    assert_eq!((k.protocol, k.ports_opaque), (proto::UDP, true));
    // The same with offset 0 reads the ports behind the Fragment header.
    v6[40 + 8 + 3] = 1;
    v6[40 + 16..40 + 20].copy_from_slice(&[0x13, 0x88, 0, 53]);
    let k = FlowKey::from_packet(&v6).unwrap();
    assert_eq!((k.src_port, k.dst_port, k.ports_opaque), (5000, 53, false));

    // Opaque keys match only selectors with ANY ports, even a 0..=0 range (ICMP echo
    // reply: type 0 code 0).
    let opaque = FlowKey::opaque(ip("10.1.0.1"), ip("192.168.0.1"), proto::ICMP);
    let echo_reply = lan_to_dc()
        .with_protocol(proto::ICMP)
        .with_src_ports(PortRange::single(0))
        .with_dst_ports(PortRange::single(0));
    assert!(!echo_reply.matches(&opaque));
    assert!(lan_to_dc().with_protocol(proto::ICMP).matches(&opaque));
    let dns = lan_to_dc().with_dst_ports(PortRange::single(53));
    assert!(!dns.matches(&FlowKey::from_packet(&later).unwrap()));
}

#[test]
fn prefix_edge_cases() {
    let all_v4 = Selector::new(pfx("0.0.0.0/0"), pfx("0.0.0.0/0"));
    let all_v6 = Selector::new(pfx("::/0"), pfx("::/0"));
    let k4 = FlowKey::new(ip("255.255.255.255"), ip("0.0.0.0"), 6, 1, 1);
    let k6 = FlowKey::new(ip("ffff::1"), ip("::"), 6, 1, 1);
    assert!(all_v4.matches(&k4) && !all_v4.matches(&k6));
    assert!(all_v6.matches(&k6) && !all_v6.matches(&k4));

    let host4 = Selector::new(pfx("10.0.0.1/32"), pfx("0.0.0.0/0"));
    assert!(host4.matches(&FlowKey::new(ip("10.0.0.1"), ip("1.2.3.4"), 6, 1, 1)));
    assert!(!host4.matches(&FlowKey::new(ip("10.0.0.2"), ip("1.2.3.4"), 6, 1, 1)));
    assert!(!host4.matches(&FlowKey::new(ip("10.0.0.0"), ip("1.2.3.4"), 6, 1, 1)));

    let host6 = Selector::new(pfx("2001:db8::1/128"), pfx("::/0"));
    assert!(host6.matches(&FlowKey::new(ip("2001:db8::1"), ip("::1"), 6, 1, 1)));
    assert!(!host6.matches(&FlowKey::new(ip("2001:db8::2"), ip("::1"), 6, 1, 1)));

    // Bare addresses are host prefixes; host bits in a prefix are masked.
    assert_eq!(pfx("10.0.0.1"), IpPrefix::new(ip("10.0.0.1"), 32).unwrap());
    assert_eq!(
        IpRange::from(pfx("10.9.8.7/8")),
        IpRange::new(ip("10.0.0.0"), ip("10.255.255.255")).unwrap()
    );
    assert!(matches!(
        "2001:db8::/129".parse::<IpPrefix>(),
        Err(SelectorError::PrefixLength { len: 129, max: 128 })
    ));
    assert_eq!(pfx("2001:db8::/32").to_string(), "2001:db8::/32");
}

#[test]
fn ranges_that_are_not_prefixes() {
    let r = IpRange::new(ip("10.0.0.5"), ip("10.0.0.9")).unwrap();
    let sel = Selector::new(r, IpRange::ANY_V4);
    assert!(sel.matches(&FlowKey::new(ip("10.0.0.5"), ip("1.1.1.1"), 6, 1, 1)));
    assert!(sel.matches(&FlowKey::new(ip("10.0.0.9"), ip("1.1.1.1"), 6, 1, 1)));
    assert!(!sel.matches(&FlowKey::new(ip("10.0.0.10"), ip("1.1.1.1"), 6, 1, 1)));
}

#[test]
fn edits_invalidate_the_lookup_cache() {
    let mut spd = Spd::new();
    let mut cache = LookupCache::default();
    let k = FlowKey::new(ip("10.1.0.1"), ip("192.168.0.1"), proto::TCP, 1, 23);
    spd.push(policy("vpn", lan_to_dc(), PolicyAction::Protect(1)))
        .unwrap();
    assert_eq!(
        spd.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Protect(1))
    );
    assert_eq!(
        spd.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Protect(1))
    );

    // Insert a shadowing discard in front: the cached "vpn" must not be returned.
    let g = spd.generation();
    spd.insert(0, policy("deny", lan_to_dc(), PolicyAction::Discard))
        .unwrap();
    assert_ne!(spd.generation(), g);
    assert_eq!(
        spd.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Discard)
    );

    // Removing it makes "vpn" visible again, at a different position.
    spd.remove("deny").unwrap();
    assert_eq!(
        spd.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Protect(1))
    );
    spd.remove("vpn").unwrap();
    assert!(spd.lookup_cached(&mut cache, &k).is_none());

    // A cache filled from one SPD is never valid for another.
    let mut other = Spd::new();
    other
        .push(policy("x", lan_to_dc(), PolicyAction::Bypass))
        .unwrap();
    assert_eq!(
        other.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Bypass)
    );
    let mut third = Spd::new();
    third
        .push(policy("y", lan_to_dc(), PolicyAction::Discard))
        .unwrap();
    assert_eq!(
        third.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Discard)
    );
}

#[test]
fn edit_errors() {
    let mut spd = Spd::new();
    spd.push(policy("a", lan_to_dc(), PolicyAction::Bypass))
        .unwrap();
    assert_eq!(
        spd.push(policy("a", lan_to_dc(), PolicyAction::Discard)),
        Err(SpdError::DuplicateName("a".into()))
    );
    assert_eq!(
        spd.insert(5, policy("b", lan_to_dc(), PolicyAction::Discard)),
        Err(SpdError::BadIndex { index: 5, len: 1 })
    );
    assert!(spd.remove("zzz").is_none());
    assert_eq!(spd.len(), 1);
    assert_eq!(spd.position("a"), Some(0));
}

#[test]
fn malformed_packets_give_typed_errors() {
    assert_eq!(FlowKey::from_packet(&[]), Err(SelectorError::Truncated));
    assert_eq!(
        FlowKey::from_packet(&[0x50; 40]),
        Err(SelectorError::BadVersion(5))
    );
    let good = ipv4("10.0.0.1", "10.0.0.2", proto::TCP, 0, &ports(1, 2));
    assert_eq!(
        FlowKey::from_packet(&good[..good.len() - 1]),
        Err(SelectorError::Truncated)
    );
    // TCP header cut after two bytes (total length says so).
    let short = ipv4("10.0.0.1", "10.0.0.2", proto::TCP, 0, &[0, 1]);
    assert_eq!(FlowKey::from_packet(&short), Err(SelectorError::Truncated));
    // Total length shorter than the header.
    let mut bad = good.clone();
    bad[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(FlowKey::from_packet(&bad), Err(SelectorError::BadIpHeader));
    // IPv6 extension header running past the payload.
    let mut v6 = ipv6(
        "::1",
        "::2",
        &[(proto::HOP_BY_HOP, 8)],
        proto::UDP,
        &ports(1, 2),
    );
    v6[41] = 10;
    assert_eq!(FlowKey::from_packet(&v6), Err(SelectorError::Truncated));
    // Trailing bytes beyond the IP length (Ethernet padding) are ignored.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xee; 10]);
    assert_eq!(FlowKey::from_packet(&padded), FlowKey::from_packet(&good));
}

fn arb_selector() -> impl Strategy<Value = Selector> {
    let range = (0u8..4, 0u8..4).prop_map(|(a, b)| {
        let (a, b) = (a.min(b), a.max(b));
        IpRange::new(IpAddr::from([10, 0, 0, a]), IpAddr::from([10, 0, 0, b])).unwrap()
    });
    let port = prop_oneof![
        Just(PortRange::ANY),
        (0u16..4).prop_map(PortRange::single),
        (0u16..4, 0u16..4).prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)).unwrap()),
    ];
    let protocol = prop_oneof![
        Just(None),
        Just(Some(6u8)),
        Just(Some(17u8)),
        Just(Some(1u8))
    ];
    (range.clone(), range, protocol, port.clone(), port).prop_map(|(s, d, p, sp, dp)| Selector {
        src: s,
        dst: d,
        protocol: p,
        src_ports: sp,
        dst_ports: dp,
    })
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    (
        0u8..4,
        0u8..4,
        prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(47u8)],
        0u16..4,
        0u16..4,
        any::<bool>(),
    )
        .prop_map(|(s, d, p, sp, dp, opaque)| {
            let (s, d) = (IpAddr::from([10, 0, 0, s]), IpAddr::from([10, 0, 0, d]));
            if opaque {
                FlowKey::opaque(s, d, p)
            } else {
                FlowKey::new(s, d, p, sp, dp)
            }
        })
}

/// A remote-access client's entry: our LAN to the client's address (or network).
fn client(name: &str, dst: &str, binding: u32) -> Policy {
    policy(
        name,
        Selector::new(pfx("10.1.0.0/16"), pfx(dst)),
        PolicyAction::Protect(binding),
    )
}

#[test]
fn client_entries_come_before_the_configured_policies_newest_first() {
    let mut spd = Spd::new();
    spd.push(policy(
        "deny-pool",
        Selector::new(pfx("10.1.0.0/16"), pfx("10.9.0.0/16")),
        PolicyAction::Discard,
    ))
    .unwrap();
    let to = |dst: &str| FlowKey::new(ip("10.1.0.1"), ip(dst), proto::TCP, 1, 443);
    let verdict = |spd: &Spd, dst: &str| spd.lookup(&to(dst)).map(|p| p.action);
    assert_eq!(verdict(&spd, "10.9.0.7"), Some(PolicyAction::Discard));

    spd.insert_client(client("c1", "10.9.0.7/32", 7)).unwrap();
    spd.insert_client(client("c2", "10.9.0.8/32", 8)).unwrap();
    assert_eq!(verdict(&spd, "10.9.0.7"), Some(PolicyAction::Protect(7)));
    assert_eq!(verdict(&spd, "10.9.0.8"), Some(PolicyAction::Protect(8)));
    assert_eq!(verdict(&spd, "10.9.0.9"), Some(PolicyAction::Discard));
    // A returning client's new entry for the same address wins over its old one until
    // that is removed; names are unique per destination.
    spd.insert_client(client("c1-again", "10.9.0.7/32", 9))
        .unwrap();
    assert_eq!(verdict(&spd, "10.9.0.7"), Some(PolicyAction::Protect(9)));
    assert_eq!(
        spd.insert_client(client("c1", "10.9.0.7/32", 10)),
        Err(SpdError::DuplicateName("c1".into()))
    );
    let c1_again = client("c1-again", "10.9.0.7/32", 9);
    assert!(spd.remove_client("c1-again", &c1_again.selector).is_some());
    assert!(spd.remove_client("c1-again", &c1_again.selector).is_none());
    assert_eq!(verdict(&spd, "10.9.0.7"), Some(PolicyAction::Protect(7)));
    // A client network (not one address) after the single-address entries.
    spd.insert_client(client("branch", "10.9.0.0/24", 11))
        .unwrap();
    assert_eq!(verdict(&spd, "10.9.0.7"), Some(PolicyAction::Protect(7)));
    assert_eq!(verdict(&spd, "10.9.0.9"), Some(PolicyAction::Protect(11)));
    assert_eq!(spd.client_count(), 3);
    let mut names: Vec<&str> = spd.clients().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["branch", "c1", "c2"]);
    // Configured policies are separate: a reload replaces them and keeps the clients.
    assert_eq!(spd.len(), 1);
    assert!(spd.get("c1").is_none());
    let mut reloaded = Spd::new();
    reloaded
        .push(policy(
            "allow",
            Selector::new(pfx("10.1.0.0/16"), pfx("10.9.0.0/16")),
            PolicyAction::Bypass,
        ))
        .unwrap();
    let g = spd.generation();
    spd.replace_policies(&reloaded);
    assert_ne!(spd.generation(), g);
    assert_eq!(verdict(&spd, "10.9.1.1"), Some(PolicyAction::Bypass));
    assert_eq!(verdict(&spd, "10.9.0.8"), Some(PolicyAction::Protect(8)));
}

#[test]
fn client_edits_invalidate_the_lookup_cache() {
    let mut spd = Spd::new();
    let mut cache = LookupCache::default();
    let k = FlowKey::new(ip("10.1.0.1"), ip("10.9.0.7"), proto::UDP, 1, 53);
    assert_eq!(spd.lookup_cached(&mut cache, &k), None);
    let c = client("c", "10.9.0.7/32", 7);
    spd.insert_client(c.clone()).unwrap();
    assert_eq!(
        spd.lookup_cached(&mut cache, &k),
        Some(PolicyAction::Protect(7))
    );
    spd.remove_client("c", &c.selector).unwrap();
    assert_eq!(spd.lookup_cached(&mut cache, &k), None);
}

/// The prefix length of an IPv4 client entry's destination (an aligned prefix).
fn client_prefix_len(p: &Policy) -> u32 {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (p.selector.dst.start(), p.selector.dst.end()) else {
        panic!("IPv4 entries only")
    };
    32 - (b.to_bits() - a.to_bits() + 1).trailing_zeros()
}

/// A client entry for one address in 10.9.0.0/28, or for a network around them at
/// each bucket level (within a /24, within a /16, wider).
fn arb_client_dst() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..16).prop_map(|h| format!("10.9.0.{h}/32")),
        Just("10.9.0.0/28".to_owned()),
        Just("10.9.0.0/20".to_owned()),
        Just("10.0.0.0/8".to_owned()),
    ]
}

proptest! {
    /// With client entries, the lookup agrees with a scan of: the client entries, the
    /// smallest networks first (one address, within a /24, within a /16, wider) and the
    /// newest first among equals, then the list.
    #[test]
    fn client_lookup_equals_its_scan_order(
        ops in proptest::collection::vec((arb_client_dst(), any::<bool>()), 1..40),
        hosts in proptest::collection::vec(0u8..20, 1..10),
    ) {
        let mut spd = Spd::new();
        spd.push(policy("tail", Selector::new(pfx("10.1.0.0/16"), pfx("10.9.0.0/24")), PolicyAction::Bypass)).unwrap();
        // The model: live entries, oldest first.
        let mut live: Vec<Policy> = Vec::new();
        for (i, (dst, remove_oldest)) in ops.iter().enumerate() {
            if *remove_oldest && !live.is_empty() {
                let p = live.remove(0);
                prop_assert!(spd.remove_client(&p.name, &p.selector).is_some());
            } else {
                let p = client(&format!("c{i}"), dst, i as u32);
                spd.insert_client(p.clone()).unwrap();
                live.push(p);
            }
        }
        prop_assert_eq!(spd.client_count(), live.len());
        for h in hosts {
            let k = FlowKey::new(ip("10.1.2.3"), ip(&format!("10.9.0.{h}")), proto::TCP, 9, 80);
            let level = |p: &Policy| match client_prefix_len(p) {
                32 => 0,
                24..=31 => 1,
                16..=23 => 2,
                _ => 3,
            };
            let mut ordered: Vec<&Policy> = live.iter().rev().collect();
            ordered.sort_by_key(|p| level(p));
            let expected = ordered.into_iter()
                .chain(spd.policies())
                .find(|p| p.selector.matches(&k))
                .map(|p| p.action);
            prop_assert_eq!(spd.lookup(&k).map(|p| p.action), expected);
        }
    }

    /// The indexed lookup agrees with a plain first-match scan of the list.
    #[test]
    fn lookup_equals_linear_first_match(
        sels in proptest::collection::vec(arb_selector(), 0..24),
        keys in proptest::collection::vec(arb_key(), 1..24),
        remove in proptest::option::of(0usize..24),
    ) {
        let mut spd = Spd::new();
        for (i, s) in sels.iter().enumerate() {
            spd.push(policy(&format!("p{i}"), *s, PolicyAction::Protect(i as u32))).unwrap();
        }
        if let Some(r) = remove {
            spd.remove(&format!("p{r}"));
        }
        let mut cache = LookupCache::default();
        for k in &keys {
            let expected = spd.policies().iter().find(|p| p.selector.matches(k));
            prop_assert_eq!(spd.lookup(k).map(|p| &p.name), expected.map(|p| &p.name));
            prop_assert_eq!(spd.lookup_cached(&mut cache, k), expected.map(|p| p.action));
        }
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn from_packet_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = FlowKey::from_packet(&bytes);
    }

    /// Valid-looking headers with random contents after them never panic either.
    #[test]
    fn from_packet_never_panics_on_plausible_headers(
        v6 in any::<bool>(),
        mut bytes in proptest::collection::vec(any::<u8>(), 40..200),
        nh in prop_oneof![Just(0u8), Just(43), Just(44), Just(60), Just(6), Just(17), Just(1), Just(58)],
    ) {
        let len = bytes.len();
        if v6 {
            bytes[0] = 0x60;
            bytes[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            bytes[6] = nh;
        } else {
            bytes[0] = 0x45;
            bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            bytes[9] = nh;
        }
        let _ = FlowKey::from_packet(&bytes);
    }
}
