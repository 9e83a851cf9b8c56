//! The node's half of the replicated records: how an IKE SA snapshot and a child SA's
//! install description become the opaque bytes `sa-sync` stores, and back.
//!
//! The bytes come off the cluster link, so decoding is bounded in size and every error
//! is a value: a record that does not decode is reported and skipped, never trusted.

use ike::engine::{ChildSaInstall, IkeSaSnapshot};
use sa_sync::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest record accepted from the log (an IKE SA with many children is a few KiB).
const RECORD_LIMIT: usize = 1 << 20;

fn encode<T: Serialize>(value: &T) -> Result<Secret, String> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map(Secret::new)
        .map_err(|e| e.to_string())
}

fn decode<T: DeserializeOwned>(secret: &Secret) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<RECORD_LIMIT>();
    bincode::serde::decode_from_slice(secret.expose(), config)
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// An IKE SA snapshot as record bytes.
pub fn encode_ike(snapshot: &IkeSaSnapshot) -> Result<Secret, String> {
    encode(snapshot)
}

/// An IKE SA snapshot from record bytes.
pub fn decode_ike(secret: &Secret) -> Result<IkeSaSnapshot, String> {
    decode(secret)
}

/// A child SA install description as record bytes.
pub fn encode_child(install: &ChildSaInstall) -> Result<Secret, String> {
    encode(install)
}

/// A child SA install description from record bytes.
pub fn decode_child(secret: &Secret) -> Result<ChildSaInstall, String> {
    decode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_ike(&Secret::new(vec![0xff; 64])).is_err());
        assert!(decode_child(&Secret::new(Vec::new())).is_err());
    }
}
