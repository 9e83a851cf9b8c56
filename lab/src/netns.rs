//! Network namespaces, links and work directories, and the lock that runs root labs
//! one at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{ip, run};

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
