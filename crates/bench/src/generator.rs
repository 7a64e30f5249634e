//! The deterministic synthetic log shared by the benchmarks: a realistic mix of people,
//! referrals, assessments, care teams and plans, consents, discharge episodes through the
//! discharge-to-assess states (pathway mix about 50/45/4/1), meetings and feedback, written
//! straight into JetStream with the real encoding, subjects and fingerprint header. The same
//! seed gives the same log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use carewoven_domain::assessment::{
    AssessmentEvent, AssessmentKind, AssessmentRequest, CareActOutcome, Eligibility, Findings,
};
use carewoven_domain::care_plan::{Activity, CarePlanEvent, PlanContent};
use carewoven_domain::care_team::{CareTeamEvent, CareTeamRole, MemberRef};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, ConsentTerms, DataClass, Purpose};
use carewoven_domain::discharge::{DelayReason, DischargeDestination, DischargeEvent, Pathway};
use carewoven_domain::feedback::{FeedbackEvent, FeedbackRecord, FeedbackSource};
use carewoven_domain::meeting::{MeetingAction, MeetingEvent, MeetingRecord};
use carewoven_domain::person::{Carer, Correction, PersonEvent, Profile};
use carewoven_domain::referral::{NewReferral, Priority, ReferralEvent};
use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
use carewoven_domain::{AggregateKind, Event, EventMeta};
use carewoven_eventlog::{FINGERPRINT_HEADER, subjects};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use uuid::Uuid;

/// People whose stories are being written at any one time (their events interleave).
const ACTIVE_STORIES: usize = 2000;
/// Publish acks awaited at most this far behind.
const ACK_WINDOW: usize = 16_384;

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (no rand crate): splitmix64 seeding, xorshift64*.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits (an endless generator, so not an `Iterator`).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }

    pub fn per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Between `low` and `high` distinct items, in a random rotation of the list.
    pub fn distinct<'a, T>(&mut self, items: &'a [T], low: u64, high: u64) -> Vec<&'a T> {
        let count = self.range(low, high) as usize;
        let start = self.below(items.len() as u64) as usize;
        (0..count.min(items.len()))
            .map(|i| &items[(start + i) % items.len()])
            .collect()
    }

    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        Uuid::new_v8(bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// The synthetic log

fn code(s: &str) -> Code {
    Code::parse("code", s).expect("valid code")
}

fn short(s: &str) -> ShortText {
    ShortText::parse("text", s).expect("valid short text")
}

fn long(s: &str) -> LongText {
    LongText::parse("text", s).expect("valid long text")
}

fn days(n: u64) -> chrono::Days {
    chrono::Days::new(n)
}

const HOSPITALS: [&str; 4] = ["RXH01", "RXH02", "RYJ01", "RAL01"];
const WARDS: [&str; 6] = [
    "Ward 7",
    "Ward 12",
    "Acute Medical Unit",
    "Elderly Care 3",
    "Orthopaedics 2",
    "Stroke Unit",
];
const REFERRAL_SERVICES: [&str; 6] = [
    "SPA01",
    "ASC-D2A",
    "REABLE-1",
    "CNURSE-1",
    "THERAPY-2",
    "MH-TEAM-1",
];
const P1_SERVICES: [&str; 3] = ["HOMECARE-1", "HOMECARE-2", "REABLE-1"];
const P2_SERVICES: [&str; 2] = ["REHAB-BEDS-1", "COMMHOSP-1"];
const P3_SERVICES: [&str; 2] = ["CAREHOME-1", "CAREHOME-2"];
const ASSESSORS: [&str; 4] = ["COUNCIL1", "CNURSE-1", "THERAPY-2", "MH-TEAM-1"];
const GPS: [&str; 5] = [
    "GP-A81001",
    "GP-A81002",
    "GP-B82010",
    "GP-C83044",
    "GP-D84100",
];
const TEAM: [(&str, Option<&str>, CareTeamRole); 8] = [
    ("GP-A81001", None, CareTeamRole::GeneralPractice),
    ("CNURSE-1", Some("P1"), CareTeamRole::CommunityNursing),
    ("CNURSE-1", Some("P2"), CareTeamRole::CommunityNursing),
    ("COUNCIL1", Some("SW3"), CareTeamRole::SocialWorker),
    ("THERAPY-2", None, CareTeamRole::Therapist),
    ("MH-TEAM-1", Some("CPN7"), CareTeamRole::MentalHealth),
    ("AGEUK-1", None, CareTeamRole::Voluntary),
    ("RXH01", Some("DR12"), CareTeamRole::HospitalTeam),
];
const GIVEN: [&str; 10] = [
    "Ada", "Bernard", "Cecily", "Dennis", "Edith", "Frank", "Gwen", "Harold", "Iris", "Jack",
];
const FAMILY: [&str; 10] = [
    "Example",
    "Sample",
    "Testwood",
    "Placeholder",
    "Mockford",
    "Dummer",
    "Fictive",
    "Synth",
    "Madeup",
    "Notreal",
];
const WHAT_MATTERS: [&str; 5] = [
    "Getting back to my allotment",
    "Staying in my own home with my cat",
    "Seeing my grandchildren on Sundays",
    "Being able to go to church",
    "Walking to the shops on my own",
];
const REASONS: [&str; 5] = [
    "Needs support at home after discharge",
    "Reduced mobility after a fall; needs reablement",
    "Carer breakdown; review of care and support needs",
    "Wound care and medication support",
    "Memory concerns raised by family",
];
const GOALS: [&str; 5] = [
    "Walk to the shop with a frame",
    "Make a hot drink safely",
    "Manage own medication with a dosette box",
    "Get in and out of the bath with equipment",
    "Keep attending the lunch club",
];
const OUTCOMES: [CareActOutcome; 10] = [
    CareActOutcome::ManagingNutrition,
    CareActOutcome::PersonalHygiene,
    CareActOutcome::ManagingToiletNeeds,
    CareActOutcome::BeingAppropriatelyClothed,
    CareActOutcome::UsingTheHomeSafely,
    CareActOutcome::MaintainingAHabitableHome,
    CareActOutcome::FamilyAndPersonalRelationships,
    CareActOutcome::WorkTrainingEducationVolunteering,
    CareActOutcome::UsingCommunityServices,
    CareActOutcome::CaringResponsibilities,
];
const DATA_CLASSES: [DataClass; 9] = [
    DataClass::Demographics,
    DataClass::Contact,
    DataClass::Referrals,
    DataClass::Assessments,
    DataClass::CarePlan,
    DataClass::CareTeam,
    DataClass::Discharge,
    DataClass::Meetings,
    DataClass::Feedback,
];

/// One event of a person's story, before it gets its place in the log.
struct Step {
    aggregate: Uuid,
    org: &'static str,
    event: Event,
}

fn step(aggregate: Uuid, org: &'static str, event: Event) -> Step {
    Step {
        aggregate,
        org,
        event,
    }
}

/// A person's events, in an order each aggregate accepts (registration first).
struct Story {
    person: Uuid,
    /// The registered general practice (the scale benchmark's mix only).
    gp: Option<&'static str>,
    steps: VecDeque<Step>,
    versions: HashMap<(AggregateKind, Uuid), u64>,
}

/// A synthetic NHS number from the 999 test range with a valid modulus-11 check digit.
fn nhs_number(counter: &mut u64) -> NhsNumber {
    loop {
        let body = format!("999{:06}", *counter % 1_000_000);
        *counter += 1;
        let digits: [u8; 9] = body.as_bytes().try_into().expect("nine digits");
        if let Some(check) = carewoven_domain::values::check_digit(&digits) {
            return NhsNumber::parse("nhs_number", &format!("{body}{check}"))
                .expect("valid test number");
        }
    }
}

fn story(
    rng: &mut Rng,
    person: Uuid,
    nhs: NhsNumber,
    start: DateTime<Utc>,
    gp: Option<&'static str>,
) -> Story {
    let d0 = carewoven_domain::values::uk_date(start);
    let hospital: &'static str = rng.pick(&HOSPITALS);
    let mut lists: Vec<Vec<Step>> = Vec::new();

    // Person.
    let profile = Profile {
        nhs_number: nhs,
        given_name: short(rng.pick(&GIVEN)),
        family_name: short(rng.pick(&FAMILY)),
        date_of_birth: NaiveDate::from_ymd_opt(
            1925 + rng.below(65) as i32,
            1 + rng.below(12) as u32,
            1 + rng.below(28) as u32,
        )
        .expect("valid date"),
        contact: rng
            .per_mille(700)
            .then(|| long(&format!("01632 96{:04}", rng.below(10_000)))),
        what_matters: rng.per_mille(600).then(|| long(rng.pick(&WHAT_MATTERS))),
        communication_needs: rng
            .per_mille(100)
            .then(|| long("Hard of hearing; prefers face to face")),
        carers: if rng.per_mille(300) {
            vec![Carer {
                name: short("Bea Example"),
                relationship: short("Daughter"),
                contact: Some(short("07700 900123")),
            }]
        } else {
            Vec::new()
        },
        registered_gp: gp.map(code),
    };
    let registered = step(
        person,
        hospital,
        Event::Person(PersonEvent::Registered { profile }),
    );
    if rng.per_mille(50) {
        lists.push(vec![step(
            person,
            hospital,
            Event::Person(PersonEvent::DetailsCorrected {
                correction: Correction {
                    contact: Some(long("01632 960999")),
                    ..Correction::default()
                },
                reason: long("Moved house"),
            }),
        )]);
    }

    // Care team (the aggregate id is the person id).
    let members = rng.distinct(&TEAM, 1, 3);
    let mut team = Vec::new();
    let refs: Vec<MemberRef> = members
        .iter()
        .map(|(org, practitioner, _)| MemberRef {
            organisation: code(org),
            practitioner: practitioner.map(code),
        })
        .collect();
    for ((org, _, role), member) in members.iter().zip(&refs) {
        team.push(step(
            person,
            org,
            Event::CareTeam(CareTeamEvent::MemberAdded {
                member: member.clone(),
                role: *role,
                since: d0 - days(30 + rng.below(300)),
            }),
        ));
    }
    if rng.per_mille(700) {
        team.push(step(
            person,
            members[0].0,
            Event::CareTeam(CareTeamEvent::CoordinatorNamed {
                member: refs[0].clone(),
            }),
        ));
    }
    if refs.len() > 1 && rng.per_mille(150) {
        let last = refs.len() - 1;
        team.push(step(
            person,
            members[last].0,
            Event::CareTeam(CareTeamEvent::MemberRemoved {
                member: refs[last].clone(),
                until: d0 + days(20),
                reason: long("No longer involved"),
            }),
        ));
    }
    lists.push(team);

    // Referrals.
    let referrals = match rng.below(100) {
        0..50 => 1,
        50..85 => 2,
        _ => 3,
    };
    let mut first_referral = None;
    for _ in 0..referrals {
        let id = rng.uuid();
        first_referral.get_or_insert(id);
        let service: &'static str = rng.pick(&REFERRAL_SERVICES);
        let priority = match rng.below(100) {
            0..40 => Priority::Routine,
            40..75 => Priority::Urgent,
            75..95 => Priority::Asap,
            _ => Priority::Stat,
        };
        let r = |e: ReferralEvent| Event::Referral(e);
        let mut list = vec![step(
            id,
            hospital,
            r(ReferralEvent::Submitted {
                referral: NewReferral {
                    from_organisation: code(hospital),
                    to_service: code(service),
                    priority,
                    reason: long(rng.pick(&REASONS)),
                    replaces: None,
                },
            }),
        )];
        match rng.below(100) {
            0..8 => {
                list.push(step(id, service, r(ReferralEvent::Received)));
                list.push(step(
                    id,
                    service,
                    r(ReferralEvent::Rejected {
                        reason: long("Does not meet the service criteria"),
                    }),
                ));
            }
            8..12 => {
                list.push(step(id, service, r(ReferralEvent::Received)));
                list.push(step(
                    id,
                    hospital,
                    r(ReferralEvent::Cancelled {
                        reason: long("No longer needed"),
                    }),
                ));
            }
            _ => {
                list.push(step(id, service, r(ReferralEvent::Received)));
                list.push(step(id, service, r(ReferralEvent::Accepted)));
                let hold = |list: &mut Vec<Step>| {
                    list.push(step(
                        id,
                        service,
                        r(ReferralEvent::PutOnHold {
                            reason: long("Person in hospital"),
                        }),
                    ));
                    list.push(step(id, service, r(ReferralEvent::Resumed)));
                };
                if rng.per_mille(100) {
                    hold(&mut list);
                }
                list.push(step(id, service, r(ReferralEvent::Started)));
                if rng.per_mille(50) {
                    hold(&mut list);
                }
                if rng.per_mille(950) {
                    list.push(step(id, service, r(ReferralEvent::Completed)));
                } else {
                    list.push(step(
                        id,
                        service,
                        r(ReferralEvent::Failed {
                            reason: long("Could not make contact"),
                        }),
                    ));
                }
            }
        }
        lists.push(list);
    }

    // Assessments.
    let assessments = match rng.below(100) {
        0..40 => 0,
        40..85 => 1,
        _ => 2,
    };
    for _ in 0..assessments {
        let id = rng.uuid();
        let kind = match rng.below(100) {
            0..50 => AssessmentKind::CareActNeeds,
            50..70 => AssessmentKind::Health,
            70..90 => AssessmentKind::Therapy,
            _ => AssessmentKind::Carers,
        };
        let joint = if rng.per_mille(400) { 2 } else { 1 };
        let assessors = rng.distinct(&ASSESSORS, joint, joint);
        let lead: &'static str = assessors[0];
        let a = |e: AssessmentEvent| Event::Assessment(e);
        let mut list = vec![step(
            id,
            lead,
            a(AssessmentEvent::Requested {
                request: AssessmentRequest {
                    kind,
                    assessors: assessors.iter().map(|o| code(o)).collect(),
                    referral_id: if rng.per_mille(500) {
                        first_referral
                    } else {
                        None
                    },
                    due_by: Some(d0 + days(14)),
                },
            }),
        )];
        if assessors.len() > 1 {
            for org in &assessors {
                list.push(step(
                    id,
                    org,
                    a(AssessmentEvent::ContributionRecorded {
                        organisation: code(org),
                        summary: long("Seen at home; notes recorded"),
                    }),
                ));
            }
        }
        if rng.per_mille(70) {
            list.push(step(
                id,
                lead,
                a(AssessmentEvent::Cancelled {
                    reason: long("Person declined"),
                }),
            ));
        } else {
            let outcomes = rng.distinct(&OUTCOMES, 0, 4).into_iter().copied().collect();
            let findings = Findings {
                summary: long("Needs help with meals, washing and dressing"),
                outcomes_not_achieved: outcomes,
                wellbeing_impact: rng
                    .per_mille(600)
                    .then(|| long("Significant impact on daily life")),
                needs_arise_from_impairment_or_illness: rng.per_mille(800),
                significant_impact_on_wellbeing: rng.per_mille(700),
            };
            let eligibility = Eligibility::determine(&findings);
            list.push(step(id, lead, a(AssessmentEvent::Completed { findings })));
            if kind.is_care_act() {
                list.push(step(
                    id,
                    lead,
                    a(AssessmentEvent::EligibilityDetermined { eligibility }),
                ));
            }
        }
        lists.push(list);
    }

    // Care plan (the aggregate id is the person id).
    if rng.per_mille(600) {
        let plan = |rng: &mut Rng| PlanContent {
            goals: rng
                .distinct(&GOALS, 1, 3)
                .into_iter()
                .map(|g| long(g))
                .collect(),
            activities: (0..1 + rng.below(3))
                .map(|_| Activity {
                    description: long("Daily visit to support personal care"),
                    responsible_organisation: code(rng.pick(&P1_SERVICES)),
                    status: carewoven_domain::care_plan::ActivityStatus::NotStarted,
                    status_reason: None,
                })
                .collect(),
            review_date: d0 + days(90),
        };
        let org: &'static str = rng.pick(&GPS);
        let mut list = vec![step(
            person,
            org,
            Event::CarePlan(CarePlanEvent::Agreed {
                plan_version: 1,
                plan: plan(rng),
            }),
        )];
        let revisions = match rng.below(100) {
            0..50 => 0,
            50..85 => 1,
            _ => 2,
        };
        for v in 0..revisions {
            list.push(step(
                person,
                org,
                Event::CarePlan(CarePlanEvent::Revised {
                    plan_version: 2 + v,
                    plan: plan(rng),
                    reason: long("Reviewed with the person and their daughter"),
                    changes: Vec::new(),
                }),
            ));
        }
        lists.push(list);
    }

    // Consents.
    let consents = match rng.below(100) {
        0..30 => 0,
        30..80 => 1,
        _ => 2,
    };
    for _ in 0..consents {
        let id = rng.uuid();
        let org: &'static str = rng.pick(&GPS);
        let terms = ConsentTerms {
            decision: if rng.per_mille(900) {
                ConsentDecision::Permit
            } else {
                ConsentDecision::Deny
            },
            purpose: rng.pick(&[
                Purpose::DirectCare,
                Purpose::CareCoordination,
                Purpose::Research,
                Purpose::Planning,
            ]),
            partners: rng
                .distinct(&ASSESSORS, 1, 3)
                .into_iter()
                .map(|p| code(p))
                .collect(),
            data_classes: rng
                .distinct(&DATA_CLASSES, 0, 3)
                .into_iter()
                .copied()
                .collect(),
            valid_from: d0,
            valid_until: rng.per_mille(300).then(|| d0 + days(365)),
            capacity_assessed: rng.per_mille(800),
        };
        let mut list = vec![step(
            id,
            org,
            Event::Consent(ConsentEvent::Recorded { terms }),
        )];
        if rng.per_mille(100) {
            list.push(step(
                id,
                org,
                Event::Consent(ConsentEvent::Withdrawn {
                    reason: long("Changed their mind"),
                }),
            ));
        }
        lists.push(list);
    }

    // Discharge episodes.
    let episodes = if rng.per_mille(750) { 1 } else { 2 };
    for j in 0..episodes {
        let mut list = episode(rng, hospital, start + chrono::Duration::days(25 * j));
        // Some people's latest episode is still under way (many of them on the board).
        if j == episodes - 1 && rng.per_mille(200) && list.len() > 1 {
            let keep = 1 + rng.below(list.len() as u64 - 1) as usize;
            list.truncate(keep);
        }
        lists.push(list);
    }

    // Meetings.
    if rng.per_mille(300) {
        let id = rng.uuid();
        let org: &'static str = rng.pick(&ASSESSORS);
        let actions = 1 + rng.below(3) as u32;
        let mut list = vec![step(
            id,
            org,
            Event::Meeting(MeetingEvent::Recorded {
                meeting: MeetingRecord {
                    held_at: start + chrono::Duration::days(5),
                    attendees: rng
                        .distinct(&ASSESSORS, 2, 4)
                        .into_iter()
                        .map(|o| code(o))
                        .collect(),
                    decisions: vec![long("Start reablement at home")],
                    actions: (0..actions)
                        .map(|_| MeetingAction {
                            description: long("Order a perching stool"),
                            owner: code(rng.pick(&ASSESSORS)),
                            due_by: d0 + days(10),
                        })
                        .collect(),
                },
            }),
        )];
        for action in 1..=actions {
            if rng.per_mille(600) {
                list.push(step(
                    id,
                    org,
                    Event::Meeting(MeetingEvent::ActionCompleted {
                        action,
                        note: rng.per_mille(500).then(|| long("Done")),
                    }),
                ));
            }
        }
        lists.push(list);
    }

    // Feedback.
    let feedback = match rng.below(100) {
        0..70 => 0,
        70..90 => 1,
        _ => 2,
    };
    for _ in 0..feedback {
        lists.push(vec![step(
            rng.uuid(),
            hospital,
            Event::Feedback(FeedbackEvent::Recorded {
                feedback: FeedbackRecord {
                    source: if rng.per_mille(600) {
                        FeedbackSource::Person
                    } else {
                        FeedbackSource::Carer
                    },
                    anonymous: rng.per_mille(300),
                    text: long("Staff were kind and explained everything"),
                    rating: rng.per_mille(700).then(|| 1 + rng.below(5) as u8),
                },
            }),
        )]);
    }

    // Interleave the aggregates, each in its own order; registration first.
    let mut steps = VecDeque::with_capacity(64);
    steps.push_back(registered);
    let mut lists: Vec<VecDeque<Step>> = lists
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(VecDeque::from)
        .collect();
    let mut remaining: usize = lists.iter().map(VecDeque::len).sum();
    while remaining > 0 {
        let mut r = rng.below(remaining as u64) as usize;
        for list in &mut lists {
            if r < list.len() {
                steps.extend(list.pop_front());
                break;
            }
            r -= list.len();
        }
        remaining -= 1;
    }
    Story {
        person,
        gp,
        steps,
        versions: HashMap::new(),
    }
}

/// A short story: a registration (with the registered practice, if any) and the practice
/// joining the care team. Mixed in to reach a target number of people per event.
fn short_story(
    rng: &mut Rng,
    person: Uuid,
    nhs: NhsNumber,
    start: DateTime<Utc>,
    gp: Option<&'static str>,
) -> Story {
    let d0 = carewoven_domain::values::uk_date(start);
    let org: &'static str = gp.unwrap_or_else(|| rng.pick(&HOSPITALS));
    let mut steps = VecDeque::with_capacity(2);
    steps.push_back(registration(rng, person, nhs, org, gp));
    if let Some(gp) = gp {
        steps.push_back(step(
            person,
            gp,
            Event::CareTeam(CareTeamEvent::MemberAdded {
                member: MemberRef {
                    organisation: code(gp),
                    practitioner: None,
                },
                role: CareTeamRole::GeneralPractice,
                since: d0 - days(30 + rng.below(3000)),
            }),
        ));
    }
    Story {
        person,
        gp,
        steps,
        versions: HashMap::new(),
    }
}

/// A person's registration by `org`, with a plain synthetic profile.
fn registration(
    rng: &mut Rng,
    person: Uuid,
    nhs: NhsNumber,
    org: &'static str,
    gp: Option<&'static str>,
) -> Step {
    let profile = Profile {
        nhs_number: nhs,
        given_name: short(rng.pick(&GIVEN)),
        family_name: short(rng.pick(&FAMILY)),
        date_of_birth: NaiveDate::from_ymd_opt(
            1925 + rng.below(80) as i32,
            1 + rng.below(12) as u32,
            1 + rng.below(28) as u32,
        )
        .expect("valid date"),
        contact: rng
            .per_mille(700)
            .then(|| long(&format!("01632 96{:04}", rng.below(10_000)))),
        what_matters: rng.per_mille(300).then(|| long(rng.pick(&WHAT_MATTERS))),
        communication_needs: None,
        carers: Vec::new(),
        registered_gp: gp.map(code),
    };
    step(
        person,
        org,
        Event::Person(PersonEvent::Registered { profile }),
    )
}

/// One discharge episode through the discharge-to-assess states (pathways ~50/45/4/1).
fn episode(rng: &mut Rng, hospital: &'static str, admitted_at: DateTime<Utc>) -> Vec<Step> {
    let id = rng.uuid();
    let d = |e: DischargeEvent| Event::Discharge(e);
    let admitted_on = carewoven_domain::values::uk_date(admitted_at);
    let mut list = vec![
        step(
            id,
            hospital,
            d(DischargeEvent::Admitted {
                site: code(hospital),
                ward: rng.per_mille(900).then(|| short(rng.pick(&WARDS))),
                admitted_at,
            }),
        ),
        step(
            id,
            hospital,
            d(DischargeEvent::ExpectedDischargeDateSet {
                expected: admitted_on + days(rng.range(3, 10)),
            }),
        ),
    ];
    match rng.below(1000) {
        0..10 => {
            list.push(step(
                id,
                hospital,
                d(DischargeEvent::Died {
                    died_at: admitted_at + chrono::Duration::days(2),
                }),
            ));
            return list;
        }
        10..20 => {
            list.push(step(
                id,
                hospital,
                d(DischargeEvent::SelfDischarged {
                    left_at: admitted_at + chrono::Duration::hours(30),
                }),
            ));
            return list;
        }
        _ => {}
    }
    let mut drd = admitted_on + days(rng.range(2, 12));
    list.push(step(
        id,
        hospital,
        d(DischargeEvent::DischargeReady {
            discharge_ready_date: drd,
            supersedes: None,
        }),
    ));
    if rng.per_mille(50) {
        list.push(step(
            id,
            hospital,
            d(DischargeEvent::Deteriorated {
                reason: long("Chest infection"),
            }),
        ));
        list.push(step(
            id,
            hospital,
            d(DischargeEvent::ExpectedDischargeDateSet {
                expected: drd + days(5),
            }),
        ));
        let superseded = drd;
        drd = drd + days(4);
        list.push(step(
            id,
            hospital,
            d(DischargeEvent::DischargeReady {
                discharge_ready_date: drd,
                supersedes: Some(superseded),
            }),
        ));
    }
    let pathway = match rng.below(1000) {
        0..500 => Pathway::P0,
        500..950 => Pathway::P1,
        950..990 => Pathway::P2,
        _ => Pathway::P3,
    };
    list.push(step(
        id,
        hospital,
        d(DischargeEvent::PathwayAssigned { pathway }),
    ));
    let discharged_at = |delay: u64| {
        Utc.from_utc_datetime(
            &(drd + days(delay))
                .and_hms_opt(14, 0, 0)
                .expect("valid time"),
        )
    };
    let delay = |rng: &mut Rng, reasons: &[DelayReason]| {
        step(
            id,
            hospital,
            d(DischargeEvent::DelayReasonRecorded {
                reason: rng.pick(reasons),
                note: rng.per_mille(500).then(|| long("Chased today")),
            }),
        )
    };
    if pathway == Pathway::P0 {
        let mut delays = 0;
        if rng.per_mille(200) {
            list.push(delay(
                rng,
                &[
                    DelayReason::AwaitingTransport,
                    DelayReason::AwaitingMedicinesToTakeHome,
                    DelayReason::IndividualOrFamilyNotInAgreement,
                ],
            ));
            delays = 1;
        }
        list.push(step(
            id,
            hospital,
            d(DischargeEvent::Discharged {
                discharged_at: discharged_at(delays),
                destination: short("Usual place of residence"),
                destination_code: Some(DischargeDestination::USUAL_RESIDENCE),
            }),
        ));
        if rng.per_mille(500) {
            list.push(step(
                id,
                GPS[0],
                d(DischargeEvent::HandoverAccepted {
                    organisation: code(GPS[0]),
                }),
            ));
        }
        list.push(step(id, hospital, d(DischargeEvent::Closed)));
        return list;
    }
    let (services, reasons, delays): (&[&'static str], &[DelayReason], u64) = match pathway {
        Pathway::P1 => (
            &P1_SERVICES,
            &[
                DelayReason::Pathway1NewCare,
                DelayReason::Pathway1ContinuingRehabilitation,
                DelayReason::AwaitingEquipmentOrAdaptations,
                DelayReason::AwaitingTherapyDecision,
            ],
            rng.range(0, 2),
        ),
        Pathway::P2 => (
            &P2_SERVICES,
            &[
                DelayReason::Pathway2Bed,
                DelayReason::AwaitingTherapyDecision,
            ],
            rng.range(1, 3),
        ),
        _ => (
            &P3_SERVICES,
            &[
                DelayReason::Pathway3CareHome,
                DelayReason::IndividualOrFamilyNotInAgreement,
                DelayReason::HomelessOrNoRecourseToPublicFunds,
            ],
            rng.range(1, 4),
        ),
    };
    let mut service: &'static str = rng.pick(services);
    list.push(step(
        id,
        hospital,
        d(DischargeEvent::ServiceRequested {
            service: code(service),
        }),
    ));
    for _ in 0..delays {
        list.push(delay(rng, reasons));
    }
    list.push(step(
        id,
        service,
        d(DischargeEvent::DischargeAgreed {
            service: code(service),
            planned_for: drd + days(delays + 1),
        }),
    ));
    let mut total_delay = delays + 1;
    if rng.per_mille(100) {
        list.push(step(
            id,
            service,
            d(DischargeEvent::ProviderFellThrough {
                reason: long("Provider has no capacity this week"),
            }),
        ));
        list.push(delay(rng, reasons));
        service = rng.pick(services);
        total_delay += 3;
        list.push(step(
            id,
            service,
            d(DischargeEvent::DischargeAgreed {
                service: code(service),
                planned_for: drd + days(total_delay),
            }),
        ));
    }
    list.push(step(
        id,
        hospital,
        d(DischargeEvent::Discharged {
            discharged_at: discharged_at(total_delay),
            destination: short(if pathway == Pathway::P3 {
                "Care home"
            } else if pathway == Pathway::P2 {
                "Community rehabilitation bed"
            } else {
                "Usual place of residence"
            }),
            destination_code: Some(match pathway {
                Pathway::P3 => DischargeDestination::INDEPENDENT_CARE_HOME,
                Pathway::P2 => DischargeDestination::OTHER_NHS_HOSPITAL,
                _ => DischargeDestination::USUAL_RESIDENCE,
            }),
        }),
    ));
    list.push(step(
        id,
        service,
        d(DischargeEvent::HandoverAccepted {
            organisation: code(service),
        }),
    ));
    list.push(step(
        id,
        service,
        d(DischargeEvent::HomeAssessmentCompleted {
            completed_on: drd + days(total_delay + 2),
            outcome: long("Managing well with the support in place"),
        }),
    ));
    list.push(step(id, hospital, d(DischargeEvent::Closed)));
    list
}

/// What the generator wrote, for the baselines and the queries.
pub struct Generated {
    pub events: u64,
    pub secs: f64,
    pub persons: Vec<Uuid>,
    pub aggregates: u64,
    /// Encoded size of every event, in log order.
    pub sizes: Vec<u32>,
    pub by_kind: [u64; 9],
    pub pathways: [u64; 4],
    /// People registered with a general practice, with it (the scale mix only).
    pub registered: Vec<(Uuid, &'static str)>,
}

impl Generated {
    pub fn print(&self) {
        let bytes: u64 = self.sizes.iter().map(|&s| u64::from(s)).sum();
        println!(
            "generated: {} events in {:.1} s ({:.0}/s): {} people, {} aggregates, payload avg {:.0} B max {} B ({:.0} MiB)",
            self.events,
            self.secs,
            self.events as f64 / self.secs,
            self.persons.len(),
            self.aggregates,
            bytes as f64 / self.events as f64,
            self.sizes.iter().max().copied().unwrap_or(0),
            mib(bytes)
        );
        let kinds: Vec<String> = AggregateKind::ALL
            .iter()
            .zip(self.by_kind)
            .map(|(k, n)| format!("{}={n}", k.as_str()))
            .collect();
        println!("  events by kind: {}", kinds.join(" "));
        let total: u64 = self.pathways.iter().sum::<u64>().max(1);
        let pct: Vec<String> = self
            .pathways
            .iter()
            .enumerate()
            .map(|(i, n)| format!("P{i}={n} ({:.1}%)", 100.0 * *n as f64 / total as f64))
            .collect();
        println!("  pathways assigned: {}", pct.join(" "));
    }
}

fn kind_index(kind: AggregateKind) -> usize {
    AggregateKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

/// Generate `events` into an empty log, check the stream holds exactly them, print what was
/// generated, and return it with the log's last sequence.
pub async fn generate_checked(
    client: &async_nats::Client,
    events: u64,
    seed: u64,
) -> Result<(Generated, u64)> {
    let log = carewoven_eventlog::EventLog::open(client.clone(), Default::default()).await?;
    let generated = generate(client, events, seed).await?;
    let last = log.last_sequence().await?;
    anyhow::ensure!(
        last == events,
        "the stream holds {last} events, expected {events}"
    );
    generated.print();
    Ok((generated, last))
}

/// What the synthetic log looks like beyond the seed. The default is the mix every
/// benchmark but `bench-scale` uses (and gives the same log as before the options existed).
#[derive(Debug, Clone)]
pub struct Mix {
    /// Recorded time of the first event.
    pub start: DateTime<Utc>,
    /// Recorded time between consecutive events.
    pub step: chrono::Duration,
    /// Per mille of people registered with one of the general practices (`GPS`); 0: none.
    pub registered_gp_per_mille: u64,
    /// `(people, events)`: mix in short stories (a registration and the practice joining the
    /// care team) so that people per event approaches this ratio. `None`: full stories only.
    pub people_per_events: Option<(u64, u64)>,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            start: Utc
                .with_ymd_and_hms(2025, 1, 6, 8, 0, 0)
                .single()
                .expect("valid start time"),
            step: chrono::Duration::seconds(20),
            registered_gp_per_mille: 0,
            people_per_events: None,
        }
    }
}

/// The general practices people are registered with under [`Mix::registered_gp_per_mille`].
pub const GENERAL_PRACTICES: [&str; 5] = GPS;

/// Every organisation code the generated events name, with the services (and sites) each
/// owns (its own code), for registering the registry before a generated log.
pub const ORGANISATIONS: [&str; 23] = [
    "RXH01",
    "RXH02",
    "RYJ01",
    "RAL01",
    "SPA01",
    "ASC-D2A",
    "REABLE-1",
    "CNURSE-1",
    "THERAPY-2",
    "MH-TEAM-1",
    "HOMECARE-1",
    "HOMECARE-2",
    "REHAB-BEDS-1",
    "COMMHOSP-1",
    "CAREHOME-1",
    "CAREHOME-2",
    "COUNCIL1",
    "AGEUK-1",
    "GP-A81001",
    "GP-A81002",
    "GP-B82010",
    "GP-C83044",
    "GP-D84100",
];

/// Writes the synthetic log into JetStream in steps: [`Generator::run`] may be called again to
/// append more of the same stories (people whose stories are under way carry on).
pub struct Generator {
    js: jetstream::Context,
    rng: Rng,
    mix: Mix,
    users: Vec<Code>,
    out: Generated,
    nhs_counter: u64,
    active: Vec<Story>,
    /// Steps not yet written of the active stories.
    pending: u64,
    /// People whose stories were started.
    started_people: u64,
    acks: VecDeque<PublishAckFuture>,
    /// Events written so far.
    sequence: u64,
    started: Instant,
}

impl Generator {
    pub fn new(client: &async_nats::Client, seed: u64, mix: Mix) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(30))
            .max_ack_inflight(ACK_WINDOW * 2)
            .build(client.clone());
        Generator {
            js,
            rng: Rng::new(seed),
            mix,
            users: (1..=9).map(|i| code(&format!("user{i}"))).collect(),
            out: Generated {
                events: 0,
                secs: 0.0,
                persons: Vec::new(),
                aggregates: 0,
                sizes: Vec::new(),
                by_kind: [0; 9],
                pathways: [0; 4],
                registered: Vec::new(),
            },
            nhs_counter: 0,
            active: Vec::with_capacity(ACTIVE_STORIES),
            pending: 0,
            started_people: 0,
            acks: VecDeque::with_capacity(ACK_WINDOW),
            sequence: 0,
            started: Instant::now(),
        }
    }

    /// Events written so far (by every call).
    pub fn written(&self) -> u64 {
        self.sequence
    }

    /// The recorded time the `n`th event (1-based) gets.
    pub fn recorded_at(&self, n: u64) -> DateTime<Utc> {
        self.mix.start + self.mix.step * n as i32 + chrono::Duration::milliseconds(1500)
    }

    pub fn generated(&self) -> &Generated {
        &self.out
    }

    /// Write `count` more events, showing progress, and wait until all are stored.
    pub async fn run(&mut self, count: u64) -> Result<()> {
        let target = self.sequence + count;
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "generating {bar:40} {pos}/{len} events  {per_sec}  ETA {eta}",
            )
            .context("progress bar template")?,
        );
        let from = self.sequence;
        while self.sequence < target {
            if self.active.len() < ACTIVE_STORIES {
                self.start_story();
                continue;
            }
            let i = self.rng.below(self.active.len() as u64) as usize;
            let Some(step) = self.active[i].steps.pop_front() else {
                self.active.swap_remove(i);
                continue;
            };
            self.pending -= 1;
            let person = self.active[i].person;
            let gp = self.active[i].gp;
            let mut versions = std::mem::take(&mut self.active[i].versions);
            self.write(person, gp, &mut versions, step).await?;
            self.active[i].versions = versions;
            if self.active[i].steps.is_empty() {
                self.active.swap_remove(i);
            }
            if self.sequence.is_multiple_of(4096) {
                bar.set_position(self.sequence - from);
            }
        }
        self.flush().await?;
        bar.finish_and_clear();
        Ok(())
    }

    /// Write one more event: the registration of a new person with `gp` as their registered
    /// practice; returns the person and the event's number (1-based, as [`Self::written`]).
    pub async fn register(&mut self, gp: &'static str) -> Result<(Uuid, u64)> {
        let person = self.rng.uuid();
        let nhs = nhs_number(&mut self.nhs_counter);
        let step = registration(&mut self.rng, person, nhs, gp, Some(gp));
        let mut versions = HashMap::new();
        self.write(person, None, &mut versions, step).await?;
        self.flush().await?;
        Ok((person, self.sequence))
    }

    fn start_story(&mut self) {
        let person = self.rng.uuid();
        let nhs = nhs_number(&mut self.nhs_counter);
        let start = self.mix.start + self.mix.step * self.sequence as i32;
        let gp = (self.mix.registered_gp_per_mille > 0
            && self.rng.per_mille(self.mix.registered_gp_per_mille))
        .then(|| self.rng.pick(&GPS));
        let short = self.mix.people_per_events.is_some_and(|(people, events)| {
            // Too few people for the events planned so far: a short story.
            u128::from(self.started_people) * u128::from(events)
                < u128::from(self.sequence + self.pending) * u128::from(people)
        });
        let s = if short {
            short_story(&mut self.rng, person, nhs, start, gp)
        } else {
            story(&mut self.rng, person, nhs, start, gp)
        };
        self.started_people += 1;
        self.pending += s.steps.len() as u64;
        self.active.push(s);
    }

    async fn write(
        &mut self,
        person: Uuid,
        gp: Option<&'static str>,
        versions: &mut HashMap<(AggregateKind, Uuid), u64>,
        step: Step,
    ) -> Result<()> {
        let out = &mut self.out;
        let rng = &mut self.rng;
        self.sequence += 1;
        out.events += 1;
        let kind = step.event.kind();
        let version = versions.entry((kind, step.aggregate)).or_insert(0);
        *version += 1;
        if *version == 1 {
            out.aggregates += 1;
            if kind == AggregateKind::Person {
                out.persons.push(person);
                if let Some(gp) = gp {
                    out.registered.push((person, gp));
                }
            }
        }
        out.by_kind[kind_index(kind)] += 1;
        if let Event::Discharge(DischargeEvent::PathwayAssigned { pathway }) = &step.event {
            out.pathways[pathway.number() as usize] += 1;
        }
        let occurred_at = self.mix.start + self.mix.step * self.sequence as i32;
        let command = rng.uuid();
        let meta = EventMeta {
            event_id: rng.uuid(),
            aggregate_id: step.aggregate,
            aggregate_kind: kind,
            person_id: person,
            version: *version,
            command_id: command,
            correlation_id: command,
            causation_id: command,
            organisation: code(step.org),
            user: self.users[rng.below(self.users.len() as u64) as usize].clone(),
            occurred_at,
            recorded_at: occurred_at + chrono::Duration::milliseconds(1500),
            schema_version: carewoven_domain::SCHEMA_VERSION,
        };
        let payload = carewoven_proto::convert::encode_event(&meta, &step.event);
        out.sizes.push(payload.len() as u32);
        let subject = subjects::event(person, kind, step.aggregate, step.event.name());
        let mut headers = HeaderMap::new();
        let fingerprint = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next()
        );
        headers.insert(FINGERPRINT_HEADER, fingerprint.as_str());
        self.acks.push_back(
            self.js
                .publish_with_headers(subject, headers, Bytes::from(payload))
                .await
                .context("publishing a generated event")?,
        );
        if self.acks.len() >= ACK_WINDOW {
            let ack = self.acks.pop_front().context("an ack")?;
            ack.await.context("a generated event was not stored")?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        while let Some(ack) = self.acks.pop_front() {
            ack.await.context("a generated event was not stored")?;
        }
        self.out.secs = self.started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Write `count` events into the stream: real encoding, subjects and fingerprint header,
/// published in log order with many acks in flight.
pub async fn generate(client: &async_nats::Client, count: u64, seed: u64) -> Result<Generated> {
    let mut generator = Generator::new(client, seed, Mix::default());
    generator.run(count).await?;
    let mut out = generator.out;
    out.secs = generator.started.elapsed().as_secs_f64();
    Ok(out)
}
