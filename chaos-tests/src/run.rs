//! Running one scenario against a fresh namespace lab and collecting its outcome.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use lab::Binaries;
use lab::cluster::{ClusterLab, DATA_GROUP, FLOWING, LabOptions, other};
use serde::Serialize;

use crate::checks::{self, Check};
use crate::fault::{self, CONVERGE, Unsupported};
use crate::scenario::{Expect, Fault, Scenario};

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
    checks: Vec<Check>,
    kept: Option<String>,
}

/// Runs `s` in a lab of its own; every failure (an error or a panic of the lab's
/// helpers) becomes a failed row, and the lab is torn down either way.
pub fn run(s: &Scenario, bins: &Binaries) -> Outcome {
    let t0 = Instant::now();
    let mut rec = Record::default();
    let lease = Duration::from_millis(600);
    let result = catch_unwind(AssertUnwindSafe(|| scenario(s, bins, &mut rec)));
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
        lab: "netns",
        fault: format!("{:?}", s.fault),
        timing: format!("{:?}", s.timing),
        verdict,
        gap_ms: rec.gap.map(|g| g.as_millis() as u64),
        gap_bound_ms: bound(s, lease).as_millis() as u64,
        lost: rec.lost,
        duplicates: rec.duplicates,
        primary_before: rec.primary_before,
        primary_after: rec.primary_after,
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

/// How often ownership of group 1 may move during `s`.
fn moves(s: &Scenario) -> usize {
    match (s.fault, s.expect) {
        (Fault::KillAndReturn, _) => 2,
        (_, Expect::Stays) => 0,
        _ => 1,
    }
}

fn scenario(s: &Scenario, bins: &Binaries, rec: &mut Record) -> Result<()> {
    let opts = LabOptions {
        workers: s.workers,
        preempt: s.preempt,
        ..LabOptions::default()
    };
    let (mut cl, primary) = ClusterLab::formed(s.name, bins, opts);
    let primary: &'static str = if primary == "node0" { "node0" } else { "node1" };
    rec.primary_before = Some(primary.into());
    let lease = cl.lease;
    let (ike_before, inits_before) = cl.peer_before();
    let children_before = cl.ipsec_sas("peer")?;

    let probe = cl.start_probe()?;
    probe
        .wait_flowing_after(Instant::now(), FLOWING, Duration::from_secs(10))
        .context("probe traffic before the fault")?;

    let struck = fault::strike(&mut cl, s, primary)?;
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
        rec.checks
            .push(checks::rejoined(&mut cl, m, &owner, CONVERGE));
    }
    rec.checks.push(checks::owner(&mut cl, want, CONVERGE));
    rec.checks
        .push(checks::sas_agree(&mut cl, &owner, CONVERGE));
    let landed = checks::timing_landed(
        s.timing,
        &children_before,
        &cl.ipsec_sas("peer")?,
        &ike_before,
        &cl.peer_ike_spis()?,
    );
    rec.checks.extend(landed);
    if !s.renegotiates {
        rec.checks
            .push(checks::no_renegotiation(&mut cl, &ike_before, inits_before));
    }
    let packets = cl.esp_to_peer()?;
    rec.checks.push(checks::no_nonce_reuse(&packets));
    rec.checks
        .push(checks::single_forwarder(&cl, &packets, moves(s)));
    if rec.checks.iter().any(|c| !c.passed) {
        // Logs, configurations and the capture, for whoever reads the report.
        cl.lab.dir.keep = true;
        rec.kept = Some(cl.lab.dir.path.display().to_string());
    }
    Ok(())
}
