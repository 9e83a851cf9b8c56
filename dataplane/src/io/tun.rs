//! TUN devices (`st0.N`): the route-based side of a tunnel.
//!
//! A small `ioctl(TUNSETIFF)` wrapper rather than a TUN crate: the worker needs exactly
//! open-by-name, `IFF_MULTI_QUEUE` (one queue per worker), non-blocking single-packet
//! read/write into its own buffers, MTU and link up. That is four ioctls; a crate would add
//! an async or cross-platform layer the sync, Linux-only workers do not use.
//!
//! Devices are opened with `IFF_NO_PI`, so each read or write is exactly one IP packet.
//! They are not persistent: the kernel deletes the interface when its last queue closes,
//! so a crashed worker leaves no stale `st0.N` behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::cvt;
use crate::buf::PacketBuf;

/// The TUN clone device.
const TUN_PATH: &str = "/dev/net/tun";

/// Why a TUN device could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// Interface names are 1..=15 bytes without `/`, NUL or whitespace.
    #[error("invalid interface name {0:?}: 1 to 15 bytes, no '/', NUL or whitespace")]
    InvalidName(String),
    /// The process lacks CAP_NET_ADMIN.
    #[error("opening TUN device {name}: needs CAP_NET_ADMIN: run as root")]
    PermissionDenied { name: String },
    /// `/dev/net/tun` does not exist.
    #[error(
        "{TUN_PATH} is missing: load the tun module (`modprobe tun`) or run in a container with the device"
    )]
    NoTunDevice,
    /// Any other failure of the named step.
    #[error("TUN device {name}: {step}: {source}")]
    Io {
        name: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// One queue of a TUN device: a non-blocking descriptor that reads and writes whole IP
/// packets.
pub struct Tun {
    file: File,
    name: String,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("fd", &self.file.as_raw_fd())
            .finish()
    }
}

impl Tun {
    /// Opens (creating if needed) TUN device `name` with `queues` queues. With more than one
    /// queue the device is multi-queue and the kernel spreads flows over the queues, so each
    /// worker can own one. Every queue is non-blocking.
    pub fn open_queues(name: &str, queues: usize) -> Result<Vec<Tun>, TunError> {
        let multi = queues > 1;
        (0..queues.max(1)).map(|_| Tun::open(name, multi)).collect()
    }

    /// Opens (creating if needed) one queue of TUN device `name`, non-blocking.
    ///
    /// `multi_queue` must be the same for all queues of a device; further queues are
    /// attached by opening the same name again.
    pub fn open(name: &str, multi_queue: bool) -> Result<Tun, TunError> {
        let mut req = ifreq_for(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => TunError::NoTunDevice,
                io::ErrorKind::PermissionDenied => TunError::PermissionDenied { name: name.into() },
                _ => TunError::Io {
                    name: name.into(),
                    step: "open /dev/net/tun",
                    source: e,
                },
            })?;
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        req.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is, and it lives
        // for the duration of the call on an open descriptor.
        let res = cvt(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) });
        res.map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                TunError::PermissionDenied { name: name.into() }
            }
            _ => TunError::Io {
                name: name.into(),
                step: "ioctl(TUNSETIFF)",
                source: e,
            },
        })?;
        Ok(Tun {
            file,
            name: name.into(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the interface MTU (the largest inner packet the kernel hands us).
    pub fn set_mtu(&self, mtu: u32) -> Result<(), TunError> {
        let mut req = ifreq_for(&self.name)?;
        req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).unwrap_or(libc::c_int::MAX);
        self.if_ioctl(libc::SIOCSIFMTU, &mut req, "ioctl(SIOCSIFMTU)")
    }

    /// Brings the interface administratively up.
    pub fn set_up(&self) -> Result<(), TunError> {
        let mut req = ifreq_for(&self.name)?;
        self.if_ioctl(libc::SIOCGIFFLAGS, &mut req, "ioctl(SIOCGIFFLAGS)")?;
        // SAFETY: SIOCGIFFLAGS just filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        self.if_ioctl(libc::SIOCSIFFLAGS, &mut req, "ioctl(SIOCSIFFLAGS)")
    }

    /// The interface index, for routing sockets and diagnostics.
    pub fn ifindex(&self) -> Result<u32, TunError> {
        let mut req = ifreq_for(&self.name)?;
        self.if_ioctl(libc::SIOCGIFINDEX, &mut req, "ioctl(SIOCGIFINDEX)")?;
        // SAFETY: SIOCGIFINDEX just filled the ifindex member of the union.
        let idx = unsafe { req.ifr_ifru.ifru_ifindex };
        Ok(u32::try_from(idx).unwrap_or(0))
    }

    /// Interface ioctls go through an ordinary socket, not the TUN descriptor.
    fn if_ioctl(
        &self,
        request: libc::Ioctl,
        req: &mut libc::ifreq,
        step: &'static str,
    ) -> Result<(), TunError> {
        let err = |source| TunError::Io {
            name: self.name.clone(),
            step,
            source,
        };
        // SAFETY: socket takes no pointers; the returned descriptor is checked.
        let fd =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
                .map_err(err)?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the interface ioctls used here read and write a `struct ifreq`, which
        // `req` is; it outlives the call.
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request, std::ptr::from_mut(req)) }).map_err(
            |e| {
                if e.raw_os_error() == Some(libc::EPERM) {
                    TunError::PermissionDenied {
                        name: self.name.clone(),
                    }
                } else {
                    err(e)
                }
            },
        )?;
        Ok(())
    }

    /// Reads one packet into `buf` (replacing its contents, keeping its headroom for
    /// encapsulation). Returns `WouldBlock` when the queue is empty.
    pub fn recv(&self, buf: &mut PacketBuf) -> io::Result<usize> {
        let n = (&self.file).read(buf.recv_space())?;
        buf.set_len(n);
        Ok(n)
    }

    /// Writes one IP packet. `WouldBlock` means the device queue is full (the packet is
    /// not sent).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A zeroed `ifreq` carrying `name`, after checking the name is one Linux accepts.
fn ifreq_for(name: &str) -> Result<libc::ifreq, TunError> {
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes.len() >= libc::IFNAMSIZ
        || bytes
            .iter()
            .any(|&b| b == b'/' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(TunError::InvalidName(name.into()));
    }
    // SAFETY: `ifreq` is plain old data (arrays and a union of integers and sockaddrs);
    // all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_linux_would_refuse() {
        for bad in ["", "0123456789abcdef", "a/b", "a b"] {
            assert!(
                matches!(ifreq_for(bad), Err(TunError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(ifreq_for("st0.0").is_ok());
    }
}
