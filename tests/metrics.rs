//! Every service's `/metrics` (`--metrics-listen`) answers over HTTP, in Prometheus's text
//! format, with the metrics operators are told about (README, ARCHITECTURE.md) after a
//! command, a read, a refusal and a feed subscription; and no label says anything about a
//! person. Alone in its test binary: the recorder is one per process.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use carewoven_proto::v1::{
    self, feed_service_client::FeedServiceClient, query_service_client::QueryServiceClient,
};
use carewoven_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

fn metrics_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

/// `GET /metrics` over plain HTTP: the status line and the body.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample `name{labels...}` (labels in any order, others allowed).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let has = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|l| l == format!("{k}=\"{v}\"")));
            if has { value.parse().ok() } else { None }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_its_metrics_over_http() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let [commands_at, views_at, gateway_at, analyst_at] = [
        metrics_addr(),
        metrics_addr(),
        metrics_addr(),
        metrics_addr(),
    ];

    let mut config = carewoven_commands::Config::for_nats(nats.url());
    config.service.metrics.metrics_listen = Some(commands_at);
    let commands = start_commands(config).await.unwrap();
    let mut c = commands.client();
    register_standard_orgs(&mut c).await.unwrap();
    let mut config = carewoven_views::Config::new(nats.url(), dir.path().join("views.redb"));
    config.service.metrics.metrics_listen = Some(views_at);
    let views = start_views(config).await.unwrap();
    let mut config = carewoven_gateway::Config::for_nats(nats.url());
    config.service.metrics.metrics_listen = Some(gateway_at);
    let (gateway, mut progress) = start_gateway(config).await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let analyst = Running::start("carewoven.v1.HistoryService", move |listener, stop| {
        let metrics = carewoven_service::MetricsConfig {
            metrics_listen: Some(analyst_at),
        };
        async move {
            carewoven_service::metrics::serve_metrics(&metrics, stop.clone()).await?;
            carewoven_analyst::service::serve(
                listener,
                async_nats::jetstream::new(client),
                "CAREWOVEN".into(),
                &carewoven_analyst::service::AuthConfig::for_tests(),
                stop,
            )
            .await
        }
    })
    .await
    .unwrap();

    // A command, a read, a refused read and a feed subscription that stays open.
    let nhs = test_nhs_number(777);
    let mut request = register_request(777);
    if let Some(p) = request.profile.as_mut() {
        p.nhs_number = nhs.clone();
    }
    let person = c
        .register_person(signed(request))
        .await
        .unwrap()
        .into_inner()
        .person_id;
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
    let mut q = QueryServiceClient::new(views.channel());
    q.get_care_record(as_org(
        "HOSP-A",
        v1::GetCareRecordRequest {
            person_id: person.clone(),
            min_log_position: admitted.log_position,
        },
    ))
    .await
    .unwrap();
    let refused = q
        .get_care_record(as_org(
            "ASC-REABLE",
            v1::GetCareRecordRequest {
                person_id: person.clone(),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    tokio::time::timeout(
        WAIT,
        progress.wait_for(|p| p.delivered_through >= admitted.log_position),
    )
    .await
    .unwrap()
    .unwrap();
    let mut feed = FeedServiceClient::new(gateway.channel())
        .subscribe(as_org("HOSP-A", v1::SubscribeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(WAIT, feed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.number, 1);

    // HOSP-A also reads durably from NATS (its pull consumer `HOSP-A` on CW_FEED, as
    // deploy/README.md has operators make it): the gateway samples its backlog.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.get_stream(carewoven_gateway::evaluator::FEED_STREAM)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("HOSP-A".into()),
            filter_subject: "cw.feed.HOSP-A.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, text) = scrape(gateway_at).await;
        let backlog = sample(
            &text,
            "carewoven_feed_consumer_backlog",
            &[("partner", "HOSP-A")],
        );
        if backlog.unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no consumer backlog:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for at in [commands_at, views_at, gateway_at, analyst_at] {
        let (status, text) = scrape(at).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{at}");
        let commands = [
            ("service", "carewoven.v1.CommandService"),
            ("rpc", "RegisterPerson"),
        ];
        let ok = [commands[0], commands[1], ("code", "OK")];
        assert!(
            sample(&text, "carewoven_grpc_requests_total", &ok).unwrap_or(0.0) >= 1.0,
            "commands by RPC and outcome at {at}:\n{text}"
        );
        let read = [
            ("service", "carewoven.v1.QueryService"),
            ("rpc", "GetCareRecord"),
        ];
        let denied = [read[0], read[1], ("code", "PERMISSION_DENIED")];
        assert_eq!(
            sample(&text, "carewoven_grpc_requests_total", &denied),
            Some(1.0),
            "the refused read at {at}:\n{text}"
        );
        for labels in [&commands[..], &read[..]] {
            assert!(
                sample(
                    &text,
                    "carewoven_grpc_request_duration_seconds_count",
                    labels
                )
                .unwrap_or(0.0)
                    >= 1.0,
                "latency histogram {labels:?} at {at}:\n{text}"
            );
            let mut bucket = labels.to_vec();
            bucket.push(("le", "+Inf"));
            assert!(
                sample(
                    &text,
                    "carewoven_grpc_request_duration_seconds_bucket",
                    &bucket
                )
                .is_some(),
                "buckets {labels:?} at {at}:\n{text}"
            );
        }
        for follower in ["access_index", "views_projector", "gateway_evaluator"] {
            for metric in [
                "carewoven_follower_lag_events",
                "carewoven_follower_lag_seconds",
            ] {
                assert!(
                    sample(&text, metric, &[("follower", follower)]).is_some(),
                    "{metric} of the {follower} at {at}:\n{text}"
                );
            }
        }
        assert!(
            sample(&text, "carewoven_audit_write_duration_seconds_count", &[]).unwrap_or(0.0)
                >= 2.0,
            "audit write latency at {at}:\n{text}"
        );
        assert_eq!(
            sample(
                &text,
                "carewoven_feed_subscriptions_open",
                &[("partner", "HOSP-A")]
            ),
            Some(1.0),
            "open subscriptions at {at}:\n{text}"
        );
        assert!(
            sample(
                &text,
                "carewoven_feed_backlog_batches",
                &[("partner", "HOSP-A")]
            )
            .is_some(),
            "feed backlog per partner at {at}:\n{text}"
        );
        assert_eq!(
            sample(
                &text,
                "carewoven_grpc_open_streams",
                &[
                    ("service", "carewoven.v1.FeedService"),
                    ("rpc", "Subscribe")
                ]
            ),
            Some(1.0),
            "open streams at {at}:\n{text}"
        );
        assert_eq!(sample(&text, "carewoven_health_serving", &[]), Some(1.0));
        // Nothing about a person in any label or value.
        for personal in [person.as_str(), nhs.as_str(), "Ada", "Example"] {
            assert!(
                !text.contains(personal),
                "{personal:?} in the metrics at {at}"
            );
        }
    }

    // A closed subscription is no longer counted open.
    drop(feed);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, text) = scrape(gateway_at).await;
        let open = sample(
            &text,
            "carewoven_feed_subscriptions_open",
            &[("partner", "HOSP-A")],
        );
        if open == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Only GET /metrics is served.
    let mut stream = tokio::net::TcpStream::connect(views_at).await.unwrap();
    stream
        .write_all(b"GET /other HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    analyst.stop().await.unwrap();
    gateway.stop().await.unwrap();
    views.stop().await.unwrap();
    commands.stop().await.unwrap();
}
