//! Outer-packet fragmentation, reassembly and ICMP "too big" errors.
//!
//! Encapsulation makes packets larger, so an ESP packet may no longer fit the path MTU:
//! [`Fragmenter`] splits it (RFC 791, RFC 8200 §4.5), or, when the inner packet forbids
//! fragmentation, [`icmp_too_big`] builds the error that lets the sender's path MTU
//! discovery shrink its packets (RFC 1191, RFC 4443). Peers fragment too, so inbound ESP
//! goes through a [`Reassembler`] with bounded memory and timeouts.
//!
//! All three are sans-IO: bytes in, bytes out through the caller's buffers or callback, and
//! time only through `now` arguments.

mod fragment;
mod icmp;
mod reassembly;

pub use fragment::Fragmenter;
pub use icmp::icmp_too_big;
pub use reassembly::{Reassembler, Reassembly, ReassemblyLimits};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};

use crate::buf::BufError;
use crate::drop::DropReason;
use crate::ip::{IPV6_HEADER_LEN, checksum};
use crate::selector::proto;

/// Why a packet could not be fragmented, reassembled or answered with an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// Packet shorter than its headers claim or need.
    #[error("packet truncated")]
    Truncated,
    /// IP header that does not parse or whose fields are inconsistent.
    #[error("malformed IP header")]
    BadIpHeader,
    /// The packet does not fit and has DF set: the caller sends an ICMP error instead.
    #[error("packet exceeds MTU {mtu} and has DF set")]
    DontFragment { mtu: usize },
    /// The MTU leaves no room for 8 bytes of payload per fragment, or is below the IPv6
    /// minimum of 1280.
    #[error("MTU {mtu} too small, need at least {min}")]
    MtuTooSmall { mtu: usize, min: usize },
    /// An IPv6 packet that already carries a Fragment header: only its source fragments.
    #[error("IPv6 packet is already a fragment")]
    AlreadyFragmented,
    /// A fragment of zero length, or a non-last fragment whose length is not a multiple of 8.
    #[error("fragment length invalid")]
    BadFragmentLength,
    /// A fragment overlapping another one with different content (RFC 5722); the whole
    /// datagram was dropped.
    #[error("overlapping fragment; datagram dropped")]
    Overlap,
    /// Fragments that disagree on where the datagram ends; the datagram was dropped.
    #[error("inconsistent fragment lengths; datagram dropped")]
    Inconsistent,
    /// Reassembled datagram would exceed 65535 bytes; the datagram was dropped.
    #[error("reassembled datagram too large; datagram dropped")]
    Oversize,
    /// More fragments than the per-datagram limit; the datagram was dropped.
    #[error("too many fragments; datagram dropped")]
    TooManyFragments,
    /// The datagram alone exceeds the memory limit; it was dropped.
    #[error("reassembly memory limit reached; datagram dropped")]
    OutOfMemory,
    /// The packet is itself an ICMP error (RFC 1122 §3.2.2, RFC 4443 §2.4 e.2).
    #[error("no ICMP error about an ICMP error")]
    IcmpError,
    /// The packet is a non-first fragment, which cannot identify the flow for the sender.
    #[error("no ICMP error about a non-first fragment")]
    NotFirstFragment,
    /// The packet's source cannot receive an ICMP error (unspecified, multicast,
    /// broadcast, loopback), or an IPv4 destination is multicast or broadcast.
    #[error("no ICMP error for a non-unicast packet")]
    NotUnicast,
    /// The ICMP source address is not of the original packet's family.
    #[error("address family mismatch")]
    FamilyMismatch,
    /// The output buffer is too small.
    #[error(transparent)]
    Buffer(#[from] BufError),
}

impl FragError {
    /// The drop counter a packet that failed this way belongs to.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            FragError::Truncated => DropReason::Truncated,
            FragError::BadIpHeader => DropReason::BadIpHeader,
            FragError::DontFragment { .. } => DropReason::TooBig,
            FragError::MtuTooSmall { .. } | FragError::AlreadyFragmented | FragError::Buffer(_) => {
                DropReason::Oversize
            }
            FragError::BadFragmentLength
            | FragError::Overlap
            | FragError::Inconsistent
            | FragError::Oversize
            | FragError::TooManyFragments
            | FragError::OutOfMemory => DropReason::Reassembly,
            FragError::IcmpError
            | FragError::NotFirstFragment
            | FragError::NotUnicast
            | FragError::FamilyMismatch => DropReason::TooBig,
        }
    }
}

/// Smallest MTU every IPv6 link supports (RFC 8200 §5).
pub const IPV6_MIN_MTU: usize = 1280;

/// Largest IPv4 packet an ICMP error may be (RFC 1812 §4.3.2.3).
pub const IPV4_ICMP_ERROR_MAX: usize = 576;

/// Bytes of the IPv6 Fragment header.
const FRAG_HEADER_LEN: usize = 8;

/// Reads a big-endian u16 at `at`; `None` if out of bounds.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?)? {
        [x, y] => Some(u16::from_be_bytes([*x, *y])),
        _ => None,
    }
}

/// Writes a big-endian u16 at `at`; silently ignores an out-of-bounds position, which the
/// callers rule out by construction.
fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(d) = b.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Recomputes the header checksum of the IPv4 header `h` in place.
fn set_ipv4_checksum(h: &mut [u8]) {
    put16(h, 10, 0);
    let c = checksum(h);
    put16(h, 10, c);
}

/// Validated lengths of an IPv4 packet: (header length, total length).
fn ipv4_lengths(packet: &[u8]) -> Result<(usize, usize), FragError> {
    let h = Ipv4HeaderSlice::from_slice(packet).map_err(|e| match e {
        etherparse::err::ipv4::HeaderSliceError::Len(_) => FragError::Truncated,
        etherparse::err::ipv4::HeaderSliceError::Content(_) => FragError::BadIpHeader,
    })?;
    let hlen = h.slice().len();
    let total = usize::from(h.total_len());
    if total < hlen {
        return Err(FragError::BadIpHeader);
    }
    if total > packet.len() {
        return Err(FragError::Truncated);
    }
    Ok((hlen, total))
}

/// Validated total length of an IPv6 packet (jumbograms are not supported: a zero payload
/// length means an empty payload).
fn ipv6_len(packet: &[u8]) -> Result<usize, FragError> {
    let h = Ipv6HeaderSlice::from_slice(packet).map_err(|e| match e {
        etherparse::err::ipv6::HeaderSliceError::Len(_) => FragError::Truncated,
        etherparse::err::ipv6::HeaderSliceError::Content(_) => FragError::BadIpHeader,
    })?;
    let total = IPV6_HEADER_LEN + usize::from(h.payload_length());
    if total > packet.len() {
        return Err(FragError::Truncated);
    }
    Ok(total)
}

/// Where a walk over IPv6 Hop-by-Hop, Routing and Destination Options headers stopped.
#[derive(Debug, Clone, Copy)]
struct V6Chain {
    /// End of the unfragmentable part: after the last Hop-by-Hop or Routing header
    /// (Destination Options count only when a Routing header follows them).
    unfrag_end: usize,
    /// Position of the next-header byte that names the first fragmentable header.
    unfrag_nh_pos: usize,
    /// Offset of the first header that is not one of the three walked.
    stop_at: usize,
    /// Position of the next-header byte naming the header at `stop_at`.
    stop_nh_pos: usize,
    /// Protocol number of the header at `stop_at`.
    stop_next: u8,
}

/// Walks the extension headers of `pkt` from offset `pos`, where the header is named by the
/// byte at `nh_pos`. Every header consumes at least 8 bytes, so the walk ends.
fn walk_v6(pkt: &[u8], mut pos: usize, mut nh_pos: usize) -> Result<V6Chain, FragError> {
    let mut next = *pkt.get(nh_pos).ok_or(FragError::Truncated)?;
    let (mut unfrag_end, mut unfrag_nh_pos) = (pos, nh_pos);
    while matches!(next, proto::HOP_BY_HOP | proto::ROUTING | proto::DEST_OPTS) {
        let len_units = *pkt.get(pos + 1).ok_or(FragError::Truncated)?;
        let len = (usize::from(len_units) + 1) * 8;
        if pos + len > pkt.len() {
            return Err(FragError::Truncated);
        }
        let this = next;
        next = *pkt.get(pos).ok_or(FragError::Truncated)?;
        nh_pos = pos;
        pos += len;
        if this != proto::DEST_OPTS {
            unfrag_end = pos;
            unfrag_nh_pos = nh_pos;
        }
    }
    Ok(V6Chain {
        unfrag_end,
        unfrag_nh_pos,
        stop_at: pos,
        stop_nh_pos: nh_pos,
        stop_next: next,
    })
}
