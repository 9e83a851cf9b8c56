//! The security association database of one worker.
//!
//! Inbound SAs are found by RFC 4301's triplet (destination, protocol, SPI); outbound SAs
//! by the binding (tunnel or policy) that selected the packet. With make-before-break
//! rekeying several outbound SAs of one binding may be installed at once: the newest
//! carries traffic, the older ones wait for the control plane to remove them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::sa::{InboundSa, OutboundSa, Protocol, SaKey, TunnelId};

/// FxHash-style multiplicative hasher: SPIs are random and addresses are few, so a
/// DoS-resistant SipHash buys nothing here and costs ~20 ns per lookup.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Key of an inbound SA: (destination, protocol, SPI).
pub type InboundKey = (IpAddr, Protocol, u32);

/// The SAs of one worker.
#[derive(Debug, Default)]
pub struct Sad {
    inbound: FastMap<InboundKey, InboundSa>,
    outbound: FastMap<SaKey, OutboundSa>,
    /// Outbound SA keys per binding, oldest first; the last one carries traffic.
    bindings: FastMap<TunnelId, Vec<SaKey>>,
}

impl Sad {
    /// Installs (or replaces) an inbound SA.
    pub fn insert_inbound(&mut self, sa: InboundSa) {
        let c = &sa.common.config;
        self.inbound.insert((c.local, c.protocol, c.spi), sa);
    }

    /// Installs (or replaces) an outbound SA; it becomes the one its binding uses,
    /// unless it is a standby SA, which waits behind those already installed.
    pub fn insert_outbound(&mut self, sa: OutboundSa) {
        let key = sa.common.config.key();
        let binding = sa.common.config.binding;
        let standby = sa.common.config.standby;
        self.outbound.insert(key, sa);
        let keys = self.bindings.entry(binding).or_default();
        keys.retain(|k| *k != key);
        if standby {
            keys.insert(0, key);
        } else {
            keys.push(key);
        }
    }

    /// Removes an SA; true if it was installed.
    pub fn remove(&mut self, key: &SaKey) -> bool {
        match key.direction {
            crate::sa::Direction::Inbound => self
                .inbound
                .remove(&(key.dst, key.protocol, key.spi))
                .is_some(),
            crate::sa::Direction::Outbound => {
                let Some(sa) = self.outbound.remove(key) else {
                    return false;
                };
                let binding = sa.common.config.binding;
                if let Some(keys) = self.bindings.get_mut(&binding) {
                    keys.retain(|k| k != key);
                    if keys.is_empty() {
                        self.bindings.remove(&binding);
                    }
                }
                true
            }
        }
    }

    /// The inbound SA for a received packet.
    #[inline]
    pub fn inbound_mut(
        &mut self,
        dst: IpAddr,
        protocol: Protocol,
        spi: u32,
    ) -> Option<&mut InboundSa> {
        self.inbound.get_mut(&(dst, protocol, spi))
    }

    /// The outbound SA currently serving `binding`.
    #[inline]
    pub fn outbound_for(&mut self, binding: TunnelId) -> Option<&mut OutboundSa> {
        let key = self.bindings.get(&binding)?.last()?;
        self.outbound.get_mut(key)
    }

    /// An outbound SA by key.
    pub fn outbound_mut(&mut self, key: &SaKey) -> Option<&mut OutboundSa> {
        self.outbound.get_mut(key)
    }

    /// All inbound SAs.
    pub fn inbound(&self) -> impl Iterator<Item = &InboundSa> {
        self.inbound.values()
    }

    /// All outbound SAs.
    pub fn outbound(&self) -> impl Iterator<Item = &OutboundSa> {
        self.outbound.values()
    }

    /// Number of installed SAs (both directions).
    pub fn len(&self) -> usize {
        self.inbound.len() + self.outbound.len()
    }

    /// True when no SA is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::crypto::EncrAlg;
    use crate::sa::{Direction, SaConfig};

    fn outbound(spi: u32, standby: bool) -> OutboundSa {
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        );
        let mut c = SaConfig::esp_tunnel(Direction::Outbound, spi, a, b)
            .with_encryption(EncrAlg::AesGcm128, &[7; 20]);
        c.standby = standby;
        OutboundSa::new(c).expect("outbound SA")
    }

    fn serving(sad: &mut Sad) -> Option<u32> {
        sad.outbound_for(0).map(|sa| sa.common.config.spi)
    }

    #[test]
    fn newest_sa_carries_traffic_and_a_standby_waits_for_the_ones_ahead() {
        let mut sad = Sad::default();
        sad.insert_outbound(outbound(0x100, false));
        sad.insert_outbound(outbound(0x200, false));
        assert_eq!(serving(&mut sad), Some(0x200), "make-before-break");
        sad.insert_outbound(outbound(0x300, true));
        assert_eq!(serving(&mut sad), Some(0x200), "a standby SA waits");
        assert!(sad.remove(&sad_key(0x200)));
        assert_eq!(serving(&mut sad), Some(0x100));
        assert!(sad.remove(&sad_key(0x100)));
        assert_eq!(serving(&mut sad), Some(0x300), "the standby takes over");
    }

    fn sad_key(spi: u32) -> SaKey {
        outbound(spi, false).common.config.key()
    }
}
