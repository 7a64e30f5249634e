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
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use carewoven_domain::REGISTRY_PERSON;
use carewoven_eventlog::follow::{FollowHealth, FollowOptions, Follower, LogMessage};
use carewoven_governance::{Denial, Governance};
use carewoven_proto::v1;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditLog, AuditRecord};
use crate::checkpoint::{Checkpoint, SaveExtras};

/// People held in memory when the index has a checkpoint and no other figure is given.
pub const DEFAULT_CACHE_PEOPLE: usize = 50_000;

/// Save the checkpoint when this many people changed since the last save...
const SAVE_AFTER_PEOPLE: usize = 20_000;
/// ...or this long after the last save, if anything changed.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// How an index keeps its fold and treats events it cannot decode.
#[derive(Clone, Default)]
pub struct IndexOptions {
    /// Where the fold is persisted ([`crate::checkpoint`]); `None`: in memory only, folded
    /// from the log's start at every start.
    pub checkpoint: Option<PathBuf>,
    /// With a checkpoint, most people read back from it held in memory (0: the default).
    pub cache_people: usize,
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
    checkpoint: Option<Arc<Checkpoint>>,
    /// Registry events applied since the last save (with a checkpoint).
    unsaved_registry: Mutex<Vec<(u64, bytes::Bytes)>>,
    /// The position of the last save.
    saved: AtomicU64,
    /// One save at a time.
    save_lock: tokio::sync::Mutex<()>,
    /// Set once the follower has ended (after its last save).
    finished: watch::Sender<bool>,
    position: watch::Sender<u64>,
    stopped: RwLock<Option<String>>,
    stream: jetstream::stream::Stream,
    options: IndexOptions,
    unattributable: AtomicU64,
    /// The follower's state, for the service's health.
    health: FollowHealth,
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
        let mut handle = js
            .get_stream(stream)
            .await
            .with_context(|| format!("opening stream {stream} for the access index"))?;
        let mut governance = Governance::with_settings(options.settings);
        let mut checkpoint = None;
        let mut start = 0;
        if let Some(path) = &options.checkpoint {
            let info = handle
                .info()
                .await
                .with_context(|| format!("reading stream {stream} for the access index"))?;
            // The stream's name and creation time identify the log the fold is of.
            let identity = format!("{stream}@{}", info.created.unix_timestamp_nanos());
            let log_end = info.state.last_sequence;
            let path = path.clone();
            let c =
                tokio::task::spawn_blocking(move || Checkpoint::open(&path, &identity, log_end))
                    .await
                    .context("opening the access checkpoint")??;
            let c = Arc::new(c);
            let cache = match options.cache_people {
                0 => DEFAULT_CACHE_PEOPLE,
                n => n,
            };
            let resumed = {
                let c = c.clone();
                tokio::task::spawn_blocking(move || c.resume(governance, cache))
                    .await
                    .context("restoring the access checkpoint")??
            };
            governance = resumed.0;
            start = resumed.1.position;
            tracing::info!(
                position = start,
                file = %c.path().display(),
                "access index: starting from its checkpoint"
            );
            checkpoint = Some(c);
        }
        let (position, _) = watch::channel(start);
        let index = AccessIndex {
            inner: Arc::new(Inner {
                governance: RwLock::new(governance),
                checkpoint,
                unsaved_registry: Mutex::default(),
                saved: AtomicU64::new(start),
                finished: watch::channel(false).0,
                save_lock: tokio::sync::Mutex::new(()),
                position,
                stopped: RwLock::new(None),
                stream: handle,
                options,
                unattributable: AtomicU64::new(0),
                health: FollowHealth::new(),
            }),
        };
        let follower = Follower::open(
            &js,
            stream,
            start + 1,
            FollowOptions {
                health: index.inner.health.clone(),
                ..FollowOptions::default()
            },
            "access index",
            stop.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("following stream {stream} for the access index: {e}"))?;
        let me = index.clone();
        tokio::spawn(async move {
            me.clone().follow(follower, stop).await;
            me.inner.finished.send_replace(true);
        });
        Ok(index)
    }

    /// Wait until the follower has ended (its stop token fired, or it stopped at an
    /// undecodable registry event) and, with a checkpoint, made its last save: what a
    /// service awaits on shutdown so that its next start is warm.
    pub async fn finished(&self) {
        let mut rx = self.inner.finished.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Whether the index follows the log (its service's health): `Ended` once it has
    /// stopped (at an undecodable registry event, or with its service).
    pub fn follow_health(&self) -> FollowHealth {
        self.inner.health.clone()
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

    async fn follow(self, mut follower: Follower, stop: CancellationToken) {
        let mut last_save = Instant::now();
        loop {
            let batch = if self.inner.checkpoint.is_some() {
                tokio::select! {
                    b = follower.next_batch() => b,
                    _ = tokio::time::sleep(SAVE_INTERVAL) => {
                        self.save().await;
                        last_save = Instant::now();
                        continue;
                    }
                }
            } else {
                follower.next_batch().await
            };
            let Some(batch) = batch else {
                // Stopping: keep what was folded, so the next start is warm.
                self.save().await;
                return;
            };
            for message in &batch.messages {
                if !self.handle(message).await {
                    return;
                }
            }
            self.inner
                .governance
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .skip_to(batch.through);
            self.inner.position.send_replace(batch.through);
            let unsaved = self.with(Governance::unsaved);
            if unsaved >= SAVE_AFTER_PEOPLE || last_save.elapsed() >= SAVE_INTERVAL {
                self.save().await;
                last_save = Instant::now();
            }
            if stop.is_cancelled() {
                self.save().await;
                return;
            }
        }
    }

    /// Apply one message; `false` if the index must stop.
    async fn handle(&self, message: &LogMessage) -> bool {
        let sequence = message.sequence;
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
            return true;
        };
        // Most events cannot change access: count them without decoding.
        if !Governance::relevant(event_type) {
            return true;
        }
        match carewoven_eventlog::decode(sequence, &message.payload) {
            Ok(event) => {
                self.inner
                    .governance
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply(&event);
                if person == REGISTRY_PERSON && self.inner.checkpoint.is_some() {
                    self.inner
                        .unsaved_registry
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((sequence, message.payload.clone()));
                }
                self.inner.position.send_replace(sequence);
                true
            }
            Err(e) => self.undecodable(sequence, person, &e.to_string()).await,
        }
    }

    /// Save what changed to the checkpoint (if any), with the position it reaches. A failed
    /// save is kept in memory and tried again with the next.
    async fn save(&self) {
        let Some(checkpoint) = self.inner.checkpoint.clone() else {
            return;
        };
        let _one_at_a_time = self.inner.save_lock.lock().await;
        let unsaved = {
            let mut g = self
                .inner
                .governance
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if g.unsaved() == 0 && g.position() <= self.inner.saved.load(Ordering::Relaxed) {
                return;
            }
            g.begin_save()
        };
        let Some(unsaved) = unsaved else { return };
        // Registry events up to the position saved (one applied since stays for the next).
        let registry: Vec<(u64, bytes::Bytes)> = {
            let mut pending = self
                .inner
                .unsaved_registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (now, later) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|(sequence, _)| *sequence <= unsaved.position);
            *pending = later;
            now
        };
        let saved = self.inner.saved.load(Ordering::Relaxed);
        let fold = self.with(|g| SaveExtras::of(g, saved, unsaved.position));
        let position = unsaved.position;
        let result = tokio::task::spawn_blocking({
            let registry = registry.clone();
            move || {
                checkpoint.save(
                    &unsaved,
                    &SaveExtras {
                        registry: &registry,
                        emergency: &fold.emergency,
                        undecodable: &fold.undecodable,
                        feed_heads: &[],
                    },
                )
            }
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        let stored = match result {
            Ok(()) => {
                self.inner.saved.store(position, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "access index: could not save its checkpoint; keeping the changes to save again");
                let mut pending = self
                    .inner
                    .unsaved_registry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let later = std::mem::replace(&mut *pending, registry);
                pending.extend(later);
                false
            }
        };
        self.inner
            .governance
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .end_save(stored);
    }

    /// The checkpoint's position (what a restart would start after), if there is one.
    pub fn saved_position(&self) -> Option<u64> {
        self.inner
            .checkpoint
            .as_ref()
            .map(|_| self.inner.saved.load(Ordering::Relaxed))
    }

    /// Save now and give the checkpoint's digest ([`Checkpoint::digest`]), if there is one.
    pub async fn checkpoint_digest(&self) -> anyhow::Result<Option<String>> {
        self.save().await;
        let Some(c) = self.inner.checkpoint.clone() else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || c.digest().map(Some)).await?
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
