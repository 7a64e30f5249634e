//! Exactly once across crashes, with the evaluator's checkpoint: the gateway runs as a child
//! process with `--evaluator-checkpoint` (and an access checkpoint) and is killed with
//! SIGKILL at random moments while commands are appended, then restarted on the same files.
//! When it has caught up, every partner's feed must hold exactly what a fold of the whole
//! log decides, each item once, numbered 1..n without a gap, in log order.
//!
//! Real processes: a nats-server, the command service (in process, over gRPC on loopback)
//! and the gateway binary.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use async_nats::jetstream::{self, consumer};
use carewoven_domain::values::Code;
use carewoven_domain::{AggregateKind, RecordedEvent};
use carewoven_gateway::evaluator::{FEED_STREAM, decode_batch};
use carewoven_governance::Governance;
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use carewoven_testkit::partners::{
    all_data_classes, register_partner, register_partner_as, signed,
};
use carewoven_testkit::{NatsServer, referral_action, referral_request, register_with_gp};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_carewoven-gateway");
const KILLS: usize = 4;
const PARTNERS: [&str; 4] = ["GP-A", "HOSP-A", "ASC", "CNURSE-1"];

/// A tiny deterministic generator for kill times (no dependency, reproducible per seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

struct GatewayProcess {
    child: Child,
}

impl GatewayProcess {
    fn start(nats: &str, dir: &Path, trust: &Path) -> Result<Self> {
        let port = carewoven_testkit::free_port()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("gateway.log"))?;
        let child = Command::new(GATEWAY_BIN)
            .env("CAREWOVEN_NATS_URL", nats)
            .env("CAREWOVEN_GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "CAREWOVEN_CURSOR_KEY",
                "a-cursor-key-for-the-crash-test-only-0123456789",
            )
            .env("CAREWOVEN_TRUSTED_KEYS", trust)
            .env("CAREWOVEN_GATEWAY_CHECKPOINT", dir.join("evaluator.redb"))
            .env("CAREWOVEN_ACCESS_CHECKPOINT", dir.join("access.redb"))
            .env("CAREWOVEN_ACCESS_LIST_FILE", dir.join("access-list.redb"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting carewoven-gateway")?;
        Ok(GatewayProcess { child })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every item in `org`'s feed, in stream order: (number, log position).
async fn feed(js: &jetstream::Context, org: &str) -> Result<Vec<(u64, u64)>> {
    let stream = match js.get_stream(FEED_STREAM).await {
        Ok(s) => s,
        Err(_) => return Ok(Vec::new()),
    };
    let mut c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("cw.feed.{org}.>"),
            ..Default::default()
        })
        .await?;
    let mut pending = c.info().await?.num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = c.messages().await?;
    while pending > 0 {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading a feed")?
            .context("the feed ended")??;
        pending = m.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending;
        let batch = decode_batch(m.headers.as_ref(), &m.payload)?;
        out.extend(batch.items.iter().map(|i| (i.number, i.log_position)));
    }
    Ok(out)
}

/// What a fold of the whole log decides each partner is sent (the evaluator's rule:
/// organisations related just before or just after the event, then `disclosure`).
async fn expected(js: &jetstream::Context) -> Result<BTreeMap<String, Vec<u64>>> {
    let stream = js.get_stream("CAREWOVEN").await?;
    let mut c = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await?;
    let mut pending = c.info().await?.num_pending;
    let mut messages = c.messages().await?;
    let mut governance = Governance::new();
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let now = chrono::Utc::now();
    while pending > 0 {
        let m = messages.next().await.context("the log ended")??;
        let info = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        pending = info.pending;
        let event: RecordedEvent = carewoven_eventlog::decode(info.stream_sequence, &m.payload)?;
        if event.meta.aggregate_kind == AggregateKind::Organisation {
            governance.apply(&event);
            continue;
        }
        let (person, at) = (event.meta.person_id, event.meta.recorded_at);
        let before = governance.related_orgs(person, at);
        governance.apply(&event);
        let after = governance.related_orgs(person, at);
        let candidates: BTreeSet<&Code> = before.iter().chain(after.iter()).collect();
        for org in candidates {
            if governance
                .disclosure(&event, org, before.contains(org), now)
                .is_some()
            {
                out.entry(org.as_str().to_owned())
                    .or_default()
                    .push(event.sequence);
            }
        }
    }
    Ok(out)
}

/// One person's story, round after round until `stop`.
async fn load(
    mut client: CommandServiceClient<Channel>,
    n: u32,
    stop: CancellationToken,
) -> Result<()> {
    let person = register_with_gp(&mut client, n, "GP-A").await?;
    while !stop.is_cancelled() {
        let referral = client
            .make_referral(signed(referral_request(&person, "HOSP-A", "ASC-D2A")))
            .await?
            .into_inner()
            .aggregate_id;
        for action in [v1::ReferralAction::Receive, v1::ReferralAction::Accept] {
            client
                .progress_referral(signed(referral_action(&person, &referral, action, "ASC")))
                .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_at_random_delivers_each_item_exactly_once() -> Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let trust = dir.path().join("trusted-keys.json");
    std::fs::write(
        &trust,
        serde_json::to_vec(&carewoven_access::token::testing::trust())?,
    )?;

    // The command service, in process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop_commands = CancellationToken::new();
    let commands = tokio::spawn({
        let (url, stop) = (nats.url(), stop_commands.clone());
        async move {
            carewoven_commands::run(
                listener,
                carewoven_commands::Config::for_nats(url),
                stop.cancelled_owned(),
            )
            .await
        }
    });
    let channel = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut client = match Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await
            {
                Ok(c) => CommandServiceClient::new(c),
                Err(_) => {
                    ensure!(
                        Instant::now() < deadline,
                        "the command service did not start"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if register_partner_as(
                &mut client,
                "GP-A",
                &[],
                &all_data_classes(),
                v1::OrganisationType::GeneralPractice,
            )
            .await
            .is_ok()
            {
                break Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?;
            }
            ensure!(
                Instant::now() < deadline,
                "the command service did not answer"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut client = CommandServiceClient::new(channel.clone());
    register_partner(&mut client, "HOSP-A", &["HOSP-A"], &all_data_classes()).await?;
    register_partner(&mut client, "ASC", &["ASC-D2A"], &all_data_classes()).await?;
    register_partner(&mut client, "CNURSE-1", &[], &all_data_classes()).await?;

    // Load, while the gateway is killed at random moments and restarted.
    let stop_load = CancellationToken::new();
    let loads: Vec<_> = (1..=6)
        .map(|n| {
            tokio::spawn(load(
                CommandServiceClient::new(channel.clone()),
                n,
                stop_load.clone(),
            ))
        })
        .collect();
    let mut random = Lcg(0x5eed_c0de);
    let mut gateway = GatewayProcess::start(&nats.url(), dir.path(), &trust)?;
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + random.next(1200))).await;
        gateway.kill();
        gateway = GatewayProcess::start(&nats.url(), dir.path(), &trust)?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load.cancel();
    for l in loads {
        l.await??;
    }

    // Caught up: every partner's feed reaches what the whole log decides.
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let want = expected(&js).await?;
    ensure!(
        want.values().map(Vec::len).sum::<usize>() > 50,
        "the load gave the partners something to receive: {want:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    loop {
        for org in PARTNERS {
            got.insert(org.to_owned(), feed(&js, org).await?);
        }
        let caught_up = PARTNERS.iter().all(|org| {
            let want_last = want.get(*org).and_then(|w| w.last());
            let got_last = got[*org].last().map(|(_, source)| source);
            want_last == got_last
        });
        if caught_up {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the gateway did not catch up: {:?}",
            std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for org in PARTNERS {
        let items = &got[org];
        let numbers: Vec<u64> = items.iter().map(|(n, _)| *n).collect();
        let expected_numbers: Vec<u64> = (1..=items.len() as u64).collect();
        assert_eq!(
            numbers, expected_numbers,
            "{org}: numbered 1..n, no gap, no repeat"
        );
        let sources: Vec<u64> = items.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            &sources,
            want.get(org).unwrap_or(&Vec::new()),
            "{org}: exactly what the log decides, each once, in log order"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("gateway.log"))?;
    eprintln!(
        "items per partner: {:?}; starts from a checkpoint: {}",
        got.iter().map(|(o, i)| (o, i.len())).collect::<Vec<_>>(),
        log.matches("gateway evaluator: starting from its checkpoint")
            .count()
    );
    assert!(
        log.lines().any(
            |l| l.contains("gateway evaluator: starting from its checkpoint")
                && !l.contains("position=0")
        ),
        "restarts resumed from a saved checkpoint, not from the log's start"
    );
    drop(gateway);
    stop_commands.cancel();
    commands.await??;
    Ok(())
}
