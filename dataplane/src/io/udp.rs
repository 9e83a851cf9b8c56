//! The UDP 4500 socket: ESP-in-UDP (RFC 3948) and IKE on the NAT-T port.
//!
//! Receiving goes through quinn-udp rather than a hand-written `recvmmsg`: it already does
//! batched `recvmmsg`, enables UDP GRO where the kernel has it, and decodes the control
//! messages the engine needs (destination address from `IP_PKTINFO`/`IPV6_PKTINFO`, outer
//! ECN bits from `IP_TOS`/`IPV6_TCLASS`) for both address families, with stack-only
//! buffers. We only add the GRO split (one datagram per [`PacketBuf`]), which the engine
//! needs because it transforms one datagram in place.
//!
//! Receiving copies each datagram (each GRO segment) from a per-socket staging area into
//! its own [`PacketBuf`], so a GRO train of up to 64 segments never needs more buffers
//! than the caller offers: what does not fit stays staged for the next call
//! ([`UdpSocket::has_pending`]).
//!
//! Outbound ESP in UDP goes out here too when the engine left only the ESP packet
//! ([`crate::engine::Engine::outbound_udp`]): [`UdpSocket::send_segments`] sends a run of
//! equal-sized ESP packets with one `sendmsg` and `UDP_SEGMENT` (UDP GSO), so the kernel
//! builds one skb for up to 64 datagrams, and a GRO-enabled receiver gets them in one
//! `recvmsg`. The outer header fields the engine decided are reproduced per call:
//! DSCP/ECN with `IP_TOS`/`IPV6_TCLASS`, TTL with `IP_TTL`/`IPV6_HOPLIMIT`, the source
//! address with `IP_PKTINFO`/`IPV6_PKTINFO`. IPv4 DF has no per-message option; the
//! socket's `IP_MTU_DISCOVER` is switched between `IP_PMTUDISC_PROBE` (DF set, the
//! learned path MTU ignored like on the raw path; the engine applies the SA's path MTU)
//! and `IP_PMTUDISC_DONT` (DF clear) whenever a send needs the other one, which honours
//! every df-bit policy (clear, set, copy) per packet; a GSO run only holds packets with
//! the same DF. Two differences from the raw path remain: the kernel picks the IPv4
//! identification, and the IPv4 UDP checksum is computed (RFC 3948 §2.1 says it SHOULD be
//! zero, and receivers MUST accept either; Linux refuses `SO_NO_CHECK` with GSO). Other
//! SAs and fragmented packets use [`super::raw::RawSender`].

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::buf::PacketBuf;
use crate::engine::UdpTransmit;

/// The non-ESP marker: four zero bytes in front of IKE messages on the NAT-T port
/// (RFC 3948 section 2.2), where an ESP packet would have its non-zero SPI.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// `SO_ATTACH_REUSEPORT_CBPF` from asm-generic/socket.h (the value on x86, arm, arm64 and
/// riscv); libc does not export it.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Receive buffer asked for: bursts of a few thousand 1400-byte datagrams between two
/// worker wakeups must not overflow it. Raised up to `net.core.rmem_max` by the kernel.
const RECV_BUFFER: usize = 8 << 20;

/// Bytes of staging space per received datagram: the largest GRO train (64 KiB).
const STAGE_SLOT: usize = 1 << 16;

/// Most datagrams one [`UdpSocket::send_segments`] call sends (`UDP_MAX_SEGMENTS` of
/// kernels before 6.9).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes of one [`UdpSocket::send_segments`] call: one IPv4 datagram's
/// worth (65535 minus the IPv4 and UDP headers).
pub const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;

/// How long a send waits for room in a full socket buffer before failing: TCP inside the
/// tunnel gets back-pressure instead of drops, and a stuck interface cannot stall the
/// worker for long (as on the raw path).
const SEND_TIMEOUT: Duration = Duration::from_millis(10);

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
}

/// Datagrams received by one `recvmmsg` and not yet handed out.
struct Stage {
    /// [`quinn_udp::BATCH_SIZE`] slots of [`STAGE_SLOT`] bytes (one allocation, touched
    /// only as far as datagrams reach).
    data: Box<[u8]>,
    meta: [RecvMeta; quinn_udp::BATCH_SIZE],
    /// Datagrams received.
    count: usize,
    /// The datagram being handed out, and the offset of its next GRO segment.
    next: usize,
    offset: usize,
}

/// A non-blocking UDP socket bound to the NAT-T port, with batched receive and GSO send.
pub struct UdpSocket {
    sock: std::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    stage: Stage,
    /// The `IP_MTU_DISCOVER` mode last set (IPv4), `None` for the kernel's default.
    pmtudisc: Option<libc::c_int>,
    /// False once the kernel refused UDP GSO (EIO: no checksum offload on the route).
    gso: bool,
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
        // IP_FREEBIND: a cluster's standby binds its floating (reth) address before it
        // holds it, so the socket is ready the moment the address moves here.
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
            sock.set_freebind_v6(true)?;
        } else {
            sock.set_freebind_v4(true)?;
        }
        sock.set_reuse_port(reuse_port)?;
        super::set_recv_buffer(&sock, RECV_BUFFER);
        sock.bind(&SockAddr::from(addr))
            .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}")))?;
        let sock: std::net::UdpSocket = sock.into();
        let state = UdpSocketState::new((&sock).into())?;
        // quinn-udp asks for receive timestamps, which the engine does not use: with a
        // GRO segment size and the packet info they fill its 96-byte control buffer, and
        // the TOS message (the outer ECN bits RFC 6040 decapsulation needs) is cut off.
        set_int_option(&sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 0)?;
        let local = sock.local_addr()?;
        Ok(Self {
            sock,
            state,
            local,
            stage: Stage {
                data: vec![0; quinn_udp::BATCH_SIZE * STAGE_SLOT].into_boxed_slice(),
                meta: [RecvMeta::default(); quinn_udp::BATCH_SIZE],
                count: 0,
                next: 0,
                offset: 0,
            },
            pmtudisc: None,
            gso: true,
        })
    }

    /// The bound address (with the real port if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A second descriptor of this socket, for its place in its `SO_REUSEPORT` group
    /// (see [`GroupMember`]).
    pub fn group_member(&self) -> io::Result<GroupMember> {
        self.sock.try_clone().map(GroupMember)
    }

    /// Receives up to `bufs.len()` datagrams, one per buffer, with their metadata in the
    /// same positions of `meta`: first those still staged, then (if room is left and the
    /// stage is empty) one `recvmmsg`'s worth. GRO trains are split by their `stride`, in
    /// order. Returns `WouldBlock` when nothing is staged or queued.
    pub fn recv_batch(
        &mut self,
        bufs: &mut [PacketBuf],
        meta: &mut [UdpRecvMeta],
    ) -> io::Result<UdpBatch> {
        let cap = bufs.len().min(meta.len());
        let mut n = self.drain_stage(bufs, meta, 0, cap);
        if n < cap && !self.has_pending() {
            match self.fill_stage() {
                Ok(()) => n = self.drain_stage(bufs, meta, n, cap),
                Err(e) if n == 0 => return Err(e),
                // Reported by the next call, which starts with an empty stage.
                Err(_) => {}
            }
        }
        Ok(UdpBatch { datagrams: n })
    }

    /// True if received datagrams are staged: call [`UdpSocket::recv_batch`] again
    /// without waiting for readiness.
    pub fn has_pending(&self) -> bool {
        self.stage.next < self.stage.count
    }

    /// One `recvmmsg` (through quinn-udp) into the empty stage.
    fn fill_stage(&mut self) -> io::Result<()> {
        let st = &mut self.stage;
        let mut slots = st.data.chunks_exact_mut(STAGE_SLOT);
        let mut iovs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
        let k = self
            .state
            .recv((&self.sock).into(), &mut iovs, &mut st.meta)?;
        st.count = k;
        st.next = 0;
        st.offset = 0;
        Ok(())
    }

    /// Copies staged datagrams (GRO segments) into `bufs[n..cap]`; returns the new `n`.
    fn drain_stage(
        &mut self,
        bufs: &mut [PacketBuf],
        meta: &mut [UdpRecvMeta],
        mut n: usize,
        cap: usize,
    ) -> usize {
        let st = &mut self.stage;
        while n < cap && st.next < st.count {
            let m = &st.meta[st.next];
            let slot = &st.data[st.next * STAGE_SLOT..][..STAGE_SLOT];
            let len = m.len.min(STAGE_SLOT);
            let stride = if m.stride == 0 { len } else { m.stride };
            let seg = stride.min(len - st.offset);
            let space = bufs[n].recv_space();
            let copy = seg.min(space.len());
            space[..copy].copy_from_slice(&slot[st.offset..st.offset + copy]);
            bufs[n].set_len(copy);
            meta[n] = UdpRecvMeta {
                src: m.addr,
                dst: SocketAddr::new(m.dst_ip.unwrap_or(self.local.ip()), self.local.port()),
                ecn: m.ecn.map_or(0, |e| e as u8),
            };
            n += 1;
            st.offset += seg;
            if st.offset >= len {
                st.next += 1;
                st.offset = 0;
            }
        }
        n
    }

    /// Sends `segments` (ESP packets, all of the first one's size except a shorter last
    /// one; at most [`MAX_GSO_SEGMENTS`] and [`MAX_GSO_BYTES`] together) as UDP datagrams
    /// from `t.src` to `t.dst` with one `sendmsg` (UDP GSO when more than one), with the
    /// outer TOS, TTL and DF of `t`. Waits up to 10 ms for room in the socket
    /// buffer. If the kernel refuses GSO, this and later runs go out one datagram per
    /// `sendmsg`.
    pub fn send_segments(&mut self, t: &UdpTransmit, segments: &[IoSlice<'_>]) -> io::Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        if self.local.is_ipv4() {
            let mode = if t.df {
                libc::IP_PMTUDISC_PROBE
            } else {
                libc::IP_PMTUDISC_DONT
            };
            self.set_pmtudisc(mode)?;
        }
        if segments.len() > 1 && self.gso {
            match self.sendmsg(t, segments, Some(segments[0].len())) {
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    tracing::warn!(local = %self.local, "UDP GSO refused by the kernel; sending datagrams one by one");
                    self.gso = false;
                }
                r => return r,
            }
        }
        for s in segments {
            self.sendmsg(t, std::slice::from_ref(s), None)?;
        }
        Ok(())
    }

    /// Sets `IP_MTU_DISCOVER` unless it already has that value.
    fn set_pmtudisc(&mut self, mode: libc::c_int) -> io::Result<()> {
        if self.pmtudisc == Some(mode) {
            return Ok(());
        }
        set_int_option(&self.sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, mode)?;
        self.pmtudisc = Some(mode);
        Ok(())
    }

    /// One `sendmsg` of `iov` to `t.dst` with the per-packet control messages, and
    /// `UDP_SEGMENT` when `segment` is given; retried once after waiting for room.
    fn sendmsg(
        &self,
        t: &UdpTransmit,
        iov: &[IoSlice<'_>],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let dst = SockAddr::from(t.dst);
        let mut ctrl = Cmsg([0; CMSG_WORDS]);
        // SAFETY: msghdr is plain integers and pointers; all-zero is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = dst.as_ptr().cast_mut().cast();
        hdr.msg_namelen = dst.len();
        // IoSlice is guaranteed ABI-compatible with iovec on Unix.
        hdr.msg_iov = iov.as_ptr().cast_mut().cast();
        hdr.msg_iovlen = iov.len();
        hdr.msg_control = ctrl.0.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of::<Cmsg>();
        let mut w = CmsgWriter::new(&mut hdr);
        let tos = libc::c_int::from(t.tos);
        let ttl = libc::c_int::from(t.ttl);
        match t.src.ip() {
            IpAddr::V4(src) => {
                w.push(libc::IPPROTO_IP, libc::IP_TOS, tos);
                w.push(libc::IPPROTO_IP, libc::IP_TTL, ttl);
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(src.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                w.push(libc::IPPROTO_IP, libc::IP_PKTINFO, info);
            }
            IpAddr::V6(src) => {
                w.push(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, tos);
                w.push(libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT, ttl);
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                w.push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
            }
        }
        if let Some(size) = segment {
            let size = u16::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
            w.push(libc::SOL_UDP, libc::UDP_SEGMENT, size);
        }
        w.finish();
        for attempt in 0..2 {
            // SAFETY: `hdr` points at the live destination address, the caller's iovecs
            // (borrowed buffers) and `ctrl`, with their lengths; all outlive the call.
            let r = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &hdr, 0) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock || attempt == 1 {
                return Err(e);
            }
            self.wait_writable()?;
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Waits up to [`SEND_TIMEOUT`] for room in the send buffer.
    fn wait_writable(&self) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = libc::c_int::try_from(SEND_TIMEOUT.as_millis()).unwrap_or(10);
        // SAFETY: one live pollfd, count 1.
        super::cvt(unsafe { libc::poll(&mut pfd, 1, ms) }).map(|_| ())
    }

    /// Sends one IKE message to `dst`, prefixed with the [`NON_ESP_MARKER`] so the peer
    /// tells it apart from ESP on the NAT-T port, from address `src` when given (a
    /// wildcard socket on a host with several addresses, e.g. a cluster node holding two
    /// redundancy groups' addresses, must answer from the IKE SA's own address: the
    /// peer's NAT detection and demultiplexing depend on it). Blocking is not expected
    /// for these rare, small datagrams; `WouldBlock` is returned as is.
    pub fn send_ike(
        &mut self,
        src: Option<IpAddr>,
        dst: SocketAddr,
        message: &[u8],
    ) -> io::Result<()> {
        if self.local.is_ipv4() && self.pmtudisc.is_some() {
            // IKE keeps the mode quinn-udp set up: DF, no local fragmentation.
            self.set_pmtudisc(libc::IP_PMTUDISC_PROBE)?;
        }
        let parts = [IoSlice::new(&NON_ESP_MARKER), IoSlice::new(message)];
        match src {
            Some(ip) => {
                let t = UdpTransmit {
                    src: SocketAddr::new(ip, self.local.port()),
                    dst,
                    tos: 0,
                    ttl: 64,
                    df: true,
                    id: 0,
                };
                self.sendmsg(&t, &parts, None)
            }
            None => SockRef::from(&self.sock)
                .send_to_vectored(&parts, &SockAddr::from(dst))
                .map(|_| ()),
        }
    }
}

/// Which socket of a `SO_REUSEPORT` group the kernel gives each datagram: ESP in UDP by
/// SPI, so that inbound SPIs chosen with [`crate::worker::spi_for_worker`] arrive on the
/// worker that anchors them, and everything without an SPI (IKE behind the non-ESP
/// marker, keepalives, runts) on one chosen socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiSteering {
    /// Socket index (in bind order) per slot; an ESP datagram's slot is
    /// `SPI % targets.len()`.
    pub targets: Vec<u32>,
    /// Socket index for datagrams without an SPI.
    pub no_spi: u32,
}

impl SpiSteering {
    /// The classic BPF program: SPI modulo the slot count, then one compare-and-return
    /// per slot that is not on its own socket. Every jump is forward by at most one, so
    /// the 8-bit jump offsets of classic BPF never limit the slot count; the kernel's
    /// 4096-instruction limit does.
    fn program(&self) -> io::Result<Vec<libc::sock_filter>> {
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
        let slots = u32::try_from(self.targets.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no steering slots"))?;
        let mut prog = vec![
            // 0: A = payload length; shorter than an ESP header (keepalive, runt) -> no_spi.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
            jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 8, 1, 0),
            stmt(libc::BPF_RET | libc::BPF_K, self.no_spi),
            // 3: A = first word: the SPI, or the non-ESP marker 0 for IKE -> no_spi.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 0, 1),
            stmt(libc::BPF_RET | libc::BPF_K, self.no_spi),
            // 6: A = slot.
            stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, slots),
        ];
        for (slot, &target) in (0u32..).zip(&self.targets) {
            if target != slot {
                prog.push(jump(
                    libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                    slot,
                    0,
                    1,
                ));
                prog.push(stmt(libc::BPF_RET | libc::BPF_K, target));
            }
        }
        // A slot on its own socket: the socket index is the slot.
        prog.push(stmt(libc::BPF_RET | libc::BPF_A, 0));
        // BPF_MAXINSNS: the kernel refuses longer programs.
        if prog.len() > 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "steering program too long",
            ));
        }
        Ok(prog)
    }
}

/// A second descriptor of a socket in a `SO_REUSEPORT` group. The kernel numbers a
/// group's sockets in bind order, and when one closes it moves the last one into the
/// hole, which would silently renumber the sockets a steering program names. Keeping a
/// copy of every member open, also of a worker that failed, keeps socket `i` the one of
/// worker `i` for the life of the dataplane; the steering program then simply never
/// picks a failed worker's socket. A member is also what programs are attached through.
#[derive(Debug)]
pub struct GroupMember(std::net::UdpSocket);

impl GroupMember {
    /// The bound address (with the real port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Replaces the group's steering: the kernel then picks the socket as `steering`
    /// says instead of by flow hash. A classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`),
    /// run with the packet data starting at the UDP payload; it belongs to the group, so
    /// attaching it through any member replaces it for all.
    pub fn steer_by_spi(&self, steering: &SpiSteering) -> io::Result<()> {
        let mut prog = steering.program()?;
        let fprog = libc::sock_fprog {
            len: u16::try_from(prog.len()).unwrap_or(u16::MAX),
            filter: prog.as_mut_ptr(),
        };
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sock_fprog>()).unwrap_or(0);
        // SAFETY: passes a pointer to a live sock_fprog whose filter pointer and length
        // describe `prog`; the kernel copies the program during the call.
        let r = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_CBPF,
                (&raw const fprog).cast(),
                len,
            )
        };
        super::cvt(r).map(|_| ())
    }

    /// Quiets the socket of a failed worker, which stays in the group only to keep the
    /// numbering: shrinks its receive buffer to the minimum and discards what it had
    /// queued (at most one buffer's worth, received before steering moved away).
    pub fn park(&self) {
        let sock = SockRef::from(&self.0);
        let _ = sock.set_recv_buffer_size(0);
        let mut buf = [0u8; 64];
        // Non-blocking (quinn-udp set it), so this ends at the first WouldBlock.
        while self.0.recv(&mut buf).is_ok() {}
    }
}

/// Sets an integer socket option.
fn set_int_option(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            len,
        )
    };
    super::cvt(r).map(|_| ())
}

/// Control-message buffer of one send, 8-byte aligned as `cmsghdr` requires: TOS, TTL
/// (16 bytes each), packet info (32 or 40) and the GSO segment size (16).
const CMSG_WORDS: usize = 16;
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Cmsg([u64; CMSG_WORDS]);

/// Appends control messages to a `msghdr` whose control buffer is zeroed.
struct CmsgWriter<'a> {
    hdr: &'a mut libc::msghdr,
    cmsg: *mut libc::cmsghdr,
    len: usize,
}

impl<'a> CmsgWriter<'a> {
    fn new(hdr: &'a mut libc::msghdr) -> Self {
        // SAFETY: `hdr`'s control pointer and length describe a live, zeroed buffer.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
        Self { hdr, cmsg, len: 0 }
    }

    /// Adds one message; a message that does not fit is left out (the buffer is sized
    /// for every message [`UdpSocket::sendmsg`] writes).
    fn push<T: Copy>(&mut self, level: libc::c_int, ty: libc::c_int, value: T) {
        let size = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
        // SAFETY: CMSG_SPACE only computes a length.
        let space = unsafe { libc::CMSG_SPACE(size) } as usize;
        if self.cmsg.is_null() || self.len + space > self.hdr.msg_controllen {
            return;
        }
        // SAFETY: `cmsg` is non-null and was returned by CMSG_FIRSTHDR/NXTHDR for this
        // buffer, and `len + space` bytes fit in it, so the header and its data are
        // inside the buffer; the data may be unaligned for T, hence write_unaligned.
        unsafe {
            (*self.cmsg).cmsg_level = level;
            (*self.cmsg).cmsg_type = ty;
            (*self.cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
            libc::CMSG_DATA(self.cmsg)
                .cast::<T>()
                .write_unaligned(value);
            self.cmsg = libc::CMSG_NXTHDR(self.hdr, self.cmsg);
        }
        self.len += space;
    }

    /// Sets the control length to the messages written.
    fn finish(self) {
        self.hdr.msg_controllen = self.len;
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
    fn recv_n(sock: &mut UdpSocket, want: usize) -> Vec<(Vec<u8>, UdpRecvMeta)> {
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
        let mut a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let mut b = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        a.send_ike(None, b.local_addr(), b"hello ike").unwrap();
        let got = recv_n(&mut b, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"\0\0\0\0hello ike");
        assert_eq!(got[0].1.src, a.local_addr());
        assert_eq!(got[0].1.dst, b.local_addr());
        assert_eq!(got[0].1.ecn, 0);

        // From a wildcard socket, with the source address chosen per message.
        let mut any = UdpSocket::bind("0.0.0.0:0".parse().unwrap(), false).unwrap();
        for src in ["127.0.0.2", "127.0.0.3"] {
            let src: IpAddr = src.parse().unwrap();
            any.send_ike(Some(src), b.local_addr(), b"from").unwrap();
            let got = recv_n(&mut b, 1);
            assert_eq!(got[0].0, b"\0\0\0\0from");
            assert_eq!(got[0].1.src, SocketAddr::new(src, any.local_addr().port()));
        }
    }

    #[test]
    fn reuseport_group_steers_esp_by_spi_and_ike_to_the_first_socket() {
        let mut first = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let mut second = UdpSocket::bind(first.local_addr(), true).unwrap();
        let member = first.group_member().unwrap();
        member
            .steer_by_spi(&SpiSteering {
                targets: vec![0, 1],
                no_spi: 0,
            })
            .unwrap();
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
        assert_eq!(spis(recv_n(&mut first, 3)), vec![0x1002, 0x1004, 0]);
        assert_eq!(spis(recv_n(&mut second, 2)), vec![0x1001, 0x1003]);
    }

    /// A failed worker's socket stays in the group through its [`GroupMember`] after
    /// the worker closed its own descriptor, so the other sockets keep their numbers;
    /// the program sends its slot and everything without an SPI to another socket.
    #[test]
    fn steering_around_a_parked_member_keeps_the_numbering() {
        let mut s0 = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = s0.local_addr();
        let s1 = UdpSocket::bind(addr, true).unwrap();
        let mut s2 = UdpSocket::bind(addr, true).unwrap();
        let parked = s1.group_member().unwrap();
        drop(s1);
        parked.park();
        let steering = SpiSteering {
            targets: vec![0, 2, 2],
            no_spi: 2,
        };
        parked.steer_by_spi(&steering).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for spi in [0x1000_u32, 0x1001, 0x1002, 0x1003] {
            let mut esp = spi.to_be_bytes().to_vec();
            esp.extend_from_slice(&[0, 0, 0, 1, 0xaa, 0xbb]);
            tx.send_to(&esp, addr).unwrap();
        }
        tx.send_to(b"\0\0\0\0ike", addr).unwrap();
        tx.send_to(&[0xff], addr).unwrap();
        let firsts = |got: Vec<(Vec<u8>, UdpRecvMeta)>| -> Vec<u8> {
            got.iter().map(|(d, _)| d[d.len().min(4) - 1]).collect()
        };
        // 0x1000 % 3 == 1 and 0x1003 % 3 == 1 (the parked slot), 0x1001 % 3 == 2.
        assert_eq!(
            firsts(recv_n(&mut s2, 5)),
            vec![0x00, 0x01, 0x03, 0x00, 0xff]
        );
        // 0x1002 % 3 == 0.
        assert_eq!(firsts(recv_n(&mut s0, 1)), vec![0x02]);
        assert!(
            SpiSteering {
                targets: vec![],
                no_spi: 0
            }
            .program()
            .is_err()
        );
    }

    /// A GSO send over loopback reaches a GRO-enabled socket as one coalesced buffer
    /// (where the kernel supports both); either way each segment must come out in a
    /// buffer of its own.
    #[test]
    fn gro_buffers_are_split_one_datagram_per_buffer() {
        let mut rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
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
        let mut got: Vec<Vec<u8>> = recv_n(&mut rx, 3).into_iter().map(|(d, _)| d).collect();
        got.sort();
        assert_eq!(got, segments);
    }

    /// `send_segments` delivers a GSO run as separate datagrams in order, with the ECN
    /// bits of the TOS it was given, from the address it was told; a receiver with
    /// fewer buffers than the train has segments gets the rest staged, not dropped.
    #[test]
    fn gso_run_arrives_in_order_with_its_tos_and_nothing_is_lost() {
        let mut rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let mut tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let segments: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i; if i == 39 { 77 } else { 300 }])
            .collect();
        for df in [true, false] {
            let t = UdpTransmit {
                src: tx.local_addr(),
                dst: rx.local_addr(),
                tos: 0xb9, // DSCP EF, ECT(1)
                ttl: 7,
                df,
                id: 0,
            };
            let iov: Vec<IoSlice<'_>> = segments.iter().map(|s| IoSlice::new(s)).collect();
            tx.send_segments(&t, &iov).unwrap();
            let mut bufs: Vec<PacketBuf> = (0..8).map(|_| PacketBuf::new(4096, 64)).collect();
            let mut meta = vec![UdpRecvMeta::default(); 8];
            let mut got = Vec::new();
            for _ in 0..200 {
                match rx.recv_batch(&mut bufs, &mut meta) {
                    Ok(b) => {
                        assert!(b.datagrams <= 8);
                        for i in 0..b.datagrams {
                            assert_eq!(meta[i].ecn, 1);
                            assert_eq!(meta[i].src, tx.local_addr());
                            got.push(bufs[i].data().to_vec());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("recv_batch: {e}"),
                }
                if got.len() >= segments.len() {
                    break;
                }
            }
            assert_eq!(got, segments);
            assert!(!rx.has_pending());
        }
    }
}
