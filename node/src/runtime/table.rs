//! The running gateways, shared by the management API, the dataplane event bridge and
//! configuration reloads: a reload adds and removes gateways while the others read.
//!
//! Readers take a snapshot (a few handles, cloned under the lock) and never hold the
//! lock across an `await`; the bridge thread only `do_send`s under it, which never blocks.

use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use actix::Addr;

use super::backend::GatewayHandle;
use super::dialup::Dialup;

/// The gateways of a running node, in configuration order, and the dial-up actors
/// that start gateways for calling peers.
#[derive(Debug, Clone, Default)]
pub struct GatewayTable(Arc<Tables>);

#[derive(Debug, Default)]
struct Tables {
    gateways: RwLock<Vec<GatewayHandle>>,
    /// (VPN, its dial-up actor).
    dialups: Mutex<Vec<(String, Addr<Dialup>)>>,
}

impl GatewayTable {
    /// The gateways now.
    pub fn snapshot(&self) -> Vec<GatewayHandle> {
        self.read().clone()
    }

    /// Read access for callers that must not clone (the event bridge).
    pub fn read(&self) -> RwLockReadGuard<'_, Vec<GatewayHandle>> {
        // A panicking writer leaves a whole Vec behind: the data stays usable.
        self.0
            .gateways
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a gateway (a reload started it).
    pub fn insert(&self, gateway: GatewayHandle) {
        self.0
            .gateways
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gateway);
    }

    /// Removes the gateways of VPN `vpn` (a reload stopped it; a dial-up VPN has one
    /// per connected peer).
    pub fn remove(&self, vpn: &str) -> Vec<GatewayHandle> {
        let mut list = self
            .0
            .gateways
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (gone, kept) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|g| g.vpn == vpn);
        *list = kept;
        gone
    }

    /// Removes the gateway actor `addr` (a dial-up peer's, which ended).
    pub fn remove_actor(&self, addr: &actix::Addr<super::gateway::Gateway>) {
        self.0
            .gateways
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|g| &g.addr != addr);
    }

    /// Records the dial-up actor of VPN `vpn`.
    pub fn insert_dialup(&self, vpn: &str, dialup: Addr<Dialup>) {
        self.0
            .dialups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((vpn.to_owned(), dialup));
    }

    /// Removes the dial-up actor of VPN `vpn`, if it has one.
    pub fn remove_dialup(&self, vpn: &str) -> Option<Addr<Dialup>> {
        let mut list = self
            .0
            .dialups
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = list.iter().position(|(v, _)| v == vpn)?;
        Some(list.remove(at).1)
    }
}
