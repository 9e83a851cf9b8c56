//! Key bytes that are wiped on drop and never printed.

use zeroize::{Zeroize, ZeroizeOnDrop};

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
