//! CONTRACT STUB — being implemented by the crypto helper; signatures are fixed.

use super::{CryptoError, EncrAlg, IntegAlg};

/// A keyed integrity algorithm (HMAC truncated to the ICV length).
pub struct Integ {
    _p: (),
}

impl std::fmt::Debug for Integ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Integ(..)")
    }
}

impl Integ {
    /// Keys `alg` with `key` (exactly `alg.key_len()` bytes).
    pub fn new(alg: IntegAlg, key: &[u8]) -> Result<Self, CryptoError> {
        let _ = (alg, key);
        todo!()
    }
    /// Truncated ICV length in bytes.
    pub fn icv_len(&self) -> usize {
        todo!()
    }
    /// Computes the truncated HMAC over the concatenation of `parts` into `out`
    /// (`out.len() == icv_len()`).
    pub fn compute(&self, parts: &[&[u8]], out: &mut [u8]) {
        let _ = (parts, out);
        todo!()
    }
    /// Verifies `icv` over the concatenation of `parts`, in constant time.
    pub fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> bool {
        let _ = (parts, icv);
        todo!()
    }
}

/// The keyed ESP transform of one SA direction.
pub struct EspCipher {
    _p: (),
}

impl std::fmt::Debug for EspCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EspCipher(..)")
    }
}

impl EspCipher {
    /// Keys an ESP transform.
    pub fn new(
        encr: EncrAlg,
        encr_key: &[u8],
        integ: IntegAlg,
        integ_key: &[u8],
    ) -> Result<Self, CryptoError> {
        let _ = (encr, encr_key, integ, integ_key);
        todo!()
    }
    /// Explicit IV bytes per packet.
    pub fn iv_len(&self) -> usize {
        todo!()
    }
    /// Padding alignment of the plaintext incl. the 2 trailer bytes.
    pub fn block_size(&self) -> usize {
        todo!()
    }
    /// ICV bytes per packet.
    pub fn icv_len(&self) -> usize {
        todo!()
    }
    /// Seals an ESP packet in place.
    pub fn seal(&mut self, pkt: &mut [u8], seq: u64, esn: bool) -> Result<(), CryptoError> {
        let _ = (pkt, seq, esn);
        todo!()
    }
    /// Verifies and decrypts an ESP packet in place.
    pub fn open(&self, pkt: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let _ = (pkt, seq_hi);
        todo!()
    }
}
