//! Message-ID window, COOKIE, fragmentation and configuration payloads.

use std::net::Ipv4Addr;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::engine::cookie::{CookieResponder, Decision};
use crate::engine::pool::AddressPool;
use crate::wire::{ExchangeType, Flags, Header, Message, NotifyType, Payload, locate_encrypted};

fn forge(pair: &Pair, response: bool, id: u32) -> Vec<u8> {
    let (spi_i, spi_r) = pair.responder.spis();
    let header = Header {
        spi_i,
        spi_r,
        minor_version: 0,
        exchange: ExchangeType::Informational,
        flags: Flags::new(false, response),
        message_id: id,
    };
    let mut out = Vec::new();
    pair.responder
        .send_cipher()
        .unwrap()
        .seal_payloads(&header, &[], &mut ChaCha20Rng::seed_from_u64(5), &mut out)
        .unwrap();
    out
}

#[test]
fn requests_outside_the_window_and_stray_responses_are_ignored() {
    let mut pair = Pair::established(config(true), config(false));
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    let mut buf = Vec::new();
    // A response to a request the initiator never sent.
    let stray = forge(&pair, true, 5);
    assert!(
        pair.initiator
            .handle_datagram(pair.now, pair.wall, ar, ai, &stray)
            .is_err()
    );
    // A request from the future (the window is 1: only id 0 is expected).
    let ahead = forge(&pair, false, 1);
    assert!(
        pair.initiator
            .handle_datagram(pair.now, pair.wall, ar, ai, &ahead)
            .is_err()
    );
    assert!(pair.initiator.poll_transmit(&mut buf).is_none());
    // In order: 0 then 1 are answered; 0 again is a retransmission (cached answer is
    // gone once 1 was answered, so it is ignored).
    for id in 0..2 {
        let req = forge(&pair, false, id);
        pair.initiator
            .handle_datagram(pair.now, pair.wall, ar, ai, &req)
            .unwrap();
        assert!(pair.initiator.poll_transmit(&mut buf).is_some());
    }
    let old = forge(&pair, false, 0);
    assert!(
        pair.initiator
            .handle_datagram(pair.now, pair.wall, ar, ai, &old)
            .is_err()
    );
    assert!(pair.initiator.poll_transmit(&mut buf).is_none());
    assert!(pair.initiator.is_established());
}

#[test]
fn cookie_challenge_round_trip() {
    let mut cookies = CookieResponder::new(&mut ChaCha20Rng::seed_from_u64(7));
    let mut pair = Pair::new(config(true), config(false));
    let (ai, ar) = (addr(IP_I, 500), addr(IP_R, 500));
    let mut first = Vec::new();
    pair.initiator.poll_transmit(&mut first).unwrap();
    let Decision::Challenge(challenge) = cookies.check_or_challenge(&first, ai) else {
        panic!("expected a challenge");
    };
    let m = Message::parse(&challenge).unwrap();
    assert!(m.header.flags.response() && m.header.spi_r == 0);
    pair.initiator
        .handle_datagram(pair.now, pair.wall, ar, ai, &challenge)
        .unwrap();
    let mut second = Vec::new();
    pair.initiator.poll_transmit(&mut second).unwrap();
    let m2 = Message::parse(&second).unwrap();
    assert!(matches!(&m2.payloads[0], Payload::Notify(n) if n.notify_type == NotifyType::Cookie));
    // Everything but the cookie is unchanged (same KE, same nonce).
    assert_eq!(
        m2.payloads[1..],
        Message::parse(&first).unwrap().payloads[..]
    );
    assert_eq!(cookies.check_or_challenge(&second, ai), Decision::Proceed);
    // Bound to the source address; still good after one rotation, not after two.
    assert!(matches!(
        cookies.check_or_challenge(&second, addr(IP_NAT, 500)),
        Decision::Challenge(_)
    ));
    cookies.rotate(&mut ChaCha20Rng::seed_from_u64(8));
    assert_eq!(cookies.check_or_challenge(&second, ai), Decision::Proceed);
    cookies.rotate(&mut ChaCha20Rng::seed_from_u64(9));
    assert!(matches!(
        cookies.check_or_challenge(&second, ai),
        Decision::Challenge(_)
    ));
    assert_eq!(cookies.check_or_challenge(&[1, 2, 3], ai), Decision::Drop);
    pair.responder
        .handle_datagram(pair.now, pair.wall, ai, ar, &second)
        .unwrap();
    pair.drive();
    assert!(pair.initiator.is_established() && pair.responder.is_established());
    assert_eq!(pair.agreed_children().len(), 1);
}

fn fragmented(ci: &mut IkeConfig, cr: &mut IkeConfig, size: usize) {
    ci.fragment_size = size;
    cr.fragment_size = size;
    ci.local_ts = (0..12).map(|i| net(i * 2 + 1)).collect();
}

#[test]
fn fragmentation_round_trip_with_loss() {
    for lost in [None, Some(2), Some(3), Some(5)] {
        let (mut ci, mut cr) = (config(true), config(false));
        fragmented(&mut ci, &mut cr, 200);
        let mut pair = Pair::new(ci, cr);
        if let Some(n) = lost {
            pair.drop_nth(n);
        }
        pair.drive();
        assert!(pair.initiator.is_established(), "lost {lost:?}");
        assert!(pair.responder.is_established());
        let frags = pair
            .log
            .iter()
            .filter(|(_, d)| locate_encrypted(d).is_ok_and(|s| s.fragment.is_some()))
            .count();
        assert!(frags >= 3, "IKE_AUTH went in fragments");
        // IKE_SA_INIT cannot be fragmented; every protected message fits.
        assert!(
            pair.log
                .iter()
                .filter(|(_, d)| locate_encrypted(d).is_ok())
                .all(|(_, d)| d.len() <= 200)
        );
        assert_eq!(pair.agreed_children().len(), 1);
        let (ci, cr) = (installs(&pair.events_i)[0], installs(&pair.events_r)[0]);
        assert_eq!(ci.inbound, cr.outbound);
    }
}

#[test]
fn no_fragments_unless_both_support_them() {
    let (mut ci, mut cr) = (config(true), config(false));
    fragmented(&mut ci, &mut cr, 200);
    cr.fragmentation = false;
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    assert!(pair.initiator.is_established());
    assert!(
        pair.log
            .iter()
            .all(|(_, d)| locate_encrypted(d).map_or(true, |s| s.fragment.is_none()))
    );
}

#[test]
fn reassembly_is_bounded() {
    let (mut ci, mut cr) = (config(true), config(false));
    fragmented(&mut ci, &mut cr, 200);
    cr.max_fragments = 2;
    let mut pair = Pair::new(ci, cr);
    pair.drive();
    assert!(!pair.responder.is_established());
    assert!(pair.initiator.is_failed());
    assert_eq!(pair.events_i, vec![Event::Failed(IkeError::Timeout)]);
}

fn remote_access(pool: &SharedPool) -> (IkeConfig, IkeConfig) {
    let mut ci = config(true);
    ci.request_address = true;
    ci.local_ts = vec![IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::UNSPECIFIED,
        end: Ipv4Addr::BROADCAST,
    })];
    let mut cr = config(false);
    cr.address_pool = Some(pool.clone());
    (ci, cr)
}

#[test]
fn configuration_payload_assigns_and_releases_addresses() {
    let pool = AddressPool::new(
        Ipv4Addr::new(10, 9, 0, 1),
        Ipv4Addr::new(10, 9, 0, 1),
        Ipv4Addr::new(255, 255, 255, 0),
        vec![Ipv4Addr::new(10, 2, 0, 53)],
    )
    .shared();
    let (ci, cr) = remote_access(&pool);
    let mut first = Pair::new(ci.clone(), cr.clone());
    first.drive_for(Duration::from_secs(5));
    let assigned = Ipv4Addr::new(10, 9, 0, 1);
    assert!(first.events_i.contains(&Event::AddressAssigned {
        address: assigned,
        netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        dns: vec![Ipv4Addr::new(10, 2, 0, 53)],
    }));
    let host = IpSelector::any(AddrRange::V4 {
        start: assigned,
        end: assigned,
    });
    assert_eq!(installs(&first.events_i)[0].local_ts, vec![host]);
    assert_eq!(installs(&first.events_r)[0].remote_ts, vec![host]);

    // The pool is exhausted: the second client gets its IKE SA but no child SA.
    let mut second = Pair::with_seeds(ci, cr, 11, 12);
    second.drive_for(Duration::from_secs(5));
    assert!(second.initiator.is_established() && second.responder.is_established());
    assert!(
        second
            .events_i
            .contains(&Event::ChildSaFailed(IkeError::PeerError(
                NotifyType::InternalAddressFailure
            )))
    );
    assert!(second.agreed_children().is_empty());

    // Deleting the first IKE SA gives the address back.
    assert_eq!(pool.lock().unwrap().in_use(), 1);
    first.initiator.delete(first.now).unwrap();
    first.drive();
    assert!(first.responder.is_closed());
    assert_eq!(pool.lock().unwrap().in_use(), 0);
}
