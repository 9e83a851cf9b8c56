//! IKE_SA_INIT + IKE_AUTH: suites, failures, loss and tampering.

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::crypto::Integ;
use crate::wire::{Message, NotifyType, Payload};

#[test]
fn psk_handshake_installs_matching_child_sas() {
    let mut pair = Pair::new(config(true), config(false));
    pair.drive();
    assert!(pair.initiator.is_established());
    assert!(pair.responder.is_established());
    let (ei, er) = (&pair.events_i, &pair.events_r);
    let (spi_i, spi_r) = pair.initiator.spis();
    assert_eq!(ei[0], Event::Established { spi_i, spi_r });
    assert_eq!(er[0], Event::Established { spi_i, spi_r });
    let (ci, cr) = (installs(ei)[0], installs(er)[0]);
    assert_eq!(
        (ci.encr_id, ci.encr_key_bits, ci.integ_id),
        (Some(20), Some(128), None)
    );
    assert_eq!(ci.inbound, cr.outbound);
    assert_eq!(ci.outbound, cr.inbound);
    assert_eq!(ci.inbound.encr_key.len(), 20);
    assert_ne!(ci.inbound.encr_key, ci.outbound.encr_key);
    assert_eq!(ci.local_ts, vec![net(1)]);
    assert_eq!(ci.remote_ts, vec![net(2)]);
    assert_eq!(cr.local_ts, vec![net(2)]);
    assert_eq!((ci.udp_encap, ci.rekeys), (None, None));
    // Exchange shapes: IKE_SA_INIT in the clear, IKE_AUTH inside SK.
    assert_eq!(pair.log.len(), 4);
    let init = Message::parse(&pair.log[0].1).unwrap();
    assert!(matches!(init.payloads[0], Payload::Sa(_)));
    let auth = Message::parse(&pair.log[2].1).unwrap();
    assert!(matches!(auth.payloads.as_slice(), [Payload::Sk(_)]));
    assert_eq!(pair.agreed_children().len(), 1);
}

#[test]
fn cbc_suites_and_narrowing() {
    let cbc = IkeSuite {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha256_128),
        prf: Prf::HmacSha384,
        dh: DhGroup::Curve25519,
    };
    let esp = ChildSuite::Esp {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
        esn: true,
    };
    let mut ci = config(true);
    ci.ike_suites = vec![cbc];
    ci.child_suites = vec![esp_gcm(), esp];
    // The initiator asks for all of 10/8; the responder only allows 10.2/16.
    ci.remote_ts = vec![IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::new(10, 0, 0, 0),
        end: Ipv4Addr::new(10, 255, 255, 255),
    })];
    let mut cr = config(false);
    cr.ike_suites = vec![gcm_ecp(), cbc];
    cr.child_suites = vec![esp];
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    let c = installs(&pair.events_i)[0];
    assert_eq!(
        (c.encr_id, c.encr_key_bits, c.integ_id, c.esn),
        (Some(12), Some(128), Some(12), true)
    );
    assert_eq!(c.inbound.integ_key.len(), 32);
    assert_eq!(c.remote_ts, vec![net(2)]);
}

#[test]
fn invalid_ke_payload_retry() {
    let x25519 = IkeSuite {
        dh: DhGroup::Curve25519,
        ..gcm_ecp()
    };
    let mut ci = config(true);
    ci.ike_suites = vec![x25519, gcm_ecp()];
    let mut cr = config(false);
    cr.ike_suites = vec![gcm_ecp()];
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    let refusal = Message::parse(&pair.log[1].1).unwrap();
    let Payload::Notify(n) = &refusal.payloads[0] else {
        panic!("expected a notify");
    };
    assert_eq!(n.notify_type, NotifyType::InvalidKePayload);
    assert_eq!(n.data, 19u16.to_be_bytes());
    assert_eq!(pair.log.len(), 6);
}

#[test]
fn wrong_psk_fails_both_sides() {
    let mut ci = config(true);
    ci.auth = LocalAuth::Psk(SecretBytes::from_slice(b"not the key"));
    let mut pair = Pair::new(ci, config(false));
    pair.drive();
    assert!(pair.initiator.is_failed() && pair.responder.is_failed());
    assert_eq!(
        pair.events_r,
        vec![Event::Failed(IkeError::AuthenticationFailed)]
    );
    assert_eq!(
        pair.events_i,
        vec![Event::Failed(IkeError::PeerError(
            NotifyType::AuthenticationFailed
        ))]
    );
}

#[test]
fn no_common_proposal() {
    let mut cr = config(false);
    cr.ike_suites = vec![IkeSuite {
        prf: Prf::HmacSha512,
        ..gcm_ecp()
    }];
    let mut pair = Pair::new(config(true), cr);
    pair.drive();
    assert_eq!(
        pair.events_i,
        vec![Event::Failed(IkeError::PeerError(
            NotifyType::NoProposalChosen
        ))]
    );
    assert!(pair.responder.is_failed());
    // The responder says what it was offered and what it has.
    let [Event::Failed(e)] = pair.events_r.as_slice() else {
        panic!("{:?}", pair.events_r);
    };
    assert_eq!(
        e.to_string(),
        "no acceptable proposal: offered [AES_GCM_16_128/PRF_HMAC_SHA2_256/ECP_256], \
         configured [AES_GCM_16_128/PRF_HMAC_SHA2_512/ECP_256]"
    );
}

#[test]
fn no_common_child_proposal_names_both_sides() {
    let mut ci = config(true);
    ci.child_suites = vec![
        esp_gcm(),
        ChildSuite::Esp {
            encr: Encr::AesCbc256,
            integ: Some(Integ::HmacSha384_192),
            esn: true,
        },
    ];
    let mut cr = config(false);
    cr.child_suites = vec![ChildSuite::Esp {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
        esn: false,
    }];
    let pair = Pair::established(ci, cr);
    let want = IkeError::NoProposalChosen(ProposalMismatch {
        offered: vec![
            "AES_GCM_16_128/NO_EXT_SEQ".into(),
            "AES_CBC_256/HMAC_SHA2_384_192/EXT_SEQ".into(),
        ],
        configured: vec!["AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ".into()],
    });
    assert!(pair.events_r.contains(&Event::ChildSaFailed(want)));
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::NoProposalChosen
            )))
    );
}

#[test]
fn unacceptable_traffic_selectors_keep_the_ike_sa() {
    // RFC 7296 §1.2: a failed first child SA does not take the IKE SA down.
    let mut cr = config(false);
    cr.remote_ts = vec![net(9)];
    let mut pair = Pair::new(config(true), cr);
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::TsUnacceptable
            )))
    );
    let detail = TsMismatch {
        offered: (vec!["10.1.0.0/16".into()], vec!["10.2.0.0/16".into()]),
        configured: (vec!["10.9.0.0/16".into()], vec!["10.2.0.0/16".into()]),
    };
    assert_eq!(
        detail.to_string(),
        "offered TSi [10.1.0.0/16] TSr [10.2.0.0/16], \
         configured TSi [10.9.0.0/16] TSr [10.2.0.0/16]"
    );
    assert!(
        pair.events_r
            .contains(&Event::ChildSaFailed(IkeError::TsUnacceptable(detail)))
    );
    assert!(pair.agreed_children().is_empty());
    // A child with acceptable selectors can still be created afterwards.
    let mut child = config(true).first_child();
    child.remote_ts = vec![net(2)];
    child.local_ts = vec![net(1)];
    let mut pair2 = Pair::new(config(true), config(false));
    pair2.drive();
    pair2.initiator.create_child(child, pair2.now).unwrap();
    pair2.drive();
    assert_eq!(pair2.agreed_children().len(), 2);
}

#[test]
fn every_lost_or_duplicated_setup_datagram_is_recovered() {
    for n in 0..4 {
        for fate in [Fate::Drop, Fate::Duplicate, Fate::Hold] {
            let mut pair = Pair::new(config(true), config(false));
            pair.fate = Box::new(move |i, _, _| if i == n { fate } else { Fate::Deliver });
            pair.drive();
            assert!(pair.initiator.is_established(), "{fate:?} datagram {n}");
            assert!(pair.responder.is_established());
            assert_eq!(installs(&pair.events_r).len(), 1, "{fate:?} datagram {n}");
            assert_eq!(installs(&pair.events_i).len(), 1);
            assert_eq!(pair.agreed_children().len(), 1);
        }
    }
}

#[test]
fn silent_peer_times_out() {
    let now = std::time::Instant::now();
    let mut sa =
        IkeSa::initiate(config(true), addr(IP_I, 500), addr(IP_R, 500), rng(3), now).unwrap();
    let mut buf = Vec::new();
    let mut sends = 0;
    let mut t = now;
    while let Some(at) = sa.poll_timeout() {
        while sa.poll_transmit(&mut buf).is_some() {
            sends += 1;
        }
        assert!(at > t && at - t <= Duration::from_secs(16));
        t = at;
        sa.handle_timeout(t);
    }
    assert_eq!(sends, 5);
    assert_eq!(sa.poll_event(), Some(Event::Failed(IkeError::Timeout)));
}

/// Runs IKE_SA_INIT by hand and returns the IKE_AUTH request, still undelivered.
fn through_init(pair: &mut Pair) -> Vec<u8> {
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    let mut buf = Vec::new();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    pair.responder
        .handle_datagram(pair.now, pair.wall, ai, ar, &buf)
        .unwrap();
    pair.responder.poll_transmit(&mut buf).unwrap();
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &buf)
        .unwrap();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    buf
}

#[test]
fn tampered_auth_is_dropped_then_recovered() {
    let mut pair = Pair::new(config(true), config(false));
    let auth = through_init(&mut pair);
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    let mut bad = auth.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(
        pair.responder
            .handle_datagram(pair.now, pair.wall, ai, ar, &bad)
            .is_err()
    );
    assert!(!pair.responder.is_failed());
    pair.responder
        .handle_datagram(pair.now, pair.wall, ai, ar, &auth)
        .unwrap();
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
}

#[test]
fn eap_request_is_refused() {
    // An initiator that sends no AUTH payload asks for EAP (RFC 7296 §2.16).
    let mut pair = Pair::new(config(true), config(false));
    through_init(&mut pair);
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    assert_eq!(pair.initiator.negotiated_suite(), Some(gcm_ecp()));
    let (spi_i, spi_r) = pair.initiator.spis();
    let header = crate::wire::Header {
        spi_i,
        spi_r,
        minor_version: 0,
        exchange: crate::wire::ExchangeType::IkeAuth,
        flags: crate::wire::Flags::new(true, false),
        message_id: 1,
    };
    let without_auth = [
        Payload::IdI(Identity::Fqdn("a.test".into())),
        Payload::Sa(super::super::proposal::child_offer(
            &[esp_gcm()],
            0x1000,
            None,
        )),
        Payload::TsI(super::super::ts::payload(&[net(1)])),
        Payload::TsR(super::super::ts::payload(&[net(2)])),
    ];
    let mut forged = Vec::new();
    let cipher = pair.initiator.send_cipher().unwrap();
    cipher
        .seal_payloads(
            &header,
            &without_auth,
            &mut ChaCha20Rng::seed_from_u64(9),
            &mut forged,
        )
        .unwrap();
    assert_eq!(
        pair.responder
            .handle_datagram(pair.now, pair.wall, ai, ar, &forged),
        Err(IkeError::EapNotSupported)
    );
    let mut buf = Vec::new();
    pair.responder.poll_transmit(&mut buf).unwrap();
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &buf)
        .unwrap_err();
    assert_eq!(
        pair.initiator.poll_event(),
        Some(Event::Failed(IkeError::PeerError(
            NotifyType::AuthenticationFailed
        )))
    );
}
