//! Grounds that end with time, put on record.
//!
//! Most relationships end with an event (a care-team removal, a rejected referral), which is
//! in the log and is the last item of the partner's feed. A hospital stay, a receiving role in
//! a discharge, a completed or failed referral and an emergency access end with time instead
//! (the set period after a terminal state, or the expiry). The sweep writes one
//! `RELATIONSHIP_ENDED` audit record for each such end, under the person and the
//! organisation (`cw.audit.<person>.<ORG>.relationship_ended`, `reason` = the ground), so
//! "who could see this record, until when" can be answered from the audit stream.
//!
//! How far it has swept is itself in the audit stream (a record on
//! [`CHECKPOINT_SUBJECT`] whose detail is the instant), so a restarted gateway carries on
//! from there. A crash between an end's record and the next checkpoint writes that end again
//! on restart: at least once, never lost.

use std::time::Duration;

use carewoven_access::audit::AuditRecord;
use carewoven_access::{AccessIndex, AuditLog};
use carewoven_domain::values::Code;
use carewoven_governance::Identity;
use carewoven_proto::v1;
use chrono::{DateTime, Utc};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::evaluator::Clock;

/// The organisation token of the sweep's own checkpoint records.
pub const SWEEP_ORGANISATION: &str = "CAREWOVEN";
/// Where the sweep's checkpoints are kept.
pub const CHECKPOINT_SUBJECT: &str = "cw.audit.none.CAREWOVEN.relationship_ended";

fn system(org: &str) -> Option<Identity> {
    Some(Identity {
        organisation: Code::parse("organisation", org).ok()?,
        user: None,
        roles: Vec::new(),
        citizen: None,
    })
}

/// The instant the last sweep reached, from the audit stream (the epoch if none).
async fn swept_to(js: &async_nats::jetstream::Context) -> anyhow::Result<DateTime<Utc>> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    let stream = js
        .get_stream_no_info(carewoven_access::audit::AUDIT_STREAM)
        .await?;
    match stream.direct_get_last_for_subject(CHECKPOINT_SUBJECT).await {
        Ok(message) => {
            let event = v1::AuditEvent::decode(message.payload.as_ref())?;
            Ok(DateTime::parse_from_rfc3339(&event.detail)?.with_timezone(&Utc))
        }
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(DateTime::UNIX_EPOCH),
        Err(e) => Err(e.into()),
    }
}

/// Sweep every `interval` until `stop`.
pub async fn run(
    access: AccessIndex,
    audit: AuditLog,
    js: async_nats::jetstream::Context,
    clock: Clock,
    interval: Duration,
    deadline: Duration,
    stop: CancellationToken,
) {
    let mut from = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        let after = match from {
            Some(t) => t,
            None => match swept_to(&js).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "relationship sweep: checkpoint not readable; retrying");
                    continue;
                }
            },
        };
        match sweep(&access, &audit, after, clock(), deadline).await {
            Ok(until) => from = Some(until),
            Err(e) => {
                from = Some(after);
                tracing::warn!(error = %e, "relationship sweep incomplete; retrying");
            }
        }
    }
}

/// Record every ground that ended in `(after, now]`; returns `now` once all are stored.
pub async fn sweep(
    access: &AccessIndex,
    audit: &AuditLog,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
    deadline: Duration,
) -> anyhow::Result<DateTime<Utc>> {
    // Decide on the log as it stands now: an end after a later event is still an end.
    access
        .catch_up(deadline)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ended = access
        .with(|g| g.grounds_ended(after, now))
        .map_err(|e| anyhow::anyhow!("the access checkpoint: {e}"))?;
    if ended.is_empty() {
        return Ok(now);
    }
    // Submitted together, so they share the audit writer's few writes.
    let mut stored = Vec::with_capacity(ended.len());
    for end in &ended {
        let who = system(end.organisation.as_str());
        let mut record = AuditRecord::permitted(
            who.as_ref()
                .ok_or_else(|| anyhow::anyhow!("organisation code"))?,
            Some(end.person),
            v1::AuditAction::RelationshipEnded,
        )
        .detail(end.ended_at.to_rfc3339());
        record.reason = end.ground.as_str().to_owned();
        stored.push(audit.submit(&record));
    }
    futures::future::try_join_all(stored)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let checkpoint = AuditRecord::permitted(
        system(SWEEP_ORGANISATION)
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("organisation code"))?,
        None,
        v1::AuditAction::RelationshipEnded,
    )
    .detail(now.to_rfc3339());
    // Alone on its subject: the next start reads it back as that subject's last message.
    audit
        .record_alone(&checkpoint)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    tracing::info!(
        ended = ended.len(),
        "relationship sweep recorded ended grounds"
    );
    Ok(now)
}
