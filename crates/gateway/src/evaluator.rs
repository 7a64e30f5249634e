//! The evaluator: follows the event log in order, folds it into [`Governance`], and decides
//! for each event and each partner, at delivery time, what the partner is sent.
//!
//! Only the organisations related to the event's person just before or just after it are
//! candidates, so the cost per event does not grow with the number of partners.
//!
//! Deliveries are stored cheaply: the evaluator takes every event already waiting (up to
//! [`CHUNK`]) as one evaluation batch, and stores for each partner one message carrying that
//! partner's consecutive items from it (a `FeedBatch` on `cw.feed.<ORG>.<last number>` in the
//! `CW_FEED` stream; partners may subscribe to their own prefix with their NATS credentials,
//! see `deploy/`). A message holds only its partner's items, so its size and boundaries say
//! nothing about other partners or people. The feed item is the record of what was disclosed:
//! there is no audit record per delivery; "who accessed this record" reads the feeds too
//! (`access_list.rs`).
//!
//! Exactly once: the decisions are a function of the log prefix (and the calendar); the
//! evaluator starts from its checkpoint (`--evaluator-checkpoint`, saved only at a barrier
//! where every delivery decided so far is acknowledged, so it is never ahead of the feeds)
//! or, without one, from the beginning of the log, and for each partner skips what its feed
//! already holds (the last item's `Carewoven-Source-Sequence`). Publishes are pipelined; if
//! any is not acknowledged the evaluator starts over from the checkpoint, so a feed never
//! has a gap.
//!
//! Faults stay local: an event about a person that cannot be decoded stops delivery of that
//! person's events (from it on, to everyone: it may have been an objection), not the feed. A
//! message on a subject that names no person is skipped and counted. Only an undecodable
//! registry event stops every delivery before it (it may have ended an agreement). An
//! operator's `--index-skip-undecodable` lets named sequences be treated as applied; each
//! skip is audited before it takes effect.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use carewoven_access::AuditLog;
use carewoven_access::audit::AuditRecord;
use carewoven_access::checkpoint::{Checkpoint, SaveExtras};
use carewoven_domain::values::Code;
use carewoven_domain::{AggregateKind, REGISTRY_PERSON, RecordedEvent};
use carewoven_eventlog::follow::{FollowHealth, FollowOptions, Follower, LogMessage};
use carewoven_governance::{Disclosure, Governance};
use carewoven_proto::v1;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const FEED_STREAM: &str = "CW_FEED";
pub const FEED_SUBJECTS: &str = "cw.feed.>";
/// The number of a feed message's last item.
pub const NUMBER_HEADER: &str = "Carewoven-Feed-Number";
/// The number of a feed message's first item (present on every `FeedBatch` message).
pub const FIRST_HEADER: &str = "Carewoven-Feed-First";
/// The log position of a feed message's last item.
pub const SOURCE_HEADER: &str = "Carewoven-Source-Sequence";

/// Save the checkpoint this long after the last save, if anything was evaluated since...
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// ...or when this many people changed.
const SAVE_AFTER_PEOPLE: usize = 20_000;

/// Unacknowledged publishes allowed in flight.
const WINDOW: usize = 2048;
/// Events evaluated together at most (one feed message per partner per batch).
pub const CHUNK: usize = 2_000;
/// Bytes of items in one feed message at most (the server's max_payload is 1 MB).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// The items a stored feed message carries: a `FeedBatch` (with the [`FIRST_HEADER`]), or a
/// single `FeedItem` as stored before batches.
pub fn decode_batch(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<v1::FeedBatch, prost::DecodeError> {
    if headers.and_then(|h| h.get(FIRST_HEADER)).is_some() {
        v1::FeedBatch::decode(payload)
    } else {
        let item = v1::FeedItem::decode(payload)?;
        Ok(v1::FeedBatch {
            first: item.number,
            last: item.number,
            items: vec![item],
        })
    }
}

/// The clock the evaluator decides with (tests move it to let agreements lapse).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// The subject of the feed message of `org` whose last item is `number`.
pub fn feed_subject(org: &str, number: u64) -> String {
    format!("cw.feed.{org}.{number}")
}

/// Every subject of `org`'s feed.
pub fn feed_filter(org: &str) -> String {
    format!("cw.feed.{org}.>")
}

/// Create or update the feed stream.
pub async fn open_feed_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> anyhow::Result<stream::Stream<()>> {
    let created = js
        .create_or_update_stream(stream::Config {
            name: FEED_STREAM.to_owned(),
            subjects: vec![FEED_SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .context("creating the feed stream")?;
    js.get_stream_no_info(created.config.name)
        .await
        .context("opening the feed stream")
}

/// Where a partner's feed stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedHead {
    /// The last item's number (0: empty).
    pub number: u64,
    /// The log position of the event the last item carries.
    pub source: u64,
    /// The last message's position in the feed stream.
    pub stream_sequence: u64,
}

/// The last item of `org`'s feed, read from the feed stream.
pub async fn feed_head(feed: &stream::Stream<()>, org: &str) -> anyhow::Result<FeedHead> {
    let consumer = feed
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: feed_filter(org),
            deliver_policy: consumer::DeliverPolicy::Last,
            ..Default::default()
        })
        .await
        .context("reading a feed's last item")?;
    let mut consumer = consumer;
    if consumer.info().await?.num_pending == 0 {
        return Ok(FeedHead::default());
    }
    let mut messages = consumer.messages().await?;
    let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .map_err(|_| anyhow!("the feed stream did not deliver its last item"))?
        .ok_or_else(|| anyhow!("the feed stream ended"))??;
    let info = message.info().map_err(|e| anyhow!("{e}"))?;
    let header = |name: &str| -> anyhow::Result<u64> {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| anyhow!("feed item without a {name} header"))
    };
    Ok(FeedHead {
        number: header(NUMBER_HEADER)?,
        source: header(SOURCE_HEADER)?,
        stream_sequence: info.stream_sequence,
    })
}

/// What the evaluator reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Log position up to which every decision's delivery is stored.
    pub delivered_through: u64,
    /// Events evaluated since start.
    pub evaluated: u64,
    /// Items stored since start.
    pub deliveries: u64,
}

pub struct Evaluator {
    pub js: jetstream::Context,
    pub stream: String,
    pub feed: stream::Stream<()>,
    pub audit: AuditLog,
    pub clock: Clock,
    pub progress: watch::Sender<Progress>,
    /// Undecodable events the operator lets the evaluator treat as applied.
    skip_undecodable: BTreeSet<u64>,
    settings: carewoven_governance::Settings,
    /// Skips already audited by this process (the evaluator starts over after failures).
    skips_audited: Mutex<HashSet<u64>>,
    unattributable: AtomicU64,
    /// Where the fold is persisted, and how many people it keeps in memory.
    checkpoint_file: Option<(PathBuf, usize)>,
    /// The checkpoint, opened once per process.
    checkpoint: tokio::sync::Mutex<Option<Arc<Checkpoint>>>,
    /// Whether the evaluator's follower is reading the log (the gateway's health).
    health: FollowHealth,
}

struct Pending {
    /// The first log position of the evaluation batch these messages came from.
    source: u64,
    acks: Vec<Ack>,
}

/// A publish's acknowledgement, awaitable by reference so that [`settle`] may be cancelled
/// (by the next batch arriving) without losing track of it.
type Ack = futures::future::BoxFuture<
    'static,
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
>;

/// One partner's items of the batch being evaluated.
#[derive(Default)]
struct Outgoing {
    items: Vec<v1::FeedItem>,
}

impl Evaluator {
    pub fn new(
        js: jetstream::Context,
        stream: String,
        feed: stream::Stream<()>,
        audit: AuditLog,
        clock: Clock,
        progress: watch::Sender<Progress>,
    ) -> Self {
        Evaluator {
            js,
            stream,
            feed,
            audit,
            clock,
            progress,
            skip_undecodable: BTreeSet::new(),
            settings: carewoven_governance::Settings::default(),
            skips_audited: Mutex::default(),
            unattributable: AtomicU64::new(0),
            checkpoint_file: None,
            checkpoint: tokio::sync::Mutex::new(None),
            health: FollowHealth::new(),
        }
    }

    /// Whether the evaluator is reading the log: `Ended` while it starts over after a
    /// failure, until its new follower reads again.
    pub fn follow_health(&self) -> FollowHealth {
        self.health.clone()
    }

    /// Persist the fold in `file` (with at most `cache` people read back held in memory):
    /// a restart then costs the events since the last save.
    pub fn checkpointed(mut self, file: Option<PathBuf>, cache: usize) -> Self {
        self.checkpoint_file = file.map(|f| (f, cache.max(2)));
        self
    }

    /// Treat these undecodable events as applied (`--index-skip-undecodable`).
    pub fn skipping(mut self, sequences: BTreeSet<u64>) -> Self {
        self.skip_undecodable = sequences;
        self
    }

    /// Decide under the deployment's governance settings (the set period).
    pub fn governed_by(mut self, settings: carewoven_governance::Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Run until `stop`, starting over after any failure.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.run_once(&stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "gateway evaluator restarting");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// The fold to start from and its position: the checkpoint's (opened once per process)
    /// or an empty one. Also the feed heads the checkpoint recorded.
    async fn resume(&self) -> anyhow::Result<(Governance, u64, HashMap<String, (u64, u64)>)> {
        let empty = Governance::with_settings(self.settings);
        let Some((path, cache)) = &self.checkpoint_file else {
            return Ok((empty, 0, HashMap::new()));
        };
        let opened = self.checkpoint.lock().await.clone();
        let checkpoint = match opened {
            Some(c) => c,
            None => {
                let info = self
                    .js
                    .get_stream(&self.stream)
                    .await
                    .context("opening the event stream")?
                    .info()
                    .await
                    .context("reading the event stream")?
                    .clone();
                let identity = format!("{}@{}", self.stream, info.created.unix_timestamp_nanos());
                let log_end = info.state.last_sequence;
                let path = path.clone();
                let c = tokio::task::spawn_blocking(move || {
                    Checkpoint::open(&path, &identity, log_end)
                })
                .await??;
                let c = Arc::new(c);
                *self.checkpoint.lock().await = Some(c.clone());
                c
            }
        };
        let cache = *cache;
        let (governance, restored) =
            tokio::task::spawn_blocking(move || checkpoint.resume(empty, cache)).await??;
        tracing::info!(
            position = restored.position,
            "gateway evaluator: starting from its checkpoint"
        );
        Ok((governance, restored.position, restored.feed_heads))
    }

    /// Save the fold at a barrier: every delivery decided so far is acknowledged, so the
    /// position saved never runs ahead of the feeds.
    async fn save(
        &self,
        governance: &mut Governance,
        through: u64,
        saved: &mut u64,
        registry: &mut Vec<(u64, bytes::Bytes)>,
        heads: &HashMap<Code, FeedHead>,
    ) -> anyhow::Result<()> {
        let Some(checkpoint) = self.checkpoint.lock().await.clone() else {
            return Ok(());
        };
        governance.skip_to(through);
        if governance.position() <= *saved && governance.unsaved() == 0 {
            return Ok(());
        }
        let Some(unsaved) = governance.begin_save() else {
            return Ok(());
        };
        let fold = SaveExtras::of(governance, *saved, unsaved.position);
        let feed_heads: Vec<(String, u64, u64)> = heads
            .iter()
            .map(|(org, h)| (org.as_str().to_owned(), h.number, h.source))
            .collect();
        let taken = std::mem::take(registry);
        let position = unsaved.position;
        let result = tokio::task::spawn_blocking(move || {
            checkpoint.save(
                &unsaved,
                &SaveExtras {
                    registry: &taken,
                    emergency: &fold.emergency,
                    undecodable: &fold.undecodable,
                    feed_heads: &feed_heads,
                },
            )
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        governance.end_save(result.is_ok());
        // A failed save: evaluation starts over from the last good checkpoint.
        result.context("saving the gateway's checkpoint")?;
        *saved = position;
        Ok(())
    }

    async fn run_once(&self, stop: &CancellationToken) -> anyhow::Result<()> {
        let (mut governance, start, checkpoint_heads) = self.resume().await?;
        let mut follower = Follower::open(
            &self.js,
            &self.stream,
            start + 1,
            FollowOptions {
                max_batch: CHUNK,
                health: self.health.clone(),
                ..FollowOptions::default()
            },
            "gateway evaluator",
            stop.clone(),
        )
        .await
        .map_err(|e| anyhow!("following the event stream: {e}"))?;
        let checkpointed = self.checkpoint_file.is_some();
        let mut heads: HashMap<Code, FeedHead> = HashMap::new();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut in_flight = 0usize;
        let mut evaluated_total = 0u64;
        let mut deliveries_total = 0u64;
        let mut last_seen = start;
        let mut saved = start;
        let mut registry: Vec<(u64, bytes::Bytes)> = Vec::new();
        let mut last_save = tokio::time::Instant::now();
        self.report(&pending, last_seen, evaluated_total, deliveries_total);
        let mut stopping = false;
        loop {
            if stopping && !checkpointed {
                return Ok(());
            }
            // The checkpoint barrier: now and then, and when stopping (so the next start is
            // warm), settle every delivery and save.
            if stopping
                || (checkpointed
                    && (last_save.elapsed() >= SAVE_INTERVAL
                        || governance.unsaved() >= SAVE_AFTER_PEOPLE)
                    && last_seen > saved)
            {
                while settle(&mut pending, &mut in_flight).await?.is_some() {}
                self.report(&pending, last_seen, evaluated_total, deliveries_total);
                self.save(
                    &mut governance,
                    last_seen,
                    &mut saved,
                    &mut registry,
                    &heads,
                )
                .await?;
                if stopping {
                    return Ok(());
                }
                last_save = tokio::time::Instant::now();
            }
            // Wait for the next events; while idle, settle acknowledgements.
            let next = if pending.is_empty() {
                tokio::select! {
                    m = follower.next_batch() => m,
                    _ = tokio::time::sleep(SAVE_INTERVAL), if checkpointed && last_seen > saved => continue,
                }
            } else {
                tokio::select! {
                    biased;
                    m = follower.next_batch(), if in_flight < WINDOW => m,
                    settled = settle(&mut pending, &mut in_flight) => {
                        settled?;
                        self.report(&pending, last_seen, evaluated_total, deliveries_total);
                        continue;
                    }
                    _ = stop.cancelled() => None,
                }
            };
            let Some(batch) = next else {
                stopping = true;
                continue;
            };
            let mut first = None;
            let mut outgoing: BTreeMap<Code, Outgoing> = BTreeMap::new();
            // An event that stops evaluation (an undecodable registry event) still lets
            // everything decided before it in its batch be stored.
            let mut failure = None;
            for message in &batch.messages {
                let step = async {
                    let sequence = message.sequence;
                    let Some(event) = self.readable(&mut governance, sequence, message).await?
                    else {
                        // Nothing to deliver: skipped, or its person's deliveries are stopped.
                        return Ok((sequence, false));
                    };
                    if checkpointed && event.meta.aggregate_kind == AggregateKind::Organisation {
                        registry.push((sequence, message.payload.clone()));
                    }
                    self.evaluate(
                        &mut governance,
                        &mut heads,
                        &checkpoint_heads,
                        &event,
                        &mut outgoing,
                    )
                    .await?;
                    anyhow::Ok((sequence, true))
                };
                match step.await {
                    Ok((sequence, evaluated)) => {
                        first.get_or_insert(sequence);
                        last_seen = sequence;
                        evaluated_total += u64::from(evaluated);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if failure.is_none() {
                first.get_or_insert(batch.through);
                last_seen = last_seen.max(batch.through);
            }
            let mut acks = Vec::new();
            for (org, out) in outgoing {
                deliveries_total += out.items.len() as u64;
                self.publish_batch(&org, out.items, &mut acks).await?;
            }
            if let Some(e) = failure {
                for ack in acks {
                    ack.await
                        .map_err(|e| anyhow!("a delivery was not stored: {e}"))?;
                }
                while settle(&mut pending, &mut in_flight).await?.is_some() {}
                return Err(e);
            }
            if acks.is_empty() {
                if pending.is_empty() {
                    self.report(&pending, last_seen, evaluated_total, deliveries_total);
                }
            } else {
                in_flight += acks.len();
                pending.push_back(Pending {
                    source: first.unwrap_or(last_seen),
                    acks,
                });
            }
        }
    }

    /// Store `items` (consecutive numbers of `org`'s feed) as one message, or several when
    /// they would not fit in one.
    async fn publish_batch(
        &self,
        org: &Code,
        items: Vec<v1::FeedItem>,
        acks: &mut Vec<Ack>,
    ) -> anyhow::Result<()> {
        let mut rest = items.into_iter().peekable();
        while rest.peek().is_some() {
            let mut items = Vec::new();
            let mut bytes = 0;
            while let Some(item) = rest.peek() {
                let len = item.encoded_len();
                if !items.is_empty() && bytes + len > MAX_BATCH_BYTES {
                    break;
                }
                bytes += len;
                items.extend(rest.next());
            }
            let (Some(first), Some(last)) = (items.first(), items.last()) else {
                break;
            };
            let (first, last, source) = (first.number, last.number, last.log_position);
            let mut headers = HeaderMap::new();
            headers.insert(FIRST_HEADER, first.to_string().as_str());
            headers.insert(NUMBER_HEADER, last.to_string().as_str());
            headers.insert(SOURCE_HEADER, source.to_string().as_str());
            headers.insert("Nats-Msg-Id", format!("{org}:{source}").as_str());
            let batch = v1::FeedBatch { first, last, items };
            let ack = self
                .js
                .publish_with_headers(
                    feed_subject(org.as_str(), last),
                    headers,
                    batch.encode_to_vec().into(),
                )
                .await
                .map_err(|e| anyhow!("publishing to {org}'s feed: {e}"))?;
            acks.push(Box::pin(ack.into_future()));
        }
        Ok(())
    }

    /// The event to evaluate, or `None` when nothing is delivered for it: its subject names
    /// no person, its person's deliveries are stopped by an earlier undecodable event, or it
    /// cannot be decoded (which stops them from here on), unless the operator skips it. An
    /// undecodable registry event is an error: every delivery stops before it.
    async fn readable(
        &self,
        governance: &mut Governance,
        sequence: u64,
        message: &LogMessage,
    ) -> anyhow::Result<Option<RecordedEvent>> {
        let Some((person, ..)) = carewoven_eventlog::subjects::parse_event(&message.subject) else {
            let count = self.unattributable.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                sequence,
                unattributable = count,
                "gateway: a message on a subject that names no person cannot be attributed to anyone; skipped"
            );
            return Ok(None);
        };
        if person != REGISTRY_PERSON && governance.undecodable(person).is_some() {
            return Ok(None);
        }
        let e = match carewoven_eventlog::decode(sequence, &message.payload) {
            Ok(event) => return Ok(Some(event)),
            Err(e) => e,
        };
        if self.skip_undecodable.contains(&sequence) {
            self.audit_skip(sequence, person).await?;
            tracing::warn!(
                sequence,
                "gateway: skipping an undecodable event, as the operator configured (audited)"
            );
            return Ok(None);
        }
        if person == REGISTRY_PERSON {
            return Err(anyhow!(
                "{e}; a registry event: the gateway stops every delivery before it (fail closed)"
            ));
        }
        governance.mark_undecodable(person, sequence);
        tracing::error!(
            sequence,
            error = %e,
            "gateway: an event cannot be decoded; its person's events are not delivered from here on (fail closed) until it is fixed or skipped (--index-skip-undecodable)"
        );
        tracing::debug!(sequence, %person, "the person whose deliveries stopped");
        Ok(None)
    }

    /// Store the audit record of an operator's skip (once per process).
    async fn audit_skip(&self, sequence: u64, person: Uuid) -> anyhow::Result<()> {
        if self
            .skips_audited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&sequence)
        {
            return Ok(());
        }
        let mut record = AuditRecord::operator(
            (person != REGISTRY_PERSON).then_some(person),
            v1::AuditAction::UndecodableSkipped,
        )
        .detail("carewoven-gateway: feed evaluator, --index-skip-undecodable");
        record.log_position = sequence;
        self.audit.record(&record).await.map_err(|e| {
            anyhow!(
                "auditing the skip of log sequence {sequence}: {}",
                e.message()
            )
        })?;
        self.skips_audited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sequence);
        Ok(())
    }

    fn report(&self, pending: &VecDeque<Pending>, last_seen: u64, evaluated: u64, deliveries: u64) {
        // Everything before the oldest unacknowledged delivery is settled.
        let delivered_through = match pending.front() {
            Some(p) => p.source.saturating_sub(1),
            None => last_seen,
        };
        self.progress.send_replace(Progress {
            delivered_through,
            evaluated,
            deliveries,
        });
    }

    async fn evaluate(
        &self,
        governance: &mut Governance,
        heads: &mut HashMap<Code, FeedHead>,
        checkpoint_heads: &HashMap<String, (u64, u64)>,
        event: &RecordedEvent,
        outgoing: &mut BTreeMap<Code, Outgoing>,
    ) -> anyhow::Result<()> {
        if event.meta.aggregate_kind == AggregateKind::Organisation {
            governance.apply(event);
            return Ok(());
        }
        let person = event.meta.person_id;
        // Relationships as they stood when the event was recorded, just before and after it.
        let at = event.meta.recorded_at;
        let before = governance.related_orgs(person, at);
        governance.apply(event);
        let after = governance.related_orgs(person, at);
        let candidates: BTreeSet<&Code> = before.iter().chain(after.iter()).collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let now = (self.clock)();
        for org in candidates {
            let Some(disclosure) = governance.disclosure(event, org, before.contains(org), now)
            else {
                continue;
            };
            let head = match heads.get_mut(org) {
                Some(h) => h,
                None => {
                    let h = feed_head(&self.feed, org.as_str()).await?;
                    // The feed is the truth of what was sent; the checkpoint, saved only
                    // when every delivery before it was stored, can only be behind it. A
                    // feed behind the checkpoint lost items: deliver nothing more to it.
                    if let Some((number, source)) = checkpoint_heads.get(org.as_str())
                        && (h.number < *number || h.source < *source)
                    {
                        return Err(anyhow!(
                            "the feed of {org} ends at item {} but the checkpoint saw item {number}: the feed stream lost items; its deliveries stop",
                            h.number
                        ));
                    }
                    heads.entry(org.clone()).or_insert(h)
                }
            };
            if event.sequence <= head.source {
                continue; // Delivered before a restart.
            }
            head.number += 1;
            head.source = event.sequence;
            let item = feed_item(governance, event, head.number, disclosure);
            outgoing.entry(org.clone()).or_default().items.push(item);
        }
        Ok(())
    }
}

/// Await the oldest pending deliveries' acknowledgements; the log position they settle.
async fn settle(
    pending: &mut VecDeque<Pending>,
    in_flight: &mut usize,
) -> anyhow::Result<Option<u64>> {
    let Some(oldest) = pending.front_mut() else {
        return Ok(None);
    };
    // Cancel-safe: an acknowledgement is dropped only once it has resolved, so a batch
    // arriving meanwhile never makes an unacknowledged publish count as stored.
    while let Some(ack) = oldest.acks.last_mut() {
        ack.as_mut()
            .await
            .map_err(|e| anyhow!("a delivery was not stored: {e}"))?;
        oldest.acks.pop();
        *in_flight -= 1;
    }
    let source = oldest.source;
    pending.pop_front();
    Ok(Some(source))
}

pub fn wire_disclosure(d: Disclosure) -> v1::Disclosure {
    match d {
        Disclosure::Full => v1::Disclosure::Full,
        Disclosure::IdentifiersOnly => v1::Disclosure::IdentifiersOnly,
    }
}

/// The item a partner is sent: identifiers always; the event only when fully disclosed.
pub fn feed_item(
    governance: &Governance,
    event: &RecordedEvent,
    number: u64,
    disclosure: Disclosure,
) -> v1::FeedItem {
    let meta = &event.meta;
    v1::FeedItem {
        number,
        cursor: String::new(),
        disclosure: wire_disclosure(disclosure) as i32,
        identifiers: Some(v1::EventIdentifiers {
            event_id: meta.event_id.to_string(),
            event_type: event.event.name().to_owned(),
            aggregate_kind: meta.aggregate_kind.as_str().to_owned(),
            aggregate_id: meta.aggregate_id.to_string(),
            person_id: meta.person_id.to_string(),
            nhs_number: governance
                .nhs_number(meta.person_id)
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            version: meta.version,
            occurred_at: Some(carewoven_proto::convert::timestamp(meta.occurred_at)),
            recorded_at: Some(carewoven_proto::convert::timestamp(meta.recorded_at)),
        }),
        event: (disclosure == Disclosure::Full)
            .then(|| carewoven_proto::convert::to_envelope(meta, &event.event)),
        log_position: event.sequence,
    }
}
