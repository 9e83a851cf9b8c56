//! One configured IKE gateway: owns the sans-IO `IkeSa`, feeds it datagrams and timer
//! ticks, sends what it queues, and turns its events into child SA actors.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use dataplane::engine::EngineEvent;
use dataplane::sa::{SaConfig, UdpEncap};
use ike::engine::{Event, IkeSa};
use sa_sync::cluster::ClusterHandle;
use sa_sync::{ChildSaRecord, ClusterState, Command, Fence, IkeSaRecord, SaId};
use tokio::sync::broadcast;

use super::GatewaySpec;
use super::child_sa::{ChildSa, ChildSaInfo, Close, Describe};
use super::dialup;
use super::ike_socket::{IkeSocket, RouteSpi, SendIke};
use super::mapping;
use super::spu::Spus;
use super::vpn_monitor::{Prober, Verdict};
use crate::cluster::records;
use crate::mgmt::backend::{EventKind, EventView};

/// Wait before initiating again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a rekeyed IKE SA's SPI still reaches us (its Delete, retransmissions).
const OLD_SA_GRACE: Duration = Duration::from_secs(30);
/// How long a replacement IKE SA may take to authenticate before it is dropped (the
/// engine's responder waits for IKE_AUTH without a timer of its own).
const REPLACEMENT_SETUP: Duration = Duration::from_secs(30);

/// A datagram for this gateway's IKE SA.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddr,
    /// Our address it arrived on.
    pub local: SocketAddr,
    /// Arrived on the NAT-T port.
    pub natt: bool,
    /// The IKE message (without marker).
    pub data: Vec<u8>,
}

/// Ends the IKE SA (Delete to the peer) and every child SA.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Deletes the IKE SA and its children at the peer; an `immediately` VPN renegotiates
/// afterwards (`clear security ike security-associations`).
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct Terminate;

/// Rekeys the IKE SA now (`request security ike rekey`); answers the SPIs of the SA
/// being rekeyed.
#[derive(Message, Debug)]
#[rtype(result = "Result<(u64, u64), String>")]
pub struct RekeyIke;

/// Rekeys every child SA now (`request security ipsec sa rekey`).
#[derive(Message, Debug)]
#[rtype(result = "Result<usize, String>")]
pub struct RekeyChildren;

/// Start negotiating now (`request security ike initiate`).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Initiate;

/// An event of the dataplane that may concern this gateway's SAs.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DataplaneNotice {
    /// The worker that raised it.
    pub worker: usize,
    /// The event.
    pub event: EngineEvent,
}

/// This node became primary of the gateway's redundancy group: continue the replicated
/// IKE SA and child SAs (or negotiate if there are none), writing through the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Activate {
    /// What this node writes with.
    pub fence: Fence,
    /// The cluster member.
    pub handle: ClusterHandle,
    /// The replicated state at the takeover.
    pub state: Box<ClusterState>,
}

impl std::fmt::Debug for Activate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activate")
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

/// This node is no longer primary: forget the SAs without telling the peer (the other
/// node carries them on).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deactivate;

/// An SPU failed; the gateway's tunnel may have been re-anchored.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SpuFailed {
    /// The failed SPU.
    pub spu: usize,
}

/// Where a clustered gateway writes while it is primary.
#[derive(Clone)]
struct Replication {
    handle: ClusterHandle,
    fence: Fence,
}

/// Sequence numbers the first reservation of a new SA allows (before any rate is
/// known); well above the dataplane's low-water mark, so the next reservation is asked
/// for long before this one runs out.
const FIRST_RESERVATION: u64 = 1 << 16;

/// State of the gateway, for `show security ike security-associations`.
#[derive(Message, Debug)]
#[rtype(result = "GatewayInfo")]
pub struct Status;

/// What `show` commands print about a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// Gateway name.
    pub name: String,
    /// VPN name.
    pub vpn: String,
    /// The st0 unit (or policy binding) its SAs serve.
    pub binding: u32,
    /// Our address and port in use.
    pub local: SocketAddr,
    /// Peer address and port in use.
    pub remote: SocketAddr,
    /// When the IKE SA was established.
    pub established_at: Option<SystemTime>,
    /// Negotiated IKE suite.
    pub suite: Option<ike::engine::IkeSuite>,
    /// IKE SPIs (initiator, responder), if an SA exists.
    pub spis: Option<(u64, u64)>,
    /// Whether the IKE SA is established.
    pub established: bool,
    /// Whether we initiated it.
    pub initiator: bool,
    /// Anchor SPU of the gateway's tunnel; none while it has no IKE SA.
    pub anchor: Option<usize>,
    /// Child SA pairs.
    pub children: Vec<ChildSaInfo>,
}

/// Actor of one IKE gateway.
pub struct Gateway {
    spec: GatewaySpec,
    socket: Addr<IkeSocket>,
    spus: Spus,
    /// The SPU the tunnel is anchored on, from the moment an IKE SA exists until it ends
    /// (see [`Spus::anchor_for`]).
    anchor: Option<usize>,
    sa: Option<IkeSa>,
    /// A new IKE SA the peer is negotiating while `sa` is established (it restarted, or
    /// reauthenticates): it replaces `sa` once authenticated, see
    /// [`Gateway::route_to_replacement`].
    replacement: Option<IkeSa>,
    our_spi: Option<u64>,
    /// Where the peer is reached: port 500 until NAT-T moves IKE to 4500.
    remote: SocketAddr,
    timer: Option<SpawnHandle>,
    children: Vec<Child>,
    buf: Vec<u8>,
    events: broadcast::Sender<EventView>,
    established_at: Option<SystemTime>,
    /// While primary of its redundancy group (clustered gateways only).
    cluster: Option<Replication>,
    /// IKE datagrams waiting for the state they depend on to be committed.
    held: Vec<SendIke>,
    replicating: bool,
    /// Child SA pairs negotiated but not yet installed in the dataplane. Datagrams wait
    /// for them: the peer may send on a new SA as soon as our message reaches it.
    installing: usize,
    /// Inbound SPIs of pairs whose record is being committed before they are installed.
    committing: std::collections::HashSet<u32>,
    /// Bumped by every teardown: a commit that completes after one belongs to SAs this
    /// gateway no longer holds, and must not install them (a later takeover installs
    /// them again, above the reservation it reads then).
    generation: u64,
    /// The IKE SA state version last committed to the log.
    replicated: Option<u64>,
    /// Outbound sequence limits committed per outbound SPI, and the packet rate seen.
    reservations: std::collections::HashMap<u32, (u64, ha::RateMeter)>,
    /// `vpn-monitor` probing, once its socket is open.
    prober: Option<Prober>,
    /// The probe socket could not be opened (said once in the log).
    prober_failed: bool,
    /// Inbound packets of the child SAs at the last monitor tick (`optimized`).
    monitor_rx: u64,
    /// A dial-up client's host routes into the policy device, once its first child SA
    /// came up (see `runtime::dialup`).
    client_routes: Option<dialup::ClientRouting>,
}

/// A child SA pair this gateway installed.
#[derive(Debug)]
struct Child {
    inbound_spi: u32,
    outbound_spi: u32,
    actor: Addr<ChildSa>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &self.spec.name)
            .field("remote", &self.remote)
            .field("our_spi", &self.our_spi)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway actor for `spec`.
    pub fn new(
        spec: GatewaySpec,
        socket: Addr<IkeSocket>,
        spus: Spus,
        events: broadcast::Sender<EventView>,
    ) -> Self {
        let remote = SocketAddr::new(spec.remote, 500);
        Self {
            spec,
            socket,
            spus,
            anchor: None,
            sa: None,
            replacement: None,
            our_spi: None,
            remote,
            timer: None,
            children: Vec::new(),
            buf: Vec::with_capacity(2048),
            events,
            established_at: None,
            cluster: None,
            held: Vec::new(),
            replicating: false,
            installing: 0,
            committing: std::collections::HashSet::new(),
            generation: 0,
            replicated: None,
            reservations: std::collections::HashMap::new(),
            prober: None,
            prober_failed: false,
            monitor_rx: 0,
            client_routes: None,
        }
    }

    /// The SPU the tunnel is anchored on, chosen (the least loaded) if it has none yet.
    fn anchor(&mut self) -> usize {
        *self
            .anchor
            .get_or_insert_with(|| self.spus.anchor_for(self.spec.binding))
    }

    /// Clustered and not primary: the gateway neither negotiates nor answers.
    fn passive(&self) -> bool {
        self.spec.group.is_some() && self.cluster.is_none()
    }

    /// Publishes an event on the management feed (nobody listening is fine).
    fn publish(&self, kind: EventKind, spi: Option<u64>, message: String) {
        let _ = self.events.send(EventView {
            timestamp: SystemTime::now(),
            kind,
            gateway: Some(self.spec.name.clone()),
            vpn: Some(self.spec.vpn.clone()),
            spi,
            message,
        });
    }

    fn rng() -> Box<dyn rand_core::CryptoRngCore + Send> {
        Box::new(rand_core::OsRng)
    }

    fn initiate(&mut self, ctx: &mut Context<Self>) {
        if self.sa.is_some() || self.passive() {
            return;
        }
        let remote = SocketAddr::new(self.spec.remote, 500);
        let local = SocketAddr::new(self.spec.local, 500);
        match IkeSa::initiate(
            self.spec.ike.clone(),
            local,
            remote,
            Self::rng(),
            Instant::now(),
        ) {
            Ok(sa) => {
                tracing::info!(gateway = %self.spec.name, peer = %remote, "initiating IKE SA");
                self.set_sa(sa, ctx);
            }
            Err(e) => {
                tracing::warn!(gateway = %self.spec.name, error = %e, "cannot initiate");
                self.retry_later(ctx);
            }
        }
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        if self.spec.dynamic {
            // A dial-up peer's gateway lives as long as its IKE SA: the peer calls
            // again if it wants to (`runtime::dialup` forgets the stopped actor).
            ctx.stop();
            return;
        }
        if self.spec.initiate {
            // Up to a second of jitter keeps two restarting peers from staying in step.
            let jitter = Duration::from_millis(
                rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u64 % 1000,
            );
            ctx.run_later(RETRY_AFTER + jitter, |act, ctx| act.initiate(ctx));
        }
    }

    fn set_sa(&mut self, sa: IkeSa, ctx: &mut Context<Self>) {
        let (spi_i, spi_r) = sa.spis();
        let ours = if sa.is_initiator() { spi_i } else { spi_r };
        // A new IKE SA is a new tunnel: it is placed now, by the load of this moment.
        self.anchor();
        self.route(Some(ours), ctx);
        self.remote = SocketAddr::new(self.spec.remote, 500);
        self.sa = Some(sa);
        self.drive(ctx);
    }

    fn route(&mut self, spi: Option<u64>, ctx: &mut Context<Self>) {
        if let Some(old) = self.our_spi.take() {
            self.socket.do_send(RouteSpi {
                spi: old,
                gateway: None,
            });
        }
        if let Some(spi) = spi {
            self.socket.do_send(RouteSpi {
                spi,
                gateway: Some(ctx.address()),
            });
            self.our_spi = Some(spi);
        }
    }

    /// Stops routing datagrams naming `old` (an IKE SA rekeyed away) here after a
    /// grace period, unless it became current again.
    fn unroute_later(&self, old: u64, ctx: &mut Context<Self>) {
        ctx.run_later(OLD_SA_GRACE, move |act, _| {
            if act.our_spi != Some(old) {
                act.socket.do_send(RouteSpi {
                    spi: old,
                    gateway: None,
                });
            }
        });
    }

    /// Sends what the SA queued, handles its events and re-arms its timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let mut events = Vec::new();
        if let Some(sa) = &mut self.sa {
            while let Some(t) = sa.poll_transmit(&mut self.buf) {
                self.remote = t.destination;
                self.held.push(SendIke {
                    src: t.local,
                    dst: t.destination,
                    natt: t.non_esp_marker,
                    data: self.buf.get(..t.size).unwrap_or(&self.buf).to_vec(),
                });
            }
            while let Some(e) = sa.poll_event() {
                events.push(e);
            }
        }
        for e in events {
            self.on_event(e, ctx);
        }
        self.drive_replacement(ctx);
        self.flush(ctx);
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        let next = [&self.sa, &self.replacement]
            .into_iter()
            .filter_map(|sa| sa.as_ref().and_then(IkeSa::poll_timeout))
            .min();
        if let Some(at) = next {
            let wait = at.saturating_duration_since(Instant::now());
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                let now = Instant::now();
                for sa in [&mut act.sa, &mut act.replacement].into_iter().flatten() {
                    sa.handle_timeout(now);
                }
                act.drive(ctx);
            }));
        }
    }

    fn on_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        let name = &self.spec.name;
        match event {
            Event::Established { spi_i, spi_r } => {
                self.established_at = Some(SystemTime::now());
                self.publish(
                    EventKind::SaUp,
                    Some(spi_i),
                    format!("IKE SA {spi_i:016x}/{spi_r:016x} established"),
                );
                tracing::info!(
                    gateway = %name,
                    spi_i = format_args!("{spi_i:016x}"),
                    spi_r = format_args!("{spi_r:016x}"),
                    "IKE SA established"
                );
            }
            Event::NatDetected(nat) => {
                tracing::info!(gateway = %name, ?nat, "NAT detected: IKE and ESP move to UDP 4500");
            }
            Event::InitialContact { peer } => {
                // A replacement's INITIAL_CONTACT was acted on when it was promoted
                // (`promote_replacement`); for the gateway's only SA there is nothing
                // older to delete.
                tracing::info!(gateway = %name, ?peer, "peer sent INITIAL_CONTACT");
            }
            Event::IkeSaKeys(keys) => {
                if let Some(log) = &self.spec.key_log {
                    log.ike(&keys);
                }
            }
            Event::ChildSaReady(install) => {
                if let Some(log) = &self.spec.key_log {
                    let (local, remote) =
                        self.sa
                            .as_ref()
                            .map_or((self.spec.local, self.spec.remote), |sa| {
                                let (l, r) = sa.addresses();
                                (l.ip(), r.ip())
                            });
                    log.esp(&install, local, remote);
                }
                let (kind, what) = match install.rekeys {
                    Some(old) => (EventKind::Rekey, format!("rekeyed from {old:#010x}")),
                    None => (EventKind::SaUp, "up".to_string()),
                };
                self.publish(
                    kind,
                    Some(u64::from(install.inbound.spi)),
                    format!("IPsec SA {:#010x} {what}", install.inbound.spi),
                );
                self.install_child(&install, ctx);
            }
            Event::ChildSaDeleted { inbound_spi, .. } => {
                self.publish(
                    EventKind::SaDown,
                    Some(u64::from(inbound_spi)),
                    format!("IPsec SA {inbound_spi:#010x} deleted"),
                );
                self.close_child(inbound_spi);
            }
            Event::ChildSaFailed(e) => {
                self.publish(
                    EventKind::SaDown,
                    None,
                    format!("IPsec SA not created (IKE SA kept): {e}"),
                );
                tracing::warn!(gateway = %self.spec.name, error = %e, "child SA not created; IKE SA kept");
            }
            Event::IkeRekeyed { old_spis, new_spis } => {
                self.publish(
                    EventKind::Rekey,
                    Some(new_spis.0),
                    format!(
                        "IKE SA rekeyed: {:016x}/{:016x} -> {:016x}/{:016x}",
                        old_spis.0, old_spis.1, new_spis.0, new_spis.1
                    ),
                );
                tracing::info!(
                    gateway = %name,
                    old = format_args!("{:016x}/{:016x}", old_spis.0, old_spis.1),
                    new = format_args!("{:016x}/{:016x}", new_spis.0, new_spis.1),
                    "IKE SA rekeyed"
                );
                // The old IKE SA still has to answer (at least) the Delete that
                // retires it, so its route stays for a while beside the new one.
                // Who initiated the rekey is the new SA's initiator, so our role (and
                // which SPI is ours) may differ between the two SAs.
                let now_initiator = self.sa.as_ref().is_some_and(IkeSa::is_initiator);
                let new = if now_initiator {
                    new_spis.0
                } else {
                    new_spis.1
                };
                let old = self.our_spi.unwrap_or(old_spis.0);
                self.our_spi = Some(new);
                self.socket.do_send(RouteSpi {
                    spi: new,
                    gateway: Some(ctx.address()),
                });
                self.unroute_later(old, ctx);
            }
            Event::PeerAddressChanged { old, new } => {
                tracing::info!(gateway = %name, %old, %new, "peer NAT mapping changed");
                self.remote = new;
            }
            Event::AddressAssigned { address, .. } => {
                tracing::info!(gateway = %name, %address, "internal address assigned");
            }
            Event::ReauthRequired => {
                // The configuration rekeys IKE SAs in place (RFC 7296 §2.8) and never
                // asks for reauthentication, so this only comes from a peer-imposed
                // limit: renegotiate from scratch.
                tracing::warn!(gateway = %name, "IKE SA reauthentication required: renegotiating");
                if let Some(sa) = &mut self.sa {
                    let _ = sa.delete(Instant::now());
                }
                self.drive(ctx);
                self.teardown(ctx);
                if self.spec.initiate {
                    self.initiate(ctx);
                }
            }
            Event::PeerDead => {
                self.publish(EventKind::Dpd, None, "peer dead: SAs cleared".into());
                tracing::warn!(gateway = %name, "peer is dead (DPD): clearing its SAs");
                self.teardown(ctx);
                self.retry_later(ctx);
            }
            Event::Closed { by_peer } => {
                self.publish(
                    EventKind::SaDown,
                    None,
                    format!("IKE SA closed{}", if by_peer { " by peer" } else { "" }),
                );
                tracing::info!(gateway = %name, by_peer, "IKE SA closed");
                if by_peer {
                    // The answer to the peer's Delete is held with the other datagrams
                    // of this exchange, and the teardown drops what is held: send it
                    // first, or the peer retransmits its Delete to an SA we no longer
                    // know until it gives up (charon: three retransmits, 24 s).
                    for m in self.held.drain(..) {
                        self.socket.do_send(m);
                    }
                }
                self.teardown(ctx);
                self.retry_later(ctx);
            }
            Event::Failed(e) => {
                self.publish(EventKind::SaDown, None, format!("IKE SA failed: {e}"));
                tracing::warn!(gateway = %name, error = %e, "IKE SA failed");
                self.teardown(ctx);
                self.retry_later(ctx);
            }
        }
    }

    /// Sends the held IKE datagrams. A clustered primary first commits the IKE SA's new
    /// state (message IDs, keys, children) to the log: write-ahead, so the standby never
    /// lags behind what the peer has seen.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.replicating {
            return;
        }
        let pending = match (&self.cluster, &self.sa) {
            (Some(rep), Some(sa)) if sa.is_established() => {
                let version = sa.state_version();
                (self.replicated != Some(version)).then(|| {
                    sa.snapshot(Instant::now())
                        .map(|snap| (rep.clone(), version, snap))
                })
            }
            _ => None,
        };
        let Some(pending) = pending else {
            // The IKE SA record commits beside the child SA installs (its entry follows
            // theirs in the log); the datagrams wait for both.
            if self.installing == 0 {
                for m in self.held.drain(..) {
                    self.socket.do_send(m);
                }
            }
            return;
        };
        let (rep, version, snapshot) = match pending {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(gateway = %self.spec.name, error = %e, "IKE SA snapshot failed");
                return;
            }
        };
        let (spi_i, spi_r) = snapshot.spis();
        let state = match records::encode_ike(&snapshot, SystemTime::now()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(gateway = %self.spec.name, error = %e, "IKE SA record does not encode");
                return;
            }
        };
        let record = IkeSaRecord {
            gateway: self.spec.name.clone(),
            group: rep.fence.group,
            spi_i,
            spi_r,
            version,
            state,
        };
        self.replicating = true;
        let handle = rep.handle.clone();
        let fence = rep.fence;
        let fut = async move { handle.propose(Command::PutIkeSa(fence, record)).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.replicating = false;
            match res {
                Ok(Ok(())) => {
                    act.replicated = Some(version);
                    act.flush(ctx);
                }
                Ok(Err(rejected)) => {
                    // Deposed: the datagrams belong to the new primary now.
                    tracing::warn!(gateway = %act.spec.name, %rejected, "IKE SA not replicated: datagrams dropped");
                    act.held.clear();
                }
                Err(e) => {
                    // Retransmissions (ours or the peer's) bring the exchange back.
                    tracing::warn!(gateway = %act.spec.name, error = %e, "IKE SA not replicated: datagrams dropped");
                    act.held.clear();
                }
            }
        }));
    }

    /// Proposes a write if this gateway is a clustered primary (fire and forget: the
    /// records it keeps tidy are also superseded by the next IKE SA record).
    fn write(&self, command: impl FnOnce(Fence) -> Command) {
        if let Some(rep) = &self.cluster {
            let handle = rep.handle.clone();
            let command = command(rep.fence);
            actix::spawn(async move {
                if let Err(e) = handle.propose(command).await {
                    tracing::warn!(error = %e, "cluster write lost");
                }
            });
        }
    }

    /// Starts the actor of a child SA pair, anchored on this gateway's SPU; the held
    /// datagrams leave once it is installed (or has failed).
    fn start_child(&mut self, inbound: SaConfig, outbound: SaConfig, ctx: &mut Context<Self>) {
        let (inbound_spi, outbound_spi) = (inbound.spi, outbound.spi);
        if self.spec.dynamic && self.client_routes.is_none() {
            self.client_routes = Some(dialup::route_client(
                self.spus.dataplane(),
                self.spec.binding,
                &outbound.selectors,
            ));
        }
        let (ready, installed) = tokio::sync::oneshot::channel();
        let anchor = self.anchor();
        let actor = ChildSa::new(self.spus.clone(), anchor, inbound, outbound, ready).start();
        self.children.push(Child {
            inbound_spi,
            outbound_spi,
            actor,
        });
        self.installing += 1;
        ctx.spawn(installed.into_actor(self).map(|_, act, ctx| {
            act.installing -= 1;
            act.flush(ctx);
        }));
    }

    /// Installs a pair only once its record and first reservation are committed: the
    /// standby must know every SA before a packet is sent on it.
    fn install_replicated(
        &mut self,
        install: &ike::engine::ChildSaInstall,
        mut inbound: SaConfig,
        mut outbound: SaConfig,
        from: (u64, u64),
        ctx: &mut Context<Self>,
    ) {
        let Some(rep) = self.cluster.clone() else {
            return;
        };
        let spi = inbound.spi;
        if self.committing.contains(&spi) || self.children.iter().any(|c| c.inbound_spi == spi) {
            // Two installs of one pair would both start above the same reservation:
            // the second would send the first's sequence numbers again. (A node that
            // took a pair over from its record sees it again when its restored IKE SA
            // finishes the exchange that made it: the peer answers a retransmission
            // from its cache, with the same keys.)
            tracing::info!(
                gateway = %self.spec.name,
                inbound = format_args!("{spi:#010x}"),
                "child SA already installed or being installed"
            );
            return;
        }
        let (mark, reserved) = from;
        let limit = reserved + FIRST_RESERVATION;
        let anchor = self.anchor();
        let record = match records::encode_child(install) {
            Ok(secret) => ChildSaRecord {
                gateway: self.spec.name.clone(),
                group: rep.fence.group,
                inbound_spi: inbound.spi,
                outbound_spi: outbound.spi,
                anchor: anchor as u32,
                install: secret,
            },
            Err(e) => {
                tracing::error!(gateway = %self.spec.name, error = %e, "child SA record does not encode");
                return;
            }
        };
        inbound.initial_seq = mark;
        outbound.initial_seq = reserved;
        outbound.seq_limit = limit;
        let handle = rep.handle.clone();
        let fence = rep.fence;
        self.installing += 1;
        self.committing.insert(spi);
        let generation = self.generation;
        // One entry carries the record and the reservation the SA starts with.
        let fut = async move {
            handle
                .propose(Command::PutChildSa {
                    fence,
                    record,
                    reserve: limit,
                })
                .await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.installing -= 1;
            if act.generation != generation {
                tracing::info!(gateway = %act.spec.name, inbound = format_args!("{spi:#010x}"), "child SA committed after a teardown: not installed");
                act.flush(ctx);
                return;
            }
            act.committing.remove(&spi);
            match res {
                Ok(Ok(())) => {
                    act.reservations
                        .insert(outbound.spi, (limit, ha::RateMeter::new()));
                    act.start_child(inbound, outbound, ctx);
                }
                Ok(Err(e)) => {
                    tracing::warn!(gateway = %act.spec.name, error = %e, "child SA not replicated: not installed");
                    act.flush(ctx);
                }
                Err(e) => {
                    tracing::warn!(gateway = %act.spec.name, error = %e, "child SA not replicated: not installed");
                    act.flush(ctx);
                }
            }
        }));
    }

    /// Asks the log for more outbound sequence numbers; the dataplane may use them once
    /// committed.
    fn reserve_more(
        &mut self,
        key: dataplane::sa::SaKey,
        seq: u64,
        limit: u64,
        ctx: &mut Context<Self>,
    ) {
        let Some(rep) = self.cluster.clone() else {
            return;
        };
        let policy = ha::ReservePolicy {
            min_block: FIRST_RESERVATION,
            ..ha::ReservePolicy::default()
        };
        let entry = self
            .reservations
            .entry(key.spi)
            .or_insert((limit, ha::RateMeter::new()));
        let rate = entry.1.sample(Instant::now(), seq);
        let upto = policy.next_limit(seq, limit.max(entry.0), rate);
        let handle = rep.handle.clone();
        let sa = SaId {
            gateway: self.spec.name.clone(),
            spi: key.spi,
        };
        let fence = rep.fence;
        let fut = async move { handle.propose(Command::Reserve { fence, sa, upto }).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
            if let Ok(Ok(())) = res {
                if let Some(e) = act.reservations.get_mut(&key.spi) {
                    e.0 = e.0.max(upto);
                }
                if let Some(anchor) = act.anchor
                    && let Err(e) = act.spus.extend_reservation(anchor, key, upto)
                {
                    tracing::warn!(gateway = %act.spec.name, error = %e, "extending the reservation");
                }
            }
        }));
    }

    /// Continues the replicated IKE SA and child SAs of this gateway.
    fn restore(&mut self, state: &ClusterState, ctx: &mut Context<Self>) {
        let Some(record) = state.ike_sa(&self.spec.name) else {
            if self.spec.initiate {
                self.initiate(ctx);
            }
            return;
        };
        // The snapshot's timers run from when it was taken: anchored that long ago in
        // this node's clock, a rekey or DPD that fell due meanwhile fires at once.
        let restored =
            records::decode_ike(&record.state, SystemTime::now()).and_then(|(snap, age)| {
                let taken = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                IkeSa::restore(self.spec.ike.clone(), snap, Self::rng(), taken)
                    .map_err(|e| e.to_string())
            });
        let sa = match restored {
            Ok(sa) => sa,
            Err(e) => {
                tracing::error!(gateway = %self.spec.name, error = %e, "replicated IKE SA not restorable: negotiating anew");
                if self.spec.initiate {
                    self.initiate(ctx);
                }
                return;
            }
        };
        tracing::warn!(
            gateway = %self.spec.name,
            spi_i = format_args!("{:016x}", record.spi_i),
            spi_r = format_args!("{:016x}", record.spi_r),
            "IKE SA taken over from the replicated state"
        );
        self.publish(
            EventKind::SaUp,
            Some(record.spi_i),
            format!(
                "IKE SA {:016x}/{:016x} taken over from the replicated state (epoch {})",
                record.spi_i,
                record.spi_r,
                self.cluster.as_ref().map_or(0, |c| c.fence.epoch)
            ),
        );
        self.replicated = Some(sa.state_version());
        let remote = sa.addresses().1;
        // Old IKE SAs restored with it still answer for a while (a retransmission of
        // the IKE rekey request whose answer the peer missed comes on the old SA).
        let retiring: Vec<u64> = sa.local_spis().into_iter().skip(1).collect();
        self.set_sa(sa, ctx);
        for old in retiring {
            self.socket.do_send(RouteSpi {
                spi: old,
                gateway: Some(ctx.address()),
            });
            self.unroute_later(old, ctx);
        }
        self.remote = remote;
        self.established_at = Some(SystemTime::now());
        let children: Vec<ChildSaRecord> = state.child_sas(&self.spec.name).cloned().collect();
        self.reinstall(state, &children, ctx);
        self.drive(ctx);
    }

    /// Installs replicated pairs on the current anchor, inbound above the replicated
    /// mark and outbound above the committed reservation.
    fn reinstall(
        &mut self,
        state: &ClusterState,
        children: &[ChildSaRecord],
        ctx: &mut Context<Self>,
    ) {
        for child in children {
            let install = match records::decode_child(&child.install) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(gateway = %self.spec.name, error = %e, "replicated child SA not decodable");
                    continue;
                }
            };
            let udp_encap = install.udp_encap.map(|(local_port, remote_port)| UdpEncap {
                local_port,
                remote_port,
            });
            let Ok((inbound, outbound)) = mapping::child_sas(&install, &self.spec, udp_encap)
            else {
                continue;
            };
            let mark = state
                .replay_mark(&SaId {
                    gateway: self.spec.name.clone(),
                    spi: inbound.spi,
                })
                .unwrap_or(0);
            let reserved = state
                .reservation(&SaId {
                    gateway: self.spec.name.clone(),
                    spi: outbound.spi,
                })
                .unwrap_or(0);
            tracing::info!(
                gateway = %self.spec.name,
                inbound = format_args!("{:#010x}", inbound.spi),
                outbound = format_args!("{:#010x}", outbound.spi),
                replay_mark = mark,
                reservation = reserved,
                "child SA taken over"
            );
            self.publish(
                EventKind::SaUp,
                Some(u64::from(inbound.spi)),
                format!(
                    "IPsec SA {:#010x} taken over: inbound above {mark}, outbound above {reserved}",
                    inbound.spi
                ),
            );
            self.install_replicated(&install, inbound, outbound, (mark, reserved), ctx);
        }
    }

    fn install_child(&mut self, install: &ike::engine::ChildSaInstall, ctx: &mut Context<Self>) {
        let udp_encap = install.udp_encap.map(|(local_port, remote_port)| UdpEncap {
            local_port,
            remote_port,
        });
        match mapping::child_sas(install, &self.spec, udp_encap) {
            Ok((inbound, outbound)) if self.cluster.is_some() => {
                self.install_replicated(install, inbound, outbound, (0, 0), ctx);
            }
            Ok((inbound, outbound)) => self.start_child(inbound, outbound, ctx),
            Err(e) => {
                tracing::error!(gateway = %self.spec.name, error = %e, "child SA not installable");
            }
        }
    }

    fn close_child(&mut self, inbound_spi: u32) {
        if let Some(i) = self
            .children
            .iter()
            .position(|c| c.inbound_spi == inbound_spi)
        {
            let c = self.children.remove(i);
            c.actor.do_send(Close);
            self.reservations.remove(&c.outbound_spi);
            let sa = SaId {
                gateway: self.spec.name.clone(),
                spi: inbound_spi,
            };
            self.write(|fence| Command::DeleteChildSa(fence, sa));
        }
    }

    fn teardown(&mut self, ctx: &mut Context<Self>) {
        self.drop_replacement();
        self.generation += 1;
        self.committing.clear();
        if self.sa.is_some() {
            let gateway = self.spec.name.clone();
            self.write(|fence| Command::DeleteIkeSa(fence, gateway));
        }
        self.replicated = None;
        self.held.clear();
        self.reservations.clear();
        self.sa = None;
        self.established_at = None;
        self.route(None, ctx);
        for c in self.children.drain(..) {
            // Stopping the actor removes its SAs from the dataplane.
            c.actor.do_send(Close);
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        // The tunnel is gone: the next one is placed anew (on an SPU added since, say).
        if self.anchor.take().is_some() {
            self.spus.release(self.spec.binding);
        }
    }
}

impl Gateway {
    /// One `vpn-monitor` interval (see `runtime::vpn_monitor`): probes only while the
    /// tunnel is up; with `optimized`, first reads whether traffic arrived.
    fn monitor_tick(&mut self, ctx: &mut Context<Self>) {
        let Some(spec) = self.spec.monitor.clone() else {
            return;
        };
        let up = self.sa.as_ref().is_some_and(IkeSa::is_established)
            && !self.children.is_empty()
            && !self.passive();
        if !up {
            if let Some(p) = &mut self.prober {
                p.reset();
            }
            return;
        }
        if self.prober.is_none() {
            let peer = match self.spec.remote {
                IpAddr::V4(a) => a,
                // The spec requires an IPv4 destination-ip then.
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            match Prober::open(&spec, peer) {
                Ok(p) => {
                    tracing::info!(gateway = %self.spec.name, destination = %p.destination(), device = %spec.device, interval = ?spec.interval, "vpn-monitor: probing through the tunnel");
                    self.prober = Some(p);
                }
                Err(e) => {
                    if !self.prober_failed {
                        tracing::warn!(gateway = %self.spec.name, error = %e, "vpn-monitor: cannot open the probe socket; not monitoring");
                        self.prober_failed = true;
                    }
                    return;
                }
            }
        }
        if !spec.optimized {
            self.monitor_verdict(false, ctx);
            return;
        }
        let spus = self.spus.clone();
        let inbound: Vec<u32> = self.children.iter().map(|c| c.inbound_spi).collect();
        ctx.spawn(async move { spus.stats().await }.into_actor(self).map(
            move |stats, act, ctx| {
                let rx = stats
                    .iter()
                    .flat_map(|w| w.engine.sas.iter())
                    .filter(|s| {
                        s.key.direction == dataplane::sa::Direction::Inbound
                            && inbound.contains(&s.key.spi)
                    })
                    .map(|s| s.counters.packets)
                    .sum::<u64>();
                let seen = rx != act.monitor_rx;
                act.monitor_rx = rx;
                act.monitor_verdict(seen, ctx);
            },
        ));
    }

    fn monitor_verdict(&mut self, traffic_seen: bool, ctx: &mut Context<Self>) {
        let Some(p) = &mut self.prober else {
            return;
        };
        let destination = p.destination();
        match p.tick(traffic_seen) {
            Verdict::Same => {}
            Verdict::Up => {
                tracing::info!(gateway = %self.spec.name, %destination, "vpn-monitor: destination answers through the tunnel");
            }
            Verdict::Down => {
                p.reset();
                tracing::warn!(gateway = %self.spec.name, %destination, "vpn-monitor: destination unreachable through the tunnel: deleting the IKE SA and renegotiating");
                self.publish(
                    EventKind::SaDown,
                    None,
                    format!("vpn-monitor: {destination} unreachable through the tunnel"),
                );
                if let Some(sa) = &mut self.sa
                    && sa.delete(Instant::now()).is_ok()
                {
                    send_at_once(&self.socket, &mut self.buf, sa);
                }
                self.teardown(ctx);
                self.retry_later(ctx);
            }
        }
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(m) = &self.spec.monitor {
            ctx.run_interval(m.interval, |act, ctx| act.monitor_tick(ctx));
        }
        // A clustered gateway waits for its redundancy group (`Activate`).
        if self.spec.initiate && !self.passive() {
            self.initiate(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(routing) = self.client_routes.take() {
            dialup::unroute_client(self.spus.dataplane(), routing);
        }
    }
}

impl Handler<Datagram> for Gateway {
    type Result = ();

    fn handle(&mut self, msg: Datagram, ctx: &mut Context<Self>) {
        // One span per message: what an exported trace shows of an exchange.
        let _in_span = tracing::info_span!(
            "ike_message",
            gateway = %self.spec.name,
            peer = %msg.from,
            bytes = msg.data.len()
        )
        .entered();
        if self.passive() {
            tracing::debug!(gateway = %self.spec.name, "IKE datagram while standing by: dropped");
            return;
        }
        if self.route_to_replacement(&msg, ctx) {
            return;
        }
        // Both ends initiating at once: exactly one of the two IKE_SA_INITs must win, or
        // each drops the other's request and both time out. The end with the higher
        // address yields and answers; the other ignores the request and keeps its own.
        let crossing = is_init_request(&msg.data)
            && self
                .sa
                .as_ref()
                .is_some_and(|sa| sa.is_initiator() && !sa.is_established());
        if crossing {
            if self.spec.local > self.spec.remote {
                tracing::info!(gateway = %self.spec.name, "simultaneous initiation: yielding to the peer");
                self.teardown(ctx);
            } else {
                return;
            }
        }
        // A fresh IKE_SA_INIT (another initiator SPI) while our half-open SA, as
        // responder, still waits for its IKE_AUTH: the peer gave that negotiation up (it
        // restarted, or its cluster's other node took over mid-negotiation). Keeping the
        // half-open SA would ignore the peer until it timed out.
        let abandoned = is_init_request(&msg.data)
            && self.sa.as_ref().is_some_and(|sa| {
                !sa.is_initiator()
                    && !sa.is_established()
                    && header_spis(&msg.data).is_some_and(|(i, _)| i != sa.spis().0)
            });
        if abandoned {
            tracing::info!(gateway = %self.spec.name, peer = %msg.from, "peer started a new IKE_SA_INIT: dropping the half-open IKE SA");
            self.teardown(ctx);
        }
        if self.sa.is_none() {
            let sa = IkeSa::respond(
                self.spec.ike.clone(),
                msg.local,
                msg.from,
                Self::rng(),
                Instant::now(),
            );
            tracing::info!(gateway = %self.spec.name, peer = %msg.from, "responding to IKE_SA_INIT");
            self.set_sa(sa, ctx);
        }
        if let Some(sa) = &mut self.sa
            && let Err(e) = sa.handle_datagram(
                Instant::now(),
                SystemTime::now(),
                msg.from,
                msg.local,
                &msg.data,
            )
        {
            tracing::debug!(gateway = %self.spec.name, error = %e, "IKE datagram not accepted");
        }
        self.drive(ctx);
    }
}

impl Handler<Initiate> for Gateway {
    type Result = ();

    fn handle(&mut self, _: Initiate, ctx: &mut Context<Self>) {
        self.initiate(ctx);
    }
}

impl Handler<Shutdown> for Gateway {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        if self.spec.group.is_some() {
            // A cluster member going down hands its tunnels over; deleting them at the
            // peer would end them for the whole cluster.
            self.cluster = None;
            self.teardown(ctx);
            ctx.stop();
            return;
        }
        if let Some(sa) = &mut self.sa
            && sa.delete(Instant::now()).is_ok()
        {
            // Flush the Delete before the SA goes away.
            send_at_once(&self.socket, &mut self.buf, sa);
        }
        self.teardown(ctx);
        ctx.stop();
    }
}

impl Handler<DataplaneNotice> for Gateway {
    type Result = ();

    fn handle(&mut self, msg: DataplaneNotice, ctx: &mut Context<Self>) {
        let key = match msg.event {
            EngineEvent::SoftLifetime(k) | EngineEvent::RekeyRequired(k) => k,
            EngineEvent::ReservationLow { key, seq, limit } => {
                if self.children.iter().any(|c| c.outbound_spi == key.spi) {
                    self.reserve_more(key, seq, limit, ctx);
                }
                return;
            }
            EngineEvent::HardLifetime(_) => return,
            EngineEvent::Acquire(binding) => {
                // `establish-tunnels on-traffic`: the first packet for the tunnel
                // starts the negotiation (and, once a second, retries a failed one).
                if self.spec.on_traffic
                    && binding == self.spec.binding
                    && self.sa.is_none()
                    && !self.passive()
                {
                    tracing::info!(gateway = %self.spec.name, "traffic for the tunnel: initiating");
                    self.initiate(ctx);
                }
                return;
            }
        };
        let Some(child) = self
            .children
            .iter()
            .find(|c| c.inbound_spi == key.spi || c.outbound_spi == key.spi)
        else {
            return;
        };
        let spi = child.inbound_spi;
        if let Some(sa) = &mut self.sa {
            tracing::info!(gateway = %self.spec.name, spi = format_args!("{spi:#010x}"), "volume lifetime reached: rekeying child SA");
            if let Err(e) = sa.rekey_child(spi, Instant::now()) {
                tracing::warn!(gateway = %self.spec.name, error = %e, "child rekey not started");
            }
        }
        self.drive(ctx);
    }
}

impl Handler<Status> for Gateway {
    type Result = ResponseActFuture<Self, GatewayInfo>;

    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        let children: Vec<_> = self.children.iter().map(|c| c.actor.clone()).collect();
        let base = GatewayInfo {
            name: self.spec.name.clone(),
            vpn: self.spec.vpn.clone(),
            binding: self.spec.binding,
            local: self
                .sa
                .as_ref()
                .map_or(SocketAddr::new(self.spec.local, 500), |sa| sa.addresses().0),
            remote: self.remote,
            established_at: self.established_at,
            suite: self.sa.as_ref().and_then(IkeSa::negotiated_suite),
            spis: self.sa.as_ref().map(IkeSa::spis),
            established: self.sa.as_ref().is_some_and(IkeSa::is_established),
            initiator: self.sa.as_ref().is_some_and(IkeSa::is_initiator),
            anchor: self.anchor,
            children: Vec::new(),
        };
        Box::pin(
            async move {
                let mut infos = Vec::new();
                for c in children {
                    if let Ok(i) = c.send(Describe).await {
                        infos.push(i);
                    }
                }
                infos
            }
            .into_actor(self)
            .map(move |children, _, _| GatewayInfo { children, ..base }),
        )
    }
}

impl Handler<Terminate> for Gateway {
    type Result = bool;

    fn handle(&mut self, _: Terminate, ctx: &mut Context<Self>) -> bool {
        let Some(sa) = &mut self.sa else {
            return false;
        };
        let _ = sa.delete(Instant::now());
        // Send the Delete, then forget the SA without waiting for the answer.
        send_at_once(&self.socket, &mut self.buf, sa);
        self.publish(EventKind::SaDown, None, "IKE SA cleared by operator".into());
        self.teardown(ctx);
        self.retry_later(ctx);
        true
    }
}

impl Handler<RekeyChildren> for Gateway {
    type Result = Result<usize, String>;

    fn handle(&mut self, _: RekeyChildren, ctx: &mut Context<Self>) -> Self::Result {
        let Some(sa) = &mut self.sa else {
            return Err("no IKE SA".into());
        };
        let now = Instant::now();
        let mut started = 0;
        for c in &self.children {
            sa.rekey_child(c.inbound_spi, now)
                .map_err(|e| e.to_string())?;
            started += 1;
        }
        self.drive(ctx);
        Ok(started)
    }
}

impl Handler<RekeyIke> for Gateway {
    type Result = Result<(u64, u64), String>;

    fn handle(&mut self, _: RekeyIke, ctx: &mut Context<Self>) -> Self::Result {
        if self.passive() {
            return Err("this node is not primary of the gateway's redundancy group".into());
        }
        let Some(sa) = &mut self.sa else {
            return Err("no IKE SA".into());
        };
        if !sa.is_established() {
            return Err("the IKE SA is not established yet".into());
        }
        let spis = sa.spis();
        sa.rekey_ike(Instant::now()).map_err(|e| e.to_string())?;
        self.drive(ctx);
        Ok(spis)
    }
}

/// Sends what `sa` queued now, bypassing the held datagrams: for a Delete sent just
/// before the SA is forgotten.
fn send_at_once(socket: &Addr<IkeSocket>, buf: &mut Vec<u8>, sa: &mut IkeSa) {
    while let Some(t) = sa.poll_transmit(buf) {
        socket.do_send(SendIke {
            src: t.local,
            dst: t.destination,
            natt: t.non_esp_marker,
            data: buf.get(..t.size).unwrap_or(buf).to_vec(),
        });
    }
}

/// The IKE SPIs (initiator's, responder's) of a datagram's header, if it has one.
fn header_spis(data: &[u8]) -> Option<(u64, u64)> {
    let spi = |at: usize| {
        data.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    Some((spi(0)?, spi(8)?))
}

/// True for an IKE_SA_INIT request (exchange 34, initiator flag, no responder SPI).
fn is_init_request(data: &[u8]) -> bool {
    data.len() >= 28
        && data[8..16].iter().all(|b| *b == 0)
        && data[18] == 34
        && data[19] & 0x20 == 0
        && data[19] & 0x08 != 0
}

impl Handler<Activate> for Gateway {
    type Result = ();

    fn handle(&mut self, msg: Activate, ctx: &mut Context<Self>) {
        let again = self.cluster.is_some();
        self.cluster = Some(Replication {
            handle: msg.handle,
            fence: msg.fence,
        });
        if again && self.sa.is_some() {
            // Primary again at a new epoch without having stood by: write everything
            // again under the new fence.
            self.replicated = None;
            self.drive(ctx);
            return;
        }
        self.teardown_silently(ctx);
        self.restore(&msg.state, ctx);
    }
}

impl Handler<Deactivate> for Gateway {
    type Result = ();

    fn handle(&mut self, _: Deactivate, ctx: &mut Context<Self>) {
        if self.cluster.take().is_some() {
            tracing::warn!(gateway = %self.spec.name, "standing by: SAs left to the new primary");
        }
        self.teardown_silently(ctx);
    }
}

impl Gateway {
    /// Forgets the SAs without Delete to the peer and without cluster writes.
    fn teardown_silently(&mut self, ctx: &mut Context<Self>) {
        let cluster = self.cluster.take();
        self.teardown(ctx);
        self.cluster = cluster;
    }
}

impl Handler<SpuFailed> for Gateway {
    type Result = ();

    /// A clustered primary reinstalls its pairs on the new anchor from the replicated
    /// records, above the committed reservation and replay mark: nothing is
    /// renegotiated. A standalone gateway has no reservation to restart outbound
    /// sequence numbers above, so it rekeys its child SAs (the IKE SA stays): the new
    /// pairs are installed on the new anchor.
    fn handle(&mut self, msg: SpuFailed, ctx: &mut Context<Self>) {
        if self.anchor != Some(msg.spu) {
            return;
        }
        let anchor = self.spus.anchor_for(self.spec.binding);
        self.anchor = Some(anchor);
        tracing::warn!(gateway = %self.spec.name, from = msg.spu, to = anchor, "tunnel re-anchored after an SPU failure");
        if let Some(rep) = self.cluster.clone() {
            let name = self.spec.name.clone();
            let fut = async move { rep.handle.read(|s| s.clone()).await };
            ctx.spawn(fut.into_actor(self).map(move |state, act, ctx| {
                let Ok(state) = state else {
                    return;
                };
                for c in act.children.drain(..) {
                    c.actor.do_send(Close);
                }
                act.reservations.clear();
                let children: Vec<ChildSaRecord> = state.child_sas(&name).cloned().collect();
                act.reinstall(&state, &children, ctx);
            }));
            return;
        }
        let spis: Vec<u32> = self.children.iter().map(|c| c.inbound_spi).collect();
        if let Some(sa) = &mut self.sa {
            for spi in spis {
                if let Err(e) = sa.rekey_child(spi, Instant::now()) {
                    tracing::warn!(gateway = %self.spec.name, error = %e, "child rekey after an SPU failure not started");
                }
            }
        }
        self.drive(ctx);
    }
}

/// A peer that lost its IKE SA (it restarted) or reauthenticates (RFC 7296 §2.8.3)
/// starts a new IKE SA while this gateway still holds an established one. The gateway
/// keeps one IKE SA, so the new one is negotiated beside the old (the *replacement*)
/// and takes its place once authenticated:
/// - with INITIAL_CONTACT (RFC 7296 §2.4) the old SA and its child SAs are deleted
///   locally, without a Delete, since the peer has lost them;
/// - without it the peer may still hold the old SA (a make-before-break
///   reauthentication), so it is deleted at the peer too.
///
/// "Every other IKE SA with the same identity" is scoped to this gateway, as
/// strongSwan scopes its uniqueness check to the connection: two VPNs to one peer are
/// separate IKE SAs, and a peer bringing both up after a restart may send
/// INITIAL_CONTACT in each.
impl Gateway {
    /// Hands the datagram to the replacement if it belongs to one, or starts one for
    /// a new IKE_SA_INIT request while the current SA is established. False if the
    /// datagram is the current SA's business.
    fn route_to_replacement(&mut self, msg: &Datagram, ctx: &mut Context<Self>) -> bool {
        let Some((spi_i, spi_r)) = header_spis(&msg.data) else {
            return false;
        };
        let ours = self.replacement.as_ref().is_some_and(|r| {
            let (i, r) = r.spis();
            spi_i == i && (spi_r == r || spi_r == 0)
        });
        let new = !ours
            && is_init_request(&msg.data)
            && self
                .sa
                .as_ref()
                .is_some_and(|sa| sa.is_established() && sa.spis().0 != spi_i);
        if new {
            self.drop_replacement();
            // We hold an SA with this peer, so this one is not our only contact.
            let config = ike::engine::IkeConfig {
                initial_contact: false,
                ..self.spec.ike.clone()
            };
            let sa = IkeSa::respond(config, msg.local, msg.from, Self::rng(), Instant::now());
            tracing::info!(gateway = %self.spec.name, peer = %msg.from, "peer starts a new IKE SA beside the established one");
            self.socket.do_send(RouteSpi {
                spi: sa.spis().1,
                gateway: Some(ctx.address()),
            });
            self.replacement = Some(sa);
            let spi = spi_i;
            ctx.run_later(REPLACEMENT_SETUP, move |act, ctx| {
                let stale = act
                    .replacement
                    .as_ref()
                    .is_some_and(|r| r.spis().0 == spi && !r.is_established());
                if stale {
                    tracing::info!(gateway = %act.spec.name, "replacement IKE SA not authenticated in time: dropped");
                    act.drop_replacement();
                    act.drive(ctx);
                }
            });
        } else if !ours {
            return false;
        }
        if let Some(r) = &mut self.replacement
            && let Err(e) = r.handle_datagram(
                Instant::now(),
                SystemTime::now(),
                msg.from,
                msg.local,
                &msg.data,
            )
        {
            tracing::debug!(gateway = %self.spec.name, error = %e, "IKE datagram not accepted by the replacement SA");
        }
        self.drive(ctx);
        true
    }

    /// Sends what the replacement queued and acts on its events: promoted once
    /// established, dropped if it fails.
    fn drive_replacement(&mut self, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.replacement else {
            return;
        };
        while let Some(t) = r.poll_transmit(&mut self.buf) {
            self.held.push(SendIke {
                src: t.local,
                dst: t.destination,
                natt: t.non_esp_marker,
                data: self.buf.get(..t.size).unwrap_or(&self.buf).to_vec(),
            });
        }
        let events: Vec<Event> = std::iter::from_fn(|| r.poll_event()).collect();
        if events
            .iter()
            .any(|e| matches!(e, Event::Established { .. }))
        {
            let contact = events
                .iter()
                .any(|e| matches!(e, Event::InitialContact { .. }));
            self.promote_replacement(contact, ctx);
            for e in events {
                self.on_event(e, ctx);
            }
        } else if r.is_closed() {
            let error = events.iter().find_map(|e| match e {
                Event::Failed(e) => Some(e.to_string()),
                _ => None,
            });
            tracing::info!(gateway = %self.spec.name, ?error, "replacement IKE SA failed; the established one stays");
            self.drop_replacement();
        }
    }

    /// The authenticated replacement becomes the gateway's IKE SA; the old one and its
    /// child SAs go, at the peer too unless it sent INITIAL_CONTACT.
    fn promote_replacement(&mut self, initial_contact: bool, ctx: &mut Context<Self>) {
        let Some(new) = self.replacement.take() else {
            return;
        };
        let (_, ours) = new.spis();
        self.remote = new.addresses().1;
        if let Some(mut old) = self.sa.replace(new) {
            if initial_contact {
                tracing::info!(gateway = %self.spec.name, "INITIAL_CONTACT: the previous IKE SA and its child SAs are deleted locally");
            } else if old.delete(Instant::now()).is_ok() {
                tracing::info!(gateway = %self.spec.name, "new IKE SA with the peer: the previous one is deleted");
                send_at_once(&self.socket, &mut self.buf, &mut old);
            }
        }
        let spis: Vec<u32> = self.children.iter().map(|c| c.inbound_spi).collect();
        for spi in spis {
            self.close_child(spi);
        }
        // Commits of the old SA's pairs still in flight must not install them.
        self.generation += 1;
        self.committing.clear();
        self.replicated = None;
        self.route(Some(ours), ctx);
        self.publish(
            EventKind::SaDown,
            None,
            format!(
                "IKE SA replaced by a new one from the peer{}",
                if initial_contact {
                    " (INITIAL_CONTACT)"
                } else {
                    ""
                }
            ),
        );
    }

    /// Forgets a replacement that is failing or no longer wanted.
    fn drop_replacement(&mut self) {
        if let Some(r) = self.replacement.take() {
            self.socket.do_send(RouteSpi {
                spi: r.spis().1,
                gateway: None,
            });
        }
    }
}
