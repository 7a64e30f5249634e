//! Carewoven's domain: commands, events, and for each aggregate a `decide` and an `evolve`
//! function.
//!
//! This crate is pure. It does no IO, owns no async runtime and knows nothing of NATS, tonic
//! or redb. Time comes in through [`DecideContext::now`], so every rule is a plain function
//! that tests can drive directly.

pub mod aggregates;
pub mod codes;
mod command;
mod error;
mod event;
pub mod values;

pub use aggregates::{
    AggregateState, assessment, care_plan, care_team, consent, discharge, feedback, flag, meeting,
    organisation, person, referral, task,
};
pub use command::{Command, Existence, Target, decide, evolve};
pub use error::{DomainError, ReplayError};
pub use event::{EVENT_TYPES, Event, EventMeta, RecordedEvent};

use chrono::{DateTime, Utc};
use values::Code;

/// The person id of registry (organisation) events, which are about no person.
pub const REGISTRY_PERSON: uuid::Uuid = uuid::Uuid::nil();

/// Current version of the event payload schema written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// The kinds of aggregate. Every aggregate but an organisation belongs to exactly one person;
/// an organisation's events carry the nil person id ([`REGISTRY_PERSON`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateKind {
    Person,
    Referral,
    Assessment,
    CarePlan,
    CareTeam,
    Consent,
    DischargeEpisode,
    Meeting,
    Feedback,
    /// A risk flag or condition.
    Flag,
    /// A task about a person, owned by an organisation.
    Task,
    /// A partner organisation: registry facts, belonging to no person.
    Organisation,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 12] = [
        AggregateKind::Person,
        AggregateKind::Referral,
        AggregateKind::Assessment,
        AggregateKind::CarePlan,
        AggregateKind::CareTeam,
        AggregateKind::Consent,
        AggregateKind::DischargeEpisode,
        AggregateKind::Meeting,
        AggregateKind::Feedback,
        AggregateKind::Flag,
        AggregateKind::Task,
        AggregateKind::Organisation,
    ];

    /// Stable lower-case token used in NATS subjects and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Person => "person",
            AggregateKind::Referral => "referral",
            AggregateKind::Assessment => "assessment",
            AggregateKind::CarePlan => "care_plan",
            AggregateKind::CareTeam => "care_team",
            AggregateKind::Consent => "consent",
            AggregateKind::DischargeEpisode => "discharge",
            AggregateKind::Meeting => "meeting",
            AggregateKind::Feedback => "feedback",
            AggregateKind::Flag => "flag",
            AggregateKind::Task => "task",
            AggregateKind::Organisation => "organisation",
        }
    }

    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == token)
    }
}

/// Who acted: the organisation and the user within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub organisation: Code,
    pub user: Code,
}

/// Everything `decide` may know besides the state and the command.
#[derive(Debug, Clone)]
pub struct DecideContext {
    /// The service's clock at the moment the command is decided.
    pub now: DateTime<Utc>,
    pub actor: Actor,
}

/// One aggregate's rules. `decide` refuses or accepts a command; `evolve` folds an event into
/// state. `evolve` never refuses an event that `decide` produced from the same state.
pub trait Aggregate: Sized + Clone + PartialEq + std::fmt::Debug {
    const KIND: AggregateKind;
    type Command;
    type Event;

    fn decide(
        state: Option<&Self>,
        command: &Self::Command,
        ctx: &DecideContext,
    ) -> Result<Vec<Self::Event>, DomainError>;

    fn evolve(state: Option<Self>, event: &Self::Event) -> Result<Self, ReplayError>;
}

/// Fold a sequence of events into state, from nothing.
pub fn replay<'a, A: Aggregate + 'a>(
    events: impl IntoIterator<Item = &'a A::Event>,
) -> Result<Option<A>, ReplayError>
where
    A::Event: 'a,
{
    let mut state = None;
    for event in events {
        state = Some(A::evolve(state, event)?);
    }
    Ok(state)
}
