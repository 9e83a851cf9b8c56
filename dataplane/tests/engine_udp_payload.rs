//! `Engine::outbound_udp`: ESP in UDP left without outer headers for a UDP socket (GSO)
//! must be byte for byte the payload `Engine::outbound` puts behind its IP and UDP
//! headers, with the same header decisions (TOS, TTL, DF) and the same counters; every
//! other case must behave exactly as `outbound`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use dataplane::buf::PacketBuf;
use dataplane::crypto::EncrAlg;
use dataplane::engine::{Engine, EngineConfig, Inbound, Outbound, OutboundUdp, UdpMeta};
use dataplane::ip::{self, OuterHeader, proto};
use dataplane::sa::{DfBit, Direction, Mode, SaConfig, UdpEncap};
use proptest::prelude::*;

fn addrs(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        )
    }
}

fn sa(direction: Direction, outer_v6: bool, tweak: &dyn Fn(&mut SaConfig)) -> SaConfig {
    let (a, b) = addrs(outer_v6);
    let (local, remote) = match direction {
        Direction::Outbound => (a, b),
        Direction::Inbound => (b, a),
    };
    let mut sa = SaConfig::esp_tunnel(direction, 0x3000_0001, local, remote)
        .with_encryption(EncrAlg::AesGcm128, &[9; 20]);
    sa.udp_encap = Some(UdpEncap {
        local_port: 4500,
        remote_port: 4501,
    });
    tweak(&mut sa);
    sa
}

fn engine(direction: Direction, outer_v6: bool, tweak: &dyn Fn(&mut SaConfig)) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    e.install_sa(sa(direction, outer_v6, tweak)).unwrap();
    e
}

/// An inner IPv4 UDP packet of `total` bytes with TOS `tos` and DF `df`.
fn inner(total: usize, tos: u8, df: bool) -> Vec<u8> {
    let mut p = vec![0x5a; total];
    let h = OuterHeader {
        src: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10)),
        tos,
        ttl: 64,
        protocol: proto::UDP,
        df,
        id: 7,
    };
    ip::write_ipv4(
        &mut p,
        &h,
        Ipv4Addr::new(10, 1, 0, 10),
        Ipv4Addr::new(10, 2, 0, 10),
        total as u16,
    );
    p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    p
}

fn any_socket(_: SocketAddr) -> bool {
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn payload_is_the_full_packet_without_its_headers(
        outer_v6 in any::<bool>(),
        len in 28usize..1400,
        tos in any::<u8>(),
        df in any::<bool>(),
        copy_dscp in any::<bool>(),
        policy in prop_oneof![Just(DfBit::Clear), Just(DfBit::Set), Just(DfBit::Copy)],
    ) {
        let tweak = |s: &mut SaConfig| {
            s.copy_dscp = copy_dscp;
            s.df_bit = policy;
            s.ttl = 33;
        };
        let pkt = inner(len, tos, df);
        let mut full_engine = engine(Direction::Outbound, outer_v6, &tweak);
        let mut udp_engine = engine(Direction::Outbound, outer_v6, &tweak);
        let now = Instant::now();

        let mut full = PacketBuf::from_slice(&pkt);
        let (local, remote) = addrs(outer_v6);
        prop_assert_eq!(full_engine.outbound(now, &mut full, 0), Outbound::Transmit { dst: remote });
        let mut payload = PacketBuf::from_slice(&pkt);
        let t = match udp_engine.outbound_udp(now, &mut payload, 0, any_socket) {
            OutboundUdp::Payload(t) => t,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };

        let hlen = ip::outer_header_len(remote) + ip::UDP_HEADER_LEN;
        let f = full.data();
        prop_assert_eq!(&f[hlen..], payload.data());
        prop_assert_eq!(t.src, SocketAddr::new(local, 4500));
        prop_assert_eq!(t.dst, SocketAddr::new(remote, 4501));
        let udp = &f[hlen - 8..hlen];
        prop_assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 4500);
        prop_assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4501);
        if outer_v6 {
            prop_assert_eq!(t.tos, (f[0] << 4) | (f[1] >> 4));
            prop_assert_eq!(t.ttl, f[7]);
            prop_assert!(!t.df);
        } else {
            prop_assert_eq!(t.tos, f[1]);
            prop_assert_eq!(t.ttl, f[8]);
            prop_assert_eq!(t.df, f[6] & 0x40 != 0);
        }
        prop_assert_eq!(full_engine.stats(), udp_engine.stats());
        // Headers put back for the raw fallback give exactly the complete packet.
        let mut rebuilt = PacketBuf::from_slice(payload.data());
        t.push_headers(&mut rebuilt).unwrap();
        prop_assert_eq!(rebuilt.data(), full.data());

        // The peer accepts it as it arrives on its UDP socket.
        let mut peer = engine(Direction::Inbound, outer_v6, &tweak);
        let meta = UdpMeta { src: t.src, dst: t.dst, ecn: t.tos & 3 };
        prop_assert_eq!(peer.inbound_udp(now, &mut payload, meta), Inbound::Deliver { tunnel: 0 });
        prop_assert_eq!(payload.data(), &pkt[..]);
    }
}

/// A change to the test SA.
type Tweak = dyn Fn(&mut SaConfig);

#[test]
fn other_cases_are_exactly_outbound() {
    let now = Instant::now();
    let cases: [(&str, &Tweak, bool); 4] = [
        ("no UDP socket for the SA", &|_| {}, false),
        ("raw ESP", &|s| s.udp_encap = None, true),
        ("transport mode", &|s| s.mode = Mode::Transport, true),
        // Needs outer fragmentation (DF clear on the inner packet).
        ("fragmented", &|s| s.path_mtu = 600, true),
    ];
    for (name, tweak, socket) in cases {
        let pkt = inner(1000, 0, false);
        let mut a = engine(Direction::Outbound, false, tweak);
        let mut b = engine(Direction::Outbound, false, tweak);
        let mut x = PacketBuf::from_slice(&pkt);
        let mut y = PacketBuf::from_slice(&pkt);
        let want = a.outbound(now, &mut x, 0);
        let got = b.outbound_udp(now, &mut y, 0, |_| socket);
        assert_eq!(got, OutboundUdp::Packet(want), "{name}");
        assert_eq!(x.data(), y.data(), "{name}");
        assert_eq!(a.stats(), b.stats(), "{name}");
    }
}
