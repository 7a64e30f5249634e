use carewoven_domain::assessment::AssessmentCommand;
use carewoven_domain::care_plan::CarePlanCommand;
use carewoven_domain::discharge::{DischargeCommand, Pathway};
use carewoven_domain::feedback::{FeedbackCommand, FeedbackRecord, FeedbackSource};
use carewoven_domain::person::{Carer, Correction, PersonCommand};
use carewoven_domain::referral::{NewReferral, Priority, ReferralCommand};
use carewoven_domain::values::NhsNumber;
use carewoven_domain::{Actor, AggregateKind, Command, DomainError, Existence};
use uuid::Uuid;

use super::{NHS_A, NHS_B, code, date, id, instant, invalid, long, nhs, short};
use crate::convert::{CommandRequest, IdSource, ParsedContext, parse_context};
use crate::v1;
use crate::v1::progress_discharge_request as pd;

/// Every new aggregate gets `NEW_ID`; a person's id is derived from the NHS number.
struct FixedIds;

const NEW_ID: u128 = 0xA11;

impl IdSource for FixedIds {
    fn new_aggregate_id(&self, _kind: carewoven_domain::AggregateKind, _person: Uuid) -> Uuid {
        id(NEW_ID)
    }

    fn person_id_for(&self, nhs: &NhsNumber) -> Uuid {
        Uuid::from_u128(nhs.as_str().parse().expect("ten digits"))
    }

    fn organisation_id_for(&self, code: &carewoven_domain::values::Code) -> Uuid {
        Uuid::from_u128(code.as_str().len() as u128)
    }
}

const PERSON: &str = "00000000-0000-0000-0000-000000000003";
const OTHER: &str = "00000000-0000-0000-0000-000000000009";

fn context() -> Option<v1::CommandContext> {
    Some(v1::CommandContext {
        command_id: "00000000-0000-0000-0000-0000000000c1".to_owned(),
        organisation: "RXH01".to_owned(),
        user: "user-1".to_owned(),
        ..Default::default()
    })
}

fn convert(request: &dyn CommandRequest) -> Result<Command, DomainError> {
    request.to_command(&FixedIds)
}

fn assert_invalid(request: &dyn CommandRequest, field: &str, reason: &str) {
    assert_eq!(convert(request), Err(invalid(field, reason)));
}

fn carer(name: &str) -> v1::Carer {
    v1::Carer {
        name: name.to_owned(),
        relationship: "daughter".to_owned(),
        contact: String::new(),
    }
}

fn profile() -> v1::Profile {
    v1::Profile {
        nhs_number: "999 000 1235".to_owned(),
        given_name: " Ada ".to_owned(),
        family_name: "Example".to_owned(),
        date_of_birth: "1941-03-09".to_owned(),
        contact: "   ".to_owned(),
        what_matters: "The allotment".to_owned(),
        communication_needs: String::new(),
        carers: vec![carer("Ben"), carer("Cara")],
        registered_gp: String::new(),
    }
}

fn register(profile: Option<v1::Profile>) -> v1::RegisterPersonRequest {
    v1::RegisterPersonRequest {
        context: context(),
        profile,
    }
}

fn referral() -> v1::Referral {
    v1::Referral {
        from_organisation: "RXH01".to_owned(),
        to_service: "LA-123".to_owned(),
        priority: v1::Priority::Urgent.into(),
        reason: "Falls at home".to_owned(),
        replaces: String::new(),
    }
}

fn make_referral(referral: v1::Referral) -> v1::MakeReferralRequest {
    v1::MakeReferralRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        referral: Some(referral),
    }
}

fn member() -> Option<v1::MemberRef> {
    Some(v1::MemberRef {
        organisation: "GP-A81001".to_owned(),
        practitioner: String::new(),
    })
}

fn plan() -> Option<v1::PlanContent> {
    Some(v1::PlanContent {
        goals: vec!["Walk to the shop".to_owned()],
        activities: vec![v1::Activity {
            description: "Reablement".to_owned(),
            responsible_organisation: "LA-123".to_owned(),
            ..Default::default()
        }],
        review_date: "2026-01-31".to_owned(),
    })
}

fn timestamp() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: 1_750_000_000,
        nanos: 0,
    })
}

fn progress_discharge(step: Option<pd::Step>) -> v1::ProgressDischargeRequest {
    v1::ProgressDischargeRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        episode_id: OTHER.to_owned(),
        step,
    }
}

fn meeting(due_by: &str) -> v1::RecordMeetingRequest {
    v1::RecordMeetingRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        meeting: Some(v1::MeetingRecord {
            held_at: timestamp(),
            attendees: vec!["RXH01".to_owned()],
            decisions: vec!["Start reablement".to_owned()],
            actions: vec![v1::MeetingAction {
                description: "Order a stool".to_owned(),
                owner: "RXH01".to_owned(),
                due_by: due_by.to_owned(),
            }],
        }),
    }
}

fn terms(data_classes: Vec<i32>) -> v1::RecordConsentRequest {
    v1::RecordConsentRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        terms: Some(v1::ConsentTerms {
            decision: v1::ConsentDecision::Permit.into(),
            purpose: v1::Purpose::DirectCare.into(),
            partners: vec!["LA-123".to_owned()],
            data_classes,
            valid_from: "2025-06-01".to_owned(),
            valid_until: String::new(),
            capacity_assessed: true,
        }),
    }
}

fn progress_referral(action: v1::ReferralAction, reason: &str) -> v1::ProgressReferralRequest {
    v1::ProgressReferralRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        referral_id: OTHER.to_owned(),
        action: action.into(),
        reason: reason.to_owned(),
    }
}

fn feedback(rating: u32) -> v1::RecordFeedbackRequest {
    v1::RecordFeedbackRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        feedback: Some(v1::FeedbackRecord {
            source: v1::FeedbackSource::Carer.into(),
            anonymous: true,
            text: "Kind staff".to_owned(),
            rating,
        }),
    }
}

/// One valid request of every kind in the command service.
fn every_request() -> Vec<Box<dyn CommandRequest>> {
    let s = |v: &str| v.to_owned();
    let ctx = context;
    let person_id = || s(PERSON);
    vec![
        Box::new(register(Some(profile()))),
        Box::new(v1::CorrectPersonDetailsRequest {
            context: ctx(),
            person_id: person_id(),
            correction: Some(v1::Correction {
                given_name: Some(s("Adah")),
                ..Default::default()
            }),
            reason: s("Typo"),
            based_on_version: 1,
        }),
        Box::new(make_referral(referral())),
        Box::new(progress_referral(v1::ReferralAction::Accept, "")),
        Box::new(v1::RequestAssessmentRequest {
            context: ctx(),
            person_id: person_id(),
            request: Some(v1::AssessmentRequest {
                kind: v1::AssessmentKind::CareActNeeds.into(),
                assessors: vec![s("LA-123")],
                referral_id: s(OTHER),
                due_by: s("2025-07-01"),
            }),
        }),
        Box::new(v1::ContributeToAssessmentRequest {
            context: ctx(),
            person_id: person_id(),
            assessment_id: s(OTHER),
            organisation: s("RXH01"),
            summary: s("Mobility reduced"),
        }),
        Box::new(v1::CompleteAssessmentRequest {
            context: ctx(),
            person_id: person_id(),
            assessment_id: s(OTHER),
            findings: Some(v1::Findings {
                summary: s("Needs support"),
                outcomes_not_achieved: vec![1, 2],
                ..Default::default()
            }),
        }),
        Box::new(v1::CancelAssessmentRequest {
            context: ctx(),
            person_id: person_id(),
            assessment_id: s(OTHER),
            reason: s("Declined"),
        }),
        Box::new(v1::AgreeCarePlanRequest {
            context: ctx(),
            person_id: person_id(),
            plan: plan(),
        }),
        Box::new(v1::ReviseCarePlanRequest {
            context: ctx(),
            person_id: person_id(),
            based_on_version: 1,
            plan: plan(),
            reason: s("Reablement finished"),
            activity_changes: vec![v1::ActivityChange {
                change: Some(v1::activity_change::Change::End(v1::ActivityEnd {
                    index: 0,
                    status: v1::ActivityStatus::Completed as i32,
                    reason: s("Goals met"),
                })),
            }],
        }),
        Box::new(v1::AddCareTeamMemberRequest {
            context: ctx(),
            person_id: person_id(),
            member: member(),
            role: v1::CareTeamRole::GeneralPractice.into(),
            since: s("2024-02-29"),
        }),
        Box::new(v1::RemoveCareTeamMemberRequest {
            context: ctx(),
            person_id: person_id(),
            member: member(),
            until: s("2025-06-01"),
            reason: s("Moved"),
        }),
        Box::new(v1::NameCareCoordinatorRequest {
            context: ctx(),
            person_id: person_id(),
            member: member(),
        }),
        Box::new(terms(vec![])),
        Box::new(v1::WithdrawConsentRequest {
            context: ctx(),
            person_id: person_id(),
            consent_id: s(OTHER),
            reason: s("Changed mind"),
        }),
        Box::new(v1::AdmitPersonRequest {
            context: ctx(),
            person_id: person_id(),
            site: s("RXH01"),
            ward: s("Ward 7"),
            admitted_at: timestamp(),
        }),
        Box::new(progress_discharge(Some(pd::Step::Close(
            pd::CloseEpisode {},
        )))),
        Box::new(meeting("2025-06-20")),
        Box::new(v1::CompleteMeetingActionRequest {
            context: ctx(),
            person_id: person_id(),
            meeting_id: s(OTHER),
            action: 1,
            note: String::new(),
        }),
        Box::new(feedback(5)),
        Box::new(v1::GrantProxyRequest {
            context: ctx(),
            person_id: person_id(),
            grant: Some(v1::ProxyGrant {
                carer_nhs_number: s(NHS_B),
                carer_name: s("Bea Example"),
                scope: vec![v1::ProxyScope::ReadRecord.into()],
            }),
        }),
        Box::new(v1::RevokeProxyRequest {
            context: ctx(),
            person_id: person_id(),
            carer_nhs_number: s(NHS_B),
            reason: s("Moved away"),
        }),
    ]
}

#[test]
fn proxy_requests_name_their_fields() {
    let grant = |nhs: &str, name: &str, scope: Vec<i32>| v1::GrantProxyRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        grant: Some(v1::ProxyGrant {
            carer_nhs_number: nhs.to_owned(),
            carer_name: name.to_owned(),
            scope,
        }),
    };
    assert_invalid(
        &grant("9990001236", "Bea", vec![1]),
        "grant.carer_nhs_number",
        "check digit does not match",
    );
    assert_invalid(
        &grant(NHS_B, "", vec![1]),
        "grant.carer_name",
        "is required",
    );
    assert_invalid(
        &grant(NHS_B, "Bea", vec![0]),
        "grant.scope[0]",
        "is required",
    );
    assert_invalid(
        &grant(NHS_B, "Bea", vec![1, 99]),
        "grant.scope[1]",
        "unknown value 99",
    );
    let mut missing = grant(NHS_B, "Bea", vec![1]);
    missing.grant = None;
    assert_invalid(&missing, "grant", "is required");
    // A field `decide` names is given under the request's `grant`.
    assert_eq!(missing.wire_field("scope"), "grant.scope");
    let revoke = v1::RevokeProxyRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        carer_nhs_number: "123".to_owned(),
        reason: "Moved".to_owned(),
    };
    assert_invalid(&revoke, "carer_nhs_number", "must be exactly 10 digits");
}

#[test]
fn every_request_converts_and_addresses_the_right_aggregate() {
    let requests = every_request();
    assert_eq!(requests.len(), 22, "one per rpc of CommandService");
    for request in &requests {
        let command = convert(request.as_ref()).unwrap();
        let target = command.target();
        let expected_id = match (target.kind, target.existence) {
            (AggregateKind::Person, _) => target.person_id,
            (AggregateKind::CarePlan | AggregateKind::CareTeam, _) => id(3),
            (_, Existence::MustNotExist) => id(NEW_ID),
            _ => id(9),
        };
        assert_eq!(target.aggregate_id, expected_id, "{target:?}");
        if target.kind != AggregateKind::Person || target.existence == Existence::MustExist {
            assert_eq!(target.person_id, id(3), "{target:?}");
        }
        assert!(parse_context(request.context()).is_ok());
    }
}

#[test]
fn register_person_derives_the_person_id_and_trims_text() {
    let command = convert(&register(Some(profile()))).unwrap();
    let person_id = FixedIds.person_id_for(&nhs(NHS_A));
    let Command::Person {
        person_id: addressed,
        command:
            PersonCommand::Register {
                person_id: registered,
                profile,
            },
    } = command
    else {
        panic!("not a registration: {command:?}");
    };
    assert_eq!((addressed, registered), (person_id, person_id));
    assert_eq!(profile.nhs_number, nhs(NHS_A));
    assert_eq!(profile.given_name, short("Ada"));
    assert_eq!(profile.date_of_birth, date("1941-03-09"));
    assert_eq!(profile.contact, None, "blank optional text is absent");
    assert_eq!(profile.what_matters, Some(long("The allotment")));
    assert_eq!(profile.communication_needs, None);
    assert_eq!(
        profile.carers[1],
        Carer {
            name: short("Cara"),
            relationship: short("daughter"),
            contact: None,
        }
    );
}

#[test]
fn make_referral_maps_every_field() {
    let mut wire = referral();
    wire.priority = v1::Priority::Asap.into();
    wire.replaces = OTHER.to_owned();
    assert_eq!(
        convert(&make_referral(wire)),
        Ok(Command::Referral {
            person_id: id(3),
            referral_id: id(NEW_ID),
            command: ReferralCommand::Make {
                referral: NewReferral {
                    from_organisation: code("RXH01"),
                    to_service: code("LA-123"),
                    priority: Priority::Asap,
                    reason: long("Falls at home"),
                    replaces: Some(id(9)),
                },
            },
        })
    );
}

#[test]
fn context_is_validated_with_defaults() {
    let parsed = parse_context(context().as_ref()).unwrap();
    let command_id = Uuid::from_u128(0xc1);
    assert_eq!(
        parsed,
        ParsedContext {
            command_id,
            correlation_id: command_id,
            causation_id: command_id,
            actor: Actor {
                organisation: code("RXH01"),
                user: code("user-1"),
            },
            occurred_at: None,
        }
    );

    let mut ctx = context().unwrap();
    ctx.correlation_id = OTHER.to_owned();
    ctx.occurred_at = timestamp();
    let parsed = parse_context(Some(&ctx)).unwrap();
    assert_eq!(parsed.correlation_id, id(9));
    assert_eq!(parsed.causation_id, command_id);
    assert_eq!(parsed.occurred_at, Some(instant(1_750_000_000, 0)));
}

#[test]
fn context_errors_name_the_field() {
    let check = |tamper: fn(&mut v1::CommandContext), field: &str, reason: &str| {
        let mut ctx = context().unwrap();
        tamper(&mut ctx);
        assert_eq!(parse_context(Some(&ctx)), Err(invalid(field, reason)));
    };
    check(
        |c| c.command_id.clear(),
        "context.command_id",
        "is required",
    );
    check(
        |c| c.command_id = "42".to_owned(),
        "context.command_id",
        "is not a valid UUID",
    );
    check(
        |c| c.causation_id = "nope".to_owned(),
        "context.causation_id",
        "is not a valid UUID",
    );
    check(|c| c.user.clear(), "context.user", "is required");
    check(
        |c| c.organisation = "R X".to_owned(),
        "context.organisation",
        "may contain only ASCII letters, digits, '-' and '_'",
    );
}

#[test]
fn missing_context_is_refused_before_the_command() {
    let mut request = register(None);
    request.context = None;
    assert_eq!(
        parse_context(request.context()),
        Err(invalid("context", "is required"))
    );
    assert_eq!(
        request.parse(&FixedIds),
        Err(invalid("context", "is required"))
    );
}

#[test]
fn uuids_are_checked() {
    let mut request = make_referral(referral());
    request.person_id = "123".to_owned();
    assert_invalid(&request, "person_id", "is not a valid UUID");
    request.person_id.clear();
    assert_invalid(&request, "person_id", "is required");

    let mut request = make_referral(referral());
    request.referral.as_mut().unwrap().replaces = "x".to_owned();
    assert_invalid(&request, "referral.replaces", "is not a valid UUID");
}

#[test]
fn enum_values_are_checked() {
    let mut wire = referral();
    wire.priority = 42;
    assert_invalid(
        &make_referral(wire.clone()),
        "referral.priority",
        "unknown value 42",
    );
    wire.priority = 0;
    assert_invalid(&make_referral(wire), "referral.priority", "is required");

    let classes = vec![
        v1::DataClass::Contact.into(),
        v1::DataClass::Meetings.into(),
        77,
    ];
    assert_invalid(&terms(classes), "terms.data_classes[2]", "unknown value 77");
    assert_invalid(&terms(vec![0]), "terms.data_classes[0]", "is required");

    let mut request = progress_referral(v1::ReferralAction::Accept, "");
    request.action = 11;
    assert_invalid(&request, "action", "unknown value 11");
    request.action = 0;
    assert_invalid(&request, "action", "is required");
}

#[test]
fn text_bounds_and_nhs_numbers_are_checked() {
    let mut wire = profile();
    wire.carers[1].name = "x".repeat(201);
    assert_invalid(
        &register(Some(wire)),
        "profile.carers[1].name",
        "is longer than 200 characters",
    );

    let mut wire = profile();
    wire.nhs_number = "9990001234".to_owned();
    assert_invalid(
        &register(Some(wire)),
        "profile.nhs_number",
        "check digit does not match",
    );

    let mut wire = profile();
    wire.carers = (0..51).map(|i| carer(&format!("carer {i}"))).collect();
    assert_invalid(
        &register(Some(wire)),
        "profile.carers",
        "has more than 50 items",
    );

    assert_invalid(&register(None), "profile", "is required");
}

#[test]
fn dates_are_checked() {
    let mut wire = profile();
    wire.date_of_birth = "1941-02-30".to_owned();
    let bad_form = "must be a date in YYYY-MM-DD form";
    assert_invalid(&register(Some(wire)), "profile.date_of_birth", bad_form);

    assert_invalid(&meeting(""), "meeting.actions[0].due_by", "is required");
    assert_invalid(&meeting("2025-6-20"), "meeting.actions[0].due_by", bad_form);

    let step = pd::Step::MarkDischargeReady(pd::MarkDischargeReady {
        discharge_ready_date: "next tuesday".to_owned(),
    });
    assert_invalid(
        &progress_discharge(Some(step)),
        "step.mark_discharge_ready.discharge_ready_date",
        bad_form,
    );
}

#[test]
fn discharge_steps_need_a_step() {
    assert_invalid(&progress_discharge(None), "step", "is required");

    let step = pd::Step::AssignPathway(pd::AssignPathway {
        pathway: v1::Pathway::Pathway0.into(),
    });
    assert_eq!(
        convert(&progress_discharge(Some(step))),
        Ok(Command::Discharge {
            person_id: id(3),
            episode_id: id(9),
            command: DischargeCommand::AssignPathway {
                pathway: Pathway::P0
            },
        })
    );

    let step = pd::Step::Discharge(pd::Discharge {
        discharged_at: None,
        destination: "Home".to_owned(),
        destination_code: "19".into(),
    });
    assert_invalid(
        &progress_discharge(Some(step)),
        "step.discharge.discharged_at",
        "is required",
    );
}

#[test]
fn referral_reasons_are_required_only_where_needed() {
    use v1::ReferralAction as A;
    for action in [
        A::Reject,
        A::Hold,
        A::Fail,
        A::Cancel,
        A::MarkEnteredInError,
    ] {
        assert_invalid(&progress_referral(action, "  "), "reason", "is required");
    }
    let command = |action, reason| match convert(&progress_referral(action, reason)) {
        Ok(Command::Referral { command, .. }) => command,
        other => panic!("{other:?}"),
    };
    assert_eq!(command(A::Accept, "ignored"), ReferralCommand::Accept);
    assert_eq!(
        command(A::Hold, "In hospital"),
        ReferralCommand::Hold {
            reason: long("In hospital")
        }
    );
}

#[test]
fn correction_carers_absent_means_no_change() {
    let request = |carers| v1::CorrectPersonDetailsRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        correction: Some(v1::Correction {
            carers,
            ..Default::default()
        }),
        reason: "Update".to_owned(),
        based_on_version: 1,
    };
    let correction = |carers| match convert(&request(carers)) {
        Ok(Command::Person {
            command: PersonCommand::Correct { correction, .. },
            ..
        }) => correction,
        other => panic!("{other:?}"),
    };
    assert_eq!(correction(None), Correction::default());
    assert_eq!(
        correction(Some(v1::CarerList { carers: vec![] })).carers,
        Some(vec![])
    );
    assert_invalid(
        &request(Some(v1::CarerList {
            carers: vec![carer("")],
        })),
        "correction.carers.carers[0].name",
        "is required",
    );

    let mut bad = request(None);
    bad.correction = Some(v1::Correction {
        given_name: Some(String::new()),
        ..Default::default()
    });
    assert_invalid(&bad, "correction.given_name", "is required");
}

#[test]
fn feedback_rating_zero_means_none() {
    let record = |rating| match convert(&feedback(rating)) {
        Ok(Command::Feedback {
            command: FeedbackCommand::Record { feedback },
            ..
        }) => feedback,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        record(0),
        FeedbackRecord {
            source: FeedbackSource::Carer,
            anonymous: true,
            text: long("Kind staff"),
            rating: None,
        }
    );
    assert_eq!(record(3).rating, Some(3));
    assert_invalid(&feedback(6), "feedback.rating", "must be between 1 and 5");
}

#[test]
fn missing_sub_messages_are_required() {
    let agree = v1::AgreeCarePlanRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        plan: None,
    };
    assert_invalid(&agree, "plan", "is required");
    let complete = v1::CompleteAssessmentRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        assessment_id: OTHER.to_owned(),
        findings: None,
    };
    assert_invalid(&complete, "findings", "is required");
    let mut record = meeting("2025-06-20");
    record.meeting.as_mut().unwrap().held_at = None;
    assert_invalid(&record, "meeting.held_at", "is required");
}

#[test]
fn care_plan_addresses_the_person() {
    let agree = v1::AgreeCarePlanRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        plan: plan(),
    };
    let Ok(Command::CarePlan { person_id, command }) = convert(&agree) else {
        panic!("not a care plan command");
    };
    assert_eq!(person_id, id(3));
    let CarePlanCommand::Agree { plan } = command else {
        panic!("not an agreement");
    };
    assert_eq!(plan.review_date, date("2026-01-31"));
    assert_eq!(plan.goals, vec![long("Walk to the shop")]);

    let mut request = v1::RequestAssessmentRequest {
        context: context(),
        person_id: PERSON.to_owned(),
        request: None,
    };
    assert_invalid(&request, "request", "is required");
    request.request = Some(v1::AssessmentRequest {
        kind: v1::AssessmentKind::Carers.into(),
        assessors: vec!["LA-123".to_owned()],
        referral_id: String::new(),
        due_by: String::new(),
    });
    let Ok(Command::Assessment {
        command: AssessmentCommand::Request { request },
        ..
    }) = convert(&request)
    else {
        panic!("not an assessment request");
    };
    assert_eq!((request.referral_id, request.due_by), (None, None));
}
