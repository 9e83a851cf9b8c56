//! The proposal matcher: suites to SA payloads and back, one home for both roles.

use super::config::{ChildSuite, IkeSuite};
use super::error::{IkeError, ProposalMismatch};
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
    /// With `dh` for CREATE_CHILD_SA with PFS; IKE_AUTH child proposals carry no group.
    /// AH has no ENCR transform (RFC 7296 §3.3.3: integrity, optional DH, ESN).
    fn transforms(&self, dh: Option<DhGroup>) -> Vec<Transform> {
        let mut t: Vec<Transform> = self.encr().map(encr_transform).into_iter().collect();
        if let Some(i) = self.integ() {
            t.push(Transform::new(TransformType::Integ, i.iana_id()));
        }
        if let Some(g) = dh {
            t.push(Transform::new(TransformType::Dh, g.iana_id()));
        }
        t.push(Transform::new(
            TransformType::Esn,
            if self.esn() { ESN_YES } else { ESN_NO },
        ));
        t
    }
}

/// Proposals numbered from 1 (RFC 7296 §3.3.1), each of its own protocol: a child
/// offer may mix ESP and AH proposals, one of which the responder picks.
fn payload(spi: &[u8], suites: impl Iterator<Item = (ProtocolId, Vec<Transform>)>) -> SaPayload {
    SaPayload {
        proposals: suites
            .zip(1u8..)
            .map(|((protocol, transforms), number)| Proposal {
                number,
                protocol,
                spi: spi.to_vec(),
                transforms,
            })
            .collect(),
    }
}

/// An IKE SA offer; `spi` is `Some` when rekeying (RFC 7296 §1.3.2: the proposal
/// carries the new SA's 8-octet SPI).
pub(crate) fn ike_offer(suites: &[IkeSuite], spi: Option<u64>) -> SaPayload {
    let spi = spi.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default();
    payload(
        &spi,
        suites.iter().map(|s| (ProtocolId::Ike, s.transforms())),
    )
}

pub(crate) fn child_offer(suites: &[ChildSuite], spi: u32, dh: Option<DhGroup>) -> SaPayload {
    payload(
        &spi.to_be_bytes(),
        suites.iter().map(|s| (s.protocol(), s.transforms(dh))),
    )
}

fn mismatch(offered: &SaPayload, configured: &SaPayload) -> IkeError {
    let names = |sa: &SaPayload| sa.proposals.iter().map(ToString::to_string).collect();
    IkeError::NoProposalChosen(ProposalMismatch {
        offered: names(offered),
        configured: names(configured),
    })
}

/// NO_PROPOSAL_CHOSEN for an IKE SA: the peer's `offered` against our `suites`.
pub(crate) fn ike_mismatch(offered: &SaPayload, suites: &[IkeSuite]) -> IkeError {
    mismatch(offered, &ike_offer(suites, None))
}

/// NO_PROPOSAL_CHOSEN for a child SA: the peer's `offered` against our `suites` (with
/// the PFS group `dh` of CREATE_CHILD_SA).
pub(crate) fn child_mismatch(
    offered: &SaPayload,
    suites: &[ChildSuite],
    dh: Option<DhGroup>,
) -> IkeError {
    mismatch(offered, &child_offer(suites, 0, dh))
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
    // Likewise a child proposal without PFS may list only DH "none".
    let our_types: Vec<TransformType> = ours.iter().map(|t| t.ty).collect();
    let stray =
        |ty| !our_types.contains(&ty) && offered.transforms.iter().any(|t| t.ty == ty && t.id != 0);
    // AH takes no ENCR at all.
    known
        && !stray(TransformType::Encr)
        && !stray(TransformType::Integ)
        && !stray(TransformType::Dh)
        && ours.iter().all(has)
}

/// The responder's choice: our most preferred suite that one of the peer's proposals
/// offers, answered with that proposal's number.
///
/// `our_spi` is `Some` when answering an IKE SA rekey: the peer's proposals must then
/// carry an 8-octet SPI, returned as the second value.
pub(crate) fn choose_ike(
    sa: &SaPayload,
    ours: &[IkeSuite],
    our_spi: Option<u64>,
) -> Option<(IkeSuite, Option<u64>, SaPayload)> {
    ours.iter().find_map(|suite| {
        let t = suite.transforms();
        sa.proposals.iter().find_map(|p| {
            let peer_spi = match our_spi {
                None if p.spi.is_empty() => None,
                Some(_) => Some(u64::from_be_bytes(
                    <[u8; 8]>::try_from(p.spi.as_slice()).ok()?,
                )),
                None => return None,
            };
            acceptable(p, &t, ProtocolId::Ike).then(|| {
                (
                    *suite,
                    peer_spi,
                    SaPayload {
                        proposals: vec![Proposal {
                            number: p.number,
                            protocol: ProtocolId::Ike,
                            spi: our_spi
                                .map(|s| s.to_be_bytes().to_vec())
                                .unwrap_or_default(),
                            transforms: t.clone(),
                        }],
                    },
                )
            })
        })
    })
}

/// The responder's choice for ESP or AH (a proposal's protocol must be the suite's);
/// returns the suite, the peer's SPI and our answer.
/// `dh` is the group we require (CREATE_CHILD_SA with PFS), if any.
pub(crate) fn choose_child(
    sa: &SaPayload,
    ours: &[ChildSuite],
    our_spi: u32,
    dh: Option<DhGroup>,
) -> Option<(ChildSuite, u32, SaPayload)> {
    ours.iter().find_map(|suite| {
        let t = suite.transforms(dh);
        sa.proposals.iter().find_map(|p| {
            let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
            acceptable(p, &t, suite.protocol()).then(|| {
                (
                    *suite,
                    spi,
                    SaPayload {
                        proposals: vec![Proposal {
                            number: p.number,
                            protocol: suite.protocol(),
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
///
/// With `with_spi` (IKE SA rekey) the answer must carry the responder's 8-octet SPI.
pub(crate) fn accepted_ike(
    sa: &SaPayload,
    offered: &[IkeSuite],
    with_spi: bool,
) -> Option<(IkeSuite, Option<u64>)> {
    let [p] = sa.proposals.as_slice() else {
        return None;
    };
    let suite = decode_ike(p)?;
    let spi = if with_spi {
        Some(u64::from_be_bytes(
            <[u8; 8]>::try_from(p.spi.as_slice()).ok()?,
        ))
    } else if p.spi.is_empty() {
        None
    } else {
        return None;
    };
    offered.contains(&suite).then_some((suite, spi))
}

/// Like [`accepted_ike`] for ESP or AH; also returns the peer's SPI. The answer's DH
/// group must be the one we sent a KE for.
pub(crate) fn accepted_child(
    sa: &SaPayload,
    offered: &[ChildSuite],
    dh: Option<DhGroup>,
) -> Option<(ChildSuite, u32)> {
    let [p] = sa.proposals.as_slice() else {
        return None;
    };
    let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
    let (suite, group) = decode_child(p)?;
    (offered.contains(&suite) && group == dh.map(DhGroup::iana_id)).then_some((suite, spi))
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

/// A single-proposal answer as a suite and its DH group; AH must have no ENCR and a
/// real INTEG transform, ESP an ENCR.
fn decode_child(p: &Proposal) -> Option<(ChildSuite, Option<u16>)> {
    if p.transforms.len() > 4 {
        return None;
    }
    let dh = single(p, TransformType::Dh)?
        .map(|t| t.id)
        .filter(|id| *id != 0);
    let encr = single(p, TransformType::Encr)?;
    let integ = single(p, TransformType::Integ)?
        .map(|i| Integ::from_iana(i.id))
        .transpose()
        .ok()?;
    let esn = match single(p, TransformType::Esn)? {
        None => false,
        Some(t) if t.id == ESN_NO => false,
        Some(t) if t.id == ESN_YES => true,
        Some(_) => return None,
    };
    let suite = match (p.protocol, encr) {
        (ProtocolId::Esp, Some(e)) => ChildSuite::Esp {
            encr: Encr::from_transform(e.id, e.key_length()).ok()?,
            integ,
            esn,
        },
        (ProtocolId::Ah, None) => ChildSuite::Ah { integ: integ?, esn },
        _ => return None,
    };
    Some((suite, dh))
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
        let offer = ike_offer(&[cbc_x25519(), gcm_ecp()], None);
        let (suite, _, answer) = choose_ike(&offer, &[gcm_ecp(), cbc_x25519()], None).unwrap();
        assert_eq!(suite, gcm_ecp());
        assert_eq!(answer.proposals[0].number, 2);
        assert_eq!(
            accepted_ike(&answer, &[cbc_x25519(), gcm_ecp()], false),
            Some((gcm_ecp(), None))
        );
        assert_eq!(accepted_ike(&answer, &[cbc_x25519()], false), None);
        // Rekey offers carry the new SPIs both ways.
        let rekey = ike_offer(&[gcm_ecp()], Some(7));
        let (_, peer, answer) = choose_ike(&rekey, &[gcm_ecp()], Some(9)).unwrap();
        assert_eq!(peer, Some(7));
        assert_eq!(
            accepted_ike(&answer, &[gcm_ecp()], true),
            Some((gcm_ecp(), Some(9)))
        );
        assert!(choose_ike(&offer, &[gcm_ecp()], Some(9)).is_none());
        assert!(
            choose_ike(
                &offer,
                &[IkeSuite {
                    dh: DhGroup::Modp2048,
                    ..gcm_ecp()
                }],
                None
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
        let (suite, _, _) = choose_ike(&offer, &[gcm_ecp()], None).unwrap();
        assert_eq!(suite, gcm_ecp());
        // An unknown transform type makes the proposal unacceptable.
        let mut odd = offer.clone();
        odd.proposals[0]
            .transforms
            .push(Transform::new(TransformType::Unknown(6), 1));
        assert!(choose_ike(&odd, &[gcm_ecp()], None).is_none());
        // An AEAD suite must not be paired with a real integrity algorithm.
        let mut integ = offer;
        integ.proposals[0]
            .transforms
            .push(Transform::new(TransformType::Integ, 12));
        assert!(choose_ike(&integ, &[gcm_ecp()], None).is_none());
    }

    #[test]
    fn child_round_trip() {
        let ours = [
            ChildSuite::Esp {
                encr: Encr::AesGcm16_256,
                integ: None,
                esn: true,
            },
            ChildSuite::Esp {
                encr: Encr::AesCbc128,
                integ: Some(Integ::HmacSha256_128),
                esn: false,
            },
        ];
        let offer = child_offer(&ours, 0xc0ff_ee01, None);
        let (suite, peer_spi, answer) =
            choose_child(&offer, &ours[1..], 0x1234_5678, None).unwrap();
        assert_eq!(suite, ours[1]);
        assert_eq!(peer_spi, 0xc0ff_ee01);
        assert_eq!(
            accepted_child(&answer, &ours, None),
            Some((ours[1], 0x1234_5678))
        );
        let mut no_spi = offer.clone();
        no_spi.proposals.iter_mut().for_each(|p| p.spi.clear());
        assert!(choose_child(&no_spi, &ours, 1, None).is_none());
        // PFS: the group must match both ways.
        let pfs = child_offer(&ours, 5, Some(DhGroup::Curve25519));
        assert!(choose_child(&pfs, &ours, 6, None).is_none());
        assert!(choose_child(&pfs, &ours, 6, Some(DhGroup::Ecp256)).is_none());
        let (_, _, answer) = choose_child(&pfs, &ours, 6, Some(DhGroup::Curve25519)).unwrap();
        assert!(accepted_child(&answer, &ours, None).is_none());
        assert!(accepted_child(&answer, &ours, Some(DhGroup::Curve25519)).is_some());
    }
}
