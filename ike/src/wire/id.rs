//! Identification payloads IDi / IDr (RFC 7296 §3.5).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::{EncodeError, ParseError};
use super::reader::Reader;

/// IANA "IKEv2 Identification Payload ID Types".
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const DER_ASN1_GN: u8 = 10;
    pub const KEY_ID: u8 = 11;
}

/// An identity, typed where the type has a fixed shape.
///
/// FQDN and RFC822 are ASCII by definition (internationalised names travel as A-labels),
/// so non-ASCII input is a syntax error rather than a lossy string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(String),
    Rfc822(String),
    DerAsn1Dn(Vec<u8>),
    KeyId(Vec<u8>),
    Other { id_type: u8, data: Vec<u8> },
}

impl Identity {
    pub fn id_type(&self) -> u8 {
        match self {
            Identity::Ipv4(_) => id_type::IPV4_ADDR,
            Identity::Ipv6(_) => id_type::IPV6_ADDR,
            Identity::Fqdn(_) => id_type::FQDN,
            Identity::Rfc822(_) => id_type::RFC822_ADDR,
            Identity::DerAsn1Dn(_) => id_type::DER_ASN1_DN,
            Identity::KeyId(_) => id_type::KEY_ID,
            Identity::Other { id_type, .. } => *id_type,
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "ID payload");
        let ty = r.u8()?;
        let _reserved: [u8; 3] = r.array()?;
        let data = r.rest();
        let id = match ty {
            id_type::IPV4_ADDR => Identity::Ipv4(Ipv4Addr::from(
                <[u8; 4]>::try_from(data).map_err(|_| bad_len(data))?,
            )),
            id_type::IPV6_ADDR => Identity::Ipv6(Ipv6Addr::from(
                <[u8; 16]>::try_from(data).map_err(|_| bad_len(data))?,
            )),
            id_type::FQDN => Identity::Fqdn(ascii(data)?),
            id_type::RFC822_ADDR => Identity::Rfc822(ascii(data)?),
            id_type::DER_ASN1_DN => Identity::DerAsn1Dn(non_empty(data)?),
            id_type::KEY_ID => Identity::KeyId(non_empty(data)?),
            other => Identity::Other {
                id_type: other,
                data: data.to_vec(),
            },
        };
        Ok(id)
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.id_type());
        out.extend_from_slice(&[0; 3]);
        match self {
            Identity::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Identity::Ipv6(a) => out.extend_from_slice(&a.octets()),
            Identity::Fqdn(s) | Identity::Rfc822(s) => {
                if s.is_empty() || !s.is_ascii() {
                    return Err(EncodeError::InvalidValue("FQDN/RFC822 ID not ASCII"));
                }
                out.extend_from_slice(s.as_bytes());
            }
            Identity::DerAsn1Dn(d) | Identity::KeyId(d) => {
                if d.is_empty() {
                    return Err(EncodeError::InvalidValue("empty ID"));
                }
                out.extend_from_slice(d);
            }
            Identity::Other { data, .. } => out.extend_from_slice(data),
        }
        Ok(())
    }

    /// The octets AUTH signs: ID type, three reserved zero octets and the data
    /// (RFC 7296 §2.15, "RestOfInitIDPayload").
    pub fn auth_octets(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.write_body(&mut out)?;
        Ok(out)
    }
}

fn bad_len(data: &[u8]) -> ParseError {
    ParseError::BadLength {
        what: "ID address",
        len: data.len(),
    }
}

fn ascii(data: &[u8]) -> Result<String, ParseError> {
    if data.is_empty() || !data.is_ascii() {
        return Err(ParseError::InvalidSyntax("FQDN/RFC822 ID not ASCII"));
    }
    String::from_utf8(data.to_vec()).map_err(|_| ParseError::InvalidSyntax("ID not ASCII"))
}

fn non_empty(data: &[u8]) -> Result<Vec<u8>, ParseError> {
    if data.is_empty() {
        return Err(ParseError::BadLength {
            what: "ID data",
            len: 0,
        });
    }
    Ok(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(id: Identity) {
        let mut out = Vec::new();
        id.write_body(&mut out).unwrap();
        assert_eq!(Identity::parse(&out).unwrap(), id);
    }

    #[test]
    fn round_trips() {
        rt(Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
        rt(Identity::Ipv6("2001:db8::1".parse().unwrap()));
        rt(Identity::Fqdn("a.test".into()));
        rt(Identity::Rfc822("user@a.test".into()));
        rt(Identity::DerAsn1Dn(vec![0x30, 0x00]));
        rt(Identity::KeyId(vec![1, 2, 3]));
        rt(Identity::Other {
            id_type: 12,
            data: vec![4],
        });
    }

    #[test]
    fn strongswan_fqdn_octets() {
        // The interop README's IDi: FQDN "a.test".
        let octets = Identity::Fqdn("a.test".into()).auth_octets().unwrap();
        assert_eq!(octets, b"\x02\x00\x00\x00a.test");
    }

    #[test]
    fn rejects_malformed() {
        assert!(Identity::parse(&[1, 0, 0, 0, 10, 0, 0]).is_err());
        assert!(Identity::parse(&[5, 0, 0, 0, 1]).is_err());
        assert!(Identity::parse(&[2, 0, 0, 0, 0xff]).is_err());
        assert!(Identity::parse(&[2, 0, 0, 0]).is_err());
        assert!(Identity::parse(&[2, 0]).is_err());
    }
}
