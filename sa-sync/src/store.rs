//! Where a replica keeps its Raft log: the writes raft-rs leaves to the application, on
//! top of its read-only [`raft::Storage`].
//!
//! [`MemLogStore`] backs the deterministic simulation and unit tests (a clone shares the
//! same log, which is how a simulated crash keeps "the disk"); `disk::DiskLogStore` backs
//! real nodes.

use std::sync::{Arc, Mutex, PoisonError};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage};

/// Why the log store failed. A replica whose store fails stops (raft-rs cannot continue
/// safely after losing a write).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Raft's own storage error (compacted, unavailable, ...).
    #[error("raft storage: {0}")]
    Raft(#[from] raft::Error),
    /// The persistent engine failed.
    #[error("log engine: {0}")]
    Engine(String),
    /// A stored record does not decode.
    #[error("corrupt stored record: {0}")]
    Corrupt(String),
}

/// The writes a replica makes to its log. Every method returns after the data is durable.
pub trait LogStore: Storage {
    /// Appends entries, replacing any conflicting suffix of the log.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;
    /// Records term, vote and commit.
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError>;
    /// Records a new commit index (the rest of the hard state unchanged).
    fn set_commit(&mut self, commit: u64) -> Result<(), StoreError>;
    /// Replaces the log with a snapshot received from the leader.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// Stores a snapshot of our own applied state at `index` (which must be applied and
    /// in the log) and discards the log up to it.
    fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), StoreError>;
    /// The latest stored snapshot (empty metadata if none).
    fn latest_snapshot(&self) -> Snapshot;
}

/// The voters every store starts with: node0, node1 and the witness.
pub fn initial_conf_state() -> ConfState {
    ConfState {
        voters: crate::record::Member::ALL
            .iter()
            .map(|m| m.raft_id())
            .collect(),
        ..Default::default()
    }
}

/// An in-memory log whose clones share one log (a simulated disk).
#[derive(Clone)]
pub struct MemLogStore {
    log: raft::storage::MemStorage,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl std::fmt::Debug for MemLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemLogStore").finish_non_exhaustive()
    }
}

impl Default for MemLogStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemLogStore {
    /// An empty log with the three voters.
    pub fn new() -> Self {
        Self {
            log: raft::storage::MemStorage::new_with_conf_state(initial_conf_state()),
            snapshot: Arc::default(),
        }
    }

    fn snap(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemLogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.log.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.log.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = self.snap().clone();
        if snap.get_metadata().index < request_index || snap.get_metadata().index == 0 {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap)
    }
}

impl LogStore for MemLogStore {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        Ok(self.log.wl().append(entries)?)
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.log.wl().set_hardstate(hs.clone());
        Ok(())
    }

    fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        self.log.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.log.wl().apply_snapshot(snapshot.clone())?;
        *self.snap() = snapshot.clone();
        Ok(())
    }

    fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), StoreError> {
        let term = self.log.term(index)?;
        let conf_state = self.log.initial_state()?.conf_state;
        let mut snap = Snapshot::default();
        snap.set_data(data.into());
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        *self.snap() = snap;
        self.log.wl().compact(index)?;
        Ok(())
    }

    fn latest_snapshot(&self) -> Snapshot {
        self.snap().clone()
    }
}
