//! carectl against the real command service and a real nats-server, authenticated with a
//! development issuer made by `carectl keys generate`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use carewoven_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

mod common;

use common::{carectl, text};

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// A development issuer made by carectl itself, and the trust file the service is given.
fn issuer(dir: &Path) -> (PathBuf, carewoven_access::token::TrustFile) {
    let issuer_dir = dir.join("issuer");
    let made = carectl(
        "http://127.0.0.1:1",
        &["keys", "generate", "--out", issuer_dir.to_str().unwrap()],
    );
    assert!(made.status.success(), "{}", text(&made));
    let trust = serde_json::from_str(
        &std::fs::read_to_string(issuer_dir.join("trusted-keys.json")).unwrap(),
    )
    .unwrap();
    (issuer_dir, trust)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loads_and_can_be_run_again_and_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (issuer_dir, trust) = issuer(dir.path());
    let again = carectl(
        "http://127.0.0.1:1",
        &["keys", "generate", "--out", issuer_dir.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );

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
    let outputs = tokio::task::spawn_blocking(move || {
        let with = |args: &[&str]| {
            let mut all = vec!["--issuer-dir", issuer.as_str()];
            all.extend_from_slice(args);
            carectl(&s, &all)
        };
        let ready = carectl(&s, &["wait-ready", "--timeout-secs", "30"]);
        let first = with(&["--json", "demo"]);
        let second = with(&["--json", "demo"]);
        let bad = with(&[
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
        ]);
        let anonymous = carectl(
            &s,
            &[
                "--json",
                "register-person",
                "--nhs-number",
                "9990001235",
                "--given-name",
                "Ada",
                "--family-name",
                "Example",
                "--date-of-birth",
                "1941-03-02",
            ],
        );
        let demo_without_issuer = carectl(&s, &["demo"]);
        (ready, first, second, bad, anonymous, demo_without_issuer)
    })
    .await
    .unwrap();
    let (ready, first, second, bad, anonymous, demo_without_issuer) = outputs;

    assert!(ready.status.success(), "{}", text(&ready));
    assert!(first.status.success(), "{}", text(&first));
    let first = json(&first);
    assert_eq!(first["duplicates"], 0, "{first}");
    assert_eq!(first["registry"]["organisations"], 5, "{first}");
    assert_eq!(first["registry"]["appended"], 10, "{first}");
    let steps = first["steps"].as_array().unwrap().len();
    assert!(steps >= 20, "{first}");
    assert!(second.status.success(), "{}", text(&second));
    let second = json(&second);
    assert_eq!(
        second["duplicates"].as_u64().unwrap() as usize,
        steps,
        "a re-run only repeats: {second}"
    );
    assert_eq!(second["registry"]["appended"], 0, "{second}");
    assert_eq!(first["ids"], second["ids"]);

    // 9990001234 has the wrong check digit (9990001235 is valid).
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let err = json(&bad);
    assert!(err.to_string().contains("profile.nhs_number"), "{err}");
    assert!(err.to_string().contains("INVALID_ARGUMENT"), "{err}");

    // No credentials: the service refuses to say anything more.
    assert_eq!(anonymous.status.code(), Some(2), "{}", text(&anonymous));
    assert!(json(&anonymous).to_string().contains("UNAUTHENTICATED"));
    assert_eq!(demo_without_issuer.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&demo_without_issuer.stderr).contains("--issuer-dir"),
        "{}",
        text(&demo_without_issuer)
    );

    // Acting as an organisation without a role in the discharge episode is refused; a token
    // without the governance role cannot change the registry; with --issuer-dir registry
    // commands carry it.
    let person = first["ids"]["person_id"].as_str().unwrap().to_owned();
    let episode = first["ids"]["discharge_episode_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = server.clone();
    let issuer = issuer_dir.to_str().unwrap().to_owned();
    let (gp_close, gp_token, registry_as_gp, registered, added) =
        tokio::task::spawn_blocking(move || {
            let gp_close = carectl(
                &s,
                &[
                    "--issuer-dir",
                    &issuer,
                    "--org",
                    "DEMO-GP",
                    "--json",
                    "discharge",
                    "close",
                    "--person-id",
                    &person,
                    "--episode-id",
                    &episode,
                ],
            );
            let gp_token = carectl(&s, &["--issuer-dir", &issuer, "--org", "DEMO-GP", "token"]);
            let token = String::from_utf8_lossy(&gp_token.stdout).trim().to_owned();
            let registry_as_gp = carectl(
                &s,
                &[
                    "--token",
                    &token,
                    "--json",
                    "org",
                    "add-service",
                    "--code",
                    "DEMO-GP",
                    "--service",
                    "DEMO-GP-BRANCH",
                ],
            );
            let registered = carectl(
                &s,
                &[
                    "--issuer-dir",
                    &issuer,
                    "--json",
                    "org",
                    "register",
                    "--code",
                    "NEW-VOL",
                    "--name",
                    "A voluntary group",
                    "--type",
                    "voluntary",
                    "--service",
                    "NEW-VOL-BEFRIEND",
                ],
            );
            let added = carectl(
                &s,
                &[
                    "--issuer-dir",
                    &issuer,
                    "--json",
                    "org",
                    "agreement",
                    "record",
                    "--code",
                    "NEW-VOL",
                    "--reference",
                    "NEW-VOL-DSA-1",
                    "--purpose",
                    "direct-care",
                    "--data-class",
                    "care-plan",
                    "--valid-from",
                    "today",
                    "--expires-on",
                    "today+365",
                ],
            );
            (gp_close, gp_token, registry_as_gp, registered, added)
        })
        .await
        .unwrap();
    assert_eq!(gp_close.status.code(), Some(2), "{}", text(&gp_close));
    let err = json(&gp_close);
    assert_eq!(err["error"]["code"], "PERMISSION_DENIED", "{err}");
    assert_eq!(
        err["error"]["details"]["error_info"]["reason"], "NO_ROLE_IN_DISCHARGE",
        "{err}"
    );
    assert!(gp_token.status.success(), "{}", text(&gp_token));
    assert_eq!(
        registry_as_gp.status.code(),
        Some(2),
        "{}",
        text(&registry_as_gp)
    );
    assert_eq!(
        json(&registry_as_gp)["error"]["details"]["error_info"]["reason"],
        "GOVERNANCE_ROLE_REQUIRED"
    );
    assert!(registered.status.success(), "{}", text(&registered));
    assert_eq!(json(&registered)["aggregate_kind"], "organisation");
    assert!(added.status.success(), "{}", text(&added));

    stop.cancel();
    service.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_issuer_is_trusted_beside_the_organisations_one_and_mints_citizen_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (issuer_dir, _) = issuer(dir.path());
    let citizens_dir = dir.path().join("citizens");
    let trust_file = issuer_dir.join("trusted-keys.json");
    let offline = "http://127.0.0.1:1";
    let made = carectl(
        offline,
        &[
            "keys",
            "generate",
            "--citizens",
            "--out",
            citizens_dir.to_str().unwrap(),
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    // Merging is repeatable; the organisations issuer stays the directory's own key.
    for _ in 0..2 {
        let merged = carectl(
            offline,
            &[
                "--json",
                "keys",
                "trust",
                "--into",
                trust_file.to_str().unwrap(),
                citizens_dir.join("trusted-keys.json").to_str().unwrap(),
            ],
        );
        assert!(merged.status.success(), "{}", text(&merged));
        assert_eq!(
            json(&merged)["kids"],
            serde_json::json!(["carewoven-dev", "carewoven-dev-citizens"])
        );
    }
    // Another key under a key id already trusted is refused.
    let clash_dir = dir.path().join("clash");
    let clash = carectl(
        offline,
        &[
            "keys",
            "generate",
            "--kid",
            "carewoven-dev",
            "--out",
            clash_dir.to_str().unwrap(),
        ],
    );
    assert!(clash.status.success(), "{}", text(&clash));
    let refused = carectl(
        offline,
        &[
            "keys",
            "trust",
            "--into",
            trust_file.to_str().unwrap(),
            clash_dir.join("trusted-keys.json").to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let trust: carewoven_access::token::TrustFile =
        serde_json::from_str(&std::fs::read_to_string(&trust_file).unwrap()).unwrap();
    assert_eq!(trust.keys.len(), 2);
    assert_eq!(
        trust.keys[1].subjects,
        carewoven_access::citizen::Subjects::Citizens
    );

    let nats = NatsServer::start().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let service = tokio::spawn(carewoven_commands::run(
        listener,
        {
            let mut config = carewoven_commands::Config::for_nats(nats.url());
            config.service.trust.trust = None;
            config.service.trust.trusted_keys = Some(trust_file.clone());
            config
        },
        stop.clone().cancelled_owned(),
    ));
    let s = server.clone();
    let (orgs, citizens) = (
        issuer_dir.to_str().unwrap().to_owned(),
        citizens_dir.to_str().unwrap().to_owned(),
    );
    let outputs = tokio::task::spawn_blocking(move || {
        let ready = carectl(&s, &["wait-ready", "--timeout-secs", "30"]);
        let demo = carectl(
            &s,
            &[
                "--issuer-dir",
                &orgs,
                "--json",
                "demo",
                "--nhs-number",
                "9990001235",
            ],
        );
        let mint = |level: &str| {
            let out = carectl(
                &s,
                &[
                    "--issuer-dir",
                    &citizens,
                    "--json",
                    "token",
                    "--citizen",
                    "--nhs-number",
                    "9990001235",
                    "--identity-level",
                    level,
                    "--subject",
                    "ada-at-the-provider",
                ],
            );
            assert!(out.status.success(), "{}", text(&out));
            json(&out)["token"].as_str().unwrap().to_owned()
        };
        let (p9, p5) = (mint("P9"), mint("P5"));
        // The organisations issuer does not mint citizen tokens, nor the other way round.
        let wrong_kind = carectl(
            &s,
            &[
                "--issuer-dir",
                &orgs,
                "token",
                "--citizen",
                "--nhs-number",
                "9990001235",
            ],
        );
        let org_from_citizens = carectl(&s, &["--issuer-dir", &citizens, "--org", "X", "token"]);
        (ready, demo, p9, p5, wrong_kind, org_from_citizens)
    })
    .await
    .unwrap();
    let (ready, demo, p9, p5, wrong_kind, org_from_citizens) = outputs;
    assert!(ready.status.success(), "{}", text(&ready));
    assert!(demo.status.success(), "{}", text(&demo));
    assert_eq!(wrong_kind.status.code(), Some(2), "{}", text(&wrong_kind));
    assert_eq!(
        org_from_citizens.status.code(),
        Some(2),
        "{}",
        text(&org_from_citizens)
    );
    let person = json(&demo)["ids"]["person_id"].as_str().unwrap().to_owned();

    let s = server.clone();
    let (feedback, too_low, granted) = tokio::task::spawn_blocking(move || {
        // A citizen token acts as CITIZEN with no user of carectl's own.
        let feedback = carectl(
            &s,
            &[
                "--token",
                &p5,
                "--json",
                "feedback",
                "--person-id",
                &person,
                "--source",
                "person",
                "--text",
                "The handover was explained well",
            ],
        );
        let too_low = carectl(
            &s,
            &[
                "--token",
                &p5,
                "--json",
                "grant-proxy",
                "--person-id",
                &person,
                "--carer-nhs-number",
                "9990000026",
                "--carer-name",
                "Bea Example",
                "--scope",
                "read-record",
            ],
        );
        let granted = carectl(
            &s,
            &[
                "--token",
                &p9,
                "--json",
                "grant-proxy",
                "--person-id",
                &person,
                "--carer-nhs-number",
                "9990000026",
                "--carer-name",
                "Bea Example",
                "--scope",
                "read-record",
                "--scope",
                "feedback",
            ],
        );
        (feedback, too_low, granted)
    })
    .await
    .unwrap();
    assert!(feedback.status.success(), "{}", text(&feedback));
    assert_eq!(json(&feedback)["aggregate_kind"], "feedback");
    assert_eq!(too_low.status.code(), Some(2), "{}", text(&too_low));
    assert_eq!(
        json(&too_low)["error"]["details"]["error_info"]["reason"],
        "IDENTITY_LEVEL_TOO_LOW"
    );
    assert!(granted.status.success(), "{}", text(&granted));
    assert_eq!(
        json(&granted)["event_types"],
        serde_json::json!(["proxy_granted"])
    );

    stop.cancel();
    service.await.unwrap().unwrap();
}
