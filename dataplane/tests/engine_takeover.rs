//! SAs installed by a node taking over from another: the outbound sequence continues
//! above the replicated reservation and never passes the new one, the inbound window
//! rejects everything at or below the replicated mark, with and without extended
//! sequence numbers, and the marks the cluster replicates read back as installed.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use dataplane::buf::PacketBuf;
use dataplane::crypto::EncrAlg;
use dataplane::drop::DropReason;
use dataplane::engine::{Engine, EngineConfig, Inbound, Outbound, SeqMark};
use dataplane::fence::Fences;
use dataplane::ip::{self, OuterHeader, proto};
use dataplane::sa::{Direction, SaConfig};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const SPI: u32 = 0x2000_0001;
/// Offset of the ESP sequence number in a raw ESP packet over IPv4.
const SEQ_AT: usize = 20 + 4;

/// The SA as one end installs it: `A -> B` outbound on A, inbound on B.
fn sa(direction: Direction, esn: bool, initial_seq: u64, seq_limit: u64) -> SaConfig {
    let (local, remote) = match direction {
        Direction::Outbound => (A, B),
        Direction::Inbound => (B, A),
    };
    let mut c = SaConfig::esp_tunnel(direction, SPI, local, remote)
        .with_encryption(EncrAlg::AesGcm128, &[7; 20]);
    c.esn = esn;
    c.initial_seq = initial_seq;
    c.seq_limit = seq_limit;
    c
}

fn engine(sa: SaConfig) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    e.install_sa(sa).expect("installing the SA");
    e
}

/// A small IPv4 UDP packet from the LAN behind A.
fn inner() -> Vec<u8> {
    let (src, dst) = (Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10));
    let mut pkt = vec![0u8; 20 + 8 + 4];
    let h = OuterHeader {
        src: src.into(),
        dst: dst.into(),
        tos: 0,
        ttl: 64,
        protocol: proto::UDP,
        df: false,
        id: 1,
    };
    ip::write_ipv4(&mut pkt, &h, src, dst, 32);
    pkt[20..22].copy_from_slice(&5555u16.to_be_bytes());
    pkt[22..24].copy_from_slice(&7777u16.to_be_bytes());
    pkt[24..26].copy_from_slice(&12u16.to_be_bytes());
    pkt
}

/// Protects one packet; the wire bytes, or the drop.
fn send(a: &mut Engine) -> Result<Vec<u8>, Outbound> {
    let mut buf = PacketBuf::from_slice(&inner());
    match a.outbound(Instant::now(), &mut buf, 0) {
        Outbound::Transmit { .. } => Ok(buf.data().to_vec()),
        other => Err(other),
    }
}

fn wire_seq(wire: &[u8]) -> u32 {
    u32::from_be_bytes([
        wire[SEQ_AT],
        wire[SEQ_AT + 1],
        wire[SEQ_AT + 2],
        wire[SEQ_AT + 3],
    ])
}

fn receive(b: &mut Engine, wire: &[u8]) -> Inbound {
    let mut buf = PacketBuf::from_slice(wire);
    b.inbound_ip(Instant::now(), &mut buf)
}

fn only_mark(e: &Engine) -> SeqMark {
    let marks = e.seq_marks();
    assert_eq!(marks.len(), 1, "{marks:?}");
    marks[0]
}

/// The new active node installs the outbound SA with `initial_seq` = the last committed
/// reservation of the old one and `seq_limit` = its own first reservation: it sends
/// `initial_seq + 1` onwards, stops at the limit, and goes on after an extension. The
/// peer, whose window is at the old node's last packet, accepts every one (with ESN the
/// high half agrees across the 32-bit boundary).
#[test]
fn outbound_continues_above_initial_seq_and_never_passes_the_reservation() {
    for (esn, n) in [(false, 5_000u64), (true, (1u64 << 32) - 2)] {
        let mut a = engine(sa(Direction::Outbound, esn, n, n + 3));
        let mut b = engine(sa(Direction::Inbound, esn, n - 10, u64::MAX));
        assert_eq!(only_mark(&a).seq, n, "mark before the first packet");
        for k in 1..=3 {
            let wire = send(&mut a).unwrap_or_else(|o| panic!("esn={esn}: packet {k}: {o:?}"));
            assert_eq!(
                u64::from(wire_seq(&wire)),
                (n + k) & 0xffff_ffff,
                "esn={esn}"
            );
            assert_eq!(
                receive(&mut b, &wire),
                Inbound::Deliver { tunnel: 0 },
                "esn={esn}"
            );
        }
        assert_eq!(
            send(&mut a),
            Err(Outbound::Dropped(DropReason::SequenceNotReserved)),
            "esn={esn}: past the reservation"
        );
        assert_eq!(only_mark(&a).seq, n + 3, "a refused packet takes no number");
        assert!(a.extend_reservation(&only_mark(&a).key, n + 5));
        let wire = send(&mut a).expect("after the extension");
        assert_eq!(u64::from(wire_seq(&wire)), (n + 4) & 0xffff_ffff);
        assert_eq!(receive(&mut b, &wire), Inbound::Deliver { tunnel: 0 });
        assert_eq!(
            only_mark(&b),
            SeqMark {
                key: sa(Direction::Inbound, esn, 0, 0).key(),
                seq: n + 4,
            },
            "esn={esn}: the inbound mark carries all 64 bits"
        );
    }
}

/// The new active node installs the inbound SA with `initial_seq` = the replicated high
/// mark: a replay of anything the old node accepted (the mark and below, inside or left
/// of the window) is dropped, the sequence above it is accepted, and a replay of that
/// is dropped too.
#[test]
fn inbound_rejects_the_mark_and_everything_below() {
    for (esn, n) in [(false, 1_000u64), (true, (1u64 << 32) + 1)] {
        let mut b = engine(sa(Direction::Inbound, esn, n, u64::MAX));
        assert_eq!(only_mark(&b).seq, n);
        // The old node's traffic: n - 2 ..= n + 2 (with ESN, across the boundary).
        let mut a = engine(sa(Direction::Outbound, esn, n - 3, u64::MAX));
        let wires: Vec<Vec<u8>> = (0..5).map(|_| send(&mut a).expect("send")).collect();
        for (k, wire) in wires.iter().enumerate() {
            let seq = n - 2 + k as u64;
            let want = if seq <= n {
                Inbound::Dropped(DropReason::Replay)
            } else {
                Inbound::Deliver { tunnel: 0 }
            };
            assert_eq!(receive(&mut b, wire), want, "esn={esn} seq={seq}");
        }
        assert_eq!(
            receive(&mut b, &wires[4]),
            Inbound::Dropped(DropReason::Replay),
            "esn={esn}: replay of an accepted packet"
        );
        // Far left of the window: a packet from the SA's first days.
        let mut early = engine(sa(Direction::Outbound, esn, 0, u64::MAX));
        let wire = send(&mut early).expect("send");
        assert_eq!(receive(&mut b, &wire), Inbound::Dropped(DropReason::Replay));

        assert_eq!(only_mark(&b).seq, n + 2, "esn={esn}");
        let stats = b.stats();
        assert_eq!(stats.sas[0].counters.replay_drops, 5, "esn={esn}");
        assert_eq!(stats.sas[0].counters.packets, 2, "esn={esn}");
    }
}

/// Marks cover both directions of an engine, keyed by direction.
#[test]
fn seq_marks_report_every_sa() {
    let mut e = engine(sa(Direction::Outbound, false, 41, u64::MAX));
    e.install_sa(sa(Direction::Inbound, true, 1 << 40, u64::MAX))
        .expect("installing the inbound SA");
    send(&mut e).expect("send");
    let mut marks = e.seq_marks();
    marks.sort_by_key(|m| m.seq);
    assert_eq!(
        marks,
        vec![
            SeqMark {
                key: sa(Direction::Outbound, false, 0, 0).key(),
                seq: 42,
            },
            SeqMark {
                key: sa(Direction::Inbound, true, 0, 0).key(),
                seq: 1 << 40,
            },
        ]
    );
}

/// Fences are per redundancy group: with SAs of groups 1 and 2 on one engine (a node
/// primary of both), the end of group 2's lease drops group 2's packets in both
/// directions before they take a sequence number or move the replay window, while
/// group 1 and an SA without a group carry on; the groups used are reported for the
/// check before the send.
#[test]
fn a_passed_fence_stops_only_its_groups_sas() {
    let fences = Arc::new(Fences::new());
    let config = EngineConfig {
        fences: fences.clone(),
        ..EngineConfig::default()
    };
    let mut a = Engine::new(config.clone());
    let mut b = Engine::new(EngineConfig::default());
    // Tunnel t carries SPI + t in group `group` (tunnel 2: no group).
    let on = |direction, spi, (local, remote), tunnel, group| {
        let mut c = sa(direction, false, 0, u64::MAX);
        (c.spi, c.local, c.remote, c.binding, c.group) = (spi, local, remote, tunnel, group);
        c
    };
    for (tunnel, group) in [(0u32, Some(1u8)), (1, Some(2)), (2, None)] {
        let (out, back) = (SPI + tunnel, SPI + 100 + tunnel);
        a.install_sa(on(Direction::Outbound, out, (A, B), tunnel, group))
            .expect("outbound");
        b.install_sa(on(Direction::Outbound, back, (B, A), tunnel, None))
            .expect("peer's outbound");
        a.install_sa(on(Direction::Inbound, back, (A, B), tunnel, group))
            .expect("inbound");
    }
    let send_on = |e: &mut Engine, tunnel: u32, at: Instant| {
        let mut buf = PacketBuf::from_slice(&inner());
        match e.outbound(at, &mut buf, tunnel) {
            Outbound::Transmit { .. } => Ok(buf.data().to_vec()),
            other => Err(other),
        }
    };
    let now = Instant::now();
    fences.set(1, Some(now + std::time::Duration::from_secs(60)));
    fences.set(2, Some(now + std::time::Duration::from_secs(60)));
    for t in 0..3 {
        send_on(&mut a, t, now).expect("every group leased");
    }
    let used: Vec<u8> = a.take_groups().iter().collect();
    assert_eq!(used, vec![1, 2], "groups whose SAs carried packets");
    assert!(a.take_groups().is_empty(), "taken");

    // Group 2's lease ends.
    fences.set(2, Some(now));
    let marks_before = a.seq_marks();
    assert_eq!(
        send_on(&mut a, 1, now),
        Err(Outbound::Dropped(DropReason::Fenced))
    );
    let replies: Vec<Vec<u8>> = (0..3)
        .map(|t| send_on(&mut b, t, now).expect("peer"))
        .collect();
    assert_eq!(
        receive(&mut a, &replies[1]),
        Inbound::Dropped(DropReason::Fenced)
    );
    let mut after = a.seq_marks();
    let mut before = marks_before;
    after.sort_by_key(|m| m.key.spi);
    before.sort_by_key(|m| m.key.spi);
    assert_eq!(
        after, before,
        "a fenced packet takes no sequence number and moves no window"
    );
    assert!(a.take_groups().is_empty(), "a fenced packet uses no group");

    send_on(&mut a, 0, now).expect("group 1 still leased");
    send_on(&mut a, 2, now).expect("an SA without a group is never fenced");
    assert_eq!(receive(&mut a, &replies[0]), Inbound::Deliver { tunnel: 0 });
    assert_eq!(receive(&mut a, &replies[2]), Inbound::Deliver { tunnel: 2 });
    assert_eq!(a.take_groups().iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(a.stats().drops.get(DropReason::Fenced), 2);

    // Renewed: group 2 resumes where it stopped.
    fences.set(2, Some(now + std::time::Duration::from_secs(60)));
    let wire = send_on(&mut a, 1, now).expect("renewed");
    assert_eq!(wire_seq(&wire), 2, "the fenced packet took no number");
}
