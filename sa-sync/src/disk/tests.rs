use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage, StorageError};

use super::DiskLogStore;
use crate::store::{LogStore, StoreError, initial_conf_state};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index} of term {term}").into_bytes().into(),
        ..Default::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn read(store: &DiskLogStore, low: u64, high: u64) -> raft::Result<Vec<Entry>> {
    store.entries(low, high, None, GetEntriesContext::empty(false))
}

fn terms(store: &DiskLogStore) -> Vec<(u64, u64)> {
    let first = store.first_index().unwrap();
    let last = store.last_index().unwrap();
    read(store, first, last + 1)
        .unwrap()
        .iter()
        .map(|e| (e.index, e.term))
        .collect()
}

fn compacted<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
    matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(data.to_vec().into());
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().set_conf_state(initial_conf_state());
    s
}

#[test]
fn new_store_has_the_three_voters_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskLogStore::open(dir.path()).unwrap();
    let state = store.initial_state().unwrap();
    assert_eq!(state.conf_state, initial_conf_state());
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!(store.first_index().unwrap(), 1);
    assert_eq!(store.last_index().unwrap(), 0);
    assert_eq!(store.term(0).unwrap(), 0);
    drop(store);
    let store = DiskLogStore::open(dir.path()).unwrap();
    assert_eq!(
        store.initial_state().unwrap().conf_state,
        initial_conf_state()
    );
}

#[test]
fn append_replaces_a_conflicting_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    store.append(&entries(1..=5, 1)).unwrap();
    // A new leader overwrites 3.. with a shorter log of its own term.
    store.append(&entries(3..=4, 2)).unwrap();
    let want = vec![(1, 1), (2, 1), (3, 2), (4, 2)];
    assert_eq!(terms(&store), want);
    assert_eq!(store.last_index().unwrap(), 4);
    assert_eq!(store.term(3).unwrap(), 2);
    assert_eq!(read(&store, 3, 4).unwrap()[0], entry(3, 2));
    // Appending right after the end extends the log.
    store.append(&entries(5..=6, 2)).unwrap();
    drop(store);
    let store = DiskLogStore::open(dir.path()).unwrap();
    assert_eq!(
        terms(&store),
        vec![(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 2)]
    );
}

#[test]
fn append_refuses_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    store.append(&entries(1..=2, 1)).unwrap();
    assert!(matches!(
        store.append(&entries(4..=5, 1)),
        Err(StoreError::Engine(_))
    ));
    assert_eq!(store.last_index().unwrap(), 2);
}

#[test]
fn hard_state_and_commit_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    store.append(&entries(1..=3, 2)).unwrap();
    let hs = HardState {
        term: 2,
        vote: 3,
        commit: 1,
        ..Default::default()
    };
    store.set_hard_state(&hs).unwrap();
    store.set_commit(3).unwrap();
    drop(store);
    let store = DiskLogStore::open(dir.path()).unwrap();
    let got = store.initial_state().unwrap().hard_state;
    assert_eq!((got.term, got.vote, got.commit), (2, 3, 3));
}

#[test]
fn compact_keeps_the_snapshot_and_drops_the_log_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    store.append(&entries(1..=4, 1)).unwrap();
    store.append(&entries(5..=10, 2)).unwrap();
    store.set_commit(10).unwrap();
    store.compact(6, b"state at 6".to_vec()).unwrap();

    let check = |store: &DiskLogStore| {
        assert_eq!(store.first_index().unwrap(), 7);
        assert_eq!(store.last_index().unwrap(), 10);
        // raft-rs asks for the term just before the first entry.
        assert_eq!(store.term(6).unwrap(), 2);
        assert!(compacted(store.term(5)));
        assert!(compacted(read(store, 6, 8)));
        assert_eq!(read(store, 7, 11).unwrap(), entries(7..=10, 2));
        let snap = store.snapshot(0, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 6);
        assert_eq!(snap.get_metadata().term, 2);
        assert_eq!(snap.get_metadata().get_conf_state(), &initial_conf_state());
        assert_eq!(snap.get_data(), b"state at 6");
        assert_eq!(store.latest_snapshot(), snap);
    };
    check(&store);
    drop(store);
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    check(&store);

    // Compacting the whole log leaves it empty; it goes on right after the snapshot.
    store.compact(10, b"state at 10".to_vec()).unwrap();
    assert_eq!(store.first_index().unwrap(), 11);
    assert_eq!(store.last_index().unwrap(), 10);
    assert_eq!(store.term(10).unwrap(), 2);
    store.append(&entries(11..=12, 3)).unwrap();
    drop(store);
    let store = DiskLogStore::open(dir.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 11);
    assert_eq!(terms(&store), vec![(11, 3), (12, 3)]);
    assert_eq!(store.latest_snapshot().get_data(), b"state at 10");
}

#[test]
fn compact_beyond_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    store.append(&entries(1..=3, 1)).unwrap();
    assert!(store.compact(4, Vec::new()).is_err());
    // Compacting at or below the snapshot is a no-op.
    store.compact(2, b"2".to_vec()).unwrap();
    store.compact(1, b"1".to_vec()).unwrap();
    assert_eq!(store.latest_snapshot().get_data(), b"2");
}

#[test]
fn install_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    store.append(&entries(1..=5, 1)).unwrap();
    let hs = HardState {
        term: 1,
        commit: 3,
        ..Default::default()
    };
    store.set_hard_state(&hs).unwrap();

    store
        .install_snapshot(&snapshot(20, 3, b"leader's state"))
        .unwrap();
    let check = |store: &DiskLogStore| {
        assert_eq!(store.first_index().unwrap(), 21);
        assert_eq!(store.last_index().unwrap(), 20);
        assert_eq!(store.term(20).unwrap(), 3);
        assert!(compacted(store.term(5)));
        assert!(compacted(read(store, 5, 6)));
        assert_eq!(read(store, 21, 21).unwrap(), Vec::<Entry>::new());
        let hs = store.initial_state().unwrap().hard_state;
        assert_eq!((hs.term, hs.commit), (3, 20));
        assert_eq!(store.latest_snapshot().get_data(), b"leader's state");
    };
    check(&store);
    drop(store);
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    check(&store);

    store.append(&entries(21..=22, 3)).unwrap();
    // An older snapshot than the one held is refused.
    assert!(store.install_snapshot(&snapshot(10, 2, b"old")).is_err());
    drop(store);
    let store = DiskLogStore::open(dir.path()).unwrap();
    assert_eq!(terms(&store), vec![(21, 3), (22, 3)]);
}

#[test]
fn storage_contract_for_ranges_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskLogStore::open(dir.path()).unwrap();
    // No snapshot yet: raft-rs must be told to wait, not be handed an empty one.
    assert!(matches!(
        store.snapshot(0, 2),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    ));
    store.append(&entries(1..=6, 1)).unwrap();
    // [low, high): empty, whole, partial.
    assert!(read(&store, 3, 3).unwrap().is_empty());
    assert_eq!(read(&store, 1, 7).unwrap(), entries(1..=6, 1));
    assert_eq!(read(&store, 2, 4).unwrap(), entries(2..=3, 1));
    // Past the end is unavailable, not a panic.
    assert!(matches!(
        read(&store, 5, 8),
        Err(raft::Error::Store(StorageError::Unavailable))
    ));
    assert!(matches!(
        store.term(7),
        Err(raft::Error::Store(StorageError::Unavailable))
    ));
    // A size limit still returns at least one entry.
    let one = store
        .entries(1, 7, 1, GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(one, entries(1..=1, 1));
    store.compact(3, b"3".to_vec()).unwrap();
    assert_eq!(store.first_index().unwrap(), 4);
    assert_eq!(store.term(store.first_index().unwrap() - 1).unwrap(), 1);
    assert!(compacted(read(&store, 3, 5)));
    // A snapshot request for an index newer than the stored snapshot has to wait.
    assert!(matches!(
        store.snapshot(5, 2),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    ));
    assert_eq!(store.snapshot(3, 2).unwrap().get_metadata().index, 3);
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = DiskLogStore::open(dir.path()).unwrap();
    assert!(DiskLogStore::open(dir.path()).is_err());
}

#[test]
fn a_corrupt_directory_is_an_error_not_a_panic() {
    // Not a directory at all.
    let file = tempfile::NamedTempFile::new().unwrap();
    assert!(DiskLogStore::open(file.path()).is_err());

    // Every file of a used store overwritten with garbage.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = DiskLogStore::open(dir.path()).unwrap();
        store.append(&entries(1..=50, 1)).unwrap();
        store.set_commit(50).unwrap();
        store.compact(10, vec![7; 1000]).unwrap();
    }
    let mut garbled = 0;
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "LOCK") {
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            let junk: Vec<u8> = (0..len.max(64)).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, junk).unwrap();
            garbled += 1;
        }
    }
    assert!(garbled > 0);
    // raft-engine recovers the garbage as an empty log (a torn tail); the store must
    // not then start over as a new member, forgetting its vote.
    assert!(matches!(
        DiskLogStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn a_garbled_tail_leaves_a_consistent_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = DiskLogStore::open(dir.path()).unwrap();
        store.append(&entries(1..=40, 1)).unwrap();
        store.set_commit(40).unwrap();
    }
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "raftlog"))
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len - 100..] {
        *b ^= 0x5a;
    }
    std::fs::write(&log, bytes).unwrap();
    match DiskLogStore::open(dir.path()) {
        Err(StoreError::Engine(_) | StoreError::Corrupt(_)) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
        // A torn last batch is dropped; what is left must be a consistent log.
        Ok(store) => {
            let first = store.first_index().unwrap();
            let last = store.last_index().unwrap();
            assert_eq!(first, 1);
            assert!(last <= 40);
            assert!(store.initial_state().unwrap().hard_state.commit <= last);
            assert_eq!(read(&store, first, last + 1).unwrap(), entries(1..=last, 1));
        }
    }
}
