//! Chaos scenarios against a chassis cluster: a fault (kill -9, SIGSTOP, a cut link,
//! loss, a partition, an SPU failure, a manual failover, a restart of everything),
//! optionally timed to land in the middle of a rekey or a negotiation, under a
//! sequence-numbered probe both ways; then the checks that must hold whatever the
//! fault: no (SPI, sequence number) sent twice, no replay accepted, never two
//! forwarders, live SAs agreeing on the cluster and the peer with nothing leaked,
//! traffic back within the bound, a restarted member rejoining.
//!
//! Each scenario builds its own namespace lab (`lab::cluster::ClusterLab`: node0,
//! node1, witness, a `vpnd` peer and LAN hosts) and tears it down. The matrix is
//! written as JSON and Markdown ([`report`]).

pub mod checks;
pub mod fault;
pub mod report;
pub mod run;
pub mod scenario;

use std::path::Path;

use anyhow::Result;
use lab::Binaries;

/// Runs `scenarios` one after another, printing each outcome as it ends, and writes
/// the report into `out`. Returns the outcomes and the Markdown table.
pub fn run_matrix(
    scenarios: &[scenario::Scenario],
    bins: &Binaries,
    out: &Path,
) -> Result<(Vec<run::Outcome>, String)> {
    let mut outcomes = Vec::new();
    for s in scenarios {
        eprintln!("== {}: {}", s.name, s.what);
        let o = run::run(s, bins);
        eprintln!(
            "== {}: {:?} (gap {:?} ms, {:.1} s)",
            o.scenario, o.verdict, o.gap_ms, o.seconds
        );
        outcomes.push(o);
        report::write(out, &outcomes)?;
    }
    let md = report::write(out, &outcomes)?;
    Ok((outcomes, md))
}
