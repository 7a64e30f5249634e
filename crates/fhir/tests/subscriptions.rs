//! Partner feeds as FHIR subscriptions (HL7 Subscriptions R5 Backport, R4 shape), end to end:
//! a real nats-server, the command service, the gateway delivering rest-hook notifications to
//! a loopback receiver in this test (which fails, then recovers), the views' FHIR API serving
//! `Subscription`, `$status` and `$events` over plain HTTP. The partner uses FHIR alone: no
//! protobuf. Every Bundle the API answers and every notification the receiver took is
//! validated by the outside validator (fhir.resources 6.4.0, R4) and the backport's and UK
//! Core's rules it cannot check.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::{HeaderMap, StatusCode};
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use carewoven_testkit::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// A partner whose agreement covers the care team only: referrals reach it as identifiers.
const LIMITED: &str = "VCS-LTD";

/// The partner's rest-hook endpoint: answers 500 until healed, then 200, and keeps what it
/// took, in arrival order.
#[derive(Default)]
struct Receiver {
    healthy: AtomicBool,
    failed: AtomicU64,
    /// (event number, notification) of every notification answered 200.
    taken: Mutex<Vec<(u64, Value)>>,
}

impl Receiver {
    async fn start() -> Result<(Arc<Self>, String)> {
        let receiver = Arc::new(Receiver::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/notify", listener.local_addr()?);
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move { state.take(&headers, &body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((receiver, url))
    }

    fn take(&self, headers: &HeaderMap, body: &str) -> StatusCode {
        let fhir = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/fhir+json"));
        let Ok(bundle) = serde_json::from_str::<Value>(body) else {
            return StatusCode::BAD_REQUEST;
        };
        if !fhir {
            return StatusCode::UNSUPPORTED_MEDIA_TYPE;
        }
        if !self.healthy.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        for n in event_numbers(&bundle) {
            taken.push((n, bundle.clone()));
        }
        StatusCode::OK
    }

    fn numbers(&self) -> Vec<u64> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, _)| *n)
            .collect()
    }

    fn notifications(&self) -> Vec<Value> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// The status Parameters of a notification or `$status` Bundle (its first entry).
fn status_of(bundle: &Value) -> &Value {
    &bundle["entry"][0]["resource"]
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> Option<&'a Value> {
    parameters["parameter"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

fn event_numbers(bundle: &Value) -> Vec<u64> {
    status_of(bundle)["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "notification-event")
        .filter_map(|p| {
            p["part"].as_array()?.iter().find_map(|part| {
                (part["name"] == "event-number")
                    .then(|| part["valueString"].as_str()?.parse().ok())?
            })
        })
        .collect()
}

/// The resources a notification carries after its status.
fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .map(|e| e["resource"].clone())
        .collect()
}

struct World {
    stack: Stack,
    views: Running,
    gateway: Option<Running>,
    gateway_config: carewoven_gateway::Config,
    /// The first gateway's `/metrics` address.
    metrics: String,
    fhir: String,
    _dir: tempfile::TempDir,
    seen: Mutex<Vec<Value>>,
}

impl World {
    async fn start(hook: &str) -> Result<Self> {
        let stack = Stack::start().await?;
        let mut c = stack.client.clone();
        register_partner_as(
            &mut c,
            LIMITED,
            &[LIMITED],
            &[v1::DataClass::CareTeam as i32],
            v1::OrganisationType::Voluntary,
        )
        .await?;
        let dir = tempfile::tempdir()?;
        let fhir = format!("127.0.0.1:{}", free_port()?);
        let hooks = dir.path().join("rest-hooks.json");
        std::fs::write(&hooks, serde_json::json!({ "ASC-D2A": hook }).to_string())?;
        let mut gateway_config = carewoven_gateway::Config::for_nats(stack.nats.url());
        gateway_config.rest_hooks = Some(hooks);
        gateway_config.rest_hook_state = Some(dir.path().join("rest-hooks.redb"));
        gateway_config.rest_hook_retry_ms = 20;
        gateway_config.rest_hook_retry_max_ms = 200;
        gateway_config.fhir_base_url = format!("http://{fhir}/fhir");
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let mut first = gateway_config.clone();
        first.service.metrics.metrics_listen = Some(metrics.parse()?);
        let (gateway, _) = start_gateway(first).await?;
        let mut config =
            carewoven_views::Config::new(stack.nats.url(), dir.path().join("views.redb"));
        config.fhir_listen = Some(fhir.clone());
        config.fhir_audit_server = Some(format!("http://{}", gateway.addr));
        let views = start_views(config).await?;
        Ok(World {
            stack,
            views,
            gateway: Some(gateway),
            gateway_config,
            metrics,
            fhir,
            _dir: dir,
            seen: Mutex::new(Vec::new()),
        })
    }

    async fn get(&self, path: &str, org: Option<&str>) -> Result<(u16, Value)> {
        let token = org.map(token);
        let (status, _, body) = common::get(&self.fhir, path, token.as_deref(), 0).await?;
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(body.clone());
        Ok((status, body))
    }

    async fn ok(&self, path: &str, org: &str) -> Result<Value> {
        let (status, body) = self.get(path, Some(org)).await?;
        anyhow::ensure!(status == 200, "{path} as {org}: {status} {body}");
        Ok(body)
    }

    /// `$status` as `org`: the status Parameters.
    async fn status(&self, org: &str) -> Result<Value> {
        let bundle = self
            .ok(&format!("/fhir/Subscription/{org}/$status"), org)
            .await?;
        anyhow::ensure!(bundle["type"] == "searchset", "{bundle}");
        Ok(status_of(&bundle).clone())
    }

    /// The rest-hook backlog gauge of `org` on the first gateway's `/metrics`.
    async fn backlog(&self, org: &str) -> Result<Option<f64>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.metrics).await?;
        stream
            .write_all(
                format!(
                    "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.metrics
                )
                .as_bytes(),
            )
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        let series = format!("carewoven_rest_hook_backlog{{partner=\"{org}\"}} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok()))
    }

    async fn stop(self) -> Result<()> {
        if let Some(g) = self.gateway {
            g.stop().await?;
        }
        self.views.stop().await?;
        self.stack.service.stop().await
    }
}

/// The endpoint took every item of the feed and the subscription is active.
async fn delivered_all(w: &World, receiver: &Receiver) -> bool {
    let Ok(s) = w.status("ASC-D2A").await else {
        return false;
    };
    let last = number(&s, "events-since-subscription-start");
    last > 0
        && value(&s, "status", "valueCode") == "active"
        && number(&s, "carewoven-delivered-event-number") == last
        && receiver.numbers().last() == Some(&last)
}

fn value<'a>(parameters: &'a Value, name: &str, key: &str) -> &'a Value {
    parameter(parameters, name).map_or(&Value::Null, |p| &p[key])
}

fn number(parameters: &Value, name: &str) -> u64 {
    value(parameters, name, "valueString")
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn extension_code<'a>(resource: &'a Value, name: &str) -> Option<&'a str> {
    resource["extension"]
        .as_array()?
        .iter()
        .find(|x| x["url"].as_str().is_some_and(|u| u.ends_with(name)))?["valueCoding"]["code"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partner_follows_a_journey_through_notifications_alone() -> Result<()> {
    use pd::Step;
    let (receiver, hook) = Receiver::start().await?;
    let mut w = World::start(&hook).await?;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 81, "GP-A").await?;
    let nhs = test_nhs_number(81);
    let episode = episode_ready(&mut c, &person).await?;
    // The hospital joins the care team, then adds the limited partner.
    add_member(&mut c, &person, "HOSP-A", "HOSP-A").await?;
    add_member(&mut c, &person, "HOSP-A", LIMITED).await?;
    let referral = refer(&mut c, &person, "HOSP-A", "ASC-D2A").await?;
    c.progress_referral(signed(referral_action(
        &person,
        &referral,
        v1::ReferralAction::Receive,
        "ASC-D2A",
    )))
    .await?;

    // The endpoint fails: nothing is dropped, the subscription says it is in error.
    eventually("failed deliveries reported as an error", WAIT, || async {
        receiver.failed.load(Ordering::SeqCst) >= 3
            && w.status("ASC-D2A").await.is_ok_and(|s| {
                value(&s, "status", "valueCode") == "error"
                    && value(&s, "carewoven-delivery-errors", "valueUnsignedInt")
                        .as_u64()
                        .is_some_and(|n| n >= 1)
                    && value(&s, "error", "valueCodeableConcept")["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("HTTP 500"))
            })
    })
    .await?;
    let subscription = w.ok("/fhir/Subscription/ASC-D2A", "ASC-D2A").await?;
    assert_eq!(subscription["status"], "error");
    assert_eq!(
        subscription["criteria"],
        carewoven_fhir::subscription::TOPIC
    );
    assert_eq!(subscription["channel"]["type"], "rest-hook");
    assert_eq!(subscription["channel"]["endpoint"], hook.as_str());
    assert!(
        subscription["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500"))
    );
    assert!(receiver.numbers().is_empty());
    eventually("the backlog visible", WAIT, || async {
        w.backlog("ASC-D2A")
            .await
            .ok()
            .flatten()
            .is_some_and(|b| b >= 1.0)
    })
    .await?;
    let failing = w.status("ASC-D2A").await?;
    assert_eq!(number(&failing, "carewoven-delivered-event-number"), 0);

    // It recovers: every number once, in order, and the subscription is active again.
    receiver.healthy.store(true, Ordering::SeqCst);
    eventually("delivery after recovery", WAIT, || {
        delivered_all(&w, &receiver)
    })
    .await?;

    // The rest of the journey: accepted, pathway 1 (delayed awaiting reablement), discharged
    // home, handover accepted.
    common::accept_and_agree_discharge(&mut c, &person, &episode, &referral).await?;
    for step in [Step::Discharge(pd::Discharge {
        discharged_at: ts_hours_ago(1),
        destination: "Home".into(),
        destination_code: "19".into(),
    })] {
        c.progress_discharge(signed(discharge_step(&person, &episode, step)))
            .await?;
    }
    c.progress_discharge(signed(discharge_step_by(
        "ASC-D2A",
        &person,
        &episode,
        Step::AcceptHandover(pd::AcceptHandover {
            organisation: "ASC-D2A".into(),
        }),
    )))
    .await?;
    let handed_over = |receiver: &Receiver| {
        receiver
            .notifications()
            .iter()
            .flat_map(resources)
            .any(|r| {
                r["resourceType"] == "Encounter"
                    && extension_code(&r, "d2a-status") == Some("handover_accepted")
            })
    };
    eventually("the handover notified", WAIT, || async {
        handed_over(&receiver)
    })
    .await?;
    eventually("everything delivered", WAIT, || {
        delivered_all(&w, &receiver)
    })
    .await?;
    let n = *receiver.numbers().last().context("nothing delivered")?;
    eventually("the backlog drained", WAIT, || async {
        w.backlog("ASC-D2A").await.ok().flatten() == Some(0.0)
    })
    .await?;
    assert_eq!(
        receiver.numbers(),
        (1..=n).collect::<Vec<_>>(),
        "each number once, in order"
    );

    // Through notifications alone the partner follows the journey.
    let notified = receiver.notifications();
    for bundle in &notified {
        assert_eq!(bundle["type"], "history");
        let status = status_of(bundle);
        assert_eq!(status["resourceType"], "Parameters");
        assert_eq!(value(status, "type", "valueCode"), "event-notification");
        assert_eq!(
            value(status, "subscription", "valueReference")["reference"],
            "Subscription/ASC-D2A"
        );
        assert!(
            !bundle.to_string().contains(&nhs),
            "no NHS number in a notification"
        );
    }
    let all: Vec<Value> = notified.iter().flat_map(resources).collect();
    let of = |rtype: &str, id: &str| -> Vec<&Value> {
        all.iter()
            .filter(|r| r["resourceType"] == rtype && r["id"] == id)
            .collect()
    };
    let request = of("ServiceRequest", &referral);
    assert_eq!(request.len(), 1, "the referral, once");
    assert_eq!(
        request[0]["subject"]["reference"],
        format!("Patient/{person}")
    );
    let tasks: Vec<&str> = of("Task", &referral)
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert_eq!(tasks, vec!["requested", "received", "accepted"]);
    let encounters = of("Encounter", &episode);
    let stages: Vec<&str> = encounters
        .iter()
        .filter_map(|e| extension_code(e, "d2a-status"))
        .collect();
    assert_eq!(
        stages,
        vec![
            "pathway_assigned",
            "awaiting_service",
            "discharge_agreed",
            "discharged",
            "handover_accepted"
        ]
    );
    let discharged = encounters
        .iter()
        .find(|e| extension_code(e, "d2a-status") == Some("discharged"))
        .context("the discharge")?;
    assert_eq!(discharged["status"], "finished");
    assert_eq!(
        discharged["hospitalization"]["dischargeDisposition"]["coding"][0]["code"],
        "19"
    );
    assert_eq!(
        discharged["hospitalization"]["dischargeDisposition"]["coding"][0]["system"],
        common::DESTINATIONS
    );
    let pathway = of("EpisodeOfCare", &episode)
        .iter()
        .find_map(|e| {
            e["type"].as_array()?.iter().find_map(|t| {
                t["coding"][0]["system"]
                    .as_str()
                    .is_some_and(|s| s.contains("pathway"))
                    .then(|| t["coding"][0]["code"].clone())
            })
        })
        .context("the pathway")?;
    assert!(
        pathway.as_str().is_some_and(|p| p.contains('1')),
        "{pathway}"
    );
    let handover = of("Task", &episode);
    assert_eq!(
        handover.last().map(|t| t["status"].clone()),
        Some(Value::from("accepted"))
    );
    // Each notification's focus is the resource it carries first.
    for bundle in &notified {
        let focus = status_of(bundle)["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "notification-event")
            .and_then(|e| e["part"].as_array()?.iter().find(|p| p["name"] == "focus"))
            .map(|p| p["valueReference"]["reference"].clone())
            .context("a focus")?;
        if let Some(first) = resources(bundle).first() {
            assert_eq!(
                focus,
                Value::from(format!(
                    "{}/{}",
                    first["resourceType"].as_str().unwrap_or_default(),
                    first["id"].as_str().unwrap_or_default()
                ))
            );
        }
    }

    // A missed range, fetched with $events, says what the notifications said.
    let missed = w
        .ok(
            "/fhir/Subscription/ASC-D2A/$events?eventsSinceNumber=2&eventsUntilNumber=4",
            "ASC-D2A",
        )
        .await?;
    assert_eq!(missed["type"], "history");
    assert_eq!(
        value(status_of(&missed), "type", "valueCode"),
        "query-event"
    );
    assert_eq!(event_numbers(&missed), vec![2, 3, 4]);
    assert_eq!(
        number(status_of(&missed), "events-since-subscription-start"),
        n
    );
    let notified_2_to_4: Vec<Value> = receiver
        .taken
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(k, _)| (2..=4).contains(k))
        .flat_map(|(_, b)| resources(b))
        .collect();
    assert_eq!(resources(&missed), notified_2_to_4);
    // Without bounds: everything, from 1.
    let everything = w
        .ok("/fhir/Subscription/ASC-D2A/$events", "ASC-D2A")
        .await?;
    assert_eq!(event_numbers(&everything), (1..=n).collect::<Vec<_>>());
    // Beyond the end: the status alone.
    let beyond = w
        .ok(
            &format!(
                "/fhir/Subscription/ASC-D2A/$events?eventsSinceNumber={}",
                n + 1
            ),
            "ASC-D2A",
        )
        .await?;
    assert!(event_numbers(&beyond).is_empty());

    // Bad parameters: 400 naming the parameter.
    for (query, name) in [
        ("eventsSinceNumber=0", "eventsSinceNumber"),
        ("eventsSinceNumber=two", "eventsSinceNumber"),
        (
            "eventsSinceNumber=5&eventsUntilNumber=2",
            "eventsUntilNumber",
        ),
        ("eventsUntilNumber=-1", "eventsUntilNumber"),
        ("since=1", "since"),
    ] {
        let (status, body) = w
            .get(
                &format!("/fhir/Subscription/ASC-D2A/$events?{query}"),
                Some("ASC-D2A"),
            )
            .await?;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["expression"][0], name, "{query}");
    }
    let (status, _) = w.get("/fhir/Subscription/ASC-D2A/$status", None).await?;
    assert_eq!(status, 401);

    // Another organisation: another's subscription is 404, the same as none at all, and its
    // own feed says nothing of this person.
    let (other, other_body) = w.get("/fhir/Subscription/ASC-D2A", Some("COMM")).await?;
    let (none, none_body) = w.get("/fhir/Subscription/NOBODY", Some("COMM")).await?;
    assert_eq!((other, none), (404, 404));
    assert_eq!(
        other_body["issue"][0]["code"],
        none_body["issue"][0]["code"]
    );
    for op in ["$status", "$events?eventsSinceNumber=1"] {
        let (status, _) = w
            .get(&format!("/fhir/Subscription/ASC-D2A/{op}"), Some("COMM"))
            .await?;
        assert_eq!(status, 404, "{op}");
    }
    let own = w.ok("/fhir/Subscription/COMM", "COMM").await?;
    assert_eq!(own["status"], "active");
    assert!(own["channel"]["type"].is_null(), "no rest-hook: {own}");
    let comm = w.ok("/fhir/Subscription/COMM/$events", "COMM").await?;
    assert!(event_numbers(&comm).is_empty());
    assert!(!comm.to_string().contains(&person));
    let search = w.ok("/fhir/Subscription", "COMM").await?;
    assert_eq!(search["entry"].as_array().map(Vec::len), Some(1));
    assert_eq!(search["entry"][0]["resource"]["id"], "COMM");

    // Identifiers only: the referral reached the limited partner as a focus, never content.
    let limited = w
        .ok(&format!("/fhir/Subscription/{LIMITED}/$events"), LIMITED)
        .await?;
    let text = limited.to_string();
    assert!(
        text.contains(&format!("ServiceRequest/{referral}")),
        "{text}"
    );
    assert!(
        !text.contains("Needs support at home"),
        "referral content leaked"
    );
    assert!(!text.contains(&nhs), "NHS number leaked");
    let types: Vec<Value> = resources(&limited)
        .iter()
        .map(|r| r["resourceType"].clone())
        .collect();
    assert!(
        types.iter().all(|t| t == "CareTeam"),
        "only the care team is disclosed in full: {types:?}"
    );
    assert!(!types.is_empty());

    // A gateway restart resumes after the last acknowledged number: nothing repeated.
    w.gateway.take().context("gateway")?.stop().await?;
    c.progress_discharge(signed(discharge_step_by(
        "ASC-D2A",
        &person,
        &episode,
        Step::CompleteHomeAssessment(pd::CompleteHomeAssessment {
            completed_on: date_days_ago(0),
            outcome: "Independent with reablement".into(),
        }),
    )))
    .await?;
    let (gateway, _) = start_gateway(w.gateway_config.clone()).await?;
    w.gateway = Some(gateway);
    eventually("delivery after the restart", WAIT, || async {
        receiver.numbers().len() as u64 > n
    })
    .await?;
    assert_eq!(
        receiver.numbers(),
        (1..=n + 1).collect::<Vec<_>>(),
        "each number once across a restart"
    );
    let last = receiver.notifications().pop().context("last")?;
    assert!(resources(&last).iter().any(|r| {
        r["resourceType"] == "Encounter"
            && extension_code(r, "d2a-status") == Some("home_assessment_completed")
    }));

    let mut seen: Vec<Value> = w
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    seen.extend(receiver.notifications());
    let kinds: BTreeMap<String, usize> = seen.iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(b["resourceType"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        m
    });
    assert!(kinds.contains_key("Subscription") && kinds.contains_key("Bundle"));
    common::validate(&seen)?;
    w.stop().await
}
