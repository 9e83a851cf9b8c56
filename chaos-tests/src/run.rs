//! Running one scenario against a fresh deployment and collecting its outcome.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::bail;
use anyhow::{Context as _, Result};
use lab::Binaries;
use lab::cluster::{ClusterLab, DATA_GROUP, FLOWING, LabOptions, other};
use serde::Serialize;

use crate::checks::{self, Check};
use crate::compose::Compose;
use crate::fault::{self, CONVERGE, Unsupported};
use crate::scenario::{Expect, Scenario};
use crate::target::Target;

/// Where the scenarios run.
#[derive(Debug)]
pub enum Deployment {
    /// A fresh namespace lab per scenario, with these executables.
    Netns(Binaries),
    /// The docker-compose cluster, brought up fresh per scenario.
    Compose(Compose),
}

impl Deployment {
    pub fn kind(&self) -> &'static str {
        match self {
            Deployment::Netns(_) => "netns",
            Deployment::Compose(_) => "compose",
        }
    }

    /// Brings up a cluster for `s`, with group 1's primary elected and the tunnel up.
    fn up(&self, s: &Scenario) -> Result<Box<dyn Target>> {
        Ok(match self {
            Deployment::Netns(bins) => {
                let opts = LabOptions {
                    workers: s.workers,
                    preempt: s.preempt,
                    ..LabOptions::default()
                };
                Box::new(ClusterLab::formed(s.name, bins, opts).0)
            }
            Deployment::Compose(c) => Box::new(c.up(s.preempt)?),
        })
    }
}

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Passed,
    Failed,
    /// The fault cannot be put into this lab (the reason is in `error`).
    NotRun,
}

/// One row of the matrix report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub what: String,
    pub lab: &'static str,
    pub fault: String,
    pub timing: String,
    pub verdict: Verdict,
    /// The longest traffic gap from the fault on (the longer direction).
    pub gap_ms: Option<u64>,
    pub gap_bound_ms: u64,
    /// Probe datagrams lost, both directions.
    pub lost: Option<u64>,
    pub duplicates: Option<u64>,
    pub primary_before: Option<String>,
    pub primary_after: Option<String>,
    /// Times ownership of group 1 changed hands (epochs), from before the fault until
    /// the checks.
    pub moves: Option<u64>,
    pub checks: Vec<Check>,
    /// The lab's directory (logs, configurations, capture), kept when a check failed.
    pub kept: Option<String>,
    /// Why the scenario stopped early (a step that failed, with the daemons' logs), or
    /// why it did not run.
    pub error: Option<String>,
    pub seconds: f64,
}

/// What a scenario measured and checked before any error.
#[derive(Debug, Default)]
struct Record {
    gap: Option<Duration>,
    lost: Option<u64>,
    duplicates: Option<u64>,
    primary_before: Option<String>,
    primary_after: Option<String>,
    moves: Option<u64>,
    checks: Vec<Check>,
    kept: Option<String>,
    lease: Option<Duration>,
}

/// Runs `s` in a lab of its own; every failure (an error or a panic of the lab's
/// helpers) becomes a failed row, and the lab is torn down either way.
pub fn run(s: &Scenario, on: &Deployment) -> Outcome {
    let t0 = Instant::now();
    let mut rec = Record::default();
    let result = catch_unwind(AssertUnwindSafe(|| scenario(s, on, &mut rec)));
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(panic) => Some(anyhow::anyhow!(
            "{}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panicked")
        )),
    };
    let verdict = match &error {
        Some(e) if e.downcast_ref::<Unsupported>().is_some() => Verdict::NotRun,
        Some(_) => Verdict::Failed,
        None if rec.checks.iter().all(|c| c.passed) => Verdict::Passed,
        None => Verdict::Failed,
    };
    Outcome {
        scenario: s.name.into(),
        what: s.what.into(),
        lab: on.kind(),
        fault: format!("{:?}", s.fault),
        timing: format!("{:?}", s.timing),
        verdict,
        gap_ms: rec.gap.map(|g| g.as_millis() as u64),
        gap_bound_ms: rec.lease.map_or(0, |l| bound(s, l).as_millis() as u64),
        lost: rec.lost,
        duplicates: rec.duplicates,
        primary_before: rec.primary_before,
        primary_after: rec.primary_after,
        moves: rec.moves,
        checks: rec.checks,
        kept: rec.kept,
        error: error.map(|e| format!("{e:#}")),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// The longest gap `s` may cause.
fn bound(s: &Scenario, lease: Duration) -> Duration {
    lease * s.gap_leases + Duration::from_secs(1)
}

/// Group 1's epoch as `node` sees it (failovers so far).
fn epochs(cl: &mut dyn Target, node: &str) -> Result<u64> {
    Ok(cl.status(node)?.group(DATA_GROUP)?.failover_count)
}

fn scenario(s: &Scenario, on: &Deployment, rec: &mut Record) -> Result<()> {
    let mut target = on.up(s)?;
    let result = exercise(s, target.as_mut(), rec);
    let stopped = result
        .as_ref()
        .is_err_and(|e| e.downcast_ref::<Unsupported>().is_none());
    if stopped || rec.checks.iter().any(|c| !c.passed) {
        // Logs, configurations and the capture, for whoever reads the report.
        rec.kept = target.keep();
    }
    result
}

/// The scenario on a running cluster: the fault, convergence, the checks.
fn exercise(s: &Scenario, cl: &mut dyn Target, rec: &mut Record) -> Result<()> {
    let primary: &'static str = match cl.primary(DATA_GROUP)?.as_str() {
        "node0" => "node0",
        "node1" => "node1",
        other => bail!("unknown primary {other}"),
    };
    rec.primary_before = Some(primary.into());
    let lease = cl.lease();
    rec.lease = Some(lease);
    let ike_before = cl.peer_ike_spis()?;
    if ike_before.len() != 1 {
        bail!("the peer should hold exactly one IKE SA with the cluster: {ike_before:?}");
    }
    let inits_before = cl.peer_ike_inits();
    let epochs_before = epochs(cl, primary)?;
    let children_before = cl.ipsec_sas("peer")?;

    let probe = cl.start_probe()?;
    probe
        .wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10))
        .context("probe traffic before the fault")?;

    let struck = fault::strike(cl, s, primary)?;
    let at = struck.at.context("the fault did not land")?;
    let want = match s.expect {
        Expect::Takeover => Some(other(primary)),
        Expect::Stays => Some(primary),
        Expect::Either => None,
    };
    let owner = cl.wait_primary(DATA_GROUP, want, CONVERGE)?;
    rec.primary_after = Some(owner.clone());
    let r = probe.wait_flowing_after(Instant::now(), FLOWING, CONVERGE);
    r.context("probe traffic after the fault")?;
    for m in &struck.restart {
        cl.restart(&[m])?;
    }
    let (stats, gaps) = probe.stop_around(at);
    let gap = gaps.into_iter().max().unwrap_or_default();
    rec.gap = Some(gap);
    rec.lost = Some(stats.iter().map(|s| s.lost).sum());
    rec.duplicates = Some(stats.iter().map(|s| s.duplicates).sum());

    rec.checks.push(checks::traffic_back(gap, bound(s, lease)));
    rec.checks.push(checks::no_replay_accepted(&stats));
    for m in &struck.restart {
        rec.checks.push(checks::rejoined(cl, m, &owner, CONVERGE));
    }
    rec.checks.push(checks::owner(cl, want, CONVERGE));
    rec.checks.push(checks::sas_agree(cl, &owner, CONVERGE));
    let landed = checks::timing_landed(
        s.timing,
        &children_before,
        &cl.ipsec_sas("peer")?,
        &ike_before,
        &cl.peer_ike_spis()?,
    );
    rec.checks.extend(landed);
    if !s.renegotiates {
        rec.checks.push(checks::no_renegotiation(
            cl,
            &ike_before,
            inits_before,
            s.timing.rekeys_ike(),
        ));
    }
    let moves = epochs(cl, &owner)?.saturating_sub(epochs_before);
    rec.moves = Some(moves);
    let packets = cl.esp_to_peer()?;
    rec.checks.push(checks::no_nonce_reuse(&packets));
    rec.checks
        .push(checks::single_forwarder(cl, &packets, moves));
    Ok(())
}
