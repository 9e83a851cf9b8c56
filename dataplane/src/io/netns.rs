//! Network namespaces: run a worker set inside a named namespace (a routing instance).
//!
//! Sockets and TUN devices belong to the namespace of the thread that creates them and keep
//! it for life, and threads inherit the namespace of the thread that spawns them. So a
//! thread that calls [`enter`] and then starts a [`crate::worker::Dataplane`] runs that
//! whole dataplane inside the namespace, while the rest of the process stays outside.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::cvt;

/// Where `ip netns add NAME` puts the namespace handle.
const NETNS_RUN_DIR: &str = "/run/netns";

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
    // SAFETY: setns takes an open namespace descriptor and a flag; no pointers.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "setns({}): {e} (needs CAP_SYS_ADMIN: run as root)",
                path.display()
            ),
        )
    })?;
    Ok(())
}
