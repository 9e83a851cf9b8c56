//! ESP encap+decap per transform and payload size, beside ring's raw AEAD seal+open of
//! the same payload in the same run, with the ratio (raw time / our time) printed at
//! the end: 1.0 would mean the whole ESP path costs nothing over the cipher itself.
//!
//! `cargo bench -p dataplane --bench esp` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use dataplane::buf::PacketBuf;
use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::engine::{Engine, EngineConfig, Inbound, Outbound, UdpMeta};
use dataplane::ip::{self, OuterHeader, proto};
use dataplane::sa::{Direction, SaConfig, UdpEncap};
use ring::aead;

const SIZES: [usize; 4] = [64, 512, 1400, 8900];
const SUITES: [(EncrAlg, IntegAlg); 5] = [
    (EncrAlg::AesGcm128, IntegAlg::None),
    (EncrAlg::AesGcm256, IntegAlg::None),
    (EncrAlg::ChaCha20Poly1305, IntegAlg::None),
    (EncrAlg::AesCbc128, IntegAlg::HmacSha256_128),
    (EncrAlg::AesCbc256, IntegAlg::HmacSha256_128),
];

fn suite_name(e: EncrAlg, i: IntegAlg) -> String {
    if i == IntegAlg::None {
        e.name().to_string()
    } else {
        format!("{}+{}", e.name(), i.name())
    }
}

/// An IPv4/UDP inner packet with `payload` bytes of UDP payload.
fn inner(payload: usize) -> Vec<u8> {
    let total = 28 + payload;
    let mut p = vec![0xa5u8; total];
    let h = OuterHeader {
        src: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1)),
        tos: 0,
        ttl: 64,
        protocol: proto::UDP,
        df: false,
        id: 0,
    };
    ip::write_ipv4(
        &mut p,
        &h,
        Ipv4Addr::new(10, 1, 0, 1),
        Ipv4Addr::new(10, 2, 0, 1),
        total as u16,
    );
    p
}

fn engines(encr: EncrAlg, integ: IntegAlg) -> (Engine, Engine) {
    let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let mut cfg = SaConfig::esp_tunnel(Direction::Outbound, 0x1234_5678, a, b)
        .with_encryption(encr, &vec![7; encr.key_len()])
        .with_integrity(integ, &vec![9; integ.key_len()]);
    cfg.udp_encap = Some(UdpEncap {
        local_port: 4500,
        remote_port: 4500,
    });
    cfg.path_mtu = 9216;
    cfg.esn = true;
    let mut tx = Engine::new(EngineConfig::default());
    tx.install_sa(cfg.clone()).expect("outbound SA");
    cfg.direction = Direction::Inbound;
    cfg.local = b;
    cfg.remote = a;
    let mut rx = Engine::new(EngineConfig::default());
    rx.install_sa(cfg).expect("inbound SA");
    (tx, rx)
}

fn bench_esp(c: &mut Criterion) {
    let meta = UdpMeta {
        src: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 4500),
        dst: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 4500),
        ecn: 0,
    };
    for (encr, integ) in SUITES {
        let name = suite_name(encr, integ);
        let mut group = c.benchmark_group(format!("esp/{name}"));
        for size in SIZES {
            let template = inner(size - 28);
            group.throughput(Throughput::Bytes(size as u64));
            let (mut tx, mut rx) = engines(encr, integ);
            let mut buf = PacketBuf::default();
            // A worker reads the clock once per batch, not per packet.
            let now = Instant::now();
            group.bench_function(BenchmarkId::new("encap+decap", size), |b| {
                b.iter(|| {
                    buf.set_contents(dataplane::buf::DEFAULT_HEADROOM, &template)
                        .expect("fits");
                    let out = tx.outbound(now, &mut buf, 0);
                    debug_assert!(matches!(out, Outbound::Transmit { .. }));
                    // What the UDP socket hands over: the ESP packet after IP+UDP.
                    buf.trim_front(28).expect("headers");
                    let r = rx.inbound_udp(now, &mut buf, meta);
                    debug_assert!(matches!(r, Inbound::Deliver { .. }));
                    black_box(r);
                })
            });
            if let Some(alg) = raw_alg(encr) {
                let key_len = alg.key_len();
                let key = aead::LessSafeKey::new(
                    aead::UnboundKey::new(alg, &vec![7; key_len]).expect("key"),
                );
                let mut raw = vec![0u8; size + 16];
                let mut ctr = 0u64;
                group.bench_function(BenchmarkId::new("ring-seal+open", size), |b| {
                    b.iter(|| {
                        raw[..size].copy_from_slice(&template);
                        ctr += 1;
                        let mut n = [0u8; 12];
                        n[4..].copy_from_slice(&ctr.to_be_bytes());
                        let aad = ctr.to_be_bytes();
                        let (body, tag_out) = raw.split_at_mut(size);
                        let tag = key
                            .seal_in_place_separate_tag(
                                aead::Nonce::assume_unique_for_key(n),
                                aead::Aad::from(aad),
                                body,
                            )
                            .expect("seal");
                        tag_out[..16].copy_from_slice(tag.as_ref());
                        let opened = key
                            .open_in_place(
                                aead::Nonce::assume_unique_for_key(n),
                                aead::Aad::from(aad),
                                &mut raw[..size + 16],
                            )
                            .expect("open");
                        black_box(opened.len());
                    })
                });
            }
        }
        group.finish();
    }
}

fn raw_alg(encr: EncrAlg) -> Option<&'static aead::Algorithm> {
    match encr {
        EncrAlg::AesGcm128 => Some(&aead::AES_128_GCM),
        EncrAlg::AesGcm256 => Some(&aead::AES_256_GCM),
        EncrAlg::ChaCha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
        _ => None,
    }
}

/// Reads criterion's point estimate (ns) of a benchmark from its saved results.
fn estimate_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string());
    let path = format!("{dir}/criterion/{group}/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let p = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest[p..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
        .collect();
    num.parse().ok()
}

fn report() {
    println!(
        "\nESP encap+decap vs ring raw AEAD seal+open (median ns per packet; ratio = raw / ours)"
    );
    println!(
        "{:<36} {:>6} {:>12} {:>12} {:>7}",
        "suite", "bytes", "ours ns", "raw ns", "ratio"
    );
    for (encr, integ) in SUITES {
        let name = suite_name(encr, integ);
        let group = format!("esp_{name}");
        for size in SIZES {
            let ours = estimate_ns(&group, &format!("encap+decap/{size}"));
            let raw = estimate_ns(&group, &format!("ring-seal+open/{size}"));
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            let ratio = match (ours, raw) {
                (Some(o), Some(r)) => format!("{:.2}", r / o),
                _ => "-".to_string(),
            };
            println!(
                "{:<36} {:>6} {:>12} {:>12} {:>7}",
                name,
                size,
                fmt(ours),
                fmt(raw),
                ratio
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    bench_esp(&mut c);
    c.final_summary();
    report();
}
