//! `vpnctl` against a lab daemon's management API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::output_within;

/// `vpnctl` against a daemon's management API, run inside the daemon's namespace (the
/// API listens on that namespace's loopback), with a bounded run time.
#[derive(Debug, Clone)]
pub struct Vpnctl {
    /// The `vpnctl` executable.
    pub exe: PathBuf,
    /// Arguments before the options (`cli` when `exe` is `vpnd`, see
    /// [`crate::Binaries::vpnctl_args`]).
    pub args: Vec<String>,
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
            args: Vec::new(),
            pki: pki.into(),
            server: "127.0.0.1:50051".into(),
            identity: "operator".into(),
            timeout: Duration::from_secs(10),
        }
    }

    fn command(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(&self.args)
            .args(["--server", &self.server, "--identity", &self.identity])
            .arg("--pki")
            .arg(&self.pki)
            .arg("--json")
            .args(args);
        cmd
    }

    /// `vpnctl --json monitor security events` in namespace `ns`, one JSON event per
    /// line into file `out`, until [`Monitor::stop`].
    pub fn monitor(&self, ns: &str, out: &Path) -> Result<Monitor> {
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let child = self
            .command(ns, &["monitor", "security", "events"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("vpnctl monitor security events in {ns}"))?;
        Ok(Monitor {
            child,
            out: out.to_owned(),
        })
    }

    /// `vpnctl --json ARGS` in namespace `ns`: its standard output, or an error with
    /// the command and what it printed.
    pub fn run(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(ns, args);
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

/// A running `vpnctl monitor security events`.
#[derive(Debug)]
pub struct Monitor {
    child: Child,
    out: PathBuf,
}

impl Monitor {
    /// Stops the monitor; the events it printed, parsed.
    pub fn stop(mut self) -> Result<Vec<serde_json::Value>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out)
            .with_context(|| format!("reading {}", self.out.display()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON event: {l}")))
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
