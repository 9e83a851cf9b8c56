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
//! forgets it. One gateway per peer address keeps every per-peer state (NAT mapping,
//! DPD, anchor SPU) where the static gateways keep it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::broadcast;

use super::gateway::{Datagram, Gateway, Shutdown};
use super::ike_socket::{IkeSocket, Received, UnregisterPeer};
use super::spu::Spus;
use super::table::GatewayTable;
use super::{GatewaySpec, start_gateway};
use crate::mgmt::backend::EventView;

/// How often ended peers' gateways are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(2);
/// Peers served at once by one dial-up gateway: a flood of IKE_SA_INITs from spoofed
/// addresses must not start actors without bound (the engine's COOKIE defence works
/// per gateway, after this).
pub const MAX_PEERS: usize = 16_384;

/// Ends the dial-up gateway and every peer's gateway (a reload removed it).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopDialup;

/// The dial-up gateway of one configured VPN.
#[derive(Debug)]
pub struct Dialup {
    template: GatewaySpec,
    socket: Addr<IkeSocket>,
    spus: Spus,
    events: broadcast::Sender<EventView>,
    gateways: GatewayTable,
    peers: HashMap<IpAddr, Addr<Gateway>>,
}

impl Dialup {
    /// A dial-up gateway serving peers of `template`.
    pub fn new(
        template: GatewaySpec,
        socket: Addr<IkeSocket>,
        spus: Spus,
        events: broadcast::Sender<EventView>,
        gateways: GatewayTable,
    ) -> Self {
        Self {
            template,
            socket,
            spus,
            events,
            gateways,
            peers: HashMap::new(),
        }
    }

    /// Forgets the gateways of peers whose IKE SA ended.
    fn prune(&mut self) {
        let (gateways, socket) = (&self.gateways, &self.socket);
        self.peers.retain(|peer, gw| {
            if gw.connected() {
                return true;
            }
            gateways.remove_actor(gw);
            socket.do_send(UnregisterPeer {
                peer: *peer,
                gateway: gw.clone(),
            });
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
        let peer = msg.from.ip();
        let gateway = match self.peers.get(&peer).filter(|g| g.connected()) {
            Some(g) => g.clone(),
            None => {
                self.prune();
                if self.peers.len() >= MAX_PEERS {
                    tracing::warn!(gateway = %self.template.name, %peer, max = MAX_PEERS, "dial-up gateway full: IKE_SA_INIT dropped");
                    return;
                }
                let mut spec = self.template.clone();
                spec.remote = peer;
                let handle = start_gateway(&spec, &self.socket, &self.spus, &self.events);
                tracing::info!(gateway = %spec.name, %peer, "dial-up peer: gateway started");
                let addr = handle.addr.clone();
                self.gateways.insert(handle);
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
        for (peer, gw) in self.peers.drain() {
            self.gateways.remove_actor(&gw);
            self.socket.do_send(UnregisterPeer {
                peer,
                gateway: gw.clone(),
            });
            gw.do_send(Shutdown);
        }
        ctx.stop();
    }
}
