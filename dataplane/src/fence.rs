//! Forwarding fences: per redundancy group, the instant after which the workers stop
//! forwarding that group's ESP/AH.
//!
//! A cluster node holds a lease on each redundancy group it is primary of, renewed
//! through Raft; the other node takes a group over only once its lease has ended. If the
//! active node's control plane freezes (SIGSTOP, a long GC or swap pause, a deadlock),
//! nothing would tell the workers to stop, and for a while two nodes would send under
//! the same SAs, reusing sequence numbers (the AES-GCM nonce). So the control plane sets
//! each lease's end here ahead of time, and the engine compares it with the monotonic
//! clock itself for every packet of an SA that belongs to a group, before the packet
//! takes a sequence number or moves a replay window; the workers check again before
//! every send. They stop on time with nobody telling them.
//!
//! The fence is per group, not per node: a node may be primary of group 1 and secondary
//! of group 2 (active/active), and losing group 2's lease must stop group 2's SAs at
//! once without touching group 1's. SAs without a group (a standalone node) are never
//! fenced.
//!
//! One `AtomicU64` per possible group holds the deadline as nanoseconds since a base
//! instant taken when the fences are created, `u64::MAX` meaning no fence. Every group
//! starts fenced at the base: a group nobody has leased is not forwarded. Reads are
//! relaxed loads: nothing else is published through them, and the clock comparison is
//! what decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A redundancy group number (Junos numbers them 0-128; 0 is the control plane's).
pub type Group = u8;

/// The deadline value meaning "no fence".
const UNFENCED: u64 = u64::MAX;

/// The fences of every redundancy group, shared by the workers of one dataplane.
pub struct Fences {
    base: Instant,
    deadlines: Box<[AtomicU64; 256]>,
}

impl std::fmt::Debug for Fences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open: Vec<Group> = (0..=Group::MAX)
            .filter(|g| self.deadline(*g) == UNFENCED)
            .collect();
        f.debug_struct("Fences")
            .field("unfenced", &open)
            .finish_non_exhaustive()
    }
}

impl Default for Fences {
    fn default() -> Self {
        Self::new()
    }
}

impl Fences {
    /// Every group fenced from now on, with the clock base taken now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            deadlines: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Sets the instant from which group `group`'s SAs forward nothing (`None`: no
    /// fence). Moving it later, also after it passed, resumes forwarding.
    pub fn set(&self, group: Group, until: Option<Instant>) {
        let v = until.map_or(UNFENCED, |t| {
            let ns = t.saturating_duration_since(self.base).as_nanos();
            // u64 nanoseconds last 584 years; a later instant is as good as never, but
            // must not read as "no fence".
            u64::try_from(ns).unwrap_or(UNFENCED - 1).min(UNFENCED - 1)
        });
        self.deadlines[usize::from(group)].store(v, Ordering::Relaxed);
    }

    /// Fences every group from `at` on (a node shutting down).
    pub fn set_all(&self, at: Instant) {
        for g in 0..=Group::MAX {
            self.set(g, Some(at));
        }
    }

    #[inline]
    fn deadline(&self, group: Group) -> u64 {
        self.deadlines[usize::from(group)].load(Ordering::Relaxed)
    }

    /// True if group `group` is fenced at `now`: one relaxed load and a comparison.
    #[inline]
    pub fn passed(&self, group: Group, now: Instant) -> bool {
        let deadline = self.deadline(group);
        deadline != UNFENCED
            && u64::try_from(now.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX)
                >= deadline
    }

    /// True if any group of `groups` is fenced at `now`.
    pub fn any_passed(&self, groups: &GroupSet, now: Instant) -> bool {
        groups.iter().any(|g| self.passed(g, now))
    }
}

/// A set of groups: the groups whose SAs produced the packets of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupSet([u64; 4]);

impl GroupSet {
    /// Adds `group`.
    #[inline]
    pub fn insert(&mut self, group: Group) {
        self.0[usize::from(group >> 6)] |= 1 << (group & 63);
    }

    /// True if no group is in the set.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Adds every group of `other`.
    #[inline]
    pub fn extend(&mut self, other: GroupSet) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    /// The groups, in increasing order. Walks the set bits only: the workers check the
    /// groups of every batch before each send.
    pub fn iter(&self) -> impl Iterator<Item = Group> + '_ {
        self.0.iter().zip(0u8..).flat_map(|(&word, w)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_group_nobody_leased_is_fenced() {
        let f = Fences::new();
        assert!(f.passed(1, Instant::now()));
        assert!(f.passed(255, Instant::now()));
    }

    #[test]
    fn deadline_passes_at_its_instant_and_moving_it_resumes() {
        let f = Fences::new();
        let t0 = Instant::now();
        f.set(1, Some(t0 + Duration::from_millis(100)));
        assert!(!f.passed(1, t0 + Duration::from_millis(99)));
        assert!(f.passed(1, t0 + Duration::from_millis(100)));
        assert!(f.passed(1, t0 + Duration::from_secs(5)));

        // Extended after it passed: forwarding resumes until the new instant.
        f.set(1, Some(t0 + Duration::from_secs(10)));
        assert!(!f.passed(1, t0 + Duration::from_secs(5)));
        assert!(f.passed(1, t0 + Duration::from_secs(10)));

        f.set(1, None);
        assert!(!f.passed(1, t0 + Duration::from_secs(1_000_000)));
    }

    #[test]
    fn groups_are_fenced_independently() {
        let f = Fences::new();
        let t0 = Instant::now();
        f.set(1, Some(t0 + Duration::from_secs(10)));
        f.set(2, Some(t0 + Duration::from_millis(10)));
        let later = t0 + Duration::from_secs(1);
        assert!(!f.passed(1, later), "group 1's lease still runs");
        assert!(f.passed(2, later), "group 2's lease ended");

        let mut only1 = GroupSet::default();
        only1.insert(1);
        assert!(!f.any_passed(&only1, later));
        let mut both = only1;
        both.insert(2);
        assert!(f.any_passed(&both, later));
        assert_eq!(both.iter().collect::<Vec<_>>(), vec![1, 2]);

        f.set_all(t0);
        assert!(f.passed(1, later) && f.passed(3, later));
    }

    #[test]
    fn instants_before_the_base_or_far_ahead_are_clamped() {
        let f = Fences::new();
        let before = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        f.set(7, Some(before));
        assert!(f.passed(7, Instant::now()), "a past instant fences at once");

        f.set(7, Some(Instant::now() + Duration::from_secs(1 << 40)));
        assert!(!f.passed(7, Instant::now()), "far ahead is still a fence");
        assert_ne!(f.deadline(7), UNFENCED);
    }

    #[test]
    fn group_sets_hold_every_group() {
        let mut s = GroupSet::default();
        assert!(s.is_empty());
        for g in [0, 63, 64, 127, 128, 255] {
            s.insert(g);
        }
        let mut t = GroupSet::default();
        t.insert(5);
        s.extend(t);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![0, 5, 63, 64, 127, 128, 255]
        );
    }
}
