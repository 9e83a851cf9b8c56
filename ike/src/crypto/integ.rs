//! Integrity algorithms (IANA Transform Type 3) for non-AEAD ciphers.

use ring::hmac as rhmac;
use subtle::ConstantTimeEq;

use super::error::CryptoError;
use super::prf::hmac_md5;
use super::xcbc::xcbc_mac;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    HmacMd5_96,
    HmacSha1_96,
    AesXcbc96,
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

impl Integ {
    pub fn from_iana(id: u16) -> Result<Self, CryptoError> {
        Ok(match id {
            1 => Integ::HmacMd5_96,
            2 => Integ::HmacSha1_96,
            5 => Integ::AesXcbc96,
            12 => Integ::HmacSha256_128,
            13 => Integ::HmacSha384_192,
            14 => Integ::HmacSha512_256,
            _ => {
                return Err(CryptoError::Unsupported {
                    kind: "integrity",
                    id,
                    key_bits: None,
                });
            }
        })
    }

    pub fn iana_id(self) -> u16 {
        match self {
            Integ::HmacMd5_96 => 1,
            Integ::HmacSha1_96 => 2,
            Integ::AesXcbc96 => 5,
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }

    /// Key size (RFC 2404, RFC 2403, RFC 3566, RFC 4868 §2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacMd5_96 | Integ::AesXcbc96 => 16,
            Integ::HmacSha1_96 => 20,
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV size.
    pub fn icv_len(self) -> usize {
        match self {
            Integ::HmacMd5_96 | Integ::HmacSha1_96 | Integ::AesXcbc96 => 12,
            Integ::HmacSha256_128 => 16,
            Integ::HmacSha384_192 => 24,
            Integ::HmacSha512_256 => 32,
        }
    }

    /// The truncated ICV over the concatenation of `parts`.
    pub fn compute(self, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
        if key.len() != self.key_len() {
            return Err(CryptoError::BadKeyLength("integrity key"));
        }
        let mut full = match self {
            Integ::HmacMd5_96 => hmac_md5(key, parts),
            Integ::AesXcbc96 => {
                let key: &[u8; 16] = key
                    .try_into()
                    .map_err(|_| CryptoError::BadKeyLength("AES-XCBC key"))?;
                xcbc_mac(key, parts).to_vec()
            }
            Integ::HmacSha1_96 => ring_hmac(rhmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key, parts),
            Integ::HmacSha256_128 => ring_hmac(rhmac::HMAC_SHA256, key, parts),
            Integ::HmacSha384_192 => ring_hmac(rhmac::HMAC_SHA384, key, parts),
            Integ::HmacSha512_256 => ring_hmac(rhmac::HMAC_SHA512, key, parts),
        };
        full.truncate(self.icv_len());
        Ok(full)
    }

    /// Checks an ICV in constant time.
    pub fn verify(self, key: &[u8], parts: &[&[u8]], icv: &[u8]) -> Result<(), CryptoError> {
        let expected = self.compute(key, parts)?;
        if expected.len() == icv.len() && bool::from(expected.ct_eq(icv)) {
            Ok(())
        } else {
            Err(CryptoError::IntegrityCheckFailed)
        }
    }
}

fn ring_hmac(alg: rhmac::Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = rhmac::Key::new(alg, key);
    let mut ctx = rhmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 4868 §2.7.2 test case AUTH256-1/AUTH384-1/AUTH512-1 (key 0x0b repeated to
    /// the key length, data "Hi There"), truncated as in §2.7.2.
    #[test]
    fn rfc4868_truncated_hmac_sha2() {
        let cases = [
            (Integ::HmacSha256_128, "198a607eb44bfbc69903a0f1cf2bbdc5"),
            (
                Integ::HmacSha384_192,
                "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
            ),
            (
                Integ::HmacSha512_256,
                "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
            ),
        ];
        for (integ, icv) in cases {
            let key = vec![0x0b; integ.key_len()];
            assert_eq!(integ.compute(&key, &[b"Hi There"]).unwrap(), h(icv));
            assert!(integ.verify(&key, &[b"Hi ", b"There"], &h(icv)).is_ok());
            let mut bad = h(icv);
            bad[0] ^= 1;
            assert_eq!(
                integ.verify(&key, &[b"Hi There"], &bad),
                Err(CryptoError::IntegrityCheckFailed)
            );
            assert!(integ.verify(&key, &[b"Hi There"], &h(icv)[1..]).is_err());
        }
    }

    /// RFC 2202 test case 1 truncated to 96 bits (RFC 2403 / RFC 2404), and RFC 3566
    /// §4.6 test case 4 truncated to 96 bits.
    #[test]
    fn ninety_six_bit_truncations() {
        assert_eq!(
            Integ::HmacMd5_96
                .compute(&[0x0b; 16], &[b"Hi There"])
                .unwrap(),
            h("9294727a3638bb1c13f48ef8")
        );
        let mut sha1_key = vec![0x0b; 20];
        assert_eq!(
            Integ::HmacSha1_96
                .compute(&sha1_key, &[b"Hi There"])
                .unwrap(),
            h("b617318655057264e28bc0b6")
        );
        sha1_key.pop();
        assert!(Integ::HmacSha1_96.compute(&sha1_key, &[b"x"]).is_err());
        let key = h("000102030405060708090a0b0c0d0e0f");
        let msg: Vec<u8> = (0u8..20).collect();
        assert_eq!(
            Integ::AesXcbc96.compute(&key, &[&msg]).unwrap(),
            h("47f51b4564966215b8985c63")
        );
        for id in [1, 2, 5, 12, 13, 14] {
            assert_eq!(Integ::from_iana(id).unwrap().iana_id(), id);
        }
    }
}
