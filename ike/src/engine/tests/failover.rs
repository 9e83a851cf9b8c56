//! Stateful failover: one side replicated write-ahead (a bincode 2 snapshot whenever
//! its state version moves, before it sends), then its node dies and the standby
//! restores the last snapshot. The peer must never notice: no IKE_SA_INIT, the same
//! SPIs, message IDs that carry on, exchanges in flight completed, and in the end both
//! ends hold the same child SAs and one IKE SA.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::crypto::Integ;
use crate::engine::snapshot::ActiveKindSnapshot;
use crate::wire::{ExchangeType, Header};

fn gcm256_ecp256() -> (IkeSuite, ChildSuite) {
    let ike = IkeSuite {
        encr: Encr::AesGcm16_256,
        integ: None,
        prf: Prf::HmacSha256,
        dh: DhGroup::Ecp256,
    };
    let esp = ChildSuite::Esp {
        encr: Encr::AesGcm16_256,
        integ: None,
        esn: false,
    };
    (ike, esp)
}

fn cbc_sha256_modp2048() -> (IkeSuite, ChildSuite) {
    let ike = IkeSuite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
        prf: Prf::HmacSha256,
        dh: DhGroup::Modp2048,
    };
    let esp = ChildSuite::Esp {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha256_128),
        esn: true,
    };
    (ike, esp)
}

fn cbc_sha256_x25519() -> (IkeSuite, ChildSuite) {
    let (_, esp) = cbc_sha256_modp2048();
    let ike = IkeSuite {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha256_128),
        prf: Prf::HmacSha384,
        dh: DhGroup::Curve25519,
    };
    (ike, esp)
}

/// The test configuration with one suite each and, with `pfs`, CREATE_CHILD_SA KE
/// payloads of the IKE group (so child exchanges in flight carry a DH private value).
fn suite_config(initiator: bool, (ike, esp): (IkeSuite, ChildSuite), pfs: bool) -> IkeConfig {
    IkeConfig {
        ike_suites: vec![ike],
        child_suites: vec![esp],
        child_pfs: pfs.then_some(ike.dh),
        ..config(initiator)
    }
}

/// An established pair whose initiator (A) is replicated.
fn replicated(suite: (IkeSuite, ChildSuite), pfs: bool) -> Pair {
    let ci = suite_config(true, suite, pfs);
    let mut pair = Pair::established(ci.clone(), suite_config(false, suite, pfs));
    pair.replicate_side(true, ci);
    pair
}

fn header(datagram: &[u8]) -> Header {
    Header::parse(datagram).unwrap().header
}

/// Headers put on the wire since log entry `from`, with the sending side.
fn headers_since(pair: &Pair, from: usize) -> Vec<(bool, Header)> {
    pair.log[from..]
        .iter()
        .map(|(by_initiator, d)| (*by_initiator, header(d)))
        .collect()
}

/// The peer saw no new IKE SA being set up since the first failover.
fn no_new_ike_sa(pair: &Pair, since: usize) {
    assert!(
        headers_since(pair, since)
            .iter()
            .all(|(_, h)| h.exchange != ExchangeType::IkeSaInit),
        "IKE_SA_INIT after the failover"
    );
}

/// One queued datagram of a side put on the wire (after the node's replication rule)
/// and delivered or lost; returns it.
fn send_one(pair: &mut Pair, by_initiator: bool, deliver: bool) -> Vec<u8> {
    if pair
        .replica
        .as_ref()
        .is_some_and(|r| r.initiator == by_initiator)
    {
        pair.replicate();
    }
    let mut buf = Vec::new();
    let t = side(pair, by_initiator)
        .poll_transmit(&mut buf)
        .expect("a datagram to send");
    pair.log.push((by_initiator, buf.clone()));
    if deliver {
        pair.deliver(by_initiator, &buf, t.local, t.destination);
    }
    buf
}

fn drain(sa: &mut IkeSa) -> Vec<Event> {
    std::iter::from_fn(|| sa.poll_event()).collect()
}

#[test]
fn standby_carries_on_every_exchange() {
    let cases = [
        (gcm256_ecp256(), false),
        (cbc_sha256_modp2048(), true),
        (cbc_sha256_x25519(), true),
    ];
    for (suite, pfs) in cases {
        let ci = suite_config(true, suite, pfs);
        let mut cr = suite_config(false, suite, pfs);
        cr.dpd_interval = Some(Duration::from_secs(10));
        let mut pair = Pair::established(ci.clone(), cr);
        pair.replicate_side(true, ci);
        let spis = pair.initiator.spis();
        let next_id = pair.initiator.next_message_id();
        let children = pair.agreed_children();
        pair.fail_over();
        let start = pair.log.len();
        assert!(pair.initiator.is_established());
        assert_eq!(pair.initiator.spis(), spis);
        assert_eq!(pair.initiator.next_message_id(), next_id);
        assert_eq!(pair.initiator.child_sas(), children);
        assert!(
            pair.initiator.poll_event().is_none(),
            "restore reports nothing"
        );

        // B's DPD is answered by A2.
        pair.drive_for(Duration::from_secs(15));
        let dpd = headers_since(&pair, start);
        assert!(dpd.iter().any(|(by_a, h)| !by_a && !h.flags.response()));
        assert!(dpd.iter().any(|(by_a, h)| *by_a && h.flags.response()));
        assert!(!pair.events_r.contains(&Event::PeerDead));

        // A fails over again, to a standby configured with DPD: A3's DPD reaches B
        // under the message ID A would have used next.
        pair.replica.as_mut().unwrap().config.dpd_interval = Some(Duration::from_secs(5));
        pair.fail_over();
        let mark = pair.log.len();
        pair.drive_for(Duration::from_secs(8));
        let ours: Vec<Header> = headers_since(&pair, mark)
            .into_iter()
            .filter(|(by_a, h)| *by_a && !h.flags.response())
            .map(|(_, h)| h)
            .collect();
        assert_eq!(ours[0].exchange, ExchangeType::Informational);
        assert_eq!(Some(ours[0].message_id), next_id);
        assert_eq!(pair.initiator.next_message_id(), next_id.map(|i| i + 1));

        // Child rekeys by A3 and by B.
        let old = settled(&pair)[0];
        pair.initiator.rekey_child(old.0, pair.now).unwrap();
        pair.drive();
        let after_ours = settled(&pair);
        assert_eq!(after_ours.len(), 1);
        assert_ne!(after_ours[0], old);
        pair.responder
            .rekey_child(after_ours[0].1, pair.now)
            .unwrap();
        pair.drive();
        let after_theirs = settled(&pair);
        assert_eq!(after_theirs.len(), 1);
        assert_ne!(after_theirs[0], after_ours[0]);

        // IKE rekeys by A3 and by B: only they change the SPIs.
        assert_eq!(pair.initiator.spis(), spis);
        pair.initiator.rekey_ike(pair.now).unwrap();
        pair.drive();
        let rekeyed = pair.initiator.spis();
        assert_ne!(rekeyed, spis);
        assert_eq!(pair.responder.spis(), rekeyed);
        pair.responder.rekey_ike(pair.now).unwrap();
        pair.drive();
        assert_ne!(pair.initiator.spis(), rekeyed);
        assert_eq!(pair.responder.spis(), pair.initiator.spis());
        assert_eq!(settled(&pair), after_theirs);

        // An extra child, then deletes.
        pair.initiator
            .create_child(suite_config(true, suite, pfs).first_child(), pair.now)
            .unwrap();
        pair.drive();
        let two = settled(&pair);
        assert_eq!(two.len(), 2);
        pair.initiator.delete_child(two[0].0, pair.now).unwrap();
        pair.drive();
        assert_eq!(settled(&pair), vec![two[1]]);
        assert!(pair.initiator.is_established() && pair.responder.is_established());
        no_new_ike_sa(&pair, start);
        pair.responder.delete(pair.now).unwrap();
        pair.drive();
        assert!(pair.initiator.is_closed() && pair.responder.is_closed());
        assert_eq!(pair.events_i.last(), Some(&Event::Closed { by_peer: true }));
    }
}

#[test]
fn timers_keep_their_distance_from_the_snapshot() {
    let mut ci = config(true);
    ci.dpd_interval = Some(Duration::from_secs(30));
    ci.ike_lifetime = Some(Duration::from_secs(3600));
    ci.child_lifetime = Some(ChildLifetime {
        soft: Duration::from_secs(600),
        hard: Duration::from_secs(700),
    });
    let mut pair = Pair::established(ci.clone(), config(false));
    pair.now += Duration::from_secs(7);
    let snapshot = pair.initiator.snapshot(pair.now).unwrap();
    let due = pair.initiator.poll_timeout().unwrap() - pair.now;
    // Another process, another clock.
    let elsewhere = pair.now + Duration::from_secs(86_400);
    let restored = IkeSa::restore(
        ci.clone(),
        decode(&encode(&snapshot)).unwrap(),
        rng(9),
        elsewhere,
    );
    let restored = restored.unwrap();
    assert_eq!(restored.poll_timeout().unwrap() - elsewhere, due);
    // A peer silent for longer than the clock can go back: DPD is simply due.
    let mut silent = snapshot;
    silent.since_last_seen = Duration::MAX;
    let restored = IkeSa::restore(ci, silent, rng(9), elsewhere).unwrap();
    assert_eq!(restored.poll_timeout(), Some(elsewhere));
}

/// Ways the node running A can die around one exchange.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// A's request was lost with it.
    RequestLost,
    /// The request arrived, the answer was lost.
    ResponseLost,
    /// The answer arrives at the standby.
    ResponseToStandby,
    /// A processed the answer but died before replicating what followed.
    Unreplicated,
}

const CRASHES: [Crash; 4] = [
    Crash::RequestLost,
    Crash::ResponseLost,
    Crash::ResponseToStandby,
    Crash::Unreplicated,
];

#[derive(Debug, Clone, Copy)]
enum Exchange {
    RekeyChild,
    RekeyIke,
    CreateChild,
    DeleteChild,
}

const EXCHANGES: [Exchange; 4] = [
    Exchange::RekeyChild,
    Exchange::RekeyIke,
    Exchange::CreateChild,
    Exchange::DeleteChild,
];

/// Starts the exchange on one side.
fn start(pair: &mut Pair, by_initiator: bool, exchange: Exchange, pfs: bool) {
    let now = pair.now;
    let suite = gcm256_ecp256();
    let child = pair.agreed_children()[0];
    let spi = if by_initiator { child.0 } else { child.1 };
    let sa = side(pair, by_initiator);
    match exchange {
        Exchange::RekeyChild => sa.rekey_child(spi, now),
        Exchange::RekeyIke => sa.rekey_ike(now),
        Exchange::CreateChild => {
            sa.create_child(suite_config(by_initiator, suite, pfs).first_child(), now)
        }
        Exchange::DeleteChild => sa.delete_child(spi, now),
    }
    .unwrap();
}

/// After the exchange and the failover, both ends agree on what the exchange made.
fn check_outcome(pair: &Pair, exchange: Exchange, before: (u64, u64), child: (u32, u32)) {
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    assert_eq!(pair.initiator.spis(), pair.responder.spis());
    let live = settled(pair);
    match exchange {
        Exchange::RekeyChild => assert!(live.len() == 1 && live[0] != child),
        Exchange::RekeyIke => {
            assert_ne!(pair.initiator.spis(), before);
            assert_eq!(live, vec![child]);
        }
        Exchange::CreateChild => assert!(live.len() == 2 && live.contains(&child)),
        Exchange::DeleteChild => assert!(live.is_empty()),
    }
}

#[test]
fn our_request_in_flight_is_finished_by_the_standby() {
    for exchange in EXCHANGES {
        for crash in CRASHES {
            let mut pair = replicated(gcm256_ecp256(), true);
            let (spis, child) = (pair.initiator.spis(), pair.agreed_children()[0]);
            start(&mut pair, true, exchange, true);
            let mark = pair.log.len();
            let request = send_one(&mut pair, true, !matches!(crash, Crash::RequestLost));
            let mut original = Vec::new();
            match crash {
                Crash::RequestLost | Crash::ResponseToStandby => {}
                Crash::ResponseLost => {
                    send_one(&mut pair, false, false);
                }
                Crash::Unreplicated => {
                    send_one(&mut pair, false, true);
                    original = drain(&mut pair.initiator);
                }
            }
            pair.fail_over();
            pair.drive();
            check_outcome(&pair, exchange, spis, child);
            // Unless the answer reached it, the standby repeated A's request byte for
            // byte.
            let resent = pair.log[mark + 1..]
                .iter()
                .any(|(by_a, d)| *by_a && *d == request);
            let answered = matches!(crash, Crash::ResponseToStandby);
            assert!(resent != answered, "{exchange:?} {crash:?}");
            // What A had derived before dying, the standby derives again.
            for e in installs(&original) {
                assert!(installs(&pair.events_i).contains(&e), "{exchange:?}");
            }
            no_new_ike_sa(&pair, mark);
        }
    }
}

#[test]
fn peer_request_answered_before_the_crash_is_answered_again() {
    for exchange in EXCHANGES {
        for replicated_answer in [true, false] {
            let mut pair = replicated(gcm256_ecp256(), true);
            let (spis, child) = (pair.initiator.spis(), pair.agreed_children()[0]);
            start(&mut pair, false, exchange, true);
            let mark = pair.log.len();
            send_one(&mut pair, false, true);
            // A answered; the answer is lost, or A died before replicating it (and so
            // before sending it).
            let answer = replicated_answer.then(|| send_one(&mut pair, true, false));
            pair.fail_over();
            if matches!(exchange, Exchange::RekeyIke) && replicated_answer {
                // A moved to the new IKE SA when it answered; the peer retransmits on
                // the old one, which the restored SA must still answer for.
                let ours = pair.initiator.local_spis();
                assert_ne!(ours[0], spis.0, "the current SA is the new one");
                assert!(
                    ours[1..].contains(&spis.0),
                    "old SA not answered for: {ours:x?}"
                );
            }
            pair.drive();
            check_outcome(&pair, exchange, spis, child);
            if let Some(answer) = answer {
                assert!(
                    pair.log[mark + 2..]
                        .iter()
                        .any(|(by_a, d)| *by_a && *d == answer),
                    "{exchange:?}: the cached answer was not sent again"
                );
            }
            no_new_ike_sa(&pair, mark);
        }
    }
}

#[test]
fn rekey_collision_snapshotted_mid_way_resolves_the_same() {
    for exchange in [Exchange::RekeyIke, Exchange::RekeyChild] {
        let mut a_won = [0; 2];
        for seed in 0..10 {
            let ci = suite_config(true, gcm256_ecp256(), true);
            let cr = suite_config(false, gcm256_ecp256(), true);
            let mut pair = Pair::with_seeds(ci.clone(), cr, seed, seed + 70);
            pair.drive_for(Duration::from_secs(5));
            pair.replicate_side(true, ci);
            let (spis, child) = (pair.initiator.spis(), pair.agreed_children()[0]);
            start(&mut pair, true, exchange, true);
            start(&mut pair, false, exchange, true);
            send_one(&mut pair, true, true);
            // B's own request reaches A, which now knows of the collision; A's answer
            // leaves the replicated state and is lost with the node.
            send_one(&mut pair, false, true);
            send_one(&mut pair, true, false);
            let snapshot = decode(&pair.replica.as_ref().unwrap().bytes).unwrap();
            match exchange {
                Exchange::RekeyIke => assert!(snapshot.ike_collision.is_some()),
                _ => assert!(matches!(
                    snapshot.session.active.as_ref().map(|a| &a.kind),
                    Some(ActiveKindSnapshot::CreateChild(c)) if c.collision.is_some()
                )),
            }
            pair.fail_over();
            pair.drive();
            check_outcome(&pair, exchange, spis, child);
            // Whose rekey won: A's if A initiated the surviving IKE SA; for children,
            // the winner also installed the loser's pair until it was deleted.
            let won = match exchange {
                Exchange::RekeyIke => pair.initiator.is_initiator(),
                _ => {
                    let replacing = installs(&pair.events_i)
                        .iter()
                        .filter(|c| c.rekeys == Some(child.0))
                        .count();
                    replacing == 2
                }
            };
            a_won[usize::from(won)] += 1;
        }
        assert!(a_won[0] > 0 && a_won[1] > 0, "{exchange:?}: {a_won:?}");
    }
}

#[test]
fn collisions_in_progress_survive_a_failover_anywhere() {
    for ike in [false, true] {
        for at in 0..8 {
            for (seed, replicated) in [(0, false), (1, true), (2, false), (3, true)] {
                let ci = suite_config(true, gcm256_ecp256(), true);
                let cr = suite_config(false, gcm256_ecp256(), true);
                let mut pair = Pair::with_seeds(ci.clone(), cr, seed, seed + 40);
                pair.drive_for(Duration::from_secs(5));
                pair.replicate_side(true, ci);
                let (spis, child) = (pair.initiator.spis(), pair.agreed_children()[0]);
                let exchange = if ike {
                    Exchange::RekeyIke
                } else {
                    Exchange::RekeyChild
                };
                start(&mut pair, true, exchange, true);
                start(&mut pair, false, exchange, true);
                let mark = pair.log.len();
                pair.fail_over_at = Some(pair.sent_count() + at);
                pair.crash_after_replicating = replicated;
                pair.drive();
                check_outcome(&pair, exchange, spis, child);
                let r = pair.replica.as_ref().unwrap();
                assert_eq!(r.failovers, 1, "{exchange:?} at {at}");
                no_new_ike_sa(&pair, mark);
            }
        }
    }
}

#[test]
fn state_version_moves_with_messages_not_timers() {
    let mut ci = config(true);
    ci.dpd_interval = Some(Duration::from_secs(10));
    let mut pair = Pair::established(ci, config(false));
    let v0 = pair.initiator.state_version();
    assert_eq!(
        pair.initiator.state_version(),
        v0,
        "asking twice changes nothing"
    );
    // A timer that only reschedules: no new version.
    pair.initiator
        .note_inbound_traffic(pair.now + Duration::from_secs(5));
    pair.initiator
        .handle_timeout(pair.now + Duration::from_secs(5));
    assert_eq!(pair.initiator.state_version(), v0);
    // A request sent.
    let child = pair.agreed_children()[0];
    pair.initiator.rekey_child(child.0, pair.now).unwrap();
    let sent = pair.initiator.state_version();
    assert!(sent > v0);
    // Work queued behind it.
    pair.initiator.rekey_ike(pair.now).unwrap();
    let v1 = pair.initiator.state_version();
    assert!(v1 > sent);
    // Its retransmission: no new version.
    let request = send_one(&mut pair, true, false);
    pair.now += Duration::from_secs(2);
    pair.initiator.handle_timeout(pair.now);
    assert_eq!(send_one(&mut pair, true, true), request);
    assert_eq!(pair.initiator.state_version(), v1);
    // The answer processed (and the Delete of the old pair sent).
    send_one(&mut pair, false, true);
    let v2 = pair.initiator.state_version();
    assert!(v2 > v1);
    // A request from the peer answered.
    pair.responder.rekey_ike(pair.now).unwrap();
    send_one(&mut pair, false, true);
    assert!(pair.initiator.state_version() > v2);
    // The restored SA carries on from the snapshot's version.
    let snapshot = pair.initiator.snapshot(pair.now).unwrap();
    let v3 = snapshot.state_version();
    let restored = IkeSa::restore(config(true), snapshot, rng(5), pair.now).unwrap();
    assert_eq!(restored.state_version(), v3);
}

#[test]
fn not_established_cannot_be_snapshotted() {
    let mut pair = Pair::new(config(true), config(false));
    assert_eq!(
        pair.initiator.snapshot(pair.now).unwrap_err(),
        SnapshotError::NotEstablished
    );
    pair.drive_for(Duration::from_secs(5));
    pair.initiator.delete(pair.now).unwrap();
    pair.drive();
    assert!(pair.initiator.is_closed());
    assert_eq!(
        pair.initiator.snapshot(pair.now).unwrap_err(),
        SnapshotError::NotEstablished
    );
}

#[test]
fn the_address_lease_moves_with_the_sa() {
    let pool = AddressPool::new(
        Ipv4Addr::new(10, 9, 0, 1),
        Ipv4Addr::new(10, 9, 0, 4),
        Ipv4Addr::new(255, 255, 255, 0),
        vec![],
    )
    .shared();
    let mut ci = config(true);
    ci.request_address = true;
    ci.local_ts = vec![IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::UNSPECIFIED,
        end: Ipv4Addr::BROADCAST,
    })];
    let mut cr = config(false);
    cr.address_pool = Some(pool.clone());
    let pair = Pair::established(ci, cr.clone());
    let snapshot = pair.responder.snapshot(pair.now).unwrap();
    // The standby has its own pool; without one, or with the address taken, no SA.
    let standby_pool = AddressPool::new(
        Ipv4Addr::new(10, 9, 0, 1),
        Ipv4Addr::new(10, 9, 0, 4),
        Ipv4Addr::new(255, 255, 255, 0),
        vec![],
    )
    .shared();
    let taken = standby_pool.lock().unwrap().allocate().unwrap();
    let mut standby = cr.clone();
    standby.address_pool = Some(standby_pool.clone());
    assert_eq!(
        IkeSa::restore(standby.clone(), snapshot.clone(), rng(3), pair.now).unwrap_err(),
        RestoreError::LeaseUnavailable(taken)
    );
    cr.address_pool = None;
    assert!(IkeSa::restore(cr, snapshot.clone(), rng(3), pair.now).is_err());
    standby_pool.lock().unwrap().release(taken);
    let restored = IkeSa::restore(standby, snapshot, rng(3), pair.now).unwrap();
    assert_eq!(standby_pool.lock().unwrap().in_use(), 1);
    drop(restored);
    assert_eq!(standby_pool.lock().unwrap().in_use(), 0);
}

#[derive(Debug, Clone, Copy)]
enum Op {
    RekeyChild { by_initiator: bool },
    CreateChild,
    DeleteChild { by_initiator: bool },
    RekeyIke { by_initiator: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(|b| Op::RekeyChild { by_initiator: b }),
        Just(Op::CreateChild),
        any::<bool>().prop_map(|b| Op::DeleteChild { by_initiator: b }),
        any::<bool>().prop_map(|b| Op::RekeyIke { by_initiator: b }),
    ]
}

fn side(pair: &mut Pair, by_initiator: bool) -> &mut IkeSa {
    if by_initiator {
        &mut pair.initiator
    } else {
        &mut pair.responder
    }
}

fn apply(pair: &mut Pair, op: Op) {
    let now = pair.now;
    // Errors (no child left, SA closed) are fine: the property is about agreement.
    let _ = match op {
        Op::RekeyChild { by_initiator } => {
            let sa = side(pair, by_initiator);
            match sa.child_sas().first() {
                Some(c) => sa.rekey_child(c.0, now),
                None => Ok(()),
            }
        }
        Op::CreateChild => pair.initiator.create_child(config(true).first_child(), now),
        Op::DeleteChild { by_initiator } => {
            let sa = side(pair, by_initiator);
            match sa.child_sas().first() {
                Some(c) => sa.delete_child(c.0, now),
                None => Ok(()),
            }
        }
        Op::RekeyIke { by_initiator } => side(pair, by_initiator).rekey_ike(now),
    };
    // The node's rule covers local calls too.
    pair.replicate();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Whatever runs on both sides, and wherever in it one side fails over (with lost
    /// datagrams around it), the two ends end up agreeing on their child SAs and their
    /// one IKE SA, and the peer never sees a new IKE SA being set up.
    #[test]
    fn failover_anywhere_ends_in_agreement(
        ops in prop::collection::vec(op(), 1..5),
        at in 0usize..16,
        initiator_fails in any::<bool>(),
        after_replicating in any::<bool>(),
        lost in prop::collection::vec(0usize..16, 0..3),
        seed in 0u64..1000,
    ) {
        let mut pair = Pair::with_seeds(config(true), config(false), seed, seed + 1);
        pair.drive_for(Duration::from_secs(5));
        prop_assert!(pair.initiator.is_established() && pair.responder.is_established());
        pair.replicate_side(initiator_fails, config(initiator_fails));
        let base = pair.sent_count();
        pair.fate = Box::new(move |i, _, _| {
            if i >= base && lost.contains(&(i - base)) { Fate::Drop } else { Fate::Deliver }
        });
        pair.fail_over_at = Some(base + at);
        pair.crash_after_replicating = after_replicating;
        let mark = pair.log.len();
        for op in ops {
            apply(&mut pair, op);
        }
        pair.drive_for(Duration::from_secs(600));
        if pair.fail_over_at.is_some() {
            // Everything was over before datagram `at`: fail over while idle.
            pair.fail_over();
            pair.drive_for(Duration::from_secs(600));
        }
        prop_assert!(pair.initiator.is_established() && pair.responder.is_established());
        prop_assert_eq!(pair.initiator.spis(), pair.responder.spis());
        prop_assert_eq!(pair.replica.as_ref().map(|r| r.failovers), Some(1));
        settled(&pair);
        no_new_ike_sa(&pair, mark);
    }
}
