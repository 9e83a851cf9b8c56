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
    BackendError, ClearScope, ConfigObjectKind, EventKind, EventView, IkeRole, IkeSaState,
    IkeSaView, IpsecProtocol, IpsecSaView, OperationOutcome, SpuStatsView, StatsView,
    TerminateTarget, TrafficSelectorView, TunnelMapEntry,
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

// ---------------------------------------------------------------------------------------
// Domain to protobuf (server side)

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
