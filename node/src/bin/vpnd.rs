//! `vpnd`: the IPsec gateway daemon.
//!
//! Reads a Junos-shaped TOML configuration, starts the dataplane (SPU workers, `st0.N`
//! interfaces), and negotiates the configured tunnels with IKEv2. SIGTERM or SIGINT
//! deletes every IKE SA at its peer and removes the interfaces before exiting.
//!
//! `vpnd demo` runs the chassis cluster lab in network namespaces; `vpnd cli ...` is the
//! operator CLI (`vpnctl`), so the one executable `cargo run --bin vpnd` builds is
//! enough for both.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use node::Config;
use node::config::model::Member;
use node::runtime::spec::cluster_spec;
use node::runtime::{Node, NodeSpec};

#[derive(Parser, Debug)]
#[command(name = "vpnd", version, about = "IPsec VPN gateway daemon")]
struct Args {
    /// Configuration file (Junos-style TOML).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// SPU worker threads.
    #[arg(long, default_value_t = 1, global = true)]
    workers: usize,
    /// Management PKI directory (from `vpnctl pki init DIR`): serves the gRPC API on
    /// `[services.management] listen` with mutual TLS.
    #[arg(long, global = true)]
    pki: Option<PathBuf>,
    /// Which chassis cluster member this process is (node0, node1 or witness), like
    /// Junos' `set chassis cluster node N`: required with `[chassis.cluster]` in the
    /// configuration, refused without it. The same file serves every member.
    #[arg(long, global = true, env = "VPND_NODE", value_name = "MEMBER")]
    node: Option<Member>,
    /// Log filter (RUST_LOG syntax), e.g. `info` or `node=debug,ike=debug`.
    #[arg(long, default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and exit.
    Check,
    /// Run a chassis cluster (node0, node1, witness), a remote peer and LAN hosts in
    /// network namespaces, with traffic and a kill -9 failover (needs root; no --config).
    Demo {
        /// Tear down after this long (`30`, `30s`, `5m`, `500ms`) instead of waiting for
        /// Ctrl-C.
        #[arg(long, value_parser = node::demo::parse_duration)]
        duration: Option<Duration>,
        /// Leave out the kill -9 of the primary under traffic.
        #[arg(long)]
        no_failover: bool,
        /// The two-gateway site-to-site demo instead (two standalone vpnd, no cluster).
        #[arg(long, conflicts_with = "no_failover")]
        standalone: bool,
    },
    /// The operator CLI, the same as `vpnctl` (see `vpnd cli --help`), e.g.
    /// `vpnd cli --pki DIR show chassis cluster status`.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Cli {
        /// `vpnctl`'s options and command.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            num_args = 0..,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Cli { args: cli }) = &args.command {
        let program = "vpnd cli";
        let mut argv = vec![OsString::from(program)];
        // `--pki DIR` right after `cli` is taken by vpnd's own global `--pki` before the
        // words reach the CLI; it names the same directory there, so pass it on.
        if let Some(pki) = &args.pki {
            argv.extend([OsString::from("--pki"), pki.into()]);
        }
        argv.extend(cli.iter().cloned());
        return node::vpnctl::main(program, argv);
    }
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain, not a backtrace: operators read this.
            eprintln!("vpnd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> Result<()> {
    let member = args.node.map(|m| m.to_string());
    let telemetry = node::telemetry::Telemetry::init(&args.log, member.as_deref())?;
    let result = daemon_main(args);
    telemetry.shutdown();
    result
}

fn daemon_main(args: Args) -> Result<()> {
    if let Some(Command::Demo {
        duration,
        no_failover,
        standalone,
    }) = args.command
    {
        return node::demo::run(&node::demo::DemoOptions {
            duration,
            workers: args.workers,
            failover: !no_failover,
            standalone,
        });
    }
    let Some(path) = &args.config else {
        bail!("no configuration: pass --config FILE (see node/tests/data/site-a.toml)");
    };
    // Config errors already name file, line, column and key.
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let spec = NodeSpec::from_config(&config, args.workers)
        .with_context(|| format!("{}", path.display()))?;
    let cluster =
        cluster_spec(&config, args.node).with_context(|| format!("{}", path.display()))?;
    match args.command.unwrap_or(Command::Run) {
        Command::Check => {
            println!(
                "{}: configuration OK ({} gateways, {} manual VPNs, {} tunnel interfaces)",
                path.display(),
                spec.gateways.len(),
                spec.manual.len(),
                spec.tunnels.len()
            );
            if let Some(c) = &cluster {
                println!(
                    "chassis cluster {} member {} ({} redundancy groups, {} reth interfaces)",
                    c.ha.cluster_id,
                    c.me,
                    c.ha.groups.len(),
                    c.reths.len()
                );
            }
            Ok(())
        }
        Command::Run => {
            if let Some(c) = &cluster {
                tracing::info!(member = %c.me, cluster_id = c.ha.cluster_id, "chassis cluster member");
            }
            let mgmt = match (config.services.management, &args.pki) {
                (Some(listen), Some(dir)) => Some((listen, dir.clone())),
                (Some(listen), None) => {
                    tracing::warn!(%listen, "management API not started: no --pki DIR (create one with `vpnctl pki init DIR`)");
                    None
                }
                (None, _) => None,
            };
            let metrics = config.services.metrics;
            let running = node::runtime::reload::Running::new(
                Some(path.clone()),
                &std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?,
                config,
                spec.clone(),
                cluster.is_some(),
            )
            .map_err(anyhow::Error::msg)?;
            run(spec, cluster, (mgmt, metrics), args.pki.as_deref(), running)
        }
        Command::Demo { .. } | Command::Cli { .. } => {
            unreachable!("handled before loading a configuration")
        }
    }
}

fn run(
    mut spec: NodeSpec,
    cluster: Option<node::runtime::spec::ClusterSpec>,
    (mgmt, metrics): (
        Option<(std::net::SocketAddr, PathBuf)>,
        Option<std::net::SocketAddr>,
    ),
    pki: Option<&std::path::Path>,
    running: node::runtime::reload::Running,
) -> Result<()> {
    if !is_root() {
        bail!(
            "vpnd needs root (CAP_NET_ADMIN and CAP_NET_RAW): it creates TUN interfaces, \
             binds UDP 500/4500 and opens raw ESP sockets"
        );
    }
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the tokio runtime: {e}"))
    });
    if let Some(c) = &cluster {
        c.assign_groups(&mut spec);
    }
    system.block_on(async move {
        let member = match &cluster {
            Some(c) => {
                let pki = pki.context(
                    "a chassis cluster member needs --pki DIR with the cluster certificates \
                     (`vpnctl pki init DIR` writes them; copy the directory to every member)",
                )?;
                let handle = node::cluster::start_member(c, pki)
                    .await
                    .context("starting the cluster member")?;
                tracing::info!(member = %c.me, listen = %handle.local_addr(), "cluster member started");
                Some((c.clone(), handle))
            }
            None => None,
        };
        if let Some((c, handle)) = &member
            && c.me == Member::Witness
        {
            tracing::info!("witness running: it votes and keeps the cluster log, forwards nothing");
            wait_for_signal(None).await?;
            handle.clone().shutdown().await;
            return Ok(());
        }
        let node = Node::start(spec).await.context("starting the node")?;
        let reloader = node.enable_reload(running);
        let redundancy = match &member {
            Some((c, handle)) => Some(
                node::cluster::join(&node, c.clone(), handle.clone())
                    .await
                    .context("joining the chassis cluster")?,
            ),
            None => None,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some((listen, dir)) = mgmt {
            let tls = node::mgmt::TlsFiles::from_pki_dir(&dir, "server");
            let backend: std::sync::Arc<dyn node::mgmt::Backend> = node.backend.clone();
            tokio::spawn(async move {
                let stopped = async {
                    let _ = stop_rx.await;
                };
                if let Err(e) = node::mgmt::serve(listen, tls, backend, stopped).await {
                    tracing::error!(error = %e, "management API stopped");
                }
            });
            tracing::info!(%listen, "management API listening (mutual TLS)");
        }
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(listen) = metrics {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("services.metrics.listen {listen}"))?;
            let backend: std::sync::Arc<dyn node::mgmt::Backend> = node.backend.clone();
            tokio::spawn(node::metrics::serve(listener, backend, async {
                let _ = metrics_stopped.await;
            }));
            tracing::info!(%listen, "Prometheus metrics at http://{listen}/metrics");
        }
        tracing::info!("vpnd running");
        wait_for_signal(Some(&reloader)).await?;
        let _ = stop_tx.send(());
        let _ = metrics_stop.send(());
        match &redundancy {
            Some(r) => {
                // The SAs live on in the other node: hand them over, delete nothing.
                tracing::info!("leaving the chassis cluster: handing redundancy groups over");
                let leave = r.send(node::cluster::redundancy::Leave);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), leave).await;
            }
            None => tracing::info!("shutting down: deleting IKE SAs at their peers"),
        }
        node.shutdown().await;
        if let Some((_, handle)) = member {
            handle.shutdown().await;
        }
        Ok(())
    })
}

/// Waits for SIGTERM or SIGINT; a SIGHUP meanwhile re-reads the configuration file
/// through `reloader` (and is only logged without one: the witness forwards nothing).
async fn wait_for_signal(
    reloader: Option<&actix::Addr<node::runtime::reload::Reloader>>,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                let Some(r) = reloader else {
                    tracing::warn!("SIGHUP: nothing to reload on the witness");
                    continue;
                };
                tracing::info!("SIGHUP: re-reading the configuration file");
                match r.send(node::runtime::reload::ReloadFile).await {
                    Ok(Ok(outcome)) => tracing::info!(result = outcome.message(), "reload"),
                    Ok(Err(e)) => tracing::error!(error = %e, "reload refused: the running configuration is unchanged"),
                    Err(e) => tracing::error!(error = %e, "reload: configuration actor gone"),
                }
            }
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
