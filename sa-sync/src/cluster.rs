//! One running cluster member: the sans-IO [`Replica`] on a [`DiskLogStore`], driven by
//! ticks, by messages from the [`transport`](crate::transport) and by the node's
//! proposals and reads, behind a cheap [`ClusterHandle`].
//!
//! The replica runs on a thread of its own (with a current-thread tokio runtime for its
//! timers and channels) because every `process` call may `fsync` the log: blocking a
//! worker of the node's multi-thread runtime for milliseconds at a time would stall
//! unrelated tasks (IKE, management). The gRPC server and the per-member senders are
//! ordinary tasks on the caller's runtime.
//!
//! The loop wakes on any input, takes every other input already waiting (bounded), and
//! then calls `process` once, so that concurrent proposals and inbound messages share
//! one `fsync` (group commit).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::StorageError;
use raft::eraftpb::{Message, MessageType};
use rand_core::RngCore;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::command::{Command, Outcome};
use crate::disk::DiskLogStore;
use crate::record::Member;
use crate::replica::{Applied, ProposalId, Replica, ReplicaConfig, ReplicaError};
use crate::state::ClusterState;
use crate::store::StoreError;
use crate::transport::{
    self, ClusterTls, INBOUND_QUEUE, InboundCounters, InboundStats, PeerEvent, PeerLink,
    TransportError,
};

/// Default Raft tick: with the replica's default 10 election ticks and 2 heartbeat
/// ticks, a leader is missed after 200-400 ms and heartbeats every 40 ms.
pub const DEFAULT_TICK: Duration = Duration::from_millis(20);

/// Default time a proposal may take to be applied locally.
pub const DEFAULT_PROPOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Without an acknowledgement in this time a sent snapshot is taken as lost, so that
/// raft-rs sends another (covers losses the transport cannot see, such as a stream
/// that broke after the snapshot was handed to it).
const SNAPSHOT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Inputs taken per wake-up before `process` (bounds the latency of one batch).
const MAX_BATCH: usize = 256;

/// Applied entries a slow [`ClusterHandle::applied`] subscriber may lag behind.
const APPLIED_CAPACITY: usize = 4096;

/// Proposals and reads waiting for the replica thread.
const REQUEST_QUEUE: usize = 1024;

/// How long shutdown waits for open streams to end before cutting them.
const SERVER_DRAIN: Duration = Duration::from_secs(2);

/// Ticks between sweeps of abandoned (timed out) proposals.
const SWEEP_TICKS: u64 = 50;

/// How to run one member.
#[derive(Debug, Clone)]
pub struct ClusterNodeConfig {
    /// This member.
    pub me: Member,
    /// The cluster port to listen on.
    pub listen: SocketAddr,
    /// The cluster address of every other member.
    pub peers: Vec<(Member, SocketAddr)>,
    /// Where the Raft log lives (a raft-engine directory, created if missing).
    pub data_dir: PathBuf,
    /// Certificates and key (PEM).
    pub tls: ClusterTls,
    /// The Raft tick.
    pub tick: Duration,
    /// Raft settings.
    pub replica: ReplicaConfig,
    /// How long [`ClusterHandle::propose`] waits for its entry to be applied.
    pub propose_timeout: Duration,
}

impl ClusterNodeConfig {
    /// A configuration with the default tick, Raft settings and proposal timeout.
    pub fn new(
        me: Member,
        listen: SocketAddr,
        peers: Vec<(Member, SocketAddr)>,
        data_dir: PathBuf,
        tls: ClusterTls,
    ) -> Self {
        Self {
            me,
            listen,
            peers,
            data_dir,
            tls,
            tick: DEFAULT_TICK,
            replica: ReplicaConfig::default(),
            propose_timeout: DEFAULT_PROPOSE_TIMEOUT,
        }
    }
}

/// Why a member did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// TLS material or addresses are unusable.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The cluster port could not be bound.
    #[error("cluster port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The log store did not open.
    #[error("cluster log: {0}")]
    Store(#[from] StoreError),
    /// The replica did not open on the store.
    #[error("cluster replica: {0}")]
    Replica(#[from] ReplicaError),
    /// The replica's thread or runtime, or the OS random source, failed.
    #[error("cluster member runtime: {0}")]
    Runtime(String),
}

/// Why a proposal has no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known (an election is under way, or no quorum): retry later.
    #[error("no Raft leader")]
    NoLeader,
    /// Not applied in time: it may still be applied later (or have been dropped by a
    /// leader change); the caller must read the state to know.
    #[error("proposal not applied within {0:?}")]
    Timeout(Duration),
    /// The member stopped.
    #[error("cluster member stopped")]
    Stopped,
    /// The replica refused the proposal (it did not encode).
    #[error("proposal refused: {0}")]
    Refused(String),
}

/// The member stopped before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cluster member stopped")]
pub struct Stopped;

/// This member's part in the Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It leads.
    Leader,
    /// It follows a known leader.
    Follower,
    /// It knows no leader (an election is under way or there is no quorum).
    Leaderless,
}

/// Whether the member runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Running.
    Running,
    /// Shut down (or every handle was dropped).
    Stopped,
    /// Stopped by a failure (the log store, the replica): the reason.
    Failed(String),
}

/// What this member knows of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The member.
    pub member: Member,
    /// Whether our stream to it is up.
    pub connected: bool,
    /// When a message from it last arrived. Followers only hear from the leader, so a
    /// follower's other follower may stay silent while healthy.
    pub last_contact: Option<Instant>,
    /// Messages for it dropped so far (queue full, or it was unreachable).
    pub dropped: u64,
}

/// A member's Raft status. Leader, role, term and indexes are current after every
/// batch; peer and inbound figures are refreshed every tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// This member.
    pub me: Member,
    /// Running, stopped or failed.
    pub lifecycle: Lifecycle,
    /// The leader this member knows of.
    pub leader: Option<Member>,
    /// This member's role.
    pub role: Role,
    /// Raft term.
    pub term: u64,
    /// Highest committed index known here.
    pub commit: u64,
    /// Highest index applied to the state here.
    pub applied: u64,
    /// The other members.
    pub peers: Vec<PeerStatus>,
    /// What the server did with inbound messages.
    pub inbound: InboundStats,
}

type Reply = oneshot::Sender<Result<Outcome, ProposeError>>;

enum Request {
    Propose(Command, Reply),
    Read(Box<dyn FnOnce(&ClusterState) + Send>),
}

/// A running member, shared by everything in the node that proposes, reads or watches.
/// Dropping every handle without [`ClusterHandle::shutdown`] stops the member too.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    me: Member,
    local_addr: SocketAddr,
    requests: mpsc::Sender<Request>,
    applied: broadcast::Sender<Applied>,
    status: watch::Receiver<RaftStatus>,
    propose_timeout: Duration,
    stop: Arc<watch::Sender<bool>>,
    finished: watch::Receiver<bool>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("me", &self.inner.me)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl ClusterHandle {
    /// This member.
    pub fn me(&self) -> Member {
        self.inner.me
    }

    /// The address the cluster port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Proposes `command` and returns its outcome once the entry is applied here, or an
    /// error after the configured timeout. A proposal made on a follower is forwarded
    /// to the leader.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let limit = self.inner.propose_timeout;
        let work = async {
            let (reply, outcome) = oneshot::channel();
            self.inner
                .requests
                .send(Request::Propose(command, reply))
                .await
                .map_err(|_| ProposeError::Stopped)?;
            outcome.await.map_err(|_| ProposeError::Stopped)?
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| ProposeError::Timeout(limit))?
    }

    /// Every entry applied here from now on, in log order. A subscriber more than a few
    /// thousand entries behind gets `RecvError::Lagged` and must re-read the state.
    pub fn applied(&self) -> broadcast::Receiver<Applied> {
        self.inner.applied.subscribe()
    }

    /// Runs `f` on the state as applied here (a local read: it may trail the leader by
    /// the entries not yet applied here).
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ClusterState) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (reply, result) = oneshot::channel();
        let job = Box::new(move |state: &ClusterState| {
            // The reader may have given up; nothing to do then.
            let _ = reply.send(f(state));
        });
        self.inner
            .requests
            .send(Request::Read(job))
            .await
            .map_err(|_| Stopped)?;
        result.await.map_err(|_| Stopped)
    }

    /// The current status (a copy of the latest published one).
    pub fn status(&self) -> RaftStatus {
        self.inner.status.borrow().clone()
    }

    /// The status as a watch, to wait for changes (a leader, an index, a stop).
    pub fn watch_status(&self) -> watch::Receiver<RaftStatus> {
        self.inner.status.clone()
    }

    /// Stops the member: the replica finishes its current batch and closes the log,
    /// the server ends every stream, the senders stop. Returns when all of that is
    /// done, so the directory and the port can be used again at once. Other handles
    /// see [`ProposeError::Stopped`] from then on.
    pub async fn shutdown(self) {
        self.inner.stop.send_replace(true);
        let mut finished = self.inner.finished.clone();
        // An error means the supervisor is gone, which it only is when done.
        let _ = finished.wait_for(|done| *done).await;
    }
}

/// Starts cluster members.
#[derive(Debug)]
pub struct ClusterNode;

impl ClusterNode {
    /// Opens the log in `config.data_dir`, opens the replica on it, binds the cluster
    /// port and starts the server, one sender per other member and the tick. Must be
    /// called within a tokio runtime (the server and the senders are spawned on it).
    pub async fn start(config: ClusterNodeConfig) -> Result<ClusterHandle, StartError> {
        check_config(&config)?;
        let me = config.me;
        let own = transport::member_of_pem(&config.tls.cert_pem)?;
        if own != me {
            return Err(StartError::Config(format!(
                "the certificate names {own}, not {me}"
            )));
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let counters = Arc::new(InboundCounters::default());
        // Everything that can fail on bad input is built before anything runs.
        let router = transport::server(
            me,
            &config.tls,
            inbound_tx,
            counters.clone(),
            stop_rx.clone(),
        )?;
        let mut channels = Vec::new();
        for (peer, addr) in &config.peers {
            channels.push((*peer, transport::channel(*peer, *addr, &config.tls)?));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut peers = BTreeMap::new();
        let mut senders = Vec::new();
        for (peer, channel) in channels {
            let (link, task) =
                transport::spawn_sender(peer, channel, events_tx.clone(), stop_rx.clone());
            peers.insert(peer, link);
            senders.push(task);
        }
        drop(events_tx);

        let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let (applied_tx, _) = broadcast::channel(APPLIED_CAPACITY);
        let (status_tx, status_rx) = watch::channel(RaftStatus {
            me,
            lifecycle: Lifecycle::Running,
            leader: None,
            role: Role::Leaderless,
            term: 0,
            commit: 0,
            applied: 0,
            peers: Vec::new(),
            inbound: InboundStats::default(),
        });
        let status_tx = Arc::new(status_tx);
        let parts = DriverParts {
            requests: requests_rx,
            inbound: inbound_rx,
            events: events_rx,
            peers,
            applied: applied_tx.clone(),
            status: status_tx.clone(),
            counters,
            tick: config.tick,
            stop: stop_rx.clone(),
        };
        let (opened_tx, opened_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let data_dir = config.data_dir.clone();
        let replica_config = config.replica.clone();
        let thread = std::thread::Builder::new()
            .name(format!("raft-{me}"))
            .spawn(move || {
                drive(me, data_dir, replica_config, parts, opened_tx);
                // Sent after the store is closed: shutdown may then reuse the directory.
                let _ = done_tx.send(());
            });
        let opened = match thread {
            Ok(_) => opened_rx
                .await
                .unwrap_or_else(|_| Err(StartError::Runtime("replica thread died".into()))),
            Err(e) => Err(StartError::Runtime(format!("replica thread: {e}"))),
        };
        if let Err(e) = opened {
            stop_tx.send_replace(true);
            for task in senders {
                task.abort();
            }
            return Err(e);
        }

        let server = tokio::spawn(transport::serve(router, listener, stop_rx));
        let (finished_tx, finished_rx) = watch::channel(false);
        tokio::spawn(supervise(
            me,
            done_rx,
            stop_tx.clone(),
            status_tx,
            server,
            senders,
            finished_tx,
        ));
        tracing::info!(member = %me, addr = %local_addr, "cluster member started");
        Ok(ClusterHandle {
            inner: Arc::new(Inner {
                me,
                local_addr,
                requests: requests_tx,
                applied: applied_tx,
                status: status_rx,
                propose_timeout: config.propose_timeout,
                stop: stop_tx,
                finished: finished_rx,
            }),
        })
    }
}

fn check_config(config: &ClusterNodeConfig) -> Result<(), StartError> {
    for member in Member::ALL {
        let count = config.peers.iter().filter(|(m, _)| *m == member).count();
        let want = usize::from(member != config.me);
        if count != want {
            return Err(StartError::Config(if member == config.me {
                format!("{member} is this member and cannot be its own peer")
            } else {
                format!("{member} must be listed once among the peers, found {count}")
            }));
        }
    }
    if config.tick.is_zero() {
        return Err(StartError::Config("the tick must not be zero".into()));
    }
    Ok(())
}

/// Once the replica thread ends (stopped or failed), stops and waits for the rest.
async fn supervise(
    me: Member,
    done: oneshot::Receiver<()>,
    stop: Arc<watch::Sender<bool>>,
    status: Arc<watch::Sender<RaftStatus>>,
    mut server: JoinHandle<()>,
    senders: Vec<JoinHandle<()>>,
    finished: watch::Sender<bool>,
) {
    if done.await.is_err() {
        // The thread unwound without reporting: a panic inside raft-rs.
        tracing::error!(member = %me, "cluster replica thread panicked; member stopped");
        status.send_modify(|s| {
            if s.lifecycle == Lifecycle::Running {
                s.lifecycle = Lifecycle::Failed("replica thread panicked".into());
            }
        });
    }
    stop.send_replace(true);
    if tokio::time::timeout(SERVER_DRAIN, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(member = %me, "cluster server did not drain in time; cut");
        server.abort();
    }
    for sender in senders {
        // They watch the stop signal; a sender stuck in a connect is cut.
        if tokio::time::timeout(SERVER_DRAIN, sender).await.is_err() {
            tracing::warn!(member = %me, "cluster sender did not stop in time");
        }
    }
    finished.send_replace(true);
    tracing::info!(member = %me, "cluster member stopped");
}

/// The driver's inputs and outputs, made before its thread starts.
struct DriverParts {
    requests: mpsc::Receiver<Request>,
    inbound: mpsc::Receiver<Message>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    peers: BTreeMap<Member, PeerLink>,
    applied: broadcast::Sender<Applied>,
    status: Arc<watch::Sender<RaftStatus>>,
    counters: Arc<InboundCounters>,
    tick: Duration,
    stop: watch::Receiver<bool>,
}

/// The replica thread: opens the store and the replica, reports that, then runs.
fn drive(
    me: Member,
    data_dir: PathBuf,
    config: ReplicaConfig,
    parts: DriverParts,
    opened: oneshot::Sender<Result<(), StartError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = opened.send(Err(StartError::Runtime(format!("runtime: {e}"))));
            return;
        }
    };
    let replica = match open_replica(me, &data_dir, &config) {
        Ok(replica) => replica,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    if opened.send(Ok(())).is_err() {
        return;
    }
    let driver = Driver {
        replica,
        parts,
        pending: HashMap::new(),
        contacts: BTreeMap::new(),
        snapshots: BTreeMap::new(),
        peer_status: Vec::new(),
        inbound_stats: InboundStats::default(),
    };
    runtime.block_on(driver.run());
}

fn open_replica(
    me: Member,
    data_dir: &std::path::Path,
    config: &ReplicaConfig,
) -> Result<Replica<DiskLogStore>, StartError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::Engine(format!("create {}: {e}", data_dir.display())))?;
    let store = DiskLogStore::open(data_dir)?;
    let mut seed = [0u8; 8];
    rand_core::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| StartError::Runtime(format!("OS random source: {e}")))?;
    let incarnation = u64::from_le_bytes(seed);
    let logger = slog::Logger::root(RaftLogDrain { member: me }, slog::o!());
    Ok(Replica::open(me, store, config, incarnation, &logger)?)
}

enum Input {
    Tick,
    Request(Request),
    Message(Message),
    Event(PeerEvent),
}

struct Driver {
    replica: Replica<DiskLogStore>,
    parts: DriverParts,
    pending: HashMap<ProposalId, Reply>,
    /// When each member's last message arrived.
    contacts: BTreeMap<Member, Instant>,
    /// Snapshots sent and not yet acknowledged: index and time sent.
    snapshots: BTreeMap<Member, (u64, Instant)>,
    peer_status: Vec<PeerStatus>,
    inbound_stats: InboundStats,
}

/// Errors after which the replica must not go on: the log store failed (or raft-rs
/// could not read it), or a `Ready` was only partly handled.
fn fatal(e: &ReplicaError) -> bool {
    matches!(
        e,
        ReplicaError::Store(_)
            | ReplicaError::Raft(raft::Error::Store(StorageError::Other(_)) | raft::Error::Io(_))
    )
}

impl Driver {
    async fn run(mut self) {
        let me = self.replica.me();
        let result = self.event_loop().await;
        let lifecycle = match result {
            Ok(()) => Lifecycle::Stopped,
            Err(e) => {
                tracing::error!(member = %me, error = %e, "cluster member failed and stopped");
                Lifecycle::Failed(e.to_string())
            }
        };
        self.publish(true);
        self.parts.status.send_modify(|s| s.lifecycle = lifecycle);
        // Dropping `self` closes the store and fails every pending proposal (Stopped).
    }

    async fn event_loop(&mut self) -> Result<(), ReplicaError> {
        let mut ticker = tokio::time::interval(self.parts.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            let parts = &mut self.parts;
            let input = tokio::select! {
                biased;
                _ = parts.stop.wait_for(|stop| *stop) => return Ok(()),
                _ = ticker.tick() => Input::Tick,
                Some(msg) = parts.inbound.recv() => Input::Message(msg),
                Some(event) = parts.events.recv() => Input::Event(event),
                request = parts.requests.recv() => match request {
                    Some(request) => Input::Request(request),
                    None => return Ok(()),
                },
            };
            let mut ticked = false;
            match input {
                Input::Tick => {
                    ticks += 1;
                    ticked = true;
                    self.tick(ticks);
                }
                Input::Message(msg) => self.on_message(msg)?,
                Input::Event(event) => self.on_event(event),
                Input::Request(request) => self.on_request(request),
            }
            for _ in 0..MAX_BATCH {
                let mut more = false;
                if let Ok(msg) = self.parts.inbound.try_recv() {
                    self.on_message(msg)?;
                    more = true;
                }
                if let Ok(request) = self.parts.requests.try_recv() {
                    self.on_request(request);
                    more = true;
                }
                if let Ok(event) = self.parts.events.try_recv() {
                    self.on_event(event);
                    more = true;
                }
                if !more {
                    break;
                }
            }
            self.replica.process()?;
            self.send_messages();
            // Status first: a proposer that has its outcome then sees `applied` at or
            // past its entry.
            self.publish(ticked);
            self.deliver_applied();
        }
    }

    fn tick(&mut self, ticks: u64) {
        self.replica.tick();
        let now = Instant::now();
        let lost: Vec<Member> = self
            .snapshots
            .iter()
            .filter(|(_, (_, sent))| now.duration_since(*sent) > SNAPSHOT_ACK_TIMEOUT)
            .map(|(m, _)| *m)
            .collect();
        for member in lost {
            tracing::warn!(%member, "snapshot not acknowledged in time; taken as lost");
            self.snapshots.remove(&member);
            self.replica.report_snapshot_lost(member);
        }
        if ticks.is_multiple_of(SWEEP_TICKS) {
            self.pending.retain(|_, reply| !reply.is_closed());
        }
    }

    fn on_message(&mut self, msg: Message) -> Result<(), ReplicaError> {
        if let Some(from) = Member::from_raft_id(msg.from) {
            self.contacts.insert(from, Instant::now());
            if msg.get_msg_type() == MessageType::MsgAppendResponse
                && !msg.reject
                && self
                    .snapshots
                    .get(&from)
                    .is_some_and(|(index, _)| msg.index >= *index)
            {
                self.snapshots.remove(&from);
            }
        }
        match self.replica.step(msg) {
            Ok(()) => Ok(()),
            Err(e) if fatal(&e) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "Raft message refused");
                Ok(())
            }
        }
    }

    fn on_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Unreachable(member) => self.replica.report_unreachable(member),
            PeerEvent::SnapshotLost(member) => {
                self.snapshots.remove(&member);
                self.replica.report_snapshot_lost(member);
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Read(job) => job(self.replica.state()),
            Request::Propose(command, reply) => match self.replica.propose(&command) {
                Ok(id) => {
                    self.pending.insert(id, reply);
                }
                Err(ReplicaError::NoLeader) => {
                    let _ = reply.send(Err(ProposeError::NoLeader));
                }
                Err(e) => {
                    let _ = reply.send(Err(ProposeError::Refused(e.to_string())));
                }
            },
        }
    }

    /// Hands the replica's messages to the senders.
    fn send_messages(&mut self) {
        for msg in self.replica.take_messages() {
            let Some(to) = Member::from_raft_id(msg.to) else {
                continue;
            };
            let Some(link) = self.parts.peers.get(&to) else {
                continue;
            };
            let snapshot = (msg.get_msg_type() == MessageType::MsgSnapshot)
                .then(|| msg.get_snapshot().get_metadata().index);
            match (link.push(msg), snapshot) {
                (Ok(()), Some(index)) => {
                    self.snapshots.insert(to, (index, Instant::now()));
                }
                (Err(_), Some(_)) => self.replica.report_snapshot_lost(to),
                _ => {}
            }
        }
    }

    /// Hands applied entries to their proposers and to the subscribers.
    fn deliver_applied(&mut self) {
        while let Some(applied) = self.replica.poll_applied() {
            if let Some(reply) = applied.proposal.and_then(|id| self.pending.remove(&id)) {
                let _ = reply.send(Ok(applied.outcome));
            }
            // No subscriber is fine.
            let _ = self.parts.applied.send(applied);
        }
    }

    /// Publishes the status if it changed; peer and inbound figures only on ticks.
    fn publish(&mut self, refresh: bool) {
        if refresh {
            self.peer_status = self
                .parts
                .peers
                .iter()
                .map(|(member, link)| PeerStatus {
                    member: *member,
                    connected: link.connected(),
                    last_contact: self.contacts.get(member).copied(),
                    dropped: link.dropped(),
                })
                .collect();
            self.inbound_stats = self.parts.counters.stats();
        }
        let leader = self.replica.leader();
        let role = if self.replica.is_leader() {
            Role::Leader
        } else if leader.is_some() {
            Role::Follower
        } else {
            Role::Leaderless
        };
        let status = RaftStatus {
            me: self.replica.me(),
            lifecycle: Lifecycle::Running,
            leader,
            role,
            term: self.replica.term(),
            commit: self.replica.committed(),
            applied: self.replica.state().applied(),
            peers: self.peer_status.clone(),
            inbound: self.inbound_stats,
        };
        self.parts.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

/// Forwards raft-rs' slog records to tracing. Debug and trace records are dropped:
/// raft-rs prints whole messages there, entries (and so key material) included.
struct RaftLogDrain {
    member: Member,
}

impl slog::Drain for RaftLogDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        if !record.level().is_at_least(slog::Level::Info) {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        // A value that fails to format is left out; the message still goes.
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        let member = self.member;
        let msg = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", %member, "{msg}{}", kv.0);
            }
            slog::Level::Warning => tracing::warn!(target: "raft", %member, "{msg}{}", kv.0),
            _ => tracing::info!(target: "raft", %member, "{msg}{}", kv.0),
        }
        Ok(())
    }
}

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}
