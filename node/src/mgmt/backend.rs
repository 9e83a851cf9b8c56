//! What the management API needs from the running daemon, in the daemon's own terms.
//!
//! The gRPC service never touches actors or the dataplane: it calls a [`Backend`], which
//! the runtime implements (by `addr.send()` to its actors) and tests implement with
//! fixed data. The types here are plain domain values, not protobuf messages, so the
//! runtime does not depend on the wire format and the mapping between the two lives in
//! one place (`convert.rs`). They also serialize with serde: that is `vpnctl --json`'s
//! output, so scripts see the same shape the daemon reasons in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

pub use sa_sync::Member;
use serde::Serialize;
use tokio::sync::broadcast;

/// The daemon as the management API sees it: one method per RPC.
///
/// Read methods return snapshots; operations return once the daemon has accepted the
/// request (an initiate does not wait for the peer to answer: its outcome arrives as an
/// [`EventView`]). Names are not checked for existence by the service: an unknown VPN or
/// gateway is the backend's [`BackendError::NotFound`].
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// IKE SAs, of one gateway if `gateway` is given.
    async fn list_ike_sas(&self, gateway: Option<&str>) -> Result<Vec<IkeSaView>, BackendError>;

    /// IPsec SA pairs, filtered by VPN and by gateway when given.
    async fn list_ipsec_sas(
        &self,
        vpn: Option<&str>,
        gateway: Option<&str>,
    ) -> Result<Vec<IpsecSaView>, BackendError>;

    /// Counters of every SPU.
    async fn statistics(&self) -> Result<StatsView, BackendError>;

    /// The anchor SPU of every tunnel.
    async fn tunnel_map(&self) -> Result<Vec<TunnelMapEntry>, BackendError>;

    /// Brings `vpn` up now.
    async fn initiate(&self, vpn: &str) -> Result<OperationOutcome, BackendError>;

    /// Deletes the child SAs of a VPN, or a gateway's IKE SA with its child SAs.
    async fn terminate(&self, target: TerminateTarget) -> Result<OperationOutcome, BackendError>;

    /// Rekeys the child SAs of `vpn` now.
    async fn rekey(&self, vpn: &str) -> Result<OperationOutcome, BackendError>;

    /// Rekeys the IKE SA of `gateway` now.
    async fn rekey_ike(&self, gateway: &str) -> Result<OperationOutcome, BackendError>;

    /// Deletes IKE SAs (and with them their child SAs).
    async fn clear_ike_sas(&self, scope: ClearScope) -> Result<OperationOutcome, BackendError>;

    /// Adds or replaces the objects a TOML fragment defines. The whole resulting
    /// configuration must validate before anything changes; problems come back as
    /// [`BackendError::Invalid`] with the dotted key path of each.
    async fn apply_config(&self, toml_fragment: &str) -> Result<OperationOutcome, BackendError>;

    /// Removes one configuration object. Refused with [`BackendError::Invalid`] when
    /// another object still references it.
    async fn remove_config_object(
        &self,
        kind: ConfigObjectKind,
        name: &str,
    ) -> Result<OperationOutcome, BackendError>;

    /// A new subscription to the event feed, starting now. Each `WatchEvents` call takes
    /// its own, so one slow client lags only itself.
    fn events(&self) -> broadcast::Receiver<EventView>;

    /// Adds an SPU (a dataplane worker) while the node runs, as when a services card is
    /// inserted: no tunnel moves, tunnels set up afterwards may be anchored on it.
    async fn add_spu(&self) -> Result<SpuAdded, BackendError>;

    // The chassis cluster methods below have defaults that refuse with
    // [`BackendError::not_clustered`], so a standalone daemon (and every test backend)
    // implements none of them and still answers the RPCs truthfully.

    /// Redundancy groups and their primaries (`show chassis cluster status`).
    async fn cluster_status(&self) -> Result<ClusterStatusView, BackendError> {
        Err(BackendError::not_clustered())
    }

    /// Cluster counters and replication state (`show chassis cluster statistics`).
    async fn cluster_statistics(&self) -> Result<ClusterStatisticsView, BackendError> {
        Err(BackendError::not_clustered())
    }

    /// Makes `node` (node0 or node1, checked by the service) primary for redundancy
    /// group `group` and pins the group there until [`Backend::reset_failover`].
    async fn request_failover(
        &self,
        _group: u8,
        _node: Member,
    ) -> Result<OperationOutcome, BackendError> {
        Err(BackendError::not_clustered())
    }

    /// Unpins redundancy group `group` after a manual failover.
    async fn reset_failover(&self, _group: u8) -> Result<OperationOutcome, BackendError> {
        Err(BackendError::not_clustered())
    }

    /// Fault injection: takes SPU `spu` out of service as if its card had failed.
    async fn fail_spu(&self, _spu: u32) -> Result<OperationOutcome, BackendError> {
        Err(BackendError::not_clustered())
    }
}

/// Why the backend refused or failed a request. Each variant maps to one gRPC status
/// code, so the daemon chooses what the client sees by choosing the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The named object does not exist (`NOT_FOUND`).
    #[error("{kind} \"{name}\" is not configured")]
    NotFound {
        /// What was looked for: `vpn`, `gateway`, `ike proposal`, ...
        kind: String,
        /// The name asked for.
        name: String,
    },
    /// The request or the configuration it would produce is invalid
    /// (`INVALID_ARGUMENT`); every problem is listed.
    #[error("{}", FieldErrors(.0))]
    Invalid(Vec<FieldError>),
    /// The object exists but its state forbids the operation (`FAILED_PRECONDITION`),
    /// such as rekeying a VPN that has no SA.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The daemon cannot serve the request now (`UNAVAILABLE`): starting or stopping.
    #[error("{0}")]
    Unavailable(String),
    /// A fault inside the daemon (`INTERNAL`).
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    /// The answer of the chassis cluster operations on a standalone node
    /// (`FAILED_PRECONDITION`): the request is fine, the node is not in that state.
    pub fn not_clustered() -> Self {
        BackendError::FailedPrecondition(NOT_CLUSTERED.to_owned())
    }
}

/// The message of [`BackendError::not_clustered`].
pub const NOT_CLUSTERED: &str =
    "this node is not in a chassis cluster (no [chassis.cluster] in its configuration)";

/// One invalid field: its path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// A request field (`vpn`) or a dotted configuration key
    /// (`security.ike.gateway.gw-b.ike-policy`), optionally prefixed with the fragment's
    /// `line:column`.
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem on its own line, as the configuration loader prints them.
struct FieldErrors<'a>(&'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The state of an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IkeSaState {
    /// Authenticated; child SAs can be negotiated on it.
    Established,
    /// IKE_SA_INIT or IKE_AUTH in progress.
    Connecting,
    /// Deleted or failed.
    Down,
}

/// Our role in the exchange that created an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IkeRole {
    /// We sent IKE_SA_INIT.
    Initiator,
    /// The peer did.
    Responder,
}

/// One IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IkeSaView {
    /// The `[security.ike.gateway.NAME]` it belongs to.
    pub gateway: String,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// Our address and port.
    pub local: SocketAddr,
    /// Initiator SPI (Junos: initiator cookie).
    #[serde(serialize_with = "ser::hex_u64")]
    pub spi_i: u64,
    /// Responder SPI; 0 until the responder answered.
    #[serde(serialize_with = "ser::hex_u64")]
    pub spi_r: u64,
    /// Where the SA is in its life.
    pub state: IkeSaState,
    /// Our role.
    pub role: IkeRole,
    /// When it was established (`None` while it is not).
    #[serde(rename = "established_at_unix", serialize_with = "ser::unix_secs")]
    pub established_at: Option<SystemTime>,
    /// Negotiated cipher, in the configuration's spelling.
    pub encryption: String,
    /// Negotiated integrity transform; `None` with an AEAD cipher.
    pub integrity: Option<String>,
    /// Negotiated PRF.
    pub prf: String,
    /// Negotiated Diffie-Hellman group.
    pub dh_group: String,
    /// The SPU the SA is anchored on.
    pub anchor_spu: u32,
}

/// IPsec protocol of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpsecProtocol {
    /// RFC 4303.
    Esp,
    /// RFC 4302.
    Ah,
}

impl IpsecProtocol {
    /// Junos' spelling in tables (`ESP:aes-gcm-256/None`).
    pub fn label(self) -> &'static str {
        match self {
            IpsecProtocol::Esp => "ESP",
            IpsecProtocol::Ah => "AH",
        }
    }
}

/// An IKEv2 traffic selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrafficSelectorView {
    /// First address of the range.
    pub start: IpAddr,
    /// Last address of the range.
    pub end: IpAddr,
    /// IP protocol number; 0: any.
    pub protocol: u8,
    /// First port (0 with `end_port` 65535: any).
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
}

/// The inbound and outbound SA of one VPN, with their counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpsecSaView {
    /// The `[security.ipsec.vpn.NAME]`.
    pub vpn: String,
    /// The IKE gateway that negotiated it; `None` for a manually keyed VPN.
    pub gateway: Option<String>,
    /// `st0.N` of a route-based VPN; `None` for a policy-based one.
    pub bind_interface: Option<String>,
    /// Where the outbound SA sends to.
    pub remote: SocketAddr,
    /// SPI of the inbound SA.
    #[serde(serialize_with = "ser::hex_u32")]
    pub inbound_spi: u32,
    /// SPI of the outbound SA.
    #[serde(serialize_with = "ser::hex_u32")]
    pub outbound_spi: u32,
    /// ESP or AH.
    pub protocol: IpsecProtocol,
    /// Cipher, in the configuration's spelling.
    pub encryption: String,
    /// Integrity transform; `None` with an AEAD cipher.
    pub integrity: Option<String>,
    /// Extended (64-bit) sequence numbers.
    pub esn: bool,
    /// The SPU both directions are anchored on.
    pub anchor_spu: u32,
    /// Packets decrypted.
    pub packets_in: u64,
    /// Packets encrypted.
    pub packets_out: u64,
    /// Bytes decrypted.
    pub bytes_in: u64,
    /// Bytes encrypted.
    pub bytes_out: u64,
    /// Drops of this SA by reason (the dataplane's `DropReason::name`); zero counts may
    /// be left out.
    pub drops: BTreeMap<String, u64>,
    /// Seconds until the hard lifetime.
    pub lifetime_remaining_seconds: u64,
    /// Kilobytes left of the volume lifetime; `None` when there is none.
    pub lifetime_remaining_kilobytes: Option<u64>,
    /// Our traffic selectors.
    pub local_selectors: Vec<TrafficSelectorView>,
    /// The peer's.
    pub remote_selectors: Vec<TrafficSelectorView>,
}

/// Counters of one SPU (worker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpuStatsView {
    /// SPU index.
    pub spu: u32,
    /// SAs (one per direction) installed on it.
    pub active_sas: u32,
    /// Packets decrypted.
    pub packets_in: u64,
    /// Packets encrypted.
    pub packets_out: u64,
    /// Bytes decrypted.
    pub bytes_in: u64,
    /// Bytes encrypted.
    pub bytes_out: u64,
    /// Drops by reason (`DropReason::name`).
    pub drops: BTreeMap<String, u64>,
    /// I/O counters by name (the fields of the dataplane's `IoCounters`).
    pub io: BTreeMap<String, u64>,
}

/// Dataplane counters of the node. Counters are keyed by name rather than by the
/// dataplane's enums so that a new drop reason reaches clients without an API change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// One entry per SPU, in SPU order.
    pub spus: Vec<SpuStatsView>,
}

impl StatsView {
    /// Drops by reason summed over all SPUs.
    pub fn total_drops(&self) -> BTreeMap<String, u64> {
        sum_maps(self.spus.iter().map(|s| &s.drops))
    }

    /// I/O counters summed over all SPUs.
    pub fn total_io(&self) -> BTreeMap<String, u64> {
        sum_maps(self.spus.iter().map(|s| &s.io))
    }
}

fn sum_maps<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for map in maps {
        for (k, v) in map {
            let slot: &mut u64 = total.entry(k.clone()).or_default();
            *slot = slot.saturating_add(*v);
        }
    }
    total
}

/// Where one tunnel is anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelMapEntry {
    /// `st0.N`, or the gateway's name for a policy-based VPN.
    pub tunnel: String,
    /// The IKE gateway keying it.
    pub gateway: String,
    /// The node of a chassis cluster (0 on a single node).
    pub spc: u32,
    /// The SPU.
    pub spu: u32,
}

/// An SPU added at run time (`request chassis spu add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpuAdded {
    /// Its number, as in the statistics and the tunnel map.
    pub spu: u32,
    /// What was done, for the operator.
    pub message: String,
}

/// What `Terminate` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateTarget {
    /// The child SAs of this VPN; the IKE SA stays.
    Vpn(String),
    /// This gateway's IKE SA and all its child SAs.
    Gateway(String),
}

/// Which IKE SAs `ClearIkeSas` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClearScope {
    /// Every one.
    All,
    /// Those of this gateway.
    Gateway(String),
}

/// A configuration object that can be removed by kind and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigObjectKind {
    /// `[security.ike.proposal.NAME]`
    IkeProposal,
    /// `[security.ike.policy.NAME]`
    IkePolicy,
    /// `[security.ike.gateway.NAME]`
    IkeGateway,
    /// `[security.ipsec.proposal.NAME]`
    IpsecProposal,
    /// `[security.ipsec.policy.NAME]`
    IpsecPolicy,
    /// `[security.ipsec.vpn.NAME]`
    IpsecVpn,
}

impl ConfigObjectKind {
    /// The table holding objects of this kind, as in the configuration file and in
    /// validation messages.
    pub fn config_path(self) -> &'static str {
        match self {
            ConfigObjectKind::IkeProposal => "security.ike.proposal",
            ConfigObjectKind::IkePolicy => "security.ike.policy",
            ConfigObjectKind::IkeGateway => "security.ike.gateway",
            ConfigObjectKind::IpsecProposal => "security.ipsec.proposal",
            ConfigObjectKind::IpsecPolicy => "security.ipsec.policy",
            ConfigObjectKind::IpsecVpn => "security.ipsec.vpn",
        }
    }
}

/// What an accepted operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "message", rename_all = "kebab-case")]
pub enum OperationOutcome {
    /// It was carried out; the message says what happened.
    Done(String),
    /// It was valid but there was nothing to do (the VPN is already up, no SA matched).
    NoChange(String),
}

impl OperationOutcome {
    /// The message, whichever the outcome.
    pub fn message(&self) -> &str {
        match self {
            OperationOutcome::Done(m) | OperationOutcome::NoChange(m) => m,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An IKE or IPsec SA came up.
    SaUp,
    /// An SA was deleted, expired or failed.
    SaDown,
    /// An SA was rekeyed.
    Rekey,
    /// Dead peer detection declared a peer dead, or saw it again.
    Dpd,
    /// The running configuration changed.
    ConfigChange,
    /// A redundancy group failed over.
    Failover,
}

impl EventKind {
    /// Every kind, in protocol order; the accepted words of `monitor security events`.
    pub const ALL: [EventKind; 6] = [
        EventKind::SaUp,
        EventKind::SaDown,
        EventKind::Rekey,
        EventKind::Dpd,
        EventKind::ConfigChange,
        EventKind::Failover,
    ];

    /// The kebab-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::SaUp => "sa-up",
            EventKind::SaDown => "sa-down",
            EventKind::Rekey => "rekey",
            EventKind::Dpd => "dpd",
            EventKind::ConfigChange => "config-change",
            EventKind::Failover => "failover",
        }
    }
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// When it happened (millisecond precision on the wire).
    #[serde(rename = "timestamp_unix_ms", serialize_with = "ser::unix_millis")]
    pub timestamp: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// The gateway concerned, if one.
    pub gateway: Option<String>,
    /// The VPN concerned, if one.
    pub vpn: Option<String>,
    /// The SPI concerned, if one (IKE SPIs are 64-bit, ESP/AH SPIs 32-bit).
    #[serde(serialize_with = "ser::opt_hex_u64")]
    pub spi: Option<u64>,
    /// Human-readable detail.
    pub message: String,
}

/// A node's state in one redundancy group, in Junos' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedundancyState {
    /// Forwards the group's traffic and owns its reth addresses.
    Primary,
    /// Ready to take over.
    Secondary,
    /// Gave the group up and may not take it back until its hold-down time passed.
    SecondaryHold,
    /// Not heard from within the heartbeat threshold.
    Lost,
    /// Out of the cluster after a fault, or by an operator.
    Disabled,
    /// Starting: has not yet learned the group's state.
    Hold,
    /// Monitoring failures reached the threshold: cannot be primary.
    Ineligible,
}

impl RedundancyState {
    /// The word `show chassis cluster status` prints.
    pub fn name(self) -> &'static str {
        match self {
            RedundancyState::Primary => "primary",
            RedundancyState::Secondary => "secondary",
            RedundancyState::SecondaryHold => "secondary-hold",
            RedundancyState::Lost => "lost",
            RedundancyState::Disabled => "disabled",
            RedundancyState::Hold => "hold",
            RedundancyState::Ineligible => "ineligible",
        }
    }
}

/// What a failed monitor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MonitorKind {
    /// `interface-monitor`.
    Interface,
    /// `ip-monitoring`.
    Ip,
    /// A failed SPU.
    Spu,
}

impl MonitorKind {
    /// Junos' two-letter monitor failure code.
    pub fn code(self) -> &'static str {
        match self {
            MonitorKind::Interface => "IF",
            MonitorKind::Ip => "IP",
            MonitorKind::Spu => "SP",
        }
    }
}

/// A failed monitor that costs a node weight in a redundancy group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorFailure {
    /// What kind of monitor.
    pub kind: MonitorKind,
    /// What failed: an interface name, an address, an SPU number.
    pub object: String,
    /// The weight it costs (the group fails over at 255).
    pub weight: u32,
}

/// One gateway node in one redundancy group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupNodeView {
    /// node0 or node1.
    #[serde(serialize_with = "ser::display")]
    pub node: Member,
    /// Current priority: the configured one, or 0 while monitoring failures reach the
    /// threshold.
    pub priority: u8,
    /// Its state in the group.
    pub status: RedundancyState,
    /// Failed monitors; empty when healthy.
    pub monitor_failures: Vec<MonitorFailure>,
}

/// One redundancy group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedundancyGroupView {
    /// The group number; 0 is the control plane.
    pub redundancy_group: u8,
    /// Changes of primary since the cluster's log began.
    pub failover_count: u64,
    /// Ownership epoch: increases with every change of primary.
    pub epoch: u64,
    /// `preempt` is configured.
    pub preempt: bool,
    /// A manual failover pins the group.
    pub manual_failover: bool,
    /// node0 then node1.
    pub nodes: Vec<GroupNodeView>,
}

/// `show chassis cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatusView {
    /// `cluster-id`.
    pub cluster_id: u16,
    /// The member that answered.
    #[serde(serialize_with = "ser::display")]
    pub local_member: Member,
    /// Every configured group, group 0 first.
    pub redundancy_groups: Vec<RedundancyGroupView>,
}

/// The replicated log as one member sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RaftView {
    /// Current term.
    pub term: u64,
    /// The known leader; `None` during an election or without quorum.
    #[serde(serialize_with = "ser::opt_display")]
    pub leader: Option<Member>,
    /// Last committed index.
    pub commit_index: u64,
    /// Last applied index.
    pub applied_index: u64,
}

/// What is replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// IKE SA records.
    IkeSa,
    /// Child SA pair records.
    ChildSa,
    /// Outbound sequence number reservations.
    SequenceReservation,
    /// Inbound anti-replay high marks.
    ReplayMark,
}

impl RecordKind {
    /// Every kind, in protocol order.
    pub const ALL: [RecordKind; 4] = [
        RecordKind::IkeSa,
        RecordKind::ChildSa,
        RecordKind::SequenceReservation,
        RecordKind::ReplayMark,
    ];

    /// The service name `show chassis cluster statistics` prints.
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::IkeSa => "IKE SA",
            RecordKind::ChildSa => "IPsec SA",
            RecordKind::SequenceReservation => "Sequence reservation",
            RecordKind::ReplayMark => "Replay mark",
        }
    }
}

/// Replication counters of one record kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplicationView {
    /// The kind.
    pub kind: RecordKind,
    /// Written by this member.
    pub sent: u64,
    /// Written by others and applied here.
    pub received: u64,
    /// In the replicated state now.
    pub held: u64,
}

/// A member as another member sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemberReachabilityView {
    /// The member.
    #[serde(serialize_with = "ser::display")]
    pub member: Member,
    /// Its `control-address`.
    pub control_address: SocketAddr,
    /// Heard from now (always for the answering member itself).
    pub reachable: bool,
    /// How long ago it was last heard from, by the answering member's clock; `None` for
    /// itself and for a member never heard from. A duration rather than a time, so that
    /// clocks of client and server need not agree.
    #[serde(rename = "last_contact_ms_ago", serialize_with = "ser::opt_millis")]
    pub last_contact: Option<Duration>,
}

/// `show chassis cluster statistics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatisticsView {
    /// `cluster-id`.
    pub cluster_id: u16,
    /// The member that answered; the counters are its own.
    #[serde(serialize_with = "ser::display")]
    pub local_member: Member,
    /// Heartbeats sent to the other members.
    pub heartbeats_sent: u64,
    /// Heartbeats received from them.
    pub heartbeats_received: u64,
    /// Lease renewals proposed as primary.
    pub lease_renewals_sent: u64,
    /// Lease renewals of others applied.
    pub lease_renewals_received: u64,
    /// Changes of primary of any group since this member started.
    pub failovers: u64,
    /// The replicated log.
    pub raft: RaftView,
    /// One entry per record kind, in [`RecordKind::ALL`] order.
    pub replication: Vec<ReplicationView>,
    /// Every member, this one included.
    pub members: Vec<MemberReachabilityView>,
}

/// Serde helpers for `vpnctl --json`. SPIs are hex strings because that is how every
/// IPsec tool and packet capture shows them, and because a JSON number above 2^53 (an
/// IKE SPI usually is) loses precision in JavaScript and jq. Times are Unix seconds or
/// milliseconds, like the wire format.
mod ser {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub fn hex_u64<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:016x}"))
    }

    pub fn hex_u32<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:08x}"))
    }

    pub fn opt_hex_u64<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => hex_u64(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn unix_secs<S: Serializer>(v: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
            None => s.serialize_none(),
        }
    }

    /// Cluster members as they are written everywhere else: `node0`, not `Node0`.
    pub fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn opt_display<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn opt_millis<S: Serializer>(
        v: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn unix_millis<S: Serializer>(v: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = v.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}
