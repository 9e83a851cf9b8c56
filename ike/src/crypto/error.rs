//! Crypto-layer errors.

use thiserror::Error;

use crate::wire::ParseError;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A transform id / key length we do not implement; the matcher should never have
    /// chosen it.
    #[error("unsupported {kind} transform {id} (key length {key_bits:?})")]
    Unsupported {
        kind: &'static str,
        id: u16,
        key_bits: Option<u16>,
    },
    /// Key material of the wrong size for the algorithm.
    #[error("bad key length for {0}")]
    BadKeyLength(&'static str),
    /// The peer's KE data is not a valid public value of the group (wrong size, not on
    /// the curve, outside 1 < y < p-1, small subgroup, or an all-zero X25519 result).
    #[error("invalid peer public value for DH group {0}")]
    InvalidPublicValue(u16),
    /// A one-shot IKE_SA_INIT private value was asked for a second agreement (see
    /// `DhSecret::generate_ephemeral`).
    #[error("ephemeral DH private value already used")]
    EphemeralSpent,
    /// The RNG failed to produce a usable private value.
    #[error("random number generation failed")]
    Rng,
    /// prf+ was asked for more than 255 blocks (RFC 7296 §2.13).
    #[error("prf+ output too long")]
    PrfPlusTooLong,
    /// ICV or AEAD tag mismatch: the message is dropped silently (RFC 7296 §2.21.2).
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// Decrypted padding or ciphertext size is inconsistent.
    #[error("bad encrypted payload: {0}")]
    BadEncryptedPayload(&'static str),
    /// The message around the encrypted payload does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The message could not be serialized.
    #[error(transparent)]
    Encode(#[from] crate::wire::EncodeError),
}
