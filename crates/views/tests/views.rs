//! The views end to end: real nats-server, the real command service and views service over
//! gRPC on loopback, a real redb file. Every call carries a bearer token from the fixed test
//! issuer; partner organisations are registered through the command API.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use carewoven_proto::v1::{
    self, command_service_client::CommandServiceClient, progress_discharge_request as pd,
    progress_discharge_request::Step, query_service_client::QueryServiceClient,
    views_admin_client::ViewsAdminClient,
};
use carewoven_testkit::{
    NatsServer, Running, all_data_classes, as_org, ctx, date_days_ago, date_days_ahead,
    governance_token, register_partner, signed, start_commands, start_views, test_nhs_number,
    ts_hours_ago,
};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

async fn commands(nats: &NatsServer) -> (Running, CommandServiceClient<Channel>) {
    let service = start_commands(carewoven_commands::Config::for_nats(nats.url()))
        .await
        .unwrap();
    let mut client = service.client();
    // The partners these tests act for: hospitals owning their sites, adult social care
    // owning its discharge-to-assess service, a GP, community nursing, a home-care provider,
    // and an organisation with an agreement but no relationship with anyone.
    for (org, services) in [
        ("HOSP-A", &["HOSP-A"][..]),
        ("HOSP-B", &["HOSP-B"]),
        ("ASC", &["ASC-D2A"]),
        ("GP-1", &[]),
        ("CNURSE-1", &[]),
        ("HOMECARE", &["HOMECARE-1"]),
        ("OTHER", &["OTHER-SVC"]),
    ] {
        register_partner(&mut client, org, services, &all_data_classes())
            .await
            .unwrap();
    }
    (service, client)
}

async fn views(nats: &NatsServer, file: PathBuf) -> Running {
    views_with(nats, file, false).await
}

/// A governance (administrator) request.
fn admin<T>(message: T) -> tonic::Request<T> {
    carewoven_access::grpc::with_token(tonic::Request::new(message), &governance_token())
}

async fn register(c: &mut CommandServiceClient<Channel>, n: u32) -> v1::CommandReply {
    c.register_person(signed(v1::RegisterPersonRequest {
        context: ctx("HOSP-A"),
        profile: Some(v1::Profile {
            nhs_number: test_nhs_number(n),
            given_name: "Ada".into(),
            family_name: "Example".into(),
            date_of_birth: "1941-03-02".into(),
            ..Default::default()
        }),
    }))
    .await
    .unwrap()
    .into_inner()
}

/// One discharge step, by `org` (the organisation managing the episode, or the one
/// accepting handover).
async fn step(
    c: &mut CommandServiceClient<Channel>,
    org: &str,
    person: &str,
    episode: &str,
    step: Step,
) -> v1::CommandReply {
    c.progress_discharge(signed(v1::ProgressDischargeRequest {
        context: ctx(org),
        person_id: person.into(),
        episode_id: episode.into(),
        step: Some(step),
    }))
    .await
    .unwrap()
    .into_inner()
}

/// Admit at `site` (by the organisation of the same code, which owns it) and take the
/// episode to discharge ready; returns (episode, last reply).
async fn ready(
    c: &mut CommandServiceClient<Channel>,
    person: &str,
    site: &str,
) -> (String, v1::CommandReply) {
    let admitted = c
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx(site),
            person_id: person.into(),
            site: site.into(),
            ward: "Ward 7".into(),
            admitted_at: ts_hours_ago(24 * 6),
        }))
        .await
        .unwrap()
        .into_inner();
    let episode = admitted.aggregate_id;
    step(
        c,
        site,
        person,
        &episode,
        Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
            expected: date_days_ahead(1),
        }),
    )
    .await;
    let reply = step(
        c,
        site,
        person,
        &episode,
        Step::MarkDischargeReady(pd::MarkDischargeReady {
            discharge_ready_date: date_days_ago(3),
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
    let mut q = QueryServiceClient::new(v.channel());

    let person = register(&mut c, 1).await.person_id;
    let referral = c
        .make_referral(signed(v1::MakeReferralRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            referral: Some(v1::Referral {
                from_organisation: "HOSP-A".into(),
                to_service: "ASC-D2A".into(),
                priority: v1::Priority::Urgent as i32,
                reason: "Support at home".into(),
                replaces: String::new(),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    // Read-your-writes: the very next query sees the referral (and the relationship it made
    // for the receiving service's organisation is known to the access decision).
    let record = q
        .get_care_record(as_org(
            "ASC",
            v1::GetCareRecordRequest {
                person_id: person.clone(),
                min_log_position: referral.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(record.log_position >= referral.log_position);
    assert_eq!(record.referrals.len(), 1);
    assert_eq!(record.referrals[0].status, "submitted");
    assert_eq!(record.profile.unwrap().family_name, "Example");

    // The receiving service's organisation reads its inbox.
    let inbox = q
        .list_referral_inbox(as_org(
            "ASC",
            v1::ListReferralInboxRequest {
                service: "ASC-D2A".into(),
                page_size: 0,
                page_token: String::new(),
                min_log_position: referral.log_position,
                status: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inbox.entries.len(), 1);
    assert_eq!(inbox.entries[0].referral_id, referral.aggregate_id);

    let member = c
        .add_care_team_member(signed(v1::AddCareTeamMemberRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            member: Some(v1::MemberRef {
                organisation: "ASC".into(),
                practitioner: "SW1".into(),
            }),
            role: v1::CareTeamRole::SocialWorker as i32,
            since: date_days_ago(0),
        }))
        .await
        .unwrap()
        .into_inner();
    let named = c
        .name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
            context: ctx("ASC"),
            person_id: person.clone(),
            member: Some(v1::MemberRef {
                organisation: "ASC".into(),
                practitioner: "SW1".into(),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(named.log_position > member.log_position);
    let caseload = q
        .get_caseload(as_org(
            "ASC",
            v1::GetCaseloadRequest {
                owner: Some(v1::get_caseload_request::Owner::Coordinator(
                    v1::MemberRef {
                        organisation: "ASC".into(),
                        practitioner: "SW1".into(),
                    },
                )),
                min_log_position: named.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caseload.person_ids, vec![person.clone()]);
    let by_org = q
        .get_caseload(as_org(
            "ASC",
            v1::GetCaseloadRequest {
                owner: Some(v1::get_caseload_request::Owner::Organisation("ASC".into())),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_org.person_ids, vec![person.clone()]);

    // A position the log has not reached: the query waits for its deadline, then says so.
    let mut late = as_org(
        "HOSP-A",
        v1::GetCareRecordRequest {
            person_id: person.clone(),
            min_log_position: named.log_position + 1000,
        },
    );
    late.set_timeout(Duration::from_millis(300));
    let status = q.get_care_record(late).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // Bad input. A person nobody registered is refused like any person the caller has no
    // relationship with: the answer never says whether someone exists.
    let unknown = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: Uuid::now_v7().to_string(),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::PermissionDenied, "{unknown:?}");
    let bad = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: "nope".into(),
                min_log_position: 0,
            },
        ))
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
        let status = q
            .list_discharge_board(as_org("HOSP-A", request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    v.stop().await.unwrap();
    cmd.stop().await.unwrap();
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_pages_and_its_watch_shows_the_board_then_each_change_in_order() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, mut c) = commands(&nats).await;
    let v = views(&nats, dir.path().join("views.redb")).await;
    let mut q = QueryServiceClient::new(v.channel());

    let mut episodes = Vec::new();
    for n in 0..3 {
        let person = register(&mut c, 10 + n).await.person_id;
        let site = if n < 2 { "HOSP-A" } else { "HOSP-B" };
        let (episode, _) = ready(&mut c, &person, site).await;
        episodes.push((person, episode));
    }
    // The first person's GP joins the care team (added by the hospital managing the
    // episode, which joins first), so it may later accept the handover.
    join(&mut c, &episodes[0].0, "HOSP-A").await;
    let last = c
        .add_care_team_member(signed(v1::AddCareTeamMemberRequest {
            context: ctx("HOSP-A"),
            person_id: episodes[0].0.clone(),
            member: Some(v1::MemberRef {
                organisation: "GP-1".into(),
                practitioner: String::new(),
            }),
            role: v1::CareTeamRole::GeneralPractice as i32,
            since: date_days_ago(0),
        }))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    // Paging: one at a time, with a token bound to the filters.
    let first = q
        .list_discharge_board(as_org(
            "HOSP-A",
            v1::ListDischargeBoardRequest {
                site: "HOSP-A".into(),
                page_size: 1,
                min_log_position: last,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1);
    assert!(first.entries[0].days_delayed >= 3, "{:?}", first.entries[0]);
    assert!(!first.next_page_token.is_empty());
    let second = q
        .list_discharge_board(as_org(
            "HOSP-A",
            v1::ListDischargeBoardRequest {
                site: "HOSP-A".into(),
                page_size: 1,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entries.len(), 1);
    assert_ne!(second.entries[0].episode_id, first.entries[0].episode_id);
    assert!(second.next_page_token.is_empty(), "two entries at HOSP-A");
    // The same token with other filters, or from another organisation, is refused.
    let other = q
        .list_discharge_board(as_org(
            "HOSP-A",
            v1::ListDischargeBoardRequest {
                site: "HOSP-B".into(),
                page_size: 1,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);
    let other = q
        .list_discharge_board(as_org(
            "HOSP-B",
            v1::ListDischargeBoardRequest {
                site: "HOSP-A".into(),
                page_size: 1,
                page_token: first.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);

    // Watch HOSP-A: the board, then the changes, in log order.
    let mut watch = q
        .watch_discharge_board(as_org(
            "HOSP-A",
            v1::WatchDischargeBoardRequest {
                site: "HOSP-A".into(),
                pathway: 0,
                min_log_position: last,
                ..Default::default()
            },
        ))
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
        (
            "HOSP-A",
            Step::AssignPathway(pd::AssignPathway {
                pathway: v1::Pathway::Pathway0 as i32,
            }),
        ),
        (
            "HOSP-A",
            Step::Discharge(pd::Discharge {
                discharged_at: ts_hours_ago(1),
                destination: "Home".into(),
                destination_code: "19".into(),
            }),
        ),
        (
            "GP-1",
            Step::AcceptHandover(pd::AcceptHandover {
                organisation: "GP-1".into(),
            }),
        ),
        // Pathway 0 needs no home assessment: the episode may close at once.
        ("HOSP-A", Step::Close(pd::CloseEpisode {})),
    ];
    let mut positions = Vec::new();
    for (org, s) in steps {
        positions.push(step(&mut c, org, &person, &episode, s).await.log_position);
    }
    // A change elsewhere (HOSP-B) is not shown to this watcher.
    let (p3, e3) = episodes[2].clone();
    step(
        &mut c,
        "HOSP-B",
        &p3,
        &e3,
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway1 as i32,
        }),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
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
            format!("upsert {episode} handover_accepted"),
            format!("removed {episode}"),
        ]
    );
    let seen_positions: Vec<u64> = seen.iter().map(|u| u.log_position).collect();
    assert_eq!(seen_positions, positions);
    v.stop().await.unwrap();
    cmd.stop().await.unwrap();
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
    let mut q = QueryServiceClient::new(v.channel());
    let before = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: persons[0].clone(),
                min_log_position: last,
            },
        ))
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
                    .get_care_record(as_org(
                        "HOSP-A",
                        v1::GetCareRecordRequest {
                            person_id: persons[round % persons.len()].clone(),
                            min_log_position: 0,
                        },
                    ))
                    .await;
                assert!(r.is_ok(), "a query failed during the rebuild: {r:?}");
                answered += 1;
            }
            answered
        })
    };
    let mut views_admin = ViewsAdminClient::new(v.channel());
    let mut progress = views_admin
        .rebuild(admin(v1::RebuildRequest { fresh: true }))
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
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: persons[0].clone(),
                min_log_position: last,
            },
        ))
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
    let more = register(&mut c, 99).await.person_id;
    let (_, more_ready) = ready(&mut c, &more, "HOSP-A").await;
    let more_record = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: more.clone(),
                min_log_position: more_ready.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(more_record.discharge_episodes.len(), 1);
    v.stop().await.unwrap();
    let digest = {
        let db = carewoven_views::store::open(&file).unwrap();
        carewoven_views::store::digest(&db).unwrap()
    };

    // Delete the file: the restarted service rebuilds the same views from the log.
    std::fs::remove_file(&file).unwrap();
    let v = views(&nats, file.clone()).await;
    let mut q = QueryServiceClient::new(v.channel());
    let again = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: persons[0].clone(),
                min_log_position: more_ready.log_position,
            },
        ))
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
    v.stop().await.unwrap();
    let db = carewoven_views::store::open(&file).unwrap();
    assert_eq!(carewoven_views::store::digest(&db).unwrap(), digest);
    cmd.stop().await.unwrap();
}

async fn views_with(nats: &NatsServer, file: PathBuf, skip: bool) -> Running {
    let mut config = carewoven_views::Config::new(nats.url(), file);
    config.skip_undecodable = skip;
    start_views(config).await.unwrap()
}

/// Poll the views' Status (as governance) until `ok` holds, with a deadline.
async fn wait_status(
    channel: &Channel,
    what: &str,
    ok: impl Fn(&v1::ViewsStatus) -> bool,
) -> v1::ViewsStatus {
    let mut client = ViewsAdminClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = client
            .status(admin(v1::ViewsStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Append, straight to the log, a registration of a new person (the `n`-th synthetic NHS
/// number) shaped like the one at `template`; returns (person, sequence).
async fn append_registration(
    js: &async_nats::jetstream::Context,
    template: u64,
    n: u32,
) -> (Uuid, u64) {
    let stream = js.get_stream("CAREWOVEN").await.unwrap();
    let stored = stream.get_raw_message(template).await.unwrap();
    let mut recorded = carewoven_eventlog::decode(template, &stored.payload).unwrap();
    let person = Uuid::now_v7();
    let meta = &mut recorded.meta;
    meta.person_id = person;
    meta.aggregate_id = person;
    meta.event_id = Uuid::now_v7();
    meta.command_id = Uuid::now_v7();
    meta.correlation_id = meta.command_id;
    meta.causation_id = meta.command_id;
    let carewoven_domain::Event::Person(carewoven_domain::person::PersonEvent::Registered {
        profile,
    }) = &mut recorded.event
    else {
        panic!("the template is not a registration");
    };
    profile.nhs_number = carewoven_domain::values::NhsNumber::synthetic(n);
    let payload = carewoven_proto::convert::encode_event(&recorded.meta, &recorded.event);
    let subject = carewoven_eventlog::subjects::event(
        person,
        carewoven_domain::AggregateKind::Person,
        person,
        recorded.event.name(),
    );
    let sequence = js
        .publish(subject, payload.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    (person, sequence)
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
    // The good event is appended as the command service would have written it.
    let (second, second_position) = append_registration(&js, first.log_position, 51).await;
    assert!(bad > first.log_position && second_position > bad);

    let v = views_with(&nats, dir.path().join("stop.redb"), false).await;
    let mut q = QueryServiceClient::new(v.channel());
    let mut late = as_org(
        "HOSP-A",
        v1::GetCareRecordRequest {
            person_id: second.to_string(),
            min_log_position: second_position,
        },
    );
    late.set_timeout(Duration::from_secs(2));
    let status = q.get_care_record(late).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains(&format!("sequence {bad}")),
        "names the sequence: {status:?}"
    );
    let s = wait_status(&v.channel(), "the views to reach the first event", |s| {
        s.log_position >= first.log_position
    })
    .await;
    assert_eq!(s.log_position, first.log_position, "stopped before it");
    // Access decisions do not stop: the undecodable event closes only its own person's
    // record, so another read is decided as ever (HOSP-A has no relationship with this
    // person: refused for that, not UNAVAILABLE).
    let decided = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: first.person_id.clone(),
                min_log_position: first.log_position,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(decided.code(), Code::PermissionDenied, "{decided:?}");
    v.stop().await.unwrap();

    let v = views_with(&nats, dir.path().join("skip.redb"), true).await;
    let s = wait_status(&v.channel(), "the views to skip to the good event", |s| {
        s.log_position >= second_position
    })
    .await;
    assert_eq!(s.skipped_events, 1);
    // The projector skipped it; access decisions about anyone else go on (the event's own
    // person's record stays closed: `--index-skip-undecodable` would reopen it).
    let mut q = QueryServiceClient::new(v.channel());
    let mut read = as_org(
        "HOSP-A",
        v1::GetCareRecordRequest {
            person_id: first.person_id.clone(),
            min_log_position: second_position,
        },
    );
    read.set_timeout(Duration::from_secs(2));
    let decided = q.get_care_record(read).await.unwrap_err();
    assert_eq!(decided.code(), Code::PermissionDenied, "{decided:?}");
    v.stop().await.unwrap();
    cmd.stop().await.unwrap();
}

/// The last audit record on `subject` (CW_AUDIT), stored alone or in a group.
async fn last_audit(js: &async_nats::jetstream::Context, subject: &str) -> v1::AuditEvent {
    use carewoven_access::audit::{decode_message, event_subject};
    let stream = js.get_stream("CW_AUDIT").await.unwrap();
    let mut last = None;
    let mut from = 1;
    while let Ok(stored) = stream
        .direct_get_next_for_subject("cw.audit.>", Some(from))
        .await
    {
        from = stored.sequence + 1;
        for event in decode_message(&stored.subject, stored.payload.as_ref()).unwrap() {
            if event_subject(&event) == subject {
                last = Some(event);
            }
        }
    }
    last.unwrap_or_else(|| panic!("no audit record on {subject}"))
}

async fn board_people(q: &mut QueryServiceClient<Channel>, org: &str, at: u64) -> Vec<String> {
    q.list_discharge_board(as_org(
        org,
        v1::ListDischargeBoardRequest {
            min_log_position: at,
            ..Default::default()
        },
    ))
    .await
    .unwrap()
    .into_inner()
    .entries
    .into_iter()
    .map(|e| e.person_id)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_is_authenticated_and_only_whom_the_caller_may_read_is_shown_and_audited() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, mut c) = commands(&nats).await;
    let v = views(&nats, dir.path().join("views.redb")).await;
    let mut q = QueryServiceClient::new(v.channel());
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());

    let person = register(&mut c, 70).await.person_id;
    let (episode, ready_reply) = ready(&mut c, &person, "HOSP-A").await;
    let at = ready_reply.log_position;
    let read = |person_id: &str, min_log_position: u64| v1::GetCareRecordRequest {
        person_id: person_id.to_owned(),
        min_log_position,
    };

    // No token, or one nobody trusts: UNAUTHENTICATED, whatever is asked.
    let unauthenticated = [
        q.get_care_record(read(&person, at)).await.unwrap_err(),
        q.get_care_record(carewoven_access::grpc::with_token(
            tonic::Request::new(read(&person, at)),
            "not-a-token",
        ))
        .await
        .unwrap_err(),
        q.list_discharge_board(v1::ListDischargeBoardRequest::default())
            .await
            .unwrap_err(),
        q.watch_discharge_board(v1::WatchDischargeBoardRequest::default())
            .await
            .unwrap_err(),
        q.get_caseload(v1::GetCaseloadRequest {
            owner: Some(v1::get_caseload_request::Owner::Organisation(
                "HOSP-A".into(),
            )),
            min_log_position: 0,
        })
        .await
        .unwrap_err(),
        q.list_referral_inbox(v1::ListReferralInboxRequest {
            service: "ASC-D2A".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
        ViewsAdminClient::new(v.channel())
            .status(v1::ViewsStatusRequest {})
            .await
            .unwrap_err(),
    ];
    for status in unauthenticated {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // Administration needs the governance role.
    let status = ViewsAdminClient::new(v.channel())
        .status(as_org("HOSP-A", v1::ViewsStatusRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // An organisation with an agreement but no relationship with the person is refused,
    // exactly as it is for a person who does not exist.
    let denied = q
        .get_care_record(as_org("OTHER", read(&person, at)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let nobody = q
        .get_care_record(as_org("OTHER", read(&Uuid::now_v7().to_string(), 0)))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::PermissionDenied, "{nobody:?}");
    assert_eq!(denied.message(), nobody.message());
    let refusal = last_audit(&js, &format!("cw.audit.{person}.OTHER.record_read")).await;
    assert_eq!(refusal.outcome, v1::AuditOutcome::Refused as i32);
    assert_eq!(refusal.reason, "NO_LEGITIMATE_RELATIONSHIP");
    // Its board does not show the person, nor does its watch; the hospital's does.
    assert!(board_people(&mut q, "OTHER", at).await.is_empty());
    assert_eq!(
        board_people(&mut q, "HOSP-A", at).await,
        vec![person.clone()]
    );
    let mut other_watch = q
        .watch_discharge_board(as_org(
            "OTHER",
            v1::WatchDischargeBoardRequest {
                min_log_position: at,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = other_watch.message().await.unwrap().unwrap();
    assert_eq!(
        first.change,
        Some(v1::board_update::Change::SnapshotComplete(true)),
        "nothing before the end of the snapshot"
    );
    // Caseloads and referral inboxes: only the caller's own.
    for owner in [
        v1::get_caseload_request::Owner::Organisation("HOSP-A".into()),
        v1::get_caseload_request::Owner::Coordinator(v1::MemberRef {
            organisation: "HOSP-A".into(),
            practitioner: String::new(),
        }),
    ] {
        let status = q
            .get_caseload(as_org(
                "OTHER",
                v1::GetCaseloadRequest {
                    owner: Some(owner),
                    min_log_position: 0,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    for service in ["ASC-D2A", "NO-SUCH-SVC"] {
        let status = q
            .list_referral_inbox(as_org(
                "OTHER",
                v1::ListReferralInboxRequest {
                    service: service.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }

    // The hospital managing the episode reads the record; the read is audited under the
    // person and the organisation before it is answered.
    let record = q
        .get_care_record(as_org("HOSP-A", read(&person, at)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record.person_id, person);
    let audited = last_audit(&js, &format!("cw.audit.{person}.HOSP-A.record_read")).await;
    assert_eq!(audited.outcome, v1::AuditOutcome::Permitted as i32);
    assert_eq!(audited.action, v1::AuditAction::RecordRead as i32);
    assert_eq!(audited.detail, "GetCareRecord");
    assert_eq!(audited.person_id, person);
    assert_eq!(audited.organisation, "HOSP-A");

    // Community nursing joins the care team (added by the hospital, which joins first), may
    // read, then leaves it: with no other relationship, it may read no more, and the board
    // forgets the person.
    join(&mut c, &person, "HOSP-A").await;
    let member = v1::MemberRef {
        organisation: "CNURSE-1".into(),
        practitioner: "N1".into(),
    };
    let added = c
        .add_care_team_member(signed(v1::AddCareTeamMemberRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            member: Some(member.clone()),
            role: v1::CareTeamRole::CommunityNursing as i32,
            since: date_days_ago(0),
        }))
        .await
        .unwrap()
        .into_inner();
    q.get_care_record(as_org("CNURSE-1", read(&person, added.log_position)))
        .await
        .unwrap();
    assert_eq!(
        board_people(&mut q, "CNURSE-1", added.log_position).await,
        vec![person.clone()]
    );
    let removed = c
        .remove_care_team_member(signed(v1::RemoveCareTeamMemberRequest {
            context: ctx("CNURSE-1"),
            person_id: person.clone(),
            member: Some(member),
            until: date_days_ago(0),
            reason: "No longer involved".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let status = q
        .get_care_record(as_org("CNURSE-1", read(&person, removed.log_position)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        board_people(&mut q, "CNURSE-1", removed.log_position)
            .await
            .is_empty()
    );

    // A watcher is shown a person from the event that relates it to them: the home-care
    // provider is not shown the entry while a pathway is being chosen, then is shown it once
    // its service is requested.
    let assigned = step(
        &mut c,
        "HOSP-A",
        &person,
        &episode,
        Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway1 as i32,
        }),
    )
    .await;
    assert!(
        board_people(&mut q, "HOMECARE", assigned.log_position)
            .await
            .is_empty()
    );
    let mut homecare = q
        .watch_discharge_board(as_org(
            "HOMECARE",
            v1::WatchDischargeBoardRequest {
                min_log_position: assigned.log_position,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = homecare.message().await.unwrap().unwrap();
    assert_eq!(
        first.change,
        Some(v1::board_update::Change::SnapshotComplete(true))
    );
    let requested = step(
        &mut c,
        "HOSP-A",
        &person,
        &episode,
        Step::RequestService(pd::RequestService {
            service: "HOMECARE-1".into(),
        }),
    )
    .await;
    let update = tokio::time::timeout(Duration::from_secs(10), homecare.message())
        .await
        .expect("a change arrives")
        .unwrap()
        .unwrap();
    assert_eq!(update.log_position, requested.log_position);
    match update.change.unwrap() {
        v1::board_update::Change::Upsert(e) => {
            assert_eq!(
                (e.episode_id.as_str(), e.status.as_str()),
                (episode.as_str(), "awaiting_service")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let audited = last_audit(&js, &format!("cw.audit.{person}.HOMECARE.record_read")).await;
    assert_eq!(audited.detail, "WatchDischargeBoard");
    assert_eq!(audited.log_position, requested.log_position);
    v.stop().await.unwrap();
    cmd.stop().await.unwrap();
}

/// `org` adds itself to the person's care team (it holds a ground that allows it).
async fn join(c: &mut CommandServiceClient<Channel>, person: &str, org: &str) {
    c.add_care_team_member(signed(v1::AddCareTeamMemberRequest {
        context: ctx(org),
        person_id: person.into(),
        member: Some(v1::MemberRef {
            organisation: org.into(),
            practitioner: String::new(),
        }),
        role: v1::CareTeamRole::HospitalTeam as i32,
        since: date_days_ago(0),
    }))
    .await
    .unwrap();
}

/// The board as `org` sees it, after `at`, with optional filters.
async fn board_as(
    q: &mut QueryServiceClient<Channel>,
    org: &str,
    at: u64,
    request: v1::ListDischargeBoardRequest,
) -> Vec<v1::BoardEntry> {
    q.list_discharge_board(as_org(
        org,
        v1::ListDischargeBoardRequest {
            min_log_position: at,
            ..request
        },
    ))
    .await
    .unwrap()
    .into_inner()
    .entries
}

async fn inbox_as(
    q: &mut QueryServiceClient<Channel>,
    at: u64,
    status: &str,
) -> Result<Vec<v1::InboxEntry>, tonic::Status> {
    q.list_referral_inbox(as_org(
        "ASC",
        v1::ListReferralInboxRequest {
            service: "ASC-D2A".into(),
            min_log_position: at,
            status: status.into(),
            ..Default::default()
        },
    ))
    .await
    .map(|r| r.into_inner().entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_say_why_and_show_names_only_where_the_agreement_covers_demographics() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cmd, mut c) = commands(&nats).await;
    // Two more hospitals: one whose agreement leaves out demographics, one whose agreement
    // leaves out discharge data.
    let without = |left_out: v1::DataClass| -> Vec<i32> {
        all_data_classes()
            .into_iter()
            .filter(|c| *c != left_out as i32)
            .collect()
    };
    register_partner(
        &mut c,
        "HOSP-C",
        &["HOSP-C"],
        &without(v1::DataClass::Demographics),
    )
    .await
    .unwrap();
    register_partner(
        &mut c,
        "HOSP-D",
        &["HOSP-D"],
        &without(v1::DataClass::Discharge),
    )
    .await
    .unwrap();
    let v = views(&nats, dir.path().join("views.redb")).await;
    let mut q = QueryServiceClient::new(v.channel());

    // One person ready for discharge at each hospital.
    let mut people = Vec::new();
    for (n, site) in [(40, "HOSP-A"), (41, "HOSP-C"), (42, "HOSP-D")] {
        let person = register(&mut c, n).await.person_id;
        let (episode, _) = ready(&mut c, &person, site).await;
        people.push((site, person, episode));
    }
    let (_, person_a, episode_a) = people[0].clone();
    let noted = step(
        &mut c,
        "HOSP-A",
        &person_a,
        &episode_a,
        Step::RecordDelayReason(pd::RecordDelayReason {
            reason: v1::DelayReason::Pathway1NewCare as i32,
            note: "No home care package until Thursday".into(),
        }),
    )
    .await;
    let mut at = noted.log_position;
    for (site, person, episode) in &people[1..] {
        at = step(
            &mut c,
            site,
            person,
            episode,
            Step::RecordDelayReason(pd::RecordDelayReason {
                reason: v1::DelayReason::AwaitingMedicinesToTakeHome as i32,
                note: String::new(),
            }),
        )
        .await
        .log_position;
    }

    // The hospital whose agreement covers demographics sees the name and NHS number, and
    // the delay's note.
    let a = board_as(&mut q, "HOSP-A", at, Default::default()).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (
            a[0].given_name.as_str(),
            a[0].family_name.as_str(),
            a[0].nhs_number.as_str()
        ),
        ("Ada", "Example", test_nhs_number(40).as_str())
    );
    assert_eq!(a[0].delay_notes.len(), 1);
    assert_eq!(
        a[0].delay_notes[0].note,
        "No home care package until Thursday"
    );
    assert_eq!(a[0].delay_notes[0].organisation, "HOSP-A");
    // Without demographics: the entry, but no name and no NHS number.
    let c_board = board_as(&mut q, "HOSP-C", at, Default::default()).await;
    assert_eq!(c_board.len(), 1);
    assert_eq!(c_board[0].person_id, people[1].1);
    assert!(
        c_board[0].given_name.is_empty()
            && c_board[0].family_name.is_empty()
            && c_board[0].nhs_number.is_empty(),
        "{:?}",
        c_board[0]
    );
    // Without discharge data in its agreement the board shows it nothing, though it
    // manages the episode: the board is discharge data.
    assert!(
        board_as(&mut q, "HOSP-D", at, Default::default())
            .await
            .is_empty()
    );
    // An organisation with no relationship sees nothing.
    assert!(
        board_as(&mut q, "OTHER", at, Default::default())
            .await
            .is_empty()
    );

    // Filter by delay reason; an unknown one is refused naming the field.
    let by_reason = |reason: v1::DelayReason| v1::ListDischargeBoardRequest {
        delay_reason: reason as i32,
        ..Default::default()
    };
    assert_eq!(
        board_as(
            &mut q,
            "HOSP-A",
            at,
            by_reason(v1::DelayReason::Pathway1NewCare)
        )
        .await
        .len(),
        1
    );
    assert!(
        board_as(
            &mut q,
            "HOSP-A",
            at,
            by_reason(v1::DelayReason::AwaitingMedicinesToTakeHome)
        )
        .await
        .is_empty()
    );
    let refused = q
        .list_discharge_board(as_org(
            "HOSP-A",
            v1::ListDischargeBoardRequest {
                delay_reason: 999,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("delay_reason"), "{refused:?}");
    let refused = q
        .list_discharge_board(as_org(
            "HOSP-A",
            v1::ListDischargeBoardRequest {
                status: "closed".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("status"), "{refused:?}");

    // The referral inbox: awaiting a decision by default, any status on request, with the
    // reason given.
    let referral = c
        .make_referral(signed(v1::MakeReferralRequest {
            context: ctx("HOSP-A"),
            person_id: person_a.clone(),
            referral: Some(v1::Referral {
                from_organisation: "HOSP-A".into(),
                to_service: "ASC-D2A".into(),
                priority: v1::Priority::Urgent as i32,
                reason: "Support at home".into(),
                replaces: String::new(),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let waiting = inbox_as(&mut q, referral.log_position, "").await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].status, "submitted");
    assert_eq!(waiting[0].to_service, "ASC-D2A");
    let progress = |action: v1::ReferralAction, reason: &str| {
        signed(v1::ProgressReferralRequest {
            context: ctx("ASC"),
            person_id: person_a.clone(),
            referral_id: referral.aggregate_id.clone(),
            action: action as i32,
            reason: reason.into(),
        })
    };
    for action in [v1::ReferralAction::Receive, v1::ReferralAction::Accept] {
        c.progress_referral(progress(action, "")).await.unwrap();
    }
    let held = c
        .progress_referral(progress(
            v1::ReferralAction::Hold,
            "Awaiting the family's view",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        inbox_as(&mut q, held.log_position, "")
            .await
            .unwrap()
            .is_empty(),
        "a referral on hold awaits no decision"
    );
    for status in ["open", "on_hold", "all"] {
        let entries = inbox_as(&mut q, held.log_position, status).await.unwrap();
        assert_eq!(entries.len(), 1, "{status}");
        assert_eq!(entries[0].status, "on_hold");
        assert_eq!(entries[0].reason, "Awaiting the family's view");
    }
    assert!(
        inbox_as(&mut q, held.log_position, "rejected")
            .await
            .unwrap()
            .is_empty()
    );
    let refused = inbox_as(&mut q, held.log_position, "pending")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("status"), "{refused:?}");

    // The record keeps the referral's history with its reasons.
    let record = q
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: person_a.clone(),
                min_log_position: held.log_position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let history: Vec<(&str, &str, &str)> = record.referrals[0]
        .history
        .iter()
        .map(|h| {
            (
                h.status.as_str(),
                h.reason.as_str(),
                h.organisation.as_str(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("submitted", "", "HOSP-A"),
            ("received", "", "ASC"),
            ("accepted", "", "ASC"),
            ("on_hold", "Awaiting the family's view", "ASC"),
        ]
    );
    assert_eq!(record.discharge_episodes[0].delay_notes.len(), 1);

    v.stop().await.unwrap();
    cmd.stop().await.unwrap();
}
