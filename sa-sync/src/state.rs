//! The replicated state machine: every node applies the same committed entries in the
//! same order and so holds the same `ClusterState`.
//!
//! Applying is deterministic (ordered maps, no clocks) and idempotent: an entry at or
//! below the last applied index is ignored, so replaying the log after a restart, or a
//! snapshot followed by entries it already covers, changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome, Rejected};
use crate::record::{ChildSaRecord, Fence, GroupState, IkeSaRecord, Member, NodeStatus, SaId};

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not an encoded state.
    #[error("snapshot does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// Encoding failed (only if the state holds something serde cannot encode).
    #[error("snapshot does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    applied: u64,
    groups: BTreeMap<u8, GroupState>,
    nodes: BTreeMap<Member, NodeStatus>,
    ike: BTreeMap<String, IkeSaRecord>,
    children: BTreeMap<SaId, ChildSaRecord>,
    /// Outbound reservations by (gateway, peer's SPI).
    reservations: BTreeMap<SaId, u64>,
    /// Inbound high marks by (gateway, our SPI).
    replay: BTreeMap<SaId, u64>,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decodes one log entry's command.
pub fn decode_command(bytes: &[u8]) -> Result<Command, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, config()).map(|(c, _)| c)
}

/// Encodes one log entry's command.
pub fn encode_command(command: &Command) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(command, config())
}

impl ClusterState {
    /// The index of the last entry applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// A redundancy group's ownership (never-acquired groups are unowned at epoch 0).
    pub fn group(&self, group: u8) -> GroupState {
        self.groups.get(&group).copied().unwrap_or_default()
    }

    /// Every group that has had an entry.
    pub fn groups(&self) -> impl Iterator<Item = (u8, &GroupState)> {
        self.groups.iter().map(|(g, s)| (*g, s))
    }

    /// What a node last reported.
    pub fn node_status(&self, node: Member) -> Option<&NodeStatus> {
        self.nodes.get(&node)
    }

    /// The IKE SA of a gateway.
    pub fn ike_sa(&self, gateway: &str) -> Option<&IkeSaRecord> {
        self.ike.get(gateway)
    }

    /// Every IKE SA.
    pub fn ike_sas(&self) -> impl Iterator<Item = &IkeSaRecord> {
        self.ike.values()
    }

    /// Every child SA pair of a gateway.
    pub fn child_sas<'a>(&'a self, gateway: &'a str) -> impl Iterator<Item = &'a ChildSaRecord> {
        self.children.values().filter(move |c| c.gateway == gateway)
    }

    /// Every child SA pair.
    pub fn all_child_sas(&self) -> impl Iterator<Item = &ChildSaRecord> {
        self.children.values()
    }

    /// How many records of each kind the state holds: IKE SAs, child SA pairs,
    /// reservations, replay marks.
    pub fn counts(&self) -> [usize; 4] {
        [
            self.ike.len(),
            self.children.len(),
            self.reservations.len(),
            self.replay.len(),
        ]
    }

    /// The committed outbound reservation of an SA (gateway, peer's SPI).
    pub fn reservation(&self, sa: &SaId) -> Option<u64> {
        self.reservations.get(sa).copied()
    }

    /// The replicated inbound high mark of an SA (gateway, our SPI).
    pub fn replay_mark(&self, sa: &SaId) -> Option<u64> {
        self.replay.get(sa).copied()
    }

    /// Applies the entry at `index`. Entries at or below the last applied index are
    /// ignored (`Ok`), which makes replays harmless.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        if index <= self.applied {
            return Ok(());
        }
        self.applied = index;
        self.execute(command)
    }

    /// Records that `index` was applied without a command (Raft's empty entries and
    /// configuration changes).
    pub fn skip(&mut self, index: u64) {
        self.applied = self.applied.max(index);
    }

    fn check(&self, fence: &Fence) -> Outcome {
        let g = self.group(fence.group);
        if g.owner == Some(fence.node) && g.epoch == fence.epoch {
            Ok(())
        } else {
            Err(Rejected::NotOwner)
        }
    }

    fn execute(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Acquire {
                group,
                node,
                epoch,
                lease,
            } => {
                if !node.is_gateway() {
                    return Err(Rejected::NotGateway);
                }
                let g = self.groups.entry(*group).or_default();
                if g.epoch != *epoch || g.lease != *lease {
                    return Err(Rejected::Stale);
                }
                if g.manual.is_some_and(|m| m != *node) {
                    return Err(Rejected::Pinned);
                }
                g.owner = Some(*node);
                g.epoch += 1;
                g.lease += 1;
                Ok(())
            }
            Command::Renew(fence, marks) => {
                self.check(fence)?;
                let g = self.groups.entry(fence.group).or_default();
                g.lease += 1;
                self.raise_marks(marks);
                Ok(())
            }
            Command::Release(fence) => {
                self.check(fence)?;
                let g = self.groups.entry(fence.group).or_default();
                g.owner = None;
                g.lease += 1;
                Ok(())
            }
            Command::Pin { group, node } => {
                if node.is_some_and(|n| !n.is_gateway()) {
                    return Err(Rejected::NotGateway);
                }
                self.groups.entry(*group).or_default().manual = *node;
                Ok(())
            }
            Command::Status { node, status } => {
                self.nodes.insert(*node, status.clone());
                Ok(())
            }
            Command::PutIkeSa(fence, record) => {
                self.check(fence)?;
                if let Some(held) = self.ike.get(&record.gateway)
                    && (held.spi_i, held.spi_r) == (record.spi_i, record.spi_r)
                    && held.version > record.version
                {
                    return Err(Rejected::Outdated);
                }
                self.ike.insert(record.gateway.clone(), record.clone());
                Ok(())
            }
            Command::DeleteIkeSa(fence, gateway) => {
                self.check(fence)?;
                self.ike.remove(gateway);
                let gone: Vec<SaId> = self
                    .children
                    .keys()
                    .filter(|k| &k.gateway == gateway)
                    .cloned()
                    .collect();
                for k in gone {
                    self.remove_child(&k);
                }
                Ok(())
            }
            Command::PutChildSa {
                fence,
                record,
                reserve,
            } => {
                self.check(fence)?;
                let inbound = SaId {
                    gateway: record.gateway.clone(),
                    spi: record.inbound_spi,
                };
                let outbound = SaId {
                    gateway: record.gateway.clone(),
                    spi: record.outbound_spi,
                };
                let r = self.reservations.entry(outbound).or_default();
                *r = (*r).max(*reserve);
                self.replay.entry(inbound.clone()).or_default();
                self.children.insert(inbound, record.clone());
                Ok(())
            }
            Command::DeleteChildSa(fence, sa) => {
                self.check(fence)?;
                self.remove_child(sa);
                Ok(())
            }
            Command::Reserve { fence, sa, upto } => {
                self.check(fence)?;
                let r = self.reservations.get_mut(sa).ok_or(Rejected::UnknownSa)?;
                *r = (*r).max(*upto);
                Ok(())
            }
            Command::ReplayMarks(fence, marks) => {
                self.check(fence)?;
                self.raise_marks(marks);
                Ok(())
            }
        }
    }

    fn raise_marks(&mut self, marks: &[(SaId, u64)]) {
        for (sa, high) in marks {
            if let Some(m) = self.replay.get_mut(sa) {
                *m = (*m).max(*high);
            }
        }
    }

    fn remove_child(&mut self, inbound: &SaId) {
        if let Some(c) = self.children.remove(inbound) {
            self.reservations.remove(&SaId {
                gateway: c.gateway,
                spi: c.outbound_spi,
            });
        }
        self.replay.remove(inbound);
    }

    /// The whole state as snapshot bytes.
    pub fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        Ok(bincode::serde::encode_to_vec(self, config())?)
    }

    /// A state from snapshot bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Ok(bincode::serde::decode_from_slice(bytes, config())?.0)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
