//! A manually keyed IPsec tunnel between two network namespaces, end to end through real
//! kernels: the quickest way to see the dataplane work.
//!
//! ```text
//! sudo cargo run --release -p dataplane --example manual_tunnel            # demo, then tear down
//! sudo cargo run --release -p dataplane --example manual_tunnel -- --hold  # keep it up until Ctrl-C
//! ... -- --raw-esp        plain ESP (IP protocol 50) instead of ESP in UDP 4500
//! ... -- --ah             AH (IP protocol 51, integrity only) instead of ESP
//! ... -- --ipv6-outer     outer IPv6 (fd00::1 <-> fd00::2) instead of IPv4
//! ... -- --workers N      SPU worker threads per endpoint (default 2)
//! ... -- --bytes N        size of the TCP transfer (default 16 MiB)
//! ... -- --no-steering    let the kernel spread UDP by flow hash and hand packets to
//!                         their anchor worker, instead of steering by SPI
//! ```
//!
//! Topology (namespaces `vpnA` and `vpnB`, each with its own dataplane in this process):
//!
//! ```text
//!  10.1.0.1/24 st0.0 [vpnA] veth-a 192.0.2.1 ==ESP== 192.0.2.2 veth-b [vpnB] st0.0 10.2.0.1/24
//! ```
//!
//! Needs root (namespaces, TUN, raw sockets) and `ip` (iproute2), `ping`; `tcpdump` to
//! look at the wire. Everything is removed on exit, including on Ctrl-C.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{Encap, Topology};

/// Set by SIGINT/SIGTERM; every wait in this program checks it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[derive(Debug)]
struct Options {
    hold: bool,
    encap: Encap,
    outer_v6: bool,
    workers: usize,
    bytes: usize,
    steering: bool,
}

fn parse_args() -> Result<Options> {
    let mut o = Options {
        hold: false,
        encap: Encap::Udp,
        outer_v6: false,
        workers: 2,
        bytes: 16 << 20,
        steering: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hold" => o.hold = true,
            "--raw-esp" => o.encap = Encap::RawEsp,
            "--ah" => o.encap = Encap::Ah,
            "--no-steering" => o.steering = false,
            "--ipv6-outer" => o.outer_v6 = true,
            "--workers" => {
                o.workers = args.next().context("--workers needs a number")?.parse()?;
            }
            "--bytes" => o.bytes = args.next().context("--bytes needs a number")?.parse()?,
            "-h" | "--help" => {
                println!(
                    "usage: manual_tunnel [--hold] [--raw-esp | --ah] [--ipv6-outer] [--workers N] [--bytes N] [--no-steering]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if o.workers == 0 {
        bail!("--workers must be at least 1");
    }
    Ok(o)
}

fn main() -> ExitCode {
    if !common::is_root() {
        eprintln!(
            "manual_tunnel needs root: it creates network namespaces (vpnA, vpnB), a veth pair,\n\
             TUN devices and raw sockets. Run it as root, e.g.\n  \
             sudo -E cargo run --release -p dataplane --example manual_tunnel"
        );
        return ExitCode::from(2);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    match parse_args().and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn run(o: &Options) -> Result<()> {
    println!("Setting up namespaces vpnA and vpnB joined by veth-a <-> veth-b ...");
    // Declared first, so it is dropped last: the dataplanes stop before the namespaces go.
    let topo = Topology::create("vpnA", "vpnB")?;
    let (mut ep_a, mut ep_b) = common::endpoints(&topo, o.encap, o.outer_v6, o.workers);
    ep_a.steering = o.steering;
    ep_b.steering = o.steering;
    let a = common::start_endpoint(&ep_a).context("endpoint in vpnA")?;
    let b = common::start_endpoint(&ep_b).context("endpoint in vpnB")?;
    let mode = match o.encap {
        Encap::Udp => "ESP in UDP 4500 (RFC 3948), AES-128-GCM",
        Encap::RawEsp => "ESP (IP protocol 50), AES-128-GCM",
        Encap::Ah => "AH (IP protocol 51), HMAC-SHA-256-128, no encryption",
    };
    println!(
        "Tunnel up: {mode}, {} SPU workers per side, outer {} <-> {}",
        o.workers, ep_a.local, ep_b.local
    );
    println!(
        "  vpnA: st0.0 10.1.0.1/24 fd10:1::1/64, routes 10.2.0.0/24 fd10:2::/64 into the tunnel"
    );
    println!(
        "  vpnB: st0.0 10.2.0.1/24 fd10:2::1/64, routes 10.1.0.0/24 fd10:1::/64 into the tunnel"
    );
    if o.encap != Encap::Ah {
        println!("  {}", ep_a.outbound.wireshark(ep_a.local, ep_b.local));
        println!("  {}", ep_b.outbound.wireshark(ep_b.local, ep_a.local));
    }
    let filter = match o.encap {
        Encap::Udp => "udp port 4500",
        Encap::RawEsp => "esp",
        Encap::Ah => "ah",
    };
    println!("Look at the wire:  ip netns exec vpnA tcpdump -ni veth-a {filter}");
    println!("Look inside:       ip netns exec vpnA tcpdump -ni st0.0");
    // Let the kernels' IPv6 link-local chatter on the fresh links pass.
    std::thread::sleep(Duration::from_millis(300));

    if o.hold {
        println!("READY: tunnel is up. Try: ip netns exec vpnA ping 10.2.0.1   (Ctrl-C to stop)");
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("\nStopping.");
    } else {
        check_stop()?;
        println!("\n$ ip netns exec vpnA ping -c 3 10.2.0.1");
        print!("{}", common::ping("vpnA", "10.2.0.1", 3)?);
        check_stop()?;
        println!("\n$ ip netns exec vpnA ping -c 3 fd10:2::1");
        print!("{}", common::ping("vpnA", "fd10:2::1", 3)?);
        check_stop()?;

        let marker = b"manual_tunnel cleartext";
        let data = common::payload(o.bytes, marker);
        let server: SocketAddr = "10.2.0.1:5201".parse()?;
        println!(
            "\nTCP transfer of {} bytes vpnA -> {server} through the tunnel ...",
            data.len()
        );
        let (got, took) = common::tcp_transfer("vpnB", "vpnA", server, &data)?;
        if got != data {
            bail!(
                "received {} bytes that differ from the {} sent",
                got.len(),
                data.len()
            );
        }
        let mbps = data.len() as f64 * 8.0 / took.as_secs_f64() / 1e6;
        println!(
            "  {} bytes received intact in {took:.2?} ({mbps:.0} Mbit/s)",
            got.len()
        );
    }

    std::thread::sleep(Duration::from_millis(200));
    let sa = a.handle().stats_all()?;
    let sb = b.handle().stats_all()?;
    println!("\nCounters (per SPU worker: I/O, per-SA, drops by reason):");
    print!("{}", common::format_stats("vpnA", &sa));
    print!("{}", common::format_stats("vpnB", &sb));
    println!(
        "  A->B: {} packets protected, {} accepted; B->A: {} protected, {} accepted",
        common::sa_packets(&sa, ep_a.outbound.spi),
        common::sa_packets(&sb, ep_b.inbound.spi),
        common::sa_packets(&sb, ep_b.outbound.spi),
        common::sa_packets(&sa, ep_a.inbound.spi),
    );
    println!("\nTearing down (dataplanes, TUN devices, namespaces vpnA and vpnB).");
    a.shutdown();
    b.shutdown();
    drop(topo);
    Ok(())
}
