//! The mapping, written once: a coordinated care record (`v1::CareRecord`, what
//! `GetCareRecord` answers, already cut to what the reader may see) to FHIR R4 resources.
//! `docs/fhir-mapping.md` is this module as a table.
//!
//! Ids are the record's own UUIDs: the person's for `Patient`, `CarePlan` and `CareTeam` (the
//! care plan and team are one per person), the episode's for `Encounter`, `EpisodeOfCare` and
//! the handover `Task`, the referral's for `ServiceRequest` and its workflow `Task`, the
//! assessment's, the consent's, and the correcting event's for `Provenance`. Nothing else is
//! put into an id.

use carewoven_proto::v1;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::codes::{self, coding};

/// The resource types this API serves from a care record, in `$everything` order.
pub const TYPES: [&str; 10] = [
    "Patient",
    "Encounter",
    "EpisodeOfCare",
    "CarePlan",
    "CareTeam",
    "ServiceRequest",
    "Task",
    "Observation",
    "Consent",
    "Provenance",
];

fn instant(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    let t = ts.as_ref()?;
    let at: DateTime<Utc> = DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)?;
    Some(at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn patient_ref(person: &str) -> Value {
    json!({ "reference": format!("Patient/{person}") })
}

fn organisation(code: &str) -> Value {
    json!({
        "type": "Organization",
        "identifier": { "system": codes::organisation_system(), "value": code },
    })
}

fn service(code: &str) -> Value {
    json!({
        "type": "HealthcareService",
        "identifier": { "system": codes::service_system(), "value": code },
    })
}

/// A care-team member or coordinator: the organisation, or a practitioner in it.
fn member(m: &v1::MemberRef) -> Value {
    if m.practitioner.is_empty() {
        organisation(&m.organisation)
    } else {
        json!({
            "type": "PractitionerRole",
            "identifier": {
                "system": codes::practitioner_system(),
                "value": format!("{}/{}", m.organisation, m.practitioner),
            },
        })
    }
}

fn meta(profile: Option<&str>) -> Value {
    match profile {
        Some(p) => json!({ "profile": [format!("{}{p}", codes::UK_CORE)] }),
        None => json!({}),
    }
}

/// Insert `value` under `key` unless it is empty (FHIR forbids empty strings, arrays and
/// objects).
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        object.insert(key.to_owned(), value);
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

fn opt_instant(ts: &Option<prost_types::Timestamp>) -> Value {
    instant(ts).map_or(Value::Null, Value::String)
}

/// Every resource of the record, in [`TYPES`] order.
pub fn everything(record: &v1::CareRecord) -> Vec<Value> {
    TYPES.iter().flat_map(|t| resources(record, t)).collect()
}

/// The record's resources of one type (empty for a type it has none of).
pub fn resources(record: &v1::CareRecord, resource_type: &str) -> Vec<Value> {
    let person = record.person_id.as_str();
    match resource_type {
        "Patient" => vec![patient(record)],
        "Encounter" => record
            .discharge_episodes
            .iter()
            .map(|e| encounter(person, e))
            .collect(),
        "EpisodeOfCare" => record
            .discharge_episodes
            .iter()
            .map(|e| episode_of_care(record, e))
            .collect(),
        "CarePlan" => care_plan(record).into_iter().collect(),
        "CareTeam" => care_team(record).into_iter().collect(),
        "ServiceRequest" => record
            .referrals
            .iter()
            .map(|r| service_request(person, r))
            .collect(),
        "Task" => record
            .referrals
            .iter()
            .map(|r| referral_task(person, r))
            .chain(
                record
                    .discharge_episodes
                    .iter()
                    .filter_map(|e| handover_task(person, e)),
            )
            .collect(),
        "Observation" => record
            .assessments
            .iter()
            .map(|a| observation(person, a))
            .collect(),
        "Consent" => record.consents.iter().map(|c| consent(person, c)).collect(),
        "Provenance" => record
            .corrections
            .iter()
            .map(|c| provenance(person, c))
            .collect(),
        _ => Vec::new(),
    }
}

pub fn patient(record: &v1::CareRecord) -> Value {
    let mut p = object(json!({
        "resourceType": "Patient",
        "id": record.person_id,
        "meta": {
            "versionId": record.person_version.to_string(),
            "profile": [format!("{}Patient", codes::UK_CORE)],
        },
    }));
    let profile = record.profile.clone().unwrap_or_default();
    put(
        &mut p,
        "identifier",
        if profile.nhs_number.is_empty() {
            Value::Null
        } else {
            json!([{ "system": codes::NHS_NUMBER, "value": profile.nhs_number }])
        },
    );
    if !profile.given_name.is_empty() || !profile.family_name.is_empty() {
        let mut name = object(json!({ "use": "official" }));
        put(&mut name, "family", opt_str(&profile.family_name));
        if !profile.given_name.is_empty() {
            name.insert("given".into(), json!([profile.given_name]));
        }
        p.insert("name".into(), json!([name]));
    }
    put(
        &mut p,
        "telecom",
        if profile.contact.is_empty() {
            Value::Null
        } else {
            json!([{ "system": "other", "value": profile.contact }])
        },
    );
    put(&mut p, "birthDate", opt_str(&profile.date_of_birth));
    let carers: Vec<Value> = profile
        .carers
        .iter()
        .map(|c| {
            let mut contact = Map::new();
            if !c.relationship.is_empty() {
                contact.insert("relationship".into(), json!([{ "text": c.relationship }]));
            }
            if !c.name.is_empty() {
                contact.insert("name".into(), json!({ "text": c.name }));
            }
            if !c.contact.is_empty() {
                contact.insert(
                    "telecom".into(),
                    json!([{ "system": "other", "value": c.contact }]),
                );
            }
            Value::Object(contact)
        })
        .filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
        .collect();
    put(&mut p, "contact", Value::Array(carers));
    put(
        &mut p,
        "generalPractitioner",
        if profile.registered_gp.is_empty() {
            Value::Null
        } else {
            json!([organisation(&profile.registered_gp)])
        },
    );
    Value::Object(p)
}

fn terminal(status: &str) -> bool {
    matches!(status, "closed" | "died" | "self_discharged")
}

fn discharged(status: &str) -> bool {
    matches!(
        status,
        "discharged" | "handover_accepted" | "home_assessment_completed" | "closed"
    )
}

fn d2a_status(status: &str) -> Value {
    json!({
        "url": codes::extension("d2a-status"),
        "valueCoding": { "system": codes::system("d2a-status"), "code": status },
    })
}

pub fn encounter(person: &str, e: &v1::EpisodeView) -> Value {
    let left = discharged(&e.status) || terminal(&e.status);
    let mut r = object(json!({
        "resourceType": "Encounter",
        "id": e.episode_id,
        "meta": meta(Some("Encounter")),
        "status": if left { "finished" } else { "in-progress" },
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": patient_ref(person),
        "episodeOfCare": [{ "reference": format!("EpisodeOfCare/{}", e.episode_id) }],
    }));
    let mut extensions = vec![d2a_status(&e.status)];
    if !e.discharge_ready_date.is_empty() {
        extensions.push(json!({
            "url": codes::extension("discharge-ready-date"),
            "valueDate": e.discharge_ready_date,
        }));
    }
    if !e.expected_discharge_date.is_empty() {
        extensions.push(json!({
            "url": codes::extension("expected-discharge-date"),
            "valueDate": e.expected_discharge_date,
        }));
    }
    for reason in &e.delay_reasons {
        extensions.push(json!({
            "url": codes::extension("delay-reason"),
            "valueCoding": codes::delay_reason(*reason),
        }));
    }
    r.insert("extension".into(), Value::Array(extensions));
    let mut period = Map::new();
    put(&mut period, "start", opt_instant(&e.admitted_at));
    put(&mut period, "end", opt_instant(&e.discharged_at));
    put(&mut r, "period", Value::Object(period));
    put(
        &mut r,
        "serviceProvider",
        if e.site.is_empty() {
            Value::Null
        } else {
            json!({
                "type": "Organization",
                "identifier": { "system": codes::site_system(), "value": e.site },
            })
        },
    );
    if !e.ward.is_empty() {
        r.insert(
            "location".into(),
            json!([{ "location": { "display": e.ward } }]),
        );
    }
    if !e.discharge_destination.is_empty() {
        r.insert(
            "hospitalization".into(),
            json!({ "dischargeDisposition": codes::discharge_destination_coded(
                &e.discharge_destination,
                &e.discharge_destination_code,
            ) }),
        );
    }
    Value::Object(r)
}

pub fn episode_of_care(record: &v1::CareRecord, e: &v1::EpisodeView) -> Value {
    let person = record.person_id.as_str();
    let status = if terminal(&e.status) {
        "finished"
    } else {
        "active"
    };
    let mut r = object(json!({
        "resourceType": "EpisodeOfCare",
        "id": e.episode_id,
        "extension": [d2a_status(&e.status)],
        "status": status,
        "type": [{
            "coding": [coding(&codes::system("episode-type"), "d2a", "Discharge to assess")],
        }],
        "patient": patient_ref(person),
    }));
    let mut period = Map::new();
    put(&mut period, "start", opt_instant(&e.admitted_at));
    put(&mut r, "period", Value::Object(period));
    if let Some(pathway) = codes::pathway(e.pathway)
        && let Some(types) = r.get_mut("type").and_then(Value::as_array_mut)
    {
        types.push(json!({ "coding": [pathway] }));
    }
    put(
        &mut r,
        "managingOrganization",
        if e.site.is_empty() {
            Value::Null
        } else {
            json!({
                "type": "Organization",
                "identifier": { "system": codes::site_system(), "value": e.site },
            })
        },
    );
    if let Some(team) = &record.care_team {
        if let Some(c) = team
            .coordinator
            .as_ref()
            .filter(|c| !c.organisation.is_empty())
        {
            r.insert("careManager".into(), member(c));
        }
        r.insert(
            "team".into(),
            json!([{ "reference": format!("CareTeam/{person}") }]),
        );
    }
    Value::Object(r)
}

pub fn care_plan(record: &v1::CareRecord) -> Option<Value> {
    let view = record.care_plan.as_ref()?;
    let recorded_at = view
        .history
        .iter()
        .find(|h| h.version == view.version)
        .and_then(|h| instant(&h.recorded_at));
    Some(care_plan_version(
        &record.person_id,
        view.version,
        view.plan.as_ref(),
        recorded_at,
        None,
    ))
}

/// Every version of the care plan, oldest first, each with when it was recorded and why.
pub fn care_plan_history(record: &v1::CareRecord) -> Vec<(u32, Option<String>, Value)> {
    let Some(view) = record.care_plan.as_ref() else {
        return Vec::new();
    };
    view.history
        .iter()
        .map(|h| {
            let at = instant(&h.recorded_at);
            let reason = (!h.reason.is_empty()).then_some(h.reason.as_str());
            (
                h.version,
                at.clone(),
                care_plan_version(&record.person_id, h.version, h.plan.as_ref(), at, reason),
            )
        })
        .collect()
}

fn care_plan_version(
    person: &str,
    version: u32,
    plan: Option<&v1::PlanContent>,
    recorded_at: Option<String>,
    reason: Option<&str>,
) -> Value {
    let plan = plan.cloned().unwrap_or_default();
    let mut m = object(json!({ "versionId": version.to_string() }));
    put(
        &mut m,
        "lastUpdated",
        recorded_at.map_or(Value::Null, Value::String),
    );
    let mut r = object(json!({
        "resourceType": "CarePlan",
        "id": person,
        "meta": m,
        "status": "active",
        "intent": "plan",
        "subject": patient_ref(person),
    }));
    let goals: Vec<Value> = plan
        .goals
        .iter()
        .enumerate()
        .map(|(i, g)| {
            json!({
                "resourceType": "Goal",
                "id": format!("goal-{}", i + 1),
                "lifecycleStatus": "active",
                "description": { "text": g },
                "subject": patient_ref(person),
            })
        })
        .collect();
    put(
        &mut r,
        "goal",
        Value::Array(
            (1..=goals.len())
                .map(|i| json!({ "reference": format!("#goal-{i}") }))
                .collect(),
        ),
    );
    put(&mut r, "contained", Value::Array(goals));
    let activities: Vec<Value> = plan
        .activities
        .iter()
        .map(|a| {
            let status = match v1::ActivityStatus::try_from(a.status) {
                Ok(v1::ActivityStatus::NotStarted) => "not-started",
                Ok(v1::ActivityStatus::Scheduled) => "scheduled",
                Ok(v1::ActivityStatus::InProgress) => "in-progress",
                Ok(v1::ActivityStatus::OnHold) => "on-hold",
                Ok(v1::ActivityStatus::Completed) => "completed",
                Ok(v1::ActivityStatus::Cancelled) => "cancelled",
                Ok(v1::ActivityStatus::Stopped) => "stopped",
                _ => "unknown",
            };
            let mut detail = object(json!({ "status": status, "description": a.description }));
            if !a.status_reason.is_empty() {
                detail.insert("statusReason".into(), json!({ "text": a.status_reason }));
            }
            if !a.responsible_organisation.is_empty() {
                detail.insert(
                    "performer".into(),
                    json!([organisation(&a.responsible_organisation)]),
                );
            }
            json!({ "detail": detail })
        })
        .collect();
    put(&mut r, "activity", Value::Array(activities));
    if !plan.review_date.is_empty() {
        r.insert(
            "extension".into(),
            json!([{ "url": codes::extension("review-date"), "valueDate": plan.review_date }]),
        );
    }
    if let Some(reason) = reason {
        r.insert(
            "note".into(),
            json!([{ "text": format!("Revision: {reason}") }]),
        );
    }
    Value::Object(r)
}

pub fn care_team(record: &v1::CareRecord) -> Option<Value> {
    let team = record.care_team.as_ref()?;
    let person = record.person_id.as_str();
    let mut participants: Vec<Value> = team
        .members
        .iter()
        .filter_map(|m| {
            let who = m.member.as_ref()?;
            let mut p = object(json!({
                "role": [{ "coding": codes::care_team_role(m.role) }],
                "member": member(who),
            }));
            if !m.since.is_empty() {
                p.insert("period".into(), json!({ "start": m.since }));
            }
            Some(Value::Object(p))
        })
        .collect();
    if let Some(c) = team
        .coordinator
        .as_ref()
        .filter(|c| !c.organisation.is_empty())
    {
        participants.push(json!({
            "role": [{ "coding": [coding(&codes::system("care-team-role"), "care-coordinator", "Care coordinator")] }],
            "member": member(c),
        }));
    }
    let mut r = object(json!({
        "resourceType": "CareTeam",
        "id": person,
        "status": "active",
        "subject": patient_ref(person),
    }));
    put(&mut r, "participant", Value::Array(participants));
    Some(Value::Object(r))
}

fn service_request_status(status: &str) -> &'static str {
    match status {
        "submitted" | "received" | "accepted" | "in_progress" => "active",
        "on_hold" => "on-hold",
        "completed" => "completed",
        "rejected" | "failed" | "cancelled" => "revoked",
        "entered_in_error" => "entered-in-error",
        _ => "unknown",
    }
}

pub fn service_request(person: &str, r: &v1::ReferralView) -> Value {
    let d = r.referral.clone().unwrap_or_default();
    let mut s = object(json!({
        "resourceType": "ServiceRequest",
        "id": r.referral_id,
        "meta": meta(Some("ServiceRequest")),
        "status": service_request_status(&r.status),
        "intent": "order",
        "category": [{
            "coding": [coding(&codes::system("request-category"), "referral", "Referral")],
        }],
        "subject": patient_ref(person),
    }));
    if let Some(p) = codes::priority(d.priority) {
        s.insert("priority".into(), json!(p));
    }
    put(&mut s, "authoredOn", opt_instant(&r.submitted_at));
    if !d.from_organisation.is_empty() {
        s.insert("requester".into(), organisation(&d.from_organisation));
    }
    if !d.to_service.is_empty() {
        s.insert("performer".into(), json!([service(&d.to_service)]));
    }
    if !d.reason.is_empty() {
        s.insert("reasonCode".into(), json!([{ "text": d.reason }]));
    }
    if !d.replaces.is_empty() {
        s.insert(
            "replaces".into(),
            json!([{ "reference": format!("ServiceRequest/{}", d.replaces) }]),
        );
    }
    Value::Object(s)
}

fn task_status(status: &str) -> &'static str {
    match status {
        "submitted" => "requested",
        "received" => "received",
        "accepted" => "accepted",
        "in_progress" => "in-progress",
        "on_hold" => "on-hold",
        "completed" => "completed",
        "rejected" => "rejected",
        "failed" => "failed",
        "cancelled" => "cancelled",
        "entered_in_error" => "entered-in-error",
        _ => "draft",
    }
}

/// The referral's workflow, as the receiving service moves it along.
pub fn referral_task(person: &str, r: &v1::ReferralView) -> Value {
    let d = r.referral.clone().unwrap_or_default();
    let mut t = object(json!({
        "resourceType": "Task",
        "id": r.referral_id,
        "status": task_status(&r.status),
        "businessStatus": { "coding": [{ "system": codes::system("referral-status"), "code": r.status }] },
        "intent": "order",
        "code": { "coding": [coding("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request")] },
        "basedOn": [{ "reference": format!("ServiceRequest/{}", r.referral_id) }],
        "focus": { "reference": format!("ServiceRequest/{}", r.referral_id) },
        "for": patient_ref(person),
    }));
    put(&mut t, "authoredOn", opt_instant(&r.submitted_at));
    put(&mut t, "lastModified", opt_instant(&r.updated_at));
    if !d.from_organisation.is_empty() {
        t.insert("requester".into(), organisation(&d.from_organisation));
    }
    if !d.to_service.is_empty() {
        t.insert("owner".into(), service(&d.to_service));
    }
    if !r.reason.is_empty() {
        t.insert("statusReason".into(), json!({ "text": r.reason }));
    }
    Value::Object(t)
}

/// The handover after discharge: from the hospital to the service agreed (or the
/// organisation that accepted it), until the home assessment.
pub fn handover_task(person: &str, e: &v1::EpisodeView) -> Option<Value> {
    if !discharged(&e.status) {
        return None;
    }
    let status = match e.status.as_str() {
        "discharged" => "requested",
        "handover_accepted" => "accepted",
        _ => "completed",
    };
    let mut t = object(json!({
        "resourceType": "Task",
        "id": e.episode_id,
        "status": status,
        "businessStatus": { "coding": [{ "system": codes::system("d2a-status"), "code": e.status }] },
        "intent": "order",
        "code": { "coding": [coding(&codes::system("task-type"), "handover", "Handover after discharge")] },
        "focus": { "reference": format!("EpisodeOfCare/{}", e.episode_id) },
        "for": patient_ref(person),
        "encounter": { "reference": format!("Encounter/{}", e.episode_id) },
    }));
    put(&mut t, "authoredOn", opt_instant(&e.discharged_at));
    if !e.site.is_empty() {
        t.insert(
            "requester".into(),
            json!({
                "type": "Organization",
                "identifier": { "system": codes::site_system(), "value": e.site },
            }),
        );
    }
    if !e.handover_organisation.is_empty() {
        t.insert("owner".into(), organisation(&e.handover_organisation));
    } else if !e.service.is_empty() {
        t.insert("owner".into(), service(&e.service));
    }
    if !e.home_assessment_completed_on.is_empty() {
        t.insert(
            "executionPeriod".into(),
            json!({ "end": e.home_assessment_completed_on }),
        );
    }
    Some(Value::Object(t))
}

/// An assessment and its findings; for a Care Act needs assessment, the eligibility
/// determination as the value and the eligibility criteria as components.
pub fn observation(person: &str, a: &v1::AssessmentView) -> Value {
    let request = a.request.clone().unwrap_or_default();
    let status = match a.status.as_str() {
        "completed" => "final",
        "cancelled" => "cancelled",
        _ => "registered",
    };
    let mut o = object(json!({
        "resourceType": "Observation",
        "id": a.assessment_id,
        "meta": meta(Some("Observation")),
        "status": status,
        "category": [{
            "coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey")],
        }],
        "code": { "coding": [codes::assessment_kind(request.kind)] },
        "subject": patient_ref(person),
    }));
    put(&mut o, "effectiveDateTime", opt_instant(&a.completed_at));
    put(&mut o, "issued", opt_instant(&a.completed_at));
    let performers: Vec<Value> = a
        .contributors
        .iter()
        .chain(if a.contributors.is_empty() {
            request.assessors.iter()
        } else {
            [].iter()
        })
        .map(|c| organisation(c))
        .collect();
    put(&mut o, "performer", Value::Array(performers));
    if !request.referral_id.is_empty() {
        o.insert(
            "basedOn".into(),
            json!([{ "reference": format!("ServiceRequest/{}", request.referral_id) }]),
        );
    }
    if let Some(eligible) = a.eligible {
        let (code, display) = if eligible {
            ("eligible", "Eligible for care and support")
        } else {
            ("not-eligible", "Not eligible for care and support")
        };
        o.insert(
            "valueCodeableConcept".into(),
            json!({ "coding": [coding(&codes::system("care-act-eligibility"), code, display)] }),
        );
    }
    let mut components = Vec::new();
    let mut notes = Vec::new();
    if let Some(f) = &a.findings {
        for outcome in &f.outcomes_not_achieved {
            components.push(json!({
                "code": { "coding": [codes::care_act_outcome(*outcome)] },
                "valueBoolean": false,
            }));
        }
        if a.status == "completed" {
            components.push(json!({
                "code": { "coding": [coding(&codes::system("care-act-criterion"), "needs-arise-from-impairment-or-illness", "Needs arise from a physical or mental impairment or illness")] },
                "valueBoolean": f.needs_arise_from_impairment_or_illness,
            }));
            components.push(json!({
                "code": { "coding": [coding(&codes::system("care-act-criterion"), "significant-impact-on-wellbeing", "Significant impact on wellbeing")] },
                "valueBoolean": f.significant_impact_on_wellbeing,
            }));
        }
        if !f.summary.is_empty() {
            notes.push(json!({ "text": f.summary }));
        }
        if !f.wellbeing_impact.is_empty() {
            notes.push(json!({ "text": format!("Impact on wellbeing: {}", f.wellbeing_impact) }));
        }
    }
    for reason in &a.eligibility_reasons {
        notes.push(json!({ "text": format!("Eligibility: {reason}") }));
    }
    put(&mut o, "component", Value::Array(components));
    put(&mut o, "note", Value::Array(notes));
    Value::Object(o)
}

pub fn consent(person: &str, c: &v1::ConsentView) -> Value {
    let terms = c.terms.clone().unwrap_or_default();
    let deny = terms.decision == v1::ConsentDecision::Deny as i32;
    let mut provision = object(json!({ "type": if deny { "deny" } else { "permit" } }));
    let mut period = Map::new();
    put(&mut period, "start", opt_str(&terms.valid_from));
    put(&mut period, "end", opt_str(&terms.valid_until));
    put(&mut provision, "period", Value::Object(period));
    let actors: Vec<Value> = terms
        .partners
        .iter()
        .map(|p| {
            json!({
                "role": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient")] },
                "reference": organisation(p),
            })
        })
        .collect();
    put(&mut provision, "actor", Value::Array(actors));
    if terms.purpose != v1::Purpose::Unspecified as i32 {
        provision.insert("purpose".into(), json!([codes::purpose(terms.purpose)]));
    }
    put(
        &mut provision,
        "class",
        Value::Array(
            terms
                .data_classes
                .iter()
                .map(|d| codes::data_class(*d))
                .collect(),
        ),
    );
    let mut r = object(json!({
        "resourceType": "Consent",
        "id": c.consent_id,
        "status": if c.withdrawn { "inactive" } else { "active" },
        "scope": { "coding": [coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent")] },
        "category": [{ "coding": [coding("http://loinc.org", "59284-0", "Patient Consent")] }],
        "patient": patient_ref(person),
        "policyRule": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", if deny { "OPTOUT" } else { "OPTIN" }, if deny { "opt-out" } else { "opt-in" })] },
        "provision": provision,
    }));
    put(&mut r, "dateTime", opt_instant(&c.recorded_at));
    if terms.capacity_assessed {
        r.insert(
            "extension".into(),
            json!([{ "url": codes::extension("capacity-assessed"), "valueBoolean": true }]),
        );
    }
    Value::Object(r)
}

/// A correction of the person's details: who, when, which fields (never the values).
pub fn provenance(person: &str, c: &v1::CorrectionView) -> Value {
    let mut r = object(json!({
        "resourceType": "Provenance",
        "id": c.event_id,
        "target": [{ "reference": format!("Patient/{person}") }],
        "activity": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "UPDATE", "revise")] },
        "agent": [{
            "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author")] },
            "who": organisation(&c.organisation),
        }],
    }));
    r.insert(
        "recorded".into(),
        opt_instant(&c.recorded_at)
            .as_str()
            .map_or(Value::Null, |s| json!(s)),
    );
    put(&mut r, "occurredDateTime", opt_instant(&c.occurred_at));
    if !c.fields.is_empty() {
        r.insert(
            "reason".into(),
            json!([{
                "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "PATADMIN", "patient administration")],
                "text": format!("Corrected: {}", c.fields.join(", ")),
            }]),
        );
    }
    Value::Object(r)
}

fn audit_action(action: i32) -> (&'static str, &'static str) {
    use v1::AuditAction as A;
    match A::try_from(action).unwrap_or(A::Unspecified) {
        A::Unspecified => ("unspecified", "E"),
        A::RecordRead => ("record_read", "R"),
        A::FeedDelivery => ("feed_delivery", "R"),
        A::AuditRead => ("audit_read", "R"),
        A::Command => ("command", "E"),
        A::FeedSubscribe => ("feed_subscribe", "E"),
        A::Replay => ("replay", "R"),
        A::BreakGlass => ("break_glass", "E"),
        A::FindPerson => ("find_person", "E"),
        A::RelationshipEnded => ("relationship_ended", "E"),
        A::UndecodableSkipped => ("undecodable_skipped", "E"),
    }
}

/// One access to the person's record, as the access list (`AuditService.ListRecordAccess`)
/// gives it: who, when, what, the outcome. `None` for an entry without an id.
pub fn audit_event(person: &str, e: &v1::AuditEvent) -> Option<Value> {
    let id: uuid::Uuid = e.audit_id.parse().ok()?;
    let (action, crud) = audit_action(e.action);
    let refused = e.outcome == v1::AuditOutcome::Refused as i32;
    let mut agent = object(json!({
        "requestor": true,
        "who": organisation(&e.organisation),
    }));
    if !e.user.is_empty() {
        agent.insert("altId".into(), json!(e.user));
    }
    let mut r = object(json!({
        "resourceType": "AuditEvent",
        "id": id.to_string(),
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"),
        "subtype": [{ "system": codes::system("audit-action"), "code": action }],
        "action": crud,
        "outcome": if refused { "4" } else { "0" },
        "agent": [agent],
        "source": { "observer": { "display": "Carewoven" } },
        "entity": [{ "what": patient_ref(person) }],
    }));
    r.insert(
        "recorded".into(),
        opt_instant(&e.at)
            .as_str()
            .map_or(Value::Null, |s| json!(s)),
    );
    if !e.reason.is_empty() {
        r.insert("outcomeDesc".into(), json!(e.reason));
    }
    if e.purpose != v1::Purpose::Unspecified as i32 {
        r.insert(
            "purposeOfEvent".into(),
            json!([{ "coding": [codes::purpose(e.purpose)] }]),
        );
    }
    Some(Value::Object(r))
}
