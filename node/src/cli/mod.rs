//! `vpnctl`'s text output: Junos-style tables and detail blocks from the management
//! API's domain views.
//!
//! Rendering is kept apart from the binary and takes `now` as an argument, so every
//! output is a pure function of its input and is tested without a server or a clock.

mod table;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mgmt::{
    EventView, IkeRole, IkeSaState, IkeSaView, IpsecSaView, OperationOutcome, StatsView,
    TrafficSelectorView, TunnelMapEntry,
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

    #[test]
    fn uptime() {
        assert_eq!(duration(59), "00:00:59");
        assert_eq!(duration(90_061), "1d 01:01:01");
    }
}
