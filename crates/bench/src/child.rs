//! Running part of a benchmark in a child process of the benchmark binary, so that its peak
//! memory is its own, and reading back the one result line it prints.

use std::process::Stdio;

use anyhow::{Context, Result, ensure};

/// The `TAG key=value ...` line a child printed.
pub struct ChildLine(String);

impl ChildLine {
    pub fn get<T: std::str::FromStr>(&self, name: &str) -> Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let raw = self
            .0
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .with_context(|| format!("{name} missing in {:?}", self.0))?;
        Ok(raw.parse()?)
    }
}

/// Run this binary with `args` and return the line of its output that starts with `tag`.
pub async fn run(args: &[&std::ffi::OsStr], tag: &str) -> Result<ChildLine> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let out = tokio::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running the {tag} child"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "the {tag} child failed ({}): {stdout}",
        out.status
    );
    let prefix = format!("{tag} ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .with_context(|| format!("no result from the {tag} child: {stdout}"))?;
    Ok(ChildLine(line.to_owned()))
}

/// This process's peak resident set size (VmHWM), in KiB.
pub fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
