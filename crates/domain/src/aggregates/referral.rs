//! Referral (FHIR ServiceRequest + Task): from an organisation to a service.
//!
//! submitted -> received -> accepted -> in progress -> completed; submitted/received ->
//! rejected; accepted/in progress <-> on hold; in progress -> failed; any non-terminal ->
//! cancelled; any -> entered-in-error.

use uuid::Uuid;

use crate::values::{Code, LongText};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

/// FHIR request-priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Routine,
    Urgent,
    Asap,
    Stat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferralStatus {
    Submitted,
    Received,
    Accepted,
    InProgress,
    OnHold,
    Completed,
    Rejected,
    Failed,
    Cancelled,
    EnteredInError,
}

impl ReferralStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ReferralStatus::Completed
                | ReferralStatus::Rejected
                | ReferralStatus::Failed
                | ReferralStatus::Cancelled
                | ReferralStatus::EnteredInError
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReferralStatus::Submitted => "submitted",
            ReferralStatus::Received => "received",
            ReferralStatus::Accepted => "accepted",
            ReferralStatus::InProgress => "in_progress",
            ReferralStatus::OnHold => "on_hold",
            ReferralStatus::Completed => "completed",
            ReferralStatus::Rejected => "rejected",
            ReferralStatus::Failed => "failed",
            ReferralStatus::Cancelled => "cancelled",
            ReferralStatus::EnteredInError => "entered_in_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReferral {
    pub from_organisation: Code,
    pub to_service: Code,
    pub priority: Priority,
    pub reason: LongText,
    /// A referral this one replaces (for example after a rejection).
    pub replaces: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferralCommand {
    Make { referral: NewReferral },
    Receive,
    Accept,
    Reject { reason: LongText },
    Start,
    Hold { reason: LongText },
    Resume,
    Complete,
    Fail { reason: LongText },
    Cancel { reason: LongText },
    MarkEnteredInError { reason: LongText },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferralEvent {
    Submitted { referral: NewReferral },
    Received,
    Accepted,
    Rejected { reason: LongText },
    Started,
    PutOnHold { reason: LongText },
    Resumed,
    Completed,
    Failed { reason: LongText },
    Cancelled { reason: LongText },
    EnteredInError { reason: LongText },
}

impl ReferralEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ReferralEvent::Submitted { .. } => "referral_submitted",
            ReferralEvent::Received => "referral_received",
            ReferralEvent::Accepted => "referral_accepted",
            ReferralEvent::Rejected { .. } => "referral_rejected",
            ReferralEvent::Started => "referral_started",
            ReferralEvent::PutOnHold { .. } => "referral_put_on_hold",
            ReferralEvent::Resumed => "referral_resumed",
            ReferralEvent::Completed => "referral_completed",
            ReferralEvent::Failed { .. } => "referral_failed",
            ReferralEvent::Cancelled { .. } => "referral_cancelled",
            ReferralEvent::EnteredInError { .. } => "referral_entered_in_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub details: NewReferral,
    pub status: ReferralStatus,
    /// Where a referral on hold returns to when resumed.
    pub resume_to: Option<ReferralStatus>,
}

fn refuse(status: ReferralStatus, action: &str) -> DomainError {
    DomainError::rule(
        "referral.lifecycle",
        format!("cannot {action} a referral that is {}", status.as_str()),
    )
}

impl Aggregate for Referral {
    const KIND: AggregateKind = AggregateKind::Referral;
    type Command = ReferralCommand;
    type Event = ReferralEvent;

    fn decide(
        state: Option<&Self>,
        command: &ReferralCommand,
        _ctx: &DecideContext,
    ) -> Result<Vec<ReferralEvent>, DomainError> {
        use ReferralCommand as C;
        use ReferralEvent as E;
        use ReferralStatus as S;
        let Some(referral) = state else {
            return match command {
                C::Make { referral } => {
                    if referral.from_organisation == referral.to_service {
                        return Err(DomainError::invalid(
                            "to_service",
                            "must differ from from_organisation",
                        ));
                    }
                    Ok(vec![E::Submitted {
                        referral: referral.clone(),
                    }])
                }
                _ => Err(DomainError::NotFound {
                    what: "referral",
                    id: String::new(),
                }),
            };
        };
        let status = referral.status;
        let event = match command {
            C::Make { .. } => {
                return Err(DomainError::AlreadyExists {
                    what: "referral",
                    id: String::new(),
                });
            }
            C::MarkEnteredInError { reason } => {
                if status == S::EnteredInError {
                    return Err(refuse(status, "mark entered-in-error"));
                }
                E::EnteredInError {
                    reason: reason.clone(),
                }
            }
            _ if status.is_terminal() => {
                return Err(refuse(status, command_verb(command)));
            }
            C::Cancel { reason } => E::Cancelled {
                reason: reason.clone(),
            },
            C::Receive if status == S::Submitted => E::Received,
            C::Accept if status == S::Received => E::Accepted,
            C::Reject { reason } if matches!(status, S::Submitted | S::Received) => E::Rejected {
                reason: reason.clone(),
            },
            C::Start if status == S::Accepted => E::Started,
            C::Hold { reason } if matches!(status, S::Accepted | S::InProgress) => E::PutOnHold {
                reason: reason.clone(),
            },
            C::Resume if status == S::OnHold => E::Resumed,
            C::Complete if status == S::InProgress => E::Completed,
            C::Fail { reason } if status == S::InProgress => E::Failed {
                reason: reason.clone(),
            },
            other => return Err(refuse(status, command_verb(other))),
        };
        Ok(vec![event])
    }

    fn evolve(state: Option<Self>, event: &ReferralEvent) -> Result<Self, ReplayError> {
        use ReferralEvent as E;
        use ReferralStatus as S;
        let Some(mut r) = state else {
            return match event {
                E::Submitted { referral } => Ok(Referral {
                    details: referral.clone(),
                    status: S::Submitted,
                    resume_to: None,
                }),
                other => Err(ReplayError {
                    event: other.name(),
                    state: "no referral".into(),
                }),
            };
        };
        let next = match event {
            E::Submitted { .. } => {
                return Err(ReplayError {
                    event: event.name(),
                    state: r.status.as_str().into(),
                });
            }
            E::Received => S::Received,
            E::Accepted => S::Accepted,
            E::Rejected { .. } => S::Rejected,
            E::Started => S::InProgress,
            E::PutOnHold { .. } => {
                r.resume_to = Some(r.status);
                S::OnHold
            }
            E::Resumed => r.resume_to.take().unwrap_or(S::Accepted),
            E::Completed => S::Completed,
            E::Failed { .. } => S::Failed,
            E::Cancelled { .. } => S::Cancelled,
            E::EnteredInError { .. } => S::EnteredInError,
        };
        r.status = next;
        Ok(r)
    }
}

fn command_verb(command: &ReferralCommand) -> &'static str {
    match command {
        ReferralCommand::Make { .. } => "make",
        ReferralCommand::Receive => "receive",
        ReferralCommand::Accept => "accept",
        ReferralCommand::Reject { .. } => "reject",
        ReferralCommand::Start => "start",
        ReferralCommand::Hold { .. } => "put on hold",
        ReferralCommand::Resume => "resume",
        ReferralCommand::Complete => "complete",
        ReferralCommand::Fail { .. } => "fail",
        ReferralCommand::Cancel { .. } => "cancel",
        ReferralCommand::MarkEnteredInError { .. } => "mark entered-in-error",
    }
}
