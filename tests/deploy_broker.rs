//! The broker enforces the same boundaries as the services: the shipped configurations in
//! `deploy/` run for real, with stock async-nats clients and the real services.
//!
//! - No anonymous client and no unknown key gets in.
//! - Each service's identity (`deploy/accounts.conf`) does its job and is refused anything
//!   else; no identity can delete or purge a stream or delete a message, not even by
//!   choosing a reply subject that names the delete API or a stream's subjects.
//! - The command, views, gateway and analyst services each run with only their own seed and
//!   serve a command end to end, and the server logs no refusal for any of them.
//! - Cluster routes are authenticated: a node with the wrong route credentials does not join.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream::{self, consumer::pull, stream};
use carewoven_domain::values::NhsNumber;
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, command_service_client::CommandServiceClient,
    feed_service_client::FeedServiceClient, history_service_client::HistoryServiceClient,
    query_service_client::QueryServiceClient,
};
use carewoven_testkit::Running;
use carewoven_testkit::broker::{Identities, Watched, single_node, violations};
use carewoven_testkit::{ConfiguredServer, free_port, repo_root};
use carewoven_testkit::{as_org, ctx, register_standard_orgs, signed, token_with_roles};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

/// How long to wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);

const STREAMS: [&str; 3] = ["CAREWOVEN", "CW_FEED", "CW_AUDIT"];

/// The number of messages in each of [`STREAMS`], read as the operator.
async fn message_counts(ops: &jetstream::Context) -> Result<Vec<u64>> {
    let mut counts = Vec::new();
    for name in STREAMS {
        let mut stream = ops
            .get_stream(name)
            .await
            .with_context(|| format!("stream {name} as the operator"))?;
        counts.push(stream.info().await?.state.messages);
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_serves_a_command_end_to_end_with_only_its_own_identity() -> Result<()> {
    let ids = Identities::new();
    let nats = single_node(&ids)?;
    let url = nats.url();
    let log = |e: anyhow::Error| e.context(format!("nats-server said:\n{}", nats.log()));

    let mut config = carewoven_commands::Config::for_nats(url.clone());
    config.service.nats_nkey_seed = Some(ids.seed("commands"));
    let commands = Running::start("carewoven.v1.CommandService", |l, stop| {
        carewoven_commands::run(l, config, stop.cancelled_owned())
    })
    .await
    .map_err(log)?;
    let mut client = CommandServiceClient::new(commands.channel());
    register_standard_orgs(&mut client).await?;

    let dir = tempfile::tempdir()?;
    let mut config = carewoven_views::Config::new(url.clone(), dir.path().join("v.redb"));
    config.service.nats_nkey_seed = Some(ids.seed("views"));
    let views = Running::start("carewoven.v1.QueryService", |l, stop| {
        carewoven_views::run(l, config, stop.cancelled_owned())
    })
    .await
    .map_err(log)?;

    let mut config = carewoven_gateway::Config::for_nats(url.clone());
    config.service.nats_nkey_seed = Some(ids.seed("gateway"));
    let (progress_tx, mut progress) = watch::channel(Default::default());
    let gateway = Running::start("carewoven.v1.FeedService", |l, stop| {
        carewoven_gateway::server::serve(l, config, stop.cancelled_owned(), progress_tx)
    })
    .await
    .map_err(log)?;

    let analyst_nats = carewoven_eventlog::connect(
        &url,
        "carewoven-analyst",
        Duration::from_secs(5),
        Some(&ids.seed("analyst")),
    )
    .await?;
    let analyst = Running::start("carewoven.v1.HistoryService", |l, stop| {
        let js = jetstream::new(analyst_nats);
        async move {
            carewoven_analyst::service::serve(
                l,
                js,
                "CAREWOVEN".into(),
                &carewoven_analyst::service::AuthConfig::for_tests(),
                stop,
            )
            .await
        }
    })
    .await
    .map_err(log)?;

    // A command: the hospital registers a person and refers them to the D2A team.
    let person = client
        .register_person(signed(v1::RegisterPersonRequest {
            context: ctx("HOSP-A"),
            profile: Some(v1::Profile {
                nhs_number: NhsNumber::synthetic(701).as_str().to_owned(),
                given_name: "Ada".into(),
                family_name: "Example".into(),
                date_of_birth: "1941-03-02".into(),
                ..Default::default()
            }),
        }))
        .await?
        .into_inner()
        .person_id;
    let referred = client
        .make_referral(signed(carewoven_testkit::referral_request(
            &person, "HOSP-A", "ASC-D2A",
        )))
        .await?
        .into_inner()
        .log_position;

    // The views read it back for the receiving team (and audit the read).
    let record = QueryServiceClient::new(views.channel())
        .get_care_record(as_org(
            "ASC-D2A",
            v1::GetCareRecordRequest {
                person_id: person.clone(),
                min_log_position: referred,
            },
        ))
        .await
        .map_err(|s| log(anyhow::anyhow!("{s:?}")))?
        .into_inner();
    ensure!(record.person_id == person, "the views hold the care record");

    // The gateway delivers it to the receiving team's feed, over gRPC.
    tokio::time::timeout(WAIT, progress.wait_for(|p| p.delivered_through >= referred))
        .await
        .context("the gateway did not deliver the referral")??;
    let mut feed = FeedServiceClient::new(gateway.channel())
        .subscribe(as_org("ASC-D2A", v1::SubscribeRequest::default()))
        .await?
        .into_inner();
    let item = tokio::time::timeout(WAIT, feed.next())
        .await
        .context("no feed item")?
        .context("the feed ended")??;
    ensure!(item.log_position > 0, "a feed item: {item:?}");
    drop(feed);
    // Who accessed the record (the gateway reads the audit stream).
    let accesses = AuditServiceClient::new(gateway.channel())
        .list_record_access(as_org(
            "ASC-D2A",
            v1::ListRecordAccessRequest {
                person_id: person.clone(),
                after: 0,
                limit: 0,
                after_delivery: 0,
            },
        ))
        .await?
        .into_inner();
    ensure!(
        !accesses.entries.is_empty(),
        "the views' read is on record: {accesses:?}"
    );

    // The analyst replays the log over gRPC.
    let analyst_token = token_with_roles("ICB-ANALYSTS", &[carewoven_governance::Role::Analyst]);
    let mut replay = HistoryServiceClient::new(analyst.channel())
        .replay(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::ReplayRequest::default()),
            &analyst_token,
        ))
        .await?
        .into_inner();
    let mut last = 0;
    while let Some(event) = tokio::time::timeout(WAIT, replay.message()).await?? {
        last = event.log_position;
    }
    ensure!(last == referred, "the replay reached the referral: {last}");

    analyst.stop().await?;
    gateway.stop().await?;
    views.stop().await?;
    commands.stop().await?;
    let log = nats.log();
    let refused = violations(&log);
    ensure!(
        refused.is_empty(),
        "the server refused the services something:\n{}",
        refused.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_anonymous_client_and_no_unknown_key_gets_in() -> Result<()> {
    let ids = Identities::new();
    let nats = single_node(&ids)?;
    let url = nats.url();
    ensure!(
        async_nats::connect(url.as_str()).await.is_err(),
        "an anonymous client got in"
    );
    let stranger = nkeys::KeyPair::new_user().seed()?;
    ensure!(
        async_nats::ConnectOptions::with_nkey(stranger)
            .connect(url.as_str())
            .await
            .is_err(),
        "a client with an unknown nkey got in"
    );
    ensure!(
        async_nats::ConnectOptions::with_user_and_password("carewoven".into(), "carewoven".into())
            .connect(url.as_str())
            .await
            .is_err(),
        "a client with a user name and password got in"
    );
    for name in carewoven_testkit::broker::IDENTITIES {
        ids.connect(name, &url).await?;
    }
    let log = nats.log();
    ensure!(
        log.matches("authentication error").count() >= 3,
        "the server logged the refusals:\n{log}"
    );
    Ok(())
}

/// `nats-server -t` on `config` with `env`: whether the server accepts it, and what it said.
fn config_check(config: &str, env: &[(String, String)]) -> Result<(bool, String)> {
    let out = std::process::Command::new(carewoven_testkit::nats_server_binary())
        .arg("-c")
        .arg(repo_root().join(config))
        .arg("-t")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(
            "CAREWOVEN_NATS_STORE",
            std::env::temp_dir().join("carewoven-unused"),
        )
        .output()
        .context("running nats-server -t")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), said))
}

#[test]
fn every_configuration_needs_every_identity_and_has_no_anonymous_access() -> Result<()> {
    let ids = Identities::new();
    let ports = carewoven_testkit::broker::ClusterPorts::new()?;
    let mut single = ids.env();
    single.push(("CAREWOVEN_NATS_PORT".into(), "4222".into()));
    let cluster = ports.env(&ids, "route", "secret");
    for (config, env) in [
        ("deploy/nats-server.conf", &single),
        ("deploy/cluster/n1.conf", &cluster),
        ("deploy/cluster/n2.conf", &cluster),
        ("deploy/cluster/n3.conf", &cluster),
    ] {
        let (valid, said) = config_check(config, env)?;
        ensure!(valid, "{config} is refused: {said}");
        // Without any one identity's key the server does not start.
        for (key, _) in ids.env() {
            let without: Vec<_> = env.iter().filter(|(k, _)| *k != key).cloned().collect();
            let (valid, _) = config_check(config, &without)?;
            ensure!(!valid, "{config} starts without {key}");
        }
    }
    for (key, _) in [
        ("CAREWOVEN_NATS_ROUTE_USER", ()),
        ("CAREWOVEN_NATS_ROUTE_PASSWORD", ()),
    ] {
        let without: Vec<_> = cluster.iter().filter(|(k, _)| k != key).cloned().collect();
        let (valid, _) = config_check("deploy/cluster/n1.conf", &without)?;
        ensure!(!valid, "a cluster node starts without {key}");
    }
    // Nothing in deploy/ lets a client in without credentials.
    for entry in walk(&repo_root().join("deploy"))? {
        let text = std::fs::read_to_string(&entry)?;
        for forbidden in ["no_auth_user", "default_permissions"] {
            ensure!(
                !text
                    .lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains(forbidden)),
                "{} sets {forbidden}",
                entry.display()
            );
        }
    }
    Ok(())
}

/// Every `.conf` file under `dir`.
fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else if path.extension().is_some_and(|e| e == "conf") {
            out.push(path);
        }
    }
    Ok(out)
}

/// How long a JetStream request the server refused (so will never answer) is given.
const REFUSED: Duration = Duration::from_secs(2);

/// The call must fail: the server refused its request, so it gets no answer within
/// [`REFUSED`] (the caller checks the server's refusal itself).
async fn fails<T, E>(
    what: String,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<()> {
    match tokio::time::timeout(REFUSED, call).await {
        Ok(Ok(_)) => bail!("{what} succeeded"),
        Ok(Err(_)) | Err(_) => Ok(()),
    }
}

/// The server names the mapped API subject in its refusals.
fn api(rest: &str) -> String {
    format!("$JS.carewoven.API.{rest}")
}

/// An event subject of a synthetic person.
fn event_subject() -> String {
    format!(
        "cw.evt.{}.person.{}.person_registered",
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    )
}

/// The three streams created by their owners as the services create them, with one message
/// each; the identities' clients.
struct Boundaries {
    _nats: ConfiguredServer,
    ids: Identities,
    clients: Vec<(&'static str, Watched)>,
}

impl Boundaries {
    async fn start() -> Result<Self> {
        let ids = Identities::new();
        let nats = single_node(&ids)?;
        let url = nats.url();
        let mut clients = Vec::new();
        for name in carewoven_testkit::broker::IDENTITIES {
            clients.push((name, ids.connect(name, &url).await?));
        }
        let b = Boundaries {
            _nats: nats,
            ids,
            clients,
        };
        let commands = b.client("commands").client.clone();
        carewoven_eventlog::EventLog::open(commands.clone(), Default::default()).await?;
        carewoven_access::AuditLog::open(commands, 1, WAIT).await?;
        carewoven_gateway::evaluator::open_feed_stream(&b.client("gateway").jetstream(), 1).await?;
        b.client("commands")
            .jetstream()
            .publish(event_subject(), "event".into())
            .await?
            .await?;
        b.client("commands")
            .jetstream()
            .publish("cw.audit.none.HOSP-A.read", "audit".into())
            .await?
            .await?;
        b.client("gateway")
            .jetstream()
            .publish("cw.feed.PARTNER-A.1", "feed item".into())
            .await?
            .await?;
        Ok(b)
    }

    fn seed(&self, name: &str) -> String {
        self.ids.seed(name)
    }

    fn client(&self, name: &str) -> &Watched {
        &self
            .clients
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no client {name}"))
            .1
    }

    fn client_mut(&mut self, name: &str) -> &mut Watched {
        &mut self
            .clients
            .iter_mut()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no client {name}"))
            .1
    }

    async fn counts(&self) -> Result<Vec<u64>> {
        message_counts(&self.client("ops").jetstream()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_does_its_job() -> Result<()> {
    let mut b = Boundaries::start().await?;
    ensure!(
        b.counts().await? == vec![1, 1, 1],
        "one message in each stream"
    );

    // commands: appends and reads the log (direct get, leader get), follows it.
    let js = b.client("commands").jetstream();
    js.publish(event_subject(), "event".into()).await?.await?;
    let log = js.get_stream("CAREWOVEN").await?;
    log.direct_get(1).await?;
    log.get_raw_message(1).await?;
    log.create_consumer(pull::OrderedConfig::default()).await?;
    js.publish("cw.audit.none.HOSP-A.refused", "audit".into())
        .await?
        .await?;

    // views and analyst: follow the log, append audit records.
    for name in ["views", "analyst"] {
        let js = b.client(name).jetstream();
        let log = js.get_stream("CAREWOVEN").await?;
        let mut messages = log
            .create_consumer(pull::OrderedConfig::default())
            .await?
            .messages()
            .await?;
        let first = tokio::time::timeout(WAIT, messages.next())
            .await
            .with_context(|| format!("{name} reading the log"))?
            .context("the log ended")??;
        ensure!(first.payload.as_ref() == b"event");
        js.publish(format!("cw.audit.none.HOSP-A.{name}"), "audit".into())
            .await?
            .await?;
        js.get_stream("CW_AUDIT").await?;
    }

    // gateway: follows the log, writes and reads feeds, reads the audit.
    let js = b.client("gateway").jetstream();
    js.get_stream_no_info("CAREWOVEN")
        .await?
        .create_consumer(pull::OrderedConfig::default())
        .await?;
    js.publish("cw.feed.PARTNER-A.2", "feed item".into())
        .await?
        .await?;
    let feed = js.get_stream_no_info("CW_FEED").await?;
    feed.direct_get_last_for_subject("cw.feed.PARTNER-A.2")
        .await?;
    feed.create_consumer(pull::OrderedConfig::default()).await?;
    js.get_stream("CW_AUDIT")
        .await?
        .create_consumer(pull::OrderedConfig::default())
        .await?;
    js.publish("cw.audit.none.PARTNER-A.delivered", "audit".into())
        .await?
        .await?;
    // The relationship sweep reads its last checkpoint record by subject.
    js.get_stream_no_info("CW_AUDIT")
        .await?
        .direct_get_last_for_subject("cw.audit.none.PARTNER-A.delivered")
        .await?;

    // ops: stream information, and a partner's consumer on CW_FEED.
    let js = b.client("ops").jetstream();
    let feed = js.get_stream("CW_FEED").await?;
    let consumer = feed
        .create_consumer(pull::Config {
            durable_name: Some("PARTNER-A".into()),
            filter_subject: "cw.feed.PARTNER-A.>".into(),
            ..Default::default()
        })
        .await?;
    ensure!(consumer.cached_info().num_pending == 2);
    feed.delete_consumer("PARTNER-A").await?;

    // backup: information on the three streams and their snapshots (carewoven-admin); a
    // restore over an existing stream is refused by the server itself, not only the tool.
    let dir = tempfile::tempdir()?;
    let conn = carewoven_admin::Connection {
        url: b._nats.url(),
        nkey_seed: Some(b.seed("backup")),
        timeout: WAIT,
    };
    let streams: Vec<String> = carewoven_admin::STREAMS.map(String::from).to_vec();
    let report = carewoven_admin::backup(&conn, &dir.path().join("b"), &streams, true).await?;
    let log = report
        .manifest
        .stream("CAREWOVEN")
        .context("the log's snapshot")?;
    ensure!(log.state.messages == 2, "{:?}", log.state);
    let request = serde_json::json!({"config": log.config, "state": {"messages": 0}});
    let answer = b
        .client("backup")
        .client
        .request(
            "$JS.API.STREAM.RESTORE.CAREWOVEN",
            request.to_string().into(),
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
    // 10130: "stream name already in use, cannot restore".
    ensure!(
        answer["error"]["err_code"] == 10130,
        "a restore over the log: {answer}"
    );

    ensure!(b.counts().await? == vec![2, 2, 5]);
    for (name, client) in &mut b.clients {
        let refused = client.drain();
        ensure!(refused.is_empty(), "{name} was refused: {refused:?}");
    }
    let log = b._nats.log();
    ensure!(violations(&log).is_empty(), "the server refused:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_can_remove_a_stream_or_a_message_or_step_outside_its_job() -> Result<()> {
    let mut b = Boundaries::start().await?;
    let before = b.counts().await?;

    for name in carewoven_testkit::broker::IDENTITIES {
        let client = b.client(name);
        let js = client.jetstream();
        let mut attempts = Vec::new();
        let mut subjects = Vec::new();
        for stream in STREAMS {
            let handle = js.get_stream_no_info(stream).await?;
            attempts.push(
                fails(format!("{name} deleting {stream}"), {
                    let js = js.clone();
                    async move { js.delete_stream(stream).await.map(|_| ()) }
                })
                .boxed(),
            );
            attempts.push(
                fails(format!("{name} purging {stream}"), {
                    let handle = handle.clone();
                    async move { handle.purge().await.map(|_| ()) }
                })
                .boxed(),
            );
            attempts.push(
                fails(format!("{name} deleting a message of {stream}"), {
                    let handle = handle.clone();
                    async move { handle.delete_message(1).await.map(|_| ()) }
                })
                .boxed(),
            );
            subjects.push(api(&format!("STREAM.DELETE.{stream}")));
            subjects.push(api(&format!("STREAM.PURGE.{stream}")));
            subjects.push(api(&format!("STREAM.MSG.DELETE.{stream}")));
        }
        // What is not its job.
        let publish = |subject: String| {
            let js = js.clone();
            async move {
                js.publish(subject, "forged".into())
                    .await?
                    .await
                    .map_err(anyhow::Error::from)
            }
        };
        let mut outside = Vec::new();
        if name != "commands" {
            let subject = event_subject();
            outside.push((
                format!("{name} appending an event"),
                subject.clone(),
                publish(subject).boxed(),
            ));
        }
        if name != "gateway" {
            let subject = "cw.feed.PARTNER-A.9".to_owned();
            outside.push((
                format!("{name} writing a feed"),
                subject.clone(),
                publish(subject).boxed(),
            ));
        }
        if name == "ops" || name == "backup" {
            let subject = "cw.audit.none.HOSP-A.read".to_owned();
            outside.push((
                format!("{name} writing an audit record"),
                subject.clone(),
                publish(subject).boxed(),
            ));
        }
        for (what, subject, call) in outside {
            attempts.push(fails(what, call).boxed());
            subjects.push(subject);
        }
        let config = |stream: &str, subjects: &str| stream::Config {
            name: stream.into(),
            subjects: vec![subjects.into()],
            max_messages: 1,
            ..Default::default()
        };
        for (stream, filter, owner) in [
            ("CAREWOVEN", "cw.evt.>", "commands"),
            ("CW_AUDIT", "cw.audit.>", "commands"),
            ("CW_FEED", "cw.feed.>", "gateway"),
        ] {
            if name != owner {
                let js = js.clone();
                let config = config(stream, filter);
                attempts.push(
                    fails(format!("{name} changing {stream}'s limits"), async move {
                        js.update_stream(config).await.map(|_| ())
                    })
                    .boxed(),
                );
                subjects.push(api(&format!("STREAM.UPDATE.{stream}")));
            }
        }
        if name != "commands" {
            let log = js.get_stream_no_info("CAREWOVEN").await?;
            attempts.push(
                fails(format!("{name} getting an event directly"), async move {
                    log.direct_get(1).await.map(|_| ())
                })
                .boxed(),
            );
            subjects.push(api("DIRECT.GET.CAREWOVEN"));
        }
        if name == "ops" || name == "backup" {
            let log = js.get_stream_no_info("CAREWOVEN").await?;
            attempts.push(
                fails(format!("{name} reading the log"), async move {
                    log.create_consumer(pull::OrderedConfig::default())
                        .await
                        .map(|_| ())
                })
                .boxed(),
            );
            subjects.push(api("CONSUMER.CREATE.CAREWOVEN"));
        } else {
            // A named (durable) consumer on the log: only ephemeral ones are anyone's job.
            let log = js.get_stream_no_info("CAREWOVEN").await?;
            attempts.push(
                fails(format!("{name} creating a durable consumer"), async move {
                    log.create_consumer(pull::Config {
                        durable_name: Some("mine".into()),
                        filter_subject: "cw.evt.>".into(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                })
                .boxed(),
            );
            subjects.push(api("CONSUMER.CREATE.CAREWOVEN.mine.cw.evt.>"));
        }
        if name != "gateway" && name != "ops" {
            let feed = js.get_stream_no_info("CW_FEED").await?;
            attempts.push(
                fails(format!("{name} reading the feeds"), async move {
                    feed.create_consumer(pull::OrderedConfig::default())
                        .await
                        .map(|_| ())
                })
                .boxed(),
            );
            subjects.push(api("CONSUMER.CREATE.CW_FEED"));
        }
        futures::future::try_join_all(attempts).await?;
        let client = b.client_mut(name);
        for subject in subjects {
            client
                .publish_refused(&subject)
                .await
                .with_context(|| format!("{name}: {subject}"))?;
        }
    }
    // The unnamed create (every reader's) makes ephemeral consumers only.
    let durable = serde_json::json!({
        "stream_name": "CAREWOVEN",
        "config": {"durable_name": "mine", "ack_policy": "explicit"},
    });
    let answer = b
        .client("views")
        .client
        .request(
            "$JS.API.CONSUMER.CREATE.CAREWOVEN",
            durable.to_string().into(),
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
    // 10020: "consumer expected to be ephemeral but a durable name was set in request".
    ensure!(
        answer["error"]["err_code"] == 10020,
        "a durable consumer through the unnamed create: {answer}"
    );
    let after = b.counts().await?;
    ensure!(
        after == before,
        "nothing was stored or removed: {before:?} then {after:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_subject_cannot_remove_a_stream_or_store_a_message() -> Result<()> {
    let b = Boundaries::start().await?;
    let before = b.counts().await?;
    // Replies naming the delete API or a stream's subjects: inside the streams' account the
    // first deletes the stream and the second stores the reply (see deploy/accounts.conf).
    let replies = [
        "$JS.API.STREAM.DELETE.CAREWOVEN".to_owned(),
        "$JS.API.STREAM.DELETE.CW_FEED".to_owned(),
        "$JS.API.STREAM.DELETE.CW_AUDIT".to_owned(),
        event_subject(),
        "cw.feed.PARTNER-A.99".to_owned(),
        "cw.audit.none.HOSP-A.forged".to_owned(),
    ];
    for name in ["commands", "views", "analyst", "gateway"] {
        let client = &b.client(name).client;
        let js = b.client(name).jetstream();
        let consumer = js
            .get_stream_no_info("CAREWOVEN")
            .await?
            .create_consumer(pull::OrderedConfig::default())
            .await?;
        let next = format!(
            "$JS.API.CONSUMER.MSG.NEXT.CAREWOVEN.{}",
            consumer.cached_info().name
        );
        for reply in &replies {
            // A pull with nothing to deliver: its reply is an empty status message.
            client
                .publish_with_reply(
                    next.clone(),
                    reply.clone(),
                    r#"{"batch":1,"no_wait":true}"#.into(),
                )
                .await?;
            if name == "commands" {
                client
                    .publish_with_reply(
                        "$JS.API.DIRECT.GET.CAREWOVEN",
                        reply.clone(),
                        r#"{"seq":1}"#.into(),
                    )
                    .await?;
            }
        }
        // The same requests with a reply to this client: once they are answered, the server
        // has handled the ones before them.
        let inbox = client.new_inbox();
        let mut answers = client.subscribe(inbox.clone()).await?;
        client
            .publish_with_reply(
                next.clone(),
                inbox.clone(),
                r#"{"batch":1,"no_wait":true}"#.into(),
            )
            .await?;
        tokio::time::timeout(WAIT, answers.next())
            .await
            .with_context(|| format!("{name}'s pull was not answered"))?;
        if name == "commands" {
            client
                .publish_with_reply("$JS.API.DIRECT.GET.CAREWOVEN", inbox, r#"{"seq":1}"#.into())
                .await?;
            tokio::time::timeout(WAIT, answers.next())
                .await
                .context("the direct get was not answered")?;
        }
    }
    let after = b.counts().await?;
    ensure!(
        after == before,
        "every stream is there, with nothing stored or removed: {before:?} then {after:?}"
    );
    Ok(())
}

/// Create the event log with three replicas as the command service's identity.
async fn create_replicated_log(js: &jetstream::Context) -> Result<()> {
    let config = stream::Config {
        name: "CAREWOVEN".into(),
        subjects: vec!["cw.evt.>".into()],
        num_replicas: 3,
        ..Default::default()
    };
    js.create_stream(config).await?;
    Ok(())
}

/// The names of the servers `monitor` (a monitoring port) has routes to, from `/routez`.
fn routes(monitor: u16) -> Result<Vec<String>> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", monitor))?;
    tcp.write_all(b"GET /routez HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no body in /routez")?;
    let routez: serde_json::Value = serde_json::from_str(body).context("/routez is not JSON")?;
    let mut names: Vec<String> = routez["routes"]
        .as_array()
        .map(|routes| {
            routes
                .iter()
                .filter_map(|r| r["remote_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Wait until `condition` holds, polling with a deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition()? {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_route_credentials_does_not_join_the_cluster() -> Result<()> {
    let ids = Identities::new();
    let ports = carewoven_testkit::broker::ClusterPorts::new()?;
    let right = ports.env(&ids, "carewoven-route", "the-right-route-secret");
    let wrong = ports.env(&ids, "carewoven-route", "a-guessed-route-secret");
    let monitors: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_>>()?;
    let start = |n: usize, env: &[(String, String)]| {
        ConfiguredServer::start_with_args(
            &repo_root().join(format!("deploy/cluster/n{n}.conf")),
            env,
            ports.clients[n - 1],
            &["-m".to_owned(), monitors[n - 1].to_string()],
        )
    };
    let n1 = start(1, &right)?;
    let n2 = start(2, &right)?;
    let mut n3 = start(3, &wrong)?;

    // Node 3 presents the wrong password to nodes 1 and 2, and refuses theirs: each side
    // logs the refusal, and neither has a route to the other.
    let refused = |log: String| {
        log.lines()
            .any(|l| l.contains("rid:") && l.contains("authentication error"))
    };
    eventually("node 1 refusing node 3's route", || Ok(refused(n1.log()))).await?;
    eventually("node 3 refusing the others' routes", || {
        Ok(refused(n3.log()))
    })
    .await?;
    eventually("nodes 1 and 2 to route to each other", || {
        Ok(routes(monitors[0])? == ["carewoven-n2"] && routes(monitors[1])? == ["carewoven-n1"])
    })
    .await?;
    ensure!(
        routes(monitors[2])?.is_empty(),
        "node 3 has routes: {:?}",
        routes(monitors[2])?
    );
    ensure!(
        routes(monitors[0])? == ["carewoven-n2"],
        "node 1 routes to {:?}",
        routes(monitors[0])?
    );

    // With the right credentials the same node joins, and the log gets its three replicas.
    drop(n3);
    n3 = start(3, &right)?;
    eventually("node 3 to join", || {
        Ok(routes(monitors[2])? == ["carewoven-n1", "carewoven-n2"])
    })
    .await?;
    let commands = ids.connect("commands", &n1.url()).await?;
    let js = commands.jetstream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = create_replicated_log(&js).await {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "three replicas were not placed: {e:#}\n{}",
            n3.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let info = js.get_stream("CAREWOVEN").await?.info().await?.clone();
    let cluster = info.cluster.clone().context("no cluster info")?;
    ensure!(cluster.replicas.len() + 1 == 3, "{cluster:?}");
    drop((n1, n2, n3));
    Ok(())
}

/// One account block of `deploy/accounts.conf`: its service exports (subject, accounts
/// approved), its service imports (account, subject, local name) and its user's publish
/// allow list.
#[derive(Default)]
struct Account {
    exports: Vec<(String, Vec<String>)>,
    imports: Vec<(String, String, String)>,
    /// Stream exports (subject, importers) and imports (from, subject, local subject).
    stream_exports: Vec<(String, Vec<String>)>,
    stream_imports: Vec<(String, String, String)>,
    allowed: Vec<String>,
}

/// The quoted strings of `line`, in order.
fn quoted(line: &str) -> Vec<String> {
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The value after `key:` up to the next `,` or `}` or `]`, unquoted.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split_once(&format!("{key}:"))?.1.trim_start();
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"'))
}

fn accounts() -> Result<Vec<(String, Account)>> {
    let text = std::fs::read_to_string(repo_root().join("deploy/accounts.conf"))?;
    let mut out: Vec<(String, Account)> = Vec::new();
    let mut in_allow = false;
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or_default();
        if line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_suffix(" {").filter(|_| !raw.starts_with(' ')) {
            out.push((name.to_owned(), Account::default()));
            continue;
        }
        let Some((_, account)) = out.last_mut() else {
            continue;
        };
        if line.trim() == "allow: [" {
            in_allow = true;
        } else if in_allow {
            if line.trim() == "]" {
                in_allow = false;
            } else {
                account.allowed.extend(quoted(line));
            }
        } else if line.contains("{ service: {") {
            let from = field(line, "account").context("import account")?.to_owned();
            let subject = field(line, "subject").context("import subject")?.to_owned();
            let local = field(line, "to").map_or(subject.clone(), str::to_owned);
            account.imports.push((from, subject, local));
        } else if line.contains("{ stream: {") {
            let from = field(line, "account").context("import account")?.to_owned();
            let subject = field(line, "subject").context("import subject")?.to_owned();
            let local = field(line, "to").map_or(subject.clone(), str::to_owned);
            account.stream_imports.push((from, subject, local));
        } else if line.trim_start().starts_with("{ stream: \"") {
            let subject = quoted(line).first().cloned().context("export subject")?;
            let approved = line
                .split_once("accounts: [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(list, _)| list.split(',').map(|a| a.trim().to_owned()).collect())
                .unwrap_or_default();
            account.stream_exports.push((subject, approved));
        } else if line.trim_start().starts_with("{ service: \"") && line.contains("accounts: [") {
            let subject = quoted(line).first().cloned().context("export subject")?;
            let approved = line
                .split_once("accounts: [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(list, _)| list.split(',').map(|a| a.trim().to_owned()).collect())
                .unwrap_or_default();
            account.exports.push((subject, approved));
        }
    }
    Ok(out)
}

#[test]
fn each_identity_may_publish_exactly_what_its_account_imports() -> Result<()> {
    let accounts = accounts()?;
    let find = |name: &str| accounts.iter().find(|(n, _)| n == name).map(|(_, a)| a);
    let mut identities = 0;
    for (name, account) in &accounts {
        for (from, subject, _) in &account.imports {
            let exporter = find(from).with_context(|| format!("{name} imports from {from}"))?;
            let approved = exporter
                .exports
                .iter()
                .find(|(s, _)| s == subject)
                .map(|(_, a)| a);
            if from != "CW_FEEDS" || !subject.starts_with("$JS.ACK.") {
                ensure!(
                    approved.is_some_and(|a| a.contains(name)),
                    "{from} does not export {subject} to {name}"
                );
            }
        }
        for (subject, approved) in &account.exports {
            for importer in approved {
                let imports = find(importer)
                    .with_context(|| format!("{name} exports {subject} to {importer}"))?;
                ensure!(
                    imports
                        .imports
                        .iter()
                        .any(|(f, s, _)| f == name && s == subject),
                    "{name} exports {subject} to {importer}, which does not import it"
                );
            }
        }
        // Streams across accounts (the backup identity's snapshots and restores): each
        // import approved by its exporter and each export imported, and nothing imported
        // into a stream's subjects (where it would be stored).
        for (from, subject, local) in &account.stream_imports {
            let exporter = find(from).with_context(|| format!("{name} imports from {from}"))?;
            ensure!(
                exporter
                    .stream_exports
                    .iter()
                    .any(|(s, a)| s == subject && a.contains(name)),
                "{from} does not export the stream {subject} to {name}"
            );
            for stored in ["cw.evt.", "cw.feed.", "cw.audit."] {
                ensure!(
                    !local.starts_with(stored) && !subject.starts_with(stored),
                    "{name} imports {subject} as {local}, a stream's subjects"
                );
            }
        }
        for (subject, approved) in &account.stream_exports {
            for importer in approved {
                let imports = find(importer)
                    .with_context(|| format!("{name} exports {subject} to {importer}"))?;
                ensure!(
                    imports
                        .stream_imports
                        .iter()
                        .any(|(f, s, _)| f == name && s == subject),
                    "{name} exports the stream {subject} to {importer}, which does not import it"
                );
            }
        }
        if account.allowed.is_empty() {
            continue;
        }
        identities += 1;
        // A user publishes to its imports and to the streams its own account exports to
        // named accounts (the gateway's token-bound export to partners carries what it
        // publishes through its import of cw.feed.>).
        let mut imported: Vec<&str> = account
            .imports
            .iter()
            .map(|(_, _, l)| l.as_str())
            .chain(
                account
                    .stream_exports
                    .iter()
                    .filter(|(_, approved)| !approved.is_empty())
                    .map(|(s, _)| s.as_str()),
            )
            .collect();
        let mut allowed: Vec<&str> = account.allowed.iter().map(String::as_str).collect();
        imported.sort_unstable();
        allowed.sort_unstable();
        ensure!(
            imported == allowed,
            "{name}: the user's publish permissions are not its imports:\n{allowed:#?}\n{imported:#?}"
        );
        for (_, subject, _) in &account.imports {
            for removal in ["STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE"] {
                ensure!(!subject.contains(removal), "{name} imports {subject}");
            }
        }
    }
    ensure!(identities == 6, "six identities, found {identities}");
    Ok(())
}
