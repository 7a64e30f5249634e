use uuid::Uuid;

use crate::aggregates::{
    AggregateState,
    assessment::{Assessment, AssessmentCommand},
    care_plan::{CarePlan, CarePlanCommand},
    care_team::{CareTeam, CareTeamCommand},
    consent::{Consent, ConsentCommand},
    discharge::{DischargeCommand, DischargeEpisode},
    feedback::{Feedback, FeedbackCommand},
    flag::{Flag, FlagCommand},
    meeting::{Meeting, MeetingCommand},
    organisation::{Organisation, OrganisationCommand},
    person::{Person, PersonCommand},
    referral::{Referral, ReferralCommand},
    task::{Task, TaskCommand},
};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, Event, ReplayError};

/// Any command, addressed to one aggregate of one person.
///
/// The care plan and the care team are one per person, so their aggregate id is the person id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Person {
        person_id: Uuid,
        command: PersonCommand,
    },
    Referral {
        person_id: Uuid,
        referral_id: Uuid,
        command: ReferralCommand,
    },
    Assessment {
        person_id: Uuid,
        assessment_id: Uuid,
        command: AssessmentCommand,
    },
    CarePlan {
        person_id: Uuid,
        command: CarePlanCommand,
    },
    CareTeam {
        person_id: Uuid,
        command: CareTeamCommand,
    },
    Consent {
        person_id: Uuid,
        consent_id: Uuid,
        command: ConsentCommand,
    },
    Discharge {
        person_id: Uuid,
        episode_id: Uuid,
        command: DischargeCommand,
    },
    Meeting {
        person_id: Uuid,
        meeting_id: Uuid,
        command: MeetingCommand,
    },
    Feedback {
        person_id: Uuid,
        feedback_id: Uuid,
        command: FeedbackCommand,
    },
    Flag {
        person_id: Uuid,
        flag_id: Uuid,
        command: FlagCommand,
    },
    Task {
        person_id: Uuid,
        task_id: Uuid,
        command: TaskCommand,
    },
    Organisation {
        organisation_id: Uuid,
        command: OrganisationCommand,
    },
}

/// Whether a command needs its aggregate to exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existence {
    /// The command creates the aggregate.
    MustNotExist,
    MustExist,
    /// The first such command creates it (care team membership).
    Either,
}

/// The aggregate a command addresses, and what it requires of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub kind: AggregateKind,
    pub aggregate_id: Uuid,
    pub person_id: Uuid,
    pub existence: Existence,
}

impl Command {
    pub fn target(&self) -> Target {
        use Existence::*;
        let (kind, aggregate_id, person_id, existence) = match self {
            Command::Person { person_id, command } => (
                AggregateKind::Person,
                *person_id,
                *person_id,
                if matches!(command, PersonCommand::Register { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Referral {
                person_id,
                referral_id,
                command,
            } => (
                AggregateKind::Referral,
                *referral_id,
                *person_id,
                if matches!(command, ReferralCommand::Make { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Assessment {
                person_id,
                assessment_id,
                command,
            } => (
                AggregateKind::Assessment,
                *assessment_id,
                *person_id,
                if matches!(command, AssessmentCommand::Request { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::CarePlan { person_id, command } => (
                AggregateKind::CarePlan,
                *person_id,
                *person_id,
                if matches!(command, CarePlanCommand::Agree { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::CareTeam { person_id, command } => (
                AggregateKind::CareTeam,
                *person_id,
                *person_id,
                if matches!(command, CareTeamCommand::AddMember { .. }) {
                    Either
                } else {
                    MustExist
                },
            ),
            Command::Consent {
                person_id,
                consent_id,
                command,
            } => (
                AggregateKind::Consent,
                *consent_id,
                *person_id,
                if matches!(command, ConsentCommand::Record { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Discharge {
                person_id,
                episode_id,
                command,
            } => (
                AggregateKind::DischargeEpisode,
                *episode_id,
                *person_id,
                if matches!(command, DischargeCommand::Admit { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Meeting {
                person_id,
                meeting_id,
                command,
            } => (
                AggregateKind::Meeting,
                *meeting_id,
                *person_id,
                if matches!(command, MeetingCommand::Record { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Feedback {
                person_id,
                feedback_id,
                ..
            } => (
                AggregateKind::Feedback,
                *feedback_id,
                *person_id,
                MustNotExist,
            ),
            Command::Flag {
                person_id,
                flag_id,
                command,
            } => (
                AggregateKind::Flag,
                *flag_id,
                *person_id,
                if matches!(command, FlagCommand::Raise { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Task {
                person_id,
                task_id,
                command,
            } => (
                AggregateKind::Task,
                *task_id,
                *person_id,
                if matches!(command, TaskCommand::Create { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
            Command::Organisation {
                organisation_id,
                command,
            } => (
                AggregateKind::Organisation,
                *organisation_id,
                crate::REGISTRY_PERSON,
                if matches!(command, OrganisationCommand::Register { .. }) {
                    MustNotExist
                } else {
                    MustExist
                },
            ),
        };
        Target {
            kind,
            aggregate_id,
            person_id,
            existence,
        }
    }
}

fn run<A: Aggregate>(
    state: Option<&AggregateState>,
    unwrap: impl Fn(&AggregateState) -> Option<&A>,
    command: &A::Command,
    ctx: &DecideContext,
    wrap: impl Fn(A::Event) -> Event,
) -> Result<Vec<Event>, DomainError> {
    let typed = match state {
        None => None,
        Some(s) => Some(unwrap(s).ok_or_else(|| {
            DomainError::rule(
                "aggregate.kind",
                format!("aggregate is a {}", s.kind().as_str()),
            )
        })?),
    };
    Ok(A::decide(typed, command, ctx)?
        .into_iter()
        .map(wrap)
        .collect())
}

/// Decide a command against the current state of its aggregate (`None` when it does not
/// exist yet). Existence is checked first so every refusal names the aggregate.
pub fn decide(
    state: Option<&AggregateState>,
    command: &Command,
    ctx: &DecideContext,
) -> Result<Vec<Event>, DomainError> {
    let target = command.target();
    match (target.existence, state.is_some()) {
        (Existence::MustExist, false) => {
            return Err(DomainError::NotFound {
                what: target.kind.as_str(),
                id: target.aggregate_id.to_string(),
            });
        }
        (Existence::MustNotExist, true) => {
            return Err(DomainError::AlreadyExists {
                what: target.kind.as_str(),
                id: target.aggregate_id.to_string(),
            });
        }
        _ => {}
    }
    use AggregateState as S;
    match command {
        Command::Person { command, .. } => run::<Person>(
            state,
            |s| match s {
                S::Person(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Person,
        ),
        Command::Referral { command, .. } => run::<Referral>(
            state,
            |s| match s {
                S::Referral(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Referral,
        ),
        Command::Assessment { command, .. } => run::<Assessment>(
            state,
            |s| match s {
                S::Assessment(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Assessment,
        ),
        Command::CarePlan { command, .. } => run::<CarePlan>(
            state,
            |s| match s {
                S::CarePlan(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::CarePlan,
        ),
        Command::CareTeam { command, .. } => run::<CareTeam>(
            state,
            |s| match s {
                S::CareTeam(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::CareTeam,
        ),
        Command::Consent { command, .. } => run::<Consent>(
            state,
            |s| match s {
                S::Consent(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Consent,
        ),
        Command::Discharge { command, .. } => run::<DischargeEpisode>(
            state,
            |s| match s {
                S::Discharge(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Discharge,
        ),
        Command::Meeting { command, .. } => run::<Meeting>(
            state,
            |s| match s {
                S::Meeting(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Meeting,
        ),
        Command::Feedback { command, .. } => run::<Feedback>(
            state,
            |s| match s {
                S::Feedback(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Feedback,
        ),
        Command::Flag { command, .. } => run::<Flag>(
            state,
            |s| match s {
                S::Flag(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Flag,
        ),
        Command::Task { command, .. } => run::<Task>(
            state,
            |s| match s {
                S::Task(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Task,
        ),
        Command::Organisation { command, .. } => run::<Organisation>(
            state,
            |s| match s {
                S::Organisation(a) => Some(a),
                _ => None,
            },
            command,
            ctx,
            Event::Organisation,
        ),
    }
}

/// Fold one event into the state of its aggregate.
pub fn evolve(state: Option<AggregateState>, event: &Event) -> Result<AggregateState, ReplayError> {
    use AggregateState as S;
    let mismatch = |s: &AggregateState| ReplayError {
        event: event.name(),
        state: s.kind().as_str().to_owned(),
    };
    macro_rules! fold {
        ($variant:ident, $agg:ty, $e:expr) => {
            match state {
                None => Ok(S::$variant(<$agg>::evolve(None, $e)?)),
                Some(S::$variant(a)) => Ok(S::$variant(<$agg>::evolve(Some(a), $e)?)),
                Some(other) => Err(mismatch(&other)),
            }
        };
    }
    match event {
        Event::Person(e) => fold!(Person, Person, e),
        Event::Referral(e) => fold!(Referral, Referral, e),
        Event::Assessment(e) => fold!(Assessment, Assessment, e),
        Event::CarePlan(e) => fold!(CarePlan, CarePlan, e),
        Event::CareTeam(e) => fold!(CareTeam, CareTeam, e),
        Event::Consent(e) => fold!(Consent, Consent, e),
        Event::Discharge(e) => fold!(Discharge, DischargeEpisode, e),
        Event::Meeting(e) => fold!(Meeting, Meeting, e),
        Event::Feedback(e) => fold!(Feedback, Feedback, e),
        Event::Flag(e) => fold!(Flag, Flag, e),
        Event::Task(e) => fold!(Task, Task, e),
        Event::Organisation(e) => fold!(Organisation, Organisation, e),
    }
}
