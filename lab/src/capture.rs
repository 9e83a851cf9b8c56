//! Packet captures (tcpdump in a namespace) and what they show: outer protocols,
//! cleartext markers, ESP (SPI, sequence number) pairs.
//!
//! In an unprivileged user namespace (`vpnd demo` without root) tcpdump cannot run: it
//! drops its privileges with setgroups(2), which such a namespace forbids. There the
//! capture is taken by a thread of this process on an `AF_PACKET` socket in the
//! namespace, written in the same pcap format.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A capture on one interface of a namespace, stopped on drop.
#[derive(Debug)]
pub struct Capture {
    backend: Backend,
    pub path: PathBuf,
}

#[derive(Debug)]
enum Backend {
    Tcpdump(Child),
    /// The in-process capture of a user namespace: its stop flag and thread.
    Socket(Arc<AtomicBool>, Option<JoinHandle<()>>),
}

/// True inside a user namespace other than the initial one (whose uid map is the
/// identity over all ids).
fn in_user_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

impl Capture {
    /// Starts `tcpdump -i dev -w FILE` in `ns` (in a user namespace, the in-process
    /// capture) and waits until it is listening.
    pub fn start(ns: &str, dev: &str, path: PathBuf) -> Result<Self> {
        if in_user_namespace() {
            return Self::start_socket(ns, dev, path);
        }
        let path_s = path.to_string_lossy().into_owned();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "--immediate-mode",
                "-ni",
                dev,
                "-U",
                "-s",
                "0",
                "-w",
                &path_s,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (apt-get install tcpdump)")?;
        let mut stderr = child.stderr.take().context("tcpdump stderr")?;
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
        let capture = Capture {
            backend: Backend::Tcpdump(child),
            path,
        };
        rx.recv_timeout(Duration::from_secs(10))
            .context("tcpdump did not start listening")?;
        Ok(capture)
    }

    /// The in-process capture: an `AF_PACKET` socket bound to `dev` in `ns`, read by a
    /// thread of its own that appends every frame to a pcap file until stopped.
    fn start_socket(ns: &str, dev: &str, path: PathBuf) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Result<()>>();
        let (ns, dev, file, flag) = (ns.to_owned(), dev.to_owned(), path.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let opened = dataplane::io::netns::enter(&ns)
                .context("entering the namespace")
                .and_then(|()| packet_socket(&dev))
                .and_then(|sock| {
                    let mut out = fs::File::create(&file).context("creating the capture file")?;
                    // pcap: microseconds, little endian, Ethernet, 64 KiB snap length.
                    let mut header = Vec::with_capacity(24);
                    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
                    header.extend_from_slice(&2u16.to_le_bytes());
                    header.extend_from_slice(&4u16.to_le_bytes());
                    for w in [0u32, 0, 65_535, 1] {
                        header.extend_from_slice(&w.to_le_bytes());
                    }
                    out.write_all(&header).context("writing the capture")?;
                    Ok((sock, out))
                });
            let (mut sock, mut out) = match opened {
                Ok(v) => {
                    let _ = tx.send(Ok(()));
                    v
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0u8; 65_535];
            while !flag.load(Ordering::Relaxed) {
                let n = match sock.read(&mut buf) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let mut record = Vec::with_capacity(16 + n);
                let secs = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
                let len = u32::try_from(n).unwrap_or(u32::MAX);
                for w in [secs, now.subsec_micros(), len, len] {
                    record.extend_from_slice(&w.to_le_bytes());
                }
                record.extend_from_slice(&buf[..n]);
                if out.write_all(&record).is_err() {
                    break;
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .context("the capture thread did not start")??;
        Ok(Capture {
            backend: Backend::Socket(stop, Some(thread)),
            path,
        })
    }

    /// Stops tcpdump (after a moment for packets still in flight) and returns the
    /// Ethernet frames it captured.
    pub fn finish(self) -> Result<Vec<Vec<u8>>> {
        Ok(self.finish_timed()?.into_iter().map(|f| f.data).collect())
    }

    /// [`Capture::finish`] with each frame's capture time.
    pub fn finish_timed(mut self) -> Result<Vec<PcapFrame>> {
        std::thread::sleep(Duration::from_millis(300));
        self.stop();
        let data = fs::read(&self.path).context("reading the capture")?;
        parse_pcap_timed(&data)
    }

    fn stop(&mut self) {
        match &mut self.backend {
            Backend::Tcpdump(child) => {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: kill with the pid of our own child process; no pointers.
                    unsafe {
                        libc::kill(pid, libc::SIGINT);
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Backend::Socket(stop, thread) => {
                stop.store(true, Ordering::Relaxed);
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A raw packet socket receiving every frame of interface `dev` (both directions),
/// waking every 100 ms so that its reader sees the stop flag.
fn packet_socket(dev: &str) -> Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all)))
        .context("AF_PACKET socket")?;
    let name = std::ffi::CString::new(dev).context("interface name")?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("interface {dev}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    ll.sll_ifindex = i32::try_from(index).context("interface index")?;
    // SAFETY: binds our own socket to a sockaddr_ll of the stated length.
    let rc = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            (&raw const ll).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("binding to {dev}: {}", std::io::Error::last_os_error());
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .context("receive timeout")?;
    Ok(sock)
}

/// Frames of a classic pcap file (either byte order).
pub fn parse_pcap(data: &[u8]) -> Result<Vec<Vec<u8>>> {
    Ok(parse_pcap_timed(data)?
        .into_iter()
        .map(|f| f.data)
        .collect())
}

/// One captured frame and when it was captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFrame {
    /// Capture time, since the Unix epoch (tcpdump stamps with the wall clock).
    pub time: Duration,
    /// The link-layer frame (Ethernet here).
    pub data: Vec<u8>,
}

/// Frames of a classic pcap file with their timestamps: either byte order, microsecond
/// or nanosecond resolution.
pub fn parse_pcap_timed(data: &[u8]) -> Result<Vec<PcapFrame>> {
    let (le, nanos) = match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => (true, false),
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => (false, false),
        Some([0x4d, 0x3c, 0xb2, 0xa1]) => (true, true),
        Some([0xa1, 0xb2, 0x3c, 0x4d]) => (false, true),
        _ => bail!("not a pcap file"),
    };
    let word = |off: usize| {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let (secs, frac) = (u64::from(word(off)), word(off + 4));
        let caplen = word(off + 8) as usize;
        off += 16;
        if off + caplen > data.len() {
            break;
        }
        let sub = if nanos {
            Duration::from_nanos(u64::from(frac))
        } else {
            Duration::from_micros(u64::from(frac))
        };
        frames.push(PcapFrame {
            time: Duration::from_secs(secs) + sub,
            data: data[off..off + caplen].to_vec(),
        });
        off += caplen;
    }
    Ok(frames)
}

/// What an outer link carried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WireSummary {
    /// IKE on UDP 500, or on 4500 with the non-ESP marker.
    pub ike: usize,
    /// ESP in UDP 4500 (non-zero SPI).
    pub esp_in_udp: usize,
    /// NAT-T keepalives (one 0xff byte on 4500).
    pub keepalive: usize,
    /// Plain ESP (IP protocol 50).
    pub esp: usize,
    /// AH (IP protocol 51).
    pub ah: usize,
    /// IPv6 link housekeeping (ICMPv6/MLD from link-local or unspecified sources).
    pub ipv6_link: usize,
    /// ARP and other non-IP frames.
    pub non_ip: usize,
    /// Everything else: each a description. Must be empty on a tunnel's outer link.
    pub unexpected: Vec<String>,
    /// Frames containing the marker bytes.
    pub marker_hits: usize,
}

/// Classifies captured Ethernet frames of an outer link: only IKE, ESP, AH, ESP-in-UDP
/// and keepalives are expected; any IPv4 packet with a 10.0.0.0/8 (inner) address is
/// reported as unexpected, as is any other protocol.
pub fn summarize_outer(frames: &[Vec<u8>], marker: &[u8]) -> WireSummary {
    let mut s = WireSummary::default();
    for (i, f) in frames.iter().enumerate() {
        if !marker.is_empty() && f.windows(marker.len()).any(|w| w == marker) {
            s.marker_hits += 1;
        }
        if f.len() < 14 {
            s.unexpected.push(format!("frame {i}: runt"));
            continue;
        }
        let pkt = &f[14..];
        match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 if pkt.len() >= 20 => {
                let hl = usize::from(pkt[0] & 0x0f) * 4;
                let (src, dst) = (&pkt[12..16], &pkt[16..20]);
                let l4 = pkt.get(hl..).unwrap_or(&[]);
                let desc = || {
                    format!(
                        "frame {i}: IPv4 {}.{}.{}.{} -> {}.{}.{}.{} proto {}",
                        src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], pkt[9]
                    )
                };
                if src[0] == 10 || dst[0] == 10 {
                    s.unexpected
                        .push(format!("{} (inner address on the wire)", desc()));
                    continue;
                }
                match pkt[9] {
                    50 => s.esp += 1,
                    51 => s.ah += 1,
                    17 if l4.len() >= 8 => {
                        let sport = u16::from_be_bytes([l4[0], l4[1]]);
                        let dport = u16::from_be_bytes([l4[2], l4[3]]);
                        let body = &l4[8..];
                        if sport == 500 && dport == 500 {
                            s.ike += 1;
                        } else if sport == 4500 && dport == 4500 {
                            if body == [0xff] {
                                s.keepalive += 1;
                            } else if body.len() >= 4 && body[..4] == [0, 0, 0, 0] {
                                s.ike += 1;
                            } else if body.len() >= 8 {
                                s.esp_in_udp += 1;
                            } else {
                                s.unexpected
                                    .push(format!("{}: short UDP 4500 payload", desc()));
                            }
                        } else {
                            s.unexpected
                                .push(format!("{}: UDP {sport} -> {dport}", desc()));
                        }
                    }
                    _ => s.unexpected.push(desc()),
                }
            }
            0x86dd if pkt.len() >= 40 => {
                let src_link_local = pkt[8] == 0xfe && pkt[9] & 0xc0 == 0x80;
                let src_unspec = pkt[8..24].iter().all(|b| *b == 0);
                // ICMPv6 (58) or a hop-by-hop header (0, MLD reports).
                if (src_link_local || src_unspec) && matches!(pkt[6], 0 | 58) {
                    s.ipv6_link += 1;
                } else {
                    s.unexpected
                        .push(format!("frame {i}: IPv6 next header {}", pkt[6]));
                }
            }
            0x0800 | 0x86dd => s.unexpected.push(format!("frame {i}: truncated IP")),
            _ => s.non_ip += 1,
        }
    }
    s
}

/// One ESP packet in a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPacket {
    /// Capture time, since the Unix epoch.
    pub time: Duration,
    /// The Ethernet source: which node sent it, when nodes do not share a MAC.
    pub src_mac: [u8; 6],
    /// Outer source address.
    pub src: std::net::Ipv4Addr,
    /// Outer destination address.
    pub dst: std::net::Ipv4Addr,
    /// Security parameter index.
    pub spi: u32,
    /// Sequence number (the low 32 bits with ESN).
    pub seq: u32,
    /// ESP in UDP 4500 (RFC 3948) rather than IP protocol 50.
    pub udp: bool,
}

/// ESP packets in captured Ethernet frames over IPv4: raw (IP protocol 50) and in UDP
/// 4500 (after the UDP header; IKE behind the non-ESP marker and NAT-T keepalives are
/// not ESP). Non-first fragments carry no ESP header and are skipped.
pub fn esp_packets(frames: &[PcapFrame]) -> Vec<EspPacket> {
    let mut out = Vec::new();
    for f in frames {
        let d = &f.data;
        if d.len() < 34 || u16::from_be_bytes([d[12], d[13]]) != 0x0800 {
            continue;
        }
        let ip = &d[14..];
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let fragment_offset = u16::from_be_bytes([ip[6] & 0x1f, ip[7]]);
        if hl < 20 || ip.len() < hl || fragment_offset != 0 {
            continue;
        }
        let l4 = &ip[hl..];
        let (esp, udp) = match ip[9] {
            50 => (l4, false),
            17 if l4.len() >= 8 => {
                let sport = u16::from_be_bytes([l4[0], l4[1]]);
                let dport = u16::from_be_bytes([l4[2], l4[3]]);
                let body = &l4[8..];
                if (sport != 4500 && dport != 4500) || body.len() < 8 || body[..4] == [0; 4] {
                    continue;
                }
                (body, true)
            }
            _ => continue,
        };
        if esp.len() < 8 {
            continue;
        }
        let word = |at: usize| u32::from_be_bytes([esp[at], esp[at + 1], esp[at + 2], esp[at + 3]]);
        let addr = |at: usize| std::net::Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
        let mut src_mac = [0u8; 6];
        src_mac.copy_from_slice(&d[6..12]);
        out.push(EspPacket {
            time: f.time,
            src_mac,
            src: addr(12),
            dst: addr(16),
            spi: word(0),
            seq: word(4),
            udp,
        });
    }
    out
}

/// (SPI, sequence number, times seen) of every pair seen more than once: a sequence
/// number is the AES-GCM nonce, so a repeat on the wire is a nonce reused under one key
/// (unless the capture saw one packet twice, which a capture on one end host's
/// interface does not).
pub fn repeated_esp(packets: &[EspPacket]) -> Vec<(u32, u32, usize)> {
    let mut count: std::collections::BTreeMap<(u32, u32), usize> = Default::default();
    for p in packets {
        *count.entry((p.spi, p.seq)).or_default() += 1;
    }
    count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((spi, seq), n)| (spi, seq, n))
        .collect()
}
