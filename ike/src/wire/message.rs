//! Whole IKE messages: header plus payload chain.

use super::error::{EncodeError, ParseError};
use super::header::{HEADER_LEN, Header, patch_length};
use super::payload::{
    GENERIC_HEADER_LEN, Payload, PayloadType, RawChain, parse_chain, write_chain,
};
use super::sk::SKF_FIXED_LEN;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (without the UDP 4500 non-ESP marker).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let raw = Header::parse(buf)?;
        let body = buf.get(HEADER_LEN..).unwrap_or_default();
        let payloads = parse_chain(raw.first_payload, body, true)?;
        Ok(Message {
            header: raw.header,
            payloads,
        })
    }

    /// Appends the message to `out`.
    pub fn serialize(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        self.header.write(PayloadType::None, HEADER_LEN, out)?;
        let first = write_chain(&self.payloads, out)?;
        let msg = out
            .get_mut(start..)
            .ok_or(EncodeError::InvalidValue("output buffer shrank"))?;
        if let Some(slot) = msg.get_mut(16) {
            *slot = first.into();
        }
        patch_length(msg)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.serialize(&mut out)?;
        Ok(out)
    }

    /// Payloads of a given type, in order.
    pub fn payloads_of(&self, ty: PayloadType) -> impl Iterator<Item = &Payload> {
        self.payloads.iter().filter(move |p| p.payload_type() == ty)
    }
}

/// Where the encrypted payload of a serialized message sits, for the crypto layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptedSpan {
    pub first_inner: PayloadType,
    /// `Some((number, total))` for an SKF payload.
    pub fragment: Option<(u16, u16)>,
    /// Offset of the IV: everything before it is the AEAD associated data
    /// (RFC 5282 §5.1, RFC 7383 §2.5).
    pub iv_offset: usize,
}

/// Finds the SK or SKF payload of a complete message, checking the same framing rules as
/// [`Message::parse`] for the payloads before it.
pub fn locate_encrypted(buf: &[u8]) -> Result<EncryptedSpan, ParseError> {
    let raw = Header::parse(buf)?;
    let body = buf.get(HEADER_LEN..).unwrap_or_default();
    for p in RawChain::new(raw.first_payload, body) {
        let p = p?;
        let start = HEADER_LEN + p.offset + GENERIC_HEADER_LEN;
        match p.ty {
            PayloadType::Sk => {
                return Ok(EncryptedSpan {
                    first_inner: p.next,
                    fragment: None,
                    iv_offset: start,
                });
            }
            PayloadType::Skf => {
                let frag = super::sk::EncryptedFragment::parse(p.next, p.body)?;
                return Ok(EncryptedSpan {
                    first_inner: p.next,
                    fragment: Some((frag.fragment_number, frag.total_fragments)),
                    iv_offset: start + SKF_FIXED_LEN,
                });
            }
            PayloadType::Unknown(ty) if p.critical => {
                return Err(ParseError::UnsupportedCriticalPayload(ty));
            }
            _ => {}
        }
    }
    Err(ParseError::InvalidSyntax("no encrypted payload"))
}
