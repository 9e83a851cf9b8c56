//! IKE datagrams in and out: UDP 500 on our own sockets, and UDP 4500 through the
//! dataplane's NAT-T sockets (which share that port with ESP-in-UDP and strip or add the
//! non-ESP marker).
//!
//! Routing: a datagram goes to the gateway that owns the IKE SA our SPI names (the
//! responder SPI when we responded, the initiator SPI when we initiated); a new
//! IKE_SA_INIT request, which carries no SPI of ours yet, goes to the gateway configured
//! for the sender's address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix::prelude::*;
use dataplane::worker::DataplaneHandle;
use tokio::net::UdpSocket;

use super::RuntimeError;
use super::dialup::Dialup;
use super::gateway::{Datagram, Gateway};

/// Exchange type of IKE_SA_INIT (RFC 7296 §3.1).
const IKE_SA_INIT: u8 = 34;
/// Flags bit of a response.
const FLAG_RESPONSE: u8 = 0x20;
/// The fixed IKE header.
const HEADER_LEN: usize = 28;

/// A datagram received on port 500 or 4500.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Received {
    /// Sender.
    pub from: SocketAddr,
    /// Our address it arrived on.
    pub local: SocketAddr,
    /// Arrived on the NAT-T port (marker already removed).
    pub natt: bool,
    /// The IKE message.
    pub data: Vec<u8>,
}

/// A datagram to send.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SendIke {
    /// Our address the SA uses: port 500 datagrams leave from the socket bound to it,
    /// so the peer's NAT detection sees the address it expects.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// Through the NAT-T port (the marker is added there).
    pub natt: bool,
    /// The IKE message.
    pub data: Vec<u8>,
}

/// Routes datagrams naming `spi` (ours) to `gateway`, or stops with `None`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RouteSpi {
    /// Our SPI of an IKE SA.
    pub spi: u64,
    /// Its gateway, or `None` to forget the route.
    pub gateway: Option<Addr<Gateway>>,
}

/// Routes new IKE_SA_INIT requests from `peer` to `gateway`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RegisterPeer {
    /// Peer address.
    pub peer: IpAddr,
    /// Its gateway.
    pub gateway: Addr<Gateway>,
}

/// Stops routing new IKE_SA_INIT requests from `peer` to `gateway` (a reload removed
/// it); a route another gateway has taken since stays.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct UnregisterPeer {
    /// Peer address.
    pub peer: IpAddr,
    /// The gateway that goes away.
    pub gateway: Addr<Gateway>,
}

/// Routes new IKE_SA_INIT requests that no configured peer claims, arriving on
/// `local`, to a dial-up gateway; `None` stops (a reload removed it).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RegisterDialup {
    /// Our address the dial-up gateway listens on.
    pub local: IpAddr,
    /// The dial-up gateway.
    pub dialup: Option<Addr<Dialup>>,
}

/// Also listens on `addr` (port 500 of a local address a reload added); listening
/// there already is not an error.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), RuntimeError>")]
pub struct Listen(pub SocketAddr);

/// The node's IKE socket actor.
#[derive(Debug)]
pub struct IkeSocket {
    sockets: Vec<Arc<UdpSocket>>,
    dataplane: DataplaneHandle,
    by_spi: HashMap<u64, Addr<Gateway>>,
    by_peer: HashMap<IpAddr, Addr<Gateway>>,
    dialups: HashMap<IpAddr, Addr<Dialup>>,
    /// Datagrams nobody claimed, for `show` commands.
    pub unrouted: u64,
}

impl IkeSocket {
    /// Binds the port-500 sockets.
    pub async fn bind(
        addrs: &[SocketAddr],
        dataplane: DataplaneHandle,
    ) -> Result<IkeSocket, RuntimeError> {
        let mut sockets = Vec::new();
        for addr in addrs {
            let s = bind_freely(*addr).map_err(|source| RuntimeError::IkeSocket {
                addr: *addr,
                source,
            })?;
            sockets.push(Arc::new(s));
        }
        Ok(IkeSocket {
            sockets,
            dataplane,
            by_spi: HashMap::new(),
            by_peer: HashMap::new(),
            dialups: HashMap::new(),
            unrouted: 0,
        })
    }

    fn route(&self, from: SocketAddr, data: &[u8]) -> Option<&Addr<Gateway>> {
        let header = data.get(..HEADER_LEN)?;
        let spi = |r: std::ops::Range<usize>| {
            header
                .get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        };
        let (spi_i, spi_r) = (spi(0..8), spi(8..16));
        let (exchange, flags) = (header[18], header[19]);
        if spi_r != 0
            && let Some(g) = self.by_spi.get(&spi_r)
        {
            return Some(g);
        }
        if let Some(g) = self.by_spi.get(&spi_i) {
            return Some(g);
        }
        if spi_r == 0 && exchange == IKE_SA_INIT && flags & FLAG_RESPONSE == 0 {
            // A peer whose (dial-up) gateway ended calls anew through the dial-up.
            return self.by_peer.get(&from.ip()).filter(|g| g.connected());
        }
        None
    }
}

impl Actor for IkeSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for sock in &self.sockets {
            spawn_receiver(sock.clone(), ctx.address());
        }
    }
}

/// Reads one port-500 socket until the socket actor is gone.
fn spawn_receiver(sock: Arc<UdpSocket>, me: Addr<IkeSocket>) {
    let local = sock
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 500)));
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) => me.do_send(Received {
                    from,
                    local,
                    natt: false,
                    data: buf[..n].to_vec(),
                }),
                Err(e) => {
                    tracing::warn!(%local, error = %e, "IKE socket receive failed");
                    if !me.connected() {
                        break;
                    }
                }
            }
        }
    });
}

impl Handler<Received> for IkeSocket {
    type Result = ();

    fn handle(&mut self, msg: Received, _: &mut Context<Self>) {
        match self.route(msg.from, &msg.data) {
            Some(g) => g.do_send(Datagram {
                from: msg.from,
                local: msg.local,
                natt: msg.natt,
                data: msg.data,
            }),
            None => match self.dialups.get(&msg.local.ip()) {
                Some(d) if is_init_request(&msg.data) => d.do_send(msg),
                _ => {
                    self.unrouted += 1;
                    tracing::debug!(from = %msg.from, len = msg.data.len(), "IKE datagram for no known SA or peer");
                }
            },
        }
    }
}

impl Handler<SendIke> for IkeSocket {
    type Result = ();

    fn handle(&mut self, msg: SendIke, _: &mut Context<Self>) {
        if msg.natt {
            if let Err(e) = self
                .dataplane
                .send_ike(Some(msg.src.ip()), msg.dst, msg.data)
            {
                tracing::warn!(dst = %msg.dst, error = %e, "sending IKE on the NAT-T port");
            }
            return;
        }
        // The socket bound to the SA's own address: a node with several gateways'
        // local addresses (a hub, a cluster node holding two redundancy groups) must
        // answer each peer from the address it talks to, or the peer sees a NAT, or
        // nothing (a floating address another node holds is not routable from here).
        let family = |s: &&Arc<UdpSocket>| {
            s.local_addr()
                .is_ok_and(|a| a.is_ipv4() == msg.dst.is_ipv4())
        };
        let sock = self
            .sockets
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.ip() == msg.src.ip()))
            .or_else(|| self.sockets.iter().find(family));
        match sock.map(|s| s.try_send_to(&msg.data, msg.dst)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(dst = %msg.dst, error = %e, "sending IKE"),
            None => tracing::warn!(dst = %msg.dst, "no IKE socket of that address family"),
        }
    }
}

impl Handler<RouteSpi> for IkeSocket {
    type Result = ();

    fn handle(&mut self, msg: RouteSpi, _: &mut Context<Self>) {
        match msg.gateway {
            Some(g) => {
                self.by_spi.insert(msg.spi, g);
            }
            None => {
                self.by_spi.remove(&msg.spi);
            }
        }
    }
}

impl Handler<RegisterPeer> for IkeSocket {
    type Result = ();

    fn handle(&mut self, msg: RegisterPeer, _: &mut Context<Self>) {
        self.by_peer.insert(msg.peer, msg.gateway);
    }
}

impl Handler<RegisterDialup> for IkeSocket {
    type Result = ();

    fn handle(&mut self, msg: RegisterDialup, _: &mut Context<Self>) {
        match msg.dialup {
            Some(d) => {
                self.dialups.insert(msg.local, d);
            }
            None => {
                self.dialups.remove(&msg.local);
            }
        }
    }
}

/// A request starting a new IKE SA (IKE_SA_INIT, no responder SPI yet).
fn is_init_request(data: &[u8]) -> bool {
    data.get(..HEADER_LEN).is_some_and(|h| {
        h[8..16].iter().all(|b| *b == 0) && h[18] == IKE_SA_INIT && h[19] & FLAG_RESPONSE == 0
    })
}

impl Handler<UnregisterPeer> for IkeSocket {
    type Result = ();

    fn handle(&mut self, msg: UnregisterPeer, _: &mut Context<Self>) {
        if self.by_peer.get(&msg.peer) == Some(&msg.gateway) {
            self.by_peer.remove(&msg.peer);
        }
    }
}

impl Handler<Listen> for IkeSocket {
    type Result = Result<(), RuntimeError>;

    fn handle(&mut self, Listen(addr): Listen, ctx: &mut Context<Self>) -> Self::Result {
        if self
            .sockets
            .iter()
            .any(|s| s.local_addr().is_ok_and(|a| a == addr))
        {
            return Ok(());
        }
        let sock =
            Arc::new(bind_freely(addr).map_err(|source| RuntimeError::IkeSocket { addr, source })?);
        spawn_receiver(sock.clone(), ctx.address());
        self.sockets.push(sock);
        tracing::info!(%addr, "IKE listening");
        Ok(())
    }
}

/// Binds with IP_FREEBIND: a cluster's standby listens on its floating (reth) address
/// before the address moves to it.
fn bind_freely(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_freebind_v6(true)?;
    } else {
        sock.set_freebind_v4(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}
