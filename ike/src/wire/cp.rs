//! Configuration payload (RFC 7296 §3.15).

use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::reader::{Reader, len_u16};

iana_enum! {
    /// IANA "IKEv2 Configuration Payload CFG Type".
    pub enum CfgType: u8 {
        Request = 1,
        Reply = 2,
        Set = 3,
        Ack = 4,
    }
}

iana_enum! {
    /// IANA "IKEv2 Configuration Payload Attribute Types" (15-bit values).
    pub enum CfgAttrType: u16 {
        InternalIp4Address = 1,
        InternalIp4Netmask = 2,
        InternalIp4Dns = 3,
        InternalIp4Nbns = 4,
        InternalIp4Dhcp = 6,
        ApplicationVersion = 7,
        InternalIp6Address = 8,
        InternalIp6Dns = 10,
        InternalIp6Dhcp = 12,
        InternalIp4Subnet = 13,
        SupportedAttributes = 14,
        InternalIp6Subnet = 15,
        Mip6HomePrefix = 16,
        InternalIp6Link = 17,
        InternalIp6Prefix = 18,
        HomeAgentAddress = 19,
        PCscfIp4Address = 20,
        PCscfIp6Address = 21,
        FtSupportedAttributes = 22,
        InternalDnsDomain = 25,
        InternalDnssecTa = 26,
    }
}

/// One attribute; the value is empty in a request that asks "give me one".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CfgAttribute {
    pub ty: CfgAttrType,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpPayload {
    pub cfg_type: CfgType,
    pub attributes: Vec<CfgAttribute>,
}

impl CpPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "CP payload");
        let cfg_type = CfgType::from(r.u8()?);
        let _reserved: [u8; 3] = r.array()?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            // The top bit is reserved and ignored on receipt.
            let ty = CfgAttrType::from(r.u16()? & 0x7fff);
            let len = usize::from(r.u16()?);
            attributes.push(CfgAttribute {
                ty,
                value: r.take(len)?.to_vec(),
            });
        }
        Ok(CpPayload {
            cfg_type,
            attributes,
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.cfg_type.into());
        out.extend_from_slice(&[0; 3]);
        for a in &self.attributes {
            let ty = u16::from(a.ty);
            if ty > 0x7fff {
                return Err(EncodeError::InvalidValue("CP attribute type above 0x7fff"));
            }
            out.extend_from_slice(&ty.to_be_bytes());
            out.extend_from_slice(&len_u16(a.value.len(), "CP attribute")?.to_be_bytes());
            out.extend_from_slice(&a.value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip() {
        for cp in [
            CpPayload {
                cfg_type: CfgType::Request,
                attributes: vec![
                    CfgAttribute {
                        ty: CfgAttrType::InternalIp4Address,
                        value: vec![],
                    },
                    CfgAttribute {
                        ty: CfgAttrType::InternalIp4Dns,
                        value: vec![],
                    },
                ],
            },
            CpPayload {
                cfg_type: CfgType::Reply,
                attributes: vec![CfgAttribute {
                    ty: CfgAttrType::InternalIp4Address,
                    value: vec![10, 9, 0, 1],
                }],
            },
        ] {
            let mut out = Vec::new();
            cp.write_body(&mut out).unwrap();
            assert_eq!(CpPayload::parse(&out).unwrap(), cp);
        }
        // RFC 7296 §3.15.1: INTERNAL_IP4_ADDRESS request, type 1, length 0.
        assert_eq!(
            CpPayload::parse(&[1, 0, 0, 0, 0x80, 1, 0, 0])
                .unwrap()
                .attributes[0]
                .ty,
            CfgAttrType::InternalIp4Address
        );
        assert!(CpPayload::parse(&[1, 0, 0, 0, 0, 1, 0, 4, 10]).is_err());
    }
}
