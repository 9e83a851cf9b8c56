//! Key Exchange payload (RFC 7296 §3.4).

use super::error::{EncodeError, ParseError};
use super::reader::Reader;

/// The sender's public value for `group` (a Transform Type 4 id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KePayload {
    pub group: u16,
    pub data: Vec<u8>,
}

impl KePayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "KE payload");
        let group = r.u16()?;
        let _reserved = r.u16()?;
        let data = r.rest();
        if data.is_empty() {
            return Err(ParseError::BadLength {
                what: "KE payload",
                len: body.len(),
            });
        }
        Ok(KePayload {
            group,
            data: data.to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.group.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_empty() {
        let ke = KePayload {
            group: 19,
            data: vec![7; 64],
        };
        let mut out = Vec::new();
        ke.write_body(&mut out).unwrap();
        assert_eq!(out.len(), 68);
        assert_eq!(KePayload::parse(&out).unwrap(), ke);
        assert!(KePayload::parse(&out[..4]).is_err());
        assert!(KePayload::parse(&out[..3]).is_err());
    }
}
