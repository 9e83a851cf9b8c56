//! `vpnd demo --standalone`: a site-to-site VPN between two standalone gateways.
//!
//! ```text
//! demo-lan-a 10.1.0.10 ── 10.1.0.1 demo-gw-a 192.0.2.1 ══ESP══ 192.0.2.2 demo-gw-b 10.2.0.1 ── 10.2.0.10 demo-lan-b
//!                                  (vpnd)                            (vpnd)
//! ```
//!
//! The gateways run the shipped example configurations ([`crate::config::DEFAULT_SITE_A`]
//! and `_B`, whose addresses are this topology's): the smallest working VPN, for
//! reading next to `node/tests/data/site-a.toml`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use lab::{Binaries, LAN_A_HOST, LAN_B_HOST, Lab, Vpnctl, WorkDir};

use super::{DemoOptions, OperatorCli, PREFIX, hold, print_sas, stop_daemons, stopping, traffic};

/// The gateways, in the order they start (gw-b only responds at first).
const GATEWAYS: [&str; 2] = ["gw-b", "gw-a"];

pub(super) fn run(bins: &Binaries, dir: WorkDir, opts: &DemoOptions) -> Result<()> {
    println!(
        "== vpnd demo --standalone: a route-based IKEv2 site-to-site VPN in network namespaces =="
    );
    println!(
        "   {PREFIX}-lan-a {LAN_A_HOST} -- {PREFIX}-gw-a {} ==ESP== {} {PREFIX}-gw-b -- {LAN_B_HOST} {PREFIX}-lan-b",
        lab::OUTER_A,
        lab::OUTER_B
    );
    println!("-- building the topology (leftovers of an earlier demo are removed first)");
    let mut lab = lab::site_to_site(&bins.vpnd, PREFIX, dir)?;
    lab.own_group = true;
    lab.daemon_args = vec!["--workers".into(), opts.workers.max(1).to_string()];

    let result = demo(&mut lab, bins, opts);
    println!("-- tearing down: SIGTERM to both daemons (they delete their SAs at the peer)");
    let started: Vec<&str> = GATEWAYS
        .into_iter()
        .filter(|gw| lab.daemons.iter().any(|d| d.name == *gw))
        .collect();
    stop_daemons(&mut lab, &started);
    drop(lab);
    result
}

fn demo(lab: &mut Lab, bins: &Binaries, opts: &DemoOptions) -> Result<()> {
    let t0 = Instant::now();
    println!(
        "-- starting vpnd in {0}-gw-b and {0}-gw-a (configs: the shipped site-b/site-a examples)",
        PREFIX
    );
    let pki = lab.dir.path.join("pki");
    bins.run_vpnctl(&["pki", "init", &pki.display().to_string()])
        .context("creating the management PKI")?;
    lab.daemon_args
        .extend(["--pki".into(), pki.display().to_string()]);
    // Both examples establish immediately; started together, the runtime resolves the
    // crossing IKE_SA_INITs (see `netns_both_sides_initiate_at_once`).
    lab.start_vpnd("gw-b", crate::config::DEFAULT_SITE_B)?;
    lab.daemon("gw-b")
        .wait_log(&["vpnd running"], 1, Duration::from_secs(10))?;
    lab.start_vpnd("gw-a", crate::config::DEFAULT_SITE_A)?;
    for gw in GATEWAYS {
        stopping()?;
        lab.daemon(gw)
            .wait_log(&["IPsec SA pair installed"], 1, Duration::from_secs(30))
            .with_context(|| format!("the tunnel did not come up\n{}", lab.logs()))?;
    }
    stopping()?;
    lab::wait_ping(&lab.ns_name("lan-a"), LAN_B_HOST, Duration::from_secs(10))
        .with_context(|| format!("no ping through the tunnel\n{}", lab.logs()))?;
    println!("   tunnel up in {:.1} s", t0.elapsed().as_secs_f64());
    for gw in ["gw-a", "gw-b"] {
        super::print_tunnel_log(lab, gw);
    }

    traffic(lab, ("lan-a", LAN_A_HOST), ("lan-b", LAN_B_HOST))?;

    print_counters(lab);
    println!("-- the management API (mutual TLS): IPsec SAs with their counters");
    let gw_a = bins.vpnctl(&pki);
    // The example configurations listen on different ports (site-b.toml: 50052).
    let gw_b = Vpnctl {
        server: "127.0.0.1:50052".into(),
        ..gw_a.clone()
    };
    print_sas(&gw_a, &lab.ns_name("gw-a"), "gw-a")?;
    print_sas(&gw_b, &lab.ns_name("gw-b"), "gw-b")?;
    print_tour(lab, &OperatorCli::new(bins, &pki));
    hold(lab, &GATEWAYS, opts.duration)
}

/// The SPIs from the logs, and per-interface counters on both sides of each gateway.
fn print_counters(lab: &mut Lab) {
    println!("-- SAs and interface counters");
    for gw in ["gw-a", "gw-b"] {
        let spis = lab::installed_spis(&lab.daemon(gw).log_text());
        for (inbound, outbound) in &spis {
            println!("   [{gw}] IPsec SA pair: inbound SPI {inbound}, outbound SPI {outbound}");
        }
        let ns = lab.ns_name(gw);
        for (dev, what) in [
            ("st0.0", "tunnel interface (cleartext side)"),
            (lab::WAN_IF, "outer link (ESP side)"),
        ] {
            match lab::link_counters(&ns, dev) {
                Ok((rx_p, rx_b, tx_p, tx_b)) => println!(
                    "   [{gw}] {dev:6} {what}: rx {rx_p} packets / {rx_b} bytes, tx {tx_p} packets / {tx_b} bytes"
                ),
                Err(e) => println!("   [{gw}] {dev}: {e:#}"),
            }
        }
    }
}

/// How to look around while the demo runs.
fn print_tour(lab: &Lab, cli: &OperatorCli) {
    let d = lab.dir.path.display();
    println!("-- look around (in another terminal, as root):");
    println!("   ip netns exec {PREFIX}-lan-a ping {LAN_B_HOST}");
    println!(
        "   ip netns exec {PREFIX}-gw-a tcpdump -ni {} 'udp port 500 or udp port 4500 or esp'",
        lab::WAN_IF
    );
    println!("   ip netns exec {PREFIX}-gw-a tcpdump -ni st0.0");
    println!("   ip -n {PREFIX}-gw-a -s link show st0.0; ip -n {PREFIX}-gw-a route");
    println!(
        "   ip netns exec {PREFIX}-lan-b iperf3 -s & ip netns exec {PREFIX}-lan-a iperf3 -c {LAN_B_HOST}"
    );
    println!("   tail -f {d}/gw-a.log {d}/gw-b.log");
    println!("   configurations: {d}/gw-a.toml, {d}/gw-b.toml");
    let ns = lab.ns_name("gw-a");
    println!(
        "   the operator CLI (`vpnd cli` is `vpnctl`; the management API listens on \
         127.0.0.1:50051 in gw-a's namespace, on 127.0.0.1:50052 in gw-b's: add --server):"
    );
    for cmd in [
        "show security ike security-associations",
        "show security ipsec security-associations detail",
        "show security ipsec statistics",
        "show security ike tunnel-map",
        "monitor security events",
    ] {
        println!("   {}", cli.line(&ns, cmd));
    }
}
