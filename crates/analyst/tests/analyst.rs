//! carewoven-analyst against a real nats-server and a log written by the real command service.
//!
//! Every command is sent with a token from the fixed test issuer, by an organisation entitled
//! to it; the standard test organisations are registered first, so the log starts with their
//! registry events (which belong to no person).

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use carewoven_governance::Role;
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use carewoven_testkit::NatsServer;
use carewoven_testkit::{
    Running, ctx, register_standard_orgs, signed, start_commands, token, token_with_roles,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Registry events [`register_standard_orgs`] appends: five organisations, each registered
/// with an agreement.
const REGISTRY_EVENTS: u64 = 12;

/// The command service on `nats`, with the standard organisations registered.
async fn start(nats: &NatsServer) -> (Running, CommandServiceClient<Channel>) {
    let service = start_commands(carewoven_commands::Config::for_nats(nats.url()))
        .await
        .unwrap();
    let mut c = service.client();
    register_standard_orgs(&mut c).await.unwrap();
    (service, c)
}

fn analyst(nats: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carewoven-analyst"))
        .arg("--nats-url")
        .arg(nats)
        .args(args)
        .env("CAREWOVEN_PSEUDONYM_KEY", "a-test-pseudonym-key-0001")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{:?}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_export_select_resume_and_leave_out_opted_out_people() {
    let nats = NatsServer::start().unwrap();
    let (service, mut c) = start(&nats).await;
    let mut people = Vec::new();
    for n in 0..3 {
        let person = c
            .register_person(signed(v1::RegisterPersonRequest {
                context: ctx("HOSP-A"),
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
            .into_inner()
            .person_id;
        c.make_referral(signed(v1::MakeReferralRequest {
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
        .unwrap();
        people.push(person);
    }
    // The third person objects to research use: the national data opt-out (an objection
    // belongs to the person: recorded for them by the governance role).
    c.record_consent(carewoven_access::grpc::with_token(
        tonic::Request::new(v1::RecordConsentRequest {
            context: ctx(carewoven_testkit::partners::GOVERNANCE_ORG),
            person_id: people[2].clone(),
            terms: Some(v1::ConsentTerms {
                decision: v1::ConsentDecision::Deny as i32,
                purpose: v1::Purpose::Research as i32,
                partners: vec!["ASC".into()],
                data_classes: vec![],
                valid_from: "2026-01-01".into(),
                valid_until: String::new(),
                capacity_assessed: true,
            }),
        }),
        &carewoven_testkit::partners::governance_token(),
    ))
    .await
    .unwrap();
    let url = nats.url();

    let (all, first, rest, nothing, reversed, unknown, registry) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            (
                analyst(&url, &["replay", "--type", "referral_submitted"]),
                analyst(&url, &["replay", "--to-position", "3"]),
                analyst(&url, &["replay", "--from-position", "4"]),
                analyst(&url, &["replay", "--type", "person_died"]),
                analyst(
                    &url,
                    &["replay", "--from-position", "5", "--to-position", "2"],
                ),
                analyst(&url, &["replay", "--type", "person_teleported"]),
                analyst(&url, &["replay", "--kind", "organisation"]),
            )
        }
    })
    .await
    .unwrap();
    // Registry events belong to no person: replayed like any other, never an opted-out person.
    assert!(registry.status.success(), "{}", text(&registry));
    let registry: Vec<serde_json::Value> = String::from_utf8_lossy(&registry.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(registry.len() as u64, REGISTRY_EVENTS);
    assert!(
        registry
            .iter()
            .all(|l| l["envelope"]["aggregateKind"] == "organisation"),
        "{registry:?}"
    );
    assert!(all.status.success(), "{}", text(&all));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&all.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "the opted-out person is left out: {}",
        text(&all)
    );
    let positions: Vec<u64> = lines
        .iter()
        .map(|l| l["log_position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in log order");
    assert!(
        lines
            .iter()
            .all(|l| l["envelope"]["personId"] != people[2].as_str())
    );
    // Resuming from a position gives the rest, with no gap and no repeat.
    let count = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().count();
    assert!(
        first.status.success() && rest.status.success(),
        "{}{}",
        text(&first),
        text(&rest)
    );
    let everything = tokio::task::spawn_blocking({
        let url = url.clone();
        move || analyst(&url, &["replay"])
    })
    .await
    .unwrap();
    assert_eq!(count(&first) + count(&rest), count(&everything));
    assert!(nothing.status.success(), "an empty result is not an error");
    assert_eq!(count(&nothing), 0);
    assert!(!reversed.status.success());
    assert!(
        String::from_utf8_lossy(&reversed.stderr).contains("reversed or empty"),
        "{}",
        text(&reversed)
    );
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("unknown event type"),
        "{}",
        text(&unknown)
    );

    // Exports: pseudonyms stable across exports, no personal data, no overwrite without
    // --force, and nothing left behind when the path cannot be written.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    let (ea, eb, again, forced, unwritable) = tokio::task::spawn_blocking({
        let (url, a, b) = (url.clone(), a.clone(), b.clone());
        move || {
            let args = |p: &std::path::Path| {
                vec![
                    "export".to_owned(),
                    "--format".into(),
                    "csv".into(),
                    "--output".into(),
                    p.display().to_string(),
                ]
            };
            let run = |v: Vec<String>| {
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                analyst(&url, &refs)
            };
            let mut force = args(&a);
            force.push("--force".into());
            (
                run(args(&a)),
                run(args(&b)),
                run(args(&a)),
                run(force),
                run(args(std::path::Path::new("/proc/nope/out.csv"))),
            )
        }
    })
    .await
    .unwrap();
    assert!(
        ea.status.success() && eb.status.success(),
        "{}{}",
        text(&ea),
        text(&eb)
    );
    let csv_a = std::fs::read_to_string(&a).unwrap();
    assert_eq!(
        csv_a,
        std::fs::read_to_string(&b).unwrap(),
        "stable pseudonyms"
    );
    assert!(
        !csv_a.contains("Example") && !csv_a.contains("Ada"),
        "no names"
    );
    for p in &people {
        assert!(!csv_a.contains(p.as_str()), "no real ids");
    }
    // Header + the registry + 2 people x (registered + referral); the opted-out person is left
    // out. Registry rows name no person.
    assert_eq!(
        csv_a.lines().count() as u64,
        1 + REGISTRY_EVENTS + 4,
        "{csv_a}"
    );
    let registry_rows: Vec<&str> = csv_a
        .lines()
        .filter(|l| l.split(',').nth(2) == Some("organisation"))
        .collect();
    assert_eq!(registry_rows.len() as u64, REGISTRY_EVENTS, "{csv_a}");
    assert!(
        registry_rows
            .iter()
            .all(|l| l.split(',').nth(4) == Some("")),
        "empty person: {csv_a}"
    );
    assert!(
        !again.status.success(),
        "an existing file is refused without --force"
    );
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(!unwritable.status.success());
    // Parquet: read back, with the declared schema and the same rows.
    let pq = dir.path().join("events.parquet");
    let made = tokio::task::spawn_blocking({
        let (url, pq) = (url.clone(), pq.clone());
        move || {
            analyst(
                &url,
                &[
                    "export",
                    "--format",
                    "parquet",
                    "--output",
                    &pq.display().to_string(),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(
            meta.num_rows() as u64,
            REGISTRY_EVENTS + 4,
            "the same rows as the CSV"
        );
        let fields: Vec<String> = meta
            .schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert_eq!(
            fields[..3],
            ["log_position", "event_type", "aggregate_kind"]
        );
        assert_eq!(fields.len(), 13);
        let rows: Vec<_> = reader.get_row_iter(None).unwrap().collect();
        assert_eq!(rows.len() as u64, REGISTRY_EVENTS + 4);
    }

    service.stop().await.unwrap();
}

fn ctx_at(org: &str, occurred: chrono::DateTime<chrono::Utc>) -> Option<v1::CommandContext> {
    let mut c = ctx(org);
    if let Some(c) = c.as_mut() {
        c.occurred_at = Some(prost_types::Timestamp {
            seconds: occurred.timestamp(),
            nanos: 0,
        });
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_answers_differ_by_recorded_and_occurred_time_for_a_late_fact() {
    use chrono::{Duration, Utc};
    use v1::progress_discharge_request::{self as pd, Step};
    let nats = NatsServer::start().unwrap();
    let (service, mut c) = start(&nats).await;
    let now = Utc::now();
    let days_ago = |d: i64| now - Duration::days(d);
    let person = c
        .register_person(signed(v1::RegisterPersonRequest {
            context: ctx_at("HOSP-A", days_ago(6)),
            profile: Some(v1::Profile {
                nhs_number: carewoven_testkit::test_nhs_number(77),
                given_name: "Ada".into(),
                family_name: "Example".into(),
                date_of_birth: "1941-03-02".into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .person_id;
    let admitted_at = days_ago(5);
    let episode = c
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx_at("HOSP-A", admitted_at),
            person_id: person.clone(),
            site: "HOSP-A".into(),
            ward: String::new(),
            admitted_at: Some(prost_types::Timestamp {
                seconds: admitted_at.timestamp(),
                nanos: 0,
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .aggregate_id;
    let step = |s: Step, at| {
        signed(v1::ProgressDischargeRequest {
            context: ctx_at("HOSP-A", at),
            person_id: person.clone(),
            episode_id: episode.clone(),
            step: Some(s),
        })
    };
    c.progress_discharge(step(
        Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
            expected: (carewoven_domain::values::uk_date(now) - chrono::Days::new(1)).to_string(),
        }),
        days_ago(5),
    ))
    .await
    .unwrap();
    c.progress_discharge(step(
        Step::MarkDischargeReady(pd::MarkDischargeReady {
            discharge_ready_date: (carewoven_domain::values::uk_date(now) - chrono::Days::new(3))
                .to_string(),
        }),
        days_ago(3),
    ))
    .await
    .unwrap();
    // Everything so far is recorded by this instant.
    let known = Utc::now();
    // A fact from two days ago, recorded only now.
    c.progress_discharge(step(
        Step::RecordDelayReason(pd::RecordDelayReason {
            reason: v1::DelayReason::AwaitingHomeCare as i32,
            note: String::new(),
        }),
        days_ago(2),
    ))
    .await
    .unwrap();

    let url = nats.url();
    let run = move |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                analyst(&url, &refs)
            })
            .await
            .unwrap()
        }
    };
    let record = |at: chrono::DateTime<Utc>, sense: &str| {
        vec![
            "as-of".to_owned(),
            "--at".into(),
            at.to_rfc3339(),
            "--sense".into(),
            sense.into(),
            "record".into(),
            "--person".into(),
            person.clone(),
        ]
    };
    let delays = |o: &Output| -> usize {
        assert!(o.status.success(), "{}", text(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["dischargeEpisodes"][0]["delayReasons"]
            .as_array()
            .map_or(0, Vec::len)
    };
    // By recorded time: at `known` we did not yet know of the delay.
    assert_eq!(delays(&run(record(known, "recorded")).await), 0);
    // By occurred time: it had happened by then (two days ago), recorded late or not.
    assert_eq!(delays(&run(record(known, "occurred")).await), 1);
    // Four days ago the person was admitted but not yet ready: not on the board.
    let board = run(vec![
        "as-of".into(),
        "--at".into(),
        days_ago(4).to_rfc3339(),
        "--sense".into(),
        "occurred".into(),
        "board".into(),
    ])
    .await;
    assert!(board.status.success(), "{}", text(&board));
    let board: serde_json::Value = serde_json::from_slice(&board.stdout).unwrap();
    assert_eq!(board.as_array().unwrap().len(), 0);
    let board_now = run(vec![
        "as-of".into(),
        "--at".into(),
        Utc::now().to_rfc3339(),
        "--sense".into(),
        "occurred".into(),
        "board".into(),
    ])
    .await;
    let board_now: serde_json::Value = serde_json::from_slice(&board_now.stdout).unwrap();
    assert_eq!(board_now.as_array().unwrap().len(), 1, "{board_now}");
    // By recorded time, four days ago nothing about this person had been recorded.
    let nothing = run(record(days_ago(4), "recorded")).await;
    assert!(!nothing.status.success());

    // A task the hospital completes today, due today (on time), and a care plan whose review
    // falls due today (not overdue): the report reads both kinds of event.
    let today = carewoven_domain::values::uk_date(Utc::now()).to_string();
    let task = c
        .create_task(signed(v1::CreateTaskRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            task: Some(v1::Task {
                description: "Book transport for Ada".into(),
                owner: Some(v1::MemberRef {
                    organisation: "HOSP-A".into(),
                    practitioner: String::new(),
                }),
                due: today.clone(),
                priority: v1::Priority::Routine as i32,
                basis: None,
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .aggregate_id;
    for status in [v1::TaskStatus::Accepted, v1::TaskStatus::Completed] {
        c.change_task_status(signed(v1::ChangeTaskStatusRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            task_id: task.clone(),
            status: status as i32,
            reason: String::new(),
        }))
        .await
        .unwrap();
    }
    // Only the care team may agree a plan.
    carewoven_testkit::stack::add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    c.agree_care_plan(signed(v1::AgreeCarePlanRequest {
        context: ctx("HOSP-A"),
        person_id: person.clone(),
        plan: Some(v1::PlanContent {
            goals: vec!["Home for the garden".into()],
            activities: vec![v1::Activity {
                description: "Arrange a walking frame".into(),
                responsible_organisation: "HOSP-A".into(),
                ..Default::default()
            }],
            review_date: today,
        }),
    }))
    .await
    .unwrap();

    // The service-review report from the same log: JSON and one HTML page with charts.
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (
        dir.path().join("review.json"),
        dir.path().join("review.html"),
    );
    let report_args = |from: chrono::DateTime<Utc>, to: chrono::DateTime<Utc>| {
        vec![
            "report".to_owned(),
            "--from".into(),
            from.to_rfc3339(),
            "--to".into(),
            to.to_rfc3339(),
            "--json".into(),
            json.display().to_string(),
            "--html".into(),
            html.display().to_string(),
        ]
    };
    let made = run(report_args(days_ago(30), Utc::now())).await;
    assert!(made.status.success(), "{}", text(&made));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report.get("long_stays").is_some(), "{report}");
    let tasks = &report["tasks_on_time"];
    assert_eq!(tasks["all"]["completed_on_time"], 1, "{tasks}");
    assert_eq!(tasks["all"]["on_time_percent"], 100.0, "{tasks}");
    assert_eq!(tasks["by_owner"][0]["owner"], "HOSP-A", "{tasks}");
    let reviews = &report["care_plan_reviews"];
    assert_eq!(reviews["people_with_a_plan"], 1, "{reviews}");
    assert_eq!(reviews["overdue"], 0, "{reviews}");
    assert_eq!(reviews["falling_due_in_period"], 1, "{reviews}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg"));
    assert!(page.contains("Tasks completed on time"));
    for absent in ["Ada", "Example", "transport", "garden", "walking frame"] {
        assert!(
            !page.contains(absent),
            "no names or free text in the report: {absent}"
        );
    }
    // With NHS England's tables for this UK month, and each as CSV.
    let month = carewoven_domain::values::uk_date(Utc::now())
        .format("%Y-%m")
        .to_string();
    let csv_dir = dir.path().join("tables");
    let mut args = report_args(days_ago(30), Utc::now());
    args.extend([
        "--month".to_owned(),
        month.clone(),
        "--trend-months".into(),
        "3".into(),
        "--csv-dir".into(),
        csv_dir.display().to_string(),
        "--force".into(),
    ]);
    let made = run(args).await;
    assert!(made.status.success(), "{}", text(&made));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tables = &report["nhs_tables"];
    assert_eq!(tables["month"], month.as_str(), "{report}");
    // The person still in hospital, ready, with the delay reason an older client sent as
    // AWAITING_HOME_CARE: counted under the national reason it is read as.
    let delays = tables["sitrep_delays"]["rows"].as_array().unwrap();
    assert_eq!(delays.len(), 1, "{tables}");
    assert_eq!(delays[0]["reason_code"], "pathway_1_new_care");
    assert_eq!(delays[0]["people"], 1);
    let delays_csv = std::fs::read_to_string(csv_dir.join("sitrep_delays.csv")).unwrap();
    assert!(delays_csv.contains(",pathway_1_new_care,"), "{delays_csv}");
    for name in carewoven_history::report::CSV_FILES {
        assert!(csv_dir.join(name).exists(), "{name}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Discharge Ready Date statistics"));
    // The trend: three months ending with this one; nobody has left hospital, so every
    // month's discharges are empty, not 0; each trend table as CSV.
    let trend = &report["trend"];
    let months = trend["months"].as_array().unwrap();
    assert_eq!(months.len(), 3, "{trend}");
    assert_eq!(months[2]["label"], month.as_str());
    assert_eq!(trend["figures"][0]["key"], "discharges");
    assert_eq!(
        trend["figures"][0]["by_month"]["all"],
        serde_json::json!([null, null, null])
    );
    for name in carewoven_history::report::trend_csv_files() {
        assert!(csv_dir.join(&name).exists(), "{name}");
    }
    let discharges_csv =
        std::fs::read_to_string(csv_dir.join("trend_discharges_by_month.csv")).unwrap();
    assert_eq!(discharges_csv.lines().count(), 4, "{discharges_csv}");
    assert!(page.contains("id=\"trend-discharges-by-month-title\""));
    let no_trend = {
        let mut args = report_args(days_ago(30), Utc::now());
        args.extend(["--trend-months".to_owned(), "0".into(), "--force".into()]);
        run(args).await
    };
    assert!(!no_trend.status.success());
    assert!(
        text(&no_trend).contains("--trend-months"),
        "{}",
        text(&no_trend)
    );
    let bad_month = {
        let mut args = report_args(days_ago(30), Utc::now());
        args.extend(["--month".to_owned(), "2025-13".into(), "--force".into()]);
        run(args).await
    };
    assert!(!bad_month.status.success());

    let again = run(report_args(days_ago(30), Utc::now())).await;
    assert!(
        !again.status.success(),
        "existing outputs are refused without --force"
    );
    let reversed = run(report_args(Utc::now(), days_ago(30))).await;
    assert!(!reversed.status.success());

    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_over_grpc_streams_in_order_resumes_and_refuses_bad_input() {
    use carewoven_proto::v1::history_service_client::HistoryServiceClient;
    let nats = NatsServer::start().unwrap();
    let (service, mut c) = start(&nats).await;
    for n in 0..5 {
        c.register_person(signed(v1::RegisterPersonRequest {
            context: ctx("HOSP-A"),
            profile: Some(v1::Profile {
                nhs_number: carewoven_testkit::test_nhs_number(100 + n),
                given_name: "Ada".into(),
                family_name: "Example".into(),
                date_of_birth: "1941-03-02".into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap();
    }
    let history_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let history_addr = history_listener.local_addr().unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stop = CancellationToken::new();
    let history = tokio::spawn({
        let stop = stop.clone();
        async move {
            carewoven_analyst::service::serve(
                history_listener,
                js,
                "CAREWOVEN".into(),
                &carewoven_analyst::service::AuthConfig::for_tests(),
                stop,
            )
            .await
        }
    });
    let mut h = loop {
        if let Ok(h) = HistoryServiceClient::connect(format!("http://{history_addr}")).await {
            break h;
        }
        tokio::task::yield_now().await;
    };
    let collect = |mut s: tonic::Streaming<v1::ReplayedEvent>| async move {
        let mut out = Vec::new();
        while let Some(e) = s.message().await.unwrap() {
            out.push(e.log_position);
        }
        out
    };
    let analyst_token = token_with_roles("ICB-ANALYSTS", &[Role::Analyst]);
    let as_analyst = |r: v1::ReplayRequest| {
        carewoven_access::grpc::with_token(tonic::Request::new(r), &analyst_token)
    };
    let all = collect(
        h.replay(as_analyst(v1::ReplayRequest::default()))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    // The registry's events, then the five people's.
    let end = REGISTRY_EVENTS + 5;
    assert_eq!(all, (1..=end).collect::<Vec<_>>());
    // Resume after position end - 3: the rest, no gap, no repeat.
    let rest = collect(
        h.replay(as_analyst(v1::ReplayRequest {
            from_position: end - 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    assert_eq!(rest, vec![end - 2, end - 1, end]);
    for (request, field) in [
        (
            v1::ReplayRequest {
                from_position: 4,
                to_position: 2,
                ..Default::default()
            },
            "to_position",
        ),
        (
            v1::ReplayRequest {
                event_types: vec!["person_teleported".into()],
                ..Default::default()
            },
            "event_types",
        ),
        (
            v1::ReplayRequest {
                person_id: "nope".into(),
                ..Default::default()
            },
            "person_id",
        ),
    ] {
        let status = h.replay(as_analyst(request)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    stop.cancel();
    history.await.unwrap().unwrap();
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_over_grpc_needs_a_token_with_the_analyst_role() {
    use carewoven_proto::v1::history_service_client::HistoryServiceClient;
    let nats = NatsServer::start().unwrap();
    // The stream exists once the command service has opened the log.
    let (service, _) = start(&nats).await;
    let history_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let history_addr = history_listener.local_addr().unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stop = CancellationToken::new();
    let history = tokio::spawn({
        let stop = stop.clone();
        async move {
            carewoven_analyst::service::serve(
                history_listener,
                js,
                "CAREWOVEN".into(),
                &carewoven_analyst::service::AuthConfig::for_tests(),
                stop,
            )
            .await
        }
    });
    let mut h = loop {
        if let Ok(h) = HistoryServiceClient::connect(format!("http://{history_addr}")).await {
            break h;
        }
        tokio::task::yield_now().await;
    };
    let request = |token: Option<&str>| {
        let r = tonic::Request::new(v1::ReplayRequest::default());
        match token {
            Some(t) => carewoven_access::grpc::with_token(r, t),
            None => r,
        }
    };
    let reason = |s: &tonic::Status| {
        use tonic_types::StatusExt;
        s.get_error_details()
            .error_info()
            .map(|e| e.reason.clone())
            .unwrap_or_default()
    };

    let status = h.replay(request(None)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "TOKEN_MISSING");
    let status = h.replay(request(Some("not-a-jwt"))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    // A partner's token, and the registrar's: authenticated, but not analysts.
    for t in [
        token("HOSP-A"),
        token_with_roles("CW-GOV", &[Role::Governance]),
    ] {
        let status = h.replay(request(Some(&t))).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert_eq!(reason(&status), "ANALYST_ROLE_REQUIRED");
    }
    let analyst = token_with_roles("ICB-ANALYSTS", &[Role::Analyst]);
    let mut replayed = h
        .replay(request(Some(&analyst)))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while replayed.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, REGISTRY_EVENTS);

    stop.cancel();
    history.await.unwrap().unwrap();
    service.stop().await.unwrap();
}
