//! Chassis cluster end to end: two gateway nodes and a witness (real `vpnd` processes
//! sharing one configuration), a standalone remote peer (`vpnd` or strongSwan), and LAN
//! hosts on both sides, in network namespaces. The topology and what a scenario can
//! measure are described in `lab/src/cluster.rs`; each test here is one scenario:
//! kill -9, SIGSTOP and manual failover of the primary, preempt when node0 returns, a
//! restart of the whole cluster from its data directories, and an SPU failure on the
//! primary, each against a `vpnd` peer and against strongSwan. `bench_failover_gap`
//! (ignored; `bench/cluster-failover.sh` runs it) measures the traffic gap over
//! repeated kills.
//!
//! Needs root and `ip`, `ping`, `tcpdump`; the strongSwan scenarios also need charon
//! with kernel-libipsec and swanctl (`.ci/run` installs them). Without root every
//! `netns_` test fails with a message saying so; `cluster_lab_configs_pass_vpnd_check`
//! needs no root. The root tests take a file lock ([`common::netns_test_lock`]) so that
//! they run one at a time, also against a concurrent `cargo test` of another checkout:
//! they measure failover gaps, which daemons of another lab competing for two cores
//! would blur.
//!
//! Run them with `cargo test -p node --test cluster_netns -- --nocapture` (as root) to
//! see the measured gaps. `VPND_E2E_KEEP=1` keeps every run's configurations, logs and
//! captures (a failed run keeps them anyway and prints where).

use lab as common;
use lab::{cluster, strongswan};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use cluster::Cluster as _;
use cluster::{
    CLUSTER_CONFIG, CLUSTER_GROUP2_CONFIG, ClusterLab, DATA_GROUP, ESTABLISH, FLOWING,
    GROUP2_LOCAL, GROUP2_REMOTE, LabOptions, NODES, PEER_CONFIG, PEER_GROUP2_CONFIG, PEER_OUTER,
    PeerKind, TAKEOVER, assert_no_repeated_esp, kill_primary_under_traffic, lease_of, other,
    report_probe, root_test, wall_now,
};
use common::WorkDir;

const VPND: &str = env!("CARGO_BIN_EXE_vpnd");

/// This package's freshly built `vpnd` and `vpnctl`.
fn bins() -> common::Binaries {
    common::Binaries::new(VPND, env!("CARGO_BIN_EXE_vpnctl"))
}

/// One `#[test]` per peer for a scenario `fn(tag, PeerKind)`: against a `vpnd` peer,
/// and against strongSwan (which must be installed: without it the test says so).
macro_rules! against_both_peers {
    ($scenario:ident, $tag:literal, $vpnd:ident, $strongswan:ident) => {
        #[test]
        fn $vpnd() {
            $scenario($tag, PeerKind::Vpnd);
        }

        #[test]
        fn $strongswan() {
            assert!(common::is_root(), "{}", common::ROOT_HINT);
            assert!(strongswan::available(), "{}", strongswan::INSTALL_HINT);
            $scenario(concat!($tag, "-ss"), PeerKind::Strongswan);
        }
    };
}

#[test]
fn netns_cluster_forms_and_carries_traffic() {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed("forms", &bins(), LabOptions::default());

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

/// kill -9 of the primary under traffic against a peer of `kind`: traffic resumes
/// through the other node within [`TAKEOVER`], which carries on the same IKE SA (the
/// peer's SPIs unchanged, no IKE_SA_INIT) and child SAs (same SPIs, sequence numbers
/// above the dead node's, no (SPI, sequence number) twice at the peer).
fn kill_9_scenario(tag: &str, kind: PeerKind) {
    let _lock = root_test();
    let opts = LabOptions {
        peer: kind,
        ..LabOptions::default()
    };
    let (mut cl, primary) = ClusterLab::formed(tag, &bins(), opts);
    let (spis_before, inits_before) = cl.peer_before();
    let t = kill_primary_under_traffic(&mut cl, &primary, TAKEOVER, Duration::from_secs(1));
    let survivor = t.survivor;
    eprintln!("{survivor} primary {:?} after the kill", t.primary_after);
    if let Ok(status) = cl.status(survivor) {
        eprintln!(
            "{survivor}'s view of group 1: {:?}",
            status.group(DATA_GROUP)
        );
    }
    for s in &t.stats {
        eprintln!(
            "failover gap {}: {:?} (starting {:.3?} after the probe started)",
            s.name, s.longest_gap, s.gap_from
        );
        assert!(
            s.longest_gap < TAKEOVER,
            "traffic gap longer than a takeover should take: {s}"
        );
    }
    eprintln!(
        "failover gap ({kind:?} peer): {:?} with a lease of {:?}",
        t.gap(),
        cl.lease
    );

    cl.assert_no_renegotiation("kill -9 of the primary", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    cl.esp_timeline(&esp, t.wall_kill);
    assert_no_repeated_esp("kill -9 of the primary", &esp);
    cl.assert_resumed(&esp, &primary, survivor);
}

against_both_peers!(
    kill_9_scenario,
    "kill9",
    netns_kill_9_of_the_primary_under_traffic,
    netns_kill_9_with_a_strongswan_peer
);

fn sigstop_scenario(tag: &str, peer: PeerKind) {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed(
        tag,
        &bins(),
        LabOptions {
            peer,
            ..LabOptions::default()
        },
    );
    let survivor = other(&primary);
    let hold = cl.lease * 3;
    let (spis_before, inits_before) = cl.peer_before();
    let probe = cl.flowing_probe("stop");

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

    cl.assert_no_renegotiation("SIGSTOP of the primary", &spis_before, inits_before);
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

against_both_peers!(
    sigstop_scenario,
    "sigstop",
    netns_sigstop_longer_than_the_lease,
    netns_sigstop_with_a_strongswan_peer
);

fn manual_failover_scenario(tag: &str, peer: PeerKind) {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed(
        tag,
        &bins(),
        LabOptions {
            peer,
            ..LabOptions::default()
        },
    );
    let target = other(&primary);
    let target_number = if target == NODES[0] { "0" } else { "1" };
    let (spis_before, inits_before) = cl.peer_before();
    let probe = cl.flowing_probe("failover");
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

    cl.assert_no_renegotiation("manual failover", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    cl.esp_timeline(&esp, wall_failover);
    assert_no_repeated_esp("manual failover", &esp);
    cl.assert_resumed(&esp, &primary, target);
}

against_both_peers!(
    manual_failover_scenario,
    "manual",
    netns_manual_failover_and_reset,
    netns_manual_failover_with_a_strongswan_peer
);

/// Waits until the peer reaches the cluster's `st0.1` through redundancy group 2's VPN.
fn wait_group2_tunnel(cl: &ClusterLab, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = cl.lab.ns("peer").exec(
            "ping",
            &[
                "-n",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                GROUP2_REMOTE,
                GROUP2_LOCAL,
            ],
        );
        match r {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("no answer through group 2's VPN in {timeout:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `request chassis cluster failover redundancy-group GROUP node N` (and `reset`), run
/// on `on`.
fn manual_failover(cl: &ClusterLab, on: &str, group: u8, to: Option<&str>) {
    let group = group.to_string();
    let mut args = vec!["request", "chassis", "cluster", "failover"];
    let number;
    match to {
        Some(node) => {
            number = if node == NODES[0] { "0" } else { "1" };
            args.extend(["redundancy-group", &group, "node", number]);
        }
        None => args.extend(["reset", "redundancy-group", &group]),
    }
    let r = cl.vpnctl.run(&cl.ns(on), &args);
    cl.check(&args.join(" "), r);
}

/// The longest gap of group 1's probe traffic while group 2 moved: group 1 must not
/// notice (its primary kept its lease, its SAs and its fence).
fn assert_undisturbed(what: &str, stats: &[common::FlowStats; 2]) {
    report_probe(what, stats);
    for s in stats {
        eprintln!("{what}: group 1 gap {}: {:?}", s.name, s.longest_gap);
        assert!(
            s.longest_gap < Duration::from_millis(300),
            "{what}: group 1's traffic stopped for {:?} although only group 2 moved: {s}",
            s.longest_gap
        );
    }
}

/// Active/active: redundancy group 1 (reth0, reth1, the LAN VPN) on one node and group
/// 2 (reth2 and a second VPN) on the other, both forwarding at once. Each group fails
/// over on its own: kill -9 of group 2's primary moves group 2 to the survivor while
/// group 1's traffic, on the survivor all along, goes on without a gap; with both
/// groups on one node, a manual failover of group 2 back to the restarted node stops
/// only group 2's SAs there (each group's SAs are fenced by that group's lease, not by
/// the node's). Neither VPN is renegotiated and no (SPI, sequence number) reaches the
/// peer twice.
#[test]
fn netns_active_active_groups_fail_over_independently() {
    const GROUP2: u8 = 2;
    let _lock = root_test();
    let (mut cl, g1) = ClusterLab::formed(
        "aa",
        &bins(),
        LabOptions {
            second_group: true,
            ..LabOptions::default()
        },
    );
    let g2 = other(&g1);
    let r = cl.wait_primary(GROUP2, None, ESTABLISH);
    if cl.check("a primary of group 2", r) != g2 {
        manual_failover(&cl, &g1, GROUP2, Some(g2));
        let r = cl.wait_primary(GROUP2, Some(g2), TAKEOVER);
        cl.check(&format!("group 2 moved to {g2}"), r);
        manual_failover(&cl, g2, GROUP2, None);
    }
    let r = wait_group2_tunnel(&cl, ESTABLISH);
    cl.check("group 2's VPN up", r);
    for (node, carries) in [(g1.as_str(), "group 1"), (g2, "group 2")] {
        let r = cl.ipsec_sas(node);
        let sas = cl.check(&format!("{node}'s IPsec SAs"), r);
        assert_eq!(
            sas.len(),
            1,
            "{node}, primary of {carries} only, should hold exactly that group's pair: {sas:?}"
        );
    }
    let (spis_before, inits_before) = cl.peer_before();

    // Group 2's primary dies; group 1's primary takes group 2 over.
    let probe = cl.flowing_probe("kill -9 of group 2's primary");
    let t_kill = Instant::now();
    let r = cl.kill9(&[g2]);
    cl.check(&format!("kill -9 {g2}"), r);
    let r = cl.wait_primary(GROUP2, Some(&g1), TAKEOVER);
    cl.check(&format!("{g1} primary of group 2 too"), r);
    let r = wait_group2_tunnel(&cl, TAKEOVER);
    cl.check("group 2's VPN back on the survivor", r);
    let r = probe.wait_flowing_after(t_kill, FLOWING, TAKEOVER);
    cl.check("group 1's probe traffic", r);
    assert_undisturbed("kill -9 of group 2's primary", &probe.stop());
    assert_eq!(cl.primary(DATA_GROUP).ok().as_deref(), Some(g1.as_str()));

    // Back to active/active: group 2 goes back to the restarted node by hand.
    let r = cl.restart(&[g2]);
    cl.check(&format!("restarting {g2}"), r);
    for group in [DATA_GROUP, GROUP2] {
        let r = cl.wait_state(g2, group, &["secondary"], ESTABLISH);
        cl.check(&format!("{g2} secondary of group {group} again"), r);
    }
    let monitors: Vec<(&str, common::Monitor)> = [g1.as_str(), g2]
        .into_iter()
        .map(|node| {
            let out = cl.lab.dir.path.join(format!("{node}-events.jsonl"));
            let r = cl.vpnctl.monitor(&cl.ns(node), &out);
            (node, cl.check("vpnctl monitor security events", r))
        })
        .collect();
    // The monitors' streams are open before the failover (they print nothing until an
    // event arrives).
    std::thread::sleep(Duration::from_millis(500));
    let probe = cl.flowing_probe("manual failover of group 2");
    let t_failover = Instant::now();
    manual_failover(&cl, &g1, GROUP2, Some(g2));
    let r = cl.wait_primary(GROUP2, Some(g2), TAKEOVER);
    cl.check(&format!("{g2} primary of group 2 again"), r);
    let r = wait_group2_tunnel(&cl, TAKEOVER);
    cl.check("group 2's VPN on the restarted node", r);
    // What an operator watching `monitor security events` sees on each node.
    for (node, monitor) in monitors {
        let r = monitor.stop();
        let events = cl.check(&format!("{node}'s events"), r);
        let has = |kind: &str, words: &[&str]| {
            events.iter().any(|e| {
                let message = e["message"].as_str().unwrap_or_default();
                e["kind"] == kind && words.iter().all(|w| message.contains(w))
            })
        };
        if node == g2 {
            assert!(
                has("failover", &["redundancy-group 2", g2, "became primary"]),
                "{node}: no failover event for taking group 2: {events:?}"
            );
            assert!(
                has("sa-up", &["IKE SA", "taken over"])
                    && has("sa-up", &["IPsec SA", "taken over"]),
                "{node}: no sa-up events for the SAs taken over: {events:?}"
            );
        } else {
            assert!(
                has(
                    "failover",
                    &["redundancy-group 2", node, "no longer primary"]
                ),
                "{node}: no failover event for giving group 2 up: {events:?}"
            );
            assert!(
                !has("failover", &["redundancy-group 1"]),
                "{node}: group 1 did not move: {events:?}"
            );
        }
    }
    let r = probe.wait_flowing_after(t_failover, FLOWING, TAKEOVER);
    cl.check("group 1's probe traffic", r);
    assert_undisturbed("manual failover of group 2", &probe.stop());
    for (node, carries) in [(g1.as_str(), "group 1"), (g2, "group 2")] {
        let r = cl.ipsec_sas(node);
        let sas = cl.check(&format!("{node}'s IPsec SAs after the failover"), r);
        assert_eq!(
            sas.len(),
            1,
            "{node} should hold only {carries}'s pair: {sas:?}"
        );
    }

    // What a Prometheus scraper of each node sees: its own role in each group.
    for (node, primary_of) in [(g1.as_str(), DATA_GROUP), (g2, GROUP2)] {
        let addr = "127.0.0.1:9108".parse().expect("address");
        let r = common::http_get(&cl.ns(node), addr, "/metrics");
        let text = cl.check(&format!("{node}'s metrics"), r);
        for group in [DATA_GROUP, GROUP2] {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with("vpnd_chassis_cluster_primary{")
                        && l.contains(&format!("redundancy_group=\"{group}\""))
                })
                .unwrap_or_else(|| panic!("{node}: no primary series for group {group}:\n{text}"));
            let want = if group == primary_of { " 1" } else { " 0" };
            assert!(
                line.ends_with(want) && line.contains(&format!("node=\"{node}\"")),
                "{node}, group {group}: {line}"
            );
        }
        assert!(text.contains("vpnd_ipsec_sas 1"), "{node}: {text}");
    }

    cl.assert_no_renegotiation("active/active failovers", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    assert_no_repeated_esp("active/active failovers", &esp);
}

/// How long a cluster restarted from its data directories may take to run, elect a
/// primary and carry traffic again: well inside the peer's DPD tolerance (10 s x 5).
const RESTART: Duration = Duration::from_secs(30);

/// Every member killed at once with traffic established, all restarted with the same
/// data directories: the replicated log brings the records back, a primary is elected
/// again and carries on the tunnel from them: the peer keeps its IKE SA and child
/// SAs, and no sequence number is sent twice.
fn restart_scenario(tag: &str, peer: PeerKind) {
    let _lock = root_test();
    let (mut cl, primary) = ClusterLab::formed(
        tag,
        &bins(),
        LabOptions {
            peer,
            ..LabOptions::default()
        },
    );
    let (spis_before, inits_before) = cl.peer_before();
    let r = cl.statistics(&primary);
    let stats_before = cl.check("show chassis cluster statistics before the kill", r);
    let probe = cl.flowing_probe("kill");

    let t_kill = Instant::now();
    let members = ["node0", "node1", "witness"];
    let r = cl.kill9(&members);
    cl.check("kill -9 of every member", r);
    eprintln!("all members killed; {primary} was primary");
    let wall_restart = wall_now();
    let r = cl.restart(&members);
    cl.check("restarting every member from its data directory", r);
    eprintln!(
        "all members running again {:?} after the kill",
        t_kill.elapsed()
    );
    let r = cl.wait_primary(DATA_GROUP, None, RESTART);
    let new_primary = cl.check("a primary of group 1 after the restart", r);
    eprintln!(
        "{new_primary} primary of group 1 {:?} after the kill",
        t_kill.elapsed()
    );
    let r = probe.wait_flowing_after(t_kill, FLOWING, RESTART);
    cl.check(
        &format!("probe traffic resuming through {new_primary} after the restart"),
        r,
    );
    std::thread::sleep(Duration::from_secs(1));
    let stats = probe.stop();
    report_probe("restart of the whole cluster", &stats);
    let gap = stats
        .iter()
        .map(|s| s.longest_gap)
        .max()
        .unwrap_or_default();
    eprintln!("restart gap: {gap:?} (lease {:?})", cl.lease);

    // The new primary continued the replicated IKE SA instead of negotiating one.
    let r = cl.lab.daemon(&new_primary).wait_log(
        &["IKE SA taken over from the replicated state"],
        1,
        TAKEOVER,
    );
    let taken = cl.check(
        &format!("{new_primary} logging that it took the IKE SA over from the replicated state"),
        r,
    );
    eprintln!("{new_primary}: {}", taken[0]);
    // The records are back from disk: the new primary's replicated state holds them.
    let r = cl.statistics(&new_primary);
    let stats_after = cl.check("show chassis cluster statistics after the restart", r);
    for kind in ["ike-sa", "child-sa"] {
        let held = |v: &serde_json::Value| {
            v["replication"]
                .as_array()
                .and_then(|r| r.iter().find(|k| k["kind"] == kind))
                .and_then(|k| k["held"].as_u64())
        };
        eprintln!(
            "{kind} records held: {:?} before the kill ({primary}), {:?} after the restart ({new_primary})",
            held(&stats_before),
            held(&stats_after)
        );
        assert!(
            held(&stats_after).is_some_and(|n| n >= 1),
            "{new_primary} holds no {kind} record after the restart: the replicated records \
             did not survive\n{stats_after:#}"
        );
    }
    // Only the primary holds the floating addresses (a restarted member that stands by
    // must not answer ARP for them).
    let secondary = other(&new_primary);
    let r = cl.wait_state(secondary, DATA_GROUP, &["secondary"], TAKEOVER);
    cl.check(
        &format!("{secondary} secondary of group 1 after the restart"),
        r,
    );
    let r = cl.reth_addresses_on(secondary);
    let stale = cl.check(&format!("addresses on {secondary}"), r);
    assert!(
        stale.is_empty(),
        "{secondary} (secondary after the restart) still holds reth addresses: {stale:?}"
    );

    cl.assert_no_renegotiation("restart of the whole cluster", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    cl.esp_timeline(&esp, wall_restart);
    assert_no_repeated_esp("restart of the whole cluster", &esp);
    let spis = cluster::assert_continued("restart of the whole cluster", &esp, wall_restart);
    assert!(
        !spis.is_empty(),
        "no ESP reached the peer after the restart\n{}",
        cl.logs()
    );
}

against_both_peers!(
    restart_scenario,
    "restart",
    netns_whole_cluster_restart_from_disk,
    netns_whole_cluster_restart_with_a_strongswan_peer
);

/// Preempt (delay 1 s): kill -9 of node0 (priority 200) under traffic, node1 takes
/// over; node0 restarted from its data directory takes group 1 back once the delay has
/// passed. Both handovers resume the same SAs: no renegotiation at the peer, no
/// datagram delivered twice, no (SPI, sequence number) twice on the wire.
fn preempt_scenario(tag: &str, peer: PeerKind) {
    let _lock = root_test();
    let opts = LabOptions {
        peer,
        preempt: Some(Duration::from_secs(1)),
        ..LabOptions::default()
    };
    let (mut cl, primary) = ClusterLab::formed(tag, &bins(), opts);
    assert_eq!(
        primary,
        NODES[0],
        "node0 has the higher priority\n{}",
        cl.logs()
    );
    let (spis_before, inits_before) = cl.peer_before();
    let probe = cl.flowing_probe("kill");

    let t_kill = Instant::now();
    let r = cl.kill9(&[NODES[0]]);
    cl.check("kill -9 node0", r);
    let r = cl.wait_primary(DATA_GROUP, Some(NODES[1]), TAKEOVER);
    cl.check("node1 taking over", r);
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, TAKEOVER);
    cl.check("traffic through node1", r);

    let t_back = Instant::now();
    let r = cl.restart(&[NODES[0]]);
    cl.check("restarting node0", r);
    let r = cl.wait_primary(DATA_GROUP, Some(NODES[0]), TAKEOVER);
    cl.check("node0 preempting group 1", r);
    let back = t_back.elapsed();
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, TAKEOVER);
    cl.check("traffic through node0 again", r);
    eprintln!("node0 primary again {back:?} after its restart (preempt delay 1 s)");
    let (stats, gaps) = probe.stop_around(t_kill);
    report_probe("kill -9 of node0, then its return with preempt", &stats);
    eprintln!("longest gaps from the kill on: {gaps:?}");
    let r = cl.esp_to_peer();
    let esp = cl.check("the capture at the peer", r);
    assert_no_repeated_esp("preempt", &esp);
    cl.assert_no_renegotiation("preempt", &spis_before, inits_before);
}

against_both_peers!(
    preempt_scenario,
    "preempt",
    netns_preempt_after_the_primary_returns,
    netns_preempt_with_a_strongswan_peer
);

/// An SPU (dataplane worker) of the primary fails under traffic: the primary
/// re-anchors the tunnel on its surviving SPU from the replicated records, keeping the
/// child SAs (same SPIs, outbound above the committed reservation) and the IKE SA; no
/// failover, no renegotiation at the peer, no (SPI, sequence number) twice.
fn spu_failure_scenario(tag: &str, peer: PeerKind) {
    let _lock = root_test();
    let opts = LabOptions {
        workers: Some(2),
        peer,
        ..LabOptions::default()
    };
    let (mut cl, primary) = ClusterLab::formed(tag, &bins(), opts);
    let (spis_before, inits_before) = cl.peer_before();
    let r = cl.ipsec_sas(&primary);
    let sas_before = cl.check(&format!("IPsec SAs on {primary}"), r);
    let r = cl.tunnel_map(&primary);
    let map_before = cl.check(&format!("tunnel map of {primary}"), r);
    eprintln!("{primary}: IPsec SAs {sas_before:?}, tunnel map {map_before:?}");
    let [(inbound, outbound, anchor)] = sas_before.as_slice() else {
        panic!("{primary} should hold exactly one IPsec SA pair: {sas_before:?}");
    };
    assert_eq!(
        map_before
            .iter()
            .find(|(t, _)| t == "st0.0")
            .map(|(_, spu)| spu),
        Some(anchor),
        "the tunnel map of {primary} disagrees with its SAs' anchor: {map_before:?}"
    );
    let probe = cl.flowing_probe("SPU failure");

    let (t_fail, wall_fail) = (Instant::now(), wall_now());
    let spu = anchor.to_string();
    let r = cl.vpnctl.run(
        &cl.ns(&primary),
        &["request", "chassis", "spu", "fail", &spu],
    );
    cl.check(&format!("request chassis spu fail {spu} on {primary}"), r);
    let r = common::wait_for("the IPsec SAs to move off the failed SPU", TAKEOVER, || {
        cl.ipsec_sas(&primary)
            .ok()
            .filter(|sas| !sas.is_empty() && sas.iter().all(|(_, _, a)| a != anchor))
    });
    let sas_after = cl.check(&format!("{primary} re-anchoring the tunnel"), r);
    eprintln!(
        "{primary}: IPsec SAs {sas_after:?} {:?} after the failure",
        t_fail.elapsed()
    );
    let r = probe.wait_flowing_after(t_fail, FLOWING, TAKEOVER);
    cl.check("probe traffic after the SPU failure", r);
    std::thread::sleep(Duration::from_secs(1));
    let stats = probe.stop();
    report_probe("SPU failure on the primary", &stats);
    let gap = stats
        .iter()
        .map(|s| s.longest_gap)
        .max()
        .unwrap_or_default();
    eprintln!("SPU failure gap: {gap:?}");
    for s in &stats {
        assert!(s.longest_gap < TAKEOVER, "traffic gap too long: {s}");
    }

    let r = cl.primary(DATA_GROUP);
    assert_eq!(
        cl.check("primary after the SPU failure", r),
        primary,
        "an SPU failure (spu-weight 128 of priority 200) must not move group 1"
    );
    assert_eq!(
        sas_after,
        [(inbound.clone(), outbound.clone(), sas_after[0].2)],
        "the re-anchored tunnel should keep its SA pair (no rekey): before \
         {sas_before:?}, after {sas_after:?}"
    );
    let r = cl.tunnel_map(&primary);
    let map_after = cl.check(&format!("tunnel map of {primary}"), r);
    assert!(
        map_after.iter().all(|(_, s)| s != anchor),
        "the tunnel map still anchors a tunnel on the failed SPU {anchor}: {map_after:?}"
    );
    cl.assert_no_renegotiation("SPU failure on the primary", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    cl.esp_timeline(&esp, wall_fail);
    assert_no_repeated_esp("SPU failure on the primary", &esp);
    let spis = cluster::assert_continued("SPU failure on the primary", &esp, wall_fail);
    assert!(
        spis.iter().any(|s| format!("{s:08x}") == *outbound),
        "no ESP on the outbound SA {outbound} reached the peer after the failure (SPIs: \
         {spis:08x?})\n{}",
        cl.logs()
    );
}

against_both_peers!(
    spu_failure_scenario,
    "spu",
    netns_spu_failure_reanchors_without_renegotiation,
    netns_spu_failure_with_a_strongswan_peer
);

/// Kills of the primary a [`bench_failover_gap`] run makes (`FAILOVER_KILLS`).
const BENCH_KILLS: usize = 20;

/// `CLUSTER_HEARTBEAT=INTERVAL_MSxTHRESHOLD` (e.g. `1000x3`): the heartbeat the
/// benchmark writes into the cluster configuration instead of the lab's 200 ms x 3.
fn bench_heartbeat() -> Option<(Duration, u32)> {
    let text = std::env::var("CLUSTER_HEARTBEAT").ok()?;
    let parsed = text.split_once('x').and_then(|(ms, n)| {
        Some((
            Duration::from_millis(ms.trim().parse().ok()?),
            n.trim().parse().ok()?,
        ))
    });
    Some(parsed.unwrap_or_else(|| {
        panic!("CLUSTER_HEARTBEAT={text:?}: expected INTERVAL_MSxTHRESHOLD, e.g. 1000x3")
    }))
}

/// The nearest-rank `p`-th percentile of `sorted` (ascending, not empty).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the gaps so far and the `BENCH` line `bench/cluster-failover.sh` reads (the
/// last one counts, so a run that fails part way still reports the kills it made).
fn print_bench(heartbeat: &str, gaps: &[Duration], lease: Duration) {
    let mut sorted = gaps.to_vec();
    sorted.sort_unstable();
    let (median, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "gaps (ms): {:?}",
        gaps.iter().map(|g| ms(*g).round()).collect::<Vec<_>>()
    );
    eprintln!(
        "BENCH heartbeat={heartbeat} kills={} median_ms={:.0} p99_ms={:.0} lease_ms={:.0} \
         median_ratio={:.2} p99_ratio={:.2}",
        gaps.len(),
        ms(median),
        ms(p99),
        ms(lease),
        ms(median) / ms(lease),
        ms(p99) / ms(lease),
    );
}

/// The traffic gap of kill -9 of the primary, over `FAILOVER_KILLS` kills (default
/// 20): each kill under the 1/ms probe, then the killed member restarted from its data
/// directory and back as secondary before the next kill, so that the nodes take turns.
/// Prints every gap and, after each kill, a `BENCH` line (median, p99, the configured
/// lease and their ratio) that `bench/cluster-failover.sh` tabulates. The survivor
/// may take over a lease plus half an interval after it applied the last renewal,
/// which came up to an interval before the kill: the gap lies above lease - interval/2. Measures only: no timing assertions;
/// correctness is still checked (takeovers complete, the restarted member comes back
/// secondary without the floating addresses, no renegotiation at the peer, no (SPI,
/// sequence number) twice).
///
/// Two defects it found are fixed and their checks stay: a restarted standby keeping
/// the floating addresses of its crashed run (9c99bbc), and a member that caught up
/// through the leader's snapshot staying `lost` (088abd5).
#[test]
#[ignore = "benchmark (minutes): run by bench/cluster-failover.sh"]
fn bench_failover_gap() {
    let _lock = root_test();
    let kills: usize = std::env::var("FAILOVER_KILLS")
        .ok()
        .map(|v| v.parse().expect("FAILOVER_KILLS: a number"))
        .unwrap_or(BENCH_KILLS);
    let opts = LabOptions {
        heartbeat: bench_heartbeat(),
        ..LabOptions::default()
    };
    let heartbeat = opts.heartbeat.map_or_else(
        || "200x3".to_owned(),
        |(i, n)| format!("{}x{n}", i.as_millis()),
    );
    let (mut cl, mut primary) = ClusterLab::formed("bench", &bins(), opts);
    let lease = cl.lease;
    // Generous bounds for slow heartbeats; a wait only fails when something is wrong.
    let timeout = lease * 4 + TAKEOVER;
    let (spis_before, inits_before) = cl.peer_before();
    let mut gaps = Vec::with_capacity(kills);
    for i in 1..=kills {
        let t = kill_primary_under_traffic(&mut cl, &primary, timeout, Duration::from_millis(200));
        eprintln!(
            "kill {i}/{kills}: {primary} -> {}: gap {:?} (primary after {:?})",
            t.survivor,
            t.gap(),
            t.primary_after
        );
        gaps.push(t.gap());
        print_bench(&heartbeat, &gaps, lease);

        let r = cl.restart(&[&primary]);
        cl.check(&format!("restarting {primary} after kill {i}"), r);
        let back = cl.wait_state(&primary, DATA_GROUP, &["secondary"], timeout);
        if back.is_err() {
            let snapshot = "cluster state replaced by the leader's snapshot";
            let installed = !cl.lab.daemon(&primary).log_lines(&[snapshot]).is_empty();
            let note = format!(
                "kill {i}: {primary} restarted did not come back secondary{}",
                if installed {
                    " after installing the leader's snapshot (\"cluster state replaced by the \
                     leader's snapshot\"): its redundancy actor still sees the group as its own \
                     (`lost`), its mirror of the replicated state not resynchronised"
                } else {
                    ""
                }
            );
            eprintln!("{note}");
            cl.notes.push(note);
        }
        cl.check(&format!("{primary} secondary again after kill {i}"), back);
        let r = cl.wait_primary(DATA_GROUP, Some(t.survivor), timeout);
        cl.check(&format!("both nodes naming {} primary", t.survivor), r);
        let r = cl.reth_addresses_on(&primary);
        let held = cl.check(&format!("addresses on {primary}"), r);
        if !held.is_empty() {
            let note = format!(
                "kill {i}: {primary} restarted as secondary still holds the reth addresses of \
                 its crashed run: {held:?}"
            );
            eprintln!("{note}");
            cl.notes.push(note);
        }
        // Let the restarted member settle (replica caught up, leases renewed) so that
        // each kill starts from the same steady state.
        std::thread::sleep(lease.max(Duration::from_millis(500)));
        primary = t.survivor.to_owned();
    }

    cl.assert_no_renegotiation("repeated kill -9", &spis_before, inits_before);
    let r = cl.esp_to_peer();
    let esp = cl.check("reading the capture", r);
    assert_no_repeated_esp("repeated kill -9", &esp);
    assert!(
        cl.notes.is_empty(),
        "restarted members came back wrong (a standby holding the floating addresses \
         answers ARP for them and takes the peer's traffic; a member that stays `lost` \
         cannot take over):\n  {}",
        cl.notes.join("\n  ")
    );
}

/// The lab's configurations pass `vpnd check` for every member and the peer, and
/// mirror each other. Needs no root, so configuration mistakes show up in every run.
/// Seconds since midnight of a log line's timestamp (`2026-11-27T16:57:12.025769Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// `rounds` tunnel setups by the daemon `gw`: each round clears its IKE SA and asks
/// for the VPN again through the API, and times, from the daemon's own log, IKE_SA_INIT sent ("initiating
/// IKE SA") to the child pair installed (IKE_AUTH done; on a cluster, after the
/// write-ahead commits of the IKE SA and the child SA record).
fn setup_times(
    lab: &mut common::Lab,
    vpnctl: &common::Vpnctl,
    gw: &str,
    (gateway, vpn): (&str, &str),
    rounds: usize,
) -> Vec<Duration> {
    let ns = lab.ns_name(gw);
    let mut times = Vec::new();
    for _ in 0..rounds {
        let installed = lab.daemon(gw).log_lines(&["IPsec SA pair installed"]).len();
        let initiated = lab.daemon(gw).log_lines(&["initiating IKE SA"]).len();
        vpnctl
            .run(
                &ns,
                &[
                    "clear",
                    "security",
                    "ike",
                    "security-associations",
                    "gateway",
                    gateway,
                ],
            )
            .unwrap_or_else(|e| panic!("clear on {gw}: {e:#}\n{}", lab.logs()));
        vpnctl
            .run(&ns, &["request", "security", "ike", "initiate", "vpn", vpn])
            .unwrap_or_else(|e| panic!("initiate on {gw}: {e:#}\n{}", lab.logs()));
        let d = lab.daemon(gw);
        let inits = d
            .wait_log(
                &["initiating IKE SA"],
                initiated + 1,
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("{gw} did not initiate again: {e:#}"));
        let done = d
            .wait_log(
                &["IPsec SA pair installed"],
                installed + 1,
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("{gw}: no tunnel again: {e:#}"));
        let (Some(start), Some(end)) = (
            inits.last().and_then(|l| log_time(l)),
            done.last().and_then(|l| log_time(l)),
        ) else {
            panic!("timestamps missing: {inits:?} {done:?}");
        };
        times.push(Duration::from_secs_f64((end - start).max(0.0)));
        // Let the peer's Delete of the old SA and the cluster's writes settle.
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    times
}

fn report_setups(what: &str, times: &[Duration]) -> Duration {
    let median = percentile(times, 50.0);
    eprintln!(
        "{what}: {} setups, IKE_SA_INIT to child installed: median {:.2} ms, p90 {:.2} ms \
         ({:.0} sequential setups/s)",
        times.len(),
        median.as_secs_f64() * 1e3,
        percentile(times, 90.0).as_secs_f64() * 1e3,
        1.0 / median.as_secs_f64().max(1e-6)
    );
    median
}

/// Tunnel setup latency standalone vs clustered, same run: a standalone `vpnd` pair
/// (the shipped site-a/site-b examples) and the cluster's primary against its `vpnd`
/// peer, each clearing and re-establishing its IKE SA `SETUP_ROUNDS` times (default
/// 30). The cluster adds the write-ahead commits (IKE SA record before the exchange's
/// datagrams leave, child SA record and reservation before the pair is installed).
#[test]
#[ignore = "benchmark: run by bench/setup-rate.sh"]
fn bench_setup_rate() {
    let _lock = root_test();
    let rounds: usize = std::env::var("SETUP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);

    let (prefix, dir) = common::lab_names("sr", "standalone").expect("work directory");
    let mut lab = common::site_to_site(VPND, &prefix, dir).expect("site-to-site lab");
    let pki = lab.dir.path.join("pki");
    common::run(
        env!("CARGO_BIN_EXE_vpnctl"),
        &["pki", "init", &pki.display().to_string()],
    )
    .expect("vpnctl pki init");
    lab.daemon_args = vec!["--pki".into(), pki.display().to_string()];
    // Only gw-a initiates, so every setup is timed from the same end.
    let site_b = common::edit(
        node::config::DEFAULT_SITE_B,
        "establish-tunnels = \"immediately\"",
        "establish-tunnels = \"responder-only\"",
    )
    .expect("site-b example");
    lab.start_vpnd("gw-b", &site_b).expect("gw-b");
    lab.daemon("gw-b")
        .wait_log(&["vpnd running"], 1, Duration::from_secs(10))
        .expect("gw-b running");
    lab.start_vpnd("gw-a", node::config::DEFAULT_SITE_A)
        .expect("gw-a");
    lab.daemon("gw-a")
        .wait_log(&["IPsec SA pair installed"], 1, Duration::from_secs(30))
        .expect("standalone tunnel");
    let vpnctl = common::Vpnctl::new(env!("CARGO_BIN_EXE_vpnctl"), &pki);
    let standalone = setup_times(&mut lab, &vpnctl, "gw-a", ("gw-b", "to-b"), rounds);
    drop(lab);

    let (mut cl, primary) = ClusterLab::formed("setup", &bins(), LabOptions::default());
    let vpnctl = cl.vpnctl.clone();
    let clustered = setup_times(
        &mut cl.lab,
        &vpnctl,
        &primary,
        ("remote", "to-remote"),
        rounds,
    );

    let a = report_setups("standalone vpnd", &standalone);
    let b = report_setups(&format!("cluster primary ({primary})"), &clustered);
    eprintln!(
        "clustered / standalone setup latency: {:.2} (setup rate ratio {:.2})",
        b.as_secs_f64() / a.as_secs_f64().max(1e-9),
        a.as_secs_f64() / b.as_secs_f64().max(1e-9)
    );
}

#[test]
fn cluster_lab_configs_pass_vpnd_check() {
    let dir =
        WorkDir::create(&format!("vpnd-cl-check-{}", std::process::id())).expect("work directory");
    let config = dir.path.join("cluster.toml");
    let peer = dir.path.join("peer.toml");
    std::fs::write(&config, CLUSTER_CONFIG).unwrap();
    std::fs::write(&peer, PEER_CONFIG).unwrap();
    let config2 = dir.path.join("cluster-group2.toml");
    let peer2 = dir.path.join("peer-group2.toml");
    std::fs::write(&config2, format!("{CLUSTER_CONFIG}{CLUSTER_GROUP2_CONFIG}")).unwrap();
    std::fs::write(&peer2, format!("{PEER_CONFIG}{PEER_GROUP2_CONFIG}")).unwrap();
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
    for member in ["node0", "node1"] {
        let out = check(&config2, Some(member));
        assert!(out.contains("3 reth interfaces"), "{member}: {out}");
    }
    check(&peer2, None);

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
