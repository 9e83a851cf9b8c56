//! Simultaneous exchanges on the same SA (RFC 7296 §2.8.1, §2.25): whatever the nonces
//! and however the messages cross, exactly one child pair (or IKE SA) survives at both
//! ends and nothing is left behind.

use super::*;
use crate::wire::NotifyType;

#[test]
fn simultaneous_child_rekeys_leave_one_pair() {
    let mut winners = [0usize; 2];
    for seed in 0..12 {
        let mut pair = Pair::with_seeds(config(true), config(false), seed, seed + 100);
        pair.drive_for(std::time::Duration::from_secs(5));
        let old = pair.agreed_children()[0];
        pair.initiator.rekey_child(old.0, pair.now).unwrap();
        pair.responder.rekey_child(old.1, pair.now).unwrap();
        pair.drive();
        let live = settled(&pair);
        assert_eq!(live.len(), 1, "seed {seed}");
        assert_ne!(live[0], old);
        // Whose rekey won: the initiator's own exchange installed it with `rekeys`.
        let own = installs(&pair.events_i)
            .iter()
            .any(|c| c.inbound.spi == live[0].0 && c.rekeys == Some(old.0));
        assert!(own, "the survivor replaces the old pair at the initiator");
        // The winner also installed the loser's pair (as responder) until the peer
        // deleted it; the loser never installed its own redundant pair.
        let rekey_installs = installs(&pair.events_i)
            .iter()
            .filter(|c| c.rekeys == Some(old.0))
            .count();
        assert!(matches!(rekey_installs, 1 | 2));
        winners[rekey_installs - 1] += 1;
        assert!(pair.initiator.is_established() && pair.responder.is_established());
    }
    assert!(
        winners[0] > 0 && winners[1] > 0,
        "both sides should win sometimes: {winners:?}"
    );
}

#[test]
fn simultaneous_ike_rekeys_leave_one_ike_sa() {
    for seed in 0..8 {
        let mut pair = Pair::with_seeds(config(true), config(false), seed, seed + 50);
        pair.drive_for(std::time::Duration::from_secs(5));
        let old = pair.initiator.spis();
        let child = pair.agreed_children();
        pair.initiator.rekey_ike(pair.now).unwrap();
        pair.responder.rekey_ike(pair.now).unwrap();
        pair.drive();
        let new = pair.initiator.spis();
        assert_ne!(new, old, "seed {seed}");
        assert_eq!(pair.responder.spis(), new, "seed {seed}");
        assert_eq!(settled(&pair), child);
        // Exactly one IkeRekeyed per side, naming the survivor.
        for events in [&pair.events_i, &pair.events_r] {
            let rekeys: Vec<&Event> = events
                .iter()
                .filter(|e| matches!(e, Event::IkeRekeyed { .. }))
                .collect();
            assert_eq!(rekeys.len(), 1);
            assert!(matches!(rekeys[0], Event::IkeRekeyed { new_spis, .. } if *new_spis == new));
        }
        pair.initiator
            .create_child(config(true).first_child(), pair.now)
            .unwrap();
        pair.drive();
        assert_eq!(settled(&pair).len(), 2);
    }
}

#[test]
fn rekey_against_delete_gets_temporary_failure() {
    let mut pair = Pair::established(config(true), config(false));
    let old = pair.agreed_children()[0];
    pair.initiator.rekey_child(old.0, pair.now).unwrap();
    pair.responder.delete_child(old.1, pair.now).unwrap();
    pair.drive();
    assert!(settled(&pair).is_empty());
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::TemporaryFailure
            )))
    );
    assert_eq!(deleted(&pair.events_i), vec![old.0]);
    assert_eq!(deleted(&pair.events_r), vec![old.1]);
    assert!(pair.initiator.is_established() && pair.responder.is_established());
}

#[test]
fn simultaneous_child_deletes_cross_cleanly() {
    let mut pair = Pair::established(config(true), config(false));
    let old = pair.agreed_children()[0];
    pair.initiator.delete_child(old.0, pair.now).unwrap();
    pair.responder.delete_child(old.1, pair.now).unwrap();
    pair.drive();
    assert!(settled(&pair).is_empty());
    assert_eq!(deleted(&pair.events_i), vec![old.0]);
    assert_eq!(deleted(&pair.events_r), vec![old.1]);
}

#[test]
fn ike_rekey_against_ike_delete() {
    let mut pair = Pair::established(config(true), config(false));
    pair.initiator.rekey_ike(pair.now).unwrap();
    pair.responder.delete(pair.now).unwrap();
    pair.drive();
    assert!(pair.initiator.is_closed() && pair.responder.is_closed());
    assert_eq!(pair.events_i.last(), Some(&Event::Closed { by_peer: true }));
    assert_eq!(
        pair.events_r.last(),
        Some(&Event::Closed { by_peer: false })
    );
}

#[test]
fn child_rekey_during_ike_rekey_keeps_one_pair() {
    let mut pair = Pair::established(config(true), config(false));
    let old = pair.agreed_children()[0];
    pair.initiator.rekey_ike(pair.now).unwrap();
    pair.responder.rekey_child(old.1, pair.now).unwrap();
    pair.drive();
    let live = settled(&pair);
    assert_eq!(live.len(), 1);
    assert_ne!(live[0], old);
    assert_eq!(pair.initiator.spis(), pair.responder.spis());
}
