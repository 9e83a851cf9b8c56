//! IKEv2 cryptography: PRFs and key derivation, Diffie-Hellman groups and protection of
//! the Encrypted (SK/SKF) payload.
//!
//! Algorithms are named by their IANA transform ids at the edges, so the state machine
//! and the data plane share numbers, never types. Randomness is always passed in.

pub mod derive;
pub mod dh;
pub mod encr;
pub mod error;
pub mod integ;
pub mod prf;
pub mod secret;
pub mod sk;
mod xcbc;

pub use derive::{ChildKeyLengths, ChildKeys, IkeKeyLengths, IkeSaKeys};
pub use dh::{DhGroup, DhSecret};
pub use encr::Encr;
pub use error::CryptoError;
pub use integ::Integ;
pub use prf::Prf;
pub use secret::SecretBytes;
pub use sk::{Opened, SkCipher};
