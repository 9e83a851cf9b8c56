//! The `Redundancy` actor: runs this node's `ha::GroupFsm` for every redundancy group
//! against the replicated log, and turns its decisions into effects: the dataplane
//! fence, the floating reth addresses, and gateways that take over or stand by.
//!
//! It keeps a mirror of the replicated `ClusterState`: the state machine is
//! deterministic, so applying the applied-entry feed to a copy read once at start gives
//! the same state as the replica's, without a round trip per entry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dataplane::sa::Direction;
use dataplane::worker::DataplaneHandle;
use ha::{GroupFsm, GroupRole, PeerView};
use sa_sync::cluster::{ClusterHandle, ProposeError};
use sa_sync::{Applied, ClusterState, Command, Fence, Member, NodeStatus, Outcome, SaId};
use tokio::sync::broadcast;

use crate::mgmt::backend::{
    ClusterStatisticsView, ClusterStatusView, EventKind, EventView, GroupNodeView,
    MemberReachabilityView, RaftView, RecordKind, RedundancyGroupView, RedundancyState,
    ReplicationView,
};
use crate::runtime::gateway::{Activate, Deactivate, Gateway};
use crate::runtime::spec::ClusterSpec;

/// Replay marks are proposed at most this often (renewals carry them too).
const MARK_INTERVAL: Duration = Duration::from_millis(50);
/// Gratuitous ARPs / unsolicited NAs sent when an address moves here.
const ANNOUNCEMENTS: usize = 3;
/// When to announce a group's addresses again after taking it over.
const REANNOUNCE_AFTER: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];

/// An entry applied by the replica.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct AppliedEntry(Box<Applied>);

/// The applied feed lagged or closed: read the whole state again.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Resync(Box<ClusterState>);

/// The reth addresses of a group taken over are in place.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct AddressesTaken {
    group: u8,
    epoch: u64,
}

/// An IP monitor's probe came back.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Probed {
    address: std::net::IpAddr,
    answered: bool,
}

/// `show chassis cluster status`.
#[derive(Message, Debug)]
#[rtype(result = "ClusterStatusView")]
pub struct Status;

/// The node is shutting down: stop forwarding now and hand every owned group over.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Leave;

/// `show chassis cluster statistics`.
#[derive(Message, Debug)]
#[rtype(result = "ClusterStatisticsView")]
pub struct Statistics;

/// `request chassis cluster failover [reset]`: pins a group to a node (or unpins it).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), String>")]
pub struct Pin {
    /// The group.
    pub group: u8,
    /// The node, or `None` to reset.
    pub node: Option<Member>,
}

/// Counters for `show chassis cluster statistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lease renewals proposed.
    pub renewals_sent: u64,
    /// Lease renewals committed.
    pub renewals_committed: u64,
    /// Times this node became primary of a group.
    pub takeovers: u64,
    /// Replay mark batches proposed.
    pub mark_batches: u64,
    /// Lease renewals of the other node applied here.
    pub renewals_received: u64,
    /// Records written by this node and by others, per `RecordKind::ALL`.
    pub records: [(u64, u64); 4],
}

/// The redundancy-group actor of a gateway node.
pub struct Redundancy {
    spec: ClusterSpec,
    handle: ClusterHandle,
    dataplane: DataplaneHandle,
    gateways: Vec<(u8, Addr<Gateway>)>,
    fsms: Vec<GroupFsm>,
    mirror: ClusterState,
    /// Groups this node forwards, with the epoch it forwards them at.
    active: BTreeMap<u8, u64>,
    last_marks: Instant,
    counters: Counters,
    /// The applied-entry feed, subscribed before `mirror` was read so nothing falls in
    /// between; taken by `started`.
    feed: Option<broadcast::Receiver<Applied>>,
    probes: Vec<super::monitor::IpProbe>,
    /// Shutting down: no more proposals of our own.
    leaving: bool,
    /// Current monitoring failures per group.
    failures: BTreeMap<u8, Vec<crate::mgmt::backend::MonitorFailure>>,
    last_monitor: Instant,
    /// The management event feed: a `failover` event when a group moves here or away.
    events: broadcast::Sender<EventView>,
}

impl std::fmt::Debug for Redundancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redundancy")
            .field("me", &self.spec.me)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Redundancy {
    /// The actor for this node; `state` is the replicated state read after subscribing
    /// to `feed`, which the actor follows from then on.
    pub fn new(
        spec: ClusterSpec,
        handle: ClusterHandle,
        dataplane: DataplaneHandle,
        gateways: Vec<(u8, Addr<Gateway>)>,
        (feed, state): (broadcast::Receiver<Applied>, ClusterState),
        events: broadcast::Sender<EventView>,
    ) -> Self {
        let now = Instant::now();
        let fsms = spec
            .ha
            .groups
            .iter()
            .map(|g| GroupFsm::new(spec.me, &spec.ha, g, now))
            .collect();
        let mut probes: Vec<super::monitor::IpProbe> = Vec::new();
        for m in spec.ha.groups.iter().flat_map(|g| g.ip_monitor.iter()) {
            if !probes.iter().any(|p| p.address() == m.address) {
                probes.push(super::monitor::IpProbe::new(m.clone(), now));
            }
        }
        // Nothing is forwarded until a lease says so (every group starts fenced; said
        // again for a dataplane that forwarded before).
        for g in &spec.ha.groups {
            dataplane.set_fence(g.id, Some(now));
        }
        Self {
            spec,
            handle,
            dataplane,
            gateways,
            fsms,
            mirror: state,
            active: BTreeMap::new(),
            last_marks: now,
            counters: Counters::default(),
            feed: Some(feed),
            probes,
            leaving: false,
            failures: BTreeMap::new(),
            last_monitor: now,
            events,
        }
    }

    /// Publishes a `failover` event (nobody listening is fine).
    fn publish_failover(&self, message: String) {
        let _ = self.events.send(EventView {
            timestamp: std::time::SystemTime::now(),
            kind: EventKind::Failover,
            gateway: None,
            vpn: None,
            spi: None,
            message,
        });
    }

    fn tick_interval(&self) -> Duration {
        (self.spec.ha.heartbeat_interval / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(100))
    }

    fn peer_view(&self, group: u8) -> PeerView {
        let Some(peer) = self.spec.me.peer() else {
            return PeerView {
                priority: 0,
                alive: false,
            };
        };
        let priority = self
            .mirror
            .node_status(peer)
            .and_then(|s| s.priorities.iter().find(|(g, _)| *g == group))
            .map_or_else(
                || {
                    self.spec
                        .ha
                        .group(group)
                        .and_then(|g| g.priority.get(peer.index()).copied())
                        .unwrap_or(0)
                },
                |(_, p)| *p,
            );
        let alive = self
            .handle
            .status()
            .peers
            .iter()
            .any(|p| p.member == peer && p.connected);
        PeerView { priority, alive }
    }

    /// Inbound high marks the dataplane holds above what the log has.
    fn fresh_marks(&self) -> Vec<(SaId, u64)> {
        let by_spi: BTreeMap<u32, SaId> = self
            .mirror
            .all_child_sas()
            .map(|c| {
                (
                    c.inbound_spi,
                    SaId {
                        gateway: c.gateway.clone(),
                        spi: c.inbound_spi,
                    },
                )
            })
            .collect();
        let mut marks = Vec::new();
        for w in self.dataplane.live_workers() {
            let Ok(held) = self.dataplane.seq_marks(w) else {
                continue;
            };
            for m in held {
                if m.key.direction != Direction::Inbound {
                    continue;
                }
                if let Some(id) = by_spi.get(&m.key.spi)
                    && self.mirror.replay_mark(id).is_some_and(|r| r < m.seq)
                {
                    marks.push((id.clone(), m.seq));
                }
            }
        }
        marks
    }

    /// Re-evaluates the monitors (at most every 100 ms) and the weights they cost.
    fn monitor(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if now < self.last_monitor + Duration::from_millis(100) {
            return;
        }
        self.last_monitor = now;
        for p in &mut self.probes {
            if let Some(address) = p.due(now) {
                // Until the answer comes, the next probe is not due.
                p.record(true, now);
                let me = ctx.address();
                actix::spawn(async move {
                    let answered = tokio::task::spawn_blocking(move || {
                        super::monitor::echo(address, Duration::from_secs(1))
                    })
                    .await
                    .unwrap_or(false);
                    me.do_send(Probed { address, answered });
                });
            }
        }
        let live = self.dataplane.live_workers();
        let failed_spus: Vec<usize> = (0..self.dataplane.workers())
            .filter(|w| !live.contains(w))
            .collect();
        let mut changed = false;
        for fsm in &mut self.fsms {
            let Some(group) = self.spec.ha.group(fsm.group()) else {
                continue;
            };
            let failures = super::monitor::failures(group, &self.probes, &failed_spus);
            let weight: u32 = failures.iter().map(|f| f.weight).sum();
            let before = fsm.effective_priority();
            fsm.set_failed_weight(weight);
            if fsm.effective_priority() != before {
                tracing::warn!(
                    group = fsm.group(),
                    weight,
                    ?failures,
                    "monitoring weight changed the node's priority"
                );
                changed = true;
            }
            self.failures.insert(fsm.group(), failures);
        }
        if changed {
            self.publish_status();
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        self.monitor(ctx);
        let now = Instant::now();
        for i in 0..self.fsms.len() {
            let group = self.fsms[i].group();
            let peer = self.peer_view(group);
            let Some(mut command) = self.fsms[i].poll(now, peer) else {
                continue;
            };
            if let Command::Renew(_, marks) = &mut command {
                *marks = self.fresh_marks();
                self.counters.renewals_sent += 1;
            }
            self.propose_group(i, command, now, ctx);
        }
        if now >= self.last_marks + MARK_INTERVAL && !self.active.is_empty() {
            self.last_marks = now;
            let marks = self.fresh_marks();
            if let Some((&group, &epoch)) = self.active.iter().next()
                && !marks.is_empty()
            {
                self.counters.mark_batches += 1;
                let fence = Fence {
                    group,
                    node: self.spec.me,
                    epoch,
                };
                let handle = self.handle.clone();
                actix::spawn(async move {
                    let _ = handle.propose(Command::ReplayMarks(fence, marks)).await;
                });
            }
        }
        self.reconcile(ctx);
    }

    fn propose_group(&mut self, i: usize, command: Command, at: Instant, ctx: &mut Context<Self>) {
        let handle = self.handle.clone();
        let renew = matches!(command, Command::Renew(..));
        let acquire = matches!(command, Command::Acquire { .. });
        tracing::debug!(group = self.fsms[i].group(), ?command, "cluster proposal");
        let fut = async move { handle.propose(command).await };
        ctx.spawn(fut.into_actor(self).map(move |res: Result<Outcome, ProposeError>, act, ctx| {
            let fsm = &mut act.fsms[i];
            match res {
                Ok(Ok(())) if acquire => fsm.acquired(at),
                Ok(Ok(())) if renew => {
                    act.counters.renewals_committed += 1;
                    fsm.renewed(at);
                }
                Ok(Ok(())) => {}
                Ok(Err(rejected)) => {
                    tracing::debug!(group = fsm.group(), %rejected, "cluster proposal refused");
                    fsm.proposal_lost();
                }
                Err(e) => {
                    tracing::debug!(group = fsm.group(), error = %e, "cluster proposal lost");
                    fsm.proposal_lost();
                }
            }
            act.reconcile(ctx);
        }));
    }

    /// Makes the effects match the FSMs: fences, addresses, gateways.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let groups: Vec<(u8, Option<Instant>, u64)> = self
            .fsms
            .iter()
            .filter(|f| f.group() != 0)
            .map(|f| (f.group(), f.forward_until(now), f.seen().epoch))
            .collect();
        for (group, until, epoch) in groups {
            // Each group's SAs stop at the end of this node's lease on that group.
            self.dataplane.set_fence(group, Some(until.unwrap_or(now)));
            match (until.is_some(), self.active.get(&group).copied()) {
                (true, None) => self.take_over(group, epoch, ctx),
                (true, Some(e)) if e != epoch => {
                    self.stand_by(group);
                    self.take_over(group, epoch, ctx);
                }
                (false, Some(_)) => self.stand_by(group),
                _ => {}
            }
        }
    }

    fn take_over(&mut self, group: u8, epoch: u64, ctx: &mut Context<Self>) {
        tracing::warn!(group, epoch, member = %self.spec.me, "redundancy group: becoming primary");
        self.publish_failover(format!(
            "redundancy-group {group}: {} became primary (epoch {epoch})",
            self.spec.me
        ));
        self.counters.takeovers += 1;
        self.active.insert(group, epoch);
        // The addresses first: gateways that resume or initiate right away need their
        // local address to send from.
        let reths = self.reths_of(group);
        let me = ctx.address();
        actix::spawn(async move {
            for r in &reths {
                if let Err(e) =
                    crate::runtime::net::set_addresses(&r.interface, &r.addresses, true).await
                {
                    tracing::error!(reth = %r.name, interface = %r.interface, error = %e, "taking the reth addresses");
                }
            }
            me.do_send(AddressesTaken { group, epoch });
            for _ in 0..ANNOUNCEMENTS {
                announce(&reths);
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        });
        // Again later, while still primary at this epoch: a member killed with its
        // kernel alive still holds the addresses, and its kernel's ARP requests (sent
        // from a reth address) point the neighbours back at it until it restarts and
        // drops them; the neighbours only come back with the next announcement.
        for after in REANNOUNCE_AFTER {
            ctx.run_later(after, move |act, _| {
                if act.active.get(&group) == Some(&epoch) {
                    announce(&act.reths_of(group));
                }
            });
        }
    }

    fn reths_of(&self, group: u8) -> Vec<crate::runtime::spec::RethSpec> {
        self.spec
            .reths
            .iter()
            .filter(|r| r.group == group)
            .cloned()
            .collect()
    }

    fn stand_by(&mut self, group: u8) {
        tracing::warn!(group, member = %self.spec.me, "redundancy group: standing by");
        self.publish_failover(format!(
            "redundancy-group {group}: {} is no longer primary",
            self.spec.me
        ));
        self.active.remove(&group);
        for (g, gw) in &self.gateways {
            if *g == group {
                gw.do_send(Deactivate);
            }
        }
        let reths = self.reths_of(group);
        actix::spawn(async move {
            for r in reths {
                if let Err(e) =
                    crate::runtime::net::set_addresses(&r.interface, &r.addresses, false).await
                {
                    tracing::error!(reth = %r.name, error = %e, "releasing the reth addresses");
                }
            }
        });
    }

    fn observe_all(&mut self) {
        let now = Instant::now();
        for fsm in &mut self.fsms {
            fsm.observe(self.mirror.group(fsm.group()), now);
        }
    }

    fn publish_status(&self) {
        let status = NodeStatus {
            priorities: self
                .fsms
                .iter()
                .map(|f| (f.group(), f.effective_priority()))
                .collect(),
            failures: Vec::new(),
            spus: self.dataplane.live_workers().len() as u32,
        };
        let handle = self.handle.clone();
        let me = self.spec.me;
        actix::spawn(async move {
            // Retried until committed: the peer's preempt decisions read it.
            for _ in 0..50 {
                match handle
                    .propose(Command::Status {
                        node: me,
                        status: status.clone(),
                    })
                    .await
                {
                    Ok(_) => return,
                    Err(_) => actix_rt::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }

    fn role(&self, fsm: &GroupFsm, node: Member, now: Instant) -> RedundancyState {
        if node == self.spec.me {
            return match fsm.role(now) {
                GroupRole::Primary => RedundancyState::Primary,
                GroupRole::Secondary => RedundancyState::Secondary,
                GroupRole::Lost => RedundancyState::Lost,
                GroupRole::Disabled => RedundancyState::Ineligible,
            };
        }
        let seen = fsm.seen();
        let alive = self.peer_view(fsm.group()).alive;
        if !alive {
            RedundancyState::Lost
        } else if seen.owner == Some(node) {
            RedundancyState::Primary
        } else {
            RedundancyState::Secondary
        }
    }
}

impl Actor for Redundancy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.observe_all();
        self.publish_status();
        let Some(mut applied) = self.feed.take() else {
            return;
        };
        let handle = self.handle.clone();
        let me = ctx.address();
        actix::spawn(async move {
            loop {
                match applied.recv().await {
                    Ok(a) => me.do_send(AppliedEntry(Box::new(a))),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "cluster feed lagged: reading the state again");
                        match handle.read(|s| s.clone()).await {
                            Ok(s) => me.do_send(Resync(Box::new(s))),
                            Err(_) => return,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let every = self.tick_interval();
        ctx.run_interval(every, |act, ctx| act.poll(ctx));
    }
}

impl Handler<AppliedEntry> for Redundancy {
    type Result = ();

    fn handle(&mut self, msg: AppliedEntry, ctx: &mut Context<Self>) {
        let a = msg.0;
        if a.index > self.mirror.applied() + 1 {
            // Entries the feed does not carry came in between: Raft's empty entries
            // after an election, or a snapshot from the leader that replaced the
            // replica's state wholesale. Read the state again rather than guess.
            let handle = self.handle.clone();
            let me = ctx.address();
            actix::spawn(async move {
                if let Ok(state) = handle.read(|s| s.clone()).await {
                    me.do_send(Resync(Box::new(state)));
                }
            });
        }
        let ours = a.proposal.is_some_and(|p| p.proposer == self.spec.me);
        let kind = match &a.command {
            Command::PutIkeSa(..) | Command::DeleteIkeSa(..) => Some(0),
            Command::PutChildSa { .. } | Command::DeleteChildSa(..) => Some(1),
            Command::Reserve { .. } => Some(2),
            Command::ReplayMarks(..) => Some(3),
            Command::Renew(..) if !ours && a.outcome.is_ok() => {
                self.counters.renewals_received += 1;
                None
            }
            _ => None,
        };
        if let Some(k) = kind
            && a.outcome.is_ok()
        {
            let (sent, received) = &mut self.counters.records[k];
            *if ours { sent } else { received } += 1;
        }
        let _ = self.mirror.apply(a.index, &a.command);
        if matches!(
            a.command,
            Command::Acquire { .. }
                | Command::Renew(..)
                | Command::Release(_)
                | Command::Pin { .. }
        ) {
            self.observe_all();
            self.reconcile(ctx);
        }
    }
}

impl Handler<Resync> for Redundancy {
    type Result = ();

    fn handle(&mut self, msg: Resync, ctx: &mut Context<Self>) {
        // At the same index the replica's state wins: the mirror may have applied an
        // entry on top of a state that missed a snapshot.
        if msg.0.applied() >= self.mirror.applied() {
            self.mirror = *msg.0;
        }
        self.observe_all();
        self.reconcile(ctx);
    }
}

impl Handler<Status> for Redundancy {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let groups = self
            .fsms
            .iter()
            .map(|fsm| {
                let seen = fsm.seen();
                let nodes = [Member::Node0, Member::Node1]
                    .into_iter()
                    .map(|node| GroupNodeView {
                        node,
                        priority: if node == self.spec.me {
                            fsm.effective_priority()
                        } else {
                            self.peer_view(fsm.group()).priority
                        },
                        status: self.role(fsm, node, now),
                        monitor_failures: if node == self.spec.me {
                            self.failures.get(&fsm.group()).cloned().unwrap_or_default()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                RedundancyGroupView {
                    redundancy_group: fsm.group(),
                    failover_count: seen.epoch.saturating_sub(1),
                    epoch: seen.epoch,
                    preempt: self
                        .spec
                        .ha
                        .group(fsm.group())
                        .is_some_and(|g| g.preempt.is_some()),
                    manual_failover: seen.manual.is_some(),
                    nodes,
                }
            })
            .collect();
        MessageResult(ClusterStatusView {
            cluster_id: self.spec.ha.cluster_id,
            local_member: self.spec.me,
            redundancy_groups: groups,
        })
    }
}

impl Handler<Pin> for Redundancy {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Pin, _: &mut Context<Self>) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move {
            match handle
                .propose(Command::Pin {
                    group: msg.group,
                    node: msg.node,
                })
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(r)) => Err(r.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

impl Handler<Statistics> for Redundancy {
    type Result = MessageResult<Statistics>;

    fn handle(&mut self, _: Statistics, _: &mut Context<Self>) -> Self::Result {
        let raft = self.handle.status();
        let counts = self.mirror.counts();
        let replication = RecordKind::ALL
            .into_iter()
            .enumerate()
            .map(|(i, kind)| ReplicationView {
                kind,
                sent: self.counters.records[i].0,
                received: self.counters.records[i].1,
                held: counts[i] as u64,
            })
            .collect();
        let now = Instant::now();
        let members = self
            .spec
            .members
            .iter()
            .map(|(member, addr)| {
                let peer = raft.peers.iter().find(|p| p.member == *member);
                MemberReachabilityView {
                    member: *member,
                    control_address: *addr,
                    reachable: *member == self.spec.me || peer.is_some_and(|p| p.connected),
                    last_contact: peer
                        .and_then(|p| p.last_contact)
                        .map(|t| now.saturating_duration_since(t)),
                }
            })
            .collect();
        MessageResult(ClusterStatisticsView {
            cluster_id: self.spec.ha.cluster_id,
            local_member: self.spec.me,
            heartbeats_sent: self.counters.renewals_sent,
            heartbeats_received: self.counters.renewals_received,
            lease_renewals_sent: self.counters.renewals_sent,
            lease_renewals_received: self.counters.renewals_received,
            failovers: self.counters.takeovers,
            raft: RaftView {
                term: raft.term,
                leader: raft.leader,
                commit_index: raft.commit,
                applied_index: raft.applied,
            },
            replication,
            members,
        })
    }
}

impl Handler<Probed> for Redundancy {
    type Result = ();

    fn handle(&mut self, msg: Probed, _: &mut Context<Self>) {
        let now = Instant::now();
        for p in &mut self.probes {
            if p.address() == msg.address {
                p.record(msg.answered, now);
            }
        }
    }
}

impl Handler<Leave> for Redundancy {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        self.leaving = true;
        let now = Instant::now();
        self.dataplane.fence_all(now);
        let releases: Vec<Command> = self.fsms.iter_mut().filter_map(|f| f.leave(now)).collect();
        let handle = self.handle.clone();
        Box::pin(async move {
            for r in releases {
                tracing::info!(?r, "handing the redundancy group over");
                let _ = handle.propose(r).await;
            }
        })
    }
}

impl Handler<AddressesTaken> for Redundancy {
    type Result = ();

    /// Activates the group's gateways, unless the group was lost meanwhile.
    fn handle(&mut self, msg: AddressesTaken, _: &mut Context<Self>) {
        if self.active.get(&msg.group) != Some(&msg.epoch) {
            return;
        }
        tracing::info!(
            group = msg.group,
            "reth addresses taken: activating the gateways"
        );
        let fence = Fence {
            group: msg.group,
            node: self.spec.me,
            epoch: msg.epoch,
        };
        for (g, gw) in &self.gateways {
            if *g == msg.group {
                gw.do_send(Activate {
                    fence,
                    handle: self.handle.clone(),
                    state: Box::new(self.mirror.clone()),
                });
            }
        }
    }
}

/// One gratuitous ARP or unsolicited neighbour advertisement per reth address.
fn announce(reths: &[crate::runtime::spec::RethSpec]) {
    for r in reths {
        for (addr, _) in &r.addresses {
            let sent = match addr {
                std::net::IpAddr::V4(a) => {
                    dataplane::io::announce::gratuitous_arp(&r.interface, *a)
                }
                std::net::IpAddr::V6(a) => {
                    dataplane::io::announce::unsolicited_na(&r.interface, *a)
                }
            };
            if let Err(e) = sent {
                tracing::warn!(reth = %r.name, %addr, error = %e, "announcing the moved address");
            }
        }
    }
}
