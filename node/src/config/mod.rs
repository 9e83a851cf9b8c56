//! The `vpnd` configuration: a TOML file mirroring the Junos `security` hierarchy.
//!
//! An SRX administrator should recognise every key: `[security.ike.proposal.NAME]`,
//! `[security.ike.policy.NAME]`, `[security.ike.gateway.NAME]`,
//! `[security.ipsec.proposal.NAME]`, `[security.ipsec.policy.NAME]`,
//! `[security.ipsec.vpn.NAME]`, `[security.policies.from-zone.A.to-zone.B.policy.NAME]`,
//! `[interfaces.st0.unit.N]`, `[routing-options.static.route."PREFIX"]`, and for a
//! chassis cluster `[chassis.cluster]` and `[interfaces.rethN]`. The file goes
//! through three stages:
//!
//! 1. TOML syntax and types (`raw`): serde structs with `deny_unknown_fields` everywhere;
//!    the first such error stops parsing, as serde cannot go on past it.
//! 2. Validation (`validate`): references, ranges, algorithm combinations. Every problem
//!    is collected, so one reload shows them all.
//! 3. The resolved [`model`]: what the daemon runs from.
//!
//! Every error reads `file:line:column: dotted.key.path: reason` (see [`ConfigError`]).
//!
//! # Departures from Junos, and why
//!
//! - IKE `authentication-algorithm` is the PRF and, with a non-AEAD cipher, also the
//!   integrity transform (as in Junos). With AES-GCM or ChaCha20-Poly1305 it names the
//!   PRF only (RFC 7296 needs one) and may be omitted: the PRF then defaults to SHA-384
//!   for AES-256-GCM and SHA-256 otherwise.
//! - IPsec ESP with a CBC cipher requires an `authentication-algorithm` (Junos accepts
//!   encryption-only ESP; our dataplane refuses it, see RFC 4303 §3.2.2).
//! - `version` defaults to `v2-only` (Junos: `v1-only`), since IKEv2 is what the `ike`
//!   crate implements; `v1-only` is accepted and carried in the model.
//! - `address` takes IP addresses only (no hostnames: no resolver in the control path);
//!   `local-address` replaces `external-interface`.
//! - `dead-peer-detection.mode = "optimized" | "probe-idle-tunnel" | "always-send"`
//!   replaces the three Junos flag statements, which are mutually exclusive anyway.
//!   Ranges: interval 2..60 s (default 10), threshold 1..5 (default 5).
//! - `lifetime-seconds` is 180..86400 for IKE (default 28800) and IPsec (default 3600);
//!   `lifetime-kilobytes = 0` means no volume lifetime, otherwise 64..4294967294.
//! - Anti-replay: `anti-replay-window-size` (per VPN, or for all VPNs in
//!   `[security.ipsec]`) must be a power of two in 64..8192, default 64.
//!   `no-anti-replay = true` together with a window size on the same VPN is an error.
//! - Predefined IPsec proposal sets imply the PFS group their member names carry
//!   (`standard` = `g2-...`: group 2); an explicit `perfect-forward-secrecy.keys` wins.
//! - Manual keying (`manual`): `spi` and `key` describe the inbound SA; `remote-spi` and
//!   `remote-key` the outbound one and default to them, which is the Junos
//!   single-SPI/single-key form. With an AEAD cipher a distinct `remote-key` is
//!   required, since the same key in both directions would reuse GCM nonces. SPIs range
//!   over 256..2^32-1 (the RFC 4303 range; Junos' 256..16639 is a platform limit).
//!   Manual SAs never run anti-replay (sequence numbers restart with either peer).
//! - Security policies match prefixes (or `"any"`) directly instead of address-book
//!   names, and `application` is only `"any"`; `then.deny = {}` spells the flag. A
//!   policy-based VPN's traffic selectors are source × destination of the policies that
//!   tunnel into it, so write those policies from the protected zone outward.
//! - `traffic-selector` is only for route-based VPNs (as Junos), and `bind-interface`
//!   must name a configured `[interfaces.st0.unit.N]`; one st0 unit serves one VPN
//!   (no point-to-multipoint yet).
//! - `[security.address-pools.NAME]` stands in for Junos
//!   `access address-assignment pool`, with `dns-server` directly under the family.
//! - Prefixes with host bits set (`10.1.2.3/16`) are rejected, not masked.
//! - `[interfaces]` holds only `st0` units: physical interfaces belong to the host.
//!   `routing-options.static.route` takes IPv6 prefixes too (Junos: `rib inet6.0`).
//!   As Junos' `family inet6`, a unit runs IPv6 only when something gives it IPv6: a
//!   `family.inet6.address`, an IPv6 static route into it, or an IPv6 traffic selector
//!   of its VPN; otherwise IPv6 is disabled on it (the kernel then keeps no IPv6 routes
//!   for it, which is what lets thousands of units start in seconds).
//! - `[services.management]` and `[services.metrics]` (listen addresses) are ours.
//!
//! # Chassis cluster
//!
//! `[chassis.cluster]` follows `set chassis cluster ...`: `cluster-id` (1..255, required),
//! `heartbeat-interval` (ms, default 1000), `heartbeat-threshold` (3..8, default 3),
//! and `[chassis.cluster.redundancy-group.N]` with `node.0.priority` /
//! `node.1.priority` (1..254, both required), `preempt = { delay = S }` (bare flag
//! `preempt = {}`: delay 1 s), `interface-monitor.IFACE.weight` and
//! `ip-monitoring { retry-interval, retry-count, family.inet."ADDR".weight }`.
//! Redundancy group 0 is required and, as in Junos, takes no preempt and no monitoring.
//! Departures:
//!
//! - The file is the same on every member; which member a process is comes from
//!   `vpnd --node node0|node1|witness` (Junos: `set chassis cluster node N` at boot).
//!   So each member's cluster link is configured by address,
//!   `[chassis.cluster.node.0] control-address = "ADDR:PORT"`, `node.1` likewise, and
//!   a third voter, `[chassis.cluster.witness]`, which Junos does not have: a two-voter
//!   Raft group cannot survive the loss of either node. There is no fabric link.
//! - `heartbeat-interval` goes down to 100 ms (Junos: 1000..2000).
//! - `data-directory` (ours; default `/var/lib/vpnd/cluster`) holds the replicated log,
//!   one subdirectory per member.
//! - `spu-weight` (ours, 0..255) is what each failed SPU costs the group.
//! - `ip-monitoring` has no `global-weight`/`global-threshold`: each address's weight
//!   counts against the group's threshold of 255 directly, like an interface's.
//! - `interface-monitor` names host interfaces, which each node watches on itself; a
//!   reth name stands for that reth's child interface on each node.
//! - `[interfaces.rethN]` takes `redundant-ether-options.redundancy-group` (1 or
//!   above), `child-interface.node0` / `.node1` (the host interface carrying the reth on
//!   each node; Junos writes `redundant-parent` on the child instead, and needs no
//!   `reth-count`) and `unit.0.family.inet.address` / `inet6` (unit 0 only).
//! - In a cluster every gateway's (and manual VPN's) `local-address` must be a reth
//!   address: only those move with a failover.

mod error;
pub mod model;
pub mod proposals;
mod raw;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use error::{ConfigError, Diagnostic};
pub use model::Config;

use error::{Diagnostics, key_path};

/// The route-based PSK AES-GCM site-to-site example, side A (192.0.2.1, LAN
/// 10.1.0.0/16); `vpnd` runs this when started without a configuration.
pub const DEFAULT_SITE_A: &str = include_str!("../../tests/data/site-a.toml");
/// Side B (192.0.2.2, LAN 10.2.0.0/16) of the same tunnel.
pub const DEFAULT_SITE_B: &str = include_str!("../../tests/data/site-b.toml");

impl Config {
    /// Reads and validates the file at `path`. Relative certificate paths are resolved
    /// against the file's directory, so a configuration directory can be moved whole.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Validates `text`; `file_name` is only used in error messages.
    pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        let mut d = Diagnostics::new(file_name, text);
        let (table, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            for e in syntax {
                report_toml(&mut d, &table, &e);
            }
            return Err(d.into_error());
        }
        let raw = match raw::RawConfig::deserialize(toml::de::Deserializer::from(table.clone())) {
            Ok(raw) => raw,
            Err(e) => {
                report_toml(&mut d, &table, &e);
                return Err(d.into_error());
            }
        };
        match validate::resolve(&raw, &mut d) {
            Some(config) if d.is_empty() => Ok(config),
            _ => Err(d.into_error()),
        }
    }

    /// Resolves relative certificate paths against `dir` (the file's directory).
    pub(crate) fn resolve_paths(&mut self, dir: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        for gw in &mut self.gateways {
            if let model::Auth::Certificate(c) = &mut gw.auth {
                join(&mut c.local_certificate);
                join(&mut c.private_key);
                c.trusted_ca.iter_mut().for_each(join);
            }
        }
        if let Some(c) = &mut self.cluster {
            join(&mut c.data_directory);
        }
    }
}

/// Records a TOML syntax or type error, finding its key path from the span.
fn report_toml(d: &mut Diagnostics<'_>, table: &Spanned<DeTable<'_>>, e: &toml::de::Error) {
    let span = e.span().unwrap_or(0..0);
    let mut found = Found::default();
    deepest_key_at(table.get_ref(), span.start, &mut Vec::new(), &mut found);
    let best = if found.key.is_empty() {
        found.value
    } else {
        found.key
    };
    d.push(span, key_path(&best), e.message().trim_end());
}

/// The deepest paths whose key, or whose value, contains the error offset. A key hit
/// wins: an unknown field is reported at its key, and the table that a `[header]`
/// opens spans keys nested below it.
#[derive(Default)]
struct Found<'t> {
    key: Vec<&'t str>,
    value: Vec<&'t str>,
}

/// Searches every table, because a table opened by a `[header]` has a span that does
/// not cover the keys written under it.
fn deepest_key_at<'t>(
    table: &'t DeTable<'_>,
    offset: usize,
    path: &mut Vec<&'t str>,
    found: &mut Found<'t>,
) {
    for (k, v) in table {
        path.push(k.get_ref());
        if k.span().contains(&offset) && path.len() > found.key.len() {
            found.key.clone_from(path);
        }
        if v.span().contains(&offset) && path.len() > found.value.len() {
            found.value.clone_from(path);
        }
        deepest_in_value(v.get_ref(), offset, path, found);
        path.pop();
    }
}

fn deepest_in_value<'t>(
    v: &'t DeValue<'_>,
    offset: usize,
    path: &mut Vec<&'t str>,
    found: &mut Found<'t>,
) {
    match v {
        DeValue::Table(t) => deepest_key_at(t, offset, path, found),
        DeValue::Array(a) => {
            for item in a {
                deepest_in_value(item.get_ref(), offset, path, found);
            }
        }
        _ => {}
    }
}
