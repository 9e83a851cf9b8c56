//! Packet I/O for the SPU workers: TUN devices, the UDP 4500 socket, raw ESP/AH sockets and
//! the epoll/eventfd readiness loop they share.
//!
//! Everything here is synchronous and non-blocking. A worker thread owns its descriptors,
//! waits on one [`poll::Poller`], and moves packets between these devices and caller-owned
//! [`crate::buf::PacketBuf`]s without allocating: each call receives into or sends from
//! buffers the worker preallocated once. Batching (`recvmmsg`/`sendmmsg`, UDP GRO) is used
//! wherever the kernel offers it, because per-packet syscall cost, not crypto, is the
//! ceiling of a socket-based ESP path (see the crypto-limit measurements).
//!
//! Linux only: TUN ioctls, `IP_PKTINFO`/`IPV6_PKTINFO`, `recvmmsg`/`sendmmsg`, epoll and
//! eventfd are all Linux interfaces.

pub mod netns;
pub mod poll;
pub mod raw;
pub mod tun;
pub mod udp;

use std::io;

/// Turns a `-1` syscall return into the thread's `errno` as an [`io::Error`].
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
