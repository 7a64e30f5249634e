//! `carectl seed`: a synthetic, multi-organisation history driven through the real command API.
//!
//! For each of `--people` fictional people (test-range NHS numbers, obviously invented family
//! names) it plans a plausible journey over the `--days` before the anchor day: registration
//! and care team, GP and hospital referrals (some rejected, some cancelled, most completed),
//! Care Act needs assessments, admissions with discharge to assess (expected date, Discharge
//! Ready Date, pathway mix about 50/45/4/1, delays with their reasons, provider fall-through,
//! deterioration with a later DRD, deaths, self-discharges, handover, home assessment,
//! closure), readmissions, consents and national-data-opt-out style objections, multi-agency
//! meetings and feedback. Every fact carries its real-world time in `occurred_at` and in its
//! own date and time fields; some groups of facts are sent after facts that happened later
//! (late-recorded facts).
//!
//! Deterministic: a person's plan is a pure function of the seed, the anchor day, the number
//! of days and the person's index (a SplitMix64 stream), and every command id is a UUIDv8 over
//! SHA-256 of the same inputs and the step name. The same `--seed`, `--anchor-day` and
//! `--days` therefore send the same commands with the same content, and a second run against
//! the same server appends nothing (every command is answered as a duplicate). `--people`
//! only chooses how many people: person `i` is the same in a run of 40 and a run of 400.
//! Every instant lies before 00:00 UTC of the anchor day, so nothing is in the future.
//!
//! Under information governance: the seed first registers its organisations, the services and
//! sites each owns, and their data-sharing agreements ([`crate::registry`], idempotent). Each
//! command is then sent as an organisation entitled to it, following the rules of
//! `carewoven_governance` (mirrored in [`Access`] for the commands the seed sends): a fact
//! that needs a legitimate relationship the organisation does not have yet (a GP practice
//! registers a person but is related to them only once it refers them or joins their care
//! team) is recorded as soon as it has one, so it is recorded late; care-team changes are made
//! by a member (the first member by an organisation with a relationship).

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carewoven_domain::values::NhsNumber;
use carewoven_domain::values::uk_date;
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::auth::Auth;
use crate::enums::OrgType;
use crate::enums::{
    AssessmentKind, Decision, DelayReason, FeedbackSource, Outcome, Pathway, Priority, Purpose,
    ReferralAction, Role,
};
use crate::output::{exit_code, status_json, status_lines};
use crate::parse::{date_string, timestamp};
use crate::registry::{self, OrgSpec};
use crate::rpc::{Client, Ctx, Rpc};

/// Changing this namespace starts a fresh, non-colliding series of seed command ids.
const NAMESPACE: &str = "carewoven.carectl.seed.v1";

/// Synthetic people use NHS numbers `NhsNumber::synthetic(FIRST_INDEX..)`, clear of the
/// demo's (which derive from days since 2000, below 20,000).
const FIRST_INDEX: u32 = 20_000;
/// Each seed (modulo 8) starts its people in its own block of this many numbers.
const BLOCK: u32 = 10_000;
/// How many synthetic numbers the seed draws from (20,000..100,000).
pub const MAX_PEOPLE: u32 = 80_000;

const HOSPITALS: [&str; 3] = ["SYN-HOSP-NORTH", "SYN-HOSP-CITY", "SYN-HOSP-SOUTH"];
const GPS: [&str; 6] = [
    "SYN-GP-ASH",
    "SYN-GP-BIRCH",
    "SYN-GP-CEDAR",
    "SYN-GP-ELM",
    "SYN-GP-HAZEL",
    "SYN-GP-OAK",
];
const COUNCIL: &str = "SYN-ASC";
const D2A_SERVICE: &str = "SYN-ASC-D2A";
const ASC_FRONT_DOOR: &str = "SYN-ASC-SPA";
const COMMUNITY: &str = "SYN-COMM";
const COMMUNITY_NURSING: &str = "SYN-COMM-NURSING";
const COMMUNITY_FALLS: &str = "SYN-COMM-FALLS";
const REHAB_BEDS: &str = "SYN-COMM-REHAB-BEDS";
const REABLEMENT: [&str; 2] = ["SYN-REABLE-EAST", "SYN-REABLE-WEST"];
const HOME_CARE: [&str; 2] = ["SYN-HOMECARE-AMBER", "SYN-HOMECARE-BLUE"];
const CARE_HOMES: [&str; 3] = [
    "SYN-CAREHOME-LARCH",
    "SYN-CAREHOME-MAPLE",
    "SYN-CAREHOME-ROWAN",
];
/// The organisations that act in the seed, with the services and sites each owns. (The
/// analytics and research organisations are only named in objections: not registered.)
pub const ORGANISATIONS: [OrgSpec; 21] = {
    const fn org(
        code: &'static str,
        name: &'static str,
        org_type: OrgType,
        services: &'static [&'static str],
    ) -> OrgSpec {
        OrgSpec {
            code,
            name,
            org_type,
            services,
        }
    }
    use OrgType as T;
    [
        org(
            HOSPITALS[0],
            "Synthetic North Hospital",
            T::NhsTrust,
            &[HOSPITALS[0]],
        ),
        org(
            HOSPITALS[1],
            "Synthetic City Hospital",
            T::NhsTrust,
            &[HOSPITALS[1]],
        ),
        org(
            HOSPITALS[2],
            "Synthetic South Hospital",
            T::NhsTrust,
            &[HOSPITALS[2]],
        ),
        org(
            GPS[0],
            "Synthetic Ash Surgery",
            T::GeneralPractice,
            &[GPS[0]],
        ),
        org(
            GPS[1],
            "Synthetic Birch Surgery",
            T::GeneralPractice,
            &[GPS[1]],
        ),
        org(
            GPS[2],
            "Synthetic Cedar Surgery",
            T::GeneralPractice,
            &[GPS[2]],
        ),
        org(
            GPS[3],
            "Synthetic Elm Surgery",
            T::GeneralPractice,
            &[GPS[3]],
        ),
        org(
            GPS[4],
            "Synthetic Hazel Surgery",
            T::GeneralPractice,
            &[GPS[4]],
        ),
        org(
            GPS[5],
            "Synthetic Oak Surgery",
            T::GeneralPractice,
            &[GPS[5]],
        ),
        org(
            COUNCIL,
            "Synthetic Council Adult Social Care",
            T::LocalAuthority,
            &[COUNCIL, D2A_SERVICE, ASC_FRONT_DOOR],
        ),
        org(
            COMMUNITY,
            "Synthetic Community Health Services",
            T::CommunityProvider,
            &[COMMUNITY, COMMUNITY_NURSING, COMMUNITY_FALLS],
        ),
        org(
            REHAB_BEDS,
            "Synthetic Community Rehabilitation Beds",
            T::CommunityProvider,
            &[REHAB_BEDS],
        ),
        org(
            REABLEMENT[0],
            "Synthetic Reablement East",
            T::CareProvider,
            &[REABLEMENT[0]],
        ),
        org(
            REABLEMENT[1],
            "Synthetic Reablement West",
            T::CareProvider,
            &[REABLEMENT[1]],
        ),
        org(
            HOME_CARE[0],
            "Synthetic Home Care Amber",
            T::CareProvider,
            &[HOME_CARE[0]],
        ),
        org(
            HOME_CARE[1],
            "Synthetic Home Care Blue",
            T::CareProvider,
            &[HOME_CARE[1]],
        ),
        org(
            CARE_HOMES[0],
            "Synthetic Larch Care Home",
            T::CareProvider,
            &[CARE_HOMES[0]],
        ),
        org(
            CARE_HOMES[1],
            "Synthetic Maple Care Home",
            T::CareProvider,
            &[CARE_HOMES[1]],
        ),
        org(
            CARE_HOMES[2],
            "Synthetic Rowan Care Home",
            T::CareProvider,
            &[CARE_HOMES[2]],
        ),
        // Secondary users named in national data opt-outs (an objection's partners must be
        // registered organisations). They hold no ground and provide no care.
        org(ANALYTICS, "Synthetic ICB Analytics", T::Other, &[]),
        org(RESEARCH, "Synthetic Research Environment", T::Other, &[]),
    ]
};
const ANALYTICS: &str = "SYN-ICB-ANALYTICS";
const RESEARCH: &str = "SYN-RESEARCH-SDE";

const GIVEN: [&str; 24] = [
    "Ada", "Albert", "Beryl", "Cyril", "Doris", "Edna", "Ernest", "Florence", "Gladys", "Harold",
    "Ivy", "Jean", "Kenneth", "Lilian", "Mabel", "Norman", "Olive", "Percy", "Rose", "Stanley",
    "Thelma", "Vera", "Walter", "Winifred",
];
const FAMILY: [&str; 12] = [
    "Example",
    "Sample",
    "Testcase",
    "Placeholder",
    "Fictional",
    "Madeup",
    "Synthetic",
    "Dummyfield",
    "Specimen",
    "Mockford",
    "Pretendwell",
    "Imaginary",
];
const WARDS: [&str; 5] = [
    "Ward 7 (care of older people)",
    "Ward 12 (acute medicine)",
    "Ward 3 (orthopaedics)",
    "Ward 9 (respiratory)",
    "Ward 4 (stroke)",
];
const WHAT_MATTERS: [&str; 6] = [
    "Getting back to my allotment",
    "Seeing my grandchildren on Sundays",
    "Walking the dog round the park again",
    "Staying in my own home with my cat",
    "Going to the lunch club on Wednesdays",
    "Being able to make my own cup of tea",
];

/// What `carectl seed` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub people: u32,
    pub seed: u64,
    pub days: u32,
    pub concurrency: usize,
    pub anchor: NaiveDate,
    pub json: bool,
    pub timeout: Duration,
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/// SplitMix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).unsigned_abs() + 1;
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        &items[i]
    }

    /// Index of the bucket `unit()` falls in, given cumulative weights (last one = 1.0).
    fn bucket(&mut self, cumulative: &[f64]) -> usize {
        let u = self.unit();
        cumulative
            .iter()
            .position(|c| u < *c)
            .unwrap_or(cumulative.len() - 1)
    }
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

// ---------------------------------------------------------------------------------------------
// The plan

/// What a step creates or refers to (indexes in creation order, per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Referral(usize),
    Assessment(usize),
    Consent(usize),
    Episode(usize),
    Meeting(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Register(v1::Profile),
    AddMember {
        member: v1::MemberRef,
        role: Role,
        since: NaiveDate,
    },
    NameCoordinator(v1::MemberRef),
    MakeReferral(usize, v1::Referral),
    ProgressReferral {
        referral: usize,
        action: ReferralAction,
        reason: String,
    },
    RequestAssessment {
        assessment: usize,
        referral: Option<usize>,
        request: v1::AssessmentRequest,
    },
    Contribute {
        assessment: usize,
        organisation: &'static str,
        summary: String,
    },
    CompleteAssessment {
        assessment: usize,
        findings: v1::Findings,
    },
    AgreePlan(v1::PlanContent),
    RecordConsent(usize, v1::ConsentTerms),
    WithdrawConsent {
        consent: usize,
        reason: String,
    },
    Admit {
        episode: usize,
        site: &'static str,
        ward: &'static str,
        admitted_at: DateTime<Utc>,
    },
    Discharge {
        episode: usize,
        step: pd::Step,
    },
    RecordMeeting(usize, v1::MeetingRecord),
    CompleteAction {
        meeting: usize,
        action: u32,
        note: String,
    },
    Feedback(v1::FeedbackRecord),
}

impl Op {
    fn creates(&self) -> Option<Slot> {
        match self {
            Op::MakeReferral(k, _) => Some(Slot::Referral(*k)),
            Op::RequestAssessment { assessment, .. } => Some(Slot::Assessment(*assessment)),
            Op::RecordConsent(k, _) => Some(Slot::Consent(*k)),
            Op::Admit { episode, .. } => Some(Slot::Episode(*episode)),
            Op::RecordMeeting(k, _) => Some(Slot::Meeting(*k)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Step {
    /// Unique within the person; the command id derives from it.
    name: String,
    org: &'static str,
    /// When it happened (valid time): `occurred_at`.
    at: DateTime<Utc>,
    /// Sent after the person's other facts although it happened earlier.
    late: bool,
    op: Op,
}

/// One person's commands, in the order they are sent.
#[derive(Debug, Clone)]
pub struct PersonPlan {
    pub index: u32,
    pub nhs_number: String,
    steps: Vec<Step>,
    /// Planned steps no organisation may send (left out; none in practice, see the tests).
    unplaced: usize,
}

/// What the seed is built from: the same config and index always give the same plan.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub seed: u64,
    pub anchor: NaiveDate,
    pub days: u32,
}

impl Config {
    /// 00:00 UTC of the anchor day: every instant of the history is before it.
    fn end(&self) -> DateTime<Utc> {
        at(self.anchor, 0, 0)
    }

    fn window_start(&self) -> NaiveDate {
        self.anchor
            .checked_sub_days(Days::new(u64::from(self.days)))
            .unwrap_or(self.anchor)
    }

    fn key(&self) -> String {
        format!("{}|{}|{}", self.seed, date_string(&self.anchor), self.days)
    }

    /// The deterministic command id of one step of one person.
    pub fn command_id(&self, person: u32, step: &str) -> Uuid {
        let digest = Sha256::new()
            .chain_update(NAMESPACE.as_bytes())
            .chain_update([0])
            .chain_update(self.key().as_bytes())
            .chain_update([0])
            .chain_update(person.to_le_bytes())
            .chain_update([0])
            .chain_update(step.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::new_v8(bytes)
    }

    /// The person's synthetic NHS number (999 test range, valid check digit).
    pub fn nhs_number(&self, person: u32) -> String {
        let start = u32::try_from(self.seed % 8).unwrap_or(0) * BLOCK;
        let n = FIRST_INDEX + (start + person) % MAX_PEOPLE;
        NhsNumber::synthetic(n).as_str().to_owned()
    }
}

fn at(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour.min(23), minute.min(59), 0).unwrap_or_default();
    DateTime::<Utc>::from_naive_utc_and_offset(day.and_time(time), Utc)
}

fn add_days(day: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        day.checked_add_days(Days::new(n.unsigned_abs()))
    } else {
        day.checked_sub_days(Days::new(n.unsigned_abs()))
    }
    .unwrap_or(day)
}

fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

fn minutes(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

fn member(org: &str, practitioner: &str) -> v1::MemberRef {
    v1::MemberRef {
        organisation: org.to_owned(),
        practitioner: practitioner.to_owned(),
    }
}

/// Builds one person's plan; steps at or after the end of the window are dropped (everything
/// depending on a step happens after it, so what remains is a consistent prefix of each story).
struct Gen {
    rng: Rng,
    end: DateTime<Utc>,
    late: bool,
    steps: Vec<Step>,
    referrals: usize,
    assessments: usize,
    consents: usize,
    episodes: usize,
    meetings: usize,
    /// Care-team members needed, with their role and the earliest time each is needed.
    team: BTreeMap<(String, String), (Role, DateTime<Utc>)>,
    coordinator: Option<(v1::MemberRef, DateTime<Utc>)>,
    plan_at: Option<DateTime<Utc>>,
    gp: &'static str,
}

impl Gen {
    fn push(&mut self, name: String, org: &'static str, at: DateTime<Utc>, op: Op) -> bool {
        if at >= self.end {
            return false;
        }
        self.steps.push(Step {
            name,
            org,
            at,
            late: self.late,
            op,
        });
        true
    }

    fn need_member(&mut self, org: &str, practitioner: &str, role: Role, at: DateTime<Utc>) {
        if at >= self.end {
            return;
        }
        let entry = self
            .team
            .entry((org.to_owned(), practitioner.to_owned()))
            .or_insert((role, at));
        if at < entry.1 {
            entry.1 = at;
        }
    }

    fn want_plan(&mut self, at: DateTime<Utc>) {
        if at < self.end && self.plan_at.is_none_or(|p| at < p) {
            self.plan_at = Some(at);
        }
    }

    fn discharge(
        &mut self,
        ep: usize,
        label: &str,
        org: &'static str,
        at: DateTime<Utc>,
        step: pd::Step,
    ) -> bool {
        self.push(
            format!("ep{ep}-{label}"),
            org,
            at,
            Op::Discharge { episode: ep, step },
        )
    }

    fn referral_action(
        &mut self,
        k: usize,
        prefix: &str,
        org: &'static str,
        at: DateTime<Utc>,
        action: ReferralAction,
        reason: &str,
    ) -> bool {
        let label = format!("{action:?}").to_lowercase();
        self.push(
            format!("{prefix}{k}-{label}"),
            org,
            at,
            Op::ProgressReferral {
                referral: k,
                action,
                reason: reason.to_owned(),
            },
        )
    }
}

/// Plan person `index` of the seed.
pub fn plan_person(cfg: &Config, index: u32) -> PersonPlan {
    let mut rng = Rng::new(hash64(&[
        NAMESPACE.as_bytes(),
        cfg.key().as_bytes(),
        &index.to_le_bytes(),
    ]));
    let nhs_number = cfg.nhs_number(index);
    let gp = *rng.pick(&GPS);
    let mut g = Gen {
        rng,
        end: cfg.end(),
        late: false,
        steps: Vec::new(),
        referrals: 0,
        assessments: 0,
        consents: 0,
        episodes: 0,
        meetings: 0,
        team: BTreeMap::new(),
        coordinator: None,
        plan_at: None,
        gp,
    };
    let days = i64::from(cfg.days);
    let start_day = add_days(cfg.window_start(), g.rng.range(0, (days / 4).max(1)));
    let registered = at(start_day, 8, 0) + minutes(g.rng.range(0, 90));

    // Registration: tell the story once.
    let old = g.rng.chance(0.72);
    let age = if old {
        g.rng.range(65, 98)
    } else {
        g.rng.range(19, 64)
    };
    let birth_year = cfg.anchor.year() - i32::try_from(age).unwrap_or(80);
    let dob = add_days(
        NaiveDate::from_ymd_opt(birth_year, 1, 1).unwrap_or(cfg.anchor),
        g.rng.range(0, 364),
    );
    let given = *g.rng.pick(&GIVEN);
    let family = *g.rng.pick(&FAMILY);
    let mut carers = Vec::new();
    if g.rng.chance(0.45) {
        carers.push(v1::Carer {
            name: format!("{} {family}", g.rng.pick(&GIVEN)),
            relationship: (*g
                .rng
                .pick(&["daughter", "son", "partner", "neighbour", "niece"]))
            .to_owned(),
            contact: format!("07700 900{:03}", g.rng.range(0, 999)),
        });
    }
    let communication_needs = if g.rng.chance(0.2) {
        (*g.rng.pick(&[
            "Hard of hearing: please face me and speak clearly",
            "Prefers large print letters",
            "Uses a hearing aid in the left ear",
            "Welsh speaker: prefers Welsh for written information",
        ]))
        .to_owned()
    } else {
        String::new()
    };
    let what_matters = (*g.rng.pick(&WHAT_MATTERS)).to_owned();
    let contact = format!("07700 900{:03}", g.rng.range(0, 999));
    g.push(
        "register".into(),
        gp,
        registered,
        Op::Register(v1::Profile {
            nhs_number: nhs_number.clone(),
            given_name: given.to_owned(),
            family_name: family.to_owned(),
            date_of_birth: date_string(&dob),
            contact,
            what_matters,
            communication_needs,
            carers,
            registered_gp: gp.to_owned(),
        }),
    );
    g.need_member(gp, "", Role::GeneralPractice, registered + minutes(5));

    // Consent for direct care, recorded by the GP practice.
    let consent = g.consents;
    g.consents += 1;
    let consent_at = registered + minutes(g.rng.range(10, 40));
    let mut partners = vec![gp.to_owned(), COUNCIL.to_owned(), COMMUNITY.to_owned()];
    partners.extend(HOSPITALS.iter().map(|h| (*h).to_owned()));
    let recorded = g.push(
        "consent-direct-care".into(),
        gp,
        consent_at,
        Op::RecordConsent(
            consent,
            v1::ConsentTerms {
                decision: Decision::Permit.to_i32(),
                purpose: Purpose::DirectCare.to_i32(),
                partners,
                data_classes: vec![],
                valid_from: date_string(&start_day),
                valid_until: String::new(),
                capacity_assessed: true,
            },
        ),
    );
    if recorded && g.rng.chance(0.02) {
        let when = consent_at + hours(g.rng.range(24, 24 * 40));
        g.push(
            "consent-direct-care-withdraw".into(),
            gp,
            when,
            Op::WithdrawConsent {
                consent,
                reason: "The person asked for sharing to stop while they consider it".into(),
            },
        );
    }
    // National data opt-out style objections to secondary uses, often recorded late.
    if g.rng.chance(0.07) {
        let k = g.consents;
        g.consents += 1;
        let research = g.rng.chance(0.5);
        let day = add_days(start_day, g.rng.range(0, (days / 3).max(1)));
        g.late = g.rng.chance(0.5);
        let when = at(day, 10, 0) + minutes(g.rng.range(0, 300));
        g.push(
            "consent-opt-out".into(),
            gp,
            when,
            Op::RecordConsent(
                k,
                v1::ConsentTerms {
                    decision: Decision::Deny.to_i32(),
                    purpose: if research {
                        Purpose::Research.to_i32()
                    } else {
                        Purpose::Planning.to_i32()
                    },
                    partners: vec![if research { RESEARCH } else { ANALYTICS }.to_owned()],
                    data_classes: vec![],
                    valid_from: date_string(&day),
                    valid_until: String::new(),
                    capacity_assessed: true,
                },
            ),
        );
        g.late = false;
    }

    // Community referrals from the GP practice.
    let hospital = g.rng.chance(0.8);
    if !hospital || g.rng.chance(0.3) {
        let t0 = registered + hours(g.rng.range(24, 24 * (days / 2).max(2)));
        g.late = g.rng.chance(0.15);
        community_referral(&mut g, t0);
        g.late = false;
    }

    // Admissions: discharge to assess, and sometimes a readmission.
    if hospital {
        let admit_day = add_days(start_day, g.rng.range(1, (days - days / 4 - 2).max(2)));
        let mut admitted_at = at(admit_day, 0, 0) + minutes(g.rng.range(0, 24 * 60 - 1));
        for n in 0..3 {
            let site = *g.rng.pick(&HOSPITALS);
            let Some(discharged_at) = episode(&mut g, admitted_at, site) else {
                break;
            };
            let readmit = n < 2 && g.rng.chance(0.10);
            if readmit {
                admitted_at = discharged_at + hours(g.rng.range(30, 24 * 29));
            } else if n == 0 && g.rng.chance(0.05) {
                admitted_at = discharged_at + hours(g.rng.range(24 * 31, 24 * 80));
            } else {
                break;
            }
            if admitted_at >= g.end {
                break;
            }
        }
    }

    finish(g, index, nhs_number)
}

/// A GP referral to adult social care or a community service, with a Care Act needs
/// assessment when social care accepts it.
fn community_referral(g: &mut Gen, t0: DateTime<Utc>) {
    let k = g.referrals;
    g.referrals += 1;
    let gp = g.gp;
    let to = *g.rng.pick(&[
        ASC_FRONT_DOOR,
        ASC_FRONT_DOOR,
        COMMUNITY_NURSING,
        COMMUNITY_FALLS,
    ]);
    let to_org = if to == ASC_FRONT_DOOR {
        COUNCIL
    } else {
        COMMUNITY
    };
    let reason = if to == ASC_FRONT_DOOR {
        "Struggling with personal care and meals at home since a recent illness"
    } else if to == COMMUNITY_FALLS {
        "Two falls at home in the last month; please assess for falls prevention"
    } else {
        "Leg ulcer needing regular dressings at home"
    };
    let priority = if g.rng.chance(0.2) {
        Priority::Urgent
    } else {
        Priority::Routine
    };
    if !g.push(
        format!("ref{k}-make"),
        gp,
        t0,
        Op::MakeReferral(
            k,
            v1::Referral {
                from_organisation: gp.to_owned(),
                to_service: to.to_owned(),
                priority: priority.to_i32(),
                reason: reason.to_owned(),
                replaces: String::new(),
            },
        ),
    ) {
        return;
    }
    let mut t = t0 + hours(g.rng.range(1, 30));
    g.referral_action(k, "ref", to_org, t, ReferralAction::Receive, "");
    let outcome = g.rng.unit();
    if outcome < 0.12 {
        t += hours(g.rng.range(1, 48));
        g.referral_action(
            k,
            "ref",
            to_org,
            t,
            ReferralAction::Reject,
            "Does not meet the service criteria; signposted to a voluntary sector group",
        );
        return;
    }
    if outcome < 0.16 {
        // Only the referrer may cancel.
        t += hours(g.rng.range(1, 72));
        g.referral_action(
            k,
            "ref",
            gp,
            t,
            ReferralAction::Cancel,
            "The person declined the service after discussion",
        );
        return;
    }
    t += hours(g.rng.range(2, 72));
    if !g.referral_action(k, "ref", to_org, t, ReferralAction::Accept, "") {
        return;
    }
    if to == ASC_FRONT_DOOR {
        // Referral made -> needs assessed: mostly one to five weeks.
        let wait_days = match g.rng.bucket(&[0.4, 0.75, 0.93, 1.0]) {
            0 => g.rng.range(3, 10),
            1 => g.rng.range(10, 21),
            2 => g.rng.range(21, 35),
            _ => g.rng.range(35, 60),
        };
        t += hours(g.rng.range(1, 24));
        let done = (t0 + TimeDelta::days(wait_days)).max(t + hours(2));
        care_act_assessment(g, Some(k), COUNCIL, t, done, false);
        let done = done + hours(g.rng.range(24, 24 * 5));
        g.referral_action(k, "ref", COUNCIL, t + minutes(5), ReferralAction::Start, "");
        let mut end = done;
        if g.rng.chance(0.08) {
            let hold = t + hours(g.rng.range(24, 72));
            if hold < done {
                g.referral_action(
                    k,
                    "ref",
                    COUNCIL,
                    hold,
                    ReferralAction::Hold,
                    "The person is staying with family for a few days",
                );
                g.referral_action(
                    k,
                    "ref",
                    COUNCIL,
                    hold + hours(72),
                    ReferralAction::Resume,
                    "",
                );
                end = end.max(hold + hours(73));
            }
        }
        g.referral_action(k, "ref", COUNCIL, end, ReferralAction::Complete, "");
    } else {
        t += hours(g.rng.range(24, 72));
        g.referral_action(k, "ref", COMMUNITY, t, ReferralAction::Start, "");
        g.need_member(COMMUNITY, "", Role::CommunityNursing, t);
        t += hours(g.rng.range(24 * 7, 24 * 30));
        if g.rng.chance(0.05) {
            g.referral_action(
                k,
                "ref",
                COMMUNITY,
                t,
                ReferralAction::Fail,
                "Could not gain access for three visits running",
            );
        } else {
            g.referral_action(k, "ref", COMMUNITY, t, ReferralAction::Complete, "");
        }
    }
}

/// A Care Act s.9 needs assessment requested at `requested`, completed at `done`.
fn care_act_assessment(
    g: &mut Gen,
    referral: Option<usize>,
    org: &'static str,
    requested: DateTime<Utc>,
    done: DateTime<Utc>,
    hospital: bool,
) {
    let a = g.assessments;
    g.assessments += 1;
    let joint = hospital || g.rng.chance(0.4);
    let mut assessors = vec![org.to_owned()];
    if joint {
        assessors.push(COMMUNITY.to_owned());
    }
    let due = add_days(uk_date(requested), if hospital { 2 } else { 28 });
    if !g.push(
        format!("asmt{a}-request"),
        org,
        requested,
        Op::RequestAssessment {
            assessment: a,
            referral,
            request: v1::AssessmentRequest {
                kind: AssessmentKind::CareActNeeds.to_i32(),
                assessors: assessors.clone(),
                referral_id: String::new(),
                due_by: date_string(&due),
            },
        },
    ) {
        return;
    }
    let social_worker = format!("SYN-SW-{:02}", g.rng.range(1, 20));
    if joint {
        let c1 = requested + (done - requested) / 3;
        g.push(
            format!("asmt{a}-contribute-council"),
            org,
            c1,
            Op::Contribute {
                assessment: a,
                organisation: org,
                summary: "Needs help with washing, dressing and preparing meals; keen to regain \
                          independence"
                    .into(),
            },
        );
        let contributed = g.push(
            format!("asmt{a}-contribute-community"),
            COMMUNITY,
            c1 + (done - c1) / 2,
            Op::Contribute {
                assessment: a,
                organisation: COMMUNITY,
                summary: "Mobilising with a frame; skin intact; needs a review of equipment at \
                          home"
                    .into(),
            },
        );
        if contributed {
            // Contributing needs a relationship: the community team joins the care team.
            g.need_member(COMMUNITY, "", Role::CommunityNursing, c1);
        }
    }
    let eligible = g.rng.chance(0.75);
    let all = [
        Outcome::ManagingNutrition,
        Outcome::PersonalHygiene,
        Outcome::ManagingToiletNeeds,
        Outcome::BeingAppropriatelyClothed,
        Outcome::UsingTheHomeSafely,
        Outcome::MaintainingAHabitableHome,
        Outcome::UsingCommunityServices,
    ];
    let count = if eligible {
        g.rng.range(2, 4)
    } else {
        g.rng.range(0, 1)
    };
    let first = g.rng.range(0, 6);
    let outcomes: Vec<i32> = (0..count)
        .map(|i| all[usize::try_from((first + i) % 7).unwrap_or(0)].to_i32())
        .collect();
    let completed = g.push(
        format!("asmt{a}-complete"),
        org,
        done,
        Op::CompleteAssessment {
            assessment: a,
            findings: v1::Findings {
                summary: if eligible {
                    "Care Act needs assessment: eligible needs; support at home agreed".into()
                } else {
                    "Care Act needs assessment: needs can be met with advice and universal \
                     services"
                        .into()
                },
                outcomes_not_achieved: outcomes,
                wellbeing_impact: if eligible {
                    "Cannot wash, dress or cook safely alone".into()
                } else {
                    "Manages most daily tasks with some difficulty".into()
                },
                needs_arise_from_impairment_or_illness: true,
                significant_impact_on_wellbeing: eligible,
            },
        },
    );
    if completed && eligible {
        let sw_at = requested + minutes(30);
        g.need_member(COUNCIL, &social_worker, Role::SocialWorker, sw_at);
        if g.coordinator.is_none() {
            g.coordinator = Some((member(COUNCIL, &social_worker), sw_at));
        }
        let plan_at = done + hours(g.rng.range(2, 72));
        g.want_plan(plan_at);
    }
}

/// One discharge episode from admission. Returns the discharge instant if the person went home
/// (or onward) within the window.
fn episode(g: &mut Gen, admitted_at: DateTime<Utc>, site: &'static str) -> Option<DateTime<Utc>> {
    let ep = g.episodes;
    g.episodes += 1;
    let ward = *g.rng.pick(&WARDS);
    if !g.push(
        format!("ep{ep}-admit"),
        site,
        admitted_at,
        Op::Admit {
            episode: ep,
            site,
            ward,
            admitted_at,
        },
    ) {
        return None;
    }
    g.need_member(site, "", Role::HospitalTeam, admitted_at + minutes(20));
    let admit_day = uk_date(admitted_at);
    // Days from admission to the Discharge Ready Date.
    let los_ready = match g.rng.bucket(&[0.33, 0.63, 0.83, 0.95, 1.0]) {
        0 => g.rng.range(1, 2),
        1 => g.rng.range(3, 5),
        2 => g.rng.range(6, 10),
        3 => g.rng.range(11, 20),
        _ => g.rng.range(21, 35),
    };
    let mut t = admitted_at + hours(g.rng.range(2, 10));
    let mut expected = add_days(admit_day, (los_ready + g.rng.range(-1, 2)).max(1));
    if !g.discharge(
        ep,
        "expected-date",
        site,
        t,
        pd::Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
            expected: date_string(&expected),
        }),
    ) {
        return None;
    }
    // A few leave against advice or die before they are ready.
    let fate = g.rng.unit();
    if fate < 0.02 {
        let left = t + hours(g.rng.range(4, 60));
        g.discharge(
            ep,
            "self-discharge",
            site,
            left,
            pd::Step::RecordSelfDischarge(pd::RecordSelfDischarge {
                left_at: Some(timestamp(left)),
            }),
        );
        return None;
    }
    if fate < 0.045 {
        let died = t + hours(g.rng.range(12, 24 * 12));
        g.discharge(
            ep,
            "died",
            site,
            died,
            pd::Step::RecordDeath(pd::RecordDeath {
                died_at: Some(timestamp(died)),
            }),
        );
        return None;
    }

    let mut drd = add_days(admit_day, los_ready);
    t = t.max(at(drd, 8, 0)) + minutes(g.rng.range(0, 240));
    let mut pathway = pick_pathway(&mut g.rng);
    let mut readies = 0;
    loop {
        if !g.discharge(
            ep,
            &format!("ready{readies}"),
            site,
            t,
            pd::Step::MarkDischargeReady(pd::MarkDischargeReady {
                discharge_ready_date: date_string(&drd),
            }),
        ) {
            return None;
        }
        t += hours(g.rng.range(1, 4));
        if !g.discharge(
            ep,
            &format!("pathway{readies}"),
            site,
            t,
            pd::Step::AssignPathway(pd::AssignPathway {
                pathway: pathway.to_i32(),
            }),
        ) {
            return None;
        }
        // Deterioration: back to planning, and a later DRD supersedes this one.
        if readies == 0 && g.rng.chance(0.05) {
            t += hours(g.rng.range(6, 40));
            g.discharge(
                ep,
                "deteriorated",
                site,
                t,
                pd::Step::RecordDeterioration(pd::RecordDeterioration {
                    reason: "New chest infection; no longer meets the criteria to leave hospital"
                        .into(),
                }),
            );
            let new_drd = add_days(uk_date(t), g.rng.range(2, 6));
            expected = add_days(new_drd, g.rng.range(0, 2));
            t += hours(1);
            g.discharge(
                ep,
                "expected-date1",
                site,
                t,
                pd::Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
                    expected: date_string(&expected),
                }),
            );
            drd = new_drd;
            t = t.max(at(drd, 8, 0)) + minutes(g.rng.range(0, 240));
            pathway = pick_pathway(&mut g.rng);
            readies += 1;
            continue;
        }
        break;
    }

    // Days from the DRD to discharge, by pathway.
    let delay = match pathway {
        Pathway::P0 => match g.rng.bucket(&[0.75, 0.95, 1.0]) {
            0 => 0,
            1 => 1,
            _ => g.rng.range(2, 3),
        },
        Pathway::P1 => match g.rng.bucket(&[0.42, 0.62, 0.77, 0.94, 1.0]) {
            0 => 0,
            1 => 1,
            2 => g.rng.range(2, 3),
            3 => g.rng.range(4, 9),
            _ => g.rng.range(10, 20),
        },
        Pathway::P2 => match g.rng.bucket(&[0.2, 0.4, 0.8, 1.0]) {
            0 => 0,
            1 => g.rng.range(1, 3),
            2 => g.rng.range(4, 10),
            _ => g.rng.range(11, 25),
        },
        Pathway::P3 => match g.rng.bucket(&[0.1, 0.4, 0.8, 1.0]) {
            0 => 0,
            1 => g.rng.range(2, 7),
            2 => g.rng.range(8, 20),
            _ => g.rng.range(21, 35),
        },
    };
    let discharge_day = add_days(drd, delay);
    let reasons: &[DelayReason] = match pathway {
        Pathway::P0 => &[
            DelayReason::AwaitingTransport,
            DelayReason::AwaitingMedication,
            DelayReason::PersonOrFamilyChoice,
        ],
        Pathway::P1 => &[
            DelayReason::AwaitingReablement,
            DelayReason::AwaitingHomeCare,
            DelayReason::AwaitingAssessment,
            DelayReason::AwaitingEquipment,
            DelayReason::AwaitingTransport,
        ],
        Pathway::P2 => &[
            DelayReason::AwaitingBedBasedRehabilitation,
            DelayReason::AwaitingAssessment,
        ],
        Pathway::P3 => &[
            DelayReason::AwaitingCareHomePlacement,
            DelayReason::PersonOrFamilyChoice,
            DelayReason::AwaitingAssessment,
            DelayReason::AwaitingHousing,
        ],
    };
    let mut delay_steps = 0;
    let mut record_delay = |g: &mut Gen, t: &mut DateTime<Utc>, day: NaiveDate| -> bool {
        *t = (*t).max(at(day, 9, 0)) + minutes(g.rng.range(0, 480));
        let reason = *g.rng.pick(reasons);
        let note = match reason {
            DelayReason::AwaitingReablement => "No reablement capacity until next week",
            DelayReason::AwaitingHomeCare => "Home care package being sourced",
            DelayReason::AwaitingCareHomePlacement => "Family visiting care homes",
            DelayReason::AwaitingEquipment => "Hospital bed and hoist on order",
            _ => "",
        };
        let ok = g.discharge(
            ep,
            &format!("delay{delay_steps}"),
            site,
            *t,
            pd::Step::RecordDelayReason(pd::RecordDelayReason {
                reason: reason.to_i32(),
                note: note.into(),
            }),
        );
        delay_steps += 1;
        ok
    };

    // The D2A referral to the council and a joint Care Act assessment for pathways 1-3.
    let d2a = (pathway != Pathway::P0).then(|| {
        let k = g.referrals;
        g.referrals += 1;
        let made = t + minutes(g.rng.range(10, 120));
        let made_ok = g.push(
            format!("d2a{k}-make"),
            site,
            made,
            Op::MakeReferral(
                k,
                v1::Referral {
                    from_organisation: site.to_owned(),
                    to_service: D2A_SERVICE.to_owned(),
                    priority: Priority::Urgent.to_i32(),
                    reason: "Ready for discharge; needs support at home or a bed to recover \
                             (discharge to assess)"
                        .into(),
                    replaces: String::new(),
                },
            ),
        );
        let received = made + hours(g.rng.range(1, 6));
        g.referral_action(k, "d2a", COUNCIL, received, ReferralAction::Receive, "");
        let accepted = received + hours(g.rng.range(1, 12));
        g.referral_action(k, "d2a", COUNCIL, accepted, ReferralAction::Accept, "");
        if made_ok && g.rng.chance(0.6) {
            let requested = accepted + minutes(30);
            let done = requested + hours(g.rng.range(4, 24 * (delay + 1).clamp(1, 4)));
            care_act_assessment(g, Some(k), COUNCIL, requested, done, true);
        }
        (k, accepted)
    });

    let service: &'static str = match pathway {
        Pathway::P0 => g.gp,
        Pathway::P1 => {
            if g.rng.chance(0.6) {
                g.rng.pick::<&str>(&REABLEMENT)
            } else {
                g.rng.pick::<&str>(&HOME_CARE)
            }
        }
        Pathway::P2 => REHAB_BEDS,
        Pathway::P3 => g.rng.pick::<&str>(&CARE_HOMES),
    };
    let mut final_service = service;
    let discharged_at;
    if pathway == Pathway::P0 {
        for d in 1..=delay {
            if !record_delay(g, &mut t, add_days(drd, d)) {
                return None;
            }
        }
        discharged_at =
            t.max(at(discharge_day, 11, 0) + minutes(g.rng.range(0, 420))) + minutes(20);
    } else {
        t += hours(g.rng.range(1, 5));
        if !g.discharge(
            ep,
            "request-service",
            site,
            t,
            pd::Step::RequestService(pd::RequestService {
                service: service.to_owned(),
            }),
        ) {
            return None;
        }
        let fall_through = delay >= 3 && g.rng.chance(0.12);
        let first_delays = if fall_through { delay - 2 } else { delay };
        for d in 1..=first_delays {
            if (d == 1 || d % 3 == 0 || g.rng.chance(0.25))
                && !record_delay(g, &mut t, add_days(drd, d))
            {
                return None;
            }
        }
        if fall_through {
            let planned = add_days(drd, delay - 1);
            t = t.max(at(add_days(drd, delay - 2), 14, 0)) + minutes(30);
            g.discharge(
                ep,
                "agree0",
                site,
                t,
                pd::Step::AgreeDischarge(pd::AgreeDischarge {
                    service: service.to_owned(),
                    planned_for: date_string(&planned),
                }),
            );
            t = t.max(at(planned, 7, 0)) + minutes(g.rng.range(0, 90));
            g.discharge(
                ep,
                "fell-through",
                site,
                t,
                pd::Step::RecordProviderFallThrough(pd::RecordProviderFallThrough {
                    reason: "The provider withdrew: no carers available for the morning calls"
                        .into(),
                }),
            );
            t += hours(1);
            g.discharge(
                ep,
                "delay-fell-through",
                site,
                t,
                pd::Step::RecordDelayReason(pd::RecordDelayReason {
                    reason: if pathway == Pathway::P3 {
                        DelayReason::AwaitingCareHomePlacement.to_i32()
                    } else if pathway == Pathway::P2 {
                        DelayReason::AwaitingBedBasedRehabilitation.to_i32()
                    } else {
                        DelayReason::AwaitingHomeCare.to_i32()
                    },
                    note: "Sourcing another provider after the first fell through".into(),
                }),
            );
            final_service = match pathway {
                Pathway::P1 => {
                    if REABLEMENT.contains(&service) {
                        HOME_CARE[0]
                    } else {
                        REABLEMENT[0]
                    }
                }
                Pathway::P3 => {
                    if service == CARE_HOMES[0] {
                        CARE_HOMES[1]
                    } else {
                        CARE_HOMES[0]
                    }
                }
                _ => service,
            };
        }
        let agree_day = if delay == 0 {
            drd
        } else {
            add_days(discharge_day, -1)
        };
        t = t.max(at(agree_day, 9, 0)) + minutes(g.rng.range(0, 300));
        if !g.discharge(
            ep,
            "agree",
            site,
            t,
            pd::Step::AgreeDischarge(pd::AgreeDischarge {
                service: final_service.to_owned(),
                planned_for: date_string(&discharge_day.max(drd)),
            }),
        ) {
            return None;
        }
        discharged_at =
            t.max(at(discharge_day, 11, 0) + minutes(g.rng.range(0, 420))) + minutes(20);
    }
    let destination = match pathway {
        Pathway::P0 | Pathway::P1 => "Usual place of residence",
        Pathway::P2 => "Community rehabilitation bed",
        Pathway::P3 => "Care home (discharge to assess)",
    };
    if !g.discharge(
        ep,
        "discharged",
        site,
        discharged_at,
        pd::Step::Discharge(pd::Discharge {
            discharged_at: Some(timestamp(discharged_at)),
            destination: destination.into(),
        }),
    ) {
        return None;
    }

    // A multi-agency meeting for long or delayed stays, often typed up and recorded late.
    let los_days = (discharged_at - admitted_at).num_days();
    if (delay >= 3 || los_days >= 14) && pathway != Pathway::P0 {
        let held = at(add_days(drd, 2), 10, 0).min(discharged_at - hours(2));
        let m = g.meetings;
        g.meetings += 1;
        g.late = g.rng.chance(0.4);
        let attendees = vec![
            site.to_owned(),
            COUNCIL.to_owned(),
            COMMUNITY.to_owned(),
            final_service.to_owned(),
        ];
        let due = add_days(uk_date(held), 3);
        let recorded = held + hours(g.rng.range(1, 6));
        if g.push(
            format!("mtg{m}-record"),
            COUNCIL,
            recorded,
            Op::RecordMeeting(
                m,
                v1::MeetingRecord {
                    held_at: Some(timestamp(held)),
                    attendees,
                    decisions: vec![
                        "Agreed discharge to assess; the person and family in agreement".into(),
                    ],
                    actions: vec![
                        v1::MeetingAction {
                            description: "Confirm the start date of the package or placement"
                                .into(),
                            owner: final_service.to_owned(),
                            due_by: date_string(&due),
                        },
                        v1::MeetingAction {
                            description: "Arrange equipment for home".into(),
                            owner: COMMUNITY.to_owned(),
                            due_by: date_string(&due),
                        },
                    ],
                },
            ),
        ) {
            // The community team takes an action: it joins the care team.
            g.need_member(COMMUNITY, "", Role::CommunityNursing, recorded);
            let done = recorded + hours(g.rng.range(4, 72));
            g.push(
                format!("mtg{m}-action1"),
                final_service,
                done,
                Op::CompleteAction {
                    meeting: m,
                    action: 1,
                    note: "Start date confirmed".into(),
                },
            );
            if g.rng.chance(0.7) {
                let when = done + hours(g.rng.range(1, 48));
                g.push(
                    format!("mtg{m}-action2"),
                    COMMUNITY,
                    when,
                    Op::CompleteAction {
                        meeting: m,
                        action: 2,
                        note: String::new(),
                    },
                );
            }
        }
        g.late = false;
    }

    // Handover, home assessment, close.
    let handover_after = match g.rng.bucket(&[0.6, 0.9, 1.0]) {
        0 => g.rng.range(2, 12),
        1 => g.rng.range(12, 48),
        _ => g.rng.range(48, 144),
    };
    let handover_at = discharged_at + hours(handover_after);
    if pathway == Pathway::P0 {
        let mut t = discharged_at;
        if g.rng.chance(0.45) {
            t = handover_at;
            g.discharge(
                ep,
                "handover",
                final_service,
                t,
                pd::Step::AcceptHandover(pd::AcceptHandover {
                    organisation: final_service.to_owned(),
                }),
            );
        }
        let closed = t + hours(g.rng.range(2, 48));
        g.discharge(
            ep,
            "close",
            site,
            closed,
            pd::Step::Close(pd::CloseEpisode {}),
        );
    } else {
        g.discharge(
            ep,
            "handover",
            final_service,
            handover_at,
            pd::Step::AcceptHandover(pd::AcceptHandover {
                organisation: final_service.to_owned(),
            }),
        );
        let assessed_day = add_days(uk_date(handover_at), g.rng.range(0, 3));
        let assessed_at = handover_at.max(at(assessed_day, 10, 0)) + minutes(g.rng.range(30, 400));
        g.discharge(
            ep,
            "home-assessment",
            final_service,
            assessed_at,
            pd::Step::CompleteHomeAssessment(pd::CompleteHomeAssessment {
                completed_on: date_string(&uk_date(assessed_at)),
                outcome: match pathway {
                    Pathway::P1 => "Managing at home with reablement; goals reviewed",
                    Pathway::P2 => "Progressing with rehabilitation; home in about two weeks",
                    _ => "Settled; long-term needs assessed as residential care",
                }
                .into(),
            }),
        );
        g.need_member(final_service, "", Role::Other, handover_at);
        let plan_at = assessed_at + hours(g.rng.range(2, 48));
        g.want_plan(plan_at);
        let closed = assessed_at + hours(g.rng.range(24 * 7, 24 * 42));
        // Only the organisation managing the episode (the hospital's site) closes it.
        g.discharge(
            ep,
            "close",
            site,
            closed,
            pd::Step::Close(pd::CloseEpisode {}),
        );
        if let Some((k, accepted)) = d2a {
            let started = accepted.max(discharged_at) + minutes(10);
            g.referral_action(k, "d2a", COUNCIL, started, ReferralAction::Start, "");
            g.referral_action(
                k,
                "d2a",
                COUNCIL,
                closed + minutes(5),
                ReferralAction::Complete,
                "",
            );
        }
    }

    // Feedback from the person or a carer.
    if g.rng.chance(0.25) {
        let when = discharged_at + hours(g.rng.range(24 * 3, 24 * 30));
        let carer = g.rng.chance(0.35);
        let rating = u32::try_from(g.rng.range(1, 5).max(g.rng.range(2, 5))).unwrap_or(4);
        let anonymous = g.rng.chance(0.3);
        let text = match rating {
            1 | 2 => "Nobody told us when Mum was coming home and the carers did not turn up",
            3 => "The ward was kind but we had to repeat the same story several times",
            _ => "Everyone knew what was happening; the reablement team were brilliant",
        };
        // Recorded by an organisation with a relationship: the council for pathways 1-3 (it
        // received the discharge-to-assess referral), the hospital for pathway 0.
        let recorder = if pathway == Pathway::P0 {
            site
        } else {
            COUNCIL
        };
        g.push(
            format!("ep{ep}-feedback"),
            recorder,
            when,
            Op::Feedback(v1::FeedbackRecord {
                source: if carer {
                    FeedbackSource::Carer.to_i32()
                } else {
                    FeedbackSource::Person.to_i32()
                },
                anonymous,
                text: text.into(),
                rating,
            }),
        );
    }
    Some(discharged_at)
}

fn pick_pathway(rng: &mut Rng) -> Pathway {
    match rng.bucket(&[0.50, 0.95, 0.99, 1.0]) {
        0 => Pathway::P0,
        1 => Pathway::P1,
        2 => Pathway::P2,
        _ => Pathway::P3,
    }
}

/// Care team, coordinator and care plan at the earliest time each was needed; then the send
/// order: everything by time, late-recorded groups after the rest.
fn finish(mut g: Gen, index: u32, nhs_number: String) -> PersonPlan {
    let team = std::mem::take(&mut g.team);
    let mut added: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
    for ((org, practitioner), (role, when)) in team {
        let org_static = static_org(&org);
        let name = if practitioner.is_empty() {
            format!("team-{org}")
        } else {
            format!("team-{org}-{practitioner}")
        };
        if g.push(
            name,
            org_static,
            when,
            Op::AddMember {
                member: member(&org, &practitioner),
                role,
                since: uk_date(when),
            },
        ) {
            added.insert((org, practitioner), when);
        }
    }
    // The coordinator: the social worker if there is one, otherwise (often) the GP practice.
    let coordinator = g.coordinator.take().or_else(|| {
        let gp = g.gp;
        let when = added.get(&(gp.to_owned(), String::new())).copied()?;
        g.rng.chance(0.6).then(|| (member(gp, ""), when))
    });
    if let Some((who, _)) = coordinator
        && let Some(when) = added.get(&(who.organisation.clone(), who.practitioner.clone()))
    {
        let org = static_org(&who.organisation);
        g.push(
            "name-coordinator".into(),
            org,
            *when + minutes(5),
            Op::NameCoordinator(who),
        );
    }
    if let Some(when) = g.plan_at {
        let review = add_days(uk_date(g.end), g.rng.range(90, 180));
        let gp = g.gp;
        let goal = (*g.rng.pick(&WHAT_MATTERS)).to_owned();
        g.push(
            "care-plan".into(),
            COUNCIL,
            when,
            Op::AgreePlan(v1::PlanContent {
                goals: vec![
                    goal,
                    "Stay safe at home and avoid going back into hospital".into(),
                ],
                activities: vec![
                    v1::Activity {
                        description: "Reablement or home care visits as agreed".into(),
                        responsible_organisation: COUNCIL.into(),
                    },
                    v1::Activity {
                        description: "Medication review".into(),
                        responsible_organisation: gp.into(),
                    },
                ],
                review_date: date_string(&review),
            }),
        );
    }
    let mut steps = g.steps;
    // Registration first, then every fact in time order (stable: a chain's steps keep their
    // order); late-recorded groups after everything else, also in time order.
    let (mut late, mut timely): (Vec<Step>, Vec<Step>) = steps.drain(..).partition(|s| s.late);
    timely.sort_by_key(|s| (!matches!(s.op, Op::Register(_)), s.at));
    late.sort_by_key(|s| s.at);
    timely.extend(late);
    let (steps, unplaced) = schedule(timely);
    PersonPlan {
        index,
        nhs_number,
        steps,
        unplaced,
    }
}

// ---------------------------------------------------------------------------------------------
// Who may send what

/// The organisation owning a service or site of the seed's registry.
fn owner(service: &str) -> Option<&'static str> {
    registry::owner(&ORGANISATIONS, service)
}

#[derive(Debug)]
struct ReferralLink {
    from: &'static str,
    receiver: Option<&'static str>,
    /// Rejected, cancelled or entered in error: no longer a relationship.
    closed: bool,
}

#[derive(Debug, Default)]
struct EpisodeLink {
    manager: Option<&'static str>,
    receiving: Vec<&'static str>,
    /// The organisation of the service the discharge was last agreed with.
    agreed: Option<&'static str>,
    handover: Option<&'static str>,
}

/// What the command service's authorisation knows of one person, for the commands the seed
/// sends: the same rules as `carewoven_governance::Governance::authorise` (a legitimate
/// relationship as the registered GP, through the care team, as a referral's receiving
/// service or through a discharge episode, never as the referrer; care-team changes by
/// members, and the registered GP and the organisations receiving a referral or managing or
/// receiving a discharge may add themselves; objections by the registered GP; referral
/// steps by the receiving service's organisation, cancelling by the referrer; discharge
/// steps by the organisation owning the site). Every command is recorded now, so no ground
/// lapses with the set period during a seed run.
#[derive(Debug, Default)]
struct Access {
    /// The registered GP practice.
    gp: Option<&'static str>,
    /// Members in the order they joined: (organisation, practitioner).
    team: Vec<(&'static str, String)>,
    referrals: BTreeMap<usize, ReferralLink>,
    episodes: BTreeMap<usize, EpisodeLink>,
}

impl Access {
    fn on_team(&self, org: &str) -> bool {
        self.team.iter().any(|(o, _)| *o == org)
    }

    /// Organisations holding a ground other than the care team, in a fixed order: the
    /// registered GP, referrals' receivers, then episodes' organisations. Each may add
    /// itself to the care team.
    fn standing_orgs(&self) -> impl Iterator<Item = &'static str> + '_ {
        let referrals = self
            .referrals
            .values()
            .filter(|r| !r.closed)
            .filter_map(|r| r.receiver);
        let episodes = self
            .episodes
            .values()
            .flat_map(|e| e.manager.into_iter().chain(e.receiving.iter().copied()));
        self.gp.into_iter().chain(referrals).chain(episodes)
    }

    fn standing(&self, org: &str) -> bool {
        self.standing_orgs().any(|o| o == org)
    }

    fn related(&self, org: &str) -> bool {
        self.on_team(org) || self.standing(org)
    }

    /// Whether `actor` may send `op` now.
    fn allows(&self, actor: &str, op: &Op) -> bool {
        match op {
            Op::Register(_) => true,
            Op::AddMember { member, .. } => {
                self.on_team(actor) || (member.organisation == actor && self.standing(actor))
            }
            Op::NameCoordinator(_) | Op::AgreePlan(_) => self.on_team(actor),
            Op::RecordConsent(_, terms) if terms.decision == Decision::Deny.to_i32() => {
                self.gp == Some(actor)
            }
            Op::MakeReferral(_, r) => {
                r.from_organisation == actor && owner(&r.to_service).is_some()
            }
            Op::ProgressReferral {
                referral, action, ..
            } => self.referrals.get(referral).is_some_and(|r| match action {
                ReferralAction::Cancel => r.from == actor,
                ReferralAction::EnteredInError => r.from == actor || r.receiver == Some(actor),
                _ => r.receiver == Some(actor),
            }),
            Op::Contribute { organisation, .. } => *organisation == actor && self.related(actor),
            Op::RequestAssessment { .. }
            | Op::CompleteAssessment { .. }
            | Op::RecordConsent(..)
            | Op::WithdrawConsent { .. }
            | Op::RecordMeeting(..)
            | Op::CompleteAction { .. }
            | Op::Feedback(_) => self.related(actor),
            Op::Admit { site, .. } => owner(site) == Some(actor),
            Op::Discharge { episode, step } => {
                self.episodes.get(episode).is_some_and(|e| match step {
                    pd::Step::AcceptHandover(h) => {
                        h.organisation == actor
                            && match e.agreed {
                                Some(agreed) => agreed == actor,
                                None => self.gp == Some(actor) || self.on_team(actor),
                            }
                    }
                    pd::Step::CompleteHomeAssessment(_) => {
                        e.manager == Some(actor) || e.handover == Some(actor)
                    }
                    _ => e.manager == Some(actor),
                })
            }
        }
    }

    /// Who sends `step` now: its own organisation if it may; a care-team change, which any
    /// member may make, by the first member (the first member adds itself, so it waits for
    /// an organisation that may); otherwise nobody yet.
    fn actor(&self, step: &Step) -> Option<&'static str> {
        if self.allows(step.org, &step.op) {
            return Some(step.org);
        }
        match &step.op {
            Op::AddMember { member, .. } if self.team.is_empty() => {
                let org = static_org(&member.organisation);
                self.allows(org, &step.op).then_some(org)
            }
            Op::AddMember { .. } | Op::NameCoordinator(_) | Op::AgreePlan(_) => {
                self.team.first().map(|(o, _)| *o)
            }
            _ => None,
        }
    }

    /// The relationships `op` starts or ends once sent.
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Register(profile) if !profile.registered_gp.is_empty() => {
                self.gp = Some(static_org(&profile.registered_gp));
            }
            Op::AddMember { member, .. } => {
                let m = (
                    static_org(&member.organisation),
                    member.practitioner.clone(),
                );
                if !self.team.contains(&m) {
                    self.team.push(m);
                }
            }
            Op::MakeReferral(k, r) => {
                self.referrals.insert(
                    *k,
                    ReferralLink {
                        from: static_org(&r.from_organisation),
                        receiver: owner(&r.to_service),
                        closed: false,
                    },
                );
            }
            Op::ProgressReferral {
                referral,
                action:
                    ReferralAction::Reject | ReferralAction::Cancel | ReferralAction::EnteredInError,
                ..
            } => {
                if let Some(r) = self.referrals.get_mut(referral) {
                    r.closed = true;
                }
            }
            Op::Admit { episode, site, .. } => {
                self.episodes.entry(*episode).or_default().manager = owner(site);
            }
            Op::Discharge { episode, step } => {
                let e = self.episodes.entry(*episode).or_default();
                match step {
                    pd::Step::RequestService(pd::RequestService { service }) => {
                        e.receiving.extend(owner(service));
                    }
                    pd::Step::AgreeDischarge(pd::AgreeDischarge { service, .. }) => {
                        e.receiving.extend(owner(service));
                        e.agreed = owner(service);
                    }
                    pd::Step::AcceptHandover(h) => {
                        let org = static_org(&h.organisation);
                        e.receiving.push(org);
                        e.handover = Some(org);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The aggregate a step changes: its steps keep their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Person,
    Team,
    Plan,
    Slot(Slot),
    /// Feedback: each is its own aggregate.
    Own,
}

fn target(op: &Op) -> Target {
    match op {
        Op::Register(_) => Target::Person,
        Op::AddMember { .. } | Op::NameCoordinator(_) => Target::Team,
        Op::AgreePlan(_) => Target::Plan,
        Op::MakeReferral(k, _) | Op::ProgressReferral { referral: k, .. } => {
            Target::Slot(Slot::Referral(*k))
        }
        Op::RequestAssessment { assessment, .. }
        | Op::Contribute { assessment, .. }
        | Op::CompleteAssessment { assessment, .. } => Target::Slot(Slot::Assessment(*assessment)),
        Op::RecordConsent(k, _) | Op::WithdrawConsent { consent: k, .. } => {
            Target::Slot(Slot::Consent(*k))
        }
        Op::Admit { episode, .. } | Op::Discharge { episode, .. } => {
            Target::Slot(Slot::Episode(*episode))
        }
        Op::RecordMeeting(m, _) | Op::CompleteAction { meeting: m, .. } => {
            Target::Slot(Slot::Meeting(*m))
        }
        Op::Feedback(_) => Target::Own,
    }
}

/// What must be sent before `op`: earlier steps of its aggregate, and the referral an
/// assessment names.
fn waits_for(op: &Op) -> [Option<Target>; 2] {
    let referral = match op {
        Op::RequestAssessment {
            referral: Some(k), ..
        } => Some(Target::Slot(Slot::Referral(*k))),
        _ => None,
    };
    [Some(target(op)).filter(|t| *t != Target::Own), referral]
}

/// The send order under authorisation: each step as soon as an organisation may send it
/// (keeping each aggregate's steps in order), by that organisation. A step sent after one
/// that happened later is marked late-recorded. Returns the steps and how many could not be
/// placed (none, for the seed's plans: the unit tests check).
fn schedule(steps: Vec<Step>) -> (Vec<Step>, usize) {
    let mut access = Access::default();
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut pending: Vec<Step> = Vec::new();
    let mut latest: Option<DateTime<Utc>> = None;
    for step in steps {
        pending.push(step);
        'place: loop {
            let mut blocked: Vec<Target> = Vec::new();
            for i in 0..pending.len() {
                let free = waits_for(&pending[i].op)
                    .iter()
                    .flatten()
                    .all(|t| !blocked.contains(t));
                match free.then(|| access.actor(&pending[i])).flatten() {
                    Some(actor) => {
                        let mut step = pending.remove(i);
                        step.org = actor;
                        if latest.is_some_and(|l| l > step.at) {
                            step.late = true;
                        }
                        latest = latest.max(Some(step.at));
                        access.apply(&step.op);
                        out.push(step);
                        // What was waiting may go now: look again from the first.
                        continue 'place;
                    }
                    None => blocked.push(target(&pending[i].op)),
                }
            }
            break;
        }
    }
    (out, pending.len())
}

fn static_org(org: &str) -> &'static str {
    HOSPITALS
        .iter()
        .chain(GPS.iter())
        .chain(REABLEMENT.iter())
        .chain(HOME_CARE.iter())
        .chain(CARE_HOMES.iter())
        .chain(
            [
                COUNCIL,
                COMMUNITY,
                REHAB_BEDS,
                D2A_SERVICE,
                ASC_FRONT_DOOR,
                COMMUNITY_NURSING,
                COMMUNITY_FALLS,
            ]
            .iter(),
        )
        .find(|o| **o == org)
        .copied()
        .unwrap_or(COUNCIL)
}

/// A plausible acting user code per organisation (codes, never names).
fn user_for(org: &str) -> String {
    let kind = if org.starts_with("SYN-HOSP") {
        "flow"
    } else if org.starts_with("SYN-GP") {
        "gp"
    } else if org.starts_with("SYN-ASC") {
        "sw"
    } else if org.starts_with("SYN-COMM") {
        "nurse"
    } else {
        "coord"
    };
    format!("{kind}-01")
}

// ---------------------------------------------------------------------------------------------
// What the history contains

/// Counts of what a plan contains (what was sent, not what was new).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub commands: u64,
    /// Planned steps no organisation was entitled to send, left out.
    pub unplaced: u64,
    pub late_recorded: u64,
    pub referrals: u64,
    pub referrals_rejected: u64,
    pub referrals_cancelled: u64,
    pub referrals_completed: u64,
    pub care_act_assessments: u64,
    pub assessments_completed: u64,
    pub care_plans: u64,
    pub consents: u64,
    pub objections: u64,
    pub admissions: u64,
    pub discharges: u64,
    pub pathways: [u64; 4],
    pub discharged_on_drd: u64,
    pub delayed_1_plus_days: u64,
    pub bed_days_lost: u64,
    pub long_stays_21_plus: u64,
    pub deaths: u64,
    pub self_discharges: u64,
    pub fall_throughs: u64,
    pub deteriorations: u64,
    pub delay_reasons: u64,
    pub handovers: u64,
    pub home_assessments: u64,
    pub readmissions_30d: u64,
    pub in_hospital_at_anchor: u64,
    pub meetings: u64,
    pub feedback: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            commands,
            unplaced,
            late_recorded,
            referrals,
            referrals_rejected,
            referrals_cancelled,
            referrals_completed,
            care_act_assessments,
            assessments_completed,
            care_plans,
            consents,
            objections,
            admissions,
            discharges,
            discharged_on_drd,
            delayed_1_plus_days,
            bed_days_lost,
            long_stays_21_plus,
            deaths,
            self_discharges,
            fall_throughs,
            deteriorations,
            delay_reasons,
            handovers,
            home_assessments,
            readmissions_30d,
            in_hospital_at_anchor,
            meetings,
            feedback
        );
        for (a, b) in self.pathways.iter_mut().zip(o.pathways) {
            *a += b;
        }
    }

    fn json(&self) -> Value {
        json!({
            "commands": self.commands,
            "unplaced": self.unplaced,
            "late_recorded": self.late_recorded,
            "referrals": self.referrals,
            "referrals_rejected": self.referrals_rejected,
            "referrals_cancelled": self.referrals_cancelled,
            "referrals_completed": self.referrals_completed,
            "care_act_assessments": self.care_act_assessments,
            "assessments_completed": self.assessments_completed,
            "care_plans": self.care_plans,
            "consents": self.consents,
            "objections": self.objections,
            "admissions": self.admissions,
            "discharges": self.discharges,
            "pathways": {
                "P0": self.pathways[0], "P1": self.pathways[1],
                "P2": self.pathways[2], "P3": self.pathways[3],
            },
            "discharged_on_drd": self.discharged_on_drd,
            "delayed_1_plus_days": self.delayed_1_plus_days,
            "bed_days_lost": self.bed_days_lost,
            "long_stays_21_plus": self.long_stays_21_plus,
            "deaths": self.deaths,
            "self_discharges": self.self_discharges,
            "fall_throughs": self.fall_throughs,
            "deteriorations": self.deteriorations,
            "delay_reasons": self.delay_reasons,
            "handovers": self.handovers,
            "home_assessments": self.home_assessments,
            "readmissions_30d": self.readmissions_30d,
            "in_hospital_at_anchor": self.in_hospital_at_anchor,
            "meetings": self.meetings,
            "feedback": self.feedback,
        })
    }
}

#[derive(Default)]
struct EpisodeFacts {
    admitted_at: Option<DateTime<Utc>>,
    drd: Option<NaiveDate>,
    pathway: Option<i32>,
    discharged_at: Option<DateTime<Utc>>,
    ended: bool,
}

impl PersonPlan {
    /// What this person's history contains.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            commands: self.steps.len() as u64,
            unplaced: self.unplaced as u64,
            ..Stats::default()
        };
        let mut episodes: BTreeMap<usize, EpisodeFacts> = BTreeMap::new();
        for step in &self.steps {
            if step.late {
                s.late_recorded += 1;
            }
            match &step.op {
                Op::MakeReferral(..) => s.referrals += 1,
                Op::ProgressReferral { action, .. } => match action {
                    ReferralAction::Reject => s.referrals_rejected += 1,
                    ReferralAction::Cancel => s.referrals_cancelled += 1,
                    ReferralAction::Complete => s.referrals_completed += 1,
                    _ => {}
                },
                Op::RequestAssessment { .. } => s.care_act_assessments += 1,
                Op::CompleteAssessment { .. } => s.assessments_completed += 1,
                Op::AgreePlan(_) => s.care_plans += 1,
                Op::RecordConsent(_, terms) => {
                    s.consents += 1;
                    if terms.decision == Decision::Deny.to_i32() {
                        s.objections += 1;
                    }
                }
                Op::Admit {
                    episode,
                    admitted_at,
                    ..
                } => {
                    s.admissions += 1;
                    episodes.entry(*episode).or_default().admitted_at = Some(*admitted_at);
                }
                Op::Discharge { episode, step } => {
                    let e = episodes.entry(*episode).or_default();
                    match step {
                        pd::Step::MarkDischargeReady(r) => {
                            e.drd =
                                NaiveDate::parse_from_str(&r.discharge_ready_date, "%Y-%m-%d").ok();
                        }
                        pd::Step::AssignPathway(p) => e.pathway = Some(p.pathway),
                        pd::Step::RecordProviderFallThrough(_) => s.fall_throughs += 1,
                        pd::Step::RecordDeterioration(_) => s.deteriorations += 1,
                        pd::Step::RecordDelayReason(_) => s.delay_reasons += 1,
                        pd::Step::Discharge(d) => {
                            e.discharged_at = d
                                .discharged_at
                                .and_then(|t| DateTime::from_timestamp(t.seconds, 0));
                        }
                        pd::Step::AcceptHandover(_) => s.handovers += 1,
                        pd::Step::CompleteHomeAssessment(_) => s.home_assessments += 1,
                        pd::Step::RecordDeath(_) => {
                            s.deaths += 1;
                            e.ended = true;
                        }
                        pd::Step::RecordSelfDischarge(_) => {
                            s.self_discharges += 1;
                            e.ended = true;
                        }
                        _ => {}
                    }
                }
                Op::RecordMeeting(..) => s.meetings += 1,
                Op::Feedback(_) => s.feedback += 1,
                _ => {}
            }
        }
        let mut previous_discharge: Option<DateTime<Utc>> = None;
        for e in episodes.values() {
            if let (Some(admitted), Some(prev)) = (e.admitted_at, previous_discharge)
                && admitted - prev <= TimeDelta::days(30)
            {
                s.readmissions_30d += 1;
            }
            match e.discharged_at {
                Some(d) => {
                    s.discharges += 1;
                    if let Some(p) = e.pathway.and_then(|p| usize::try_from(p - 1).ok())
                        && p < 4
                    {
                        s.pathways[p] += 1;
                    }
                    if let Some(drd) = e.drd {
                        let late = (uk_date(d) - drd).num_days().max(0);
                        if late == 0 {
                            s.discharged_on_drd += 1;
                        } else {
                            s.delayed_1_plus_days += 1;
                            s.bed_days_lost += late.unsigned_abs();
                        }
                    }
                    if let Some(a) = e.admitted_at
                        && (d - a).num_days() >= 21
                    {
                        s.long_stays_21_plus += 1;
                    }
                    previous_discharge = Some(d);
                }
                None if !e.ended => s.in_hospital_at_anchor += 1,
                None => {}
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Sending

struct Failure {
    person: u32,
    nhs_number: String,
    step: String,
    command_id: Uuid,
    status: Status,
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    appended: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
}

/// Ids the server gave this person's aggregates, by plan slot.
struct Ids {
    person: String,
    slots: HashMap<Slot, String>,
}

impl Ids {
    fn get(&self, slot: Slot) -> String {
        self.slots.get(&slot).cloned().unwrap_or_default()
    }
}

fn build(op: &Op, context: Option<v1::CommandContext>, ids: &Ids) -> Rpc {
    let person_id = ids.person.clone();
    match op.clone() {
        Op::Register(profile) => Rpc::RegisterPerson(v1::RegisterPersonRequest {
            context,
            profile: Some(profile),
        }),
        Op::AddMember {
            member,
            role,
            since,
        } => Rpc::AddCareTeamMember(v1::AddCareTeamMemberRequest {
            context,
            person_id,
            member: Some(member),
            role: role.to_i32(),
            since: date_string(&since),
        }),
        Op::NameCoordinator(member) => Rpc::NameCareCoordinator(v1::NameCareCoordinatorRequest {
            context,
            person_id,
            member: Some(member),
        }),
        Op::MakeReferral(_, referral) => Rpc::MakeReferral(v1::MakeReferralRequest {
            context,
            person_id,
            referral: Some(referral),
        }),
        Op::ProgressReferral {
            referral,
            action,
            reason,
        } => Rpc::ProgressReferral(v1::ProgressReferralRequest {
            context,
            person_id,
            referral_id: ids.get(Slot::Referral(referral)),
            action: action.to_i32(),
            reason,
        }),
        Op::RequestAssessment {
            referral,
            mut request,
            ..
        } => {
            request.referral_id = referral
                .map(|r| ids.get(Slot::Referral(r)))
                .unwrap_or_default();
            Rpc::RequestAssessment(v1::RequestAssessmentRequest {
                context,
                person_id,
                request: Some(request),
            })
        }
        Op::Contribute {
            assessment,
            organisation,
            summary,
        } => Rpc::ContributeToAssessment(v1::ContributeToAssessmentRequest {
            context,
            person_id,
            assessment_id: ids.get(Slot::Assessment(assessment)),
            organisation: organisation.to_owned(),
            summary,
        }),
        Op::CompleteAssessment {
            assessment,
            findings,
        } => Rpc::CompleteAssessment(v1::CompleteAssessmentRequest {
            context,
            person_id,
            assessment_id: ids.get(Slot::Assessment(assessment)),
            findings: Some(findings),
        }),
        Op::AgreePlan(plan) => Rpc::AgreeCarePlan(v1::AgreeCarePlanRequest {
            context,
            person_id,
            plan: Some(plan),
        }),
        Op::RecordConsent(_, terms) => Rpc::RecordConsent(v1::RecordConsentRequest {
            context,
            person_id,
            terms: Some(terms),
        }),
        Op::WithdrawConsent { consent, reason } => {
            Rpc::WithdrawConsent(v1::WithdrawConsentRequest {
                context,
                person_id,
                consent_id: ids.get(Slot::Consent(consent)),
                reason,
            })
        }
        Op::Admit {
            site,
            ward,
            admitted_at,
            ..
        } => Rpc::AdmitPerson(v1::AdmitPersonRequest {
            context,
            person_id,
            site: site.to_owned(),
            ward: ward.to_owned(),
            admitted_at: Some(timestamp(admitted_at)),
        }),
        Op::Discharge { episode, step } => Rpc::ProgressDischarge(v1::ProgressDischargeRequest {
            context,
            person_id,
            episode_id: ids.get(Slot::Episode(episode)),
            step: Some(step),
        }),
        Op::RecordMeeting(_, meeting) => Rpc::RecordMeeting(v1::RecordMeetingRequest {
            context,
            person_id,
            meeting: Some(meeting),
        }),
        Op::CompleteAction {
            meeting,
            action,
            note,
        } => Rpc::CompleteMeetingAction(v1::CompleteMeetingActionRequest {
            context,
            person_id,
            meeting_id: ids.get(Slot::Meeting(meeting)),
            action,
            note,
        }),
        Op::Feedback(feedback) => Rpc::RecordFeedback(v1::RecordFeedbackRequest {
            context,
            person_id,
            feedback: Some(feedback),
        }),
    }
}

/// Retried with the same command id (safe: the server recognises its own earlier attempt).
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded
    )
}

const ATTEMPTS: u32 = 5;

async fn send_person(
    client: &mut Client,
    auth: &Auth,
    cfg: &Config,
    plan: &PersonPlan,
    timeout: Duration,
    totals: &Totals,
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let mut ids = Ids {
        person: String::new(),
        slots: HashMap::new(),
    };
    let correlation_id = cfg.command_id(plan.index, "correlation");
    let mut previous = None;
    for step in &plan.steps {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let command_id = cfg.command_id(plan.index, &step.name);
        let ctx = Ctx {
            command_id,
            correlation_id: Some(correlation_id),
            causation_id: previous,
            organisation: step.org.to_owned(),
            user: user_for(step.org),
            occurred_at: Some(timestamp(step.at)),
        };
        let failure = |status| Failure {
            person: plan.index,
            nhs_number: plan.nhs_number.clone(),
            step: step.name.clone(),
            command_id,
            status,
        };
        let token = auth
            .token(step.org, &ctx.user, &[])
            .map_err(|e| failure(Status::unauthenticated(format!("{e:#}"))))?;
        let rpc = build(&step.op, ctx.wire(), &ids);
        let mut attempt = 0;
        let reply = loop {
            match rpc.clone().send(client, timeout, token.as_deref()).await {
                Ok(reply) => break reply,
                Err(status) if retryable(status.code()) && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    totals.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(status) => return Err(failure(status)),
            }
        };
        totals.sent.fetch_add(1, Ordering::Relaxed);
        if reply.duplicate && attempt == 0 {
            totals.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            totals.appended.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(step.op, Op::Register(_)) {
            ids.person = reply.person_id.clone();
        }
        if let Some(slot) = step.op.creates() {
            ids.slots.insert(slot, reply.aggregate_id.clone());
        }
        previous = Some(command_id);
    }
    Ok(())
}

/// Run the seed; prints progress and a summary, and returns the exit code.
pub async fn run(mut client: Client, auth: Auth, opts: Options) -> ExitCode {
    let started = Instant::now();
    let registry = match registry::ensure(&mut client, &auth, &ORGANISATIONS, opts.timeout).await {
        Ok(outcome) => outcome,
        Err(f) => {
            if opts.json {
                println!(
                    "{}",
                    json!({"failed_step": f.step, "command_id": f.command_id.to_string(),
                           "error": status_json(&f.status)})
                );
            } else {
                eprintln!(
                    "seed registry set-up `{}` failed (command id {}):\n{}",
                    f.step,
                    f.command_id,
                    status_lines(&f.status).join("\n")
                );
            }
            return ExitCode::from(exit_code(f.status.code()));
        }
    };
    if !opts.json {
        println!("{}", registry.line());
    }
    let auth = Arc::new(auth);
    let cfg = Config {
        seed: opts.seed,
        anchor: opts.anchor,
        days: opts.days,
    };
    let bar = if opts.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::from(opts.people))
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} people  {msg}")
    {
        bar.set_style(style);
    }
    let next = Arc::new(AtomicU32::new(0));
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let failure: Arc<Mutex<Option<Failure>>> = Arc::new(Mutex::new(None));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency.max(1) {
        let (mut client, auth, next, totals, stop, stats, failure, bar) = (
            client.clone(),
            auth.clone(),
            next.clone(),
            totals.clone(),
            stop.clone(),
            stats.clone(),
            failure.clone(),
            bar.clone(),
        );
        let timeout = opts.timeout;
        let people = opts.people;
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= people || stop.load(Ordering::Relaxed) {
                    break;
                }
                let plan = plan_person(&cfg, i);
                match send_person(&mut client, &auth, &cfg, &plan, timeout, &totals, &stop).await {
                    Ok(()) => {
                        if let Ok(mut s) = stats.lock() {
                            s.add(&plan.stats());
                        }
                        bar.inc(1);
                        let sent = totals.sent.load(Ordering::Relaxed);
                        let secs = started.elapsed().as_secs_f64().max(0.001);
                        bar.set_message(format!("{sent} commands, {:.0}/s", sent as f64 / secs));
                    }
                    Err(f) => {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = failure.lock()
                            && slot.is_none()
                        {
                            *slot = Some(f);
                        }
                        break;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    bar.finish_and_clear();

    let elapsed = started.elapsed().as_secs_f64();
    let sent = totals.sent.load(Ordering::Relaxed);
    let stats = stats.lock().map(|s| s.clone()).unwrap_or_default();
    let mut summary = json!({
        "seed": opts.seed,
        "anchor_day": date_string(&opts.anchor),
        "days": opts.days,
        "concurrency": opts.concurrency,
        "people": opts.people,
        "commands_sent": sent,
        "appended": totals.appended.load(Ordering::Relaxed),
        "duplicates": totals.duplicates.load(Ordering::Relaxed),
        "retries": totals.retries.load(Ordering::Relaxed),
        "elapsed_secs": (elapsed * 1000.0).round() / 1000.0,
        "commands_per_sec": (sent as f64 / elapsed.max(0.001)).round(),
        "history": stats.json(),
        "registry": registry.json(),
    });
    let failure = failure.lock().ok().and_then(|mut f| f.take());
    if let Some(f) = failure {
        if let Some(o) = summary.as_object_mut() {
            o.insert("failed_person".into(), json!(f.person));
            o.insert("nhs_number".into(), json!(f.nhs_number));
            o.insert("failed_step".into(), json!(f.step));
            o.insert("command_id".into(), json!(f.command_id.to_string()));
            o.insert("error".into(), status_json(&f.status));
        }
        if opts.json {
            println!("{summary}");
        } else {
            eprintln!(
                "seed failed: person {} (NHS number {}, test range) step `{}` (command id {}) \
                 was refused:\n{}",
                f.person,
                f.nhs_number,
                f.step,
                f.command_id,
                status_lines(&f.status).join("\n")
            );
        }
        return ExitCode::from(exit_code(f.status.code()));
    }
    if opts.json {
        println!("{summary}");
    } else {
        print_summary(&summary, &stats);
    }
    ExitCode::SUCCESS
}

fn print_summary(summary: &Value, s: &Stats) {
    let n = |k: &str| summary[k].clone();
    println!(
        "seed {} anchor {} over {} days: {} people, {} commands sent ({} appended, {} duplicates, \
         {} retries) in {}s, {} commands/s",
        n("seed"),
        n("anchor_day").as_str().unwrap_or_default(),
        n("days"),
        n("people"),
        n("commands_sent"),
        n("appended"),
        n("duplicates"),
        n("retries"),
        n("elapsed_secs"),
        n("commands_per_sec"),
    );
    println!(
        "admissions {}, discharges {} (pathway 0/1/2/3: {}/{}/{}/{}), on the DRD {}, delayed 1+ \
         days {} ({} bed days lost), long stays 21+ days {}, readmissions within 30 days {}, still \
         in hospital {}, deaths {}, self-discharges {}, fall-throughs {}, deteriorations {}",
        s.admissions,
        s.discharges,
        s.pathways[0],
        s.pathways[1],
        s.pathways[2],
        s.pathways[3],
        s.discharged_on_drd,
        s.delayed_1_plus_days,
        s.bed_days_lost,
        s.long_stays_21_plus,
        s.readmissions_30d,
        s.in_hospital_at_anchor,
        s.deaths,
        s.self_discharges,
        s.fall_throughs,
        s.deteriorations,
    );
    println!(
        "referrals {} ({} rejected, {} cancelled, {} completed), Care Act assessments {} ({} \
         completed), care plans {}, consents {} ({} objections), meetings {}, feedback {}, \
         late-recorded commands {}",
        s.referrals,
        s.referrals_rejected,
        s.referrals_cancelled,
        s.referrals_completed,
        s.care_act_assessments,
        s.assessments_completed,
        s.care_plans,
        s.consents,
        s.objections,
        s.meetings,
        s.feedback,
        s.late_recorded,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
            member: super::member(org, ""),
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
        let numbers: std::collections::HashSet<String> =
            (0..2000).map(|i| c.nhs_number(i)).collect();
        assert_eq!(numbers.len(), 2000);
        assert!(numbers.iter().all(|n| n.starts_with("999")));
    }
}
