//! `just bench-views`: how fast the views service rebuilds from the log, and how fast it
//! answers, each against a raw baseline measured in the same run on the same machine.
//!
//! 1. Generates a deterministic synthetic log (default 1,000,000 events, realistic mix: people,
//!    referrals, assessments, care teams and plans, consents, discharge episodes through the
//!    discharge-to-assess states with a pathway mix of about 50/45/4/1, meetings, feedback)
//!    straight into JetStream, with the real encoding and subjects.
//! 2. Rebuild: (a) a raw ordered consumer with a no-op handler over every event; (b) raw redb
//!    inserts of the same value sizes under random u128 keys, in committed transactions of the
//!    projector's `MAX_BATCH`; (c) our
//!    rebuild exactly as the service projects, in a child process whose peak RSS is reported.
//!    Prints `rebuild: ours=<n>/s baseline=<n>/s ratio=<r>` with baseline = min(a, b).
//! 3. Queries: the views service in this process on the rebuilt file; GetCareRecord for random
//!    people at 64 concurrent clients against the gRPC health check (a no-op tonic RPC) of the
//!    same server. Prints `query: p99_ratio=<r>`. Each read is a real one under information
//!    governance: a bearer token (verified once, then cached), the access decision, and an
//!    audit record stored in `CW_AUDIT` before the answer. The care-team organisations are
//!    registered (with a data-sharing agreement) through the command service first, and each
//!    person is read as a current care-team member with no objection on record; people
//!    without one are not queried.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use async_nats::jetstream::{self, consumer};
use carewoven_bench::generator::{Rng, generate_checked, mib};
use carewoven_eventlog::subjects;
use carewoven_proto::v1::{
    self, command_service_client::CommandServiceClient, query_service_client::QueryServiceClient,
};
use carewoven_testkit::partners::{all_data_classes, register_partner, token};
use carewoven_testkit::{NatsServer, Options, SyncPolicy};
use carewoven_views::projector::{LogMessage, MAX_BATCH, OnUndecodable, apply_batch};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use hdrhistogram::Histogram;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const STREAM: &str = "CAREWOVEN";

#[derive(Clone, Copy, ValueEnum)]
enum SyncArg {
    Always,
    Default,
}

#[derive(Parser)]
#[command(about = "Views rebuild and query benchmark, with baselines in the same run")]
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
    /// generation fast and does not affect what is measured (reads and redb writes).
    #[arg(long, value_enum, default_value = "default")]
    sync: SyncArg,
    /// Concurrent query clients (one HTTP/2 connection each).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured queries per client, for each of the two RPCs.
    #[arg(long, default_value_t = 1000)]
    queries_per_client: u64,
}

#[derive(Subcommand)]
enum ChildCommand {
    /// Internal: the rebuild (c), run in a child process so its peak RSS is its own.
    #[command(hide = true)]
    RebuildChild {
        #[arg(long)]
        nats_url: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        last: u64,
    },
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(ChildCommand::RebuildChild {
        nats_url,
        file,
        last,
    }) = args.child
    {
        return rebuild_child(&nats_url, &file, last).await;
    }
    ensure!(args.events > 0, "--events must be positive");
    let (sync, sync_name) = match args.sync {
        SyncArg::Always => (SyncPolicy::Always, "always"),
        SyncArg::Default => (SyncPolicy::Default, "default (2m)"),
    };
    let mut nats = NatsServer::start_with(Options {
        sync,
        ..Options::default()
    })?;
    println!(
        "bench-views: {} cores, nats-server sync_interval={sync_name}, {} events, seed {}, MAX_BATCH={MAX_BATCH}",
        cores(),
        args.events,
        args.seed
    );

    let client = async_nats::connect(nats.url()).await?;
    let (generated, last) = generate_checked(&client, args.events, args.seed).await?;

    let dir = tempfile::Builder::new()
        .prefix("carewoven-bench-views-")
        .tempdir()?;
    let js = jetstream::new(client.clone());

    // (a) Raw ordered consumer, no-op handler.
    let (read_rate, read_secs) = raw_read(&js, last).await?;
    println!("(a) raw ordered-consumer read: {read_rate:.0} events/s ({read_secs:.2} s)");

    // (b) Raw redb batched inserts of the same value sizes.
    let raw_file = dir.path().join("raw.redb");
    let sizes = generated.sizes.clone();
    let raw_path = raw_file.clone();
    let (insert_rate, insert_secs) =
        tokio::task::spawn_blocking(move || raw_redb(&sizes, &raw_path)).await??;
    let raw_bytes = std::fs::metadata(&raw_file).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(&raw_file).ok();
    println!(
        "(b) raw redb insert, {MAX_BATCH} per transaction: {insert_rate:.0} values/s ({insert_secs:.2} s, file {:.0} MiB)",
        mib(raw_bytes)
    );

    // (c) Our rebuild, in a child process.
    let views_file = dir.path().join("views.redb");
    let child = run_rebuild_child(&nats.url(), &views_file, last).await?;
    let ours = child.events as f64 / child.secs;
    let baseline = read_rate.min(insert_rate);
    let views_bytes = std::fs::metadata(&views_file).map(|m| m.len()).unwrap_or(0);
    let (records, record_bytes, record_max) = record_sizes(&views_file)?;
    println!(
        "(c) our rebuild: {} events in {:.2} s ({:.2} s in apply_batch), {} transactions (avg {:.0} events), file {:.0} MiB, {records} care records (avg {:.0} B, max {record_max} B)",
        child.events,
        child.secs,
        child.apply_secs,
        child.batches,
        child.events as f64 / child.batches.max(1) as f64,
        mib(views_bytes),
        record_bytes as f64 / records.max(1) as f64,
    );
    println!(
        "rebuild: ours={ours:.0}/s baseline={baseline:.0}/s ratio={:.2}",
        ours / baseline
    );
    println!(
        "rebuild-rss: peak={:.0} MiB",
        child.peak_kib as f64 / 1024.0
    );
    println!(
        "  (rebuild child's VmHWM before the rebuild: {:.0} MiB)",
        child.start_kib as f64 / 1024.0
    );

    ensure!(!generated.persons.is_empty(), "no people were generated");
    let readers = readers(&views_file)?;
    // The query phase runs under the shipped `sync_interval: always` (every read's audit
    // record is a write): the same store, restarted with it if it was generated without.
    drop(js);
    drop(client);
    let _always = if matches!(args.sync, SyncArg::Always) {
        None
    } else {
        nats.kill();
        let port = nats.port();
        let config = dir.path().join("nats-always.conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\nmax_payload: 1MB\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n  limits {{ batch {{ max_inflight_per_stream: 1000, max_inflight_total: 4000 }} }}\n}}\n",
                nats.store_dir().display()
            ),
        )?;
        let server = carewoven_testkit::ConfiguredServer::start(&config, &[], port)?;
        println!("query phase: nats-server restarted on the same store with sync_interval=always");
        Some(server)
    };
    query_latency(&nats.url(), &views_file, &readers, &args).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a) raw read, (b) raw redb, (c) our rebuild

/// An ordered consumer over the whole stream with a no-op handler; events per second.
async fn raw_read(js: &jetstream::Context, last: u64) -> Result<(f64, f64)> {
    let started = Instant::now();
    let stream = js.get_stream_no_info(STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects::ALL_EVENTS.to_owned(),
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
        bytes += m.payload.len();
        count += 1;
        if sequence >= last {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    ensure!(count == last, "read {count} events, expected {last}");
    Ok((count as f64 / secs, secs))
}

/// Insert values of the given sizes under random u128 keys, `MAX_BATCH` per committed write
/// transaction, into a fresh file; values per second.
fn raw_redb(sizes: &[u32], path: &Path) -> Result<(f64, f64)> {
    const TABLE: TableDefinition<u128, &[u8]> = TableDefinition::new("bench");
    let db = redb::Database::create(path)?;
    let max = sizes.iter().max().copied().unwrap_or(0) as usize;
    let value: Vec<u8> = (0..max).map(|i| (i * 31 % 251) as u8).collect();
    let mut keys = Rng::new(0x5EED);
    let started = Instant::now();
    for chunk in sizes.chunks(MAX_BATCH) {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for &size in chunk {
                let key = (u128::from(keys.next()) << 64) | u128::from(keys.next());
                table.insert(key, &value[..size as usize])?;
            }
        }
        txn.commit()?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((sizes.len() as f64 / secs, secs))
}

struct ChildResult {
    events: u64,
    secs: f64,
    apply_secs: f64,
    batches: u64,
    peak_kib: u64,
    start_kib: u64,
}

/// Run (c) in a child process (this binary, hidden subcommand) and read its result line.
async fn run_rebuild_child(nats_url: &str, file: &Path, last: u64) -> Result<ChildResult> {
    let line = carewoven_bench::child::run(
        &[
            "rebuild-child".as_ref(),
            "--nats-url".as_ref(),
            nats_url.as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
            "--last".as_ref(),
            last.to_string().as_ref(),
        ],
        "REBUILD",
    )
    .await?;
    Ok(ChildResult {
        events: line.get("events")?,
        secs: line.get("secs")?,
        apply_secs: line.get("apply_secs")?,
        batches: line.get("batches")?,
        peak_kib: line.get("vmhwm_kib")?,
        start_kib: line.get("start_vmhwm_kib")?,
    })
}

/// The child: read the whole log and project it into a fresh file exactly as the service's
/// projector does (ordered consumer, `ready_chunks(MAX_BATCH)`, one `apply_batch` per chunk).
async fn rebuild_child(nats_url: &str, file: &Path, last: u64) -> Result<()> {
    let start_kib = carewoven_bench::child::vm_hwm_kib()?;
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::new(client);
    let db = tokio::task::block_in_place(|| carewoven_views::store::open(file))?;
    let started = Instant::now();
    let mut chunks = carewoven_views::projector::ordered_messages(&js, STREAM, 1)
        .await?
        .ready_chunks(MAX_BATCH);
    let mut applied = 0u64;
    let mut events = 0u64;
    let mut batches = 0u64;
    let mut apply_secs = 0.0f64;
    while applied < last {
        let chunk = chunks
            .next()
            .await
            .context("the event stream ended during the rebuild")?;
        let mut batch = Vec::with_capacity(chunk.len());
        for m in chunk {
            let m = m.map_err(|e| anyhow!("reading the event stream: {e}"))?;
            let info = m.info().map_err(|e| anyhow!("{e}"))?;
            batch.push(LogMessage {
                sequence: info.stream_sequence,
                payload: m.payload.clone(),
            });
        }
        events += batch.len() as u64;
        batches += 1;
        let t = Instant::now();
        let (position, _) =
            tokio::task::block_in_place(|| apply_batch(&db, &batch, OnUndecodable::Stop))?;
        apply_secs += t.elapsed().as_secs_f64();
        applied = position;
    }
    let secs = started.elapsed().as_secs_f64();
    let position = carewoven_views::store::position(&db)?;
    if position != last {
        bail!("rebuilt to position {position}, expected {last}");
    }
    drop(db);
    println!(
        "REBUILD events={events} secs={secs} apply_secs={apply_secs} batches={batches} vmhwm_kib={} start_vmhwm_kib={start_kib}",
        carewoven_bench::child::vm_hwm_kib()?
    );
    Ok(())
}

/// Care records in a views file: count, total and largest stored size.
fn record_sizes(file: &Path) -> Result<(u64, u64, u64)> {
    let db = carewoven_views::store::open(file)?;
    let read = db.begin_read()?;
    let table = read.open_table(carewoven_views::tables::RECORDS)?;
    let (mut count, mut total, mut max) = (0u64, 0u64, 0u64);
    for row in table.iter()? {
        let (_, v) = row?;
        let len = v.value().len() as u64;
        count += 1;
        total += len;
        max = max.max(len);
    }
    Ok((count, total, max))
}

// ---------------------------------------------------------------------------------------------
// Query latency

/// Every organisation the generator puts on care teams.
const CARE_TEAM_ORGS: [&str; 7] = [
    "GP-A81001",
    "CNURSE-1",
    "COUNCIL1",
    "THERAPY-2",
    "MH-TEAM-1",
    "AGEUK-1",
    "RXH01",
];

/// (person, organisation) pairs where the organisation may read the person's record: a
/// current care-team member (once registered with an agreement), with no objection to it on
/// record (any unwithdrawn refusal naming it rules the person out, whatever its dates).
fn readers(file: &Path) -> Result<Vec<(String, String)>> {
    use prost::Message as _;
    let db = carewoven_views::store::open(file)?;
    let read = db.begin_read()?;
    let table = read.open_table(carewoven_views::tables::RECORDS)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, v) = row?;
        let record = v1::CareRecord::decode(v.value())?;
        let Some(org) = record
            .care_team
            .as_ref()
            .and_then(|t| t.members.first())
            .and_then(|m| m.member.as_ref())
            .map(|m| m.organisation.clone())
        else {
            continue;
        };
        let objects = record.consents.iter().any(|c| {
            !c.withdrawn
                && c.terms.as_ref().is_some_and(|t| {
                    t.decision == v1::ConsentDecision::Deny as i32 && t.partners.contains(&org)
                })
        });
        if !objects && CARE_TEAM_ORGS.contains(&org.as_str()) {
            out.push((record.person_id, org));
        }
    }
    ensure!(!out.is_empty(), "nobody has a care team to read as");
    Ok(out)
}

/// Register the care-team organisations, each with a direct-care agreement, through a
/// command service run here for the purpose; returns the log position of the last one.
async fn register_readers(nats_url: &str) -> Result<u64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(carewoven_commands::run(
        listener,
        carewoven_commands::Config::for_nats(nats_url),
        stop.clone().cancelled_owned(),
    ));
    let url = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let channel = loop {
        if let Ok(channel) = Channel::from_shared(url.clone())?.connect().await
            && let Ok(r) = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: "carewoven.v1.CommandService".into(),
                })
                .await
            && r.get_ref().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            break channel;
        }
        ensure!(!server.is_finished(), "the command service stopped");
        ensure!(
            Instant::now() < deadline,
            "the command service did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut client = CommandServiceClient::new(channel);
    for org in CARE_TEAM_ORGS {
        register_partner(&mut client, org, &[], &all_data_classes()).await?;
    }
    let last = async_nats::connect(nats_url)
        .await
        .map(jetstream::new)?
        .get_stream(STREAM)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .context("the command service did not stop")???;
    Ok(last)
}

/// `clients` tasks, each issuing `per_client` calls of `op(client, random)` one after another;
/// latencies in microseconds and calls per second.
async fn concurrent<F, Fut>(clients: usize, per_client: u64, op: F) -> Result<(Histogram<u64>, f64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(0xC11E_0000 + c as u64);
                let mut h = Histogram::<u64>::new(3)?;
                for _ in 0..per_client {
                    let t = Instant::now();
                    op(c, rng.next()).await?;
                    h.record(t.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok(h)
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    let rate = (clients as u64 * per_client) as f64 / started.elapsed().as_secs_f64();
    Ok((all, rate))
}

async fn query_latency(
    nats_url: &str,
    file: &Path,
    readers: &[(String, String)],
    args: &Args,
) -> Result<()> {
    let registered = register_readers(nats_url).await?;
    println!(
        "query set: {} people, each read as a care-team organisation that may read them",
        readers.len()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(carewoven_views::run(
        listener,
        carewoven_views::Config::new(nats_url, file.to_path_buf()),
        stop.clone().cancelled_owned(),
    ));
    let url = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(url.clone())?.connect().await
            && let Ok(r) = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: "carewoven.v1.QueryService".into(),
                })
                .await
            && r.get_ref().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            break;
        }
        ensure!(!server.is_finished(), "the views service stopped");
        ensure!(Instant::now() < deadline, "the views service did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One bearer token per organisation, as a client would reuse it.
    let mut tokens: HashMap<String, MetadataValue<Ascii>> = HashMap::new();
    for org in CARE_TEAM_ORGS {
        tokens.insert(org.to_owned(), format!("Bearer {}", token(org)).parse()?);
    }
    let tokens = Arc::new(tokens);
    let authorised = {
        let tokens = tokens.clone();
        move |org: &str, person_id: String, min_log_position: u64| -> Result<_> {
            let mut request = tonic::Request::new(v1::GetCareRecordRequest {
                person_id,
                min_log_position,
            });
            let value = tokens.get(org).context("a token for every reader")?.clone();
            request.metadata_mut().insert("authorization", value);
            Ok(request)
        }
    };
    // Wait until the views and the access decisions have both applied the registry (the
    // access index folds the whole log when the service starts).
    {
        let (person, org) = &readers[0];
        let mut first = authorised(org, person.clone(), registered)?;
        first.set_timeout(Duration::from_secs(600));
        QueryServiceClient::new(Channel::from_shared(url.clone())?.connect().await?)
            .get_care_record(first)
            .await
            .context("the first read (waiting for the access index to catch up)")?;
    }

    let mut channels = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        channels.push(Channel::from_shared(url.clone())?.connect().await?);
    }
    let health: Arc<Vec<HealthClient<Channel>>> =
        Arc::new(channels.iter().cloned().map(HealthClient::new).collect());
    let queries: Arc<Vec<QueryServiceClient<Channel>>> =
        Arc::new(channels.into_iter().map(QueryServiceClient::new).collect());
    let readers: Arc<Vec<(String, String)>> = Arc::new(readers.to_vec());

    let noop = {
        let health = health.clone();
        move |c: usize, _r: u64| {
            let mut client = health[c].clone();
            async move {
                client
                    .check(HealthCheckRequest {
                        service: "carewoven.v1.QueryService".into(),
                    })
                    .await?;
                Ok(())
            }
        }
    };
    let record = {
        let queries = queries.clone();
        let readers = readers.clone();
        move |c: usize, r: u64| {
            let mut client = queries[c].clone();
            let (person_id, org) = &readers[(r % readers.len() as u64) as usize];
            let request = authorised(org, person_id.clone(), 0);
            async move {
                let reply = client.get_care_record(request?).await?;
                std::hint::black_box(reply);
                Ok(())
            }
        }
    };
    let noop = Arc::new(noop);
    let record = Arc::new(record);
    let warm = (args.queries_per_client / 10).max(10);
    {
        let (n, r) = (noop.clone(), record.clone());
        concurrent(args.clients, warm, move |c, x| n(c, x)).await?;
        concurrent(args.clients, warm, move |c, x| r(c, x)).await?;
    }
    let n = noop.clone();
    let (base, base_rate) =
        concurrent(args.clients, args.queries_per_client, move |c, x| n(c, x)).await?;
    let r = record.clone();
    let (ours, our_rate) =
        concurrent(args.clients, args.queries_per_client, move |c, x| r(c, x)).await?;
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    println!(
        "query (µs, {} clients, {} calls each): health-check baseline p50={} p99={} ({base_rate:.0}/s); GetCareRecord p50={} p99={} ({our_rate:.0}/s)",
        args.clients,
        args.queries_per_client,
        q(&base, 0.5),
        q(&base, 0.99),
        q(&ours, 0.5),
        q(&ours, 0.99),
    );
    println!(
        "query: p99_ratio={:.2}",
        q(&ours, 0.99) as f64 / q(&base, 0.99).max(1) as f64
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .context("the views service did not stop")???;
    Ok(())
}
