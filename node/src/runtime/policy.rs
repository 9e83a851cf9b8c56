//! Policy-based VPNs (Junos `then permit tunnel ipsec-vpn NAME`) without kernel XFRM.
//!
//! Junos classifies transit traffic by security policy in its flow module; this node
//! has no kernel IPsec policy to lean on, so cleartext reaches the dataplane the same
//! way it does for route-based VPNs, through a TUN device:
//!
//! - One device for all policy traffic, [`POLICY_TUNNEL_NAME`] (`st0.policy`). Junos
//!   shows no interface for policy-based VPNs; the name says it belongs with the `st0`
//!   units without being one (a unit is numbered, so no configuration can name it), and
//!   it is not `pp0`, which on Junos is PPPoE.
//! - vpnd routes into it the destination prefixes of every `permit tunnel` policy. A
//!   destination of `any` is not routed (a default route into the device would also
//!   capture IKE and ESP to the peers); such traffic must be routed there by the
//!   operator. The peer's inner networks are those destinations: the VPN's traffic
//!   selectors are the policies' source × destination pairs (see
//!   `config::validate`), which the peer can only narrow.
//! - The engine looks every packet read from the device up in the SPD built here from
//!   `[security.policies]` in configuration order (zone pairs are not matched: the node
//!   has no zones, every policy applies to what the kernel routed into the device):
//!   `permit tunnel ipsec-vpn V` protects with V's binding; `deny` and `reject` discard
//!   (counted as `policy_discard`; `reject` sends no ICMP or RST); `permit` without
//!   tunnel bypasses, which on this device means dropped (`policy_bypass`): the kernel
//!   already routed the packet into the device and would route it back. A plain
//!   `permit` thus only keeps a later tunnel policy from encrypting that traffic,
//!   which is what it does on Junos too. Packets no policy selects are dropped
//!   (`no_policy`), never tunnelled.
//! - The SAs of a policy-based VPN carry its binding; the dataplane delivers what they
//!   decrypt into the policy device, after checking the negotiated selectors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::selector::{IpPrefix, IpRange, Selector};
use dataplane::spd::{Policy, PolicyAction, Spd, SpdError};
use dataplane::worker::{DataplaneConfig, DataplaneHandle, TunnelConfig};

use super::net;
use super::spec::{DEFAULT_TUNNEL_MTU, SpecError};
use crate::config::model::{self, Binding, Config, POLICY_BINDING_BASE, SecurityPolicy};

/// The device policy-based VPNs send and receive cleartext through.
pub const POLICY_TUNNEL_NAME: &str = "st0.policy";

/// The dataplane id of [`POLICY_TUNNEL_NAME`]: the first policy binding, which no VPN
/// gets (they are numbered from one above it), and above every `st0` unit.
pub const POLICY_TUNNEL: dataplane::sa::TunnelId = POLICY_BINDING_BASE;

/// What a node with policy-based VPNs adds to the dataplane and the kernel.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// MTU of the policy device.
    pub mtu: u32,
    /// The security policies as the engine applies them, first match wins.
    pub spd: Spd,
    /// Destination prefixes routed into the policy device.
    pub routes: Vec<IpPrefix>,
}

impl PolicySpec {
    /// The policy tunnel of `cfg`, or `None` when no VPN is policy-based (then nothing
    /// reaches policies, and no device is created).
    pub fn from_config(cfg: &Config) -> Result<Option<PolicySpec>, SpecError> {
        let policy_based = cfg
            .vpns
            .iter()
            .map(|v| &v.binding)
            .chain(cfg.manual_vpns.iter().map(|m| &m.binding))
            .any(|b| matches!(b, Binding::Policy { .. }));
        // Dial-up clients' traffic is steered per client through the device too
        // (`runtime::dialup`).
        let dialup = cfg.vpns.iter().any(|v| {
            cfg.gateway(&v.gateway)
                .is_some_and(|g| matches!(g.remote, model::Remote::Dynamic(_)))
        });
        if !policy_based && !dialup {
            return Ok(None);
        }
        let mut spd = Spd::new();
        let mut routes: Vec<IpPrefix> = Vec::new();
        for p in &cfg.policies {
            let action = action(cfg, p)?;
            for (k, selector) in selectors(p).into_iter().enumerate() {
                let name = format!("{}/{}/{}#{k}", p.from_zone, p.to_zone, p.name);
                spd.push(Policy {
                    name,
                    selector,
                    action,
                })
                .map_err(|e| SpecError {
                    object: policy_path(p),
                    reason: e.to_string(),
                })?;
            }
            if !matches!(p.action, model::PolicyAction::Tunnel(_)) {
                continue;
            }
            if p.destination.is_empty() {
                tracing::warn!(
                    policy = %policy_path(p),
                    "destination any is not routed into {POLICY_TUNNEL_NAME}: route that traffic there yourself"
                );
            }
            for d in &p.destination {
                if !routes.contains(d) {
                    routes.push(*d);
                }
            }
        }
        Ok(Some(PolicySpec {
            mtu: DEFAULT_TUNNEL_MTU,
            spd,
            routes,
        }))
    }

    /// Adds the policy device to the dataplane's devices and makes it the engines'
    /// policy tunnel.
    pub fn attach(&self, config: &mut DataplaneConfig) {
        config.tunnels.push(TunnelConfig {
            id: POLICY_TUNNEL,
            name: POLICY_TUNNEL_NAME.to_owned(),
            mtu: self.mtu,
            // One device, whatever families the policies and dial-up pools bring.
            ipv6: true,
        });
        config.engine.policy_tunnel = Some(POLICY_TUNNEL);
    }

    /// Publishes the SPD to every SPU and routes the policy destinations into the
    /// device (which the dataplane created).
    pub async fn apply(&self, dataplane: &DataplaneHandle) -> Result<(), String> {
        publish(dataplane, &self.spd);
        net::configure_link(POLICY_TUNNEL_NAME, &[], &self.route_list()).await
    }

    /// [`PolicySpec::routes`] as netlink takes them.
    fn route_list(&self) -> Vec<(IpAddr, u8)> {
        self.routes
            .iter()
            .map(|p| (p.network(), p.prefix_len()))
            .collect()
    }
}

/// Whether a running node can move from `old` to `new` policy tunnels at run time: not
/// when the first policy-based VPN appears, since the dataplane opens its TUN queues at
/// start (as for a new `st0` unit).
pub fn check_reload(old: Option<&PolicySpec>, new: Option<&PolicySpec>) -> Result<(), String> {
    match (old, new) {
        (None, Some(_)) => Err(format!(
            "security.policies: the first policy-based VPN needs the {POLICY_TUNNEL_NAME} \
             device, which is created at start: restart vpnd"
        )),
        _ => Ok(()),
    }
}

/// Applies a reload: publishes the new SPD (an empty one when no VPN is policy-based
/// any more, so the idle device drops everything) and moves the routes into the
/// device, leaving unchanged ones alone.
pub async fn reload(
    old: Option<&PolicySpec>,
    new: Option<&PolicySpec>,
    dataplane: &DataplaneHandle,
) -> Result<(), String> {
    let Some(old) = old else {
        return Ok(());
    };
    publish(dataplane, &new.map(|n| n.spd.clone()).unwrap_or_default());
    let before = old.route_list();
    let after = new.map(PolicySpec::route_list).unwrap_or_default();
    net::reconfigure_link(POLICY_TUNNEL_NAME, (&[], &before), (&[], &after)).await
}

/// Publishes the configured policies as the SPD, keeping the dial-up clients' entries
/// (`runtime::dialup`) in front of them: those belong to live SAs, not to the
/// configuration.
fn publish(dataplane: &DataplaneHandle, configured: &Spd) {
    // This edit cannot fail.
    let _: Result<(), SpdError> = dataplane.update_spd(|spd| {
        spd.replace_policies(configured);
        Ok(())
    });
}

/// `security.policies.from-zone.A.to-zone.B.policy.NAME`, for errors and logs.
fn policy_path(p: &SecurityPolicy) -> String {
    format!(
        "security.policies.from-zone.{}.to-zone.{}.policy.{}",
        p.from_zone, p.to_zone, p.name
    )
}

/// The SPD action of a Junos policy action.
fn action(cfg: &Config, p: &SecurityPolicy) -> Result<PolicyAction, SpecError> {
    Ok(match &p.action {
        model::PolicyAction::Tunnel(vpn) => {
            let binding = cfg
                .vpns
                .iter()
                .find(|v| &v.name == vpn)
                .map(|v| &v.binding)
                .or_else(|| cfg.manual_vpn(vpn).map(|m| &m.binding))
                .ok_or_else(|| SpecError {
                    object: policy_path(p),
                    reason: format!("ipsec vpn {vpn} is not defined"),
                })?;
            PolicyAction::Protect(binding.tunnel_id())
        }
        model::PolicyAction::Permit => PolicyAction::Bypass,
        model::PolicyAction::Deny | model::PolicyAction::Reject => PolicyAction::Discard,
    })
}

/// The SPD selectors of a policy: one per (source, destination) pair, and for
/// `any` to `any` one per address family.
fn selectors(p: &SecurityPolicy) -> Vec<Selector> {
    let pairs = p.prefix_pairs();
    if pairs.is_empty() {
        let any = |a: IpAddr| model::any_of(IpPrefix::host(a));
        return [
            IpAddr::from(Ipv4Addr::UNSPECIFIED),
            IpAddr::from(Ipv6Addr::UNSPECIFIED),
        ]
        .into_iter()
        .map(|a| Selector::new(IpRange::from(any(a)), IpRange::from(any(a))))
        .collect();
    }
    pairs
        .into_iter()
        .map(|(s, d)| Selector::new(s, d))
        .collect()
}

#[cfg(test)]
mod tests {
    use dataplane::selector::FlowKey;

    use super::*;

    const CONFIG: &str = include_str!("../../tests/data/policy-based.toml");

    fn flow(src: [u8; 4], dst: [u8; 4]) -> FlowKey {
        FlowKey::new(
            IpAddr::V4(Ipv4Addr::from(src)),
            IpAddr::V4(Ipv4Addr::from(dst)),
            6,
            1000,
            80,
        )
    }

    /// The shipped example: the tunnel policy protects with the VPN's binding and routes
    /// its destinations, the later `permit` any bypasses, IPv6 falls to the default
    /// deny of the last policy.
    #[test]
    fn policies_become_the_spd_in_order_and_tunnel_destinations_routes() {
        let cfg = Config::parse(CONFIG, "policy-based.toml").expect("valid example");
        let spec = PolicySpec::from_config(&cfg)
            .expect("spec")
            .expect("a policy-based VPN");
        let binding = cfg.vpn("to-branch").expect("vpn").binding.tunnel_id();
        assert!(binding > POLICY_TUNNEL);
        let verdict = |k: &FlowKey| spec.spd.lookup(k).map(|p| p.action);
        assert_eq!(
            verdict(&flow([10, 1, 2, 3], [10, 3, 0, 1])),
            Some(PolicyAction::Protect(binding))
        );
        assert_eq!(
            verdict(&flow([10, 9, 2, 3], [10, 3, 0, 1])),
            Some(PolicyAction::Bypass)
        );
        let v6 = FlowKey::new(
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:2::1".parse().unwrap(),
            17,
            1,
            2,
        );
        // The permit any/any covers IPv6 too, ahead of the deny.
        assert_eq!(verdict(&v6), Some(PolicyAction::Bypass));
        assert_eq!(
            spec.routes,
            vec![
                "10.2.0.0/16".parse::<IpPrefix>().unwrap(),
                "10.3.0.0/16".parse().unwrap()
            ]
        );
        let mut dp = DataplaneConfig::default();
        spec.attach(&mut dp);
        assert_eq!(dp.engine.policy_tunnel, Some(POLICY_TUNNEL));
        assert_eq!(
            dp.tunnels.last().map(|t| t.name.as_str()),
            Some(POLICY_TUNNEL_NAME)
        );
    }

    /// A deny placed first shadows the tunnel policy; no permit: the rest is dropped.
    #[test]
    fn deny_shadows_a_later_tunnel_policy_and_nothing_else_matches() {
        let text = CONFIG.replace(
            "[security.policies.from-zone.trust.to-zone.untrust.policy.to-branch]",
            "[security.policies.from-zone.trust.to-zone.untrust.policy.no-host]\n\
             match = { source-address = [\"any\"], destination-address = [\"10.2.0.99/32\"], application = \"any\" }\n\
             then.deny = {}\n\n\
             [security.policies.from-zone.trust.to-zone.untrust.policy.to-branch]",
        );
        let text = text.replace(
            "[security.policies.from-zone.trust.to-zone.untrust.policy.internet]\n\
             match = { source-address = [\"any\"], destination-address = [\"any\"], application = \"any\" }\n\
             then.permit = {}\n",
            "",
        );
        assert_ne!(text, CONFIG);
        let cfg = Config::parse(&text, "deny.toml").expect("valid");
        let spec = PolicySpec::from_config(&cfg)
            .expect("spec")
            .expect("policy");
        let verdict = |k: &FlowKey| spec.spd.lookup(k).map(|p| p.action);
        assert_eq!(
            verdict(&flow([10, 1, 0, 1], [10, 2, 0, 99])),
            Some(PolicyAction::Discard)
        );
        assert!(matches!(
            verdict(&flow([10, 1, 0, 1], [10, 2, 0, 98])),
            Some(PolicyAction::Protect(_))
        ));
        // The untrust → trust default-deny (any/any) is last.
        assert_eq!(
            verdict(&flow([192, 0, 2, 1], [10, 2, 0, 98])),
            Some(PolicyAction::Discard)
        );
        // A deny's destination is not routed: only tunnel policies' are.
        assert!(!spec.routes.contains(&"10.2.0.99/32".parse().unwrap()));
    }

    /// The device exists from start or never: a reload may change or empty the SPD,
    /// not bring the first policy-based VPN.
    #[test]
    fn only_the_first_policy_based_vpn_needs_a_restart() {
        let cfg = Config::parse(CONFIG, "policy-based.toml").expect("valid example");
        let spec = PolicySpec::from_config(&cfg).expect("spec");
        assert!(check_reload(spec.as_ref(), spec.as_ref()).is_ok());
        assert!(check_reload(spec.as_ref(), None).is_ok());
        assert!(check_reload(None, None).is_ok());
        let err = check_reload(None, spec.as_ref()).expect_err("refused");
        assert!(
            err.contains(POLICY_TUNNEL_NAME) && err.contains("restart"),
            "{err}"
        );
    }

    #[test]
    fn route_based_only_needs_no_policy_tunnel() {
        let cfg = Config::parse(crate::config::DEFAULT_SITE_A, "site-a.toml").expect("valid");
        assert!(PolicySpec::from_config(&cfg).expect("spec").is_none());
    }
}
