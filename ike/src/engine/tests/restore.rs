//! Snapshots that are damaged, hostile or meant for another configuration: restore()
//! answers with a typed error, never a panic, and whatever it accepts runs without
//! panicking. Key material never shows in a snapshot's `Debug` output.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::engine::snapshot::ActiveKindSnapshot;

/// An initiator with much going on: two children (one made by the peer's rekey, whose
/// Delete it answered, so an answer is cached), a PFS child rekey in flight and an IKE
/// rekey queued behind it. Returns the pair and A's snapshot.
fn busy() -> (Pair, IkeSaSnapshot) {
    let mut ci = config(true);
    ci.child_pfs = Some(DhGroup::Ecp256);
    let mut cr = config(false);
    cr.child_pfs = Some(DhGroup::Ecp256);
    let mut pair = Pair::established(ci.clone(), cr);
    pair.initiator
        .create_child(ci.first_child(), pair.now)
        .unwrap();
    pair.drive();
    let children = pair.agreed_children();
    pair.responder.rekey_child(children[1].1, pair.now).unwrap();
    pair.drive();
    pair.initiator.rekey_child(children[0].0, pair.now).unwrap();
    pair.initiator.rekey_ike(pair.now).unwrap();
    let snapshot = pair.initiator.snapshot(pair.now).unwrap();
    assert!(matches!(
        snapshot.session.active.as_ref().map(|a| &a.kind),
        Some(ActiveKindSnapshot::CreateChild(c)) if c.dh.is_some()
    ));
    assert!(snapshot.session.last_response.is_some());
    assert_eq!(snapshot.tasks.len(), 1);
    (pair, snapshot)
}

fn pfs_config() -> IkeConfig {
    IkeConfig {
        child_pfs: Some(DhGroup::Ecp256),
        ..config(true)
    }
}

/// A change made to a good snapshot or to the configuration it is restored with.
type Tamper = Box<dyn Fn(&mut IkeSaSnapshot, &mut IkeConfig)>;

fn restore(snapshot: IkeSaSnapshot, config: IkeConfig) -> Result<IkeSa, RestoreError> {
    IkeSa::restore(config, snapshot, rng(77), Instant::now())
}

#[test]
fn the_busy_snapshot_restores_and_round_trips() {
    let (pair, snapshot) = busy();
    let bytes = encode(&snapshot);
    let restored = restore(decode(&bytes).unwrap(), pfs_config()).unwrap();
    assert_eq!(restored.spis(), pair.initiator.spis());
    assert_eq!(restored.child_sas(), pair.initiator.child_sas());
    let again = restored.snapshot(Instant::now()).unwrap();
    assert_eq!(again.state_version(), snapshot.state_version());
    assert_eq!(again.child_installs().count(), 2);
}

#[test]
fn mismatched_or_inconsistent_snapshots_are_refused() {
    let (_, good) = busy();
    let cases: Vec<(Tamper, RestoreError)> = vec![
        (Box::new(|s, _| s.format = 9), RestoreError::Format(9)),
        (
            Box::new(|_, c| {
                c.ike_suites = vec![IkeSuite {
                    dh: DhGroup::Curve25519,
                    ..gcm_ecp()
                }];
            }),
            RestoreError::SuiteNotConfigured(gcm_ecp()),
        ),
        (
            Box::new(|_, c| c.fragmentation = false),
            RestoreError::ConfigMismatch("fragmentation is not enabled"),
        ),
        (
            Box::new(|s, _| s.session.keys.sk_d = SecretBytes::new(vec![1; 3])),
            RestoreError::Invalid("SK_d size"),
        ),
        (
            Box::new(|s, _| s.session.keys.sk_ei = SecretBytes::new(vec![1; 3])),
            RestoreError::Invalid("SK_e/SK_a sizes"),
        ),
        (
            Box::new(|s, _| s.session.spis.1 = 0),
            RestoreError::Invalid("zero IKE SPI"),
        ),
        (
            Box::new(|s, _| s.session.next_id += 1),
            RestoreError::Invalid("message ID of the request in flight"),
        ),
        (
            Box::new(|s, _| s.session.peer_next += 1),
            RestoreError::Invalid("message ID of the cached response"),
        ),
        (
            Box::new(|s, _| {
                if let Some(a) = &mut s.session.active {
                    a.tries = 0;
                }
            }),
            RestoreError::Invalid("retransmission count"),
        ),
        (
            Box::new(|s, _| {
                if let Some(a) = &mut s.session.active {
                    a.datagrams[0].truncate(10);
                }
            }),
            RestoreError::Invalid("stored message header"),
        ),
        (
            Box::new(|s, _| {
                if let Some(a) = &mut s.session.active
                    && let ActiveKindSnapshot::CreateChild(c) = &mut a.kind
                    && let Some(dh) = &mut c.dh
                {
                    dh.private = SecretBytes::new(vec![0; 32]);
                }
            }),
            RestoreError::Crypto(crate::crypto::CryptoError::BadKeyLength(
                "ECP private scalar",
            )),
        ),
        (
            Box::new(|s, _| {
                if let Some(a) = &mut s.session.active
                    && let ActiveKindSnapshot::CreateChild(c) = &mut a.kind
                {
                    c.ni.truncate(4);
                }
            }),
            RestoreError::Invalid("nonce size"),
        ),
        (
            Box::new(|s, _| s.children[0].install.encr_id = Some(999)),
            RestoreError::Crypto(crate::crypto::CryptoError::Unsupported {
                kind: "encryption",
                id: 999,
                key_bits: Some(128),
            }),
        ),
        (
            Box::new(|s, _| s.children[1].install.outbound.integ_key = SecretBytes::new(vec![1])),
            RestoreError::Invalid("child SA key sizes"),
        ),
        (
            Box::new(|s, _| {
                let dup = s.children[0].clone();
                s.children.push(dup);
            }),
            RestoreError::Invalid("two child SAs with one inbound SPI"),
        ),
        (
            Box::new(|s, _| s.children[0].install.local_ts.clear()),
            RestoreError::Invalid("traffic selector count"),
        ),
        (
            Box::new(|s, _| s.children[0].rekey_in = Some(Duration::MAX)),
            RestoreError::Invalid("timer out of range"),
        ),
        (
            Box::new(|s, _| s.lease = Some(Ipv4Addr::new(10, 9, 0, 1))),
            RestoreError::LeaseUnavailable(Ipv4Addr::new(10, 9, 0, 1)),
        ),
        (
            Box::new(|s, _| s.remote = "[2001:db8::1]:500".parse().unwrap()),
            RestoreError::Invalid("local and remote address families differ"),
        ),
    ];
    for (i, (tamper, want)) in cases.into_iter().enumerate() {
        let mut snapshot = good.clone();
        let mut config = pfs_config();
        tamper(&mut snapshot, &mut config);
        assert_eq!(restore(snapshot, config).unwrap_err(), want, "case {i}");
    }
}

#[test]
fn every_truncation_is_refused_without_panic() {
    let (_, snapshot) = busy();
    let bytes = encode(&snapshot);
    for len in 0..bytes.len() {
        if let Some(s) = decode(&bytes[..len]) {
            let _ = restore(s, pfs_config());
        }
    }
}

#[test]
fn snapshot_debug_shows_no_key_bytes() {
    let (pair, snapshot) = busy();
    let debug = format!("{snapshot:?}");
    let keys = &snapshot.session.keys;
    let mut secrets: Vec<Vec<u8>> = [
        &keys.sk_d,
        &keys.sk_ai,
        &keys.sk_ar,
        &keys.sk_ei,
        &keys.sk_er,
    ]
    .iter()
    .map(|k| k.as_bytes().to_vec())
    .collect();
    for c in &snapshot.children {
        for k in [&c.install.inbound, &c.install.outbound] {
            secrets.push(k.encr_key.as_bytes().to_vec());
            secrets.push(k.integ_key.as_bytes().to_vec());
        }
    }
    if let Some(a) = &snapshot.session.active
        && let ActiveKindSnapshot::CreateChild(c) = &a.kind
        && let Some(dh) = &c.dh
    {
        secrets.push(dh.private.as_bytes().to_vec());
    }
    let secrets: Vec<Vec<u8>> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
    // GCM: SK_d, SK_ei, SK_er, two children's encryption keys each way, the DH value.
    assert_eq!(secrets.len(), 8);
    for s in secrets {
        let list = format!("{s:?}");
        let inner = list.trim_start_matches('[').trim_end_matches(']');
        assert!(!debug.contains(inner), "key bytes in Debug");
        assert!(!debug.contains(&hex::encode(&s)), "key hex in Debug");
    }
    assert!(debug.contains("redacted"));
    // The same for the data plane's record of a child SA.
    let install = installs(&pair.events_i)[0];
    assert!(!format!("{install:?}").contains(&hex::encode(install.inbound.encr_key.as_bytes())));
}

/// A decoded snapshot that restore() accepted is run a little: nothing may panic.
fn exercise(mut sa: IkeSa, now: Instant) {
    let mut buf = Vec::new();
    for step in [0u64, 1, 30, 3600, 86_400] {
        let t = now + Duration::from_secs(step);
        sa.handle_timeout(t);
        let _ = sa.poll_timeout();
        while sa.poll_transmit(&mut buf).is_some() {}
        while sa.poll_event().is_some() {}
        let _ = sa.state_version();
        let _ = sa.snapshot(t);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_encodings_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        static BUSY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let mut bytes = BUSY.get_or_init(|| encode(&busy().1)).clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let now = Instant::now();
        if let Some(s) = decode(&bytes)
            && let Ok(sa) = IkeSa::restore(pfs_config(), s, rng(1), now)
        {
            exercise(sa, now);
        }
    }
}
