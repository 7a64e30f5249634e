//! carewoven-analyst: replay the history and export it, from the log, never the live views.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carewoven_analyst::export::{AtomicFile, Format, Pseudonyms, RowWriter, row};
use carewoven_analyst::replay::{Progress, replay};
use carewoven_analyst::selection::Selection;
use carewoven_domain::AggregateKind;
use chrono::{DateTime, Datelike, Utc};
use clap::{Args, Parser, Subcommand};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    version,
    about = "Carewoven analysts' tools: replay and export the event log"
)]
struct Cli {
    #[arg(
        long,
        env = "CAREWOVEN_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    nats_url: String,
    #[arg(
        long,
        env = "CAREWOVEN_STREAM",
        default_value = "CAREWOVEN",
        global = true
    )]
    stream: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Select {
    /// First log position (inclusive). To resume, pass the last position you received + 1.
    #[arg(long, default_value_t = 1)]
    from_position: u64,
    /// Last log position (inclusive); default: the log's end when the replay starts.
    #[arg(long)]
    to_position: Option<u64>,
    /// Recorded at or after (RFC 3339).
    #[arg(long)]
    recorded_from: Option<DateTime<Utc>>,
    /// Recorded before (RFC 3339).
    #[arg(long)]
    recorded_to: Option<DateTime<Utc>>,
    /// Event type (repeatable), e.g. person_discharged.
    #[arg(long = "type")]
    event_types: Vec<String>,
    /// Acting organisation code.
    #[arg(long)]
    organisation: Option<String>,
    /// Aggregate kind: person, referral, assessment, care_plan, care_team, consent, discharge,
    /// meeting, feedback, organisation (registry facts, which belong to no person).
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    person: Option<Uuid>,
}

impl Select {
    fn selection(&self) -> Result<Selection> {
        let kind = match &self.kind {
            Some(k) => Some(
                AggregateKind::parse(k).with_context(|| format!("unknown aggregate kind {k:?}"))?,
            ),
            None => None,
        };
        let selection = Selection {
            from_sequence: self.from_position,
            to_sequence: self.to_position,
            recorded_from: self.recorded_from,
            recorded_to: self.recorded_to,
            event_types: self.event_types.clone(),
            organisation: self.organisation.clone(),
            kind,
            person: self.person,
        };
        selection.validate()?;
        Ok(selection)
    }
}

#[derive(Subcommand)]
enum AsOfView {
    /// A person's care record.
    Record {
        #[arg(long)]
        person: Uuid,
    },
    /// The discharge board.
    Board,
}

#[derive(Subcommand)]
enum Command {
    /// Serve replay over gRPC (carewoven.v1.HistoryService), with health and reflection.
    /// Every replay needs a bearer token with the `analyst` role (the other subcommands read
    /// the log directly: operator tools, authorised by access to NATS).
    Serve {
        #[arg(
            long,
            env = "CAREWOVEN_HISTORY_LISTEN",
            default_value = "127.0.0.1:50053"
        )]
        listen: String,
        #[command(flatten)]
        auth: carewoven_analyst::service::AuthConfig,
        /// Where to serve Prometheus metrics (`--metrics-listen`).
        #[command(flatten)]
        metrics: carewoven_service::MetricsConfig,
    },
    /// The service-review report for a period (by when things happened) and organisations:
    /// JSON for machines and one self-contained HTML page for people. People who opted out
    /// of secondary use are left out.
    Report {
        /// Period start (RFC 3339), inclusive.
        #[arg(long)]
        from: DateTime<Utc>,
        /// Period end (RFC 3339), exclusive.
        #[arg(long)]
        to: DateTime<Utc>,
        /// Organisation codes (repeatable); none means all.
        #[arg(long = "organisation")]
        organisations: Vec<String>,
        #[arg(long)]
        json: PathBuf,
        #[arg(long)]
        html: PathBuf,
        /// Add NHS England's table shapes (Discharge Ready Date statistics, the discharge
        /// situation report's tables, the 91-day reablement outcome) for this UK calendar
        /// month (YYYY-MM) to the JSON and HTML.
        #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
        month: Option<(i32, u32)>,
        /// The provider (site codes, repeatable) for those tables and the trend; default:
        /// --organisation.
        #[arg(long = "provider")]
        providers: Vec<String>,
        /// The trend (each headline figure by ISO week and by month, per site or service)
        /// covers this many UK calendar months ending with --month (without it, with the
        /// month of the period's end).
        #[arg(long, default_value_t = 12, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(carewoven_history::report::TREND_MAX_MONTHS)))]
        trend_months: u32,
        /// Also write each table (the trend's, and NHS England's with --month) as CSV into
        /// this directory.
        #[arg(long, value_name = "DIR")]
        csv_dir: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// A care record or the discharge board as it stood at a time: by recorded time (what we
    /// knew then) or by occurred time (what had happened by then, facts recorded late
    /// included). People who opted out of secondary use are left out.
    AsOf {
        /// The time (RFC 3339).
        #[arg(long)]
        at: DateTime<Utc>,
        #[arg(long, value_enum)]
        sense: carewoven_analyst::asof::Sense,
        #[command(subcommand)]
        view: AsOfView,
    },
    /// Replay events as JSON Lines (protobuf JSON of each envelope, with its log position),
    /// in log order, leaving out people who opted out of secondary use.
    Replay {
        #[command(flatten)]
        select: Select,
        /// Write here instead of standard output (atomically).
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Export de-identified rows (pseudonymised ids, coded fields, no personal data) as JSON
    /// Lines, CSV or Parquet.
    Export {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum)]
        format: Format,
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        force: bool,
        /// Secret for the keyed pseudonyms; the same key gives the same pseudonyms across
        /// exports.
        #[arg(long, env = "CAREWOVEN_PSEUDONYM_KEY", hide_env_values = true)]
        pseudonym_key: String,
    },
}

fn bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} log positions  {per_sec}  ETA {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn show(bar: &indicatif::ProgressBar, p: &Progress) {
    bar.set_length(p.end);
    bar.set_position(p.position);
    bar.set_message(format!("{} selected", p.emitted));
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // The analyst's own NATS identity on the servers of deploy/ (analyst.nk from
    // `carectl keys nats`).
    let nkey = std::env::var("CAREWOVEN_NATS_NKEY_SEED").ok();
    let client = carewoven_eventlog::connect(
        &cli.nats_url,
        "carewoven-analyst",
        Duration::from_secs(10),
        nkey.as_deref(),
    )
    .await?;
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    match cli.command {
        Command::Serve {
            listen,
            auth,
            metrics,
        } => {
            carewoven_service::init_tracing(false);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let stop = carewoven_service::stop_on(carewoven_service::shutdown_signal());
            carewoven_service::metrics::serve_metrics(&metrics, stop.clone()).await?;
            carewoven_analyst::service::serve(listener, js, cli.stream, &auth, stop).await?;
        }
        Command::Report {
            from,
            to,
            organisations,
            json,
            html,
            month,
            providers,
            trend_months,
            csv_dir,
            force,
        } => {
            anyhow::ensure!(to > from, "the period is reversed or empty");
            let providers = providers
                .iter()
                .map(|o| carewoven_domain::values::Code::parse("provider", o))
                .collect::<Result<Vec<_>, _>>()?;
            let organisations = organisations
                .iter()
                .map(|o| carewoven_domain::values::Code::parse("organisation", o))
                .collect::<Result<Vec<_>, _>>()?;
            // Check both outputs before reading anything.
            let json_file = AtomicFile::create(&json, force)?;
            let html_file = AtomicFile::create(&html, force)?;
            let csv_files = match &csv_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let nhs = month
                        .is_some()
                        .then_some(carewoven_history::report::CSV_FILES)
                        .into_iter()
                        .flatten()
                        .map(str::to_owned);
                    nhs.chain(carewoven_history::report::trend_csv_files())
                        .map(|name| {
                            let path = dir.join(&name);
                            AtomicFile::create(&path, force).map(|f| (name, f))
                        })
                        .collect::<Result<Vec<_>>>()?
                }
                None => Vec::new(),
            };
            let mut events = Vec::new();
            let bar = bar(false);
            replay(
                &js,
                &cli.stream,
                &Selection::default(),
                |e| {
                    use carewoven_domain::AggregateKind as K;
                    if matches!(
                        e.meta.aggregate_kind,
                        K::Referral
                            | K::Assessment
                            | K::DischargeEpisode
                            | K::Consent
                            | K::Person
                            // The registry: which services are adult social care.
                            | K::Organisation
                            // Tasks completed on time, care-plan reviews overdue.
                            | K::Task
                            | K::CarePlan
                    ) {
                        events.push(e);
                    }
                    Ok(())
                },
                |p| show(&bar, p),
            )
            .await?;
            bar.finish_and_clear();
            let excluded = carewoven_history::opted_out(events.iter());
            let mut report = carewoven_history::service_review(
                events.iter(),
                from,
                to,
                &organisations,
                &excluded,
            );
            let provider = if providers.is_empty() {
                &organisations
            } else {
                &providers
            };
            if let Some((year, month)) = month {
                report.nhs_tables = carewoven_history::nhs_tables(
                    events.iter(),
                    year,
                    month,
                    provider,
                    &excluded,
                    to,
                );
            }
            // The trend ends with the chosen month, or with the month of the period's end.
            let last_month = month.unwrap_or_else(|| {
                let last = carewoven_domain::values::uk_date(to - chrono::Duration::seconds(1));
                (last.year(), last.month())
            });
            report.trend = carewoven_history::trend(
                events.iter(),
                last_month,
                trend_months,
                provider,
                &excluded,
                to,
            );
            let mut texts: std::collections::HashMap<String, String> = report
                .trend
                .iter()
                .flat_map(carewoven_history::Trend::csv)
                .collect();
            if let Some(tables) = &report.nhs_tables {
                texts.extend(tables.csv().into_iter().map(|(n, t)| (n.to_owned(), t)));
            }
            for (name, mut file) in csv_files {
                file.writer()
                    .write_all(texts.get(&name).map_or("", String::as_str).as_bytes())?;
                file.commit()?;
            }
            for (mut file, text) in [
                (json_file, carewoven_history::to_json(&report)),
                (html_file, carewoven_history::to_html(&report)),
            ] {
                file.writer().write_all(text.as_bytes())?;
                file.commit()?;
            }
            eprintln!(
                "report for {from} to {to} written to {} and {} ({} events read, {} people opted out left out)",
                json.display(),
                html.display(),
                events.len(),
                excluded.len()
            );
        }
        Command::AsOf { at, sense, view } => {
            let excluded = carewoven_analyst::opted_out(&js, &cli.stream).await?;
            let pool = DescriptorPool::decode(carewoven_proto::FILE_DESCRIPTOR_SET)?;
            let json = |name: &str, bytes: Vec<u8>| -> Result<serde_json::Value> {
                let descriptor = pool
                    .get_message_by_name(name)
                    .with_context(|| format!("the {name} descriptor"))?;
                Ok(serde_json::to_value(DynamicMessage::decode(
                    descriptor,
                    bytes.as_slice(),
                )?)?)
            };
            let output = match view {
                AsOfView::Record { person } => {
                    anyhow::ensure!(
                        !excluded.contains(&person),
                        "this person has opted out of secondary use of their record"
                    );
                    let selection = Selection {
                        person: Some(person),
                        ..Default::default()
                    };
                    let views = carewoven_analyst::asof::AsOf::build(
                        &js,
                        &cli.stream,
                        &selection,
                        at,
                        sense,
                    )
                    .await?;
                    match views.care_record(person)? {
                        Some(record) => json("carewoven.v1.CareRecord", record.encode_to_vec())?,
                        None => anyhow::bail!(
                            "no record of person {person} as of {at} ({sense:?} time)"
                        ),
                    }
                }
                AsOfView::Board => {
                    let selection = Selection {
                        kind: Some(AggregateKind::DischargeEpisode),
                        ..Default::default()
                    };
                    let views = carewoven_analyst::asof::AsOf::build(
                        &js,
                        &cli.stream,
                        &selection,
                        at,
                        sense,
                    )
                    .await?;
                    let mut entries = Vec::new();
                    for entry in views.board()? {
                        if excluded.iter().any(|p| p.to_string() == entry.person_id) {
                            continue;
                        }
                        entries.push(json("carewoven.v1.BoardEntry", entry.encode_to_vec())?);
                    }
                    serde_json::Value::Array(entries)
                }
            };
            println!("{}", serde_json::to_string_pretty(&output)?);
        }
        Command::Replay {
            select,
            output,
            force,
        } => {
            let selection = select.selection()?;
            let excluded = carewoven_analyst::opted_out(&js, &cli.stream).await?;
            let pool = DescriptorPool::decode(carewoven_proto::FILE_DESCRIPTOR_SET)?;
            let envelope = pool
                .get_message_by_name("carewoven.v1.EventEnvelope")
                .context("the EventEnvelope descriptor")?;
            let mut file = match &output {
                Some(path) => Some(AtomicFile::create(path, force)?),
                None => None,
            };
            let stdout = std::io::stdout();
            let mut out: Box<dyn Write> = match file.as_mut() {
                Some(f) => Box::new(std::io::BufWriter::new(f.writer())),
                None => Box::new(std::io::BufWriter::new(stdout.lock())),
            };
            let bar = bar(output.is_none());
            let done = replay(
                &js,
                &cli.stream,
                &selection,
                |e| {
                    if excluded.contains(&e.meta.person_id) {
                        return Ok(());
                    }
                    let bytes =
                        carewoven_proto::convert::to_envelope(&e.meta, &e.event).encode_to_vec();
                    let message = DynamicMessage::decode(envelope.clone(), bytes.as_slice())?;
                    let json = serde_json::json!({
                        "log_position": e.sequence,
                        "envelope": serde_json::to_value(&message)?,
                    });
                    serde_json::to_writer(&mut out, &json)?;
                    out.write_all(b"\n")?;
                    Ok(())
                },
                |p| show(&bar, p),
            )
            .await?;
            out.flush()?;
            drop(out);
            bar.finish_and_clear();
            if let Some(f) = file {
                f.commit()?;
            }
            eprintln!(
                "replayed log positions up to {}: {} events selected ({} people opted out left out) in {:.1} s; resume with --from-position {}",
                done.position,
                done.emitted,
                excluded.len(),
                started.elapsed().as_secs_f64(),
                done.position + 1
            );
        }
        Command::Export {
            select,
            format,
            output,
            force,
            pseudonym_key,
        } => {
            anyhow::ensure!(
                pseudonym_key.len() >= 16,
                "--pseudonym-key must be at least 16 characters"
            );
            let selection = select.selection()?;
            let excluded = carewoven_analyst::opted_out(&js, &cli.stream).await?;
            let pseudonyms = Pseudonyms::new(pseudonym_key.into_bytes());
            let mut file = AtomicFile::create(&output, force)?;
            let mut rows = 0u64;
            {
                let mut writer = RowWriter::new(format, file.writer())?;
                let bar = bar(false);
                replay(
                    &js,
                    &cli.stream,
                    &selection,
                    |e| {
                        if excluded.contains(&e.meta.person_id) {
                            return Ok(());
                        }
                        rows += 1;
                        writer.write(&row(&e, &pseudonyms))
                    },
                    |p| show(&bar, p),
                )
                .await?;
                bar.finish_and_clear();
                writer.finish()?;
            }
            file.commit()?;
            eprintln!(
                "exported {rows} rows to {} ({} people opted out left out) in {:.1} s",
                output.display(),
                excluded.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// `YYYY-MM` as (year, month).
fn parse_month(raw: &str) -> Result<(i32, u32), String> {
    let bad = || format!("{raw:?} is not a month as YYYY-MM");
    let (y, m) = raw.split_once('-').ok_or_else(bad)?;
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    if y.len() != 4 || m.len() != 2 || !(1..=12).contains(&month) {
        return Err(bad());
    }
    Ok((year, month))
}
