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

async fn worklist(
    q: &mut QueryServiceClient<Channel>,
    org: &str,
    kind: v1::WorklistKind,
    at: u64,
    tweak: impl FnOnce(&mut v1::ListWorklistRequest),
) -> Result<Vec<v1::WorklistItem>, tonic::Status> {
    let mut request = v1::ListWorklistRequest {
        kind: kind as i32,
        min_log_position: at,
        ..Default::default()
    };
    tweak(&mut request);
    let mut items = Vec::new();
    loop {
        let page = q
            .list_worklist(as_org(org, request.clone()))
            .await?
            .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return Ok(items);
        }
        request.page_token = page.next_page_token;
    }
}

fn task_request(
    person: &str,
    by: &str,
    owner: &str,
    description: &str,
    due: String,
) -> v1::CreateTaskRequest {
    v1::CreateTaskRequest {
        context: ctx(by),
        person_id: person.into(),
        task: Some(v1::Task {
            description: description.into(),
            owner: Some(v1::MemberRef {
                organisation: owner.into(),
                practitioner: String::new(),
            }),
            due,
            priority: v1::Priority::Routine as i32,
            basis: None,
        }),
    }
}

/// The care coordinator as the single contact: the GP's care team around a person has no
/// named coordinator, so the person appears on each team organisation's "no coordinator"
/// worklist until one is named; the coordinator then hands out tasks (one from a plan
/// activity) which appear on their owners' task worklists by due date and leave them when
/// done; the plan's review appears for every team organisation and activity owner; an
/// assessment awaiting a contribution is listed, overdue, for the assessor until it
/// contributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn care_coordinator_as_the_single_contact() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    let person = register_with_gp(&mut c, 330, "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "ASC").await.unwrap();
    let now = stack.count().await;
    use v1::WorklistKind as K;
    for org in ["GP-A", "ASC"] {
        let items = worklist(&mut q, org, K::NoCoordinator, now, |_| {})
            .await
            .unwrap();
        assert_eq!(items.len(), 1, "{org}");
        assert_eq!(items[0].person_id, person);
        assert_eq!(items[0].due, date_days_ago(0), "on the team since today");
        assert!(!items[0].overdue);
    }
    let named = c
        .name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            member: Some(v1::MemberRef {
                organisation: "ASC".into(),
                practitioner: String::new(),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    for org in ["GP-A", "ASC"] {
        let items = worklist(&mut q, org, K::NoCoordinator, named.log_position, |_| {})
            .await
            .unwrap();
        assert!(items.is_empty(), "{org}: a coordinator is named");
    }

    // The plan gives community nursing an activity; its review is on the worklists of the
    // team and of the activity's owner, within the period asked for.
    let agreed = c
        .agree_care_plan(signed(v1::AgreeCarePlanRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            plan: Some(v1::PlanContent {
                goals: vec!["To stay at home and see my grandchildren".into()],
                activities: vec![v1::Activity {
                    description: "Weekly wound check".into(),
                    responsible_organisation: "COMM".into(),
                    ..Default::default()
                }],
                review_date: date_days_ahead(28),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    for org in ["GP-A", "ASC", "COMM"] {
        let due = worklist(&mut q, org, K::ReviewsDue, agreed.log_position, |r| {
            r.due_to = date_days_ahead(30);
        })
        .await
        .unwrap();
        let due: Vec<(&str, &str)> = due
            .iter()
            .map(|i| (i.person_id.as_str(), i.due.as_str()))
            .collect();
        let expected = date_days_ahead(28);
        // COMM has no ground (an activity alone is not one): it sees nothing.
        if org == "COMM" {
            assert!(due.is_empty());
        } else {
            assert_eq!(due, vec![(person.as_str(), expected.as_str())], "{org}");
        }
        let not_yet = worklist(&mut q, org, K::ReviewsDue, agreed.log_position, |r| {
            r.due_to = date_days_ahead(7);
        })
        .await
        .unwrap();
        assert!(not_yet.is_empty(), "{org}: not due within a week");
    }

    // The coordinator hands out tasks: to the GP, from the plan's activity, and one on its own.
    let mut from_plan = task_request(
        &person,
        "ASC",
        "GP-A",
        "Medication review",
        date_days_ahead(5),
    );
    from_plan.task.as_mut().unwrap().basis = Some(v1::TaskBasis {
        basis: Some(v1::task_basis::Basis::PlanActivity(v1::PlanActivityRef {
            plan_version: 1,
            activity: 0,
        })),
    });
    let review = c.create_task(signed(from_plan)).await.unwrap().into_inner();
    let mut urgent = task_request(
        &person,
        "ASC",
        "GP-A",
        "Call about new symptoms",
        date_days_ahead(5),
    );
    urgent.task.as_mut().unwrap().priority = v1::Priority::Urgent as i32;
    let call = c.create_task(signed(urgent)).await.unwrap().into_inner();
    let own = c
        .create_task(signed(task_request(
            &person,
            "ASC",
            "ASC",
            "Check the key safe",
            date_days_ahead(0),
        )))
        .await
        .unwrap()
        .into_inner();
    let tasks = worklist(&mut q, "GP-A", K::Tasks, own.log_position, |_| {})
        .await
        .unwrap();
    // Same due day: urgent before routine.
    let ids: Vec<&str> = tasks.iter().map(|t| t.item_id.as_str()).collect();
    assert_eq!(
        ids,
        vec![call.aggregate_id.as_str(), review.aggregate_id.as_str()]
    );
    assert_eq!(tasks[1].description, "Medication review");
    assert_eq!(tasks[1].status, v1::TaskStatus::Requested as i32);
    let mine = worklist(&mut q, "ASC", K::Tasks, own.log_position, |_| {})
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].due, date_days_ago(0));
    assert!(!mine[0].overdue, "due today is not overdue");
    assert!(
        worklist(&mut q, "ASC", K::Tasks, own.log_position, |r| r.overdue =
            true)
        .await
        .unwrap()
        .is_empty()
    );

    // The GP works the call; the coordinator cancels the review (it asked for it), with a
    // reason. Only the owner may do the rest.
    let status = |org: &str, task: &str, s: v1::TaskStatus, reason: &str| {
        signed(v1::ChangeTaskStatusRequest {
            context: ctx(org),
            person_id: person.clone(),
            task_id: task.into(),
            status: s as i32,
            reason: reason.into(),
        })
    };
    let before = stack.count().await;
    let refused = c
        .change_task_status(status(
            "ASC",
            &call.aggregate_id,
            v1::TaskStatus::Completed,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = c
        .change_task_status(status(
            "GP-A",
            &call.aggregate_id,
            v1::TaskStatus::Completed,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "requested cannot jump to completed: {refused:?}"
    );
    let refused = c
        .change_task_status(status(
            "GP-A",
            &call.aggregate_id,
            v1::TaskStatus::Failed,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("reason"), "{refused:?}");
    assert_eq!(stack.count().await, before, "refusals append nothing");
    for s in [
        v1::TaskStatus::Accepted,
        v1::TaskStatus::InProgress,
        v1::TaskStatus::Completed,
    ] {
        c.change_task_status(status("GP-A", &call.aggregate_id, s, ""))
            .await
            .unwrap();
    }
    let cancelled = c
        .change_task_status(status(
            "ASC",
            &review.aggregate_id,
            v1::TaskStatus::Cancelled,
            "Reviewed at the MDT instead",
        ))
        .await
        .unwrap()
        .into_inner();
    let tasks = worklist(&mut q, "GP-A", K::Tasks, cancelled.log_position, |_| {})
        .await
        .unwrap();
    assert!(
        tasks.is_empty(),
        "completed and cancelled tasks leave the worklist"
    );

    // Reassigned with a reason: it moves to the new owner's list.
    let moved = c
        .reassign_task(signed(v1::ReassignTaskRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            task_id: own.aggregate_id.clone(),
            owner: Some(v1::MemberRef {
                organisation: "GP-A".into(),
                practitioner: "dr-3".into(),
            }),
            reason: "The GP visits tomorrow".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        worklist(&mut q, "ASC", K::Tasks, moved.log_position, |_| {})
            .await
            .unwrap()
            .is_empty()
    );
    let gp = worklist(&mut q, "GP-A", K::Tasks, moved.log_position, |r| {
        r.practitioner = "dr-3".into();
    })
    .await
    .unwrap();
    assert_eq!(gp.len(), 1);
    assert_eq!(gp[0].practitioner, "dr-3");
    assert!(
        worklist(&mut q, "GP-A", K::Tasks, moved.log_position, |r| r
            .practitioner =
            "dr-9".into())
        .await
        .unwrap()
        .is_empty()
    );

    // The record tells each task's story.
    let rec = record(&mut q, "GP-A", &person, moved.log_position)
        .await
        .unwrap();
    assert_eq!(rec.tasks.len(), 3);
    let story = rec
        .tasks
        .iter()
        .find(|t| t.task_id == review.aggregate_id)
        .unwrap();
    assert_eq!(story.requester, "ASC");
    assert_eq!(story.status, v1::TaskStatus::Cancelled as i32);
    let last = story.history.last().unwrap();
    assert_eq!(
        (last.organisation.as_str(), last.reason.as_str()),
        ("ASC", "Reviewed at the MDT instead")
    );
    assert!(story.ended_at.is_some());
    let basis = story.task.as_ref().unwrap().basis.as_ref().unwrap();
    assert!(matches!(
        basis.basis,
        Some(v1::task_basis::Basis::PlanActivity(_))
    ));
    let own_view = rec
        .tasks
        .iter()
        .find(|t| t.task_id == own.aggregate_id)
        .unwrap();
    assert_eq!(own_view.reassignments.len(), 1);
    assert_eq!(own_view.reassignments[0].reason, "The GP visits tomorrow");
    assert_eq!(
        own_view
            .task
            .as_ref()
            .unwrap()
            .owner
            .as_ref()
            .unwrap()
            .organisation,
        "GP-A"
    );

    // An assessment naming ASC, due last week, awaits its contribution (overdue) until given.
    let requested = c
        .request_assessment(signed(v1::RequestAssessmentRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            request: Some(v1::AssessmentRequest {
                kind: v1::AssessmentKind::CareActNeeds as i32,
                assessors: vec!["ASC".into()],
                referral_id: String::new(),
                due_by: date_days_ago(7),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let waiting = worklist(
        &mut q,
        "ASC",
        K::AwaitingContribution,
        requested.log_position,
        |r| {
            r.overdue = true;
        },
    )
    .await
    .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].item_id, requested.aggregate_id);
    assert!(waiting[0].overdue);
    let given = c
        .contribute_to_assessment(signed(v1::ContributeToAssessmentRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            assessment_id: requested.aggregate_id.clone(),
            organisation: "ASC".into(),
            summary: "Manages personal care with prompting".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        worklist(
            &mut q,
            "ASC",
            K::AwaitingContribution,
            given.log_position,
            |_| {}
        )
        .await
        .unwrap()
        .is_empty()
    );

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Tasks and worklists as an attacker would try them: a task cannot hand a record to an
/// organisation without a ground; bad input names the field and appends nothing; another
/// organisation's worklist is refused; an organisation the person objected to, or whose
/// agreement leaves tasks out, sees nothing of them on its worklist or in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_give_no_access_and_worklists_show_only_what_may_be_read() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    let without_tasks: Vec<i32> = all_data_classes()
        .into_iter()
        .filter(|d| *d != v1::DataClass::Tasks as i32)
        .collect();
    register_partner(&mut c, "VOL-2", &[], &without_tasks)
        .await
        .unwrap();
    let person = register_with_gp(&mut c, 331, "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "ASC").await.unwrap();
    add_member(&mut c, &person, "GP-A", "VOL-2").await.unwrap();
    use v1::WorklistKind as K;

    let before = stack.count().await;
    // COMM has no relationship: it cannot be given a task, nor create one.
    let refused = c
        .create_task(signed(task_request(
            &person,
            "GP-A",
            "COMM",
            "Visit",
            date_days_ahead(1),
        )))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("task.owner.organisation"),
        "{refused:?}"
    );
    let refused = c
        .create_task(signed(task_request(
            &person,
            "COMM",
            "COMM",
            "Visit",
            date_days_ahead(1),
        )))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("no legitimate relationship"),
        "{refused:?}"
    );
    // Bad input names the field.
    for (request, field) in [
        (
            task_request(&person, "GP-A", "ASC", "Visit", date_days_ago(1)),
            "task.due",
        ),
        (
            task_request(&person, "GP-A", "ASC", "", date_days_ahead(1)),
            "task.description",
        ),
        (
            task_request(
                &person,
                "GP-A",
                "NOT-REGISTERED",
                "Visit",
                date_days_ahead(1),
            ),
            "task.owner.organisation",
        ),
        (
            task_request(&person, "GP-A", "ASC", "Visit", "tomorrow".into()),
            "task.due",
        ),
    ] {
        let refused = c.create_task(signed(request)).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    let mut no_priority = task_request(&person, "GP-A", "ASC", "Visit", date_days_ahead(1));
    no_priority.task.as_mut().unwrap().priority = 0;
    let refused = c.create_task(signed(no_priority)).await.unwrap_err();
    assert!(refused.message().contains("task.priority"), "{refused:?}");
    assert_eq!(stack.count().await, before, "refusals append nothing");

    for owner in ["ASC", "VOL-2"] {
        c.create_task(signed(task_request(
            &person,
            "GP-A",
            owner,
            "Shopping support",
            date_days_ahead(2),
        )))
        .await
        .unwrap();
    }
    let at = stack.count().await;
    // Another organisation's worklist is refused; a bad kind or date names the field.
    let refused = worklist(&mut q, "COMM", K::Tasks, at, |r| {
        r.organisation = "ASC".into()
    })
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    for (tweak, field) in [
        (
            Box::new(|r: &mut v1::ListWorklistRequest| r.kind = 0)
                as Box<dyn Fn(&mut v1::ListWorklistRequest)>,
            "kind",
        ),
        (
            Box::new(|r: &mut v1::ListWorklistRequest| r.kind = 99),
            "kind",
        ),
        (
            Box::new(|r: &mut v1::ListWorklistRequest| r.due_from = "2026-13-01".into()),
            "due_from",
        ),
        (
            Box::new(|r: &mut v1::ListWorklistRequest| {
                r.due_from = "2026-06-02".into();
                r.due_to = "2026-06-01".into();
            }),
            "due_to",
        ),
        (
            Box::new(|r: &mut v1::ListWorklistRequest| r.page_token = "forged".into()),
            "page_token",
        ),
    ] {
        let refused = worklist(&mut q, "ASC", K::Tasks, at, |r| tweak(r))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    // COMM, unrelated, sees nothing; VOL-2's agreement leaves tasks out: nothing listed, and
    // the record withholds them.
    assert!(
        worklist(&mut q, "COMM", K::Tasks, at, |_| {})
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        worklist(&mut q, "VOL-2", K::Tasks, at, |_| {})
            .await
            .unwrap()
            .is_empty()
    );
    let rec = record(&mut q, "VOL-2", &person, at).await.unwrap();
    assert!(rec.tasks.is_empty());
    assert!(
        rec.withheld_classes
            .contains(&(v1::DataClass::Tasks as i32))
    );
    assert_eq!(
        worklist(&mut q, "ASC", K::Tasks, at, |_| {})
            .await
            .unwrap()
            .len(),
        1
    );

    // The person objects to ASC (recorded by the GP on their behalf): its worklists drop them.
    let objected = c
        .record_consent(signed(v1::RecordConsentRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            terms: Some(v1::ConsentTerms {
                decision: v1::ConsentDecision::Deny as i32,
                purpose: v1::Purpose::DirectCare as i32,
                partners: vec!["ASC".into()],
                data_classes: vec![],
                valid_from: date_days_ago(0),
                valid_until: String::new(),
                capacity_assessed: true,
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    for kind in [K::Tasks, K::NoCoordinator] {
        let items = worklist(&mut q, "ASC", kind, objected.log_position, |_| {})
            .await
            .unwrap();
        assert!(items.is_empty(), "{kind:?} after the objection");
    }
    // The GP still sees the person as having no coordinator.
    let gp = worklist(
        &mut q,
        "GP-A",
        K::NoCoordinator,
        objected.log_position,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(gp.len(), 1);

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Falls prevention: the GP refers to the community falls service, whose therapist agrees a
/// plan with activities for itself, adult social care and a voluntary group; a revision
/// cannot replace the activities (so nobody's disappears) but names what it ends and adds;
/// a revision made from an old version is ABORTED; the review is on the team's worklist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_prevention() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    register_partner(&mut c, "VOL-3", &[], &all_data_classes())
        .await
        .unwrap();
    let person = register_with_gp(&mut c, 340, "GP-A").await.unwrap();
    let referral = refer(&mut c, &person, "GP-A", "COMM").await.unwrap();
    for action in [v1::ReferralAction::Receive, v1::ReferralAction::Accept] {
        c.progress_referral(signed(referral_action(&person, &referral, action, "COMM")))
            .await
            .unwrap();
    }
    // The falls service joins the care team (its referral is its ground) and adds the
    // practice, social care and the voluntary group.
    add_member(&mut c, &person, "COMM", "COMM").await.unwrap();
    for org in ["GP-A", "ASC", "VOL-3"] {
        add_member(&mut c, &person, "COMM", org).await.unwrap();
    }
    let activity = |description: &str, org: &str| v1::Activity {
        description: description.into(),
        responsible_organisation: org.into(),
        ..Default::default()
    };
    let goals = vec!["To walk to church on Sundays without falling".to_owned()];
    let agreed = c
        .agree_care_plan(signed(v1::AgreeCarePlanRequest {
            context: ctx("COMM"),
            person_id: person.clone(),
            plan: Some(v1::PlanContent {
                goals: goals.clone(),
                activities: vec![
                    activity("Strength and balance exercises, 12 weeks", "COMM"),
                    activity("Grab rails and a bath seat", "ASC"),
                    activity("Weekly strength and balance class", "VOL-3"),
                ],
                review_date: date_days_ahead(84),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let revise = |based_on: u32,
                  activities: Vec<v1::Activity>,
                  changes: Vec<v1::activity_change::Change>| {
        signed(v1::ReviseCarePlanRequest {
            context: ctx("COMM"),
            person_id: person.clone(),
            based_on_version: based_on,
            plan: Some(v1::PlanContent {
                goals: goals.clone(),
                activities,
                review_date: date_days_ahead(84),
            }),
            reason: "Six-week review with the person".into(),
            activity_changes: changes
                .into_iter()
                .map(|c| v1::ActivityChange { change: Some(c) })
                .collect(),
        })
    };
    use v1::activity_change::Change;
    let end = |index: u32, status: v1::ActivityStatus, reason: &str| {
        Change::End(v1::ActivityEnd {
            index,
            status: status as i32,
            reason: reason.into(),
        })
    };
    // Replacing the list (here: leaving social care's and the group's activities out) is
    // refused, naming the field; so is ending an activity the plan does not have, or ending
    // without a final status. Nothing is appended.
    let before = stack.count().await;
    for (request, field) in [
        (
            revise(
                1,
                vec![activity("Strength and balance exercises, 12 weeks", "COMM")],
                vec![],
            ),
            "plan.activities",
        ),
        (
            revise(
                1,
                vec![],
                vec![end(7, v1::ActivityStatus::Completed, "Done")],
            ),
            "activity_changes[0].index",
        ),
        (
            revise(
                1,
                vec![],
                vec![end(0, v1::ActivityStatus::InProgress, "Done")],
            ),
            "activity_changes[0].end.status",
        ),
        (
            revise(
                1,
                vec![],
                vec![Change::Add(activity("Home visit", "NOT-REGISTERED"))],
            ),
            "activity_changes[0].add.responsible_organisation",
        ),
    ] {
        let refused = c.revise_care_plan(request).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    assert_eq!(stack.count().await, before, "refusals append nothing");

    // The therapist's exercises are done; a follow-up is added; the others stay as they were.
    let mut started = activity("Weekly strength and balance class", "VOL-3");
    started.status = v1::ActivityStatus::InProgress as i32;
    let revised = c
        .revise_care_plan(revise(
            1,
            vec![],
            vec![
                end(
                    0,
                    v1::ActivityStatus::Completed,
                    "Completed the 12 weeks; walks with a stick",
                ),
                Change::Update(v1::ActivityUpdate {
                    index: 2,
                    activity: Some(started),
                }),
                Change::Add(activity("Falls review at 6 months", "GP-A")),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    // A second revision made from version 1 is refused ABORTED: nothing is overwritten.
    let stale = c
        .revise_care_plan(revise(
            1,
            vec![],
            vec![end(1, v1::ActivityStatus::Cancelled, "Not needed")],
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    // Ended is final.
    let refused = c
        .revise_care_plan(revise(
            2,
            vec![],
            vec![end(0, v1::ActivityStatus::Stopped, "Again")],
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    let rec = record(&mut q, "ASC", &person, revised.log_position)
        .await
        .unwrap();
    let plan = rec.care_plan.as_ref().unwrap();
    assert_eq!(plan.version, 2);
    let acts: Vec<(&str, &str, i32, &str)> = plan
        .plan
        .as_ref()
        .unwrap()
        .activities
        .iter()
        .map(|a| {
            (
                a.description.as_str(),
                a.responsible_organisation.as_str(),
                a.status,
                a.status_reason.as_str(),
            )
        })
        .collect();
    use v1::ActivityStatus as S;
    assert_eq!(
        acts,
        vec![
            (
                "Strength and balance exercises, 12 weeks",
                "COMM",
                S::Completed as i32,
                "Completed the 12 weeks; walks with a stick"
            ),
            (
                "Grab rails and a bath seat",
                "ASC",
                S::NotStarted as i32,
                ""
            ),
            (
                "Weekly strength and balance class",
                "VOL-3",
                S::InProgress as i32,
                ""
            ),
            ("Falls review at 6 months", "GP-A", S::NotStarted as i32, ""),
        ]
    );
    assert_eq!(plan.history.len(), 2);
    assert_eq!(plan.history[1].activity_changes.len(), 3);
    assert_eq!(plan.history[1].reason, "Six-week review with the person");
    let _ = agreed;

    // The review is on the worklists of the team, within the period asked for.
    for org in ["COMM", "GP-A", "ASC", "VOL-3"] {
        let due = worklist(
            &mut q,
            org,
            v1::WorklistKind::ReviewsDue,
            revised.log_position,
            |r| {
                r.due_from = date_days_ahead(80);
                r.due_to = date_days_ahead(90);
            },
        )
        .await
        .unwrap();
        assert_eq!(due.len(), 1, "{org}");
        assert_eq!(due[0].due, date_days_ahead(84));
    }

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

fn member(org: &str, practitioner: &str) -> Option<v1::MemberRef> {
    Some(v1::MemberRef {
        organisation: org.into(),
        practitioner: practitioner.into(),
    })
}

/// Community mental health team: a care team around a person with no hospital episode (the
/// GP, the team's psychologist and care coordinator, the practice pharmacist, a housing
/// officer), a named coordinator whose caseload holds the person, and an MDT whose action
/// for housing becomes that organisation's task and is completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn community_mental_health_team() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    for org in ["CMHT-1", "HOUSING-1"] {
        register_partner(&mut c, org, &[], &all_data_classes())
            .await
            .unwrap();
    }
    let person = register_with_gp(&mut c, 350, "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    use v1::CareTeamRole as R;
    for (org, practitioner, role) in [
        ("CMHT-1", "psy-1", R::Psychologist),
        ("CMHT-1", "cc-4", R::MentalHealth),
        ("GP-A", "pharm-2", R::Pharmacist),
        ("HOUSING-1", "", R::HousingOfficer),
    ] {
        c.add_care_team_member(signed(v1::AddCareTeamMemberRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            member: member(org, practitioner),
            role: role as i32,
            since: date_days_ago(0),
        }))
        .await
        .unwrap();
    }
    let named = c
        .name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
            context: ctx("CMHT-1"),
            person_id: person.clone(),
            member: member("CMHT-1", "cc-4"),
        }))
        .await
        .unwrap()
        .into_inner();
    let caseload = q
        .get_caseload(as_org(
            "CMHT-1",
            v1::GetCaseloadRequest {
                owner: Some(v1::get_caseload_request::Owner::Coordinator(
                    v1::MemberRef {
                        organisation: "CMHT-1".into(),
                        practitioner: "cc-4".into(),
                    },
                )),
                min_log_position: named.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caseload.person_ids, vec![person.clone()]);
    // No hospital: the person is on nobody's discharge board, and nobody's "no coordinator".
    for org in ["GP-A", "CMHT-1", "HOUSING-1"] {
        let items = worklist(
            &mut q,
            org,
            v1::WorklistKind::NoCoordinator,
            named.log_position,
            |_| {},
        )
        .await
        .unwrap();
        assert!(items.is_empty(), "{org}");
    }

    // The MDT: an action for housing, handed over as its task, done.
    let meeting = c
        .record_meeting(signed(v1::RecordMeetingRequest {
            context: ctx("CMHT-1"),
            person_id: person.clone(),
            meeting: Some(v1::MeetingRecord {
                held_at: ts_hours_ago(2),
                attendees: vec!["CMHT-1".into(), "GP-A".into(), "HOUSING-1".into()],
                decisions: vec!["Support to keep the tenancy; review medication".into()],
                actions: vec![v1::MeetingAction {
                    description: "Arrange a tenancy support visit".into(),
                    owner: "HOUSING-1".into(),
                    due_by: date_days_ahead(7),
                }],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut request = task_request(
        &person,
        "CMHT-1",
        "HOUSING-1",
        "Tenancy support visit",
        date_days_ahead(7),
    );
    request.task.as_mut().unwrap().basis = Some(v1::TaskBasis {
        basis: Some(v1::task_basis::Basis::MeetingAction(v1::MeetingActionRef {
            meeting_id: meeting.aggregate_id.clone(),
            action: 1,
        })),
    });
    let task = c.create_task(signed(request)).await.unwrap().into_inner();
    let listed = worklist(
        &mut q,
        "HOUSING-1",
        v1::WorklistKind::Tasks,
        task.log_position,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 1);
    for s in [
        v1::TaskStatus::Accepted,
        v1::TaskStatus::InProgress,
        v1::TaskStatus::Completed,
    ] {
        c.change_task_status(signed(v1::ChangeTaskStatusRequest {
            context: ctx("HOUSING-1"),
            person_id: person.clone(),
            task_id: task.aggregate_id.clone(),
            status: s as i32,
            reason: String::new(),
        }))
        .await
        .unwrap();
    }
    let done = c
        .complete_meeting_action(signed(v1::CompleteMeetingActionRequest {
            context: ctx("HOUSING-1"),
            person_id: person.clone(),
            meeting_id: meeting.aggregate_id.clone(),
            action: 1,
            note: "Visit booked for Thursday".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let rec = record(&mut q, "GP-A", &person, done.log_position)
        .await
        .unwrap();
    assert!(rec.discharge_episodes.is_empty());
    let team = rec.care_team.as_ref().unwrap();
    let roles: Vec<i32> = team.members.iter().map(|m| m.role).collect();
    for role in [R::Psychologist, R::Pharmacist, R::HousingOfficer] {
        assert!(roles.contains(&(role as i32)), "{role:?}");
    }
    assert_eq!(team.coordinator, member("CMHT-1", "cc-4"));
    assert_eq!(rec.meetings[0].completions.len(), 1);
    assert_eq!(rec.tasks[0].status, v1::TaskStatus::Completed as i32);
    assert!(
        worklist(
            &mut q,
            "HOUSING-1",
            v1::WorklistKind::Tasks,
            done.log_position,
            |_| {}
        )
        .await
        .unwrap()
        .is_empty()
    );

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Single point of access: referrals from the practice and the hospital arrive at adult
/// social care's front door, listed by priority then age; one is accepted, the other
/// redirected (rejected with a reason, then referred again to community nursing naming the
/// referral it replaces). The referrers, who gain no ground by referring, read only their
/// referral's receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_point_of_access() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    let person = register(&mut c, 360).await.unwrap();
    let other = register(&mut c, 361).await.unwrap();
    let mut routine = referral_request(&person, "GP-A", "ASC");
    routine.referral.as_mut().unwrap().priority = v1::Priority::Routine as i32;
    let from_gp = c.make_referral(signed(routine)).await.unwrap().into_inner();
    let from_hospital = c
        .make_referral(signed(referral_request(&other, "HOSP-A", "ASC")))
        .await
        .unwrap()
        .into_inner();
    let inbox = q
        .list_referral_inbox(as_org(
            "ASC",
            v1::ListReferralInboxRequest {
                service: "ASC".into(),
                min_log_position: from_hospital.log_position,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let order: Vec<&str> = inbox
        .entries
        .iter()
        .map(|e| e.referral_id.as_str())
        .collect();
    assert_eq!(
        order,
        vec![
            from_hospital.aggregate_id.as_str(),
            from_gp.aggregate_id.as_str()
        ],
        "urgent before routine"
    );
    // Triage: the hospital's is accepted; the practice's is redirected.
    for action in [v1::ReferralAction::Receive, v1::ReferralAction::Accept] {
        c.progress_referral(signed(referral_action(
            &other,
            &from_hospital.aggregate_id,
            action,
            "ASC",
        )))
        .await
        .unwrap();
    }
    c.progress_referral(signed(referral_action(
        &person,
        &from_gp.aggregate_id,
        v1::ReferralAction::Receive,
        "ASC",
    )))
    .await
    .unwrap();
    let mut reject = referral_action(
        &person,
        &from_gp.aggregate_id,
        v1::ReferralAction::Reject,
        "ASC",
    );
    reject.reason = "Nursing need, not social care: redirect to community nursing".into();
    let rejected = c
        .progress_referral(signed(reject))
        .await
        .unwrap()
        .into_inner();
    // The practice gained no ground by referring: no record, only its referral's receipt.
    let refused = record(&mut q, "GP-A", &person, rejected.log_position)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let receipt = q
        .get_referral_receipt(as_org(
            "GP-A",
            v1::GetReferralReceiptRequest {
                person_id: person.clone(),
                referral_id: from_gp.aggregate_id.clone(),
                min_log_position: rejected.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt.status, "rejected");
    assert!(receipt.reason.contains("community nursing"));
    let mut again = referral_request(&person, "GP-A", "COMM");
    again.referral.as_mut().unwrap().replaces = from_gp.aggregate_id.clone();
    let redirected = c.make_referral(signed(again)).await.unwrap().into_inner();
    let comm = q
        .list_referral_inbox(as_org(
            "COMM",
            v1::ListReferralInboxRequest {
                service: "COMM".into(),
                min_log_position: redirected.log_position,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(comm.entries.len(), 1);
    assert_eq!(comm.entries[0].referral_id, redirected.aggregate_id);
    // Social care's ground ended when it rejected the referral: even its own list of ended
    // referrals no longer shows this person.
    let ended = q
        .list_referral_inbox(as_org(
            "ASC",
            v1::ListReferralInboxRequest {
                service: "ASC".into(),
                status: "rejected".into(),
                min_log_position: redirected.log_position,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ended.entries.is_empty(), "{ended:?}");
    // Community nursing, now receiving, reads the record and sees what it replaces.
    let rec = record(&mut q, "COMM", &person, redirected.log_position)
        .await
        .unwrap();
    let view = rec
        .referrals
        .iter()
        .find(|r| r.referral_id == redirected.aggregate_id)
        .unwrap();
    assert_eq!(
        view.referral.as_ref().unwrap().replaces,
        from_gp.aggregate_id
    );

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Tell the story once: the registered practice corrects the person's contact details once,
/// with a reason, and every organisation caring for them reads the corrected details and who
/// corrected what, when and why; a correction made from an out-of-date version is ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_the_story_once() {
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    let person = register_with_gp(&mut c, 370, "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "ASC").await.unwrap();
    add_member(&mut c, &person, "GP-A", "COMM").await.unwrap();
    let at = stack.count().await;
    let before = record(&mut q, "GP-A", &person, at).await.unwrap();
    let correct = |based_on: u64| {
        signed(v1::CorrectPersonDetailsRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            correction: Some(v1::Correction {
                contact: Some("07700 900123".into()),
                communication_needs: Some("Hard of hearing: please face me".into()),
                ..Default::default()
            }),
            reason: "The person told us at their appointment".into(),
            based_on_version: based_on,
        })
    };
    let corrected = c
        .correct_person_details(correct(before.person_version))
        .await
        .unwrap()
        .into_inner();
    let stale = c
        .correct_person_details(correct(before.person_version))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    for org in ["GP-A", "ASC", "COMM"] {
        let rec = record(&mut q, org, &person, corrected.log_position)
            .await
            .unwrap();
        let profile = rec.profile.as_ref().unwrap();
        assert_eq!(profile.contact, "07700 900123", "{org}");
        assert_eq!(
            profile.communication_needs,
            "Hard of hearing: please face me"
        );
        let last = rec.corrections.last().unwrap();
        assert_eq!(last.organisation, "GP-A");
        assert_eq!(last.reason, "The person told us at their appointment");
        let mut fields = last.fields.clone();
        fields.sort();
        assert_eq!(fields, vec!["communication_needs", "contact"]);
    }

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Co-production: the person, signed in with their own citizen identity, says what matters
/// to them; the team writes the plan's goals in their words; the person reads their own plan
/// and gives feedback, which the team reads. A lower identity level may give feedback but
/// not change the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_production() {
    use carewoven_access::citizen::testing as citizens;
    use carewoven_governance::IdentityLevel;
    let Services {
        stack,
        views,
        gateway,
        dir: _dir,
        ..
    } = Services::start().await.unwrap();
    let mut c = stack.client.clone();
    let mut q = QueryServiceClient::new(views.channel());
    let person = register_with_gp(&mut c, 380, "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "GP-A").await.unwrap();
    add_member(&mut c, &person, "GP-A", "ASC").await.unwrap();
    let p9 = citizens::token(&test_nhs_number(380), IdentityLevel::P9);
    let p5 = citizens::token(&test_nhs_number(380), IdentityLevel::P5);
    fn bearer<T>(token: &str, m: T) -> tonic::Request<T> {
        carewoven_access::grpc::with_token(tonic::Request::new(m), token)
    }
    let own = || {
        Some(v1::CommandContext {
            command_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
    };
    let at = stack.count().await;
    let mine = q
        .get_care_record(bearer(
            &p9,
            v1::GetCareRecordRequest {
                person_id: String::new(),
                min_log_position: at,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let words = "Getting back to my choir on Thursdays";
    let correction = |version: u64| v1::CorrectPersonDetailsRequest {
        context: own(),
        person_id: person.clone(),
        correction: Some(v1::Correction {
            what_matters: Some(words.into()),
            ..Default::default()
        }),
        reason: "In my own words".into(),
        based_on_version: version,
    };
    // At P5 the person may not change the record; nothing is appended.
    let before = stack.count().await;
    let refused = c
        .correct_person_details(bearer(&p5, correction(mine.person_version)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(stack.count().await, before);
    c.correct_person_details(bearer(&p9, correction(mine.person_version)))
        .await
        .unwrap();
    // The team reads what matters and writes the plan's goal in the person's words.
    let now = stack.count().await;
    let rec = record(&mut q, "ASC", &person, now).await.unwrap();
    let said = rec.profile.as_ref().unwrap().what_matters.clone();
    assert_eq!(said, words);
    let agreed = c
        .agree_care_plan(signed(v1::AgreeCarePlanRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            plan: Some(v1::PlanContent {
                goals: vec![said],
                activities: vec![v1::Activity {
                    description: "Transport to choir practice".into(),
                    responsible_organisation: "ASC".into(),
                    ..Default::default()
                }],
                review_date: date_days_ahead(42),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let mine = q
        .get_care_record(bearer(
            &p9,
            v1::GetCareRecordRequest {
                person_id: String::new(),
                min_log_position: agreed.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let goals = &mine
        .care_plan
        .as_ref()
        .unwrap()
        .plan
        .as_ref()
        .unwrap()
        .goals;
    assert_eq!(goals, &vec![words.to_owned()]);
    // Feedback at P5, read by the team.
    let given = c
        .record_feedback(bearer(
            &p5,
            v1::RecordFeedbackRequest {
                context: own(),
                person_id: person.clone(),
                feedback: Some(v1::FeedbackRecord {
                    source: v1::FeedbackSource::Person as i32,
                    anonymous: false,
                    text: "The transport has made a real difference".into(),
                    rating: 5,
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let rec = record(&mut q, "ASC", &person, given.log_position)
        .await
        .unwrap();
    let fb = rec.feedback.last().unwrap().feedback.as_ref().unwrap();
    assert_eq!(
        (fb.rating, fb.source),
        (5, v1::FeedbackSource::Person as i32)
    );
    assert_eq!(fb.text, "The transport has made a real difference");

    views.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
