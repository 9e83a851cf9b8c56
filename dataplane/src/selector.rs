//! Traffic selectors (RFC 4301 §4.4.1) and the flow key they are matched against.
//!
//! A selector names the traffic a policy or an SA applies to: address ranges, a next-layer
//! protocol and port ranges. Addresses are held as ranges rather than prefixes because IKEv2
//! negotiates ranges (RFC 7296 §3.13.1); a configured prefix converts to a range losslessly.
//!
//! The packet side is a [`FlowKey`], extracted once per packet by [`FlowKey::from_packet`]
//! without allocating, then matched against any number of selectors.
//!
//! Two RFC 4301 conventions shape the key:
//! - **ICMP and ICMPv6** carry no ports; their message type is held in the source port and
//!   their code in the destination port (RFC 4301 §4.4.1.1), in both directions. IKEv2 packs
//!   type and code into one 16-bit "port" (RFC 7296 §3.13.1); converting that form into two
//!   [`PortRange`]s is the job of whoever maps negotiated selectors onto this type.
//! - **OPAQUE ports**: a non-first fragment carries no transport header, and protocols other
//!   than TCP, UDP, SCTP, UDP-Lite, DCCP, ICMP and ICMPv6 have no ports. Such a key has
//!   [`FlowKey::ports_opaque`] set and ports 0, and only selectors whose port ranges are both
//!   ANY match it (RFC 4301 §4.4.1 "OPAQUE", §7.1). A zero port alone would wrongly match
//!   e.g. an ICMP echo-reply selector (type 0, code 0).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use etherparse::{
    Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice,
};

use crate::ip::IPV6_HEADER_LEN;

/// IP protocol numbers the selector code needs by name.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// DCCP.
    pub const DCCP: u8 = 33;
    /// IPv6 Hop-by-Hop options extension header.
    pub const HOP_BY_HOP: u8 = 0;
    /// IPv6 Routing extension header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment extension header.
    pub const FRAGMENT: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 Destination Options extension header.
    pub const DEST_OPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDP_LITE: u8 = 136;
}

/// Errors from building selectors or extracting a flow key from a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Prefix length beyond the address width.
    #[error("prefix length {len} exceeds {max}")]
    PrefixLength { len: u8, max: u8 },
    /// Text that is not an address, a prefix or a prefix length.
    #[error("invalid address or prefix: {0}")]
    Parse(String),
    /// Range ends of different address families.
    #[error("range mixes IPv4 and IPv6")]
    FamilyMismatch,
    /// Range whose start lies above its end.
    #[error("range start is above its end")]
    Inverted,
    /// Packet shorter than its headers claim or need.
    #[error("packet truncated")]
    Truncated,
    /// IP version other than 4 or 6.
    #[error("unsupported IP version {0}")]
    BadVersion(u8),
    /// IP header fields that are inconsistent (header length, total length).
    #[error("malformed IP header")]
    BadIpHeader,
}

/// An address prefix such as `10.1.0.0/16`. Host bits may be set (`10.1.2.3/16` is kept as
/// written, for display) and are masked off when matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// A prefix of `len` bits; fails if `len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, SelectorError> {
        let max = max_len(addr);
        if len > max {
            return Err(SelectorError::PrefixLength { len, max });
        }
        Ok(Self { addr, len })
    }

    /// The prefix holding exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: max_len(addr),
        }
    }

    /// The address as written (host bits possibly set).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The first address of the prefix (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.len))),
        }
    }

    /// The last address of the prefix (host bits set).
    pub fn last(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) | !mask32(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) | !mask128(self.len))),
        }
    }

    /// True if `addr` is of the same family and inside the prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let m = mask32(self.len);
                u32::from(p) & m == u32::from(a) & m
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let m = mask128(self.len);
                u128::from(p) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Network mask of `len` leading one bits (`len` <= 32; /0 is the empty mask).
fn mask32(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// Network mask of `len` leading one bits (`len` <= 128; /0 is the empty mask).
fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = SelectorError;

    /// Parses `ADDR/LEN`, or a bare `ADDR` as a host prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SelectorError::Parse(s.to_owned());
        match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
                let len: u8 = l.trim().parse().map_err(|_| bad())?;
                Self::new(addr, len)
            }
            None => Ok(Self::host(s.trim().parse().map_err(|_| bad())?)),
        }
    }
}

/// An inclusive range of addresses of one family, the form IKEv2 traffic selectors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

impl IpRange {
    /// Every IPv4 address.
    pub const ANY_V4: IpRange = IpRange {
        start: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        end: IpAddr::V4(Ipv4Addr::BROADCAST),
    };

    /// Every IPv6 address.
    pub const ANY_V6: IpRange = IpRange {
        start: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        end: IpAddr::V6(Ipv6Addr::from_bits(u128::MAX)),
    };

    /// The range `start..=end`; both ends must be of one family and in order.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, SelectorError> {
        let ordered = match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => s <= e,
            (IpAddr::V6(s), IpAddr::V6(e)) => s <= e,
            _ => return Err(SelectorError::FamilyMismatch),
        };
        if !ordered {
            return Err(SelectorError::Inverted);
        }
        Ok(Self { start, end })
    }

    /// The range holding exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            start: addr,
            end: addr,
        }
    }

    /// First address of the range.
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// Last address of the range.
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// True for an IPv6 range.
    pub fn is_ipv6(&self) -> bool {
        self.start.is_ipv6()
    }

    /// True if `addr` is of the range's family and within it.
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.start, self.end, addr) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => s <= a && a <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(a)) => s <= a && a <= e,
            _ => false,
        }
    }
}

impl From<IpPrefix> for IpRange {
    fn from(p: IpPrefix) -> Self {
        Self {
            start: p.network(),
            end: p.last(),
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// An inclusive port range. For ICMP/ICMPv6 the source range holds message types and the
/// destination range codes (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// Every port (`0..=65535`); the only range that matches OPAQUE ports.
    pub const ANY: PortRange = PortRange {
        start: 0,
        end: u16::MAX,
    };

    /// The range `start..=end`; fails if `start > end`.
    pub fn new(start: u16, end: u16) -> Result<Self, SelectorError> {
        if start > end {
            return Err(SelectorError::Inverted);
        }
        Ok(Self { start, end })
    }

    /// The range holding one port (or one ICMP type or code).
    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: port,
        }
    }

    /// First port of the range.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// Last port of the range.
    pub fn end(&self) -> u16 {
        self.end
    }

    /// True for the full range.
    #[inline]
    pub fn is_any(&self) -> bool {
        self.start == 0 && self.end == u16::MAX
    }

    /// True if `port` lies within the range.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            f.write_str("any")
        } else if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A traffic selector in the outbound direction: `src` is the local (protected) side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Source addresses.
    pub src: IpRange,
    /// Destination addresses.
    pub dst: IpRange,
    /// Next-layer protocol; `None` matches any.
    pub protocol: Option<u8>,
    /// Source ports, or ICMP types.
    pub src_ports: PortRange,
    /// Destination ports, or ICMP codes.
    pub dst_ports: PortRange,
}

impl Selector {
    /// All traffic from `src` to `dst`: any protocol, any ports.
    pub fn new(src: impl Into<IpRange>, dst: impl Into<IpRange>) -> Self {
        Self {
            src: src.into(),
            dst: dst.into(),
            protocol: None,
            src_ports: PortRange::ANY,
            dst_ports: PortRange::ANY,
        }
    }

    /// The same selector restricted to one protocol.
    pub fn with_protocol(mut self, protocol: u8) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The same selector restricted to source ports (ICMP: types).
    pub fn with_src_ports(mut self, ports: PortRange) -> Self {
        self.src_ports = ports;
        self
    }

    /// The same selector restricted to destination ports (ICMP: codes).
    pub fn with_dst_ports(mut self, ports: PortRange) -> Self {
        self.dst_ports = ports;
        self
    }

    /// True if the packet described by `key` is selected.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        if let Some(p) = self.protocol
            && p != key.protocol
        {
            return false;
        }
        let ports = if key.ports_opaque {
            self.src_ports.is_any() && self.dst_ports.is_any()
        } else {
            self.src_ports.contains(key.src_port) && self.dst_ports.contains(key.dst_port)
        };
        ports && self.src.contains(key.src) && self.dst.contains(key.dst)
    }

    /// The selector for the inbound direction: addresses and ports swapped. ICMP selectors
    /// keep their port fields, because type and code sit in fixed fields whatever the
    /// direction.
    pub fn reversed(&self) -> Self {
        let icmp = matches!(self.protocol, Some(proto::ICMP | proto::ICMPV6));
        let (src_ports, dst_ports) = if icmp {
            (self.src_ports, self.dst_ports)
        } else {
            (self.dst_ports, self.src_ports)
        };
        Self {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            src_ports,
            dst_ports,
        }
    }
}

/// The fields of one packet that selectors look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Next-layer protocol, after the IPv6 extension headers that RFC 4301 skips.
    pub protocol: u8,
    /// Source port, or ICMP type; 0 when opaque.
    pub src_port: u16,
    /// Destination port, or ICMP code; 0 when opaque.
    pub dst_port: u16,
    /// Ports are not available (non-first fragment, or a protocol without ports): only
    /// selectors with ANY ports match.
    pub ports_opaque: bool,
}

impl FlowKey {
    /// A key with ports (or ICMP type and code).
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, src_port: u16, dst_port: u16) -> Self {
        Self {
            src,
            dst,
            protocol,
            src_port,
            dst_port,
            ports_opaque: false,
        }
    }

    /// A key whose ports are OPAQUE.
    pub fn opaque(src: IpAddr, dst: IpAddr, protocol: u8) -> Self {
        Self {
            src,
            dst,
            protocol,
            src_port: 0,
            dst_port: 0,
            ports_opaque: true,
        }
    }

    /// Extracts the key from an IPv4 or IPv6 packet, skipping IPv6 Hop-by-Hop, Routing,
    /// Destination Options and Fragment headers. AH and ESP are next-layer protocols here,
    /// as RFC 4301 §4.4.1.1 has it. Never allocates; bytes beyond the IP length are ignored.
    pub fn from_packet(packet: &[u8]) -> Result<FlowKey, SelectorError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Self::from_ipv4(packet),
            Some(6) => Self::from_ipv6(packet),
            Some(v) => Err(SelectorError::BadVersion(v)),
            None => Err(SelectorError::Truncated),
        }
    }

    fn from_ipv4(packet: &[u8]) -> Result<FlowKey, SelectorError> {
        let h = Ipv4HeaderSlice::from_slice(packet).map_err(|e| match e {
            etherparse::err::ipv4::HeaderSliceError::Len(_) => SelectorError::Truncated,
            etherparse::err::ipv4::HeaderSliceError::Content(_) => SelectorError::BadIpHeader,
        })?;
        let hlen = h.slice().len();
        let total = usize::from(h.total_len());
        if total < hlen {
            return Err(SelectorError::BadIpHeader);
        }
        let payload = packet.get(hlen..total).ok_or(SelectorError::Truncated)?;
        let src = IpAddr::V4(h.source_addr());
        let dst = IpAddr::V4(h.destination_addr());
        let protocol = h.protocol().0;
        if h.fragments_offset().value() != 0 {
            return Ok(Self::opaque(src, dst, protocol));
        }
        Self::with_transport(src, dst, protocol, payload)
    }

    fn from_ipv6(packet: &[u8]) -> Result<FlowKey, SelectorError> {
        let h = Ipv6HeaderSlice::from_slice(packet).map_err(|e| match e {
            etherparse::err::ipv6::HeaderSliceError::Len(_) => SelectorError::Truncated,
            etherparse::err::ipv6::HeaderSliceError::Content(_) => SelectorError::BadIpHeader,
        })?;
        let end = IPV6_HEADER_LEN + usize::from(h.payload_length());
        let mut rest = packet
            .get(IPV6_HEADER_LEN..end)
            .ok_or(SelectorError::Truncated)?;
        let src = IpAddr::V6(h.source_addr());
        let dst = IpAddr::V6(h.destination_addr());
        let mut next = h.next_header().0;
        // Every extension header consumes at least 8 bytes, so the walk ends.
        loop {
            match next {
                proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS => {
                    let e = Ipv6RawExtHeaderSlice::from_slice(rest)
                        .map_err(|_| SelectorError::Truncated)?;
                    next = e.next_header().0;
                    rest = rest
                        .get(e.slice().len()..)
                        .ok_or(SelectorError::Truncated)?;
                }
                proto::FRAGMENT => {
                    let f = Ipv6FragmentHeaderSlice::from_slice(rest)
                        .map_err(|_| SelectorError::Truncated)?;
                    next = f.next_header().0;
                    if f.fragment_offset().value() != 0 {
                        return Ok(Self::opaque(src, dst, next));
                    }
                    rest = rest
                        .get(f.slice().len()..)
                        .ok_or(SelectorError::Truncated)?;
                }
                _ => return Self::with_transport(src, dst, next, rest),
            }
        }
    }

    fn with_transport(
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        l4: &[u8],
    ) -> Result<FlowKey, SelectorError> {
        match protocol {
            proto::TCP | proto::UDP | proto::SCTP | proto::UDP_LITE | proto::DCCP => match l4 {
                [a, b, c, d, ..] => Ok(Self::new(
                    src,
                    dst,
                    protocol,
                    u16::from_be_bytes([*a, *b]),
                    u16::from_be_bytes([*c, *d]),
                )),
                _ => Err(SelectorError::Truncated),
            },
            proto::ICMP | proto::ICMPV6 => match l4 {
                [t, c, ..] => Ok(Self::new(src, dst, protocol, u16::from(*t), u16::from(*c))),
                _ => Err(SelectorError::Truncated),
            },
            _ => Ok(Self::opaque(src, dst, protocol)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_parse_display_and_contains() {
        assert_eq!(p("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(p("10.1.2.3").prefix_len(), 32);
        assert_eq!(p("2001:db8::1").prefix_len(), 128);
        assert!(p("10.1.2.3/16").contains("10.1.255.255".parse().unwrap()));
        assert!(!p("10.1.0.0/16").contains("10.2.0.0".parse().unwrap()));
        assert!(!p("10.1.0.0/16").contains("::1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("255.255.255.255".parse().unwrap()));
        assert!(p("::/0").contains("ffff::1".parse().unwrap()));
        assert!(p("2001:db8::/32").contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!p("2001:db8::/32").contains("2001:db9::".parse().unwrap()));
        assert_eq!(
            "10.0.0.0/33".parse::<IpPrefix>(),
            Err(SelectorError::PrefixLength { len: 33, max: 32 })
        );
        assert!("::/129".parse::<IpPrefix>().is_err());
        assert!("10.0.0/8".parse::<IpPrefix>().is_err());
        assert!("10.0.0.0/x".parse::<IpPrefix>().is_err());
    }

    #[test]
    fn prefix_to_range() {
        let r = IpRange::from(p("10.1.2.3/16"));
        assert_eq!(r.start(), "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(r.end(), "10.1.255.255".parse::<IpAddr>().unwrap());
        assert_eq!(IpRange::from(p("0.0.0.0/0")), IpRange::ANY_V4);
        assert_eq!(IpRange::from(p("::/0")), IpRange::ANY_V6);
        let h = IpRange::from(p("2001:db8::5/128"));
        assert_eq!(h.start(), h.end());
    }

    #[test]
    fn range_validation() {
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.1".parse().unwrap();
        let c: IpAddr = "::1".parse().unwrap();
        assert_eq!(IpRange::new(a, b), Err(SelectorError::Inverted));
        assert_eq!(IpRange::new(a, c), Err(SelectorError::FamilyMismatch));
        assert!(IpRange::new(b, a).unwrap().contains(a));
        assert_eq!(PortRange::new(2, 1), Err(SelectorError::Inverted));
    }

    #[test]
    fn reversed_swaps_ports_except_for_icmp() {
        let s = Selector::new(p("10.0.0.0/8"), p("192.168.0.0/16"))
            .with_protocol(proto::TCP)
            .with_dst_ports(PortRange::single(443));
        let r = s.reversed();
        assert_eq!(r.src, s.dst);
        assert_eq!(r.src_ports, PortRange::single(443));
        assert!(r.dst_ports.is_any());
        let i = s.with_protocol(proto::ICMP).reversed();
        assert_eq!(i.dst_ports, PortRange::single(443));
    }
}
