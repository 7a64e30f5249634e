//! Applies the event log to the views, exactly once in effect.
//!
//! Each batch of events is applied in one redb write transaction that also records the log
//! position reached, so after a crash at any point the views and their position agree and
//! projection resumes right after the last committed event. Under load a transaction takes
//! every event already waiting (up to [`MAX_BATCH`]); when idle a single event is committed
//! at once.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use carewoven_eventlog::follow::{FollowOptions, Follower};
use carewoven_eventlog::subjects;
use redb::{Database, ReadableTable};

use crate::project::{BoardChange, apply};
use crate::tables::{META, POSITION, SKIPPED};

/// Most events in one write transaction.
pub const MAX_BATCH: usize = 2000;

/// What to do with an event the projector cannot decode (for example from a newer schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUndecodable {
    /// Stop at it, naming its sequence. The default: never drop an event silently.
    Stop,
    /// Skip it, log that it did, and count it in the file.
    Skip,
}

/// A message from the log: its sequence and payload.
pub struct LogMessage {
    pub sequence: u64,
    pub payload: bytes::Bytes,
}

/// The projector stopped at an event it cannot decode. Events before it in the same batch
/// were committed (with their position), so the views stop exactly before it.
#[derive(Debug, thiserror::Error)]
#[error("projector stopped at log sequence {sequence}: the event cannot be decoded: {reason}")]
pub struct Undecodable {
    pub sequence: u64,
    pub reason: String,
    /// Position and board changes of the events committed before it, if any.
    pub committed: Option<(u64, Vec<BoardChange>)>,
}

/// Apply a batch of log messages in one write transaction, recording the position.
pub fn apply_batch(
    db: &Database,
    messages: &[LogMessage],
    on_undecodable: OnUndecodable,
) -> Result<(u64, Vec<BoardChange>)> {
    if messages.is_empty() {
        return Ok((crate::store::position(db)?, Vec::new()));
    }
    let txn = db.begin_write()?;
    let mut changes = Vec::new();
    let mut skipped = 0u64;
    let mut last = None;
    let mut stopped = None;
    for m in messages {
        match carewoven_eventlog::decode(m.sequence, &m.payload) {
            Ok(event) => changes.extend(apply(&txn, &event)?),
            Err(e) => match on_undecodable {
                OnUndecodable::Stop => {
                    stopped = Some((m.sequence, e.to_string()));
                    break;
                }
                OnUndecodable::Skip => {
                    tracing::warn!(sequence = m.sequence, error = %e, "skipping an undecodable event, as configured");
                    skipped += 1;
                }
            },
        }
        last = Some(m.sequence);
    }
    let committed = match last {
        Some(last) => {
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(POSITION, last)?;
                if skipped > 0 {
                    let before = meta.get(SKIPPED)?.map_or(0, |v| v.value());
                    meta.insert(SKIPPED, before + skipped)?;
                }
            }
            txn.commit()?;
            Some((last, changes))
        }
        None => None,
    };
    match (stopped, committed) {
        (Some((sequence, reason)), committed) => Err(Undecodable {
            sequence,
            reason,
            committed,
        }
        .into()),
        (None, Some(committed)) => Ok(committed),
        (None, None) => Ok((crate::store::position(db)?, Vec::new())),
    }
}

/// An ordered consumer over every event from `from` (inclusive), for one-shot reads to a
/// known end (rebuilds, benchmarks).
pub async fn ordered_messages(
    js: &jetstream::Context,
    stream: &str,
    from: u64,
) -> Result<consumer::pull::Ordered> {
    let stream = js
        .get_stream_no_info(stream)
        .await
        .context("opening the event stream")?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects::ALL_EVENTS.to_owned(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer")?;
    consumer
        .messages()
        .await
        .context("reading the event stream")
}

/// Run the live projector until `stop` fires or an event cannot be decoded (with
/// [`OnUndecodable::Stop`]). NATS outages are ridden out by the follower: it reconnects and
/// resumes after the last message it handed out; anything a rebuild swap already covered is
/// skipped.
pub async fn run(
    views: std::sync::Arc<crate::state::Views>,
    js: jetstream::Context,
    stream: String,
    on_undecodable: OnUndecodable,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut follower = loop {
        let opened = Follower::open(
            &js,
            &stream,
            views.position() + 1,
            FollowOptions {
                max_batch: MAX_BATCH,
                health: views.projector_health.clone(),
                ..FollowOptions::default()
            },
            "views projector",
            stop.clone(),
        )
        .await;
        match opened {
            Ok(f) => break f,
            Err(e) => {
                tracing::warn!(error = %e, "event log not reachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
            }
        }
    };
    while let Some(batch) = follower.next_batch().await {
        let guard = views.writer.lock().await;
        // Skip anything a rebuild swap already covered.
        let applied = views.position();
        let batch: Vec<LogMessage> = batch
            .messages
            .into_iter()
            .filter(|m| m.sequence > applied)
            .map(|m| LogMessage {
                sequence: m.sequence,
                payload: m.payload,
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let db = views.db();
        let result = tokio::task::block_in_place(|| apply_batch(&db, &batch, on_undecodable));
        match result {
            Ok((position, changes)) => views.committed(position, changes),
            Err(e) => {
                if let Some(Undecodable {
                    committed: Some((position, changes)),
                    ..
                }) = e.downcast_ref::<Undecodable>()
                {
                    views.committed(*position, changes.clone());
                }
                let reason = format!("{e:#}");
                tracing::error!(error = %reason, "projector stopped");
                *views
                    .stopped
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
                return Err(e);
            }
        }
        drop(guard);
    }
    Ok(())
}
