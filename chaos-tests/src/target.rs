//! What a fault needs from a cluster deployment, beyond what the checks read
//! ([`lab::cluster::Cluster`]): stopping and starting members, cutting their links,
//! the probe and the capture. Implemented by the namespace lab (here) and by the
//! compose deployment ([`crate::compose`]).

use std::time::Duration;

use anyhow::{Context as _, Result};
use lab::cluster::{Cluster, ClusterLab};
use lab::{EspPacket, UdpProbe};

/// A member's links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Towards the peer (reth0's child).
    External,
    /// The control link to the other members.
    Control,
}

/// A running cluster that faults can be put into.
pub trait Target: Cluster {
    /// `netns` or `compose`, for the report.
    fn kind(&self) -> &'static str;
    /// Heartbeat interval x threshold of its configuration.
    fn lease(&self) -> Duration;
    /// SIGKILL to `members`, returning once they are gone.
    fn kill9(&mut self, members: &[&str]) -> Result<()>;
    /// A graceful stop (SIGTERM), returning once the member has exited.
    fn terminate(&mut self, member: &str) -> Result<()>;
    /// Starts stopped members again with their data, returning once they run.
    fn restart(&mut self, members: &[&str]) -> Result<()>;
    /// Freezes (SIGSTOP, cgroup freezer) or thaws a member.
    fn freeze(&mut self, member: &str, frozen: bool) -> Result<()>;
    /// Takes a member's link down or up.
    fn link(&mut self, member: &str, link: Link, up: bool) -> Result<()>;
    /// The sequence-numbered probe between the LAN hosts, 1 datagram/ms each way.
    fn start_probe(&self) -> Result<UdpProbe>;
    /// Ends the capture on the peer's external link: the ESP that reached the peer.
    fn esp_to_peer(&mut self) -> Result<Vec<EspPacket>>;
    /// Keeps logs and captures for the report; where they are.
    fn keep(&mut self) -> Option<String>;
}

impl Target for ClusterLab {
    fn kind(&self) -> &'static str {
        "netns"
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn kill9(&mut self, members: &[&str]) -> Result<()> {
        ClusterLab::kill9(self, members)
    }

    fn terminate(&mut self, member: &str) -> Result<()> {
        let d = self.lab.daemon(member);
        d.signal(libc::SIGTERM)?;
        d.wait_exit(Duration::from_secs(10))
            .with_context(|| format!("{member} to exit after SIGTERM"))?;
        Ok(())
    }

    fn restart(&mut self, members: &[&str]) -> Result<()> {
        ClusterLab::restart(self, members)
    }

    fn freeze(&mut self, member: &str, frozen: bool) -> Result<()> {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        self.lab.daemon(member).signal(signal)?;
        self.stopped = frozen.then(|| member.to_owned());
        Ok(())
    }

    fn link(&mut self, member: &str, link: Link, up: bool) -> Result<()> {
        // Cut at the switch, as a pulled cable: the member sees its carrier go.
        let dev = match link {
            Link::External => "eth0",
            Link::Control => "ctl0",
        };
        let port = format!("{member}-{dev}");
        let state = if up { "up" } else { "down" };
        let sw = self.ns("sw");
        lab::run(
            "ip",
            &["netns", "exec", &sw, "ip", "link", "set", &port, state],
        )
        .with_context(|| format!("setting {port} {state}"))?;
        Ok(())
    }

    fn start_probe(&self) -> Result<UdpProbe> {
        ClusterLab::start_probe(self)
    }

    fn esp_to_peer(&mut self) -> Result<Vec<EspPacket>> {
        ClusterLab::esp_to_peer(self)
    }

    fn keep(&mut self) -> Option<String> {
        self.lab.dir.keep = true;
        Some(self.lab.dir.path.display().to_string())
    }
}
