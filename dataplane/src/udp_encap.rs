//! Demultiplexing of the UDP encapsulation port (RFC 3948 §2): ESP and IKE share port
//! 4500, told apart by the four zero bytes IKE puts where ESP has its (never zero) SPI.

/// Length of the non-ESP marker in front of IKE messages on port 4500.
pub const NON_ESP_MARKER_LEN: usize = 4;

/// What a datagram on the encapsulation port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A single 0xFF byte: NAT-keepalive (RFC 3948 §2.3), to be ignored.
    Keepalive,
    /// Non-ESP marker followed by an IKE message.
    Ike,
    /// An ESP packet (SPI first).
    Esp,
    /// Too short to be either.
    Invalid,
}

/// Classifies a UDP payload received on the encapsulation port.
#[inline]
pub fn classify(payload: &[u8]) -> Kind {
    match payload {
        [0xff] => Kind::Keepalive,
        [0, 0, 0, 0, ..] => Kind::Ike,
        // ESP header (8) at least; a shorter one cannot carry an SPI and sequence number.
        p if p.len() >= 8 => Kind::Esp,
        _ => Kind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux() {
        assert_eq!(classify(&[0xff]), Kind::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Kind::Ike);
        assert_eq!(classify(&[0, 0, 1, 0, 0, 0, 0, 1]), Kind::Esp);
        assert_eq!(classify(&[1, 2, 3]), Kind::Invalid);
        assert_eq!(classify(&[]), Kind::Invalid);
    }
}
