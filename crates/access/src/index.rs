//! The access index: the governance fold, kept current by following the event log.
//!
//! Every service that authorises runs one. It is eventually consistent, so a refusal is
//! never given on a stale view: before refusing, the check waits (within its deadline) until
//! the index has applied the log up to the log's last position at that moment, and decides
//! again. A grant on a stale view is possible only within the follow lag (milliseconds),
//! and only for access the log had granted until just before.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use carewoven_governance::{Denial, Governance};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{}", .0.message)]
    Denied(Denial),
    #[error("access decisions are unavailable: {0}")]
    Unavailable(String),
}

impl AccessError {
    pub fn to_status(&self) -> tonic::Status {
        match self {
            AccessError::Denied(d) => crate::grpc::permission_denied(d),
            AccessError::Unavailable(m) => {
                tonic::Status::unavailable(format!("access decisions are unavailable, retry: {m}"))
            }
        }
    }
}

struct Inner {
    governance: RwLock<Governance>,
    position: watch::Sender<u64>,
    stopped: RwLock<Option<String>>,
    stream: jetstream::stream::Stream<()>,
}

/// A shared, live [`Governance`].
#[derive(Clone)]
pub struct AccessIndex {
    inner: Arc<Inner>,
}

impl AccessIndex {
    /// Start following the log `stream` from its beginning; the follower stops with `stop`.
    pub async fn start(
        js: jetstream::Context,
        stream: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let handle = js
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("opening stream {stream} for the access index"))?;
        let (position, _) = watch::channel(0);
        let settings = crate::governance_settings()?;
        let index = AccessIndex {
            inner: Arc::new(Inner {
                governance: RwLock::new(Governance::with_settings(settings)),
                position,
                stopped: RwLock::new(None),
                stream: handle,
            }),
        };
        let follower = index.clone();
        tokio::spawn(async move { follower.follow(stop).await });
        Ok(index)
    }

    /// Log position applied so far.
    pub fn position(&self) -> u64 {
        *self.inner.position.borrow()
    }

    /// Run `f` on the current governance state.
    pub fn with<T>(&self, f: impl FnOnce(&Governance) -> T) -> T {
        f(&self
            .inner
            .governance
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn stopped(&self) -> Option<String> {
        self.inner
            .stopped
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Wait until the index has applied the log at least to `position`.
    pub async fn wait_for(&self, position: u64, deadline: Duration) -> Result<(), AccessError> {
        if self.position() < position
            && let Some(reason) = self.stopped()
        {
            return Err(AccessError::Unavailable(format!(
                "the access index has stopped: {reason}"
            )));
        }
        let mut rx = self.inner.position.subscribe();
        let reached = tokio::time::timeout(deadline, rx.wait_for(|p| *p >= position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AccessError::Unavailable(match self.stopped() {
                Some(reason) => format!("the access index has stopped: {reason}"),
                None => format!(
                    "the access index had applied the log to {} of {position} at the deadline",
                    self.position()
                ),
            })),
        }
    }

    /// Wait until the index has applied the log up to its end at this moment.
    pub async fn catch_up(&self, deadline: Duration) -> Result<(), AccessError> {
        let last = tokio::time::timeout(deadline, self.inner.stream.get_info())
            .await
            .map_err(|_| AccessError::Unavailable("the event log did not answer".to_owned()))?
            .map_err(|e| AccessError::Unavailable(format!("the event log: {e}")))?
            .state
            .last_sequence;
        self.wait_for(last, deadline).await
    }

    /// Decide with `f`; a refusal is confirmed against the log's current end before it is
    /// given.
    pub async fn check<T>(
        &self,
        deadline: Duration,
        f: impl Fn(&Governance) -> Result<T, Denial>,
    ) -> Result<T, AccessError> {
        if let Some(reason) = self.stopped() {
            return Err(AccessError::Unavailable(format!(
                "the access index has stopped: {reason}"
            )));
        }
        if let Ok(granted) = self.with(&f) {
            return Ok(granted);
        }
        let last = tokio::time::timeout(deadline, self.inner.stream.get_info())
            .await
            .map_err(|_| AccessError::Unavailable("the event log did not answer".to_owned()))?
            .map_err(|e| AccessError::Unavailable(format!("the event log: {e}")))?
            .state
            .last_sequence;
        self.wait_for(last, deadline).await?;
        self.with(&f).map_err(AccessError::Denied)
    }

    async fn follow(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let from = self.position() + 1;
            let consumer = self
                .inner
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: carewoven_eventlog::subjects::ALL_EVENTS.to_owned(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    },
                    ..Default::default()
                })
                .await;
            let messages = match consumer {
                Ok(c) => c.messages().await.map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::Error::from(e)),
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "access index: event log not reachable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = stop.cancelled() => return,
                };
                let Some(Ok(message)) = next else {
                    tracing::warn!("access index: event stream interrupted; resuming");
                    break;
                };
                let Ok(info) = message.info() else { break };
                let sequence = info.stream_sequence;
                if sequence <= self.position() {
                    continue;
                }
                // Most events cannot change access: count them without decoding.
                let relevant = carewoven_eventlog::subjects::parse_event(&message.subject)
                    .is_none_or(|(_, _, _, event_type)| Governance::relevant(event_type));
                if !relevant {
                    self.inner.position.send_replace(sequence);
                    continue;
                }
                match carewoven_eventlog::decode(sequence, &message.payload) {
                    Ok(event) => {
                        self.inner
                            .governance
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .apply(&event);
                        self.inner.position.send_replace(sequence);
                    }
                    Err(e) => {
                        // Fail closed: an event that cannot be read may be an objection.
                        let reason = e.to_string();
                        tracing::error!(error = %reason, "access index stopped");
                        *self
                            .inner
                            .stopped
                            .write()
                            .unwrap_or_else(PoisonError::into_inner) = Some(reason);
                        return;
                    }
                }
            }
        }
    }
}
