//! Backup and restore (issue 13, part 3), end to end: the shipped NATS configuration
//! (`deploy/nats-server.conf`, accounts and nkey identities), the command service, the views
//! and the gateway over real gRPC, and the `carewoven-admin` binary with the backup
//! identity's seed.
//!
//! A realistic history is backed up from one server and restored onto a fresh one (fresh
//! store directory); services started there with nothing but the restored streams rebuild
//! the same views and the same checkpoints (digests), a partner resumes its feed with no gap
//! or repeat, and the access list is the same. The tool refuses to restore onto a server
//! that has the streams, a corrupted file and a missing file, and restores nothing then.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, feed_service_client::FeedServiceClient,
    query_service_client::QueryServiceClient,
};
use carewoven_testkit::broker::{Identities, single_node};
use carewoven_testkit::*;
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(30);
const STREAMS: [&str; 3] = ["CAREWOVEN", "CW_AUDIT", "CW_FEED"];
/// The partner whose feed is followed: the council's discharge-to-assess team, which
/// receives the referrals (a direct-care agreement covering every data class).
const PARTNER: &str = "ASC-D2A";

/// The command service, the views and the gateway on one NATS, each with its own identity
/// and checkpoint files in `files`.
struct Deployment {
    commands: Running,
    views: Running,
    gateway: Running,
    progress: tokio::sync::watch::Receiver<carewoven_gateway::evaluator::Progress>,
}

impl Deployment {
    async fn start(url: &str, ids: &Identities, files: &Path) -> Self {
        let mut config = carewoven_commands::Config::for_nats(url);
        config.service.nats_nkey_seed = Some(ids.seed("commands"));
        config.service.access.access_checkpoint = Some(files.join("commands-access.redb"));
        let commands = start_commands(config).await.unwrap();

        let mut config = carewoven_views::Config::new(url.to_owned(), files.join("views.redb"));
        config.service.nats_nkey_seed = Some(ids.seed("views"));
        config.service.access.access_checkpoint = Some(files.join("views-access.redb"));
        let views = start_views(config).await.unwrap();

        let mut config = carewoven_gateway::Config::for_nats(url);
        config.service.nats_nkey_seed = Some(ids.seed("gateway"));
        config.service.access.access_checkpoint = Some(files.join("gateway-access.redb"));
        config.evaluator_checkpoint = Some(files.join("gateway-evaluator.redb"));
        let (gateway, progress) = start_gateway(config).await.unwrap();
        Deployment {
            commands,
            views,
            gateway,
            progress,
        }
    }

    fn queries(&self) -> QueryServiceClient<tonic::transport::Channel> {
        QueryServiceClient::new(self.views.channel())
    }

    /// Every follower has applied the log up to `end`: the evaluator says so, and each
    /// access index confirms a refusal only after applying the log to its end (an
    /// organisation with no relationship to `person` asks each service).
    async fn caught_up(&mut self, end: u64, person: &str) {
        tokio::time::timeout(WAIT, self.progress.wait_for(|p| p.delivered_through >= end))
            .await
            .expect("the gateway evaluates the whole log")
            .unwrap();
        let read = self
            .queries()
            .get_care_record(as_org(
                "COMM",
                v1::GetCareRecordRequest {
                    person_id: person.into(),
                    min_log_position: end,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(read.code(), tonic::Code::PermissionDenied, "{read:?}");
        let command = self
            .commands
            .client()
            .add_care_team_member(signed(add_member_request(person, "COMM", "COMM")))
            .await
            .unwrap_err();
        assert_eq!(command.code(), tonic::Code::PermissionDenied, "{command:?}");
        let listing = AuditServiceClient::new(self.gateway.channel())
            .list_record_access(as_org("COMM", list_request(person)))
            .await
            .unwrap_err();
        assert_ne!(listing.code(), tonic::Code::Ok);
    }

    /// Stop the gateway, the views and the command service (each saves its checkpoints).
    async fn stop(self) {
        self.gateway.stop().await.unwrap();
        self.views.stop().await.unwrap();
        self.commands.stop().await.unwrap();
    }
}

fn list_request(person: &str) -> v1::ListRecordAccessRequest {
    v1::ListRecordAccessRequest {
        person_id: person.into(),
        after: 0,
        limit: 1000,
        after_delivery: 0,
    }
}

/// Digests of everything derived from the log: the views file and each checkpoint, opened
/// for the log `identity` (`CAREWOVEN@<creation time>`) with the log ending at `end`.
fn digests(files: &Path, identity: &str, end: u64) -> Vec<(String, String)> {
    let db = carewoven_views::store::open(&files.join("views.redb")).unwrap();
    assert_eq!(carewoven_views::store::position(&db).unwrap(), end);
    let mut out = vec![(
        "views".to_owned(),
        carewoven_views::store::digest(&db).unwrap(),
    )];
    drop(db);
    for name in [
        "commands-access",
        "views-access",
        "gateway-access",
        "gateway-evaluator",
    ] {
        let path = files.join(format!("{name}.redb"));
        assert!(path.exists(), "{name} was saved");
        // A service's run returns before its index has let go of the checkpoint (the last
        // save happens as the follower stops): wait until the file is free.
        wait_until(&format!("{name} to be closed"), WAIT, || {
            redb::Database::open(&path).is_ok()
        })
        .unwrap();
        let aside = path.with_extension("set-aside");
        let set_aside = aside.exists();
        let c = carewoven_access::checkpoint::Checkpoint::open(&path, identity, end).unwrap();
        assert_eq!(
            aside.exists(),
            set_aside,
            "{name} is a checkpoint of this log"
        );
        assert_eq!(c.position().unwrap(), end, "{name} folded the whole log");
        out.push((name.to_owned(), c.digest().unwrap()));
    }
    out
}

/// Messages and last sequence of each stream, and the log's identity, read as the command
/// service reads them.
async fn streams(url: &str, ids: &Identities) -> (Vec<(u64, u64)>, String) {
    let commands = ids.connect("commands", url).await.unwrap();
    let gateway = ids.connect("gateway", url).await.unwrap();
    let mut out = Vec::new();
    let mut identity = String::new();
    for name in STREAMS {
        let js = if name == "CAREWOVEN" {
            commands.jetstream()
        } else {
            gateway.jetstream()
        };
        let mut stream = js.get_stream(name).await.unwrap();
        let info = stream.info().await.unwrap();
        out.push((info.state.messages, info.state.last_sequence));
        if name == "CAREWOVEN" {
            identity = format!("CAREWOVEN@{}", info.created.unix_timestamp_nanos());
        }
    }
    (out, identity)
}

/// Messages the partner's durable consumer `<ORG>` on `CW_FEED` has still to deliver, as the
/// operator sees it (`create`: make the consumer first, as the operator does for a partner).
async fn partner_consumer_pending(url: &str, ids: &Identities, create: bool) -> u64 {
    use async_nats::jetstream::consumer::pull;
    let ops = ids.connect("ops", url).await.unwrap().jetstream();
    let feed = ops.get_stream("CW_FEED").await.unwrap();
    let consumer = if create {
        feed.create_consumer(pull::Config {
            durable_name: Some(PARTNER.into()),
            filter_subject: format!("cw.feed.{PARTNER}.>"),
            ..Default::default()
        })
        .await
        .unwrap()
    } else {
        feed.get_consumer::<pull::Config>(PARTNER).await.unwrap()
    };
    consumer.cached_info().num_pending
}

/// Run `carewoven-admin` with the backup identity's seed.
fn admin(ids: &Identities, url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_carewoven-admin"))
        .args(args)
        .env("CAREWOVEN_NATS_URL", url)
        .env("CAREWOVEN_NATS_NKEY_SEED", ids.seed("backup"))
        .env("CAREWOVEN_NATS_TIMEOUT_SECS", "10")
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `n` items of `feed`, each within [`WAIT`].
async fn take(feed: &mut tonic::Streaming<v1::FeedItem>, n: usize) -> Vec<v1::FeedItem> {
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("the next feed item arrives")
            .expect("the feed goes on")
            .unwrap();
        out.push(item);
    }
    out
}

async fn subscribe(gateway: &Running, after_number: u64) -> tonic::Streaming<v1::FeedItem> {
    FeedServiceClient::new(gateway.channel())
        .subscribe(as_org(
            PARTNER,
            v1::SubscribeRequest {
                cursor: String::new(),
                after_number,
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn feed_last(gateway: &Running) -> u64 {
    FeedServiceClient::new(gateway.channel())
        .get_feed_status(as_org(PARTNER, v1::GetFeedStatusRequest {}))
        .await
        .unwrap()
        .into_inner()
        .last_number
}

/// Registrations, referrals (one accepted), an admission taken to discharge ready, and a
/// read of each record by the registered GP (audited). Returns the people and the last log position written.
async fn history(d: &Deployment) -> (Vec<String>, u64) {
    let mut c = d.commands.client();
    register_standard_orgs(&mut c).await.unwrap();
    let mut people = Vec::new();
    for n in 1..=3 {
        people.push(register_with_gp(&mut c, 300 + n, "GP-A").await.unwrap());
    }
    let mut last = 0;
    for person in &people {
        let referral = make_referral(&mut c, person).await.unwrap();
        if person == &people[0] {
            for action in [v1::ReferralAction::Receive, v1::ReferralAction::Accept] {
                last = c
                    .progress_referral(signed(referral_action(person, &referral, action, PARTNER)))
                    .await
                    .unwrap()
                    .into_inner()
                    .log_position;
            }
        }
    }
    episode_ready(&mut c, &people[1]).await.unwrap();
    let reply = c
        .add_care_team_member(signed(add_member_request(&people[2], "GP-A", "GP-A")))
        .await
        .unwrap()
        .into_inner();
    last = last.max(reply.log_position);
    let mut q = d.queries();
    for person in &people {
        q.get_care_record(as_org(
            "GP-A",
            v1::GetCareRecordRequest {
                person_id: person.clone(),
                min_log_position: last,
            },
        ))
        .await
        .unwrap();
    }
    (people, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_onto_a_fresh_server_rebuilds_the_same_views_feeds_and_access_list() {
    let ids = Identities::new();
    let original = single_node(&ids).unwrap();
    let url = original.url();
    let work = tempfile::tempdir().unwrap();
    let files_a = work.path().join("a");
    std::fs::create_dir_all(&files_a).unwrap();

    let mut a = Deployment::start(&url, &ids, &files_a).await;
    let (people, _) = history(&a).await;
    let (before, identity_a) = streams(&url, &ids).await;
    let log_end = before[0].1;
    a.caught_up(log_end, &people[0]).await;

    // What a partner and a person's access list show before the backup.
    let delivered = feed_last(&a.gateway).await;
    assert!(delivered >= 3, "the partner's feed has items: {delivered}");
    let items = take(&mut subscribe(&a.gateway, 0).await, delivered as usize).await;
    let access_before = AuditServiceClient::new(a.gateway.channel())
        .list_record_access(as_org("GP-A", list_request(&people[0])))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        access_before
            .iter()
            .any(|e| e.delivery_position > 0 && e.event.as_ref().unwrap().organisation == PARTNER),
        "the access list has the partner's deliveries"
    );
    assert!(access_before.iter().any(|e| e.position > 0));
    // The partner's durable consumer on CW_FEED (deploy/README.md, "Adding a partner"),
    // made by the operator: kept in the backup with its state.
    let pending = partner_consumer_pending(&url, &ids, true).await;
    assert!(
        pending > 0,
        "the partner's consumer has the feed to deliver"
    );
    a.stop().await;
    let (before, _) = streams(&url, &ids).await;
    let digests_a = digests(&files_a, &identity_a, log_end);

    // Back up (services stopped, so the three streams are of one moment), and verify.
    let backup = work.path().join("backup");
    let out = admin(&ids, &url, &["backup", "--out", backup.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}", said(&out));
    println!("{}", said(&out));
    let out = admin(&ids, &url, &["verify", backup.to_str().unwrap()]);
    assert!(out.status.success(), "verify: {}", said(&out));
    println!("{}", said(&out));
    let manifest = carewoven_admin::Manifest::read(&backup).unwrap();
    assert_eq!(manifest.server.version, "2.15.1");
    for (name, (messages, last)) in STREAMS.iter().zip(&before) {
        let entry = manifest.stream(name).unwrap();
        assert_eq!(
            (entry.state.messages, entry.state.last_seq),
            (*messages, *last),
            "{name}"
        );
    }
    drop(original);

    // A fresh server: nothing but the restored streams.
    let fresh = single_node(&ids).unwrap();
    let url = fresh.url();
    let out = admin(&ids, &url, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", said(&out));
    println!("{}", said(&out));
    let (restored, identity_b) = streams(&url, &ids).await;
    assert_eq!(restored, before, "each stream's messages and last sequence");
    assert_eq!(
        partner_consumer_pending(&url, &ids, false).await,
        pending,
        "the partner's consumer is restored with its state"
    );
    // Restoring onto a server that has the streams is refused, and changes nothing.
    let out = admin(&ids, &url, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("already exists on this server"),
        "{}",
        said(&out)
    );
    assert_eq!(streams(&url, &ids).await.0, before);

    // The services rebuild everything from the restored log. The old command service's
    // checkpoint is of a stream created at another time: set aside and rebuilt.
    let files_b = work.path().join("b");
    std::fs::create_dir_all(&files_b).unwrap();
    std::fs::copy(
        files_a.join("commands-access.redb"),
        files_b.join("commands-access.redb"),
    )
    .unwrap();
    let mut b = Deployment::start(&url, &ids, &files_b).await;
    let aside = files_b.join("commands-access.set-aside");
    assert!(aside.exists(), "the old log's checkpoint is set aside");
    std::fs::remove_file(aside).unwrap();
    b.caught_up(log_end, &people[0]).await;
    b.stop().await;
    assert_ne!(identity_b, identity_a, "a restored stream is created anew");
    assert_eq!(
        digests(&files_b, &identity_b, log_end),
        digests_a,
        "the views and every checkpoint, rebuilt from the restored log"
    );

    // Started again (warm, from those checkpoints) for the partner and the access list.
    let b = Deployment::start(&url, &ids, &files_b).await;
    // The partner resumes after the half it had read: no gap, no repeat, the same items.
    let half = delivered / 2;
    let mut resumed = subscribe(&b.gateway, half).await;
    let rest = take(&mut resumed, (delivered - half) as usize).await;
    assert_eq!(rest, items[half as usize..].to_vec());
    assert_eq!(
        feed_last(&b.gateway).await,
        delivered,
        "nothing delivered twice"
    );
    // And its feed goes on from there.
    let mut c = b.commands.client();
    let new = make_referral(&mut c, &people[1]).await.unwrap();
    assert!(!new.is_empty());
    let next = take(&mut resumed, 1).await;
    assert_eq!(next[0].number, delivered + 1);

    // The access list: the same entries, then what happened since (the listing above and the
    // checks of `caught_up`, all after the restore).
    let access_after = AuditServiceClient::new(b.gateway.channel())
        .list_record_access(as_org("GP-A", list_request(&people[0])))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let audit_end = before[1].1;
    let feed_end = before[2].1;
    let old: Vec<_> = access_after
        .iter()
        .filter(|e| {
            (e.position > 0 && e.position <= audit_end)
                || (e.delivery_position > 0 && e.delivery_position <= feed_end)
        })
        .cloned()
        .collect();
    assert_eq!(
        old[..access_before.len()],
        access_before[..],
        "the access list before the backup"
    );
    // Stored before the backup but after the first listing: that listing's own record and
    // the refusals of `caught_up` (COMM's).
    for extra in &old[access_before.len()..] {
        let event = extra.event.as_ref().unwrap();
        assert!(
            event.organisation == "GP-A" || event.organisation == "COMM",
            "{extra:?}"
        );
    }
    drop(resumed);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_incomplete_backup_is_refused_and_nothing_is_restored() {
    let ids = Identities::new();
    let original = single_node(&ids).unwrap();
    let url = original.url();
    let commands = ids.connect("commands", &url).await.unwrap();
    carewoven_eventlog::EventLog::open(commands.client.clone(), Default::default())
        .await
        .unwrap();
    carewoven_access::AuditLog::open(commands.client.clone(), 1, WAIT)
        .await
        .unwrap();
    let gateway = ids.connect("gateway", &url).await.unwrap();
    carewoven_gateway::evaluator::open_feed_stream(&gateway.jetstream(), 1)
        .await
        .unwrap();
    for n in 0..20u32 {
        commands
            .jetstream()
            .publish(
                format!(
                    "cw.evt.{}.person.{}.person_registered",
                    uuid::Uuid::from_u128(n.into()),
                    uuid::Uuid::from_u128(n.into())
                ),
                format!("synthetic event {n}").into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good");
    let out = admin(&ids, &url, &["backup", "--out", good.to_str().unwrap()]);
    assert!(out.status.success(), "backup: {}", said(&out));
    // A directory that holds a backup is not written over.
    let out = admin(&ids, &url, &["backup", "--out", good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("already holds a backup"),
        "{}",
        said(&out)
    );
    // Another identity cannot take a snapshot: the operator's has no such import.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_carewoven-admin"))
        .args(["backup", "--out", work.path().join("ops").to_str().unwrap()])
        .env("CAREWOVEN_NATS_URL", &url)
        .env("CAREWOVEN_NATS_NKEY_SEED", ids.seed("ops"))
        .env("CAREWOVEN_NATS_TIMEOUT_SECS", "3")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("stream CW_FEED"), "{}", said(&out));

    let copy = |name: &str| -> PathBuf {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&good).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        dir
    };
    // One byte changed in the event log's snapshot.
    let corrupted = copy("corrupted");
    let file = corrupted.join("CAREWOVEN.snapshot");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    // The audit's snapshot missing.
    let missing = copy("missing");
    std::fs::remove_file(missing.join("CW_AUDIT.snapshot")).unwrap();

    let fresh = single_node(&ids).unwrap();
    for (dir, stream, problem) in [
        (&corrupted, "CAREWOVEN", "does not match its checksum"),
        (&missing, "CW_AUDIT", "cannot be read"),
    ] {
        let file = dir.join(format!("{stream}.snapshot"));
        for args in [
            vec!["verify", dir.to_str().unwrap()],
            vec!["restore", "--from", dir.to_str().unwrap()],
        ] {
            let out = admin(&ids, &fresh.url(), &args);
            let text = said(&out);
            assert!(!out.status.success(), "{args:?}: {text}");
            assert!(
                text.contains(&format!("stream {stream}"))
                    && text.contains(file.to_str().unwrap())
                    && text.contains(problem),
                "{args:?} names the stream, the file and the problem: {text}"
            );
        }
    }
    // Nothing was restored: every stream is still missing, and the good backup restores.
    let b = ids.connect("backup", &fresh.url()).await.unwrap();
    for stream in STREAMS {
        assert!(
            carewoven_admin::stream_info(&b.client, stream)
                .await
                .unwrap()
                .is_none(),
            "{stream} was not restored"
        );
    }
    let out = admin(
        &ids,
        &fresh.url(),
        &["restore", "--from", good.to_str().unwrap()],
    );
    assert!(out.status.success(), "restore: {}", said(&out));
    let info = carewoven_admin::stream_info(&b.client, "CAREWOVEN")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info["state"]["messages"], 20);
}
