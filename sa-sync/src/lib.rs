//! The cluster's replicated state: a Raft group (tikv raft-rs) of node0, node1 and a
//! witness, holding IKE and IPsec SA records, outbound sequence reservations, inbound
//! replay marks and redundancy-group ownership.
//!
//! | module | holds |
//! |---|---|
//! | [`record`] | the replicated records and cluster members |
//! | [`command`] | log entries and their outcomes |
//! | [`state`] | the deterministic state machine (apply, snapshot, restore) |
//! | [`store`] | the log store interface and the in-memory store |
//! | [`replica`] | one member's sans-IO Raft replica |

pub mod command;
pub mod record;
pub mod replica;
pub mod state;
pub mod store;

pub use command::{Command, Outcome, Rejected};
pub use record::{ChildSaRecord, Fence, GroupState, IkeSaRecord, Member, NodeStatus, SaId, Secret};
pub use replica::{Applied, ProposalId, Replica, ReplicaConfig, ReplicaError};
pub use state::ClusterState;
pub use store::{LogStore, MemLogStore, StoreError};
