//! NAT detection, the float to UDP 4500, forced encapsulation and NAT mapping changes.

use super::*;
use crate::engine::natt::NatStatus;

fn last_transmit(pair: &Pair, from_initiator: bool) -> Transmit {
    pair.transmits
        .iter()
        .rev()
        .find(|(fi, _)| *fi == from_initiator)
        .map(|(_, t)| *t)
        .unwrap()
}

#[test]
fn without_nat_everything_stays_on_500() {
    let mut pair = Pair::new(config(true), config(false));
    pair.drive();
    assert!(pair.initiator.is_established());
    assert!(
        pair.transmits.iter().all(|(_, t)| !t.non_esp_marker
            && t.local.port() == 500
            && t.destination.port() == 500)
    );
    assert_eq!(installs(&pair.events_i)[0].udp_encap, None);
    assert_eq!(installs(&pair.events_r)[0].udp_encap, None);
    assert!(
        !pair
            .events_i
            .iter()
            .any(|e| matches!(e, Event::NatDetected(_)))
    );
    assert_eq!(pair.initiator.nat_status(), NatStatus::default());
}

#[test]
fn initiator_behind_nat_floats_to_4500() {
    let mut pair = Pair::new(config(true), config(false));
    pair.nat = Some(NAT_SHIFT);
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    assert!(pair.events_i.contains(&Event::NatDetected(NatStatus {
        local_behind: true,
        remote_behind: false
    })));
    assert!(pair.events_r.contains(&Event::NatDetected(NatStatus {
        local_behind: false,
        remote_behind: true
    })));
    // IKE_SA_INIT on 500 without marker, IKE_AUTH on 4500 with it.
    let (_, first) = pair.transmits[0];
    assert!(!first.non_esp_marker && first.local.port() == 500);
    let auth = last_transmit(&pair, true);
    assert!(auth.non_esp_marker);
    assert_eq!((auth.local.port(), auth.destination.port()), (4500, 4500));
    let answer = last_transmit(&pair, false);
    assert!(answer.non_esp_marker);
    assert_eq!(answer.destination, addr(IP_NAT, 4500 + NAT_SHIFT));
    assert_eq!(answer.local, addr(IP_R, 4500));
    assert_eq!(installs(&pair.events_i)[0].udp_encap, Some((4500, 4500)));
    assert_eq!(
        installs(&pair.events_r)[0].udp_encap,
        Some((4500, 4500 + NAT_SHIFT))
    );
    assert_eq!(
        pair.initiator.nat_keepalive(),
        Some(std::time::Duration::from_secs(20))
    );
    assert_eq!(pair.responder.nat_keepalive(), None);
}

#[test]
fn force_encap_fakes_nat_detection_like_strongswan() {
    let mut ci = config(true);
    ci.force_encap = true;
    let mut pair = Pair::new(ci, config(false));
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    // The responder believes the initiator is behind a NAT; the initiator encapsulates
    // because it was told to.
    assert!(pair.events_r.contains(&Event::NatDetected(NatStatus {
        local_behind: false,
        remote_behind: true
    })));
    assert_eq!(pair.initiator.nat_status(), NatStatus::default());
    assert_eq!(installs(&pair.events_i)[0].udp_encap, Some((4500, 4500)));
    assert_eq!(installs(&pair.events_r)[0].udp_encap, Some((4500, 4500)));
    assert!(last_transmit(&pair, false).non_esp_marker);
}

#[test]
fn responder_follows_a_changed_nat_mapping() {
    let mut pair = Pair::new(config(true), config(false));
    pair.nat = Some(NAT_SHIFT);
    pair.drive();
    // The NAT reboots and maps 4500 to another port.
    pair.nat = Some(NAT_SHIFT + 7);
    pair.initiator
        .create_child(config(true).first_child(), pair.now)
        .unwrap();
    pair.drive();
    let (old, new) = (
        addr(IP_NAT, 4500 + NAT_SHIFT),
        addr(IP_NAT, 4500 + NAT_SHIFT + 7),
    );
    assert!(
        pair.events_r
            .contains(&Event::PeerAddressChanged { old, new })
    );
    assert_eq!(last_transmit(&pair, false).destination, new);
    assert_eq!(pair.agreed_children().len(), 2);
}
