//! `carectl seed` against the real command service and a real nats-server.

#![allow(clippy::unwrap_used)]

use carewoven_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

mod common;

use common::{carectl, text};

fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{} missing", path.join(".")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_loads_a_history_and_a_rerun_only_repeats_it() {
    // A development issuer, as `./dev up` makes one; the service trusts it.
    let dir = tempfile::tempdir().unwrap();
    let issuer_dir = dir.path().join("issuer");
    let made = carectl(
        "http://127.0.0.1:1",
        &["keys", "generate", "--out", issuer_dir.to_str().unwrap()],
    );
    assert!(made.status.success(), "{}", text(&made));
    let trust: carewoven_access::token::TrustFile = serde_json::from_str(
        &std::fs::read_to_string(issuer_dir.join("trusted-keys.json")).unwrap(),
    )
    .unwrap();

    let nats = NatsServer::start().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let service = tokio::spawn(carewoven_commands::run(
        listener,
        {
            let mut config = carewoven_commands::Config::for_nats(nats.url());
            config.service.trust.trust = Some(trust);
            config
        },
        stop.clone().cancelled_owned(),
    ));

    let s = server.clone();
    let issuer = issuer_dir.to_str().unwrap().to_owned();
    let (ready, first, second) = tokio::task::spawn_blocking(move || {
        let ready = carectl(&s, &["wait-ready", "--timeout-secs", "30"]);
        let args = [
            "--issuer-dir",
            issuer.as_str(),
            "--json",
            "--timeout-secs",
            "30",
            "seed",
            "--people",
            "40",
            "--seed",
            "7",
        ];
        let first = carectl(&s, &args);
        let second = carectl(&s, &args);
        (ready, first, second)
    })
    .await
    .unwrap();

    assert!(ready.status.success(), "{}", text(&ready));
    assert!(first.status.success(), "{}", text(&first));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let sent = count(&first, &["commands_sent"]);
    assert!(sent >= 40 * 10, "{first}");
    assert_eq!(count(&first, &["duplicates"]), 0, "{first}");
    assert_eq!(count(&first, &["appended"]), sent, "{first}");
    assert_eq!(count(&first, &["history", "commands"]), sent, "{first}");
    assert_eq!(count(&first, &["history", "unplaced"]), 0, "{first}");
    assert_eq!(count(&first, &["registry", "organisations"]), 21, "{first}");
    assert_eq!(count(&first, &["registry", "appended"]), 42, "{first}");

    let p = |k: &str| count(&first, &["history", "pathways", k]);
    let (p0, p1, p2, p3) = (p("P0"), p("P1"), p("P2"), p("P3"));
    assert!(p0 + p1 + p2 + p3 > 0, "{first}");
    assert!(p0 > 0 && p1 > 0, "{first}");
    assert!(p0 + p1 > 3 * (p2 + p3), "P0 and P1 dominate: {first}");
    assert_eq!(
        p0 + p1 + p2 + p3,
        count(&first, &["history", "discharges"]),
        "{first}"
    );
    assert!(count(&first, &["history", "referrals"]) > 0, "{first}");
    assert!(
        count(&first, &["history", "care_act_assessments"]) > 0,
        "{first}"
    );
    assert!(count(&first, &["history", "late_recorded"]) > 0, "{first}");

    assert!(second.status.success(), "{}", text(&second));
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(count(&second, &["commands_sent"]), sent, "{second}");
    assert_eq!(
        count(&second, &["duplicates"]),
        sent,
        "a re-run only repeats: {second}"
    );
    assert_eq!(count(&second, &["appended"]), 0, "{second}");
    assert_eq!(count(&second, &["registry", "appended"]), 0, "{second}");
    assert_eq!(first["history"], second["history"]);

    stop.cancel();
    service.await.unwrap().unwrap();
}
