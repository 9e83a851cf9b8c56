//! Sealing messages into SK or SKF payloads and reassembling received SKF fragments
//! (RFC 7383).

use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use super::error::IkeError;
use crate::crypto::SkCipher;
use crate::wire::{HEADER_LEN, Header, Payload, PayloadType, parse_chain, write_chain};

/// Octets between an SKF payload's generic header and its IV.
const SKF_FIXED: usize = 4;

/// Seals `payloads` as one message, or as SKF fragments of at most `fragment_size`
/// octets each when `fragment_size` is given (fragmentation negotiated) and the single
/// message would be larger.
pub(crate) fn seal(
    cipher: &SkCipher,
    header: &Header,
    payloads: &[Payload],
    fragment_size: Option<usize>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Vec<Vec<u8>>, IkeError> {
    let mut inner = Vec::new();
    let first = write_chain(payloads, &mut inner)?;
    let whole = HEADER_LEN + cipher.overhead(inner.len()) + inner.len();
    let limit = match fragment_size {
        Some(limit) if whole > limit => limit,
        _ => {
            let mut out = Vec::new();
            cipher.seal_message(header, first, &inner, rng, &mut out)?;
            return Ok(vec![out]);
        }
    };
    // overhead(0) bounds the overhead of any chunk length (padding is at most a block).
    let chunk = limit
        .checked_sub(HEADER_LEN + SKF_FIXED + cipher.overhead(0))
        .filter(|c| *c > 0)
        .ok_or(IkeError::Encode(crate::wire::EncodeError::InvalidValue(
            "fragment size too small",
        )))?;
    let chunks: Vec<&[u8]> = inner.chunks(chunk).collect();
    let total = u16::try_from(chunks.len()).map_err(|_| {
        IkeError::Encode(crate::wire::EncodeError::TooLong {
            what: "fragmented message",
        })
    })?;
    let mut out = Vec::with_capacity(chunks.len());
    for (number, c) in (1u16..).zip(chunks) {
        let mut d = Vec::new();
        cipher.seal_fragment(header, first, (number, total), c, rng, &mut d)?;
        out.push(d);
    }
    Ok(out)
}

/// Fragments of one message being collected. Each fragment is authenticated on its own
/// before it is stored, so a forged fragment cannot poison the buffer.
#[derive(Debug)]
pub(crate) struct Reassembly {
    message_id: u32,
    response: bool,
    first_inner: PayloadType,
    chunks: Vec<Option<Vec<u8>>>,
    started: Instant,
}

/// Limits of [`open`]: how many fragments and how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_fragments: u16,
    pub timeout: Duration,
}

/// Decrypts `data`; returns the header and inner payloads of a complete message, or
/// `None` while fragments are missing.
pub(crate) fn open(
    cipher: &SkCipher,
    data: &[u8],
    buffer: &mut Option<Reassembly>,
    bounds: Bounds,
    now: Instant,
) -> Result<Option<(Header, Vec<Payload>)>, IkeError> {
    let opened = cipher.open(data)?;
    let Some((number, total)) = opened.fragment else {
        let payloads =
            parse_chain(opened.first_inner, &opened.plaintext, false).map_err(IkeError::Parse)?;
        return Ok(Some((opened.header, payloads)));
    };
    if total > bounds.max_fragments {
        return Err(IkeError::Unexpected("too many fragments"));
    }
    let h = opened.header;
    let fresh = match buffer {
        Some(b) => {
            b.message_id != h.message_id
                || b.response != h.flags.response()
                || b.chunks.len() != usize::from(total)
                || now.saturating_duration_since(b.started) > bounds.timeout
        }
        None => true,
    };
    if fresh {
        *buffer = Some(Reassembly {
            message_id: h.message_id,
            response: h.flags.response(),
            first_inner: PayloadType::None,
            chunks: vec![None; usize::from(total)],
            started: now,
        });
    }
    let Some(b) = buffer.as_mut() else {
        return Ok(None);
    };
    if number == 1 {
        b.first_inner = opened.first_inner;
    }
    if let Some(slot) = usize::from(number)
        .checked_sub(1)
        .and_then(|i| b.chunks.get_mut(i))
    {
        slot.get_or_insert(opened.plaintext);
    }
    if b.chunks.iter().any(Option::is_none) {
        return Ok(None);
    }
    let joined: Vec<u8> = b.chunks.iter().flatten().flatten().copied().collect();
    let first = b.first_inner;
    *buffer = None;
    let payloads = parse_chain(first, &joined, false).map_err(IkeError::Parse)?;
    Ok(Some((h, payloads)))
}
