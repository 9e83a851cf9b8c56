//! Reassembling fragmented datagrams in bounded memory.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::{
    FRAG_HEADER_LEN, FragError, be16, ipv4_lengths, ipv6_len, put16, set_ipv4_checksum, walk_v6,
};
use crate::buf::{DEFAULT_HEADROOM, PacketBuf};
use crate::ip::{IPV6_HEADER_LEN, checksum};
use crate::selector::proto;

/// Bounds on what a [`Reassembler`] holds, so that fragments an attacker sends and never
/// completes cost bounded memory and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Memory for all incomplete datagrams (buffers as allocated, plus bookkeeping).
    pub max_bytes: usize,
    /// Incomplete datagrams held at once.
    pub max_datagrams: usize,
    /// Fragments one datagram may consist of.
    pub max_fragments: usize,
    /// Lifetime of an incomplete IPv4 datagram (RFC 791 suggests 15 s; Linux uses 30 s).
    pub timeout_v4: Duration,
    /// Lifetime of an incomplete IPv6 datagram (RFC 8200 §4.5: 60 s).
    pub timeout_v6: Duration,
}

impl Default for ReassemblyLimits {
    /// 4 MiB, 1024 datagrams, 256 fragments each (a 64 KiB datagram at a 576-byte MTU
    /// needs about 120), 30 s for IPv4 and 60 s for IPv6.
    fn default() -> Self {
        Self {
            max_bytes: 4 << 20,
            max_datagrams: 1024,
            max_fragments: 256,
            timeout_v4: Duration::from_secs(30),
            timeout_v6: Duration::from_secs(60),
        }
    }
}

/// What [`Reassembler::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reassembly {
    /// Not a fragment: process the packet as it is.
    NotFragment,
    /// A fragment was stored (or was an exact duplicate); nothing to process yet.
    Pending,
    /// The datagram is complete and has been written into the output buffer.
    Complete,
}

/// Identifies the fragments of one datagram. IPv6 leaves `protocol` at 0: RFC 8200 §4.5
/// keys on (source, destination, identification) only, and the Next Header values in the
/// Fragment headers of one datagram may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
}

/// Bookkeeping bytes charged per held datagram and per fragment range.
const DATAGRAM_OVERHEAD: usize = std::mem::size_of::<Datagram>() + std::mem::size_of::<Key>();
const RANGE_COST: usize = std::mem::size_of::<(usize, usize)>();

/// An incomplete datagram.
#[derive(Debug)]
struct Datagram {
    created: Instant,
    deadline: Instant,
    is_v6: bool,
    /// The IPv4 header, or the IPv6 unfragmentable part, of the offset-0 fragment; empty
    /// until that fragment arrives.
    header: Vec<u8>,
    /// IPv6: position in `header` of the byte that named the Fragment header.
    nh_pos: usize,
    /// IPv6: the Next Header of the offset-0 fragment's Fragment header.
    next_header: u8,
    /// Fragment payloads at their offsets.
    data: Vec<u8>,
    /// Received byte ranges `[start, end)`, sorted and disjoint.
    ranges: Vec<(usize, usize)>,
    /// Sum of the range lengths.
    received: usize,
    /// Payload length, known once the last fragment arrived.
    total: Option<usize>,
    /// Bytes charged against [`ReassemblyLimits::max_bytes`].
    cost: usize,
}

/// One parsed fragment.
#[derive(Debug)]
struct Fragment<'a> {
    key: Key,
    is_v6: bool,
    offset: usize,
    more: bool,
    /// IPv4 header or IPv6 unfragmentable part of this fragment.
    header: &'a [u8],
    nh_pos: usize,
    next_header: u8,
    data: &'a [u8],
}

impl Fragment<'_> {
    /// Length of the IP payload a datagram with this fragment's header would have, up to
    /// the end of this fragment.
    fn payload_end(&self) -> usize {
        let own = if self.is_v6 {
            self.header.len() - IPV6_HEADER_LEN
        } else {
            0
        };
        own + self.offset + self.data.len()
    }

    /// Largest payload length the header permits.
    fn payload_limit(&self) -> usize {
        if self.is_v6 {
            usize::from(u16::MAX)
        } else {
            usize::from(u16::MAX) - self.header.len()
        }
    }
}

/// Reassembles IPv4 and IPv6 fragments.
///
/// Overlapping fragments drop the whole datagram, for IPv6 as RFC 5722 requires and for
/// IPv4 too: overlaps have no legitimate use and are the stuff of evasion attacks. Exact
/// duplicates (same offset, length and bytes), which networks do produce, are ignored
/// (RFC 8200 §4.5). When a limit is hit, the oldest incomplete datagrams are evicted.
/// Each incomplete datagram owns its buffers: reassembly is the slow path, and its memory
/// is bounded by [`ReassemblyLimits::max_bytes`] rather than kept allocation-free.
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    table: HashMap<Key, Datagram>,
    bytes: usize,
    /// No datagram expires before this; lets `push` skip most expiry scans.
    next_expiry: Option<Instant>,
}

impl Reassembler {
    /// An empty reassembler bounded by `limits`.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            table: HashMap::new(),
            bytes: 0,
            next_expiry: None,
        }
    }

    /// Incomplete datagrams held.
    pub fn pending(&self) -> usize {
        self.table.len()
    }

    /// Bytes charged against the memory limit.
    pub fn bytes_used(&self) -> usize {
        self.bytes
    }

    /// Takes in one packet. A fragment is stored; if it completes its datagram, the
    /// datagram is written into `out` (headers fixed: IPv4 length, flags, offset and
    /// checksum; IPv6 Fragment header removed, payload length and next header fixed). An
    /// error means the packet is to be dropped; for datagram-level errors (overlap,
    /// oversize, inconsistent, too many fragments, memory) the datagram is gone too.
    /// Expired datagrams are dropped first.
    pub fn push(
        &mut self,
        now: Instant,
        packet: &[u8],
        out: &mut PacketBuf,
    ) -> Result<Reassembly, FragError> {
        if self.next_expiry.is_some_and(|t| now >= t) {
            self.expire(now);
        }
        let Some(frag) = parse(packet)? else {
            return Ok(Reassembly::NotFragment);
        };
        if frag.data.is_empty() || (frag.more && frag.data.len() % 8 != 0) {
            return Err(FragError::BadFragmentLength);
        }
        if frag.is_v6 && frag.offset == 0 && !frag.more {
            // An atomic fragment is a datagram of its own (RFC 6946).
            write_v6(out, frag.header, frag.nh_pos, frag.next_header, frag.data)?;
            return Ok(Reassembly::Complete);
        }
        let key = frag.key;
        if frag.payload_end() > frag.payload_limit() {
            self.remove(&key);
            return Err(FragError::Oversize);
        }
        match self.add(now, &frag) {
            Ok(true) => {
                let result = self.table.get(&key).map(|d| d.write(out));
                self.remove(&key);
                match result {
                    Some(r) => r.map(|()| Reassembly::Complete),
                    None => Ok(Reassembly::Pending),
                }
            }
            Ok(false) => Ok(Reassembly::Pending),
            Err(e) => {
                self.remove(&key);
                Err(e)
            }
        }
    }

    /// Drops the datagrams whose deadline has passed and returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.table.len();
        let mut freed = 0;
        let mut next: Option<Instant> = None;
        self.table.retain(|_, d| {
            if d.deadline <= now {
                freed += d.cost;
                false
            } else {
                next = Some(next.map_or(d.deadline, |t| t.min(d.deadline)));
                true
            }
        });
        self.bytes -= freed;
        self.next_expiry = next;
        before - self.table.len()
    }

    fn remove(&mut self, key: &Key) {
        if let Some(d) = self.table.remove(key) {
            self.bytes -= d.cost;
        }
    }

    /// Evicts the oldest datagram other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: Option<&Key>) -> bool {
        let oldest = self
            .table
            .iter()
            .filter(|(k, _)| Some(*k) != keep)
            .min_by_key(|(_, d)| d.created)
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.remove(&k);
                true
            }
            None => false,
        }
    }

    /// Stores `frag`; returns whether its datagram is now complete.
    fn add(&mut self, now: Instant, frag: &Fragment<'_>) -> Result<bool, FragError> {
        let key = frag.key;
        if !self.table.contains_key(&key) {
            while self.table.len() >= self.limits.max_datagrams.max(1) {
                if !self.evict_oldest(None) {
                    break;
                }
            }
            let timeout = if frag.is_v6 {
                self.limits.timeout_v6
            } else {
                self.limits.timeout_v4
            };
            let deadline = now.checked_add(timeout).unwrap_or(now);
            self.next_expiry = Some(self.next_expiry.map_or(deadline, |t| t.min(deadline)));
            self.table.insert(
                key,
                Datagram {
                    created: now,
                    deadline,
                    is_v6: frag.is_v6,
                    header: Vec::new(),
                    nh_pos: 0,
                    next_header: 0,
                    data: Vec::new(),
                    ranges: Vec::new(),
                    received: 0,
                    total: None,
                    cost: DATAGRAM_OVERHEAD,
                },
            );
            self.bytes += DATAGRAM_OVERHEAD;
        }

        let growth = match self.table.get(&key) {
            Some(d) => match d.check(frag, self.limits.max_fragments)? {
                Some(g) => g,
                None => return Ok(false),
            },
            None => return Err(FragError::OutOfMemory),
        };
        while self.bytes + growth > self.limits.max_bytes {
            if !self.evict_oldest(Some(&key)) {
                return Err(FragError::OutOfMemory);
            }
        }
        let d = self.table.get_mut(&key).ok_or(FragError::OutOfMemory)?;
        d.store(frag, growth);
        self.bytes += growth;
        Ok(d.is_complete())
    }
}

impl Datagram {
    /// Validates `frag` against what is held. Returns the bytes storing it costs, or `None`
    /// for an exact duplicate to be ignored.
    fn check(&self, frag: &Fragment<'_>, max_fragments: usize) -> Result<Option<usize>, FragError> {
        if frag.is_v6 != self.is_v6 {
            return Err(FragError::Inconsistent);
        }
        let start = frag.offset;
        let end = start + frag.data.len();
        let idx = self.ranges.partition_point(|r| r.0 < start);
        if let Some(&(s, e)) = self.ranges.get(idx)
            && s == start
            && e == end
            && self.data.get(s..e) == Some(frag.data)
        {
            return Ok(None);
        }
        let prev_overlaps = idx
            .checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .is_some_and(|r| r.1 > start);
        let next_overlaps = self.ranges.get(idx).is_some_and(|r| r.0 < end);
        if prev_overlaps || next_overlaps {
            return Err(FragError::Overlap);
        }
        if frag.more {
            if self.total.is_some_and(|t| end > t) {
                return Err(FragError::Inconsistent);
            }
        } else if self.total.is_some_and(|t| t != end)
            || self.ranges.last().is_some_and(|r| r.1 > end)
        {
            return Err(FragError::Inconsistent);
        }
        if self.ranges.len() >= max_fragments {
            return Err(FragError::TooManyFragments);
        }
        let header = if start == 0 { frag.header.len() } else { 0 };
        Ok(Some(
            end.saturating_sub(self.data.len()) + header + RANGE_COST,
        ))
    }

    /// Stores a fragment that passed [`Datagram::check`].
    fn store(&mut self, frag: &Fragment<'_>, growth: usize) {
        let start = frag.offset;
        let end = start + frag.data.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        if let Some(dst) = self.data.get_mut(start..end) {
            dst.copy_from_slice(frag.data);
        }
        let idx = self.ranges.partition_point(|r| r.0 < start);
        self.ranges.insert(idx, (start, end));
        self.received += frag.data.len();
        if start == 0 {
            self.header.clear();
            self.header.extend_from_slice(frag.header);
            self.nh_pos = frag.nh_pos;
            self.next_header = frag.next_header;
        }
        if !frag.more {
            self.total = Some(end);
        }
        self.cost += growth;
    }

    fn is_complete(&self) -> bool {
        !self.header.is_empty() && self.total == Some(self.received)
    }

    /// Writes the reassembled datagram into `out`.
    fn write(&self, out: &mut PacketBuf) -> Result<(), FragError> {
        let total = self.total.ok_or(FragError::Inconsistent)?;
        let data = self.data.get(..total).ok_or(FragError::Inconsistent)?;
        if self.is_v6 {
            return write_v6(out, &self.header, self.nh_pos, self.next_header, data);
        }
        let len = self.header.len() + total;
        let len16 = u16::try_from(len).map_err(|_| FragError::Oversize)?;
        out.reset(DEFAULT_HEADROOM);
        let buf = out.append(len)?;
        let (h, payload) = buf.split_at_mut(self.header.len());
        h.copy_from_slice(&self.header);
        payload.copy_from_slice(data);
        put16(h, 2, len16);
        // Keep DF, clear MF and the offset.
        let df = be16(h, 6).unwrap_or(0) & 0x4000;
        put16(h, 6, df);
        set_ipv4_checksum(h);
        Ok(())
    }
}

/// Writes an IPv6 datagram from its unfragmentable part `unfrag` (whose byte at `nh_pos`
/// becomes `next_header`) and its reassembled fragmentable part.
fn write_v6(
    out: &mut PacketBuf,
    unfrag: &[u8],
    nh_pos: usize,
    next_header: u8,
    data: &[u8],
) -> Result<(), FragError> {
    let len = unfrag.len() + data.len();
    let payload_len =
        u16::try_from(len - IPV6_HEADER_LEN.min(len)).map_err(|_| FragError::Oversize)?;
    out.reset(DEFAULT_HEADROOM);
    let buf = out.append(len)?;
    let (h, payload) = buf.split_at_mut(unfrag.len());
    h.copy_from_slice(unfrag);
    payload.copy_from_slice(data);
    put16(h, 4, payload_len);
    if let Some(b) = h.get_mut(nh_pos) {
        *b = next_header;
    }
    Ok(())
}

/// Parses `packet` as a fragment; `None` if it is a whole datagram.
fn parse(packet: &[u8]) -> Result<Option<Fragment<'_>>, FragError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_v4(packet),
        Some(6) => parse_v6(packet),
        Some(_) => Err(FragError::BadIpHeader),
        None => Err(FragError::Truncated),
    }
}

fn parse_v4(packet: &[u8]) -> Result<Option<Fragment<'_>>, FragError> {
    let (hlen, total) = ipv4_lengths(packet)?;
    let flags = be16(packet, 6).ok_or(FragError::Truncated)?;
    let more = flags & 0x2000 != 0;
    let offset = usize::from(flags & 0x1fff) * 8;
    if !more && offset == 0 {
        return Ok(None);
    }
    let header = packet.get(..hlen).ok_or(FragError::Truncated)?;
    // Fragments are held for a while and merged: refuse a header the network corrupted.
    if checksum(header) != 0 {
        return Err(FragError::BadIpHeader);
    }
    let addr = |at: usize| -> Result<IpAddr, FragError> {
        match packet.get(at..at + 4) {
            Some(&[a, b, c, d]) => Ok(IpAddr::from([a, b, c, d])),
            _ => Err(FragError::Truncated),
        }
    };
    let key = Key {
        src: addr(12)?,
        dst: addr(16)?,
        protocol: *packet.get(9).ok_or(FragError::Truncated)?,
        id: u32::from(be16(packet, 4).ok_or(FragError::Truncated)?),
    };
    Ok(Some(Fragment {
        key,
        is_v6: false,
        offset,
        more,
        header,
        nh_pos: 9,
        next_header: key.protocol,
        data: packet.get(hlen..total).ok_or(FragError::Truncated)?,
    }))
}

fn parse_v6(packet: &[u8]) -> Result<Option<Fragment<'_>>, FragError> {
    let total = ipv6_len(packet)?;
    let pkt = packet.get(..total).ok_or(FragError::Truncated)?;
    let chain = walk_v6(pkt, IPV6_HEADER_LEN, 6)?;
    if chain.stop_next != proto::FRAGMENT {
        return Ok(None);
    }
    let at = chain.stop_at;
    let fh = pkt
        .get(at..at + FRAG_HEADER_LEN)
        .ok_or(FragError::Truncated)?;
    let addr = |at: usize| -> Result<IpAddr, FragError> {
        let b: [u8; 16] = pkt
            .get(at..at + 16)
            .and_then(|s| s.try_into().ok())
            .ok_or(FragError::Truncated)?;
        Ok(IpAddr::V6(Ipv6Addr::from(b)))
    };
    let (next_header, off_field, id) = match fh {
        &[nh, _, o1, o2, i1, i2, i3, i4] => (
            nh,
            u16::from_be_bytes([o1, o2]),
            u32::from_be_bytes([i1, i2, i3, i4]),
        ),
        _ => return Err(FragError::Truncated),
    };
    Ok(Some(Fragment {
        key: Key {
            src: addr(8)?,
            dst: addr(24)?,
            protocol: 0,
            id,
        },
        is_v6: true,
        offset: usize::from(off_field & 0xfff8),
        more: off_field & 1 != 0,
        header: pkt.get(..at).ok_or(FragError::Truncated)?,
        nh_pos: chain.stop_nh_pos,
        next_header,
        data: pkt
            .get(at + FRAG_HEADER_LEN..)
            .ok_or(FragError::Truncated)?,
    }))
}
