//! VPN monitoring (Junos `vpn-monitor`): ICMP echo requests sent through the tunnel to
//! a destination behind the peer; when `threshold` probes in a row go unanswered the
//! VPN is declared down, its IKE SA deleted and renegotiated, as DPD does for a peer
//! that stops answering IKE. DPD proves the peer's IKE daemon alive; this proves the
//! data path, which can break while IKE still answers.
//!
//! The probe socket is a raw ICMP socket bound to the tunnel's `st0` device
//! (SO_BINDTODEVICE), so probes enter the tunnel whatever the routing table says about
//! the destination (the peer's own outer address, by default, routes to the WAN), from
//! the source interface's address, which must lie in the negotiated traffic
//! selectors. One tick per interval: first the replies to the last probe are read
//! (non-blocking), then the next probe goes out; a probe counts as answered if its
//! reply arrived within the interval.
//!
//! With `optimized`, a tick at which the tunnel received traffic since the last one
//! sends no probe and counts as answered (Junos: probes only when the tunnel is idle
//! inbound).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// ICMP echo request and reply types.
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
/// Payload after the 8-byte ICMP header, so a capture shows what the probe is.
const PAYLOAD: &[u8] = b"vpnd vpn-monitor";

/// What a VPN's monitoring needs, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    /// Where probes go; `None`: the peer's outer address.
    pub destination: Option<Ipv4Addr>,
    /// The source address's interface (`source-interface`); `None`: the kernel's
    /// choice for the tunnel device.
    pub source_interface: Option<String>,
    /// The tunnel device probes are bound to (`st0.N`).
    pub device: String,
    pub interval: Duration,
    /// Unanswered probes in a row before the VPN is down.
    pub threshold: u32,
    /// Probe only when no traffic arrived through the tunnel since the last interval.
    pub optimized: bool,
}

/// What a tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Same,
    /// The destination answers (first time, or again after being down).
    Up,
    /// `threshold` probes in a row went unanswered.
    Down,
}

/// The probing state of one VPN.
#[derive(Debug)]
pub struct Prober {
    socket: Socket,
    destination: Ipv4Addr,
    ident: u16,
    seq: u16,
    /// The probe sent at the last tick, not yet answered.
    waiting: Option<u16>,
    misses: u32,
    threshold: u32,
    up: bool,
}

impl Prober {
    /// Opens the probe socket for `spec` towards `peer` (the default destination).
    pub fn open(spec: &MonitorSpec, peer: Ipv4Addr) -> io::Result<Prober> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
        socket.set_nonblocking(true)?;
        socket.bind_device(Some(spec.device.as_bytes()))?;
        if let Some(name) = &spec.source_interface {
            let source = interface_ipv4(name).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("source-interface {name} has no IPv4 address"),
                )
            })?;
            socket.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
        }
        Ok(Prober {
            socket,
            destination: spec.destination.unwrap_or(peer),
            // Told apart from other pings on the host by identifier (and source).
            ident: rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u16,
            seq: 0,
            waiting: None,
            misses: 0,
            threshold: spec.threshold.max(1),
            up: false,
        })
    }

    /// Where probes go.
    pub fn destination(&self) -> Ipv4Addr {
        self.destination
    }

    /// Forgets the outstanding probe and the misses (the tunnel went away: a new one
    /// starts from scratch).
    pub fn reset(&mut self) {
        self.waiting = None;
        self.misses = 0;
        self.up = false;
    }

    /// One interval: judges the last probe (answered, or `traffic_seen` with
    /// `optimized`), then sends the next one unless traffic made it unnecessary.
    pub fn tick(&mut self, skip_probe: bool) -> Verdict {
        let answered = self.drain_replies();
        let verdict = match self.waiting.take() {
            Some(_) if !answered => {
                self.misses += 1;
                if self.misses == self.threshold {
                    self.up = false;
                    Verdict::Down
                } else {
                    Verdict::Same
                }
            }
            Some(_) => self.alive(),
            None if skip_probe => self.alive(),
            None => Verdict::Same,
        };
        if verdict == Verdict::Down {
            self.misses = 0;
            return verdict;
        }
        if !skip_probe {
            self.send_probe();
        }
        verdict
    }

    fn alive(&mut self) -> Verdict {
        self.misses = 0;
        if self.up {
            Verdict::Same
        } else {
            self.up = true;
            Verdict::Up
        }
    }

    fn send_probe(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        let packet = echo_request(self.ident, self.seq);
        let to = SocketAddr::V4(SocketAddrV4::new(self.destination, 0));
        match self.socket.send_to(&packet, &to.into()) {
            Ok(_) => self.waiting = Some(self.seq),
            // No SA yet, a full queue: the probe counts as lost at the next tick.
            Err(e) => {
                tracing::debug!(destination = %self.destination, error = %e, "vpn-monitor probe not sent");
                self.waiting = Some(self.seq);
            }
        }
    }

    /// Reads every queued ICMP datagram; true if one answers the outstanding probe.
    fn drain_replies(&mut self) -> bool {
        let mut answered = false;
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            // SAFETY: recv_from initialised the first `n` bytes.
            let bytes: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let from = from.as_socket().map(|s| s.ip());
            if from == Some(IpAddr::V4(self.destination))
                && let Some(seq) = echo_reply_seq(&bytes, self.ident)
                && Some(seq) == self.waiting
            {
                answered = true;
            }
        }
        answered
    }
}

/// An ICMP echo request with checksum.
fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + PAYLOAD.len());
    p.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The sequence number of an echo reply with identifier `ident` in `packet` (a raw
/// IPv4 socket delivers the IP header too), if it is one.
fn echo_reply_seq(packet: &[u8], ident: u16) -> Option<u16> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(ihl..ihl + 8)?;
    (icmp[0] == ECHO_REPLY && u16::from_be_bytes([icmp[4], icmp[5]]) == ident)
        .then(|| u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// RFC 1071 Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The first IPv4 address of interface `name`.
fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list freed below by freeifaddrs.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points at a sockaddr of the family it names.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if ifname.to_bytes() == name.as_bytes() && family == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: `addrs` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksum_verifies() {
        let p = echo_request(0x1234, 7);
        // A correct checksum makes the sum over the whole message 0xffff (RFC 1071).
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn replies_are_matched_by_identifier() {
        let mut reply = vec![0x45u8; 20];
        reply[0] = 0x45;
        reply.extend_from_slice(&[ECHO_REPLY, 0, 0, 0, 0x12, 0x34, 0, 9]);
        assert_eq!(echo_reply_seq(&reply, 0x1234), Some(9));
        assert_eq!(echo_reply_seq(&reply, 0x1235), None);
        assert_eq!(echo_reply_seq(&reply[..24], 0x1234), None);
        reply[20] = ECHO_REQUEST;
        assert_eq!(echo_reply_seq(&reply, 0x1234), None);
    }

    #[test]
    fn loopback_has_an_ipv4_address() {
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("no-such-interface"), None);
    }
}
