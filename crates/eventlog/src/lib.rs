//! The event log on NATS JetStream.
//!
//! One stream holds every domain event, one protobuf `EventEnvelope` per message (see
//! [`subjects`] for the subject scheme).
//!
//! - The first (usually only) event of a command carries `Nats-Expected-Last-Subject-Sequence`
//!   for its aggregate's subject filter, so of two commands decided against the same state of
//!   one aggregate exactly one is appended (optimistic concurrency, checked by the server).
//! - A command with several events appends them as one JetStream atomic batch: all or none.
//!   A single event is one message, atomic by nature, and skips the batch's extra cost.
//! - Every event records its command id (in the envelope) and the command's fingerprint (in
//!   the `Carewoven-Command-Fingerprint` header). Commands address their aggregate
//!   deterministically (new aggregates take an id derived from the command id), so a retried
//!   command finds its own events in the aggregate's history: idempotency lives in the log,
//!   forever, independent of the broker's duplicate window and of any process's memory.

pub mod follow;
pub mod subjects;

use std::time::Duration;

use async_nats::jetstream::{self, context::RequestError, stream};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use carewoven_domain::{AggregateKind, Event, EventMeta, RecordedEvent};
use futures::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use jetstream_extra::batch_publish::{BatchPublishErrorKind, BatchPublishExt};
use uuid::Uuid;

pub use carewoven_proto::convert::DecodeError;

/// Stream settings. Sync policy is a property of the server (`jetstream.sync_interval`), see
/// `deploy/nats-server.conf`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub stream: String,
    pub replicas: usize,
    /// Largest single event message the stream accepts, in bytes.
    pub max_message_bytes: i32,
    /// How long to wait for the server before answering UNAVAILABLE.
    pub timeout: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            stream: "CAREWOVEN".to_owned(),
            replicas: 1,
            max_message_bytes: 1024 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The broker could not be reached or did not answer in time.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The server has too many atomic batches open; nothing was stored and a retry may pass.
    #[error("event log busy: {0}")]
    Busy(String),
    /// Another append to the same aggregate (or the same command id) won the race.
    #[error("concurrent append to the same aggregate or command id")]
    Conflict,
    /// A stored message could not be decoded: the log holds something this build cannot read.
    #[error("event at sequence {sequence} cannot be decoded: {reason}")]
    Undecodable { sequence: u64, reason: String },
    /// The server refused the request for a reason a retry will not fix.
    #[error("event log refused the request: {0}")]
    Refused(String),
}

/// Header carrying the fingerprint of the command that produced an event.
pub const FINGERPRINT_HEADER: &str = "Carewoven-Command-Fingerprint";

/// An event as stored, with the fingerprint of the command that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub recorded: RecordedEvent,
    pub fingerprint: Option<String>,
}

/// An aggregate's history.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<StoredEvent>,
    /// Stream sequence of the aggregate's last event; 0 when it has none.
    pub last_sequence: u64,
}

/// What one command appended, as found in (or just written to) the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEffect {
    pub fingerprint: Option<String>,
    pub events: Vec<RecordedEvent>,
}

impl CommandEffect {
    /// Log position of the command's last event.
    pub fn last_sequence(&self) -> u64 {
        self.events.last().map_or(0, |e| e.sequence)
    }
}

impl History {
    /// The events an earlier attempt of this command appended, if any.
    pub fn command(&self, command_id: Uuid) -> Option<CommandEffect> {
        let mine: Vec<&StoredEvent> = self
            .events
            .iter()
            .filter(|e| e.recorded.meta.command_id == command_id)
            .collect();
        let first = mine.first()?;
        Some(CommandEffect {
            fingerprint: first.fingerprint.clone(),
            events: mine.iter().map(|e| e.recorded.clone()).collect(),
        })
    }

    pub fn recorded(&self) -> impl Iterator<Item = &RecordedEvent> {
        self.events.iter().map(|e| &e.recorded)
    }
}

/// One command's effect, ready to append.
#[derive(Debug, Clone)]
pub struct Append {
    pub person_id: Uuid,
    pub kind: AggregateKind,
    pub aggregate_id: Uuid,
    /// The aggregate's last stream sequence the command was decided against (0: none).
    pub expected_last_sequence: u64,
    pub fingerprint: String,
    pub events: Vec<(EventMeta, Event)>,
}

#[derive(Clone)]
pub struct EventLog {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream<()>,
    config: LogConfig,
}

const LOAD_BATCH: usize = 1000;
/// The server's limit on messages in one atomic batch.
pub const MAX_EVENTS_PER_COMMAND: usize = 1000;

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl EventLog {
    /// Create or update the stream so it matches `config`, then return a handle.
    pub async fn open(client: async_nats::Client, config: LogConfig) -> Result<Self, LogError> {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.timeout);
        let stream_config = stream::Config {
            name: config.stream.clone(),
            description: Some("Carewoven domain events".to_owned()),
            subjects: vec![subjects::ALL_EVENTS.to_owned()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            retention: stream::RetentionPolicy::Limits,
            max_message_size: config.max_message_bytes,
            // Care records are never hard-deleted: corrections are new events.
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            allow_atomic_publish: true,
            ..Default::default()
        };
        // Never shrink the log's replication because one instance was started with a lower
        // setting: that would quietly weaken durability for everyone. (A missing stream is
        // created below; an unreachable server is reported there.)
        if let Ok(mut existing) = js.get_stream(&config.stream).await {
            let current = existing
                .info()
                .await
                .map_err(unavailable)?
                .config
                .num_replicas;
            if current > config.replicas {
                return Err(LogError::Refused(format!(
                    "stream {} has {current} replicas; refusing to reduce them to {} (set the replicas to {current})",
                    config.stream, config.replicas
                )));
            }
        }
        js.create_or_update_stream(stream_config)
            .await
            .map_err(|e| LogError::Unavailable(format!("creating or updating the stream: {e}")))?;
        let stream = js
            .get_stream_no_info(&config.stream)
            .await
            .map_err(unavailable)?;
        Ok(EventLog {
            client,
            js,
            stream,
            config,
        })
    }

    pub fn stream_name(&self) -> &str {
        &self.config.stream
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Fail fast when the connection is down rather than wait for a timeout.
    pub fn ensure_connected(&self) -> Result<(), LogError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(LogError::Unavailable(format!(
                "not connected to NATS ({other})"
            ))),
        }
    }

    /// Number of messages (events) in the stream.
    pub async fn message_count(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        Ok(info.state.messages)
    }

    /// Last stream sequence.
    pub async fn last_sequence(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        Ok(info.state.last_sequence)
    }

    /// Whether any message exists on an exact subject; returns its sequence.
    async fn last_on_subject(
        &self,
        subject: String,
    ) -> Result<Option<jetstream::message::StreamMessage>, LogError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Does this person exist? A "no" is confirmed with the stream leader: a direct get may
    /// be answered by a replica that has not caught up yet.
    pub async fn person_exists(&self, person: Uuid) -> Result<bool, LogError> {
        let subject = subjects::person_registered(person);
        if self.last_on_subject(subject.clone()).await?.is_some() {
            return Ok(true);
        }
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The first event of an aggregate, read from the stream leader (never a lagging
    /// replica): for telling whether a creating command's own first attempt created it.
    pub async fn first_event(
        &self,
        person: Uuid,
        kind: AggregateKind,
        aggregate: Uuid,
    ) -> Result<Option<StoredEvent>, LogError> {
        let filter = subjects::aggregate(person, kind, aggregate);
        match self
            .stream
            .get_first_raw_message_by_subject(&filter, 1)
            .await
        {
            Ok(msg) => Ok(Some(StoredEvent {
                recorded: decode(msg.sequence, &msg.payload)?,
                fingerprint: msg
                    .headers
                    .get(FINGERPRINT_HEADER)
                    .map(|v| v.as_str().to_owned()),
            })),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Every event of one aggregate, in order.
    pub async fn load(
        &self,
        person: Uuid,
        kind: AggregateKind,
        aggregate: Uuid,
    ) -> Result<History, LogError> {
        self.read_filtered(&subjects::aggregate(person, kind, aggregate), 1, usize::MAX)
            .await
    }

    /// Events on a subject filter from `from_sequence`, at most `limit` of them.
    pub async fn read_filtered(
        &self,
        filter: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<History, LogError> {
        let mut history = History::default();
        let mut next = from_sequence.max(1);
        while history.events.len() < limit {
            let want = LOAD_BATCH.min(limit - history.events.len());
            let mut batch = match self
                .js
                .get_batch(&self.config.stream, want)
                .subject(filter)
                .sequence(next)
                .send()
                .await
            {
                Ok(b) => b,
                Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
                Err(e) => return Err(unavailable(e)),
            };
            let mut got = 0;
            let mut pending = None;
            while let Some(msg) = batch.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
                    Err(e) => return Err(unavailable(e)),
                };
                got += 1;
                next = msg.sequence + 1;
                pending = msg
                    .headers
                    .get("Nats-Num-Pending")
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                history.last_sequence = msg.sequence;
                history.events.push(StoredEvent {
                    recorded: decode(msg.sequence, &msg.payload)?,
                    fingerprint: msg
                        .headers
                        .get(FINGERPRINT_HEADER)
                        .map(|v| v.as_str().to_owned()),
                });
            }
            // The server may end a batch early (at its byte limit): go on while it says more
            // messages match.
            let done = match pending {
                Some(left) => left == 0,
                None => got < want,
            };
            if got == 0 || done {
                break;
            }
        }
        Ok(history)
    }

    /// Append one command's events atomically, under the aggregate's concurrency check.
    ///
    /// When the server has too many atomic batches open on the stream (back-pressure), the
    /// refused batch stored nothing, so it is retried with a new batch until the timeout.
    pub async fn append(&self, append: Append) -> Result<CommandEffect, LogError> {
        if append.events.is_empty() || append.events.len() > MAX_EVENTS_PER_COMMAND {
            return Err(LogError::Refused(format!(
                "a command must append between 1 and {MAX_EVENTS_PER_COMMAND} events"
            )));
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.append_once(&append).await {
                Err(LogError::Busy(detail)) => {
                    if tokio::time::Instant::now() + backoff > deadline {
                        return Err(LogError::Unavailable(detail));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    async fn append_once(&self, append: &Append) -> Result<CommandEffect, LogError> {
        self.ensure_connected()?;
        let messages: Vec<jetstream::message::OutboundMessage> = append
            .events
            .iter()
            .enumerate()
            .map(|(i, (meta, event))| {
                let mut headers = HeaderMap::new();
                headers.insert(FINGERPRINT_HEADER, append.fingerprint.as_str());
                if i == 0 {
                    headers.insert(
                        "Nats-Expected-Last-Subject-Sequence",
                        HeaderValue::from(append.expected_last_sequence.to_string().as_str()),
                    );
                    headers.insert(
                        "Nats-Expected-Last-Subject-Sequence-Subject",
                        HeaderValue::from(
                            subjects::aggregate(append.person_id, append.kind, append.aggregate_id)
                                .as_str(),
                        ),
                    );
                }
                jetstream::message::OutboundMessage::new(
                    subjects::event(
                        append.person_id,
                        append.kind,
                        append.aggregate_id,
                        event.name(),
                    )
                    .into(),
                    Bytes::from(carewoven_proto::convert::encode_event(meta, event)),
                    Some(headers),
                )
            })
            .collect();
        let last_sequence = if messages.len() == 1 {
            self.publish_one(messages.into_iter().next()).await?
        } else {
            self.publish_batch(messages).await?
        };
        let first_sequence = last_sequence + 1 - append.events.len() as u64;
        Ok(CommandEffect {
            fingerprint: Some(append.fingerprint.clone()),
            events: append
                .events
                .iter()
                .zip(first_sequence..)
                .map(|((meta, event), sequence)| RecordedEvent {
                    sequence,
                    meta: meta.clone(),
                    event: event.clone(),
                })
                .collect(),
        })
    }

    /// One message: atomic by itself, and cheaper than a batch.
    async fn publish_one(
        &self,
        message: Option<jetstream::message::OutboundMessage>,
    ) -> Result<u64, LogError> {
        let message = message.ok_or_else(|| LogError::Refused("nothing to append".into()))?;
        let headers = message.headers.unwrap_or_default();
        let ack = self
            .js
            .publish_with_headers(message.subject, headers, message.payload)
            .await
            .map_err(unavailable)?
            .await
            .map_err(|e| {
                if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence {
                    LogError::Conflict
                } else {
                    unavailable(e)
                }
            })?;
        Ok(ack.sequence)
    }

    /// Several messages as one atomic batch: all stored, or none.
    async fn publish_batch(
        &self,
        messages: Vec<jetstream::message::OutboundMessage>,
    ) -> Result<u64, LogError> {
        let mut batch = self.js.batch_publish().timeout(self.config.timeout).build();
        let mut messages = messages.into_iter();
        let last = messages.next_back();
        for message in messages {
            batch.add_message(message).await.map_err(batch_error)?;
        }
        let last = last.ok_or_else(|| LogError::Refused("nothing to append".into()))?;
        let ack = batch.commit_message(last).await.map_err(batch_error)?;
        Ok(ack.sequence)
    }
}

/// How often a service's NATS client pings its server (see [`connect`]).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Connect to NATS (a comma-separated URL list for a cluster). The client keeps
/// reconnecting for as long as it lives, so a service recovers by itself when NATS returns;
/// the first connection is also made in the background. With an nkey seed it authenticates
/// with it (every configuration in `deploy/`, where each service has its own identity).
/// The client pings every [`PING_INTERVAL`], so a server that stops answering without
/// closing the connection (a paused or partitioned node) is left for another within about
/// three intervals (async-nats' default of 60 s kept every service on a paused cluster node
/// for a minute: `just faults`).
pub async fn connect(
    urls: &str,
    name: &str,
    timeout: Duration,
    nkey_seed: Option<&str>,
) -> Result<async_nats::Client, LogError> {
    let servers = urls
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LogError::Refused(format!("the NATS URL list {urls:?}: {e}")))?;
    let options = match nkey_seed.map(str::trim) {
        Some(seed) if !seed.is_empty() => async_nats::ConnectOptions::with_nkey(seed.to_owned()),
        _ => async_nats::ConnectOptions::new(),
    };
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(PING_INTERVAL)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::info!(%other, "NATS event"),
            }
        })
        .connect(servers)
        .await
        .map_err(|e| LogError::Unavailable(format!("connecting to NATS at {urls}: {e}")))
}

fn batch_error(e: jetstream_extra::batch_publish::BatchPublishError) -> LogError {
    use std::error::Error as _;
    let api_code = e
        .source()
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(|api| api.error_code());
    if api_code == Some(jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE) {
        return LogError::Conflict;
    }
    match e.kind() {
        BatchPublishErrorKind::BatchPublishTooManyInflight => LogError::Busy(e.to_string()),
        BatchPublishErrorKind::Request
        | BatchPublishErrorKind::Publish
        | BatchPublishErrorKind::BatchPublishIncomplete => LogError::Unavailable(e.to_string()),
        _ => match e.source() {
            Some(source) => LogError::Refused(format!("{e}: {source}")),
            None => LogError::Refused(e.to_string()),
        },
    }
}

/// Decode one stored event.
pub fn decode(sequence: u64, payload: &[u8]) -> Result<RecordedEvent, LogError> {
    let (meta, event) =
        carewoven_proto::convert::decode_event(payload).map_err(|e| LogError::Undecodable {
            sequence,
            reason: e.to_string(),
        })?;
    Ok(RecordedEvent {
        sequence,
        meta,
        event,
    })
}

impl From<RequestError> for LogError {
    fn from(e: RequestError) -> Self {
        unavailable(e)
    }
}
