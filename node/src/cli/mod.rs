//! `vpnctl`'s text output: Junos-style tables and detail blocks from the management
//! API's domain views.
//!
//! Rendering is kept apart from the binary and takes `now` as an argument, so every
//! output is a pure function of its input and is tested without a server or a clock.

mod table;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::mgmt::{
    ClusterStatisticsView, ClusterStatusView, EventView, GroupNodeView, IkeRole, IkeSaState,
    IkeSaView, IpsecSaView, MonitorKind, OperationOutcome, StatsView, TrafficSelectorView,
    TunnelMapEntry,
};

pub use table::Table;

fn state_label(s: IkeSaState) -> &'static str {
    match s {
        IkeSaState::Established => "UP",
        IkeSaState::Connecting => "CONNECTING",
        IkeSaState::Down => "DOWN",
    }
}

fn role_label(r: IkeRole) -> &'static str {
    match r {
        IkeRole::Initiator => "Initiator",
        IkeRole::Responder => "Responder",
    }
}

/// `show security ike security-associations`.
pub fn ike_sas(sas: &[IkeSaView]) -> String {
    let mut t = Table::new([
        "Gateway",
        "State",
        "Initiator cookie",
        "Responder cookie",
        "Role",
        "Remote Address",
    ]);
    for sa in sas {
        t.row([
            sa.gateway.clone(),
            state_label(sa.state).to_owned(),
            format!("{:016x}", sa.spi_i),
            format!("{:016x}", sa.spi_r),
            role_label(sa.role).to_owned(),
            sa.remote.to_string(),
        ]);
    }
    t.render()
}

/// `show security ike security-associations detail`.
pub fn ike_sas_detail(sas: &[IkeSaView], now: SystemTime) -> String {
    let mut out = String::new();
    for (i, sa) in sas.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "IKE peer {}, Gateway Name: {}",
            sa.remote.ip(),
            sa.gateway
        );
        let _ = writeln!(
            out,
            "  Role: {}, State: {}",
            role_label(sa.role),
            state_label(sa.state)
        );
        let _ = writeln!(
            out,
            "  Initiator cookie: {:016x}, Responder cookie: {:016x}",
            sa.spi_i, sa.spi_r
        );
        let _ = writeln!(out, "  Exchange type: IKEv2");
        let _ = writeln!(out, "  Local: {}, Remote: {}", sa.local, sa.remote);
        match sa.established_at {
            Some(t) => {
                let up = now.duration_since(t).map_or(0, |d| d.as_secs());
                let _ = writeln!(
                    out,
                    "  Established: {} (up {})",
                    utc(t, false),
                    duration(up)
                );
            }
            None => {
                let _ = writeln!(out, "  Established: no");
            }
        }
        let _ = writeln!(out, "  Algorithms:");
        let _ = writeln!(out, "   Encryption            : {}", sa.encryption);
        let _ = writeln!(
            out,
            "   Integrity             : {}",
            sa.integrity.as_deref().unwrap_or("none (AEAD)")
        );
        let _ = writeln!(out, "   Pseudo random function: {}", sa.prf);
        let _ = writeln!(out, "   Diffie-Hellman group  : {}", sa.dh_group);
        let _ = writeln!(out, "  Anchor SPU: {}", sa.anchor_spu);
    }
    out
}

fn algorithm(sa: &IpsecSaView) -> String {
    format!(
        "{}:{}/{}",
        sa.protocol.label(),
        sa.encryption,
        sa.integrity.as_deref().unwrap_or("None")
    )
}

fn lifetime(sa: &IpsecSaView) -> String {
    match sa.lifetime_remaining_kilobytes {
        Some(kb) => format!("{}/{kb}", sa.lifetime_remaining_seconds),
        None => format!("{}/unlim", sa.lifetime_remaining_seconds),
    }
}

/// `show security ipsec security-associations`: two rows per VPN, `<` inbound and `>`
/// outbound, as Junos prints them.
pub fn ipsec_sas(sas: &[IpsecSaView]) -> String {
    let mut t = Table::new([
        "ID",
        "Algorithm",
        "SPI",
        "Life:sec/kb",
        "SPU",
        "Port",
        "Gateway",
    ]);
    for sa in sas {
        for (dir, spi) in [('<', sa.inbound_spi), ('>', sa.outbound_spi)] {
            t.row([
                format!("{dir}{}", sa.vpn),
                algorithm(sa),
                format!("{spi:08x}"),
                lifetime(sa),
                sa.anchor_spu.to_string(),
                sa.remote.port().to_string(),
                sa.remote.ip().to_string(),
            ]);
        }
    }
    format!("  Total active tunnels: {}\n{}", sas.len(), t.render())
}

/// `show security ipsec security-associations detail`.
pub fn ipsec_sas_detail(sas: &[IpsecSaView]) -> String {
    let mut out = String::new();
    for (i, sa) in sas.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "VPN Name: {}", sa.vpn);
        let _ = writeln!(
            out,
            "  Gateway: {}, Remote Gateway: {}",
            sa.gateway.as_deref().unwrap_or("(manual)"),
            sa.remote
        );
        let _ = writeln!(
            out,
            "  Bind-interface: {}, Anchor SPU: {}",
            sa.bind_interface.as_deref().unwrap_or("(policy-based)"),
            sa.anchor_spu
        );
        let _ = writeln!(out, "  Local Identity: {}", selectors(&sa.local_selectors));
        let _ = writeln!(
            out,
            "  Remote Identity: {}",
            selectors(&sa.remote_selectors)
        );
        for (dir, spi) in [("inbound", sa.inbound_spi), ("outbound", sa.outbound_spi)] {
            let _ = writeln!(
                out,
                "  Direction: {dir}, SPI: {spi:08x}, Protocol: {}, ESN: {}",
                sa.protocol.label(),
                if sa.esn { "yes" } else { "no" }
            );
        }
        let _ = writeln!(
            out,
            "    Encryption: {}, Integrity: {}",
            sa.encryption,
            sa.integrity.as_deref().unwrap_or("none (AEAD)")
        );
        let kb = sa
            .lifetime_remaining_kilobytes
            .map_or_else(|| "unlimited".to_owned(), |kb| kb.to_string());
        let _ = writeln!(
            out,
            "    Lifetime remaining: {} seconds / {kb} kilobytes",
            sa.lifetime_remaining_seconds
        );
        let _ = writeln!(
            out,
            "  Statistics: {} packets / {} bytes in, {} packets / {} bytes out",
            sa.packets_in, sa.bytes_in, sa.packets_out, sa.bytes_out
        );
        let drops: Vec<String> = sa
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  Drops: {}",
            if drops.is_empty() {
                "none".to_owned()
            } else {
                drops.join(", ")
            }
        );
    }
    out
}

/// `show security ipsec statistics`: the Junos totals and error line first, then per-SPU
/// traffic, every non-zero drop reason and the I/O counters.
pub fn statistics(stats: &StatsView) -> String {
    let sum = |f: fn(&crate::mgmt::SpuStatsView) -> u64| {
        stats.spus.iter().map(f).fold(0u64, u64::saturating_add)
    };
    let drops = stats.total_drops();
    let drop = |name: &str| drops.get(name).copied().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "ESP Statistics:");
    let _ = writeln!(out, "  Encrypted bytes:   {:>16}", sum(|s| s.bytes_out));
    let _ = writeln!(out, "  Decrypted bytes:   {:>16}", sum(|s| s.bytes_in));
    let _ = writeln!(out, "  Encrypted packets: {:>16}", sum(|s| s.packets_out));
    let _ = writeln!(out, "  Decrypted packets: {:>16}", sum(|s| s.packets_in));
    let _ = writeln!(out, "Errors:");
    let _ = writeln!(
        out,
        "  Authentication failures: {}, Replay errors: {}, Unknown SPI: {}",
        drop("icv_failure"),
        drop("replay"),
        drop("unknown_spi")
    );
    let _ = writeln!(
        out,
        "  Bad headers: {}, Bad trailers: {}",
        drop("bad_ip_header") + drop("truncated"),
        drop("bad_padding") + drop("bad_next_header")
    );
    let _ = writeln!(out, "\nPer SPU:");
    let mut t = Table::new([
        "SPU",
        "SAs",
        "Packets in",
        "Packets out",
        "Bytes in",
        "Bytes out",
        "Drops",
    ]);
    for s in &stats.spus {
        t.row([
            s.spu.to_string(),
            s.active_sas.to_string(),
            s.packets_in.to_string(),
            s.packets_out.to_string(),
            s.bytes_in.to_string(),
            s.bytes_out.to_string(),
            s.drops
                .values()
                .fold(0u64, |a, b| a.saturating_add(*b))
                .to_string(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nDrops by reason:");
    let nonzero: Vec<_> = drops.iter().filter(|(_, n)| **n > 0).collect();
    if nonzero.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (reason, n) in nonzero {
        let _ = writeln!(out, "  {reason:<24}{n:>12}");
    }
    let _ = writeln!(out, "\nI/O:");
    for (name, n) in stats.total_io() {
        let _ = writeln!(out, "  {name:<24}{n:>12}");
    }
    out
}

/// `show security ike tunnel-map`.
pub fn tunnel_map(entries: &[TunnelMapEntry]) -> String {
    let mut t = Table::new(["Tunnel", "Gateway", "SPC", "SPU"]);
    for e in entries {
        t.row([
            e.tunnel.clone(),
            e.gateway.clone(),
            e.spc.to_string(),
            e.spu.to_string(),
        ]);
    }
    t.render()
}

/// `show chassis cluster status`, laid out as Junos prints it: the legend of monitor
/// failure codes, then one block per redundancy group with a row per node. The rows use
/// Junos' fixed columns so that the blocks line up with the one heading.
pub fn cluster_status(s: &ClusterStatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Monitor Failure codes:");
    let _ = writeln!(
        out,
        "    {}  Interface monitoring        {}  IP monitoring",
        MonitorKind::Interface.code(),
        MonitorKind::Ip.code()
    );
    let _ = writeln!(out, "    {}  SPU monitoring", MonitorKind::Spu.code());
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Cluster ID: {}, local member: {}",
        s.cluster_id, s.local_member
    );
    let _ = writeln!(
        out,
        "{:<6} {:<8} {:<20} {:<7} {:<8} Monitor-failures",
        "Node", "Priority", "Status", "Preempt", "Manual"
    );
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for g in &s.redundancy_groups {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Redundancy group: {} , Failover count: {} , Epoch: {}",
            g.redundancy_group, g.failover_count, g.epoch
        );
        for n in &g.nodes {
            let _ = writeln!(
                out,
                "{:<6} {:<8} {:<20} {:<7} {:<8} {}",
                n.node.to_string(),
                n.priority,
                n.status.name(),
                yes_no(g.preempt),
                yes_no(g.manual_failover),
                failure_codes(n)
            );
        }
    }
    out
}

/// The distinct failure codes of a node (`IF IP`), or `None`.
fn failure_codes(n: &GroupNodeView) -> String {
    let mut codes: Vec<&str> = Vec::new();
    for f in &n.monitor_failures {
        if !codes.contains(&f.kind.code()) {
            codes.push(f.kind.code());
        }
    }
    if codes.is_empty() {
        "None".to_owned()
    } else {
        codes.join(" ")
    }
}

/// `show chassis cluster statistics`: control link counters in Junos' words, then the
/// replicated log, the records replicated per kind ("Services Synchronized") and each
/// member's reachability from the one that answered.
pub fn cluster_statistics(s: &ClusterStatisticsView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cluster ID: {}, local member: {}",
        s.cluster_id, s.local_member
    );
    let _ = writeln!(out, "Control link statistics:");
    let _ = writeln!(out, "    Heartbeat packets sent: {}", s.heartbeats_sent);
    let _ = writeln!(
        out,
        "    Heartbeat packets received: {}",
        s.heartbeats_received
    );
    let _ = writeln!(out, "    Lease renewals sent: {}", s.lease_renewals_sent);
    let _ = writeln!(
        out,
        "    Lease renewals received: {}",
        s.lease_renewals_received
    );
    let _ = writeln!(out, "    Failovers: {}", s.failovers);
    let _ = writeln!(out, "Replicated log:");
    let _ = writeln!(
        out,
        "    Term: {}, Leader: {}",
        s.raft.term,
        s.raft
            .leader
            .map_or_else(|| "none".to_owned(), |m| m.to_string())
    );
    let _ = writeln!(
        out,
        "    Commit index: {}, Applied index: {}",
        s.raft.commit_index, s.raft.applied_index
    );
    let _ = writeln!(out, "Services Synchronized:");
    let mut t = Table::new(["Service name", "Records sent", "Records received", "Held"]);
    for r in &s.replication {
        t.row([
            r.kind.label().to_owned(),
            r.sent.to_string(),
            r.received.to_string(),
            r.held.to_string(),
        ]);
    }
    indent(&mut out, &t.render());
    let _ = writeln!(out, "Cluster members:");
    let mut t = Table::new(["Member", "Control address", "Reachable", "Last contact"]);
    for m in &s.members {
        let reachable = if m.member == s.local_member {
            "self"
        } else if m.reachable {
            "yes"
        } else {
            "no"
        };
        let last = match m.last_contact {
            _ if m.member == s.local_member => "-".to_owned(),
            None => "never".to_owned(),
            Some(d) => format!("{} ago", elapsed(d)),
        };
        t.row([
            m.member.to_string(),
            m.control_address.to_string(),
            reachable.to_owned(),
            last,
        ]);
    }
    indent(&mut out, &t.render());
    out
}

/// Appends `text` with every line indented by four spaces (Junos' sub-block indent).
fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "    {line}");
    }
}

/// A short age: milliseconds under a second, tenths of seconds under a minute, then
/// the uptime form.
fn elapsed(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        duration(d.as_secs())
    }
}

/// The one-line answer to an operation.
pub fn outcome(o: &OperationOutcome) -> String {
    match o {
        OperationOutcome::Done(m) => m.clone(),
        OperationOutcome::NoChange(m) => format!("no change: {m}"),
    }
}

/// One line of `monitor security events`.
pub fn event(e: &EventView) -> String {
    let mut line = format!(
        "{} {}",
        utc(e.timestamp, true),
        e.kind.name().to_uppercase().replace('-', "_")
    );
    if let Some(g) = &e.gateway {
        let _ = write!(line, " gateway {g}");
    }
    if let Some(v) = &e.vpn {
        let _ = write!(line, " vpn {v}");
    }
    if let Some(spi) = e.spi {
        let _ = write!(line, " spi {spi:x}");
    }
    if !e.message.is_empty() {
        let _ = write!(line, ": {}", e.message);
    }
    line
}

/// A traffic selector list as Junos prints identities: `ipv4_subnet(10.1.0.0/16)` is
/// shortened to the prefix when the range is one, with protocol and ports only when
/// they narrow it.
fn selectors(ts: &[TrafficSelectorView]) -> String {
    if ts.is_empty() {
        return "any".to_owned();
    }
    let parts: Vec<String> = ts
        .iter()
        .map(|t| {
            let mut s = address_range(t.start, t.end);
            if t.protocol != 0 {
                let _ = write!(s, " proto {}", t.protocol);
            }
            if (t.start_port, t.end_port) != (0, u16::MAX) {
                if t.start_port == t.end_port {
                    let _ = write!(s, " port {}", t.start_port);
                } else {
                    let _ = write!(s, " ports {}-{}", t.start_port, t.end_port);
                }
            }
            s
        })
        .collect();
    parts.join(", ")
}

/// `start/len` when the range is exactly a prefix, else `start-end`.
fn address_range(start: IpAddr, end: IpAddr) -> String {
    let (s, e, bits) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => {
            (u128::from(u32::from(s)), u128::from(u32::from(e)), 32u32)
        }
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128u32),
        _ => return format!("{start}-{end}"),
    };
    if s == e {
        return start.to_string();
    }
    let host_bits = (s ^ e).count_ones();
    let host_mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if s & host_mask == 0 && e & host_mask == host_mask && s | host_mask == e {
        format!("{start}/{}", bits - host_bits)
    } else {
        format!("{start}-{end}")
    }
}

/// `YYYY-MM-DD HH:MM:SS[.mmm] UTC`, without a date crate: civil date from days since
/// the epoch (Howard Hinnant's algorithm).
fn utc(t: SystemTime, millis: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if millis {
        let _ = write!(s, ".{:03}", d.subsec_millis());
    }
    s.push_str(" UTC");
    s
}

/// `1d 02:03:04` style uptime.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(UNIX_EPOCH, false), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(utc(t, true), "2024-02-29 12:34:56.789 UTC");
    }

    #[test]
    fn ranges_print_as_prefixes_when_they_are() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            address_range(a("10.1.0.0"), a("10.1.255.255")),
            "10.1.0.0/16"
        );
        assert_eq!(
            address_range(a("0.0.0.0"), a("255.255.255.255")),
            "0.0.0.0/0"
        );
        assert_eq!(address_range(a("10.0.0.1"), a("10.0.0.1")), "10.0.0.1");
        assert_eq!(
            address_range(a("10.0.0.1"), a("10.0.0.9")),
            "10.0.0.1-10.0.0.9"
        );
        assert_eq!(
            address_range(a("2001:db8::"), a("2001:db8::ffff")),
            "2001:db8::/112"
        );
        assert_eq!(
            address_range(a("::"), a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            "::/0"
        );
    }

    use crate::mgmt::{
        Member, MemberReachabilityView, MonitorFailure, RaftView, RecordKind, RedundancyGroupView,
        RedundancyState, ReplicationView,
    };

    fn node(node: Member, priority: u8, status: RedundancyState) -> GroupNodeView {
        GroupNodeView {
            node,
            priority,
            status,
            monitor_failures: Vec::new(),
        }
    }

    #[test]
    fn cluster_status_is_laid_out_like_junos() {
        let mut node1 = node(Member::Node1, 0, RedundancyState::Ineligible);
        node1.monitor_failures = vec![
            MonitorFailure {
                kind: MonitorKind::Interface,
                object: "eth1".into(),
                weight: 255,
            },
            MonitorFailure {
                kind: MonitorKind::Ip,
                object: "198.51.100.254".into(),
                weight: 100,
            },
            MonitorFailure {
                kind: MonitorKind::Interface,
                object: "eth0".into(),
                weight: 255,
            },
        ];
        let status = ClusterStatusView {
            cluster_id: 1,
            local_member: Member::Node0,
            redundancy_groups: vec![
                RedundancyGroupView {
                    redundancy_group: 0,
                    failover_count: 1,
                    epoch: 1,
                    preempt: false,
                    manual_failover: false,
                    nodes: vec![
                        node(Member::Node0, 200, RedundancyState::Primary),
                        node(Member::Node1, 100, RedundancyState::Secondary),
                    ],
                },
                RedundancyGroupView {
                    redundancy_group: 1,
                    failover_count: 3,
                    epoch: 7,
                    preempt: true,
                    manual_failover: true,
                    nodes: vec![node(Member::Node0, 200, RedundancyState::Primary), node1],
                },
            ],
        };
        assert_eq!(
            cluster_status(&status),
            "\
Monitor Failure codes:
    IF  Interface monitoring        IP  IP monitoring
    SP  SPU monitoring

Cluster ID: 1, local member: node0
Node   Priority Status               Preempt Manual   Monitor-failures

Redundancy group: 0 , Failover count: 1 , Epoch: 1
node0  200      primary              no      no       None
node1  100      secondary            no      no       None

Redundancy group: 1 , Failover count: 3 , Epoch: 7
node0  200      primary              yes     yes      None
node1  0        ineligible           yes     yes      IF IP
"
        );
    }

    #[test]
    fn cluster_statistics_blocks() {
        let stats = ClusterStatisticsView {
            cluster_id: 1,
            local_member: Member::Node1,
            heartbeats_sent: 2276,
            heartbeats_received: 2280,
            lease_renewals_sent: 0,
            lease_renewals_received: 1137,
            failovers: 2,
            raft: RaftView {
                term: 4,
                leader: None,
                commit_index: 1234,
                applied_index: 1230,
            },
            replication: RecordKind::ALL
                .into_iter()
                .zip(1u64..)
                .map(|(kind, n)| ReplicationView {
                    kind,
                    sent: 0,
                    received: n * 10,
                    held: n,
                })
                .collect(),
            members: vec![
                MemberReachabilityView {
                    member: Member::Node0,
                    control_address: "10.255.0.1:7400".parse().unwrap_or_else(|_| unreachable!()),
                    reachable: true,
                    last_contact: Some(Duration::from_millis(250)),
                },
                MemberReachabilityView {
                    member: Member::Node1,
                    control_address: "10.255.0.2:7400".parse().unwrap_or_else(|_| unreachable!()),
                    reachable: true,
                    last_contact: None,
                },
                MemberReachabilityView {
                    member: Member::Witness,
                    control_address: "10.255.0.3:7400".parse().unwrap_or_else(|_| unreachable!()),
                    reachable: false,
                    last_contact: Some(Duration::from_millis(12_345)),
                },
            ],
        };
        assert_eq!(
            cluster_statistics(&stats),
            "\
Cluster ID: 1, local member: node1
Control link statistics:
    Heartbeat packets sent: 2276
    Heartbeat packets received: 2280
    Lease renewals sent: 0
    Lease renewals received: 1137
    Failovers: 2
Replicated log:
    Term: 4, Leader: none
    Commit index: 1234, Applied index: 1230
Services Synchronized:
    Service name          Records sent  Records received  Held
    IKE SA                0             10                1
    IPsec SA              0             20                2
    Sequence reservation  0             30                3
    Replay mark           0             40                4
Cluster members:
    Member   Control address  Reachable  Last contact
    node0    10.255.0.1:7400  yes        250 ms ago
    node1    10.255.0.2:7400  self       -
    witness  10.255.0.3:7400  no         12.3 s ago
"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(elapsed(Duration::from_millis(999)), "999 ms");
        assert_eq!(elapsed(Duration::from_millis(1000)), "1.0 s");
        assert_eq!(elapsed(Duration::from_secs(61)), "00:01:01");
    }

    #[test]
    fn uptime() {
        assert_eq!(duration(59), "00:00:59");
        assert_eq!(duration(90_061), "1d 01:01:01");
    }
}
