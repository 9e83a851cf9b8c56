//! Two engines keyed as the two ends of a tunnel: whatever one protects, the other
//! gives back unchanged, for every transform, mode, IP version (inner and outer) and
//! encapsulation; and no single flipped bit of a protected packet is ever accepted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use dataplane::buf::PacketBuf;
use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::engine::{Engine, EngineConfig, Inbound, Outbound, UdpMeta};
use dataplane::ip::{self, OuterHeader, proto};
use dataplane::sa::{Direction, Mode, Protocol, SaConfig, UdpEncap};
use proptest::prelude::*;

/// Every ESP transform the dataplane implements, and AH with every integrity algorithm.
const SUITES: &[(Protocol, EncrAlg, IntegAlg)] = &[
    (Protocol::Esp, EncrAlg::AesGcm128, IntegAlg::None),
    (Protocol::Esp, EncrAlg::AesGcm256, IntegAlg::None),
    (Protocol::Esp, EncrAlg::ChaCha20Poly1305, IntegAlg::None),
    (Protocol::Esp, EncrAlg::AesCbc128, IntegAlg::HmacSha256_128),
    (Protocol::Esp, EncrAlg::AesCbc192, IntegAlg::HmacSha384_192),
    (Protocol::Esp, EncrAlg::AesCbc256, IntegAlg::HmacSha512_256),
    (Protocol::Esp, EncrAlg::AesCbc128, IntegAlg::HmacSha1_96),
    (Protocol::Esp, EncrAlg::AesCbc256, IntegAlg::HmacMd5_96),
    (Protocol::Esp, EncrAlg::TripleDesCbc, IntegAlg::HmacSha1_96),
    (Protocol::Esp, EncrAlg::DesCbc, IntegAlg::HmacMd5_96),
    (Protocol::Esp, EncrAlg::Null, IntegAlg::HmacSha256_128),
    (Protocol::Ah, EncrAlg::Null, IntegAlg::HmacMd5_96),
    (Protocol::Ah, EncrAlg::Null, IntegAlg::HmacSha1_96),
    (Protocol::Ah, EncrAlg::Null, IntegAlg::HmacSha256_128),
    (Protocol::Ah, EncrAlg::Null, IntegAlg::HmacSha384_192),
    (Protocol::Ah, EncrAlg::Null, IntegAlg::HmacSha512_256),
];

#[derive(Debug, Clone, Copy)]
struct Case {
    suite: usize,
    mode: Mode,
    outer_v6: bool,
    inner_v6: bool,
    udp: bool,
    esn: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..SUITES.len(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(suite, transport, outer_v6, inner_v6, udp, esn)| {
            let mode = if transport {
                Mode::Transport
            } else {
                Mode::Tunnel
            };
            Case {
                suite,
                mode,
                outer_v6,
                // Transport mode protects the host's own packets: same family.
                inner_v6: if transport { outer_v6 } else { inner_v6 },
                // NAT traversal is defined for ESP only (RFC 3948).
                udp: udp && SUITES[suite].0 == Protocol::Esp,
                esn,
            }
        })
}

fn addrs(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        )
    }
}

fn key(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// Engines `a` (sender) and `b` (receiver) sharing one SA.
fn pair(c: &Case) -> (Engine, Engine) {
    let (proto_, encr, integ) = SUITES[c.suite];
    let (la, lb) = addrs(c.outer_v6);
    let mut cfg = SaConfig::esp_tunnel(Direction::Outbound, 0x1000_0001, la, lb)
        .with_encryption(encr, &key(encr.key_len(), 1))
        .with_integrity(integ, &key(integ.key_len(), 77));
    cfg.protocol = proto_;
    cfg.mode = c.mode;
    cfg.esn = c.esn;
    // Start just below the 32-bit boundary so ESN packets cross it.
    cfg.initial_seq = if c.esn { u64::from(u32::MAX) - 2 } else { 0 };
    cfg.udp_encap = c.udp.then_some(UdpEncap {
        local_port: 4500,
        remote_port: 4500,
    });
    cfg.path_mtu = 9000;
    let mut a = Engine::new(EngineConfig::default());
    a.install_sa(cfg.clone()).unwrap();
    let mut inbound = cfg;
    inbound.direction = Direction::Inbound;
    inbound.local = lb;
    inbound.remote = la;
    inbound.initial_seq = 0;
    let mut b = Engine::new(EngineConfig::default());
    b.install_sa(inbound).unwrap();
    (a, b)
}

/// A UDP datagram in an IP packet: inner traffic, or in transport mode the host's own.
fn inner_packet(c: &Case, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = if c.mode == Mode::Transport {
        addrs(c.outer_v6)
    } else if c.inner_v6 {
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 10)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 10)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10)),
            IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10)),
        )
    };
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&5555u16.to_be_bytes());
    udp[2..4].copy_from_slice(&7777u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(payload);
    let h = OuterHeader {
        src,
        dst,
        tos: 0,
        ttl: 64,
        protocol: proto::UDP,
        df: false,
        id: 0,
    };
    let mut pkt = vec![0u8; ip::outer_header_len(src)];
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ip::write_ipv4(&mut pkt, &h, s, d, (20 + udp.len()) as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => ip::write_ipv6(&mut pkt, &h, s, d, udp.len() as u16),
        _ => unreachable!(),
    }
    pkt.extend_from_slice(&udp);
    pkt
}

/// Hands a transmitted packet to the receiving engine the way the I/O layer does:
/// through the UDP socket (headers stripped) or a raw socket (whole packet).
fn receive(c: &Case, b: &mut Engine, wire: &[u8]) -> (Inbound, PacketBuf) {
    let now = Instant::now();
    let (la, lb) = addrs(c.outer_v6);
    if c.udp {
        let hlen = if c.outer_v6 { 40 } else { 20 };
        let mut buf = PacketBuf::from_slice(&wire[hlen + 8..]);
        let ecn = ip::inner_info(wire).map_or(0, |i| i.tos & 3);
        let meta = UdpMeta {
            src: SocketAddr::new(la, 4500),
            dst: SocketAddr::new(lb, 4500),
            ecn,
        };
        (b.inbound_udp(now, &mut buf, meta), buf)
    } else {
        let mut buf = PacketBuf::from_slice(wire);
        (b.inbound_ip(now, &mut buf), buf)
    }
}

fn send(a: &mut Engine, pkt: &[u8]) -> Vec<u8> {
    let mut buf = PacketBuf::from_slice(pkt);
    let out = a.outbound(Instant::now(), &mut buf, 0);
    assert!(matches!(out, Outbound::Transmit { .. }), "{out:?}");
    buf.data().to_vec()
}

/// Byte positions a bit flip must be rejected at: the whole ESP packet; for AH the whole
/// IP packet except the fields RFC 4302 §3.3.3.1 leaves unauthenticated.
fn protected_range(c: &Case, wire: &[u8]) -> Vec<usize> {
    let hlen = if c.outer_v6 { 40 } else { 20 };
    let udp = if c.udp { 8 } else { 0 };
    if SUITES[c.suite].0 == Protocol::Esp {
        return (hlen + udp..wire.len()).collect();
    }
    let mutable: &[usize] = if c.outer_v6 {
        &[0, 1, 2, 3, 7]
    } else {
        &[1, 6, 7, 8, 10, 11]
    };
    (0..wire.len()).filter(|i| !mutable.contains(i)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn what_one_end_protects_the_other_restores(
        c in case(),
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1500), 1..6),
    ) {
        let (mut a, mut b) = pair(&c);
        for payload in payloads {
            let original = inner_packet(&c, &payload);
            let wire = send(&mut a, &original);
            let (result, buf) = receive(&c, &mut b, &wire);
            prop_assert_eq!(result, Inbound::Deliver { tunnel: 0 });
            prop_assert_eq!(buf.data(), &original[..]);
            // The same packet again is a replay.
            let (again, _) = receive(&c, &mut b, &wire);
            prop_assert!(matches!(again, Inbound::Dropped(_)), "{:?}", again);
        }
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        c in case(),
        payload in prop::collection::vec(any::<u8>(), 0..300),
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut a, mut b) = pair(&c);
        let original = inner_packet(&c, &payload);
        let mut wire = send(&mut a, &original);
        let positions = protected_range(&c, &wire);
        let at = positions[pick.index(positions.len())];
        wire[at] ^= 1 << bit;
        let (result, _) = receive(&c, &mut b, &wire);
        prop_assert!(
            !matches!(result, Inbound::Deliver { .. }),
            "flip of bit {} at {} accepted: {:?}", bit, at, c
        );
    }
}

#[test]
fn outbound_sequence_space_ends_with_rekey_required() {
    let c = Case {
        suite: 0,
        mode: Mode::Tunnel,
        outer_v6: false,
        inner_v6: false,
        udp: false,
        esn: false,
    };
    let (mut a, _) = pair(&c);
    let stats = a.stats();
    let out_key = stats.sas[0].key;
    // Jump the SA to the last 32-bit sequence number.
    let (la, lb) = addrs(false);
    let mut cfg = SaConfig::esp_tunnel(Direction::Outbound, 0x1000_0001, la, lb)
        .with_encryption(EncrAlg::AesGcm128, &key(20, 1));
    cfg.initial_seq = u64::from(u32::MAX) - 1;
    a.install_sa(cfg).unwrap();
    let pkt = inner_packet(&c, b"last");
    send(&mut a, &pkt);
    let mut buf = PacketBuf::from_slice(&pkt);
    let out = a.outbound(Instant::now(), &mut buf, 0);
    assert_eq!(
        out,
        Outbound::Dropped(dataplane::drop::DropReason::SequenceExhausted)
    );
    assert_eq!(
        a.poll_event(),
        Some(dataplane::engine::EngineEvent::RekeyRequired(out_key))
    );
}

#[test]
fn cluster_reservation_is_never_exceeded() {
    let c = Case {
        suite: 0,
        mode: Mode::Tunnel,
        outer_v6: false,
        inner_v6: false,
        udp: true,
        esn: true,
    };
    let (_, mut b) = pair(&c);
    let (la, lb) = addrs(false);
    let mut cfg = SaConfig::esp_tunnel(Direction::Outbound, 0x1000_0001, la, lb)
        .with_encryption(EncrAlg::AesGcm128, &key(20, 1));
    cfg.esn = true;
    cfg.udp_encap = Some(UdpEncap {
        local_port: 4500,
        remote_port: 4500,
    });
    cfg.seq_limit = 10;
    let key_ = cfg.key();
    let mut a = Engine::new(EngineConfig::default());
    a.install_sa(cfg).unwrap();
    let pkt = inner_packet(&c, b"x");
    for _ in 0..10 {
        let wire = send(&mut a, &pkt);
        assert_eq!(receive(&c, &mut b, &wire).0, Inbound::Deliver { tunnel: 0 });
    }
    let mut buf = PacketBuf::from_slice(&pkt);
    assert_eq!(
        a.outbound(Instant::now(), &mut buf, 0),
        Outbound::Dropped(dataplane::drop::DropReason::SequenceNotReserved)
    );
    assert!(a.extend_reservation(&key_, 20));
    assert!(
        !a.extend_reservation(&key_, 15),
        "a reservation never shrinks"
    );
    send(&mut a, &pkt);
}
