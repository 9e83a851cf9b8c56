//! Nonce payload (RFC 7296 §3.9).

use super::error::{EncodeError, ParseError};

/// RFC 7296 §3.9: a nonce is between 16 and 256 octets.
pub const NONCE_MIN: usize = 16;
pub const NONCE_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoncePayload {
    pub data: Vec<u8>,
}

impl NoncePayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if !(NONCE_MIN..=NONCE_MAX).contains(&body.len()) {
            return Err(ParseError::BadLength {
                what: "nonce",
                len: body.len(),
            });
        }
        Ok(NoncePayload {
            data: body.to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !(NONCE_MIN..=NONCE_MAX).contains(&self.data.len()) {
            return Err(EncodeError::InvalidValue("nonce length outside 16..=256"));
        }
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_bounds() {
        for len in [16, 32, 256] {
            let n = NoncePayload { data: vec![1; len] };
            let mut out = Vec::new();
            n.write_body(&mut out).unwrap();
            assert_eq!(NoncePayload::parse(&out).unwrap(), n);
        }
        assert!(NoncePayload::parse(&[0; 15]).is_err());
        assert!(NoncePayload::parse(&[0; 257]).is_err());
    }
}
