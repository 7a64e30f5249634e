//! Consent and objection (Consent): purpose, partners covered, data classes, period, and
//! whether capacity was assessed. A `Deny` decision is an objection. Withdrawal ends it.

use chrono::NaiveDate;

use crate::values::{Code, LongText, not_future_date};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentDecision {
    Permit,
    /// An objection: stops person-level sharing with the partners named.
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    DirectCare,
    CareCoordination,
    Research,
    Planning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataClass {
    Demographics,
    Contact,
    Referrals,
    Assessments,
    CarePlan,
    CareTeam,
    Discharge,
    Meetings,
    Feedback,
    /// Risk flags and conditions (frailty, falls risk, safeguarding concern, ...).
    RiskFlags,
    /// Tasks about the person (who is to do what, by when, and how it went).
    Tasks,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentTerms {
    pub decision: ConsentDecision,
    pub purpose: Purpose,
    pub partners: Vec<Code>,
    /// Empty means every data class.
    pub data_classes: Vec<DataClass>,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    pub capacity_assessed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentCommand {
    Record { terms: ConsentTerms },
    Withdraw { reason: LongText },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentEvent {
    Recorded { terms: ConsentTerms },
    Withdrawn { reason: LongText },
}

impl ConsentEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ConsentEvent::Recorded { .. } => "consent_recorded",
            ConsentEvent::Withdrawn { .. } => "consent_withdrawn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub terms: ConsentTerms,
    pub withdrawn: bool,
}

impl Aggregate for Consent {
    const KIND: AggregateKind = AggregateKind::Consent;
    type Command = ConsentCommand;
    type Event = ConsentEvent;

    fn decide(
        state: Option<&Self>,
        command: &ConsentCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<ConsentEvent>, DomainError> {
        match (state, command) {
            (None, ConsentCommand::Record { terms }) => {
                if terms.partners.is_empty() {
                    return Err(DomainError::invalid(
                        "partners",
                        "needs at least one partner",
                    ));
                }
                not_future_date("valid_from", terms.valid_from, ctx.now)?;
                if terms.valid_until.is_some_and(|u| u < terms.valid_from) {
                    return Err(DomainError::invalid("valid_until", "is before valid_from"));
                }
                Ok(vec![ConsentEvent::Recorded {
                    terms: terms.clone(),
                }])
            }
            (Some(_), ConsentCommand::Record { .. }) => Err(DomainError::AlreadyExists {
                what: "consent",
                id: String::new(),
            }),
            (None, ConsentCommand::Withdraw { .. }) => Err(DomainError::NotFound {
                what: "consent",
                id: String::new(),
            }),
            (Some(c), ConsentCommand::Withdraw { reason }) => {
                if c.withdrawn {
                    return Err(DomainError::rule(
                        "consent.lifecycle",
                        "the consent is already withdrawn",
                    ));
                }
                Ok(vec![ConsentEvent::Withdrawn {
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &ConsentEvent) -> Result<Self, ReplayError> {
        match (state, event) {
            (None, ConsentEvent::Recorded { terms }) => Ok(Consent {
                terms: terms.clone(),
                withdrawn: false,
            }),
            (Some(mut c), ConsentEvent::Withdrawn { .. }) if !c.withdrawn => {
                c.withdrawn = true;
                Ok(c)
            }
            (_, event) => Err(ReplayError {
                event: event.name(),
                state: "consent".into(),
            }),
        }
    }
}
