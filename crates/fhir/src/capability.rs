//! The CapabilityStatement: exactly what this server answers, nothing more.

use serde_json::{Value, json};

use crate::map::TYPES;

/// Types read by id (their id is the person's); the rest are found with `?patient=`.
const READ: [&str; 3] = ["Patient", "CarePlan", "CareTeam"];

fn profile(rtype: &str) -> Option<String> {
    matches!(
        rtype,
        "Patient" | "Encounter" | "ServiceRequest" | "Observation"
    )
    .then(|| format!("{}{rtype}", crate::codes::UK_CORE))
}

fn resource(rtype: &str) -> Value {
    let mut interactions = vec![json!({ "code": "search-type" })];
    if READ.contains(&rtype) {
        interactions.insert(0, json!({ "code": "read" }));
    }
    if rtype == "CarePlan" {
        interactions.push(json!({ "code": "vread" }));
        interactions.push(json!({ "code": "history-instance" }));
    }
    let search: Vec<Value> = if rtype == "Patient" {
        vec![
            json!({
                "name": "identifier",
                "type": "token",
                "documentation": "https://fhir.nhs.uk/Id/nhs-number|<NHS number>; birthdate is required with it (a demographics trace needs both, as FindPerson does)",
            }),
            json!({ "name": "birthdate", "type": "date", "documentation": "YYYY-MM-DD, required with identifier" }),
        ]
    } else {
        vec![
            json!({ "name": "patient", "type": "reference", "documentation": "the person's id (Patient/<id> or <id>)" }),
        ]
    };
    let mut r = json!({
        "type": rtype,
        "interaction": interactions,
        "versioning": if rtype == "CarePlan" { "versioned" } else { "no-version" },
        "readHistory": rtype == "CarePlan",
        "searchParam": search,
    });
    if let Some(p) = profile(rtype) {
        r["supportedProfile"] = json!([p]);
    }
    if rtype == "Patient" {
        r["operation"] = json!([{
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        }]);
    }
    r
}

/// `audit`: whether `AuditEvent` and `Subscription` are served (the server has the
/// gateway's access list and feeds).
pub fn statement(base: &str, audit: bool) -> Value {
    let mut resources: Vec<Value> = TYPES.iter().map(|t| resource(t)).collect();
    if audit {
        resources.push(json!({
            "type": "AuditEvent",
            "interaction": [{ "code": "search-type" }],
            "versioning": "no-version",
            "readHistory": false,
            "searchParam": [{ "name": "patient", "type": "reference", "documentation": "who accessed this person's record: the gateway's access list, first 1,000 entries, for whoever it allows (the person, their proxy, a related organisation, governance)" }],
        }));
        resources.push(json!({
            "type": "Subscription",
            "supportedProfile": [format!("{}backport-subscription", crate::subscription::BACKPORT)],
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "versioning": "no-version",
            "readHistory": false,
            "documentation": format!("One per partner organisation, Subscription/<organisation code>, its feed (topic {}); a partner reads only its own. $status: a searchset with the backport status Parameters (query-status); $events?eventsSinceNumber=&eventsUntilNumber=: a history Bundle (query-event) of at most {} events, with a next link for the rest", crate::subscription::TOPIC, crate::subscription::MAX_EVENTS),
            "operation": [
                { "name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status" },
                { "name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events" },
            ],
        }));
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "publisher": "Carewoven",
        "kind": "instance",
        "software": { "name": "Carewoven", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "Carewoven coordinated care record, read-only (UK Core resources)",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Read-only. Every request but this one needs Authorization: Bearer <token>, the views service's tokens; reads are authorised and audited as GetCareRecord. A person the caller may not read is answered as one who does not exist (404, or an empty searchset).",
            "security": {
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "OAuth",
                }] }],
                "description": "Bearer tokens (EdDSA JWTs) from an issuer the deployment trusts",
            },
            "resource": resources,
        }],
    })
}
