//! IKEv2 cryptography: PRFs and key derivation, Diffie-Hellman groups and protection of
//! the Encrypted (SK/SKF) payload.
//!
//! Algorithms are named by their IANA transform ids at the edges, so the state machine
//! and the data plane share numbers, never types. Randomness is always passed in.

pub mod derive;
pub mod dh;
pub mod error;
pub mod prf;
pub mod secret;
mod xcbc;

pub use derive::{ChildKeyLengths, ChildKeys, IkeKeyLengths, IkeSaKeys};
pub use dh::{DhGroup, DhSecret};
pub use error::CryptoError;
pub use prf::Prf;
pub use secret::SecretBytes;
