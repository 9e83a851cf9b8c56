//! Our signing key and the certificate chain we send in CERT payloads.

use ring::rand::SecureRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RsaKeyPair,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::wire::{CertEncoding, CertPayload};

use super::chain::parse_public_key;
use super::error::CertError;
use super::signature::HashAlg;

/// The key types this module signs and verifies with.
///
/// P-521 is absent because ring (our only signature backend) does not implement it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// How an RSA key signs RFC 7427 AUTH data.
///
/// PKCS#1 v1.5 is the default because every IKEv2 implementation verifies it; PSS is
/// the stronger choice where the peer supports it (strongSwan does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RsaPadding {
    #[default]
    Pkcs1v15,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7427 Appendix A.4.3).
    PssSha256,
}

/// A private key for AUTH signatures.
///
/// The key lives only inside ring's key-pair types, which keep it out of `Debug` but do
/// not wipe it on drop (ring offers no zeroizing key type). The PEM/DER copies this type
/// decodes are wiped: `rustls_pki_types::PrivateKeyDer` zeroizes on drop.
pub struct PrivateKey {
    inner: KeyInner,
}

enum KeyInner {
    EcdsaP256(EcdsaKeyPair),
    EcdsaP384(EcdsaKeyPair),
    Rsa {
        pair: RsaKeyPair,
        padding: RsaPadding,
    },
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.kind())
    }
}

impl PrivateKey {
    /// Loads a PKCS#8 key (RFC 5958 v1 or v2) of any supported kind.
    ///
    /// ring checks the algorithm OID inside the PKCS#8 structure, so trying each kind in
    /// turn never misreads one key type as another. `rng` is what ring uses to validate
    /// ECDSA keys; it is injected like every other source of randomness in this crate.
    pub fn from_pkcs8_der(der: &[u8], rng: &dyn SecureRandom) -> Result<Self, CertError> {
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self::new(KeyInner::Ed25519(pair)));
        }
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, rng) {
            return Ok(Self::new(KeyInner::EcdsaP256(pair)));
        }
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der, rng) {
            return Ok(Self::new(KeyInner::EcdsaP384(pair)));
        }
        match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) => Ok(Self::new(KeyInner::Rsa {
                pair,
                padding: RsaPadding::default(),
            })),
            Err(_) => Err(CertError::InvalidKey(
                "not a PKCS#8 Ed25519, P-256, P-384 or RSA (2048 to 8192 bits) key",
            )),
        }
    }

    /// Loads the first private key of a PEM file: `PRIVATE KEY` (PKCS#8) or
    /// `RSA PRIVATE KEY` (PKCS#1). `EC PRIVATE KEY` (SEC1) is refused because ring only
    /// reads EC keys as PKCS#8; `openssl pkcs8 -topk8 -nocrypt` converts one.
    pub fn from_pem(pem: &[u8], rng: &dyn SecureRandom) -> Result<Self, CertError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| CertError::InvalidPem(e.to_string()))?;
        match &der {
            PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8_der(k.secret_pkcs8_der(), rng),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(|pair| {
                    Self::new(KeyInner::Rsa {
                        pair,
                        padding: RsaPadding::default(),
                    })
                })
                .map_err(|_| CertError::InvalidKey("not an RSA key of 2048 to 8192 bits")),
            PrivateKeyDer::Sec1(_) => Err(CertError::InvalidKey(
                "SEC1 EC key: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)",
            )),
            _ => Err(CertError::InvalidKey("unknown private key format")),
        }
    }

    fn new(inner: KeyInner) -> Self {
        PrivateKey { inner }
    }

    /// Chooses RSASSA-PSS or PKCS#1 v1.5 for an RSA key; no effect on other keys.
    pub fn with_rsa_padding(mut self, padding: RsaPadding) -> Self {
        if let KeyInner::Rsa { padding: p, .. } = &mut self.inner {
            *p = padding;
        }
        self
    }

    pub fn kind(&self) -> KeyKind {
        match self.inner {
            KeyInner::EcdsaP256(_) => KeyKind::EcdsaP256,
            KeyInner::EcdsaP384(_) => KeyKind::EcdsaP384,
            KeyInner::Rsa { .. } => KeyKind::Rsa,
            KeyInner::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// The hashes this key can sign with, most preferred first.
    ///
    /// ring binds an ECDSA signing key to the hash of its curve's strength, and PSS is
    /// only offered with SHA-256 (the one PSS AlgorithmIdentifier RFC 7427 spells out).
    pub fn hashes(&self) -> &'static [HashAlg] {
        match self.inner {
            KeyInner::EcdsaP256(_) => &[HashAlg::Sha256],
            KeyInner::EcdsaP384(_) => &[HashAlg::Sha384],
            KeyInner::Rsa {
                padding: RsaPadding::PssSha256,
                ..
            } => &[HashAlg::Sha256],
            KeyInner::Rsa {
                padding: RsaPadding::Pkcs1v15,
                ..
            } => &[HashAlg::Sha512, HashAlg::Sha384, HashAlg::Sha256],
            KeyInner::Ed25519(_) => &[HashAlg::Identity],
        }
    }

    /// The subjectPublicKey bits (uncompressed point, RSAPublicKey DER or the 32 Ed25519
    /// bytes): what a certificate for this key carries.
    pub(crate) fn public_key_bytes(&self) -> &[u8] {
        match &self.inner {
            KeyInner::EcdsaP256(k) | KeyInner::EcdsaP384(k) => k.public_key().as_ref(),
            KeyInner::Rsa { pair, .. } => pair.public().as_ref(),
            KeyInner::Ed25519(k) => k.public_key().as_ref(),
        }
    }

    pub(crate) fn inner(&self) -> KeyRef<'_> {
        match &self.inner {
            KeyInner::EcdsaP256(k) | KeyInner::EcdsaP384(k) => KeyRef::Ecdsa(k),
            KeyInner::Rsa { pair, padding } => KeyRef::Rsa(pair, *padding),
            KeyInner::Ed25519(k) => KeyRef::Ed25519(k),
        }
    }
}

/// A borrowed view of the key for the signing code.
pub(crate) enum KeyRef<'a> {
    Ecdsa(&'a EcdsaKeyPair),
    Rsa(&'a RsaKeyPair, RsaPadding),
    Ed25519(&'a Ed25519KeyPair),
}

/// Our identity for certificate authentication: the key and the chain sent in CERT
/// payloads, end-entity certificate first.
#[derive(Debug)]
pub struct Credential {
    key: PrivateKey,
    chain: Vec<Vec<u8>>,
}

impl Credential {
    /// Pairs a key with its chain, refusing a key that does not belong to the first
    /// certificate: a mismatch would otherwise surface only as the peer's
    /// AUTHENTICATION_FAILED.
    pub fn new(key: PrivateKey, chain: Vec<Vec<u8>>) -> Result<Self, CertError> {
        let ee = chain.first().ok_or(CertError::EmptyChain)?;
        let public = parse_public_key(ee)?;
        if public.kind() != key.kind() || public.key_bytes() != key.public_key_bytes() {
            return Err(CertError::KeyMismatch);
        }
        Ok(Credential { key, chain })
    }

    pub fn from_pem(
        key_pem: &[u8],
        chain_pem: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<Self, CertError> {
        Self::new(
            PrivateKey::from_pem(key_pem, rng)?,
            certs_from_pem(chain_pem)?,
        )
    }

    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// One CERT payload per certificate, encoding 4 (X.509 Certificate - Signature), in
    /// chain order as RFC 7296 §3.6 asks (the first one holds the signing key).
    pub fn cert_payloads(&self) -> Vec<CertPayload> {
        self.chain
            .iter()
            .map(|der| CertPayload {
                encoding: CertEncoding::X509Signature,
                data: der.clone(),
            })
            .collect()
    }
}

/// Every `CERTIFICATE` block of a PEM file, as DER, in file order.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::InvalidPem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::InvalidPem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}
