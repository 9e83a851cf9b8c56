//! The inbound anti-replay window (RFC 4303 §3.4.3) with extended sequence numbers
//! (RFC 4303 Appendix A).
//!
//! The bitmap is a ring of 64-bit words with one word more than the window needs
//! (the layout of RFC 6479): sliding the window forward clears only the words it passes
//! over, so the cost per packet does not grow with the window size (8192 costs what 64
//! costs; a jump forward clears at most one ring's worth of words once).
//!
//! Checking is split in two because the integrity check sits between them: `check` runs
//! before the ICV (cheap rejection of replays, and ESN needs the inferred high half to
//! compute the ICV at all), `accept` after it (only authenticated packets move the
//! window). `accept` re-checks, because a batch may carry the same sequence number twice.

/// Smallest window the gateway configures (Junos' minimum).
pub const MIN_WINDOW: u32 = 64;
/// Largest window the gateway configures.
pub const MAX_WINDOW: u32 = 8192;

/// Why a sequence number is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Configured window size not a power of two within 64..=8192.
    #[error(
        "anti-replay window must be a power of two between {MIN_WINDOW} and {MAX_WINDOW}, got {0}"
    )]
    BadWindowSize(u32),
    /// The sequence number was already received.
    #[error("sequence number {0} already received")]
    Replayed(u64),
    /// The sequence number is left of the window.
    #[error("sequence number {0} is older than the window")]
    TooOld(u64),
    /// Sequence number zero is never sent (RFC 4303 §2.2: the first packet carries 1).
    #[error("sequence number zero")]
    Zero,
}

/// Replay state of one inbound SA.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// False for `no-anti-replay`: nothing is rejected, but the highest sequence number
    /// is still tracked because ESN inference needs it.
    enabled: bool,
    esn: bool,
    size: u64,
    /// Highest authenticated sequence number (0: none yet).
    top: u64,
    bitmap: Box<[u64]>,
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("enabled", &self.enabled)
            .field("esn", &self.esn)
            .field("size", &self.size)
            .field("top", &self.top)
            .finish()
    }
}

impl ReplayWindow {
    /// A window of `size` packets; `size == 0` means `no-anti-replay`.
    pub fn new(size: u32, esn: bool) -> Result<Self, ReplayError> {
        let enabled = size != 0;
        let size = if enabled { size } else { MIN_WINDOW };
        if !size.is_power_of_two() || !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return Err(ReplayError::BadWindowSize(size));
        }
        let words = (size / 64) as usize + 1;
        Ok(Self {
            enabled,
            esn,
            size: u64::from(size),
            top: 0,
            bitmap: vec![0; words].into_boxed_slice(),
        })
    }

    /// Window size in packets (0 when anti-replay is off).
    pub fn size(&self) -> u32 {
        if self.enabled { self.size as u32 } else { 0 }
    }

    /// Highest authenticated sequence number so far.
    pub fn highest(&self) -> u64 {
        self.top
    }

    /// The full sequence number a received low half stands for: itself without ESN,
    /// or with the high half inferred as in RFC 4303 Appendix A.
    pub fn infer(&self, seq_lo: u32) -> u64 {
        if !self.esn {
            return u64::from(seq_lo);
        }
        let w = self.size;
        let tl = self.top & 0xffff_ffff;
        let th = self.top >> 32;
        let seq_lo = u64::from(seq_lo);
        let hi = if tl >= w - 1 {
            // Window inside one 2^32 subspace: a low half below its bottom is from the next.
            if seq_lo >= tl - (w - 1) { th } else { th + 1 }
        } else {
            // Window straddles two subspaces: a low half above its bottom (mod 2^32) is
            // from the previous one. At the very start there is no previous subspace.
            let bottom = (tl + (1 << 32) - (w - 1)) & 0xffff_ffff;
            if seq_lo >= bottom {
                th.checked_sub(1).unwrap_or(th)
            } else {
                th
            }
        };
        (hi << 32) | seq_lo
    }

    /// Pre-integrity check: infers the full sequence number and rejects replays and
    /// packets left of the window without changing any state.
    pub fn check(&self, seq_lo: u32) -> Result<u64, ReplayError> {
        let seq = self.infer(seq_lo);
        self.check_full(seq)?;
        Ok(seq)
    }

    fn check_full(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if !self.enabled || seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayError::TooOld(seq));
        }
        let (word, bit) = self.slot(seq);
        if self.bitmap[word] & bit != 0 {
            return Err(ReplayError::Replayed(seq));
        }
        Ok(())
    }

    /// Post-integrity update: records `seq` as received, sliding the window forward if
    /// it is the new highest. Re-checks first, because two copies of one packet may
    /// both have passed [`ReplayWindow::check`] within one batch.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check_full(seq)?;
        if seq > self.top {
            let words = self.bitmap.len() as u64;
            let old = self.top >> 6;
            let new = seq >> 6;
            let clear = (new - old).min(words);
            for i in 1..=clear {
                self.bitmap[((old + i) % words) as usize] = 0;
            }
            self.top = seq;
        }
        let (word, bit) = self.slot(seq);
        self.bitmap[word] |= bit;
        Ok(())
    }

    /// Raises the window to start above `seq` without marking anything received: a node
    /// taking over an SA rejects everything at or below the replicated high mark.
    pub fn advance_to(&mut self, seq: u64) {
        if seq <= self.top {
            return;
        }
        self.bitmap.fill(0);
        self.top = seq;
        // Everything at or below the mark counts as seen.
        let words = self.bitmap.len() as u64;
        let start = seq.saturating_sub(self.size - 1).max(1);
        let mut s = start;
        while s <= seq {
            let word = ((s >> 6) % words) as usize;
            let first_bit = s & 63;
            let last = (s | 63).min(seq);
            let span = last - s + 1;
            let mask = if span == 64 {
                u64::MAX
            } else {
                ((1u64 << span) - 1) << first_bit
            };
            self.bitmap[word] |= mask;
            s = last + 1;
        }
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let words = self.bitmap.len() as u64;
        (((seq >> 6) % words) as usize, 1u64 << (seq & 63))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, seq_lo: u32) -> Result<u64, ReplayError> {
        let seq = w.check(seq_lo)?;
        w.accept(seq)?;
        Ok(seq)
    }

    #[test]
    fn rejects_bad_sizes() {
        for s in [1, 32, 63, 65, 100, 16384] {
            assert_eq!(
                ReplayWindow::new(s, false),
                Err(ReplayError::BadWindowSize(s))
            );
        }
        assert!(ReplayWindow::new(64, false).is_ok());
        assert!(ReplayWindow::new(8192, true).is_ok());
        assert_eq!(ReplayWindow::new(0, false).map(|w| w.size()), Ok(0));
    }

    #[test]
    fn in_order_duplicates_and_old() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(0), Err(ReplayError::Zero));
        for s in 1..=100 {
            accept(&mut w, s).unwrap();
        }
        assert_eq!(w.check(100), Err(ReplayError::Replayed(100)));
        assert_eq!(w.check(37), Err(ReplayError::Replayed(37)));
        assert_eq!(w.check(36), Err(ReplayError::TooOld(36)));
        assert_eq!(accept(&mut w, 200), Ok(200));
        // 137..=199 were never received and are inside the window.
        assert_eq!(accept(&mut w, 150), Ok(150));
        assert_eq!(w.check(136), Err(ReplayError::TooOld(136)));
    }

    #[test]
    fn accept_rechecks_duplicates_within_a_batch() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        let a = w.check(5).unwrap();
        let b = w.check(5).unwrap();
        w.accept(a).unwrap();
        assert_eq!(w.accept(b), Err(ReplayError::Replayed(5)));
    }

    #[test]
    fn disabled_window_accepts_everything_but_tracks_top() {
        let mut w = ReplayWindow::new(0, true).unwrap();
        accept(&mut w, 10).unwrap();
        accept(&mut w, 10).unwrap();
        accept(&mut w, 3).unwrap();
        assert_eq!(w.highest(), 10);
    }

    #[test]
    fn esn_crosses_the_32_bit_boundary() {
        let mut w = ReplayWindow::new(64, true).unwrap();
        accept(&mut w, u32::MAX - 10).unwrap();
        assert_eq!(w.highest(), u64::from(u32::MAX - 10));
        // A small low half now belongs to the next subspace.
        assert_eq!(accept(&mut w, 5), Ok((1 << 32) | 5));
        // A late packet from the old subspace, still inside the window.
        assert_eq!(accept(&mut w, u32::MAX - 2), Ok(u64::from(u32::MAX - 2)));
        assert_eq!(
            w.check(u32::MAX - 10),
            Err(ReplayError::Replayed(u64::from(u32::MAX - 10)))
        );
        // Left of the window: Appendix A infers it into the next subspace, where the
        // ICV (computed with that high half) then rejects it.
        assert_eq!(
            w.infer(u32::MAX - 100),
            (1 << 32) | u64::from(u32::MAX - 100)
        );
    }

    #[test]
    fn advance_to_rejects_everything_at_or_below_the_mark() {
        let mut w = ReplayWindow::new(128, false).unwrap();
        w.advance_to(1000);
        assert_eq!(w.check(1000), Err(ReplayError::Replayed(1000)));
        assert_eq!(w.check(950), Err(ReplayError::Replayed(950)));
        assert_eq!(w.check(800), Err(ReplayError::TooOld(800)));
        assert_eq!(accept(&mut w, 1001), Ok(1001));
    }

    #[test]
    fn big_jumps_clear_stale_bits() {
        let mut w = ReplayWindow::new(8192, false).unwrap();
        for s in 1..=8192 {
            accept(&mut w, s).unwrap();
        }
        accept(&mut w, 100_000).unwrap();
        // Positions that collide in the ring with old marks must read as unseen.
        for s in (100_000 - 8191)..100_000 {
            assert_eq!(w.check(s), Ok(u64::from(s)), "seq {s}");
        }
    }
}
