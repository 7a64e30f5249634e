//! Authentication and authorisation of the command API, end to end: real nats-server, real
//! gRPC over TCP. A call without a valid bearer token is UNAUTHENTICATED; an authenticated
//! organisation may only do what its role in the aggregate allows (PERMISSION_DENIED
//! otherwise). Every refusal appends nothing to the event log, says why in a
//! `google.rpc.ErrorInfo` reason, names nothing personal, and is recorded in the audit stream
//! (`CW_AUDIT`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carewoven_access::grpc::with_token;
use carewoven_access::token::{AUDIENCE, Claims, Issuer, testing};
use carewoven_governance::Role;
use carewoven_proto::v1;
use carewoven_testkit::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Assert a refusal: its code, its `ErrorInfo` reason, and that the event log did not grow.
async fn assert_refused<T: std::fmt::Debug>(
    stack: &Stack,
    before: u64,
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = result.expect_err("the call should be refused");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "carewoven", "{status:?}");
    assert_eq!(
        stack.count().await,
        before,
        "a refused call appended something"
    );
    status
}

/// The refusal names nothing about the person: not their id (`person`, empty when there is
/// none yet), NHS number, name or story (of `register_request(n)`), nor the referral's reason.
fn assert_impersonal(status: &Status, person: &str, n: u32) {
    let profile = register_request(n).profile.unwrap();
    let mut said = status.message().to_owned();
    for detail in status.get_error_details_vec() {
        said.push_str(&format!("{detail:?}"));
    }
    for personal in [
        person,
        profile.nhs_number.as_str(),
        profile.given_name.as_str(),
        profile.family_name.as_str(),
        profile.what_matters.as_str(),
        "Needs support at home",
    ] {
        assert!(
            personal.is_empty() || !said.contains(personal),
            "the refusal names something personal: {status:?}"
        );
    }
}

/// The one refusal audited on `subject` since `seen` records, checked against `reason`.
async fn assert_audited(
    stack: &Stack,
    subject: &str,
    seen: usize,
    reason: &str,
    rpc: &str,
) -> v1::AuditEvent {
    let records = stack.audit(subject).await.unwrap();
    assert_eq!(
        records.len(),
        seen + 1,
        "one audit record more on {subject}: {records:?}"
    );
    let (_, record) = records.last().unwrap().clone();
    assert_eq!(
        record.outcome,
        v1::AuditOutcome::Refused as i32,
        "{record:?}"
    );
    assert_eq!(record.action, v1::AuditAction::Command as i32, "{record:?}");
    assert_eq!(record.reason, reason, "{record:?}");
    assert_eq!(record.detail, rpc, "{record:?}");
    record
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn revise_plan(person: &str, org: &str, based_on_version: u32) -> v1::ReviseCarePlanRequest {
    v1::ReviseCarePlanRequest {
        context: ctx(org),
        person_id: person.into(),
        based_on_version,
        plan: Some(v1::PlanContent {
            goals: vec!["Walk to the shop".into()],
            activities: vec![],
            review_date: date_days_ahead(30),
        }),
        reason: "review".into(),
        activity_changes: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_valid_token_is_unauthenticated_appends_nothing_and_is_audited() {
    let mut stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let subject = "cw.audit.none.unauthenticated.command";
    let request = register_request(20);
    let before = stack.count().await;

    // No token at all.
    let status = assert_refused(
        &stack,
        before,
        c.register_person(request.clone()).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    )
    .await;
    assert_impersonal(&status, "", 20);

    // Forged: the payload of a governance token for HOSP-A under the signature of HOSP-A's
    // plain token.
    let genuine = token("HOSP-A");
    let wanted = token_with_roles("HOSP-A", &[Role::Governance]);
    let genuine: Vec<&str> = genuine.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        genuine[0],
        wanted.split('.').nth(1).unwrap(),
        genuine[2]
    );
    assert_refused(
        &stack,
        before,
        c.register_person(with_token(tonic::Request::new(request.clone()), &forged))
            .await,
        Code::Unauthenticated,
        "TOKEN_BAD_SIGNATURE",
    )
    .await;

    // Expired an hour ago, signed by the trusted test key.
    let now = now_secs();
    let expired = testing::issuer()
        .sign(&Claims {
            iss: testing::TEST_ISSUER.into(),
            sub: "HOSP-A".into(),
            aud: AUDIENCE.into(),
            exp: now - 3600,
            iat: now - 7200,
            nbf: None,
            user: Some("tester".into()),
            roles: vec![],
        })
        .unwrap();
    assert_refused(
        &stack,
        before,
        c.register_person(with_token(tonic::Request::new(request.clone()), &expired))
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    )
    .await;

    // Signed by a key the service does not trust, claiming the trusted issuer.
    let (stranger, _) = Issuer::generate("stranger", testing::TEST_ISSUER).unwrap();
    let unknown = stranger
        .token("HOSP-A", Some("tester"), &[], Duration::from_secs(3600))
        .unwrap();
    assert_refused(
        &stack,
        before,
        c.register_person(with_token(tonic::Request::new(request.clone()), &unknown))
            .await,
        Code::Unauthenticated,
        "TOKEN_UNKNOWN_KEY",
    )
    .await;

    // The same command with the organisation's real token is accepted: only the token was
    // wrong.
    c.register_person(signed(request)).await.unwrap();
    assert_eq!(stack.count().await, before + 1);

    // Each refusal is audited: counted per caller address, reason and minute, and written
    // when the minute ends or, as here, when the service stops.
    let config = stack.config();
    stack.restart_service(config).await.unwrap();
    let records = stack.audit(subject).await.unwrap();
    assert_eq!(
        unauthenticated_counts(&records),
        BTreeMap::from([
            ("TOKEN_BAD_SIGNATURE".to_owned(), 1),
            ("TOKEN_EXPIRED".to_owned(), 1),
            ("TOKEN_MISSING".to_owned(), 1),
            ("TOKEN_UNKNOWN_KEY".to_owned(), 1),
        ])
    );
}

/// Calls without a valid identity counted by the records on `cw.audit.none.unauthenticated.*`,
/// per reason; each record is checked to name no one and to carry the caller's address.
fn unauthenticated_counts(records: &[(u64, v1::AuditEvent)]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, record) in records {
        assert_eq!(record.organisation, "unauthenticated", "{record:?}");
        assert!(record.person_id.is_empty(), "{record:?}");
        assert!(record.user.is_empty(), "{record:?}");
        assert_eq!(
            record.outcome,
            v1::AuditOutcome::Refused as i32,
            "{record:?}"
        );
        assert_eq!(record.action, v1::AuditAction::Command as i32, "{record:?}");
        assert_eq!(record.caller_address, "127.0.0.1", "{record:?}");
        assert_eq!(record.detail, "carewoven.v1.CommandService", "{record:?}");
        let secs = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
        assert!(secs(&record.at) <= secs(&record.last_at), "{record:?}");
        *counts.entry(record.reason.clone()).or_insert(0) += record.count;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_unauthenticated_calls_are_audited_in_a_few_records_with_counts() {
    let mut stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let subject = "cw.audit.none.unauthenticated.command";
    let before = stack.count().await;
    for _ in 0..100 {
        let status = c.register_person(register_request(22)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    assert_eq!(stack.count().await, before, "nothing appended");
    // Stopping the service writes what it counted: nothing is lost on a graceful stop.
    let config = stack.config();
    stack.restart_service(config).await.unwrap();
    let records = stack.audit(subject).await.unwrap();
    // One record for the minute; two if the calls straddled a minute's end.
    assert!(
        (1..=2).contains(&records.len()),
        "one record per caller, reason and minute: {records:?}"
    );
    assert_eq!(
        unauthenticated_counts(&records),
        BTreeMap::from([("TOKEN_MISSING".to_owned(), 100)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_naming_another_organisation_than_the_token_is_denied() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 21).await.unwrap();
    let referral = make_referral(&mut c, &person).await.unwrap();
    let before = stack.count().await;

    // HOSP-A's token, the receiving team's name in the context.
    let receive = referral_action(&person, &referral, v1::ReferralAction::Receive, "ASC-D2A");
    let status = assert_refused(
        &stack,
        before,
        c.progress_referral(as_org("HOSP-A", receive.clone())).await,
        Code::PermissionDenied,
        "ORGANISATION_MISMATCH",
    )
    .await;
    assert_impersonal(&status, &person, 21);
    let record = assert_audited(
        &stack,
        "cw.audit.none.HOSP-A.command",
        0,
        "ORGANISATION_MISMATCH",
        "progress_referral",
    )
    .await;
    assert_eq!(record.organisation, "HOSP-A");

    // An empty context organisation is filled from the token.
    let mut unnamed = receive;
    unnamed.context.as_mut().unwrap().organisation = String::new();
    let reply = c
        .progress_referral(as_org("ASC-D2A", unnamed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stack.count().await, before + 1);
    let history = stack
        .log
        .load(
            person.parse().unwrap(),
            carewoven_domain::AggregateKind::Referral,
            referral.parse().unwrap(),
        )
        .await
        .unwrap();
    let last = history.recorded().last().unwrap();
    assert_eq!(last.sequence, reply.log_position);
    assert_eq!(last.meta.organisation.as_str(), "ASC-D2A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_receiving_services_organisation_accepts_a_referral() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 22).await.unwrap();
    let referral = make_referral(&mut c, &person).await.unwrap();
    c.progress_referral(signed(referral_action(
        &person,
        &referral,
        v1::ReferralAction::Receive,
        "ASC-D2A",
    )))
    .await
    .unwrap();
    let before = stack.count().await;

    // Neither an unrelated organisation nor the referrer (who holds no ground) may accept
    // it; both are told what any organisation without a ground is told, and the audit
    // records the real reason.
    for org in ["ASC", "HOSP-A"] {
        let accept = referral_action(&person, &referral, v1::ReferralAction::Accept, org);
        let status = assert_refused(
            &stack,
            before,
            c.progress_referral(signed(accept)).await,
            Code::PermissionDenied,
            "NO_LEGITIMATE_RELATIONSHIP",
        )
        .await;
        assert_impersonal(&status, &person, 22);
        assert_audited(
            &stack,
            &format!("cw.audit.{person}.{org}.command"),
            0,
            "NO_ROLE_IN_REFERRAL",
            "progress_referral",
        )
        .await;
    }

    // The organisation owning the receiving service can.
    let reply = c
        .progress_referral(signed(referral_action(
            &person,
            &referral,
            v1::ReferralAction::Accept,
            "ASC-D2A",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.event_types, vec!["referral_accepted"]);
    assert_eq!(stack.count().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_care_team_members_revise_the_care_plan() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 23).await.unwrap();
    // The admitting hospital starts the care team with itself and agrees the plan.
    admit(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    c.agree_care_plan(signed(v1::AgreeCarePlanRequest {
        context: ctx("HOSP-A"),
        person_id: person.clone(),
        plan: Some(v1::PlanContent {
            goals: vec!["Get back to my allotment".into()],
            activities: vec![],
            review_date: date_days_ahead(30),
        }),
    }))
    .await
    .unwrap();
    let audit = format!("cw.audit.{person}.ASC.command");

    // Not on the team.
    let before = stack.count().await;
    let status = assert_refused(
        &stack,
        before,
        c.revise_care_plan(signed(revise_plan(&person, "ASC", 1)))
            .await,
        Code::PermissionDenied,
        // ASC holds no ground: told what any unrelated organisation is told; the audit
        // records the real reason.
        "NO_LEGITIMATE_RELATIONSHIP",
    )
    .await;
    assert_impersonal(&status, &person, 23);
    assert_audited(&stack, &audit, 0, "NOT_ON_CARE_TEAM", "revise_care_plan").await;

    // On the team.
    add_member(&mut c, &person, "HOSP-A", "ASC").await.unwrap();
    let before = stack.count().await;
    c.revise_care_plan(signed(revise_plan(&person, "ASC", 1)))
        .await
        .unwrap();
    assert_eq!(stack.count().await, before + 1);

    // Removed from the team: denied again.
    c.remove_care_team_member(signed(v1::RemoveCareTeamMemberRequest {
        context: ctx("HOSP-A"),
        person_id: person.clone(),
        member: Some(v1::MemberRef {
            organisation: "ASC".into(),
            practitioner: String::new(),
        }),
        until: date_days_ago(0),
        reason: "Care handed back to the GP".into(),
    }))
    .await
    .unwrap();
    let before = stack.count().await;
    let status = assert_refused(
        &stack,
        before,
        c.revise_care_plan(signed(revise_plan(&person, "ASC", 2)))
            .await,
        Code::PermissionDenied,
        "NO_LEGITIMATE_RELATIONSHIP",
    )
    .await;
    assert_impersonal(&status, &person, 23);
    assert_audited(&stack, &audit, 1, "NOT_ON_CARE_TEAM", "revise_care_plan").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_changes_only_under_the_governance_role() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let register_org = |org: &str| v1::RegisterOrganisationRequest {
        context: ctx(org),
        code: "NEW-ORG".into(),
        profile: Some(v1::OrganisationProfile {
            name: "Synthetic new organisation".into(),
            org_type: v1::OrganisationType::Other as i32,
        }),
        services: vec!["NEW-SVC".into()],
    };
    let today = carewoven_domain::values::uk_date(chrono::Utc::now());
    let agreement = |org: &str| v1::RecordSharingAgreementRequest {
        context: ctx(org),
        code: "HOSP-A".into(),
        agreement: Some(v1::SharingAgreement {
            reference: "HOSP-A-WIDER".into(),
            purposes: vec![v1::Purpose::DirectCare as i32, v1::Purpose::Research as i32],
            data_classes: all_data_classes(),
            valid_from: today.to_string(),
            expires_on: (today + chrono::Days::new(3650)).to_string(),
        }),
    };
    let before = stack.count().await;

    // A registered partner without the role, and an analyst, may change nothing: not even
    // widen their own agreement.
    let analyst = token_with_roles("HOSP-A", &[Role::Analyst]);
    let attempts = [
        c.register_organisation(signed(register_org("HOSP-A")))
            .await
            .map(|_| ()),
        c.register_organisation(with_token(
            tonic::Request::new(register_org("HOSP-A")),
            &analyst,
        ))
        .await
        .map(|_| ()),
        c.add_organisation_service(signed(v1::AddOrganisationServiceRequest {
            context: ctx("HOSP-A"),
            code: "HOSP-A".into(),
            service: "HOSP-A-WARD-9".into(),
        }))
        .await
        .map(|_| ()),
        c.record_sharing_agreement(signed(agreement("HOSP-A")))
            .await
            .map(|_| ()),
        c.end_sharing_agreement(signed(v1::EndSharingAgreementRequest {
            context: ctx("ASC"),
            code: "HOSP-A".into(),
            reference: "HOSP-A-DSA".into(),
            reason: "Ending a competitor's agreement".into(),
        }))
        .await
        .map(|_| ()),
    ];
    for result in attempts {
        assert_refused(
            &stack,
            before,
            result.map(tonic::Response::new),
            Code::PermissionDenied,
            "GOVERNANCE_ROLE_REQUIRED",
        )
        .await;
    }
    let audited = stack.audit("cw.audit.none.HOSP-A.command").await.unwrap();
    assert_eq!(audited.len(), 4, "{audited:?}");
    assert!(
        audited
            .iter()
            .all(|(_, r)| r.reason == "GOVERNANCE_ROLE_REQUIRED")
    );

    // The governance identity may.
    let governance = governance_token();
    c.register_organisation(with_token(
        tonic::Request::new(register_org(GOVERNANCE_ORG)),
        &governance,
    ))
    .await
    .unwrap();
    c.record_sharing_agreement(with_token(
        tonic::Request::new(agreement(GOVERNANCE_ORG)),
        &governance,
    ))
    .await
    .unwrap();
    assert_eq!(stack.count().await, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_organisation_is_denied() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 24).await.unwrap();
    let before = stack.count().await;

    // A valid token, but no organisation of that code in the registry.
    let mut req = register_request(25);
    req.context = ctx("STRANGER");
    assert_refused(
        &stack,
        before,
        c.register_person(signed(req)).await,
        Code::PermissionDenied,
        "ORGANISATION_NOT_REGISTERED",
    )
    .await;
    let status = assert_refused(
        &stack,
        before,
        c.make_referral(signed(referral_request(&person, "STRANGER", "ASC-D2A")))
            .await,
        Code::PermissionDenied,
        "ORGANISATION_NOT_REGISTERED",
    )
    .await;
    assert_impersonal(&status, &person, 24);
    assert_audited(
        &stack,
        &format!("cw.audit.{person}.STRANGER.command"),
        0,
        "ORGANISATION_NOT_REGISTERED",
        "make_referral",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_about_a_person_needs_a_legitimate_relationship_and_its_refusal_is_audited() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 26).await.unwrap();
    make_referral(&mut c, &person).await.unwrap();
    let consent = |org: &str| v1::RecordConsentRequest {
        context: ctx(org),
        person_id: person.clone(),
        terms: Some(v1::ConsentTerms {
            decision: v1::ConsentDecision::Permit as i32,
            purpose: v1::Purpose::DirectCare as i32,
            partners: vec![org.into()],
            data_classes: vec![],
            valid_from: date_days_ago(0),
            valid_until: String::new(),
            capacity_assessed: true,
        }),
    };
    let before = stack.count().await;

    // Community nursing has neither referred nor treated this person.
    let status = assert_refused(
        &stack,
        before,
        c.record_consent(signed(consent("COMM"))).await,
        Code::PermissionDenied,
        "NO_LEGITIMATE_RELATIONSHIP",
    )
    .await;
    assert_impersonal(&status, &person, 26);
    let record = assert_audited(
        &stack,
        &format!("cw.audit.{person}.COMM.command"),
        0,
        "NO_LEGITIMATE_RELATIONSHIP",
        "record_consent",
    )
    .await;
    assert_eq!(record.person_id, person);
    assert_eq!(record.organisation, "COMM");
    assert_eq!(record.user, "tester");

    // Referring gives the referrer no ground of its own (it gets a receipt, not the
    // record): refused alike.
    assert_refused(
        &stack,
        before,
        c.record_consent(signed(consent("HOSP-A"))).await,
        Code::PermissionDenied,
        "NO_LEGITIMATE_RELATIONSHIP",
    )
    .await;
    // The receiving service's organisation has a relationship, and so has the hospital
    // once it admits the person.
    c.record_consent(signed(consent("ASC-D2A"))).await.unwrap();
    admit(&mut c, &person).await.unwrap();
    let before = stack.count().await;
    c.record_consent(signed(consent("HOSP-A"))).await.unwrap();
    assert_eq!(stack.count().await, before + 1);
}

/// An organisation without a relationship must not learn, by trying to correct someone's
/// NHS number, whose number it is: the refusal is PERMISSION_DENIED (or NOT_FOUND for a
/// person id that does not exist), never ALREADY_EXISTS naming the owner's person id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correcting_an_nhs_number_reveals_nothing_without_a_relationship() {
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let owner = register(&mut c, 27).await.unwrap();
    let other = register(&mut c, 28).await.unwrap();
    let before = stack.count().await;
    let probe = |org: &str, person: &str| v1::CorrectPersonDetailsRequest {
        context: ctx(org),
        person_id: person.into(),
        correction: Some(v1::Correction {
            nhs_number: Some(test_nhs_number(27)),
            ..Default::default()
        }),
        reason: "Typo at registration".into(),
        based_on_version: 1,
    };
    // A registered organisation with no relationship with `other`.
    let status = assert_refused(
        &stack,
        before,
        c.correct_person_details(signed(probe("COMM", &other)))
            .await,
        Code::PermissionDenied,
        "NO_LEGITIMATE_RELATIONSHIP",
    )
    .await;
    assert_impersonal(&status, &owner, 27);
    // An unregistered organisation, with any person id at all.
    for person in [other.clone(), uuid::Uuid::now_v7().to_string()] {
        let status = c
            .correct_person_details(signed(probe("STRANGER", &person)))
            .await
            .unwrap_err();
        assert!(
            matches!(status.code(), Code::PermissionDenied | Code::NotFound),
            "{status:?}"
        );
        assert_impersonal(&status, &owner, 27);
    }
    assert_eq!(stack.count().await, before);
}

/// Accepting a handover makes the accepting organisation related to the person (it may then
/// read the record and receive the feed), so only the organisation of the service the
/// discharge was agreed with may accept it: an unrelated organisation cannot give itself a
/// relationship by accepting a handover in its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_agreed_services_organisation_accepts_the_handover() {
    use v1::progress_discharge_request::{self as pd, Step};
    let stack = Stack::start().await.unwrap();
    let mut c = stack.client.clone();
    let person = register(&mut c, 29).await.unwrap();
    let episode = episode_ready(&mut c, &person).await.unwrap();
    for step in [
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway1 as i32,
        }),
        Step::RequestService(pd::RequestService {
            service: "ASC-REABLE".into(),
        }),
        Step::AgreeDischarge(pd::AgreeDischarge {
            service: "ASC-REABLE".into(),
            planned_for: date_days_ahead(0),
        }),
        Step::Discharge(pd::Discharge {
            discharged_at: ts_hours_ago(1),
            destination: "Home".into(),
            destination_code: "19".into(),
        }),
    ] {
        c.progress_discharge(signed(discharge_step(&person, &episode, step)))
            .await
            .unwrap();
    }
    let accept = |org: &str| {
        discharge_step_by(
            org,
            &person,
            &episode,
            Step::AcceptHandover(pd::AcceptHandover {
                organisation: org.into(),
            }),
        )
    };
    let before = stack.count().await;
    let status = assert_refused(
        &stack,
        before,
        c.progress_discharge(signed(accept("COMM"))).await,
        Code::PermissionDenied,
        "NO_LEGITIMATE_RELATIONSHIP",
    )
    .await;
    assert_impersonal(&status, &person, 29);
    // The managing hospital is related, but is not the agreed provider: it cannot take the
    // handover from it.
    assert_refused(
        &stack,
        before,
        c.progress_discharge(signed(accept("HOSP-A"))).await,
        Code::PermissionDenied,
        "NO_ROLE_IN_DISCHARGE",
    )
    .await;
    c.progress_discharge(signed(accept("ASC-REABLE")))
        .await
        .unwrap();
    assert_eq!(stack.count().await, before + 1);
}
