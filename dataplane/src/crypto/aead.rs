//! Combined-mode ESP ciphers on ring: AES-GCM with a 16-byte ICV (RFC 4106) and
//! ChaCha20-Poly1305 (RFC 7634).
//!
//! Both build the 12-byte nonce the same way, the 4-byte salt taken from the end of the
//! keying material followed by the 8-byte explicit IV of the packet (RFC 4106 §4,
//! RFC 7634 §2), and authenticate the ESP header as AAD: SPI || Sequence Number, or
//! SPI || high half || low half of the Extended Sequence Number (RFC 4106 §5,
//! RFC 7634 §2.1).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::{CryptoError, EncrAlg};

/// Bytes of salt appended to the cipher key in the keying material.
const SALT_LEN: usize = 4;
/// Bytes of explicit IV per packet.
pub(super) const IV_LEN: usize = 8;
/// Bytes of AEAD tag, which is the ESP ICV.
pub(super) const TAG_LEN: usize = 16;
/// Bytes of the SPI and low sequence number, the part of the ESP header on the wire.
pub(super) const HEADER_LEN: usize = 8;

/// A keyed AEAD with its salt.
///
/// ring's key types keep the expanded key private and offer no zeroization; the salt,
/// which this module owns, is wiped on drop.
pub(super) struct Aead {
    key: LessSafeKey,
    salt: Zeroizing<[u8; SALT_LEN]>,
}

impl Aead {
    /// Keys `alg` from `key || salt`; `None` when `alg` is not an AEAD.
    pub(super) fn new(alg: EncrAlg, key_and_salt: &[u8]) -> Option<Result<Self, CryptoError>> {
        let ring_alg = match alg {
            EncrAlg::AesGcm128 => &aead::AES_128_GCM,
            EncrAlg::AesGcm256 => &aead::AES_256_GCM,
            EncrAlg::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            EncrAlg::Null
            | EncrAlg::DesCbc
            | EncrAlg::TripleDesCbc
            | EncrAlg::AesCbc128
            | EncrAlg::AesCbc192
            | EncrAlg::AesCbc256 => return None,
        };
        let bad_length = CryptoError::KeyLength {
            alg: alg.name(),
            expected: alg.key_len(),
            got: key_and_salt.len(),
        };
        let Some(key_len) = key_and_salt.len().checked_sub(SALT_LEN) else {
            return Some(Err(bad_length));
        };
        let (key, salt) = key_and_salt.split_at(key_len);
        let mut salt_bytes = Zeroizing::new([0u8; SALT_LEN]);
        salt_bytes.copy_from_slice(salt);
        Some(
            UnboundKey::new(ring_alg, key)
                .map(|key| Self {
                    key: LessSafeKey::new(key),
                    salt: salt_bytes,
                })
                .map_err(|_| bad_length),
        )
    }

    /// Encrypts `text` in place and writes the tag to `tag_out` (exactly [`TAG_LEN`]).
    pub(super) fn seal(
        &self,
        header: &[u8; HEADER_LEN],
        seq_hi: Option<u32>,
        iv: &[u8; IV_LEN],
        text: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if tag_out.len() != TAG_LEN {
            return Err(CryptoError::Layout("ICV space is not 16 bytes"));
        }
        let (aad, aad_len) = aad(header, seq_hi);
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(&aad[..aad_len]), text)
            .map_err(|_| CryptoError::Layout("payload too long for the AEAD"))?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Verifies and decrypts `text_and_tag` in place; the plaintext ends up over the
    /// ciphertext, in front of the (now meaningless) tag.
    ///
    /// ring checks the tag as part of decryption and, when it fails, zeroes the region
    /// before returning, so no unauthenticated plaintext is ever left in the packet.
    pub(super) fn open(
        &self,
        header: &[u8; HEADER_LEN],
        seq_hi: Option<u32>,
        iv: &[u8; IV_LEN],
        text_and_tag: &mut [u8],
    ) -> Result<(), CryptoError> {
        let (aad, aad_len) = aad(header, seq_hi);
        self.key
            .open_in_place(self.nonce(iv), Aad::from(&aad[..aad_len]), text_and_tag)
            .map(|_| ())
            .map_err(|_| CryptoError::Integrity)
    }

    fn nonce(&self, iv: &[u8; IV_LEN]) -> Nonce {
        let mut nonce = [0u8; SALT_LEN + IV_LEN];
        nonce[..SALT_LEN].copy_from_slice(&*self.salt);
        nonce[SALT_LEN..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(nonce)
    }
}

/// The AAD of RFC 4106 §5 / RFC 7634 §2.1, returned with its length (8, or 12 with ESN).
fn aad(header: &[u8; HEADER_LEN], seq_hi: Option<u32>) -> ([u8; 12], usize) {
    let mut aad = [0u8; 12];
    match seq_hi {
        None => {
            aad[..HEADER_LEN].copy_from_slice(header);
            (aad, HEADER_LEN)
        }
        Some(hi) => {
            aad[..4].copy_from_slice(&header[..4]);
            aad[4..8].copy_from_slice(&hi.to_be_bytes());
            aad[8..].copy_from_slice(&header[4..]);
            (aad, 12)
        }
    }
}
