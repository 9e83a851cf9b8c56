//! Raw IP sockets: sending complete outer packets, receiving ESP (50) and AH (51).
//!
//! Sending: the engine builds the whole outer packet (IP header, the UDP header for
//! ESP-in-UDP, ESP/AH), so one `IPPROTO_RAW` socket per family sends every such packet
//! whatever its protocol: raw ESP, AH, outer fragments, bypassed packets, and ESP in UDP
//! that does not go through the UDP sockets with GSO (see [`super::udp`]). IPv4 `IPPROTO_RAW` implies `IP_HDRINCL` (the kernel still
//! fills in the header checksum and total length); IPv6 sets `IPV6_HDRINCL` explicitly and
//! the kernel sends the header as given. Packets go out in `sendmmsg` batches.
//!
//! Receiving: a raw socket bound to protocol 50 or 51 gets a copy of every such packet
//! addressed to this host. Without kernel ESP/XFRM that copy is the only delivery (and the
//! kernel sends no "protocol unreachable" because a raw socket took it). IPv4 raw sockets
//! deliver the IP header; IPv6 raw sockets never do, so [`RawReceiver`] rebuilds a
//! 40-byte IPv6 header from the source address, `IPV6_PKTINFO` (destination),
//! `IPV6_HOPLIMIT` and `IPV6_TCLASS`, with a zero flow label and the protocol as next
//! header. That is exact for ESP, which does not authenticate the outer header. For AH
//! over IPv6 it is exact only when no extension header preceded AH (the kernel strips
//! them, and AH's ICV covers them), so AH packets carrying extension headers fail their
//! integrity check; receiving those needs an `AF_PACKET` socket, which is not done yet.
//!
//! Only one raw receive socket per protocol and family should exist per namespace:
//! every raw socket gets its own copy of each packet.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::cvt;
use crate::buf::PacketBuf;

/// Packets per `sendmmsg`/`recvmmsg` call.
pub const MAX_BATCH: usize = 64;

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IP protocol number of AH.
pub const IPPROTO_AH: u8 = 51;

/// Length of the fixed IPv6 header rebuilt in front of received IPv6 payloads.
const IPV6_HEADER_LEN: usize = 40;

/// Bound on how long a send may block when the socket buffer is full. Blocking briefly
/// gives TCP inside the tunnel back-pressure instead of drops; the bound keeps a stuck
/// interface from stalling the worker's other sources.
const SEND_TIMEOUT: Duration = Duration::from_millis(10);

/// Send buffer asked for (capped by `net.core.wmem_max`).
const SEND_BUFFER: usize = 4 << 20;
/// Receive buffer asked for (capped by `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 << 20;

/// Outcome of one [`RawSender::send_batch`].
#[derive(Debug, Default)]
pub struct TxResult {
    /// Packets the kernel accepted.
    pub sent: usize,
    /// Packets refused (unroutable, no IPv6 socket, socket buffer full past the timeout...).
    pub failed: usize,
    /// The last error seen, for logging.
    pub last_error: Option<io::Error>,
}

/// `IPPROTO_RAW` send sockets for both families.
#[derive(Debug)]
pub struct RawSender {
    v4: Socket,
    v6: Option<Socket>,
}

impl RawSender {
    /// Opens the send sockets. IPv6 is optional: a host with IPv6 disabled gets an
    /// IPv4-only sender, and IPv6 packets are then counted as failed. Needs CAP_NET_RAW.
    pub fn new() -> io::Result<Self> {
        let v4 = Socket::new(
            Domain::IPV4,
            Type::RAW.cloexec(),
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(|e| need_root(e, "raw IPv4 send socket"))?;
        configure_sender(&v4)?;
        let v6 = match Socket::new(
            Domain::IPV6,
            Type::RAW.cloexec(),
            Some(Protocol::from(libc::IPPROTO_RAW)),
        ) {
            Ok(s) => {
                s.set_header_included_v6(true)?;
                configure_sender(&s)?;
                Some(s)
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => None,
            Err(e) => return Err(need_root(e, "raw IPv6 send socket")),
        };
        Ok(Self { v4, v6 })
    }

    /// Sends complete IP packets, each to the given next destination (used for routing
    /// only: the packet's own header is sent as is). Batches by family with `sendmmsg`;
    /// a packet the kernel refuses is counted and skipped, the rest still go out.
    pub fn send_batch<'a>(
        &self,
        packets: impl IntoIterator<Item = (&'a [u8], IpAddr)>,
    ) -> TxResult {
        let mut res = TxResult::default();
        // SAFETY: sockaddr_in/sockaddr_in6 are plain integers and byte arrays; all-zero
        // is valid (and is the required value of the fields we do not set).
        let mut addrs4: [libc::sockaddr_in; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut addrs6: [libc::sockaddr_in6; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovs4 = [empty; MAX_BATCH];
        let mut iovs6 = [empty; MAX_BATCH];
        let (mut n4, mut n6) = (0, 0);
        for (pkt, dst) in packets {
            let iov = libc::iovec {
                iov_base: pkt.as_ptr().cast_mut().cast(),
                iov_len: pkt.len(),
            };
            match dst {
                IpAddr::V4(a) => {
                    addrs4[n4].sin_family = libc::AF_INET as libc::sa_family_t;
                    addrs4[n4].sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                    iovs4[n4] = iov;
                    n4 += 1;
                    if n4 == MAX_BATCH {
                        send_mmsg(&self.v4, &mut addrs4, &mut iovs4[..n4], &mut res);
                        n4 = 0;
                    }
                }
                IpAddr::V6(a) => {
                    addrs6[n6].sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    addrs6[n6].sin6_addr.s6_addr = a.octets();
                    iovs6[n6] = iov;
                    n6 += 1;
                    if n6 == MAX_BATCH {
                        self.send_v6(&mut addrs6, &mut iovs6[..n6], &mut res);
                        n6 = 0;
                    }
                }
            }
        }
        if n4 > 0 {
            send_mmsg(&self.v4, &mut addrs4, &mut iovs4[..n4], &mut res);
        }
        if n6 > 0 {
            self.send_v6(&mut addrs6, &mut iovs6[..n6], &mut res);
        }
        res
    }

    fn send_v6(
        &self,
        addrs: &mut [libc::sockaddr_in6],
        iovs: &mut [libc::iovec],
        res: &mut TxResult,
    ) {
        match &self.v6 {
            Some(s) => send_mmsg(s, addrs, iovs, res),
            None => {
                res.failed += iovs.len();
                res.last_error = Some(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
            }
        }
    }
}

fn configure_sender(s: &Socket) -> io::Result<()> {
    let _ = s.set_send_buffer_size(SEND_BUFFER);
    s.set_write_timeout(Some(SEND_TIMEOUT))
}

/// One `sendmmsg` loop over `iovs` (addresses in the same positions of `addrs`).
fn send_mmsg<A>(sock: &Socket, addrs: &mut [A], iovs: &mut [libc::iovec], res: &mut TxResult) {
    let n = iovs.len();
    // SAFETY: mmsghdr is plain integers and pointers; all-zero (null pointers, no control
    // data, no flags) is valid.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let addr_len = libc::socklen_t::try_from(std::mem::size_of::<A>()).unwrap_or(0);
    for ((h, a), iov) in hdrs.iter_mut().zip(addrs.iter_mut()).zip(iovs.iter_mut()) {
        h.msg_hdr.msg_name = std::ptr::from_mut(a).cast();
        h.msg_hdr.msg_namelen = addr_len;
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0;
    while done < n {
        let rest = &mut hdrs[done..n];
        let count = libc::c_uint::try_from(rest.len()).unwrap_or(0);
        // SAFETY: every header in `rest` points at a live address in `addrs` and a live
        // iovec in `iovs`, whose buffers are borrowed packets; all outlive the call.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), rest.as_mut_ptr(), count, 0) };
        match cvt(r) {
            Ok(0) => {
                res.failed += n - done;
                break;
            }
            Ok(k) => {
                let k = usize::try_from(k).unwrap_or(0);
                res.sent += k;
                done += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // The first packet of `rest` was refused: skip it, keep the others.
                res.failed += 1;
                res.last_error = Some(e);
                done += 1;
            }
        }
    }
}

/// A raw receive socket for ESP or AH of one address family.
#[derive(Debug)]
pub struct RawReceiver {
    sock: Socket,
    protocol: u8,
    ipv6: bool,
}

impl RawReceiver {
    /// Opens a non-blocking raw socket for `protocol` ([`IPPROTO_ESP`] or [`IPPROTO_AH`]).
    /// Needs CAP_NET_RAW.
    pub fn new(ipv6: bool, protocol: u8) -> io::Result<Self> {
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(
            domain,
            Type::RAW.cloexec(),
            Some(Protocol::from(i32::from(protocol))),
        )
        .map_err(|e| need_root(e, "raw receive socket"))?;
        sock.set_nonblocking(true)?;
        super::set_recv_buffer(&sock, RECV_BUFFER);
        if ipv6 {
            for opt in [
                libc::IPV6_RECVPKTINFO,
                libc::IPV6_RECVHOPLIMIT,
                libc::IPV6_RECVTCLASS,
            ] {
                setsockopt_on(&sock, libc::IPPROTO_IPV6, opt)?;
            }
        }
        Ok(Self {
            sock,
            protocol,
            ipv6,
        })
    }

    /// The IP protocol this socket receives.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// True for an IPv6 socket.
    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// Receives up to [`MAX_BATCH`] packets, each as a complete IP packet (header
    /// included; rebuilt for IPv6) in its own buffer. Buffers need at least 40 bytes of
    /// headroom for the IPv6 header. Returns `WouldBlock` when nothing is queued.
    pub fn recv_batch(&self, bufs: &mut [PacketBuf]) -> io::Result<usize> {
        let want = bufs.len().min(MAX_BATCH);
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovs = [empty; MAX_BATCH];
        for (iov, b) in iovs.iter_mut().zip(bufs.iter_mut()).take(want) {
            let space = b.recv_space();
            iov.iov_base = space.as_mut_ptr().cast();
            iov.iov_len = space.len();
        }
        // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
        let mut names: [libc::sockaddr_in6; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let mut ctrl = [Cmsg([0; CMSG_WORDS]); MAX_BATCH];
        // SAFETY: mmsghdr is plain integers and pointers; all-zero is valid.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let name_len =
            libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in6>()).unwrap_or(0);
        for i in 0..want {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            if self.ipv6 {
                h.msg_name = std::ptr::from_mut(&mut names[i]).cast();
                h.msg_namelen = name_len;
                h.msg_control = ctrl[i].0.as_mut_ptr().cast();
                h.msg_controllen = std::mem::size_of::<Cmsg>();
            }
        }
        let count = libc::c_uint::try_from(want).unwrap_or(0);
        // SAFETY: every header points at a live iovec (into a borrowed buffer's receive
        // space), and for IPv6 at a live address and control buffer of the sizes given;
        // all outlive the call. A null timeout makes recvmmsg return what is queued.
        let r = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                count,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = usize::try_from(cvt(r)?).unwrap_or(0);
        for i in 0..got {
            let len = hdrs[i].msg_len as usize;
            let b = &mut bufs[i];
            b.set_len(len);
            if self.ipv6 {
                let info = parse_v6_cmsgs(&hdrs[i].msg_hdr);
                let src = Ipv6Addr::from(names[i].sin6_addr.s6_addr);
                if write_ipv6_header(b, self.protocol, src, info).is_err() {
                    // Too long for a non-jumbo IPv6 payload or no headroom: leave an empty
                    // buffer, which the engine drops as truncated.
                    b.set_len(0);
                }
            }
        }
        Ok(got)
    }
}

impl AsFd for RawReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Control-message buffer per packet, 8-byte aligned as `cmsghdr` requires. Room for
/// in6_pktinfo (40), hop limit (24) and traffic class (24) with spare.
const CMSG_WORDS: usize = 16;
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Cmsg([u64; CMSG_WORDS]);

/// What the IPv6 control messages told us about one packet.
#[derive(Debug, Clone, Copy)]
struct V6Info {
    dst: Ipv6Addr,
    hop_limit: u8,
    tclass: u8,
}

fn parse_v6_cmsgs(hdr: &libc::msghdr) -> V6Info {
    let mut info = V6Info {
        dst: Ipv6Addr::UNSPECIFIED,
        hop_limit: 64,
        tclass: 0,
    };
    // SAFETY: `hdr` was filled by recvmmsg; its control pointer and length describe a
    // live buffer, and CMSG_FIRSTHDR/CMSG_NXTHDR stay within that length.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers returned by CMSG_FIRSTHDR/NXTHDR lie within the buffer.
        let c = unsafe { &*cmsg };
        // SAFETY: CMSG_DATA points at the payload of this header, inside the buffer.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        if c.cmsg_level == libc::IPPROTO_IPV6 {
            match c.cmsg_type {
                libc::IPV6_PKTINFO => {
                    // SAFETY: the kernel wrote an in6_pktinfo here; read_unaligned
                    // copes with any alignment.
                    let pi = unsafe { data.cast::<libc::in6_pktinfo>().read_unaligned() };
                    info.dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                }
                libc::IPV6_HOPLIMIT => {
                    // SAFETY: the kernel wrote a c_int here.
                    let v = unsafe { data.cast::<libc::c_int>().read_unaligned() };
                    info.hop_limit = u8::try_from(v).unwrap_or(64);
                }
                libc::IPV6_TCLASS => {
                    // SAFETY: the kernel wrote a c_int here.
                    let v = unsafe { data.cast::<libc::c_int>().read_unaligned() };
                    info.tclass = u8::try_from(v).unwrap_or(0);
                }
                _ => {}
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR; returns null after the last header.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    info
}

/// Prepends a fixed IPv6 header for a payload received on a raw IPv6 socket.
fn write_ipv6_header(
    b: &mut PacketBuf,
    next_header: u8,
    src: Ipv6Addr,
    info: V6Info,
) -> Result<(), ()> {
    let payload_len = u16::try_from(b.len()).map_err(|_| ())?;
    let h = b.prepend(IPV6_HEADER_LEN).map_err(|_| ())?;
    let ver_tc_flow: u32 = (6 << 28) | (u32::from(info.tclass) << 20);
    h[0..4].copy_from_slice(&ver_tc_flow.to_be_bytes());
    h[4..6].copy_from_slice(&payload_len.to_be_bytes());
    h[6] = next_header;
    h[7] = info.hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&info.dst.octets());
    Ok(())
}

fn setsockopt_on(sock: &Socket, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: passes a pointer to a live c_int and its size.
    cvt(unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, (&raw const on).cast(), len) })?;
    Ok(())
}

/// Adds the usual fix to a permission error from opening a raw socket.
fn need_root(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::PermissionDenied {
        io::Error::new(e.kind(), format!("{what}: needs CAP_NET_RAW: run as root"))
    } else {
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilt_ipv6_header_carries_addresses_and_lengths() {
        let mut b = PacketBuf::new(256, 64);
        b.append(8)
            .unwrap()
            .copy_from_slice(&[0, 0, 1, 0, 0, 0, 0, 1]);
        let info = V6Info {
            dst: "fd00::2".parse().unwrap(),
            hop_limit: 63,
            tclass: 0x02,
        };
        write_ipv6_header(&mut b, IPPROTO_ESP, "fd00::1".parse().unwrap(), info).unwrap();
        let d = b.data();
        assert_eq!(d.len(), 48);
        assert_eq!(d[0] >> 4, 6);
        assert_eq!(((d[0] & 0x0f) << 4) | (d[1] >> 4), 0x02);
        assert_eq!(u16::from_be_bytes([d[4], d[5]]), 8);
        assert_eq!((d[6], d[7]), (50, 63));
        assert_eq!(&d[24..40], &"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
    }

    #[test]
    fn cmsg_buffer_is_aligned_for_cmsghdr() {
        assert!(std::mem::align_of::<Cmsg>() >= std::mem::align_of::<libc::cmsghdr>());
    }
}
