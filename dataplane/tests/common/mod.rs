//! Two network namespaces joined by a veth pair, with a manually keyed dataplane endpoint
//! in each: the topology shared by `tests/netns_e2e.rs` and `examples/manual_tunnel.rs`
//! (which includes this file with `#[path]`).
//!
//! Everything created here is torn down by `Drop` guards, so a failing assertion or a
//! panic does not leave namespaces behind.

// Each includer (test binary, example) uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::io::netns;
use dataplane::sa::{Direction, Protocol, SaConfig, UdpEncap};
use dataplane::worker::{Dataplane, DataplaneConfig, TunnelConfig, WorkerStats};
use rand_core::{OsRng, RngCore};

/// The message a test or the demo prints when not run as root.
pub const ROOT_HINT: &str =
    "needs root (network namespaces + TUN): run as root or skip with `cargo test -- --skip netns_`";

/// Name of the TUN device in each namespace.
pub const TUN_NAME: &str = "st0.0";
/// TUN MTU: 1500 on the veth minus the worst ESP-in-UDP over IPv6 overhead, rounded down.
pub const TUN_MTU: u32 = 1400;

/// True when running with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command and fails with its stderr if it does not exit 0.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args).map(|_| ())
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first) with `lo` up.
    pub fn create(name: &str) -> Result<Self> {
        let _ = run("ip", &["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {e:#}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: `a` has 192.0.2.1/24 and fd00::1/64 on
/// `veth_a`, `b` has 192.0.2.2/24 and fd00::2/64 on `veth_b`.
#[derive(Debug)]
pub struct Topology {
    pub a: Netns,
    pub b: Netns,
    pub veth_a: String,
    pub veth_b: String,
}

/// Outer addresses of the two sides.
pub const OUTER_A4: &str = "192.0.2.1";
pub const OUTER_B4: &str = "192.0.2.2";
pub const OUTER_A6: &str = "fd00::1";
pub const OUTER_B6: &str = "fd00::2";

impl Topology {
    pub fn create(a: &str, b: &str) -> Result<Self> {
        let a = Netns::create(a)?;
        let b = Netns::create(b)?;
        let veth_a = "veth-a".to_string();
        let veth_b = "veth-b".to_string();
        ip(&[
            "-n", &a.name, "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
            "netns", &b.name,
        ])?;
        for (ns, dev, v4, v6) in [
            (&a.name, &veth_a, OUTER_A4, OUTER_A6),
            (&b.name, &veth_b, OUTER_B4, OUTER_B6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // Check the outer link works and resolve the neighbours now: a first neighbour
        // solicitation sent while the veth is still coming up is lost and retried only
        // after a second, which would stall the first tunnel packets.
        for dst in [OUTER_B4, OUTER_B6] {
            run(
                "ip",
                &[
                    "netns", "exec", &a.name, "ping", "-c", "1", "-i", "0.2", "-w", "5", dst,
                ],
            )
            .with_context(|| format!("outer link check: ping {dst}"))?;
        }
        Ok(Self {
            a,
            b,
            veth_a,
            veth_b,
        })
    }
}

/// Runs `f` on a thread inside namespace `ns` (sockets and devices it creates stay
/// there), and returns its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            netns::enter(ns)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in namespace {ns} panicked"))?
    })
}

/// How ESP travels between the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// ESP in UDP 4500 (RFC 3948).
    Udp,
    /// Plain ESP, IP protocol 50.
    RawEsp,
    /// AH (IP protocol 51) with HMAC-SHA-256-128: integrity only, the payload is clear.
    Ah,
}

/// One direction's SA parameters: SPI and key material. ESP uses the first 20 bytes as
/// AES-128-GCM key and salt; AH uses all 32 as HMAC-SHA-256 key.
#[derive(Debug, Clone)]
pub struct SaKeys {
    pub spi: u32,
    pub key: [u8; 32],
}

impl SaKeys {
    /// A random SPI (above the reserved range) and key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let spi = (OsRng.next_u32() & 0x7fff_ffff) | 0x1000;
        Self { spi, key }
    }

    /// "Wireshark ESP SA" line for decrypting captures (Edit > Preferences > ESP).
    pub fn wireshark(&self, src: IpAddr, dst: IpAddr) -> String {
        let hex: String = self.key[..20].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "Wireshark ESP SA: IPv{} {src} -> {dst} SPI 0x{:08x} AES-GCM with 16 octet ICV [RFC4106], key 0x{hex}, authentication NULL",
            if src.is_ipv4() { 4 } else { 6 },
            self.spi
        )
    }
}

/// One tunnel endpoint's setup.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ns: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// Addresses (with prefix) for `st0.0`.
    pub lan_addrs: Vec<String>,
    /// Prefixes routed into the tunnel.
    pub routes: Vec<String>,
    pub outbound: SaKeys,
    pub inbound: SaKeys,
    pub encap: Encap,
    pub workers: usize,
    /// Worker that anchors both SAs.
    pub anchor: usize,
    /// Kernel steering of ESP-in-UDP by SPI (see `DataplaneConfig::udp_spi_steering`).
    pub steering: bool,
}

/// The SA of `ep` in direction `dir`, as [`start_endpoint`] installs it (sequence
/// numbers from the start).
pub fn sa_config(ep: &Endpoint, dir: Direction) -> SaConfig {
    let keys = match dir {
        Direction::Outbound => &ep.outbound,
        Direction::Inbound => &ep.inbound,
    };
    let sa = SaConfig::esp_tunnel(dir, keys.spi, ep.local, ep.remote);
    let mut sa = if ep.encap == Encap::Ah {
        let mut sa = sa.with_integrity(IntegAlg::HmacSha256_128, &keys.key);
        sa.protocol = Protocol::Ah;
        sa
    } else {
        sa.with_encryption(EncrAlg::AesGcm128, &keys.key[..20])
    };
    sa.binding = 0;
    sa.replay_window = 1024;
    if ep.encap == Encap::Udp {
        sa.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        });
    }
    sa
}

/// Starts a dataplane for `ep` inside its namespace, installs its two SAs on the anchor
/// worker and puts addresses and routes on `st0.0`.
pub fn start_endpoint(ep: &Endpoint) -> Result<Dataplane> {
    let config = DataplaneConfig {
        workers: ep.workers,
        tunnels: vec![TunnelConfig {
            id: 0,
            name: TUN_NAME.into(),
            mtu: TUN_MTU,
            ipv6: true,
        }],
        raw_ah: ep.encap == Encap::Ah,
        udp_spi_steering: ep.steering,
        ..DataplaneConfig::default()
    };
    let dp = in_netns(&ep.ns, || {
        Dataplane::start(config).context("starting the dataplane")
    })?;
    let handle = dp.handle();
    for dir in [Direction::Outbound, Direction::Inbound] {
        handle
            .install_sa(ep.anchor, sa_config(ep, dir))
            .with_context(|| format!("installing the {dir:?} SA in {}", ep.ns))?;
    }
    for addr in &ep.lan_addrs {
        let mut args = vec!["-n", &ep.ns, "addr", "add", addr, "dev", TUN_NAME];
        if addr.contains(':') {
            args.push("nodad");
        }
        ip(&args)?;
    }
    for route in &ep.routes {
        ip(&["-n", &ep.ns, "route", "add", route, "dev", TUN_NAME])?;
    }
    Ok(dp)
}

/// The two endpoints of a tunnel between the namespaces of `topo`: LAN 10.1.0.0/24 and
/// fd10:1::/64 behind A, 10.2.0.0/24 and fd10:2::/64 behind B, outer IPv4 or IPv6.
pub fn endpoints(
    topo: &Topology,
    encap: Encap,
    outer_v6: bool,
    workers: usize,
) -> (Endpoint, Endpoint) {
    let anchor = workers.saturating_sub(1);
    // Inbound SPIs chosen so the NAT-T socket group steers them to their anchor.
    let steered = || {
        let mut k = SaKeys::random();
        k.spi = dataplane::worker::spi_for_worker(k.spi, anchor, workers);
        k
    };
    let (a_out, b_out) = (steered(), steered());
    let (oa, ob) = if outer_v6 {
        (OUTER_A6, OUTER_B6)
    } else {
        (OUTER_A4, OUTER_B4)
    };
    let parse = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let a = Endpoint {
        ns: topo.a.name.clone(),
        local: parse(oa),
        remote: parse(ob),
        lan_addrs: vec!["10.1.0.1/24".into(), "fd10:1::1/64".into()],
        routes: vec!["10.2.0.0/24".into(), "fd10:2::/64".into()],
        outbound: a_out.clone(),
        inbound: b_out.clone(),
        encap,
        workers,
        anchor,
        steering: true,
    };
    let b = Endpoint {
        ns: topo.b.name.clone(),
        local: parse(ob),
        remote: parse(oa),
        lan_addrs: vec!["10.2.0.1/24".into(), "fd10:2::1/64".into()],
        routes: vec!["10.1.0.0/24".into(), "fd10:1::/64".into()],
        outbound: b_out,
        inbound: a_out,
        encap,
        workers,
        anchor,
        steering: true,
    };
    (a, b)
}

/// `ping -c count` from namespace `ns` to `dst`; returns ping's output.
pub fn ping(ns: &str, dst: &str, count: u32) -> Result<String> {
    let count = count.to_string();
    let out = run(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-c", &count, "-i", "0.2", "-W", "2", "-w", "10", dst,
        ],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deterministic payload for transfers, with `marker` every 4 KiB so a capture can prove
/// the cleartext never reached the wire.
pub fn payload(len: usize, marker: &[u8]) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8)
        .collect();
    for chunk in data.chunks_mut(4096) {
        let n = marker.len().min(chunk.len());
        chunk[..n].copy_from_slice(&marker[..n]);
    }
    data
}

/// Sends `data` over TCP from namespace `client_ns` to `server` (listening in
/// `server_ns`), and returns what the server received and the elapsed time.
pub fn tcp_transfer(
    server_ns: &str,
    client_ns: &str,
    server: SocketAddr,
    data: &[u8],
) -> Result<(Vec<u8>, Duration)> {
    let listener = in_netns(server_ns, || {
        TcpListener::bind(server).context("binding the TCP server")
    })?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let receiver = s.spawn(move || -> Result<Vec<u8>> {
            let (mut conn, _) = listener.accept()?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut got = Vec::with_capacity(data.len());
            conn.read_to_end(&mut got)?;
            Ok(got)
        });
        in_netns(client_ns, || {
            let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(5))
                .context("connecting through the tunnel")?;
            c.set_write_timeout(Some(Duration::from_secs(20)))?;
            c.write_all(data)?;
            c.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        })?;
        let got = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("TCP receiver panicked"))??;
        Ok((got, start.elapsed()))
    })
}

/// A tcpdump capture on one interface of a namespace, stopped on drop.
#[derive(Debug)]
pub struct Capture {
    child: std::process::Child,
    pub path: std::path::PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i dev -w FILE` in `ns` and waits until it is listening.
    pub fn start(ns: &str, dev: &str, path: std::path::PathBuf) -> Result<Self> {
        let path_s = path.to_string_lossy().into_owned();
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-ni", dev, "-U", "-s", "0", "-w", &path_s,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting tcpdump (apt-get install tcpdump)")?;
        let mut stderr = child.stderr.take().context("tcpdump stderr")?;
        // tcpdump prints "listening on DEV" once the capture runs.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut seen = Vec::new();
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(9).any(|w| w == b"listening") {
                    let _ = tx.send(());
                }
            }
        });
        let capture = Capture { child, path };
        rx.recv_timeout(Duration::from_secs(10))
            .context("tcpdump did not start listening")?;
        Ok(capture)
    }

    /// Stops tcpdump and returns the Ethernet frames it captured.
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>> {
        self.stop();
        let data = std::fs::read(&self.path).context("reading the capture")?;
        parse_pcap(&data)
    }

    fn stop(&mut self) {
        // SAFETY: kill with the pid of our own child process; no pointers.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Frames of a classic little-endian pcap file.
fn parse_pcap(data: &[u8]) -> Result<Vec<Vec<u8>>> {
    if data.len() < 24 || data[..4] != [0xd4, 0xc3, 0xb2, 0xa1] {
        bail!("not a little-endian pcap file");
    }
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen =
            u32::from_le_bytes([data[off + 8], data[off + 9], data[off + 10], data[off + 11]])
                as usize;
        off += 16;
        if off + caplen > data.len() {
            break;
        }
        frames.push(data[off..off + caplen].to_vec());
        off += caplen;
    }
    Ok(frames)
}

/// What the wire carried, by outer packet kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WireSummary {
    /// ESP in UDP (port 4500, non-zero SPI).
    pub esp_in_udp: usize,
    /// Plain ESP (IP protocol 50).
    pub esp: usize,
    /// AH (IP protocol 51).
    pub ah: usize,
    /// Packets whose outer addresses are tunnel-inner (LAN) addresses: cleartext leaks.
    pub cleartext_inner: usize,
    /// Frames containing the marker bytes anywhere.
    pub marker_hits: usize,
}

/// Classifies captured Ethernet frames.
pub fn summarize(frames: &[Vec<u8>], marker: &[u8]) -> WireSummary {
    let mut s = WireSummary::default();
    for f in frames {
        if f.windows(marker.len()).any(|w| w == marker) {
            s.marker_hits += 1;
        }
        let Some(pkt) = f.get(14..) else { continue };
        let ethertype = u16::from_be_bytes([f[12], f[13]]);
        let (proto, l4, inner_addr) = match ethertype {
            0x0800 if pkt.len() >= 20 => {
                let hl = usize::from(pkt[0] & 0x0f) * 4;
                let inner = pkt[12] == 10 || pkt[16] == 10;
                (pkt[9], pkt.get(hl..).unwrap_or(&[]), inner)
            }
            0x86dd if pkt.len() >= 40 => {
                let inner = pkt[8..10] == [0xfd, 0x10] || pkt[24..26] == [0xfd, 0x10];
                (pkt[6], &pkt[40..], inner)
            }
            _ => continue,
        };
        if inner_addr {
            s.cleartext_inner += 1;
        }
        match proto {
            50 => s.esp += 1,
            51 => s.ah += 1,
            17 if l4.len() >= 12 => {
                let dport = u16::from_be_bytes([l4[2], l4[3]]);
                if dport == 4500 && l4[8..12] != [0, 0, 0, 0] {
                    s.esp_in_udp += 1;
                }
            }
            _ => {}
        }
    }
    s
}

/// Packets counted by the SA with `spi` in these worker stats.
pub fn sa_packets(stats: &[WorkerStats], spi: u32) -> u64 {
    stats
        .iter()
        .flat_map(|w| &w.engine.sas)
        .filter(|s| s.key.spi == spi)
        .map(|s| s.counters.packets)
        .sum()
}

/// Human-readable counters of one endpoint.
pub fn format_stats(name: &str, stats: &[WorkerStats]) -> String {
    let mut out = String::new();
    for w in stats {
        out += &format!(
            "  [{name}] spu-{}: tun rx {} tx {} | udp rx {} | raw rx {} tx {} | handoff out {} in {} | ike {}\n",
            w.worker,
            w.io.tun_rx,
            w.io.tun_tx,
            w.io.udp_rx,
            w.io.raw_rx,
            w.io.raw_tx,
            w.io.handoff_out,
            w.io.handoff_in,
            w.io.ike_rx
        );
        for sa in &w.engine.sas {
            out += &format!(
                "  [{name}] spu-{} SA {:?} spi 0x{:08x} dst {}: {} packets, {} bytes, seq {}, replay drops {}, icv drops {}\n",
                w.worker,
                sa.key.direction,
                sa.key.spi,
                sa.key.dst,
                sa.counters.packets,
                sa.counters.bytes,
                sa.seq,
                sa.counters.replay_drops,
                sa.counters.icv_drops
            );
        }
        let drops: Vec<String> = w
            .drops()
            .nonzero()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect();
        out += &format!(
            "  [{name}] spu-{} drops: {}\n",
            w.worker,
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(" ")
            }
        );
    }
    out
}
