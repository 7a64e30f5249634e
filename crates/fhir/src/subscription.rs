//! Partner feeds as FHIR R4 subscriptions, in the shape of the HL7 Subscriptions R5 Backport
//! IG (STU 1.1): one `Subscription/<ORG>` per partner organisation, whose topic is its feed
//! ([`TOPIC`]); notifications are `history` Bundles whose first entry is the
//! `backport-subscription-status-r4` `Parameters` (`events-since-subscription-start`, one
//! `notification-event` per feed item with `event-number` = the item's number, `timestamp`
//! and `focus`), then, for items whose disclosure was FULL, the resources the event changes,
//! mapped from the event itself ([`event_resources`]). An IDENTIFIERS_ONLY item is `id-only`:
//! its `focus` reference, derived from its identifiers, and nothing else. The gateway's
//! rest-hook delivery and the API's `$status` / `$events` build their Bundles here, so both
//! say the same thing.

use carewoven_proto::v1::{self, event_envelope::Event as E};
use serde_json::{Value, json};

use crate::codes;
use crate::map;

/// The SubscriptionTopic every partner subscription has (a canonical only: R4 has no
/// SubscriptionTopic resource; `docs/fhir-mapping.md` describes it).
pub const TOPIC: &str = "https://carewoven.org/fhir/SubscriptionTopic/partner-feed";
pub(crate) const BACKPORT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
/// At most this many events per `$events` call.
pub const MAX_EVENTS: u64 = 1000;

/// What a status `Parameters` is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

fn profile(name: &str) -> Value {
    json!({ "profile": [format!("{BACKPORT}{name}")] })
}

/// `active`, or `error` while rest-hook delivery is failing.
pub fn status_code(status: &v1::FeedStatus) -> &'static str {
    if status.rest_hook.as_ref().is_some_and(|h| h.failing) {
        "error"
    } else {
        "active"
    }
}

/// The partner's `Subscription` (backport-subscription profile).
pub fn subscription(status: &v1::FeedStatus) -> Value {
    let org = status.organisation.as_str();
    let mut channel = json!({
        "payload": "application/fhir+json",
        "_payload": { "extension": [{
            "url": format!("{BACKPORT}backport-payload-content"),
            "valueCode": "full-resource",
        }] },
    });
    match &status.rest_hook {
        Some(hook) => {
            channel["type"] = json!("rest-hook");
            channel["endpoint"] = json!(hook.endpoint);
        }
        // Query only ($events): a channel type R4 does not have, by the backport's extension.
        None => {
            channel["_type"] = json!({ "extension": [{
                "url": format!("{BACKPORT}backport-channel-type"),
                "valueCoding": {
                    "system": codes::system("subscription-channel-type"),
                    "code": "none",
                    "display": "No channel: the partner reads $events",
                },
            }] });
        }
    }
    let mut r = json!({
        "resourceType": "Subscription",
        "id": org,
        "meta": profile("backport-subscription"),
        "status": status_code(status),
        "reason": format!("Partner feed of organisation {org}: the events it may be sent, in order, numbered from 1"),
        "criteria": TOPIC,
        "channel": channel,
    });
    if let Some(hook) = status.rest_hook.as_ref().filter(|h| h.failing) {
        r["error"] = json!(failure(hook));
    }
    r
}

fn failure(hook: &v1::RestHookStatus) -> String {
    format!(
        "{} failed attempts in a row delivering event {}: {}",
        hook.consecutive_errors,
        hook.delivered_number + 1,
        hook.last_error
    )
}

fn parameter(name: &str, key: &str, value: Value) -> Value {
    let mut p = json!({ "name": name });
    p[key] = value;
    p
}

/// The `backport-subscription-status-r4` Parameters: `events_since` is
/// `events-since-subscription-start` (the feed's number at that point), `items` the events
/// it carries.
pub fn status_parameters(
    status: &v1::FeedStatus,
    kind: Kind,
    events_since: u64,
    items: &[v1::FeedItem],
) -> Value {
    let org = status.organisation.as_str();
    let mut parameters = vec![
        parameter(
            "subscription",
            "valueReference",
            json!({ "reference": format!("Subscription/{org}") }),
        ),
        parameter("topic", "valueCanonical", json!(TOPIC)),
        parameter("status", "valueCode", json!(status_code(status))),
        parameter("type", "valueCode", json!(kind.code())),
        parameter(
            "events-since-subscription-start",
            "valueString",
            json!(events_since.to_string()),
        ),
    ];
    for item in items {
        let mut parts = vec![parameter(
            "event-number",
            "valueString",
            json!(item.number.to_string()),
        )];
        if let Some(at) = item
            .identifiers
            .as_ref()
            .and_then(|i| instant(&i.recorded_at))
        {
            parts.push(parameter("timestamp", "valueInstant", json!(at)));
        }
        if let Some(focus) = focus(item) {
            parts.push(parameter(
                "focus",
                "valueReference",
                json!({ "reference": focus }),
            ));
        }
        parameters.push(json!({ "name": "notification-event", "part": parts }));
    }
    if let Some(hook) = &status.rest_hook {
        if hook.failing {
            parameters.push(parameter(
                "error",
                "valueCodeableConcept",
                json!({ "text": failure(hook) }),
            ));
        }
        // Carewoven's own: how rest-hook delivery stands.
        parameters.push(parameter(
            "carewoven-delivered-event-number",
            "valueString",
            json!(hook.delivered_number.to_string()),
        ));
        parameters.push(parameter(
            "carewoven-delivery-errors",
            "valueUnsignedInt",
            json!(hook.consecutive_errors),
        ));
        parameters.push(parameter(
            "carewoven-delivery-errors-total",
            "valueUnsignedInt",
            json!(hook.total_errors),
        ));
        if let Some(at) = instant(&hook.last_error_at) {
            parameters.push(parameter(
                "carewoven-last-error-at",
                "valueInstant",
                json!(at),
            ));
        }
    }
    json!({
        "resourceType": "Parameters",
        "meta": profile("backport-subscription-status-r4"),
        "parameter": parameters,
    })
}

/// A notification (`event-notification` or `query-event`): a `history` Bundle, the status
/// first, then the resources of the fully disclosed items.
pub fn notification(
    base: &str,
    status: &v1::FeedStatus,
    kind: Kind,
    events_since: u64,
    items: &[v1::FeedItem],
) -> Value {
    let org = status.organisation.as_str();
    let mut entries = vec![json!({
        "fullUrl": format!("{base}/Subscription/{org}/$status"),
        "resource": status_parameters(status, kind, events_since, items),
        "request": { "method": "GET", "url": format!("Subscription/{org}/$status") },
        "response": { "status": "200" },
    })];
    for resource in items.iter().flat_map(event_resources) {
        let rtype = resource["resourceType"].as_str().unwrap_or_default();
        let id = resource["id"].as_str().unwrap_or_default();
        let url = format!("{rtype}/{id}");
        entries.push(json!({
            "fullUrl": format!("{base}/{url}"),
            "resource": resource,
            "request": { "method": "PUT", "url": url },
            "response": { "status": "200" },
        }));
    }
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "entry": entries,
    })
}

fn instant(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    let t = ts.as_ref()?;
    let at = chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The resource an item's event is about, from its identifiers alone (so an id-only item
/// says no more than its disclosure allows).
pub fn focus(item: &v1::FeedItem) -> Option<String> {
    let ids = item.identifiers.as_ref()?;
    let rtype = match (ids.aggregate_kind.as_str(), ids.event_type.as_str()) {
        ("person", _) | ("meeting", _) | ("feedback", _) => "Patient",
        ("referral", "referral_submitted") => "ServiceRequest",
        ("referral", _) => "Task",
        ("assessment", _) => "Observation",
        ("care_plan", _) => "CarePlan",
        ("care_team", _) => "CareTeam",
        ("consent", _) => "Consent",
        ("discharge", _) => "Encounter",
        _ => return None,
    };
    let id = if rtype == "Patient" {
        &ids.person_id
    } else {
        &ids.aggregate_id
    };
    Some(format!("{rtype}/{id}"))
}

/// The resources a fully disclosed event changes, as far as the event itself says (never
/// anything else of the record): discharge events → Encounter and EpisodeOfCare (and the
/// handover Task once discharged), a referral → ServiceRequest and Task, a plan → CarePlan,
/// team changes → CareTeam, the person → Patient, a consent → Consent, an assessment →
/// Observation. Events whose content alone makes no valid resource (a removal, a withdrawal,
/// a delay reason, meetings, feedback, proxies, emergency access) carry their `focus` only.
/// An identifiers-only item carries nothing.
pub fn event_resources(item: &v1::FeedItem) -> Vec<Value> {
    if item.disclosure != v1::Disclosure::Full as i32 {
        return Vec::new();
    }
    let Some(envelope) = item.event.as_ref() else {
        return Vec::new();
    };
    let Some(event) = envelope.event.as_ref() else {
        return Vec::new();
    };
    let person = envelope.person_id.as_str();
    let id = envelope.aggregate_id.clone();
    let at = envelope.recorded_at;
    let record = |f: &dyn Fn(&mut v1::CareRecord)| {
        let mut r = v1::CareRecord {
            person_id: person.to_owned(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let referral = |status: &str, reason: &str, referral: Option<v1::Referral>| {
        let view = v1::ReferralView {
            referral_id: id.clone(),
            referral,
            status: status.to_owned(),
            updated_at: at,
            reason: reason.to_owned(),
            ..Default::default()
        };
        vec![map::referral_task(person, &view)]
    };
    let assessment = |view: v1::AssessmentView| {
        vec![map::observation(
            person,
            &v1::AssessmentView {
                assessment_id: id.clone(),
                ..view
            },
        )]
    };
    let episode = |status: &str, view: v1::EpisodeView| {
        let view = v1::EpisodeView {
            episode_id: id.clone(),
            status: status.to_owned(),
            ..view
        };
        let r = record(&|_| {});
        let mut out = vec![
            map::encounter(person, &view),
            map::episode_of_care(&r, &view),
        ];
        out.extend(map::handover_task(person, &view));
        out
    };
    let team = |member: &Option<v1::MemberRef>, role: i32, since: &str, coordinator: bool| {
        let r = record(&|r| {
            r.care_team = Some(if coordinator {
                v1::CareTeamView {
                    members: Vec::new(),
                    coordinator: member.clone(),
                }
            } else {
                v1::CareTeamView {
                    members: vec![v1::CareTeamMember {
                        member: member.clone(),
                        role,
                        since: since.to_owned(),
                    }],
                    coordinator: None,
                }
            });
        });
        map::care_team(&r).into_iter().collect()
    };
    let plan = |version: u32, plan: &Option<v1::PlanContent>, reason: &str| {
        let r = record(&|r| {
            r.care_plan = Some(v1::CarePlanView {
                version,
                plan: plan.clone(),
                history: vec![v1::PlanVersion {
                    version,
                    plan: plan.clone(),
                    reason: reason.to_owned(),
                    organisation: envelope.organisation.clone(),
                    recorded_at: at,
                    activity_changes: Vec::new(),
                }],
            });
        });
        map::care_plan(&r).into_iter().collect()
    };
    let d = v1::EpisodeView::default;
    match event {
        E::PersonRegistered(e) => {
            let r = record(&|r| {
                r.profile = e.profile.clone();
                r.person_version = envelope.version;
            });
            vec![map::patient(&r)]
        }
        E::ReferralSubmitted(e) => {
            let view = v1::ReferralView {
                referral_id: id.clone(),
                referral: e.referral.clone(),
                status: "submitted".to_owned(),
                submitted_at: at,
                updated_at: at,
                ..Default::default()
            };
            vec![
                map::service_request(person, &view),
                map::referral_task(person, &view),
            ]
        }
        E::ReferralReceived(_) => referral("received", "", None),
        E::ReferralAccepted(_) => referral("accepted", "", None),
        E::ReferralRejected(e) => referral("rejected", &e.reason, None),
        E::ReferralStarted(_) | E::ReferralResumed(_) => referral("in_progress", "", None),
        E::ReferralPutOnHold(e) => referral("on_hold", &e.reason, None),
        E::ReferralCompleted(_) => referral("completed", "", None),
        E::ReferralFailed(e) => referral("failed", &e.reason, None),
        E::ReferralCancelled(e) => referral("cancelled", &e.reason, None),
        E::ReferralEnteredInError(e) => referral("entered_in_error", &e.reason, None),
        E::AssessmentRequested(e) => assessment(v1::AssessmentView {
            request: e.request.clone(),
            status: "requested".to_owned(),
            requested_at: at,
            ..Default::default()
        }),
        E::AssessmentCompleted(e) => assessment(v1::AssessmentView {
            findings: e.findings.clone(),
            status: "completed".to_owned(),
            completed_at: at,
            ..Default::default()
        }),
        E::EligibilityDetermined(e) => assessment(v1::AssessmentView {
            status: "completed".to_owned(),
            eligible: Some(e.eligible),
            eligibility_reasons: e.reasons.clone(),
            ..Default::default()
        }),
        E::AssessmentCancelled(_) => assessment(v1::AssessmentView {
            status: "cancelled".to_owned(),
            ..Default::default()
        }),
        E::CarePlanAgreed(e) => plan(e.plan_version, &e.plan, ""),
        E::CarePlanRevised(e) => plan(e.plan_version, &e.plan, &e.reason),
        E::CareTeamMemberAdded(e) => team(&e.member, e.role, &e.since, false),
        E::CareCoordinatorNamed(e) => team(&e.member, 0, "", true),
        E::ConsentRecorded(e) => vec![map::consent(
            person,
            &v1::ConsentView {
                consent_id: id.clone(),
                terms: e.terms.clone(),
                withdrawn: false,
                recorded_at: at,
            },
        )],
        E::PersonAdmitted(e) => episode(
            "admitted",
            v1::EpisodeView {
                site: e.site.clone(),
                ward: e.ward.clone(),
                admitted_at: e.admitted_at,
                ..d()
            },
        ),
        E::ExpectedDischargeDateSet(e) => episode(
            "planning",
            v1::EpisodeView {
                expected_discharge_date: e.expected.clone(),
                ..d()
            },
        ),
        E::DischargeReady(e) => episode(
            "discharge_ready",
            v1::EpisodeView {
                discharge_ready_date: e.discharge_ready_date.clone(),
                ..d()
            },
        ),
        E::PathwayAssigned(e) => episode(
            "pathway_assigned",
            v1::EpisodeView {
                pathway: e.pathway,
                ..d()
            },
        ),
        E::ServiceRequested(e) => episode(
            "awaiting_service",
            v1::EpisodeView {
                service: e.service.clone(),
                ..d()
            },
        ),
        E::DischargeAgreed(e) => episode(
            "discharge_agreed",
            v1::EpisodeView {
                service: e.service.clone(),
                planned_for: e.planned_for.clone(),
                ..d()
            },
        ),
        E::ProviderFellThrough(_) => episode("awaiting_service", d()),
        E::PersonDeteriorated(_) => episode("planning", d()),
        E::PersonDischarged(e) => episode(
            "discharged",
            v1::EpisodeView {
                discharged_at: e.discharged_at,
                discharge_destination: e.destination.clone(),
                discharge_destination_code: e.destination_code.clone(),
                ..d()
            },
        ),
        E::HandoverAccepted(e) => episode(
            "handover_accepted",
            v1::EpisodeView {
                handover_organisation: e.organisation.clone(),
                ..d()
            },
        ),
        E::HomeAssessmentCompleted(e) => episode(
            "home_assessment_completed",
            v1::EpisodeView {
                home_assessment_completed_on: e.completed_on.clone(),
                ..d()
            },
        ),
        E::DischargeEpisodeClosed(_) => episode("closed", d()),
        E::PersonDied(_) => episode("died", d()),
        E::PersonSelfDischarged(e) => episode(
            "self_discharged",
            v1::EpisodeView {
                discharged_at: e.left_at,
                ..d()
            },
        ),
        _ => Vec::new(),
    }
}
