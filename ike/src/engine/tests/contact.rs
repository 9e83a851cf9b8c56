//! INITIAL_CONTACT (RFC 7296 §2.4): sent in IKE_AUTH when configured, reported by the
//! receiving side only once the sender is authenticated.

use super::*;
use crate::wire::{Identity, NotifyType, Payload};

/// Whether the IKE_AUTH message the given side sent carries INITIAL_CONTACT.
fn auth_carries_initial_contact(pair: &Pair, from_initiator: bool) -> bool {
    let (_, datagram) = pair
        .log
        .iter()
        .filter(|(i, _)| *i == from_initiator)
        .nth(1)
        .expect("an IKE_AUTH message");
    let reader = if from_initiator {
        &pair.responder
    } else {
        &pair.initiator
    };
    let (_, payloads) = reader
        .recv_cipher()
        .unwrap()
        .open_payloads(datagram)
        .unwrap();
    payloads
        .iter()
        .any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::InitialContact))
}

fn contact_events(events: &[Event]) -> Vec<&Identity> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::InitialContact { peer } => Some(peer),
            _ => None,
        })
        .collect()
}

#[test]
fn initiator_contact_is_reported_between_established_and_the_first_child() {
    let mut ci = config(true);
    ci.initial_contact = true;
    let mut pair = Pair::established(ci, config(false));
    assert!(auth_carries_initial_contact(&pair, true));
    assert!(!auth_carries_initial_contact(&pair, false));
    let (spi_i, spi_r) = pair.responder.spis();
    let peer = Identity::Fqdn("a.test".into());
    assert_eq!(
        pair.events_r[..2],
        [
            Event::Established { spi_i, spi_r },
            Event::InitialContact { peer: peer.clone() }
        ]
    );
    assert!(matches!(pair.events_r[2], Event::ChildSaReady(_)));
    assert!(contact_events(&pair.events_i).is_empty());
    // Only the first IKE_AUTH carries it: later exchanges report nothing more.
    pair.initiator.rekey_ike(pair.now).unwrap();
    pair.drive();
    let child = pair.initiator.child_sas()[0].0;
    pair.initiator.rekey_child(child, pair.now).unwrap();
    pair.drive();
    assert_eq!(contact_events(&pair.events_r), [&peer]);
}

#[test]
fn responder_contact_is_reported_to_the_initiator() {
    let mut cr = config(false);
    cr.initial_contact = true;
    let pair = Pair::established(config(true), cr);
    assert!(auth_carries_initial_contact(&pair, false));
    assert!(!auth_carries_initial_contact(&pair, true));
    assert_eq!(
        contact_events(&pair.events_i),
        [&Identity::Fqdn("b.test".into())]
    );
    assert!(contact_events(&pair.events_r).is_empty());
}

#[test]
fn nothing_is_sent_or_reported_unless_configured() {
    let pair = Pair::established(config(true), config(false));
    assert!(!auth_carries_initial_contact(&pair, true));
    assert!(!auth_carries_initial_contact(&pair, false));
    assert!(contact_events(&pair.events_i).is_empty());
    assert!(contact_events(&pair.events_r).is_empty());
}

#[test]
fn an_unauthenticated_contact_deletes_nothing() {
    // Otherwise anyone could make the responder drop its SAs with a.test.
    let mut ci = config(true);
    ci.initial_contact = true;
    ci.auth = LocalAuth::Psk(SecretBytes::from_slice(b"not the key"));
    let mut pair = Pair::new(ci, config(false));
    pair.drive();
    assert_eq!(
        pair.events_r,
        vec![Event::Failed(IkeError::AuthenticationFailed)]
    );
}
