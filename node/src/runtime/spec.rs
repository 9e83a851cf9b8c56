//! From the validated configuration to what the runtime starts: the one place where
//! configuration names meet engine types.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dataplane::sa::Mode;
use ike::cert::{Credential, KeyKind, PrivateKey, TrustStore, certs_from_pem};
use ike::crypto::{DhGroup, Encr, Integ, Prf, SecretBytes};
use ike::engine::{
    AddressPool, ChildLifetime, ChildSuite, IkeConfig, IkeSuite, IpsecMode, LocalAuth, PeerAuth,
    Retransmit, SharedPool, identity_matches,
};
use ike::wire::{AddrRange, Identity, IpSelector};
use ring::rand::SystemRandom;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::keylog::KeyLog;
use super::policy::PolicySpec;
use super::vpn_monitor::MonitorSpec;
use super::{EspOptions, GatewaySpec, ManualSpec, NodeSpec, TunnelSpec};
use crate::config::model::{self, Auth, Binding, Config, Establish, Member, NextHop, Remote};

/// Inner MTU of `st0` interfaces unless configured: room for IPv4 + UDP + ESP with a
/// 16-byte IV, padding and a 16-byte ICV inside a 1500-byte path.
pub const DEFAULT_TUNNEL_MTU: u32 = 1400;

/// Why a valid configuration cannot run (yet) on this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {reason}")]
pub struct SpecError {
    /// The configuration object, as a dotted path.
    pub object: String,
    /// Why.
    pub reason: String,
}

fn err(object: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        object: object.into(),
        reason: reason.into(),
    }
}

impl NodeSpec {
    /// The runtime description of a configuration, with `workers` SPUs.
    pub fn from_config(cfg: &Config, workers: usize) -> Result<NodeSpec, SpecError> {
        let mut tunnels: BTreeMap<u32, TunnelSpec> = BTreeMap::new();
        fn tunnel(tunnels: &mut BTreeMap<u32, TunnelSpec>, unit: u32) -> &mut TunnelSpec {
            tunnels.entry(unit).or_insert_with(|| TunnelSpec {
                unit,
                mtu: DEFAULT_TUNNEL_MTU,
                addresses: Vec::new(),
                routes: Vec::new(),
                ipv6: false,
            })
        }
        for i in &cfg.interfaces {
            let t = tunnel(&mut tunnels, i.unit);
            if let Some(mtu) = i.mtu {
                t.mtu = u32::from(mtu);
            }
            for a in i.inet.iter().chain(i.inet6.iter()) {
                t.addresses.push((a.address, a.prefix_len));
            }
        }
        for r in &cfg.routes {
            if let NextHop::St0 { unit } = r.next_hop {
                tunnel(&mut tunnels, unit)
                    .routes
                    .push((r.destination.network(), r.destination.prefix_len()));
            }
        }
        let bound = cfg
            .vpns
            .iter()
            .map(|v| (&v.binding, &v.traffic_selectors))
            .chain(
                cfg.manual_vpns
                    .iter()
                    .map(|m| (&m.binding, &m.traffic_selectors)),
            );
        for (binding, selectors) in bound {
            if let Binding::Route { unit } = *binding {
                let t = tunnel(&mut tunnels, unit);
                t.ipv6 |= selectors
                    .iter()
                    .any(|ts| ts.local.network().is_ipv6() || ts.remote.network().is_ipv6());
            }
        }
        for t in tunnels.values_mut() {
            t.ipv6 |= t
                .addresses
                .iter()
                .chain(&t.routes)
                .any(|(a, _)| a.is_ipv6());
        }

        let peers = Peers::of(cfg);
        let gateways = cfg
            .vpns
            .iter()
            .map(|v| gateway_spec(cfg, &peers, v))
            .collect::<Result<Vec<_>, _>>()?;
        let manual = cfg
            .manual_vpns
            .iter()
            .map(|m| {
                let pair = m.sa_pair();
                ManualSpec {
                    name: m.name.clone(),
                    outbound: pair.outbound,
                    inbound: pair.inbound,
                }
            })
            .collect();
        let mut ike_listen: Vec<SocketAddr> = gateways
            .iter()
            .map(|g| SocketAddr::new(g.local, 500))
            .collect();
        ike_listen.sort_unstable();
        ike_listen.dedup();
        let natt_listen = vec![
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4500)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 4500)),
        ];
        Ok(NodeSpec {
            workers,
            tunnels: tunnels.into_values().collect(),
            gateways,
            manual,
            ike_listen,
            natt_listen,
            policy: PolicySpec::from_config(cfg)?,
        })
    }
}

/// What a chassis cluster member runs: who it is, how to reach the others, and the
/// redundancy groups with everything that moves with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// This process (`vpnd --node`).
    pub me: Member,
    /// The cluster link address of every member, this one included, in
    /// [`Member::ALL`] order.
    pub members: Vec<(Member, SocketAddr)>,
    /// This member's replicated log: `data-directory/<member>`, so that members
    /// sharing a host (tests, one machine's containers) never share a log.
    pub data_dir: PathBuf,
    /// Cluster-wide settings and redundancy groups. On a gateway node, interface
    /// monitors that name a reth are resolved to its child interface on that node; the
    /// witness forwards nothing and so monitors nothing (its groups carry no monitors).
    pub ha: ha::ClusterConfig,
    /// The redundant Ethernet interfaces as this node sees them; empty on the witness.
    pub reths: Vec<RethSpec>,
    /// The redundancy group of each IKE gateway (by gateway name): the group of the
    /// reth that carries its local address. Gateways and their SAs move with it.
    pub gateway_groups: Vec<(String, u8)>,
}

impl ClusterSpec {
    /// The redundancy group of IKE gateway `gateway`.
    pub fn gateway_group(&self, gateway: &str) -> Option<u8> {
        self.gateway_groups
            .iter()
            .find(|(g, _)| g == gateway)
            .map(|(_, n)| *n)
    }

    /// Puts every gateway of `spec` in its redundancy group: the gateway then waits for
    /// the group, and the dataplane fences the group's SAs ([`dataplane::fence`]) when
    /// this node's lease on it ends. (Manual-key VPNs are refused in a cluster.)
    pub fn assign_groups(&self, spec: &mut NodeSpec) {
        for g in &mut spec.gateways {
            g.group = self.gateway_group(&g.name);
        }
    }
}

/// One redundant Ethernet interface on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RethSpec {
    /// `rethN`.
    pub name: String,
    /// The redundancy group whose primary carries the addresses.
    pub group: u8,
    /// This node's child interface (`child-interface.node0` on node0).
    pub interface: String,
    /// The floating addresses (address, prefix length), IPv4 first.
    pub addresses: Vec<(IpAddr, u8)>,
}

/// The cluster part of a configuration for member `member` (`vpnd --node`), or `None`
/// for a standalone gateway.
///
/// The same file serves every member, so the member comes from the command line; a
/// file with `[chassis.cluster]` and no member, or a member with no
/// `[chassis.cluster]`, is refused rather than guessed at: either would start a node
/// that forwards traffic the other node may forward too.
pub fn cluster_spec(
    cfg: &Config,
    member: Option<Member>,
) -> Result<Option<ClusterSpec>, SpecError> {
    let (cluster, me) = match (&cfg.cluster, member) {
        (None, None) => return Ok(None),
        (Some(c), Some(m)) => (c, m),
        (Some(_), None) => {
            return Err(err(
                "chassis.cluster",
                "the configuration is for a chassis cluster: say which member this is with \
                 --node node0, node1 or witness (or VPND_NODE)",
            ));
        }
        (None, Some(m)) => {
            return Err(err(
                "--node",
                format!("{m} given, but the configuration has no [chassis.cluster]"),
            ));
        }
    };
    let reth_child = |name: &str| {
        cfg.reths
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.child_interface(me))
            .map(str::to_owned)
    };
    let groups = cluster
        .redundancy_groups
        .iter()
        .map(|g| {
            let mut out = ha::GroupConfig::new(g.id);
            out.priority = g.priority;
            out.preempt = g.preempt;
            if me.is_gateway() {
                out.interface_monitor = g
                    .interface_monitor
                    .iter()
                    .map(|(name, w)| (reth_child(name).unwrap_or_else(|| name.clone()), *w))
                    .collect();
                out.ip_monitor = g
                    .ip_monitoring
                    .iter()
                    .map(|m| ha::IpMonitor {
                        address: m.address,
                        weight: m.weight,
                        interval: m.interval,
                        threshold: m.threshold,
                    })
                    .collect();
            }
            if let Some(w) = g.spu_weight {
                out.spu_weight = w;
            }
            out
        })
        .collect();
    let reths = cfg
        .reths
        .iter()
        .filter_map(|r| {
            Some(RethSpec {
                name: r.name.clone(),
                group: r.redundancy_group,
                interface: r.child_interface(me)?.to_owned(),
                addresses: r.addresses().map(|a| (a.address, a.prefix_len)).collect(),
            })
        })
        .collect();
    let group_of = |local: Option<IpAddr>| {
        local
            .and_then(|a| cfg.reth_with_address(a))
            .map(|r| r.redundancy_group)
    };
    Ok(Some(ClusterSpec {
        me,
        members: cluster.control_addresses.clone(),
        data_dir: cluster.data_directory.join(me.to_string()),
        ha: ha::ClusterConfig {
            cluster_id: cluster.cluster_id,
            heartbeat_interval: cluster.heartbeat_interval,
            heartbeat_threshold: cluster.heartbeat_threshold,
            groups,
        },
        reths,
        gateway_groups: cfg
            .gateways
            .iter()
            .filter_map(|g| Some((g.name.clone(), group_of(g.local_address)?)))
            .collect(),
    }))
}

/// The gateways by name, and how many VPNs lead to each static peer address, looked
/// up once per VPN: searching the lists for every VPN made a configuration of 10,000
/// peers (bench/compare's scale test) take hours to load, INITIAL_CONTACT's count being
/// cubic in the number of VPNs.
struct Peers<'a> {
    gateways: HashMap<&'a str, &'a model::Gateway>,
    vpns_per_address: HashMap<IpAddr, usize>,
}

impl<'a> Peers<'a> {
    fn of(cfg: &'a Config) -> Self {
        let gateways: HashMap<&str, &model::Gateway> =
            cfg.gateways.iter().map(|g| (g.name.as_str(), g)).collect();
        let mut vpns_per_address: HashMap<IpAddr, usize> = HashMap::new();
        for v in &cfg.vpns {
            if let Some(Remote::Static(addrs)) = gateways.get(v.gateway.as_str()).map(|g| &g.remote)
            {
                for (i, a) in addrs.iter().enumerate() {
                    // A VPN counts once per address, even if its gateway lists it twice.
                    if !addrs[..i].contains(a) {
                        *vpns_per_address.entry(*a).or_default() += 1;
                    }
                }
            }
        }
        Peers {
            gateways,
            vpns_per_address,
        }
    }
}

fn gateway_spec(
    cfg: &Config,
    peers: &Peers<'_>,
    vpn: &model::Vpn,
) -> Result<GatewaySpec, SpecError> {
    let path = format!("security.ipsec.vpn.{}", vpn.name);
    let g = peers
        .gateways
        .get(vpn.gateway.as_str())
        .copied()
        .ok_or_else(|| err(&path, format!("gateway {} is not defined", vpn.gateway)))?;
    let gpath = format!("security.ike.gateway.{}", g.name);
    let local = g.local_address.ok_or_else(|| {
        err(
            &gpath,
            "local-address is required (the address IKE and ESP are sent from)",
        )
    })?;
    // A dial-up gateway has no peer address until a peer calls: each peer gets its own
    // gateway actor from this template (`runtime::dialup`).
    let (remote, dynamic) = match &g.remote {
        Remote::Static(addrs) => (
            *addrs
                .first()
                .ok_or_else(|| err(&gpath, "no peer address"))?,
            None,
        ),
        Remote::Dynamic(m) => (
            match local {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            },
            Some(m),
        ),
    };
    let (auth, peer_auth, subject) = match &g.auth {
        Auth::Psk(p) => {
            let psk = SecretBytes::from_slice(p.expose());
            (LocalAuth::Psk(psk.clone()), PeerAuth::Psk(psk), None)
        }
        Auth::Certificate(paths) => {
            let (credential, trusted, subject) = load_certificates(paths, &gpath)?;
            check_auth_methods(g, credential.key().kind(), &gpath)?;
            (
                LocalAuth::Certificate(Arc::new(credential)),
                PeerAuth::Certificate(Arc::new(trusted)),
                Some(subject),
            )
        }
    };
    let ike_suites = g
        .ike_proposals
        .iter()
        .map(|p| {
            let bad = |what: &str| err(format!("{gpath} (proposal {})", p.name), what);
            Ok(IkeSuite {
                encr: Encr::from_transform(p.encr.id, p.encr.key_bits)
                    .map_err(|e| bad(&e.to_string()))?,
                integ: p
                    .integ
                    .map(Integ::from_iana)
                    .transpose()
                    .map_err(|e| bad(&e.to_string()))?,
                prf: Prf::from_iana(p.prf).map_err(|e| bad(&e.to_string()))?,
                dh: DhGroup::from_iana(p.dh_group).map_err(|e| bad(&e.to_string()))?,
            })
        })
        .collect::<Result<Vec<_>, SpecError>>()?;
    let child_suites = vpn
        .ipsec_proposals
        .iter()
        .map(|p| {
            let bad = |what: &str| err(format!("{path} (proposal {})", p.name), what);
            let integ = p
                .integ
                .map(Integ::from_iana)
                .transpose()
                .map_err(|e| bad(&e.to_string()))?;
            let esn = vpn.options.esn;
            match (p.protocol, p.encr) {
                (model::IpsecProtocol::Esp, Some(encr)) => Ok(ChildSuite::Esp {
                    encr: Encr::from_transform(encr.id, encr.key_bits)
                        .map_err(|e| bad(&e.to_string()))?,
                    integ,
                    esn,
                }),
                (model::IpsecProtocol::Ah, None) => Ok(ChildSuite::Ah {
                    integ: integ.ok_or_else(|| bad("AH needs an authentication-algorithm"))?,
                    esn,
                }),
                // Validation pairs the protocol with its transforms; this is a guard.
                (model::IpsecProtocol::Esp, None) => Err(bad("ESP needs an encryption-algorithm")),
                (model::IpsecProtocol::Ah, Some(_)) => Err(bad("AH does not encrypt")),
            }
        })
        .collect::<Result<Vec<_>, SpecError>>()?;
    let (local_ts, remote_ts) = if vpn.traffic_selectors.is_empty() {
        // Route-based without selectors: everything, the routes decide what enters.
        let any = |v6| {
            IpSelector::any(if v6 {
                AddrRange::V6 {
                    start: Ipv6Addr::UNSPECIFIED,
                    end: Ipv6Addr::from(u128::MAX),
                }
            } else {
                AddrRange::V4 {
                    start: Ipv4Addr::UNSPECIFIED,
                    end: Ipv4Addr::BROADCAST,
                }
            })
        };
        (vec![any(false)], vec![any(false)])
    } else {
        let sel = |p: &dataplane::selector::IpPrefix| {
            IpSelector::any(match (p.network(), p.last()) {
                (IpAddr::V4(start), IpAddr::V4(end)) => AddrRange::V4 { start, end },
                (IpAddr::V6(start), IpAddr::V6(end)) => AddrRange::V6 { start, end },
                _ => AddrRange::V4 {
                    start: Ipv4Addr::UNSPECIFIED,
                    end: Ipv4Addr::UNSPECIFIED,
                },
            })
        };
        (
            vpn.traffic_selectors
                .iter()
                .map(|t| sel(&t.local))
                .collect(),
            vpn.traffic_selectors
                .iter()
                .map(|t| sel(&t.remote))
                .collect(),
        )
    };
    let local_id = match (&g.local_id, subject) {
        // With a certificate the wire ID is the subject's DER as the certificate holds
        // it; a configured DN only has to name the same subject.
        (Some(model::Identity::DistinguishedName(dn)), Some(subject)) => {
            let want = Identity::DerAsn1Dn(
                dn_der(dn)
                    .map_err(|e| err(&gpath, format!("local-identity distinguished-name: {e}")))?,
            );
            let have = Identity::DerAsn1Dn(subject.der);
            if !identity_matches(&want, &have) {
                return Err(err(
                    &gpath,
                    format!(
                        "local-identity distinguished-name \"{dn}\" is not the subject of \
                         the local certificate (\"{}\")",
                        subject.text
                    ),
                ));
            }
            have
        }
        (Some(model::Identity::DistinguishedName(_)), None) => {
            return Err(err(
                &gpath,
                "a distinguished-name local-identity needs certificate authentication \
                 (its wire form is the DER of the certificate's subject)",
            ));
        }
        (Some(id), _) => identity(id, &gpath)?,
        // Junos: with a certificate, the local identity defaults to its subject DN.
        (None, Some(subject)) => Identity::DerAsn1Dn(subject.der),
        (None, None) => address_identity(local),
    };
    let mut ike = IkeConfig::with_auth(local_id, auth, peer_auth);
    ike.remote_id = match dynamic {
        Some(m) => Some(identity(&m.identity, &gpath)?),
        None => g
            .remote_id
            .as_ref()
            .map(|id| identity(id, &gpath))
            .transpose()?,
    };
    ike.remote_id_group = dynamic.is_some_and(|m| m.user_type == model::IkeUserType::GroupIkeId);
    ike.address_pool = g
        .address_pool
        .as_deref()
        .map(|name| address_pool(cfg, name, &gpath))
        .transpose()?;
    ike.ike_suites = ike_suites;
    ike.local_ts = local_ts;
    ike.remote_ts = remote_ts;
    ike.nat_keepalive = g.nat_keepalive;
    if g.force_encap
        && child_suites
            .iter()
            .any(|s| matches!(s, ChildSuite::Ah { .. }))
    {
        // RFC 3948 encapsulates ESP only; AH authenticates the outer addresses a NAT
        // rewrites (RFC 3715 §2.1), so there is no AH across a real or claimed NAT.
        return Err(err(
            &path,
            format!(
                "an AH proposal cannot be used with gateway {}'s force-udp-encapsulation \
                 (AH has no UDP encapsulation)",
                g.name
            ),
        ));
    }
    ike.force_encap = g.force_encap;
    ike.child_suites = child_suites;
    if let Some(dpd) = &g.dpd {
        ike.dpd_interval = Some(dpd.interval);
        ike.retransmit = Retransmit {
            max_tries: u32::from(dpd.threshold),
            ..Retransmit::default()
        };
    }
    ike.ike_lifetime = g.ike_proposals.first().map(|p| p.lifetime);
    ike.child_lifetime = vpn.ipsec_proposals.first().map(|p| ChildLifetime {
        // Junos configures the hard lifetime; rekey well before it.
        soft: p.lifetime.mul_f64(0.9),
        hard: p.lifetime,
    });
    // RFC 7296 §2.4: INITIAL_CONTACT asserts that the SA is the only one between the
    // two identities. A gateway holds one IKE SA at a time and sends it only when it
    // holds none, which holds for the node as a whole only if no other VPN has an IKE
    // SA with the same peer.
    ike.initial_contact = peers.vpns_per_address.get(&remote) == Some(&1);
    ike.key_log = cfg.key_log.is_some();
    ike.child_mode = match vpn.options.mode {
        Mode::Tunnel => IpsecMode::Tunnel,
        Mode::Transport => IpsecMode::Transport,
    };
    ike.child_pfs = vpn
        .pfs_group
        .map(DhGroup::from_iana)
        .transpose()
        .map_err(|e| err(&path, format!("perfect-forward-secrecy: {e}")))?;
    let monitor = vpn
        .monitor
        .as_ref()
        .map(|m| monitor_spec(cfg, vpn, m, remote, dynamic.is_some(), &path))
        .transpose()?;
    Ok(GatewaySpec {
        name: g.name.clone(),
        vpn: vpn.name.clone(),
        monitor,
        local,
        remote,
        ike,
        binding: vpn.binding.tunnel_id(),
        // A dial-up gateway answers; it has nobody to call.
        initiate: dynamic.is_none() && vpn.establish == Establish::Immediately,
        on_traffic: dynamic.is_none() && vpn.establish != Establish::ResponderOnly,
        dynamic: dynamic.is_some(),
        group: None,
        key_log: cfg.key_log.as_ref().map(KeyLog::new),
        esp: EspOptions {
            replay_window: vpn.options.anti_replay.unwrap_or(0),
            df_bit: vpn.options.df_bit,
            copy_dscp: vpn.options.copy_outer_dscp,
            lifetime_bytes: vpn
                .ipsec_proposals
                .first()
                .and_then(|p| p.lifetime_kilobytes)
                .map(|kb| kb.saturating_mul(1024)),
            ..EspOptions::default()
        },
    })
}

fn address_identity(addr: IpAddr) -> Identity {
    match addr {
        IpAddr::V4(a) => Identity::Ipv4(a),
        IpAddr::V6(a) => Identity::Ipv6(a),
    }
}

fn identity(id: &model::Identity, path: &str) -> Result<Identity, SpecError> {
    Ok(match id {
        model::Identity::Inet(a) => Identity::Ipv4(*a),
        model::Identity::Inet6(a) => Identity::Ipv6(*a),
        model::Identity::Hostname(h) => Identity::Fqdn(h.clone()),
        model::Identity::UserAtHostname(u) => Identity::Rfc822(u.clone()),
        model::Identity::KeyId(k) => Identity::KeyId(k.clone()),
        // Our own encoding of the name: the engine compares DNs as names, not octets,
        // so it matches the peer's DER whatever string types its CA chose.
        model::Identity::DistinguishedName(dn) => Identity::DerAsn1Dn(
            dn_der(dn).map_err(|e| err(path, format!("distinguished-name: {e}")))?,
        ),
    })
}

/// `vpn-monitor` of a route-based VPN: probes leave through its `st0` device.
fn monitor_spec(
    cfg: &Config,
    vpn: &model::Vpn,
    m: &model::VpnMonitor,
    remote: IpAddr,
    dynamic: bool,
    path: &str,
) -> Result<MonitorSpec, SpecError> {
    let key = format!("{path}.vpn-monitor");
    let Binding::Route { unit } = vpn.binding else {
        return Err(err(
            key,
            "needs a route-based VPN (bind-interface): probes are sent through its st0 device",
        ));
    };
    let destination = match m.destination {
        Some(IpAddr::V4(a)) => Some(a),
        None if remote.is_ipv4() || dynamic => None,
        Some(IpAddr::V6(_)) | None => {
            return Err(err(
                key,
                "IPv6 probes are not supported by this daemon version: set an IPv4 destination-ip",
            ));
        }
    };
    Ok(MonitorSpec {
        destination,
        source_interface: m.source_interface.clone(),
        device: format!("st0.{unit}"),
        interval: cfg.vpn_monitor_options.interval,
        threshold: cfg.vpn_monitor_options.threshold,
        optimized: m.optimized,
    })
}

/// The IPv4 part of pool `name` for the engine's CP replies (IPv6 pools are not
/// handed out yet: refused rather than silently ignored).
fn address_pool(cfg: &Config, name: &str, path: &str) -> Result<SharedPool, SpecError> {
    let pool = cfg
        .pool(name)
        .ok_or_else(|| err(path, format!("address pool {name} is not defined")))?;
    if pool.inet6.is_some() {
        return Err(err(
            format!("security.address-pools.{name}.family.inet6"),
            "IPv6 address assignment is not supported by this daemon version",
        ));
    }
    let inet = pool.inet.as_ref().ok_or_else(|| {
        err(
            format!("security.address-pools.{name}"),
            "no family.inet range to assign from",
        )
    })?;
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    };
    let (Some(low), Some(high)) = (v4(inet.low), v4(inet.high)) else {
        return Err(err(
            format!("security.address-pools.{name}.family.inet"),
            "the range must be IPv4",
        ));
    };
    let bits = u32::from(inet.network.prefix_len());
    let netmask = Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0));
    let dns = inet.dns_servers.iter().copied().filter_map(v4).collect();
    Ok(Arc::new(std::sync::Mutex::new(AddressPool::new(
        low, high, netmask, dns,
    ))))
}

/// The local certificate's subject: DER for the wire, text for messages.
struct Subject {
    der: Vec<u8>,
    text: String,
}

/// Loads `certificate.*`: our key and chain (end entity first, then any
/// intermediates of the same file), and the CAs peers must chain to. Errors name the
/// file. Key bytes are wiped after parsing.
fn load_certificates(
    paths: &model::CertificatePaths,
    gpath: &str,
) -> Result<(Credential, TrustStore, Subject), SpecError> {
    let read = |key: &str, path: &Path| {
        std::fs::read(path)
            .map(Zeroizing::new)
            .map_err(|e| err(gpath, format!("certificate.{key} {}: {e}", path.display())))
    };
    let bad = |key: &str, path: &Path, e: &dyn std::fmt::Display| {
        err(gpath, format!("certificate.{key} {}: {e}", path.display()))
    };
    let (cert_path, key_path) = (&paths.local_certificate, &paths.private_key);
    let chain = certs_from_pem(&read("local-certificate", cert_path)?)
        .map_err(|e| bad("local-certificate", cert_path, &e))?;
    let subject = chain
        .first()
        .and_then(|der| match X509Certificate::from_der(der) {
            Ok((_, c)) => Some(Subject {
                der: c.subject().as_raw().to_vec(),
                text: c.subject().to_string(),
            }),
            Err(_) => None,
        })
        .ok_or_else(|| bad("local-certificate", cert_path, &"not an X.509 certificate"))?;
    let key = PrivateKey::from_pem(&read("private-key", key_path)?, &SystemRandom::new())
        .map_err(|e| bad("private-key", key_path, &e))?;
    let credential = Credential::new(key, chain).map_err(|e| {
        err(
            gpath,
            format!(
                "certificate.private-key {} and certificate.local-certificate {}: {e}",
                key_path.display(),
                cert_path.display()
            ),
        )
    })?;
    let mut trusted = TrustStore::new();
    for ca in &paths.trusted_ca {
        trusted
            .add_ca_pem(&read("trusted-ca", ca)?)
            .map_err(|e| bad("trusted-ca", ca, &e))?;
    }
    Ok((credential, trusted, subject))
}

/// The proposals' `authentication-method` must fit the key: the engine signs with
/// RFC 7427 (or RFC 4754 towards old peers) using whatever key it is given, so a
/// mismatch would silently sign with a method the administrator did not choose.
fn check_auth_methods(g: &model::Gateway, key: KeyKind, gpath: &str) -> Result<(), SpecError> {
    use model::AuthMethod as M;
    for p in &g.ike_proposals {
        let fits = match p.auth_method {
            M::PreSharedKeys => false,
            M::RsaSignatures => key == KeyKind::Rsa,
            M::EcdsaSignatures256 => key == KeyKind::EcdsaP256,
            M::EcdsaSignatures384 => key == KeyKind::EcdsaP384,
        };
        if !fits {
            return Err(err(
                format!("{gpath} (proposal {})", p.name),
                format!(
                    "authentication-method {:?} does not fit the {key:?} private key",
                    p.auth_method
                ),
            ));
        }
    }
    Ok(())
}

/// DER of a distinguished name written as `C=US, O=Example, CN=gw.example.net`.
///
/// The order is the DER order, outermost first, as strongSwan and `openssl x509
/// -subject` write it (not RFC 4514's reversed order). Commas and plus signs inside a
/// value are escaped with a backslash; attributes are the usual short names. Values
/// are encoded as UTF8String (PrintableString for C): the engine compares DNs by
/// attribute and value, not by string type, so this need not match the CA's choices.
fn dn_der(text: &str) -> Result<Vec<u8>, String> {
    const ATTRS: &[(&str, &[u8])] = &[
        ("CN", &[0x55, 0x04, 0x03]),
        ("SN", &[0x55, 0x04, 0x04]),
        ("SERIALNUMBER", &[0x55, 0x04, 0x05]),
        ("C", &[0x55, 0x04, 0x06]),
        ("L", &[0x55, 0x04, 0x07]),
        ("ST", &[0x55, 0x04, 0x08]),
        ("STREET", &[0x55, 0x04, 0x09]),
        ("O", &[0x55, 0x04, 0x0a]),
        ("OU", &[0x55, 0x04, 0x0b]),
        ("T", &[0x55, 0x04, 0x0c]),
        ("TITLE", &[0x55, 0x04, 0x0c]),
        ("GN", &[0x55, 0x04, 0x2a]),
        (
            "DC",
            &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        ),
        (
            "UID",
            &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        ),
        ("E", &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
        (
            "EMAILADDRESS",
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        ),
    ];
    let mut rdns = Vec::new();
    for rdn in split_unescaped(text, ',') {
        let mut set = Vec::new();
        for atv in split_unescaped(&rdn, '+') {
            let (key, value) = atv
                .split_once('=')
                .ok_or_else(|| format!("\"{}\" is not ATTRIBUTE=value", atv.trim()))?;
            let key = key.trim().to_ascii_uppercase();
            let oid = ATTRS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, oid)| *oid)
                .ok_or_else(|| format!("unknown attribute \"{key}\""))?;
            let value = unescape(value.trim());
            if value.is_empty() {
                return Err(format!("{key} has an empty value"));
            }
            let string_tag = if key == "C" { 0x13 } else { 0x0c };
            let mut body = der_tlv(0x06, oid);
            body.extend(der_tlv(string_tag, value.as_bytes()));
            set.extend(der_tlv(0x30, &body));
        }
        rdns.extend(der_tlv(0x31, &set));
    }
    if rdns.is_empty() {
        return Err("empty name".into());
    }
    Ok(der_tlv(0x30, &rdns))
}

/// Splits at `sep` where it is not escaped with a backslash (escapes are kept).
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if c == sep && !escaped {
            parts.push(String::new());
            continue;
        }
        escaped = c == '\\' && !escaped;
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts.retain(|p| !p.trim().is_empty());
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | octets.len() as u8);
        out.extend(octets);
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
        PKCS_ECDSA_P384_SHA384, SanType,
    };

    use super::*;

    /// A CA and a P-256 (or P-384) certificate for a.test with subject
    /// `C=US, O=Example Corp, CN=a.test`, written as PEM files under a fresh directory.
    fn pki(tag: &str, p384: bool) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spec-cert-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "Spec CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let alg = if p384 {
            &PKCS_ECDSA_P384_SHA384
        } else {
            &PKCS_ECDSA_P256_SHA256
        };
        let key = KeyPair::generate_for(alg).unwrap();
        let mut leaf = CertificateParams::new(vec!["a.test".into()]).unwrap();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CountryName, "US");
        leaf.distinguished_name
            .push(DnType::OrganizationName, "Example Corp");
        leaf.distinguished_name.push(DnType::CommonName, "a.test");
        leaf.subject_alt_names = vec![SanType::DnsName("a.test".try_into().unwrap())];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("a.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
        dir
    }

    fn config(dir: &Path, method: &str, identities: &str) -> Result<NodeSpec, SpecError> {
        let d = dir.display();
        let text = format!(
            "[security.ike.proposal.p1]
authentication-method = \"{method}\"
dh-group = \"group19\"
encryption-algorithm = \"aes-128-gcm\"
authentication-algorithm = \"sha-256\"

[security.ike.policy.pol]
proposals = [\"p1\"]
certificate.local-certificate = \"{d}/a.pem\"
certificate.private-key = \"{d}/a.key\"
certificate.trusted-ca = [\"{d}/ca.pem\"]

[security.ike.gateway.gw]
ike-policy = \"pol\"
address = [\"192.0.2.2\"]
local-address = \"192.0.2.1\"
version = \"v2-only\"
{identities}

[security.ipsec.proposal.esp1]
protocol = \"esp\"
encryption-algorithm = \"aes-128-gcm\"

[security.ipsec.policy.ipol]
proposals = [\"esp1\"]

[security.ipsec.vpn.v]
bind-interface = \"st0.0\"
ike.gateway = \"gw\"
ike.ipsec-policy = \"ipol\"

[interfaces.st0.unit.0]
family.inet.address = \"10.255.0.1/30\"
"
        );
        let cfg = Config::parse(&text, "test.toml").unwrap();
        NodeSpec::from_config(&cfg, 1)
    }

    fn subject_of(dir: &Path) -> Vec<u8> {
        let chain = certs_from_pem(&std::fs::read(dir.join("a.pem")).unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
        cert.subject().as_raw().to_vec()
    }

    #[test]
    fn ipv6_runs_only_on_units_that_carry_it() {
        let mut text = String::from(
            "[security.ike.proposal.p1]
authentication-method = \"pre-shared-keys\"
dh-group = \"group19\"
encryption-algorithm = \"aes-128-gcm\"
authentication-algorithm = \"sha-256\"

[security.ike.policy.pol]
proposals = [\"p1\"]
pre-shared-key.ascii-text = \"not-a-secret-at-all\"

[security.ipsec.proposal.esp1]
protocol = \"esp\"
encryption-algorithm = \"aes-128-gcm\"

[security.ipsec.policy.ipol]
proposals = [\"esp1\"]

[routing-options.static.route.\"2001:db8:3::/48\"]
next-hop = \"st0.3\"
",
        );
        for (unit, local, remote) in [
            (0, "10.1.0.0/16", "10.2.0.0/16"),
            (1, "2001:db8:1::/48", "2001:db8:2::/48"),
        ] {
            text += &format!(
                "
[security.ike.gateway.gw{unit}]
ike-policy = \"pol\"
address = [\"192.0.2.{peer}\"]
local-address = \"192.0.2.1\"
version = \"v2-only\"

[security.ipsec.vpn.v{unit}]
bind-interface = \"st0.{unit}\"
ike.gateway = \"gw{unit}\"
ike.ipsec-policy = \"ipol\"
traffic-selector.ts.local-ip = \"{local}\"
traffic-selector.ts.remote-ip = \"{remote}\"
",
                peer = unit + 2
            );
        }
        for (unit, family) in [(0, "inet"), (1, "inet"), (2, "inet6"), (3, "inet")] {
            let addr = if family == "inet" {
                format!("10.255.{unit}.1/30")
            } else {
                "2001:db8:ff::1/64".to_owned()
            };
            text +=
                &format!("\n[interfaces.st0.unit.{unit}]\nfamily.{family}.address = \"{addr}\"\n");
        }
        let cfg = Config::parse(&text, "test.toml").unwrap();
        let spec = NodeSpec::from_config(&cfg, 1).unwrap();
        let ipv6: Vec<(u32, bool)> = spec.tunnels.iter().map(|t| (t.unit, t.ipv6)).collect();
        // 0: IPv4 only; 1: IPv6 selectors; 2: an inet6 address; 3: an IPv6 route.
        assert_eq!(ipv6, [(0, false), (1, true), (2, true), (3, true)]);
    }

    #[test]
    fn certificate_policy_maps_to_certificate_auth_with_the_subject_as_id() {
        let dir = pki("map", false);
        let spec = config(
            &dir,
            "ecdsa-signatures-256",
            "remote-identity.distinguished-name = \"C=US, O=Other Corp, CN=b.test\"",
        )
        .unwrap();
        let ike = &spec.gateways[0].ike;
        assert!(
            matches!(&ike.auth, LocalAuth::Certificate(c) if c.key().kind() == KeyKind::EcdsaP256)
        );
        assert!(matches!(&ike.peer_auth, PeerAuth::Certificate(s) if s.len() == 1));
        // No local-identity: the certificate's subject, as its DER.
        assert_eq!(ike.local_id, Identity::DerAsn1Dn(subject_of(&dir)));
        let Some(Identity::DerAsn1Dn(remote)) = &ike.remote_id else {
            panic!("remote DN expected: {:?}", ike.remote_id);
        };
        let (_, name) = x509_parser::x509::X509Name::from_der(remote).unwrap();
        assert_eq!(name.to_string(), "C=US, O=Other Corp, CN=b.test");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn configured_local_dn_must_name_the_certificate_subject() {
        let dir = pki("localdn", false);
        // Same name in other spacing and case: accepted, and the wire ID is the
        // certificate's own DER.
        let spec = config(
            &dir,
            "ecdsa-signatures-256",
            "local-identity.distinguished-name = \"c=US,o=example  corp, cn=A.test\"",
        )
        .unwrap();
        assert_eq!(
            spec.gateways[0].ike.local_id,
            Identity::DerAsn1Dn(subject_of(&dir))
        );
        let e = config(
            &dir,
            "ecdsa-signatures-256",
            "local-identity.distinguished-name = \"C=US, O=Example Corp, CN=b.test\"",
        )
        .unwrap_err();
        assert!(e.reason.contains("is not the subject"), "{e}");
        assert!(e.reason.contains("CN=a.test"), "{e}");
        // Other identity types are sent as configured (the peer checks them against
        // the certificate's SANs).
        let spec = config(
            &dir,
            "ecdsa-signatures-256",
            "local-identity.hostname = \"a.test\"",
        )
        .unwrap();
        assert_eq!(
            spec.gateways[0].ike.local_id,
            Identity::Fqdn("a.test".into())
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn authentication_method_must_fit_the_key() {
        let dir = pki("method", true);
        config(&dir, "ecdsa-signatures-384", "").unwrap();
        for method in ["ecdsa-signatures-256", "rsa-signatures"] {
            let e = config(&dir, method, "").unwrap_err();
            assert!(e.object.contains("proposal p1"), "{e}");
            assert!(e.reason.contains("EcdsaP384"), "{e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn certificate_errors_name_the_file() {
        let dir = pki("errors", false);
        let key = dir.join("a.key");
        let good_key = std::fs::read(&key).unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let e = config(&dir, "ecdsa-signatures-256", "").unwrap_err();
        assert!(
            e.reason.starts_with("certificate.private-key ") && e.reason.contains("a.key"),
            "{e}"
        );
        // A key that is not the certificate's.
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let e = config(&dir, "ecdsa-signatures-256", "").unwrap_err();
        assert!(e.reason.contains("does not match"), "{e}");
        std::fs::write(&key, good_key).unwrap();
        std::fs::write(dir.join("ca.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let e = config(&dir, "ecdsa-signatures-256", "").unwrap_err();
        assert!(
            e.reason.starts_with("certificate.trusted-ca ") && e.reason.contains("ca.pem"),
            "{e}"
        );
        std::fs::remove_file(dir.join("a.pem")).unwrap();
        let e = config(&dir, "ecdsa-signatures-256", "").unwrap_err();
        assert!(
            e.reason.starts_with("certificate.local-certificate ") && e.reason.contains("a.pem"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dn_text_to_der() {
        let der = dn_der("C=US, O=Example\\, Inc., CN=gw+SERIALNUMBER=7").unwrap();
        let (rest, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(name.iter().count(), 3);
        assert_eq!(
            name.to_string(),
            "C=US, O=Example, Inc., CN=gw + serialNumber=7"
        );
        for bad in ["", "CN", "XX=1", "CN="] {
            assert!(dn_der(bad).is_err(), "{bad}");
        }
        let long = format!("CN={}", "x".repeat(300));
        let der = dn_der(&long).unwrap();
        assert_eq!(&der[..2], &[0x30, 0x82]);
        X509Certificate::from_der(&der).unwrap_err();
        x509_parser::x509::X509Name::from_der(&der).unwrap();
    }
}
