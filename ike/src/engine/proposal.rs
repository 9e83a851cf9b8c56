//! The proposal matcher: suites to SA payloads and back, one home for both roles.

use super::config::{ChildSuite, IkeSuite};
use crate::crypto::{DhGroup, Encr, Integ, Prf};
use crate::wire::{Proposal, ProtocolId, SaPayload, Transform, TransformType};

const ESN_NO: u16 = 0;
const ESN_YES: u16 = 1;

fn encr_transform(encr: Encr) -> Transform {
    match encr.key_bits() {
        Some(bits) => Transform::with_key_length(TransformType::Encr, encr.iana_id(), bits),
        None => Transform::new(TransformType::Encr, encr.iana_id()),
    }
}

impl IkeSuite {
    fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![
            encr_transform(self.encr),
            Transform::new(TransformType::Prf, self.prf.iana_id()),
        ];
        if let Some(i) = self.integ {
            t.push(Transform::new(TransformType::Integ, i.iana_id()));
        }
        t.push(Transform::new(TransformType::Dh, self.dh.iana_id()));
        t
    }
}

impl ChildSuite {
    fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![encr_transform(self.encr)];
        if let Some(i) = self.integ {
            t.push(Transform::new(TransformType::Integ, i.iana_id()));
        }
        t.push(Transform::new(
            TransformType::Esn,
            if self.esn { ESN_YES } else { ESN_NO },
        ));
        t
    }
}

fn payload(
    protocol: ProtocolId,
    spi: &[u8],
    suites: impl Iterator<Item = Vec<Transform>>,
) -> SaPayload {
    SaPayload {
        proposals: suites
            .zip(1u8..)
            .map(|(transforms, number)| Proposal {
                number,
                protocol,
                spi: spi.to_vec(),
                transforms,
            })
            .collect(),
    }
}

pub(crate) fn ike_offer(suites: &[IkeSuite]) -> SaPayload {
    payload(
        ProtocolId::Ike,
        &[],
        suites.iter().map(IkeSuite::transforms),
    )
}

pub(crate) fn child_offer(suites: &[ChildSuite], spi: u32) -> SaPayload {
    payload(
        ProtocolId::Esp,
        &spi.to_be_bytes(),
        suites.iter().map(ChildSuite::transforms),
    )
}

/// Whether `offered` includes every transform of `ours` and nothing we cannot parse;
/// for each type we select, the peer may list alternatives (RFC 7296 §3.3.6).
fn acceptable(offered: &Proposal, ours: &[Transform], protocol: ProtocolId) -> bool {
    if offered.protocol != protocol {
        return false;
    }
    let known = offered.transforms.iter().all(|t| {
        matches!(
            t.ty,
            TransformType::Encr
                | TransformType::Prf
                | TransformType::Integ
                | TransformType::Dh
                | TransformType::Esn
        )
    });
    let has = |want: &Transform| {
        offered
            .transforms
            .iter()
            .any(|t| t.ty == want.ty && t.id == want.id && t.key_length() == want.key_length())
    };
    // With an AEAD we take no INTEG transform; the peer may offer only "none" (0) then.
    let our_types: Vec<TransformType> = ours.iter().map(|t| t.ty).collect();
    let stray_integ = !our_types.contains(&TransformType::Integ)
        && offered
            .transforms
            .iter()
            .any(|t| t.ty == TransformType::Integ && t.id != 0);
    known && !stray_integ && ours.iter().all(has)
}

/// The responder's choice: our most preferred suite that one of the peer's proposals
/// offers, answered with that proposal's number.
pub(crate) fn choose_ike(sa: &SaPayload, ours: &[IkeSuite]) -> Option<(IkeSuite, SaPayload)> {
    ours.iter().find_map(|suite| {
        let t = suite.transforms();
        sa.proposals
            .iter()
            .find(|p| p.spi.is_empty() && acceptable(p, &t, ProtocolId::Ike))
            .map(|p| {
                (
                    *suite,
                    SaPayload {
                        proposals: vec![Proposal {
                            number: p.number,
                            protocol: ProtocolId::Ike,
                            spi: Vec::new(),
                            transforms: t,
                        }],
                    },
                )
            })
    })
}

/// The responder's choice for ESP; returns the suite, the peer's SPI and our answer.
pub(crate) fn choose_child(
    sa: &SaPayload,
    ours: &[ChildSuite],
    our_spi: u32,
) -> Option<(ChildSuite, u32, SaPayload)> {
    ours.iter().find_map(|suite| {
        let t = suite.transforms();
        sa.proposals.iter().find_map(|p| {
            let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
            acceptable(p, &t, ProtocolId::Esp).then(|| {
                (
                    *suite,
                    spi,
                    SaPayload {
                        proposals: vec![Proposal {
                            number: p.number,
                            protocol: ProtocolId::Esp,
                            spi: our_spi.to_be_bytes().to_vec(),
                            transforms: t.clone(),
                        }],
                    },
                )
            })
        })
    })
}

/// Decodes a single-proposal answer into a suite; `None` unless it is exactly one of
/// `offered`.
pub(crate) fn accepted_ike(sa: &SaPayload, offered: &[IkeSuite]) -> Option<IkeSuite> {
    let [p] = sa.proposals.as_slice() else {
        return None;
    };
    let suite = decode_ike(p)?;
    (offered.contains(&suite) && p.spi.is_empty()).then_some(suite)
}

/// Like [`accepted_ike`] for ESP; also returns the peer's SPI.
pub(crate) fn accepted_child(sa: &SaPayload, offered: &[ChildSuite]) -> Option<(ChildSuite, u32)> {
    let [p] = sa.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::Esp {
        return None;
    }
    let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
    let suite = decode_child(p)?;
    offered.contains(&suite).then_some((suite, spi))
}

fn single(p: &Proposal, ty: TransformType) -> Option<Option<&Transform>> {
    let mut it = p.transforms.iter().filter(|t| t.ty == ty);
    let first = it.next();
    it.next().is_none().then_some(first)
}

fn decode_ike(p: &Proposal) -> Option<IkeSuite> {
    if p.protocol != ProtocolId::Ike || p.transforms.len() > 4 {
        return None;
    }
    let e = single(p, TransformType::Encr)??;
    let prf = single(p, TransformType::Prf)??;
    let dh = single(p, TransformType::Dh)??;
    let integ = single(p, TransformType::Integ)?;
    Some(IkeSuite {
        encr: Encr::from_transform(e.id, e.key_length()).ok()?,
        integ: integ.map(|i| Integ::from_iana(i.id)).transpose().ok()?,
        prf: Prf::from_iana(prf.id).ok()?,
        dh: DhGroup::from_iana(dh.id).ok()?,
    })
}

fn decode_child(p: &Proposal) -> Option<ChildSuite> {
    if p.transforms.len() > 3 {
        return None;
    }
    let e = single(p, TransformType::Encr)??;
    let integ = single(p, TransformType::Integ)?;
    let esn = match single(p, TransformType::Esn)? {
        None => false,
        Some(t) if t.id == ESN_NO => false,
        Some(t) if t.id == ESN_YES => true,
        Some(_) => return None,
    };
    Some(ChildSuite {
        encr: Encr::from_transform(e.id, e.key_length()).ok()?,
        integ: integ.map(|i| Integ::from_iana(i.id)).transpose().ok()?,
        esn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcm_ecp() -> IkeSuite {
        IkeSuite {
            encr: Encr::AesGcm16_128,
            integ: None,
            prf: Prf::HmacSha256,
            dh: DhGroup::Ecp256,
        }
    }

    fn cbc_x25519() -> IkeSuite {
        IkeSuite {
            encr: Encr::AesCbc256,
            integ: Some(Integ::HmacSha256_128),
            prf: Prf::HmacSha256,
            dh: DhGroup::Curve25519,
        }
    }

    #[test]
    fn responder_prefers_its_own_order() {
        let offer = ike_offer(&[cbc_x25519(), gcm_ecp()]);
        let (suite, answer) = choose_ike(&offer, &[gcm_ecp(), cbc_x25519()]).unwrap();
        assert_eq!(suite, gcm_ecp());
        assert_eq!(answer.proposals[0].number, 2);
        assert_eq!(
            accepted_ike(&answer, &[cbc_x25519(), gcm_ecp()]),
            Some(gcm_ecp())
        );
        assert_eq!(accepted_ike(&answer, &[cbc_x25519()]), None);
        assert!(
            choose_ike(
                &offer,
                &[IkeSuite {
                    dh: DhGroup::Modp2048,
                    ..gcm_ecp()
                }]
            )
            .is_none()
        );
    }

    #[test]
    fn strongswan_style_multi_transform_proposal() {
        // One proposal listing alternatives per type, as strongSwan sends for
        // "aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-x25519".
        let offer = SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::Ike,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_length(TransformType::Encr, 20, 128),
                    Transform::with_key_length(TransformType::Encr, 20, 256),
                    Transform::new(TransformType::Prf, 5),
                    Transform::new(TransformType::Prf, 6),
                    Transform::new(TransformType::Dh, 19),
                    Transform::new(TransformType::Dh, 31),
                ],
            }],
        };
        let (suite, _) = choose_ike(&offer, &[gcm_ecp()]).unwrap();
        assert_eq!(suite, gcm_ecp());
        // An unknown transform type makes the proposal unacceptable.
        let mut odd = offer.clone();
        odd.proposals[0]
            .transforms
            .push(Transform::new(TransformType::Unknown(6), 1));
        assert!(choose_ike(&odd, &[gcm_ecp()]).is_none());
        // An AEAD suite must not be paired with a real integrity algorithm.
        let mut integ = offer;
        integ.proposals[0]
            .transforms
            .push(Transform::new(TransformType::Integ, 12));
        assert!(choose_ike(&integ, &[gcm_ecp()]).is_none());
    }

    #[test]
    fn child_round_trip() {
        let ours = [
            ChildSuite {
                encr: Encr::AesGcm16_256,
                integ: None,
                esn: true,
            },
            ChildSuite {
                encr: Encr::AesCbc128,
                integ: Some(Integ::HmacSha256_128),
                esn: false,
            },
        ];
        let offer = child_offer(&ours, 0xc0ff_ee01);
        let (suite, peer_spi, answer) = choose_child(&offer, &ours[1..], 0x1234_5678).unwrap();
        assert_eq!(suite, ours[1]);
        assert_eq!(peer_spi, 0xc0ff_ee01);
        assert_eq!(accepted_child(&answer, &ours), Some((ours[1], 0x1234_5678)));
        let mut no_spi = offer.clone();
        no_spi.proposals.iter_mut().for_each(|p| p.spi.clear());
        assert!(choose_child(&no_spi, &ours, 1).is_none());
    }
}
