//! The `Management` gRPC service: authorize, validate, call the [`Backend`], map back.
//!
//! Every handler has the same three steps, in this order: the role check (so a
//! read-only client learns nothing from validation errors of RPCs it may not call),
//! request validation naming the field, then the backend call with its error mapped to
//! a status. Operations are logged with the caller's name for an audit trail.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::{broadcast, watch};
use tonic::{Request, Response, Status};
use vpn_proto::v1 as pb;

use super::auth::{Caller, Rpc, authorize};
use super::backend::{Backend, EventKind, EventView, OperationOutcome};
use super::convert::{
    clear_scope, config_object_kind, failover_target, optional_name, redundancy_group,
    required_name, spu, status_from_backend, terminate_target, watch_kinds,
};

/// The service, generic over nothing: the daemon's state is behind `backend`.
#[derive(Clone)]
pub struct ManagementService {
    backend: Arc<dyn Backend>,
    /// Becomes `true` when the server shuts down, ending every event stream; without
    /// it a watching client would hold graceful shutdown open forever.
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for ManagementService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementService").finish_non_exhaustive()
    }
}

impl ManagementService {
    /// A service answering from `backend`, whose event streams end when `shutdown`
    /// turns `true` (or its sender is dropped).
    pub fn new(backend: Arc<dyn Backend>, shutdown: watch::Receiver<bool>) -> Self {
        Self { backend, shutdown }
    }
}

/// Logs an operation and its outcome (its message, or the refusal) under the caller's
/// name.
fn audit(caller: &Caller, rpc: Rpc, result: Result<&str, &Status>) {
    match result {
        Ok(outcome) => tracing::info!(
            caller = %caller.name, role = %caller.role, rpc = rpc.name(),
            outcome, "management operation"
        ),
        Err(status) => tracing::warn!(
            caller = %caller.name, role = %caller.role, rpc = rpc.name(),
            code = ?status.code(), error = status.message(), "management operation failed"
        ),
    }
}

type OpResult = Result<Response<pb::OperationResult>, Status>;

fn finish(caller: &Caller, rpc: Rpc, result: Result<OperationOutcome, Status>) -> OpResult {
    audit(caller, rpc, result.as_ref().map(OperationOutcome::message));
    result.map(|o| Response::new(o.into()))
}

#[tonic::async_trait]
impl pb::management_server::Management for ManagementService {
    async fn list_ike_sas(
        &self,
        request: Request<pb::ListIkeSasRequest>,
    ) -> Result<Response<pb::ListIkeSasResponse>, Status> {
        authorize(&request, Rpc::ListIkeSas)?;
        let req = request.into_inner();
        let gateway = optional_name("gateway", &req.gateway)?;
        let sas = self
            .backend
            .list_ike_sas(gateway)
            .await
            .map_err(status_from_backend)?;
        Ok(Response::new(pb::ListIkeSasResponse {
            sas: sas.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_ipsec_sas(
        &self,
        request: Request<pb::ListIpsecSasRequest>,
    ) -> Result<Response<pb::ListIpsecSasResponse>, Status> {
        authorize(&request, Rpc::ListIpsecSas)?;
        let req = request.into_inner();
        let vpn = optional_name("vpn", &req.vpn)?;
        let gateway = optional_name("gateway", &req.gateway)?;
        let sas = self
            .backend
            .list_ipsec_sas(vpn, gateway)
            .await
            .map_err(status_from_backend)?;
        Ok(Response::new(pb::ListIpsecSasResponse {
            sas: sas.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_statistics(
        &self,
        request: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        authorize(&request, Rpc::GetStatistics)?;
        let stats = self
            .backend
            .statistics()
            .await
            .map_err(status_from_backend)?;
        Ok(Response::new(stats.into()))
    }

    async fn get_tunnel_map(
        &self,
        request: Request<pb::GetTunnelMapRequest>,
    ) -> Result<Response<pb::GetTunnelMapResponse>, Status> {
        authorize(&request, Rpc::GetTunnelMap)?;
        let entries = self
            .backend
            .tunnel_map()
            .await
            .map_err(status_from_backend)?;
        Ok(Response::new(pb::GetTunnelMapResponse {
            entries: entries.into_iter().map(Into::into).collect(),
        }))
    }

    async fn initiate(&self, request: Request<pb::InitiateRequest>) -> OpResult {
        let rpc = Rpc::Initiate;
        let caller = authorize(&request, rpc)?;
        let req = request.into_inner();
        let result = match required_name("vpn", &req.vpn) {
            Ok(vpn) => self
                .backend
                .initiate(vpn)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn terminate(&self, request: Request<pb::TerminateRequest>) -> OpResult {
        let rpc = Rpc::Terminate;
        let caller = authorize(&request, rpc)?;
        let result = match terminate_target(request.into_inner()) {
            Ok(target) => self
                .backend
                .terminate(target)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn rekey(&self, request: Request<pb::RekeyRequest>) -> OpResult {
        let rpc = Rpc::Rekey;
        let caller = authorize(&request, rpc)?;
        let req = request.into_inner();
        let result = match required_name("vpn", &req.vpn) {
            Ok(vpn) => self.backend.rekey(vpn).await.map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn rekey_ike(&self, request: Request<pb::RekeyIkeRequest>) -> OpResult {
        let rpc = Rpc::RekeyIke;
        let caller = authorize(&request, rpc)?;
        let req = request.into_inner();
        let result = match required_name("gateway", &req.gateway) {
            Ok(gateway) => self
                .backend
                .rekey_ike(gateway)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn clear_ike_sas(&self, request: Request<pb::ClearIkeSasRequest>) -> OpResult {
        let rpc = Rpc::ClearIkeSas;
        let caller = authorize(&request, rpc)?;
        let result = match clear_scope(request.into_inner()) {
            Ok(scope) => self
                .backend
                .clear_ike_sas(scope)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn apply_config(&self, request: Request<pb::ApplyConfigRequest>) -> OpResult {
        let rpc = Rpc::ApplyConfig;
        let caller = authorize(&request, rpc)?;
        let req = request.into_inner();
        let result = if req.toml_fragment.trim().is_empty() {
            Err(Status::invalid_argument("toml_fragment: must not be empty"))
        } else {
            self.backend
                .apply_config(&req.toml_fragment)
                .await
                .map_err(status_from_backend)
        };
        finish(&caller, rpc, result)
    }

    async fn remove_config_object(
        &self,
        request: Request<pb::RemoveConfigObjectRequest>,
    ) -> OpResult {
        let rpc = Rpc::RemoveConfigObject;
        let caller = authorize(&request, rpc)?;
        let req = request.into_inner();
        let result = match config_object_kind(req.kind)
            .and_then(|kind| Ok((kind, required_name("name", &req.name)?)))
        {
            Ok((kind, name)) => self
                .backend
                .remove_config_object(kind, name)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn get_cluster_status(
        &self,
        request: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        authorize(&request, Rpc::GetClusterStatus)?;
        let status = self
            .backend
            .cluster_status()
            .await
            .map_err(status_from_backend)?;
        Ok(Response::new(status.into()))
    }

    async fn get_cluster_statistics(
        &self,
        request: Request<pb::GetClusterStatisticsRequest>,
    ) -> Result<Response<pb::GetClusterStatisticsResponse>, Status> {
        authorize(&request, Rpc::GetClusterStatistics)?;
        let stats = self
            .backend
            .cluster_statistics()
            .await
            .map_err(status_from_backend)?;
        Ok(Response::new(stats.into()))
    }

    async fn request_cluster_failover(
        &self,
        request: Request<pb::RequestClusterFailoverRequest>,
    ) -> OpResult {
        let rpc = Rpc::RequestClusterFailover;
        let caller = authorize(&request, rpc)?;
        let result = match failover_target(request.get_ref()) {
            Ok((group, node)) => self
                .backend
                .request_failover(group, node)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn reset_cluster_failover(
        &self,
        request: Request<pb::ResetClusterFailoverRequest>,
    ) -> OpResult {
        let rpc = Rpc::ResetClusterFailover;
        let caller = authorize(&request, rpc)?;
        let result = match redundancy_group("redundancy_group", request.get_ref().redundancy_group)
        {
            Ok(group) => self
                .backend
                .reset_failover(group)
                .await
                .map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn fail_spu(&self, request: Request<pb::FailSpuRequest>) -> OpResult {
        let rpc = Rpc::FailSpu;
        let caller = authorize(&request, rpc)?;
        let result = match spu(request.get_ref().spu) {
            Ok(n) => self.backend.fail_spu(n).await.map_err(status_from_backend),
            Err(e) => Err(e),
        };
        finish(&caller, rpc, result)
    }

    async fn add_spu(
        &self,
        request: Request<pb::AddSpuRequest>,
    ) -> Result<Response<pb::AddSpuResponse>, Status> {
        let rpc = Rpc::AddSpu;
        let caller = authorize(&request, rpc)?;
        let result = self.backend.add_spu().await.map_err(status_from_backend);
        audit(&caller, rpc, result.as_ref().map(|a| a.message.as_str()));
        result.map(|a| Response::new(a.into()))
    }

    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = authorize(&request, Rpc::WatchEvents)?;
        let req = request.into_inner();
        let filter = WatchFilter {
            kinds: watch_kinds(&req.kinds)?,
            gateway: optional_name("gateway", &req.gateway)?.map(str::to_owned),
            vpn: optional_name("vpn", &req.vpn)?.map(str::to_owned),
        };
        tracing::debug!(caller = %caller.name, ?filter, "event watch started");
        let watch = Watch {
            events: self.backend.events(),
            shutdown: self.shutdown.clone(),
            filter,
        };
        Ok(Response::new(Box::pin(futures_util::stream::unfold(
            Some(watch),
            Watch::next,
        ))))
    }
}

/// What a `WatchEvents` caller asked to see.
#[derive(Debug)]
struct WatchFilter {
    /// Empty: every kind.
    kinds: Vec<EventKind>,
    gateway: Option<String>,
    vpn: Option<String>,
}

impl WatchFilter {
    fn matches(&self, e: &EventView) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self
                .gateway
                .as_ref()
                .is_none_or(|g| e.gateway.as_ref() == Some(g))
            && self.vpn.as_ref().is_none_or(|v| e.vpn.as_ref() == Some(v))
    }
}

/// One client's event stream.
struct Watch {
    events: broadcast::Receiver<EventView>,
    shutdown: watch::Receiver<bool>,
    filter: WatchFilter,
}

impl Watch {
    /// The next matching event. `None` state means the stream has ended (after a lag
    /// error, which must be the last item so the client re-lists).
    async fn next(state: Option<Watch>) -> Option<(Result<pb::Event, Status>, Option<Watch>)> {
        let mut w = state?;
        loop {
            let received = tokio::select! {
                biased;
                _ = w.shutdown.wait_for(|stopping| *stopping) => return None,
                received = w.events.recv() => received,
            };
            match received {
                Ok(event) if w.filter.matches(&event) => return Some((Ok(event.into()), Some(w))),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let status = Status::data_loss(format!(
                        "event stream fell behind and missed {missed} events; list the SAs again and watch anew"
                    ));
                    return Some((Err(status), None));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
