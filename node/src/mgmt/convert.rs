//! The one place where domain values (`backend.rs`) and protobuf messages meet.
//!
//! Domain → protobuf is what the server sends; it cannot fail. Protobuf → domain is what
//! clients (`vpnctl`, tests, Rust orchestrators) do with responses; it fails with a
//! [`DecodeError`] naming the field when the server sent something this build does not
//! understand (an enum value added later, an address that does not parse), rather than
//! showing a made-up value. The request side of the server — protobuf requests to
//! domain arguments with field validation — is here too.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Status;
use vpn_proto::v1 as pb;

use super::backend::{
    BackendError, ClearScope, ClusterStatisticsView, ClusterStatusView, ConfigObjectKind,
    EventKind, EventView, GroupNodeView, IkeRole, IkeSaState, IkeSaView, IpsecProtocol,
    IpsecSaView, Member, MemberReachabilityView, MonitorFailure, MonitorKind, OperationOutcome,
    RaftView, RecordKind, RedundancyGroupView, RedundancyState, ReplicationView, SpuAdded,
    SpuStatsView, StatsView, TerminateTarget, TrafficSelectorView, TunnelMapEntry,
};

/// A response field this client cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server sent an invalid {field}: {message}")]
pub struct DecodeError {
    /// Message and field (`IkeSa.remote_address`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn decode_err(field: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError {
        field,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Errors to statuses

/// The gRPC status for a backend error; the message is the error's, so clients show
/// the daemon's own words.
pub fn status_from_backend(err: BackendError) -> Status {
    let message = err.to_string();
    match err {
        BackendError::NotFound { .. } => Status::not_found(message),
        BackendError::Invalid(_) => Status::invalid_argument(message),
        BackendError::FailedPrecondition(_) => Status::failed_precondition(message),
        BackendError::Unavailable(_) => Status::unavailable(message),
        BackendError::Internal(_) => Status::internal(message),
    }
}

fn invalid(field: &str, message: &str) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

// ---------------------------------------------------------------------------------------
// Requests (server side): validation names the field

/// A required object name: not empty, no surrounding or control characters (which would
/// only ever be a client bug, and would garble logs and tables).
pub fn required_name<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    check_name(field, value)
}

/// An optional filter: empty means none.
pub fn optional_name<'a>(field: &str, value: &'a str) -> Result<Option<&'a str>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        check_name(field, value).map(Some)
    }
}

fn check_name<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "must not contain control characters or leading or trailing spaces",
        ));
    }
    Ok(value)
}

/// `TerminateRequest.target`.
pub fn terminate_target(req: pb::TerminateRequest) -> Result<TerminateTarget, Status> {
    match req.target {
        Some(pb::terminate_request::Target::Vpn(vpn)) => {
            required_name("vpn", &vpn)?;
            Ok(TerminateTarget::Vpn(vpn))
        }
        Some(pb::terminate_request::Target::Gateway(gw)) => {
            required_name("gateway", &gw)?;
            Ok(TerminateTarget::Gateway(gw))
        }
        None => Err(invalid("target", "one of vpn or gateway is required")),
    }
}

/// `ClearIkeSasRequest.scope`.
pub fn clear_scope(req: pb::ClearIkeSasRequest) -> Result<ClearScope, Status> {
    match req.scope {
        Some(pb::clear_ike_sas_request::Scope::Gateway(gw)) => {
            required_name("gateway", &gw)?;
            Ok(ClearScope::Gateway(gw))
        }
        Some(pb::clear_ike_sas_request::Scope::All(true)) => Ok(ClearScope::All),
        Some(pb::clear_ike_sas_request::Scope::All(false)) => {
            Err(invalid("all", "must be true when given"))
        }
        None => Err(invalid("scope", "one of gateway or all is required")),
    }
}

/// `RemoveConfigObjectRequest.kind`.
pub fn config_object_kind(kind: i32) -> Result<ConfigObjectKind, Status> {
    match pb::ConfigObjectKind::try_from(kind) {
        Ok(pb::ConfigObjectKind::IkeProposal) => Ok(ConfigObjectKind::IkeProposal),
        Ok(pb::ConfigObjectKind::IkePolicy) => Ok(ConfigObjectKind::IkePolicy),
        Ok(pb::ConfigObjectKind::IkeGateway) => Ok(ConfigObjectKind::IkeGateway),
        Ok(pb::ConfigObjectKind::IpsecProposal) => Ok(ConfigObjectKind::IpsecProposal),
        Ok(pb::ConfigObjectKind::IpsecPolicy) => Ok(ConfigObjectKind::IpsecPolicy),
        Ok(pb::ConfigObjectKind::IpsecVpn) => Ok(ConfigObjectKind::IpsecVpn),
        Ok(pb::ConfigObjectKind::Unspecified) => Err(invalid("kind", "must be set")),
        Err(_) => Err(invalid("kind", &format!("unknown value {kind}"))),
    }
}

/// The protobuf value of a configuration object kind (client side).
pub fn config_object_kind_to_pb(kind: ConfigObjectKind) -> pb::ConfigObjectKind {
    match kind {
        ConfigObjectKind::IkeProposal => pb::ConfigObjectKind::IkeProposal,
        ConfigObjectKind::IkePolicy => pb::ConfigObjectKind::IkePolicy,
        ConfigObjectKind::IkeGateway => pb::ConfigObjectKind::IkeGateway,
        ConfigObjectKind::IpsecProposal => pb::ConfigObjectKind::IpsecProposal,
        ConfigObjectKind::IpsecPolicy => pb::ConfigObjectKind::IpsecPolicy,
        ConfigObjectKind::IpsecVpn => pb::ConfigObjectKind::IpsecVpn,
    }
}

/// The kinds a `WatchRequest` asks for; empty means all.
pub fn watch_kinds(kinds: &[i32]) -> Result<Vec<EventKind>, Status> {
    kinds
        .iter()
        .map(|&k| {
            pb::EventKind::try_from(k)
                .ok()
                .and_then(event_kind_from_pb)
                .ok_or_else(|| invalid("kinds", &format!("unknown or unspecified event kind {k}")))
        })
        .collect()
}

/// A required redundancy group number (`optional uint32` on the wire, so that an unset
/// field is not taken for group 0, the control plane).
pub fn redundancy_group(field: &str, value: Option<u32>) -> Result<u8, Status> {
    let v = value.ok_or_else(|| invalid(field, "must be set"))?;
    u8::try_from(v).map_err(|_| invalid(field, &format!("{v} is out of range 0..255")))
}

/// `RequestClusterFailoverRequest`: the group and the node to make primary.
pub fn failover_target(req: &pb::RequestClusterFailoverRequest) -> Result<(u8, Member), Status> {
    let group = redundancy_group("redundancy_group", req.redundancy_group)?;
    let node = match pb::ClusterMember::try_from(req.node) {
        Ok(pb::ClusterMember::Node0) => Member::Node0,
        Ok(pb::ClusterMember::Node1) => Member::Node1,
        Ok(pb::ClusterMember::Witness) => {
            return Err(invalid(
                "node",
                "the witness cannot be primary (it forwards no traffic); node0 or node1",
            ));
        }
        Ok(pb::ClusterMember::Unspecified) => return Err(invalid("node", "must be set")),
        Err(_) => return Err(invalid("node", &format!("unknown value {}", req.node))),
    };
    Ok((group, node))
}

/// A required SPU number.
pub fn spu(value: Option<u32>) -> Result<u32, Status> {
    value.ok_or_else(|| invalid("spu", "must be set"))
}

/// The protobuf value of a cluster member (client side, and responses).
pub fn member_pb(member: Member) -> i32 {
    match member {
        Member::Node0 => pb::ClusterMember::Node0,
        Member::Node1 => pb::ClusterMember::Node1,
        Member::Witness => pb::ClusterMember::Witness,
    }
    .into()
}

fn member_from_pb(field: &'static str, v: i32) -> Result<Member, DecodeError> {
    match pb::ClusterMember::try_from(v) {
        Ok(pb::ClusterMember::Node0) => Ok(Member::Node0),
        Ok(pb::ClusterMember::Node1) => Ok(Member::Node1),
        Ok(pb::ClusterMember::Witness) => Ok(Member::Witness),
        _ => Err(decode_err(field, format!("value {v}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Domain to protobuf (server side)

impl From<SpuAdded> for pb::AddSpuResponse {
    fn from(a: SpuAdded) -> Self {
        Self {
            spu: a.spu,
            message: a.message,
        }
    }
}

impl From<OperationOutcome> for pb::OperationResult {
    fn from(o: OperationOutcome) -> Self {
        match o {
            OperationOutcome::Done(message) => Self { ok: true, message },
            OperationOutcome::NoChange(message) => Self { ok: false, message },
        }
    }
}

impl From<IkeSaView> for pb::IkeSa {
    fn from(v: IkeSaView) -> Self {
        let state = match v.state {
            IkeSaState::Established => pb::IkeSaState::Established,
            IkeSaState::Connecting => pb::IkeSaState::Connecting,
            IkeSaState::Down => pb::IkeSaState::Down,
        };
        let role = match v.role {
            IkeRole::Initiator => pb::IkeRole::Initiator,
            IkeRole::Responder => pb::IkeRole::Responder,
        };
        Self {
            gateway: v.gateway,
            remote_address: v.remote.ip().to_string(),
            remote_port: v.remote.port().into(),
            local_address: v.local.ip().to_string(),
            local_port: v.local.port().into(),
            spi_i: v.spi_i,
            spi_r: v.spi_r,
            state: state.into(),
            role: role.into(),
            established_at_unix: v.established_at.map_or(0, unix_secs),
            encryption: v.encryption,
            integrity: v.integrity.unwrap_or_default(),
            prf: v.prf,
            dh_group: v.dh_group,
            anchor_spu: v.anchor_spu,
        }
    }
}

impl From<TrafficSelectorView> for pb::TrafficSelector {
    fn from(v: TrafficSelectorView) -> Self {
        Self {
            start_address: v.start.to_string(),
            end_address: v.end.to_string(),
            protocol: v.protocol.into(),
            start_port: v.start_port.into(),
            end_port: v.end_port.into(),
        }
    }
}

impl From<IpsecSaView> for pb::IpsecSa {
    fn from(v: IpsecSaView) -> Self {
        let protocol = match v.protocol {
            IpsecProtocol::Esp => pb::IpsecProtocol::Esp,
            IpsecProtocol::Ah => pb::IpsecProtocol::Ah,
        };
        Self {
            vpn: v.vpn,
            gateway: v.gateway.unwrap_or_default(),
            bind_interface: v.bind_interface.unwrap_or_default(),
            remote_address: v.remote.ip().to_string(),
            remote_port: v.remote.port().into(),
            inbound_spi: v.inbound_spi,
            outbound_spi: v.outbound_spi,
            protocol: protocol.into(),
            encryption: v.encryption,
            integrity: v.integrity.unwrap_or_default(),
            esn: v.esn,
            anchor_spu: v.anchor_spu,
            packets_in: v.packets_in,
            packets_out: v.packets_out,
            bytes_in: v.bytes_in,
            bytes_out: v.bytes_out,
            drops: v.drops.into_iter().collect(),
            lifetime_remaining_seconds: v.lifetime_remaining_seconds,
            lifetime_remaining_kilobytes: v.lifetime_remaining_kilobytes,
            local_selectors: v.local_selectors.into_iter().map(Into::into).collect(),
            remote_selectors: v.remote_selectors.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<StatsView> for pb::GetStatisticsResponse {
    fn from(v: StatsView) -> Self {
        let drops = v.total_drops().into_iter().collect();
        let io = v.total_io().into_iter().collect();
        let spus = v
            .spus
            .into_iter()
            .map(|s| pb::SpuStatistics {
                spu: s.spu,
                active_sas: s.active_sas,
                packets_in: s.packets_in,
                packets_out: s.packets_out,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                drops: s.drops.into_iter().collect(),
                io: s.io.into_iter().collect(),
            })
            .collect();
        Self { spus, drops, io }
    }
}

impl From<TunnelMapEntry> for pb::TunnelMapEntry {
    fn from(v: TunnelMapEntry) -> Self {
        Self {
            tunnel: v.tunnel,
            gateway: v.gateway,
            spc: v.spc,
            spu: v.spu,
        }
    }
}

fn event_kind_to_pb(kind: EventKind) -> pb::EventKind {
    match kind {
        EventKind::SaUp => pb::EventKind::SaUp,
        EventKind::SaDown => pb::EventKind::SaDown,
        EventKind::Rekey => pb::EventKind::Rekey,
        EventKind::Dpd => pb::EventKind::Dpd,
        EventKind::ConfigChange => pb::EventKind::ConfigChange,
        EventKind::Failover => pb::EventKind::Failover,
    }
}

fn event_kind_from_pb(kind: pb::EventKind) -> Option<EventKind> {
    match kind {
        pb::EventKind::Unspecified => None,
        pb::EventKind::SaUp => Some(EventKind::SaUp),
        pb::EventKind::SaDown => Some(EventKind::SaDown),
        pb::EventKind::Rekey => Some(EventKind::Rekey),
        pb::EventKind::Dpd => Some(EventKind::Dpd),
        pb::EventKind::ConfigChange => Some(EventKind::ConfigChange),
        pb::EventKind::Failover => Some(EventKind::Failover),
    }
}

/// The protobuf value of an event kind (client side, for `WatchRequest.kinds`).
pub fn event_kind_pb(kind: EventKind) -> i32 {
    event_kind_to_pb(kind).into()
}

impl From<EventView> for pb::Event {
    fn from(v: EventView) -> Self {
        let ms = v
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            timestamp_unix_ms: u64::try_from(ms).unwrap_or(u64::MAX),
            kind: event_kind_to_pb(v.kind).into(),
            gateway: v.gateway.unwrap_or_default(),
            vpn: v.vpn.unwrap_or_default(),
            spi: v.spi.unwrap_or(0),
            message: v.message,
        }
    }
}

impl From<ClusterStatusView> for pb::GetClusterStatusResponse {
    fn from(v: ClusterStatusView) -> Self {
        Self {
            cluster_id: v.cluster_id.into(),
            local_member: member_pb(v.local_member),
            redundancy_groups: v.redundancy_groups.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<RedundancyGroupView> for pb::RedundancyGroupStatus {
    fn from(v: RedundancyGroupView) -> Self {
        Self {
            redundancy_group: v.redundancy_group.into(),
            failover_count: v.failover_count,
            epoch: v.epoch,
            preempt: v.preempt,
            manual_failover: v.manual_failover,
            nodes: v.nodes.into_iter().map(Into::into).collect(),
        }
    }
}

fn redundancy_state_to_pb(s: RedundancyState) -> pb::RedundancyState {
    match s {
        RedundancyState::Primary => pb::RedundancyState::Primary,
        RedundancyState::Secondary => pb::RedundancyState::Secondary,
        RedundancyState::SecondaryHold => pb::RedundancyState::SecondaryHold,
        RedundancyState::Lost => pb::RedundancyState::Lost,
        RedundancyState::Disabled => pb::RedundancyState::Disabled,
        RedundancyState::Hold => pb::RedundancyState::Hold,
        RedundancyState::Ineligible => pb::RedundancyState::Ineligible,
    }
}

impl From<GroupNodeView> for pb::RedundancyGroupNode {
    fn from(v: GroupNodeView) -> Self {
        Self {
            node: member_pb(v.node),
            priority: v.priority.into(),
            status: redundancy_state_to_pb(v.status).into(),
            monitor_failures: v.monitor_failures.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<MonitorFailure> for pb::MonitorFailure {
    fn from(v: MonitorFailure) -> Self {
        let kind = match v.kind {
            MonitorKind::Interface => pb::MonitorKind::Interface,
            MonitorKind::Ip => pb::MonitorKind::Ip,
            MonitorKind::Spu => pb::MonitorKind::Spu,
        };
        Self {
            kind: kind.into(),
            object: v.object,
            weight: v.weight,
        }
    }
}

fn record_kind_to_pb(k: RecordKind) -> pb::RecordKind {
    match k {
        RecordKind::IkeSa => pb::RecordKind::IkeSa,
        RecordKind::ChildSa => pb::RecordKind::ChildSa,
        RecordKind::SequenceReservation => pb::RecordKind::SequenceReservation,
        RecordKind::ReplayMark => pb::RecordKind::ReplayMark,
    }
}

impl From<ClusterStatisticsView> for pb::GetClusterStatisticsResponse {
    fn from(v: ClusterStatisticsView) -> Self {
        Self {
            cluster_id: v.cluster_id.into(),
            local_member: member_pb(v.local_member),
            heartbeats_sent: v.heartbeats_sent,
            heartbeats_received: v.heartbeats_received,
            lease_renewals_sent: v.lease_renewals_sent,
            lease_renewals_received: v.lease_renewals_received,
            failovers: v.failovers,
            raft: Some(pb::RaftStatus {
                term: v.raft.term,
                leader: v
                    .raft
                    .leader
                    .map_or(pb::ClusterMember::Unspecified.into(), member_pb),
                commit_index: v.raft.commit_index,
                applied_index: v.raft.applied_index,
            }),
            replication: v
                .replication
                .into_iter()
                .map(|r| pb::ReplicationCounters {
                    kind: record_kind_to_pb(r.kind).into(),
                    sent: r.sent,
                    received: r.received,
                    held: r.held,
                })
                .collect(),
            members: v
                .members
                .into_iter()
                .map(|m| pb::MemberReachability {
                    member: member_pb(m.member),
                    control_address: m.control_address.to_string(),
                    reachable: m.reachable,
                    last_contact_ms_ago: m
                        .last_contact
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                })
                .collect(),
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Protobuf to domain (client side)

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn socket_addr(field: &'static str, address: &str, port: u32) -> Result<SocketAddr, DecodeError> {
    let ip: IpAddr = address
        .parse()
        .map_err(|_| decode_err(field, format!("\"{address}\" is not an IP address")))?;
    let port =
        u16::try_from(port).map_err(|_| decode_err(field, format!("port {port} out of range")))?;
    Ok(SocketAddr::new(ip, port))
}

fn small<T: TryFrom<u32>>(field: &'static str, v: u32) -> Result<T, DecodeError> {
    T::try_from(v).map_err(|_| decode_err(field, format!("{v} out of range")))
}

impl From<pb::AddSpuResponse> for SpuAdded {
    fn from(r: pb::AddSpuResponse) -> Self {
        Self {
            spu: r.spu,
            message: r.message,
        }
    }
}

impl TryFrom<pb::OperationResult> for OperationOutcome {
    type Error = DecodeError;

    fn try_from(r: pb::OperationResult) -> Result<Self, DecodeError> {
        Ok(if r.ok {
            OperationOutcome::Done(r.message)
        } else {
            OperationOutcome::NoChange(r.message)
        })
    }
}

impl TryFrom<pb::IkeSa> for IkeSaView {
    type Error = DecodeError;

    fn try_from(p: pb::IkeSa) -> Result<Self, DecodeError> {
        let state = match pb::IkeSaState::try_from(p.state) {
            Ok(pb::IkeSaState::Established) => IkeSaState::Established,
            Ok(pb::IkeSaState::Connecting) => IkeSaState::Connecting,
            Ok(pb::IkeSaState::Down) => IkeSaState::Down,
            _ => return Err(decode_err("IkeSa.state", format!("value {}", p.state))),
        };
        let role = match pb::IkeRole::try_from(p.role) {
            Ok(pb::IkeRole::Initiator) => IkeRole::Initiator,
            Ok(pb::IkeRole::Responder) => IkeRole::Responder,
            _ => return Err(decode_err("IkeSa.role", format!("value {}", p.role))),
        };
        Ok(Self {
            remote: socket_addr("IkeSa.remote_address", &p.remote_address, p.remote_port)?,
            local: socket_addr("IkeSa.local_address", &p.local_address, p.local_port)?,
            gateway: p.gateway,
            spi_i: p.spi_i,
            spi_r: p.spi_r,
            state,
            role,
            established_at: (p.established_at_unix != 0)
                .then(|| UNIX_EPOCH + Duration::from_secs(p.established_at_unix)),
            encryption: p.encryption,
            integrity: non_empty(p.integrity),
            prf: p.prf,
            dh_group: p.dh_group,
            anchor_spu: p.anchor_spu,
        })
    }
}

impl TryFrom<pb::TrafficSelector> for TrafficSelectorView {
    type Error = DecodeError;

    fn try_from(p: pb::TrafficSelector) -> Result<Self, DecodeError> {
        let addr = |field, s: &str| {
            s.parse::<IpAddr>()
                .map_err(|_| decode_err(field, format!("\"{s}\" is not an IP address")))
        };
        Ok(Self {
            start: addr("TrafficSelector.start_address", &p.start_address)?,
            end: addr("TrafficSelector.end_address", &p.end_address)?,
            protocol: small("TrafficSelector.protocol", p.protocol)?,
            start_port: small("TrafficSelector.start_port", p.start_port)?,
            end_port: small("TrafficSelector.end_port", p.end_port)?,
        })
    }
}

impl TryFrom<pb::IpsecSa> for IpsecSaView {
    type Error = DecodeError;

    fn try_from(p: pb::IpsecSa) -> Result<Self, DecodeError> {
        let protocol = match pb::IpsecProtocol::try_from(p.protocol) {
            Ok(pb::IpsecProtocol::Esp) => IpsecProtocol::Esp,
            Ok(pb::IpsecProtocol::Ah) => IpsecProtocol::Ah,
            _ => {
                return Err(decode_err(
                    "IpsecSa.protocol",
                    format!("value {}", p.protocol),
                ));
            }
        };
        let selectors = |v: Vec<pb::TrafficSelector>| {
            v.into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()
        };
        Ok(Self {
            remote: socket_addr("IpsecSa.remote_address", &p.remote_address, p.remote_port)?,
            vpn: p.vpn,
            gateway: non_empty(p.gateway),
            bind_interface: non_empty(p.bind_interface),
            inbound_spi: p.inbound_spi,
            outbound_spi: p.outbound_spi,
            protocol,
            encryption: p.encryption,
            integrity: non_empty(p.integrity),
            esn: p.esn,
            anchor_spu: p.anchor_spu,
            packets_in: p.packets_in,
            packets_out: p.packets_out,
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
            drops: p.drops.into_iter().collect(),
            lifetime_remaining_seconds: p.lifetime_remaining_seconds,
            lifetime_remaining_kilobytes: p.lifetime_remaining_kilobytes,
            local_selectors: selectors(p.local_selectors)?,
            remote_selectors: selectors(p.remote_selectors)?,
        })
    }
}

impl TryFrom<pb::GetStatisticsResponse> for StatsView {
    type Error = DecodeError;

    /// The per-SPU counters; the totals in the response are derived from them and are
    /// recomputed by [`StatsView::total_drops`] and [`StatsView::total_io`].
    fn try_from(p: pb::GetStatisticsResponse) -> Result<Self, DecodeError> {
        let spus = p
            .spus
            .into_iter()
            .map(|s| SpuStatsView {
                spu: s.spu,
                active_sas: s.active_sas,
                packets_in: s.packets_in,
                packets_out: s.packets_out,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                drops: s.drops.into_iter().collect::<BTreeMap<_, _>>(),
                io: s.io.into_iter().collect::<BTreeMap<_, _>>(),
            })
            .collect();
        Ok(Self { spus })
    }
}

impl TryFrom<pb::TunnelMapEntry> for TunnelMapEntry {
    type Error = DecodeError;

    fn try_from(p: pb::TunnelMapEntry) -> Result<Self, DecodeError> {
        Ok(Self {
            tunnel: p.tunnel,
            gateway: p.gateway,
            spc: p.spc,
            spu: p.spu,
        })
    }
}

impl TryFrom<pb::Event> for EventView {
    type Error = DecodeError;

    fn try_from(p: pb::Event) -> Result<Self, DecodeError> {
        let kind = pb::EventKind::try_from(p.kind)
            .ok()
            .and_then(event_kind_from_pb)
            .ok_or_else(|| decode_err("Event.kind", format!("value {}", p.kind)))?;
        Ok(Self {
            timestamp: UNIX_EPOCH + Duration::from_millis(p.timestamp_unix_ms),
            kind,
            gateway: non_empty(p.gateway),
            vpn: non_empty(p.vpn),
            spi: (p.spi != 0).then_some(p.spi),
            message: p.message,
        })
    }
}

impl TryFrom<pb::GetClusterStatusResponse> for ClusterStatusView {
    type Error = DecodeError;

    fn try_from(p: pb::GetClusterStatusResponse) -> Result<Self, DecodeError> {
        Ok(Self {
            cluster_id: small("GetClusterStatusResponse.cluster_id", p.cluster_id)?,
            local_member: member_from_pb("GetClusterStatusResponse.local_member", p.local_member)?,
            redundancy_groups: p
                .redundancy_groups
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TryFrom<pb::RedundancyGroupStatus> for RedundancyGroupView {
    type Error = DecodeError;

    fn try_from(p: pb::RedundancyGroupStatus) -> Result<Self, DecodeError> {
        Ok(Self {
            redundancy_group: small("RedundancyGroupStatus.redundancy_group", p.redundancy_group)?,
            failover_count: p.failover_count,
            epoch: p.epoch,
            preempt: p.preempt,
            manual_failover: p.manual_failover,
            nodes: p
                .nodes
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TryFrom<pb::RedundancyGroupNode> for GroupNodeView {
    type Error = DecodeError;

    fn try_from(p: pb::RedundancyGroupNode) -> Result<Self, DecodeError> {
        let status = match pb::RedundancyState::try_from(p.status) {
            Ok(pb::RedundancyState::Primary) => RedundancyState::Primary,
            Ok(pb::RedundancyState::Secondary) => RedundancyState::Secondary,
            Ok(pb::RedundancyState::SecondaryHold) => RedundancyState::SecondaryHold,
            Ok(pb::RedundancyState::Lost) => RedundancyState::Lost,
            Ok(pb::RedundancyState::Disabled) => RedundancyState::Disabled,
            Ok(pb::RedundancyState::Hold) => RedundancyState::Hold,
            Ok(pb::RedundancyState::Ineligible) => RedundancyState::Ineligible,
            _ => {
                return Err(decode_err(
                    "RedundancyGroupNode.status",
                    format!("value {}", p.status),
                ));
            }
        };
        Ok(Self {
            node: member_from_pb("RedundancyGroupNode.node", p.node)?,
            priority: small("RedundancyGroupNode.priority", p.priority)?,
            status,
            monitor_failures: p
                .monitor_failures
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TryFrom<pb::MonitorFailure> for MonitorFailure {
    type Error = DecodeError;

    fn try_from(p: pb::MonitorFailure) -> Result<Self, DecodeError> {
        let kind = match pb::MonitorKind::try_from(p.kind) {
            Ok(pb::MonitorKind::Interface) => MonitorKind::Interface,
            Ok(pb::MonitorKind::Ip) => MonitorKind::Ip,
            Ok(pb::MonitorKind::Spu) => MonitorKind::Spu,
            _ => {
                return Err(decode_err(
                    "MonitorFailure.kind",
                    format!("value {}", p.kind),
                ));
            }
        };
        Ok(Self {
            kind,
            object: p.object,
            weight: p.weight,
        })
    }
}

impl TryFrom<pb::GetClusterStatisticsResponse> for ClusterStatisticsView {
    type Error = DecodeError;

    fn try_from(p: pb::GetClusterStatisticsResponse) -> Result<Self, DecodeError> {
        let raft = p.raft.unwrap_or_default();
        let leader = match pb::ClusterMember::try_from(raft.leader) {
            Ok(pb::ClusterMember::Unspecified) => None,
            _ => Some(member_from_pb("RaftStatus.leader", raft.leader)?),
        };
        let replication = p
            .replication
            .into_iter()
            .map(|r| {
                let kind = match pb::RecordKind::try_from(r.kind) {
                    Ok(pb::RecordKind::IkeSa) => RecordKind::IkeSa,
                    Ok(pb::RecordKind::ChildSa) => RecordKind::ChildSa,
                    Ok(pb::RecordKind::SequenceReservation) => RecordKind::SequenceReservation,
                    Ok(pb::RecordKind::ReplayMark) => RecordKind::ReplayMark,
                    _ => {
                        return Err(decode_err(
                            "ReplicationCounters.kind",
                            format!("value {}", r.kind),
                        ));
                    }
                };
                Ok(ReplicationView {
                    kind,
                    sent: r.sent,
                    received: r.received,
                    held: r.held,
                })
            })
            .collect::<Result<_, _>>()?;
        let members = p
            .members
            .into_iter()
            .map(|m| {
                Ok(MemberReachabilityView {
                    member: member_from_pb("MemberReachability.member", m.member)?,
                    control_address: m.control_address.parse().map_err(|_| {
                        decode_err(
                            "MemberReachability.control_address",
                            format!("\"{}\" is not address:port", m.control_address),
                        )
                    })?,
                    reachable: m.reachable,
                    last_contact: m.last_contact_ms_ago.map(Duration::from_millis),
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            cluster_id: small("GetClusterStatisticsResponse.cluster_id", p.cluster_id)?,
            local_member: member_from_pb(
                "GetClusterStatisticsResponse.local_member",
                p.local_member,
            )?,
            heartbeats_sent: p.heartbeats_sent,
            heartbeats_received: p.heartbeats_received,
            lease_renewals_sent: p.lease_renewals_sent,
            lease_renewals_received: p.lease_renewals_received,
            failovers: p.failovers,
            raft: RaftView {
                term: raft.term,
                leader,
                commit_index: raft.commit_index,
                applied_index: raft.applied_index,
            },
            replication,
            members,
        })
    }
}
