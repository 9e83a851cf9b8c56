//! Turns the raw file into the resolved model, reporting every problem it finds.
//!
//! Validation never stops at the first error: each section is checked on its own and a
//! definition that failed is remembered as "defined but invalid", so a reference to it
//! is not reported a second time as undefined. The model is returned only when no
//! diagnostic was recorded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use dataplane::crypto::{EncrAlg, IntegAlg};
use dataplane::sa::{DfBit, Mode};
use dataplane::selector::IpPrefix;
use indexmap::IndexMap;
use toml::Spanned;
use zeroize::Zeroizing;

use super::error::{Diagnostics, key_path};
use super::model::*;
use super::proposals::{self as p, lookup, names};
use super::raw;

/// Junos IKE and IPsec `lifetime-seconds` range.
const LIFETIME_SECONDS: (i64, i64) = (180, 86_400);
/// Junos `lifetime-kilobytes` range (0 is accepted as "no volume lifetime").
const LIFETIME_KILOBYTES: (i64, i64) = (64, 4_294_967_294);
/// Junos `dead-peer-detection interval` range in seconds (releases before 15.1X49 had
/// 10..60; the current range is 2..60).
const DPD_INTERVAL: (i64, i64) = (2, 60);
/// Junos `dead-peer-detection threshold` range.
const DPD_THRESHOLD: (i64, i64) = (1, 5);
/// Junos `nat-keepalive` range in seconds.
const NAT_KEEPALIVE: (i64, i64) = (1, 300);
/// Anti-replay window bounds; the window must also be a power of two (dataplane bitmap).
const REPLAY_WINDOW: (i64, i64) = (64, 8192);
/// SPIs 1..255 are reserved by IANA (RFC 4303 §2.1); 0 means "no SA". Junos further
/// limits manual SPIs to 256..16639, a platform limit we do not share.
const SPI_MIN: i64 = 256;
/// Junos `family inet mtu` range.
const MTU: (i64, i64) = (256, 9192);
/// Junos `cluster-id` range (0 would mean "not clustered" there).
const CLUSTER_ID: (i64, i64) = (1, 255);
/// `heartbeat-interval` in milliseconds: Junos takes 1000..2000; shorter intervals are
/// allowed here (the `ha` crate's range) for faster failover.
const HEARTBEAT_INTERVAL: (i64, i64) = (100, 2000);
const HEARTBEAT_INTERVAL_DEFAULT: i64 = 1000;
/// Junos `heartbeat-threshold` range and default.
const HEARTBEAT_THRESHOLD: (i64, i64) = (3, 8);
const HEARTBEAT_THRESHOLD_DEFAULT: i64 = 3;
/// Where members keep their replicated log unless `data-directory` says otherwise.
const DATA_DIRECTORY_DEFAULT: &str = "/var/lib/vpnd/cluster";
/// Junos redundancy group numbers.
const GROUP_ID: (i64, i64) = (0, 128);
/// Junos node `priority` range.
const PRIORITY: (i64, i64) = (1, 254);
/// Junos `preempt delay` range and default, in seconds.
const PREEMPT_DELAY: (i64, i64) = (1, 21_600);
const PREEMPT_DELAY_DEFAULT: Duration = Duration::from_secs(1);
/// Monitoring weights: a group fails over when its failures add up to 255.
const WEIGHT: (i64, i64) = (0, 255);
/// Junos `ip-monitoring retry-interval` (seconds) and `retry-count` ranges and defaults.
const IP_RETRY_INTERVAL: (i64, i64) = (1, 30);
const IP_RETRY_INTERVAL_DEFAULT: i64 = 1;
const IP_RETRY_COUNT: (i64, i64) = (5, 15);
const IP_RETRY_COUNT_DEFAULT: i64 = 5;
/// Reth numbers (Junos `reth-count` is at most 128).
const RETH: (i64, i64) = (0, 127);

type Span = Range<usize>;

/// Manual SA key bytes.
type Key = Zeroizing<Vec<u8>>;

/// Inbound and outbound keys of one manual transform.
struct KeyPair {
    inbound: Key,
    outbound: Key,
}

/// The key length an algorithm needs, for checking and for the error message.
struct KeyLen<'a> {
    alg: &'a str,
    bytes: usize,
    /// What the bytes are made of, when not obvious (" (cipher key + 4-byte salt)").
    note: &'a str,
}

/// A definition that may have failed validation: `None` means "defined, but invalid".
type Defined<T> = IndexMap<String, Option<T>>;

struct IkePolicy {
    proposals: Vec<IkeProposal>,
    auth: Auth,
}

struct IpsecPolicy {
    proposals: Vec<IpsecProposal>,
    pfs_group: Option<u16>,
}

pub(crate) fn resolve(raw: &raw::RawConfig, d: &mut Diagnostics<'_>) -> Option<Config> {
    let mut v = Validator { d };
    let ike_proposals = v.ike_proposals(&raw.security.ike.proposal);
    let ike_policies = v.ike_policies(&raw.security.ike.policy, &ike_proposals);
    let pools = v.pools(&raw.security.address_pools);
    let gateways = v.gateways(&raw.security.ike.gateway, &ike_policies, &pools);
    let ipsec_proposals = v.ipsec_proposals(&raw.security.ipsec.proposal);
    let ipsec_policies = v.ipsec_policies(&raw.security.ipsec.policy, &ipsec_proposals);
    let interfaces = v.interfaces(&raw.interfaces);
    let policies = v.policies(&raw.security.policies);
    let (vpns, manual_vpns) = v.vpns(
        &raw.security.ipsec,
        &gateways,
        &ipsec_policies,
        &interfaces,
        &policies,
    );
    let routes = v.routes(&raw.routing_options.static_.route, &interfaces);
    let services = v.services(&raw.services);
    let key_log = raw
        .security
        .ike
        .traceoptions
        .as_ref()
        .and_then(|t| t.get_ref().key_log.as_ref())
        .and_then(|dir| v.key_log(dir));
    let vpn_monitor_options =
        v.vpn_monitor_options(raw.security.ipsec.vpn_monitor_options.as_ref());
    let raw_cluster = raw.chassis.cluster.as_ref();
    let cluster = raw_cluster.and_then(|c| v.cluster(c));
    let written_groups: Option<Vec<u8>> = raw_cluster.map(|c| {
        c.get_ref()
            .redundancy_group
            .keys()
            .filter_map(|id| id.get_ref().parse().ok())
            .collect()
    });
    let reths = v.reths(&raw.interfaces.reth, written_groups.as_deref());
    if let Some(c) = raw_cluster {
        v.monitored_reths(c.get_ref(), &raw.interfaces.reth);
        v.clustered_local_addresses(&raw.security, &raw.interfaces.reth);
    }
    if !v.d.is_empty() {
        return None;
    }
    Some(Config {
        host_name: raw.system.host_name.as_ref().map(|h| h.get_ref().clone()),
        gateways: gateways.into_values().flatten().collect(),
        vpns,
        manual_vpns,
        policies: policies.into_iter().map(|(p, _)| p).collect(),
        pools: pools.into_values().flatten().collect(),
        interfaces: interfaces.into_values().collect(),
        routes,
        services,
        cluster,
        reths: reths.into_values().collect(),
        key_log,
        vpn_monitor_options: vpn_monitor_options?,
    })
}

/// A security policy's reference to a policy-based VPN.
struct TunnelRef {
    /// `from-zone/to-zone/name`.
    policy: String,
    vpn: Spanned<String>,
    key: String,
}

struct Validator<'a, 'b> {
    d: &'a mut Diagnostics<'b>,
}

impl Validator<'_, '_> {
    fn err(&mut self, span: Span, key: &str, message: impl Into<String>) {
        self.d.push(span, key, message);
    }

    /// A required value; reports `what` missing at the entry's header otherwise.
    fn required<'v, T>(&mut self, v: &'v Option<T>, header: Span, key: &str) -> Option<&'v T> {
        if v.is_none() {
            self.err(header, key, "missing (required)");
        }
        v.as_ref()
    }

    fn named<T: Copy>(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        what: &str,
        table: &[(&str, T)],
    ) -> Option<T> {
        let found = lookup(table, v.get_ref());
        if found.is_none() {
            self.err(
                v.span(),
                key,
                format!(
                    "unknown {what} \"{}\" (expected one of: {})",
                    v.get_ref(),
                    names(table)
                ),
            );
        }
        found
    }

    fn int_range(
        &mut self,
        v: &Spanned<i64>,
        key: &str,
        (lo, hi): (i64, i64),
        unit: &str,
    ) -> Option<i64> {
        let x = *v.get_ref();
        if (lo..=hi).contains(&x) {
            Some(x)
        } else {
            self.err(
                v.span(),
                key,
                format!("{x} is out of range {lo}..{hi}{unit}"),
            );
            None
        }
    }

    fn ip(&mut self, v: &Spanned<String>, key: &str) -> Option<IpAddr> {
        match v.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span(),
                    key,
                    format!("invalid IP address \"{}\"", v.get_ref()),
                );
                None
            }
        }
    }

    /// `address/len` with no host bits set: a prefix written with host bits is almost
    /// always a typo for another prefix, and silently masking it would hide that.
    fn prefix(&mut self, v: &Spanned<String>, key: &str) -> Option<IpPrefix> {
        let text = v.get_ref();
        let parsed = text.split_once('/').and_then(|(a, l)| {
            let addr: IpAddr = a.parse().ok()?;
            let len: u8 = l.parse().ok()?;
            IpPrefix::new(addr, len).ok()
        });
        let Some(prefix) = parsed else {
            self.err(
                v.span(),
                key,
                format!("invalid prefix \"{text}\" (expected address/length, such as 10.1.0.0/16)"),
            );
            return None;
        };
        if prefix.network() != prefix.addr() {
            self.err(
                v.span(),
                key,
                format!(
                    "prefix \"{text}\" has host bits set (did you mean {}/{}?)",
                    prefix.network(),
                    prefix.prefix_len()
                ),
            );
            return None;
        }
        Some(prefix)
    }

    /// `st0.N`.
    fn st0_unit(&mut self, v: &Spanned<String>, key: &str) -> Option<u32> {
        let unit = v
            .get_ref()
            .strip_prefix("st0.")
            .and_then(|u| u.parse::<u32>().ok());
        if unit.is_none() {
            self.err(
                v.span(),
                key,
                format!("invalid interface \"{}\" (expected st0.N)", v.get_ref()),
            );
        }
        unit
    }

    fn undefined<T>(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        what: &str,
        defined: &IndexMap<String, T>,
    ) {
        let list = if defined.is_empty() {
            "none".to_owned()
        } else {
            defined.keys().cloned().collect::<Vec<_>>().join(", ")
        };
        self.err(
            v.span(),
            key,
            format!(
                "references undefined {what} \"{}\" (defined: {list})",
                v.get_ref()
            ),
        );
    }

    /// Follows a reference: `Some(Some(x))` valid, `Some(None)` defined but invalid
    /// (already reported), `None` undefined (reported here).
    fn reference<'m, T>(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        what: &str,
        defined: &'m IndexMap<String, T>,
    ) -> Option<&'m T> {
        let found = defined.get(v.get_ref().as_str());
        if found.is_none() {
            self.undefined(v, key, what, defined);
        }
        found
    }

    fn lifetime(
        &mut self,
        v: &Option<Spanned<i64>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match v {
            None => Some(default),
            Some(s) => self
                .int_range(s, key, LIFETIME_SECONDS, " seconds")
                .map(|x| Duration::from_secs(x.unsigned_abs())),
        }
    }

    // ---- IKE ----

    fn ike_proposals(&mut self, raw: &raw::Named<raw::IkeProposal>) -> Defined<IkeProposal> {
        raw.iter()
            .map(|(name, prop)| (name.get_ref().clone(), self.ike_proposal(name, prop)))
            .collect()
    }

    fn ike_proposal(
        &mut self,
        name: &Spanned<String>,
        prop: &raw::IkeProposal,
    ) -> Option<IkeProposal> {
        let n = name.get_ref();
        let base = key_path(&["security", "ike", "proposal", n]);
        let k = |leaf: &str| format!("{base}.{leaf}");
        let header = name.span();
        let method = self
            .required(
                &prop.authentication_method,
                header.clone(),
                &k("authentication-method"),
            )
            .and_then(|m| {
                self.named(
                    m,
                    &k("authentication-method"),
                    "authentication-method",
                    p::AUTHENTICATION_METHODS,
                )
            });
        let dh = self
            .required(&prop.dh_group, header.clone(), &k("dh-group"))
            .and_then(|g| self.named(g, &k("dh-group"), "DH group", p::DH_GROUPS));
        let encr = self
            .required(
                &prop.encryption_algorithm,
                header.clone(),
                &k("encryption-algorithm"),
            )
            .and_then(|e| {
                self.named(
                    e,
                    &k("encryption-algorithm"),
                    "encryption-algorithm",
                    p::ENCRYPTION_ALGORITHMS,
                )
            });
        let hash = match &prop.authentication_algorithm {
            Some(a) => self
                .named(
                    a,
                    &k("authentication-algorithm"),
                    "IKE authentication-algorithm",
                    p::IKE_AUTHENTICATION_ALGORITHMS,
                )
                .map(Some),
            None => Some(None),
        };
        let lifetime = self.lifetime(
            &prop.lifetime_seconds,
            &k("lifetime-seconds"),
            p::IKE_LIFETIME_DEFAULT,
        );
        let (method, dh, encr, hash, lifetime) = (method?, dh?, encr?, hash?, lifetime?);
        // With an AEAD, the IKE authentication-algorithm names only the PRF (RFC 7296
        // requires one), so it is optional; without one it is both PRF and integrity.
        let (prf, integ) = match (hash, encr.is_aead()) {
            (Some(h), true) => (h.prf, None),
            (Some(h), false) => (h.prf, Some(h.integ)),
            (None, true) => (p::default_aead_prf(encr), None),
            (None, false) => {
                self.err(
                    header,
                    &k("authentication-algorithm"),
                    "missing (required with a non-AEAD encryption-algorithm)",
                );
                return None;
            }
        };
        Some(IkeProposal {
            name: n.clone(),
            description: prop.description.clone(),
            auth_method: method,
            dh_group: dh,
            encr,
            prf,
            integ,
            lifetime,
        })
    }

    fn ike_policies(
        &mut self,
        raw: &raw::Named<raw::IkePolicy>,
        proposals: &Defined<IkeProposal>,
    ) -> Defined<IkePolicy> {
        raw.iter()
            .map(|(name, pol)| {
                (
                    name.get_ref().clone(),
                    self.ike_policy(name, pol, proposals),
                )
            })
            .collect()
    }

    fn ike_policy(
        &mut self,
        name: &Spanned<String>,
        pol: &raw::IkePolicy,
        defined: &Defined<IkeProposal>,
    ) -> Option<IkePolicy> {
        let n = name.get_ref();
        let base = key_path(&["security", "ike", "policy", n]);
        let k = |leaf: &str| format!("{base}.{leaf}");
        let auth = match (&pol.pre_shared_key, &pol.certificate) {
            (Some(psk), None) => self.psk(psk, &k("pre-shared-key")).map(Auth::Psk),
            (None, Some(cert)) => self
                .certificate(cert, &k("certificate"))
                .map(Auth::Certificate),
            (Some(_), Some(cert)) => {
                self.err(
                    cert.span(),
                    &k("certificate"),
                    "pre-shared-key and certificate are both set; choose one",
                );
                None
            }
            (None, None) => {
                self.err(name.span(), &base, "needs pre-shared-key or certificate");
                None
            }
        };
        let certificate = matches!(auth, Some(Auth::Certificate(_)));
        let proposals = match (&pol.proposals, &pol.proposal_set) {
            (Some(list), None) => {
                let mut out = Some(Vec::new());
                for r in list.get_ref() {
                    let got = self
                        .reference(r, &k("proposals"), "ike proposal", defined)
                        .cloned()
                        .flatten();
                    if let (Some(prop), Some(auth)) = (&got, &auth) {
                        self.check_auth_method(prop, auth, r.span(), &k("proposals"));
                    }
                    match (got, &mut out) {
                        (Some(prop), Some(v)) => v.push(prop),
                        _ => out = None,
                    }
                }
                out
            }
            (None, Some(set)) => match p::ike_set(set.get_ref(), certificate) {
                Some(members) => {
                    if let Some(auth) = &auth {
                        for m in &members {
                            self.check_auth_method(m, auth, set.span(), &k("proposal-set"));
                        }
                    }
                    Some(members)
                }
                None => {
                    self.unknown_set(set, &k("proposal-set"));
                    None
                }
            },
            (Some(_), Some(set)) => {
                self.err(
                    set.span(),
                    &k("proposal-set"),
                    "proposals and proposal-set are both set; choose one",
                );
                None
            }
            (None, None) => {
                self.err(name.span(), &base, "needs proposals or proposal-set");
                None
            }
        };
        Some(IkePolicy {
            proposals: proposals?,
            auth: auth?,
        })
    }

    fn unknown_set(&mut self, set: &Spanned<String>, key: &str) {
        self.err(
            set.span(),
            key,
            format!(
                "unknown proposal-set \"{}\" (expected one of: {})",
                set.get_ref(),
                p::PROPOSAL_SETS.join(", ")
            ),
        );
    }

    /// One error per (proposal, policy): a PSK proposal with a certificate policy, or the
    /// reverse, would fail at IKE_AUTH on every attempt.
    fn check_auth_method(&mut self, prop: &IkeProposal, auth: &Auth, span: Span, key: &str) {
        let cert = matches!(auth, Auth::Certificate(_));
        if prop.auth_method.is_signature() != cert {
            let (has, needs) = if cert {
                ("pre-shared-keys", "a certificate")
            } else {
                ("a signature method", "a pre-shared-key")
            };
            self.err(
                span,
                key,
                format!(
                    "proposal \"{}\" uses {has} but the policy authenticates with {needs}",
                    prop.name
                ),
            );
        }
    }

    fn psk(&mut self, psk: &Spanned<raw::PreSharedKey>, key: &str) -> Option<Psk> {
        match (&psk.get_ref().ascii_text, &psk.get_ref().hexadecimal) {
            (Some(text), None) if text.get_ref().is_empty() => {
                self.err(
                    text.span(),
                    &format!("{key}.ascii-text"),
                    "must not be empty",
                );
                None
            }
            (Some(text), None) => Some(Psk::new(text.get_ref().as_bytes().to_vec())),
            (None, Some(hex)) => self
                .hex(hex, &format!("{key}.hexadecimal"))
                .map(|b| Psk::new(b.to_vec())),
            _ => {
                self.err(
                    psk.span(),
                    key,
                    "needs exactly one of ascii-text or hexadecimal",
                );
                None
            }
        }
    }

    /// Hex digits, optionally prefixed with `0x` (Junos accepts both), at least one byte.
    fn hex(&mut self, v: &Spanned<String>, key: &str) -> Option<Key> {
        let text = v.get_ref();
        let digits = text.strip_prefix("0x").unwrap_or(text);
        let ok = !digits.is_empty()
            && digits.len().is_multiple_of(2)
            && digits.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            self.err(
                v.span(),
                key,
                "invalid hexadecimal key (expected an even number of hex digits)",
            );
            return None;
        }
        let bytes = digits
            .as_bytes()
            .chunks(2)
            .map(|pair| (hex_val(pair[0]) << 4) | hex_val(pair[1]))
            .collect();
        Some(Zeroizing::new(bytes))
    }

    fn certificate(
        &mut self,
        cert: &Spanned<raw::Certificate>,
        key: &str,
    ) -> Option<CertificatePaths> {
        let c = cert.get_ref();
        let local = self.required(
            &c.local_certificate,
            cert.span(),
            &format!("{key}.local-certificate"),
        );
        let private = self.required(&c.private_key, cert.span(), &format!("{key}.private-key"));
        if c.trusted_ca.is_empty() {
            self.err(
                cert.span(),
                &format!("{key}.trusted-ca"),
                "missing (at least one CA is needed to verify the peer)",
            );
        }
        Some(CertificatePaths {
            local_certificate: PathBuf::from(local?.get_ref()),
            private_key: PathBuf::from(private?.get_ref()),
            trusted_ca: c
                .trusted_ca
                .iter()
                .map(|p| PathBuf::from(p.get_ref()))
                .collect(),
        })
        .filter(|_| !c.trusted_ca.is_empty())
    }

    fn identity(&mut self, id: &Spanned<raw::Identity>, key: &str) -> Option<Identity> {
        let i = id.get_ref();
        let set: Vec<(&str, &Spanned<String>)> = [
            ("inet", &i.inet),
            ("inet6", &i.inet6),
            ("hostname", &i.hostname),
            ("user-at-hostname", &i.user_at_hostname),
            ("distinguished-name", &i.distinguished_name),
            ("key-id", &i.key_id),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect();
        let [(kind, value)] = set[..] else {
            self.err(
                id.span(),
                key,
                "needs exactly one of inet, inet6, hostname, user-at-hostname, distinguished-name, key-id",
            );
            return None;
        };
        self.identity_value(kind, value, &format!("{key}.{kind}"))
    }

    fn identity_value(&mut self, kind: &str, v: &Spanned<String>, key: &str) -> Option<Identity> {
        let text = v.get_ref();
        if text.is_empty() {
            self.err(v.span(), key, "must not be empty");
            return None;
        }
        let family = |s: &mut Self, want_v6: bool| match s.ip(v, key)? {
            IpAddr::V4(a) if !want_v6 => Some(Identity::Inet(a)),
            IpAddr::V6(a) if want_v6 => Some(Identity::Inet6(a)),
            _ => {
                s.err(
                    v.span(),
                    key,
                    format!("address family mismatch: \"{text}\" is not an {kind} address"),
                );
                None
            }
        };
        match kind {
            "inet" => family(self, false),
            "inet6" => family(self, true),
            "hostname" => Some(Identity::Hostname(text.clone())),
            "user-at-hostname" => Some(Identity::UserAtHostname(text.clone())),
            "distinguished-name" => Some(Identity::DistinguishedName(text.clone())),
            _ => Some(Identity::KeyId(text.as_bytes().to_vec())),
        }
    }

    fn dynamic(&mut self, dy: &Spanned<raw::Dynamic>, key: &str) -> Option<IdMatch> {
        let d = dy.get_ref();
        let set: Vec<(&str, &Spanned<String>)> = [
            ("inet", &d.inet),
            ("inet6", &d.inet6),
            ("hostname", &d.hostname),
            ("user-at-hostname", &d.user_at_hostname),
            ("distinguished-name", &d.distinguished_name),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect();
        let user_type = match &d.ike_user_type {
            None => Some(IkeUserType::Single),
            Some(t) => self.named(
                t,
                &format!("{key}.ike-user-type"),
                "ike-user-type",
                &[
                    ("group-ike-id", IkeUserType::GroupIkeId),
                    ("shared-ike-id", IkeUserType::SharedIkeId),
                ],
            ),
        };
        let [(kind, value)] = set[..] else {
            self.err(
                dy.span(),
                key,
                "needs exactly one of inet, inet6, hostname, user-at-hostname, distinguished-name",
            );
            return None;
        };
        let identity = self.identity_value(kind, value, &format!("{key}.{kind}"))?;
        Some(IdMatch {
            identity,
            user_type: user_type?,
        })
    }

    fn pools(&mut self, raw: &raw::Named<raw::AddressPool>) -> Defined<Pool> {
        raw.iter()
            .map(|(name, pool)| (name.get_ref().clone(), self.pool(name, pool)))
            .collect()
    }

    fn pool(&mut self, name: &Spanned<String>, pool: &raw::AddressPool) -> Option<Pool> {
        let n = name.get_ref();
        let fam = pool.family.get_ref();
        if fam.inet.is_none() && fam.inet6.is_none() {
            self.err(
                pool.family.span(),
                &key_path(&["security", "address-pools", n, "family"]),
                "needs inet or inet6",
            );
            return None;
        }
        let mut ok = true;
        let mut family = |s: &mut Self, f: &Option<raw::PoolFamily>, fname: &str, v6: bool| match f
        {
            None => None,
            Some(f) => {
                let r = s.pool_family(f, &["security", "address-pools", n, "family", fname], v6);
                ok &= r.is_some();
                r
            }
        };
        let inet = family(self, &fam.inet, "inet", false);
        let inet6 = family(self, &fam.inet6, "inet6", true);
        ok.then(|| Pool {
            name: n.clone(),
            inet,
            inet6,
        })
    }

    fn pool_family(&mut self, f: &raw::PoolFamily, base: &[&str], v6: bool) -> Option<PoolFamily> {
        let k = |leaf: &str| {
            let mut keys = base.to_vec();
            keys.extend(leaf.split('.'));
            key_path(&keys)
        };
        let network = self.prefix(&f.network, &k("network"))?;
        if network.addr().is_ipv6() != v6 {
            self.err(
                f.network.span(),
                &k("network"),
                format!(
                    "address family mismatch: \"{}\" in family {}",
                    f.network.get_ref(),
                    if v6 { "inet6" } else { "inet" }
                ),
            );
            return None;
        }
        let (low, high) = match &f.range {
            None => (network.network(), network.last()),
            Some(r) => {
                let low = self.ip(&r.low, &k("range.low"));
                let high = self.ip(&r.high, &k("range.high"));
                let (low, high) = (low?, high?);
                let mut ok = true;
                for (addr, span, leaf) in [
                    (low, r.low.span(), "range.low"),
                    (high, r.high.span(), "range.high"),
                ] {
                    if !network.contains(addr) {
                        self.err(
                            span,
                            &k(leaf),
                            format!("{addr} is outside network {}", f.network.get_ref()),
                        );
                        ok = false;
                    }
                }
                if ok && low > high {
                    self.err(
                        r.high.span(),
                        &k("range.high"),
                        format!("{high} is below range.low {low}"),
                    );
                    ok = false;
                }
                if !ok {
                    return None;
                }
                (low, high)
            }
        };
        let mut dns = Vec::new();
        for s in &f.dns_server {
            dns.push(self.ip(s, &k("dns-server")));
        }
        Some(PoolFamily {
            network,
            low,
            high,
            dns_servers: dns.into_iter().collect::<Option<_>>()?,
        })
    }

    fn gateways(
        &mut self,
        raw: &raw::Named<raw::IkeGateway>,
        policies: &Defined<IkePolicy>,
        pools: &Defined<Pool>,
    ) -> Defined<Gateway> {
        raw.iter()
            .map(|(name, gw)| {
                (
                    name.get_ref().clone(),
                    self.gateway(name, gw, policies, pools),
                )
            })
            .collect()
    }

    fn gateway(
        &mut self,
        name: &Spanned<String>,
        gw: &raw::IkeGateway,
        policies: &Defined<IkePolicy>,
        pools: &Defined<Pool>,
    ) -> Option<Gateway> {
        let n = name.get_ref();
        let base = key_path(&["security", "ike", "gateway", n]);
        let k = |leaf: &str| format!("{base}.{leaf}");
        let policy = self
            .required(&gw.ike_policy, name.span(), &k("ike-policy"))
            .and_then(|r| self.reference(r, &k("ike-policy"), "ike policy", policies))
            .and_then(Option::as_ref);
        let local_address = gw
            .local_address
            .as_ref()
            .map(|a| self.ip(a, &k("local-address")));
        let remote = match (&gw.address, &gw.dynamic) {
            (Some(list), None) => self.static_remote(
                list,
                &k("address"),
                gw.local_address.as_ref(),
                local_address.flatten(),
            ),
            (None, Some(dy)) => self.dynamic(dy, &k("dynamic")).map(Remote::Dynamic),
            (Some(_), Some(dy)) => {
                self.err(
                    dy.span(),
                    &k("dynamic"),
                    "address and dynamic are both set; choose one",
                );
                None
            }
            (None, None) => {
                self.err(name.span(), &base, "needs address or dynamic");
                None
            }
        };
        let local_id = gw
            .local_identity
            .as_ref()
            .map(|i| self.identity(i, &k("local-identity")));
        let remote_id = gw
            .remote_identity
            .as_ref()
            .map(|i| self.identity(i, &k("remote-identity")));
        let version = match &gw.version {
            None => Some(IkeVersion::V2Only),
            Some(v) => self.named(
                v,
                &k("version"),
                "IKE version",
                &[
                    ("v1-only", IkeVersion::V1Only),
                    ("v2-only", IkeVersion::V2Only),
                ],
            ),
        };
        if let (Some(IkeVersion::V1Only), Some(pol), Some(v)) = (version, policy, &gw.version)
            && let Some(aead) = pol.proposals.iter().find(|p| p.encr.is_aead())
        {
            self.err(
                v.span(),
                &k("version"),
                format!("IKEv1 cannot use AEAD proposal \"{}\" (AES-GCM and ChaCha20 for the IKE SA need v2-only)", aead.name),
            );
        }
        let dpd = gw
            .dead_peer_detection
            .as_ref()
            .map(|dpd| self.dpd(dpd, &k("dead-peer-detection")));
        let nat_keepalive = match &gw.nat_keepalive {
            None => Some(20),
            Some(s) => self.int_range(s, &k("nat-keepalive"), NAT_KEEPALIVE, " seconds"),
        };
        let address_pool = match &gw.aaa {
            None => Some(None),
            Some(aaa) => {
                let key = k("aaa.access-profile");
                let r = self
                    .reference(&aaa.access_profile, &key, "address pool", pools)
                    .map(|_| ());
                if let Some(Remote::Static(_)) = remote {
                    self.err(
                        aaa.access_profile.span(),
                        &key,
                        "address pools are for dial-up peers; the gateway needs dynamic instead of address",
                    );
                    None
                } else {
                    r.map(|()| Some(aaa.access_profile.get_ref().clone()))
                }
            }
        };
        let policy = policy?;
        Some(Gateway {
            name: n.clone(),
            description: gw.description.clone(),
            remote: remote?,
            local_address: local_address.flatten(),
            local_id: local_id.map_or(Some(None), |i| i.map(Some))?,
            remote_id: remote_id.map_or(Some(None), |i| i.map(Some))?,
            ike_proposals: policy.proposals.clone(),
            auth: policy.auth.clone(),
            dpd: dpd.map_or(Some(None), |d| d.map(Some))?,
            nat_keepalive: Duration::from_secs(nat_keepalive?.unsigned_abs()),
            nat_traversal: !gw.no_nat_traversal,
            force_encap: gw.force_udp_encapsulation,
            version: version?,
            address_pool: address_pool?,
        })
        .filter(|_| local_address.is_none_or(|a| a.is_some()))
    }

    fn static_remote(
        &mut self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        local_raw: Option<&Spanned<String>>,
        local: Option<IpAddr>,
    ) -> Option<Remote> {
        if list.get_ref().is_empty() {
            self.err(list.span(), key, "needs at least one address");
            return None;
        }
        let mut out = Some(Vec::new());
        for a in list.get_ref() {
            let addr = self.ip(a, key);
            if let (Some(addr), Some(local), Some(local_raw)) = (addr, local, local_raw)
                && addr.is_ipv6() != local.is_ipv6()
            {
                self.err(
                    a.span(),
                    key,
                    format!(
                        "address family mismatch: \"{}\" and local-address \"{}\"",
                        a.get_ref(),
                        local_raw.get_ref()
                    ),
                );
                out = None;
            }
            match (addr, &mut out) {
                (Some(addr), Some(v)) => v.push(addr),
                _ => out = None,
            }
        }
        out.map(Remote::Static)
    }

    fn dpd(&mut self, dpd: &raw::DeadPeerDetection, key: &str) -> Option<Dpd> {
        let interval = match &dpd.interval {
            None => Some(10),
            Some(i) => self.int_range(i, &format!("{key}.interval"), DPD_INTERVAL, " seconds"),
        };
        let threshold = match &dpd.threshold {
            None => Some(5),
            Some(t) => self.int_range(t, &format!("{key}.threshold"), DPD_THRESHOLD, ""),
        };
        let mode = match &dpd.mode {
            None => Some(DpdMode::Optimized),
            Some(m) => self.named(
                m,
                &format!("{key}.mode"),
                "dead-peer-detection mode",
                &[
                    ("optimized", DpdMode::Optimized),
                    ("probe-idle-tunnel", DpdMode::ProbeIdleTunnel),
                    ("always-send", DpdMode::AlwaysSend),
                ],
            ),
        };
        Some(Dpd {
            interval: Duration::from_secs(interval?.unsigned_abs()),
            threshold: u8::try_from(threshold?).ok()?,
            mode: mode?,
        })
    }

    // ---- IPsec ----

    fn ipsec_proposals(&mut self, raw: &raw::Named<raw::IpsecProposal>) -> Defined<IpsecProposal> {
        raw.iter()
            .map(|(name, prop)| (name.get_ref().clone(), self.ipsec_proposal(name, prop)))
            .collect()
    }

    fn ipsec_proposal(
        &mut self,
        name: &Spanned<String>,
        prop: &raw::IpsecProposal,
    ) -> Option<IpsecProposal> {
        let n = name.get_ref();
        let base = key_path(&["security", "ipsec", "proposal", n]);
        let k = |leaf: &str| format!("{base}.{leaf}");
        let protocol = match &prop.protocol {
            None => Some(IpsecProtocol::Esp),
            Some(pr) => self.named(
                pr,
                &k("protocol"),
                "protocol",
                &[("esp", IpsecProtocol::Esp), ("ah", IpsecProtocol::Ah)],
            ),
        };
        let encr = prop.encryption_algorithm.as_ref().map(|e| {
            self.named(
                e,
                &k("encryption-algorithm"),
                "encryption-algorithm",
                p::ENCRYPTION_ALGORITHMS,
            )
        });
        let integ = prop.authentication_algorithm.as_ref().map(|a| {
            self.named(
                a,
                &k("authentication-algorithm"),
                "IPsec authentication-algorithm",
                p::IPSEC_AUTHENTICATION_ALGORITHMS,
            )
        });
        let lifetime = self.lifetime(
            &prop.lifetime_seconds,
            &k("lifetime-seconds"),
            p::IPSEC_LIFETIME_DEFAULT,
        );
        let kilobytes = match &prop.lifetime_kilobytes {
            None => Some(None),
            Some(kb) if *kb.get_ref() == 0 => Some(None),
            Some(kb) => self
                .int_range(
                    kb,
                    &k("lifetime-kilobytes"),
                    LIFETIME_KILOBYTES,
                    " kilobytes",
                )
                .map(|x| Some(x.unsigned_abs())),
        };
        let protocol = protocol?;
        let (encr, integ) = match protocol {
            IpsecProtocol::Ah => {
                if let Some(e) = &prop.encryption_algorithm {
                    self.err(
                        e.span(),
                        &k("encryption-algorithm"),
                        "not allowed with protocol ah (AH authenticates only; use esp to encrypt)",
                    );
                    return None;
                }
                let Some(integ) = integ else {
                    self.err(
                        name.span(),
                        &k("authentication-algorithm"),
                        "missing (required with protocol ah)",
                    );
                    return None;
                };
                (None, Some(integ?))
            }
            IpsecProtocol::Esp => {
                let Some(encr) = encr else {
                    self.err(
                        name.span(),
                        &k("encryption-algorithm"),
                        "missing (required with protocol esp)",
                    );
                    return None;
                };
                let encr = encr?;
                match (encr.is_aead(), integ, &prop.authentication_algorithm) {
                    (true, Some(_), Some(a)) => {
                        self.err(
                            a.span(),
                            &k("authentication-algorithm"),
                            format!(
                                "not allowed with encryption-algorithm {}: an AEAD cipher carries its own integrity",
                                prop.encryption_algorithm.as_ref().map_or("", |e| e.get_ref().as_str())
                            ),
                        );
                        return None;
                    }
                    (false, None, _) => {
                        // Junos would accept ESP without integrity; the dataplane refuses
                        // it, because unauthenticated CBC is open to bit-flipping and
                        // padding-oracle attacks (RFC 4303 §3.2.2 calls it out).
                        self.err(
                            name.span(),
                            &k("authentication-algorithm"),
                            "missing (required with a non-AEAD encryption-algorithm)",
                        );
                        return None;
                    }
                    (_, integ, _) => (Some(encr), integ.flatten()),
                }
            }
        };
        Some(IpsecProposal {
            name: n.clone(),
            description: prop.description.clone(),
            protocol,
            encr,
            integ,
            lifetime: lifetime?,
            lifetime_kilobytes: kilobytes?,
        })
    }

    fn ipsec_policies(
        &mut self,
        raw: &raw::Named<raw::IpsecPolicy>,
        proposals: &Defined<IpsecProposal>,
    ) -> Defined<IpsecPolicy> {
        raw.iter()
            .map(|(name, pol)| {
                (
                    name.get_ref().clone(),
                    self.ipsec_policy(name, pol, proposals),
                )
            })
            .collect()
    }

    fn ipsec_policy(
        &mut self,
        name: &Spanned<String>,
        pol: &raw::IpsecPolicy,
        defined: &Defined<IpsecProposal>,
    ) -> Option<IpsecPolicy> {
        let n = name.get_ref();
        let base = key_path(&["security", "ipsec", "policy", n]);
        let k = |leaf: &str| format!("{base}.{leaf}");
        let pfs = match &pol.perfect_forward_secrecy {
            None => Some(None),
            Some(pfs) => self
                .named(
                    &pfs.keys,
                    &k("perfect-forward-secrecy.keys"),
                    "DH group",
                    p::DH_GROUPS,
                )
                .map(Some),
        };
        let (proposals, set_pfs) = match (&pol.proposals, &pol.proposal_set) {
            (Some(list), None) => {
                let mut out = Some(Vec::new());
                for r in list.get_ref() {
                    let got = self
                        .reference(r, &k("proposals"), "ipsec proposal", defined)
                        .cloned()
                        .flatten();
                    match (got, &mut out) {
                        (Some(prop), Some(v)) => v.push(prop),
                        _ => out = None,
                    }
                }
                (out, None)
            }
            (None, Some(set)) => match p::ipsec_set(set.get_ref()) {
                Some(s) => (Some(s.proposals), s.pfs_group),
                None => {
                    self.unknown_set(set, &k("proposal-set"));
                    (None, None)
                }
            },
            (Some(_), Some(set)) => {
                self.err(
                    set.span(),
                    &k("proposal-set"),
                    "proposals and proposal-set are both set; choose one",
                );
                (None, None)
            }
            (None, None) => {
                self.err(name.span(), &base, "needs proposals or proposal-set");
                (None, None)
            }
        };
        let pfs = pfs?;
        Some(IpsecPolicy {
            proposals: proposals?,
            // An explicit perfect-forward-secrecy wins over the group a set implies.
            pfs_group: if pol.perfect_forward_secrecy.is_some() {
                pfs
            } else {
                set_pfs
            },
        })
    }

    fn interfaces(&mut self, raw: &raw::Interfaces) -> IndexMap<String, Interface> {
        let mut out = IndexMap::new();
        let Some(st0) = &raw.st0 else { return out };
        for (unit_key, unit) in &st0.unit {
            let base = ["interfaces", "st0", "unit", unit_key.get_ref().as_str()];
            let Ok(n) = unit_key.get_ref().parse::<u32>() else {
                self.err(
                    unit_key.span(),
                    &key_path(&base),
                    format!(
                        "invalid unit \"{}\" (expected a number)",
                        unit_key.get_ref()
                    ),
                );
                continue;
            };
            let k = |leaf: &[&str]| {
                let mut keys = base.to_vec();
                keys.extend_from_slice(leaf);
                key_path(&keys)
            };
            let mut ok = true;
            let mut mtu = None;
            let mut family = |s: &mut Self, f: &Option<raw::UnitFamily>, fname: &str, v6: bool| {
                let f = f.as_ref()?;
                if let Some(m) = &f.mtu {
                    match s.int_range(m, &k(&["family", fname, "mtu"]), MTU, " bytes") {
                        Some(m) => mtu = Some(u16::try_from(m).unwrap_or(u16::MAX)),
                        None => ok = false,
                    }
                }
                let a = f.address.as_ref()?;
                let r = s.interface_address(a, &k(&["family", fname, "address"]), v6);
                ok &= r.is_some();
                r
            };
            let inet = family(self, &unit.family.inet, "inet", false);
            let inet6 = family(self, &unit.family.inet6, "inet6", true);
            if ok {
                out.insert(
                    format!("st0.{n}"),
                    Interface {
                        unit: n,
                        description: unit.description.clone(),
                        inet,
                        inet6,
                        mtu,
                    },
                );
            }
        }
        out
    }

    fn interface_address(
        &mut self,
        a: &Spanned<String>,
        key: &str,
        v6: bool,
    ) -> Option<InterfaceAddress> {
        let parsed = a.get_ref().split_once('/').and_then(|(addr, len)| {
            let addr: IpAddr = addr.parse().ok()?;
            let len: u8 = len.parse().ok()?;
            IpPrefix::new(addr, len).ok().map(|_| (addr, len))
        });
        let Some((address, prefix_len)) = parsed else {
            self.err(
                a.span(),
                key,
                format!(
                    "invalid interface address \"{}\" (expected address/length)",
                    a.get_ref()
                ),
            );
            return None;
        };
        if address.is_ipv6() != v6 {
            self.err(
                a.span(),
                key,
                format!(
                    "address family mismatch: \"{}\" in family {}",
                    a.get_ref(),
                    if v6 { "inet6" } else { "inet" }
                ),
            );
            return None;
        }
        Some(InterfaceAddress {
            address,
            prefix_len,
        })
    }

    /// Security policies, each with its tunnel reference (checked once VPNs are known).
    fn policies(&mut self, raw: &raw::Policies) -> Vec<(SecurityPolicy, Option<TunnelRef>)> {
        let mut out = Vec::new();
        for (from, fz) in &raw.from_zone {
            for (to, tz) in &fz.to_zone {
                for (name, pol) in &tz.policy {
                    let base = [
                        "security",
                        "policies",
                        "from-zone",
                        from.get_ref().as_str(),
                        "to-zone",
                        to.get_ref().as_str(),
                        "policy",
                        name.get_ref().as_str(),
                    ];
                    if let Some(p) = self.policy(&base, pol) {
                        out.push(p);
                    }
                }
            }
        }
        out
    }

    fn policy(
        &mut self,
        base: &[&str; 8],
        pol: &raw::Policy,
    ) -> Option<(SecurityPolicy, Option<TunnelRef>)> {
        let k = |leaf: &str| {
            let mut keys = base.to_vec();
            keys.extend(leaf.split('.'));
            key_path(&keys)
        };
        let m = pol.match_.get_ref();
        let source = self.policy_addresses(&m.source_address, &k("match.source-address"));
        let destination =
            self.policy_addresses(&m.destination_address, &k("match.destination-address"));
        if m.application.get_ref() != "any" {
            self.err(
                m.application.span(),
                &k("match.application"),
                format!(
                    "unsupported application \"{}\" (only \"any\" is implemented)",
                    m.application.get_ref()
                ),
            );
        }
        let t = pol.then.get_ref();
        let full = format!("{}/{}/{}", base[3], base[5], base[7]);
        let (action, tunnel) = match (&t.permit, &t.deny, &t.reject) {
            (Some(p), None, None) => match &p.tunnel {
                None => (Some(PolicyAction::Permit), None),
                Some(tun) => (
                    Some(PolicyAction::Tunnel(tun.ipsec_vpn.get_ref().clone())),
                    Some(TunnelRef {
                        policy: full,
                        vpn: tun.ipsec_vpn.clone(),
                        key: k("then.permit.tunnel.ipsec-vpn"),
                    }),
                ),
            },
            (None, Some(_), None) => (Some(PolicyAction::Deny), None),
            (None, None, Some(_)) => (Some(PolicyAction::Reject), None),
            _ => {
                self.err(
                    pol.then.span(),
                    &k("then"),
                    "needs exactly one of permit, deny, reject",
                );
                (None, None)
            }
        };
        let ok = m.application.get_ref() == "any";
        Some((
            SecurityPolicy {
                from_zone: base[3].to_owned(),
                to_zone: base[5].to_owned(),
                name: base[7].to_owned(),
                description: pol.description.clone(),
                source: source?,
                destination: destination?,
                action: action?,
            },
            tunnel,
        ))
        .filter(|_| ok)
    }

    /// `any` or prefixes; `any` must stand alone. Junos names address-book entries here;
    /// we take prefixes directly, as there is no address book yet.
    fn policy_addresses(&mut self, list: &[Spanned<String>], key: &str) -> Option<Vec<IpPrefix>> {
        if list.iter().any(|a| a.get_ref() == "any") {
            if list.len() > 1 {
                self.err(
                    list[0].span(),
                    key,
                    "\"any\" cannot be combined with prefixes",
                );
                return None;
            }
            return Some(Vec::new());
        }
        if list.is_empty() {
            return Some(Vec::new());
        }
        let parsed: Vec<_> = list.iter().map(|a| self.prefix(a, key)).collect();
        parsed.into_iter().collect()
    }

    fn vpns(
        &mut self,
        ipsec: &raw::Ipsec,
        gateways: &Defined<Gateway>,
        policies: &Defined<IpsecPolicy>,
        interfaces: &IndexMap<String, Interface>,
        security_policies: &[(SecurityPolicy, Option<TunnelRef>)],
    ) -> (Vec<Vpn>, Vec<ManualVpn>) {
        let global_window = ipsec
            .anti_replay_window_size
            .as_ref()
            .map(|w| self.replay_window(w, "security.ipsec.anti-replay-window-size"));
        // Which policies point at which VPN; dangling or route-based targets are errors.
        let mut referenced: HashMap<&str, Vec<&TunnelRef>> = HashMap::new();
        for t in security_policies.iter().filter_map(|(_, t)| t.as_ref()) {
            match ipsec.vpn.get(t.vpn.get_ref().as_str()) {
                None => {
                    let defined: IndexMap<String, ()> = ipsec.vpn.keys().map(|k| (k.get_ref().clone(), ())).collect();
                    self.undefined(&t.vpn, &t.key, "ipsec vpn", &defined);
                }
                Some(v) if v.bind_interface.is_some() => self.err(
                    t.vpn.span(),
                    &t.key,
                    format!(
                        "vpn \"{}\" is route-based (bind-interface); a tunnel policy needs a policy-based vpn",
                        t.vpn.get_ref()
                    ),
                ),
                Some(_) => referenced.entry(t.vpn.get_ref().as_str()).or_default().push(t),
            }
        }
        let mut bound: HashMap<u32, &str> = HashMap::new();
        let mut policy_ordinal: u32 = 0;
        let mut vpns = Vec::new();
        let mut manuals = Vec::new();
        for (name, vpn) in &ipsec.vpn {
            let n = name.get_ref().as_str();
            let base = key_path(&["security", "ipsec", "vpn", n]);
            let k = |leaf: &str| format!("{base}.{leaf}");
            let refs = referenced.get(n).map(Vec::as_slice).unwrap_or_default();
            let binding = match &vpn.bind_interface {
                Some(b) => self.st0_unit(b, &k("bind-interface")).and_then(|unit| {
                    let iface = format!("st0.{unit}");
                    if !interfaces.contains_key(&iface) {
                        self.undefined(b, &k("bind-interface"), "interface", interfaces);
                        return None;
                    }
                    if let Some(other) = bound.insert(unit, n) {
                        bound.insert(unit, other);
                        self.err(
                            b.span(),
                            &k("bind-interface"),
                            format!("{iface} is already bound to vpn \"{other}\""),
                        );
                        return None;
                    }
                    Some(Binding::Route { unit })
                }),
                None if refs.is_empty() => {
                    self.err(
                        name.span(),
                        &base,
                        "needs bind-interface (route-based) or a security policy with then.permit.tunnel.ipsec-vpn (policy-based)",
                    );
                    None
                }
                None => {
                    policy_ordinal += 1;
                    Some(Binding::Policy {
                        id: POLICY_BINDING_BASE + policy_ordinal,
                        policies: refs.iter().map(|r| r.policy.clone()).collect(),
                    })
                }
            };
            let options = self.tunnel_options(vpn, &k, global_window);
            let selectors = self.traffic_selectors(vpn, n, &k, security_policies);
            match (&vpn.ike, &vpn.manual) {
                (Some(ike), None) => {
                    let monitor = vpn
                        .vpn_monitor
                        .as_ref()
                        .map(|m| self.vpn_monitor(m, &k("vpn-monitor")));
                    let establish = match &vpn.establish_tunnels {
                        None => Some(Establish::OnTraffic),
                        Some(e) => self.named(
                            e,
                            &k("establish-tunnels"),
                            "establish-tunnels",
                            &[
                                ("immediately", Establish::Immediately),
                                ("on-traffic", Establish::OnTraffic),
                                ("responder-only", Establish::ResponderOnly),
                            ],
                        ),
                    };
                    let i = ike.get_ref();
                    let gateway = self
                        .required(&i.gateway, ike.span(), &k("ike.gateway"))
                        .and_then(|g| self.reference(g, &k("ike.gateway"), "ike gateway", gateways))
                        .and_then(Option::as_ref);
                    let policy = self
                        .required(&i.ipsec_policy, ike.span(), &k("ike.ipsec-policy"))
                        .and_then(|p| {
                            self.reference(p, &k("ike.ipsec-policy"), "ipsec policy", policies)
                        })
                        .and_then(Option::as_ref);
                    if let (Some(gateway), Some(policy)) = (gateway, policy) {
                        let (
                            Some(binding),
                            Some(options),
                            Some(selectors),
                            Some(establish),
                            Some(monitor),
                        ) = (
                            binding,
                            options,
                            selectors,
                            establish,
                            monitor.map_or(Some(None), |m| m.map(Some)),
                        )
                        else {
                            continue;
                        };
                        vpns.push(Vpn {
                            name: n.to_owned(),
                            description: vpn.description.clone(),
                            binding,
                            gateway: gateway.name.clone(),
                            ipsec_proposals: policy.proposals.clone(),
                            pfs_group: policy.pfs_group,
                            establish,
                            options,
                            traffic_selectors: selectors,
                            monitor,
                        });
                    }
                }
                (None, Some(manual)) => {
                    for (set, leaf) in [
                        (
                            vpn.establish_tunnels.as_ref().map(Spanned::span),
                            "establish-tunnels",
                        ),
                        (
                            vpn.anti_replay_window_size.as_ref().map(Spanned::span),
                            "anti-replay-window-size",
                        ),
                    ] {
                        if let Some(span) = set {
                            self.err(
                                span,
                                &k(leaf),
                                "not applicable to a manual vpn (no negotiation, no anti-replay)",
                            );
                        }
                    }
                    let m = self.manual(manual, &k("manual"));
                    if let (Some(m), Some(binding), Some(options), Some(selectors)) =
                        (m, binding, options, selectors)
                    {
                        manuals.push(ManualVpn {
                            name: n.to_owned(),
                            description: vpn.description.clone(),
                            binding,
                            options,
                            traffic_selectors: selectors,
                            ..m
                        });
                    }
                }
                (Some(_), Some(manual)) => {
                    self.err(
                        manual.span(),
                        &k("manual"),
                        "ike and manual are both set; choose one",
                    );
                }
                (None, None) => {
                    self.err(name.span(), &base, "needs ike or manual");
                }
            }
        }
        (vpns, manuals)
    }

    fn replay_window(&mut self, w: &Spanned<i64>, key: &str) -> Option<u32> {
        let x = *w.get_ref();
        let (lo, hi) = REPLAY_WINDOW;
        if !(lo..=hi).contains(&x) || x.count_ones() != 1 {
            self.err(
                w.span(),
                key,
                format!("{x} is not a power of two in {lo}..{hi}"),
            );
            return None;
        }
        u32::try_from(x).ok()
    }

    fn tunnel_options(
        &mut self,
        vpn: &raw::Vpn,
        k: &dyn Fn(&str) -> String,
        global_window: Option<Option<u32>>,
    ) -> Option<TunnelOptions> {
        let df_bit = match &vpn.df_bit {
            None => Some(DfBit::Clear),
            Some(d) => self.named(
                d,
                &k("df-bit"),
                "df-bit",
                &[
                    ("clear", DfBit::Clear),
                    ("copy", DfBit::Copy),
                    ("set", DfBit::Set),
                ],
            ),
        };
        let no_replay = vpn.no_anti_replay.as_ref().filter(|n| *n.get_ref());
        let anti_replay = match (&vpn.anti_replay_window_size, no_replay) {
            (Some(w), Some(n)) => {
                self.err(
                    n.span(),
                    &k("no-anti-replay"),
                    format!("conflicts with anti-replay-window-size = {}", w.get_ref()),
                );
                None
            }
            (Some(w), None) => self
                .replay_window(w, &k("anti-replay-window-size"))
                .map(Some),
            (None, Some(_)) => Some(None),
            (None, None) => global_window.unwrap_or(Some(64)).map(Some),
        };
        let mode = match &vpn.mode {
            None => Some(Mode::Tunnel),
            Some(m) => self.named(
                m,
                &k("mode"),
                "mode",
                &[("tunnel", Mode::Tunnel), ("transport", Mode::Transport)],
            ),
        };
        Some(TunnelOptions {
            mode: mode?,
            df_bit: df_bit?,
            copy_outer_dscp: vpn.copy_outer_dscp,
            anti_replay: anti_replay?,
            esn: vpn.extended_sequence_number,
        })
    }

    fn traffic_selectors(
        &mut self,
        vpn: &raw::Vpn,
        name: &str,
        k: &dyn Fn(&str) -> String,
        security_policies: &[(SecurityPolicy, Option<TunnelRef>)],
    ) -> Option<Vec<TrafficSelector>> {
        if vpn.bind_interface.is_none() {
            if let Some((ts, _)) = vpn.traffic_selector.first() {
                self.err(
                    ts.span(),
                    &k("traffic-selector"),
                    "traffic selectors need a route-based vpn (bind-interface); a policy-based vpn takes them from its policies",
                );
                return None;
            }
            return Some(policy_selectors(name, security_policies));
        }
        let mut out = Some(Vec::new());
        for (name, ts) in &vpn.traffic_selector {
            let key = |leaf: &str| {
                format!(
                    "{}.{}",
                    k(&key_path(&["traffic-selector", name.get_ref()])),
                    leaf
                )
            };
            let local = self.prefix(&ts.local_ip, &key("local-ip"));
            let remote = self.prefix(&ts.remote_ip, &key("remote-ip"));
            let sel = match (local, remote) {
                (Some(l), Some(r)) if l.addr().is_ipv6() != r.addr().is_ipv6() => {
                    self.err(
                        ts.remote_ip.span(),
                        &key("remote-ip"),
                        format!(
                            "address family mismatch: remote-ip \"{}\" and local-ip \"{}\"",
                            ts.remote_ip.get_ref(),
                            ts.local_ip.get_ref()
                        ),
                    );
                    None
                }
                (Some(local), Some(remote)) => Some(TrafficSelector {
                    name: name.get_ref().clone(),
                    local,
                    remote,
                }),
                _ => None,
            };
            match (sel, &mut out) {
                (Some(s), Some(v)) => v.push(s),
                _ => out = None,
            }
        }
        out
    }

    /// Junos' ranges: interval 2..3600 s, threshold 1..16.
    fn vpn_monitor_options(
        &mut self,
        o: Option<&raw::VpnMonitorOptions>,
    ) -> Option<VpnMonitorOptions> {
        let mut out = VpnMonitorOptions::default();
        let Some(o) = o else {
            return Some(out);
        };
        let key = "security.ipsec.vpn-monitor-options";
        // Both checked before giving up, so one pass reports both.
        let interval = o
            .interval
            .as_ref()
            .map(|i| self.int_range(i, &format!("{key}.interval"), (2, 3600), " seconds"));
        let threshold = o
            .threshold
            .as_ref()
            .map(|t| self.int_range(t, &format!("{key}.threshold"), (1, 16), ""));
        if let Some(i) = interval {
            out.interval = Duration::from_secs(u64::try_from(i?).ok()?);
        }
        if let Some(t) = threshold {
            out.threshold = u32::try_from(t?).ok()?;
        }
        Some(out)
    }

    fn vpn_monitor(&mut self, m: &raw::VpnMonitor, key: &str) -> Option<VpnMonitor> {
        let destination = match &m.destination_ip {
            None => Some(None),
            Some(d) => self.ip(d, &format!("{key}.destination-ip")).map(Some),
        };
        Some(VpnMonitor {
            destination: destination?,
            source_interface: m.source_interface.as_ref().map(|s| s.get_ref().clone()),
            optimized: m.optimized,
        })
    }

    /// The manual SA part of a manual VPN; binding, options and selectors are filled in
    /// by the caller.
    fn manual(&mut self, manual: &Spanned<raw::Manual>, base: &str) -> Option<ManualVpn> {
        let m = manual.get_ref();
        let k = |leaf: &str| format!("{base}.{leaf}");
        let header = manual.span();
        let gateway = self
            .required(&m.gateway, header.clone(), &k("gateway"))
            .and_then(|g| self.ip(g, &k("gateway")));
        let local = self
            .required(&m.local_address, header.clone(), &k("local-address"))
            .and_then(|l| self.ip(l, &k("local-address")));
        if let (Some(g), Some(l), Some(graw), Some(lraw)) =
            (gateway, local, &m.gateway, &m.local_address)
            && g.is_ipv6() != l.is_ipv6()
        {
            self.err(
                lraw.span(),
                &k("local-address"),
                format!(
                    "address family mismatch: local-address \"{}\" and gateway \"{}\"",
                    lraw.get_ref(),
                    graw.get_ref()
                ),
            );
        }
        let protocol = match &m.protocol {
            None => Some(IpsecProtocol::Esp),
            Some(pr) => self.named(
                pr,
                &k("protocol"),
                "protocol",
                &[("esp", IpsecProtocol::Esp), ("ah", IpsecProtocol::Ah)],
            ),
        };
        let spi = self
            .required(&m.spi, header.clone(), &k("spi"))
            .and_then(|s| self.spi(s, &k("spi")));
        let remote_spi = match &m.remote_spi {
            None => spi,
            Some(s) => self.spi(s, &k("remote-spi")),
        };
        let protocol = protocol?;
        let encr = match (&m.encryption, protocol) {
            (Some(e), IpsecProtocol::Ah) => {
                self.err(e.span(), &k("encryption"), "not allowed with protocol ah");
                None
            }
            (None, IpsecProtocol::Esp) => {
                self.err(
                    header.clone(),
                    &k("encryption"),
                    "missing (required with protocol esp)",
                );
                None
            }
            (None, IpsecProtocol::Ah) => Some(None),
            (Some(e), IpsecProtocol::Esp) => self.manual_encryption(e, &k("encryption")).map(Some),
        };
        let aead = encr
            .as_ref()
            .and_then(|e| e.as_ref())
            .is_some_and(|e| e.0.is_aead());
        let integ = match &m.authentication {
            Some(a) if aead => {
                self.err(
                    a.span(),
                    &k("authentication"),
                    "not allowed with an AEAD encryption algorithm, which carries its own integrity",
                );
                None
            }
            Some(a) => self
                .manual_authentication(a, &k("authentication"))
                .map(Some),
            None if aead => Some(None),
            None => {
                // Only reached when encryption itself is valid or AH, so this is the one
                // error about the missing integrity.
                if encr.is_some() {
                    self.err(
                        header.clone(),
                        &k("authentication"),
                        "missing (required without an AEAD cipher)",
                    );
                }
                None
            }
        };
        let (encr, integ) = (encr?, integ?);
        let none = || KeyPair {
            inbound: Key::default(),
            outbound: Key::default(),
        };
        let (encr_alg, encr_keys) = encr.unwrap_or_else(|| (EncrAlg::Null, none()));
        let (integ_alg, integ_keys) = integ.unwrap_or_else(|| (IntegAlg::None, none()));
        Some(ManualVpn {
            name: String::new(),
            description: None,
            binding: Binding::Route { unit: 0 },
            gateway: gateway?,
            local_address: local?,
            protocol,
            spi: spi?,
            remote_spi: remote_spi?,
            encr: encr_alg,
            integ: integ_alg,
            keys: ManualKeys {
                encr: encr_keys.inbound,
                integ: integ_keys.inbound,
            },
            remote_keys: ManualKeys {
                encr: encr_keys.outbound,
                integ: integ_keys.outbound,
            },
            udp_encapsulation: m.udp_encapsulation,
            options: TunnelOptions {
                mode: Mode::Tunnel,
                df_bit: DfBit::Clear,
                copy_outer_dscp: false,
                anti_replay: None,
                esn: false,
            },
            traffic_selectors: Vec::new(),
        })
        .filter(|v| {
            gateway
                .zip(local)
                .is_some_and(|(g, l)| g.is_ipv6() == l.is_ipv6())
                && v.spi != 0
        })
    }

    fn spi(&mut self, s: &Spanned<i64>, key: &str) -> Option<u32> {
        let x = *s.get_ref();
        match u32::try_from(x) {
            Ok(v) if x >= SPI_MIN => Some(v),
            _ => {
                self.err(
                    s.span(),
                    key,
                    format!(
                        "{x} is out of range {SPI_MIN}..{} (SPIs 1..255 are reserved)",
                        u32::MAX
                    ),
                );
                None
            }
        }
    }

    /// Algorithm plus inbound (`key`) and outbound (`remote-key`, default `key`) keys.
    fn manual_encryption(
        &mut self,
        e: &Spanned<raw::ManualEncryption>,
        key: &str,
    ) -> Option<(EncrAlg, KeyPair)> {
        let e = e.get_ref();
        let alg = self
            .named(
                &e.algorithm,
                &format!("{key}.algorithm"),
                "encryption algorithm",
                p::ENCRYPTION_ALGORITHMS,
            )
            .and_then(EncrTransform::encr_alg)?;
        let want = KeyLen {
            alg: alg.name(),
            bytes: alg.key_len(),
            note: if alg.is_aead() {
                " (cipher key + 4-byte salt)"
            } else {
                ""
            },
        };
        let keys = self.manual_keys((&e.key, &e.remote_key), e.algorithm.span(), key, &want)?;
        if alg.is_aead() && e.remote_key.is_none() {
            self.err(
                e.key.as_ref().map_or(e.algorithm.span(), Spanned::span),
                &format!("{key}.remote-key"),
                format!(
                    "missing (required with {}: one key in both directions would reuse AEAD nonces)",
                    alg.name()
                ),
            );
            return None;
        }
        if alg.is_aead() && keys.inbound == keys.outbound {
            if let Some(r) = &e.remote_key {
                self.err(
                    r.span(),
                    &format!("{key}.remote-key"),
                    "must differ from key: one key in both directions would reuse AEAD nonces",
                );
            }
            return None;
        }
        Some((alg, keys))
    }

    fn manual_authentication(
        &mut self,
        a: &Spanned<raw::ManualAuthentication>,
        key: &str,
    ) -> Option<(IntegAlg, KeyPair)> {
        let a = a.get_ref();
        let alg = self
            .named(
                &a.algorithm,
                &format!("{key}.algorithm"),
                "authentication algorithm",
                p::IPSEC_AUTHENTICATION_ALGORITHMS,
            )
            .and_then(IntegAlg::from_iana)?;
        let want = KeyLen {
            alg: alg.name(),
            bytes: alg.key_len(),
            note: "",
        };
        let keys = self.manual_keys((&a.key, &a.remote_key), a.algorithm.span(), key, &want)?;
        Some((alg, keys))
    }

    fn manual_keys(
        &mut self,
        (key, remote): (
            &Option<Spanned<raw::KeyText>>,
            &Option<Spanned<raw::KeyText>>,
        ),
        header: Span,
        base: &str,
        want: &KeyLen<'_>,
    ) -> Option<KeyPair> {
        let Some(key_v) = key else {
            self.err(header, &format!("{base}.key"), "missing (required)");
            return None;
        };
        let inbound = self.key_text(key_v, &format!("{base}.key"), want);
        let outbound = match remote {
            None => inbound.clone(),
            Some(r) => self.key_text(r, &format!("{base}.remote-key"), want),
        };
        Some(KeyPair {
            inbound: inbound?,
            outbound: outbound?,
        })
    }

    fn key_text(&mut self, k: &Spanned<raw::KeyText>, key: &str, want: &KeyLen<'_>) -> Option<Key> {
        let t = k.get_ref();
        let (bytes, span, leaf) = match (&t.ascii_text, &t.hexadecimal) {
            (Some(a), None) => (
                Some(Zeroizing::new(a.get_ref().as_bytes().to_vec())),
                a.span(),
                "ascii-text",
            ),
            (None, Some(h)) => (
                self.hex(h, &format!("{key}.hexadecimal")),
                h.span(),
                "hexadecimal",
            ),
            _ => {
                self.err(
                    k.span(),
                    key,
                    "needs exactly one of ascii-text or hexadecimal",
                );
                return None;
            }
        };
        let bytes = bytes?;
        if bytes.len() != want.bytes {
            self.err(
                span,
                &format!("{key}.{leaf}"),
                format!(
                    "{} needs a {}-byte key{}, got {} bytes",
                    want.alg,
                    want.bytes,
                    want.note,
                    bytes.len()
                ),
            );
            return None;
        }
        Some(bytes)
    }

    fn routes(
        &mut self,
        raw: &raw::Named<raw::Route>,
        interfaces: &IndexMap<String, Interface>,
    ) -> Vec<StaticRoute> {
        let mut out = Vec::new();
        for (dest, route) in raw {
            let base = [
                "routing-options",
                "static",
                "route",
                dest.get_ref().as_str(),
            ];
            let destination = self.prefix(dest, &key_path(&base));
            let key = key_path(&[&base[..], &["next-hop"]].concat());
            let nh = &route.next_hop;
            let next_hop = if nh.get_ref().starts_with("st0.") {
                self.st0_unit(nh, &key).and_then(|unit| {
                    if interfaces.contains_key(nh.get_ref().as_str()) {
                        Some(NextHop::St0 { unit })
                    } else {
                        self.undefined(nh, &key, "interface", interfaces);
                        None
                    }
                })
            } else {
                self.ip(nh, &key).map(NextHop::Address)
            };
            if let (Some(destination), Some(next_hop)) = (destination, next_hop) {
                if let NextHop::Address(a) = next_hop
                    && a.is_ipv6() != destination.addr().is_ipv6()
                {
                    self.err(
                        nh.span(),
                        &key,
                        format!(
                            "address family mismatch: next-hop {a} for {}",
                            dest.get_ref()
                        ),
                    );
                    continue;
                }
                out.push(StaticRoute {
                    destination,
                    next_hop,
                });
            }
        }
        out
    }

    /// An absolute directory: the daemon may run from anywhere, and the files it
    /// names hold keys.
    fn key_log(&mut self, dir: &Spanned<String>) -> Option<PathBuf> {
        let path = PathBuf::from(dir.get_ref());
        if !path.is_absolute() {
            self.err(
                dir.span(),
                "security.ike.traceoptions.key-log",
                "must be an absolute directory path",
            );
            return None;
        }
        Some(path)
    }

    fn services(&mut self, raw: &raw::Services) -> ServicesConfig {
        let listen = |s: &mut Self, l: &Option<raw::Listen>, key: &str| {
            let l = l.as_ref()?;
            match l.listen.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    s.err(
                        l.listen.span(),
                        key,
                        format!(
                            "invalid socket address \"{}\" (expected address:port)",
                            l.listen.get_ref()
                        ),
                    );
                    None
                }
            }
        };
        ServicesConfig {
            management: listen(self, &raw.management, "services.management.listen"),
            metrics: listen(self, &raw.metrics, "services.metrics.listen"),
        }
    }

    // ---- chassis cluster ----

    /// `[chassis.cluster]`: `None` when absent or invalid (reported).
    fn cluster(&mut self, raw: &Spanned<raw::Cluster>) -> Option<Cluster> {
        let c = raw.get_ref();
        let header = raw.span();
        let k = |leaf: &str| format!("chassis.cluster.{leaf}");
        let cluster_id = self
            .required(&c.cluster_id, header.clone(), &k("cluster-id"))
            .and_then(|id| self.int_range(id, &k("cluster-id"), CLUSTER_ID, ""));
        let interval = match &c.heartbeat_interval {
            None => Some(HEARTBEAT_INTERVAL_DEFAULT),
            Some(i) => self.int_range(
                i,
                &k("heartbeat-interval"),
                HEARTBEAT_INTERVAL,
                " milliseconds",
            ),
        };
        let threshold = match &c.heartbeat_threshold {
            None => Some(HEARTBEAT_THRESHOLD_DEFAULT),
            Some(t) => self.int_range(t, &k("heartbeat-threshold"), HEARTBEAT_THRESHOLD, ""),
        };
        let data_directory = match &c.data_directory {
            None => Some(PathBuf::from(DATA_DIRECTORY_DEFAULT)),
            Some(d) if d.get_ref().is_empty() => {
                self.err(d.span(), &k("data-directory"), "must not be empty");
                None
            }
            Some(d) => Some(PathBuf::from(d.get_ref())),
        };
        let members = self.cluster_members(c, header.clone());
        let mut groups = Some(Vec::new());
        for (id, group) in &c.redundancy_group {
            match (self.redundancy_group(id, group), &mut groups) {
                (Some(g), Some(v)) => v.push(g),
                _ => groups = None,
            }
        }
        if !c.redundancy_group.keys().any(|id| id.get_ref() == "0") {
            self.err(
                header,
                &k("redundancy-group.0"),
                "missing (redundancy group 0, the control plane, is required)",
            );
            groups = None;
        }
        let mut groups = groups?;
        groups.sort_by_key(|g| g.id);
        Some(Cluster {
            cluster_id: u16::try_from(cluster_id?).ok()?,
            heartbeat_interval: Duration::from_millis(interval?.unsigned_abs()),
            heartbeat_threshold: u32::try_from(threshold?).ok()?,
            data_directory: data_directory?,
            control_addresses: members?,
            redundancy_groups: groups,
        })
    }

    /// The control link address of node0, node1 and the witness, all required: every
    /// member must be able to reach the other two, whichever one reads the file.
    fn cluster_members(
        &mut self,
        c: &raw::Cluster,
        header: Span,
    ) -> Option<Vec<(Member, SocketAddr)>> {
        let mut ok = true;
        for id in c.node.keys() {
            if !matches!(id.get_ref().as_str(), "0" | "1") {
                self.err(
                    id.span(),
                    &key_path(&["chassis", "cluster", "node", id.get_ref()]),
                    format!(
                        "unknown node \"{}\" (expected 0 or 1; the third member is [chassis.cluster.witness])",
                        id.get_ref()
                    ),
                );
                ok = false;
            }
        }
        let mut out: Vec<(Member, SocketAddr)> = Vec::new();
        let mut seen: Vec<(SocketAddr, Member)> = Vec::new();
        for member in Member::ALL {
            let (entry, base) = match member {
                Member::Witness => (
                    c.witness.as_ref().map(|w| (w.get_ref(), w.span())),
                    "chassis.cluster.witness",
                ),
                node => {
                    let id = node.index().to_string();
                    (
                        c.node
                            .get_key_value(id.as_str())
                            .map(|(name, m)| (m, name.span())),
                        if node == Member::Node0 {
                            "chassis.cluster.node.0"
                        } else {
                            "chassis.cluster.node.1"
                        },
                    )
                }
            };
            let key = format!("{base}.control-address");
            let Some((m, entry_span)) = entry else {
                self.err(
                    header.clone(),
                    &key,
                    format!("missing ({member}'s cluster link address is required)"),
                );
                ok = false;
                continue;
            };
            let Some(a) = self.required(&m.control_address, entry_span, &key) else {
                ok = false;
                continue;
            };
            let Some(addr) = self.socket_addr(a, &key) else {
                ok = false;
                continue;
            };
            if addr.ip().is_unspecified() || addr.port() == 0 {
                self.err(
                    a.span(),
                    &key,
                    format!(
                        "\"{}\" must be a reachable address and port: the other members connect to it",
                        a.get_ref()
                    ),
                );
                ok = false;
                continue;
            }
            if let Some((_, other)) = seen.iter().find(|(s, _)| *s == addr) {
                self.err(
                    a.span(),
                    &key,
                    format!("{addr} is already the control-address of {other}"),
                );
                ok = false;
                continue;
            }
            seen.push((addr, member));
            out.push((member, addr));
        }
        ok.then_some(out)
    }

    fn socket_addr(&mut self, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span(),
                    key,
                    format!(
                        "invalid socket address \"{}\" (expected address:port)",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn redundancy_group(
        &mut self,
        id: &Spanned<String>,
        g: &raw::RedundancyGroup,
    ) -> Option<RedundancyGroup> {
        let base = key_path(&["chassis", "cluster", "redundancy-group", id.get_ref()]);
        let k = |leaf: &str| format!("{base}.{leaf}");
        // Canonical numbers only: "01" next to "1" would be two tables for one group.
        let Some(n) = id
            .get_ref()
            .parse::<u8>()
            .ok()
            .filter(|n| i64::from(*n) <= GROUP_ID.1 && n.to_string() == *id.get_ref())
        else {
            self.err(
                id.span(),
                &base,
                format!(
                    "invalid redundancy group \"{}\" (expected a number {}..{})",
                    id.get_ref(),
                    GROUP_ID.0,
                    GROUP_ID.1
                ),
            );
            return None;
        };
        let mut ok = true;
        for node in g.node.keys() {
            if !matches!(node.get_ref().as_str(), "0" | "1") {
                self.err(
                    node.span(),
                    &k(&key_path(&["node", node.get_ref()])),
                    format!(
                        "unknown node \"{}\" (expected 0 or 1: the witness owns no group)",
                        node.get_ref()
                    ),
                );
                ok = false;
            }
        }
        let mut priority = [0u8; 2];
        for (i, slot) in priority.iter_mut().enumerate() {
            let key = k(&format!("node.{i}.priority"));
            let (entry, span) = match g.node.get_key_value(i.to_string().as_str()) {
                Some((name, node)) => (node.priority.as_ref(), name.span()),
                None => (None, id.span()),
            };
            let Some(p) = entry else {
                self.err(span, &key, "missing (required)");
                ok = false;
                continue;
            };
            match self.int_range(p, &key, PRIORITY, "") {
                Some(p) => *slot = u8::try_from(p).unwrap_or(u8::MAX),
                None => ok = false,
            }
        }
        // Junos refuses preempt and monitoring in group 0: the control plane fails over
        // only when its node fails, never back and forth with link state.
        if n == 0 {
            let control_plane = [
                ("preempt", g.preempt.as_ref().map(Spanned::span)),
                (
                    "interface-monitor",
                    g.interface_monitor.keys().next().map(Spanned::span),
                ),
                ("ip-monitoring", g.ip_monitoring.as_ref().map(Spanned::span)),
            ];
            for (leaf, span) in control_plane {
                if let Some(span) = span {
                    self.err(
                        span,
                        &k(leaf),
                        "not allowed in redundancy group 0 (the control plane fails over only when its node fails)",
                    );
                    ok = false;
                }
            }
        }
        let preempt = match &g.preempt {
            None => Some(None),
            Some(p) => match &p.get_ref().delay {
                None => Some(Some(PREEMPT_DELAY_DEFAULT)),
                Some(d) => self
                    .int_range(d, &k("preempt.delay"), PREEMPT_DELAY, " seconds")
                    .map(|d| Some(Duration::from_secs(d.unsigned_abs()))),
            },
        };
        let mut interface_monitor = Some(Vec::new());
        for (name, w) in &g.interface_monitor {
            let key = k(&key_path(&["interface-monitor", name.get_ref()]));
            let weight = if name.get_ref().is_empty() {
                self.err(name.span(), &key, "interface name must not be empty");
                None
            } else {
                self.weight(w, name.span(), &key)
            };
            match (weight, &mut interface_monitor) {
                (Some(w), Some(v)) => v.push((name.get_ref().clone(), w)),
                _ => interface_monitor = None,
            }
        }
        let ip_monitoring = match &g.ip_monitoring {
            None => Some(Vec::new()),
            Some(m) => self.ip_monitoring(m.get_ref(), &k("ip-monitoring")),
        };
        let spu_weight = match &g.spu_weight {
            None => Some(None),
            Some(w) => self
                .int_range(w, &k("spu-weight"), WEIGHT, "")
                .map(|w| Some(u32::try_from(w).unwrap_or(u32::MAX))),
        };
        let group = RedundancyGroup {
            id: n,
            priority,
            preempt: preempt?,
            interface_monitor: interface_monitor?,
            ip_monitoring: ip_monitoring?,
            spu_weight: spu_weight?,
        };
        ok.then_some(group)
    }

    /// A required monitoring weight, 0..=255 (Junos: a failure costs this much of the
    /// group's threshold of 255).
    fn weight(&mut self, w: &Spanned<raw::Weight>, entry: Span, key: &str) -> Option<u32> {
        let key = format!("{key}.weight");
        let v = self.required(&w.get_ref().weight, entry, &key)?;
        self.int_range(v, &key, WEIGHT, "")
            .map(|w| u32::try_from(w).unwrap_or(u32::MAX))
    }

    fn ip_monitoring(&mut self, m: &raw::IpMonitoring, key: &str) -> Option<Vec<IpMonitoring>> {
        let interval = match &m.retry_interval {
            None => Some(IP_RETRY_INTERVAL_DEFAULT),
            Some(i) => self.int_range(
                i,
                &format!("{key}.retry-interval"),
                IP_RETRY_INTERVAL,
                " seconds",
            ),
        };
        let count = match &m.retry_count {
            None => Some(IP_RETRY_COUNT_DEFAULT),
            Some(c) => self.int_range(c, &format!("{key}.retry-count"), IP_RETRY_COUNT, ""),
        };
        let mut out = Some(Vec::new());
        for (family, list, v6) in [
            ("inet", &m.family.inet, false),
            ("inet6", &m.family.inet6, true),
        ] {
            for (addr, w) in list {
                let akey = format!(
                    "{key}.{}",
                    key_path(&["family", family, addr.get_ref().as_str()])
                );
                let address = self.ip(addr, &akey).filter(|a| {
                    let fits = a.is_ipv6() == v6;
                    if !fits {
                        self.err(
                            addr.span(),
                            &akey,
                            format!(
                                "address family mismatch: \"{}\" in family {family}",
                                addr.get_ref()
                            ),
                        );
                    }
                    fits
                });
                let weight = self.weight(w, addr.span(), &akey);
                match (address, weight, &mut out) {
                    (Some(address), Some(weight), Some(v)) => v.push((address, weight)),
                    _ => out = None,
                }
            }
        }
        let (interval, count) = (interval?, count?);
        Some(
            out?.into_iter()
                .map(|(address, weight)| IpMonitoring {
                    address,
                    weight,
                    interval: Duration::from_secs(interval.unsigned_abs()),
                    threshold: u32::try_from(count).unwrap_or(u32::MAX),
                })
                .collect(),
        )
    }

    /// `[interfaces.rethN]`. `groups` are the redundancy group numbers written in the
    /// file (valid or not, so a reference to an invalid group is not reported twice);
    /// `None` without a cluster, where every reth is an error.
    fn reths(
        &mut self,
        raw: &raw::Named<raw::Reth>,
        groups: Option<&[u8]>,
    ) -> IndexMap<String, Reth> {
        let mut out: IndexMap<String, Reth> = IndexMap::new();
        let mut addresses: Vec<(IpAddr, String)> = Vec::new();
        for (name, reth) in raw {
            let n = name.get_ref();
            let base = key_path(&["interfaces", n]);
            let k = |leaf: &str| format!("{base}.{leaf}");
            let number = n.strip_prefix("reth").and_then(|d| {
                d.parse::<u8>()
                    .ok()
                    .filter(|x| i64::from(*x) <= RETH.1 && d == x.to_string())
            });
            if number.is_none() {
                self.err(
                    name.span(),
                    &base,
                    format!(
                        "unknown interface \"{n}\" (expected st0 or reth0..reth{}; physical interfaces belong to the host)",
                        RETH.1
                    ),
                );
                continue;
            }
            let Some(groups) = groups else {
                self.err(
                    name.span(),
                    &base,
                    "redundant Ethernet interfaces need a chassis cluster ([chassis.cluster])",
                );
                continue;
            };
            let group = self
                .required(
                    &reth.redundant_ether_options,
                    name.span(),
                    &k("redundant-ether-options.redundancy-group"),
                )
                .and_then(|o| {
                    self.required(
                        &o.get_ref().redundancy_group,
                        o.span(),
                        &k("redundant-ether-options.redundancy-group"),
                    )
                })
                .and_then(|g| {
                    self.reth_group(g, &k("redundant-ether-options.redundancy-group"), groups)
                });
            let children = self
                .required(&reth.child_interface, name.span(), &k("child-interface"))
                .and_then(|c| {
                    let mut both = [None, None];
                    for (slot, (leaf, v)) in both.iter_mut().zip([
                        ("child-interface.node0", &c.get_ref().node0),
                        ("child-interface.node1", &c.get_ref().node1),
                    ]) {
                        *slot = match self.required(v, c.span(), &k(leaf)) {
                            Some(i) if i.get_ref().is_empty() => {
                                self.err(i.span(), &k(leaf), "must not be empty");
                                None
                            }
                            i => i.map(|i| i.get_ref().clone()),
                        };
                    }
                    let [a, b] = both;
                    Some([a?, b?])
                });
            let mut ok = true;
            let (mut inet, mut inet6) = (None, None);
            for (unit, u) in &reth.unit {
                let ukey = key_path(&["interfaces", n, "unit", unit.get_ref()]);
                if unit.get_ref() != "0" {
                    self.err(
                        unit.span(),
                        &ukey,
                        "only unit 0 is supported (no VLAN units)",
                    );
                    ok = false;
                    continue;
                }
                for (slot, f, fname, v6) in [
                    (&mut inet, &u.family.inet, "inet", false),
                    (&mut inet6, &u.family.inet6, "inet6", true),
                ] {
                    let Some(a) = f.as_ref().and_then(|f| f.address.as_ref()) else {
                        continue;
                    };
                    let akey = format!("{ukey}.family.{fname}.address");
                    match self.interface_address(a, &akey, v6) {
                        Some(ia) => {
                            if let Some((_, other)) =
                                addresses.iter().find(|(x, _)| *x == ia.address)
                            {
                                self.err(
                                    a.span(),
                                    &akey,
                                    format!("{} is already an address of {other}", ia.address),
                                );
                                ok = false;
                            } else {
                                addresses.push((ia.address, n.clone()));
                                *slot = Some(ia);
                            }
                        }
                        None => ok = false,
                    }
                }
            }
            if let (Some(group), Some(children), true) = (group, children, ok) {
                out.insert(
                    n.clone(),
                    Reth {
                        name: n.clone(),
                        description: reth.description.clone(),
                        redundancy_group: group,
                        child_interfaces: children,
                        inet,
                        inet6,
                    },
                );
            }
        }
        out
    }

    /// A reth's redundancy group: defined, and not 0 (the control plane carries no
    /// traffic addresses, as in Junos).
    fn reth_group(&mut self, g: &Spanned<i64>, key: &str, groups: &[u8]) -> Option<u8> {
        if *g.get_ref() == 0 {
            self.err(
                g.span(),
                key,
                "redundancy group 0 is the control plane; a reth belongs to group 1 or above",
            );
            return None;
        }
        let n = self
            .int_range(g, key, (1, GROUP_ID.1), "")
            .and_then(|n| u8::try_from(n).ok());
        let n = n?;
        if !groups.contains(&n) {
            let mut defined: Vec<String> = groups.iter().map(u8::to_string).collect();
            defined.sort();
            self.err(
                g.span(),
                key,
                format!(
                    "references undefined redundancy group {n} (defined: {})",
                    if defined.is_empty() {
                        "none".to_owned()
                    } else {
                        defined.join(", ")
                    }
                ),
            );
            return None;
        }
        Some(n)
    }

    /// `interface-monitor` entries that name a reth must name a defined one.
    fn monitored_reths(&mut self, raw: &raw::Cluster, reths: &raw::Named<raw::Reth>) {
        for (id, g) in &raw.redundancy_group {
            for name in g.interface_monitor.keys() {
                let n = name.get_ref();
                if n.starts_with("reth") && !reths.contains_key(n.as_str()) {
                    let defined: IndexMap<String, ()> =
                        reths.keys().map(|k| (k.get_ref().clone(), ())).collect();
                    self.undefined(
                        name,
                        &key_path(&[
                            "chassis",
                            "cluster",
                            "redundancy-group",
                            id.get_ref(),
                            "interface-monitor",
                            n,
                        ]),
                        "reth interface",
                        &defined,
                    );
                }
            }
        }
    }

    /// In a cluster, tunnels are sourced from reth addresses, which move with their
    /// redundancy group: a tunnel on a node's own address could not survive a failover,
    /// since the other node does not have that address. Reth addresses are taken from
    /// the file as written, so a reth that failed validation for another reason does
    /// not also make every gateway on it an error.
    fn clustered_local_addresses(
        &mut self,
        security: &raw::Security,
        reths: &raw::Named<raw::Reth>,
    ) {
        let written: Vec<(IpAddr, &str)> = reths
            .iter()
            .flat_map(|(name, r)| {
                r.unit.values().flat_map(move |u| {
                    [&u.family.inet, &u.family.inet6]
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.address.as_ref())
                        .filter_map(move |a| {
                            let addr = a.get_ref().split_once('/')?.0.parse().ok()?;
                            Some((addr, name.get_ref().as_str()))
                        })
                })
            })
            .collect();
        let listing = if written.is_empty() {
            "none".to_owned()
        } else {
            let all: Vec<String> = written.iter().map(|(a, r)| format!("{a} ({r})")).collect();
            all.join(", ")
        };
        let check = |s: &mut Self, local: Option<&Spanned<String>>, header: Span, key: String| {
            let Some(local) = local else {
                s.err(
                    header,
                    &key,
                    format!(
                        "missing (required in a chassis cluster: a reth address, which moves with its redundancy group; reth addresses: {listing})"
                    ),
                );
                return;
            };
            let Ok(addr) = local.get_ref().parse::<IpAddr>() else {
                return; // reported by the gateway or VPN itself
            };
            if !written.iter().any(|(a, _)| *a == addr) {
                s.err(
                    local.span(),
                    &key,
                    format!(
                        "{addr} is not a reth address: in a chassis cluster a tunnel's local address must move with its redundancy group (reth addresses: {listing})"
                    ),
                );
            }
        };
        for (name, gw) in &security.ike.gateway {
            let key = key_path(&[
                "security",
                "ike",
                "gateway",
                name.get_ref(),
                "local-address",
            ]);
            check(self, gw.local_address.as_ref(), name.span(), key);
            if let Some(d) = &gw.dynamic {
                // Each dial-up peer gets its gateway actor, binding and SPD entries on the
                // node that answered it; none of that is replicated or taken over yet,
                // and the failover of its SAs is untested. Refused rather than left to
                // fail at the first failover.
                self.err(
                    d.span(),
                    &key_path(&["security", "ike", "gateway", name.get_ref(), "dynamic"]),
                    "dial-up (dynamic) gateways are not supported in a chassis cluster yet: \
                     their clients' tunnels would not be taken over on failover; run remote \
                     access on a standalone vpnd",
                );
            }
        }
        for (name, vpn) in &security.ipsec.vpn {
            if let Some(m) = &vpn.manual {
                // A manual SA's outbound sequence is not replicated (there is no IKE SA
                // record to hang reservations on): the node taking over would start at
                // 1 again under the same key, reusing sequence numbers, i.e. AES-GCM
                // nonces. Refused until manual SAs get replicated reservations.
                self.err(
                    m.span(),
                    &key_path(&["security", "ipsec", "vpn", name.get_ref(), "manual"]),
                    "manual-key VPNs are not supported in a chassis cluster: the node taking \
                     over would restart the outbound sequence under the same key (sequence \
                     number and AES-GCM nonce reuse); use IKE",
                );
            }
        }
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Selectors of a policy-based VPN: source × destination of each policy tunnelling
/// into it, local side first, pairing "any" with the whole address space of the other
/// side's family. A pair of "any" gives no selector (empty means any). Policies are
/// written from the protected zone outward, so the source is the local side.
fn policy_selectors(
    vpn: &str,
    policies: &[(SecurityPolicy, Option<TunnelRef>)],
) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for (pol, _) in policies
        .iter()
        .filter(|(_, t)| t.as_ref().is_some_and(|t| t.vpn.get_ref() == vpn))
    {
        let pairs = pol.prefix_pairs();
        for (local, remote) in pairs {
            if !out.iter().any(|o| o.local == local && o.remote == remote) {
                out.push(TrafficSelector {
                    name: pol.name.clone(),
                    local,
                    remote,
                });
            }
        }
    }
    out
}
