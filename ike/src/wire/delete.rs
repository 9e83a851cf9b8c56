//! Delete payload (RFC 7296 §3.11).

use super::error::{EncodeError, ParseError};
use super::reader::{Reader, len_u16};
use super::sa::ProtocolId;

/// Deletes the IKE SA the message travels in (no SPIs) or child SAs by their 4-byte
/// inbound SPIs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeletePayload {
    Ike,
    Child {
        protocol: ProtocolId,
        spis: Vec<u32>,
    },
}

impl DeletePayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "Delete payload");
        let protocol = ProtocolId::from(r.u8()?);
        let spi_size = r.u8()?;
        let count = r.u16()?;
        let del = match (protocol, spi_size) {
            (ProtocolId::Ike, 0) if count == 0 => DeletePayload::Ike,
            (ProtocolId::Ah | ProtocolId::Esp, 4) => {
                let mut spis = Vec::with_capacity(usize::from(count).min(r.remaining() / 4));
                for _ in 0..count {
                    spis.push(r.u32()?);
                }
                DeletePayload::Child { protocol, spis }
            }
            _ => return Err(ParseError::InvalidSyntax("Delete protocol/SPI size")),
        };
        r.finish()?;
        Ok(del)
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            DeletePayload::Ike => out.extend_from_slice(&[1, 0, 0, 0]),
            DeletePayload::Child { protocol, spis } => {
                if !matches!(protocol, ProtocolId::Ah | ProtocolId::Esp) {
                    return Err(EncodeError::InvalidValue("child Delete must be AH or ESP"));
                }
                out.push((*protocol).into());
                out.push(4);
                out.extend_from_slice(&len_u16(spis.len(), "Delete SPI count")?.to_be_bytes());
                for spi in spis {
                    out.extend_from_slice(&spi.to_be_bytes());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for d in [
            DeletePayload::Ike,
            DeletePayload::Child {
                protocol: ProtocolId::Esp,
                spis: vec![0xdead_beef, 1],
            },
        ] {
            let mut out = Vec::new();
            d.write_body(&mut out).unwrap();
            assert_eq!(DeletePayload::parse(&out).unwrap(), d);
        }
    }

    #[test]
    fn rejects_inconsistent() {
        assert!(DeletePayload::parse(&[1, 8, 0, 0]).is_err());
        assert!(DeletePayload::parse(&[3, 4, 0, 2, 0, 0, 0, 1]).is_err());
        assert!(DeletePayload::parse(&[3, 4, 0, 1, 0, 0, 0, 1, 9]).is_err());
        assert!(DeletePayload::parse(&[9, 4, 0, 0]).is_err());
    }
}
