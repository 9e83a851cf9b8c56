//! Chassis cluster logic, sans-IO: which node forwards each redundancy group, fenced by
//! leases renewed through the replicated log; preempt, manual failover and monitoring
//! weights; sizing of outbound sequence reservations.

pub mod config;

pub use config::{ClusterConfig, GroupConfig, IpMonitor, WEIGHT_THRESHOLD};
pub mod group;

pub use group::{GroupFsm, GroupRole, PeerView};
