//! Network-namespace labs for running real `vpnd` processes: namespaces, veth links,
//! LAN hosts behind gateways, daemons started with `ip netns exec`, bounded waits,
//! ping/TCP/capture helpers.
//!
//! Shared by `tests/e2e_netns.rs` and the `vpnd demo` command (`src/demo.rs` includes
//! this file with `#[path]`), so it takes the `vpnd` executable and every configuration
//! text as arguments instead of using test-only macros.
//!
//! Everything created here is owned by a `Drop` guard: daemons are killed before their
//! namespaces are deleted, also when a test panics. Every wait has a deadline.

// Each includer (test binary, demo) uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What a root-only test or the demo says when not run as root.
pub const ROOT_HINT: &str =
    "needs root (network namespaces, TUN): run as root or skip with `cargo test -- --skip netns_`";

/// LAN host behind gateway A, and gateway A's LAN address.
pub const LAN_A_HOST: &str = "10.1.0.10";
pub const LAN_A_GW: &str = "10.1.0.1";
/// LAN host behind gateway B, and gateway B's LAN address.
pub const LAN_B_HOST: &str = "10.2.0.10";
pub const LAN_B_GW: &str = "10.2.0.1";
/// Outer (internet-side) addresses of the gateways.
pub const OUTER_A: &str = "192.0.2.1";
pub const OUTER_B: &str = "192.0.2.2";

/// Interface names inside the namespaces (each namespace has its own, so they repeat).
pub const WAN_IF: &str = "wan0";
pub const LAN_IF: &str = "lan0";
pub const HOST_IF: &str = "eth0";

/// Log filter the daemons run with: the lines the tests wait for are at `info`.
pub const DAEMON_LOG: &str = "info";

/// True when running with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command and fails with its stderr if it does not exit 0.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args).map(|_| ())
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` with `from` replaced by `to` exactly once; fails if `from` is not in `text`
/// (so a changed example configuration breaks loudly, not silently).
pub fn edit(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        0 => bail!("configuration edit: {from:?} not found"),
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!("configuration edit: {from:?} found {n} times"),
    }
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first) with `lo` up.
    pub fn create(name: &str) -> Result<Self> {
        let _ = run("ip", &["netns", "del", name]);
        ip(&["netns", "add", name]).with_context(|| format!("creating namespace {name}"))?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `program args` inside the namespace; fails if it exits non-zero.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])
            .map(|_| ())
    }

    /// True if interface `dev` exists in the namespace.
    pub fn has_link(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", dev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {e:#}", self.name);
        }
    }
}

/// A directory for configurations, logs and captures: removed on drop unless `keep`
/// is set (`VPND_E2E_KEEP=1` sets it) or the thread is panicking (then its path is
/// printed for a post-mortem).
#[derive(Debug)]
pub struct WorkDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl WorkDir {
    /// A fresh directory `NAME` in the system's temporary directory.
    pub fn create(name: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        // VPND_E2E_KEEP=1 keeps every run's configurations and logs.
        let keep = std::env::var_os("VPND_E2E_KEEP").is_some_and(|v| v == "1");
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "test failed: configurations and logs kept in {}",
                self.path.display()
            );
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes ANSI colour sequences (in case the log writer colours despite `NO_COLOR`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `vpnd` process in a namespace; killed on drop.
#[derive(Debug)]
pub struct Daemon {
    /// Short name (also the file names of its configuration and log).
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Writes `config` to `DIR/NAME.toml` and starts
    /// `ip netns exec NS VPND --config FILE --log FILTER EXTRA... run`, logging to
    /// `DIR/NAME.log`.
    /// With `own_group`, the daemon gets its own process group, so a Ctrl-C at the
    /// terminal reaches only our process, which then stops the daemon in order.
    pub fn spawn(
        vpnd: &Path,
        ns: &str,
        name: &str,
        dir: &Path,
        config: &str,
        extra_args: &[String],
        own_group: bool,
    ) -> Result<Daemon> {
        let config_path = dir.join(format!("{name}.toml"));
        fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        Self::spawn_file(vpnd, ns, name, dir, &config_path, extra_args, own_group)
    }

    /// [`Daemon::spawn`] with a configuration file that already exists: one file that
    /// several daemons share, as the members of a chassis cluster do.
    pub fn spawn_file(
        vpnd: &Path,
        ns: &str,
        name: &str,
        dir: &Path,
        config_path: &Path,
        extra_args: &[String],
        own_group: bool,
    ) -> Result<Daemon> {
        let log_path = dir.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(vpnd)
            .arg("--config")
            .arg(config_path)
            .args(["--log", DAEMON_LOG])
            .args(extra_args)
            .arg("run")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log file")?)
            .stderr(log);
        if own_group {
            cmd.process_group(0);
        }
        // `ip netns exec` switches namespace and then execs vpnd: the child *is* vpnd, so
        // signals sent to it reach the daemon.
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} in {ns}", vpnd.display()))?;
        Ok(Daemon {
            name: name.into(),
            ns: ns.into(),
            config: config_path.to_owned(),
            log: log_path,
            child,
            exit: None,
        })
    }

    /// Process id of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) to the daemon.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill with the pid of our own child process; no pointers.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The log so far, without colour codes.
    pub fn log_text(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Log lines containing every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits until at least `count` log lines contain all `needles`. Fails early, with
    /// the log's tail, if the daemon exits.
    pub fn wait_log(
        &mut self,
        needles: &[&str],
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let what = format!(
            "{count} line(s) with {needles:?} in the log of {}",
            self.name
        );
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.log_lines(needles);
            if lines.len() >= count {
                return Ok(lines);
            }
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited ({status}) while waiting for {what}; log:\n{}",
                    self.name,
                    self.tail(30)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; log:\n{}",
                    self.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        wait_for(&format!("{name} to exit"), timeout, || self.exited())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exited().is_none() {
            let _ = self.signal(libc::SIGCONT);
            let _ = self.signal(libc::SIGTERM);
            if self.wait_exit(grace).is_err() {
                let _ = self.child.kill();
                self.exit = self.child.wait().ok();
            }
        }
        self.exit
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // A stopped process dies from SIGKILL too, but continue it for tidiness.
            let _ = self.signal(libc::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Namespaces, links and daemons of one test or demo. Dropping it kills the daemons,
/// then deletes the namespaces, then (unless kept) the work directory.
#[derive(Debug)]
pub struct Lab {
    /// Running daemons (dropped first).
    pub daemons: Vec<Daemon>,
    /// Namespaces, by full name.
    pub nets: Vec<Netns>,
    /// Configurations, logs and captures.
    pub dir: WorkDir,
    /// Namespace name prefix.
    pub prefix: String,
    /// The `vpnd` executable.
    pub vpnd: PathBuf,
    /// Start daemons in their own process group (see [`Daemon::spawn`]).
    pub own_group: bool,
    /// Extra `vpnd` arguments (before `run`), e.g. `--workers 2`.
    pub daemon_args: Vec<String>,
}

impl Lab {
    /// A lab whose namespaces are called `PREFIX-...`, with its files in `dir`.
    pub fn new(vpnd: impl Into<PathBuf>, prefix: &str, dir: WorkDir) -> Lab {
        Lab {
            daemons: Vec::new(),
            nets: Vec::new(),
            dir,
            prefix: prefix.into(),
            vpnd: vpnd.into(),
            own_group: false,
            daemon_args: Vec::new(),
        }
    }

    /// Full namespace name for `short`.
    pub fn ns_name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// The namespace `short` (created by [`Lab::add_ns`]).
    pub fn ns(&self, short: &str) -> &Netns {
        let name = self.ns_name(short);
        self.nets
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no namespace {name} in this lab"))
    }

    /// Creates namespace `PREFIX-short`.
    pub fn add_ns(&mut self, short: &str) -> Result<String> {
        let ns = Netns::create(&self.ns_name(short))?;
        let name = ns.name.clone();
        self.nets.push(ns);
        Ok(name)
    }

    /// A gateway namespace: IP forwarding on.
    pub fn add_router(&mut self, short: &str) -> Result<String> {
        let name = self.add_ns(short)?;
        self.ns(short).sysctl("net.ipv4.ip_forward", "1")?;
        Ok(name)
    }

    /// Joins `a` and `b` with a veth pair (`if_a` in `a` with `addr_a`, `if_b` in `b` with
    /// `addr_b`; addresses with prefix length) and brings both ends up.
    pub fn link(
        &self,
        (a, if_a, addr_a): (&str, &str, &str),
        (b, if_b, addr_b): (&str, &str, &str),
    ) -> Result<()> {
        let (na, nb) = (self.ns(a), self.ns(b));
        na.ip(&[
            "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", &nb.name,
        ])?;
        for (n, dev, addr) in [(na, if_a, addr_a), (nb, if_b, addr_b)] {
            n.ip(&["addr", "add", addr, "dev", dev])?;
            n.ip(&["link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// A LAN host `short` behind gateway namespace `gw`: `host_addr/24` on its `eth0`,
    /// `gw_addr/24` on the gateway's `lan_if`, default route via the gateway.
    pub fn add_host(
        &mut self,
        short: &str,
        host_addr: &str,
        gw: &str,
        lan_if: &str,
        gw_addr: &str,
    ) -> Result<String> {
        let name = self.add_ns(short)?;
        self.link(
            (short, HOST_IF, &format!("{host_addr}/24")),
            (gw, lan_if, &format!("{gw_addr}/24")),
        )?;
        self.ns(short)
            .ip(&["route", "add", "default", "via", gw_addr])?;
        Ok(name)
    }

    /// Starts `vpnd` in namespace `short` with `config`; returns its index in
    /// `self.daemons`.
    pub fn start_vpnd(&mut self, short: &str, config: &str) -> Result<usize> {
        let ns = self.ns_name(short);
        let d = Daemon::spawn(
            &self.vpnd,
            &ns,
            short,
            &self.dir.path,
            config,
            &self.daemon_args,
            self.own_group,
        )?;
        self.daemons.push(d);
        Ok(self.daemons.len() - 1)
    }

    /// Starts `vpnd` in namespace `short` with an existing configuration file and
    /// `extra_args` after the lab's own (`--node node0`, ...); the daemon is named
    /// `short`. Returns its index in `self.daemons`.
    pub fn start_vpnd_file(
        &mut self,
        short: &str,
        config: &Path,
        extra_args: &[String],
    ) -> Result<usize> {
        let ns = self.ns_name(short);
        let mut args = self.daemon_args.clone();
        args.extend_from_slice(extra_args);
        let d = Daemon::spawn_file(
            &self.vpnd,
            &ns,
            short,
            &self.dir.path,
            config,
            &args,
            self.own_group,
        )?;
        self.daemons.push(d);
        Ok(self.daemons.len() - 1)
    }

    /// A Linux bridge `bridge` (up) in namespace `short`: an Ethernet segment that more
    /// than two namespaces share, such as the link a cluster's two nodes and a peer sit
    /// on. STP is off (the kernel default), so ports forward at once.
    pub fn add_bridge(&self, short: &str, bridge: &str) -> Result<()> {
        let ns = self.ns(short);
        ns.ip(&["link", "add", bridge, "type", "bridge"])
            .with_context(|| format!("creating bridge {bridge} in {}", ns.name))?;
        ns.ip(&["link", "set", bridge, "up"])
    }

    /// Plugs namespace `short` into `bridge` of namespace `switch` with a veth pair:
    /// `dev` in `short` (with `addr`, prefix length included, if any) and `SHORT-DEV`
    /// as the bridge port. Both ends come up.
    pub fn plug(
        &self,
        (short, dev, addr): (&str, &str, Option<&str>),
        (switch, bridge): (&str, &str),
    ) -> Result<()> {
        let port = format!("{short}-{dev}");
        // IFNAMSIZ: 15 characters and the terminating NUL.
        if port.len() > 15 {
            bail!(
                "bridge port name {port:?} is longer than 15 characters: shorten {short:?} or {dev:?}"
            );
        }
        let (n, sw) = (self.ns(short), self.ns(switch));
        n.ip(&[
            "link", "add", dev, "type", "veth", "peer", "name", &port, "netns", &sw.name,
        ])
        .with_context(|| format!("plugging {short} {dev} into {switch} {bridge}"))?;
        sw.ip(&["link", "set", &port, "master", bridge, "up"])?;
        if let Some(addr) = addr {
            n.ip(&["addr", "add", addr, "dev", dev])?;
        }
        n.ip(&["link", "set", dev, "up"])
    }

    /// The daemon started in namespace `short`.
    pub fn daemon(&mut self, short: &str) -> &mut Daemon {
        self.daemons
            .iter_mut()
            .rev()
            .find(|d| d.name == short)
            .unwrap_or_else(|| panic!("no daemon {short} in this lab"))
    }

    /// Every daemon's log tail, for failure messages.
    pub fn logs(&self) -> String {
        self.daemons
            .iter()
            .map(|d| {
                format!(
                    "---- {} ({}) ----\n{}\n",
                    d.name,
                    d.log.display(),
                    d.tail(40)
                )
            })
            .collect()
    }
}

/// The site-to-site topology:
///
/// ```text
/// lan-a 10.1.0.10 ── 10.1.0.1 gw-a 192.0.2.1 ── 192.0.2.2 gw-b 10.2.0.1 ── 10.2.0.10 lan-b
/// ```
///
/// Namespaces `PREFIX-lan-a`, `PREFIX-gw-a`, `PREFIX-gw-b`, `PREFIX-lan-b`; forwarding on
/// in the gateways; the hosts route everything via their gateway.
pub fn site_to_site(vpnd: impl Into<PathBuf>, prefix: &str, dir: WorkDir) -> Result<Lab> {
    let mut lab = Lab::new(vpnd, prefix, dir);
    lab.add_router("gw-a")?;
    lab.add_router("gw-b")?;
    lab.link(
        ("gw-a", WAN_IF, &format!("{OUTER_A}/24")),
        ("gw-b", WAN_IF, &format!("{OUTER_B}/24")),
    )?;
    lab.add_host("lan-a", LAN_A_HOST, "gw-a", LAN_IF, LAN_A_GW)?;
    lab.add_host("lan-b", LAN_B_HOST, "gw-b", LAN_IF, LAN_B_GW)?;
    // Resolve the neighbours now: a first ARP request lost while a veth comes up is
    // retried only a second later, which would stall the first IKE exchange.
    lab.ns("gw-a")
        .exec("ping", &["-c", "1", "-i", "0.2", "-w", "5", OUTER_B])
        .context("outer link check")?;
    lab.ns("lan-a")
        .exec("ping", &["-c", "1", "-w", "5", LAN_A_GW])
        .context("LAN A link check")?;
    lab.ns("lan-b")
        .exec("ping", &["-c", "1", "-w", "5", LAN_B_GW])
        .context("LAN B link check")?;
    Ok(lab)
}

/// Result of a `ping` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

impl PingStats {
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// Parses ping's "N packets transmitted, M received" summary.
pub fn parse_ping(out: &str) -> Option<PingStats> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some(PingStats {
        transmitted: nums.next()??,
        received: nums.next()??,
    })
}

/// `ping -c count -i interval` from namespace `ns` to `dst`; the statistics and output,
/// whether or not every reply came (ping's exit status is not an error here).
pub fn ping(ns: &str, dst: &str, count: u32, interval: &str) -> Result<(PingStats, String)> {
    let deadline = (f64::from(count) * interval.parse::<f64>().unwrap_or(1.0)).ceil() as u64 + 5;
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "2",
            "-w",
            &deadline.to_string(),
            dst,
        ])
        .stdin(Stdio::null())
        .output()
        .context("running ping")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stats = parse_ping(&text).with_context(|| {
        format!(
            "no ping summary in: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((stats, text))
}

/// Pings once a second (one probe each) until one reply comes, up to `timeout`.
pub fn wait_ping(ns: &str, dst: &str, timeout: Duration) -> Result<()> {
    wait_for(&format!("a ping reply from {dst} in {ns}"), timeout, || {
        Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| ())
    })
}

/// Runs `f` on a thread inside namespace `ns` (sockets it creates stay there).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            dataplane::io::netns::enter(ns)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in namespace {ns} panicked"))?
    })
}

/// Deterministic payload, with `marker` every 4 KiB so a capture can prove the
/// cleartext never reached the wire.
pub fn payload(len: usize, marker: &[u8]) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8)
        .collect();
    for chunk in data.chunks_mut(4096) {
        let n = marker.len().min(chunk.len());
        chunk[..n].copy_from_slice(&marker[..n]);
    }
    data
}

/// Sends `data` over TCP from namespace `client_ns` to `server` (a listener in
/// `server_ns`); returns what the server received and the elapsed time.
pub fn tcp_transfer(
    server_ns: &str,
    client_ns: &str,
    server: SocketAddr,
    data: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, Duration)> {
    let listener = in_netns(server_ns, || {
        TcpListener::bind(server).context("binding the TCP server")
    })?;
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let receiver = s.spawn(move || -> Result<Vec<u8>> {
            let mut conn = wait_for("the TCP connection", timeout, || {
                listener.accept().ok().map(|(c, _)| c)
            })?;
            conn.set_nonblocking(false)?;
            conn.set_read_timeout(Some(timeout))?;
            let mut got = Vec::with_capacity(data.len());
            conn.read_to_end(&mut got).context("receiving")?;
            Ok(got)
        });
        let sent = in_netns(client_ns, || {
            let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(5))
                .context("connecting through the tunnel")?;
            c.set_write_timeout(Some(timeout))?;
            c.write_all(data).context("sending")?;
            c.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        });
        let got = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("TCP receiver panicked"))?;
        sent?;
        Ok((got?, start.elapsed()))
    })
}

/// A tcpdump capture on one interface of a namespace, stopped on drop.
#[derive(Debug)]
pub struct Capture {
    child: Child,
    pub path: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i dev -w FILE` in `ns` and waits until it is listening.
    pub fn start(ns: &str, dev: &str, path: PathBuf) -> Result<Self> {
        let path_s = path.to_string_lossy().into_owned();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "--immediate-mode",
                "-ni",
                dev,
                "-U",
                "-s",
                "0",
                "-w",
                &path_s,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (apt-get install tcpdump)")?;
        let mut stderr = child.stderr.take().context("tcpdump stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut seen = Vec::new();
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(9).any(|w| w == b"listening") {
                    let _ = tx.send(());
                }
            }
        });
        let capture = Capture { child, path };
        rx.recv_timeout(Duration::from_secs(10))
            .context("tcpdump did not start listening")?;
        Ok(capture)
    }

    /// Stops tcpdump (after a moment for packets still in flight) and returns the
    /// Ethernet frames it captured.
    pub fn finish(self) -> Result<Vec<Vec<u8>>> {
        Ok(self.finish_timed()?.into_iter().map(|f| f.data).collect())
    }

    /// [`Capture::finish`] with each frame's capture time.
    pub fn finish_timed(mut self) -> Result<Vec<PcapFrame>> {
        std::thread::sleep(Duration::from_millis(300));
        self.stop();
        let data = fs::read(&self.path).context("reading the capture")?;
        parse_pcap_timed(&data)
    }

    fn stop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill with the pid of our own child process; no pointers.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Frames of a classic pcap file (either byte order).
pub fn parse_pcap(data: &[u8]) -> Result<Vec<Vec<u8>>> {
    Ok(parse_pcap_timed(data)?
        .into_iter()
        .map(|f| f.data)
        .collect())
}

/// One captured frame and when it was captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFrame {
    /// Capture time, since the Unix epoch (tcpdump stamps with the wall clock).
    pub time: Duration,
    /// The link-layer frame (Ethernet here).
    pub data: Vec<u8>,
}

/// Frames of a classic pcap file with their timestamps: either byte order, microsecond
/// or nanosecond resolution.
pub fn parse_pcap_timed(data: &[u8]) -> Result<Vec<PcapFrame>> {
    let (le, nanos) = match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => (true, false),
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => (false, false),
        Some([0x4d, 0x3c, 0xb2, 0xa1]) => (true, true),
        Some([0xa1, 0xb2, 0x3c, 0x4d]) => (false, true),
        _ => bail!("not a pcap file"),
    };
    let word = |off: usize| {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let (secs, frac) = (u64::from(word(off)), word(off + 4));
        let caplen = word(off + 8) as usize;
        off += 16;
        if off + caplen > data.len() {
            break;
        }
        let sub = if nanos {
            Duration::from_nanos(u64::from(frac))
        } else {
            Duration::from_micros(u64::from(frac))
        };
        frames.push(PcapFrame {
            time: Duration::from_secs(secs) + sub,
            data: data[off..off + caplen].to_vec(),
        });
        off += caplen;
    }
    Ok(frames)
}

/// What an outer link carried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WireSummary {
    /// IKE on UDP 500, or on 4500 with the non-ESP marker.
    pub ike: usize,
    /// ESP in UDP 4500 (non-zero SPI).
    pub esp_in_udp: usize,
    /// NAT-T keepalives (one 0xff byte on 4500).
    pub keepalive: usize,
    /// Plain ESP (IP protocol 50).
    pub esp: usize,
    /// IPv6 link housekeeping (ICMPv6/MLD from link-local or unspecified sources).
    pub ipv6_link: usize,
    /// ARP and other non-IP frames.
    pub non_ip: usize,
    /// Everything else: each a description. Must be empty on a tunnel's outer link.
    pub unexpected: Vec<String>,
    /// Frames containing the marker bytes.
    pub marker_hits: usize,
}

/// Classifies captured Ethernet frames of an outer link: only IKE, ESP, ESP-in-UDP and
/// keepalives are expected; any IPv4 packet with a 10.0.0.0/8 (inner) address is
/// reported as unexpected, as is any other protocol.
pub fn summarize_outer(frames: &[Vec<u8>], marker: &[u8]) -> WireSummary {
    let mut s = WireSummary::default();
    for (i, f) in frames.iter().enumerate() {
        if !marker.is_empty() && f.windows(marker.len()).any(|w| w == marker) {
            s.marker_hits += 1;
        }
        if f.len() < 14 {
            s.unexpected.push(format!("frame {i}: runt"));
            continue;
        }
        let pkt = &f[14..];
        match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 if pkt.len() >= 20 => {
                let hl = usize::from(pkt[0] & 0x0f) * 4;
                let (src, dst) = (&pkt[12..16], &pkt[16..20]);
                let l4 = pkt.get(hl..).unwrap_or(&[]);
                let desc = || {
                    format!(
                        "frame {i}: IPv4 {}.{}.{}.{} -> {}.{}.{}.{} proto {}",
                        src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], pkt[9]
                    )
                };
                if src[0] == 10 || dst[0] == 10 {
                    s.unexpected
                        .push(format!("{} (inner address on the wire)", desc()));
                    continue;
                }
                match pkt[9] {
                    50 => s.esp += 1,
                    17 if l4.len() >= 8 => {
                        let sport = u16::from_be_bytes([l4[0], l4[1]]);
                        let dport = u16::from_be_bytes([l4[2], l4[3]]);
                        let body = &l4[8..];
                        if sport == 500 && dport == 500 {
                            s.ike += 1;
                        } else if sport == 4500 && dport == 4500 {
                            if body == [0xff] {
                                s.keepalive += 1;
                            } else if body.len() >= 4 && body[..4] == [0, 0, 0, 0] {
                                s.ike += 1;
                            } else if body.len() >= 8 {
                                s.esp_in_udp += 1;
                            } else {
                                s.unexpected
                                    .push(format!("{}: short UDP 4500 payload", desc()));
                            }
                        } else {
                            s.unexpected
                                .push(format!("{}: UDP {sport} -> {dport}", desc()));
                        }
                    }
                    _ => s.unexpected.push(desc()),
                }
            }
            0x86dd if pkt.len() >= 40 => {
                let src_link_local = pkt[8] == 0xfe && pkt[9] & 0xc0 == 0x80;
                let src_unspec = pkt[8..24].iter().all(|b| *b == 0);
                // ICMPv6 (58) or a hop-by-hop header (0, MLD reports).
                if (src_link_local || src_unspec) && matches!(pkt[6], 0 | 58) {
                    s.ipv6_link += 1;
                } else {
                    s.unexpected
                        .push(format!("frame {i}: IPv6 next header {}", pkt[6]));
                }
            }
            0x0800 | 0x86dd => s.unexpected.push(format!("frame {i}: truncated IP")),
            _ => s.non_ip += 1,
        }
    }
    s
}

/// `ip -s link show dev DEV` counters in namespace `ns`: (rx packets, rx bytes,
/// tx packets, tx bytes).
pub fn link_counters(ns: &str, dev: &str) -> Result<(u64, u64, u64, u64)> {
    let out = run("ip", &["-n", ns, "-s", "-j", "link", "show", "dev", dev])?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Tiny extraction instead of a JSON dependency: "rx":{"bytes":N,"packets":N,...}.
    let field = |dir: &str, name: &str| -> Option<u64> {
        let start = text.find(&format!("\"{dir}\":{{"))?;
        let rest = &text[start..];
        let at = rest.find(&format!("\"{name}\":"))? + name.len() + 3;
        rest[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    Ok((
        field("rx", "packets").unwrap_or(0),
        field("rx", "bytes").unwrap_or(0),
        field("tx", "packets").unwrap_or(0),
        field("tx", "bytes").unwrap_or(0),
    ))
}

/// SPI values (inbound, outbound) of the "IPsec SA pair installed" log lines.
pub fn installed_spis(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains("IPsec SA pair installed"))
        .filter_map(|l| Some((log_field(l, "inbound")?, log_field(l, "outbound")?)))
        .collect()
}

/// Value of `key=value` in a tracing log line.
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let at = line
        .match_indices(&pat)
        .find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ')?
        .0
        + pat.len();
    Some(
        line[at..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    )
}

/// Namespace prefix and work directory of one test: `KIND{pid}-TAG` and
/// `vpnd-KIND-{pid}-TAG` in the temporary directory. The process id keeps concurrent
/// runs (two engineers, two checkouts) apart.
pub fn lab_names(kind: &str, tag: &str) -> Result<(String, WorkDir)> {
    let pid = std::process::id();
    let dir = WorkDir::create(&format!("vpnd-{kind}-{pid}-{tag}"))?;
    Ok((format!("{kind}{pid}-{tag}"), dir))
}

/// How long [`netns_test_lock`] waits for another run's tests to finish.
pub const NETNS_LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

/// An exclusive `flock` on a file, released when dropped (closing the file releases
/// it, also when the process dies, so a crashed run leaves no stale lock).
#[derive(Debug)]
pub struct ExclusiveLock {
    _file: fs::File,
    /// The lock file.
    pub path: PathBuf,
}

impl ExclusiveLock {
    /// Takes the lock on `path` (created if missing), polling until `timeout`. Locks
    /// belong to open files, so two threads of one process exclude each other too.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self> {
        use std::os::fd::AsRawFd as _;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: flock on a descriptor this function owns; no pointers.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(ExclusiveLock {
                    _file: file,
                    path: path.to_owned(),
                });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                bail!("locking {}: {e}", path.display());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {}: another test run holds it",
                    path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The lock that runs timing-sensitive root tests one at a time, across test binaries
/// and concurrent `cargo test` processes: failover gaps measured on two shared cores
/// mean nothing while another lab's daemons compete for them.
pub fn netns_test_lock() -> Result<ExclusiveLock> {
    ExclusiveLock::acquire(
        &std::env::temp_dir().join("vpnd-netns-tests.lock"),
        NETNS_LOCK_WAIT,
    )
}

/// Runs `cmd` with its output captured, killing it after `timeout`: for clients that
/// would wait forever on a stopped server (a SIGSTOPped daemon's kernel still accepts
/// TCP connections, and nobody answers on them).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// `vpnctl` against a daemon's management API, run inside the daemon's namespace (the
/// API listens on that namespace's loopback), with a bounded run time.
#[derive(Debug, Clone)]
pub struct Vpnctl {
    /// The `vpnctl` executable.
    pub exe: PathBuf,
    /// The PKI directory (`vpnctl pki init`).
    pub pki: PathBuf,
    /// `--server`.
    pub server: String,
    /// `--identity`.
    pub identity: String,
    /// Longest run of one command.
    pub timeout: Duration,
}

impl Vpnctl {
    /// As operator, against `127.0.0.1:50051`, 10 s per command.
    pub fn new(exe: impl Into<PathBuf>, pki: impl Into<PathBuf>) -> Self {
        Vpnctl {
            exe: exe.into(),
            pki: pki.into(),
            server: "127.0.0.1:50051".into(),
            identity: "operator".into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// `vpnctl --json ARGS` in namespace `ns`: its standard output, or an error with
    /// the command and what it printed.
    pub fn run(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(["--server", &self.server, "--identity", &self.identity])
            .arg("--pki")
            .arg(&self.pki)
            .arg("--json")
            .args(args);
        let out = output_within(&mut cmd, self.timeout)
            .with_context(|| format!("vpnctl {} in {ns}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "`vpnctl {}` in {ns} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`Vpnctl::run`], its output parsed as JSON.
    pub fn json(&self, ns: &str, args: &[&str]) -> Result<serde_json::Value> {
        let text = self.run(ns, args)?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "`vpnctl --json {}` in {ns} printed no JSON: {text}",
                args.join(" ")
            )
        })
    }
}

/// The MAC address of `dev` in namespace `ns`.
pub fn link_mac(ns: &str, dev: &str) -> Result<[u8; 6]> {
    let out = run("ip", &["-n", ns, "-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`ip -j link` output")?;
    let text = v[0]["address"]
        .as_str()
        .with_context(|| format!("no address of {dev} in {ns}: {v}"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .with_context(|| format!("bad MAC address {text:?}"))?;
    }
    Ok(mac)
}

/// The IPv4 and IPv6 addresses (without prefix length) on `dev` in namespace `ns`.
pub fn link_addresses(ns: &str, dev: &str) -> Result<Vec<String>> {
    let out = run("ip", &["-n", ns, "-j", "addr", "show", "dev", dev])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`ip -j addr` output")?;
    Ok(v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["local"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ---- sequence-numbered UDP probe ----

/// First bytes of every probe datagram, so that stray traffic is never counted.
const PROBE_MAGIC: &[u8; 4] = b"VPRB";
/// Probe datagram size: small, so the probe measures forwarding, not bandwidth.
const PROBE_LEN: usize = 64;
/// How long receivers keep listening after the senders stop, for packets in flight.
const PROBE_DRAIN: Duration = Duration::from_millis(500);

/// One probe datagram as received: its sequence number, and when it was sent and
/// received, both as offsets from the probe's start.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    seq: u64,
    sent: Duration,
    arrived: Duration,
}

/// One direction's record.
#[derive(Debug, Default)]
struct FlowLog {
    sent: std::sync::atomic::AtomicU64,
    send_errors: std::sync::atomic::AtomicU64,
    arrivals: std::sync::Mutex<Vec<Arrival>>,
}

/// What one direction of a [`UdpProbe`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// `from -> to`.
    pub name: String,
    /// Datagrams sent (send errors included: the network had no route for them).
    pub sent: u64,
    /// Sends that failed at once (no route or neighbour).
    pub send_errors: u64,
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Sent and never received.
    pub lost: u64,
    /// Sequence numbers received more than once (each extra copy counts).
    pub duplicates: u64,
    /// Arrivals with a lower sequence number than one received before.
    pub reordered: u64,
    /// The longest time without an arrival while the sender was sending (from the
    /// start, between arrivals, or from the last arrival to the sender's stop).
    pub longest_gap: Duration,
    /// When that gap began, from the probe's start.
    pub gap_from: Duration,
}

impl std::fmt::Display for FlowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: sent {} ({} send errors), received {}, lost {}, duplicates {}, reordered {}, \
             longest gap {} ms (from {:.3} s)",
            self.name,
            self.sent,
            self.send_errors,
            self.received,
            self.lost,
            self.duplicates,
            self.reordered,
            self.longest_gap.as_millis(),
            self.gap_from.as_secs_f64()
        )
    }
}

/// A sequence-numbered UDP flow in each direction between two hosts in two
/// namespaces, one datagram per `interval` each way, recording every arrival: loss,
/// duplicates (a replayed packet that got through), reordering and the longest gap
/// (the outage a failover caused) per direction.
///
/// The sockets are created on threads that entered the hosts' namespaces (a socket
/// stays in the namespace it was created in), and used from plain threads.
#[derive(Debug)]
pub struct UdpProbe {
    start: Instant,
    names: [String; 2],
    flows: [std::sync::Arc<FlowLog>; 2],
    sending: std::sync::Arc<std::sync::atomic::AtomicBool>,
    receiving: std::sync::Arc<std::sync::atomic::AtomicBool>,
    senders: Vec<std::thread::JoinHandle<()>>,
    receivers: Vec<std::thread::JoinHandle<()>>,
    stopped_at: Option<Duration>,
}

impl UdpProbe {
    /// Starts the flows between `a` and `b`: (namespace, address to bind and to send
    /// to). Direction 0 is a to b, direction 1 b to a.
    pub fn start(a: (&str, SocketAddr), b: (&str, SocketAddr), interval: Duration) -> Result<Self> {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let bind = |(ns, addr): (&str, SocketAddr)| {
            in_netns(ns, || {
                let s = std::net::UdpSocket::bind(addr)
                    .with_context(|| format!("binding the probe socket {addr} in {ns}"))?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                s.set_write_timeout(Some(Duration::from_millis(100)))?;
                Ok(s)
            })
        };
        let sockets = [bind(a)?, bind(b)?];
        let peers = [b.1, a.1];
        let mut probe = UdpProbe {
            start: Instant::now(),
            names: [format!("{} -> {}", a.0, b.0), format!("{} -> {}", b.0, a.0)],
            flows: [Arc::default(), Arc::default()],
            sending: Arc::new(AtomicBool::new(true)),
            receiving: Arc::new(AtomicBool::new(true)),
            senders: Vec::new(),
            receivers: Vec::new(),
            stopped_at: None,
        };
        for dir in 0..2 {
            // Direction `dir` leaves from socket `dir` and arrives at the other.
            let tx = sockets[dir].try_clone()?;
            let rx = sockets[1 - dir].try_clone()?;
            let (to, start) = (peers[dir], probe.start);
            let (log_tx, log_rx) = (probe.flows[dir].clone(), probe.flows[dir].clone());
            let (sending, receiving) = (probe.sending.clone(), probe.receiving.clone());
            let tag = dir as u8;
            probe.senders.push(std::thread::spawn(move || {
                probe_send(&tx, to, tag, start, interval, &sending, &log_tx);
            }));
            probe.receivers.push(std::thread::spawn(move || {
                probe_receive(&rx, tag, start, &receiving, &log_rx);
            }));
        }
        Ok(probe)
    }

    /// Datagrams of direction `dir` (0: a to b) sent at or after `t` and received.
    pub fn received_sent_after(&self, dir: usize, t: Instant) -> usize {
        let from = t.saturating_duration_since(self.start);
        self.flows[dir]
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.sent >= from)
            .count()
    }

    /// Waits until both directions received `count` datagrams sent at or after `t`:
    /// traffic flows again after an event at `t`.
    pub fn wait_flowing_after(&self, t: Instant, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = [
                self.received_sent_after(0, t),
                self.received_sent_after(1, t),
            ];
            if got.iter().all(|n| *n >= count) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {count} probe datagrams each way \
                     sent after the event: {}: {}, {}: {}",
                    self.names[0],
                    got[0],
                    self.names[1],
                    got[1]
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops sending, waits for what is in flight, and reports each direction.
    pub fn stop(mut self) -> [FlowStats; 2] {
        self.halt();
        [self.stats(0), self.stats(1)]
    }

    /// [`UdpProbe::stop`], with each direction's longest gap counted from its last
    /// arrival before `event` on: the outage the event caused, whatever the flow did
    /// before it.
    pub fn stop_around(mut self, event: Instant) -> ([FlowStats; 2], [Duration; 2]) {
        self.halt();
        let from = event.saturating_duration_since(self.start);
        let end = self.stopped_at.unwrap_or_else(|| self.start.elapsed());
        let gaps = [0, 1].map(|dir| {
            let arrivals = self.flows[dir]
                .arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Arrivals are recorded in arrival order.
            let before = arrivals
                .iter()
                .rev()
                .map(|a| a.arrived)
                .find(|t| *t < from)
                .unwrap_or(Duration::ZERO);
            let mut points = vec![before];
            points.extend(
                arrivals
                    .iter()
                    .map(|a| a.arrived.min(end))
                    .filter(|t| *t >= from),
            );
            points.push(end);
            points
                .windows(2)
                .map(|w| w[1].saturating_sub(w[0]))
                .max()
                .unwrap_or_default()
        });
        ([self.stats(0), self.stats(1)], gaps)
    }

    fn halt(&mut self) {
        use std::sync::atomic::Ordering;
        if self.stopped_at.is_some() {
            return;
        }
        self.sending.store(false, Ordering::Relaxed);
        for t in self.senders.drain(..) {
            let _ = t.join();
        }
        self.stopped_at = Some(self.start.elapsed());
        std::thread::sleep(PROBE_DRAIN);
        self.receiving.store(false, Ordering::Relaxed);
        for t in self.receivers.drain(..) {
            let _ = t.join();
        }
    }

    fn stats(&self, dir: usize) -> FlowStats {
        use std::sync::atomic::Ordering;
        let log = &self.flows[dir];
        let arrivals = log.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let sent = log.sent.load(Ordering::Relaxed);
        let mut seen = std::collections::HashSet::new();
        let (mut duplicates, mut reordered, mut highest) = (0, 0, None);
        for a in arrivals.iter() {
            if !seen.insert(a.seq) {
                duplicates += 1;
            }
            match highest {
                Some(h) if a.seq < h => reordered += 1,
                _ => highest = Some(a.seq),
            }
        }
        let end = self.stopped_at.unwrap_or_else(|| self.start.elapsed());
        let mut points: Vec<Duration> = vec![Duration::ZERO];
        points.extend(arrivals.iter().map(|a| a.arrived.min(end)));
        points.push(end);
        let (longest_gap, gap_from) = points
            .windows(2)
            .map(|w| (w[1].saturating_sub(w[0]), w[0]))
            .max_by_key(|(gap, _)| *gap)
            .unwrap_or_default();
        let received = seen.len() as u64;
        FlowStats {
            name: self.names[dir].clone(),
            sent,
            send_errors: log.send_errors.load(Ordering::Relaxed),
            received,
            lost: sent.saturating_sub(received),
            duplicates,
            reordered,
            longest_gap,
            gap_from,
        }
    }
}

impl Drop for UdpProbe {
    fn drop(&mut self) {
        self.halt();
    }
}

fn probe_send(
    sock: &std::net::UdpSocket,
    to: SocketAddr,
    dir: u8,
    start: Instant,
    interval: Duration,
    sending: &std::sync::atomic::AtomicBool,
    log: &FlowLog,
) {
    use std::sync::atomic::Ordering;
    let mut buf = [0u8; PROBE_LEN];
    buf[..4].copy_from_slice(PROBE_MAGIC);
    buf[4] = dir;
    let mut next = Instant::now();
    let mut seq = 0u64;
    while sending.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let sent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        buf[5..13].copy_from_slice(&seq.to_be_bytes());
        buf[13..21].copy_from_slice(&sent.to_be_bytes());
        if sock.send_to(&buf, to).is_err() {
            log.send_errors.fetch_add(1, Ordering::Relaxed);
        }
        log.sent.fetch_add(1, Ordering::Relaxed);
        seq += 1;
        next += interval;
        // After a stall of this process (two shared cores), carry on from now instead of
        // sending the missed slots in a burst that the network never asked for.
        let now = Instant::now();
        if now > next + interval * 20 {
            next = now;
        }
    }
}

fn probe_receive(
    sock: &std::net::UdpSocket,
    dir: u8,
    start: Instant,
    receiving: &std::sync::atomic::AtomicBool,
    log: &FlowLog,
) {
    use std::sync::atomic::Ordering;
    let mut buf = [0u8; 256];
    while receiving.load(Ordering::Relaxed) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n < 21 || &buf[..4] != PROBE_MAGIC || buf[4] != dir {
            continue;
        }
        let arrived = start.elapsed();
        let field = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at..at + 8]);
            u64::from_be_bytes(b)
        };
        log.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arrival {
                seq: field(5),
                sent: Duration::from_nanos(field(13)),
                arrived,
            });
    }
}

// ---- ESP on the wire ----

/// One ESP packet in a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPacket {
    /// Capture time, since the Unix epoch.
    pub time: Duration,
    /// The Ethernet source: which node sent it, when nodes do not share a MAC.
    pub src_mac: [u8; 6],
    /// Outer source address.
    pub src: std::net::Ipv4Addr,
    /// Outer destination address.
    pub dst: std::net::Ipv4Addr,
    /// Security parameter index.
    pub spi: u32,
    /// Sequence number (the low 32 bits with ESN).
    pub seq: u32,
    /// ESP in UDP 4500 (RFC 3948) rather than IP protocol 50.
    pub udp: bool,
}

/// ESP packets in captured Ethernet frames over IPv4: raw (IP protocol 50) and in UDP
/// 4500 (after the UDP header; IKE behind the non-ESP marker and NAT-T keepalives are
/// not ESP). Non-first fragments carry no ESP header and are skipped.
pub fn esp_packets(frames: &[PcapFrame]) -> Vec<EspPacket> {
    let mut out = Vec::new();
    for f in frames {
        let d = &f.data;
        if d.len() < 34 || u16::from_be_bytes([d[12], d[13]]) != 0x0800 {
            continue;
        }
        let ip = &d[14..];
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let fragment_offset = u16::from_be_bytes([ip[6] & 0x1f, ip[7]]);
        if hl < 20 || ip.len() < hl || fragment_offset != 0 {
            continue;
        }
        let l4 = &ip[hl..];
        let (esp, udp) = match ip[9] {
            50 => (l4, false),
            17 if l4.len() >= 8 => {
                let sport = u16::from_be_bytes([l4[0], l4[1]]);
                let dport = u16::from_be_bytes([l4[2], l4[3]]);
                let body = &l4[8..];
                if (sport != 4500 && dport != 4500) || body.len() < 8 || body[..4] == [0; 4] {
                    continue;
                }
                (body, true)
            }
            _ => continue,
        };
        if esp.len() < 8 {
            continue;
        }
        let word = |at: usize| u32::from_be_bytes([esp[at], esp[at + 1], esp[at + 2], esp[at + 3]]);
        let addr = |at: usize| std::net::Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(&d[6..12]);
        out.push(EspPacket {
            time: f.time,
            src_mac,
            src: addr(12),
            dst: addr(16),
            spi: word(0),
            seq: word(4),
            udp,
        });
    }
    out
}

/// (SPI, sequence number, times seen) of every pair seen more than once: a sequence
/// number is the AES-GCM nonce, so a repeat on the wire is a nonce reused under one key
/// (unless the capture saw one packet twice, which a capture on one end host's
/// interface does not).
pub fn repeated_esp(packets: &[EspPacket]) -> Vec<(u32, u32, usize)> {
    let mut count: std::collections::BTreeMap<(u32, u32), usize> = Default::default();
    for p in packets {
        *count.entry((p.spi, p.seq)).or_default() += 1;
    }
    count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((spi, seq), n)| (spi, seq, n))
        .collect()
}
