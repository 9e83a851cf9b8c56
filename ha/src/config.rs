//! Chassis cluster settings, in Junos terms and with Junos defaults.

use std::net::IpAddr;
use std::time::Duration;

/// The failover threshold monitoring weights are summed against (Junos: 255).
pub const WEIGHT_THRESHOLD: u32 = 255;

/// Cluster-wide settings (`[chassis.cluster]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Cluster id (1..=255 in Junos); only for display and for refusing a peer of
    /// another cluster.
    pub cluster_id: u16,
    /// Heartbeat interval (Junos `heartbeat-interval`, default 1000 ms, here 100..=2000):
    /// how often the owner renews its lease through Raft.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats before the peer is declared lost (Junos
    /// `heartbeat-threshold`, default 3, 3..=8): the lease lasts
    /// `interval * threshold`.
    pub heartbeat_threshold: u32,
    /// Redundancy groups (group 0, the control plane, always exists).
    pub groups: Vec<GroupConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            cluster_id: 1,
            heartbeat_interval: Duration::from_millis(1000),
            heartbeat_threshold: 3,
            groups: vec![GroupConfig::new(0), GroupConfig::new(1)],
        }
    }
}

impl ClusterConfig {
    /// How long a lease lasts after the renewal that granted it.
    pub fn lease(&self) -> Duration {
        self.heartbeat_interval * self.heartbeat_threshold.max(1)
    }

    /// A group's settings.
    pub fn group(&self, id: u8) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.id == id)
    }
}

/// One redundancy group (`[chassis.cluster.redundancy-group.N]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Group number; 0 is the control plane (routing engine), 1+ own VPNs and reth
    /// addresses.
    pub id: u8,
    /// Priority of node0 and node1 (1..=254, higher wins).
    pub priority: [u8; 2],
    /// Take the group back when a node of higher priority is available, after the
    /// delay (Junos `preempt { delay }`); `None` never preempts (the Junos default).
    pub preempt: Option<Duration>,
    /// Interfaces whose loss costs the node this weight.
    pub interface_monitor: Vec<(String, u32)>,
    /// Addresses whose unreachability costs the node this weight.
    pub ip_monitor: Vec<IpMonitor>,
    /// Weight of each failed SPU (services card worker); a node whose failed SPUs add up
    /// to the threshold gives the group up.
    pub spu_weight: u32,
}

impl GroupConfig {
    /// A group with Junos defaults: node0 preferred, no preempt, no monitoring.
    pub fn new(id: u8) -> Self {
        Self {
            id,
            priority: [200, 100],
            preempt: None,
            interface_monitor: Vec::new(),
            ip_monitor: Vec::new(),
            spu_weight: 0,
        }
    }
}

/// One `ip-monitoring` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpMonitor {
    /// The address probed (ICMP echo).
    pub address: IpAddr,
    /// Weight lost when it stops answering.
    pub weight: u32,
    /// Probe interval (Junos default 1 s).
    pub interval: Duration,
    /// Consecutive lost probes before it counts as down (Junos default 5).
    pub threshold: u32,
}
