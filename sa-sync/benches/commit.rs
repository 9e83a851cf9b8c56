//! Raft commit latency of the cluster, against what it is made of.
//!
//! `cargo bench -p sa-sync --bench commit` starts three members in this process (mutual
//! TLS on 127.0.0.1, raft-engine directories on the build's disk), elects a leader and
//! proposes sequence reservations one after the other on the leader, timing each from
//! `propose` to its local application. In the same run it times the two costs a commit
//! cannot avoid: an fsync'd raft-engine write of an entry of the same size, and a round
//! trip of a Raft append of that size over a loopback gRPC stream with mutual TLS. A
//! commit needs at least one of each (the leader's and a follower's writes overlap),
//! so the ratio commit / (fsync + RTT) shows the driver's own overhead. The three are
//! measured in interleaved rounds, so that they see the same disk and CPU load.
//!
//! `COMMIT_BENCH_N` sets the number of timed samples (default 500).

#[path = "../tests/common/mod.rs"]
mod common;

use std::pin::Pin;
use std::time::{Duration, Instant};

use common::TestCluster;
use futures_util::{Stream, StreamExt as _};
use raft::eraftpb::{Entry, Message, MessageType};
use sa_sync::transport;
use sa_sync::{ChildSaRecord, Command, DiskLogStore, Fence, LogStore, Member, SaId, Secret};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use vpn_proto::cluster::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use vpn_proto::cluster::v1::{DeliverSummary, RaftFrame};

const WARMUP: usize = 50;

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        mean: samples.iter().sum::<Duration>() / n as u32,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report(name: &str, s: &Stats) {
    println!(
        "{name:<44} p50 {:>10}  p99 {:>10}  mean {:>10}",
        ms(s.p50),
        ms(s.p99),
        ms(s.mean)
    );
}

fn fence() -> Fence {
    Fence {
        group: 1,
        node: Member::Node0,
        epoch: 1,
    }
}

fn sa() -> SaId {
    SaId {
        gateway: "gw-bench".into(),
        spi: 0xc0de_0001,
    }
}

fn reserve(n: u64) -> Command {
    Command::Reserve {
        fence: fence(),
        sa: sa(),
        upto: (n + 2) << 16,
    }
}

/// The log entry a reservation becomes (its proposal id context is 3 to 13 bytes of
/// bincode varints; 12 is typical).
fn entry_like(n: u64, index: u64) -> Entry {
    Entry {
        index,
        term: 2,
        data: sa_sync::state::encode_command(&reserve(n))
            .expect("encode")
            .into(),
        context: vec![0x5a; 12].into(),
        ..Default::default()
    }
}

/// A three-member cluster with the reservation's SA installed; returns the leader.
async fn cluster() -> (TestCluster, sa_sync::ClusterHandle) {
    let mut cluster = TestCluster::new_in(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    cluster.propose_timeout = Duration::from_secs(5);
    cluster.start_all().await;
    let leader = cluster.leader(Duration::from_secs(20)).await;
    let setup = [
        Command::Acquire {
            group: 1,
            node: Member::Node0,
            epoch: 0,
            lease: 0,
        },
        Command::PutChildSa {
            fence: fence(),
            record: ChildSaRecord {
                gateway: sa().gateway,
                group: 1,
                inbound_spi: 0xc0de_0002,
                outbound_spi: sa().spi,
                anchor: 0,
                install: Secret::new(vec![0; 160]),
            },
            reserve: 1 << 16,
        },
    ];
    for command in setup {
        assert_eq!(cluster.propose(leader, command).await, Ok(()));
    }
    let node = cluster.node(leader).clone();
    (cluster, node)
}

/// Answers every frame at once with a summary: a round trip per message.
struct Echo;

type Summaries = Pin<Box<dyn Stream<Item = Result<DeliverSummary, Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransport for Echo {
    type DeliverStream = Summaries;

    async fn deliver(
        &self,
        request: Request<Streaming<RaftFrame>>,
    ) -> Result<Response<Summaries>, Status> {
        let echoes = request.into_inner().map(|frame| {
            frame.map(|_| DeliverSummary {
                accepted: 1,
                dropped: 0,
            })
        });
        Ok(Response::new(Box::pin(echoes)))
    }
}

/// One stream to an echo server with the cluster's TLS set-up (member certificates,
/// the transport's own client), and the frame of a Raft append of one reservation.
struct EchoStream {
    tx: tokio::sync::mpsc::Sender<RaftFrame>,
    echoes: Streaming<DeliverSummary>,
    frame: RaftFrame,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoStream {
    async fn open() -> Self {
        let (_ca, tls) = common::issue_member_certs();
        let server_tls = &tls[Member::Node1.index()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = Server::builder()
            .tls_config(
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(
                        &server_tls.cert_pem,
                        &server_tls.key_pem,
                    ))
                    .client_ca_root(Certificate::from_pem(&server_tls.ca_pem)),
            )
            .expect("server TLS")
            .tcp_nodelay(true)
            .add_service(RaftTransportServer::new(Echo))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)));
        let server = tokio::spawn(server);
        let channel =
            transport::channel(Member::Node1, addr, &tls[Member::Node0.index()]).expect("channel");
        let (tx, rx) = tokio::sync::mpsc::channel::<RaftFrame>(1);
        let body =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let echoes = transport::client(channel)
            .deliver(body)
            .await
            .expect("stream")
            .into_inner();
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        append.from = Member::Node0.raft_id();
        append.to = Member::Node1.raft_id();
        append.term = 2;
        append.commit = 999;
        append.log_term = 2;
        append.index = 999;
        append.set_entries(vec![entry_like(1, 1000)].into());
        let frame = transport::frame(&append).expect("frame");
        Self {
            tx,
            echoes,
            frame,
            server,
        }
    }

    async fn round_trip(&mut self) -> Duration {
        let start = Instant::now();
        self.tx.send(self.frame.clone()).await.expect("send");
        self.echoes
            .message()
            .await
            .expect("echo")
            .expect("stream open");
        start.elapsed()
    }
}

fn main() {
    let n: usize = std::env::var("COMMIT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (cluster, leader) = cluster().await;
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
        let mut store = DiskLogStore::open(dir.path()).expect("store");
        let mut echo = EchoStream::open().await;
        let entry_size = protobuf::Message::compute_size(&entry_like(0, 1));
        let frame_size = echo.frame.message.len();

        // Interleaved, one of each per round, so that all three see the same disk and
        // CPU load (other processes' writes make fsync times drift over a run).
        let (mut commits, mut fsyncs, mut rtts) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..WARMUP + n {
            let start = Instant::now();
            let outcome = leader.propose(reserve(i as u64)).await.expect("commit");
            let commit = start.elapsed();
            assert_eq!(outcome, Ok(()));

            let entry = entry_like(i as u64, i as u64 + 1);
            let start = Instant::now();
            store.append(&[entry]).expect("append");
            let fsync = start.elapsed();

            let rtt = echo.round_trip().await;
            if i >= WARMUP {
                commits.push(commit);
                fsyncs.push(fsync);
                rtts.push(rtt);
            }
        }
        echo.server.abort();
        let mut cluster = cluster;
        cluster.stop_all().await;

        let (commit, fsync, rtt) = (stats(commits), stats(fsyncs), stats(rtts));
        println!(
            "commit bench: {n} rounds after {WARMUP} warm-up, 3 members, mTLS on 127.0.0.1, \
             raft-engine on {}",
            env!("CARGO_TARGET_TMPDIR")
        );
        println!(
            "reservation command {} B, log entry {entry_size} B, MsgAppend frame {frame_size} B",
            sa_sync::state::encode_command(&reserve(0)).map_or(0, |c| c.len())
        );
        report("raft commit (propose -> applied on leader)", &commit);
        report("raft-engine append + fdatasync", &fsync);
        report("gRPC mTLS stream round trip (loopback)", &rtt);
        let base50 = fsync.p50 + rtt.p50;
        let base99 = fsync.p99 + rtt.p99;
        println!(
            "ratio commit / (fsync + RTT): p50 {:.2}, p99 {:.2}",
            commit.p50.as_secs_f64() / base50.as_secs_f64(),
            commit.p99.as_secs_f64() / base99.as_secs_f64()
        );
    });
}
