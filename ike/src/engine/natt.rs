//! NAT detection (RFC 7296 §2.23) with the RFC 3947 hash, and the UDP 4500 float.

use std::net::{IpAddr, SocketAddr};

use rand_core::CryptoRngCore;
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::wire::{NotifyPayload, NotifyType, Payload};

/// The IKE NAT-T port (RFC 3948): after a NAT is detected both sides move there and
/// prefix IKE messages with the 4-byte zero non-ESP marker.
pub const NAT_T_PORT: u16 = 4500;

/// SHA-1(SPIi | SPIr | IP | port), with the SPIs of the message carrying the notify.
pub(crate) fn natd_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// The two NAT-D notifies of an IKE_SA_INIT message from `local` to `remote`. With
/// `force_encap` the source hash is random, so the peer sees a NAT and encapsulates.
pub(crate) fn natd_payloads(
    (spi_i, spi_r): (u64, u64),
    local: SocketAddr,
    remote: SocketAddr,
    force_encap: bool,
    rng: &mut dyn CryptoRngCore,
) -> [Payload; 2] {
    let source = if force_encap {
        let mut h = vec![0u8; 20];
        rng.fill_bytes(&mut h);
        h
    } else {
        natd_hash(spi_i, spi_r, local)
    };
    [
        Payload::Notify(NotifyPayload::new(NotifyType::NatDetectionSourceIp, source)),
        Payload::Notify(NotifyPayload::new(
            NotifyType::NatDetectionDestinationIp,
            natd_hash(spi_i, spi_r, remote),
        )),
    ]
}

/// What the NAT-D notifies of a received IKE_SA_INIT message say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NatStatus {
    /// Our address as the peer saw it differs from ours: we are behind a NAT.
    pub local_behind: bool,
    /// The peer's source differs from what it hashed: it is behind a NAT (or fakes one).
    pub remote_behind: bool,
}

impl NatStatus {
    /// `None` when the peer sent no NAT-D notifies (it does not support NAT-T).
    pub(crate) fn detect(
        payloads: &[Payload],
        (spi_i, spi_r): (u64, u64),
        from: SocketAddr,
        to: SocketAddr,
    ) -> Option<NatStatus> {
        let hashes = |ty| {
            payloads
                .iter()
                .filter_map(move |p| match p {
                    Payload::Notify(n) if n.notify_type == ty => Some(n.data.as_slice()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let sources = hashes(NotifyType::NatDetectionSourceIp);
        let dests = hashes(NotifyType::NatDetectionDestinationIp);
        if sources.is_empty() || dests.is_empty() {
            return None;
        }
        let src = natd_hash(spi_i, spi_r, from);
        let dst = natd_hash(spi_i, spi_r, to);
        Some(NatStatus {
            remote_behind: !sources.contains(&src.as_slice()),
            local_behind: !dests.contains(&dst.as_slice()),
        })
    }

    pub fn any(self) -> bool {
        self.local_behind || self.remote_behind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_independent_sha1() {
        use sha1::{Digest, Sha1};
        let addr: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let mut h = Sha1::new();
        h.update([
            1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1, 1, 0xf4,
        ]);
        assert_eq!(
            natd_hash(0x0102_0304_0506_0708, 0, addr),
            h.finalize().to_vec()
        );
    }
}
