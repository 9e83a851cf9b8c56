//! One node's view of one redundancy group: whether it may forward, and what it must
//! propose to keep, take or give up the group.
//!
//! # The lease, and why two nodes never forward at once
//!
//! The owner proposes `Renew` every heartbeat interval. When a renewal it proposed at
//! its local time `t0` is applied, it may forward until `t0 + lease` (and the dataplane
//! enforces that instant itself, see `forward_until`). Any other node notes the local
//! time `t1` at which it applied the change of the group's lease counter; since the entry
//! was proposed before it was committed and applied, `t1 >= t0`, so when the other node's
//! clock passes `t1 + lease + margin` the owner's clock has passed `t0 + lease`: the owner
//! has stopped. Only then does the other node propose `Acquire`, which the state machine
//! accepts only if the group's epoch and lease counter are still what it saw, i.e. no
//! renewal was committed in between. An owner cut off from the quorum cannot commit
//! renewals, so it stops at the end of its last lease; a standby cut off cannot commit
//! its `Acquire`. Clocks are monotonic and local; only their rates are assumed to agree
//! (within the margin), never their values.
//!
//! A voluntary `Release` (manual failover, preempt, monitoring) is proposed only after
//! the owner stopped forwarding, so the other node may take over as soon as it applies it.

use std::time::{Duration, Instant};

use sa_sync::{Command, Fence, GroupState, Member};

use crate::config::{ClusterConfig, GroupConfig};

/// What `show chassis cluster status` prints for a node and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// Owns the group and forwards.
    Primary,
    /// Ready to take over.
    Secondary,
    /// Owns the group by the log but its lease ran out (cut off from the quorum).
    Lost,
    /// Cannot take the group (effective priority 0: monitoring failures).
    Disabled,
}

impl std::fmt::Display for GroupRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GroupRole::Primary => "primary",
            GroupRole::Secondary => "secondary",
            GroupRole::Lost => "lost",
            GroupRole::Disabled => "disabled",
        })
    }
}

/// What the node knows about the other gateway node, from the replicated state and the
/// cluster transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    /// The peer's effective priority for this group (0: cannot take it).
    pub priority: u8,
    /// The peer is reachable through the cluster link.
    pub alive: bool,
}

/// One node's state machine for one redundancy group.
#[derive(Debug, Clone)]
pub struct GroupFsm {
    me: Member,
    group: u8,
    lease: Duration,
    margin: Duration,
    interval: Duration,
    preempt: Option<Duration>,
    /// Configured priority of this node.
    priority: u8,
    /// Sum of the weights of failed monitored objects.
    failed_weight: u32,
    /// The group as last applied.
    seen: GroupState,
    /// Local time at which `seen.lease` last changed.
    seen_at: Instant,
    /// While owner: forwarding allowed until then.
    lease_until: Option<Instant>,
    /// A renewal is in flight since then (one at a time).
    renewing: Option<Instant>,
    /// An acquire or release is in flight (wait for it to apply before another).
    changing: Option<Instant>,
    /// Since when the peer has been preferable (for the preempt delay).
    preferred_since: Option<Instant>,
    /// Started without ownership knowledge: the lower-priority node waits one lease
    /// before taking an unowned group, so the preferred node wins a cold start.
    started_at: Instant,
}

impl GroupFsm {
    /// The FSM of `group` on gateway node `me`, starting at `now`.
    pub fn new(me: Member, cluster: &ClusterConfig, group: &GroupConfig, now: Instant) -> Self {
        let lease = cluster.lease();
        Self {
            me,
            group: group.id,
            lease,
            margin: (cluster.heartbeat_interval / 2).max(Duration::from_millis(20)),
            interval: cluster.heartbeat_interval,
            preempt: group.preempt,
            priority: group.priority.get(me.index()).copied().unwrap_or(0),
            failed_weight: 0,
            seen: GroupState::default(),
            seen_at: now,
            lease_until: None,
            renewing: None,
            changing: None,
            preferred_since: None,
            started_at: now,
        }
    }

    /// The group number.
    pub fn group(&self) -> u8 {
        self.group
    }

    /// Priority after monitoring: 0 once failed weights reach the threshold (Junos).
    pub fn effective_priority(&self) -> u8 {
        if self.failed_weight >= crate::WEIGHT_THRESHOLD {
            0
        } else {
            self.priority
        }
    }

    /// Sets the sum of failed monitoring weights (interfaces, IPs, SPUs).
    pub fn set_failed_weight(&mut self, weight: u32) {
        self.failed_weight = weight;
    }

    /// The group as the log says.
    pub fn seen(&self) -> GroupState {
        self.seen
    }

    /// Takes the group's state after an entry was applied at local time `now`.
    pub fn observe(&mut self, state: GroupState, now: Instant) {
        if state.lease != self.seen.lease || state.epoch != self.seen.epoch {
            self.seen_at = now;
            self.changing = None;
        }
        if state.owner != Some(self.me) || state.epoch != self.seen.epoch {
            // Deposed or never owner: no lease (an Acquire of ours sets it through
            // `acquired`).
            if state.owner != Some(self.me) {
                self.lease_until = None;
                self.renewing = None;
            }
        }
        self.seen = state;
    }

    /// Our `Acquire` proposed at `proposed_at` was applied successfully.
    pub fn acquired(&mut self, proposed_at: Instant) {
        self.lease_until = Some(proposed_at + self.lease);
        self.changing = None;
    }

    /// Our `Renew` proposed at `proposed_at` was applied successfully.
    pub fn renewed(&mut self, proposed_at: Instant) {
        let until = proposed_at + self.lease;
        self.lease_until = Some(self.lease_until.map_or(until, |u| u.max(until)));
        if self.renewing.is_some_and(|r| r <= proposed_at) {
            self.renewing = None;
        }
    }

    /// A proposal of ours failed or timed out: allow a new one.
    pub fn proposal_lost(&mut self) {
        self.renewing = None;
        self.changing = None;
    }

    /// Gives the group up at once (the node is shutting down): forwarding stops now and
    /// the returned `Release` lets the peer take over without waiting for the lease.
    pub fn leave(&mut self, now: Instant) -> Option<Command> {
        if !self.owns() {
            return None;
        }
        self.lease_until = None;
        self.renewing = None;
        self.changing = Some(now);
        Some(Command::Release(self.fence()))
    }

    /// The fence: the instant until which this node may forward the group's traffic.
    pub fn forward_until(&self, now: Instant) -> Option<Instant> {
        self.lease_until.filter(|u| *u > now && self.owns())
    }

    fn owns(&self) -> bool {
        self.seen.owner == Some(self.me)
    }

    /// The role for status displays.
    pub fn role(&self, now: Instant) -> GroupRole {
        if self.forward_until(now).is_some() {
            GroupRole::Primary
        } else if self.owns() {
            GroupRole::Lost
        } else if self.effective_priority() == 0 {
            GroupRole::Disabled
        } else {
            GroupRole::Secondary
        }
    }

    fn fence(&self) -> Fence {
        Fence {
            group: self.group,
            node: self.me,
            epoch: self.seen.epoch,
        }
    }

    /// What to propose now, if anything. The caller proposes it and reports back with
    /// `acquired` / `renewed` / `proposal_lost`, passing the `now` given here.
    pub fn poll(&mut self, now: Instant, peer: PeerView) -> Option<Command> {
        if self.owns() {
            return self.poll_owner(now, peer);
        }
        self.preferred_since = None;
        if self.changing.is_some_and(|t| now < t + self.lease) {
            return None;
        }
        let pinned_elsewhere = self.seen.manual.is_some_and(|m| m != self.me);
        if self.effective_priority() == 0 || pinned_elsewhere {
            return None;
        }
        let pinned_here = self.seen.manual == Some(self.me);
        let expired = now >= self.seen_at + self.lease + self.margin;
        let may_take = match self.seen.owner {
            None => {
                // Unowned: the preferred node takes it; the other waits a lease
                // first (also when the peer seems gone: at a cold start the cluster
                // link may simply not be up yet), unless pinned here.
                let preferred = pinned_here
                    || peer.priority < self.effective_priority()
                    || (peer.priority == self.effective_priority() && self.me == Member::Node0);
                preferred || now >= self.started_at.max(self.seen_at) + self.lease
            }
            Some(_) => expired,
        };
        if !may_take {
            return None;
        }
        self.changing = Some(now);
        Some(Command::Acquire {
            group: self.group,
            node: self.me,
            epoch: self.seen.epoch,
            lease: self.seen.lease,
        })
    }

    fn poll_owner(&mut self, now: Instant, peer: PeerView) -> Option<Command> {
        if self.changing.is_some_and(|t| now < t + self.lease) {
            return None;
        }
        if self.should_release(now, peer) {
            // Stop forwarding first: the lease ends now, whatever the log says.
            self.lease_until = None;
            self.renewing = None;
            self.changing = Some(now);
            return Some(Command::Release(self.fence()));
        }
        let due = self.renewing.is_none_or(|r| now >= r + self.lease);
        let needed = self
            .lease_until
            .is_none_or(|u| u <= now + self.lease - self.interval.min(self.lease));
        if due && needed {
            self.renewing = Some(now);
            // The caller adds its replay marks.
            return Some(Command::Renew(self.fence(), Vec::new()));
        }
        None
    }

    fn should_release(&mut self, now: Instant, peer: PeerView) -> bool {
        let peer_ok = peer.alive && peer.priority > 0;
        if let Some(m) = self.seen.manual {
            return m != self.me && peer_ok;
        }
        if self.effective_priority() == 0 {
            return peer_ok;
        }
        let Some(delay) = self.preempt else {
            return false;
        };
        if !(peer_ok && peer.priority > self.effective_priority()) {
            self.preferred_since = None;
            return false;
        }
        let since = *self.preferred_since.get_or_insert(now);
        now >= since + delay
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
