//! The access index: the governance fold, kept current by following the event log.
//!
//! Every service that authorises runs one. It is eventually consistent, so a refusal is
//! never given on a stale view: before refusing, the check waits (within its deadline) until
//! the index has applied the log up to the log's last position at that moment, and decides
//! again. A grant on a stale view is possible only within the follow lag (milliseconds),
//! and only for access the log had granted until just before.
//!
//! Faults stay local. An event about a person that the index cannot decode closes only that
//! person's record ([`Governance::mark_undecodable`]: every decision about them fails closed,
//! since it may have been an objection); everyone else is decided as before. A message on a
//! subject that names no person cannot be attributed to anyone: it is skipped, logged and
//! counted ([`AccessIndex::unattributable`]). Only an undecodable registry event (the nil
//! person: organisations, services, agreements) stops every decision, because it may have
//! ended anyone's agreement. An operator who has looked at an undecodable event may let the
//! index treat it as applied ([`IndexOptions::skip_undecodable`],
//! `--index-skip-undecodable`); each such skip is written to the audit stream before it
//! takes effect.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use carewoven_domain::REGISTRY_PERSON;
use carewoven_governance::{Denial, Governance};
use carewoven_proto::v1;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditLog, AuditRecord};

/// How an index treats events it cannot decode.
#[derive(Clone, Default)]
pub struct IndexOptions {
    /// Log sequences of undecodable events an operator lets the index treat as applied (the
    /// person's record stays open). Each skip is audited (`UNDECODABLE_SKIPPED`) when it is
    /// applied; if the audit cannot be stored, the person's record is closed instead.
    pub skip_undecodable: BTreeSet<u64>,
    /// Where skips are audited (required for any skip to take effect).
    pub audit: Option<AuditLog>,
    /// The service running the index, named in the audit record.
    pub service: &'static str,
    /// The deployment's governance settings (the set period).
    pub settings: carewoven_governance::Settings,
}

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
    options: IndexOptions,
    unattributable: AtomicU64,
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
        Self::start_with(js, stream, IndexOptions::default(), stop).await
    }

    /// [`AccessIndex::start`], with an operator's `options`.
    pub async fn start_with(
        js: jetstream::Context,
        stream: &str,
        options: IndexOptions,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let handle = js
            .get_stream_no_info(stream)
            .await
            .with_context(|| format!("opening stream {stream} for the access index"))?;
        let (position, _) = watch::channel(0);
        let index = AccessIndex {
            inner: Arc::new(Inner {
                governance: RwLock::new(Governance::with_settings(options.settings)),
                position,
                stopped: RwLock::new(None),
                stream: handle,
                options,
                unattributable: AtomicU64::new(0),
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

    /// Messages skipped because their subject names no person.
    pub fn unattributable(&self) -> u64 {
        self.inner.unattributable.load(Ordering::Relaxed)
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
        self.catch_up(deadline).await?;
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
                let Some((person, _, _, event_type)) =
                    carewoven_eventlog::subjects::parse_event(&message.subject)
                else {
                    let count = self.inner.unattributable.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        sequence,
                        unattributable = count,
                        "access index: a message on a subject that names no person cannot be attributed to anyone; skipped"
                    );
                    self.inner.position.send_replace(sequence);
                    continue;
                };
                // Most events cannot change access: count them without decoding.
                if !Governance::relevant(event_type) {
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
                        if !self.undecodable(sequence, person, &e.to_string()).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// An event about `person` at `sequence` cannot be decoded: skip it if the operator said
    /// so (and the skip is audited), else close that person's record. Only an undecodable
    /// registry event stops the index; then `false`.
    async fn undecodable(&self, sequence: u64, person: Uuid, reason: &str) -> bool {
        if self.inner.options.skip_undecodable.contains(&sequence) {
            if self.audit_skip(sequence, person).await {
                tracing::warn!(
                    sequence,
                    "access index: skipping an undecodable event, as the operator configured (audited)"
                );
                self.inner.position.send_replace(sequence);
                return true;
            }
            tracing::error!(
                sequence,
                "access index: the configured skip of an undecodable event could not be audited, so it is not applied"
            );
        }
        if person == REGISTRY_PERSON {
            // Fail closed for everyone: it may have ended any organisation's agreement.
            let reason = format!(
                "the registry event at log sequence {sequence} cannot be decoded: {reason}"
            );
            tracing::error!(error = %reason, "access index stopped");
            *self
                .inner
                .stopped
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason);
            return false;
        }
        // Fail closed for this person only: the event may have been an objection.
        self.inner
            .governance
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .mark_undecodable(person, sequence);
        self.inner.position.send_replace(sequence);
        tracing::error!(
            sequence,
            error = %reason,
            "access index: an event cannot be decoded; its person's record is closed to everyone until it is fixed or skipped (--index-skip-undecodable)"
        );
        tracing::debug!(sequence, %person, "the person whose record is closed");
        true
    }

    /// Store the audit record of an operator's skip; whether it was stored.
    async fn audit_skip(&self, sequence: u64, person: Uuid) -> bool {
        let Some(audit) = &self.inner.options.audit else {
            return false;
        };
        let mut record = AuditRecord::operator(
            (person != REGISTRY_PERSON).then_some(person),
            v1::AuditAction::UndecodableSkipped,
        )
        .detail(format!(
            "{}: access index, --index-skip-undecodable",
            self.inner.options.service
        ));
        record.log_position = sequence;
        match audit.record(&record).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(sequence, error = %e.message(), "could not audit a skip");
                false
            }
        }
    }
}
