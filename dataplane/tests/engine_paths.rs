//! The engine's decisions beside the transform itself: path MTU (ICMP error or outer
//! fragmentation and reassembly), policy-based classification, selectors, lifetimes,
//! port-4500 demultiplexing, drop counting, and no panic on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::drop::DropReason;
use dataplane::engine::{
    ACQUIRE_INTERVAL, Engine, EngineConfig, EngineEvent, Inbound, Outbound, UdpMeta,
};
use dataplane::ip::{self, OuterHeader, proto};
use dataplane::sa::{DfBit, Direction, Lifetime, SaConfig, UdpEncap};
use dataplane::selector::{IpPrefix, Selector};
use dataplane::spd::{Policy, PolicyAction, Spd};
use proptest::prelude::*;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

fn sa(direction: Direction) -> SaConfig {
    let (local, remote) = match direction {
        Direction::Outbound => (A, B),
        Direction::Inbound => (B, A),
    };
    SaConfig::esp_tunnel(direction, 0x2000_0001, local, remote)
        .with_encryption(EncrAlg::AesGcm128, &[3; 20])
}

fn engines(tweak: impl Fn(&mut SaConfig)) -> (Engine, Engine) {
    let mut out = sa(Direction::Outbound);
    tweak(&mut out);
    let mut inb = sa(Direction::Inbound);
    tweak(&mut inb);
    let mut a = Engine::new(EngineConfig::default());
    a.install_sa(out).unwrap();
    let mut b = Engine::new(EngineConfig::default());
    b.install_sa(inb).unwrap();
    (a, b)
}

/// An IPv4 or IPv6 UDP packet of `total` bytes from 10.1.0.10 / fd00:1::10.
fn packet(v6: bool, total: usize, df: bool, dport: u16) -> Vec<u8> {
    let (src, dst) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x10)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10)),
            IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10)),
        )
    };
    let hlen = ip::outer_header_len(src);
    let mut p = vec![0x5au8; total];
    let h = OuterHeader {
        src,
        dst,
        tos: 0,
        ttl: 64,
        protocol: proto::UDP,
        df,
        id: 1,
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ip::write_ipv4(&mut p, &h, s, d, total as u16),
        (IpAddr::V6(s), IpAddr::V6(d)) => ip::write_ipv6(&mut p, &h, s, d, (total - hlen) as u16),
        _ => unreachable!(),
    }
    p[hlen..hlen + 2].copy_from_slice(&1111u16.to_be_bytes());
    p[hlen + 2..hlen + 4].copy_from_slice(&dport.to_be_bytes());
    p[hlen + 4..hlen + 6].copy_from_slice(&((total - hlen) as u16).to_be_bytes());
    p
}

fn out(e: &mut Engine, pkt: &[u8], tunnel: u32) -> (Outbound, PacketBuf) {
    let mut buf = PacketBuf::from_slice(pkt);
    let r = e.outbound(Instant::now(), &mut buf, tunnel);
    (r, buf)
}

/// Traffic for a tunnel without an SA asks the control plane for one (on-traffic
/// establishment): once per interval per tunnel while it keeps coming, at once again
/// after an SA was installed and removed, and never while the tunnel has an SA.
#[test]
fn traffic_without_an_sa_raises_acquire_once_per_interval() {
    let mut e = Engine::new(EngineConfig::default());
    let t0 = Instant::now();
    let send = |e: &mut Engine, tunnel: u32, at: Instant| {
        let mut buf = PacketBuf::from_slice(&packet(false, 100, false, 9));
        e.outbound(at, &mut buf, tunnel)
    };
    let acquires = |e: &mut Engine| {
        std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                EngineEvent::Acquire(t) => Some(t),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    for (tunnel, at) in [(0, 0), (0, 10), (1, 20), (0, 999), (1, 500)] {
        assert_eq!(
            send(&mut e, tunnel, t0 + Duration::from_millis(at)),
            Outbound::Dropped(DropReason::NoOutboundSa)
        );
    }
    assert_eq!(
        acquires(&mut e),
        vec![0, 1],
        "one per tunnel within the interval"
    );
    // What a kernel sends on a new interface by itself asks for nothing.
    let mut rs = packet(true, 100, false, 9);
    rs[8..24].copy_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets());
    rs[24..40].copy_from_slice(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2).octets());
    let mut buf = PacketBuf::from_slice(&rs);
    let at = t0 + 2 * ACQUIRE_INTERVAL;
    assert_eq!(
        e.outbound(at, &mut buf, 2),
        Outbound::Dropped(DropReason::NoOutboundSa)
    );
    assert_eq!(acquires(&mut e), Vec::<u32>::new(), "link-local multicast");
    send(&mut e, 0, t0 + ACQUIRE_INTERVAL);
    assert_eq!(acquires(&mut e), vec![0], "again after the interval");

    let sa = sa(Direction::Outbound);
    let key = sa.key();
    e.install_sa(sa).unwrap();
    let at = t0 + ACQUIRE_INTERVAL + Duration::from_millis(1);
    assert!(matches!(send(&mut e, 0, at), Outbound::Transmit { .. }));
    assert!(e.remove_sa(&key));
    send(&mut e, 0, at);
    assert_eq!(acquires(&mut e), vec![0], "at once after the SA went away");
}

#[test]
fn df_packet_too_big_gets_icmp_fragmentation_needed() {
    let (mut a, _) = engines(|c| c.path_mtu = 1400);
    let (r, buf) = out(&mut a, &packet(false, 1400, true, 9), 0);
    assert_eq!(r, Outbound::ToTunnel);
    let icmp = buf.data();
    // IPv4, ICMP, from our address back to the sender, type 3 code 4.
    assert_eq!(icmp[9], 1);
    assert_eq!(&icmp[12..16], &[192, 0, 2, 1]);
    assert_eq!(&icmp[16..20], &[10, 1, 0, 10]);
    assert_eq!((icmp[20], icmp[21]), (3, 4));
    let mtu = u16::from_be_bytes([icmp[26], icmp[27]]);
    // The advertised MTU is what fits after the ESP-in-IP overhead.
    let (r, _) = out(&mut a, &packet(false, usize::from(mtu), true, 9), 0);
    assert!(matches!(r, Outbound::Transmit { .. }), "{r:?}");
    // One padding block more does not (AES-GCM pads to 4 bytes).
    let (r, _) = out(&mut a, &packet(false, usize::from(mtu) + 4, true, 9), 0);
    assert_eq!(r, Outbound::ToTunnel);
    assert_eq!(a.stats().drops.get(DropReason::TooBig), 2);
}

#[test]
fn ipv6_packet_too_big_gets_icmpv6_packet_too_big() {
    let mut e = Engine::new(EngineConfig::default());
    let v6a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let v6b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    let mut c = SaConfig::esp_tunnel(Direction::Outbound, 0x3000_0001, v6a, v6b)
        .with_encryption(EncrAlg::AesGcm256, &[1; 36]);
    c.path_mtu = 1500;
    e.install_sa(c).unwrap();
    let (r, buf) = out(&mut e, &packet(true, 1500, false, 9), 0);
    assert_eq!(r, Outbound::ToTunnel);
    let icmp = buf.data();
    assert_eq!(icmp[0] >> 4, 6);
    assert_eq!(icmp[6], proto::ICMPV6);
    assert_eq!((icmp[40], icmp[41]), (2, 0), "ICMPv6 Packet Too Big");
    let mtu = u32::from_be_bytes([icmp[44], icmp[45], icmp[46], icmp[47]]);
    assert!((1280..1500).contains(&mtu), "{mtu}");
}

#[test]
fn packet_without_df_is_fragmented_outside_and_reassembled_before_decap() {
    for udp in [false, true] {
        let (mut a, mut b) = engines(|c| {
            c.path_mtu = 600;
            c.df_bit = DfBit::Clear;
            c.udp_encap = udp.then_some(UdpEncap {
                local_port: 4500,
                remote_port: 4500,
            });
        });
        let original = packet(false, 1400, false, 9);
        let (r, _) = out(&mut a, &original, 0);
        let Outbound::Fragmented { count } = r else {
            panic!("{r:?}");
        };
        assert!(count >= 3, "{count}");
        let mut frags = Vec::new();
        let mut f = PacketBuf::default();
        while let Some(dst) = a.poll_fragment(&mut f) {
            assert_eq!(dst, B);
            assert!(f.len() <= 600);
            frags.push(f.data().to_vec());
        }
        assert_eq!(frags.len(), count);
        // Deliver in reverse order through the raw path, which reassembles.
        let mut last = Inbound::Pending;
        for frag in frags.iter().rev() {
            let mut buf = PacketBuf::from_slice(frag);
            last = b.inbound_ip(Instant::now(), &mut buf);
            if let Inbound::Deliver { .. } = last {
                assert_eq!(buf.data(), &original[..]);
            }
        }
        if udp {
            // Reassembled ESP-in-UDP arrives at the UDP socket in real life; the raw
            // path sees protocol 17 and refuses it.
            assert_eq!(last, Inbound::Dropped(DropReason::UnsupportedProtocol));
        } else {
            assert_eq!(last, Inbound::Deliver { tunnel: 0 });
        }
    }
}

#[test]
fn df_set_policy_refuses_to_fragment() {
    let (mut a, _) = engines(|c| {
        c.path_mtu = 600;
        c.df_bit = DfBit::Set;
    });
    let (r, _) = out(&mut a, &packet(false, 1400, false, 9), 0);
    assert_eq!(r, Outbound::ToTunnel);
}

/// An engine whose policy tunnel is 100, with an outbound SA for binding 7, and the
/// two LANs of [`packet`].
fn policy_engine() -> (Engine, IpPrefix, IpPrefix) {
    let mut a = Engine::new(EngineConfig {
        policy_tunnel: Some(100),
        ..EngineConfig::default()
    });
    let mut c = sa(Direction::Outbound);
    c.binding = 7;
    a.install_sa(c).unwrap();
    let lan1: IpPrefix = "10.1.0.0/16".parse().unwrap();
    let lan2: IpPrefix = "10.2.0.0/16".parse().unwrap();
    (a, lan1, lan2)
}

#[test]
fn spd_protects_bypasses_and_discards_in_order() {
    let (mut a, lan1, lan2) = policy_engine();
    let mut spd = Spd::new();
    let policy = |name: &str, sel: Selector, action| Policy {
        name: name.into(),
        selector: sel,
        action,
    };
    spd.push(policy(
        "no-dns",
        Selector::new(lan1, lan2)
            .with_protocol(proto::UDP)
            .with_dst_ports(dataplane::selector::PortRange::single(53)),
        PolicyAction::Discard,
    ))
    .unwrap();
    spd.push(policy(
        "clear-ntp",
        Selector::new(lan1, lan2)
            .with_protocol(proto::UDP)
            .with_dst_ports(dataplane::selector::PortRange::single(123)),
        PolicyAction::Bypass,
    ))
    .unwrap();
    spd.push(policy(
        "vpn",
        Selector::new(lan1, lan2),
        PolicyAction::Protect(7),
    ))
    .unwrap();
    a.set_spd(spd);
    assert_eq!(
        out(&mut a, &packet(false, 100, false, 53), 100).0,
        Outbound::Dropped(DropReason::PolicyDiscard)
    );
    assert_eq!(
        out(&mut a, &packet(false, 100, false, 123), 100).0,
        Outbound::Bypass
    );
    assert!(matches!(
        out(&mut a, &packet(false, 100, false, 80), 100).0,
        Outbound::Transmit { .. }
    ));
    // Nothing matches IPv6 traffic: default deny.
    assert_eq!(
        out(&mut a, &packet(true, 100, false, 80), 100).0,
        Outbound::Dropped(DropReason::NoPolicy)
    );
    // A route-based tunnel without an SA.
    assert_eq!(
        out(&mut a, &packet(false, 100, false, 80), 1).0,
        Outbound::Dropped(DropReason::NoOutboundSa)
    );

    // What a worker routes by: the protect id for the policy tunnel, the tunnel itself
    // otherwise, nothing where no SA is involved.
    assert_eq!(
        a.outbound_binding(&packet(false, 100, false, 80), 100),
        Some(7)
    );
    assert_eq!(
        a.outbound_binding(&packet(false, 100, false, 80), 1),
        Some(1)
    );
    assert_eq!(
        a.outbound_binding(&packet(false, 100, false, 53), 100),
        None
    );
    assert_eq!(
        a.outbound_binding(&packet(false, 100, false, 123), 100),
        None
    );
    assert_eq!(a.outbound_binding(&packet(true, 100, false, 80), 100), None);
    assert_eq!(a.outbound_binding(&[0x45, 0, 0], 100), None);
}

/// A new SPD takes effect with the next packet, although the engine caches the last
/// match per flow: the cache is keyed by the SPD's generation.
#[test]
fn replaced_spd_applies_to_the_next_packet_of_a_cached_flow() {
    let (mut a, lan1, lan2) = policy_engine();
    let spd_with = |action| {
        let mut spd = Spd::new();
        spd.push(Policy {
            name: "p".into(),
            selector: Selector::new(lan1, lan2),
            action,
        })
        .unwrap();
        spd
    };
    let pkt = packet(false, 100, false, 80);
    a.set_spd(spd_with(PolicyAction::Protect(7)));
    assert_eq!(a.outbound_binding(&pkt, 100), Some(7));
    assert!(matches!(
        out(&mut a, &pkt, 100).0,
        Outbound::Transmit { .. }
    ));
    a.set_spd(spd_with(PolicyAction::Discard));
    assert_eq!(a.outbound_binding(&pkt, 100), None);
    assert_eq!(
        out(&mut a, &pkt, 100).0,
        Outbound::Dropped(DropReason::PolicyDiscard)
    );
    a.set_spd(Spd::new());
    assert_eq!(
        out(&mut a, &pkt, 100).0,
        Outbound::Dropped(DropReason::NoPolicy)
    );
    assert_eq!(a.stats().drops.get(DropReason::PolicyDiscard), 1);
    assert_eq!(a.stats().drops.get(DropReason::NoPolicy), 1);
}

/// On-traffic establishment of a policy-based VPN: a packet of a protect policy whose
/// binding has no SA yet asks for that binding, not for the policy tunnel.
#[test]
fn policy_traffic_without_an_sa_acquires_the_protect_binding() {
    let mut a = Engine::new(EngineConfig {
        policy_tunnel: Some(100),
        ..EngineConfig::default()
    });
    let mut spd = Spd::new();
    spd.push(Policy {
        name: "vpn".into(),
        selector: Selector::new(
            "10.1.0.0/16".parse::<IpPrefix>().unwrap(),
            "10.2.0.0/16".parse::<IpPrefix>().unwrap(),
        ),
        action: PolicyAction::Protect(0x8000_0001),
    })
    .unwrap();
    a.set_spd(spd);
    assert_eq!(
        out(&mut a, &packet(false, 100, false, 80), 100).0,
        Outbound::Dropped(DropReason::NoOutboundSa)
    );
    assert_eq!(a.poll_event(), Some(EngineEvent::Acquire(0x8000_0001)));
    assert_eq!(a.poll_event(), None);
}

#[test]
fn selectors_are_enforced_both_ways() {
    let lan1: IpPrefix = "10.1.0.0/16".parse().unwrap();
    let lan2: IpPrefix = "10.2.0.0/16".parse().unwrap();
    let (mut a, mut b) = engines(|c| {
        c.selectors = vec![match c.direction {
            Direction::Outbound => Selector::new(lan1, lan2),
            // The receiver writes selectors from its own side.
            Direction::Inbound => Selector::new(lan2, lan1),
        }];
    });
    let (r, buf) = out(&mut a, &packet(false, 100, false, 80), 0);
    assert!(matches!(r, Outbound::Transmit { .. }));
    let mut rx = PacketBuf::from_slice(buf.data());
    assert_eq!(
        b.inbound_ip(Instant::now(), &mut rx),
        Inbound::Deliver { tunnel: 0 }
    );
    let mut other = packet(false, 100, false, 80);
    other[12..16].copy_from_slice(&[172, 16, 0, 1]);
    let sum = {
        other[10] = 0;
        other[11] = 0;
        ip::checksum(&other[..20])
    };
    other[10..12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(
        out(&mut a, &other, 0).0,
        Outbound::Dropped(DropReason::SelectorMismatch)
    );

    // An authenticated packet outside the selectors is dropped by the receiver too.
    let (mut a2, _) = engines(|c| c.initial_seq = 100);
    let (_, buf) = out(&mut a2, &other, 0);
    let mut rx = PacketBuf::from_slice(buf.data());
    assert_eq!(
        b.inbound_ip(Instant::now(), &mut rx),
        Inbound::Dropped(DropReason::SelectorMismatch)
    );
}

#[test]
fn volume_lifetimes_raise_soft_then_hard_events() {
    let (mut a, _) = engines(|c| {
        c.lifetime = Lifetime {
            soft_bytes: None,
            hard_bytes: None,
            soft_packets: Some(3),
            hard_packets: Some(5),
        };
    });
    let key = sa(Direction::Outbound).key();
    let pkt = packet(false, 100, false, 80);
    for _ in 0..5 {
        assert!(matches!(out(&mut a, &pkt, 0).0, Outbound::Transmit { .. }));
    }
    assert_eq!(a.poll_event(), Some(EngineEvent::SoftLifetime(key)));
    assert_eq!(a.poll_event(), Some(EngineEvent::HardLifetime(key)));
    assert_eq!(a.poll_event(), None);
    assert_eq!(
        out(&mut a, &pkt, 0).0,
        Outbound::Dropped(DropReason::LifetimeExpired)
    );
}

#[test]
fn port_4500_demux_and_drop_counters() {
    let (_, mut b) = engines(|c| {
        c.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        })
    });
    let meta = UdpMeta {
        src: SocketAddr::new(A, 4500),
        dst: SocketAddr::new(B, 4500),
        ecn: 0,
    };
    let now = Instant::now();
    let mut k = PacketBuf::from_slice(&[0xff]);
    assert_eq!(b.inbound_udp(now, &mut k, meta), Inbound::Keepalive);
    let mut ike = PacketBuf::from_slice(&[0, 0, 0, 0, 0xaa, 0xbb]);
    assert_eq!(b.inbound_udp(now, &mut ike, meta), Inbound::Ike);
    assert_eq!(ike.data(), &[0xaa, 0xbb]);
    let mut unknown = PacketBuf::from_slice(&[0, 0, 1, 0, 0, 0, 0, 1, 9, 9, 9, 9]);
    assert_eq!(
        b.inbound_udp(now, &mut unknown, meta),
        Inbound::Dropped(DropReason::UnknownSpi)
    );
    let mut forged = PacketBuf::from_slice(&[
        0x20, 0, 0, 1, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        9, 9, 9, 9, 9,
    ]);
    assert_eq!(
        b.inbound_udp(now, &mut forged, meta),
        Inbound::Dropped(DropReason::IcvFailure)
    );
    let drops = b.stats().drops;
    assert_eq!(drops.get(DropReason::UnknownSpi), 1);
    assert_eq!(drops.get(DropReason::IcvFailure), 1);
    let sa = b.stats().sas[0];
    assert_eq!(sa.counters.icv_drops, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever arrives, from the network or the tunnel, is handled without a panic.
    #[test]
    fn arbitrary_input_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        spi_hit in any::<bool>(),
        first in prop::sample::select(vec![0x45u8, 0x46, 0x60, 0x4f, 0x00, 0xff]),
    ) {
        let (mut a, mut b) = engines(|_| {});
        let mut data = bytes.clone();
        if let Some(f) = data.first_mut() {
            *f = first;
        }
        let now = Instant::now();
        let mut buf = PacketBuf::from_slice(&data);
        let _ = a.outbound(now, &mut buf, 0);
        let mut buf = PacketBuf::from_slice(&data);
        let _ = b.inbound_ip(now, &mut buf);
        let mut esp = bytes;
        if spi_hit && esp.len() >= 4 {
            esp[..4].copy_from_slice(&0x2000_0001u32.to_be_bytes());
        }
        let mut buf = PacketBuf::from_slice(&esp);
        let meta = UdpMeta { src: SocketAddr::new(A, 4500), dst: SocketAddr::new(B, 4500), ecn: 3 };
        let _ = b.inbound_udp(now, &mut buf, meta);
    }
}

#[test]
fn integrity_only_suites_are_refused_without_integrity() {
    let mut e = Engine::new(EngineConfig::default());
    let c = SaConfig::esp_tunnel(Direction::Outbound, 0x4000_0000, A, B)
        .with_encryption(EncrAlg::AesCbc128, &[0; 16]);
    assert!(e.install_sa(c).is_err());
    let c = SaConfig::esp_tunnel(Direction::Outbound, 0x4000_0000, A, B)
        .with_encryption(EncrAlg::AesGcm128, &[0; 20])
        .with_integrity(IntegAlg::HmacSha256_128, &[0; 32]);
    assert!(e.install_sa(c).is_err(), "AEAD with separate integrity");
    let c = SaConfig::esp_tunnel(Direction::Outbound, 7, A, B)
        .with_encryption(EncrAlg::AesGcm128, &[0; 20]);
    assert!(e.install_sa(c).is_err(), "reserved SPI");
    assert_eq!(e.sa_count(), 0);
}
