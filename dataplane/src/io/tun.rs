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
//!
//! With offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD`), every packet is preceded by a
//! `virtio_net_hdr` ([`VnetHdr`]) and the kernel hands over TCP (and UDP, where the
//! kernel has USO) super-packets of up to 64 KiB with partial checksums instead of
//! segmenting them itself; [`crate::gso`] splits them. Writes may likewise carry a
//! coalesced TCP super-packet, which the kernel's stack takes as one GRO packet. One
//! syscall then moves up to ~45 wire-sized packets instead of one.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::cvt;
use crate::buf::PacketBuf;
use crate::gso::{VNET_HDR_LEN, VnetHdr};

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

/// Most parts [`Tun::send_gso`] gathers: the headers and one payload per coalesced
/// segment.
pub const MAX_GSO_PARTS: usize = 1 + crate::gso::MAX_COALESCE;

/// Offloads asked for first: partial checksums, TCP segmentation for both families and
/// UDP segmentation (Linux 6.2+).
const OFFLOADS_USO: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_USO4 | libc::TUN_F_USO6;
/// Offloads of kernels without USO.
const OFFLOADS_TSO: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// One queue of a TUN device: a non-blocking descriptor that reads and writes whole IP
/// packets, each behind a virtio-net header when offloads are on.
pub struct Tun {
    file: File,
    name: String,
    vnet: bool,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("fd", &self.file.as_raw_fd())
            .field("offload", &self.vnet)
            .finish()
    }
}

impl Tun {
    /// Opens (creating if needed) one queue of TUN device `name`, non-blocking.
    ///
    /// With `offload`, packets carry a virtio-net header and the kernel may hand over
    /// super-packets with partial checksums (segmentation and checksum offloads); the
    /// caller must then segment what [`Tun::recv`] returns ([`crate::gso`]).
    ///
    /// `multi_queue` and `offload` must be the same for all queues of a device; further
    /// queues are attached by opening the same name again.
    pub fn open(name: &str, multi_queue: bool, offload: bool) -> Result<Tun, TunError> {
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
        if offload {
            flags |= libc::IFF_VNET_HDR;
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
        let tun = Tun {
            file,
            name: name.into(),
            vnet: offload,
        };
        if offload {
            tun.set_offloads()?;
        }
        Ok(tun)
    }

    /// Enables the segmentation and checksum offloads (with UDP segmentation where the
    /// kernel has it). The virtio-net header stays even if the kernel refuses them all.
    fn set_offloads(&self) -> Result<(), TunError> {
        let mut last = None;
        for flags in [OFFLOADS_USO, OFFLOADS_TSO] {
            // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long of
            // TUN_F_* flags); no memory is passed.
            let r = unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    libc::c_ulong::from(flags),
                )
            };
            match cvt(r) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(TunError::Io {
            name: self.name.clone(),
            step: "ioctl(TUNSETOFFLOAD)",
            source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::Unsupported)),
        })
    }

    /// True if packets carry a virtio-net header (offloads on).
    pub fn offload(&self) -> bool {
        self.vnet
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

    /// Gives the interface a `noqueue` root (before [`Tun::set_up`]) and puts it in
    /// interface group `group`: see [`super::link`] for why.
    pub fn set_link_options(&self, group: u32) -> Result<(), TunError> {
        let index = self.ifindex()?;
        let io = |step| {
            let name = self.name.clone();
            move |source| TunError::Io { name, step, source }
        };
        super::link::set_noqueue(index).map_err(io("rtnetlink qdisc replace root noqueue"))?;
        super::link::set_group(index, group).map_err(io("rtnetlink link set group"))
    }

    /// Turns IPv6 off on the interface (`net.ipv6.conf.NAME.disable_ipv6`), before
    /// [`Tun::set_up`]. A kernel without IPv6 has nothing to turn off.
    pub fn disable_ipv6(&self) -> Result<(), TunError> {
        let path = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", self.name);
        // Already off (a container's default), e.g. where /proc/sys is read-only.
        if std::fs::read(&path).is_ok_and(|v| v.trim_ascii() == b"1") {
            return Ok(());
        }
        match std::fs::write(&path, b"1") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(|source| TunError::Io {
                name: self.name.clone(),
                step: "writing net.ipv6.conf.NAME.disable_ipv6",
                source,
            }),
        }
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
    /// encapsulation) and returns its virtio-net header (all zero without offloads: a
    /// plain packet). Returns `WouldBlock` when the queue is empty.
    pub fn recv(&self, buf: &mut PacketBuf) -> io::Result<VnetHdr> {
        if !self.vnet {
            let n = (&self.file).read(buf.recv_space())?;
            buf.set_len(n);
            return Ok(VnetHdr::default());
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let n = (&self.file)
            .read_vectored(&mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf.recv_space())])?;
        let vnet = VnetHdr::parse(&hdr)
            .filter(|_| n >= VNET_HDR_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short TUN read"))?;
        buf.set_len(n - VNET_HDR_LEN);
        Ok(vnet)
    }

    /// Writes one IP packet (behind an all-zero virtio-net header with offloads: no
    /// segmentation, checksums complete). `WouldBlock` means the device queue is full
    /// (the packet is not sent).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        if !self.vnet {
            return (&self.file).write(packet);
        }
        let hdr = [0u8; VNET_HDR_LEN];
        (&self.file).write_vectored(&[IoSlice::new(&hdr), IoSlice::new(packet)])
    }

    /// Writes one super-packet gathered from `parts` (at most [`MAX_GSO_PARTS`]) behind
    /// the virtio-net header `vnet`, with one `writev`. Only for a device opened with
    /// offloads.
    pub fn send_gso(&self, vnet: &VnetHdr, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.vnet || parts.len() > MAX_GSO_PARTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TUN device without offloads, or too many parts",
            ));
        }
        let hdr = vnet.to_bytes();
        let mut iov = [IoSlice::new(&[]); MAX_GSO_PARTS + 1];
        iov[0] = IoSlice::new(&hdr);
        iov[1..=parts.len()].copy_from_slice(parts);
        (&self.file).write_vectored(&iov[..=parts.len()])
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
