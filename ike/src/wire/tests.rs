//! Whole-message tests: strongSwan's IKE_SA_INIT layout, chain rules and property tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// strongSwan 5.9.8's IKE_SA_INIT request as described in the interop README
/// (/work/shared/interop/strongswan/README.md): 264 bytes.
fn strongswan_ike_sa_init() -> Message {
    Message {
        header: Header {
            spi_i: 0x1122_3344_5566_7788,
            spi_r: 0,
            minor_version: 0,
            exchange: ExchangeType::IkeSaInit,
            flags: Flags(Flags::INITIATOR),
            message_id: 0,
        },
        payloads: vec![
            Payload::Sa(SaPayload {
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
            }),
            Payload::Ke(KePayload {
                group: 19,
                data: vec![0x42; 64],
            }),
            Payload::Nonce(NoncePayload {
                data: vec![0x17; 32],
            }),
            Payload::Notify(NotifyPayload::new(
                NotifyType::NatDetectionSourceIp,
                vec![1; 20],
            )),
            Payload::Notify(NotifyPayload::new(
                NotifyType::NatDetectionDestinationIp,
                vec![2; 20],
            )),
            Payload::Notify(NotifyPayload::new(
                NotifyType::Ikev2FragmentationSupported,
                vec![],
            )),
            Payload::Notify(NotifyPayload::new(
                NotifyType::SignatureHashAlgorithms,
                vec![0, 2, 0, 3, 0, 4, 0, 5],
            )),
            Payload::Notify(NotifyPayload::new(NotifyType::RedirectSupported, vec![])),
        ],
    }
}

#[test]
fn strongswan_ike_sa_init_layout() {
    let msg = strongswan_ike_sa_init();
    let bytes = msg.to_bytes().unwrap();
    assert_eq!(bytes.len(), 264);
    // Header: next payload SA (33), version 2.0, IKE_SA_INIT, flags I, length 264.
    assert_eq!(bytes[16..20], [33, 0x20, 34, 0x08]);
    assert_eq!(bytes[24..28], 264u32.to_be_bytes());
    assert_eq!(Message::parse(&bytes).unwrap(), msg);
}

#[test]
fn strongswan_ike_sa_init_chain_bytes() {
    let bytes = strongswan_ike_sa_init().to_bytes().unwrap();
    let lens: Vec<(u8, u16)> = {
        let mut v = Vec::new();
        let mut pos = HEADER_LEN;
        while let Some(h) = bytes.get(pos..pos + 4) {
            let len = u16::from_be_bytes([h[2], h[3]]);
            v.push((h[0], len));
            pos += usize::from(len);
        }
        v
    };
    // (next payload, length) of each payload: SA→KE→Ni→N…→end.
    assert_eq!(
        lens,
        vec![
            (34, 40),
            (40, 72),
            (41, 36),
            (41, 28),
            (41, 28),
            (41, 8),
            (41, 16),
            (0, 8)
        ]
    );
}

#[test]
fn unknown_payloads_critical_and_not() {
    let mut msg = strongswan_ike_sa_init();
    msg.payloads.push(Payload::Unknown(UnknownPayload {
        ty: 200,
        body: vec![1, 2, 3],
    }));
    let mut bytes = msg.to_bytes().unwrap();
    assert_eq!(Message::parse(&bytes).unwrap(), msg);
    // Set the critical bit of the unknown payload: the last 7 bytes are its header+body.
    let at = bytes.len() - 7 + 1;
    bytes[at] = 0x80;
    let err = Message::parse(&bytes).unwrap_err();
    assert_eq!(err, ParseError::UnsupportedCriticalPayload(200));
    assert_eq!(err.notify_type(), NotifyType::UnsupportedCriticalPayload);
    assert_eq!(err.notify_data(), vec![200]);
    // A known payload's critical bit is ignored (RFC 7296 §2.5).
    let mut known = strongswan_ike_sa_init().to_bytes().unwrap();
    known[HEADER_LEN + 1] = 0x80;
    assert!(Message::parse(&known).is_ok());
}

#[test]
fn chain_framing_errors() {
    let bytes = strongswan_ike_sa_init().to_bytes().unwrap();
    // Trailing byte after the last payload, with the header length adjusted.
    let mut trailing = bytes.clone();
    trailing.push(0);
    trailing[24..28].copy_from_slice(&265u32.to_be_bytes());
    assert!(matches!(
        Message::parse(&trailing),
        Err(ParseError::BadLength { .. })
    ));
    // Last payload claims another follows.
    let mut dangling = bytes.clone();
    dangling[256] = 41;
    assert!(matches!(
        Message::parse(&dangling),
        Err(ParseError::Truncated { .. })
    ));
    // Payload length below the generic header.
    let mut tiny = bytes.clone();
    tiny[HEADER_LEN + 3] = 3;
    assert!(matches!(
        Message::parse(&tiny),
        Err(ParseError::BadLength { .. })
    ));
}

#[test]
fn encrypted_payload_must_be_last_and_is_located() {
    let sk = Payload::Sk(EncryptedPayload {
        first_inner: PayloadType::IdI,
        body: vec![9; 48],
    });
    let mut msg = Message {
        header: Header {
            spi_i: 1,
            spi_r: 2,
            minor_version: 0,
            exchange: ExchangeType::IkeAuth,
            flags: Flags(Flags::INITIATOR),
            message_id: 1,
        },
        payloads: vec![sk.clone()],
    };
    let bytes = msg.to_bytes().unwrap();
    assert_eq!(bytes[16], 46);
    assert_eq!(bytes[HEADER_LEN], 35);
    assert_eq!(Message::parse(&bytes).unwrap(), msg);
    let span = locate_encrypted(&bytes).unwrap();
    assert_eq!(span.first_inner, PayloadType::IdI);
    assert_eq!(span.iv_offset, HEADER_LEN + 4);
    assert_eq!(span.fragment, None);

    msg.payloads
        .push(Payload::VendorId(VendorIdPayload { data: vec![1] }));
    assert!(msg.to_bytes().is_err());

    let frag = Message {
        payloads: vec![Payload::Skf(EncryptedFragment {
            first_inner: PayloadType::None,
            fragment_number: 2,
            total_fragments: 2,
            body: vec![3; 32],
        })],
        ..msg
    };
    let bytes = frag.to_bytes().unwrap();
    let span = locate_encrypted(&bytes).unwrap();
    assert_eq!(span.fragment, Some((2, 2)));
    assert_eq!(span.iv_offset, HEADER_LEN + 8);

    // Nested SK in a decrypted chain is refused.
    let mut inner = Vec::new();
    write_chain(&[sk], &mut inner).unwrap();
    assert!(parse_chain(PayloadType::Sk, &inner, false).is_err());
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn arb_nonempty(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..max)
}

fn arb_transform() -> impl Strategy<Value = Transform> {
    let attr = prop_oneof![
        (0u16..0x8000, any::<u16>()).prop_map(|(ty, value)| Attribute::Tv { ty, value }),
        (0u16..0x8000, arb_bytes(8)).prop_map(|(ty, value)| Attribute::Tlv { ty, value }),
    ];
    (any::<u8>(), any::<u16>(), prop::collection::vec(attr, 0..3)).prop_map(
        |(ty, id, attributes)| Transform {
            ty: TransformType::from(ty),
            id,
            attributes,
        },
    )
}

fn arb_sa() -> impl Strategy<Value = SaPayload> {
    let proposal = (
        any::<u8>(),
        any::<u8>(),
        arb_bytes(9),
        prop::collection::vec(arb_transform(), 0..5),
    )
        .prop_map(|(number, protocol, spi, transforms)| Proposal {
            number,
            protocol: ProtocolId::from(protocol),
            spi,
            transforms,
        });
    prop::collection::vec(proposal, 1..4).prop_map(|proposals| SaPayload { proposals })
}

fn arb_identity() -> impl Strategy<Value = Identity> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Identity::Ipv4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| Identity::Ipv6(Ipv6Addr::from(a))),
        "[a-z0-9.-]{1,30}".prop_map(Identity::Fqdn),
        "[a-z]{1,10}@[a-z.]{1,10}".prop_map(Identity::Rfc822),
        arb_nonempty(40).prop_map(Identity::DerAsn1Dn),
        arb_nonempty(20).prop_map(Identity::KeyId),
        arb_bytes(10).prop_map(|data| Identity::Other { id_type: 12, data }),
    ]
}

fn arb_ts() -> impl Strategy<Value = TsPayload> {
    let sel = prop_oneof![
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>()
        )
            .prop_map(|(protocol, start_port, end_port, s, e)| {
                TrafficSelector::Ip(IpSelector {
                    protocol,
                    start_port,
                    end_port,
                    range: AddrRange::V4 {
                        start: s.into(),
                        end: e.into(),
                    },
                })
            }),
        (any::<u8>(), any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(protocol, s, e)| {
            TrafficSelector::Ip(IpSelector {
                protocol,
                start_port: 0,
                end_port: 65535,
                range: AddrRange::V6 {
                    start: s.into(),
                    end: e.into(),
                },
            })
        }),
        (9u8..=255, arb_nonempty(12))
            .prop_map(|(ts_type, data)| TrafficSelector::Other { ts_type, data }),
    ];
    prop::collection::vec(sel, 1..4).prop_map(|selectors| TsPayload { selectors })
}

fn arb_clear_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        arb_sa().prop_map(Payload::Sa),
        (any::<u16>(), arb_nonempty(100))
            .prop_map(|(group, data)| Payload::Ke(KePayload { group, data })),
        arb_identity().prop_map(Payload::IdI),
        arb_identity().prop_map(Payload::IdR),
        (any::<u8>(), arb_bytes(50)).prop_map(|(e, data)| Payload::Cert(CertPayload {
            encoding: CertEncoding::from(e),
            data
        })),
        (any::<u8>(), arb_bytes(60)).prop_map(|(e, authorities)| Payload::CertReq(
            CertReqPayload {
                encoding: CertEncoding::from(e),
                authorities
            }
        )),
        (any::<u8>(), arb_bytes(64)).prop_map(|(m, data)| Payload::Auth(AuthPayload {
            method: AuthMethod::from(m),
            data
        })),
        prop::collection::vec(any::<u8>(), 16..=256)
            .prop_map(|data| Payload::Nonce(NoncePayload { data })),
        (
            prop::option::of(1u8..=255),
            arb_bytes(9),
            any::<u16>(),
            arb_bytes(40)
        )
            .prop_map(|(p, spi, ty, data)| Payload::Notify(NotifyPayload {
                protocol: p.map(ProtocolId::from),
                spi,
                notify_type: NotifyType::from(ty),
                data
            })),
        prop_oneof![
            Just(DeletePayload::Ike),
            (prop::bool::ANY, prop::collection::vec(any::<u32>(), 0..5)).prop_map(|(ah, spis)| {
                DeletePayload::Child {
                    protocol: if ah { ProtocolId::Ah } else { ProtocolId::Esp },
                    spis,
                }
            }),
        ]
        .prop_map(Payload::Delete),
        arb_bytes(30).prop_map(|data| Payload::VendorId(VendorIdPayload { data })),
        arb_ts().prop_map(Payload::TsI),
        arb_ts().prop_map(Payload::TsR),
        (
            any::<u8>(),
            prop::collection::vec((0u16..0x8000, arb_bytes(16)), 0..4)
        )
            .prop_map(|(t, attrs)| Payload::Cp(CpPayload {
                cfg_type: CfgType::from(t),
                attributes: attrs
                    .into_iter()
                    .map(|(ty, value)| CfgAttribute {
                        ty: CfgAttrType::from(ty),
                        value
                    })
                    .collect()
            })),
        prop_oneof![
            (1u8..=2, any::<u8>(), arb_nonempty(20)),
            (3u8..=4, any::<u8>(), Just(Vec::new())),
        ]
        .prop_map(|(code, identifier, data)| Payload::Eap(EapPayload {
            code,
            identifier,
            data
        })),
        (54u8..=255, arb_bytes(20))
            .prop_map(|(ty, body)| Payload::Unknown(UnknownPayload { ty, body })),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let header = (
        any::<u64>(),
        any::<u64>(),
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(spi_i, spi_r, minor_version, ex, flags, message_id)| Header {
                spi_i,
                spi_r,
                minor_version,
                exchange: ExchangeType::from(ex),
                flags: Flags(flags),
                message_id,
            },
        );
    let encrypted = prop_oneof![
        Just(None),
        (any::<u8>(), arb_bytes(64)).prop_map(|(t, body)| Some(Payload::Sk(EncryptedPayload {
            first_inner: PayloadType::from(t),
            body
        }))),
        (any::<u8>(), 1u16..5, 0u16..5, arb_bytes(64)).prop_map(|(t, total, n, body)| {
            Some(Payload::Skf(EncryptedFragment {
                first_inner: PayloadType::from(t),
                fragment_number: n % total + 1,
                total_fragments: total,
                body,
            }))
        }),
    ];
    (
        header,
        prop::collection::vec(arb_clear_payload(), 0..6),
        encrypted,
    )
        .prop_map(|(header, mut payloads, enc)| {
            payloads.extend(enc);
            Message { header, payloads }
        })
}

proptest! {
    #[test]
    fn message_round_trip(msg in arb_message()) {
        let bytes = msg.to_bytes().unwrap();
        let parsed = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &msg);
        prop_assert_eq!(parsed.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn parse_never_panics(bytes in arb_bytes(400)) {
        let _ = Message::parse(&bytes);
        let _ = locate_encrypted(&bytes);
        let _ = parse_chain(PayloadType::Sa, &bytes, false);
    }

    /// Random corruption of valid messages reaches deeper than random bytes do.
    #[test]
    fn mutated_message_never_panics(
        msg in arb_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = msg.to_bytes().unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Ok(parsed) = Message::parse(&bytes) {
            // Whatever parses must serialize again.
            prop_assert!(parsed.to_bytes().is_ok());
        }
        let _ = locate_encrypted(&bytes);
        let len = cut.index(bytes.len() + 1);
        let _ = Message::parse(&bytes[..len]);
    }
}
