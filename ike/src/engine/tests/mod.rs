//! Two IKE SAs talking through in-memory queues with a virtual clock, in the manner of
//! quinn-proto's `Pair`, with knobs for loss, duplication, reordering, a NAT in
//! front of the initiator, and the write-ahead replication and failover of one side
//! that a cluster node performs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::crypto::{DhGroup, Encr, Prf, SecretBytes};
use crate::wire::{AddrRange, Identity, IpSelector};

mod ah;
mod certs;
mod collision;
mod contact;
mod exchanges;
mod failover;
mod keylog;
mod mode;
mod natt;
mod restore;
mod setup;
mod window;

pub(super) const IP_I: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(super) const IP_R: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The initiator's NAT: its public address, and ports shifted by this much.
pub(super) const IP_NAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub(super) const NAT_SHIFT: u16 = 40000;

/// 2030-01-01T00:00:00Z: inside the validity of the test certificates (2025..2035).
pub(super) fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

pub(super) fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

pub(super) fn net(a: u8) -> IpSelector {
    IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::new(10, a, 0, 0),
        end: Ipv4Addr::new(10, a, 255, 255),
    })
}

pub(super) fn gcm_ecp() -> IkeSuite {
    IkeSuite {
        encr: Encr::AesGcm16_128,
        integ: None,
        prf: Prf::HmacSha256,
        dh: DhGroup::Ecp256,
    }
}

pub(super) fn esp_gcm() -> ChildSuite {
    ChildSuite::Esp {
        encr: Encr::AesGcm16_128,
        integ: None,
        esn: false,
    }
}

/// The interop README's setup: a.test ↔ b.test, 10.1/16 ↔ 10.2/16.
pub(super) fn config(initiator: bool) -> IkeConfig {
    let (local, remote, lnet, rnet) = if initiator {
        ("a.test", "b.test", 1, 2)
    } else {
        ("b.test", "a.test", 2, 1)
    };
    IkeConfig {
        remote_id: Some(Identity::Fqdn(remote.into())),
        ike_suites: vec![gcm_ecp()],
        child_suites: vec![esp_gcm()],
        local_ts: vec![net(lnet)],
        remote_ts: vec![net(rnet)],
        ..IkeConfig::new(
            Identity::Fqdn(local.into()),
            SecretBytes::from_slice(b"interop-test-psk-0123456789"),
        )
    }
}

pub(super) fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

/// What happens to one datagram on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Held back and delivered after the next datagram (reordering).
    Hold,
}

type Schedule = Box<dyn FnMut(usize, bool, &[u8]) -> Fate>;

/// One side replicated as the cluster node does it: a snapshot whenever its state
/// version changes, taken before it sends anything.
pub(super) struct Replica {
    /// The initiator's side when true.
    pub initiator: bool,
    /// What the side's standby is restored with.
    pub config: IkeConfig,
    /// The last snapshot, as bincode 2 put it on the cluster link, with the virtual
    /// time it was taken at.
    pub bytes: Vec<u8>,
    pub taken: Instant,
    pub version: u64,
    /// The last snapshot with its timers and retransmission counts cleared: when this
    /// changes, the version must have changed too.
    state: Vec<u8>,
    pub failovers: usize,
}

pub(super) fn encode(snapshot: &IkeSaSnapshot) -> Vec<u8> {
    bincode::serde::encode_to_vec(snapshot, bincode::config::standard()).unwrap()
}

/// Decodes as the node should: bounded, since the bytes come from the network.
pub(super) fn decode(bytes: &[u8]) -> Option<IkeSaSnapshot> {
    let config = bincode::config::standard().with_limit::<{ 1 << 20 }>();
    bincode::serde::decode_from_slice(bytes, config)
        .ok()
        .map(|(s, _)| s)
}

/// The snapshot without what `state_version` deliberately ignores.
fn timeless(mut s: IkeSaSnapshot) -> Vec<u8> {
    fn session(s: &mut super::snapshot::SessionSnapshot) {
        s.retire_in = None;
        if let Some(a) = &mut s.active {
            a.tries = 0;
            a.retransmit_in = Duration::ZERO;
        }
    }
    s.state_version = 0;
    s.since_last_seen = Duration::ZERO;
    s.ike_rekey_in = None;
    session(&mut s.session);
    s.retiring.iter_mut().for_each(session);
    if let Some((c, _)) = &mut s.ike_collision {
        session(c);
    }
    for c in &mut s.children {
        c.rekey_in = None;
        c.expire_in = None;
    }
    encode(&s)
}

pub(super) struct Pair {
    pub now: Instant,
    /// The calendar time both sides are told (certificates are checked against it).
    pub wall: SystemTime,
    pub initiator: IkeSa,
    pub responder: IkeSa,
    /// Datagrams put on the wire, `true` for the initiator's, for inspection.
    pub log: Vec<(bool, Vec<u8>)>,
    /// Transmits as the two sides described them.
    pub transmits: Vec<(bool, Transmit)>,
    pub fate: Schedule,
    /// The initiator sits behind a NAT that maps port p to p + this shift.
    pub nat: Option<u16>,
    held: Vec<(bool, Vec<u8>, SocketAddr, SocketAddr)>,
    sent: usize,
    /// Events drained so far, per side. After a failover, the new side's list starts
    /// with a `ChildSaReady` for each pair its node installs from the snapshot.
    pub events_i: Vec<Event>,
    pub events_r: Vec<Event>,
    pub replica: Option<Replica>,
    /// Fail the replicated side over when this many datagrams have been sent...
    pub fail_over_at: Option<usize>,
    /// ...once it has replicated its state (the next datagram is lost with it), or
    /// before.
    pub crash_after_replicating: bool,
}

impl Pair {
    pub fn new(ci: IkeConfig, cr: IkeConfig) -> Self {
        Self::with_seeds(ci, cr, 1, 2)
    }

    pub fn with_seeds(ci: IkeConfig, cr: IkeConfig, si: u64, sr: u64) -> Self {
        let now = Instant::now();
        Pair {
            now,
            wall: wall(),
            initiator: IkeSa::initiate(ci, addr(IP_I, 500), addr(IP_R, 500), rng(si), now).unwrap(),
            responder: IkeSa::respond(cr, addr(IP_R, 500), addr(IP_I, 500), rng(sr), now),
            log: Vec::new(),
            transmits: Vec::new(),
            fate: Box::new(|_, _, _| Fate::Deliver),
            nat: None,
            held: Vec::new(),
            sent: 0,
            events_i: Vec::new(),
            events_r: Vec::new(),
            replica: None,
            fail_over_at: None,
            crash_after_replicating: false,
        }
    }

    /// Starts replicating one side (its first snapshot is taken now).
    pub fn replicate_side(&mut self, initiator: bool, config: IkeConfig) {
        self.replica = Some(Replica {
            initiator,
            config,
            bytes: Vec::new(),
            taken: self.now,
            version: 0,
            state: Vec::new(),
            failovers: 0,
        });
        self.replicate();
    }

    /// The node's rule, applied before the replicated side sends anything: a new
    /// snapshot if the state version moved. Also checks that it moves exactly when
    /// the snapshot (timers aside) changes.
    pub fn replicate(&mut self) {
        let Some(r) = &mut self.replica else {
            return;
        };
        let sa = if r.initiator {
            &self.initiator
        } else {
            &self.responder
        };
        let version = sa.state_version();
        let Ok(snapshot) = sa.snapshot(self.now) else {
            return;
        };
        let state = timeless(snapshot.clone());
        assert!(version >= r.version, "the state version went back");
        if version == r.version {
            assert!(state == r.state, "the state changed but not its version");
            return;
        }
        r.bytes = encode(&snapshot);
        r.state = state;
        r.taken = self.now;
        r.version = version;
    }

    /// The replicated side's node dies (with whatever it had not sent) and its standby
    /// restores the last snapshot, anchored at the instant it was taken.
    pub fn fail_over(&mut self) {
        let Some(r) = &mut self.replica else {
            return;
        };
        let snapshot = decode(&r.bytes).expect("the replicated snapshot decodes");
        let installed: Vec<Event> = snapshot
            .child_installs()
            .cloned()
            .map(Event::ChildSaReady)
            .collect();
        let seed = 1000 + r.failovers as u64;
        let standby = IkeSa::restore(r.config.clone(), snapshot, rng(seed), r.taken).unwrap();
        r.failovers += 1;
        if r.initiator {
            self.initiator = standby;
            self.events_i = installed;
        } else {
            self.responder = standby;
            self.events_r = installed;
        }
    }

    /// Datagrams put on the wire so far.
    pub fn sent_count(&self) -> usize {
        self.sent
    }

    /// Drops the n-th datagram (counting from 0) once.
    pub fn drop_nth(&mut self, n: usize) {
        self.fate = Box::new(move |i, _, _| if i == n { Fate::Drop } else { Fate::Deliver });
    }

    fn deliver(&mut self, from_initiator: bool, data: &[u8], from: SocketAddr, to: SocketAddr) {
        let sa = if from_initiator {
            &mut self.responder
        } else {
            &mut self.initiator
        };
        let _ = sa.handle_datagram(self.now, self.wall, from, to, data);
    }

    /// Puts every queued datagram of one side on the wire; true if any moved.
    fn flush(&mut self, from_initiator: bool) -> bool {
        let mut buf = Vec::new();
        let mut moved = false;
        loop {
            let replicated = self
                .replica
                .as_ref()
                .is_some_and(|r| r.initiator == from_initiator);
            if replicated && self.crash_after_replicating {
                self.replicate();
            }
            if self.fail_over_at == Some(self.sent) {
                self.fail_over_at = None;
                self.fail_over();
            }
            if replicated {
                self.replicate();
            }
            let sa = if from_initiator {
                &mut self.initiator
            } else {
                &mut self.responder
            };
            let Some(t) = sa.poll_transmit(&mut buf) else {
                break;
            };
            moved = true;
            self.transmits.push((from_initiator, t));
            let (from, to) = if from_initiator {
                assert_eq!(t.destination.ip(), IpAddr::V4(IP_R));
                let from = match self.nat {
                    Some(shift) => addr(IP_NAT, t.local.port() + shift),
                    None => t.local,
                };
                (from, t.destination)
            } else if let Some(shift) = self.nat {
                assert_eq!(t.destination.ip(), IpAddr::V4(IP_NAT));
                (t.local, addr(IP_I, t.destination.port() - shift))
            } else {
                assert_eq!(t.destination.ip(), IpAddr::V4(IP_I));
                (t.local, t.destination)
            };
            self.log.push((from_initiator, buf.clone()));
            let n = self.sent;
            self.sent += 1;
            let fate = (self.fate)(n, from_initiator, &buf);
            let held = std::mem::take(&mut self.held);
            match fate {
                Fate::Deliver => self.deliver(from_initiator, &buf, from, to),
                Fate::Drop => {}
                Fate::Duplicate => {
                    self.deliver(from_initiator, &buf, from, to);
                    self.deliver(from_initiator, &buf, from, to);
                }
                Fate::Hold => self.held.push((from_initiator, buf.clone(), from, to)),
            }
            for (fi, d, f, t) in held {
                self.deliver(fi, &d, f, t);
            }
        }
        moved
    }

    fn drain_events(&mut self) {
        self.events_i
            .extend(std::iter::from_fn(|| self.initiator.poll_event()));
        self.events_r
            .extend(std::iter::from_fn(|| self.responder.poll_event()));
    }

    /// Moves datagrams both ways, jumping the virtual clock to the next deadline when
    /// nothing is in flight, until `limit` of virtual time has passed or both sides
    /// are quiet; panics on a livelock (more than 2000 steps).
    pub fn drive_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..2000 {
            let a = self.flush(true);
            let b = self.flush(false);
            self.drain_events();
            if a || b {
                continue;
            }
            if !self.held.is_empty() {
                for (fi, d, f, t) in std::mem::take(&mut self.held) {
                    self.deliver(fi, &d, f, t);
                }
                continue;
            }
            let next = [self.initiator.poll_timeout(), self.responder.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.initiator.handle_timeout(self.now);
                    self.responder.handle_timeout(self.now);
                }
                _ => return,
            }
        }
        panic!("no quiescence after 2000 steps");
    }

    /// Drives for two minutes of virtual time: enough for any exchange, its
    /// retransmissions and the retirement of old SAs.
    pub fn drive(&mut self) {
        self.drive_for(Duration::from_secs(120));
    }

    pub fn established(ci: IkeConfig, cr: IkeConfig) -> Self {
        let mut p = Pair::new(ci, cr);
        p.drive_for(Duration::from_secs(5));
        assert!(p.initiator.is_established() && p.responder.is_established());
        p
    }

    /// Both sides agree on the live child pairs: each one's inbound is the other's
    /// outbound. Returns the initiator's view.
    pub fn agreed_children(&self) -> Vec<(u32, u32)> {
        let ci = self.initiator.child_sas();
        let mut cr: Vec<(u32, u32)> = self
            .responder
            .child_sas()
            .into_iter()
            .map(|(i, o)| (o, i))
            .collect();
        let mut sorted = ci.clone();
        sorted.sort_unstable();
        cr.sort_unstable();
        assert_eq!(sorted, cr, "the two ends disagree about live child SAs");
        ci
    }
}

/// No orphans: every record is a live pair, what the events told the data plane
/// matches, and no old IKE SA is left. Returns the live pairs.
pub(super) fn settled(pair: &Pair) -> Vec<(u32, u32)> {
    let live = pair.agreed_children();
    assert_eq!(pair.initiator.child_records(), live.len());
    assert_eq!(pair.responder.child_records(), live.len());
    let mut ours: Vec<u32> = live.iter().map(|c| c.0).collect();
    ours.sort_unstable();
    let mut theirs: Vec<u32> = live.iter().map(|c| c.1).collect();
    theirs.sort_unstable();
    assert_eq!(live_from_events(&pair.events_i), ours);
    assert_eq!(live_from_events(&pair.events_r), theirs);
    assert_eq!(pair.initiator.retiring_count(), 0);
    assert_eq!(pair.responder.retiring_count(), 0);
    live
}

pub(super) fn installs(events: &[Event]) -> Vec<&ChildSaInstall> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaReady(c) => Some(c),
            _ => None,
        })
        .collect()
}

pub(super) fn deleted(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaDeleted { inbound_spi, .. } => Some(*inbound_spi),
            _ => None,
        })
        .collect()
}

/// The data plane's view built from events: installed minus deleted inbound SPIs.
pub(super) fn live_from_events(events: &[Event]) -> Vec<u32> {
    let gone = deleted(events);
    let mut live: Vec<u32> = installs(events)
        .iter()
        .map(|c| c.inbound.spi)
        .filter(|s| !gone.contains(s))
        .collect();
    live.sort_unstable();
    live
}
