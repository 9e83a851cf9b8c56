//! `chaos`: runs the scenario matrix against namespace labs and/or the compose
//! deployment and writes the report.
//!
//! Needs root (namespaces), `ip`, `tcpdump`, `nft`, `ping`, and `vpnd`/`vpnctl` built
//! with the same profile (found beside this executable, or `$VPND_BIN`/`$VPNCTL_BIN`);
//! `--lab compose` also needs docker compose and `scripts/docker-build.sh`'s images.
//! `chaos-tests/run.sh` builds everything and runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chaos_tests::compose::Compose;
use chaos_tests::run::{Deployment, Verdict};
use chaos_tests::scenario::matrix;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Chaos scenarios against a chassis cluster in network namespaces")]
struct Args {
    /// Run only these scenarios (comma-separated names; see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Where to run: `netns` (a namespace lab per scenario), `compose` (the
    /// docker-compose cluster of the current directory), or `all`.
    #[arg(long, default_value = "netns", value_parser = ["netns", "compose", "all"])]
    lab: String,
    /// Where chaos-matrix.json and chaos-matrix.md go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let args = Args::parse();
    let all = matrix();
    if args.list {
        for s in &all {
            println!("{:32} {}", s.name, s.what);
        }
        return Ok(true);
    }
    let chosen: Vec<_> = if args.only.is_empty() {
        all
    } else {
        for name in &args.only {
            if !all.iter().any(|s| s.name == name) {
                bail!("no scenario {name:?} (see --list)");
            }
        }
        all.into_iter()
            .filter(|s| args.only.iter().any(|n| n == s.name))
            .collect()
    };
    if !lab::is_root() {
        bail!("{}", lab::ROOT_HINT);
    }
    let bins = lab::Binaries::from_build()?;
    let _lock = lab::netns_test_lock()?;
    let mut on = Vec::new();
    if args.lab != "compose" {
        on.push(Deployment::Netns(bins.clone()));
    }
    if args.lab != "netns" {
        let dir = std::env::current_dir()?;
        on.push(Deployment::Compose(Compose::new(&dir, &bins.vpnctl)?));
    }
    let (outcomes, md) = chaos_tests::run_matrix(&chosen, &on, &args.out)?;
    println!("{md}");
    println!(
        "report: {} and chaos-matrix.md",
        args.out.join("chaos-matrix.json").display()
    );
    Ok(outcomes.iter().all(|o| o.verdict != Verdict::Failed))
}
