//! `probe`: the small tool of the docker compose deployment (`docker/`,
//! `docker-compose.yml`), built statically for `FROM scratch` images that have no shell,
//! no `ip` and no `ping`.
//!
//! - LAN hosts run `probe host --gateway GW`: the default route via the gateway's
//!   (floating) LAN address, then a UDP echo server.
//! - Gateways start `vpnd` through `probe ifnames NAME=CIDR... -- /vpnd ...`: Docker
//!   names a container's interfaces `eth0`, `eth1`, ... in an order that is not stable
//!   when a container joins several networks, so the interfaces are renamed after the
//!   subnet of their address before `vpnd` (whose configuration names them) starts.
//! - Checks: `probe ping` (ICMP echo), `probe wait` (UDP round trip through an echo
//!   server, bounded), `probe flow` (sequence-numbered UDP probes through an echo server:
//!   loss, duplicates, reordering, the longest gap).
//!
//! std and libc only: raw ICMP sockets and the route/interface ioctls are not in std.

use std::ffi::CStr;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: probe COMMAND [ARGS]
  host --gateway GW [--port 7001]     LAN host: default route via GW, then a UDP echo server
  echo [--port 7001]                  UDP echo server (reflects every datagram)
  route default GW                    replace the default route with one via GW
  ifnames NAME=CIDR... -- PROGRAM [ARGS...]
                                      rename each interface after the subnet its IPv4
                                      address is in, then exec PROGRAM
  ping HOST [--count 3] [--interval-ms 200] [--timeout-ms 1000] [--min 1]
                                      ICMP echo; exit 0 if at least --min replies came back
  wait HOST:PORT [--timeout-s 60]     UDP probes every 200 ms until one comes back from an
                                      echo server (exit 1 on timeout)
  flow HOST:PORT [--interval-ms 1] [--duration-s 10] [--size 64] [--json]
                                      sequence-numbered UDP probes through an echo server:
                                      sent, received, lost, duplicates, reordered, the
                                      longest gap between replies and round-trip times";

/// Default UDP port of the echo server.
const ECHO_PORT: u16 = 7001;
/// Marks our datagrams.
const MAGIC: [u8; 4] = *b"PRB1";
/// Magic, flow id, sequence number, send time (ns since the flow started).
const HEADER: usize = 4 + 4 + 8 + 8;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match cmd.as_str() {
        "host" => {
            let o = Opts::parse(rest, &[])?;
            o.positional(0)?;
            let gw: Ipv4Addr = parse(o.req("gateway")?, "--gateway")?;
            set_default_route(gw)?;
            eprintln!("probe: default route via {gw}");
            exit_on_term();
            echo(o.num("port", ECHO_PORT)?)
        }
        "echo" => {
            let o = Opts::parse(rest, &[])?;
            o.positional(0)?;
            exit_on_term();
            echo(o.num("port", ECHO_PORT)?)
        }
        "route" => match rest {
            [what, gw] if what == "default" => {
                let gw: Ipv4Addr = parse(gw, "gateway")?;
                set_default_route(gw)?;
                Ok(ExitCode::SUCCESS)
            }
            _ => Err(format!("usage: probe route default GW\n{USAGE}")),
        },
        "ifnames" => ifnames(rest),
        "ping" => {
            let o = Opts::parse(rest, &[])?;
            let host = o.positional(1)?[0].clone();
            ping(
                &host,
                o.num("count", 3)?,
                Duration::from_millis(o.num("interval-ms", 200)?),
                Duration::from_millis(o.num("timeout-ms", 1000)?),
                o.num("min", 1)?,
            )
        }
        "wait" => {
            let o = Opts::parse(rest, &[])?;
            let to = resolve(&o.positional(1)?[0])?;
            wait(to, Duration::from_secs(o.num("timeout-s", 60)?))
        }
        "flow" => {
            let o = Opts::parse(rest, &["json"])?;
            let to = resolve(&o.positional(1)?[0])?;
            let interval = Duration::from_micros(o.num::<u64>("interval-ms", 1)? * 1000);
            let duration = Duration::from_secs(o.num("duration-s", 10)?);
            let size: usize = o.num("size", 64)?;
            let report = flow(to, interval.max(Duration::from_micros(100)), duration, size)?;
            if o.flag("json") {
                println!("{}", report.json());
            } else {
                println!("{report}");
            }
            Ok(if report.received > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// `--key value` options (and boolean `--flag`s) around positional arguments.
#[derive(Debug)]
struct Opts {
    positional: Vec<String>,
    options: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], boolean: &[&str]) -> Result<Opts> {
        let mut o = Opts {
            positional: Vec::new(),
            options: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.strip_prefix("--") {
                Some(key) if boolean.contains(&key) => o.flags.push(key.to_owned()),
                Some(key) => {
                    let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                    o.options.push((key.to_owned(), value.clone()));
                }
                None => o.positional.push(a.clone()),
            }
        }
        Ok(o)
    }

    fn positional(&self, n: usize) -> Result<&[String]> {
        if self.positional.len() != n {
            return Err(format!(
                "expected {n} argument(s), got {:?}\n{USAGE}",
                self.positional
            ));
        }
        Ok(&self.positional)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn req(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| format!("--{key} is required"))
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            Some(v) => parse(v, &format!("--{key}")),
            None => Ok(default),
        }
    }

    fn flag(&self, key: &str) -> bool {
        self.flags.iter().any(|f| f == key)
    }
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse().map_err(|_| format!("{what}: cannot parse {s:?}"))
}

/// `HOST:PORT` (an address; names resolve only where the image can, which a static
/// binary in an empty image cannot).
fn resolve(s: &str) -> Result<SocketAddr> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// SIGTERM and SIGINT end the process at once: as PID 1 in a container a process without
/// handlers ignores them, and `docker stop` would wait for its timeout.
fn exit_on_term() {
    extern "C" fn on_term(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    let handler = on_term as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only calls an async-signal-safe function.
        unsafe { libc::signal(sig, handler) };
    }
}

// ---------------------------------------------------------------------------------------
// UDP echo, wait, flow

fn echo(port: u16) -> Result<ExitCode> {
    let sock = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind :{port}: {e}"))?;
    eprintln!("probe: UDP echo on :{port}");
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                // A reply that cannot leave (no route yet) is a lost probe, not an error.
                let _ = sock.send_to(&buf[..n], from);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}

fn header(flow: u32, seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size.max(HEADER));
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&flow.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&sent_ns.to_be_bytes());
    b.resize(size.max(HEADER), 0);
    b
}

/// (sequence number, send time in ns) of one of our datagrams of flow `flow`.
fn parse_header(b: &[u8], flow: u32) -> Option<(u64, u64)> {
    if b.len() < HEADER || b[..4] != MAGIC || b[4..8] != flow.to_be_bytes() {
        return None;
    }
    let seq = u64::from_be_bytes(b[8..16].try_into().ok()?);
    let sent = u64::from_be_bytes(b[16..24].try_into().ok()?);
    Some((seq, sent))
}

/// A flow id that differs between runs (replies of an earlier run are ignored).
fn flow_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::process::id().rotate_left(16) ^ t.subsec_nanos() ^ (t.as_secs() as u32)
}

fn udp_to(to: SocketAddr) -> Result<UdpSocket> {
    let bind: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    sock.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    Ok(sock)
}

fn wait(to: SocketAddr, timeout: Duration) -> Result<ExitCode> {
    let sock = udp_to(to)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let flow = flow_id();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    for seq in 0u64.. {
        let sent_ns = start.elapsed().as_nanos() as u64;
        // Errors (no route, ICMP unreachable reported on a connected socket) only mean
        // "not yet".
        let _ = sock.send(&header(flow, seq, sent_ns, 64));
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if parse_header(&buf[..n], flow).is_some() {
                        println!(
                            "reply from {to} after {:.1} s ({} probes)",
                            start.elapsed().as_secs_f64(),
                            seq + 1
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if start.elapsed() >= timeout {
            break;
        }
        if let Some(rest) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    eprintln!("probe: no reply from {to} within {timeout:?}");
    Ok(ExitCode::FAILURE)
}

/// What a flow measured. Times are in milliseconds since the first probe was sent.
#[derive(Debug, Default)]
struct FlowReport {
    to: String,
    interval_us: u64,
    duration_ms: u64,
    sent: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    first_reply_ms: Option<f64>,
    last_reply_ms: Option<f64>,
    /// The longest time without a reply: between two replies, or from the last reply to
    /// the end of sending.
    longest_gap_ms: f64,
    gap_start_ms: f64,
    rtt_min_ms: f64,
    rtt_avg_ms: f64,
    rtt_max_ms: f64,
}

impl FlowReport {
    fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
        format!(
            "{{\"to\":\"{}\",\"interval_us\":{},\"duration_ms\":{},\"sent\":{},\"received\":{},\
             \"lost\":{},\"duplicates\":{},\"reordered\":{},\"first_reply_ms\":{},\
             \"last_reply_ms\":{},\"longest_gap_ms\":{:.3},\"gap_start_ms\":{:.3},\
             \"rtt_min_ms\":{:.3},\"rtt_avg_ms\":{:.3},\"rtt_max_ms\":{:.3}}}",
            self.to,
            self.interval_us,
            self.duration_ms,
            self.sent,
            self.received,
            self.lost,
            self.duplicates,
            self.reordered,
            opt(self.first_reply_ms),
            opt(self.last_reply_ms),
            self.longest_gap_ms,
            self.gap_start_ms,
            self.rtt_min_ms,
            self.rtt_avg_ms,
            self.rtt_max_ms
        )
    }
}

impl std::fmt::Display for FlowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flow to {}: sent {}, received {} (lost {}, duplicates {}, reordered {}), \
             longest gap {:.1} ms from +{:.1} ms, rtt min/avg/max {:.2}/{:.2}/{:.2} ms",
            self.to,
            self.sent,
            self.received,
            self.lost,
            self.duplicates,
            self.reordered,
            self.longest_gap_ms,
            self.gap_start_ms,
            self.rtt_min_ms,
            self.rtt_avg_ms,
            self.rtt_max_ms
        )
    }
}

fn flow(to: SocketAddr, interval: Duration, duration: Duration, size: usize) -> Result<FlowReport> {
    let sock = udp_to(to)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let tx = sock.try_clone().map_err(|e| e.to_string())?;
    let flow = flow_id();
    let start = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            loop {
                let at = interval * u32::try_from(seq).unwrap_or(u32::MAX);
                if at >= duration {
                    break;
                }
                if let Some(rest) = at.checked_sub(start.elapsed()) {
                    std::thread::sleep(rest);
                }
                let sent_ns = start.elapsed().as_nanos() as u64;
                // A send error (no route yet, ICMP unreachable) is a lost probe.
                let _ = tx.send(&header(flow, seq, sent_ns, size));
                seq += 1;
                sent.store(seq, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        })
    };

    // Replies still count for this long after the last probe left.
    let linger = Duration::from_secs(1);
    let mut seen: Vec<u8> = Vec::new();
    let mut r = FlowReport {
        to: to.to_string(),
        interval_us: interval.as_micros() as u64,
        duration_ms: duration.as_millis() as u64,
        rtt_min_ms: f64::INFINITY,
        ..FlowReport::default()
    };
    let (mut max_seq, mut last_arrival, mut rtt_sum) = (None::<u64>, None::<f64>, 0.0);
    let mut send_end: Option<Instant> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        if send_end.is_none() && done.load(Ordering::Acquire) {
            send_end = Some(Instant::now());
        }
        if send_end.is_some_and(|t| t.elapsed() >= linger) {
            break;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let now = start.elapsed();
        let Some((seq, sent_ns)) = parse_header(&buf[..n], flow) else {
            continue;
        };
        let i = seq as usize;
        if seen.len() <= i {
            seen.resize(i + 1, 0);
        }
        seen[i] = seen[i].saturating_add(1);
        if seen[i] > 1 {
            r.duplicates += 1;
            continue;
        }
        r.received += 1;
        if max_seq.is_some_and(|m| seq < m) {
            r.reordered += 1;
        }
        max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
        let rtt = (now.as_nanos() as u64).saturating_sub(sent_ns) as f64 / 1e6;
        rtt_sum += rtt;
        r.rtt_min_ms = r.rtt_min_ms.min(rtt);
        r.rtt_max_ms = r.rtt_max_ms.max(rtt);
        let at = now.as_secs_f64() * 1e3;
        if let Some(prev) = last_arrival
            && at - prev > r.longest_gap_ms
        {
            r.longest_gap_ms = at - prev;
            r.gap_start_ms = prev;
        }
        r.first_reply_ms.get_or_insert(at);
        r.last_reply_ms = Some(at);
        last_arrival = Some(at);
    }
    let _ = sender.join();
    r.sent = sent.load(Ordering::Acquire);
    r.lost = r.sent.saturating_sub(r.received);
    // Silence at the end (traffic never came back) is a gap too.
    let end_ms = duration.as_secs_f64() * 1e3;
    let tail_from = last_arrival.unwrap_or(0.0);
    if end_ms - tail_from > r.longest_gap_ms {
        r.longest_gap_ms = end_ms - tail_from;
        r.gap_start_ms = tail_from;
    }
    if r.received > 0 {
        r.rtt_avg_ms = rtt_sum / r.received as f64;
    } else {
        r.rtt_min_ms = 0.0;
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// ICMP echo

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A `sockaddr` holding an IPv4 address (what the route ioctl takes).
fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let sin = sockaddr_in(a);
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and any bit pattern
    // is a valid sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ping(
    host: &str,
    count: u32,
    interval: Duration,
    timeout: Duration,
    min: u32,
) -> Result<ExitCode> {
    let dst: Ipv4Addr = parse(host, "HOST (an IPv4 address)")?;
    let fd = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
        .map_err(|e| format!("{e} (a raw ICMP socket needs CAP_NET_RAW)"))?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: tv outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err("SO_RCVTIMEO"));
    }
    let id = (std::process::id() & 0xffff) as u16;
    let to = sockaddr_in(dst);
    let start = Instant::now();
    let mut received = 0u32;
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let sent_at = Instant::now();
        let mut pkt = vec![8u8, 0, 0, 0];
        pkt.extend_from_slice(&id.to_be_bytes());
        pkt.extend_from_slice(&(seq as u16).to_be_bytes());
        pkt.extend_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
        pkt.resize(64, 0xa5);
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        // SAFETY: pkt and `to` outlive the call; their lengths are passed.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            eprintln!("{}", os_err(&format!("sendto {dst}")));
        }
        let deadline = sent_at + timeout;
        let mut got = false;
        while !got && Instant::now() < deadline {
            // SAFETY: buf outlives the call and its length is passed.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let b = &buf[..n as usize];
            let ihl = usize::from(b[0] & 0x0f) * 4;
            if b.len() < ihl + 8 || b[12..16] != dst.octets() {
                continue;
            }
            let icmp = &b[ihl..];
            if icmp[0] == 0
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == (seq as u16).to_be_bytes()
            {
                got = true;
                received += 1;
                println!(
                    "{} bytes from {dst}: icmp_seq={seq} ttl={} time={:.2} ms",
                    icmp.len(),
                    b[8],
                    sent_at.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        if seq + 1 < count
            && let Some(rest) = (sent_at + interval).checked_duration_since(Instant::now())
        {
            std::thread::sleep(rest);
        }
    }
    println!("{dst}: {count} sent, {received} received");
    Ok(if received >= min {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------
// Routes and interfaces

fn ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: every caller passes the structure `req` expects (rtentry or ifreq), which
    // outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, std::ptr::from_mut(arg)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn default_route(gw: Option<Ipv4Addr>) -> libc::rtentry {
    // SAFETY: rtentry is plain data; all zeroes is its "unset" value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_flags = libc::RTF_UP;
    if let Some(gw) = gw {
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags |= libc::RTF_GATEWAY;
    }
    rt
}

/// Deletes every IPv4 default route, then adds one via `gw`.
fn set_default_route(gw: Ipv4Addr) -> Result<()> {
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    for _ in 0..16 {
        if ioctl(&fd, libc::SIOCDELRT, &mut default_route(None)).is_err() {
            break;
        }
    }
    ioctl(&fd, libc::SIOCADDRT, &mut default_route(Some(gw)))
        .map_err(|e| format!("adding the default route via {gw}: {e} (needs CAP_NET_ADMIN)"))
}

/// Gateways of the IPv4 default routes (from /proc/net/route).
fn default_gateways() -> Vec<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            // The kernel prints the address as a host-order integer of its network bytes.
            let v = u32::from_str_radix(f[2], 16).ok()?;
            let gw = Ipv4Addr::from(v.to_ne_bytes());
            (!gw.is_unspecified()).then_some(gw)
        })
        .collect()
}

/// (interface, IPv4 address) pairs.
fn ipv4_addresses() -> Result<Vec<(String, Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(os_err("getifaddrs"));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it names.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                // SAFETY: ifa_name is a NUL-terminated string owned by the list.
                let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
                out.push((
                    name.to_string_lossy().into_owned(),
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                ));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

fn ifreq(name: &str) -> Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("bad interface name {name:?}"));
    }
    // SAFETY: ifreq is plain data; all zeroes is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn set_up(fd: &OwnedFd, name: &str, up: bool) -> Result<()> {
    let mut r = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFFLAGS, &mut r).map_err(|e| format!("{name}: flags: {e}"))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    let up_flag = libc::IFF_UP as libc::c_short;
    r.ifr_ifru.ifru_flags = if up {
        flags | up_flag
    } else {
        flags & !up_flag
    };
    ioctl(fd, libc::SIOCSIFFLAGS, &mut r).map_err(|e| format!("{name}: set flags: {e}"))
}

fn rename(fd: &OwnedFd, from: &str, to: &str) -> Result<()> {
    let mut r = ifreq(from)?;
    let mut new = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in new.iter_mut().zip(ifreq(to)?.ifr_name) {
        *d = s;
    }
    r.ifr_ifru.ifru_newname = new;
    ioctl(fd, libc::SIOCSIFNAME, &mut r).map_err(|e| format!("renaming {from} to {to}: {e}"))
}

/// `a.b.c.d/len` contains `ip`.
fn in_cidr(cidr: &str, ip: Ipv4Addr) -> Result<bool> {
    let (net, len) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr}: not a.b.c.d/len"))?;
    let net: Ipv4Addr = parse(net, cidr)?;
    let len: u32 = parse(len, cidr)?;
    if len > 32 {
        return Err(format!("{cidr}: prefix length above 32"));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok(u32::from(ip) & mask == u32::from(net) & mask)
}

fn ifnames(args: &[String]) -> Result<ExitCode> {
    let sep = args
        .iter()
        .position(|a| a == "--")
        .ok_or_else(|| format!("ifnames: no `-- PROGRAM`\n{USAGE}"))?;
    let (specs, program) = (&args[..sep], &args[sep + 1..]);
    let Some((prog, prog_args)) = program.split_first() else {
        return Err("ifnames: no PROGRAM after --".into());
    };
    let addrs = ipv4_addresses()?;
    // (current name, wanted name)
    let mut moves: Vec<(String, String)> = Vec::new();
    for spec in specs {
        let (want, cidr) = spec
            .split_once('=')
            .ok_or_else(|| format!("ifnames: {spec:?} is not NAME=CIDR"))?;
        ifreq(want)?;
        let mut found = Vec::new();
        for (ifname, ip) in &addrs {
            if in_cidr(cidr, *ip)? && !found.contains(ifname) {
                found.push(ifname.clone());
            }
        }
        match found.as_slice() {
            [one] => moves.push((one.clone(), want.to_owned())),
            [] => {
                return Err(format!(
                    "ifnames: no interface has an address in {cidr} (for {want}); addresses: {addrs:?}"
                ));
            }
            many => {
                return Err(format!(
                    "ifnames: several interfaces have addresses in {cidr}: {many:?}"
                ));
            }
        }
    }
    let gateways = default_gateways();
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let todo: Vec<&(String, String)> = moves.iter().filter(|(from, to)| from != to).collect();
    // Two steps through temporary names, so that swapping eth0 and eth1 works.
    for (i, (from, _)) in todo.iter().enumerate() {
        set_up(&fd, from, false)?;
        rename(&fd, from, &format!("prbtmp{i}"))?;
    }
    for (i, (from, to)) in todo.iter().enumerate() {
        rename(&fd, &format!("prbtmp{i}"), to)?;
        set_up(&fd, to, true)?;
        eprintln!("probe: {from} is now {to}");
    }
    // Taking an interface down dropped the routes through it; the addresses and their
    // subnet routes come back with it, the default route has to be put back.
    for gw in gateways {
        match ioctl(&fd, libc::SIOCADDRT, &mut default_route(Some(gw))) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => eprintln!("probe: restoring the default route via {gw}: {e}"),
        }
    }
    drop(fd);
    let e = std::process::Command::new(prog).args(prog_args).exec();
    Err(format!("exec {prog}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let ip: Ipv4Addr = "198.51.100.11".parse().unwrap();
        assert!(in_cidr("198.51.100.0/24", ip).unwrap());
        assert!(!in_cidr("10.1.0.0/24", ip).unwrap());
        assert!(in_cidr("0.0.0.0/0", ip).unwrap());
        assert!(in_cidr("198.51.100.11/32", ip).unwrap());
        assert!(in_cidr("198.51.100.0/33", ip).is_err());
    }

    #[test]
    fn header_round_trip() {
        let b = header(7, 42, 1234, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_header(&b, 7), Some((42, 1234)));
        assert_eq!(parse_header(&b, 8), None);
        assert_eq!(parse_header(&b[..10], 7), None);
    }

    #[test]
    fn icmp_checksum() {
        // An echo request with a correct checksum sums to zero.
        let mut pkt = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3];
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&pkt), 0);
    }

    #[test]
    fn options() {
        let args: Vec<String> = ["10.2.0.10:7001", "--interval-ms", "5", "--json"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = Opts::parse(&args, &["json"]).unwrap();
        assert_eq!(o.positional(1).unwrap(), ["10.2.0.10:7001"]);
        assert_eq!(o.num::<u64>("interval-ms", 1).unwrap(), 5);
        assert_eq!(o.num::<u64>("duration-s", 10).unwrap(), 10);
        assert!(o.flag("json"));
    }
}
