//! carectl against the real command service and a real nats-server.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use carewoven_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

fn carectl(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carectl"))
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loads_and_can_be_run_again_and_errors_name_the_field() {
    let nats = NatsServer::start().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let service = tokio::spawn(carewoven_commands::run(
        listener,
        carewoven_commands::Config::for_nats(nats.url()),
        stop.clone().cancelled_owned(),
    ));

    let s = server.clone();
    let (ready, first, second, bad) = tokio::task::spawn_blocking(move || {
        let ready = carectl(&s, &["wait-ready", "--timeout-secs", "30"]);
        let first = carectl(&s, &["--json", "demo"]);
        let second = carectl(&s, &["--json", "demo"]);
        let bad = carectl(
            &s,
            &[
                "--json",
                "register-person",
                "--nhs-number",
                "9990001234",
                "--given-name",
                "Ada",
                "--family-name",
                "Example",
                "--date-of-birth",
                "1941-03-02",
            ],
        );
        (ready, first, second, bad)
    })
    .await
    .unwrap();

    assert!(ready.status.success(), "{}", text(&ready));
    assert!(first.status.success(), "{}", text(&first));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["duplicates"], 0, "{first}");
    let steps = first["steps"].as_array().unwrap().len();
    assert!(steps >= 20, "{first}");
    assert!(second.status.success(), "{}", text(&second));
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        second["duplicates"].as_u64().unwrap() as usize,
        steps,
        "a re-run only repeats: {second}"
    );
    assert_eq!(first["ids"], second["ids"]);

    // 9990001234 has the wrong check digit (9990001235 is valid).
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let err: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert!(err.to_string().contains("profile.nhs_number"), "{err}");
    assert!(
        err.to_string().contains("INVALID_ARGUMENT") || err.to_string().contains("InvalidArgument"),
        "{err}"
    );

    stop.cancel();
    service.await.unwrap().unwrap();
}
