//! What operators rely on, end to end (real nats-server, the services over gRPC on
//! loopback): health that tells the truth (NOT_SERVING while NATS is unreachable or a
//! follower has stopped, SERVING again once it recovers) and gRPC reflection, both
//! `grpc.reflection.v1` and `v1alpha`, listing only each port's own services — checked with
//! a stock Python `grpcio-reflection` client, which lists and calls every service.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use carewoven_proto::v1;
use carewoven_testkit::*;
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use uuid::Uuid;

/// Longest any health change may take (NATS reconnects with backoff, followers too).
const WAIT: Duration = Duration::from_secs(60);

const COMMANDS: &str = "carewoven.v1.CommandService";
const QUERIES: &str = "carewoven.v1.QueryService";
const ADMIN: &str = "carewoven.v1.ViewsAdmin";
const FEEDS: &str = "carewoven.v1.FeedService";
const AUDIT: &str = "carewoven.v1.AuditService";
const HISTORY: &str = "carewoven.v1.HistoryService";

/// Payloads no Carewoven build can decode.
const GARBAGE: &[u8] = b"\xff\xff not protobuf";

/// Watch `name`'s health on `channel` until it is `want`, within [`WAIT`] (the health
/// `Watch` stream says each change: no polling).
async fn health_becomes(channel: &Channel, name: &str, want: ServingStatus) {
    let watch = async {
        let mut updates = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: name.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(status) = updates.message().await.unwrap() {
            if status.status == want as i32 {
                return;
            }
        }
        panic!("the health stream of {name:?} ended before it was {want:?}");
    };
    tokio::time::timeout(WAIT, watch)
        .await
        .unwrap_or_else(|_| panic!("{name:?} did not become {want:?} within {WAIT:?}"));
}

/// `name`'s health now.
async fn health(channel: &Channel, name: &str) -> ServingStatus {
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_nats_is_down_and_serving_again_once_it_is_back() {
    let mut s = Services::start().await.unwrap();
    let ports = [
        (s.stack.service.channel(), vec!["", COMMANDS]),
        (s.views.channel(), vec!["", QUERIES, ADMIN]),
        (s.gateway.channel(), vec!["", FEEDS, AUDIT]),
    ];
    for (channel, names) in &ports {
        for name in names {
            health_becomes(channel, name, ServingStatus::Serving).await;
        }
    }

    // NATS goes away: every service says so, every API of it.
    s.stack.nats.kill();
    for (channel, names) in &ports {
        for name in names {
            health_becomes(channel, name, ServingStatus::NotServing).await;
        }
    }

    // The same server comes back on the same port and store: every service serves again,
    // once it is connected and its followers read the log.
    s.stack.nats.restart().unwrap();
    for (channel, names) in &ports {
        for name in names {
            health_becomes(channel, name, ServingStatus::Serving).await;
        }
    }
    // And it does serve: a command is decided and read back.
    let mut c = s.stack.client.clone();
    let person = register(&mut c, 901).await.unwrap();
    admit(&mut c, &person).await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_takes_out_of_service_what_depends_on_it() {
    let s = Services::start().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(s.stack.nats.url()).await.unwrap());
    let (commands, views, gateway) = (
        s.stack.service.channel(),
        s.views.channel(),
        s.gateway.channel(),
    );
    for (channel, name) in [
        (&commands, ""),
        (&views, QUERIES),
        (&views, ADMIN),
        (&gateway, FEEDS),
    ] {
        health_becomes(channel, name, ServingStatus::Serving).await;
    }

    // An event about a person that cannot be decoded stops the views projector before it
    // (the access indexes close only that person's record): the views' queries are out of
    // service, the admin API (which rebuilds past it) is not, nor are the other services.
    let person = Uuid::now_v7();
    js.publish(
        format!("cw.evt.{person}.person.{person}.person_registered"),
        bytes::Bytes::from_static(GARBAGE),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    health_becomes(&views, QUERIES, ServingStatus::NotServing).await;
    health_becomes(&views, "", ServingStatus::NotServing).await;
    assert_eq!(health(&views, ADMIN).await, ServingStatus::Serving);
    assert_eq!(health(&commands, "").await, ServingStatus::Serving);
    assert_eq!(health(&gateway, FEEDS).await, ServingStatus::Serving);

    // An undecodable registry event stops every access index (it may have ended anyone's
    // agreement) and the gateway's evaluator: nothing is serving.
    let nil = Uuid::nil();
    let organisation = Uuid::now_v7();
    js.publish(
        format!("cw.evt.{nil}.organisation.{organisation}.organisation_registered"),
        bytes::Bytes::from_static(GARBAGE),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    for (channel, name) in [
        (&commands, ""),
        (&commands, COMMANDS),
        (&views, ADMIN),
        (&gateway, FEEDS),
        (&gateway, AUDIT),
    ] {
        health_becomes(channel, name, ServingStatus::NotServing).await;
    }
    s.stop().await.unwrap();
}

/// The pinned Python tools (`scripts/tools`: a virtualenv with grpcio and
/// grpcio-reflection): made if missing. Fails, never skips, when they cannot be made.
fn python() -> std::path::PathBuf {
    let root = repo_root();
    let made = std::process::Command::new(root.join("scripts/tools"))
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("running scripts/tools to make the Python virtualenv: {e}"));
    assert!(
        made.status.success(),
        "scripts/tools could not make the Python virtualenv with the pinned grpcio and grpcio-reflection \
         (it needs python3 with venv, and PyPI): {}{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    let python = root.join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing after scripts/tools",
        python.display()
    );
    python
}

/// Run `scripts/reflect.py` (the stock `grpcio-reflection` client) on `spec`; its report.
async fn reflect(spec: serde_json::Value) -> serde_json::Value {
    let python = python();
    let mut child = tokio::process::Command::new(python)
        .arg(repo_root().join("scripts/reflect.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(spec.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the reflection client finished")
        .unwrap();
    assert!(
        out.status.success(),
        "the reflection client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the reflection client's report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The services `grpc.reflection.v1` lists at `addr` (tonic's v1 client).
async fn list_v1(addr: SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a list: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

fn listed(own: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = own
        .iter()
        .copied()
        .chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_reflection_client_lists_and_calls_each_ports_own_services() {
    let s = Services::start().await.unwrap();
    let mut c = s.stack.client.clone();
    let person = register(&mut c, 902).await.unwrap();
    let admitted = c
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            site: "HOSP-A".into(),
            ward: "Ward 7".into(),
            admitted_at: ts_hours_ago(2),
        }))
        .await
        .unwrap()
        .into_inner();
    let mut progress = s.progress.clone();
    tokio::time::timeout(
        WAIT,
        progress.wait_for(|p| p.delivered_through >= admitted.log_position),
    )
    .await
    .unwrap()
    .unwrap();
    let nats = async_nats::connect(s.stack.nats.url()).await.unwrap();
    let analyst = Running::start(HISTORY, move |listener, stop| async move {
        carewoven_analyst::service::serve(
            listener,
            async_nats::jetstream::new(nats),
            "CAREWOVEN".into(),
            &carewoven_analyst::service::AuthConfig::for_tests(),
            stop,
        )
        .await
    })
    .await
    .unwrap();

    let hospital = token("HOSP-A");
    let ports = [
        (s.stack.service.addr, vec![COMMANDS]),
        (s.views.addr, vec![ADMIN, QUERIES]),
        (s.gateway.addr, vec![AUDIT, FEEDS]),
        (analyst.addr, vec![HISTORY]),
    ];
    // grpc.reflection.v1: each port lists its own services only.
    for (addr, own) in &ports {
        assert_eq!(list_v1(*addr).await, listed(own), "v1 at {addr}");
    }

    // grpc.reflection.v1alpha with Python's stock client: the same lists, and one RPC of
    // each service called through the descriptors it fetched (dynamic messages from JSON).
    let nhs = test_nhs_number(903);
    let spec = serde_json::json!({ "ports": [
        { "addr": s.stack.service.addr.to_string(), "calls": [
            { "method": "carewoven.v1.CommandService/RegisterPerson", "token": hospital,
              "request": { "context": { "command_id": Uuid::now_v7().to_string(),
                                        "organisation": "HOSP-A", "user": "tester" },
                           "profile": { "nhs_number": nhs, "given_name": "Ada",
                                        "family_name": "Example",
                                        "date_of_birth": "1941-03-02" } } },
            // Bad input through reflection is refused naming the field, as from any client.
            { "method": "carewoven.v1.CommandService/RegisterPerson", "token": hospital,
              "request": { "context": { "command_id": Uuid::now_v7().to_string(),
                                        "organisation": "HOSP-A", "user": "tester" },
                           "profile": { "nhs_number": "123", "given_name": "Ada",
                                        "family_name": "Example",
                                        "date_of_birth": "1941-03-02" } } },
            { "method": "grpc.health.v1.Health/Check", "request": {} },
        ]},
        { "addr": s.views.addr.to_string(), "calls": [
            { "method": "carewoven.v1.QueryService/GetCareRecord", "token": hospital,
              "request": { "person_id": person, "min_log_position": admitted.log_position } },
            { "method": "carewoven.v1.ViewsAdmin/Status", "token": governance_token(),
              "request": {} },
        ]},
        { "addr": s.gateway.addr.to_string(), "calls": [
            { "method": "carewoven.v1.FeedService/Subscribe", "token": hospital, "request": {} },
            { "method": "carewoven.v1.AuditService/ListRecordAccess", "token": hospital,
              "request": { "person_id": person } },
        ]},
        { "addr": analyst.addr.to_string(), "calls": [
            { "method": "carewoven.v1.HistoryService/Replay",
              "token": token_with_roles("ANALYST-1", &[carewoven_governance::Role::Analyst]),
              "request": {} },
        ]},
    ]});
    let report = reflect(spec).await;
    let report = report.as_array().unwrap();
    assert_eq!(report.len(), ports.len(), "{report:?}");
    for ((addr, own), port) in ports.iter().zip(report) {
        let services: Vec<String> = port["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(services, listed(own), "v1alpha at {addr}: {port}");
    }
    let calls = |i: usize| report[i]["calls"].as_array().unwrap().clone();
    let commands = calls(0);
    assert_eq!(commands[0]["code"], "OK", "{commands:?}");
    assert_eq!(commands[0]["response"]["aggregate_kind"], "person");
    assert_eq!(commands[1]["code"], "INVALID_ARGUMENT", "{commands:?}");
    assert!(
        commands[1]["message"]
            .as_str()
            .unwrap()
            .contains("profile.nhs_number"),
        "{commands:?}"
    );
    assert_eq!(commands[2]["response"]["status"], "SERVING", "{commands:?}");
    let views = calls(1);
    assert_eq!(views[0]["code"], "OK", "{views:?}");
    assert_eq!(views[0]["response"]["person_id"], person, "{views:?}");
    assert_eq!(views[1]["code"], "OK", "{views:?}");
    let gateway = calls(2);
    assert_eq!(gateway[0]["code"], "OK", "{gateway:?}");
    assert_eq!(gateway[0]["response"]["number"], "1", "{gateway:?}");
    assert_eq!(gateway[1]["code"], "OK", "{gateway:?}");
    let history = calls(3);
    assert_eq!(history[0]["code"], "OK", "{history:?}");
    assert!(
        history[0]["response"]["log_position"].is_string(),
        "{history:?}"
    );

    analyst.stop().await.unwrap();
    s.stop().await.unwrap();
}
