//! Multi-agency meeting (MDT) about one person: attendees, decisions, and actions with an
//! owner and a due date.

use chrono::{DateTime, NaiveDate, Utc};

use crate::values::{Code, LongText, not_future_instant};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingAction {
    pub description: LongText,
    pub owner: Code,
    pub due_by: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    pub held_at: DateTime<Utc>,
    pub attendees: Vec<Code>,
    pub decisions: Vec<LongText>,
    pub actions: Vec<MeetingAction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingCommand {
    Record {
        meeting: MeetingRecord,
    },
    /// `action` is the 1-based number of the action in the record.
    CompleteAction {
        action: u32,
        note: Option<LongText>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingEvent {
    Recorded { meeting: MeetingRecord },
    ActionCompleted { action: u32, note: Option<LongText> },
}

impl MeetingEvent {
    pub fn name(&self) -> &'static str {
        match self {
            MeetingEvent::Recorded { .. } => "meeting_recorded",
            MeetingEvent::ActionCompleted { .. } => "meeting_action_completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub record: MeetingRecord,
    pub completed_actions: Vec<u32>,
}

impl Aggregate for Meeting {
    const KIND: AggregateKind = AggregateKind::Meeting;
    type Command = MeetingCommand;
    type Event = MeetingEvent;

    fn decide(
        state: Option<&Self>,
        command: &MeetingCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<MeetingEvent>, DomainError> {
        match (state, command) {
            (None, MeetingCommand::Record { meeting }) => {
                not_future_instant("held_at", meeting.held_at, ctx.now)?;
                if meeting.attendees.is_empty() {
                    return Err(DomainError::invalid(
                        "attendees",
                        "needs at least one organisation",
                    ));
                }
                for (i, action) in meeting.actions.iter().enumerate() {
                    if !meeting.attendees.contains(&action.owner) {
                        return Err(DomainError::invalid(
                            format!("actions[{i}].owner"),
                            "must be one of the attendees",
                        ));
                    }
                }
                Ok(vec![MeetingEvent::Recorded {
                    meeting: meeting.clone(),
                }])
            }
            (Some(_), MeetingCommand::Record { .. }) => Err(DomainError::AlreadyExists {
                what: "meeting",
                id: String::new(),
            }),
            (None, MeetingCommand::CompleteAction { .. }) => Err(DomainError::NotFound {
                what: "meeting",
                id: String::new(),
            }),
            (Some(m), MeetingCommand::CompleteAction { action, note }) => {
                let count = m.record.actions.len();
                if *action == 0 || *action as usize > count {
                    return Err(DomainError::invalid(
                        "action",
                        format!("must be between 1 and {count}"),
                    ));
                }
                if m.completed_actions.contains(action) {
                    return Err(DomainError::rule(
                        "meeting.actions",
                        format!("action {action} is already completed"),
                    ));
                }
                Ok(vec![MeetingEvent::ActionCompleted {
                    action: *action,
                    note: note.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &MeetingEvent) -> Result<Self, ReplayError> {
        match (state, event) {
            (None, MeetingEvent::Recorded { meeting }) => Ok(Meeting {
                record: meeting.clone(),
                completed_actions: Vec::new(),
            }),
            (Some(mut m), MeetingEvent::ActionCompleted { action, .. }) => {
                m.completed_actions.push(*action);
                Ok(m)
            }
            (_, event) => Err(ReplayError {
                event: event.name(),
                state: "meeting".into(),
            }),
        }
    }
}
