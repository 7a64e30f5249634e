//! Integrated-working practices end to end, one scenario test each, named after the
//! practice: real nats-server, the real command service, views (on a redb file) and gateway
//! over gRPC on loopback.

#![allow(clippy::unwrap_used)]

use carewoven_proto::v1::{self, query_service_client::QueryServiceClient};
use carewoven_testkit::*;
use tonic::Code;
use tonic::transport::Channel;

async fn record(
    q: &mut QueryServiceClient<Channel>,
    org: &str,
    person: &str,
    at: u64,
) -> Result<v1::CareRecord, tonic::Status> {
    q.get_care_record(as_org(
        org,
        v1::GetCareRecordRequest {
            person_id: person.into(),
            min_log_position: at,
        },
    ))
    .await
    .map(tonic::Response::into_inner)
}

/// Joint assessment: a hospital asks adult social care and community nursing to assess
/// together, although neither has a relationship with the person yet. Naming them gives
/// them the ground to take part (and only until the assessment ends); one that cannot take
/// part is replaced with a reason instead of leaving the assessment stuck; each adds to its
/// contribution; what each said is part of the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_assessment() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    let person = register(&mut c, 310).await.unwrap();
    admit(&mut c, &person).await.unwrap();

    // Before the request, neither assessor may read the record.
    let now = stack.count().await;
    for org in ["ASC", "COMM", "ASC-REABLE"] {
        let refused = record(&mut q, org, &person, now).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{org}");
    }
    let requested = c
        .request_assessment(signed(v1::RequestAssessmentRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            request: Some(v1::AssessmentRequest {
                kind: v1::AssessmentKind::CareActNeeds as i32,
                assessors: vec!["ASC".into(), "COMM".into()],
                referral_id: String::new(),
                due_by: date_days_ahead(7),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let assessment = requested.aggregate_id.clone();
    // Named, so related: both may read the record now.
    for org in ["ASC", "COMM"] {
        record(&mut q, org, &person, requested.log_position)
            .await
            .unwrap();
    }
    let contribute = |org: &str, summary: &str| {
        signed(v1::ContributeToAssessmentRequest {
            context: ctx(org),
            person_id: person.clone(),
            assessment_id: assessment.clone(),
            organisation: org.into(),
            summary: summary.into(),
        })
    };
    c.contribute_to_assessment(contribute("ASC", "Needs help with washing and meals"))
        .await
        .unwrap();
    // Adding to its contribution is allowed.
    c.contribute_to_assessment(contribute("ASC", "Daughter visits twice a week"))
        .await
        .unwrap();

    // Community nursing cannot take part. An organisation that is neither the requester nor
    // the replaced assessor may not replace it; nothing is appended.
    let replace = |by_org: &str, replaced: &str, by: &str| {
        signed(v1::ReplaceAssessorRequest {
            context: ctx(by_org),
            person_id: person.clone(),
            assessment_id: assessment.clone(),
            replaced: replaced.into(),
            by: by.into(),
            reason: "No community nursing capacity this month".into(),
        })
    };
    let before = stack.count().await;
    let refused = c
        .replace_assessor(replace("ASC", "COMM", "ASC-REABLE"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("replace"), "{refused:?}");
    // Bad input names the field.
    let refused = c
        .replace_assessor(replace("HOSP-A", "COMM", "NOT-REGISTERED"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("by"), "{refused:?}");
    let refused = c
        .replace_assessor(replace("HOSP-A", "GP-A", "ASC-REABLE"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("replaced"), "{refused:?}");
    assert_eq!(stack.count().await, before, "refusals append nothing");

    let replaced = c
        .replace_assessor(replace("HOSP-A", "COMM", "ASC-REABLE"))
        .await
        .unwrap()
        .into_inner();
    // The replaced assessor loses its ground at once; the replacement gains one.
    let refused = record(&mut q, "COMM", &person, replaced.log_position)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = c
        .contribute_to_assessment(contribute("COMM", "Late"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    record(&mut q, "ASC-REABLE", &person, replaced.log_position)
        .await
        .unwrap();
    // Not complete until the replacement has contributed.
    let complete = || {
        signed(v1::CompleteAssessmentRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            assessment_id: assessment.clone(),
            findings: Some(v1::Findings {
                summary: "Eligible for care and support at home".into(),
                outcomes_not_achieved: vec![
                    v1::CareActOutcome::ManagingNutrition as i32,
                    v1::CareActOutcome::PersonalHygiene as i32,
                ],
                wellbeing_impact: "Significant".into(),
                needs_arise_from_impairment_or_illness: true,
                significant_impact_on_wellbeing: true,
            }),
        })
    };
    let refused = c.complete_assessment(complete()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("ASC-REABLE"), "{refused:?}");
    c.contribute_to_assessment(contribute("ASC-REABLE", "Reablement can start Monday"))
        .await
        .unwrap();
    let done = c
        .complete_assessment(complete())
        .await
        .unwrap()
        .into_inner();

    // The assessment ended: the replacement's ground ended with it.
    let refused = record(&mut q, "ASC-REABLE", &person, done.log_position)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // What each said is part of the record, with who replaced whom and why.
    let rec = record(&mut q, "HOSP-A", &person, done.log_position)
        .await
        .unwrap();
    let view = &rec.assessments[0];
    assert_eq!(view.status, "completed");
    assert_eq!(view.eligible, Some(true));
    assert_eq!(
        view.request.as_ref().unwrap().assessors,
        vec!["ASC", "ASC-REABLE"]
    );
    let said: Vec<(&str, &str)> = view
        .contributions
        .iter()
        .map(|c| (c.organisation.as_str(), c.summary.as_str()))
        .collect();
    assert_eq!(
        said,
        vec![
            ("ASC", "Needs help with washing and meals"),
            ("ASC", "Daughter visits twice a week"),
            ("ASC-REABLE", "Reablement can start Monday"),
        ]
    );
    assert_eq!(view.contributors, vec!["ASC", "ASC-REABLE"]);
    assert_eq!(view.assessor_replacements.len(), 1);
    let r = &view.assessor_replacements[0];
    assert_eq!(
        (r.replaced.as_str(), r.by.as_str(), r.organisation.as_str()),
        ("COMM", "ASC-REABLE", "HOSP-A")
    );
    assert_eq!(r.reason, "No community nursing capacity this month");

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Risk flags (frailty with its Clinical Frailty Scale score, lives alone, ...) raised by the
/// registered GP are part of the record for partners whose agreement names the risk flags
/// data class, and withheld (said so) from one whose agreement does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_flags_are_their_own_data_class() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    // A partner whose agreement covers everything but risk flags.
    let without_flags: Vec<i32> = all_data_classes()
        .into_iter()
        .filter(|d| *d != v1::DataClass::RiskFlags as i32)
        .collect();
    register_partner(&mut c, "VOL-1", &[], &without_flags)
        .await
        .unwrap();
    let person = register_with_gp(&mut c, 320, "GP-A").await.unwrap();
    // The GP joins the care team (its registration is its ground), then adds the partner.
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "VOL-1").await.unwrap();
    let raise = |code: v1::RiskFlagCode, score: u32| {
        signed(v1::RaiseRiskFlagRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            flag: Some(v1::RiskFlag {
                code: code as i32,
                frailty_score: score,
                start: date_days_ago(10),
                note: String::new(),
            }),
        })
    };
    // Bad input names the field and appends nothing.
    let before = stack.count().await;
    for (code, score, field) in [
        (v1::RiskFlagCode::Frailty, 0, "flag.frailty_score"),
        (v1::RiskFlagCode::Frailty, 12, "flag.frailty_score"),
        (v1::RiskFlagCode::LivesAlone, 4, "flag.frailty_score"),
        (v1::RiskFlagCode::Unspecified, 0, "flag.code"),
    ] {
        let refused = c.raise_risk_flag(raise(code, score)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{code:?}");
        assert!(refused.message().contains(field), "{refused:?}");
    }
    assert_eq!(stack.count().await, before);
    // An organisation with no relationship may not raise one.
    let mut outsider = raise(v1::RiskFlagCode::SafeguardingConcern, 0).into_inner();
    outsider.context = ctx("ASC");
    let refused = c.raise_risk_flag(signed(outsider)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(stack.count().await, before);

    let frailty = c
        .raise_risk_flag(raise(v1::RiskFlagCode::Frailty, 6))
        .await
        .unwrap()
        .into_inner();
    let alone = c
        .raise_risk_flag(raise(v1::RiskFlagCode::LivesAlone, 0))
        .await
        .unwrap()
        .into_inner();
    let ended = c
        .end_risk_flag(signed(v1::EndRiskFlagRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            flag_id: alone.aggregate_id.clone(),
            end: date_days_ago(0),
            reason: "Moved in with her daughter".into(),
        }))
        .await
        .unwrap()
        .into_inner();

    let rec = record(&mut q, "GP-A", &person, ended.log_position)
        .await
        .unwrap();
    let flags: Vec<(i32, u32, &str, &str)> = rec
        .risk_flags
        .iter()
        .map(|f| {
            let flag = f.flag.as_ref().unwrap();
            (
                flag.code,
                flag.frailty_score,
                f.end.as_str(),
                f.organisation.as_str(),
            )
        })
        .collect();
    let today = date_days_ago(0);
    assert_eq!(
        flags,
        vec![
            (v1::RiskFlagCode::Frailty as i32, 6, "", "GP-A"),
            (
                v1::RiskFlagCode::LivesAlone as i32,
                0,
                today.as_str(),
                "GP-A"
            ),
        ]
    );
    assert_eq!(rec.risk_flags[0].flag_id, frailty.aggregate_id);
    assert_eq!(rec.risk_flags[1].end_reason, "Moved in with her daughter");
    // The partner without risk flags in its agreement reads the record without them, and is
    // told they were withheld.
    let rec = record(&mut q, "VOL-1", &person, ended.log_position)
        .await
        .unwrap();
    assert!(rec.risk_flags.is_empty());
    assert_eq!(rec.withheld_classes, vec![v1::DataClass::RiskFlags as i32]);
    // Ending it twice is refused.
    let refused = c
        .end_risk_flag(signed(v1::EndRiskFlagRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            flag_id: alone.aggregate_id.clone(),
            end: date_days_ago(0),
            reason: "Again".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
