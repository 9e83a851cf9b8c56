//! strongSwan's charon, with the userspace kernel-libipsec plugin, as a peer inside a
//! network namespace of a lab: its own `strongswan.conf`, vici socket, log and `/run`
//! (charon's pid file path is fixed) in a directory of the lab's work directory.
//!
//! The settings follow `tests/interop_strongswan.rs` and the reference scripts
//! (`run.sh` of the shared strongSwan interop kit): `load_modular = no` with
//! kernel-libipsec before kernel-netlink (this kernel has no XFRM, so ESP runs over
//! charon's TUN device `ipsec0` and always in UDP 4500), short retransmissions, a
//! flushed log with milliseconds.
//!
//! Included with `#[path]` by the test binaries that use it, next to `mod common;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate as common;

/// The charon daemon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// The userspace IPsec backend.
pub const LIBIPSEC: &str = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so";
/// What a test says when strongSwan is missing.
pub const INSTALL_HINT: &str = "needs strongSwan with kernel-libipsec: apt-get install \
     strongswan-charon strongswan-swanctl libcharon-extra-plugins \
     libstrongswan-standard-plugins libstrongswan-extra-plugins (done by .ci/run)";

/// Longest run of one `swanctl` command.
const SWANCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// True if charon, kernel-libipsec and swanctl are installed.
pub fn available() -> bool {
    Path::new(CHARON).exists()
        && Path::new(LIBIPSEC).exists()
        && std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("swanctl").is_file())
        })
}

/// One IKE SA as `swanctl --list-sas` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwanIkeSa {
    /// The connection's name.
    pub name: String,
    /// charon's unique id of the SA (`#N`): a new negotiation gets a new one.
    pub uid: u32,
    /// `ESTABLISHED`, `CONNECTING`, ...
    pub state: String,
    /// Initiator SPI, hex.
    pub spi_i: String,
    /// Responder SPI, hex.
    pub spi_r: String,
}

/// IKE SAs in `swanctl --list-sas` output: the lines
/// `NAME: #UID, STATE, IKEv2, SPII_i[*] SPIR_r[*]`.
pub fn parse_ike_sas(text: &str) -> Vec<SwanIkeSa> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let (name, rest) = l.split_once(": #")?;
            let fields: Vec<&str> = rest.split(", ").collect();
            let uid = fields.first()?.parse().ok()?;
            let state = (*fields.get(1)?).to_owned();
            let mut spis = fields.get(3)?.split_whitespace();
            let spi = |s: Option<&str>, end: &str| {
                s.map(|s| s.trim_end_matches('*'))
                    .and_then(|s| s.strip_suffix(end))
                    .map(str::to_owned)
            };
            Some(SwanIkeSa {
                name: name.trim().to_owned(),
                uid,
                state,
                spi_i: spi(spis.next(), "_i")?,
                spi_r: spi(spis.next(), "_r")?,
            })
        })
        .collect()
}

/// A charon daemon in a namespace; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Charon {
    child: Child,
    /// Its configuration, vici socket, `/run` and log.
    pub dir: PathBuf,
    exit: Option<ExitStatus>,
}

impl Charon {
    /// Writes `strongswan.conf` and `swanctl_conf` into `dir`, starts charon in namespace
    /// `ns` and loads the connections and secrets.
    pub fn start(ns: &str, dir: PathBuf, swanctl_conf: &str) -> Result<Charon> {
        if !available() {
            bail!("{INSTALL_HINT}");
        }
        std::fs::create_dir_all(dir.join("run"))
            .with_context(|| format!("creating {}", dir.display()))?;
        write_strongswan_conf(&dir)?;
        std::fs::write(dir.join("swanctl.conf"), swanctl_conf).context("swanctl.conf")?;
        let d = dir.display().to_string();
        // `ip netns exec` gives the command its own mount namespace: /run is private.
        let script = format!(
            "mount --bind '{d}/run' /run && exec env STRONGSWAN_CONF='{d}/strongswan.conf' {CHARON}"
        );
        let out = std::fs::File::create(dir.join("charon.stdout")).context("charon.stdout")?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting charon")?;
        let mut charon = Charon {
            child,
            dir,
            exit: None,
        };
        let vici = charon.dir.join("run/charon.vici");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vici.exists() {
            if let Some(status) = charon.exited() {
                bail!(
                    "charon exited ({status}) before opening its vici socket:\n{}",
                    std::fs::read_to_string(charon.dir.join("charon.stdout")).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                bail!("charon's vici socket did not appear within 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let loaded = charon.swanctl(&["--load-all", "--file", &format!("{d}/swanctl.conf")])?;
        if !loaded.status.success() {
            bail!(
                "swanctl --load-all: {}{}",
                String::from_utf8_lossy(&loaded.stdout),
                String::from_utf8_lossy(&loaded.stderr)
            );
        }
        Ok(charon)
    }

    /// `swanctl ARGS` against this charon, killed after [`SWANCTL_TIMEOUT`].
    pub fn swanctl(&self, args: &[&str]) -> Result<Output> {
        let uri = format!("unix://{}/run/charon.vici", self.dir.display());
        let mut cmd = Command::new("swanctl");
        cmd.args(args)
            .args(["--uri", &uri])
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"));
        common::output_within(&mut cmd, SWANCTL_TIMEOUT)
    }

    /// `swanctl --list-sas`.
    pub fn list_sas(&self) -> Result<String> {
        let out = self.swanctl(&["--list-sas"])?;
        if !out.status.success() {
            bail!(
                "swanctl --list-sas failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The IKE SAs charon holds.
    pub fn ike_sas(&self) -> Result<Vec<SwanIkeSa>> {
        Ok(parse_ike_sas(&self.list_sas()?))
    }

    /// charon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Its path.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("charon.log")
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.log();
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
}

impl Drop for Charon {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill with the pid of our own child process; no pointers.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// charon's settings: kernel-libipsec, its own vici socket and a flushed log with
/// milliseconds in `dir`, short retransmissions so that failures show quickly. Public
/// for tests that start charon their own way (`tests/interop_strongswan.rs`).
pub fn write_strongswan_conf(dir: &Path) -> Result<()> {
    let d = dir.display();
    std::fs::write(
        dir.join("strongswan.conf"),
        format!(
            "charon {{
    load_modular = no
    load = random nonce openssl aes sha1 sha2 hmac gcm curve25519 gmp kdf pem pkcs1 pkcs8 pubkey x509 kernel-libipsec kernel-netlink socket-default vici
    port = 500
    port_nat_t = 4500
    send_vendor_id = no
    retransmit_tries = 3
    retransmit_timeout = 2.0
    plugins {{
        vici {{
            socket = unix://{d}/run/charon.vici
        }}
    }}
    filelog {{
        main {{
            path = {d}/charon.log
            time_format = %H:%M:%S
            time_add_ms = yes
            flush_line = yes
            default = 1
            ike = 2
            cfg = 2
        }}
    }}
}}
swanctl {{
    socket = unix://{d}/run/charon.vici
}}
"
        ),
    )
    .context("strongswan.conf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_sas_lines_parse() {
        let text = "\
cluster: #3, ESTABLISHED, IKEv2, 5c1e4a0d9f3b2a11_i 0a9e2f7c66d1b3e4_r*
  local  'remote.example.net' @ 198.51.100.2[4500]
  remote 'cluster.example.net' @ 198.51.100.1[4500]
  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/ECP_384
";
        assert_eq!(
            parse_ike_sas(text),
            vec![SwanIkeSa {
                name: "cluster".into(),
                uid: 3,
                state: "ESTABLISHED".into(),
                spi_i: "5c1e4a0d9f3b2a11".into(),
                spi_r: "0a9e2f7c66d1b3e4".into(),
            }]
        );
    }
}
