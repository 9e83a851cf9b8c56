//! Dial-up gateways (`[security.ike.gateway.X] dynamic`): remote-access clients and
//! peers whose address is not known in advance.
//!
//! The configured gateway is a template. A new IKE_SA_INIT that no SA and no
//! configured peer claims, arriving on the template's local address, reaches its
//! [`Dialup`] actor, which starts a [`Gateway`] for that peer (the template with the
//! peer's address filled in) and hands it the datagram. From then on the peer's
//! datagrams go to that gateway directly (by SPI, and by address for a new
//! IKE_SA_INIT). The gateway authenticates the peer against the template's identity
//! (exactly, or by domain with `ike-user-type group-ike-id`), hands it an address
//! from the pool over CP, and stops when its IKE SA ends; the dial-up actor then
//! forgets it. One gateway per peer address and port (clients behind one NAT differ by
//! port) keeps every per-peer state (NAT mapping, DPD, anchor SPU) where the static
//! gateways keep it.
//!
//! Every client's SAs get a binding of their own (from [`DIALUP_BINDING_BASE`]), so
//! each is anchored on its own SPU, and traffic for a client reaches that client's SAs
//! however many share the VPN: when a client's first child SA comes up, its gateway
//! puts an SPD entry per negotiated selector in front of the configured policies
//! (`protect` with the client's binding) and routes the client's side of the
//! selectors (its pool address) into the policy device `st0.policy`, which looks the
//! SPD up; what the client sends is delivered there too (its binding has no device of
//! its own). Both go when the client's gateway stops. The VPN's `st0` unit keeps its
//! address and routes; the per-client host routes are more specific.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use actix::prelude::*;
use dataplane::sa::TunnelId;
use dataplane::selector::{IpRange, Selector};
use dataplane::spd::{Policy, PolicyAction, SpdError};
use dataplane::worker::DataplaneHandle;

use super::gateway::{Datagram, Gateway, Shutdown};
use super::ike_socket::Received;
use super::policy::POLICY_TUNNEL_NAME;
use super::{GatewayEnv, GatewaySpec, net};

/// How often ended peers' gateways are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(2);
/// Peers served at once by one dial-up gateway: a flood of IKE_SA_INITs from spoofed
/// addresses must not start actors without bound (the engine's COOKIE defence works
/// per gateway, after this).
pub const MAX_PEERS: usize = 16_384;

/// First binding of dial-up clients: above `st0` units (below 2^31) and policy-based
/// VPNs (from 2^31), below nothing else.
pub const DIALUP_BINDING_BASE: TunnelId = 0xC000_0000;
/// Prefix of the SPD entries of dial-up clients.
const CLIENT_ENTRY: &str = "dialup#";

/// Bindings handed to clients so far (process-wide: bindings are node-wide).
static NEXT_BINDING: AtomicU32 = AtomicU32::new(DIALUP_BINDING_BASE);

/// A binding no other client has (wraps after 2^30 clients, by then long gone).
fn next_binding() -> TunnelId {
    let n = NEXT_BINDING.fetch_add(1, Ordering::Relaxed);
    DIALUP_BINDING_BASE | (n & !DIALUP_BINDING_BASE)
}

/// The name of the SPD entry of `binding`'s `k`-th selector.
fn client_entry(binding: TunnelId, k: usize) -> String {
    format!("{CLIENT_ENTRY}{binding:#x}#{k}")
}

/// What [`route_client`] added for one client, for [`unroute_client`].
#[derive(Debug)]
pub struct ClientRouting {
    binding: TunnelId,
    selectors: Vec<Selector>,
    routes: Vec<(IpAddr, u8)>,
}

/// Steers traffic matching `selectors` (our side as source) to the SAs of `binding`:
/// client entries in the SPD, in front of the configured policies, and host routes of
/// the client's side into the policy device.
pub fn route_client(
    dataplane: &DataplaneHandle,
    binding: TunnelId,
    selectors: &[Selector],
) -> ClientRouting {
    let added = dataplane.update_spd(|spd| {
        for (k, selector) in selectors.iter().enumerate() {
            match spd.insert_client(Policy {
                name: client_entry(binding, k),
                selector: *selector,
                action: PolicyAction::Protect(binding),
            }) {
                Ok(()) | Err(SpdError::DuplicateName(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    if let Err(e) = added {
        tracing::error!(binding, error = %e, "dial-up client: SPD entries not added");
    }
    let routes: Vec<(IpAddr, u8)> = selectors.iter().filter_map(|s| prefix(&s.dst)).collect();
    let list = routes.clone();
    actix::spawn(async move {
        if let Err(e) = net::configure_link(POLICY_TUNNEL_NAME, &[], &list).await {
            tracing::warn!(binding, error = %e, "dial-up client: routes not added");
        }
    });
    ClientRouting {
        binding,
        selectors: selectors.to_vec(),
        routes,
    }
}

/// Removes what [`route_client`] added.
pub fn unroute_client(dataplane: &DataplaneHandle, routing: ClientRouting) {
    let ClientRouting {
        binding,
        selectors,
        routes,
    } = routing;
    // This edit cannot fail.
    let _: Result<(), SpdError> = dataplane.update_spd(|spd| {
        for (k, selector) in selectors.iter().enumerate() {
            spd.remove_client(&client_entry(binding, k), selector);
        }
        Ok(())
    });
    actix::spawn(async move {
        if let Err(e) = net::reconfigure_link(POLICY_TUNNEL_NAME, (&[], &routes), (&[], &[])).await
        {
            tracing::warn!(binding, error = %e, "dial-up client: routes not removed");
        }
    });
}

/// The prefix `range` covers exactly, if it is one (a pool address is a /32).
fn prefix(range: &IpRange) -> Option<(IpAddr, u8)> {
    let (start, end, bits) = match (range.start(), range.end()) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (u128::from(u32::from(s)), u128::from(u32::from(e)), 32),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128),
        _ => return None,
    };
    let size = end.checked_sub(start)?.checked_add(1)?;
    if !size.is_power_of_two() || start % size != 0 {
        return None;
    }
    Some((range.start(), (bits - size.trailing_zeros()) as u8))
}

/// Ends the dial-up gateway and every peer's gateway (a reload removed it).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopDialup;

/// The dial-up gateway of one configured VPN.
#[derive(Debug)]
pub struct Dialup {
    template: GatewaySpec,
    env: GatewayEnv,
    /// By source address and port: clients behind one NAT share the address.
    peers: HashMap<SocketAddr, Addr<Gateway>>,
}

impl Dialup {
    /// A dial-up gateway serving peers of `template`.
    pub fn new(template: GatewaySpec, env: GatewayEnv) -> Self {
        Self {
            template,
            env,
            peers: HashMap::new(),
        }
    }

    /// Forgets the gateways of peers whose IKE SA ended.
    fn prune(&mut self) {
        let gateways = &self.env.table;
        self.peers.retain(|_, gw| {
            if gw.connected() {
                return true;
            }
            gateways.remove_actor(gw);
            false
        });
    }
}

impl Actor for Dialup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PRUNE_EVERY, |act, _| act.prune());
    }
}

impl Handler<Received> for Dialup {
    type Result = ();

    fn handle(&mut self, msg: Received, _: &mut Context<Self>) {
        let peer = msg.from;
        let gateway = match self.peers.get(&peer).filter(|g| g.connected()) {
            Some(g) => g.clone(),
            None => {
                self.prune();
                if self.peers.len() >= MAX_PEERS {
                    tracing::warn!(gateway = %self.template.name, %peer, max = MAX_PEERS, "dial-up gateway full: IKE_SA_INIT dropped");
                    return;
                }
                let mut spec = self.template.clone();
                spec.remote = peer.ip();
                spec.binding = next_binding();
                let handle = self.env.start_gateway(&spec);
                tracing::info!(gateway = %spec.name, %peer, "dial-up peer: gateway started");
                let addr = handle.addr.clone();
                self.env.table.insert(handle);
                self.peers.insert(peer, addr.clone());
                addr
            }
        };
        gateway.do_send(Datagram {
            from: msg.from,
            local: msg.local,
            natt: msg.natt,
            data: msg.data,
        });
    }
}

impl Handler<StopDialup> for Dialup {
    type Result = ();

    fn handle(&mut self, _: StopDialup, ctx: &mut Context<Self>) {
        for (_, gw) in self.peers.drain() {
            self.env.table.remove_actor(&gw);
            gw.do_send(Shutdown);
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_that_are_prefixes_become_routes() {
        let r = |a: &str, b: &str| IpRange::new(a.parse().unwrap(), b.parse().unwrap()).unwrap();
        assert_eq!(
            prefix(&r("10.99.0.10", "10.99.0.10")),
            Some(("10.99.0.10".parse().unwrap(), 32))
        );
        assert_eq!(
            prefix(&r("10.1.0.0", "10.1.255.255")),
            Some(("10.1.0.0".parse().unwrap(), 16))
        );
        assert_eq!(
            prefix(&r("0.0.0.0", "255.255.255.255")),
            Some(("0.0.0.0".parse().unwrap(), 0))
        );
        assert_eq!(prefix(&r("10.0.0.1", "10.0.0.2")), None);
        assert_eq!(
            prefix(&r("2001:db8::", "2001:db8::ffff")),
            Some(("2001:db8::".parse().unwrap(), 112))
        );
    }

    #[test]
    fn client_bindings_are_distinct_and_above_every_other_binding() {
        let (a, b) = (next_binding(), next_binding());
        assert_ne!(a, b);
        assert!(a >= DIALUP_BINDING_BASE && b >= DIALUP_BINDING_BASE);
    }
}
