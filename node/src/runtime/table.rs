//! The running gateways, shared by the management API, the dataplane event bridge and
//! configuration reloads: a reload adds and removes gateways while the others read.
//!
//! Readers take a snapshot (a few handles, cloned under the lock) and never hold the
//! lock across an `await`; the bridge thread only `do_send`s under it, which never blocks.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use super::backend::GatewayHandle;

/// The gateways of a running node, in configuration order.
#[derive(Debug, Clone, Default)]
pub struct GatewayTable(Arc<RwLock<Vec<GatewayHandle>>>);

impl GatewayTable {
    /// A table holding `gateways`.
    pub fn new(gateways: Vec<GatewayHandle>) -> Self {
        Self(Arc::new(RwLock::new(gateways)))
    }

    /// The gateways now.
    pub fn snapshot(&self) -> Vec<GatewayHandle> {
        self.read().clone()
    }

    /// Read access for callers that must not clone (the event bridge).
    pub fn read(&self) -> RwLockReadGuard<'_, Vec<GatewayHandle>> {
        // A panicking writer leaves a whole Vec behind: the data stays usable.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a gateway (a reload started it).
    pub fn insert(&self, gateway: GatewayHandle) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gateway);
    }

    /// Removes the gateway of VPN `vpn` (a reload stopped it).
    pub fn remove(&self, vpn: &str) -> Option<GatewayHandle> {
        let mut list = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let at = list.iter().position(|g| g.vpn == vpn)?;
        Some(list.remove(at))
    }
}
