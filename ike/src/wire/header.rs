//! The fixed IKE header (RFC 7296 §3.1).

use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::payload::PayloadType;
use super::reader::Reader;

/// Size of the IKE header on the wire.
pub const HEADER_LEN: usize = 28;

/// The only major version this crate speaks.
pub const IKE_MAJOR_VERSION: u8 = 2;

iana_enum! {
    /// Exchange types (IANA "IKEv2 Exchange Types").
    pub enum ExchangeType: u8 {
        IkeSaInit = 34,
        IkeAuth = 35,
        CreateChildSa = 36,
        Informational = 37,
        IkeSessionResume = 38,
        IkeIntermediate = 43,
        IkeFollowupKe = 44,
    }
}

/// Header flags; bits other than I, V and R are kept so a message re-serializes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;

    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }

    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    pub fn higher_version(self) -> bool {
        self.0 & Self::VERSION != 0
    }

    /// Flags of a message sent by the original initiator (`initiator`) as a request or a
    /// response.
    pub fn new(initiator: bool, response: bool) -> Self {
        let mut f = 0;
        if initiator {
            f |= Self::INITIATOR;
        }
        if response {
            f |= Self::RESPONSE;
        }
        Flags(f)
    }
}

/// The IKE header without the two fields the serializer derives: the first payload type
/// and the total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    /// Minor version: sent as 0, but any value is accepted (RFC 7296 §3.1).
    pub minor_version: u8,
    pub exchange: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
}

/// Header fields exactly as read, before the payload chain is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    pub header: Header,
    pub first_payload: PayloadType,
    pub length: u32,
}

impl Header {
    /// Parses the header and checks its length field against the datagram.
    ///
    /// The length must equal `buf.len()`: a shorter claim would let trailing garbage ride
    /// along under the ICV of a later check, a longer one is a truncated datagram.
    pub fn parse(buf: &[u8]) -> Result<RawHeader, ParseError> {
        let mut r = Reader::new(buf, "IKE header");
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let first_payload = PayloadType::from(r.u8()?);
        let version = r.u8()?;
        let exchange = ExchangeType::from(r.u8()?);
        let flags = Flags(r.u8()?);
        let message_id = r.u32()?;
        let length = r.u32()?;
        let major = version >> 4;
        if major != IKE_MAJOR_VERSION {
            return Err(ParseError::UnsupportedMajorVersion(major));
        }
        if usize::try_from(length).ok() != Some(buf.len()) {
            return Err(ParseError::BadLength {
                what: "IKE header length",
                len: usize::try_from(length).unwrap_or(usize::MAX),
            });
        }
        Ok(RawHeader {
            header: Header {
                spi_i,
                spi_r,
                minor_version: version & 0x0f,
                exchange,
                flags,
                message_id,
            },
            first_payload,
            length,
        })
    }

    /// Writes the header; `length` is the whole message, header included.
    pub fn write(
        &self,
        first_payload: PayloadType,
        length: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if self.minor_version > 0x0f {
            return Err(EncodeError::InvalidValue("minor version above 15"));
        }
        let length = u32::try_from(length).map_err(|_| EncodeError::TooLong {
            what: "IKE message",
        })?;
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(first_payload.into());
        out.push((IKE_MAJOR_VERSION << 4) | self.minor_version);
        out.push(self.exchange.into());
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        Ok(())
    }
}

/// Overwrites the length field of a serialized header once the message size is known.
pub(crate) fn patch_length(msg: &mut [u8]) -> Result<(), EncodeError> {
    let len = u32::try_from(msg.len()).map_err(|_| EncodeError::TooLong {
        what: "IKE message",
    })?;
    match msg.get_mut(24..HEADER_LEN) {
        Some(slot) => {
            slot.copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        None => Err(EncodeError::InvalidValue("message shorter than IKE header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0,
            minor_version: 0,
            exchange: ExchangeType::IkeSaInit,
            flags: Flags::new(true, false),
            message_id: 0,
        }
    }

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        sample()
            .write(PayloadType::Sa, HEADER_LEN, &mut out)
            .unwrap();
        assert_eq!(out.len(), HEADER_LEN);
        // RFC 7296 §3.1: version byte 0x20, flags 0x08 for an initiator request.
        assert_eq!(out[17], 0x20);
        assert_eq!(out[19], 0x08);
        let raw = Header::parse(&out).unwrap();
        assert_eq!(raw.header, sample());
        assert_eq!(raw.first_payload, PayloadType::Sa);
    }

    #[test]
    fn rejects_wrong_major_and_length() {
        let mut out = Vec::new();
        sample()
            .write(PayloadType::Sa, HEADER_LEN, &mut out)
            .unwrap();
        let mut v1 = out.clone();
        v1[17] = 0x10;
        assert_eq!(
            Header::parse(&v1),
            Err(ParseError::UnsupportedMajorVersion(1))
        );
        assert!(matches!(
            Header::parse(&out[..27]),
            Err(ParseError::Truncated { .. })
        ));
        let mut longer = out.clone();
        longer.push(0);
        assert!(matches!(
            Header::parse(&longer),
            Err(ParseError::BadLength { .. })
        ));
    }
}
