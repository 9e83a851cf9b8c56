//! The control side of the SPU workers: which workers run, the routes every worker
//! replicates, the UDP socket groups and their steering, and starting, failing and
//! adding workers.
//!
//! Everything here runs on control threads, or on a worker thread whose loop has ended,
//! under one mutex; the packet path never takes it. Control calls are rare next to
//! packets, and one lock makes each change (a route, a failure, a new worker) atomic
//! against the others: a new worker gets exactly the routes every other worker has, and
//! a failure cannot interleave with an install on the failing worker.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::{
    Command, ControlError, DataplaneConfig, DataplaneEvent, Handoff, REPLY_TIMEOUT, Route,
    StartError, Worker, WorkerInit, io_err, set_route, worker_main,
};
use crate::buf::PacketBuf;
use crate::fence::Fences;
use crate::io::netns::NetnsHandle;
use crate::io::poll::EventFd;
use crate::io::raw::RawReceiver;
use crate::io::udp::{GroupMember, SpiSteering};
use crate::sa::TunnelId;
use crate::spd::Spd;

/// How long a failure waits for room in a full event channel before giving up the
/// [`DataplaneEvent::WorkerFailed`] (the failure still shows in `live_workers`).
const EVENT_PATIENCE: Duration = Duration::from_secs(1);
/// How often `fail_worker` looks whether the worker thread has ended.
const EXIT_POLL: Duration = Duration::from_millis(1);

/// What the other workers and the control side hold of one worker.
#[derive(Debug)]
pub(super) struct Peer {
    /// Wakes the worker from epoll: commands or handoffs are waiting.
    pub(super) wake: EventFd,
    /// Packets other workers hand to it.
    pub(super) handoff: ArrayQueue<Handoff>,
    /// Asks it to leave its loop after the current batch (it has been failed).
    pub(super) stop: AtomicBool,
}

/// Which worker anchors what: the maps every worker replicates, and the control side's
/// copy of them for workers added later.
#[derive(Debug, Clone, Default)]
pub(super) struct Routes {
    /// Inbound SPI → anchor.
    pub(super) spi: HashMap<u32, usize>,
    /// Tunnel → anchor of its outbound SA.
    pub(super) tunnel: HashMap<TunnelId, usize>,
}

impl Routes {
    fn apply(&mut self, route: Route) {
        match route {
            Route::Spi(spi, owner) => set_route(&mut self.spi, spi, owner),
            Route::Tunnel(t, owner) => set_route(&mut self.tunnel, t, owner),
        }
    }

    fn forget(&mut self, worker: usize) {
        self.spi.retain(|_, w| *w != worker);
        self.tunnel.retain(|_, w| *w != worker);
    }
}

/// What every worker and every handle shares.
#[derive(Debug)]
pub(super) struct Shared {
    /// Spare buffers for handoffs.
    pub(super) free: ArrayQueue<PacketBuf>,
    /// Set when the dataplane shuts down.
    pub(super) stop: AtomicBool,
    /// The redundancy groups' forwarding fences (the engines' too).
    pub(super) fences: Arc<Fences>,
    /// Events to the control plane.
    pub(super) events: SyncSender<DataplaneEvent>,
    /// The interface group of the TUN devices, deleted in one batch at shutdown (see
    /// [`crate::io::link`]): random with the top bit set, so it is neither a group an
    /// operator numbered by hand nor another dataplane's in the same namespace.
    pub(super) device_group: u32,
    control: Mutex<Control>,
}

/// The control side's state.
#[derive(Debug)]
struct Control {
    config: DataplaneConfig,
    /// The namespace workers open their descriptors in.
    netns: Option<Arc<NetnsHandle>>,
    /// Every worker ever started, by index.
    workers: Vec<Entry>,
    routes: Routes,
    /// The SPD published last; a worker started later begins with it.
    spd: Arc<Spd>,
    /// One `SO_REUSEPORT` group per UDP bind address.
    groups: Vec<UdpGroup>,
    /// The worker holding the raw receive sockets (`None`: nobody, opened by the next
    /// worker started).
    raw_owner: Option<usize>,
}

/// One worker, as the control side knows it.
#[derive(Debug)]
struct Entry {
    commands: Sender<Command>,
    peer: Arc<Peer>,
    failed: bool,
    /// Until joined by `fail_worker` or at shutdown.
    thread: Option<JoinHandle<()>>,
}

/// The UDP sockets of one bind address, one per worker in worker order: socket `i` of
/// the kernel's group is worker `i`'s (see [`GroupMember`]).
#[derive(Debug)]
struct UdpGroup {
    /// The address (with the port the first socket got, if 0 was configured).
    addr: SocketAddr,
    members: Vec<GroupMember>,
}

impl Shared {
    /// The shared state of a dataplane about to start `config`. The namespace of the
    /// calling thread is the dataplane's.
    pub(super) fn new(config: DataplaneConfig, events: SyncSender<DataplaneEvent>) -> Arc<Self> {
        let netns = match NetnsHandle::current() {
            Ok(ns) => Some(Arc::new(ns)),
            Err(e) => {
                tracing::warn!(error = %e, "workers added later will open their sockets in the namespace of the thread adding them");
                None
            }
        };
        let groups = config
            .udp_bind
            .iter()
            .map(|&addr| UdpGroup {
                addr,
                members: Vec::new(),
            })
            .collect();
        let device_group = ring::rand::generate::<[u8; 4]>(&ring::rand::SystemRandom::new())
            .map(|g| u32::from_ne_bytes(g.expose()))
            .unwrap_or_else(|_| std::process::id())
            | 0x8000_0000;
        Arc::new(Self {
            free: ArrayQueue::new((config.handoff_capacity * config.workers).max(1)),
            device_group,
            stop: AtomicBool::new(false),
            fences: config.engine.fences.clone(),
            events,
            control: Mutex::new(Control {
                config,
                netns,
                workers: Vec::new(),
                routes: Routes::default(),
                spd: Arc::new(Spd::new()),
                groups,
                raw_owner: None,
            }),
        })
    }

    /// The control state. A panic while it was held (none is expected: nothing in
    /// here panics) leaves it consistent enough to go on, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the configured number of workers, one after the other, then the UDP
    /// steering.
    pub(super) fn start_workers(self: &Arc<Self>) -> Result<(), StartError> {
        let mut ctl = self.lock();
        for id in 0..ctl.config.workers {
            self.spawn(&mut ctl, id == 0)?;
        }
        ctl.resteer();
        Ok(())
    }

    /// Starts one worker with the next index and waits until it has opened its
    /// descriptors (in the dataplane's namespace, on its own thread). Called with the
    /// control lock held, so the kernel numbers its UDP sockets after every earlier
    /// worker's, and it gets the routes as they are.
    fn spawn(
        self: &Arc<Self>,
        ctl: &mut Control,
        configure_devices: bool,
    ) -> Result<usize, StartError> {
        let id = ctl.workers.len();
        let peer = Arc::new(Peer {
            wake: EventFd::new().map_err(io_err("eventfd"))?,
            handoff: ArrayQueue::new(ctl.config.handoff_capacity),
            stop: AtomicBool::new(false),
        });
        let mut peers: Vec<Arc<Peer>> = ctl.workers.iter().map(|e| Arc::clone(&e.peer)).collect();
        peers.push(Arc::clone(&peer));
        let (commands, commands_rx) = mpsc::channel();
        let open_raw = ctl.raw_owner.is_none() && (ctl.config.raw_esp || ctl.config.raw_ah);
        let init = WorkerInit {
            id,
            config: ctl.config.clone(),
            udp: ctl.groups.iter().map(|g| g.addr).collect(),
            configure_devices,
            raw_rx: open_raw,
            shared: Arc::clone(self),
            peers,
            routes: ctl.routes.clone(),
            commands: commands_rx,
        };
        let engine_config = ctl.config.engine.clone();
        let spd = Arc::clone(&ctl.spd);
        let netns = ctl.netns.clone();
        let (init_tx, init_rx) = mpsc::sync_channel(1);
        let name = format!("spu-{id}");
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Some(ns) = netns
                    && let Err(source) = ns.enter()
                {
                    let _ = init_tx.send(Err(StartError::Io {
                        what: "entering the dataplane's network namespace".into(),
                        source,
                    }));
                    return;
                }
                match Worker::open(init) {
                    Ok((worker, members)) => {
                        if init_tx.send(Ok(members)).is_ok() {
                            worker_main(worker, engine_config, spd);
                        }
                    }
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                    }
                }
            })
            .map_err(io_err(format!("spawning {name}")))?;
        let members = match init_rx.recv() {
            Ok(Ok(members)) => members,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StartError::Io {
                    what: format!("starting {name}"),
                    source: io::Error::other("the thread ended without a word"),
                });
            }
        };
        for (g, m) in ctl.groups.iter_mut().zip(members) {
            if g.members.is_empty()
                && let Ok(addr) = m.local_addr()
            {
                g.addr = addr;
            }
            g.members.push(m);
        }
        if open_raw {
            ctl.raw_owner = Some(id);
        }
        for e in ctl.workers.iter().filter(|e| !e.failed) {
            if e.commands.send(Command::AddPeer(Arc::clone(&peer))).is_ok() {
                e.peer.wake.wake();
            }
        }
        ctl.workers.push(Entry {
            commands,
            peer,
            failed: false,
            thread: Some(thread),
        });
        Ok(id)
    }

    /// [`super::DataplaneHandle::add_worker`].
    pub(super) fn add_worker(self: &Arc<Self>) -> Result<usize, ControlError> {
        let mut ctl = self.lock();
        if self.stop.load(Ordering::Acquire) {
            return Err(ControlError::Stopped);
        }
        // With no worker left the TUN devices went away with their last queue: the new
        // worker creates them again.
        let configure = ctl.workers.iter().all(|e| e.failed);
        let id = self
            .spawn(&mut ctl, configure)
            .map_err(ControlError::Start)?;
        ctl.resteer();
        drop(ctl);
        tracing::info!(worker = id, "SPU worker added");
        Ok(id)
    }

    /// [`super::DataplaneHandle::fail_worker`].
    pub(super) fn fail_worker(&self, worker: usize) -> Result<(), ControlError> {
        {
            let mut ctl = self.lock();
            let entry = ctl
                .workers
                .get(worker)
                .ok_or(ControlError::NoSuchWorker(worker))?;
            if entry.failed {
                return Ok(());
            }
            if ctl.live().count() == 1 {
                return Err(ControlError::LastWorker(worker));
            }
            ctl.mark_failed(worker);
        }
        self.announce_failure(worker);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let thread = loop {
            let mut ctl = self.lock();
            let Some(slot) = ctl.workers.get_mut(worker).map(|e| &mut e.thread) else {
                return Ok(());
            };
            match slot {
                Some(t) if !t.is_finished() => {}
                _ => break slot.take(),
            }
            drop(ctl);
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout(worker));
            }
            std::thread::sleep(EXIT_POLL);
        };
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!(worker, "SPU worker thread panicked while ending");
        }
        Ok(())
    }

    /// Marks `worker` failed after its loop ended by itself (a panic, a broken event
    /// loop): nothing if it already was.
    pub(super) fn mark_failed(&self, worker: usize) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let marked = self.lock().mark_failed(worker);
        if marked {
            self.announce_failure(worker);
        }
    }

    /// Gives the raw receive sockets of a failed worker to the first live worker, or
    /// closes them if there is none (the next worker started opens new ones).
    pub(super) fn adopt_raw(&self, raw: Vec<RawReceiver>) {
        if raw.is_empty() {
            return;
        }
        let mut ctl = self.lock();
        let owner = ctl.live().next();
        ctl.raw_owner = owner;
        if let Some(e) = ctl.raw_owner.and_then(|w| ctl.workers.get(w))
            && e.commands.send(Command::AdoptRaw(raw)).is_ok()
        {
            e.peer.wake.wake();
        }
    }

    /// Reports a failure to the control plane, waiting a little for room in the event
    /// channel: unlike a lost engine event, a lost failure would leave SAs uninstalled.
    fn announce_failure(&self, worker: usize) {
        tracing::warn!(worker, "SPU worker failed");
        let mut event = DataplaneEvent::WorkerFailed { worker };
        let deadline = Instant::now() + EVENT_PATIENCE;
        loop {
            match self.events.try_send(event) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(e)) if Instant::now() < deadline => {
                    event = e;
                    std::thread::sleep(EXIT_POLL);
                }
                Err(TrySendError::Full(_)) => {
                    tracing::error!(
                        worker,
                        "event channel full: the worker failure event is lost"
                    );
                    return;
                }
            }
        }
    }

    /// Queues `cmd` for `worker` and wakes it.
    pub(super) fn send(&self, worker: usize, cmd: Command) -> Result<(), ControlError> {
        let ctl = self.lock();
        let e = ctl
            .workers
            .get(worker)
            .ok_or(ControlError::NoSuchWorker(worker))?;
        if e.failed {
            return Err(ControlError::WorkerFailed(worker));
        }
        e.commands
            .send(cmd)
            .map_err(|_| ControlError::WorkerGone(worker))?;
        e.peer.wake.wake();
        Ok(())
    }

    /// Records a route and replicates it into every live worker. A route to a failed
    /// worker is refused.
    pub(super) fn broadcast(&self, route: Route) -> Result<(), ControlError> {
        let mut ctl = self.lock();
        if let Some(w) = route.target() {
            match ctl.workers.get(w) {
                None => return Err(ControlError::NoSuchWorker(w)),
                Some(e) if e.failed => return Err(ControlError::WorkerFailed(w)),
                Some(_) => {}
            }
        }
        ctl.replicate(route);
        Ok(())
    }

    /// Applies `edit` to a copy of the published SPD and, if it succeeds, publishes the
    /// copy to every live worker. Under the control lock, so edits are serialised and a
    /// worker being started gets either the old SPD or the new one, and the command
    /// with the new one if it got the old.
    pub(super) fn publish_spd<T, E>(
        &self,
        edit: impl FnOnce(&mut Spd) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut ctl = self.lock();
        let mut spd = Spd::clone(&ctl.spd);
        let out = edit(&mut spd)?;
        ctl.spd = Arc::new(spd);
        for e in ctl.workers.iter().filter(|e| !e.failed) {
            // A worker that is ending has no use for it.
            if e.commands
                .send(Command::SetSpd(Arc::clone(&ctl.spd)))
                .is_ok()
            {
                e.peer.wake.wake();
            }
        }
        Ok(out)
    }

    /// The SPD published last.
    pub(super) fn spd(&self) -> Arc<Spd> {
        Arc::clone(&self.lock().spd)
    }

    /// Forgets the anchor of inbound `spi` if it is still `worker`: an SA moved to
    /// another worker (installed there first, then removed here) keeps its new route.
    pub(super) fn withdraw_spi(&self, spi: u32, worker: usize) {
        let mut ctl = self.lock();
        if ctl.routes.spi.get(&spi) == Some(&worker) {
            ctl.replicate(Route::Spi(spi, None));
        }
    }

    /// Number of worker indices handed out.
    pub(super) fn worker_count(&self) -> usize {
        self.lock().workers.len()
    }

    /// Indices of the live workers.
    pub(super) fn live_workers(&self) -> Vec<usize> {
        self.lock().live().collect()
    }

    /// The live worker with the lowest index.
    pub(super) fn first_live(&self) -> Option<usize> {
        self.lock().live().next()
    }

    /// True if `worker` exists and has failed.
    pub(super) fn is_failed(&self, worker: usize) -> bool {
        self.lock().workers.get(worker).is_some_and(|e| e.failed)
    }

    /// Stops every worker after its current batch, waits for them, and closes the UDP
    /// sockets kept for steering (so the port is free again).
    pub(super) fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.delete_devices();
        let threads: Vec<JoinHandle<()>> = {
            let mut ctl = self.lock();
            for e in &ctl.workers {
                e.peer.wake.wake();
            }
            ctl.workers
                .iter_mut()
                .filter_map(|e| e.thread.take())
                .collect()
        };
        // Joined without the lock: an ending worker may need it.
        for t in threads {
            if t.join().is_err() {
                tracing::error!("an SPU worker thread panicked");
            }
        }
        for g in &mut self.lock().groups {
            g.members.clear();
        }
    }

    /// Deletes the TUN devices in one batch while the workers still hold their queues
    /// (after the last close the kernel would unregister them one by one); from a
    /// thread in the dataplane's namespace.
    fn delete_devices(&self) {
        let netns = self.lock().netns.clone();
        let group = self.device_group;
        let deleted = std::thread::scope(|s| {
            s.spawn(|| {
                if let Some(ns) = netns {
                    ns.enter()?;
                }
                crate::io::link::delete_group(group)
            })
            .join()
        });
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, group, "deleting the TUN devices at shutdown (they go when their queues close)");
            }
            Err(_) => tracing::error!("the thread deleting the TUN devices panicked"),
        }
    }
}

impl Control {
    /// Records `route` and sends it to every live worker.
    fn replicate(&mut self, route: Route) {
        self.routes.apply(route);
        for e in self.workers.iter().filter(|e| !e.failed) {
            // A worker that is ending has no use for it.
            if e.commands.send(Command::Route(route)).is_ok() {
                e.peer.wake.wake();
            }
        }
    }

    /// Indices of the live workers, in order.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.failed)
            .map(|(i, _)| i)
    }

    /// Fails `worker` once: asks it to stop, withdraws every route to it (here and in
    /// every live worker), parks its UDP sockets and steers around them. False if it
    /// was failed already.
    fn mark_failed(&mut self, worker: usize) -> bool {
        let Some(e) = self.workers.get_mut(worker) else {
            return false;
        };
        if e.failed {
            return false;
        }
        e.failed = true;
        e.peer.stop.store(true, Ordering::Release);
        e.peer.wake.wake();
        self.routes.forget(worker);
        for e in self.workers.iter().filter(|e| !e.failed) {
            if e.commands.send(Command::WorkerDown(worker)).is_ok() {
                e.peer.wake.wake();
            }
        }
        for g in &self.groups {
            if let Some(m) = g.members.get(worker) {
                m.park();
            }
        }
        self.resteer();
        true
    }

    /// Attaches the UDP steering program that fits the workers now: slot `i` on worker
    /// `i`'s socket if it is live, a failed worker's slot spread over the live ones,
    /// datagrams without SPI on the first live worker. Needed once steering is
    /// configured and there are two workers, and in any case once a worker failed
    /// (the kernel's flow hash would pick its socket).
    fn resteer(&self) {
        let n = self.workers.len();
        let live: Vec<u32> = self
            .live()
            .map(|w| u32::try_from(w).unwrap_or(u32::MAX))
            .collect();
        let any_failed = live.len() < n;
        let wanted = any_failed || (self.config.udp_spi_steering && n > 1);
        let Some(&first) = live.first() else {
            return;
        };
        if !wanted {
            return;
        }
        let targets = self
            .workers
            .iter()
            .enumerate()
            .map(|(slot, e)| {
                if e.failed {
                    live[slot % live.len()]
                } else {
                    u32::try_from(slot).unwrap_or(u32::MAX)
                }
            })
            .collect();
        let steering = SpiSteering {
            targets,
            no_spi: first,
        };
        for g in &self.groups {
            let Some(m) = g.members.first() else {
                continue;
            };
            if let Err(e) = m.steer_by_spi(&steering) {
                tracing::warn!(addr = %g.addr, error = %e, "no SPI steering on the UDP socket group; packets will be handed over");
            }
        }
    }
}
