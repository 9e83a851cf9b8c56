//! Property: whatever is lost, duplicated or reordered while rekeys, creates and
//! deletes run on both sides at once, the two ends end up agreeing about the set of
//! live child SAs, and the events they emitted describe exactly that set.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use ike::crypto::{DhGroup, Encr, Prf, SecretBytes};
use ike::engine::{ChildSuite, Event, IkeConfig, IkeSa, IkeSuite, Retransmit};
use ike::wire::{AddrRange, Identity, IpSelector};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn net(a: u8) -> IpSelector {
    IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::new(10, a, 0, 0),
        end: Ipv4Addr::new(10, a, 255, 255),
    })
}

/// With `fragment`, messages go in 200-octet SKF fragments (many selectors make the
/// IKE_AUTH and CREATE_CHILD_SA messages large enough).
fn config_with(initiator: bool, fragment: bool) -> IkeConfig {
    let mut c = config(initiator);
    if fragment {
        c.fragment_size = 200;
        let extra = (100..110).map(net);
        if initiator {
            c.local_ts.extend(extra);
        } else {
            c.remote_ts.extend(extra);
        }
    }
    c
}

fn config(initiator: bool) -> IkeConfig {
    let (local, remote, l, r) = if initiator {
        ("a.test", "b.test", 1, 2)
    } else {
        ("b.test", "a.test", 2, 1)
    };
    IkeConfig {
        remote_id: Some(Identity::Fqdn(remote.into())),
        ike_suites: vec![IkeSuite {
            encr: Encr::AesGcm16_128,
            integ: None,
            prf: Prf::HmacSha256,
            dh: DhGroup::Curve25519,
        }],
        child_suites: vec![ChildSuite::Esp {
            encr: Encr::AesGcm16_128,
            integ: None,
            esn: false,
        }],
        local_ts: vec![net(l)],
        remote_ts: vec![net(r)],
        // Enough tries that the bounded faulty prefix cannot make a peer look dead.
        retransmit: Retransmit {
            initial: Duration::from_secs(1),
            max_tries: 12,
        },
        ..IkeConfig::new(
            Identity::Fqdn(local.into()),
            SecretBytes::from_slice(b"interop-test-psk-0123456789"),
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    RekeyChild { by_initiator: bool },
    CreateChild,
    DeleteChild { by_initiator: bool },
    RekeyIke { by_initiator: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Hold,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(|b| Op::RekeyChild { by_initiator: b }),
        Just(Op::CreateChild),
        any::<bool>().prop_map(|b| Op::DeleteChild { by_initiator: b }),
        any::<bool>().prop_map(|b| Op::RekeyIke { by_initiator: b }),
    ]
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Deliver),
        2 => Just(Fate::Drop),
        1 => Just(Fate::Duplicate),
        1 => Just(Fate::Hold),
    ]
}

struct Net {
    now: Instant,
    sides: [IkeSa; 2],
    events: [Vec<Event>; 2],
    fates: Vec<Fate>,
    sent: usize,
    held: Vec<(usize, Vec<u8>, SocketAddr, SocketAddr)>,
}

impl Net {
    fn deliver(&mut self, to: usize, data: &[u8], src: SocketAddr, dst: SocketAddr) {
        let _ = self.sides[to].handle_datagram(self.now, SystemTime::UNIX_EPOCH, src, dst, data);
    }

    fn flush(&mut self) -> bool {
        let mut moved = false;
        let mut buf = Vec::new();
        for from in 0..2 {
            while let Some(t) = self.sides[from].poll_transmit(&mut buf) {
                moved = true;
                let fate = self.fates.get(self.sent).copied().unwrap_or(Fate::Deliver);
                self.sent += 1;
                let held = std::mem::take(&mut self.held);
                let to = 1 - from;
                match fate {
                    Fate::Deliver => self.deliver(to, &buf.clone(), t.local, t.destination),
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        self.deliver(to, &buf.clone(), t.local, t.destination);
                        self.deliver(to, &buf.clone(), t.local, t.destination);
                    }
                    Fate::Hold => self.held.push((to, buf.clone(), t.local, t.destination)),
                }
                for (to, d, s, dst) in held {
                    self.deliver(to, &d, s, dst);
                }
            }
        }
        for i in 0..2 {
            while let Some(e) = self.sides[i].poll_event() {
                self.events[i].push(e);
            }
        }
        moved
    }

    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..5000 {
            if self.flush() {
                continue;
            }
            if !self.held.is_empty() {
                for (to, d, s, dst) in std::mem::take(&mut self.held) {
                    self.deliver(to, &d, s, dst);
                }
                continue;
            }
            let next = self.sides.iter().filter_map(IkeSa::poll_timeout).min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    for s in &mut self.sides {
                        s.handle_timeout(self.now);
                    }
                }
                _ => return,
            }
        }
        panic!("no quiescence");
    }
}

/// Inbound SPIs the data plane would hold after applying the events in order.
fn data_plane(events: &[Event]) -> BTreeSet<u32> {
    let mut live = BTreeSet::new();
    for e in events {
        match e {
            Event::ChildSaReady(c) => {
                live.insert(c.inbound.spi);
            }
            Event::ChildSaDeleted { inbound_spi, .. } => {
                live.remove(inbound_spi);
            }
            _ => {}
        }
    }
    live
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn both_ends_agree_on_live_child_sas(
        ops in prop::collection::vec(op(), 1..4),
        fates in prop::collection::vec(fate(), 0..24),
        seed in 0u64..1000,
        fragment in any::<bool>(),
    ) {
        let now = Instant::now();
        let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
        let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);
        let rng = |s| Box::new(ChaCha20Rng::seed_from_u64(s));
        let i = IkeSa::initiate(config_with(true, fragment), a, b, rng(seed), now).unwrap();
        let r = IkeSa::respond(config_with(false, fragment), b, a, rng(seed + 1), now);
        let mut net = Net {
            now,
            sides: [i, r],
            events: [Vec::new(), Vec::new()],
            fates: Vec::new(),
            sent: 0,
            held: Vec::new(),
        };
        net.run(Duration::from_secs(5));
        prop_assert!(net.sides[0].is_established() && net.sides[1].is_established());
        net.fates = std::iter::repeat_n(Fate::Deliver, net.sent).chain(fates).collect();
        let now = net.now;
        for op in ops {
            let side = |by_initiator: bool| usize::from(!by_initiator);
            match op {
                Op::RekeyChild { by_initiator } => {
                    let s = side(by_initiator);
                    if let Some((inbound, _)) = net.sides[s].child_sas().first().copied() {
                        let _ = net.sides[s].rekey_child(inbound, now);
                    }
                }
                Op::CreateChild => {
                    let child = config_with(true, fragment).first_child();
                    let _ = net.sides[0].create_child(child, now);
                }
                Op::DeleteChild { by_initiator } => {
                    let s = side(by_initiator);
                    if let Some((inbound, _)) = net.sides[s].child_sas().first().copied() {
                        let _ = net.sides[s].delete_child(inbound, now);
                    }
                }
                Op::RekeyIke { by_initiator } => {
                    let _ = net.sides[side(by_initiator)].rekey_ike(now);
                }
            }
        }
        // Long enough for every retransmission and the retirement of old SAs.
        net.run(Duration::from_secs(3 * 3600));
        let [i, r] = &net.sides;
        prop_assert!(i.is_established() && r.is_established());
        prop_assert_eq!(i.spis(), r.spis());
        let ours: BTreeSet<(u32, u32)> = i.child_sas().into_iter().collect();
        let theirs: BTreeSet<(u32, u32)> = r.child_sas().into_iter().map(|(a, b)| (b, a)).collect();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(data_plane(&net.events[0]), ours.iter().map(|c| c.0).collect());
        prop_assert_eq!(data_plane(&net.events[1]), ours.iter().map(|c| c.1).collect());
    }
}
