//! The docker-compose cluster (`docker-compose.yml`) as a chaos target. Each
//! container's network namespace gets a name (`ip netns attach`), so the lab's tools
//! work on it unchanged: the probe between lan1 and lan2, the capture on the peer's
//! external link, nftables, link state, `vpnctl` inside a member's namespace. Faults
//! that stop or freeze a member go through docker (`kill`, `stop`, `pause`, `start`).
//!
//! Needs the images and `docker/pki` from `scripts/docker-build.sh`, and docker compose
//! (v2, or v1's `docker-compose`). Every scenario brings the project up fresh and takes
//! it down with its volumes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use lab::cluster::{Cluster, DATA_GROUP, NODES, PEER_OUTER, PROBE_INTERVAL};
use lab::{Capture, EspPacket, UdpProbe, Vpnctl, WorkDir};

use crate::target::{Link, Target};

const SERVICES: [&str; 6] = ["witness", "node0", "node1", "peer", "lan1", "lan2"];
/// The probe's port: lan1 and lan2 run `probe host`, which keeps 7001.
const PROBE_PORT: u16 = 7002;
const LAN1_HOST: &str = "10.1.0.10";
const LAN2_HOST: &str = "10.2.0.10";
/// From `compose up` to a primary and a tunnel (images start in about 4 s here).
const ESTABLISH: Duration = Duration::from_secs(90);

/// How to reach the deployment: the repository with `docker-compose.yml`, the compose
/// command, the project name and the host's `vpnctl`.
#[derive(Debug, Clone)]
pub struct Compose {
    root: PathBuf,
    command: Vec<String>,
    project: String,
    vpnctl: PathBuf,
    /// Compose files beyond `docker-compose.yml` (a scenario's configuration overlay).
    overlays: Vec<PathBuf>,
}

impl Compose {
    /// Checks what the deployment needs before any scenario starts.
    pub fn new(root: &Path, vpnctl: &Path) -> Result<Compose> {
        let works = |cmd: &[&str]| {
            Command::new(cmd[0])
                .args(&cmd[1..])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let command: Vec<String> = if works(&["docker", "compose", "version"]) {
            vec!["docker".into(), "compose".into()]
        } else if works(&["docker-compose", "version"]) {
            vec!["docker-compose".into()]
        } else {
            bail!("neither `docker compose` nor docker-compose is installed");
        };
        for image in ["vpnd-gateway:local", "vpnd-probe:local"] {
            if !works(&["docker", "image", "inspect", image]) {
                bail!("no image {image}: run scripts/docker-build.sh first");
            }
        }
        if !root.join("docker/pki/ca.pem").is_file() {
            bail!("no docker/pki: run scripts/docker-build.sh first");
        }
        Ok(Compose {
            root: root.to_owned(),
            command,
            project: "vpnd-chaos".into(),
            vpnctl: vpnctl.to_owned(),
            overlays: Vec::new(),
        })
    }

    fn compose(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..]).args(["-p", &self.project]);
        if !self.overlays.is_empty() {
            cmd.arg("-f").arg(self.root.join("docker-compose.yml"));
            for o in &self.overlays {
                cmd.arg("-f").arg(o);
            }
        }
        let out = cmd
            .args(args)
            .current_dir(&self.root)
            .output()
            .with_context(|| format!("running {} {args:?}", self.command.join(" ")))?;
        if !out.status.success() {
            bail!(
                "{} {args:?} failed: {}",
                self.command.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A fresh deployment with group 1's primary elected and the tunnel up; with
    /// `preempt`, docker/cluster.toml plus `preempt = { delay }` for group 1, mounted
    /// over the members' configuration by a compose overlay.
    pub fn up(&self, preempt: Option<Duration>) -> Result<ComposeCluster> {
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
        let work = WorkDir::create(&format!("{}-{}", self.project, std::process::id()))?;
        let mut compose = self.clone();
        let mut config = self.root.join("docker/cluster.toml");
        if let Some(delay) = preempt {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            config = work.path.join("cluster-preempt.toml");
            std::fs::write(&config, lab::cluster::with_preempt(&text, delay)?)?;
            let mount = format!("      - {}:/etc/vpnd/cluster.toml:ro\n", config.display());
            let overlay = work.path.join("preempt.yml");
            let services: String = ["witness", "node0", "node1"]
                .iter()
                .map(|s| format!("  {s}:\n    volumes:\n{mount}"))
                .collect();
            std::fs::write(&overlay, format!("services:\n{services}"))?;
            compose.overlays.push(overlay);
        }
        let mut c = ComposeCluster {
            vpnctl: Vpnctl::new(&self.vpnctl, self.root.join("docker/pki")),
            frozen: None,
            capture: None,
            macs: [[0; 6]; 2],
            lease: lab::cluster::lease_of(&config)?,
            work,
            started: 0,
            compose,
        };
        c.compose.compose(&["up", "-d"])?;
        for s in SERVICES {
            c.attach(s)?;
        }
        c.wait_primary(DATA_GROUP, None, ESTABLISH)?;
        lab::wait_ping(&c.ns("lan1"), LAN2_HOST, ESTABLISH)
            .context("the tunnel (ping lan1 -> lan2 through the cluster)")?;
        for (i, node) in NODES.iter().enumerate() {
            c.macs[i] = lab::link_mac(&c.ns(node), "ext0")?;
        }
        let dev = c.dev_with("peer", &format!("{PEER_OUTER}/"))?;
        let pcap = c.work.path.join("peer-ext.pcap");
        c.capture = Some(Capture::start(&c.ns("peer"), &dev, pcap)?);
        Ok(c)
    }
}

/// A running compose deployment; taken down (with its volumes) when dropped.
#[derive(Debug)]
pub struct ComposeCluster {
    compose: Compose,
    vpnctl: Vpnctl,
    frozen: Option<String>,
    capture: Option<Capture>,
    /// node0's and node1's `ext0` MACs, to tell their ESP apart.
    macs: [[u8; 6]; 2],
    lease: Duration,
    work: WorkDir,
    /// Containers started again so far (for the logs they are told apart by).
    started: usize,
}

impl ComposeCluster {
    fn container(&self, service: &str) -> Result<String> {
        let id = self
            .compose
            .compose(&["ps", "-q", service])?
            .trim()
            .to_owned();
        if id.is_empty() {
            bail!("no container for service {service}");
        }
        Ok(id)
    }

    fn docker(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("docker")
            .args(args)
            .output()
            .with_context(|| format!("running docker {args:?}"))?;
        if !out.status.success() {
            bail!(
                "docker {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Names the namespace of `service`'s container (again, after a restart: the
    /// process and its namespace are new).
    fn attach(&self, service: &str) -> Result<()> {
        let id = self.container(service)?;
        let pid = self.docker(&["inspect", "-f", "{{.State.Pid}}", &id])?;
        let name = self.ns(service);
        let _ = lab::run("ip", &["netns", "del", &name]);
        lab::run("ip", &["netns", "attach", &name, pid.trim()])
            .with_context(|| format!("naming the namespace of {service}"))?;
        Ok(())
    }

    fn running(&self, service: &str) -> bool {
        self.container(service)
            .and_then(|id| self.docker(&["inspect", "-f", "{{.State.Running}}", &id]))
            .is_ok_and(|s| s.trim() == "true")
    }

    fn logs(&self, service: &str) -> String {
        self.container(service)
            .and_then(|id| {
                let out = Command::new("docker").args(["logs", &id]).output()?;
                Ok(format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            })
            .unwrap_or_default()
    }

    /// `member`'s interface with an address starting `prefix` (docker does not keep
    /// the interfaces' order, and only the gateway nodes rename theirs).
    fn dev_with(&self, member: &str, prefix: &str) -> Result<String> {
        let out = lab::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns(member),
                "ip",
                "-o",
                "-4",
                "addr",
                "show",
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.contains(&format!(" {prefix}")))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
            .with_context(|| format!("no address {prefix}* in {member}: {text}"))
    }

    /// Waits until a restarted member runs again: its log says so once more.
    fn wait_running(&self, service: &str, before: usize) -> Result<()> {
        let needle = if service == "witness" {
            "witness running"
        } else {
            "vpnd running"
        };
        let deadline = Instant::now() + ESTABLISH;
        while self.logs(service).matches(needle).count() <= before {
            if Instant::now() >= deadline {
                bail!("{service} did not log {needle:?} again within {ESTABLISH:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        if let Some(c) = self.capture.take() {
            drop(c);
        }
        if self.work.keep {
            for s in SERVICES {
                let _ = std::fs::write(self.work.path.join(format!("{s}.log")), self.logs(s));
            }
        }
        let _ = self.compose.compose(&["down", "-v", "--remove-orphans"]);
        for s in SERVICES {
            let _ = lab::run("ip", &["netns", "del", &self.ns(s)]);
        }
    }
}

impl Cluster for ComposeCluster {
    fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.compose.project)
    }

    fn vpnctl(&self) -> &Vpnctl {
        &self.vpnctl
    }

    fn answers(&mut self, node: &str) -> bool {
        self.frozen.as_deref() != Some(node) && self.running(node)
    }

    fn node_macs(&self) -> [[u8; 6]; 2] {
        self.macs
    }

    fn peer_ike_inits(&mut self) -> usize {
        let log = self.logs("peer");
        log.matches("responding to IKE_SA_INIT").count() + log.matches("initiating IKE SA").count()
    }
}

impl Target for ComposeCluster {
    fn kind(&self) -> &'static str {
        "compose"
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn kill9(&mut self, members: &[&str]) -> Result<()> {
        for m in members {
            let id = self.container(m)?;
            self.docker(&["kill", "-s", "KILL", &id])?;
        }
        Ok(())
    }

    fn terminate(&mut self, member: &str) -> Result<()> {
        let id = self.container(member)?;
        self.docker(&["stop", "-t", "10", &id])?;
        Ok(())
    }

    fn restart(&mut self, members: &[&str]) -> Result<()> {
        let mut before = Vec::new();
        for m in members {
            let needle = if *m == "witness" {
                "witness running"
            } else {
                "vpnd running"
            };
            before.push(self.logs(m).matches(needle).count());
            let id = self.container(m)?;
            self.docker(&["start", &id])?;
            self.started += 1;
        }
        for (m, n) in members.iter().zip(before) {
            self.attach(m)?;
            self.wait_running(m, n)?;
        }
        Ok(())
    }

    fn freeze(&mut self, member: &str, frozen: bool) -> Result<()> {
        let id = self.container(member)?;
        self.docker(&[if frozen { "pause" } else { "unpause" }, &id])?;
        self.frozen = frozen.then(|| member.to_owned());
        Ok(())
    }

    fn link(&mut self, member: &str, link: Link, up: bool) -> Result<()> {
        // The member's end: `docker network disconnect` cannot remove an interface the
        // entrypoint renamed.
        let dev = self.dev_with(
            member,
            match link {
                Link::External => "198.51.100.",
                Link::Control => "10.255.0.",
            },
        )?;
        let state = if up { "up" } else { "down" };
        lab::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns(member),
                "ip",
                "link",
                "set",
                &dev,
                state,
            ],
        )?;
        Ok(())
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

    fn esp_to_peer(&mut self) -> Result<Vec<EspPacket>> {
        let capture = self.capture.take().context("capture already finished")?;
        let frames = capture.finish_timed()?;
        let peer: Ipv4Addr = PEER_OUTER.parse()?;
        Ok(lab::esp_packets(&frames)
            .into_iter()
            .filter(|p| p.dst == peer)
            .collect())
    }

    fn keep(&mut self) -> Option<String> {
        self.work.keep = true;
        Some(self.work.path.display().to_string())
    }
}
