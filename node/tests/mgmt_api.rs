//! The management API over a real socket: tonic server with mutual TLS (a PKI generated
//! at test time), the real service and role checks, and a recording in-test backend.
//! `vpnctl` runs as a subprocess against the same server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use node::mgmt::{
    self, Backend, BackendError, ClearScope, ClusterStatisticsView, ClusterStatusView,
    ConfigObjectKind, EventKind, EventView, FieldError, GroupNodeView, IkeRole, IkeSaState,
    IkeSaView, IpsecProtocol, IpsecSaView, Member, MemberReachabilityView, MonitorFailure,
    MonitorKind, NOT_CLUSTERED, OperationOutcome, RaftView, RecordKind, RedundancyGroupView,
    RedundancyState, ReplicationView, SpuAdded, SpuStatsView, StatsView, TerminateTarget, TlsFiles,
    TrafficSelectorView, TunnelMapEntry,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use vpn_proto::v1 as pb;
use vpn_proto::v1::management_client::ManagementClient;

// ---------------------------------------------------------------------------------------
// Fixtures

fn ike_sa() -> IkeSaView {
    IkeSaView {
        gateway: "gw-b".into(),
        remote: "192.0.2.2:4500".parse().unwrap_or_else(|_| unreachable!()),
        local: "192.0.2.1:4500".parse().unwrap_or_else(|_| unreachable!()),
        spi_i: 0xa5c7_a5f5_a1a9_f0d9,
        spi_r: 0x2b3f_3ff1_9d6e_7b1f,
        state: IkeSaState::Established,
        role: IkeRole::Initiator,
        established_at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        encryption: "aes-256-gcm".into(),
        integrity: None,
        prf: "sha-384".into(),
        dh_group: "group20".into(),
        anchor_spu: 1,
    }
}

fn connecting_sa() -> IkeSaView {
    IkeSaView {
        gateway: "gw-c".into(),
        remote: "[2001:db8::3]:500"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
        local: "[2001:db8::1]:500"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
        spi_i: 1,
        spi_r: 0,
        state: IkeSaState::Connecting,
        role: IkeRole::Responder,
        established_at: None,
        encryption: "aes-128-cbc".into(),
        integrity: Some("hmac-sha-256-128".into()),
        prf: "sha-256".into(),
        dh_group: "group14".into(),
        anchor_spu: 0,
    }
}

fn ipsec_sa() -> IpsecSaView {
    IpsecSaView {
        vpn: "vpn-a".into(),
        gateway: Some("gw-b".into()),
        bind_interface: Some("st0.0".into()),
        remote: "192.0.2.2:4500".parse().unwrap_or_else(|_| unreachable!()),
        inbound_spi: 0x8a1b_2c3d,
        outbound_spi: 0x4f5e_6d7c,
        protocol: IpsecProtocol::Esp,
        encryption: "aes-256-gcm".into(),
        integrity: None,
        esn: true,
        anchor_spu: 1,
        packets_in: 10,
        packets_out: 11,
        bytes_in: 1000,
        bytes_out: 1100,
        drops: BTreeMap::from([("replay".into(), 3), ("icv_failure".into(), 1)]),
        lifetime_remaining_seconds: 3403,
        lifetime_remaining_kilobytes: Some(4096),
        local_selectors: vec![TrafficSelectorView {
            start: "10.1.0.0".parse().unwrap_or_else(|_| unreachable!()),
            end: "10.1.255.255".parse().unwrap_or_else(|_| unreachable!()),
            protocol: 0,
            start_port: 0,
            end_port: 65535,
        }],
        remote_selectors: vec![TrafficSelectorView {
            start: "10.2.0.0".parse().unwrap_or_else(|_| unreachable!()),
            end: "10.2.255.255".parse().unwrap_or_else(|_| unreachable!()),
            protocol: 6,
            start_port: 443,
            end_port: 443,
        }],
    }
}

fn manual_sa() -> IpsecSaView {
    IpsecSaView {
        vpn: "manual-1".into(),
        gateway: None,
        bind_interface: None,
        protocol: IpsecProtocol::Ah,
        encryption: "null".into(),
        integrity: Some("hmac-sha-256-128".into()),
        esn: false,
        lifetime_remaining_kilobytes: None,
        drops: BTreeMap::new(),
        local_selectors: Vec::new(),
        remote_selectors: Vec::new(),
        ..ipsec_sa()
    }
}

fn stats() -> StatsView {
    StatsView {
        spus: vec![
            SpuStatsView {
                spu: 0,
                active_sas: 2,
                packets_in: 5,
                packets_out: 6,
                bytes_in: 500,
                bytes_out: 600,
                drops: BTreeMap::from([("replay".into(), 2), ("unknown_spi".into(), 7)]),
                io: BTreeMap::from([("tun_rx".into(), 6), ("udp_rx".into(), 12)]),
            },
            SpuStatsView {
                spu: 1,
                active_sas: 2,
                packets_in: 10,
                packets_out: 11,
                bytes_in: 1000,
                bytes_out: 1100,
                drops: BTreeMap::from([("replay".into(), 3), ("icv_failure".into(), 1)]),
                io: BTreeMap::from([("tun_rx".into(), 11), ("udp_rx".into(), 10)]),
            },
        ],
    }
}

fn tunnels() -> Vec<TunnelMapEntry> {
    vec![
        TunnelMapEntry {
            tunnel: "st0.0".into(),
            gateway: "gw-b".into(),
            spc: 0,
            spu: 1,
        },
        TunnelMapEntry {
            tunnel: "gw-c".into(),
            gateway: "gw-c".into(),
            spc: 0,
            spu: 0,
        },
    ]
}

fn event(n: u64, kind: EventKind, gateway: &str) -> EventView {
    EventView {
        timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + n),
        kind,
        gateway: Some(gateway.into()),
        vpn: (kind != EventKind::ConfigChange).then(|| "vpn-a".to_owned()),
        spi: n.is_multiple_of(2).then_some(0x8a1b_2c3d + n),
        message: format!("event {n}"),
    }
}

// ---------------------------------------------------------------------------------------
// The recording backend

/// Calls as the backend saw them, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    ListIke(Option<String>),
    ListIpsec(Option<String>, Option<String>),
    Stats,
    TunnelMap,
    Initiate(String),
    Terminate(TerminateTarget),
    Rekey(String),
    RekeyIke(String),
    Clear(ClearScope),
    Apply(String),
    Remove(ConfigObjectKind, String),
    AddSpu,
}

struct TestBackend {
    calls: Mutex<Vec<Call>>,
    events: broadcast::Sender<EventView>,
}

impl TestBackend {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
        })
    }

    fn record(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn known_vpn(vpn: &str) -> Result<(), BackendError> {
        if vpn == "vpn-a" {
            Ok(())
        } else {
            Err(BackendError::NotFound {
                kind: "vpn".into(),
                name: vpn.into(),
            })
        }
    }
}

#[tonic::async_trait]
impl Backend for TestBackend {
    async fn list_ike_sas(&self, gateway: Option<&str>) -> Result<Vec<IkeSaView>, BackendError> {
        self.record(Call::ListIke(gateway.map(str::to_owned)));
        Ok([ike_sa(), connecting_sa()]
            .into_iter()
            .filter(|sa| gateway.is_none_or(|g| sa.gateway == g))
            .collect())
    }

    async fn list_ipsec_sas(
        &self,
        vpn: Option<&str>,
        gateway: Option<&str>,
    ) -> Result<Vec<IpsecSaView>, BackendError> {
        self.record(Call::ListIpsec(
            vpn.map(str::to_owned),
            gateway.map(str::to_owned),
        ));
        Ok(vec![ipsec_sa(), manual_sa()])
    }

    async fn statistics(&self) -> Result<StatsView, BackendError> {
        self.record(Call::Stats);
        Ok(stats())
    }

    async fn tunnel_map(&self) -> Result<Vec<TunnelMapEntry>, BackendError> {
        self.record(Call::TunnelMap);
        Ok(tunnels())
    }

    async fn initiate(&self, vpn: &str) -> Result<OperationOutcome, BackendError> {
        self.record(Call::Initiate(vpn.into()));
        Self::known_vpn(vpn)?;
        Ok(OperationOutcome::Done(format!("initiating {vpn}")))
    }

    async fn terminate(&self, target: TerminateTarget) -> Result<OperationOutcome, BackendError> {
        self.record(Call::Terminate(target.clone()));
        Ok(match target {
            TerminateTarget::Vpn(v) => OperationOutcome::NoChange(format!("{v} has no SA")),
            TerminateTarget::Gateway(g) => {
                OperationOutcome::Done(format!("deleted the IKE SA of {g}"))
            }
        })
    }

    async fn rekey(&self, vpn: &str) -> Result<OperationOutcome, BackendError> {
        self.record(Call::Rekey(vpn.into()));
        Self::known_vpn(vpn)?;
        Err(BackendError::FailedPrecondition(format!(
            "{vpn} has no SA to rekey"
        )))
    }

    async fn rekey_ike(&self, gateway: &str) -> Result<OperationOutcome, BackendError> {
        self.record(Call::RekeyIke(gateway.into()));
        Ok(OperationOutcome::Done(format!(
            "gateway {gateway}: rekey of IKE SA 0000000000000001/0000000000000002 started"
        )))
    }

    async fn clear_ike_sas(&self, scope: ClearScope) -> Result<OperationOutcome, BackendError> {
        self.record(Call::Clear(scope.clone()));
        Ok(OperationOutcome::Done("cleared 2 IKE SAs".into()))
    }

    async fn apply_config(&self, toml_fragment: &str) -> Result<OperationOutcome, BackendError> {
        self.record(Call::Apply(toml_fragment.into()));
        if toml_fragment.contains("198.51.100.300") {
            return Err(BackendError::Invalid(vec![
                FieldError::new("security.ike.gateway.gw-c.address", "invalid IP address"),
                FieldError::new(
                    "security.ike.gateway.gw-c.ike-policy",
                    "references undefined ike policy \"x\"",
                ),
            ]));
        }
        Ok(OperationOutcome::Done("applied 1 object".into()))
    }

    async fn remove_config_object(
        &self,
        kind: ConfigObjectKind,
        name: &str,
    ) -> Result<OperationOutcome, BackendError> {
        self.record(Call::Remove(kind, name.into()));
        Ok(OperationOutcome::Done(format!(
            "removed {}.{name}",
            kind.config_path()
        )))
    }

    fn events(&self) -> broadcast::Receiver<EventView> {
        self.events.subscribe()
    }

    /// The fixtures have SPUs 0 and 1: the next is 2.
    async fn add_spu(&self) -> Result<SpuAdded, BackendError> {
        self.record(Call::AddSpu);
        Ok(SpuAdded {
            spu: 2,
            message: "SPU 2 added".into(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Harness

/// A fresh directory under cargo's per-target temporary directory.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "mgmt-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn new_pki(tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    if let Err(e) = mgmt::pki::init(&dir, &[], false) {
        panic!("pki init: {e}");
    }
    dir
}

struct Harness<B = TestBackend> {
    addr: SocketAddr,
    pki: PathBuf,
    backend: Arc<B>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), mgmt::MgmtError>>,
}

impl Harness {
    /// A standalone node's API: the backend implements no cluster method.
    async fn start() -> Harness {
        Harness::start_with(TestBackend::new()).await
    }
}

impl<B: Backend> Harness<B> {
    async fn start_with(backend: Arc<B>) -> Harness<B> {
        let pki = new_pki("pki");
        let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
            panic!("bind")
        };
        let Ok(addr) = listener.local_addr() else {
            panic!("local_addr")
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(mgmt::serve_on(
            listener,
            TlsFiles::from_pki_dir(&pki, "server"),
            backend.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Harness {
            addr,
            pki,
            backend,
            stop: Some(stop),
            server,
        }
    }

    async fn client(&self, identity: &str) -> ManagementClient<Channel> {
        match mgmt::connect(
            &self.addr.to_string(),
            &TlsFiles::from_pki_dir(&self.pki, identity),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => panic!("connect as {identity}: {e:?}"),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("server did not shut down cleanly: {other:?}"),
        }
    }
}

fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("unexpected status: {s:?}"),
    }
}

fn code_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

// ---------------------------------------------------------------------------------------
// Round trips

#[tokio::test]
async fn every_rpc_round_trips_between_domain_and_protobuf() {
    let h = Harness::start().await;
    let mut c = h.client("operator").await;

    let all = ok(c.list_ike_sas(pb::ListIkeSasRequest::default()).await);
    let all: Vec<IkeSaView> = all
        .sas
        .into_iter()
        .filter_map(|s| s.try_into().ok())
        .collect();
    assert_eq!(all, vec![ike_sa(), connecting_sa()]);
    let one = ok(c
        .list_ike_sas(pb::ListIkeSasRequest {
            gateway: "gw-b".into(),
        })
        .await);
    assert_eq!(one.sas.len(), 1);
    assert_eq!(one.sas[0].spi_i, 0xa5c7_a5f5_a1a9_f0d9);
    assert_eq!(one.sas[0].established_at_unix, 1_700_000_000);
    assert_eq!(one.sas[0].integrity, "", "AEAD: no integrity on the wire");

    let ipsec = ok(c
        .list_ipsec_sas(pb::ListIpsecSasRequest {
            vpn: "vpn-a".into(),
            gateway: String::new(),
        })
        .await);
    assert_eq!(ipsec.sas[0].lifetime_remaining_kilobytes, Some(4096));
    assert_eq!(ipsec.sas[1].lifetime_remaining_kilobytes, None);
    let ipsec: Vec<IpsecSaView> = ipsec
        .sas
        .into_iter()
        .filter_map(|s| s.try_into().ok())
        .collect();
    assert_eq!(ipsec, vec![ipsec_sa(), manual_sa()]);

    let st = ok(c.get_statistics(pb::GetStatisticsRequest {}).await);
    assert_eq!(st.drops.get("replay"), Some(&5), "totals summed over SPUs");
    assert_eq!(st.drops.get("unknown_spi"), Some(&7));
    assert_eq!(st.io.get("udp_rx"), Some(&22));
    assert_eq!(StatsView::try_from(st), Ok(stats()));

    let map = ok(c.get_tunnel_map(pb::GetTunnelMapRequest {}).await);
    let map: Vec<TunnelMapEntry> = map
        .entries
        .into_iter()
        .filter_map(|e| e.try_into().ok())
        .collect();
    assert_eq!(map, tunnels());

    let outcome = |r| OperationOutcome::try_from(ok(r));
    assert_eq!(
        outcome(
            c.initiate(pb::InitiateRequest {
                vpn: "vpn-a".into()
            })
            .await
        ),
        Ok(OperationOutcome::Done("initiating vpn-a".into()))
    );
    assert_eq!(
        outcome(
            c.terminate(pb::TerminateRequest {
                target: Some(pb::terminate_request::Target::Vpn("vpn-a".into())),
            })
            .await
        ),
        Ok(OperationOutcome::NoChange("vpn-a has no SA".into()))
    );
    let r = ok(c
        .terminate(pb::TerminateRequest {
            target: Some(pb::terminate_request::Target::Gateway("gw-b".into())),
        })
        .await);
    assert!(r.ok);
    let rekeyed = ok(c
        .rekey_ike(pb::RekeyIkeRequest {
            gateway: "gw-b".into(),
        })
        .await);
    assert!(rekeyed.ok && rekeyed.message.contains("rekey of IKE SA"));
    for scope in [
        pb::clear_ike_sas_request::Scope::All(true),
        pb::clear_ike_sas_request::Scope::Gateway("gw-b".into()),
    ] {
        assert!(
            ok(
                c.clear_ike_sas(pb::ClearIkeSasRequest { scope: Some(scope) })
                    .await
            )
            .ok
        );
    }
    let applied = ok(c
        .apply_config(pb::ApplyConfigRequest {
            toml_fragment: "[security.ike.gateway.gw-c]\naddress = \"198.51.100.3\"\n".into(),
        })
        .await);
    assert_eq!(applied.message, "applied 1 object");
    let removed = ok(c
        .remove_config_object(pb::RemoveConfigObjectRequest {
            kind: pb::ConfigObjectKind::IpsecVpn.into(),
            name: "vpn-a".into(),
        })
        .await);
    assert_eq!(removed.message, "removed security.ipsec.vpn.vpn-a");

    assert_eq!(
        h.backend.calls(),
        vec![
            Call::ListIke(None),
            Call::ListIke(Some("gw-b".into())),
            Call::ListIpsec(Some("vpn-a".into()), None),
            Call::Stats,
            Call::TunnelMap,
            Call::Initiate("vpn-a".into()),
            Call::Terminate(TerminateTarget::Vpn("vpn-a".into())),
            Call::Terminate(TerminateTarget::Gateway("gw-b".into())),
            Call::RekeyIke("gw-b".into()),
            Call::Clear(ClearScope::All),
            Call::Clear(ClearScope::Gateway("gw-b".into())),
            Call::Apply("[security.ike.gateway.gw-c]\naddress = \"198.51.100.3\"\n".into()),
            Call::Remove(ConfigObjectKind::IpsecVpn, "vpn-a".into()),
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn backend_errors_become_their_status_codes() {
    let h = Harness::start().await;
    let mut c = h.client("operator").await;
    let (code, msg) = code_of(c.initiate(pb::InitiateRequest { vpn: "nope".into() }).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::NotFound, "vpn \"nope\" is not configured")
    );
    let (code, msg) = code_of(
        c.rekey(pb::RekeyRequest {
            vpn: "vpn-a".into(),
        })
        .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (Code::FailedPrecondition, "vpn-a has no SA to rekey")
    );
    let (code, msg) = code_of(
        c.apply_config(pb::ApplyConfigRequest {
            toml_fragment: "[security.ike.gateway.gw-c]\naddress = \"198.51.100.300\"\n".into(),
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        msg,
        "security.ike.gateway.gw-c.address: invalid IP address\n\
         security.ike.gateway.gw-c.ike-policy: references undefined ike policy \"x\""
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// Roles and TLS

#[tokio::test]
async fn read_only_role_may_read_but_not_operate() {
    let h = Harness::start().await;
    let mut c = h.client("read-only").await;

    assert_eq!(
        ok(c.list_ike_sas(pb::ListIkeSasRequest::default()).await)
            .sas
            .len(),
        2
    );
    assert_eq!(
        ok(c.list_ipsec_sas(pb::ListIpsecSasRequest::default()).await)
            .sas
            .len(),
        2
    );
    assert_eq!(
        ok(c.get_statistics(pb::GetStatisticsRequest {}).await)
            .spus
            .len(),
        2
    );
    assert_eq!(
        ok(c.get_tunnel_map(pb::GetTunnelMapRequest {}).await)
            .entries
            .len(),
        2
    );
    assert!(c.watch_events(pb::WatchRequest::default()).await.is_ok());
    let reads = h.backend.calls();
    assert_eq!(reads.len(), 4);

    let denied = [
        (
            "Initiate",
            code_of(
                c.initiate(pb::InitiateRequest {
                    vpn: "vpn-a".into(),
                })
                .await,
            ),
        ),
        (
            "Terminate",
            code_of(
                c.terminate(pb::TerminateRequest {
                    target: Some(pb::terminate_request::Target::Vpn("vpn-a".into())),
                })
                .await,
            ),
        ),
        (
            "Rekey",
            code_of(
                c.rekey(pb::RekeyRequest {
                    vpn: "vpn-a".into(),
                })
                .await,
            ),
        ),
        (
            "RekeyIke",
            code_of(
                c.rekey_ike(pb::RekeyIkeRequest {
                    gateway: "gw-b".into(),
                })
                .await,
            ),
        ),
        (
            "ClearIkeSas",
            code_of(
                c.clear_ike_sas(pb::ClearIkeSasRequest {
                    scope: Some(pb::clear_ike_sas_request::Scope::All(true)),
                })
                .await,
            ),
        ),
        (
            "ApplyConfig",
            code_of(
                c.apply_config(pb::ApplyConfigRequest {
                    toml_fragment: "[security]".into(),
                })
                .await,
            ),
        ),
        (
            "RemoveConfigObject",
            code_of(
                c.remove_config_object(pb::RemoveConfigObjectRequest {
                    kind: pb::ConfigObjectKind::IkeGateway.into(),
                    name: "gw-b".into(),
                })
                .await,
            ),
        ),
        ("AddSpu", code_of(c.add_spu(pb::AddSpuRequest {}).await)),
        // The role check comes before validation: an invalid request is still denied.
        (
            "Initiate",
            code_of(c.initiate(pb::InitiateRequest { vpn: String::new() }).await),
        ),
    ];
    for (rpc, (code, msg)) in denied {
        assert_eq!(code, Code::PermissionDenied, "{rpc}");
        assert_eq!(msg, format!("read-only role may not call {rpc}"));
    }
    assert_eq!(
        h.backend.calls(),
        reads,
        "no mutating call reached the backend"
    );
    h.stop().await;
}

/// A channel to the harness with the given TLS settings.
async fn raw_client(
    h: &Harness,
    tls: ClientTlsConfig,
) -> Result<ManagementClient<Channel>, String> {
    let endpoint =
        Endpoint::from_shared(format!("https://{}", h.addr)).map_err(|e| e.to_string())?;
    let channel = endpoint
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(ManagementClient::new(channel))
}

/// The whole error as text: tonic keeps the TLS alert in the source chain.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

async fn assert_refused(h: &Harness, tls: ClientTlsConfig, what: &str) {
    // With TLS 1.3 the client may finish its side of the handshake before the server
    // rejects the certificate, so the refusal shows either at connect or at the first
    // call; either way no RPC reaches the backend.
    let refusal = match raw_client(h, tls).await {
        Err(e) => e,
        Ok(mut c) => match c.list_ike_sas(pb::ListIkeSasRequest::default()).await {
            Ok(_) => panic!("{what}: the server answered"),
            Err(status) => chain(&status),
        },
    };
    assert!(
        refusal.contains("CertificateRequired")
            || refusal.contains("UnknownCA")
            || refusal.contains("BadCertificate")
            || refusal.contains("DecryptError"),
        "{what}: expected a TLS alert, got {refusal}"
    );
    assert!(
        h.backend.calls().is_empty(),
        "{what}: a call reached the backend"
    );
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn client_without_a_certificate_is_refused_in_the_handshake() {
    let h = Harness::start().await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(h.pki.join("ca.pem"))))
        .domain_name("127.0.0.1");
    assert_refused(&h, tls, "no client certificate").await;
    // The refused handshake did not take the server down.
    let mut c = h.client("operator").await;
    assert!(c.get_tunnel_map(pb::GetTunnelMapRequest {}).await.is_ok());
    h.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let h = Harness::start().await;
    let other = new_pki("other");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(h.pki.join("ca.pem"))))
        .identity(tonic::transport::Identity::from_pem(
            read(other.join("operator.pem")),
            read(other.join("operator.key")),
        ))
        .domain_name("127.0.0.1");
    assert_refused(&h, tls, "client certificate from another CA").await;

    // And the client side: a server whose certificate is not from our CA is not trusted.
    let files = TlsFiles {
        ca: other.join("ca.pem"),
        cert: other.join("operator.pem"),
        key: other.join("operator.key"),
    };
    match mgmt::connect(&h.addr.to_string(), &files).await {
        Err(e) => assert!(chain(&e).contains("UnknownIssuer"), "{}", chain(&e)),
        Ok(_) => panic!("connected to a server from another CA"),
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// Validation

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let h = Harness::start().await;
    let mut c = h.client("operator").await;
    let cases = [
        (
            code_of(c.initiate(pb::InitiateRequest { vpn: String::new() }).await),
            "vpn: must not be empty",
        ),
        (
            code_of(
                c.rekey(pb::RekeyRequest {
                    vpn: " vpn-a".into(),
                })
                .await,
            ),
            "vpn: must not contain",
        ),
        (
            code_of(c.terminate(pb::TerminateRequest { target: None }).await),
            "target: one of vpn or gateway",
        ),
        (
            code_of(
                c.terminate(pb::TerminateRequest {
                    target: Some(pb::terminate_request::Target::Gateway(String::new())),
                })
                .await,
            ),
            "gateway: must not be empty",
        ),
        (
            code_of(
                c.clear_ike_sas(pb::ClearIkeSasRequest { scope: None })
                    .await,
            ),
            "scope: one of gateway or all",
        ),
        (
            code_of(
                c.clear_ike_sas(pb::ClearIkeSasRequest {
                    scope: Some(pb::clear_ike_sas_request::Scope::All(false)),
                })
                .await,
            ),
            "all: must be true",
        ),
        (
            code_of(
                c.apply_config(pb::ApplyConfigRequest {
                    toml_fragment: " \n".into(),
                })
                .await,
            ),
            "toml_fragment: must not be empty",
        ),
        (
            code_of(
                c.remove_config_object(pb::RemoveConfigObjectRequest {
                    kind: pb::ConfigObjectKind::Unspecified.into(),
                    name: "x".into(),
                })
                .await,
            ),
            "kind: must be set",
        ),
        (
            code_of(
                c.remove_config_object(pb::RemoveConfigObjectRequest {
                    kind: 99,
                    name: "x".into(),
                })
                .await,
            ),
            "kind: unknown value 99",
        ),
        (
            code_of(
                c.remove_config_object(pb::RemoveConfigObjectRequest {
                    kind: pb::ConfigObjectKind::IkeProposal.into(),
                    name: String::new(),
                })
                .await,
            ),
            "name: must not be empty",
        ),
        (
            code_of(
                c.list_ike_sas(pb::ListIkeSasRequest {
                    gateway: "gw\n".into(),
                })
                .await,
            ),
            "gateway: must not contain",
        ),
        (
            code_of(
                c.watch_events(pb::WatchRequest {
                    kinds: vec![0],
                    ..Default::default()
                })
                .await,
            ),
            "kinds: unknown or unspecified event kind 0",
        ),
    ];
    for ((code, msg), expected) in cases {
        assert_eq!(code, Code::InvalidArgument, "{msg}");
        assert!(
            msg.starts_with(expected),
            "{msg:?} should start with {expected:?}"
        );
    }
    assert!(
        h.backend.calls().is_empty(),
        "invalid requests never reach the backend"
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// Events

#[tokio::test]
async fn event_stream_delivers_matching_events_in_order() {
    let h = Harness::start().await;
    let mut c = h.client("read-only").await;
    // The handler subscribes before it answers, so every event sent after this returns
    // is seen.
    let mut all = ok(c.watch_events(pb::WatchRequest::default()).await);
    let mut filtered = ok(c
        .watch_events(pb::WatchRequest {
            kinds: vec![pb::EventKind::SaUp.into(), pb::EventKind::Rekey.into()],
            gateway: "gw-b".into(),
            vpn: String::new(),
        })
        .await);
    let sent = [
        event(0, EventKind::SaUp, "gw-b"),
        event(1, EventKind::SaUp, "gw-c"),
        event(2, EventKind::Dpd, "gw-b"),
        event(3, EventKind::Rekey, "gw-b"),
        event(4, EventKind::ConfigChange, "gw-b"),
        event(5, EventKind::SaDown, "gw-b"),
        event(6, EventKind::Failover, "gw-b"),
    ];
    for e in &sent {
        assert!(h.backend.events.send(e.clone()).is_ok());
    }
    for expected in &sent {
        match tokio::time::timeout(Duration::from_secs(5), all.message()).await {
            Ok(Ok(Some(got))) => assert_eq!(EventView::try_from(got).as_ref(), Ok(expected)),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    for expected in [&sent[0], &sent[3]] {
        match tokio::time::timeout(Duration::from_secs(5), filtered.message()).await {
            Ok(Ok(Some(got))) => assert_eq!(EventView::try_from(got).as_ref(), Ok(expected)),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    h.stop().await;
    // Shutdown ended both streams cleanly.
    assert!(matches!(all.message().await, Ok(None)));
    assert!(matches!(filtered.message().await, Ok(None)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_watcher_that_falls_behind_gets_data_loss() {
    let h = Harness::start().await;
    let mut c = h.client("read-only").await;
    let mut stream = ok(c.watch_events(pb::WatchRequest::default()).await);
    // On a current-thread runtime the server cannot run between these sends, so the
    // 16-slot channel overflows deterministically.
    for n in 0..40 {
        let _ = h.backend.events.send(event(n, EventKind::SaUp, "gw-b"));
    }
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Err(status)) => {
            assert_eq!(status.code(), Code::DataLoss);
            assert!(
                status.message().contains("missed 24 events"),
                "{}",
                status.message()
            );
        }
        other => panic!("expected DATA_LOSS, got {other:?}"),
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// vpnctl

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn vpnctl(args: Vec<String>) -> Output {
    run_cli(env!("CARGO_BIN_EXE_vpnctl"), args).await
}

/// `vpnd cli ARGS`: the same CLI inside the daemon's executable.
async fn vpnd_cli(mut args: Vec<String>) -> Output {
    args.insert(0, "cli".into());
    run_cli(env!("CARGO_BIN_EXE_vpnd"), args).await
}

async fn run_cli(exe: &'static str, args: Vec<String>) -> Output {
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(&args)
            .env_remove("VPNCTL_SERVER")
            .env_remove("VPNCTL_PKI")
            .output()
    });
    match run.await {
        Ok(Ok(out)) => Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        other => panic!("running {exe}: {other:?}"),
    }
}

fn args<B>(h: &Harness<B>, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--server".to_owned(),
        h.addr.to_string(),
        "--pki".to_owned(),
        h.pki.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

#[tokio::test]
async fn vpnctl_prints_tables() {
    let h = Harness::start().await;
    let out = vpnctl(args(
        &h,
        &["show", "security", "ike", "security-associations"],
    ))
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "Gateway  State       Initiator cookie  Responder cookie  Role       Remote Address"
    );
    assert_eq!(
        lines[1],
        "gw-b     UP          a5c7a5f5a1a9f0d9  2b3f3ff19d6e7b1f  Initiator  192.0.2.2:4500"
    );
    assert_eq!(
        lines[2],
        "gw-c     CONNECTING  0000000000000001  0000000000000000  Responder  [2001:db8::3]:500"
    );

    let out = vpnctl(args(
        &h,
        &["show", "security", "ipsec", "security-associations"],
    ))
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("  Total active tunnels: 2\nID"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "<vpn-a     ESP:aes-256-gcm/None      8a1b2c3d  3403/4096    1    4500  192.0.2.2\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(">manual-1  AH:null/hmac-sha-256-128"),
        "{}",
        out.stdout
    );

    let out = vpnctl(args(
        &h,
        &[
            "show",
            "security",
            "ipsec",
            "security-associations",
            "detail",
        ],
    ))
    .await;
    assert!(
        out.stdout.contains("  Local Identity: 10.1.0.0/16\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  Remote Identity: 10.2.0.0/16 proto 6 port 443\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  Drops: icv_failure 1, replay 3\n"),
        "{}",
        out.stdout
    );

    let out = vpnctl(args(&h, &["show", "security", "ipsec", "statistics"])).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("  Encrypted packets:               17\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  Authentication failures: 1, Replay errors: 5, Unknown SPI: 7\n"),
        "{}",
        out.stdout
    );

    let out = vpnctl(args(&h, &["show", "security", "ike", "tunnel-map"])).await;
    assert_eq!(
        out.stdout,
        "Tunnel  Gateway  SPC  SPU\nst0.0   gw-b     0    1\ngw-c    gw-c     0    0\n"
    );

    let out = vpnctl(args(
        &h,
        &["request", "security", "ike", "terminate", "gateway", "gw-b"],
    ))
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "deleted the IKE SA of gw-b\n")
    );
    let out = vpnctl(args(
        &h,
        &["clear", "security", "ike", "security-associations"],
    ))
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "cleared 2 IKE SAs\n")
    );
    assert_eq!(
        h.backend.calls()[5..],
        [
            Call::Terminate(TerminateTarget::Gateway("gw-b".into())),
            Call::Clear(ClearScope::All)
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn vpnctl_json_output() {
    let h = Harness::start().await;
    let out = vpnctl(args(
        &h,
        &["--json", "show", "security", "ike", "security-associations"],
    ))
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v[0]["gateway"], "gw-b");
    assert_eq!(v[0]["spi_i"], "a5c7a5f5a1a9f0d9", "SPIs are hex strings");
    assert_eq!(v[0]["state"], "established");
    assert_eq!(v[0]["established_at_unix"], 1_700_000_000);
    assert_eq!(v[0]["remote"], "192.0.2.2:4500");
    assert_eq!(v[1]["established_at_unix"], serde_json::Value::Null);

    let out = vpnctl(args(
        &h,
        &[
            "show",
            "security",
            "ipsec",
            "security-associations",
            "vpn",
            "vpn-a",
            "--json",
        ],
    ))
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v[0]["inbound_spi"], "8a1b2c3d");
    assert_eq!(v[0]["drops"]["replay"], 3);
    assert_eq!(v[0]["local_selectors"][0]["start"], "10.1.0.0");

    let out = vpnctl(args(
        &h,
        &["--json", "show", "security", "ipsec", "statistics"],
    ))
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v["drops"]["replay"], 5);
    assert_eq!(v["spus"][1]["packets_out"], 11);

    let out = vpnctl(args(
        &h,
        &[
            "--json", "request", "security", "ike", "initiate", "vpn", "vpn-a",
        ],
    ))
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(
        v,
        serde_json::json!({"result": "done", "message": "initiating vpn-a"})
    );
    h.stop().await;
}

#[tokio::test]
async fn vpnctl_errors_are_one_line_and_fail() {
    let h = Harness::start().await;
    let out = vpnctl(args(
        &h,
        &[
            "--identity",
            "read-only",
            "request",
            "security",
            "ike",
            "initiate",
            "vpn",
            "vpn-a",
        ],
    ))
    .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "vpnctl: permission denied: read-only role may not call Initiate\n"
    );

    let out = vpnctl(args(
        &h,
        &["request", "security", "ipsec", "sa", "rekey", "vpn", "nope"],
    ))
    .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "vpnctl: not found: vpn \"nope\" is not configured\n"
    );

    let out = vpnctl(args(
        &h,
        &["show", "security", "ike", "security-associations", "bogus"],
    ))
    .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "vpnctl: unexpected keyword \"bogus\"; expected one of: detail, gateway\n"
    );

    let fragment = temp_dir("fragment");
    let _ = std::fs::create_dir_all(&fragment);
    let file = fragment.join("gw-c.toml");
    let _ = std::fs::write(
        &file,
        "[security.ike.gateway.gw-c]\naddress = \"198.51.100.300\"\n",
    );
    let out = vpnctl(args(&h, &["load", "merge", &file.display().to_string()])).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with(
            "vpnctl: invalid argument: security.ike.gateway.gw-c.address: invalid IP address"
        ),
        "{}",
        out.stderr
    );
    h.stop().await;
}

/// `AddSpu` answers the new SPU's number, not an operation result: over the API, and
/// from `vpnctl request chassis spu add` as its message or as JSON. A read-only caller
/// is refused before the backend sees the call.
#[tokio::test]
async fn add_spu_answers_the_new_spu_number() {
    let h = Harness::start().await;
    let mut c = h.client("operator").await;
    let added = ok(c.add_spu(pb::AddSpuRequest {}).await);
    assert_eq!((added.spu, added.message.as_str()), (2, "SPU 2 added"));
    assert_eq!(
        SpuAdded::from(added),
        SpuAdded {
            spu: 2,
            message: "SPU 2 added".into()
        }
    );

    let out = vpnctl(args(&h, &["request", "chassis", "spu", "add"])).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "SPU 2 added\n"),
        "{}",
        out.stderr
    );
    let out = vpnctl(args(&h, &["--json", "request", "chassis", "spu", "add"])).await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v, serde_json::json!({"spu": 2, "message": "SPU 2 added"}));
    // An SPU is added, never named: numbers are not reused.
    let out = vpnctl(args(&h, &["request", "chassis", "spu", "add", "1"])).await;
    assert_eq!(out.code, Some(2), "clap usage error: {}", out.stderr);

    let out = vpnctl(args(
        &h,
        &[
            "--identity",
            "read-only",
            "request",
            "chassis",
            "spu",
            "add",
        ],
    ))
    .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "vpnctl: permission denied: read-only role may not call AddSpu\n"
    );
    assert_eq!(
        h.backend.calls(),
        [Call::AddSpu, Call::AddSpu, Call::AddSpu]
    );
    h.stop().await;
}

#[tokio::test]
async fn vpnctl_monitor_streams_events() {
    let h = Harness::start().await;
    let a = args(
        &h,
        &["--json", "monitor", "security", "events", "kind", "sa-down"],
    );
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vpnctl"))
            .args(&a)
            .stdout(std::process::Stdio::piped())
            .spawn()
    });
    let mut child = match run.await {
        Ok(Ok(child)) => child,
        other => panic!("spawning vpnctl: {other:?}"),
    };
    // Send until the subprocess has subscribed and printed the first matching event.
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout")
    };
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout).lines().next()
    });
    let sender = h.backend.events.clone();
    let pump = tokio::spawn(async move {
        for n in 0.. {
            let _ = sender.send(event(n, EventKind::SaUp, "gw-b"));
            let _ = sender.send(event(n, EventKind::SaDown, "gw-b"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let line = match tokio::time::timeout(Duration::from_secs(20), reader).await {
        Ok(Ok(Some(Ok(line)))) => line,
        other => panic!("no event line from vpnctl: {other:?}"),
    };
    pump.abort();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["kind"], "sa-down");
    assert_eq!(v["gateway"], "gw-b");
    h.stop().await;
    // The server's shutdown ends the stream, and with it vpnctl, successfully.
    let status = tokio::task::spawn_blocking(move || child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
}

#[tokio::test]
async fn vpnctl_pki_init_writes_a_usable_pki_once() {
    let dir = temp_dir("cli-pki");
    let d = dir.display().to_string();
    let out = vpnctl(vec![
        "pki".into(),
        "init".into(),
        d.clone(),
        "--san".into(),
        "vpn.example".into(),
    ])
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "operator.pem",
        "operator.key",
        "read-only.pem",
        "read-only.key",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode =
            std::fs::metadata(dir.join("operator.key")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
    }
    let out = vpnctl(vec!["pki".into(), "init".into(), d.clone()]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("already exists (use --force"),
        "{}",
        out.stderr
    );
    let out = vpnctl(vec!["pki".into(), "init".into(), d, "--force".into()]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// `vpnd cli` is `vpnctl` (what the demo uses, since `cargo run --bin vpnd` builds no
/// `vpnctl`): the same output for the same arguments, its own name in usage and error
/// lines, and options after `cli` go to the CLI, not to `vpnd` (which has a `--pki` of
/// its own).
#[tokio::test]
async fn vpnd_cli_is_vpnctl() {
    let h = Harness::start().await;
    for words in [
        &["show", "security", "ike", "security-associations"][..],
        &[
            "--json",
            "show",
            "security",
            "ipsec",
            "security-associations",
        ],
    ] {
        let want = vpnctl(args(&h, words)).await;
        assert_eq!(want.code, Some(0), "{}", want.stderr);
        let got = vpnd_cli(args(&h, words)).await;
        assert_eq!(got.code, Some(0), "vpnd cli {words:?}: {}", got.stderr);
        assert_eq!(got.stdout, want.stdout, "vpnd cli {words:?}");
    }
    let out = vpnd_cli(args(
        &h,
        &[
            "--identity",
            "read-only",
            "request",
            "security",
            "ike",
            "initiate",
            "vpn",
            "vpn-a",
        ],
    ))
    .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "vpnd cli: permission denied: read-only role may not call Initiate\n"
    );
    let out = vpnd_cli(vec!["--help".into()]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("Usage: vpnd cli [OPTIONS] <COMMAND>")
            && out.stdout.contains("show chassis cluster status"),
        "{}",
        out.stdout
    );
    let out = vpnd_cli(vec!["show".into(), "bogus".into()]).await;
    assert_eq!(out.code, Some(2), "a usage error: {}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Chassis cluster

fn cluster_status() -> ClusterStatusView {
    let node = |node, priority, status| GroupNodeView {
        node,
        priority,
        status,
        monitor_failures: Vec::new(),
    };
    ClusterStatusView {
        cluster_id: 1,
        local_member: Member::Node0,
        redundancy_groups: vec![
            RedundancyGroupView {
                redundancy_group: 0,
                failover_count: 1,
                epoch: 1,
                preempt: false,
                manual_failover: false,
                nodes: vec![
                    node(Member::Node0, 200, RedundancyState::Primary),
                    node(Member::Node1, 100, RedundancyState::Secondary),
                ],
            },
            RedundancyGroupView {
                redundancy_group: 1,
                failover_count: 2,
                epoch: 5,
                preempt: true,
                manual_failover: true,
                nodes: vec![
                    GroupNodeView {
                        monitor_failures: vec![MonitorFailure {
                            kind: MonitorKind::Interface,
                            object: "eth1".into(),
                            weight: 255,
                        }],
                        ..node(Member::Node0, 0, RedundancyState::SecondaryHold)
                    },
                    node(Member::Node1, 100, RedundancyState::Primary),
                ],
            },
        ],
    }
}

fn cluster_statistics() -> ClusterStatisticsView {
    let member = |member, addr: &str, reachable, ms: Option<u64>| MemberReachabilityView {
        member,
        control_address: addr.parse().unwrap_or_else(|_| unreachable!()),
        reachable,
        last_contact: ms.map(Duration::from_millis),
    };
    ClusterStatisticsView {
        cluster_id: 1,
        local_member: Member::Node0,
        heartbeats_sent: 2276,
        heartbeats_received: 2280,
        lease_renewals_sent: 1137,
        lease_renewals_received: 3,
        failovers: 2,
        raft: RaftView {
            term: 3,
            leader: Some(Member::Node0),
            commit_index: 1234,
            applied_index: 1234,
        },
        replication: RecordKind::ALL
            .into_iter()
            .map(|kind| ReplicationView {
                kind,
                sent: 40,
                received: 2,
                held: 7,
            })
            .collect(),
        members: vec![
            member(Member::Node0, "10.255.0.1:7400", true, None),
            member(Member::Node1, "10.255.0.2:7400", true, Some(180)),
            member(Member::Witness, "10.255.0.3:7400", false, Some(9_500)),
        ],
    }
}

/// Cluster operations as the clustered backend saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClusterCall {
    Status,
    Statistics,
    Failover(u8, Member),
    Reset(u8),
    FailSpu(u32),
}

/// A cluster member's backend: answers the cluster methods, and nothing else matters.
struct ClusterBackend {
    calls: Mutex<Vec<ClusterCall>>,
    events: broadcast::Sender<EventView>,
}

impl ClusterBackend {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            events: broadcast::channel(1).0,
        })
    }

    fn record(&self, call: ClusterCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    fn calls(&self) -> Vec<ClusterCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[tonic::async_trait]
impl Backend for ClusterBackend {
    async fn list_ike_sas(&self, _: Option<&str>) -> Result<Vec<IkeSaView>, BackendError> {
        Ok(Vec::new())
    }

    async fn list_ipsec_sas(
        &self,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<IpsecSaView>, BackendError> {
        Ok(Vec::new())
    }

    async fn statistics(&self) -> Result<StatsView, BackendError> {
        Ok(StatsView::default())
    }

    async fn tunnel_map(&self) -> Result<Vec<TunnelMapEntry>, BackendError> {
        Ok(Vec::new())
    }

    async fn initiate(&self, vpn: &str) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(vpn.into()))
    }

    async fn terminate(&self, _: TerminateTarget) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(String::new()))
    }

    async fn rekey(&self, vpn: &str) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(vpn.into()))
    }

    async fn rekey_ike(&self, gateway: &str) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(gateway.into()))
    }

    async fn clear_ike_sas(&self, _: ClearScope) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(String::new()))
    }

    async fn apply_config(&self, _: &str) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(String::new()))
    }

    async fn remove_config_object(
        &self,
        _: ConfigObjectKind,
        name: &str,
    ) -> Result<OperationOutcome, BackendError> {
        Ok(OperationOutcome::NoChange(name.into()))
    }

    fn events(&self) -> broadcast::Receiver<EventView> {
        self.events.subscribe()
    }

    async fn add_spu(&self) -> Result<SpuAdded, BackendError> {
        Ok(SpuAdded {
            spu: 0,
            message: String::new(),
        })
    }

    async fn cluster_status(&self) -> Result<ClusterStatusView, BackendError> {
        self.record(ClusterCall::Status);
        Ok(cluster_status())
    }

    async fn cluster_statistics(&self) -> Result<ClusterStatisticsView, BackendError> {
        self.record(ClusterCall::Statistics);
        Ok(cluster_statistics())
    }

    async fn request_failover(
        &self,
        group: u8,
        node: Member,
    ) -> Result<OperationOutcome, BackendError> {
        self.record(ClusterCall::Failover(group, node));
        if group == 9 {
            return Err(BackendError::NotFound {
                kind: "redundancy group".into(),
                name: "9".into(),
            });
        }
        Ok(OperationOutcome::Done(format!(
            "{node} is now primary for redundancy group {group}"
        )))
    }

    async fn reset_failover(&self, group: u8) -> Result<OperationOutcome, BackendError> {
        self.record(ClusterCall::Reset(group));
        Ok(OperationOutcome::Done(format!(
            "redundancy group {group} manual failover reset"
        )))
    }

    async fn fail_spu(&self, spu: u32) -> Result<OperationOutcome, BackendError> {
        self.record(ClusterCall::FailSpu(spu));
        Ok(OperationOutcome::Done(format!("SPU {spu} failed")))
    }
}

/// Every cluster RPC once, as `client` (a fresh one per call is not needed: statuses do
/// not poison the channel). Returns each RPC's name and outcome.
async fn every_cluster_rpc(
    c: &mut ManagementClient<Channel>,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    vec![
        (
            "GetClusterStatus",
            c.get_cluster_status(pb::GetClusterStatusRequest {})
                .await
                .map(drop),
        ),
        (
            "GetClusterStatistics",
            c.get_cluster_statistics(pb::GetClusterStatisticsRequest {})
                .await
                .map(drop),
        ),
        (
            "RequestClusterFailover",
            c.request_cluster_failover(pb::RequestClusterFailoverRequest {
                redundancy_group: Some(1),
                node: pb::ClusterMember::Node1.into(),
            })
            .await
            .map(drop),
        ),
        (
            "ResetClusterFailover",
            c.reset_cluster_failover(pb::ResetClusterFailoverRequest {
                redundancy_group: Some(1),
            })
            .await
            .map(drop),
        ),
        (
            "FailSpu",
            c.fail_spu(pb::FailSpuRequest { spu: Some(1) })
                .await
                .map(drop),
        ),
    ]
}

#[tokio::test]
async fn cluster_rpcs_on_a_standalone_node_are_failed_precondition() {
    let h = Harness::start().await;
    for identity in ["operator", "read-only"] {
        let mut c = h.client(identity).await;
        for (rpc, result) in every_cluster_rpc(&mut c).await {
            let (code, msg) = code_of(result);
            let mutates = !rpc.starts_with("Get");
            if identity == "read-only" && mutates {
                assert_eq!(code, Code::PermissionDenied, "{rpc}");
            } else {
                assert_eq!(
                    (code, msg.as_str()),
                    (Code::FailedPrecondition, NOT_CLUSTERED),
                    "{rpc}"
                );
            }
        }
    }
    assert!(h.backend.calls().is_empty());

    let out = vpnctl(args(&h, &["show", "chassis", "cluster", "status"])).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        format!("vpnctl: not possible now: {NOT_CLUSTERED}\n")
    );
    h.stop().await;
}

#[tokio::test]
async fn read_only_role_may_read_cluster_state_but_not_operate_it() {
    let h = Harness::start_with(ClusterBackend::new()).await;
    let mut c = h.client("read-only").await;
    for (rpc, result) in every_cluster_rpc(&mut c).await {
        if rpc.starts_with("Get") {
            assert!(result.is_ok(), "{rpc}: {result:?}");
        } else {
            let (code, msg) = code_of(result);
            assert_eq!(code, Code::PermissionDenied, "{rpc}");
            assert_eq!(msg, format!("read-only role may not call {rpc}"));
        }
    }
    // The role check comes before validation.
    let (code, _) = code_of(
        c.request_cluster_failover(pb::RequestClusterFailoverRequest::default())
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(
        h.backend.calls(),
        [ClusterCall::Status, ClusterCall::Statistics],
        "no operation reached the backend"
    );

    let out = vpnctl(args(
        &h,
        &[
            "--identity",
            "read-only",
            "request",
            "chassis",
            "cluster",
            "failover",
            "redundancy-group",
            "1",
            "node",
            "1",
        ],
    ))
    .await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "vpnctl: permission denied: read-only role may not call RequestClusterFailover\n"
    );
    h.stop().await;
}

#[tokio::test]
async fn cluster_rpcs_round_trip() {
    let h = Harness::start_with(ClusterBackend::new()).await;
    let mut c = h.client("operator").await;
    let status = ok(c.get_cluster_status(pb::GetClusterStatusRequest {}).await);
    assert_eq!(status.local_member, i32::from(pb::ClusterMember::Node0));
    assert_eq!(ClusterStatusView::try_from(status), Ok(cluster_status()));
    let stats = ok(c
        .get_cluster_statistics(pb::GetClusterStatisticsRequest {})
        .await);
    assert_eq!(stats.members[0].last_contact_ms_ago, None);
    assert_eq!(stats.members[1].last_contact_ms_ago, Some(180));
    assert_eq!(
        ClusterStatisticsView::try_from(stats),
        Ok(cluster_statistics())
    );

    for (rpc, result) in every_cluster_rpc(&mut c).await {
        assert!(result.is_ok(), "{rpc}: {result:?}");
    }
    let failed = ok(c
        .request_cluster_failover(pb::RequestClusterFailoverRequest {
            redundancy_group: Some(0),
            node: pb::ClusterMember::Node0.into(),
        })
        .await);
    assert_eq!(
        OperationOutcome::try_from(failed),
        Ok(OperationOutcome::Done(
            "node0 is now primary for redundancy group 0".into()
        ))
    );
    let (code, msg) = code_of(
        c.request_cluster_failover(pb::RequestClusterFailoverRequest {
            redundancy_group: Some(9),
            node: pb::ClusterMember::Node1.into(),
        })
        .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (Code::NotFound, "redundancy group \"9\" is not configured")
    );
    assert_eq!(
        h.backend.calls(),
        [
            ClusterCall::Status,
            ClusterCall::Statistics,
            ClusterCall::Status,
            ClusterCall::Statistics,
            ClusterCall::Failover(1, Member::Node1),
            ClusterCall::Reset(1),
            ClusterCall::FailSpu(1),
            ClusterCall::Failover(0, Member::Node0),
            ClusterCall::Failover(9, Member::Node1),
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn cluster_requests_name_the_field() {
    let h = Harness::start_with(ClusterBackend::new()).await;
    let mut c = h.client("operator").await;
    let failover =
        |group: Option<u32>, node: pb::ClusterMember| pb::RequestClusterFailoverRequest {
            redundancy_group: group,
            node: node.into(),
        };
    let cases = [
        (
            code_of(
                c.request_cluster_failover(failover(None, pb::ClusterMember::Node1))
                    .await,
            ),
            "redundancy_group: must be set",
        ),
        (
            code_of(
                c.request_cluster_failover(failover(Some(256), pb::ClusterMember::Node1))
                    .await,
            ),
            "redundancy_group: 256 is out of range 0..255",
        ),
        (
            code_of(
                c.request_cluster_failover(failover(Some(1), pb::ClusterMember::Unspecified))
                    .await,
            ),
            "node: must be set",
        ),
        (
            code_of(
                c.request_cluster_failover(failover(Some(1), pb::ClusterMember::Witness))
                    .await,
            ),
            "node: the witness cannot be primary (it forwards no traffic); node0 or node1",
        ),
        (
            code_of(
                c.request_cluster_failover(pb::RequestClusterFailoverRequest {
                    redundancy_group: Some(1),
                    node: 7,
                })
                .await,
            ),
            "node: unknown value 7",
        ),
        (
            code_of(
                c.reset_cluster_failover(pb::ResetClusterFailoverRequest::default())
                    .await,
            ),
            "redundancy_group: must be set",
        ),
        (
            code_of(c.fail_spu(pb::FailSpuRequest::default()).await),
            "spu: must be set",
        ),
    ];
    for ((code, msg), want) in cases {
        assert_eq!((code, msg.as_str()), (Code::InvalidArgument, want));
    }
    assert!(h.backend.calls().is_empty(), "{:?}", h.backend.calls());
    h.stop().await;
}

#[tokio::test]
async fn vpnctl_cluster_verbs() {
    let h = Harness::start_with(ClusterBackend::new()).await;
    let out = vpnctl(args(&h, &["show", "chassis", "cluster", "status"])).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "Cluster ID: 1, local member: node0\n\
             Node   Priority Status               Preempt Manual   Monitor-failures\n\
             \n\
             Redundancy group: 0 , Failover count: 1 , Epoch: 1\n\
             node0  200      primary              no      no       None\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("node0  0        secondary-hold       yes     yes      IF\n"),
        "{}",
        out.stdout
    );

    let out = vpnctl(args(&h, &["show", "chassis", "cluster", "statistics"])).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for line in [
        "    Heartbeat packets sent: 2276\n",
        "    Term: 3, Leader: node0\n",
        "    IKE SA                40            2                 7\n",
        "    witness  10.255.0.3:7400  no         9.5 s ago\n",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in\n{}", out.stdout);
    }

    let out = vpnctl(args(
        &h,
        &["--json", "show", "chassis", "cluster", "status"],
    ))
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v["local_member"], "node0");
    assert_eq!(
        v["redundancy_groups"][1]["nodes"][0]["status"],
        "secondary-hold"
    );
    assert_eq!(
        v["redundancy_groups"][1]["nodes"][0]["monitor_failures"][0]["kind"],
        "interface"
    );
    let out = vpnctl(args(
        &h,
        &["--json", "show", "chassis", "cluster", "statistics"],
    ))
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v["raft"]["leader"], "node0");
    assert_eq!(v["replication"][2]["kind"], "sequence-reservation");
    assert_eq!(v["members"][2]["last_contact_ms_ago"], 9500);
    assert_eq!(
        v["members"][0]["last_contact_ms_ago"],
        serde_json::Value::Null
    );

    for (words, want) in [
        (
            &[
                "request",
                "chassis",
                "cluster",
                "failover",
                "redundancy-group",
                "1",
                "node",
                "node1",
            ][..],
            "node1 is now primary for redundancy group 1\n",
        ),
        (
            &[
                "request",
                "chassis",
                "cluster",
                "failover",
                "redundancy-group",
                "1",
                "node",
                "0",
            ][..],
            "node0 is now primary for redundancy group 1\n",
        ),
        (
            &[
                "request",
                "chassis",
                "cluster",
                "failover",
                "reset",
                "redundancy-group",
                "1",
            ][..],
            "redundancy group 1 manual failover reset\n",
        ),
        (
            &["request", "chassis", "spu", "fail", "2"][..],
            "SPU 2 failed\n",
        ),
    ] {
        let out = vpnctl(args(&h, words)).await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(0), want),
            "{words:?}: {}",
            out.stderr
        );
    }
    // The witness is refused before anything is sent; a group out of range by the server.
    let out = vpnctl(args(
        &h,
        &[
            "request",
            "chassis",
            "cluster",
            "failover",
            "redundancy-group",
            "1",
            "node",
            "witness",
        ],
    ))
    .await;
    assert_eq!(out.code, Some(2), "clap usage error");
    assert!(
        out.stderr
            .contains("expected 0, 1, node0 or node1, not \"witness\""),
        "{}",
        out.stderr
    );
    let out = vpnctl(args(
        &h,
        &[
            "request",
            "chassis",
            "cluster",
            "failover",
            "reset",
            "redundancy-group",
            "300",
        ],
    ))
    .await;
    assert_eq!(
        out.stderr,
        "vpnctl: invalid argument: redundancy_group: 300 is out of range 0..255\n"
    );
    assert_eq!(
        h.backend.calls(),
        [
            ClusterCall::Status,
            ClusterCall::Statistics,
            ClusterCall::Status,
            ClusterCall::Statistics,
            ClusterCall::Failover(1, Member::Node1),
            ClusterCall::Failover(1, Member::Node0),
            ClusterCall::Reset(1),
            ClusterCall::FailSpu(2),
        ]
    );
    h.stop().await;
}
