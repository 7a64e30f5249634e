//! Tasks (FHIR Task): a piece of work about a person, owned by an organisation (optionally a
//! practitioner in it), with a due date, a priority and a status whose changes carry their
//! reason. A task is created on its own or from a care-plan activity, a meeting action, a
//! discharge handover or a cohort's outreach; it can be reassigned, with a reason. Tasks are
//! their own data class (`DataClass::Tasks`).
//!
//! Life cycle (FHIR's Task state machine, without `draft`, `ready`, `received`, `rejected`
//! and `entered-in-error`, which Carewoven's referrals already cover):
//!
//! ```text
//! requested ─► accepted ─► in_progress ─► completed
//!     │            │         ▲   │
//!     │            └─► on_hold ◄─┘
//!     └──── any open status ───► cancelled | failed
//! ```
//!
//! A change to on hold, cancelled or failed needs a reason; completed, cancelled and failed
//! are final.

use chrono::NaiveDate;
use uuid::Uuid;

use crate::care_team::MemberRef;
use crate::referral::Priority;
use crate::values::{Code, LongText, uk_date};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskStatus {
    Requested,
    Accepted,
    InProgress,
    OnHold,
    Completed,
    Cancelled,
    Failed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Requested,
        TaskStatus::Accepted,
        TaskStatus::InProgress,
        TaskStatus::OnHold,
        TaskStatus::Completed,
        TaskStatus::Cancelled,
        TaskStatus::Failed,
    ];

    /// Carewoven's token (views, carectl); FHIR's Task.status is the same with `-`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Requested => "requested",
            TaskStatus::Accepted => "accepted",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::OnHold => "on_hold",
            TaskStatus::Completed => "completed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == token)
    }

    /// Completed, cancelled and failed tasks change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Cancelled | TaskStatus::Failed
        )
    }

    /// Whether a change to this status must say why.
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            TaskStatus::OnHold | TaskStatus::Cancelled | TaskStatus::Failed
        )
    }

    /// The changes the life cycle allows from `self`.
    pub fn may_become(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        match (self, next) {
            (Requested, Accepted | InProgress) => true,
            (Accepted, InProgress | OnHold | Completed) => true,
            (InProgress, OnHold | Completed) => true,
            (OnHold, InProgress) => true,
            (from, Cancelled | Failed) => !from.is_final(),
            _ => false,
        }
    }
}

/// What a task was created from. The reference is recorded as given (its shape checked): a
/// command addresses one aggregate, so the task cannot check that the activity, action,
/// episode or cohort it names exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskBasis {
    /// On its own.
    Standalone,
    /// A care-plan activity, by its index in the plan version named.
    PlanActivity { plan_version: u32, activity: u32 },
    /// A meeting's action, by its index in the meeting.
    MeetingAction { meeting_id: Uuid, action: u32 },
    /// A discharge episode's handover.
    Handover { episode_id: Uuid },
    /// A cohort's outreach.
    Cohort { cohort_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContent {
    pub description: LongText,
    pub owner: MemberRef,
    /// UK calendar day; not in the past when the task is created.
    pub due: NaiveDate,
    pub priority: Priority,
    pub basis: TaskBasis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    Create {
        task: TaskContent,
    },
    ChangeStatus {
        status: TaskStatus,
        reason: Option<LongText>,
    },
    Reassign {
        owner: MemberRef,
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// `requester` is the organisation that created it (cancelling is also its to do).
    Created {
        task: TaskContent,
        requester: Code,
    },
    StatusChanged {
        status: TaskStatus,
        reason: Option<LongText>,
    },
    Reassigned {
        owner: MemberRef,
        reason: LongText,
    },
}

impl TaskEvent {
    pub fn name(&self) -> &'static str {
        match self {
            TaskEvent::Created { .. } => "task_created",
            TaskEvent::StatusChanged { .. } => "task_status_changed",
            TaskEvent::Reassigned { .. } => "task_reassigned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub task: TaskContent,
    pub requester: Code,
    pub status: TaskStatus,
}

impl Aggregate for Task {
    const KIND: AggregateKind = AggregateKind::Task;
    type Command = TaskCommand;
    type Event = TaskEvent;

    fn decide(
        state: Option<&Self>,
        command: &TaskCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<TaskEvent>, DomainError> {
        match (state, command) {
            (None, TaskCommand::Create { task }) => {
                if task.due < uk_date(ctx.now) {
                    return Err(DomainError::invalid("task.due", "cannot be in the past"));
                }
                Ok(vec![TaskEvent::Created {
                    task: task.clone(),
                    requester: ctx.actor.organisation.clone(),
                }])
            }
            (Some(_), TaskCommand::Create { .. }) => Err(DomainError::AlreadyExists {
                what: "task",
                id: String::new(),
            }),
            (None, _) => Err(DomainError::NotFound {
                what: "task",
                id: String::new(),
            }),
            (Some(t), TaskCommand::ChangeStatus { status, reason }) => {
                if t.status.is_final() {
                    return Err(DomainError::rule(
                        "task.lifecycle",
                        format!("the task is {} and changes no more", t.status.as_str()),
                    ));
                }
                if !t.status.may_become(*status) {
                    return Err(DomainError::rule(
                        "task.lifecycle",
                        format!(
                            "a task that is {} cannot become {}",
                            t.status.as_str(),
                            status.as_str()
                        ),
                    ));
                }
                if status.needs_reason() && reason.is_none() {
                    return Err(DomainError::invalid(
                        "reason",
                        format!("is required to make a task {}", status.as_str()),
                    ));
                }
                Ok(vec![TaskEvent::StatusChanged {
                    status: *status,
                    reason: reason.clone(),
                }])
            }
            (Some(t), TaskCommand::Reassign { owner, reason }) => {
                if t.status.is_final() {
                    return Err(DomainError::rule(
                        "task.lifecycle",
                        format!("the task is {} and changes no more", t.status.as_str()),
                    ));
                }
                if *owner == t.task.owner {
                    return Err(DomainError::invalid("owner", "is already the task's owner"));
                }
                Ok(vec![TaskEvent::Reassigned {
                    owner: owner.clone(),
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &TaskEvent) -> Result<Self, ReplayError> {
        let err = |state: &str| ReplayError {
            event: event.name(),
            state: state.to_owned(),
        };
        match (state, event) {
            (None, TaskEvent::Created { task, requester }) => Ok(Task {
                task: task.clone(),
                requester: requester.clone(),
                status: TaskStatus::Requested,
            }),
            (None, _) => Err(err("no task")),
            (Some(_), TaskEvent::Created { .. }) => Err(err("existing task")),
            (Some(mut t), TaskEvent::StatusChanged { status, .. }) => {
                if !t.status.may_become(*status) {
                    return Err(err(t.status.as_str()));
                }
                t.status = *status;
                Ok(t)
            }
            (Some(mut t), TaskEvent::Reassigned { owner, .. }) => {
                if t.status.is_final() {
                    return Err(err(t.status.as_str()));
                }
                t.task.owner = owner.clone();
                Ok(t)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn code(s: &str) -> Code {
        Code::parse("code", s).unwrap()
    }

    fn ctx() -> DecideContext {
        DecideContext {
            now: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
            actor: crate::Actor {
                organisation: code("GP-A"),
                user: code("user-1"),
            },
        }
    }

    fn owner(org: &str) -> MemberRef {
        MemberRef {
            organisation: code(org),
            practitioner: None,
        }
    }

    fn create(due: NaiveDate) -> TaskCommand {
        TaskCommand::Create {
            task: TaskContent {
                description: LongText::parse("d", "Telephone to check shopping support").unwrap(),
                owner: owner("LA-1"),
                due,
                priority: Priority::Routine,
                basis: TaskBasis::Standalone,
            },
        }
    }

    fn reason(s: &str) -> Option<LongText> {
        Some(LongText::parse("reason", s).unwrap())
    }

    fn created() -> Task {
        let day = NaiveDate::from_ymd_opt(2026, 6, 8).unwrap();
        let events = Task::decide(None, &create(day), &ctx()).unwrap();
        Task::evolve(None, &events[0]).unwrap()
    }

    #[test]
    fn a_task_is_due_today_or_later_and_records_who_asked() {
        let past = NaiveDate::from_ymd_opt(2026, 5, 31).unwrap();
        match Task::decide(None, &create(past), &ctx()).unwrap_err() {
            DomainError::Invalid { field, .. } => assert_eq!(field, "task.due"),
            other => panic!("{other:?}"),
        }
        let t = created();
        assert_eq!(t.status, TaskStatus::Requested);
        assert_eq!(t.requester.as_str(), "GP-A");
    }

    #[test]
    fn the_life_cycle_is_followed_and_final_states_are_final() {
        let mut t = created();
        let change = |t: &Task, s: TaskStatus, r: Option<LongText>| {
            Task::decide(
                Some(t),
                &TaskCommand::ChangeStatus {
                    status: s,
                    reason: r,
                },
                &ctx(),
            )
        };
        assert!(matches!(
            change(&t, TaskStatus::Completed, None).unwrap_err(),
            DomainError::Rule { .. }
        ));
        match change(&t, TaskStatus::Cancelled, None).unwrap_err() {
            DomainError::Invalid { field, .. } => assert_eq!(field, "reason"),
            other => panic!("{other:?}"),
        }
        for (s, r) in [
            (TaskStatus::Accepted, None),
            (TaskStatus::InProgress, None),
            (TaskStatus::OnHold, reason("Person in hospital")),
            (TaskStatus::InProgress, None),
            (TaskStatus::Completed, None),
        ] {
            let e = change(&t, s, r).unwrap();
            t = Task::evolve(Some(t), &e[0]).unwrap();
        }
        assert_eq!(t.status, TaskStatus::Completed);
        for s in TaskStatus::ALL {
            assert!(change(&t, s, reason("again")).is_err());
        }
        let again = TaskCommand::Reassign {
            owner: owner("VCS-1"),
            reason: LongText::parse("reason", "capacity").unwrap(),
        };
        assert!(Task::decide(Some(&t), &again, &ctx()).is_err());
    }

    #[test]
    fn a_reassignment_names_a_new_owner() {
        let t = created();
        let to = |org: &str| TaskCommand::Reassign {
            owner: owner(org),
            reason: LongText::parse("reason", "capacity").unwrap(),
        };
        match Task::decide(Some(&t), &to("LA-1"), &ctx()).unwrap_err() {
            DomainError::Invalid { field, .. } => assert_eq!(field, "owner"),
            other => panic!("{other:?}"),
        }
        let e = Task::decide(Some(&t), &to("VCS-1"), &ctx()).unwrap();
        let t = Task::evolve(Some(t), &e[0]).unwrap();
        assert_eq!(t.task.owner.organisation.as_str(), "VCS-1");
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
    }
}
