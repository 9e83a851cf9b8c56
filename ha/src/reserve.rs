//! Sizing of outbound sequence-number reservations.
//!
//! The owner may only send sequence numbers up to the last committed reservation, so it
//! asks for the next block while the current one still lasts long enough to cover a
//! commit. A block too small means a Raft entry per few packets; too big wastes sequence
//! space at every takeover (the new owner starts above the whole reservation). The block
//! therefore follows the packet rate: about `horizon` worth of packets, within bounds.

use std::time::{Duration, Instant};

/// Reservation policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReservePolicy {
    /// Smallest block (also the first one, before any rate is known).
    pub min_block: u64,
    /// Largest block.
    pub max_block: u64,
    /// How long a block should last at the measured rate.
    pub horizon: Duration,
}

impl Default for ReservePolicy {
    fn default() -> Self {
        Self {
            min_block: 1 << 12,
            max_block: 1 << 24,
            horizon: Duration::from_secs(2),
        }
    }
}

impl ReservePolicy {
    /// The block for a rate in packets per second.
    pub fn block(&self, rate: f64) -> u64 {
        let want = rate * self.horizon.as_secs_f64();
        if want.is_finite() && want > 0.0 {
            (want as u64).clamp(self.min_block, self.max_block)
        } else {
            self.min_block
        }
    }

    /// Ask for more when fewer than this many numbers remain: half a block, which at the
    /// measured rate is `horizon / 2`, far more than a commit takes.
    pub fn low_water(&self, rate: f64) -> u64 {
        self.block(rate) / 2
    }

    /// The next limit to propose for an SA that has used up to `seq` under `limit`.
    pub fn next_limit(&self, seq: u64, limit: u64, rate: f64) -> u64 {
        limit.max(seq).saturating_add(self.block(rate))
    }
}

/// Packet rate of one SA, smoothed (exponentially weighted) over successive samples of
/// its sequence counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateMeter {
    last: Option<(Instant, u64)>,
    rate: f64,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    /// No samples yet.
    pub fn new() -> Self {
        Self {
            last: None,
            rate: 0.0,
        }
    }

    /// Records the counter at `now`; returns the smoothed rate (packets per second).
    pub fn sample(&mut self, now: Instant, seq: u64) -> f64 {
        if let Some((t, s)) = self.last {
            let dt = now.saturating_duration_since(t).as_secs_f64();
            if dt > 0.0 {
                let r = seq.saturating_sub(s) as f64 / dt;
                self.rate = if self.rate == 0.0 {
                    r
                } else {
                    0.5 * self.rate + 0.5 * r
                };
            }
        }
        self.last = Some((now, seq));
        self.rate
    }

    /// The current estimate.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_follows_rate_within_bounds() {
        let p = ReservePolicy::default();
        assert_eq!(p.block(0.0), 4096);
        assert_eq!(p.block(f64::NAN), 4096);
        assert_eq!(p.block(100_000.0), 200_000);
        assert_eq!(p.block(1e12), 1 << 24);
        assert_eq!(p.next_limit(10, 4096, 0.0), 8192);
        assert_eq!(p.next_limit(9000, 4096, 0.0), 9000 + 4096);
    }

    #[test]
    fn meter_smooths() {
        let t = Instant::now();
        let mut m = RateMeter::new();
        assert_eq!(m.sample(t, 0), 0.0);
        assert_eq!(m.sample(t + Duration::from_secs(1), 1000), 1000.0);
        assert_eq!(m.sample(t + Duration::from_secs(2), 4000), 2000.0);
    }
}
