//! Key derivation: SKEYSEED and SK_* (RFC 7296 §2.14), child SA KEYMAT (§2.17) and the
//! SKEYSEED of a rekeyed IKE SA (§2.18).

use super::error::CryptoError;
use super::prf::Prf;
use super::secret::SecretBytes;

/// Sizes of the keys carved out of prf+ for an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeKeyLengths {
    /// SK_ai / SK_ar; 0 with an AEAD cipher.
    pub integ: usize,
    /// SK_ei / SK_er, including the salt of AEAD ciphers (RFC 5282 §7.1, RFC 7634 §2).
    pub encr: usize,
}

/// The seven IKE SA keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSaKeys {
    pub sk_d: SecretBytes,
    pub sk_ai: SecretBytes,
    pub sk_ar: SecretBytes,
    pub sk_ei: SecretBytes,
    pub sk_er: SecretBytes,
    pub sk_pi: SecretBytes,
    pub sk_pr: SecretBytes,
}

/// SKEYSEED = prf(Ni | Nr, g^ir).
///
/// For HMAC PRFs the key is simply Ni | Nr. A PRF with a fixed key size takes the first
/// half of its key from Ni and the second half from Nr (RFC 7296 §2.14), which only
/// concerns AES-XCBC-PRF-128 here.
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> SecretBytes {
    let key = nonce_key(prf, ni, nr);
    prf.compute(key.as_bytes(), &[g_ir])
}

fn nonce_key(prf: Prf, ni: &[u8], nr: &[u8]) -> SecretBytes {
    match prf {
        Prf::AesXcbc128 => {
            let half = 8;
            let mut k = Vec::with_capacity(16);
            k.extend(ni.iter().take(half));
            k.extend(nr.iter().take(half));
            SecretBytes::new(k)
        }
        _ => SecretBytes::new([ni, nr].concat()),
    }
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
pub fn ike_sa_keys(
    prf: Prf,
    skeyseed: &SecretBytes,
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    lengths: IkeKeyLengths,
) -> Result<IkeSaKeys, CryptoError> {
    let p = prf.output_len();
    let total = 3 * p + 2 * lengths.integ + 2 * lengths.encr;
    let mut stream = prf.prf_plus(
        skeyseed.as_bytes(),
        &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
        total,
    )?;
    let mut take = |n| {
        stream
            .take_front(n)
            .ok_or(CryptoError::BadKeyLength("prf+ output"))
    };
    Ok(IkeSaKeys {
        sk_d: take(p)?,
        sk_ai: take(lengths.integ)?,
        sk_ar: take(lengths.integ)?,
        sk_ei: take(lengths.encr)?,
        sk_er: take(lengths.encr)?,
        sk_pi: take(p)?,
        sk_pr: take(p)?,
    })
}

/// SKEYSEED of an IKE SA created by rekeying: prf(SK_d (old), g^ir (new) | Ni | Nr).
///
/// `old_prf` is the PRF of the IKE SA being rekeyed, since the exchange belongs to it
/// (RFC 7296 §2.18); the new SA's keys then come from [`ike_sa_keys`] with the new PRF.
pub fn rekey_skeyseed(
    old_prf: Prf,
    old_sk_d: &SecretBytes,
    g_ir_new: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> SecretBytes {
    old_prf.compute(old_sk_d.as_bytes(), &[g_ir_new, ni, nr])
}

/// Sizes of one direction's child SA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildKeyLengths {
    /// Encryption key, including the salt for AEAD (RFC 4106 §8.1: key | 4-byte salt).
    pub encr: usize,
    pub integ: usize,
}

/// Keys of a child SA pair: `*_i` protect initiator-to-responder traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildKeys {
    pub encr_i: SecretBytes,
    pub integ_i: SecretBytes,
    pub encr_r: SecretBytes,
    pub integ_r: SecretBytes,
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), split as RFC 7296 §2.17 orders it:
/// initiator-to-responder encryption then integrity, then the same for the other way.
pub fn child_keys(
    prf: Prf,
    sk_d: &SecretBytes,
    g_ir_pfs: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    lengths: ChildKeyLengths,
) -> Result<ChildKeys, CryptoError> {
    let total = 2 * (lengths.encr + lengths.integ);
    let mut seed: Vec<&[u8]> = Vec::with_capacity(3);
    if let Some(g) = g_ir_pfs {
        seed.push(g);
    }
    seed.push(ni);
    seed.push(nr);
    let mut stream = prf.prf_plus(sk_d.as_bytes(), &seed, total)?;
    let mut take = |n| {
        stream
            .take_front(n)
            .ok_or(CryptoError::BadKeyLength("prf+ output"))
    };
    Ok(ChildKeys {
        encr_i: take(lengths.encr)?,
        integ_i: take(lengths.integ)?,
        encr_r: take(lengths.encr)?,
        integ_r: take(lengths.integ)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values were computed independently with Python's hmac/hashlib, following
    // RFC 7296 §2.13 (prf+), §2.14 (SKEYSEED, SK_*), §2.17 (KEYMAT) and §2.18 (rekey),
    // with Ni = 00..1f, Nr = 64..83, g^ir = 5a×32, SPIi = 0102..08, SPIr = 1112..18,
    // and g^ir (new) = 33×48.
    fn inputs() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            (0u8..32).collect(),
            (100u8..132).collect(),
            vec![0x5a; 32],
            vec![0x33; 48],
        )
    }

    const SPI_I: u64 = 0x0102_0304_0506_0708;
    const SPI_R: u64 = 0x1112_1314_1516_1718;

    struct Expected {
        skeyseed: &'static str,
        ike_keys: &'static str,
        child_no_pfs: &'static str,
        child_pfs: &'static str,
        rekey_skeyseed: &'static str,
    }

    fn check(prf: Prf, e: Expected) {
        let (ni, nr, g_ir, g_new) = inputs();
        let h = |s: &str| hex::decode(s).unwrap();
        let seed = skeyseed(prf, &ni, &nr, &g_ir);
        assert_eq!(seed.as_bytes(), h(e.skeyseed));

        // AES-GCM-16 with a 128-bit key: no integrity keys, 16 + 4 salt bytes.
        let lengths = IkeKeyLengths { integ: 0, encr: 20 };
        let keys = ike_sa_keys(prf, &seed, &ni, &nr, SPI_I, SPI_R, lengths).unwrap();
        let all = [
            keys.sk_d.as_bytes(),
            keys.sk_ai.as_bytes(),
            keys.sk_ar.as_bytes(),
            keys.sk_ei.as_bytes(),
            keys.sk_er.as_bytes(),
            keys.sk_pi.as_bytes(),
            keys.sk_pr.as_bytes(),
        ]
        .concat();
        assert_eq!(all, h(e.ike_keys));
        assert_eq!(keys.sk_ei.len(), 20);
        assert!(keys.sk_ai.is_empty());

        // AES-CBC-128 with HMAC-SHA2-256-128 for ESP.
        let child_len = ChildKeyLengths {
            encr: 16,
            integ: 32,
        };
        for (pfs, expected) in [(None, e.child_no_pfs), (Some(&g_new[..]), e.child_pfs)] {
            let c = child_keys(prf, &keys.sk_d, pfs, &ni, &nr, child_len).unwrap();
            let all = [
                c.encr_i.as_bytes(),
                c.integ_i.as_bytes(),
                c.encr_r.as_bytes(),
                c.integ_r.as_bytes(),
            ]
            .concat();
            assert_eq!(all, h(expected));
        }

        let rekeyed = rekey_skeyseed(prf, &keys.sk_d, &g_new, &ni, &nr);
        assert_eq!(rekeyed.as_bytes(), h(e.rekey_skeyseed));
    }

    #[test]
    fn hmac_sha256_derivations() {
        check(
            Prf::HmacSha256,
            Expected {
                skeyseed: "5366ff314cc046ac6b8831b447f058017cf835fd4b723cb0c8ae13b05c5fe525",
                ike_keys: "512635d78e52c311d7ca0b71c4b8a61a69948e0918900c7998b4a6318fbd3bcc8533e4fbbdcffa1e32119f7e4234b67a2b888915e715a22202e31ea484d9380944cb6c2b18c01083d62e246f9523ab8bb89339a68e1a8d8a74b1ac3ade8b89db194bde5e7d6df18502ee078bcc9d6cbb228360ecf287282fbf678da4f5f0f72fa6cbeb7f0d2c32ec",
                child_no_pfs: "0261c52703b9f146daebe8ac89521ec9055bd5bf8f0b4903a0c86a99da858af0f3edea393f8fcfa9b32878e6539dc9bfb3c4c3f756c272e453158562d6d18fc0cc3b2de480d7146e2787ff833f16ff29fee0c5ffc9eb5016f7887e2c304366e7",
                child_pfs: "8501db8ad85bb54238e335b0ffedd8a3aeef8d9f88ac651492a95e843ddb88a4a65c25737ecf2c2497eb2a9231b012a47245b731239523b4c1c5db570c3afe5d75467633365e4798dd4a9829dd86d5897803c769fb9e7f1c7b8fc4c5b46d0ed3",
                rekey_skeyseed: "4198ba0b5ad25508bcb8198efc3747583200c004bdb4fe90dbf2b14ba0970cc7",
            },
        );
    }

    #[test]
    fn hmac_sha1_derivations() {
        check(
            Prf::HmacSha1,
            Expected {
                skeyseed: "b0ac490e46f6b8229d6bd76d92461626f25919ea",
                ike_keys: "92e54b2b36478bf4314264aff1de99d7ccea9938cb42d459a867bf5ca4e1cbef199f4001a107a5cfe04171f8bc2fd69ef715031900edc82b99e2f08451c2b0846e228970ec877735f4a2f344a95eee544d828068df970436bb8688f81c44d0500e72c2ff",
                child_no_pfs: "782a367eeaa12334612b73c45dd858b15fef60140c2e90b7b4bc96119fac17247378a7b6bfc50b6b848ba585a3f82832be200c964a8cff922c48bf08e814bf331ff68c84b4976a78e13af3adc1d48952a9721d97b9e58d49757686742470652f",
                child_pfs: "7471bf6dc1e496707f30a51940757b222a4a2bbf98b1cd5b9b9409d1947fbe5382a16c95ff8588d4e028432083e6a5fc460b505ca708fcfff7bea8b4b4ef93e632ef31baa0f44596eaec139b17d70fe94d4d5be7578ad30bd3a9376ac88a1393",
                rekey_skeyseed: "8c2b0740b19bff156e4db4411d300d945225adb4",
            },
        );
    }

    #[test]
    fn xcbc_nonce_key_takes_halves() {
        let (ni, nr, g_ir, _) = inputs();
        let expected = Prf::AesXcbc128.compute(&[&ni[..8], &nr[..8]].concat(), &[&g_ir]);
        assert_eq!(skeyseed(Prf::AesXcbc128, &ni, &nr, &g_ir), expected);
    }
}
