//! Network-namespace labs for running real `vpnd` processes: namespaces, veth links,
//! LAN hosts behind gateways, daemons started with `ip netns exec`, bounded waits,
//! ping/TCP/capture helpers, and the chassis cluster lab ([`cluster`]) with its
//! strongSwan peer ([`strongswan`]).
//!
//! Shared by the node's end-to-end tests, the `vpnd demo` command and the chaos
//! harness (`chaos-tests/`), so it takes the `vpnd` and `vpnctl` executables
//! ([`Binaries`]) and every configuration text as arguments.
//!
//! Everything created here is owned by a `Drop` guard: daemons are killed before their
//! namespaces are deleted, also when a test panics. Every wait has a deadline.

pub mod capture;
pub mod cluster;
pub mod daemon;
pub mod exec;
pub mod netns;
pub mod probe;
pub mod strongswan;
pub mod traffic;
pub mod vpnctl;

pub use capture::*;
pub use daemon::*;
pub use exec::*;
pub use netns::*;
pub use probe::*;
pub use traffic::*;
pub use vpnctl::*;

use std::path::PathBuf;

use anyhow::{Context, Result};

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

/// The executables a lab runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub vpnd: PathBuf,
    pub vpnctl: PathBuf,
    /// Arguments that open every `vpnctl` command line: none for the `vpnctl`
    /// executable, `cli` when `vpnctl` is `vpnd cli`.
    pub vpnctl_args: Vec<String>,
}

impl Binaries {
    pub fn new(vpnd: impl Into<PathBuf>, vpnctl: impl Into<PathBuf>) -> Binaries {
        Binaries {
            vpnd: vpnd.into(),
            vpnctl: vpnctl.into(),
            vpnctl_args: Vec::new(),
        }
    }

    /// `vpnd` alone, with `vpnd cli` as `vpnctl`: what `vpnd demo` runs, since
    /// `cargo run --bin vpnd` builds no `vpnctl` executable.
    pub fn vpnd_only(vpnd: impl Into<PathBuf>) -> Binaries {
        let vpnd = vpnd.into();
        Binaries {
            vpnctl: vpnd.clone(),
            vpnd,
            vpnctl_args: vec!["cli".into()],
        }
    }

    /// A [`Vpnctl`] with the management PKI in `pki`.
    pub fn vpnctl(&self, pki: impl Into<PathBuf>) -> Vpnctl {
        Vpnctl {
            args: self.vpnctl_args.clone(),
            ..Vpnctl::new(&self.vpnctl, pki)
        }
    }

    /// Runs `vpnctl ARGS` here (in no lab namespace), e.g. `pki init DIR`; fails with
    /// its output unless it exits 0.
    pub fn run_vpnctl(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut all: Vec<&str> = self.vpnctl_args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run(&self.vpnctl.display().to_string(), &all)
    }

    /// `vpnd` and `vpnctl` from the cargo target directory the running executable was
    /// built in (`target/<profile>/`, also for a test in `target/<profile>/deps/`), or
    /// from `$VPND_BIN` / `$VPNCTL_BIN`.
    pub fn from_build() -> Result<Binaries> {
        let exe = std::env::current_exe().context("locating the running executable")?;
        let find = |name: &str, var: &str| -> Result<PathBuf> {
            if let Some(p) = std::env::var_os(var) {
                return Ok(PathBuf::from(p));
            }
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "no {name} beside {} or its parent: build it (`cargo build -p node`, \
                         with the same profile) or set {var}",
                        exe.display()
                    )
                })
        };
        Ok(Binaries::new(
            find("vpnd", "VPND_BIN")?,
            find("vpnctl", "VPNCTL_BIN")?,
        ))
    }
}

/// True when running with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
