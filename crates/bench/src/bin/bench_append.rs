//! `just bench-append`: raw JetStream publish-and-ack against the full command path
//! (gRPC client -> service -> decide -> append -> ack -> reply), on one nats-server, with the
//! same payload size and concurrency, in one run. Prints ratios, because machines are noisy.
//!
//! Our path is the authenticated, authorised one: every request carries a bearer token (from
//! the fixed test issuer, minted once as a client would; the service verifies it once and
//! then remembers it) and is authorised against the registry, which is set up before
//! anything is measured (the hospital and the council's service registered, with agreements).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;
use bytes::Bytes;
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use carewoven_testkit::{NatsServer, Options, SyncPolicy};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use uuid::Uuid;

/// The referring hospital (its site is its code) and the receiving service's organisation.
const HOSPITAL: &str = "BENCH-HOSP";
const COUNCIL: &str = "BENCH-ASC-ORG";
const SERVICE: &str = "BENCH-ASC";

/// `message` with the bearer token attached.
fn authed<T>(message: T, bearer: &MetadataValue<tonic::metadata::Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

#[derive(Clone, Copy, ValueEnum)]
enum SyncArg {
    Always,
    Default,
}

#[derive(Parser)]
struct Args {
    /// nats-server sync policy: `always` fsyncs before every ack.
    #[arg(long, value_enum, default_value = "always")]
    sync: SyncArg,
    /// Commands (and raw publishes) in the throughput phase.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Requests in flight during the throughput phase.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// gRPC connections the command path's requests are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Sequential requests in the latency phase.
    #[arg(long, default_value_t = 2_000)]
    latency_samples: u64,
}

fn referral(person: &str) -> v1::MakeReferralRequest {
    v1::MakeReferralRequest {
        context: Some(v1::CommandContext {
            command_id: Uuid::now_v7().to_string(),
            organisation: HOSPITAL.into(),
            user: "tester".into(),
            ..Default::default()
        }),
        person_id: person.into(),
        referral: Some(v1::Referral {
            from_organisation: HOSPITAL.into(),
            to_service: SERVICE.into(),
            priority: v1::Priority::Urgent as i32,
            reason: "Synthetic benchmark referral for support at home after discharge".into(),
            replaces: String::new(),
        }),
    }
}

async fn run_concurrent<F, Fut>(count: u64, concurrency: u64, op: F) -> Result<f64>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = op.clone();
            let next = next.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    op().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn latencies<F, Fut>(samples: u64, op: F) -> Result<Histogram<u64>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..samples {
        let t = Instant::now();
        op().await?;
        h.record(t.elapsed().as_micros() as u64)?;
    }
    Ok(h)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sync = match args.sync {
        SyncArg::Always => SyncPolicy::Always,
        SyncArg::Default => SyncPolicy::Default,
    };
    let nats = NatsServer::start_with(Options {
        sync,
        ..Options::default()
    })?;
    let sync_name = match args.sync {
        SyncArg::Always => "always",
        SyncArg::Default => "default (2m)",
    };
    println!(
        "bench-append: nats-server sync_interval={sync_name}, {} in flight, {} ops, {} latency samples, {} cores",
        args.concurrency,
        args.count,
        args.latency_samples,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // Our path: the command service in this process, on real gRPC over loopback TCP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let service = tokio::spawn(carewoven_commands::run(
        listener,
        carewoven_commands::Config::for_nats(nats.url()),
        stop.clone().cancelled_owned(),
    ));
    let channel = connect(&format!("http://{addr}")).await?;
    let client = CommandServiceClient::new(channel);
    // The registry, before anything is measured.
    let all_classes = carewoven_testkit::partners::all_data_classes();
    for (code, services) in [(HOSPITAL, &[HOSPITAL][..]), (COUNCIL, &[SERVICE][..])] {
        carewoven_testkit::partners::register_partner(
            &mut client.clone(),
            code,
            services,
            &all_classes,
        )
        .await
        .with_context(|| format!("registering {code}"))?;
    }
    let token = carewoven_testkit::partners::token(HOSPITAL);
    let bearer: MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}").parse()?;
    let person = client
        .clone()
        .register_person(authed(
            v1::RegisterPersonRequest {
                context: Some(v1::CommandContext {
                    command_id: Uuid::now_v7().to_string(),
                    organisation: HOSPITAL.into(),
                    user: "tester".into(),
                    ..Default::default()
                }),
                profile: Some(v1::Profile {
                    nhs_number: "9990001235".into(),
                    given_name: "Bench".into(),
                    family_name: "Example".into(),
                    date_of_birth: "1950-01-01".into(),
                    ..Default::default()
                }),
            },
            &bearer,
        ))
        .await?
        .into_inner()
        .person_id;

    // The payload size the baseline publishes: one of our stored referral events.
    let nc = async_nats::connect(nats.url()).await?;
    let log = carewoven_eventlog::EventLog::open(nc.clone(), Default::default()).await?;
    let sample = client
        .clone()
        .make_referral(authed(referral(&person), &bearer))
        .await?
        .into_inner();
    let history = log
        .read_filtered(
            &carewoven_eventlog::subjects::event_type("referral_submitted"),
            1,
            1,
        )
        .await?;
    let payload_len = history
        .events
        .first()
        .map(|e| carewoven_proto::convert::encode_event(&e.recorded.meta, &e.recorded.event).len())
        .context("no sample event")?;
    let _ = sample;
    println!("payload: {payload_len} bytes per event");

    // Baseline: raw async-nats JetStream publish-and-await-ack, file storage, same server.
    let js = jetstream::new(nc.clone());
    js.create_stream(jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = Bytes::from(vec![b'x'; payload_len]);
    let raw = {
        let js = js.clone();
        let payload = payload.clone();
        move || {
            let js = js.clone();
            let payload = payload.clone();
            async move {
                js.publish(format!("bench.{}", Uuid::now_v7()), payload)
                    .await?
                    .await?;
                Ok(())
            }
        }
    };
    // One HTTP/2 connection by default, as the baseline uses one NATS connection.
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(CommandServiceClient::new(
            connect(&format!("http://{addr}")).await?,
        ));
    }
    let clients = Arc::new(clients);
    let turn = Arc::new(AtomicU64::new(0));
    let ours = {
        let person = person.clone();
        move || {
            let i = turn.fetch_add(1, Ordering::Relaxed) as usize % clients.len();
            let mut client = clients[i].clone();
            let req = authed(referral(&person), &bearer);
            async move {
                client.make_referral(req).await?;
                Ok(())
            }
        }
    };

    // Warm up both paths.
    run_concurrent(500, args.concurrency, raw.clone()).await?;
    run_concurrent(500, args.concurrency, ours.clone()).await?;

    let lat_raw = latencies(args.latency_samples, &raw).await?;
    let lat_ours = latencies(args.latency_samples, &ours).await?;
    let base_tput = run_concurrent(args.count, args.concurrency, raw.clone()).await?;
    let our_tput = run_concurrent(args.count, args.concurrency, ours.clone()).await?;

    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64;
    println!(
        "latency (µs): baseline p50={} p99={}; ours p50={} p99={}",
        q(&lat_raw, 0.5),
        q(&lat_raw, 0.99),
        q(&lat_ours, 0.5),
        q(&lat_ours, 0.99)
    );
    println!(
        "append-latency: p50_ratio={:.2} p99_ratio={:.2}",
        q(&lat_ours, 0.5) / q(&lat_raw, 0.5),
        q(&lat_ours, 0.99) / q(&lat_raw, 0.99)
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), service).await???;
    println!(
        "append: ours={:.0}/s baseline={:.0}/s ratio={:.2}",
        our_tput,
        base_tput,
        our_tput / base_tput
    );
    Ok(())
}

async fn connect(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?.connect().await?)
}
