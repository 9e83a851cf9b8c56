//! `vpnd demo`: the chassis cluster lab of the end-to-end tests ([`lab::cluster`]).
//!
//! ```text
//!  lan1 10.1.0.10 ---+--- node0 ---+--- 198.51.100.2 peer 10.2.0.1 --- 10.2.0.10 lan2
//!                    +--- node1 ---+
//!  witness: control link 10.255.0.0/24 (node0 .1, node1 .2, witness .3)
//! ```
//!
//! node0, node1 and the witness run this executable with the lab's one cluster
//! configuration ([`lab::cluster::CLUSTER_CONFIG`]); the peer is a standalone `vpnd`
//! ([`lab::cluster::PEER_CONFIG`]) that only responds, so any renegotiation would show
//! in its log and its IKE SPIs. The demo waits for a primary and the tunnel, sends ping
//! and TCP from lan1 to lan2, prints what the cluster reports, then kills the primary
//! with SIGKILL under a 1/ms probe and shows what the takeover kept: the traffic gap,
//! the peer's unchanged IKE SA, the same child SAs, and sequence numbers that carry on
//! above the dead node's. The killed member is restarted so the cluster is whole again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use lab::Binaries;
use lab::WorkDir;
use lab::cluster::{
    CLUSTER_OUTER, Cluster, ClusterLab, DATA_GROUP, ESTABLISH, FLOWING, LAN1_GW, LAN1_HOST,
    LAN2_GW, LAN2_HOST, LabOptions, NODES, PEER_OUTER, TAKEOVER, other, wall_now,
};

use super::{
    DemoOptions, OperatorCli, PREFIX, hold, print_sas, print_tunnel_log, stop_daemons, stopping,
    traffic,
};

/// Every daemon of the lab.
const DAEMONS: [&str; 4] = ["peer", "witness", "node0", "node1"];

pub(super) fn run(bins: &Binaries, dir: WorkDir, opts: &DemoOptions) -> Result<()> {
    println!(
        "== vpnd demo: a chassis cluster with stateful IPsec failover, in network namespaces =="
    );
    let lan1 = format!("lan1 {LAN1_HOST} ---");
    println!("   {lan1}+--- node0 ---+--- {PEER_OUTER} peer {LAN2_GW} --- {LAN2_HOST} lan2");
    println!("   {:w$}+--- node1 ---+", "", w = lan1.len());
    println!(
        "   the primary of redundancy group 1 holds reth1 {LAN1_GW} (lan1's gateway) and reth0 \
         {CLUSTER_OUTER} (the tunnel's end);"
    );
    println!(
        "   the witness votes on the control link 10.255.0.0/24 (node0 .1, node1 .2, witness .3)"
    );
    println!(
        "-- building the topology: namespaces {PREFIX}-node0, -node1, -witness, -peer, -lan1, -lan2 \
         and {PREFIX}-sw (bridges); the PKI (`vpnd cli pki init`)"
    );
    let lab_opts = LabOptions {
        workers: Some(opts.workers.max(1)),
        ..LabOptions::default()
    };
    let mut cl = ClusterLab::build_in(PREFIX, dir, bins, lab_opts)?;
    cl.lab.own_group = true;

    let result = demo(&mut cl, bins, opts);
    println!(
        "-- tearing down: SIGTERM to the peer (it deletes its SAs at the cluster), the nodes \
         (the primary last: members hand over, they delete nothing), the witness"
    );
    let started = |cl: &ClusterLab, name: &str| cl.lab.daemons.iter().any(|d| d.name == name);
    let primary = if NODES.iter().all(|n| started(&cl, n)) {
        cl.primary(DATA_GROUP).ok()
    } else {
        None
    };
    let mut order: Vec<&str> = vec!["peer"];
    order.extend(NODES.into_iter().filter(|n| primary.as_deref() != Some(*n)));
    order.extend(NODES.into_iter().filter(|n| primary.as_deref() == Some(*n)));
    order.push("witness");
    order.retain(|name| started(&cl, name));
    stop_daemons(&mut cl.lab, &order);
    drop(cl);
    result
}

fn demo(cl: &mut ClusterLab, bins: &Binaries, opts: &DemoOptions) -> Result<()> {
    stopping()?;
    println!(
        "-- starting the peer (standalone vpnd), the witness, node0 and node1 (one cluster \
         configuration: {})",
        cl.lab.dir.path.join("cluster.toml").display()
    );
    let formed = cl.form()?;
    println!(
        "   {} primary of redundancy group 1 after {:.1} s; tunnel up (lan1 reaches lan2) after {:.1} s",
        formed.primary,
        formed.primary_after.as_secs_f64(),
        formed.tunnel_after.as_secs_f64()
    );
    print_tunnel_log(&mut cl.lab, &formed.primary);
    print_tunnel_log(&mut cl.lab, "peer");

    traffic(&cl.lab, ("lan1", LAN1_HOST), ("lan2", LAN2_HOST))?;

    stopping()?;
    let cli = OperatorCli::new(bins, &cl.vpnctl.pki);
    for node in NODES {
        cli.print(&cl.ns(node), node, "show chassis cluster status")?;
    }
    println!("-- IPsec SAs with their counters (each node's management API)");
    for node in NODES {
        print_sas(&cl.vpnctl, &cl.ns(node), node)?;
    }

    let primary = if opts.failover {
        let survivor = failover(cl, &formed.primary)?;
        restart(cl, &formed.primary, survivor)?;
        cli.print(&cl.ns(survivor), survivor, "show chassis cluster status")?;
        survivor.to_owned()
    } else {
        println!("-- failover left out (--no-failover)");
        formed.primary
    };
    print_tour(cl, &cli, &primary);
    hold(&mut cl.lab, &DAEMONS, opts.duration)
}

/// kill -9 of `primary` under the probe; returns the node that took over.
fn failover(cl: &mut ClusterLab, primary: &str) -> Result<&'static str> {
    stopping()?;
    let survivor = other(primary);
    println!("-- stateful failover: kill -9 of the primary ({primary}) under traffic");
    let r = cl.peer_ike_spis();
    let ike_before = cl.step("the peer's IKE SAs", r)?;
    let inits_before = cl.peer_ike_inits();
    let r = cl.ipsec_sas(primary);
    let child_before = cl.step(&format!("{primary}'s IPsec SAs"), r)?;
    for (spi_i, spi_r) in &ike_before {
        println!("   the peer's IKE SA: initiator SPI {spi_i}, responder SPI {spi_r}");
    }
    for (inbound, outbound, _) in &child_before {
        println!("   {primary}'s IPsec SA pair: inbound SPI {inbound}, outbound SPI {outbound}");
    }
    let r = cl.start_probe();
    let probe = cl.step("starting the probe", r)?;
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10));
    cl.step("probe traffic before the kill", r)?;
    println!("   probe flowing: one sequence-numbered UDP datagram per ms each way, lan1 <-> lan2");

    let pid = cl.lab.daemon(primary).pid();
    let (t_kill, wall_kill) = (Instant::now(), wall_now());
    let r = cl.kill9(&[primary]);
    cl.step(&format!("kill -9 {primary}"), r)?;
    println!("   kill -9 {primary} (pid {pid})");
    let r = cl.wait_primary(DATA_GROUP, Some(survivor), TAKEOVER);
    cl.step(&format!("{survivor} taking over group 1"), r)?;
    let primary_after = t_kill.elapsed();
    let r = probe.wait_flowing_after(t_kill, FLOWING, TAKEOVER);
    cl.step(&format!("probe traffic resuming through {survivor}"), r)?;
    let flowing_after = t_kill.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (stats, gaps) = probe.stop_around(t_kill);
    println!(
        "   {survivor} primary of group 1 {:.2} s after the kill; probe traffic flowing again after {:.2} s",
        primary_after.as_secs_f64(),
        flowing_after.as_secs_f64()
    );
    for s in &stats {
        println!("   {s}");
    }
    let gap = gaps.into_iter().max().unwrap_or_default();
    println!(
        "   traffic gap: {} ms (the lease, heartbeat interval x threshold, is {} ms)",
        gap.as_millis(),
        cl.lease.as_millis()
    );
    if let Some(s) = stats.iter().find(|s| s.duplicates > 0) {
        bail!("datagrams delivered twice (a replayed ESP packet got through): {s}");
    }

    let r = cl.peer_ike_spis();
    let ike_after = cl.step("the peer's IKE SAs after the kill", r)?;
    let inits_after = cl.peer_ike_inits();
    if ike_after != ike_before || inits_after != inits_before {
        bail!(
            "the peer renegotiated instead of the cluster resuming: IKE SAs {ike_before:?} before, \
             {ike_after:?} after; IKE_SA_INIT exchanges {inits_before} before, {inits_after} after\n{}",
            cl.logs()
        );
    }
    for (spi_i, spi_r) in &ike_after {
        println!(
            "   the peer's IKE SA: initiator SPI {spi_i}, responder SPI {spi_r}: unchanged, and no \
             new IKE_SA_INIT: {survivor} resumed it"
        );
    }
    let r = cl.ipsec_sas(survivor);
    let child_after = cl.step(&format!("{survivor}'s IPsec SAs"), r)?;
    for (inbound, outbound, _) in &child_after {
        let same = child_before
            .iter()
            .any(|(i, o, _)| i == inbound && o == outbound);
        println!(
            "   {survivor}'s IPsec SA pair: inbound SPI {inbound}, outbound SPI {outbound}{}",
            if same {
                format!(": the pair {primary} had")
            } else {
                String::new()
            }
        );
    }
    print_sequence_numbers(cl, wall_kill)?;
    Ok(survivor)
}

/// What the capture on the peer's link shows: each SA's sequence numbers before and
/// after the kill (the survivor starts above the dead node's committed reservation, so
/// no number, the AES-GCM nonce, is sent twice), and that no pair appeared twice.
fn print_sequence_numbers(cl: &mut ClusterLab, wall_kill: Duration) -> Result<()> {
    let r = cl.esp_to_peer();
    let esp = cl.step("reading the capture at the peer", r)?;
    let mut macs = Vec::new();
    for node in NODES {
        macs.push((lab::link_mac(&cl.ns(node), "eth0")?, node));
    }
    let sender = |mac: &[u8; 6]| {
        macs.iter()
            .find(|(m, _)| m == mac)
            .map_or("the cluster", |(_, n)| *n)
    };
    // A sequence number and the node that sent it.
    type Sent<'a> = Option<(u32, &'a str)>;
    // SPI -> (highest before the kill, lowest after).
    let mut seen: BTreeMap<u32, (Sent, Sent)> = BTreeMap::new();
    for p in &esp {
        let entry = seen.entry(p.spi).or_default();
        if p.time < wall_kill {
            if entry.0.is_none_or(|(seq, _)| p.seq > seq) {
                entry.0 = Some((p.seq, sender(&p.src_mac)));
            }
        } else if entry.1.is_none_or(|(seq, _)| p.seq < seq) {
            entry.1 = Some((p.seq, sender(&p.src_mac)));
        }
    }
    for (spi, (before, after)) in &seen {
        if let (Some((max, old)), Some((min, new))) = (before, after) {
            println!(
                "   ESP to the peer, SPI {spi:08x}: {old} sent up to sequence number {max}, \
                 {new} carried on from {min}"
            );
            if min <= max {
                bail!("SPI {spi:08x}: sequence number {min} after the kill, not above {max}");
            }
        }
    }
    let repeated = lab::repeated_esp(&esp);
    if !repeated.is_empty() {
        bail!(
            "{} (SPI, sequence number) pairs reached the peer more than once (AES-GCM nonce \
             reuse), e.g. {:?}",
            repeated.len(),
            &repeated[..repeated.len().min(5)]
        );
    }
    println!(
        "   {} ESP packets captured at the peer ({}): no (SPI, sequence number) pair twice",
        esp.len(),
        cl.lab.dir.path.join("peer-eth0.pcap").display()
    );
    Ok(())
}

/// Restarts the killed member from its data directory and waits until it is back as
/// secondary of group 1 (the configuration has no preempt, so the survivor stays
/// primary).
fn restart(cl: &mut ClusterLab, killed: &str, survivor: &str) -> Result<()> {
    stopping()?;
    println!(
        "-- restarting {killed} (same configuration and data directory), so the cluster is whole again"
    );
    let t0 = Instant::now();
    let r = cl.restart(&[killed]);
    cl.step(&format!("restarting {killed}"), r)?;
    let r = cl.wait_state(killed, DATA_GROUP, &["secondary"], ESTABLISH);
    cl.step(&format!("{killed} back as secondary"), r)?;
    println!(
        "   {killed} secondary of group 1 after {:.1} s; {survivor} stays primary (no preempt \
         in this configuration)",
        t0.elapsed().as_secs_f64()
    );
    lan_after_restart(cl, killed, survivor)
}

/// Checks that lan1 reaches lan2 again after the restart, and says why when it takes
/// a while: kill -9 leaves the reth addresses on the dead node's interfaces (its
/// kernel lives on, as on a real host), and if that kernel sent an ARP request with
/// 10.1.0.1 as sender after the survivor's gratuitous ARPs, lan1 points its gateway at
/// the dead node's MAC again. The restart removes the stale addresses, and lan1's
/// traffic is lost until its neighbour entry fails and it asks again (several
/// seconds): the survivor announces the addresses only when it takes over.
fn lan_after_restart(cl: &ClusterLab, killed: &str, survivor: &str) -> Result<()> {
    let killed_mac = lab::format_mac(&lab::link_mac(&cl.ns(killed), "eth1")?);
    let out = lab::run(
        "ip",
        &["-n", &cl.ns("lan1"), "-j", "neigh", "show", LAN1_GW],
    )?;
    let neigh: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`ip -j neigh` output")?;
    if neigh[0]["lladdr"].as_str() == Some(killed_mac.as_str()) {
        println!(
            "   note: lan1's neighbour entry for its gateway {LAN1_GW} points at {killed}'s MAC \
             {killed_mac}: {killed}'s kernel, still holding the reth addresses after the kill, \
             sent an ARP request from {LAN1_GW} after {survivor}'s gratuitous ARPs; lan1's \
             traffic is lost until {survivor} announces the address again (1, 2, 4, 8, 16 s \
             after taking over)"
        );
    }
    let t0 = Instant::now();
    let r = lab::wait_ping(&cl.ns("lan1"), LAN2_HOST, ESTABLISH);
    cl.step(&format!("lan1 reaching lan2 through {survivor}"), r)?;
    println!(
        "   lan1 reaches lan2 through {survivor} (ping answered after {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// How to look around while the demo runs.
fn print_tour(cl: &ClusterLab, cli: &OperatorCli, primary: &str) {
    let d = cl.lab.dir.path.display();
    let secondary = other(primary);
    let (ns_primary, ns_secondary, ns_peer) = (cl.ns(primary), cl.ns(secondary), cl.ns("peer"));
    println!("-- look around (in another terminal, as root):");
    println!("   ip netns exec {} ping {LAN2_HOST}", cl.ns("lan1"));
    println!("   ip netns exec {ns_peer} tcpdump -ni eth0 'udp port 500 or udp port 4500 or esp'");
    println!("   ip netns exec {ns_primary} tcpdump -ni st0.0");
    println!("   ip -n {ns_primary} addr show eth0     (reth0 {CLUSTER_OUTER} on the primary)");
    println!(
        "   ip netns exec {} iperf3 -s & ip netns exec {} iperf3 -c {LAN2_HOST}",
        cl.ns("lan2"),
        cl.ns("lan1")
    );
    println!("   tail -f {d}/node0.log {d}/node1.log {d}/witness.log {d}/peer.log");
    println!("   configurations: {d}/cluster.toml (node0, node1, witness), {d}/peer.toml");
    println!(
        "   the operator CLI (`vpnd cli` is `vpnctl`; the management API listens on \
         127.0.0.1:50051 in each node's and the peer's namespace, the witness has none):"
    );
    for (ns, cmd) in [
        (&ns_primary, "show chassis cluster status"),
        (&ns_primary, "show chassis cluster statistics"),
        (&ns_primary, "show security ike security-associations"),
        (
            &ns_primary,
            "show security ipsec security-associations detail",
        ),
        (&ns_secondary, "show security ipsec statistics"),
        (&ns_peer, "show security ike security-associations"),
        (&ns_primary, "monitor security events"),
    ] {
        println!("   {}", cli.line(ns, cmd));
    }
    println!(
        "   {}    (events for the monitor)",
        cli.line(&ns_primary, "request security ipsec sa rekey vpn to-remote")
    );
    println!(
        "   {}    (manual failover)",
        cli.line(
            &ns_primary,
            &format!(
                "request chassis cluster failover redundancy-group 1 node {}",
                &secondary[secondary.len() - 1..]
            )
        )
    );
}
