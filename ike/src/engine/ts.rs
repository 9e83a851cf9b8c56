//! Traffic selector narrowing (RFC 7296 §2.9).

use super::error::{IkeError, TsMismatch};
use crate::wire::{AddrRange, IpSelector, TrafficSelector, TsPayload};

fn intersect(a: &IpSelector, b: &IpSelector) -> Option<IpSelector> {
    let protocol = match (a.protocol, b.protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    if start_port > end_port {
        return None;
    }
    let range = match (a.range, b.range) {
        (AddrRange::V4 { start: s1, end: e1 }, AddrRange::V4 { start: s2, end: e2 }) => {
            let (start, end) = (s1.max(s2), e1.min(e2));
            (start <= end).then_some(AddrRange::V4 { start, end })?
        }
        (AddrRange::V6 { start: s1, end: e1 }, AddrRange::V6 { start: s2, end: e2 }) => {
            let (start, end) = (s1.max(s2), e1.min(e2));
            (start <= end).then_some(AddrRange::V6 { start, end })?
        }
        _ => return None,
    };
    Some(IpSelector {
        protocol,
        start_port,
        end_port,
        range,
    })
}

fn ip_selectors(p: &TsPayload) -> impl Iterator<Item = &IpSelector> {
    p.selectors.iter().filter_map(|s| match s {
        TrafficSelector::Ip(ip) => Some(ip),
        TrafficSelector::Other { .. } => None,
    })
}

/// The responder's answer: every non-empty intersection of what the peer proposed
/// with what our policy allows; empty means TS_UNACCEPTABLE.
pub(crate) fn narrow(proposed: &TsPayload, allowed: &[IpSelector]) -> Vec<IpSelector> {
    let mut out = Vec::new();
    for p in ip_selectors(proposed) {
        for a in allowed {
            if let Some(i) = intersect(p, a)
                && !out.contains(&i)
            {
                out.push(i);
            }
        }
    }
    out
}

/// The initiator's check of an answer: each returned selector must lie within one we
/// proposed.
pub(crate) fn within(answer: &TsPayload, proposed: &[IpSelector]) -> Option<Vec<IpSelector>> {
    let selected: Vec<IpSelector> = ip_selectors(answer).copied().collect();
    let ok = !selected.is_empty()
        && selected
            .iter()
            .all(|s| proposed.iter().any(|p| intersect(s, p).as_ref() == Some(s)));
    ok.then_some(selected)
}

/// TS_UNACCEPTABLE naming the message's TSi and TSr and what `configured` allows for
/// each.
pub(crate) fn mismatch(
    tsi: &TsPayload,
    tsr: &TsPayload,
    configured: (&[IpSelector], &[IpSelector]),
) -> IkeError {
    let offered = |p: &TsPayload| {
        p.selectors
            .iter()
            .map(|s| match s {
                TrafficSelector::Ip(ip) => ip.to_string(),
                TrafficSelector::Other { ts_type, .. } => format!("TS_TYPE_{ts_type}"),
            })
            .collect()
    };
    let ours = |s: &[IpSelector]| s.iter().map(ToString::to_string).collect();
    IkeError::TsUnacceptable(TsMismatch {
        offered: (offered(tsi), offered(tsr)),
        configured: (ours(configured.0), ours(configured.1)),
    })
}

pub(crate) fn payload(selectors: &[IpSelector]) -> TsPayload {
    TsPayload {
        selectors: selectors.iter().copied().map(TrafficSelector::Ip).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(a: [u8; 4], b: [u8; 4]) -> IpSelector {
        IpSelector::any(AddrRange::V4 {
            start: Ipv4Addr::from(a),
            end: Ipv4Addr::from(b),
        })
    }

    #[test]
    fn narrows_to_policy() {
        let proposed = payload(&[v4([10, 0, 0, 0], [10, 255, 255, 255])]);
        let allowed = [
            v4([10, 1, 0, 0], [10, 1, 255, 255]),
            v4([192, 0, 2, 0], [192, 0, 2, 255]),
        ];
        let got = narrow(&proposed, &allowed);
        assert_eq!(got, vec![v4([10, 1, 0, 0], [10, 1, 255, 255])]);
        assert_eq!(
            within(&payload(&got), &[v4([10, 0, 0, 0], [10, 255, 255, 255])]),
            Some(got.clone())
        );
        assert_eq!(within(&proposed, &got), None);

        let tcp = IpSelector {
            protocol: 6,
            start_port: 80,
            end_port: 443,
            ..v4([10, 1, 2, 3], [10, 1, 2, 3])
        };
        let udp = IpSelector {
            protocol: 17,
            ..tcp
        };
        assert_eq!(narrow(&payload(&[tcp]), &allowed), vec![tcp]);
        assert!(narrow(&payload(&[tcp]), &[udp]).is_empty());
        assert!(narrow(&payload(&[v4([172, 16, 0, 0], [172, 16, 0, 1])]), &allowed).is_empty());
    }
}
