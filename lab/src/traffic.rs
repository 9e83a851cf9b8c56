//! Ping and TCP traffic between lab hosts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{in_netns, wait_for};

/// Result of a `ping` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

impl PingStats {
    pub fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// Parses ping's "N packets transmitted, M received" summary.
pub fn parse_ping(out: &str) -> Option<PingStats> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some(PingStats {
        transmitted: nums.next()??,
        received: nums.next()??,
    })
}

/// `ping -c count -i interval` from namespace `ns` to `dst`; the statistics and output,
/// whether or not every reply came (ping's exit status is not an error here).
pub fn ping(ns: &str, dst: &str, count: u32, interval: &str) -> Result<(PingStats, String)> {
    let deadline = (f64::from(count) * interval.parse::<f64>().unwrap_or(1.0)).ceil() as u64 + 5;
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "2",
            "-w",
            &deadline.to_string(),
            dst,
        ])
        .stdin(Stdio::null())
        .output()
        .context("running ping")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stats = parse_ping(&text).with_context(|| {
        format!(
            "no ping summary in: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((stats, text))
}

/// Pings once a second (one probe each) until one reply comes, up to `timeout`.
pub fn wait_ping(ns: &str, dst: &str, timeout: Duration) -> Result<()> {
    wait_for(&format!("a ping reply from {dst} in {ns}"), timeout, || {
        Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| ())
    })
}

/// Deterministic payload, with `marker` every 4 KiB so a capture can prove the
/// cleartext never reached the wire.
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

/// Sends `data` over TCP from namespace `client_ns` to `server` (a listener in
/// `server_ns`); returns what the server received and the elapsed time.
pub fn tcp_transfer(
    server_ns: &str,
    client_ns: &str,
    server: SocketAddr,
    data: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, Duration)> {
    let listener = in_netns(server_ns, || {
        TcpListener::bind(server).context("binding the TCP server")
    })?;
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let receiver = s.spawn(move || -> Result<Vec<u8>> {
            let mut conn = wait_for("the TCP connection", timeout, || {
                listener.accept().ok().map(|(c, _)| c)
            })?;
            conn.set_nonblocking(false)?;
            conn.set_read_timeout(Some(timeout))?;
            let mut got = Vec::with_capacity(data.len());
            conn.read_to_end(&mut got).context("receiving")?;
            Ok(got)
        });
        let sent = in_netns(client_ns, || {
            let mut c = TcpStream::connect_timeout(&server, Duration::from_secs(5))
                .context("connecting through the tunnel")?;
            c.set_write_timeout(Some(timeout))?;
            c.write_all(data).context("sending")?;
            c.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        });
        let got = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("TCP receiver panicked"))?;
        sent?;
        Ok((got?, start.elapsed()))
    })
}

/// `GET path` from `addr` inside namespace `ns` (HTTP/1.1, one request): the whole
/// reply, status line and headers included.
pub fn http_get(ns: &str, addr: std::net::SocketAddr, path: &str) -> Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    crate::in_netns(ns, move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    })
}
