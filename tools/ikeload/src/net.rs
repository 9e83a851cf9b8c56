//! The two UDP sockets every simulated peer shares: port 500, and port 4500 once the
//! engine floats (NAT-T, `--encap`), with the non-ESP marker added and removed here.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use ike::engine::NAT_T_PORT;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

const MARKER: [u8; 4] = [0; 4];
const BATCH: usize = 32;
/// A GRO batch of datagrams from one peer fits (quinn-udp enables GRO).
const BUF: usize = 64 * 1024;

/// One received IKE message (marker already removed).
pub struct Datagram<'a> {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: &'a [u8],
}

struct Port {
    socket: UdpSocket,
    state: UdpSocketState,
    port: u16,
}

pub struct Sockets {
    ike: Port,
    natt: Port,
}

/// Receive buffers, apart from [`Sockets`] so that a datagram's handler can send.
pub struct RecvBufs(Vec<Vec<u8>>);

impl RecvBufs {
    pub fn new() -> Self {
        RecvBufs((0..BATCH).map(|_| vec![0u8; BUF]).collect())
    }
}

impl Port {
    fn bind(port: u16) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))?;
        socket.set_nonblocking(true)?;
        // Asks for the destination address of each datagram (IP_PKTINFO) and lets
        // sends name their source.
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Port {
            socket,
            state,
            port,
        })
    }
}

impl Sockets {
    pub fn bind() -> io::Result<Self> {
        let s = Sockets {
            ike: Port::bind(500)?,
            natt: Port::bind(NAT_T_PORT)?,
        };
        for p in [&s.ike, &s.natt] {
            // Thousands of peers answer in bursts: a deep queue instead of drops and
            // retransmissions.
            let _ = p
                .state
                .set_recv_buffer_size(UdpSockRef::from(&p.socket), 8 << 20);
            let _ = p
                .state
                .set_send_buffer_size(UdpSockRef::from(&p.socket), 8 << 20);
        }
        Ok(s)
    }

    /// Sends `data` from `local` (address and port, as the engine chose) to `to`.
    pub fn send(
        &self,
        local: SocketAddr,
        to: SocketAddr,
        marker: bool,
        data: &[u8],
    ) -> io::Result<()> {
        let port = if local.port() == NAT_T_PORT {
            &self.natt
        } else {
            &self.ike
        };
        let framed;
        let contents = if marker {
            framed = [&MARKER[..], data].concat();
            &framed[..]
        } else {
            data
        };
        port.state.try_send(
            UdpSockRef::from(&port.socket),
            &Transmit {
                destination: to,
                ecn: None,
                contents,
                segment_size: None,
                src_ip: Some(local.ip()),
            },
        )
    }

    /// Blocks until a socket is readable or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        let mut fds =
            [self.ike.socket.as_raw_fd(), self.natt.socket.as_raw_fd()].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call, and
        // its length is passed with it.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Hands every datagram waiting on either socket to `f`; on port 4500 only those
    /// behind the non-ESP marker (IKE), not keepalives or ESP.
    pub fn recv_each(
        &self,
        bufs: &mut RecvBufs,
        mut f: impl FnMut(Datagram<'_>),
    ) -> io::Result<()> {
        for port in [&self.ike, &self.natt] {
            loop {
                let mut meta = [RecvMeta::default(); BATCH];
                let mut slices: Vec<IoSliceMut<'_>> =
                    bufs.0.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                let n =
                    match port
                        .state
                        .recv(UdpSockRef::from(&port.socket), &mut slices, &mut meta)
                    {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                for (m, buf) in meta.iter().zip(slices.iter()).take(n) {
                    let Some(dst) = m.dst_ip else { continue };
                    let to = SocketAddr::new(dst, port.port);
                    let stride = m.stride.max(1);
                    for dg in buf.get(..m.len).unwrap_or_default().chunks(stride) {
                        let data = if port.port == NAT_T_PORT {
                            match dg.strip_prefix(&MARKER[..]) {
                                Some(ike) => ike,
                                None => continue,
                            }
                        } else {
                            dg
                        };
                        f(Datagram {
                            from: m.addr,
                            to,
                            data,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
