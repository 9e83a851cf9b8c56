//! Chassis cluster end to end: two gateway nodes and a witness (real `vpnd` processes
//! sharing one configuration), a standalone remote peer, and LAN hosts on both sides,
//! in network namespaces:
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
//! ARP, a virtual MAC) is part of what these tests check.
//!
//! What each scenario measures:
//! - a sequence-numbered UDP probe between the LAN hosts, 1 datagram/ms each way
//!   (loss, duplicates, reordering and the longest gap per direction);
//! - a capture on the peer's `eth0`: no (ESP SPI, sequence number) pair may arrive
//!   twice, which would be an AES-GCM nonce reused under one key; and, told apart by
//!   their MACs, the new primary carries on with the old one's SPIs, above its
//!   sequence numbers;
//! - the peer's IKE SA SPIs (over its management API) and its log: a takeover must
//!   resume the IKE SA, never negotiate a new one.
//!
//! Needs root and `ip`, `ping`, `tcpdump`. Without root every `netns_` test fails with a
//! message saying so; `cluster_lab_configs_pass_vpnd_check` needs no root. The root
//! tests take a file lock ([`common::netns_test_lock`]) so that they run one at a time,
//! also against a concurrent `cargo test` of another checkout: they measure failover
//! gaps, which daemons of another lab competing for two cores would blur.
//!
//! Run them with `cargo test -p node --test cluster_netns -- --nocapture` (as root) to
//! see the measured gaps. `VPND_E2E_KEEP=1` keeps every run's configurations, logs and captures (a failed run
//! keeps them anyway and prints where).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use common::{Capture, EspPacket, ExclusiveLock, FlowStats, Lab, UdpProbe, Vpnctl, WorkDir};
use serde::Deserialize;

const VPND: &str = env!("CARGO_BIN_EXE_vpnd");
const VPNCTL: &str = env!("CARGO_BIN_EXE_vpnctl");
/// The one configuration of node0, node1 and the witness.
const CLUSTER_CONFIG: &str = include_str!("data/cluster-lab.toml");
/// The remote peer's configuration.
const PEER_CONFIG: &str = include_str!("data/cluster-lab-peer.toml");

const PEER_OUTER: &str = "198.51.100.2";
const LAN1_HOST: &str = common::LAN_A_HOST;
const LAN1_GW: &str = common::LAN_A_GW;
const LAN2_HOST: &str = common::LAN_B_HOST;
const LAN2_GW: &str = common::LAN_B_GW;
/// The gateway nodes, node0 first.
const NODES: [&str; 2] = ["node0", "node1"];
/// Members and their control link addresses (the configuration's control-address).
const CONTROL: [(&str, &str); 3] = [
    ("node0", "10.255.0.1/24"),
    ("node1", "10.255.0.2/24"),
    ("witness", "10.255.0.3/24"),
];
/// The redundancy group that carries reth0, reth1 and the VPN.
const DATA_GROUP: u8 = 1;

/// How long a fresh cluster may take to elect a primary and bring the tunnel up.
const ESTABLISH: Duration = Duration::from_secs(30);
/// Upper bound on a takeover's traffic gap. The configuration's lease is 600 ms; a
/// gap of this size means the tunnel came back some other way (renegotiation, DPD).
const TAKEOVER: Duration = Duration::from_secs(10);
/// Probe rate: one datagram per millisecond each way.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);
const PROBE_PORT: u16 = 7001;
/// Datagrams each way that must arrive, sent after an event, for traffic to count as
/// flowing again (half a second of probe traffic).
const FLOWING: usize = 500;

/// Fails (never skips) without root, then takes the lock that runs root tests one at a
/// time.
fn root_test() -> ExclusiveLock {
    assert!(common::is_root(), "{}", common::ROOT_HINT);
    common::netns_test_lock().unwrap_or_else(|e| panic!("{e:#}"))
}

/// `show chassis cluster status --json`, the parts the tests read.
#[derive(Debug, Clone, Deserialize)]
struct ClusterStatus {
    cluster_id: u16,
    local_member: String,
    redundancy_groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, Deserialize)]
struct GroupStatus {
    redundancy_group: u8,
    failover_count: u64,
    manual_failover: bool,
    nodes: Vec<GroupNodeStatus>,
}

#[derive(Debug, Clone, Deserialize)]
struct GroupNodeStatus {
    node: String,
    status: String,
}

impl ClusterStatus {
    fn group(&self, id: u8) -> Result<&GroupStatus> {
        self.redundancy_groups
            .iter()
            .find(|g| g.redundancy_group == id)
            .with_context(|| format!("redundancy group {id} missing from {self:?}"))
    }

    /// The node this member sees as primary of group `id` (an error if it sees two).
    fn primary(&self, id: u8) -> Result<Option<String>> {
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
    fn state_of(&self, id: u8, node: &str) -> Result<String> {
        self.group(id)?
            .nodes
            .iter()
            .find(|n| n.node == node)
            .map(|n| n.status.clone())
            .with_context(|| format!("{node} missing from group {id}: {self:?}"))
    }
}

/// The other gateway node.
fn other(node: &str) -> &'static str {
    if node == NODES[0] { NODES[1] } else { NODES[0] }
}

/// Now, as a capture timestamp (tcpdump stamps with the wall clock).
fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The lab of one scenario. Fields drop in order: the capture, then the lab (daemons,
/// then namespaces, then the work directory).
struct ClusterLab {
    capture: Option<Capture>,
    lab: Lab,
    vpnctl: Vpnctl,
    pki: PathBuf,
    config: PathBuf,
    peer_config: PathBuf,
    /// The configuration's lease (heartbeat interval x threshold).
    lease: Duration,
    /// A member stopped with SIGSTOP: not asked anything until continued.
    stopped: Option<String>,
    /// Each node's `eth0` MAC, to tell the nodes' ESP apart on the wire when the
    /// runtime does not give reth0 a shared virtual MAC.
    eth0_mac: [[u8; 6]; 2],
}

impl ClusterLab {
    /// Builds the topology, writes the PKI and configurations, starts the capture on
    /// the peer's `eth0`, starts peer, witness, node0 and node1, and waits until group 1
    /// has a primary and lan1 reaches lan2 through the tunnel. Panics with the step that
    /// failed and the daemons' logs.
    fn formed(tag: &str) -> (ClusterLab, String) {
        let mut cl = ClusterLab::build(tag).unwrap_or_else(|e| panic!("building the lab: {e:#}"));
        let t0 = Instant::now();
        let r = cl.start();
        cl.check("starting the cluster members and the peer", r);
        let r = cl.wait_primary(DATA_GROUP, None, ESTABLISH);
        let primary = cl.check("electing a primary of redundancy group 1", r);
        eprintln!("{primary} primary of group 1 after {:?}", t0.elapsed());
        let r = common::wait_ping(&cl.ns("lan1"), LAN2_HOST, ESTABLISH);
        cl.check("the tunnel (ping lan1 -> lan2 through the cluster)", r);
        eprintln!("tunnel up after {:?}", t0.elapsed());
        (cl, primary)
    }

    fn build(tag: &str) -> Result<ClusterLab> {
        let (prefix, dir) = common::lab_names("cl", tag)?;
        let mut lab = Lab::new(VPND, &prefix, dir);
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
        node::mgmt::pki::init(&pki, &[], false).context("vpnctl pki init")?;
        let config = lab.dir.path.join("cluster.toml");
        std::fs::write(&config, CLUSTER_CONFIG)?;
        let peer_config = lab.dir.path.join("peer.toml");
        std::fs::write(&peer_config, PEER_CONFIG)?;
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
            lab,
            vpnctl: Vpnctl::new(VPNCTL, &pki),
            pki,
            config,
            peer_config,
            lease,
            stopped: None,
            eth0_mac,
        })
    }

    /// The peer first (its sockets must be up for the first IKE_SA_INIT), then the
    /// witness and both nodes, each until it logs that it runs.
    fn start(&mut self) -> Result<()> {
        let pki = self.pki.display().to_string();
        let peer_config = self.peer_config.clone();
        self.lab
            .start_vpnd_file("peer", &peer_config, &["--pki".into(), pki.clone()])?;
        self.lab
            .daemon("peer")
            .wait_log(&["vpnd running"], 1, ESTABLISH)?;
        let config = self.config.clone();
        for member in ["witness", "node0", "node1"] {
            let args = ["--node".into(), member.into(), "--pki".into(), pki.clone()];
            self.lab.start_vpnd_file(member, &config, &args)?;
        }
        // The witness runs only its replica (no node, no management API) and says so.
        for (member, ready) in [
            ("witness", "witness running"),
            ("node0", "vpnd running"),
            ("node1", "vpnd running"),
        ] {
            self.lab.daemon(member).wait_log(&[ready], 1, ESTABLISH)?;
        }
        Ok(())
    }

    /// Full namespace name of `short`.
    fn ns(&self, short: &str) -> String {
        self.lab.ns_name(short)
    }

    /// The value of `r`, or a panic naming `step`, with every daemon's log.
    fn check<T>(&self, step: &str, r: Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{step}: {e:#}\n{}", self.lab.logs()))
    }

    /// A gateway node that is running and not stopped: one that can answer.
    fn answers(&mut self, node: &str) -> bool {
        self.stopped.as_deref() != Some(node) && self.lab.daemon(node).exited().is_none()
    }

    /// `show chassis cluster status` as `member` sees it.
    fn status(&self, member: &str) -> Result<ClusterStatus> {
        let text = self
            .vpnctl
            .run(&self.ns(member), &["show", "chassis", "cluster", "status"])?;
        serde_json::from_str(&text)
            .with_context(|| format!("show chassis cluster status --json on {member}: {text}"))
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

    /// The peer's established IKE SAs: (initiator SPI, responder SPI).
    fn peer_ike_spis(&self) -> Result<Vec<(String, String)>> {
        let v = self.vpnctl.json(
            &self.ns("peer"),
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

    /// IKE_SA_INIT exchanges the peer took part in so far (as responder or initiator).
    fn peer_ike_inits(&mut self) -> usize {
        let peer = self.lab.daemon("peer");
        peer.log_lines(&["responding to IKE_SA_INIT"]).len()
            + peer.log_lines(&["initiating IKE SA"]).len()
    }

    /// Packets in and out of `st0.0` on `node` so far.
    fn st0_packets(&self, node: &str) -> Result<u64> {
        let (rx, _, tx, _) = common::link_counters(&self.ns(node), "st0.0")?;
        Ok(rx + tx)
    }

    fn start_probe(&self) -> Result<UdpProbe> {
        let at =
            |host: &str| -> Result<SocketAddr> { Ok(SocketAddr::new(host.parse()?, PROBE_PORT)) };
        UdpProbe::start(
            (&self.ns("lan1"), at(LAN1_HOST)?),
            (&self.ns("lan2"), at(LAN2_HOST)?),
            PROBE_INTERVAL,
        )
    }

    /// Stops the capture: the ESP packets that arrived at the peer.
    fn esp_to_peer(&mut self) -> Result<Vec<EspPacket>> {
        let capture = self.capture.take().context("capture already finished")?;
        let frames = capture.finish_timed()?;
        let peer: Ipv4Addr = PEER_OUTER.parse()?;
        Ok(common::esp_packets(&frames)
            .into_iter()
            .filter(|p| p.dst == peer)
            .collect())
    }

    /// Which node sent `p`, by source MAC (`None`: neither node's `eth0` MAC, e.g. a
    /// virtual MAC shared by the reth).
    fn sender(&self, p: &EspPacket) -> Option<&'static str> {
        NODES
            .iter()
            .zip(self.eth0_mac)
            .find(|(_, mac)| *mac == p.src_mac)
            .map(|(n, _)| *n)
    }

    /// Prints, per sender, how many ESP packets reached the peer and when (relative to
    /// `event`, a wall-clock time), and returns the last time each node sent.
    fn esp_timeline(&self, packets: &[EspPacket], event: Duration) -> [Option<Duration>; 2] {
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
}

impl ClusterLab {
    /// The survivor `new` carried on the child SAs `old` used: the same SPIs, with
    /// sequence numbers above every one `old` sent, since a node taking over starts
    /// above the committed reservation. Needs the nodes' own MACs on the wire to tell
    /// their packets apart; with a shared reth MAC only the no-repeat check applies.
    fn assert_resumed(&self, packets: &[EspPacket], old: &str, new: &str) {
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
                    self.lab.logs()
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
}

/// The lease a configuration gives: heartbeat interval x threshold.
fn lease_of(config: &Path) -> Result<Duration> {
    let cfg = node::Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = cfg.cluster.context("no [chassis.cluster]")?;
    Ok(c.heartbeat_interval * c.heartbeat_threshold)
}

/// Prints both directions of a probe and fails on duplicates: a datagram delivered
/// twice is a replayed ESP packet the receiving side accepted.
fn report_probe(what: &str, stats: &[FlowStats; 2]) {
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
fn assert_no_repeated_esp(what: &str, packets: &[EspPacket]) {
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

/// The peer kept its IKE SA: same SPIs, no new IKE_SA_INIT in its log.
fn assert_no_renegotiation(
    cl: &mut ClusterLab,
    what: &str,
    spis_before: &[(String, String)],
    inits_before: usize,
) {
    let r = cl.peer_ike_spis();
    let spis_after = cl.check("the peer's IKE SAs after the event", r);
    assert_eq!(
        spis_after,
        spis_before,
        "{what}: the peer's IKE SAs changed (renegotiated instead of resumed)\n{}",
        cl.lab.logs()
    );
    let inits_after = cl.peer_ike_inits();
    assert_eq!(
        inits_after,
        inits_before,
        "{what}: the peer saw a new IKE_SA_INIT (\"responding to IKE_SA_INIT\" / \
         \"initiating IKE SA\" lines: {inits_before} before, {inits_after} after)\n{}",
        cl.lab.logs()
    );
}

/// The peer's IKE SAs and IKE_SA_INIT count before an event; exactly one SA.
fn peer_before(cl: &mut ClusterLab) -> (Vec<(String, String)>, usize) {
    let r = cl.peer_ike_spis();
    let spis = cl.check("the peer's IKE SAs before the event", r);
    assert_eq!(
        spis.len(),
        1,
        "the peer should hold exactly one established IKE SA, with the cluster: {spis:?}\n{}",
        cl.lab.logs()
    );
    (spis, cl.peer_ike_inits())
}

#[test]
fn netns_cluster_forms_and_carries_traffic() {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed("forms");

    for node in NODES {
        let r = cl.status(node);
        let status = cl.check(&format!("show chassis cluster status on {node}"), r);
        assert_eq!(status.local_member, node, "{status:?}");
        assert_eq!(status.cluster_id, 1, "{status:?}");
        for id in [0, DATA_GROUP] {
            let r = status.group(id).map(|g| g.nodes.clone());
            let nodes = cl.check(&format!("group {id} on {node}"), r);
            let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
            assert_eq!(names, NODES, "group {id} as {node} sees it: {status:?}");
            let mut states: Vec<&str> = nodes.iter().map(|n| n.status.as_str()).collect();
            states.sort_unstable();
            assert_eq!(
                states,
                ["primary", "secondary"],
                "group {id} as {node} sees it: one primary and one secondary expected: {status:?}"
            );
        }
        let r = status.primary(DATA_GROUP);
        assert_eq!(
            cl.check("primary of group 1", r).as_deref(),
            Some(primary.as_str())
        );
    }

    let before = cl.check("st0.0 counters", cl.st0_packets(&primary));
    let r = cl.start_probe();
    let probe = cl.check("starting the probe", r);
    std::thread::sleep(Duration::from_secs(3));
    let stats = probe.stop();
    report_probe("steady state", &stats);
    for s in &stats {
        assert_eq!(
            s.lost, 0,
            "steady state: datagrams lost in a stable tunnel: {s}"
        );
    }
    let carried = cl.check("st0.0 counters", cl.st0_packets(&primary)) - before;
    let sent: u64 = stats.iter().map(|s| s.sent).sum();
    assert!(
        carried >= sent,
        "the primary {primary}'s st0.0 carried {carried} packets for {sent} probe datagrams"
    );

    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    eprintln!("{} ESP packets reached the peer", esp.len());
    // A sanity bound on the capture only (the no-repeat check below is only as good as
    // what it saw): tcpdump may drop frames on a busy machine.
    assert!(
        esp.len() as u64 >= stats[0].received / 2,
        "the capture saw {} ESP packets at the peer for {} probe datagrams delivered to lan2",
        esp.len(),
        stats[0].received
    );
    assert_no_repeated_esp("steady state", &esp);
}

#[test]
fn netns_kill_9_of_the_primary_under_traffic() {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed("kill9");
    let survivor = other(&primary);
    let (spis_before, inits_before) = peer_before(&mut cl);
    let r = cl.start_probe();
    let probe = cl.check("starting the probe", r);
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10));
    cl.check("probe traffic before the kill", r);
    let carried_before = cl.check("st0.0 counters", cl.st0_packets(survivor));

    let (t_kill, wall_kill) = (Instant::now(), wall_now());
    let r = cl.lab.daemon(&primary).signal(libc::SIGKILL);
    cl.check(&format!("kill -9 {primary}"), r);
    let r = cl.lab.daemon(&primary).wait_exit(Duration::from_secs(5));
    cl.check(&format!("{primary} to die"), r);
    let r = cl.wait_primary(DATA_GROUP, Some(survivor), TAKEOVER);
    cl.check(
        &format!("{survivor} taking over group 1 after kill -9 of {primary}"),
        r,
    );
    eprintln!("{survivor} primary {:?} after the kill", t_kill.elapsed());
    if let Ok(status) = cl.status(survivor) {
        eprintln!(
            "{survivor}'s view of group 1: {:?}",
            status.group(DATA_GROUP)
        );
    }
    let r = probe.wait_flowing_after(t_kill, FLOWING, TAKEOVER);
    cl.check(
        &format!("probe traffic resuming through {survivor} after kill -9 of {primary}"),
        r,
    );
    std::thread::sleep(Duration::from_secs(1));
    let stats = probe.stop();
    report_probe("kill -9 of the primary", &stats);
    for s in &stats {
        eprintln!(
            "failover gap {}: {:?} (starting {:.3?} after the probe started)",
            s.name, s.longest_gap, s.gap_from
        );
        assert!(
            s.longest_gap < TAKEOVER,
            "traffic gap longer than a takeover should take: {s}"
        );
    }
    let carried = cl.check("st0.0 counters", cl.st0_packets(survivor)) - carried_before;
    assert!(
        carried >= FLOWING as u64,
        "{survivor}'s st0.0 carried only {carried} packets after the takeover: the traffic \
         did not go through it"
    );

    assert_no_renegotiation(
        &mut cl,
        "kill -9 of the primary",
        &spis_before,
        inits_before,
    );
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    cl.esp_timeline(&esp, wall_kill);
    assert_no_repeated_esp("kill -9 of the primary", &esp);
    cl.assert_resumed(&esp, &primary, survivor);
}

#[test]
fn netns_sigstop_longer_than_the_lease() {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed("sigstop");
    let survivor = other(&primary);
    let hold = cl.lease * 3;
    let (spis_before, inits_before) = peer_before(&mut cl);
    let r = cl.start_probe();
    let probe = cl.check("starting the probe", r);
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10));
    cl.check("probe traffic before the stop", r);

    let (t_stop, wall_stop) = (Instant::now(), wall_now());
    let r = cl.lab.daemon(&primary).signal(libc::SIGSTOP);
    cl.check(&format!("SIGSTOP {primary}"), r);
    cl.stopped = Some(primary.clone());
    let takeover = cl.wait_primary(DATA_GROUP, Some(survivor), hold);
    let taken_after = t_stop.elapsed();
    if let Some(rest) = hold.checked_sub(t_stop.elapsed()) {
        std::thread::sleep(rest);
    }
    let r = cl.lab.daemon(&primary).signal(libc::SIGCONT);
    let wall_cont = wall_now();
    cl.stopped = None;
    cl.check(&format!("SIGCONT {primary}"), r);
    cl.check(
        &format!(
            "{survivor} taking over group 1 while {primary} was stopped for 3x the lease ({hold:?})"
        ),
        takeover,
    );
    eprintln!(
        "{survivor} primary {taken_after:?} after SIGSTOP; {primary} continued after {hold:?}"
    );

    // The old primary learns it lost the group, and says so.
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let state = cl
            .status(&primary)
            .and_then(|s| s.state_of(DATA_GROUP, &primary));
        match state {
            Ok(s) if s == "secondary" || s == "secondary-hold" => {
                eprintln!("{primary} after SIGCONT: {s} of group 1");
                break;
            }
            other if Instant::now() >= deadline => cl.check(
                &format!(
                    "{primary} reporting itself secondary of group 1 after SIGCONT (last answer: {other:?})"
                ),
                Err::<(), _>(anyhow::anyhow!("timed out after {TAKEOVER:?}")),
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let r = cl.wait_primary(DATA_GROUP, Some(survivor), Duration::from_secs(5));
    cl.check(
        &format!("both nodes naming {survivor} primary after SIGCONT"),
        r,
    );
    let r = probe.wait_flowing_after(t_stop, FLOWING, TAKEOVER);
    cl.check(&format!("probe traffic resuming through {survivor}"), r);
    // Traffic on, with the old primary running again: the time two forwarders would show.
    std::thread::sleep(Duration::from_secs(2));
    let stats = probe.stop();
    report_probe("SIGSTOP of the primary", &stats);
    for s in &stats {
        eprintln!("failover gap {}: {:?}", s.name, s.longest_gap);
        assert!(s.longest_gap < TAKEOVER, "traffic gap too long: {s}");
    }

    assert_no_renegotiation(
        &mut cl,
        "SIGSTOP of the primary",
        &spis_before,
        inits_before,
    );
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    let last = cl.esp_timeline(&esp, wall_stop);
    assert_no_repeated_esp("SIGSTOP of the primary", &esp);
    cl.assert_resumed(&esp, &primary, survivor);
    // When the nodes' own MACs tell them apart, the old primary must stay silent once
    // continued: it lost its lease while stopped. A batch it had encrypted before the
    // stop may still leave (its sequence numbers lie below the survivor's), hence the
    // grace.
    let old = NODES.iter().position(|n| *n == primary).unwrap_or(0);
    let survivor_sent = last[1 - old].is_some();
    if let (true, Some(old_last)) = (survivor_sent, last[old]) {
        let grace = Duration::from_millis(50);
        assert!(
            old_last <= wall_cont + grace,
            "{primary} sent ESP {:?} after SIGCONT although {survivor} had taken over: two forwarders",
            old_last.saturating_sub(wall_cont)
        );
    }
}

#[test]
fn netns_manual_failover_and_reset() {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed("manual");
    let target = other(&primary);
    let target_number = if target == NODES[0] { "0" } else { "1" };
    let (spis_before, inits_before) = peer_before(&mut cl);
    let r = cl.start_probe();
    let probe = cl.check("starting the probe", r);
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10));
    cl.check("probe traffic before the failover", r);
    let carried_before = cl.check("st0.0 counters", cl.st0_packets(target));

    let (t_failover, wall_failover) = (Instant::now(), wall_now());
    let r = cl.vpnctl.run(
        &cl.ns(&primary),
        &[
            "request",
            "chassis",
            "cluster",
            "failover",
            "redundancy-group",
            "1",
            "node",
            target_number,
        ],
    );
    cl.check(
        &format!("request chassis cluster failover redundancy-group 1 node {target_number}"),
        r,
    );
    let r = cl.wait_primary(DATA_GROUP, Some(target), TAKEOVER);
    cl.check(&format!("{target} primary after the manual failover"), r);
    eprintln!(
        "{target} primary {:?} after the request",
        t_failover.elapsed()
    );
    let r = cl
        .status(target)
        .and_then(|s| Ok(s.group(DATA_GROUP)?.clone()));
    let group = cl.check("group 1 status after the failover", r);
    assert!(
        group.manual_failover,
        "group 1 not pinned by the manual failover: {group:?}"
    );
    assert!(group.failover_count >= 1, "{group:?}");
    let r = probe.wait_flowing_after(t_failover, FLOWING, TAKEOVER);
    cl.check(&format!("probe traffic moving to {target}"), r);
    let carried = cl.check("st0.0 counters", cl.st0_packets(target)) - carried_before;
    assert!(
        carried >= FLOWING as u64,
        "{target}'s st0.0 carried only {carried} packets after the failover"
    );

    let r = cl.vpnctl.run(
        &cl.ns(target),
        &[
            "request",
            "chassis",
            "cluster",
            "failover",
            "reset",
            "redundancy-group",
            "1",
        ],
    );
    cl.check(
        "request chassis cluster failover reset redundancy-group 1",
        r,
    );
    let t_reset = Instant::now();
    let deadline = t_reset + TAKEOVER;
    loop {
        let pinned: Result<Vec<bool>> = NODES
            .iter()
            .map(|n| Ok(cl.status(n)?.group(DATA_GROUP)?.manual_failover))
            .collect();
        match pinned {
            Ok(p) if p.iter().all(|m| !m) => break,
            other if Instant::now() >= deadline => cl.check(
                &format!("the reset clearing the manual failover on both nodes (last: {other:?})"),
                Err::<(), _>(anyhow::anyhow!("timed out after {TAKEOVER:?}")),
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    // No preempt in the configuration: the reset unpins the group and leaves it where
    // it is.
    let r = cl.primary(DATA_GROUP);
    assert_eq!(cl.check("primary after the reset", r), target);
    let r = probe.wait_flowing_after(t_reset, FLOWING, Duration::from_secs(10));
    cl.check("probe traffic after the reset", r);
    let stats = probe.stop();
    report_probe("manual failover", &stats);
    for s in &stats {
        eprintln!("failover gap {}: {:?}", s.name, s.longest_gap);
        assert!(s.longest_gap < TAKEOVER, "traffic gap too long: {s}");
    }

    assert_no_renegotiation(&mut cl, "manual failover", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    cl.esp_timeline(&esp, wall_failover);
    assert_no_repeated_esp("manual failover", &esp);
    cl.assert_resumed(&esp, &primary, target);
}

/// The lab's configurations pass `vpnd check` for every member and the peer, and
/// mirror each other. Needs no root, so configuration mistakes show up in every run.
#[test]
fn cluster_lab_configs_pass_vpnd_check() {
    let dir =
        WorkDir::create(&format!("vpnd-cl-check-{}", std::process::id())).expect("work directory");
    let config = dir.path.join("cluster.toml");
    let peer = dir.path.join("peer.toml");
    std::fs::write(&config, CLUSTER_CONFIG).unwrap();
    std::fs::write(&peer, PEER_CONFIG).unwrap();
    let check = |path: &Path, member: Option<&str>| {
        let mut cmd = Command::new(VPND);
        if let Some(m) = member {
            cmd.args(["--node", m]);
        }
        let out = cmd
            .arg("--config")
            .arg(path)
            .arg("check")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("running vpnd check");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`vpnd{} --config {} check` failed:\n{}{stdout}",
            member.map(|m| format!(" --node {m}")).unwrap_or_default(),
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    for (member, reths) in [("node0", 2), ("node1", 2), ("witness", 0)] {
        let out = check(&config, Some(member));
        assert!(
            out.contains(&format!("chassis cluster 1 member {member}"))
                && out.contains(&format!("{reths} reth interfaces")),
            "{member}: {out}"
        );
    }
    check(&peer, None);

    let lease = lease_of(&config).unwrap();
    assert!(
        lease <= Duration::from_secs(1),
        "the lab's lease ({lease:?}) makes every takeover slow"
    );
    let cluster = node::Config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let peer = node::Config::load(&peer).unwrap_or_else(|e| panic!("{e}"));
    let (c, p) = (&cluster.gateways[0], &peer.gateways[0]);
    assert_eq!(format!("{:?}", c.remote), format!("Static([{PEER_OUTER}])"));
    assert_eq!(
        format!("{:?}", p.remote),
        format!("Static([{}])", c.local_address.unwrap())
    );
    assert_eq!(format!("{:?}", c.local_id), format!("{:?}", p.remote_id));
    assert_eq!(format!("{:?}", c.remote_id), format!("{:?}", p.local_id));
    match (&c.auth, &p.auth) {
        (node::config::model::Auth::Psk(a), node::config::model::Auth::Psk(b)) => {
            assert!(a.expose() == b.expose(), "pre-shared keys differ");
        }
        other => panic!("both sides should use a pre-shared key: {other:?}"),
    }
}
