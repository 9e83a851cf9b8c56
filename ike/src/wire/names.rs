//! Transforms, proposals and traffic selectors as an operator reads them, for errors
//! that say what a peer proposed against what is configured (NO_PROPOSAL_CHOSEN,
//! TS_UNACCEPTABLE). Transforms are named after the IANA "IKEv2 Parameters" registries
//! (RFC 7296 §3.3.2) without their `ENCR_`/`AUTH_` prefixes, key length appended, as
//! strongSwan logs them: `AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384`.

use std::fmt;
use std::net::IpAddr;

use super::sa::{Proposal, ProtocolId, Transform, TransformType};
use super::ts::{AddrRange, IpSelector};

fn encr_name(id: u16) -> Option<&'static str> {
    Some(match id {
        2 => "DES",
        3 => "3DES",
        11 => "NULL",
        12 => "AES_CBC",
        13 => "AES_CTR",
        14 => "AES_CCM_8",
        15 => "AES_CCM_12",
        16 => "AES_CCM_16",
        18 => "AES_GCM_8",
        19 => "AES_GCM_12",
        20 => "AES_GCM_16",
        21 => "NULL_AUTH_AES_GMAC",
        23 => "CAMELLIA_CBC",
        28 => "CHACHA20_POLY1305",
        _ => return None,
    })
}

fn prf_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "PRF_HMAC_MD5",
        2 => "PRF_HMAC_SHA1",
        4 => "PRF_AES128_XCBC",
        5 => "PRF_HMAC_SHA2_256",
        6 => "PRF_HMAC_SHA2_384",
        7 => "PRF_HMAC_SHA2_512",
        8 => "PRF_AES128_CMAC",
        _ => return None,
    })
}

fn integ_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0 => "NONE",
        1 => "HMAC_MD5_96",
        2 => "HMAC_SHA1_96",
        5 => "AES_XCBC_96",
        8 => "AES_CMAC_96",
        12 => "HMAC_SHA2_256_128",
        13 => "HMAC_SHA2_384_192",
        14 => "HMAC_SHA2_512_256",
        _ => return None,
    })
}

fn dh_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0 => "NONE",
        1 => "MODP_768",
        2 => "MODP_1024",
        5 => "MODP_1536",
        14 => "MODP_2048",
        15 => "MODP_3072",
        16 => "MODP_4096",
        17 => "MODP_6144",
        18 => "MODP_8192",
        19 => "ECP_256",
        20 => "ECP_384",
        21 => "ECP_521",
        22 => "MODP_1024_160",
        23 => "MODP_2048_224",
        24 => "MODP_2048_256",
        25 => "ECP_192",
        26 => "ECP_224",
        27 => "ECP_224_BP",
        28 => "ECP_256_BP",
        29 => "ECP_384_BP",
        30 => "ECP_512_BP",
        31 => "CURVE_25519",
        32 => "CURVE_448",
        _ => return None,
    })
}

fn esn_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0 => "NO_EXT_SEQ",
        1 => "EXT_SEQ",
        _ => return None,
    })
}

impl fmt::Display for Transform {
    /// The IANA name, or the type and number of one this table does not know
    /// (`ENCR_1031`): a peer may propose anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, prefix) = match self.ty {
            TransformType::Encr => (encr_name(self.id), "ENCR"),
            TransformType::Prf => (prf_name(self.id), "PRF"),
            TransformType::Integ => (integ_name(self.id), "AUTH"),
            TransformType::Dh => (dh_name(self.id), "DH"),
            TransformType::Esn => (esn_name(self.id), "ESN"),
            TransformType::Unknown(ty) => return write!(f, "TRANSFORM_{ty}_{}", self.id),
        };
        match name {
            Some(n) => f.write_str(n)?,
            None => write!(f, "{prefix}_{}", self.id)?,
        }
        match self.key_length() {
            Some(bits) => write!(f, "_{bits}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Proposal {
    /// The transforms joined by `/`, in the order the proposal lists them; an AH
    /// proposal starts with `AH:`, since its integrity-only transform list would
    /// otherwise read like a malformed ESP one in a NO_PROPOSAL_CHOSEN report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.protocol == ProtocolId::Ah {
            f.write_str("AH:")?;
        }
        for (i, t) in self.transforms.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            t.fmt(f)?;
        }
        Ok(())
    }
}

/// The prefix length if `start..=end` is exactly one CIDR block of a `bits`-bit family.
fn prefix_len(start: u128, end: u128, bits: u32) -> Option<u32> {
    let size = end.checked_sub(start)?.checked_add(1);
    match size {
        // The whole IPv6 space.
        None => Some(0),
        Some(n) if n.is_power_of_two() && start.is_multiple_of(n) => {
            Some(bits - n.trailing_zeros())
        }
        Some(_) => None,
    }
}

impl fmt::Display for IpSelector {
    /// `10.1.0.0/16`, or `10.1.0.5-10.1.0.9` for a range that is not one block, then
    /// `[6/80-443]` when protocol or ports are narrowed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end, s, e, bits) = match self.range {
            AddrRange::V4 { start, end } => (
                u128::from(u32::from(start)),
                u128::from(u32::from(end)),
                IpAddr::V4(start),
                IpAddr::V4(end),
                32,
            ),
            AddrRange::V6 { start, end } => (
                u128::from(start),
                u128::from(end),
                IpAddr::V6(start),
                IpAddr::V6(end),
                128,
            ),
        };
        match prefix_len(start, end, bits) {
            Some(len) => write!(f, "{s}/{len}")?,
            None => write!(f, "{s}-{e}")?,
        }
        let all_ports = self.start_port == 0 && self.end_port == u16::MAX;
        if self.protocol != 0 || !all_ports {
            write!(f, "[{}", self.protocol)?;
            if self.start_port == self.end_port {
                write!(f, "/{}", self.start_port)?;
            } else if !all_ports {
                write!(f, "/{}-{}", self.start_port, self.end_port)?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::wire::ProtocolId;

    #[test]
    fn proposals_read_like_strongswan_logs() {
        let p = Proposal {
            number: 1,
            protocol: ProtocolId::Ike,
            spi: vec![],
            transforms: vec![
                Transform::with_key_length(TransformType::Encr, 20, 256),
                Transform::new(TransformType::Prf, 6),
                Transform::new(TransformType::Dh, 20),
            ],
        };
        assert_eq!(p.to_string(), "AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384");
        let esp = Proposal {
            transforms: vec![
                Transform::with_key_length(TransformType::Encr, 12, 128),
                Transform::new(TransformType::Integ, 12),
                Transform::new(TransformType::Esn, 0),
            ],
            ..p
        };
        assert_eq!(esp.to_string(), "AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ");
        // Numbers nobody registered still say what they are.
        assert_eq!(
            Transform::new(TransformType::Encr, 1031).to_string(),
            "ENCR_1031"
        );
        assert_eq!(
            Transform::new(TransformType::Unknown(9), 2).to_string(),
            "TRANSFORM_9_2"
        );
    }

    #[test]
    fn selectors_as_blocks_or_ranges() {
        let v4 = |a: [u8; 4], b: [u8; 4]| {
            IpSelector::any(AddrRange::V4 {
                start: Ipv4Addr::from(a),
                end: Ipv4Addr::from(b),
            })
        };
        assert_eq!(
            v4([10, 1, 0, 0], [10, 1, 255, 255]).to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(
            v4([0, 0, 0, 0], [255, 255, 255, 255]).to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(v4([10, 0, 0, 5], [10, 0, 0, 5]).to_string(), "10.0.0.5/32");
        assert_eq!(
            v4([10, 0, 0, 5], [10, 0, 0, 9]).to_string(),
            "10.0.0.5-10.0.0.9"
        );
        let tcp = IpSelector {
            protocol: 6,
            start_port: 80,
            end_port: 443,
            ..v4([10, 0, 0, 1], [10, 0, 0, 1])
        };
        assert_eq!(tcp.to_string(), "10.0.0.1/32[6/80-443]");
        let all6 = IpSelector::any(AddrRange::V6 {
            start: Ipv6Addr::UNSPECIFIED,
            end: Ipv6Addr::from(u128::MAX),
        });
        assert_eq!(all6.to_string(), "::/0");
    }
}
