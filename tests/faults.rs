//! Faults stay local, end to end (real nats-server; the command service, the views and the
//! gateway over gRPC on loopback): an event the services cannot decode closes only its
//! person's record, a message naming no person is skipped, and an operator's
//! `--index-skip-undecodable` reopens the record and is audited.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream;
use carewoven_gateway::evaluator::Progress;
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, feed_service_client::FeedServiceClient,
    query_service_client::QueryServiceClient,
};
use carewoven_testkit::*;
use tokio::sync::watch;
use tonic::Code;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// A registered organisation with no relationship with anyone in these tests.
const STRANGER: &str = "ASC-REABLE";

/// Payloads no Carewoven build can decode.
const GARBAGE: &[u8] = b"\xff\xff not protobuf";

struct World {
    stack: Stack,
    views: Running,
    gateway: Running,
    progress: watch::Receiver<Progress>,
    js: jetstream::Context,
    dir: tempfile::TempDir,
}

/// A person admitted to HOSP-A (which therefore may read their record and is sent their
/// events).
struct Person {
    id: String,
    registration: u64,
    admission: u64,
}

impl World {
    async fn start() -> World {
        let stack = Stack::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let js = jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
        let (views, gateway, progress) = Self::services(&stack, &dir, &[]).await;
        World {
            stack,
            views,
            gateway,
            progress,
            js,
            dir,
        }
    }

    /// The views and the gateway, skipping these undecodable events.
    async fn services(
        stack: &Stack,
        dir: &tempfile::TempDir,
        skip: &[u64],
    ) -> (Running, Running, watch::Receiver<Progress>) {
        let mut config = carewoven_views::Config::new(stack.nats.url(), dir.path().join("v.redb"));
        config.service.access.index_skip_undecodable = skip.to_vec();
        let views = start_views(config).await.unwrap();
        let mut config = carewoven_gateway::Config::for_nats(stack.nats.url());
        config.service.access.index_skip_undecodable = skip.to_vec();
        let (gateway, progress) = start_gateway(config).await.unwrap();
        (views, gateway, progress)
    }

    /// Restart every service, skipping these undecodable events.
    async fn restart_skipping(mut self, skip: &[u64]) -> World {
        let mut config = self.stack.config();
        config.service.access.index_skip_undecodable = skip.to_vec();
        self.stack.restart_service(config).await.unwrap();
        // One views service per file, one gateway per log: stop the old ones first.
        self.gateway.stop().await.unwrap();
        self.views.stop().await.unwrap();
        let (views, gateway, progress) = Self::services(&self.stack, &self.dir, skip).await;
        World {
            views,
            gateway,
            progress,
            ..self
        }
    }

    async fn stop(self) {
        self.gateway.stop().await.unwrap();
        self.views.stop().await.unwrap();
        self.stack.service.stop().await.unwrap();
    }

    async fn admitted(&mut self, n: u32) -> Person {
        let mut c = self.stack.client.clone();
        let reply = c
            .register_person(signed(register_request(n)))
            .await
            .unwrap()
            .into_inner();
        let admission = c
            .admit_person(signed(v1::AdmitPersonRequest {
                context: ctx("HOSP-A"),
                person_id: reply.person_id.clone(),
                site: "HOSP-A".into(),
                ward: "Ward 7".into(),
                admitted_at: ts_hours_ago(2),
            }))
            .await
            .unwrap()
            .into_inner();
        // The admitting hospital joins the care team, so it may add others.
        c.add_care_team_member(signed(add_member_request(
            &reply.person_id,
            "HOSP-A",
            "HOSP-A",
        )))
        .await
        .unwrap();
        Person {
            id: reply.person_id,
            registration: reply.log_position,
            admission: admission.log_position,
        }
    }

    /// Publish `payload` straight to the log on `subject`; its sequence.
    async fn publish(&self, subject: String, payload: &[u8]) -> u64 {
        self.js
            .publish(subject, bytes::Bytes::copy_from_slice(payload))
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    }

    /// Append again, straight to the log, the person's registration (a readable event about
    /// them that no command would write); its sequence.
    async fn again(&self, person: &Person) -> u64 {
        let stream = self.js.get_stream("CAREWOVEN").await.unwrap();
        let stored = stream.get_raw_message(person.registration).await.unwrap();
        self.publish(stored.subject.to_string(), &stored.payload)
            .await
    }

    /// Wait until the gateway has settled every decision up to `position`.
    async fn settled(&mut self, position: u64) {
        let reached = tokio::time::timeout(
            WAIT,
            self.progress.wait_for(|p| p.delivered_through >= position),
        )
        .await
        .map(|r| r.is_ok());
        assert!(
            matches!(reached, Ok(true)),
            "the gateway did not settle {position}: {:?}",
            *self.progress.borrow()
        );
    }

    /// The (log position, person) of each event HOSP-A's feed carries.
    async fn hospital_feed(&self) -> Vec<(u64, String)> {
        let js = &self.js;
        let feed = js
            .get_stream_no_info(carewoven_gateway::evaluator::FEED_STREAM)
            .await
            .unwrap();
        let head = carewoven_gateway::evaluator::feed_head(&feed, "HOSP-A")
            .await
            .unwrap();
        let mut feeds = FeedServiceClient::new(self.gateway.channel());
        let mut stream = feeds
            .subscribe(as_org("HOSP-A", v1::SubscribeRequest::default()))
            .await
            .unwrap()
            .into_inner();
        let mut positions = Vec::new();
        while (positions.len() as u64) < head.number {
            let item = tokio::time::timeout(WAIT, stream.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let person = item.identifiers.map(|i| i.person_id).unwrap_or_default();
            positions.push((item.log_position, person));
        }
        positions
    }

    async fn read(&self, person: &Person) -> Result<v1::CareRecord, tonic::Status> {
        let mut q = QueryServiceClient::new(self.views.channel());
        q.get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: person.id.clone(),
                min_log_position: person.admission,
            },
        ))
        .await
        .map(|r| r.into_inner())
    }

    async fn add_member(&self, person: &Person, member: &str) -> Result<u64, tonic::Status> {
        self.add_member_by("HOSP-A", person, member).await
    }

    async fn add_member_by(
        &self,
        by: &str,
        person: &Person,
        member: &str,
    ) -> Result<u64, tonic::Status> {
        let mut c = self.stack.client.clone();
        c.add_care_team_member(signed(add_member_request(&person.id, by, member)))
            .await
            .map(|r| r.into_inner().log_position)
    }

    /// Every service's access index has applied the log to its end: an organisation
    /// without a relationship is refused (a refusal is confirmed against the log's end),
    /// PERMISSION_DENIED and not UNAVAILABLE (the index did not stop).
    async fn indexes_caught_up(&self, person: &Person) {
        let refused = self
            .add_member_by(STRANGER, person, "COMM")
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "commands: {refused:?}"
        );
        let mut q = QueryServiceClient::new(self.views.channel());
        let refused = q
            .get_care_record(as_org(
                STRANGER,
                v1::GetCareRecordRequest {
                    person_id: person.id.clone(),
                    min_log_position: 0,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "views: {refused:?}");
        let mut audit = AuditServiceClient::new(self.gateway.channel());
        let refused = audit
            .list_record_access(as_org(
                STRANGER,
                v1::ListRecordAccessRequest {
                    person_id: person.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "gateway: {refused:?}"
        );
    }
}

/// An undecodable event about `person` (an objection, for all anyone can tell).
fn garbage_subject(person: &Person) -> String {
    format!(
        "cw.evt.{}.consent.{}.consent_recorded",
        person.id,
        Uuid::now_v7()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_stops_only_its_persons_deliveries_until_an_audited_skip() {
    let mut w = World::start().await;
    let a = w.admitted(1).await;
    let b = w.admitted(2).await;

    // A message on a subject that names no one, and garbage on A's event subject.
    let nobody = w.publish("cw.evt.x".to_owned(), GARBAGE).await;
    let bad = w.publish(garbage_subject(&a), GARBAGE).await;
    assert!(nobody > b.admission && bad > nobody);

    // Everyone else carries on: every service's access index gets past both (a refusal is
    // confirmed against the log's end, and is not UNAVAILABLE); B's commands are decided, B's
    // record is read, B's events are delivered.
    w.indexes_caught_up(&b).await;
    let b_member = w.add_member(&b, "COMM").await.unwrap();
    let b_again = w.again(&b).await;
    let a_again = w.again(&a).await;
    assert_eq!(w.read(&b).await.unwrap().person_id, b.id);
    w.settled(b_again.max(a_again)).await;
    let feed = w.hospital_feed().await;
    for position in [a.admission, b.admission, b_member, b_again] {
        assert!(
            feed.iter().any(|(p, _)| *p == position),
            "{position} delivered: {feed:?}"
        );
    }
    // Nothing about A from the undecodable event on.
    assert!(
        feed.iter().all(|(p, person)| *person != a.id || *p < bad),
        "A's events after the undecodable one are held back: {feed:?}"
    );

    // The operator looks at it and lets every service treat it as applied.
    let mut w = w.restart_skipping(&[bad]).await;
    let a_later = w.again(&a).await;
    w.settled(a_later).await;
    let feed = w.hospital_feed().await;
    assert!(
        feed.iter().any(|(p, _)| *p == a_later),
        "A's deliveries resume: {feed:?}"
    );
    // A's commands and record work again.
    w.add_member(&a, "COMM").await.unwrap();
    assert_eq!(w.read(&a).await.unwrap().person_id, a.id);

    // Every service that applied the skip audited it first, naming the event and person.
    let subject = format!("cw.audit.{}.operator.undecodable_skipped", a.id);
    let deadline = std::time::Instant::now() + WAIT;
    let records = loop {
        let records = w.stack.audit(&subject).await.unwrap();
        if records.len() >= 4 {
            break records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every service audits the skip: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut details: Vec<String> = records.iter().map(|(_, r)| r.detail.clone()).collect();
    details.sort();
    assert_eq!(
        details,
        [
            "carewoven-commands: access index, --index-skip-undecodable",
            "carewoven-gateway: access index, --index-skip-undecodable",
            "carewoven-gateway: feed evaluator, --index-skip-undecodable",
            "carewoven-views: access index, --index-skip-undecodable",
        ]
    );
    for (_, record) in &records {
        assert_eq!(record.log_position, bad, "{record:?}");
        assert_eq!(record.person_id, a.id, "{record:?}");
        assert_eq!(record.organisation, "operator", "{record:?}");
        assert_eq!(
            record.action,
            v1::AuditAction::UndecodableSkipped as i32,
            "{record:?}"
        );
    }
    w.stop().await;
}

/// Governance fails closed for a person with an undecodable event: commands and views refuse
/// that person only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_closes_only_its_persons_record_in_commands_and_views() {
    let mut w = World::start().await;
    let a = w.admitted(3).await;
    let b = w.admitted(4).await;
    w.publish("cw.evt.x".to_owned(), GARBAGE).await;
    let bad = w.publish(garbage_subject(&a), GARBAGE).await;
    w.indexes_caught_up(&b).await;
    w.add_member(&b, "COMM").await.unwrap();
    assert_eq!(w.read(&b).await.unwrap().person_id, b.id);
    let refused = w.add_member(&a, "COMM").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = w.read(&a).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let w = w.restart_skipping(&[bad]).await;
    w.add_member(&a, "COMM").await.unwrap();
    assert_eq!(w.read(&a).await.unwrap().person_id, a.id);
    w.stop().await;
}
