//! Chaos scenarios against a chassis cluster: a fault (kill -9, SIGSTOP, a cut link,
//! loss, a partition, an SPU failure, a manual failover, a restart of everything),
//! optionally timed to land in the middle of a rekey or a negotiation, under a
//! sequence-numbered probe both ways; then the checks that must hold whatever the
//! fault: no (SPI, sequence number) sent twice, no replay accepted, never two
//! forwarders, live SAs agreeing on the cluster and the peer with nothing leaked,
//! traffic back within the bound, a restarted member rejoining.
//!
//! Each scenario brings up its own cluster, either a namespace lab
//! (`lab::cluster::ClusterLab`: node0, node1, witness, a `vpnd` peer and LAN hosts) or
//! the docker-compose deployment ([`compose`]), and tears it down. The matrix is
//! written as JSON and Markdown ([`report`]).

pub mod checks;
pub mod compose;
pub mod fault;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;

use std::path::Path;

use anyhow::Result;

/// Runs `scenarios` one after another, printing each outcome as it ends, and writes
/// the report into `out`. Returns the outcomes and the Markdown table.
pub fn run_matrix(
    scenarios: &[scenario::Scenario],
    on: &[run::Deployment],
    out: &Path,
) -> Result<(Vec<run::Outcome>, String)> {
    let mut outcomes = Vec::new();
    for (s, on) in on
        .iter()
        .flat_map(|on| scenarios.iter().map(move |s| (s, on)))
    {
        eprintln!("== {} ({}): {}", s.name, on.kind(), s.what);
        let o = run::run(s, on);
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
