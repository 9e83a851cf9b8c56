//! The management API: gRPC over mutual TLS for operators (`vpnctl`) and orchestrators.
//!
//! | module | holds |
//! |---|---|
//! | [`backend`] | the [`Backend`] trait the runtime implements, and its domain types |
//! | [`service`] | the tonic service: role check, validation, backend call |
//! | [`convert`] | domain ↔ protobuf, both directions, and request validation |
//! | [`auth`] | roles from client certificates (`vpn-role:` SAN URIs) |
//! | [`tls`] | mutual-TLS configuration of both ends |
//! | [`pki`] | the development PKI of `vpnctl pki init` |
//!
//! The wire contract is `proto/management.proto` (crate `vpn-proto`). The service runs on
//! the daemon's tokio runtime beside the actors (pattern B of notes/crates.md): handlers
//! only await the backend, which forwards to actors with `addr.send()`.

pub mod auth;
pub mod backend;
pub mod convert;
pub mod pki;
pub mod service;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use vpn_proto::v1::management_client::ManagementClient;
use vpn_proto::v1::management_server::ManagementServer;

pub use auth::{Caller, Role, Rpc};
pub use backend::{
    Backend, BackendError, ClearScope, ClusterStatisticsView, ClusterStatusView, ConfigObjectKind,
    EventKind, EventView, FieldError, GroupNodeView, IkeRole, IkeSaState, IkeSaView, IpsecProtocol,
    IpsecSaView, Member, MemberReachabilityView, MonitorFailure, MonitorKind, NOT_CLUSTERED,
    OperationOutcome, RaftView, RecordKind, RedundancyGroupView, RedundancyState, ReplicationView,
    SpuAdded, SpuStatsView, StatsView, TerminateTarget, TrafficSelectorView, TunnelMapEntry,
};
pub use service::ManagementService;
pub use tls::TlsFiles;

/// HTTP/2 pings on idle connections, so a watcher whose host vanished is noticed and
/// its stream dropped instead of lingering until TCP gives up (hours).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Why the management server or client could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MgmtError {
    /// A TLS or PKI file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A PKI file or directory could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// `pki::init` would overwrite a file.
    #[error("{}: already exists; refusing to replace an existing PKI", .0.display())]
    Exists(PathBuf),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The server address given to a client is not `HOST:PORT` or an https URL.
    #[error("invalid server address \"{0}\": expected HOST:PORT or https://HOST:PORT")]
    Address(String),
    /// tonic refused the TLS material, or the connection or server failed.
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Pki(#[from] rcgen::Error),
}

/// Serves the management API on `listen` until `shutdown` completes.
///
/// Clients must present a certificate chaining to `tls.ca`; their role comes from it
/// (see [`auth`]). On shutdown, open event streams end and in-flight calls finish.
pub async fn serve(
    listen: SocketAddr,
    tls: TlsFiles,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MgmtError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| MgmtError::Bind {
            addr: listen,
            source,
        })?;
    serve_on(listener, tls, backend, shutdown).await
}

/// [`serve`] on a socket that is already bound: for port 0 in tests, or a socket
/// inherited from a supervisor.
pub async fn serve_on(
    listener: TcpListener,
    tls: TlsFiles,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MgmtError> {
    let tls = tls::server_config(&tls)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let service = ManagementService::new(backend, stop_rx);
    let signal = async move {
        shutdown.await;
        // Receivers may all be gone already (no watcher): nothing to tell then.
        let _ = stop_tx.send(true);
    };
    Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(KEEPALIVE))
        .add_service(ManagementServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
        .await?;
    Ok(())
}

/// A client of the management API at `server` (`HOST:PORT` or `https://HOST:PORT`),
/// authenticated with `tls`. The server's certificate must name HOST.
pub async fn connect(server: &str, tls: &TlsFiles) -> Result<ManagementClient<Channel>, MgmtError> {
    let url = if server.contains("://") {
        server.to_owned()
    } else {
        format!("https://{server}")
    };
    let endpoint = Endpoint::from_shared(url).map_err(|_| MgmtError::Address(server.to_owned()))?;
    let host = endpoint
        .uri()
        .host()
        .ok_or_else(|| MgmtError::Address(server.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let channel = endpoint
        .tls_config(tls::client_config(tls, &host)?)?
        .http2_keep_alive_interval(KEEPALIVE)
        .connect()
        .await?;
    Ok(ManagementClient::new(channel))
}
