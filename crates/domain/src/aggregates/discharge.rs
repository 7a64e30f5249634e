//! Discharge episode (Encounter + EpisodeOfCare + Task) through the discharge-to-assess
//! pathways (DHSC hospital discharge guidance, 2024).
//!
//! admitted -> planning -> discharge ready (DRD) -> pathway assigned -> awaiting service ->
//! discharge agreed -> discharged -> handover accepted -> home assessment completed -> closed.
//! Pathway 0 may go from pathway assigned straight to discharged. A provider falling through
//! returns discharge agreed -> awaiting service; deterioration returns to planning and a later
//! DRD supersedes the old one (nothing is deleted). Died and self-discharged are terminal.
//! Delay reasons accrue while ready but not discharged.

use chrono::{DateTime, NaiveDate, Utc};

use crate::values::{Code, LongText, ShortText, not_future_date, not_future_instant, uk_date};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pathway {
    /// Home, no new or extra support.
    P0,
    /// Home with new or extra health and/or social care.
    P1,
    /// Short-term bed-based rehabilitation or reablement.
    P2,
    /// Care-home placement, usually to assess long-term needs.
    P3,
}

impl Pathway {
    pub fn number(self) -> u8 {
        match self {
            Pathway::P0 => 0,
            Pathway::P1 => 1,
            Pathway::P2 => 2,
            Pathway::P3 => 3,
        }
    }
}

pub use crate::codes::delay_reason::{DelayReason, LegacyDelayReason};
pub use crate::codes::discharge_destination::DischargeDestination;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DischargeStatus {
    Admitted,
    Planning,
    DischargeReady,
    PathwayAssigned,
    AwaitingService,
    DischargeAgreed,
    Discharged,
    HandoverAccepted,
    HomeAssessmentCompleted,
    Closed,
    Died,
    SelfDischarged,
}

impl DischargeStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DischargeStatus::Closed | DischargeStatus::Died | DischargeStatus::SelfDischarged
        )
    }

    /// Ready for discharge but not yet discharged: delay reasons accrue here.
    pub fn is_ready_not_discharged(self) -> bool {
        matches!(
            self,
            DischargeStatus::DischargeReady
                | DischargeStatus::PathwayAssigned
                | DischargeStatus::AwaitingService
                | DischargeStatus::DischargeAgreed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DischargeStatus::Admitted => "admitted",
            DischargeStatus::Planning => "planning",
            DischargeStatus::DischargeReady => "discharge_ready",
            DischargeStatus::PathwayAssigned => "pathway_assigned",
            DischargeStatus::AwaitingService => "awaiting_service",
            DischargeStatus::DischargeAgreed => "discharge_agreed",
            DischargeStatus::Discharged => "discharged",
            DischargeStatus::HandoverAccepted => "handover_accepted",
            DischargeStatus::HomeAssessmentCompleted => "home_assessment_completed",
            DischargeStatus::Closed => "closed",
            DischargeStatus::Died => "died",
            DischargeStatus::SelfDischarged => "self_discharged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DischargeCommand {
    Admit {
        site: Code,
        ward: Option<ShortText>,
        admitted_at: DateTime<Utc>,
    },
    SetExpectedDischargeDate {
        expected: NaiveDate,
    },
    MarkDischargeReady {
        discharge_ready_date: NaiveDate,
    },
    AssignPathway {
        pathway: Pathway,
    },
    RequestService {
        service: Code,
    },
    AgreeDischarge {
        service: Code,
        planned_for: NaiveDate,
    },
    RecordProviderFallThrough {
        reason: LongText,
    },
    RecordDeterioration {
        reason: LongText,
    },
    RecordDelayReason {
        reason: DelayReason,
        note: Option<LongText>,
    },
    Discharge {
        discharged_at: DateTime<Utc>,
        /// Where the person went, in words.
        destination: ShortText,
        /// The same as a UK Core DischargeDestinationEngland code (optional: events recorded
        /// before the code existed have none).
        destination_code: Option<DischargeDestination>,
    },
    AcceptHandover {
        organisation: Code,
    },
    CompleteHomeAssessment {
        completed_on: NaiveDate,
        outcome: LongText,
    },
    Close,
    RecordDeath {
        died_at: DateTime<Utc>,
    },
    RecordSelfDischarge {
        left_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DischargeEvent {
    Admitted {
        site: Code,
        ward: Option<ShortText>,
        admitted_at: DateTime<Utc>,
    },
    ExpectedDischargeDateSet {
        expected: NaiveDate,
    },
    DischargeReady {
        discharge_ready_date: NaiveDate,
        supersedes: Option<NaiveDate>,
    },
    PathwayAssigned {
        pathway: Pathway,
    },
    ServiceRequested {
        service: Code,
    },
    DischargeAgreed {
        service: Code,
        planned_for: NaiveDate,
    },
    ProviderFellThrough {
        reason: LongText,
    },
    Deteriorated {
        reason: LongText,
    },
    DelayReasonRecorded {
        reason: DelayReason,
        note: Option<LongText>,
    },
    Discharged {
        discharged_at: DateTime<Utc>,
        destination: ShortText,
        destination_code: Option<DischargeDestination>,
    },
    HandoverAccepted {
        organisation: Code,
    },
    HomeAssessmentCompleted {
        completed_on: NaiveDate,
        outcome: LongText,
    },
    Closed,
    Died {
        died_at: DateTime<Utc>,
    },
    SelfDischarged {
        left_at: DateTime<Utc>,
    },
}

impl DischargeEvent {
    pub fn name(&self) -> &'static str {
        use DischargeEvent as E;
        match self {
            E::Admitted { .. } => "person_admitted",
            E::ExpectedDischargeDateSet { .. } => "expected_discharge_date_set",
            E::DischargeReady { .. } => "discharge_ready",
            E::PathwayAssigned { .. } => "pathway_assigned",
            E::ServiceRequested { .. } => "service_requested",
            E::DischargeAgreed { .. } => "discharge_agreed",
            E::ProviderFellThrough { .. } => "provider_fell_through",
            E::Deteriorated { .. } => "person_deteriorated",
            E::DelayReasonRecorded { .. } => "delay_reason_recorded",
            E::Discharged { .. } => "person_discharged",
            E::HandoverAccepted { .. } => "handover_accepted",
            E::HomeAssessmentCompleted { .. } => "home_assessment_completed",
            E::Closed => "discharge_episode_closed",
            E::Died { .. } => "person_died",
            E::SelfDischarged { .. } => "person_self_discharged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DischargeEpisode {
    pub site: Code,
    pub ward: Option<ShortText>,
    pub admitted_at: DateTime<Utc>,
    pub status: DischargeStatus,
    pub expected_discharge_date: Option<NaiveDate>,
    /// The current Discharge Ready Date.
    pub discharge_ready_date: Option<NaiveDate>,
    /// Earlier DRDs, superseded after deterioration. Never deleted.
    pub superseded_drds: Vec<NaiveDate>,
    pub pathway: Option<Pathway>,
    pub service: Option<Code>,
    pub planned_for: Option<NaiveDate>,
    pub delay_reasons: Vec<DelayReason>,
    pub discharged_at: Option<DateTime<Utc>>,
    pub handover_organisation: Option<Code>,
}

fn refuse(status: DischargeStatus, action: &str) -> DomainError {
    DomainError::rule(
        "discharge.lifecycle",
        format!("cannot {action} when the episode is {}", status.as_str()),
    )
}

impl Aggregate for DischargeEpisode {
    const KIND: AggregateKind = AggregateKind::DischargeEpisode;
    type Command = DischargeCommand;
    type Event = DischargeEvent;

    fn decide(
        state: Option<&Self>,
        command: &DischargeCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<DischargeEvent>, DomainError> {
        use DischargeCommand as C;
        use DischargeEvent as E;
        use DischargeStatus as S;
        let Some(ep) = state else {
            return match command {
                C::Admit {
                    site,
                    ward,
                    admitted_at,
                } => {
                    not_future_instant("admitted_at", *admitted_at, ctx.now)?;
                    Ok(vec![E::Admitted {
                        site: site.clone(),
                        ward: ward.clone(),
                        admitted_at: *admitted_at,
                    }])
                }
                _ => Err(DomainError::NotFound {
                    what: "discharge episode",
                    id: String::new(),
                }),
            };
        };
        let status = ep.status;
        let admitted_on = uk_date(ep.admitted_at);
        if let C::Admit { .. } = command {
            return Err(DomainError::AlreadyExists {
                what: "discharge episode",
                id: String::new(),
            });
        }
        if status.is_terminal() {
            return Err(refuse(status, verb(command)));
        }
        let event = match command {
            C::SetExpectedDischargeDate { expected }
                if matches!(status, S::Admitted | S::Planning) =>
            {
                if *expected < admitted_on {
                    return Err(DomainError::invalid("expected", "is before admission"));
                }
                E::ExpectedDischargeDateSet {
                    expected: *expected,
                }
            }
            C::MarkDischargeReady {
                discharge_ready_date,
            } if status == S::Planning => {
                not_future_date("discharge_ready_date", *discharge_ready_date, ctx.now)?;
                if *discharge_ready_date < admitted_on {
                    return Err(DomainError::invalid(
                        "discharge_ready_date",
                        "is before admission",
                    ));
                }
                if let Some(previous) = ep.superseded_drds.last()
                    && discharge_ready_date <= previous
                {
                    return Err(DomainError::invalid(
                        "discharge_ready_date",
                        "must be later than the Discharge Ready Date it supersedes",
                    ));
                }
                E::DischargeReady {
                    discharge_ready_date: *discharge_ready_date,
                    supersedes: ep.superseded_drds.last().copied(),
                }
            }
            C::AssignPathway { pathway } if status == S::DischargeReady => {
                E::PathwayAssigned { pathway: *pathway }
            }
            C::RequestService { service } if status == S::PathwayAssigned => {
                if ep.pathway == Some(Pathway::P0) {
                    return Err(DomainError::rule(
                        "discharge.pathway",
                        "pathway 0 needs no new service; discharge directly",
                    ));
                }
                E::ServiceRequested {
                    service: service.clone(),
                }
            }
            C::AgreeDischarge {
                service,
                planned_for,
            } if status == S::AwaitingService => {
                // Compared with the DRD, not with today: agreements are often recorded late.
                if ep
                    .discharge_ready_date
                    .is_some_and(|drd| *planned_for < drd)
                {
                    return Err(DomainError::invalid(
                        "planned_for",
                        "is before the Discharge Ready Date",
                    ));
                }
                E::DischargeAgreed {
                    service: service.clone(),
                    planned_for: *planned_for,
                }
            }
            C::RecordProviderFallThrough { reason } if status == S::DischargeAgreed => {
                E::ProviderFellThrough {
                    reason: reason.clone(),
                }
            }
            C::RecordDeterioration { reason } if status.is_ready_not_discharged() => {
                E::Deteriorated {
                    reason: reason.clone(),
                }
            }
            C::RecordDelayReason { reason, note } if status.is_ready_not_discharged() => {
                if !reason.is_national() {
                    return Err(DomainError::invalid(
                        "reason",
                        "is not on the national list of delay reasons",
                    ));
                }
                E::DelayReasonRecorded {
                    reason: *reason,
                    note: note.clone(),
                }
            }
            C::Discharge {
                discharged_at,
                destination,
                destination_code,
            } if status == S::DischargeAgreed
                || (status == S::PathwayAssigned && ep.pathway == Some(Pathway::P0)) =>
            {
                not_future_instant("discharged_at", *discharged_at, ctx.now)?;
                if *discharged_at < ep.admitted_at {
                    return Err(DomainError::invalid("discharged_at", "is before admission"));
                }
                E::Discharged {
                    discharged_at: *discharged_at,
                    destination: destination.clone(),
                    destination_code: *destination_code,
                }
            }
            C::AcceptHandover { organisation } if status == S::Discharged => E::HandoverAccepted {
                organisation: organisation.clone(),
            },
            C::CompleteHomeAssessment {
                completed_on,
                outcome,
            } if status == S::HandoverAccepted => {
                not_future_date("completed_on", *completed_on, ctx.now)?;
                if ep.discharged_at.is_some_and(|d| *completed_on < uk_date(d)) {
                    return Err(DomainError::invalid("completed_on", "is before discharge"));
                }
                E::HomeAssessmentCompleted {
                    completed_on: *completed_on,
                    outcome: outcome.clone(),
                }
            }
            C::Close
                if status == S::HomeAssessmentCompleted
                    || (ep.pathway == Some(Pathway::P0)
                        && matches!(status, S::Discharged | S::HandoverAccepted)) =>
            {
                E::Closed
            }
            C::RecordDeath { died_at } => {
                not_future_instant("died_at", *died_at, ctx.now)?;
                if *died_at < ep.admitted_at {
                    return Err(DomainError::invalid("died_at", "is before admission"));
                }
                if ep.discharged_at.is_some_and(|d| *died_at < d) {
                    return Err(DomainError::invalid("died_at", "is before discharge"));
                }
                E::Died { died_at: *died_at }
            }
            C::RecordSelfDischarge { left_at }
                if matches!(status, S::Admitted | S::Planning)
                    || status.is_ready_not_discharged() =>
            {
                not_future_instant("left_at", *left_at, ctx.now)?;
                if *left_at < ep.admitted_at {
                    return Err(DomainError::invalid("left_at", "is before admission"));
                }
                E::SelfDischarged { left_at: *left_at }
            }
            other => return Err(refuse(status, verb(other))),
        };
        Ok(vec![event])
    }

    fn evolve(state: Option<Self>, event: &DischargeEvent) -> Result<Self, ReplayError> {
        use DischargeEvent as E;
        use DischargeStatus as S;
        let Some(mut ep) = state else {
            return match event {
                E::Admitted {
                    site,
                    ward,
                    admitted_at,
                } => Ok(DischargeEpisode {
                    site: site.clone(),
                    ward: ward.clone(),
                    admitted_at: *admitted_at,
                    status: S::Admitted,
                    expected_discharge_date: None,
                    discharge_ready_date: None,
                    superseded_drds: Vec::new(),
                    pathway: None,
                    service: None,
                    planned_for: None,
                    delay_reasons: Vec::new(),
                    discharged_at: None,
                    handover_organisation: None,
                }),
                other => Err(ReplayError {
                    event: other.name(),
                    state: "no episode".into(),
                }),
            };
        };
        match event {
            E::Admitted { .. } => {
                return Err(ReplayError {
                    event: event.name(),
                    state: ep.status.as_str().into(),
                });
            }
            E::ExpectedDischargeDateSet { expected } => {
                ep.expected_discharge_date = Some(*expected);
                ep.status = S::Planning;
            }
            E::DischargeReady {
                discharge_ready_date,
                ..
            } => {
                ep.discharge_ready_date = Some(*discharge_ready_date);
                ep.status = S::DischargeReady;
            }
            E::PathwayAssigned { pathway } => {
                ep.pathway = Some(*pathway);
                ep.status = S::PathwayAssigned;
            }
            E::ServiceRequested { service } => {
                ep.service = Some(service.clone());
                ep.status = S::AwaitingService;
            }
            E::DischargeAgreed {
                service,
                planned_for,
            } => {
                ep.service = Some(service.clone());
                ep.planned_for = Some(*planned_for);
                ep.status = S::DischargeAgreed;
            }
            E::ProviderFellThrough { .. } => {
                ep.planned_for = None;
                ep.status = S::AwaitingService;
            }
            E::Deteriorated { .. } => {
                if let Some(drd) = ep.discharge_ready_date.take() {
                    ep.superseded_drds.push(drd);
                }
                ep.pathway = None;
                ep.service = None;
                ep.planned_for = None;
                ep.status = S::Planning;
            }
            E::DelayReasonRecorded { reason, .. } => ep.delay_reasons.push(*reason),
            E::Discharged { discharged_at, .. } => {
                ep.discharged_at = Some(*discharged_at);
                ep.status = S::Discharged;
            }
            E::HandoverAccepted { organisation } => {
                ep.handover_organisation = Some(organisation.clone());
                ep.status = S::HandoverAccepted;
            }
            E::HomeAssessmentCompleted { .. } => ep.status = S::HomeAssessmentCompleted,
            E::Closed => ep.status = S::Closed,
            E::Died { .. } => ep.status = S::Died,
            E::SelfDischarged { .. } => ep.status = S::SelfDischarged,
        }
        Ok(ep)
    }
}

fn verb(command: &DischargeCommand) -> &'static str {
    use DischargeCommand as C;
    match command {
        C::Admit { .. } => "admit",
        C::SetExpectedDischargeDate { .. } => "set the expected discharge date",
        C::MarkDischargeReady { .. } => "mark discharge ready",
        C::AssignPathway { .. } => "assign a pathway",
        C::RequestService { .. } => "request a service",
        C::AgreeDischarge { .. } => "agree discharge",
        C::RecordProviderFallThrough { .. } => "record a provider falling through",
        C::RecordDeterioration { .. } => "record deterioration",
        C::RecordDelayReason { .. } => "record a delay reason",
        C::Discharge { .. } => "discharge",
        C::AcceptHandover { .. } => "accept handover",
        C::CompleteHomeAssessment { .. } => "complete the home assessment",
        C::Close => "close the episode",
        C::RecordDeath { .. } => "record a death",
        C::RecordSelfDischarge { .. } => "record self-discharge",
    }
}
