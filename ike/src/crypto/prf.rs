//! Pseudo-random functions (IANA Transform Type 2) and prf+ (RFC 7296 §2.13).

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use ring::hmac as rhmac;

use super::error::CryptoError;
use super::secret::SecretBytes;
use super::xcbc::xcbc_prf;

/// A negotiated PRF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacMd5,
    HmacSha1,
    AesXcbc128,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    /// Maps an IANA PRF transform id.
    pub fn from_iana(id: u16) -> Result<Self, CryptoError> {
        Ok(match id {
            1 => Prf::HmacMd5,
            2 => Prf::HmacSha1,
            4 => Prf::AesXcbc128,
            5 => Prf::HmacSha256,
            6 => Prf::HmacSha384,
            7 => Prf::HmacSha512,
            _ => {
                return Err(CryptoError::Unsupported {
                    kind: "PRF",
                    id,
                    key_bits: None,
                });
            }
        })
    }

    pub fn iana_id(self) -> u16 {
        match self {
            Prf::HmacMd5 => 1,
            Prf::HmacSha1 => 2,
            Prf::AesXcbc128 => 4,
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }

    /// Output size, which is also the size of SK_d, SK_pi and SK_pr (RFC 7296 §2.14).
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacMd5 | Prf::AesXcbc128 => 16,
            Prf::HmacSha1 => 20,
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// prf(key, parts[0] | parts[1] | ...), without concatenating the parts.
    pub fn compute(self, key: &[u8], parts: &[&[u8]]) -> SecretBytes {
        let ring_alg = match self {
            Prf::HmacMd5 => return SecretBytes::new(hmac_md5(key, parts)),
            Prf::AesXcbc128 => return SecretBytes::new(xcbc_prf(key, parts).to_vec()),
            Prf::HmacSha1 => rhmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Prf::HmacSha256 => rhmac::HMAC_SHA256,
            Prf::HmacSha384 => rhmac::HMAC_SHA384,
            Prf::HmacSha512 => rhmac::HMAC_SHA512,
        };
        let key = rhmac::Key::new(ring_alg, key);
        let mut ctx = rhmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        SecretBytes::from_slice(ctx.sign().as_ref())
    }

    /// prf+ (RFC 7296 §2.13): T1 | T2 | ... truncated to `len`, where
    /// Tn = prf(K, Tn-1 | S | n) with a one-octet counter starting at 1.
    pub fn prf_plus(
        self,
        key: &[u8],
        seed: &[&[u8]],
        len: usize,
    ) -> Result<SecretBytes, CryptoError> {
        let blocks = len.div_ceil(self.output_len());
        if blocks > 255 {
            return Err(CryptoError::PrfPlusTooLong);
        }
        let mut out = Vec::with_capacity(blocks * self.output_len());
        let mut prev = SecretBytes::new(Vec::new());
        for n in 1..=blocks {
            let counter = [u8::try_from(n).map_err(|_| CryptoError::PrfPlusTooLong)?];
            let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
            parts.push(prev.as_bytes());
            parts.extend_from_slice(seed);
            parts.push(&counter);
            prev = self.compute(key, &parts);
            out.extend_from_slice(prev.as_bytes());
        }
        out.truncate(len);
        Ok(SecretBytes::new(out))
    }
}

const MD5_BLOCK: usize = 64;

/// HMAC-MD5 keyed with a whole block, as RFC 2104 §2 prepares any key: longer keys are
/// hashed, shorter ones zero-padded. This way no key length can make setup fail.
pub(crate) fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut block = [0u8; MD5_BLOCK];
    if key.len() > MD5_BLOCK {
        let digest = Md5::digest(key);
        block
            .iter_mut()
            .zip(digest.iter())
            .for_each(|(b, d)| *b = *d);
    } else {
        block.iter_mut().zip(key).for_each(|(b, k)| *b = *k);
    }
    let mut mac = <Hmac<Md5> as KeyInit>::new(&block.into());
    zeroize::Zeroize::zeroize(&mut block);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn check(prf: Prf, key: &[u8], data: &[u8], expected: &str) {
        assert_eq!(prf.compute(key, &[data]).as_bytes(), h(expected), "{prf:?}");
    }

    const LARGE_KEY_DATA: &[u8] = b"Test Using Larger Than Block-Size Key - Hash Key First";

    /// RFC 2202 §2 (HMAC-MD5) test cases 1, 2, 3 and 6.
    #[test]
    fn rfc2202_hmac_md5() {
        check(
            Prf::HmacMd5,
            &[0x0b; 16],
            b"Hi There",
            "9294727a3638bb1c13f48ef8158bfc9d",
        );
        check(
            Prf::HmacMd5,
            b"Jefe",
            b"what do ya want for nothing?",
            "750c783e6ab0b503eaa86e310a5db738",
        );
        check(
            Prf::HmacMd5,
            &[0xaa; 16],
            &[0xdd; 50],
            "56be34521d144c88dbb8c733f0e8b3f6",
        );
        check(
            Prf::HmacMd5,
            &[0xaa; 80],
            LARGE_KEY_DATA,
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
        );
    }

    /// RFC 2202 §3 (HMAC-SHA-1) test cases 1, 2, 3 and 6.
    #[test]
    fn rfc2202_hmac_sha1() {
        check(
            Prf::HmacSha1,
            &[0x0b; 20],
            b"Hi There",
            "b617318655057264e28bc0b6fb378c8ef146be00",
        );
        check(
            Prf::HmacSha1,
            b"Jefe",
            b"what do ya want for nothing?",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        );
        check(
            Prf::HmacSha1,
            &[0xaa; 20],
            &[0xdd; 50],
            "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
        );
        check(
            Prf::HmacSha1,
            &[0xaa; 80],
            LARGE_KEY_DATA,
            "aa4ae5e15272d00e95705637ce8a3b55ed402112",
        );
    }

    /// RFC 4231 §4.2, §4.3 and §4.7 (test cases 1, 2 and 6).
    #[test]
    fn rfc4231_hmac_sha2() {
        let hi = (&[0x0b_u8; 20][..], &b"Hi There"[..]);
        let jefe = (&b"Jefe"[..], &b"what do ya want for nothing?"[..]);
        let large = (&[0xaa_u8; 131][..], LARGE_KEY_DATA);
        let cases = [
            (
                Prf::HmacSha256,
                hi,
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                Prf::HmacSha384,
                hi,
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
            ),
            (
                Prf::HmacSha512,
                hi,
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
            (
                Prf::HmacSha256,
                jefe,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                Prf::HmacSha384,
                jefe,
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
            ),
            (
                Prf::HmacSha512,
                jefe,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
            (
                Prf::HmacSha256,
                large,
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                Prf::HmacSha384,
                large,
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
            ),
            (
                Prf::HmacSha512,
                large,
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ),
        ];
        for (prf, (key, data), expected) in cases {
            check(prf, key, data, expected);
        }
    }

    #[test]
    fn multi_part_input_equals_concatenation() {
        for prf in [
            Prf::HmacMd5,
            Prf::HmacSha1,
            Prf::AesXcbc128,
            Prf::HmacSha256,
            Prf::HmacSha512,
        ] {
            assert_eq!(
                prf.compute(b"key", &[b"ab", b"", b"cdef"]),
                prf.compute(b"key", &[b"abcdef"])
            );
            assert_eq!(prf.compute(b"k", &[]).len(), prf.output_len());
            assert_eq!(Prf::from_iana(prf.iana_id()), Ok(prf));
        }
        assert!(Prf::from_iana(3).is_err());
    }

    #[test]
    fn prf_plus_limits() {
        let p = Prf::HmacSha256;
        assert_eq!(p.prf_plus(b"k", &[b"s"], 255 * 32).unwrap().len(), 255 * 32);
        assert_eq!(
            p.prf_plus(b"k", &[b"s"], 255 * 32 + 1),
            Err(CryptoError::PrfPlusTooLong)
        );
        // A prefix of a longer prf+ stream is the shorter stream.
        let long = p.prf_plus(b"k", &[b"s"], 100).unwrap();
        let short = p.prf_plus(b"k", &[b"s"], 33).unwrap();
        assert_eq!(&long.as_bytes()[..33], short.as_bytes());
    }
}
