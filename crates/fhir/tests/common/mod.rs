//! What the FHIR tests share: plain HTTP/1.1 over 127.0.0.1 (the partner speaks no
//! protobuf), the outside validator (fhir.resources 6.4.0, FHIR R4 4.0.1:
//! `scripts/fhir-validator`) and the rules it cannot check (FHIR's required bindings, UK
//! Core's, the Subscriptions Backport IG's).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use carewoven_proto::v1::{
    self, command_service_client::CommandServiceClient, progress_discharge_request as pd,
};
use carewoven_testkit::{date_days_ago, discharge_step, referral_action, repo_root, signed};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const DESTINATIONS: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland";
pub const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";

/// GET `path` from the FHIR API at `addr` over a fresh HTTP/1.1 connection, as `token`'s
/// holder, after the views reached `position`: status, head and the FHIR JSON body.
pub async fn get(
    addr: &str,
    path: &str,
    token: Option<&str>,
    position: u64,
) -> Result<(u16, String, Value)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/fhir+json\r\nConnection: close\r\n"
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if position > 0 {
        request.push_str(&format!("Carewoven-Min-Log-Position: {position}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .context("no status")?
        .parse()
        .context("status")?;
    anyhow::ensure!(
        head.to_lowercase()
            .contains("content-type: application/fhir+json"),
        "{path}: not FHIR JSON: {head}"
    );
    let body: Value = serde_json::from_str(body).with_context(|| format!("{path}: body {body}"))?;
    Ok((status, head.to_owned(), body))
}

/// The D2A team accepts the referral; the hospital assigns pathway 1, requests the team's
/// service, records the wait for reablement and agrees the discharge with it for today.
pub async fn accept_and_agree_discharge(
    c: &mut CommandServiceClient<tonic::transport::Channel>,
    person: &str,
    episode: &str,
    referral: &str,
) -> Result<()> {
    use pd::Step;
    c.progress_referral(signed(referral_action(
        person,
        referral,
        v1::ReferralAction::Accept,
        "ASC-D2A",
    )))
    .await?;
    for step in [
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway1 as i32,
        }),
        Step::RequestService(pd::RequestService {
            service: "ASC-D2A".into(),
        }),
        Step::RecordDelayReason(pd::RecordDelayReason {
            reason: v1::DelayReason::AwaitingReablement as i32,
            note: String::new(),
        }),
        Step::AgreeDischarge(pd::AgreeDischarge {
            service: "ASC-D2A".into(),
            planned_for: date_days_ago(0),
        }),
    ] {
        c.progress_discharge(signed(discharge_step(person, episode, step)))
            .await?;
    }
    Ok(())
}

/// Check `seen` with the rules below, then with the outside validator.
pub fn validate(seen: &[Value]) -> Result<()> {
    let mut failures = Vec::new();
    for body in seen {
        check_codes(body, &mut failures);
    }
    anyhow::ensure!(
        failures.is_empty(),
        "codes outside FHIR's, UK Core's or the backport IG's: {failures:#?}"
    );
    let file = tempfile::NamedTempFile::new()?;
    let lines: Vec<String> = seen.iter().map(Value::to_string).collect();
    std::fs::write(file.path(), lines.join("\n"))?;
    let out = Command::new(validator()?)
        .arg(repo_root().join("scripts/fhir_validate.py"))
        .arg(file.path())
        .output()
        .context("running the FHIR validator")?;
    let report = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "the FHIR validator refused what the API emitted:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        report.contains(&format!("validated {} resources: 0 failed", seen.len())),
        "unexpected validator report: {report}"
    );
    Ok(())
}

/// The backport's status Parameters (backport-subscription-status-r4): its profile, the
/// parameters it must have, each once, with their types, and each notification-event's
/// parts.
fn check_status_parameters(resource: &Value, failures: &mut Vec<String>) {
    let mut fail = |what: String| failures.push(format!("Parameters: {what}"));
    if resource["meta"]["profile"][0] != format!("{BACKPORT}backport-subscription-status-r4") {
        fail(format!("profile {}", resource["meta"]["profile"]));
    }
    let params = resource["parameter"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let named = |name: &str| -> Vec<Value> {
        params
            .iter()
            .filter(|p| p["name"] == name)
            .cloned()
            .collect()
    };
    for (name, key, required) in [
        ("subscription", "valueReference", true),
        ("topic", "valueCanonical", false),
        ("status", "valueCode", true),
        ("type", "valueCode", true),
        ("events-since-subscription-start", "valueString", false),
        ("error", "valueCodeableConcept", false),
    ] {
        let found = named(name);
        if found.len() > 1 || (required && found.is_empty()) {
            fail(format!("{} {name} parameters", found.len()));
        }
        if found.iter().any(|p| p[key].is_null()) {
            fail(format!("{name} without {key}"));
        }
    }
    if !named("status").iter().all(|p| {
        ["requested", "active", "error", "off", "entered-in-error"]
            .contains(&p["valueCode"].as_str().unwrap_or_default())
    }) {
        fail("status code".into());
    }
    if !named("type").iter().all(|p| {
        [
            "handshake",
            "heartbeat",
            "event-notification",
            "query-status",
            "query-event",
        ]
        .contains(&p["valueCode"].as_str().unwrap_or_default())
    }) {
        fail("type code".into());
    }
    let number = |v: &Value| v.as_str().is_some_and(|s| s.parse::<u64>().is_ok());
    for p in named("events-since-subscription-start") {
        if !number(&p["valueString"]) {
            fail("events-since-subscription-start is not a number".into());
        }
    }
    for event in named("notification-event") {
        let parts = event["part"].as_array().cloned().unwrap_or_default();
        let numbers: Vec<&Value> = parts
            .iter()
            .filter(|p| p["name"] == "event-number")
            .collect();
        if numbers.len() != 1 || !number(&numbers[0]["valueString"]) {
            fail(format!(
                "notification-event without one event-number: {event}"
            ));
        }
        for p in &parts {
            let ok = match p["name"].as_str().unwrap_or_default() {
                "event-number" => true,
                "timestamp" => p["valueInstant"].is_string(),
                "focus" => p["valueReference"]["reference"].is_string(),
                "additional-context" => p["valueReference"].is_object(),
                _ => false,
            };
            if !ok {
                fail(format!("notification-event part {p}"));
            }
        }
    }
}

/// The codes FHIR R4 requires (bindings the validator does not check) and the UK Core rules:
/// the NHS number's system and form, the discharge destination's code system and codes.
pub fn check_codes(resource: &Value, failures: &mut Vec<String>) {
    let rtype = resource["resourceType"].as_str().unwrap_or_default();
    let mut nested = Vec::new();
    let mut local = Vec::new();
    let mut must = |what: &str, value: &Value, allowed: &[&str]| {
        if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
            local.push(format!(
                "{rtype}.{what} = {value} is not one of {allowed:?}"
            ));
        }
    };
    match rtype {
        "Patient" => {
            for id in resource["identifier"].as_array().into_iter().flatten() {
                must("identifier.system", &id["system"], &[NHS]);
                let value = id["value"].as_str().unwrap_or_default();
                let ten_digits = value.len() == 10 && value.bytes().all(|b| b.is_ascii_digit());
                must(
                    "identifier.value is ten digits",
                    &Value::String(ten_digits.to_string()),
                    &["true"],
                );
            }
        }
        "Encounter" => {
            must(
                "status",
                &resource["status"],
                &[
                    "planned",
                    "arrived",
                    "triaged",
                    "in-progress",
                    "onleave",
                    "finished",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ],
            );
            must(
                "class.system",
                &resource["class"]["system"],
                &["http://terminology.hl7.org/CodeSystem/v3-ActCode"],
            );
            let disposition = &resource["hospitalization"]["dischargeDisposition"];
            if !disposition.is_null() {
                must(
                    "dischargeDisposition.system",
                    &disposition["coding"][0]["system"],
                    &[DESTINATIONS],
                );
                must(
                    "dischargeDisposition.code",
                    &disposition["coding"][0]["code"],
                    &[
                        "19", "29", "30", "37", "38", "48", "49", "50", "51", "52", "53", "54",
                        "65", "66", "79", "84", "85", "87", "88", "98", "99",
                    ],
                );
            }
        }
        "EpisodeOfCare" => must(
            "status",
            &resource["status"],
            &[
                "planned",
                "waitlist",
                "active",
                "onhold",
                "finished",
                "cancelled",
                "entered-in-error",
            ],
        ),
        "CarePlan" => {
            must(
                "status",
                &resource["status"],
                &[
                    "draft",
                    "active",
                    "on-hold",
                    "revoked",
                    "completed",
                    "entered-in-error",
                    "unknown",
                ],
            );
            must(
                "intent",
                &resource["intent"],
                &["proposal", "plan", "order", "option"],
            );
        }
        "CareTeam" => must(
            "status",
            &resource["status"],
            &[
                "proposed",
                "active",
                "suspended",
                "inactive",
                "entered-in-error",
            ],
        ),
        "ServiceRequest" => {
            must(
                "status",
                &resource["status"],
                &[
                    "draft",
                    "active",
                    "on-hold",
                    "revoked",
                    "completed",
                    "entered-in-error",
                    "unknown",
                ],
            );
            must(
                "priority",
                &resource["priority"],
                &["routine", "urgent", "asap", "stat"],
            );
        }
        "Task" => {
            must(
                "status",
                &resource["status"],
                &[
                    "draft",
                    "requested",
                    "received",
                    "accepted",
                    "rejected",
                    "ready",
                    "cancelled",
                    "in-progress",
                    "on-hold",
                    "failed",
                    "completed",
                    "entered-in-error",
                ],
            );
            must(
                "intent",
                &resource["intent"],
                &[
                    "unknown",
                    "proposal",
                    "plan",
                    "order",
                    "original-order",
                    "reflex-order",
                    "filler-order",
                    "instance-order",
                    "option",
                ],
            );
        }
        "Observation" => must(
            "status",
            &resource["status"],
            &[
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
            ],
        ),
        "Consent" => {
            must(
                "status",
                &resource["status"],
                &[
                    "draft",
                    "proposed",
                    "active",
                    "rejected",
                    "inactive",
                    "entered-in-error",
                ],
            );
            must(
                "provision.type",
                &resource["provision"]["type"],
                &["deny", "permit"],
            );
        }
        "Bundle" => {
            must("type", &resource["type"], &["searchset", "history"]);
            for entry in resource["entry"].as_array().into_iter().flatten() {
                check_codes(&entry["resource"], &mut nested);
            }
        }
        "OperationOutcome" => {
            for issue in resource["issue"].as_array().into_iter().flatten() {
                must("issue.severity", &issue["severity"], &["error"]);
                must(
                    "issue.code",
                    &issue["code"],
                    &[
                        "invalid",
                        "login",
                        "forbidden",
                        "not-found",
                        "not-supported",
                        "timeout",
                        "transient",
                        "exception",
                    ],
                );
            }
        }
        "AuditEvent" => {
            must("action", &resource["action"], &["C", "R", "U", "D", "E"]);
            must("outcome", &resource["outcome"], &["0", "4", "8", "12"]);
            must(
                "type.system",
                &resource["type"]["system"],
                &["http://terminology.hl7.org/CodeSystem/audit-event-type"],
            );
        }
        "Subscription" => {
            must(
                "status",
                &resource["status"],
                &["requested", "active", "error", "off"],
            );
            must(
                "meta.profile",
                &resource["meta"]["profile"][0],
                &[&format!("{BACKPORT}backport-subscription")],
            );
            must(
                "channel.payload",
                &resource["channel"]["payload"],
                &["application/fhir+json"],
            );
            must(
                "channel.payload content",
                &resource["channel"]["_payload"]["extension"][0]["valueCode"],
                &["empty", "id-only", "full-resource"],
            );
            let channel = &resource["channel"]["type"];
            if channel.is_null() {
                must(
                    "channel._type extension",
                    &resource["channel"]["_type"]["extension"][0]["url"],
                    &[&format!("{BACKPORT}backport-channel-type")],
                );
            } else {
                must(
                    "channel.type",
                    channel,
                    &["rest-hook", "websocket", "email", "sms", "message"],
                );
            }
        }
        "Parameters" => check_status_parameters(resource, &mut local),
        "CapabilityStatement" | "Provenance" => {}
        other => must("resourceType", &Value::String(other.to_owned()), &[]),
    }
    failures.extend(local);
    failures.extend(nested);
    // Every coding names an absolute code system.
    fn systems(v: &Value, failures: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Array(codings)) = o.get("coding") {
                    for c in codings {
                        if !c["system"]
                            .as_str()
                            .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
                        {
                            failures.push(format!("a coding without an absolute system: {c}"));
                        }
                    }
                }
                o.values().for_each(|x| systems(x, failures));
            }
            Value::Array(a) => a.iter().for_each(|x| systems(x, failures)),
            _ => {}
        }
    }
    if rtype != "Bundle" {
        systems(resource, failures);
    }
}

/// The validator's Python, installing it (`scripts/fhir-validator`) if it is not there: a
/// validator that cannot be installed fails the test, saying so.
pub fn validator() -> Result<PathBuf> {
    let python = repo_root().join(".tools/fhir/bin/python");
    let install = Command::new(repo_root().join("scripts/fhir-validator"))
        .output()
        .context("running scripts/fhir-validator")?;
    anyhow::ensure!(
        install.status.success() && python.exists(),
        "the outside FHIR validator (fhir.resources 6.4.0 on pydantic 1, in .tools/fhir) could not be installed, so the FHIR API cannot be checked: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    Ok(python)
}
