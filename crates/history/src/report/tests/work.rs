//! Tasks completed on time and care-plan reviews overdue, worked out by hand.
//!
//! Period: 2025-03-01 00:00 UTC to 2025-04-01 00:00 UTC (British Summer Time starts on
//! 2025-03-30, so the period's end instant is 01:00 on UK day 04-01, and UK day 03-31 starts
//! at 03-30 23:00 UTC). Requester RXH01 unless said; owners CNS01 and SCC01.
//!
//! Tasks (person, owner, due, how it ended):
//! - T1 (A, CNS01, due 03-10): accepted, completed 03-10 22:00 UTC (UK 03-10): on time.
//! - T2 (B, SCC01, due 03-12): accepted, completed 03-13 09:00: late.
//! - T3 (C, CNS01, due 03-20): reassigned to SCC01 on 03-15 (the due date stays), completed
//!   03-20 10:00: on time, counted for SCC01.
//! - T4 (A, SCC01, due 03-25): cancelled 03-18.
//! - T5 (B, CNS01, due 03-28): accepted, failed 03-29.
//! - T6 (C, CNS01, due 03-31): accepted, completed 03-31 23:30 UTC: inside the period by
//!   instant, but UK day 04-01 (00:30 BST): late.
//! - T7 (D, opted out, CNS01, due 03-10): completed 03-05: left out.
//! - T8 (A, CNS01, due 02-20): completed 02-20, before the period: not counted.
//! - T9 (B, SCC01, due 03-30): in progress at the end: not counted.
//! - T10 (E, CNS01, due 04-02): completed 04-02, after the period: not counted.
//! - T11 (E, SCC01, requested by SCC01, due 03-15): completed 03-14: on time.
//!
//! All: 7 ended (T1-T6, T11); completed T1, T2, T3, T6, T11 = 5, on time T1, T3, T11 = 3
//! (60.0%), late 2, cancelled 1, failed 1. CNS01: T1 on time, T5 failed, T6 late: 3 ended, 2
//! completed, 1 on time (50.0%). SCC01: T2 late, T3 on time, T4 cancelled, T11 on time: 4
//! ended, 3 completed, 2 on time (66.7%).
//!
//! Care plans (person: versions recorded at, review date; activity organisation):
//! - A: 01-10 review 03-10; revised 03-08 (before the review date) review 06-08 (SCC01). The
//!   03-10 review never fell due; not overdue at the end.
//! - B: 02-01 review 03-05 (CNS01), never revised: falls due 03-05, 04-01 - 03-05 = 27 days
//!   overdue at the end.
//! - C: 01-15 review 02-15 (overdue before the period), revised late on 03-20 with review 03-25
//!   (SCC01): falls due 03-25; 7 days overdue at the end.
//! - E: 03-01 review 03-31 (SCC01), revised on the day, 03-31 10:00, review 09-30: falls due
//!   03-31 (reviewed on the day); not overdue.
//! - F: 2024-10-01 review 2025-01-01 (CNS01): 31 + 28 + 31 = 90 days overdue.
//! - D (opted out): review 02-01: left out (59 days overdue).
//! - G: agreed 04-10, after the period: no plan at its end.
//!
//! At the end: 5 people with a plan (A, B, C, E, F), 3 overdue (60.0%), days [7, 27, 90]:
//! median rank 2 -> 27, p90 rank 3 -> 90. Falling due in the period: B, C, E = 3.

use carewoven_domain::care_plan::{Activity, CarePlanEvent, PlanContent};
use carewoven_domain::care_team::MemberRef;
use carewoven_domain::task::{TaskBasis, TaskContent, TaskEvent, TaskStatus};

use super::*;

const G: u128 = 7;

fn task(n: u128) -> Uuid {
    Uuid::from_u128(0x7000 + n)
}
fn plan(n: u128) -> Uuid {
    Uuid::from_u128(0x8000 + n)
}

/// The description every task carries: free text that must never reach the report.
const SECRET: &str = "Ring Ada Lovelock about her tablets";

fn member(org: &str) -> MemberRef {
    MemberRef {
        organisation: code(org),
        practitioner: None,
    }
}

fn create(
    h: &mut History,
    who: u128,
    n: u128,
    when: &str,
    requester: &str,
    owner: &str,
    due: &str,
) {
    h.push(
        who,
        task(n),
        when,
        requester,
        Event::Task(TaskEvent::Created {
            task: TaskContent {
                description: long(SECRET),
                owner: member(owner),
                due: day(due),
                priority: Priority::Routine,
                basis: TaskBasis::Standalone,
            },
            requester: code(requester),
        }),
    );
}

fn status(h: &mut History, who: u128, n: u128, when: &str, org: &str, status: TaskStatus) {
    let reason = status.needs_reason().then(|| long("no longer needed"));
    h.push(
        who,
        task(n),
        when,
        org,
        Event::Task(TaskEvent::StatusChanged { status, reason }),
    );
}

/// Accepted, then completed at `done`.
fn complete(h: &mut History, who: u128, n: u128, accepted: &str, done: &str, org: &str) {
    status(h, who, n, accepted, org, TaskStatus::Accepted);
    status(h, who, n, done, org, TaskStatus::Completed);
}

fn plan_version(h: &mut History, who: u128, when: &str, org: &str, review: &str, version: u32) {
    let content = PlanContent {
        goals: vec![long("Walk to the shop again (free text)")],
        activities: vec![Activity {
            description: long("Physio twice a week"),
            responsible_organisation: code(org),
            status: carewoven_domain::care_plan::ActivityStatus::NotStarted,
            status_reason: None,
        }],
        review_date: day(review),
    };
    let event = if version == 1 {
        CarePlanEvent::Agreed {
            plan_version: 1,
            plan: content,
        }
    } else {
        CarePlanEvent::Revised {
            plan_version: version,
            plan: content,
            reason: long("reviewed with the person"),
            changes: Vec::new(),
        }
    };
    h.push(who, plan(who), when, "A81001", Event::CarePlan(event));
}

fn work_history() -> Vec<RecordedEvent> {
    use TaskStatus as S;
    let mut h = History::default();
    h.consent(D, 1, ConsentDecision::Deny, Purpose::Research);

    // Plans agreed before the period.
    plan_version(&mut h, F, "2024-10-01T10:00:00Z", "CNS01", "2025-01-01", 1);
    plan_version(&mut h, A, "2025-01-10T10:00:00Z", "SCC01", "2025-03-10", 1);
    plan_version(&mut h, C, "2025-01-15T10:00:00Z", "SCC01", "2025-02-15", 1);
    plan_version(&mut h, D, "2025-01-20T10:00:00Z", "CNS01", "2025-02-01", 1);
    plan_version(&mut h, B, "2025-02-01T10:00:00Z", "CNS01", "2025-03-05", 1);

    // T8 ends before the period.
    create(
        &mut h,
        A,
        8,
        "2025-02-10T09:00:00Z",
        "RXH01",
        "CNS01",
        "2025-02-20",
    );
    complete(
        &mut h,
        A,
        8,
        "2025-02-11T09:00:00Z",
        "2025-02-20T09:00:00Z",
        "CNS01",
    );

    plan_version(&mut h, E, "2025-03-01T10:00:00Z", "SCC01", "2025-03-31", 1);
    create(
        &mut h,
        A,
        1,
        "2025-03-02T09:00:00Z",
        "RXH01",
        "CNS01",
        "2025-03-10",
    );
    create(
        &mut h,
        B,
        2,
        "2025-03-02T09:30:00Z",
        "RXH01",
        "SCC01",
        "2025-03-12",
    );
    create(
        &mut h,
        C,
        3,
        "2025-03-02T10:00:00Z",
        "RXH01",
        "CNS01",
        "2025-03-20",
    );
    create(
        &mut h,
        A,
        4,
        "2025-03-02T10:30:00Z",
        "RXH01",
        "SCC01",
        "2025-03-25",
    );
    create(
        &mut h,
        B,
        5,
        "2025-03-02T11:00:00Z",
        "RXH01",
        "CNS01",
        "2025-03-28",
    );
    create(
        &mut h,
        C,
        6,
        "2025-03-02T11:30:00Z",
        "RXH01",
        "CNS01",
        "2025-03-31",
    );
    create(
        &mut h,
        D,
        7,
        "2025-03-02T12:00:00Z",
        "RXH01",
        "CNS01",
        "2025-03-10",
    );
    create(
        &mut h,
        B,
        9,
        "2025-03-02T12:30:00Z",
        "RXH01",
        "SCC01",
        "2025-03-30",
    );
    create(
        &mut h,
        E,
        10,
        "2025-03-02T13:00:00Z",
        "RXH01",
        "CNS01",
        "2025-04-02",
    );
    create(
        &mut h,
        E,
        11,
        "2025-03-02T13:30:00Z",
        "SCC01",
        "SCC01",
        "2025-03-15",
    );

    complete(
        &mut h,
        D,
        7,
        "2025-03-03T09:00:00Z",
        "2025-03-05T09:00:00Z",
        "CNS01",
    );
    plan_version(&mut h, A, "2025-03-08T10:00:00Z", "SCC01", "2025-06-08", 2);
    complete(
        &mut h,
        A,
        1,
        "2025-03-03T09:00:00Z",
        "2025-03-10T22:00:00Z",
        "CNS01",
    );
    complete(
        &mut h,
        B,
        2,
        "2025-03-03T09:00:00Z",
        "2025-03-13T09:00:00Z",
        "SCC01",
    );
    complete(
        &mut h,
        E,
        11,
        "2025-03-03T09:00:00Z",
        "2025-03-14T16:00:00Z",
        "SCC01",
    );
    h.push(
        C,
        task(3),
        "2025-03-15T09:00:00Z",
        "CNS01",
        Event::Task(TaskEvent::Reassigned {
            owner: member("SCC01"),
            reason: long("council reablement team instead"),
        }),
    );
    status(&mut h, A, 4, "2025-03-18T09:00:00Z", "RXH01", S::Cancelled);
    complete(
        &mut h,
        C,
        3,
        "2025-03-16T09:00:00Z",
        "2025-03-20T10:00:00Z",
        "SCC01",
    );
    plan_version(&mut h, C, "2025-03-20T10:00:00Z", "SCC01", "2025-03-25", 2);
    status(&mut h, B, 9, "2025-03-21T09:00:00Z", "SCC01", S::InProgress);
    status(&mut h, B, 5, "2025-03-22T09:00:00Z", "CNS01", S::Accepted);
    status(&mut h, B, 5, "2025-03-29T09:00:00Z", "CNS01", S::Failed);
    plan_version(&mut h, E, "2025-03-31T10:00:00Z", "SCC01", "2025-09-30", 2);
    complete(
        &mut h,
        C,
        6,
        "2025-03-25T09:00:00Z",
        "2025-03-31T23:30:00Z",
        "CNS01",
    );
    complete(
        &mut h,
        E,
        10,
        "2025-03-25T09:00:00Z",
        "2025-04-02T09:00:00Z",
        "CNS01",
    );
    plan_version(&mut h, G, "2025-04-10T10:00:00Z", "SCC01", "2025-05-01", 1);

    // Neither figure may depend on the order events are passed in.
    h.events.reverse();
    h.events
}

#[test]
fn the_work_history_replays_with_the_domain_rules() {
    let states = replay(work_history());
    let Some(AggregateState::Task(t3)) = states.get(&task(3)) else {
        panic!("T3 is a task");
    };
    assert_eq!(t3.status, TaskStatus::Completed);
    assert_eq!(t3.task.owner, member("SCC01"));
    assert_eq!(t3.task.due, day("2025-03-20"));
    let Some(AggregateState::CarePlan(c)) = states.get(&plan(C)) else {
        panic!("C has a care plan");
    };
    assert_eq!(c.plan.review_date, day("2025-03-25"));
}

#[test]
fn tasks_completed_on_time_match_the_hand_calculation() {
    let events = work_history();
    let r = report(&events, &[], &opted_out(&events));
    let t = &r.tasks_on_time;
    assert_eq!(t.definition, TASKS_DEFINITION);
    assert_eq!(
        t.all,
        TaskCounts {
            finished: 7,
            completed: 5,
            completed_on_time: 3,
            completed_late: 2,
            on_time_percent: Some(60.0),
            cancelled: 1,
            failed: 1,
        }
    );
    assert_eq!(
        t.by_owner,
        [
            OwnerTasks {
                owner: "CNS01".into(),
                tasks: TaskCounts {
                    finished: 3,
                    completed: 2,
                    completed_on_time: 1,
                    completed_late: 1,
                    on_time_percent: Some(50.0),
                    cancelled: 0,
                    failed: 1,
                },
            },
            OwnerTasks {
                owner: "SCC01".into(),
                tasks: TaskCounts {
                    finished: 4,
                    completed: 3,
                    completed_on_time: 2,
                    completed_late: 1,
                    on_time_percent: Some(66.7),
                    cancelled: 1,
                    failed: 0,
                },
            },
        ]
    );

    // Without the opt-out, D's T7 (on time, CNS01) counts.
    let all = report(&events, &[], &HashSet::new());
    assert_eq!(all.tasks_on_time.all.completed_on_time, 4);
    assert_eq!(all.tasks_on_time.by_owner[0].tasks.completed_on_time, 2);

    // CNS01's scope: the tasks it owned when they ended (T1, T5, T6), not T3, reassigned
    // away before it was completed. SCC01's: the tasks it owned then and T11 it requested.
    let cns = report(&events, &[code("CNS01")], &opted_out(&events));
    assert_eq!(cns.tasks_on_time.all.finished, 3);
    assert_eq!(cns.tasks_on_time.by_owner.len(), 1);
    let scc = report(&events, &[code("SCC01")], &opted_out(&events));
    assert_eq!(scc.tasks_on_time.all.finished, 4);
    // The requester brings in every task it asked for.
    let rxh = report(&events, &[code("RXH01")], &opted_out(&events));
    assert_eq!(rxh.tasks_on_time.all.finished, 6);

    // A period with only a cancelled task: nothing completed, so no share (not 0).
    let quiet = service_review(
        &events,
        at("2025-03-18T00:00:00Z"),
        at("2025-03-19T00:00:00Z"),
        &[],
        &opted_out(&events),
    );
    assert_eq!(quiet.tasks_on_time.all.finished, 1);
    assert_eq!(quiet.tasks_on_time.all.cancelled, 1);
    assert_eq!(quiet.tasks_on_time.all.on_time_percent, None);
}

#[test]
fn care_plan_reviews_overdue_match_the_hand_calculation() {
    let events = work_history();
    let r = report(&events, &[], &opted_out(&events));
    assert_eq!(
        r.care_plan_reviews,
        ReviewsMetric {
            definition: REVIEWS_DEFINITION.to_owned(),
            as_of_day: day("2025-04-01"),
            people_with_a_plan: 5,
            overdue: 3,
            overdue_percent: Some(60.0),
            days_overdue_median: Some(27.0),
            days_overdue_p90: Some(90.0),
            falling_due_in_period: 3,
        }
    );
    // D counts without the opt-out: 59 days, [7, 27, 59, 90]: median rank 2 -> 27, p90
    // rank 4 -> 90; 6 people.
    let all = report(&events, &[], &HashSet::new());
    assert_eq!(all.care_plan_reviews.overdue, 4);
    assert_eq!(all.care_plan_reviews.people_with_a_plan, 6);
    // CNS01 is responsible for activities in B's and F's plans: both overdue, [27, 90].
    let cns = report(&events, &[code("CNS01")], &opted_out(&events));
    let c = &cns.care_plan_reviews;
    assert_eq!((c.people_with_a_plan, c.overdue), (2, 2));
    assert_eq!(
        (c.days_overdue_median, c.days_overdue_p90),
        (Some(27.0), Some(90.0))
    );
    assert_eq!(c.falling_due_in_period, 1);
    // The GP practice that recorded every plan sees them all.
    let gp = report(&events, &[code("A81001")], &opted_out(&events));
    assert_eq!(gp.care_plan_reviews.people_with_a_plan, 5);

    // At the end of February: A (03-10), B (03-05), C (02-15, 14 days), D out, F (01-01, 59
    // days); E and G have no plan yet. Falling due in February: C's 02-15.
    let feb = service_review(
        &events,
        at("2025-02-01T00:00:00Z"),
        at("2025-03-01T00:00:00Z"),
        &[],
        &opted_out(&events),
    );
    let f = &feb.care_plan_reviews;
    assert_eq!(f.as_of_day, day("2025-03-01"));
    assert_eq!((f.people_with_a_plan, f.overdue), (4, 2));
    assert_eq!(
        (f.days_overdue_median, f.days_overdue_p90),
        (Some(14.0), Some(59.0))
    );
    assert_eq!(f.falling_due_in_period, 1);
}

#[test]
fn the_report_page_and_json_show_both_without_free_text() {
    let events = work_history();
    let r = report(&events, &[], &opted_out(&events));
    let html = to_html(&r);
    assert!(html.contains("<section id=\"tasks\">"));
    assert!(html.contains("<section id=\"care-plan-reviews\">"));
    assert!(html.contains(&html::escape(TASKS_DEFINITION)));
    assert!(html.contains(&html::escape(REVIEWS_DEFINITION)));
    assert!(html.contains("Completed on or before the due date</dt><dd>3 (60.0%)</dd>"));
    assert!(html.contains("Review overdue</dt><dd>3 (60.0%)</dd>"));
    assert!(html.contains("Days overdue, median</dt><dd>27.0 days</dd>"));
    assert!(html.contains(
        "<tr><td>SCC01</td><td>3</td><td>2</td><td>66.7%</td><td>1</td><td>1</td><td>0</td></tr>"
    ));
    let chart = html
        .split("<svg")
        .find(|s| s.contains("Tasks by how they ended"))
        .expect("the tasks chart");
    assert!(chart.contains("On time: 3"));
    let json = to_json(&r);
    for text in [&html, &json] {
        for absent in [
            "tablets",
            "Lovelock",
            "Ada",
            "Walk to the shop",
            "Physio",
            "reviewed with",
        ] {
            assert!(!text.contains(absent), "{absent}");
        }
    }
    let back: Report = serde_json::from_str(&json).expect("JSON");
    assert_eq!(back, r);
    // A report written before these figures existed still reads.
    let mut old: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let object = old.as_object_mut().expect("an object");
    object.remove("tasks_on_time");
    object.remove("care_plan_reviews");
    let back: Report = serde_json::from_value(old).expect("an older report");
    assert_eq!(back.tasks_on_time, TasksMetric::default());
}

#[test]
fn the_trend_has_tasks_on_time_by_owner_and_reviews_overdue_at_each_end() {
    // March 2025: weeks W09 (03-01..03-02, partial), W10, W11 (03-10..03-16), W12, W13,
    // W14 (03-31, partial). T6 was completed on UK day 04-01, so the trend (by UK day) has it
    // in April, outside the range.
    let events = work_history();
    let t = trend(
        &events,
        (2025, 3),
        1,
        &[],
        &opted_out(&events),
        at("2025-06-01T00:00:00Z"),
    )
    .expect("a real month");
    let labels: Vec<&str> = t.weeks.iter().map(|w| w.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "2025-W09", "2025-W10", "2025-W11", "2025-W12", "2025-W13", "2025-W14"
        ]
    );
    let tasks = t
        .figures
        .iter()
        .find(|f| f.key == "tasks_completed_on_time_percent")
        .expect("tasks figure");
    assert_eq!(tasks.split_by, "owner");
    // W11: T1 on time, T2 late, T11 on time: 66.7. W12: T3 on time (T4 cancelled): 100.
    // W13: only T5, failed: nothing completed, empty. March: T1, T2, T3, T11: 75.
    assert_eq!(
        tasks.by_week.all,
        [None, None, Some(66.7), Some(100.0), None, None]
    );
    assert_eq!(tasks.by_month.all, [Some(75.0)]);
    let codes: Vec<&str> = tasks
        .by_month
        .split
        .iter()
        .map(|s| s.code.as_str())
        .collect();
    assert_eq!(codes, ["CNS01", "SCC01"]);
    assert_eq!(tasks.by_month.split[0].values, [Some(100.0)]);
    assert_eq!(tasks.by_month.split[1].values, [Some(66.7)]);
    assert_eq!(
        tasks.by_week.split[1].values,
        [None, None, Some(50.0), Some(100.0), None, None]
    );

    let reviews = t
        .figures
        .iter()
        .find(|f| f.key == "care_plan_reviews_overdue")
        .expect("reviews figure");
    assert_eq!(reviews.split_by, "none");
    assert!(reviews.by_week.split.is_empty());
    // End of W09 (start of 03-03): C (02-15) and F. W10 (03-10): B too; A was revised on
    // 03-08. W11: the same. W12 (03-24): C was revised on 03-20 to 03-25, so B and F.
    // W13 (03-31): C again; E's 03-31 is not before 03-31. W14 and March (04-01): E was
    // reviewed on the day: B, C, F.
    assert_eq!(
        reviews.by_week.all,
        [
            Some(2.0),
            Some(3.0),
            Some(3.0),
            Some(2.0),
            Some(3.0),
            Some(3.0)
        ]
    );
    assert_eq!(reviews.by_month.all, [Some(3.0)]);

    // F's plan, the first, was agreed in October 2024: at the end of September 2024 nobody
    // had one, so the month is empty, not 0; and no task ended then.
    let sept = trend(
        &events,
        (2024, 9),
        1,
        &[],
        &opted_out(&events),
        at("2025-06-01T00:00:00Z"),
    )
    .expect("a real month");
    let f = sept
        .figures
        .iter()
        .find(|f| f.key == "care_plan_reviews_overdue")
        .expect("reviews figure");
    assert_eq!(f.by_month.all, [None]);
    let f = sept
        .figures
        .iter()
        .find(|f| f.key == "tasks_completed_on_time_percent")
        .expect("tasks figure");
    assert_eq!(f.by_month.all, [None]);

    // Scope CNS01: its tasks and B's and F's plans.
    let cns = trend(
        &events,
        (2025, 3),
        1,
        &[code("CNS01")],
        &opted_out(&events),
        at("2025-06-01T00:00:00Z"),
    )
    .expect("a real month");
    let reviews = cns
        .figures
        .iter()
        .find(|f| f.key == "care_plan_reviews_overdue")
        .expect("reviews figure");
    assert_eq!(reviews.by_month.all, [Some(2.0)]);

    // The page: the trend charts are well-formed, and the reviews chart has one line.
    let mut r = report(&events, &[], &opted_out(&events));
    r.trend = Some(t);
    let html = to_html(&r);
    let start = html
        .find("id=\"trend-care_plan_reviews_overdue-by-month-title\"")
        .expect("the reviews chart");
    let svg_start = html[..start].rfind("<svg").expect("an svg");
    let svg_end = html[start..].find("</svg>").expect("closed") + start + "</svg>".len();
    let doc = roxmltree::Document::parse(&html[svg_start..svg_end]).expect("well-formed");
    let desc = doc
        .descendants()
        .find(|n| n.has_tag_name("desc"))
        .and_then(|n| n.text())
        .expect("a desc");
    assert!(desc.contains("one line for all in scope"), "{desc}");
    assert!(html.contains("Side by side</dt><dd>none (the whole scope only)</dd>"));
    assert!(html.contains("Side by side</dt><dd>per owner organisation</dd>"));
}
