//! GSO emulation at the TUN boundary: splitting the TCP/UDP super-packets that a TUN
//! device with offloads hands over into wire-sized IP packets (before encapsulation), and
//! coalescing decrypted TCP segments of one flow back into a super-packet (before the
//! TUN write).
//!
//! A TUN device opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD` prefixes every packet with
//! a `virtio_net_hdr` ([`VnetHdr`]) and lets the kernel skip segmentation and checksums:
//! one read then returns up to 64 KiB of one TCP flow, and one write may deliver as much.
//! That moves the per-packet syscall and stack cost of the inner side to once per
//! super-packet, which is what VPP, wireguard-go and the kernel's own GRO/GSO do. ESP
//! still protects every wire-sized packet on its own: segmentation happens before the
//! engine sees a packet and coalescing after it released one, so sequence numbers,
//! anti-replay, counters and the DF/ECN/DSCP rules are those of the individual packets.
//!
//! Everything here is a pure function of its input bytes; the I/O lives in
//! [`crate::io::tun`] and [`crate::worker`].

use crate::buf::PacketBuf;

/// Size of the `virtio_net_hdr` in front of every packet of an `IFF_VNET_HDR` TUN device
/// (the kernel default; the mergeable-buffers variant is not used).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (pseudo-header sum only);
/// the sum of the bytes from `csum_start` to the end belongs at `csum_start + csum_offset`.
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VNET_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VNET_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VNET_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO: UDP segmentation, each segment a datagram).
pub const VNET_GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP super-packet carries CWR (first segment only).
pub const VNET_GSO_ECN: u8 = 0x80;

/// Most segments one coalesced super-packet is built from (the kernel's GRO limit).
pub const MAX_COALESCE: usize = 64;
/// Largest IP header plus TCP header a coalesced packet can have (IPv6 + 60-byte TCP).
pub const MAX_HEADERS: usize = 40 + 60;
/// Open groups [`Gro::push`] looks back at to find a packet's flow.
const FLOW_LOOKBACK: usize = 16;

const TCP: u8 = 6;
const UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// A `virtio_net_hdr` (legacy layout, native byte order, as TUN uses it unless told
/// otherwise with `TUNSETVNETLE`/`BE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VNET_F_*` flags.
    pub flags: u8,
    /// `VNET_GSO_*` type, possibly with [`VNET_GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (IP + L4) in front of the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The wire form of the header.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// Why a packet from the TUN device could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// Headers that do not parse or do not match the virtio-net header.
    #[error("malformed super-packet or virtio-net header")]
    Malformed,
    /// A GSO type or header layout this code does not segment.
    #[error("unsupported GSO type {0:#x}")]
    Unsupported(u8),
    /// More segments than destination buffers.
    #[error("{need} segments do not fit in {have} buffers")]
    NoRoom {
        /// Segments the packet makes.
        need: usize,
        /// Buffers offered.
        have: usize,
    },
    /// A destination buffer is too small for a segment.
    #[error("segment does not fit in its buffer")]
    Buffer,
}

/// One's complement sum of `data` read as big-endian 16-bit words (an odd last byte is
/// padded with zero), not yet folded. Sums 32-bit words into 64 bits, which the
/// compiler vectorises; folding gives the same result as a 16-bit sum.
pub fn sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    let mut acc: u64 = (&mut chunks)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .sum();
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    acc
}

/// Folds a sum from [`sum`] into 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The L3 facts segmentation and coalescing need.
#[derive(Debug, Clone, Copy)]
struct L3 {
    v6: bool,
    /// IP header length.
    ihl: usize,
    /// Transport protocol.
    proto: u8,
}

fn l3(pkt: &[u8]) -> Option<L3> {
    match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl {
                return None;
            }
            // Fragments carry no (or only part of a) transport header.
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff;
            (frag == 0).then_some(L3 {
                v6: false,
                ihl,
                proto: pkt[9],
            })
        }
        6 if pkt.len() >= 40 => {
            // Hop-by-hop and destination options may precede TCP/UDP; they travel with
            // every segment. Routing headers (whose final destination the pseudo-header
            // would need) and fragments are not skipped.
            let (mut next, mut off) = (pkt[6], 40);
            while matches!(next, 0 | 60) {
                let len = (usize::from(*pkt.get(off + 1)?) + 1) * 8;
                next = *pkt.get(off)?;
                off += len;
            }
            (off <= pkt.len()).then_some(L3 {
                v6: true,
                ihl: off,
                proto: next,
            })
        }
        _ => None,
    }
}

/// Pseudo-header sum of the packet's addresses, `proto` and L4 length `len`.
fn pseudo_sum(pkt: &[u8], l: &L3, proto: u8, len: usize) -> u64 {
    let addrs = if l.v6 { &pkt[8..40] } else { &pkt[12..20] };
    sum(addrs) + u64::from(proto) + len as u64
}

/// Sets the length fields of the IP header at the front of `pkt` (whose length is the
/// whole packet) and the IPv4 identification and header checksum.
fn fix_ip(pkt: &mut [u8], l: &L3, id: u16) {
    let len = pkt.len();
    if l.v6 {
        let payload = (len - 40) as u16;
        pkt[4..6].copy_from_slice(&payload.to_be_bytes());
    } else {
        pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&pkt[..l.ihl]));
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// Writes the complete L4 checksum at `l4 + field` (the field's old content is ignored).
fn l4_checksum(pkt: &mut [u8], l: &L3, proto: u8, field: usize) {
    let l4 = l.ihl;
    pkt[l4 + field..l4 + field + 2].copy_from_slice(&[0, 0]);
    let len = pkt.len() - l4;
    let mut c = !fold(pseudo_sum(pkt, l, proto, len) + sum(&pkt[l4..]));
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    pkt[l4 + field..l4 + field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Completes a partial checksum (`VNET_F_NEEDS_CSUM`): the field already holds the
/// pseudo-header sum; the sum from `csum_start` to the end goes there, complemented.
pub fn complete_checksum(pkt: &mut [u8], vnet: &VnetHdr) -> Result<(), GsoError> {
    let start = usize::from(vnet.csum_start);
    let at = start + usize::from(vnet.csum_offset);
    if at + 2 > pkt.len() {
        return Err(GsoError::Malformed);
    }
    let c = !fold(sum(&pkt[start..]));
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The parsed layout of a super-packet.
#[derive(Debug, Clone, Copy)]
struct Layout {
    l3: L3,
    /// IP + L4 header length.
    hlen: usize,
    /// Payload bytes per segment.
    mss: usize,
    /// Segments the packet makes.
    count: usize,
}

fn layout(pkt: &[u8], vnet: &VnetHdr) -> Result<Layout, GsoError> {
    let kind = vnet.gso_type & !VNET_GSO_ECN;
    let l = l3(pkt).ok_or(GsoError::Malformed)?;
    let (want_v6, proto) = match kind {
        VNET_GSO_TCPV4 => (Some(false), TCP),
        VNET_GSO_TCPV6 => (Some(true), TCP),
        VNET_GSO_UDP_L4 => (None, UDP),
        other => return Err(GsoError::Unsupported(other)),
    };
    if want_v6.is_some_and(|v6| v6 != l.v6) {
        return Err(GsoError::Malformed);
    }
    if l.proto != proto {
        // IPv6 extension headers in front of TCP/UDP, or a mismatched protocol.
        return Err(GsoError::Unsupported(vnet.gso_type));
    }
    let l4len = if proto == TCP {
        let off = *pkt.get(l.ihl + 12).ok_or(GsoError::Malformed)?;
        usize::from(off >> 4) * 4
    } else {
        8
    };
    let hlen = l.ihl + l4len;
    if l4len < 8 || hlen > pkt.len() {
        return Err(GsoError::Malformed);
    }
    let mss = usize::from(vnet.gso_size);
    if mss == 0 {
        return Err(GsoError::Malformed);
    }
    let count = (pkt.len() - hlen).div_ceil(mss).max(1);
    Ok(Layout {
        l3: l,
        hlen,
        mss,
        count,
    })
}

/// Number of packets [`segment_into`] makes of `pkt` (1 for a packet that is no
/// super-packet).
pub fn segment_count(pkt: &[u8], vnet: &VnetHdr) -> Result<usize, GsoError> {
    if vnet.gso_type == VNET_GSO_NONE {
        return Ok(1);
    }
    layout(pkt, vnet).map(|l| l.count)
}

/// Splits the super-packet `pkt` described by `vnet` into `dst[0..n]` (each reset to
/// `headroom`) and returns `n`: TCP segments of `gso_size` payload bytes with their own
/// IP lengths, IPv4 identifications (consecutive from the super-packet's) and header
/// checksums, sequence numbers, flags (FIN and PSH only on the last segment, CWR only
/// on the first) and complete checksums; or UDP datagrams of `gso_size` bytes with
/// their own lengths and checksums. This is what the kernel's software GSO produces.
pub fn segment_into(
    pkt: &[u8],
    vnet: &VnetHdr,
    dst: &mut [PacketBuf],
    headroom: usize,
) -> Result<usize, GsoError> {
    let lay = layout(pkt, vnet)?;
    if lay.count > dst.len() {
        return Err(GsoError::NoRoom {
            need: lay.count,
            have: dst.len(),
        });
    }
    let Layout {
        l3: l, hlen, mss, ..
    } = lay;
    let (hdr, payload) = pkt.split_at(hlen);
    let id0 = u16::from_be_bytes([pkt[4], pkt[5]]);
    let tcp = l.proto == TCP;
    let (seq0, flags0) = if tcp {
        let t = &hdr[l.ihl..];
        (u32::from_be_bytes([t[4], t[5], t[6], t[7]]), t[13])
    } else {
        (0, 0)
    };
    let mut chunks = payload.chunks(mss);
    for (i, b) in dst[..lay.count].iter_mut().enumerate() {
        // An empty payload (a bare header with a GSO type) still makes one packet.
        let chunk = chunks.next().unwrap_or(&[]);
        b.reset(headroom);
        let out = b.append(hlen + chunk.len()).map_err(|_| GsoError::Buffer)?;
        out[..hlen].copy_from_slice(hdr);
        out[hlen..].copy_from_slice(chunk);
        fix_ip(out, &l, if l.v6 { 0 } else { id0.wrapping_add(i as u16) });
        let t = l.ihl;
        if tcp {
            let seq = seq0.wrapping_add((i * mss) as u32);
            out[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
            let mut flags = flags0;
            if i + 1 < lay.count {
                flags &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                flags &= !TCP_CWR;
            }
            out[t + 13] = flags;
            l4_checksum(out, &l, TCP, 16);
        } else {
            let len = (out.len() - t) as u16;
            out[t + 4..t + 6].copy_from_slice(&len.to_be_bytes());
            l4_checksum(out, &l, UDP, 6);
        }
    }
    Ok(lay.count)
}

/// A TCP segment's fields that decide whether it joins a coalesced group.
#[derive(Debug, Clone, Copy)]
struct TcpSeg {
    l3: L3,
    hlen: usize,
    seq: u32,
    flags: u8,
    payload: usize,
}

/// Parses a TCP segment that may be coalesced: IPv4 without options or fragmentation
/// and with DF set (so its identification carries nothing a receiver needs), or IPv6
/// without extension headers; a consistent length; only ACK (and PSH) set; a payload.
fn coalescable(pkt: &[u8]) -> Option<TcpSeg> {
    let l = l3(pkt)?;
    if l.proto != TCP {
        return None;
    }
    if l.v6 {
        if l.ihl != 40 || usize::from(u16::from_be_bytes([pkt[4], pkt[5]])) + 40 != pkt.len() {
            return None;
        }
    } else if l.ihl != 20
        || pkt[6] & 0xe0 != 0x40
        || usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) != pkt.len()
    {
        return None;
    }
    let t = l.ihl;
    let thl = usize::from(*pkt.get(t + 12)? >> 4) * 4;
    let hlen = t + thl;
    if thl < 20 || hlen >= pkt.len() || hlen > MAX_HEADERS {
        return None;
    }
    let flags = pkt[t + 13];
    if flags & !TCP_PSH != TCP_ACK {
        return None;
    }
    Some(TcpSeg {
        l3: l,
        hlen,
        seq: u32::from_be_bytes([pkt[t + 4], pkt[t + 5], pkt[t + 6], pkt[t + 7]]),
        flags,
        payload: pkt.len() - hlen,
    })
}

/// True if the TCP checksum of `pkt` verifies. Coalescing hands the kernel a partial
/// checksum it will not check, so a corrupted segment must not go in.
fn tcp_checksum_ok(pkt: &[u8], l: &L3) -> bool {
    let len = pkt.len() - l.ihl;
    fold(pseudo_sum(pkt, l, TCP, len) + sum(&pkt[l.ihl..])) == 0xffff
}

/// Addresses and ports of a TCP packet (the flow), as bytes to compare.
fn flow_of(pkt: &[u8]) -> Option<FlowKey> {
    let l = l3(pkt)?;
    if l.proto != TCP {
        return None;
    }
    let ports = pkt.get(l.ihl..l.ihl + 4)?;
    let mut k = FlowKey([0; 37]);
    if l.v6 {
        k.0[..32].copy_from_slice(&pkt[8..40]);
    } else {
        k.0[..8].copy_from_slice(&pkt[12..20]);
    }
    k.0[32..36].copy_from_slice(ports);
    k.0[36] = if l.v6 { 6 } else { 4 };
    Some(k)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey([u8; 37]);

/// One output packet of a coalescing plan: a single packet, or several TCP segments of
/// one flow written as one super-packet.
#[derive(Debug, Clone)]
pub struct Group {
    /// Caller's tag (e.g. the tunnel) the members share.
    pub tag: usize,
    /// Index of the first member.
    pub head: usize,
    /// Index of the last member.
    last: usize,
    /// Members.
    pub count: usize,
    flow: Option<FlowKey>,
    /// Still accepts segments.
    open: bool,
    /// Payload bytes of all members, and of each full-sized one.
    payload: usize,
    gso_size: usize,
    next_seq: u32,
    psh: bool,
    /// The head's IP and TCP headers.
    hdr: [u8; MAX_HEADERS],
    hlen: usize,
    l3: Option<L3>,
}

/// Plans the coalescing of a batch of decrypted inner packets (userspace GRO). Packets
/// are pushed in arrival order with an index of the caller's choosing; the plan is a
/// list of groups to write in order. A TCP segment joins the newest group of its flow
/// when it continues it exactly (next sequence number, same ACK, IP fields, TCP options
/// and segment size, checksum correct, no flags besides ACK/PSH, the group not ended by
/// a short or PSH segment), as Linux GRO requires; anything else starts a group of its
/// own. Order within a flow is kept; different flows may be reordered.
#[derive(Debug, Default)]
pub struct Gro {
    groups: Vec<Group>,
    /// Per pushed index: the next member of its group.
    next: Vec<Option<usize>>,
}

impl Gro {
    /// Forgets the plan, keeping the allocations.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.next.clear();
    }

    /// The groups, in write order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The member indices of `g`, in order.
    pub fn members<'a>(&'a self, g: &Group) -> impl Iterator<Item = usize> + 'a {
        std::iter::successors(Some(g.head), |&i| self.next.get(i).copied().flatten())
    }

    /// Adds packet `index` (tagged `tag`; only packets with equal tags are coalesced).
    pub fn push(&mut self, index: usize, tag: usize, pkt: &[u8]) {
        if self.next.len() <= index {
            self.next.resize(index + 1, None);
        }
        self.next[index] = None;
        let flow = flow_of(pkt);
        let seg = coalescable(pkt);
        if let Some(f) = flow {
            let newest = self
                .groups
                .iter_mut()
                .rev()
                .take(FLOW_LOOKBACK)
                .find(|g| g.tag == tag && g.flow == Some(f));
            if let (Some(g), Some(s)) = (newest, seg) {
                if g.open && continues(g, &s, pkt) && tcp_checksum_ok(pkt, &s.l3) {
                    self.next[g.last] = Some(index);
                    g.last = index;
                    g.count += 1;
                    g.payload += s.payload;
                    g.next_seq = s.seq.wrapping_add(s.payload as u32);
                    g.psh = s.flags & TCP_PSH != 0;
                    g.open = !g.psh && s.payload == g.gso_size && g.count < MAX_COALESCE;
                    return;
                }
                // The flow continues in a new group: the old one must not take more, or
                // its later members would overtake this packet.
                g.open = false;
            }
        }
        let mut hdr = [0u8; MAX_HEADERS];
        let (open, hlen, l, payload, next_seq, psh) = match seg {
            Some(s) if tcp_checksum_ok(pkt, &s.l3) => {
                hdr[..s.hlen].copy_from_slice(&pkt[..s.hlen]);
                let psh = s.flags & TCP_PSH != 0;
                let next = s.seq.wrapping_add(s.payload as u32);
                (!psh, s.hlen, Some(s.l3), s.payload, next, psh)
            }
            _ => (false, 0, None, 0, 0, false),
        };
        self.groups.push(Group {
            tag,
            head: index,
            last: index,
            count: 1,
            flow,
            open,
            payload,
            gso_size: payload,
            next_seq,
            psh,
            hdr,
            hlen,
            l3: l,
        });
    }

    /// For a group of more than one member: the virtio-net header and the IP + TCP
    /// header (written to `out`, length returned) of the super-packet; the members'
    /// payloads (each packet from `hlen` on) follow it. The TCP checksum is left partial
    /// ([`VNET_F_NEEDS_CSUM`]): the kernel trusts it for local delivery and completes
    /// it when it segments for forwarding.
    pub fn header(&self, g: &Group, out: &mut [u8; MAX_HEADERS]) -> Option<(VnetHdr, usize)> {
        let l = g.l3?;
        if g.count < 2 {
            return None;
        }
        let hlen = g.hlen;
        let h = &mut out[..hlen];
        h.copy_from_slice(&g.hdr[..hlen]);
        let total = hlen + g.payload;
        let t = l.ihl;
        if l.v6 {
            h[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        } else {
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&h[..t]));
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if g.psh {
            h[t + 13] |= TCP_PSH;
        }
        let partial = fold(pseudo_sum(h, &l, TCP, total - t));
        h[t + 16..t + 18].copy_from_slice(&partial.to_be_bytes());
        let vnet = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: if l.v6 { VNET_GSO_TCPV6 } else { VNET_GSO_TCPV4 },
            hdr_len: hlen as u16,
            gso_size: g.gso_size as u16,
            csum_start: t as u16,
            csum_offset: 16,
        };
        Some((vnet, hlen))
    }

    /// Payload offset of the members of `g` (their common header length).
    pub fn payload_offset(&self, g: &Group) -> usize {
        g.hlen
    }
}

/// True if segment `s` (bytes `pkt`) continues group `g` exactly.
fn continues(g: &Group, s: &TcpSeg, pkt: &[u8]) -> bool {
    let Some(gl) = g.l3 else {
        return false;
    };
    let h = &g.hdr;
    let t = gl.ihl;
    let same_ip = if gl.v6 {
        s.l3.v6 && h[..4] == pkt[..4] && h[7] == pkt[7]
    } else {
        !s.l3.v6 && h[1] == pkt[1] && h[6] & 0xe0 == pkt[6] & 0xe0 && h[8] == pkt[8]
    };
    same_ip
        && s.hlen == g.hlen
        && s.seq == g.next_seq
        && s.payload <= g.gso_size
        && h[t + 8..t + 12] == pkt[t + 8..t + 12]
        && h[t + 20..g.hlen] == pkt[t + 20..g.hlen]
        && g.hlen + g.payload + s.payload <= usize::from(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        Ipv4Header, Ipv6Header, PacketBuilder, TcpHeader, TcpOptionElement, UdpHeader,
    };
    use proptest::prelude::*;

    const HEADROOM: usize = 64;

    #[derive(Debug, Clone, Copy)]
    struct Flags {
        fin: bool,
        psh: bool,
        cwr: bool,
    }

    /// A TCP super-packet as a TUN device with TSO hands it over: full length, partial
    /// checksum (pseudo-header sum) in the TCP checksum field.
    fn tcp_super(v6: bool, payload: &[u8], seq: u32, f: Flags, ts: bool) -> Vec<u8> {
        let b = if v6 {
            PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
        } else {
            PacketBuilder::ipv4([10, 1, 0, 1], [10, 2, 0, 1], 64)
        };
        let mut b = b.tcp(40000, 5201, seq, 512).ack(0x1234_5678);
        if f.fin {
            b = b.fin();
        }
        if f.psh {
            b = b.psh();
        }
        if f.cwr {
            b = b.cwr();
        }
        if ts {
            b = b
                .options(&[
                    TcpOptionElement::Noop,
                    TcpOptionElement::Noop,
                    TcpOptionElement::Timestamp(7, 9),
                ])
                .expect("options");
        }
        let mut pkt = Vec::new();
        b.write(&mut pkt, payload).expect("build");
        if !v6 {
            pkt[4..6].copy_from_slice(&0xfff0_u16.to_be_bytes());
            pkt[6] |= 0x40; // DF, as Linux TCP sets it
            pkt[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&pkt[..20]));
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l = l3(&pkt).expect("l3");
        let partial = fold(pseudo_sum(&pkt, &l, TCP, pkt.len() - l.ihl));
        let t = l.ihl;
        pkt[t + 16..t + 18].copy_from_slice(&partial.to_be_bytes());
        pkt
    }

    fn tso_hdr(v6: bool, mss: u16, hlen: usize) -> VnetHdr {
        VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: if v6 { VNET_GSO_TCPV6 } else { VNET_GSO_TCPV4 },
            hdr_len: hlen as u16,
            gso_size: mss,
            csum_start: if v6 { 40 } else { 20 },
            csum_offset: 16,
        }
    }

    fn bufs(n: usize) -> Vec<PacketBuf> {
        (0..n).map(|_| PacketBuf::new(4096, HEADROOM)).collect()
    }

    /// Parses a segment with etherparse and checks every header field and checksum
    /// independently; returns (seq, fin, psh, cwr, payload).
    fn check_segment(seg: &[u8], v6: bool, id: u16) -> (u32, bool, bool, bool, Vec<u8>) {
        let (tcp, payload) = if v6 {
            let (ip, rest) = Ipv6Header::from_slice(seg).expect("IPv6 header");
            assert_eq!(usize::from(ip.payload_length) + 40, seg.len());
            let (tcp, payload) = TcpHeader::from_slice(rest).expect("TCP header");
            assert_eq!(
                tcp.checksum,
                tcp.calc_checksum_ipv6(&ip, payload).expect("sum")
            );
            (tcp, payload)
        } else {
            let (ip, rest) = Ipv4Header::from_slice(seg).expect("IPv4 header");
            assert_eq!(usize::from(ip.total_len), seg.len());
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            assert_eq!(ip.identification, id);
            assert!(ip.dont_fragment);
            let (tcp, payload) = TcpHeader::from_slice(rest).expect("TCP header");
            assert_eq!(
                tcp.checksum,
                tcp.calc_checksum_ipv4(&ip, payload).expect("sum")
            );
            (tcp, payload)
        };
        assert_eq!(tcp.acknowledgment_number, 0x1234_5678);
        assert!(tcp.ack);
        (
            tcp.sequence_number,
            tcp.fin,
            tcp.psh,
            tcp.cwr,
            payload.to_vec(),
        )
    }

    fn segment_and_check(v6: bool, len: usize, mss: u16, f: Flags, ts: bool) -> Vec<PacketBuf> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let seq = 0xffff_f000; // wraps within the super-packet
        let pkt = tcp_super(v6, &payload, seq, f, ts);
        let hlen = pkt.len() - len;
        let vnet = tso_hdr(v6, mss, hlen);
        let n = segment_count(&pkt, &vnet).expect("count");
        assert_eq!(n, len.div_ceil(usize::from(mss)).max(1));
        let mut out = bufs(n);
        assert_eq!(segment_into(&pkt, &vnet, &mut out, HEADROOM), Ok(n));
        let mut joined = Vec::new();
        for (i, b) in out.iter().enumerate() {
            assert_eq!(b.headroom(), HEADROOM);
            let (s, fin, psh, cwr, data) =
                check_segment(b.data(), v6, 0xfff0_u16.wrapping_add(i as u16));
            assert_eq!(s, seq.wrapping_add((i * usize::from(mss)) as u32));
            let last = i + 1 == n;
            assert_eq!(fin, f.fin && last);
            assert_eq!(psh, f.psh && last);
            assert_eq!(cwr, f.cwr && i == 0);
            assert!(data.len() <= usize::from(mss));
            if !last {
                assert_eq!(data.len(), usize::from(mss));
            }
            joined.extend_from_slice(&data);
        }
        assert_eq!(joined, payload);
        out
    }

    #[test]
    fn tcp_super_packets_segment_with_correct_headers() {
        for v6 in [false, true] {
            for (len, mss) in [
                (64_000, 1348),
                (1348 * 3, 1348),
                (100, 1348),
                (5000, 536),
                (1, 1),
            ] {
                let f = Flags {
                    fin: true,
                    psh: true,
                    cwr: true,
                };
                segment_and_check(v6, len, mss, f, len % 2 == 0);
            }
        }
    }

    #[test]
    fn udp_super_packets_segment_into_datagrams() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
            let b = if v6 {
                PacketBuilder::ipv6([1; 16], [2; 16], 9)
            } else {
                PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            };
            let mut pkt = Vec::new();
            b.udp(443, 4433).write(&mut pkt, &payload).expect("build");
            let vnet = VnetHdr {
                flags: VNET_F_NEEDS_CSUM,
                gso_type: VNET_GSO_UDP_L4,
                gso_size: 1200,
                ..VnetHdr::default()
            };
            let mut out = bufs(3);
            assert_eq!(segment_into(&pkt, &vnet, &mut out, HEADROOM), Ok(3));
            let mut joined = Vec::new();
            for b in &out {
                let (udp, data) = if v6 {
                    let (ip, rest) = Ipv6Header::from_slice(b.data()).expect("ip");
                    let (udp, data) = UdpHeader::from_slice(rest).expect("udp");
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv6(&ip, data).expect("sum")
                    );
                    (udp, data)
                } else {
                    let (ip, rest) = Ipv4Header::from_slice(b.data()).expect("ip");
                    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                    let (udp, data) = UdpHeader::from_slice(rest).expect("udp");
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv4(&ip, data).expect("sum")
                    );
                    (udp, data)
                };
                assert_eq!(usize::from(udp.length), data.len() + 8);
                joined.extend_from_slice(data);
            }
            assert_eq!(joined, payload);
        }
    }

    #[test]
    fn partial_checksum_is_completed() {
        let mut pkt = tcp_super(
            false,
            b"hello",
            1,
            Flags {
                fin: false,
                psh: true,
                cwr: false,
            },
            false,
        );
        let vnet = tso_hdr(false, 0, 0);
        complete_checksum(&mut pkt, &vnet).expect("complete");
        check_segment(&pkt, false, 0xfff0);
        assert_eq!(
            complete_checksum(&mut pkt[..30], &vnet),
            Err(GsoError::Malformed)
        );
    }

    #[test]
    fn malformed_and_unsupported_super_packets_are_refused() {
        let pkt = tcp_super(
            false,
            &[0; 3000],
            1,
            Flags {
                fin: false,
                psh: false,
                cwr: false,
            },
            false,
        );
        let mut out = bufs(1);
        assert_eq!(
            segment_into(&pkt, &tso_hdr(false, 1000, 40), &mut out, HEADROOM),
            Err(GsoError::NoRoom { need: 3, have: 1 })
        );
        assert_eq!(
            segment_count(&pkt, &tso_hdr(true, 1000, 40)),
            Err(GsoError::Malformed)
        );
        assert_eq!(
            segment_count(&pkt, &tso_hdr(false, 0, 40)),
            Err(GsoError::Malformed)
        );
        let mut v = tso_hdr(false, 1000, 40);
        v.gso_type = 3; // VIRTIO_NET_HDR_GSO_UDP (UFO): not asked for
        assert_eq!(segment_count(&pkt, &v), Err(GsoError::Unsupported(3)));
        assert_eq!(
            segment_count(&pkt[..10], &tso_hdr(false, 1000, 40)),
            Err(GsoError::Malformed)
        );
    }

    #[test]
    fn ipv6_options_headers_travel_with_every_segment() {
        let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        let f = Flags {
            fin: false,
            psh: false,
            cwr: false,
        };
        let mut pkt = tcp_super(true, &payload, 1000, f, false);
        // Insert an 8-byte destination options header (PadN) in front of TCP.
        pkt.splice(40..40, [6, 0, 1, 4, 0, 0, 0, 0]);
        pkt[6] = 60;
        let plen = u16::from_be_bytes([pkt[4], pkt[5]]) + 8;
        pkt[4..6].copy_from_slice(&plen.to_be_bytes());
        let vnet = tso_hdr(true, 1400, 40 + 8 + 20);
        let mut out = bufs(3);
        assert_eq!(segment_into(&pkt, &vnet, &mut out, HEADROOM), Ok(3));
        let mut joined = Vec::new();
        for (i, b) in out.iter().enumerate() {
            let d = b.data();
            assert_eq!(usize::from(u16::from_be_bytes([d[4], d[5]])) + 40, d.len());
            assert_eq!(&d[40..48], &[6, 0, 1, 4, 0, 0, 0, 0]);
            let (tcp, data) = TcpHeader::from_slice(&d[48..]).expect("TCP");
            let src: [u8; 16] = d[8..24].try_into().expect("src");
            let dst: [u8; 16] = d[24..40].try_into().expect("dst");
            let sum = tcp.calc_checksum_ipv6_raw(src, dst, data).expect("sum");
            assert_eq!(tcp.checksum, sum);
            assert_eq!(tcp.sequence_number, 1000 + 1400 * i as u32);
            joined.extend_from_slice(data);
        }
        assert_eq!(joined, payload);
        // Not coalesced: the GRO rules here cover IPv6 without extension headers only.
        let mut gro = Gro::default();
        for (i, b) in out.iter().enumerate() {
            gro.push(i, 0, b.data());
        }
        assert_eq!(gro.groups().len(), 3);
    }

    /// Builds the byte stream a coalesced group is written as and checks it is the
    /// super-packet the segments came from (with the checksum completed).
    fn coalesced(gro: &Gro, g: &Group, pkts: &[Vec<u8>]) -> (VnetHdr, Vec<u8>) {
        let mut hdr = [0u8; MAX_HEADERS];
        let (vnet, hlen) = gro.header(g, &mut hdr).expect("coalesced");
        let mut out = hdr[..hlen].to_vec();
        for m in gro.members(g) {
            out.extend_from_slice(&pkts[m][hlen..]);
        }
        complete_checksum(&mut out, &vnet).expect("checksum");
        (vnet, out)
    }

    #[test]
    fn segments_coalesce_back_into_the_super_packet() {
        for v6 in [false, true] {
            let f = Flags {
                fin: false,
                psh: true,
                cwr: false,
            };
            let out = segment_and_check(v6, 20_000, 1348, f, true);
            let pkts: Vec<Vec<u8>> = out.iter().map(|b| b.data().to_vec()).collect();
            let mut gro = Gro::default();
            for (i, p) in pkts.iter().enumerate() {
                gro.push(i, 0, p);
            }
            assert_eq!(gro.groups().len(), 1);
            let g = &gro.groups()[0];
            assert_eq!(g.count, pkts.len());
            let (vnet, pkt) = coalesced(&gro, g, &pkts);
            assert_eq!(vnet.gso_size, 1348);
            let hlen = usize::from(vnet.hdr_len);
            assert_eq!(hlen, pkts[0].len() - 1348);
            // The coalesced packet segments again into the same packets.
            let (s, _, psh, _, data) = check_segment(&pkt, v6, 0xfff0);
            assert_eq!(s, 0xffff_f000);
            assert!(psh);
            assert_eq!(data.len(), 20_000);
            let mut again = bufs(pkts.len());
            let n = segment_into(&pkt, &vnet, &mut again, HEADROOM).expect("resegment");
            let again: Vec<Vec<u8>> = again[..n].iter().map(|b| b.data().to_vec()).collect();
            assert_eq!(again, pkts);
        }
    }

    #[test]
    fn coalescing_keeps_flow_order_and_refuses_what_linux_gro_refuses() {
        let f = Flags {
            fin: false,
            psh: false,
            cwr: false,
        };
        let seg = |seq: u32, len: usize| tcp_super(false, &vec![seq as u8; len], seq, f, false);
        let mut other = tcp_super(true, &[1; 100], 0, f, false);
        let mut gro = Gro::default();
        let mut bad = seg(300, 100);
        let last = bad.len() - 1;
        bad[last] ^= 1; // corrupted: checksum no longer verifies
        let mut pkts = [
            seg(0, 100),
            seg(100, 100),
            other.clone(),
            seg(200, 100),
            bad,
            seg(400, 100),
        ];
        // Fix the checksums the builder left partial.
        for p in pkts.iter_mut().chain([&mut other]) {
            let l = l3(p).expect("l3");
            l4_checksum(p, &l, TCP, 16);
        }
        pkts[4][last] ^= 1;
        for (i, p) in pkts.iter().enumerate() {
            gro.push(i, 0, p);
        }
        let groups: Vec<Vec<usize>> = gro
            .groups()
            .iter()
            .map(|g| gro.members(g).collect())
            .collect();
        assert_eq!(groups, vec![vec![0, 1, 3], vec![2], vec![4], vec![5]]);
        // A gap in sequence numbers, a different tag and a bigger segment also split.
        gro.clear();
        gro.push(0, 0, &pkts[0]);
        gro.push(1, 1, &pkts[1]);
        gro.push(2, 0, &pkts[3]);
        let big = {
            let mut p = seg(100, 200);
            let l = l3(&p).expect("l3");
            l4_checksum(&mut p, &l, TCP, 16);
            p
        };
        gro.push(3, 0, &big);
        let groups: Vec<Vec<usize>> = gro
            .groups()
            .iter()
            .map(|g| gro.members(g).collect())
            .collect();
        assert_eq!(groups, vec![vec![0], vec![1], vec![2], vec![3]]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_tcp_super_packet_segments_correctly(
            v6 in any::<bool>(),
            len in 0usize..60_000,
            mss in 536u16..=1460,
            fin in any::<bool>(),
            psh in any::<bool>(),
            cwr in any::<bool>(),
            ts in any::<bool>(),
        ) {
            let out = segment_and_check(v6, len, mss, Flags { fin, psh, cwr }, ts);
            // Without FIN or CWR the segments (those with payload) coalesce back.
            if !fin && !cwr && len > 0 {
                let pkts: Vec<Vec<u8>> = out.iter().map(|b| b.data().to_vec()).collect();
                let mut gro = Gro::default();
                for (i, p) in pkts.iter().enumerate() {
                    gro.push(i, 0, p);
                }
                let mut joined = Vec::new();
                for g in gro.groups() {
                    let id = 0xfff0_u16.wrapping_add(g.head as u16);
                    let pkt = if g.count > 1 {
                        coalesced(&gro, g, &pkts).1
                    } else {
                        pkts[g.head].clone()
                    };
                    let (_, _, _, _, data) = check_segment(&pkt, v6, id);
                    joined.extend_from_slice(&data);
                }
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                prop_assert_eq!(joined, payload);
                prop_assert_eq!(gro.groups().len(), pkts.len().div_ceil(MAX_COALESCE));
            }
        }
    }
}
