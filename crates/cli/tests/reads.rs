//! carectl's reads against the real services: a real nats-server, the command service, the
//! views and the gateway on loopback ports, and the built `carectl` binary run as a
//! subprocess with tokens from the fixed test issuer. A small journey (register, admit,
//! discharge ready, refer, care team, coordinator) is written through gRPC; every read
//! command is checked in `--json` (parsed) and as a table, the live board and the followed
//! feed see a change made after they started, a feed resumed by cursor has no gap and no
//! duplicate, and an organisation with no relationship gets nothing: an empty board, and
//! PERMISSION_DENIED for the record, the same answer as for a person who does not exist.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use carewoven_governance::Role;
use carewoven_proto::v1::{
    self, progress_discharge_request as pd, progress_discharge_request::Step,
};
use carewoven_testkit::{
    GOVERNANCE_ORG, Services, add_member, all_data_classes, ctx, discharge_step, episode_ready,
    make_referral, register, register_partner, signed, test_nhs_number, token, token_with_roles,
};
use serde_json::Value;

#[allow(dead_code)] // Not every suite uses every helper.
mod common;

use common::text;

/// How long a watcher or follower is given to show something.
const WAIT: Duration = Duration::from_secs(20);

/// The three addresses carectl is given.
#[derive(Clone)]
struct Addresses {
    commands: String,
    views: String,
    gateway: String,
}

impl Addresses {
    fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_carectl"));
        c.args(["--server", &self.commands])
            .args(["--views-server", &self.views])
            .args(["--gateway-server", &self.gateway])
            .args(["--token", token])
            .args(args)
            .env_remove("CAREWOVEN_TOKEN")
            .env_remove("CAREWOVEN_ISSUER_DIR")
            .env_remove("CAREWOVEN_ORG");
        c
    }

    /// Run carectl to its end (off the runtime's threads).
    async fn run(&self, token: &str, args: &[&str]) -> Output {
        let mut command = self.command(token, args);
        tokio::task::spawn_blocking(move || command.output().expect("running carectl"))
            .await
            .unwrap()
    }

    /// Run carectl, which must succeed, and check its table shows each of `needles`.
    async fn shows(&self, token: &str, args: &[&str], needles: &[&str]) {
        let o = self.run(token, args).await;
        let table = stdout(ok(&o));
        for needle in needles {
            assert!(table.contains(needle), "{needle} missing:\n{table}");
        }
    }

    /// Run carectl, which must be refused with `code`; returns the refusal's message.
    async fn refuses(&self, token: &str, args: &[&str], code: &str) -> String {
        refused(&self.run(token, args).await, code)
    }

    /// Start a long-running carectl (watch, follow) whose stdout lines arrive on a channel.
    fn spawn(&self, token: &str, args: &[&str]) -> Lines {
        let mut child = self
            .command(token, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting carectl");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            child,
            rx,
            seen: Vec::new(),
        }
    }
}

/// A running carectl's output, read line by line with a deadline.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Wait (up to [`WAIT`]) for a line for which `matches` holds; returns it.
    async fn until(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::task::block_in_place(|| self.rx.recv_timeout(left));
            match got {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("waiting for {what}: {e}; seen:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> &Output {
    assert!(o.status.success(), "{}", text(o));
    o
}

/// A refused read: exit 2 and the gRPC code in the JSON error; returns the message.
fn refused(o: &Output, code: &str) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    let v = json(o);
    assert_eq!(v["error"]["code"], code, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// Feed items printed as JSON lines.
fn items(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The number of the feed item printed on `line`.
fn number(line: &str) -> Option<u64> {
    serde_json::from_str::<Value>(line).ok()?["number"].as_u64()
}

fn numbers(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carectl_reads_every_view_the_feed_and_the_access_list() {
    let s = Services::start().await.unwrap();
    let mut c = s.stack.client.clone();
    let at = Addresses {
        commands: format!("http://{}", s.stack.service.addr),
        views: format!("http://{}", s.views.addr),
        gateway: format!("http://{}", s.gateway.addr),
    };
    let (hosp, asc, unrelated) = (token("HOSP-A"), token("ASC-D2A"), token("UNRELATED"));
    let governance = token_with_roles(GOVERNANCE_ORG, &[Role::Governance]);

    // The journey: HOSP-A registers and admits the person, marks them discharge ready and
    // refers them to ASC-D2A; HOSP-A is on the care team and coordinates. UNRELATED is
    // registered with an agreement but has no part in this person's care.
    register_partner(&mut c, "UNRELATED", &["UNRELATED"], &all_data_classes())
        .await
        .unwrap();
    let person = register(&mut c, 71).await.unwrap();
    let episode = episode_ready(&mut c, &person).await.unwrap();
    c.progress_discharge(signed(discharge_step(
        &person,
        &episode,
        Step::RecordDelayReason(pd::RecordDelayReason {
            reason: v1::DelayReason::Pathway1NewCare as i32,
            note: "No package of care until Monday".into(),
        }),
    )))
    .await
    .unwrap();
    let referral = make_referral(&mut c, &person).await.unwrap();
    add_member(&mut c, &person, "HOSP-A", "HOSP-A")
        .await
        .unwrap();
    let last = c
        .name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            member: Some(v1::MemberRef {
                organisation: "HOSP-A".into(),
                practitioner: String::new(),
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .log_position;
    let min = last.to_string();
    let nhs = test_nhs_number(71);

    // record: the whole record as JSON, and as sections.
    let record = at
        .run(
            &hosp,
            &["--json", "record", &person, "--min-log-position", &min],
        )
        .await;
    let r = json(ok(&record));
    assert_eq!(r["person_id"], person.as_str(), "{r}");
    assert_eq!(r["profile"]["nhs_number"], nhs.as_str(), "{r}");
    assert_eq!(r["discharge_episodes"][0]["episode_id"], episode.as_str());
    assert_eq!(r["discharge_episodes"][0]["status"], "discharge_ready");
    assert_eq!(r["referrals"][0]["referral_id"], referral.as_str());
    assert_eq!(
        r["referrals"][0]["history"][0]["status"], "submitted",
        "{r}"
    );
    assert_eq!(
        r["discharge_episodes"][0]["delay_notes"][0]["note"],
        "No package of care until Monday"
    );
    assert_eq!(r["care_team"]["coordinator"]["organisation"], "HOSP-A");
    assert!(r["log_position"].as_u64().unwrap() >= last, "{r}");
    at.shows(
        &hosp,
        &["record", &person],
        &[
            "Person",
            nhs.as_str(),
            "Ada Example",
            "Discharge episodes",
            "Ward 7",
            "discharge_ready",
            episode.as_str(),
            "Referrals",
            "ASC-D2A",
            "Care team",
            "Meetings\n  (none)",
        ],
    )
    .await;

    // An organisation without a relationship: the same refusal as for nobody, and nothing
    // personal on either stream.
    let nobody = uuid::Uuid::now_v7().to_string();
    let denied = "PERMISSION_DENIED";
    let theirs = at
        .refuses(&unrelated, &["--json", "record", &person], denied)
        .await;
    let nobodys = at
        .refuses(&unrelated, &["--json", "record", &nobody], denied)
        .await;
    assert_eq!(theirs.replace(&person, "?"), nobodys.replace(&nobody, "?"));
    let human = at.run(&unrelated, &["record", &person]).await;
    assert_eq!(human.status.code(), Some(2), "{}", text(&human));
    assert!(human.stdout.is_empty(), "{}", text(&human));
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(
        !stderr.contains(&nhs) && !stderr.contains("Ada"),
        "{stderr}"
    );

    // board: every page, as JSON and as a table; empty for the unrelated organisation.
    let board = at
        .run(&hosp, &["--json", "board", "--min-log-position", &min])
        .await;
    let b = json(ok(&board));
    assert_eq!(b["count"], 1, "{b}");
    assert_eq!(b["entries"][0]["episode_id"], episode.as_str());
    assert_eq!(b["entries"][0]["person_id"], person.as_str());
    assert_eq!(b["entries"][0]["status"], "discharge_ready");
    assert_eq!(b["entries"][0]["days_delayed"], 1, "{b}");
    // HOSP-A's agreement covers demographics: names on the board.
    assert_eq!(b["entries"][0]["given_name"], "Ada", "{b}");
    assert_eq!(b["entries"][0]["nhs_number"], nhs.as_str(), "{b}");
    assert_eq!(
        b["entries"][0]["delay_notes"][0]["reason"],
        "DELAY_REASON_PATHWAY_1_NEW_CARE"
    );
    for (reason, count) in [("pathway-1-new-care", 1), ("awaiting-transport", 0)] {
        let by_reason = at
            .run(&hosp, &["--json", "board", "--delay-reason", reason])
            .await;
        assert_eq!(json(ok(&by_reason))["count"], count, "{reason}");
    }
    at.shows(
        &hosp,
        &["board", "--sort", "site"],
        &[
            "Episode",
            "Person",
            "DRD",
            "Days",
            "Delays",
            "After discharge",
            episode.as_str(),
            "Ada Example",
            "pathway-1-new-care: No package of care until Monday",
        ],
    )
    .await;
    let filtered = at
        .run(&hosp, &["--json", "board", "--status", "discharged"])
        .await;
    assert_eq!(json(ok(&filtered))["count"], 0);
    let theirs = at
        .run(&unrelated, &["--json", "board", "--min-log-position", &min])
        .await;
    let theirs = json(ok(&theirs));
    assert_eq!(theirs["count"], 0, "{theirs}");
    assert_eq!(theirs["entries"], serde_json::json!([]));
    let bad = at
        .refuses(
            &hosp,
            &["--json", "board", "--status", "bogus"],
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(bad.contains("status"), "{bad}");

    // inbox: the receiving service's, by priority then age.
    let inbox = at
        .run(
            &asc,
            &[
                "--json",
                "inbox",
                "--service",
                "ASC-D2A",
                "--min-log-position",
                &min,
            ],
        )
        .await;
    let i = json(ok(&inbox));
    assert_eq!(i["count"], 1, "{i}");
    assert_eq!(i["entries"][0]["referral_id"], referral.as_str());
    assert_eq!(i["entries"][0]["from_organisation"], "HOSP-A");
    assert_eq!(i["entries"][0]["priority"], "PRIORITY_URGENT");
    assert_eq!(i["entries"][0]["to_service"], "ASC-D2A");
    let inbox_of = |status: &'static str| {
        [
            "--json",
            "inbox",
            "--service",
            "ASC-D2A",
            "--status",
            status,
        ]
    };
    for (status, count) in [("all", 1), ("open", 1), ("accepted", 0)] {
        let chosen = at.run(&asc, &inbox_of(status)).await;
        assert_eq!(json(ok(&chosen))["count"], count, "{status}");
    }
    let bad = at
        .refuses(&asc, &inbox_of("bogus"), "INVALID_ARGUMENT")
        .await;
    assert!(bad.contains("status"), "{bad}");
    at.shows(
        &asc,
        &["inbox", "--service", "ASC-D2A"],
        &[
            "Referral",
            "Priority",
            "Age (hours)",
            "urgent",
            referral.as_str(),
        ],
    )
    .await;
    let not_theirs = at
        .run(&unrelated, &["--json", "inbox", "--service", "ASC-D2A"])
        .await;
    assert_eq!(not_theirs.status.code(), Some(2), "{}", text(&not_theirs));

    // caseload: by organisation and by coordinator, the caller's own only.
    for owner in [["--organisation", "HOSP-A"], ["--coordinator", "HOSP-A"]] {
        let mut args = vec!["--json", "caseload"];
        args.extend(owner);
        let caseload = at.run(&hosp, &args).await;
        let cl = json(ok(&caseload));
        assert_eq!(cl["person_ids"], serde_json::json!([person]), "{cl}");
    }
    at.shows(&hosp, &["caseload", "--organisation", "HOSP-A"], &[&person])
        .await;
    let not_theirs = at
        .run(
            &unrelated,
            &["--json", "caseload", "--organisation", "HOSP-A"],
        )
        .await;
    assert_eq!(not_theirs.status.code(), Some(2), "{}", text(&not_theirs));

    // find-person: any registered organisation may trace; a mismatch is NOT_FOUND.
    let trace = |json: bool, born: &'static str| {
        let mut args = vec![
            "find-person",
            "--nhs-number",
            nhs.as_str(),
            "--date-of-birth",
        ];
        args.push(born);
        if json {
            args.insert(0, "--json");
        }
        args
    };
    let found = at.run(&unrelated, &trace(true, "1941-03-02")).await;
    assert_eq!(json(ok(&found))["person_id"], person.as_str());
    at.shows(&unrelated, &trace(false, "1941-03-02"), &[&person])
        .await;
    at.refuses(&unrelated, &trace(true, "1941-03-03"), "NOT_FOUND")
        .await;

    // status: every service's health and the views' lag (governance role).
    let status = at.run(&governance, &["--json", "status"]).await;
    let st = json(ok(&status));
    assert_eq!(st["healthy"], true, "{st}");
    for (i, name) in ["commands", "views", "gateway"].iter().enumerate() {
        assert_eq!(st["services"][i]["name"], *name, "{st}");
        assert_eq!(st["services"][i]["health"], "SERVING", "{st}");
    }
    assert!(
        st["views"]["log_position"].as_u64().unwrap() >= last,
        "{st}"
    );
    assert!(st["views"]["lag"].is_u64(), "{st}");
    at.shows(&governance, &["status"], &["SERVING", "lag (events)"])
        .await;
    let not_governance = at.run(&hosp, &["--json", "status"]).await;
    assert_eq!(
        not_governance.status.code(),
        Some(2),
        "{}",
        text(&not_governance)
    );
    let ng = json(&not_governance);
    assert_eq!(ng["views"]["error"]["code"], "PERMISSION_DENIED", "{ng}");
    assert_eq!(ng["services"][1]["health"], "SERVING", "{ng}");

    // The feed, once the gateway has delivered everything so far.
    let mut progress = s.progress.clone();
    tokio::time::timeout(WAIT, progress.wait_for(|p| p.delivered_through >= last))
        .await
        .unwrap()
        .unwrap();
    let idle = ["--idle-ms", "1500"];
    let all = at
        .run(&hosp, &[&["--json", "feed"][..], &idle].concat())
        .await;
    let all = items(ok(&all));
    let n = all.len() as u64;
    assert!(n >= 4, "{all:?}");
    assert_eq!(numbers(&all), (1..=n).collect::<Vec<_>>());
    assert!(
        all.iter()
            .all(|i| i["identifiers"]["person_id"] == person.as_str())
    );
    let first_two = at
        .run(
            &hosp,
            &[&["--json", "feed", "--limit", "2"][..], &idle].concat(),
        )
        .await;
    let first_two = items(ok(&first_two));
    assert_eq!(numbers(&first_two), vec![1, 2]);
    let cursor = first_two[1]["cursor"].as_str().unwrap().to_owned();
    let rest = at
        .run(
            &hosp,
            &[&["--json", "feed", "--cursor", &cursor][..], &idle].concat(),
        )
        .await;
    let rest = items(ok(&rest));
    let resumed: Vec<Value> = first_two.iter().chain(&rest).cloned().collect();
    assert_eq!(resumed, all, "resumed by cursor: no gap, no duplicate");
    let after = at
        .run(
            &hosp,
            &[&["--json", "feed", "--after", "2"][..], &idle].concat(),
        )
        .await;
    assert_eq!(numbers(&items(ok(&after))), numbers(&rest));
    let human = at
        .run(&hosp, &[&["feed", "--limit", "1"][..], &idle].concat())
        .await;
    let line = stdout(ok(&human));
    assert!(
        line.starts_with("#1 ") && line.contains("cursor "),
        "{line}"
    );
    assert!(
        String::from_utf8_lossy(&human.stderr).contains("resume with: carectl feed --cursor"),
        "{}",
        text(&human)
    );
    let theirs = at
        .run(&unrelated, &[&["--json", "feed"][..], &idle].concat())
        .await;
    assert!(ok(&theirs).stdout.is_empty(), "{}", text(&theirs));
    let forged = at
        .refuses(
            &hosp,
            &["--json", "feed", "--cursor", "not-a-cursor"],
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(forged.contains("cursor"), "{forged}");
    let beyond = (n + 100).to_string();
    at.refuses(
        &hosp,
        &["--json", "feed", "--after", &beyond],
        "OUT_OF_RANGE",
    )
    .await;

    // Live: the watched board (JSON lines and change lines) and the followed feed see a
    // change made after they started.
    let mut watch_json = at.spawn(&hosp, &["--json", "board", "--watch"]);
    let mut watch_text = at.spawn(&hosp, &["board", "--watch"]);
    let mut follow = at.spawn(&hosp, &["--json", "feed", "--cursor", &cursor, "--follow"]);
    let snapshot_has_episode = watch_json
        .until("the initial board", |l| l.contains("snapshot_complete"))
        .await;
    assert!(snapshot_has_episode.contains("snapshot_complete"));
    assert!(
        watch_json.seen.iter().any(|l| l.contains(&episode)),
        "{:?}",
        watch_json.seen
    );
    watch_text
        .until("the initial table", |l| l.contains("watching for changes"))
        .await;
    follow
        .until("the feed's last stored item", |l| number(l) == Some(n))
        .await;
    let changed = c
        .progress_discharge(signed(discharge_step(
            &person,
            &episode,
            Step::AssignPathway(v1::progress_discharge_request::AssignPathway {
                pathway: v1::Pathway::Pathway1 as i32,
            }),
        )))
        .await
        .unwrap()
        .into_inner();
    let upsert = watch_json
        .until("the change on the watched board", |l| {
            l.contains("pathway_assigned")
        })
        .await;
    let upsert: Value = serde_json::from_str(&upsert).unwrap();
    assert_eq!(upsert["upsert"]["episode_id"], episode.as_str(), "{upsert}");
    assert_eq!(upsert["upsert"]["pathway"], "PATHWAY_1", "{upsert}");
    assert!(upsert["log_position"].as_u64().unwrap() >= changed.log_position);
    let line = watch_text
        .until("the change line", |l| l.contains("changed: episode"))
        .await;
    assert!(
        line.contains(&episode) && line.contains("pathway_assigned"),
        "{line}"
    );
    let next = follow
        .until("the next feed item", |l| number(l) == Some(n + 1))
        .await;
    let next: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(next["log_position"], changed.log_position, "{next}");
    drop((watch_json, watch_text, follow));

    // who-accessed: the reads above, and the unrelated organisation's refused attempt.
    let accessed = at.run(&hosp, &["--json", "who-accessed", &person]).await;
    let a = json(ok(&accessed));
    let entries = a["entries"].as_array().unwrap();
    let by = |org: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["event"]["organisation"] == org && e["event"]["outcome"] == outcome)
    };
    assert!(by("HOSP-A", "AUDIT_OUTCOME_PERMITTED"), "{a}");
    assert!(by("UNRELATED", "AUDIT_OUTCOME_REFUSED"), "{a}");
    assert!(
        entries
            .iter()
            .any(|e| e["event"]["action"] == "AUDIT_ACTION_FEED_DELIVERY"),
        "{a}"
    );
    at.shows(
        &hosp,
        &["who-accessed", &person],
        &[
            "Organisation",
            "Action",
            "Outcome",
            "UNRELATED",
            "refused",
            "record-read",
        ],
    )
    .await;
    at.refuses(
        &unrelated,
        &["--json", "who-accessed", &person],
        "PERMISSION_DENIED",
    )
    .await;

    s.stop().await.unwrap();
}
