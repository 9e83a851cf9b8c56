//! The operator CLI: Junos operational commands against a running `vpnd`, over the
//! management API (gRPC, mutual TLS).
//!
//! It lives in the library, not in the `vpnctl` binary, so that `vpnd cli ...` runs the
//! very same CLI: `cargo run --bin vpnd` builds only `vpnd`, and the demo (and anyone
//! with just the daemon's executable) still gets a management client. Both
//! executables are one call to [`main`].

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use serde::Serialize;
use tonic::transport::Channel;
use vpn_proto::v1 as pb;
use vpn_proto::v1::management_client::ManagementClient;

use crate::cli;
use crate::mgmt::convert::{config_object_kind_to_pb, event_kind_pb, member_pb};
use crate::mgmt::{
    self, ClusterStatisticsView, ClusterStatusView, ConfigObjectKind, EventKind, EventView,
    IkeSaView, IpsecSaView, Member, OperationOutcome, SpuAdded, StatsView, TlsFiles,
    TunnelMapEntry,
};

const COMMANDS: &str = "\
Commands (Junos operational syntax):
  show security ike security-associations [detail] [gateway NAME]
  show security ike tunnel-map
  show security ipsec security-associations [detail] [vpn NAME] [gateway NAME]
  show security ipsec statistics
  clear security ike security-associations [gateway NAME]     (operator)
  request security ike initiate vpn NAME                      (operator)
  request security ike terminate vpn NAME | gateway NAME      (operator)
  request security ike rekey gateway NAME                     (operator)
  request security ipsec sa rekey vpn NAME                    (operator)
  show chassis cluster status
  show chassis cluster statistics
  request chassis cluster failover redundancy-group N node 0|1      (operator)
  request chassis cluster failover reset redundancy-group N         (operator)
  request chassis spu fail N        SPU fault injection             (operator)
  request chassis spu add           add an SPU, prints its number   (operator)
  load merge FILE|-                 add or replace configuration objects (operator)
  delete security ike proposal|policy|gateway NAME            (operator)
  delete security ipsec proposal|policy|vpn NAME              (operator)
  monitor security events [kind KIND]... [gateway NAME] [vpn NAME]
  pki init DIR [--san NAME]... [--force]   management and cluster certificates

Credentials: --pki DIR uses DIR/ca.pem, DIR/IDENTITY.pem and DIR/IDENTITY.key, with
IDENTITY from --identity (operator or read-only, as written by `pki init`); or name the
three files with --ca, --cert and --key. The role is in the client certificate: a
read-only certificate may run show and monitor only.

`vpnd cli ARGS...` is the same CLI, for when only the daemon's executable is at hand.

Demo:
  vpnctl pki init /etc/vpnd/pki
  vpnctl --pki /etc/vpnd/pki show security ike security-associations
  vpnctl --pki /etc/vpnd/pki --identity read-only --json show security ipsec statistics";

#[derive(Parser, Debug)]
#[command(
    name = "vpnctl",
    version,
    about = "Operate a vpnd IPsec gateway with Junos operational commands",
    after_help = COMMANDS
)]
struct Cli {
    /// Management API address of the gateway.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:50051",
        env = "VPNCTL_SERVER"
    )]
    server: String,
    /// Management CA certificate (PEM).
    #[arg(long, global = true, requires_all = ["cert", "key"], conflicts_with = "pki")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, global = true, requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,
    /// Directory written by `vpnctl pki init`.
    #[arg(long, global = true, env = "VPNCTL_PKI")]
    pki: Option<PathBuf>,
    /// Which client certificate of --pki to use.
    #[arg(long, global = true, default_value = "operator")]
    identity: String,
    /// JSON for scripts instead of tables (one object per line for `monitor`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show operational state.
    Show {
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// Clear SAs.
    Clear {
        #[command(subcommand)]
        what: ClearSecurity,
    },
    /// Request an operation.
    Request {
        #[command(subcommand)]
        what: RequestWhat,
    },
    /// Add or replace configuration objects from a TOML fragment.
    Load {
        #[command(subcommand)]
        what: Load,
    },
    /// Remove a configuration object.
    Delete {
        #[command(subcommand)]
        what: DeleteSecurity,
    },
    /// Follow events as they happen.
    Monitor {
        #[command(subcommand)]
        what: MonitorSecurity,
    },
    /// Development PKI for the management API.
    Pki {
        #[command(subcommand)]
        what: Pki,
    },
}

#[derive(Subcommand, Debug)]
enum ShowWhat {
    /// Security state.
    Security {
        #[command(subcommand)]
        what: ShowArea,
    },
    /// Chassis state.
    Chassis {
        #[command(subcommand)]
        what: ShowChassis,
    },
}

#[derive(Subcommand, Debug)]
enum ShowChassis {
    /// The chassis cluster.
    Cluster {
        #[command(subcommand)]
        what: ShowCluster,
    },
}

#[derive(Subcommand, Debug)]
enum ShowCluster {
    /// Redundancy groups, priorities and which node is primary.
    Status,
    /// Heartbeats, the replicated log and replication counters.
    Statistics,
}

#[derive(Subcommand, Debug)]
enum ShowArea {
    /// IKE.
    Ike {
        #[command(subcommand)]
        what: ShowIke,
    },
    /// IPsec.
    Ipsec {
        #[command(subcommand)]
        what: ShowIpsec,
    },
}

#[derive(Subcommand, Debug)]
enum ShowIke {
    /// IKE SAs: `[detail] [gateway NAME]`.
    SecurityAssociations(Words),
    /// The SPU each tunnel is anchored on.
    TunnelMap,
}

#[derive(Subcommand, Debug)]
enum ShowIpsec {
    /// IPsec SAs: `[detail] [vpn NAME] [gateway NAME]`.
    SecurityAssociations(Words),
    /// Dataplane counters.
    Statistics,
}

/// Junos-style trailing keywords (`detail`, `gateway NAME`), checked per command.
#[derive(Args, Debug)]
struct Words {
    #[arg(value_name = "KEYWORDS")]
    words: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum ClearSecurity {
    /// Security state.
    Security {
        #[command(subcommand)]
        what: ClearIke,
    },
}

#[derive(Subcommand, Debug)]
enum ClearIke {
    /// IKE.
    Ike {
        #[command(subcommand)]
        what: ClearIkeWhat,
    },
}

#[derive(Subcommand, Debug)]
enum ClearIkeWhat {
    /// Delete IKE SAs (all, or one gateway's) with their child SAs.
    SecurityAssociations {
        #[command(subcommand)]
        gateway: Option<GatewayName>,
    },
}

#[derive(Subcommand, Debug)]
enum GatewayName {
    /// Only this IKE gateway.
    Gateway { name: String },
}

#[derive(Subcommand, Debug)]
enum RequestWhat {
    /// Security operations.
    Security {
        #[command(subcommand)]
        what: RequestArea,
    },
    /// Chassis operations.
    Chassis {
        #[command(subcommand)]
        what: RequestChassis,
    },
}

#[derive(Subcommand, Debug)]
enum RequestChassis {
    /// Chassis cluster operations.
    Cluster {
        #[command(subcommand)]
        what: RequestCluster,
    },
    /// Services processing units: fault injection, and adding one at run time.
    Spu {
        #[command(subcommand)]
        what: RequestSpu,
    },
}

#[derive(Subcommand, Debug)]
enum RequestCluster {
    /// Manual failover of a redundancy group, or its reset.
    Failover {
        #[command(subcommand)]
        what: Failover,
    },
}

#[derive(Subcommand, Debug)]
enum Failover {
    /// Make a node primary for group N and pin the group there: `N node 0|1`.
    RedundancyGroup {
        /// The redundancy group.
        group: u32,
        #[command(subcommand)]
        node: FailoverNode,
    },
    /// Unpin a group after a manual failover.
    Reset {
        #[command(subcommand)]
        what: ResetGroup,
    },
}

#[derive(Subcommand, Debug)]
enum FailoverNode {
    /// The node to make primary: 0, 1, node0 or node1.
    Node {
        #[arg(value_parser = gateway_node)]
        node: Member,
    },
}

#[derive(Subcommand, Debug)]
enum ResetGroup {
    /// The redundancy group.
    RedundancyGroup { group: u32 },
}

#[derive(Subcommand, Debug)]
enum RequestSpu {
    /// Take SPU N out of service as if its card had failed.
    Fail { spu: u32 },
    /// Add an SPU (a worker, as when a services card is inserted): tunnels that are up
    /// stay where they are, new tunnels may be anchored on it. Prints its number.
    Add,
}

/// A gateway node as `request chassis cluster failover ... node` takes it (Junos writes
/// the number); the witness can never be primary.
fn gateway_node(s: &str) -> Result<Member, String> {
    match s.parse::<Member>() {
        Ok(m) if m.is_gateway() => Ok(m),
        _ => Err(format!("expected 0, 1, node0 or node1, not \"{s}\"")),
    }
}

#[derive(Subcommand, Debug)]
enum RequestArea {
    /// IKE operations.
    Ike {
        #[command(subcommand)]
        what: RequestIke,
    },
    /// IPsec operations.
    Ipsec {
        #[command(subcommand)]
        what: RequestIpsec,
    },
}

#[derive(Subcommand, Debug)]
enum RequestIke {
    /// Bring a VPN up now.
    Initiate {
        #[command(subcommand)]
        target: VpnName,
    },
    /// Delete a VPN's child SAs, or a gateway's IKE SA with its child SAs.
    Terminate {
        #[command(subcommand)]
        target: VpnOrGateway,
    },
    /// Rekey a gateway's IKE SA now (its child SAs move to the new one).
    Rekey {
        #[command(subcommand)]
        target: GatewayName,
    },
}

#[derive(Subcommand, Debug)]
enum RequestIpsec {
    /// IPsec SA operations.
    Sa {
        #[command(subcommand)]
        what: RequestSa,
    },
}

#[derive(Subcommand, Debug)]
enum RequestSa {
    /// Rekey a VPN's child SAs now.
    Rekey {
        #[command(subcommand)]
        target: VpnName,
    },
}

#[derive(Subcommand, Debug)]
enum VpnName {
    /// The `[security.ipsec.vpn.NAME]`.
    Vpn { name: String },
}

#[derive(Subcommand, Debug)]
enum VpnOrGateway {
    /// The `[security.ipsec.vpn.NAME]`.
    Vpn { name: String },
    /// The `[security.ike.gateway.NAME]`.
    Gateway { name: String },
}

#[derive(Subcommand, Debug)]
enum Load {
    /// Add the objects of FILE (`-`: standard input), replacing those of the same name.
    Merge { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum DeleteSecurity {
    /// Security configuration.
    Security {
        #[command(subcommand)]
        what: DeleteArea,
    },
}

#[derive(Subcommand, Debug)]
enum DeleteArea {
    /// `[security.ike.*]` objects.
    Ike {
        #[command(subcommand)]
        what: DeleteIke,
    },
    /// `[security.ipsec.*]` objects.
    Ipsec {
        #[command(subcommand)]
        what: DeleteIpsec,
    },
}

#[derive(Subcommand, Debug)]
enum DeleteIke {
    /// `[security.ike.proposal.NAME]`
    Proposal { name: String },
    /// `[security.ike.policy.NAME]`
    Policy { name: String },
    /// `[security.ike.gateway.NAME]`
    Gateway { name: String },
}

#[derive(Subcommand, Debug)]
enum DeleteIpsec {
    /// `[security.ipsec.proposal.NAME]`
    Proposal { name: String },
    /// `[security.ipsec.policy.NAME]`
    Policy { name: String },
    /// `[security.ipsec.vpn.NAME]`
    Vpn { name: String },
}

#[derive(Subcommand, Debug)]
enum MonitorSecurity {
    /// Security events.
    Security {
        #[command(subcommand)]
        what: MonitorWhat,
    },
}

#[derive(Subcommand, Debug)]
enum MonitorWhat {
    /// Events until interrupted: `[kind sa-up|sa-down|rekey|dpd|config-change|failover]...
    /// [gateway NAME] [vpn NAME]`.
    Events(Words),
}

#[derive(Subcommand, Debug)]
enum Pki {
    /// Write a CA, a server certificate and operator and read-only client certificates,
    /// and a cluster CA with one certificate per cluster member (node0, node1, witness).
    Init {
        /// Directory to write to (created if missing).
        dir: PathBuf,
        /// Extra DNS name or IP address for the server certificate, beside localhost,
        /// 127.0.0.1 and ::1 (repeatable).
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Parsed trailing keywords.
#[derive(Debug, Default)]
struct Keywords {
    detail: bool,
    gateway: Option<String>,
    vpn: Option<String>,
    kinds: Vec<EventKind>,
}

impl Keywords {
    /// Accepts only the keywords in `allowed` (`detail`, `gateway`, `vpn`, `kind`).
    fn parse(words: &[String], allowed: &[&str]) -> Result<Keywords> {
        let mut k = Keywords::default();
        let mut it = words.iter();
        while let Some(word) = it.next() {
            if !allowed.contains(&word.as_str()) {
                bail!(
                    "unexpected keyword \"{word}\"; expected one of: {}",
                    allowed.join(", ")
                );
            }
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| anyhow!("\"{word}\" needs a value"))
            };
            match word.as_str() {
                "detail" => k.detail = true,
                "gateway" => k.gateway = Some(value()?),
                "vpn" => k.vpn = Some(value()?),
                "kind" => {
                    let v = value()?;
                    let kind = EventKind::ALL
                        .into_iter()
                        .find(|e| e.name() == v)
                        .ok_or_else(|| {
                            let names: Vec<_> = EventKind::ALL.iter().map(|e| e.name()).collect();
                            anyhow!(
                                "unknown event kind \"{v}\"; expected one of: {}",
                                names.join(", ")
                            )
                        })?;
                    k.kinds.push(kind);
                }
                _ => bail!("unexpected keyword \"{word}\""),
            }
        }
        Ok(k)
    }
}

/// Runs the CLI on `args` (the first is the program name, as in `std::env::args_os`)
/// and returns the process exit status: 0, 1 after an error (printed as one line
/// `PROGRAM: ...` on stderr), or clap's status for usage errors. `program` is how the
/// CLI is invoked (`vpnctl`, `vpnd cli`): usage, help and error lines name it.
pub fn main(program: &str, args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let matches = Cli::command().bin_name(program).try_get_matches_from(args);
    let cli = match matches.and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version land here too, with exit status 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// One line for the operator: gRPC statuses as `permission denied: ...`, transport
/// failures with their cause chain.
fn error_line(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        use tonic::Code;
        let what = match status.code() {
            Code::PermissionDenied => "permission denied",
            Code::InvalidArgument => "invalid argument",
            Code::NotFound => "not found",
            Code::FailedPrecondition => "not possible now",
            Code::Unauthenticated => "not authenticated",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "event stream interrupted",
            _ => "error",
        };
        let mut parts = vec![status.message().to_owned()];
        let mut source = std::error::Error::source(status);
        while let Some(s) = source {
            parts.push(s.to_string());
            source = s.source();
        }
        return format!("{what}: {}", join_causes(parts));
    }
    join_causes(e.chain().map(ToString::to_string).collect())
}

/// Joins an error chain with `: `, leaving out links already said: tonic and hyper
/// wrap errors whose messages repeat their causes' ("transport error: transport
/// error: tcp connect error: tcp connect error: ...").
fn join_causes(parts: Vec<String>) -> String {
    let mut line = String::new();
    for part in parts {
        if part.is_empty() || line.contains(&part) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&part);
    }
    line
}

fn tls_files(cli: &Cli) -> Result<TlsFiles> {
    match (&cli.pki, &cli.ca, &cli.cert, &cli.key) {
        (Some(dir), _, _, _) => Ok(TlsFiles::from_pki_dir(dir, &cli.identity)),
        (None, Some(ca), Some(cert), Some(key)) => Ok(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => bail!(
            "no credentials: give --pki DIR (from `vpnctl pki init DIR`) or --ca, --cert and --key"
        ),
    }
}

async fn client(cli: &Cli) -> Result<ManagementClient<Channel>> {
    let files = tls_files(cli)?;
    mgmt::connect(&cli.server, &files)
        .await
        .with_context(|| format!("cannot connect to {}", cli.server))
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Pki {
            what: Pki::Init { dir, sans, force },
        } => {
            let files = mgmt::pki::init(dir, sans, *force).map_err(|e| match e {
                mgmt::MgmtError::Exists(p) => anyhow!(
                    "{}: already exists (use --force to replace the PKI)",
                    p.display()
                ),
                e => e.into(),
            })?;
            if cli.json {
                let written: Vec<String> = files
                    .written
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                print_json(&written)?;
            } else {
                for p in &files.written {
                    println!("wrote {}", p.display());
                }
                println!(
                    "server: vpnd with [services.management] and {0}/server.pem, {0}/server.key, {0}/ca.pem",
                    dir.display()
                );
                println!(
                    "client: vpnctl --pki {} [--identity read-only] ...",
                    dir.display()
                );
                println!(
                    "cluster: copy {0} to node0, node1 and the witness; each runs vpnd --node MEMBER --pki {0} \
                     (cluster-ca.pem, cluster-MEMBER.pem, cluster-MEMBER.key)",
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Show {
            what: ShowWhat::Security { what },
        } => show(&cli, what).await,
        Command::Show {
            what:
                ShowWhat::Chassis {
                    what: ShowChassis::Cluster { what },
                },
        } => show_cluster(&cli, what).await,
        Command::Request {
            what: RequestWhat::Chassis { what },
        } => {
            let mut c = client(&cli).await?;
            let r = match what {
                RequestChassis::Cluster {
                    what:
                        RequestCluster::Failover {
                            what:
                                Failover::RedundancyGroup {
                                    group,
                                    node: FailoverNode::Node { node },
                                },
                        },
                } => {
                    c.request_cluster_failover(pb::RequestClusterFailoverRequest {
                        redundancy_group: Some(*group),
                        node: member_pb(*node),
                    })
                    .await?
                }
                RequestChassis::Cluster {
                    what:
                        RequestCluster::Failover {
                            what:
                                Failover::Reset {
                                    what: ResetGroup::RedundancyGroup { group },
                                },
                        },
                } => {
                    c.reset_cluster_failover(pb::ResetClusterFailoverRequest {
                        redundancy_group: Some(*group),
                    })
                    .await?
                }
                RequestChassis::Spu {
                    what: RequestSpu::Fail { spu },
                } => c.fail_spu(pb::FailSpuRequest { spu: Some(*spu) }).await?,
                RequestChassis::Spu {
                    what: RequestSpu::Add,
                } => {
                    // Not an operation result: the answer is the new SPU's number.
                    let r = c.add_spu(pb::AddSpuRequest {}).await?;
                    let added = SpuAdded::from(r.into_inner());
                    return if cli.json {
                        print_json(&added)
                    } else {
                        println!("{}", added.message);
                        Ok(())
                    };
                }
            };
            operation(&cli, r.into_inner())
        }
        Command::Clear {
            what:
                ClearSecurity::Security {
                    what:
                        ClearIke::Ike {
                            what: ClearIkeWhat::SecurityAssociations { gateway },
                        },
                },
        } => {
            let scope = match gateway {
                Some(GatewayName::Gateway { name }) => {
                    pb::clear_ike_sas_request::Scope::Gateway(name.clone())
                }
                None => pb::clear_ike_sas_request::Scope::All(true),
            };
            let r = client(&cli)
                .await?
                .clear_ike_sas(pb::ClearIkeSasRequest { scope: Some(scope) })
                .await?;
            operation(&cli, r.into_inner())
        }
        Command::Request {
            what: RequestWhat::Security { what },
        } => {
            let mut c = client(&cli).await?;
            let r = match what {
                RequestArea::Ike {
                    what:
                        RequestIke::Initiate {
                            target: VpnName::Vpn { name },
                        },
                } => {
                    c.initiate(pb::InitiateRequest { vpn: name.clone() })
                        .await?
                }
                RequestArea::Ike {
                    what: RequestIke::Terminate { target },
                } => {
                    let target = match target {
                        VpnOrGateway::Vpn { name } => {
                            pb::terminate_request::Target::Vpn(name.clone())
                        }
                        VpnOrGateway::Gateway { name } => {
                            pb::terminate_request::Target::Gateway(name.clone())
                        }
                    };
                    c.terminate(pb::TerminateRequest {
                        target: Some(target),
                    })
                    .await?
                }
                RequestArea::Ike {
                    what:
                        RequestIke::Rekey {
                            target: GatewayName::Gateway { name },
                        },
                } => {
                    c.rekey_ike(pb::RekeyIkeRequest {
                        gateway: name.clone(),
                    })
                    .await?
                }
                RequestArea::Ipsec {
                    what:
                        RequestIpsec::Sa {
                            what:
                                RequestSa::Rekey {
                                    target: VpnName::Vpn { name },
                                },
                        },
                } => c.rekey(pb::RekeyRequest { vpn: name.clone() }).await?,
            };
            operation(&cli, r.into_inner())
        }
        Command::Load {
            what: Load::Merge { file },
        } => {
            let toml_fragment = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading standard input")?;
                s
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("{}: cannot read", file.display()))?
            };
            let r = client(&cli)
                .await?
                .apply_config(pb::ApplyConfigRequest { toml_fragment })
                .await?;
            operation(&cli, r.into_inner())
        }
        Command::Delete {
            what: DeleteSecurity::Security { what },
        } => {
            let (kind, name) = match what {
                DeleteArea::Ike {
                    what: DeleteIke::Proposal { name },
                } => (ConfigObjectKind::IkeProposal, name),
                DeleteArea::Ike {
                    what: DeleteIke::Policy { name },
                } => (ConfigObjectKind::IkePolicy, name),
                DeleteArea::Ike {
                    what: DeleteIke::Gateway { name },
                } => (ConfigObjectKind::IkeGateway, name),
                DeleteArea::Ipsec {
                    what: DeleteIpsec::Proposal { name },
                } => (ConfigObjectKind::IpsecProposal, name),
                DeleteArea::Ipsec {
                    what: DeleteIpsec::Policy { name },
                } => (ConfigObjectKind::IpsecPolicy, name),
                DeleteArea::Ipsec {
                    what: DeleteIpsec::Vpn { name },
                } => (ConfigObjectKind::IpsecVpn, name),
            };
            let r = client(&cli)
                .await?
                .remove_config_object(pb::RemoveConfigObjectRequest {
                    kind: config_object_kind_to_pb(kind).into(),
                    name: name.clone(),
                })
                .await?;
            operation(&cli, r.into_inner())
        }
        Command::Monitor {
            what:
                MonitorSecurity::Security {
                    what: MonitorWhat::Events(words),
                },
        } => monitor(&cli, words).await,
    }
}

fn operation(cli: &Cli, result: pb::OperationResult) -> Result<()> {
    let outcome = OperationOutcome::try_from(result)?;
    if cli.json {
        print_json(&outcome)
    } else {
        println!("{}", cli::outcome(&outcome));
        Ok(())
    }
}

async fn show(cli: &Cli, what: &ShowArea) -> Result<()> {
    let mut c = client(cli).await?;
    match what {
        ShowArea::Ike {
            what: ShowIke::SecurityAssociations(words),
        } => {
            let k = Keywords::parse(&words.words, &["detail", "gateway"])?;
            let r = c
                .list_ike_sas(pb::ListIkeSasRequest {
                    gateway: k.gateway.unwrap_or_default(),
                })
                .await?;
            let sas = r
                .into_inner()
                .sas
                .into_iter()
                .map(IkeSaView::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            if cli.json {
                print_json(&sas)
            } else if k.detail {
                print!("{}", cli::ike_sas_detail(&sas, SystemTime::now()));
                Ok(())
            } else {
                print!("{}", cli::ike_sas(&sas));
                Ok(())
            }
        }
        ShowArea::Ike {
            what: ShowIke::TunnelMap,
        } => {
            let r = c.get_tunnel_map(pb::GetTunnelMapRequest {}).await?;
            let entries = r
                .into_inner()
                .entries
                .into_iter()
                .map(TunnelMapEntry::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            if cli.json {
                print_json(&entries)
            } else {
                print!("{}", cli::tunnel_map(&entries));
                Ok(())
            }
        }
        ShowArea::Ipsec {
            what: ShowIpsec::SecurityAssociations(words),
        } => {
            let k = Keywords::parse(&words.words, &["detail", "vpn", "gateway"])?;
            let r = c
                .list_ipsec_sas(pb::ListIpsecSasRequest {
                    vpn: k.vpn.unwrap_or_default(),
                    gateway: k.gateway.unwrap_or_default(),
                })
                .await?;
            let sas = r
                .into_inner()
                .sas
                .into_iter()
                .map(IpsecSaView::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            if cli.json {
                print_json(&sas)
            } else if k.detail {
                print!("{}", cli::ipsec_sas_detail(&sas));
                Ok(())
            } else {
                print!("{}", cli::ipsec_sas(&sas));
                Ok(())
            }
        }
        ShowArea::Ipsec {
            what: ShowIpsec::Statistics,
        } => {
            let r = c.get_statistics(pb::GetStatisticsRequest {}).await?;
            let stats = StatsView::try_from(r.into_inner())?;
            if cli.json {
                #[derive(Serialize)]
                struct Json<'a> {
                    spus: &'a [mgmt::SpuStatsView],
                    drops: std::collections::BTreeMap<String, u64>,
                    io: std::collections::BTreeMap<String, u64>,
                }
                print_json(&Json {
                    spus: &stats.spus,
                    drops: stats.total_drops(),
                    io: stats.total_io(),
                })
            } else {
                print!("{}", cli::statistics(&stats));
                Ok(())
            }
        }
    }
}

async fn show_cluster(cli: &Cli, what: &ShowCluster) -> Result<()> {
    let mut c = client(cli).await?;
    match what {
        ShowCluster::Status => {
            let r = c.get_cluster_status(pb::GetClusterStatusRequest {}).await?;
            let status = ClusterStatusView::try_from(r.into_inner())?;
            if cli.json {
                print_json(&status)
            } else {
                print!("{}", cli::cluster_status(&status));
                Ok(())
            }
        }
        ShowCluster::Statistics => {
            let r = c
                .get_cluster_statistics(pb::GetClusterStatisticsRequest {})
                .await?;
            let stats = ClusterStatisticsView::try_from(r.into_inner())?;
            if cli.json {
                print_json(&stats)
            } else {
                print!("{}", cli::cluster_statistics(&stats));
                Ok(())
            }
        }
    }
}

async fn monitor(cli: &Cli, words: &Words) -> Result<()> {
    let k = Keywords::parse(&words.words, &["kind", "gateway", "vpn"])?;
    let mut c = client(cli).await?;
    let mut stream = c
        .watch_events(pb::WatchRequest {
            kinds: k.kinds.iter().map(|kind| event_kind_pb(*kind)).collect(),
            gateway: k.gateway.unwrap_or_default(),
            vpn: k.vpn.unwrap_or_default(),
        })
        .await?
        .into_inner();
    let mut stdout = std::io::stdout();
    while let Some(event) = stream.message().await? {
        let event = EventView::try_from(event)?;
        if cli.json {
            writeln!(stdout, "{}", serde_json::to_string(&event)?)?;
        } else {
            writeln!(stdout, "{}", cli::event(&event))?;
        }
        // Flushed per event: `monitor` is read live, often through a pipe.
        stdout.flush()?;
    }
    Ok(())
}
