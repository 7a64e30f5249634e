//! Care plan (CarePlan): one per person, shared. Each revision is a new version; a revision
//! based on an out-of-date version is refused, so concurrent revisions never silently
//! overwrite each other.
//!
//! Activities have a status and an owner (the responsible organisation). A revision never
//! replaces the list of activities: it names each activity it adds, changes or ends, so no
//! organisation's activity disappears without an explicit end. Activities are never removed:
//! an ended one keeps its place (its index is its id) with its final status and the reason.

use chrono::NaiveDate;

use crate::values::{Code, LongText};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

/// FHIR CarePlan.activity.detail.status (without `unknown` and `entered-in-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityStatus {
    NotStarted,
    Scheduled,
    InProgress,
    OnHold,
    Completed,
    Cancelled,
    Stopped,
}

impl ActivityStatus {
    /// Completed, cancelled and stopped: the activity has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ActivityStatus::Completed | ActivityStatus::Cancelled | ActivityStatus::Stopped
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub description: LongText,
    pub responsible_organisation: Code,
    pub status: ActivityStatus,
    /// Why it ended (required when it ends) or why it is on hold.
    pub status_reason: Option<LongText>,
}

/// One change a revision makes to the plan's activities, by index (from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityChange {
    /// A new activity, not yet ended.
    Add { activity: Activity },
    /// New content for an open activity (description, owner, a status that is not final).
    Update { index: u32, activity: Activity },
    /// The activity ends: completed, cancelled or stopped, with the reason.
    End {
        index: u32,
        status: ActivityStatus,
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContent {
    /// Goals in the person's own words.
    pub goals: Vec<LongText>,
    pub activities: Vec<Activity>,
    pub review_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarePlanCommand {
    Agree {
        plan: PlanContent,
    },
    /// `plan.activities` is either empty or the current list unchanged: activities change
    /// only through `changes`.
    Revise {
        based_on_version: u32,
        plan: PlanContent,
        reason: LongText,
        changes: Vec<ActivityChange>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarePlanEvent {
    Agreed {
        plan_version: u32,
        plan: PlanContent,
    },
    /// `plan` is the whole plan after the revision; `changes` what it did to the activities.
    Revised {
        plan_version: u32,
        plan: PlanContent,
        reason: LongText,
        changes: Vec<ActivityChange>,
    },
}

impl CarePlanEvent {
    pub fn name(&self) -> &'static str {
        match self {
            CarePlanEvent::Agreed { .. } => "care_plan_agreed",
            CarePlanEvent::Revised { .. } => "care_plan_revised",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarePlan {
    pub plan_version: u32,
    pub plan: PlanContent,
}

fn check_plan(plan: &PlanContent, ctx: &DecideContext) -> Result<(), DomainError> {
    if plan.goals.is_empty() {
        return Err(DomainError::invalid(
            "plan.goals",
            "needs at least one goal",
        ));
    }
    if plan.review_date < crate::values::uk_date(ctx.now) {
        return Err(DomainError::invalid(
            "plan.review_date",
            "cannot be in the past",
        ));
    }
    Ok(())
}

fn check_open(field: &str, a: &Activity) -> Result<(), DomainError> {
    if a.status.is_final() {
        return Err(DomainError::invalid(
            field,
            "cannot be ended here: end an activity with an explicit end change",
        ));
    }
    Ok(())
}

/// The activities after `changes`, each checked against the list as it stands.
fn apply_changes(
    current: &[Activity],
    changes: &[ActivityChange],
) -> Result<Vec<Activity>, DomainError> {
    let mut out = current.to_vec();
    for (i, change) in changes.iter().enumerate() {
        let field = format!("activity_changes[{i}]");
        let open = |out: &Vec<Activity>, index: u32| -> Result<usize, DomainError> {
            let at = usize::try_from(index).unwrap_or(usize::MAX);
            match out.get(at) {
                None => Err(DomainError::invalid(
                    format!("{field}.index"),
                    format!("the plan has no activity {index} (it has {})", out.len()),
                )),
                Some(a) if a.status.is_final() => Err(DomainError::rule(
                    "care_plan.activity_lifecycle",
                    format!("activity {index} has ended and changes no more"),
                )),
                Some(_) => Ok(at),
            }
        };
        match change {
            ActivityChange::Add { activity } => {
                check_open(&format!("{field}.add.status"), activity)?;
                out.push(activity.clone());
            }
            ActivityChange::Update { index, activity } => {
                let at = open(&out, *index)?;
                check_open(&format!("{field}.update.activity.status"), activity)?;
                out[at] = activity.clone();
            }
            ActivityChange::End {
                index,
                status,
                reason,
            } => {
                let at = open(&out, *index)?;
                if !status.is_final() {
                    return Err(DomainError::invalid(
                        format!("{field}.end.status"),
                        "must be completed, cancelled or stopped",
                    ));
                }
                out[at].status = *status;
                out[at].status_reason = Some(reason.clone());
            }
        }
    }
    Ok(out)
}

impl Aggregate for CarePlan {
    const KIND: AggregateKind = AggregateKind::CarePlan;
    type Command = CarePlanCommand;
    type Event = CarePlanEvent;

    fn decide(
        state: Option<&Self>,
        command: &CarePlanCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<CarePlanEvent>, DomainError> {
        match (state, command) {
            (None, CarePlanCommand::Agree { plan }) => {
                check_plan(plan, ctx)?;
                for (i, a) in plan.activities.iter().enumerate() {
                    check_open(&format!("plan.activities[{i}].status"), a)?;
                }
                Ok(vec![CarePlanEvent::Agreed {
                    plan_version: 1,
                    plan: plan.clone(),
                }])
            }
            (Some(_), CarePlanCommand::Agree { .. }) => Err(DomainError::AlreadyExists {
                what: "care plan",
                id: String::new(),
            }),
            (None, CarePlanCommand::Revise { .. }) => Err(DomainError::NotFound {
                what: "care plan",
                id: String::new(),
            }),
            (
                Some(current),
                CarePlanCommand::Revise {
                    based_on_version,
                    plan,
                    reason,
                    changes,
                },
            ) => {
                if *based_on_version != current.plan_version {
                    return Err(DomainError::VersionConflict {
                        expected: u64::from(*based_on_version),
                        actual: u64::from(current.plan_version),
                    });
                }
                check_plan(plan, ctx)?;
                if !plan.activities.is_empty() && plan.activities != current.plan.activities {
                    return Err(DomainError::invalid(
                        "plan.activities",
                        "a revision cannot replace the activities: leave them out and name each one added, changed or ended in activity_changes",
                    ));
                }
                let activities = apply_changes(&current.plan.activities, changes)?;
                Ok(vec![CarePlanEvent::Revised {
                    plan_version: current.plan_version + 1,
                    plan: PlanContent {
                        activities,
                        ..plan.clone()
                    },
                    reason: reason.clone(),
                    changes: changes.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &CarePlanEvent) -> Result<Self, ReplayError> {
        match (state, event) {
            (None, CarePlanEvent::Agreed { plan_version, plan }) => Ok(CarePlan {
                plan_version: *plan_version,
                plan: plan.clone(),
            }),
            (
                Some(current),
                CarePlanEvent::Revised {
                    plan_version, plan, ..
                },
            ) if *plan_version == current.plan_version + 1 => Ok(CarePlan {
                plan_version: *plan_version,
                plan: plan.clone(),
            }),
            (state, event) => Err(ReplayError {
                event: event.name(),
                state: format!("{:?}", state.map(|s| s.plan_version)),
            }),
        }
    }
}
