//! Errors of the IKE SA state machine, each mapped to the notify that reports it.

use std::sync::Arc;

use thiserror::Error;

use crate::cert::{CertError, KeyKind};
use crate::crypto::CryptoError;
use crate::wire::{AuthMethod, EncodeError, NotifyType, ParseError};

/// A [`CertError`] inside an [`IkeError`]: shared so the error stays `Clone`, and
/// compared by its message (`CertError` itself is not `PartialEq`).
#[derive(Debug, Clone)]
pub struct CertFailure(Arc<CertError>);

impl CertFailure {
    /// Why the certificate, key or signature was rejected.
    pub fn error(&self) -> &CertError {
        &self.0
    }
}

impl std::fmt::Display for CertFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for CertFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for CertFailure {}

impl From<CertError> for IkeError {
    fn from(e: CertError) -> Self {
        IkeError::Certificate(CertFailure(Arc::new(e)))
    }
}

/// What a peer proposed against what we are configured with, when nothing matched
/// (NO_PROPOSAL_CHOSEN, RFC 7296 §3.10.1): each proposal as its transforms' IANA names
/// joined by `/`, so an operator sees the mismatch without a capture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposalMismatch {
    /// The peer's proposals; for an initiator, the responder's single answer.
    pub offered: Vec<String>,
    /// Ours, in order of preference.
    pub configured: Vec<String>,
}

impl std::fmt::Display for ProposalMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "offered [{}], configured [{}]",
            self.offered.join(", "),
            self.configured.join(", ")
        )
    }
}

/// Traffic selectors that could not be narrowed to our policy (TS_UNACCEPTABLE, RFC
/// 7296 §2.9), both sides as the message names them: (TSi, TSr).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TsMismatch {
    /// The peer's TSi and TSr; for an initiator, the responder's narrowed answer.
    pub offered: (Vec<String>, Vec<String>),
    /// What our configuration allows for TSi and TSr.
    pub configured: (Vec<String>, Vec<String>),
}

impl std::fmt::Display for TsMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (oi, or) = &self.offered;
        let (ci, cr) = &self.configured;
        write!(
            f,
            "offered TSi [{}] TSr [{}], configured TSi [{}] TSr [{}]",
            oi.join(", "),
            or.join(", "),
            ci.join(", "),
            cr.join(", ")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IkeError {
    #[error("malformed message: {0}")]
    Parse(#[from] ParseError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("no acceptable proposal: {0}")]
    NoProposalChosen(ProposalMismatch),
    /// The peer's KE group is not the one we chose; the notify carries `group`.
    #[error("KE payload for the wrong group, expected {group}")]
    InvalidKePayload { group: u16 },
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Certificate authentication failed: the peer's chain, ID or signature (reported
    /// to the peer as AUTHENTICATION_FAILED), or our own key could not sign.
    #[error("certificate authentication: {0}")]
    Certificate(CertFailure),
    /// The peer's AUTH uses a method the configuration does not accept from it (a PSK
    /// where we want a certificate signature, or the reverse).
    #[error("peer used AUTH method {0:?}, which is not the configured one")]
    UnexpectedAuthMethod(AuthMethod),
    /// We cannot sign for this peer: its SIGNATURE_HASH_ALGORITHMS names no hash our
    /// key signs with, or it sent none and our key has no legacy AUTH method we can
    /// produce (RSA would need SHA-1, which ring does not sign with; Ed25519 has none).
    #[error("no signature the peer accepts can be made with our {0:?} key")]
    NoSignatureHash(KeyKind),
    #[error("traffic selectors unacceptable: {0}")]
    TsUnacceptable(TsMismatch),
    /// The responder answered a child SA in another mode than we asked for (declined
    /// transport mode, or granted it unasked): we delete the SA (RFC 7296 §1.3.1).
    #[error("peer answered {answered:?} mode to a request for {asked:?} mode")]
    ModeMismatch {
        asked: super::config::IpsecMode,
        answered: super::config::IpsecMode,
    },
    /// A payload required by the exchange is missing or duplicated.
    #[error("missing or repeated payload: {0}")]
    InvalidSyntax(&'static str),
    /// EAP is parsed but not supported: the SA fails cleanly instead of stalling.
    #[error("EAP authentication is not supported")]
    EapNotSupported,
    /// The peer answered with an error notify.
    #[error("peer reported {0:?}")]
    PeerError(NotifyType),
    /// A message that does not belong to the current exchange; it is dropped.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("peer did not answer")]
    Timeout,
    /// The SA is busy with a conflicting exchange (a rekey or delete of the same SA,
    /// RFC 7296 §2.8.1, §2.25); the peer may retry later.
    #[error("temporary failure")]
    TemporaryFailure,
    /// A REKEY_SA names a child SA we do not have (RFC 7296 §2.25).
    #[error("child SA not found")]
    ChildSaNotFound,
    /// The address pool is exhausted (RFC 7296 §3.15.4).
    #[error("no internal address available")]
    InternalAddressFailure,
    /// A request on an SA that is closed or not established yet.
    #[error("IKE SA is not established")]
    NotEstablished,
}

impl IkeError {
    /// The error notify a responder puts in its answer, if this error is reported to the
    /// peer at all (dropped messages and peer-reported errors are not).
    pub fn notify_type(&self) -> Option<NotifyType> {
        Some(match self {
            IkeError::Parse(e) => e.notify_type(),
            IkeError::NoProposalChosen(_) => NotifyType::NoProposalChosen,
            IkeError::InvalidKePayload { .. } => NotifyType::InvalidKePayload,
            IkeError::AuthenticationFailed
            | IkeError::EapNotSupported
            | IkeError::Certificate(_)
            | IkeError::UnexpectedAuthMethod(_)
            | IkeError::NoSignatureHash(_) => NotifyType::AuthenticationFailed,
            IkeError::TsUnacceptable(_) => NotifyType::TsUnacceptable,
            IkeError::TemporaryFailure => NotifyType::TemporaryFailure,
            IkeError::ChildSaNotFound => NotifyType::ChildSaNotFound,
            IkeError::InternalAddressFailure => NotifyType::InternalAddressFailure,
            IkeError::InvalidSyntax(_) => NotifyType::InvalidSyntax,
            IkeError::Crypto(CryptoError::InvalidPublicValue(_)) => NotifyType::InvalidSyntax,
            IkeError::Crypto(_)
            | IkeError::Encode(_)
            | IkeError::PeerError(_)
            | IkeError::Unexpected(_)
            | IkeError::ModeMismatch { .. }
            | IkeError::Timeout
            | IkeError::NotEstablished => return None,
        })
    }

    /// Notification data that goes with [`Self::notify_type`].
    pub fn notify_data(&self) -> Vec<u8> {
        match self {
            IkeError::Parse(e) => e.notify_data(),
            IkeError::InvalidKePayload { group } => group.to_be_bytes().to_vec(),
            _ => Vec::new(),
        }
    }
}
