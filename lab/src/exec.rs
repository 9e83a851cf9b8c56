//! Running programs with bounded waits, and reading what they print.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs a command and fails with its stderr if it does not exit 0.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Runs `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args).map(|_| ())
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` with `from` replaced by `to` exactly once; fails if `from` is not in `text`
/// (so a changed example configuration breaks loudly, not silently).
pub fn edit(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        0 => bail!("configuration edit: {from:?} not found"),
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!("configuration edit: {from:?} found {n} times"),
    }
}

/// Removes ANSI colour sequences (in case the log writer colours despite `NO_COLOR`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// SPI values (inbound, outbound) of the "IPsec SA pair installed" log lines.
pub fn installed_spis(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains("IPsec SA pair installed"))
        .filter_map(|l| Some((log_field(l, "inbound")?, log_field(l, "outbound")?)))
        .collect()
}

/// Value of `key=value` in a tracing log line.
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let at = line
        .match_indices(&pat)
        .find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ')?
        .0
        + pat.len();
    Some(
        line[at..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    )
}

/// Runs `cmd` with its output captured, killing it after `timeout`: for clients that
/// would wait forever on a stopped server (a SIGSTOPped daemon's kernel still accepts
/// TCP connections, and nobody answers on them).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
