//! A development PKI for the management API and the chassis cluster
//! (`vpnctl pki init DIR`).
//!
//! Writes two independent trust domains into one directory:
//!
//! - management: a CA, a server certificate and one client certificate per role, so a
//!   demo or a lab gateway gets mutual TLS in one command. The only requirement on
//!   client certificates is the role SAN URI described in `auth.rs`.
//! - cluster: a second CA and one certificate per member (node0, node1, witness) for
//!   the Raft transport (`sa_sync::transport`): URI SAN `vpn-cluster:<member>`, usable
//!   as TLS server and client. A separate CA because the two domains answer different
//!   questions: a management client certificate (an operator's laptop) must never be
//!   able to join the cluster and vote, and a member certificate must never carry an
//!   operator role.
//!
//! Deployment, in the way Junos members share one configuration: run `pki init` once
//! and copy the same directory to all three members; each picks its own files by
//! `vpnd --node`. Every member thus holds every member's key, which is acceptable for a
//! lab and the price of a one-command setup; production deployments should issue the
//! certificates from their own CAs, one key per host.
//!
//! The CAs' private keys are deliberately not written: nothing here issues
//! certificates later, and a CA key left in a demo directory is a CA key anyone can
//! use. To add a name to the server certificate, or a member after a key leaked, run
//! `pki init` again with `--force` and redistribute the whole directory.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use sa_sync::Member;
use sa_sync::transport::{ClusterTls, member_of_pem, member_uri};

use super::MgmtError;
use super::auth::Role;

/// The CA certificate's file name in a PKI directory.
pub const CA_FILE: &str = "ca.pem";
/// The server's identity name (`server.pem`, `server.key`).
pub const SERVER_IDENTITY: &str = "server";
/// The cluster CA certificate's file name in a PKI directory.
pub const CLUSTER_CA_FILE: &str = "cluster-ca.pem";

/// The identity name of cluster member `member`: `cluster-node0` for
/// `cluster-node0.pem` and `cluster-node0.key`.
pub fn cluster_identity(member: Member) -> String {
    format!("cluster-{member}")
}

/// Certificates are valid from January 1st of this year for this many years: long
/// enough for a lab, short enough that a demo PKI that escapes into production expires.
const VALIDITY_YEARS: i32 = 2;

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    /// The management CA certificate.
    pub ca: PathBuf,
    /// The cluster CA certificate.
    pub cluster_ca: PathBuf,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

/// Writes into `dir`, creating it:
///
/// - `ca.pem`, `server.pem`/`server.key` (for `localhost`, `127.0.0.1`, `::1` and
///   `server_names`), `operator.pem`/`operator.key` and `read-only.pem`/`read-only.key`
///   for the management API;
/// - `cluster-ca.pem` and, per member, `cluster-node0.pem`/`cluster-node0.key`,
///   `cluster-node1.*` and `cluster-witness.*` for the cluster transport (read back
///   with [`cluster_tls`]).
///
/// Existing files are an error unless `force` is set, so a running deployment's keys
/// are not replaced by accident. Keys are written mode 0600.
pub fn init(dir: &Path, server_names: &[String], force: bool) -> Result<PkiFiles, MgmtError> {
    std::fs::create_dir_all(dir).map_err(|source| MgmtError::Write {
        path: dir.to_owned(),
        source,
    })?;

    let ca = new_ca("vpnd management CA")?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for name in server_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut server = CertificateParams::new(names)?;
    server.distinguished_name = common_name("vpnd");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let mut files = Vec::new();
    let ca_path = dir.join(CA_FILE);
    files.push((ca_path.clone(), ca.pem(), false));
    issue(&mut files, dir, SERVER_IDENTITY, server, &ca)?;
    for role in [Role::Operator, Role::ReadOnly] {
        let mut client = CertificateParams::default();
        client.distinguished_name = common_name(role.name());
        client.subject_alt_names = vec![SanType::URI(role.san_uri().try_into()?)];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        issue(&mut files, dir, role.name(), client, &ca)?;
    }

    let cluster_ca = new_ca("vpnd cluster CA")?;
    let cluster_ca_path = dir.join(CLUSTER_CA_FILE);
    files.push((cluster_ca_path.clone(), cluster_ca.pem(), false));
    for member in Member::ALL {
        // Each member is the server of the streams it receives and the client of those
        // it sends, with the same certificate: both usages. No DNS or IP SAN: members
        // check each other by the URI SAN (their own verifier), so a member keeps its
        // identity when its control address changes.
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&format!("vpnd cluster {member}"));
        params.subject_alt_names = vec![SanType::URI(member_uri(member).try_into()?)];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        issue(
            &mut files,
            dir,
            &cluster_identity(member),
            params,
            &cluster_ca,
        )?;
    }

    if !force && let Some((path, _, _)) = files.iter().find(|(p, _, _)| p.exists()) {
        return Err(MgmtError::Exists(path.clone()));
    }
    let mut written = Vec::new();
    for (path, contents, secret) in files {
        write_file(&path, contents.as_bytes(), secret)?;
        written.push(path);
    }
    Ok(PkiFiles {
        ca: ca_path,
        cluster_ca: cluster_ca_path,
        written,
    })
}

/// The cluster transport's TLS material of member `me`, from a directory written by
/// [`init`]: `cluster-ca.pem`, `cluster-<me>.pem` and `cluster-<me>.key`.
///
/// The same directory is copied to every member (see the module documentation), so
/// each member finds everyone's files and must pick its own: the certificate is checked
/// to name `me`, because a member started with another's identity would be refused by
/// the others only at the first connection, as a TLS error far from its cause.
pub fn cluster_tls(dir: &Path, me: Member) -> Result<ClusterTls, MgmtError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| MgmtError::Read {
            source: std::io::Error::new(
                e.kind(),
                format!(
                    "{e} (cluster member certificates are written by `vpnctl pki init {}`; \
                     copy that directory to every member)",
                    dir.display()
                ),
            ),
            path,
        })
    };
    let identity = cluster_identity(me);
    let cert_name = format!("{identity}.pem");
    let ca_pem = read(CLUSTER_CA_FILE)?;
    let cert_pem = read(&cert_name)?;
    let key_pem = read(&format!("{identity}.key"))?;
    match member_of_pem(&cert_pem) {
        Ok(named) if named == me => Ok(ClusterTls {
            ca_pem,
            cert_pem,
            key_pem,
        }),
        Ok(named) => Err(invalid(dir, &cert_name, format!("names {named}, not {me}"))),
        Err(e) => Err(invalid(dir, &cert_name, e.to_string())),
    }
}

fn invalid(dir: &Path, name: &str, why: String) -> MgmtError {
    MgmtError::Read {
        path: dir.join(name),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    }
}

/// A self-signed CA that may sign leaves only. Its name carries a piece of its public
/// key: two demo PKIs then have distinct issuers, so a certificate from the wrong one
/// fails as "unknown issuer" rather than as a bad signature from a CA of the same name.
fn new_ca(label: &str) -> Result<CertifiedIssuer<'static, KeyPair>, MgmtError> {
    let key = KeyPair::generate()?;
    let tag: String = key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(&format!("{label} {tag}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params);
    Ok(CertifiedIssuer::self_signed(params, key)?)
}

/// Signs a leaf `name` with `issuer` and queues `DIR/NAME.pem` and `DIR/NAME.key`.
fn issue(
    files: &mut Vec<(PathBuf, String, bool)>,
    dir: &Path,
    name: &str,
    mut params: CertificateParams,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> Result<(), MgmtError> {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    files.push((dir.join(format!("{name}.pem")), cert.pem(), false));
    files.push((dir.join(format!("{name}.key")), key.serialize_pem(), true));
    Ok(())
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    // Civil year from the Unix time: off by at most a day around New Year, which only
    // moves the window by that day.
    const SECS_PER_YEAR: u64 = 31_556_952;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let year = 1970 + i32::try_from(secs / SECS_PER_YEAR).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), MgmtError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let write = || -> std::io::Result<()> {
        let mut file = options.open(path)?;
        // `mode` applies only to a new file: narrow one that `--force` overwrites too.
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents)
    };
    write().map_err(|source| MgmtError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sa_sync::{ClusterNode, ClusterNodeConfig, Role};
    use x509_parser::pem::parse_x509_pem;

    use super::*;

    /// A directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("vpnd-pki-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn subject_and_issuer(pem: &[u8]) -> (String, String) {
        let (_, pem) = parse_x509_pem(pem).expect("PEM");
        let cert = pem.parse_x509().expect("certificate");
        (cert.subject().to_string(), cert.issuer().to_string())
    }

    #[test]
    fn member_certificates_name_their_member_for_both_ends_of_a_connection() {
        let dir = TempDir::new("members");
        let files = init(&dir.0, &[], false).expect("pki init");
        assert_eq!(files.cluster_ca, dir.0.join(CLUSTER_CA_FILE));
        let (cluster_ca, _) = subject_and_issuer(&std::fs::read(&files.cluster_ca).unwrap());
        let (management_ca, _) = subject_and_issuer(&std::fs::read(&files.ca).unwrap());
        assert_ne!(cluster_ca, management_ca, "one CA for both trust domains");
        for member in Member::ALL {
            let tls = cluster_tls(&dir.0, member).unwrap_or_else(|e| panic!("{member}: {e}"));
            assert_eq!(
                sa_sync::transport::member_of_pem(&tls.cert_pem).expect("member SAN"),
                member
            );
            let (_, issuer) = subject_and_issuer(&tls.cert_pem);
            assert_eq!(issuer, cluster_ca, "{member} not issued by the cluster CA");
            let (_, pem) = parse_x509_pem(&tls.cert_pem).unwrap();
            let cert = pem.parse_x509().unwrap();
            let eku = cert
                .extended_key_usage()
                .expect("EKU parses")
                .expect("EKU present");
            assert!(
                eku.value.server_auth && eku.value.client_auth,
                "{member}: a member is server and client: {:?}",
                eku.value
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let key = dir.0.join(format!("{}.key", cluster_identity(member)));
                let mode = std::fs::metadata(&key).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", key.display());
            }
        }
        // Management certificates name no member: they cannot join the cluster.
        let operator = std::fs::read(dir.0.join("operator.pem")).unwrap();
        assert!(sa_sync::transport::member_of_pem(&operator).is_err());
    }

    #[test]
    fn cluster_tls_names_the_missing_file() {
        let dir = TempDir::new("missing");
        let e = cluster_tls(&dir.0, Member::Node1).unwrap_err().to_string();
        assert!(e.contains(CLUSTER_CA_FILE), "{e}");
        assert!(e.contains("vpnctl pki init"), "{e}");

        init(&dir.0, &[], false).expect("pki init");
        std::fs::remove_file(dir.0.join("cluster-node1.key")).unwrap();
        let e = cluster_tls(&dir.0, Member::Node1).unwrap_err().to_string();
        assert!(e.contains("cluster-node1.key"), "{e}");
        assert!(cluster_tls(&dir.0, Member::Node0).is_ok());
    }

    #[test]
    fn cluster_tls_refuses_another_members_certificate() {
        let dir = TempDir::new("swapped");
        init(&dir.0, &[], false).expect("pki init");
        for ext in ["pem", "key"] {
            std::fs::copy(
                dir.0.join(format!("cluster-node0.{ext}")),
                dir.0.join(format!("cluster-node1.{ext}")),
            )
            .unwrap();
        }
        let e = cluster_tls(&dir.0, Member::Node1).unwrap_err().to_string();
        assert!(e.contains("cluster-node1.pem"), "{e}");
        assert!(e.contains("names node0, not node1"), "{e}");
    }

    #[test]
    fn init_refuses_to_replace_cluster_material_without_force() {
        let dir = TempDir::new("force");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("cluster-witness.key"), b"keep me").unwrap();
        match init(&dir.0, &[], false) {
            Err(MgmtError::Exists(p)) => assert!(p.ends_with("cluster-witness.key")),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(dir.0.join("cluster-witness.key")).unwrap(),
            b"keep me"
        );
        init(&dir.0, &[], true).expect("pki init --force");
        assert!(cluster_tls(&dir.0, Member::Witness).is_ok());
    }

    /// The real check of the usages: three members on 127.0.0.1 with the files `init`
    /// wrote elect a leader, which takes TLS handshakes in both directions between
    /// every pair (each member is server of one stream and client of another).
    #[test]
    fn members_with_init_material_form_a_raft_group() {
        let dir = TempDir::new("raft");
        init(&dir.0, &[], false).expect("pki init");
        let ports: Vec<std::net::TcpListener> = Member::ALL
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
            .collect();
        let addrs: Vec<std::net::SocketAddr> =
            ports.iter().map(|l| l.local_addr().unwrap()).collect();
        drop(ports);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let mut nodes = Vec::new();
            for member in Member::ALL {
                let peers = Member::ALL
                    .iter()
                    .filter(|m| **m != member)
                    .map(|m| (*m, addrs[m.index()]))
                    .collect();
                let config = ClusterNodeConfig::new(
                    member,
                    addrs[member.index()],
                    peers,
                    dir.0.join("raft").join(member.to_string()),
                    cluster_tls(&dir.0, member).expect("member TLS"),
                );
                nodes.push(
                    ClusterNode::start(config)
                        .await
                        .unwrap_or_else(|e| panic!("{member}: {e}")),
                );
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let leader = loop {
                let statuses: Vec<_> = nodes.iter().map(|n| n.status()).collect();
                let leader = statuses[0].leader;
                if let Some(l) = leader
                    && statuses.iter().all(|s| s.leader == Some(l))
                    && statuses.iter().any(|s| s.role == Role::Leader)
                {
                    break l;
                }
                assert!(
                    Instant::now() < deadline,
                    "no agreed leader within 20 s: the member certificates do not connect \
                     the members; inbound counters: {:?}",
                    statuses.iter().map(|s| s.inbound).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            for n in &nodes {
                assert_eq!(n.status().inbound.refused_streams, 0, "{leader}");
            }
            for n in nodes {
                n.shutdown().await;
            }
        });
    }
}
