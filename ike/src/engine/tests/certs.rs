//! IKE_AUTH with certificates (RFC 7296 §2.15, RFC 7427): every key type, PSK one way
//! and certificates the other, what IKE_SA_INIT and IKE_AUTH carry, the legacy ECDSA
//! methods, and every way verification fails, with certificates made by rcgen here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
    SanType, date_time_ymd,
};
use ring::rand::SystemRandom;
use sha1::{Digest, Sha1};
use x509_parser::prelude::FromDer;

use super::*;
use crate::cert::{
    CertError, Credential, KeyKind, PrivateKey, RsaPadding, TrustStore, algorithm_id,
    supported_hashes,
};
use crate::wire::{
    AuthMethod, AuthPayload, CertEncoding, ExchangeType, Flags, Header, Message, NotifyPayload,
    NotifyType, Payload,
};

const RSA_A: &str = include_str!("../../../tests/data/rsa2048.pk8.pem");
const RSA_B: &str = include_str!("../../../tests/data/rsa2048-b.pk8.pem");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    P256,
    P384,
    RsaPkcs1,
    RsaPss,
    Ed25519,
}

const KINDS: [Kind; 5] = [
    Kind::P256,
    Kind::P384,
    Kind::RsaPkcs1,
    Kind::RsaPss,
    Kind::Ed25519,
];

struct Ca {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2040, 1, 1);
        let der = p.self_signed(&key).unwrap().der().to_vec();
        Ca {
            der,
            issuer: Issuer::new(p, key),
        }
    }

    fn store(&self) -> Arc<TrustStore> {
        Arc::new(TrustStore::from_der(&[&self.der]).unwrap())
    }

    /// A certificate for `name` (CN and dNSName SAN) valid from `from` to `to` (years).
    fn issue(&self, name: &str, kind: Kind, (from, to): (i32, i32)) -> Arc<Credential> {
        let rng = SystemRandom::new();
        let rsa = if name == "a.test" { RSA_A } else { RSA_B };
        let (public, key) = match kind {
            Kind::P256 | Kind::P384 | Kind::Ed25519 => {
                let alg = match kind {
                    Kind::P256 => &PKCS_ECDSA_P256_SHA256,
                    Kind::P384 => &PKCS_ECDSA_P384_SHA384,
                    _ => &PKCS_ED25519,
                };
                let k = KeyPair::generate_for(alg).unwrap();
                let ours = PrivateKey::from_pkcs8_der(&k.serialize_der(), &rng).unwrap();
                (k, ours)
            }
            Kind::RsaPkcs1 | Kind::RsaPss => (
                KeyPair::from_pem_and_sign_algo(rsa, &PKCS_RSA_SHA256).unwrap(),
                PrivateKey::from_pem(rsa.as_bytes(), &rng).unwrap(),
            ),
        };
        let key = match kind {
            Kind::RsaPss => key.with_rsa_padding(RsaPadding::PssSha256),
            _ => key,
        };
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(to, 1, 1);
        let der = p.signed_by(&public, &self.issuer).unwrap().der().to_vec();
        Arc::new(Credential::new(key, vec![der]).unwrap())
    }
}

/// `config(initiator)` authenticating both ways by certificate: ours from `own`,
/// the peer's checked against `trusts`.
fn cert_config(initiator: bool, own: &Ca, kind: Kind, trusts: &Ca) -> IkeConfig {
    let name = if initiator { "a.test" } else { "b.test" };
    let c = config(initiator);
    IkeConfig {
        remote_id: c.remote_id.clone(),
        ike_suites: c.ike_suites.clone(),
        child_suites: c.child_suites.clone(),
        local_ts: c.local_ts.clone(),
        remote_ts: c.remote_ts.clone(),
        ..IkeConfig::with_certificate(
            c.local_id.clone(),
            own.issue(name, kind, (2025, 2035)),
            trusts.store(),
        )
    }
}

fn pair_of(kind_i: Kind, kind_r: Kind) -> Pair {
    let ca = Ca::new("Test CA");
    Pair::new(
        cert_config(true, &ca, kind_i, &ca),
        cert_config(false, &ca, kind_r, &ca),
    )
}

/// The IKE_AUTH request and response of an established pair, decrypted (the configs
/// must not fragment them).
fn auth_exchange(pair: &Pair) -> (Vec<Payload>, Vec<Payload>) {
    let open = |sa: &IkeSa, data: &[u8]| sa.recv_cipher().unwrap().open_payloads(data).unwrap();
    let (h, req) = open(&pair.responder, &pair.log[2].1);
    assert_eq!(
        (h.exchange, h.flags.response()),
        (ExchangeType::IkeAuth, false)
    );
    let (h, resp) = open(&pair.initiator, &pair.log[3].1);
    assert_eq!(
        (h.exchange, h.flags.response()),
        (ExchangeType::IkeAuth, true)
    );
    (req, resp)
}

fn auth_of(payloads: &[Payload]) -> &AuthPayload {
    payloads
        .iter()
        .find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        })
        .unwrap()
}

fn notify(payloads: &[Payload], ty: NotifyType) -> Option<&NotifyPayload> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.notify_type == ty => Some(n),
        _ => None,
    })
}

/// The RFC 7427 AlgorithmIdentifier each kind signs with, given our own announced
/// hashes (SHA2-256, SHA2-384, Identity).
fn expected_algorithm(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::P256 => algorithm_id::ECDSA_WITH_SHA256,
        Kind::P384 => algorithm_id::ECDSA_WITH_SHA384,
        // The key prefers SHA-512, which we do not announce.
        Kind::RsaPkcs1 => algorithm_id::SHA384_WITH_RSA,
        Kind::RsaPss => algorithm_id::RSASSA_PSS_SHA256,
        Kind::Ed25519 => algorithm_id::ED25519,
    }
}

fn algorithm_of(auth: &AuthPayload) -> &[u8] {
    assert_eq!(auth.method, AuthMethod::DigitalSignature);
    let len = usize::from(auth.data[0]);
    &auth.data[1..=len]
}

#[test]
fn each_key_type_authenticates_both_ways() {
    for kind in KINDS {
        let ca = Ca::new("Test CA");
        let mut ci = cert_config(true, &ca, kind, &ca);
        let mut cr = cert_config(false, &ca, kind, &ca);
        ci.fragmentation = false;
        cr.fragmentation = false;
        let mut pair = Pair::new(ci, cr);
        pair.drive();
        assert!(
            pair.initiator.is_established() && pair.responder.is_established(),
            "{kind:?}: {:?} / {:?}",
            pair.events_i,
            pair.events_r
        );
        assert_eq!(pair.agreed_children().len(), 1, "{kind:?}");
        let (req, resp) = auth_exchange(&pair);
        // RFC 7296 §1.2 order: IDi, CERT, CERTREQ, IDr, AUTH; and IDr, CERT, AUTH.
        assert!(
            matches!(
                req.as_slice(),
                [
                    Payload::IdI(_),
                    Payload::Cert(_),
                    Payload::CertReq(_),
                    Payload::IdR(_),
                    Payload::Auth(_),
                    ..
                ]
            ),
            "{kind:?}: {req:?}"
        );
        assert!(
            matches!(
                resp.as_slice(),
                [Payload::IdR(_), Payload::Cert(_), Payload::Auth(_), ..]
            ),
            "{kind:?}: {resp:?}"
        );
        for payloads in [&req, &resp] {
            assert_eq!(
                algorithm_of(auth_of(payloads)),
                expected_algorithm(kind),
                "{kind:?}"
            );
        }
    }
}

#[test]
fn different_key_types_and_cas_per_side() {
    // Each side has its own CA and trusts only the other's; fragmentation stays on,
    // and the RSA side's IKE_AUTH needs it.
    let (ca_a, ca_b) = (Ca::new("CA of a"), Ca::new("CA of b"));
    for (ki, kr) in [
        (Kind::RsaPss, Kind::Ed25519),
        (Kind::P384, Kind::RsaPkcs1),
        (Kind::Ed25519, Kind::P256),
    ] {
        let mut ci = cert_config(true, &ca_a, ki, &ca_b);
        ci.fragment_size = 600;
        let cr = cert_config(false, &ca_b, kr, &ca_a);
        let mut pair = Pair::new(ci, cr);
        pair.drive();
        assert!(
            pair.initiator.is_established() && pair.responder.is_established(),
            "{ki:?}/{kr:?}: {:?} / {:?}",
            pair.events_i,
            pair.events_r
        );
        assert_eq!(pair.agreed_children().len(), 1);
    }
}

fn certreqs(payloads: &[Payload]) -> Vec<(CertEncoding, Vec<u8>)> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::CertReq(c) => Some((c.encoding, c.authorities.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn init_announces_hashes_and_requests_certificates_from_our_cas() {
    let (ca1, ca2) = (Ca::new("CA one"), Ca::new("CA two"));
    let spki_sha1 = |der: &[u8]| {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
        Sha1::digest(cert.public_key().raw).to_vec()
    };
    let both = Arc::new(TrustStore::from_der(&[&ca1.der, &ca2.der]).unwrap());
    let mut ci = cert_config(true, &ca1, Kind::P256, &ca1);
    let mut cr = cert_config(false, &ca1, Kind::P256, &ca1);
    ci.peer_auth = PeerAuth::Certificate(both.clone());
    cr.peer_auth = PeerAuth::Certificate(both);
    ci.fragmentation = false;
    cr.fragmentation = false;
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    let request = Message::parse(&pair.log[0].1).unwrap();
    let response = Message::parse(&pair.log[1].1).unwrap();
    let hashes: Vec<u8> = supported_hashes()
        .iter()
        .flat_map(|h| h.to_be_bytes())
        .collect();
    assert_eq!(hashes, [0, 2, 0, 3, 0, 5]);
    for m in [&request, &response] {
        let n = notify(&m.payloads, NotifyType::SignatureHashAlgorithms).unwrap();
        assert_eq!(n.data, hashes);
    }
    // CERTREQ (encoding 4, SHA-1 of each CA's SubjectPublicKeyInfo, in store order):
    // none in the IKE_SA_INIT request, where RFC 7296 §1.2 has no room for it, one in
    // the IKE_SA_INIT response and one in the IKE_AUTH request.
    let want = vec![(
        CertEncoding::X509Signature,
        [spki_sha1(&ca1.der), spki_sha1(&ca2.der)].concat(),
    )];
    assert!(certreqs(&request.payloads).is_empty());
    assert_eq!(certreqs(&response.payloads), want);
    let (req, resp) = auth_exchange(&pair);
    assert_eq!(certreqs(&req), want);
    assert!(certreqs(&resp).is_empty());
}

#[test]
fn psk_configs_send_no_certificate_payloads() {
    let mut pair = Pair::new(config(true), config(false));
    pair.drive();
    for (_, d) in &pair.log[..2] {
        let m = Message::parse(d).unwrap();
        assert!(notify(&m.payloads, NotifyType::SignatureHashAlgorithms).is_none());
        assert!(!m.payloads.iter().any(|p| matches!(p, Payload::CertReq(_))));
    }
    let (req, resp) = auth_exchange(&pair);
    for p in req.iter().chain(&resp) {
        assert!(
            !matches!(p, Payload::Cert(_) | Payload::CertReq(_)),
            "{p:?}"
        );
    }
}

#[test]
fn psk_one_way_and_certificate_the_other() {
    let ca = Ca::new("Test CA");
    let psk = || crate::crypto::SecretBytes::from_slice(b"interop-test-psk-0123456789");
    // The initiator signs and checks the responder's PSK; the responder the reverse.
    let mut ci = cert_config(true, &ca, Kind::P256, &ca);
    ci.peer_auth = PeerAuth::Psk(psk());
    let mut cr = config(false);
    cr.peer_auth = PeerAuth::Certificate(ca.store());
    assert!(matches!(cr.auth, LocalAuth::Psk(_)));
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    // Only the side that verifies signatures announces hashes and asks for certificates.
    let request = Message::parse(&pair.log[0].1).unwrap();
    let response = Message::parse(&pair.log[1].1).unwrap();
    assert!(notify(&request.payloads, NotifyType::SignatureHashAlgorithms).is_none());
    assert!(notify(&response.payloads, NotifyType::SignatureHashAlgorithms).is_some());
    assert!(
        response
            .payloads
            .iter()
            .any(|p| matches!(p, Payload::CertReq(_)))
    );
    let (req, resp) = auth_exchange(&pair);
    assert!(req.iter().any(|p| matches!(p, Payload::Cert(_))));
    assert!(!req.iter().any(|p| matches!(p, Payload::CertReq(_))));
    assert_eq!(auth_of(&req).method, AuthMethod::DigitalSignature);
    assert!(!resp.iter().any(|p| matches!(p, Payload::Cert(_))));
    assert_eq!(auth_of(&resp).method, AuthMethod::SharedKeyMic);
}

/// Runs a pair to the end and returns what each side reported.
fn outcome(mut pair: Pair) -> Pair {
    pair.drive();
    pair
}

fn failed_with(events: &[Event]) -> &IkeError {
    events
        .iter()
        .find_map(|e| match e {
            Event::Failed(e) => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failure in {events:?}"))
}

fn cert_error(e: &IkeError) -> &CertError {
    match e {
        IkeError::Certificate(c) => c.error(),
        other => panic!("not a certificate error: {other:?}"),
    }
}

/// The responder refused the initiator: it answered AUTHENTICATION_FAILED, both
/// sides are failed and hold nothing.
fn assert_responder_refused(pair: &Pair) -> &CertError {
    assert!(pair.initiator.is_failed() && pair.responder.is_failed());
    assert_eq!(
        pair.events_i,
        vec![Event::Failed(IkeError::PeerError(
            NotifyType::AuthenticationFailed
        ))]
    );
    assert_eq!(pair.events_r.len(), 1, "{:?}", pair.events_r);
    assert_eq!(pair.initiator.poll_timeout(), None);
    assert_eq!(pair.responder.poll_timeout(), None);
    assert!(pair.initiator.child_sas().is_empty() && pair.responder.child_sas().is_empty());
    cert_error(failed_with(&pair.events_r))
}

/// The initiator refused the responder: it failed with the reason and told the
/// responder, which closed the SA it had just established and removed its child SA.
fn assert_initiator_refused(pair: &Pair) -> &CertError {
    assert!(pair.initiator.is_failed());
    assert!(pair.responder.is_closed());
    assert_eq!(pair.events_i.len(), 1, "{:?}", pair.events_i);
    let installed = installs(&pair.events_r);
    assert_eq!(installed.len(), 1);
    assert_eq!(
        deleted(&pair.events_r),
        vec![installed[0].inbound.spi],
        "{:?}",
        pair.events_r
    );
    assert_eq!(pair.events_r.last(), Some(&Event::Closed { by_peer: true }));
    assert_eq!(pair.initiator.poll_timeout(), None);
    assert_eq!(pair.responder.poll_timeout(), None);
    assert!(pair.initiator.child_sas().is_empty() && pair.responder.child_sas().is_empty());
    cert_error(failed_with(&pair.events_i))
}

#[test]
fn expired_initiator_certificate() {
    let ca = Ca::new("Test CA");
    let mut ci = cert_config(true, &ca, Kind::P256, &ca);
    ci.auth = LocalAuth::Certificate(ca.issue("a.test", Kind::P256, (2020, 2024)));
    let pair = outcome(Pair::new(ci, cert_config(false, &ca, Kind::P256, &ca)));
    let e = assert_responder_refused(&pair);
    assert!(matches!(e, CertError::Expired { .. }), "{e:?}");
}

#[test]
fn expired_responder_certificate() {
    let ca = Ca::new("Test CA");
    let mut cr = cert_config(false, &ca, Kind::P384, &ca);
    cr.auth = LocalAuth::Certificate(ca.issue("b.test", Kind::P384, (2020, 2024)));
    let pair = outcome(Pair::new(cert_config(true, &ca, Kind::P384, &ca), cr));
    let e = assert_initiator_refused(&pair);
    assert!(matches!(e, CertError::Expired { .. }), "{e:?}");
}

#[test]
fn certificates_checked_at_the_injected_time() {
    // Valid 2025..2035: refused in 2024 and in 2036, accepted in 2030.
    for (year, ok) in [(2024, false), (2030, true), (2036, false)] {
        let mut pair = pair_of(Kind::Ed25519, Kind::Ed25519);
        pair.wall = SystemTime::UNIX_EPOCH
            + Duration::from_secs((year - 1970) * 365 * 24 * 3600 + 30 * 24 * 3600);
        let pair = outcome(pair);
        if ok {
            assert!(pair.initiator.is_established() && pair.responder.is_established());
        } else {
            let e = assert_responder_refused(&pair);
            match year {
                2024 => assert!(matches!(e, CertError::NotYetValid { .. }), "{e:?}"),
                _ => assert!(matches!(e, CertError::Expired { .. }), "{e:?}"),
            }
        }
    }
}

#[test]
fn certificate_from_an_unknown_or_impostor_ca() {
    let (ca, rogue) = (Ca::new("Test CA"), Ca::new("Rogue CA"));
    let pair = outcome(Pair::new(
        cert_config(true, &rogue, Kind::P256, &ca),
        cert_config(false, &ca, Kind::P256, &ca),
    ));
    let e = assert_responder_refused(&pair);
    assert!(matches!(e, CertError::UnknownIssuer), "{e:?}");
    let pair = outcome(Pair::new(
        cert_config(true, &ca, Kind::RsaPss, &ca),
        cert_config(false, &rogue, Kind::RsaPss, &ca),
    ));
    let e = assert_initiator_refused(&pair);
    assert!(matches!(e, CertError::UnknownIssuer), "{e:?}");
    // An impostor CA with the trusted CA's name: found as the issuer, but its
    // signature does not verify with the trusted key.
    let impostor = Ca::new("Test CA");
    let pair = outcome(Pair::new(
        cert_config(true, &impostor, Kind::P256, &ca),
        cert_config(false, &ca, Kind::P256, &ca),
    ));
    let e = assert_responder_refused(&pair);
    assert!(matches!(e, CertError::BadCertSignature), "{e:?}");
}

#[test]
fn id_not_named_by_the_certificate() {
    let ca = Ca::new("Test CA");
    // The initiator claims c.test with a certificate for a.test; the responder accepts
    // any ID, but only one the certificate names.
    let mut ci = cert_config(true, &ca, Kind::P256, &ca);
    ci.local_id = Identity::Fqdn("c.test".into());
    let mut cr = cert_config(false, &ca, Kind::P256, &ca);
    cr.remote_id = None;
    let pair = outcome(Pair::new(ci, cr));
    let e = assert_responder_refused(&pair);
    assert!(
        matches!(e, CertError::IdMismatch { id_type: 2, .. }),
        "{e:?}"
    );
    // The responder's ID is named by its certificate but is not the one configured.
    let mut ci = cert_config(true, &ca, Kind::P256, &ca);
    ci.remote_id = Some(Identity::Fqdn("other.test".into()));
    let mut pair = Pair::new(ci, cert_config(false, &ca, Kind::P256, &ca));
    pair.drive();
    assert!(pair.initiator.is_failed() && pair.responder.is_closed());
    assert_eq!(failed_with(&pair.events_i), &IkeError::AuthenticationFailed);
}

/// Delivers IKE_SA_INIT both ways by hand; returns the IKE_AUTH request, undelivered.
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

/// Re-seals the initiator's IKE_AUTH request with `edit` applied to its payloads.
fn forge_auth(pair: &Pair, request: &[u8], edit: impl FnOnce(&mut Vec<Payload>)) -> Vec<u8> {
    let (_, mut payloads) = pair
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(request)
        .unwrap();
    edit(&mut payloads);
    let (spi_i, spi_r) = pair.initiator.spis();
    let header = Header {
        spi_i,
        spi_r,
        minor_version: 0,
        exchange: ExchangeType::IkeAuth,
        flags: Flags::new(true, false),
        message_id: 1,
    };
    let mut forged = Vec::new();
    pair.initiator
        .send_cipher()
        .unwrap()
        .seal_payloads(
            &header,
            &payloads,
            &mut ChaCha20Rng::seed_from_u64(9),
            &mut forged,
        )
        .unwrap();
    forged
}

/// Delivers a doctored IKE_AUTH request of a fresh pair; checks the responder failed
/// cleanly and answered only AUTHENTICATION_FAILED, and returns its reason.
fn refuse_forged(pair: &mut Pair, edit: impl FnOnce(&mut Vec<Payload>)) -> IkeError {
    let request = through_init(pair);
    let forged = forge_auth(pair, &request, edit);
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    let err = pair
        .responder
        .handle_datagram(pair.now, pair.wall, ai, ar, &forged)
        .unwrap_err();
    assert!(pair.responder.is_failed());
    assert_eq!(
        pair.responder.poll_event(),
        Some(Event::Failed(err.clone()))
    );
    assert_eq!(pair.responder.poll_timeout(), None);
    let mut buf = Vec::new();
    pair.responder.poll_transmit(&mut buf).unwrap();
    let (_, answer) = pair
        .initiator
        .recv_cipher()
        .unwrap()
        .open_payloads(&buf)
        .unwrap();
    assert_eq!(
        answer,
        vec![Payload::Notify(NotifyPayload::new(
            NotifyType::AuthenticationFailed,
            vec![]
        ))]
    );
    err
}

fn unfragmented_pair(kind: Kind) -> Pair {
    let ca = Ca::new("Test CA");
    let mut ci = cert_config(true, &ca, kind, &ca);
    ci.fragmentation = false;
    Pair::new(ci, cert_config(false, &ca, kind, &ca))
}

fn auth_mut(payloads: &mut [Payload]) -> &mut AuthPayload {
    payloads
        .iter_mut()
        .find_map(|p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        })
        .unwrap()
}

#[test]
fn wrongly_signed_auth_is_refused() {
    for kind in KINDS {
        let err = refuse_forged(&mut unfragmented_pair(kind), |p| {
            let auth = auth_mut(p);
            // The last octet of the signature (for ECDSA: of s, so the DER stays valid).
            let last = auth.data.len() - 1;
            auth.data[last] ^= 0x01;
        });
        assert!(
            matches!(cert_error(&err), CertError::BadAuthSignature),
            "{kind:?}: {err:?}"
        );
    }
}

#[test]
fn auth_replayed_from_another_sa_is_refused() {
    // A valid signature by the right key, made for another IKE SA between the same
    // two configurations.
    let ca = Ca::new("Test CA");
    let mut ci = cert_config(true, &ca, Kind::P256, &ca);
    ci.fragmentation = false;
    let cr = cert_config(false, &ca, Kind::P256, &ca);
    let mut first = Pair::with_seeds(ci.clone(), cr.clone(), 11, 12);
    let request = through_init(&mut first);
    let (_, payloads) = first
        .responder
        .recv_cipher()
        .unwrap()
        .open_payloads(&request)
        .unwrap();
    let old = auth_of(&payloads).clone();
    let err = refuse_forged(&mut Pair::with_seeds(ci, cr, 21, 22), |p| {
        *auth_mut(p) = old;
    });
    assert!(
        matches!(cert_error(&err), CertError::BadAuthSignature),
        "{err:?}"
    );
}

#[test]
fn missing_certificate_and_wrong_method_are_refused() {
    let err = refuse_forged(&mut unfragmented_pair(Kind::P256), |p| {
        p.retain(|p| !matches!(p, Payload::Cert(_)));
    });
    assert!(matches!(cert_error(&err), CertError::EmptyChain), "{err:?}");
    let err = refuse_forged(&mut unfragmented_pair(Kind::P256), |p| {
        auth_mut(p).method = AuthMethod::SharedKeyMic;
    });
    assert_eq!(
        err,
        IkeError::UnexpectedAuthMethod(AuthMethod::SharedKeyMic)
    );
    // RFC 7427 data under the P-256 legacy method: raw r | s expected, not DER.
    let err = refuse_forged(&mut unfragmented_pair(Kind::P256), |p| {
        auth_mut(p).method = AuthMethod::EcdsaP256Sha256;
    });
    assert!(
        matches!(cert_error(&err), CertError::BadAuthSignature),
        "{err:?}"
    );
    // A PSK peer where a certificate is wanted, through the normal configuration.
    let ca = Ca::new("Test CA");
    let pair = outcome(Pair::new(
        config(true),
        cert_config(false, &ca, Kind::P256, &ca),
    ));
    assert!(pair.initiator.is_failed() && pair.responder.is_failed());
    assert_eq!(
        failed_with(&pair.events_r),
        &IkeError::UnexpectedAuthMethod(AuthMethod::SharedKeyMic)
    );
}

/// IKE_SA_INIT by hand with the responder's SIGNATURE_HASH_ALGORITHMS removed on the
/// way, as from a peer without RFC 7427; returns the IKE_AUTH request, undelivered.
fn through_init_without_hash_notify(pair: &mut Pair) -> Option<Vec<u8>> {
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    let mut buf = Vec::new();
    pair.initiator.poll_transmit(&mut buf).unwrap();
    pair.responder
        .handle_datagram(pair.now, pair.wall, ai, ar, &buf)
        .unwrap();
    pair.responder.poll_transmit(&mut buf).unwrap();
    let mut m = Message::parse(&buf).unwrap();
    m.payloads.retain(|p| {
        !matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::SignatureHashAlgorithms)
    });
    let stripped = m.to_bytes().unwrap();
    let _ = pair
        .initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &stripped);
    pair.initiator.poll_transmit(&mut buf).map(|_| buf)
}

#[test]
fn legacy_ecdsa_methods_towards_a_peer_without_rfc7427() {
    for (kind, method, len) in [
        (Kind::P256, AuthMethod::EcdsaP256Sha256, 64),
        (Kind::P384, AuthMethod::EcdsaP384Sha384, 96),
    ] {
        let mut pair = pair_of(kind, kind);
        let request = through_init_without_hash_notify(&mut pair).unwrap();
        let (_, payloads) = pair
            .responder
            .recv_cipher()
            .unwrap()
            .open_payloads(&request)
            .unwrap();
        let auth = auth_of(&payloads);
        assert_eq!((auth.method, auth.data.len()), (method, len), "{kind:?}");
        // The responder verifies the RFC 4754 signature and is up.
        let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
        pair.responder
            .handle_datagram(pair.now, pair.wall, ai, ar, &request)
            .unwrap();
        assert!(pair.responder.is_established(), "{kind:?}");
        // The initiator then sees an AUTH over the IKE_SA_INIT response as sent, not
        // as it arrived: the tampering is caught.
        pair.drive();
        let e = cert_error(failed_with(&pair.events_i));
        assert!(matches!(e, CertError::BadAuthSignature), "{kind:?}: {e:?}");
        assert!(pair.responder.is_closed());
    }
}

#[test]
fn no_legacy_method_for_rsa_and_ed25519_keys() {
    for (kind, key) in [
        (Kind::RsaPkcs1, KeyKind::Rsa),
        (Kind::Ed25519, KeyKind::Ed25519),
    ] {
        let mut pair = pair_of(kind, kind);
        assert!(through_init_without_hash_notify(&mut pair).is_none());
        assert!(pair.initiator.is_failed());
        assert_eq!(
            pair.initiator.poll_event(),
            Some(Event::Failed(IkeError::NoSignatureHash(key)))
        );
    }
}

#[test]
fn cert_error_is_reported_precisely_and_compares() {
    let a = IkeError::from(CertError::UnknownIssuer);
    assert_eq!(a, IkeError::from(CertError::UnknownIssuer));
    assert_ne!(a, IkeError::from(CertError::EmptyChain));
    assert_eq!(a.notify_type(), Some(NotifyType::AuthenticationFailed));
    assert_eq!(
        a.to_string(),
        "certificate authentication: certificate issued by an unknown CA"
    );
}

/// `SEQUENCE { SET { SEQUENCE { id-at-commonName, PrintableString cn } } }`: the name
/// rcgen writes as a UTF8String, in another string type, as a peer encoding its ID from
/// text may send it.
fn printable_cn(cn: &str) -> Identity {
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x13, cn.len() as u8];
    atv.extend(cn.as_bytes());
    let mut set = vec![0x30, atv.len() as u8];
    set.extend(atv);
    let mut rdn = vec![0x31, set.len() as u8];
    rdn.extend(set);
    let mut name = vec![0x30, rdn.len() as u8];
    name.extend(rdn);
    Identity::DerAsn1Dn(name)
}

#[test]
fn dn_ids_match_the_subject_as_a_name() {
    let ca = Ca::new("Test CA");
    let mut ci = cert_config(true, &ca, Kind::P256, &ca);
    ci.local_id = printable_cn("a.test");
    let mut cr = cert_config(false, &ca, Kind::P256, &ca);
    cr.remote_id = Some(printable_cn("A.TEST"));
    let mut pair = Pair::new(ci.clone(), cr.clone());
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    // A DN that is not the subject, even if the configuration accepts any ID.
    ci.local_id = printable_cn("b.test");
    cr.remote_id = None;
    let pair = outcome(Pair::new(ci, cr));
    let e = assert_responder_refused(&pair);
    assert!(
        matches!(e, CertError::IdMismatch { id_type: 9, .. }),
        "{e:?}"
    );
}
