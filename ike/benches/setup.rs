//! IKE SA + first child SA setups per second, in memory (PSK, both roles driven in one
//! thread), beside the Diffie-Hellman work one setup needs (two key generations and two
//! agreements of the same group) measured in the same run, with the exportable values
//! of CREATE_CHILD_SA (`DhSecret::generate`, RustCrypto for ECP) and the one-shot ones
//! IKE_SA_INIT uses (`DhSecret::generate_ephemeral`, ring). The table at the
//! end gives setups per second, the share of a setup that IKE_SA_INIT's DH operations
//! take, and how much faster those are than the exportable ones.
//!
//! `CARGO_TARGET_DIR=target-ike cargo bench -p ike --bench setup` (add `-- --quick`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;
use ike::crypto::{DhGroup, DhSecret, SecretBytes};
use ike::engine::{ChildSuite, Event, IkeConfig, IkeSa, IkeSuite};
use ike::wire::{AddrRange, Identity, IpSelector};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const GROUPS: [(DhGroup, &str); 2] = [(DhGroup::Ecp256, "ecp256"), (DhGroup::Curve25519, "x25519")];

fn net(a: u8) -> IpSelector {
    IpSelector::any(AddrRange::V4 {
        start: Ipv4Addr::new(10, a, 0, 0),
        end: Ipv4Addr::new(10, a, 255, 255),
    })
}

fn config(initiator: bool, dh: DhGroup) -> IkeConfig {
    let (local, remote, l, r) = if initiator {
        ("a.test", "b.test", 1, 2)
    } else {
        ("b.test", "a.test", 2, 1)
    };
    IkeConfig {
        remote_id: Some(Identity::Fqdn(remote.into())),
        ike_suites: vec![IkeSuite::aes128_gcm(dh)],
        child_suites: vec![ChildSuite::esp_aes128_gcm()],
        local_ts: vec![net(l)],
        remote_ts: vec![net(r)],
        ..IkeConfig::new(
            Identity::Fqdn(local.into()),
            SecretBytes::from_slice(b"interop-test-psk-0123456789"),
        )
    }
}

/// One complete IKE_SA_INIT + IKE_AUTH exchange; returns the child SA count.
fn setup(ci: &IkeConfig, cr: &IkeConfig, seed: u64, buf: &mut Vec<u8>) -> usize {
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
    let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);
    let now = Instant::now();
    let wall = SystemTime::now();
    let rng = |s| Box::new(ChaCha20Rng::seed_from_u64(s));
    let mut i = IkeSa::initiate(ci.clone(), a, b, rng(seed), now).expect("initiate");
    let mut r = IkeSa::respond(cr.clone(), b, a, rng(!seed), now);
    for _ in 0..2 {
        while let Some(t) = i.poll_transmit(buf) {
            let _ = r.handle_datagram(now, wall, t.local, t.destination, buf);
        }
        while let Some(t) = r.poll_transmit(buf) {
            let _ = i.handle_datagram(now, wall, t.local, t.destination, buf);
        }
    }
    let children = std::iter::from_fn(|| i.poll_event())
        .filter(|e| matches!(e, Event::ChildSaReady(_)))
        .count();
    debug_assert!(i.is_established() && r.is_established());
    children
}

fn bench_setup(c: &mut Criterion) {
    for (group, name) in GROUPS {
        let mut g = c.benchmark_group(format!("setup/{name}"));
        let (ci, cr) = (config(true, group), config(false, group));
        let mut buf = Vec::new();
        let mut seed = 0u64;
        assert_eq!(setup(&ci, &cr, seed, &mut buf), 1, "setup must work");
        g.bench_function("ike+child", |b| {
            b.iter(|| {
                seed += 1;
                black_box(setup(&ci, &cr, seed, &mut buf))
            })
        });
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        type Keygen = fn(DhGroup, &mut ChaCha20Rng) -> Result<DhSecret, ike::crypto::CryptoError>;
        let kinds: [(&str, Keygen); 2] = [
            ("dh-2keygen+2agree", |g, r| DhSecret::generate(g, r)),
            ("ephemeral-dh-2keygen+2agree", |g, r| {
                DhSecret::generate_ephemeral(g, r)
            }),
        ];
        for (id, keygen) in kinds {
            g.bench_function(id, |b| {
                b.iter(|| {
                    let x = keygen(group, &mut rng).expect("keygen");
                    let y = keygen(group, &mut rng).expect("keygen");
                    let s1 = x.agree(y.public_value()).expect("agree");
                    let s2 = y.agree(x.public_value()).expect("agree");
                    black_box((s1, s2))
                })
            });
        }
        g.finish();
    }
}

/// Reads criterion's median estimate (ns) of a benchmark from its saved results.
fn estimate_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string());
    let path = format!("{dir}/criterion/{group}/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"median\"")?;
    let rest = text.get(at..)?;
    let p = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest
        .get(p..)?
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
        .collect();
    num.parse().ok()
}

fn report() {
    println!(
        "\nIKE SA + child SA setup vs the DH work it contains (median). IKE_SA_INIT DH: one-shot \
         values (ring for P-256 and X25519); exportable: CREATE_CHILD_SA's (RustCrypto, x25519-dalek)"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>18} {:>10} {:>16} {:>20}",
        "group",
        "setup us",
        "setups/s",
        "IKE_SA_INIT DH us",
        "DH / setup",
        "exportable DH us",
        "exportable / one-shot"
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "-".to_string(),
    };
    for (_, name) in GROUPS {
        let group = format!("setup_{name}");
        let ours = estimate_ns(&group, "ike+child");
        let exportable = estimate_ns(&group, "dh-2keygen+2agree");
        let one_shot = estimate_ns(&group, "ephemeral-dh-2keygen+2agree");
        let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", v / 1e3));
        let per_s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}", 1e9 / v));
        println!(
            "{:<8} {:>10} {:>10} {:>18} {:>10} {:>16} {:>20}",
            name,
            us(ours),
            per_s(ours),
            us(one_shot),
            ratio(one_shot, ours),
            us(exportable),
            ratio(exportable, one_shot)
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench_setup(&mut c);
    c.final_summary();
    report();
}
