//! ICMP "fragmentation needed" and ICMPv6 "Packet Too Big" errors, which drive the
//! sender's path MTU discovery when a packet with DF set (or any IPv6 packet) does not fit
//! the tunnel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    FRAG_HEADER_LEN, FragError, IPV4_ICMP_ERROR_MAX, IPV6_MIN_MTU, be16, ipv4_lengths, ipv6_len,
    put16, set_ipv4_checksum, walk_v6,
};
use crate::buf::{DEFAULT_HEADROOM, PacketBuf};
use crate::ip::{
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, checksum, checksum_add, checksum_finish, pseudo_header_sum,
};
use crate::selector::proto;

/// Hop limit / TTL of generated errors.
const ERROR_TTL: u8 = 64;

/// Bytes of an ICMP or ICMPv6 error header before the quoted packet.
const ICMP_ERROR_HEADER_LEN: usize = 8;

/// Writes into `out` the error telling the source of `original` that packets must not
/// exceed `mtu`, sent from `from`:
/// - IPv4: ICMP type 3 code 4 with the next-hop MTU (RFC 1191, clamped to 16 bits),
///   quoting as much of `original` as fits in 576 bytes (RFC 1812 §4.3.2.3);
/// - IPv6: ICMPv6 type 2 (RFC 4443 §3.2), quoting as much as fits in 1280 bytes.
///
/// Refuses (RFC 1122 §3.2.2.1, RFC 4443 §2.4 e) an error about an ICMP error, about a
/// non-first fragment, or towards a source that is not a unicast address. Unlike other
/// ICMPv6 errors, Packet Too Big is sent for multicast destinations (RFC 4443 §2.4 e.3).
pub fn icmp_too_big(
    original: &[u8],
    mtu: u32,
    from: IpAddr,
    out: &mut PacketBuf,
) -> Result<(), FragError> {
    match (original.first().map(|b| b >> 4), from) {
        (Some(4), IpAddr::V4(from)) => too_big_v4(original, mtu, from, out),
        (Some(6), IpAddr::V6(from)) => too_big_v6(original, mtu, from, out),
        (Some(4 | 6), _) => Err(FragError::FamilyMismatch),
        (Some(_), _) => Err(FragError::BadIpHeader),
        (None, _) => Err(FragError::Truncated),
    }
}

/// ICMP types that are queries or replies rather than errors (RFC 792, RFC 950, RFC 1256).
fn icmpv4_is_informational(kind: u8) -> bool {
    matches!(kind, 0 | 8 | 9 | 10 | 13 | 14 | 15 | 16 | 17 | 18)
}

fn too_big_v4(
    original: &[u8],
    mtu: u32,
    from: Ipv4Addr,
    out: &mut PacketBuf,
) -> Result<(), FragError> {
    let (hlen, total) = ipv4_lengths(original)?;
    let flags = be16(original, 6).ok_or(FragError::Truncated)?;
    if flags & 0x1fff != 0 {
        return Err(FragError::NotFirstFragment);
    }
    let addr = |at: usize| match original.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(Ipv4Addr::new(a, b, c, d)),
        _ => Err(FragError::Truncated),
    };
    let (src, dst) = (addr(12)?, addr(16)?);
    if src.is_unspecified()
        || src.is_multicast()
        || src.is_broadcast()
        || src.is_loopback()
        || dst.is_multicast()
        || dst.is_broadcast()
    {
        return Err(FragError::NotUnicast);
    }
    if original.get(9) == Some(&proto::ICMP) {
        let kind = *original.get(hlen).ok_or(FragError::Truncated)?;
        if !icmpv4_is_informational(kind) {
            return Err(FragError::IcmpError);
        }
    }
    let quote_max = IPV4_ICMP_ERROR_MAX - IPV4_HEADER_LEN - ICMP_ERROR_HEADER_LEN;
    let quote = original
        .get(..total.min(quote_max))
        .ok_or(FragError::Truncated)?;
    let len = IPV4_HEADER_LEN + ICMP_ERROR_HEADER_LEN + quote.len();

    out.reset(DEFAULT_HEADROOM);
    let buf = out.append(len)?;
    let (ip, icmp) = buf.split_at_mut(IPV4_HEADER_LEN);
    ip.fill(0);
    ip[0] = 0x45;
    // len <= 576.
    put16(ip, 2, len as u16);
    ip[8] = ERROR_TTL;
    ip[9] = proto::ICMP;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&src.octets());
    set_ipv4_checksum(ip);

    let (head, body) = icmp.split_at_mut(ICMP_ERROR_HEADER_LEN);
    head.fill(0);
    head[0] = 3;
    head[1] = 4;
    put16(head, 6, u16::try_from(mtu).unwrap_or(u16::MAX));
    body.copy_from_slice(quote);
    let c = checksum(icmp);
    put16(icmp, 2, c);
    Ok(())
}

fn too_big_v6(
    original: &[u8],
    mtu: u32,
    from: Ipv6Addr,
    out: &mut PacketBuf,
) -> Result<(), FragError> {
    let total = ipv6_len(original)?;
    let pkt = original.get(..total).ok_or(FragError::Truncated)?;
    let src: [u8; 16] = pkt
        .get(8..24)
        .and_then(|s| s.try_into().ok())
        .ok_or(FragError::Truncated)?;
    let src = Ipv6Addr::from(src);
    if src.is_unspecified() || src.is_multicast() {
        return Err(FragError::NotUnicast);
    }
    let mut chain = walk_v6(pkt, IPV6_HEADER_LEN, 6)?;
    if chain.stop_next == proto::FRAGMENT {
        let at = chain.stop_at;
        let off = be16(pkt, at + 2).ok_or(FragError::Truncated)?;
        if off & 0xfff8 != 0 {
            return Err(FragError::NotFirstFragment);
        }
        chain = walk_v6(pkt, at + FRAG_HEADER_LEN, at)?;
    }
    if chain.stop_next == proto::ICMPV6 {
        let kind = *pkt.get(chain.stop_at).ok_or(FragError::Truncated)?;
        // Types below 128 are errors (RFC 4443 §2.1).
        if kind < 128 {
            return Err(FragError::IcmpError);
        }
    }
    let quote_max = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMP_ERROR_HEADER_LEN;
    let quote = pkt
        .get(..total.min(quote_max))
        .ok_or(FragError::Truncated)?;
    let icmp_len = ICMP_ERROR_HEADER_LEN + quote.len();

    out.reset(DEFAULT_HEADROOM);
    let buf = out.append(IPV6_HEADER_LEN + icmp_len)?;
    let (ip, icmp) = buf.split_at_mut(IPV6_HEADER_LEN);
    ip.fill(0);
    ip[0] = 0x60;
    // icmp_len <= 1240.
    put16(ip, 4, icmp_len as u16);
    ip[6] = proto::ICMPV6;
    ip[7] = ERROR_TTL;
    ip[8..24].copy_from_slice(&from.octets());
    ip[24..40].copy_from_slice(&src.octets());

    let (head, body) = icmp.split_at_mut(ICMP_ERROR_HEADER_LEN);
    head.fill(0);
    head[0] = 2;
    head[4..8].copy_from_slice(&mtu.to_be_bytes());
    body.copy_from_slice(quote);
    // Pseudo-header (RFC 8200 §8.1): addresses, upper-layer length, next header.
    let pseudo = pseudo_header_sum(from.into(), src.into(), proto::ICMPV6, icmp_len);
    let c = checksum_finish(checksum_add(pseudo, icmp));
    put16(icmp, 2, c);
    Ok(())
}
