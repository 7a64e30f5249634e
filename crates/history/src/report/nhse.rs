//! NHS England's published table shapes for one month and provider (issue 14, part 4): the
//! Discharge Ready Date statistics, the discharge situation report's tables, and the adult
//! social care reablement outcome (65+ still at home 91 days after discharge). Each table
//! carries its definition and renders as CSV.
//!
//! Conventions beyond the report's own (see the parent module):
//! - The month is a UK calendar month; a discharge belongs to it by the UK calendar day the
//!   person left hospital (as in the published statistics), not by UTC instants.
//! - The provider is the set of sites in scope (the report's organisations, or all).

use std::collections::{BTreeMap, HashMap};

use carewoven_domain::discharge::{DelayReason, DischargeDestination, Pathway};
use carewoven_domain::values::uk_date;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::stats::{percent, round2};

/// The Discharge Ready Date statistics' delay bands: label, first day, last day (inclusive).
pub const DRD_BANDS: [(&str, u64, Option<u64>); 7] = [
    ("0", 0, Some(0)),
    ("1", 1, Some(1)),
    ("2-3", 2, Some(3)),
    ("4-6", 4, Some(6)),
    ("7-13", 7, Some(13)),
    ("14-20", 14, Some(20)),
    ("21+", 21, None),
];

/// Days after discharge at which the reablement outcome asks whether the person is at home.
pub const REABLEMENT_FOLLOW_UP_DAYS: i64 = 91;
/// The reablement outcome's minimum age at discharge.
pub const REABLEMENT_MIN_AGE: u32 = 65;

pub const DRD_STATISTICS_DEFINITION: &str = "In the shape of NHS England's monthly Discharge \
Ready Date statistics. Discharges: people who left hospital from the provider's sites on a UK \
calendar day of the month and had a Discharge Ready Date (the latest one, if a deterioration \
replaced an earlier one). Delay: whole days from the Discharge Ready Date to the day of \
discharge (a discharge recorded before its Discharge Ready Date counts as 0). Each band counts \
discharges with that delay and its percentage of all discharges; bed days lost in a band is the \
sum of the delays in it. Average days from Discharge Ready Date to discharge is the mean delay \
over all discharges (including 0-day delays) and over the delayed ones only (excluding 0-day \
delays), rounded to two decimal places.";

pub const SITREP_DISCHARGES_DEFINITION: &str = "In the shape of the acute discharge situation \
report's table of discharges by pathway and destination: people who left hospital from the \
provider's sites on a UK calendar day of the month, by the discharge-to-assess pathway in force \
when they left and the UK Core DischargeDestinationEngland code recorded with the discharge \
(\"not coded\" for discharges recorded without one).";

pub const SITREP_DELAYS_DEFINITION: &str = "In the shape of the acute discharge situation \
report's table of people not discharged, by reason: people at the provider's sites who at the \
end of the month (the first instant of the next UK month) had a Discharge Ready Date on or \
before that day and had not left hospital, by the delay reason most recently recorded for them \
by then (\"no reason recorded\" if none); reasons are the national list as revised in October \
2023.";

pub const REABLEMENT_DEFINITION: &str = "The adult social care outcome measure of people still \
at home 91 days after discharge from hospital into reablement or rehabilitation. Cohort: people \
aged 65 or over on the day of discharge (from the date of birth on their record) who left \
hospital from the provider's sites on a UK calendar day of the month on pathway 1 (support at \
home) or pathway 2 (bed-based rehabilitation or reablement); people who died in hospital or \
left on pathway 0 or 3 are not in the cohort, nor are people with no date of birth. Outcome: \
at home on the 91st day after discharge, meaning not in hospital on that day, no death \
recorded by then, and not discharged to a care home (DischargeDestinationEngland 54, 65 or 85) \
from a later stay ending by then. People whose 91st day falls after the end of the history read \
(the report's period end) are counted as follow-up incomplete and left out of the percentage.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NhsTables {
    /// `YYYY-MM`.
    pub month: String,
    /// Sites in scope, sorted; empty means every site.
    pub provider: Vec<String>,
    pub drd_statistics: DrdStatistics,
    pub sitrep_discharges: SitrepDischarges,
    pub sitrep_delays: SitrepDelays,
    pub reablement: ReablementOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrdStatistics {
    pub definition: String,
    pub total_discharges: u64,
    pub discharged_on_drd: u64,
    pub discharged_on_drd_percent: Option<f64>,
    pub discharged_one_plus_days_after: u64,
    pub discharged_one_plus_days_after_percent: Option<f64>,
    pub bands: Vec<DrdBand>,
    pub bed_days_lost: u64,
    pub average_days_including_zero: Option<f64>,
    pub average_days_excluding_zero: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrdBand {
    pub label: String,
    pub discharges: u64,
    pub percent: Option<f64>,
    pub bed_days_lost: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitrepDischarges {
    pub definition: String,
    pub total: u64,
    /// By pathway (0-3, or `None` if none was recorded), then destination code.
    pub rows: Vec<SitrepDischargeRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitrepDischargeRow {
    pub pathway: Option<u8>,
    /// DischargeDestinationEngland code, or `None` when not coded.
    pub destination_code: Option<String>,
    pub destination: String,
    pub discharges: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitrepDelays {
    pub definition: String,
    /// The snapshot instant (the start of the next UK month).
    pub at: DateTime<Utc>,
    pub total: u64,
    /// In the national list's order, then "no reason recorded"; only reasons with people.
    pub rows: Vec<SitrepDelayRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitrepDelayRow {
    /// The national code, or `None` for "no reason recorded".
    pub reason_code: Option<String>,
    pub reason: String,
    pub people: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReablementOutcome {
    pub definition: String,
    /// People in the cohort whose 91 days have passed (the denominator).
    pub cohort: u64,
    pub at_home_after_91_days: u64,
    pub percent: Option<f64>,
    /// In the cohort but the 91st day is after the end of the history read.
    pub follow_up_incomplete: u64,
}

/// One stay as these tables need it (folded by the parent module).
pub(super) struct Stay<'a> {
    pub person: Uuid,
    pub admitted_at: DateTime<Utc>,
    pub discharged_at: Option<DateTime<Utc>>,
    pub left_otherwise_at: Option<DateTime<Utc>>,
    pub died_at: Option<DateTime<Utc>>,
    pub drd_at_discharge: Option<NaiveDate>,
    pub pathway_at_discharge: Option<Pathway>,
    pub destination_code: Option<DischargeDestination>,
    /// (when recorded, the DRD then in force) in log order.
    pub drd_history: &'a [(DateTime<Utc>, Option<NaiveDate>)],
    /// (when recorded, reason) in log order.
    pub delay_history: &'a [(DateTime<Utc>, DelayReason)],
}

impl Stay<'_> {
    fn left_at(&self) -> Option<DateTime<Utc>> {
        self.discharged_at.or(self.left_otherwise_at)
    }

    /// Whole days from the Discharge Ready Date to the UK calendar day of discharge (0 for a
    /// discharge recorded before its DRD); `None` without a discharge or a DRD.
    pub fn delay_days(&self) -> Option<u64> {
        let drd = self.drd_at_discharge?;
        let day = uk_date(self.discharged_at?);
        Some(u64::try_from((day - drd).num_days()).unwrap_or(0))
    }

    /// The 91-day reablement outcome of this discharge (see [`REABLEMENT_DEFINITION`]);
    /// `None` when the discharge is not in the cohort. `stays` holds every stay at any site,
    /// for the follow-up.
    pub fn reablement(
        &self,
        stays: &StaysByPerson<'_, '_>,
        dates_of_birth: &HashMap<Uuid, NaiveDate>,
        history_end: DateTime<Utc>,
    ) -> Option<Reablement> {
        let at = self.discharged_at?;
        if !matches!(self.pathway_at_discharge, Some(Pathway::P1 | Pathway::P2)) {
            return None;
        }
        let day = uk_date(at);
        let dob = dates_of_birth.get(&self.person)?;
        if age_on(*dob, day) < REABLEMENT_MIN_AGE {
            return None;
        }
        let follow_up_day = day + chrono::Duration::days(REABLEMENT_FOLLOW_UP_DAYS);
        let follow_up = uk_midnight(follow_up_day);
        if follow_up >= history_end {
            return Some(Reablement::FollowUpIncomplete);
        }
        let follow_up_end = uk_midnight(follow_up_day + chrono::Duration::days(1));
        let own = stays.of(self.person);
        let later: Vec<&Stay<'_>> = own.iter().copied().filter(|o| o.admitted_at > at).collect();
        let in_hospital = later
            .iter()
            .any(|o| o.admitted_at < follow_up_end && o.left_at().is_none_or(|l| l >= follow_up));
        let died = own
            .iter()
            .any(|o| o.died_at.is_some_and(|d| d < follow_up_end));
        let to_care_home = later
            .iter()
            .filter(|o| o.discharged_at.is_some_and(|d| d < follow_up))
            .max_by_key(|o| o.discharged_at)
            .is_some_and(|o| {
                o.destination_code
                    .is_some_and(DischargeDestination::is_care_home)
            });
        Some(if in_hospital || died || to_care_home {
            Reablement::NotAtHome
        } else {
            Reablement::AtHome
        })
    }
}

/// Every stay, by person: the follow-ups of a discharge look only at the person's own.
pub(super) struct StaysByPerson<'s, 'a>(HashMap<Uuid, Vec<&'s Stay<'a>>>);

impl<'s, 'a> StaysByPerson<'s, 'a> {
    pub fn new(stays: &'s [Stay<'a>]) -> Self {
        let mut by: HashMap<Uuid, Vec<&'s Stay<'a>>> = HashMap::new();
        for s in stays {
            by.entry(s.person).or_default().push(s);
        }
        StaysByPerson(by)
    }

    fn of(&self, person: Uuid) -> &[&'s Stay<'a>] {
        self.0.get(&person).map_or(&[], Vec::as_slice)
    }
}

/// One discharge's 91-day reablement outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reablement {
    AtHome,
    NotAtHome,
    /// The 91st day is after the end of the history read.
    FollowUpIncomplete,
}

/// The first day of the month and of the next one.
pub fn month_bounds(year: i32, month: u32) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some((first, next))
}

/// The first instant of a UK calendar day.
pub(super) fn uk_midnight(day: NaiveDate) -> DateTime<Utc> {
    // The UK day starts at 00:00 UTC in winter and 23:00 UTC the day before in summer.
    let utc = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    [utc - chrono::Duration::hours(1), utc]
        .into_iter()
        .find(|t| uk_date(*t) == day)
        .unwrap_or(utc)
}

fn age_on(dob: NaiveDate, day: NaiveDate) -> u32 {
    let mut age = day.year() - dob.year();
    if (day.month(), day.day()) < (dob.month(), dob.day()) {
        age -= 1;
    }
    u32::try_from(age).unwrap_or(0)
}

pub(super) fn tables(
    stays: &[Stay<'_>],
    all_stays: &[Stay<'_>],
    dates_of_birth: &HashMap<Uuid, NaiveDate>,
    year: i32,
    month: u32,
    provider: Vec<String>,
    history_end: DateTime<Utc>,
) -> Option<NhsTables> {
    let (first, next) = month_bounds(year, month)?;
    let in_month = |at: DateTime<Utc>| {
        let d = uk_date(at);
        first <= d && d < next
    };
    let discharged: Vec<(&Stay<'_>, DateTime<Utc>)> = stays
        .iter()
        .filter_map(|s| s.discharged_at.map(|at| (s, at)))
        .filter(|(_, at)| in_month(*at))
        .collect();

    // Discharge Ready Date statistics.
    let delays: Vec<u64> = discharged
        .iter()
        .filter_map(|(s, _)| s.delay_days())
        .collect();
    let total = delays.len() as u64;
    let bands: Vec<DrdBand> = DRD_BANDS
        .iter()
        .map(|(label, lo, hi)| {
            let inside: Vec<u64> = delays
                .iter()
                .copied()
                .filter(|d| *d >= *lo && hi.is_none_or(|h| *d <= h))
                .collect();
            DrdBand {
                label: (*label).to_owned(),
                discharges: inside.len() as u64,
                percent: percent(inside.len() as u64, total),
                bed_days_lost: inside.iter().sum(),
            }
        })
        .collect();
    let on_drd = delays.iter().filter(|d| **d == 0).count() as u64;
    let lost: u64 = delays.iter().sum();
    let delayed = total - on_drd;
    let drd_statistics = DrdStatistics {
        definition: DRD_STATISTICS_DEFINITION.to_owned(),
        total_discharges: total,
        discharged_on_drd: on_drd,
        discharged_on_drd_percent: percent(on_drd, total),
        discharged_one_plus_days_after: delayed,
        discharged_one_plus_days_after_percent: percent(delayed, total),
        bands,
        bed_days_lost: lost,
        average_days_including_zero: (total > 0).then(|| round2(lost as f64 / total as f64)),
        average_days_excluding_zero: (delayed > 0).then(|| round2(lost as f64 / delayed as f64)),
    };

    // Discharges by pathway and destination.
    let mut by: BTreeMap<(Option<u8>, Option<&'static str>), u64> = BTreeMap::new();
    for (s, _) in &discharged {
        *by.entry((
            s.pathway_at_discharge.map(Pathway::number),
            s.destination_code.map(DischargeDestination::code),
        ))
        .or_insert(0) += 1;
    }
    let sitrep_discharges = SitrepDischarges {
        definition: SITREP_DISCHARGES_DEFINITION.to_owned(),
        total: discharged.len() as u64,
        rows: by
            .into_iter()
            .map(|((pathway, code), n)| SitrepDischargeRow {
                pathway,
                destination_code: code.map(str::to_owned),
                destination: code
                    .and_then(|c| DischargeDestination::parse("code", c).ok())
                    .map_or_else(|| "not coded".to_owned(), |d| d.display().to_owned()),
                discharges: n,
            })
            .collect(),
    };

    // People not discharged at the month end, by their latest delay reason.
    let snapshot = uk_midnight(next);
    let snapshot_day = next;
    let mut reasons: BTreeMap<Option<DelayReason>, u64> = BTreeMap::new();
    for s in stays {
        if s.admitted_at >= snapshot || s.left_at().is_some_and(|l| l < snapshot) {
            continue;
        }
        let drd = s
            .drd_history
            .iter()
            .rev()
            .find(|(at, _)| *at < snapshot)
            .and_then(|(_, drd)| *drd);
        if drd.is_none_or(|d| d >= snapshot_day) {
            continue;
        }
        let reason = s
            .delay_history
            .iter()
            .rev()
            .find(|(at, _)| *at < snapshot)
            .map(|(_, r)| *r);
        *reasons.entry(reason).or_insert(0) += 1;
    }
    let order = |r: &Option<DelayReason>| match r {
        Some(r) => DelayReason::NATIONAL
            .iter()
            .position(|n| n == r)
            .unwrap_or(DelayReason::NATIONAL.len()),
        None => DelayReason::NATIONAL.len() + 1,
    };
    let mut rows: Vec<(Option<DelayReason>, u64)> = reasons.into_iter().collect();
    rows.sort_by_key(|(r, _)| order(r));
    let sitrep_delays = SitrepDelays {
        definition: SITREP_DELAYS_DEFINITION.to_owned(),
        at: snapshot,
        total: rows.iter().map(|(_, n)| n).sum(),
        rows: rows
            .into_iter()
            .map(|(r, n)| SitrepDelayRow {
                reason_code: r.map(|r| r.code().to_owned()),
                reason: r
                    .map_or("no reason recorded", DelayReason::display)
                    .to_owned(),
                people: n,
            })
            .collect(),
    };

    // Reablement outcome.
    let mut cohort = 0;
    let mut at_home = 0;
    let mut incomplete = 0;
    let by_person = StaysByPerson::new(all_stays);
    for (s, _) in &discharged {
        match s.reablement(&by_person, dates_of_birth, history_end) {
            Some(Reablement::AtHome) => {
                cohort += 1;
                at_home += 1;
            }
            Some(Reablement::NotAtHome) => cohort += 1,
            Some(Reablement::FollowUpIncomplete) => incomplete += 1,
            None => {}
        }
    }
    let reablement = ReablementOutcome {
        definition: REABLEMENT_DEFINITION.to_owned(),
        cohort,
        at_home_after_91_days: at_home,
        percent: percent(at_home, cohort),
        follow_up_incomplete: incomplete,
    };

    Some(NhsTables {
        month: format!("{year:04}-{month:02}"),
        provider,
        drd_statistics,
        sitrep_discharges,
        sitrep_delays,
        reablement,
    })
}

pub(super) fn opt_num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub(super) fn to_csv(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("in memory");
    for r in rows {
        w.write_record(&r).expect("in memory");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8 in, UTF-8 out")
}

impl NhsTables {
    /// Each table as CSV: (file name, text). Rows carry the month and provider.
    pub fn csv(&self) -> Vec<(&'static str, String)> {
        let provider = if self.provider.is_empty() {
            "all".to_owned()
        } else {
            self.provider.join(" ")
        };
        let d = &self.drd_statistics;
        let mut drd = vec![vec![
            self.month.clone(),
            provider.clone(),
            "all".to_owned(),
            d.total_discharges.to_string(),
            "100".to_owned(),
            d.bed_days_lost.to_string(),
        ]];
        drd.extend(d.bands.iter().map(|b| {
            vec![
                self.month.clone(),
                provider.clone(),
                b.label.clone(),
                b.discharges.to_string(),
                opt_num(b.percent),
                b.bed_days_lost.to_string(),
            ]
        }));
        let drd_summary = vec![vec![
            self.month.clone(),
            provider.clone(),
            d.total_discharges.to_string(),
            opt_num(d.discharged_on_drd_percent),
            opt_num(d.discharged_one_plus_days_after_percent),
            d.bed_days_lost.to_string(),
            opt_num(d.average_days_including_zero),
            opt_num(d.average_days_excluding_zero),
        ]];
        let discharges = self
            .sitrep_discharges
            .rows
            .iter()
            .map(|r| {
                vec![
                    self.month.clone(),
                    provider.clone(),
                    r.pathway.map(|p| p.to_string()).unwrap_or_default(),
                    r.destination_code.clone().unwrap_or_default(),
                    r.destination.clone(),
                    r.discharges.to_string(),
                ]
            })
            .collect();
        let delays = self
            .sitrep_delays
            .rows
            .iter()
            .map(|r| {
                vec![
                    self.month.clone(),
                    provider.clone(),
                    r.reason_code.clone().unwrap_or_default(),
                    r.reason.clone(),
                    r.people.to_string(),
                ]
            })
            .collect();
        let a = &self.reablement;
        let reablement = vec![vec![
            self.month.clone(),
            provider.clone(),
            a.cohort.to_string(),
            a.at_home_after_91_days.to_string(),
            opt_num(a.percent),
            a.follow_up_incomplete.to_string(),
        ]];
        vec![
            (
                "drd_delay_bands.csv",
                to_csv(
                    &[
                        "month",
                        "provider",
                        "band_days",
                        "discharges",
                        "percent",
                        "bed_days_lost",
                    ],
                    drd,
                ),
            ),
            (
                "drd_summary.csv",
                to_csv(
                    &[
                        "month",
                        "provider",
                        "total_discharges",
                        "percent_on_drd",
                        "percent_one_plus_days_after",
                        "bed_days_lost",
                        "average_days_including_zero",
                        "average_days_excluding_zero",
                    ],
                    drd_summary,
                ),
            ),
            (
                "sitrep_discharges.csv",
                to_csv(
                    &[
                        "month",
                        "provider",
                        "pathway",
                        "destination_code",
                        "destination",
                        "discharges",
                    ],
                    discharges,
                ),
            ),
            (
                "sitrep_delays.csv",
                to_csv(
                    &["month", "provider", "reason_code", "reason", "people"],
                    delays,
                ),
            ),
            (
                "reablement_91_days.csv",
                to_csv(
                    &[
                        "month",
                        "provider",
                        "cohort",
                        "at_home_after_91_days",
                        "percent",
                        "follow_up_incomplete",
                    ],
                    reablement,
                ),
            ),
        ]
    }
}
