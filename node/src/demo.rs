//! `vpnd demo`: a site-to-site VPN in network namespaces, with no configuration to write.
//!
//! ```text
//! demo-lan-a 10.1.0.10 ── 10.1.0.1 demo-gw-a 192.0.2.1 ══ESP══ 192.0.2.2 demo-gw-b 10.2.0.1 ── 10.2.0.10 demo-lan-b
//!                                  (vpnd)                            (vpnd)
//! ```
//!
//! Builds the topology (removing leftovers of an earlier run first), writes the shipped
//! example configurations ([`crate::config::DEFAULT_SITE_A`] and `_B`, whose addresses
//! are this topology's) to `/tmp/vpnd-demo/`, starts two `vpnd` processes (this same
//! executable) in the gateway namespaces, waits for the tunnel, pings and runs a TCP
//! transfer from LAN to LAN, prints what it saw and how to look around, then keeps
//! everything running until Ctrl-C (or `--duration`) and tears it down: the daemons get
//! SIGTERM (so they delete their SAs at the peer), then the namespaces are deleted.
//!
//! The topology code is the end-to-end tests' harness (the `lab` crate), so the
//! demo and the tests build exactly the same lab.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use lab::{LAN_A_HOST, LAN_B_HOST, Lab, WorkDir};

/// Namespace prefix: `demo-lan-a`, `demo-gw-a`, `demo-gw-b`, `demo-lan-b`.
pub const PREFIX: &str = "demo";
/// Directory (under the system's temporary directory) for configurations and logs.
pub const WORK_DIR: &str = "vpnd-demo";

/// How the demo runs.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Tear down after this long instead of waiting for Ctrl-C.
    pub duration: Option<Duration>,
    /// SPU workers of each daemon.
    pub workers: usize,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`STOP`] instead of killing us, so Ctrl-C always tears the
/// lab down, also while it is still being built.
fn catch_stop_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: installs a handler that only stores to an atomic; no other state.
        if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
            bail!(
                "installing the handler of signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn stopping() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the demo (see the module documentation). Needs root.
pub fn run(opts: &DemoOptions) -> Result<()> {
    if !lab::is_root() {
        bail!(
            "`vpnd demo` needs root: it creates network namespaces, veth links and TUN devices. \
             Run it as root, e.g. `sudo cargo run --release -p node --bin vpnd -- demo`"
        );
    }
    catch_stop_signals()?;
    let exe = std::env::current_exe().context("locating the vpnd executable")?;
    let mut dir = WorkDir::create(WORK_DIR)?;
    dir.keep = true;
    let dir_path = dir.path.clone();

    println!("== vpnd demo: a route-based IKEv2 site-to-site VPN in network namespaces ==");
    println!(
        "   {PREFIX}-lan-a {LAN_A_HOST} -- {PREFIX}-gw-a {} ==ESP== {} {PREFIX}-gw-b -- {LAN_B_HOST} {PREFIX}-lan-b",
        lab::OUTER_A,
        lab::OUTER_B
    );
    println!("-- building the topology (leftovers of an earlier demo are removed first)");
    let mut lab = lab::site_to_site(&exe, PREFIX, dir)?;
    lab.own_group = true;
    lab.daemon_args = vec!["--workers".into(), opts.workers.max(1).to_string()];

    let result = demo(&mut lab, opts);
    println!("-- tearing down: SIGTERM to both daemons (they delete their SAs at the peer)");
    for d in lab.daemons.iter_mut() {
        match d.stop(Duration::from_secs(5)) {
            Some(status) if status.success() => println!("   {}: stopped", d.name),
            Some(status) => println!("   {}: exited with {status}", d.name),
            None => println!("   {}: killed", d.name),
        }
    }
    drop(lab);
    println!(
        "   namespaces deleted; configurations and logs kept in {}",
        dir_path.display()
    );
    match result {
        Err(e) if STOP.load(Ordering::SeqCst) => {
            println!("   stopped early ({e:#})");
            Ok(())
        }
        other => other,
    }
}

fn demo(lab: &mut Lab, opts: &DemoOptions) -> Result<()> {
    let t0 = Instant::now();
    println!(
        "-- starting vpnd in {0}-gw-b and {0}-gw-a (configs: the shipped site-b/site-a examples)",
        PREFIX
    );
    // Both examples establish immediately; started together, the runtime resolves the
    // crossing IKE_SA_INITs (see `netns_both_sides_initiate_at_once`).
    let site_b = crate::config::DEFAULT_SITE_B;
    let pki = lab.dir.path.join("pki");
    crate::mgmt::pki::init(&pki, &[], true).context("creating the management PKI")?;
    lab.daemon_args = vec!["--pki".into(), pki.display().to_string()];
    lab.start_vpnd("gw-b", site_b)?;
    lab.daemon("gw-b")
        .wait_log(&["vpnd running"], 1, Duration::from_secs(10))?;
    lab.start_vpnd("gw-a", crate::config::DEFAULT_SITE_A)?;
    for gw in ["gw-a", "gw-b"] {
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
        let log = lab.daemon(gw).log_text();
        for line in log
            .lines()
            .filter(|l| l.contains("IKE SA established") || l.contains("IPsec SA pair installed"))
        {
            println!("   [{gw}] {}", line.trim());
        }
    }

    stopping()?;
    println!("-- ping {LAN_A_HOST} (lan-a) -> {LAN_B_HOST} (lan-b)");
    let (stats, out) = lab::ping(&lab.ns_name("lan-a"), LAN_B_HOST, 5, "0.2")?;
    for line in out
        .lines()
        .filter(|l| l.contains("transmitted") || l.contains("rtt"))
    {
        println!("   {line}");
    }
    if stats.lost() > 0 {
        bail!(
            "ping lost {} of {} packets",
            stats.lost(),
            stats.transmitted
        );
    }

    stopping()?;
    let size = 16 << 20;
    println!("-- TCP: {} MiB from lan-a to lan-b:5001", size >> 20);
    let data = lab::payload(size, b"vpnd-demo-cleartext");
    let server: SocketAddr = SocketAddr::new(LAN_B_HOST.parse()?, 5001);
    let (got, took) = lab::tcp_transfer(
        &lab.ns_name("lan-b"),
        &lab.ns_name("lan-a"),
        server,
        &data,
        Duration::from_secs(60),
    )?;
    if got != data {
        bail!(
            "TCP data arrived altered ({} of {} bytes)",
            got.len(),
            data.len()
        );
    }
    println!(
        "   {} bytes in {:.2} s = {:.0} Mbit/s, byte-identical",
        got.len(),
        took.as_secs_f64(),
        (got.len() * 8) as f64 / took.as_secs_f64() / 1e6
    );

    print_counters(lab);
    print_api_view(lab, &pki);
    print_tour(lab, &pki);

    match opts.duration {
        Some(d) => println!("-- running for {} s (Ctrl-C stops earlier)", d.as_secs()),
        None => println!("-- running until Ctrl-C"),
    }
    let until = opts.duration.map(|d| Instant::now() + d);
    loop {
        if STOP.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        for d in lab.daemons.iter_mut() {
            if let Some(status) = d.exited() {
                bail!("{} exited ({status}):\n{}", d.name, d.tail(20));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Per-SA and per-interface counters.
fn print_counters(lab: &mut Lab) {
    println!("-- SAs and counters");
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

/// The SAs as the management API reports them: what `vpnctl show security ipsec
/// security-associations` asks. The API listens on 127.0.0.1 inside the gateway's
/// namespace, so the query runs on a thread that enters it.
fn print_api_view(lab: &Lab, pki: &std::path::Path) {
    println!("-- the management API (mutual TLS) of gw-a: IPsec SAs with their counters");
    let ns = lab.ns_name("gw-a");
    let tls = crate::mgmt::TlsFiles::from_pki_dir(pki, "operator");
    let query = std::thread::spawn(move || -> Result<Vec<vpn_proto::v1::IpsecSa>> {
        dataplane::io::netns::enter(&ns).with_context(|| format!("entering {ns}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut client = crate::mgmt::connect("127.0.0.1:50051", &tls).await?;
            let sas = client
                .list_ipsec_sas(vpn_proto::v1::ListIpsecSasRequest::default())
                .await?
                .into_inner()
                .sas;
            Ok(sas)
        })
    });
    match query.join() {
        Ok(Ok(sas)) => {
            println!(
                "   {:8} {:>10} {:>10} {:18} {:>9} {:>9} {:>11} {:>11}",
                "VPN",
                "In SPI",
                "Out SPI",
                "Algorithm",
                "Pkts in",
                "Pkts out",
                "Bytes in",
                "Bytes out"
            );
            for sa in sas {
                println!(
                    "   {:8} {:>10} {:>10} {:18} {:>9} {:>9} {:>11} {:>11}",
                    sa.vpn,
                    format!("{:08x}", sa.inbound_spi),
                    format!("{:08x}", sa.outbound_spi),
                    format!("ESP:{}", sa.encryption),
                    sa.packets_in,
                    sa.packets_out,
                    sa.bytes_in,
                    sa.bytes_out
                );
            }
        }
        Ok(Err(e)) => println!("   management API query failed: {e:#}"),
        Err(_) => println!("   management API query thread panicked"),
    }
}

/// How to look around while the demo runs.
fn print_tour(lab: &Lab, pki: &std::path::Path) {
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
    let vpnctl = lab.vpnd.with_file_name("vpnctl");
    let vpnctl = if vpnctl.exists() {
        vpnctl.display().to_string()
    } else {
        "vpnctl".to_string()
    };
    println!("   management CLI (build it with `cargo build --release -p node --bin vpnctl`):");
    for cmd in [
        "show security ike security-associations",
        "show security ipsec security-associations detail",
        "show security ipsec statistics",
        "show security ike tunnel-map",
        "monitor security events",
    ] {
        println!(
            "   ip netns exec {PREFIX}-gw-a {vpnctl} --pki {} {cmd}",
            pki.display()
        );
    }
}
