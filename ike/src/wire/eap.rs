//! EAP payload (RFC 7296 §3.16): parsed so the state machine can refuse EAP cleanly
//! instead of failing on an unknown payload.

use super::error::{EncodeError, ParseError};
use super::reader::{Reader, len_u16};

pub const EAP_REQUEST: u8 = 1;
pub const EAP_RESPONSE: u8 = 2;
pub const EAP_SUCCESS: u8 = 3;
pub const EAP_FAILURE: u8 = 4;

/// One EAP packet (RFC 3748 §4); `data` is the Type and Type-Data of a request or
/// response, empty for success and failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EapPayload {
    pub code: u8,
    pub identifier: u8,
    pub data: Vec<u8>,
}

impl EapPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "EAP payload");
        let code = r.u8()?;
        let identifier = r.u8()?;
        let len = usize::from(r.u16()?);
        if len != body.len() {
            return Err(ParseError::BadLength {
                what: "EAP message",
                len,
            });
        }
        let data = r.rest().to_vec();
        match code {
            EAP_REQUEST | EAP_RESPONSE if data.is_empty() => Err(ParseError::InvalidSyntax(
                "EAP request/response without type",
            )),
            EAP_SUCCESS | EAP_FAILURE if !data.is_empty() => {
                Err(ParseError::InvalidSyntax("EAP success/failure with data"))
            }
            EAP_REQUEST..=EAP_FAILURE => Ok(EapPayload {
                code,
                identifier,
                data,
            }),
            _ => Err(ParseError::InvalidSyntax("EAP code")),
        }
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.code);
        out.push(self.identifier);
        out.extend_from_slice(&len_u16(self.data.len() + 4, "EAP message")?.to_be_bytes());
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_request_and_success() {
        // RFC 3748 §5.1: Identity request, type 1.
        let req = EapPayload {
            code: EAP_REQUEST,
            identifier: 7,
            data: vec![1],
        };
        let mut out = Vec::new();
        req.write_body(&mut out).unwrap();
        assert_eq!(out, [1, 7, 0, 5, 1]);
        assert_eq!(EapPayload::parse(&out).unwrap(), req);
        assert!(EapPayload::parse(&[3, 7, 0, 4]).is_ok());
        assert!(EapPayload::parse(&[3, 7, 0, 5, 1]).is_err());
        assert!(EapPayload::parse(&[1, 7, 0, 4]).is_err());
        assert!(EapPayload::parse(&[1, 7, 0, 9, 1]).is_err());
        assert!(EapPayload::parse(&[9, 7, 0, 4]).is_err());
    }
}
