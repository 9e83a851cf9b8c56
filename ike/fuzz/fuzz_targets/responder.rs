//! Feeds a sequence of datagrams to a fresh responder IKE SA: no input may panic it,
//! whatever state the earlier datagrams left it in. The input is a list of datagrams,
//! each prefixed with its 16-bit big-endian length, so seeds can start from a valid
//! IKE_SA_INIT.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use ike::crypto::{DhGroup, Encr, Prf, SecretBytes};
use ike::engine::{ChildSuite, IkeConfig, IkeSa, IkeSuite};
use ike::wire::{AddrRange, Identity, IpSelector};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn config() -> IkeConfig {
    let net = |a| {
        IpSelector::any(AddrRange::V4 {
            start: Ipv4Addr::new(10, a, 0, 0),
            end: Ipv4Addr::new(10, a, 255, 255),
        })
    };
    let mut c = IkeConfig::new(
        Identity::Fqdn("b.test".into()),
        SecretBytes::from_slice(b"fuzz"),
    );
    c.ike_suites = vec![IkeSuite {
        encr: Encr::AesGcm16_128,
        integ: None,
        prf: Prf::HmacSha256,
        dh: DhGroup::Ecp256,
    }];
    c.child_suites = vec![ChildSuite::Esp {
        encr: Encr::AesGcm16_128,
        integ: None,
        esn: false,
    }];
    c.local_ts = vec![net(2)];
    c.remote_ts = vec![net(1)];
    c
}

fn datagrams(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (d, rest) = rest.split_at(len);
        data = rest;
        Some(d)
    })
}

fuzz_target!(|data: &[u8]| {
    let from = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 500));
    let to = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 500));
    let mut now = Instant::now();
    let mut sa = IkeSa::respond(
        config(),
        to,
        from,
        Box::new(ChaCha20Rng::seed_from_u64(0)),
        now,
    );
    let mut buf = Vec::new();
    for d in datagrams(data).take(8) {
        let _ = sa.handle_datagram(now, SystemTime::UNIX_EPOCH, from, to, d);
        while sa.poll_transmit(&mut buf).is_some() {}
        while sa.poll_event().is_some() {}
        now += Duration::from_secs(1);
        sa.handle_timeout(now);
    }
});
