//! Why a certificate, key or AUTH signature was rejected.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::AuthMethod;

use super::keys::KeyKind;
use super::signature::HashAlg;

/// Every failure of certificate authentication.
///
/// Each variant is one reason an operator can act on (renew a certificate, add a CA, fix
/// an ID), so the state machine can log it precisely. Towards the peer every variant
/// that comes from peer data means AUTHENTICATION_FAILED (RFC 7296 §2.21.2); the
/// variants about our own key and configuration (`InvalidKey`, `InvalidPem`,
/// `UnsupportedHash`, `KeyMismatch`, `Signing`) are local errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The peer sent no certificate (no CERT payload with encoding 4).
    #[error("no end-entity certificate")]
    EmptyChain,
    /// A certificate is not parseable DER X.509.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A certificate of the path has expired at the injected `now`.
    #[error("certificate expired at {not_after:?} (now {now:?})")]
    Expired {
        now: SystemTime,
        not_after: SystemTime,
    },
    /// A certificate of the path is not valid yet at the injected `now`.
    #[error("certificate not valid before {not_before:?} (now {now:?})")]
    NotYetValid {
        now: SystemTime,
        not_before: SystemTime,
    },
    /// No path leads from the end-entity certificate to a configured CA.
    #[error("certificate issued by an unknown CA")]
    UnknownIssuer,
    /// A certificate's signature does not verify with its issuer's key.
    #[error("certificate signature does not verify with the issuer's key")]
    BadCertSignature,
    /// A certificate is signed with an algorithm we do not verify.
    #[error("certificate signed with an unsupported algorithm")]
    UnsupportedCertAlgorithm,
    /// Key usage or extended key usage forbids IKE signatures (RFC 4945 §5.1.3.2, §5.1.3.12).
    #[error("key usage forbids IKE authentication: {0}")]
    KeyUsage(&'static str),
    /// Any other path violation (CA used as end entity, path length, name constraints, ...).
    #[error("certificate path rejected: {0}")]
    Path(webpki::Error),
    /// The end-entity key is of a type we cannot verify (for example P-521 or DSA).
    #[error("unsupported public key: {0}")]
    UnsupportedKey(&'static str),
    /// IDi/IDr does not name the certificate (RFC 4945 §3.1).
    #[error("ID (type {id_type}) does not match the certificate: {reason}")]
    IdMismatch { id_type: u8, reason: &'static str },
    /// AUTH uses a method this module does not implement.
    #[error("unsupported AUTH method {0:?}")]
    UnsupportedMethod(AuthMethod),
    /// The RFC 7427 AlgorithmIdentifier in AUTH is unknown or not supported.
    #[error("unsupported signature algorithm in AUTH")]
    UnsupportedAlgorithm,
    /// The AUTH signature algorithm cannot be used with the certificate's key type.
    #[error("signature algorithm {algorithm} does not fit a {key:?} key")]
    AlgorithmKeyMismatch {
        algorithm: &'static str,
        key: KeyKind,
    },
    /// The AUTH payload does not have the RFC 7427 layout.
    #[error("malformed AUTH data: {0}")]
    MalformedAuth(&'static str),
    /// The AUTH signature does not verify with the certificate's key.
    #[error("AUTH signature does not verify")]
    BadAuthSignature,
    /// Our key cannot sign with the requested hash.
    #[error("a {key:?} key cannot sign with {hash:?}")]
    UnsupportedHash { key: KeyKind, hash: HashAlg },
    /// A private key could not be loaded.
    #[error("invalid private key: {0}")]
    InvalidKey(&'static str),
    /// PEM input could not be decoded.
    #[error("invalid PEM: {0}")]
    InvalidPem(String),
    /// The configured private key does not belong to the configured certificate.
    #[error("private key does not match the certificate's public key")]
    KeyMismatch,
    /// ring failed to sign (RNG failure or an internal error).
    #[error("signing failed")]
    Signing,
}

impl CertError {
    /// Maps webpki's verdict to our variants; the times are kept so logs can say by how
    /// much a certificate is out of date.
    pub(crate) fn from_webpki(err: webpki::Error) -> Self {
        use webpki::Error as W;
        let at = |t: rustls_pki_types::UnixTime| UNIX_EPOCH + Duration::from_secs(t.as_secs());
        match err {
            W::CertExpired { time, not_after } => CertError::Expired {
                now: at(time),
                not_after: at(not_after),
            },
            W::CertNotValidYet { time, not_before } => CertError::NotYetValid {
                now: at(time),
                not_before: at(not_before),
            },
            W::UnknownIssuer => CertError::UnknownIssuer,
            W::InvalidSignatureForPublicKey => CertError::BadCertSignature,
            W::UnsupportedSignatureAlgorithmContext(_)
            | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | W::SignatureAlgorithmMismatch => CertError::UnsupportedCertAlgorithm,
            W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
                CertError::KeyUsage("extended key usage does not include IKE")
            }
            W::BadDer
            | W::BadDerTime
            | W::TrailingData(_)
            | W::UnsupportedCertVersion
            | W::MalformedExtensions
            | W::ExtensionValueInvalid
            | W::InvalidSerialNumber
            | W::InvalidCertValidity => CertError::Malformed(err.to_string()),
            other => CertError::Path(other),
        }
    }
}
