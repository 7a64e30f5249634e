//! A small hand-made history, and every figure of its report worked out by hand.
//!
//! Period: 2025-03-01 00:00 UTC (inclusive) to 2025-04-01 00:00 UTC (exclusive).
//! Sites: RXH01 and RYR02. Services: SCC01 (council social care). GP practice: A81001.
//!
//! People (fictional; NHS numbers from the 999 test range):
//! - A "Ada Lovelock": episode E1, readmitted in E5; referral R1.
//! - B "Bram Stoker-Tester": episode E2, readmitted 40 days later in E6; referral R2.
//! - C "Cleo Fictional": episode E3 with a deterioration; referral R4 (health assessment only).
//! - D "Dov Optout": opted out (deny, research); episode E4 and referral R3 must not count.
//! - E "Eve Withdrawn": denied planning use but withdrew it, so counts; episode E7.
//! - F "Finn Direct": denied direct-care sharing only (not secondary use), so counts.
//!
//! Episodes:
//! - E1 (A, RXH01): admitted 03-01 10:00, DRD 03-05, pathway 0, discharged 03-05 15:00
//!   (on the DRD), handover accepted 03-05 20:00 (5 hours).
//! - E2 (B, RXH01): admitted 03-02 08:00, DRD 03-06, pathway 1, delay reason awaiting home
//!   care, discharged 03-09 11:00 (3 days late), handover accepted 03-11 11:00 (48 hours).
//! - E3 (C, RYR02): admitted 02-20 12:00, DRD 03-01, pathway 2, delay reason awaiting
//!   bed-based rehabilitation, deteriorated 03-02, new DRD 03-10 (supersedes 03-01),
//!   pathway 2, delay reasons awaiting bed-based rehabilitation and awaiting transport,
//!   discharged 03-17 10:00 (7 days after the current DRD; 16 after the superseded one),
//!   no handover yet. Stay 02-20 -> 03-17 = 8 + 17 = 25 days.
//! - E4 (D, RXH01, opted out): admitted 02-15 09:00, DRD 03-04, pathway 1, discharged
//!   03-20 09:00 (16 days late; stay 33 days), handover 03-20 10:00 (1 hour).
//! - E5 (A, RXH01): readmitted 03-20 09:00, still in hospital at the period end
//!   (03-20 -> 04-01 = 12 days: not long).
//! - E6 (B, RYR02): admitted 04-18 11:00, after the period (40 days after E2's discharge).
//! - E7 (E, RXH01): admitted 03-08 00:00, DRD 03-20, pathway 3, awaiting care-home placement,
//!   still in hospital at the period end: 03-08 -> 04-01 = 24 days (long).
//!
//! Referrals (all from A81001 or a site to SCC01):
//! - R1 (A): made 03-06 09:00; Care Act needs assessment completed 03-08 09:00: 2 days.
//! - R2 (B): made 03-10 12:00; needs assessment completed 03-20 12:00: 10 days.
//! - R3 (D, opted out): made 03-05 09:00; assessed 03-06 09:00 (1 day): excluded.
//! - R4 (C, from RYR02): made 03-12 09:00; only a health assessment completed: not assessed.

use std::collections::{BTreeMap, HashMap, HashSet};

use carewoven_domain::assessment::{
    AssessmentEvent, AssessmentKind, AssessmentRequest, CareActOutcome, Findings,
};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, ConsentTerms, Purpose};
use carewoven_domain::discharge::{DelayReason, DischargeEvent, Pathway};
use carewoven_domain::organisation::{OrganisationEvent, OrganisationProfile, OrganisationType};
use carewoven_domain::person::{PersonEvent, Profile};
use carewoven_domain::referral::{NewReferral, Priority, ReferralEvent};
use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
use carewoven_domain::{AggregateState, Event, EventMeta, RecordedEvent, SCHEMA_VERSION};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::*;

mod trend;
mod work;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid test instant")
        .with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("valid test date")
}

fn code(s: &str) -> Code {
    Code::parse("code", s).expect("valid test code")
}

fn long(s: &str) -> LongText {
    LongText::parse("text", s).expect("valid test text")
}

fn short(s: &str) -> ShortText {
    ShortText::parse("text", s).expect("valid test text")
}

const PERIOD_FROM: &str = "2025-03-01T00:00:00Z";
const PERIOD_TO: &str = "2025-04-01T00:00:00Z";

fn person(n: u128) -> Uuid {
    Uuid::from_u128(0x1000 + n)
}
fn episode(n: u128) -> Uuid {
    Uuid::from_u128(0x2000 + n)
}
fn referral(n: u128) -> Uuid {
    Uuid::from_u128(0x3000 + n)
}
fn assessment(n: u128) -> Uuid {
    Uuid::from_u128(0x4000 + n)
}
fn consent(n: u128) -> Uuid {
    Uuid::from_u128(0x5000 + n)
}

const A: u128 = 1;
const B: u128 = 2;
const C: u128 = 3;
const D: u128 = 4;
const E: u128 = 5;
const F: u128 = 6;

/// Appends events in log order, numbering sequences and per-aggregate versions.
#[derive(Default)]
struct History {
    events: Vec<RecordedEvent>,
    versions: HashMap<Uuid, u64>,
}

impl History {
    fn push(&mut self, who: u128, aggregate: Uuid, occurred: &str, org: &str, event: Event) {
        let version = self.versions.entry(aggregate).or_insert(0);
        *version += 1;
        let sequence = self.events.len() as u64 + 1;
        let occurred_at = at(occurred);
        let id = Uuid::from_u128(0x9000_0000 + u128::from(sequence));
        self.events.push(RecordedEvent {
            sequence,
            meta: EventMeta {
                event_id: id,
                aggregate_id: aggregate,
                aggregate_kind: event.kind(),
                person_id: if who == 0 { Uuid::nil() } else { person(who) },
                version: *version,
                command_id: id,
                correlation_id: id,
                causation_id: id,
                organisation: code(org),
                user: code("analyst-test"),
                occurred_at,
                // Recorded a little late, as clinical facts often are: must not matter.
                recorded_at: occurred_at + chrono::Duration::hours(30),
                schema_version: SCHEMA_VERSION,
            },
            event,
        });
    }

    fn register(&mut self, who: u128, given: &str, family: &str) {
        self.register_born(who, given, family, "1940-01-01", "2025-01-01T09:00:00Z");
    }

    /// Registers a person born on `born`, at `when`.
    fn register_born(&mut self, who: u128, given: &str, family: &str, born: &str, when: &str) {
        let profile = Profile {
            nhs_number: NhsNumber::synthetic(u32::try_from(who).expect("small")),
            given_name: short(given),
            family_name: short(family),
            date_of_birth: day(born),
            contact: None,
            what_matters: None,
            communication_needs: None,
            carers: Vec::new(),
            registered_gp: None,
        };
        self.push(
            who,
            person(who),
            when,
            "RXH01",
            Event::Person(PersonEvent::Registered { profile }),
        );
    }

    /// Registers organisations, each with one service of its own code, at `when`.
    fn register_orgs(&mut self, orgs: &[(&str, OrganisationType)], when: &str) {
        for (n, (org, org_type)) in (1..).zip(orgs) {
            self.push(
                0,
                Uuid::from_u128(0x6000 + n),
                when,
                org,
                Event::Organisation(OrganisationEvent::Registered {
                    code: code(org),
                    profile: OrganisationProfile {
                        name: short(org),
                        org_type: *org_type,
                    },
                    services: vec![code(org)],
                }),
            );
        }
    }

    fn discharge(&mut self, who: u128, ep: u128, occurred: &str, site: &str, e: DischargeEvent) {
        self.push(who, episode(ep), occurred, site, Event::Discharge(e));
    }

    fn admit(&mut self, who: u128, ep: u128, site: &str, when: &str) {
        self.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::Admitted {
                site: code(site),
                ward: None,
                admitted_at: at(when),
            },
        );
    }

    fn ready(&mut self, who: u128, ep: u128, site: &str, when: &str, drd: &str, old: Option<&str>) {
        self.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::DischargeReady {
                discharge_ready_date: day(drd),
                supersedes: old.map(day),
            },
        );
    }

    fn pathway(&mut self, who: u128, ep: u128, site: &str, when: &str, pathway: Pathway) {
        self.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::PathwayAssigned { pathway },
        );
    }

    fn delay(&mut self, who: u128, ep: u128, site: &str, when: &str, reason: DelayReason) {
        self.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::DelayReasonRecorded { reason, note: None },
        );
    }

    fn service(&mut self, who: u128, ep: u128, site: &str, when: &str, planned: Option<&str>) {
        self.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::ServiceRequested {
                service: code("SCC01"),
            },
        );
        if let Some(planned) = planned {
            self.discharge(
                who,
                ep,
                when,
                site,
                DischargeEvent::DischargeAgreed {
                    service: code("SCC01"),
                    planned_for: day(planned),
                },
            );
        }
    }

    fn discharged(&mut self, who: u128, ep: u128, site: &str, when: &str) {
        self.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::Discharged {
                discharged_at: at(when),
                destination: short("home"),
                destination_code: Some(
                    carewoven_domain::discharge::DischargeDestination::USUAL_RESIDENCE,
                ),
            },
        );
    }

    fn handover(&mut self, who: u128, ep: u128, when: &str) {
        self.discharge(
            who,
            ep,
            when,
            "SCC01",
            DischargeEvent::HandoverAccepted {
                organisation: code("SCC01"),
            },
        );
    }

    fn refer(&mut self, who: u128, r: u128, from: &str, when: &str) {
        self.push(
            who,
            referral(r),
            when,
            from,
            Event::Referral(ReferralEvent::Submitted {
                referral: NewReferral {
                    from_organisation: code(from),
                    to_service: code("SCC01"),
                    priority: Priority::Routine,
                    reason: long("needs support at home"),
                    replaces: None,
                },
            }),
        );
    }

    fn assess(
        &mut self,
        who: u128,
        n: u128,
        r: u128,
        kind: AssessmentKind,
        asked: &str,
        done: &str,
    ) {
        self.push(
            who,
            assessment(n),
            asked,
            "SCC01",
            Event::Assessment(AssessmentEvent::Requested {
                request: AssessmentRequest {
                    kind,
                    assessors: vec![code("SCC01")],
                    referral_id: Some(referral(r)),
                    due_by: None,
                },
            }),
        );
        self.push(
            who,
            assessment(n),
            done,
            "SCC01",
            Event::Assessment(AssessmentEvent::Completed {
                findings: Findings {
                    summary: long("assessed"),
                    outcomes_not_achieved: vec![
                        CareActOutcome::ManagingNutrition,
                        CareActOutcome::PersonalHygiene,
                    ],
                    wellbeing_impact: None,
                    needs_arise_from_impairment_or_illness: true,
                    significant_impact_on_wellbeing: true,
                },
            }),
        );
    }

    fn consent(&mut self, who: u128, n: u128, decision: ConsentDecision, purpose: Purpose) {
        self.push(
            who,
            consent(n),
            "2025-01-02T09:00:00Z",
            "RXH01",
            Event::Consent(ConsentEvent::Recorded {
                terms: ConsentTerms {
                    decision,
                    purpose,
                    partners: vec![code("SCC01")],
                    data_classes: Vec::new(),
                    valid_from: day("2025-01-02"),
                    valid_until: None,
                    capacity_assessed: true,
                },
            }),
        );
    }
}

fn history() -> Vec<RecordedEvent> {
    use DelayReason as R;
    let mut h = History::default();
    // The registry: SCC01 is council adult social care, CNS01 community nursing.
    h.register_orgs(
        &[
            ("SCC01", OrganisationType::LocalAuthority),
            ("CNS01", OrganisationType::CommunityProvider),
        ],
        "2025-01-01T08:00:00Z",
    );
    h.register(A, "Ada", "Lovelock");
    h.register(B, "Bram", "Stoker-Tester");
    h.register(C, "Cleo", "Fictional");
    h.register(D, "Dov", "Optout");
    h.register(E, "Eve", "Withdrawn");
    h.register(F, "Finn", "Direct");

    h.consent(D, 1, ConsentDecision::Deny, Purpose::Research);
    h.consent(E, 2, ConsentDecision::Deny, Purpose::Planning);
    h.push(
        E,
        consent(2),
        "2025-02-01T09:00:00Z",
        "RXH01",
        Event::Consent(ConsentEvent::Withdrawn {
            reason: long("changed her mind"),
        }),
    );
    h.consent(F, 3, ConsentDecision::Deny, Purpose::DirectCare);
    h.consent(A, 4, ConsentDecision::Permit, Purpose::Planning);

    // E4 (D, opted out) and E3 (C) start before the period.
    h.admit(D, 4, "RXH01", "2025-02-15T09:00:00Z");
    h.admit(C, 3, "RYR02", "2025-02-20T12:00:00Z");
    h.discharge(
        C,
        3,
        "2025-02-25T12:00:00Z",
        "RYR02",
        DischargeEvent::ExpectedDischargeDateSet {
            expected: day("2025-03-01"),
        },
    );
    h.ready(C, 3, "RYR02", "2025-03-01T09:00:00Z", "2025-03-01", None);
    h.pathway(C, 3, "RYR02", "2025-03-01T10:00:00Z", Pathway::P2);
    h.delay(C, 3, "RYR02", "2025-03-01T16:00:00Z", R::Pathway2Bed);

    // E1 (A): on the DRD, pathway 0, handover after 5 hours.
    h.admit(A, 1, "RXH01", "2025-03-01T10:00:00Z");
    h.discharge(
        C,
        3,
        "2025-03-02T07:00:00Z",
        "RYR02",
        DischargeEvent::Deteriorated {
            reason: long("new infection"),
        },
    );
    h.admit(B, 2, "RXH01", "2025-03-02T08:00:00Z");
    h.discharge(
        D,
        4,
        "2025-03-03T09:00:00Z",
        "RXH01",
        DischargeEvent::ExpectedDischargeDateSet {
            expected: day("2025-03-04"),
        },
    );
    h.ready(D, 4, "RXH01", "2025-03-04T09:00:00Z", "2025-03-04", None);
    h.pathway(D, 4, "RXH01", "2025-03-04T10:00:00Z", Pathway::P1);
    h.service(D, 4, "RXH01", "2025-03-04T11:00:00Z", Some("2025-03-20"));
    h.discharge(
        A,
        1,
        "2025-03-04T09:00:00Z",
        "RXH01",
        DischargeEvent::ExpectedDischargeDateSet {
            expected: day("2025-03-05"),
        },
    );
    h.ready(A, 1, "RXH01", "2025-03-05T08:00:00Z", "2025-03-05", None);
    h.pathway(A, 1, "RXH01", "2025-03-05T09:00:00Z", Pathway::P0);
    h.discharged(A, 1, "RXH01", "2025-03-05T15:00:00Z");
    h.handover(A, 1, "2025-03-05T20:00:00Z");

    // Referrals R3 (opted out) and R1.
    h.refer(D, 3, "A81001", "2025-03-05T09:00:00Z");
    h.assess(
        D,
        3,
        3,
        AssessmentKind::CareActNeeds,
        "2025-03-05T10:00:00Z",
        "2025-03-06T09:00:00Z",
    );
    h.refer(A, 1, "RXH01", "2025-03-06T09:00:00Z");
    h.push(
        A,
        referral(1),
        "2025-03-06T15:00:00Z",
        "SCC01",
        Event::Referral(ReferralEvent::Accepted),
    );

    // E2 (B): DRD 03-06, pathway 1, discharged 3 days late, handover after 48 hours.
    h.discharge(
        B,
        2,
        "2025-03-03T09:00:00Z",
        "RXH01",
        DischargeEvent::ExpectedDischargeDateSet {
            expected: day("2025-03-06"),
        },
    );
    h.ready(B, 2, "RXH01", "2025-03-06T08:00:00Z", "2025-03-06", None);
    h.pathway(B, 2, "RXH01", "2025-03-06T09:00:00Z", Pathway::P1);
    h.service(B, 2, "RXH01", "2025-03-06T10:00:00Z", None);
    h.delay(B, 2, "RXH01", "2025-03-07T10:00:00Z", R::Pathway1NewCare);
    h.assess(
        A,
        1,
        1,
        AssessmentKind::CareActNeeds,
        "2025-03-06T10:00:00Z",
        "2025-03-08T09:00:00Z",
    );
    h.admit(E, 7, "RXH01", "2025-03-08T00:00:00Z");
    h.discharge(
        B,
        2,
        "2025-03-08T10:00:00Z",
        "RXH01",
        DischargeEvent::DischargeAgreed {
            service: code("SCC01"),
            planned_for: day("2025-03-09"),
        },
    );
    h.discharged(B, 2, "RXH01", "2025-03-09T11:00:00Z");

    // E3 (C): new DRD after deterioration.
    h.ready(
        C,
        3,
        "RYR02",
        "2025-03-10T09:00:00Z",
        "2025-03-10",
        Some("2025-03-01"),
    );
    h.pathway(C, 3, "RYR02", "2025-03-10T10:00:00Z", Pathway::P2);
    h.refer(B, 2, "A81001", "2025-03-10T12:00:00Z");
    h.service(C, 3, "RYR02", "2025-03-10T11:00:00Z", None);
    h.handover(B, 2, "2025-03-11T11:00:00Z");
    h.delay(C, 3, "RYR02", "2025-03-11T16:00:00Z", R::Pathway2Bed);
    h.refer(C, 4, "RYR02", "2025-03-12T09:00:00Z");
    // R4 rejected a day later (24 hours); R1 was accepted after 6 hours (below).
    h.push(
        C,
        referral(4),
        "2025-03-13T09:00:00Z",
        "SCC01",
        Event::Referral(ReferralEvent::Rejected {
            reason: long("not eligible"),
        }),
    );
    // R5 (C): to a community nursing service, which carries out no needs assessment: left
    // out of referral-to-assessment, but its single point of access accepted it in 1 hour.
    h.push(
        C,
        referral(5),
        "2025-03-12T09:00:00Z",
        "RYR02",
        Event::Referral(ReferralEvent::Submitted {
            referral: NewReferral {
                from_organisation: code("RYR02"),
                to_service: code("CNS01"),
                priority: Priority::Routine,
                reason: long("wound care"),
                replaces: None,
            },
        }),
    );
    h.push(
        C,
        referral(5),
        "2025-03-12T10:00:00Z",
        "CNS01",
        Event::Referral(ReferralEvent::Accepted),
    );
    h.assess(
        C,
        4,
        4,
        AssessmentKind::Health,
        "2025-03-12T10:00:00Z",
        "2025-03-13T09:00:00Z",
    );
    h.delay(C, 3, "RYR02", "2025-03-14T16:00:00Z", R::AwaitingTransport);
    h.discharge(
        C,
        3,
        "2025-03-16T10:00:00Z",
        "RYR02",
        DischargeEvent::DischargeAgreed {
            service: code("SCC01"),
            planned_for: day("2025-03-17"),
        },
    );
    h.discharged(C, 3, "RYR02", "2025-03-17T10:00:00Z");

    // E4 (D, opted out) leaves; A is readmitted (E5); E7 (E) waits for a care home.
    h.discharged(D, 4, "RXH01", "2025-03-20T09:00:00Z");
    h.handover(D, 4, "2025-03-20T10:00:00Z");
    h.admit(A, 5, "RXH01", "2025-03-20T09:00:00Z");
    h.assess(
        B,
        2,
        2,
        AssessmentKind::CareActNeeds,
        "2025-03-11T10:00:00Z",
        "2025-03-20T12:00:00Z",
    );
    h.discharge(
        E,
        7,
        "2025-03-15T09:00:00Z",
        "RXH01",
        DischargeEvent::ExpectedDischargeDateSet {
            expected: day("2025-03-20"),
        },
    );
    h.ready(E, 7, "RXH01", "2025-03-20T09:00:00Z", "2025-03-20", None);
    h.pathway(E, 7, "RXH01", "2025-03-20T10:00:00Z", Pathway::P3);
    h.service(E, 7, "RXH01", "2025-03-20T11:00:00Z", None);
    h.delay(E, 7, "RXH01", "2025-03-22T11:00:00Z", R::Pathway3CareHome);

    // After the period: B is readmitted 40 days after discharge (E6).
    h.admit(B, 6, "RYR02", "2025-04-18T11:00:00Z");

    // The report must not depend on the order events are passed in.
    h.events.reverse();
    h.events
}

fn report(events: &[RecordedEvent], organisations: &[Code], opted: &HashSet<Uuid>) -> Report {
    service_review(events, at(PERIOD_FROM), at(PERIOD_TO), organisations, opted)
}

fn bucket(r: &Report, label: &str) -> u64 {
    r.drd_to_discharge_delay
        .distribution
        .iter()
        .find(|b| b.label == label)
        .map(|b| b.discharges)
        .expect("bucket exists")
}

/// Every aggregate of `events` folded, in log order, with the domain's own `evolve`.
fn replay(mut events: Vec<RecordedEvent>) -> BTreeMap<Uuid, AggregateState> {
    events.sort_by_key(|e| e.sequence);
    let mut states: BTreeMap<Uuid, AggregateState> = BTreeMap::new();
    for e in &events {
        let state = states.remove(&e.meta.aggregate_id);
        let next = carewoven_domain::evolve(state, &e.event).expect("replayable history");
        states.insert(e.meta.aggregate_id, next);
    }
    states
}

#[test]
fn the_hand_made_history_replays_with_the_domain_rules() {
    // Every aggregate folds with the domain's own evolve, and E3 ends with the DRD that
    // superseded the first one, as the report assumes.
    let states = replay(history());
    let Some(AggregateState::Discharge(e3)) = states.get(&episode(3)) else {
        panic!("E3 is a discharge episode");
    };
    assert_eq!(e3.discharge_ready_date, Some(day("2025-03-10")));
    assert_eq!(e3.superseded_drds, [day("2025-03-01")]);
    assert_eq!(e3.pathway, Some(Pathway::P2));
}

#[test]
fn opted_out_people_are_those_with_an_unwithdrawn_secondary_use_objection() {
    // D denied research: out. E denied planning but withdrew: in. F denied direct care only
    // (not secondary use): in. A permitted planning: in.
    let out = opted_out(&history());
    assert_eq!(out, HashSet::from([person(D)]));
}

#[test]
fn report_for_all_organisations_matches_the_hand_calculation() {
    let events = history();
    let r = report(&events, &[], &opted_out(&events));
    assert_eq!(r.period_from, at(PERIOD_FROM));
    assert_eq!(r.period_to, at(PERIOD_TO));
    assert!(r.organisations.is_empty());

    // Discharges in the period, D (E4) excluded: E1, E2, E3.
    // Delays: E1 03-05 -> 03-05 = 0; E2 03-06 -> 03-09 = 3; E3 03-10 -> 03-17 = 7 (the
    // superseded DRD 03-01 would give 16). On DRD 1/3 = 33.3%; delayed 2/3 = 66.7%;
    // bed days lost 0 + 3 + 7 = 10.
    let d = &r.drd_to_discharge_delay;
    assert_eq!(d.discharges, 3);
    assert_eq!(d.discharged_on_drd, 1);
    assert_eq!(d.discharged_on_drd_percent, Some(33.3));
    assert_eq!(d.delayed_one_day_or_more, 2);
    assert_eq!(d.delayed_one_day_or_more_percent, Some(66.7));
    assert_eq!(d.bed_days_lost, 10);
    let histogram: Vec<(&str, u64)> = d
        .distribution
        .iter()
        .map(|b| (b.label.as_str(), b.discharges))
        .collect();
    assert_eq!(
        histogram,
        [
            ("0", 1),
            ("1", 0),
            ("2", 0),
            ("3", 1),
            ("4-6", 0),
            ("7-13", 1),
            ("14-20", 0),
            ("21+", 0)
        ]
    );

    // Pathways at discharge: E1 0, E2 1, E3 2 (re-assigned after deterioration): 33.3% each.
    let p = &r.pathway_mix;
    assert_eq!(p.discharges, 3);
    let mix: Vec<(u8, u64, Option<f64>)> = p
        .pathways
        .iter()
        .map(|s| (s.pathway, s.discharges, s.percent))
        .collect();
    assert_eq!(
        mix,
        [
            (0, 1, Some(33.3)),
            (1, 1, Some(33.3)),
            (2, 1, Some(33.3)),
            (3, 0, Some(0.0))
        ]
    );
    assert_eq!(p.no_pathway, 0);

    // Referrals made in the period, R3 (D) excluded: R1 2 days, R2 10 days, R4 only a health
    // assessment (not assessed). Sorted [2, 10], n = 2: median rank ceil(0.5 * 2) = 1 -> 2;
    // p90 rank ceil(0.9 * 2) = 2 -> 10.
    let ra = &r.referral_to_assessment;
    assert_eq!(ra.unit, "days");
    assert_eq!(ra.count, 2);
    assert_eq!(ra.median, Some(2.0));
    assert_eq!(ra.p90, Some(10.0));
    assert_eq!(ra.not_yet, 1);
    assert!(ra.definition.contains("adult social care"));

    // Referral to accepted or rejected, per service: SCC01 R1 6 h, R4 24 h, R2 pending
    // (R3 opted out); CNS01 R5 1 h. Sorted by service code.
    type Wait<'a> = (&'a str, u64, Option<f64>, Option<f64>, u64);
    let waits: Vec<Wait<'_>> = r
        .referral_decision_by_service
        .iter()
        .map(|s| {
            (
                s.service.as_str(),
                s.wait.count,
                s.wait.median,
                s.wait.p90,
                s.wait.not_yet,
            )
        })
        .collect();
    assert_eq!(
        waits,
        vec![
            ("CNS01", 1, Some(1.0), Some(1.0), 0),
            ("SCC01", 2, Some(6.0), Some(24.0), 1),
        ]
    );

    // Handover: E1 15:00 -> 20:00 = 5 h; E2 03-09 11:00 -> 03-11 11:00 = 48 h; E3 none yet.
    // Sorted [5, 48]: median rank 1 -> 5; p90 rank 2 -> 48. (E4's 1 hour is excluded.)
    let ho = &r.handover;
    assert_eq!(ho.unit, "hours");
    assert_eq!(ho.count, 2);
    assert_eq!(ho.median, Some(5.0));
    assert_eq!(ho.p90, Some(48.0));
    assert_eq!(ho.not_yet, 1);

    // Readmission: E1 (A) discharged 03-05 15:00, readmitted 03-20 09:00 = 14.75 days: yes.
    // E2 (B) discharged 03-09 11:00, readmitted 04-18 11:00 = 40 days: no. E3 (C): none.
    // 1 / 3 = 33.3%.
    let ra = &r.readmission_30_day;
    assert_eq!(ra.discharges, 3);
    assert_eq!(ra.readmitted_within_30_days, 1);
    assert_eq!(ra.percent, Some(33.3));

    // Long stays (calendar days, UTC): E1 4, E2 7, E5 12 (to period end), E6 after the
    // period, E4 33 but opted out; E3 02-20 -> 03-17 = 25 (discharged); E7 03-08 -> 04-01 =
    // 24 (still in hospital). Longest first.
    let l = &r.long_stays;
    assert_eq!(l.threshold_days, 21);
    assert_eq!(l.count, 2);
    assert_eq!(
        l.episodes,
        [
            LongStay {
                episode_id: episode(3),
                person_id: person(C),
                site: "RYR02".into(),
                length_of_stay_days: 25,
                still_in_hospital: false,
                // One reason before the deterioration, two after: all recorded on the episode.
                delay_reasons: BTreeMap::from([
                    ("pathway_2_bed".to_owned(), 2),
                    ("awaiting_transport".to_owned(), 1),
                ]),
            },
            LongStay {
                episode_id: episode(7),
                person_id: person(E),
                site: "RXH01".into(),
                length_of_stay_days: 24,
                still_in_hospital: true,
                delay_reasons: BTreeMap::from([("pathway_3_care_home".to_owned(), 1)]),
            },
        ]
    );

    // Nothing about D anywhere in the output.
    let json = to_json(&r);
    assert!(!json.contains(&person(D).to_string()));
    assert!(!json.contains(&episode(4).to_string()));
}

#[test]
fn the_opted_out_person_would_change_every_discharge_figure() {
    // Without the opt-out E4 counts: 4 discharges, delays 0, 3, 7, 16: bed days 26, the
    // 14-20 bucket holds one; E4 (33 days) becomes the longest stay.
    let events = history();
    let r = report(&events, &[], &HashSet::new());
    assert_eq!(r.drd_to_discharge_delay.discharges, 4);
    assert_eq!(r.drd_to_discharge_delay.bed_days_lost, 26);
    assert_eq!(bucket(&r, "14-20"), 1);
    assert_eq!(r.long_stays.count, 3);
    assert_eq!(r.long_stays.episodes[0].episode_id, episode(4));
    // R3 (1 day) joins the referrals: [1, 2, 10], median rank 2 -> 2, p90 rank 3 -> 10.
    assert_eq!(r.referral_to_assessment.count, 3);
    assert_eq!(r.referral_to_assessment.median, Some(2.0));
    assert_eq!(r.referral_to_assessment.p90, Some(10.0));
}

#[test]
fn an_organisation_filter_keeps_only_its_episodes_and_referrals() {
    // RYR02 only: episodes E3 (in period) and E6 (after it); referral R4 (from RYR02).
    // E3: delay 7 days, pathway 2, not readmitted, no handover, 25-day stay.
    let events = history();
    let r = report(&events, &[code("RYR02")], &opted_out(&events));
    assert_eq!(r.organisations, ["RYR02"]);
    let d = &r.drd_to_discharge_delay;
    assert_eq!(
        (d.discharges, d.discharged_on_drd, d.bed_days_lost),
        (1, 0, 10 - 3)
    );
    assert_eq!(d.delayed_one_day_or_more_percent, Some(100.0));
    assert_eq!(bucket(&r, "7-13"), 1);
    assert_eq!(r.pathway_mix.pathways[2].percent, Some(100.0));
    assert_eq!(r.pathway_mix.pathways[0].percent, Some(0.0));
    assert_eq!(r.referral_to_assessment.count, 0);
    assert_eq!(r.referral_to_assessment.median, None);
    assert_eq!(r.referral_to_assessment.not_yet, 1);
    assert_eq!(r.handover.count, 0);
    assert_eq!(r.handover.not_yet, 1);
    assert_eq!(r.readmission_30_day.percent, Some(0.0));
    assert_eq!(r.long_stays.count, 1);
    assert_eq!(r.long_stays.episodes[0].episode_id, episode(3));
    // The receiving service SCC01 brings in every referral to it: R1, R2 (and R4).
    let scc = report(&events, &[code("SCC01")], &opted_out(&events));
    assert_eq!(scc.referral_to_assessment.count, 2);
    assert_eq!(scc.drd_to_discharge_delay.discharges, 0);
    assert_eq!(scc.drd_to_discharge_delay.discharged_on_drd_percent, None);
}

#[test]
fn an_empty_history_gives_an_empty_report() {
    let r = report(&[], &[], &HashSet::new());
    assert_eq!(r.drd_to_discharge_delay.discharges, 0);
    assert_eq!(r.pathway_mix.pathways[0].percent, None);
    assert_eq!(r.handover.median, None);
    assert_eq!(r.long_stays.count, 0);
    assert_eq!(r.tasks_on_time.all.finished, 0);
    assert_eq!(r.tasks_on_time.all.on_time_percent, None);
    assert_eq!(r.care_plan_reviews.people_with_a_plan, 0);
    assert_eq!(r.care_plan_reviews.overdue_percent, None);
    assert_eq!(r.care_plan_reviews.days_overdue_median, None);
    let html = to_html(&r);
    assert_eq!(html.matches("<svg").count(), 3);
}

#[test]
fn json_round_trips() {
    let events = history();
    let r = report(&events, &[code("RXH01")], &opted_out(&events));
    let json = to_json(&r);
    let back: Report = serde_json::from_str(&json).expect("report JSON parses");
    assert_eq!(back, r);
    assert!(json.contains("\"definition\""));
}

#[test]
fn html_has_a_chart_per_chart_metric_every_definition_and_no_names() {
    let events = history();
    let r = report(&events, &[], &opted_out(&events));
    let html = to_html(&r);
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Three charts: delay distribution, pathway mix and how tasks ended.
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("</svg>").count(), 3);
    for definition in [
        DELAY_DEFINITION,
        PATHWAY_DEFINITION,
        REFERRAL_DEFINITION,
        HANDOVER_DEFINITION,
        READMISSION_DEFINITION,
        LONG_STAY_DEFINITION,
        TASKS_DEFINITION,
        REVIEWS_DEFINITION,
        OPT_OUT_NOTE,
    ] {
        assert!(html.contains(&html::escape(definition)), "{definition}");
    }
    assert!(html.contains("2025-03-01 00:00 UTC"));
    assert!(html.contains("all organisations"));
    assert!(html.contains("Bed days lost</dt><dd>10</dd>"));
    assert!(html.contains(&episode(7).to_string()));
    // Self-contained, no script, no personal data beyond pseudonymous ids.
    for absent in [
        "<script", "http://", "https://", "src=", "Lovelock", "Ada", "Stoker", "999",
    ] {
        let without_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!without_svg_ns.contains(absent), "{absent}");
    }
}

#[test]
fn html_escapes_text() {
    assert_eq!(
        html::escape(r#"<b>&"it's"</b>"#),
        "&lt;b&gt;&amp;&quot;it&#39;s&quot;&lt;/b&gt;"
    );
    // Codes are validated, but a report can be deserialised from anywhere: escape it all.
    let events = history();
    let mut r = report(&events, &[], &opted_out(&events));
    r.organisations = vec!["<script>alert('x')</script>".into(), "A&B".into()];
    r.long_stays.episodes[0].site = "<img src=x>".into();
    let html = to_html(&r);
    assert!(!html.contains("<script"));
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;, A&amp;B"));
    assert!(html.contains("&lt;img src=x&gt;"));
}

/// NHS England's tables for a hand-worked January 2025 at provider RXH01 (winter: UK days are
/// UTC days). Every expected number below was worked out by hand from this history.
///
/// Discharges from RXH01 in January (DRD -> discharged, delay, pathway, destination code):
/// - E21 (P): 01-02 -> 01-02, 0, P1, 19   - E22 (Q): 01-03 -> 01-04, 1, P0, 19
/// - E23 (R, aged 54): 01-05 -> 01-08, 3, P1, 19
/// - E24 (S): 01-06 -> 01-11, 5, P2, 51   - E25 (T): 01-10 -> 01-20, 10, P3, 85
/// - E26 (U): 01-01 -> 01-31 23:30, 30, P1, 19   - E27 (V): 01-05 -> 01-21, 16, P2, 51
/// - E30 (W): 01-12 -> 01-14, 2, P0, 29
///
/// Not counted: E28 (RYR02, another provider), E29 (left 02-01 00:30, February).
///
/// Delays 0, 1, 3, 5, 10, 30, 16, 2: 8 discharges, 1 on the DRD (12.5%), 7 after (87.5%);
/// bands 0: 1 (12.5%, 0 bed days), 1: 1 (12.5%, 1), 2-3: 2 (25%, 5), 4-6: 1 (12.5%, 5),
/// 7-13: 1 (12.5%, 10), 14-20: 1 (12.5%, 16), 21+: 1 (12.5%, 30); 67 bed days lost;
/// average 67 / 8 = 8.375 -> 8.38 days, excluding 0-day delays 67 / 7 = 9.571 -> 9.57.
///
/// Not discharged at 2025-02-01 00:00 (ready on or before 01-31, still in hospital):
/// E29 (latest reason awaiting transport, after pathway 1 new care), E31 (pathway 3 care
/// home, recorded before the national list as the legacy value), E32 (no reason); not E33
/// (deteriorated, DRD superseded), not E34 (DRD recorded in February), not E28's site.
///
/// Reablement (history read to 2025-05-01): P1/P2 discharges aged 65+ are E21, E24, E26,
/// E27 (E23 is 54). E26's 91st day is 05-02: follow-up incomplete. E21: readmitted 03-01,
/// home 03-10: at home on 04-03. E24: readmitted 04-10 until 04-20: in hospital on 04-12.
/// E27: readmitted 02-10, discharged 02-20 to a care home (85): not at home. 1 of 3: 33.3%.
#[test]
fn nhs_england_tables_for_a_hand_worked_month() {
    use carewoven_domain::discharge::DischargeDestination as Dest;
    let mut h = History::default();
    for who in 21..=34 {
        let born = if who == 23 {
            "1970-06-01"
        } else {
            "1940-01-01"
        };
        h.register_born(who, "Test", "Person", born, "2024-12-01T09:00:00Z");
    }
    let leave = |h: &mut History, who: u128, ep: u128, site: &str, when: &str, code: Dest| {
        h.discharge(
            who,
            ep,
            when,
            site,
            DischargeEvent::Discharged {
                discharged_at: at(when),
                destination: short("somewhere"),
                destination_code: Some(code),
            },
        );
    };
    // (person = episode number, site, DRD, discharged at, pathway, destination)
    let stays: [(u128, &str, &str, &str, Pathway, Dest); 10] = [
        (
            21,
            "RXH01",
            "2025-01-02",
            "2025-01-02T15:00:00Z",
            Pathway::P1,
            Dest::USUAL_RESIDENCE,
        ),
        (
            22,
            "RXH01",
            "2025-01-03",
            "2025-01-04T10:00:00Z",
            Pathway::P0,
            Dest::USUAL_RESIDENCE,
        ),
        (
            23,
            "RXH01",
            "2025-01-05",
            "2025-01-08T10:00:00Z",
            Pathway::P1,
            Dest::USUAL_RESIDENCE,
        ),
        (
            24,
            "RXH01",
            "2025-01-06",
            "2025-01-11T10:00:00Z",
            Pathway::P2,
            Dest::OTHER_NHS_HOSPITAL,
        ),
        (
            25,
            "RXH01",
            "2025-01-10",
            "2025-01-20T10:00:00Z",
            Pathway::P3,
            Dest::INDEPENDENT_CARE_HOME,
        ),
        (
            26,
            "RXH01",
            "2025-01-01",
            "2025-01-31T23:30:00Z",
            Pathway::P1,
            Dest::USUAL_RESIDENCE,
        ),
        (
            27,
            "RXH01",
            "2025-01-05",
            "2025-01-21T10:00:00Z",
            Pathway::P2,
            Dest::OTHER_NHS_HOSPITAL,
        ),
        (
            28,
            "RYR02",
            "2025-01-05",
            "2025-01-09T10:00:00Z",
            Pathway::P1,
            Dest::USUAL_RESIDENCE,
        ),
        (
            29,
            "RXH01",
            "2025-01-25",
            "2025-02-01T00:30:00Z",
            Pathway::P1,
            Dest::USUAL_RESIDENCE,
        ),
        (
            30,
            "RXH01",
            "2025-01-12",
            "2025-01-14T10:00:00Z",
            Pathway::P0,
            Dest::TEMPORARY_RESIDENCE,
        ),
    ];
    for (n, site, drd, left, pathway, dest) in stays {
        h.admit(n, n, site, "2024-12-30T08:00:00Z");
        h.ready(n, n, site, &format!("{drd}T08:00:00Z"), drd, None);
        h.pathway(n, n, site, &format!("{drd}T09:00:00Z"), pathway);
        if n == 29 {
            h.delay(
                n,
                n,
                site,
                "2025-01-26T09:00:00Z",
                DelayReason::Pathway1NewCare,
            );
            h.delay(
                n,
                n,
                site,
                "2025-01-31T09:00:00Z",
                DelayReason::AwaitingTransport,
            );
        }
        leave(&mut h, n, n, site, left, dest);
    }
    // Still in hospital at the month end.
    h.admit(31, 31, "RXH01", "2025-01-15T08:00:00Z");
    h.ready(31, 31, "RXH01", "2025-01-20T08:00:00Z", "2025-01-20", None);
    h.delay(
        31,
        31,
        "RXH01",
        "2025-01-21T08:00:00Z",
        DelayReason::Pathway3CareHome,
    );
    h.admit(32, 32, "RXH01", "2025-01-20T08:00:00Z");
    h.ready(32, 32, "RXH01", "2025-01-28T08:00:00Z", "2025-01-28", None);
    h.admit(33, 33, "RXH01", "2025-01-20T08:00:00Z");
    h.ready(33, 33, "RXH01", "2025-01-25T08:00:00Z", "2025-01-25", None);
    h.discharge(
        33,
        33,
        "2025-01-27T08:00:00Z",
        "RXH01",
        DischargeEvent::Deteriorated {
            reason: long("worse"),
        },
    );
    h.admit(34, 34, "RXH01", "2025-01-22T08:00:00Z");
    h.ready(34, 34, "RXH01", "2025-02-03T08:00:00Z", "2025-02-03", None);
    // Readmissions for the reablement follow-up.
    h.admit(21, 41, "RYR02", "2025-03-01T08:00:00Z");
    leave(
        &mut h,
        21,
        41,
        "RYR02",
        "2025-03-10T10:00:00Z",
        Dest::USUAL_RESIDENCE,
    );
    h.admit(24, 42, "RXH01", "2025-04-10T09:00:00Z");
    leave(
        &mut h,
        24,
        42,
        "RXH01",
        "2025-04-20T10:00:00Z",
        Dest::USUAL_RESIDENCE,
    );
    h.admit(27, 43, "RXH01", "2025-02-10T09:00:00Z");
    leave(
        &mut h,
        27,
        43,
        "RXH01",
        "2025-02-20T10:00:00Z",
        Dest::INDEPENDENT_CARE_HOME,
    );

    let t = nhs_tables(
        &h.events,
        2025,
        1,
        &[code("RXH01")],
        &HashSet::new(),
        at("2025-05-01T00:00:00Z"),
    )
    .expect("a real month");
    assert_eq!(t.month, "2025-01");
    assert_eq!(t.provider, vec!["RXH01".to_owned()]);

    let d = &t.drd_statistics;
    assert_eq!(d.total_discharges, 8);
    assert_eq!(
        (d.discharged_on_drd, d.discharged_on_drd_percent),
        (1, Some(12.5))
    );
    assert_eq!(
        (
            d.discharged_one_plus_days_after,
            d.discharged_one_plus_days_after_percent
        ),
        (7, Some(87.5))
    );
    let bands: Vec<(&str, u64, Option<f64>, u64)> = d
        .bands
        .iter()
        .map(|b| (b.label.as_str(), b.discharges, b.percent, b.bed_days_lost))
        .collect();
    assert_eq!(
        bands,
        vec![
            ("0", 1, Some(12.5), 0),
            ("1", 1, Some(12.5), 1),
            ("2-3", 2, Some(25.0), 5),
            ("4-6", 1, Some(12.5), 5),
            ("7-13", 1, Some(12.5), 10),
            ("14-20", 1, Some(12.5), 16),
            ("21+", 1, Some(12.5), 30),
        ]
    );
    assert_eq!(d.bed_days_lost, 67);
    assert_eq!(d.average_days_including_zero, Some(8.38));
    assert_eq!(d.average_days_excluding_zero, Some(9.57));

    let s = &t.sitrep_discharges;
    assert_eq!(s.total, 8);
    let rows: Vec<(Option<u8>, Option<&str>, u64)> = s
        .rows
        .iter()
        .map(|r| (r.pathway, r.destination_code.as_deref(), r.discharges))
        .collect();
    assert_eq!(
        rows,
        vec![
            (Some(0), Some("19"), 1),
            (Some(0), Some("29"), 1),
            (Some(1), Some("19"), 3),
            (Some(2), Some("51"), 2),
            (Some(3), Some("85"), 1),
        ]
    );

    let s = &t.sitrep_delays;
    assert_eq!(s.at, at("2025-02-01T00:00:00Z"));
    assert_eq!(s.total, 3);
    let rows: Vec<(Option<&str>, u64)> = s
        .rows
        .iter()
        .map(|r| (r.reason_code.as_deref(), r.people))
        .collect();
    assert_eq!(
        rows,
        vec![
            (Some("awaiting_transport"), 1),
            (Some("pathway_3_care_home"), 1),
            (None, 1)
        ]
    );

    let r = &t.reablement;
    assert_eq!(
        (
            r.cohort,
            r.at_home_after_91_days,
            r.percent,
            r.follow_up_incomplete
        ),
        (3, 1, Some(33.3), 1)
    );

    // Each table as CSV, with its figures.
    let names: Vec<&str> = t.csv().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, CSV_FILES);
    let csv: BTreeMap<&str, String> = t.csv().into_iter().collect();
    assert_eq!(
        csv["drd_summary.csv"],
        "month,provider,total_discharges,percent_on_drd,percent_one_plus_days_after,\
bed_days_lost,average_days_including_zero,average_days_excluding_zero\n\
2025-01,RXH01,8,12.5,87.5,67,8.38,9.57\n"
    );
    assert!(csv["drd_delay_bands.csv"].contains("2025-01,RXH01,2-3,2,25,5\n"));
    assert!(csv["sitrep_discharges.csv"].contains("2025-01,RXH01,2,51,"));
    assert!(csv["sitrep_delays.csv"].contains("2025-01,RXH01,,no reason recorded,1\n"));
    assert_eq!(
        csv["reablement_91_days.csv"].lines().nth(1),
        Some("2025-01,RXH01,3,1,33.3,1")
    );

    // In the report's JSON and HTML, each with its definition.
    let mut report = service_review(
        &h.events,
        at("2025-01-01T00:00:00Z"),
        at("2025-05-01T00:00:00Z"),
        &[code("RXH01")],
        &HashSet::new(),
    );
    report.nhs_tables = Some(t.clone());
    let json: serde_json::Value = serde_json::from_str(&to_json(&report)).expect("JSON");
    assert_eq!(json["nhs_tables"]["drd_statistics"]["bed_days_lost"], 67);
    let html = to_html(&report);
    for needle in [
        "Discharge Ready Date statistics",
        "People not discharged, by delay reason",
        "Still at home 91 days after discharge",
        "aged 65 or over",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    // A month that does not exist gives nothing.
    assert!(nhs_tables(&h.events, 2025, 13, &[], &HashSet::new(), at(PERIOD_TO)).is_none());
}
