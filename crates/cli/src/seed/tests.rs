use carewoven_proto::v1;
use chrono::NaiveDate;

use crate::enums::{ReferralAction, Role};

use super::access::Access;
use super::organisations::{ASC_FRONT_DOOR, COUNCIL, GPS, ORGANISATIONS};
use super::plan::{Config, Op, at, member, plan_person};
use super::stats::Stats;

fn cfg() -> Config {
    Config {
        seed: 7,
        anchor: NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
        days: 90,
    }
}

#[test]
fn plans_are_deterministic() {
    let c = cfg();
    for i in 0..50 {
        let a = plan_person(&c, i);
        let b = plan_person(&c, i);
        assert_eq!(format!("{:?}", a.steps), format!("{:?}", b.steps));
    }
    let other = Config { seed: 8, ..c };
    assert_ne!(
        format!("{:?}", plan_person(&c, 3).steps),
        format!("{:?}", plan_person(&other, 3).steps)
    );
    assert_eq!(c.command_id(1, "register"), c.command_id(1, "register"));
    assert_ne!(c.command_id(1, "register"), c.command_id(2, "register"));
    assert_eq!(c.command_id(1, "register").get_version_num(), 8);
}

#[test]
fn plans_stay_in_the_window_with_unique_steps() {
    let c = cfg();
    let mut total = Stats::default();
    for i in 0..300 {
        let p = plan_person(&c, i);
        assert!(matches!(p.steps[0].op, Op::Register(_)));
        let mut names = std::collections::HashSet::new();
        for s in &p.steps {
            assert!(s.at < c.end(), "{} at {}", s.name, s.at);
            assert!(s.at >= at(c.window_start(), 0, 0), "{}", s.name);
            assert!(names.insert(s.name.clone()), "duplicate step {}", s.name);
        }
        total.add(&p.stats());
    }
    let [p0, p1, p2, p3] = total.pathways;
    assert!(p0 + p1 > 8 * (p2 + p3), "{:?}", total.pathways);
    assert!(total.late_recorded > 0);
    assert!(total.objections > 0);
    assert!(total.readmissions_30d > 0);
    assert!(total.risk_flags > 0 && total.tasks > 0 && total.tasks_completed > 0);
    assert!(total.tasks_completed < total.tasks);
}

#[test]
fn every_step_is_sent_by_a_registered_organisation_entitled_to_it() {
    for c in [
        cfg(),
        Config {
            seed: 1,
            anchor: NaiveDate::from_ymd_opt(2026, 7, 15).expect("date"),
            days: 30,
        },
        Config {
            seed: 99,
            anchor: NaiveDate::from_ymd_opt(2025, 12, 1).expect("date"),
            days: 365,
        },
    ] {
        let mut late = 0;
        for i in 0..300 {
            let p = plan_person(&c, i);
            assert_eq!(p.unplaced, 0, "person {i}: {:#?}", p.steps);
            // Replaying the send order, each step is allowed to its organisation.
            let mut access = Access::default();
            for s in &p.steps {
                assert!(
                    ORGANISATIONS.iter().any(|o| o.code == s.org),
                    "{} acts as unregistered {}",
                    s.name,
                    s.org
                );
                assert!(
                    access.allows(s.org, &s.op),
                    "person {i} step {} by {}",
                    s.name,
                    s.org
                );
                access.apply(&s.op);
                late += u64::from(s.late);
            }
        }
        assert!(late > 0);
    }
}

#[test]
fn the_rules_refuse_what_governance_refuses() {
    let mut access = Access::default();
    let member = |org: &str| Op::AddMember {
        member: member(org, ""),
        role: Role::GeneralPractice,
        since: NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
    };
    // Nobody is related yet: the GP may not start the care team.
    assert!(!access.allows(GPS[0], &member(GPS[0])));
    let referral = Op::MakeReferral(
        0,
        v1::Referral {
            from_organisation: GPS[0].into(),
            to_service: ASC_FRONT_DOOR.into(),
            ..Default::default()
        },
    );
    assert!(!access.allows(COUNCIL, &referral), "only from itself");
    assert!(access.allows(GPS[0], &referral));
    access.apply(&referral);
    assert!(
        access.related(COUNCIL),
        "the receiving service's organisation"
    );
    // The referrer gains no ground by referring.
    assert!(!access.related(GPS[0]));
    assert!(!access.allows(GPS[0], &member(GPS[0])));
    assert!(access.allows(COUNCIL, &member(COUNCIL)));
    assert!(!access.allows(COUNCIL, &member(GPS[0])), "not on the team");
    let cancel = Op::ProgressReferral {
        referral: 0,
        action: ReferralAction::Cancel,
        reason: "x".into(),
    };
    assert!(!access.allows(COUNCIL, &cancel));
    assert!(access.allows(GPS[0], &cancel));
    access.apply(&cancel);
    assert!(!access.related(COUNCIL) && !access.related(GPS[0]));
}

#[test]
fn nhs_numbers_are_synthetic_and_distinct() {
    let c = cfg();
    let numbers: std::collections::HashSet<String> = (0..2000).map(|i| c.nhs_number(i)).collect();
    assert_eq!(numbers.len(), 2000);
    assert!(numbers.iter().all(|n| n.starts_with("999")));
}
