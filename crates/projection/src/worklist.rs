//! What a care record puts on organisations' worklists: open tasks for their owner, the care
//! plan's review for every organisation on the care team or with an activity in the plan,
//! the person for every care-team organisation while nobody is named coordinator, and each
//! open assessment for every assessor that has not contributed yet.
//!
//! A pure function of the record, so the projection keeps the `WORKLIST` table by taking the
//! difference of what the record listed before and after each event (deterministic: ordered
//! maps only). Sort keys start with the due day, so a list reads in due order.

use std::collections::{BTreeMap, BTreeSet};

use carewoven_proto::v1;
use prost::Message;
use uuid::Uuid;

/// List names: `<kind>:<organisation>`.
pub const TASKS: &str = "tasks";
pub const REVIEWS_DUE: &str = "reviews";
pub const NO_COORDINATOR: &str = "uncoordinated";
pub const AWAITING_CONTRIBUTION: &str = "assessments";

/// The list name of `kind` for `organisation`.
pub fn list(kind: &str, organisation: &str) -> String {
    format!("{kind}:{organisation}")
}

/// The list name for a wire kind, if it names one.
pub fn kind_name(kind: v1::WorklistKind) -> Option<&'static str> {
    match kind {
        v1::WorklistKind::Tasks => Some(TASKS),
        v1::WorklistKind::ReviewsDue => Some(REVIEWS_DUE),
        v1::WorklistKind::NoCoordinator => Some(NO_COORDINATOR),
        v1::WorklistKind::AwaitingContribution => Some(AWAITING_CONTRIBUTION),
        v1::WorklistKind::Unspecified => None,
    }
}

/// (list, sort key, item id) -> encoded `v1::WorklistItem`.
pub type Items = BTreeMap<(String, String, u128), Vec<u8>>;

/// Stat first, then asap, urgent, routine: the order of equal due days on a worklist, and
/// of referrals in an inbox.
pub fn priority_rank(p: i32) -> u8 {
    match v1::Priority::try_from(p) {
        Ok(v1::Priority::Stat) => 0,
        Ok(v1::Priority::Asap) => 1,
        Ok(v1::Priority::Urgent) => 2,
        _ => 3,
    }
}

fn is_open(status: i32) -> bool {
    matches!(
        v1::TaskStatus::try_from(status),
        Ok(v1::TaskStatus::Requested
            | v1::TaskStatus::Accepted
            | v1::TaskStatus::InProgress
            | v1::TaskStatus::OnHold)
    )
}

fn id(raw: &str) -> u128 {
    raw.parse::<Uuid>().map_or(0, |u| u.as_u128())
}

/// The day part of a timestamp (UTC calendar day: the sort key of an assessment without a
/// due date; a timestamp is recorded, not read from a clock).
fn day_of(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| {
            carewoven_domain::values::uk_date(t)
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap_or_default()
}

/// Everything `record` puts on any worklist.
pub fn items(record: &v1::CareRecord) -> Items {
    let mut out = Items::new();
    let person = id(&record.person_id);
    let mut put = |kind: &str, org: &str, sort: String, item: u128, value: v1::WorklistItem| {
        out.insert((list(kind, org), sort, item), value.encode_to_vec());
    };
    for t in &record.tasks {
        let Some(task) = &t.task else { continue };
        let Some(owner) = &task.owner else { continue };
        if !is_open(t.status) {
            continue;
        }
        put(
            TASKS,
            &owner.organisation,
            format!("{}|{}", task.due, priority_rank(task.priority)),
            id(&t.task_id),
            v1::WorklistItem {
                kind: v1::WorklistKind::Tasks.into(),
                person_id: record.person_id.clone(),
                item_id: t.task_id.clone(),
                due: task.due.clone(),
                priority: task.priority,
                status: t.status,
                description: task.description.clone(),
                practitioner: owner.practitioner.clone(),
                ..Default::default()
            },
        );
    }
    let team: Vec<&v1::CareTeamMember> = record
        .care_team
        .as_ref()
        .map(|t| t.members.iter().collect())
        .unwrap_or_default();
    // Each team organisation once, from the day it first joined.
    let mut joined: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &team {
        if let Some(member) = &m.member {
            let since = joined
                .entry(member.organisation.as_str())
                .or_insert(&m.since);
            if m.since.as_str() < *since {
                *since = &m.since;
            }
        }
    }
    if let Some(plan) = record.care_plan.as_ref().and_then(|p| p.plan.as_ref()) {
        let mut orgs: BTreeSet<&str> = joined.keys().copied().collect();
        // Owners of activities still open (an ended activity's owner has nothing to review).
        let ended = |a: &v1::Activity| {
            matches!(
                v1::ActivityStatus::try_from(a.status),
                Ok(v1::ActivityStatus::Completed
                    | v1::ActivityStatus::Cancelled
                    | v1::ActivityStatus::Stopped)
            )
        };
        orgs.extend(
            plan.activities
                .iter()
                .filter(|a| !ended(a))
                .map(|a| a.responsible_organisation.as_str()),
        );
        for org in orgs {
            put(
                REVIEWS_DUE,
                org,
                plan.review_date.clone(),
                person,
                v1::WorklistItem {
                    kind: v1::WorklistKind::ReviewsDue.into(),
                    person_id: record.person_id.clone(),
                    due: plan.review_date.clone(),
                    ..Default::default()
                },
            );
        }
    }
    let coordinated = record
        .care_team
        .as_ref()
        .is_some_and(|t| t.coordinator.is_some());
    if !coordinated {
        for (org, since) in &joined {
            put(
                NO_COORDINATOR,
                org,
                (*since).to_owned(),
                person,
                v1::WorklistItem {
                    kind: v1::WorklistKind::NoCoordinator.into(),
                    person_id: record.person_id.clone(),
                    due: (*since).to_owned(),
                    ..Default::default()
                },
            );
        }
    }
    for a in &record.assessments {
        if a.status != "requested" {
            continue;
        }
        let Some(request) = &a.request else { continue };
        let due = if request.due_by.is_empty() {
            day_of(&a.requested_at)
        } else {
            request.due_by.clone()
        };
        let contributed: BTreeSet<&str> = a
            .contributions
            .iter()
            .map(|c| c.organisation.as_str())
            .collect();
        let assessors: BTreeSet<&str> = request.assessors.iter().map(String::as_str).collect();
        for org in assessors.difference(&contributed) {
            put(
                AWAITING_CONTRIBUTION,
                org,
                due.clone(),
                id(&a.assessment_id),
                v1::WorklistItem {
                    kind: v1::WorklistKind::AwaitingContribution.into(),
                    person_id: record.person_id.clone(),
                    item_id: a.assessment_id.clone(),
                    due: due.clone(),
                    assessment_kind: request.kind,
                    ..Default::default()
                },
            );
        }
    }
    out
}
