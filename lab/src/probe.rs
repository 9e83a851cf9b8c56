//! A sequence-numbered UDP probe between two lab hosts: loss, duplicates, reordering
//! and the longest gap per direction.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::in_netns;

/// First bytes of every probe datagram, so that stray traffic is never counted.
const PROBE_MAGIC: &[u8; 4] = b"VPRB";
/// Probe datagram size: small, so the probe measures forwarding, not bandwidth.
const PROBE_LEN: usize = 64;
/// How long receivers keep listening after the senders stop, for packets in flight.
const PROBE_DRAIN: Duration = Duration::from_millis(500);

/// One probe datagram as received: its sequence number, and when it was sent and
/// received, both as offsets from the probe's start.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    seq: u64,
    sent: Duration,
    arrived: Duration,
}

/// One direction's record.
#[derive(Debug, Default)]
struct FlowLog {
    sent: std::sync::atomic::AtomicU64,
    send_errors: std::sync::atomic::AtomicU64,
    arrivals: std::sync::Mutex<Vec<Arrival>>,
}

/// What one direction of a [`UdpProbe`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// `from -> to`.
    pub name: String,
    /// Datagrams sent (send errors included: the network had no route for them).
    pub sent: u64,
    /// Sends that failed at once (no route or neighbour).
    pub send_errors: u64,
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Sent and never received.
    pub lost: u64,
    /// Sequence numbers received more than once (each extra copy counts).
    pub duplicates: u64,
    /// Arrivals with a lower sequence number than one received before.
    pub reordered: u64,
    /// The longest time without an arrival while the sender was sending (from the
    /// start, between arrivals, or from the last arrival to the sender's stop).
    pub longest_gap: Duration,
    /// When that gap began, from the probe's start.
    pub gap_from: Duration,
}

impl std::fmt::Display for FlowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: sent {} ({} send errors), received {}, lost {}, duplicates {}, reordered {}, \
             longest gap {} ms (from {:.3} s)",
            self.name,
            self.sent,
            self.send_errors,
            self.received,
            self.lost,
            self.duplicates,
            self.reordered,
            self.longest_gap.as_millis(),
            self.gap_from.as_secs_f64()
        )
    }
}

/// A sequence-numbered UDP flow in each direction between two hosts in two
/// namespaces, one datagram per `interval` each way, recording every arrival: loss,
/// duplicates (a replayed packet that got through), reordering and the longest gap
/// (the outage a failover caused) per direction.
///
/// The sockets are created on threads that entered the hosts' namespaces (a socket
/// stays in the namespace it was created in), and used from plain threads.
#[derive(Debug)]
pub struct UdpProbe {
    start: Instant,
    names: [String; 2],
    flows: [std::sync::Arc<FlowLog>; 2],
    sending: std::sync::Arc<std::sync::atomic::AtomicBool>,
    receiving: std::sync::Arc<std::sync::atomic::AtomicBool>,
    senders: Vec<std::thread::JoinHandle<()>>,
    receivers: Vec<std::thread::JoinHandle<()>>,
    stopped_at: Option<Duration>,
}

impl UdpProbe {
    /// Starts the flows between `a` and `b`: (namespace, address to bind and to send
    /// to). Direction 0 is a to b, direction 1 b to a.
    pub fn start(a: (&str, SocketAddr), b: (&str, SocketAddr), interval: Duration) -> Result<Self> {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let bind = |(ns, addr): (&str, SocketAddr)| {
            in_netns(ns, || {
                let s = std::net::UdpSocket::bind(addr)
                    .with_context(|| format!("binding the probe socket {addr} in {ns}"))?;
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                s.set_write_timeout(Some(Duration::from_millis(100)))?;
                Ok(s)
            })
        };
        let sockets = [bind(a)?, bind(b)?];
        let peers = [b.1, a.1];
        let mut probe = UdpProbe {
            start: Instant::now(),
            names: [format!("{} -> {}", a.0, b.0), format!("{} -> {}", b.0, a.0)],
            flows: [Arc::default(), Arc::default()],
            sending: Arc::new(AtomicBool::new(true)),
            receiving: Arc::new(AtomicBool::new(true)),
            senders: Vec::new(),
            receivers: Vec::new(),
            stopped_at: None,
        };
        for dir in 0..2 {
            // Direction `dir` leaves from socket `dir` and arrives at the other.
            let tx = sockets[dir].try_clone()?;
            let rx = sockets[1 - dir].try_clone()?;
            let (to, start) = (peers[dir], probe.start);
            let (log_tx, log_rx) = (probe.flows[dir].clone(), probe.flows[dir].clone());
            let (sending, receiving) = (probe.sending.clone(), probe.receiving.clone());
            let tag = dir as u8;
            probe.senders.push(std::thread::spawn(move || {
                probe_send(&tx, to, tag, start, interval, &sending, &log_tx);
            }));
            probe.receivers.push(std::thread::spawn(move || {
                probe_receive(&rx, tag, start, &receiving, &log_rx);
            }));
        }
        Ok(probe)
    }

    /// Datagrams of direction `dir` (0: a to b) sent at or after `t` and received.
    pub fn received_sent_after(&self, dir: usize, t: Instant) -> usize {
        let from = t.saturating_duration_since(self.start);
        self.flows[dir]
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|a| a.sent >= from)
            .count()
    }

    /// Waits until both directions received `count` datagrams sent at or after `t`:
    /// traffic flows again after an event at `t`.
    pub fn wait_flowing_after(&self, t: Instant, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = [
                self.received_sent_after(0, t),
                self.received_sent_after(1, t),
            ];
            if got.iter().all(|n| *n >= count) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {count} probe datagrams each way \
                     sent after the event: {}: {}, {}: {}",
                    self.names[0],
                    got[0],
                    self.names[1],
                    got[1]
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops sending, waits for what is in flight, and reports each direction.
    pub fn stop(mut self) -> [FlowStats; 2] {
        self.halt();
        [self.stats(0), self.stats(1)]
    }

    /// [`UdpProbe::stop`], with each direction's longest gap counted from its last
    /// arrival before `event` on: the outage the event caused, whatever the flow did
    /// before it.
    pub fn stop_around(mut self, event: Instant) -> ([FlowStats; 2], [Duration; 2]) {
        self.halt();
        let from = event.saturating_duration_since(self.start);
        let end = self.stopped_at.unwrap_or_else(|| self.start.elapsed());
        let gaps = [0, 1].map(|dir| {
            let arrivals = self.flows[dir]
                .arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Arrivals are recorded in arrival order.
            let before = arrivals
                .iter()
                .rev()
                .map(|a| a.arrived)
                .find(|t| *t < from)
                .unwrap_or(Duration::ZERO);
            let mut points = vec![before];
            points.extend(
                arrivals
                    .iter()
                    .map(|a| a.arrived.min(end))
                    .filter(|t| *t >= from),
            );
            points.push(end);
            points
                .windows(2)
                .map(|w| w[1].saturating_sub(w[0]))
                .max()
                .unwrap_or_default()
        });
        ([self.stats(0), self.stats(1)], gaps)
    }

    fn halt(&mut self) {
        use std::sync::atomic::Ordering;
        if self.stopped_at.is_some() {
            return;
        }
        self.sending.store(false, Ordering::Relaxed);
        for t in self.senders.drain(..) {
            let _ = t.join();
        }
        self.stopped_at = Some(self.start.elapsed());
        std::thread::sleep(PROBE_DRAIN);
        self.receiving.store(false, Ordering::Relaxed);
        for t in self.receivers.drain(..) {
            let _ = t.join();
        }
    }

    fn stats(&self, dir: usize) -> FlowStats {
        use std::sync::atomic::Ordering;
        let log = &self.flows[dir];
        let arrivals = log.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let sent = log.sent.load(Ordering::Relaxed);
        let mut seen = std::collections::HashSet::new();
        let (mut duplicates, mut reordered, mut highest) = (0, 0, None);
        for a in arrivals.iter() {
            if !seen.insert(a.seq) {
                duplicates += 1;
            }
            match highest {
                Some(h) if a.seq < h => reordered += 1,
                _ => highest = Some(a.seq),
            }
        }
        let end = self.stopped_at.unwrap_or_else(|| self.start.elapsed());
        let mut points: Vec<Duration> = vec![Duration::ZERO];
        points.extend(arrivals.iter().map(|a| a.arrived.min(end)));
        points.push(end);
        let (longest_gap, gap_from) = points
            .windows(2)
            .map(|w| (w[1].saturating_sub(w[0]), w[0]))
            .max_by_key(|(gap, _)| *gap)
            .unwrap_or_default();
        let received = seen.len() as u64;
        FlowStats {
            name: self.names[dir].clone(),
            sent,
            send_errors: log.send_errors.load(Ordering::Relaxed),
            received,
            lost: sent.saturating_sub(received),
            duplicates,
            reordered,
            longest_gap,
            gap_from,
        }
    }
}

impl Drop for UdpProbe {
    fn drop(&mut self) {
        self.halt();
    }
}

fn probe_send(
    sock: &std::net::UdpSocket,
    to: SocketAddr,
    dir: u8,
    start: Instant,
    interval: Duration,
    sending: &std::sync::atomic::AtomicBool,
    log: &FlowLog,
) {
    use std::sync::atomic::Ordering;
    let mut buf = [0u8; PROBE_LEN];
    buf[..4].copy_from_slice(PROBE_MAGIC);
    buf[4] = dir;
    let mut next = Instant::now();
    let mut seq = 0u64;
    while sending.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let sent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        buf[5..13].copy_from_slice(&seq.to_be_bytes());
        buf[13..21].copy_from_slice(&sent.to_be_bytes());
        if sock.send_to(&buf, to).is_err() {
            log.send_errors.fetch_add(1, Ordering::Relaxed);
        }
        log.sent.fetch_add(1, Ordering::Relaxed);
        seq += 1;
        next += interval;
        // After a stall of this process (two shared cores), carry on from now instead of
        // sending the missed slots in a burst that the network never asked for.
        let now = Instant::now();
        if now > next + interval * 20 {
            next = now;
        }
    }
}

fn probe_receive(
    sock: &std::net::UdpSocket,
    dir: u8,
    start: Instant,
    receiving: &std::sync::atomic::AtomicBool,
    log: &FlowLog,
) {
    use std::sync::atomic::Ordering;
    let mut buf = [0u8; 256];
    while receiving.load(Ordering::Relaxed) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n < 21 || &buf[..4] != PROBE_MAGIC || buf[4] != dir {
            continue;
        }
        let arrived = start.elapsed();
        let field = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at..at + 8]);
            u64::from_be_bytes(b)
        };
        log.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arrival {
                seq: field(5),
                sent: Duration::from_nanos(field(13)),
                arrived,
            });
    }
}
