//! `ikeload`: IKE SA + first child SA setups per second against one responder, driven by
//! the `ike` crate's sans-IO initiator over real UDP.
//!
//! Why not charon as the initiator (what bench/compare used first): it spends about as
//! much CPU per setup as a responder, so on a two-core machine it capped the measured
//! ratio at about 1.5x. Here one thread runs every initiator: IKE_SA_INIT's DH on ring,
//! no daemon, no logging, no kernel SA installation.
//!
//! Each tunnel `i` is one simulated peer with its own source address (the i-th after
//! `--first-source`), because a site-to-site responder (vpnd) matches its gateways by
//! the peer's address; all peers share one socket on port 500 and one on 4500, the
//! source chosen per datagram (IP_PKTINFO, through quinn-udp) and the tunnel found by
//! the destination of what comes back. Tunnel i proposes TSi = `--ts-base` plus i·256
//! as a /24 and TSr = `--remote-ts`, so each responder-side VPN can be told apart.
//!
//! PSK or ECDSA/RSA certificates (`--cert`), ECP-256 or Curve25519.
//!
//! `--inflight` setups run at once; a new one starts as soon as one ends. Established
//! tunnels are kept (and answered) until the end, so the responder holds them all when
//! `--responder-pid`'s memory is read. Prints one JSON object.

mod measure;
mod net;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use ike::cert::{Credential, TrustStore};
use ike::crypto::{DhGroup, SecretBytes};
use ike::engine::{ChildSuite, Event, IkeConfig, IkeSa, IkeSuite};
use ike::wire::{AddrRange, Identity, IpSelector};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ring::rand::SystemRandom;

use crate::measure::Proc;
use crate::net::{Datagram, RecvBufs, Sockets};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Group {
    Ecp256,
    X25519,
}

#[derive(Debug, Parser)]
#[command(about = "IKEv2 setups per second against one responder")]
struct Args {
    /// The responder's address (UDP 500).
    #[arg(long)]
    target: Ipv4Addr,
    /// Source address of tunnel 0; tunnel i uses this + i. Every one must be local
    /// (e.g. `ip route add local 172.16.0.0/16 dev lo`).
    #[arg(long)]
    first_source: Ipv4Addr,
    /// Tunnels to set up.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Setups in flight at once.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    #[arg(long, value_enum, default_value_t = Group::Ecp256)]
    dh: Group,
    /// Pre-shared key (both directions), unless `--cert` is given.
    #[arg(long, default_value = "bench-psk-0123456789abcdef")]
    psk: String,
    /// Authenticate with this certificate (PEM chain, ours first) and `--key` instead
    /// of the PSK; the responder's chain must end at `--ca`.
    #[arg(long, requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// PKCS#8 PEM private key of `--cert`.
    #[arg(long)]
    key: Option<PathBuf>,
    /// PEM CA certificates the responder's chain must end at.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long, default_value = "a.test")]
    local_id: String,
    #[arg(long, default_value = "b.test")]
    remote_id: String,
    /// TSi of tunnel i is this + i·256, /24.
    #[arg(long, default_value = "10.128.0.0")]
    ts_base: Ipv4Addr,
    /// TSr of every tunnel: ADDRESS/PREFIX.
    #[arg(long, default_value = "10.2.0.0/16")]
    remote_ts: String,
    /// Claim a NAT, so IKE_AUTH and ESP go over UDP 4500 (charon with kernel-libipsec
    /// cannot take raw ESP); strongSwan's `encap = yes`.
    #[arg(long)]
    encap: bool,
    /// Give up on setups not finished after this long.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// The responder process: its CPU time over the run and its memory before and
    /// after (read from /proc).
    #[arg(long)]
    responder_pid: Option<u32>,
    /// How long to keep answering after the last setup before reading the responder's
    /// memory.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
}

/// One simulated peer.
struct Tunnel {
    sa: IkeSa,
    started: Instant,
    outcome: Option<Result<Duration, String>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let report = run(&args)?;
    println!("{report}");
    Ok(())
}

fn run(args: &Args) -> Result<serde_json::Value> {
    let config = ike_config(args)?;
    let socks = Sockets::bind().context("binding UDP 500 and 4500 (another IKE daemon here?)")?;
    let target = SocketAddr::new(IpAddr::V4(args.target), 500);
    let responder = args.responder_pid.map(Proc::new);
    let before = responder.as_ref().map(Proc::sample).transpose()?;
    let me = Proc::new(std::process::id());
    let my_cpu0 = me.sample()?.cpu_ns;

    let count = args.count as usize;
    let mut tunnels: Vec<Tunnel> = Vec::with_capacity(count);
    let mut pending: Vec<usize> = Vec::new();
    let mut buf = Vec::with_capacity(2048);
    let mut bufs = RecvBufs::new();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let start = Instant::now();
    let give_up = start + Duration::from_secs(args.timeout_s);
    let mut finished_at = None;
    let mut next_scan = start;
    // Ours up to the last setup (not the settling time after it).
    let mut my_cpu = 0;

    loop {
        let now = Instant::now();
        while pending.len() < args.inflight && tunnels.len() < count {
            let i = tunnels.len();
            let local = SocketAddr::new(IpAddr::V4(source(args, i)?), 500);
            let mut tc = config.clone();
            tc.local_ts = vec![selector(ts_of(args.ts_base, i)?, 24)?];
            let rng = Box::new(ChaCha20Rng::from_entropy());
            let sa = IkeSa::initiate(tc, local, target, rng, now)
                .map_err(|e| anyhow::anyhow!("initiating tunnel {i}: {e}"))?;
            tunnels.push(Tunnel {
                sa,
                started: now,
                outcome: None,
            });
            pending.push(i);
            flush(&socks, &mut tunnels[i], &mut buf);
        }
        if pending.is_empty() && tunnels.len() == count {
            if finished_at.is_none() {
                my_cpu = me.sample()?.cpu_ns.saturating_sub(my_cpu0);
            }
            let done = *finished_at.get_or_insert(now);
            if now >= done + Duration::from_millis(args.settle_ms) {
                break;
            }
        } else if now >= give_up {
            for &i in &pending {
                tunnels[i].outcome = Some(Err("timed out".into()));
            }
            pending.clear();
            continue;
        }

        let wait = if now >= next_scan {
            Duration::ZERO
        } else {
            next_scan - now
        };
        socks.wait(wait)?;
        socks.recv_each(&mut bufs, |d: Datagram<'_>| {
            let Some(i) = index_of(args, d.to.ip()) else {
                return;
            };
            if let Some(t) = tunnels.get_mut(i) {
                let _ =
                    t.sa.handle_datagram(Instant::now(), SystemTime::now(), d.from, d.to, d.data);
                flush(&socks, t, &mut buf);
            }
        })?;

        let now = Instant::now();
        if now >= next_scan {
            // Retransmissions are rare (loopback-class links): a 10 ms scan of the
            // tunnels in flight is enough and costs nothing per datagram.
            next_scan = now + Duration::from_millis(10);
            for &i in &pending {
                let t = &mut tunnels[i];
                if t.sa.poll_timeout().is_some_and(|at| at <= now) {
                    t.sa.handle_timeout(now);
                    flush(&socks, t, &mut buf);
                }
            }
        }
        pending.retain(|&i| {
            let t = &mut tunnels[i];
            while let Some(ev) = t.sa.poll_event() {
                let outcome = match ev {
                    Event::ChildSaReady(_) => Ok(t.started.elapsed()),
                    Event::Failed(e) => Err(e.to_string()),
                    Event::ChildSaFailed(e) => Err(format!("child: {e}")),
                    Event::PeerDead => Err("no answer".into()),
                    Event::Closed { .. } => Err("closed by the responder".into()),
                    _ => continue,
                };
                t.outcome.get_or_insert(outcome);
            }
            t.outcome.is_none()
        });
    }

    let setup_end = finished_at.unwrap_or_else(Instant::now);
    let after = responder.as_ref().map(Proc::sample).transpose()?;
    let mut lat: Vec<f64> = Vec::with_capacity(count);
    for t in &tunnels {
        match &t.outcome {
            Some(Ok(d)) => lat.push(d.as_secs_f64() * 1e3),
            Some(Err(e)) => *failures.entry(e.clone()).or_default() += 1,
            None => *failures.entry("unfinished".into()).or_default() += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    let wall = setup_end.duration_since(start).as_secs_f64();
    let up = lat.len();
    let mut report = serde_json::json!({
        "count": count,
        "inflight": args.inflight,
        "established": up,
        "failed": count - up,
        "failures": failures,
        "wall_s": wall,
        "setups_per_s": if wall > 0.0 { up as f64 / wall } else { 0.0 },
        "p50_ms": percentile(&lat, 0.50),
        "p90_ms": percentile(&lat, 0.90),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "loadgen_cpu_s": my_cpu as f64 / 1e9,
    });
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = a.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e9;
        report["responder_cpu_s"] = cpu.into();
        report["responder_cpu_ms_per_setup"] =
            (if up > 0 { cpu * 1e3 / up as f64 } else { 0.0 }).into();
        report["responder_rss_before_kib"] = b.rss_kib.into();
        report["responder_rss_after_kib"] = a.rss_kib.into();
        let per = if up > 0 {
            (a.rss_kib as f64 - b.rss_kib as f64) / up as f64
        } else {
            0.0
        };
        report["responder_kib_per_tunnel"] = per.into();
    }
    Ok(report)
}

/// Sends whatever the SA has queued; a datagram the socket refuses is left to the
/// engine's retransmission.
fn flush(socks: &Sockets, t: &mut Tunnel, buf: &mut Vec<u8>) {
    while let Some(tx) = t.sa.poll_transmit(buf) {
        let data = buf.get(..tx.size).unwrap_or(buf);
        let _ = socks.send(tx.local, tx.destination, tx.non_esp_marker, data);
    }
}

/// What every tunnel shares: identities, PSK or certificates, AES-128-GCM with PRF-HMAC-SHA-256 for
/// IKE and AES-128-GCM for ESP (the proposals of bench/compare's control plane).
fn ike_config(args: &Args) -> Result<IkeConfig> {
    let dh = match args.dh {
        Group::Ecp256 => DhGroup::Ecp256,
        Group::X25519 => DhGroup::Curve25519,
    };
    let (net, len) = args
        .remote_ts
        .split_once('/')
        .context("--remote-ts is ADDRESS/PREFIX")?;
    let remote = selector(net.parse()?, len.parse()?)?;
    let local_id = Identity::Fqdn(args.local_id.clone());
    let base = match (&args.cert, &args.key, &args.ca) {
        (Some(cert), Some(key), Some(ca)) => {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| p.display().to_string());
            let credential = Credential::from_pem(&read(key)?, &read(cert)?, &SystemRandom::new())
                .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            let trusted = TrustStore::from_pem(&read(ca)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
            IkeConfig::with_certificate(local_id, Arc::new(credential), Arc::new(trusted))
        }
        _ => IkeConfig::new(local_id, SecretBytes::from_slice(args.psk.as_bytes())),
    };
    Ok(IkeConfig {
        remote_id: Some(Identity::Fqdn(args.remote_id.clone())),
        ike_suites: vec![IkeSuite::aes128_gcm(dh)],
        child_suites: vec![ChildSuite::esp_aes128_gcm()],
        remote_ts: vec![remote],
        force_encap: args.encap,
        ..base
    })
}

fn selector(net: Ipv4Addr, prefix: u8) -> Result<IpSelector> {
    if prefix > 32 {
        bail!("prefix /{prefix} is longer than 32");
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let start = u32::from(net) & mask;
    Ok(IpSelector::any(AddrRange::V4 {
        start: start.into(),
        end: (start | !mask).into(),
    }))
}

fn source(args: &Args, i: usize) -> Result<Ipv4Addr> {
    offset(args.first_source, i, 1)
}

fn ts_of(base: Ipv4Addr, i: usize) -> Result<Ipv4Addr> {
    offset(base, i, 256)
}

fn offset(base: Ipv4Addr, i: usize, step: u32) -> Result<Ipv4Addr> {
    u32::try_from(i)
        .ok()
        .and_then(|i| i.checked_mul(step))
        .and_then(|d| u32::from(base).checked_add(d))
        .map(Ipv4Addr::from)
        .with_context(|| format!("address {i} past {base} overflows IPv4"))
}

/// The tunnel a datagram to `to` belongs to.
fn index_of(args: &Args, to: IpAddr) -> Option<usize> {
    let IpAddr::V4(to) = to else { return None };
    let i = u32::from(to).checked_sub(u32::from(args.first_source))?;
    usize::try_from(i).ok().filter(|&i| i < args.count as usize)
}

/// Nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(first: &str, count: u32) -> Args {
        Args::parse_from([
            "ikeload",
            "--target",
            "192.0.2.2",
            "--first-source",
            first,
            "--count",
            &count.to_string(),
        ])
    }

    #[test]
    fn peers_map_to_addresses_and_back() {
        let a = args("172.16.0.250", 10_000);
        assert_eq!(source(&a, 0).unwrap(), Ipv4Addr::new(172, 16, 0, 250));
        assert_eq!(source(&a, 9).unwrap(), Ipv4Addr::new(172, 16, 1, 3));
        assert_eq!(index_of(&a, "172.16.1.3".parse().unwrap()), Some(9));
        // Before the first peer, past the last, or IPv6: nobody's.
        assert_eq!(index_of(&a, "172.16.0.249".parse().unwrap()), None);
        let last = u32::from(Ipv4Addr::new(172, 16, 0, 250)) + 10_000;
        assert_eq!(index_of(&a, IpAddr::V4(last.into())), None);
        assert_eq!(index_of(&a, "::1".parse().unwrap()), None);
        assert_eq!(
            ts_of(Ipv4Addr::new(10, 128, 0, 0), 300).unwrap(),
            Ipv4Addr::new(10, 129, 44, 0)
        );
        assert!(offset(Ipv4Addr::new(255, 255, 255, 0), 1, 256).is_err());
    }

    #[test]
    fn selectors_cover_the_prefix() {
        let s = selector(Ipv4Addr::new(10, 2, 3, 4), 16).unwrap();
        assert_eq!(
            s,
            IpSelector::any(AddrRange::V4 {
                start: Ipv4Addr::new(10, 2, 0, 0),
                end: Ipv4Addr::new(10, 2, 255, 255),
            })
        );
        let all = selector(Ipv4Addr::new(1, 2, 3, 4), 0).unwrap();
        assert_eq!(
            all,
            IpSelector::any(AddrRange::V4 {
                start: Ipv4Addr::UNSPECIFIED,
                end: Ipv4Addr::BROADCAST,
            })
        );
        assert!(selector(Ipv4Addr::UNSPECIFIED, 33).is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
