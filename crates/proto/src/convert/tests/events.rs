use std::collections::BTreeSet;

use carewoven_domain::assessment::{
    AssessmentEvent, AssessmentKind, AssessmentRequest, CareActOutcome, Eligibility, Findings,
};
use carewoven_domain::care_plan::{
    Activity, ActivityChange, ActivityStatus, CarePlanEvent, PlanContent,
};
use carewoven_domain::care_team::{CareTeamEvent, CareTeamRole, MemberRef};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, ConsentTerms, DataClass, Purpose};
use carewoven_domain::discharge::{DelayReason, DischargeEvent, Pathway};
use carewoven_domain::feedback::{FeedbackEvent, FeedbackRecord, FeedbackSource};
use carewoven_domain::flag::{FlagEvent, RiskFlag, RiskFlagCode};
use carewoven_domain::meeting::{MeetingAction, MeetingEvent, MeetingRecord};
use carewoven_domain::organisation::{
    OrganisationEvent, OrganisationProfile, OrganisationType, SharingAgreement,
};
use carewoven_domain::person::{Carer, Correction, PersonEvent, Profile, ProxyGrant, ProxyScope};
use carewoven_domain::referral::{NewReferral, Priority, ReferralEvent};
use carewoven_domain::task::{TaskBasis, TaskContent, TaskEvent, TaskStatus};
use carewoven_domain::{Event, EventMeta, SCHEMA_VERSION};
use prost::Message;

use super::{NHS_A, NHS_B, code, date, id, instant, long, nhs, short};
use crate::convert::{DecodeError, decode_event, encode_event, to_envelope};
use crate::v1;
use crate::v1::event_envelope::Event as W;

/// The number of cases in `EventEnvelope.event`.
const ONEOF_CASES: usize = 57;

fn meta(event: &Event) -> EventMeta {
    EventMeta {
        event_id: id(1),
        aggregate_id: id(2),
        aggregate_kind: event.kind(),
        person_id: id(3),
        version: 7,
        command_id: id(4),
        correlation_id: id(5),
        causation_id: id(6),
        organisation: code("RXH01"),
        user: code("user-1"),
        occurred_at: instant(1_750_000_000, 123_456_789),
        recorded_at: instant(1_750_000_100, 987_654_321),
        schema_version: SCHEMA_VERSION,
    }
}

fn profile() -> Profile {
    Profile {
        nhs_number: nhs(NHS_A),
        given_name: short("Ada"),
        family_name: short("Example"),
        date_of_birth: date("1941-03-09"),
        contact: Some(long("01632 960000")),
        what_matters: Some(long("Getting back to the allotment")),
        communication_needs: None,
        carers: vec![
            Carer {
                name: short("Ben Example"),
                relationship: short("son"),
                contact: Some(short("07700 900000")),
            },
            Carer {
                name: short("Cara Example"),
                relationship: short("neighbour"),
                contact: None,
            },
        ],
        registered_gp: Some(code("GP-A81001")),
    }
}

fn member(practitioner: Option<&str>) -> MemberRef {
    MemberRef {
        organisation: code("GP-A81001"),
        practitioner: practitioner.map(code),
    }
}

fn plan() -> PlanContent {
    PlanContent {
        goals: vec![long("Walk to the shop"), long("Cook a meal")],
        activities: vec![Activity {
            description: long("Reablement visits twice daily"),
            responsible_organisation: code("LA-123"),
            status: ActivityStatus::InProgress,
            status_reason: None,
        }],
        review_date: date("2026-01-31"),
    }
}

fn person_events() -> Vec<PersonEvent> {
    vec![
        PersonEvent::Registered { profile: profile() },
        PersonEvent::DetailsCorrected {
            correction: Correction {
                nhs_number: Some(nhs(NHS_B)),
                given_name: Some(short("Adah")),
                date_of_birth: Some(date("1941-03-10")),
                communication_needs: Some(long("Large print")),
                carers: Some(vec![]),
                ..Correction::default()
            },
            reason: long("Typo at registration"),
        },
        PersonEvent::DetailsCorrected {
            correction: Correction {
                family_name: Some(short("Exemplar")),
                contact: Some(long("new address")),
                what_matters: Some(long("Seeing grandchildren")),
                carers: None,
                ..Correction::default()
            },
            reason: long("Married"),
        },
        PersonEvent::EmergencyAccessAsserted {
            organisation: code("GP-A81001"),
            reason: long("Unconscious in the emergency department"),
            expires_at: instant(1_750_003_600, 0),
        },
        PersonEvent::ProxyGranted {
            grant: ProxyGrant {
                carer_nhs_number: nhs(NHS_B),
                carer_name: short("Bea Example"),
                scope: vec![ProxyScope::ReadRecord, ProxyScope::Consents],
            },
        },
        PersonEvent::ProxyRevoked {
            carer_nhs_number: nhs(NHS_B),
            reason: long("No longer caring for her"),
        },
    ]
}

fn referral_events() -> Vec<ReferralEvent> {
    use ReferralEvent as E;
    vec![
        E::Submitted {
            referral: NewReferral {
                from_organisation: code("RXH01"),
                to_service: code("LA-123"),
                priority: Priority::Urgent,
                reason: long("Falls at home"),
                replaces: Some(id(99)),
            },
        },
        E::Submitted {
            referral: NewReferral {
                from_organisation: code("RXH01"),
                to_service: code("LA-123"),
                priority: Priority::Stat,
                reason: long("Falls at home"),
                replaces: None,
            },
        },
        E::Received,
        E::Accepted,
        E::Rejected {
            reason: long("Out of area"),
        },
        E::Started,
        E::PutOnHold {
            reason: long("In hospital"),
        },
        E::Resumed,
        E::Completed,
        E::Failed {
            reason: long("No capacity"),
        },
        E::Cancelled {
            reason: long("No longer needed"),
        },
        E::EnteredInError {
            reason: long("Wrong person"),
        },
    ]
}

fn assessment_events() -> Vec<AssessmentEvent> {
    use AssessmentEvent as E;
    vec![
        E::Requested {
            request: AssessmentRequest {
                kind: AssessmentKind::CareActNeeds,
                assessors: vec![code("LA-123"), code("RXH01")],
                referral_id: Some(id(42)),
                due_by: Some(date("2025-07-01")),
            },
        },
        E::Requested {
            request: AssessmentRequest {
                kind: AssessmentKind::Therapy,
                assessors: vec![code("RXH01")],
                referral_id: None,
                due_by: None,
            },
        },
        E::ContributionRecorded {
            organisation: code("RXH01"),
            summary: long("Mobility reduced"),
        },
        E::Completed {
            findings: Findings {
                summary: long("Needs support with meals and washing"),
                outcomes_not_achieved: vec![
                    CareActOutcome::ManagingNutrition,
                    CareActOutcome::PersonalHygiene,
                    CareActOutcome::CaringResponsibilities,
                ],
                wellbeing_impact: Some(long("Isolated")),
                needs_arise_from_impairment_or_illness: true,
                significant_impact_on_wellbeing: true,
            },
        },
        E::Completed {
            findings: Findings {
                summary: long("Managing well"),
                outcomes_not_achieved: vec![],
                wellbeing_impact: None,
                needs_arise_from_impairment_or_illness: false,
                significant_impact_on_wellbeing: false,
            },
        },
        E::EligibilityDetermined {
            eligibility: Eligibility {
                eligible: true,
                reasons: vec!["one".to_owned(), "two".to_owned()],
            },
        },
        E::Cancelled {
            reason: long("Person declined"),
        },
        E::AssessorReplaced {
            replaced: code("CNURSE1"),
            by: code("OT-SERVICE"),
            reason: long("No capacity this month"),
        },
    ]
}

fn care_plan_events() -> Vec<CarePlanEvent> {
    vec![
        CarePlanEvent::Agreed {
            plan_version: 1,
            plan: plan(),
        },
        CarePlanEvent::Revised {
            plan_version: 2,
            plan: PlanContent {
                activities: vec![],
                ..plan()
            },
            reason: long("Reablement finished"),
            changes: vec![
                ActivityChange::End {
                    index: 0,
                    status: ActivityStatus::Completed,
                    reason: long("Goals met"),
                },
                ActivityChange::Add {
                    activity: Activity {
                        description: long("Befriending calls"),
                        responsible_organisation: code("VCS-1"),
                        status: ActivityStatus::Scheduled,
                        status_reason: None,
                    },
                },
                ActivityChange::Update {
                    index: 1,
                    activity: Activity {
                        description: long("Befriending visits"),
                        responsible_organisation: code("VCS-1"),
                        status: ActivityStatus::OnHold,
                        status_reason: Some(long("In hospital")),
                    },
                },
            ],
        },
    ]
}

fn care_team_events() -> Vec<CareTeamEvent> {
    use CareTeamEvent as E;
    vec![
        E::MemberAdded {
            member: member(Some("dr-1")),
            role: CareTeamRole::GeneralPractice,
            since: date("2024-02-29"),
        },
        E::MemberAdded {
            member: member(None),
            role: CareTeamRole::Other,
            since: date("2025-01-01"),
        },
        E::MemberRemoved {
            member: member(None),
            until: date("2025-06-01"),
            reason: long("Moved practice"),
        },
        E::CoordinatorNamed {
            member: member(Some("sw-9")),
        },
        E::CoordinatorUnassigned {
            member: member(None),
        },
    ]
}

fn consent_events() -> Vec<ConsentEvent> {
    vec![
        ConsentEvent::Recorded {
            terms: ConsentTerms {
                decision: ConsentDecision::Permit,
                purpose: Purpose::CareCoordination,
                partners: vec![code("LA-123"), code("GP-A81001")],
                data_classes: vec![DataClass::Demographics, DataClass::Feedback],
                valid_from: date("2025-06-01"),
                valid_until: Some(date("2026-06-01")),
                capacity_assessed: true,
            },
        },
        ConsentEvent::Recorded {
            terms: ConsentTerms {
                decision: ConsentDecision::Deny,
                purpose: Purpose::Research,
                partners: vec![],
                data_classes: vec![],
                valid_from: date("2025-06-01"),
                valid_until: None,
                capacity_assessed: false,
            },
        },
        ConsentEvent::Withdrawn {
            reason: long("Changed mind"),
        },
    ]
}

fn discharge_events() -> Vec<DischargeEvent> {
    use DischargeEvent as E;
    vec![
        E::Admitted {
            site: code("RXH01"),
            ward: Some(short("Ward 7")),
            admitted_at: instant(1_749_000_000, 5),
        },
        E::Admitted {
            site: code("RXH01"),
            ward: None,
            admitted_at: instant(1_749_000_000, 0),
        },
        E::ExpectedDischargeDateSet {
            expected: date("2025-06-20"),
        },
        E::DischargeReady {
            discharge_ready_date: date("2025-06-18"),
            supersedes: None,
        },
        E::DischargeReady {
            discharge_ready_date: date("2025-06-25"),
            supersedes: Some(date("2025-06-18")),
        },
        E::PathwayAssigned {
            pathway: Pathway::P0,
        },
        E::PathwayAssigned {
            pathway: Pathway::P3,
        },
        E::ServiceRequested {
            service: code("HOMECARE-1"),
        },
        E::DischargeAgreed {
            service: code("HOMECARE-1"),
            planned_for: date("2025-06-22"),
        },
        E::ProviderFellThrough {
            reason: long("Provider has no staff"),
        },
        E::Deteriorated {
            reason: long("Chest infection"),
        },
        E::DelayReasonRecorded {
            reason: DelayReason::Pathway1NewCare,
            note: Some(long("Chasing daily")),
        },
        E::DelayReasonRecorded {
            reason: DelayReason::Other,
            note: None,
        },
        E::Discharged {
            discharged_at: instant(1_750_500_000, 999_999_999),
            destination: short("Home"),
            destination_code: Some(
                carewoven_domain::discharge::DischargeDestination::USUAL_RESIDENCE,
            ),
        },
        E::HandoverAccepted {
            organisation: code("LA-123"),
        },
        E::HomeAssessmentCompleted {
            completed_on: date("2025-06-30"),
            outcome: long("Independent with aids"),
        },
        E::Closed,
        E::Died {
            died_at: instant(1_750_600_000, 0),
        },
        E::SelfDischarged {
            left_at: instant(-86_400, 1),
        },
    ]
}

fn meeting_events() -> Vec<MeetingEvent> {
    vec![
        MeetingEvent::Recorded {
            meeting: MeetingRecord {
                held_at: instant(1_750_000_000, 0),
                attendees: vec![code("RXH01"), code("LA-123")],
                decisions: vec![long("Start reablement")],
                actions: vec![MeetingAction {
                    description: long("Order a perching stool"),
                    owner: code("LA-123"),
                    due_by: date("2025-06-20"),
                }],
            },
        },
        MeetingEvent::ActionCompleted {
            action: 1,
            note: Some(long("Delivered")),
        },
        MeetingEvent::ActionCompleted {
            action: 2,
            note: None,
        },
    ]
}

fn feedback_events() -> Vec<FeedbackEvent> {
    let record = |rating| FeedbackRecord {
        source: FeedbackSource::Carer,
        anonymous: true,
        text: long("Kind staff, slow discharge"),
        rating,
    };
    vec![
        FeedbackEvent::Recorded {
            feedback: record(Some(4)),
        },
        FeedbackEvent::Recorded {
            feedback: FeedbackRecord {
                source: FeedbackSource::Person,
                anonymous: false,
                ..record(None)
            },
        },
    ]
}

/// At least one of every event variant, some more than once to cover optional fields.
fn every_event() -> Vec<Event> {
    let mut all = Vec::new();
    all.extend(person_events().into_iter().map(Event::Person));
    all.extend(referral_events().into_iter().map(Event::Referral));
    all.extend(assessment_events().into_iter().map(Event::Assessment));
    all.extend(care_plan_events().into_iter().map(Event::CarePlan));
    all.extend(care_team_events().into_iter().map(Event::CareTeam));
    all.extend(consent_events().into_iter().map(Event::Consent));
    all.extend(discharge_events().into_iter().map(Event::Discharge));
    all.extend(meeting_events().into_iter().map(Event::Meeting));
    all.extend(feedback_events().into_iter().map(Event::Feedback));
    all.extend(flag_events().into_iter().map(Event::Flag));
    all.extend(task_events().into_iter().map(Event::Task));
    all.extend(organisation_events().into_iter().map(Event::Organisation));
    all
}

fn flag_events() -> Vec<FlagEvent> {
    vec![
        FlagEvent::Raised {
            flag: RiskFlag {
                code: RiskFlagCode::Frailty,
                frailty_score: Some(6),
                start: date("2026-03-01"),
                note: Some(long("Moderately frail")),
            },
        },
        FlagEvent::Ended {
            end: date("2026-04-01"),
            reason: long("Reassessed"),
        },
    ]
}

fn task_events() -> Vec<TaskEvent> {
    let member = |org: &str, practitioner: Option<&str>| MemberRef {
        organisation: code(org),
        practitioner: practitioner.map(code),
    };
    let task = |basis| TaskContent {
        description: long("Telephone to check medicines and shopping"),
        owner: member("LA-1", Some("sw-7")),
        due: date("2026-03-08"),
        priority: Priority::Urgent,
        basis,
    };
    let mut events: Vec<TaskEvent> = [
        TaskBasis::Standalone,
        TaskBasis::PlanActivity {
            plan_version: 2,
            activity: 0,
        },
        TaskBasis::MeetingAction {
            meeting_id: uuid::Uuid::from_u128(77),
            action: 2,
        },
        TaskBasis::Handover {
            episode_id: uuid::Uuid::from_u128(78),
        },
        TaskBasis::Cohort {
            cohort_id: uuid::Uuid::from_u128(79),
        },
    ]
    .into_iter()
    .map(|basis| TaskEvent::Created {
        task: task(basis),
        requester: code("GP-A"),
    })
    .collect();
    events.push(TaskEvent::StatusChanged {
        status: TaskStatus::OnHold,
        reason: Some(long("In hospital")),
    });
    events.push(TaskEvent::StatusChanged {
        status: TaskStatus::Accepted,
        reason: None,
    });
    events.push(TaskEvent::Reassigned {
        owner: member("VCS-1", None),
        reason: long("Capacity"),
    });
    events
}

fn organisation_events() -> Vec<OrganisationEvent> {
    vec![
        OrganisationEvent::Registered {
            code: code("RXX"),
            profile: OrganisationProfile {
                name: short("Synthetic Trust"),
                org_type: OrganisationType::NhsTrust,
            },
            services: vec![code("RXX-WARD"), code("RXX-D2A")],
        },
        OrganisationEvent::ServiceAdded {
            service: code("RXX-OPD"),
        },
        OrganisationEvent::AgreementRecorded {
            agreement: SharingAgreement {
                reference: code("DSA-1"),
                purposes: vec![Purpose::DirectCare, Purpose::CareCoordination],
                data_classes: vec![DataClass::Discharge, DataClass::CareTeam],
                valid_from: date("2026-01-01"),
                expires_on: date("2027-01-01"),
            },
        },
        OrganisationEvent::AgreementEnded {
            reference: code("DSA-1"),
            reason: long("superseded by DSA-2"),
        },
    ]
}

#[test]
fn fixtures_cover_every_oneof_case() {
    let names: BTreeSet<&str> = every_event().iter().map(Event::name).collect();
    assert_eq!(names.len(), ONEOF_CASES, "{names:?}");
    let listed: BTreeSet<&str> = carewoven_domain::EVENT_TYPES.into_iter().collect();
    assert_eq!(names, listed, "EVENT_TYPES lists exactly the event types");
}

#[test]
fn every_event_variant_round_trips() {
    for event in every_event() {
        let meta = meta(&event);
        let bytes = encode_event(&meta, &event);
        let decoded = decode_event(&bytes);
        assert_eq!(decoded, Ok((meta, event.clone())), "{}", event.name());
    }
}

#[test]
fn oneof_case_is_named_like_the_event() {
    // The generated oneof case's Debug name is the PascalCase of the proto field name, which
    // is the event's snake_case name.
    for event in every_event() {
        let case = to_envelope(&meta(&event), &event).event.unwrap();
        let debug = format!("{case:?}");
        let pascal: String = debug.split('(').next().unwrap().to_owned();
        let snake: String = pascal
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
                sep.into_iter()
                    .chain(std::iter::once(c.to_ascii_lowercase()))
            })
            .collect();
        assert_eq!(snake, event.name());
    }
}

#[test]
fn envelope_carries_dates_as_iso_strings_and_kind_tokens() {
    let event = Event::Discharge(DischargeEvent::DischargeReady {
        discharge_ready_date: date("2025-06-25"),
        supersedes: None,
    });
    let envelope = to_envelope(&meta(&event), &event);
    assert_eq!(envelope.aggregate_kind, "discharge");
    assert_eq!(envelope.event_id, "00000000-0000-0000-0000-000000000001");
    assert_eq!(
        envelope.occurred_at,
        Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 123_456_789
        })
    );
    assert_eq!(
        envelope.event,
        Some(W::DischargeReady(v1::DischargeReady {
            discharge_ready_date: "2025-06-25".to_owned(),
            supersedes: String::new(),
        }))
    );
}

/// An encoded envelope for a valid event, to be tampered with.
fn envelope() -> v1::EventEnvelope {
    let event = Event::Referral(ReferralEvent::Rejected {
        reason: long("Out of area"),
    });
    to_envelope(&meta(&event), &event)
}

fn decode(envelope: &v1::EventEnvelope) -> Result<(EventMeta, Event), DecodeError> {
    decode_event(&envelope.encode_to_vec())
}

fn assert_malformed(envelope: &v1::EventEnvelope, mentions: &str) {
    match decode(envelope) {
        Err(DecodeError::Malformed(why)) => assert!(why.contains(mentions), "{why}"),
        other => panic!("expected Malformed mentioning {mentions}, got {other:?}"),
    }
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(
        decode_event(&[0xff, 0xff, 0xff]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn empty_oneof_is_an_unknown_event_type() {
    let mut e = envelope();
    e.event = None;
    assert_eq!(decode(&e), Err(DecodeError::UnknownEventType));
    // A newer writer's unknown oneof field is skipped by prost, leaving the oneof empty.
    let mut bytes = e.encode_to_vec();
    prost::encoding::string::encode(999, &"from the future".to_owned(), &mut bytes);
    assert_eq!(decode_event(&bytes), Err(DecodeError::UnknownEventType));
}

#[test]
fn kind_must_match_the_event() {
    let mut e = envelope();
    e.aggregate_kind = "consent".to_owned();
    assert_eq!(decode(&e), Err(DecodeError::KindMismatch));
}

#[test]
fn invalid_envelope_fields_are_malformed() {
    type Tamper = fn(&mut v1::EventEnvelope);
    let cases: Vec<(Tamper, &str)> = vec![
        (|e| e.event_id = "not-a-uuid".to_owned(), "event_id"),
        (|e| e.person_id.clear(), "person_id"),
        (|e| e.aggregate_kind = "planet".to_owned(), "aggregate_kind"),
        (|e| e.organisation = "R X".to_owned(), "organisation"),
        (|e| e.recorded_at = None, "recorded_at"),
        (
            |e| {
                e.occurred_at = Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                })
            },
            "occurred_at",
        ),
        (
            |e| {
                e.occurred_at = Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                })
            },
            "occurred_at",
        ),
    ];
    for (tamper, field) in cases {
        let mut e = envelope();
        tamper(&mut e);
        assert_malformed(&e, field);
    }
}

#[test]
fn stored_payloads_are_revalidated() {
    let mut e = envelope();
    e.event = Some(W::ReferralRejected(v1::ReferralRejected {
        reason: "x".repeat(4001),
    }));
    assert_malformed(&e, "referral_rejected.reason");

    e.aggregate_kind = "discharge".to_owned();
    e.event = Some(W::PathwayAssigned(v1::PathwayAssigned { pathway: 42 }));
    assert_malformed(&e, "unknown value 42");

    e.event = Some(W::DischargeReady(v1::DischargeReady {
        discharge_ready_date: "25/06/2025".to_owned(),
        supersedes: String::new(),
    }));
    assert_malformed(&e, "discharge_ready.discharge_ready_date");

    e.aggregate_kind = "person".to_owned();
    e.event = Some(W::PersonRegistered(v1::PersonRegistered { profile: None }));
    assert_malformed(&e, "person_registered.profile");
}
