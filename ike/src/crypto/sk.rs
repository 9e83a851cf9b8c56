//! Protection of the Encrypted payload (RFC 7296 §3.14) and of Encrypted Fragments
//! (RFC 7383 §2.5): whole messages in, whole messages out.

use rand_core::CryptoRngCore;
use ring::aead::Aad;

use super::encr::{Encr, aead_nonce};
use super::error::CryptoError;
use super::integ::Integ;
use super::secret::SecretBytes;
use crate::wire::header::{HEADER_LEN, Header};
use crate::wire::message::{EncryptedSpan, locate_encrypted};
use crate::wire::payload::{GENERIC_HEADER_LEN, Payload, PayloadType, parse_chain, write_chain};
use crate::wire::sk::SKF_FIXED_LEN;

/// One direction's SK keys (SK_ei/SK_ai to send as initiator, SK_er/SK_ar to receive).
///
/// IVs come from the injected RNG rather than a counter: a random 64-bit AEAD IV never
/// repeats in practice over the few messages an IKE SA carries, and unlike a counter it
/// needs no replication when a cluster node takes the SA over.
#[derive(Clone)]
pub struct SkCipher {
    encr: Encr,
    integ: Option<Integ>,
    encr_key: SecretBytes,
    integ_key: SecretBytes,
}

impl std::fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

/// A decrypted message: its header and the still-serialized inner payload chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub header: Header,
    pub first_inner: PayloadType,
    /// `Some((number, total))` for an SKF fragment; the caller reassembles fragments
    /// and parses the joined plaintext with [`parse_chain`].
    pub fragment: Option<(u16, u16)>,
    pub plaintext: Vec<u8>,
}

enum Kind {
    Sk,
    Skf { number: u16, total: u16 },
}

impl SkCipher {
    /// `integ` must be `None` exactly when `encr` is an AEAD (RFC 5282 §8: no separate
    /// integrity transform with combined-mode ciphers).
    pub fn new(
        encr: Encr,
        integ: Option<Integ>,
        encr_key: SecretBytes,
        integ_key: SecretBytes,
    ) -> Result<Self, CryptoError> {
        if encr.is_aead() != integ.is_none() {
            return Err(CryptoError::Unsupported {
                kind: "encryption/integrity pairing",
                id: encr.iana_id(),
                key_bits: encr.key_bits(),
            });
        }
        if encr_key.len() != encr.key_material_len()
            || integ_key.len() != integ.map_or(0, Integ::key_len)
        {
            return Err(CryptoError::BadKeyLength("SK keys"));
        }
        Ok(SkCipher {
            encr,
            integ,
            encr_key,
            integ_key,
        })
    }

    pub fn encr(&self) -> Encr {
        self.encr
    }

    pub fn integ(&self) -> Option<Integ> {
        self.integ
    }

    fn icv_len(&self) -> usize {
        self.encr
            .aead_tag_len()
            .unwrap_or_else(|| self.integ.map_or(0, Integ::icv_len))
    }

    /// Bytes the Encrypted payload adds around `plaintext_len` bytes of inner payloads,
    /// generic header included: what fragmentation has to budget for.
    pub fn overhead(&self, plaintext_len: usize) -> usize {
        let block = self.encr.block_len();
        let padded = (plaintext_len + 1).div_ceil(block) * block;
        GENERIC_HEADER_LEN + self.encr.iv_len() + padded - plaintext_len + self.icv_len()
    }

    /// Serializes `payloads` inside an SK payload and appends the whole protected
    /// message to `out`.
    pub fn seal_payloads(
        &self,
        header: &Header,
        payloads: &[Payload],
        rng: &mut dyn CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let mut inner = Vec::new();
        let first = write_chain(payloads, &mut inner)?;
        self.seal(header, Kind::Sk, first, &inner, rng, out)
    }

    /// Appends a message whose only payload is an SK payload around `inner`, a
    /// serialized chain starting with a payload of type `first_inner`.
    pub fn seal_message(
        &self,
        header: &Header,
        first_inner: PayloadType,
        inner: &[u8],
        rng: &mut dyn CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.seal(header, Kind::Sk, first_inner, inner, rng, out)
    }

    /// Appends one SKF fragment message (RFC 7383 §2.5) for fragment `number` of
    /// `total`; `first_inner` is only sent in fragment 1.
    pub fn seal_fragment(
        &self,
        header: &Header,
        first_inner: PayloadType,
        (number, total): (u16, u16),
        chunk: &[u8],
        rng: &mut dyn CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if number == 0 || number > total {
            return Err(CryptoError::Encode(crate::wire::EncodeError::InvalidValue(
                "SKF fragment number outside 1..=total",
            )));
        }
        let first = if number == 1 {
            first_inner
        } else {
            PayloadType::None
        };
        self.seal(header, Kind::Skf { number, total }, first, chunk, rng, out)
    }

    fn seal(
        &self,
        header: &Header,
        kind: Kind,
        first_inner: PayloadType,
        inner: &[u8],
        rng: &mut dyn CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let start = out.len();
        let block = self.encr.block_len();
        let pad_len = (block - (inner.len() + 1) % block) % block;
        let body_len = inner.len() + pad_len + 1;
        let (ty, fixed) = match kind {
            Kind::Sk => (PayloadType::Sk, 0),
            Kind::Skf { .. } => (PayloadType::Skf, SKF_FIXED_LEN),
        };
        let payload_len =
            GENERIC_HEADER_LEN + fixed + self.encr.iv_len() + body_len + self.icv_len();
        let payload_len = u16::try_from(payload_len)
            .map_err(|_| crate::wire::EncodeError::TooLong { what: "SK payload" })?;

        header.write(ty, HEADER_LEN + usize::from(payload_len), out)?;
        out.push(first_inner.into());
        out.push(0);
        out.extend_from_slice(&payload_len.to_be_bytes());
        if let Kind::Skf { number, total } = kind {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&total.to_be_bytes());
        }
        let iv_at = out.len();
        out.resize(iv_at + self.encr.iv_len(), 0);
        let iv = out.get_mut(iv_at..).unwrap_or_default();
        rng.fill_bytes(iv);
        let iv = iv.to_vec();

        let mut body = Vec::with_capacity(body_len + self.icv_len());
        body.extend_from_slice(inner);
        body.resize(inner.len() + pad_len, 0);
        body.push(u8::try_from(pad_len).map_err(|_| CryptoError::BadEncryptedPayload("pad"))?);

        if self.encr.is_aead() {
            let (key, salt) = self.encr.aead_key(self.encr_key.as_bytes())?;
            let aad = out.get(start..iv_at).unwrap_or_default();
            let tag = key
                .seal_in_place_separate_tag(aead_nonce(&salt, &iv)?, Aad::from(aad), &mut body)
                .map_err(|_| CryptoError::BadEncryptedPayload("AEAD seal"))?;
            out.extend_from_slice(&body);
            out.extend_from_slice(tag.as_ref());
        } else {
            self.encr
                .cbc_encrypt(self.encr_key.as_bytes(), &iv, &mut body)?;
            out.extend_from_slice(&body);
            if let Some(integ) = self.integ {
                let signed = out.get(start..).unwrap_or_default();
                let icv = integ.compute(self.integ_key.as_bytes(), &[signed])?;
                out.extend_from_slice(&icv);
            }
        }
        Ok(())
    }

    /// Verifies and decrypts a message carrying SK or SKF. Any failure means the message
    /// is dropped without reply (RFC 7296 §2.21.2).
    pub fn open(&self, msg: &[u8]) -> Result<Opened, CryptoError> {
        let header = Header::parse(msg)?.header;
        let EncryptedSpan {
            first_inner,
            fragment,
            iv_offset,
        } = locate_encrypted(msg)?;
        let icv_len = self.icv_len();
        let iv_len = self.encr.iv_len();
        let body_end = msg
            .len()
            .checked_sub(icv_len)
            .filter(|end| *end > iv_offset + iv_len)
            .ok_or(CryptoError::BadEncryptedPayload("too short"))?;
        let iv = msg.get(iv_offset..iv_offset + iv_len).unwrap_or_default();
        let ciphertext = msg.get(iv_offset + iv_len..body_end).unwrap_or_default();
        let icv = msg.get(body_end..).unwrap_or_default();

        let mut plain = ciphertext.to_vec();
        if self.encr.is_aead() {
            let (key, salt) = self.encr.aead_key(self.encr_key.as_bytes())?;
            let aad = msg.get(..iv_offset).unwrap_or_default();
            plain.extend_from_slice(icv);
            let len = key
                .open_in_place(aead_nonce(&salt, iv)?, Aad::from(aad), &mut plain)
                .map_err(|_| CryptoError::IntegrityCheckFailed)?
                .len();
            plain.truncate(len);
        } else {
            if let Some(integ) = self.integ {
                let signed = msg.get(..body_end).unwrap_or_default();
                integ.verify(self.integ_key.as_bytes(), &[signed], icv)?;
            }
            if plain.len() % self.encr.block_len() != 0 {
                return Err(CryptoError::BadEncryptedPayload("not block aligned"));
            }
            self.encr
                .cbc_decrypt(self.encr_key.as_bytes(), iv, &mut plain)?;
        }
        let pad_len = usize::from(
            *plain
                .last()
                .ok_or(CryptoError::BadEncryptedPayload("empty"))?,
        );
        let keep = plain
            .len()
            .checked_sub(pad_len + 1)
            .ok_or(CryptoError::BadEncryptedPayload(
                "pad length beyond plaintext",
            ))?;
        plain.truncate(keep);
        Ok(Opened {
            header,
            first_inner,
            fragment,
            plaintext: plain,
        })
    }

    /// Opens an unfragmented message and parses its inner payloads.
    pub fn open_payloads(&self, msg: &[u8]) -> Result<(Header, Vec<Payload>), CryptoError> {
        let opened = self.open(msg)?;
        if opened.fragment.is_some() {
            return Err(CryptoError::BadEncryptedPayload(
                "fragment needs reassembly",
            ));
        }
        let payloads = parse_chain(opened.first_inner, &opened.plaintext, false)?;
        Ok((opened.header, payloads))
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::{CryptoRng, RngCore, SeedableRng};

    use super::*;
    use crate::wire::{ExchangeType, Flags, Identity, NoncePayload};

    /// Returns a0 a1 a2 ... so the IV of a sealed message is known in advance.
    struct CountingRng(u8);

    impl RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.0;
                self.0 = self.0.wrapping_add(1);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for CountingRng {}

    fn header() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            minor_version: 0,
            exchange: ExchangeType::IkeAuth,
            flags: Flags(Flags::INITIATOR),
            message_id: 1,
        }
    }

    fn cipher(encr: Encr, integ: Option<Integ>) -> SkCipher {
        let ekey: Vec<u8> = (0x10..).take(encr.key_material_len()).collect();
        let akey: Vec<u8> = (0x40..).take(integ.map_or(0, Integ::key_len)).collect();
        SkCipher::new(encr, integ, SecretBytes::new(ekey), SecretBytes::new(akey)).unwrap()
    }

    fn suites() -> Vec<(Encr, Option<Integ>, &'static str)> {
        vec![
            (Encr::AesCbc128, Some(Integ::HmacSha256_128), AES128_SHA256),
            (Encr::AesCbc192, Some(Integ::HmacSha384_192), AES192_SHA384),
            (Encr::AesCbc256, Some(Integ::HmacSha512_256), AES256_SHA512),
            (Encr::TripleDesCbc, Some(Integ::HmacSha1_96), TDES_SHA1),
            (Encr::DesCbc, Some(Integ::HmacMd5_96), DES_MD5),
            (Encr::AesGcm16_128, None, GCM128),
            (Encr::AesGcm16_256, None, GCM256),
            (Encr::ChaCha20Poly1305, None, CHACHA),
        ]
    }

    fn inner() -> Vec<Payload> {
        vec![Payload::IdI(Identity::Fqdn("a.test".into()))]
    }

    /// Each suite seals IKE_AUTH [IDi(FQDN a.test)] with keys 10 11 12.. / 40 41 42..
    /// and IV a0 a1..; the expected messages were built independently with Python's
    /// `cryptography` and `hmac` modules from RFC 7296 §3.14 (CBC + ICV over the whole
    /// message), RFC 5282 §3-§5 (GCM: nonce = salt | IV, AAD = IKE header + SK
    /// generic header) and RFC 7634 §2-§4 (ChaCha20-Poly1305, same layout).
    #[test]
    fn seal_matches_independent_construction_and_opens() {
        for (encr, integ, expected) in suites() {
            let c = cipher(encr, integ);
            let mut out = Vec::new();
            c.seal_payloads(&header(), &inner(), &mut CountingRng(0xa0), &mut out)
                .unwrap();
            let expected = hex::decode(expected).unwrap();
            assert_eq!(hex::encode(&out), hex::encode(&expected), "{encr:?}");
            let (h, payloads) = c.open_payloads(&expected).unwrap();
            assert_eq!(h, header());
            assert_eq!(payloads, inner());
        }
    }

    #[test]
    fn tampering_is_detected_everywhere() {
        for (encr, integ, expected) in suites() {
            let c = cipher(encr, integ);
            let msg = hex::decode(expected).unwrap();
            // Flip each byte after the length fields (lengths fail parsing instead).
            for i in 0..msg.len() {
                if (24..28).contains(&i) || (30..32).contains(&i) {
                    continue;
                }
                let mut bad = msg.clone();
                bad[i] ^= 0x01;
                assert!(c.open(&bad).is_err(), "{encr:?} byte {i}");
            }
            assert!(c.open(&msg[..msg.len() - 1]).is_err());
        }
    }

    #[test]
    fn wrong_key_fails_integrity() {
        let c = cipher(Encr::AesGcm16_128, None);
        let other = SkCipher::new(
            Encr::AesGcm16_128,
            None,
            SecretBytes::new(vec![0; 20]),
            SecretBytes::new(vec![]),
        )
        .unwrap();
        let mut out = Vec::new();
        c.seal_payloads(&header(), &inner(), &mut CountingRng(0), &mut out)
            .unwrap();
        assert_eq!(other.open(&out), Err(CryptoError::IntegrityCheckFailed));
    }

    #[test]
    fn fragments_and_overhead() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for (encr, integ, _) in suites() {
            let c = cipher(encr, integ);
            let chain = vec![
                Payload::IdI(Identity::Fqdn("a.test".into())),
                Payload::Nonce(NoncePayload { data: vec![7; 100] }),
            ];
            let mut plain = Vec::new();
            let first = write_chain(&chain, &mut plain).unwrap();
            let mut joined = Vec::new();
            let chunks: Vec<&[u8]> = plain.chunks(50).collect();
            let total = u16::try_from(chunks.len()).unwrap();
            for (i, chunk) in chunks.iter().enumerate() {
                let number = u16::try_from(i + 1).unwrap();
                let mut out = Vec::new();
                c.seal_fragment(&header(), first, (number, total), chunk, &mut rng, &mut out)
                    .unwrap();
                assert_eq!(
                    out.len(),
                    HEADER_LEN + SKF_FIXED_LEN + chunk.len() + c.overhead(chunk.len())
                );
                let opened = c.open(&out).unwrap();
                assert_eq!(opened.fragment, Some((number, total)));
                let expected_first = if number == 1 {
                    first
                } else {
                    PayloadType::None
                };
                assert_eq!(opened.first_inner, expected_first);
                joined.extend_from_slice(&opened.plaintext);
                assert!(c.open_payloads(&out).is_err());
            }
            assert_eq!(parse_chain(first, &joined, false).unwrap(), chain);
            let mut out = Vec::new();
            assert!(
                c.seal_fragment(&header(), first, (3, 2), &plain, &mut rng, &mut out)
                    .is_err()
            );
        }
    }

    #[test]
    fn constructor_checks_pairing_and_key_sizes() {
        let k = |n| SecretBytes::new(vec![0; n]);
        assert!(
            SkCipher::new(
                Encr::AesGcm16_128,
                Some(Integ::HmacSha256_128),
                k(20),
                k(32)
            )
            .is_err()
        );
        assert!(SkCipher::new(Encr::AesCbc128, None, k(16), k(0)).is_err());
        assert!(SkCipher::new(Encr::AesCbc128, Some(Integ::HmacSha256_128), k(15), k(32)).is_err());
        assert!(SkCipher::new(Encr::AesGcm16_128, None, k(16), k(0)).is_err());
        let c = cipher(Encr::AesCbc128, Some(Integ::HmacSha256_128));
        assert_eq!(
            format!("{c:?}"),
            "SkCipher { encr: AesCbc128, integ: Some(HmacSha256_128), .. }"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let c = cipher(Encr::AesCbc128, Some(Integ::HmacSha256_128));
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for len in 0..200 {
            let mut buf = vec![0u8; len];
            rng.fill_bytes(&mut buf);
            assert!(c.open(&buf).is_err());
        }
    }

    const AES128_SHA256: &str = concat!(
        "010203040506070811121314151617182e202308000000010000005023000034",
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf698fce074ecc155c6a701be84345d1de",
        "3ffa1ef96c89af4327aebd0e55e7e232",
    );
    const AES192_SHA384: &str = concat!(
        "010203040506070811121314151617182e20230800000001000000582300003c",
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf4ab364c9969fc6a7306da0b7eb85050e",
        "c83ef968fae72fae31d48bd4e34e8434e29b939f92a680f5",
    );
    const AES256_SHA512: &str = concat!(
        "010203040506070811121314151617182e202308000000010000006023000044",
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafa0ebe21371d118e9b824c7e125eb2ebf",
        "0044daf21fd5a6d075e8873d4db308634702392052e3d096166ab1c5584c4863",
    );
    const TDES_SHA1: &str = concat!(
        "010203040506070811121314151617182e202308000000010000004423000028",
        "a0a1a2a3a4a5a6a75c30ebe1618cf5365cbc76b1e6d3766eb10bc9736a72b36c",
        "bebd7c46",
    );
    const DES_MD5: &str = concat!(
        "010203040506070811121314151617182e202308000000010000004423000028",
        "a0a1a2a3a4a5a6a79b36c0fffbe756423a7777cfaebe8eaa06cbdf750ce9ad1a",
        "6053f431",
    );
    const GCM128: &str = concat!(
        "010203040506070811121314151617182e20230800000001000000472300002b",
        "a0a1a2a3a4a5a6a71a26cb06b9fb88f12093ab1b5e29d3b9cd985df683a89aaa",
        "44a298f6b1c787",
    );
    const GCM256: &str = concat!(
        "010203040506070811121314151617182e20230800000001000000472300002b",
        "a0a1a2a3a4a5a6a7c7d18b641158d39471630b6b7a14060f49ff30d68ea26c8f",
        "506e773d34b379",
    );
    const CHACHA: &str = concat!(
        "010203040506070811121314151617182e20230800000001000000472300002b",
        "a0a1a2a3a4a5a6a71a1eb14bc771f74c3c30c50db47e3f27ca147a01b75f5d0d",
        "d54dcaa39923bb",
    );
}
