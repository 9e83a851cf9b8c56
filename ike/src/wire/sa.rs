//! Security Association payload: proposals, transforms and attributes (RFC 7296 §3.3).

use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::reader::{LenPatch, Reader, len_u8};

iana_enum! {
    /// Protocol of an SA, Notify or Delete (IANA "IKEv2 Security Protocol Identifiers").
    /// Serialized as its number, like on the wire.
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(from = "u8", into = "u8")]
    pub enum ProtocolId: u8 {
        Ike = 1,
        Ah = 2,
        Esp = 3,
    }
}

iana_enum! {
    /// Transform types (IANA "Transform Type Values"; 6..=12 are RFC 9370's ADDKE1..7).
    pub enum TransformType: u8 {
        Encr = 1,
        Prf = 2,
        Integ = 3,
        Dh = 4,
        Esn = 5,
    }
}

/// Attribute type of the Key Length attribute (RFC 7296 §3.3.5).
pub const ATTR_KEY_LENGTH: u16 = 14;

const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const AF_BIT: u16 = 0x8000;

/// A transform attribute: TV (Attribute Format bit set, 2-byte value) or TLV.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    Tv { ty: u16, value: u16 },
    Tlv { ty: u16, value: Vec<u8> },
}

impl Attribute {
    pub fn key_length(bits: u16) -> Self {
        Attribute::Tv {
            ty: ATTR_KEY_LENGTH,
            value: bits,
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let raw_ty = r.u16()?;
        let ty = raw_ty & !AF_BIT;
        if raw_ty & AF_BIT != 0 {
            Ok(Attribute::Tv {
                ty,
                value: r.u16()?,
            })
        } else {
            let len = usize::from(r.u16()?);
            Ok(Attribute::Tlv {
                ty,
                value: r.take(len)?.to_vec(),
            })
        }
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Attribute::Tv { ty, value } => {
                check_attr_type(*ty)?;
                out.extend_from_slice(&(ty | AF_BIT).to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
            Attribute::Tlv { ty, value } => {
                check_attr_type(*ty)?;
                let len = u16::try_from(value.len()).map_err(|_| EncodeError::TooLong {
                    what: "transform attribute",
                })?;
                out.extend_from_slice(&ty.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(value);
            }
        }
        Ok(())
    }
}

fn check_attr_type(ty: u16) -> Result<(), EncodeError> {
    if ty & AF_BIT != 0 {
        return Err(EncodeError::InvalidValue("attribute type above 0x7fff"));
    }
    Ok(())
}

/// One transform; `id` is the IANA number within its type's registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transform {
    pub ty: TransformType,
    pub id: u16,
    pub attributes: Vec<Attribute>,
}

impl Transform {
    pub fn new(ty: TransformType, id: u16) -> Self {
        Transform {
            ty,
            id,
            attributes: Vec::new(),
        }
    }

    pub fn with_key_length(ty: TransformType, id: u16, bits: u16) -> Self {
        Transform {
            ty,
            id,
            attributes: vec![Attribute::key_length(bits)],
        }
    }

    /// The Key Length attribute in bits, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv {
                ty: ATTR_KEY_LENGTH,
                value,
            } => Some(*value),
            _ => None,
        })
    }

    fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "transform");
        let ty = TransformType::from(r.u8()?);
        let _reserved = r.u8()?;
        let id = r.u16()?;
        let mut attributes = Vec::new();
        while !r.is_empty() {
            attributes.push(Attribute::parse(&mut r)?);
        }
        Ok(Transform { ty, id, attributes })
    }

    fn write(&self, last: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.push(if last { LAST } else { MORE_TRANSFORMS });
        out.push(0);
        let len = LenPatch::reserve(out, start);
        out.push(self.ty.into());
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
        for a in &self.attributes {
            a.write(out)?;
        }
        len.fill(out, "transform")
    }
}

/// One proposal: a protocol, the proposer's SPI for it and the transforms offered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub number: u8,
    pub protocol: ProtocolId,
    /// Empty in IKE_SA_INIT, 8 bytes when rekeying an IKE SA, 4 bytes for AH/ESP.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

impl Proposal {
    fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "proposal");
        let number = r.u8()?;
        let protocol = ProtocolId::from(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let num_transforms = r.u8()?;
        let spi = r.take(spi_size)?.to_vec();
        let mut transforms = Vec::with_capacity(usize::from(num_transforms));
        for i in 0..num_transforms {
            let last = r.u8()?;
            let _reserved = r.u8()?;
            let len = usize::from(r.u16()?);
            let body_len = len.checked_sub(4).ok_or(ParseError::BadLength {
                what: "transform",
                len,
            })?;
            if body_len < 4 {
                return Err(ParseError::BadLength {
                    what: "transform",
                    len,
                });
            }
            let expected = if i + 1 == num_transforms {
                LAST
            } else {
                MORE_TRANSFORMS
            };
            if last != expected {
                return Err(ParseError::InvalidSyntax(
                    "transform last/more disagrees with count",
                ));
            }
            transforms.push(Transform::parse(r.take(body_len)?)?);
        }
        r.finish()?;
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    fn write(&self, last: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.push(if last { LAST } else { MORE_PROPOSALS });
        out.push(0);
        let len = LenPatch::reserve(out, start);
        out.push(self.number);
        out.push(self.protocol.into());
        out.push(len_u8(self.spi.len(), "proposal SPI")?);
        out.push(len_u8(self.transforms.len(), "transform count")?);
        out.extend_from_slice(&self.spi);
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            t.write(i + 1 == n, out)?;
        }
        len.fill(out, "proposal")
    }
}

/// The SA payload body: at least one proposal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SaPayload {
    pub proposals: Vec<Proposal>,
}

impl SaPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "SA payload");
        let mut proposals = Vec::new();
        loop {
            let last = r.u8()?;
            let _reserved = r.u8()?;
            let len = usize::from(r.u16()?);
            let body_len = len.checked_sub(4).ok_or(ParseError::BadLength {
                what: "proposal",
                len,
            })?;
            proposals.push(Proposal::parse(r.take(body_len)?)?);
            match last {
                LAST => break,
                MORE_PROPOSALS => {}
                _ => return Err(ParseError::InvalidSyntax("proposal last/more value")),
            }
        }
        r.finish()?;
        Ok(SaPayload { proposals })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.proposals.is_empty() {
            return Err(EncodeError::InvalidValue("SA payload without proposals"));
        }
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            p.write(i + 1 == n, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// strongSwan 5.9.8's IKE_SA_INIT proposal (interop README): ENCR 20 keylen 128,
    /// PRF 5, DH 19; 8 (proposal) + 12 + 8 + 8 (transforms) = 36 bytes of body.
    fn strongswan() -> SaPayload {
        SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::Ike,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_length(TransformType::Encr, 20, 128),
                    Transform::new(TransformType::Prf, 5),
                    Transform::new(TransformType::Dh, 19),
                ],
            }],
        }
    }

    #[test]
    fn strongswan_proposal_bytes() {
        let mut out = Vec::new();
        strongswan().write_body(&mut out).unwrap();
        let expected = hex::decode(concat!(
            "00000024", "01010003", // last proposal, len 36, #1 IKE, spi 0, 3 transforms
            "0300000c", "01000014", "800e0080", // ENCR 20, KeyLength 128
            "03000008", "02000005", // PRF 5
            "00000008", "04000013", // DH 19
        ))
        .unwrap();
        assert_eq!(out, expected);
        let parsed = SaPayload::parse(&out).unwrap();
        assert_eq!(parsed, strongswan());
        assert_eq!(parsed.proposals[0].transforms[0].key_length(), Some(128));
    }

    #[test]
    fn esp_proposals_with_spi_round_trip() {
        let sa = SaPayload {
            proposals: vec![
                Proposal {
                    number: 1,
                    protocol: ProtocolId::Esp,
                    spi: vec![0xc0, 0xff, 0xee, 0x01],
                    transforms: vec![
                        Transform::with_key_length(TransformType::Encr, 12, 256),
                        Transform::new(TransformType::Integ, 12),
                        Transform::new(TransformType::Esn, 0),
                    ],
                },
                Proposal {
                    number: 2,
                    protocol: ProtocolId::Esp,
                    spi: vec![0xc0, 0xff, 0xee, 0x01],
                    transforms: vec![Transform {
                        ty: TransformType::Encr,
                        id: 20,
                        attributes: vec![
                            Attribute::key_length(128),
                            Attribute::Tlv {
                                ty: 99,
                                value: vec![1, 2, 3],
                            },
                        ],
                    }],
                },
            ],
        };
        let mut out = Vec::new();
        sa.write_body(&mut out).unwrap();
        assert_eq!(SaPayload::parse(&out).unwrap(), sa);
    }

    #[test]
    fn rejects_bad_structure() {
        let mut out = Vec::new();
        strongswan().write_body(&mut out).unwrap();
        let mut more = out.clone();
        more[0] = 2; // claims another proposal follows
        assert!(SaPayload::parse(&more).is_err());
        let mut bad_last = out.clone();
        bad_last[8] = 0; // first transform claims to be last
        assert_eq!(
            SaPayload::parse(&bad_last),
            Err(ParseError::InvalidSyntax(
                "transform last/more disagrees with count"
            ))
        );
        let mut short_len = out.clone();
        short_len[3] = 3;
        assert!(matches!(
            SaPayload::parse(&short_len),
            Err(ParseError::BadLength { .. })
        ));
        let mut short_transform = out.clone();
        short_transform[11] = 6; // transform length below its 8-byte minimum
        assert!(SaPayload::parse(&short_transform).is_err());
        assert!(SaPayload::parse(&out[..out.len() - 1]).is_err());
        assert!(SaPayload::parse(&[]).is_err());
    }
}
