//! Notify payload and the IANA notify message types (RFC 7296 §3.10).

use super::error::{EncodeError, ParseError};
use super::iana::iana_enum;
use super::reader::{Reader, len_u8};
use super::sa::ProtocolId;

iana_enum! {
    /// IANA "IKEv2 Notify Message Types": errors below 16384, status from 16384 up.
    pub enum NotifyType: u16 {
        UnsupportedCriticalPayload = 1,
        InvalidIkeSpi = 4,
        InvalidMajorVersion = 5,
        InvalidSyntax = 7,
        InvalidMessageId = 9,
        InvalidSpi = 11,
        NoProposalChosen = 14,
        InvalidKePayload = 17,
        AuthenticationFailed = 24,
        SinglePairRequired = 34,
        NoAdditionalSas = 35,
        InternalAddressFailure = 36,
        FailedCpRequired = 37,
        TsUnacceptable = 38,
        InvalidSelectors = 39,
        UnacceptableAddresses = 40,
        UnexpectedNatDetected = 41,
        UseAssignedHoa = 42,
        TemporaryFailure = 43,
        ChildSaNotFound = 44,
        InitialContact = 16384,
        SetWindowSize = 16385,
        AdditionalTsPossible = 16386,
        IpcompSupported = 16387,
        NatDetectionSourceIp = 16388,
        NatDetectionDestinationIp = 16389,
        Cookie = 16390,
        UseTransportMode = 16391,
        HttpCertLookupSupported = 16392,
        RekeySa = 16393,
        EspTfcPaddingNotSupported = 16394,
        NonFirstFragmentsAlso = 16395,
        MobikeSupported = 16396,
        AdditionalIp4Address = 16397,
        AdditionalIp6Address = 16398,
        NoAdditionalAddresses = 16399,
        UpdateSaAddresses = 16400,
        Cookie2 = 16401,
        NoNatsAllowed = 16402,
        AuthLifetime = 16403,
        MultipleAuthSupported = 16404,
        AnotherAuthFollows = 16405,
        RedirectSupported = 16406,
        Redirect = 16407,
        RedirectedFrom = 16408,
        TicketLtOpaque = 16409,
        TicketRequest = 16410,
        TicketAck = 16411,
        TicketNack = 16412,
        TicketOpaque = 16413,
        LinkId = 16414,
        UseWespMode = 16415,
        RohcSupported = 16416,
        EapOnlyAuthentication = 16417,
        ChildlessIkev2Supported = 16418,
        QuickCrashDetection = 16419,
        Ikev2MessageIdSyncSupported = 16420,
        IpsecReplayCounterSyncSupported = 16421,
        Ikev2MessageIdSync = 16422,
        IpsecReplayCounterSync = 16423,
        SecurePasswordMethods = 16424,
        PskPersist = 16425,
        PskConfirm = 16426,
        ErxSupported = 16427,
        IfomCapability = 16428,
        SenderRequestId = 16429,
        Ikev2FragmentationSupported = 16430,
        SignatureHashAlgorithms = 16431,
        CloneIkeSaSupported = 16432,
        CloneIkeSa = 16433,
        Puzzle = 16434,
        UsePpk = 16435,
        PpkIdentity = 16436,
        NoPpkAuth = 16437,
        IntermediateExchangeSupported = 16438,
        Ip4Allowed = 16439,
        Ip6Allowed = 16440,
        AdditionalKeyExchange = 16441,
        UseAggfrag = 16442,
    }
}

impl NotifyType {
    /// Error types (below 16384) end an exchange; status types only inform
    /// (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        u16::from(self) < 16384
    }
}

/// A notification; `protocol` is `None` when the field is 0 (not about a specific SA).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NotifyPayload {
    pub protocol: Option<ProtocolId>,
    pub spi: Vec<u8>,
    pub notify_type: NotifyType,
    pub data: Vec<u8>,
}

impl NotifyPayload {
    /// A notify about no particular SA, the common case.
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        NotifyPayload {
            protocol: None,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "Notify payload");
        let protocol = match r.u8()? {
            0 => None,
            p => Some(ProtocolId::from(p)),
        };
        let spi_size = usize::from(r.u8()?);
        let notify_type = NotifyType::from(r.u16()?);
        let spi = r.take(spi_size)?.to_vec();
        Ok(NotifyPayload {
            protocol,
            spi,
            notify_type,
            data: r.rest().to_vec(),
        })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.protocol.map_or(0, u8::from));
        out.push(len_u8(self.spi.len(), "notify SPI")?);
        out.extend_from_slice(&u16::from(self.notify_type).to_be_bytes());
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_hash_algorithms_bytes() {
        // strongSwan 5.9.8 (interop README): N(SIGNATURE_HASH_ALGORITHMS) 0002 0003 0004 0005.
        let n = NotifyPayload::new(
            NotifyType::SignatureHashAlgorithms,
            vec![0, 2, 0, 3, 0, 4, 0, 5],
        );
        let mut out = Vec::new();
        n.write_body(&mut out).unwrap();
        assert_eq!(hex::encode(&out), "0000402f0002000300040005");
        assert_eq!(NotifyPayload::parse(&out).unwrap(), n);
    }

    #[test]
    fn with_spi_and_unknown_type() {
        let n = NotifyPayload {
            protocol: Some(ProtocolId::Esp),
            spi: vec![1, 2, 3, 4],
            notify_type: NotifyType::from(40000),
            data: vec![],
        };
        assert_eq!(n.notify_type, NotifyType::Unknown(40000));
        let mut out = Vec::new();
        n.write_body(&mut out).unwrap();
        assert_eq!(NotifyPayload::parse(&out).unwrap(), n);
        assert!(NotifyPayload::parse(&out[..6]).is_err());
    }

    #[test]
    fn iana_numbers() {
        assert_eq!(u16::from(NotifyType::NatDetectionSourceIp), 16388);
        assert_eq!(u16::from(NotifyType::Ikev2FragmentationSupported), 16430);
        assert_eq!(NotifyType::from(16406), NotifyType::RedirectSupported);
        assert!(NotifyType::NoProposalChosen.is_error());
        assert!(!NotifyType::Cookie.is_error());
    }
}
