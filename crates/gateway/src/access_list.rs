//! "Who accessed this person's record": an index of the audit stream and of the partner feeds
//! by person, so `AuditService.ListRecordAccess` reads one person's entries without scanning.
//!
//! Nothing is only here: the index is derived from `CW_AUDIT` (records stored alone, and
//! `AuditGroup`s of records stored together) and from `CW_FEED` (each `FeedBatch` item *is*
//! the record of what was disclosed to whom, so deliveries have no audit record of their
//! own). One task follows both streams with ordered consumers and writes each chunk of
//! messages in one redb transaction together with the stream sequences it reached, so after a
//! crash it resumes exactly after what it committed; deleting the file rebuilds it. A listing
//! first waits until the index has reached both streams' last sequences at the moment it is
//! asked (read-your-writes: a read audited just before is listed).
//!
//! Keys are (person, source, stream sequence, index within the message): a person's entries
//! of one source in stream order. A page never splits the entries of one stored message, so
//! a stream sequence is a position to resume after.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_nats::jetstream::{self, consumer, stream};
use carewoven_access::audit::decode_message;
use carewoven_proto::v1;
use futures::StreamExt;
use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::evaluator::{FEED_STREAM, decode_batch};

/// (person, source, stream sequence, index in the message) → encoded `AuditEvent`.
const ENTRIES: TableDefinition<(u128, u8, u64, u32), &[u8]> = TableDefinition::new("entries");
/// Stream sequences applied: "audit", "feed".
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A key of [`ENTRIES`] and its value.
type Row = ((u128, u8, u64, u32), Vec<u8>);

const AUDIT: u8 = 0;
const FEED: u8 = 1;
/// Messages written per transaction at most.
const CHUNK: usize = 2_000;

/// Stream sequences the index has applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub audit: u64,
    pub feed: u64,
}

/// One listed access: from the audit stream (`position`) or a feed (`delivery_position`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: u64,
    pub delivery_position: u64,
    pub event: v1::AuditEvent,
}

#[derive(Clone)]
pub struct AccessList {
    db: Arc<Database>,
    applied: watch::Receiver<Applied>,
    audit: stream::Stream<()>,
    feed: stream::Stream<()>,
    /// A temporary directory holding the file when none was configured.
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl AccessList {
    /// Open (or create) the index at `file` (a temporary file when `None`: rebuilt at each
    /// start) and follow both streams until `stop`.
    pub async fn start(
        js: jetstream::Context,
        file: Option<&Path>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let (dir, path) = match file {
            Some(f) => (None, f.to_owned()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("carewoven-access-list")
                    .tempdir()
                    .context("a temporary directory for the access-list index")?;
                let path = dir.path().join("access-list.redb");
                (Some(Arc::new(dir)), path)
            }
        };
        let db = Database::create(&path)
            .with_context(|| format!("opening the access-list index {}", path.display()))?;
        let txn = db.begin_write()?;
        let start = {
            txn.open_table(ENTRIES)?;
            let meta = txn.open_table(META)?;
            Applied {
                audit: meta.get("audit")?.map(|v| v.value()).unwrap_or(0),
                feed: meta.get("feed")?.map(|v| v.value()).unwrap_or(0),
            }
        };
        txn.commit()?;
        let db = Arc::new(db);
        let audit = js
            .get_stream_no_info(carewoven_access::audit::AUDIT_STREAM)
            .await
            .context("opening the audit stream")?;
        let feed = js
            .get_stream_no_info(FEED_STREAM)
            .await
            .context("opening the feed stream")?;
        let (tx, applied) = watch::channel(start);
        tokio::spawn(follow(db.clone(), audit.clone(), feed.clone(), tx, stop));
        Ok(AccessList {
            db,
            applied,
            audit,
            feed,
            _dir: dir,
        })
    }

    /// Wait until the index holds everything both streams held when this was called.
    pub async fn current(&self, deadline: Duration) -> anyhow::Result<()> {
        let audit = self.audit.clone().get_info().await?.state.last_sequence;
        let feed = self.feed.clone().get_info().await?.state.last_sequence;
        let mut applied = self.applied.clone();
        tokio::time::timeout(
            deadline,
            applied.wait_for(|a| a.audit >= audit && a.feed >= feed),
        )
        .await
        .map_err(|_| anyhow!("the access-list index is behind the audit and feed streams"))?
        .map_err(|_| anyhow!("the access-list index has stopped"))?;
        Ok(())
    }

    /// `person`'s entries after audit position `after` and feed position `after_delivery`,
    /// oldest first (by when they were stored), about `limit` of them (never splitting one
    /// stored message's); and whether more follow.
    pub fn for_person(
        &self,
        person: Uuid,
        after: u64,
        after_delivery: u64,
        limit: usize,
    ) -> anyhow::Result<(Vec<Entry>, bool)> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let p = person.as_u128();
        let read = |source: u8, after: u64| -> anyhow::Result<(Vec<(u64, v1::AuditEvent)>, bool)> {
            let mut out: Vec<(u64, v1::AuditEvent)> = Vec::new();
            let range = table
                .range((p, source, after.saturating_add(1), 0)..=(p, source, u64::MAX, u32::MAX))?;
            for row in range {
                let (key, value) = row?;
                let (_, _, sequence, _) = key.value();
                if out.len() >= limit && out.last().is_some_and(|(s, _)| *s != sequence) {
                    return Ok((out, true));
                }
                out.push((sequence, v1::AuditEvent::decode(value.value())?));
            }
            Ok((out, false))
        };
        let (audit, audit_more) = read(AUDIT, after)?;
        let (feed, feed_more) = read(FEED, after_delivery)?;
        // Merge by time, keeping each source's order; stop after `limit`, but not inside
        // one stored message.
        let at = |e: &v1::AuditEvent| e.at.map(|t| (t.seconds, t.nanos)).unwrap_or_default();
        let (mut a, mut f) = (audit.into_iter().peekable(), feed.into_iter().peekable());
        let mut out: Vec<Entry> = Vec::new();
        let mut last: Option<(u8, u64)> = None;
        loop {
            let take_audit = match (a.peek(), f.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((_, x)), Some((_, y))) => at(x) <= at(y),
            };
            let next_key = if take_audit {
                a.peek().map(|(s, _)| (AUDIT, *s))
            } else {
                f.peek().map(|(s, _)| (FEED, *s))
            };
            if out.len() >= limit && next_key != last {
                return Ok((out, true));
            }
            last = next_key;
            let entry = if take_audit {
                a.next().map(|(s, event)| Entry {
                    position: s,
                    delivery_position: 0,
                    event,
                })
            } else {
                f.next().map(|(s, event)| Entry {
                    position: 0,
                    delivery_position: s,
                    event,
                })
            };
            out.extend(entry);
        }
        Ok((out, audit_more || feed_more))
    }
}

enum Stored {
    Audit(jetstream::Message),
    Feed(jetstream::Message),
}

/// Follow both streams into the index until `stop`, starting over after any failure.
async fn follow(
    db: Arc<Database>,
    audit: stream::Stream<()>,
    feed: stream::Stream<()>,
    applied: watch::Sender<Applied>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let from = *applied.borrow();
        match follow_once(&db, &audit, &feed, &applied, from, &stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "access-list index restarting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn messages_after(
    stream: &stream::Stream<()>,
    after: u64,
) -> anyhow::Result<consumer::pull::Ordered> {
    let deliver_policy = if after == 0 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

async fn follow_once(
    db: &Arc<Database>,
    audit: &stream::Stream<()>,
    feed: &stream::Stream<()>,
    applied: &watch::Sender<Applied>,
    from: Applied,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let audits = messages_after(audit, from.audit)
        .await
        .context("following the audit stream")?
        .map(|m| {
            m.map(Stored::Audit)
                .map_err(|e| anyhow!("the audit stream: {e}"))
        });
    let feeds = messages_after(feed, from.feed)
        .await
        .context("following the feed stream")?
        .map(|m| {
            m.map(Stored::Feed)
                .map_err(|e| anyhow!("the feed stream: {e}"))
        });
    let mut chunks = futures::stream::select(audits, feeds).ready_chunks(CHUNK);
    let mut at = from;
    loop {
        let chunk = tokio::select! {
            c = chunks.next() => c.ok_or_else(|| anyhow!("the streams ended"))?,
            _ = stop.cancelled() => return Ok(()),
        };
        let mut rows: Vec<Row> = Vec::new();
        for stored in chunk {
            match stored? {
                Stored::Audit(m) => {
                    let sequence = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
                    at.audit = at.audit.max(sequence);
                    audit_rows(&m, sequence, &mut rows);
                }
                Stored::Feed(m) => {
                    let info = m.info().map_err(|e| anyhow!("{e}"))?;
                    let sequence = info.stream_sequence;
                    let stored_at = prost_types::Timestamp {
                        seconds: info.published.unix_timestamp(),
                        nanos: info.published.nanosecond() as i32,
                    };
                    at.feed = at.feed.max(sequence);
                    feed_rows(&m, sequence, stored_at, &mut rows);
                }
            }
        }
        let db = db.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let txn = db.begin_write()?;
            {
                let mut entries = txn.open_table(ENTRIES)?;
                for (key, value) in &rows {
                    entries.insert(*key, value.as_slice())?;
                }
                let mut meta = txn.open_table(META)?;
                meta.insert("audit", at.audit)?;
                meta.insert("feed", at.feed)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .context("writing the access-list index")??;
        applied.send_replace(at);
    }
}

fn audit_rows(m: &jetstream::Message, sequence: u64, rows: &mut Vec<Row>) {
    let events = match decode_message(&m.subject, &m.payload) {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(sequence, error = %e, "an undecodable audit message is not listed in any access list");
            return;
        }
    };
    for (i, event) in events.iter().enumerate() {
        let Ok(person) = Uuid::parse_str(&event.person_id) else {
            continue; // Names no person: in nobody's access list.
        };
        rows.push((
            (person.as_u128(), AUDIT, sequence, i as u32),
            event.encode_to_vec(),
        ));
    }
}

fn feed_rows(
    m: &jetstream::Message,
    sequence: u64,
    at: prost_types::Timestamp,
    rows: &mut Vec<Row>,
) {
    let Some(organisation) = m.subject.split('.').nth(2) else {
        return;
    };
    let batch = match decode_batch(m.headers.as_ref(), &m.payload) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(sequence, error = %e, "an undecodable feed message is not listed in any access list");
            return;
        }
    };
    for (i, item) in batch.items.iter().enumerate() {
        let Some(ids) = &item.identifiers else {
            continue;
        };
        let Ok(person) = Uuid::parse_str(&ids.person_id) else {
            continue;
        };
        let event = v1::AuditEvent {
            audit_id: String::new(),
            at: Some(at),
            organisation: organisation.to_owned(),
            person_id: ids.person_id.clone(),
            action: v1::AuditAction::FeedDelivery as i32,
            purpose: v1::Purpose::DirectCare as i32,
            outcome: v1::AuditOutcome::Permitted as i32,
            detail: ids.event_type.clone(),
            log_position: item.log_position,
            feed_number: item.number,
            disclosure: item.disclosure,
            ..Default::default()
        };
        rows.push((
            (person.as_u128(), FEED, sequence, i as u32),
            event.encode_to_vec(),
        ));
    }
}
