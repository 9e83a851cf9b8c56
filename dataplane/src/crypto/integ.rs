//! Keyed integrity algorithms: HMAC truncated to the ICV length.
//!
//! HMAC-SHA1 and HMAC-SHA2 run on ring, whose `hmac::Key` holds the inner and outer
//! digest states precomputed from the key, so a packet pays only for its own bytes plus
//! the two finalising compressions. ring has no MD5, so HMAC-MD5 runs on RustCrypto with
//! the same trick: the keyed `Hmac<Md5>` is built once and cloned per packet.

use hmac::Mac as _;
use subtle::ConstantTimeEq as _;

use super::{CryptoError, IntegAlg};

/// Longest untruncated HMAC output (SHA-512): scratch space for a tag before truncation.
const MAX_MAC_LEN: usize = 64;

/// The precomputed key of one HMAC instance.
///
/// Neither ring's `hmac::Key` nor RustCrypto's `Hmac<Md5>` can be zeroized from outside;
/// they hold only the digest states after absorbing `key ^ ipad` and `key ^ opad`, never
/// the key bytes themselves, and this module keeps no other copy of the key.
enum HmacKey {
    /// HMAC-SHA1 and HMAC-SHA2.
    Ring(ring::hmac::Key),
    /// HMAC-MD5, which ring lacks.
    Md5(hmac::Hmac<md5::Md5>),
}

/// A keyed integrity algorithm (HMAC truncated to the ICV length).
pub struct Integ {
    alg: IntegAlg,
    key: HmacKey,
}

impl std::fmt::Debug for Integ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integ")
            .field("alg", &self.alg.name())
            .finish_non_exhaustive()
    }
}

impl Integ {
    /// Keys `alg` with `key` (exactly `alg.key_len()` bytes).
    ///
    /// RFC 4868 §2.1.1 fixes the key length to the hash output length for IPsec, so a
    /// key of any other length is a keying bug upstream and is refused rather than
    /// silently hashed or padded as plain HMAC would.
    pub fn new(alg: IntegAlg, key: &[u8]) -> Result<Self, CryptoError> {
        let ring_alg = match alg {
            IntegAlg::None => {
                return Err(CryptoError::Combination {
                    encr: "none",
                    integ: alg.name(),
                });
            }
            IntegAlg::HmacMd5_96 => None,
            IntegAlg::HmacSha1_96 => Some(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            IntegAlg::HmacSha256_128 => Some(ring::hmac::HMAC_SHA256),
            IntegAlg::HmacSha384_192 => Some(ring::hmac::HMAC_SHA384),
            IntegAlg::HmacSha512_256 => Some(ring::hmac::HMAC_SHA512),
        };
        if key.len() != alg.key_len() {
            return Err(CryptoError::KeyLength {
                alg: alg.name(),
                expected: alg.key_len(),
                got: key.len(),
            });
        }
        let key = match ring_alg {
            Some(ring_alg) => HmacKey::Ring(ring::hmac::Key::new(ring_alg, key)),
            None => HmacKey::Md5(<hmac::Hmac<md5::Md5>>::new_from_slice(key).map_err(|_| {
                CryptoError::KeyLength {
                    alg: alg.name(),
                    expected: alg.key_len(),
                    got: key.len(),
                }
            })?),
        };
        Ok(Self { alg, key })
    }

    /// Truncated ICV length in bytes.
    pub fn icv_len(&self) -> usize {
        self.alg.icv_len()
    }

    /// Computes the truncated HMAC over the concatenation of `parts` into `out`
    /// (`out.len() == icv_len()`).
    ///
    /// `out` receives the leading `out.len()` bytes of the full HMAC; should a caller pass
    /// more bytes than the full HMAC has, the excess is zeroed so the output is never
    /// left holding stale data.
    pub fn compute(&self, parts: &[&[u8]], out: &mut [u8]) {
        let mut full = [0u8; MAX_MAC_LEN];
        let full_len = self.full_mac(parts, &mut full);
        let take = out.len().min(full_len);
        let (head, tail) = out.split_at_mut(take);
        head.copy_from_slice(&full[..take]);
        tail.fill(0);
    }

    /// Verifies `icv` over the concatenation of `parts`, in constant time.
    ///
    /// An ICV of any length other than `icv_len()` is refused outright: accepting a
    /// shorter one would let a forger shrink the tag to a guessable size.
    pub fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> bool {
        let icv_len = self.icv_len();
        if icv.len() != icv_len {
            return false;
        }
        let mut full = [0u8; MAX_MAC_LEN];
        self.full_mac(parts, &mut full);
        full[..icv_len].ct_eq(icv).into()
    }

    /// Writes the untruncated HMAC of `parts` to the front of `out`; returns its length.
    fn full_mac(&self, parts: &[&[u8]], out: &mut [u8; MAX_MAC_LEN]) -> usize {
        match &self.key {
            HmacKey::Ring(key) => {
                let mut ctx = ring::hmac::Context::with_key(key);
                for part in parts {
                    ctx.update(part);
                }
                let tag = ctx.sign();
                let tag = tag.as_ref();
                out[..tag.len()].copy_from_slice(tag);
                tag.len()
            }
            HmacKey::Md5(keyed) => {
                let mut mac = keyed.clone();
                for part in parts {
                    mac.update(part);
                }
                let tag = mac.finalize().into_bytes();
                out[..tag.len()].copy_from_slice(&tag);
                tag.len()
            }
        }
    }
}
