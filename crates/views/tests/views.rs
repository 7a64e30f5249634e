//! The views end to end: real nats-server, the real command service and views service over
//! gRPC on loopback, a real redb file.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use carewoven_proto::v1::{
    self, command_service_client::CommandServiceClient, progress_discharge_request as pd,
    progress_discharge_request::Step, query_service_client::QueryServiceClient,
    views_admin_client::ViewsAdminClient,
};
use carewoven_testkit::NatsServer;
use chrono::{Days, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    channel: Channel,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        assert!(Instant::now() < deadline, "service did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn commands(nats: &NatsServer) -> (Running, CommandServiceClient<Channel>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(carewoven_commands::run(
        listener,
        carewoven_commands::Config::for_nats(nats.url()),
        stop.clone().cancelled_owned(),
    ));
    let channel = channel(addr).await;
    let client = CommandServiceClient::new(channel.clone());
    (
        Running {
            stop,
            task,
            channel,
        },
        client,
    )
}

async fn views(nats: &NatsServer, file: PathBuf) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(carewoven_views::run(
        listener,
        carewoven_views::Config::new(nats.url(), file),
        stop.clone().cancelled_owned(),
    ));
    let channel = channel(addr).await;
    Running {
        stop,
        task,
        channel,
    }
}

fn ctx(org: &str) -> Option<v1::CommandContext> {
    Some(v1::CommandContext {
        command_id: Uuid::now_v7().to_string(),
        organisation: org.into(),
        user: "tester".into(),
        ..Default::default()
    })
}

fn nhs(n: u32) -> String {
    carewoven_domain::values::NhsNumber::synthetic(n)
        .as_str()
        .to_owned()
}

fn day(offset: i64) -> String {
    let today = Utc::now().date_naive();
    if offset >= 0 {
        (today + Days::new(offset as u64)).to_string()
    } else {
        (today - Days::new((-offset) as u64)).to_string()
    }
}

fn hours_ago(h: i64) -> Option<prost_types::Timestamp> {
    let t = Utc::now() - chrono::Duration::hours(h);
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

async fn register(c: &mut CommandServiceClient<Channel>, n: u32) -> v1::CommandReply {
    c.register_person(v1::RegisterPersonRequest {
        context: ctx("HOSP-A"),
        profile: Some(v1::Profile {
            nhs_number: nhs(n),
            given_name: "Ada".into(),
            family_name: "Example".into(),
            date_of_birth: "1941-03-02".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn step(
    c: &mut CommandServiceClient<Channel>,
    person: &str,
    episode: &str,
    step: Step,
) -> v1::CommandReply {
    c.progress_discharge(v1::ProgressDischargeRequest {
        context: ctx("HOSP-A"),
        person_id: person.into(),
        episode_id: episode.into(),
        step: Some(step),
    })
    .await
    .unwrap()
    .into_inner()
}

/// Admit at `site` and take the episode to discharge ready; returns (episode, last reply).
async fn ready(
    c: &mut CommandServiceClient<Channel>,
    person: &str,
    site: &str,
) -> (String, v1::CommandReply) {
    let admitted = c
        .admit_person(v1::AdmitPersonRequest {
            context: ctx(site),
            person_id: person.into(),
            site: site.into(),
            ward: "Ward 7".into(),
            admitted_at: hours_ago(24 * 6),
        })
        .await
        .unwrap()
        .into_inner();
    let episode = admitted.aggregate_id;
    step(
        c,
        person,
        &episode,
        Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate { expected: day(1) }),
    )
    .await;
    let reply = step(
        c,
        person,
        &episode,
        Step::MarkDischargeReady(pd::MarkDischargeReady {
            discharge_ready_date: day(-3),
        }),
    )
    .await;
    (episode, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_their_writes_and_refuse_bad_input() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, mut c) = commands(&nats).await;
    let v = views(&nats, dir.path().join("views.redb")).await;
    let mut q = QueryServiceClient::new(v.channel.clone());

    let person = register(&mut c, 1).await.person_id;
    let referral = c
        .make_referral(v1::MakeReferralRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            referral: Some(v1::Referral {
                from_organisation: "HOSP-A".into(),
                to_service: "ASC-D2A".into(),
                priority: v1::Priority::Urgent as i32,
                reason: "Support at home".into(),
                replaces: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    // Read-your-writes: the very next query sees the referral.
    let record = q
        .get_care_record(v1::GetCareRecordRequest {
            person_id: person.clone(),
            min_log_position: referral.log_position,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(record.log_position >= referral.log_position);
    assert_eq!(record.referrals.len(), 1);
    assert_eq!(record.referrals[0].status, "submitted");
    assert_eq!(record.profile.unwrap().family_name, "Example");

    let inbox = q
        .list_referral_inbox(v1::ListReferralInboxRequest {
            service: "ASC-D2A".into(),
            page_size: 0,
            page_token: String::new(),
            min_log_position: referral.log_position,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.entries.len(), 1);
    assert_eq!(inbox.entries[0].referral_id, referral.aggregate_id);

    let member = c
        .add_care_team_member(v1::AddCareTeamMemberRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            member: Some(v1::MemberRef {
                organisation: "ASC".into(),
                practitioner: "SW1".into(),
            }),
            role: v1::CareTeamRole::SocialWorker as i32,
            since: day(0),
        })
        .await
        .unwrap()
        .into_inner();
    let named = c
        .name_care_coordinator(v1::NameCareCoordinatorRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            member: Some(v1::MemberRef {
                organisation: "ASC".into(),
                practitioner: "SW1".into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(named.log_position > member.log_position);
    let caseload = q
        .get_caseload(v1::GetCaseloadRequest {
            owner: Some(v1::get_caseload_request::Owner::Coordinator(
                v1::MemberRef {
                    organisation: "ASC".into(),
                    practitioner: "SW1".into(),
                },
            )),
            min_log_position: named.log_position,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caseload.person_ids, vec![person.clone()]);
    let by_org = q
        .get_caseload(v1::GetCaseloadRequest {
            owner: Some(v1::get_caseload_request::Owner::Organisation("ASC".into())),
            min_log_position: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_org.person_ids, vec![person.clone()]);

    // A position the log has not reached: the query waits for its deadline, then says so.
    let mut late = tonic::Request::new(v1::GetCareRecordRequest {
        person_id: person.clone(),
        min_log_position: named.log_position + 1000,
    });
    late.set_timeout(Duration::from_millis(300));
    let status = q.get_care_record(late).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // Bad input.
    let unknown = q
        .get_care_record(v1::GetCareRecordRequest {
            person_id: Uuid::now_v7().to_string(),
            min_log_position: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad = q
        .get_care_record(v1::GetCareRecordRequest {
            person_id: "nope".into(),
            min_log_position: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    for (request, field) in [
        (
            v1::ListDischargeBoardRequest {
                status: "sleeping".into(),
                ..Default::default()
            },
            "status",
        ),
        (
            v1::ListDischargeBoardRequest {
                pathway: 42,
                ..Default::default()
            },
            "pathway",
        ),
        (
            v1::ListDischargeBoardRequest {
                page_size: 100_000,
                ..Default::default()
            },
            "page_size",
        ),
        (
            v1::ListDischargeBoardRequest {
                page_token: "forged.token.value".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let status = q.list_discharge_board(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    v.stop().await;
    cmd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_pages_and_its_watch_shows_the_board_then_each_change_in_order() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, mut c) = commands(&nats).await;
    let v = views(&nats, dir.path().join("views.redb")).await;
    let mut q = QueryServiceClient::new(v.channel.clone());

    let mut episodes = Vec::new();
    let mut last = 0;
    for n in 0..3 {
        let person = register(&mut c, 10 + n).await.person_id;
        let site = if n < 2 { "HOSP-A" } else { "HOSP-B" };
        let (episode, reply) = ready(&mut c, &person, site).await;
        last = reply.log_position;
        episodes.push((person, episode));
    }
    // Paging: one at a time, with a token bound to the filters.
    let first = q
        .list_discharge_board(v1::ListDischargeBoardRequest {
            site: "HOSP-A".into(),
            page_size: 1,
            min_log_position: last,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1);
    assert!(first.entries[0].days_delayed >= 3, "{:?}", first.entries[0]);
    assert!(!first.next_page_token.is_empty());
    let second = q
        .list_discharge_board(v1::ListDischargeBoardRequest {
            site: "HOSP-A".into(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entries.len(), 1);
    assert_ne!(second.entries[0].episode_id, first.entries[0].episode_id);
    assert!(second.next_page_token.is_empty(), "two entries at HOSP-A");
    // The same token with other filters is refused.
    let other = q
        .list_discharge_board(v1::ListDischargeBoardRequest {
            site: "HOSP-B".into(),
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);

    // Watch HOSP-A: the board, then the changes, in log order.
    let mut watch = q
        .watch_discharge_board(v1::WatchDischargeBoardRequest {
            site: "HOSP-A".into(),
            pathway: 0,
            min_log_position: last,
        })
        .await
        .unwrap()
        .into_inner();
    let mut initial = Vec::new();
    loop {
        let update = watch.message().await.unwrap().unwrap();
        match update.change.unwrap() {
            v1::board_update::Change::Upsert(e) => initial.push(e.episode_id),
            v1::board_update::Change::SnapshotComplete(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    initial.sort();
    let mut expected: Vec<String> = episodes[..2].iter().map(|(_, e)| e.clone()).collect();
    expected.sort();
    assert_eq!(initial, expected);

    let (person, episode) = episodes[0].clone();
    let steps = [
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway0 as i32,
        }),
        Step::Discharge(pd::Discharge {
            discharged_at: hours_ago(1),
            destination: "Home".into(),
        }),
        Step::AcceptHandover(pd::AcceptHandover {
            organisation: "GP-1".into(),
        }),
    ];
    let mut positions = Vec::new();
    for s in steps {
        positions.push(step(&mut c, &person, &episode, s).await.log_position);
    }
    // A change elsewhere (HOSP-B) is not shown to this watcher.
    let (p3, e3) = episodes[2].clone();
    step(
        &mut c,
        &p3,
        &e3,
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway1 as i32,
        }),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let update = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("a change arrives")
            .unwrap()
            .unwrap();
        seen.push(update);
    }
    let kinds: Vec<String> = seen
        .iter()
        .map(|u| match u.change.as_ref().unwrap() {
            v1::board_update::Change::Upsert(e) => format!("upsert {} {}", e.episode_id, e.status),
            v1::board_update::Change::RemovedEpisodeId(id) => format!("removed {id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            format!("upsert {episode} pathway_assigned"),
            format!("upsert {episode} discharged"),
            format!("removed {episode}"),
        ]
    );
    let seen_positions: Vec<u64> = seen.iter().map(|u| u.log_position).collect();
    assert_eq!(seen_positions, positions);
    v.stop().await;
    cmd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_derived_rebuild_swaps_while_serving_and_a_deleted_file_comes_back_the_same() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("views.redb");
    let (cmd, mut c) = commands(&nats).await;
    let mut persons = Vec::new();
    let mut last = 0;
    for n in 0..8 {
        let person = register(&mut c, 30 + n).await.person_id;
        let (_, reply) = ready(&mut c, &person, "HOSP-A").await;
        last = reply.log_position;
        persons.push(person);
    }
    let v = views(&nats, file.clone()).await;
    let mut q = QueryServiceClient::new(v.channel.clone());
    let before = q
        .get_care_record(v1::GetCareRecordRequest {
            person_id: persons[0].clone(),
            min_log_position: last,
        })
        .await
        .unwrap()
        .into_inner();

    // Queries keep being answered while a rebuild runs and swaps the file in.
    let querying = {
        let mut q = q.clone();
        let persons = persons.clone();
        tokio::spawn(async move {
            let mut answered = 0u32;
            for round in 0..200 {
                let r = q
                    .get_care_record(v1::GetCareRecordRequest {
                        person_id: persons[round % persons.len()].clone(),
                        min_log_position: 0,
                    })
                    .await;
                assert!(r.is_ok(), "a query failed during the rebuild: {r:?}");
                answered += 1;
            }
            answered
        })
    };
    let mut admin = ViewsAdminClient::new(v.channel.clone());
    let mut progress = admin
        .rebuild(v1::RebuildRequest { fresh: true })
        .await
        .unwrap()
        .into_inner();
    let mut swapped = None;
    while let Some(p) = progress.message().await.unwrap() {
        if p.swapped {
            swapped = Some(p);
        }
    }
    let swapped = swapped.expect("the rebuild swapped the new file in");
    assert!(swapped.applied_position >= last);
    assert_eq!(querying.await.unwrap(), 200);
    let after = q
        .get_care_record(v1::GetCareRecordRequest {
            person_id: persons[0].clone(),
            min_log_position: last,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v1::CareRecord {
            log_position: 0,
            ..after.clone()
        },
        v1::CareRecord {
            log_position: 0,
            ..before.clone()
        }
    );
    // Views keep following the log after the swap.
    let more = register(&mut c, 99).await;
    q.get_care_record(v1::GetCareRecordRequest {
        person_id: more.person_id.clone(),
        min_log_position: more.log_position,
    })
    .await
    .unwrap();
    v.stop().await;
    let digest = {
        let db = carewoven_views::store::open(&file).unwrap();
        carewoven_views::store::digest(&db).unwrap()
    };

    // Delete the file: the restarted service rebuilds the same views from the log.
    std::fs::remove_file(&file).unwrap();
    let v = views(&nats, file.clone()).await;
    let mut q = QueryServiceClient::new(v.channel.clone());
    let again = q
        .get_care_record(v1::GetCareRecordRequest {
            person_id: persons[0].clone(),
            min_log_position: more.log_position,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v1::CareRecord {
            log_position: 0,
            ..again
        },
        v1::CareRecord {
            log_position: 0,
            ..before
        }
    );
    v.stop().await;
    let db = carewoven_views::store::open(&file).unwrap();
    assert_eq!(carewoven_views::store::digest(&db).unwrap(), digest);
    cmd.stop().await;
}

async fn views_with(nats: &NatsServer, file: PathBuf, skip: bool) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let mut config = carewoven_views::Config::new(nats.url(), file);
    config.skip_undecodable = skip;
    let task = tokio::spawn(carewoven_views::run(
        listener,
        config,
        stop.clone().cancelled_owned(),
    ));
    let channel = channel(addr).await;
    Running {
        stop,
        task,
        channel,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_stops_the_projector_at_its_sequence_unless_told_to_skip() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, mut c) = commands(&nats).await;
    let first = register(&mut c, 50).await;
    // Something this build cannot decode (as if from a newer schema), then a good event.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let person = Uuid::now_v7();
    let bad = js
        .publish(
            format!("cw.evt.{person}.person.{person}.person_registered"),
            bytes::Bytes::from_static(b"\xff\xff not protobuf"),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let second = register(&mut c, 51).await;
    assert!(bad > first.log_position && second.log_position > bad);

    let v = views_with(&nats, dir.path().join("stop.redb"), false).await;
    let mut q = QueryServiceClient::new(v.channel.clone());
    q.get_care_record(v1::GetCareRecordRequest {
        person_id: first.person_id.clone(),
        min_log_position: first.log_position,
    })
    .await
    .unwrap();
    let mut late = tonic::Request::new(v1::GetCareRecordRequest {
        person_id: second.person_id.clone(),
        min_log_position: second.log_position,
    });
    late.set_timeout(Duration::from_secs(2));
    let status = q.get_care_record(late).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains(&format!("sequence {bad}")),
        "names the sequence: {status:?}"
    );
    let mut admin = ViewsAdminClient::new(v.channel.clone());
    let s = admin
        .status(v1::ViewsStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.log_position, first.log_position, "stopped before it");
    v.stop().await;

    let v = views_with(&nats, dir.path().join("skip.redb"), true).await;
    let mut q = QueryServiceClient::new(v.channel.clone());
    q.get_care_record(v1::GetCareRecordRequest {
        person_id: second.person_id.clone(),
        min_log_position: second.log_position,
    })
    .await
    .unwrap();
    let mut admin = ViewsAdminClient::new(v.channel.clone());
    let s = admin
        .status(v1::ViewsStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.skipped_events, 1);
    v.stop().await;
    cmd.stop().await;
}
