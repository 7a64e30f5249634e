//! What the suite checks after a fault: every acknowledged command id is in the log exactly
//! once (one append), the views equal a clean rebuild of the same log, and every partner
//! feed is numbered 1..n without gaps or repeats and holds each event owed to it once.
//!
//! The log and the feeds are read incrementally (ordered consumers from where the previous
//! read stopped), so a check after every round costs only what was appended since.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_nats::jetstream::{self, consumer};
use carewoven_gateway::evaluator::{FEED_STREAM, decode_batch};
use carewoven_views::projector::{LogMessage, MAX_BATCH, OnUndecodable, apply_batch};
use futures::StreamExt;
use prost::Message;
use uuid::Uuid;

const STREAM: &str = "CAREWOVEN";
/// Longest wait for the next message of a read whose end is known.
const NEXT: Duration = Duration::from_secs(30);

/// A JetStream context on `urls` (a comma-separated list, as the services take it) as the
/// identity `seed`.
pub async fn connect(urls: &str, seed: &str) -> Result<jetstream::Context> {
    let client = carewoven_eventlog::connect(
        urls,
        "carewoven-faults",
        Duration::from_secs(10),
        Some(seed),
    )
    .await
    .context("connecting to NATS for the checks")?;
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(10));
    Ok(js)
}

/// The event log as read so far: each command id's appends (runs of consecutive sequences)
/// and the events themselves, applied to a reference views file built from nothing.
pub struct LogScan {
    js: jetstream::Context,
    /// The next sequence to read.
    next: u64,
    /// Per command id, its appends: (first sequence, last sequence).
    appends: HashMap<Uuid, Vec<(u64, u64)>>,
    last: Option<(Uuid, u64)>,
    /// Sequences of events about a person (not the registry).
    pub person_events: Vec<u64>,
    reference: redb::Database,
    _reference_dir: tempfile::TempDir,
}

/// How the acknowledged ids are found in the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogCheck {
    pub acked: u64,
    /// Acknowledged, not in the log.
    pub lost: u64,
    /// Acknowledged, appended more than once.
    pub duplicated: u64,
    /// Any command id (acknowledged or not) appended more than once.
    pub duplicated_any: u64,
}

impl LogScan {
    /// `seed` is an identity that may follow the log (the views').
    pub async fn new(url: &str, seed: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let reference = carewoven_views::store::open(&dir.path().join("reference.redb"))?;
        Ok(LogScan {
            js: connect(url, seed).await?,
            next: 1,
            appends: HashMap::new(),
            last: None,
            person_events: Vec::new(),
            reference,
            _reference_dir: dir,
        })
    }

    /// The log's last sequence now.
    pub async fn last_sequence(&self) -> Result<u64> {
        Ok(self
            .js
            .get_stream_no_info(STREAM)
            .await?
            .get_info()
            .await?
            .state
            .last_sequence)
    }

    /// Read everything up to the log's end as it is now; returns that end.
    pub async fn catch_up(&mut self) -> Result<u64> {
        let end = self.last_sequence().await?;
        if end < self.next {
            return Ok(end);
        }
        let mut messages =
            carewoven_views::projector::ordered_messages(&self.js, STREAM, self.next)
                .await?
                .ready_chunks(MAX_BATCH);
        while self.next <= end {
            let chunk = tokio::time::timeout(NEXT, messages.next())
                .await
                .context("reading the log for the check: no message")?
                .context("the log ended during the check")?;
            let mut batch = Vec::with_capacity(chunk.len());
            for m in chunk {
                let m = m.map_err(|e| anyhow!("reading the log: {e}"))?;
                let sequence = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
                if sequence > end {
                    break;
                }
                let envelope = carewoven_proto::v1::EventEnvelope::decode(m.payload.as_ref())
                    .with_context(|| format!("decoding the event at {sequence}"))?;
                let command = Uuid::parse_str(&envelope.command_id).unwrap_or_default();
                match self.last {
                    Some((c, s)) if c == command && s + 1 == sequence => {
                        if let Some(run) = self.appends.get_mut(&command).and_then(|r| r.last_mut())
                        {
                            run.1 = sequence;
                        }
                    }
                    _ => self
                        .appends
                        .entry(command)
                        .or_default()
                        .push((sequence, sequence)),
                }
                self.last = Some((command, sequence));
                if Uuid::parse_str(&envelope.person_id).is_ok_and(|p| !p.is_nil()) {
                    self.person_events.push(sequence);
                }
                batch.push(LogMessage {
                    sequence,
                    payload: m.payload.clone(),
                });
                self.next = sequence + 1;
            }
            let db = &self.reference;
            tokio::task::block_in_place(|| apply_batch(db, &batch, OnUndecodable::Stop))?;
        }
        Ok(end)
    }

    /// How the acknowledged ids are found in what was read.
    pub fn check(&self, acked: &HashSet<Uuid>) -> LogCheck {
        let mut out = LogCheck {
            acked: acked.len() as u64,
            ..Default::default()
        };
        for id in acked {
            match self.appends.get(id).map_or(0, Vec::len) {
                0 => out.lost += 1,
                1 => {}
                _ => out.duplicated += 1,
            }
        }
        out.duplicated_any = self.appends.values().filter(|r| r.len() > 1).count() as u64;
        out
    }

    /// The digest and position of the reference views (a clean rebuild of what was read).
    pub fn reference_digest(&self) -> Result<(String, u64)> {
        Ok((
            carewoven_views::store::digest(&self.reference)?,
            carewoven_views::store::position(&self.reference)?,
        ))
    }
}

/// Digest and position of a views file that no process has open.
pub fn views_digest(file: &Path) -> Result<(String, u64)> {
    let db = carewoven_views::store::open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    Ok((
        carewoven_views::store::digest(&db)?,
        carewoven_views::store::position(&db)?,
    ))
}

/// One partner's feed as read so far.
#[derive(Default, Debug)]
pub struct Feed {
    /// The last item number read.
    pub last: u64,
    /// Item numbers out of sequence (a gap or a repeat).
    pub out_of_order: u64,
    /// Log positions delivered more than once.
    pub repeated: u64,
    pub positions: HashSet<u64>,
    /// The greatest log position delivered.
    pub max_position: u64,
}

/// Every partner feed in `CW_FEED` as read so far.
pub struct FeedScan {
    js: jetstream::Context,
    next: u64,
    pub feeds: BTreeMap<String, Feed>,
}

/// What the feeds check found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedCheck {
    pub partners: u64,
    pub items: u64,
    /// Numbers not following the previous one (gaps or repeats), summed over partners.
    pub out_of_order: u64,
    /// Log positions delivered twice to the same partner.
    pub repeated: u64,
    /// Events about the load's people (all owed to their practice) missing from its feed.
    pub missing: u64,
}

impl FeedCheck {
    pub fn ok(&self) -> bool {
        self.out_of_order == 0 && self.repeated == 0 && self.missing == 0
    }
}

impl FeedScan {
    /// `seed` is an identity that may read the feeds (the gateway's).
    pub async fn new(url: &str, seed: &str) -> Result<Self> {
        Ok(FeedScan {
            js: connect(url, seed).await?,
            next: 1,
            feeds: BTreeMap::new(),
        })
    }

    /// Read everything up to the feed stream's end as it is now.
    pub async fn catch_up(&mut self) -> Result<()> {
        let stream = match self.js.get_stream_no_info(FEED_STREAM).await {
            Ok(s) => s,
            Err(_) => return Ok(()),
        };
        let end = match stream.get_info().await {
            Ok(info) => info.state.last_sequence,
            Err(_) => return Ok(()),
        };
        if end < self.next {
            return Ok(());
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: self.next,
                },
                ..Default::default()
            })
            .await
            .context("reading the feeds")?;
        let mut messages = consumer.messages().await?;
        while self.next <= end {
            let m = tokio::time::timeout(NEXT, messages.next())
                .await
                .context("reading the feeds: no message")?
                .context("the feed stream ended")?
                .map_err(|e| anyhow!("reading the feeds: {e}"))?;
            let sequence = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
            self.next = sequence + 1;
            // cw.feed.<ORG>.<last>
            let org = m
                .subject
                .split('.')
                .nth(2)
                .context("a feed subject without an organisation")?
                .to_owned();
            let batch = decode_batch(m.headers.as_ref(), m.payload.as_ref())
                .with_context(|| format!("decoding feed message {sequence}"))?;
            let feed = self.feeds.entry(org).or_default();
            for item in batch.items {
                if item.number != feed.last + 1 {
                    feed.out_of_order += 1;
                }
                feed.last = feed.last.max(item.number);
                if !feed.positions.insert(item.log_position) {
                    feed.repeated += 1;
                }
                feed.max_position = feed.max_position.max(item.log_position);
            }
        }
        Ok(())
    }

    /// The checks, with the events about the load's people that `org` (their practice) is
    /// owed.
    pub fn check(&self, org: &str, owed: &[u64]) -> FeedCheck {
        let mut out = FeedCheck {
            partners: self.feeds.len() as u64,
            ..Default::default()
        };
        for feed in self.feeds.values() {
            out.items += feed.positions.len() as u64;
            out.out_of_order += feed.out_of_order;
            out.repeated += feed.repeated;
        }
        let empty = HashSet::new();
        let positions = self.feeds.get(org).map_or(&empty, |f| &f.positions);
        out.missing = owed.iter().filter(|p| !positions.contains(p)).count() as u64;
        out
    }

    /// The greatest log position delivered to `org` so far.
    pub fn max_position(&self, org: &str) -> u64 {
        self.feeds.get(org).map_or(0, |f| f.max_position)
    }
}

/// Fail with `what` unless `ok`.
pub fn require(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if !ok {
        bail!("{}", what());
    }
    Ok(())
}
