//! Entitlement that no organisation can grant itself (issue: relationships, objections, people's
//! own access). Each test is one attack, tried as an organisation with a valid token would,
//! against the real command service, the real views service (with its redb file) and the
//! real gateway, over gRPC on loopback, with a real nats-server: every attack is refused and
//! leaves the log as it was.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, feed_service_client::FeedServiceClient,
    progress_discharge_request as pd, query_service_client::QueryServiceClient,
};
use carewoven_testkit::*;
use futures::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// The command service (through [`Stack`]), the views on a fresh redb file, and the gateway.
struct World {
    stack: Stack,
    views: Running,
    views_channel: Channel,
    gateway: Running,
    gateway_channel: Channel,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// With the gateway's configuration changed by `gateway`.
    async fn start_with(gateway: impl FnOnce(&mut carewoven_gateway::Config)) -> Self {
        let Services {
            stack,
            views,
            gateway,
            dir,
            ..
        } = Services::start_with(gateway).await.unwrap();
        let views_channel = views.channel();
        let gateway_channel = gateway.channel();
        World {
            stack,
            views,
            views_channel,
            gateway,
            gateway_channel,
            _dir: dir,
        }
    }

    fn queries(&self) -> QueryServiceClient<Channel> {
        QueryServiceClient::new(self.views_channel.clone())
    }

    fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.gateway_channel.clone())
    }

    fn feeds(&self) -> FeedServiceClient<Channel> {
        FeedServiceClient::new(self.gateway_channel.clone())
    }

    async fn record(
        &self,
        org: &str,
        person: &str,
        at_least: u64,
    ) -> Result<v1::CareRecord, tonic::Status> {
        self.queries()
            .get_care_record(as_org(
                org,
                v1::GetCareRecordRequest {
                    person_id: person.into(),
                    min_log_position: at_least,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn stop(self) {
        self.views.stop().await.unwrap();
        self.gateway.stop().await.unwrap();
        self.stack.service.stop().await.unwrap();
    }
}

fn reason(status: &tonic::Status) -> String {
    tonic_types::StatusExt::get_details_error_info(status)
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// An objection (Deny for direct care) by the person to `partners`, recorded by `by`.
fn objection(person: &str, by: &str, partners: &[&str]) -> v1::RecordConsentRequest {
    v1::RecordConsentRequest {
        context: ctx(by),
        person_id: person.into(),
        terms: Some(v1::ConsentTerms {
            decision: v1::ConsentDecision::Deny as i32,
            purpose: v1::Purpose::DirectCare as i32,
            partners: partners.iter().map(|p| (*p).to_owned()).collect(),
            data_classes: vec![],
            valid_from: date_days_ago(1),
            valid_until: String::new(),
            capacity_assessed: true,
        }),
    }
}

fn governance<T>(message: T) -> tonic::Request<T> {
    carewoven_access::grpc::with_token(tonic::Request::new(message), &governance_token())
}

fn governance_ctx() -> Option<v1::CommandContext> {
    let mut c = ctx(GOVERNANCE_ORG);
    if let Some(c) = c.as_mut() {
        c.organisation = String::new();
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_gives_the_referrer_a_receipt_not_the_record() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 60, "GP-A").await.unwrap();
    // COMM has no part in this person's care and refers anyway.
    let referral = refer(&mut c, &person, "COMM", "ASC-D2A").await.unwrap();
    c.progress_referral(signed(referral_action(
        &person,
        &referral,
        v1::ReferralAction::Receive,
        "ASC-D2A",
    )))
    .await
    .unwrap();
    let mut reject = referral_action(&person, &referral, v1::ReferralAction::Reject, "ASC-D2A");
    reject.reason = "No capacity this week; please refer to the community team".into();
    let last = c
        .progress_referral(signed(reject))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    // The record stays closed to the referrer: the same answer as for nobody.
    let refused = w.record("COMM", &person, last).await.unwrap_err();
    let nobody = w
        .record("COMM", &uuid::Uuid::now_v7().to_string(), last)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        (refused.code(), refused.message().replace(&person, "?")),
        (nobody.code(), nobody.message().to_owned())
    );
    // Its receipt says what became of its referral, and why.
    let receipt = w
        .queries()
        .get_referral_receipt(as_org(
            "COMM",
            v1::GetReferralReceiptRequest {
                person_id: person.clone(),
                referral_id: referral.clone(),
                min_log_position: last,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt.status, "rejected");
    assert_eq!(
        receipt.reason,
        "No capacity this week; please refer to the community team"
    );
    assert_eq!(receipt.to_service, "ASC-D2A");
    // Nobody else gets that receipt, and a made-up one looks the same.
    for (org, id) in [
        ("HOSP-A", referral.clone()),
        ("COMM", uuid::Uuid::now_v7().to_string()),
    ] {
        let status = w
            .queries()
            .get_referral_receipt(as_org(
                org,
                v1::GetReferralReceiptRequest {
                    person_id: person.clone(),
                    referral_id: id,
                    min_log_position: last,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{org}");
    }
    // Nor may it list who accessed the record.
    let status = w
        .audit()
        .list_record_access(as_org(
            "COMM",
            v1::ListRecordAccessRequest {
                person_id: person.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // A new referral after the rejection brings nothing back.
    let again = refer(&mut c, &person, "COMM", "ASC-D2A").await.unwrap();
    assert!(!again.is_empty());
    assert_eq!(
        w.record("COMM", &person, 0).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // The receiving service's organisation, by contrast, may read while the referral is
    // open.
    assert!(w.record("ASC-D2A", &person, 0).await.is_ok());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_again_or_probing_ids_reveals_nothing_and_a_trace_needs_the_date_of_birth() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 61, "GP-A").await.unwrap();
    let before = w.stack.count().await;
    // An unrelated organisation registering the same NHS number learns that it is taken,
    // not whose it is.
    let mut again = register_request(61);
    again.context = ctx("COMM");
    let status = c.register_person(signed(again.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(!format!("{status:?}").contains(&person), "{status:?}");
    // The registered GP is told the id.
    again.context = ctx("GP-A");
    let status = c.register_person(signed(again)).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(format!("{status:?}").contains(&person));
    assert_eq!(w.stack.count().await, before);

    // The command service answers an unrelated caller alike for a real and a random id.
    let random = uuid::Uuid::now_v7().to_string();
    let probes = |id: &str| {
        vec![v1::RecordFeedbackRequest {
            context: ctx("COMM"),
            person_id: id.into(),
            feedback: Some(v1::FeedbackRecord {
                source: v1::FeedbackSource::Person as i32,
                anonymous: false,
                text: "probe".into(),
                rating: 3,
            }),
        }]
    };
    let mut answers = Vec::new();
    for id in [&person, &random] {
        for request in probes(id) {
            let status = c.record_feedback(signed(request)).await.unwrap_err();
            answers.push((status.code(), status.message().to_owned(), reason(&status)));
        }
        let status = c
            .add_care_team_member(signed(add_member_request(id, "COMM", "COMM")))
            .await
            .unwrap_err();
        answers.push((status.code(), status.message().to_owned(), reason(&status)));
        let status = c
            .progress_referral(signed(referral_action(
                id,
                &uuid::Uuid::now_v7().to_string(),
                v1::ReferralAction::Accept,
                "COMM",
            )))
            .await
            .unwrap_err();
        answers.push((status.code(), status.message().to_owned(), reason(&status)));
    }
    let (real, fake) = answers.split_at(answers.len() / 2);
    assert_eq!(real, fake);
    assert!(
        real.iter().all(
            |(code, _, r)| *code == Code::PermissionDenied && r == "NO_LEGITIMATE_RELATIONSHIP"
        )
    );
    assert_eq!(w.stack.count().await, before);

    // A trace: NHS number and date of birth, both right.
    let trace = |nhs: String, dob: &str| v1::FindPersonRequest {
        nhs_number: nhs,
        date_of_birth: dob.into(),
    };
    let found = w
        .queries()
        .find_person(as_org("COMM", trace(test_nhs_number(61), "1941-03-02")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.person_id, person);
    let wrong_dob = w
        .queries()
        .find_person(as_org("COMM", trace(test_nhs_number(61), "1941-03-03")))
        .await
        .unwrap_err();
    let unknown = w
        .queries()
        .find_person(as_org("COMM", trace(test_nhs_number(62), "1941-03-02")))
        .await
        .unwrap_err();
    assert_eq!(wrong_dob.code(), Code::NotFound);
    assert_eq!(
        (wrong_dob.code(), wrong_dob.message()),
        (unknown.code(), unknown.message())
    );
    let bad = w
        .queries()
        .find_person(as_org("COMM", trace("123".into(), "1941-03-02")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("nhs_number"), "{}", bad.message());
    // Every trace is on record.
    let traces = w
        .stack
        .audit("cw.audit.none.COMM.find_person")
        .await
        .unwrap();
    let found_traces = w
        .stack
        .audit(&format!("cw.audit.{person}.COMM.find_person"))
        .await
        .unwrap();
    assert_eq!(traces.len(), 2, "the two traces that found nobody");
    assert_eq!(found_traces.len(), 1);
    // Finding a person gives no access.
    assert_eq!(
        w.record("COMM", &person, 0).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objections_belong_to_the_person_and_shut_every_path() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 63, "GP-A").await.unwrap();
    admit(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    add_member(&mut c, &person, "HOSP-A", "COMM").await.unwrap();
    let before = w.stack.count().await;
    // Only the registered GP (on the person's behalf) or governance records an objection.
    for by in ["HOSP-A", "COMM"] {
        let status = c
            .record_consent(signed(objection(&person, by, &["HOSP-A"])))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{by}");
        assert_eq!(reason(&status), "OBJECTION_NOT_YOURS", "{by}");
    }
    assert_eq!(w.stack.count().await, before);
    let recorded = c
        .record_consent(signed(objection(&person, "GP-A", &["HOSP-A"])))
        .await
        .unwrap()
        .into_inner();
    let consent = recorded.aggregate_id.clone();
    let at = recorded.log_position;
    // The organisation it names cannot withdraw it, nor can a third party.
    let withdraw = |by: &str| v1::WithdrawConsentRequest {
        context: ctx(by),
        person_id: person.clone(),
        consent_id: consent.clone(),
        reason: "I changed my mind".into(),
    };
    let before = w.stack.count().await;
    for by in ["HOSP-A", "COMM", "ASC"] {
        let status = c.withdraw_consent(signed(withdraw(by))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{by}");
    }
    assert_eq!(w.stack.count().await, before);

    // The objected-to hospital gets nothing through any read path.
    let refused = w.record("HOSP-A", &person, at).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    let caseload = w
        .queries()
        .get_caseload(as_org(
            "HOSP-A",
            v1::GetCaseloadRequest {
                owner: Some(v1::get_caseload_request::Owner::Organisation(
                    "HOSP-A".into(),
                )),
                min_log_position: at,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!caseload.person_ids.contains(&person), "{caseload:?}");
    let listing = w
        .audit()
        .list_record_access(as_org(
            "HOSP-A",
            v1::ListRecordAccessRequest {
                person_id: person.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(listing.code(), Code::PermissionDenied);
    assert_eq!(reason(&listing), "NO_LEGITIMATE_RELATIONSHIP");
    // ...nor may it write.
    let before = w.stack.count().await;
    let status = c
        .add_care_team_member(signed(add_member_request(&person, "HOSP-A", "ASC")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "NO_LEGITIMATE_RELATIONSHIP");
    assert_eq!(w.stack.count().await, before);
    // The audit keeps the real cause.
    let audited = w
        .stack
        .audit(&format!("cw.audit.{person}.HOSP-A.command"))
        .await
        .unwrap();
    assert!(
        audited.iter().any(|(_, r)| r.reason == "OBJECTION"),
        "{audited:?}"
    );
    // Others are unaffected.
    assert!(w.record("COMM", &person, at).await.is_ok());

    // The registered GP withdraws it on the person's behalf; governance could too.
    let back = c
        .withdraw_consent(signed(withdraw("GP-A")))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    assert!(w.record("HOSP-A", &person, back).await.is_ok());
    // Governance records one for the person.
    let mut by_governance = objection(&person, GOVERNANCE_ORG, &["COMM"]);
    by_governance.context = governance_ctx();
    let at = c
        .record_consent(governance(by_governance))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    assert_eq!(
        w.record("COMM", &person, at).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_lock_the_hospital_out_of_the_care_team_or_take_over_identity() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 64, "GP-A").await.unwrap();
    // The receiving service joins the team first and alone.
    make_referral(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "ASC-D2A", "ASC-D2A")
        .await
        .unwrap();
    // The hospital admits the person and can still add itself, and so can the GP.
    admit(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    // A related organisation may not add a third party unless it is on the team.
    let before = w.stack.count().await;
    let status = c
        .add_care_team_member(signed(add_member_request(&person, "COMM", "COMM")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // An unregistered organisation cannot be put on the team: the field is named.
    let status = c
        .add_care_team_member(signed(add_member_request(&person, "HOSP-A", "NOBODY")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("member.organisation"),
        "{}",
        status.message()
    );
    assert_eq!(w.stack.count().await, before);

    // Identity: only the registered GP; other details by anyone related, against the
    // version they read.
    let correct =
        |by: &str, correction: v1::Correction, version: u64| v1::CorrectPersonDetailsRequest {
            context: ctx(by),
            person_id: person.clone(),
            correction: Some(correction),
            reason: "Correction".into(),
            based_on_version: version,
        };
    let rename = v1::Correction {
        family_name: Some("Impostor".into()),
        ..Default::default()
    };
    let record = w.record("HOSP-A", &person, 0).await.unwrap();
    let version = record.person_version;
    assert_eq!(version, 1);
    for (by, what) in [
        ("HOSP-A", rename.clone()),
        (
            "ASC-D2A",
            v1::Correction {
                nhs_number: Some(test_nhs_number(65)),
                ..Default::default()
            },
        ),
        (
            "HOSP-A",
            v1::Correction {
                date_of_birth: Some("1950-01-01".into()),
                ..Default::default()
            },
        ),
        (
            "HOSP-A",
            v1::Correction {
                registered_gp: Some("GP-A".into()),
                ..Default::default()
            },
        ),
    ] {
        let status = c
            .correct_person_details(signed(correct(by, what, version)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{by}");
        assert_eq!(reason(&status), "IDENTITY_CORRECTION_NOT_ALLOWED");
    }
    // A practice that is not a registered general practice is refused by name.
    let not_a_practice = v1::Correction {
        registered_gp: Some("HOSP-A".into()),
        ..Default::default()
    };
    let status = c
        .correct_person_details(signed(correct("GP-A", not_a_practice, version)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("correction.registered_gp"),
        "{}",
        status.message()
    );
    assert_eq!(w.stack.count().await, before);
    let contact = v1::Correction {
        contact: Some("Flat 2, 1 Example Road".into()),
        ..Default::default()
    };
    let reply = c
        .correct_person_details(signed(correct("HOSP-A", contact.clone(), version)))
        .await
        .unwrap()
        .into_inner();
    // A second correction based on the same, now stale, version is not applied over it.
    let stale = c
        .correct_person_details(signed(correct("ASC-D2A", contact, version)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    // The GP corrects the name; so may governance.
    let record = w.record("GP-A", &person, reply.log_position).await.unwrap();
    c.correct_person_details(signed(correct("GP-A", rename, record.person_version)))
        .await
        .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acting_user_is_the_tokens() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let mut request = register_request(66);
    if let Some(ctx) = request.context.as_mut() {
        ctx.user = "a-colleague".into();
    }
    let before = w.stack.count().await;
    let status = c
        .register_person(signed(request.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "USER_MISMATCH");
    assert_eq!(w.stack.count().await, before);
    // Left empty, the token's user acts.
    if let Some(ctx) = request.context.as_mut() {
        ctx.user = String::new();
    }
    let reply = c
        .register_person(signed(request))
        .await
        .unwrap()
        .into_inner();
    let stored = w
        .stack
        .log
        .load(
            reply.person_id.parse().unwrap(),
            carewoven_domain::AggregateKind::Person,
            reply.person_id.parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        stored.recorded().next().unwrap().meta.user.as_str(),
        "tester"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_read_leaves_out_what_the_agreement_does_not_cover() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    // A partner whose agreement covers the discharge only.
    register_partner(
        &mut c,
        "D2A-ONLY",
        &["D2A-ONLY"],
        &[v1::DataClass::Discharge as i32],
    )
    .await
    .unwrap();
    let person = register_with_gp(&mut c, 67, "GP-A").await.unwrap();
    admit(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    let at = c
        .add_care_team_member(signed(add_member_request(&person, "HOSP-A", "D2A-ONLY")))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    let full = w.record("HOSP-A", &person, at).await.unwrap();
    assert!(full.withheld_classes.is_empty());
    assert_eq!(full.profile.as_ref().unwrap().given_name, "Ada");
    let narrow = w.record("D2A-ONLY", &person, at).await.unwrap();
    let profile = narrow.profile.unwrap();
    assert_eq!(profile.nhs_number, test_nhs_number(67), "identifiers stay");
    assert!(profile.given_name.is_empty(), "demographics withheld");
    assert!(profile.what_matters.is_empty());
    assert!(narrow.care_team.is_none());
    assert_eq!(narrow.discharge_episodes.len(), 1, "discharge is covered");
    assert!(
        narrow
            .withheld_classes
            .contains(&(v1::DataClass::Demographics as i32))
    );
    assert!(
        !narrow
            .withheld_classes
            .contains(&(v1::DataClass::Discharge as i32))
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_access_is_bounded_audited_and_told_to_the_coordinator() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 68, "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    c.name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
        context: ctx("GP-A"),
        person_id: person.clone(),
        member: Some(v1::MemberRef {
            organisation: "GP-A".into(),
            practitioner: String::new(),
        }),
    }))
    .await
    .unwrap();
    // COMM has no ground: refused until it breaks the glass.
    assert_eq!(
        w.record("COMM", &person, 0).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let assert = |hours: u32, reason: &str| v1::AssertEmergencyAccessRequest {
        context: ctx("COMM"),
        person_id: person.clone(),
        reason: reason.into(),
        hours,
    };
    let before = w.stack.count().await;
    for (hours, field) in [(0, "hours"), (25, "hours")] {
        let status = c
            .assert_emergency_access(signed(assert(hours, "Collapsed at home")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    let status = c
        .assert_emergency_access(signed(assert(2, "")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("reason"), "{}", status.message());
    assert_eq!(w.stack.count().await, before);
    // A voluntary organisation does not provide direct care.
    register_partner(&mut c, "VOLUNTEERS", &[], &all_data_classes())
        .await
        .unwrap();
    let mut voluntary = assert(2, "Worried neighbour");
    voluntary.context = ctx("VOLUNTEERS");
    let status = c
        .assert_emergency_access(signed(voluntary))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let at = c
        .assert_emergency_access(signed(assert(
            2,
            "Found collapsed; need medication history",
        )))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    let record = w.record("COMM", &person, at).await.unwrap();
    assert_eq!(record.emergency_accesses.len(), 1);
    assert_eq!(record.emergency_accesses[0].organisation, "COMM");
    // Audited as BREAK_GLASS.
    let audited = w
        .stack
        .audit(&format!("cw.audit.{person}.COMM.break_glass"))
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    // The coordinator (GP-A) is told through its feed.
    let mut feed = w
        .feeds()
        .subscribe(as_org("GP-A", v1::SubscribeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut told = false;
    while !told {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, feed.next())
            .await
            .expect("the coordinator was not told in time")
            .expect("the feed ended")
            .unwrap();
        told = item
            .identifiers
            .as_ref()
            .is_some_and(|i| i.event_type == "emergency_access_asserted" && i.person_id == person);
    }
    // It is on the governance role's review list, and nobody else may read that list.
    let review = w
        .audit()
        .list_emergency_access(governance(v1::ListEmergencyAccessRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(review.entries.len(), 1);
    let entry = &review.entries[0];
    assert_eq!(
        (entry.person_id.as_str(), entry.organisation.as_str()),
        (person.as_str(), "COMM")
    );
    assert!(entry.in_force);
    assert_eq!(entry.log_position, at);
    let status = w
        .audit()
        .list_emergency_access(as_org("GP-A", v1::ListEmergencyAccessRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Emergency access does not make COMM a member.
    let status = c
        .add_care_team_member(signed(add_member_request(&person, "COMM", "COMM")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handover_goes_only_to_the_agreed_provider() {
    use pd::Step;
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 69, "GP-A").await.unwrap();
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
    // The registered GP is related, but is not the agreed provider.
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
    let before = w.stack.count().await;
    let status = c
        .progress_discharge(signed(accept("GP-A")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "NO_ROLE_IN_DISCHARGE");
    assert_eq!(w.stack.count().await, before);
    c.progress_discharge(signed(accept("ASC-REABLE")))
        .await
        .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ground_that_ends_with_time_is_put_on_record() {
    // The gateway's clock runs 29 days ahead (past the default period of 28), and it sweeps
    // every second.
    let w = World::start_with(|config| {
        config.clock = std::sync::Arc::new(|| chrono::Utc::now() + chrono::Duration::days(29));
        config.sweep_interval_secs = 1;
    })
    .await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 70, "GP-A").await.unwrap();
    // A hospital stay that ended (the person left): the ground lasts the set period.
    let episode = admit(&mut c, &person).await.unwrap();
    c.progress_discharge(signed(discharge_step(
        &person,
        &episode,
        pd::Step::RecordSelfDischarge(pd::RecordSelfDischarge {
            left_at: ts_hours_ago(1),
        }),
    )))
    .await
    .unwrap();
    c.assert_emergency_access(signed(v1::AssertEmergencyAccessRequest {
        context: ctx("COMM"),
        person_id: person.clone(),
        reason: "Found collapsed".into(),
        hours: 2,
    }))
    .await
    .unwrap();
    let subject = format!("cw.audit.{person}.COMM.relationship_ended");
    let hospital_subject = format!("cw.audit.{person}.HOSP-A.relationship_ended");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ended, hospital) = loop {
        let records = w.stack.audit(&subject).await.unwrap();
        let hospital = w.stack.audit(&hospital_subject).await.unwrap();
        if !records.is_empty() && !hospital.is_empty() {
            break (records, hospital);
        }
        assert!(
            Instant::now() < deadline,
            "the ends were not recorded in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].1.reason, "emergency_access");
    assert_eq!(ended[0].1.person_id, person);
    assert_eq!(hospital.len(), 1, "{hospital:?}");
    assert_eq!(hospital[0].1.reason, "hospital_stay");
    // Only that ground: the registered GP's continues.
    assert!(
        w.stack
            .audit(&format!("cw.audit.{person}.GP-A.relationship_ended"))
            .await
            .unwrap()
            .is_empty()
    );
    w.stop().await;
}
