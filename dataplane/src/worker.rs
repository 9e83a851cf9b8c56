//! SPU workers: threads that run one [`Engine`] each over the packet I/O of [`crate::io`].
//!
//! # Threads and ownership
//!
//! [`Dataplane::start`] opens every descriptor on the calling thread (so errors come back
//! synchronously, and a caller that entered a network namespace gets everything inside
//! it), then spawns `workers` threads named `spu-N`. Worker N owns:
//! - queue N of every TUN device (multi-queue when there is more than one worker; the
//!   kernel spreads inner flows over the queues),
//! - its own UDP NAT-T sockets, bound with `SO_REUSEPORT` (the kernel spreads peers over
//!   the workers by flow hash),
//! - its own raw send sockets,
//! - for worker 0 only, the raw ESP/AH receive sockets (every raw socket receives its own
//!   copy of each packet, so there must be exactly one per protocol),
//! - an eventfd for wakeups and its `Engine`, built on the thread itself.
//!
//! # SA anchors and handoff
//!
//! Every SA lives in exactly one worker's engine, its anchor, chosen by the control plane
//! ([`DataplaneHandle::install_sa`]). The kernel does not know anchors, so a worker may
//! read a packet for an SA anchored elsewhere: an inbound packet whose SPI is anchored on
//! another worker, or an inner packet from a TUN queue whose tunnel's outbound SA is. Such
//! packets are moved (not copied) to the anchor through its bounded lock-free handoff
//! queue (`crossbeam_queue::ArrayQueue`) and an eventfd wake. The sending worker takes a
//! replacement buffer from a shared lock-free free list, and the anchor returns the
//! buffer it swapped out, so after warm-up no buffer is allocated. A full queue drops the
//! packet as [`DropReason::QueueFull`].
//!
//! For ESP in UDP most of that hop is avoided: each worker's NAT-T socket is bound in
//! worker order and the group gets a classic BPF program that picks socket
//! `SPI % workers`, so inbound SPIs chosen with [`spi_for_worker`] arrive on their anchor
//! directly. Raw ESP/AH (one receive socket) and TUN queues still rely on the handoff.
//!
//! Which worker anchors what (SPI → worker, tunnel → worker) is replicated into every
//! worker as plain maps by route commands, so the per-packet decision takes no lock.
//! Packets that carry no SPI (IKE, keepalives, non-first fragments) or whose SPI or tunnel
//! is unknown are processed where they were read; the engine then counts them.
//!
//! # The loop
//!
//! Run to completion: wait on epoll; drain control commands; then for each ready source
//! read one bounded batch (at most `batch` packets) into the worker's preallocated
//! buffers, run each through the engine, and send the results (handoffs, then per batch:
//! ESP-in-UDP with UDP GSO, everything else with one raw `sendmmsg`, decrypted packets
//! coalesced into TUN super-packets). Level-triggered epoll brings back whatever a batch
//! left; datagrams a UDP socket has staged are read before the next wait. Engine events
//! and IKE messages go to the control side over a bounded channel.
//!
//! # Offloads
//!
//! With [`DataplaneConfig::tun_offload`] a TUN read returns a TCP (or UDP) super-packet
//! of up to 64 KiB, which [`crate::gso`] segments into wire-sized packets in the batch
//! buffers; when a super-packet does not fit in the buffers left, the packets read so
//! far are processed and sent first. Decrypted TCP segments of one flow are coalesced
//! back into one super-packet per TUN write. With [`DataplaneConfig::udp_gso`] the
//! engine leaves ESP-in-UDP tunnel packets without outer headers
//! ([`Engine::outbound_udp`]) and runs of equal-sized ones to the same peer go out with
//! one `sendmsg` (see [`crate::io::udp`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::buf::{DEFAULT_HEADROOM, PacketBuf};
use crate::drop::{DropCounters, DropReason};
use std::io::IoSlice;

use crate::engine::{
    Engine, EngineConfig, EngineError, EngineEvent, EngineStats, Inbound, Outbound, OutboundUdp,
    UdpMeta, UdpTransmit,
};
use crate::gso::{self, Gro, VNET_F_NEEDS_CSUM, VNET_GSO_NONE};
use crate::io::poll::{EventFd, Poller};
use crate::io::raw::{IPPROTO_AH, IPPROTO_ESP, RawReceiver, RawSender};
use crate::io::tun::{MAX_GSO_PARTS, Tun, TunError};
use crate::io::udp::{MAX_GSO_BYTES, MAX_GSO_SEGMENTS, UdpRecvMeta, UdpSocket};
use crate::ip;
use crate::sa::{Direction, SaConfig, SaKey, TunnelId};

/// How long control calls wait for a worker's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest sleep in epoll; only a backstop, since stop and commands wake the eventfd.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// Commands applied per loop iteration, so a flood of control traffic cannot starve
/// packets.
const COMMANDS_PER_ITERATION: usize = 64;
/// epoll token of the worker's eventfd; sources use their index plus one.
const WAKE_TOKEN: u64 = 0;
/// Batches read from one TUN queue per wakeup: super-packets fill a batch quickly, and
/// reading on (sending in between) saves epoll round trips without starving other
/// sources for long.
const TUN_BATCHES_PER_WAKEUP: usize = 4;

/// One route-based tunnel: a TUN device and the binding its SAs carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Binding of the outbound and inbound SAs of this tunnel.
    pub id: TunnelId,
    /// Interface name, e.g. `st0.0`.
    pub name: String,
    /// Interface MTU: the largest inner packet accepted.
    pub mtu: u32,
}

/// What [`Dataplane::start`] sets up.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Number of SPU worker threads (at least 1).
    pub workers: usize,
    /// TUN devices to create (one queue per worker each).
    pub tunnels: Vec<TunnelConfig>,
    /// Addresses of the UDP encapsulation sockets (usually `0.0.0.0:4500` and
    /// `[::]:4500`); each worker binds its own with `SO_REUSEPORT`. Empty: no ESP-in-UDP.
    pub udp_bind: Vec<SocketAddr>,
    /// Receive raw ESP (IP protocol 50).
    pub raw_esp: bool,
    /// Receive raw AH (IP protocol 51).
    pub raw_ah: bool,
    /// Also open the IPv6 raw receive sockets.
    pub ipv6: bool,
    /// Steer ESP-in-UDP to the worker `SPI % workers` in the kernel (see
    /// [`spi_for_worker`]). Without it the kernel spreads peers by flow hash and the
    /// receiving worker hands packets to their anchor, which pipelines one busy tunnel
    /// over two threads (receive, then crypto) at the cost of a queue hop per packet.
    pub udp_spi_steering: bool,
    /// Settings of every worker's engine.
    pub engine: EngineConfig,
    /// Packets read per source per wakeup; also the number of preallocated buffers.
    pub batch: usize,
    /// Open TUN devices with segmentation and checksum offloads (`IFF_VNET_HDR`): reads
    /// return super-packets that the worker segments, and decrypted TCP segments are
    /// coalesced into super-packets for the kernel. See [`crate::gso`].
    pub tun_offload: bool,
    /// Send tunnel-mode ESP in UDP through the UDP encapsulation sockets with UDP GSO
    /// instead of as complete packets through raw sockets. See [`crate::io::udp`].
    pub udp_gso: bool,
    /// Capacity of each worker's handoff queue.
    pub handoff_capacity: usize,
    /// Capacity of the event channel to the control side.
    pub event_capacity: usize,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            tunnels: Vec::new(),
            udp_bind: vec![
                SocketAddr::from(([0, 0, 0, 0], 4500)),
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 4500)),
            ],
            raw_esp: true,
            raw_ah: true,
            ipv6: true,
            udp_spi_steering: true,
            engine: EngineConfig::default(),
            batch: 128,
            tun_offload: true,
            udp_gso: true,
            handoff_capacity: 512,
            event_capacity: 4096,
        }
    }
}

/// Why the dataplane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `workers` was 0 or `batch` was 0.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A TUN device could not be set up.
    #[error(transparent)]
    Tun(#[from] TunError),
    /// A socket, epoll set or eventfd could not be set up.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// There is no worker with this index.
    #[error("no worker {0}")]
    NoSuchWorker(usize),
    /// The worker thread has stopped.
    #[error("worker {0} has stopped")]
    WorkerGone(usize),
    /// The worker did not answer in time.
    #[error("worker {0} did not answer within {REPLY_TIMEOUT:?}")]
    Timeout(usize),
    /// The engine refused the SA.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Something the control plane must handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneEvent {
    /// An engine event (lifetime, rekey, reservation) from a worker.
    Engine {
        /// The worker (SA anchor) that raised it.
        worker: usize,
        /// The event.
        event: EngineEvent,
    },
    /// An IKE message received on the NAT-T port (non-ESP marker removed).
    Ike {
        /// The peer.
        src: SocketAddr,
        /// Our address and port it arrived on.
        dst: SocketAddr,
        /// The IKE message.
        message: Vec<u8>,
    },
}

/// Counters of a worker's I/O, beside the engine's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Packets read from TUN queues (after segmentation).
    pub tun_rx: u64,
    /// Super-packets read from TUN queues and segmented.
    pub tun_rx_gso: u64,
    /// Packets written to TUN queues (counting each coalesced segment).
    pub tun_tx: u64,
    /// Coalesced super-packets written to TUN queues.
    pub tun_tx_gro: u64,
    /// Datagrams received on the UDP sockets.
    pub udp_rx: u64,
    /// Packets received on raw ESP/AH sockets.
    pub raw_rx: u64,
    /// Packets sent on raw sockets.
    pub raw_tx: u64,
    /// ESP-in-UDP packets sent on the UDP sockets.
    pub udp_tx: u64,
    /// `sendmsg` calls that sent them (one per GSO run).
    pub udp_tx_calls: u64,
    /// IKE messages passed to the control side.
    pub ike_rx: u64,
    /// Packets handed to another worker.
    pub handoff_out: u64,
    /// Packets received from other workers.
    pub handoff_in: u64,
    /// Events (engine or IKE) lost because the event channel was full.
    pub events_lost: u64,
    /// Drops by the I/O layer (`QueueFull`, `TxError`).
    pub drops: DropCounters,
}

/// A worker's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// The engine's per-SA counters and drops.
    pub engine: EngineStats,
    /// The I/O layer's counters and drops.
    pub io: IoCounters,
}

impl WorkerStats {
    /// Engine and I/O drops together.
    pub fn drops(&self) -> DropCounters {
        let mut d = self.engine.drops.clone();
        d.add(&self.io.drops);
        d
    }
}

/// Anchor map updates, replicated to every worker.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// Inbound SPI anchored on a worker (`None`: forget it).
    Spi(u32, Option<usize>),
    /// Tunnel whose outbound SA is anchored on a worker (`None`: forget it).
    Tunnel(TunnelId, Option<usize>),
}

enum Command {
    InstallSa(Box<SaConfig>, SyncSender<Result<(), EngineError>>),
    RemoveSa(SaKey, SyncSender<bool>),
    ExtendReservation(SaKey, u64, SyncSender<bool>),
    Route(Route),
    Stats(SyncSender<WorkerStats>),
    SendIke(SocketAddr, Vec<u8>),
}

/// A packet moved between workers, with what is needed to process it.
#[derive(Debug)]
struct Handoff {
    buf: PacketBuf,
    slot: Slot,
}

/// Where the packet in a batch buffer came from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Inner packet read from tunnel `TunnelId`.
    Tun(TunnelId),
    /// Datagram from the UDP encapsulation port.
    Udp(UdpMeta),
    /// Full IP packet from a raw ESP/AH socket.
    Ip,
}

/// What workers share: wakeups, handoff queues and the spare-buffer list.
#[derive(Debug)]
struct Shared {
    wake: Vec<EventFd>,
    handoff: Vec<ArrayQueue<Handoff>>,
    free: ArrayQueue<PacketBuf>,
    stop: AtomicBool,
}

/// Control handle: install and remove SAs, read counters, send IKE messages, without
/// stopping traffic. Commands are applied by the worker between batches.
#[derive(Debug, Clone)]
pub struct DataplaneHandle {
    commands: Vec<Sender<Command>>,
    shared: Arc<Shared>,
}

impl DataplaneHandle {
    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.commands.len()
    }

    fn send(&self, worker: usize, cmd: Command) -> Result<(), ControlError> {
        let tx = self
            .commands
            .get(worker)
            .ok_or(ControlError::NoSuchWorker(worker))?;
        tx.send(cmd).map_err(|_| ControlError::WorkerGone(worker))?;
        self.shared.wake[worker].wake();
        Ok(())
    }

    fn call<T>(
        &self,
        worker: usize,
        make: impl FnOnce(SyncSender<T>) -> Command,
    ) -> Result<T, ControlError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(worker, make(tx))?;
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => ControlError::Timeout(worker),
            mpsc::RecvTimeoutError::Disconnected => ControlError::WorkerGone(worker),
        })
    }

    fn broadcast(&self, route: Route) -> Result<(), ControlError> {
        (0..self.workers()).try_for_each(|w| self.send(w, Command::Route(route)))
    }

    /// Installs `sa` on worker `worker`, which becomes its anchor, then tells every worker
    /// to hand that SA's packets (inbound: by SPI; outbound: by tunnel binding) to it.
    pub fn install_sa(&self, worker: usize, sa: SaConfig) -> Result<(), ControlError> {
        let route = match sa.direction {
            Direction::Inbound => Route::Spi(sa.spi, Some(worker)),
            Direction::Outbound => Route::Tunnel(sa.binding, Some(worker)),
        };
        self.call(worker, |tx| Command::InstallSa(Box::new(sa), tx))??;
        self.broadcast(route)
    }

    /// Removes an SA from its anchor `worker`; true if it was installed there. The anchor
    /// route is withdrawn for inbound SAs; for outbound ones it stays, since a rekeyed SA
    /// of the same tunnel normally takes over on the same anchor.
    pub fn remove_sa(&self, worker: usize, key: SaKey) -> Result<bool, ControlError> {
        let removed = self.call(worker, |tx| Command::RemoveSa(key, tx))?;
        if removed && key.direction == Direction::Inbound {
            self.broadcast(Route::Spi(key.spi, None))?;
        }
        Ok(removed)
    }

    /// Moves the routing of `tunnel`'s outbound packets to `worker` (or back to whichever
    /// worker reads them, with `None`).
    pub fn route_tunnel(
        &self,
        tunnel: TunnelId,
        worker: Option<usize>,
    ) -> Result<(), ControlError> {
        self.broadcast(Route::Tunnel(tunnel, worker))
    }

    /// Raises an outbound SA's sequence reservation (cluster mode).
    pub fn extend_reservation(
        &self,
        worker: usize,
        key: SaKey,
        limit: u64,
    ) -> Result<bool, ControlError> {
        self.call(worker, |tx| Command::ExtendReservation(key, limit, tx))
    }

    /// A snapshot of worker `worker`'s counters.
    pub fn stats(&self, worker: usize) -> Result<WorkerStats, ControlError> {
        self.call(worker, Command::Stats)
    }

    /// Counters of every worker.
    pub fn stats_all(&self) -> Result<Vec<WorkerStats>, ControlError> {
        (0..self.workers()).map(|w| self.stats(w)).collect()
    }

    /// Sends an IKE message to `dst` from the NAT-T socket (the non-ESP marker is
    /// prepended). Fire and forget, like any datagram: IKE retransmits.
    pub fn send_ike(&self, dst: SocketAddr, message: Vec<u8>) -> Result<(), ControlError> {
        self.send(0, Command::SendIke(dst, message))
    }
}

/// A running set of SPU workers. Dropping it stops and joins them.
#[derive(Debug)]
pub struct Dataplane {
    handle: DataplaneHandle,
    events: Receiver<DataplaneEvent>,
    threads: Vec<JoinHandle<()>>,
}

impl Dataplane {
    /// Opens all devices and sockets on the calling thread (and thus in its network
    /// namespace) and starts the workers.
    pub fn start(config: DataplaneConfig) -> Result<Dataplane, StartError> {
        let n = config.workers;
        if n == 0 {
            return Err(StartError::Config("workers must be at least 1"));
        }
        if config.batch == 0 || config.handoff_capacity == 0 || config.event_capacity == 0 {
            return Err(StartError::Config(
                "batch, handoff_capacity and event_capacity must be at least 1",
            ));
        }

        // TUN queues: tunnel t's queue w goes to worker w.
        let mut tun_queues: Vec<Vec<(TunnelId, Tun)>> = (0..n).map(|_| Vec::new()).collect();
        for t in &config.tunnels {
            let queues = Tun::open_queues(&t.name, n, config.tun_offload)?;
            if let Some(q) = queues.first() {
                q.set_mtu(t.mtu)?;
                q.set_up()?;
            }
            for (w, q) in queues.into_iter().enumerate() {
                tun_queues[w].push((t.id, q));
            }
        }

        let shared = Arc::new(Shared {
            wake: (0..n)
                .map(|_| EventFd::new())
                .collect::<io::Result<_>>()
                .map_err(io_err("eventfd"))?,
            handoff: (0..n)
                .map(|_| ArrayQueue::new(config.handoff_capacity))
                .collect(),
            free: ArrayQueue::new(config.handoff_capacity * n),
            stop: AtomicBool::new(false),
        });
        let (event_tx, events) = mpsc::sync_channel(config.event_capacity);

        // UDP sockets, bound in worker order per address so that the reuseport group index
        // of worker w's socket is w, which SPI steering relies on.
        let mut udp_per_worker: Vec<Vec<UdpSocket>> = (0..n).map(|_| Vec::new()).collect();
        for addr in &config.udp_bind {
            for sockets in udp_per_worker.iter_mut() {
                let s =
                    UdpSocket::bind(*addr, n > 1).map_err(io_err(format!("UDP socket {addr}")))?;
                sockets.push(s);
            }
            let steer = n > 1 && config.udp_spi_steering;
            if let (true, Some(first)) = (steer, udp_per_worker[0].last()) {
                let count = u32::try_from(n).unwrap_or(u32::MAX);
                if let Err(e) = first.steer_by_spi(count) {
                    tracing::warn!(%addr, error = %e, "no SPI steering on the UDP socket group; packets will be handed over");
                }
            }
        }

        let mut workers = Vec::with_capacity(n);
        let mut commands = Vec::with_capacity(n);
        for ((id, tuns), udp) in tun_queues.into_iter().enumerate().zip(udp_per_worker) {
            let mut raw_rx = Vec::new();
            if id == 0 {
                let families: &[bool] = if config.ipv6 {
                    &[false, true]
                } else {
                    &[false]
                };
                for &v6 in families {
                    for (on, proto) in [(config.raw_esp, IPPROTO_ESP), (config.raw_ah, IPPROTO_AH)]
                    {
                        if on {
                            raw_rx.push(
                                RawReceiver::new(v6, proto)
                                    .map_err(io_err(format!("raw socket for protocol {proto}")))?,
                            );
                        }
                    }
                }
            }
            let tx = RawSender::new().map_err(io_err("raw send socket"))?;
            let (cmd_tx, cmd_rx) = mpsc::channel();
            commands.push(cmd_tx);
            let sources = tuns.len() + udp.len() + raw_rx.len();
            let poller = Poller::new(sources + 1).map_err(io_err("epoll"))?;
            poller
                .add(&shared.wake[id], WAKE_TOKEN)
                .map_err(io_err("epoll add"))?;
            let mut token = WAKE_TOKEN;
            let mut next = || {
                token += 1;
                token
            };
            for (_, t) in &tuns {
                poller.add(t, next()).map_err(io_err("epoll add"))?;
            }
            for u in &udp {
                poller.add(u, next()).map_err(io_err("epoll add"))?;
            }
            for r in &raw_rx {
                poller.add(r, next()).map_err(io_err("epoll add"))?;
            }
            let tunnel_index = tuns
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, i))
                .collect();
            workers.push(Worker {
                id,
                tuns,
                tunnel_index,
                udp,
                raw_rx,
                tx,
                poller,
                commands: cmd_rx,
                shared: Arc::clone(&shared),
                events: event_tx.clone(),
                spi_owner: HashMap::new(),
                tunnel_owner: HashMap::new(),
                bufs: (0..config.batch).map(|_| PacketBuf::default()).collect(),
                slots: vec![Slot::Ip; config.batch],
                udp_meta: vec![UdpRecvMeta::default(); config.batch],
                tx_pending: Vec::with_capacity(config.batch),
                udp_pending: Vec::with_capacity(config.batch),
                udp_gso: config.udp_gso,
                gro: Gro::default(),
                spare: PacketBuf::default(),
                ready: Vec::with_capacity(sources + 1),
                wake_targets: vec![false; n],
                counters: IoCounters::default(),
            });
        }

        let handle = DataplaneHandle {
            commands,
            shared: Arc::clone(&shared),
        };
        let mut threads = Vec::with_capacity(n);
        for w in workers {
            let engine_config = config.engine.clone();
            let name = format!("spu-{}", w.id);
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || w.run(Engine::new(engine_config)));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop_and_join(&shared, &mut threads);
                    return Err(StartError::Io {
                        what: format!("spawning {name}"),
                        source: e,
                    });
                }
            }
        }
        Ok(Dataplane {
            handle,
            events,
            threads,
        })
    }

    /// A control handle (cheap to clone, usable from any thread).
    pub fn handle(&self) -> DataplaneHandle {
        self.handle.clone()
    }

    /// Engine events and IKE messages from all workers.
    pub fn events(&self) -> &Receiver<DataplaneEvent> {
        &self.events
    }

    /// Stops the workers after their current batch and waits for them.
    pub fn shutdown(mut self) {
        stop_and_join(&self.handle.shared, &mut self.threads);
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        stop_and_join(&self.handle.shared, &mut self.threads);
    }
}

fn stop_and_join(shared: &Shared, threads: &mut Vec<JoinHandle<()>>) {
    shared.stop.store(true, Ordering::Release);
    for w in &shared.wake {
        w.wake();
    }
    for t in threads.drain(..) {
        if t.join().is_err() {
            tracing::error!("an SPU worker panicked");
        }
    }
}

/// One SPU worker's state, moved onto its thread.
struct Worker {
    id: usize,
    tuns: Vec<(TunnelId, Tun)>,
    tunnel_index: HashMap<TunnelId, usize>,
    udp: Vec<UdpSocket>,
    raw_rx: Vec<RawReceiver>,
    tx: RawSender,
    poller: Poller,
    commands: Receiver<Command>,
    shared: Arc<Shared>,
    events: SyncSender<DataplaneEvent>,
    spi_owner: HashMap<u32, usize>,
    tunnel_owner: HashMap<TunnelId, usize>,
    /// The batch buffers, allocated once.
    bufs: Vec<PacketBuf>,
    slots: Vec<Slot>,
    udp_meta: Vec<UdpRecvMeta>,
    /// (buffer index, destination) of packets to send on the raw socket.
    tx_pending: Vec<(usize, IpAddr)>,
    /// (buffer index, UDP socket index, header fields) of ESP packets to send on a UDP
    /// socket.
    udp_pending: Vec<(usize, usize, UdpTransmit)>,
    /// Whether ESP in UDP goes through the UDP sockets.
    udp_gso: bool,
    /// Decrypted packets waiting for their (coalesced) TUN write, tagged with the TUN.
    gro: Gro,
    /// Swapped with the engine's fragment buffers by `poll_fragment`.
    spare: PacketBuf,
    ready: Vec<u64>,
    wake_targets: Vec<bool>,
    counters: IoCounters,
}

impl Worker {
    fn run(mut self, mut engine: Engine) {
        tracing::debug!(worker = self.id, "SPU worker started");
        while !self.shared.stop.load(Ordering::Acquire) {
            self.ready.clear();
            let staged = self.udp.iter().any(UdpSocket::has_pending);
            let wait = if staged { Duration::ZERO } else { IDLE_WAIT };
            match self.poller.wait(Some(wait)) {
                Ok(tokens) => self.ready.extend(tokens),
                Err(e) => {
                    tracing::error!(worker = self.id, error = %e, "epoll_wait failed; worker stops");
                    break;
                }
            }
            for k in 0..self.ready.len() {
                let token = self.ready[k];
                if token == WAKE_TOKEN {
                    self.shared.wake[self.id].drain();
                    self.apply_commands(&mut engine);
                    self.drain_handoffs(&mut engine);
                } else {
                    self.read_source(&mut engine, token);
                }
            }
            // Datagrams a GRO train left staged: one more batch each before waiting.
            for u in 0..self.udp.len() {
                if self.udp[u].has_pending() {
                    let token = (1 + self.tuns.len() + u) as u64;
                    self.read_source(&mut engine, token);
                }
            }
            self.forward_events(&mut engine);
        }
        tracing::debug!(worker = self.id, "SPU worker stopped");
    }

    fn apply_commands(&mut self, engine: &mut Engine) {
        for _ in 0..COMMANDS_PER_ITERATION {
            let Ok(cmd) = self.commands.try_recv() else {
                return;
            };
            match cmd {
                Command::InstallSa(sa, reply) => {
                    let _ = reply.send(engine.install_sa(*sa));
                }
                Command::RemoveSa(key, reply) => {
                    let _ = reply.send(engine.remove_sa(&key));
                }
                Command::ExtendReservation(key, limit, reply) => {
                    let _ = reply.send(engine.extend_reservation(&key, limit));
                }
                Command::Route(Route::Spi(spi, owner)) => {
                    set_route(&mut self.spi_owner, spi, owner)
                }
                Command::Route(Route::Tunnel(t, owner)) => {
                    set_route(&mut self.tunnel_owner, t, owner)
                }
                Command::Stats(reply) => {
                    let _ = reply.send(WorkerStats {
                        worker: self.id,
                        engine: engine.stats(),
                        io: self.counters.clone(),
                    });
                }
                Command::SendIke(dst, message) => self.send_ike(dst, &message),
            }
        }
        // More commands are queued: come back after the next packets.
        self.shared.wake[self.id].wake();
    }

    fn send_ike(&mut self, dst: SocketAddr, message: &[u8]) {
        let sock = self
            .udp
            .iter_mut()
            .find(|s| s.local_addr().is_ipv4() == dst.is_ipv4());
        let res = match sock {
            Some(s) => s.send_ike(dst, message).map(|_| ()),
            None => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no UDP socket of that family",
            )),
        };
        if let Err(e) = res {
            self.counters.drops.count(DropReason::TxError);
            tracing::warn!(worker = self.id, %dst, error = %e, "sending IKE message failed");
        }
    }

    /// Takes up to one batch from this worker's handoff queue and processes it here,
    /// without another anchor check (the sender already made it).
    fn drain_handoffs(&mut self, engine: &mut Engine) {
        let queue = &self.shared.handoff[self.id];
        let mut n = 0;
        while n < self.bufs.len() {
            let Some(mut h) = queue.pop() else {
                break;
            };
            std::mem::swap(&mut self.bufs[n], &mut h.buf);
            let _ = self.shared.free.push(h.buf);
            self.slots[n] = h.slot;
            n += 1;
        }
        if n == self.bufs.len() && !queue.is_empty() {
            self.shared.wake[self.id].wake();
        }
        self.counters.handoff_in += n as u64;
        let now = Instant::now();
        for i in 0..n {
            self.process(engine, now, i);
        }
        self.flush_tx();
        self.flush_tun();
    }

    fn read_source(&mut self, engine: &mut Engine, token: u64) {
        let Ok(idx) = usize::try_from(token - 1) else {
            return;
        };
        for b in &mut self.bufs {
            b.reset(DEFAULT_HEADROOM);
        }
        let (tuns, udps) = (self.tuns.len(), self.udp.len());
        let n = if idx < tuns {
            self.read_tun(engine, idx)
        } else if idx < tuns + udps {
            self.read_udp(idx - tuns)
        } else {
            self.read_raw(idx - tuns - udps)
        };
        self.process_batch(engine, n);
    }

    /// Runs `bufs[..n]` through the engine (or hands them to their anchor) and sends
    /// the results.
    fn process_batch(&mut self, engine: &mut Engine, n: usize) {
        if n == 0 {
            return;
        }
        let now = Instant::now();
        for i in 0..n {
            match self.owner(i) {
                Some(w) if w != self.id => self.hand_off(i, w),
                _ => self.process(engine, now, i),
            }
        }
        self.flush_tx();
        self.flush_tun();
        for w in 0..self.wake_targets.len() {
            if std::mem::take(&mut self.wake_targets[w]) {
                self.shared.wake[w].wake();
            }
        }
    }

    /// Reads TUN queue `idx` into the batch buffers, segmenting super-packets; returns
    /// the number of packets left in `bufs` to process. When a super-packet does not fit
    /// in the buffers left, what was read before it is processed first.
    fn read_tun(&mut self, engine: &mut Engine, idx: usize) -> usize {
        let tunnel = self.tuns[idx].0;
        let mut n = 0;
        let mut rounds = 1;
        while n < self.bufs.len() && rounds <= TUN_BATCHES_PER_WAKEUP {
            self.bufs[n].reset(DEFAULT_HEADROOM);
            let vnet = match self.tuns[idx].1.recv(&mut self.bufs[n]) {
                Ok(v) => v,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        let name = self.tuns[idx].1.name();
                        tracing::warn!(worker = self.id, tun = name, error = %e, "TUN read failed");
                    }
                    break;
                }
            };
            if vnet.gso_type == VNET_GSO_NONE {
                if vnet.flags & VNET_F_NEEDS_CSUM != 0
                    && gso::complete_checksum(self.bufs[n].data_mut(), &vnet).is_err()
                {
                    self.counters.drops.count(DropReason::BadIpHeader);
                    continue;
                }
                self.slots[n] = Slot::Tun(tunnel);
                self.counters.tun_rx += 1;
                n += 1;
                continue;
            }
            let count = match gso::segment_count(self.bufs[n].data(), &vnet) {
                Ok(c) if c < self.bufs.len() => c,
                Ok(_) => {
                    self.counters.drops.count(DropReason::Oversize);
                    continue;
                }
                Err(e) => {
                    self.counters.drops.count(gso_drop(e));
                    continue;
                }
            };
            if n + 1 + count > self.bufs.len() {
                // After the last allowed round this super-packet is still segmented, but
                // nothing more is read until the next wakeup.
                self.process_batch(engine, n);
                self.bufs.swap(0, n);
                n = 0;
                rounds += 1;
            }
            let (head, tail) = self.bufs.split_at_mut(n + 1);
            match gso::segment_into(head[n].data(), &vnet, tail, DEFAULT_HEADROOM) {
                Ok(k) => {
                    // Segments to n..n+k, the super-packet's buffer behind them.
                    self.bufs[n..=n + k].rotate_left(1);
                    self.slots[n..n + k].fill(Slot::Tun(tunnel));
                    self.counters.tun_rx += k as u64;
                    self.counters.tun_rx_gso += 1;
                    n += k;
                }
                Err(e) => self.counters.drops.count(gso_drop(e)),
            }
        }
        n
    }

    fn read_udp(&mut self, idx: usize) -> usize {
        match self.udp[idx].recv_batch(&mut self.bufs, &mut self.udp_meta) {
            Ok(batch) => {
                for i in 0..batch.datagrams {
                    let m = self.udp_meta[i];
                    self.slots[i] = Slot::Udp(UdpMeta {
                        src: m.src,
                        dst: m.dst,
                        ecn: m.ecn,
                    });
                }
                self.counters.udp_rx += batch.datagrams as u64;
                batch.datagrams
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!(worker = self.id, error = %e, "UDP receive failed");
                }
                0
            }
        }
    }

    fn read_raw(&mut self, idx: usize) -> usize {
        let Some(sock) = self.raw_rx.get(idx) else {
            return 0;
        };
        match sock.recv_batch(&mut self.bufs) {
            Ok(n) => {
                self.slots[..n].fill(Slot::Ip);
                self.counters.raw_rx += n as u64;
                n
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!(worker = self.id, error = %e, "raw receive failed");
                }
                0
            }
        }
    }

    /// The anchor worker of the packet in buffer `i`, if one is known.
    fn owner(&self, i: usize) -> Option<usize> {
        match self.slots[i] {
            Slot::Tun(t) => self.tunnel_owner.get(&t).copied(),
            Slot::Udp(_) => {
                let spi = udp_spi(self.bufs[i].data())?;
                self.spi_owner.get(&spi).copied()
            }
            Slot::Ip => {
                let spi = ip_spi(self.bufs[i].data())?;
                self.spi_owner.get(&spi).copied()
            }
        }
    }

    /// Moves buffer `i` to worker `w`'s handoff queue, replacing it with a spare.
    fn hand_off(&mut self, i: usize, w: usize) {
        let spare = self.shared.free.pop().unwrap_or_default();
        let buf = std::mem::replace(&mut self.bufs[i], spare);
        match self.shared.handoff[w].push(Handoff {
            buf,
            slot: self.slots[i],
        }) {
            Ok(()) => {
                self.counters.handoff_out += 1;
                self.wake_targets[w] = true;
            }
            Err(h) => {
                // Keep our buffer, return the spare.
                let spare = std::mem::replace(&mut self.bufs[i], h.buf);
                let _ = self.shared.free.push(spare);
                self.counters.drops.count(DropReason::QueueFull);
            }
        }
    }

    /// Runs buffer `i` through the engine and acts on the result.
    fn process(&mut self, engine: &mut Engine, now: Instant, i: usize) {
        let buf = &mut self.bufs[i];
        match self.slots[i] {
            Slot::Tun(tunnel) if self.udp_gso => {
                let udp = &self.udp;
                match engine.outbound_udp(now, buf, tunnel, |l| udp_socket_for(udp, l).is_some()) {
                    OutboundUdp::Payload(t) => match udp_socket_for(udp, t.src) {
                        Some(s) => self.udp_pending.push((i, s, t)),
                        None => self.counters.drops.count(DropReason::TxError),
                    },
                    OutboundUdp::Packet(o) => self.outbound_done(engine, o, tunnel, i),
                }
            }
            Slot::Tun(tunnel) => {
                let o = engine.outbound(now, buf, tunnel);
                self.outbound_done(engine, o, tunnel, i);
            }
            Slot::Udp(meta) => match engine.inbound_udp(now, buf, meta) {
                Inbound::Deliver { tunnel } => self.deliver(tunnel, i),
                Inbound::Ike => {
                    // IKE is control traffic at a few messages per second per peer: a copy
                    // into its own Vec is what lets the batch buffer stay in the pool.
                    let message = self.bufs[i].data().to_vec();
                    self.counters.ike_rx += 1;
                    self.emit(DataplaneEvent::Ike {
                        src: meta.src,
                        dst: meta.dst,
                        message,
                    });
                }
                Inbound::Keepalive | Inbound::Pending | Inbound::Dummy | Inbound::Dropped(_) => {}
            },
            Slot::Ip => match engine.inbound_ip(now, buf) {
                Inbound::Deliver { tunnel } => self.deliver(tunnel, i),
                Inbound::Ike
                | Inbound::Keepalive
                | Inbound::Pending
                | Inbound::Dummy
                | Inbound::Dropped(_) => {}
            },
        }
    }

    /// Acts on the engine's verdict for the outbound packet in buffer `i`.
    fn outbound_done(&mut self, engine: &mut Engine, o: Outbound, tunnel: TunnelId, i: usize) {
        match o {
            Outbound::Transmit { dst } => self.tx_pending.push((i, dst)),
            Outbound::Fragmented { count } => self.send_fragments(engine, count),
            Outbound::ToTunnel => self.write_tun(tunnel, i),
            Outbound::Bypass => match ip::addresses(self.bufs[i].data()) {
                Some((_, dst)) => self.tx_pending.push((i, dst)),
                None => self.counters.drops.count(DropReason::BadIpHeader),
            },
            Outbound::Dropped(_) => {}
        }
    }

    /// Queues the decrypted packet in buffer `i` for tunnel `tunnel`'s TUN device: for
    /// coalescing when the device has offloads, otherwise written right away.
    fn deliver(&mut self, tunnel: TunnelId, i: usize) {
        match self.tunnel_index.get(&tunnel) {
            Some(&idx) if self.tuns[idx].1.offload() => self.gro.push(i, idx, self.bufs[i].data()),
            _ => self.write_tun(tunnel, i),
        }
    }

    /// Writes the packets [`Worker::deliver`] queued, coalesced per the plan.
    fn flush_tun(&mut self) {
        for g in self.gro.groups() {
            let tun = &self.tuns[g.tag].1;
            let mut hdr = [0u8; gso::MAX_HEADERS];
            let res = match self.gro.header(g, &mut hdr) {
                Some((vnet, hlen)) => {
                    let mut parts = [IoSlice::new(&[]); MAX_GSO_PARTS];
                    parts[0] = IoSlice::new(&hdr[..hlen]);
                    let mut k = 1;
                    for m in self.gro.members(g) {
                        parts[k] = IoSlice::new(self.bufs[m].data().get(hlen..).unwrap_or(&[]));
                        k += 1;
                    }
                    self.counters.tun_tx_gro += 1;
                    tun.send_gso(&vnet, &parts[..k])
                }
                None => tun.send(self.bufs[g.head].data()),
            };
            match res {
                Ok(_) => self.counters.tun_tx += g.count as u64,
                Err(e) => {
                    for _ in 0..g.count {
                        self.counters.drops.count(DropReason::TxError);
                    }
                    tracing::debug!(worker = self.id, tun = tun.name(), error = %e, "TUN write failed");
                }
            }
        }
        self.gro.clear();
    }

    /// Sends the `count` fragments of the last outbound packet right away (a slow path:
    /// the outer MTU was too small for the inner packet).
    fn send_fragments(&mut self, engine: &mut Engine, count: usize) {
        for _ in 0..count {
            let Some(dst) = engine.poll_fragment(&mut self.spare) else {
                break;
            };
            let res = self.tx.send_batch([(self.spare.data(), dst)]);
            self.account_tx(res);
        }
    }

    fn write_tun(&mut self, tunnel: TunnelId, i: usize) {
        let Some(&idx) = self.tunnel_index.get(&tunnel) else {
            self.counters.drops.count(DropReason::TxError);
            tracing::debug!(
                worker = self.id,
                tunnel,
                "packet for a tunnel without TUN device"
            );
            return;
        };
        match self.tuns[idx].1.send(self.bufs[i].data()) {
            Ok(_) => self.counters.tun_tx += 1,
            Err(e) => {
                self.counters.drops.count(DropReason::TxError);
                tracing::debug!(worker = self.id, tunnel, error = %e, "TUN write failed");
            }
        }
    }

    fn flush_tx(&mut self) {
        self.flush_udp();
        if self.tx_pending.is_empty() {
            return;
        }
        let bufs = &self.bufs;
        let res = self.tx.send_batch(
            self.tx_pending
                .iter()
                .map(|&(i, dst)| (bufs[i].data(), dst)),
        );
        self.tx_pending.clear();
        self.account_tx(res);
    }

    /// Sends the queued ESP-in-UDP packets: each run of packets for the same socket and
    /// outer header, all of the first one's size except a shorter last one, with one
    /// GSO `sendmsg`. A run the socket refuses for a reason a raw socket may not have
    /// (a source address that is not local, a path MTU the socket learned) goes out as
    /// complete packets through the raw socket instead, as before UDP GSO.
    fn flush_udp(&mut self) {
        let pending = &self.udp_pending;
        let mut iov = [IoSlice::new(&[]); MAX_GSO_SEGMENTS];
        // Runs to send raw; allocated only when a send fails.
        let mut fallback = Vec::new();
        let mut k = 0;
        while k < pending.len() {
            let (first, sock, t) = pending[k];
            let size = self.bufs[first].len();
            iov[0] = IoSlice::new(self.bufs[first].data());
            let (mut end, mut bytes) = (k + 1, size);
            while end < pending.len() && end - k < MAX_GSO_SEGMENTS {
                let (i, s, u) = pending[end];
                let len = self.bufs[i].len();
                if s != sock || !same_headers(&u, &t) || len > size || bytes + len > MAX_GSO_BYTES {
                    break;
                }
                iov[end - k] = IoSlice::new(self.bufs[i].data());
                bytes += len;
                end += 1;
                if len < size {
                    break;
                }
            }
            let count = end - k;
            match self.udp[sock].send_segments(&t, &iov[..count]) {
                Ok(()) => {
                    self.counters.udp_tx += count as u64;
                    self.counters.udp_tx_calls += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    for _ in 0..count {
                        self.counters.drops.count(DropReason::TxError);
                    }
                    tracing::debug!(worker = self.id, dst = %t.dst, "UDP socket buffer full");
                }
                Err(e) => {
                    tracing::debug!(worker = self.id, dst = %t.dst, error = %e, "UDP send failed; sending raw");
                    fallback.push(k..end);
                }
            }
            k = end;
        }
        for run in fallback {
            for &(i, _, t) in &self.udp_pending[run] {
                match t.push_headers(&mut self.bufs[i]) {
                    Ok(()) => self.tx_pending.push((i, t.dst.ip())),
                    Err(reason) => self.counters.drops.count(reason),
                }
            }
        }
        self.udp_pending.clear();
    }

    fn account_tx(&mut self, res: crate::io::raw::TxResult) {
        self.counters.raw_tx += res.sent as u64;
        for _ in 0..res.failed {
            self.counters.drops.count(DropReason::TxError);
        }
        if let Some(e) = res.last_error {
            tracing::debug!(worker = self.id, error = %e, failed = res.failed, "raw send failed");
        }
    }

    fn forward_events(&mut self, engine: &mut Engine) {
        while let Some(event) = engine.poll_event() {
            self.emit(DataplaneEvent::Engine {
                worker: self.id,
                event,
            });
        }
    }

    fn emit(&mut self, event: DataplaneEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.events_lost += 1
            }
        }
    }
}

/// Adjusts `spi` (e.g. a random one) so that it is anchored by steering on worker
/// `worker` of `workers`: `SPI % workers == worker`, and never in the reserved range
/// 0..=255. The UDP socket group then delivers its ESP-in-UDP packets straight to that
/// worker (see [`UdpSocket::steer_by_spi`]); control planes that choose inbound SPIs
/// should use it so the handoff queue stays a fallback.
pub fn spi_for_worker(spi: u32, worker: usize, workers: usize) -> u32 {
    let n = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    let w = u32::try_from(worker).unwrap_or(0) % n;
    let base = spi - spi % n;
    let mut s = base.checked_add(w).unwrap_or_else(|| base - n + w);
    while s < 0x100 {
        s += n;
    }
    s
}

/// The UDP socket that can send from `local`: same family and port, bound to that address
/// or the wildcard.
fn udp_socket_for(udp: &[UdpSocket], local: SocketAddr) -> Option<usize> {
    udp.iter().position(|s| {
        let a = s.local_addr();
        a.port() == local.port()
            && a.is_ipv4() == local.is_ipv4()
            && (a.ip().is_unspecified() || a.ip() == local.ip())
    })
}

/// True if two ESP-in-UDP packets may share one GSO send: the same outer header but for
/// the IPv4 identification, which the UDP socket chooses anyway.
fn same_headers(a: &UdpTransmit, b: &UdpTransmit) -> bool {
    (a.src, a.dst, a.tos, a.ttl, a.df) == (b.src, b.dst, b.tos, b.ttl, b.df)
}

/// The drop reason of a super-packet that could not be segmented.
fn gso_drop(e: gso::GsoError) -> DropReason {
    match e {
        gso::GsoError::Malformed => DropReason::BadIpHeader,
        gso::GsoError::Unsupported(_) => DropReason::UnsupportedProtocol,
        gso::GsoError::NoRoom { .. } | gso::GsoError::Buffer => DropReason::Oversize,
    }
}

fn set_route<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, owner: Option<usize>) {
    match owner {
        Some(w) => {
            map.insert(key, w);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// SPI of an ESP-in-UDP payload; `None` for IKE (zero marker), keepalives and runts.
fn udp_spi(payload: &[u8]) -> Option<u32> {
    let spi = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    (spi != 0).then_some(spi)
}

/// SPI of a raw ESP or AH packet (IPv4 or the rebuilt IPv6 header); `None` for non-first
/// fragments and anything else without one.
fn ip_spi(pkt: &[u8]) -> Option<u32> {
    let (hlen, proto) = match pkt.first()? >> 4 {
        4 => {
            let frag_offset = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]) & 0x1fff;
            if frag_offset != 0 {
                return None;
            }
            (usize::from(pkt[0] & 0x0f) * 4, *pkt.get(9)?)
        }
        6 => (ip::IPV6_HEADER_LEN, *pkt.get(6)?),
        _ => return None,
    };
    let at = match proto {
        IPPROTO_ESP => hlen,
        IPPROTO_AH => hlen + 4,
        _ => return None,
    };
    Some(u32::from_be_bytes(pkt.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steered_spis_land_on_their_worker_outside_the_reserved_range() {
        for workers in [1usize, 2, 3, 7, 64] {
            for spi in [0u32, 1, 255, 256, 0x1234_5678, u32::MAX - 1, u32::MAX] {
                for worker in 0..workers {
                    let s = spi_for_worker(spi, worker, workers);
                    assert_eq!(s as usize % workers, worker, "{spi:#x} {worker}/{workers}");
                    assert!(s >= 0x100, "{s:#x}");
                    if spi >= 0x200 {
                        assert!(s.abs_diff(spi) < workers as u32, "{spi:#x} -> {s:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn spi_extraction_for_anchor_routing() {
        assert_eq!(udp_spi(&[0, 0, 0, 0, 1]), None);
        assert_eq!(udp_spi(&[0xff]), None);
        assert_eq!(udp_spi(&[0, 0, 1, 2, 0, 0, 0, 1]), Some(0x102));

        let mut v4 = [0u8; 28];
        v4[0] = 0x45;
        v4[9] = IPPROTO_ESP;
        v4[20..24].copy_from_slice(&0xabcd_u32.to_be_bytes());
        assert_eq!(ip_spi(&v4), Some(0xabcd));
        v4[9] = IPPROTO_AH;
        v4[24..28].copy_from_slice(&0x1234_u32.to_be_bytes());
        assert_eq!(ip_spi(&v4), Some(0x1234));
        v4[7] = 1; // non-first fragment
        assert_eq!(ip_spi(&v4), None);

        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[6] = IPPROTO_ESP;
        v6[40..44].copy_from_slice(&7_u32.to_be_bytes());
        assert_eq!(ip_spi(&v6), Some(7));
    }
}
