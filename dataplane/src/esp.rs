//! ESP encapsulation and decapsulation (RFC 4303), tunnel and transport mode, IPv4 and
//! IPv6 inside and outside, optionally in UDP (RFC 3948), all in place in a
//! [`PacketBuf`].

use std::net::IpAddr;

use crate::buf::PacketBuf;
use crate::crypto::CryptoError;
use crate::drop::DropReason;
use crate::ip::{self, InnerInfo, OuterHeader, proto};
use crate::sa::{DfBit, InboundSa, Mode, OutboundSa, SaTransform};

/// Fixed ESP header: SPI and sequence number.
pub const ESP_HEADER_LEN: usize = 8;

/// Bytes an encapsulation adds besides padding (outer headers, ESP header, IV, ICV),
/// and the padding alignment.
fn fixed_overhead(sa: &OutboundSa) -> (usize, usize) {
    let (iv, block, icv) = match &sa.common.transform {
        SaTransform::Esp(c) => (c.iv_len(), c.block_size(), c.icv_len()),
        SaTransform::Ah(i) => (0, 4, i.icv_len()),
    };
    let udp = if sa.common.config.udp_encap.is_some() {
        ip::UDP_HEADER_LEN
    } else {
        0
    };
    let fixed = ip::outer_header_len(sa.common.config.remote) + udp + ESP_HEADER_LEN + iv + icv;
    (fixed, block)
}

/// Bytes that encapsulating a `payload_len`-byte payload adds, outer headers included.
pub fn overhead(sa: &OutboundSa, payload_len: usize) -> usize {
    let (fixed, block) = fixed_overhead(sa);
    fixed + (payload_len + 2).div_ceil(block) * block - payload_len
}

/// The largest inner packet that fits in `mtu` after encapsulation, whatever its
/// padding: the MTU to advertise in an ICMP error. `None` if nothing fits.
pub fn max_payload(sa: &OutboundSa, mtu: usize) -> Option<usize> {
    let (fixed, block) = fixed_overhead(sa);
    // n + overhead(n) = fixed + ceil((n + 2) / block) * block must stay <= mtu.
    let blocks = mtu.checked_sub(fixed)? / block;
    (blocks * block).checked_sub(2)
}

/// Takes the next outbound sequence number, refusing to reuse or exceed the space or the
/// cluster's reservation.
pub(crate) fn next_seq(sa: &mut OutboundSa) -> Result<u64, DropReason> {
    let next = sa.seq.checked_add(1).ok_or(DropReason::SequenceExhausted)?;
    if next > sa.max_seq() {
        return Err(DropReason::SequenceExhausted);
    }
    if next > sa.seq_limit {
        return Err(DropReason::SequenceNotReserved);
    }
    sa.seq = next;
    Ok(next)
}

/// The outer DF bit for an inner packet under the SA's policy.
pub fn outer_df(policy: DfBit, inner: &InnerInfo) -> bool {
    match policy {
        DfBit::Clear => false,
        DfBit::Set => true,
        DfBit::Copy => inner.df,
    }
}

/// Encapsulates the IP packet in `pkt` (described by `inner`) into a complete outer IP
/// packet. The caller has checked the path MTU.
pub fn encapsulate(
    sa: &mut OutboundSa,
    pkt: &mut PacketBuf,
    inner: &InnerInfo,
) -> Result<(), DropReason> {
    encapsulate_with(sa, pkt, inner, true).map(|_| ())
}

/// ESP in UDP sent through a UDP socket: for a tunnel-mode SA with UDP encapsulation,
/// does exactly what [`encapsulate`] does (sequence number, padding, sealing, DSCP/ECN
/// and DF decisions) but leaves only the ESP packet (SPI through ICV) in `pkt`, and
/// returns the outer IP header [`encapsulate`] would have written in front of the UDP
/// header, for the socket to reproduce. Other SAs are refused before a sequence number
/// is taken.
pub fn encapsulate_udp_payload(
    sa: &mut OutboundSa,
    pkt: &mut PacketBuf,
    inner: &InnerInfo,
) -> Result<OuterHeader, DropReason> {
    let cfg = &sa.common.config;
    if !matches!(cfg.mode, Mode::Tunnel) || cfg.udp_encap.is_none() {
        return Err(DropReason::UnsupportedProtocol);
    }
    encapsulate_with(sa, pkt, inner, false)?.ok_or(DropReason::UnsupportedProtocol)
}

/// Puts in front of an ESP packet left by [`encapsulate_udp_payload`] the UDP header
/// (ports `sport`, `dport`) and the outer IP header `h` it returned: exactly the packet
/// [`encapsulate`] would have built, for sending it through a raw socket after all.
pub fn push_udp_headers(
    pkt: &mut PacketBuf,
    h: &OuterHeader,
    sport: u16,
    dport: u16,
) -> Result<(), DropReason> {
    push_udp(pkt, h.src, h.dst, sport, dport)?;
    push_outer(pkt, h)
}

/// [`encapsulate`], with or without the outer IP and UDP headers (tunnel mode only;
/// transport mode always restores its header). Returns the outer header of tunnel mode.
fn encapsulate_with(
    sa: &mut OutboundSa,
    pkt: &mut PacketBuf,
    inner: &InnerInfo,
    outer_headers: bool,
) -> Result<Option<OuterHeader>, DropReason> {
    if !matches!(sa.common.transform, SaTransform::Esp(_)) {
        return Err(DropReason::UnsupportedProtocol);
    }
    // Taken first: a packet dropped later wastes a number, which is harmless; using one
    // twice never is.
    let seq = next_seq(sa)?;
    let SaTransform::Esp(cipher) = &mut sa.common.transform else {
        return Err(DropReason::UnsupportedProtocol);
    };
    let cfg = &sa.common.config;
    // Transport mode protects only the payload: lift the IP header off and put it back
    // in front afterwards.
    let mut transport_hdr = [0u8; ip::IPV6_HEADER_LEN];
    let (next_header, transport_len) = match cfg.mode {
        Mode::Tunnel => (
            if inner.version == 4 {
                proto::IPV4
            } else {
                proto::IPV6
            },
            0,
        ),
        Mode::Transport => {
            let data = pkt.data();
            let (hlen, p) = if inner.version == 4 {
                (usize::from(data[0] & 0x0f) * 4, data[9])
            } else {
                (ip::IPV6_HEADER_LEN, data[6])
            };
            if hlen < ip::IPV4_HEADER_LEN || hlen > data.len() || hlen > transport_hdr.len() {
                return Err(DropReason::BadIpHeader);
            }
            transport_hdr[..hlen].copy_from_slice(&data[..hlen]);
            pkt.trim_front(hlen).map_err(|_| DropReason::Truncated)?;
            (p, hlen)
        }
    };

    let (iv_len, block, icv_len) = (cipher.iv_len(), cipher.block_size(), cipher.icv_len());
    let payload_len = pkt.len();
    let padded = (payload_len + 2).div_ceil(block) * block;
    let pad = padded - payload_len - 2;
    let tail = pkt
        .append(pad + 2 + icv_len)
        .map_err(|_| DropReason::Oversize)?;
    // RFC 4303 §2.4: default padding is the monotonic sequence 1, 2, 3, ...
    for (i, b) in tail[..pad].iter_mut().enumerate() {
        *b = (i + 1) as u8;
    }
    tail[pad] = pad as u8;
    tail[pad + 1] = next_header;
    let head = pkt
        .prepend(ESP_HEADER_LEN + iv_len)
        .map_err(|_| DropReason::Oversize)?;
    head[..4].copy_from_slice(&cfg.spi.to_be_bytes());
    head[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    cipher
        .seal(pkt.data_mut(), seq, cfg.esn)
        .map_err(|_| DropReason::Oversize)?;

    match cfg.mode {
        Mode::Tunnel => {
            let tos = if cfg.copy_dscp {
                (inner.tos & 0xfc) | ip::ecn_encap(inner.tos)
            } else {
                ip::ecn_encap(inner.tos)
            };
            sa.ip_id = sa.ip_id.wrapping_add(1);
            let h = OuterHeader {
                src: cfg.local,
                dst: cfg.remote,
                tos,
                ttl: cfg.ttl,
                protocol: if cfg.udp_encap.is_some() {
                    proto::UDP
                } else {
                    proto::ESP
                },
                df: outer_df(cfg.df_bit, inner),
                id: sa.ip_id,
            };
            if !outer_headers {
                return Ok(Some(h));
            }
            if let Some(encap) = cfg.udp_encap {
                push_udp(
                    pkt,
                    cfg.local,
                    cfg.remote,
                    encap.local_port,
                    encap.remote_port,
                )?;
            }
            push_outer(pkt, &h).map(|()| Some(h))
        }
        Mode::Transport => {
            let protocol = if cfg.udp_encap.is_some() {
                proto::UDP
            } else {
                proto::ESP
            };
            let (src, dst) =
                ip::addresses(&transport_hdr[..transport_len]).ok_or(DropReason::BadIpHeader)?;
            if let Some(encap) = cfg.udp_encap {
                push_udp(pkt, src, dst, encap.local_port, encap.remote_port)?;
            }
            let hdr = pkt
                .prepend(transport_len)
                .map_err(|_| DropReason::Oversize)?;
            hdr.copy_from_slice(&transport_hdr[..transport_len]);
            fix_transport_header(pkt.data_mut(), protocol).map(|()| None)
        }
    }
}

/// Prepends a UDP header (RFC 3948 §2.1) in front of the ESP packet in `pkt`.
fn push_udp(
    pkt: &mut PacketBuf,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
) -> Result<(), DropReason> {
    let len = pkt.len() + ip::UDP_HEADER_LEN;
    let len16 = u16::try_from(len).map_err(|_| DropReason::Oversize)?;
    let h = pkt
        .prepend(ip::UDP_HEADER_LEN)
        .map_err(|_| DropReason::Oversize)?;
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&len16.to_be_bytes());
    h[6..8].copy_from_slice(&[0, 0]);
    // RFC 3948 §2.1: the IPv4 UDP checksum SHOULD be zero. IPv6 requires a real one
    // (RFC 8200 §8.1), which is also what Linux accepts by default.
    if src.is_ipv6() {
        let acc = ip::pseudo_header_sum(src, dst, proto::UDP, len);
        let mut sum = ip::checksum_finish(ip::checksum_add(acc, pkt.data()));
        if sum == 0 {
            sum = 0xffff;
        }
        pkt.data_mut()[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}

/// Prepends the outer IP header for the packet currently in `pkt`.
fn push_outer(pkt: &mut PacketBuf, h: &OuterHeader) -> Result<(), DropReason> {
    let payload = pkt.len();
    match (h.src, h.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total =
                u16::try_from(payload + ip::IPV4_HEADER_LEN).map_err(|_| DropReason::Oversize)?;
            let hdr = pkt
                .prepend(ip::IPV4_HEADER_LEN)
                .map_err(|_| DropReason::Oversize)?;
            ip::write_ipv4(hdr, h, s, d, total);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u16::try_from(payload).map_err(|_| DropReason::Oversize)?;
            let hdr = pkt
                .prepend(ip::IPV6_HEADER_LEN)
                .map_err(|_| DropReason::Oversize)?;
            ip::write_ipv6(hdr, h, s, d, len);
        }
        _ => return Err(DropReason::BadIpHeader),
    }
    Ok(())
}

/// After the protected payload of a transport-mode packet changed, sets the IP
/// header's protocol and length fields (and IPv4 checksum) to match.
fn fix_transport_header(pkt: &mut [u8], protocol: u8) -> Result<(), DropReason> {
    let total = pkt.len();
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let t = u16::try_from(total).map_err(|_| DropReason::Oversize)?;
            let hlen = usize::from(pkt[0] & 0x0f) * 4;
            pkt[2..4].copy_from_slice(&t.to_be_bytes());
            pkt[9] = protocol;
            pkt[10..12].copy_from_slice(&[0, 0]);
            let sum = ip::checksum(&pkt[..hlen]);
            pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        Some(6) => {
            let t = u16::try_from(total - ip::IPV6_HEADER_LEN).map_err(|_| DropReason::Oversize)?;
            pkt[4..6].copy_from_slice(&t.to_be_bytes());
            pkt[6] = protocol;
        }
        _ => return Err(DropReason::BadIpHeader),
    }
    Ok(())
}

/// What decapsulation produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decapsulated {
    /// `pkt` holds the inner IP packet (tunnel mode) or the restored packet (transport).
    Packet,
    /// A dummy packet (next header 59, RFC 4303 §2.6): authenticated, to be discarded.
    Dummy,
}

/// Where the ESP packet came from, for transport mode and ECN.
#[derive(Debug, Clone, Copy)]
pub struct OuterContext<'a> {
    /// Outer TOS/traffic class (its ECN bits are combined per RFC 6040).
    pub tos: u8,
    /// The outer IP header, for transport mode, which restores it around the payload.
    /// `None` when the packet came from a UDP socket, which does not deliver it: a
    /// minimal header is then rebuilt from `src` and `dst`.
    pub ip_header: Option<&'a [u8]>,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
}

/// Verifies, decrypts and strips the ESP packet in `pkt` (SPI through ICV).
pub fn decapsulate(
    sa: &mut InboundSa,
    pkt: &mut PacketBuf,
    outer: OuterContext<'_>,
) -> Result<Decapsulated, DropReason> {
    let SaTransform::Esp(cipher) = &sa.common.transform else {
        return Err(DropReason::UnsupportedProtocol);
    };
    let (iv_len, icv_len) = (cipher.iv_len(), cipher.icv_len());
    let data = pkt.data();
    if data.len() < ESP_HEADER_LEN + iv_len + 2 + icv_len {
        return Err(DropReason::Truncated);
    }
    let seq_lo = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let counters = &mut sa.common.counters;
    let seq = sa
        .replay
        .check(seq_lo)
        .inspect_err(|_| counters.replay_drops += 1)
        .map_err(|_| DropReason::Replay)?;
    let esn = sa.common.config.esn;
    if let Err(e) = cipher.open(pkt.data_mut(), esn.then_some((seq >> 32) as u32)) {
        return Err(match e {
            CryptoError::Integrity => {
                counters.icv_drops += 1;
                DropReason::IcvFailure
            }
            _ => {
                counters.malformed_drops += 1;
                DropReason::BadLength
            }
        });
    }
    if sa.replay.accept(seq).is_err() {
        counters.replay_drops += 1;
        return Err(DropReason::Replay);
    }

    let data = pkt.data();
    let end = data.len() - icv_len;
    let next_header = data[end - 1];
    let pad = usize::from(data[end - 2]);
    let body_start = ESP_HEADER_LEN + iv_len;
    if body_start + pad + 2 > end {
        counters.malformed_drops += 1;
        return Err(DropReason::BadPadding);
    }
    let padding = &data[end - 2 - pad..end - 2];
    if padding
        .iter()
        .enumerate()
        .any(|(i, b)| usize::from(*b) != i + 1)
    {
        counters.malformed_drops += 1;
        return Err(DropReason::BadPadding);
    }
    let trim_back = icv_len + pad + 2;
    // Both trims are within the length checked above.
    pkt.trim_back(trim_back)
        .map_err(|_| DropReason::Truncated)?;
    pkt.trim_front(body_start)
        .map_err(|_| DropReason::Truncated)?;

    if next_header == proto::NONE {
        return Ok(Decapsulated::Dummy);
    }
    match sa.common.config.mode {
        Mode::Tunnel => {
            finish_tunnel(pkt, next_header, outer.tos, counters)?;
            Ok(Decapsulated::Packet)
        }
        Mode::Transport => {
            match outer.ip_header {
                Some(hdr) => pkt
                    .prepend(hdr.len())
                    .map_err(|_| DropReason::Oversize)?
                    .copy_from_slice(hdr),
                None => {
                    let h = OuterHeader {
                        src: outer.src,
                        dst: outer.dst,
                        tos: outer.tos,
                        ttl: sa.common.config.ttl,
                        protocol: next_header,
                        df: false,
                        id: 0,
                    };
                    push_outer(pkt, &h)?;
                }
            }
            fix_transport_header(pkt.data_mut(), next_header)?;
            Ok(Decapsulated::Packet)
        }
    }
}

/// The end of tunnel-mode decapsulation, shared by ESP and AH: `pkt` holds what the
/// protocol carried; checks it is the IP packet `next_header` announces, drops what
/// lies past its length (TFC padding, RFC 4303 §2.4) and combines the outer ECN field
/// into it (RFC 6040 §4.2).
pub(crate) fn finish_tunnel(
    pkt: &mut PacketBuf,
    next_header: u8,
    outer_tos: u8,
    counters: &mut crate::sa::SaCounters,
) -> Result<(), DropReason> {
    let expect = match next_header {
        proto::IPV4 => 4,
        proto::IPV6 => 6,
        _ => {
            counters.malformed_drops += 1;
            return Err(DropReason::BadNextHeader);
        }
    };
    let Some(info) = ip::inner_info(pkt.data()).filter(|i| i.version == expect) else {
        counters.malformed_drops += 1;
        return Err(DropReason::BadNextHeader);
    };
    if info.total_len > pkt.len() {
        counters.malformed_drops += 1;
        return Err(DropReason::BadLength);
    }
    pkt.truncate(info.total_len);
    match ip::ecn_decap(info.tos, outer_tos) {
        ip::EcnDecap::Forward(e) if e != info.tos & 0b11 => {
            ip::set_tos(pkt.data_mut(), (info.tos & 0xfc) | e);
        }
        ip::EcnDecap::Forward(_) => {}
        ip::EcnDecap::Drop => return Err(DropReason::EcnDrop),
    }
    Ok(())
}
