//! Two IKE SAs talking through in-memory queues with a virtual clock, in the manner of
//! quinn-proto's `Pair`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::crypto::{DhGroup, Encr, Integ, Prf, SecretBytes};
use crate::wire::{AddrRange, Identity, IpSelector, Message, NotifyType, Payload};

const ADDR_I: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
const ADDR_R: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);

fn net(a: u8) -> IpSelector {
    IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::new(10, a, 0, 0),
        end: Ipv4Addr::new(10, a, 255, 255),
    })
}

fn gcm_ecp() -> IkeSuite {
    IkeSuite {
        encr: Encr::AesGcm16_128,
        integ: None,
        prf: Prf::HmacSha256,
        dh: DhGroup::Ecp256,
    }
}

fn esp_gcm() -> ChildSuite {
    ChildSuite {
        encr: Encr::AesGcm16_128,
        integ: None,
        esn: false,
    }
}

/// The interop README's setup: a.test ↔ b.test, 10.1/16 ↔ 10.2/16.
fn config(initiator: bool) -> IkeConfig {
    let (local, remote, lnet, rnet) = if initiator {
        ("a.test", "b.test", 1, 2)
    } else {
        ("b.test", "a.test", 2, 1)
    };
    IkeConfig {
        local_id: Identity::Fqdn(local.into()),
        remote_id: Some(Identity::Fqdn(remote.into())),
        psk: SecretBytes::from_slice(b"interop-test-psk-0123456789"),
        ike_suites: vec![gcm_ecp()],
        child_suites: vec![esp_gcm()],
        local_ts: vec![net(lnet)],
        remote_ts: vec![net(rnet)],
        retransmit: Retransmit::default(),
    }
}

fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

struct Pair {
    now: Instant,
    initiator: IkeSa,
    responder: IkeSa,
    /// Datagrams seen on the wire, initiator's first, for tampering and inspection.
    log: Vec<(bool, Vec<u8>)>,
    /// Drops the n-th datagram (counting from 0) once.
    drop: Option<usize>,
    sent: usize,
}

impl Pair {
    fn new(ci: IkeConfig, cr: IkeConfig) -> Self {
        let now = Instant::now();
        Pair {
            now,
            initiator: IkeSa::initiate(ci, ADDR_R, rng(1), now).unwrap(),
            responder: IkeSa::respond(cr, ADDR_I, rng(2)),
            log: Vec::new(),
            drop: None,
            sent: 0,
        }
    }

    /// Moves datagrams both ways until both sides are quiet, jumping the virtual clock
    /// to the next deadline when nothing is in flight; gives up after 100 steps.
    fn drive(&mut self) {
        let mut buf = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            while let Some(t) = self.initiator.poll_transmit(&mut buf) {
                assert_eq!(t.destination, ADDR_R);
                moved = true;
                if self.deliver(true, &buf) {
                    let _ = self.responder.handle_datagram(self.now, ADDR_I, &buf);
                }
            }
            while let Some(t) = self.responder.poll_transmit(&mut buf) {
                assert_eq!(t.destination, ADDR_I);
                moved = true;
                if self.deliver(false, &buf) {
                    let _ = self.initiator.handle_datagram(self.now, ADDR_R, &buf);
                }
            }
            if moved {
                continue;
            }
            let next = [self.initiator.poll_timeout(), self.responder.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.initiator.handle_timeout(self.now);
                    self.responder.handle_timeout(self.now);
                }
                None => return,
            }
        }
        panic!("no quiescence after 100 steps");
    }

    fn deliver(&mut self, from_initiator: bool, bytes: &[u8]) -> bool {
        self.log.push((from_initiator, bytes.to_vec()));
        let n = self.sent;
        self.sent += 1;
        self.drop != Some(n)
    }

    fn events(sa: &mut IkeSa) -> Vec<Event> {
        std::iter::from_fn(|| sa.poll_event()).collect()
    }
}

fn installs(events: &[Event]) -> Vec<&ChildSaInstall> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaReady(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn psk_handshake_installs_matching_child_sas() {
    let mut pair = Pair::new(config(true), config(false));
    pair.drive();
    assert!(pair.initiator.is_established());
    assert!(pair.responder.is_established());
    let ei = Pair::events(&mut pair.initiator);
    let er = Pair::events(&mut pair.responder);
    let (spi_i, spi_r) = pair.initiator.spis();
    assert_eq!(ei[0], Event::Established { spi_i, spi_r });
    assert_eq!(er[0], Event::Established { spi_i, spi_r });
    let (ci, cr) = (installs(&ei)[0], installs(&er)[0]);
    assert_eq!(
        (ci.encr_id, ci.encr_key_bits, ci.integ_id),
        (20, Some(128), None)
    );
    assert_eq!(ci.inbound, cr.outbound);
    assert_eq!(ci.outbound, cr.inbound);
    assert_eq!(ci.inbound.encr_key.len(), 20);
    assert_ne!(ci.inbound.encr_key, ci.outbound.encr_key);
    assert_eq!(ci.local_ts, vec![net(1)]);
    assert_eq!(ci.remote_ts, vec![net(2)]);
    assert_eq!(cr.local_ts, vec![net(2)]);
    // Exchange shapes: IKE_SA_INIT in the clear, IKE_AUTH inside SK.
    assert_eq!(pair.log.len(), 4);
    let init = Message::parse(&pair.log[0].1).unwrap();
    assert!(matches!(init.payloads[0], Payload::Sa(_)));
    let auth = Message::parse(&pair.log[2].1).unwrap();
    assert!(matches!(auth.payloads.as_slice(), [Payload::Sk(_)]));
}

#[test]
fn cbc_suites_and_narrowing() {
    let cbc = IkeSuite {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha256_128),
        prf: Prf::HmacSha384,
        dh: DhGroup::Curve25519,
    };
    let esp = ChildSuite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha256_128),
        esn: true,
    };
    let mut ci = config(true);
    ci.ike_suites = vec![cbc];
    ci.child_suites = vec![esp_gcm(), esp];
    // The initiator asks for all of 10/8; the responder only allows 10.1/16.
    ci.remote_ts = vec![IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::new(10, 0, 0, 0),
        end: Ipv4Addr::new(10, 255, 255, 255),
    })];
    let mut cr = config(false);
    cr.ike_suites = vec![gcm_ecp(), cbc];
    cr.child_suites = vec![esp];
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    let ei = Pair::events(&mut pair.initiator);
    let c = installs(&ei)[0];
    assert_eq!(
        (c.encr_id, c.encr_key_bits, c.integ_id, c.esn),
        (12, Some(128), Some(12), true)
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
    ci.psk = SecretBytes::from_slice(b"not the key");
    let mut pair = Pair::new(ci, config(false));
    pair.drive();
    assert!(pair.initiator.is_failed() && pair.responder.is_failed());
    assert_eq!(
        Pair::events(&mut pair.responder),
        vec![Event::Failed(IkeError::AuthenticationFailed)]
    );
    assert_eq!(
        Pair::events(&mut pair.initiator),
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
        Pair::events(&mut pair.initiator),
        vec![Event::Failed(IkeError::PeerError(
            NotifyType::NoProposalChosen
        ))]
    );
    assert!(pair.responder.is_failed());
}

#[test]
fn unacceptable_traffic_selectors() {
    let mut cr = config(false);
    cr.remote_ts = vec![net(9)];
    let mut pair = Pair::new(config(true), cr);
    pair.drive();
    assert_eq!(
        Pair::events(&mut pair.initiator),
        vec![Event::Failed(IkeError::PeerError(
            NotifyType::TsUnacceptable
        ))]
    );
}

#[test]
fn lost_datagrams_are_retransmitted() {
    // Lose the IKE_AUTH response once: the initiator retransmits its request and the
    // responder answers from its cache without processing it again.
    for lost in 0..4 {
        let mut pair = Pair::new(config(true), config(false));
        pair.drop = Some(lost);
        pair.drive();
        assert!(pair.initiator.is_established(), "lost datagram {lost}");
        assert!(pair.responder.is_established());
        assert_eq!(installs(&Pair::events(&mut pair.responder)).len(), 1);
        assert_eq!(installs(&Pair::events(&mut pair.initiator)).len(), 1);
    }
}

#[test]
fn silent_peer_times_out() {
    let now = Instant::now();
    let mut sa = IkeSa::initiate(config(true), ADDR_R, rng(3), now).unwrap();
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

#[test]
fn tampered_auth_is_dropped_then_recovered() {
    let mut pair = Pair::new(config(true), config(false));
    let mut buf = Vec::new();
    // IKE_SA_INIT both ways.
    pair.initiator.poll_transmit(&mut buf).unwrap();
    pair.responder
        .handle_datagram(pair.now, ADDR_I, &buf)
        .unwrap();
    pair.responder.poll_transmit(&mut buf).unwrap();
    pair.initiator
        .handle_datagram(pair.now, ADDR_R, &buf)
        .unwrap();
    // A corrupted IKE_AUTH is dropped without killing the responder.
    pair.initiator.poll_transmit(&mut buf).unwrap();
    let mut bad = buf.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(
        pair.responder
            .handle_datagram(pair.now, ADDR_I, &bad)
            .is_err()
    );
    assert!(!pair.responder.is_failed());
    pair.responder
        .handle_datagram(pair.now, ADDR_I, &buf)
        .unwrap();
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
}

#[test]
fn eap_request_is_refused() {
    // An initiator that sends no AUTH payload asks for EAP (RFC 7296 §2.16).
    let mut pair = Pair::new(config(true), config(false));
    let mut buf = Vec::new();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    pair.responder
        .handle_datagram(pair.now, ADDR_I, &buf)
        .unwrap();
    pair.responder.poll_transmit(&mut buf).unwrap();
    pair.initiator
        .handle_datagram(pair.now, ADDR_R, &buf)
        .unwrap();
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
        Payload::Sa(super::proposal::child_offer(&[esp_gcm()], 0x1000)),
        Payload::TsI(super::ts::payload(&[net(1)])),
        Payload::TsR(super::ts::payload(&[net(2)])),
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
        pair.responder.handle_datagram(pair.now, ADDR_I, &forged),
        Err(IkeError::EapNotSupported)
    );
    pair.responder.poll_transmit(&mut buf).unwrap();
    pair.initiator
        .handle_datagram(pair.now, ADDR_R, &buf)
        .unwrap_err();
    assert_eq!(
        Pair::events(&mut pair.initiator),
        vec![Event::Failed(IkeError::PeerError(
            NotifyType::AuthenticationFailed
        ))]
    );
}
