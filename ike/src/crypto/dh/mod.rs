//! Diffie-Hellman groups (IANA Transform Type 4): key generation, public values as the
//! KE payload carries them, peer validation and the shared secret g^ir.

mod curve25519;
mod ecp;
mod modp;
mod params;
mod ring_dh;

#[cfg(test)]
mod tests;

use rand_core::CryptoRngCore;

use self::curve25519::X25519Secret;
use self::ecp::EcpSecret;
use self::modp::{ModpGroup, ModpSecret};
use self::ring_dh::RingSecret;
use super::error::CryptoError;
use super::secret::SecretBytes;

/// A negotiable Diffie-Hellman group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Modp768,
    Modp1024,
    Modp1536,
    Modp2048,
    Modp3072,
    Modp4096,
    Modp2048s256,
    Ecp256,
    Ecp384,
    Ecp521,
    Curve25519,
}

impl DhGroup {
    pub fn from_iana(id: u16) -> Result<Self, CryptoError> {
        Ok(match id {
            1 => DhGroup::Modp768,
            2 => DhGroup::Modp1024,
            5 => DhGroup::Modp1536,
            14 => DhGroup::Modp2048,
            15 => DhGroup::Modp3072,
            16 => DhGroup::Modp4096,
            24 => DhGroup::Modp2048s256,
            19 => DhGroup::Ecp256,
            20 => DhGroup::Ecp384,
            21 => DhGroup::Ecp521,
            31 => DhGroup::Curve25519,
            _ => {
                return Err(CryptoError::Unsupported {
                    kind: "DH group",
                    id,
                    key_bits: None,
                });
            }
        })
    }

    pub fn iana_id(self) -> u16 {
        match self.kind() {
            Kind::Modp(m) => m.iana_id(),
            Kind::P256 => 19,
            Kind::P384 => 20,
            Kind::P521 => 21,
            Kind::X25519 => curve25519::GROUP,
        }
    }

    /// Length of the KE payload data for this group.
    pub fn public_len(self) -> usize {
        match self.kind() {
            Kind::Modp(m) => m.len(),
            Kind::P256 => 64,
            Kind::P384 => 96,
            Kind::P521 => 132,
            Kind::X25519 => curve25519::LEN,
        }
    }

    fn kind(self) -> Kind {
        match self {
            DhGroup::Modp768 => Kind::Modp(ModpGroup::G1),
            DhGroup::Modp1024 => Kind::Modp(ModpGroup::G2),
            DhGroup::Modp1536 => Kind::Modp(ModpGroup::G5),
            DhGroup::Modp2048 => Kind::Modp(ModpGroup::G14),
            DhGroup::Modp3072 => Kind::Modp(ModpGroup::G15),
            DhGroup::Modp4096 => Kind::Modp(ModpGroup::G16),
            DhGroup::Modp2048s256 => Kind::Modp(ModpGroup::G24),
            DhGroup::Ecp256 => Kind::P256,
            DhGroup::Ecp384 => Kind::P384,
            DhGroup::Ecp521 => Kind::P521,
            DhGroup::Curve25519 => Kind::X25519,
        }
    }
}

/// Which implementation serves a group.
#[derive(Clone, Copy)]
enum Kind {
    Modp(ModpGroup),
    P256,
    P384,
    P521,
    X25519,
}

enum Private {
    Modp(ModpSecret),
    P256(EcpSecret<p256::NistP256>),
    P384(EcpSecret<p384::NistP384>),
    P521(EcpSecret<p521::NistP521>),
    X25519(X25519Secret),
    /// P-256, P-384 or X25519 of IKE_SA_INIT (`generate_ephemeral`).
    Ring(RingSecret),
}

/// Our side of one exchange: the private value and its public value.
///
/// `Debug` shows the group only; the private value zeroizes on drop.
pub struct DhSecret {
    group: DhGroup,
    private: Private,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhSecret")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DhSecret {
    pub fn generate(group: DhGroup, rng: &mut dyn CryptoRngCore) -> Result<Self, CryptoError> {
        let id = group.iana_id();
        let private = match group.kind() {
            Kind::Modp(m) => Private::Modp(ModpSecret::generate(m, rng)?),
            Kind::P256 => Private::P256(EcpSecret::generate(id, 0xff, rng)?),
            Kind::P384 => Private::P384(EcpSecret::generate(id, 0xff, rng)?),
            Kind::P521 => Private::P521(EcpSecret::generate(id, 0x01, rng)?),
            Kind::X25519 => Private::X25519(X25519Secret::generate(rng)),
        };
        Ok(Self::with_private(group, private))
    }

    /// A private value for IKE_SA_INIT: used for one agreement, never exported. P-256,
    /// P-384 and X25519 come from ring (faster, see `ring_dh`), drawn from the OS RNG,
    /// not `rng`; the other groups are [`Self::generate`]'s.
    /// [`Self::private_bytes`] of a ring value is refused by [`Self::from_private_bytes`]
    /// (it is empty), which is fine because only an established SA is snapshotted.
    pub fn generate_ephemeral(
        group: DhGroup,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Self, CryptoError> {
        let (alg, sec1) = match group.kind() {
            Kind::P256 => (&ring::agreement::ECDH_P256, true),
            Kind::P384 => (&ring::agreement::ECDH_P384, true),
            Kind::X25519 => (&ring::agreement::X25519, false),
            Kind::Modp(_) | Kind::P521 => return Self::generate(group, rng),
        };
        let (secret, public) = RingSecret::generate(group.iana_id(), alg, sec1)?;
        Ok(DhSecret {
            group,
            private: Private::Ring(secret),
            public,
        })
    }

    /// Uses a fixed private value (big-endian scalar or exponent; X25519 as RFC 7748
    /// bytes), for known-answer tests and for replaying a stored exchange.
    pub fn from_private_bytes(group: DhGroup, bytes: &[u8]) -> Result<Self, CryptoError> {
        let id = group.iana_id();
        let private = match group.kind() {
            Kind::Modp(m) => Private::Modp(ModpSecret::from_be_bytes(m, bytes)?),
            Kind::P256 => Private::P256(EcpSecret::from_bytes(id, bytes)?),
            Kind::P384 => Private::P384(EcpSecret::from_bytes(id, bytes)?),
            Kind::P521 => Private::P521(EcpSecret::from_bytes(id, bytes)?),
            Kind::X25519 => Private::X25519(X25519Secret::from_bytes(bytes)?),
        };
        Ok(Self::with_private(group, private))
    }

    fn with_private(group: DhGroup, private: Private) -> Self {
        let public = match &private {
            Private::Modp(s) => s.public_value(),
            Private::P256(s) => s.public_value(),
            Private::P384(s) => s.public_value(),
            Private::P521(s) => s.public_value(),
            Private::X25519(s) => s.public_value(),
            Private::Ring(_) => Vec::new(),
        };
        DhSecret {
            group,
            private,
            public,
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The private value in the form [`Self::from_private_bytes`] takes back: an IKE SA
    /// snapshot carries it so that another process can finish an exchange in flight.
    /// Empty for a [`Self::generate_ephemeral`] value of ring, which cannot export it.
    pub fn private_bytes(&self) -> SecretBytes {
        match &self.private {
            Private::Modp(s) => s.private_bytes(),
            Private::P256(s) => s.private_bytes(),
            Private::P384(s) => s.private_bytes(),
            Private::P521(s) => s.private_bytes(),
            Private::X25519(s) => s.private_bytes(),
            Private::Ring(_) => SecretBytes::new(Vec::new()),
        }
    }

    /// The KE payload data.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// g^ir from the peer's KE data, after validating it for the group.
    pub fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        match &self.private {
            Private::Modp(s) => s.agree(peer),
            Private::P256(s) => s.agree(peer),
            Private::P384(s) => s.agree(peer),
            Private::P521(s) => s.agree(peer),
            Private::X25519(s) => s.agree(peer),
            Private::Ring(s) => s.agree(peer),
        }
    }
}
