//! The control side of SPU workers, and tunnel anchoring.
//!
//! Each worker's control calls block until the worker has applied them between two
//! packet batches, so each [`Spu`] actor runs on an arbiter (thread) of its own: a slow
//! worker never stalls the IKE actors.
//!
//! The SPUs change while the node runs: one fails ([`Spus::fail`]: a services card dies,
//! or a worker panics) or one is added ([`Spus::add`], `request chassis spu add`: a card
//! is inserted). Every clone of [`Spus`] shares one list, so the gateways and child SAs
//! started before an addition reach the new SPU like the others.
//!
//! A tunnel is anchored when its gateway creates an IKE SA (negotiates, answers or takes
//! one over) and released when that SA ends ([`Spus::anchor_for`], [`Spus::release`]),
//! on the SPU anchoring the fewest tunnels at that moment. The load therefore counts
//! tunnels that exist, an added SPU takes the tunnels set up after it (until it holds as
//! many as the others), and a tunnel that is up never moves because an SPU was added:
//! moving it would cost a rekey or packets, for no failure to recover from.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use actix::prelude::*;
use dataplane::sa::{SaConfig, SaKey, TunnelId};
use dataplane::worker::{ControlError, DataplaneHandle, WorkerStats};

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

/// Why an SPU could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddSpuError {
    /// The thread of the new SPU's control actor could not be started.
    #[error("starting the SPU's control thread: {0}")]
    Arbiter(#[source] std::io::Error),
    /// The actix system is stopping (the daemon is shutting down).
    #[error("the daemon is shutting down")]
    Stopping,
    /// The dataplane could not start the worker.
    #[error(transparent)]
    Dataplane(#[from] ControlError),
}

/// The load of an SPU that failed: never the least loaded, never counted further.
const FAILED: usize = usize::MAX;

/// Which SPU anchors which tunnel, and how many each anchors. One lock for both, so a
/// failure, an addition and a tunnel coming or going always see them agree.
#[derive(Debug)]
struct Anchoring {
    /// Tunnels anchored per SPU number ([`FAILED`] for a failed SPU, or a number that has
    /// no control actor): the load that picks the next anchor.
    load: Vec<usize>,
    /// Anchors of the tunnels that exist, by binding: every SA of a tunnel lives on one
    /// SPU.
    anchors: HashMap<TunnelId, usize>,
    /// The SPU the next dial-up client's tunnel starts looking from (round robin).
    next_dynamic: usize,
}

impl Anchoring {
    /// `spus` SPUs numbered from 0, anchoring nothing.
    fn new(spus: usize) -> Self {
        Self {
            load: vec![0; spus],
            anchors: HashMap::new(),
            next_dynamic: 0,
        }
    }

    /// SPU `spu` joins, anchoring nothing yet: being the least loaded, it takes the
    /// tunnels anchored from now on. Numbers between the last known and `spu` (none,
    /// as the dataplane numbers workers in order) count as failed.
    fn add(&mut self, spu: usize) {
        if self.load.len() <= spu {
            self.load.resize(spu + 1, FAILED);
        }
        if let Some(l) = self.load.get_mut(spu) {
            *l = 0;
        }
    }

    /// The least-loaded live SPU, counted as anchoring one more tunnel.
    fn pick(&mut self) -> usize {
        let (i, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .unwrap_or((0, &0));
        if let Some(l) = self.load.get_mut(i)
            && *l != FAILED
        {
            *l += 1;
        }
        i
    }

    /// The next live SPU in turn, counted as anchoring one more tunnel: how dial-up
    /// clients are placed (Junos anchors dynamic tunnels round robin). They come and go
    /// by the hundred; least-loaded placement would pile a burst of them onto whichever
    /// SPU was emptiest when the burst began.
    fn pick_in_turn(&mut self) -> usize {
        let n = self.load.len();
        for k in 0..n {
            let i = (self.next_dynamic + k) % n;
            if self.load[i] != FAILED {
                self.load[i] += 1;
                self.next_dynamic = (i + 1) % n;
                return i;
            }
        }
        self.pick()
    }

    /// The anchor of `binding`, chosen now if it has none: round robin for a dial-up
    /// client's binding, the least-loaded SPU for any other.
    fn anchor_for(&mut self, binding: TunnelId) -> usize {
        if let Some(a) = self.anchors.get(&binding) {
            return *a;
        }
        let a = if binding >= super::dialup::DIALUP_BINDING_BASE {
            self.pick_in_turn()
        } else {
            self.pick()
        };
        self.anchors.insert(binding, a);
        a
    }

    /// Forgets the anchor of `binding`; the SPU counts one tunnel less.
    fn release(&mut self, binding: TunnelId) {
        if let Some(spu) = self.anchors.remove(&binding)
            && let Some(l) = self.load.get_mut(spu)
            && *l != FAILED
        {
            *l = l.saturating_sub(1);
        }
    }

    /// Marks `spu` failed and moves its tunnels to the least-loaded survivors; the moved
    /// bindings with their new anchor, in binding order. Nothing for an SPU already
    /// failed.
    fn fail(&mut self, spu: usize) -> Vec<(TunnelId, usize)> {
        match self.load.get_mut(spu) {
            Some(l) if *l != FAILED => *l = FAILED,
            _ => return Vec::new(),
        }
        let mut moved: Vec<TunnelId> = self
            .anchors
            .iter()
            .filter(|(_, a)| **a == spu)
            .map(|(b, _)| *b)
            .collect();
        moved.sort_unstable();
        moved
            .into_iter()
            .map(|binding| {
                let anchor = self.pick();
                self.anchors.insert(binding, anchor);
                (binding, anchor)
            })
            .collect()
    }
}

/// All SPU actors of the node, and which tunnels each anchors. Clones share everything,
/// SPUs added later included.
#[derive(Debug, Clone)]
pub struct Spus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Control actors by SPU number; a failed SPU keeps its actor (its calls fail).
    actors: RwLock<BTreeMap<usize, Addr<Spu>>>,
    anchoring: Mutex<Anchoring>,
    handle: DataplaneHandle,
    /// The actix system of the node: the arbiters of SPUs added later join it.
    system: System,
}

impl Spus {
    /// Starts one actor per worker, each on its own arbiter. Must run inside the node's
    /// actix system.
    pub fn start(handle: DataplaneHandle) -> Spus {
        let actors = (0..handle.workers())
            .map(|worker| {
                let arbiter = Arbiter::new();
                let handle = handle.clone();
                (
                    worker,
                    Spu::start_in_arbiter(&arbiter.handle(), move |_| Spu { worker, handle }),
                )
            })
            .collect::<BTreeMap<_, _>>();
        let n = handle.workers();
        Spus {
            shared: Arc::new(Shared {
                actors: RwLock::new(actors),
                anchoring: Mutex::new(Anchoring::new(n)),
                handle,
                system: System::current(),
            }),
        }
    }

    /// Adds an SPU while traffic flows (`request chassis spu add`): a new dataplane
    /// worker and its control actor on an arbiter of its own. No tunnel moves; the new
    /// SPU, anchoring none, is where the next tunnels go. Returns its number: the next
    /// one, since numbers are never reused (a failed SPU stays failed).
    ///
    /// Blocks for the moment the worker takes to open its queues and sockets, as the
    /// other control calls block until the worker answers.
    pub async fn add(&self) -> Result<usize, AddSpuError> {
        let s = &self.shared;
        // An arbiter registers with the actix system of the thread that creates it, and
        // the caller may be on any runtime thread (a gRPC handler's): the system's own
        // arbiter creates it. First, because it can fail with nothing to undo.
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !s.system.arbiter().spawn_fn(move || {
            let _ = tx.send(Arbiter::try_new());
        }) {
            return Err(AddSpuError::Stopping);
        }
        let arbiter = rx
            .await
            .map_err(|_| AddSpuError::Stopping)?
            .map_err(AddSpuError::Arbiter)?;
        let worker = match s.handle.add_worker() {
            Ok(w) => w,
            Err(e) => {
                arbiter.stop();
                return Err(e.into());
            }
        };
        let handle = s.handle.clone();
        let actor = Spu::start_in_arbiter(&arbiter.handle(), move |_| Spu { worker, handle });
        s.actors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(worker, actor);
        // Anchoring last: the SPU is picked only once its actor can install SAs.
        self.anchoring().add(worker);
        tracing::info!(
            spu = worker,
            live = s.handle.live_workers().len(),
            "SPU added: tunnels set up from now on may be anchored on it"
        );
        Ok(worker)
    }

    fn anchoring(&self) -> MutexGuard<'_, Anchoring> {
        self.shared
            .anchoring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn actor(&self, spu: usize) -> Option<Addr<Spu>> {
        self.shared
            .actors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&spu)
            .cloned()
    }

    /// The dataplane the SPUs control (what is not per SPU: the SPD).
    pub fn dataplane(&self) -> &DataplaneHandle {
        &self.shared.handle
    }

    /// SPU numbers handed out so far, failed SPUs included: SPUs are `0..len()`.
    pub fn len(&self) -> usize {
        self.shared.handle.workers()
    }

    /// True if there is no SPU (never, once started).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a failed SPU (services card) out of anchoring and re-anchors its tunnels on
    /// the least-loaded survivors; returns the moved bindings with their new anchor.
    /// Idempotent: a second report of the same failure moves nothing.
    pub fn fail(&self, spu: usize) -> Vec<(TunnelId, usize)> {
        let moved = self.anchoring().fail(spu);
        for &(binding, anchor) in &moved {
            if let Err(e) = self.shared.handle.route_tunnel(binding, Some(anchor)) {
                tracing::error!(tunnel = binding, anchor, error = %e, "re-routing a tunnel off a failed SPU");
            }
        }
        moved
    }

    /// Fails an SPU on purpose (`request chassis spu fail`): the worker stops, and its
    /// failure is reported through the dataplane's events like a crash.
    pub fn inject_failure(&self, spu: usize) -> Result<(), String> {
        self.shared
            .handle
            .fail_worker(spu)
            .map_err(|e| e.to_string())
    }

    /// The anchor of a binding, chosen on first use: the least-loaded SPU.
    pub fn anchor_for(&self, binding: TunnelId) -> usize {
        self.anchoring().anchor_for(binding)
    }

    /// Forgets the anchor of a binding whose tunnel ended, so that its next one is
    /// placed by the load of its own time.
    pub fn release(&self, binding: TunnelId) {
        self.anchoring().release(binding);
    }

    /// (binding, anchor) pairs: the tunnel map.
    pub fn tunnel_map(&self) -> Vec<(TunnelId, usize)> {
        let mut v: Vec<_> = self
            .anchoring()
            .anchors
            .iter()
            .map(|(b, a)| (*b, *a))
            .collect();
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
        let actor = self.actor(spu).ok_or("no such SPU")?;
        actor
            .send(InstallPair { inbound, outbound })
            .await
            .map_err(|e| e.to_string())?
    }

    /// Removes SAs from an SPU (fire and forget).
    pub fn remove(&self, spu: usize, keys: Vec<SaKey>) {
        if let Some(actor) = self.actor(spu) {
            actor.do_send(RemoveSas(keys));
        }
    }

    /// Raises an outbound SA's sequence limit to a newly committed cluster reservation.
    /// A quick control call to the worker, answered between two batches.
    pub fn extend_reservation(&self, spu: usize, key: SaKey, limit: u64) -> Result<bool, String> {
        self.shared
            .handle
            .extend_reservation(spu, key, limit)
            .map_err(|e| e.to_string())
    }

    /// Counters of every SPU that is in service, in SPU order.
    pub async fn stats(&self) -> Vec<WorkerStats> {
        let actors: Vec<Addr<Spu>> = self
            .shared
            .actors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for a in actors {
            if let Ok(Ok(s)) = a.send(ReadStats).await {
                out.push(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_added_spu_takes_new_tunnels_and_moves_none() {
        let mut a = Anchoring::new(2);
        assert_eq!(
            (a.anchor_for(10), a.anchor_for(11), a.anchor_for(12)),
            (0, 1, 0)
        );
        assert_eq!(a.anchor_for(10), 0, "an anchor is kept once chosen");
        let before = a.anchors.clone();

        a.add(2);
        assert_eq!(a.anchors, before, "adding an SPU moves no tunnel");
        assert_eq!(a.load, [2, 1, 0]);
        assert_eq!(
            a.anchor_for(13),
            2,
            "the new, empty SPU takes the next tunnel"
        );
        // Then the least loaded again, lowest number first among equals.
        assert_eq!((a.anchor_for(14), a.anchor_for(15)), (1, 2));
        assert_eq!(a.load, [2, 2, 2]);
    }

    #[test]
    fn dial_up_clients_go_round_robin_over_live_spus() {
        use crate::runtime::dialup::DIALUP_BINDING_BASE as D;
        let mut a = Anchoring::new(3);
        // A site-to-site tunnel on SPU 0 does not make the clients skip it.
        assert_eq!(a.anchor_for(1), 0);
        let clients: Vec<usize> = (0..5).map(|k| a.anchor_for(D + k)).collect();
        assert_eq!(clients, [0, 1, 2, 0, 1]);
        a.load[2] = FAILED;
        assert_eq!((a.anchor_for(D + 5), a.anchor_for(D + 6)), (0, 1));
        assert_eq!(a.anchor_for(D + 2), 2, "an anchor is kept once chosen");
    }

    #[test]
    fn a_released_tunnel_is_placed_anew_when_it_comes_back() {
        let mut a = Anchoring::new(1);
        assert_eq!((a.anchor_for(10), a.anchor_for(11)), (0, 0));
        a.add(1);
        a.release(11);
        a.release(11);
        assert_eq!(a.load, [1, 0], "a second release counts nothing");
        assert_eq!(
            a.anchor_for(11),
            1,
            "back on the SPU added while it was down"
        );
        assert_eq!(
            a.anchor_for(10),
            0,
            "the tunnel that stayed up did not move"
        );
    }

    #[test]
    fn a_failed_spu_hands_its_tunnels_over_and_is_never_picked() {
        let mut a = Anchoring::new(3);
        for binding in 10..16 {
            a.anchor_for(binding);
        }
        assert_eq!(a.load, [2, 2, 2]);
        assert_eq!(a.fail(1), [(11, 0), (14, 2)]);
        assert_eq!(a.fail(1), [], "a failure is handled once");
        assert_eq!(a.load, [3, FAILED, 3]);
        a.release(11);
        assert_eq!(a.load, [2, FAILED, 3]);
        assert_eq!(a.anchor_for(20), 0);
        // A failed SPU stays failed; the added one gets the next number.
        a.add(3);
        assert_eq!(a.anchor_for(21), 3);
        assert_eq!(a.load, [3, FAILED, 3, 1]);
    }

    /// The real thing in an actix system: a dataplane with two workers in a network
    /// namespace of its own (workers open raw send sockets, so this needs root), an SPU
    /// added from a thread outside the system (as a gRPC handler would), reached through
    /// a clone made before the addition.
    #[test]
    fn netns_spus_grow_at_run_time() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "needs root (a network namespace, raw sockets): run as root or skip with `cargo test -- --skip netns_`"
        );
        std::thread::spawn(|| {
            // SAFETY: unshare takes a flag and no pointers; it moves only this thread.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
            let dp = dataplane::worker::Dataplane::start(dataplane::worker::DataplaneConfig {
                workers: 2,
                udp_bind: Vec::new(),
                raw_esp: false,
                raw_ah: false,
                ipv6: false,
                ..dataplane::worker::DataplaneConfig::default()
            })
            .expect("starting the dataplane");
            actix_rt::System::new().block_on(grow(dp.handle()));
            dp.shutdown();
        })
        .join()
        .expect("the test thread panicked");
    }

    async fn grow(handle: DataplaneHandle) {
        let spus = Spus::start(handle);
        let early = spus.clone();
        assert_eq!((spus.anchor_for(10), spus.anchor_for(11)), (0, 1));

        let (tx, rx) = tokio::sync::oneshot::channel();
        let adder = spus.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let _ = tx.send(rt.block_on(adder.add()));
        });
        let added = rx.await.expect("the adding thread ended early");
        assert_eq!(added.expect("adding an SPU"), 2);

        assert_eq!(early.len(), 3);
        assert_eq!(early.tunnel_map(), [(10, 0), (11, 1)], "no tunnel moved");
        assert_eq!(early.anchor_for(12), 2);
        let local = std::net::IpAddr::from([192, 0, 2, 1]);
        let remote = std::net::IpAddr::from([192, 0, 2, 2]);
        let sa = |direction, spi| {
            let mut sa = SaConfig::esp_tunnel(direction, spi, local, remote)
                .with_encryption(dataplane::crypto::EncrAlg::AesGcm128, &[7; 20]);
            sa.binding = 12;
            sa
        };
        early
            .install_pair(
                2,
                sa(dataplane::sa::Direction::Inbound, 0x1000),
                sa(dataplane::sa::Direction::Outbound, 0x2000),
            )
            .await
            .expect("installing on the added SPU");
        let sas: Vec<(usize, usize)> = early
            .stats()
            .await
            .iter()
            .map(|s| (s.worker, s.engine.sas.len()))
            .collect();
        assert_eq!(sas, [(0, 0), (1, 0), (2, 2)]);
        System::current().stop();
    }
}
