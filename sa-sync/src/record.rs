//! What the cluster replicates about tunnels: plain data, with key material opaque.
//!
//! `sa-sync` knows nothing of `ike` or `dataplane` types (the workspace rule); the node
//! encodes an IKE SA's snapshot and a child SA's install description into [`Secret`]
//! bytes, and keeps here only what the replicated state machine itself must look at:
//! names, SPIs, versions and the anchor.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A cluster member. The discriminants are the Raft peer ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Member {
    /// Gateway node 0.
    Node0,
    /// Gateway node 1.
    Node1,
    /// The tie-breaker: votes and stores the log, never forwards.
    Witness,
}

impl Member {
    /// Every voter, in Raft id order.
    pub const ALL: [Member; 3] = [Member::Node0, Member::Node1, Member::Witness];

    /// The Raft peer id (never 0, which raft-rs reserves).
    pub fn raft_id(self) -> u64 {
        match self {
            Member::Node0 => 1,
            Member::Node1 => 2,
            Member::Witness => 3,
        }
    }

    /// The member of a Raft peer id.
    pub fn from_raft_id(id: u64) -> Option<Member> {
        Self::ALL.into_iter().find(|m| m.raft_id() == id)
    }

    /// Whether this member can own redundancy groups (forward traffic).
    pub fn is_gateway(self) -> bool {
        self != Member::Witness
    }

    /// The other gateway node (the witness has none).
    pub fn peer(self) -> Option<Member> {
        match self {
            Member::Node0 => Some(Member::Node1),
            Member::Node1 => Some(Member::Node0),
            Member::Witness => None,
        }
    }

    /// The Junos-style node number (`node0` is 0); the witness is 2.
    pub fn index(self) -> usize {
        self.raft_id() as usize - 1
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Member::Node0 => "node0",
            Member::Node1 => "node1",
            Member::Witness => "witness",
        })
    }
}

impl std::str::FromStr for Member {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "node0" | "0" => Ok(Member::Node0),
            "node1" | "1" => Ok(Member::Node1),
            "witness" => Ok(Member::Witness),
            _ => Err(format!(
                "unknown cluster member {s:?} (node0, node1 or witness)"
            )),
        }
    }
}

/// Key material and other secrets: zeroized when dropped, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps encoded secret state.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Identifies one IPsec SA of a gateway: the gateway name and the SPI (the inbound SPI is
/// ours and unique per node; the outbound SPI is the peer's, unique per gateway).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SaId {
    /// Configured gateway name.
    pub gateway: String,
    /// The SPI.
    pub spi: u32,
}

/// One established IKE SA, replicated after every change of its message IDs, keys or
/// children, before the message that changed them leaves (write-ahead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeSaRecord {
    /// Configured gateway name: the key (one IKE SA per gateway).
    pub gateway: String,
    /// Redundancy group that owns the gateway.
    pub group: u8,
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// The engine's own version counter: an older version never replaces a newer one.
    pub version: u64,
    /// The encoded IKE SA snapshot (keys, message IDs, timers).
    pub state: Secret,
}

/// One IPsec SA pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaRecord {
    /// Configured gateway name.
    pub gateway: String,
    /// Redundancy group that owns the gateway.
    pub group: u8,
    /// Our SPI (inbound SA): the key within the gateway.
    pub inbound_spi: u32,
    /// The peer's SPI (outbound SA).
    pub outbound_spi: u32,
    /// The SPU the pair is anchored on.
    pub anchor: u32,
    /// The encoded install description (transforms, keys, selectors, encapsulation).
    pub install: Secret,
}

/// Who may write for a redundancy group: every write about tunnels carries it, and the
/// state machine refuses writes from anyone but the current owner at the current epoch,
/// so a deposed owner that wakes up late cannot overwrite its successor's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The redundancy group.
    pub group: u8,
    /// The writer.
    pub node: Member,
    /// The group's epoch the writer believes in.
    pub epoch: u64,
}

/// A redundancy group's replicated ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupState {
    /// The node allowed to forward (while its lease runs).
    pub owner: Option<Member>,
    /// Increases with every change of owner.
    pub epoch: u64,
    /// Increases with every committed lease grant, renewal or release: a standby times
    /// the lease from the moment it applies a new value.
    pub lease: u64,
    /// A manual failover (`request chassis cluster failover`) pins the group to a node
    /// until reset.
    pub manual: Option<Member>,
}

/// What a gateway node tells the cluster about itself, for preempt decisions and
/// `show chassis cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Effective priority per redundancy group (0 when monitoring weights reached the
    /// threshold, as in Junos).
    pub priorities: Vec<(u8, u8)>,
    /// Monitoring failures, for display (`interface eth1 down`).
    pub failures: Vec<String>,
    /// Healthy SPUs (services cards' workers).
    pub spus: u32,
}
