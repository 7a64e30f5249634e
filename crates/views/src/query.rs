//! The query API: the coordinated views, with read-your-writes, under information
//! governance.
//!
//! Every call is authenticated ([`Guard`]). A care record is answered only to an organisation
//! that may read it (`Governance::may_read`: a legitimate relationship, no objection to it, a
//! data-sharing agreement in force), and a refusal is confirmed against the log's end before
//! it is given. The board shows only people the caller may read; caseloads and referral
//! inboxes only the caller's own. Every record read and every refusal is audited; a read is
//! answered only once its audit is stored. A refused or unauthenticated call never says
//! whether a person exists.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carewoven_access::{AccessError, AccessIndex};
use carewoven_domain::values::{Code, uk_date};
use carewoven_governance::{Denial, Identity};
use carewoven_proto::v1::{self, query_service_server::QueryService};
use chrono::{DateTime, NaiveDate, Utc};
use futures::Stream;
use prost::Message;
use redb::{ReadableDatabase, ReadableTable};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::guard::Guard;
use crate::paging::PageTokens;
use crate::project::BoardChange;
use crate::state::Views;
use crate::tables::{
    BOARD, CASELOAD, INBOX, INBOX_CLOSED, META, POSITION, RECORDS, WORKLIST, coordinator_key,
    organisation_key,
};
use carewoven_projection::worklist::priority_rank;

/// Longest a query waits for the views to reach `min_log_position` when the caller sets no
/// deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
pub const MAX_PAGE: usize = 500;
pub const DEFAULT_PAGE: usize = 100;
const BOARD_STATUSES: [&str; 7] = [
    "discharge_ready",
    "pathway_assigned",
    "awaiting_service",
    "discharge_agreed",
    "discharged",
    "handover_accepted",
    "home_assessment_completed",
];
/// Referral statuses a service's inbox may be filtered by, besides `open` and `all`.
const REFERRAL_STATUSES: [&str; 10] = [
    "submitted",
    "received",
    "accepted",
    "in_progress",
    "on_hold",
    "completed",
    "rejected",
    "failed",
    "cancelled",
    "entered_in_error",
];

pub struct Queries {
    views: Arc<Views>,
    tokens: PageTokens,
    /// Ends open watch streams when the service shuts down, so shutdown is not held up by
    /// watchers that would otherwise stay connected for ever.
    stop: CancellationToken,
    guard: Guard,
}

impl Queries {
    pub fn new(
        views: Arc<Views>,
        tokens: PageTokens,
        stop: CancellationToken,
        guard: Guard,
    ) -> Self {
        Queries {
            views,
            tokens,
            stop,
            guard,
        }
    }

    /// Wait until the views, and the access decisions, have applied the log up to `min`,
    /// by `until`: a caller reads its own writes, and a relationship its own command created
    /// is known when its read is decided.
    async fn reach(&self, until: Instant, min: u64) -> Result<(), Status> {
        if min == 0 {
            return Ok(());
        }
        if self.views.position() < min {
            let mut rx = self.views.watch_position();
            let reached = tokio::time::timeout(left(until), rx.wait_for(|p| *p >= min)).await;
            if !matches!(reached, Ok(Ok(_))) {
                let mut message = format!(
                    "the views reached log position {} but {min} was asked for",
                    self.views.position()
                );
                if let Some(reason) = self.views.stop_reason() {
                    message.push_str(&format!("; the projector is stopped: {reason}"));
                }
                return Err(Status::deadline_exceeded(message));
            }
        }
        self.guard
            .access()
            .wait_for(min, left(until))
            .await
            .map_err(|e| e.to_status())
    }

    /// A read transaction on the views and its log position, once the access index has
    /// applied the log at least as far: what is shown is filtered with access decisions no
    /// older than the views themselves.
    async fn consistent_read(
        &self,
        until: Instant,
    ) -> Result<(redb::ReadTransaction, u64), Status> {
        loop {
            let target = self.views.position();
            self.guard
                .access()
                .wait_for(target, left(until))
                .await
                .map_err(|e| e.to_status())?;
            let read = self.views.db().begin_read().map_err(storage)?;
            let position = read_position(&read)?;
            if position <= self.guard.access().position() {
                return Ok((read, position));
            }
        }
    }

    /// Decide with `f` on the access index (a refusal confirmed against the log's end); a
    /// refusal is audited and answered PERMISSION_DENIED.
    async fn authorise(
        &self,
        until: Instant,
        who: &Identity,
        person: Option<Uuid>,
        rpc: &str,
        f: impl Fn(&carewoven_governance::Governance) -> Result<(), Denial>,
    ) -> Result<(), Status> {
        match self.guard.access().check(left(until), f).await {
            Ok(()) => Ok(()),
            Err(AccessError::Denied(denial)) => {
                Err(self.guard.refuse(who, person, rpc, &denial).await)
            }
            Err(e) => Err(e.to_status()),
        }
    }
}

/// When a query must have its answer: a little before the caller's deadline, so it hears why
/// rather than timing out; [`DEFAULT_WAIT`] from now without one. Never more than
/// [`carewoven_access::grpc::MAX_WAIT`] away, whatever the caller asked for.
fn answer_by<T>(request: &Request<T>) -> Instant {
    let wait = deadline(request).map_or(DEFAULT_WAIT, |d| {
        d.saturating_sub((d / 10).max(Duration::from_millis(20)))
    });
    carewoven_access::grpc::wait_until(wait)
}

fn left(until: Instant) -> Duration {
    until.saturating_duration_since(Instant::now())
}

/// Whether the caller may read each person's record, decided once per person per use, on
/// the access index as it is (callers first make it at least as current as the views).
struct Readable {
    access: AccessIndex,
    who: Identity,
    now: DateTime<Utc>,
    /// Per person: `None` when the board may not show them, else whether the caller's
    /// agreement covers their demographics.
    known: HashMap<Uuid, Option<bool>>,
}

/// A board entry the caller may see, and whether its name and NHS number may be added.
struct Shown {
    person: Uuid,
    demographics: bool,
}

impl Readable {
    fn new(access: AccessIndex, who: Identity) -> Self {
        Readable {
            access,
            who,
            now: Utc::now(),
            known: HashMap::new(),
        }
    }

    /// Forget earlier decisions (relationships, objections and agreements change).
    fn refresh(&mut self) {
        self.known.clear();
        self.now = Utc::now();
    }

    /// The person of a board entry, if the caller may read their record and its agreement
    /// covers discharge data (the board is discharge data: minimum necessary).
    fn person(&mut self, raw: &str) -> Option<Shown> {
        use carewoven_domain::consent::DataClass;
        let person: Uuid = raw.parse().ok()?;
        let (access, who, now) = (&self.access, &self.who, self.now);
        let seen = *self.known.entry(person).or_insert_with(|| {
            access.with(|g| {
                g.read_scope(who, person, now)
                    .ok()
                    .filter(|scope| scope.allows(DataClass::Discharge))
                    .map(|scope| scope.allows(DataClass::Demographics))
            })
        });
        seen.map(|demographics| Shown {
            person,
            demographics,
        })
    }
}

/// Whether `who` may see that a person is on its own list (caseload, inbox): it holds a
/// ground and the person has not objected to it. No agreement is needed to know who is on
/// one's own list, only to read their record.
fn listed(
    g: &carewoven_governance::Governance,
    who: &Identity,
    person: Uuid,
    now: DateTime<Utc>,
) -> bool {
    g.undecodable(person).is_none()
        && g.related(person, &who.organisation, now)
        && !g.objects_to(person, &who.organisation, now)
}

/// Leave out of a record every section in a withheld data class, and say which were.
fn minimum_necessary(record: &mut v1::CareRecord, scope: &carewoven_governance::ReadScope) {
    use carewoven_domain::consent::DataClass as C;
    if let Some(p) = record.profile.as_mut() {
        if !scope.allows(C::Demographics) {
            // Identifiers stay: the NHS number is how the reader knows whose record it is.
            let nhs = std::mem::take(&mut p.nhs_number);
            let contact = std::mem::take(&mut p.contact);
            let carers = std::mem::take(&mut p.carers);
            *p = v1::Profile {
                nhs_number: nhs,
                contact,
                carers,
                ..Default::default()
            };
            record.profile_corrections = 0;
            record.corrections.clear();
        }
        if !scope.allows(C::Contact) {
            p.contact.clear();
            p.carers.clear();
        }
    }
    if !scope.allows(C::Contact) {
        record.proxies.clear();
    }
    if !scope.allows(C::CarePlan) {
        record.care_plan = None;
    }
    if !scope.allows(C::CareTeam) {
        record.care_team = None;
        record.emergency_accesses.clear();
    }
    if !scope.allows(C::Referrals) {
        record.referrals.clear();
    }
    if !scope.allows(C::Assessments) {
        record.assessments.clear();
    }
    if !scope.allows(C::Discharge) {
        record.discharge_episodes.clear();
    }
    if !scope.allows(C::Meetings) {
        record.meetings.clear();
    }
    if !scope.allows(C::Feedback) {
        record.feedback.clear();
    }
    if !scope.allows(C::RiskFlags) {
        record.risk_flags.clear();
    }
    if !scope.allows(C::Tasks) {
        record.tasks.clear();
    }
    record.withheld_classes = scope
        .withheld
        .iter()
        .map(|c| carewoven_proto::convert::data_class_to_wire(*c))
        .collect();
}

/// Each person once, in first-seen order.
fn distinct(persons: Vec<Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    persons.into_iter().filter(|p| seen.insert(*p)).collect()
}

fn deadline<T>(request: &Request<T>) -> Option<Duration> {
    carewoven_access::grpc::caller_timeout(request.metadata())
}

fn invalid(field: &str, reason: &str) -> Status {
    crate::errors::invalid(field, reason)
}

fn uuid(field: &str, raw: &str) -> Result<Uuid, Status> {
    if raw.is_empty() {
        return Err(invalid(field, "is required"));
    }
    raw.parse()
        .map_err(|_| invalid(field, "is not a valid UUID"))
}

fn code(field: &str, raw: &str) -> Result<String, Status> {
    parse_code(field, raw).map(|c| c.as_str().to_owned())
}

fn parse_code(field: &str, raw: &str) -> Result<Code, Status> {
    Code::parse(field, raw).map_err(|e| match e {
        carewoven_domain::DomainError::Invalid { field, reason } => invalid(&field, &reason),
        other => Status::invalid_argument(other.to_string()),
    })
}

fn storage(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("reading the views: {e}"))
}

/// The log position a read transaction sees.
fn read_position(read: &redb::ReadTransaction) -> Result<u64, Status> {
    Ok(read
        .open_table(META)
        .map_err(storage)?
        .get(POSITION)
        .map_err(storage)?
        .map_or(0, |v| v.value()))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| Status::data_loss(format!("a stored view cannot be decoded: {e}")))
}

fn page_size(raw: u32) -> Result<usize, Status> {
    match raw as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        _ => Err(invalid("page_size", "must be at most 500")),
    }
}

fn pathway_filter(raw: i32) -> Result<Option<i32>, Status> {
    match v1::Pathway::try_from(raw) {
        Ok(v1::Pathway::Unspecified) => Ok(None),
        Ok(p) => Ok(Some(p as i32)),
        Err(_) => Err(invalid("pathway", &format!("unknown value {raw}"))),
    }
}

fn parse_date(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

fn instant(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

/// Fill in what depends on the clock (days counted on the UK calendar).
fn at_read_time(mut entry: v1::BoardEntry, now: DateTime<Utc>) -> v1::BoardEntry {
    let discharged = instant(&entry.discharged_at);
    if let Some(drd) = parse_date(&entry.discharge_ready_date) {
        let until = uk_date(discharged.unwrap_or(now));
        entry.days_delayed = u32::try_from((until - drd).num_days().max(0)).unwrap_or(u32::MAX);
    }
    // Hours waiting for a handover: none once it is accepted.
    if let Some(d) = discharged.filter(|_| entry.status == "discharged") {
        entry.hours_since_discharge =
            u32::try_from((now - d).num_hours().max(0)).unwrap_or(u32::MAX);
    }
    entry
}

/// A board entry as this caller is shown it: computed fields, and the name and NHS number
/// from the person's record where its agreement covers demographics.
fn shown_entry(
    entry: v1::BoardEntry,
    shown: &Shown,
    records: &impl ReadableTable<u128, &'static [u8]>,
    now: DateTime<Utc>,
) -> Result<v1::BoardEntry, Status> {
    let mut entry = at_read_time(entry, now);
    if shown.demographics
        && let Some(bytes) = records.get(shown.person.as_u128()).map_err(storage)?
    {
        let record: v1::CareRecord = decode(bytes.value())?;
        if let Some(p) = record.profile {
            entry.given_name = p.given_name;
            entry.family_name = p.family_name;
            entry.nhs_number = p.nhs_number;
        }
    }
    Ok(entry)
}

/// The board's filters, as a request gives them.
struct BoardFilter {
    site: String,
    pathway: Option<i32>,
    status: String,
    delay_reason: Option<i32>,
}

impl BoardFilter {
    fn parse(site: &str, pathway: i32, status: &str, delay_reason: i32) -> Result<Self, Status> {
        let site = if site.is_empty() {
            String::new()
        } else {
            code("site", site)?
        };
        if !status.is_empty() && !BOARD_STATUSES.contains(&status) {
            return Err(invalid(
                "status",
                &format!("must be one of {}", BOARD_STATUSES.join(", ")),
            ));
        }
        let delay_reason = match v1::DelayReason::try_from(delay_reason) {
            Ok(v1::DelayReason::Unspecified) => None,
            Ok(_) => Some(delay_reason),
            Err(_) => return Err(invalid("delay_reason", "is not a known delay reason")),
        };
        Ok(BoardFilter {
            site,
            pathway: pathway_filter(pathway)?,
            status: status.to_owned(),
            delay_reason,
        })
    }

    fn matches(&self, entry: &v1::BoardEntry) -> bool {
        (self.site.is_empty() || entry.site == self.site)
            && self.pathway.is_none_or(|p| entry.pathway == p)
            && (self.status.is_empty() || entry.status == self.status)
            && self
                .delay_reason
                .is_none_or(|r| entry.delay_reasons.contains(&r))
    }

    /// What a page token is bound to.
    fn key(&self) -> String {
        format!(
            "{}|{:?}|{}|{:?}",
            self.site, self.pathway, self.status, self.delay_reason
        )
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::BoardUpdate, Status>> + Send>>;

/// [`shown_entry`] in a read transaction of its own (for the watch stream's changes).
fn named(views: &Views, entry: v1::BoardEntry, shown: &Shown) -> Result<v1::BoardEntry, Status> {
    let read = views.db().begin_read().map_err(storage)?;
    let records = read.open_table(RECORDS).map_err(storage)?;
    shown_entry(entry, shown, &records, Utc::now())
}

#[tonic::async_trait]
impl QueryService for Queries {
    async fn get_care_record(
        &self,
        request: Request<v1::GetCareRecordRequest>,
    ) -> Result<Response<v1::CareRecord>, Status> {
        const RPC: &str = "GetCareRecord";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let raw = &request.get_ref().person_id;
        let own =
            carewoven_access::citizen::own_record(self.guard.access(), &who, raw, left(until));
        let person = match own.await? {
            Some(own) => own,
            None => uuid("person_id", raw)?,
        };
        self.reach(until, request.get_ref().min_log_position)
            .await?;
        let now = Utc::now();
        let scope = match self
            .guard
            .access()
            .check(left(until), |g| g.read_scope(&who, person, now))
            .await
        {
            Ok(scope) => scope,
            Err(AccessError::Denied(denial)) => {
                return Err(self.guard.refuse(&who, Some(person), RPC, &denial).await);
            }
            Err(e) => return Err(e.to_status()),
        };
        let (record, position) = {
            let db = self.views.db();
            let read = db.begin_read().map_err(storage)?;
            let position = read_position(&read)?;
            let records = read.open_table(RECORDS).map_err(storage)?;
            let Some(bytes) = records.get(person.as_u128()).map_err(storage)? else {
                // Only an organisation with a relationship gets here, so this reveals nothing
                // it does not know (the views may briefly lag the access decisions).
                return Err(Status::not_found(format!("person {person} not found")));
            };
            let mut record: v1::CareRecord = decode(bytes.value())?;
            record.log_position = position;
            minimum_necessary(&mut record, &scope);
            (record, position)
        };
        self.guard
            .audit_reads(&who, &[person], RPC, position)
            .await?;
        Ok(Response::new(record))
    }

    async fn list_discharge_board(
        &self,
        request: Request<v1::ListDischargeBoardRequest>,
    ) -> Result<Response<v1::DischargeBoardPage>, Status> {
        const RPC: &str = "ListDischargeBoard";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let r = request.get_ref();
        let filter = BoardFilter::parse(&r.site, r.pathway, &r.status, r.delay_reason)?;
        let size = page_size(r.page_size)?;
        // Bound to the caller too: each organisation pages through its own board.
        let filters = format!("board|{}|{}", who.organisation, filter.key());
        let after = self.tokens.read(&r.page_token, &filters)?;
        self.reach(until, r.min_log_position).await?;

        let (read, position) = self.consistent_read(until).await?;
        let mut readable = Readable::new(self.guard.access().clone(), who.clone());
        let board = read.open_table(BOARD).map_err(storage)?;
        let records = read.open_table(RECORDS).map_err(storage)?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let now = Utc::now();
        let mut entries = Vec::new();
        let mut persons = Vec::new();
        let mut next = String::new();
        let mut last_key = 0u128;
        for item in board.range(start..).map_err(storage)? {
            let (key, value) = item.map_err(storage)?;
            let entry: v1::BoardEntry = decode(value.value())?;
            if !filter.matches(&entry) {
                continue;
            }
            let Some(shown) = readable.person(&entry.person_id) else {
                continue;
            };
            if entries.len() == size {
                // More remain: the token resumes after the last entry returned.
                next = self.tokens.issue(last_key, &filters);
                break;
            }
            last_key = key.value();
            persons.push(shown.person);
            entries.push(shown_entry(entry, &shown, &records, now)?);
        }
        drop(board);
        drop(records);
        drop(read);
        self.guard
            .audit_reads(&who, &distinct(persons), RPC, position)
            .await?;
        Ok(Response::new(v1::DischargeBoardPage {
            entries,
            next_page_token: next,
            log_position: position,
        }))
    }

    type WatchDischargeBoardStream = WatchStream;

    async fn watch_discharge_board(
        &self,
        request: Request<v1::WatchDischargeBoardRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        const RPC: &str = "WatchDischargeBoard";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let r = request.get_ref().clone();
        let filter = BoardFilter::parse(&r.site, r.pathway, "", r.delay_reason)?;
        self.reach(until, r.min_log_position).await?;
        // Subscribe before reading the snapshot so no change between the two is missed.
        let mut changes = self.views.subscribe_board();
        let mut readable = Readable::new(self.guard.access().clone(), who.clone());
        let (snapshot, position) = {
            let (read, position) = self.consistent_read(until).await?;
            let board = read.open_table(BOARD).map_err(storage)?;
            let records = read.open_table(RECORDS).map_err(storage)?;
            let now = Utc::now();
            let mut entries = Vec::new();
            for item in board.iter().map_err(storage)? {
                let (_, value) = item.map_err(storage)?;
                let entry: v1::BoardEntry = decode(value.value())?;
                if !filter.matches(&entry) {
                    continue;
                }
                if let Some(shown) = readable.person(&entry.person_id) {
                    let entry = shown_entry(entry, &shown, &records, now)?;
                    entries.push((shown.person, entry));
                }
            }
            (entries, position)
        };
        let persons = distinct(snapshot.iter().map(|(p, _)| *p).collect());
        let views = self.views.clone();
        self.guard
            .audit_reads(&who, &persons, RPC, position)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<v1::BoardUpdate, Status>>(256);
        let stop = self.stop.clone();
        let guard = self.guard.clone();
        tokio::spawn(async move {
            // Episodes on this watcher's board.
            let mut shown: HashSet<String> = HashSet::new();
            for (_, entry) in snapshot {
                shown.insert(entry.episode_id.clone());
                let update = v1::BoardUpdate {
                    change: Some(v1::board_update::Change::Upsert(entry)),
                    log_position: position,
                };
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
            }
            let done = v1::BoardUpdate {
                change: Some(v1::board_update::Change::SnapshotComplete(true)),
                log_position: position,
            };
            if tx.send(Ok(done)).await.is_err() {
                return;
            }
            loop {
                let batch = tokio::select! {
                    b = changes.recv() => b,
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "the views service is shutting down; watch again",
                            )))
                            .await;
                        return;
                    }
                };
                let batch = match batch {
                    Ok(b) => b,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "this watcher fell {n} batches behind the board; watch again"
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                if batch.position <= position {
                    continue;
                }
                // Decide who may be seen when the change is delivered, on access decisions
                // at least as new as the change (the event that changes an entry may be the
                // one that relates the caller to its person, or ends that relationship).
                if let Err(e) = guard
                    .access()
                    .wait_for(batch.position, guard.timeout())
                    .await
                {
                    let _ = tx.send(Err(e.to_status())).await;
                    return;
                }
                readable.refresh();
                let mut updates = Vec::new();
                let mut persons = Vec::new();
                for change in &batch.changes {
                    let change = match change {
                        BoardChange::Upsert(entry) => {
                            let person = if filter.matches(entry) {
                                readable.person(&entry.person_id)
                            } else {
                                None
                            };
                            match person {
                                Some(person) => {
                                    // Names as the record has them now (a correction after
                                    // this change is shown with the next one).
                                    let entry = match named(&views, entry.clone(), &person) {
                                        Ok(entry) => entry,
                                        Err(status) => {
                                            let _ = tx.send(Err(status)).await;
                                            return;
                                        }
                                    };
                                    shown.insert(entry.episode_id.clone());
                                    persons.push(person.person);
                                    v1::board_update::Change::Upsert(entry)
                                }
                                // Filtered out, or no longer readable by this caller: it
                                // leaves this watcher's board if it was on it.
                                None => {
                                    if !shown.remove(&entry.episode_id) {
                                        continue;
                                    }
                                    v1::board_update::Change::RemovedEpisodeId(
                                        entry.episode_id.clone(),
                                    )
                                }
                            }
                        }
                        BoardChange::Removed(id) => {
                            if !shown.remove(&id.to_string()) {
                                continue;
                            }
                            v1::board_update::Change::RemovedEpisodeId(id.to_string())
                        }
                    };
                    updates.push(v1::BoardUpdate {
                        change: Some(change),
                        log_position: batch.position,
                    });
                }
                if let Err(status) = guard
                    .audit_reads(&who, &distinct(persons), RPC, batch.position)
                    .await
                {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                for update in updates {
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_caseload(
        &self,
        request: Request<v1::GetCaseloadRequest>,
    ) -> Result<Response<v1::Caseload>, Status> {
        const RPC: &str = "GetCaseload";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let (owner, org, field) = match &request.get_ref().owner {
            Some(v1::get_caseload_request::Owner::Coordinator(m)) => {
                let org = code("coordinator.organisation", &m.organisation)?;
                let practitioner = if m.practitioner.is_empty() {
                    String::new()
                } else {
                    code("coordinator.practitioner", &m.practitioner)?
                };
                (
                    coordinator_key(&org, &practitioner),
                    org,
                    "coordinator.organisation",
                )
            }
            Some(v1::get_caseload_request::Owner::Organisation(org)) => {
                let org = code("organisation", org)?;
                (organisation_key(&org), org, "organisation")
            }
            None => {
                return Err(invalid(
                    "owner",
                    "is required: a coordinator or an organisation",
                ));
            }
        };
        if org != who.organisation.as_str() {
            let denial = Denial::new(
                "NOT_OWN_CASELOAD",
                format!(
                    "{} may only read its own organisation's caseload ({field})",
                    who.organisation
                ),
            );
            return Err(self.guard.refuse(&who, None, RPC, &denial).await);
        }
        self.reach(until, request.get_ref().min_log_position)
            .await?;
        let (read, position) = self.consistent_read(until).await?;
        let caseload = read.open_table(CASELOAD).map_err(storage)?;
        let now = Utc::now();
        let mut person_ids = Vec::new();
        for item in caseload
            .range((owner.as_str(), 0u128)..=(owner.as_str(), u128::MAX))
            .map_err(storage)?
        {
            let (key, _) = item.map_err(storage)?;
            let person = Uuid::from_u128(key.value().1);
            // Only people it still holds a ground for and who have not objected to it.
            if self.guard.access().with(|g| listed(g, &who, person, now)) {
                person_ids.push(person.to_string());
            }
        }
        Ok(Response::new(v1::Caseload {
            person_ids,
            log_position: position,
        }))
    }

    async fn list_referral_inbox(
        &self,
        request: Request<v1::ListReferralInboxRequest>,
    ) -> Result<Response<v1::ReferralInboxPage>, Status> {
        const RPC: &str = "ListReferralInbox";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let r = request.get_ref();
        let service_code = parse_code("service", &r.service)?;
        let service = service_code.as_str().to_owned();
        let size = page_size(r.page_size)?;
        let status = r.status.as_str();
        if !(status.is_empty()
            || status == "open"
            || status == "all"
            || REFERRAL_STATUSES.contains(&status))
        {
            return Err(invalid(
                "status",
                &format!(
                    "must be empty (awaiting a decision), open, all or one of {}",
                    REFERRAL_STATUSES.join(", ")
                ),
            ));
        }
        let wanted = |entry_status: &str| match status {
            "" => matches!(entry_status, "submitted" | "received"),
            "open" | "all" => true,
            one => entry_status == one,
        };
        // Ended referrals are kept apart: only filters that can match them read them.
        let ended = matches!(
            status,
            "all" | "completed" | "rejected" | "failed" | "cancelled" | "entered_in_error"
        );
        let open = !ended || status == "all";
        let filters = format!("inbox|{service}|{status}");
        let after = self.tokens.read(&r.page_token, &filters)?;
        self.reach(until, r.min_log_position).await?;
        self.authorise(until, &who, None, RPC, |g| {
            if g.service_owner(&service_code) == Some(&who.organisation) {
                Ok(())
            } else {
                Err(Denial::new(
                    "NOT_SERVICE_OWNER",
                    format!(
                        "{} may only read the inbox of its own services (service)",
                        who.organisation
                    ),
                ))
            }
        })
        .await?;
        let (read, position) = self.consistent_read(until).await?;
        let decided_at = Utc::now();
        let mut entries: Vec<(u128, v1::InboxEntry)> = Vec::new();
        let tables = [(open, INBOX), (ended, INBOX_CLOSED)];
        for (_, table) in tables.into_iter().filter(|(read_it, _)| *read_it) {
            let inbox = read.open_table(table).map_err(storage)?;
            for item in inbox
                .range((service.as_str(), 0u128)..=(service.as_str(), u128::MAX))
                .map_err(storage)?
            {
                let (key, value) = item.map_err(storage)?;
                let entry: v1::InboxEntry = decode(value.value())?;
                if !wanted(&entry.status) {
                    continue;
                }
                // A person who objected to the service's organisation is not in its inbox.
                let shown = entry.person_id.parse::<Uuid>().is_ok_and(|person| {
                    self.guard
                        .access()
                        .with(|g| listed(g, &who, person, decided_at))
                });
                if shown {
                    entries.push((key.value().1, entry));
                }
            }
        }
        // Priority first (stat, asap, urgent, routine), then oldest first, then id: a total
        // order, so a page token is the rank of the last entry returned.
        let rank = |(id, e): &(u128, v1::InboxEntry)| {
            let at = e
                .submitted_at
                .as_ref()
                .map_or((0, 0), |t| (t.seconds, t.nanos));
            (priority_rank(e.priority), at, *id)
        };
        entries.sort_by_key(rank);
        let skip = after.map_or(0, |a| a as usize);
        let now = Utc::now();
        let page: Vec<v1::InboxEntry> = entries
            .iter()
            .skip(skip)
            .take(size)
            .map(|(_, e)| {
                let mut e = e.clone();
                if let Some(at) = instant(&e.submitted_at) {
                    e.age_hours = u32::try_from((now - at).num_hours().max(0)).unwrap_or(u32::MAX);
                }
                e
            })
            .collect();
        let next = if skip + page.len() < entries.len() {
            self.tokens.issue((skip + page.len()) as u128, &filters)
        } else {
            String::new()
        };
        Ok(Response::new(v1::ReferralInboxPage {
            entries: page,
            next_page_token: next,
            log_position: position,
        }))
    }

    async fn find_person(
        &self,
        request: Request<v1::FindPersonRequest>,
    ) -> Result<Response<v1::FindPersonReply>, Status> {
        const RPC: &str = "FindPerson";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let r = request.get_ref();
        let nhs = carewoven_domain::values::NhsNumber::parse("nhs_number", &r.nhs_number)
            .map_err(|e| invalid("nhs_number", &e.to_string()))?;
        let dob: NaiveDate = r
            .date_of_birth
            .parse()
            .map_err(|_| invalid("date_of_birth", "must be a date, YYYY-MM-DD"))?;
        // A trace is for an organisation in the registry (or the governance role).
        let registered = |g: &carewoven_governance::Governance| {
            if g.organisation(&who.organisation).is_some()
                || who.has(carewoven_governance::Role::Governance)
            {
                Ok(())
            } else {
                Err(Denial::new(
                    "ORGANISATION_NOT_REGISTERED",
                    format!("organisation {} is not registered", who.organisation),
                ))
            }
        };
        self.authorise(until, &who, None, RPC, registered).await?;
        // Confirm a "not found" against the log's end, so a fresh registration is found.
        let found = match self
            .guard
            .access()
            .check(left(until), |g| {
                g.find_person(&nhs, dob)
                    .ok_or_else(|| Denial::new("NOT_FOUND", "not found"))
            })
            .await
        {
            Ok(person) => Some(person),
            Err(AccessError::Denied(_)) => None,
            Err(e) => return Err(e.to_status()),
        };
        self.guard.audit_trace(&who, found, RPC).await?;
        match found {
            Some(person) => Ok(Response::new(v1::FindPersonReply {
                person_id: person.to_string(),
            })),
            None => Err(Status::not_found(
                "no registered person has that NHS number and date of birth",
            )),
        }
    }

    async fn list_worklist(
        &self,
        request: Request<v1::ListWorklistRequest>,
    ) -> Result<Response<v1::WorklistPage>, Status> {
        use carewoven_domain::consent::DataClass;
        use carewoven_projection::worklist;
        const RPC: &str = "ListWorklist";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let r = request.get_ref();
        let kind = v1::WorklistKind::try_from(r.kind)
            .map_err(|_| invalid("kind", &format!("unknown value {}", r.kind)))?;
        let Some(kind_name) = worklist::kind_name(kind) else {
            return Err(invalid(
                "kind",
                "is required: TASKS, REVIEWS_DUE, NO_COORDINATOR or AWAITING_CONTRIBUTION",
            ));
        };
        let org = if r.organisation.is_empty() {
            who.organisation.as_str().to_owned()
        } else {
            code("organisation", &r.organisation)?
        };
        let day = |field: &str, raw: &str| -> Result<Option<NaiveDate>, Status> {
            if raw.is_empty() {
                Ok(None)
            } else {
                parse_date(raw)
                    .filter(|d| d.format("%Y-%m-%d").to_string() == raw)
                    .map(Some)
                    .ok_or_else(|| invalid(field, "must be a date as YYYY-MM-DD"))
            }
        };
        let from = day("due_from", &r.due_from)?;
        let to = day("due_to", &r.due_to)?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(invalid("due_to", "is before due_from"));
        }
        if kind == v1::WorklistKind::NoCoordinator && r.overdue {
            return Err(invalid(
                "overdue",
                "does not apply to NO_COORDINATOR (nothing there is due)",
            ));
        }
        let practitioner = if r.practitioner.is_empty() {
            None
        } else if kind != v1::WorklistKind::Tasks {
            return Err(invalid("practitioner", "applies to TASKS only"));
        } else {
            Some(code("practitioner", &r.practitioner)?)
        };
        let size = page_size(r.page_size)?;
        if org != who.organisation.as_str() {
            let denial = Denial::new(
                "NOT_OWN_WORKLIST",
                format!(
                    "{} may only read its own organisation's worklists (organisation)",
                    who.organisation
                ),
            );
            return Err(self.guard.refuse(&who, None, RPC, &denial).await);
        }
        let filters = format!(
            "worklist|{org}|{kind_name}|{}|{}|{}|{}",
            r.due_from,
            r.due_to,
            r.overdue,
            practitioner.as_deref().unwrap_or("")
        );
        let after = self.tokens.read(&r.page_token, &filters)?;
        self.reach(until, r.min_log_position).await?;
        let (read, position) = self.consistent_read(until).await?;
        // What the list shows belongs to this data class: the caller's agreement must cover
        // it (minimum necessary), besides a ground and no objection.
        let class = match kind {
            v1::WorklistKind::Tasks => DataClass::Tasks,
            v1::WorklistKind::ReviewsDue => DataClass::CarePlan,
            v1::WorklistKind::NoCoordinator => DataClass::CareTeam,
            _ => DataClass::Assessments,
        };
        let now = Utc::now();
        let today = uk_date(now).format("%Y-%m-%d").to_string();
        let list = worklist::list(kind_name, &org);
        let low = from
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        // Sort keys are ASCII and start with the day: everything of day `to` sorts below
        // `to` followed by DEL.
        let high = to.map_or_else(
            || "\u{7f}".to_owned(),
            |d| format!("{}\u{7f}", d.format("%Y-%m-%d")),
        );
        let table = read.open_table(WORKLIST).map_err(storage)?;
        let mut readable: HashMap<Uuid, bool> = HashMap::new();
        let mut items: Vec<v1::WorklistItem> = Vec::new();
        for entry in table
            .range((list.as_str(), low.as_str(), 0u128)..=(list.as_str(), high.as_str(), u128::MAX))
            .map_err(storage)?
        {
            let (_, value) = entry.map_err(storage)?;
            let mut item: v1::WorklistItem = decode(value.value())?;
            item.overdue = kind != v1::WorklistKind::NoCoordinator && item.due < today;
            if r.overdue && !item.overdue {
                continue;
            }
            if practitioner
                .as_deref()
                .is_some_and(|p| p != item.practitioner)
            {
                continue;
            }
            let Ok(person) = item.person_id.parse::<Uuid>() else {
                continue;
            };
            let shown = *readable.entry(person).or_insert_with(|| {
                self.guard.access().with(|g| {
                    g.read_scope(&who, person, now)
                        .is_ok_and(|scope| scope.allows(class))
                })
            });
            if shown {
                items.push(item);
            }
        }
        let skip = after.map_or(0, |a| a as usize);
        let page: Vec<v1::WorklistItem> = items.iter().skip(skip).take(size).cloned().collect();
        let next = if skip + page.len() < items.len() {
            self.tokens.issue((skip + page.len()) as u128, &filters)
        } else {
            String::new()
        };
        drop(table);
        drop(read);
        // Each person on the page is a read of their record: audited before the answer.
        let persons: Vec<Uuid> = page
            .iter()
            .filter_map(|i| i.person_id.parse().ok())
            .collect();
        self.guard
            .audit_reads(&who, &distinct(persons), RPC, position)
            .await?;
        Ok(Response::new(v1::WorklistPage {
            items: page,
            next_page_token: next,
            log_position: position,
        }))
    }

    async fn get_referral_receipt(
        &self,
        request: Request<v1::GetReferralReceiptRequest>,
    ) -> Result<Response<v1::ReferralReceipt>, Status> {
        const RPC: &str = "GetReferralReceipt";
        let until = answer_by(&request);
        let who = self.guard.identify(request.metadata(), RPC).await?;
        let r = request.get_ref();
        let person = uuid("person_id", &r.person_id)?;
        let referral = uuid("referral_id", &r.referral_id)?;
        self.reach(until, r.min_log_position).await?;
        let (read, position) = self.consistent_read(until).await?;
        let records = read.open_table(RECORDS).map_err(storage)?;
        let record: Option<v1::CareRecord> = match records.get(person.as_u128()).map_err(storage)? {
            Some(bytes) => Some(decode(bytes.value())?),
            None => None,
        };
        let id = referral.to_string();
        // Only the referrer's own referral; anything else is the same NOT_FOUND, whether the
        // person or the referral exists or not.
        let view = record.as_ref().and_then(|rec| {
            rec.referrals.iter().find(|v| {
                v.referral_id == id
                    && v.referral
                        .as_ref()
                        .is_some_and(|d| d.from_organisation == who.organisation.as_str())
            })
        });
        let objected = self
            .guard
            .access()
            .with(|g| g.objects_to(person, &who.organisation, Utc::now()));
        let Some(view) = view.filter(|_| !objected) else {
            let denial =
                Denial::new("NO_SUCH_REFERRAL_RECEIPT", "no such referral").because(if objected {
                    "OBJECTION"
                } else {
                    "NO_SUCH_REFERRAL_RECEIPT"
                });
            let _ = self.guard.refuse(&who, Some(person), RPC, &denial).await;
            return Err(Status::not_found(format!(
                "no referral {referral} made by {} for this person",
                who.organisation
            )));
        };
        let receipt = v1::ReferralReceipt {
            referral_id: id.clone(),
            to_service: view
                .referral
                .as_ref()
                .map(|d| d.to_service.clone())
                .unwrap_or_default(),
            status: view.status.clone(),
            reason: view.reason.clone(),
            submitted_at: view.submitted_at,
            updated_at: view.updated_at,
            log_position: position,
        };
        self.guard
            .audit_reads(&who, &[person], RPC, position)
            .await?;
        Ok(Response::new(receipt))
    }
}
