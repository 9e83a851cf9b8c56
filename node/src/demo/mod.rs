//! `vpnd demo`: the chassis cluster lab in network namespaces, with no configuration to
//! write ([`cluster`]); `vpnd demo --standalone`: two standalone gateways, the
//! site-to-site VPN of the shipped example configurations ([`standalone`]).
//!
//! Every daemon is this same executable, and so is the operator CLI (`vpnd cli`, which
//! is `vpnctl`): `cargo run --bin vpnd` builds nothing else, and the demo needs nothing
//! else. The topologies are the end-to-end tests' harness (the `lab` crate), so the
//! demo and the tests build exactly the same labs.
//!
//! Without root, the demo re-executes itself in an unprivileged user namespace (see
//! [`run_unprivileged`]) and runs there unchanged.
//!
//! Both demos keep everything running until Ctrl-C (or `--duration`), then tear it
//! down: the daemons get SIGTERM in an order that lets them leave cleanly, then the
//! namespaces are deleted. Configurations, logs and the PKI stay in `/tmp/vpnd-demo/`
//! for a look afterwards.

mod cluster;
mod standalone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use lab::{Binaries, Lab, Vpnctl, WorkDir};

/// Namespace prefix: `demo-node0`, `demo-lan1`, ... (or `demo-gw-a`, ... standalone).
/// Fixed, unlike the tests' per-process names, so that the commands the demo prints
/// can be typed again, and so that a new demo removes what a killed one left behind.
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
    /// Kill the primary under traffic and restart it (the cluster demo).
    pub failover: bool,
    /// The two standalone gateways instead of the cluster.
    pub standalone: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`STOP`] instead of killing us, so Ctrl-C always tears the
/// lab down, also while it is still being built. The daemons run in their own process
/// group (`Lab::own_group`), so a Ctrl-C at the terminal reaches only us, and we stop
/// them in order.
/// Without root: this same demo re-executed in an unprivileged user namespace (`unshare
/// --user --map-root-user --net --mount`), where the process is root of its own network
/// and mount namespaces only. Everything stays real (namespaces, veths, TUN devices,
/// raw sockets, port 500) and private to the run: nothing on the host changes and no
/// privilege is asked for. `/run` is a fresh tmpfs there, for `ip netns`. Systems that
/// forbid unprivileged user namespaces (Ubuntu's AppArmor restriction,
/// `user.max_user_namespaces = 0`) get told so, and to use root.
fn run_unprivileged() -> Result<()> {
    if std::env::var_os(IN_USERNS).is_some() {
        bail!("not root even inside the user namespace: run the demo as root");
    }
    catch_stop_signals()?;
    let exe = std::env::current_exe().context("locating the vpnd executable")?;
    println!(
        "-- not root: running the demo in an unprivileged user namespace of its own (unshare \
         --user --map-root-user --net --mount): real namespaces and TUN devices, private to \
         this run; nothing on the host changes"
    );
    let script =
        "mount -t tmpfs tmpfs /run && mkdir -p /run/netns && ip link set lo up && exec \"$@\"";
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(IN_USERNS, "1")
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "not root, and `unshare` (util-linux) is not installed: run the demo as root, \
                 e.g. `sudo cargo run --release -p node --bin vpnd -- demo`"
            ),
            _ => anyhow::anyhow!("starting unshare: {e}"),
        })?;
    println!(
        "   its namespaces are visible from this user namespace only: to look around from \
         another terminal, enter it first with `nsenter --preserve-credentials -U -m -n -t {}`",
        child.id()
    );
    // Ctrl-C reaches the inner demo too (same process group); this one only waits.
    let status = child.wait().context("waiting for the demo")?;
    if status.success() {
        return Ok(());
    }
    bail!(
        "the demo in a user namespace failed ({status}). If unshare said \"Operation not \
         permitted\", this system forbids unprivileged user namespaces (e.g. \
         kernel.apparmor_restrict_unprivileged_userns = 1, or user.max_user_namespaces = 0): \
         run the demo as root, e.g. `sudo cargo run --release -p node --bin vpnd -- demo`"
    )
}

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

/// `--duration`: seconds (`30`), or a number with a unit (`500ms`, `30s`, `5m`, `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 30, 30s, 500ms or 5m, not {s:?}"))?;
    let secs = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too long"))
    };
    match unit {
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h")),
    }
}

/// Set in the demo re-executed inside its user namespace, so it never tries twice.
const IN_USERNS: &str = "VPND_DEMO_USERNS";

/// Runs the demo (see the module documentation). As root, on the host's namespaces;
/// without root, the same in a user namespace of its own ([`run_unprivileged`]).
pub fn run(opts: &DemoOptions) -> Result<()> {
    if !lab::is_root() {
        return run_unprivileged();
    }
    catch_stop_signals()?;
    let exe = std::env::current_exe().context("locating the vpnd executable")?;
    let bins = Binaries::vpnd_only(&exe);
    let mut dir = WorkDir::create(WORK_DIR)?;
    dir.keep = true;
    let dir_path = dir.path.clone();
    let result = if opts.standalone {
        standalone::run(&bins, dir, opts)
    } else {
        cluster::run(&bins, dir, opts)
    };
    println!(
        "   namespaces deleted; configurations and logs kept in {}",
        dir_path.display()
    );
    match result {
        Err(e) if STOP.load(Ordering::SeqCst) => {
            // The first line only: a step cut short by Ctrl-C is no failure to explain.
            let why = format!("{e:#}");
            println!("   stopped early ({})", why.lines().next().unwrap_or(""));
            Ok(())
        }
        other => other,
    }
}

/// `vpnd cli` against the management API inside a lab namespace (it listens on that
/// namespace's loopback): the command lines the demo prints for the reader, and the
/// demo's own text queries, which run exactly those lines.
#[derive(Debug)]
struct OperatorCli {
    exe: PathBuf,
    pki: PathBuf,
}

impl OperatorCli {
    fn new(bins: &Binaries, pki: impl Into<PathBuf>) -> Self {
        OperatorCli {
            exe: bins.vpnctl.clone(),
            pki: pki.into(),
        }
    }

    /// The command line of `args` (space-separated words) in namespace `ns`.
    fn line(&self, ns: &str, args: &str) -> String {
        format!(
            "ip netns exec {ns} {} cli --pki {} {args}",
            self.exe.display(),
            self.pki.display()
        )
    }

    /// Runs [`OperatorCli::line`]; its standard output.
    fn run(&self, ns: &str, args: &str) -> Result<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.exe)
            .arg("cli")
            .arg("--pki")
            .arg(&self.pki)
            .args(args.split_whitespace());
        let out = lab::output_within(&mut cmd, Duration::from_secs(10))
            .with_context(|| self.line(ns, args))?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.line(ns, args),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Prints `args`' output from `ns`, indented, under a heading naming `who`.
    fn print(&self, ns: &str, who: &str, args: &str) -> Result<()> {
        let text = self.run(ns, args)?;
        println!("-- {who}: {args}");
        for line in text.lines() {
            println!("   {line}");
        }
        Ok(())
    }
}

/// Ping from `from` to `to`, then 16 MiB of TCP: (namespace short name, address) each.
fn traffic(lab: &Lab, (from, from_host): (&str, &str), (to, to_host): (&str, &str)) -> Result<()> {
    stopping()?;
    println!("-- ping {from_host} ({from}) -> {to_host} ({to})");
    let (stats, out) = lab::ping(&lab.ns_name(from), to_host, 5, "0.2")?;
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
    println!("-- TCP: {} MiB from {from} to {to}:5001", size >> 20);
    let data = lab::payload(size, b"vpnd-demo-cleartext");
    let server = SocketAddr::new(to_host.parse()?, 5001);
    let (got, took) = lab::tcp_transfer(
        &lab.ns_name(to),
        &lab.ns_name(from),
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
    Ok(())
}

/// The IPsec SAs of the daemon in `ns` with their counters, from the management API
/// (`show security ipsec security-associations`, as JSON: the text table has no
/// counters).
fn print_sas(vpnctl: &Vpnctl, ns: &str, who: &str) -> Result<()> {
    let v = vpnctl.json(ns, &["show", "security", "ipsec", "security-associations"])?;
    let sas = v.as_array().with_context(|| format!("not a list: {v}"))?;
    if sas.is_empty() {
        println!("   [{who}] no IPsec SA installed");
        return Ok(());
    }
    println!(
        "   [{who}] {:10} {:>8} {:>8} {:16} {:>9} {:>9} {:>11} {:>11}",
        "VPN", "In SPI", "Out SPI", "Algorithm", "Pkts in", "Pkts out", "Bytes in", "Bytes out"
    );
    for sa in sas {
        let text = |k: &str| sa[k].as_str().unwrap_or("?").to_owned();
        let count = |k: &str| sa[k].as_u64().unwrap_or(0);
        println!(
            "   [{who}] {:10} {:>8} {:>8} {:16} {:>9} {:>9} {:>11} {:>11}",
            text("vpn"),
            text("inbound_spi"),
            text("outbound_spi"),
            format!("ESP:{}", text("encryption")),
            count("packets_in"),
            count("packets_out"),
            count("bytes_in"),
            count("bytes_out")
        );
    }
    Ok(())
}

/// Log lines of daemon `name` about the tunnel coming up.
fn print_tunnel_log(lab: &mut Lab, name: &str) {
    for line in lab
        .daemon(name)
        .log_text()
        .lines()
        .filter(|l| l.contains("IKE SA established") || l.contains("IPsec SA pair installed"))
    {
        println!("   [{name}] {}", line.trim());
    }
}

/// Keeps the lab running until Ctrl-C or `duration`. A daemon of `names` (each one's
/// latest run) that exits is reported with its log's tail, and the lab runs on: the
/// reader may be killing members on purpose to watch the cluster carry on.
fn hold(lab: &mut Lab, names: &[&str], duration: Option<Duration>) -> Result<()> {
    match duration {
        Some(d) => println!(
            "-- running for {:.1} s (Ctrl-C stops earlier)",
            d.as_secs_f64()
        ),
        None => println!("-- running until Ctrl-C"),
    }
    let until = duration.map(|d| Instant::now() + d);
    let mut reported: Vec<u32> = Vec::new();
    while !STOP.load(Ordering::SeqCst) && until.is_none_or(|u| Instant::now() < u) {
        for name in names {
            let d = lab.daemon(name);
            if let Some(status) = d.exited()
                && !reported.contains(&d.pid())
            {
                reported.push(d.pid());
                println!(
                    "   {name} exited ({status}); the rest runs on. Its log ends:\n{}",
                    d.tail(10)
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// SIGTERM to the daemons `names` (each one's latest run), one after the other, each
/// killed if it has not exited within 5 s.
fn stop_daemons(lab: &mut Lab, names: &[&str]) {
    for name in names {
        let d = lab.daemon(name);
        match d.stop(Duration::from_secs(5)) {
            Some(status) if status.success() => println!("   {name}: stopped"),
            Some(status) => println!("   {name}: exited with {status}"),
            None => println!("   {name}: killed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "5x", "-1", "1.5s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
