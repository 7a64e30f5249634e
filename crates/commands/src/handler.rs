//! Executes one command: check idempotency, load, decide, append, reply.
//!
//! Nothing that decides a command lives only in this process: the aggregate's state is
//! replayed from the log for every command, the log's optimistic concurrency check settles
//! races between instances, and command ids are remembered by markers in the log. Any number
//! of instances may therefore run against one NATS.

use carewoven_domain::{
    AggregateState, DecideContext, DomainError, EventMeta, Existence, SCHEMA_VERSION, Target,
};
use carewoven_eventlog::{Append, CommandRecord, EventLog, History, LogError, StoredCommand};
use carewoven_proto::convert::{CommandRequest, parse_context};
use carewoven_proto::v1::CommandReply;
use chrono::Utc;
use tonic::Status;
use uuid::Uuid;

use crate::error::{domain_status, log_status, replay_status};
use crate::ids::{Ids, fingerprint};

#[derive(Clone)]
pub struct Handler {
    log: EventLog,
    ids: Ids,
}

impl Handler {
    pub fn new(log: EventLog, ids: Ids) -> Self {
        Handler { log, ids }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub async fn execute<R>(&self, request: &R) -> Result<CommandReply, Status>
    where
        R: CommandRequest + prost::Message,
    {
        let ctx = parse_context(request.context()).map_err(|e| domain_status(&e))?;
        let command = request
            .to_command(&self.ids)
            .map_err(|e| domain_status(&e))?;
        let target = command.target();
        let print = fingerprint(&request.encode_to_vec());
        self.log.ensure_connected().map_err(|e| log_status(&e))?;

        // The idempotency check and the read the decision needs go out together.
        let (previous, history) = tokio::join!(
            self.log.find_command(ctx.command_id),
            self.read_for(&target)
        );
        if let Some(stored) = previous.map_err(|e| log_status(&e))? {
            return replay_reply(ctx.command_id, &print, stored);
        }
        let history = history?;

        let mut state: Option<AggregateState> = None;
        for recorded in &history.events {
            state = Some(
                carewoven_domain::evolve(state, &recorded.event).map_err(|e| replay_status(&e))?,
            );
        }
        let now = Utc::now();
        let decide_ctx = DecideContext {
            now,
            actor: ctx.actor.clone(),
        };
        let events = carewoven_domain::decide(state.as_ref(), &command, &decide_ctx)
            .map_err(|e| domain_status(&with_target(e, &target)))?;

        let base_version = history.events.len() as u64;
        let occurred_at = ctx.occurred_at.unwrap_or(now);
        let metas: Vec<(EventMeta, carewoven_domain::Event)> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                (
                    EventMeta {
                        event_id: Uuid::now_v7(),
                        aggregate_id: target.aggregate_id,
                        aggregate_kind: target.kind,
                        person_id: target.person_id,
                        version: base_version + i as u64 + 1,
                        command_id: ctx.command_id,
                        correlation_id: ctx.correlation_id,
                        causation_id: ctx.causation_id,
                        organisation: ctx.actor.organisation.clone(),
                        user: ctx.actor.user.clone(),
                        occurred_at,
                        recorded_at: now,
                        schema_version: SCHEMA_VERSION,
                    },
                    event,
                )
            })
            .collect();
        let record = CommandRecord {
            command_id: ctx.command_id,
            fingerprint: print.clone(),
            aggregate_kind: target.kind.as_str().to_owned(),
            aggregate_id: target.aggregate_id,
            person_id: target.person_id,
            first_version: base_version + 1,
            last_version: base_version + metas.len() as u64,
            event_ids: metas.iter().map(|(m, _)| m.event_id).collect(),
            event_types: metas.iter().map(|(_, e)| e.name().to_owned()).collect(),
        };
        let append = Append {
            person_id: target.person_id,
            kind: target.kind,
            aggregate_id: target.aggregate_id,
            expected_last_sequence: history.last_sequence,
            events: metas,
            record,
        };
        match self.log.append(append).await {
            Ok(stored) => Ok(reply(stored, false)),
            Err(LogError::Conflict) => {
                // Either the same command id won a race with us, or the aggregate moved.
                if let Some(stored) = self
                    .log
                    .find_command(ctx.command_id)
                    .await
                    .map_err(|e| log_status(&e))?
                {
                    return replay_reply(ctx.command_id, &print, stored);
                }
                if target.existence == Existence::MustNotExist {
                    return Err(domain_status(&DomainError::AlreadyExists {
                        what: target.kind.as_str(),
                        id: target.aggregate_id.to_string(),
                    }));
                }
                Err(log_status(&LogError::Conflict))
            }
            Err(e) => Err(log_status(&e)),
        }
    }

    /// What a decision needs to read: the aggregate's history, or for a creating command only
    /// that the person exists.
    async fn read_for(&self, target: &Target) -> Result<History, Status> {
        let person_needed = target.kind != carewoven_domain::AggregateKind::Person;
        match target.existence {
            Existence::MustNotExist => {
                if person_needed
                    && !self
                        .log
                        .person_exists(target.person_id)
                        .await
                        .map_err(|e| log_status(&e))?
                {
                    return Err(person_not_found(target.person_id));
                }
                Ok(History::default())
            }
            Existence::MustExist | Existence::Either => {
                let history = self
                    .log
                    .load(target.person_id, target.kind, target.aggregate_id)
                    .await
                    .map_err(|e| log_status(&e))?;
                if history.events.is_empty()
                    && person_needed
                    && !self
                        .log
                        .person_exists(target.person_id)
                        .await
                        .map_err(|e| log_status(&e))?
                {
                    return Err(person_not_found(target.person_id));
                }
                Ok(history)
            }
        }
    }
}

fn person_not_found(person: Uuid) -> Status {
    domain_status(&DomainError::NotFound {
        what: "person",
        id: person.to_string(),
    })
}

/// Aggregates report NotFound/AlreadyExists without knowing their own id; fill it in.
fn with_target(e: DomainError, target: &Target) -> DomainError {
    match e {
        DomainError::NotFound { what, id } if id.is_empty() => DomainError::NotFound {
            what,
            id: target.aggregate_id.to_string(),
        },
        DomainError::AlreadyExists { what, id } if id.is_empty() => DomainError::AlreadyExists {
            what,
            id: target.aggregate_id.to_string(),
        },
        other => other,
    }
}

fn replay_reply(
    command_id: Uuid,
    print: &str,
    stored: StoredCommand,
) -> Result<CommandReply, Status> {
    if stored.record.fingerprint != print {
        return Err(domain_status(&DomainError::invalid(
            "context.command_id",
            format!("{command_id} was already used for a different command"),
        )));
    }
    Ok(reply(stored, true))
}

fn reply(stored: StoredCommand, duplicate: bool) -> CommandReply {
    let r = stored.record;
    CommandReply {
        command_id: r.command_id.to_string(),
        aggregate_kind: r.aggregate_kind,
        aggregate_id: r.aggregate_id.to_string(),
        person_id: r.person_id.to_string(),
        first_version: r.first_version,
        last_version: r.last_version,
        log_position: stored.last_event_sequence,
        event_ids: r.event_ids.iter().map(Uuid::to_string).collect(),
        event_types: r.event_types,
        duplicate,
    }
}
