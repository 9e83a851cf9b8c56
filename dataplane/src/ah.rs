//! AH encapsulation and decapsulation (RFC 4302), tunnel and transport mode.
//!
//! AH authenticates the outer IP header too, except the fields routers change on the
//! way; those are zeroed in a copy of the header for the ICV computation (RFC 4302
//! §3.3.3.1). The packet itself is never modified for that: the ICV is computed over
//! scattered parts (normalised header copy, AH header, zeros in place of the ICV,
//! payload), so no per-packet copy of the payload is made.

use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::esp::{finish_tunnel, next_seq, outer_df};
use crate::ip::{self, InnerInfo, OuterHeader, proto};
use crate::sa::{InboundSa, Mode, OutboundSa, SaTransform};

/// Fixed part of the AH header: next header, length, reserved, SPI, sequence number.
pub const AH_FIXED_LEN: usize = 12;
/// Largest IP header (with IPv4 options or IPv6 extension headers) AH handles.
const MAX_HEADER: usize = 256;
const ZEROS: [u8; 32] = [0; 32];

/// Length of the AH header (with ICV and alignment padding) for an outer family.
fn ah_len(icv_len: usize, ipv6: bool) -> usize {
    let align = if ipv6 { 8 } else { 4 };
    (AH_FIXED_LEN + icv_len).div_ceil(align) * align
}

/// Bytes that AH tunnel-mode encapsulation adds.
pub fn overhead(sa: &OutboundSa) -> usize {
    let cfg = &sa.common.config;
    let icv = match &sa.common.transform {
        SaTransform::Ah(i) => i.icv_len(),
        SaTransform::Esp(c) => c.icv_len(),
    };
    let outer = match cfg.mode {
        Mode::Tunnel => ip::outer_header_len(cfg.remote),
        Mode::Transport => 0,
    };
    outer + ah_len(icv, cfg.remote.is_ipv6())
}

/// Copies `hdr` into `out` with the mutable fields zeroed (RFC 4302 §3.3.3.1.1 for
/// IPv4, §3.3.3.1.2 for IPv6).
fn normalize(hdr: &[u8], out: &mut [u8; MAX_HEADER]) -> Result<usize, DropReason> {
    let n = hdr.len();
    if !(ip::IPV4_HEADER_LEN..=MAX_HEADER).contains(&n) {
        return Err(DropReason::BadIpHeader);
    }
    out[..n].copy_from_slice(hdr);
    match hdr[0] >> 4 {
        4 => {
            out[1] = 0; // TOS
            out[6] = 0; // flags + fragment offset
            out[7] = 0;
            out[8] = 0; // TTL
            out[10] = 0; // checksum
            out[11] = 0;
            normalize_ipv4_options(&mut out[ip::IPV4_HEADER_LEN..n]);
        }
        6 => {
            if n < ip::IPV6_HEADER_LEN {
                return Err(DropReason::BadIpHeader);
            }
            out[0] = 0x60; // traffic class and flow label
            out[1] = 0;
            out[2] = 0;
            out[3] = 0;
            out[7] = 0; // hop limit
            normalize_ipv6_extensions(&mut out[..n], hdr[6])?;
        }
        _ => return Err(DropReason::BadIpHeader),
    }
    Ok(n)
}

/// RFC 4302 Appendix A.1: options other than the immutable ones are zeroed whole.
fn normalize_ipv4_options(opts: &mut [u8]) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => {
                // End of option list: what follows is padding.
                opts[i..].fill(0);
                return;
            }
            1 => i += 1,
            t => {
                let len = opts.get(i + 1).map_or(0, |l| usize::from(*l));
                let len = if len < 2 || i + len > opts.len() {
                    opts.len() - i
                } else {
                    len
                };
                // Security (130), extended security (133), commercial security (134),
                // router alert (148), selective directed broadcast (149) are immutable.
                if !matches!(t, 130 | 133 | 134 | 148 | 149) {
                    opts[i..i + len].fill(0);
                }
                i += len;
            }
        }
    }
}

/// Zeroes the data of hop-by-hop and destination options whose type says they may
/// change en route (RFC 8200 §4.2, the 0x20 bit). Routing headers are authenticated
/// as received.
fn normalize_ipv6_extensions(pkt: &mut [u8], mut next: u8) -> Result<(), DropReason> {
    let mut off = ip::IPV6_HEADER_LEN;
    while off < pkt.len() && matches!(next, 0 | 43 | 60) {
        let len = (usize::from(*pkt.get(off + 1).ok_or(DropReason::BadIpHeader)?) + 1) * 8;
        let end = off + len;
        if end > pkt.len() {
            return Err(DropReason::BadIpHeader);
        }
        let this = next;
        next = pkt[off];
        if this != 43 {
            let mut i = off + 2;
            while i < end {
                let t = pkt[i];
                if t == 0 {
                    i += 1;
                    continue;
                }
                let olen = usize::from(*pkt.get(i + 1).ok_or(DropReason::BadIpHeader)?);
                let data_end = (i + 2 + olen).min(end);
                if t & 0x20 != 0 {
                    pkt[i + 2..data_end].fill(0);
                }
                i = data_end;
            }
        }
        off = end;
    }
    Ok(())
}

/// Authenticates the IP packet in `pkt` with AH, producing a complete outer packet.
pub fn encapsulate(
    sa: &mut OutboundSa,
    pkt: &mut PacketBuf,
    inner: &InnerInfo,
) -> Result<(), DropReason> {
    if !matches!(sa.common.transform, SaTransform::Ah(_)) {
        return Err(DropReason::UnsupportedProtocol);
    }
    let seq = next_seq(sa)?;
    let SaTransform::Ah(integ) = &sa.common.transform else {
        return Err(DropReason::UnsupportedProtocol);
    };
    let cfg = &sa.common.config;
    let icv_len = integ.icv_len();
    let mut header = [0u8; MAX_HEADER];

    let hlen = match cfg.mode {
        Mode::Tunnel => {
            let next = if inner.version == 4 {
                proto::IPV4
            } else {
                proto::IPV6
            };
            let len = ah_len(icv_len, cfg.remote.is_ipv6());
            write_ah(pkt, next, len, cfg.spi, seq)?;
            sa.ip_id = sa.ip_id.wrapping_add(1);
            let h = OuterHeader {
                src: cfg.local,
                dst: cfg.remote,
                tos: if cfg.copy_dscp {
                    (inner.tos & 0xfc) | ip::ecn_encap(inner.tos)
                } else {
                    ip::ecn_encap(inner.tos)
                },
                ttl: cfg.ttl,
                protocol: proto::AH,
                df: outer_df(cfg.df_bit, inner),
                id: sa.ip_id,
            };
            let hlen = ip::outer_header_len(cfg.remote);
            let total = pkt.len() + hlen;
            let hdr = pkt.prepend(hlen).map_err(|_| DropReason::Oversize)?;
            match (h.src, h.dst) {
                (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                    let t = u16::try_from(total).map_err(|_| DropReason::Oversize)?;
                    ip::write_ipv4(hdr, &h, s, d, t);
                }
                (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                    let t = u16::try_from(total - hlen).map_err(|_| DropReason::Oversize)?;
                    ip::write_ipv6(hdr, &h, s, d, t);
                }
                _ => return Err(DropReason::BadIpHeader),
            }
            hlen
        }
        Mode::Transport => {
            let data = pkt.data();
            let (hlen, next) = if inner.version == 4 {
                (usize::from(data[0] & 0x0f) * 4, data[9])
            } else {
                (ip::IPV6_HEADER_LEN, data[6])
            };
            if hlen < ip::IPV4_HEADER_LEN || hlen > data.len() {
                return Err(DropReason::BadIpHeader);
            }
            header[..hlen].copy_from_slice(&data[..hlen]);
            pkt.trim_front(hlen).map_err(|_| DropReason::Truncated)?;
            let len = ah_len(icv_len, inner.version == 6);
            write_ah(pkt, next, len, cfg.spi, seq)?;
            pkt.prepend(hlen)
                .map_err(|_| DropReason::Oversize)?
                .copy_from_slice(&header[..hlen]);
            set_protocol(pkt.data_mut(), proto::AH)?;
            hlen
        }
    };

    let data = pkt.data();
    let n = normalize(&data[..hlen], &mut header)?;
    let seq_hi = ((seq >> 32) as u32).to_be_bytes();
    let hi: &[u8] = if cfg.esn { &seq_hi } else { &[] };
    let mut icv = [0u8; 32];
    integ.compute(&[&header[..n], &data[hlen..], hi], &mut icv[..icv_len]);
    pkt.data_mut()[hlen + AH_FIXED_LEN..hlen + AH_FIXED_LEN + icv_len]
        .copy_from_slice(&icv[..icv_len]);
    Ok(())
}

/// Prepends an AH header with a zero ICV field.
fn write_ah(
    pkt: &mut PacketBuf,
    next: u8,
    len: usize,
    spi: u32,
    seq: u64,
) -> Result<(), DropReason> {
    let ah = pkt.prepend(len).map_err(|_| DropReason::Oversize)?;
    ah[0] = next;
    ah[1] = (len / 4 - 2) as u8;
    ah[2] = 0;
    ah[3] = 0;
    ah[4..8].copy_from_slice(&spi.to_be_bytes());
    ah[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
    ah[AH_FIXED_LEN..].fill(0);
    Ok(())
}

/// Sets the protocol / first next header and the length fields after the payload of a
/// transport-mode packet changed size.
fn set_protocol(pkt: &mut [u8], protocol: u8) -> Result<(), DropReason> {
    let total = pkt.len();
    match pkt[0] >> 4 {
        4 => {
            let hlen = usize::from(pkt[0] & 0x0f) * 4;
            let t = u16::try_from(total).map_err(|_| DropReason::Oversize)?;
            pkt[2..4].copy_from_slice(&t.to_be_bytes());
            pkt[9] = protocol;
            pkt[10] = 0;
            pkt[11] = 0;
            let sum = ip::checksum(&pkt[..hlen]);
            pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        6 => {
            let t = u16::try_from(total - ip::IPV6_HEADER_LEN).map_err(|_| DropReason::Oversize)?;
            pkt[4..6].copy_from_slice(&t.to_be_bytes());
            pkt[6] = protocol;
        }
        _ => return Err(DropReason::BadIpHeader),
    }
    Ok(())
}

/// Verifies and strips AH from the full IP packet in `pkt`; `hlen` is the length of the
/// IP header and the extension headers before AH.
pub fn decapsulate(sa: &mut InboundSa, pkt: &mut PacketBuf, hlen: usize) -> Result<(), DropReason> {
    let SaTransform::Ah(integ) = &sa.common.transform else {
        return Err(DropReason::UnsupportedProtocol);
    };
    let icv_len = integ.icv_len();
    let counters = &mut sa.common.counters;
    let data = pkt.data();
    let ah = data.get(hlen..).ok_or(DropReason::Truncated)?;
    if ah.len() < AH_FIXED_LEN + icv_len {
        return Err(DropReason::Truncated);
    }
    let next_header = ah[0];
    let len = (usize::from(ah[1]) + 2) * 4;
    if len < AH_FIXED_LEN + icv_len || len > ah.len() {
        counters.malformed_drops += 1;
        return Err(DropReason::BadLength);
    }
    let seq_lo = u32::from_be_bytes([ah[8], ah[9], ah[10], ah[11]]);
    let Ok(seq) = sa.replay.check(seq_lo) else {
        counters.replay_drops += 1;
        return Err(DropReason::Replay);
    };
    let mut header = [0u8; MAX_HEADER];
    let n = normalize(&data[..hlen], &mut header)?;
    let seq_hi = ((seq >> 32) as u32).to_be_bytes();
    let hi: &[u8] = if sa.common.config.esn { &seq_hi } else { &[] };
    let icv = &ah[AH_FIXED_LEN..AH_FIXED_LEN + icv_len];
    let parts: [&[u8]; 6] = [
        &header[..n],
        &ah[..AH_FIXED_LEN],
        &ZEROS[..icv_len],
        &ah[AH_FIXED_LEN + icv_len..len],
        &ah[len..],
        hi,
    ];
    if !integ.verify(&parts, icv) {
        counters.icv_drops += 1;
        return Err(DropReason::IcvFailure);
    }
    if sa.replay.accept(seq).is_err() {
        counters.replay_drops += 1;
        return Err(DropReason::Replay);
    }

    let outer_tos = ip::inner_info(data).map_or(0, |i| i.tos);
    match sa.common.config.mode {
        Mode::Tunnel => {
            pkt.trim_front(hlen + len)
                .map_err(|_| DropReason::Truncated)?;
            finish_tunnel(pkt, next_header, outer_tos, counters)?;
        }
        Mode::Transport => {
            header[..hlen].copy_from_slice(&data[..hlen]);
            pkt.trim_front(hlen + len)
                .map_err(|_| DropReason::Truncated)?;
            pkt.prepend(hlen)
                .map_err(|_| DropReason::Oversize)?
                .copy_from_slice(&header[..hlen]);
            set_protocol(pkt.data_mut(), next_header)?;
        }
    }
    Ok(())
}
