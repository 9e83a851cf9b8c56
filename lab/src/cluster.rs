//! The chassis cluster lab of `tests/cluster_netns.rs`: two gateway nodes and a
//! witness (real `vpnd` processes sharing one configuration), a standalone remote peer
//! (`vpnd`, or strongSwan's charon), and LAN hosts on both sides, in network namespaces:
//!
//! ```text
//!                                         ┌ eth0 node0 eth1 ┐
//!  lan2 ── eth1 peer eth0 ────── ext ─────┤                 ├── lan ── lan1
//!  10.2.0.10  10.2.0.1  198.51.100.2      └ eth0 node1 eth1 ┘          10.1.0.10
//!                                                                      (via 10.1.0.1)
//!  ctl: node0 ctl0 10.255.0.1, node1 ctl0 10.255.0.2, witness ctl0 10.255.0.3 (port 7400)
//! ```
//!
//! `ext`, `lan` and `ctl` are Linux bridges in a switch namespace (`sw`). reth0
//! (198.51.100.1/24 on the primary's `eth0`) and reth1 (10.1.0.1/24 on its `eth1`) float
//! with redundancy group 1; the nodes' `eth0`/`eth1` carry no other address. Killing or
//! stopping `vpnd` leaves its namespace and kernel state in place, as a crashed daemon
//! does on a real host: whatever the runtime needs to move the neighbours (gratuitous
//! ARP, a virtual MAC) is part of what the tests check.
//!
//! What a scenario can measure:
//! - a sequence-numbered UDP probe between the LAN hosts, 1 datagram/ms each way
//!   (loss, duplicates, reordering and the longest gap per direction);
//! - a capture on the peer's `eth0`: no (ESP SPI, sequence number) pair may arrive
//!   twice, which would be an AES-GCM nonce reused under one key; and, told apart by
//!   their MACs, the new primary carries on with the old one's SPIs, above its
//!   sequence numbers;
//! - the peer's IKE SA SPIs (its management API, or `swanctl --list-sas`) and its log:
//!   a takeover must resume the IKE SA, never negotiate a new one.
//!
//! Used by the node's `tests/cluster_netns.rs`, by `vpnd demo` and by the chaos harness.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate as common;
use crate::strongswan::Charon;
use crate::{
    Binaries, Capture, EspPacket, ExclusiveLock, FlowStats, Lab, UdpProbe, Vpnctl, WorkDir,
};

/// The one configuration of node0, node1 and the witness.
pub const CLUSTER_CONFIG: &str = include_str!("../data/cluster-lab.toml");
/// The remote peer's configuration, as a `vpnd`.
pub const PEER_CONFIG: &str = include_str!("../data/cluster-lab-peer.toml");
/// Appended to both configurations with [`LabOptions::second_group`].
pub const CLUSTER_GROUP2_CONFIG: &str = include_str!("../data/cluster-lab-group2.toml");
pub const PEER_GROUP2_CONFIG: &str = include_str!("../data/cluster-lab-peer-group2.toml");
/// The second group's VPN: the cluster's and the peer's `st0.1` addresses.
pub const GROUP2_LOCAL: &str = "10.255.2.1";
pub const GROUP2_REMOTE: &str = "10.255.2.2";
/// The remote peer's configuration, as strongSwan (`swanctl.conf`).
pub const STRONGSWAN_PEER_CONFIG: &str = include_str!("../data/cluster-lab-strongswan.conf");

pub const PEER_OUTER: &str = "198.51.100.2";
/// reth0's address: the cluster's end of the tunnel.
pub const CLUSTER_OUTER: &str = "198.51.100.1";
pub const LAN1_HOST: &str = common::LAN_A_HOST;
pub const LAN1_GW: &str = common::LAN_A_GW;
pub const LAN2_HOST: &str = common::LAN_B_HOST;
pub const LAN2_GW: &str = common::LAN_B_GW;
/// The gateway nodes, node0 first.
pub const NODES: [&str; 2] = ["node0", "node1"];
/// Members and their control link addresses (the configuration's control-address).
pub const CONTROL: [(&str, &str); 3] = [
    ("node0", "10.255.0.1/24"),
    ("node1", "10.255.0.2/24"),
    ("witness", "10.255.0.3/24"),
];
/// The redundancy group that carries reth0, reth1 and the VPN.
pub const DATA_GROUP: u8 = 1;

/// How long a fresh cluster may take to elect a primary and bring the tunnel up.
pub const ESTABLISH: Duration = Duration::from_secs(30);
/// Upper bound on a takeover's traffic gap with the lab's lease (600 ms); a gap of this
/// size means the tunnel came back some other way (renegotiation, DPD).
pub const TAKEOVER: Duration = Duration::from_secs(10);
/// Probe rate: one datagram per millisecond each way.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(1);
pub const PROBE_PORT: u16 = 7001;
/// Datagrams each way that must arrive, sent after an event, for traffic to count as
/// flowing again (half a second of probe traffic).
pub const FLOWING: usize = 500;

/// Fails (never skips) without root, then takes the lock that runs root tests one at a
/// time.
pub fn root_test() -> ExclusiveLock {
    assert!(common::is_root(), "{}", common::ROOT_HINT);
    common::netns_test_lock().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The remote end of the tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PeerKind {
    /// A standalone `vpnd` (`cluster-lab-peer.toml`).
    #[default]
    Vpnd,
    /// strongSwan's charon with kernel-libipsec (`cluster-lab-strongswan.conf`).
    Strongswan,
}

/// What a scenario changes in the lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabOptions {
    pub peer: PeerKind,
    /// `vpnd --workers N` for the cluster members.
    pub workers: Option<usize>,
    /// Heartbeat interval and threshold instead of the configuration's 200 ms x 3.
    pub heartbeat: Option<(Duration, u32)>,
    /// `preempt = { delay }` for redundancy group 1 (the configuration has none): node0,
    /// the higher priority, takes the group back when it returns.
    pub preempt: Option<Duration>,
    /// Active/active: redundancy group 2, primary on node1, with reth2 and a second VPN
    /// (`st0.1`, [`GROUP2_LOCAL`] to [`GROUP2_REMOTE`]); a vpnd peer only.
    pub second_group: bool,
}

/// `show chassis cluster status --json`, the parts the tests read.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: u16,
    pub local_member: String,
    pub redundancy_groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupStatus {
    pub redundancy_group: u8,
    pub failover_count: u64,
    pub manual_failover: bool,
    pub nodes: Vec<GroupNodeStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupNodeStatus {
    pub node: String,
    pub status: String,
}

impl ClusterStatus {
    pub fn group(&self, id: u8) -> Result<&GroupStatus> {
        self.redundancy_groups
            .iter()
            .find(|g| g.redundancy_group == id)
            .with_context(|| format!("redundancy group {id} missing from {self:?}"))
    }

    /// The node this member sees as primary of group `id` (an error if it sees two).
    pub fn primary(&self, id: u8) -> Result<Option<String>> {
        let primaries: Vec<&str> = self
            .group(id)?
            .nodes
            .iter()
            .filter(|n| n.status == "primary")
            .map(|n| n.node.as_str())
            .collect();
        match primaries.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).to_owned())),
            many => bail!(
                "{} sees {} primaries of group {id}: {many:?}",
                self.local_member,
                many.len()
            ),
        }
    }

    /// `node`'s state in group `id` as this member sees it.
    pub fn state_of(&self, id: u8, node: &str) -> Result<String> {
        self.group(id)?
            .nodes
            .iter()
            .find(|n| n.node == node)
            .map(|n| n.status.clone())
            .with_context(|| format!("{node} missing from group {id}: {self:?}"))
    }
}

/// The other gateway node.
pub fn other(node: &str) -> &'static str {
    if node == NODES[0] { NODES[1] } else { NODES[0] }
}

/// Now, as a capture timestamp (tcpdump stamps with the wall clock).
pub fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// What the scenarios read from a running cluster, whichever way it runs (this
/// crate's namespace lab, or a compose deployment): everything goes through
/// `vpnctl --json` in the member's network namespace.
pub trait Cluster {
    /// The network namespace of `member` (node0, node1, witness, peer, lan1, lan2).
    fn ns(&self, member: &str) -> String;

    /// `vpnctl` as operator, run inside a member's namespace.
    fn vpnctl(&self) -> &Vpnctl;

    /// A gateway node that is running and not frozen: one that can answer.
    fn answers(&mut self, node: &str) -> bool;

    /// node0's and node1's MACs on the external network, which tell their ESP apart.
    fn node_macs(&self) -> [[u8; 6]; 2];

    /// Which node sent `p`, by source MAC (`None`: neither node's external MAC, e.g. a
    /// virtual MAC shared by the reth).
    fn sender(&self, p: &EspPacket) -> Option<&'static str> {
        NODES
            .iter()
            .zip(self.node_macs())
            .find(|(_, mac)| *mac == p.src_mac)
            .map(|(n, _)| *n)
    }

    /// IKE_SA_INIT exchanges the peer took part in so far (as responder or initiator).
    fn peer_ike_inits(&mut self) -> usize;

    /// The established IKE SAs of `member`, a `vpnd`: (initiator SPI, responder SPI), hex.
    fn ike_spis(&self, member: &str) -> Result<Vec<(String, String)>> {
        let v = self.vpnctl().json(
            &self.ns(member),
            &["show", "security", "ike", "security-associations"],
        )?;
        let sas = v.as_array().with_context(|| format!("not a list: {v}"))?;
        Ok(sas
            .iter()
            .filter(|sa| sa["state"] == "established")
            .map(|sa| {
                (
                    sa["spi_i"].as_str().unwrap_or_default().to_owned(),
                    sa["spi_r"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// The peer's established IKE SAs.
    fn peer_ike_spis(&self) -> Result<Vec<(String, String)>> {
        self.ike_spis("peer")
    }

    /// `show chassis cluster status` as `member` sees it.
    fn status(&self, member: &str) -> Result<ClusterStatus> {
        let text = self
            .vpnctl()
            .run(&self.ns(member), &["show", "chassis", "cluster", "status"])?;
        serde_json::from_str(&text)
            .with_context(|| format!("show chassis cluster status --json on {member}: {text}"))
    }

    /// `show chassis cluster statistics` as `member` sees it.
    fn statistics(&self, member: &str) -> Result<serde_json::Value> {
        self.vpnctl().json(
            &self.ns(member),
            &["show", "chassis", "cluster", "statistics"],
        )
    }

    /// The primary of group `id` that every answering node agrees on; an error if they
    /// disagree (two primaries would be split brain) or none names one.
    fn primary(&mut self, id: u8) -> Result<String> {
        let mut seen: Vec<(String, Option<String>)> = Vec::new();
        for node in NODES {
            if self.answers(node) {
                seen.push((node.into(), self.status(node)?.primary(id)?));
            }
        }
        match seen.as_slice() {
            [] => bail!("no gateway node is running"),
            [(_, Some(p)), rest @ ..] if rest.iter().all(|(_, q)| q.as_ref() == Some(p)) => {
                Ok(p.clone())
            }
            _ => bail!("the nodes do not agree on a primary of group {id}: {seen:?}"),
        }
    }

    /// Waits until the nodes agree that `want` (or anyone, with `None`) is primary of
    /// group `id`; returns it.
    fn wait_primary(&mut self, id: u8, want: Option<&str>, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.primary(id) {
                Ok(p) if want.is_none_or(|w| w == p) => return Ok(p),
                Ok(p) => format!("{p} is primary"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {} to be primary of group {id}; last answer: {last}",
                    want.unwrap_or("a node")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `node` reports itself in one of `states` in group `id`.
    fn wait_state(
        &mut self,
        node: &str,
        id: u8,
        states: &[&str],
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.status(node).and_then(|s| s.state_of(id, node));
            match state {
                Ok(s) if states.contains(&s.as_str()) => return Ok(s),
                last if Instant::now() >= deadline => bail!(
                    "timed out after {timeout:?} waiting for {node} to report itself {states:?} \
                     in group {id}; last answer: {last:?}"
                ),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// `node`'s child SA pairs: (inbound SPI, outbound SPI, anchor SPU), SPIs in hex.
    fn ipsec_sas(&self, node: &str) -> Result<Vec<(String, String, u64)>> {
        let v = self.vpnctl().json(
            &self.ns(node),
            &["show", "security", "ipsec", "security-associations"],
        )?;
        let sas = v.as_array().with_context(|| format!("not a list: {v}"))?;
        sas.iter()
            .map(|sa| {
                Ok((
                    sa["inbound_spi"]
                        .as_str()
                        .context("inbound_spi")?
                        .to_owned(),
                    sa["outbound_spi"]
                        .as_str()
                        .context("outbound_spi")?
                        .to_owned(),
                    sa["anchor_spu"].as_u64().context("anchor_spu")?,
                ))
            })
            .collect()
    }

    /// `node`'s tunnel map: (tunnel, SPU) pairs.
    fn tunnel_map(&self, node: &str) -> Result<Vec<(String, u64)>> {
        let v = self
            .vpnctl()
            .json(&self.ns(node), &["show", "security", "ike", "tunnel-map"])?;
        let entries = v.as_array().with_context(|| format!("not a list: {v}"))?;
        entries
            .iter()
            .map(|e| {
                Ok((
                    e["tunnel"].as_str().context("tunnel")?.to_owned(),
                    e["spu"].as_u64().context("spu")?,
                ))
            })
            .collect()
    }

    /// Packets in and out of `st0.0` on `node` so far.
    fn st0_packets(&self, node: &str) -> Result<u64> {
        let (rx, _, tx, _) = common::link_counters(&self.ns(node), "st0.0")?;
        Ok(rx + tx)
    }
}

/// What forming a cluster lab took ([`ClusterLab::form`]).
#[derive(Debug, Clone)]
pub struct Formation {
    /// The primary of group 1.
    pub primary: String,
    /// From starting the daemons until the nodes agreed on it.
    pub primary_after: Duration,
    /// From starting the daemons until lan1 reached lan2 through the tunnel.
    pub tunnel_after: Duration,
}

/// The lab of one scenario. Fields drop in order: the capture, then charon, then the
/// lab (daemons, then namespaces, then the work directory).
#[derive(Debug)]
pub struct ClusterLab {
    capture: Option<Capture>,
    charon: Option<Charon>,
    pub lab: Lab,
    pub vpnctl: Vpnctl,
    pki: PathBuf,
    config: PathBuf,
    peer: PeerKind,
    /// Redundancy group 2 and its VPN are configured ([`LabOptions::second_group`]).
    second_group: bool,
    /// The configuration's lease (heartbeat interval x threshold).
    pub lease: Duration,
    /// A member stopped with SIGSTOP: not asked anything until continued.
    pub stopped: Option<String>,
    /// Each node's `eth0` MAC, to tell the nodes' ESP apart on the wire when the
    /// runtime does not give reth0 a shared virtual MAC.
    eth0_mac: [[u8; 6]; 2],
    /// Member restarts so far (their earlier logs are kept as `MEMBER.N.log`).
    restarts: usize,
    /// Anomalies a scenario noticed on the way (e.g. addresses a standby should not
    /// hold): every failure message repeats them, since they may explain it.
    pub notes: Vec<String>,
}

impl ClusterLab {
    /// Builds the topology, writes the PKI and configurations, starts the capture on
    /// the peer's `eth0`, starts peer, witness, node0 and node1, and waits until group 1
    /// has a primary and lan1 reaches lan2 through the tunnel. Panics with the step that
    /// failed and the daemons' logs.
    pub fn formed(tag: &str, bins: &Binaries, opts: LabOptions) -> (ClusterLab, String) {
        let mut cl = ClusterLab::build(tag, bins, opts)
            .unwrap_or_else(|e| panic!("building the lab: {e:#}"));
        // Panics while `cl` lives, so its work directory is kept for a post-mortem.
        let formation = cl.form().unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!(
            "{} primary of group 1 after {:?}",
            formation.primary, formation.primary_after
        );
        eprintln!("tunnel up after {:?}", formation.tunnel_after);
        (cl, formation.primary)
    }

    /// The second half of [`ClusterLab::formed`], returning an error instead of
    /// panicking (for the demo): starts peer, witness, node0 and node1 and waits for a
    /// primary of group 1 and for the tunnel. The error names the step that failed and
    /// carries the daemons' logs.
    pub fn form(&mut self) -> Result<Formation> {
        let t0 = Instant::now();
        let r = self.start();
        self.step("starting the cluster members and the peer", r)?;
        let r = self.wait_primary(DATA_GROUP, None, ESTABLISH);
        let primary = self.step("electing a primary of redundancy group 1", r)?;
        let primary_after = t0.elapsed();
        let r = common::wait_ping(&self.ns("lan1"), LAN2_HOST, ESTABLISH);
        self.step("the tunnel (ping lan1 -> lan2 through the cluster)", r)?;
        Ok(Formation {
            primary,
            primary_after,
            tunnel_after: t0.elapsed(),
        })
    }

    fn build(tag: &str, bins: &Binaries, opts: LabOptions) -> Result<ClusterLab> {
        let (prefix, dir) = common::lab_names("cl", tag)?;
        ClusterLab::build_in(&prefix, dir, bins, opts)
    }

    /// The first half of [`ClusterLab::formed`] with namespaces `PREFIX-...` and files
    /// in `dir`: the topology, PKI, configurations and the capture, no daemon yet (so
    /// the caller can still change `lab`, e.g. `own_group`). `bins` writes the PKI and
    /// answers the status queries.
    pub fn build_in(
        prefix: &str,
        dir: WorkDir,
        bins: &Binaries,
        opts: LabOptions,
    ) -> Result<ClusterLab> {
        let mut lab = Lab::new(&bins.vpnd, prefix, dir);
        if let Some(n) = opts.workers {
            lab.daemon_args = vec!["--workers".into(), n.to_string()];
        }
        lab.add_ns("sw")?;
        for bridge in ["ext", "lan", "ctl"] {
            lab.add_bridge("sw", bridge)?;
        }
        for node in NODES {
            lab.add_router(node)?;
            lab.plug((node, "eth0", None), ("sw", "ext"))?;
            lab.plug((node, "eth1", None), ("sw", "lan"))?;
        }
        lab.add_ns("witness")?;
        for (member, addr) in CONTROL {
            lab.plug((member, "ctl0", Some(addr)), ("sw", "ctl"))?;
        }
        lab.add_router("peer")?;
        lab.plug(
            ("peer", "eth0", Some(&format!("{PEER_OUTER}/24"))),
            ("sw", "ext"),
        )?;
        lab.add_host("lan2", LAN2_HOST, "peer", "eth1", LAN2_GW)?;
        lab.add_ns("lan1")?;
        lab.plug(
            ("lan1", "eth0", Some(&format!("{LAN1_HOST}/24"))),
            ("sw", "lan"),
        )?;
        lab.ns("lan1")
            .ip(&["route", "add", "default", "via", LAN1_GW])?;
        // Resolve the control link's neighbours now (see `common::site_to_site`).
        for peer in ["10.255.0.2", "10.255.0.3"] {
            lab.ns("node0")
                .exec("ping", &["-c", "1", "-w", "5", peer])
                .context("control link check")?;
        }
        lab.ns("lan2")
            .exec("ping", &["-c", "1", "-w", "5", LAN2_GW])
            .context("peer LAN link check")?;

        let pki = lab.dir.path.join("pki");
        bins.run_vpnctl(&["pki", "init", &pki.display().to_string()])?;
        let config = lab.dir.path.join("cluster.toml");
        if opts.second_group && opts.peer != PeerKind::Vpnd {
            bail!("the second redundancy group's VPN is configured for a vpnd peer only");
        }
        let mut text = cluster_config(opts.heartbeat)?;
        if opts.second_group {
            text.push_str(CLUSTER_GROUP2_CONFIG);
        }
        if let Some(delay) = opts.preempt {
            text = with_preempt(&text, delay)?;
        }
        std::fs::write(&config, text)?;
        let lease = lease_of(&config)?;
        let eth0_mac = [
            common::link_mac(&lab.ns_name("node0"), "eth0")?,
            common::link_mac(&lab.ns_name("node1"), "eth0")?,
        ];
        let capture = Capture::start(
            &lab.ns_name("peer"),
            "eth0",
            lab.dir.path.join("peer-eth0.pcap"),
        )?;
        Ok(ClusterLab {
            capture: Some(capture),
            charon: None,
            lab,
            vpnctl: bins.vpnctl(&pki),
            pki,
            config,
            peer: opts.peer,
            second_group: opts.second_group,
            lease,
            stopped: None,
            eth0_mac,
            restarts: 0,
            notes: Vec::new(),
        })
    }

    /// The peer first (its sockets must be up for the first IKE_SA_INIT), then the
    /// witness and both nodes, each until it logs that it runs.
    fn start(&mut self) -> Result<()> {
        match self.peer {
            PeerKind::Vpnd => {
                let peer_config = self.lab.dir.path.join("peer.toml");
                let mut text = PEER_CONFIG.to_owned();
                if self.second_group {
                    text.push_str(PEER_GROUP2_CONFIG);
                }
                std::fs::write(&peer_config, text)?;
                let pki = self.pki.display().to_string();
                self.lab
                    .start_vpnd_file("peer", &peer_config, &["--pki".into(), pki])?;
                self.lab
                    .daemon("peer")
                    .wait_log(&["vpnd running"], 1, ESTABLISH)?;
            }
            PeerKind::Strongswan => {
                let dir = self.lab.dir.path.join("charon");
                self.charon = Some(Charon::start(
                    &self.ns("peer"),
                    dir,
                    STRONGSWAN_PEER_CONFIG,
                )?);
            }
        }
        for member in ["witness", "node0", "node1"] {
            self.spawn_member(member)?;
        }
        for member in ["witness", "node0", "node1"] {
            self.wait_member_running(member)?;
        }
        Ok(())
    }

    fn spawn_member(&mut self, member: &str) -> Result<()> {
        let args = [
            "--node".into(),
            member.into(),
            "--pki".into(),
            self.pki.display().to_string(),
        ];
        let config = self.config.clone();
        self.lab.start_vpnd_file(member, &config, &args)?;
        Ok(())
    }

    /// Waits until `member` logs that it runs (the witness runs only its replica, no
    /// node and no management API, and says so).
    fn wait_member_running(&mut self, member: &str) -> Result<()> {
        let ready = if member == "witness" {
            "witness running"
        } else {
            "vpnd running"
        };
        self.lab.daemon(member).wait_log(&[ready], 1, ESTABLISH)?;
        Ok(())
    }

    /// kill -9 of `members`, all signalled before any is waited for; returns once they
    /// are gone.
    pub fn kill9(&mut self, members: &[&str]) -> Result<()> {
        for member in members {
            self.lab
                .daemon(member)
                .signal(libc::SIGKILL)
                .with_context(|| format!("kill -9 {member}"))?;
        }
        for member in members {
            self.lab
                .daemon(member)
                .wait_exit(Duration::from_secs(5))
                .with_context(|| format!("{member} to die"))?;
        }
        Ok(())
    }

    /// Starts `members` again (after [`ClusterLab::kill9`]) with the same configuration
    /// and data directories, keeping each earlier run's log as `MEMBER.N.log`, and
    /// waits until they run. All are started before any is waited for, as after a
    /// power cut.
    pub fn restart(&mut self, members: &[&str]) -> Result<()> {
        for member in members {
            self.restarts += 1;
            let n = self.restarts;
            let d = self.lab.daemon(member);
            if d.exited().is_none() {
                bail!("{member} is still running: kill it before restarting it");
            }
            let kept = d.log.with_file_name(format!("{member}.{n}.log"));
            std::fs::rename(&d.log, &kept)
                .with_context(|| format!("keeping {}", d.log.display()))?;
            d.log = kept;
            self.spawn_member(member)?;
        }
        for member in members {
            self.wait_member_running(member)?;
        }
        Ok(())
    }

    /// Every daemon's log tail, and charon's.
    pub fn logs(&self) -> String {
        let mut all = self.lab.logs();
        if let Some(c) = &self.charon {
            all.push_str(&format!(
                "---- charon ({}) ----\n{}\n",
                c.log_path().display(),
                c.tail(40)
            ));
        }
        all
    }

    /// The value of `r`, or a panic naming `step`, with every daemon's log.
    pub fn check<T>(&self, step: &str, r: Result<T>) -> T {
        self.step(step, r).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `r`, its error naming `step`, with the notes and every daemon's log.
    pub fn step<T>(&self, step: &str, r: Result<T>) -> Result<T> {
        r.map_err(|e| {
            let notes = if self.notes.is_empty() {
                String::new()
            } else {
                format!("\nnoticed before:\n  {}", self.notes.join("\n  "))
            };
            anyhow::anyhow!("{step}: {e:#}{notes}\n{}", self.logs())
        })
    }

    /// Lines of the peer's log saying it declared the cluster dead (DPD) or closed the
    /// IKE SA: what explains a renegotiation.
    pub fn peer_gave_up(&mut self) -> Vec<String> {
        if let Some(charon) = &self.charon {
            let log = charon.log();
            return log
                .lines()
                .filter(|l| {
                    l.contains("giving up after")
                        || l.contains("deleting IKE_SA")
                        || l.contains("closing CHILD_SA")
                })
                .map(str::to_owned)
                .collect();
        }
        let peer = self.lab.daemon("peer");
        let mut lines = peer.log_lines(&["peer is dead"]);
        lines.extend(peer.log_lines(&["IKE SA closed"]));
        lines.extend(peer.log_lines(&["IKE SA failed"]));
        lines
    }

    /// Which of the reth addresses `node`'s `eth0` and `eth1` hold.
    pub fn reth_addresses_on(&self, node: &str) -> Result<Vec<String>> {
        let mut held = Vec::new();
        for (dev, addr) in [("eth0", CLUSTER_OUTER), ("eth1", LAN1_GW)] {
            if common::link_addresses(&self.ns(node), dev)?
                .iter()
                .any(|a| a == addr)
            {
                held.push(format!("{addr} on {dev}"));
            }
        }
        Ok(held)
    }

    /// The probe, once it flows both ways (before `event`, which names it in a
    /// failure); panics like [`ClusterLab::check`].
    pub fn flowing_probe(&self, event: &str) -> UdpProbe {
        let r = self.start_probe();
        let probe = self.check("starting the probe", r);
        let r = probe.wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10));
        self.check(&format!("probe traffic before the {event}"), r);
        probe
    }

    pub fn start_probe(&self) -> Result<UdpProbe> {
        let at =
            |host: &str| -> Result<SocketAddr> { Ok(SocketAddr::new(host.parse()?, PROBE_PORT)) };
        UdpProbe::start(
            (&self.ns("lan1"), at(LAN1_HOST)?),
            (&self.ns("lan2"), at(LAN2_HOST)?),
            PROBE_INTERVAL,
        )
    }

    /// Stops the capture: the ESP packets that arrived at the peer.
    pub fn esp_to_peer(&mut self) -> Result<Vec<EspPacket>> {
        let capture = self.capture.take().context("capture already finished")?;
        let frames = capture.finish_timed()?;
        let peer: Ipv4Addr = PEER_OUTER.parse()?;
        Ok(common::esp_packets(&frames)
            .into_iter()
            .filter(|p| p.dst == peer)
            .collect())
    }

    /// Prints, per sender, how many ESP packets reached the peer and when (relative to
    /// `event`, a wall-clock time), and returns the last time each node sent.
    pub fn esp_timeline(&self, packets: &[EspPacket], event: Duration) -> [Option<Duration>; 2] {
        let mut last = [None, None];
        let rel = |t: Duration| t.as_secs_f64() - event.as_secs_f64();
        for (i, node) in NODES.iter().enumerate() {
            let mine: Vec<&EspPacket> = packets
                .iter()
                .filter(|p| self.sender(p) == Some(*node))
                .collect();
            if let (Some(first), Some(l)) = (mine.first(), mine.last()) {
                eprintln!(
                    "ESP to the peer from {node} ({}): {} packets, {:+.3} s .. {:+.3} s around the event",
                    common::format_mac(&self.eth0_mac[i]),
                    mine.len(),
                    rel(first.time),
                    rel(l.time)
                );
                last[i] = Some(l.time);
            }
        }
        let shared = packets.iter().filter(|p| self.sender(p).is_none()).count();
        if shared > 0 {
            eprintln!("ESP to the peer from another MAC (a shared reth MAC?): {shared} packets");
        }
        last
    }

    /// The survivor `new` carried on the child SAs `old` used: the same SPIs, with
    /// sequence numbers above every one `old` sent, since a node taking over starts
    /// above the committed reservation. Needs the nodes' own MACs on the wire to tell
    /// their packets apart; with a shared reth MAC only the no-repeat check applies.
    pub fn assert_resumed(&self, packets: &[EspPacket], old: &str, new: &str) {
        let mut old_max: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut new_min: std::collections::BTreeMap<u32, u32> = Default::default();
        for p in packets {
            match self.sender(p) {
                Some(n) if n == old => {
                    let m = old_max.entry(p.spi).or_insert(p.seq);
                    *m = (*m).max(p.seq);
                }
                Some(n) if n == new => {
                    let m = new_min.entry(p.spi).or_insert(p.seq);
                    *m = (*m).min(p.seq);
                }
                _ => {}
            }
        }
        if old_max.is_empty() || new_min.is_empty() {
            eprintln!("the nodes' ESP cannot be told apart by MAC: SA continuity not checked");
            return;
        }
        for (spi, min) in &new_min {
            let Some(max) = old_max.get(spi) else {
                panic!(
                    "{new} sent ESP with SPI {spi:08x}, which {old} never used (it used {:08x?}): \
                     a new child SA instead of the replicated one\n{}",
                    old_max.keys().collect::<Vec<_>>(),
                    self.logs()
                );
            };
            eprintln!(
                "SPI {spi:08x}: {old} sent up to sequence number {max}, {new} resumed at {min} \
                 ({} numbers skipped)",
                min.saturating_sub(*max + 1)
            );
            assert!(
                min > max,
                "SPI {spi:08x}: {new} resumed at sequence number {min}, not above {old}'s {max}"
            );
        }
    }

    /// The peer's IKE SAs and IKE_SA_INIT count before an event; exactly one SA per
    /// VPN with the cluster.
    pub fn peer_before(&mut self) -> (Vec<(String, String)>, usize) {
        let r = self.peer_ike_spis();
        let spis = self.check("the peer's IKE SAs before the event", r);
        let vpns = if self.second_group { 2 } else { 1 };
        assert_eq!(
            spis.len(),
            vpns,
            "the peer should hold exactly one established IKE SA per VPN with the cluster: \
             {spis:?}\n{}",
            self.logs()
        );
        (spis, self.peer_ike_inits())
    }

    /// The peer kept its IKE SA: same SPIs, no new IKE_SA_INIT in its log.
    pub fn assert_no_renegotiation(
        &mut self,
        what: &str,
        spis_before: &[(String, String)],
        inits_before: usize,
    ) {
        let r = self.peer_ike_spis();
        let spis_after = self.check("the peer's IKE SAs after the event", r);
        let inits_after = self.peer_ike_inits();
        let gave_up = self.peer_gave_up();
        let why = if gave_up.is_empty() {
            String::from("the peer's log shows no DPD timeout or close")
        } else {
            format!(
                "the peer declared the cluster dead or closed the SA:\n  {}",
                gave_up.join("\n  ")
            )
        };
        assert_eq!(
            spis_after,
            spis_before,
            "{what}: the peer's IKE SAs changed (renegotiated instead of resumed); {why}\n{}",
            self.logs()
        );
        assert_eq!(
            inits_after,
            inits_before,
            "{what}: the peer saw a new IKE_SA_INIT ({inits_before} before, {inits_after} \
             after); {why}\n{}",
            self.logs()
        );
    }
}

impl Cluster for ClusterLab {
    fn vpnctl(&self) -> &Vpnctl {
        &self.vpnctl
    }

    /// Full namespace name of `short`.
    fn ns(&self, short: &str) -> String {
        self.lab.ns_name(short)
    }

    /// A gateway node that is running and not stopped: one that can answer.
    fn answers(&mut self, node: &str) -> bool {
        self.stopped.as_deref() != Some(node) && self.lab.daemon(node).exited().is_none()
    }

    fn node_macs(&self) -> [[u8; 6]; 2] {
        self.eth0_mac
    }

    /// IKE_SA_INIT exchanges the peer took part in so far (as responder or initiator).
    fn peer_ike_inits(&mut self) -> usize {
        if let Some(charon) = &self.charon {
            // "parsed IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) ... ]" (responder)
            // and "generating IKE_SA_INIT request 0 [...]" (initiator).
            return charon.log_lines("IKE_SA_INIT request").len();
        }
        let peer = self.lab.daemon("peer");
        peer.log_lines(&["responding to IKE_SA_INIT"]).len()
            + peer.log_lines(&["initiating IKE SA"]).len()
    }

    /// The peer's established IKE SAs: (initiator SPI, responder SPI), hex.
    fn peer_ike_spis(&self) -> Result<Vec<(String, String)>> {
        if let Some(charon) = &self.charon {
            return Ok(charon
                .ike_sas()?
                .into_iter()
                .filter(|sa| sa.state == "ESTABLISHED")
                .map(|sa| (sa.spi_i, sa.spi_r))
                .collect());
        }
        self.ike_spis("peer")
    }
}

/// The lab's cluster configuration, with another heartbeat interval and threshold.
pub fn cluster_config(heartbeat: Option<(Duration, u32)>) -> Result<String> {
    let Some((interval, threshold)) = heartbeat else {
        return Ok(CLUSTER_CONFIG.to_owned());
    };
    let text = common::edit(
        CLUSTER_CONFIG,
        "heartbeat-interval = 200 ",
        &format!("heartbeat-interval = {} ", interval.as_millis()),
    )?;
    common::edit(
        &text,
        "heartbeat-threshold = 3\n",
        &format!("heartbeat-threshold = {threshold}\n"),
    )
}

/// A cluster configuration with `preempt = { delay }` for redundancy group 1.
pub fn with_preempt(config: &str, delay: Duration) -> Result<String> {
    common::edit(
        config,
        "[chassis.cluster.redundancy-group.1]\n",
        &format!(
            "[chassis.cluster.redundancy-group.1]\npreempt = {{ delay = {} }}\n",
            delay.as_secs()
        ),
    )
}

/// The lease a configuration gives: heartbeat interval x threshold.
pub fn lease_of(config: &Path) -> Result<Duration> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", config.display()))?;
    let cluster = doc
        .get("chassis")
        .and_then(|c| c.get("cluster"))
        .context("no [chassis.cluster]")?;
    let number = |key: &str| {
        cluster
            .get(key)
            .and_then(toml::Value::as_integer)
            .and_then(|v| u32::try_from(v).ok())
            .with_context(|| format!("chassis.cluster.{key} missing or not a number"))
    };
    let interval = Duration::from_millis(number("heartbeat-interval")?.into());
    Ok(interval * number("heartbeat-threshold")?)
}

/// Prints both directions of a probe and fails on duplicates: a datagram delivered
/// twice is a replayed ESP packet the receiving side accepted.
pub fn report_probe(what: &str, stats: &[FlowStats; 2]) {
    for s in stats {
        eprintln!("{what}: {s}");
    }
    for s in stats {
        assert_eq!(
            s.duplicates, 0,
            "{what}: datagrams delivered twice (a replay got through): {s}"
        );
        assert!(s.received > 0, "{what}: nothing received: {s}");
    }
}

/// No (SPI, sequence number) pair reached the peer twice.
pub fn assert_no_repeated_esp(what: &str, packets: &[EspPacket]) {
    let repeated = common::repeated_esp(packets);
    let shown: Vec<String> = repeated
        .iter()
        .take(10)
        .map(|(spi, seq, n)| format!("SPI {spi:08x} seq {seq} x{n}"))
        .collect();
    assert!(
        repeated.is_empty(),
        "{what}: {} (SPI, sequence number) pairs reached the peer more than once \
         (AES-GCM nonce reuse), e.g. {shown:?}",
        repeated.len()
    );
}

/// Every child SA the peer saw ESP on both before and after `event` (wall clock)
/// continued above its earlier sequence numbers: the SA was resumed, whoever sent it
/// (the same node after a restart cannot be told apart by MAC). Returns the SPIs seen
/// after the event.
pub fn assert_continued(what: &str, packets: &[EspPacket], event: Duration) -> Vec<u32> {
    use std::collections::BTreeMap;
    let mut before: BTreeMap<u32, u32> = BTreeMap::new();
    let mut after: BTreeMap<u32, u32> = BTreeMap::new();
    for p in packets {
        let (map, keep_max) = if p.time < event {
            (&mut before, true)
        } else {
            (&mut after, false)
        };
        let m = map.entry(p.spi).or_insert(p.seq);
        *m = if keep_max {
            (*m).max(p.seq)
        } else {
            (*m).min(p.seq)
        };
    }
    // Where each SA's sequence numbers jumped furthest (a node that installs an SA from
    // the replicated records starts above the committed reservation).
    let mut by_spi: BTreeMap<u32, Vec<&EspPacket>> = BTreeMap::new();
    for p in packets {
        by_spi.entry(p.spi).or_default().push(p);
    }
    for (spi, mut sent) in by_spi {
        sent.sort_by_key(|p| p.seq);
        if let Some(w) = sent.windows(2).max_by_key(|w| w[1].seq - w[0].seq) {
            eprintln!(
                "{what}: SPI {spi:08x} jumped from sequence number {} to {} at {:+.3} s",
                w[0].seq,
                w[1].seq,
                w[1].time.as_secs_f64() - event.as_secs_f64()
            );
        }
    }
    for (spi, min) in &after {
        if let Some(max) = before.get(spi) {
            eprintln!(
                "{what}: SPI {spi:08x} sent up to sequence number {max} before, resumed at {min}"
            );
            assert!(
                min > max,
                "{what}: SPI {spi:08x} resumed at sequence number {min}, not above {max}"
            );
        }
    }
    after.into_keys().collect()
}

/// What a kill -9 of the primary under traffic gave.
#[derive(Debug)]
pub struct Takeover {
    /// The node that took over.
    pub survivor: &'static str,
    /// The probe, both directions, from before the kill until traffic flowed again.
    pub stats: [FlowStats; 2],
    /// Each direction's longest time without an arrival from its last arrival before
    /// the kill on: the outage the kill caused.
    pub gaps: [Duration; 2],
    /// The kill, on the wall clock (for the capture's timeline).
    pub wall_kill: Duration,
    /// From the kill until the nodes agreed on the survivor as primary.
    pub primary_after: Duration,
}

impl Takeover {
    /// The traffic gap the kill caused: the longer of the two directions'.
    pub fn gap(&self) -> Duration {
        self.gaps.into_iter().max().unwrap_or_default()
    }
}

/// Starts the probe, waits until it flows, kills the primary with SIGKILL, waits for
/// the other node to take over and for traffic to flow through it (`timeout` for
/// each), lets it run `settle` longer, and stops the probe. Checks that the survivor's
/// `st0.0` carried the traffic and that no datagram arrived twice.
pub fn kill_primary_under_traffic(
    cl: &mut ClusterLab,
    primary: &str,
    timeout: Duration,
    settle: Duration,
) -> Takeover {
    let survivor = other(primary);
    let probe = cl.flowing_probe("kill");
    let carried_before = cl.check("st0.0 counters", cl.st0_packets(survivor));

    let (t_kill, wall_kill) = (Instant::now(), wall_now());
    let r = cl.kill9(&[primary]);
    cl.check(&format!("kill -9 {primary}"), r);
    let r = cl.wait_primary(DATA_GROUP, Some(survivor), timeout);
    cl.check(
        &format!("{survivor} taking over group 1 after kill -9 of {primary}"),
        r,
    );
    let primary_after = t_kill.elapsed();
    let r = probe.wait_flowing_after(t_kill, FLOWING, timeout);
    cl.check(
        &format!("probe traffic resuming through {survivor} after kill -9 of {primary}"),
        r,
    );
    std::thread::sleep(settle);
    let (stats, gaps) = probe.stop_around(t_kill);
    report_probe("kill -9 of the primary", &stats);
    let carried = cl.check("st0.0 counters", cl.st0_packets(survivor)) - carried_before;
    assert!(
        carried >= FLOWING as u64,
        "{survivor}'s st0.0 carried only {carried} packets after the takeover: the traffic \
         did not go through it"
    );
    Takeover {
        survivor,
        stats,
        gaps,
        wall_kill,
        primary_after,
    }
}
