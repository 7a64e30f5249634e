//! Care plan (CarePlan): one per person, shared. Each revision is a new version; a revision
//! based on an out-of-date version is refused, so concurrent revisions never silently
//! overwrite each other.

use chrono::NaiveDate;

use crate::values::{Code, LongText};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub description: LongText,
    pub responsible_organisation: Code,
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
    Revise {
        based_on_version: u32,
        plan: PlanContent,
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarePlanEvent {
    Agreed {
        plan_version: u32,
        plan: PlanContent,
    },
    Revised {
        plan_version: u32,
        plan: PlanContent,
        reason: LongText,
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
                },
            ) => {
                if *based_on_version != current.plan_version {
                    return Err(DomainError::VersionConflict {
                        expected: u64::from(*based_on_version),
                        actual: u64::from(current.plan_version),
                    });
                }
                check_plan(plan, ctx)?;
                Ok(vec![CarePlanEvent::Revised {
                    plan_version: current.plan_version + 1,
                    plan: plan.clone(),
                    reason: reason.clone(),
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
