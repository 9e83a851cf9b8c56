//! CPU time and resident memory of a process, from /proc: the responder's cost per
//! setup and per tunnel, and our own CPU.

use std::fs;

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Summed over the threads' schedstat (on-CPU nanoseconds; finer than
    /// /proc/PID/stat's clock ticks).
    pub cpu_ns: u64,
    pub rss_kib: u64,
}

pub struct Proc {
    pid: u32,
}

impl Proc {
    pub fn new(pid: u32) -> Self {
        Proc { pid }
    }

    pub fn sample(&self) -> Result<Sample> {
        let dir = format!("/proc/{}", self.pid);
        let mut cpu_ns = 0;
        for task in fs::read_dir(format!("{dir}/task")).with_context(|| format!("{dir}/task"))? {
            let Ok(task) = task else { continue };
            // A thread may have exited since the listing.
            if let Ok(s) = fs::read_to_string(task.path().join("schedstat")) {
                cpu_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        let status = fs::read_to_string(format!("{dir}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(Sample { cpu_ns, rss_kib })
    }
}
