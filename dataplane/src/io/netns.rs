//! Network namespaces: run a worker set inside a named namespace (a routing instance).
//!
//! Sockets and TUN devices belong to the namespace of the thread that creates them and keep
//! it for life, and threads inherit the namespace of the thread that spawns them. So a
//! thread that calls [`enter`] and then starts a [`crate::worker::Dataplane`] runs that
//! whole dataplane inside the namespace, while the rest of the process stays outside.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::cvt;

/// Where `ip netns add NAME` puts the namespace handle.
const NETNS_RUN_DIR: &str = "/run/netns";
/// The calling thread's own network namespace.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// An open network namespace, to move other threads into it later: a dataplane started
/// inside a namespace keeps one, so a worker added at run time from a control thread in
/// another namespace opens its devices and sockets beside the others.
#[derive(Debug)]
pub struct NetnsHandle(File);

impl NetnsHandle {
    /// The network namespace of the calling thread.
    pub fn current() -> io::Result<Self> {
        File::open(THREAD_NETNS)
            .map(Self)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {THREAD_NETNS}: {e}")))
    }

    /// Moves the calling thread into this namespace. A thread already inside it is left
    /// alone, which needs no privilege (`setns` needs CAP_SYS_ADMIN even then).
    pub fn enter(&self) -> io::Result<()> {
        let here = std::fs::metadata(THREAD_NETNS)?;
        let there = self.0.metadata()?;
        if (here.dev(), here.ino()) == (there.dev(), there.ino()) {
            return Ok(());
        }
        setns(&self.0, "the dataplane's namespace")
    }
}

/// Moves the calling thread (only it) into the network namespace `name`, as created by
/// `ip netns add name`. Needs CAP_SYS_ADMIN.
pub fn enter(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid network namespace name {name:?}"),
        ));
    }
    enter_path(&Path::new(NETNS_RUN_DIR).join(name))
}

/// Moves the calling thread into the network namespace whose handle is at `path`
/// (e.g. `/proc/PID/ns/net`).
pub fn enter_path(path: &Path) -> io::Result<()> {
    let ns = File::open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening network namespace {}: {e}", path.display()),
        )
    })?;
    setns(&ns, &path.display().to_string())
}

/// Moves the calling thread into the namespace open as `ns` (`what` names it in errors).
fn setns(ns: &File, what: &str) -> io::Result<()> {
    // SAFETY: setns takes an open namespace descriptor and a flag; no pointers.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("setns({what}): {e} (needs CAP_SYS_ADMIN: run as root)"),
        )
    })?;
    Ok(())
}
