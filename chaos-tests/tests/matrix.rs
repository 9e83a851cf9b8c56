//! The whole namespace scenario matrix (about 90 s): every scenario must pass, or be
//! reported as not runnable on this machine with the reason (e.g. no `sch_netem`).
//!
//! Needs root, `ip`, `tcpdump`, `nft` and `ping`; without root it fails and says so.
//! It takes the lock the node's root tests take, so the labs never compete for CPU.
//! The report is written to `$CARGO_TARGET_TMPDIR/chaos/chaos-matrix.{json,md}` and
//! printed.

use chaos_tests::run::{Deployment, Verdict};
use chaos_tests::scenario::matrix;

#[test]
fn netns_chaos_matrix() {
    assert!(lab::is_root(), "{}", lab::ROOT_HINT);
    let bins = lab::Binaries::from_build().unwrap_or_else(|e| panic!("{e:#}"));
    let _lock = lab::netns_test_lock().unwrap_or_else(|e| panic!("{e:#}"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos");
    let (outcomes, md) = chaos_tests::run_matrix(&matrix(), &[Deployment::Netns(bins)], &out)
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("{md}");
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Failed)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} scenarios failed:\n{md}\n{}",
        failed.len(),
        outcomes.len(),
        failed
            .iter()
            .map(|o| format!(
                "---- {} ----\n{}",
                o.scenario,
                o.error.as_deref().unwrap_or("(checks failed)")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let run = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Passed)
        .count();
    assert!(run >= 12, "only {run} scenarios ran:\n{md}");
}
