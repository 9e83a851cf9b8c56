//! Finite-field Diffie-Hellman (MODP groups 1, 2, 5, 14, 15, 16 and 24) with
//! constant-time modular exponentiation from crypto-bigint.

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{U512, U768, U1024, U1536, U2048, U3072, U4096, Uint};
use rand_core::CryptoRngCore;
use zeroize::Zeroize;

use super::params::{G24, P1, P2, P5, P14, P15, P16, P24, Q24};
use crate::crypto::error::CryptoError;
use crate::crypto::secret::SecretBytes;

/// Private exponents are at most 512 bits: RFC 3526 §8 asks for about twice the
/// group's strength (e.g. 320 bits for 2048-bit groups), and short exponents keep
/// each exchange to a few milliseconds.
type Exponent = U512;

struct Params<const L: usize> {
    p: Uint<L>,
    g: Uint<L>,
    /// Order of the generator's subgroup when it is small (group 24): private values
    /// are drawn below it and peer values must lie in it (RFC 6989 §2.2).
    q: Option<Exponent>,
    exp_bits: usize,
}

const TWO: u8 = 2;

const MODP768: Params<{ U768::LIMBS }> = Params {
    p: Uint::from_be_hex(P1),
    g: Uint::from_u8(TWO),
    q: None,
    exp_bits: 256,
};
const MODP1024: Params<{ U1024::LIMBS }> = Params {
    p: Uint::from_be_hex(P2),
    g: Uint::from_u8(TWO),
    q: None,
    exp_bits: 256,
};
const MODP1536: Params<{ U1536::LIMBS }> = Params {
    p: Uint::from_be_hex(P5),
    g: Uint::from_u8(TWO),
    q: None,
    exp_bits: 256,
};
const MODP2048: Params<{ U2048::LIMBS }> = Params {
    p: Uint::from_be_hex(P14),
    g: Uint::from_u8(TWO),
    q: None,
    exp_bits: 320,
};
const MODP3072: Params<{ U3072::LIMBS }> = Params {
    p: Uint::from_be_hex(P15),
    g: Uint::from_u8(TWO),
    q: None,
    exp_bits: 384,
};
const MODP4096: Params<{ U4096::LIMBS }> = Params {
    p: Uint::from_be_hex(P16),
    g: Uint::from_u8(TWO),
    q: None,
    exp_bits: 480,
};
const MODP2048_256: Params<{ U2048::LIMBS }> = Params {
    p: Uint::from_be_hex(P24),
    g: Uint::from_be_hex(G24),
    q: Some(Uint::from_be_hex(Q24)),
    exp_bits: 256,
};

/// The MODP groups this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ModpGroup {
    G1,
    G2,
    G5,
    G14,
    G15,
    G16,
    G24,
}

/// Runs `$body` with `$prm` bound to the group's parameters, monomorphised per size.
macro_rules! with_params {
    ($group:expr, $prm:ident => $body:expr) => {
        match $group {
            ModpGroup::G1 => {
                let $prm = &MODP768;
                $body
            }
            ModpGroup::G2 => {
                let $prm = &MODP1024;
                $body
            }
            ModpGroup::G5 => {
                let $prm = &MODP1536;
                $body
            }
            ModpGroup::G14 => {
                let $prm = &MODP2048;
                $body
            }
            ModpGroup::G15 => {
                let $prm = &MODP3072;
                $body
            }
            ModpGroup::G16 => {
                let $prm = &MODP4096;
                $body
            }
            ModpGroup::G24 => {
                let $prm = &MODP2048_256;
                $body
            }
        }
    };
}

impl ModpGroup {
    pub(crate) fn iana_id(self) -> u16 {
        match self {
            ModpGroup::G1 => 1,
            ModpGroup::G2 => 2,
            ModpGroup::G5 => 5,
            ModpGroup::G14 => 14,
            ModpGroup::G15 => 15,
            ModpGroup::G16 => 16,
            ModpGroup::G24 => 24,
        }
    }

    /// Size of public values and of the shared secret: the modulus length.
    pub(crate) fn len(self) -> usize {
        with_params!(self, prm => prm.p.bits().div_ceil(8))
    }
}

/// A private exponent, wiped on drop.
pub(crate) struct ModpSecret {
    group: ModpGroup,
    x: Exponent,
    bits: usize,
}

impl Drop for ModpSecret {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

const MAX_TRIES: usize = 64;

impl ModpSecret {
    pub(crate) fn generate(
        group: ModpGroup,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Self, CryptoError> {
        let bits = with_params!(group, prm => prm.exp_bits);
        let mut buf = [0u8; Exponent::BYTES];
        let start = Exponent::BYTES - bits / 8;
        for _ in 0..MAX_TRIES {
            let random = buf.get_mut(start..).unwrap_or_default();
            rng.fill_bytes(random);
            let candidate = Self::from_be_bytes(group, random);
            buf.zeroize();
            if let Ok(secret) = candidate {
                return Ok(secret);
            }
        }
        Err(CryptoError::Rng)
    }

    /// A fixed private exponent (big-endian, at most 64 bytes), for known-answer tests.
    pub(crate) fn from_be_bytes(group: ModpGroup, bytes: &[u8]) -> Result<Self, CryptoError> {
        let start = Exponent::BYTES
            .checked_sub(bytes.len())
            .ok_or(CryptoError::BadKeyLength("MODP private exponent"))?;
        let mut buf = [0u8; Exponent::BYTES];
        buf.get_mut(start..)
            .ok_or(CryptoError::BadKeyLength("MODP private exponent"))?
            .copy_from_slice(bytes);
        let x = Exponent::from_be_slice(&buf);
        buf.zeroize();
        let (exp_bits, q) = with_params!(group, prm => (prm.exp_bits, prm.q));
        let in_range = x > Exponent::ONE && q.is_none_or(|q| x < q);
        if !in_range {
            return Err(CryptoError::BadKeyLength(
                "MODP private exponent out of range",
            ));
        }
        Ok(ModpSecret {
            group,
            x,
            bits: exp_bits.max(bytes.len() * 8),
        })
    }

    /// The exponent's low `bits` as big-endian bytes: [`Self::from_be_bytes`] of them
    /// gives back the same exponent and the same exponentiation length.
    pub(crate) fn private_bytes(&self) -> SecretBytes {
        let mut all = be_bytes(&self.x);
        let start = all.len().saturating_sub(self.bits.div_ceil(8));
        let out = SecretBytes::from_slice(all.get(start..).unwrap_or_default());
        all.zeroize();
        out
    }

    pub(crate) fn public_value(&self) -> Vec<u8> {
        with_params!(self.group, prm => {
            let params = DynResidueParams::new(&prm.p);
            let y = DynResidue::new(&prm.g, params).pow_bounded_exp(&self.x, self.bits);
            be_bytes(&y.retrieve())
        })
    }

    pub(crate) fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        let id = self.group.iana_id();
        with_params!(self.group, prm => {
            let y = validate_public(prm, peer).ok_or(CryptoError::InvalidPublicValue(id))?;
            let params = DynResidueParams::new(&prm.p);
            let mut s = DynResidue::new(&y, params)
                .pow_bounded_exp(&self.x, self.bits)
                .retrieve();
            let out = SecretBytes::new(be_bytes(&s));
            s.zeroize();
            Ok(out)
        })
    }
}

/// Checks a peer value: exactly the modulus length, 1 < y < p-1 (RFC 7296 §5 and
/// RFC 6989 §2.1), and membership of the q-order subgroup where q is small.
fn validate_public<const L: usize>(prm: &Params<L>, peer: &[u8]) -> Option<Uint<L>> {
    if peer.len() != L * crypto_bigint::Limb::BYTES || peer.len() != prm.p.bits().div_ceil(8) {
        return None;
    }
    let y = Uint::<L>::from_be_slice(peer);
    let p_minus_1 = prm.p.wrapping_sub(&Uint::ONE);
    if y <= Uint::ONE || y >= p_minus_1 {
        return None;
    }
    if let Some(q) = prm.q {
        let params = DynResidueParams::new(&prm.p);
        let check = DynResidue::new(&y, params)
            .pow_bounded_exp(&q, 256)
            .retrieve();
        if check != Uint::ONE {
            return None;
        }
    }
    Some(y)
}

fn be_bytes<const L: usize>(u: &Uint<L>) -> Vec<u8> {
    let mut out = Vec::with_capacity(L * crypto_bigint::Limb::BYTES);
    for w in u.as_words().iter().rev() {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out
}
