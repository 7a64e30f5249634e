//! The log's guarantees against a real nats-server: optimistic concurrency per aggregate and
//! all-or-nothing appends of several events.

#![allow(clippy::unwrap_used)]

use carewoven_domain::values::{Code, LongText};
use carewoven_domain::{AggregateKind, Event, EventMeta, SCHEMA_VERSION, feedback};
use carewoven_eventlog::{Append, EventLog, LogConfig, LogError};
use carewoven_testkit::NatsServer;
use chrono::Utc;
use uuid::Uuid;

fn meta(person: Uuid, kind: AggregateKind, aggregate: Uuid, version: u64) -> EventMeta {
    EventMeta {
        event_id: Uuid::now_v7(),
        aggregate_id: aggregate,
        aggregate_kind: kind,
        person_id: person,
        version,
        command_id: Uuid::now_v7(),
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::now_v7(),
        organisation: Code::parse("o", "HOSP-A").unwrap(),
        user: Code::parse("u", "tester").unwrap(),
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
        schema_version: SCHEMA_VERSION,
    }
}

fn feedback(text_len: usize) -> Event {
    Event::Feedback(feedback::FeedbackEvent::Recorded {
        feedback: feedback::FeedbackRecord {
            source: feedback::FeedbackSource::Person,
            anonymous: true,
            text: LongText::parse("text", &"x".repeat(text_len)).unwrap(),
            rating: Some(4),
        },
    })
}

fn append(aggregate: Uuid, expected: u64, events: Vec<Event>) -> Append {
    let person = Uuid::from_u128(1);
    Append {
        person_id: person,
        kind: AggregateKind::Feedback,
        aggregate_id: aggregate,
        expected_last_sequence: expected,
        fingerprint: "test".into(),
        events: events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    meta(person, AggregateKind::Feedback, aggregate, i as u64 + 1),
                    e,
                )
            })
            .collect(),
    }
}

async fn open(nats: &NatsServer, max_message_bytes: i32) -> EventLog {
    let client = async_nats::connect(nats.url()).await.unwrap();
    EventLog::open(
        client,
        LogConfig {
            max_message_bytes,
            ..LogConfig::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn of_two_appends_against_the_same_state_exactly_one_lands() {
    let nats = NatsServer::start().unwrap();
    let log = open(&nats, 1024 * 1024).await;
    let aggregate = Uuid::now_v7();
    let first = log
        .append(append(aggregate, 0, vec![feedback(10)]))
        .await
        .unwrap();
    let seq = first.last_sequence();
    let (a, b) = tokio::join!(
        log.append(append(aggregate, seq, vec![feedback(10)])),
        log.append(append(aggregate, seq, vec![feedback(10)]))
    );
    let conflicts = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(LogError::Conflict)))
        .count();
    assert_eq!(conflicts, 1, "{a:?} {b:?}");
    assert_eq!(log.message_count().await.unwrap(), 2);
    // A stale expectation is refused too, for a batch of several events.
    let stale = log
        .append(append(aggregate, seq, vec![feedback(10), feedback(10)]))
        .await;
    assert!(matches!(stale, Err(LogError::Conflict)), "{stale:?}");
    assert_eq!(log.message_count().await.unwrap(), 2);
}

#[tokio::test]
async fn a_batch_whose_last_event_is_refused_stores_none_of_its_events() {
    let nats = NatsServer::start().unwrap();
    let log = open(&nats, 1024).await;
    let aggregate = Uuid::now_v7();
    // The first two events fit; the third is over the stream's message size limit.
    let result = log
        .append(append(
            aggregate,
            0,
            vec![feedback(10), feedback(10), feedback(3000)],
        ))
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(log.message_count().await.unwrap(), 0, "all or nothing");
    let history = log
        .load(Uuid::from_u128(1), AggregateKind::Feedback, aggregate)
        .await
        .unwrap();
    assert!(history.events.is_empty());
    // The same events without the oversized one land together, contiguously.
    let ok = log
        .append(append(aggregate, 0, vec![feedback(10), feedback(10)]))
        .await
        .unwrap();
    let seqs: Vec<u64> = ok.events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[tokio::test]
async fn an_aggregate_longer_than_one_read_batch_loads_whole() {
    let nats = NatsServer::start().unwrap();
    let log = open(&nats, 1024 * 1024).await;
    let aggregate = Uuid::now_v7();
    let mut last = 0;
    for version in 1..=2500u64 {
        let mut a = append(aggregate, last, vec![feedback(10)]);
        a.events[0].0.version = version;
        last = log.append(a).await.unwrap().last_sequence();
    }
    let history = log
        .load(Uuid::from_u128(1), AggregateKind::Feedback, aggregate)
        .await
        .unwrap();
    assert_eq!(history.events.len(), 2500);
    assert_eq!(history.last_sequence, last);
    let versions: Vec<u64> = history.recorded().map(|e| e.meta.version).collect();
    assert_eq!(versions, (1..=2500).collect::<Vec<_>>());
}

/// Registry facts (an organisation's events) belong to no person: they are stored under the
/// nil person id, load by their aggregate like any other, are selected by their kind, and
/// never appear among a real person's events. The nil person is never "registered".
#[tokio::test]
async fn registry_events_live_under_the_nil_person_and_load_by_aggregate() {
    use carewoven_domain::organisation::{
        OrganisationEvent, OrganisationProfile, OrganisationType,
    };
    use carewoven_domain::values::ShortText;
    use carewoven_eventlog::subjects;

    let nats = NatsServer::start().unwrap();
    let log = open(&nats, 1024 * 1024).await;
    let registry = carewoven_domain::REGISTRY_PERSON;
    let organisation = Uuid::now_v7();
    let events = [
        Event::Organisation(OrganisationEvent::Registered {
            code: Code::parse("code", "HOSP-A").unwrap(),
            profile: OrganisationProfile {
                name: ShortText::parse("name", "Synthetic hospital").unwrap(),
                org_type: OrganisationType::NhsTrust,
            },
            services: vec![Code::parse("services", "HOSP-A").unwrap()],
        }),
        Event::Organisation(OrganisationEvent::ServiceAdded {
            service: Code::parse("service", "HOSP-A-WARD-7").unwrap(),
        }),
    ];
    let mut last = 0;
    for (version, event) in (1..).zip(events) {
        last = log
            .append(Append {
                person_id: registry,
                kind: AggregateKind::Organisation,
                aggregate_id: organisation,
                expected_last_sequence: last,
                fingerprint: "test".into(),
                events: vec![(
                    meta(registry, AggregateKind::Organisation, organisation, version),
                    event,
                )],
            })
            .await
            .unwrap()
            .last_sequence();
    }
    // A person's event alongside.
    log.append(append(Uuid::now_v7(), 0, vec![feedback(10)]))
        .await
        .unwrap();

    let history = log
        .load(registry, AggregateKind::Organisation, organisation)
        .await
        .unwrap();
    let versions: Vec<u64> = history.recorded().map(|e| e.meta.version).collect();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(history.last_sequence, last);
    assert!(
        history
            .recorded()
            .all(|e| e.meta.person_id.is_nil() && matches!(e.event, Event::Organisation(_)))
    );
    let by_kind = log
        .read_filtered(&subjects::kind(AggregateKind::Organisation), 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(by_kind.events.len(), 2);
    let person = log
        .read_filtered(&subjects::person(Uuid::from_u128(1)), 1, usize::MAX)
        .await
        .unwrap();
    assert_eq!(person.events.len(), 1, "the registry is no person's record");
    assert!(!log.person_exists(registry).await.unwrap());
}
