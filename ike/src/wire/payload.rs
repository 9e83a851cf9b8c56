//! Payload types, the generic payload header (RFC 7296 §3.2) and payload chains.

use super::auth::AuthPayload;
use super::cert::{CertPayload, CertReqPayload};
use super::cp::CpPayload;
use super::delete::DeletePayload;
use super::eap::EapPayload;
use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::id::Identity;
use super::ke::KePayload;
use super::nonce::NoncePayload;
use super::notify::NotifyPayload;
use super::reader::{LenPatch, Reader};
use super::sa::SaPayload;
use super::sk::{EncryptedFragment, EncryptedPayload};
use super::ts::TsPayload;
use super::vendor::VendorIdPayload;

iana_enum! {
    /// IANA "IKEv2 Payload Types"; `None` (0) ends a chain.
    pub enum PayloadType: u8 {
        None = 0,
        Sa = 33,
        Ke = 34,
        IdI = 35,
        IdR = 36,
        Cert = 37,
        CertReq = 38,
        Auth = 39,
        Nonce = 40,
        Notify = 41,
        Delete = 42,
        VendorId = 43,
        TsI = 44,
        TsR = 45,
        Sk = 46,
        Cp = 47,
        Eap = 48,
        Skf = 53,
    }
}

/// Size of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;

const CRITICAL: u8 = 0x80;

/// A payload of a type this crate does not know, sent without the critical bit: the
/// receiver skips it (RFC 7296 §2.5) but keeps it so the message re-serializes unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownPayload {
    pub ty: u8,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    Sa(SaPayload),
    Ke(KePayload),
    IdI(Identity),
    IdR(Identity),
    Cert(CertPayload),
    CertReq(CertReqPayload),
    Auth(AuthPayload),
    Nonce(NoncePayload),
    Notify(NotifyPayload),
    Delete(DeletePayload),
    VendorId(VendorIdPayload),
    TsI(TsPayload),
    TsR(TsPayload),
    Sk(EncryptedPayload),
    Skf(EncryptedFragment),
    Cp(CpPayload),
    Eap(EapPayload),
    Unknown(UnknownPayload),
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::Sa,
            Payload::Ke(_) => PayloadType::Ke,
            Payload::IdI(_) => PayloadType::IdI,
            Payload::IdR(_) => PayloadType::IdR,
            Payload::Cert(_) => PayloadType::Cert,
            Payload::CertReq(_) => PayloadType::CertReq,
            Payload::Auth(_) => PayloadType::Auth,
            Payload::Nonce(_) => PayloadType::Nonce,
            Payload::Notify(_) => PayloadType::Notify,
            Payload::Delete(_) => PayloadType::Delete,
            Payload::VendorId(_) => PayloadType::VendorId,
            Payload::TsI(_) => PayloadType::TsI,
            Payload::TsR(_) => PayloadType::TsR,
            Payload::Sk(_) => PayloadType::Sk,
            Payload::Skf(_) => PayloadType::Skf,
            Payload::Cp(_) => PayloadType::Cp,
            Payload::Eap(_) => PayloadType::Eap,
            Payload::Unknown(u) => PayloadType::from(u.ty),
        }
    }

    fn is_encrypted(&self) -> bool {
        matches!(self, Payload::Sk(_) | Payload::Skf(_))
    }

    /// The Next Payload field this payload carries when it ends the chain: encrypted
    /// payloads point at their first inner payload instead of 0.
    fn terminal_next(&self) -> PayloadType {
        match self {
            Payload::Sk(sk) => sk.first_inner,
            Payload::Skf(skf) => skf.first_inner,
            _ => PayloadType::None,
        }
    }

    fn parse_body(ty: PayloadType, next: PayloadType, body: &[u8]) -> Result<Self, ParseError> {
        Ok(match ty {
            PayloadType::Sa => Payload::Sa(SaPayload::parse(body)?),
            PayloadType::Ke => Payload::Ke(KePayload::parse(body)?),
            PayloadType::IdI => Payload::IdI(Identity::parse(body)?),
            PayloadType::IdR => Payload::IdR(Identity::parse(body)?),
            PayloadType::Cert => Payload::Cert(CertPayload::parse(body)?),
            PayloadType::CertReq => Payload::CertReq(CertReqPayload::parse(body)?),
            PayloadType::Auth => Payload::Auth(AuthPayload::parse(body)?),
            PayloadType::Nonce => Payload::Nonce(NoncePayload::parse(body)?),
            PayloadType::Notify => Payload::Notify(NotifyPayload::parse(body)?),
            PayloadType::Delete => Payload::Delete(DeletePayload::parse(body)?),
            PayloadType::VendorId => Payload::VendorId(VendorIdPayload::parse(body)?),
            PayloadType::TsI => Payload::TsI(TsPayload::parse(body)?),
            PayloadType::TsR => Payload::TsR(TsPayload::parse(body)?),
            PayloadType::Sk => Payload::Sk(EncryptedPayload {
                first_inner: next,
                body: body.to_vec(),
            }),
            PayloadType::Skf => Payload::Skf(EncryptedFragment::parse(next, body)?),
            PayloadType::Cp => Payload::Cp(CpPayload::parse(body)?),
            PayloadType::Eap => Payload::Eap(EapPayload::parse(body)?),
            PayloadType::None => {
                return Err(ParseError::InvalidSyntax("payload of type 0"));
            }
            PayloadType::Unknown(ty) => Payload::Unknown(UnknownPayload {
                ty,
                body: body.to_vec(),
            }),
        })
    }

    fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Payload::Sa(p) => p.write_body(out),
            Payload::Ke(p) => p.write_body(out),
            Payload::IdI(p) | Payload::IdR(p) => p.write_body(out),
            Payload::Cert(p) => p.write_body(out),
            Payload::CertReq(p) => p.write_body(out),
            Payload::Auth(p) => p.write_body(out),
            Payload::Nonce(p) => p.write_body(out),
            Payload::Notify(p) => p.write_body(out),
            Payload::Delete(p) => p.write_body(out),
            Payload::VendorId(p) => p.write_body(out),
            Payload::TsI(p) | Payload::TsR(p) => p.write_body(out),
            Payload::Sk(p) => {
                out.extend_from_slice(&p.body);
                Ok(())
            }
            Payload::Skf(p) => p.write_body(out),
            Payload::Cp(p) => p.write_body(out),
            Payload::Eap(p) => p.write_body(out),
            Payload::Unknown(p) => {
                if PayloadType::from(p.ty) != PayloadType::Unknown(p.ty) {
                    return Err(EncodeError::InvalidValue("unknown payload with known type"));
                }
                out.extend_from_slice(&p.body);
                Ok(())
            }
        }
    }
}

/// One payload as it sits in a chain, before its body is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPayload<'a> {
    pub ty: PayloadType,
    pub next: PayloadType,
    pub critical: bool,
    /// Offset of the generic header from the start of the chain's buffer.
    pub offset: usize,
    pub body: &'a [u8],
}

/// Walks a chain of generic payload headers without interpreting bodies.
///
/// Stops after an encrypted payload (SK/SKF): its Next Payload names the first payload
/// *inside* it, and RFC 7296 §3.14 requires it to be last, so anything after it is an
/// error.
#[derive(Debug)]
pub struct RawChain<'a> {
    buf: &'a [u8],
    pos: usize,
    next: PayloadType,
    done: bool,
}

impl<'a> RawChain<'a> {
    pub fn new(first: PayloadType, buf: &'a [u8]) -> Self {
        RawChain {
            buf,
            pos: 0,
            next: first,
            done: false,
        }
    }

    fn step(&mut self) -> Result<Option<RawPayload<'a>>, ParseError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if self.next == PayloadType::None {
            self.done = true;
            if !rest.is_empty() {
                return Err(ParseError::BadLength {
                    what: "bytes after last payload",
                    len: rest.len(),
                });
            }
            return Ok(None);
        }
        let mut r = Reader::new(rest, "generic payload header");
        let next = PayloadType::from(r.u8()?);
        let critical = r.u8()? & CRITICAL != 0;
        let len = usize::from(r.u16()?);
        let body_len = len
            .checked_sub(GENERIC_HEADER_LEN)
            .ok_or(ParseError::BadLength {
                what: "payload length",
                len,
            })?;
        let body = Reader::new(r.rest(), "payload body").take(body_len)?;
        let raw = RawPayload {
            ty: self.next,
            next,
            critical,
            offset: self.pos,
            body,
        };
        self.pos += len;
        if matches!(raw.ty, PayloadType::Sk | PayloadType::Skf) {
            self.done = true;
            if self.pos != self.buf.len() {
                return Err(ParseError::InvalidSyntax("encrypted payload is not last"));
            }
        } else {
            self.next = next;
        }
        Ok(Some(raw))
    }
}

impl<'a> Iterator for RawChain<'a> {
    type Item = Result<RawPayload<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses a chain of payloads starting with type `first`.
///
/// Used for the clear chain of a message and for the decrypted contents of an SK
/// payload; `allow_encrypted` is false for the latter, since SK never nests.
pub fn parse_chain(
    first: PayloadType,
    buf: &[u8],
    allow_encrypted: bool,
) -> Result<Vec<Payload>, ParseError> {
    let mut out = Vec::new();
    for raw in RawChain::new(first, buf) {
        let raw = raw?;
        if let PayloadType::Unknown(ty) = raw.ty
            && raw.critical
        {
            return Err(ParseError::UnsupportedCriticalPayload(ty));
        }
        if !allow_encrypted && matches!(raw.ty, PayloadType::Sk | PayloadType::Skf) {
            return Err(ParseError::InvalidSyntax("nested encrypted payload"));
        }
        out.push(Payload::parse_body(raw.ty, raw.next, raw.body)?);
    }
    Ok(out)
}

/// Serializes a chain; returns the type of its first payload for the preceding header.
pub fn write_chain(payloads: &[Payload], out: &mut Vec<u8>) -> Result<PayloadType, EncodeError> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match payloads.get(i + 1) {
            Some(following) => {
                if p.is_encrypted() {
                    return Err(EncodeError::InvalidValue("encrypted payload is not last"));
                }
                following.payload_type()
            }
            None => p.terminal_next(),
        };
        let start = out.len();
        out.push(next.into());
        out.push(0);
        let len = LenPatch::reserve(out, start);
        p.write_body(out)?;
        len.fill(out, "payload")?;
    }
    Ok(payloads
        .first()
        .map_or(PayloadType::None, Payload::payload_type))
}
