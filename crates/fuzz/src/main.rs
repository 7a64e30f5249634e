//! `carewoven-fuzz`: `just fuzz` runs every target; `--target`, `--inputs`, `--seed` narrow a
//! run; `--replay FILE --target T` runs one saved input (hex) again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use carewoven_fuzz::engine::{self, hex};
use carewoven_fuzz::{ALLOC_BOUND, Options, Report, targets};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Hostile input at scale for every decoder and parser reachable from outside")]
struct Cli {
    /// Inputs in all, shared evenly between the targets run.
    #[arg(long, default_value_t = 10_000_000)]
    inputs: u64,
    /// The run's seed (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Run only this target (`--list` names them).
    #[arg(long)]
    target: Option<String>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// An input running longer than this many milliseconds is a hang.
    #[arg(long, default_value_t = 1_000)]
    hang_ms: u64,
    /// Where failing inputs are saved as hex.
    #[arg(long, default_value = "target/fuzz-findings")]
    findings: PathBuf,
    /// Run the saved input in this file (hex) through `--target` and print the verdict.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// List the targets.
    #[arg(long)]
    list: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let all = targets::all();
    if cli.list {
        for t in &all {
            println!("{}", t.name());
        }
        return Ok(());
    }
    if let Some(file) = &cli.replay {
        let name = cli.target.as_deref().context("--replay needs --target")?;
        let target = targets::by_name(name).with_context(|| format!("no target {name}"))?;
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let input = engine::unhex(&text).context("the file is not hex")?;
        let started = Instant::now();
        let (result, peak) = engine::run_one(target.as_ref(), &input);
        println!(
            "{name}: {result:?} in {:?}, peak {peak} bytes, input {} bytes",
            started.elapsed(),
            input.len()
        );
        return Ok(());
    }
    let chosen: Vec<_> = match &cli.target {
        Some(name) => vec![targets::by_name(name).with_context(|| format!("no target {name}"))?],
        None => all,
    };
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let per_target = cli.inputs.div_ceil(chosen.len() as u64);
    println!(
        "fuzz: seed={seed} targets={} inputs per target={per_target} threads={threads} hang after {} ms, allocation bound {} MiB",
        chosen.len(),
        cli.hang_ms,
        ALLOC_BOUND >> 20
    );
    let options = Options {
        seed,
        inputs: per_target,
        threads,
        hang_after: Duration::from_millis(cli.hang_ms),
        alloc_bound: ALLOC_BOUND,
        findings: Some(cli.findings.clone()),
        verbose: true,
    };
    let started = Instant::now();
    let mut total = Report {
        target: "total",
        ..Report::default()
    };
    for target in &chosen {
        let r = carewoven_fuzz::run_target(target.as_ref(), &options);
        println!(
            "{:<12} {}  accepted={} refused={} max_peak={} KiB (input {} B) largest_input={} B slowest={:?} {:.1}s {:.0} inputs/s",
            r.target,
            r.line(),
            r.accepted,
            r.refused,
            r.max_peak >> 10,
            r.max_peak_input_len,
            r.largest_input,
            r.slowest,
            r.elapsed.as_secs_f64(),
            r.inputs as f64 / r.elapsed.as_secs_f64().max(1e-9)
        );
        total.add(&r);
    }
    println!(
        "total        {}  accepted={} refused={} max_peak={} KiB wall={:.1}s",
        total.line(),
        total.accepted,
        total.refused,
        total.max_peak >> 10,
        started.elapsed().as_secs_f64()
    );
    println!("{}", total.line());
    for f in total.findings.iter().take(20) {
        println!(
            "finding: {} #{} {}: {} (hex {}…)",
            f.kind,
            f.index,
            f.input.len(),
            f.detail,
            hex(&f.input[..f.input.len().min(64)])
        );
    }
    if total.panics + total.hangs + total.over_alloc + total.unclear > 0 {
        std::process::exit(1);
    }
    Ok(())
}
