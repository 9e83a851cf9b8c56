//! CBC-mode block ciphers for ESP: AES-CBC (RFC 3602), 3DES-CBC (RFC 2451) and DES-CBC
//! (RFC 2405), on RustCrypto because ring implements none of them.
//!
//! Each cipher's key schedule is expanded once when the SA is keyed. Per packet, a
//! `cbc::Encryptor`/`Decryptor` borrows that schedule (`&Aes128` is itself a block
//! cipher), so neither direction re-runs the key schedule or copies it, and decryption
//! keeps the cipher's parallel (multi-block AES-NI) path. The ESP caller has already
//! padded the plaintext (RFC 4303 §2.4), so both directions run without a padding mode.

use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{
    BlockCipher, BlockDecrypt, BlockDecryptMut as _, BlockEncrypt, BlockEncryptMut as _,
    InnerIvInit as _, KeyInit,
};

use super::{CryptoError, EncrAlg};

/// The expanded key schedule of one CBC cipher.
///
/// With the `zeroize` features of `aes` and `des` enabled in this crate's manifest, each
/// schedule wipes itself on drop; AES round key 0 is the key itself, so that matters.
pub(super) enum CbcCipher {
    Des(des::Des),
    TripleDes(des::TdesEde3),
    Aes128(aes::Aes128),
    Aes192(aes::Aes192),
    Aes256(aes::Aes256),
}

impl CbcCipher {
    /// Expands `key` for `alg`; `None` when `alg` is not a CBC cipher.
    pub(super) fn new(alg: EncrAlg, key: &[u8]) -> Option<Result<Self, CryptoError>> {
        Some(match alg {
            EncrAlg::DesCbc => schedule(alg, key).map(Self::Des),
            EncrAlg::TripleDesCbc => schedule(alg, key).map(Self::TripleDes),
            EncrAlg::AesCbc128 => schedule(alg, key).map(Self::Aes128),
            EncrAlg::AesCbc192 => schedule(alg, key).map(Self::Aes192),
            EncrAlg::AesCbc256 => schedule(alg, key).map(Self::Aes256),
            EncrAlg::Null | EncrAlg::AesGcm128 | EncrAlg::AesGcm256 | EncrAlg::ChaCha20Poly1305 => {
                return None;
            }
        })
    }

    /// CBC-encrypts `data` in place under `iv`; `data` must be whole blocks.
    pub(super) fn encrypt(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        match self {
            Self::Des(c) => encrypt_with(c, iv, data),
            Self::TripleDes(c) => encrypt_with(c, iv, data),
            Self::Aes128(c) => encrypt_with(c, iv, data),
            Self::Aes192(c) => encrypt_with(c, iv, data),
            Self::Aes256(c) => encrypt_with(c, iv, data),
        }
    }

    /// CBC-decrypts `data` in place under `iv`; `data` must be whole blocks.
    pub(super) fn decrypt(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        match self {
            Self::Des(c) => decrypt_with(c, iv, data),
            Self::TripleDes(c) => decrypt_with(c, iv, data),
            Self::Aes128(c) => decrypt_with(c, iv, data),
            Self::Aes192(c) => decrypt_with(c, iv, data),
            Self::Aes256(c) => decrypt_with(c, iv, data),
        }
    }
}

fn schedule<C: KeyInit>(alg: EncrAlg, key: &[u8]) -> Result<C, CryptoError> {
    C::new_from_slice(key).map_err(|_| CryptoError::KeyLength {
        alg: alg.name(),
        expected: alg.key_len(),
        got: key.len(),
    })
}

const BAD_IV: CryptoError = CryptoError::Layout("IV length does not match the cipher");
const NOT_BLOCKS: CryptoError =
    CryptoError::Layout("encrypted payload is not a multiple of the cipher block size");

fn encrypt_with<C: BlockEncrypt + BlockCipher>(
    cipher: &C,
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    let len = data.len();
    cbc::Encryptor::<&C>::inner_iv_slice_init(cipher, iv)
        .map_err(|_| BAD_IV)?
        .encrypt_padded_mut::<NoPadding>(data, len)
        .map(|_| ())
        .map_err(|_| NOT_BLOCKS)
}

fn decrypt_with<C: BlockDecrypt + BlockCipher>(
    cipher: &C,
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    cbc::Decryptor::<&C>::inner_iv_slice_init(cipher, iv)
        .map_err(|_| BAD_IV)?
        .decrypt_padded_mut::<NoPadding>(data)
        .map(|_| ())
        .map_err(|_| NOT_BLOCKS)
}
