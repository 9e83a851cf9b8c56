//! Certificate authentication (`ike::cert`): chain validation, ID matching, RFC 7427
//! AUTH signatures and CERTREQ, against certificates generated with rcgen at test time.
//!
//! Fixtures in `tests/data/` (ring cannot generate RSA keys):
//! - `rsa2048.pk8.pem`, `rsa2048-b.pk8.pem`: `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`
//! - `rsa2048.pkcs1.pem`: the first key as PKCS#1 (`openssl pkey -traditional`)
//! - `rsa_sha1_msg.sig`: `openssl dgst -sha1 -sign rsa2048.pk8.pem rsa_sha1_msg.bin`

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use ike::cert::{
    CertError, Credential, EkuPolicy, HashAlg, KeyKind, PeerCert, PrivateKey, RsaPadding,
    TrustStore, algorithm_id, certreq_hashes, certs_from_pem, check_id, choose_hash, sign_auth,
    signed_octets, store_matches_certreq, supported_hashes, verify_auth, verify_peer,
};
use ike::crypto::{Prf, SecretBytes};
use ike::wire::{AuthMethod, CertEncoding, Identity};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PKCS_RSA_SHA256, PKCS_RSA_SHA384, PKCS_RSA_SHA512, PublicKeyData, SanType, SignatureAlgorithm,
    date_time_ymd,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::SignatureAlgorithm as X509SigAlg;
use x509_parser::x509::AlgorithmIdentifier;

const RSA_PEM: &[u8] = include_bytes!("data/rsa2048.pk8.pem");
const RSA_B_PEM: &[u8] = include_bytes!("data/rsa2048-b.pk8.pem");
const RSA_PKCS1_PEM: &[u8] = include_bytes!("data/rsa2048.pkcs1.pem");
const RSA_SHA1_MSG: &[u8] = include_bytes!("data/rsa_sha1_msg.bin");
const RSA_SHA1_SIG: &[u8] = include_bytes!("data/rsa_sha1_msg.sig");

/// What AUTH signs in these tests; the exact bytes do not matter to the signature code.
const OCTETS: &[u8] = b"RealMessage1 | NonceRData | MACedIDForI";
const LEAF_CN: &str = "gw.example.net";

/// 2030-01-01T00:00:00Z: inside every default validity period below (2025..2035).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn years_from_now(years: i64) -> SystemTime {
    let shift = Duration::from_secs(years.unsigned_abs() * 365 * 24 * 3600);
    if years >= 0 {
        now() + shift
    } else {
        now() - shift
    }
}

struct Authority {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2035, 1, 1);
    p
}

fn root(cn: &str) -> Authority {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params(cn);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Authority {
        der,
        issuer: Issuer::new(params, key),
    }
}

fn intermediate(cn: &str, parent: &Authority) -> Authority {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let params = ca_params(cn);
    let der = params
        .signed_by(&key, &parent.issuer)
        .unwrap()
        .der()
        .to_vec();
    Authority {
        der,
        issuer: Issuer::new(params, key),
    }
}

/// A gateway certificate with one SAN of each type IKE IDs map to.
fn leaf_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, LEAF_CN);
    p.subject_alt_names = vec![
        SanType::DnsName(LEAF_CN.try_into().unwrap()),
        SanType::Rfc822Name("Admin@Example.NET".try_into().unwrap()),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        SanType::IpAddress(IpAddr::V6("2001:db8::10".parse().unwrap())),
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2035, 1, 1);
    p
}

fn issue(params: &CertificateParams, key: &KeyPair, by: &Authority) -> Vec<u8> {
    params.signed_by(key, &by.issuer).unwrap().der().to_vec()
}

fn rsa_keypair(pem: &[u8], alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::from_pem_and_sign_algo(std::str::from_utf8(pem).unwrap(), alg).unwrap()
}

/// A root, an intermediate under it, and a store that trusts only the root.
struct Pki {
    root: Authority,
    inter: Authority,
    store: TrustStore,
}

fn pki() -> Pki {
    let root = root("Test Root CA");
    let inter = intermediate("Test Intermediate CA", &root);
    let store = TrustStore::from_der(&[&root.der]).unwrap();
    Pki { root, inter, store }
}

/// A leaf of each key kind under the intermediate, with our key for it.
struct Leaf {
    der: Vec<u8>,
    key: PrivateKey,
}

fn leaf(pki: &Pki, kind: KeyKind) -> Leaf {
    let rng = SystemRandom::new();
    let (rcgen_key, key) = match kind {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::Ed25519 => {
            let alg = match kind {
                KeyKind::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
                KeyKind::EcdsaP384 => &PKCS_ECDSA_P384_SHA384,
                _ => &PKCS_ED25519,
            };
            let k = KeyPair::generate_for(alg).unwrap();
            let ours = PrivateKey::from_pkcs8_der(&k.serialize_der(), &rng).unwrap();
            (k, ours)
        }
        KeyKind::Rsa => (
            rsa_keypair(RSA_PEM, &PKCS_RSA_SHA256),
            PrivateKey::from_pem(RSA_PEM, &rng).unwrap(),
        ),
    };
    assert_eq!(key.kind(), kind);
    Leaf {
        der: issue(&leaf_params(), &rcgen_key, &pki.inter),
        key,
    }
}

fn peer(pki: &Pki, leaf: &Leaf) -> PeerCert {
    verify_peer(&[&leaf.der, &pki.inter.der], &pki.store, now()).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------- chain validation

#[test]
fn chain_through_intermediate_validates_and_exposes_identities() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP256);
    let peer = peer(&pki, &leaf);
    assert_eq!(peer.der(), leaf.der);
    assert_eq!(peer.subject(), format!("CN={LEAF_CN}"));
    assert_eq!(peer.dns_names(), [LEAF_CN]);
    assert_eq!(peer.rfc822_names(), ["Admin@Example.NET"]);
    assert_eq!(
        peer.ip_addrs(),
        [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            IpAddr::V6("2001:db8::10".parse().unwrap())
        ]
    );
    assert_eq!(peer.public_key().kind(), KeyKind::EcdsaP256);
}

#[test]
fn intermediate_held_in_the_store_completes_the_chain() {
    let mut pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP256);
    assert!(matches!(
        verify_peer(&[&leaf.der], &pki.store, now()),
        Err(CertError::UnknownIssuer)
    ));
    pki.store.add_intermediate_der(&pki.inter.der).unwrap();
    verify_peer(&[&leaf.der], &pki.store, now()).unwrap();
}

#[test]
fn extra_and_unordered_intermediates_are_tolerated() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP256);
    let stranger = root("Unrelated CA");
    verify_peer(
        &[&leaf.der, &stranger.der, &pki.inter.der],
        &pki.store,
        now(),
    )
    .unwrap();
}

#[test]
fn leaf_directly_under_the_root_validates() {
    let pki = pki();
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let der = issue(&leaf_params(), &key, &pki.root);
    verify_peer(&[&der], &pki.store, now()).unwrap();
}

#[test]
fn expired_certificate() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP256);
    let err = verify_peer(&[&leaf.der, &pki.inter.der], &pki.store, years_from_now(10));
    assert!(matches!(err, Err(CertError::Expired { .. })), "{err:?}");
}

#[test]
fn not_yet_valid_certificate() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP256);
    let err = verify_peer(&[&leaf.der, &pki.inter.der], &pki.store, years_from_now(-6));
    assert!(matches!(err, Err(CertError::NotYetValid { .. })), "{err:?}");

    // Only the leaf is in the future; the CAs are valid.
    let mut params = leaf_params();
    params.not_before = date_time_ymd(2031, 1, 1);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = issue(&params, &key, &pki.inter);
    let err = verify_peer(&[&der, &pki.inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::NotYetValid { .. })), "{err:?}");
    verify_peer(&[&der, &pki.inter.der], &pki.store, years_from_now(2)).unwrap();
}

#[test]
fn expired_intermediate() {
    let pki = pki();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = ca_params("Old Intermediate");
    params.not_after = date_time_ymd(2029, 1, 1);
    let old = Authority {
        der: params
            .signed_by(&key, &pki.root.issuer)
            .unwrap()
            .der()
            .to_vec(),
        issuer: Issuer::new(params, key),
    };
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = issue(&leaf_params(), &leaf_key, &old);
    let err = verify_peer(&[&der, &old.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::Expired { .. })), "{err:?}");
}

#[test]
fn certificate_from_unknown_ca() {
    let pki = pki();
    let other = pki_with_root_name("Test Root CA");
    let leaf = leaf(&other, KeyKind::EcdsaP256);
    // Same names, different keys: the path cannot reach our root.
    let err = verify_peer(&[&leaf.der, &other.inter.der], &pki.store, now());
    assert!(
        matches!(
            err,
            Err(CertError::UnknownIssuer | CertError::BadCertSignature)
        ),
        "{err:?}"
    );

    let stranger = pki_with_root_name("Some Other Root");
    let leaf = leaf_of(&stranger);
    let err = verify_peer(&[&leaf, &stranger.inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::UnknownIssuer)), "{err:?}");
}

fn pki_with_root_name(cn: &str) -> Pki {
    let root = root(cn);
    let inter = intermediate("Test Intermediate CA", &root);
    let store = TrustStore::from_der(&[&root.der]).unwrap();
    Pki { root, inter, store }
}

fn leaf_of(pki: &Pki) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    issue(&leaf_params(), &key, &pki.inter)
}

#[test]
fn forged_issuer_signature() {
    let pki = pki();
    // An impostor CA with our root's exact name signs an intermediate.
    let impostor = root("Test Root CA");
    let inter = intermediate("Test Intermediate CA", &impostor);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = issue(&leaf_params(), &key, &inter);
    let err = verify_peer(&[&der, &inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::BadCertSignature)), "{err:?}");
}

#[test]
fn tampered_certificate_signature() {
    let pki = pki();
    let mut der = leaf_of(&pki);
    // The last octet is inside the signature's s INTEGER.
    *der.last_mut().unwrap() ^= 0x01;
    let err = verify_peer(&[&der, &pki.inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::BadCertSignature)), "{err:?}");

    // A changed subject (one octet of the CN) breaks the signature too.
    let mut der = leaf_of(&pki);
    let at = der
        .windows(LEAF_CN.len())
        .position(|w| w == LEAF_CN.as_bytes())
        .unwrap();
    der[at] ^= 0x20;
    let err = verify_peer(&[&der, &pki.inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::BadCertSignature)), "{err:?}");
}

#[test]
fn empty_and_malformed_chains() {
    let pki = pki();
    let none: [&[u8]; 0] = [];
    assert!(matches!(
        verify_peer(&none, &pki.store, now()),
        Err(CertError::EmptyChain)
    ));
    let err = verify_peer(&[&[0x30, 0x03, 0x02, 0x01, 0x00][..]], &pki.store, now());
    assert!(matches!(err, Err(CertError::Malformed(_))), "{err:?}");
    let leaf = leaf_of(&pki);
    let err = verify_peer(&[&leaf[..leaf.len() - 5]], &pki.store, now());
    assert!(matches!(err, Err(CertError::Malformed(_))), "{err:?}");
}

#[test]
fn ca_certificate_is_not_an_end_entity() {
    let pki = pki();
    let err = verify_peer(&[&pki.inter.der], &pki.store, now());
    assert!(
        matches!(err, Err(CertError::Path(webpki::Error::CaUsedAsEndEntity))),
        "{err:?}"
    );
}

#[test]
fn extended_key_usage_policy() {
    let pki = pki();
    let with_eku = |eku: ExtendedKeyUsagePurpose| {
        let mut params = leaf_params();
        params.extended_key_usages = vec![eku];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        issue(&params, &key, &pki.inter)
    };
    let strict = pki.store.clone().with_eku_policy(EkuPolicy::Rfc4945);
    let ipsec_ike = with_eku(ExtendedKeyUsagePurpose::Other(vec![
        1, 3, 6, 1, 5, 5, 7, 3, 17,
    ]));
    let any = with_eku(ExtendedKeyUsagePurpose::Any);
    let server = with_eku(ExtendedKeyUsagePurpose::ServerAuth);
    let code = with_eku(ExtendedKeyUsagePurpose::CodeSigning);

    for der in [&ipsec_ike, &any, &server] {
        verify_peer(&[der, &pki.inter.der], &pki.store, now()).unwrap();
    }
    for der in [&ipsec_ike, &any] {
        verify_peer(&[der, &pki.inter.der], &strict, now()).unwrap();
    }
    let err = verify_peer(&[&server, &pki.inter.der], &strict, now());
    assert!(matches!(err, Err(CertError::KeyUsage(_))), "{err:?}");
    let err = verify_peer(&[&code, &pki.inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::KeyUsage(_))), "{err:?}");
}

#[test]
fn key_usage_must_allow_signatures() {
    let pki = pki();
    let mut params = leaf_params();
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = issue(&params, &key, &pki.inter);
    let err = verify_peer(&[&der, &pki.inter.der], &pki.store, now());
    assert!(matches!(err, Err(CertError::KeyUsage(_))), "{err:?}");

    params.key_usages = vec![KeyUsagePurpose::ContentCommitment];
    let der = issue(&params, &key, &pki.inter);
    verify_peer(&[&der, &pki.inter.der], &pki.store, now()).unwrap();
}

#[test]
fn trust_store_from_pem() {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = ca_params("PEM Root");
    let root_pem = root_params.self_signed(&root_key).unwrap().pem();
    let root = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let inter_params = ca_params("PEM Intermediate");
    let inter_pem = inter_params.signed_by(&inter_key, &root).unwrap().pem();
    let inter = Authority {
        der: Vec::new(),
        issuer: Issuer::new(inter_params, inter_key),
    };

    let mut store = TrustStore::from_pem(root_pem.as_bytes()).unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(store.add_intermediate_pem(inter_pem.as_bytes()).unwrap(), 1);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = issue(&leaf_params(), &key, &inter);
    verify_peer(&[&der], &store, now()).unwrap();

    assert!(matches!(
        TrustStore::from_pem(b"no pem here"),
        Err(CertError::InvalidPem(_))
    ));
    assert!(TrustStore::new().is_empty());
}

// ---------------------------------------------------------------- ID matching (RFC 4945 §3.1)

fn id_err(peer: &PeerCert, id: Identity) -> u8 {
    match check_id(peer, &id) {
        Err(CertError::IdMismatch { id_type, .. }) => id_type,
        other => panic!("{id:?}: expected IdMismatch, got {other:?}"),
    }
}

#[test]
fn fqdn_id_matches_dns_san_only() {
    let pki = pki();
    let peer = peer(&pki, &leaf(&pki, KeyKind::EcdsaP256));
    check_id(&peer, &Identity::Fqdn(LEAF_CN.into())).unwrap();
    check_id(&peer, &Identity::Fqdn("GW.Example.NET".into())).unwrap();
    check_id(&peer, &Identity::Fqdn("gw.example.net.".into())).unwrap();
    assert_eq!(id_err(&peer, Identity::Fqdn("other.example.net".into())), 2);
    assert_eq!(id_err(&peer, Identity::Fqdn("example.net".into())), 2);
    // The rfc822Name's domain is not a dNSName.
    assert_eq!(id_err(&peer, Identity::Fqdn("Example.NET".into())), 2);
}

#[test]
fn rfc822_id_matches_email_san() {
    let pki = pki();
    let peer = peer(&pki, &leaf(&pki, KeyKind::EcdsaP256));
    check_id(&peer, &Identity::Rfc822("Admin@Example.NET".into())).unwrap();
    check_id(&peer, &Identity::Rfc822("Admin@example.net".into())).unwrap();
    // The local part is case-sensitive (RFC 5280 §7.5).
    assert_eq!(
        id_err(&peer, Identity::Rfc822("admin@example.net".into())),
        3
    );
    assert_eq!(id_err(&peer, Identity::Rfc822("Admin@other.net".into())), 3);
    assert_eq!(id_err(&peer, Identity::Rfc822(LEAF_CN.into())), 3);
}

#[test]
fn ip_ids_match_ip_sans() {
    let pki = pki();
    let peer = peer(&pki, &leaf(&pki, KeyKind::EcdsaP256));
    check_id(&peer, &Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 10))).unwrap();
    check_id(&peer, &Identity::Ipv6("2001:db8::10".parse().unwrap())).unwrap();
    assert_eq!(
        id_err(&peer, Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 11))),
        1
    );
    assert_eq!(id_err(&peer, Identity::Ipv6(Ipv6Addr::LOCALHOST)), 5);
    // An IPv4-mapped IPv6 ID is a different identity from the IPv4 SAN.
    assert_eq!(
        id_err(
            &peer,
            Identity::Ipv6(Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped())
        ),
        5
    );
}

#[test]
fn dn_id_matches_subject_der_exactly() {
    let pki = pki();
    let peer = peer(&pki, &leaf(&pki, KeyKind::EcdsaP256));
    // Name ::= SEQUENCE { SET { SEQUENCE { id-at-commonName, UTF8String } } }, by hand.
    let cn = LEAF_CN.as_bytes();
    let atv = [
        &[
            0x30,
            7 + cn.len() as u8,
            0x06,
            0x03,
            0x55,
            0x04,
            0x03,
            0x0c,
            cn.len() as u8,
        ][..],
        cn,
    ]
    .concat();
    let set = [&[0x31, atv.len() as u8][..], &atv].concat();
    let name = [&[0x30, set.len() as u8][..], &set].concat();
    assert_eq!(peer.subject_dn(), name);
    check_id(&peer, &Identity::DerAsn1Dn(name.clone())).unwrap();

    // The same CN as PrintableString is a different encoding: byte-exact compare refuses it.
    let mut printable = name.clone();
    let tag = printable.iter().position(|&b| b == 0x0c).unwrap();
    printable[tag] = 0x13;
    assert_eq!(id_err(&peer, Identity::DerAsn1Dn(printable)), 9);
}

#[test]
fn unmatchable_id_types_are_refused() {
    let pki = pki();
    let peer = peer(&pki, &leaf(&pki, KeyKind::EcdsaP256));
    assert_eq!(id_err(&peer, Identity::KeyId(b"gw".to_vec())), 11);
    assert_eq!(
        id_err(
            &peer,
            Identity::Other {
                id_type: 10,
                data: vec![0x82, 0x01, b'x']
            }
        ),
        10
    );
}

#[test]
fn ids_of_a_cert_without_sans() {
    let pki = pki();
    let mut params = leaf_params();
    params.subject_alt_names.clear();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = issue(&params, &key, &pki.inter);
    let peer = verify_peer(&[&der, &pki.inter.der], &pki.store, now()).unwrap();
    // RFC 4945 §3.1: the CN is not a dNSName.
    assert_eq!(id_err(&peer, Identity::Fqdn(LEAF_CN.into())), 2);
    check_id(&peer, &Identity::DerAsn1Dn(peer.subject_dn().to_vec())).unwrap();
}

// ---------------------------------------------------------------- AUTH signatures (RFC 7427)

fn split_auth(data: &[u8]) -> (&[u8], &[u8]) {
    let len = usize::from(data[0]);
    (&data[1..1 + len], &data[1 + len..])
}

/// Signs, checks the AlgorithmIdentifier, verifies, and checks that a flipped signature
/// bit and different signed octets are both refused.
fn round_trip(key: &PrivateKey, peer: &PeerCert, hash: HashAlg, alg_id: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    let data = sign_auth(key, OCTETS, hash, &rng).unwrap();
    let (got_alg, sig) = split_auth(&data);
    assert_eq!(got_alg, alg_id);
    assert!(!sig.is_empty());
    verify_auth(peer, AuthMethod::DigitalSignature, OCTETS, &data).unwrap();

    let mut tampered = data.clone();
    *tampered.last_mut().unwrap() ^= 0x01;
    assert!(matches!(
        verify_auth(peer, AuthMethod::DigitalSignature, OCTETS, &tampered),
        Err(CertError::BadAuthSignature)
    ));
    assert!(matches!(
        verify_auth(peer, AuthMethod::DigitalSignature, b"other octets", &data),
        Err(CertError::BadAuthSignature)
    ));
    data
}

#[test]
fn ecdsa_p256_sha256_round_trip() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP256);
    let peer = peer(&pki, &leaf);
    round_trip(
        &leaf.key,
        &peer,
        HashAlg::Sha256,
        algorithm_id::ECDSA_WITH_SHA256,
    );
}

#[test]
fn ecdsa_p384_sha384_round_trip() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::EcdsaP384);
    let peer = peer(&pki, &leaf);
    round_trip(
        &leaf.key,
        &peer,
        HashAlg::Sha384,
        algorithm_id::ECDSA_WITH_SHA384,
    );
}

#[test]
fn rsa_pkcs1_round_trips() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::Rsa);
    let peer = peer(&pki, &leaf);
    for (hash, alg_id) in [
        (HashAlg::Sha256, algorithm_id::SHA256_WITH_RSA),
        (HashAlg::Sha384, algorithm_id::SHA384_WITH_RSA),
        (HashAlg::Sha512, algorithm_id::SHA512_WITH_RSA),
    ] {
        let data = round_trip(&leaf.key, &peer, hash, alg_id);
        assert_eq!(split_auth(&data).1.len(), 256);
    }
}

#[test]
fn rsa_pss_sha256_round_trip_and_der_variant() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::Rsa);
    let peer = peer(&pki, &leaf);
    let key = leaf.key.with_rsa_padding(RsaPadding::PssSha256);
    let data = round_trip(
        &key,
        &peer,
        HashAlg::Sha256,
        algorithm_id::RSASSA_PSS_SHA256,
    );

    // The same signature announced with the strict-DER PSS AlgorithmIdentifier.
    let (_, sig) = split_auth(&data);
    let der = algorithm_id::RSASSA_PSS_SHA256_DER;
    let rewritten = [&[der.len() as u8][..], der, sig].concat();
    verify_auth(&peer, AuthMethod::DigitalSignature, OCTETS, &rewritten).unwrap();

    // A PSS signature announced as PKCS#1 v1.5 does not verify.
    let lie = [
        &[algorithm_id::SHA256_WITH_RSA.len() as u8][..],
        algorithm_id::SHA256_WITH_RSA,
        sig,
    ]
    .concat();
    assert!(matches!(
        verify_auth(&peer, AuthMethod::DigitalSignature, OCTETS, &lie),
        Err(CertError::BadAuthSignature)
    ));
}

#[test]
fn ed25519_round_trip_signs_the_octets_unhashed() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::Ed25519);
    let peer = peer(&pki, &leaf);
    let data = round_trip(&leaf.key, &peer, HashAlg::Identity, algorithm_id::ED25519);
    // RFC 8420: plain Ed25519 over the octets, checked with ring directly.
    let (_, sig) = split_auth(&data);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ED25519,
        peer.public_key().key_bytes(),
    )
    .verify(OCTETS, sig)
    .unwrap();
}

#[test]
fn signature_by_a_different_key_is_refused() {
    let pki = pki();
    let rng = SystemRandom::new();
    for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384, KeyKind::Ed25519] {
        let a = leaf(&pki, kind);
        let b = leaf(&pki, kind);
        let hash = a.key.hashes()[0];
        let data = sign_auth(&b.key, OCTETS, hash, &rng).unwrap();
        let err = verify_auth(&peer(&pki, &a), AuthMethod::DigitalSignature, OCTETS, &data);
        assert!(
            matches!(err, Err(CertError::BadAuthSignature)),
            "{kind:?}: {err:?}"
        );
    }
    let a = leaf(&pki, KeyKind::Rsa);
    let other = PrivateKey::from_pem(RSA_B_PEM, &rng).unwrap();
    let data = sign_auth(&other, OCTETS, HashAlg::Sha256, &rng).unwrap();
    let err = verify_auth(&peer(&pki, &a), AuthMethod::DigitalSignature, OCTETS, &data);
    assert!(matches!(err, Err(CertError::BadAuthSignature)), "{err:?}");
}

#[test]
fn signature_algorithm_must_fit_the_certificate_key() {
    let pki = pki();
    let rng = SystemRandom::new();
    let ec = leaf(&pki, KeyKind::EcdsaP256);
    let ed = leaf(&pki, KeyKind::Ed25519);
    let data = sign_auth(&ed.key, OCTETS, HashAlg::Identity, &rng).unwrap();
    let err = verify_auth(
        &peer(&pki, &ec),
        AuthMethod::DigitalSignature,
        OCTETS,
        &data,
    );
    assert!(
        matches!(
            err,
            Err(CertError::AlgorithmKeyMismatch {
                key: KeyKind::EcdsaP256,
                ..
            })
        ),
        "{err:?}"
    );

    // ECDSA P-256 verifies ecdsa-with-SHA384 too (RFC 7427 decouples hash and curve).
    let p384 = leaf(&pki, KeyKind::EcdsaP384);
    let data = sign_auth(&p384.key, OCTETS, HashAlg::Sha384, &rng).unwrap();
    let err = verify_auth(
        &peer(&pki, &ec),
        AuthMethod::DigitalSignature,
        OCTETS,
        &data,
    );
    assert!(matches!(err, Err(CertError::BadAuthSignature)), "{err:?}");
}

#[test]
fn key_cannot_sign_with_unsupported_hash() {
    let pki = pki();
    let rng = SystemRandom::new();
    let cases = [
        (KeyKind::EcdsaP256, HashAlg::Sha384),
        (KeyKind::EcdsaP384, HashAlg::Sha256),
        (KeyKind::Ed25519, HashAlg::Sha256),
        (KeyKind::Rsa, HashAlg::Identity),
    ];
    for (kind, hash) in cases {
        let leaf = leaf(&pki, kind);
        let err = sign_auth(&leaf.key, OCTETS, hash, &rng);
        assert!(
            matches!(err, Err(CertError::UnsupportedHash { key, hash: h }) if key == kind && h == hash),
            "{err:?}"
        );
    }
    let pss = leaf(&pki, KeyKind::Rsa)
        .key
        .with_rsa_padding(RsaPadding::PssSha256);
    assert!(matches!(
        sign_auth(&pss, OCTETS, HashAlg::Sha512, &rng),
        Err(CertError::UnsupportedHash { .. })
    ));
}

#[test]
fn malformed_and_unknown_auth_data() {
    let pki = pki();
    let peer = peer(&pki, &leaf(&pki, KeyKind::EcdsaP256));
    let verify = |data: &[u8]| verify_auth(&peer, AuthMethod::DigitalSignature, OCTETS, data);
    assert!(matches!(verify(&[]), Err(CertError::MalformedAuth(_))));
    assert!(matches!(
        verify(&[200, 0x30, 0x00]),
        Err(CertError::MalformedAuth(_))
    ));
    let no_sig = [&[12u8][..], algorithm_id::ECDSA_WITH_SHA256].concat();
    assert!(matches!(verify(&no_sig), Err(CertError::MalformedAuth(_))));
    // sha1WithRSAEncryption (RFC 7427 A.1.1) is deliberately not accepted.
    let sha1_rsa = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
    ];
    let data = [&[15u8][..], &sha1_rsa, &[1, 2, 3]].concat();
    assert!(matches!(
        verify(&data),
        Err(CertError::UnsupportedAlgorithm)
    ));
    // ring has no ECDSA with SHA-512.
    let data = [&[12u8][..], algorithm_id::ECDSA_WITH_SHA512, &[1, 2, 3]].concat();
    assert!(matches!(
        verify(&data),
        Err(CertError::UnsupportedAlgorithm)
    ));
}

#[test]
fn legacy_ecdsa_methods_use_raw_r_s() {
    let pki = pki();
    let rng = SystemRandom::new();
    for (rcgen_alg, signing, method, other) in [
        (
            &PKCS_ECDSA_P256_SHA256,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            AuthMethod::EcdsaP256Sha256,
            AuthMethod::EcdsaP384Sha384,
        ),
        (
            &PKCS_ECDSA_P384_SHA384,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            AuthMethod::EcdsaP384Sha384,
            AuthMethod::EcdsaP256Sha256,
        ),
    ] {
        let key = KeyPair::generate_for(rcgen_alg).unwrap();
        let der = issue(&leaf_params(), &key, &pki.inter);
        let peer = verify_peer(&[&der, &pki.inter.der], &pki.store, now()).unwrap();
        let pair =
            ring::signature::EcdsaKeyPair::from_pkcs8(signing, &key.serialize_der(), &rng).unwrap();
        let sig = pair.sign(&rng, OCTETS).unwrap();
        verify_auth(&peer, method, OCTETS, sig.as_ref()).unwrap();
        assert!(matches!(
            verify_auth(&peer, method, b"x", sig.as_ref()),
            Err(CertError::BadAuthSignature)
        ));
        assert!(matches!(
            verify_auth(&peer, other, OCTETS, sig.as_ref()),
            Err(CertError::AlgorithmKeyMismatch { .. })
        ));
    }
}

#[test]
fn legacy_rsa_method_is_pkcs1_sha1() {
    let pki = pki();
    let leaf = leaf(&pki, KeyKind::Rsa);
    let peer = peer(&pki, &leaf);
    verify_auth(&peer, AuthMethod::RsaSignature, RSA_SHA1_MSG, RSA_SHA1_SIG).unwrap();
    let mut bad = RSA_SHA1_SIG.to_vec();
    bad[100] ^= 0x80;
    assert!(matches!(
        verify_auth(&peer, AuthMethod::RsaSignature, RSA_SHA1_MSG, &bad),
        Err(CertError::BadAuthSignature)
    ));
    let ec = peer_of_kind(&pki, KeyKind::EcdsaP256);
    assert!(matches!(
        verify_auth(&ec, AuthMethod::RsaSignature, RSA_SHA1_MSG, RSA_SHA1_SIG),
        Err(CertError::AlgorithmKeyMismatch { .. })
    ));
}

fn peer_of_kind(pki: &Pki, kind: KeyKind) -> PeerCert {
    peer(pki, &leaf(pki, kind))
}

#[test]
fn other_auth_methods_are_unsupported() {
    let pki = pki();
    let peer = peer_of_kind(&pki, KeyKind::EcdsaP256);
    for method in [
        AuthMethod::SharedKeyMic,
        AuthMethod::DssSignature,
        AuthMethod::EcdsaP521Sha512,
        AuthMethod::NullAuthentication,
    ] {
        assert!(matches!(
            verify_auth(&peer, method, OCTETS, &[1, 2, 3]),
            Err(CertError::UnsupportedMethod(m)) if m == method
        ));
    }
}

// ---------------------------------------------------------------- SIGNATURE_HASH_ALGORITHMS

#[test]
fn hash_negotiation() {
    let pki = pki();
    assert_eq!(supported_hashes(), [2, 3, 5]);
    for id in [2, 3, 4, 5] {
        assert_eq!(HashAlg::from_iana(id).unwrap().iana_id(), id);
    }
    assert_eq!(HashAlg::from_iana(1), None);

    let strongswan = [2, 3, 4, 5];
    let p256 = leaf(&pki, KeyKind::EcdsaP256).key;
    let p384 = leaf(&pki, KeyKind::EcdsaP384).key;
    let ed = leaf(&pki, KeyKind::Ed25519).key;
    let rsa = leaf(&pki, KeyKind::Rsa).key;
    assert_eq!(choose_hash(&p256, &strongswan), Some(HashAlg::Sha256));
    assert_eq!(choose_hash(&p384, &strongswan), Some(HashAlg::Sha384));
    assert_eq!(choose_hash(&ed, &strongswan), Some(HashAlg::Identity));
    assert_eq!(choose_hash(&rsa, &strongswan), Some(HashAlg::Sha512));
    assert_eq!(choose_hash(&rsa, &[2, 3]), Some(HashAlg::Sha384));
    assert_eq!(choose_hash(&p384, &[2]), None);
    assert_eq!(choose_hash(&ed, &[2, 3, 4]), None);
    assert_eq!(choose_hash(&p256, &[]), None);
    let pss = rsa.with_rsa_padding(RsaPadding::PssSha256);
    assert_eq!(choose_hash(&pss, &strongswan), Some(HashAlg::Sha256));
    assert_eq!(choose_hash(&pss, &[3, 4]), None);
}

// ---------------------------------------------------------------- AlgorithmIdentifier constants

/// rcgen (an independent DER encoder) writes the same AlgorithmIdentifier into the
/// certificates it signs.
#[test]
fn algorithm_ids_equal_rcgen_encoding() {
    let self_signed = |key: &KeyPair| {
        let mut p = leaf_params();
        p.subject_alt_names.clear();
        p.self_signed(key).unwrap().der().to_vec()
    };
    let cases: [(&[u8], KeyPair); 6] = [
        (
            algorithm_id::ECDSA_WITH_SHA256,
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        ),
        (
            algorithm_id::ECDSA_WITH_SHA384,
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
        ),
        (
            algorithm_id::ED25519,
            KeyPair::generate_for(&PKCS_ED25519).unwrap(),
        ),
        (
            algorithm_id::SHA256_WITH_RSA,
            rsa_keypair(RSA_PEM, &PKCS_RSA_SHA256),
        ),
        (
            algorithm_id::SHA384_WITH_RSA,
            rsa_keypair(RSA_PEM, &PKCS_RSA_SHA384),
        ),
        (
            algorithm_id::SHA512_WITH_RSA,
            rsa_keypair(RSA_PEM, &PKCS_RSA_SHA512),
        ),
    ];
    for (alg_id, key) in cases {
        let der = self_signed(&key);
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        // The certificate's signatureAlgorithm, re-located in the DER by its decoded OID.
        assert!(
            contains(&der, alg_id),
            "{:?}",
            cert.signature_algorithm.algorithm
        );
    }
}

/// x509-parser decodes every constant to the algorithm and parameters RFC 7427 names.
#[test]
fn algorithm_ids_decode_as_specified() {
    let decode = |der: &'static [u8]| {
        let (rest, alg) = AlgorithmIdentifier::from_der(der).unwrap();
        assert!(rest.is_empty());
        alg
    };
    let null_params = |alg: &AlgorithmIdentifier<'_>| {
        alg.parameters
            .as_ref()
            .map(|p| (p.tag().0, p.data.is_empty()))
    };
    for (der, oid) in [
        (algorithm_id::SHA256_WITH_RSA, "1.2.840.113549.1.1.11"),
        (algorithm_id::SHA384_WITH_RSA, "1.2.840.113549.1.1.12"),
        (algorithm_id::SHA512_WITH_RSA, "1.2.840.113549.1.1.13"),
    ] {
        let alg = decode(der);
        assert_eq!(alg.algorithm.to_id_string(), oid);
        assert_eq!(null_params(&alg), Some((5, true)), "NULL parameters");
    }
    for (der, oid) in [
        (algorithm_id::ECDSA_WITH_SHA256, "1.2.840.10045.4.3.2"),
        (algorithm_id::ECDSA_WITH_SHA384, "1.2.840.10045.4.3.3"),
        (algorithm_id::ECDSA_WITH_SHA512, "1.2.840.10045.4.3.4"),
        (algorithm_id::ED25519, "1.3.101.112"),
    ] {
        let alg = decode(der);
        assert_eq!(alg.algorithm.to_id_string(), oid);
        assert!(alg.parameters.is_none(), "absent parameters");
    }
    for der in [
        algorithm_id::RSASSA_PSS_SHA256,
        algorithm_id::RSASSA_PSS_SHA256_DER,
    ] {
        let alg = decode(der);
        assert_eq!(alg.algorithm.to_id_string(), "1.2.840.113549.1.1.10");
        let X509SigAlg::RSASSA_PSS(params) = X509SigAlg::try_from(&alg).unwrap() else {
            panic!("not RSASSA-PSS");
        };
        assert_eq!(
            params.hash_algorithm_oid().to_id_string(),
            "2.16.840.1.101.3.4.2.1"
        );
        let mgf = params.mask_gen_algorithm().unwrap();
        assert_eq!(mgf.mgf.to_id_string(), "1.2.840.113549.1.1.8");
        assert_eq!(mgf.hash.to_id_string(), "2.16.840.1.101.3.4.2.1");
        assert_eq!(params.salt_length(), 32);
        assert_eq!(params.trailer_field(), 1);
    }
    // The RFC's PSS blob is the strict DER plus an explicit trailerField [3] INTEGER 1,
    // which makes both enclosing SEQUENCEs 5 octets longer.
    let rfc = algorithm_id::RSASSA_PSS_SHA256;
    let der = algorithm_id::RSASSA_PSS_SHA256_DER;
    assert_eq!(&rfc[rfc.len() - 5..], [0xa3, 0x03, 0x02, 0x01, 0x01]);
    assert_eq!(rfc[2..14], der[2..14]);
    assert_eq!(rfc[15..rfc.len() - 5], der[15..]);
    assert_eq!((rfc[1] - der[1], rfc[14] - der[14]), (5, 5));
}

// ---------------------------------------------------------------- CERTREQ (RFC 7296 §3.7)

#[test]
fn certreq_hashes_are_sha1_of_ca_spki() {
    let pki = pki();
    let second = root("Second Root");
    let mut store = pki.store.clone();
    store.add_ca_der(&second.der).unwrap();

    let spki_hash = |a: &Authority| Sha1::digest(a.issuer.key().subject_public_key_info()).to_vec();
    let want = [spki_hash(&pki.root), spki_hash(&second)].concat();
    assert_eq!(certreq_hashes(&store), want);
    assert_eq!(certreq_hashes(&pki.store), spki_hash(&pki.root));
    assert!(certreq_hashes(&TrustStore::new()).is_empty());

    let unknown = spki_hash(&pki.inter);
    assert!(store_matches_certreq(&pki.store, &spki_hash(&pki.root)));
    assert!(store_matches_certreq(
        &pki.store,
        &[unknown.clone(), spki_hash(&pki.root)].concat()
    ));
    assert!(!store_matches_certreq(&pki.store, &unknown));
    assert!(!store_matches_certreq(
        &pki.store,
        &spki_hash(&pki.root)[..19]
    ));
    assert!(!store_matches_certreq(&pki.store, &[]));
    // What our CERTREQ says, another gateway trusting the same CA accepts.
    assert!(store_matches_certreq(&pki.store, &certreq_hashes(&store)));
}

// ---------------------------------------------------------------- credentials and keys

#[test]
fn credential_pairs_key_and_chain() {
    let pki = pki();
    let rng = SystemRandom::new();
    let a = leaf(&pki, KeyKind::EcdsaP256);
    let b = leaf(&pki, KeyKind::EcdsaP256);
    let cred = Credential::new(a.key, vec![a.der.clone(), pki.inter.der.clone()]).unwrap();
    let payloads = cred.cert_payloads();
    assert_eq!(payloads.len(), 2);
    assert!(
        payloads
            .iter()
            .all(|p| p.encoding == CertEncoding::X509Signature)
    );
    assert_eq!(payloads[0].data, a.der);
    // What we send is what the peer validates.
    let peer = verify_peer(cred.chain(), &pki.store, now()).unwrap();
    let data = sign_auth(cred.key(), OCTETS, HashAlg::Sha256, &rng).unwrap();
    verify_auth(&peer, AuthMethod::DigitalSignature, OCTETS, &data).unwrap();

    assert!(matches!(
        Credential::new(b.key, vec![a.der.clone()]),
        Err(CertError::KeyMismatch)
    ));
    let c = leaf(&pki, KeyKind::Ed25519);
    assert!(matches!(
        Credential::new(c.key, Vec::new()),
        Err(CertError::EmptyChain)
    ));
}

#[test]
fn rsa_keys_load_from_pkcs8_and_pkcs1_pem() {
    let pki = pki();
    let rng = SystemRandom::new();
    let rsa_key = rsa_keypair(RSA_PEM, &PKCS_RSA_SHA256);
    let mut params = leaf_params();
    params.subject_alt_names.clear();
    let cert = params.signed_by(&rsa_key, &pki.root.issuer).unwrap();
    let chain_pem = cert.pem();
    assert_eq!(
        certs_from_pem(chain_pem.as_bytes()).unwrap(),
        [cert.der().to_vec()]
    );
    for pem in [RSA_PEM, RSA_PKCS1_PEM] {
        let cred = Credential::from_pem(pem, chain_pem.as_bytes(), &rng).unwrap();
        assert_eq!(cred.key().kind(), KeyKind::Rsa);
    }
    assert!(matches!(
        Credential::from_pem(RSA_B_PEM, chain_pem.as_bytes(), &rng),
        Err(CertError::KeyMismatch)
    ));
}

#[test]
fn unusable_private_keys() {
    let rng = SystemRandom::new();
    assert!(matches!(
        PrivateKey::from_pkcs8_der(&[0x30, 0x00], &rng),
        Err(CertError::InvalidKey(_))
    ));
    assert!(matches!(
        PrivateKey::from_pem(
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            &rng
        ),
        Err(CertError::InvalidPem(_))
    ));
    // SEC1 ("EC PRIVATE KEY"): ring reads only PKCS#8.
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIP4LDGVkuloF25uar/uLNoVHSl/Lmr+rR0hZ2yU6bqdVoAoGCCqGSM49\nAwEHoUQDQgAE/nDfKRzFHIY6WTva8IJRae67cy8V1NnrPx6QwuDDCy66hVgAeuYZ\ngwn0A6P4p2oytH0EHOCoXy0blYGyCccDiQ==\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(
        PrivateKey::from_pem(sec1.as_bytes(), &rng),
        Err(CertError::InvalidKey(_))
    ));
    // Debug never shows key material.
    let key = PrivateKey::from_pem(RSA_PEM, &rng).unwrap();
    assert_eq!(format!("{key:?}"), "PrivateKey(Rsa, <redacted>)");
}

// ---------------------------------------------------------------- signed octets (RFC 7296 §2.15)

#[test]
fn signed_octets_match_independent_hmac() {
    let sk_pi = SecretBytes::new(vec![0x11; 32]);
    let id = Identity::Fqdn("a.test".into());
    let msg1 = [0xab; 264];
    let nr = [0xcd; 32];
    let got = signed_octets(Prf::HmacSha256, &msg1, &nr, &sk_pi, &id).unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[0x11; 32]).unwrap();
    mac.update(b"\x02\x00\x00\x00a.test");
    let maced = mac.finalize().into_bytes();
    assert_eq!(got, [&msg1[..], &nr, &maced].concat());
}
