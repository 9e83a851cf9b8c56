//! The control side of SPU workers, and tunnel anchoring.
//!
//! Each worker's control calls block until the worker has applied them between two
//! packet batches, so each [`Spu`] actor runs on an arbiter (thread) of its own: a slow
//! worker never stalls the IKE actors.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use dataplane::sa::{SaConfig, SaKey, TunnelId};
use dataplane::worker::{DataplaneHandle, WorkerStats};

/// Installs an inbound and an outbound SA on this worker (which becomes their anchor),
/// inbound first, so the peer's first packets under the new SA are accepted before we
/// send under it.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), String>")]
pub struct InstallPair {
    /// The inbound SA.
    pub inbound: SaConfig,
    /// The outbound SA.
    pub outbound: SaConfig,
}

/// Removes SAs from this worker.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RemoveSas(pub Vec<SaKey>);

/// Reads this worker's counters.
#[derive(Message, Debug)]
#[rtype(result = "Result<WorkerStats, String>")]
pub struct ReadStats;

/// Control actor of one SPU worker.
#[derive(Debug)]
pub struct Spu {
    worker: usize,
    handle: DataplaneHandle,
}

impl Actor for Spu {
    type Context = Context<Self>;
}

impl Handler<InstallPair> for Spu {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: InstallPair, _: &mut Context<Self>) -> Self::Result {
        let inbound_key = msg.inbound.key();
        self.handle
            .install_sa(self.worker, msg.inbound)
            .map_err(|e| e.to_string())?;
        if let Err(e) = self.handle.install_sa(self.worker, msg.outbound) {
            // Leave nothing half-installed.
            let _ = self.handle.remove_sa(self.worker, inbound_key);
            return Err(e.to_string());
        }
        Ok(())
    }
}

impl Handler<RemoveSas> for Spu {
    type Result = ();

    fn handle(&mut self, msg: RemoveSas, _: &mut Context<Self>) {
        for key in msg.0 {
            if let Err(e) = self.handle.remove_sa(self.worker, key) {
                tracing::warn!(worker = self.worker, spi = key.spi, error = %e, "removing SA");
            }
        }
    }
}

impl Handler<ReadStats> for Spu {
    type Result = Result<WorkerStats, String>;

    fn handle(&mut self, _: ReadStats, _: &mut Context<Self>) -> Self::Result {
        self.handle.stats(self.worker).map_err(|e| e.to_string())
    }
}

/// All SPU actors of the node, and how many tunnels each anchors.
#[derive(Debug, Clone)]
pub struct Spus {
    actors: Vec<Addr<Spu>>,
    /// Tunnels anchored per SPU: the load that picks the next anchor.
    load: Arc<Mutex<Vec<usize>>>,
    /// Anchors already chosen, by binding: every SA of a tunnel lives on one SPU.
    anchors: Arc<Mutex<std::collections::HashMap<TunnelId, usize>>>,
    handle: DataplaneHandle,
}

impl Spus {
    /// Starts one actor per worker, each on its own arbiter.
    pub fn start(handle: DataplaneHandle) -> Spus {
        let actors = (0..handle.workers())
            .map(|worker| {
                let arbiter = Arbiter::new();
                let handle = handle.clone();
                Spu::start_in_arbiter(&arbiter.handle(), move |_| Spu { worker, handle })
            })
            .collect::<Vec<_>>();
        let n = actors.len();
        Spus {
            actors,
            load: Arc::new(Mutex::new(vec![0; n])),
            anchors: Arc::new(Mutex::new(std::collections::HashMap::new())),
            handle,
        }
    }

    /// Number of SPUs.
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    /// True if there is no SPU (never, once started).
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    /// Takes a failed SPU (services card) out of anchoring and re-anchors its tunnels on
    /// the least-loaded survivors; returns the moved bindings with their new anchor.
    /// Idempotent: a second report of the same failure moves nothing.
    pub fn fail(&self, spu: usize) -> Vec<(TunnelId, usize)> {
        {
            let mut load = self.load.lock().unwrap_or_else(|p| p.into_inner());
            match load.get_mut(spu) {
                Some(l) if *l != usize::MAX => *l = usize::MAX,
                _ => return Vec::new(),
            }
        }
        let moved: Vec<TunnelId> = {
            let anchors = self.anchors.lock().unwrap_or_else(|p| p.into_inner());
            anchors
                .iter()
                .filter(|(_, a)| **a == spu)
                .map(|(b, _)| *b)
                .collect()
        };
        let mut out = Vec::new();
        for binding in moved {
            let anchor = self.anchor_tunnel();
            self.anchors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(binding, anchor);
            if let Err(e) = self.handle.route_tunnel(binding, Some(anchor)) {
                tracing::error!(tunnel = binding, anchor, error = %e, "re-routing a tunnel off a failed SPU");
            }
            out.push((binding, anchor));
        }
        out
    }

    /// Fails an SPU on purpose (`request chassis spu fail`): the worker stops, and its
    /// failure is reported through the dataplane's events like a crash.
    pub fn inject_failure(&self, spu: usize) -> Result<(), String> {
        self.handle.fail_worker(spu).map_err(|e| e.to_string())
    }

    /// Picks the least-loaded SPU for a new tunnel and counts it there.
    pub fn anchor_tunnel(&self) -> usize {
        let mut load = self.load.lock().unwrap_or_else(|p| p.into_inner());
        let (i, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .unwrap_or((0, &0));
        if let Some(l) = load.get_mut(i) {
            *l += 1;
        }
        i
    }

    /// The anchor of a binding, chosen on first use.
    pub fn anchor_for(&self, binding: TunnelId) -> usize {
        let mut anchors = self.anchors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = anchors.get(&binding) {
            return *a;
        }
        let a = self.anchor_tunnel();
        anchors.insert(binding, a);
        a
    }

    /// (binding, anchor) pairs: the tunnel map.
    pub fn tunnel_map(&self) -> Vec<(TunnelId, usize)> {
        let anchors = self.anchors.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = anchors.iter().map(|(b, a)| (*b, *a)).collect();
        v.sort_unstable();
        v
    }

    /// Installs an SA pair on an SPU.
    pub async fn install_pair(
        &self,
        spu: usize,
        inbound: SaConfig,
        outbound: SaConfig,
    ) -> Result<(), String> {
        let actor = self.actors.get(spu).ok_or("no such SPU")?;
        actor
            .send(InstallPair { inbound, outbound })
            .await
            .map_err(|e| e.to_string())?
    }

    /// Removes SAs from an SPU (fire and forget).
    pub fn remove(&self, spu: usize, keys: Vec<SaKey>) {
        if let Some(actor) = self.actors.get(spu) {
            actor.do_send(RemoveSas(keys));
        }
    }

    /// Raises an outbound SA's sequence limit to a newly committed cluster reservation.
    /// A quick control call to the worker, answered between two batches.
    pub fn extend_reservation(&self, spu: usize, key: SaKey, limit: u64) -> Result<bool, String> {
        self.handle
            .extend_reservation(spu, key, limit)
            .map_err(|e| e.to_string())
    }

    /// Counters of every SPU.
    pub async fn stats(&self) -> Vec<WorkerStats> {
        let mut out = Vec::new();
        for a in &self.actors {
            if let Ok(Ok(s)) = a.send(ReadStats).await {
                out.push(s);
            }
        }
        out
    }
}
