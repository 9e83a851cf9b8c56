//! The few IP header operations the encapsulation hot path needs, on raw bytes.
//!
//! Parsing for policy and fragmentation uses `etherparse` (see `selector` and `frag`);
//! here the engine only peeks at a handful of fixed fields and writes outer headers it
//! fully controls, which byte offsets do without any per-packet validation overhead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

/// IP protocol numbers used here.
pub mod proto {
    /// IPv4-in-IP (ESP next header in tunnel mode for an IPv4 inner packet).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6-in-IP.
    pub const IPV6: u8 = 41;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// "No next header": a dummy (TFC) packet in ESP (RFC 4303 §2.6).
    pub const NONE: u8 = 59;
}

/// ECN codepoints (RFC 3168).
pub mod ecn {
    /// Not ECN-capable transport.
    pub const NOT_ECT: u8 = 0b00;
    /// ECT(1).
    pub const ECT1: u8 = 0b01;
    /// ECT(0).
    pub const ECT0: u8 = 0b10;
    /// Congestion experienced.
    pub const CE: u8 = 0b11;
}

/// The fields of an inner packet encapsulation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerInfo {
    /// 4 or 6.
    pub version: u8,
    /// DSCP (6 bits) and ECN (2 bits): IPv4 TOS or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 DF bit; IPv6 packets are never fragmented by routers, so true.
    pub df: bool,
    /// Length the IP header says the packet has.
    pub total_len: usize,
}

/// Reads version, TOS/traffic class, DF and length of an IP packet. `None` if too short
/// or not IPv4/IPv6.
#[inline]
pub fn inner_info(pkt: &[u8]) -> Option<InnerInfo> {
    let first = *pkt.first()?;
    match first >> 4 {
        4 if pkt.len() >= IPV4_HEADER_LEN => Some(InnerInfo {
            version: 4,
            tos: pkt[1],
            df: pkt[6] & 0x40 != 0,
            total_len: usize::from(u16::from_be_bytes([pkt[2], pkt[3]])),
        }),
        6 if pkt.len() >= IPV6_HEADER_LEN => Some(InnerInfo {
            version: 6,
            tos: (pkt[0] << 4) | (pkt[1] >> 4),
            df: true,
            total_len: IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
        }),
        _ => None,
    }
}

/// Rewrites the TOS / traffic class byte of an IP packet in place (fixing the IPv4
/// header checksum incrementally, RFC 1624).
pub fn set_tos(pkt: &mut [u8], tos: u8) {
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= IPV4_HEADER_LEN => {
            let old = u16::from_be_bytes([pkt[0], pkt[1]]);
            pkt[1] = tos;
            let new = u16::from_be_bytes([pkt[0], pkt[1]]);
            let sum = u16::from_be_bytes([pkt[10], pkt[11]]);
            pkt[10..12].copy_from_slice(&checksum_update(sum, old, new).to_be_bytes());
        }
        Some(6) if pkt.len() >= IPV6_HEADER_LEN => {
            pkt[0] = (pkt[0] & 0xf0) | (tos >> 4);
            pkt[1] = (pkt[1] & 0x0f) | (tos << 4);
        }
        _ => {}
    }
}

/// RFC 1624 incremental checksum update for one 16-bit word changing from `old` to `new`.
fn checksum_update(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Sums 16-bit big-endian words (one's complement, unfolded).
pub fn checksum_add(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a one's complement sum and complements it: the Internet checksum (RFC 1071).
pub fn checksum_finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    checksum_finish(checksum_add(0, data))
}

/// Outer ECN on encapsulation: RFC 6040 §4.1 normal mode copies the inner ECN field,
/// so congestion marks set on the way reach the decapsulator.
#[inline]
pub fn ecn_encap(inner_tos: u8) -> u8 {
    inner_tos & 0b11
}

/// Result of combining inner and outer ECN at decapsulation (RFC 6040 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcnDecap {
    /// Forward with this inner ECN field.
    Forward(u8),
    /// Outer CE on a not-ECT inner packet: the congestion mark cannot be passed on,
    /// so the packet must be dropped.
    Drop,
}

/// RFC 6040 §4.2 decapsulation table.
#[inline]
pub fn ecn_decap(inner: u8, outer: u8) -> EcnDecap {
    match (inner & 0b11, outer & 0b11) {
        (ecn::NOT_ECT, ecn::CE) => EcnDecap::Drop,
        (ecn::NOT_ECT, _) => EcnDecap::Forward(ecn::NOT_ECT),
        (_, ecn::CE) => EcnDecap::Forward(ecn::CE),
        (ecn::ECT0, ecn::ECT1) => EcnDecap::Forward(ecn::ECT1),
        (i, _) => EcnDecap::Forward(i),
    }
}

/// Fields of an outer header to write.
#[derive(Debug, Clone, Copy)]
pub struct OuterHeader {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// DSCP and ECN.
    pub tos: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Protocol / next header of what follows.
    pub protocol: u8,
    /// IPv4 DF bit.
    pub df: bool,
    /// IPv4 identification.
    pub id: u16,
}

/// Length of the outer header for an address family.
pub fn outer_header_len(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => IPV4_HEADER_LEN,
        IpAddr::V6(_) => IPV6_HEADER_LEN,
    }
}

/// Writes an outer IPv4 header for a packet of `total_len` bytes (header included).
pub fn write_ipv4(hdr: &mut [u8], h: &OuterHeader, src: Ipv4Addr, dst: Ipv4Addr, total_len: u16) {
    hdr[0] = 0x45;
    hdr[1] = h.tos;
    hdr[2..4].copy_from_slice(&total_len.to_be_bytes());
    hdr[4..6].copy_from_slice(&h.id.to_be_bytes());
    hdr[6] = if h.df { 0x40 } else { 0 };
    hdr[7] = 0;
    hdr[8] = h.ttl;
    hdr[9] = h.protocol;
    hdr[10] = 0;
    hdr[11] = 0;
    hdr[12..16].copy_from_slice(&src.octets());
    hdr[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&hdr[..IPV4_HEADER_LEN]);
    hdr[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Writes an outer IPv6 header for a payload of `payload_len` bytes.
pub fn write_ipv6(hdr: &mut [u8], h: &OuterHeader, src: Ipv6Addr, dst: Ipv6Addr, payload_len: u16) {
    hdr[0] = 0x60 | (h.tos >> 4);
    hdr[1] = h.tos << 4;
    hdr[2] = 0;
    hdr[3] = 0;
    hdr[4..6].copy_from_slice(&payload_len.to_be_bytes());
    hdr[6] = h.protocol;
    hdr[7] = h.ttl;
    hdr[8..24].copy_from_slice(&src.octets());
    hdr[24..40].copy_from_slice(&dst.octets());
}

/// Pseudo-header sum for a UDP/TCP/ICMPv6 checksum.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    let mut acc = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = checksum_add(acc, &s.octets());
            acc = checksum_add(acc, &d.octets());
            acc = acc.wrapping_add(u32::from(protocol));
            acc = acc.wrapping_add(len as u32);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = checksum_add(acc, &s.octets());
            acc = checksum_add(acc, &d.octets());
            acc = acc.wrapping_add((len as u32) >> 16);
            acc = acc.wrapping_add(len as u32 & 0xffff);
            acc = acc.wrapping_add(u32::from(protocol));
        }
        _ => {}
    }
    acc
}

/// Reads source and destination addresses and the header length of an IP packet.
pub fn addresses(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= IPV4_HEADER_LEN => {
            let s: [u8; 4] = pkt[12..16].try_into().ok()?;
            let d: [u8; 4] = pkt[16..20].try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        6 if pkt.len() >= IPV6_HEADER_LEN => {
            let s: [u8; 16] = pkt[8..24].try_into().ok()?;
            let d: [u8; 16] = pkt[24..40].try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_checksum_example() {
        // RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2 (one's
        // complement), so the checksum is its complement 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }

    #[test]
    fn ipv4_header_verifies() {
        let h = OuterHeader {
            src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            tos: 0xb8,
            ttl: 64,
            protocol: proto::ESP,
            df: true,
            id: 7,
        };
        let mut hdr = [0u8; 20];
        write_ipv4(
            &mut hdr,
            &h,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            100,
        );
        assert_eq!(checksum(&hdr), 0);
        set_tos(&mut hdr, 0x03);
        assert_eq!(
            checksum(&hdr),
            0,
            "incremental update keeps the header valid"
        );
        assert_eq!(
            inner_info(&hdr).map(|i| (i.tos, i.df, i.total_len)),
            Some((0x03, true, 100))
        );
    }

    #[test]
    fn rfc6040_decapsulation_table() {
        use ecn::*;
        // RFC 6040 Figure 4: rows inner, columns outer Not-ECT, ECT(0), ECT(1), CE.
        let table = [
            (NOT_ECT, [Some(NOT_ECT), Some(NOT_ECT), Some(NOT_ECT), None]),
            (ECT0, [Some(ECT0), Some(ECT0), Some(ECT1), Some(CE)]),
            (ECT1, [Some(ECT1), Some(ECT1), Some(ECT1), Some(CE)]),
            (CE, [Some(CE), Some(CE), Some(CE), Some(CE)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NOT_ECT, ECT0, ECT1, CE].into_iter().zip(row) {
                let got = match ecn_decap(inner, outer) {
                    EcnDecap::Forward(e) => Some(e),
                    EcnDecap::Drop => None,
                };
                assert_eq!(got, want, "inner {inner:02b} outer {outer:02b}");
            }
        }
    }

    #[test]
    fn ipv6_traffic_class_round_trip() {
        let h = OuterHeader {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
            tos: 0xab,
            ttl: 9,
            protocol: proto::UDP,
            df: false,
            id: 0,
        };
        let mut hdr = [0u8; 40];
        write_ipv6(&mut hdr, &h, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 10);
        assert_eq!(
            inner_info(&hdr).map(|i| (i.tos, i.total_len)),
            Some((0xab, 50))
        );
        set_tos(&mut hdr, 0x12);
        assert_eq!(inner_info(&hdr).map(|i| i.tos), Some(0x12));
    }
}
