//! Parse and encode errors of the wire layer.

use thiserror::Error;

use super::notify::NotifyType;

/// Why a received message or payload was rejected.
///
/// Each variant maps to the notify an IKE responder must answer with, so the state
/// machine never has to guess (RFC 7296 §2.21.2, §3.10.1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input ended inside a structure.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field disagrees with its container or with the structure's rules.
    #[error("bad length in {what}: {len}")]
    BadLength { what: &'static str, len: usize },
    /// A payload of a type we do not know had its critical bit set; the caller must
    /// answer UNSUPPORTED_CRITICAL_PAYLOAD carrying this type (RFC 7296 §2.5).
    #[error("unsupported critical payload type {0}")]
    UnsupportedCriticalPayload(u8),
    /// The major version is not 2; the caller answers INVALID_MAJOR_VERSION.
    #[error("unsupported IKE major version {0}")]
    UnsupportedMajorVersion(u8),
    /// The bytes are structurally wrong in a way no length check covers.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(&'static str),
}

impl ParseError {
    /// The error notify a responder sends back for this error.
    pub fn notify_type(&self) -> NotifyType {
        match self {
            ParseError::UnsupportedCriticalPayload(_) => NotifyType::UnsupportedCriticalPayload,
            ParseError::UnsupportedMajorVersion(_) => NotifyType::InvalidMajorVersion,
            ParseError::Truncated { .. }
            | ParseError::BadLength { .. }
            | ParseError::InvalidSyntax(_) => NotifyType::InvalidSyntax,
        }
    }

    /// Notification data to send with [`Self::notify_type`]: the offending payload type
    /// for UNSUPPORTED_CRITICAL_PAYLOAD, nothing otherwise.
    pub fn notify_data(&self) -> Vec<u8> {
        match self {
            ParseError::UnsupportedCriticalPayload(ty) => vec![*ty],
            _ => Vec::new(),
        }
    }
}

/// Why a structure could not be serialized; these are local bugs or oversize input, never
/// peer behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length or count does not fit its wire field.
    #[error("{what} too long for its length field")]
    TooLong { what: &'static str },
    /// A value breaks a rule of the wire format (e.g. an SPI of the wrong size).
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}
