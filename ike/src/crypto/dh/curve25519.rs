//! Curve25519 (group 31, RFC 8031) through x25519-dalek.

use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::error::CryptoError;
use crate::crypto::secret::SecretBytes;

pub(crate) const GROUP: u16 = 31;
pub(crate) const LEN: usize = 32;

/// `StaticSecret` rather than `EphemeralSecret`: the RFC 7748 vectors need fixed
/// scalars, and the secret is used exactly once per exchange anyway. It zeroizes on drop.
pub(crate) struct X25519Secret(StaticSecret);

impl X25519Secret {
    pub(crate) fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut bytes = [0u8; LEN];
        rng.fill_bytes(&mut bytes);
        let s = X25519Secret(StaticSecret::from(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        s
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut arr: [u8; LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadKeyLength("X25519 private key"))?;
        let s = X25519Secret(StaticSecret::from(arr));
        zeroize::Zeroize::zeroize(&mut arr);
        Ok(s)
    }

    pub(crate) fn private_bytes(&self) -> SecretBytes {
        let mut bytes = self.0.to_bytes();
        let out = SecretBytes::from_slice(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        out
    }

    pub(crate) fn public_value(&self) -> Vec<u8> {
        PublicKey::from(&self.0).as_bytes().to_vec()
    }

    /// Rejects peer values of the wrong size and low-order points, whose result is
    /// all zeros (RFC 7748 §6.1, RFC 8031 §2.1).
    pub(crate) fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        let peer: [u8; LEN] = peer
            .try_into()
            .map_err(|_| CryptoError::InvalidPublicValue(GROUP))?;
        let shared = self.0.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(CryptoError::InvalidPublicValue(GROUP));
        }
        Ok(SecretBytes::from_slice(shared.as_bytes()))
    }
}
