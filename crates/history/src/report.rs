//! The service-review report (issue 5): DRD-to-discharge delay, pathway mix,
//! referral-to-assessment time, handover time, 30-day readmission, long stays, tasks completed
//! on time and care-plan reviews overdue (issue 12, `work.rs`), for a period and a set of
//! organisations, with people who opted out of secondary use excluded.
//!
//! Conventions used by every metric:
//! - The period is `[from, to)` and membership is decided by valid time: the time the event
//!   says something happened (`discharged_at`, `admitted_at`, or `occurred_at` where the
//!   payload has no time of its own), never by when the log recorded it.
//! - Follow-up events (handovers, readmissions, assessments) are taken from the whole history
//!   given, also after the period end.
//! - Dates are UTC calendar dates; day counts between an instant and a date use the instant's
//!   UTC date.
//! - Percentiles use the nearest-rank method: for `n` sorted values the `p`th percentile is the
//!   value at 1-based rank `ceil(p / 100 * n)`. The median is the 50th percentile, so for an
//!   even count it is the lower of the two middle values (always an observed value).
//! - Percentages are rounded to one decimal place; the counts beside them are exact.

mod html;
mod nhse;
mod stats;
#[cfg(test)]
mod tests;
mod trend;
mod trend_html;
mod work;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use carewoven_domain::assessment::{AssessmentEvent, AssessmentKind};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, Purpose};
use carewoven_domain::discharge::{DelayReason, DischargeDestination, DischargeEvent, Pathway};
use carewoven_domain::organisation::{OrganisationEvent, OrganisationType};
use carewoven_domain::person::PersonEvent;
use carewoven_domain::referral::ReferralEvent;
use carewoven_domain::values::Code;
use carewoven_domain::values::uk_date;
use carewoven_domain::{Event, RecordedEvent};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use html::to_html;
pub use nhse::{
    DRD_BANDS, DrdBand, DrdStatistics, NhsTables, ReablementOutcome, SitrepDelayRow, SitrepDelays,
    SitrepDischargeRow, SitrepDischarges,
};
use stats::{nearest_rank, percent};
pub use trend::{
    TREND_DEFINITION, TREND_MAX_MONTHS, Trend, TrendFigure, TrendPeriod, TrendSeries, TrendTable,
    trend, trend_csv_files,
};
pub use work::{
    OwnerTasks, REVIEWS_DEFINITION, ReviewsMetric, TASKS_DEFINITION, TaskCounts, TasksMetric,
};

/// The file names [`NhsTables::csv`] writes, in order.
pub const CSV_FILES: [&str; 5] = [
    "drd_delay_bands.csv",
    "drd_summary.csv",
    "sitrep_discharges.csv",
    "sitrep_delays.csv",
    "reablement_91_days.csv",
];

/// Length of stay, in days, from which a stay is long.
pub const LONG_STAY_DAYS: i64 = 21;
/// Readmission window after discharge, in days.
pub const READMISSION_DAYS: i64 = 30;

/// The delay histogram's buckets: label, first day, last day (inclusive; `None` = no limit).
pub const DELAY_BUCKETS: [(&str, i64, Option<i64>); 8] = [
    ("0", 0, Some(0)),
    ("1", 1, Some(1)),
    ("2", 2, Some(2)),
    ("3", 3, Some(3)),
    ("4-6", 4, Some(6)),
    ("7-13", 7, Some(13)),
    ("14-20", 14, Some(20)),
    ("21+", 21, None),
];

pub const OPT_OUT_NOTE: &str = "People who have opted out of secondary use of their data \
(an objection to research or planning that has not been withdrawn) are left out of every \
figure in this report.";

pub const DELAY_DEFINITION: &str = "For each discharge in the period, the number of days from \
the person's Discharge Ready Date (the day they no longer met the criteria to reside) to the \
day they left hospital; if a deterioration replaced an earlier Discharge Ready Date, only the \
latest one counts. Bed days lost is the sum of those delays.";

pub const PATHWAY_DEFINITION: &str = "The share of discharges in the period on each \
discharge-to-assess pathway, as assigned when the person left hospital: 0 home with no new \
support, 1 home with new support, 2 short-term bed-based care, 3 care home.";

pub const REFERRAL_DEFINITION: &str = "For referrals made in the period to adult social care \
(a service of an organisation registered as a local authority, or any referral for which a \
Care Act needs assessment was requested), the time from the referral being made to the Care \
Act needs assessment that answers it being completed, in days; the median and 90th \
percentile use the nearest-rank method. Referrals to services that do not carry out needs \
assessments (community nursing, a falls service) are not counted. Referrals entered in error \
are left out; referrals not yet assessed are counted separately.";

pub const REFERRAL_DECISION_DEFINITION: &str = "For each receiving service (single point of \
access), referrals made to it in the period and the time from the referral being made to the \
service accepting or rejecting it (whichever came first), in hours; the median and 90th \
percentile use the nearest-rank method. Referrals entered in error are left out; referrals not \
yet accepted or rejected are counted separately.";

pub const HANDOVER_DEFINITION: &str = "For discharges in the period, the time from the person \
leaving hospital to the community service accepting the handover, in hours; the median and \
90th percentile use the nearest-rank method. Discharges not yet handed over are counted \
separately.";

pub const READMISSION_DEFINITION: &str = "The share of discharges in the period after which \
the same person was admitted to hospital again (at any site) within 30 days of leaving.";

pub const LONG_STAY_DEFINITION: &str = "Hospital stays in the period of 21 days or more, \
counted in calendar days from admission to leaving hospital, or to the end of the period for \
people still in hospital then, with the delay reasons recorded while they were ready to \
leave.";

/// The whole report. Serialised as JSON by [`to_json`], as HTML by [`to_html`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// First instant of the period (inclusive).
    pub period_from: DateTime<Utc>,
    /// End of the period (exclusive).
    pub period_to: DateTime<Utc>,
    /// Organisation codes in scope, sorted; empty means every organisation.
    pub organisations: Vec<String>,
    pub opt_out_note: String,
    pub drd_to_discharge_delay: DelayMetric,
    pub pathway_mix: PathwayMixMetric,
    pub referral_to_assessment: DurationMetric,
    /// Referral to accepted or rejected, per receiving service (sorted by service code).
    #[serde(default)]
    pub referral_decision_by_service: Vec<ServiceWait>,
    pub handover: DurationMetric,
    pub readmission_30_day: ReadmissionMetric,
    pub long_stays: LongStaysMetric,
    /// Tasks that reached a final status in the period: completed on time, late, cancelled,
    /// failed; by owner organisation.
    #[serde(default)]
    pub tasks_on_time: TasksMetric,
    /// Care-plan reviews overdue at the end of the period, and those falling due in it.
    #[serde(default)]
    pub care_plan_reviews: ReviewsMetric,
    /// NHS England's table shapes for one month and provider ([`nhs_tables`]), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_tables: Option<NhsTables>,
    /// Each headline figure by week and by month over a run of months ([`trend`]), when asked
    /// for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelayMetric {
    pub definition: String,
    /// Discharges in the period that had a Discharge Ready Date.
    pub discharges: u64,
    pub discharged_on_drd: u64,
    pub discharged_on_drd_percent: Option<f64>,
    pub delayed_one_day_or_more: u64,
    pub delayed_one_day_or_more_percent: Option<f64>,
    /// Sum of the delays, in days.
    pub bed_days_lost: u64,
    pub distribution: Vec<DelayBucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayBucket {
    pub label: String,
    pub min_days: u64,
    /// Inclusive; `None` for the open last bucket.
    pub max_days: Option<u64>,
    pub discharges: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathwayMixMetric {
    pub definition: String,
    /// Every discharge in the period (the denominator).
    pub discharges: u64,
    /// Pathways 0 to 3, in order.
    pub pathways: Vec<PathwayShare>,
    /// Discharges with no pathway recorded (not expected: the life cycle requires one).
    pub no_pathway: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathwayShare {
    pub pathway: u8,
    pub discharges: u64,
    pub percent: Option<f64>,
}

/// One receiving service's waiting time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceWait {
    pub service: String,
    pub wait: DurationMetric,
}

/// A waiting time: median and 90th percentile (nearest rank) of the measured cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationMetric {
    pub definition: String,
    /// `"days"` or `"hours"`.
    pub unit: String,
    /// Cases measured (the end event has happened).
    pub count: u64,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    /// Cases in the period whose end event has not happened (yet).
    pub not_yet: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadmissionMetric {
    pub definition: String,
    pub discharges: u64,
    pub readmitted_within_30_days: u64,
    pub percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongStaysMetric {
    pub definition: String,
    pub threshold_days: u64,
    pub count: u64,
    /// Longest first, then by episode id.
    pub episodes: Vec<LongStay>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongStay {
    pub episode_id: Uuid,
    pub person_id: Uuid,
    pub site: String,
    pub length_of_stay_days: u64,
    /// Still in hospital at the end of the period (the stay is counted to the period end).
    pub still_in_hospital: bool,
    /// Delay reasons recorded on the episode, by reason, counted.
    pub delay_reasons: BTreeMap<String, u64>,
}

/// Pretty-printed JSON.
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report is always serialisable")
}

/// People who have opted out of secondary use (research, planning): a `ConsentRecorded` with
/// decision `Deny` for purpose `Research` or `Planning` whose consent has not been withdrawn
/// (anywhere in the history given). Validity dates of the consent are not considered.
pub fn opted_out<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> HashSet<Uuid> {
    // consent aggregate -> (person, denies secondary use, withdrawn)
    let mut consents: HashMap<Uuid, (Uuid, bool, bool)> = HashMap::new();
    for e in events {
        let Event::Consent(event) = &e.event else {
            continue;
        };
        let entry = consents
            .entry(e.meta.aggregate_id)
            .or_insert((e.meta.person_id, false, false));
        match event {
            ConsentEvent::Recorded { terms } => {
                entry.1 = terms.decision == ConsentDecision::Deny
                    && matches!(terms.purpose, Purpose::Research | Purpose::Planning);
            }
            ConsentEvent::Withdrawn { .. } => entry.2 = true,
        }
    }
    consents
        .into_values()
        .filter(|(_, denies, withdrawn)| *denies && !*withdrawn)
        .map(|(person, _, _)| person)
        .collect()
}

/// One discharge episode as the report needs it, folded from its events.
#[derive(Debug, Clone)]
struct Episode {
    id: Uuid,
    person: Uuid,
    site: Code,
    admitted_at: DateTime<Utc>,
    /// The current DRD: cleared by deterioration (superseded), set again by the next one.
    drd: Option<NaiveDate>,
    pathway: Option<Pathway>,
    delay_reasons: Vec<DelayReason>,
    discharged_at: Option<DateTime<Utc>>,
    drd_at_discharge: Option<NaiveDate>,
    pathway_at_discharge: Option<Pathway>,
    handover_at: Option<DateTime<Utc>>,
    /// Died or self-discharged in hospital (before any discharge).
    left_otherwise_at: Option<DateTime<Utc>>,
    died_at: Option<DateTime<Utc>>,
    destination_code: Option<DischargeDestination>,
    /// (when recorded, the DRD then in force), in log order.
    drd_history: Vec<(DateTime<Utc>, Option<NaiveDate>)>,
    /// (when recorded, reason), in log order.
    delay_history: Vec<(DateTime<Utc>, DelayReason)>,
}

/// Fold one discharge event into the episodes: an admission opens one, every other event
/// changes the episode it is about.
fn fold_episode(episodes: &mut BTreeMap<Uuid, Episode>, e: &RecordedEvent, event: &DischargeEvent) {
    let id = e.meta.aggregate_id;
    if let DischargeEvent::Admitted {
        site, admitted_at, ..
    } = event
    {
        episodes.entry(id).or_insert_with(|| Episode {
            id,
            person: e.meta.person_id,
            site: site.clone(),
            admitted_at: *admitted_at,
            drd: None,
            pathway: None,
            delay_reasons: Vec::new(),
            discharged_at: None,
            drd_at_discharge: None,
            pathway_at_discharge: None,
            handover_at: None,
            left_otherwise_at: None,
            died_at: None,
            destination_code: None,
            drd_history: Vec::new(),
            delay_history: Vec::new(),
        });
    } else if let Some(ep) = episodes.get_mut(&id) {
        ep.apply(event, e.meta.occurred_at);
    }
}

impl Episode {
    /// The stay as NHS England's tables and the trend read it.
    fn stay(&self) -> nhse::Stay<'_> {
        nhse::Stay {
            person: self.person,
            admitted_at: self.admitted_at,
            discharged_at: self.discharged_at,
            left_otherwise_at: self.left_otherwise_at,
            died_at: self.died_at,
            drd_at_discharge: self.drd_at_discharge,
            pathway_at_discharge: self.pathway_at_discharge,
            destination_code: self.destination_code,
            drd_history: &self.drd_history,
            delay_history: &self.delay_history,
        }
    }

    /// When the person left hospital, however they left.
    fn left_at(&self) -> Option<DateTime<Utc>> {
        self.discharged_at.or(self.left_otherwise_at)
    }

    fn apply(&mut self, event: &DischargeEvent, occurred_at: DateTime<Utc>) {
        use DischargeEvent as E;
        match event {
            E::DischargeReady {
                discharge_ready_date,
                ..
            } => self
                .drd_history
                .push((occurred_at, Some(*discharge_ready_date))),
            E::Deteriorated { .. } => self.drd_history.push((occurred_at, None)),
            E::DelayReasonRecorded { reason, .. } => {
                self.delay_history.push((occurred_at, *reason));
            }
            E::Died { died_at } => self.died_at = Some(*died_at),
            _ => {}
        }
        match event {
            E::DischargeReady {
                discharge_ready_date,
                ..
            } => self.drd = Some(*discharge_ready_date),
            E::PathwayAssigned { pathway } => self.pathway = Some(*pathway),
            E::Deteriorated { .. } => {
                // As the aggregate does: the DRD is superseded, the pathway starts again.
                self.drd = None;
                self.pathway = None;
            }
            E::DelayReasonRecorded { reason, .. } => self.delay_reasons.push(*reason),
            E::Discharged {
                discharged_at,
                destination_code,
                ..
            } if self.discharged_at.is_none() => {
                self.discharged_at = Some(*discharged_at);
                self.destination_code = *destination_code;
                self.drd_at_discharge = self.drd;
                self.pathway_at_discharge = self.pathway;
            }
            E::HandoverAccepted { .. } if self.handover_at.is_none() => {
                self.handover_at = Some(occurred_at);
            }
            E::Died { died_at } if self.left_at().is_none() => {
                self.left_otherwise_at = Some(*died_at);
            }
            E::SelfDischarged { left_at } if self.left_at().is_none() => {
                self.left_otherwise_at = Some(*left_at);
            }
            _ => {}
        }
    }
}

struct ReferralMade {
    person: Uuid,
    made_at: DateTime<Utc>,
    from: Code,
    to: Code,
    entered_in_error: bool,
    /// First accepted or rejected.
    decided_at: Option<DateTime<Utc>>,
}

/// Everything the report's figures are computed from, folded from the events once, in log
/// order (`sequence`), whatever order they were passed in.
struct Folded {
    episodes: BTreeMap<Uuid, Episode>,
    referrals: BTreeMap<Uuid, ReferralMade>,
    /// Referral -> first completion of a Care Act needs assessment that references it.
    needs_assessed: HashMap<Uuid, DateTime<Utc>>,
    needs_assessment_requested: HashSet<Uuid>,
    /// Registry: service (or organisation) code -> its organisation's type.
    service_types: HashMap<Code, OrganisationType>,
    dates_of_birth: HashMap<Uuid, NaiveDate>,
    tasks: BTreeMap<Uuid, work::TaskFolded>,
    /// Care plan aggregate -> its versions.
    plans: BTreeMap<Uuid, work::PlanFolded>,
}

impl Folded {
    fn from_events<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Self {
        let mut events: Vec<&RecordedEvent> = events.into_iter().collect();
        events.sort_by_key(|e| e.sequence);
        let mut episodes: BTreeMap<Uuid, Episode> = BTreeMap::new();
        let mut referrals: BTreeMap<Uuid, ReferralMade> = BTreeMap::new();
        let mut assessment_kinds: HashMap<Uuid, (AssessmentKind, Option<Uuid>)> = HashMap::new();
        let mut needs_assessed: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
        let mut needs_assessment_requested: HashSet<Uuid> = HashSet::new();
        // Organisation aggregate -> type, for services added later.
        let mut org_types: HashMap<Uuid, OrganisationType> = HashMap::new();
        let mut service_types: HashMap<Code, OrganisationType> = HashMap::new();
        let mut dates_of_birth: HashMap<Uuid, NaiveDate> = HashMap::new();
        let mut tasks = BTreeMap::new();
        let mut plans = BTreeMap::new();
        for e in &events {
            let id = e.meta.aggregate_id;
            match &e.event {
                Event::Discharge(event) => fold_episode(&mut episodes, e, event),
                Event::Task(event) => work::fold_task(&mut tasks, e, event),
                Event::CarePlan(event) => work::fold_plan(&mut plans, e, event),
                Event::Person(PersonEvent::Registered { profile }) => {
                    dates_of_birth.insert(e.meta.person_id, profile.date_of_birth);
                }
                Event::Person(PersonEvent::DetailsCorrected { correction, .. }) => {
                    if let Some(dob) = correction.date_of_birth {
                        dates_of_birth.insert(e.meta.person_id, dob);
                    }
                }
                Event::Referral(ReferralEvent::Submitted { referral }) => {
                    referrals.entry(id).or_insert_with(|| ReferralMade {
                        person: e.meta.person_id,
                        made_at: e.meta.occurred_at,
                        from: referral.from_organisation.clone(),
                        to: referral.to_service.clone(),
                        entered_in_error: false,
                        decided_at: None,
                    });
                }
                Event::Referral(ReferralEvent::Accepted | ReferralEvent::Rejected { .. }) => {
                    if let Some(r) = referrals.get_mut(&id) {
                        r.decided_at.get_or_insert(e.meta.occurred_at);
                    }
                }
                Event::Organisation(OrganisationEvent::Registered {
                    code,
                    profile,
                    services,
                }) => {
                    org_types.insert(id, profile.org_type);
                    service_types.insert(code.clone(), profile.org_type);
                    for service in services {
                        service_types.insert(service.clone(), profile.org_type);
                    }
                }
                Event::Organisation(OrganisationEvent::ServiceAdded { service }) => {
                    if let Some(t) = org_types.get(&id) {
                        service_types.insert(service.clone(), *t);
                    }
                }
                Event::Referral(ReferralEvent::EnteredInError { .. }) => {
                    if let Some(r) = referrals.get_mut(&id) {
                        r.entered_in_error = true;
                    }
                }
                Event::Assessment(AssessmentEvent::Requested { request }) => {
                    if let (AssessmentKind::CareActNeeds, Some(r)) =
                        (request.kind, request.referral_id)
                    {
                        needs_assessment_requested.insert(r);
                    }
                    assessment_kinds.insert(id, (request.kind, request.referral_id));
                }
                Event::Assessment(AssessmentEvent::Completed { .. }) => {
                    if let Some((AssessmentKind::CareActNeeds, Some(referral))) =
                        assessment_kinds.get(&id)
                    {
                        needs_assessed
                            .entry(*referral)
                            .and_modify(|at| *at = (*at).min(e.meta.occurred_at))
                            .or_insert(e.meta.occurred_at);
                    }
                }
                _ => {}
            }
        }
        Folded {
            episodes,
            referrals,
            needs_assessed,
            needs_assessment_requested,
            service_types,
            dates_of_birth,
            tasks,
            plans,
        }
    }

    /// A referral to adult social care: to a service of a local authority, or one for which a
    /// Care Act needs assessment was requested.
    fn is_adult_social_care(&self, id: &Uuid, r: &ReferralMade) -> bool {
        self.service_types.get(&r.to) == Some(&OrganisationType::LocalAuthority)
            || self.needs_assessment_requested.contains(id)
    }

    /// Days from the referral being made to the first Care Act needs assessment answering it
    /// being completed; `None` while none has been (or one is dated before the referral).
    fn days_to_needs_assessment(&self, id: &Uuid, r: &ReferralMade) -> Option<f64> {
        self.needs_assessed
            .get(id)
            .filter(|done| **done >= r.made_at)
            .map(|done| seconds(*done - r.made_at) / 86_400.0)
    }
}

/// Compute the service-review report for `[from, to)`.
///
/// `organisations` limits the scope: an episode is in scope when its site is listed, a
/// referral when its referring organisation or receiving service is; empty means every
/// organisation. Everything about a person in `opted_out` is left out (see [`opted_out`]).
/// Events may come in any order; they are replayed in log order (`sequence`).
pub fn service_review<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    organisations: &[Code],
    opted_out: &HashSet<Uuid>,
) -> Report {
    let folded = Folded::from_events(events);
    let scope: BTreeSet<&Code> = organisations.iter().collect();
    let in_scope = |code: &Code| scope.is_empty() || scope.contains(code);
    let Folded {
        episodes,
        referrals,
        ..
    } = &folded;

    // Every admission, by person, for readmissions (any site, any scope).
    let mut admissions: HashMap<Uuid, Vec<DateTime<Utc>>> = HashMap::new();
    for ep in episodes.values() {
        admissions
            .entry(ep.person)
            .or_default()
            .push(ep.admitted_at);
    }

    let considered: Vec<&Episode> = episodes
        .values()
        .filter(|ep| !opted_out.contains(&ep.person) && in_scope(&ep.site))
        .collect();
    let discharged: Vec<(&Episode, DateTime<Utc>)> = considered
        .iter()
        .filter_map(|ep| ep.discharged_at.map(|at| (*ep, at)))
        .filter(|(_, at)| from <= *at && *at < to)
        .collect();

    // DRD-to-discharge delay.
    // A discharge dated before its DRD counts as on the DRD.
    let delays: Vec<u64> = discharged
        .iter()
        .filter_map(|(ep, _)| ep.stay().delay_days())
        .collect();
    let total = delays.len() as u64;
    let on_drd = delays.iter().filter(|d| **d == 0).count() as u64;
    let distribution = DELAY_BUCKETS
        .iter()
        .map(|(label, lo, hi)| {
            let lo = u64::try_from(*lo).unwrap_or(0);
            let hi = hi.map(|h| u64::try_from(h).unwrap_or(0));
            DelayBucket {
                label: (*label).to_owned(),
                min_days: lo,
                max_days: hi,
                discharges: delays
                    .iter()
                    .filter(|d| **d >= lo && hi.is_none_or(|h| **d <= h))
                    .count() as u64,
            }
        })
        .collect();
    let drd_to_discharge_delay = DelayMetric {
        definition: DELAY_DEFINITION.to_owned(),
        discharges: total,
        discharged_on_drd: on_drd,
        discharged_on_drd_percent: percent(on_drd, total),
        delayed_one_day_or_more: total - on_drd,
        delayed_one_day_or_more_percent: percent(total - on_drd, total),
        bed_days_lost: delays.iter().sum(),
        distribution,
    };

    // Pathway mix.
    let n_discharged = discharged.len() as u64;
    let pathways = [Pathway::P0, Pathway::P1, Pathway::P2, Pathway::P3]
        .into_iter()
        .map(|p| {
            let n = discharged
                .iter()
                .filter(|(ep, _)| ep.pathway_at_discharge == Some(p))
                .count() as u64;
            PathwayShare {
                pathway: p.number(),
                discharges: n,
                percent: percent(n, n_discharged),
            }
        })
        .collect();
    let pathway_mix = PathwayMixMetric {
        definition: PATHWAY_DEFINITION.to_owned(),
        discharges: n_discharged,
        pathways,
        no_pathway: discharged
            .iter()
            .filter(|(ep, _)| ep.pathway_at_discharge.is_none())
            .count() as u64,
    };

    // Referral to needs assessment.
    let mut waits_days = Vec::new();
    let mut not_assessed = 0;
    for (id, r) in referrals {
        if r.entered_in_error
            || opted_out.contains(&r.person)
            || !(in_scope(&r.from) || in_scope(&r.to))
            || !(from <= r.made_at && r.made_at < to)
        {
            continue;
        }
        if !folded.is_adult_social_care(id, r) {
            continue;
        }
        match folded.days_to_needs_assessment(id, r) {
            Some(days) => waits_days.push(days),
            None => not_assessed += 1,
        }
    }
    let referral_to_assessment =
        duration_metric(REFERRAL_DEFINITION, "days", waits_days, not_assessed);

    // Referral to accepted or rejected, per receiving service.
    let mut by_service: BTreeMap<&Code, (Vec<f64>, u64)> = BTreeMap::new();
    for r in referrals.values() {
        if r.entered_in_error
            || opted_out.contains(&r.person)
            || !(in_scope(&r.from) || in_scope(&r.to))
            || !(from <= r.made_at && r.made_at < to)
        {
            continue;
        }
        let entry = by_service.entry(&r.to).or_default();
        match r.decided_at {
            Some(at) if at >= r.made_at => entry.0.push(seconds(at - r.made_at) / 3_600.0),
            _ => entry.1 += 1,
        }
    }
    let referral_decision_by_service = by_service
        .into_iter()
        .map(|(service, (hours, pending))| ServiceWait {
            service: service.as_str().to_owned(),
            wait: duration_metric(REFERRAL_DECISION_DEFINITION, "hours", hours, pending),
        })
        .collect();

    // Handover.
    let mut handover_hours = Vec::new();
    let mut not_handed_over = 0;
    for (ep, at) in &discharged {
        match ep.handover_at {
            Some(h) if h >= *at => handover_hours.push(seconds(h - *at) / 3_600.0),
            _ => not_handed_over += 1,
        }
    }
    let handover = duration_metric(
        HANDOVER_DEFINITION,
        "hours",
        handover_hours,
        not_handed_over,
    );

    // 30-day readmission.
    let window = chrono::Duration::days(READMISSION_DAYS);
    let readmitted = discharged
        .iter()
        .filter(|(ep, at)| {
            admissions
                .get(&ep.person)
                .is_some_and(|list| list.iter().any(|adm| *adm > *at && *adm - *at <= window))
        })
        .count() as u64;
    let readmission_30_day = ReadmissionMetric {
        definition: READMISSION_DEFINITION.to_owned(),
        discharges: n_discharged,
        readmitted_within_30_days: readmitted,
        percent: percent(readmitted, n_discharged),
    };

    // Long stays: stays overlapping the period, counted to leaving or to the period end.
    let mut long: Vec<LongStay> = considered
        .iter()
        .filter(|ep| ep.admitted_at < to && ep.left_at().is_none_or(|left| left >= from))
        .filter_map(|ep| {
            let (end, still_in_hospital) = match ep.left_at() {
                Some(left) if left < to => (left, false),
                _ => (to, true),
            };
            let days = (uk_date(end) - uk_date(ep.admitted_at)).num_days();
            (days >= LONG_STAY_DAYS).then(|| {
                let mut delay_reasons = BTreeMap::new();
                for r in &ep.delay_reasons {
                    *delay_reasons
                        .entry(delay_reason_name(*r).to_owned())
                        .or_insert(0) += 1;
                }
                LongStay {
                    episode_id: ep.id,
                    person_id: ep.person,
                    site: ep.site.as_str().to_owned(),
                    length_of_stay_days: u64::try_from(days).unwrap_or(0),
                    still_in_hospital,
                    delay_reasons,
                }
            })
        })
        .collect();
    long.sort_by(|a, b| {
        b.length_of_stay_days
            .cmp(&a.length_of_stay_days)
            .then(a.episode_id.cmp(&b.episode_id))
    });
    let long_stays = LongStaysMetric {
        definition: LONG_STAY_DEFINITION.to_owned(),
        threshold_days: LONG_STAY_DAYS as u64,
        count: long.len() as u64,
        episodes: long,
    };

    let tasks_on_time = work::tasks_metric(&folded.tasks, from, to, &in_scope, opted_out);
    let care_plan_reviews = work::reviews_metric(&folded.plans, from, to, &in_scope, opted_out);

    Report {
        period_from: from,
        period_to: to,
        organisations: scope.iter().map(|c| c.as_str().to_owned()).collect(),
        opt_out_note: OPT_OUT_NOTE.to_owned(),
        drd_to_discharge_delay,
        pathway_mix,
        referral_to_assessment,
        referral_decision_by_service,
        handover,
        readmission_30_day,
        long_stays,
        tasks_on_time,
        care_plan_reviews,
        nhs_tables: None,
        trend: None,
    }
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_seconds() as f64
}

fn duration_metric(
    definition: &str,
    unit: &str,
    mut values: Vec<f64>,
    not_yet: u64,
) -> DurationMetric {
    values.sort_by(f64::total_cmp);
    DurationMetric {
        definition: definition.to_owned(),
        unit: unit.to_owned(),
        count: values.len() as u64,
        median: nearest_rank(&values, 50),
        p90: nearest_rank(&values, 90),
        not_yet,
    }
}

/// Stable snake_case name of a delay reason, as it appears in the report: its national code
/// (`carewoven_domain::codes::delay_reason`).
pub fn delay_reason_name(reason: DelayReason) -> &'static str {
    reason.code()
}

/// NHS England's table shapes for the UK calendar month `year`-`month` and the sites in
/// `provider` (empty: every site): the Discharge Ready Date statistics, the situation report's
/// tables and the 91-day reablement outcome (see `nhse.rs` for each definition). Events may
/// come in any order; people in `opted_out` are left out; `history_end` is where the history
/// read ends (the report's period end): follow-ups beyond it are incomplete. `None` for a
/// month that does not exist.
pub fn nhs_tables<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
    year: i32,
    month: u32,
    provider: &[Code],
    opted_out: &HashSet<Uuid>,
    history_end: DateTime<Utc>,
) -> Option<NhsTables> {
    let Folded {
        episodes,
        dates_of_birth,
        ..
    } = Folded::from_events(events);
    let scope: BTreeSet<&Code> = provider.iter().collect();
    let people: Vec<&Episode> = episodes
        .values()
        .filter(|ep| !opted_out.contains(&ep.person))
        .collect();
    // Follow-ups (readmissions, deaths) look at every site; the tables at the provider's.
    let all: Vec<nhse::Stay<'_>> = people.iter().map(|ep| ep.stay()).collect();
    let in_scope: Vec<nhse::Stay<'_>> = people
        .iter()
        .filter(|ep| scope.is_empty() || scope.contains(&ep.site))
        .map(|ep| ep.stay())
        .collect();
    nhse::tables(
        &in_scope,
        &all,
        &dates_of_birth,
        year,
        month,
        scope.iter().map(|c| c.as_str().to_owned()).collect(),
        history_end,
    )
}
