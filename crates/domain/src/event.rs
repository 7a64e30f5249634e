use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::AggregateKind;
use crate::aggregates::{
    assessment::AssessmentEvent, care_plan::CarePlanEvent, care_team::CareTeamEvent,
    consent::ConsentEvent, discharge::DischargeEvent, feedback::FeedbackEvent, flag::FlagEvent,
    meeting::MeetingEvent, organisation::OrganisationEvent, person::PersonEvent,
    referral::ReferralEvent, task::TaskEvent,
};
use crate::values::Code;

/// Any domain event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Person(PersonEvent),
    Referral(ReferralEvent),
    Assessment(AssessmentEvent),
    CarePlan(CarePlanEvent),
    CareTeam(CareTeamEvent),
    Consent(ConsentEvent),
    Discharge(DischargeEvent),
    Meeting(MeetingEvent),
    Feedback(FeedbackEvent),
    Flag(FlagEvent),
    Task(TaskEvent),
    Organisation(OrganisationEvent),
}

/// Every event type name, as [`Event::name`] gives them.
pub const EVENT_TYPES: [&str; 57] = [
    "person_registered",
    "person_details_corrected",
    "emergency_access_asserted",
    "proxy_granted",
    "proxy_revoked",
    "referral_submitted",
    "referral_received",
    "referral_accepted",
    "referral_rejected",
    "referral_started",
    "referral_put_on_hold",
    "referral_resumed",
    "referral_completed",
    "referral_failed",
    "referral_cancelled",
    "referral_entered_in_error",
    "assessment_requested",
    "assessment_contribution_recorded",
    "assessment_completed",
    "eligibility_determined",
    "assessment_cancelled",
    "assessor_replaced",
    "risk_flag_raised",
    "risk_flag_ended",
    "task_created",
    "task_status_changed",
    "task_reassigned",
    "care_plan_agreed",
    "care_plan_revised",
    "care_team_member_added",
    "care_team_member_removed",
    "care_coordinator_named",
    "care_coordinator_unassigned",
    "consent_recorded",
    "consent_withdrawn",
    "person_admitted",
    "expected_discharge_date_set",
    "discharge_ready",
    "pathway_assigned",
    "service_requested",
    "discharge_agreed",
    "provider_fell_through",
    "person_deteriorated",
    "delay_reason_recorded",
    "person_discharged",
    "handover_accepted",
    "home_assessment_completed",
    "discharge_episode_closed",
    "person_died",
    "person_self_discharged",
    "meeting_recorded",
    "meeting_action_completed",
    "feedback_recorded",
    "organisation_registered",
    "organisation_service_added",
    "sharing_agreement_recorded",
    "sharing_agreement_ended",
];

impl Event {
    /// Stable snake_case event type, used in NATS subjects and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Person(e) => e.name(),
            Event::Referral(e) => e.name(),
            Event::Assessment(e) => e.name(),
            Event::CarePlan(e) => e.name(),
            Event::CareTeam(e) => e.name(),
            Event::Consent(e) => e.name(),
            Event::Discharge(e) => e.name(),
            Event::Meeting(e) => e.name(),
            Event::Feedback(e) => e.name(),
            Event::Flag(e) => e.name(),
            Event::Task(e) => e.name(),
            Event::Organisation(e) => e.name(),
        }
    }

    pub fn kind(&self) -> AggregateKind {
        match self {
            Event::Person(_) => AggregateKind::Person,
            Event::Referral(_) => AggregateKind::Referral,
            Event::Assessment(_) => AggregateKind::Assessment,
            Event::CarePlan(_) => AggregateKind::CarePlan,
            Event::CareTeam(_) => AggregateKind::CareTeam,
            Event::Consent(_) => AggregateKind::Consent,
            Event::Discharge(_) => AggregateKind::DischargeEpisode,
            Event::Meeting(_) => AggregateKind::Meeting,
            Event::Feedback(_) => AggregateKind::Feedback,
            Event::Flag(_) => AggregateKind::Flag,
            Event::Task(_) => AggregateKind::Task,
            Event::Organisation(_) => AggregateKind::Organisation,
        }
    }
}

/// The envelope every event carries (domain.md, "Event envelope").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub aggregate_kind: AggregateKind,
    pub person_id: Uuid,
    /// 1-based position of this event within its aggregate.
    pub version: u64,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub organisation: Code,
    pub user: Code,
    /// Valid time: when it happened in the world.
    pub occurred_at: DateTime<Utc>,
    /// When the log got it.
    pub recorded_at: DateTime<Utc>,
    pub schema_version: u32,
}

/// An event as read back from the log, with its log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub sequence: u64,
    pub meta: EventMeta,
    pub event: Event,
}
