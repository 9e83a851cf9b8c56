//! The node's half of the replicated records: how an IKE SA snapshot and a child SA's
//! install description become the opaque bytes `sa-sync` stores, and back.
//!
//! The bytes come off the cluster link, so decoding is bounded in size and every error
//! is a value: a record that does not decode is reported and skipped, never trusted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The oldest a record's age is believed: the longest IKE SA lifetime Junos accepts.
/// A writer whose wall clock ran far ahead must not make the reader expire everything.
const MAX_AGE: Duration = Duration::from_secs(86_400);

/// An IKE SA snapshot as record bytes, with the wall-clock time it was taken at.
///
/// A snapshot's timers (rekey, lifetime, DPD) are durations from the moment it was
/// taken, and a record is only rewritten when the IKE SA's state changes, so a record
/// may be hours old when a node takes it over. The reader takes the record's age off
/// its own clock ([`decode_ike`]) instead of starting every timer afresh.
pub fn encode_ike(snapshot: &IkeSaSnapshot, taken: SystemTime) -> Result<Secret, String> {
    encode_stamped(snapshot, taken)
}

fn encode_stamped<T: Serialize>(value: &T, taken: SystemTime) -> Result<Secret, String> {
    let ms = taken
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    encode(&(ms, value))
}

/// An IKE SA snapshot from record bytes, and its age at `now` by this node's wall
/// clock. The clocks of the two nodes are only as close as NTP keeps them: a reader
/// behind the writer sees age 0 (timers postponed by the skew), a reader ahead rekeys
/// that much early; the age is capped at [`MAX_AGE`].
pub fn decode_ike(secret: &Secret, now: SystemTime) -> Result<(IkeSaSnapshot, Duration), String> {
    decode_stamped(secret, now)
}

fn decode_stamped<T: DeserializeOwned>(
    secret: &Secret,
    now: SystemTime,
) -> Result<(T, Duration), String> {
    let (ms, value): (u64, T) = decode(secret)?;
    let taken = UNIX_EPOCH + Duration::from_millis(ms);
    let age = now.duration_since(taken).unwrap_or_default().min(MAX_AGE);
    Ok((value, age))
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
    fn a_record_carries_its_age_by_the_wall_clock() {
        let taken = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let bytes = encode_stamped(&"state".to_owned(), taken).unwrap();
        let at = |secs| taken + Duration::from_secs(secs);
        let (v, age) = decode_stamped::<String>(&bytes, at(90)).unwrap();
        assert_eq!((v.as_str(), age), ("state", Duration::from_secs(90)));
        // A reader whose clock is behind the writer's: no age, not a negative one.
        let (_, age) = decode_stamped::<String>(&bytes, taken - Duration::from_secs(5)).unwrap();
        assert_eq!(age, Duration::ZERO);
        // A writer far ahead of the reader, seen the other way round: capped.
        let (_, age) = decode_stamped::<String>(&bytes, at(10 * 86_400)).unwrap();
        assert_eq!(age, MAX_AGE);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_ike(&Secret::new(vec![0xff; 64]), SystemTime::now()).is_err());
        assert!(decode_child(&Secret::new(Vec::new())).is_err());
    }
}
