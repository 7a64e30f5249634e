//! `just bench-replay`: how fast the analysts' replay reads a selective slice of the log, and
//! how much memory an export of that slice to Parquet needs, against a raw baseline measured
//! in the same run on the same machine.
//!
//! 1. Generates the deterministic synthetic log of `bench-views` (default 1,000,000 events)
//!    straight into JetStream with the real encoding and subjects.
//! 2. Replay, with a selective filter (discharge episodes' `discharge_ready`,
//!    `pathway_assigned`, `delay_reason_recorded`, `person_discharged` and `handover_accepted`
//!    events, about a fifth of the log): (a) a raw async-nats ordered consumer over the same
//!    subject filters with a no-op handler; (b) `carewoven_analyst::replay::replay` with the
//!    equivalent `Selection` (decode, selection matching, a counting emit). The two run
//!    alternately, twice each, and the better run of each counts (the machine is shared).
//!    Prints `replay: ours=<n>/s baseline=<n>/s ratio=<r>` in selected events per second.
//! 3. Export: the same selection to Parquet exactly as `carewoven-analyst export` does
//!    (`opted_out` first, then `replay` → `row` → `RowWriter` into an `AtomicFile`), in a child
//!    process whose peak RSS is reported as `replay-export-rss: peak=<n> MiB`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, anyhow, ensure};
use async_nats::jetstream::{self, consumer};
use carewoven_analyst::export::{AtomicFile, Format, Pseudonyms, RowWriter, row};
use carewoven_analyst::replay::replay;
use carewoven_analyst::selection::Selection;
use carewoven_bench::generator::{generate_checked, mib};
use carewoven_domain::AggregateKind;
use carewoven_testkit::{NatsServer, Options, SyncPolicy};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;

const STREAM: &str = "CAREWOVEN";
/// The selected event types (all of the discharge episode aggregate kind).
const TYPES: [&str; 5] = [
    "discharge_ready",
    "pathway_assigned",
    "delay_reason_recorded",
    "person_discharged",
    "handover_accepted",
];
/// Alternating runs of the baseline and ours; the better of each counts.
const RUNS: usize = 2;
const PSEUDONYM_KEY: &str = "bench-replay-pseudonym-key";

#[derive(Clone, Copy, ValueEnum)]
enum SyncArg {
    Always,
    Default,
}

#[derive(Parser)]
#[command(about = "Replay and Parquet export benchmark, with a baseline in the same run")]
struct Args {
    #[command(subcommand)]
    child: Option<ChildCommand>,
    /// Events in the synthetic log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the synthetic log: the same seed gives the same log.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// nats-server sync policy while generating; `default` (fsync every 2 minutes) keeps
    /// generation fast and does not affect what is measured (reads).
    #[arg(long, value_enum, default_value = "default")]
    sync: SyncArg,
}

#[derive(Subcommand)]
enum ChildCommand {
    /// Internal: the Parquet export, run in a child process so its peak RSS is its own.
    #[command(hide = true)]
    ExportChild {
        #[arg(long)]
        nats_url: String,
        #[arg(long)]
        output: PathBuf,
    },
}

fn selection() -> Selection {
    Selection {
        event_types: TYPES.iter().map(|t| (*t).to_owned()).collect(),
        kind: Some(AggregateKind::DischargeEpisode),
        ..Default::default()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(ChildCommand::ExportChild { nats_url, output }) = args.child {
        return export_child(&nats_url, &output).await;
    }
    ensure!(args.events > 0, "--events must be positive");
    let (sync, sync_name) = match args.sync {
        SyncArg::Always => (SyncPolicy::Always, "always"),
        SyncArg::Default => (SyncPolicy::Default, "default (2m)"),
    };
    let nats = NatsServer::start_with(Options {
        sync,
        ..Options::default()
    })?;
    println!(
        "bench-replay: {} cores, nats-server sync_interval={sync_name}, {} events, seed {}",
        cores(),
        args.events,
        args.seed
    );

    let client = async_nats::connect(nats.url()).await?;
    let (_, last) = generate_checked(&client, args.events, args.seed).await?;

    let js = jetstream::new(client.clone());
    let selection = selection();
    let filters = selection.subject_filters();

    // Alternate: (a) raw, (b) ours, (a), (b).
    let mut raw_runs = Vec::with_capacity(RUNS);
    let mut our_runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        raw_runs.push(raw_read(&js, &filters).await?);
        our_runs.push(ours(&js, &selection).await?);
    }
    let selected = raw_runs[0].0;
    ensure!(selected > 0, "the filter selected nothing");
    for (raw, our) in raw_runs.iter().zip(&our_runs) {
        ensure!(
            raw.0 == selected && our.0 == selected,
            "runs disagree on the selection: raw {} ours {} (first raw run {selected})",
            raw.0,
            our.0
        );
    }
    println!(
        "filter: kind=discharge, event types {} (subjects {}): {selected} of {last} events ({:.1}%)",
        TYPES.join("+"),
        filters.join(" "),
        100.0 * selected as f64 / last as f64
    );
    let show = |runs: &[(u64, f64)]| -> String {
        runs.iter()
            .map(|(n, secs)| format!("{:.0}/s ({secs:.2} s)", *n as f64 / secs))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "(a) raw ordered consumer, same subject filters, no-op handler: {}",
        show(&raw_runs)
    );
    println!(
        "(b) replay() (decode + selection + counting emit): {}",
        show(&our_runs)
    );
    let best = |runs: &[(u64, f64)]| {
        runs.iter()
            .map(|(n, secs)| *n as f64 / secs)
            .fold(0.0f64, f64::max)
    };
    // The other raw way to the same events: read every event, select by subject here.
    let (all_selected, all_secs) = raw_read_all_filter_locally(&js, last).await?;
    ensure!(
        all_selected == selected,
        "client-side subject filtering selected {all_selected}, the server {selected}"
    );
    let all_rate = all_selected as f64 / all_secs;
    println!(
        "(a') raw ordered consumer over every event, same subjects selected client-side, no-op handler: {all_rate:.0}/s ({all_secs:.2} s)"
    );
    // The baseline is the faster raw way, so the ratio cannot flatter us.
    let (baseline, ours) = (best(&raw_runs).max(all_rate), best(&our_runs));
    println!(
        "replay: ours={ours:.0}/s baseline={baseline:.0}/s ratio={:.2}  (selected events/s; baseline = the faster of (a) and (a'); better of {RUNS} alternating runs each)",
        ours / baseline
    );

    // The export, in a child process.
    let dir = tempfile::Builder::new()
        .prefix("carewoven-bench-replay-")
        .tempdir()?;
    let output = dir.path().join("export.parquet");
    let child = run_export_child(&nats.url(), &output).await?;
    let bytes = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    ensure!(
        child.rows + child.left_out == selected,
        "exported {} rows and left out {}, but {selected} were selected",
        child.rows,
        child.left_out
    );
    println!(
        "opted_out(): {} people opted out, found in {:.2} s (a replay of the consent events)",
        child.opted_out, child.optout_secs
    );
    println!(
        "replay-export: {} rows ({} of opted-out people left out) in {:.2} s ({:.0} rows/s), Parquet file {:.1} MiB",
        child.rows,
        child.left_out,
        child.export_secs,
        child.rows as f64 / child.export_secs,
        mib(bytes)
    );
    println!(
        "replay-export-rss: peak={:.0} MiB",
        child.peak_kib as f64 / 1024.0
    );
    println!(
        "  (export child's VmHWM at start {:.0} MiB, after opted_out() {:.0} MiB)",
        child.start_kib as f64 / 1024.0,
        child.optout_kib as f64 / 1024.0
    );
    Ok(())
}

/// A raw ordered consumer over `filters` from the start, no-op handler, until nothing is
/// pending; (events, seconds).
async fn raw_read(js: &jetstream::Context, filters: &[String]) -> Result<(u64, f64)> {
    let started = Instant::now();
    let stream = js.get_stream_no_info(STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: filters.to_vec(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 1 },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| anyhow!("reading the stream: {e}"))?;
        let info = m.info().map_err(|e| anyhow!("{e}"))?;
        bytes += m.payload.len();
        count += 1;
        if info.pending == 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok((count, secs))
}

/// For reference: an ordered consumer over every event, selecting the same subjects as the
/// server-side filters by their kind and event-type tokens; (selected events, seconds).
async fn raw_read_all_filter_locally(js: &jetstream::Context, last: u64) -> Result<(u64, f64)> {
    let started = Instant::now();
    let stream = js.get_stream_no_info(STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: carewoven_eventlog::subjects::ALL_EVENTS.to_owned(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 1 },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| anyhow!("reading the stream: {e}"))?;
        let sequence = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
        let mut tokens = m.subject.split('.').skip(3);
        if tokens.next() == Some("discharge") && tokens.nth(1).is_some_and(|t| TYPES.contains(&t)) {
            bytes += m.payload.len();
            count += 1;
        }
        if sequence >= last {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok((count, secs))
}

/// Our replay with a counting emit; (events, seconds).
async fn ours(js: &jetstream::Context, selection: &Selection) -> Result<(u64, f64)> {
    let started = Instant::now();
    let mut count = 0u64;
    let mut positions = 0u64;
    let done = replay(
        js,
        STREAM,
        selection,
        |e| {
            count += 1;
            positions = positions.wrapping_add(e.sequence);
            Ok(())
        },
        |_| {},
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(positions);
    ensure!(
        done.emitted == count,
        "replay says {} emitted, the emit saw {count}",
        done.emitted
    );
    Ok((count, secs))
}

struct ChildResult {
    rows: u64,
    left_out: u64,
    opted_out: u64,
    optout_secs: f64,
    export_secs: f64,
    peak_kib: u64,
    start_kib: u64,
    optout_kib: u64,
}

/// Run the export in a child process (this binary, hidden subcommand) and read its result.
async fn run_export_child(nats_url: &str, output: &Path) -> Result<ChildResult> {
    let line = carewoven_bench::child::run(
        &[
            "export-child".as_ref(),
            "--nats-url".as_ref(),
            nats_url.as_ref(),
            "--output".as_ref(),
            output.as_os_str(),
        ],
        "EXPORT",
    )
    .await?;
    Ok(ChildResult {
        rows: line.get("rows")?,
        left_out: line.get("left_out")?,
        opted_out: line.get("opted_out")?,
        optout_secs: line.get("optout_secs")?,
        export_secs: line.get("export_secs")?,
        peak_kib: line.get("vmhwm_kib")?,
        start_kib: line.get("start_vmhwm_kib")?,
        optout_kib: line.get("optout_vmhwm_kib")?,
    })
}

/// The child: what `carewoven-analyst export --format parquet` does, with the bench's
/// selection.
async fn export_child(nats_url: &str, output: &Path) -> Result<()> {
    let start_kib = carewoven_bench::child::vm_hwm_kib()?;
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::new(client);
    let selection = selection();

    let started = Instant::now();
    let excluded = carewoven_analyst::opted_out(&js, STREAM).await?;
    let optout_secs = started.elapsed().as_secs_f64();
    let optout_kib = carewoven_bench::child::vm_hwm_kib()?;

    let started = Instant::now();
    let pseudonyms = Pseudonyms::new(PSEUDONYM_KEY.as_bytes().to_vec());
    let mut file = AtomicFile::create(output, false)?;
    let mut rows = 0u64;
    let mut left_out = 0u64;
    {
        let mut writer = RowWriter::new(Format::Parquet, file.writer())?;
        replay(
            &js,
            STREAM,
            &selection,
            |e| {
                if excluded.contains(&e.meta.person_id) {
                    left_out += 1;
                    return Ok(());
                }
                rows += 1;
                writer.write(&row(&e, &pseudonyms))
            },
            |_| {},
        )
        .await?;
        writer.finish()?;
    }
    file.commit()?;
    let export_secs = started.elapsed().as_secs_f64();
    println!(
        "EXPORT rows={rows} left_out={left_out} opted_out={} optout_secs={optout_secs} export_secs={export_secs} vmhwm_kib={} start_vmhwm_kib={start_kib} optout_vmhwm_kib={optout_kib}",
        excluded.len(),
        carewoven_bench::child::vm_hwm_kib()?
    );
    Ok(())
}
