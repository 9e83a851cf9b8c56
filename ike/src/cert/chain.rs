//! X.509 path validation to configured CAs, and what IKE needs from the end-entity
//! certificate: its key and its identities.
//!
//! rustls-webpki builds and checks the path (signatures, validity at the injected time,
//! basic constraints, name constraints, extended key usage). x509-parser then reads the
//! fields webpki keeps private: the subject DN, the rfc822Name and iPAddress SANs, the
//! key usage bits and the SubjectPublicKeyInfo algorithm parameters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage,
    RequiredEkuNotFoundContext,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use super::error::CertError;
use super::keys::KeyKind;

/// Length of one CA key hash in a CERTREQ payload (SHA-1, RFC 7296 §3.7).
const CERTREQ_HASH_LEN: usize = 20;

/// Signature algorithms accepted on certificates of a path: every one ring verifies.
/// RSA keys below 2048 bits are refused by these algorithms.
static CHAIN_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Extended key usage OIDs (DER contents, no tag).
mod eku {
    /// id-kp-ipsecIKE, 1.3.6.1.5.5.7.3.17 (RFC 4945 §5.1.3.12).
    pub const IPSEC_IKE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11];
    /// anyExtendedKeyUsage, 2.5.29.37.0 (RFC 5280 §4.2.1.12).
    pub const ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
    /// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1.
    pub const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    /// id-kp-clientAuth, 1.3.6.1.5.5.7.3.2.
    pub const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    /// iKEIntermediate, 1.3.6.1.5.5.8.2.2 (Microsoft's "IP security IKE intermediate").
    pub const IKE_INTERMEDIATE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x08, 0x02, 0x02];
}

/// Which extended key usages make a certificate acceptable for IKE.
///
/// A certificate without the extension is always acceptable. The check applies to every
/// certificate of the path, as webpki does for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EkuPolicy {
    /// RFC 4945 §5.1.3.12 exactly: id-kp-ipsecIKE or anyExtendedKeyUsage.
    Rfc4945,
    /// Also serverAuth, clientAuth and iKEIntermediate. Windows clients demand serverAuth
    /// on gateway certificates and most enterprise and public CAs issue only TLS EKUs, so
    /// a strict gateway would refuse most certificates seen in practice; strongSwan does
    /// not check EKU at all.
    #[default]
    Interop,
}

impl EkuPolicy {
    fn allowed(self) -> &'static [&'static [u8]] {
        match self {
            EkuPolicy::Rfc4945 => &[eku::IPSEC_IKE, eku::ANY],
            EkuPolicy::Interop => &[
                eku::IPSEC_IKE,
                eku::ANY,
                eku::SERVER_AUTH,
                eku::CLIENT_AUTH,
                eku::IKE_INTERMEDIATE,
            ],
        }
    }
}

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if self
                .allowed()
                .iter()
                .any(|oid| KeyPurposeId::new(oid) == id)
            {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        // The context names id-kp-ipsecIKE as "required": the one purpose every policy
        // accepts, and the one an IKE certificate should carry.
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: KeyUsage::required(eku::IPSEC_IKE),
                present,
            },
        ))
    }
}

/// The CAs we accept peers from, plus intermediates we hold locally (peers often send
/// only their end-entity certificate).
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// SHA-1 of each anchor's SubjectPublicKeyInfo, in anchor order, for CERTREQ.
    anchor_key_hashes: Vec<[u8; CERTREQ_HASH_LEN]>,
    intermediates: Vec<CertificateDer<'static>>,
    eku: EkuPolicy,
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store trusting every certificate of a PEM bundle.
    pub fn from_pem(ca_pem: &[u8]) -> Result<Self, CertError> {
        let mut store = Self::new();
        store.add_ca_pem(ca_pem)?;
        Ok(store)
    }

    /// A store trusting each DER certificate.
    pub fn from_der<C: AsRef<[u8]>>(cas: &[C]) -> Result<Self, CertError> {
        let mut store = Self::new();
        for ca in cas {
            store.add_ca_der(ca.as_ref())?;
        }
        Ok(store)
    }

    /// Trusts one CA certificate. Its validity and constraints are not checked: a
    /// configured trust anchor is trusted as a key and a name (RFC 5280 §6.1.1 (d)).
    pub fn add_ca_der(&mut self, der: &[u8]) -> Result<(), CertError> {
        let cert = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(CertError::from_webpki)?
            .to_owned();
        let (_, parsed) = X509Certificate::from_der(der)
            .map_err(|e| CertError::Malformed(format!("CA certificate: {e}")))?;
        let hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, parsed.public_key().raw);
        let mut key_hash = [0; CERTREQ_HASH_LEN];
        key_hash.copy_from_slice(hash.as_ref());
        self.anchors.push(anchor);
        self.anchor_key_hashes.push(key_hash);
        Ok(())
    }

    /// Trusts every certificate of a PEM bundle; returns how many were added.
    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<usize, CertError> {
        let certs = pem_certs(pem)?;
        for c in &certs {
            self.add_ca_der(c.as_ref())?;
        }
        Ok(certs.len())
    }

    /// Holds an intermediate CA certificate for path building. It grants no trust by
    /// itself: a path through it must still end at a configured CA.
    pub fn add_intermediate_der(&mut self, der: &[u8]) -> Result<(), CertError> {
        X509Certificate::from_der(der)
            .map_err(|e| CertError::Malformed(format!("intermediate certificate: {e}")))?;
        self.intermediates.push(CertificateDer::from(der.to_vec()));
        Ok(())
    }

    pub fn add_intermediate_pem(&mut self, pem: &[u8]) -> Result<usize, CertError> {
        let certs = pem_certs(pem)?;
        for c in &certs {
            self.add_intermediate_der(c.as_ref())?;
        }
        Ok(certs.len())
    }

    pub fn with_eku_policy(mut self, eku: EkuPolicy) -> Self {
        self.eku = eku;
        self
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    pub(crate) fn anchor_key_hashes(&self) -> &[[u8; CERTREQ_HASH_LEN]] {
        &self.anchor_key_hashes
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::InvalidPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::InvalidPem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A public key from a SubjectPublicKeyInfo, typed so the AUTH code can pick the ring
/// algorithm without re-parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    /// The subjectPublicKey BIT STRING contents: what ring's `UnparsedPublicKey` takes.
    key: Vec<u8>,
    /// The whole SubjectPublicKeyInfo DER.
    spki: Vec<u8>,
}

impl PublicKey {
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }
}

/// A peer certificate that passed path validation: the key that must have signed AUTH
/// and the identities IDi/IDr may claim.
///
/// Only [`verify_peer`] builds one, so holding a `PeerCert` means the chain was valid at
/// the time given to it.
#[derive(Debug, Clone)]
pub struct PeerCert {
    der: Vec<u8>,
    subject_dn: Vec<u8>,
    subject: String,
    dns_names: Vec<String>,
    rfc822_names: Vec<String>,
    ip_addrs: Vec<IpAddr>,
    public_key: PublicKey,
}

impl PeerCert {
    /// The end-entity certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject Name, DER (the SEQUENCE with its tag), as ID_DER_ASN1_DN carries it.
    pub fn subject_dn(&self) -> &[u8] {
        &self.subject_dn
    }

    /// The subject in RFC 4514 form, for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    pub fn rfc822_names(&self) -> &[String] {
        &self.rfc822_names
    }

    pub fn ip_addrs(&self) -> &[IpAddr] {
        &self.ip_addrs
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
}

/// Validates the peer's chain (CERT payloads with encoding 4, end-entity first, DER) to
/// the store's CAs at `now`, and returns the end-entity's key and identities.
///
/// Certificates after the first are candidate intermediates in any order, as RFC 7296
/// §3.6 allows; the store's intermediates are added to them. `now` is injected so the
/// crate stays sans-IO and tests can move the clock. Revocation (CRL, OCSP) is not
/// checked.
pub fn verify_peer<C: AsRef<[u8]>>(
    chain: &[C],
    store: &TrustStore,
    now: SystemTime,
) -> Result<PeerCert, CertError> {
    let (ee_der, rest) = chain.split_first().ok_or(CertError::EmptyChain)?;
    let ee_der = ee_der.as_ref();
    let ee_cert = CertificateDer::from(ee_der);
    let ee = EndEntityCert::try_from(&ee_cert).map_err(CertError::from_webpki)?;
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.as_ref()))
        .chain(
            store
                .intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        )
        .collect();
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    ee.verify_for_usage(
        CHAIN_ALGS,
        &store.anchors,
        &intermediates,
        UnixTime::since_unix_epoch(since_epoch),
        store.eku,
        None,
        None,
    )
    .map_err(CertError::from_webpki)?;
    peer_cert(ee_der)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertError::Malformed("trailing data".into())),
        Err(e) => Err(CertError::Malformed(e.to_string())),
    }
}

/// Reads what IKE needs from an end-entity certificate webpki has already accepted.
fn peer_cert(der: &[u8]) -> Result<PeerCert, CertError> {
    let cert = parse(der)?;
    // RFC 4945 §5.1.3.2: a key whose KU lacks both digitalSignature and nonRepudiation
    // was not issued for signatures, so it must not authenticate IKE.
    if let Some(ku) = cert
        .key_usage()
        .map_err(|e| CertError::Malformed(e.to_string()))?
        && !ku.value.digital_signature()
        && !ku.value.non_repudiation()
    {
        return Err(CertError::KeyUsage(
            "key usage has neither digitalSignature nor nonRepudiation",
        ));
    }
    let mut dns_names = Vec::new();
    let mut rfc822_names = Vec::new();
    let mut ip_addrs = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Malformed(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns_names.push((*n).to_owned()),
                GeneralName::RFC822Name(n) => rfc822_names.push((*n).to_owned()),
                GeneralName::IPAddress(a) => {
                    if let Some(ip) = ip_from_san(a) {
                        ip_addrs.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(PeerCert {
        der: der.to_vec(),
        subject_dn: cert.subject().as_raw().to_vec(),
        subject: cert.subject().to_string(),
        dns_names,
        rfc822_names,
        ip_addrs,
        public_key: public_key_of(&cert)?,
    })
}

/// An iPAddress SAN holds 4 or 16 octets (RFC 5280 §4.2.1.6); other lengths are name
/// constraint masks or garbage and name no address.
fn ip_from_san(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(octets)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

/// The typed public key of a certificate (used to match our own key to our chain).
pub(crate) fn parse_public_key(der: &[u8]) -> Result<PublicKey, CertError> {
    public_key_of(&parse(der)?)
}

fn public_key_of(cert: &X509Certificate<'_>) -> Result<PublicKey, CertError> {
    let spki = cert.public_key();
    let alg = &spki.algorithm;
    let kind = if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        KeyKind::Rsa
    } else if alg.algorithm == OID_SIG_ED25519 {
        KeyKind::Ed25519
    } else if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or(CertError::UnsupportedKey("EC key without a named curve"))?;
        if curve == OID_EC_P256 {
            KeyKind::EcdsaP256
        } else if curve == OID_NIST_EC_P384 {
            KeyKind::EcdsaP384
        } else if curve == OID_NIST_EC_P521 {
            return Err(CertError::UnsupportedKey("P-521 (ring does not verify it)"));
        } else {
            return Err(CertError::UnsupportedKey("EC curve other than P-256/P-384"));
        }
    } else {
        return Err(CertError::UnsupportedKey(
            "not an RSA, ECDSA P-256/P-384 or Ed25519 key",
        ));
    };
    if spki.subject_public_key.unused_bits != 0 {
        return Err(CertError::Malformed(
            "public key is not whole octets".into(),
        ));
    }
    Ok(PublicKey {
        kind,
        key: spki.subject_public_key.data.to_vec(),
        spki: spki.raw.to_vec(),
    })
}

/// CERTREQ data for encoding 4: the SHA-1 of each trusted CA's SubjectPublicKeyInfo,
/// concatenated (RFC 7296 §3.7), telling the peer which CAs its chain may end at.
pub fn certreq_hashes(store: &TrustStore) -> Vec<u8> {
    store.anchor_key_hashes().concat()
}

/// Whether a peer's CERTREQ (encoding 4) names at least one CA of `store`, i.e. whether
/// a chain ending at one of these CAs is what the peer asked for.
///
/// Data that is not a whole number of 20-byte hashes is malformed and matches nothing;
/// so does an empty list.
pub fn store_matches_certreq(store: &TrustStore, certreq_data: &[u8]) -> bool {
    if !certreq_data.len().is_multiple_of(CERTREQ_HASH_LEN) {
        return false;
    }
    certreq_data
        .chunks_exact(CERTREQ_HASH_LEN)
        .any(|h| store.anchor_key_hashes().iter().any(|ours| ours[..] == *h))
}
