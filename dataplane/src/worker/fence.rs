//! The forwarding fence: the instant after which the workers stop forwarding ESP/AH.
//!
//! A cluster node holds a lease on its redundancy group, renewed through Raft; the other
//! node takes over only once the lease has ended. If the active node's control plane
//! freezes (SIGSTOP, a long GC or swap pause, a deadlock), nothing would tell the
//! workers to stop, and for a while two nodes would send under the same SAs, reusing
//! sequence numbers (the AES-GCM nonce). So the control plane sets the lease end here
//! ahead of time, and the workers compare it with the monotonic clock themselves, at
//! every batch and again before every send: they stop on time with nobody telling them.
//!
//! One `AtomicU64` holds the deadline as nanoseconds since a base instant taken when the
//! dataplane starts, `u64::MAX` meaning no fence (a standalone node). A worker loads it
//! once per batch with relaxed ordering: nothing else is published through it, and the
//! clock comparison is what decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The deadline value meaning "no fence".
const UNFENCED: u64 = u64::MAX;

/// A deadline as read once for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Deadline(u64);

impl Deadline {
    /// True if a fence was set when this was read.
    pub(super) fn is_set(self) -> bool {
        self.0 != UNFENCED
    }
}

/// The fence shared by the workers of one dataplane.
#[derive(Debug)]
pub(super) struct Fence {
    base: Instant,
    deadline: AtomicU64,
}

impl Fence {
    /// No fence, with the clock base taken now.
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            deadline: AtomicU64::new(UNFENCED),
        }
    }

    /// Sets the instant from which nothing is forwarded (`None`: no fence). Moving it
    /// later, also after it passed, resumes forwarding.
    pub(super) fn set(&self, until: Option<Instant>) {
        let v = until.map_or(UNFENCED, |t| {
            let ns = t.saturating_duration_since(self.base).as_nanos();
            // u64 nanoseconds last 584 years; a later instant is as good as never, but
            // must not read as "no fence".
            u64::try_from(ns).unwrap_or(UNFENCED - 1).min(UNFENCED - 1)
        });
        self.deadline.store(v, Ordering::Relaxed);
    }

    /// The current deadline: one relaxed load.
    #[inline]
    pub(super) fn deadline(&self) -> Deadline {
        Deadline(self.deadline.load(Ordering::Relaxed))
    }

    /// True if `deadline` is set and `now` is at or after it.
    #[inline]
    pub(super) fn passed(&self, deadline: Deadline, now: Instant) -> bool {
        deadline.is_set()
            && u64::try_from(now.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX)
                >= deadline.0
    }

    /// True if a fence is set now and has passed: for a send made after a batch that
    /// started with `at_batch_start` (nothing is read when that was unset).
    #[inline]
    pub(super) fn passed_since(&self, at_batch_start: Deadline) -> bool {
        at_batch_start.is_set() && self.passed(self.deadline(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadline_passes_at_its_instant_and_moving_it_resumes() {
        let f = Fence::new();
        let t0 = Instant::now();
        assert!(!f.deadline().is_set());
        assert!(!f.passed(f.deadline(), t0 + Duration::from_secs(1_000_000)));

        f.set(Some(t0 + Duration::from_millis(100)));
        let d = f.deadline();
        assert!(d.is_set());
        assert!(!f.passed(d, t0 + Duration::from_millis(99)));
        assert!(f.passed(d, t0 + Duration::from_millis(100)));
        assert!(f.passed(d, t0 + Duration::from_secs(5)));

        // Extended after it passed: forwarding resumes until the new instant.
        f.set(Some(t0 + Duration::from_secs(10)));
        assert!(!f.passed(f.deadline(), t0 + Duration::from_secs(5)));
        assert!(f.passed(f.deadline(), t0 + Duration::from_secs(10)));

        f.set(None);
        assert!(!f.passed(f.deadline(), t0 + Duration::from_secs(10)));
        assert!(!f.passed_since(f.deadline()));
    }

    #[test]
    fn instants_before_the_base_or_far_ahead_are_clamped() {
        let f = Fence::new();
        let before = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        f.set(Some(before));
        assert!(
            f.passed(f.deadline(), Instant::now()),
            "a past instant fences at once"
        );
        assert!(f.passed_since(Deadline(0)));

        f.set(Some(Instant::now() + Duration::from_secs(1 << 40)));
        assert!(f.deadline().is_set(), "far ahead is still a fence");
        assert!(!f.passed(f.deadline(), Instant::now()));
    }
}
