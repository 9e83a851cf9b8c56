//! Chassis cluster logic, sans-IO: which node forwards each redundancy group, fenced by
//! leases renewed through the replicated log; preempt, manual failover and monitoring
//! weights; sizing of outbound sequence reservations.

pub mod config;
pub mod group;
pub mod reserve;

pub use config::{ClusterConfig, GroupConfig, IpMonitor, WEIGHT_THRESHOLD};
pub use group::{GroupFsm, GroupRole, PeerView};
pub use reserve::{RateMeter, ReservePolicy};
