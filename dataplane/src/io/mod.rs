//! Packet I/O for the SPU workers: TUN devices, the UDP 4500 socket, raw ESP/AH sockets and
//! the epoll/eventfd readiness loop they share.
//!
//! Everything here is synchronous and non-blocking. A worker thread owns its descriptors,
//! waits on one [`poll::Poller`], and moves packets between these devices and caller-owned
//! [`crate::buf::PacketBuf`]s without allocating: each call receives into or sends from
//! buffers the worker preallocated once. Batching and offloads are used wherever the
//! kernel offers them, because per-packet syscall and skb cost, not crypto, is the ceiling
//! of a socket-based ESP path (see the crypto-limit measurements): TUN devices with
//! segmentation offloads move 64 KiB super-packets per read and write ([`crate::gso`]
//! splits and coalesces them), ESP in UDP goes out in UDP GSO runs and comes in as GRO
//! trains through `recvmmsg`, and everything else leaves in raw `sendmmsg` batches.
//!
//! [`announce`] sends the gratuitous ARP and unsolicited neighbour advertisements that move
//! a cluster's virtual addresses to the node taking over.
//!
//! Linux only: TUN ioctls, `IP_PKTINFO`/`IPV6_PKTINFO`, `recvmmsg`/`sendmmsg`, epoll and
//! eventfd are all Linux interfaces.

pub mod announce;
pub mod link;
pub mod netns;
pub mod poll;
pub mod raw;
pub mod tun;
pub mod udp;

use std::io;
use std::os::fd::AsRawFd;

/// Turns a `-1` syscall return into the thread's `errno` as an [`io::Error`].
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Asks for a socket receive buffer of `bytes`. As root, `SO_RCVBUFFORCE` goes past
/// `net.core.rmem_max` (212 KiB by default, about 150 full-size datagrams: one burst);
/// otherwise the ordinary option, which the kernel caps, is the best we can do.
fn set_recv_buffer(sock: &socket2::Socket, bytes: usize) {
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: passes a pointer to a live c_int and its size.
    let forced = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const val).cast(),
            len,
        )
    };
    if forced != 0 {
        let _ = sock.set_recv_buffer_size(bytes);
    }
}
