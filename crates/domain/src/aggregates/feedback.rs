//! Feedback (co-production): from the person or a carer, optionally anonymous.

use crate::values::LongText;
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedbackSource {
    Person,
    Carer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackRecord {
    pub source: FeedbackSource,
    /// Anonymous feedback is never attributed beyond the person it is about.
    pub anonymous: bool,
    pub text: LongText,
    /// 1 (poor) to 5 (excellent), when given.
    pub rating: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackCommand {
    Record { feedback: FeedbackRecord },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackEvent {
    Recorded { feedback: FeedbackRecord },
}

impl FeedbackEvent {
    pub fn name(&self) -> &'static str {
        match self {
            FeedbackEvent::Recorded { .. } => "feedback_recorded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub record: FeedbackRecord,
}

impl Aggregate for Feedback {
    const KIND: AggregateKind = AggregateKind::Feedback;
    type Command = FeedbackCommand;
    type Event = FeedbackEvent;

    fn decide(
        state: Option<&Self>,
        command: &FeedbackCommand,
        _ctx: &DecideContext,
    ) -> Result<Vec<FeedbackEvent>, DomainError> {
        let FeedbackCommand::Record { feedback } = command;
        if state.is_some() {
            return Err(DomainError::AlreadyExists {
                what: "feedback",
                id: String::new(),
            });
        }
        if let Some(r) = feedback.rating
            && !(1..=5).contains(&r)
        {
            return Err(DomainError::invalid("rating", "must be between 1 and 5"));
        }
        Ok(vec![FeedbackEvent::Recorded {
            feedback: feedback.clone(),
        }])
    }

    fn evolve(state: Option<Self>, event: &FeedbackEvent) -> Result<Self, ReplayError> {
        match (state, event) {
            (None, FeedbackEvent::Recorded { feedback }) => Ok(Feedback {
                record: feedback.clone(),
            }),
            (Some(_), event) => Err(ReplayError {
                event: event.name(),
                state: "feedback".into(),
            }),
        }
    }
}
