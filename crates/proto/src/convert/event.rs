//! The event codec: the log stores one protobuf-encoded [`v1::EventEnvelope`] per message.
//!
//! Decoding re-validates every value through the domain's value types, so whatever decodes
//! is something `decide` could have produced, and `decode(encode(m, e)) == (m, e)`.

use carewoven_domain::assessment::{AssessmentEvent, Eligibility};
use carewoven_domain::care_plan::CarePlanEvent;
use carewoven_domain::care_team::CareTeamEvent;
use carewoven_domain::consent::ConsentEvent;
use carewoven_domain::discharge::{DischargeDestination, DischargeEvent};
use carewoven_domain::feedback::FeedbackEvent;
use carewoven_domain::flag::FlagEvent;
use carewoven_domain::meeting::MeetingEvent;
use carewoven_domain::organisation::OrganisationEvent;
use carewoven_domain::person::PersonEvent;
use carewoven_domain::referral::ReferralEvent;
use carewoven_domain::task::TaskEvent;
use carewoven_domain::values::{Code, LongText, ShortText};
use carewoven_domain::{AggregateKind, DomainError, Event, EventMeta};
use prost::Message;

use super::values::{code_list, req_msg};
use super::wire::{
    WireEnum, WireString, opt, opt_date, req_date, req_enum, req_instant, req_uuid, timestamp,
};
use crate::v1;
use crate::v1::event_envelope::Event as W;

/// Why bytes from the log could not be turned back into a domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid envelope, or a field holds a value the domain would refuse.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The `event` oneof is empty: the event was written by a newer schema.
    #[error("unknown event type (written by a newer schema?)")]
    UnknownEventType,
    /// The envelope's `aggregate_kind` is not the kind the event belongs to.
    #[error("the envelope's aggregate kind does not match its event")]
    KindMismatch,
}

/// Encode one event and its envelope for the log.
pub fn encode_event(meta: &EventMeta, event: &Event) -> Vec<u8> {
    to_envelope(meta, event).encode_to_vec()
}

/// Decode one log message back into its envelope and event.
pub fn decode_event(bytes: &[u8]) -> Result<(EventMeta, Event), DecodeError> {
    let envelope = v1::EventEnvelope::decode(bytes)
        .map_err(|e| DecodeError::Malformed(format!("not an EventEnvelope: {e}")))?;
    from_envelope(&envelope)
}

/// The wire envelope for an event.
pub fn to_envelope(meta: &EventMeta, event: &Event) -> v1::EventEnvelope {
    v1::EventEnvelope {
        event_id: meta.event_id.wire(),
        aggregate_id: meta.aggregate_id.wire(),
        aggregate_kind: meta.aggregate_kind.as_str().to_owned(),
        person_id: meta.person_id.wire(),
        version: meta.version,
        command_id: meta.command_id.wire(),
        correlation_id: meta.correlation_id.wire(),
        causation_id: meta.causation_id.wire(),
        organisation: meta.organisation.wire(),
        user: meta.user.wire(),
        occurred_at: Some(timestamp(meta.occurred_at)),
        recorded_at: Some(timestamp(meta.recorded_at)),
        schema_version: meta.schema_version,
        event: Some(event_to_wire(event)),
    }
}

/// The domain envelope and event from a wire envelope.
pub fn from_envelope(envelope: &v1::EventEnvelope) -> Result<(EventMeta, Event), DecodeError> {
    let malformed = |e: DomainError| DecodeError::Malformed(e.to_string());
    let wire = envelope
        .event
        .as_ref()
        .ok_or(DecodeError::UnknownEventType)?;
    let meta = meta_from_wire(envelope).map_err(malformed)?;
    let event = event_from_wire(wire).map_err(malformed)?;
    if event.kind() != meta.aggregate_kind {
        return Err(DecodeError::KindMismatch);
    }
    Ok((meta, event))
}

fn meta_from_wire(w: &v1::EventEnvelope) -> Result<EventMeta, DomainError> {
    Ok(EventMeta {
        event_id: req_uuid("event_id", &w.event_id)?,
        aggregate_id: req_uuid("aggregate_id", &w.aggregate_id)?,
        aggregate_kind: AggregateKind::parse(&w.aggregate_kind).ok_or_else(|| {
            DomainError::invalid(
                "aggregate_kind",
                format!("unknown value {:?}", w.aggregate_kind),
            )
        })?,
        person_id: req_uuid("person_id", &w.person_id)?,
        version: w.version,
        command_id: req_uuid("command_id", &w.command_id)?,
        correlation_id: req_uuid("correlation_id", &w.correlation_id)?,
        causation_id: req_uuid("causation_id", &w.causation_id)?,
        organisation: Code::parse("organisation", &w.organisation)?,
        user: Code::parse("user", &w.user)?,
        occurred_at: req_instant("occurred_at", w.occurred_at.as_ref())?,
        recorded_at: req_instant("recorded_at", w.recorded_at.as_ref())?,
        schema_version: w.schema_version,
    })
}

// ---------------------------------------------------------------------------------------------
// Domain -> wire

fn event_to_wire(event: &Event) -> W {
    match event {
        Event::Person(e) => person_to_wire(e),
        Event::Referral(e) => referral_to_wire(e),
        Event::Assessment(e) => assessment_to_wire(e),
        Event::CarePlan(e) => care_plan_to_wire(e),
        Event::CareTeam(e) => care_team_to_wire(e),
        Event::Consent(e) => consent_to_wire(e),
        Event::Discharge(e) => discharge_to_wire(e),
        Event::Meeting(e) => meeting_to_wire(e),
        Event::Flag(FlagEvent::Raised { flag }) => W::RiskFlagRaised(v1::RiskFlagRaised {
            flag: Some(flag.into()),
        }),
        Event::Flag(FlagEvent::Ended { end, reason }) => W::RiskFlagEnded(v1::RiskFlagEnded {
            end: end.wire(),
            reason: reason.wire(),
        }),
        Event::Task(TaskEvent::Created { task, requester }) => W::TaskCreated(v1::TaskCreated {
            task: Some(task.into()),
            requester: requester.wire(),
        }),
        Event::Task(TaskEvent::StatusChanged { status, reason }) => {
            W::TaskStatusChanged(v1::TaskStatusChanged {
                status: status.to_i32(),
                reason: reason.wire(),
            })
        }
        Event::Task(TaskEvent::Reassigned { owner, reason }) => {
            W::TaskReassigned(v1::TaskReassigned {
                owner: Some(owner.into()),
                reason: reason.wire(),
            })
        }
        Event::Feedback(FeedbackEvent::Recorded { feedback }) => {
            W::FeedbackRecorded(v1::FeedbackRecorded {
                feedback: Some(feedback.into()),
            })
        }
        Event::Organisation(e) => organisation_to_wire(e),
    }
}

fn organisation_to_wire(e: &OrganisationEvent) -> W {
    match e {
        OrganisationEvent::Registered {
            code,
            profile,
            services,
        } => W::OrganisationRegistered(v1::OrganisationRegistered {
            code: code.as_str().to_owned(),
            profile: Some(profile.into()),
            services: services.iter().map(|s| s.as_str().to_owned()).collect(),
        }),
        OrganisationEvent::ServiceAdded { service } => {
            W::OrganisationServiceAdded(v1::OrganisationServiceAdded {
                service: service.as_str().to_owned(),
            })
        }
        OrganisationEvent::AgreementRecorded { agreement } => {
            W::SharingAgreementRecorded(v1::SharingAgreementRecorded {
                agreement: Some(agreement.into()),
            })
        }
        OrganisationEvent::AgreementEnded { reference, reason } => {
            W::SharingAgreementEnded(v1::SharingAgreementEnded {
                reference: reference.as_str().to_owned(),
                reason: reason.as_str().to_owned(),
            })
        }
    }
}

fn person_to_wire(e: &PersonEvent) -> W {
    match e {
        PersonEvent::Registered { profile } => W::PersonRegistered(v1::PersonRegistered {
            profile: Some(profile.into()),
        }),
        PersonEvent::DetailsCorrected { correction, reason } => {
            W::PersonDetailsCorrected(v1::PersonDetailsCorrected {
                correction: Some(correction.into()),
                reason: reason.wire(),
            })
        }
        PersonEvent::EmergencyAccessAsserted {
            organisation,
            reason,
            expires_at,
        } => W::EmergencyAccessAsserted(v1::EmergencyAccessAsserted {
            organisation: organisation.wire(),
            reason: reason.wire(),
            expires_at: Some(timestamp(*expires_at)),
        }),
        PersonEvent::ProxyGranted { grant } => W::ProxyGranted(v1::ProxyGranted {
            grant: Some(grant.into()),
        }),
        PersonEvent::ProxyRevoked {
            carer_nhs_number,
            reason,
        } => W::ProxyRevoked(v1::ProxyRevoked {
            carer_nhs_number: carer_nhs_number.wire(),
            reason: reason.wire(),
        }),
    }
}

fn referral_to_wire(e: &ReferralEvent) -> W {
    use ReferralEvent as E;
    match e {
        E::Submitted { referral } => W::ReferralSubmitted(v1::ReferralSubmitted {
            referral: Some(referral.into()),
        }),
        E::Received => W::ReferralReceived(v1::ReferralReceived {}),
        E::Accepted => W::ReferralAccepted(v1::ReferralAccepted {}),
        E::Rejected { reason } => W::ReferralRejected(v1::ReferralRejected {
            reason: reason.wire(),
        }),
        E::Started => W::ReferralStarted(v1::ReferralStarted {}),
        E::PutOnHold { reason } => W::ReferralPutOnHold(v1::ReferralPutOnHold {
            reason: reason.wire(),
        }),
        E::Resumed => W::ReferralResumed(v1::ReferralResumed {}),
        E::Completed => W::ReferralCompleted(v1::ReferralCompleted {}),
        E::Failed { reason } => W::ReferralFailed(v1::ReferralFailed {
            reason: reason.wire(),
        }),
        E::Cancelled { reason } => W::ReferralCancelled(v1::ReferralCancelled {
            reason: reason.wire(),
        }),
        E::EnteredInError { reason } => W::ReferralEnteredInError(v1::ReferralEnteredInError {
            reason: reason.wire(),
        }),
    }
}

fn assessment_to_wire(e: &AssessmentEvent) -> W {
    use AssessmentEvent as E;
    match e {
        E::Requested { request } => W::AssessmentRequested(v1::AssessmentRequested {
            request: Some(request.into()),
        }),
        E::ContributionRecorded {
            organisation,
            summary,
        } => W::AssessmentContributionRecorded(v1::AssessmentContributionRecorded {
            organisation: organisation.wire(),
            summary: summary.wire(),
        }),
        E::Completed { findings } => W::AssessmentCompleted(v1::AssessmentCompleted {
            findings: Some(findings.into()),
        }),
        E::EligibilityDetermined { eligibility } => {
            W::EligibilityDetermined(v1::EligibilityDetermined {
                eligible: eligibility.eligible,
                reasons: eligibility.reasons.clone(),
            })
        }
        E::Cancelled { reason } => W::AssessmentCancelled(v1::AssessmentCancelled {
            reason: reason.wire(),
        }),
        E::AssessorReplaced {
            replaced,
            by,
            reason,
        } => W::AssessorReplaced(v1::AssessorReplaced {
            replaced: replaced.wire(),
            by: by.wire(),
            reason: reason.wire(),
        }),
    }
}

fn care_plan_to_wire(e: &CarePlanEvent) -> W {
    match e {
        CarePlanEvent::Agreed { plan_version, plan } => W::CarePlanAgreed(v1::CarePlanAgreed {
            plan_version: *plan_version,
            plan: Some(plan.into()),
        }),
        CarePlanEvent::Revised {
            plan_version,
            plan,
            reason,
            changes,
        } => W::CarePlanRevised(v1::CarePlanRevised {
            plan_version: *plan_version,
            plan: Some(plan.into()),
            reason: reason.wire(),
            changes: changes.iter().map(Into::into).collect(),
        }),
    }
}

fn care_team_to_wire(e: &CareTeamEvent) -> W {
    use CareTeamEvent as E;
    match e {
        E::MemberAdded {
            member,
            role,
            since,
        } => W::CareTeamMemberAdded(v1::CareTeamMemberAdded {
            member: Some(member.into()),
            role: role.to_i32(),
            since: since.wire(),
        }),
        E::MemberRemoved {
            member,
            until,
            reason,
        } => W::CareTeamMemberRemoved(v1::CareTeamMemberRemoved {
            member: Some(member.into()),
            until: until.wire(),
            reason: reason.wire(),
        }),
        E::CoordinatorNamed { member } => W::CareCoordinatorNamed(v1::CareCoordinatorNamed {
            member: Some(member.into()),
        }),
        E::CoordinatorUnassigned { member } => {
            W::CareCoordinatorUnassigned(v1::CareCoordinatorUnassigned {
                member: Some(member.into()),
            })
        }
    }
}

fn consent_to_wire(e: &ConsentEvent) -> W {
    match e {
        ConsentEvent::Recorded { terms } => W::ConsentRecorded(v1::ConsentRecorded {
            terms: Some(terms.into()),
        }),
        ConsentEvent::Withdrawn { reason } => W::ConsentWithdrawn(v1::ConsentWithdrawn {
            reason: reason.wire(),
        }),
    }
}

fn discharge_to_wire(e: &DischargeEvent) -> W {
    use DischargeEvent as E;
    match e {
        E::Admitted {
            site,
            ward,
            admitted_at,
        } => W::PersonAdmitted(v1::PersonAdmitted {
            site: site.wire(),
            ward: ward.wire(),
            admitted_at: Some(timestamp(*admitted_at)),
        }),
        E::ExpectedDischargeDateSet { expected } => {
            W::ExpectedDischargeDateSet(v1::ExpectedDischargeDateSet {
                expected: expected.wire(),
            })
        }
        E::DischargeReady {
            discharge_ready_date,
            supersedes,
        } => W::DischargeReady(v1::DischargeReady {
            discharge_ready_date: discharge_ready_date.wire(),
            supersedes: supersedes.wire(),
        }),
        E::PathwayAssigned { pathway } => W::PathwayAssigned(v1::PathwayAssigned {
            pathway: pathway.to_i32(),
        }),
        E::ServiceRequested { service } => W::ServiceRequested(v1::ServiceRequested {
            service: service.wire(),
        }),
        E::DischargeAgreed {
            service,
            planned_for,
        } => W::DischargeAgreed(v1::DischargeAgreed {
            service: service.wire(),
            planned_for: planned_for.wire(),
        }),
        E::ProviderFellThrough { reason } => W::ProviderFellThrough(v1::ProviderFellThrough {
            reason: reason.wire(),
        }),
        E::Deteriorated { reason } => W::PersonDeteriorated(v1::PersonDeteriorated {
            reason: reason.wire(),
        }),
        E::DelayReasonRecorded { reason, note } => {
            W::DelayReasonRecorded(v1::DelayReasonRecorded {
                reason: reason.to_i32(),
                note: note.wire(),
            })
        }
        E::Discharged {
            discharged_at,
            destination,
            destination_code,
        } => W::PersonDischarged(v1::PersonDischarged {
            discharged_at: Some(timestamp(*discharged_at)),
            destination: destination.wire(),
            destination_code: destination_code
                .map(|c| c.code().to_owned())
                .unwrap_or_default(),
        }),
        E::HandoverAccepted { organisation } => W::HandoverAccepted(v1::HandoverAccepted {
            organisation: organisation.wire(),
        }),
        E::HomeAssessmentCompleted {
            completed_on,
            outcome,
        } => W::HomeAssessmentCompleted(v1::HomeAssessmentCompleted {
            completed_on: completed_on.wire(),
            outcome: outcome.wire(),
        }),
        E::Closed => W::DischargeEpisodeClosed(v1::DischargeEpisodeClosed {}),
        E::Died { died_at } => W::PersonDied(v1::PersonDied {
            died_at: Some(timestamp(*died_at)),
        }),
        E::SelfDischarged { left_at } => W::PersonSelfDischarged(v1::PersonSelfDischarged {
            left_at: Some(timestamp(*left_at)),
        }),
    }
}

fn meeting_to_wire(e: &MeetingEvent) -> W {
    match e {
        MeetingEvent::Recorded { meeting } => W::MeetingRecorded(v1::MeetingRecorded {
            meeting: Some(meeting.into()),
        }),
        MeetingEvent::ActionCompleted { action, note } => {
            W::MeetingActionCompleted(v1::MeetingActionCompleted {
                action: *action,
                note: note.wire(),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire -> domain. Fields are named `<oneof case>.<field>`.

fn long(field: &str, raw: &str) -> Result<LongText, DomainError> {
    LongText::parse(field, raw)
}

fn event_from_wire(w: &W) -> Result<Event, DomainError> {
    use AssessmentEvent as A;
    use CareTeamEvent as T;
    use DischargeEvent as D;
    use ReferralEvent as R;
    Ok(match w {
        W::PersonRegistered(m) => Event::Person(PersonEvent::Registered {
            profile: req_msg("person_registered.profile", m.profile.as_ref())?,
        }),
        W::PersonDetailsCorrected(m) => Event::Person(PersonEvent::DetailsCorrected {
            correction: req_msg("person_details_corrected.correction", m.correction.as_ref())?,
            reason: long("person_details_corrected.reason", &m.reason)?,
        }),
        W::EmergencyAccessAsserted(m) => Event::Person(PersonEvent::EmergencyAccessAsserted {
            organisation: Code::parse("emergency_access_asserted.organisation", &m.organisation)?,
            reason: long("emergency_access_asserted.reason", &m.reason)?,
            expires_at: req_instant(
                "emergency_access_asserted.expires_at",
                m.expires_at.as_ref(),
            )?,
        }),
        W::ProxyGranted(m) => Event::Person(PersonEvent::ProxyGranted {
            grant: req_msg("proxy_granted.grant", m.grant.as_ref())?,
        }),
        W::ProxyRevoked(m) => Event::Person(PersonEvent::ProxyRevoked {
            carer_nhs_number: carewoven_domain::values::NhsNumber::parse(
                "proxy_revoked.carer_nhs_number",
                &m.carer_nhs_number,
            )?,
            reason: long("proxy_revoked.reason", &m.reason)?,
        }),

        W::ReferralSubmitted(m) => Event::Referral(R::Submitted {
            referral: req_msg("referral_submitted.referral", m.referral.as_ref())?,
        }),
        W::ReferralReceived(_) => Event::Referral(R::Received),
        W::ReferralAccepted(_) => Event::Referral(R::Accepted),
        W::ReferralRejected(m) => Event::Referral(R::Rejected {
            reason: long("referral_rejected.reason", &m.reason)?,
        }),
        W::ReferralStarted(_) => Event::Referral(R::Started),
        W::ReferralPutOnHold(m) => Event::Referral(R::PutOnHold {
            reason: long("referral_put_on_hold.reason", &m.reason)?,
        }),
        W::ReferralResumed(_) => Event::Referral(R::Resumed),
        W::ReferralCompleted(_) => Event::Referral(R::Completed),
        W::ReferralFailed(m) => Event::Referral(R::Failed {
            reason: long("referral_failed.reason", &m.reason)?,
        }),
        W::ReferralCancelled(m) => Event::Referral(R::Cancelled {
            reason: long("referral_cancelled.reason", &m.reason)?,
        }),
        W::ReferralEnteredInError(m) => Event::Referral(R::EnteredInError {
            reason: long("referral_entered_in_error.reason", &m.reason)?,
        }),

        W::AssessmentRequested(m) => Event::Assessment(A::Requested {
            request: req_msg("assessment_requested.request", m.request.as_ref())?,
        }),
        W::AssessmentContributionRecorded(m) => Event::Assessment(A::ContributionRecorded {
            organisation: Code::parse(
                "assessment_contribution_recorded.organisation",
                &m.organisation,
            )?,
            summary: long("assessment_contribution_recorded.summary", &m.summary)?,
        }),
        W::AssessmentCompleted(m) => Event::Assessment(A::Completed {
            findings: req_msg("assessment_completed.findings", m.findings.as_ref())?,
        }),
        W::EligibilityDetermined(m) => Event::Assessment(A::EligibilityDetermined {
            eligibility: Eligibility {
                eligible: m.eligible,
                reasons: m.reasons.clone(),
            },
        }),
        W::AssessmentCancelled(m) => Event::Assessment(A::Cancelled {
            reason: long("assessment_cancelled.reason", &m.reason)?,
        }),
        W::AssessorReplaced(m) => Event::Assessment(A::AssessorReplaced {
            replaced: Code::parse("assessor_replaced.replaced", &m.replaced)?,
            by: Code::parse("assessor_replaced.by", &m.by)?,
            reason: long("assessor_replaced.reason", &m.reason)?,
        }),

        W::CarePlanAgreed(m) => Event::CarePlan(CarePlanEvent::Agreed {
            plan_version: m.plan_version,
            plan: req_msg("care_plan_agreed.plan", m.plan.as_ref())?,
        }),
        W::CarePlanRevised(m) => Event::CarePlan(CarePlanEvent::Revised {
            plan_version: m.plan_version,
            plan: req_msg("care_plan_revised.plan", m.plan.as_ref())?,
            reason: long("care_plan_revised.reason", &m.reason)?,
            changes: super::values::activity_changes("care_plan_revised.changes", &m.changes)?,
        }),

        W::CareTeamMemberAdded(m) => Event::CareTeam(T::MemberAdded {
            member: req_msg("care_team_member_added.member", m.member.as_ref())?,
            role: req_enum("care_team_member_added.role", m.role)?,
            since: req_date("care_team_member_added.since", &m.since)?,
        }),
        W::CareTeamMemberRemoved(m) => Event::CareTeam(T::MemberRemoved {
            member: req_msg("care_team_member_removed.member", m.member.as_ref())?,
            until: req_date("care_team_member_removed.until", &m.until)?,
            reason: long("care_team_member_removed.reason", &m.reason)?,
        }),
        W::CareCoordinatorNamed(m) => Event::CareTeam(T::CoordinatorNamed {
            member: req_msg("care_coordinator_named.member", m.member.as_ref())?,
        }),
        W::CareCoordinatorUnassigned(m) => Event::CareTeam(T::CoordinatorUnassigned {
            member: req_msg("care_coordinator_unassigned.member", m.member.as_ref())?,
        }),

        W::ConsentRecorded(m) => Event::Consent(ConsentEvent::Recorded {
            terms: req_msg("consent_recorded.terms", m.terms.as_ref())?,
        }),
        W::ConsentWithdrawn(m) => Event::Consent(ConsentEvent::Withdrawn {
            reason: long("consent_withdrawn.reason", &m.reason)?,
        }),

        W::PersonAdmitted(m) => Event::Discharge(D::Admitted {
            site: Code::parse("person_admitted.site", &m.site)?,
            ward: opt("person_admitted.ward", &m.ward, ShortText::parse)?,
            admitted_at: req_instant("person_admitted.admitted_at", m.admitted_at.as_ref())?,
        }),
        W::ExpectedDischargeDateSet(m) => Event::Discharge(D::ExpectedDischargeDateSet {
            expected: req_date("expected_discharge_date_set.expected", &m.expected)?,
        }),
        W::DischargeReady(m) => Event::Discharge(D::DischargeReady {
            discharge_ready_date: req_date(
                "discharge_ready.discharge_ready_date",
                &m.discharge_ready_date,
            )?,
            supersedes: opt_date("discharge_ready.supersedes", &m.supersedes)?,
        }),
        W::PathwayAssigned(m) => Event::Discharge(D::PathwayAssigned {
            pathway: req_enum("pathway_assigned.pathway", m.pathway)?,
        }),
        W::ServiceRequested(m) => Event::Discharge(D::ServiceRequested {
            service: Code::parse("service_requested.service", &m.service)?,
        }),
        W::DischargeAgreed(m) => Event::Discharge(D::DischargeAgreed {
            service: Code::parse("discharge_agreed.service", &m.service)?,
            planned_for: req_date("discharge_agreed.planned_for", &m.planned_for)?,
        }),
        W::ProviderFellThrough(m) => Event::Discharge(D::ProviderFellThrough {
            reason: long("provider_fell_through.reason", &m.reason)?,
        }),
        W::PersonDeteriorated(m) => Event::Discharge(D::Deteriorated {
            reason: long("person_deteriorated.reason", &m.reason)?,
        }),
        W::DelayReasonRecorded(m) => Event::Discharge(D::DelayReasonRecorded {
            reason: req_enum("delay_reason_recorded.reason", m.reason)?,
            note: opt("delay_reason_recorded.note", &m.note, LongText::parse)?,
        }),
        W::PersonDischarged(m) => Event::Discharge(D::Discharged {
            discharged_at: req_instant(
                "person_discharged.discharged_at",
                m.discharged_at.as_ref(),
            )?,
            destination: ShortText::parse("person_discharged.destination", &m.destination)?,
            destination_code: opt(
                "person_discharged.destination_code",
                &m.destination_code,
                DischargeDestination::parse,
            )?,
        }),
        W::HandoverAccepted(m) => Event::Discharge(D::HandoverAccepted {
            organisation: Code::parse("handover_accepted.organisation", &m.organisation)?,
        }),
        W::HomeAssessmentCompleted(m) => Event::Discharge(D::HomeAssessmentCompleted {
            completed_on: req_date("home_assessment_completed.completed_on", &m.completed_on)?,
            outcome: long("home_assessment_completed.outcome", &m.outcome)?,
        }),
        W::DischargeEpisodeClosed(_) => Event::Discharge(D::Closed),
        W::PersonDied(m) => Event::Discharge(D::Died {
            died_at: req_instant("person_died.died_at", m.died_at.as_ref())?,
        }),
        W::PersonSelfDischarged(m) => Event::Discharge(D::SelfDischarged {
            left_at: req_instant("person_self_discharged.left_at", m.left_at.as_ref())?,
        }),

        W::MeetingRecorded(m) => Event::Meeting(MeetingEvent::Recorded {
            meeting: req_msg("meeting_recorded.meeting", m.meeting.as_ref())?,
        }),
        W::MeetingActionCompleted(m) => Event::Meeting(MeetingEvent::ActionCompleted {
            action: m.action,
            note: opt("meeting_action_completed.note", &m.note, LongText::parse)?,
        }),

        W::RiskFlagRaised(m) => Event::Flag(FlagEvent::Raised {
            flag: req_msg("risk_flag_raised.flag", m.flag.as_ref())?,
        }),
        W::RiskFlagEnded(m) => Event::Flag(FlagEvent::Ended {
            end: req_date("risk_flag_ended.end", &m.end)?,
            reason: long("risk_flag_ended.reason", &m.reason)?,
        }),
        W::TaskCreated(m) => Event::Task(TaskEvent::Created {
            task: req_msg("task_created.task", m.task.as_ref())?,
            requester: Code::parse("task_created.requester", &m.requester)?,
        }),
        W::TaskStatusChanged(m) => Event::Task(TaskEvent::StatusChanged {
            status: req_enum("task_status_changed.status", m.status)?,
            reason: opt("task_status_changed.reason", &m.reason, LongText::parse)?,
        }),
        W::TaskReassigned(m) => Event::Task(TaskEvent::Reassigned {
            owner: req_msg("task_reassigned.owner", m.owner.as_ref())?,
            reason: long("task_reassigned.reason", &m.reason)?,
        }),
        W::FeedbackRecorded(m) => Event::Feedback(FeedbackEvent::Recorded {
            feedback: req_msg("feedback_recorded.feedback", m.feedback.as_ref())?,
        }),

        W::OrganisationRegistered(m) => Event::Organisation(OrganisationEvent::Registered {
            code: Code::parse("organisation_registered.code", &m.code)?,
            profile: req_msg("organisation_registered.profile", m.profile.as_ref())?,
            services: code_list("organisation_registered.services", &m.services)?,
        }),
        W::OrganisationServiceAdded(m) => Event::Organisation(OrganisationEvent::ServiceAdded {
            service: Code::parse("organisation_service_added.service", &m.service)?,
        }),
        W::SharingAgreementRecorded(m) => {
            Event::Organisation(OrganisationEvent::AgreementRecorded {
                agreement: req_msg("sharing_agreement_recorded.agreement", m.agreement.as_ref())?,
            })
        }
        W::SharingAgreementEnded(m) => Event::Organisation(OrganisationEvent::AgreementEnded {
            reference: Code::parse("sharing_agreement_ended.reference", &m.reference)?,
            reason: long("sharing_agreement_ended.reason", &m.reason)?,
        }),
    })
}
