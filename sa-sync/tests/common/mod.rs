//! Test PKI and a three-member cluster on 127.0.0.1, shared by the cluster tests and
//! the commit benchmark.

#![allow(dead_code)] // each test binary uses a different part

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use sa_sync::{
    ClusterHandle, ClusterNode, ClusterNodeConfig, ClusterState, ClusterTls, Command, Member,
    NodeStatus, ProposeError, RaftStatus, ReplicaConfig, Role,
};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    pub fn pem(&self) -> Vec<u8> {
        self.issuer.pem().into_bytes()
    }

    /// A certificate with the given URI SANs (none for a certificate naming nobody),
    /// usable on both sides of a connection, as member certificates are.
    pub fn issue(&self, uris: &[&str], trusting: &TestCa) -> ClusterTls {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            uris.first().copied().unwrap_or("nobody"),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().expect("URI SAN")))
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("member key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("member certificate");
        ClusterTls {
            ca_pem: trusting.pem(),
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }
}

/// The cluster CA and one certificate per member.
pub fn issue_member_certs() -> (TestCa, Vec<ClusterTls>) {
    let ca = TestCa::new("vpn cluster test CA");
    let tls = Member::ALL
        .iter()
        .map(|m| ca.issue(&[&sa_sync::transport::member_uri(*m)], &ca))
        .collect();
    (ca, tls)
}

/// Addresses on 127.0.0.1 that were free a moment ago.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address"))
        .collect()
}

/// Three members in one process, each with its own directory and port.
pub struct TestCluster {
    _root: tempfile::TempDir,
    pub dirs: Vec<PathBuf>,
    pub addrs: Vec<SocketAddr>,
    pub ca: TestCa,
    pub tls: Vec<ClusterTls>,
    pub replica: ReplicaConfig,
    pub propose_timeout: Duration,
    pub nodes: Vec<Option<ClusterHandle>>,
}

impl TestCluster {
    /// A cluster whose directories live under `base` (none started yet).
    pub fn new_in(base: &Path) -> Self {
        let root = tempfile::tempdir_in(base).expect("temporary directory");
        let dirs = Member::ALL
            .iter()
            .map(|m| root.path().join(m.to_string()))
            .collect();
        let (ca, tls) = issue_member_certs();
        Self {
            _root: root,
            dirs,
            addrs: free_addrs(3),
            ca,
            tls,
            replica: ReplicaConfig::default(),
            propose_timeout: Duration::from_secs(2),
            nodes: vec![None, None, None],
        }
    }

    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    pub fn config(&self, member: Member) -> ClusterNodeConfig {
        let i = member.index();
        let peers = Member::ALL
            .iter()
            .filter(|m| **m != member)
            .map(|m| (*m, self.addrs[m.index()]))
            .collect();
        let mut config = ClusterNodeConfig::new(
            member,
            self.addrs[i],
            peers,
            self.dirs[i].clone(),
            self.tls[i].clone(),
        );
        config.replica = self.replica.clone();
        config.propose_timeout = self.propose_timeout;
        config
    }

    pub async fn start(&mut self, member: Member) {
        let node = ClusterNode::start(self.config(member))
            .await
            .unwrap_or_else(|e| panic!("{member} did not start: {e}"));
        self.nodes[member.index()] = Some(node);
    }

    pub async fn start_all(&mut self) {
        for m in Member::ALL {
            self.start(m).await;
        }
    }

    pub async fn stop(&mut self, member: Member) {
        if let Some(node) = self.nodes[member.index()].take() {
            node.shutdown().await;
        }
    }

    pub async fn stop_all(&mut self) {
        for m in Member::ALL {
            self.stop(m).await;
        }
    }

    pub fn node(&self, member: Member) -> &ClusterHandle {
        self.nodes[member.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("{member} is not running"))
    }

    pub fn running(&self) -> impl Iterator<Item = &ClusterHandle> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running member follows the same leader, and returns it.
    pub async fn leader(&self, within: Duration) -> Member {
        let found = wait_for(within, || {
            let statuses: Vec<RaftStatus> = self.running().map(|n| n.status()).collect();
            let leader = statuses.first()?.leader?;
            let agreed = statuses.iter().all(|s| s.leader == Some(leader))
                && statuses
                    .iter()
                    .any(|s| s.me == leader && s.role == Role::Leader);
            agreed.then_some(leader)
        })
        .await;
        found.expect("no agreed leader in time")
    }

    /// Proposes on `member` until it is applied, retrying while there is no leader.
    pub async fn propose(&self, member: Member, command: Command) -> sa_sync::Outcome {
        let node = self.node(member);
        for _ in 0..50 {
            match node.propose(command.clone()).await {
                Ok(outcome) => return outcome,
                Err(ProposeError::NoLeader | ProposeError::Timeout(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("proposal on {member} failed: {e}"),
            }
        }
        panic!("proposal on {member} never applied")
    }

    /// Waits until every running member has applied at least `index`.
    pub async fn applied_everywhere(&self, index: u64, within: Duration) {
        let done = wait_for(within, || {
            self.running()
                .all(|n| n.status().applied >= index)
                .then_some(())
        })
        .await;
        if done.is_none() {
            let applied: Vec<_> = self
                .running()
                .map(|n| (n.me(), n.status().applied))
                .collect();
            panic!("not applied up to {index} everywhere in time: {applied:?}");
        }
    }

    /// The index `member` has applied, read from its state (not from its status).
    pub async fn applied(&self, member: Member) -> u64 {
        self.state(member).await.applied()
    }

    pub async fn state(&self, member: Member) -> ClusterState {
        self.node(member)
            .read(|s| s.clone())
            .await
            .expect("member running")
    }
}

/// Polls `f` every 20 ms until it gives a value or `within` passes.
pub async fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command that always applies, distinct for each `n`.
pub fn status_command(node: Member, n: u32) -> Command {
    Command::Status {
        node,
        status: NodeStatus {
            priorities: vec![(1, (n % 250) as u8)],
            failures: vec![format!("test entry {n}")],
            spus: n,
        },
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
