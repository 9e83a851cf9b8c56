//! USE_TRANSPORT_MODE (RFC 7296 §1.3.1) in IKE_AUTH and CREATE_CHILD_SA: granted,
//! declined (the initiator deletes the SA), and kept through rekeys and failover.

use super::*;

fn with_mode(initiator: bool, mode: IpsecMode) -> IkeConfig {
    IkeConfig {
        child_mode: mode,
        ..config(initiator)
    }
}

fn modes(events: &[Event]) -> Vec<IpsecMode> {
    installs(events).iter().map(|c| c.mode).collect()
}

const TRANSPORT: IpsecMode = IpsecMode::Transport;
const TUNNEL: IpsecMode = IpsecMode::Tunnel;

#[test]
fn transport_asked_and_granted_holds_through_rekeys() {
    let mut pair = Pair::established(with_mode(true, TRANSPORT), with_mode(false, TRANSPORT));
    assert_eq!(modes(&pair.events_i), [TRANSPORT]);
    assert_eq!(modes(&pair.events_r), [TRANSPORT]);
    // Rekeyed from either end, the pair stays in transport mode.
    let spi = pair.initiator.child_sas()[0].0;
    pair.initiator.rekey_child(spi, pair.now).unwrap();
    pair.drive();
    let spi = pair.responder.child_sas()[0].0;
    pair.responder.rekey_child(spi, pair.now).unwrap();
    pair.drive();
    assert_eq!(modes(&pair.events_i), [TRANSPORT; 3]);
    assert_eq!(modes(&pair.events_r), [TRANSPORT; 3]);
    // An extra child asks for it too.
    pair.initiator
        .create_child(with_mode(true, TRANSPORT).first_child(), pair.now)
        .unwrap();
    pair.drive();
    assert_eq!(modes(&pair.events_r), [TRANSPORT; 4]);
    assert_eq!(settled(&pair).len(), 2);
}

#[test]
fn declined_transport_is_deleted_by_the_initiator() {
    let mut pair = Pair::new(with_mode(true, TRANSPORT), with_mode(false, TUNNEL));
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    // The responder made a tunnel-mode SA; the initiator never installs it and deletes
    // it at the responder.
    assert!(installs(&pair.events_i).is_empty());
    assert_eq!(modes(&pair.events_r), [TUNNEL]);
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::ModeMismatch {
                asked: TRANSPORT,
                answered: TUNNEL,
            }))
    );
    assert_eq!(
        deleted(&pair.events_r),
        [installs(&pair.events_r)[0].inbound.spi]
    );
    assert!(settled(&pair).is_empty());
    assert!(pair.initiator.is_established());
}

#[test]
fn a_tunnel_request_gets_tunnel_mode_from_a_transport_responder() {
    // The initiator chooses: a responder that allows transport does not impose it.
    let pair = Pair::established(with_mode(true, TUNNEL), with_mode(false, TRANSPORT));
    assert_eq!(modes(&pair.events_i), [TUNNEL]);
    assert_eq!(modes(&pair.events_r), [TUNNEL]);
}

#[test]
fn create_child_in_a_declined_mode_leaves_the_others_alone() {
    let mut pair = Pair::established(config(true), config(false));
    let first = pair.agreed_children();
    pair.initiator
        .create_child(with_mode(true, TRANSPORT).first_child(), pair.now)
        .unwrap();
    pair.drive();
    assert!(
        pair.events_i
            .contains(&Event::ChildSaFailed(IkeError::ModeMismatch {
                asked: TRANSPORT,
                answered: TUNNEL,
            }))
    );
    assert_eq!(settled(&pair), first);
}

#[test]
fn a_restored_responder_rekeys_in_transport_mode() {
    let mut pair = Pair::established(with_mode(true, TRANSPORT), with_mode(false, TRANSPORT));
    // The standby restores with a tunnel-only configuration: the SA's own mode decides
    // its rekey, not the configuration.
    pair.replicate_side(false, with_mode(false, TUNNEL));
    pair.fail_over();
    let spi = pair.initiator.child_sas()[0].0;
    pair.initiator.rekey_child(spi, pair.now).unwrap();
    pair.drive();
    assert_eq!(modes(&pair.events_i), [TRANSPORT; 2]);
    assert_eq!(modes(&pair.events_r), [TRANSPORT; 2]);
    assert_eq!(settled(&pair).len(), 1);
}
