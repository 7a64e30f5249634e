//! The event log on NATS JetStream.
//!
//! One stream holds every domain event (one protobuf `EventEnvelope` per message, see
//! [`subjects`] for the subject scheme) and one marker message per accepted command. A
//! command's events and its marker are appended as one JetStream atomic batch, so:
//!
//! - all of a command's events are stored, or none are;
//! - the first event carries `Nats-Expected-Last-Subject-Sequence` for its aggregate's subject
//!   filter, so of two concurrent commands on one aggregate exactly one is appended
//!   (optimistic concurrency, checked by the server under its lock);
//! - the marker on `cw.cmd.<command_id>` carries an expected last sequence of 0, so a command
//!   id is accepted at most once, forever: not just inside the broker's duplicate window, and
//!   across restarts and service instances, because the marker lives in the log itself.

pub mod subjects;

use std::time::Duration;

use async_nats::jetstream::{self, context::RequestError, stream};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use carewoven_domain::{AggregateKind, Event, EventMeta, RecordedEvent};
use futures::StreamExt;
use jetstream_extra::batch_fetch::{BatchFetchErrorKind, BatchFetchExt};
use jetstream_extra::batch_publish::{BatchPublishErrorKind, BatchPublishExt};
use serde::{Deserialize, Serialize};
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

/// What a command marker records: enough to answer a retry with the original result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command_id: Uuid,
    /// Hash of the command's content, so a reused id with different content is detected.
    pub fingerprint: String,
    pub aggregate_kind: String,
    pub aggregate_id: Uuid,
    pub person_id: Uuid,
    pub first_version: u64,
    pub last_version: u64,
    pub event_ids: Vec<Uuid>,
    pub event_types: Vec<String>,
}

/// A command record as found in the log, with the log position of the command's last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCommand {
    pub record: CommandRecord,
    pub last_event_sequence: u64,
}

/// An aggregate's history.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<RecordedEvent>,
    /// Stream sequence of the aggregate's last event; 0 when it has none.
    pub last_sequence: u64,
}

/// One command's effect, ready to append.
#[derive(Debug, Clone)]
pub struct Append {
    pub person_id: Uuid,
    pub kind: AggregateKind,
    pub aggregate_id: Uuid,
    /// The aggregate's last stream sequence the command was decided against (0: none).
    pub expected_last_sequence: u64,
    pub events: Vec<(EventMeta, Event)>,
    pub record: CommandRecord,
}

#[derive(Clone)]
pub struct EventLog {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream<()>,
    config: LogConfig,
}

const LOAD_BATCH: usize = 1000;
/// The server's limit on messages in one atomic batch, less the marker.
pub const MAX_EVENTS_PER_COMMAND: usize = 999;

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
            description: Some("Carewoven domain events and command markers".to_owned()),
            subjects: vec![
                subjects::ALL_EVENTS.to_owned(),
                subjects::ALL_MARKERS.to_owned(),
            ],
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

    /// Number of messages in the stream (events and markers).
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

    /// Does this person exist?
    pub async fn person_exists(&self, person: Uuid) -> Result<bool, LogError> {
        Ok(self
            .last_on_subject(subjects::person_registered(person))
            .await?
            .is_some())
    }

    /// The marker of an accepted command id, if any.
    pub async fn find_command(&self, command_id: Uuid) -> Result<Option<StoredCommand>, LogError> {
        let Some(msg) = self.last_on_subject(subjects::marker(command_id)).await? else {
            return Ok(None);
        };
        let record: CommandRecord =
            serde_json::from_slice(&msg.payload).map_err(|e| LogError::Undecodable {
                sequence: msg.sequence,
                reason: e.to_string(),
            })?;
        Ok(Some(StoredCommand {
            record,
            last_event_sequence: msg.sequence.saturating_sub(1),
        }))
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
            while let Some(msg) = batch.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) if e.kind() == BatchFetchErrorKind::NoMessages => break,
                    Err(e) => return Err(unavailable(e)),
                };
                got += 1;
                next = msg.sequence + 1;
                history.last_sequence = msg.sequence;
                history.events.push(decode(msg.sequence, &msg.payload)?);
            }
            if got < want {
                break;
            }
        }
        Ok(history)
    }

    /// Append one command's events and its marker atomically.
    pub async fn append(&self, append: Append) -> Result<StoredCommand, LogError> {
        if append.events.is_empty() || append.events.len() > MAX_EVENTS_PER_COMMAND {
            return Err(LogError::Refused(format!(
                "a command must append between 1 and {MAX_EVENTS_PER_COMMAND} events"
            )));
        }
        self.ensure_connected()?;
        let mut batch = self.js.batch_publish().timeout(self.config.timeout).build();
        for (i, (meta, event)) in append.events.iter().enumerate() {
            let mut headers = HeaderMap::new();
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
            let subject = subjects::event(
                append.person_id,
                append.kind,
                append.aggregate_id,
                event.name(),
            );
            let payload = Bytes::from(carewoven_proto::convert::encode_event(meta, event));
            batch
                .add_message(jetstream::message::OutboundMessage::new(
                    subject.into(),
                    payload,
                    Some(headers),
                ))
                .await
                .map_err(batch_error)?;
        }
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let marker = serde_json::to_vec(&append.record)
            .map_err(|e| LogError::Refused(format!("encoding the command record: {e}")))?;
        let ack = batch
            .commit_message(jetstream::message::OutboundMessage::new(
                subjects::marker(append.record.command_id).into(),
                Bytes::from(marker),
                Some(headers),
            ))
            .await
            .map_err(batch_error)?;
        Ok(StoredCommand {
            record: append.record,
            last_event_sequence: ack.sequence.saturating_sub(1),
        })
    }
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
        BatchPublishErrorKind::Request
        | BatchPublishErrorKind::Publish
        | BatchPublishErrorKind::BatchPublishTooManyInflight
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
