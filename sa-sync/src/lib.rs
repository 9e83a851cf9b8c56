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
//! | [`disk`] | the durable log store (raft-engine) |
//! | [`transport`] | Raft messages over gRPC with mutual TLS |
//! | [`cluster`] | a running member: replica, store and transport driven together |

pub mod cluster;
pub mod command;
pub mod disk;
pub mod record;
pub mod replica;
pub mod state;
pub mod store;
pub mod transport;

pub use cluster::{
    ClusterHandle, ClusterNode, ClusterNodeConfig, Lifecycle, PeerStatus, ProposeError, RaftStatus,
    Role, StartError, Stopped,
};
pub use command::{Command, Outcome, Rejected};
pub use disk::DiskLogStore;
pub use record::{ChildSaRecord, Fence, GroupState, IkeSaRecord, Member, NodeStatus, SaId, Secret};
pub use replica::{Applied, ProposalId, Replica, ReplicaConfig, ReplicaError};
pub use state::ClusterState;
pub use store::{LogStore, MemLogStore, StoreError};
pub use transport::{ClusterTls, InboundStats, TransportError};
