//! End-to-end tests of the write side: real nats-server, real gRPC over TCP. Every call is
//! authenticated (a bearer token of the organisation the context names) and made by an
//! organisation with a role in what it changes; the registry is set up by `Stack::start`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use carewoven_domain::AggregateKind;
use carewoven_eventlog::subjects;
use carewoven_proto::v1::{
    self, progress_discharge_request as pd, progress_discharge_request::Step,
};
use carewoven_testkit::*;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

/// Assert a refusal: its code, the field named in its BadRequest details (if given), and that
/// the stream's message count did not change.
async fn assert_refused<T: std::fmt::Debug>(
    stack: &Stack,
    before: u64,
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    field: Option<&str>,
) {
    let status = result.expect_err("the command should be refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    if let Some(field) = field {
        let details = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
        let fields: Vec<&str> = details
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, vec![field], "{status:?}");
    }
    assert_eq!(
        stack.count().await,
        before,
        "a refused command appended something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pathway_1_journey_becomes_events_filterable_by_subject() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 1).await.unwrap();
    let referral = make_referral(&mut c, &person).await.unwrap();
    for (action, org) in [
        (v1::ReferralAction::Receive, "ASC-D2A"),
        (v1::ReferralAction::Accept, "ASC-D2A"),
    ] {
        c.progress_referral(signed(referral_action(&person, &referral, action, org)))
            .await
            .unwrap();
    }
    let episode = episode_ready(&mut c, &person).await.unwrap();
    // The hospital managing the episode takes every step but the last: the reablement
    // provider accepts the handover for itself.
    let steps = [
        (
            "HOSP-A",
            Step::AssignPathway(pd::AssignPathway {
                pathway: v1::Pathway::Pathway1 as i32,
            }),
        ),
        (
            "HOSP-A",
            Step::RequestService(pd::RequestService {
                service: "ASC-REABLE".into(),
            }),
        ),
        (
            "HOSP-A",
            Step::RecordDelayReason(pd::RecordDelayReason {
                reason: v1::DelayReason::AwaitingHomeCare as i32,
                note: String::new(),
            }),
        ),
        (
            "HOSP-A",
            Step::AgreeDischarge(pd::AgreeDischarge {
                service: "ASC-REABLE".into(),
                planned_for: date_days_ahead(0),
            }),
        ),
        (
            "HOSP-A",
            Step::Discharge(pd::Discharge {
                discharged_at: ts_hours_ago(1),
                destination: "Home".into(),
                destination_code: "19".into(),
            }),
        ),
        (
            "ASC-REABLE",
            Step::AcceptHandover(pd::AcceptHandover {
                organisation: "ASC-REABLE".into(),
            }),
        ),
    ];
    let mut last = None;
    for (org, step) in steps {
        last = Some(
            c.progress_discharge(signed(discharge_step_by(org, &person, &episode, step)))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let last = last.unwrap();
    assert_eq!(last.event_types, vec!["handover_accepted"]);
    assert_eq!(last.last_version, 9, "admit, expected date, ready, 6 steps");

    let person_id: Uuid = person.parse().unwrap();
    let episode_id: Uuid = episode.parse().unwrap();
    // By aggregate: versions 1..=9, contiguous, with a full envelope.
    let history = stack
        .log
        .load(person_id, AggregateKind::DischargeEpisode, episode_id)
        .await
        .unwrap();
    let versions: Vec<u64> = history.recorded().map(|e| e.meta.version).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>());
    for e in history.recorded() {
        assert_eq!(e.meta.person_id, person_id);
        assert_eq!(e.meta.aggregate_id, episode_id);
        assert_eq!(e.meta.schema_version, carewoven_domain::SCHEMA_VERSION);
        assert!(
            e.meta.recorded_at >= e.meta.occurred_at
                || e.meta.occurred_at > e.meta.recorded_at - chrono::Duration::minutes(5)
        );
    }
    // By person: everything about them (person 1 + referral 3 + episode 9).
    let all = stack
        .log
        .read_filtered(&subjects::person(person_id), 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(all.events.len(), 13);
    // By kind and by event type.
    let referrals = stack
        .log
        .read_filtered(&subjects::kind(AggregateKind::Referral), 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(referrals.events.len(), 3);
    let handovers = stack
        .log
        .read_filtered(&subjects::event_type("handover_accepted"), 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(handovers.events.len(), 1);
    assert_eq!(handovers.last_sequence, last.log_position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_right_code_and_nothing_is_appended() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 2).await.unwrap();
    let referral = make_referral(&mut c, &person).await.unwrap();
    // The admitting hospital joins the care team and puts adult social care on it, which
    // agrees the plan.
    admit(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    add_member(&mut c, &person, "HOSP-A", "ASC").await.unwrap();
    c.agree_care_plan(signed(v1::AgreeCarePlanRequest {
        context: ctx("ASC"),
        person_id: person.clone(),
        plan: Some(v1::PlanContent {
            goals: vec!["Get back to my allotment".into()],
            activities: vec![],
            review_date: date_days_ahead(30),
        }),
    }))
    .await
    .unwrap();
    let before = stack.count().await;

    // Missing context (the token still says who is calling).
    let mut req = register_request(3);
    req.context = None;
    assert_refused(
        &stack,
        before,
        c.register_person(as_org("HOSP-A", req)).await,
        Code::InvalidArgument,
        Some("context"),
    )
    .await;
    // Bad command id.
    let mut req = register_request(3);
    req.context.as_mut().unwrap().command_id = "not-a-uuid".into();
    assert_refused(
        &stack,
        before,
        c.register_person(signed(req)).await,
        Code::InvalidArgument,
        Some("context.command_id"),
    )
    .await;
    // Bad NHS check digit.
    let mut req = register_request(3);
    let nhs = req.profile.as_ref().unwrap().nhs_number.clone();
    let wrong = format!("{}{}", &nhs[..9], (nhs.as_bytes()[9] - b'0' + 1) % 10);
    req.profile.as_mut().unwrap().nhs_number = wrong;
    assert_refused(
        &stack,
        before,
        c.register_person(signed(req)).await,
        Code::InvalidArgument,
        Some("profile.nhs_number"),
    )
    .await;
    // Date of birth in the future.
    let mut req = register_request(3);
    req.profile.as_mut().unwrap().date_of_birth = date_days_ahead(3);
    assert_refused(
        &stack,
        before,
        c.register_person(signed(req)).await,
        Code::InvalidArgument,
        Some("profile.date_of_birth"),
    )
    .await;
    // Over-long text.
    let mut req = register_request(3);
    req.profile.as_mut().unwrap().given_name = "x".repeat(201);
    assert_refused(
        &stack,
        before,
        c.register_person(signed(req)).await,
        Code::InvalidArgument,
        Some("profile.given_name"),
    )
    .await;
    // The same person registered twice.
    assert_refused(
        &stack,
        before,
        c.register_person(signed(register_request(2))).await,
        Code::AlreadyExists,
        None,
    )
    .await;
    // Unknown enum value.
    let mut req = referral_action(&person, &referral, v1::ReferralAction::Receive, "ASC-D2A");
    req.action = 42;
    assert_refused(
        &stack,
        before,
        c.progress_referral(signed(req)).await,
        Code::InvalidArgument,
        Some("action"),
    )
    .await;
    // Bad UUID.
    let req = referral_action(&person, "1234", v1::ReferralAction::Receive, "ASC-D2A");
    assert_refused(
        &stack,
        before,
        c.progress_referral(signed(req)).await,
        Code::InvalidArgument,
        Some("referral_id"),
    )
    .await;
    // An aggregate that does not exist, and a person that does not exist.
    let req = referral_action(
        &person,
        &Uuid::now_v7().to_string(),
        v1::ReferralAction::Receive,
        "ASC-D2A",
    );
    assert_refused(
        &stack,
        before,
        c.progress_referral(signed(req)).await,
        Code::NotFound,
        None,
    )
    .await;
    let status = c
        .make_referral(signed(v1::MakeReferralRequest {
            context: ctx("HOSP-A"),
            person_id: Uuid::now_v7().to_string(),
            referral: Some(v1::Referral {
                from_organisation: "HOSP-A".into(),
                to_service: "ASC".into(),
                priority: v1::Priority::Routine as i32,
                reason: "r".into(),
                replaces: String::new(),
            }),
        }))
        .await;
    assert_refused(&stack, before, status, Code::NotFound, None).await;
    // Out of life-cycle order: accept before receive.
    let req = referral_action(&person, &referral, v1::ReferralAction::Accept, "ASC-D2A");
    let result = c.progress_referral(signed(req)).await;
    let status = result.as_ref().map(|_| ()).unwrap_err().clone();
    assert_refused(&stack, before, result, Code::FailedPrecondition, None).await;
    let precondition = status.get_details_precondition_failure().unwrap();
    assert_eq!(precondition.violations[0].r#type, "referral.lifecycle");
    // A care-plan revision based on an out-of-date version.
    let req = v1::ReviseCarePlanRequest {
        context: ctx("ASC"),
        person_id: person.clone(),
        based_on_version: 7,
        plan: Some(v1::PlanContent {
            goals: vec!["Walk to the shop".into()],
            activities: vec![],
            review_date: date_days_ahead(30),
        }),
        reason: "review".into(),
        activity_changes: vec![],
    };
    assert_refused(
        &stack,
        before,
        c.revise_care_plan(signed(req)).await,
        Code::Aborted,
        None,
    )
    .await;
    // A decide-time refusal names the request's own field path: a future Discharge Ready Date.
    let episode = episode_ready(&mut c, &person).await.unwrap();
    c.progress_discharge(signed(discharge_step(
        &person,
        &episode,
        Step::RecordDeterioration(pd::RecordDeterioration {
            reason: "Deteriorated".into(),
        }),
    )))
    .await
    .unwrap();
    let before = stack.count().await;
    let req = discharge_step(
        &person,
        &episode,
        Step::MarkDischargeReady(pd::MarkDischargeReady {
            discharge_ready_date: date_days_ahead(2),
        }),
    );
    assert_refused(
        &stack,
        before,
        c.progress_discharge(signed(req)).await,
        Code::InvalidArgument,
        Some("step.mark_discharge_ready.discharge_ready_date"),
    )
    .await;
    // Correcting an NHS number to one that belongs to another registered person.
    let other_nhs = register_request(2).profile.unwrap().nhs_number;
    // The registered GP practice corrects the NHS number of someone registered with it.
    let other = register_with_gp(&mut c, 12, "GP-A").await.unwrap();
    let before = stack.count().await;
    let req = v1::CorrectPersonDetailsRequest {
        context: ctx("GP-A"),
        person_id: other,
        correction: Some(v1::Correction {
            nhs_number: Some(other_nhs),
            ..Default::default()
        }),
        reason: "Typo at registration".into(),
        based_on_version: 1,
    };
    assert_refused(
        &stack,
        before,
        c.correct_person_details(signed(req)).await,
        Code::AlreadyExists,
        None,
    )
    .await;
    // An empty oneof.
    let req = v1::ProgressDischargeRequest {
        context: ctx("HOSP-A"),
        person_id: person.clone(),
        episode_id: Uuid::now_v7().to_string(),
        step: None,
    };
    assert_refused(
        &stack,
        before,
        c.progress_discharge(signed(req)).await,
        Code::InvalidArgument,
        Some("step"),
    )
    .await;
    // National codes: a destination code off UK Core DischargeDestinationEngland, and the
    // legacy OTHER delay reason (no national equivalent), are refused naming the field.
    let ready = episode_ready(&mut c, &person).await.unwrap();
    c.progress_discharge(signed(discharge_step(
        &person,
        &ready,
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway0.into(),
        }),
    )))
    .await
    .unwrap();
    let before = stack.count().await;
    let req = discharge_step(
        &person,
        &ready,
        Step::RecordDelayReason(pd::RecordDelayReason {
            reason: v1::DelayReason::Other.into(),
            note: String::new(),
        }),
    );
    assert_refused(
        &stack,
        before,
        c.progress_discharge(signed(req)).await,
        Code::InvalidArgument,
        Some("step.record_delay_reason.reason"),
    )
    .await;
    let leave = |code: &str| {
        discharge_step(
            &person,
            &ready,
            Step::Discharge(pd::Discharge {
                discharged_at: ts_hours_ago(1),
                destination: "Home".into(),
                destination_code: code.into(),
            }),
        )
    };
    for bad in ["20", "home", "019"] {
        assert_refused(
            &stack,
            before,
            c.progress_discharge(signed(leave(bad))).await,
            Code::InvalidArgument,
            Some("step.discharge.destination_code"),
        )
        .await;
    }
    c.progress_discharge(signed(leave("19"))).await.unwrap();
    assert_eq!(stack.count().await, before + 1);
    let before = stack.count().await;
    // An oversized message is refused before any work is done.
    let mut req = register_request(4);
    req.profile.as_mut().unwrap().what_matters = "x".repeat(300 * 1024);
    let status = c.register_person(signed(req)).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert_eq!(stack.count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_commands_on_one_aggregate_exactly_one_is_appended_per_version() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 5).await.unwrap();
    let episode = episode_ready(&mut c, &person).await.unwrap();
    // A second instance on the same NATS: nothing that decides lives in one process.
    let other = start_commands(stack.config()).await.unwrap();
    let c2 = other.client();
    let base = stack.count().await;

    let requests: Vec<_> = (0..16)
        .map(|_| {
            discharge_step(
                &person,
                &episode,
                Step::RecordDelayReason(pd::RecordDelayReason {
                    reason: v1::DelayReason::AwaitingHomeCare as i32,
                    note: String::new(),
                }),
            )
        })
        .collect();
    let calls = requests.iter().enumerate().map(|(i, req)| {
        let mut client = if i % 2 == 0 { c.clone() } else { c2.clone() };
        let req = req.clone();
        async move { client.progress_discharge(signed(req)).await }
    });
    let results = futures::future::join_all(calls).await;
    let mut accepted = 0;
    let mut aborted = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(_) => accepted += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::Aborted, "{s:?}");
                aborted.push(i);
            }
        }
    }
    assert!(accepted >= 1);
    assert_eq!(stack.count().await, base + accepted, "one event each");
    // The losers retry with the same command id and eventually all land, exactly once.
    for i in aborted {
        let mut client = c.clone();
        let req = requests[i].clone();
        eventually(
            "a retried command to be accepted",
            Duration::from_secs(20),
            || {
                let mut client = client.clone();
                let req = req.clone();
                async move { client.progress_discharge(signed(req)).await.is_ok() }
            },
        )
        .await
        .unwrap();
        client
            .progress_discharge(signed(requests[i].clone()))
            .await
            .unwrap();
    }
    assert_eq!(stack.count().await, base + 16);
    let history = stack
        .log
        .load(
            person.parse().unwrap(),
            AggregateKind::DischargeEpisode,
            episode.parse().unwrap(),
        )
        .await
        .unwrap();
    let versions: Vec<u64> = history.recorded().map(|e| e.meta.version).collect();
    assert_eq!(
        versions,
        (1..=19).collect::<Vec<_>>(),
        "no version taken twice, none skipped"
    );
    other.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_appends_nothing_new_even_after_restarts() {
    let mut stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 6).await.unwrap();
    let referral = make_referral(&mut c, &person).await.unwrap();
    let req = referral_action(&person, &referral, v1::ReferralAction::Receive, "ASC-D2A");

    // Eight copies in flight at once, as a client retrying after lost replies would send.
    let before = stack.count().await;
    let calls = (0..8).map(|_| {
        let mut client = c.clone();
        let req = req.clone();
        async move {
            client
                .progress_referral(signed(req))
                .await
                .unwrap()
                .into_inner()
        }
    });
    let replies = futures::future::join_all(calls).await;
    assert_eq!(replies.iter().filter(|r| !r.duplicate).count(), 1);
    let original = replies.iter().find(|r| !r.duplicate).unwrap().clone();
    for r in &replies {
        assert_eq!(r.event_ids, original.event_ids);
        assert_eq!(r.log_position, original.log_position);
    }
    assert_eq!(stack.count().await, before + 1);

    // The same id with different content is refused, naming the field.
    let mut other = req.clone();
    other.action = v1::ReferralAction::Reject as i32;
    assert_refused(
        &stack,
        before + 1,
        c.progress_referral(signed(other)).await,
        Code::InvalidArgument,
        Some("context.command_id"),
    )
    .await;

    // After the service restarts...
    let fresh = start_commands(stack.config()).await.unwrap();
    let old = std::mem::replace(&mut stack.service, fresh);
    old.stop().await.unwrap();
    let mut c = stack.service.client();
    let again = c
        .progress_referral(signed(req.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.event_ids, original.event_ids);

    // ...and after NATS itself is killed and restarted on the same store. The command is
    // recognised by its own event in the log, so the broker's duplicate window plays no part.
    stack.nats.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let replayed = loop {
        match c.progress_referral(signed(req.clone())).await {
            Ok(r) => break r.into_inner(),
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                assert!(
                    Instant::now() < deadline,
                    "the service did not reach NATS again"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(replayed.duplicate);
    assert_eq!(replayed.event_ids, original.event_ids);
    assert_eq!(stack.count().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_creating_command_returns_the_aggregate_it_created() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 10).await.unwrap();
    let make = v1::MakeReferralRequest {
        context: ctx("HOSP-A"),
        person_id: person.clone(),
        referral: Some(v1::Referral {
            from_organisation: "HOSP-A".into(),
            to_service: "ASC-D2A".into(),
            priority: v1::Priority::Routine as i32,
            reason: "Support at home".into(),
            replaces: String::new(),
        }),
    };
    let first = c
        .make_referral(signed(make.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    let before = stack.count().await;
    // The referral moves on; a late retry of its creation still gets the original answer.
    c.progress_referral(signed(referral_action(
        &person,
        &first.aggregate_id,
        v1::ReferralAction::Receive,
        "ASC-D2A",
    )))
    .await
    .unwrap();
    let again = c
        .make_referral(signed(make.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.aggregate_id, first.aggregate_id);
    assert_eq!(again.event_ids, first.event_ids);
    assert_eq!(again.log_position, first.log_position);
    assert_eq!(
        stack.count().await,
        before + 1,
        "only the receive was appended"
    );
    // Registering: a retry is a duplicate; the same person under a new command id is refused.
    let register = register_request(11);
    let original = c
        .register_person(signed(register.clone()))
        .await
        .unwrap()
        .into_inner();
    let retried = c
        .register_person(signed(register))
        .await
        .unwrap()
        .into_inner();
    assert!(retried.duplicate);
    assert_eq!(retried.event_ids, original.event_ids);
    let before = stack.count().await;
    assert_refused(
        &stack,
        before,
        c.register_person(signed(register_request(11))).await,
        Code::AlreadyExists,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_several_events_appends_them_atomically() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 7).await.unwrap();
    // The hospital refers the person to adult social care, which puts itself and community
    // nursing on the care team and asks for a joint assessment.
    refer(&mut c, &person, "HOSP-A", "ASC").await.unwrap();
    add_member(&mut c, &person, "ASC", "ASC").await.unwrap();
    add_member(&mut c, &person, "ASC", "COMM").await.unwrap();
    let assessment = c
        .request_assessment(signed(v1::RequestAssessmentRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            request: Some(v1::AssessmentRequest {
                kind: v1::AssessmentKind::CareActNeeds as i32,
                assessors: vec!["ASC".into(), "COMM".into()],
                referral_id: String::new(),
                due_by: String::new(),
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .aggregate_id;
    let complete = v1::CompleteAssessmentRequest {
        context: ctx("ASC"),
        person_id: person.clone(),
        assessment_id: assessment.clone(),
        findings: Some(v1::Findings {
            summary: "Needs help with meals and washing".into(),
            outcomes_not_achieved: vec![
                v1::CareActOutcome::ManagingNutrition as i32,
                v1::CareActOutcome::PersonalHygiene as i32,
            ],
            wellbeing_impact: "Significant".into(),
            needs_arise_from_impairment_or_illness: true,
            significant_impact_on_wellbeing: true,
        }),
    };
    // A joint assessment cannot complete before every assessor contributed.
    let before = stack.count().await;
    assert_refused(
        &stack,
        before,
        c.complete_assessment(signed(complete.clone())).await,
        Code::FailedPrecondition,
        None,
    )
    .await;
    for org in ["ASC", "COMM"] {
        c.contribute_to_assessment(signed(v1::ContributeToAssessmentRequest {
            context: ctx(org),
            person_id: person.clone(),
            assessment_id: assessment.clone(),
            organisation: org.into(),
            summary: "Contribution".into(),
        }))
        .await
        .unwrap();
    }
    let before = stack.count().await;
    let reply = c
        .complete_assessment(signed(complete))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.event_types,
        vec!["assessment_completed", "eligibility_determined"]
    );
    assert_eq!(
        stack.count().await,
        before + 2,
        "two events, in one atomic batch"
    );
    let history = stack
        .log
        .load(
            person.parse().unwrap(),
            AggregateKind::Assessment,
            assessment.parse().unwrap(),
        )
        .await
        .unwrap();
    let tail: Vec<u64> = history
        .events
        .iter()
        .rev()
        .take(2)
        .map(|e| e.recorded.sequence)
        .collect();
    assert_eq!(
        tail,
        vec![reply.log_position, reply.log_position - 1],
        "stored contiguously"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_commands_fail_fast_and_the_service_recovers() {
    let mut stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 8).await.unwrap();
    stack.nats.kill();
    let started = Instant::now();
    let status = make_referral(&mut c, &person).await.unwrap_err();
    let status = status.downcast::<tonic::Status>().unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the deadline"
    );
    stack.nats.restart().unwrap();
    eventually("commands to succeed again", Duration::from_secs(30), || {
        let mut c = c.clone();
        let person = person.clone();
        async move { make_referral(&mut c, &person).await.is_ok() }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_commands() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 9).await.unwrap();
    let before = stack.count().await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut client = c.clone();
            let person = person.clone();
            tokio::spawn(async move { make_referral(&mut client, &person).await })
        })
        .collect();
    // Stop once the first has landed, while the rest are in flight; `stop` returns only
    // when `run` has returned.
    eventually(
        "the first command to land",
        Duration::from_secs(20),
        || async { stack.count().await > before },
    )
    .await
    .unwrap();
    let Stack { service, nats, .. } = stack;
    service.stop().await.unwrap();
    let mut ok = 0u64;
    for call in calls {
        // A request the server never started is refused (GOAWAY or UNAVAILABLE); the count
        // below proves none was cut off half-way.
        if call.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert!(ok >= 1);
    let log = carewoven_eventlog::EventLog::open(
        async_nats::connect(nats.url()).await.unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        log.message_count().await.unwrap(),
        before + ok,
        "every accepted command is in the log"
    );
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurred_at_is_neither_in_the_future_nor_before_1900() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let now = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| {
        let mut request = register_request(5);
        request.context.as_mut().unwrap().occurred_at = Some(timestamp(t));
        request
    };
    let before = stack.count().await;
    // Each refused as INVALID_ARGUMENT naming the field, with nothing appended.
    for (when, reason) in [
        (now + chrono::Duration::hours(1), "cannot be in the future"),
        (
            now + chrono::Duration::days(365 * 900),
            "cannot be in the future",
        ),
        (
            "1899-12-31T23:59:59Z".parse().unwrap(),
            "cannot be before 1900-01-01",
        ),
        (
            "0001-01-01T00:00:00Z".parse().unwrap(),
            "cannot be before 1900-01-01",
        ),
    ] {
        let result = c.register_person(signed(at(when))).await;
        if let Err(status) = &result {
            let violations = &status.get_details_bad_request().unwrap().field_violations;
            assert_eq!(violations[0].description, reason, "{when}: {status:?}");
        }
        assert_refused(
            &stack,
            before,
            result,
            Code::InvalidArgument,
            Some("context.occurred_at"),
        )
        .await;
    }
    // Within the allowed clock skew, and in the past: accepted and stored as given.
    let skewed = now + chrono::Duration::minutes(2);
    c.register_person(signed(at(skewed))).await.unwrap();
    let past = now - chrono::Duration::days(2);
    let mut request = register_request(6);
    request.context.as_mut().unwrap().occurred_at = Some(timestamp(past));
    let reply = c
        .register_person(signed(request))
        .await
        .unwrap()
        .into_inner();
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let stored = js
        .get_stream("CAREWOVEN")
        .await
        .unwrap()
        .get_raw_message(reply.log_position)
        .await
        .unwrap();
    let event = carewoven_eventlog::decode(reply.log_position, &stored.payload).unwrap();
    assert_eq!(event.meta.occurred_at.timestamp(), past.timestamp());
    assert_eq!(stack.count().await, before + 2);
    stack.service.stop().await.unwrap();
}

/// Every service says NOT_SERVING as soon as its shutdown begins (before it stops
/// accepting), and stops once the calls in flight have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_not_serving_once_shutdown_begins() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Services {
        stack,
        views,
        gateway,
        ..
    } = Services::start().await.unwrap();
    for (running, name) in [
        (gateway, "carewoven.v1.FeedService"),
        (views, "carewoven.v1.QueryService"),
        (stack.service, "carewoven.v1.CommandService"),
    ] {
        // The API and the server as a whole ("") say the same.
        let mut watches = Vec::new();
        for service in [name, ""] {
            let mut updates = HealthClient::new(running.channel())
                .watch(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            let first = updates.message().await.unwrap().unwrap();
            assert_eq!(
                first.status,
                ServingStatus::Serving as i32,
                "{name} {service:?}"
            );
            watches.push((service, updates));
        }
        let stopping = tokio::spawn(running.stop());
        for (service, updates) in &mut watches {
            let next = tokio::time::timeout(Duration::from_secs(30), updates.message())
                .await
                .unwrap_or_else(|_| panic!("{name} never said it was shutting down"))
                .unwrap()
                .unwrap();
            assert_eq!(
                next.status,
                ServingStatus::NotServing as i32,
                "{name} {service:?}"
            );
        }
        // The watches are calls in flight: the service stops once they end.
        drop(watches);
        tokio::time::timeout(Duration::from_secs(30), stopping)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop"))
            .unwrap()
            .unwrap();
    }
}
