//! End to end through real kernels: two network namespaces joined by a veth pair, a
//! manually keyed dataplane endpoint in each, traffic through the `st0.0` TUN devices.
//!
//! Needs root (namespaces, TUN, raw sockets) and these tools; CI installs them with
//!   apt-get update && apt-get install -y --no-install-recommends tcpdump iperf3 iputils-ping
//! Without root every `netns_` test fails with a message saying so; skip them with
//! `cargo test -- --skip netns_`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Capture, Encap, Topology};
use dataplane::drop::DropReason;
use dataplane::sa::Direction;
use dataplane::worker::{ControlError, Dataplane, DataplaneEvent, WorkerStats};

const MARKER: &[u8] = b"CLEARTEXT-MARKER-dpio-e2e";

fn require_root() {
    assert!(common::is_root(), "{}", common::ROOT_HINT);
}

/// Both endpoints running over a fresh topology; dropped in reverse order (dataplanes
/// stop before the namespaces go away).
struct Tunnel {
    /// Counters right after setup: the kernel may send something into `st0.0` (IPv6
    /// router solicitation) while only one side is up, and that packet is lost.
    base: (Vec<WorkerStats>, Vec<WorkerStats>),
    a: Dataplane,
    b: Dataplane,
    ep_a: common::Endpoint,
    ep_b: common::Endpoint,
    topo: Topology,
}

fn tunnel(name: &str, encap: Encap, outer_v6: bool, workers: usize) -> Tunnel {
    // The PID keeps concurrent runs (two checkouts, a developer and CI) apart.
    let pid = std::process::id();
    let topo = Topology::create(
        &format!("dpio-{name}-{pid}-a"),
        &format!("dpio-{name}-{pid}-b"),
    )
    .expect("creating namespaces");
    let (ep_a, ep_b) = common::endpoints(&topo, encap, outer_v6, workers);
    let a = common::start_endpoint(&ep_a).expect("starting endpoint A");
    let b = common::start_endpoint(&ep_b).expect("starting endpoint B");
    std::thread::sleep(Duration::from_millis(200));
    let base = (
        a.handle().stats_all().expect("stats A"),
        b.handle().stats_all().expect("stats B"),
    );
    Tunnel {
        base,
        a,
        b,
        ep_a,
        ep_b,
        topo,
    }
}

/// Waits until in-flight packets have been counted, then checks that every packet one
/// side protected was accepted by the other, in both directions.
fn assert_counters_match(t: &Tunnel) {
    std::thread::sleep(Duration::from_millis(300));
    let sa = t.a.handle().stats_all().expect("stats A");
    let sb = t.b.handle().stats_all().expect("stats B");
    let report = format!(
        "{}{}",
        common::format_stats("A", &sa),
        common::format_stats("B", &sb)
    );
    let delta = |now: &[WorkerStats], base: &[WorkerStats], spi| {
        common::sa_packets(now, spi) - common::sa_packets(base, spi)
    };
    let a_out = delta(&sa, &t.base.0, t.ep_a.outbound.spi);
    let b_in = delta(&sb, &t.base.1, t.ep_b.inbound.spi);
    let b_out = delta(&sb, &t.base.1, t.ep_b.outbound.spi);
    let a_in = delta(&sa, &t.base.0, t.ep_a.inbound.spi);
    assert!(a_out > 0 && b_out > 0, "no traffic counted:\n{report}");
    assert_eq!(a_out, b_in, "A->B packets differ:\n{report}");
    assert_eq!(b_out, a_in, "B->A packets differ:\n{report}");
    // The kernel's own IPv6 link-local chatter on a fresh st0.0 (router solicitation,
    // MLD) has no SA and is dropped as no_outbound_sa; nothing else may be dropped.
    for w in sa.iter().chain(&sb) {
        let drops = w.drops();
        let chatter = drops.get(DropReason::NoOutboundSa);
        assert!(chatter <= 4, "too many no_outbound_sa drops:\n{report}");
        assert_eq!(drops.total() - chatter, 0, "unexpected drops:\n{report}");
    }
}

fn transfer(t: &Tunnel, server: &str, len: usize) {
    let data = common::payload(len, MARKER);
    let server: SocketAddr = server.parse().expect("server address");
    let (got, took) =
        common::tcp_transfer(&t.topo.b.name, &t.topo.a.name, server, &data).expect("TCP transfer");
    assert_eq!(got.len(), data.len(), "received length");
    assert!(got == data, "received bytes differ from sent bytes");
    eprintln!("{len} bytes in {took:?}");
}

/// An IKE message handed to A's dataplane goes out on UDP 4500 behind the non-ESP marker
/// and comes out of B's event channel without it.
fn ike_reaches_the_control_side(t: &Tunnel) {
    let msg = b"IKE_SA_INIT probe".to_vec();
    let dst: SocketAddr = "192.0.2.2:4500".parse().expect("address");
    t.a.handle()
        .send_ike(None, dst, msg.clone())
        .expect("send_ike");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match t.b.events().recv_timeout(left) {
            Ok(DataplaneEvent::Ike {
                src,
                dst: to,
                message,
            }) => {
                assert_eq!(message, msg);
                assert_eq!(src.ip().to_string(), common::OUTER_A4);
                assert_eq!(to, dst);
                return;
            }
            Ok(_) => continue,
            Err(e) => panic!("no IKE message came out of B: {e}"),
        }
    }
}

#[test]
fn netns_esp_in_udp_ping_tcp_and_no_cleartext_on_the_wire() {
    require_root();
    let t = tunnel("udp", Encap::Udp, false, 2);
    let pcap = std::env::temp_dir().join("dpio-e2e-udp.pcap");
    let capture = Capture::start(&t.topo.a.name, &t.topo.veth_a, pcap).expect("tcpdump");

    let out = common::ping(&t.topo.a.name, "10.2.0.1", 3).expect("ping through the tunnel");
    assert!(out.contains(" 0% packet loss"), "{out}");
    transfer(&t, "10.2.0.1:5001", 4 << 20);
    ike_reaches_the_control_side(&t);
    // SPI steering: ESP-in-UDP lands on the anchor (worker 1); worker 0's socket only
    // gets what carries no SPI (the IKE probe).
    for dp in [&t.a, &t.b] {
        let w0 = dp.handle().stats(0).expect("stats");
        assert_eq!(w0.io.udp_rx, w0.io.ike_rx, "ESP-in-UDP not steered: {w0:?}");
    }

    let frames = capture.finish().expect("capture");
    let wire = common::summarize(&frames, MARKER);
    // With UDP GSO a capture on the veth sees each GSO send (up to 45 ESP packets) as
    // one frame, so count bytes: all 4 MiB must have crossed the wire as ESP in UDP.
    let wire_bytes: usize = frames.iter().map(Vec::len).sum();
    assert!(
        wire.esp_in_udp > 50 && wire_bytes > 4 << 20,
        "too little ESP-in-UDP on the wire ({wire_bytes} bytes): {wire:?}"
    );
    assert_eq!(
        wire.marker_hits, 0,
        "cleartext marker seen on the wire: {wire:?}"
    );
    assert_eq!(
        wire.cleartext_inner, 0,
        "inner packets seen on the wire: {wire:?}"
    );
    assert_counters_match(&t);
    // The device came up with a noqueue root, never the mq + 256 pfifo_fast default.
    let qdiscs = common::run(
        "tc",
        &[
            "-n",
            &t.topo.a.name,
            "qdisc",
            "show",
            "dev",
            common::TUN_NAME,
        ],
    )
    .expect("tc qdisc show");
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(
        qdiscs.starts_with("qdisc noqueue ")
            && qdiscs.contains(" root ")
            && qdiscs.lines().count() == 1,
        "{qdiscs}"
    );
    // Shutdown deletes the device's interface group (in one batch with any other
    // devices) while the workers still hold its queues.
    let link = common::run(
        "ip",
        &["-n", &t.topo.a.name, "link", "show", common::TUN_NAME],
    )
    .expect("ip link show");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains(" group default "), "{link}");
    let Tunnel { a, topo, .. } = t;
    a.shutdown();
    let gone = common::run(
        "ip",
        &["-n", &topo.a.name, "link", "show", common::TUN_NAME],
    );
    assert!(
        gone.is_err(),
        "{} still exists after shutdown",
        common::TUN_NAME
    );
}

#[test]
fn netns_raw_esp_ping_and_tcp() {
    require_root();
    let t = tunnel("raw", Encap::RawEsp, false, 2);
    let pcap = std::env::temp_dir().join("dpio-e2e-raw.pcap");
    let capture = Capture::start(&t.topo.a.name, &t.topo.veth_a, pcap).expect("tcpdump");

    let out = common::ping(&t.topo.a.name, "10.2.0.1", 3).expect("ping through the tunnel");
    assert!(out.contains(" 0% packet loss"), "{out}");
    transfer(&t, "10.2.0.1:5002", 2 << 20);

    let wire = common::summarize(&capture.finish().expect("capture"), MARKER);
    assert!(
        wire.esp > 500,
        "too few ESP (protocol 50) packets: {wire:?}"
    );
    assert_eq!(wire.esp_in_udp, 0, "{wire:?}");
    assert_eq!(
        wire.marker_hits, 0,
        "cleartext marker seen on the wire: {wire:?}"
    );
    assert_eq!(wire.cleartext_inner, 0, "{wire:?}");
    assert_counters_match(&t);
}

#[test]
fn netns_ipv6_outer_carries_ipv4_and_ipv6_inner() {
    require_root();
    let t = tunnel("v6", Encap::Udp, true, 1);
    let out = common::ping(&t.topo.a.name, "10.2.0.1", 2).expect("IPv4 ping over IPv6 outer");
    assert!(out.contains(" 0% packet loss"), "{out}");
    let out = common::ping(&t.topo.a.name, "fd10:2::1", 2).expect("IPv6 ping over IPv6 outer");
    assert!(out.contains(" 0% packet loss"), "{out}");
    transfer(&t, "[fd10:2::1]:5003", 1 << 20);
    assert_counters_match(&t);
}

#[test]
fn netns_raw_esp_over_ipv6_outer() {
    require_root();
    // IPv6 raw sockets never deliver the IP header: this checks the rebuilt one.
    let t = tunnel("raw6", Encap::RawEsp, true, 2);
    let out = common::ping(&t.topo.a.name, "fd10:2::1", 2).expect("IPv6 ping over raw ESP/IPv6");
    assert!(out.contains(" 0% packet loss"), "{out}");
    transfer(&t, "10.2.0.1:5004", 1 << 20);
    assert_counters_match(&t);
}

#[test]
fn netns_ah_over_ipv4_and_ipv6_outer() {
    require_root();
    for (name, outer_v6) in [("ah4", false), ("ah6", true)] {
        let t = tunnel(name, Encap::Ah, outer_v6, 1);
        let pcap = std::env::temp_dir().join(format!("dpio-e2e-{name}.pcap"));
        let capture = Capture::start(&t.topo.a.name, &t.topo.veth_a, pcap).expect("tcpdump");
        let out = common::ping(&t.topo.a.name, "10.2.0.1", 2).expect("ping over AH");
        assert!(out.contains(" 0% packet loss"), "{name}: {out}");
        transfer(&t, "10.2.0.1:5005", 256 << 10);
        let wire = common::summarize(&capture.finish().expect("capture"), MARKER);
        assert!(wire.ah > 100, "{name}: too few AH packets: {wire:?}");
        // AH authenticates but does not encrypt: the payload is visible on the wire.
        assert!(wire.marker_hits > 0, "{name}: {wire:?}");
        assert_counters_match(&t);
    }
}

#[test]
fn netns_offloaded_tun_and_udp_gso_transfer_is_byte_identical() {
    require_root();
    let t = tunnel("gso", Encap::Udp, false, 1);
    // IPv4 and IPv6 inner TCP: the TUN hands over super-packets, the worker segments
    // them, sends runs with UDP GSO, and the peer coalesces them again.
    transfer(&t, "10.2.0.1:5006", 8 << 20);
    transfer(&t, "[fd10:2::1]:5007", 4 << 20);
    let sa = t.a.handle().stats(0).expect("stats A");
    let sb = t.b.handle().stats(0).expect("stats B");
    assert!(sa.io.tun_rx_gso > 0, "no super-packet read: {:?}", sa.io);
    assert!(
        sa.io.udp_tx > 4 * sa.io.udp_tx_calls,
        "UDP GSO runs too short: {:?}",
        sa.io
    );
    assert!(sb.io.tun_tx_gro > 0, "nothing coalesced: {:?}", sb.io);
    assert!(
        sb.io.tun_tx > 4 * sb.io.tun_tx_gro,
        "coalesced writes too small: {:?}",
        sb.io
    );
    assert_counters_match(&t);
}

/// A one-second ping from `ns` to `dst` that is expected to get no reply; true if none
/// came.
fn ping_fails(ns: &str, dst: &str) -> bool {
    common::run(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-w", "1", dst,
        ],
    )
    .is_err()
}

/// A ping that must get every reply.
fn ping_ok(ns: &str, dst: &str, count: u32) {
    let out =
        common::ping(ns, dst, count).unwrap_or_else(|e| panic!("ping {dst} from {ns}: {e:#}"));
    assert!(out.contains(" 0% packet loss"), "{out}");
}

/// Drops for `reason` over the live workers of `dp`.
fn drops(dp: &Dataplane, reason: DropReason) -> u64 {
    let stats = dp.handle().stats_all().expect("stats");
    stats.iter().map(|w| w.drops().get(reason)).sum()
}

/// The sequence number mark of the SA with `spi` on `worker`.
fn mark(dp: &Dataplane, worker: usize, spi: u32) -> u64 {
    let marks = dp.handle().seq_marks(worker).expect("seq_marks");
    marks
        .iter()
        .find(|m| m.key.spi == spi)
        .unwrap_or_else(|| panic!("no SA {spi:#x} on worker {worker}: {marks:?}"))
        .seq
}

/// Waits for an IKE message equal to `msg` on `dp`'s event channel.
fn expect_ike(dp: &Dataplane, msg: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match dp.events().recv_timeout(left) {
            Ok(DataplaneEvent::Ike { message, .. }) if message == msg => return,
            Ok(_) => {}
            Err(e) => panic!(
                "IKE message {:?} did not arrive: {e}",
                String::from_utf8_lossy(msg)
            ),
        }
    }
}

/// Waits for the next `WorkerFailed` event on `dp`.
fn expect_failure(dp: &Dataplane) -> usize {
    loop {
        match dp.events().recv_timeout(Duration::from_secs(5)) {
            Ok(DataplaneEvent::WorkerFailed { worker }) => return worker,
            Ok(_) => {}
            Err(e) => panic!("no WorkerFailed event: {e}"),
        }
    }
}

/// A node whose lease on a redundancy group ends stops forwarding that group's SAs at
/// that instant by itself: a group nobody leased forwards nothing; with a lease both
/// directions pass, whatever other groups' fences say; after it A neither sends nor
/// accepts ESP (counted as fenced, no sequence number taken, replay window unmoved)
/// while IKE still passes both ways; a renewed lease (the fence moved later) and no
/// fence resume forwarding.
#[test]
fn netns_fence_stops_forwarding_at_the_deadline_and_extending_resumes() {
    require_root();
    let t = tunnel("fence", Encap::Udp, false, 1);
    let (ns_a, ns_b) = (&t.topo.a.name, &t.topo.b.name);
    let a = t.a.handle();
    // A's SAs belong to redundancy group 1 (installed again before any traffic).
    for dir in [Direction::Outbound, Direction::Inbound] {
        let mut sa = common::sa_config(&t.ep_a, dir);
        sa.group = Some(1);
        a.install_sa(t.ep_a.anchor, sa).expect("install_sa");
    }
    assert!(
        ping_fails(ns_a, "10.2.0.1"),
        "A forwarded a group nobody leased"
    );

    let until = Instant::now() + Duration::from_secs(2);
    a.set_fence(1, Some(until));
    a.set_fence(2, Some(Instant::now()));
    ping_ok(ns_a, "10.2.0.1", 1);
    ping_ok(ns_a, "10.2.0.1", 1);
    ping_ok(ns_b, "10.1.0.1", 1);
    std::thread::sleep(until.saturating_duration_since(Instant::now()) + Duration::from_millis(50));

    let out_seq = mark(&t.a, 0, t.ep_a.outbound.spi);
    let in_seq = mark(&t.a, 0, t.ep_a.inbound.spi);
    let fenced = drops(&t.a, DropReason::Fenced);
    assert!(ping_fails(ns_a, "10.2.0.1"), "A sent ESP after its fence");
    assert!(
        ping_fails(ns_b, "10.1.0.1"),
        "A accepted ESP after its fence"
    );
    assert!(
        drops(&t.a, DropReason::Fenced) >= fenced + 2,
        "fenced packets not counted:\n{}",
        common::format_stats("A", &a.stats_all().expect("stats"))
    );
    assert_eq!(
        mark(&t.a, 0, t.ep_a.outbound.spi),
        out_seq,
        "sequence numbers taken while fenced"
    );
    assert_eq!(
        mark(&t.a, 0, t.ep_a.inbound.spi),
        in_seq,
        "replay window moved while fenced"
    );

    let to_a: SocketAddr = "192.0.2.1:4500".parse().expect("address");
    let to_b: SocketAddr = "192.0.2.2:4500".parse().expect("address");
    t.b.handle()
        .send_ike(Some(to_b.ip()), to_a, b"to a fenced node".to_vec())
        .expect("send_ike");
    expect_ike(&t.a, b"to a fenced node");
    a.send_ike(Some(to_a.ip()), to_b, b"from a fenced node".to_vec())
        .expect("send_ike");
    expect_ike(&t.b, b"from a fenced node");

    a.set_fence(1, Some(Instant::now() + Duration::from_secs(60)));
    ping_ok(ns_a, "10.2.0.1", 2);
    ping_ok(ns_b, "10.1.0.1", 2);
    a.set_fence(1, None);
    ping_ok(ns_a, "10.2.0.1", 2);
    transfer(&t, "10.2.0.1:5010", 256 << 10);
    assert!(mark(&t.a, 0, t.ep_a.outbound.spi) > out_seq);
}

/// An SPU failure on A: the anchor of the tunnel's SAs (worker 1) fails, traffic stops,
/// and once the SAs are installed on the survivor (outbound above the replicated mark
/// plus a reservation block, inbound rejecting everything up to its mark) ping and TCP
/// flow again without anything renegotiated and without a replay drop at B. A worker
/// added afterwards leaves the tunnel undisturbed and can take its SAs over.
#[test]
fn netns_failed_worker_sas_reinstalled_on_a_survivor_carry_traffic() {
    require_root();
    let t = tunnel("spufail", Encap::Udp, false, 2);
    let (ns_a, a) = (&t.topo.a.name, t.a.handle());
    ping_ok(ns_a, "10.2.0.1", 2);
    transfer(&t, "10.2.0.1:5011", 256 << 10);

    // What the cluster replicated from the anchor.
    let out_seq = mark(&t.a, 1, t.ep_a.outbound.spi);
    let in_seq = mark(&t.a, 1, t.ep_a.inbound.spi);
    assert!(out_seq > 0 && in_seq > 0, "no traffic on the anchor");

    a.fail_worker(1).expect("failing the anchor");
    assert_eq!(expect_failure(&t.a), 1);
    assert_eq!(a.live_workers(), vec![0]);
    assert!(matches!(
        a.install_sa(1, common::sa_config(&t.ep_a, Direction::Inbound)),
        Err(ControlError::WorkerFailed(1))
    ));
    assert!(
        ping_fails(ns_a, "10.2.0.1"),
        "the failed anchor's SAs still carry traffic"
    );

    let install = |worker, out_initial, in_initial| {
        let mut inbound = common::sa_config(&t.ep_a, Direction::Inbound);
        inbound.initial_seq = in_initial;
        let mut outbound = common::sa_config(&t.ep_a, Direction::Outbound);
        outbound.initial_seq = out_initial;
        a.install_sa(worker, inbound)
            .expect("installing the inbound SA");
        a.install_sa(worker, outbound)
            .expect("installing the outbound SA");
    };
    install(0, out_seq + 1000, in_seq);
    ping_ok(ns_a, "10.2.0.1", 3);
    transfer(&t, "10.2.0.1:5012", 1 << 20);
    assert!(mark(&t.a, 0, t.ep_a.outbound.spi) > out_seq + 1000);
    assert_eq!(
        drops(&t.b, DropReason::Replay),
        0,
        "B saw reused sequence numbers"
    );

    // A new SPU: the tunnel keeps working beside it, then moves onto it.
    assert_eq!(a.add_worker().expect("adding a worker"), 2);
    assert_eq!(a.live_workers(), vec![0, 2]);
    ping_ok(ns_a, "10.2.0.1", 3);
    let out_seq = mark(&t.a, 0, t.ep_a.outbound.spi);
    let in_seq = mark(&t.a, 0, t.ep_a.inbound.spi);
    install(2, out_seq + 1000, in_seq);
    for dir in [Direction::Inbound, Direction::Outbound] {
        let key = common::sa_config(&t.ep_a, dir).key();
        assert!(a.remove_sa(0, key).expect("removing from worker 0"));
    }
    ping_ok(ns_a, "10.2.0.1", 3);
    transfer(&t, "10.2.0.1:5013", 1 << 20);
    let w2 = a.stats(2).expect("stats of the added worker");
    assert!(
        common::sa_packets(std::slice::from_ref(&w2), t.ep_a.outbound.spi) > 100,
        "the added worker carries no traffic: {w2:?}"
    );
    assert_eq!(
        drops(&t.b, DropReason::Replay),
        0,
        "B saw reused sequence numbers"
    );
}

/// The worker that reads raw ESP (and one TUN queue) fails on both sides while the
/// tunnel's SAs live on the other worker: the raw socket moves to the survivor, the
/// kernel moves the TUN flows to the remaining queue, and the tunnel carries on with
/// nothing reinstalled.
#[test]
fn netns_raw_receive_moves_when_its_worker_fails() {
    require_root();
    let t = tunnel("rawfail", Encap::RawEsp, false, 2);
    ping_ok(&t.topo.a.name, "10.2.0.1", 2);
    for dp in [&t.a, &t.b] {
        dp.handle().fail_worker(0).expect("failing worker 0");
        assert_eq!(expect_failure(dp), 0);
    }
    ping_ok(&t.topo.a.name, "10.2.0.1", 3);
    transfer(&t, "10.2.0.1:5014", 1 << 20);
    let w1 = t.b.handle().stats(1).expect("stats");
    assert!(
        w1.io.raw_rx > 100,
        "raw ESP not read by the survivor: {:?}",
        w1.io
    );
}
