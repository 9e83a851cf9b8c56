//! The running daemon: actix actors around the sans-IO IKE engine and the dataplane.
//!
//! | actor | one per | does |
//! |---|---|---|
//! | [`ike_socket::IkeSocket`] | node | UDP 500, and IKE on 4500 through the dataplane's NAT-T socket; routes datagrams to gateways by SPI or peer |
//! | [`gateway::Gateway`] | configured IKE gateway | drives an `ike::engine::IkeSa`: negotiation, retransmits, events |
//! | [`child_sa::ChildSa`] | negotiated SA pair | installs the pair on its anchor SPU, removes it when it ends |
//! | [`spu::Spu`] | SPU worker, on its own arbiter | control side of a worker: installs and removes SAs, reads counters; SPUs can fail and be added at run time |
//!
//! The runtime is built from a [`NodeSpec`], not from the configuration file directly:
//! the configuration module resolves and validates, this module runs, and one mapping
//! function joins them.

pub mod backend;
pub mod child_sa;
pub mod dialup;
pub mod gateway;
pub mod ike_socket;
pub mod keylog;
mod mapping;
pub mod net;
pub mod policy;
pub mod reload;
pub mod spec;
pub mod spu;
pub mod table;
pub mod vpn_monitor;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;
use dataplane::sa::{DfBit, SaConfig, TunnelId};
use dataplane::worker::{Dataplane, DataplaneConfig, DataplaneEvent, TunnelConfig};

use self::gateway::Gateway;
use self::ike_socket::{IkeSocket, Received};
use self::spu::Spus;

/// Events the management feed buffers for a slow watcher before it must re-list.
const EVENT_FEED_CAPACITY: usize = 1024;

/// Everything the runtime needs to start a node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// SPU worker threads.
    pub workers: usize,
    /// Route-based tunnel interfaces (`st0.N`).
    pub tunnels: Vec<TunnelSpec>,
    /// IKE gateways.
    pub gateways: Vec<GatewaySpec>,
    /// Manually keyed SA pairs.
    pub manual: Vec<ManualSpec>,
    /// Where IKE listens (port 500 on each local address).
    pub ike_listen: Vec<SocketAddr>,
    /// Where the dataplane's NAT-T sockets listen (port 4500).
    pub natt_listen: Vec<SocketAddr>,
    /// The policy tunnel and SPD of policy-based VPNs; `None` without any.
    pub policy: Option<policy::PolicySpec>,
}

/// One `st0.N` interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// The unit N, which is also the binding of the SAs it carries.
    pub unit: TunnelId,
    /// Interface MTU.
    pub mtu: u32,
    /// Addresses on the interface (address, prefix length).
    pub addresses: Vec<(IpAddr, u8)>,
    /// Static routes through it (destination prefix).
    pub routes: Vec<(IpAddr, u8)>,
    /// IPv6 runs on it: an `inet6` address, an IPv6 route into it or an IPv6 traffic
    /// selector of a VPN bound to it (Junos: `family inet6` on the unit).
    pub ipv6: bool,
}

impl TunnelSpec {
    /// The Junos-style interface name.
    pub fn name(&self) -> String {
        format!("st0.{}", self.unit)
    }
}

/// ESP options of the SAs a gateway negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspOptions {
    /// Anti-replay window (0: off).
    pub replay_window: u32,
    /// Outer DF bit policy.
    pub df_bit: DfBit,
    /// Copy DSCP inner to outer.
    pub copy_dscp: bool,
    /// Path MTU towards the peer.
    pub path_mtu: u16,
    /// Hard volume lifetime in bytes (Junos `lifetime-kilobytes`); the SA is rekeyed at
    /// 90% of it.
    pub lifetime_bytes: Option<u64>,
}

impl Default for EspOptions {
    fn default() -> Self {
        Self {
            replay_window: 64,
            df_bit: DfBit::Clear,
            copy_dscp: true,
            path_mtu: 1500,
            lifetime_bytes: None,
        }
    }
}

/// One IKE gateway and the VPN it carries.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// Gateway name (configuration).
    pub name: String,
    /// VPN name (configuration).
    pub vpn: String,
    /// Our IKE address.
    pub local: IpAddr,
    /// The peer's address.
    pub remote: IpAddr,
    /// What the IKE SA negotiates.
    pub ike: ike::engine::IkeConfig,
    /// The `st0.N` unit the child SAs are bound to.
    pub binding: TunnelId,
    /// `vpn-monitor`: ICMP probes through the tunnel.
    pub monitor: Option<vpn_monitor::MonitorSpec>,
    /// Initiate at start (`establish-tunnels immediately`).
    pub initiate: bool,
    /// Initiate when traffic for the tunnel finds no SA (`on-traffic`, and
    /// `immediately` once the tunnel went down); not with `responder-only`.
    pub on_traffic: bool,
    /// A dial-up gateway (`dynamic`): `remote` is unspecified in the template, and each
    /// peer that calls gets a gateway actor of its own, with its address filled in
    /// (`runtime::dialup`), which ends with its IKE SA.
    pub dynamic: bool,
    /// ESP options.
    pub esp: EspOptions,
    /// The chassis-cluster redundancy group that owns the gateway; `None` standalone.
    /// A clustered gateway negotiates and answers only while its node is the group's
    /// primary, and writes its SAs through the replicated log.
    pub group: Option<u8>,
    /// Where the keys of its SAs are logged for Wireshark, if anywhere.
    pub key_log: Option<keylog::KeyLog>,
}

/// A manually keyed SA pair (Junos `vpn NAME manual`).
#[derive(Debug, Clone)]
pub struct ManualSpec {
    /// VPN name.
    pub name: String,
    /// Outbound SA.
    pub outbound: SaConfig,
    /// Inbound SA.
    pub inbound: SaConfig,
}

/// Why the node did not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The dataplane did not start.
    #[error("dataplane: {0}")]
    Dataplane(#[from] dataplane::worker::StartError),
    /// Interface addresses or routes could not be set.
    #[error("interface {interface}: {reason}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What failed.
        reason: String,
    },
    /// The IKE socket could not be bound.
    #[error("IKE socket {addr}: {source}")]
    IkeSocket {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The dataplane event thread could not be started.
    #[error("starting the dataplane event thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A manual SA was refused.
    #[error("manual VPN {vpn}: {reason}")]
    Manual {
        /// VPN name.
        vpn: String,
        /// Why.
        reason: String,
    },
}

/// A running node. Dropping it stops the dataplane.
#[derive(Debug)]
pub struct Node {
    /// The IKE socket actor.
    pub socket: Addr<IkeSocket>,
    /// The gateway actors (a reload adds and removes them).
    pub gateways: table::GatewayTable,
    /// Where gateways are started and stopped.
    env: GatewayEnv,
    /// The SPU control actors.
    pub spus: Spus,
    /// What the management API serves.
    pub backend: Arc<backend::RuntimeBackend>,
    /// Control of the dataplane (fence, sequence marks) for the chassis cluster.
    pub dataplane: dataplane::worker::DataplaneHandle,
    stop: Arc<AtomicBool>,
    bridge: Option<JoinHandle<()>>,
}

impl Node {
    /// Starts the dataplane, the interfaces, the IKE socket and the gateways. Must run
    /// inside an actix `System`.
    pub async fn start(spec: NodeSpec) -> Result<Node, RuntimeError> {
        let mut dp_config = DataplaneConfig {
            workers: spec.workers.max(1),
            tunnels: spec
                .tunnels
                .iter()
                .map(|t| TunnelConfig {
                    id: t.unit,
                    name: t.name(),
                    mtu: t.mtu,
                    ipv6: t.ipv6,
                })
                .collect(),
            udp_bind: spec.natt_listen.clone(),
            ..DataplaneConfig::default()
        };
        if let Some(p) = &spec.policy {
            p.attach(&mut dp_config);
        }
        let dataplane = Dataplane::start(dp_config)?;
        let handle = dataplane.handle();
        for t in &spec.tunnels {
            net::configure(t)
                .await
                .map_err(|reason| RuntimeError::Interface {
                    interface: t.name(),
                    reason,
                })?;
        }
        if let Some(p) = &spec.policy {
            p.apply(&handle)
                .await
                .map_err(|reason| RuntimeError::Interface {
                    interface: policy::POLICY_TUNNEL_NAME.to_owned(),
                    reason,
                })?;
        }

        // Tunnels keyed by IKE are anchored when their IKE SA is created (see
        // `spu`); a manual pair is there from the start. Installing an outbound SA
        // routes its tunnel's packets to the anchor.
        let spus = Spus::start(handle.clone());
        for m in &spec.manual {
            let anchor = spus.anchor_for(m.outbound.binding);
            spus.install_pair(anchor, m.inbound.clone(), m.outbound.clone())
                .await
                .map_err(|reason| RuntimeError::Manual {
                    vpn: m.name.clone(),
                    reason,
                })?;
            tracing::info!(vpn = %m.name, anchor, "manual SA pair installed");
        }

        let socket = IkeSocket::bind(&spec.ike_listen, handle.clone())
            .await?
            .start();
        let (events, _) = tokio::sync::broadcast::channel(EVENT_FEED_CAPACITY);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let env = GatewayEnv::new(socket.clone(), spus.clone(), events.clone(), cores.min(8));
        for g in &spec.gateways {
            env.start_vpn(g);
        }
        let gateways = env.table.clone();
        let backend = Arc::new(backend::RuntimeBackend::new(
            gateways.clone(),
            spus.clone(),
            events,
        ));

        let stop = Arc::new(AtomicBool::new(false));
        let bridge = spawn_bridge(
            dataplane,
            socket.clone(),
            gateways.clone(),
            spus.clone(),
            stop.clone(),
        )
        .map_err(RuntimeError::Thread)?;
        Ok(Node {
            socket,
            gateways,
            env,
            spus,
            backend,
            dataplane: handle,
            stop,
            bridge: Some(bridge),
        })
    }

    /// Hands the running configuration to a [`reload::Reloader`], which from then on
    /// serves the management API's configuration changes (and SIGHUP, through the
    /// address returned).
    pub fn enable_reload(&self, running: reload::Running) -> Addr<reload::Reloader> {
        let reloader = reload::Reloader::new(running, self.env.clone()).start();
        self.backend.set_reloader(reloader.clone());
        reloader
    }

    /// Sends Delete for every IKE SA and stops the dataplane.
    pub async fn shutdown(mut self) {
        for g in self.gateways.snapshot() {
            let _ = g.addr.send(gateway::Shutdown).await;
        }
        // Give the Delete datagrams a moment to leave before the sockets close.
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        self.stop_bridge();
    }

    fn stop_bridge(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.bridge.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_bridge();
    }
}

/// What starting and stopping gateways needs, shared by the node, its dial-up actors
/// and configuration reloads.
///
/// Gateways are spread over a few arbiters (threads) of their own, one per core: the
/// IKE work of a setup (Diffie-Hellman, signatures) is the node's heaviest control-plane
/// load, and on the system arbiter alone every gateway would queue behind one core
/// while a peer burst waits (`bench/compare.sh`'s fan test). A gateway and its child SA
/// actors stay on one arbiter for life, so each gateway's messages keep their order.
#[derive(Debug, Clone)]
pub struct GatewayEnv {
    /// The IKE socket actor.
    pub socket: Addr<IkeSocket>,
    /// The SPU control actors.
    pub spus: Spus,
    /// The management event feed.
    pub events: tokio::sync::broadcast::Sender<crate::mgmt::backend::EventView>,
    /// The gateways that exist.
    pub table: table::GatewayTable,
    homes: Arc<GatewayHomes>,
}

/// The arbiters gateways run on, used in turn.
#[derive(Debug)]
struct GatewayHomes {
    arbiters: Vec<actix::dev::ArbiterHandle>,
    next: std::sync::atomic::AtomicUsize,
}

impl Drop for GatewayHomes {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

impl GatewayEnv {
    /// Starts `count` gateway arbiters (at least one). Must run inside the actix system.
    fn new(
        socket: Addr<IkeSocket>,
        spus: Spus,
        events: tokio::sync::broadcast::Sender<crate::mgmt::backend::EventView>,
        count: usize,
    ) -> Self {
        let arbiters = (0..count.max(1))
            .map(|_| actix::Arbiter::new().handle())
            .collect();
        Self {
            socket,
            spus,
            events,
            table: table::GatewayTable::default(),
            homes: Arc::new(GatewayHomes {
                arbiters,
                next: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// Starts the gateway of VPN `spec`: its actor, or for a dial-up VPN the actor that
    /// starts one per calling peer.
    fn start_vpn(&self, spec: &GatewaySpec) {
        if spec.dynamic {
            let dialup = dialup::Dialup::new(spec.clone(), self.clone()).start();
            self.socket.do_send(ike_socket::RegisterDialup {
                local: spec.local,
                dialup: Some(dialup.clone()),
            });
            self.table.insert_dialup(&spec.vpn, dialup);
        } else {
            self.table.insert(self.start_gateway(spec));
        }
    }

    /// Stops the gateways of VPN `spec` (Delete to their peers), the dial-up actor too.
    async fn stop_vpn(&self, spec: &GatewaySpec) {
        if let Some(dialup) = self.table.remove_dialup(&spec.vpn) {
            self.socket.do_send(ike_socket::RegisterDialup {
                local: spec.local,
                dialup: None,
            });
            let _ = dialup.send(dialup::StopDialup).await;
        }
        for g in self.table.remove(&spec.vpn) {
            self.socket.do_send(ike_socket::UnregisterPeer {
                peer: spec.remote,
                gateway: g.addr.clone(),
            });
            let _ = g.addr.send(gateway::Shutdown).await;
        }
    }

    /// Starts the actor of gateway `spec` on the next gateway arbiter and routes its
    /// peer's new IKE SAs to it.
    fn start_gateway(&self, spec: &GatewaySpec) -> backend::GatewayHandle {
        let homes = &self.homes;
        let n = homes.next.fetch_add(1, Ordering::Relaxed) % homes.arbiters.len();
        let gateway = Gateway::new(
            spec.clone(),
            self.socket.clone(),
            self.spus.clone(),
            self.events.clone(),
        );
        let addr = Gateway::start_in_arbiter(&homes.arbiters[n], move |_| gateway);
        // A dial-up client's new IKE SAs reach it through its dial-up actor, by address
        // and port: by address alone, a second client behind the same NAT would land here.
        if !spec.dynamic {
            self.socket.do_send(ike_socket::RegisterPeer {
                peer: spec.remote,
                gateway: addr.clone(),
            });
        }
        backend::GatewayHandle {
            name: spec.name.clone(),
            vpn: spec.vpn.clone(),
            child_lifetime: spec.ike.child_lifetime.map(|l| l.hard),
            addr,
        }
    }
}

/// Owns the dataplane on a plain thread and forwards its events to the actors: IKE
/// messages from the NAT-T port to the socket, engine events to every gateway (which
/// ignore SAs that are not theirs).
fn spawn_bridge(
    dataplane: Dataplane,
    socket: Addr<IkeSocket>,
    gateways: table::GatewayTable,
    spus: Spus,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dp-events".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match dataplane.events().recv_timeout(Duration::from_millis(100)) {
                    Ok(DataplaneEvent::Ike { src, dst, message }) => socket.do_send(Received {
                        from: src,
                        local: dst,
                        natt: true,
                        data: message,
                    }),
                    Ok(DataplaneEvent::Engine { worker, event }) => {
                        for g in gateways.read().iter() {
                            g.addr.do_send(gateway::DataplaneNotice { worker, event });
                        }
                    }
                    Ok(DataplaneEvent::WorkerFailed { worker }) => {
                        let moved = spus.fail(worker);
                        tracing::error!(
                            spu = worker,
                            tunnels = moved.len(),
                            "SPU failed: re-anchoring its tunnels on the surviving SPUs"
                        );
                        for g in gateways.read().iter() {
                            g.addr.do_send(gateway::SpuFailed { spu: worker });
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            dataplane.shutdown();
        })
}
