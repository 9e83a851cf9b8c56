//! The durable log store of a real member: raft-rs entries, hard state, configuration
//! and the latest snapshot in a [raft-engine] directory.
//!
//! raft-engine is tikv's own log engine for raft-rs: an append-only log of batches with
//! a checksum each, an in-memory index of entries per Raft group, and purge of the files
//! that only hold compacted entries. Raft writes are exactly that pattern (append,
//! truncate a conflicting suffix, compact a prefix), so a general key-value store would
//! only add write amplification.
//!
//! Layout: Raft group [`LOG`] holds the entries; group [`META`] holds three protobuf
//! values, the [`HardState`], the [`ConfState`] and the latest [`Snapshot`] with its
//! data. Every change is one engine batch written with `fdatasync`, so it is atomic and
//! durable when the method returns: a crash leaves either the old or the new state
//! (raft-engine drops a torn last batch on recovery).
//!
//! The terms of the entries in the log are kept in memory as well (8 bytes per entry,
//! and the log is at most a snapshot interval long): raft-rs asks for terms far more
//! often than for entries, and answering from memory keeps those calls off the disk.
//!
//! [raft-engine]: https://github.com/tikv/raft-engine

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use raft_engine::{Command as EngineCommand, Config, Engine, LogBatch, MessageExt, ReadableSize};

use crate::store::{LogStore, StoreError, initial_conf_state};

/// Raft group (in raft-engine's sense) holding the entries.
const LOG: u64 = 1;
/// Raft group holding hard state, configuration and snapshot.
const META: u64 = 2;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// Written once the store holds its first record: a directory with the marker whose
/// engine comes back empty has lost its contents, and must not start over as new.
const MARKER: &str = "cluster-log";

/// Tells raft-engine how to find the index of a raft-rs entry.
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// A member's Raft log on disk.
pub struct DiskLogStore {
    engine: Engine,
    dir: PathBuf,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot (metadata index 0 if none): the log starts right after it.
    snapshot: Snapshot,
    /// Terms of the entries in the log, the first one at `first_index()`.
    terms: VecDeque<u64>,
    /// Set by the first failed write: the engine's state is then unknown, and raft-rs
    /// must not be told that anything later is durable.
    failed: Option<String>,
}

impl std::fmt::Debug for DiskLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskLogStore")
            .field("dir", &self.dir)
            .field("snapshot_index", &self.snapshot_index())
            .field("last_index", &self.last())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// raft-engine panics on a few I/O failures (a failed `fsync` in the write path) and on
/// some malformed files during recovery; a member must see those as a store error, not
/// lose its thread.
fn guarded<T>(what: &str, f: impl FnOnce() -> raft_engine::Result<T>) -> Result<T, StoreError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::Engine(format!("{what}: {e}"))),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(StoreError::Engine(format!(
                "{what}: engine panicked: {msg}"
            )))
        }
    }
}

fn storage_error(e: impl std::error::Error + Send + Sync + 'static) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl DiskLogStore {
    /// Opens (or creates) the store in `dir`. A new store starts with the three voters
    /// ([`initial_conf_state`]). A directory whose contents do not recover into a
    /// consistent log is refused with [`StoreError::Corrupt`] or [`StoreError::Engine`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let dir_str = dir
            .to_str()
            .ok_or_else(|| StoreError::Engine(format!("{} is not UTF-8", dir.display())))?;
        let config = Config {
            dir: dir_str.to_owned(),
            // Small files so that purging after a compaction gives space back soon; the
            // cluster log is small (one snapshot interval of entries plus a snapshot).
            target_file_size: ReadableSize::mb(8),
            purge_threshold: ReadableSize::mb(64),
            recovery_threads: 2,
            ..Config::default()
        };
        let engine = guarded("open", || Engine::open(config))?;
        let mut store = Self {
            engine,
            dir,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            terms: VecDeque::new(),
            failed: None,
        };
        store.load()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let hard_state = self.read_meta::<HardState>(KEY_HARD_STATE)?;
        let conf_state = self.read_meta::<ConfState>(KEY_CONF_STATE)?;
        let snapshot = self.read_meta::<Snapshot>(KEY_SNAPSHOT)?;
        self.hard_state = hard_state.unwrap_or_default();
        self.snapshot = snapshot.unwrap_or_default();
        let marker = self.dir.join(MARKER);
        match conf_state {
            Some(cs) => self.conf_state = cs,
            None if marker.exists() => {
                // raft-engine recovers unreadable files as a torn tail, that is as an
                // empty log. Starting over would forget our vote and our log, which
                // Raft's safety rests on.
                return Err(StoreError::Corrupt(format!(
                    "{} held a cluster log whose contents are gone",
                    self.dir.display()
                )));
            }
            None => {
                // A new store: record the voters so that a reopen sees the same ones.
                self.conf_state = initial_conf_state();
                let mut batch = LogBatch::default();
                put(&mut batch, KEY_CONF_STATE, &self.conf_state)?;
                self.write(batch)?;
            }
        }
        if !marker.exists() {
            write_marker(&self.dir, &marker)
                .map_err(|e| StoreError::Engine(format!("{}: {e}", marker.display())))?;
        }

        let snap_index = self.snapshot_index();
        let (first, last) = match (self.engine.first_index(LOG), self.engine.last_index(LOG)) {
            (Some(first), Some(last)) => (first, last),
            _ => (snap_index + 1, snap_index),
        };
        // Batches are atomic and every compaction removes the entries up to the
        // snapshot in the batch that stores it, so the log starts right after the
        // snapshot; anything else means files were lost or mixed up.
        if last > snap_index && first != snap_index + 1 {
            return Err(StoreError::Corrupt(format!(
                "log starts at {first} but the snapshot ends at {snap_index}"
            )));
        }
        if last > snap_index {
            let mut entries = Vec::new();
            guarded("recover entries", || {
                self.engine
                    .fetch_entries_to::<EntryExt>(LOG, first, last + 1, None, &mut entries)
            })?;
            for (i, e) in entries.iter().enumerate() {
                if e.index != first + i as u64 {
                    return Err(StoreError::Corrupt(format!(
                        "entry {} found where {} belongs",
                        e.index,
                        first + i as u64
                    )));
                }
            }
            self.terms = entries.iter().map(|e| e.term).collect();
        }
        if self.hard_state.commit > self.last() {
            return Err(StoreError::Corrupt(format!(
                "commit index {} beyond the last entry {}",
                self.hard_state.commit,
                self.last()
            )));
        }
        Ok(())
    }

    fn read_meta<M: protobuf::Message>(&self, key: &[u8]) -> Result<Option<M>, StoreError> {
        self.engine
            .get_message::<M>(META, key)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key))))
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.snapshot_index() + self.terms.len() as u64
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(reason) => Err(StoreError::Engine(format!(
                "store failed earlier and refuses writes: {reason}"
            ))),
            None => Ok(()),
        }
    }

    /// Writes one batch with `fdatasync`. A failure poisons the store: the caller
    /// stops, and nothing later may claim durability.
    fn write(&mut self, mut batch: LogBatch) -> Result<(), StoreError> {
        self.check()?;
        let engine = &self.engine;
        match guarded("write", || engine.write(&mut batch, true)) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cluster log write failed");
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Creates the marker durably: the file, then its directory entry.
fn write_marker(dir: &Path, marker: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::create(marker)?;
    std::io::Write::write_all(
        &mut file,
        b"This directory holds a cluster member's Raft log (raft-engine).\n",
    )?;
    file.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

fn put<M: protobuf::Message>(batch: &mut LogBatch, key: &[u8], m: &M) -> Result<(), StoreError> {
    batch
        .put_message(META, key.to_vec(), m)
        .map_err(|e| StoreError::Engine(format!("encode {}: {e}", String::from_utf8_lossy(key))))
}

impl Storage for DiskLogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries = Vec::with_capacity((high - low) as usize);
        if low == high {
            return Ok(entries);
        }
        let max_size = max_size
            .into()
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        self.engine
            .fetch_entries_to::<EntryExt>(LOG, low, high, max_size, &mut entries)
            .map_err(storage_error)?;
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap_index = self.snapshot_index();
        if idx == snap_index {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.terms
            .get((idx - snap_index - 1) as usize)
            .copied()
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.snapshot_index();
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

impl LogStore for DiskLogStore {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        self.check()?;
        // Entries the snapshot covers are committed and already part of it.
        let skip = entries
            .iter()
            .take_while(|e| e.index <= self.snapshot_index())
            .count();
        let entries = &entries[skip..];
        let Some(head) = entries.first() else {
            return Ok(());
        };
        if head.index > self.last() + 1 {
            return Err(StoreError::Engine(format!(
                "append at {} would leave a gap after {}",
                head.index,
                self.last()
            )));
        }
        if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
            return Err(StoreError::Engine(
                "entries to append are not contiguous".into(),
            ));
        }
        let mut batch = LogBatch::default();
        // raft-engine replaces the suffix from `head.index` on (the conflicting one).
        batch
            .add_entries::<EntryExt>(LOG, entries)
            .map_err(|e| StoreError::Engine(format!("encode entries: {e}")))?;
        self.write(batch)?;
        self.terms
            .truncate((head.index - self.snapshot_index() - 1) as usize);
        self.terms.extend(entries.iter().map(|e| e.term));
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        if *hs == self.hard_state {
            // Already durable: an fsync would buy nothing.
            return self.check();
        }
        let mut batch = LogBatch::default();
        put(&mut batch, KEY_HARD_STATE, hs)?;
        self.write(batch)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let meta = snapshot.get_metadata();
        if meta.index <= self.snapshot_index() {
            return Err(StoreError::Raft(raft::Error::Store(
                StorageError::SnapshotOutOfDate,
            )));
        }
        // The snapshot is committed: the hard state must say so even if we crash before
        // raft-rs hands over its own (raft-rs refuses a commit index below the
        // snapshot's on restart).
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        let conf_state = meta.get_conf_state().clone();
        let mut batch = LogBatch::default();
        batch.add_command(LOG, EngineCommand::Clean);
        put(&mut batch, KEY_SNAPSHOT, snapshot)?;
        put(&mut batch, KEY_CONF_STATE, &conf_state)?;
        put(&mut batch, KEY_HARD_STATE, &hs)?;
        self.write(batch)?;
        self.snapshot = snapshot.clone();
        self.conf_state = conf_state;
        self.hard_state = hs;
        self.terms.clear();
        Ok(())
    }

    fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), StoreError> {
        self.check()?;
        if index <= self.snapshot_index() {
            return Ok(());
        }
        let term = self.term(index)?;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        let mut batch = LogBatch::default();
        put(&mut batch, KEY_SNAPSHOT, &snapshot)?;
        batch.add_command(LOG, EngineCommand::Compact { index: index + 1 });
        self.write(batch)?;
        let dropped = (index - self.snapshot_index()) as usize;
        self.terms.drain(..dropped.min(self.terms.len()));
        self.snapshot = snapshot;
        // Give back the files that now hold only compacted entries and old values.
        // A failure here costs disk space, not correctness.
        let engine = &self.engine;
        if let Err(e) = guarded("purge", || engine.purge_expired_files()) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cluster log purge failed");
        }
        Ok(())
    }

    fn latest_snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }
}

#[cfg(test)]
mod tests;
