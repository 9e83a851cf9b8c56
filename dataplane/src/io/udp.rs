//! The UDP 4500 socket: ESP-in-UDP (RFC 3948) and IKE on the NAT-T port.
//!
//! Receiving goes through quinn-udp rather than a hand-written `recvmmsg`: it already does
//! batched `recvmmsg`, enables UDP GRO where the kernel has it, and decodes the control
//! messages the engine needs (destination address from `IP_PKTINFO`/`IPV6_PKTINFO`, outer
//! ECN bits from `IP_TOS`/`IPV6_TCLASS`) for both address families, with stack-only
//! buffers. We only add the GRO split (one datagram per [`PacketBuf`]), which the engine
//! needs because it transforms one datagram in place.
//!
//! Outbound ESP-in-UDP does not use this socket: the engine builds the whole outer
//! IP+UDP packet, which goes out through [`super::raw::RawSender`]. This socket sends only
//! IKE messages handed over by the control plane.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::buf::PacketBuf;

/// The non-ESP marker: four zero bytes in front of IKE messages on the NAT-T port
/// (RFC 3948 section 2.2), where an ESP packet would have its non-zero SPI.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// `SO_ATTACH_REUSEPORT_CBPF` from asm-generic/socket.h (the value on x86, arm, arm64 and
/// riscv); libc does not export it.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Receive buffer asked for: bursts of a few thousand 1400-byte datagrams between two
/// worker wakeups must not overflow it. Raised up to `net.core.rmem_max` by the kernel.
const RECV_BUFFER: usize = 8 << 20;

/// Where one received datagram came from and went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRecvMeta {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Our address (from the packet-info control message) and port.
    pub dst: SocketAddr,
    /// Outer ECN bits (0 when not ECN-capable or unknown).
    pub ecn: u8,
}

impl Default for UdpRecvMeta {
    fn default() -> Self {
        let any = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        Self {
            src: any,
            dst: any,
            ecn: 0,
        }
    }
}

/// Outcome of one [`UdpSocket::recv_batch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpBatch {
    /// Buffers filled, each with exactly one datagram.
    pub datagrams: usize,
    /// GRO segments dropped because the batch had no free buffer left for them.
    pub overflow: usize,
}

/// A non-blocking UDP socket bound to the NAT-T port, with batched receive.
pub struct UdpSocket {
    sock: std::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .field("gro_segments", &self.state.gro_segments())
            .finish()
    }
}

impl UdpSocket {
    /// Binds `addr` (IPv6 sockets are v6-only, so an IPv4 and an IPv6 socket can share the
    /// port). With `reuse_port` several workers can each bind their own socket to the same
    /// address and the kernel spreads peers over them by flow hash.
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<Self> {
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.cloexec(),
            Some(Protocol::UDP),
        )?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        sock.set_reuse_port(reuse_port)?;
        super::set_recv_buffer(&sock, RECV_BUFFER);
        sock.bind(&SockAddr::from(addr))
            .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}")))?;
        let sock: std::net::UdpSocket = sock.into();
        let state = UdpSocketState::new((&sock).into())?;
        let local = sock.local_addr()?;
        Ok(Self { sock, state, local })
    }

    /// The bound address (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives up to `bufs.len()` datagrams, one per buffer, with their metadata in the
    /// same positions of `meta`. Returns `WouldBlock` when nothing is queued.
    ///
    /// GRO super-buffers are split by their `stride`: the first segment stays in place and
    /// the others are copied into the unused buffers behind the received ones, so segments
    /// of one GRO train are not adjacent in the output. The engine's anti-replay window
    /// absorbs that reordering; segments without a free buffer are counted in `overflow`.
    pub fn recv_batch(
        &self,
        bufs: &mut [PacketBuf],
        meta: &mut [UdpRecvMeta],
    ) -> io::Result<UdpBatch> {
        let cap = bufs.len().min(meta.len());
        let want = cap.min(quinn_udp::BATCH_SIZE);
        let mut qmeta = [RecvMeta::default(); quinn_udp::BATCH_SIZE];
        let received = {
            let mut it = bufs.iter_mut().take(want);
            let mut iovs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                std::array::from_fn(|_| match it.next() {
                    Some(b) => IoSliceMut::new(b.recv_space()),
                    None => IoSliceMut::new(&mut []),
                });
            self.state
                .recv((&self.sock).into(), &mut iovs[..want], &mut qmeta[..want])?
        };
        let mut batch = UdpBatch {
            datagrams: received,
            overflow: 0,
        };
        for i in 0..received {
            let m = &qmeta[i];
            let info = UdpRecvMeta {
                src: m.addr,
                dst: SocketAddr::new(m.dst_ip.unwrap_or(self.local.ip()), self.local.port()),
                ecn: m.ecn.map_or(0, |e| e as u8),
            };
            meta[i] = info;
            let stride = if m.stride == 0 { m.len } else { m.stride };
            bufs[i].set_len(m.len.min(stride));
            let mut off = stride;
            while off < m.len {
                let seg = stride.min(m.len - off);
                if batch.datagrams >= cap {
                    batch.overflow += 1;
                    off += seg;
                    continue;
                }
                let j = batch.datagrams;
                let (head, tail) = bufs.split_at_mut(j);
                // The segment sits past `head[i]`'s length (it was truncated to the first
                // segment), so read it from the receive area the kernel wrote.
                let seg_bytes = &head[i].recv_space()[off..off + seg];
                let dst = &mut tail[0];
                let space = dst.recv_space();
                let n = seg.min(space.len());
                space[..n].copy_from_slice(&seg_bytes[..n]);
                dst.set_len(n);
                meta[j] = info;
                batch.datagrams += 1;
                off += seg;
            }
        }
        Ok(batch)
    }

    /// Makes the kernel pick, among the `SO_REUSEPORT` group this socket belongs to, the
    /// socket with index `SPI % sockets` for ESP-in-UDP datagrams (index 0 for IKE and
    /// keepalives), instead of a flow hash. Sockets are indexed in the order they were
    /// bound, so with one socket per worker bound in worker order, a packet lands directly
    /// on the worker that anchors its SPI whenever the control plane chose the SPI with
    /// [`crate::worker::spi_for_worker`]. Other SPIs still arrive somewhere and are handed
    /// over; steering only saves that hop.
    ///
    /// A classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`), attached once for the group;
    /// the kernel runs it with the packet data starting at the UDP payload.
    pub fn steer_by_spi(&self, sockets: u32) -> io::Result<()> {
        const fn stmt(code: u32, k: u32) -> libc::sock_filter {
            libc::sock_filter {
                code: code as u16,
                jt: 0,
                jf: 0,
                k,
            }
        }
        const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
            libc::sock_filter {
                code: code as u16,
                jt,
                jf,
                k,
            }
        }
        let mut prog = [
            // 0: A = payload length; shorter than an ESP header (keepalive, runt) -> 0.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
            jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 8, 0, 4),
            // 2: A = first word: the SPI, or the non-ESP marker 0 for IKE -> 0.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 2, 0),
            // 4: socket index = SPI % sockets.
            stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, sockets.max(1)),
            stmt(libc::BPF_RET | libc::BPF_A, 0),
            // 6:
            stmt(libc::BPF_RET | libc::BPF_K, 0),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sock_fprog>()).unwrap_or(0);
        // SAFETY: passes a pointer to a live sock_fprog whose filter pointer and length
        // describe `prog`; the kernel copies the program during the call.
        let r = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                (&raw const fprog).cast(),
                len,
            )
        };
        super::cvt(r).map(|_| ())
    }

    /// Sends one IKE message to `dst`, prefixed with the [`NON_ESP_MARKER`] so the peer
    /// tells it apart from ESP on the NAT-T port. Blocking is not expected for these rare,
    /// small datagrams; `WouldBlock` is returned as is.
    pub fn send_ike(&self, dst: SocketAddr, message: &[u8]) -> io::Result<usize> {
        let parts = [IoSlice::new(&NON_ESP_MARKER), IoSlice::new(message)];
        SockRef::from(&self.sock).send_to_vectored(&parts, &SockAddr::from(dst))
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Receives until `want` datagrams arrived (or a second passed).
    fn recv_n(sock: &UdpSocket, want: usize) -> Vec<(Vec<u8>, UdpRecvMeta)> {
        let mut bufs: Vec<PacketBuf> = (0..8).map(|_| PacketBuf::new(4096, 64)).collect();
        let mut meta = vec![UdpRecvMeta::default(); 8];
        let mut got = Vec::new();
        for _ in 0..100 {
            match sock.recv_batch(&mut bufs, &mut meta) {
                Ok(batch) => {
                    for i in 0..batch.datagrams {
                        got.push((bufs[i].data().to_vec(), meta[i]));
                        bufs[i].reset(64);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("recv_batch: {e}"),
            }
            if got.len() >= want {
                break;
            }
        }
        got
    }

    #[test]
    fn ike_goes_out_behind_the_non_esp_marker_with_addresses() {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        a.send_ike(b.local_addr(), b"hello ike").unwrap();
        let got = recv_n(&b, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"\0\0\0\0hello ike");
        assert_eq!(got[0].1.src, a.local_addr());
        assert_eq!(got[0].1.dst, b.local_addr());
        assert_eq!(got[0].1.ecn, 0);
    }

    #[test]
    fn reuseport_group_steers_esp_by_spi_and_ike_to_the_first_socket() {
        let first = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let second = UdpSocket::bind(first.local_addr(), true).unwrap();
        first.steer_by_spi(2).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for spi in [0x1001_u32, 0x1002, 0x1003, 0x1004] {
            let mut esp = spi.to_be_bytes().to_vec();
            esp.extend_from_slice(&[0, 0, 0, 1, 0xaa, 0xbb]);
            tx.send_to(&esp, first.local_addr()).unwrap();
        }
        tx.send_to(b"\0\0\0\0ike", first.local_addr()).unwrap();
        let spis = |got: Vec<(Vec<u8>, UdpRecvMeta)>| -> Vec<u32> {
            got.iter()
                .map(|(d, _)| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
                .collect()
        };
        assert_eq!(spis(recv_n(&first, 3)), vec![0x1002, 0x1004, 0]);
        assert_eq!(spis(recv_n(&second, 2)), vec![0x1001, 0x1003]);
    }

    /// A GSO send over loopback reaches a GRO-enabled socket as one coalesced buffer
    /// (where the kernel supports both); either way each segment must come out in a
    /// buffer of its own.
    #[test]
    fn gro_buffers_are_split_one_datagram_per_buffer() {
        let rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let state = UdpSocketState::new((&tx).into()).unwrap();
        let segments: Vec<Vec<u8>> = (0..3u8)
            .map(|i| vec![i + 1; if i == 2 { 50 } else { 100 }])
            .collect();
        let contents = segments.concat();
        let gso = state.max_gso_segments() > 1;
        if gso {
            let t = quinn_udp::Transmit {
                destination: rx.local_addr(),
                ecn: None,
                contents: &contents,
                segment_size: Some(100),
                src_ip: None,
            };
            state.try_send((&tx).into(), &t).unwrap();
        } else {
            for s in &segments {
                tx.send_to(s, rx.local_addr()).unwrap();
            }
        }
        let mut got: Vec<Vec<u8>> = recv_n(&rx, 3).into_iter().map(|(d, _)| d).collect();
        got.sort();
        assert_eq!(got, segments);
    }
}
