//! The node in a chassis cluster: its member of the replicated log (`sa-sync`), the
//! redundancy-group actor that decides what this node forwards (`ha`), and the records
//! gateways write through the log.
//!
//! | module | holds |
//! |---|---|
//! | [`monitor`] | interface, IP and SPU monitoring weights |
//! | [`records`] | IKE SA snapshots and child SA installs as replicated bytes |
//! | [`redundancy`] | the `Redundancy` actor: leases, fence, reth addresses, takeover |

pub mod monitor;
pub mod records;
pub mod redundancy;

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use sa_sync::cluster::{ClusterHandle, ClusterNode, ClusterNodeConfig};

use crate::runtime::Node;
use crate::runtime::spec::ClusterSpec;

/// Why the node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The cluster certificates are missing or unreadable.
    #[error("cluster certificates: {0}")]
    Tls(String),
    /// This member has no control address in the configuration.
    #[error("no control address for {0}")]
    NoAddress(sa_sync::Member),
    /// The replica did not start.
    #[error("cluster member: {0}")]
    Start(#[from] sa_sync::cluster::StartError),
    /// The replica stopped before the node joined.
    #[error("cluster member stopped")]
    Stopped,
}

/// Starts this member's replica of the cluster log, with its certificates from the PKI
/// directory. The Raft tick follows the heartbeat interval, so leader elections take a
/// fraction of a lease.
pub async fn start_member(spec: &ClusterSpec, pki: &Path) -> Result<ClusterHandle, ClusterError> {
    let tls = crate::mgmt::pki::cluster_tls(pki, spec.me)
        .map_err(|e| ClusterError::Tls(e.to_string()))?;
    let listen = spec
        .members
        .iter()
        .find(|(m, _)| *m == spec.me)
        .map(|(_, a)| *a)
        .ok_or(ClusterError::NoAddress(spec.me))?;
    let peers = spec
        .members
        .iter()
        .filter(|(m, _)| *m != spec.me)
        .copied()
        .collect();
    let mut config = ClusterNodeConfig::new(spec.me, listen, peers, spec.data_dir.clone(), tls);
    config.tick = (spec.ha.heartbeat_interval / 10)
        .clamp(Duration::from_millis(10), Duration::from_millis(100));
    // A proposal forwarded to a leader that just died is lost without an answer; the
    // group FSM retries only when the proposal is given up, so waiting the default 2 s
    // would add 2 s to a takeover. A commit takes milliseconds (p99 ~10 ms).
    config.propose_timeout = spec
        .ha
        .heartbeat_interval
        .clamp(Duration::from_millis(200), Duration::from_secs(2));
    Ok(ClusterNode::start(config).await?)
}

/// Puts a started node under its redundancy groups: from now on it forwards, negotiates
/// and holds reth addresses only for the groups it is primary of.
pub async fn join(
    node: &Node,
    spec: ClusterSpec,
    handle: ClusterHandle,
) -> Result<Addr<redundancy::Redundancy>, ClusterError> {
    // A member restarted after a crash finds the floating addresses of its previous run
    // still on its interfaces (the kernel kept them). Holding them as a standby would
    // answer ARP for the primary's addresses: drop them until a group is ours again.
    for r in &spec.reths {
        if let Err(e) = crate::runtime::net::set_addresses(&r.interface, &r.addresses, false).await
        {
            tracing::warn!(reth = %r.name, interface = %r.interface, error = %e, "clearing stale reth addresses");
        }
    }
    let feed = handle.applied();
    let state = handle
        .read(|s| s.clone())
        .await
        .map_err(|_| ClusterError::Stopped)?;
    let gateways = node
        .gateways
        .snapshot()
        .into_iter()
        .filter_map(|g| spec.gateway_group(&g.name).map(|group| (group, g.addr)))
        .collect();
    let actor = redundancy::Redundancy::new(
        spec,
        handle,
        node.dataplane.clone(),
        gateways,
        (feed, state),
        node.backend.event_feed(),
    )
    .start();
    node.backend.join_cluster(actor.clone());
    Ok(actor)
}
