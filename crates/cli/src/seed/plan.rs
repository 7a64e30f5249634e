//! One person's plan: the steps of their story in the order they happened, before the send
//! order is fixed.

use std::collections::{BTreeMap, HashMap};

use carewoven_domain::values::NhsNumber;
use carewoven_domain::values::uk_date;
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::enums::{Decision, Purpose, ReferralAction, RiskFlag, Role};
use crate::parse::date_string;

use super::access::{schedule, static_org};
use super::community::community_referral;
use super::discharge::episode;
use super::organisations::{
    ANALYTICS, COMMUNITY, COUNCIL, FAMILY, GIVEN, GPS, HOSPITALS, RESEARCH, WHAT_MATTERS,
};
use super::rng::{Rng, hash64};
use super::{BLOCK, FIRST_INDEX, MAX_PEOPLE, NAMESPACE};

/// What a step creates or refers to (indexes in creation order, per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Slot {
    Referral(usize),
    Assessment(usize),
    Consent(usize),
    Episode(usize),
    Meeting(usize),
    Flag(usize),
    Task(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Op {
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
    RaiseFlag(usize, v1::RiskFlag),
    /// A task for `task.owner` (which must be related when it is sent).
    CreateTask(usize, v1::Task),
    TaskStatus {
        task: usize,
        status: crate::enums::TaskStatus,
    },
}

impl Op {
    pub(super) fn creates(&self) -> Option<Slot> {
        match self {
            Op::MakeReferral(k, _) => Some(Slot::Referral(*k)),
            Op::RequestAssessment { assessment, .. } => Some(Slot::Assessment(*assessment)),
            Op::RecordConsent(k, _) => Some(Slot::Consent(*k)),
            Op::Admit { episode, .. } => Some(Slot::Episode(*episode)),
            Op::RecordMeeting(k, _) => Some(Slot::Meeting(*k)),
            Op::RaiseFlag(k, _) => Some(Slot::Flag(*k)),
            Op::CreateTask(k, _) => Some(Slot::Task(*k)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Step {
    /// Unique within the person; the command id derives from it.
    pub(super) name: String,
    pub(super) org: &'static str,
    /// When it happened (valid time): `occurred_at`.
    pub(super) at: DateTime<Utc>,
    /// Sent after the person's other facts although it happened earlier.
    pub(super) late: bool,
    pub(super) op: Op,
}

/// One person's commands, in the order they are sent.
#[derive(Debug, Clone)]
pub struct PersonPlan {
    pub index: u32,
    pub nhs_number: String,
    pub(super) steps: Vec<Step>,
    /// Planned steps no organisation may send (left out; none in practice, see the tests).
    pub(super) unplaced: usize,
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
    pub(super) fn end(&self) -> DateTime<Utc> {
        at(self.anchor, 0, 0)
    }

    pub(super) fn window_start(&self) -> NaiveDate {
        self.anchor
            .checked_sub_days(Days::new(u64::from(self.days)))
            .unwrap_or(self.anchor)
    }

    pub(super) fn key(&self) -> String {
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

pub(super) fn at(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour.min(23), minute.min(59), 0).unwrap_or_default();
    DateTime::<Utc>::from_naive_utc_and_offset(day.and_time(time), Utc)
}

pub(super) fn add_days(day: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        day.checked_add_days(Days::new(n.unsigned_abs()))
    } else {
        day.checked_sub_days(Days::new(n.unsigned_abs()))
    }
    .unwrap_or(day)
}

pub(super) fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

pub(super) fn minutes(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

pub(super) fn member(org: &str, practitioner: &str) -> v1::MemberRef {
    v1::MemberRef {
        organisation: org.to_owned(),
        practitioner: practitioner.to_owned(),
    }
}

/// Builds one person's plan; steps at or after the end of the window are dropped (everything
/// depending on a step happens after it, so what remains is a consistent prefix of each story).
pub(super) struct Gen {
    pub(super) rng: Rng,
    pub(super) end: DateTime<Utc>,
    pub(super) late: bool,
    pub(super) steps: Vec<Step>,
    pub(super) referrals: usize,
    pub(super) assessments: usize,
    pub(super) consents: usize,
    pub(super) episodes: usize,
    pub(super) meetings: usize,
    pub(super) flags: usize,
    pub(super) tasks: usize,
    /// Care-team members needed, with their role and the earliest time each is needed.
    pub(super) team: BTreeMap<(String, String), (Role, DateTime<Utc>)>,
    pub(super) coordinator: Option<(v1::MemberRef, DateTime<Utc>)>,
    pub(super) plan_at: Option<DateTime<Utc>>,
    pub(super) gp: &'static str,
}

impl Gen {
    pub(super) fn push(
        &mut self,
        name: String,
        org: &'static str,
        at: DateTime<Utc>,
        op: Op,
    ) -> bool {
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

    pub(super) fn need_member(
        &mut self,
        org: &str,
        practitioner: &str,
        role: Role,
        at: DateTime<Utc>,
    ) {
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

    pub(super) fn want_plan(&mut self, at: DateTime<Utc>) {
        if at < self.end && self.plan_at.is_none_or(|p| at < p) {
            self.plan_at = Some(at);
        }
    }

    pub(super) fn discharge(
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

    pub(super) fn referral_action(
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
        flags: 0,
        tasks: 0,
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

    // Risk flags the practice knows about: frailty (with its Clinical Frailty Scale score)
    // for many older people, living alone, falls risk.
    let flag_at = registered + minutes(g.rng.range(20, 120));
    let mut flags: Vec<(RiskFlag, u32)> = Vec::new();
    if old && g.rng.chance(0.45) {
        flags.push((
            RiskFlag::Frailty,
            u32::try_from(g.rng.range(4, 8)).unwrap_or(5),
        ));
    }
    if g.rng.chance(0.25) {
        flags.push((RiskFlag::LivesAlone, 0));
    }
    if old && g.rng.chance(0.2) {
        flags.push((RiskFlag::FallsRisk, 0));
    }
    for (code, score) in flags {
        let k = g.flags;
        g.flags += 1;
        g.push(
            format!("flag{k}"),
            gp,
            flag_at + minutes(i64::try_from(k).unwrap_or(0)),
            Op::RaiseFlag(
                k,
                v1::RiskFlag {
                    code: code.to_i32(),
                    frailty_score: score,
                    start: date_string(&uk_date(flag_at)),
                    note: String::new(),
                },
            ),
        );
    }

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

/// Care team, coordinator and care plan at the earliest time each was needed; then the send
/// order: everything by time, late-recorded groups after the rest.
pub(super) fn finish(mut g: Gen, index: u32, nhs_number: String) -> PersonPlan {
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
    if let Some((who, _)) = &coordinator
        && let Some(when) = added.get(&(who.organisation.clone(), who.practitioner.clone()))
    {
        let org = static_org(&who.organisation);
        g.push(
            "name-coordinator".into(),
            org,
            *when + minutes(5),
            Op::NameCoordinator(who.clone()),
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
                        ..Default::default()
                    },
                    v1::Activity {
                        description: "Medication review".into(),
                        responsible_organisation: gp.into(),
                        ..Default::default()
                    },
                ],
                review_date: date_string(&review),
            }),
        );
    }
    // The coordinator hands the practice a medication review (the plan's second activity),
    // due in the weeks after the anchor day; some are done already.
    if let (Some((who, _)), Some(plan_at)) = (&coordinator, g.plan_at)
        && g.rng.chance(0.7)
    {
        let k = g.tasks;
        g.tasks += 1;
        let org = static_org(&who.organisation);
        let gp = g.gp;
        let created = plan_at + minutes(30);
        let due = add_days(uk_date(g.end), g.rng.range(7, 42));
        let pushed = g.push(
            format!("task{k}"),
            org,
            created,
            Op::CreateTask(
                k,
                v1::Task {
                    description: "Medication review after the change in care".into(),
                    owner: Some(member(gp, "")),
                    due: date_string(&due),
                    priority: crate::enums::Priority::Routine.to_i32(),
                    basis: Some(v1::TaskBasis {
                        basis: Some(v1::task_basis::Basis::PlanActivity(v1::PlanActivityRef {
                            plan_version: 1,
                            activity: 1,
                        })),
                    }),
                },
            ),
        );
        if pushed && g.rng.chance(0.5) {
            let mut t = created;
            for status in [
                crate::enums::TaskStatus::Accepted,
                crate::enums::TaskStatus::Completed,
            ] {
                t += hours(g.rng.range(2, 24 * 5));
                let label = format!("{status:?}").to_lowercase();
                g.push(
                    format!("task{k}-{label}"),
                    gp,
                    t,
                    Op::TaskStatus { task: k, status },
                );
            }
        }
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
