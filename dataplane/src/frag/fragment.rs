//! Splitting a packet into fragments that fit an MTU.

use super::{
    FRAG_HEADER_LEN, FragError, IPV6_MIN_MTU, be16, ipv4_lengths, ipv6_len, put16,
    set_ipv4_checksum, walk_v6,
};
use crate::ip::{IPV4_HEADER_LEN, IPV6_HEADER_LEN};
use crate::selector::proto;

/// IPv4 flags/offset field bits.
const IPV4_DF: u16 = 0x4000;
const IPV4_MF: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// Largest IPv4 options area (15 words minus the fixed header).
const IPV4_MAX_OPTIONS: usize = 40;

/// Fragments packets into one reusable scratch buffer.
///
/// The identification counter is the fragmenter's own: IPv4 datagrams that are not yet
/// fragments get a fresh 16-bit identification (the engine builds the outer header and may
/// leave it 0, which would make fragments of different datagrams collide at the
/// reassembler), and IPv6 fragments a 32-bit one. Seed it with a random value (RFC 7739)
/// since this crate has no RNG of its own.
#[derive(Debug, Clone)]
pub struct Fragmenter {
    scratch: Vec<u8>,
    next_id: u32,
}

impl Default for Fragmenter {
    /// A fragmenter starting at identification 0; prefer [`Fragmenter::new`] with a random
    /// seed outside tests.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Fragmenter {
    /// A fragmenter whose first identification is `first_id`.
    pub fn new(first_id: u32) -> Self {
        Self {
            scratch: Vec::with_capacity(IPV6_MIN_MTU),
            next_id: first_id,
        }
    }

    /// Calls `emit` once per fragment of `packet` (an IPv4 or IPv6 packet), each at most
    /// `mtu` bytes, and returns how many there were. A packet that fits is emitted as is
    /// (count 1), so callers can pass every packet through here. Bytes beyond the IP
    /// length are ignored. Nothing is allocated once the scratch buffer has reached `mtu`.
    pub fn fragment(
        &mut self,
        packet: &[u8],
        mtu: usize,
        emit: impl FnMut(&[u8]),
    ) -> Result<usize, FragError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => self.fragment_v4(packet, mtu, emit),
            Some(6) => self.fragment_v6(packet, mtu, emit),
            Some(_) => Err(FragError::BadIpHeader),
            None => Err(FragError::Truncated),
        }
    }

    fn fragment_v4(
        &mut self,
        packet: &[u8],
        mtu: usize,
        mut emit: impl FnMut(&[u8]),
    ) -> Result<usize, FragError> {
        let (hlen, total) = ipv4_lengths(packet)?;
        let pkt = packet.get(..total).ok_or(FragError::Truncated)?;
        if total <= mtu {
            emit(pkt);
            return Ok(1);
        }
        let flags = be16(pkt, 6).ok_or(FragError::Truncated)?;
        if flags & IPV4_DF != 0 {
            return Err(FragError::DontFragment { mtu });
        }
        let orig_more = flags & IPV4_MF != 0;
        let base = usize::from(flags & IPV4_OFFSET_MASK) * 8;

        // Non-first fragments carry only the options whose copied flag is set (RFC 791).
        let options = pkt.get(IPV4_HEADER_LEN..hlen).ok_or(FragError::Truncated)?;
        let mut copied = [0u8; IPV4_MAX_OPTIONS];
        let mut copied_len = 0;
        let mut i = 0;
        while let Some(&kind) = options.get(i) {
            match kind {
                0 => break,
                1 => i += 1,
                _ => {
                    let len = usize::from(*options.get(i + 1).ok_or(FragError::BadIpHeader)?);
                    let opt = options
                        .get(i..i + len)
                        .filter(|_| len >= 2)
                        .ok_or(FragError::BadIpHeader)?;
                    if kind & 0x80 != 0 {
                        let dst = copied
                            .get_mut(copied_len..copied_len + len)
                            .ok_or(FragError::BadIpHeader)?;
                        dst.copy_from_slice(opt);
                        copied_len += len;
                    }
                    i += len;
                }
            }
        }
        // Pad with end-of-options bytes (already zero) to a whole number of words.
        let later_hlen = IPV4_HEADER_LEN + copied_len.div_ceil(4) * 4;

        let first_chunk = mtu.saturating_sub(hlen) & !7;
        let later_chunk = mtu.saturating_sub(later_hlen) & !7;
        if first_chunk < 8 || later_chunk < 8 {
            return Err(FragError::MtuTooSmall {
                mtu,
                min: hlen.max(later_hlen) + 8,
            });
        }
        let payload = pkt.get(hlen..).ok_or(FragError::Truncated)?;
        if (base + payload.len()) / 8 > usize::from(IPV4_OFFSET_MASK) {
            return Err(FragError::BadIpHeader);
        }
        let id = if orig_more || base != 0 {
            be16(pkt, 4).ok_or(FragError::Truncated)?
        } else {
            // Only the low 16 bits fit the IPv4 field; wrapping is intended.
            let id = self.next_id as u16;
            self.next_id = self.next_id.wrapping_add(1);
            id
        };
        let fixed = pkt.get(..IPV4_HEADER_LEN).ok_or(FragError::Truncated)?;
        let first_header = pkt.get(..hlen).ok_or(FragError::Truncated)?;

        let mut pos = 0;
        let mut count = 0;
        loop {
            let first = pos == 0;
            let (chunk, hl) = if first {
                (first_chunk, hlen)
            } else {
                (later_chunk, later_hlen)
            };
            let n = chunk.min(payload.len() - pos);
            let last = pos + n == payload.len();
            let data = payload.get(pos..pos + n).ok_or(FragError::Truncated)?;

            self.scratch.clear();
            if first {
                self.scratch.extend_from_slice(first_header);
            } else {
                self.scratch.extend_from_slice(fixed);
                self.scratch
                    .extend_from_slice(copied.get(..hl - IPV4_HEADER_LEN).unwrap_or(&[]));
                if let Some(b) = self.scratch.first_mut() {
                    // hl <= 60, so hl / 4 fits the 4-bit IHL field.
                    *b = 0x40 | (hl / 4) as u8;
                }
            }
            let more = if last { orig_more } else { true };
            // Offsets were checked against the 13-bit field above.
            let off = ((base + pos) / 8) as u16;
            let h = &mut self.scratch[..];
            // hl + n <= mtu and the original total length fit in 16 bits.
            put16(h, 2, (hl + n) as u16);
            put16(h, 4, id);
            put16(h, 6, off | if more { IPV4_MF } else { 0 });
            set_ipv4_checksum(h);
            self.scratch.extend_from_slice(data);
            emit(&self.scratch);
            count += 1;
            pos += n;
            if last {
                return Ok(count);
            }
        }
    }

    fn fragment_v6(
        &mut self,
        packet: &[u8],
        mtu: usize,
        mut emit: impl FnMut(&[u8]),
    ) -> Result<usize, FragError> {
        let total = ipv6_len(packet)?;
        let pkt = packet.get(..total).ok_or(FragError::Truncated)?;
        if total <= mtu {
            emit(pkt);
            return Ok(1);
        }
        if mtu < IPV6_MIN_MTU {
            return Err(FragError::MtuTooSmall {
                mtu,
                min: IPV6_MIN_MTU,
            });
        }
        let chain = walk_v6(pkt, IPV6_HEADER_LEN, 6)?;
        if chain.stop_next == proto::FRAGMENT {
            return Err(FragError::AlreadyFragmented);
        }
        let unfrag = pkt.get(..chain.unfrag_end).ok_or(FragError::Truncated)?;
        let body = pkt.get(chain.unfrag_end..).ok_or(FragError::Truncated)?;
        let next_header = *pkt.get(chain.unfrag_nh_pos).ok_or(FragError::Truncated)?;
        let chunk = mtu.saturating_sub(unfrag.len() + FRAG_HEADER_LEN) & !7;
        if chunk < 8 {
            return Err(FragError::MtuTooSmall {
                mtu,
                min: unfrag.len() + FRAG_HEADER_LEN + 8,
            });
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);

        let mut pos = 0;
        let mut count = 0;
        loop {
            let n = chunk.min(body.len() - pos);
            let last = pos + n == body.len();
            let data = body.get(pos..pos + n).ok_or(FragError::Truncated)?;
            self.scratch.clear();
            self.scratch.extend_from_slice(unfrag);
            if let Some(b) = self.scratch.get_mut(chain.unfrag_nh_pos) {
                *b = proto::FRAGMENT;
            }
            // The fragment is at most mtu bytes and its parts came from a 16-bit length.
            let payload_len = (unfrag.len() - IPV6_HEADER_LEN + FRAG_HEADER_LEN + n) as u16;
            put16(&mut self.scratch, 4, payload_len);
            // pos is a multiple of 8 below 65536, so it is the offset field with flag bits 0.
            let off = pos as u16 | u16::from(!last);
            self.scratch.extend_from_slice(&[next_header, 0]);
            self.scratch.extend_from_slice(&off.to_be_bytes());
            self.scratch.extend_from_slice(&id.to_be_bytes());
            self.scratch.extend_from_slice(data);
            emit(&self.scratch);
            count += 1;
            pos += n;
            if last {
                return Ok(count);
            }
        }
    }
}
