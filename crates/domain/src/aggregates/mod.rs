//! One module per aggregate, each with its state, commands, events, `decide` and `evolve`.

pub mod assessment;
pub mod care_plan;
pub mod care_team;
pub mod consent;
pub mod discharge;
pub mod feedback;
pub mod flag;
pub mod meeting;
pub mod organisation;
pub mod person;
pub mod referral;
pub mod task;

use crate::{Aggregate, AggregateKind};

/// The state of any one aggregate, as folded from its events.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateState {
    Person(person::Person),
    Referral(referral::Referral),
    Assessment(assessment::Assessment),
    CarePlan(care_plan::CarePlan),
    CareTeam(care_team::CareTeam),
    Consent(consent::Consent),
    Discharge(discharge::DischargeEpisode),
    Meeting(meeting::Meeting),
    Feedback(feedback::Feedback),
    Flag(flag::Flag),
    Task(task::Task),
    Organisation(organisation::Organisation),
}

impl AggregateState {
    pub fn kind(&self) -> AggregateKind {
        match self {
            AggregateState::Person(_) => person::Person::KIND,
            AggregateState::Referral(_) => referral::Referral::KIND,
            AggregateState::Assessment(_) => assessment::Assessment::KIND,
            AggregateState::CarePlan(_) => care_plan::CarePlan::KIND,
            AggregateState::CareTeam(_) => care_team::CareTeam::KIND,
            AggregateState::Consent(_) => consent::Consent::KIND,
            AggregateState::Discharge(_) => discharge::DischargeEpisode::KIND,
            AggregateState::Meeting(_) => meeting::Meeting::KIND,
            AggregateState::Feedback(_) => feedback::Feedback::KIND,
            AggregateState::Flag(_) => flag::Flag::KIND,
            AggregateState::Task(_) => task::Task::KIND,
            AggregateState::Organisation(_) => organisation::Organisation::KIND,
        }
    }
}
