//! Vendor ID payload (RFC 7296 §3.12).

use super::error::{EncodeError, ParseError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorIdPayload {
    pub data: Vec<u8>,
}

impl VendorIdPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        Ok(VendorIdPayload {
            data: body.to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = VendorIdPayload {
            data: b"strongSwan".to_vec(),
        };
        let mut out = Vec::new();
        v.write_body(&mut out).unwrap();
        assert_eq!(VendorIdPayload::parse(&out).unwrap(), v);
    }
}
