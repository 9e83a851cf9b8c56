//! IKE SA + first child SA setups per second, in memory (PSK, both roles driven in one
//! thread, and each role's own share: its setups per second on a core of its own),
//! beside the Diffie-Hellman work one setup needs (two key generations and two
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

/// One complete IKE_SA_INIT + IKE_AUTH exchange; returns the child SA count. The time
/// spent in each role's calls is added to `clock` ([initiator, responder]): a role's
/// setups per second on one core of its own are 1 / its time per setup.
fn setup(
    ci: &IkeConfig,
    cr: &IkeConfig,
    seed: u64,
    buf: &mut Vec<u8>,
    clock: &mut [Duration; 2],
) -> usize {
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
    let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);
    let now = Instant::now();
    let wall = SystemTime::now();
    let rng = |s| Box::new(ChaCha20Rng::seed_from_u64(s));
    let mut timed = |role: usize, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        clock[role] += t.elapsed();
    };
    let mut i = None;
    timed(0, &mut || {
        i = Some(IkeSa::initiate(ci.clone(), a, b, rng(seed), now).expect("initiate"))
    });
    let i = i.expect("initiator");
    let mut r = None;
    timed(1, &mut || {
        r = Some(IkeSa::respond(cr.clone(), b, a, rng(!seed), now))
    });
    // [initiator, responder]: each side in turn sends all it has to the other, twice.
    let mut sas = [i, r.expect("responder")];
    for _ in 0..2 {
        for from in [0, 1] {
            let to = 1 - from;
            loop {
                let mut sent = None;
                timed(from, &mut || sent = sas[from].poll_transmit(buf));
                let Some(t) = sent else { break };
                timed(to, &mut || {
                    let _ = sas[to].handle_datagram(now, wall, t.local, t.destination, buf);
                });
            }
        }
    }
    let [mut i, r] = sas;
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
        let mut clock = [Duration::ZERO; 2];
        assert_eq!(
            setup(&ci, &cr, seed, &mut buf, &mut clock),
            1,
            "setup must work"
        );
        g.bench_function("ike+child", |b| {
            b.iter(|| {
                seed += 1;
                black_box(setup(&ci, &cr, seed, &mut buf, &mut clock))
            })
        });
        for (role, id) in [(0, "initiator"), (1, "responder")] {
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut spent = [Duration::ZERO; 2];
                    for _ in 0..iters {
                        seed += 1;
                        black_box(setup(&ci, &cr, seed, &mut buf, &mut spent));
                    }
                    spent[role]
                })
            });
        }
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
    println!(
        "\nEach role on one core of its own: setups per second (median time of that role's \
         calls per setup), and the share of it that one side's one-shot DH (1 keygen + 1 agree) takes"
    );
    println!(
        "{:<8} {:>14} {:>14} {:>16} {:>22} {:>22}",
        "group",
        "initiator/s",
        "responder/s",
        "1 side's DH/s",
        "DH share (initiator)",
        "DH share (responder)"
    );
    for (_, name) in GROUPS {
        let group = format!("setup_{name}");
        let role = |id| estimate_ns(&group, id);
        let (ini, rsp) = (role("initiator"), role("responder"));
        // The DH bench does both sides' work: one side is half of it.
        let side_dh = estimate_ns(&group, "ephemeral-dh-2keygen+2agree").map(|v| v / 2.0);
        let per_s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}", 1e9 / v));
        println!(
            "{:<8} {:>14} {:>14} {:>16} {:>22} {:>22}",
            name,
            per_s(ini),
            per_s(rsp),
            per_s(side_dh),
            ratio(side_dh, ini),
            ratio(side_dh, rsp)
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
