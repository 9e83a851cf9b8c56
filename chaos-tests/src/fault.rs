//! Putting faults into a cluster: signals, links, packet filters (nftables in the
//! members' namespaces), API calls. Written against [`Target`], so the namespace lab
//! and the compose deployment get the same faults.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use lab::cluster::{CLUSTER_OUTER, DATA_GROUP, NODES, other};

use crate::scenario::{Fault, Member, Scenario, Timing};
use crate::target::{Link, Target};

/// The VPN names in the lab's configurations (cluster side, peer side).
const CLUSTER_VPN: &str = "to-remote";
const PEER_VPN: &str = "to-cluster";
const CLUSTER_GATEWAY: &str = "remote";
/// The peer's gateway facing the cluster (the same in both deployments).
const PEER_GATEWAY: &str = "cluster";
/// The nftables table the faults add and remove.
const TABLE: &str = "chaos";
/// How long a scenario waits for the cluster to settle after a fault.
pub const CONVERGE: Duration = Duration::from_secs(20);

/// A fault that cannot be put into this lab (e.g. a kernel without `sch_netem`): the
/// scenario is reported as not run, never as passed.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// The gateway node or witness a [`Member`] is in this run.
pub fn resolve(member: Member, primary: &'static str) -> &'static str {
    match member {
        Member::Primary => primary,
        Member::Secondary => other(primary),
        Member::Witness => "witness",
    }
}

/// What the fault left to do once the cluster has converged.
#[derive(Debug, Default)]
pub struct Struck {
    /// When the fault landed.
    pub at: Option<Instant>,
    /// Members killed that must be started again.
    pub restart: Vec<&'static str>,
}

/// Prepares the timing, lands the fault, and undoes what has a duration.
pub fn strike(cl: &mut dyn Target, s: &Scenario, primary: &'static str) -> Result<Struck> {
    let peer_filter = prepare(cl, s.timing, primary)?;
    let at = Instant::now();
    let result = land(cl, s.fault, primary);
    if peer_filter {
        // The peer's retransmission now reaches whoever took over.
        nft(&cl.ns("peer"), &format!("delete table inet {TABLE}"))?;
    }
    let mut struck = result?;
    struck.at = Some(at);
    Ok(struck)
}

/// Starts what the fault should land in the middle of; true if the peer's IKE filter
/// is in place.
fn prepare(cl: &mut dyn Target, timing: Timing, primary: &str) -> Result<bool> {
    let ns = cl.ns(primary);
    match timing {
        Timing::Steady => Ok(false),
        Timing::ChildRekeyByCluster => {
            cl.vpnctl().run(
                &ns,
                &[
                    "request",
                    "security",
                    "ipsec",
                    "sa",
                    "rekey",
                    "vpn",
                    CLUSTER_VPN,
                ],
            )?;
            Ok(false)
        }
        Timing::IkeRekeyByCluster => {
            cl.vpnctl().run(
                &ns,
                &[
                    "request",
                    "security",
                    "ike",
                    "rekey",
                    "gateway",
                    CLUSTER_GATEWAY,
                ],
            )?;
            Ok(false)
        }
        Timing::ChildRekeyByPeer => {
            peer_exchange_held_back(
                cl,
                &[
                    "request", "security", "ipsec", "sa", "rekey", "vpn", PEER_VPN,
                ],
            )?;
            Ok(true)
        }
        Timing::IkeRekeyByPeer => {
            peer_exchange_held_back(
                cl,
                &[
                    "request",
                    "security",
                    "ike",
                    "rekey",
                    "gateway",
                    PEER_GATEWAY,
                ],
            )?;
            Ok(true)
        }
        Timing::Negotiation => {
            cl.vpnctl().run(
                &ns,
                &[
                    "clear",
                    "security",
                    "ike",
                    "security-associations",
                    "gateway",
                    CLUSTER_GATEWAY,
                ],
            )?;
            Ok(false)
        }
    }
}

/// Makes the peer start an exchange (`request` on it) whose answers from the cluster
/// it drops until the fault has landed: the cluster answered (and committed its new
/// state), the peer never saw it and retransmits to whoever took over.
fn peer_exchange_held_back(cl: &mut dyn Target, request: &[&str]) -> Result<()> {
    let peer = cl.ns("peer");
    nft(&peer, &format!("add table inet {TABLE}"))?;
    nft(
        &peer,
        &format!("add chain inet {TABLE} ike {{ type filter hook input priority 0 ; }}"),
    )?;
    nft(
        &peer,
        &format!(
            "add rule inet {TABLE} ike ip saddr {CLUSTER_OUTER} udp sport {{ 500, 4500 }} drop"
        ),
    )?;
    cl.vpnctl().run(&peer, request)?;
    // The request is answered (and the answer committed) within milliseconds.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

fn land(cl: &mut dyn Target, fault: Fault, primary: &'static str) -> Result<Struck> {
    let mut struck = Struck::default();
    match fault {
        Fault::Kill9(m) => {
            let m = resolve(m, primary);
            cl.kill9(&[m])?;
            struck.restart.push(m);
        }
        Fault::Terminate(m) => {
            let m = resolve(m, primary);
            cl.terminate(m)?;
            struck.restart.push(m);
        }
        Fault::Freeze(m, d) => {
            let m = resolve(m, primary);
            cl.freeze(m, true)?;
            std::thread::sleep(d);
            cl.freeze(m, false)?;
        }
        Fault::LinkCut(m, d) => flap(cl, resolve(m, primary), Link::External, d)?,
        Fault::Isolate(m, d) => flap(cl, resolve(m, primary), Link::Control, d)?,
        Fault::Loss { percent, duration } => {
            let peer = cl.ns("peer");
            nft(&peer, &format!("add table inet {TABLE}"))?;
            for (chain, hook, dir) in [("rx", "input", "iifname"), ("tx", "output", "oifname")] {
                nft(
                    &peer,
                    &format!(
                        "add chain inet {TABLE} {chain} {{ type filter hook {hook} priority 0 ; }}"
                    ),
                )?;
                nft(
                    &peer,
                    &format!(
                        "add rule inet {TABLE} {chain} {dir} eth0 numgen random mod 100 < {percent} drop"
                    ),
                )?;
            }
            std::thread::sleep(duration);
            nft(&peer, &format!("delete table inet {TABLE}"))?;
        }
        Fault::Latency { delay, duration } => {
            let peer = cl.ns("peer");
            let ms = format!("{}ms", delay.as_millis());
            let add = lab::run(
                "ip",
                &[
                    "netns", "exec", &peer, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                    "delay", &ms,
                ],
            );
            if let Err(e) = add {
                let why = format!("{e:#}");
                if why.contains("Specified qdisc kind is unknown") {
                    return Err(Unsupported(
                        "this kernel has no sch_netem (tc: qdisc kind netem unknown)".into(),
                    )
                    .into());
                }
                return Err(e);
            }
            std::thread::sleep(duration);
            lab::run(
                "ip",
                &[
                    "netns", "exec", &peer, "tc", "qdisc", "del", "dev", "eth0", "root",
                ],
            )?;
        }
        Fault::SpuFail => {
            let map = cl.tunnel_map(primary)?;
            let &[(_, spu)] = map.as_slice() else {
                bail!("{primary} should anchor exactly one tunnel: {map:?}");
            };
            let ns = cl.ns(primary);
            cl.vpnctl().run(
                &ns,
                &["request", "chassis", "spu", "fail", &spu.to_string()],
            )?;
        }
        Fault::PartitionNodes(d) => {
            let sides = [(NODES[0], "10.255.0.2"), (NODES[1], "10.255.0.1")];
            for (node, far) in sides {
                let ns = cl.ns(node);
                nft(&ns, &format!("add table inet {TABLE}"))?;
                for (chain, hook, dir) in [("rx", "input", "saddr"), ("tx", "output", "daddr")] {
                    nft(
                        &ns,
                        &format!(
                            "add chain inet {TABLE} {chain} {{ type filter hook {hook} priority 0 ; }}"
                        ),
                    )?;
                    nft(
                        &ns,
                        &format!("add rule inet {TABLE} {chain} ip {dir} {far} drop"),
                    )?;
                }
            }
            std::thread::sleep(d);
            for (node, _) in sides {
                nft(&cl.ns(node), &format!("delete table inet {TABLE}"))?;
            }
        }
        Fault::ManualFailover => {
            let to = other(primary);
            let ns = cl.ns(primary);
            let index = if to == NODES[0] { "0" } else { "1" };
            let group = DATA_GROUP.to_string();
            cl.vpnctl().run(
                &ns,
                &[
                    "request",
                    "chassis",
                    "cluster",
                    "failover",
                    "redundancy-group",
                    &group,
                    "node",
                    index,
                ],
            )?;
            cl.wait_primary(DATA_GROUP, Some(to), CONVERGE)?;
            cl.vpnctl().run(
                &cl.ns(to),
                &[
                    "request",
                    "chassis",
                    "cluster",
                    "failover",
                    "reset",
                    "redundancy-group",
                    &group,
                ],
            )?;
        }
        Fault::WholeRestart => {
            let all = ["node0", "node1", "witness"];
            cl.kill9(&all)?;
            cl.restart(&all)?;
        }
        Fault::KillAndReturn => {
            cl.kill9(&[primary])?;
            cl.wait_primary(DATA_GROUP, Some(other(primary)), CONVERGE)?;
            cl.restart(&[primary])?;
        }
    }
    Ok(struck)
}

/// A member's link down for `d`, then up again.
fn flap(cl: &mut dyn Target, member: &str, link: Link, d: Duration) -> Result<()> {
    cl.link(member, link, false)
        .with_context(|| format!("cutting {member}'s {link:?} link"))?;
    std::thread::sleep(d);
    cl.link(member, link, true)
        .with_context(|| format!("restoring {member}'s {link:?} link"))
}

/// One nft command in namespace `ns`.
fn nft(ns: &str, command: &str) -> Result<()> {
    lab::run("ip", &["netns", "exec", ns, "nft", command]).map(|_| ())
}
