//! The matrix as JSON (for scripts) and as a Markdown table (for people).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::run::{Outcome, Verdict};

/// Writes `chaos-matrix.json` and `chaos-matrix.md` into `dir`; returns the Markdown.
pub fn write(dir: &Path, outcomes: &[Outcome]) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(outcomes)?;
    let md = markdown(outcomes);
    for (name, text) in [
        ("chaos-matrix.json", json.as_str()),
        ("chaos-matrix.md", &md),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(md)
}

/// One line per scenario: gap, loss, checks passed; failures and skipped scenarios
/// with their reason below the table.
pub fn markdown(outcomes: &[Outcome]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| scenario | lab | timing | result | gap ms (bound) | lost | dup | checks | primary | moves |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let passed = o.checks.iter().filter(|c| c.passed).count();
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} ({}) | {} | {} | {}/{} | {} -> {} | {} |",
            o.scenario,
            o.lab,
            o.timing,
            match o.verdict {
                Verdict::Passed => "pass",
                Verdict::Failed => "**FAIL**",
                Verdict::NotRun => "not run",
            },
            opt(o.gap_ms),
            o.gap_bound_ms,
            opt(o.lost),
            opt(o.duplicates),
            passed,
            o.checks.len(),
            o.primary_before.as_deref().unwrap_or("-"),
            o.primary_after.as_deref().unwrap_or("-"),
            opt(o.moves),
        );
    }
    let mut notes = String::new();
    for o in outcomes {
        for c in o.checks.iter().filter(|c| !c.passed) {
            let _ = writeln!(
                notes,
                "- {}: check {} failed: {}",
                o.scenario, c.name, c.detail
            );
        }
        if let Some(dir) = &o.kept {
            let _ = writeln!(notes, "- {}: logs and capture kept in {dir}", o.scenario);
        }
        if let Some(e) = &o.error {
            let first = e.lines().next().unwrap_or_default();
            let label = if o.verdict == Verdict::NotRun {
                "not run"
            } else {
                "stopped"
            };
            let _ = writeln!(notes, "- {}: {label}: {first}", o.scenario);
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n{notes}");
    }
    md
}
