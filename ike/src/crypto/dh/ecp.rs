//! NIST prime curves (groups 19, 20, 21; RFC 5903) through RustCrypto, which, unlike
//! ring, accepts fixed private scalars, so the RFC's vectors can be checked.

use p256::elliptic_curve::generic_array::typenum::Unsigned;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{Curve, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey, ecdh};
use rand_core::CryptoRngCore;

use crate::crypto::error::CryptoError;
use crate::crypto::secret::SecretBytes;

const UNCOMPRESSED: u8 = 0x04;
const MAX_TRIES: usize = 64;

/// A private scalar on curve `C`; `SecretKey` zeroizes itself on drop.
pub(crate) struct EcpSecret<C: CurveArithmetic> {
    key: SecretKey<C>,
    group: u16,
}

impl<C> EcpSecret<C>
where
    C: CurveArithmetic,
    C::AffinePoint: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    /// Draws field-sized random strings until one is a valid scalar (0 < d < n);
    /// `top_mask` clears the bits above the order's length (P-521 keeps only the lowest
    /// bit of its first octet), so almost every draw succeeds.
    pub(crate) fn generate(
        group: u16,
        top_mask: u8,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Self, CryptoError> {
        let len = coord_len::<C>();
        let mut buf = vec![0u8; len];
        for _ in 0..MAX_TRIES {
            rng.fill_bytes(&mut buf);
            if let Some(first) = buf.first_mut() {
                *first &= top_mask;
            }
            if let Ok(s) = Self::from_bytes(group, &buf) {
                zeroize::Zeroize::zeroize(&mut buf);
                return Ok(s);
            }
        }
        Err(CryptoError::Rng)
    }

    /// A fixed big-endian scalar of exactly the field size, for known-answer tests.
    pub(crate) fn from_bytes(group: u16, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != coord_len::<C>() {
            return Err(CryptoError::BadKeyLength("ECP private scalar"));
        }
        let key = SecretKey::<C>::from_slice(bytes)
            .map_err(|_| CryptoError::BadKeyLength("ECP private scalar"))?;
        Ok(EcpSecret { key, group })
    }

    /// The big-endian scalar, at the field size ([`Self::from_bytes`] takes it back).
    pub(crate) fn private_bytes(&self) -> SecretBytes {
        let mut bytes = self.key.to_bytes();
        let out = SecretBytes::from_slice(&bytes);
        zeroize::Zeroize::zeroize(bytes.as_mut_slice());
        out
    }

    /// x | y, each coordinate at the field length (RFC 5903 §7).
    pub(crate) fn public_value(&self) -> Vec<u8> {
        let point = self.key.public_key().to_encoded_point(false);
        point.as_bytes().get(1..).unwrap_or_default().to_vec()
    }

    /// The x coordinate of d·Q (RFC 5903 §7); `PublicKey::from_sec1_bytes` rejects
    /// points off the curve and the identity.
    pub(crate) fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        if peer.len() != 2 * coord_len::<C>() {
            return Err(CryptoError::InvalidPublicValue(self.group));
        }
        let mut sec1 = Vec::with_capacity(peer.len() + 1);
        sec1.push(UNCOMPRESSED);
        sec1.extend_from_slice(peer);
        let public = PublicKey::<C>::from_sec1_bytes(&sec1)
            .map_err(|_| CryptoError::InvalidPublicValue(self.group))?;
        let shared = ecdh::diffie_hellman(self.key.to_nonzero_scalar(), public.as_affine());
        Ok(SecretBytes::from_slice(shared.raw_secret_bytes()))
    }
}

pub(crate) fn coord_len<C: Curve>() -> usize {
    C::FieldBytesSize::to_usize()
}
