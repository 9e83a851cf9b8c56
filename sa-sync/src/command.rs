//! The entries of the replicated log and what applying them did.

use serde::{Deserialize, Serialize};

use crate::record::{ChildSaRecord, Fence, IkeSaRecord, Member, NodeStatus, SaId};

/// One replicated change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Take a redundancy group. Valid only if the group is still at `epoch` and `lease`
    /// as the candidate last saw it: if anything happened since (a renewal by the
    /// owner, another takeover), the candidate's view was stale and it must look again.
    Acquire {
        /// The group.
        group: u8,
        /// The candidate.
        node: Member,
        /// The group's epoch the candidate saw.
        epoch: u64,
        /// The group's lease counter the candidate saw.
        lease: u64,
    },
    /// The owner extends its lease, and records its inbound high marks as of the
    /// renewal: a renewal never commits without them, so what an owner accepts beyond
    /// the replicated marks is bounded by one lease (see `ha::group`).
    Renew(Fence, Vec<(SaId, u64)>),
    /// The owner gives the group up (manual failover, preempt, shutdown): it has already
    /// stopped forwarding, so the other node may take over at once.
    Release(Fence),
    /// Pins a group to a node (`request chassis cluster failover`), or unpins it
    /// (`... reset`) with `None`.
    Pin {
        /// The group.
        group: u8,
        /// The node, or `None` to reset.
        node: Option<Member>,
    },
    /// A node's health and priorities.
    Status {
        /// The node.
        node: Member,
        /// What it reports.
        status: NodeStatus,
    },
    /// An IKE SA was established or changed.
    PutIkeSa(Fence, IkeSaRecord),
    /// An IKE SA (and every child SA of its gateway) ended.
    DeleteIkeSa(Fence, String),
    /// A child SA pair was installed. Its initial reservation and replay mark come with
    /// it, so a takeover never sees a pair without them.
    PutChildSa {
        /// Writer.
        fence: Fence,
        /// The pair.
        record: ChildSaRecord,
        /// The outbound sequence numbers the owner may use at first.
        reserve: u64,
    },
    /// A child SA pair ended.
    DeleteChildSa(Fence, SaId),
    /// The owner may send outbound sequence numbers up to `upto` (never lowered).
    Reserve {
        /// Writer.
        fence: Fence,
        /// Outbound SA (gateway, peer's SPI).
        sa: SaId,
        /// New limit.
        upto: u64,
    },
    /// Highest authenticated inbound sequence numbers (never lowered), batched.
    ReplayMarks(Fence, Vec<(SaId, u64)>),
}

/// Why an entry changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejected {
    /// The writer is not the group's owner at that epoch (deposed, or never was).
    #[error("not the owner of the redundancy group at this epoch")]
    NotOwner,
    /// An `Acquire` based on a stale view of the group.
    #[error("the redundancy group changed since it was observed")]
    Stale,
    /// The group is pinned to the other node by a manual failover.
    #[error("the redundancy group is pinned to another node")]
    Pinned,
    /// The witness cannot own groups.
    #[error("the witness cannot own a redundancy group")]
    NotGateway,
    /// A record for an SA the state does not hold.
    #[error("unknown SA")]
    UnknownSa,
    /// An older version of a record than the one held.
    #[error("older than the record held")]
    Outdated,
}

/// The result of applying one entry.
pub type Outcome = Result<(), Rejected>;
