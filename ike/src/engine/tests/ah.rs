//! AH child SAs (RFC 7296 §3.3: protocol 2, integrity and ESN, no ENCR): negotiated
//! in IKE_AUTH and CREATE_CHILD_SA, rekeyed, deleted, refused against ESP-only peers,
//! and carried through a snapshot.

use super::*;
use crate::crypto::Integ;
use crate::wire::{NotifyType, ProtocolId};

fn ah_sha256() -> ChildSuite {
    ChildSuite::Ah {
        integ: Integ::HmacSha256_128,
        esn: true,
    }
}

fn with_children(initiator: bool, suites: Vec<ChildSuite>) -> IkeConfig {
    IkeConfig {
        child_suites: suites,
        ..config(initiator)
    }
}

/// An AH pair: integrity keys only, the same ones seen from both ends.
fn assert_ah_pair(ci: &ChildSaInstall, cr: &ChildSaInstall) {
    for c in [ci, cr] {
        assert_eq!(c.protocol, ProtocolId::Ah);
        assert_eq!(
            (c.encr_id, c.encr_key_bits, c.integ_id, c.esn),
            (None, None, Some(12), true)
        );
        assert!(c.inbound.encr_key.is_empty() && c.outbound.encr_key.is_empty());
        assert_eq!(c.inbound.integ_key.len(), 32);
        // Wireshark's ESP table has nothing to say about AH.
        assert!(c.key_log(IP_I.into(), IP_R.into()).is_none());
    }
    assert_eq!(ci.inbound, cr.outbound);
    assert_eq!(ci.outbound, cr.inbound);
    assert_ne!(ci.inbound.integ_key, ci.outbound.integ_key);
}

#[test]
fn ah_child_sa_in_ike_auth() {
    let mut pair = Pair::new(
        with_children(true, vec![ah_sha256()]),
        with_children(false, vec![ah_sha256()]),
    );
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    assert_ah_pair(installs(&pair.events_i)[0], installs(&pair.events_r)[0]);
    assert_eq!(pair.agreed_children().len(), 1);
}

#[test]
fn responder_picks_ah_from_a_mixed_offer() {
    // Proposal 1 ESP, proposal 2 AH: the responder only does AH and answers with 2.
    let mut pair = Pair::new(
        with_children(true, vec![esp_gcm(), ah_sha256()]),
        with_children(false, vec![ah_sha256()]),
    );
    pair.drive();
    assert_ah_pair(installs(&pair.events_i)[0], installs(&pair.events_r)[0]);
    // And an ESP-first responder takes ESP from the same offer.
    let mut pair = Pair::new(
        with_children(true, vec![esp_gcm(), ah_sha256()]),
        with_children(false, vec![esp_gcm(), ah_sha256()]),
    );
    pair.drive();
    assert_eq!(installs(&pair.events_i)[0].protocol, ProtocolId::Esp);
}

#[test]
fn ah_against_esp_is_no_proposal_chosen_both_ways() {
    for (ours, theirs, offered, configured) in [
        (
            ah_sha256(),
            esp_gcm(),
            "AH:HMAC_SHA2_256_128/EXT_SEQ",
            "AES_GCM_16_128/NO_EXT_SEQ",
        ),
        (
            esp_gcm(),
            ah_sha256(),
            "AES_GCM_16_128/NO_EXT_SEQ",
            "AH:HMAC_SHA2_256_128/EXT_SEQ",
        ),
    ] {
        let pair = Pair::established(
            with_children(true, vec![ours]),
            with_children(false, vec![theirs]),
        );
        let want = IkeError::NoProposalChosen(ProposalMismatch {
            offered: vec![offered.into()],
            configured: vec![configured.into()],
        });
        assert!(
            pair.events_r.contains(&Event::ChildSaFailed(want)),
            "{:?}",
            pair.events_r
        );
        assert!(
            pair.events_i
                .contains(&Event::ChildSaFailed(IkeError::PeerError(
                    NotifyType::NoProposalChosen
                )))
        );
        assert!(pair.agreed_children().is_empty());
    }
}

#[test]
fn ah_children_are_created_rekeyed_and_deleted_by_protocol() {
    let (ci, cr) = (
        with_children(true, vec![ah_sha256()]),
        with_children(false, vec![ah_sha256()]),
    );
    let mut pair = Pair::established(ci.clone(), cr);
    // A second AH child through CREATE_CHILD_SA.
    pair.initiator
        .create_child(ci.first_child(), pair.now)
        .unwrap();
    pair.drive();
    let children = pair.agreed_children();
    assert_eq!(children.len(), 2);
    assert!(
        installs(&pair.events_i)
            .iter()
            .all(|c| c.protocol == ProtocolId::Ah)
    );
    // The responder rekeys the first: REKEY_SA names it by protocol AH and SPI, and
    // the initiator's Delete of the old pair is an AH Delete, or the two ends would
    // disagree below.
    pair.responder.rekey_child(children[0].1, pair.now).unwrap();
    pair.drive();
    let now = pair.agreed_children();
    assert_eq!(now.len(), 2);
    assert!(!now.contains(&children[0]) && now.contains(&children[1]));
    let rekeyed = installs(&pair.events_i)[2];
    assert_eq!(rekeyed.protocol, ProtocolId::Ah);
    assert_eq!(rekeyed.rekeys, Some(children[0].0));
    assert_eq!(deleted(&pair.events_i), vec![children[0].0]);
    // Deleting by the initiator's SPI leaves the rekeyed pair alone.
    pair.initiator
        .delete_child(children[1].0, pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(pair.agreed_children().len(), 1);
}

#[test]
fn ah_child_survives_a_snapshot() {
    let (ci, cr) = (
        with_children(true, vec![ah_sha256()]),
        with_children(false, vec![ah_sha256()]),
    );
    let pair = Pair::established(ci.clone(), cr);
    let snapshot = decode(&encode(&pair.initiator.snapshot(pair.now).unwrap())).unwrap();
    let restored = IkeSa::restore(ci, snapshot, rng(5), pair.now).unwrap();
    assert_eq!(restored.child_sas(), pair.initiator.child_sas());
}

#[test]
fn no_ah_across_a_nat() {
    // Behind a NAT both ends leave AH out: ESP is chosen although both prefer AH.
    let both = vec![ah_sha256(), esp_gcm()];
    let mut pair = Pair::new(
        with_children(true, both.clone()),
        with_children(false, both),
    );
    pair.nat = Some(NAT_SHIFT);
    pair.drive();
    let c = installs(&pair.events_i)[0];
    assert_eq!((c.protocol, c.udp_encap.is_some()), (ProtocolId::Esp, true));
    // An AH-only initiator still offers AH; the responder refuses it.
    let mut pair = Pair::new(
        with_children(true, vec![ah_sha256()]),
        with_children(false, vec![ah_sha256()]),
    );
    pair.nat = Some(NAT_SHIFT);
    pair.drive_for(std::time::Duration::from_secs(5));
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::NoProposalChosen
            )))
    );
    assert!(pair.agreed_children().is_empty());
}
