//! The keyed ESP transform of one SA direction: outbound (RFC 4303 §3.3.2) and inbound
//! (§3.4.4) processing of the bytes from the SPI through the ICV.
//!
//! The transform dispatches on an enum rather than a trait object so that the per-packet
//! path is a direct call, and it keeps every key in its expanded form so that no packet
//! re-runs a key schedule or allocates.

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore as _, SeedableRng as _};

use super::aead::{self, Aead};
use super::cbc::CbcCipher;
use super::{CryptoError, EncrAlg, Integ, IntegAlg};

/// SPI and low sequence number: the part of the ESP header in front of the IV.
const HEADER_LEN: usize = aead::HEADER_LEN;
/// The longest explicit IV of any supported cipher (AES-CBC).
const MAX_IV_LEN: usize = 16;
/// Pad Length and Next Header: every ESP payload carries at least these two bytes.
const TRAILER_LEN: usize = 2;

const TOO_SHORT: CryptoError = CryptoError::Layout("packet shorter than header, IV and ICV");

/// How one SA protects its packets.
#[expect(
    clippy::large_enum_variant,
    reason = "the AEAD is the common, hot case and stays inline; only rare NULL SAs are smaller"
)]
enum Mode {
    /// AES-GCM or ChaCha20-Poly1305: the cipher carries its own integrity.
    Aead(Aead),
    /// A CBC cipher followed by an HMAC over the ciphertext (encrypt-then-MAC). Boxed:
    /// its key schedules and IV generator are nearly three times the size of the AEAD
    /// state, which should not set the size of every SA.
    Cbc(Box<Cbc>),
    /// ENCR_NULL (RFC 2410): integrity only.
    Null { integ: Integ },
}

/// The state of a CBC + HMAC SA.
struct Cbc {
    cipher: CbcCipher,
    integ: Integ,
    /// The source of CBC IVs, which must be unpredictable (RFC 3602 §2.3). Seeded once
    /// from the OS per SA so that no packet costs a system call.
    rng: ChaCha20Rng,
}

/// The keyed ESP transform of one SA direction.
pub struct EspCipher {
    encr: EncrAlg,
    integ: IntegAlg,
    mode: Mode,
}

impl std::fmt::Debug for EspCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspCipher")
            .field("encr", &self.encr.name())
            .field("integ", &self.integ.name())
            .finish_non_exhaustive()
    }
}

impl EspCipher {
    /// Keys an ESP transform.
    ///
    /// `encr_key` is exactly `encr.key_len()` bytes, including the trailing 4-byte salt
    /// of an AEAD. An AEAD takes no separate integrity algorithm (`IntegAlg::None` and an
    /// empty `integ_key`). Every other cipher requires one: confidentiality-only CBC is
    /// malleable and open to active attacks on the confidentiality itself (RFC 4303
    /// discourages it, RFC 8221 deprecates it), and ENCR_NULL without integrity would
    /// protect nothing, which RFC 4303 forbids.
    ///
    /// For a CBC cipher this seeds the IV generator from the OS, and reports
    /// [`CryptoError::RandomSource`] if that fails.
    pub fn new(
        encr: EncrAlg,
        encr_key: &[u8],
        integ: IntegAlg,
        integ_key: &[u8],
    ) -> Result<Self, CryptoError> {
        if encr.is_aead() != (integ == IntegAlg::None) {
            return Err(CryptoError::Combination {
                encr: encr.name(),
                integ: integ.name(),
            });
        }
        if encr_key.len() != encr.key_len() {
            return Err(CryptoError::KeyLength {
                alg: encr.name(),
                expected: encr.key_len(),
                got: encr_key.len(),
            });
        }
        let mode = if let Some(aead) = Aead::new(encr, encr_key) {
            if !integ_key.is_empty() {
                return Err(CryptoError::KeyLength {
                    alg: integ.name(),
                    expected: 0,
                    got: integ_key.len(),
                });
            }
            Mode::Aead(aead?)
        } else {
            let integ = Integ::new(integ, integ_key)?;
            match CbcCipher::new(encr, encr_key) {
                Some(cipher) => Mode::Cbc(Box::new(Cbc {
                    cipher: cipher?,
                    integ,
                    rng: iv_generator()?,
                })),
                None => Mode::Null { integ },
            }
        };
        Ok(Self { encr, integ, mode })
    }

    /// Explicit IV bytes per packet.
    pub fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }

    /// Padding alignment of the plaintext incl. the 2 trailer bytes.
    pub fn block_size(&self) -> usize {
        self.encr.block_size()
    }

    /// ICV bytes per packet.
    pub fn icv_len(&self) -> usize {
        match &self.mode {
            Mode::Aead(_) => aead::TAG_LEN,
            Mode::Cbc(cbc) => cbc.integ.icv_len(),
            Mode::Null { integ } => integ.icv_len(),
        }
    }

    /// Seals an ESP packet in place.
    ///
    /// `pkt` is `SPI | SeqLow | IV | padded plaintext | ICV space`, with SPI and the low
    /// half of `seq` already written. The IV is `seq` for the AEADs (unique per SA
    /// because sequence numbers never repeat, RFC 4106 §3.1) and drawn from the SA's
    /// generator for CBC. Fails with `Layout` if the plaintext is not a positive
    /// multiple of [`Self::block_size`], if header bytes 4..8 are not the low half of
    /// `seq`, or if `seq` needs more than 32 bits without ESN.
    pub fn seal(&mut self, pkt: &mut [u8], seq: u64, esn: bool) -> Result<(), CryptoError> {
        let mut iv = [0u8; MAX_IV_LEN];
        let iv = &mut iv[..self.encr.iv_len()];
        match &mut self.mode {
            Mode::Aead(_) => iv.copy_from_slice(&seq.to_be_bytes()),
            Mode::Cbc(cbc) => cbc.rng.fill_bytes(iv),
            Mode::Null { .. } => {}
        }
        self.seal_with_iv(pkt, seq, esn, iv)
    }

    /// [`Self::seal`] with a caller-chosen IV, for known-answer tests against published
    /// ESP packets.
    ///
    /// Not for traffic: an IV repeated under an AEAD key destroys both confidentiality
    /// and integrity, and a predictable CBC IV breaks RFC 3602 §2.3.
    #[doc(hidden)]
    pub fn seal_with_iv(
        &self,
        pkt: &mut [u8],
        seq: u64,
        esn: bool,
        iv: &[u8],
    ) -> Result<(), CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::Layout("IV length does not match the cipher"));
        }
        let (iv_end, text_end) = self.regions(pkt.len(), true)?;
        let seq_hi = match (esn, u32::try_from(seq >> 32)) {
            (true, Ok(hi)) => Some(hi),
            (false, Ok(0)) => None,
            _ => {
                return Err(CryptoError::Layout(
                    "sequence number exceeds 32 bits without ESN",
                ));
            }
        };
        if pkt.get(4..HEADER_LEN) != Some(&seq.to_be_bytes()[4..]) {
            return Err(CryptoError::Layout(
                "header sequence number is not the low half of seq",
            ));
        }
        pkt[HEADER_LEN..iv_end].copy_from_slice(iv);
        match &self.mode {
            Mode::Aead(aead) => {
                let (head, rest) = pkt.split_at_mut(iv_end);
                let (header, iv) = header_and_aead_iv(head)?;
                let (text, tag) = rest.split_at_mut(text_end - iv_end);
                aead.seal(header, seq_hi, iv, text, tag)
            }
            Mode::Cbc(cbc) => {
                let (head, rest) = pkt.split_at_mut(iv_end);
                cbc.cipher
                    .encrypt(&head[HEADER_LEN..], &mut rest[..text_end - iv_end])?;
                write_icv(&cbc.integ, pkt, text_end, seq_hi);
                Ok(())
            }
            Mode::Null { integ } => {
                write_icv(integ, pkt, text_end, seq_hi);
                Ok(())
            }
        }
    }

    /// Verifies and decrypts an ESP packet in place.
    ///
    /// `seq_hi` is the inferred high half of the sequence number when the SA uses ESN.
    /// Nothing is decrypted before the ICV or tag has verified; on success the plaintext
    /// is at `pkt[8 + iv_len .. len - icv_len]`. On `Integrity` failure of an AEAD the
    /// ciphertext region has been zeroed; otherwise the packet is unchanged. CBC needs
    /// a positive multiple of the block size to decrypt; the others accept any payload
    /// of at least the 2 trailer bytes, leaving alignment to the trailer parser.
    pub fn open(&self, pkt: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let (iv_end, text_end) = self.regions(pkt.len(), false)?;
        match &self.mode {
            Mode::Aead(aead) => {
                let (head, text_and_tag) = pkt.split_at_mut(iv_end);
                let (header, iv) = header_and_aead_iv(head)?;
                aead.open(header, seq_hi, iv, text_and_tag)
            }
            Mode::Cbc(cbc) => {
                verify_icv(&cbc.integ, pkt, text_end, seq_hi)?;
                let (head, rest) = pkt.split_at_mut(iv_end);
                cbc.cipher
                    .decrypt(&head[HEADER_LEN..], &mut rest[..text_end - iv_end])
            }
            Mode::Null { integ } => verify_icv(integ, pkt, text_end, seq_hi),
        }
    }

    /// Splits a packet of `len` bytes into `(iv_end, text_end)`: the IV is at
    /// `HEADER_LEN..iv_end`, the (cipher)text at `iv_end..text_end`, the ICV after it.
    fn regions(&self, len: usize, sealing: bool) -> Result<(usize, usize), CryptoError> {
        let iv_end = HEADER_LEN + self.iv_len();
        let text_end = len
            .checked_sub(self.icv_len())
            .filter(|&end| end >= iv_end)
            .ok_or(TOO_SHORT)?;
        let text_len = text_end - iv_end;
        if text_len < TRAILER_LEN {
            return Err(CryptoError::Layout("payload shorter than the ESP trailer"));
        }
        let must_align = sealing || matches!(self.mode, Mode::Cbc(_));
        if must_align && !text_len.is_multiple_of(self.block_size()) {
            return Err(CryptoError::Layout(
                "payload is not a multiple of the block size",
            ));
        }
        Ok((iv_end, text_end))
    }
}

/// Seeds a per-SA CBC IV generator from the OS.
fn iv_generator() -> Result<ChaCha20Rng, CryptoError> {
    ChaCha20Rng::from_rng(OsRng).map_err(|_| CryptoError::RandomSource)
}

/// The 8-byte header and the 8-byte AEAD IV at the front of `head`.
fn header_and_aead_iv(
    head: &[u8],
) -> Result<(&[u8; HEADER_LEN], &[u8; aead::IV_LEN]), CryptoError> {
    let (header, rest) = head.split_first_chunk().ok_or(TOO_SHORT)?;
    let iv = rest.first_chunk().ok_or(TOO_SHORT)?;
    Ok((header, iv))
}

/// Writes the ICV of `pkt[..text_end]`, followed by the high sequence half when ESN is in
/// use (RFC 4303 §2.2.1: counted in the ICV, never sent), into `pkt[text_end..]`.
fn write_icv(integ: &Integ, pkt: &mut [u8], text_end: usize, seq_hi: Option<u32>) {
    let (authenticated, icv) = pkt.split_at_mut(text_end);
    match seq_hi {
        Some(hi) => integ.compute(&[authenticated, &hi.to_be_bytes()], icv),
        None => integ.compute(&[authenticated], icv),
    }
}

/// Checks the ICV at `pkt[text_end..]` as [`write_icv`] computes it, in constant time.
fn verify_icv(
    integ: &Integ,
    pkt: &[u8],
    text_end: usize,
    seq_hi: Option<u32>,
) -> Result<(), CryptoError> {
    let (authenticated, icv) = pkt.split_at(text_end);
    let ok = match seq_hi {
        Some(hi) => integ.verify(&[authenticated, &hi.to_be_bytes()], icv),
        None => integ.verify(&[authenticated], icv),
    };
    if ok {
        Ok(())
    } else {
        Err(CryptoError::Integrity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seal` sizes its IV scratch and the AEAD IV from these constants; they must agree
    /// with the algorithm table, or `seal` would index out of bounds.
    #[test]
    fn iv_constants_agree_with_the_algorithm_table() {
        for encr in [
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
            assert!(encr.iv_len() <= MAX_IV_LEN, "{encr:?}");
            if encr.is_aead() {
                assert_eq!(encr.iv_len(), aead::IV_LEN, "{encr:?}");
                assert_eq!(encr.iv_len(), std::mem::size_of::<u64>(), "{encr:?}");
            }
        }
    }
}
