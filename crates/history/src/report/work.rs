//! Tasks completed on time and care-plan reviews overdue (issue 12): the service review's
//! figures about the work done for people, folded from task and care-plan events.
//!
//! Neither reads any free text: a task's description and a plan's goals and activity
//! descriptions are never looked at, only dates, statuses and organisation codes.

use std::collections::{BTreeMap, HashSet};

use carewoven_domain::care_plan::{CarePlanEvent, PlanContent};
use carewoven_domain::task::{TaskEvent, TaskStatus};
use carewoven_domain::values::{Code, uk_date};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RecordedEvent;
use super::nhse::uk_midnight;
use super::stats::{nearest_rank, percent};

pub const TASKS_DEFINITION: &str = "Tasks that reached a final status in the period \
(completed, cancelled or failed), by the time the status change says it happened; a task is \
in scope when the organisation that owned it then, or the one that requested it, is. A \
completed task is on time when the UK calendar day it was completed on is on or before its \
due date (reassigning a task does not change its due date). The share on time is of the \
completed tasks, rounded to one decimal place; cancelled and failed tasks are counted beside \
it. Broken down by the organisation that owned the task when it reached its final status. A \
task's description is never read.";

pub const REVIEWS_DEFINITION: &str = "At the end of the period: the people whose current care \
plan (its latest version agreed or revised by then) has a review date before the UK calendar \
day the period ends on, and by how many days (that day minus the review date; the median and \
90th percentile use the nearest-rank method). Reviews falling due in the period: plan versions \
whose review date is a UK calendar day that begins in the period and that were not replaced by \
a revision before that day. A plan is in scope when the organisation that recorded its version \
then, or one responsible for one of its activities, is.";

/// The tasks section of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TasksMetric {
    pub definition: String,
    /// Every task in scope that reached a final status in the period.
    pub all: TaskCounts,
    /// By the organisation that owned the task when it reached its final status (sorted).
    pub by_owner: Vec<OwnerTasks>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Completed, cancelled or failed in the period.
    pub finished: u64,
    pub completed: u64,
    /// Completed on or before the due date (UK calendar day).
    pub completed_on_time: u64,
    pub completed_late: u64,
    /// Of the completed tasks; `None` when none was completed.
    pub on_time_percent: Option<f64>,
    pub cancelled: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerTasks {
    pub owner: String,
    pub tasks: TaskCounts,
}

/// The care-plan reviews section of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewsMetric {
    pub definition: String,
    /// The UK calendar day the period ends on: a review date before it is overdue.
    pub as_of_day: NaiveDate,
    /// People in scope with a care plan at the end of the period.
    pub people_with_a_plan: u64,
    /// Of them, those whose review date is before `as_of_day`.
    pub overdue: u64,
    pub overdue_percent: Option<f64>,
    /// Days overdue (nearest rank); `None` when nobody's review is overdue.
    pub days_overdue_median: Option<f64>,
    pub days_overdue_p90: Option<f64>,
    /// Reviews whose date fell in the period (see the definition).
    pub falling_due_in_period: u64,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskEnd {
    OnTime,
    Late,
    Cancelled,
    Failed,
}

/// A task as the report needs it.
pub(super) struct TaskFolded {
    pub person: Uuid,
    pub requester: Code,
    due: NaiveDate,
    owner: Code,
    /// The first final status: how it ended, when, and the owner organisation then.
    pub ended: Option<(TaskEnd, DateTime<Utc>, Code)>,
}

impl TaskFolded {
    /// In scope through its owner when it ended or its requester.
    pub fn in_scope(&self, in_scope: &impl Fn(&Code) -> bool) -> bool {
        in_scope(&self.requester) || self.ended.as_ref().is_some_and(|(_, _, o)| in_scope(o))
    }
}

/// One version of a person's care plan.
pub(super) struct PlanVersion {
    at: DateTime<Utc>,
    review_date: NaiveDate,
    /// The organisation that recorded it and those responsible for its activities.
    organisations: Vec<Code>,
}

/// A person's care plan: its versions in log order.
pub(super) struct PlanFolded {
    pub person: Uuid,
    versions: Vec<PlanVersion>,
}

impl PlanFolded {
    /// The version current at `t`: the last in log order that happened before `t`.
    fn current_at(&self, t: DateTime<Utc>) -> Option<&PlanVersion> {
        self.versions.iter().rev().find(|v| v.at < t)
    }

    /// Days the review is overdue at the start of UK day `day` (0 or less: not overdue), for
    /// the version current then; `None` when there is no plan then, or it is out of scope.
    pub fn days_overdue(&self, day: NaiveDate, in_scope: &impl Fn(&Code) -> bool) -> Option<i64> {
        let v = self.current_at(uk_midnight(day))?;
        v.organisations
            .iter()
            .any(in_scope)
            .then(|| (day - v.review_date).num_days())
    }

    /// Review dates that begin in `[from, to)` with their version still current (not replaced
    /// by a revision before that day), in scope.
    fn falling_due(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        in_scope: &impl Fn(&Code) -> bool,
    ) -> usize {
        self.versions
            .iter()
            .enumerate()
            .filter(|(i, v)| {
                let starts = uk_midnight(v.review_date);
                from <= starts
                    && starts < to
                    && v.at < to
                    && v.organisations.iter().any(in_scope)
                    && self
                        .versions
                        .get(i + 1)
                        .is_none_or(|next| uk_date(next.at) >= v.review_date)
            })
            .count()
    }
}

/// Fold one task event (log order).
pub(super) fn fold_task(tasks: &mut BTreeMap<Uuid, TaskFolded>, e: &RecordedEvent, t: &TaskEvent) {
    let id = e.meta.aggregate_id;
    match t {
        TaskEvent::Created { task, requester } => {
            tasks.entry(id).or_insert_with(|| TaskFolded {
                person: e.meta.person_id,
                requester: requester.clone(),
                due: task.due,
                owner: task.owner.organisation.clone(),
                ended: None,
            });
        }
        TaskEvent::Reassigned { owner, .. } => {
            if let Some(task) = tasks.get_mut(&id).filter(|t| t.ended.is_none()) {
                task.owner = owner.organisation.clone();
            }
        }
        TaskEvent::StatusChanged { status, .. } => {
            let Some(task) = tasks.get_mut(&id).filter(|t| t.ended.is_none()) else {
                return;
            };
            let at = e.meta.occurred_at;
            let end = match status {
                TaskStatus::Completed if uk_date(at) <= task.due => TaskEnd::OnTime,
                TaskStatus::Completed => TaskEnd::Late,
                TaskStatus::Cancelled => TaskEnd::Cancelled,
                TaskStatus::Failed => TaskEnd::Failed,
                _ => return,
            };
            task.ended = Some((end, at, task.owner.clone()));
        }
    }
}

/// Fold one care-plan event (log order).
pub(super) fn fold_plan(
    plans: &mut BTreeMap<Uuid, PlanFolded>,
    e: &RecordedEvent,
    p: &CarePlanEvent,
) {
    let (CarePlanEvent::Agreed { plan, .. } | CarePlanEvent::Revised { plan, .. }) = p;
    let PlanContent {
        activities,
        review_date,
        ..
    } = plan;
    let mut organisations = vec![e.meta.organisation.clone()];
    organisations.extend(
        activities
            .iter()
            .map(|a| a.responsible_organisation.clone()),
    );
    plans
        .entry(e.meta.aggregate_id)
        .or_insert_with(|| PlanFolded {
            person: e.meta.person_id,
            versions: Vec::new(),
        })
        .versions
        .push(PlanVersion {
            at: e.meta.occurred_at,
            review_date: *review_date,
            organisations,
        });
}

/// Counts of how tasks ended.
pub(super) fn task_counts(ends: impl IntoIterator<Item = TaskEnd>) -> TaskCounts {
    let mut c = TaskCounts::default();
    for end in ends {
        c.finished += 1;
        match end {
            TaskEnd::OnTime => c.completed_on_time += 1,
            TaskEnd::Late => c.completed_late += 1,
            TaskEnd::Cancelled => c.cancelled += 1,
            TaskEnd::Failed => c.failed += 1,
        }
    }
    c.completed = c.completed_on_time + c.completed_late;
    c.on_time_percent = percent(c.completed_on_time, c.completed);
    c
}

/// The tasks section for `[from, to)`.
pub(super) fn tasks_metric(
    tasks: &BTreeMap<Uuid, TaskFolded>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    in_scope: &impl Fn(&Code) -> bool,
    opted_out: &HashSet<Uuid>,
) -> TasksMetric {
    let ended: Vec<(TaskEnd, &Code)> = tasks
        .values()
        .filter(|t| !opted_out.contains(&t.person) && t.in_scope(in_scope))
        .filter_map(|t| t.ended.as_ref())
        .filter(|(_, at, _)| from <= *at && *at < to)
        .map(|(end, _, owner)| (*end, owner))
        .collect();
    let mut by_owner: BTreeMap<&Code, Vec<TaskEnd>> = BTreeMap::new();
    for (end, owner) in &ended {
        by_owner.entry(*owner).or_default().push(*end);
    }
    TasksMetric {
        definition: TASKS_DEFINITION.to_owned(),
        all: task_counts(ended.iter().map(|(end, _)| *end)),
        by_owner: by_owner
            .into_iter()
            .map(|(owner, ends)| OwnerTasks {
                owner: owner.as_str().to_owned(),
                tasks: task_counts(ends),
            })
            .collect(),
    }
}

/// The care-plan reviews section for `[from, to)`.
pub(super) fn reviews_metric(
    plans: &BTreeMap<Uuid, PlanFolded>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    in_scope: &impl Fn(&Code) -> bool,
    opted_out: &HashSet<Uuid>,
) -> ReviewsMetric {
    let considered: Vec<&PlanFolded> = plans
        .values()
        .filter(|p| !opted_out.contains(&p.person))
        .collect();
    let as_of_day = uk_date(to);
    // The plan as it stands at the period's end instant, not at the start of its UK day.
    let current: Vec<i64> = considered
        .iter()
        .filter_map(|p| {
            let v = p.current_at(to)?;
            v.organisations
                .iter()
                .any(in_scope)
                .then(|| (as_of_day - v.review_date).num_days())
        })
        .collect();
    let mut overdue: Vec<f64> = current
        .iter()
        .filter(|d| **d > 0)
        .map(|d| *d as f64)
        .collect();
    overdue.sort_by(f64::total_cmp);
    let people = current.len() as u64;
    let n_overdue = overdue.len() as u64;
    ReviewsMetric {
        definition: REVIEWS_DEFINITION.to_owned(),
        as_of_day,
        people_with_a_plan: people,
        overdue: n_overdue,
        overdue_percent: percent(n_overdue, people),
        days_overdue_median: nearest_rank(&overdue, 50),
        days_overdue_p90: nearest_rank(&overdue, 90),
        falling_due_in_period: considered
            .iter()
            .map(|p| p.falling_due(from, to, in_scope) as u64)
            .sum(),
    }
}
