//! The audit stream: who accessed which person's record, when, for what purpose, and with
//! what outcome, in its own JetStream stream (`CW_AUDIT`, file storage, no deletes, no
//! purges). A record written alone is one protobuf `AuditEvent` on its own subject
//! `cw.audit.<person|none>.<organisation>.<action>`.
//!
//! Group commit: every [`AuditLog::record`] goes through one writer per process, which
//! stores everything waiting while its previous write was in flight as one message (an
//! `AuditGroup` on [`GROUP_SUBJECT`]), so concurrent reads share one write and one fsync
//! under `sync_interval: always`, and each caller still returns only once its own record is
//! acknowledged. A record that finds the writer idle is stored alone, as before. Readers
//! decode both with [`decode_message`] and match a grouped record by the subject it would
//! have had ([`event_subject`], [`subject_matches`]).
//!
//! Calls without a valid identity are not written one by one (anyone can make them, as fast
//! as they like): [`AuditLog::record_refusal`] counts them per caller address, reason and
//! action within each minute, and one record per key with its `count` is written when the
//! minute ends ([`TallyFlusher`]) and on shutdown. At most [`UNAUTHENTICATED_KEYS_PER_MINUTE`]
//! keys are counted in a minute; the rest share one overflow record, so a service writes at
//! most `UNAUTHENTICATED_KEYS_PER_MINUTE + 1` such records a minute, however it is called.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use carewoven_governance::Identity;
use carewoven_proto::v1;
use chrono::{DateTime, Utc};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const AUDIT_STREAM: &str = "CW_AUDIT";
pub const AUDIT_SUBJECTS: &str = "cw.audit.>";
/// The subject of messages carrying several records (`AuditGroup`): no person, no
/// organisation in it.
pub const GROUP_SUBJECT: &str = "cw.audit.group";
/// Most records stored in one group message.
const GROUP_MAX_RECORDS: usize = 1024;
/// Most bytes of records in one group message (far below the server's `max_payload`).
const GROUP_MAX_BYTES: usize = 256 * 1024;
/// The person token for accesses that name no person.
pub const NO_PERSON: &str = "none";
/// The organisation token for calls without a valid identity.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// The organisation token for what a service did on its operator's setting.
pub const OPERATOR: &str = "operator";
/// Most distinct (caller address, reason, action, service) keys of unauthenticated calls
/// counted in one minute; calls beyond them are counted in one overflow record.
pub const UNAUTHENTICATED_KEYS_PER_MINUTE: usize = 100;
/// The reason of the record counting unauthenticated calls beyond the bound.
pub const OVERFLOW_REASON: &str = "UNAUTHENTICATED_OVERFLOW";
/// Unwritten tally records kept while the audit stream cannot be reached (about ten
/// minutes' worth at the bound); beyond it the oldest are dropped, with an error logged.
const TALLY_BACKLOG_MAX: usize = 10 * (UNAUTHENTICATED_KEYS_PER_MINUTE + 1);

/// The subject filter for every access to one person's record.
pub fn person_filter(person: Uuid) -> String {
    format!("cw.audit.{person}.>")
}

/// The records one stored audit message carries: one `AuditEvent`, or an `AuditGroup` on
/// [`GROUP_SUBJECT`].
pub fn decode_message(
    subject: &str,
    payload: &[u8],
) -> Result<Vec<v1::AuditEvent>, prost::DecodeError> {
    if subject == GROUP_SUBJECT {
        Ok(v1::AuditGroup::decode(payload)?.records)
    } else {
        Ok(vec![v1::AuditEvent::decode(payload)?])
    }
}

/// The subject a record is (or, in a group, would have been) stored on.
pub fn event_subject(event: &v1::AuditEvent) -> String {
    let person = if event.person_id.is_empty() {
        NO_PERSON
    } else {
        event.person_id.as_str()
    };
    let action = v1::AuditAction::try_from(event.action).unwrap_or(v1::AuditAction::Unspecified);
    format!(
        "cw.audit.{person}.{}.{}",
        event.organisation,
        action_token(action)
    )
}

/// Whether NATS subject `subject` matches `filter` (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for f in filter.split('.') {
        match (f, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(s)) if f == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

fn action_token(action: v1::AuditAction) -> &'static str {
    match action {
        v1::AuditAction::Unspecified => "unspecified",
        v1::AuditAction::RecordRead => "record_read",
        v1::AuditAction::FeedDelivery => "feed_delivery",
        v1::AuditAction::AuditRead => "audit_read",
        v1::AuditAction::Command => "command",
        v1::AuditAction::FeedSubscribe => "feed_subscribe",
        v1::AuditAction::Replay => "replay",
        v1::AuditAction::BreakGlass => "break_glass",
        v1::AuditAction::FindPerson => "find_person",
        v1::AuditAction::RelationshipEnded => "relationship_ended",
        v1::AuditAction::UndecodableSkipped => "undecodable_skipped",
    }
}

/// One access to record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub who: Option<Identity>,
    pub person: Option<Uuid>,
    pub action: v1::AuditAction,
    pub purpose: v1::Purpose,
    pub outcome: v1::AuditOutcome,
    pub reason: String,
    pub detail: String,
    pub log_position: u64,
    pub feed_number: u64,
    pub disclosure: v1::Disclosure,
    /// The caller's address (calls without a valid identity).
    pub caller: Option<IpAddr>,
    /// How many calls this record stands for (0: one).
    pub count: u64,
    /// When the first and last counted call happened (default: now).
    pub at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// Acting for no organisation: the service itself, on its operator's setting
    /// ([`OPERATOR`]).
    pub by_operator: bool,
}

impl AuditRecord {
    fn new(who: Option<&Identity>, person: Option<Uuid>, action: v1::AuditAction) -> Self {
        AuditRecord {
            who: who.cloned(),
            person,
            action,
            purpose: v1::Purpose::DirectCare,
            outcome: v1::AuditOutcome::Permitted,
            reason: String::new(),
            detail: String::new(),
            log_position: 0,
            feed_number: 0,
            disclosure: v1::Disclosure::Unspecified,
            caller: None,
            count: 0,
            at: None,
            last_at: None,
            by_operator: false,
        }
    }

    /// What a service did on its operator's setting, about `person` if it names one.
    pub fn operator(person: Option<Uuid>, action: v1::AuditAction) -> Self {
        AuditRecord {
            by_operator: true,
            ..Self::new(None, person, action)
        }
    }

    /// A permitted access for individual care.
    pub fn permitted(who: &Identity, person: Option<Uuid>, action: v1::AuditAction) -> Self {
        Self::new(Some(who), person, action)
    }

    /// A refused access (`who` is `None` when the caller could not be identified).
    pub fn refused(
        who: Option<&Identity>,
        person: Option<Uuid>,
        action: v1::AuditAction,
        reason: &str,
    ) -> Self {
        AuditRecord {
            outcome: v1::AuditOutcome::Refused,
            reason: reason.to_owned(),
            ..Self::new(who, person, action)
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The caller's address (calls without a valid identity are counted per address).
    pub fn caller(mut self, caller: Option<IpAddr>) -> Self {
        self.caller = caller;
        self
    }

    fn organisation(&self) -> &str {
        match &self.who {
            Some(w) => w.organisation.as_str(),
            None if self.by_operator => OPERATOR,
            None => UNAUTHENTICATED,
        }
    }

    pub fn subject(&self) -> String {
        let person = self
            .person
            .map(|p| p.to_string())
            .unwrap_or_else(|| NO_PERSON.to_owned());
        format!(
            "cw.audit.{person}.{}.{}",
            self.organisation(),
            action_token(self.action)
        )
    }

    pub fn to_event(&self) -> v1::AuditEvent {
        let at = self.at.unwrap_or_else(Utc::now);
        v1::AuditEvent {
            audit_id: Uuid::now_v7().to_string(),
            at: Some(carewoven_proto::convert::timestamp(at)),
            organisation: self.organisation().to_owned(),
            user: self
                .who
                .as_ref()
                .and_then(|w| w.user.as_ref())
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
            person_id: self.person.map(|p| p.to_string()).unwrap_or_default(),
            action: self.action as i32,
            purpose: self.purpose as i32,
            outcome: self.outcome as i32,
            reason: self.reason.clone(),
            detail: self.detail.clone(),
            log_position: self.log_position,
            feed_number: self.feed_number,
            disclosure: self.disclosure as i32,
            count: self.count,
            caller_address: self.caller.map(|a| a.to_string()).unwrap_or_default(),
            last_at: self.last_at.map(carewoven_proto::convert::timestamp),
        }
    }
}

/// What unauthenticated calls are counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TallyKey {
    caller: Option<IpAddr>,
    reason: String,
    action: v1::AuditAction,
    detail: String,
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

impl Counted {
    fn new(at: DateTime<Utc>) -> Self {
        Counted {
            count: 1,
            first: at,
            last: at,
        }
    }

    fn add(&mut self, at: DateTime<Utc>) {
        self.count += 1;
        self.last = self.last.max(at);
    }
}

/// One minute's unauthenticated calls.
struct Window {
    minute: i64,
    counts: HashMap<TallyKey, Counted>,
    /// Calls of keys beyond [`UNAUTHENTICATED_KEYS_PER_MINUTE`].
    overflow: Option<Counted>,
}

impl Window {
    fn records(self) -> Vec<AuditRecord> {
        let record = |key: &TallyKey, c: Counted| {
            let mut r = AuditRecord::refused(None, None, key.action, &key.reason)
                .detail(key.detail.clone())
                .caller(key.caller);
            r.count = c.count;
            r.at = Some(c.first);
            r.last_at = Some(c.last);
            r
        };
        let mut out: Vec<AuditRecord> =
            self.counts.iter().map(|(key, c)| record(key, *c)).collect();
        out.sort_by_key(|r| r.at);
        if let Some(c) = self.overflow {
            let key = TallyKey {
                caller: None,
                reason: OVERFLOW_REASON.to_owned(),
                action: v1::AuditAction::Unspecified,
                detail: format!(
                    "calls without a valid identity beyond {UNAUTHENTICATED_KEYS_PER_MINUTE} distinct callers in this minute"
                ),
            };
            out.push(record(&key, c));
        }
        out
    }
}

/// Counts of unauthenticated calls: the current minute, and records of past minutes not
/// yet written.
#[derive(Default)]
struct Tally {
    current: Option<Window>,
    ready: VecDeque<AuditRecord>,
}

impl Tally {
    fn count(&mut self, key: TallyKey, at: DateTime<Utc>) {
        let minute = at.timestamp().div_euclid(60);
        if self.current.as_ref().is_some_and(|w| w.minute != minute) {
            self.close();
        }
        let window = self.current.get_or_insert_with(|| Window {
            minute,
            counts: HashMap::new(),
            overflow: None,
        });
        if let Some(c) = window.counts.get_mut(&key) {
            c.add(at);
        } else if window.counts.len() < UNAUTHENTICATED_KEYS_PER_MINUTE {
            window.counts.insert(key, Counted::new(at));
        } else {
            match &mut window.overflow {
                Some(c) => c.add(at),
                None => window.overflow = Some(Counted::new(at)),
            }
        }
    }

    /// Move the current window's records to those ready to be written.
    fn close(&mut self) {
        if let Some(window) = self.current.take() {
            self.ready.extend(window.records());
        }
        self.trim();
    }

    fn trim(&mut self) {
        let mut dropped = 0u64;
        while self.ready.len() > TALLY_BACKLOG_MAX {
            if let Some(r) = self.ready.pop_front() {
                dropped += r.count;
            }
        }
        if dropped > 0 {
            tracing::error!(
                calls = dropped,
                "the audit stream has been unreachable too long; counts of unauthenticated calls were dropped"
            );
        }
    }

    /// Records to write now: past minutes', and the current one's if `all` or it is over.
    fn take(&mut self, all: bool, now: DateTime<Utc>) -> Vec<AuditRecord> {
        let over = self
            .current
            .as_ref()
            .is_some_and(|w| w.minute < now.timestamp().div_euclid(60));
        if all || over {
            self.close();
        }
        self.ready.drain(..).collect()
    }
}

/// Writes the counts of unauthenticated calls at each minute's end; [`TallyFlusher::finish`]
/// writes what is left (call it once the server has stopped taking calls).
pub struct TallyFlusher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TallyFlusher {
    /// Write every count still held, then stop.
    pub async fn finish(self) {
        self.stop.cancel();
        if self.task.await.is_err() {
            tracing::warn!("the audit tally writer ended abnormally");
        }
    }
}

/// A record waiting for the group writer, and who to tell its stream sequence.
struct Submitted {
    subject: String,
    event: v1::AuditEvent,
    stored: oneshot::Sender<Result<u64, String>>,
}

/// Writes to and reads from the audit stream.
#[derive(Clone)]
pub struct AuditLog {
    js: jetstream::Context,
    stream: stream::Stream<()>,
    timeout: Duration,
    tally: Arc<Mutex<Tally>>,
    writer: mpsc::UnboundedSender<Submitted>,
}

/// The group writer: stores what is waiting, one message per write, one write in flight.
async fn group_writer(
    js: jetstream::Context,
    timeout: Duration,
    mut queue: mpsc::UnboundedReceiver<Submitted>,
) {
    let mut group: Vec<Submitted> = Vec::new();
    let mut carried: Option<Submitted> = None;
    loop {
        let first = match carried.take() {
            Some(s) => s,
            None => match queue.recv().await {
                Some(s) => s,
                None => return,
            },
        };
        let mut bytes = first.event.encoded_len();
        group.push(first);
        while group.len() < GROUP_MAX_RECORDS {
            let Ok(next) = queue.try_recv() else { break };
            let len = next.event.encoded_len();
            if bytes + len > GROUP_MAX_BYTES {
                carried = Some(next);
                break;
            }
            bytes += len;
            group.push(next);
        }
        let (subject, payload) = if group.len() == 1 {
            (group[0].subject.clone(), group[0].event.encode_to_vec())
        } else {
            let records = group.iter().map(|s| s.event.clone()).collect();
            (
                GROUP_SUBJECT.to_owned(),
                v1::AuditGroup { records }.encode_to_vec(),
            )
        };
        let stored = async {
            let ack = js
                .publish(subject, payload.into())
                .await
                .map_err(|e| format!("the audit stream: {e}"))?;
            tokio::time::timeout(timeout, ack)
                .await
                .map_err(|_| "the audit stream did not acknowledge".to_owned())?
                .map(|ack| ack.sequence)
                .map_err(|e| format!("the audit stream: {e}"))
        }
        .await;
        for s in group.drain(..) {
            let _ = s.stored.send(stored.clone());
        }
    }
}

impl AuditLog {
    fn stream_config(replicas: usize) -> stream::Config {
        stream::Config {
            name: AUDIT_STREAM.to_owned(),
            subjects: vec![AUDIT_SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Create or update the audit stream: for the stream's owner, the command service.
    pub async fn open(
        client: async_nats::Client,
        replicas: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let created = js
            .create_or_update_stream(Self::stream_config(replicas))
            .await
            .context("creating the audit stream")?;
        Self::handle(js, created.config.name, timeout).await
    }

    /// Use the audit stream, creating it (never updating it) if it does not exist yet: for
    /// the services that only append to it (views, gateway, analyst). Their NATS identities
    /// may create the stream but not change it (deploy/accounts.conf), since an update could
    /// lower its limits and so remove records.
    pub async fn attach(
        client: async_nats::Client,
        replicas: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let missing = match js.get_stream(AUDIT_STREAM).await {
            Ok(_) => false,
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    true
                }
                _ => return Err(e).context("opening the audit stream"),
            },
        };
        if missing {
            // Another service may create it at the same time: then it exists, and that
            // is all this needs.
            if let Err(create) = js.create_stream(Self::stream_config(replicas)).await {
                js.get_stream(AUDIT_STREAM)
                    .await
                    .with_context(|| format!("creating the audit stream: {create}"))?;
            }
        }
        Self::handle(js, AUDIT_STREAM.to_owned(), timeout).await
    }

    async fn handle(
        js: jetstream::Context,
        name: String,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let stream = js
            .get_stream_no_info(name)
            .await
            .context("opening the audit stream")?;
        let (writer, queue) = mpsc::unbounded_channel();
        tokio::spawn(group_writer(js.clone(), timeout, queue));
        Ok(AuditLog {
            js,
            stream,
            timeout,
            tally: Arc::default(),
            writer,
        })
    }

    /// The audit stream.
    pub fn stream(&self) -> &stream::Stream<()> {
        &self.stream
    }

    /// Record one access and wait until it is stored: a read is answered only once its
    /// audit is durable. Concurrent records share one write (see the module documentation);
    /// the stream sequence returned is that write's.
    pub async fn record(&self, record: &AuditRecord) -> Result<u64, tonic::Status> {
        self.submit(record).await
    }

    /// Hand one record to the group writer; the future resolves once it is stored (within
    /// the audit timeout). Submitting several before awaiting any lets them share a write.
    pub fn submit(
        &self,
        record: &AuditRecord,
    ) -> impl std::future::Future<Output = Result<u64, tonic::Status>> + Send + 'static {
        let (stored, is_stored) = oneshot::channel();
        let queued = self
            .writer
            .send(Submitted {
                subject: record.subject(),
                event: record.to_event(),
                stored,
            })
            .is_ok();
        let submitted = std::time::Instant::now();
        async move {
            let stored = if !queued {
                Err(tonic::Status::unavailable("the audit writer has stopped"))
            } else {
                match is_stored.await {
                    Ok(Ok(sequence)) => Ok(sequence),
                    Ok(Err(e)) => Err(tonic::Status::unavailable(e)),
                    Err(_) => Err(tonic::Status::unavailable("the audit writer has stopped")),
                }
            };
            match &stored {
                Ok(_) => metrics::histogram!("carewoven_audit_write_duration_seconds")
                    .record(submitted.elapsed().as_secs_f64()),
                Err(_) => metrics::counter!("carewoven_audit_write_failures_total").increment(1),
            }
            stored
        }
    }

    /// Record one access on its own subject, never grouped, and wait until it is stored:
    /// for records found again by their subject's last message (the sweep's checkpoint).
    pub async fn record_alone(&self, record: &AuditRecord) -> Result<u64, tonic::Status> {
        let ack = self.publish(record).await?;
        let ack = tokio::time::timeout(self.timeout, ack)
            .await
            .map_err(|_| tonic::Status::unavailable("the audit stream did not acknowledge"))?
            .map_err(|e| tonic::Status::unavailable(format!("the audit stream: {e}")))?;
        Ok(ack.sequence)
    }

    /// Record a refusal, best effort: the refusal stands even if the audit stream cannot be
    /// reached (nothing was disclosed or changed), so a failure is only logged. A refusal of
    /// a caller without a valid identity is counted, not written at once (see the module
    /// documentation).
    pub async fn record_refusal(&self, record: &AuditRecord) {
        if record.who.is_none() && !record.by_operator {
            self.count_unauthenticated(
                record.caller,
                record.action,
                &record.reason,
                &record.detail,
            );
            return;
        }
        if let Err(e) = self.record(record).await {
            tracing::warn!(
                action = action_token(record.action),
                detail = %record.detail,
                error = %e.message(),
                "could not audit a refusal"
            );
        }
    }

    /// Count one call without a valid identity from `caller` (written at the minute's end).
    pub fn count_unauthenticated(
        &self,
        caller: Option<IpAddr>,
        action: v1::AuditAction,
        reason: &str,
        detail: &str,
    ) {
        let key = TallyKey {
            caller,
            reason: reason.to_owned(),
            action,
            detail: detail.to_owned(),
        };
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(key, Utc::now());
    }

    /// Write the counted refusals of past minutes (and of the current one if `all`); those
    /// that cannot be stored are kept for the next attempt. The number of records written.
    pub async fn flush_unauthenticated(&self, all: bool) -> usize {
        let records = self
            .tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(all, Utc::now());
        let mut failed = Vec::new();
        let mut written = 0;
        for record in records {
            match self.record(&record).await {
                Ok(_) => written += 1,
                Err(e) => {
                    tracing::warn!(calls = record.count, error = %e.message(), "could not audit unauthenticated calls; will retry");
                    failed.push(record);
                }
            }
        }
        if !failed.is_empty() {
            let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
            for record in failed.into_iter().rev() {
                tally.ready.push_front(record);
            }
            tally.trim();
        }
        written
    }

    /// Write the counts of unauthenticated calls as each minute ends, until
    /// [`TallyFlusher::finish`].
    pub fn start_tally_flusher(&self) -> TallyFlusher {
        let stop = CancellationToken::new();
        let audit = self.clone();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let now = Utc::now();
                let into_minute = now.timestamp().rem_euclid(60) as u64 * 1000
                    + u64::from(now.timestamp_subsec_millis());
                // Just after the next minute starts.
                let wait = Duration::from_millis(60_000u64.saturating_sub(into_minute) + 50);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        audit.flush_unauthenticated(false).await;
                    }
                    _ = until.cancelled() => {
                        audit.flush_unauthenticated(true).await;
                        return;
                    }
                }
            }
        });
        TallyFlusher { stop, task }
    }

    /// Send one record alone on its own subject; the returned future resolves when it is
    /// stored.
    pub async fn publish(&self, record: &AuditRecord) -> Result<PublishAckFuture, tonic::Status> {
        self.js
            .publish(record.subject(), record.to_event().encode_to_vec().into())
            .await
            .map_err(|e| tonic::Status::unavailable(format!("the audit stream: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(caller: u8, reason: &str) -> TallyKey {
        TallyKey {
            caller: Some(IpAddr::from([10, 0, 0, caller])),
            reason: reason.to_owned(),
            action: v1::AuditAction::Command,
            detail: "carewoven.v1.CommandService".to_owned(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("instant")
    }

    #[test]
    fn a_grouped_record_is_matched_by_the_subject_it_would_have_had() {
        let person = Uuid::from_u128(7);
        let who = Identity {
            organisation: carewoven_domain::values::Code::parse("organisation", "HOSP-A")
                .expect("code"),
            user: None,
            roles: Vec::new(),
            citizen: None,
        };
        let read = AuditRecord::permitted(&who, Some(person), v1::AuditAction::RecordRead);
        let trace = AuditRecord::permitted(&who, None, v1::AuditAction::FindPerson);
        for record in [&read, &trace] {
            assert_eq!(event_subject(&record.to_event()), record.subject());
        }
        let group = v1::AuditGroup {
            records: vec![read.to_event(), trace.to_event()],
        };
        let decoded = decode_message(GROUP_SUBJECT, &group.encode_to_vec()).expect("group");
        assert_eq!(decoded.len(), 2);
        let alone = decode_message(&read.subject(), &read.to_event().encode_to_vec()).expect("one");
        assert_eq!(alone.len(), 1);
        let subject = read.subject();
        assert!(subject_matches(&person_filter(person), &subject));
        assert!(subject_matches("cw.audit.*.HOSP-A.record_read", &subject));
        assert!(subject_matches(&subject, &subject));
        assert!(!subject_matches("cw.audit.*.HOSP-B.>", &subject));
        assert!(!subject_matches("cw.audit.*.HOSP-A", &subject));
        assert!(!subject_matches(&format!("{subject}.more"), &subject));
    }

    #[test]
    fn calls_are_counted_per_caller_reason_and_minute() {
        let mut tally = Tally::default();
        for i in 0..100 {
            tally.count(
                key(1, "TOKEN_MISSING"),
                at("2026-05-01T10:00:00Z") + chrono::Duration::milliseconds(i * 100),
            );
        }
        tally.count(key(2, "TOKEN_MISSING"), at("2026-05-01T10:00:30Z"));
        tally.count(key(1, "TOKEN_EXPIRED"), at("2026-05-01T10:00:31Z"));
        // Nothing is written while the minute lasts.
        assert!(tally.take(false, at("2026-05-01T10:00:59Z")).is_empty());
        let records = tally.take(false, at("2026-05-01T10:01:00Z"));
        assert_eq!(records.len(), 3);
        assert_eq!(records.iter().map(|r| r.count).sum::<u64>(), 102);
        let first = &records[0];
        assert_eq!(first.count, 100);
        assert_eq!(first.at, Some(at("2026-05-01T10:00:00Z")));
        assert_eq!(first.last_at, Some(at("2026-05-01T10:00:09.900Z")));
        let event = first.to_event();
        assert_eq!(event.caller_address, "10.0.0.1");
        assert_eq!(event.organisation, UNAUTHENTICATED);
        assert_eq!(first.subject(), "cw.audit.none.unauthenticated.command");
        // A new minute is a new record.
        tally.count(key(1, "TOKEN_MISSING"), at("2026-05-01T10:01:05Z"));
        let records = tally.take(true, at("2026-05-01T10:01:06Z"));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].count, 1);
    }

    #[test]
    fn distinct_callers_beyond_the_bound_share_one_overflow_record() {
        let mut tally = Tally::default();
        let t = at("2026-05-01T10:00:10Z");
        for caller in 0..=255u8 {
            for reason in ["TOKEN_MISSING", "TOKEN_MALFORMED"] {
                tally.count(key(caller, reason), t);
            }
        }
        let records = tally.take(true, t);
        assert_eq!(records.len(), UNAUTHENTICATED_KEYS_PER_MINUTE + 1);
        assert_eq!(records.iter().map(|r| r.count).sum::<u64>(), 512);
        let overflow = records.last().expect("overflow");
        assert_eq!(overflow.reason, OVERFLOW_REASON);
        assert_eq!(overflow.count, 512 - UNAUTHENTICATED_KEYS_PER_MINUTE as u64);
        assert_eq!(overflow.caller, None);
    }

    #[test]
    fn a_long_outage_drops_the_oldest_counts_not_memory() {
        let mut tally = Tally::default();
        for minute in 0..20 {
            let t = at("2026-05-01T10:00:00Z") + chrono::Duration::minutes(minute);
            for caller in 0..=200u8 {
                tally.count(key(caller, "TOKEN_MISSING"), t);
            }
        }
        tally.close();
        assert_eq!(tally.ready.len(), TALLY_BACKLOG_MAX);
    }
}
