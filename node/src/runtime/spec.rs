//! From the validated configuration to what the runtime starts: the one place where
//! configuration names meet engine types.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ike::crypto::{DhGroup, Encr, Integ, Prf, SecretBytes};
use ike::engine::{ChildLifetime, ChildSuite, IkeConfig, IkeSuite, Retransmit};
use ike::wire::{AddrRange, Identity, IpSelector};

use super::{EspOptions, GatewaySpec, ManualSpec, NodeSpec, TunnelSpec};
use crate::config::model::{self, Auth, Binding, Config, Establish, NextHop, Remote};

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
        for v in &cfg.vpns {
            if let Binding::Route { unit } = v.binding {
                tunnel(&mut tunnels, unit);
            }
        }
        for m in &cfg.manual_vpns {
            if let Binding::Route { unit } = m.binding {
                tunnel(&mut tunnels, unit);
            }
        }

        let gateways = cfg
            .vpns
            .iter()
            .map(|v| gateway_spec(cfg, v))
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
        })
    }
}

fn gateway_spec(cfg: &Config, vpn: &model::Vpn) -> Result<GatewaySpec, SpecError> {
    let path = format!("security.ipsec.vpn.{}", vpn.name);
    let g = cfg
        .gateways
        .iter()
        .find(|g| g.name == vpn.gateway)
        .ok_or_else(|| err(&path, format!("gateway {} is not defined", vpn.gateway)))?;
    let gpath = format!("security.ike.gateway.{}", g.name);
    let remote = match &g.remote {
        Remote::Static(addrs) => *addrs
            .first()
            .ok_or_else(|| err(&gpath, "no peer address"))?,
        Remote::Dynamic(_) => {
            return Err(err(
                &gpath,
                "dynamic peers are not supported by this daemon version",
            ));
        }
    };
    let local = g.local_address.ok_or_else(|| {
        err(
            &gpath,
            "local-address is required (the address IKE and ESP are sent from)",
        )
    })?;
    let psk = match &g.auth {
        Auth::Psk(p) => SecretBytes::from_slice(p.expose()),
        Auth::Certificate(_) => {
            return Err(err(
                &gpath,
                "certificate authentication is not supported by this daemon version",
            ));
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
            let encr = p
                .encr
                .ok_or_else(|| bad("AH is not negotiated by IKE here"))?;
            Ok(ChildSuite {
                encr: Encr::from_transform(encr.id, encr.key_bits)
                    .map_err(|e| bad(&e.to_string()))?,
                integ: p
                    .integ
                    .map(Integ::from_iana)
                    .transpose()
                    .map_err(|e| bad(&e.to_string()))?,
                esn: vpn.options.esn,
            })
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
    let local_id = match &g.local_id {
        Some(id) => identity(id, &gpath)?,
        None => address_identity(local),
    };
    let mut ike = IkeConfig::new(local_id, psk);
    ike.remote_id = g
        .remote_id
        .as_ref()
        .map(|id| identity(id, &gpath))
        .transpose()?;
    ike.ike_suites = ike_suites;
    ike.child_suites = child_suites;
    ike.local_ts = local_ts;
    ike.remote_ts = remote_ts;
    ike.nat_keepalive = g.nat_keepalive;
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
    ike.child_pfs = vpn
        .pfs_group
        .map(DhGroup::from_iana)
        .transpose()
        .map_err(|e| err(&path, format!("perfect-forward-secrecy: {e}")))?;
    Ok(GatewaySpec {
        name: g.name.clone(),
        vpn: vpn.name.clone(),
        local,
        remote,
        ike,
        binding: vpn.binding.tunnel_id(),
        initiate: vpn.establish == Establish::Immediately,
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
        // The wire form is the DER of the name, which only a certificate gives exactly.
        model::Identity::DistinguishedName(_) => {
            return Err(err(
                path,
                "distinguished-name identities need certificate authentication, \
                 which this daemon version does not run yet",
            ));
        }
    })
}
