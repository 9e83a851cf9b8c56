//! ESP and AH transforms: encryption, integrity and AEAD, keyed from IANA numbers and
//! key bytes.
//!
//! AEADs (AES-GCM, ChaCha20-Poly1305) and HMAC-SHA1/SHA2 run on ring; AES-CBC, 3DES, DES
//! and HMAC-MD5, which ring lacks, on RustCrypto. ICVs are compared in constant time.
//! Key bytes this module copies (AEAD salts) and the RustCrypto cipher key schedules
//! zeroize on drop; ring's expanded keys and HMAC states cannot be reached to wipe, which
//! is the price of its speed on the AEAD hot path.

mod aead;
mod alg;
mod cbc;
mod esp;
mod integ;

pub use alg::{EncrAlg, IntegAlg};
pub use esp::EspCipher;
pub use integ::Integ;

/// Errors from keying or running a transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Key material of the wrong length for the algorithm.
    #[error("{alg}: key must be {expected} bytes, got {got}")]
    KeyLength {
        alg: &'static str,
        expected: usize,
        got: usize,
    },
    /// An AEAD combined with a separate integrity algorithm, or a cipher without one
    /// where the protocol needs it.
    #[error("invalid combination of encryption {encr} and integrity {integ}")]
    Combination {
        encr: &'static str,
        integ: &'static str,
    },
    /// The buffer handed to seal/open does not have the ESP layout the transform needs.
    #[error("bad ESP layout: {0}")]
    Layout(&'static str),
    /// The operating system's random source failed while seeding an IV generator.
    #[error("the OS random number generator is unavailable")]
    RandomSource,
    /// ICV or AEAD tag did not verify.
    #[error("integrity check failed")]
    Integrity,
}
