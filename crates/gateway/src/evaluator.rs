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
//! already holds (the last item's `Carewoven-Source-Sequence`). Publishes are pipelined (at
//! most [`STORES_IN_FLIGHT`] evaluation batches unacknowledged; what is decided meanwhile
//! waits and becomes one larger batch) and deduplicated by the server on
//! `<org>:<source sequence>`; if any is not acknowledged the evaluator starts over from the
//! checkpoint. The log is read on a connection of its own, so reading ahead never waits
//! behind the feed's fsynced writes.
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

/// Stores sent and not yet acknowledged at most; beyond, what is decided waits in the outbox
/// and becomes one larger store.
const STORES_IN_FLIGHT: usize = 8;
/// Events read from the log at a time at most.
pub const CHUNK: usize = 2_000;
/// Events decided while a store is in flight at most, before reading waits for it (each
/// partner's items among them become one feed message, so a store holds at most one message
/// per partner and 512 KiB of items).
const OUTBOX_EVENTS: usize = 20_000;
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
    /// Where feed messages are published.
    pub js: jetstream::Context,
    /// Where the event log is read: its own connection, so that reading ahead never waits
    /// behind the feed's publishes (the server handles a connection's messages in order, and
    /// under `sync_interval: always` each stored write waits for its fsync).
    reader: jetstream::Context,
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

/// The feed messages of one evaluation batch, sent and not yet acknowledged.
struct InFlight {
    /// The first log position of the evaluation batch these messages came from.
    source: u64,
    acks: Vec<Ack>,
}

/// A store's acknowledgement, awaitable by reference so that [`settle`] may be cancelled (by
/// the next batch arriving) without losing track of it.
type Ack = futures::future::BoxFuture<
    'static,
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
>;

/// One partner's items decided and not yet sent.
#[derive(Default)]
struct Outgoing {
    items: Vec<v1::FeedItem>,
}

/// What is decided and not yet sent to the feed stream.
#[derive(Default)]
struct Outbox {
    outgoing: BTreeMap<Code, Outgoing>,
    /// The log position of the first event decided since the last send.
    first: Option<u64>,
    /// Events decided since the last send.
    events: usize,
    /// Items sent since start.
    deliveries: u64,
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
            reader: js.clone(),
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

    /// Read the event log through `reader` (a connection of its own), not the publisher's.
    pub fn reading_from(mut self, reader: jetstream::Context) -> Self {
        self.reader = reader;
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
                    .reader
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
            &self.reader,
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
        // Decided but not yet sent (while the previous store is in flight), and being stored.
        let mut outbox = Outbox::default();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut evaluated_total = 0u64;
        let mut last_seen = start;
        let mut saved = start;
        let mut registry: Vec<(u64, bytes::Bytes)> = Vec::new();
        let mut last_save = tokio::time::Instant::now();
        self.report(&outbox, &in_flight, last_seen, evaluated_total);
        let mut stopping = false;
        loop {
            if stopping && !checkpointed {
                self.drain(&mut outbox, &mut in_flight).await?;
                return Ok(());
            }
            // The checkpoint barrier: now and then, and when stopping (so the next start is
            // warm), store every delivery decided and save.
            if stopping
                || (checkpointed
                    && (last_save.elapsed() >= SAVE_INTERVAL
                        || governance.unsaved() >= SAVE_AFTER_PEOPLE)
                    && last_seen > saved)
            {
                self.drain(&mut outbox, &mut in_flight).await?;
                self.report(&outbox, &in_flight, last_seen, evaluated_total);
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
            // Wait for the next events. While a store is in flight, go on reading and
            // deciding (up to OUTBOX_EVENTS events): what is decided meanwhile is sent as
            // the next store when this one finishes, so the slower the storage, the larger
            // (and fewer) the stores.
            let next = if in_flight.is_empty() {
                tokio::select! {
                    m = follower.next_batch() => m,
                    _ = tokio::time::sleep(SAVE_INTERVAL), if checkpointed && last_seen > saved => continue,
                }
            } else {
                tokio::select! {
                    biased;
                    m = follower.next_batch(), if outbox.events < OUTBOX_EVENTS => m,
                    settled = settle(&mut in_flight) => {
                        settled?;
                        self.send(&mut outbox, &mut in_flight).await?;
                        self.report(&outbox, &in_flight, last_seen, evaluated_total);
                        continue;
                    }
                    _ = stop.cancelled() => None,
                }
            };
            let Some(batch) = next else {
                stopping = true;
                continue;
            };
            // An event that stops evaluation (an undecodable registry event) still lets
            // everything decided before it be stored.
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
                        &mut outbox.outgoing,
                    )
                    .await?;
                    anyhow::Ok((sequence, true))
                };
                match step.await {
                    Ok((sequence, evaluated)) => {
                        outbox.first.get_or_insert(sequence);
                        outbox.events += 1;
                        last_seen = sequence;
                        evaluated_total += u64::from(evaluated);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failure {
                self.drain(&mut outbox, &mut in_flight).await?;
                return Err(e);
            }
            outbox.first.get_or_insert(batch.through);
            last_seen = last_seen.max(batch.through);
            if in_flight.len() < STORES_IN_FLIGHT {
                self.send(&mut outbox, &mut in_flight).await?;
            }
            self.report(&outbox, &in_flight, last_seen, evaluated_total);
        }
    }

    /// Send what the outbox holds as the next store.
    async fn send(
        &self,
        outbox: &mut Outbox,
        in_flight: &mut VecDeque<InFlight>,
    ) -> anyhow::Result<()> {
        let Some(source) = outbox.first.take() else {
            return Ok(());
        };
        outbox.events = 0;
        let mut acks = Vec::new();
        for (org, out) in std::mem::take(&mut outbox.outgoing) {
            outbox.deliveries += out.items.len() as u64;
            publish(&self.js, &org, out.items, &mut acks).await?;
        }
        if !acks.is_empty() {
            in_flight.push_back(InFlight { source, acks });
        }
        Ok(())
    }

    /// Store everything decided so far, and wait until it is stored.
    async fn drain(
        &self,
        outbox: &mut Outbox,
        in_flight: &mut VecDeque<InFlight>,
    ) -> anyhow::Result<()> {
        self.send(outbox, in_flight).await?;
        while settle(in_flight).await?.is_some() {}
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

    fn report(
        &self,
        outbox: &Outbox,
        in_flight: &VecDeque<InFlight>,
        last_seen: u64,
        evaluated: u64,
    ) {
        // Everything before the oldest decision not yet stored is settled.
        let unsettled = in_flight.front().map(|f| f.source).or(outbox.first);
        let delivered_through = match unsettled {
            Some(source) => source.saturating_sub(1),
            None => last_seen,
        };
        self.progress.send_replace(Progress {
            delivered_through,
            evaluated,
            deliveries: outbox.deliveries,
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

/// Await the oldest store's acknowledgements; the log position they settle.
async fn settle(in_flight: &mut VecDeque<InFlight>) -> anyhow::Result<Option<u64>> {
    let Some(oldest) = in_flight.front_mut() else {
        return Ok(None);
    };
    // Cancel-safe: an acknowledgement is dropped only once it has resolved, so a batch
    // arriving meanwhile never makes an unacknowledged store count as stored.
    while let Some(ack) = oldest.acks.first_mut() {
        ack.as_mut()
            .await
            .map_err(|e| anyhow!("feed messages were not stored: {e}"))?;
        drop(oldest.acks.remove(0));
    }
    let source = oldest.source;
    in_flight.pop_front();
    Ok(Some(source))
}

/// Publish `items` (consecutive numbers of `org`'s feed) as one feed message, or several
/// when they would not fit in one: pipelined JetStream publishes, each deduplicated by the
/// server on `<org>:<last item's log position>`, so that a message sent again after a restart
/// is stored once. The messages are sent, in order, when this returns; their
/// acknowledgements are added to `acks`, to be awaited.
async fn publish(
    js: &jetstream::Context,
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
        let ack = js
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
