//! Groups 19, 20 and 31 through ring, for IKE_SA_INIT only.
//!
//! Why: the responder's IKE_SA_INIT spent about a quarter of its CPU in RustCrypto's
//! P-256 (bench/results/2026-11-27-compare.md); ring's assembly P-256 is about four
//! times faster, and its X25519 faster than x25519-dalek's (`cargo bench -p ike
//! --bench setup` measures both kinds in one run).
//!
//! Why only there: ring's keys are one-shot and sealed (no fixed scalar in, no scalar
//! out), and ring draws them from the operating system's RNG rather than the injected
//! one. IKE_SA_INIT's value needs neither: it is used once, and an IKE SA is only
//! snapshotted once established, so its private value never has to cross to another
//! process. Exchanges of an established SA (CREATE_CHILD_SA with PFS, IKE rekeys)
//! keep the exportable RustCrypto keys, which a snapshot carries.

use std::sync::Mutex;

use ring::agreement::{self, Algorithm, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::SystemRandom;

use crate::crypto::error::CryptoError;
use crate::crypto::secret::SecretBytes;

const UNCOMPRESSED: u8 = 0x04;

/// ring's private key until the one agreement that consumes it. The mutex is for
/// `Sync` (the key is taken out by `&self`), never contended.
pub(crate) struct RingSecret {
    key: Mutex<Option<EphemeralPrivateKey>>,
    alg: &'static Algorithm,
    group: u16,
    /// The KE payload's size: x | y for ECP (RFC 5903 §7), u for X25519 (RFC 8031).
    public_len: usize,
    /// ECP: ring speaks SEC1 (0x04 | x | y), IKE leaves the 0x04 out.
    sec1: bool,
}

impl RingSecret {
    /// A fresh key and its public value as the KE payload carries it.
    pub(crate) fn generate(
        group: u16,
        alg: &'static Algorithm,
        sec1: bool,
    ) -> Result<(Self, Vec<u8>), CryptoError> {
        let key = EphemeralPrivateKey::generate(alg, &SystemRandom::new())
            .map_err(|_| CryptoError::Rng)?;
        let ring_public = key.compute_public_key().map_err(|_| CryptoError::Rng)?;
        let skip = usize::from(sec1);
        let public = ring_public
            .as_ref()
            .get(skip..)
            .unwrap_or_default()
            .to_vec();
        let secret = RingSecret {
            key: Mutex::new(Some(key)),
            alg,
            group,
            public_len: public.len(),
            sec1,
        };
        Ok((secret, public))
    }

    /// The shared secret: x of d·Q for ECP, where ring rejects points off the curve;
    /// X25519's, where ring rejects the all-zero result of low-order points (RFC 7748
    /// §6.1). The size is checked first so that a malformed value does not use up the
    /// key.
    pub(crate) fn agree(&self, peer: &[u8]) -> Result<SecretBytes, CryptoError> {
        let invalid = CryptoError::InvalidPublicValue(self.group);
        if peer.len() != self.public_len {
            return Err(invalid);
        }
        let key = self
            .key
            .lock()
            .ok()
            .and_then(|mut k| k.take())
            .ok_or(CryptoError::EphemeralSpent)?;
        let mut encoded = Vec::with_capacity(peer.len() + 1);
        if self.sec1 {
            encoded.push(UNCOMPRESSED);
        }
        encoded.extend_from_slice(peer);
        agreement::agree_ephemeral(key, &UnparsedPublicKey::new(self.alg, &encoded), |g| {
            SecretBytes::from_slice(g)
        })
        .map_err(|_| invalid)
    }
}
