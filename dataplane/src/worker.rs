//! SPU workers: threads that run one [`Engine`] each over the packet I/O of [`crate::io`].
//!
//! # Threads and ownership
//!
//! [`Dataplane::start`] starts `workers` threads named `spu-N`, one after the other; each
//! opens its own descriptors before the next starts (so errors come back synchronously,
//! the kernel numbers the UDP sockets in worker order, and a caller that entered a
//! network namespace gets everything inside it). Worker N owns:
//! - queue N of every TUN device (always multi-queue, so queues can be added at run time;
//!   the kernel spreads inner flows over the queues),
//! - its own UDP NAT-T sockets, bound with `SO_REUSEPORT` (the kernel spreads peers over
//!   the workers by flow hash),
//! - its own raw send sockets,
//! - for one worker only (the first), the raw ESP/AH receive sockets (every raw socket
//!   receives its own copy of each packet, so there must be exactly one per protocol),
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
//! # Failure and addition of workers
//!
//! An SPU can fail ([`DataplaneHandle::fail_worker`], or its thread panics, which is
//! caught and counts the same) and SPUs can be added ([`DataplaneHandle::add_worker`])
//! while traffic flows. A failed worker's SAs go with it (its engine is dropped, keys
//! zeroized); the control plane, which holds the `SaConfig`s, installs them again on
//! survivors, with `initial_seq` above the marks it replicated
//! ([`DataplaneHandle::seq_marks`]). At the failure the other workers forget every
//! route to it, its TUN queues close (the kernel moves their flows to the remaining
//! queues), its raw receive sockets move to a survivor, and the UDP steering program is
//! replaced so that nothing is steered to its socket; the event channel reports
//! [`DataplaneEvent::WorkerFailed`]. Worker indices are never reused: a new worker gets
//! the next one, its own TUN queues and UDP sockets, and a copy of the routes.
//!
//! # Forwarding fence
//!
//! [`DataplaneHandle::set_fence`] sets an instant after which no worker forwards ESP or
//! AH (see `fence`): the check is made by the workers against the monotonic clock, at
//! each batch and before each send, so a node whose cluster lease ended stops forwarding
//! on time even if its control plane is frozen. Fenced packets are counted as
//! [`DropReason::Fenced`]; IKE on the NAT-T port still reaches the control plane.
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

mod control;

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use crate::buf::{DEFAULT_HEADROOM, PacketBuf};
use crate::drop::{DropCounters, DropReason};
use crate::engine::{
    Engine, EngineConfig, EngineError, EngineEvent, EngineStats, Inbound, Outbound, OutboundUdp,
    SeqMark, UdpMeta, UdpTransmit,
};
use crate::fence::{Group, GroupSet};
use crate::gso::{self, Gro, VNET_F_NEEDS_CSUM, VNET_GSO_NONE};
use crate::io::poll::Poller;
use crate::io::raw::{IPPROTO_AH, IPPROTO_ESP, RawReceiver, RawSender};
use crate::io::tun::{MAX_GSO_PARTS, Tun, TunError};
use crate::io::udp::{GroupMember, MAX_GSO_BYTES, MAX_GSO_SEGMENTS, UdpRecvMeta, UdpSocket};
use crate::ip;
use crate::sa::{Direction, SaConfig, SaKey, TunnelId};
use crate::spd::{Spd, SpdError};
use control::{Peer, Routes, Shared};

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
/// Raw receive sockets a worker may own (ESP and AH, IPv4 and IPv6): room in its epoll
/// set for those it adopts from a failed worker.
const MAX_RAW_RECEIVERS: usize = 4;

/// One route-based tunnel: a TUN device and the binding its SAs carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Binding of the outbound and inbound SAs of this tunnel.
    pub id: TunnelId,
    /// Interface name, e.g. `st0.0`.
    pub name: String,
    /// Interface MTU: the largest inner packet accepted.
    pub mtu: u32,
    /// Run IPv6 on the device. Without, it gets neither a link-local address nor IPv6
    /// routes, which is what lets thousands of units start: the kernel walks every IPv6
    /// route of the namespace on each device's MTU change and link up.
    pub ipv6: bool,
}

/// What [`Dataplane::start`] sets up.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Number of SPU worker threads at start (at least 1; more can be added later).
    pub workers: usize,
    /// TUN devices to create (one queue per worker each).
    pub tunnels: Vec<TunnelConfig>,
    /// Addresses of the UDP encapsulation sockets (usually `0.0.0.0:4500` and
    /// `[::]:4500`); each worker binds its own with `SO_REUSEPORT` (also a single
    /// worker, so that workers can be added), at the port the first one got if 0 is
    /// given. Empty: no ESP-in-UDP.
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
    /// Once a worker has failed, steering is on either way: the flow hash would still
    /// pick the failed worker's socket.
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

/// Why the dataplane (or a worker added later) did not start.
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
    /// The worker has failed (see [`DataplaneHandle::fail_worker`]); its SAs are gone.
    #[error("worker {0} has failed")]
    WorkerFailed(usize),
    /// Failing this worker would leave none running: the TUN devices would disappear
    /// with their last queue. A node in that state fails over instead.
    #[error("worker {0} is the last one running")]
    LastWorker(usize),
    /// A new worker could not open its devices and sockets.
    #[error("starting a worker: {0}")]
    Start(#[source] StartError),
    /// The dataplane has been shut down, or no worker is left running.
    #[error("the dataplane has stopped")]
    Stopped,
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
    /// A worker failed: [`DataplaneHandle::fail_worker`] was called, its thread
    /// panicked, or its event loop broke. Its SAs are gone and nothing is routed or
    /// steered to it any more; the control plane installs its SAs on live workers.
    /// Raised once per worker.
    WorkerFailed {
        /// The worker's index (never reused).
        worker: usize,
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

impl Route {
    /// The worker this route points to, if any.
    fn target(self) -> Option<usize> {
        match self {
            Route::Spi(_, w) | Route::Tunnel(_, w) => w,
        }
    }
}

enum Command {
    InstallSa(Box<SaConfig>, SyncSender<Result<(), EngineError>>),
    /// The SPD published by [`DataplaneHandle::set_spd`] or [`DataplaneHandle::update_spd`].
    SetSpd(Arc<Spd>),
    RemoveSa(SaKey, SyncSender<bool>),
    ExtendReservation(SaKey, u64, SyncSender<bool>),
    Route(Route),
    Stats(SyncSender<WorkerStats>),
    SeqMarks(SyncSender<Vec<SeqMark>>),
    SendIke(Option<IpAddr>, SocketAddr, Vec<u8>),
    /// A worker was added: its wakeup and handoff queue, at the next index.
    AddPeer(Arc<Peer>),
    /// A worker failed: forget every route to it.
    WorkerDown(usize),
    /// Raw receive sockets of a failed worker, to read from now on.
    AdoptRaw(Vec<RawReceiver>),
    /// Panics on the worker thread, as a bug would.
    #[cfg(test)]
    Panic,
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

/// Control handle: install and remove SAs, read counters, send IKE messages, fence,
/// fail and add workers, without stopping traffic. Per-worker commands are applied by
/// the worker between batches. Cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct DataplaneHandle {
    shared: Arc<Shared>,
}

impl DataplaneHandle {
    /// Number of worker indices handed out so far, failed workers included: workers are
    /// `0..workers()`, and this is the `workers` to give [`spi_for_worker`].
    pub fn workers(&self) -> usize {
        self.shared.worker_count()
    }

    /// The workers that are running, in index order: where SAs can be installed.
    pub fn live_workers(&self) -> Vec<usize> {
        self.shared.live_workers()
    }

    fn call<T>(
        &self,
        worker: usize,
        make: impl FnOnce(SyncSender<T>) -> Command,
    ) -> Result<T, ControlError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.send(worker, make(tx))?;
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => ControlError::Timeout(worker),
            // The worker ended with the command queued or half done.
            mpsc::RecvTimeoutError::Disconnected if self.shared.is_failed(worker) => {
                ControlError::WorkerFailed(worker)
            }
            mpsc::RecvTimeoutError::Disconnected => ControlError::WorkerGone(worker),
        })
    }

    /// Installs `sa` on worker `worker`, which becomes its anchor, then tells every worker
    /// to hand that SA's packets (inbound: by SPI; outbound: by tunnel binding) to it.
    /// An error for a failed worker.
    pub fn install_sa(&self, worker: usize, sa: SaConfig) -> Result<(), ControlError> {
        let route = match sa.direction {
            Direction::Inbound => Route::Spi(sa.spi, Some(worker)),
            Direction::Outbound => Route::Tunnel(sa.binding, Some(worker)),
        };
        self.call(worker, |tx| Command::InstallSa(Box::new(sa), tx))??;
        self.shared.broadcast(route)
    }

    /// Removes an SA from its anchor `worker`; true if it was installed there. The anchor
    /// route is withdrawn for inbound SAs unless it already points to another worker (an
    /// SA moved by installing it there first); for outbound ones it stays, since a
    /// rekeyed SA of the same tunnel normally takes over on the same anchor.
    pub fn remove_sa(&self, worker: usize, key: SaKey) -> Result<bool, ControlError> {
        let removed = self.call(worker, |tx| Command::RemoveSa(key, tx))?;
        if removed && key.direction == Direction::Inbound {
            self.shared.withdraw_spi(key.spi, worker);
        }
        Ok(removed)
    }

    /// Moves the routing of `tunnel`'s outbound packets to `worker` (or back to whichever
    /// worker reads them, with `None`). An error for a failed worker.
    pub fn route_tunnel(
        &self,
        tunnel: TunnelId,
        worker: Option<usize>,
    ) -> Result<(), ControlError> {
        self.shared.broadcast(Route::Tunnel(tunnel, worker))
    }

    /// Publishes `spd` as the security policy database of every worker: each swaps it
    /// in whole between two batches, so a packet sees the old SPD or the new one, never
    /// a mix. Workers added later ([`DataplaneHandle::add_worker`], also a failed
    /// worker's replacement) start with the SPD published last. The SPD classifies the
    /// packets of [`EngineConfig::policy_tunnel`].
    ///
    /// Replacing the whole SPD is the one primitive: a policy list is ordered (first
    /// match wins), so an edit is only meaningful against the list it was made on.
    /// Callers that own only some entries (remote-access clients' protect entries) use
    /// [`DataplaneHandle::update_spd`] instead, which edits the published SPD under the
    /// same lock, so that two editors never lose each other's changes.
    pub fn set_spd(&self, spd: Spd) {
        let replaced: Result<(), std::convert::Infallible> = self.shared.publish_spd(|current| {
            *current = spd;
            Ok(())
        });
        let Ok(()) = replaced;
    }

    /// Edits the published SPD with `edit` (e.g. `|spd| spd.insert(0, policy)` or
    /// `|spd| Ok(spd.remove(name))`, by policy name) and publishes the result to every
    /// worker as [`DataplaneHandle::set_spd`] does. Edits are serialised: each starts
    /// from the SPD the previous one published. When `edit` fails, nothing is
    /// published and its error is returned.
    pub fn update_spd<T>(
        &self,
        edit: impl FnOnce(&mut Spd) -> Result<T, SpdError>,
    ) -> Result<T, SpdError> {
        self.shared.publish_spd(edit)
    }

    /// The SPD published last (what every live worker uses once it has taken its
    /// queued commands).
    pub fn spd(&self) -> Arc<Spd> {
        self.shared.spd()
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

    /// Counters of every live worker (a failed worker's counters went with it).
    pub fn stats_all(&self) -> Result<Vec<WorkerStats>, ControlError> {
        self.live_workers()
            .into_iter()
            .map(|w| self.stats(w))
            .collect()
    }

    /// The sequence number marks of every SA anchored on `worker`: for inbound SAs the
    /// highest authenticated sequence number accepted (64 bits, ESN high half
    /// included), for outbound SAs the last one used. What a cluster replicates, so a
    /// node taking over installs the SAs with `initial_seq` at or above the marks.
    pub fn seq_marks(&self, worker: usize) -> Result<Vec<SeqMark>, ControlError> {
        self.call(worker, Command::SeqMarks)
    }

    /// Sends an IKE message to `dst` from the NAT-T socket of the first live worker (the
    /// non-ESP marker is prepended), from address `src` when given (the IKE SA's local
    /// address; otherwise the kernel picks one). Fire and forget, like any datagram: IKE
    /// retransmits. Not fenced: a node that lost its lease still talks IKE.
    pub fn send_ike(
        &self,
        src: Option<IpAddr>,
        dst: SocketAddr,
        message: Vec<u8>,
    ) -> Result<(), ControlError> {
        let worker = self.shared.first_live().ok_or(ControlError::Stopped)?;
        self.shared
            .send(worker, Command::SendIke(src, dst, message))
    }

    /// Sets redundancy group `group`'s forwarding fence: from `until` on (by the
    /// monotonic clock), no worker sends or accepts ESP/AH on an SA of that group
    /// ([`SaConfig::group`](crate::sa::SaConfig::group)). Its packets are dropped as
    /// [`DropReason::Fenced`] right after the SA lookup, so no sequence number is taken
    /// and no replay window moves; what a batch produced before the fence passed is
    /// dropped at the send. SAs of other groups, SAs without a group, IKE and keepalives
    /// go on. `None` removes the fence; a later instant, also after the fence passed,
    /// resumes forwarding until then. Every group starts fenced.
    ///
    /// A cluster node sets this to the end of its lease on the group every time Raft
    /// renews it, so it stops on time if it cannot renew, even with its control plane
    /// frozen: the engine reads the clock itself for every packet, and the worker again
    /// before every send. A worker frozen inside a send cannot be stopped by anything,
    /// so leases need a margin.
    pub fn set_fence(&self, group: Group, until: Option<Instant>) {
        self.shared.fences.set(group, until);
    }

    /// Fences every redundancy group from `at` on (a node shutting down).
    pub fn fence_all(&self, at: Instant) {
        self.shared.fences.set_all(at);
    }

    /// Fails worker `worker`, as when its services card dies: it stops after its
    /// current batch and its SAs are dropped; every other worker stops routing to it,
    /// its TUN queues close (the kernel moves their flows to the other queues), its raw
    /// receive sockets move to a live worker, and UDP steering no longer picks its
    /// socket. [`DataplaneEvent::WorkerFailed`] is raised. The control plane then
    /// installs the worker's SAs on live workers ([`DataplaneHandle::live_workers`]).
    ///
    /// Returns once the worker thread has ended ([`ControlError::Timeout`] if it does not
    /// within a few seconds: it is failed anyway, and routed around). Failing a failed
    /// worker does nothing; the last live worker cannot be failed.
    pub fn fail_worker(&self, worker: usize) -> Result<(), ControlError> {
        self.shared.fail_worker(worker)
    }

    /// Starts a new worker with the next index and returns the index: its own queue of
    /// every TUN device, its own NAT-T sockets, the current routes; other workers and
    /// their SAs are undisturbed. It opens everything in the dataplane's network
    /// namespace, whichever thread calls this. SAs can be installed on it right away.
    /// UDP steering now counts one more worker, so SPIs chosen with [`spi_for_worker`]
    /// for the old count are handed over by whichever worker receives them until their
    /// SAs are rekeyed.
    pub fn add_worker(&self) -> Result<usize, ControlError> {
        Shared::add_worker(&self.shared)
    }
}

/// A running set of SPU workers. Dropping it stops and joins them.
#[derive(Debug)]
pub struct Dataplane {
    handle: DataplaneHandle,
    events: Receiver<DataplaneEvent>,
}

impl Dataplane {
    /// Starts the workers; each opens its devices and sockets in the network namespace
    /// of the calling thread (which the dataplane remembers for workers added later).
    pub fn start(config: DataplaneConfig) -> Result<Dataplane, StartError> {
        if config.workers == 0 {
            return Err(StartError::Config("workers must be at least 1"));
        }
        if config.batch == 0 || config.handoff_capacity == 0 || config.event_capacity == 0 {
            return Err(StartError::Config(
                "batch, handoff_capacity and event_capacity must be at least 1",
            ));
        }
        let (event_tx, events) = mpsc::sync_channel(config.event_capacity);
        let dp = Dataplane {
            handle: DataplaneHandle {
                shared: Shared::new(config, event_tx),
            },
            events,
        };
        // On error, dropping `dp` stops the workers already started.
        dp.handle.shared.start_workers()?;
        Ok(dp)
    }

    /// A control handle (cheap to clone, usable from any thread).
    pub fn handle(&self) -> DataplaneHandle {
        self.handle.clone()
    }

    /// Engine events, IKE messages and worker failures from all workers.
    pub fn events(&self) -> &Receiver<DataplaneEvent> {
        &self.events
    }

    /// Stops the workers after their current batch and waits for them.
    pub fn shutdown(self) {
        self.handle.shared.shutdown();
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.handle.shared.shutdown();
    }
}

/// Why a worker's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The dataplane is shutting down.
    Shutdown,
    /// The worker was failed ([`DataplaneHandle::fail_worker`]).
    Failed,
    /// Its epoll set broke: it can no longer run.
    Broken,
}

/// Everything a worker opens and is given when it starts.
struct WorkerInit {
    id: usize,
    config: DataplaneConfig,
    /// Addresses of its UDP sockets (the groups' actual addresses).
    udp: Vec<SocketAddr>,
    /// Create the TUN devices: set their MTU and `noqueue` root, and bring them up (the
    /// first worker).
    configure_devices: bool,
    /// Open the raw ESP/AH receive sockets.
    raw_rx: bool,
    shared: Arc<Shared>,
    /// Every worker's wakeup and handoff queue, this one's at `id`.
    peers: Vec<Arc<Peer>>,
    routes: Routes,
    commands: Receiver<Command>,
}

/// The thread of worker `worker`: runs its loop with the engine, and when the loop
/// ends for any reason but shutdown (a panic included), fails the worker.
fn worker_main(mut worker: Worker, engine_config: EngineConfig, spd: Arc<Spd>) {
    let mut engine = Engine::new(engine_config);
    engine.set_spd(spd);
    // Unwind safety: after a panic the worker and engine are only dropped (and the
    // worker's descriptors handed over), never used to process packets again.
    let exit = panic::catch_unwind(AssertUnwindSafe(|| worker.run(&mut engine)));
    // The SAs (and their keys) go with the worker, whatever the cause.
    drop(engine);
    match exit {
        Ok(Exit::Shutdown) => tracing::debug!(worker = worker.id, "SPU worker stopped"),
        Ok(Exit::Failed) => worker.retire(),
        Ok(Exit::Broken) => {
            tracing::error!(worker = worker.id, "SPU worker's event loop broke");
            worker.retire();
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown panic");
            tracing::error!(worker = worker.id, panic = what, "SPU worker panicked");
            worker.retire();
        }
    }
}

/// One SPU worker's state, moved onto its thread.
struct Worker {
    id: usize,
    tuns: Vec<(TunnelId, Tun)>,
    tunnel_index: HashMap<TunnelId, usize>,
    /// [`EngineConfig::policy_tunnel`], where packets of bindings without a device of
    /// their own are delivered.
    policy_tunnel: Option<TunnelId>,
    udp: Vec<UdpSocket>,
    raw_rx: Vec<RawReceiver>,
    tx: RawSender,
    poller: Poller,
    commands: Receiver<Command>,
    shared: Arc<Shared>,
    /// Every worker's wakeup and handoff queue, by index (failed ones included, so
    /// indices stay stable).
    peers: Vec<Arc<Peer>>,
    /// This worker's own entry of `peers`.
    me: Arc<Peer>,
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
    /// The redundancy groups whose SAs produced the current batch's packets: their
    /// fences are checked again before the send.
    groups: GroupSet,
    counters: IoCounters,
}

impl Worker {
    /// Opens the worker's devices and sockets on the calling thread (its own), and
    /// returns it with a [`GroupMember`] of each of its UDP sockets.
    fn open(init: WorkerInit) -> Result<(Worker, Vec<GroupMember>), StartError> {
        let WorkerInit {
            id,
            config,
            udp: udp_addrs,
            configure_devices,
            raw_rx: open_raw,
            shared,
            peers,
            routes,
            commands,
        } = init;
        let me = peers
            .get(id)
            .cloned()
            .ok_or(StartError::Config("worker without a peer entry"))?;

        let mut tuns = Vec::with_capacity(config.tunnels.len());
        // Units whose IPv6 could not be turned off (best effort: it only saves the
        // kernel work), said once: a container's /proc/sys is usually read-only.
        let mut ipv6_kept: Option<(usize, TunError)> = None;
        for t in &config.tunnels {
            // Always multi-queue, so that an added worker can attach a queue.
            let q = Tun::open(&t.name, true, config.tun_offload)?;
            if configure_devices {
                if !t.ipv6
                    && let Err(e) = q.disable_ipv6()
                {
                    let (n, _) = ipv6_kept.get_or_insert((0, e));
                    *n += 1;
                }
                q.set_mtu(t.mtu)?;
                q.set_link_options(shared.device_group)?;
                q.set_up()?;
            }
            tuns.push((t.id, q));
        }
        if let Some((units, error)) = ipv6_kept {
            tracing::warn!(units, %error, "IPv6 stays on for st0 units that carry none: many units then start and stop slower");
        }
        let mut udp = Vec::with_capacity(udp_addrs.len());
        let mut members = Vec::with_capacity(udp_addrs.len());
        for addr in udp_addrs {
            let s = UdpSocket::bind(addr, true).map_err(io_err(format!("UDP socket {addr}")))?;
            members.push(
                s.group_member()
                    .map_err(io_err("duplicating a UDP socket"))?,
            );
            udp.push(s);
        }
        let mut raw_rx = Vec::new();
        if open_raw {
            let families: &[bool] = if config.ipv6 {
                &[false, true]
            } else {
                &[false]
            };
            for &v6 in families {
                for (on, proto) in [(config.raw_esp, IPPROTO_ESP), (config.raw_ah, IPPROTO_AH)] {
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
        let sources = tuns.len() + udp.len() + MAX_RAW_RECEIVERS;
        let poller = Poller::new(sources + 1).map_err(io_err("epoll"))?;
        poller
            .add(&me.wake, WAKE_TOKEN)
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
        let worker = Worker {
            id,
            tuns,
            tunnel_index,
            policy_tunnel: config.engine.policy_tunnel,
            udp,
            raw_rx,
            tx,
            poller,
            commands,
            wake_targets: vec![false; peers.len()],
            peers,
            me,
            groups: GroupSet::default(),
            shared,
            spi_owner: routes.spi,
            tunnel_owner: routes.tunnel,
            bufs: (0..config.batch).map(|_| PacketBuf::default()).collect(),
            slots: vec![Slot::Ip; config.batch],
            udp_meta: vec![UdpRecvMeta::default(); config.batch],
            tx_pending: Vec::with_capacity(config.batch),
            udp_pending: Vec::with_capacity(config.batch),
            udp_gso: config.udp_gso,
            gro: Gro::default(),
            spare: PacketBuf::default(),
            ready: Vec::with_capacity(sources + 1),
            counters: IoCounters::default(),
        };
        Ok((worker, members))
    }

    fn run(&mut self, engine: &mut Engine) -> Exit {
        tracing::debug!(worker = self.id, "SPU worker started");
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return Exit::Shutdown;
            }
            if self.me.stop.load(Ordering::Acquire) {
                return Exit::Failed;
            }
            self.ready.clear();
            let staged = self.udp.iter().any(UdpSocket::has_pending);
            let wait = if staged { Duration::ZERO } else { IDLE_WAIT };
            match self.poller.wait(Some(wait)) {
                Ok(tokens) => self.ready.extend(tokens),
                Err(e) => {
                    tracing::error!(worker = self.id, error = %e, "epoll_wait failed; worker stops");
                    return Exit::Broken;
                }
            }
            for k in 0..self.ready.len() {
                let token = self.ready[k];
                if token == WAKE_TOKEN {
                    self.me.wake.drain();
                    self.apply_commands(engine);
                    self.drain_handoffs(engine);
                } else {
                    self.read_source(engine, token);
                }
            }
            // Datagrams a GRO train left staged: one more batch each before waiting.
            for u in 0..self.udp.len() {
                if self.udp[u].has_pending() {
                    let token = (1 + self.tuns.len() + u) as u64;
                    self.read_source(engine, token);
                }
            }
            self.forward_events(engine);
        }
    }

    /// After the loop ended for good: closes the TUN queues at once (so the kernel
    /// stops giving this worker's queue flows nobody reads), gives the raw receive
    /// sockets to a live worker, marks the worker failed (routes, steering, event), and
    /// returns the buffers waiting in its handoff queue to the free list (64 KiB each,
    /// and the queue lives on in the other workers' peer lists). The UDP sockets stay in
    /// their groups through the control side's members.
    fn retire(mut self) {
        self.tuns.clear();
        let raw = std::mem::take(&mut self.raw_rx);
        let (shared, me, id) = (Arc::clone(&self.shared), Arc::clone(&self.me), self.id);
        drop(self);
        shared.mark_failed(id);
        shared.adopt_raw(raw);
        // After the routes to it are gone, nobody hands it more than a few stragglers.
        while let Some(h) = me.handoff.pop() {
            let _ = shared.free.push(h.buf);
        }
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
                Command::SetSpd(spd) => engine.set_spd(spd),
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
                Command::SeqMarks(reply) => {
                    let _ = reply.send(engine.seq_marks());
                }
                Command::SendIke(src, dst, message) => self.send_ike(src, dst, &message),
                Command::AddPeer(peer) => {
                    self.peers.push(peer);
                    self.wake_targets.push(false);
                }
                Command::WorkerDown(w) => {
                    self.spi_owner.retain(|_, owner| *owner != w);
                    self.tunnel_owner.retain(|_, owner| *owner != w);
                }
                Command::AdoptRaw(raw) => self.adopt_raw(raw),
                #[cfg(test)]
                Command::Panic => panic!("injected SPU worker failure"),
            }
        }
        // More commands are queued: come back after the next packets.
        self.me.wake.wake();
    }

    /// Reads from the raw receive sockets of a failed worker from now on.
    fn adopt_raw(&mut self, raw: Vec<RawReceiver>) {
        for r in raw {
            let token = (1 + self.tuns.len() + self.udp.len() + self.raw_rx.len()) as u64;
            match self.poller.add(&r, token) {
                Ok(()) => self.raw_rx.push(r),
                Err(e) => {
                    tracing::error!(worker = self.id, error = %e, "cannot watch an adopted raw socket")
                }
            }
        }
        tracing::info!(
            worker = self.id,
            sockets = self.raw_rx.len(),
            "now receiving raw ESP/AH"
        );
    }

    fn send_ike(&mut self, src: Option<IpAddr>, dst: SocketAddr, message: &[u8]) {
        let sock = self
            .udp
            .iter_mut()
            .find(|s| s.local_addr().is_ipv4() == dst.is_ipv4());
        let res = match sock {
            Some(s) => s.send_ike(src, dst, message),
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
        let queue = &self.me.handoff;
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
            self.me.wake.wake();
        }
        self.counters.handoff_in += n as u64;
        let now = Instant::now();
        self.groups = GroupSet::default();
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
        self.groups = GroupSet::default();
        for i in 0..n {
            match self.owner(engine, i) {
                Some(w) if w != self.id => self.hand_off(engine, now, i, w),
                _ => self.process(engine, now, i),
            }
        }
        self.flush_tx();
        self.flush_tun();
        for w in 0..self.wake_targets.len() {
            if std::mem::take(&mut self.wake_targets[w]) {
                self.peers[w].wake.wake();
            }
        }
    }

    /// Before a send: true (and `packets` counted as fenced) if the fence of a group
    /// whose SAs produced this batch has passed since, or was set earlier. Free for a
    /// batch of SAs without a group.
    #[inline]
    fn fenced_before_send(&mut self, packets: usize) -> bool {
        if self.groups.is_empty() || !self.shared.fences.any_passed(&self.groups, Instant::now()) {
            return false;
        }
        for _ in 0..packets {
            self.counters.drops.count(DropReason::Fenced);
        }
        true
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

    /// The anchor worker of the packet in buffer `i`, if one is known. A packet of the
    /// policy tunnel goes to the anchor of the binding its SPD entry protects it with.
    fn owner(&self, engine: &mut Engine, i: usize) -> Option<usize> {
        match self.slots[i] {
            Slot::Tun(t) => {
                let binding = engine.outbound_binding(self.bufs[i].data(), t)?;
                self.tunnel_owner.get(&binding).copied()
            }
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
    fn hand_off(&mut self, engine: &mut Engine, now: Instant, i: usize, w: usize) {
        let Some(peer) = self.peers.get(w) else {
            // A route to a worker this one has not heard of yet: process it here.
            self.process(engine, now, i);
            return;
        };
        let spare = self.shared.free.pop().unwrap_or_default();
        let buf = std::mem::replace(&mut self.bufs[i], spare);
        match peer.handoff.push(Handoff {
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
        // The engine's verdict first, then the groups it used, so that a send made
        // while acting on the verdict (a fragment, an unbatched TUN write) checks them.
        let verdict = match self.slots[i] {
            Slot::Tun(tunnel) if self.udp_gso => {
                let udp = &self.udp;
                Ok((
                    engine.outbound_udp(now, buf, tunnel, |l| udp_socket_for(udp, l).is_some()),
                    tunnel,
                ))
            }
            Slot::Tun(tunnel) => Ok((
                OutboundUdp::Packet(engine.outbound(now, buf, tunnel)),
                tunnel,
            )),
            Slot::Udp(meta) => Err((engine.inbound_udp(now, buf, meta), Some(meta))),
            Slot::Ip => Err((engine.inbound_ip(now, buf), None)),
        };
        self.groups.extend(engine.take_groups());
        match verdict {
            Ok((OutboundUdp::Payload(t), _)) => match udp_socket_for(&self.udp, t.src) {
                Some(s) => self.udp_pending.push((i, s, t)),
                None => self.counters.drops.count(DropReason::TxError),
            },
            Ok((OutboundUdp::Packet(o), tunnel)) => self.outbound_done(engine, o, tunnel, i),
            Err((Inbound::Deliver { tunnel }, _)) => self.deliver(tunnel, i),
            Err((Inbound::Ike, Some(meta))) => {
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
            Err((
                Inbound::Ike
                | Inbound::Keepalive
                | Inbound::Pending
                | Inbound::Dummy
                | Inbound::Dropped(_),
                _,
            )) => {}
        }
    }

    /// Acts on the engine's verdict for the outbound packet in buffer `i`.
    fn outbound_done(&mut self, engine: &mut Engine, o: Outbound, tunnel: TunnelId, i: usize) {
        match o {
            Outbound::Transmit { dst } => self.tx_pending.push((i, dst)),
            Outbound::Fragmented { count } => self.send_fragments(engine, count),
            Outbound::ToTunnel => self.write_tun(tunnel, i),
            Outbound::Bypass => self.counters.drops.count(DropReason::PolicyBypass),
            Outbound::Dropped(_) => {}
        }
    }

    /// Queues the decrypted packet in buffer `i` for tunnel `tunnel`'s TUN device: for
    /// coalescing when the device has offloads, otherwise written right away.
    fn deliver(&mut self, tunnel: TunnelId, i: usize) {
        let tunnel = self.delivery_tunnel(tunnel);
        match self.tunnel_index.get(&tunnel) {
            Some(&idx) if self.tuns[idx].1.offload() => self.gro.push(i, idx, self.bufs[i].data()),
            _ => self.write_tun(tunnel, i),
        }
    }

    /// The device that receives what the SAs of `binding` decrypt: its own TUN device
    /// (route-based), otherwise the policy tunnel, since a binding without a device is
    /// the `protect` id of SPD entries, whose traffic the policy tunnel carries both ways.
    fn delivery_tunnel(&self, binding: TunnelId) -> TunnelId {
        match self.policy_tunnel {
            Some(p) if !self.tunnel_index.contains_key(&binding) => p,
            _ => binding,
        }
    }

    /// Writes the packets [`Worker::deliver`] queued, coalesced per the plan.
    fn flush_tun(&mut self) {
        if !self.groups.is_empty() {
            let queued = self.gro.groups().iter().map(|g| g.count).sum();
            if queued > 0 && self.fenced_before_send(queued) {
                self.gro.clear();
                return;
            }
        }
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
        if self.fenced_before_send(count) {
            return;
        }
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
        if self.fenced_before_send(1) {
            return;
        }
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
        if self.fenced_before_send(self.tx_pending.len()) {
            self.tx_pending.clear();
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
        if !self.udp_pending.is_empty() && self.fenced_before_send(self.udp_pending.len()) {
            self.udp_pending.clear();
            return;
        }
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
        if self.shared.events.try_send(event).is_err() {
            self.counters.events_lost += 1;
        }
    }
}

/// Adjusts `spi` (e.g. a random one) so that it is anchored by steering on worker
/// `worker` of `workers`: `SPI % workers == worker`, and never in the reserved range
/// 0..=255. The UDP socket group then delivers its ESP-in-UDP packets straight to that
/// worker (see [`crate::io::udp::SpiSteering`]); control planes that choose inbound SPIs
/// should use it, with `workers` = [`DataplaneHandle::workers`] (failed workers
/// included: their slots are steered to live ones), so the handoff queue stays a
/// fallback.
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

    /// Runs `f` on a thread in a network namespace of its own with `lo` up, as root
    /// (sockets and workers it starts stay there), and returns its result.
    fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "needs root (a network namespace, raw sockets): run as root or skip with `cargo test -- --skip netns_`"
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare takes a flag and no pointers; it moves only this thread.
                let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "unshare: {}", io::Error::last_os_error());
                let up = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .expect("running ip");
                assert!(up.success(), "ip link set lo up: {up}");
                f()
            })
            .join()
            .expect("thread in the private namespace panicked")
        })
    }

    const NATT: ([u8; 4], u16) = ([127, 0, 0, 1], 4500);

    /// Datagrams received per live worker.
    fn udp_rx(h: &DataplaneHandle) -> HashMap<usize, u64> {
        h.stats_all()
            .expect("stats")
            .into_iter()
            .map(|s| (s.worker, s.io.udp_rx))
            .collect()
    }

    /// Sends one ESP-looking datagram per SPI and returns how many more datagrams each
    /// live worker received, once all of them were counted somewhere.
    fn steer(h: &DataplaneHandle, tx: &std::net::UdpSocket, spis: &[u32]) -> HashMap<usize, u64> {
        let before = udp_rx(h);
        for spi in spis {
            let mut esp = spi.to_be_bytes().to_vec();
            esp.extend_from_slice(&[0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd]);
            tx.send_to(&esp, SocketAddr::from(NATT)).expect("send");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = udp_rx(h);
            let delta: HashMap<usize, u64> = now
                .iter()
                .map(|(w, n)| (*w, n - before.get(w).copied().unwrap_or(0)))
                .filter(|(_, d)| *d > 0)
                .collect();
            if delta.values().sum::<u64>() >= spis.len() as u64 {
                return delta;
            }
            assert!(
                Instant::now() < deadline,
                "only {delta:?} of {} datagrams arrived on live workers",
                spis.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next `WorkerFailed` event, skipping others.
    fn next_failure(dp: &Dataplane) -> usize {
        loop {
            match dp.events().recv_timeout(Duration::from_secs(5)) {
                Ok(DataplaneEvent::WorkerFailed { worker }) => return worker,
                Ok(_) => {}
                Err(e) => panic!("no WorkerFailed event: {e}"),
            }
        }
    }

    /// A worker that panics counts as failed: the event comes, calls to it fail, and its
    /// steering slot goes to a live worker. A worker added from a thread outside the
    /// dataplane's namespace opens its socket inside it and is steered its own slot;
    /// the failed worker's socket, still in the group, is never picked.
    #[test]
    fn netns_failed_and_added_workers_are_steered_around() {
        let (dp, tx) = in_private_netns(|| {
            let config = DataplaneConfig {
                workers: 2,
                udp_bind: vec![SocketAddr::from(NATT)],
                raw_esp: false,
                raw_ah: false,
                ipv6: false,
                ..DataplaneConfig::default()
            };
            let dp = Dataplane::start(config).expect("starting the dataplane");
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender socket");
            (dp, tx)
        });
        let h = dp.handle();
        let spi = |w, n| spi_for_worker(0x1000_0000, w, n);

        // Two workers, steered by SPI % 2.
        let d = steer(
            &h,
            &tx,
            &[spi(1, 2), spi(1, 2), spi(1, 2), spi(0, 2), spi(0, 2)],
        );
        assert_eq!(d, HashMap::from([(1, 3), (0, 2)]));

        h.shared.send(1, Command::Panic).expect("injecting a panic");
        assert_eq!(next_failure(&dp), 1);
        assert_eq!(h.live_workers(), vec![0]);
        assert_eq!(h.workers(), 2);
        let local = IpAddr::from([127, 0, 0, 1]);
        let sa = |s| {
            SaConfig::esp_tunnel(Direction::Inbound, s, local, local)
                .with_encryption(crate::crypto::EncrAlg::AesGcm128, &[1; 20])
        };
        assert!(matches!(
            h.install_sa(1, sa(spi(1, 2))),
            Err(ControlError::WorkerFailed(1))
        ));
        assert!(matches!(h.stats(1), Err(ControlError::WorkerFailed(1))));
        h.fail_worker(1)
            .expect("failing a failed worker does nothing");
        assert!(matches!(h.fail_worker(0), Err(ControlError::LastWorker(0))));
        // Its slot now lands on worker 0.
        let d = steer(&h, &tx, &[spi(1, 2), spi(1, 2), spi(0, 2)]);
        assert_eq!(d, HashMap::from([(0, 3)]));

        // Added from this thread, which is not in the dataplane's namespace.
        assert_eq!(h.add_worker().expect("adding a worker"), 2);
        assert_eq!(h.live_workers(), vec![0, 2]);
        assert_eq!(h.workers(), 3);
        // SPI % 3: slot 2 on the new worker, dead slot 1 on a live one, none lost.
        let d = steer(&h, &tx, &[spi(2, 3), spi(2, 3), spi(0, 3), spi(1, 3)]);
        // (The dead slot goes to live[1 % 2], worker 2.)
        assert_eq!(d, HashMap::from([(2, 3), (0, 1)]));

        let mut inbound = sa(spi(2, 3));
        inbound.initial_seq = 77;
        let key = inbound.key();
        h.install_sa(2, inbound)
            .expect("installing on the added worker");
        assert_eq!(
            h.seq_marks(2).expect("marks"),
            vec![SeqMark { key, seq: 77 }]
        );

        // Failing explicitly: one event, IKE now leaves through the remaining worker.
        h.fail_worker(0).expect("failing worker 0");
        assert_eq!(next_failure(&dp), 0);
        assert_eq!(h.live_workers(), vec![2]);
        h.send_ike(None, tx.local_addr().expect("address"), b"probe".to_vec())
            .expect("send_ike");
        tx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let (n, from) = tx.recv_from(&mut buf).expect("IKE message from worker 2");
        assert_eq!(&buf[..n], b"\0\0\0\0probe");
        assert_eq!(from, SocketAddr::from(NATT));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !dp.events()
                .try_iter()
                .any(|e| matches!(e, DataplaneEvent::WorkerFailed { .. })),
            "a failure is reported once"
        );
    }

    /// Drops for `reason` summed over the live workers, waited for until they reach
    /// `want` (packets cross the TUN device asynchronously); more is an error.
    fn wait_drops(h: &DataplaneHandle, reason: DropReason, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got: u64 = h
                .stats_all()
                .expect("stats")
                .iter()
                .map(|s| s.drops().get(reason))
                .sum();
            if got >= want {
                assert_eq!(got, want, "more {reason:?} drops than packets sent");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got} of {want} {reason:?} drops"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The SPD published through the handle classifies what the kernel routes into the
    /// policy tunnel on every worker, including a worker added after it was published
    /// that replaces a failed one; an edit that fails publishes nothing.
    #[test]
    fn netns_spd_reaches_every_worker_and_later_ones() {
        use crate::selector::{IpPrefix, Selector};
        use crate::spd::{Policy, PolicyAction};

        let (dp, tx) = in_private_netns(|| {
            // No IPv6 on the new device, whose router solicitations would count as
            // drops too.
            std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
                .expect("disabling IPv6 in the namespace");
            let config = DataplaneConfig {
                workers: 1,
                tunnels: vec![TunnelConfig {
                    id: 100,
                    name: "pt0".into(),
                    mtu: 1400,
                    ipv6: true,
                }],
                udp_bind: Vec::new(),
                raw_esp: false,
                raw_ah: false,
                ipv6: false,
                engine: EngineConfig {
                    policy_tunnel: Some(100),
                    ..EngineConfig::default()
                },
                ..DataplaneConfig::default()
            };
            let dp = Dataplane::start(config).expect("starting the dataplane");
            for args in [
                &["addr", "add", "10.1.0.1/24", "dev", "pt0"][..],
                &["route", "add", "10.9.0.0/16", "dev", "pt0"][..],
            ] {
                let ok = std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .expect("running ip");
                assert!(ok.success(), "ip {args:?}: {ok}");
            }
            let tx = std::net::UdpSocket::bind("10.1.0.1:0").expect("sender socket");
            (dp, tx)
        });
        let h = dp.handle();
        let send = || {
            tx.send_to(b"policy", "10.9.0.1:9")
                .expect("sending into the policy tunnel");
        };
        let policy = |name: &str, action| Policy {
            name: name.into(),
            selector: Selector::new(
                "10.1.0.0/24".parse::<IpPrefix>().unwrap(),
                "10.9.0.0/16".parse::<IpPrefix>().unwrap(),
            ),
            action,
        };

        // Nothing published yet: default deny.
        send();
        wait_drops(&h, DropReason::NoPolicy, 1);

        h.set_spd(Spd::new());
        h.update_spd(|spd| spd.push(policy("deny", PolicyAction::Discard)))
            .expect("adding a policy");
        assert_eq!(h.spd().len(), 1);
        send();
        wait_drops(&h, DropReason::PolicyDiscard, 1);

        // A second worker replaces the first, which fails: it starts with the SPD.
        assert_eq!(h.add_worker().expect("adding a worker"), 1);
        h.fail_worker(0).expect("failing worker 0");
        assert_eq!(h.live_workers(), vec![1]);
        send();
        wait_drops(&h, DropReason::PolicyDiscard, 1);

        // A failed edit (a duplicate name) publishes nothing.
        assert_eq!(
            h.update_spd(|spd| spd.insert(0, policy("deny", PolicyAction::Bypass))),
            Err(SpdError::DuplicateName("deny".into()))
        );
        assert_eq!(h.spd().len(), 1);
        send();
        wait_drops(&h, DropReason::PolicyDiscard, 2);

        // Inserted ahead by name, then removed by name. A bypass verdict on the policy
        // tunnel is dropped: the kernel would route the packet straight back.
        h.update_spd(|spd| spd.insert(0, policy("clear", PolicyAction::Bypass)))
            .expect("inserting a policy");
        send();
        wait_drops(&h, DropReason::PolicyBypass, 1);
        let removed = h
            .update_spd(|spd| Ok::<_, SpdError>(spd.remove("clear")))
            .expect("removing a policy");
        assert_eq!(removed.map(|p| p.action), Some(PolicyAction::Bypass));
        send();
        wait_drops(&h, DropReason::PolicyDiscard, 3);
    }
}
