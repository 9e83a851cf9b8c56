//! [`IkeSa::state_version`]: tells the cluster node when an SA must be replicated again.
//!
//! The version is derived from a fingerprint of the replicated state, compared when
//! asked, rather than bumped by each code path that changes the state: no path can
//! forget it. The fingerprint covers what an [`super::IkeSaSnapshot`] holds except
//! timers and retransmission counts; keys are not hashed, they change only together
//! with the SPIs, which are.

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::sa::{ActiveKind, IkeSa, Phase, Session};

/// The version, and the fingerprint of the state it was last counted for.
#[derive(Debug, Default)]
pub(super) struct StateVersion(Cell<(u64, u64)>);

impl StateVersion {
    /// Carries on from a snapshot's version, for the state restored from it.
    pub(super) fn resumed(version: u64, fingerprint: u64) -> Self {
        StateVersion(Cell::new((version, fingerprint)))
    }
}

impl IkeSa {
    /// A counter that increases whenever the state a snapshot holds changes, other than
    /// timers: message IDs (so every request and response we send), SPIs and keys,
    /// child SAs, addresses, NAT state, queued work. The node calls it after each call
    /// into the SA and, when it changed, replicates a new [`Self::snapshot`] before it
    /// sends anything (see [`super::IkeSaSnapshot`]).
    pub fn state_version(&self) -> u64 {
        let fingerprint = self.fingerprint();
        let (version, last) = self.version.0.get();
        if fingerprint == last {
            return version;
        }
        let version = version.saturating_add(1);
        self.version.0.set((version, fingerprint));
        version
    }

    pub(super) fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        let phase: u8 = match self.phase {
            Phase::InitSent { .. } => 0,
            Phase::AwaitInit => 1,
            Phase::Auth => 2,
            Phase::Established => 3,
            Phase::Closed { failed } => 4 + u8::from(failed),
        };
        phase.hash(&mut h);
        (self.local, self.remote, self.spi_i, self.spi_r).hash(&mut h);
        (self.nat, self.encap, self.floated, self.fragmentation).hash(&mut h);
        for s in self.session.iter().chain(&self.retiring) {
            hash_session(s, &mut h);
        }
        if let Some((s, low)) = &self.ike_collision {
            hash_session(s, &mut h);
            low.hash(&mut h);
        }
        for c in &self.children {
            (c.inbound, c.outbound, c.state, c.installed, &c.config).hash(&mut h);
        }
        self.tasks.hash(&mut h);
        self.lease.as_ref().map(|l| l.address).hash(&mut h);
        h.finish()
    }
}

fn hash_session(s: &Session, h: &mut DefaultHasher) {
    (s.initiator, s.spis(), s.next_id, s.peer_next).hash(h);
    s.last_response.hash(h);
    s.active.is_some().hash(h);
    let Some(a) = &s.active else {
        return;
    };
    a.id.hash(h);
    // What can change while the request is in flight; the rest was fixed when it was
    // sent under this message ID.
    match &a.kind {
        ActiveKind::Auth { child_spi } => (1u8, child_spi).hash(h),
        ActiveKind::Dpd => 2u8.hash(h),
        ActiveKind::DeleteIke => 3u8.hash(h),
        ActiveKind::DeleteChildren(spis) => (4u8, spis).hash(h),
        ActiveKind::CreateChild(init) => (5u8, init.our_spi, &init.collision).hash(h),
        ActiveKind::RekeyIke(init) => (6u8, init.new_spi).hash(h),
    }
}
