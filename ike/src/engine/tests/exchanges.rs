//! INFORMATIONAL, DPD, Delete, CREATE_CHILD_SA (new, failures, PFS), rekeys and
//! lifetimes.

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::wire::{ExchangeType, Flags, Header, Message, NotifyPayload, NotifyType, Payload};

/// A request from the responder to the initiator, sealed with the responder's keys.
fn forge_from_responder(pair: &Pair, id: u32, payloads: &[Payload]) -> Vec<u8> {
    let (spi_i, spi_r) = pair.responder.spis();
    let header = Header {
        spi_i,
        spi_r,
        minor_version: 0,
        exchange: ExchangeType::Informational,
        flags: Flags::new(false, false),
        message_id: id,
    };
    let mut out = Vec::new();
    pair.responder
        .send_cipher()
        .unwrap()
        .seal_payloads(
            &header,
            payloads,
            &mut ChaCha20Rng::seed_from_u64(5),
            &mut out,
        )
        .unwrap();
    out
}

#[test]
fn strongswan_no_additional_addresses_gets_an_empty_answer() {
    let mut pair = Pair::established(config(true), config(false));
    let req = forge_from_responder(
        &pair,
        0,
        &[Payload::Notify(NotifyPayload::new(
            NotifyType::NoAdditionalAddresses,
            vec![],
        ))],
    );
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &req)
        .unwrap();
    let mut buf = Vec::new();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    let (h, payloads) = pair
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(&buf)
        .unwrap();
    assert!(h.flags.response() && h.exchange == ExchangeType::Informational);
    assert_eq!(h.message_id, 0);
    assert!(payloads.is_empty());
    // A retransmission gets the same answer; the next request id is now 1.
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &req)
        .unwrap();
    let mut again = Vec::new();
    pair.initiator.poll_transmit(&mut again).unwrap();
    assert_eq!(again, buf);
    let liveness = forge_from_responder(&pair, 1, &[]);
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &liveness)
        .unwrap();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    let (h, payloads) = pair
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(&buf)
        .unwrap();
    assert_eq!((h.message_id, payloads.len()), (1, 0));
    // A MOBIKE address update (we never offered MOBIKE): acknowledged, COOKIE2 echoed.
    let cookie2 = NotifyPayload::new(NotifyType::Cookie2, vec![7; 16]);
    let update = forge_from_responder(
        &pair,
        2,
        &[
            Payload::Notify(NotifyPayload::new(NotifyType::UpdateSaAddresses, vec![])),
            Payload::Notify(cookie2.clone()),
        ],
    );
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &update)
        .unwrap();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    let (_, payloads) = pair
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(&buf)
        .unwrap();
    assert_eq!(payloads, vec![Payload::Notify(cookie2)]);
    assert!(pair.initiator.is_established());
}

#[test]
fn dpd_declares_a_silent_peer_dead_after_the_schedule() {
    let mut ci = config(true);
    ci.dpd_interval = Some(Duration::from_secs(10));
    let mut pair = Pair::established(ci, config(false));
    let start = pair.now;
    let sent_before = pair.log.len();
    pair.fate = Box::new(|_, from_initiator, _| {
        if from_initiator {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.drive_for(Duration::from_secs(200));
    assert!(pair.initiator.is_closed());
    let tail: Vec<&Event> = pair.events_i.iter().rev().take(3).collect();
    assert_eq!(tail[0], &Event::Closed { by_peer: false });
    assert_eq!(deleted(&pair.events_i).len(), 1);
    assert!(pair.events_i.contains(&Event::PeerDead));
    // Five tries of one empty INFORMATIONAL, the first after the 10 s interval.
    assert_eq!(pair.log.len() - sent_before, 5);
    assert!(pair.now - start >= Duration::from_secs(10 + 15));
}

#[test]
fn dpd_stays_quiet_while_esp_flows_and_succeeds_with_a_live_peer() {
    let mut ci = config(true);
    ci.dpd_interval = Some(Duration::from_secs(10));
    let mut pair = Pair::established(ci, config(false));
    let sent = pair.log.len();
    for _ in 0..20 {
        pair.now += Duration::from_secs(5);
        pair.initiator.note_inbound_traffic(pair.now);
        pair.initiator.handle_timeout(pair.now);
        let mut buf = Vec::new();
        assert!(pair.initiator.poll_transmit(&mut buf).is_none());
    }
    assert_eq!(pair.log.len(), sent);
    // Traffic stops: DPD runs, the peer answers, nothing dies.
    pair.drive_for(Duration::from_secs(25));
    assert!(pair.log.len() >= sent + 2);
    assert!(pair.initiator.is_established());
    assert!(!pair.events_i.contains(&Event::PeerDead));
}

#[test]
fn delete_of_the_ike_sa_closes_both_ends_with_their_children() {
    for lost in 0..2 {
        let mut pair = Pair::established(config(true), config(false));
        let child = pair.agreed_children()[0];
        let base = pair.sent_count();
        pair.drop_nth(base + lost);
        pair.initiator.delete(pair.now).unwrap();
        pair.drive();
        assert!(pair.initiator.is_closed() && pair.responder.is_closed());
        assert!(!pair.initiator.is_failed());
        assert_eq!(deleted(&pair.events_i), vec![child.0]);
        assert_eq!(deleted(&pair.events_r), vec![child.1]);
        assert_eq!(
            pair.events_i.last(),
            Some(&Event::Closed { by_peer: false })
        );
        assert_eq!(pair.events_r.last(), Some(&Event::Closed { by_peer: true }));
    }
}

#[test]
fn delete_child_answers_with_our_spis() {
    let mut pair = Pair::established(config(true), config(false));
    pair.initiator
        .create_child(config(true).first_child(), pair.now)
        .unwrap();
    pair.drive();
    let children = pair.agreed_children();
    assert_eq!(children.len(), 2);
    // The responder deletes the first pair by its own inbound SPI.
    pair.responder
        .delete_child(children[0].1, pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(pair.agreed_children(), vec![children[1]]);
    assert_eq!(deleted(&pair.events_i), vec![children[0].0]);
    assert_eq!(deleted(&pair.events_r), vec![children[0].1]);
    // The answer carried the initiator's inbound SPI of the pair (§1.4.1).
    let (_, answer) = pair.log.last().unwrap();
    let (_, payloads) = pair
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(answer)
        .unwrap();
    assert_eq!(
        payloads,
        vec![Payload::Delete(crate::wire::DeletePayload::Child {
            protocol: crate::wire::ProtocolId::Esp,
            spis: vec![children[0].0],
        })]
    );
    assert_eq!(
        pair.initiator.delete_child(7, pair.now),
        Err(IkeError::ChildSaNotFound)
    );
}

#[test]
fn create_child_failures_are_notifies_and_the_ike_sa_lives() {
    let cbc = ChildSuite::Esp {
        encr: Encr::AesCbc128,
        integ: Some(crate::crypto::Integ::HmacSha256_128),
        esn: false,
    };
    let mut cr = config(false);
    cr.child_pfs = Some(DhGroup::Ecp256);
    let cases = [
        (
            ChildConfig {
                suites: vec![cbc],
                pfs: Some(DhGroup::Ecp256),
                ..config(true).first_child()
            },
            NotifyType::NoProposalChosen,
        ),
        (
            ChildConfig {
                remote_ts: vec![net(9)],
                pfs: Some(DhGroup::Ecp256),
                ..config(true).first_child()
            },
            NotifyType::TsUnacceptable,
        ),
    ];
    let mut pair = Pair::established(config(true), cr);
    for (child, notify) in cases {
        pair.events_i.clear();
        pair.initiator.create_child(child, pair.now).unwrap();
        pair.drive();
        assert_eq!(
            pair.events_i,
            vec![Event::ChildSaFailed(IkeError::PeerError(notify))]
        );
        assert!(pair.initiator.is_established() && pair.responder.is_established());
        let (_, answer) = pair.log.last().unwrap();
        let (_, payloads) = pair
            .initiator
            .recv_cipher()
            .unwrap()
            .open_payloads(answer)
            .unwrap();
        assert!(matches!(&payloads[0], Payload::Notify(n) if n.notify_type == notify));
    }
    // With the right group the child comes up, with PFS.
    pair.initiator
        .create_child(
            ChildConfig {
                pfs: Some(DhGroup::Ecp256),
                ..config(true).first_child()
            },
            pair.now,
        )
        .unwrap();
    pair.drive();
    assert_eq!(pair.agreed_children().len(), 2);
    let ours = installs(&pair.events_i);
    let theirs = installs(&pair.events_r);
    assert_eq!(
        ours.last().unwrap().inbound,
        theirs.last().unwrap().outbound
    );
}

/// Runs a child rekey from one side with one datagram of the exchange given `fate`.
fn rekey_child_with(from_initiator: bool, nth: usize, fate: Fate) {
    let mut pair = Pair::established(config(true), config(false));
    let old = pair.agreed_children()[0];
    let base = pair.sent_count();
    pair.fate = Box::new(move |i, _, _| if i == base + nth { fate } else { Fate::Deliver });
    if from_initiator {
        pair.initiator.rekey_child(old.0, pair.now).unwrap();
    } else {
        pair.responder.rekey_child(old.1, pair.now).unwrap();
    }
    pair.drive();
    let now = pair.agreed_children();
    assert_eq!(now.len(), 1, "{fate:?} {nth}");
    assert_ne!(now[0], old);
    // Make-before-break at both ends: the new pair is ready before the old one goes.
    // Only the end that answered the rekey holds its new outbound SA back.
    let answered = [!from_initiator, from_initiator];
    for ((events, old_in), answered) in [(&pair.events_i, old.0), (&pair.events_r, old.1)]
        .into_iter()
        .zip(answered)
    {
        let ready = events
            .iter()
            .position(|e| matches!(e, Event::ChildSaReady(c) if c.rekeys == Some(old_in)))
            .unwrap_or_else(|| panic!("no rekey install, {fate:?} {nth}"));
        let Event::ChildSaReady(install) = &events[ready] else {
            unreachable!()
        };
        assert_eq!(install.outbound_deferred, answered, "{fate:?} {nth}");
        let gone = events
            .iter()
            .position(|e| matches!(e, Event::ChildSaDeleted { inbound_spi, .. } if *inbound_spi == old_in))
            .unwrap();
        assert!(ready < gone);
        assert_eq!(live_from_events(events).len(), 1);
    }
}

#[test]
fn child_rekey_survives_loss_duplication_and_reordering() {
    for side in [true, false] {
        for nth in 0..4 {
            for fate in [Fate::Deliver, Fate::Drop, Fate::Duplicate, Fate::Hold] {
                rekey_child_with(side, nth, fate);
            }
        }
    }
}

#[test]
fn child_rekey_with_pfs_sends_ke() {
    let mut ci = config(true);
    ci.child_pfs = Some(DhGroup::Curve25519);
    let mut cr = config(false);
    cr.child_pfs = Some(DhGroup::Curve25519);
    let mut pair = Pair::established(ci, cr);
    let old = pair.agreed_children()[0];
    let base = pair.log.len();
    pair.initiator.rekey_child(old.0, pair.now).unwrap();
    pair.drive();
    let (_, req) = &pair.log[base];
    let (_, payloads) = pair
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(req)
        .unwrap();
    assert!(matches!(&payloads[0], Payload::Notify(n) if n.notify_type == NotifyType::RekeySa));
    assert!(
        payloads
            .iter()
            .any(|p| matches!(p, Payload::Ke(k) if k.group == 31))
    );
    assert_eq!(pair.agreed_children().len(), 1);
}

fn ike_rekey_with(from_initiator: bool, nth: usize, fate: Fate) {
    let mut pair = Pair::established(config(true), config(false));
    let old_spis = pair.initiator.spis();
    let child = pair.agreed_children();
    let base = pair.sent_count();
    pair.fate = Box::new(move |i, _, _| if i == base + nth { fate } else { Fate::Deliver });
    if from_initiator {
        pair.initiator.rekey_ike(pair.now).unwrap();
    } else {
        pair.responder.rekey_ike(pair.now).unwrap();
    }
    pair.drive();
    let new_spis = pair.initiator.spis();
    assert_ne!(new_spis, old_spis, "{fate:?} {nth}");
    assert_eq!(pair.responder.spis(), new_spis);
    let rekeyed = Event::IkeRekeyed { old_spis, new_spis };
    assert!(pair.events_i.contains(&rekeyed), "{fate:?} {nth}");
    assert!(pair.events_r.contains(&rekeyed));
    assert_eq!(pair.initiator.is_initiator(), from_initiator);
    assert_eq!(pair.responder.is_initiator(), !from_initiator);
    // Children moved over untouched; the new SA starts its message IDs at 0 and works.
    assert_eq!(pair.agreed_children(), child);
    assert_eq!(pair.initiator.next_message_id(), Some(0));
    let before = pair.log.len();
    pair.initiator
        .create_child(config(true).first_child(), pair.now)
        .unwrap();
    pair.drive();
    let h = Header::parse(&pair.log[before].1).unwrap().header;
    assert_eq!(
        (h.spi_i, h.spi_r, h.message_id),
        (new_spis.0, new_spis.1, 0)
    );
    assert_eq!(pair.agreed_children().len(), 2);
    assert!(pair.initiator.is_established() && pair.responder.is_established());
}

#[test]
fn ike_rekey_survives_loss_duplication_and_reordering() {
    for side in [true, false] {
        for nth in 0..4 {
            for fate in [Fate::Deliver, Fate::Drop, Fate::Duplicate, Fate::Hold] {
                ike_rekey_with(side, nth, fate);
            }
        }
    }
}

#[test]
fn lifetimes_rekey_children_and_the_ike_sa() {
    let mut ci = config(true);
    ci.child_lifetime = Some(ChildLifetime {
        soft: Duration::from_secs(100),
        hard: Duration::from_secs(120),
    });
    ci.ike_lifetime = Some(Duration::from_secs(400));
    let mut pair = Pair::established(ci, config(false));
    let first = pair.agreed_children()[0];
    let spis = pair.initiator.spis();
    pair.drive_for(Duration::from_secs(105));
    let second = pair.agreed_children();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], first);
    assert_eq!(pair.initiator.spis(), spis);
    pair.drive_for(Duration::from_secs(300));
    assert_ne!(pair.initiator.spis(), spis);
    assert_eq!(pair.responder.spis(), pair.initiator.spis());
    assert_eq!(pair.agreed_children().len(), 1);
    assert!(pair.initiator.is_established() && pair.responder.is_established());
}

#[test]
fn hard_lifetime_deletes_a_child_that_could_not_be_rekeyed() {
    let mut ci = config(true);
    ci.child_lifetime = Some(ChildLifetime {
        soft: Duration::from_secs(100),
        hard: Duration::from_secs(120),
    });
    let mut pair = Pair::established(ci, config(false));
    // The responder now insists on PFS, so the rekey gets NO_PROPOSAL_CHOSEN.
    pair.responder.config.child_pfs = Some(DhGroup::Ecp256);
    pair.drive_for(Duration::from_secs(130));
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::NoProposalChosen
            )))
    );
    assert!(pair.agreed_children().is_empty());
    assert_eq!(deleted(&pair.events_i).len(), 1);
    assert_eq!(deleted(&pair.events_r).len(), 1);
    assert!(pair.initiator.is_established());
    let msg = Message::parse(&pair.log[0].1).unwrap();
    assert!(!msg.payloads.is_empty());
}

#[test]
fn create_and_delete_child_survive_loss_duplication_and_reordering() {
    for nth in 0..4 {
        for fate in [Fate::Drop, Fate::Duplicate, Fate::Hold] {
            let mut pair = Pair::established(config(true), config(false));
            let first = pair.agreed_children()[0];
            let base = pair.sent_count();
            pair.fate = Box::new(move |i, _, _| if i == base + nth { fate } else { Fate::Deliver });
            // Create (datagrams 0-1), then the responder deletes the first pair (2-3).
            pair.initiator
                .create_child(config(true).first_child(), pair.now)
                .unwrap();
            pair.drive_for(Duration::from_secs(40));
            assert_eq!(pair.agreed_children().len(), 2, "{fate:?} {nth}");
            pair.responder.delete_child(first.1, pair.now).unwrap();
            pair.drive();
            let live = pair.agreed_children();
            assert_eq!(live.len(), 1, "{fate:?} {nth}");
            assert_ne!(live[0], first);
            assert_eq!(deleted(&pair.events_i), vec![first.0]);
            assert_eq!(deleted(&pair.events_r), vec![first.1]);
            assert_eq!(installs(&pair.events_i).len(), 2);
            assert_eq!(installs(&pair.events_r).len(), 2);
        }
    }
}

#[test]
fn a_lost_dpd_probe_is_retransmitted_not_fatal() {
    let mut ci = config(true);
    ci.dpd_interval = Some(Duration::from_secs(10));
    let mut pair = Pair::established(ci, config(false));
    let base = pair.sent_count();
    // Lose the first probe and the answer to its retransmission.
    pair.fate = Box::new(move |i, _, _| {
        if i == base || i == base + 2 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.drive_for(Duration::from_secs(30));
    assert!(pair.initiator.is_established());
    assert!(!pair.events_i.contains(&Event::PeerDead));
    assert!(pair.sent_count() >= base + 4);
}

#[test]
fn invalid_ke_for_a_child_is_retried_once_with_the_named_group() {
    let mut cr = config(false);
    cr.child_pfs = Some(DhGroup::Ecp256);
    let mut pair = Pair::established(config(true), cr);
    let base = pair.log.len();
    pair.initiator
        .create_child(
            ChildConfig {
                pfs: Some(DhGroup::Curve25519),
                ..config(true).first_child()
            },
            pair.now,
        )
        .unwrap();
    pair.drive();
    let (_, refusal) = &pair.log[base + 1];
    let (_, payloads) = pair
        .initiator
        .recv_cipher()
        .unwrap()
        .open_payloads(refusal)
        .unwrap();
    assert!(matches!(&payloads[0], Payload::Notify(n)
        if n.notify_type == NotifyType::InvalidKePayload && n.data == 19u16.to_be_bytes()));
    assert_eq!(pair.log.len(), base + 4);
    assert_eq!(pair.agreed_children().len(), 2);
    // Any group we support works, MODP included.
    pair.responder.config.child_pfs = Some(DhGroup::Modp2048);
    pair.initiator
        .create_child(
            ChildConfig {
                pfs: Some(DhGroup::Curve25519),
                ..config(true).first_child()
            },
            pair.now,
        )
        .unwrap();
    pair.drive();
    assert_eq!(pair.agreed_children().len(), 3);
}

#[test]
fn reauth_is_requested_instead_of_a_rekey() {
    let mut ci = config(true);
    ci.ike_lifetime = Some(Duration::from_secs(100));
    ci.reauth = true;
    let mut pair = Pair::established(ci, config(false));
    let spis = pair.initiator.spis();
    pair.drive_for(Duration::from_secs(95));
    assert_eq!(
        pair.events_i
            .iter()
            .filter(|e| **e == Event::ReauthRequired)
            .count(),
        1
    );
    assert_eq!(pair.initiator.spis(), spis);
    assert!(
        !pair
            .events_i
            .iter()
            .any(|e| matches!(e, Event::IkeRekeyed { .. }))
    );
}

#[test]
fn create_child_with_foreign_selectors_names_them_on_both_sides() {
    let mut pair = Pair::established(config(true), config(false));
    let mut child = config(true).first_child();
    child.remote_ts = vec![net(7)];
    pair.initiator.create_child(child, pair.now).unwrap();
    pair.drive();
    let want = IkeError::TsUnacceptable(TsMismatch {
        offered: (vec!["10.1.0.0/16".into()], vec!["10.7.0.0/16".into()]),
        configured: (vec!["10.1.0.0/16".into()], vec!["10.2.0.0/16".into()]),
    });
    assert!(pair.events_r.contains(&Event::ChildSaFailed(want)));
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::TsUnacceptable
            )))
    );
    assert_eq!(pair.agreed_children().len(), 1);
}
