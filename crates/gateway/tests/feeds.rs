//! The partner-feed gateway end to end: real nats-server, the real command service and the
//! gateway over gRPC on loopback. Every attack case of the partner-feeds issue is here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Result;
use carewoven_gateway::evaluator::{Progress, decode_batch};
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, command_service_client::CommandServiceClient,
    feed_service_client::FeedServiceClient,
};
use carewoven_testkit::{
    NatsServer, Running, all_data_classes, as_org, ctx, register_partner, signed, start_commands,
};
use futures::StreamExt;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

const HOSP: &str = "HOSP";
const WARD: &str = "HOSP-WARD";
const COMM: &str = "COMM";
const REABLE: &str = "COMM-REABLE";
const GP: &str = "GP1";
const LA: &str = "LA";
const STRANGER: &str = "STRANGER";

struct World {
    nats: NatsServer,
    commands: Running,
    gateway: Option<Running>,
    progress: watch::Receiver<Progress>,
    client: CommandServiceClient<Channel>,
    /// Days added to the gateway's clock.
    clock_offset: Arc<AtomicI64>,
}

async fn start_gateway(
    nats: &NatsServer,
    offset: Arc<AtomicI64>,
) -> (Running, watch::Receiver<Progress>) {
    let mut config = carewoven_gateway::Config::for_nats(nats.url());
    config.clock = Arc::new(move || {
        chrono::Utc::now() + chrono::Duration::days(offset.load(Ordering::SeqCst))
    });
    carewoven_testkit::start_gateway(config).await.unwrap()
}

impl World {
    async fn start() -> World {
        let nats = NatsServer::start().unwrap();
        let commands = start_commands(carewoven_commands::Config::for_nats(nats.url()))
            .await
            .unwrap();
        let mut client = commands.client();
        let all = all_data_classes();
        register_partner(&mut client, HOSP, &[WARD], &all)
            .await
            .unwrap();
        register_partner(&mut client, COMM, &[REABLE], &all)
            .await
            .unwrap();
        register_partner(&mut client, GP, &["GP1-SURGERY"], &all)
            .await
            .unwrap();
        // The council may receive discharge and care-team facts only.
        register_partner(
            &mut client,
            LA,
            &["LA-ASC"],
            &[
                v1::DataClass::Discharge as i32,
                v1::DataClass::CareTeam as i32,
            ],
        )
        .await
        .unwrap();
        register_partner(&mut client, STRANGER, &["STRANGER-SVC"], &all)
            .await
            .unwrap();
        let offset = Arc::new(AtomicI64::new(0));
        let (gateway, progress) = start_gateway(&nats, offset.clone()).await;
        World {
            nats,
            commands,
            gateway: Some(gateway),
            progress,
            client,
            clock_offset: offset,
        }
    }

    fn gateway(&self) -> &Running {
        self.gateway.as_ref().unwrap()
    }

    async fn feeds(&self) -> FeedServiceClient<Channel> {
        FeedServiceClient::new(self.gateway().channel())
    }

    /// Wait until the gateway has settled every decision up to `position`.
    async fn settled(&mut self, position: u64) {
        let reached = tokio::time::timeout(
            DEADLINE,
            self.progress.wait_for(|p| p.delivered_through >= position),
        )
        .await
        .map(|r| r.is_ok());
        assert!(
            matches!(reached, Ok(true)),
            "gateway did not settle position {position}: {:?}",
            *self.progress.borrow()
        );
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            let _ = g.stop().await;
        }
        let _ = self.commands.stop().await;
        drop(self.nats);
    }

    async fn register(&mut self, n: u32) -> (String, u64) {
        let reply = self
            .client
            .register_person(signed(v1::RegisterPersonRequest {
                context: ctx(HOSP),
                profile: Some(v1::Profile {
                    nhs_number: carewoven_testkit::test_nhs_number(n),
                    given_name: "Ada".into(),
                    family_name: "Example".into(),
                    date_of_birth: "1941-03-02".into(),
                    ..Default::default()
                }),
            }))
            .await
            .unwrap()
            .into_inner();
        (reply.person_id, reply.log_position)
    }

    async fn admit(&mut self, person: &str) -> (String, u64) {
        let reply = self
            .client
            .admit_person(signed(v1::AdmitPersonRequest {
                context: ctx(HOSP),
                person_id: person.into(),
                site: WARD.into(),
                ward: "Ward 7".into(),
                admitted_at: Some(ts(chrono::Utc::now() - chrono::Duration::hours(30))),
            }))
            .await
            .unwrap()
            .into_inner();
        (reply.aggregate_id, reply.log_position)
    }

    async fn expected_date(&mut self, person: &str, episode: &str, days: u64) -> u64 {
        self.client
            .progress_discharge(signed(v1::ProgressDischargeRequest {
                context: ctx(HOSP),
                person_id: person.into(),
                episode_id: episode.into(),
                step: Some(
                    v1::progress_discharge_request::Step::SetExpectedDischargeDate(
                        v1::progress_discharge_request::SetExpectedDischargeDate {
                            expected: (carewoven_domain::values::uk_date(chrono::Utc::now())
                                + chrono::Days::new(days))
                            .to_string(),
                        },
                    ),
                ),
            }))
            .await
            .unwrap()
            .into_inner()
            .log_position
    }

    async fn refer(&mut self, person: &str) -> u64 {
        self.client
            .make_referral(signed(v1::MakeReferralRequest {
                context: ctx(HOSP),
                person_id: person.into(),
                referral: Some(v1::Referral {
                    from_organisation: HOSP.into(),
                    to_service: REABLE.into(),
                    priority: v1::Priority::Urgent as i32,
                    reason: "Reablement after discharge".into(),
                    replaces: String::new(),
                }),
            }))
            .await
            .unwrap()
            .into_inner()
            .log_position
    }

    async fn add_member(&mut self, person: &str, by: &str, member: &str) -> u64 {
        self.client
            .add_care_team_member(signed(v1::AddCareTeamMemberRequest {
                context: ctx(by),
                person_id: person.into(),
                member: Some(v1::MemberRef {
                    organisation: member.into(),
                    practitioner: String::new(),
                }),
                role: v1::CareTeamRole::GeneralPractice as i32,
                since: carewoven_domain::values::uk_date(chrono::Utc::now()).to_string(),
            }))
            .await
            .unwrap()
            .into_inner()
            .log_position
    }

    async fn remove_member(&mut self, person: &str, by: &str, member: &str) -> u64 {
        self.client
            .remove_care_team_member(signed(v1::RemoveCareTeamMemberRequest {
                context: ctx(by),
                person_id: person.into(),
                member: Some(v1::MemberRef {
                    organisation: member.into(),
                    practitioner: String::new(),
                }),
                until: carewoven_domain::values::uk_date(chrono::Utc::now()).to_string(),
                reason: "Registered with another practice".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .log_position
    }

    /// The person's objection, recorded for them by the governance role (an objection
    /// belongs to the person, never to an organisation).
    async fn object(&mut self, person: &str, partner: &str) -> u64 {
        self.client
            .record_consent(governance(v1::RecordConsentRequest {
                context: ctx(carewoven_testkit::partners::GOVERNANCE_ORG),
                person_id: person.into(),
                terms: Some(v1::ConsentTerms {
                    decision: v1::ConsentDecision::Deny as i32,
                    purpose: v1::Purpose::DirectCare as i32,
                    partners: vec![partner.into()],
                    data_classes: vec![],
                    valid_from: carewoven_domain::values::uk_date(chrono::Utc::now()).to_string(),
                    valid_until: String::new(),
                    capacity_assessed: true,
                }),
            }))
            .await
            .unwrap()
            .into_inner()
            .log_position
    }
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// Read `n` items from a subscription, with a deadline.
async fn take(stream: &mut tonic::Streaming<v1::FeedItem>, n: usize) -> Vec<v1::FeedItem> {
    let mut items = Vec::new();
    while items.len() < n {
        let next = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("the feed delivered in time")
            .expect("the feed continues")
            .expect("a feed item");
        items.push(next);
    }
    items
}

async fn subscribe(
    world: &World,
    org: &str,
    request: v1::SubscribeRequest,
) -> Result<tonic::Streaming<v1::FeedItem>, tonic::Status> {
    let mut feeds = world.feeds().await;
    feeds
        .subscribe(as_org(org, request))
        .await
        .map(tonic::Response::into_inner)
}

/// Every item of `org`'s feed stored so far, read from the feed stream (no more will come
/// for positions the gateway has settled).
async fn feed_of(world: &World, org: &str) -> Vec<v1::FeedItem> {
    let client = async_nats::connect(world.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("CW_FEED").await.unwrap();
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("cw.feed.{org}.>"),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.info().await.unwrap().num_pending;
    let mut messages = consumer.messages().await.unwrap();
    let mut items = Vec::new();
    for _ in 0..pending {
        let m = tokio::time::timeout(DEADLINE, messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // One message holds the partner's consecutive items of one evaluation batch.
        let batch = decode_batch(m.headers.as_ref(), m.payload.as_ref()).unwrap();
        items.extend(batch.items);
    }
    items
}

fn types(items: &[v1::FeedItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.identifiers.as_ref().unwrap().event_type.clone())
        .collect()
}

fn numbers(items: &[v1::FeedItem]) -> Vec<u64> {
    items.iter().map(|i| i.number).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_gets_only_events_from_its_relationship_on_numbered_resumable_feeds() {
    let mut w = World::start().await;
    let (person, _) = w.register(101).await;
    let (episode, _) = w.admit(&person).await;
    // Before the referral COMM has no relationship: these are never sent to it.
    w.expected_date(&person, &episode, 3).await;
    let referred = w.refer(&person).await;
    let last = w.expected_date(&person, &episode, 4).await;
    w.settled(last).await;

    // A stock NATS client on COMM's subjects sees the items as they are stored.
    let nats = async_nats::connect(w.nats.url()).await.unwrap();
    let mut live = nats.subscribe("cw.feed.COMM.>").await.unwrap();
    nats.flush().await.unwrap();

    let mut feed = subscribe(&w, COMM, v1::SubscribeRequest::default())
        .await
        .unwrap();
    let first = take(&mut feed, 2).await;
    assert_eq!(numbers(&first), vec![1, 2]);
    assert_eq!(
        types(&first),
        vec!["referral_submitted", "expected_discharge_date_set"],
        "no backfill: nothing from before the referral"
    );
    assert_eq!(first[0].log_position, referred);
    assert_eq!(first[0].disclosure, v1::Disclosure::Full as i32);
    assert!(first[0].event.is_some());
    assert_eq!(
        first[0].identifiers.as_ref().unwrap().nhs_number,
        carewoven_domain::values::NhsNumber::synthetic(101).as_str()
    );
    drop(feed);

    // The stranger has no relationship: its feed is empty. The council sees discharge facts
    // in full and the referral as identifiers only (minimum necessary).
    assert!(feed_of(&w, STRANGER).await.is_empty());

    // More events flow; the live NATS subscriber sees them, numbered on.
    let next = w.expected_date(&person, &episode, 5).await;
    let live_item = tokio::time::timeout(DEADLINE, live.next())
        .await
        .unwrap()
        .unwrap();
    let live_item = decode_batch(live_item.headers.as_ref(), live_item.payload.as_ref())
        .unwrap()
        .items
        .remove(0);
    assert_eq!(live_item.number, 3);
    assert_eq!(live_item.log_position, next);

    // Resume after item 2 by cursor: item 3 next, nothing repeated, nothing skipped.
    let mut resumed = subscribe(
        &w,
        COMM,
        v1::SubscribeRequest {
            cursor: first[1].cursor.clone(),
            after_number: 0,
        },
    )
    .await
    .unwrap();
    let again = take(&mut resumed, 1).await;
    assert_eq!(numbers(&again), vec![3]);
    assert_eq!(again[0].log_position, next);
    // And it stays live.
    let later = w.expected_date(&person, &episode, 6).await;
    let more = take(&mut resumed, 1).await;
    assert_eq!((more[0].number, more[0].log_position), (4, later));

    // Resume by number as well.
    let mut by_number = subscribe(
        &w,
        COMM,
        v1::SubscribeRequest {
            cursor: String::new(),
            after_number: 3,
        },
    )
    .await
    .unwrap();
    assert_eq!(numbers(&take(&mut by_number, 1).await), vec![4]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_necessary_reduces_other_classes_to_identifiers() {
    let mut w = World::start().await;
    let (person, _) = w.register(102).await;
    let (_, admitted) = w.admit(&person).await;
    // The council joins the care team: added by the hospital, which is related.
    w.add_member(&person, HOSP, HOSP).await;
    let joined = w.add_member(&person, HOSP, LA).await;
    let referred = w.refer(&person).await;
    w.settled(referred).await;
    let items = feed_of(&w, LA).await;
    assert_eq!(
        types(&items),
        vec!["care_team_member_added", "referral_submitted"]
    );
    assert!(items[0].log_position == joined && items[0].event.is_some());
    assert_eq!(items[0].disclosure, v1::Disclosure::Full as i32);
    // Referrals are outside the council's agreement: identifiers only, no content.
    assert_eq!(items[1].disclosure, v1::Disclosure::IdentifiersOnly as i32);
    assert!(items[1].event.is_none());
    let ids = items[1].identifiers.as_ref().unwrap();
    assert_eq!(ids.person_id, person);
    assert!(admitted < joined);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_stops_at_the_end_of_a_relationship() {
    let mut w = World::start().await;
    let (person, _) = w.register(103).await;
    let (episode, _) = w.admit(&person).await;
    w.add_member(&person, HOSP, HOSP).await;
    let added = w.add_member(&person, HOSP, GP).await;
    let during = w.expected_date(&person, &episode, 3).await;
    let removed = w.remove_member(&person, HOSP, GP).await;
    let after = w.expected_date(&person, &episode, 4).await;
    w.settled(after).await;
    let items = feed_of(&w, GP).await;
    let positions: Vec<u64> = items.iter().map(|i| i.log_position).collect();
    assert_eq!(
        positions,
        vec![added, during, removed],
        "the removal is the last event sent"
    );
    assert_eq!(numbers(&items), vec![1, 2, 3]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objection_stops_delivery_to_that_partner_from_that_event_on() {
    let mut w = World::start().await;
    let (person, _) = w.register(104).await;
    let (episode, _) = w.admit(&person).await;
    let referred = w.refer(&person).await;
    let before = w.expected_date(&person, &episode, 3).await;
    let objected = w.object(&person, COMM).await;
    let after = w.expected_date(&person, &episode, 4).await;
    w.settled(after).await;
    let comm: Vec<u64> = feed_of(&w, COMM)
        .await
        .iter()
        .map(|i| i.log_position)
        .collect();
    assert_eq!(
        comm,
        vec![referred, before],
        "nothing from the objection on"
    );
    // The hospital, not objected to, still receives everything including the objection.
    let hosp: Vec<u64> = feed_of(&w, HOSP)
        .await
        .iter()
        .map(|i| i.log_position)
        .collect();
    assert!(hosp.contains(&objected) && hosp.contains(&after));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_or_ended_agreement_suspends_delivery() {
    let mut w = World::start().await;
    // A partner whose agreement expires the day after tomorrow.
    let today = carewoven_domain::values::uk_date(chrono::Utc::now());
    register_partner(&mut w.client, "SHORT", &["SHORT-SVC"], &all_data_classes())
        .await
        .unwrap();
    // register_partner recorded a year-long agreement; end it and record a short one.
    w.client
        .end_sharing_agreement(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::EndSharingAgreementRequest {
                context: Some(v1::CommandContext {
                    command_id: Uuid::now_v7().to_string(),
                    organisation: carewoven_testkit::partners::GOVERNANCE_ORG.into(),
                    user: "tester".into(),
                    ..Default::default()
                }),
                code: "SHORT".into(),
                reference: "SHORT-DSA".into(),
                reason: "replaced by a short pilot agreement".into(),
            }),
            &carewoven_testkit::partners::governance_token(),
        ))
        .await
        .unwrap();
    carewoven_testkit::partners::record_agreement(
        &mut w.client,
        "SHORT",
        "SHORT-PILOT",
        &all_data_classes(),
        today - chrono::Days::new(1),
        today + chrono::Days::new(2),
    )
    .await
    .unwrap();
    let (person, _) = w.register(105).await;
    let (episode, _) = w.admit(&person).await;
    w.add_member(&person, HOSP, HOSP).await;
    let joined = w.add_member(&person, HOSP, "SHORT").await;
    let in_force = w.expected_date(&person, &episode, 3).await;
    w.settled(in_force).await;
    // Three days on, the pilot agreement has lapsed: nothing more is sent.
    w.clock_offset.store(3, Ordering::SeqCst);
    let lapsed = w.expected_date(&person, &episode, 4).await;
    w.settled(lapsed).await;
    let items: Vec<u64> = feed_of(&w, "SHORT")
        .await
        .iter()
        .map(|i| i.log_position)
        .collect();
    assert_eq!(items, vec![joined, in_force]);

    // Ending an agreement suspends at once: COMM's only agreement is ended.
    w.clock_offset.store(0, Ordering::SeqCst);
    let referred = w.refer(&person).await;
    w.client
        .end_sharing_agreement(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::EndSharingAgreementRequest {
                context: Some(v1::CommandContext {
                    command_id: Uuid::now_v7().to_string(),
                    organisation: carewoven_testkit::partners::GOVERNANCE_ORG.into(),
                    user: "tester".into(),
                    ..Default::default()
                }),
                code: COMM.into(),
                reference: "COMM-DSA".into(),
                reason: "agreement terminated".into(),
            }),
            &carewoven_testkit::partners::governance_token(),
        ))
        .await
        .unwrap();
    let after_end = w.expected_date(&person, &episode, 5).await;
    w.settled(after_end).await;
    let comm: Vec<u64> = feed_of(&w, COMM)
        .await
        .iter()
        .map(|i| i.log_position)
        .collect();
    assert_eq!(comm, vec![referred]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cursors_and_identities_are_refused() {
    let mut w = World::start().await;
    let (person, _) = w.register(106).await;
    w.admit(&person).await;
    let last = w.refer(&person).await;
    w.settled(last).await;
    let mut comm = subscribe(&w, COMM, v1::SubscribeRequest::default())
        .await
        .unwrap();
    let item = take(&mut comm, 1).await.remove(0);
    drop(comm);

    // Beyond the end.
    let beyond = subscribe(
        &w,
        COMM,
        v1::SubscribeRequest {
            cursor: String::new(),
            after_number: 99,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange, "{beyond:?}");
    // Forged: the number changed, the MAC kept.
    let forged = item.cursor.replacen("v1.1.", "v1.7.", 1);
    let status = subscribe(
        &w,
        COMM,
        v1::SubscribeRequest {
            cursor: forged,
            after_number: 0,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("cursor:"));
    for garbage in ["", "v1", "v1.1.zz", "v2.1.00"] {
        if garbage.is_empty() {
            continue;
        }
        let status = subscribe(
            &w,
            COMM,
            v1::SubscribeRequest {
                cursor: garbage.into(),
                after_number: 0,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}");
    }
    // Another partner's cursor is not valid for the hospital.
    let status = subscribe(
        &w,
        HOSP,
        v1::SubscribeRequest {
            cursor: item.cursor.clone(),
            after_number: 0,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // No token; an unknown key; an unregistered organisation.
    let mut feeds = w.feeds().await;
    let status = feeds
        .subscribe(v1::SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let (stranger_issuer, _) = carewoven_access::Issuer::generate("rogue", "rogue-issuer").unwrap();
    let rogue = stranger_issuer
        .token(COMM, None, &[], Duration::from_secs(60))
        .unwrap();
    let status = feeds
        .subscribe(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::SubscribeRequest::default()),
            &rogue,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = subscribe(&w, "NOBODY", v1::SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_back_nobody() {
    let mut w = World::start().await;
    let (person, _) = w.register(107).await;
    let (episode, _) = w.admit(&person).await;
    w.refer(&person).await;
    // COMM subscribes and never reads.
    let stalled = subscribe(&w, COMM, v1::SubscribeRequest::default())
        .await
        .unwrap();
    let mut hosp = subscribe(&w, HOSP, v1::SubscribeRequest::default())
        .await
        .unwrap();
    let mut last = 0;
    for d in 0..300u64 {
        last = w.expected_date(&person, &episode, 3 + d % 20).await;
    }
    w.settled(last).await;
    // The hospital's own reader gets every item, far more than any buffer.
    let items = take(&mut hosp, 302).await;
    assert_eq!(items.last().unwrap().log_position, last);
    assert_eq!(
        numbers(&items),
        (1..=302).collect::<Vec<u64>>(),
        "no gap, no repeat"
    );
    drop(stalled);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_neither_repeats_nor_skips() {
    let mut w = World::start().await;
    let (person, _) = w.register(108).await;
    let (episode, _) = w.admit(&person).await;
    w.refer(&person).await;
    let mut last = 0;
    for d in 0..20u64 {
        last = w.expected_date(&person, &episode, 3 + d).await;
    }
    w.settled(last).await;
    let _ = w.gateway.take().unwrap().stop().await;
    // Events while the gateway is down, then it starts again from the log.
    for d in 0..20u64 {
        last = w.expected_date(&person, &episode, 30 + d).await;
    }
    let (gateway, progress) = start_gateway(&w.nats, w.clock_offset.clone()).await;
    w.gateway = Some(gateway);
    w.progress = progress;
    w.settled(last).await;
    let items = feed_of(&w, COMM).await;
    assert_eq!(numbers(&items), (1..=41).collect::<Vec<u64>>());
    let mut positions: Vec<u64> = items.iter().map(|i| i.log_position).collect();
    positions.dedup();
    assert_eq!(positions.len(), 41, "each event once");
    // The backlog was evaluated in batches: fewer messages than items.
    let messages = feed_messages(&w, COMM).await;
    assert!(messages < 41, "{messages} messages for 41 items");

    // Resuming after any number, inside a message or at its end, gives exactly what follows.
    for after in [1, 21, 30, 40] {
        let mut resumed = subscribe(
            &w,
            COMM,
            v1::SubscribeRequest {
                after_number: after,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let next = take(&mut resumed, (41 - after) as usize).await;
        assert_eq!(
            numbers(&next),
            (after + 1..=41).collect::<Vec<u64>>(),
            "after {after}"
        );
        assert_eq!(
            next.iter().map(|i| i.log_position).collect::<Vec<_>>(),
            positions[after as usize..].to_vec()
        );
    }
    w.stop().await;
}

/// How many messages `org`'s feed is stored in.
async fn feed_messages(world: &World, org: &str) -> u64 {
    let client = async_nats::connect(world.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("CW_FEED").await.unwrap();
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("cw.feed.{org}.>"),
            ..Default::default()
        })
        .await
        .unwrap();
    consumer.info().await.unwrap().num_pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_accessed_a_record_is_answered_from_the_audit() {
    let mut w = World::start().await;
    let (person, _) = w.register(109).await;
    w.admit(&person).await;
    let last = w.refer(&person).await;
    w.settled(last).await;
    let mut audit = AuditServiceClient::new(w.gateway().channel());
    let page = audit
        .list_record_access(as_org(
            COMM,
            v1::ListRecordAccessRequest {
                person_id: person.clone(),
                after: 0,
                limit: 0,
                after_delivery: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let deliveries: Vec<(String, u64)> = page
        .entries
        .iter()
        .filter_map(|e| e.event.as_ref())
        .filter(|e| e.action == v1::AuditAction::FeedDelivery as i32)
        .map(|e| (e.organisation.clone(), e.log_position))
        .collect();
    assert!(
        deliveries.contains(&(COMM.to_owned(), last)),
        "{deliveries:?}"
    );
    assert!(deliveries.iter().all(|(org, _)| org == HOSP || org == COMM));

    // An organisation with no relationship may not ask; its attempt is itself audited.
    let status = audit
        .list_record_access(as_org(
            STRANGER,
            v1::ListRecordAccessRequest {
                person_id: person.clone(),
                after: 0,
                limit: 0,
                after_delivery: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let page = audit
        .list_record_access(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::ListRecordAccessRequest {
                person_id: person.clone(),
                after: 0,
                limit: 1000,
                after_delivery: 0,
            }),
            &carewoven_testkit::partners::governance_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    let refused = page
        .entries
        .iter()
        .filter_map(|e| e.event.as_ref())
        .any(|e| e.organisation == STRANGER && e.outcome == v1::AuditOutcome::Refused as i32);
    let asked = page
        .entries
        .iter()
        .filter_map(|e| e.event.as_ref())
        .any(|e| e.organisation == COMM && e.action == v1::AuditAction::AuditRead as i32);
    assert!(refused && asked);
    w.stop().await;
}

/// `message` carrying the governance role's token.
fn governance<T>(message: T) -> tonic::Request<T> {
    carewoven_access::grpc::with_token(
        tonic::Request::new(message),
        &carewoven_testkit::partners::governance_token(),
    )
}
