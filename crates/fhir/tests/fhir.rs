//! The FHIR API end to end: a real nats-server, the command service, the views service with
//! its FHIR listener, plain HTTP/1.1 over 127.0.0.1 (the partner speaks no protobuf), and
//! every resource and Bundle the API answers with validated by an outside validator
//! (fhir.resources 6.4.0, FHIR R4 4.0.1: `scripts/fhir-validator`), plus the UK Core rules it
//! cannot check.

mod common;

use std::sync::Mutex;

use anyhow::{Context, Result};
use carewoven_governance::IdentityLevel;
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use carewoven_testkit::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::DESTINATIONS;
use common::NHS;

/// The views (with FHIR) beside a command service, and every body the API answered.
struct World {
    stack: Stack,
    views: Running,
    /// The gateway, whose access list is served as AuditEvent.
    gateway: Running,
    fhir: String,
    _dir: tempfile::TempDir,
    seen: Mutex<Vec<Value>>,
}

struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

impl World {
    async fn start() -> Result<Self> {
        let stack = Stack::start().await?;
        let dir = tempfile::tempdir()?;
        let fhir = format!("127.0.0.1:{}", free_port()?);
        let mut config =
            carewoven_views::Config::new(stack.nats.url(), dir.path().join("views.redb"));
        let (gateway, _) =
            start_gateway(carewoven_gateway::Config::for_nats(stack.nats.url())).await?;
        config.fhir_listen = Some(fhir.clone());
        config.fhir_audit_server = Some(format!("http://{}", gateway.addr));
        let views = start_views(config).await?;
        Ok(World {
            stack,
            views,
            gateway,
            fhir,
            _dir: dir,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// GET `path` over a fresh HTTP/1.1 connection, as `token`'s holder, after the views
    /// reached `position`.
    async fn get(&self, path: &str, token: Option<&str>, position: u64) -> Result<Answer> {
        let (status, head, body) = common::get(&self.fhir, path, token, position).await?;
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(body.clone());
        Ok(Answer {
            status,
            headers: head,
            body,
        })
    }

    /// GET that must answer 200.
    async fn ok(&self, path: &str, org: &str, position: u64) -> Result<Value> {
        let a = self.get(path, Some(&token(org)), position).await?;
        anyhow::ensure!(a.status == 200, "{path} as {org}: {} {}", a.status, a.body);
        Ok(a.body)
    }

    /// Validate everything answered so far with the outside validator.
    fn validate(&self) -> Result<()> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        common::validate(&seen)
    }
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|x| x["resource"].clone()).collect())
        .unwrap_or_default()
}

fn one(bundle: &Value, what: &str) -> Result<Value> {
    let e = entries(bundle);
    anyhow::ensure!(e.len() == 1, "{what}: expected one entry, got {bundle}");
    Ok(e[0].clone())
}

fn pos(reply: tonic::Response<v1::CommandReply>) -> u64 {
    reply.into_inner().log_position
}

fn has_extension(resource: &Value, name: &str, key: &str, value: &str) -> bool {
    resource["extension"].as_array().is_some_and(|xs| {
        xs.iter().any(|x| {
            x["url"].as_str().is_some_and(|u| u.ends_with(name))
                && (x[key] == value || x[key]["code"] == value)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partner_follows_a_discharge_to_assess_journey_through_fhir_alone() -> Result<()> {
    use pd::Step;
    let w = World::start().await?;
    let mut c = w.stack.client.clone();
    let nhs = test_nhs_number(71);
    let person = register_with_gp(&mut c, 71, "GP-A").await?;
    let episode = episode_ready(&mut c, &person).await?;
    let referral = refer(&mut c, &person, "HOSP-A", "ASC-D2A").await?;
    let mut at = pos(c
        .progress_referral(signed(referral_action(
            &person,
            &referral,
            v1::ReferralAction::Receive,
            "ASC-D2A",
        )))
        .await?);

    // The partner (the council's D2A team) traces the person by NHS number and birth date.
    let found = w
        .ok(
            &format!("/fhir/Patient?identifier={NHS}|{nhs}&birthdate=1941-03-02"),
            "ASC-D2A",
            at,
        )
        .await?;
    assert_eq!(found["type"], "searchset");
    let patient = one(&found, "Patient search")?;
    assert_eq!(patient["id"], person.as_str());
    assert_eq!(patient["identifier"][0]["system"], NHS);
    assert_eq!(patient["identifier"][0]["value"], nhs.as_str());
    assert_eq!(patient["birthDate"], "1941-03-02");
    assert_eq!(patient["name"][0]["family"], "Example");
    let id = patient["id"].as_str().context("id")?.to_owned();

    // In hospital, discharge ready since yesterday; the referral has been received.
    let encounter = one(
        &w.ok(&format!("/fhir/Encounter?patient={id}"), "ASC-D2A", at)
            .await?,
        "Encounter",
    )?;
    assert_eq!(encounter["id"], episode.as_str());
    assert_eq!(encounter["status"], "in-progress");
    assert!(has_extension(
        &encounter,
        "discharge-ready-date",
        "valueDate",
        &date_days_ago(1)
    ));
    assert!(encounter.get("hospitalization").is_none());
    let request = one(
        &w.ok(
            &format!("/fhir/ServiceRequest?patient=Patient/{id}"),
            "ASC-D2A",
            at,
        )
        .await?,
        "ServiceRequest",
    )?;
    assert_eq!(request["id"], referral.as_str());
    assert_eq!(request["status"], "active");
    assert_eq!(request["priority"], "urgent");
    assert_eq!(request["requester"]["identifier"]["value"], "HOSP-A");
    let task = one(
        &w.ok(&format!("/fhir/Task?patient={id}"), "ASC-D2A", at)
            .await?,
        "Task",
    )?;
    assert_eq!(task["status"], "received");

    // The journey goes on, written by the organisations over gRPC.
    common::accept_and_agree_discharge(&mut c, &person, &episode, &referral).await?;
    let sw = v1::MemberRef {
        organisation: "ASC-D2A".into(),
        practitioner: "SW-1".into(),
    };
    c.add_care_team_member(signed(v1::AddCareTeamMemberRequest {
        context: ctx("ASC-D2A"),
        person_id: person.clone(),
        member: Some(sw.clone()),
        role: v1::CareTeamRole::SocialWorker as i32,
        since: date_days_ago(0),
    }))
    .await?;
    c.name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
        context: ctx("ASC-D2A"),
        person_id: person.clone(),
        member: Some(sw.clone()),
    }))
    .await?;
    let plan = |goal: &str| v1::PlanContent {
        goals: vec![goal.into()],
        activities: vec![v1::Activity {
            description: "Reablement visits twice a day".into(),
            responsible_organisation: "ASC-D2A".into(),
            ..Default::default()
        }],
        review_date: date_days_ahead(14),
    };
    c.agree_care_plan(signed(v1::AgreeCarePlanRequest {
        context: ctx("ASC-D2A"),
        person_id: person.clone(),
        plan: Some(plan("Walk to the shop")),
    }))
    .await?;
    c.revise_care_plan(signed(v1::ReviseCarePlanRequest {
        context: ctx("ASC-D2A"),
        person_id: person.clone(),
        based_on_version: 1,
        plan: Some(plan("Walk to the allotment")),
        reason: "Goal agreed with the person".into(),
        // The reablement activity ends; the validator sees its status and reason.
        activity_changes: vec![v1::ActivityChange {
            change: Some(v1::activity_change::Change::End(v1::ActivityEnd {
                index: 0,
                status: v1::ActivityStatus::Completed as i32,
                reason: "Reablement goals met".into(),
            })),
        }],
    }))
    .await?;
    let assessment = c
        .request_assessment(signed(v1::RequestAssessmentRequest {
            context: ctx("ASC-D2A"),
            person_id: person.clone(),
            request: Some(v1::AssessmentRequest {
                kind: v1::AssessmentKind::CareActNeeds as i32,
                assessors: vec!["ASC-D2A".into()],
                referral_id: referral.clone(),
                due_by: date_days_ahead(7),
            }),
        }))
        .await?
        .into_inner()
        .aggregate_id;
    c.complete_assessment(signed(v1::CompleteAssessmentRequest {
        context: ctx("ASC-D2A"),
        person_id: person.clone(),
        assessment_id: assessment.clone(),
        findings: Some(v1::Findings {
            summary: "Needs help with meals and washing".into(),
            outcomes_not_achieved: vec![
                v1::CareActOutcome::ManagingNutrition as i32,
                v1::CareActOutcome::PersonalHygiene as i32,
            ],
            wellbeing_impact: "Low mood".into(),
            needs_arise_from_impairment_or_illness: true,
            significant_impact_on_wellbeing: true,
        }),
    }))
    .await?;
    c.record_consent(signed(v1::RecordConsentRequest {
        context: ctx("ASC-D2A"),
        person_id: person.clone(),
        terms: Some(v1::ConsentTerms {
            decision: v1::ConsentDecision::Permit as i32,
            purpose: v1::Purpose::CareCoordination as i32,
            partners: vec!["ASC-D2A".into()],
            data_classes: vec![],
            valid_from: date_days_ago(0),
            valid_until: String::new(),
            capacity_assessed: true,
        }),
    }))
    .await?;
    c.progress_discharge(signed(discharge_step(
        &person,
        &episode,
        Step::Discharge(pd::Discharge {
            discharged_at: ts_hours_ago(1),
            destination: "Home".into(),
            destination_code: "19".into(),
        }),
    )))
    .await?;
    at = pos(c
        .progress_discharge(signed(discharge_step_by(
            "ASC-D2A",
            &person,
            &episode,
            Step::AcceptHandover(pd::AcceptHandover {
                organisation: "ASC-D2A".into(),
            }),
        )))
        .await?);
    // The registered GP corrects the given name, from the version it read through FHIR.
    let seen_by_gp = w.ok(&format!("/fhir/Patient/{id}"), "GP-A", at).await?;
    let version: u64 = seen_by_gp["meta"]["versionId"]
        .as_str()
        .context("versionId")?
        .parse()?;
    at = pos(c
        .correct_person_details(signed(v1::CorrectPersonDetailsRequest {
            context: ctx("GP-A"),
            person_id: person.clone(),
            correction: Some(v1::Correction {
                given_name: Some("Adah".into()),
                ..Default::default()
            }),
            reason: "Spelling".into(),
            based_on_version: version,
        }))
        .await?);

    // Discharged home, coded with UK Core DischargeDestinationEngland.
    let encounter = one(
        &w.ok(&format!("/fhir/Encounter?patient={id}"), "ASC-D2A", at)
            .await?,
        "Encounter",
    )?;
    assert_eq!(encounter["status"], "finished");
    let disposition = &encounter["hospitalization"]["dischargeDisposition"];
    assert_eq!(disposition["coding"][0]["system"], DESTINATIONS);
    assert_eq!(disposition["coding"][0]["code"], "19");
    assert_eq!(disposition["text"], "Home");
    assert!(encounter["period"]["end"].is_string());
    assert!(has_extension(
        &encounter,
        "delay-reason",
        "valueCoding",
        // An older client's AWAITING_REABLEMENT, read as the national reason.
        "pathway_1_continuing_rehabilitation"
    ));
    // The D2A episode, its coordinator and pathway.
    let eoc = one(
        &w.ok(&format!("/fhir/EpisodeOfCare?patient={id}"), "ASC-D2A", at)
            .await?,
        "EpisodeOfCare",
    )?;
    assert_eq!(eoc["id"], episode.as_str());
    assert_eq!(eoc["status"], "active");
    assert_eq!(eoc["careManager"]["identifier"]["value"], "ASC-D2A/SW-1");
    assert!(has_extension(
        &eoc,
        "d2a-status",
        "valueCoding",
        "handover_accepted"
    ));
    assert!(
        eoc["type"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["coding"][0]["code"] == "1"))
    );
    // The handover, and the referral's workflow.
    let tasks = entries(
        &w.ok(&format!("/fhir/Task?patient={id}"), "ASC-D2A", at)
            .await?,
    );
    let handover = tasks
        .iter()
        .find(|t| t["id"] == episode.as_str())
        .context("the handover task")?;
    assert_eq!(handover["status"], "accepted");
    assert_eq!(handover["owner"]["identifier"]["value"], "ASC-D2A");
    let workflow = tasks
        .iter()
        .find(|t| t["id"] == referral.as_str())
        .context("the referral's task")?;
    assert_eq!(workflow["status"], "accepted");
    // The care plan, every version of it.
    let current = w.ok(&format!("/fhir/CarePlan/{id}"), "ASC-D2A", at).await?;
    assert_eq!(current["meta"]["versionId"], "2");
    assert_eq!(
        current["contained"][0]["description"]["text"],
        "Walk to the allotment"
    );
    let history = w
        .ok(&format!("/fhir/CarePlan/{id}/_history"), "ASC-D2A", at)
        .await?;
    assert_eq!(history["type"], "history");
    let versions: Vec<Value> = entries(&history)
        .iter()
        .map(|r| r["meta"]["versionId"].clone())
        .collect();
    assert_eq!(versions, ["2", "1"]);
    let first = w
        .ok(&format!("/fhir/CarePlan/{id}/_history/1"), "ASC-D2A", at)
        .await?;
    assert_eq!(
        first["contained"][0]["description"]["text"],
        "Walk to the shop"
    );
    let team = w.ok(&format!("/fhir/CareTeam/{id}"), "ASC-D2A", at).await?;
    assert!(team["participant"].as_array().is_some_and(|p| p.len() >= 2));
    // Care Act eligibility.
    let obs = one(
        &w.ok(&format!("/fhir/Observation?patient={id}"), "ASC-D2A", at)
            .await?,
        "Observation",
    )?;
    assert_eq!(obs["id"], assessment.as_str());
    assert_eq!(obs["status"], "final");
    assert_eq!(obs["valueCodeableConcept"]["coding"][0]["code"], "eligible");
    assert_eq!(
        obs["basedOn"][0]["reference"],
        format!("ServiceRequest/{referral}")
    );
    let consent = one(
        &w.ok(&format!("/fhir/Consent?patient={id}"), "ASC-D2A", at)
            .await?,
        "Consent",
    )?;
    assert_eq!(consent["provision"]["type"], "permit");
    // The correction, as Provenance: who, which field, never the values.
    let provenance = one(
        &w.ok(&format!("/fhir/Provenance?patient={id}"), "ASC-D2A", at)
            .await?,
        "Provenance",
    )?;
    assert_eq!(provenance["agent"][0]["who"]["identifier"]["value"], "GP-A");
    assert_eq!(provenance["reason"][0]["text"], "Corrected: given_name");
    assert!(!provenance.to_string().contains("Adah"));
    // Everything at once.
    let all = w
        .ok(&format!("/fhir/Patient/{id}/$everything"), "ASC-D2A", at)
        .await?;
    let mut types: Vec<String> = entries(&all)
        .iter()
        .filter_map(|r| r["resourceType"].as_str().map(str::to_owned))
        .collect();
    types.dedup();
    assert_eq!(
        types,
        [
            "Patient",
            "Encounter",
            "EpisodeOfCare",
            "CarePlan",
            "CareTeam",
            "ServiceRequest",
            "Task",
            "Observation",
            "Consent",
            "Provenance"
        ]
    );
    assert_eq!(entries(&all)[0]["name"][0]["given"][0], "Adah");
    // Every read was audited as a record read by the partner.
    let audited = w
        .stack
        .audit(&format!("cw.audit.{person}.ASC-D2A.record_read"))
        .await?;
    assert!(audited.len() >= 12, "{} audit records", audited.len());
    // Who accessed the record: the partner's own reads are there, from the gateway's list.
    let accesses = entries(
        &w.ok(&format!("/fhir/AuditEvent?patient={id}"), "ASC-D2A", at)
            .await?,
    );
    assert!(
        accesses
            .iter()
            .any(|a| a["agent"][0]["who"]["identifier"]["value"] == "ASC-D2A"
                && a["subtype"][0]["code"] == "record_read"
                && a["outcome"] == "0"
                && a["entity"][0]["what"]["reference"] == format!("Patient/{id}")),
        "{accesses:?}"
    );
    // What the server says it supports.
    let capability = w.get("/fhir/metadata", None, 0).await?;
    assert_eq!(capability.status, 200);
    assert_eq!(capability.body["fhirVersion"], "4.0.1");
    w.validate()?;
    w.views.stop().await?;
    w.gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_operation_outcomes_with_the_right_status() -> Result<()> {
    let w = World::start().await?;
    let mut c = w.stack.client.clone();
    let nhs = test_nhs_number(72);
    let person = register_with_gp(&mut c, 72, "GP-A").await?;
    let at = w.stack.log.last_sequence().await?;
    let gp = token("GP-A");
    let issue = |a: &Answer| a.body["issue"][0].clone();
    let outcome = |a: &Answer, status: u16, code: &str| {
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(a.body["resourceType"], "OperationOutcome");
        assert_eq!(issue(a)["code"], code, "{}", a.body);
    };
    // 401: no token, a forged one.
    let a = w.get(&format!("/fhir/Patient/{person}"), None, at).await?;
    outcome(&a, 401, "login");
    assert!(
        a.headers
            .to_lowercase()
            .contains("www-authenticate: bearer")
    );
    let a = w
        .get(&format!("/fhir/Patient/{person}"), Some("not.a.token"), at)
        .await?;
    outcome(&a, 401, "login");
    let a = w
        .get(&format!("/fhir/Encounter?patient={person}"), None, at)
        .await?;
    outcome(&a, 401, "login");
    // 403: a person may read their own record, not trace others; an unregistered
    // organisation may not trace anyone.
    let citizen = carewoven_access::citizen::testing::token(&nhs, IdentityLevel::P9);
    let own = w
        .get(&format!("/fhir/Patient/{person}"), Some(&citizen), at)
        .await?;
    assert_eq!(own.status, 200, "{}", own.body);
    let trace = format!("/fhir/Patient?identifier={NHS}|{nhs}&birthdate=1941-03-02");
    let a = w.get(&trace, Some(&citizen), at).await?;
    outcome(&a, 403, "forbidden");
    assert!(
        issue(&a)["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("NOT_OPEN_TO_CITIZENS"))
    );
    let a = w.get(&trace, Some(&token("NOT-REGISTERED")), at).await?;
    outcome(&a, 403, "forbidden");
    // 400, naming the parameter.
    let bad = [
        (format!("/fhir/Patient?identifier={NHS}|{nhs}"), "birthdate"),
        (
            format!("/fhir/Patient?identifier=urn:other|{nhs}&birthdate=1941-03-02"),
            "identifier",
        ),
        (
            format!("/fhir/Patient?identifier={NHS}|1234567890&birthdate=1941-03-02"),
            "identifier",
        ),
        (
            format!("/fhir/Patient?identifier={NHS}|{nhs}&birthdate=yesterday"),
            "birthdate",
        ),
        (
            "/fhir/Patient?name=Example&birthdate=1941-03-02".to_owned(),
            "name",
        ),
        ("/fhir/Encounter".to_owned(), "patient"),
        ("/fhir/Encounter?patient=not-a-uuid".to_owned(), "patient"),
        (
            format!("/fhir/Encounter?patient={person}&status=finished"),
            "status",
        ),
        (
            format!("/fhir/Encounter?patient={person}&patient={person}"),
            "patient",
        ),
        (
            format!("/fhir/Encounter?patient={person}&_format=xml"),
            "_format",
        ),
        ("/fhir/Patient/not-a-uuid".to_owned(), "id"),
        (format!("/fhir/CarePlan/{person}/_history/one"), "vid"),
    ];
    for (path, parameter) in bad {
        let a = w.get(&path, Some(&gp), at).await?;
        outcome(&a, 400, "invalid");
        assert_eq!(issue(&a)["expression"][0], parameter, "{path}: {}", a.body);
    }
    let mut stream = tokio::net::TcpStream::connect(&w.fhir).await?;
    stream
        .write_all(
            format!(
                "GET /fhir/Patient/{person} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gp}\r\nCarewoven-Min-Log-Position: soon\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("carewoven-min-log-position"), "{raw}");
    // 404: what is not served, and what does not exist.
    for path in [
        "/fhir/Medication?patient=x".to_owned(),
        format!("/fhir/Encounter/{person}"),
        format!("/fhir/Patient/{person}/$validate"),
        "/fhir/nothing/here/at/all/really".to_owned(),
        format!("/fhir/CarePlan/{person}"),
        format!("/fhir/CarePlan/{person}/_history"),
    ] {
        let a = w.get(&path, Some(&gp), at).await?;
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert_eq!(a.body["resourceType"], "OperationOutcome");
    }
    // Nothing was written by any of it.
    assert_eq!(w.stack.log.last_sequence().await?, at);
    w.validate()?;
    w.views.stop().await?;
    w.gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_relationship_and_objection_look_the_same_as_nobody() -> Result<()> {
    let w = World::start().await?;
    let mut c = w.stack.client.clone();
    // Someone COMM has no relationship with, and someone it had one with until they objected.
    let stranger = register(&mut c, 73).await?;
    let objector = register_with_gp(&mut c, 74, "GP-A").await?;
    refer(&mut c, &objector, "GP-A", "COMM").await?;
    let nobody = uuid::Uuid::now_v7().to_string();
    let unknown_nhs = test_nhs_number(75);
    let comm = token("COMM");
    let at = w.stack.log.last_sequence().await?;
    let before = w
        .ok(&format!("/fhir/Patient/{objector}"), "COMM", at)
        .await?;
    assert_eq!(before["id"], objector.as_str());
    let at = pos(c
        .record_consent(signed(v1::RecordConsentRequest {
            context: ctx("GP-A"),
            person_id: objector.clone(),
            terms: Some(v1::ConsentTerms {
                decision: v1::ConsentDecision::Deny as i32,
                purpose: v1::Purpose::DirectCare as i32,
                partners: vec!["COMM".into()],
                data_classes: vec![],
                valid_from: date_days_ago(1),
                valid_until: String::new(),
                capacity_assessed: true,
            }),
        }))
        .await?);

    // A read: the same 404, whatever the reason, with only the id asked for differing.
    let read = |id: String| {
        let w = &w;
        let comm = comm.clone();
        async move {
            let a = w
                .get(&format!("/fhir/Patient/{id}"), Some(&comm), at)
                .await?;
            Ok::<_, anyhow::Error>((a.status, a.body.to_string().replace(&id, "<id>")))
        }
    };
    let nobody_read = read(nobody.clone()).await?;
    assert_eq!(nobody_read.0, 404);
    assert_eq!(read(stranger.clone()).await?, nobody_read);
    assert_eq!(read(objector.clone()).await?, nobody_read);
    for op in ["$everything", "_history"] {
        let rtype = if op == "_history" {
            "CarePlan"
        } else {
            "Patient"
        };
        let answer = |id: String| {
            let w = &w;
            let comm = comm.clone();
            async move {
                let a = w
                    .get(&format!("/fhir/{rtype}/{id}/{op}"), Some(&comm), at)
                    .await?;
                Ok::<_, anyhow::Error>((a.status, a.body.to_string().replace(&id, "<id>")))
            }
        };
        let n = answer(nobody.clone()).await?;
        assert_eq!(n.0, 404);
        assert_eq!(answer(stranger.clone()).await?, n);
        assert_eq!(answer(objector.clone()).await?, n);
    }
    // A search: the same empty searchset.
    for rtype in ["Encounter", "Task", "Consent", "Provenance", "AuditEvent"] {
        let search = |id: String| {
            let w = &w;
            let comm = comm.clone();
            async move {
                let a = w
                    .get(&format!("/fhir/{rtype}?patient={id}"), Some(&comm), at)
                    .await?;
                Ok::<_, anyhow::Error>((a.status, a.body.to_string().replace(&id, "<id>")))
            }
        };
        let n = search(nobody.clone()).await?;
        assert_eq!(n.0, 200);
        assert!(n.1.contains("\"total\":0"), "{}", n.1);
        assert_eq!(search(stranger.clone()).await?, n);
        assert_eq!(search(objector.clone()).await?, n);
    }
    // A trace by NHS number: a person it may not read looks like a number nobody has.
    let trace = |nhs: String, dob: &'static str| {
        let w = &w;
        let comm = comm.clone();
        async move {
            let a = w
                .get(
                    &format!("/fhir/Patient?identifier={NHS}|{nhs}&birthdate={dob}"),
                    Some(&comm),
                    at,
                )
                .await?;
            let body = a.body.to_string().replace(&nhs, "<n>").replace(dob, "<d>");
            Ok::<_, anyhow::Error>((a.status, body))
        }
    };
    let n = trace(unknown_nhs, "1941-03-02").await?;
    assert_eq!(n.0, 200);
    assert!(n.1.contains("\"total\":0"), "{}", n.1);
    assert_eq!(trace(test_nhs_number(73), "1941-03-02").await?, n);
    assert_eq!(trace(test_nhs_number(74), "1941-03-02").await?, n);
    assert_eq!(trace(test_nhs_number(74), "1950-01-01").await?, n);
    // The refusals were audited, as the gRPC reads' are, with the real cause (for the
    // audit only).
    let refused = w
        .stack
        .audit(&format!("cw.audit.{objector}.COMM.record_read"))
        .await?;
    assert!(
        refused
            .iter()
            .any(|(_, r)| r.outcome == v1::AuditOutcome::Refused as i32 && r.reason == "OBJECTION"),
        "{refused:?}"
    );
    w.validate()?;
    w.views.stop().await?;
    w.gateway.stop().await
}
