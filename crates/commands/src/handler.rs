//! Executes one command: read the aggregate, answer a retry from its own events, decide,
//! append, reply.
//!
//! Nothing that decides a command lives only in this process: the aggregate's state is
//! replayed from the log for every command, the log's optimistic concurrency check settles
//! races between instances, and a retried command is recognised by its own events in the
//! aggregate's history. Any number of instances may therefore run against one NATS.

use carewoven_access::audit::AuditRecord;
use carewoven_access::grpc::{permission_denied, unauthenticated};
use carewoven_access::token::TokenError;
use carewoven_access::{AccessError, AccessIndex, AuditLog};
use carewoven_domain::{
    AggregateKind, AggregateState, DecideContext, DomainError, EventMeta, Existence,
    SCHEMA_VERSION, Target,
};
use carewoven_eventlog::{Append, CommandEffect, EventLog, History, LogError};
use carewoven_governance::{Denial, Identity};
use carewoven_proto::convert::{CommandRequest, IdSource, parse_context_with};
use carewoven_proto::v1::{self, CommandReply};
use chrono::Utc;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tonic::Status;
use uuid::Uuid;

use crate::error::{domain_status, log_status, replay_status};
use crate::ids::{Ids, fingerprint};

#[derive(Clone)]
pub struct Handler {
    log: EventLog,
    ids: Ids,
    known_persons: KnownPersons,
    /// No command takes longer than this, whatever it has to read and retry.
    deadline: Duration,
    access: AccessIndex,
    audit: AuditLog,
}

/// Persons seen to exist. A registered person is never deleted (records are corrected, not
/// removed), so this caches an immutable fact and can never be stale; it saves a read on
/// every command that creates an aggregate for a known person. Bounded: it is emptied when
/// full.
#[derive(Clone, Default)]
struct KnownPersons(Arc<Mutex<HashSet<Uuid>>>);

const KNOWN_PERSONS_MAX: usize = 1_000_000;

impl KnownPersons {
    fn contains(&self, person: Uuid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&person)
    }

    fn insert(&self, person: Uuid) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= KNOWN_PERSONS_MAX {
            set.clear();
        }
        set.insert(person);
    }
}

impl Handler {
    pub fn new(
        log: EventLog,
        ids: Ids,
        deadline: Duration,
        access: AccessIndex,
        audit: AuditLog,
    ) -> Self {
        Handler {
            log,
            ids,
            known_persons: KnownPersons::default(),
            deadline,
            access,
            audit,
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Execute one command, within the handler's deadline: past it the caller gets
    /// UNAVAILABLE and may retry with the same command id.
    pub async fn execute<R>(
        &self,
        rpc: &str,
        identity: Result<Identity, TokenError>,
        request: &R,
    ) -> Result<CommandReply, Status>
    where
        R: CommandRequest + prost::Message,
    {
        let identity = match identity {
            Ok(identity) => identity,
            Err(e) => {
                self.audit_refusal(None, None, rpc, e.reason()).await;
                return Err(unauthenticated(&e));
            }
        };
        let run = self.execute_now(rpc, &identity, request);
        match tokio::time::timeout(self.deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(Status::unavailable(format!(
                "the command did not complete within {:?}; retry with the same command_id",
                self.deadline
            ))),
        }
    }

    /// Record a refused command in the audit stream (best effort).
    async fn audit_refusal(
        &self,
        who: Option<&Identity>,
        person: Option<Uuid>,
        rpc: &str,
        reason: &str,
    ) {
        // A citizen's refusal says whether they asked as the person or as a proxy.
        let detail = match (who, person) {
            (Some(who), Some(person)) if who.citizen.is_some() => self
                .access
                .with(|g| carewoven_access::citizen::audit_detail(g, who, person, rpc)),
            _ => rpc.to_owned(),
        };
        let record =
            AuditRecord::refused(who, person, v1::AuditAction::Command, reason).detail(detail);
        self.audit.record_refusal(&record).await;
    }

    async fn execute_now<R>(
        &self,
        rpc: &str,
        identity: &Identity,
        request: &R,
    ) -> Result<CommandReply, Status>
    where
        R: CommandRequest + prost::Message,
    {
        // The acting organisation is the authenticated one: the context may repeat it or
        // leave it empty, never name another.
        let claimed = request
            .context()
            .map(|c| c.organisation.trim())
            .unwrap_or("");
        if !claimed.is_empty() && claimed != identity.organisation.as_str() {
            self.audit_refusal(Some(identity), None, rpc, "ORGANISATION_MISMATCH")
                .await;
            return Err(permission_denied(&Denial::new(
                "ORGANISATION_MISMATCH",
                format!(
                    "context.organisation {claimed} is not the authenticated organisation {}",
                    identity.organisation
                ),
            )));
        }
        // So is the acting user: the token's `user` claim, never a request field.
        let claimed_user = request.context().map(|c| c.user.trim()).unwrap_or("");
        if !claimed_user.is_empty()
            && identity.user.as_ref().map(|u| u.as_str()) != Some(claimed_user)
        {
            self.audit_refusal(Some(identity), None, rpc, "USER_MISMATCH")
                .await;
            return Err(permission_denied(&Denial::new(
                "USER_MISMATCH",
                "context.user must be empty or the authenticated user (the token's user claim)",
            )));
        }
        let ctx = parse_context_with(
            request.context(),
            &identity.organisation,
            identity.user.as_ref(),
        )
        .map_err(|e| domain_status(&e))?;
        ctx.check_occurred_at(Utc::now())
            .map_err(|e| domain_status(&e))?;
        let command = request
            .to_command(&self.ids.for_command(ctx.command_id))
            .map_err(|e| domain_status(&e))?;
        let target = command.target();
        let print = fingerprint(&request.encode_to_vec());
        self.log.ensure_connected().map_err(|e| log_status(&e))?;

        // Every organisation and service the command names must be registered: a refusal
        // names the field and says nothing about any person.
        let mut references = self.access.with(|g| g.check_references(&command));
        if references.is_err() {
            // Refused on a view that may be stale: confirm against the log's end.
            self.access
                .catch_up(self.deadline)
                .await
                .map_err(|e| e.to_status())?;
            references = self.access.with(|g| g.check_references(&command));
        }
        if let Err(e) = references {
            return Err(match e {
                DomainError::Invalid { field, reason } => domain_status(&DomainError::Invalid {
                    field: request.wire_field(&field),
                    reason,
                }),
                e => domain_status(&e),
            });
        }

        // A creating command reads nothing. If an earlier attempt already created its
        // aggregate (whose id is derived from the command id, or for a person from the NHS
        // number), the append's concurrency check fails and the retry is recognised below.
        // Nothing is said about whether the person or aggregate exists before the caller is
        // authorised: an organisation without a ground is refused the same way either way.
        let history = if target.existence == Existence::MustNotExist {
            History::default()
        } else {
            self.log
                .load(target.person_id, target.kind, target.aggregate_id)
                .await
                .map_err(|e| log_status(&e))?
        };

        let mut state: Option<AggregateState> = None;
        for recorded in history.recorded() {
            state = Some(
                carewoven_domain::evolve(state, &recorded.event).map_err(|e| replay_status(&e))?,
            );
        }
        // Authorisation: the caller's organisation must have a role in this aggregate (a
        // refusal is confirmed against the log's end first, see `AccessIndex::check`).
        let decided_at = Utc::now();
        let allowed = self
            .access
            .check(self.deadline, |g| {
                g.authorise(identity, &command, state.as_ref(), decided_at)
            })
            .await;
        if let Err(e) = allowed {
            if let AccessError::Denied(d) = &e {
                let person = (target.person_id != carewoven_domain::REGISTRY_PERSON)
                    .then_some(target.person_id);
                self.audit_refusal(Some(identity), person, rpc, d.audit_reason())
                    .await;
            }
            return Err(e.to_status());
        }
        if target.existence == Existence::MustNotExist {
            self.require_person(&target).await?;
        } else {
            if history.events.is_empty() {
                self.require_person(&target).await?;
            }
            if let Some(previous) = history.command(ctx.command_id) {
                return replay_reply(ctx.command_id, &print, &target, previous);
            }
        }
        // Only after authorisation: the answer says whose the number is.
        self.refuse_nhs_number_taken(&command, ctx.command_id)
            .await?;
        let now = Utc::now();
        let decide_ctx = DecideContext {
            now,
            actor: ctx.actor.clone(),
        };
        let events = match carewoven_domain::decide(state.as_ref(), &command, &decide_ctx) {
            Ok(events) => events,
            Err(e) => {
                // A retried creating command is decided before it can be recognised (it reads
                // nothing first); a rule that has since changed, or the calendar moving on,
                // must not turn its replay into a refusal.
                if target.existence == Existence::MustNotExist
                    && let Some(previous) = self.creation_by(&target, ctx.command_id).await?
                {
                    return replay_reply(ctx.command_id, &print, &target, previous);
                }
                return Err(match e {
                    DomainError::Invalid { field, reason } => {
                        domain_status(&DomainError::Invalid {
                            field: request.wire_field(&field),
                            reason,
                        })
                    }
                    e => domain_status(&e),
                });
            }
        };

        // Decided: emergency access goes on record before it is given.
        if let Some(denied) = self.audit_emergency_access(identity, &command, rpc).await {
            return Err(denied);
        }
        // So does what a carer does as someone's proxy.
        if let Some(denied) = self.audit_proxy(identity, &target, rpc).await {
            return Err(denied);
        }
        let base_version = history.events.len() as u64;
        let occurred_at = ctx.occurred_at.unwrap_or(now);
        let events = events
            .into_iter()
            .zip(base_version + 1..)
            .map(|(event, version)| {
                let meta = EventMeta {
                    event_id: Uuid::now_v7(),
                    aggregate_id: target.aggregate_id,
                    aggregate_kind: target.kind,
                    person_id: target.person_id,
                    version,
                    command_id: ctx.command_id,
                    correlation_id: ctx.correlation_id,
                    causation_id: ctx.causation_id,
                    organisation: ctx.actor.organisation.clone(),
                    user: ctx.actor.user.clone(),
                    occurred_at,
                    recorded_at: now,
                    schema_version: SCHEMA_VERSION,
                };
                (meta, event)
            })
            .collect();
        let append = Append {
            person_id: target.person_id,
            kind: target.kind,
            aggregate_id: target.aggregate_id,
            expected_last_sequence: history.last_sequence,
            fingerprint: print.clone(),
            events,
        };
        match self.log.append(append).await {
            Ok(effect) => Ok(reply(&target, &effect, false)),
            Err(LogError::Conflict) => {
                // Either an attempt of this same command won the race, or the aggregate moved.
                if target.existence == Existence::MustNotExist {
                    if let Some(previous) = self.creation_by(&target, ctx.command_id).await? {
                        return replay_reply(ctx.command_id, &print, &target, previous);
                    }
                    return Err(self.already_exists(identity, &target).await);
                }
                let history = self.read_for(&target).await?;
                if let Some(previous) = history.command(ctx.command_id) {
                    return replay_reply(ctx.command_id, &print, &target, previous);
                }
                Err(log_status(&LogError::Conflict))
            }
            Err(e) => Err(log_status(&e)),
        }
    }

    /// What already exists. A person's id is told only to an organisation with a
    /// relationship with them; anyone else learns only that the NHS number is registered
    /// and is pointed to `FindPerson` (NHS number and date of birth, audited).
    async fn already_exists(&self, identity: &Identity, target: &Target) -> Status {
        if target.kind == AggregateKind::Person {
            let person = target.person_id;
            let related = self
                .access
                .check(self.deadline, |g| {
                    g.may_read(identity, person, Utc::now())
                        .or_else(|d| match d.reason {
                            "NO_AGREEMENT_IN_FORCE" => Ok(()),
                            _ => Err(d),
                        })
                })
                .await
                .is_ok();
            if !related {
                return domain_status(&DomainError::AlreadyExists {
                    what: "person with that NHS number",
                    id: "(use FindPerson with the NHS number and date of birth)".to_owned(),
                });
            }
        }
        domain_status(&DomainError::AlreadyExists {
            what: target.kind.as_str(),
            id: target.aggregate_id.to_string(),
        })
    }

    /// Emergency access is audited as BREAK_GLASS before it is granted: if the audit record
    /// cannot be stored, access is not given.
    async fn audit_emergency_access(
        &self,
        identity: &Identity,
        command: &carewoven_domain::Command,
        rpc: &str,
    ) -> Option<Status> {
        let carewoven_domain::Command::Person {
            person_id,
            command: carewoven_domain::person::PersonCommand::AssertEmergencyAccess { .. },
        } = command
        else {
            return None;
        };
        let record =
            AuditRecord::permitted(identity, Some(*person_id), v1::AuditAction::BreakGlass)
                .detail(rpc);
        match self.audit.record(&record).await {
            Ok(_) => None,
            Err(e) => Some(Status::unavailable(format!(
                "emergency access could not be audited, so it was not given: {}",
                e.message()
            ))),
        }
    }

    /// A carer acting as the person's proxy is audited (action COMMAND, detail `proxy` and
    /// the carer's pseudonym) before the command is appended: if the audit record cannot be
    /// stored, nothing is done.
    async fn audit_proxy(&self, identity: &Identity, target: &Target, rpc: &str) -> Option<Status> {
        let person = target.person_id;
        let detail = self.access.with(|g| {
            g.acts_as_proxy(identity, person)
                .then(|| carewoven_access::citizen::audit_detail(g, identity, person, rpc))
        })?;
        let record =
            AuditRecord::permitted(identity, Some(person), v1::AuditAction::Command).detail(detail);
        match self.audit.record(&record).await {
            Ok(_) => None,
            Err(e) => Some(Status::unavailable(format!(
                "a proxy's action could not be audited, so it was not done: {}",
                e.message()
            ))),
        }
    }

    /// The aggregate's history. When it has none, the refusal names what is missing: the
    /// person, or the aggregate.
    async fn read_for(&self, target: &Target) -> Result<History, Status> {
        let history = self
            .log
            .load(target.person_id, target.kind, target.aggregate_id)
            .await
            .map_err(|e| log_status(&e))?;
        if history.events.is_empty() {
            self.require_person(target).await?;
        }
        Ok(history)
    }

    /// If this command created the aggregate, what it appended. The first event is read from
    /// the stream leader, so a lagging replica cannot hide it.
    async fn creation_by(
        &self,
        target: &Target,
        command_id: Uuid,
    ) -> Result<Option<CommandEffect>, Status> {
        let first = self
            .log
            .first_event(target.person_id, target.kind, target.aggregate_id)
            .await
            .map_err(|e| log_status(&e))?;
        let Some(first) = first.filter(|f| f.recorded.meta.command_id == command_id) else {
            return Ok(None);
        };
        let history = self.read_for(target).await?;
        Ok(Some(history.command(command_id).unwrap_or(CommandEffect {
            fingerprint: first.fingerprint,
            events: vec![first.recorded],
        })))
    }

    /// A person is registered once: correcting an NHS number to one that already belongs to
    /// a registered person is refused.
    async fn refuse_nhs_number_taken(
        &self,
        command: &carewoven_domain::Command,
        command_id: Uuid,
    ) -> Result<(), Status> {
        let carewoven_domain::Command::Person {
            person_id,
            command: carewoven_domain::person::PersonCommand::Correct { correction, .. },
        } = command
        else {
            return Ok(());
        };
        let Some(nhs) = &correction.nhs_number else {
            return Ok(());
        };
        let owner = self.ids.for_command(command_id).person_id_for(nhs);
        if owner != *person_id
            && self
                .log
                .person_exists(owner)
                .await
                .map_err(|e| log_status(&e))?
        {
            return Err(domain_status(&DomainError::AlreadyExists {
                what: "person with that NHS number",
                id: owner.to_string(),
            }));
        }
        Ok(())
    }

    /// Every aggregate but the person itself (and registry aggregates, which belong to no
    /// person) needs its person to exist.
    async fn require_person(&self, target: &Target) -> Result<(), Status> {
        if matches!(
            target.kind,
            AggregateKind::Person | AggregateKind::Organisation
        ) || self.known_persons.contains(target.person_id)
        {
            return Ok(());
        }
        if self
            .log
            .person_exists(target.person_id)
            .await
            .map_err(|e| log_status(&e))?
        {
            self.known_persons.insert(target.person_id);
            Ok(())
        } else {
            Err(person_not_found(target.person_id))
        }
    }
}

fn person_not_found(person: Uuid) -> Status {
    domain_status(&DomainError::NotFound {
        what: "person",
        id: person.to_string(),
    })
}

/// Answer a retry with the original result, unless the id was reused for other content.
fn replay_reply(
    command_id: Uuid,
    print: &str,
    target: &Target,
    previous: CommandEffect,
) -> Result<CommandReply, Status> {
    if previous.fingerprint.as_deref() != Some(print) {
        return Err(domain_status(&DomainError::invalid(
            "context.command_id",
            format!("{command_id} was already used for a different command"),
        )));
    }
    Ok(reply(target, &previous, true))
}

fn reply(target: &Target, effect: &CommandEffect, duplicate: bool) -> CommandReply {
    let versions = effect.events.iter().map(|e| e.meta.version);
    CommandReply {
        command_id: effect
            .events
            .first()
            .map(|e| e.meta.command_id.to_string())
            .unwrap_or_default(),
        aggregate_kind: target.kind.as_str().to_owned(),
        aggregate_id: target.aggregate_id.to_string(),
        person_id: target.person_id.to_string(),
        first_version: versions.clone().min().unwrap_or_default(),
        last_version: versions.max().unwrap_or_default(),
        log_position: effect.last_sequence(),
        event_ids: effect
            .events
            .iter()
            .map(|e| e.meta.event_id.to_string())
            .collect(),
        event_types: effect
            .events
            .iter()
            .map(|e| e.event.name().to_owned())
            .collect(),
        duplicate,
    }
}
