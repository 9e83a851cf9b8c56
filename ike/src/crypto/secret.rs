//! Key bytes that are wiped on drop and never printed.

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Secret key material (SKEYSEED, SK_*, KEYMAT, DH shared secrets).
///
/// `Debug` prints only the length so keys cannot leak through logs or panics.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(bytes.to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Splits off the first `n` bytes into a new secret (used to carve SK_* out of
    /// prf+ output); `None` if fewer than `n` remain.
    pub fn take_front(&mut self, n: usize) -> Option<SecretBytes> {
        if n > self.0.len() {
            return None;
        }
        let rest = self.0.split_off(n);
        let front = std::mem::replace(&mut self.0, rest);
        Some(SecretBytes(front))
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// Serialized as a plain byte string, so IKE SA snapshots can carry keys to another
/// cluster node; the encoded buffer belongs to the caller, who wipes it.
impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretBytes;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("key bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<SecretBytes, E> {
        Ok(SecretBytes::from_slice(v))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<SecretBytes, E> {
        Ok(SecretBytes(v))
    }

    /// Formats without a byte-string type send a sequence; the buffer it grows in is
    /// wiped, whatever happens to the rest of the input.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SecretBytes, A::Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024)));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(SecretBytes::from_slice(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_split_works() {
        let mut s = SecretBytes::new(vec![0xaa, 0xbb, 0xcc]);
        assert_eq!(format!("{s:?}"), "SecretBytes(<3 bytes redacted>)");
        let front = s.take_front(2).unwrap();
        assert_eq!(front.as_bytes(), [0xaa, 0xbb]);
        assert_eq!(s.as_bytes(), [0xcc]);
        assert!(s.take_front(2).is_none());
    }
}
