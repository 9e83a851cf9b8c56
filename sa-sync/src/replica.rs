//! One member's Raft replica, sans-IO: ticks, messages and proposals in; messages to
//! send and applied entries out. The async driver (`cluster`) and the deterministic
//! simulation run the very same code, which is what makes the simulation worth having.
//!
//! Each `process` call handles raft-rs' `Ready` completely and synchronously: snapshot,
//! entries and hard state are durable in the [`LogStore`] before any message that
//! depends on them is handed out, and committed entries are applied to the
//! [`ClusterState`] in log order.

use std::collections::VecDeque;

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, Snapshot};
use raft::{Config, RawNode, StateRole};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};
use crate::record::Member;
use crate::state::{ClusterState, decode_command, encode_command};
use crate::store::{LogStore, StoreError};

/// Replica settings.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Ticks without a leader before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Fixed election timeout (ticks) instead of raft-rs' random one in
    /// `[election, 2 * election)`: the simulation passes a seeded value so runs repeat.
    pub fixed_election_timeout: Option<usize>,
    /// Applied entries between snapshots (then the log before them is discarded).
    pub snapshot_interval: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            election_ticks: 10,
            heartbeat_ticks: 2,
            fixed_election_timeout: None,
            snapshot_interval: 1000,
        }
    }
}

/// Why the replica could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// raft-rs refused (bad configuration, or a message it cannot take).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The log store failed: the replica must stop.
    #[error("log store: {0}")]
    Store(#[from] StoreError),
    /// A snapshot or command did not encode or decode.
    #[error("state: {0}")]
    State(String),
    /// No leader is known, so a proposal has nowhere to go.
    #[error("no Raft leader")]
    NoLeader,
}

/// Identifies a proposal so its proposer learns the outcome when it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    /// Who proposed.
    pub proposer: Member,
    /// The proposer's counter (restarts at 0 after a restart: ids are only matched
    /// against proposals still pending in this incarnation, see `incarnation`).
    pub seq: u64,
    /// Random per process start, so a restarted proposer never mistakes an old entry for
    /// one of its new proposals.
    pub incarnation: u64,
}

/// One applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Log index.
    pub index: u64,
    /// Who proposed it and which proposal it was.
    pub proposal: Option<ProposalId>,
    /// The command.
    pub command: Command,
    /// What applying it did.
    pub outcome: Outcome,
}

/// A member's replica.
pub struct Replica<S: LogStore> {
    node: RawNode<S>,
    me: Member,
    incarnation: u64,
    next_seq: u64,
    state: ClusterState,
    outbox: Vec<Message>,
    applied: VecDeque<Applied>,
    snapshot_interval: u64,
    last_snapshot: u64,
}

impl<S: LogStore> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("applied", &self.state.applied())
            .finish_non_exhaustive()
    }
}

impl<S: LogStore> Replica<S> {
    /// Opens a replica on its store: an empty store starts a new cluster with the three
    /// voters; a used one resumes from its snapshot and log (entries after the snapshot
    /// are applied again as raft-rs hands them back).
    pub fn open(
        me: Member,
        store: S,
        config: &ReplicaConfig,
        incarnation: u64,
        logger: &slog::Logger,
    ) -> Result<Self, ReplicaError> {
        let snap = store.latest_snapshot();
        let state = if snap.get_data().is_empty() {
            ClusterState::default()
        } else {
            ClusterState::decode(snap.get_data()).map_err(|e| ReplicaError::State(e.to_string()))?
        };
        let applied = state.applied();
        let timeout = config.fixed_election_timeout;
        let raft_config = Config {
            id: me.raft_id(),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            min_election_tick: timeout.unwrap_or(0),
            max_election_tick: timeout.map_or(0, |t| t + 1),
            applied,
            // A node cut off for a while must not depose a working leader when it comes
            // back (pre-vote), and a leader that lost its quorum must step down so that
            // proposals fail fast instead of hanging (check-quorum).
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_config.validate()?;
        let node = RawNode::new(&raft_config, store, logger)?;
        Ok(Self {
            node,
            me,
            incarnation,
            next_seq: 0,
            state,
            outbox: Vec::new(),
            applied: VecDeque::new(),
            snapshot_interval: config.snapshot_interval.max(1),
            last_snapshot: applied,
        })
    }

    /// This member.
    pub fn me(&self) -> Member {
        self.me
    }

    /// The replicated state as applied here.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<Member> {
        Member::from_raft_id(self.node.raft.leader_id)
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Raft term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Highest committed index known here.
    pub fn committed(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// The store (for status and tests).
    pub fn store(&self) -> &S {
        self.node.store()
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// Takes a message from another member. Messages from unknown ids or to another id
    /// are dropped: the transport authenticates members, this guards against misrouting.
    pub fn step(&mut self, msg: Message) -> Result<(), ReplicaError> {
        if msg.to != self.me.raft_id() || Member::from_raft_id(msg.from).is_none() {
            return Ok(());
        }
        match self.node.step(msg) {
            // A message for a peer raft-rs does not know, a stale one, or a proposal a
            // follower forwarded to us while we cannot take it (the proposer times out
            // and retries): none of them is our failure.
            Ok(())
            | Err(
                raft::Error::StepPeerNotFound
                | raft::Error::StepLocalMsg
                | raft::Error::ProposalDropped,
            ) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Proposes a command; its outcome comes back through [`Replica::poll_applied`] with
    /// the returned id once committed. A follower forwards the proposal to the leader;
    /// without a known leader it is refused at once so the caller can retry later.
    pub fn propose(&mut self, command: &Command) -> Result<ProposalId, ReplicaError> {
        if self.node.raft.leader_id == raft::INVALID_ID {
            return Err(ReplicaError::NoLeader);
        }
        let id = ProposalId {
            proposer: self.me,
            seq: self.next_seq,
            incarnation: self.incarnation,
        };
        self.next_seq += 1;
        let context = bincode::serde::encode_to_vec(id, bincode::config::standard())
            .map_err(|e| ReplicaError::State(e.to_string()))?;
        let data = encode_command(command).map_err(|e| ReplicaError::State(e.to_string()))?;
        match self.node.propose(context, data) {
            Ok(()) => Ok(id),
            Err(raft::Error::ProposalDropped) => Err(ReplicaError::NoLeader),
            Err(e) => Err(e.into()),
        }
    }

    /// Messages to send to other members (after `process`).
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.outbox)
    }

    /// The next applied entry.
    pub fn poll_applied(&mut self) -> Option<Applied> {
        self.applied.pop_front()
    }

    /// Handles everything raft-rs has ready: persists, queues messages, applies.
    pub fn process(&mut self) -> Result<(), ReplicaError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        self.outbox.extend(ready.take_messages());
        if ready.snapshot().get_metadata().index > 0 {
            self.install(ready.snapshot())?;
        }
        let committed = ready.take_committed_entries();
        self.apply(committed)?;
        if !ready.entries().is_empty() {
            self.node.mut_store().append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            self.node.mut_store().set_hard_state(hs)?;
        }
        self.outbox.extend(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.outbox.extend(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        self.maybe_snapshot()
    }

    fn install(&mut self, snapshot: &Snapshot) -> Result<(), ReplicaError> {
        let state = ClusterState::decode(snapshot.get_data())
            .map_err(|e| ReplicaError::State(e.to_string()))?;
        self.node.mut_store().install_snapshot(snapshot)?;
        tracing::info!(
            index = snapshot.get_metadata().index,
            "cluster state replaced by the leader's snapshot"
        );
        self.state = state;
        self.last_snapshot = snapshot.get_metadata().index;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), ReplicaError> {
        for entry in entries {
            if entry.index <= self.state.applied() {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal if !entry.data.is_empty() => {
                    let command = match decode_command(&entry.data) {
                        Ok(c) => c,
                        Err(e) => {
                            // Every member fails on the same bytes, so skipping keeps
                            // the replicas identical; it means a newer writer.
                            tracing::error!(index = entry.index, error = %e, "undecodable cluster log entry skipped");
                            self.state.skip(entry.index);
                            continue;
                        }
                    };
                    let proposal = bincode::serde::decode_from_slice::<ProposalId, _>(
                        &entry.context,
                        bincode::config::standard(),
                    )
                    .ok()
                    .map(|(p, _)| p);
                    let outcome = self.state.apply(entry.index, &command);
                    self.applied.push_back(Applied {
                        index: entry.index,
                        proposal,
                        command,
                        outcome,
                    });
                }
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &entry.data)
                        .map_err(|e| ReplicaError::State(e.to_string()))?;
                    self.node.apply_conf_change(&cc)?;
                    self.state.skip(entry.index);
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &entry.data)
                        .map_err(|e| ReplicaError::State(e.to_string()))?;
                    self.node.apply_conf_change(&cc)?;
                    self.state.skip(entry.index);
                }
                EntryType::EntryNormal => self.state.skip(entry.index),
            }
        }
        Ok(())
    }

    fn maybe_snapshot(&mut self) -> Result<(), ReplicaError> {
        let applied = self.state.applied();
        if applied < self.last_snapshot + self.snapshot_interval {
            return Ok(());
        }
        let data = self
            .state
            .encode()
            .map_err(|e| ReplicaError::State(e.to_string()))?;
        self.node.mut_store().compact(applied, data)?;
        self.last_snapshot = applied;
        Ok(())
    }

    /// Reports a member unreachable, so the leader probes instead of streaming to it.
    pub fn report_unreachable(&mut self, member: Member) {
        self.node.report_unreachable(member.raft_id());
    }

    /// Reports that a snapshot sent to `member` was lost. raft-rs keeps a member it sent
    /// a snapshot to paused until that member acknowledges it; a snapshot lost on the
    /// way would leave the member behind until the next leader change.
    pub fn report_snapshot_lost(&mut self, member: Member) {
        self.node
            .report_snapshot(member.raft_id(), raft::SnapshotStatus::Failure);
    }
}
