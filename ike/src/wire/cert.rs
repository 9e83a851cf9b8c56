//! Certificate and Certificate Request payloads (RFC 7296 §3.6, §3.7).

use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::reader::Reader;

iana_enum! {
    /// IANA "IKEv2 Certificate Encodings".
    pub enum CertEncoding: u8 {
        Pkcs7X509 = 1,
        Pgp = 2,
        DnsSignedKey = 3,
        X509Signature = 4,
        Kerberos = 6,
        Crl = 7,
        Arl = 8,
        SpkiCert = 9,
        X509Attribute = 10,
        RawRsaKey = 11,
        HashUrlX509Cert = 12,
        HashUrlX509Bundle = 13,
        OcspContent = 14,
        RawPublicKey = 15,
    }
}

/// CERT: one certificate (or hash and URL) in the given encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertPayload {
    pub encoding: CertEncoding,
    pub data: Vec<u8>,
}

/// CERTREQ: for X.509, `authorities` is a concatenation of 20-byte SHA-1 hashes of
/// trusted CAs' public keys; kept as bytes because other encodings differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertReqPayload {
    pub encoding: CertEncoding,
    pub authorities: Vec<u8>,
}

impl CertPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "CERT payload");
        let encoding = CertEncoding::from(r.u8()?);
        Ok(CertPayload {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.encoding.into());
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

impl CertReqPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "CERTREQ payload");
        let encoding = CertEncoding::from(r.u8()?);
        Ok(CertReqPayload {
            encoding,
            authorities: r.rest().to_vec(),
        })
    }

    /// The 20-byte CA key hashes of an X.509 request; `None` if the length is not a
    /// multiple of 20.
    pub fn sha1_authorities(&self) -> Option<impl Iterator<Item = &[u8]>> {
        if !self.authorities.len().is_multiple_of(20) {
            return None;
        }
        Some(self.authorities.chunks_exact(20))
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.encoding.into());
        out.extend_from_slice(&self.authorities);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = CertPayload {
            encoding: CertEncoding::X509Signature,
            data: vec![0x30, 0x82, 0x01, 0x00],
        };
        let mut out = Vec::new();
        c.write_body(&mut out).unwrap();
        assert_eq!(CertPayload::parse(&out).unwrap(), c);
        assert!(CertPayload::parse(&[]).is_err());

        let cr = CertReqPayload {
            encoding: CertEncoding::X509Signature,
            authorities: vec![9; 40],
        };
        let mut out = Vec::new();
        cr.write_body(&mut out).unwrap();
        let back = CertReqPayload::parse(&out).unwrap();
        assert_eq!(back, cr);
        assert_eq!(back.sha1_authorities().map(Iterator::count), Some(2));
    }
}
