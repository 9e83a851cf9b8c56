//! The cluster transport: raft-rs messages between members over gRPC (tonic) with mutual
//! TLS (rustls on ring) on the cluster port, per `proto/cluster.proto`.
//!
//! Each member runs one server and, for each other member, one sender task that keeps a
//! `Deliver` stream open to it. Raft messages are carried as bytes in raft-rs' own
//! protobuf 2 encoding; raft 0.7's codec is protobuf 2.28, whose decoder has a known
//! stack-overflow bug on crafted input (RUSTSEC-2024-0437), so the server decodes only
//! after the TLS layer and the member check below have accepted the caller.
//!
//! Identity: a member certificate is signed by the cluster CA and carries the URI SAN
//! `vpn-cluster:node0`, `vpn-cluster:node1` or `vpn-cluster:witness`
//! ([`member_uri`]). The server requires such a client certificate (rustls refuses any
//! other during the handshake), takes the member from it, and drops every message whose
//! `from` is not that member: a member cannot speak for another. The client checks the
//! server's certificate against the cluster CA and the URI SAN of the member it meant to
//! reach (its own verifier, since the names are not DNS names), so a member cannot pose
//! as another's server either.
//!
//! Delivery is best effort, which is all Raft needs: each sender has a bounded queue and
//! the driver drops (and counts) what does not fit; a broken stream is reported so that
//! raft-rs probes the member instead of streaming to it, and the sender reconnects with
//! backoff. Raft retransmits whatever matters.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::Stream;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::{mpsc, watch};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Request, Response, Status, Streaming};
use vpn_proto::cluster::v1::raft_transport_client::RaftTransportClient;
use vpn_proto::cluster::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use vpn_proto::cluster::v1::{DeliverSummary, RaftFrame};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::record::Member;

/// The URI scheme, with its colon, of member SANs.
pub const MEMBER_URI_SCHEME: &str = "vpn-cluster:";

/// Largest gRPC message either side accepts: a snapshot of the whole cluster state
/// travels as one Raft message.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Messages waiting for one member's stream; more are dropped (Raft retransmits).
pub(crate) const PEER_QUEUE: usize = 1024;

/// Messages from all members waiting for the replica; a full queue slows the senders
/// down (HTTP/2 flow control) rather than losing messages.
pub(crate) const INBOUND_QUEUE: usize = 4096;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A stream that lasted this long was a success: the next reconnect starts fast again.
const STABLE_STREAM: Duration = Duration::from_secs(2);

/// The TLS material of one member, as PEM.
#[derive(Clone)]
pub struct ClusterTls {
    /// The cluster CA: the only issuer of member certificates.
    pub ca_pem: Vec<u8>,
    /// This member's certificate (URI SAN `vpn-cluster:<member>`), then any
    /// intermediates.
    pub cert_pem: Vec<u8>,
    /// This member's private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

/// Why the transport could not be set up, or a certificate names no member.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The PEM material does not make a TLS configuration.
    #[error("cluster TLS: {0}")]
    Tls(String),
    /// A certificate does not name exactly one cluster member.
    #[error("cluster member identity: {0}")]
    Identity(String),
    /// The peer address does not make an endpoint.
    #[error("cluster peer address: {0}")]
    Address(String),
}

/// The SAN URI that names `member` in its certificate.
pub fn member_uri(member: Member) -> String {
    format!("{MEMBER_URI_SCHEME}{member}")
}

/// The member named by a DER certificate's URI SAN. Certificates with none, or with
/// two different ones, name nobody.
pub fn member_of_certificate(der: &[u8]) -> Result<Member, TransportError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TransportError::Identity(format!("malformed certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TransportError::Identity(format!("malformed SAN: {e}")))?;
    let mut member = None;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(rest) = uri.strip_prefix(MEMBER_URI_SCHEME) else {
            continue;
        };
        let found: Member = rest
            .parse()
            .ok()
            .filter(|m: &Member| m.to_string() == rest)
            .ok_or_else(|| TransportError::Identity(format!("unknown member URI {uri:?}")))?;
        match member {
            Some(m) if m != found => {
                return Err(TransportError::Identity(
                    "certificate names two members".into(),
                ));
            }
            _ => member = Some(found),
        }
    }
    member.ok_or_else(|| TransportError::Identity("no vpn-cluster URI SAN".into()))
}

/// The member named by the first certificate of a PEM chain.
pub fn member_of_pem(cert_pem: &[u8]) -> Result<Member, TransportError> {
    let leaf = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .ok_or_else(|| TransportError::Tls("no certificate in PEM".into()))?
        .map_err(|e| TransportError::Tls(format!("certificate PEM: {e}")))?;
    member_of_certificate(&leaf)
}

/// Checks the server's certificate the way the server checks ours: chain to the
/// cluster CA, and the URI SAN of the member this connection is meant to reach.
#[derive(Debug)]
struct MemberVerifier {
    roots: Arc<RootCertStore>,
    expected: Member,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        match member_of_certificate(end_entity) {
            Ok(m) if m == self.expected => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| TransportError::Tls(format!("CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TransportError::Tls(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TransportError::Tls("no CA certificate in PEM".into()));
    }
    Ok(roots)
}

/// A lazily connecting channel to member `peer` at `addr`, authenticated with `tls` and
/// accepting only `peer`'s certificate.
pub fn channel(
    peer: Member,
    addr: SocketAddr,
    tls: &ClusterTls,
) -> Result<Channel, TransportError> {
    let verifier = MemberVerifier {
        roots: Arc::new(roots(&tls.ca_pem)?),
        expected: peer,
        algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
    };
    let client_tls = ClientTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| TransportError::Address(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tls_config_with_verifier(client_tls, Arc::new(verifier))
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    Ok(endpoint.connect_lazy())
}

/// A gRPC client for the cluster transport with the message size limit of snapshots.
pub fn client(channel: Channel) -> RaftTransportClient<Channel> {
    RaftTransportClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
}

/// Encodes a Raft message for the wire.
pub fn frame(msg: &Message) -> Result<RaftFrame, protobuf::ProtobufError> {
    Ok(RaftFrame {
        message: msg.write_to_bytes()?,
    })
}

/// What the server did with inbound messages, since the node started.
#[derive(Debug, Default)]
pub(crate) struct InboundCounters {
    accepted: AtomicU64,
    forged: AtomicU64,
    misrouted: AtomicU64,
    undecodable: AtomicU64,
    refused_streams: AtomicU64,
}

/// A copy of the inbound counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Messages handed to the replica.
    pub accepted: u64,
    /// Messages dropped because their `from` was not the authenticated member.
    pub forged: u64,
    /// Messages dropped because they were for another member.
    pub misrouted: u64,
    /// Frames that did not decode as a Raft message.
    pub undecodable: u64,
    /// Streams refused because the client certificate named no other member.
    pub refused_streams: u64,
}

impl InboundCounters {
    pub(crate) fn stats(&self) -> InboundStats {
        InboundStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            forged: self.forged.load(Ordering::Relaxed),
            misrouted: self.misrouted.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
            refused_streams: self.refused_streams.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The server side: authenticates each stream, checks each message, hands it over.
struct RaftService {
    me: Member,
    inbound: mpsc::Sender<Message>,
    counters: Arc<InboundCounters>,
    shutdown: watch::Receiver<bool>,
}

type SummaryStream = Pin<Box<dyn Stream<Item = Result<DeliverSummary, Status>> + Send>>;

impl RaftService {
    fn authenticate<T>(&self, request: &Request<T>) -> Result<Member, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        match member_of_certificate(leaf) {
            Ok(member) if member != self.me => Ok(member),
            Ok(_) => Err(Status::permission_denied(
                "a member cannot deliver to itself",
            )),
            Err(e) => Err(Status::permission_denied(e.to_string())),
        }
    }
}

/// Reads one authenticated member's stream until it ends, the receiver stops, or the
/// node shuts down.
async fn pump(
    from: Member,
    me: Member,
    mut stream: Streaming<RaftFrame>,
    inbound: mpsc::Sender<Message>,
    counters: Arc<InboundCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<DeliverSummary, Status> {
    let mut summary = DeliverSummary::default();
    loop {
        let frame = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(summary),
            frame = stream.message() => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(summary),
            Err(status) => {
                tracing::debug!(member = %from, %status, "cluster stream from member ended");
                return Err(status);
            }
        };
        // Decoded only here: the caller is an authenticated member.
        let msg = match Message::parse_from_bytes(&frame.message) {
            Ok(msg) => msg,
            Err(e) => {
                bump(&counters.undecodable);
                summary.dropped += 1;
                tracing::warn!(member = %from, error = %e, "undecodable Raft message dropped");
                continue;
            }
        };
        if msg.from != from.raft_id() {
            bump(&counters.forged);
            summary.dropped += 1;
            tracing::warn!(member = %from, claimed = msg.from, "Raft message claiming another sender dropped");
            continue;
        }
        if msg.to != me.raft_id() {
            bump(&counters.misrouted);
            summary.dropped += 1;
            continue;
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(summary),
            sent = inbound.send(msg) => {
                if sent.is_err() {
                    return Err(Status::unavailable("cluster member stopped"));
                }
            }
        }
        bump(&counters.accepted);
        summary.accepted += 1;
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    type DeliverStream = SummaryStream;

    async fn deliver(
        &self,
        request: Request<Streaming<RaftFrame>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let from = match self.authenticate(&request) {
            Ok(member) => member,
            Err(status) => {
                bump(&self.counters.refused_streams);
                tracing::warn!(
                    remote = ?request.remote_addr(),
                    %status,
                    "cluster stream refused"
                );
                return Err(status);
            }
        };
        tracing::debug!(member = %from, "cluster stream from member");
        // The pump runs as the response body: it lives exactly as long as the stream.
        let body = pump(
            from,
            self.me,
            request.into_inner(),
            self.inbound.clone(),
            self.counters.clone(),
            self.shutdown.clone(),
        );
        Ok(Response::new(Box::pin(futures_util::stream::once(body))))
    }
}

/// Builds the server's TLS-configured router for member `me` (errors in the PEM
/// material show up here, before anything runs).
pub(crate) fn server(
    me: Member,
    tls: &ClusterTls,
    inbound: mpsc::Sender<Message>,
    counters: Arc<InboundCounters>,
    shutdown: watch::Receiver<bool>,
) -> Result<tonic::transport::server::Router, TransportError> {
    let server_tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .client_ca_root(Certificate::from_pem(&tls.ca_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    let service = RaftService {
        me,
        inbound,
        counters,
        shutdown,
    };
    let router = Server::builder()
        .tls_config(server_tls)
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(
            RaftTransportServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        );
    Ok(router)
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub(crate) async fn serve(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop = async move {
        // A dropped sender also means stop.
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
        tracing::error!(error = %e, "cluster transport server failed");
    }
}

/// What a sender tells the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    /// The stream failed or could not be opened: raft-rs should probe the member.
    Unreachable(Member),
    /// A snapshot for the member was lost before it reached the stream.
    SnapshotLost(Member),
}

/// The driver's end of one member's sender.
#[derive(Debug)]
pub(crate) struct PeerLink {
    queue: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
}

/// Why [`PeerLink::push`] did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped;

impl PeerLink {
    /// Queues a message for the member, or drops and counts it if the queue is full.
    pub(crate) fn push(&self, msg: Message) -> Result<(), Dropped> {
        self.queue.try_send(msg).map_err(|_| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Dropped
        })
    }

    /// Messages dropped so far (queue full, or lost while the member was unreachable).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether a stream to the member is up.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Starts the sender task for member `peer` at `addr`.
pub(crate) fn spawn_sender(
    peer: Member,
    channel: Channel,
    events: mpsc::UnboundedSender<PeerEvent>,
    shutdown: watch::Receiver<bool>,
) -> (PeerLink, tokio::task::JoinHandle<()>) {
    let (queue, rx) = mpsc::channel(PEER_QUEUE);
    let link = PeerLink {
        queue,
        dropped: Arc::new(AtomicU64::new(0)),
        connected: Arc::new(AtomicBool::new(false)),
    };
    let sender = Sender {
        peer,
        channel,
        queue: rx,
        events,
        shutdown,
        dropped: link.dropped.clone(),
        connected: link.connected.clone(),
    };
    (link, tokio::spawn(sender.run()))
}

struct Sender {
    peer: Member,
    channel: Channel,
    queue: mpsc::Receiver<Message>,
    events: mpsc::UnboundedSender<PeerEvent>,
    shutdown: watch::Receiver<bool>,
    dropped: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
}

/// How one stream ended.
enum Ended {
    /// Stop the sender.
    Stop,
    /// Reconnect after a pause.
    Broken(String),
}

impl Sender {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let started = Instant::now();
            let ended = self.stream().await;
            self.connected.store(false, Ordering::Relaxed);
            let reason = match ended {
                Ended::Stop => return,
                Ended::Broken(reason) => reason,
            };
            tracing::debug!(member = %self.peer, %reason, "cluster stream to member down");
            // Ignored send: the driver is gone only when the node stops.
            let _ = self.events.send(PeerEvent::Unreachable(self.peer));
            backoff = if started.elapsed() >= STABLE_STREAM {
                MIN_BACKOFF
            } else {
                (backoff * 2).min(MAX_BACKOFF)
            };
            if !self.pause(backoff).await {
                return;
            }
        }
    }

    /// Waits before reconnecting, dropping what the driver queues meanwhile: it would
    /// be stale by the time a stream is up, and a lost snapshot must be reported at
    /// once so that raft-rs sends a new one later. Returns false on shutdown.
    async fn pause(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            let msg = tokio::select! {
                _ = &mut sleep => return true,
                _ = self.shutdown.wait_for(|stop| *stop) => return false,
                msg = self.queue.recv() => match msg {
                    None => return false,
                    Some(msg) => msg,
                },
            };
            self.lose(&msg);
        }
    }

    fn lose(&self, msg: &Message) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            let _ = self.events.send(PeerEvent::SnapshotLost(self.peer));
        }
    }

    /// Opens one stream and feeds it until it breaks.
    async fn stream(&mut self) -> Ended {
        let (tx, rx) = mpsc::channel::<RaftFrame>(64);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let mut client = client(self.channel.clone());
        let response = tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => return Ended::Stop,
            response = client.deliver(body) => response,
        };
        let mut summaries = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return Ended::Broken(status.to_string()),
        };
        self.connected.store(true, Ordering::Relaxed);
        loop {
            // Take a message only when the stream has room for it, and watch the
            // response stream all along: its end is how a broken stream shows.
            let permit = tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => return Ended::Stop,
                end = summaries.message() => return ended(end),
                permit = tx.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Ended::Broken("request stream closed".into()),
                },
            };
            let msg = tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => return Ended::Stop,
                end = summaries.message() => return ended(end),
                msg = self.queue.recv() => match msg {
                    Some(msg) => msg,
                    None => return Ended::Stop,
                },
            };
            match frame(&msg) {
                Ok(frame) => permit.send(frame),
                Err(e) => {
                    self.lose(&msg);
                    tracing::warn!(member = %self.peer, error = %e, "Raft message does not encode; dropped");
                }
            }
        }
    }
}

fn ended(end: Result<Option<DeliverSummary>, Status>) -> Ended {
    match end {
        Ok(Some(summary)) => Ended::Broken(format!(
            "closed by the member after {} messages ({} dropped)",
            summary.accepted, summary.dropped
        )),
        Ok(None) => Ended::Broken("closed by the member".into()),
        Err(status) => Ended::Broken(status.to_string()),
    }
}
