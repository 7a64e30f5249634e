//! The one way to follow the event log from a position.
//!
//! A [`Follower`] reads the log in order from a start position, in batches (everything
//! already waiting, up to a limit), rides out broker outages (it reconnects with backoff and
//! resumes right after the last message it handed out), pre-filters by subject so most
//! messages need not be decoded, and ends when its stop token fires. The access index, the
//! views projector, the gateway and the analysts' replay all follow the log through it.
//!
//! A follower says how it is doing: its [`FollowHealth`] (following, reconnecting, ended),
//! which a service's health reports, and the gauges `carewoven_follower_lag_events` and
//! `carewoven_follower_lag_seconds` (label `follower`), set with every batch it hands out.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::subjects;

/// Most messages handed out in one batch unless told otherwise.
pub const DEFAULT_MAX_BATCH: usize = 2000;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One message of the log.
#[derive(Debug, Clone)]
pub struct LogMessage {
    /// Its log position (stream sequence).
    pub sequence: u64,
    pub subject: String,
    pub payload: Bytes,
    /// Messages after it that the consumer had not yet delivered when it was read.
    pub pending: u64,
}

/// What one call to [`Follower::next_batch`] hands out.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The messages that passed the subject filter, in log order.
    pub messages: Vec<LogMessage>,
    /// The last log position this batch covers, filtered-out messages included: a follower
    /// that records its position records this one.
    pub through: u64,
    /// Messages after `through` still waiting when the batch was read (0: caught up).
    pub pending: u64,
}

/// Where a follower is: what a service's health reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowState {
    /// Opened, not yet reading.
    Starting,
    /// Reading the log (or waiting for the next event).
    Following,
    /// The log cannot be read at the moment; retrying (why).
    Reconnecting(String),
    /// The follower is gone: stopped, or dropped by its owner (which stopped at an event it
    /// cannot apply, or failed and may open a new one).
    Ended,
}

/// A shared view of a follower's [`FollowState`]. Cloned into [`FollowOptions::health`];
/// a follower opened with it reports there, and says [`FollowState::Ended`] when dropped.
/// A new follower opened with the same handle (an owner starting over) takes it over.
#[derive(Debug, Clone)]
pub struct FollowHealth(Arc<Mutex<FollowState>>);

impl Default for FollowHealth {
    fn default() -> Self {
        FollowHealth(Arc::new(Mutex::new(FollowState::Starting)))
    }
}

impl FollowHealth {
    pub fn new() -> Self {
        Self::default()
    }

    /// The follower's state now.
    pub fn state(&self) -> FollowState {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the follower is reading the log.
    pub fn is_following(&self) -> bool {
        self.state() == FollowState::Following
    }

    fn set(&self, state: FollowState) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

/// How to follow.
#[derive(Clone)]
pub struct FollowOptions {
    /// Subjects the server delivers (default: every event).
    pub server_filters: Vec<String>,
    /// Most messages per batch.
    pub max_batch: usize,
    /// Messages whose subject this rejects are not handed out (they still advance
    /// [`Batch::through`]). Cheaper than decoding, and cheaper than server-side filters on
    /// a large log when most messages are wanted.
    pub subject_filter: Option<fn(&str) -> bool>,
    /// Where the follower reports its state (a fresh handle nobody watches by default).
    pub health: FollowHealth,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            server_filters: vec![subjects::ALL_EVENTS.to_owned()],
            max_batch: DEFAULT_MAX_BATCH,
            subject_filter: None,
            health: FollowHealth::new(),
        }
    }
}

type Chunks = futures::stream::ReadyChunks<consumer::pull::Ordered>;

/// Follows the log from a position; see the module documentation.
pub struct Follower {
    stream: stream::Stream<()>,
    options: FollowOptions,
    /// The next log position wanted.
    next: u64,
    messages: Option<Chunks>,
    backoff: Duration,
    stop: CancellationToken,
    name: &'static str,
    /// `name` as a metric label (`access_index`, `views_projector`, ...).
    label: String,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.options.health.set(FollowState::Ended);
    }
}

impl Follower {
    /// Follow stream `stream` from log position `from` (inclusive; 0 and 1 both mean the
    /// start). `name` says who follows, in logs. Fails only if the stream cannot be opened.
    pub async fn open(
        js: &jetstream::Context,
        stream: &str,
        from: u64,
        options: FollowOptions,
        name: &'static str,
        stop: CancellationToken,
    ) -> Result<Self, async_nats::Error> {
        let handle = js.get_stream_no_info(stream).await?;
        options.health.set(FollowState::Starting);
        Ok(Follower {
            stream: handle,
            label: name.replace(' ', "_"),
            options,
            next: from.max(1),
            messages: None,
            backoff: FIRST_BACKOFF,
            stop,
            name,
        })
    }

    /// The next log position this follower will hand out.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// Whether anything the server filters select is stored at or after the next position
    /// wanted (so that a bounded read knows it will not wait for the future).
    pub async fn has_pending(&mut self) -> Result<bool, async_nats::Error> {
        let mut consumer = self.stream.create_consumer(self.config()).await?;
        Ok(consumer.info().await?.num_pending > 0)
    }

    fn config(&self) -> consumer::pull::OrderedConfig {
        consumer::pull::OrderedConfig {
            filter_subjects: self.options.server_filters.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: self.next,
            },
            ..Default::default()
        }
    }

    /// Continue from `from` instead (for example after the caller's own state moved on by
    /// other means, or must be read again).
    pub fn seek(&mut self, from: u64) {
        self.next = from.max(1);
        self.messages = None;
    }

    /// The next batch: waits for at least one message, then takes what is already waiting
    /// (up to the batch limit). `None` once the stop token fires. Broker faults are ridden
    /// out here: the consumer is made again from the next position wanted.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            let Some(messages) = self.messages.as_mut() else {
                match self.connect().await {
                    Some(m) => {
                        self.messages = Some(m);
                        continue;
                    }
                    None => return None,
                }
            };
            let chunk = tokio::select! {
                c = messages.next() => c,
                _ = self.stop.cancelled() => return None,
            };
            let Some(chunk) = chunk else {
                tracing::warn!(follower = self.name, "event stream ended; resuming");
                self.options.health.set(FollowState::Reconnecting(
                    "the event stream ended".to_owned(),
                ));
                self.messages = None;
                continue;
            };
            let mut newest_published = None;
            let mut batch = Batch::default();
            let mut interrupted = false;
            for m in chunk {
                let message = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(follower = self.name, error = %e, "event stream interrupted; resuming");
                        interrupted = true;
                        break;
                    }
                };
                let Ok(info) = message.info() else {
                    interrupted = true;
                    break;
                };
                let (sequence, pending) = (info.stream_sequence, info.pending);
                newest_published = Some(info.published.unix_timestamp_nanos());
                if sequence < self.next {
                    continue;
                }
                self.next = sequence + 1;
                batch.through = sequence;
                batch.pending = pending;
                let subject = message.subject.as_str();
                if self
                    .options
                    .subject_filter
                    .is_some_and(|keep| !keep(subject))
                {
                    continue;
                }
                batch.messages.push(LogMessage {
                    sequence,
                    subject: subject.to_owned(),
                    payload: message.payload.clone(),
                    pending,
                });
            }
            if interrupted {
                self.options.health.set(FollowState::Reconnecting(
                    "the event stream was interrupted".to_owned(),
                ));
                self.messages = None;
            }
            if batch.through > 0 {
                self.record_lag(batch.pending, newest_published);
                return Some(batch);
            }
        }
    }

    /// The lag gauges: events still waiting after this batch, and (while any wait) how old
    /// the newest event handed out is; both 0 when caught up.
    fn record_lag(&self, pending: u64, newest_published_nanos: Option<i128>) {
        let seconds = match (pending, newest_published_nanos) {
            (0, _) | (_, None) => 0.0,
            (_, Some(published)) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                ((now - published).max(0) as f64) / 1e9
            }
        };
        let label = self.label.clone();
        metrics::gauge!("carewoven_follower_lag_events", "follower" => label.clone())
            .set(pending as f64);
        metrics::gauge!("carewoven_follower_lag_seconds", "follower" => label).set(seconds);
    }

    async fn connect(&mut self) -> Option<Chunks> {
        loop {
            let consumer = self.stream.create_consumer(self.config()).await;
            let messages = match consumer {
                Ok(c) => c.messages().await.map_err(async_nats::Error::from),
                Err(e) => Err(async_nats::Error::from(e)),
            };
            match messages {
                Ok(m) => {
                    self.backoff = FIRST_BACKOFF;
                    self.options.health.set(FollowState::Following);
                    return Some(m.ready_chunks(self.options.max_batch.max(1)));
                }
                Err(e) => {
                    tracing::warn!(follower = self.name, error = %e, "event log not reachable; retrying");
                    self.options
                        .health
                        .set(FollowState::Reconnecting(e.to_string()));
                    tokio::select! {
                        _ = tokio::time::sleep(self.backoff) => {}
                        _ = self.stop.cancelled() => return None,
                    }
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
