//! Authentication payload (RFC 7296 §3.8).

use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::reader::Reader;

iana_enum! {
    /// IANA "IKEv2 Authentication Method".
    pub enum AuthMethod: u8 {
        RsaSignature = 1,
        SharedKeyMic = 2,
        DssSignature = 3,
        EcdsaP256Sha256 = 9,
        EcdsaP384Sha384 = 10,
        EcdsaP521Sha512 = 11,
        GenericSecurePassword = 12,
        NullAuthentication = 13,
        DigitalSignature = 14,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthPayload {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

impl AuthPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "AUTH payload");
        let method = AuthMethod::from(r.u8()?);
        let _reserved: [u8; 3] = r.array()?;
        Ok(AuthPayload {
            method,
            data: r.rest().to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.method.into());
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = AuthPayload {
            method: AuthMethod::SharedKeyMic,
            data: vec![0xab; 32],
        };
        let mut out = Vec::new();
        a.write_body(&mut out).unwrap();
        assert_eq!(out[..4], [2, 0, 0, 0]);
        assert_eq!(AuthPayload::parse(&out).unwrap(), a);
        assert!(AuthPayload::parse(&out[..3]).is_err());
    }
}
