//! Junos-style monitoring: interface and IP monitors and failed SPUs cost a node weight
//! per redundancy group; at 255 the node's priority for the group drops to 0 and it
//! gives the group up to a healthy peer (`ha::GroupFsm::set_failed_weight`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ha::{GroupConfig, IpMonitor};

use crate::mgmt::backend::{MonitorFailure, MonitorKind};

/// Whether an interface is operationally up, from sysfs (the network namespace's view).
/// A missing interface is down.
pub fn interface_up(name: &str) -> bool {
    if name.contains('/') || name.contains("..") {
        return false;
    }
    match std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")) {
        // "unknown" is what drivers without carrier reporting (tun, veth peers in some
        // kernels) say while working.
        Ok(s) => matches!(s.trim(), "up" | "unknown"),
        Err(_) => false,
    }
}

/// One ICMP echo to `addr`, answered within `timeout`. Raw socket (vpnd runs as root).
pub fn echo(addr: IpAddr, timeout: Duration) -> bool {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, proto, request) = match addr {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let Ok(sock) = Socket::new(domain, Type::RAW, Some(proto)) else {
        return false;
    };
    let ident = (std::process::id() & 0xffff) as u16;
    let mut pkt = [request, 0, 0, 0, (ident >> 8) as u8, ident as u8, 0, 1];
    if addr.is_ipv4() {
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let target = SocketAddr::new(addr, 0);
    if sock.send_to(&pkt, &target.into()).is_err() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            return false;
        }
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return false;
        };
        // SAFETY: recv_from initialised the first `n` bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if from.as_socket().map(|s| s.ip()) != Some(addr) {
            continue;
        }
        // IPv4 raw sockets include the IP header; ICMPv6 ones do not.
        let icmp = match addr {
            IpAddr::V4(_) => data.get(usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4..),
            IpAddr::V6(_) => Some(&data[..]),
        };
        let reply = if addr.is_ipv4() { 0 } else { 129 };
        if let Some(icmp) = icmp
            && icmp.len() >= 8
            && icmp[0] == reply
            && icmp[4..6] == pkt[4..6]
        {
            return true;
        }
    }
    false
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The consecutive-loss state of one IP monitor.
#[derive(Debug, Clone)]
pub struct IpProbe {
    target: IpMonitor,
    lost: u32,
    next: Instant,
}

impl IpProbe {
    /// A monitor that probes from now on.
    pub fn new(target: IpMonitor, now: Instant) -> Self {
        Self {
            target,
            lost: 0,
            next: now,
        }
    }

    /// The monitored address.
    pub fn address(&self) -> IpAddr {
        self.target.address
    }

    /// Whether a probe is due at `now` (then the caller runs `echo` and reports back).
    pub fn due(&self, now: Instant) -> Option<IpAddr> {
        (now >= self.next).then_some(self.target.address)
    }

    /// Records a probe's result.
    pub fn record(&mut self, answered: bool, now: Instant) {
        self.lost = if answered {
            0
        } else {
            self.lost.saturating_add(1)
        };
        self.next = now + self.target.interval;
    }

    /// Down after `threshold` consecutive losses (Junos `retry-count`).
    pub fn down(&self) -> bool {
        self.lost >= self.target.threshold.max(1)
    }
}

/// What a group's monitors cost this node now.
pub fn failures(
    group: &GroupConfig,
    probes: &[IpProbe],
    failed_spus: &[usize],
) -> Vec<MonitorFailure> {
    let mut out: Vec<MonitorFailure> = group
        .interface_monitor
        .iter()
        .filter(|(name, _)| !interface_up(name))
        .map(|(name, weight)| MonitorFailure {
            kind: MonitorKind::Interface,
            object: name.clone(),
            weight: *weight,
        })
        .collect();
    out.extend(
        probes
            .iter()
            .filter(|p| {
                p.down()
                    && group
                        .ip_monitor
                        .iter()
                        .any(|m| m.address == p.target.address)
            })
            .map(|p| MonitorFailure {
                kind: MonitorKind::Ip,
                object: p.target.address.to_string(),
                weight: p.target.weight,
            }),
    );
    if group.spu_weight > 0 {
        out.extend(failed_spus.iter().map(|spu| MonitorFailure {
            kind: MonitorKind::Spu,
            object: format!("spu {spu}"),
            weight: group.spu_weight,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_an_echo_request() {
        // Type 8, code 0, id 0x1234, seq 1: sum of words 0x0800 + 0x1234 + 0x0001.
        let pkt = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(checksum(&pkt), !(0x0800u16 + 0x1234 + 0x0001));
    }

    #[test]
    fn loopback_is_up_and_nonsense_is_down() {
        assert!(interface_up("lo"));
        assert!(!interface_up("no-such-if0"));
        assert!(!interface_up("../../etc"));
    }

    #[test]
    fn ip_probe_goes_down_after_threshold_and_back() {
        let t = Instant::now();
        let mut p = IpProbe::new(
            IpMonitor {
                address: "192.0.2.1".parse().unwrap(),
                weight: 255,
                interval: Duration::from_secs(1),
                threshold: 3,
            },
            t,
        );
        assert!(p.due(t).is_some());
        for _ in 0..2 {
            p.record(false, t);
        }
        assert!(!p.down());
        p.record(false, t);
        assert!(p.down());
        assert!(p.due(t).is_none());
        p.record(true, t + Duration::from_secs(1));
        assert!(!p.down());
    }
}
