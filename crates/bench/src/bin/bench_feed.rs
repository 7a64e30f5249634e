//! `just bench-feed`: how quickly partners receive their feeds, and how fast the gateway
//! works through a backlog, each against a raw baseline measured in the same run on the same
//! machine.
//!
//! 1. Latency. A nats-server (`sync_interval: always` by default, as shipped), the command
//!    service and the gateway, both in this process. 20 partner organisations are registered
//!    (services, a direct-care agreement covering every data class) and a population of
//!    synthetic people is built with signed commands, each person related to 1-3 partners
//!    (admitted at a partner's site; referred from one partner to another's service). Every
//!    partner subscribes to `cw.feed.<ORG>.>` with a stock async-nats core subscription (and
//!    one partner also through `FeedService.Subscribe`). Then a fixed rate of commands that
//!    produce deliveries (feedback and contact corrections by a related partner) for a fixed
//!    time; for each delivery, the time from the command's reply to the partner receiving the
//!    `FeedItem` carrying that event (matched on `log_position`, checked on `event_id`).
//!    Baseline: core NATS publishes of the same size, at the same rate and fan-out, to 20 plain
//!    subscribers, publish call to receipt. Prints `feed: p50_ratio=<r> p99_ratio=<r>`.
//! 2. Throughput. A fresh nats-server, the same registry (with agreements reaching back to the
//!    generated log's dates), and the deterministic synthetic log of the other benchmarks
//!    (whose organisations are these 20 partners) written straight into JetStream. (a) a raw
//!    ordered consumer reading every event (no-op handler; run before and after (b), the
//!    faster counts); (b) a fresh gateway from the start of the log until
//!    `Progress::delivered_through` reaches its end. Prints `feed-throughput: ratio=<r>`
//!    (gateway events/s over raw events/s) and the CPU the gateway and nats-server used.
//!    Then diagnostics on the same server, for a sample of as many writes as the gateway made
//!    (a feed item and an audit record per delivery, average size): (c) raw JetStream
//!    publishes alternating between two streams with the gateway's window in flight, the
//!    ceiling the gateway's writes put on it; (d) the same as atomic batches, which a
//!    `sync_interval: always` server stores with far fewer fsyncs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use async_nats::jetstream::{self, consumer, context::PublishAckFuture};
use bytes::Bytes;
use carewoven_bench::generator::{Rng, generate};
use carewoven_domain::values::NhsNumber;
use carewoven_gateway::evaluator::{FEED_STREAM, Progress, feed_filter, feed_head};
use carewoven_proto::v1::{
    self, command_service_client::CommandServiceClient, feed_service_client::FeedServiceClient,
};
use carewoven_testkit::partners::{
    all_data_classes, as_org, record_agreement, register_partner, signed,
};
use carewoven_testkit::{NatsServer, Options, SyncPolicy};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

const STREAM: &str = "CAREWOVEN";
/// The gateway's window of unacknowledged publishes (`evaluator::WINDOW`), for (c).
const GATEWAY_WINDOW: usize = 2048;
/// Messages per atomic batch in (d) (the server's limit), and batches in flight.
const BATCH: u64 = 1000;
const BATCHES_IN_FLIGHT: usize = 4;
/// Connecting and subscribing may take this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The 20 partners and their services (the first four are acute hospitals whose sites admit).
/// They are the organisations the synthetic log generator writes about, so its backlog relates
/// people to them.
const PARTNERS: [(&str, &[&str]); 20] = [
    ("RXH01", &["RXH01"]),
    ("RXH02", &["RXH02"]),
    ("RYJ01", &["RYJ01"]),
    ("RAL01", &["RAL01"]),
    ("COUNCIL1", &["SPA01", "ASC-D2A"]),
    ("CNURSE-1", &["CNURSE-1"]),
    ("THERAPY-2", &["THERAPY-2"]),
    ("MH-TEAM-1", &["MH-TEAM-1"]),
    ("AGEUK-1", &["AGEUK-1"]),
    ("GP-A81001", &["GP-A81001"]),
    ("GP-A81002", &["GP-A81002"]),
    ("GP-B82010", &["GP-B82010"]),
    ("GP-C83044", &["GP-C83044"]),
    ("GP-D84100", &["GP-D84100"]),
    ("REABLE-1", &["REABLE-1"]),
    ("HOMECARE-1", &["HOMECARE-1"]),
    ("HOMECARE-2", &["HOMECARE-2"]),
    ("COMMHEALTH", &["REHAB-BEDS-1", "COMMHOSP-1"]),
    ("CAREHOME-1", &["CAREHOME-1"]),
    ("CAREHOME-2", &["CAREHOME-2"]),
];
const HOSPITALS: u64 = 4;

#[derive(Clone, Copy, ValueEnum)]
enum SyncArg {
    Always,
    Default,
}

#[derive(Parser)]
#[command(about = "Partner-feed latency and gateway throughput, with baselines in the same run")]
struct Args {
    /// nats-server sync policy: `always` (shipped) fsyncs before every ack.
    #[arg(long, value_enum, default_value = "always")]
    sync: SyncArg,
    /// Synthetic people in the latency phase's population.
    #[arg(long, default_value_t = 1000)]
    people: u32,
    /// Commands per second in the latency phase (and baseline publishes per second).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds of steady command load in the latency phase.
    #[arg(long, default_value_t = 20.0)]
    secs: f64,
    /// Seconds of the raw baseline load (default: the same as --secs).
    #[arg(long)]
    baseline_secs: Option<f64>,
    /// Commands in flight while building the population.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events in the throughput phase's backlog.
    #[arg(long, default_value_t = 50_000)]
    backlog: u64,
    /// Seed of the population, the load and the synthetic log.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Seconds to wait for stragglers and for the gateway to work through the backlog.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Skip the latency phase.
    #[arg(long)]
    no_latency: bool,
    /// Latency phases run (each on a fresh server); the p99 ratio is their median.
    #[arg(long, default_value_t = 3)]
    latency_runs: usize,
    /// Skip the throughput phase.
    #[arg(long)]
    no_throughput: bool,
    /// Skip the gRPC FeedService.Subscribe of one partner during the latency phase.
    #[arg(long)]
    no_grpc: bool,
    /// Skip the diagnostics (c) and (d) after the throughput phase.
    #[arg(long)]
    no_diagnostic: bool,
    /// Publishes in each diagnostic (at most as many as the gateway wrote).
    #[arg(long, default_value_t = 30_000)]
    diagnostic_writes: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.rate > 0.0 && args.secs > 0.0,
        "--rate and --secs must be positive"
    );
    ensure!(
        args.people > 0 && args.people <= 100_000,
        "--people must be 1..=100000"
    );
    ensure!(args.backlog > 0, "--backlog must be positive");
    let (sync, sync_name) = match args.sync {
        SyncArg::Always => (SyncPolicy::Always, "always"),
        SyncArg::Default => (SyncPolicy::Default, "default (2m)"),
    };
    println!("hardware: {}", hardware());
    println!(
        "bench-feed: nats-server sync_interval={sync_name}, {} partners, {} people, {} commands/s for {} s, backlog {} events, seed {}",
        PARTNERS.len(),
        args.people,
        args.rate,
        args.secs,
        args.backlog,
        args.seed
    );
    if !args.no_latency {
        // The tail is noisy on shared machines: the figure is the median of several runs.
        let mut p99s = Vec::new();
        for run in 1..=args.latency_runs.max(1) {
            eprintln!("latency: run {run} of {}", args.latency_runs.max(1));
            p99s.push(latency_phase(&args, sync).await?);
        }
        let each: Vec<String> = p99s.iter().map(|r| format!("{r:.2}")).collect();
        p99s.sort_by(f64::total_cmp);
        println!(
            "feed: p99_ratio={:.2}  (median of {} runs: {})",
            p99s[p99s.len() / 2],
            p99s.len(),
            each.join(", ")
        );
    }
    if !args.no_throughput {
        throughput_phase(&args, sync).await?;
    }
    Ok(())
}

fn hardware() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB RAM")
}

fn bar(len: u64, template: &str) -> Result<ProgressBar> {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).context("progress bar template")?);
    Ok(bar)
}

async fn connect(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?.connect().await?)
}

fn ctx(org: &str) -> Option<v1::CommandContext> {
    Some(v1::CommandContext {
        command_id: Uuid::now_v7().to_string(),
        organisation: org.to_owned(),
        user: "tester".to_owned(),
        ..Default::default()
    })
}

/// Register the 20 partners (services, direct-care agreement for every data class). With
/// `reach_back`, also an agreement in force from that day (the synthetic log's events were
/// recorded in 2025, and an agreement does not reach back before its start).
async fn register_partners(
    client: &mut CommandServiceClient<Channel>,
    reach_back: Option<chrono::NaiveDate>,
) -> Result<()> {
    let classes = all_data_classes();
    for (code, services) in PARTNERS {
        register_partner(client, code, services, &classes)
            .await
            .with_context(|| format!("registering {code}"))?;
        if let Some(from) = reach_back {
            let until =
                carewoven_domain::values::uk_date(chrono::Utc::now()) + chrono::Days::new(365);
            record_agreement(
                client,
                code,
                &format!("{code}-DSA-HIST"),
                &classes,
                from,
                until,
            )
            .await
            .with_context(|| format!("recording {code}'s agreement"))?;
        }
    }
    Ok(())
}

/// The command service in this process on loopback TCP, and a client of it.
async fn start_commands(
    url: &str,
    stop: &CancellationToken,
) -> Result<(JoinHandle<Result<()>>, CommandServiceClient<Channel>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = tokio::spawn(carewoven_commands::run(
        listener,
        carewoven_commands::Config::for_nats(url),
        stop.clone().cancelled_owned(),
    ));
    let client = CommandServiceClient::new(connect(&format!("http://{addr}")).await?);
    Ok((service, client))
}

/// The gateway in this process; its address and progress.
async fn start_gateway(
    url: &str,
    stop: &CancellationToken,
) -> Result<(
    JoinHandle<Result<()>>,
    std::net::SocketAddr,
    watch::Receiver<Progress>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (progress_tx, progress) = watch::channel(Progress::default());
    let gateway = tokio::spawn(carewoven_gateway::server::serve(
        listener,
        carewoven_gateway::Config::for_nats(url),
        stop.clone().cancelled_owned(),
        progress_tx,
    ));
    Ok((gateway, addr, progress))
}

/// Wait until the gateway has settled every delivery up to `position`.
async fn wait_delivered(
    progress: &mut watch::Receiver<Progress>,
    position: u64,
    timeout: Duration,
    bar: Option<&ProgressBar>,
) -> Result<Progress> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let p = *progress.borrow_and_update();
        if let Some(bar) = bar {
            bar.set_position(p.delivered_through);
        }
        if p.delivered_through >= position {
            return Ok(p);
        }
        match tokio::time::timeout_at(deadline, progress.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!(
                "the gateway stopped at log position {}",
                p.delivered_through
            ),
            Err(_) => bail!(
                "the gateway had settled log position {} of {position} after {timeout:?}",
                p.delivered_through
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The population

/// A synthetic person and the partners (indexes into `PARTNERS`) related to them.
#[derive(Clone)]
struct Person {
    id: String,
    related: Vec<usize>,
}

/// How a person comes to be related to 1-3 partners.
struct Plan {
    number: u32,
    registrar: usize,
    referral: Option<(usize, usize)>,
    admission: Option<usize>,
}

fn plans(count: u32, rng: &mut Rng) -> Vec<Plan> {
    (0..count)
        .map(|number| {
            let hospital = rng.below(HOSPITALS) as usize;
            let other_hospital =
                ((hospital as u64 + 1 + rng.below(HOSPITALS - 1)) % HOSPITALS) as usize;
            let service_owner = (HOSPITALS + rng.below(PARTNERS.len() as u64 - HOSPITALS)) as usize;
            let (referral, admission) = match rng.range(1, 3) {
                1 => (None, Some(hospital)),
                2 => (Some((hospital, service_owner)), None),
                _ => (Some((hospital, service_owner)), Some(other_hospital)),
            };
            Plan {
                number,
                registrar: hospital,
                referral,
                admission,
            }
        })
        .collect()
}

/// Register the person and relate them to the plan's partners; the person and the log
/// position of the last event written.
async fn set_up(mut client: CommandServiceClient<Channel>, plan: Plan) -> Result<(Person, u64)> {
    let nhs = NhsNumber::synthetic(plan.number);
    let registrar = PARTNERS[plan.registrar].0;
    let reply = client
        .register_person(signed(v1::RegisterPersonRequest {
            context: ctx(registrar),
            profile: Some(v1::Profile {
                nhs_number: nhs.as_str().to_owned(),
                given_name: "Bench".into(),
                family_name: "Example".into(),
                date_of_birth: "1950-01-01".into(),
                ..Default::default()
            }),
        }))
        .await
        .context("registering a person")?
        .into_inner();
    let person_id = reply.person_id;
    let mut last = reply.log_position;
    let mut related = Vec::new();
    if let Some((from, to)) = plan.referral {
        let from_code = PARTNERS[from].0;
        let reply = client
            .make_referral(signed(v1::MakeReferralRequest {
                context: ctx(from_code),
                person_id: person_id.clone(),
                referral: Some(v1::Referral {
                    from_organisation: from_code.to_owned(),
                    to_service: PARTNERS[to].1[0].to_owned(),
                    priority: v1::Priority::Urgent as i32,
                    reason: "Synthetic benchmark referral for support at home".into(),
                    replaces: String::new(),
                }),
            }))
            .await
            .context("making a referral")?
            .into_inner();
        last = last.max(reply.log_position);
        // The referrer gains no ground by referring (only the receiving service's owner
        // does): load commands by it would be refused, and it is sent nothing.
        related.push(to);
    }
    if let Some(site) = plan.admission {
        let code = PARTNERS[site].0;
        let admitted = chrono::Utc::now() - chrono::Duration::hours(2);
        let reply = client
            .admit_person(signed(v1::AdmitPersonRequest {
                context: ctx(code),
                person_id: person_id.clone(),
                site: code.to_owned(),
                ward: "Ward 7".into(),
                admitted_at: Some(prost_types::Timestamp {
                    seconds: admitted.timestamp(),
                    nanos: 0,
                }),
            }))
            .await
            .context("admitting a person")?
            .into_inner();
        last = last.max(reply.log_position);
        related.push(site);
    }
    Ok((
        Person {
            id: person_id,
            related,
        },
        last,
    ))
}

async fn populate(
    client: &CommandServiceClient<Channel>,
    args: &Args,
    rng: &mut Rng,
) -> Result<(Vec<Person>, u64)> {
    let plans = plans(args.people, rng);
    let progress = bar(
        plans.len() as u64,
        "population {bar:40} {pos}/{len} people  {per_sec}  ETA {eta}",
    )?;
    let started = Instant::now();
    let mut results = futures::stream::iter(plans)
        .map(|plan| set_up(client.clone(), plan))
        .buffer_unordered(args.concurrency.max(1));
    let mut people = Vec::with_capacity(args.people as usize);
    let mut last = 0;
    while let Some(result) = results.next().await {
        let (person, position) = result?;
        last = last.max(position);
        people.push(person);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let counts = (1..=3)
        .map(|k| people.iter().filter(|p| p.related.len() == k).count())
        .collect::<Vec<_>>();
    println!(
        "population: {} people (related to 1/2/3 partners: {}/{}/{}) in {:.1} s, log at {last}",
        people.len(),
        counts[0],
        counts[1],
        counts[2],
        started.elapsed().as_secs_f64()
    );
    Ok((people, last))
}

// ---------------------------------------------------------------------------------------------
// Latency

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Core,
    Grpc,
}

struct Arrival {
    via: Via,
    event_id: String,
    at: Instant,
    size: usize,
}

enum Msg {
    Reply {
        position: u64,
        event_id: String,
        sent_at: Instant,
        reply_at: Instant,
        expected: u32,
        grpc_expected: bool,
    },
    Delivery {
        position: u64,
        arrival: Arrival,
    },
    Finish(oneshot::Sender<Collected>),
}

struct Sent {
    event_id: String,
    sent_at: Instant,
    reply_at: Instant,
    expected: u32,
    got: u32,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    expected: u64,
    got: u64,
    grpc_expected: u64,
    grpc_got: u64,
}

struct Collected {
    reply_to_core: Histogram<u64>,
    send_to_core: Histogram<u64>,
    reply_to_grpc: Histogram<u64>,
    before_reply: u64,
    counts: Counts,
    extra: u64,
    wrong_event: u64,
    unmatched: u64,
    bytes: u64,
}

struct Collector {
    sent: HashMap<u64, Sent>,
    early: HashMap<u64, Vec<Arrival>>,
    out: Collected,
}

impl Collector {
    fn new() -> Result<Self> {
        Ok(Collector {
            sent: HashMap::new(),
            early: HashMap::new(),
            out: Collected {
                reply_to_core: Histogram::new(3)?,
                send_to_core: Histogram::new(3)?,
                reply_to_grpc: Histogram::new(3)?,
                before_reply: 0,
                counts: Counts::default(),
                extra: 0,
                wrong_event: 0,
                unmatched: 0,
                bytes: 0,
            },
        })
    }

    fn arrive(&mut self, position: u64, a: Arrival) -> Result<()> {
        let Some(sent) = self.sent.get_mut(&position) else {
            self.early.entry(position).or_default().push(a);
            return Ok(());
        };
        if a.event_id != sent.event_id {
            self.out.wrong_event += 1;
            return Ok(());
        }
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let latency = ns(a.at.saturating_duration_since(sent.reply_at));
        match a.via {
            Via::Core => {
                sent.got += 1;
                if sent.got > sent.expected {
                    self.out.extra += 1;
                    return Ok(());
                }
                self.out.counts.got += 1;
                self.out.bytes += a.size as u64;
                if a.at < sent.reply_at {
                    self.out.before_reply += 1;
                }
                self.out.reply_to_core.record(latency)?;
                self.out
                    .send_to_core
                    .record(ns(a.at.saturating_duration_since(sent.sent_at)))?;
            }
            Via::Grpc => {
                self.out.counts.grpc_got += 1;
                self.out.reply_to_grpc.record(latency)?;
            }
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        counts: watch::Sender<Counts>,
    ) -> Result<()> {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Reply {
                    position,
                    event_id,
                    sent_at,
                    reply_at,
                    expected,
                    grpc_expected,
                } => {
                    self.out.counts.expected += u64::from(expected);
                    self.out.counts.grpc_expected += u64::from(grpc_expected);
                    self.sent.insert(
                        position,
                        Sent {
                            event_id,
                            sent_at,
                            reply_at,
                            expected,
                            got: 0,
                        },
                    );
                    for a in self.early.remove(&position).unwrap_or_default() {
                        self.arrive(position, a)?;
                    }
                }
                Msg::Delivery { position, arrival } => self.arrive(position, arrival)?,
                Msg::Finish(reply) => {
                    self.out.unmatched = self.early.values().map(|v| v.len() as u64).sum();
                    let _ = reply.send(self.out);
                    return Ok(());
                }
            }
            counts.send_replace(self.out.counts);
        }
        Ok(())
    }
}

/// Each partner's core subscription to its feed, on its own connection.
async fn subscribe_partners(url: &str, tx: &mpsc::UnboundedSender<Msg>) -> Result<()> {
    for (code, _) in PARTNERS {
        let client = async_nats::ConnectOptions::new()
            .name(format!("bench-partner-{code}"))
            .connect(url)
            .await?;
        let mut subscription = client.subscribe(feed_filter(code)).await?;
        client.flush().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = subscription.next().await {
                let at = Instant::now();
                // One message carries the partner's consecutive items (deploy/README.md).
                let Ok(batch) = carewoven_gateway::evaluator::decode_batch(
                    message.headers.as_ref(),
                    message.payload.as_ref(),
                ) else {
                    continue;
                };
                for item in batch.items {
                    let event_id = item.identifiers.map(|i| i.event_id).unwrap_or_default();
                    let arrival = Arrival {
                        via: Via::Core,
                        event_id,
                        at,
                        size: message.payload.len(),
                    };
                    if tx
                        .send(Msg::Delivery {
                            position: item.log_position,
                            arrival,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    Ok(())
}

/// `FeedService.Subscribe` for `org` from its first item; reports items after `after` and the
/// last log position seen.
async fn subscribe_grpc(
    addr: std::net::SocketAddr,
    org: &'static str,
    after: u64,
    tx: mpsc::UnboundedSender<Msg>,
) -> Result<(JoinHandle<Result<u64>>, watch::Receiver<u64>)> {
    let mut client = FeedServiceClient::new(connect(&format!("http://{addr}")).await?);
    let mut items = client
        .subscribe(as_org(org, v1::SubscribeRequest::default()))
        .await
        .context("FeedService.Subscribe")?
        .into_inner();
    let (seen_tx, seen) = watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut received = 0u64;
        while let Some(item) = items.message().await.context("the gRPC feed")? {
            let at = Instant::now();
            received += 1;
            seen_tx.send_replace(item.log_position);
            if item.log_position <= after {
                continue;
            }
            let event_id = item.identifiers.map(|i| i.event_id).unwrap_or_default();
            let arrival = Arrival {
                via: Via::Grpc,
                event_id,
                at,
                size: 0,
            };
            if tx
                .send(Msg::Delivery {
                    position: item.log_position,
                    arrival,
                })
                .is_err()
            {
                break;
            }
        }
        Ok(received)
    });
    Ok((task, seen))
}

/// One load command: feedback (3 in 4) or a meeting note, by a partner related to the
/// person; one event, delivered to each of the person's partners.
async fn load_command(
    mut client: CommandServiceClient<Channel>,
    person: Person,
    by: usize,
    feedback: bool,
    n: u64,
    tx: mpsc::UnboundedSender<Msg>,
) -> Result<()> {
    let org = PARTNERS[by].0;
    let sent_at = Instant::now();
    let reply = if feedback {
        client
            .record_feedback(signed(v1::RecordFeedbackRequest {
                context: ctx(org),
                person_id: person.id.clone(),
                feedback: Some(v1::FeedbackRecord {
                    source: v1::FeedbackSource::Person as i32,
                    anonymous: false,
                    text: "Staff were kind and explained everything".into(),
                    rating: 4,
                }),
            }))
            .await
    } else {
        // A meeting note rather than a correction: corrections name the record version they
        // were based on, which concurrent load cannot know without reading first.
        client
            .record_meeting(signed(v1::RecordMeetingRequest {
                context: ctx(org),
                person_id: person.id.clone(),
                meeting: Some(v1::MeetingRecord {
                    held_at: Some(carewoven_proto::convert::timestamp(chrono::Utc::now())),
                    attendees: vec![org.into()],
                    decisions: vec![format!("Review number {n}")],
                    actions: Vec::new(),
                }),
            }))
            .await
    }
    .context("a load command")?
    .into_inner();
    let reply_at = Instant::now();
    ensure!(
        reply.event_ids.len() == 1,
        "a load command wrote {} events",
        reply.event_ids.len()
    );
    let event_id = reply.event_ids.into_iter().next().unwrap_or_default();
    let _ = tx.send(Msg::Reply {
        position: reply.log_position,
        event_id,
        sent_at,
        reply_at,
        expected: person.related.len() as u32,
        grpc_expected: person.related.contains(&0),
    });
    Ok(())
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// One latency phase; its p99 ratio.
async fn latency_phase(args: &Args, sync: SyncPolicy) -> Result<f64> {
    let nats = NatsServer::start_with(Options {
        sync,
        ..Options::default()
    })?;
    let url = nats.url();
    let stop = CancellationToken::new();
    let timeout = Duration::from_secs(args.timeout_secs);
    let (commands, mut client) = start_commands(&url, &stop).await?;
    register_partners(&mut client, None).await?;
    let (gateway, gateway_addr, mut progress) = start_gateway(&url, &stop).await?;
    let mut rng = Rng::new(args.seed);
    let (people, setup_last) = populate(&client, args, &mut rng).await?;
    wait_delivered(&mut progress, setup_last, timeout, None).await?;
    let settled = *progress.borrow();
    println!(
        "gateway settled the population: {} events evaluated, {} deliveries",
        settled.evaluated, settled.deliveries
    );

    // The partners' subscriptions and the collector.
    let (tx, rx) = mpsc::unbounded_channel();
    let (counts_tx, mut counts) = watch::channel(Counts::default());
    let collector = tokio::spawn(Collector::new()?.run(rx, counts_tx));
    tokio::time::timeout(SETUP_TIMEOUT, subscribe_partners(&url, &tx))
        .await
        .map_err(|_| anyhow!("subscribing the partners took over {SETUP_TIMEOUT:?}"))??;
    eprintln!("latency: {} partners subscribed", PARTNERS.len());
    let grpc_org = PARTNERS[0].0;
    let grpc = if args.no_grpc {
        None
    } else {
        let (task, mut seen) = tokio::time::timeout(
            SETUP_TIMEOUT,
            subscribe_grpc(gateway_addr, grpc_org, setup_last, tx.clone()),
        )
        .await
        .map_err(|_| anyhow!("FeedService.Subscribe took over {SETUP_TIMEOUT:?}"))??;
        // Caught up with what the population already delivered to it, so it is live.
        let nc = async_nats::connect(&url).await?;
        let feed = jetstream::new(nc).get_stream_no_info(FEED_STREAM).await?;
        let head = feed_head(&feed, grpc_org).await?;
        tokio::time::timeout(timeout, seen.wait_for(|p| *p >= head.source))
            .await
            .map_err(|_| anyhow!("the gRPC subscription did not catch up"))??;
        eprintln!(
            "latency: gRPC subscription of {grpc_org} caught up at {}",
            head.source
        );
        Some(task)
    };

    // Steady load at a fixed rate.
    let total = (args.rate * args.secs).round() as u64;
    let progress_bar = bar(total, "feed load  {bar:40} {pos}/{len} commands  {per_sec}")?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut tasks = Vec::with_capacity(total as usize);
    let load_started = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        let person = people[rng.below(people.len() as u64) as usize].clone();
        let by = person.related[rng.below(person.related.len() as u64) as usize];
        let feedback = rng.below(4) != 0;
        tasks.push(tokio::spawn(load_command(
            client.clone(),
            person,
            by,
            feedback,
            n,
            tx.clone(),
        )));
        progress_bar.inc(1);
    }
    for task in tasks {
        tokio::time::timeout(timeout, task)
            .await
            .map_err(|_| anyhow!("a load command had no reply after {timeout:?}"))???;
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    progress_bar.finish_and_clear();
    eprintln!("latency: load done in {load_secs:.1} s; waiting for every delivery");
    // Every expected delivery received (or the deadline).
    let drained = tokio::time::timeout(
        timeout,
        counts.wait_for(|c| c.got >= c.expected && (args.no_grpc || c.grpc_got >= c.grpc_expected)),
    )
    .await
    .is_ok();
    if !drained {
        let c = *counts.borrow();
        println!(
            "WARNING: not every expected delivery arrived within {timeout:?}: core {} of {}, gRPC {} of {}",
            c.got, c.expected, c.grpc_got, c.grpc_expected
        );
    }
    let (finish_tx, finish_rx) = oneshot::channel();
    tx.send(Msg::Finish(finish_tx))
        .map_err(|_| anyhow!("the collector stopped"))?;
    let feed = finish_rx.await.context("the collector's result")?;
    collector.await??;
    if let Some(task) = &grpc {
        task.abort();
    }
    let after = *progress.borrow();

    // Baseline: core publish to plain subscribers, same size, rate and fan-out.
    let size = (feed.bytes / feed.counts.got.max(1)).max(1) as usize;
    let baseline_secs = args.baseline_secs.unwrap_or(args.secs);
    let raw = baseline(
        &url,
        &people,
        size,
        args.rate,
        baseline_secs,
        &mut rng,
        timeout,
    )
    .await?;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), gateway).await???;
    tokio::time::timeout(Duration::from_secs(30), commands).await???;

    let c = feed.counts;
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    println!(
        "load: {total} commands in {load_secs:.1} s ({:.0}/s); the gateway evaluated {} events and stored {} deliveries in the phase",
        total as f64 / load_secs,
        after.evaluated - settled.evaluated,
        after.deliveries - settled.deliveries
    );
    println!(
        "feed deliveries: {} of {} expected received by the partners' core subscriptions ({} arrived before the command's reply, {} extra, {} wrong event, {} unmatched), FeedItem avg {size} B",
        c.got, c.expected, feed.before_reply, feed.extra, feed.wrong_event, feed.unmatched
    );
    if grpc.is_some() {
        println!(
            "gRPC FeedService.Subscribe ({grpc_org}): {} of {} items, reply -> item (µs) p50={} p99={}",
            c.grpc_got,
            c.grpc_expected,
            micros(q(&feed.reply_to_grpc, 0.5)),
            micros(q(&feed.reply_to_grpc, 0.99))
        );
    }
    println!(
        "  command send -> partner receives (µs, for reference): p50={} p99={}",
        micros(q(&feed.send_to_core, 0.5)),
        micros(q(&feed.send_to_core, 0.99))
    );
    println!(
        "latency (µs): baseline publish -> receive p50={} p99={} (n={}); feed reply -> partner receives p50={} p99={} (n={})",
        micros(q(&raw.histogram, 0.5)),
        micros(q(&raw.histogram, 0.99)),
        raw.histogram.len(),
        micros(q(&feed.reply_to_core, 0.5)),
        micros(q(&feed.reply_to_core, 0.99)),
        feed.reply_to_core.len()
    );
    if raw.received < raw.published {
        println!(
            "WARNING: the baseline received {} of {} messages",
            raw.received, raw.published
        );
    }
    let ratio = |p: f64| q(&feed.reply_to_core, p) as f64 / q(&raw.histogram, p).max(1) as f64;
    println!(
        "feed run: p50_ratio={:.2} p99_ratio={:.2}",
        ratio(0.5),
        ratio(0.99)
    );
    drop(nats);
    Ok(ratio(0.99))
}

struct Baseline {
    histogram: Histogram<u64>,
    published: u64,
    received: u64,
}

/// Core publishes of `size` bytes at `rate`/s for `secs`, each tick to the subjects of a
/// random person's partners, to 20 plain subscribers on their own connections; publish call
/// to receipt.
async fn baseline(
    url: &str,
    people: &[Person],
    size: usize,
    rate: f64,
    secs: f64,
    rng: &mut Rng,
    timeout: Duration,
) -> Result<Baseline> {
    let base = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let mut clients = Vec::new();
    for (code, _) in PARTNERS {
        let client = async_nats::ConnectOptions::new()
            .name(format!("bench-plain-{code}"))
            .connect(url)
            .await?;
        let mut subscription = client.subscribe(format!("bench.plain.{code}.>")).await?;
        client.flush().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let at = Instant::now();
                let Some(stamp) = message.payload.get(..8) else {
                    continue;
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(stamp);
                let sent = base + Duration::from_nanos(u64::from_le_bytes(raw));
                let ns = u64::try_from(at.saturating_duration_since(sent).as_nanos())
                    .unwrap_or(u64::MAX);
                if tx.send(ns).is_err() {
                    return;
                }
            }
        });
        clients.push(client);
    }
    drop(tx);
    let publisher = async_nats::ConnectOptions::new()
        .name("bench-plain-publisher")
        .connect(url)
        .await?;
    let total = (rate * secs).round() as u64;
    let progress = bar(total, "baseline   {bar:40} {pos}/{len} ticks  {per_sec}")?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut padding = vec![b'x'; size.max(8)];
    let mut published = 0u64;
    for n in 0..total {
        ticker.tick().await;
        let person = &people[rng.below(people.len() as u64) as usize];
        for &partner in &person.related {
            let sent = Instant::now();
            let stamp = u64::try_from(sent.duration_since(base).as_nanos()).unwrap_or(u64::MAX);
            padding[..8].copy_from_slice(&stamp.to_le_bytes());
            publisher
                .publish(
                    format!("bench.plain.{}.{n}", PARTNERS[partner].0),
                    Bytes::copy_from_slice(&padding),
                )
                .await?;
            published += 1;
        }
        progress.inc(1);
    }
    publisher.flush().await?;
    progress.finish_and_clear();
    let mut histogram = Histogram::<u64>::new(3)?;
    let deadline = tokio::time::Instant::now() + timeout;
    while histogram.len() < published {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ns)) => histogram.record(ns)?,
            Ok(None) | Err(_) => break,
        }
    }
    let received = histogram.len();
    drop(clients);
    Ok(Baseline {
        histogram,
        published,
        received,
    })
}

// ---------------------------------------------------------------------------------------------
// Throughput

/// A raw ordered consumer over every event from the start, no-op handler; seconds.
async fn raw_read_all(js: &jetstream::Context, last: u64) -> Result<f64> {
    let started = Instant::now();
    let stream = js.get_stream_no_info(STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: carewoven_eventlog::subjects::ALL_EVENTS.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
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
    ensure!(count == last, "read {count} events, the log holds {last}");
    Ok(secs)
}

struct StreamSize {
    messages: u64,
    bytes: u64,
}

async fn stream_size(js: &jetstream::Context, name: &str) -> Result<StreamSize> {
    let mut stream = js.get_stream(name).await?;
    let info = stream.info().await?;
    Ok(StreamSize {
        messages: info.state.messages,
        bytes: info.state.bytes,
    })
}

async fn throughput_phase(args: &Args, sync: SyncPolicy) -> Result<()> {
    let nats = NatsServer::start_with(Options {
        sync,
        ..Options::default()
    })?;
    let url = nats.url();
    let timeout = Duration::from_secs(args.timeout_secs);

    // The registry through the command service, then the backlog straight into the log.
    let stop = CancellationToken::new();
    let (commands, mut client) = start_commands(&url, &stop).await?;
    let reach_back = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).context("a date")?;
    register_partners(&mut client, Some(reach_back)).await?;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), commands).await???;
    let nc = async_nats::connect(&url).await?;
    let generated = generate(&nc, args.backlog, args.seed).await?;
    let log = carewoven_eventlog::EventLog::open(nc.clone(), Default::default()).await?;
    let last = log.last_sequence().await?;
    println!(
        "backlog: {} generated events written in {:.1} s ({:.0}/s), {} people; log at {last} (with the registry)",
        generated.events,
        generated.secs,
        generated.events as f64 / generated.secs,
        generated.persons.len()
    );

    // (a) raw, (b) the gateway, (a) again.
    let js = jetstream::new(nc.clone());
    let raw_first = raw_read_all(&js, last).await?;
    let stop = CancellationToken::new();
    let cpu_before = (cpu_secs("self"), nats_cpu_secs());
    let started = Instant::now();
    let (gateway, _, mut progress) = start_gateway(&url, &stop).await?;
    let progress_bar = bar(
        last,
        "gateway    {bar:40} {pos}/{len} log positions settled  {per_sec}  ETA {eta}",
    )?;
    let mut first = progress.clone();
    let first_event = tokio::spawn(async move {
        first.wait_for(|p| p.evaluated > 0).await.ok()?;
        Some(Instant::now())
    });
    let done = wait_delivered(&mut progress, last, timeout, Some(&progress_bar)).await?;
    let gateway_secs = started.elapsed().as_secs_f64();
    let cpu_after = (cpu_secs("self"), nats_cpu_secs());
    progress_bar.finish_and_clear();
    let startup = first_event
        .await?
        .map(|t| t.duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), gateway).await???;
    let raw_second = raw_read_all(&js, last).await?;

    let feed = stream_size(&js, FEED_STREAM).await?;
    let audit = stream_size(&js, carewoven_access::audit::AUDIT_STREAM).await?;
    // One message per partner per evaluation batch: never more messages than items.
    ensure!(
        feed.messages <= done.deliveries,
        "the feed stream holds {} messages for {} deliveries",
        feed.messages,
        done.deliveries
    );
    let items = feed_items(&js).await?;
    ensure!(
        items == done.deliveries,
        "the feed stream holds {items} items, the gateway reported {}",
        done.deliveries
    );
    let raw_secs = raw_first.min(raw_second);
    let raw_rate = last as f64 / raw_secs;
    let gateway_rate = done.evaluated as f64 / gateway_secs;
    println!(
        "(a) raw ordered consumer over every event, no-op handler: {:.0}/s ({raw_first:.2} s), {:.0}/s ({raw_second:.2} s)",
        last as f64 / raw_first,
        last as f64 / raw_second
    );
    println!(
        "(b) gateway from a fresh start: {} events evaluated in {gateway_secs:.2} s ({gateway_rate:.0}/s; first event after {startup:.2} s), {} deliveries ({:.2} per event, {:.0}/s) stored as {} feed messages ({:.4} writes per event, avg {:.0} B) and {} audit messages",
        done.evaluated,
        done.deliveries,
        done.deliveries as f64 / done.evaluated as f64,
        done.deliveries as f64 / gateway_secs,
        feed.messages,
        (feed.messages + audit.messages) as f64 / done.evaluated.max(1) as f64,
        feed.bytes as f64 / feed.messages.max(1) as f64,
        audit.messages
    );
    println!(
        "    CPU during (b): gateway process {:.1} s, nats-server {:.1} s, over {gateway_secs:.1} s on {} cores",
        cpu_after.0 - cpu_before.0,
        cpu_after.1 - cpu_before.1,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "feed-throughput: ratio={:.2}  (gateway={gateway_rate:.0} events/s raw={raw_rate:.0} events/s; raw = the faster of 2 runs)",
        gateway_rate / raw_rate
    );

    if !args.no_diagnostic {
        let writes = feed.messages + audit.messages;
        let size = ((feed.bytes + audit.bytes) / writes.max(1)).clamp(16, 4096) as usize;
        let count = writes.min(args.diagnostic_writes);
        let per_event = writes as f64 / done.evaluated.max(1) as f64;
        match publish_ceiling(&nc, count, size).await {
            Ok(secs) => {
                let rate = count as f64 / secs;
                println!(
                    "(c) raw JetStream publishes of {size} B (the gateway's average write) alternately to two streams with {GATEWAY_WINDOW} in flight, {count} of the gateway's {writes} writes: {rate:.0}/s; at {per_event:.4} writes per event (feed and audit messages) they cap the gateway at {:.0} events/s",
                    rate / per_event
                );
            }
            Err(e) => println!("(c) failed: {e:#}"),
        }
        match batch_ceiling(&nc, count, size).await {
            Ok(secs) => {
                let rate = count as f64 / secs;
                println!(
                    "(d) the same publishes as atomic batches of {BATCH}, {BATCHES_IN_FLIGHT} in flight over the two streams: {rate:.0}/s; would cap the gateway at {:.0} events/s",
                    rate / per_event
                );
            }
            Err(e) => println!("(d) failed: {e:#}"),
        }
    }
    drop(nats);
    Ok(())
}

/// Items in every message of the feed stream (each a `FeedBatch`).
async fn feed_items(js: &jetstream::Context) -> Result<u64> {
    let stream = js.get_stream(FEED_STREAM).await?;
    let mut items = 0u64;
    let mut from = 1;
    loop {
        match stream
            .direct_get_next_for_subject("cw.feed.>", Some(from))
            .await
        {
            Ok(m) => {
                from = m.sequence + 1;
                let batch =
                    carewoven_gateway::evaluator::decode_batch(Some(&m.headers), &m.payload)?;
                items += batch.items.len() as u64;
            }
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {
                return Ok(items);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Publish `count` messages of `size` bytes, alternately to two file streams (as the gateway
/// writes a feed item and an audit record per delivery), with the gateway's window of
/// acknowledgements in flight; seconds.
async fn publish_ceiling(nc: &async_nats::Client, count: u64, size: usize) -> Result<f64> {
    let js = jetstream::new(nc.clone());
    for name in ["FEED", "AUDIT"] {
        js.create_stream(jetstream::stream::Config {
            name: format!("BENCH_CEILING_{name}"),
            subjects: vec![format!("bench.ceiling.{name}.>")],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    }
    let payload = Bytes::from(vec![b'x'; size]);
    let progress = bar(
        count,
        "(c)        {bar:40} {pos}/{len} publishes  {per_sec}",
    )?;
    let started = Instant::now();
    let mut acks: std::collections::VecDeque<PublishAckFuture> =
        std::collections::VecDeque::with_capacity(GATEWAY_WINDOW);
    for n in 0..count {
        if acks.len() >= GATEWAY_WINDOW {
            acks.pop_front().context("an ack")?.await?;
        }
        acks.push_back(
            js.publish(
                format!(
                    "bench.ceiling.{}.{}",
                    if n.is_multiple_of(2) { "FEED" } else { "AUDIT" },
                    n % 20
                ),
                payload.clone(),
            )
            .await?,
        );
        if n.is_multiple_of(1024) {
            progress.set_position(n);
        }
    }
    while let Some(ack) = acks.pop_front() {
        ack.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok(secs)
}

/// Publish `count` messages of `size` bytes as atomic batches of `BATCH`, `BATCHES_IN_FLIGHT`
/// at a time, alternately to two streams; seconds.
async fn batch_ceiling(nc: &async_nats::Client, count: u64, size: usize) -> Result<f64> {
    use jetstream_extra::batch_publish::BatchPublishExt;
    let js = jetstream::new(nc.clone());
    for name in ["FEED", "AUDIT"] {
        js.create_stream(jetstream::stream::Config {
            name: format!("BENCH_BATCH_{name}"),
            subjects: vec![format!("bench.batch.{name}.>")],
            storage: jetstream::stream::StorageType::File,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await?;
    }
    let payload = Bytes::from(vec![b'x'; size]);
    let progress = bar(
        count,
        "(d)        {bar:40} {pos}/{len} publishes  {per_sec}",
    )?;
    let started = Instant::now();
    let mut n = 0u64;
    let mut k = 0u64;
    while n < count {
        let mut round = Vec::with_capacity(BATCHES_IN_FLIGHT);
        while round.len() < BATCHES_IN_FLIGHT && n < count {
            let len = BATCH.min(count - n);
            let stream = if k.is_multiple_of(2) { "FEED" } else { "AUDIT" };
            k += 1;
            n += len;
            let js = js.clone();
            let payload = payload.clone();
            round.push(async move {
                let mut batch = js.batch_publish().timeout(Duration::from_secs(30)).build();
                for i in 1..len {
                    batch
                        .add(format!("bench.batch.{stream}.{}", i % 20), payload.clone())
                        .await?;
                }
                batch
                    .commit(format!("bench.batch.{stream}.0"), payload)
                    .await?;
                anyhow::Ok(())
            });
        }
        for done in futures::future::join_all(round).await {
            done?;
        }
        progress.set_position(n);
    }
    let secs = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok(secs)
}

/// CPU seconds (user + system) of `/proc/<pid>` so far; 0 if unknown.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name: state is field 3, utime 14 and stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// CPU seconds of this process's nats-server children.
fn nats_cpu_secs() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "nats-server" {
                total += cpu_secs(pid);
            }
        }
    }
    total
}
