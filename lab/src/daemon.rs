//! `vpnd` daemons in namespaces and the labs (topology plus daemons) that own them.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{
    DAEMON_LOG, HOST_IF, LAN_A_GW, LAN_A_HOST, LAN_B_GW, LAN_B_HOST, LAN_IF, Netns, OUTER_A,
    OUTER_B, WAN_IF, WorkDir, strip_ansi, wait_for,
};

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
        launch: &Launch<'_>,
    ) -> Result<Daemon> {
        let config_path = dir.join(format!("{name}.toml"));
        fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        Self::spawn_file(vpnd, ns, name, dir, &config_path, launch)
    }

    /// [`Daemon::spawn`] with a configuration file that already exists: one file that
    /// several daemons share, as the members of a chassis cluster do.
    pub fn spawn_file(
        vpnd: &Path,
        ns: &str,
        name: &str,
        dir: &Path,
        config_path: &Path,
        launch: &Launch<'_>,
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
            .args(launch.args)
            .arg("run")
            .env("NO_COLOR", "1")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log file")?)
            .stderr(log);
        if launch.own_group {
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
    /// Extra environment of the daemons, e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub daemon_env: Vec<(String, String)>,
}

/// How a daemon is started besides its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// Extra `vpnd` arguments (before `run`).
    pub args: &'a [String],
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// Its own process group (see [`Daemon::spawn`]).
    pub own_group: bool,
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
            daemon_env: Vec::new(),
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
            &Launch {
                args: &self.daemon_args,
                env: &self.daemon_env,
                own_group: self.own_group,
            },
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
            &Launch {
                args: &args,
                env: &self.daemon_env,
                own_group: self.own_group,
            },
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
