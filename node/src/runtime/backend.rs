//! The management API's view of a running node: each call asks the actors that own the
//! state (gateways, SPUs) and turns their answers into the API's domain types.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use dataplane::crypto::IntegAlg;
use dataplane::sa::Direction;
use dataplane::selector::Selector;
use dataplane::worker::{ControlError, WorkerStats};
use tokio::sync::broadcast;

use super::gateway::{Gateway, GatewayInfo, Initiate, RekeyChildren, RekeyIke, Status, Terminate};
use super::reload::{ApplyFragment, Reloader, RemoveObject};
use super::spu::{AddSpuError, Spus};
use super::table::GatewayTable;
use crate::mgmt::Member;
use crate::mgmt::backend::{
    Backend, BackendError, ClearScope, ClusterStatisticsView, ClusterStatusView, ConfigObjectKind,
    EventView, FieldError, IkeRole, IkeSaState, IkeSaView, IpsecProtocol, IpsecSaView,
    OperationOutcome, SpuAdded, SpuStatsView, StatsView, TerminateTarget, TrafficSelectorView,
    TunnelMapEntry,
};

/// A gateway actor with the names the API knows it by.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    /// Gateway name.
    pub name: String,
    /// VPN name.
    pub vpn: String,
    /// Child SA lifetime, for "remaining" figures.
    pub child_lifetime: Option<Duration>,
    /// The actor.
    pub addr: Addr<Gateway>,
}

/// The [`Backend`] of a running node.
#[derive(Debug)]
pub struct RuntimeBackend {
    gateways: GatewayTable,
    spus: Spus,
    events: broadcast::Sender<EventView>,
    /// The redundancy-group actor, once the node joined its chassis cluster.
    cluster: std::sync::OnceLock<actix::Addr<crate::cluster::redundancy::Redundancy>>,
    /// The owner of the running configuration, once the daemon handed it over.
    reloader: std::sync::OnceLock<Addr<Reloader>>,
}

impl RuntimeBackend {
    /// A backend over the node's actors.
    pub fn new(gateways: GatewayTable, spus: Spus, events: broadcast::Sender<EventView>) -> Self {
        Self {
            gateways,
            spus,
            events,
            cluster: std::sync::OnceLock::new(),
            reloader: std::sync::OnceLock::new(),
        }
    }

    /// Serves configuration changes (`ApplyConfig`, `RemoveConfigObject`) through
    /// `reloader`; without one they are refused.
    pub fn set_reloader(&self, reloader: Addr<Reloader>) {
        let _ = self.reloader.set(reloader);
    }

    async fn reconfigure<M>(&self, msg: M) -> Result<OperationOutcome, BackendError>
    where
        M: Message<Result = Result<OperationOutcome, BackendError>> + Send + 'static,
        Reloader: Handler<M>,
    {
        let reloader = self.reloader.get().ok_or_else(|| {
            BackendError::FailedPrecondition(
                "this node was started without a configuration it can change".into(),
            )
        })?;
        reloader.send(msg).await.map_err(unavailable)?
    }

    /// Serves the chassis cluster commands from the node's redundancy-group actor.
    /// The management event feed, for publishers outside the gateways (the cluster's
    /// failovers).
    pub fn event_feed(&self) -> broadcast::Sender<EventView> {
        self.events.clone()
    }

    pub fn join_cluster(&self, redundancy: actix::Addr<crate::cluster::redundancy::Redundancy>) {
        let _ = self.cluster.set(redundancy);
    }

    fn redundancy(
        &self,
    ) -> Result<&actix::Addr<crate::cluster::redundancy::Redundancy>, BackendError> {
        self.cluster.get().ok_or_else(BackendError::not_clustered)
    }

    async fn pin(&self, group: u8, node: Option<Member>) -> Result<(), BackendError> {
        use crate::cluster::redundancy::Pin;
        self.redundancy()?
            .send(Pin { group, node })
            .await
            .map_err(unavailable)?
            .map_err(|e| BackendError::Unavailable(format!("cluster log: {e}")))
    }

    fn by_vpn(&self, vpn: &str) -> Result<GatewayHandle, BackendError> {
        self.gateways
            .snapshot()
            .into_iter()
            .find(|g| g.vpn == vpn)
            .ok_or_else(|| BackendError::NotFound {
                kind: "vpn".into(),
                name: vpn.into(),
            })
    }

    fn by_gateway(&self, name: &str) -> Result<GatewayHandle, BackendError> {
        self.gateways
            .snapshot()
            .into_iter()
            .find(|g| g.name == name)
            .ok_or_else(|| BackendError::NotFound {
                kind: "gateway".into(),
                name: name.into(),
            })
    }

    async fn status(&self, g: &GatewayHandle) -> Result<GatewayInfo, BackendError> {
        g.addr
            .send(Status)
            .await
            .map_err(|e| BackendError::Unavailable(format!("gateway {}: {e}", g.name)))
    }

    async fn terminate_gateway(&self, g: &GatewayHandle) -> Result<bool, BackendError> {
        g.addr
            .send(Terminate)
            .await
            .map_err(|e| BackendError::Unavailable(format!("gateway {}: {e}", g.name)))
    }
}

/// The interface a binding's cleartext goes through, as `show` commands name it:
/// `st0.N` for a route-based VPN; `st0.policy` for a policy-based VPN and for a dial-up
/// client (whose per-client binding is steered through that device).
fn interface_of(binding: dataplane::sa::TunnelId) -> String {
    if binding >= crate::config::model::POLICY_BINDING_BASE {
        super::policy::POLICY_TUNNEL_NAME.to_owned()
    } else {
        format!("st0.{binding}")
    }
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

/// Junos names of IKE PRFs by IANA id.
fn prf_name(id: u16) -> String {
    match id {
        1 => "hmac-md5".into(),
        2 => "hmac-sha1".into(),
        4 => "aes-xcbc".into(),
        5 => "hmac-sha-256".into(),
        6 => "hmac-sha-384".into(),
        7 => "hmac-sha-512".into(),
        other => format!("prf-{other}"),
    }
}

fn encr_name(id: u16, bits: Option<u16>) -> String {
    dataplane::crypto::EncrAlg::from_iana(id, bits)
        .map_or_else(|| format!("encr-{id}"), |e| e.name().to_string())
}

fn integ_name(id: u16) -> String {
    IntegAlg::from_iana(id).map_or_else(|| format!("integ-{id}"), |i| i.name().to_string())
}

fn selector_views(selectors: &[Selector], local: bool) -> Vec<TrafficSelectorView> {
    selectors
        .iter()
        .map(|s| {
            let (range, ports) = if local {
                (s.src, s.src_ports)
            } else {
                (s.dst, s.dst_ports)
            };
            TrafficSelectorView {
                start: range.start(),
                end: range.end(),
                protocol: s.protocol.unwrap_or(0),
                start_port: ports.start(),
                end_port: ports.end(),
            }
        })
        .collect()
}

fn ike_view(info: &GatewayInfo) -> Option<IkeSaView> {
    let (spi_i, spi_r) = info.spis?;
    let suite = info.suite;
    Some(IkeSaView {
        gateway: info.name.clone(),
        remote: info.remote,
        local: info.local,
        spi_i,
        spi_r,
        state: if info.established {
            IkeSaState::Established
        } else {
            IkeSaState::Connecting
        },
        role: if info.initiator {
            IkeRole::Initiator
        } else {
            IkeRole::Responder
        },
        established_at: info.established_at,
        encryption: suite.map_or_else(String::new, |s| {
            encr_name(s.encr.iana_id(), s.encr.key_bits())
        }),
        integrity: suite.and_then(|s| s.integ).map(|i| integ_name(i.iana_id())),
        prf: suite.map_or_else(String::new, |s| prf_name(s.prf.iana_id())),
        dh_group: suite.map_or_else(String::new, |s| format!("group{}", s.dh.iana_id())),
        // An IKE SA always has an anchor (the gateway takes one as it creates the SA).
        anchor_spu: info
            .anchor
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(u32::MAX),
    })
}

#[tonic::async_trait]
impl Backend for RuntimeBackend {
    async fn list_ike_sas(&self, gateway: Option<&str>) -> Result<Vec<IkeSaView>, BackendError> {
        let mut out = Vec::new();
        for g in &self.gateways.snapshot() {
            if gateway.is_some_and(|n| n != g.name) {
                continue;
            }
            out.extend(ike_view(&self.status(g).await?));
        }
        if let Some(name) = gateway {
            self.by_gateway(name)?;
        }
        Ok(out)
    }

    async fn list_ipsec_sas(
        &self,
        vpn: Option<&str>,
        gateway: Option<&str>,
    ) -> Result<Vec<IpsecSaView>, BackendError> {
        if let Some(v) = vpn {
            self.by_vpn(v)?;
        }
        if let Some(n) = gateway {
            self.by_gateway(n)?;
        }
        let stats = self.spus.stats().await;
        let counters = |spi: u32, direction: Direction| {
            stats
                .iter()
                .flat_map(|w| w.engine.sas.iter())
                .find(|s| s.key.spi == spi && s.key.direction == direction)
                .map(|s| s.counters)
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for g in &self.gateways.snapshot() {
            if vpn.is_some_and(|v| v != g.vpn) || gateway.is_some_and(|n| n != g.name) {
                continue;
            }
            let info = self.status(g).await?;
            for c in &info.children {
                let rx = counters(c.inbound.spi, Direction::Inbound);
                let tx = counters(c.outbound.spi, Direction::Outbound);
                let mut drops = BTreeMap::new();
                for (name, n) in [
                    ("replay", rx.replay_drops),
                    ("icv_failure", rx.icv_drops),
                    ("malformed", rx.malformed_drops),
                    ("selector_mismatch", rx.selector_drops + tx.selector_drops),
                    ("lifetime", rx.limit_drops + tx.limit_drops),
                ] {
                    if n > 0 {
                        drops.insert(name.to_string(), n);
                    }
                }
                let age = SystemTime::now()
                    .duration_since(c.created)
                    .unwrap_or_default();
                out.push(IpsecSaView {
                    vpn: g.vpn.clone(),
                    gateway: Some(g.name.clone()),
                    bind_interface: Some(interface_of(info.binding)),
                    remote: info.remote,
                    inbound_spi: c.inbound.spi,
                    outbound_spi: c.outbound.spi,
                    protocol: match c.inbound.protocol {
                        dataplane::sa::Protocol::Esp => IpsecProtocol::Esp,
                        dataplane::sa::Protocol::Ah => IpsecProtocol::Ah,
                    },
                    encryption: c.encr.name().to_string(),
                    integrity: (c.integ != IntegAlg::None).then(|| c.integ.name().to_string()),
                    esn: c.esn,
                    anchor_spu: u32::try_from(c.anchor).unwrap_or(u32::MAX),
                    packets_in: rx.packets,
                    packets_out: tx.packets,
                    bytes_in: rx.bytes,
                    bytes_out: tx.bytes,
                    drops,
                    lifetime_remaining_seconds: g
                        .child_lifetime
                        .map_or(0, |l| l.saturating_sub(age).as_secs()),
                    lifetime_remaining_kilobytes: None,
                    local_selectors: selector_views(&c.selectors, true),
                    remote_selectors: selector_views(&c.selectors, false),
                });
            }
        }
        Ok(out)
    }

    async fn statistics(&self) -> Result<StatsView, BackendError> {
        let stats = self.spus.stats().await;
        Ok(StatsView {
            spus: stats.iter().map(spu_view).collect(),
        })
    }

    /// The tunnels that exist (an IKE SA, established or negotiating): a tunnel is
    /// anchored only while it has one.
    async fn tunnel_map(&self) -> Result<Vec<TunnelMapEntry>, BackendError> {
        let map = self.spus.tunnel_map();
        let mut out = Vec::new();
        for g in &self.gateways.snapshot() {
            let info = self.status(g).await?;
            // The map first: after an SPU failure it is ahead of the gateway, which
            // learns its new anchor a message later.
            let Some(spu) = map
                .iter()
                .find(|(b, _)| *b == info.binding)
                .map(|(_, s)| *s)
                .or(info.anchor)
            else {
                continue;
            };
            out.push(TunnelMapEntry {
                tunnel: interface_of(info.binding),
                gateway: g.name.clone(),
                // One services card holds every SPU until SPCs are configurable.
                spc: 0,
                spu: u32::try_from(spu).unwrap_or(u32::MAX),
            });
        }
        Ok(out)
    }

    async fn initiate(&self, vpn: &str) -> Result<OperationOutcome, BackendError> {
        let g = self.by_vpn(vpn)?;
        let info = self.status(&g).await?;
        if info.spis.is_some() {
            return Ok(OperationOutcome::NoChange(format!(
                "vpn {vpn}: IKE SA already {}",
                if info.established {
                    "established"
                } else {
                    "negotiating"
                }
            )));
        }
        g.addr.send(Initiate).await.map_err(unavailable)?;
        Ok(OperationOutcome::Done(format!(
            "vpn {vpn}: negotiation started"
        )))
    }

    async fn terminate(&self, target: TerminateTarget) -> Result<OperationOutcome, BackendError> {
        let g = match &target {
            TerminateTarget::Vpn(v) => self.by_vpn(v)?,
            TerminateTarget::Gateway(n) => self.by_gateway(n)?,
        };
        Ok(if self.terminate_gateway(&g).await? {
            OperationOutcome::Done(format!("gateway {}: IKE SA deleted", g.name))
        } else {
            OperationOutcome::NoChange(format!("gateway {}: no IKE SA", g.name))
        })
    }

    async fn cluster_status(&self) -> Result<ClusterStatusView, BackendError> {
        use crate::cluster::redundancy::Status;
        self.redundancy()?.send(Status).await.map_err(unavailable)
    }

    async fn cluster_statistics(&self) -> Result<ClusterStatisticsView, BackendError> {
        use crate::cluster::redundancy::Statistics;
        self.redundancy()?
            .send(Statistics)
            .await
            .map_err(unavailable)
    }

    async fn request_failover(
        &self,
        group: u8,
        node: Member,
    ) -> Result<OperationOutcome, BackendError> {
        self.pin(group, Some(node)).await?;
        Ok(OperationOutcome::Done(format!(
            "redundancy group {group}: failover to {node} requested (pinned until reset)"
        )))
    }

    async fn reset_failover(&self, group: u8) -> Result<OperationOutcome, BackendError> {
        self.pin(group, None).await?;
        Ok(OperationOutcome::Done(format!(
            "redundancy group {group}: manual failover reset"
        )))
    }

    async fn fail_spu(&self, spu: u32) -> Result<OperationOutcome, BackendError> {
        let spu = spu as usize;
        if spu >= self.spus.len() {
            return Err(BackendError::Invalid(vec![FieldError::new(
                "spu",
                format!("no SPU {spu} (this node has {})", self.spus.len()),
            )]));
        }
        self.spus
            .inject_failure(spu)
            .map_err(BackendError::FailedPrecondition)?;
        Ok(OperationOutcome::Done(format!(
            "SPU {spu} failed: its tunnels move to the surviving SPUs"
        )))
    }

    async fn add_spu(&self) -> Result<SpuAdded, BackendError> {
        let spu = self.spus.add().await.map_err(|e| match e {
            AddSpuError::Stopping | AddSpuError::Dataplane(ControlError::Stopped) => {
                BackendError::Unavailable(e.to_string())
            }
            AddSpuError::Arbiter(_) | AddSpuError::Dataplane(_) => {
                BackendError::Internal(format!("adding an SPU: {e}"))
            }
        })?;
        Ok(SpuAdded {
            spu: u32::try_from(spu).unwrap_or(u32::MAX),
            message: format!("SPU {spu} added: tunnels set up from now on may be anchored on it"),
        })
    }

    async fn rekey(&self, vpn: &str) -> Result<OperationOutcome, BackendError> {
        let g = self.by_vpn(vpn)?;
        match g.addr.send(RekeyChildren).await.map_err(unavailable)? {
            Ok(0) => Ok(OperationOutcome::NoChange(format!(
                "vpn {vpn}: no IPsec SA"
            ))),
            Ok(n) => Ok(OperationOutcome::Done(format!(
                "vpn {vpn}: rekey of {n} IPsec SA pair(s) started"
            ))),
            Err(e) => Err(BackendError::FailedPrecondition(format!("vpn {vpn}: {e}"))),
        }
    }

    async fn rekey_ike(&self, gateway: &str) -> Result<OperationOutcome, BackendError> {
        let g = self.by_gateway(gateway)?;
        match g.addr.send(RekeyIke).await.map_err(unavailable)? {
            Ok(spis) => Ok(OperationOutcome::Done(format!(
                "gateway {gateway}: rekey of IKE SA {:016x}/{:016x} started",
                spis.0, spis.1
            ))),
            Err(e) => Err(BackendError::FailedPrecondition(format!(
                "gateway {gateway}: {e}"
            ))),
        }
    }

    async fn clear_ike_sas(&self, scope: ClearScope) -> Result<OperationOutcome, BackendError> {
        let targets = match &scope {
            ClearScope::All => self.gateways.snapshot(),
            ClearScope::Gateway(n) => vec![self.by_gateway(n)?],
        };
        let mut cleared = 0;
        for g in &targets {
            if self.terminate_gateway(g).await? {
                cleared += 1;
            }
        }
        Ok(if cleared == 0 {
            OperationOutcome::NoChange("no IKE SA to clear".into())
        } else {
            OperationOutcome::Done(format!("{cleared} IKE SA(s) cleared"))
        })
    }

    async fn apply_config(&self, toml_fragment: &str) -> Result<OperationOutcome, BackendError> {
        self.reconfigure(ApplyFragment(toml_fragment.to_owned()))
            .await
    }

    async fn remove_config_object(
        &self,
        kind: ConfigObjectKind,
        name: &str,
    ) -> Result<OperationOutcome, BackendError> {
        self.reconfigure(RemoveObject {
            kind,
            name: name.to_owned(),
        })
        .await
    }

    fn events(&self) -> broadcast::Receiver<EventView> {
        self.events.subscribe()
    }
}

fn spu_view(w: &WorkerStats) -> SpuStatsView {
    let mut v = SpuStatsView {
        spu: u32::try_from(w.worker).unwrap_or(u32::MAX),
        active_sas: u32::try_from(w.engine.sas.len()).unwrap_or(u32::MAX),
        ..SpuStatsView::default()
    };
    for s in &w.engine.sas {
        match s.key.direction {
            Direction::Inbound => {
                v.packets_in += s.counters.packets;
                v.bytes_in += s.counters.bytes;
            }
            Direction::Outbound => {
                v.packets_out += s.counters.packets;
                v.bytes_out += s.counters.bytes;
            }
        }
    }
    for (reason, n) in w.drops().nonzero() {
        v.drops.insert(reason.name().to_string(), n);
    }
    let io = &w.io;
    for (name, n) in [
        ("tun_rx", io.tun_rx),
        ("tun_tx", io.tun_tx),
        ("udp_rx", io.udp_rx),
        ("raw_rx", io.raw_rx),
        ("raw_tx", io.raw_tx),
        ("ike_rx", io.ike_rx),
        ("handoff_out", io.handoff_out),
        ("handoff_in", io.handoff_in),
        ("events_lost", io.events_lost),
    ] {
        v.io.insert(name.to_string(), n);
    }
    v
}
