//! Encryption algorithms (IANA Transform Type 1) of the Encrypted payload: CBC block
//! ciphers (paired with an integrity algorithm) and AEADs (RFC 5282, RFC 7634).

use aes::{Aes128, Aes192, Aes256};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use des::{Des, TdesEde3};
use ring::aead;

use super::error::CryptoError;

pub const ENCR_DES: u16 = 2;
pub const ENCR_3DES: u16 = 3;
pub const ENCR_AES_CBC: u16 = 12;
pub const ENCR_AES_GCM_16: u16 = 20;
pub const ENCR_CHACHA20_POLY1305: u16 = 28;

/// Length of the salt that AEAD key material carries after the key (RFC 5282 §7.1,
/// RFC 7634 §2).
pub const AEAD_SALT_LEN: usize = 4;
/// Explicit IV of the AEADs in the Encrypted payload.
pub const AEAD_IV_LEN: usize = 8;
/// ICV of AES-GCM-16 and ChaCha20-Poly1305.
pub const AEAD_TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    DesCbc,
    TripleDesCbc,
    AesCbc128,
    AesCbc192,
    AesCbc256,
    /// AES-GCM with a 16-octet ICV; ring offers no 192-bit GCM, so it is not offered.
    AesGcm16_128,
    AesGcm16_256,
    ChaCha20Poly1305,
}

impl Encr {
    /// Maps an ENCR transform id and its Key Length attribute (bits).
    pub fn from_transform(id: u16, key_bits: Option<u16>) -> Result<Self, CryptoError> {
        Ok(match (id, key_bits) {
            (ENCR_DES, None) => Encr::DesCbc,
            (ENCR_3DES, None) => Encr::TripleDesCbc,
            (ENCR_AES_CBC, Some(128)) => Encr::AesCbc128,
            (ENCR_AES_CBC, Some(192)) => Encr::AesCbc192,
            (ENCR_AES_CBC, Some(256)) => Encr::AesCbc256,
            (ENCR_AES_GCM_16, Some(128)) => Encr::AesGcm16_128,
            (ENCR_AES_GCM_16, Some(256)) => Encr::AesGcm16_256,
            (ENCR_CHACHA20_POLY1305, None) => Encr::ChaCha20Poly1305,
            _ => {
                return Err(CryptoError::Unsupported {
                    kind: "encryption",
                    id,
                    key_bits,
                });
            }
        })
    }

    pub fn iana_id(self) -> u16 {
        match self {
            Encr::DesCbc => ENCR_DES,
            Encr::TripleDesCbc => ENCR_3DES,
            Encr::AesCbc128 | Encr::AesCbc192 | Encr::AesCbc256 => ENCR_AES_CBC,
            Encr::AesGcm16_128 | Encr::AesGcm16_256 => ENCR_AES_GCM_16,
            Encr::ChaCha20Poly1305 => ENCR_CHACHA20_POLY1305,
        }
    }

    /// The Key Length attribute to send, for ciphers that take one.
    pub fn key_bits(self) -> Option<u16> {
        match self {
            Encr::AesCbc128 | Encr::AesGcm16_128 => Some(128),
            Encr::AesCbc192 => Some(192),
            Encr::AesCbc256 | Encr::AesGcm16_256 => Some(256),
            Encr::DesCbc | Encr::TripleDesCbc | Encr::ChaCha20Poly1305 => None,
        }
    }

    pub fn is_aead(self) -> bool {
        matches!(
            self,
            Encr::AesGcm16_128 | Encr::AesGcm16_256 | Encr::ChaCha20Poly1305
        )
    }

    /// Cipher key length, without the AEAD salt.
    pub fn key_len(self) -> usize {
        match self {
            Encr::DesCbc => 8,
            Encr::TripleDesCbc | Encr::AesCbc192 => 24,
            Encr::AesCbc128 | Encr::AesGcm16_128 => 16,
            Encr::AesCbc256 | Encr::AesGcm16_256 | Encr::ChaCha20Poly1305 => 32,
        }
    }

    /// Length of the key material to take from prf+ (SK_e*, child encryption keys).
    pub fn key_material_len(self) -> usize {
        if self.is_aead() {
            self.key_len() + AEAD_SALT_LEN
        } else {
            self.key_len()
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            Encr::DesCbc | Encr::TripleDesCbc => 8,
            Encr::AesCbc128 | Encr::AesCbc192 | Encr::AesCbc256 => 16,
            Encr::AesGcm16_128 | Encr::AesGcm16_256 | Encr::ChaCha20Poly1305 => AEAD_IV_LEN,
        }
    }

    /// Plaintext (payloads, padding, pad length) must be a multiple of this.
    pub fn block_len(self) -> usize {
        if self.is_aead() { 1 } else { self.iv_len() }
    }

    /// The AEAD's own ICV length; CBC ciphers take theirs from the integrity algorithm.
    pub fn aead_tag_len(self) -> Option<usize> {
        self.is_aead().then_some(AEAD_TAG_LEN)
    }

    /// Encrypts `buf` (a whole number of blocks) in place.
    pub(crate) fn cbc_encrypt(
        self,
        key: &[u8],
        iv: &[u8],
        buf: &mut [u8],
    ) -> Result<(), CryptoError> {
        match self {
            Encr::DesCbc => cbc_enc::<Des>(key, iv, buf),
            Encr::TripleDesCbc => cbc_enc::<TdesEde3>(key, iv, buf),
            Encr::AesCbc128 => cbc_enc::<Aes128>(key, iv, buf),
            Encr::AesCbc192 => cbc_enc::<Aes192>(key, iv, buf),
            Encr::AesCbc256 => cbc_enc::<Aes256>(key, iv, buf),
            _ => Err(CryptoError::BadEncryptedPayload("not a CBC cipher")),
        }
    }

    /// Decrypts `buf` (a whole number of blocks) in place.
    pub(crate) fn cbc_decrypt(
        self,
        key: &[u8],
        iv: &[u8],
        buf: &mut [u8],
    ) -> Result<(), CryptoError> {
        match self {
            Encr::DesCbc => cbc_dec::<Des>(key, iv, buf),
            Encr::TripleDesCbc => cbc_dec::<TdesEde3>(key, iv, buf),
            Encr::AesCbc128 => cbc_dec::<Aes128>(key, iv, buf),
            Encr::AesCbc192 => cbc_dec::<Aes192>(key, iv, buf),
            Encr::AesCbc256 => cbc_dec::<Aes256>(key, iv, buf),
            _ => Err(CryptoError::BadEncryptedPayload("not a CBC cipher")),
        }
    }

    /// Splits AEAD key material into ring's key and the salt.
    pub(crate) fn aead_key(
        self,
        material: &[u8],
    ) -> Result<(aead::LessSafeKey, [u8; AEAD_SALT_LEN]), CryptoError> {
        let alg = match self {
            Encr::AesGcm16_128 => &aead::AES_128_GCM,
            Encr::AesGcm16_256 => &aead::AES_256_GCM,
            Encr::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            _ => return Err(CryptoError::BadEncryptedPayload("not an AEAD")),
        };
        if material.len() != self.key_material_len() {
            return Err(CryptoError::BadKeyLength("AEAD key material"));
        }
        let (key, salt) = material.split_at(self.key_len());
        let salt: [u8; AEAD_SALT_LEN] = salt
            .try_into()
            .map_err(|_| CryptoError::BadKeyLength("AEAD salt"))?;
        let key =
            aead::UnboundKey::new(alg, key).map_err(|_| CryptoError::BadKeyLength("AEAD key"))?;
        Ok((aead::LessSafeKey::new(key), salt))
    }
}

/// The 12-octet AEAD nonce: salt | explicit IV (RFC 5282 §4, RFC 7634 §2).
pub(crate) fn aead_nonce(
    salt: &[u8; AEAD_SALT_LEN],
    iv: &[u8],
) -> Result<aead::Nonce, CryptoError> {
    let mut n = [0u8; aead::NONCE_LEN];
    let (s, i) = n.split_at_mut(AEAD_SALT_LEN);
    s.copy_from_slice(salt);
    if i.len() != iv.len() {
        return Err(CryptoError::BadEncryptedPayload("AEAD IV length"));
    }
    i.copy_from_slice(iv);
    Ok(aead::Nonce::assume_unique_for_key(n))
}

fn cbc_enc<C>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError>
where
    C: BlockCipher + BlockEncryptMut,
    cbc::Encryptor<C>: KeyIvInit,
{
    let len = buf.len();
    cbc::Encryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::BadKeyLength("CBC key or IV"))?
        .encrypt_padded_mut::<NoPadding>(buf, len)
        .map_err(|_| CryptoError::BadEncryptedPayload("CBC input not block aligned"))?;
    Ok(())
}

fn cbc_dec<C>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError>
where
    C: BlockCipher + BlockDecryptMut,
    cbc::Decryptor<C>: KeyIvInit,
{
    cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::BadKeyLength("CBC key or IV"))?
        .decrypt_padded_mut::<NoPadding>(buf)
        .map_err(|_| CryptoError::BadEncryptedPayload("CBC input not block aligned"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 3602 §4, cases #1 and #2 (AES-128-CBC).
    #[test]
    fn rfc3602_aes_cbc() {
        let cases = [
            (
                "06a9214036b8a15b512e03d534120006",
                "3dafba429d9eb430b422da802c9fac41",
                b"Single block msg".to_vec(),
                "e353779c1079aeb82708942dbe77181a",
            ),
            (
                "c286696d887c9aa0611bbb3e2025a45a",
                "562e17996d093d28ddb3ba695a2e6f58",
                (0u8..32).collect(),
                "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
            ),
        ];
        for (key, iv, plain, cipher) in cases {
            let mut buf = plain.clone();
            Encr::AesCbc128
                .cbc_encrypt(&h(key), &h(iv), &mut buf)
                .unwrap();
            assert_eq!(buf, h(cipher));
            Encr::AesCbc128
                .cbc_decrypt(&h(key), &h(iv), &mut buf)
                .unwrap();
            assert_eq!(buf, plain);
        }
        let mut odd = vec![0u8; 15];
        assert!(
            Encr::AesCbc128
                .cbc_encrypt(&[0; 16], &[0; 16], &mut odd)
                .is_err()
        );
        assert!(
            Encr::AesCbc128
                .cbc_encrypt(&[0; 15], &[0; 16], &mut [0; 16])
                .is_err()
        );
    }

    #[test]
    fn transform_mapping() {
        for e in [
            Encr::DesCbc,
            Encr::TripleDesCbc,
            Encr::AesCbc128,
            Encr::AesCbc192,
            Encr::AesCbc256,
            Encr::AesGcm16_128,
            Encr::AesGcm16_256,
            Encr::ChaCha20Poly1305,
        ] {
            assert_eq!(Encr::from_transform(e.iana_id(), e.key_bits()), Ok(e));
        }
        assert!(Encr::from_transform(ENCR_AES_CBC, None).is_err());
        assert!(Encr::from_transform(ENCR_AES_GCM_16, Some(192)).is_err());
        assert!(Encr::from_transform(ENCR_CHACHA20_POLY1305, Some(256)).is_err());
        assert_eq!(Encr::AesGcm16_128.key_material_len(), 20);
    }
}
