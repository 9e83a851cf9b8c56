//! Algorithm identifiers and their sizes, in IANA "IKEv2 Transform Type" numbers.

/// An ESP encryption (or combined-mode AEAD) algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_NULL (RFC 2410): no confidentiality, integrity required.
    Null,
    /// ENCR_DES (RFC 2405). Broken; for interoperability with legacy peers only.
    DesCbc,
    /// ENCR_3DES (RFC 2451).
    TripleDesCbc,
    /// ENCR_AES_CBC with a 128-bit key (RFC 3602).
    AesCbc128,
    /// ENCR_AES_CBC with a 192-bit key.
    AesCbc192,
    /// ENCR_AES_CBC with a 256-bit key.
    AesCbc256,
    /// ENCR_AES_GCM_16 with a 128-bit key (RFC 4106).
    AesGcm128,
    /// ENCR_AES_GCM_16 with a 256-bit key.
    AesGcm256,
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
}

impl EncrAlg {
    /// Maps an IKEv2 ENCR transform ID and its Key Length attribute (bits) to an
    /// algorithm; `None` for what this dataplane does not implement.
    pub fn from_iana(transform_id: u16, key_bits: Option<u16>) -> Option<Self> {
        Some(match (transform_id, key_bits) {
            (2, None | Some(64)) => EncrAlg::DesCbc,
            (3, None | Some(192)) => EncrAlg::TripleDesCbc,
            (11, None | Some(0)) => EncrAlg::Null,
            (12, Some(128)) => EncrAlg::AesCbc128,
            (12, Some(192)) => EncrAlg::AesCbc192,
            (12, Some(256)) => EncrAlg::AesCbc256,
            (20, Some(128)) => EncrAlg::AesGcm128,
            (20, Some(256)) => EncrAlg::AesGcm256,
            (28, None | Some(256)) => EncrAlg::ChaCha20Poly1305,
            _ => return None,
        })
    }

    /// The IKEv2 ENCR transform ID.
    pub fn iana_id(self) -> u16 {
        match self {
            EncrAlg::DesCbc => 2,
            EncrAlg::TripleDesCbc => 3,
            EncrAlg::Null => 11,
            EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256 => 12,
            EncrAlg::AesGcm128 | EncrAlg::AesGcm256 => 20,
            EncrAlg::ChaCha20Poly1305 => 28,
        }
    }

    /// The Key Length attribute (bits) this algorithm is negotiated with, if it has one.
    pub fn key_bits(self) -> Option<u16> {
        match self {
            EncrAlg::AesCbc128 | EncrAlg::AesGcm128 => Some(128),
            EncrAlg::AesCbc192 => Some(192),
            EncrAlg::AesCbc256 | EncrAlg::AesGcm256 => Some(256),
            _ => None,
        }
    }

    /// Bytes of keying material taken from KEYMAT, including the 4-byte salt that
    /// RFC 4106 §8.1 and RFC 7634 §2 append for the AEADs.
    pub fn key_len(self) -> usize {
        match self {
            EncrAlg::Null => 0,
            EncrAlg::DesCbc => 8,
            EncrAlg::TripleDesCbc => 24,
            EncrAlg::AesCbc128 => 16,
            EncrAlg::AesCbc192 => 24,
            EncrAlg::AesCbc256 => 32,
            EncrAlg::AesGcm128 => 20,
            EncrAlg::AesGcm256 | EncrAlg::ChaCha20Poly1305 => 36,
        }
    }

    /// Bytes of explicit IV carried in each packet.
    pub fn iv_len(self) -> usize {
        match self {
            EncrAlg::Null => 0,
            EncrAlg::DesCbc | EncrAlg::TripleDesCbc => 8,
            EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256 => 16,
            EncrAlg::AesGcm128 | EncrAlg::AesGcm256 | EncrAlg::ChaCha20Poly1305 => 8,
        }
    }

    /// The alignment the padded plaintext (payload + padding + 2 trailer bytes) must
    /// reach: the cipher block size, and at least 4 (RFC 4303 §2.4).
    pub fn block_size(self) -> usize {
        match self {
            EncrAlg::DesCbc | EncrAlg::TripleDesCbc => 8,
            EncrAlg::AesCbc128 | EncrAlg::AesCbc192 | EncrAlg::AesCbc256 => 16,
            EncrAlg::Null | EncrAlg::AesGcm128 | EncrAlg::AesGcm256 | EncrAlg::ChaCha20Poly1305 => {
                4
            }
        }
    }

    /// True for combined-mode algorithms, which carry their own 16-byte ICV.
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            EncrAlg::AesGcm128 | EncrAlg::AesGcm256 | EncrAlg::ChaCha20Poly1305
        )
    }

    /// Junos-style name, for display.
    pub fn name(self) -> &'static str {
        match self {
            EncrAlg::Null => "null",
            EncrAlg::DesCbc => "des-cbc",
            EncrAlg::TripleDesCbc => "3des-cbc",
            EncrAlg::AesCbc128 => "aes-128-cbc",
            EncrAlg::AesCbc192 => "aes-192-cbc",
            EncrAlg::AesCbc256 => "aes-256-cbc",
            EncrAlg::AesGcm128 => "aes-128-gcm",
            EncrAlg::AesGcm256 => "aes-256-gcm",
            EncrAlg::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

/// An integrity algorithm for ESP (non-AEAD) and AH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// No separate integrity: only valid with an AEAD.
    None,
    /// AUTH_HMAC_MD5_96 (RFC 2403).
    HmacMd5_96,
    /// AUTH_HMAC_SHA1_96 (RFC 2404).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868).
    HmacSha512_256,
}

impl IntegAlg {
    /// Maps an IKEv2 INTEG transform ID; `None` for what this dataplane does not implement.
    pub fn from_iana(transform_id: u16) -> Option<Self> {
        Some(match transform_id {
            0 => IntegAlg::None,
            1 => IntegAlg::HmacMd5_96,
            2 => IntegAlg::HmacSha1_96,
            12 => IntegAlg::HmacSha256_128,
            13 => IntegAlg::HmacSha384_192,
            14 => IntegAlg::HmacSha512_256,
            _ => return None,
        })
    }

    /// The IKEv2 INTEG transform ID.
    pub fn iana_id(self) -> u16 {
        match self {
            IntegAlg::None => 0,
            IntegAlg::HmacMd5_96 => 1,
            IntegAlg::HmacSha1_96 => 2,
            IntegAlg::HmacSha256_128 => 12,
            IntegAlg::HmacSha384_192 => 13,
            IntegAlg::HmacSha512_256 => 14,
        }
    }

    /// Key bytes (the HMAC output size, RFC 4868 §2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            IntegAlg::None => 0,
            IntegAlg::HmacMd5_96 => 16,
            IntegAlg::HmacSha1_96 => 20,
            IntegAlg::HmacSha256_128 => 32,
            IntegAlg::HmacSha384_192 => 48,
            IntegAlg::HmacSha512_256 => 64,
        }
    }

    /// Bytes of the truncated ICV carried in each packet.
    pub fn icv_len(self) -> usize {
        match self {
            IntegAlg::None => 0,
            IntegAlg::HmacMd5_96 | IntegAlg::HmacSha1_96 => 12,
            IntegAlg::HmacSha256_128 => 16,
            IntegAlg::HmacSha384_192 => 24,
            IntegAlg::HmacSha512_256 => 32,
        }
    }

    /// Junos-style name, for display.
    pub fn name(self) -> &'static str {
        match self {
            IntegAlg::None => "none",
            IntegAlg::HmacMd5_96 => "hmac-md5-96",
            IntegAlg::HmacSha1_96 => "hmac-sha1-96",
            IntegAlg::HmacSha256_128 => "hmac-sha-256-128",
            IntegAlg::HmacSha384_192 => "hmac-sha-384-192",
            IntegAlg::HmacSha512_256 => "hmac-sha-512-256",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_numbers_round_trip() {
        for a in [
            EncrAlg::Null,
            EncrAlg::DesCbc,
            EncrAlg::TripleDesCbc,
            EncrAlg::AesCbc128,
            EncrAlg::AesCbc192,
            EncrAlg::AesCbc256,
            EncrAlg::AesGcm128,
            EncrAlg::AesGcm256,
            EncrAlg::ChaCha20Poly1305,
        ] {
            assert_eq!(EncrAlg::from_iana(a.iana_id(), a.key_bits()), Some(a));
        }
        for a in [
            IntegAlg::None,
            IntegAlg::HmacMd5_96,
            IntegAlg::HmacSha1_96,
            IntegAlg::HmacSha256_128,
            IntegAlg::HmacSha384_192,
            IntegAlg::HmacSha512_256,
        ] {
            assert_eq!(IntegAlg::from_iana(a.iana_id()), Some(a));
        }
        assert_eq!(EncrAlg::from_iana(20, Some(192)), None);
        assert_eq!(IntegAlg::from_iana(5), None);
    }
}
