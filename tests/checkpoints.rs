//! The access index's checkpoint (issue: ten million events): a restart costs the events
//! since the last save, not the whole log; memory holds a bounded number of people; and a
//! checkpoint deleted, or folded from another log, is rebuilt from the log with the same
//! decisions and the same digest as a fold of the whole log.
//!
//! Everything is real: a nats-server of its own, the command service over gRPC, redb files
//! on disk.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use carewoven_access::{AccessIndex, IndexOptions};
use carewoven_domain::values::Code;
use carewoven_governance::{Identity, Role};
use carewoven_proto::v1;
use carewoven_testkit::*;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);
const ORGS: [&str; 6] = ["HOSP-A", "ASC-D2A", "ASC", "ASC-REABLE", "COMM", "GP-A"];

fn identity(org: &str) -> Identity {
    Identity {
        organisation: Code::parse("organisation", org).unwrap(),
        user: None,
        roles: Vec::<Role>::new(),
        citizen: None,
    }
}

/// An index on `stack`'s log, persisted in `file` (or in memory), caught up with the log.
async fn index(
    stack: &Stack,
    file: Option<&Path>,
    cache_people: usize,
) -> (AccessIndex, CancellationToken) {
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let stop = CancellationToken::new();
    let options = IndexOptions {
        checkpoint: file.map(Path::to_owned),
        cache_people,
        service: "test",
        ..IndexOptions::default()
    };
    let index = AccessIndex::start_with(js, "CAREWOVEN", options, stop.clone())
        .await
        .unwrap();
    index.catch_up(DEADLINE).await.unwrap();
    (index, stop)
}

async fn close(index: AccessIndex, stop: CancellationToken) {
    stop.cancel();
    tokio::time::timeout(DEADLINE, index.finished())
        .await
        .expect("the index stops and saves within the deadline");
}

/// Every organisation's answer for every person, now: the decisions to compare.
fn decisions(index: &AccessIndex, people: &[String]) -> Vec<String> {
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    index.with(|g| {
        for person in people {
            let id = Uuid::parse_str(person).unwrap();
            for org in ORGS {
                let answer = match g.read_scope(&identity(org), id, now) {
                    Ok(scope) => format!("read, withheld {:?}", scope.withheld),
                    Err(d) => format!("denied {}", d.audit_reason()),
                };
                out.push(format!("{person} {org}: {answer}"));
            }
            out.push(format!(
                "{person}: related {:?}, gp {:?}, coordinator {:?}",
                g.related_orgs(id, now),
                g.registered_gp(id),
                g.coordinator(id)
            ));
        }
        let mut orgs: Vec<String> = g
            .organisations()
            .map(|o| o.code.as_str().to_owned())
            .collect();
        orgs.sort();
        out.push(format!("registry {orgs:?}"));
        out.push(format!("emergency {:?}", g.emergency_accesses().len()));
    });
    out
}

/// Several people with every kind of ground and an objection.
async fn history(stack: &mut Stack, first: u32, people: &mut Vec<String>) {
    let c = &mut stack.client;
    for n in first..first + 4 {
        let person = register_with_gp(c, n, "GP-A").await.unwrap();
        admit(c, &person).await.unwrap();
        refer(c, &person, "HOSP-A", "ASC-D2A").await.unwrap();
        people.push(person);
    }
    let p = people[people.len() - 1].clone();
    add_member(c, &p, "HOSP-A", "HOSP-A").await.unwrap();
    add_member(c, &p, "HOSP-A", "COMM").await.unwrap();
    let objection = v1::RecordConsentRequest {
        context: ctx("GP-A"),
        person_id: people[people.len() - 2].clone(),
        terms: Some(v1::ConsentTerms {
            decision: v1::ConsentDecision::Deny as i32,
            purpose: v1::Purpose::DirectCare as i32,
            partners: vec!["ASC-D2A".into()],
            data_classes: vec![],
            valid_from: date_days_ago(1),
            valid_until: String::new(),
            capacity_assessed: true,
        }),
    };
    c.record_consent(signed(objection)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint_and_decides_as_a_full_fold() {
    let mut stack = Stack::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let warm_file = dir.path().join("access.redb");
    let mut people = Vec::new();
    history(&mut stack, 1, &mut people).await;

    // First start: cold, folds the log and saves.
    let (first, stop) = index(&stack, Some(&warm_file), 2).await;
    let before = decisions(&first, &people);
    let saved_at = first.position();
    close(first, stop).await;

    // More history while it is down.
    history(&mut stack, 20, &mut people).await;
    let log_end = stack.log.last_sequence().await.unwrap();
    assert!(log_end > saved_at);

    // Warm start: it begins at the saved position, not at the log's start.
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let stop = CancellationToken::new();
    let warm = AccessIndex::start_with(
        js,
        "CAREWOVEN",
        IndexOptions {
            checkpoint: Some(warm_file.clone()),
            cache_people: 2,
            service: "test",
            ..IndexOptions::default()
        },
        stop.clone(),
    )
    .await
    .unwrap();
    assert_eq!(warm.saved_position(), Some(saved_at));
    assert!(warm.position() >= saved_at, "it starts where it saved");
    warm.catch_up(DEADLINE).await.unwrap();
    let warm_decisions = decisions(&warm, &people);

    // The same as an index folded in memory from the start, and as a cold checkpoint.
    let (memory, memory_stop) = index(&stack, None, 0).await;
    let cold_file = dir.path().join("cold.redb");
    let (cold, cold_stop) = index(&stack, Some(&cold_file), 1000).await;
    assert_eq!(warm_decisions, decisions(&memory, &people));
    assert_eq!(warm_decisions, decisions(&cold, &people));
    assert_ne!(
        before, warm_decisions,
        "the later history changed some decisions"
    );
    // Memory holds a bounded number of people: a cache of 2 (plus the unsaved).
    let warm_digest = warm.checkpoint_digest().await.unwrap().unwrap();
    assert!(warm.with(|g| g.people_in_memory()) <= 2);
    let cold_digest = cold.checkpoint_digest().await.unwrap().unwrap();
    assert_eq!(warm_digest, cold_digest, "the same fold, the same digest");
    close(warm, stop).await;
    close(cold, cold_stop).await;
    memory_stop.cancel();

    // Deleting the checkpoint rebuilds it from the log: same decisions, same digest.
    std::fs::remove_file(&warm_file).unwrap();
    let (rebuilt, stop) = index(&stack, Some(&warm_file), 2).await;
    assert_eq!(decisions(&rebuilt, &people), warm_decisions);
    assert_eq!(
        rebuilt.checkpoint_digest().await.unwrap().unwrap(),
        warm_digest
    );
    close(rebuilt, stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_another_log_is_set_aside_not_trusted() {
    // A checkpoint folded from one log, where GP-A's patients live...
    let mut first = Stack::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.redb");
    let mut people = Vec::new();
    history(&mut first, 1, &mut people).await;
    let (index1, stop) = index(&first, Some(&file), 100).await;
    let granted = decisions(&index1, &people);
    assert!(granted.iter().any(|d| d.contains("GP-A: read")));
    close(index1, stop).await;
    drop(first);

    // ...pointed at another log (a new stream: as if the store were replaced) grants
    // nothing from the old one: it is set aside and the new log folded.
    let second = Stack::start().await.unwrap();
    let (index2, stop) = index(&second, Some(&file), 100).await;
    let after = decisions(&index2, &people);
    assert!(
        after
            .iter()
            .filter(|d| d.contains(": read"))
            .collect::<Vec<_>>()
            .is_empty(),
        "no one in the old log is readable: {after:?}"
    );
    assert!(dir.path().join("access.set-aside").exists());
    let (memory, memory_stop) = index(&second, None, 0).await;
    assert_eq!(after, decisions(&memory, &people));
    close(index2, stop).await;
    memory_stop.cancel();
}
