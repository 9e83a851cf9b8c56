//! Internal IPv4 addresses for remote-access initiators (CP, RFC 7296 §3.15).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// A pool shared by every IKE SA of one gateway; a `Mutex` because SAs of one gateway
/// may be driven from different threads, and the critical section is a set lookup.
pub type SharedPool = Arc<Mutex<AddressPool>>;

/// An IPv4 range handed out one address per IKE SA, plus what the reply advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    first: u32,
    last: u32,
    pub netmask: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    in_use: BTreeSet<u32>,
}

impl AddressPool {
    /// Addresses `first..=last` (empty if `last < first`).
    pub fn new(first: Ipv4Addr, last: Ipv4Addr, netmask: Ipv4Addr, dns: Vec<Ipv4Addr>) -> Self {
        AddressPool {
            first: first.into(),
            last: last.into(),
            netmask,
            dns,
            in_use: BTreeSet::new(),
        }
    }

    pub fn shared(self) -> SharedPool {
        Arc::new(Mutex::new(self))
    }

    /// The lowest free address, or `None` when the pool is exhausted.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let free = (self.first..=self.last).find(|a| !self.in_use.contains(a))?;
        self.in_use.insert(free);
        Some(free.into())
    }

    /// Takes this particular address, if it is in the range and free: a node taking
    /// over an IKE SA claims the address the SA already assigned.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        (self.first..=self.last).contains(&a) && self.in_use.insert(a)
    }

    pub fn release(&mut self, addr: Ipv4Addr) {
        self.in_use.remove(&u32::from(addr));
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

/// An address taken from a pool, given back when the IKE SA holding it goes away,
/// whichever way it ends (delete, DPD, failure or simply being dropped).
#[derive(Debug)]
pub(crate) struct Lease {
    pool: SharedPool,
    pub(crate) address: Ipv4Addr,
}

impl Lease {
    pub(crate) fn take(pool: &SharedPool) -> Option<Lease> {
        let address = pool.lock().ok()?.allocate()?;
        Some(Lease {
            pool: Arc::clone(pool),
            address,
        })
    }

    /// The lease of an SA restored from a snapshot: the address it already holds.
    pub(crate) fn claim(pool: &SharedPool, address: Ipv4Addr) -> Option<Lease> {
        pool.lock().ok()?.reserve(address).then(|| Lease {
            pool: Arc::clone(pool),
            address,
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pool.lock() {
            p.release(self.address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_and_exhausts() {
        let pool = AddressPool::new(
            Ipv4Addr::new(10, 9, 0, 1),
            Ipv4Addr::new(10, 9, 0, 2),
            Ipv4Addr::new(255, 255, 255, 0),
            vec![],
        )
        .shared();
        let a = Lease::take(&pool).unwrap();
        let b = Lease::take(&pool).unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(b.address, Ipv4Addr::new(10, 9, 0, 2));
        assert!(Lease::take(&pool).is_none());
        drop(a);
        assert_eq!(
            Lease::take(&pool).map(|l| l.address),
            Some(Ipv4Addr::new(10, 9, 0, 1))
        );
        assert_eq!(pool.lock().unwrap().in_use(), 1);
        // Claiming a given address: only a free one inside the range.
        assert!(Lease::claim(&pool, b.address).is_none());
        assert!(Lease::claim(&pool, Ipv4Addr::new(10, 9, 0, 3)).is_none());
        let c = Lease::claim(&pool, Ipv4Addr::new(10, 9, 0, 1)).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(pool.lock().unwrap().in_use(), 2);
    }
}
