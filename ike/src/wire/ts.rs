//! Traffic Selector payloads TSi / TSr (RFC 7296 §3.13).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::error::{EncodeError, ParseError};
use super::reader::{LenPatch, Reader, len_u8};

pub const TS_IPV4_ADDR_RANGE: u8 = 7;
pub const TS_IPV6_ADDR_RANGE: u8 = 8;

/// An inclusive address range of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AddrRange {
    V4 { start: Ipv4Addr, end: Ipv4Addr },
    V6 { start: Ipv6Addr, end: Ipv6Addr },
}

/// An address-range selector: IP protocol (0 = any) and inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpSelector {
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub range: AddrRange,
}

impl IpSelector {
    /// Any protocol and port within the range.
    pub fn any(range: AddrRange) -> Self {
        IpSelector {
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            range,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    Ip(IpSelector),
    /// A selector type we do not interpret (e.g. RFC 9478 security labels), kept whole.
    Other {
        ts_type: u8,
        data: Vec<u8>,
    },
}

/// The body of a TSi or TSr payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TsPayload {
    pub selectors: Vec<TrafficSelector>,
}

impl TsPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body, "TS payload");
        let count = r.u8()?;
        let _reserved: [u8; 3] = r.array()?;
        if count == 0 {
            return Err(ParseError::InvalidSyntax("TS payload without selectors"));
        }
        let mut selectors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let ts_type = r.u8()?;
            let protocol = r.u8()?;
            let len = usize::from(r.u16()?);
            let rest_len = len.checked_sub(4).ok_or(ParseError::BadLength {
                what: "traffic selector",
                len,
            })?;
            let mut s = Reader::new(r.take(rest_len)?, "traffic selector");
            let ts = match ts_type {
                TS_IPV4_ADDR_RANGE | TS_IPV6_ADDR_RANGE => {
                    let want = if ts_type == TS_IPV4_ADDR_RANGE {
                        16
                    } else {
                        40
                    };
                    if len != want {
                        return Err(ParseError::BadLength {
                            what: "traffic selector",
                            len,
                        });
                    }
                    let start_port = s.u16()?;
                    let end_port = s.u16()?;
                    let range = if ts_type == TS_IPV4_ADDR_RANGE {
                        AddrRange::V4 {
                            start: Ipv4Addr::from(s.array::<4>()?),
                            end: Ipv4Addr::from(s.array::<4>()?),
                        }
                    } else {
                        AddrRange::V6 {
                            start: Ipv6Addr::from(s.array::<16>()?),
                            end: Ipv6Addr::from(s.array::<16>()?),
                        }
                    };
                    s.finish()?;
                    TrafficSelector::Ip(IpSelector {
                        protocol,
                        start_port,
                        end_port,
                        range,
                    })
                }
                other => {
                    let mut data = vec![protocol];
                    data.extend_from_slice(s.rest());
                    TrafficSelector::Other {
                        ts_type: other,
                        data,
                    }
                }
            };
            selectors.push(ts);
        }
        r.finish()?;
        Ok(TsPayload { selectors })
    }

    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.selectors.is_empty() {
            return Err(EncodeError::InvalidValue("TS payload without selectors"));
        }
        out.push(len_u8(self.selectors.len(), "TS count")?);
        out.extend_from_slice(&[0; 3]);
        for ts in &self.selectors {
            match ts {
                TrafficSelector::Ip(sel) => {
                    let (ty, len): (u8, u16) = match sel.range {
                        AddrRange::V4 { .. } => (TS_IPV4_ADDR_RANGE, 16),
                        AddrRange::V6 { .. } => (TS_IPV6_ADDR_RANGE, 40),
                    };
                    out.push(ty);
                    out.push(sel.protocol);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&sel.start_port.to_be_bytes());
                    out.extend_from_slice(&sel.end_port.to_be_bytes());
                    match sel.range {
                        AddrRange::V4 { start, end } => {
                            out.extend_from_slice(&start.octets());
                            out.extend_from_slice(&end.octets());
                        }
                        AddrRange::V6 { start, end } => {
                            out.extend_from_slice(&start.octets());
                            out.extend_from_slice(&end.octets());
                        }
                    }
                }
                TrafficSelector::Other { ts_type, data } => {
                    // `data` starts with the octet after the type, so the 16-bit
                    // length follows it.
                    let Some((first, rest)) = data.split_first() else {
                        return Err(EncodeError::InvalidValue("empty opaque selector"));
                    };
                    if matches!(*ts_type, TS_IPV4_ADDR_RANGE | TS_IPV6_ADDR_RANGE) {
                        return Err(EncodeError::InvalidValue("opaque selector of IP type"));
                    }
                    let start = out.len();
                    out.push(*ts_type);
                    out.push(*first);
                    let len = LenPatch::reserve(out, start);
                    out.extend_from_slice(rest);
                    len.fill(out, "traffic selector")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strongswan_ts() -> TsPayload {
        // The interop README's TS: 10.1.0.0/16, any protocol and port.
        TsPayload {
            selectors: vec![TrafficSelector::Ip(IpSelector::any(AddrRange::V4 {
                start: Ipv4Addr::new(10, 1, 0, 0),
                end: Ipv4Addr::new(10, 1, 255, 255),
            }))],
        }
    }

    #[test]
    fn ipv4_bytes() {
        let mut out = Vec::new();
        strongswan_ts().write_body(&mut out).unwrap();
        assert_eq!(
            hex::encode(&out),
            "01000000070000100000ffff0a0100000a01ffff"
        );
        assert_eq!(TsPayload::parse(&out).unwrap(), strongswan_ts());
    }

    #[test]
    fn mixed_round_trip() {
        let ts = TsPayload {
            selectors: vec![
                TrafficSelector::Ip(IpSelector {
                    protocol: 6,
                    start_port: 443,
                    end_port: 443,
                    range: AddrRange::V6 {
                        start: "2001:db8::".parse().unwrap(),
                        end: "2001:db8::ffff".parse().unwrap(),
                    },
                }),
                TrafficSelector::Other {
                    ts_type: 10,
                    data: vec![0, 1, 2, 3],
                },
            ],
        };
        let mut out = Vec::new();
        ts.write_body(&mut out).unwrap();
        assert_eq!(TsPayload::parse(&out).unwrap(), ts);
    }

    #[test]
    fn rejects_malformed() {
        let mut out = Vec::new();
        strongswan_ts().write_body(&mut out).unwrap();
        let mut two = out.clone();
        two[0] = 2;
        assert!(TsPayload::parse(&two).is_err());
        let mut zero = out.clone();
        zero[0] = 0;
        assert!(TsPayload::parse(&zero).is_err());
        let mut v6_len = out.clone();
        v6_len[4] = TS_IPV6_ADDR_RANGE;
        assert!(TsPayload::parse(&v6_len).is_err());
        let mut tiny = out.clone();
        tiny[7] = 2;
        assert!(TsPayload::parse(&tiny).is_err());
    }
}
