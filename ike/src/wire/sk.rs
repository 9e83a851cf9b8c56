//! Encrypted (SK, RFC 7296 §3.14) and Encrypted Fragment (SKF, RFC 7383 §2.5) payloads.
//!
//! The wire layer keeps the body opaque (IV, ciphertext, padding, ICV): only the crypto
//! layer, which knows the negotiated algorithms, can split and open it.

use super::error::{EncodeError, ParseError};
use super::payload::PayloadType;
use super::reader::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedPayload {
    /// Type of the first payload inside (the SK payload's Next Payload field).
    pub first_inner: PayloadType,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// First inner payload type; RFC 7383 §2.5 sets it only in fragment 1, 0 elsewhere.
    pub first_inner: PayloadType,
    pub fragment_number: u16,
    pub total_fragments: u16,
    pub body: Vec<u8>,
}

/// Octets of the SKF payload between its generic header and the IV.
pub const SKF_FIXED_LEN: usize = 4;

impl EncryptedFragment {
    pub fn parse(first_inner: PayloadType, body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "SKF payload");
        let fragment_number = r.u16()?;
        let total_fragments = r.u16()?;
        check_numbers(fragment_number, total_fragments).map_err(ParseError::InvalidSyntax)?;
        Ok(EncryptedFragment {
            first_inner,
            fragment_number,
            total_fragments,
            body: r.rest().to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_numbers(self.fragment_number, self.total_fragments)
            .map_err(EncodeError::InvalidValue)?;
        out.extend_from_slice(&self.fragment_number.to_be_bytes());
        out.extend_from_slice(&self.total_fragments.to_be_bytes());
        out.extend_from_slice(&self.body);
        Ok(())
    }
}

/// RFC 7383 §2.5: fragments are numbered from 1 and never beyond the total.
fn check_numbers(number: u16, total: u16) -> Result<(), &'static str> {
    if number == 0 || number > total {
        return Err("SKF fragment number outside 1..=total");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_round_trip_and_numbers() {
        let f = EncryptedFragment {
            first_inner: PayloadType::IdI,
            fragment_number: 1,
            total_fragments: 3,
            body: vec![5; 40],
        };
        let mut out = Vec::new();
        f.write_body(&mut out).unwrap();
        assert_eq!(EncryptedFragment::parse(PayloadType::IdI, &out).unwrap(), f);
        assert!(EncryptedFragment::parse(PayloadType::None, &[0, 0, 0, 3]).is_err());
        assert!(EncryptedFragment::parse(PayloadType::None, &[0, 4, 0, 3]).is_err());
        assert!(EncryptedFragment::parse(PayloadType::None, &[0, 4, 0]).is_err());
    }
}
