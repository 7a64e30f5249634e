//! The trend view (issue 14, part 4): each headline figure by ISO week and by UK calendar
//! month over a run of months, for the whole scope and side by side per site (discharge
//! figures), per receiving service (referrals) or per owner organisation (tasks), each with
//! its definition and as CSV. Care-plan reviews overdue are counted at the end of each week
//! and month, for the whole scope only.
//!
//! Conventions beyond the report's own (see the parent module):
//! - The range is whole UK calendar months: a discharge or referral belongs to the week and
//!   the month of the UK calendar day it happened on (`uk_date`), as in NHS England's tables.
//! - Weeks are ISO weeks (Monday to Sunday, labelled `YYYY-Www` by their ISO year). The first
//!   and last weeks may be cut by the range: they count only the days in it (`partial`).
//! - A week or month with nothing to measure has no value (`None`: empty in the HTML and
//!   CSV), never 0; a count over nothing is empty too.

use std::collections::{BTreeMap, HashSet};

use carewoven_domain::discharge::Pathway;
use carewoven_domain::values::{Code, uk_date};
use chrono::{DateTime, Utc};
use chrono::{Datelike, Days, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::nhse::{Reablement, StaysByPerson, month_bounds, opt_num, to_csv};
use super::stats::{nearest_rank, percent, round2};
use super::work::TaskEnd;
use super::{Folded, RecordedEvent, seconds};

/// The longest trend, in months.
pub const TREND_MAX_MONTHS: u32 = 120;

pub const TREND_DEFINITION: &str = "Each headline figure by ISO week (Monday to Sunday) and by \
UK calendar month over the range, for the whole scope and side by side per site (figures about \
discharges), per receiving service (referrals) or per owner organisation (tasks). A \
discharge, referral or task belongs to the week and the month of the UK calendar day it \
happened on (a task: the day it reached its final status); overdue care-plan reviews are \
counted at the end of each week and month. The first and last weeks may be cut by the \
range (marked partial): they count only the days in the range. A week or month with nothing to \
measure is left empty rather than shown as 0. Follow-ups (handovers, assessments, the 91-day \
outcome) are taken from the whole history read. People who opted out of secondary use are left \
out.";

const DISCHARGES_DEFINITION: &str = "People who left hospital from a site in scope (discharged; \
deaths and self-discharges in hospital are not discharges), counted in the week or month of the \
UK calendar day they left.";
const ON_DRD_DEFINITION: &str = "Of the discharges that had a Discharge Ready Date (the latest \
one, if a deterioration replaced an earlier one), the percentage discharged on that day (a \
discharge recorded before it counts as on it), rounded to one decimal place, as in NHS \
England's Discharge Ready Date statistics.";
const DELAYED_DEFINITION: &str = "Of the discharges that had a Discharge Ready Date, the \
percentage discharged one or more whole days after it, rounded to one decimal place.";
const AVERAGE_DEFINITION: &str = "The mean of the whole days from the Discharge Ready Date to \
the day of discharge over the discharges that had one, 0-day delays included, rounded to two \
decimal places.";
const BED_DAYS_DEFINITION: &str = "The sum of the whole days from the Discharge Ready Date to \
the day of discharge over the discharges that had one.";
const PATHWAY_0_DEFINITION: &str = "The percentage of the discharges on pathway 0 (home with no \
new support) when they left, rounded to one decimal place.";
const PATHWAY_1_DEFINITION: &str = "The percentage of the discharges on pathway 1 (home with \
new support) when they left, rounded to one decimal place.";
const PATHWAY_2_DEFINITION: &str = "The percentage of the discharges on pathway 2 (short-term \
bed-based care) when they left, rounded to one decimal place.";
const PATHWAY_3_DEFINITION: &str = "The percentage of the discharges on pathway 3 (care home) \
when they left, rounded to one decimal place.";
const REFERRAL_MEDIAN_DEFINITION: &str = "Referrals to adult social care (as in the \
referral-to-assessment section: a local authority's service, or a Care Act needs assessment \
requested) made in the week or month, in scope when the referrer or the receiving service is, \
shown per receiving service: the median (nearest rank) of the days from the referral to the \
Care Act needs assessment that answers it being completed, over the referrals assessed, rounded \
to two decimal places. Referrals entered in error are left out.";
const HANDOVER_MEDIAN_DEFINITION: &str = "For the discharges in the week or month, the median \
(nearest rank) of the hours from the person leaving hospital to the community service accepting \
the handover, over the discharges handed over, rounded to two decimal places.";
const AT_HOME_DEFINITION: &str = "The 91-day reablement outcome of NHS England's tables for the \
discharges in the week or month: of the people aged 65 or over discharged on pathway 1 or 2 \
whose 91st day after discharge has passed by the end of the history read, the percentage at home \
on that day (not in hospital, not dead, not discharged to a care home from a later stay), \
rounded to one decimal place.";

const TASKS_ON_TIME_DEFINITION: &str = "Of the tasks completed in the week or month (in scope \
when the owner then or the requester is), the percentage completed on or before the due date \
(the UK calendar day of completion against the due date; reassignment does not change it), \
rounded to one decimal place, shown per organisation owning the task when it was completed. \
Cancelled and failed tasks are not in it.";
const REVIEWS_OVERDUE_DEFINITION: &str = "At the end of the week or month (the start of the \
next UK calendar day), the number of people whose current care plan (its latest version \
agreed or revised by then, in scope through the organisation that recorded it or one \
responsible for an activity) has a review date before that day. Empty when nobody in scope \
had a care plan then. Not split by organisation.";

/// What a figure is measured on.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Discharges,
    OnDrd,
    Delayed,
    AverageDelay,
    BedDaysLost,
    Pathway(Pathway),
    ReferralMedian,
    HandoverMedian,
    AtHome91,
    TasksOnTime,
    ReviewsOverdue,
}

/// Which cases a figure is measured on.
#[derive(Debug, Clone, Copy)]
enum Source {
    Discharges,
    Referrals,
    Tasks,
    /// Care plans at the end of each period, not cases in it.
    Plans,
}

impl Measure {
    fn source(self) -> Source {
        match self {
            Measure::ReferralMedian => Source::Referrals,
            Measure::TasksOnTime => Source::Tasks,
            Measure::ReviewsOverdue => Source::Plans,
            _ => Source::Discharges,
        }
    }
}

/// key, title, unit, definition, measure.
const FIGURES: [(&str, &str, &str, &str, Measure); 14] = [
    (
        "discharges",
        "Discharges",
        "discharges",
        DISCHARGES_DEFINITION,
        Measure::Discharges,
    ),
    (
        "discharged_on_drd_percent",
        "Discharged on the Discharge Ready Date",
        "%",
        ON_DRD_DEFINITION,
        Measure::OnDrd,
    ),
    (
        "delayed_one_day_or_more_percent",
        "Discharged one day or more after the Discharge Ready Date",
        "%",
        DELAYED_DEFINITION,
        Measure::Delayed,
    ),
    (
        "average_days_drd_to_discharge",
        "Average days from Discharge Ready Date to discharge",
        "days",
        AVERAGE_DEFINITION,
        Measure::AverageDelay,
    ),
    (
        "bed_days_lost",
        "Bed days lost",
        "days",
        BED_DAYS_DEFINITION,
        Measure::BedDaysLost,
    ),
    (
        "pathway_0_percent",
        "Pathway 0 share of discharges",
        "%",
        PATHWAY_0_DEFINITION,
        Measure::Pathway(Pathway::P0),
    ),
    (
        "pathway_1_percent",
        "Pathway 1 share of discharges",
        "%",
        PATHWAY_1_DEFINITION,
        Measure::Pathway(Pathway::P1),
    ),
    (
        "pathway_2_percent",
        "Pathway 2 share of discharges",
        "%",
        PATHWAY_2_DEFINITION,
        Measure::Pathway(Pathway::P2),
    ),
    (
        "pathway_3_percent",
        "Pathway 3 share of discharges",
        "%",
        PATHWAY_3_DEFINITION,
        Measure::Pathway(Pathway::P3),
    ),
    (
        "referral_to_assessment_median_days",
        "Referral to needs assessment, median",
        "days",
        REFERRAL_MEDIAN_DEFINITION,
        Measure::ReferralMedian,
    ),
    (
        "handover_median_hours",
        "Discharge to handover, median",
        "hours",
        HANDOVER_MEDIAN_DEFINITION,
        Measure::HandoverMedian,
    ),
    (
        "at_home_91_days_percent",
        "Still at home 91 days after discharge into reablement (65+)",
        "%",
        AT_HOME_DEFINITION,
        Measure::AtHome91,
    ),
    (
        "tasks_completed_on_time_percent",
        "Tasks completed on time",
        "%",
        TASKS_ON_TIME_DEFINITION,
        Measure::TasksOnTime,
    ),
    (
        "care_plan_reviews_overdue",
        "Care-plan reviews overdue",
        "people",
        REVIEWS_OVERDUE_DEFINITION,
        Measure::ReviewsOverdue,
    ),
];

/// The trend section of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub definition: String,
    /// First UK calendar day of the range (inclusive).
    pub first_day: NaiveDate,
    /// Last UK calendar day of the range (inclusive).
    pub last_day: NaiveDate,
    /// Organisation codes in scope, sorted; empty means every organisation.
    pub scope: Vec<String>,
    /// The ISO weeks overlapping the range, in order.
    pub weeks: Vec<TrendPeriod>,
    /// The UK calendar months of the range, in order.
    pub months: Vec<TrendPeriod>,
    pub figures: Vec<TrendFigure>,
}

/// One week or month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendPeriod {
    /// `YYYY-Www` (ISO week) or `YYYY-MM`.
    pub label: String,
    /// First and last UK calendar day counted (inclusive; cut to the range).
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// A week cut by the range: fewer than 7 days counted.
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendFigure {
    /// Stable name, also the CSV file's: `trend_<key>_by_week.csv`, `..._by_month.csv`.
    pub key: String,
    pub title: String,
    /// `"discharges"`, `"%"`, `"days"`, `"hours"` or `"people"`.
    pub unit: String,
    pub definition: String,
    /// What the side-by-side series are: `"site"`, `"service"`, `"owner"` (the organisation
    /// owning a task) or `"none"`.
    pub split_by: String,
    pub by_week: TrendTable,
    pub by_month: TrendTable,
}

/// A figure's values, one per period (`None`: nothing to measure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendTable {
    /// The whole scope.
    pub all: Vec<Option<f64>>,
    /// Per site or service with something in the range, sorted by code.
    pub split: Vec<TrendSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendSeries {
    pub code: String,
    pub values: Vec<Option<f64>>,
}

/// One discharge, referral or task in the range, as the figures read it.
struct Case<'a> {
    /// The site (discharges), the receiving service (referrals) or the owner (tasks).
    group: &'a str,
    day: NaiveDate,
    delay_days: Option<u64>,
    pathway: Option<Pathway>,
    /// Handover hours (discharges) or days to needs assessment (referrals).
    wait: Option<f64>,
    reablement: Option<Reablement>,
    task_end: Option<TaskEnd>,
}

/// The file names [`Trend::csv`] writes, in order.
pub fn trend_csv_files() -> Vec<String> {
    FIGURES
        .iter()
        .flat_map(|(key, ..)| {
            [
                format!("trend_{key}_by_week.csv"),
                format!("trend_{key}_by_month.csv"),
            ]
        })
        .collect()
}

/// The trend over the `months` UK calendar months ending with `last_month` (year, month),
/// for the organisations in `scope` (empty: all; an episode is in scope by its site, a
/// referral by its referrer or receiving service). People in `opted_out` are left out;
/// `history_end` is where the history read ends (the 91-day follow-up after it is
/// incomplete). `None` for a month that does not exist or a number of months outside
/// 1..=[`TREND_MAX_MONTHS`].
pub fn trend<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
    last_month: (i32, u32),
    months: u32,
    scope: &[Code],
    opted_out: &HashSet<Uuid>,
    history_end: DateTime<Utc>,
) -> Option<Trend> {
    if !(1..=TREND_MAX_MONTHS).contains(&months) {
        return None;
    }
    let (year, month) = last_month;
    let (_, end_day) = month_bounds(year, month)?;
    // Months counted from year 0: the last one, and the first (`months - 1` before it).
    let last_index = year * 12 + i32::try_from(month).ok()? - 1;
    let first_index = last_index - (i32::try_from(months).ok()? - 1);
    let (first_day, _) = month_bounds(
        first_index.div_euclid(12),
        u32::try_from(first_index.rem_euclid(12)).ok()? + 1,
    )?;
    let last_day = end_day.pred_opt()?;
    let in_range = |day: NaiveDate| first_day <= day && day <= last_day;

    let folded = Folded::from_events(events);
    let scope_set: std::collections::BTreeSet<&Code> = scope.iter().collect();
    let in_scope = |code: &Code| scope_set.is_empty() || scope_set.contains(code);
    let people: Vec<&super::Episode> = folded
        .episodes
        .values()
        .filter(|ep| !opted_out.contains(&ep.person))
        .collect();
    let all_stays: Vec<super::nhse::Stay<'_>> = people.iter().map(|ep| ep.stay()).collect();
    let by_person = StaysByPerson::new(&all_stays);
    let discharges: Vec<Case<'_>> = people
        .iter()
        .filter(|ep| in_scope(&ep.site))
        .filter_map(|ep| {
            let at = ep.discharged_at?;
            let day = uk_date(at);
            if !in_range(day) {
                return None;
            }
            let stay = ep.stay();
            Some(Case {
                group: ep.site.as_str(),
                day,
                delay_days: stay.delay_days(),
                pathway: ep.pathway_at_discharge,
                wait: ep
                    .handover_at
                    .filter(|h| *h >= at)
                    .map(|h| seconds(h - at) / 3_600.0),
                reablement: stay.reablement(&by_person, &folded.dates_of_birth, history_end),
                task_end: None,
            })
        })
        .collect();
    let referrals: Vec<Case<'_>> = folded
        .referrals
        .iter()
        .filter(|(id, r)| {
            !r.entered_in_error
                && !opted_out.contains(&r.person)
                && (in_scope(&r.from) || in_scope(&r.to))
                && in_range(uk_date(r.made_at))
                && folded.is_adult_social_care(id, r)
        })
        .map(|(id, r)| Case {
            group: r.to.as_str(),
            day: uk_date(r.made_at),
            delay_days: None,
            pathway: None,
            wait: folded.days_to_needs_assessment(id, r),
            reablement: None,
            task_end: None,
        })
        .collect();
    let tasks: Vec<Case<'_>> = folded
        .tasks
        .values()
        .filter(|t| !opted_out.contains(&t.person) && t.in_scope(&in_scope))
        .filter_map(|t| {
            let (end, at, owner) = t.ended.as_ref()?;
            let day = uk_date(*at);
            in_range(day).then(|| Case {
                group: owner.as_str(),
                day,
                delay_days: None,
                pathway: None,
                wait: None,
                reablement: None,
                task_end: Some(*end),
            })
        })
        .collect();

    let weeks = weeks(first_day, last_day);
    let month_periods = month_periods(first_day, last_day);
    let discharges_by = (
        Buckets::new(&discharges, &weeks),
        Buckets::new(&discharges, &month_periods),
    );
    let referrals_by = (
        Buckets::new(&referrals, &weeks),
        Buckets::new(&referrals, &month_periods),
    );
    let tasks_by = (
        Buckets::new(&tasks, &weeks),
        Buckets::new(&tasks, &month_periods),
    );
    let plans: Vec<&super::work::PlanFolded> = folded
        .plans
        .values()
        .filter(|p| !opted_out.contains(&p.person))
        .collect();
    // People whose review is overdue at the end of each period; empty when nobody has a plan.
    let overdue_at_ends = |periods: &[TrendPeriod]| -> TrendTable {
        TrendTable {
            all: periods
                .iter()
                .map(|p| {
                    let next = p.last_day.succ_opt()?;
                    let days: Vec<i64> = plans
                        .iter()
                        .filter_map(|plan| plan.days_overdue(next, &in_scope))
                        .collect();
                    (!days.is_empty()).then(|| days.iter().filter(|d| **d > 0).count() as f64)
                })
                .collect(),
            split: Vec::new(),
        }
    };
    let figures = FIGURES
        .iter()
        .map(|(key, title, unit, definition, measure)| {
            let cases = |(by_week, by_month): &(Buckets<'_, '_>, Buckets<'_, '_>)| {
                (by_week.table(*measure), by_month.table(*measure))
            };
            let (split_by, (by_week, by_month)) = match measure.source() {
                Source::Discharges => ("site", cases(&discharges_by)),
                Source::Referrals => ("service", cases(&referrals_by)),
                Source::Tasks => ("owner", cases(&tasks_by)),
                Source::Plans => (
                    "none",
                    (overdue_at_ends(&weeks), overdue_at_ends(&month_periods)),
                ),
            };
            TrendFigure {
                key: (*key).to_owned(),
                title: (*title).to_owned(),
                unit: (*unit).to_owned(),
                definition: (*definition).to_owned(),
                split_by: split_by.to_owned(),
                by_week,
                by_month,
            }
        })
        .collect();
    Some(Trend {
        definition: TREND_DEFINITION.to_owned(),
        first_day,
        last_day,
        scope: scope_set.iter().map(|c| c.as_str().to_owned()).collect(),
        weeks,
        months: month_periods,
        figures,
    })
}

/// The ISO weeks overlapping `[first, last]`, cut to it.
fn weeks(first: NaiveDate, last: NaiveDate) -> Vec<TrendPeriod> {
    let mut monday = first - Days::new(u64::from(first.weekday().num_days_from_monday()));
    let mut out = Vec::new();
    while monday <= last {
        let sunday = monday + Days::new(6);
        let week = monday.iso_week();
        out.push(TrendPeriod {
            label: format!("{:04}-W{:02}", week.year(), week.week()),
            first_day: monday.max(first),
            last_day: sunday.min(last),
            partial: monday < first || sunday > last,
        });
        monday = monday + Days::new(7);
    }
    out
}

/// The calendar months of `[first, last]` (whole months: `first` is a 1st, `last` a month end).
fn month_periods(first: NaiveDate, last: NaiveDate) -> Vec<TrendPeriod> {
    let mut out = Vec::new();
    let mut start = first;
    while start <= last {
        let Some((_, next)) = month_bounds(start.year(), start.month()) else {
            break;
        };
        let end = next.pred_opt().unwrap_or(next).min(last);
        out.push(TrendPeriod {
            label: format!("{:04}-{:02}", start.year(), start.month()),
            first_day: start,
            last_day: end,
            partial: false,
        });
        start = next;
    }
    out
}

/// Cases by period, for the whole scope and per group.
struct Buckets<'c, 'a> {
    all: Vec<Vec<&'c Case<'a>>>,
    by_group: BTreeMap<&'a str, Vec<Vec<&'c Case<'a>>>>,
}

impl<'c, 'a> Buckets<'c, 'a> {
    fn new(cases: &'c [Case<'a>], periods: &[TrendPeriod]) -> Self {
        let mut all = vec![Vec::new(); periods.len()];
        let mut by_group: BTreeMap<&'a str, Vec<Vec<&'c Case<'a>>>> = BTreeMap::new();
        for case in cases {
            let i = periods.partition_point(|p| p.first_day <= case.day);
            let Some(i) = i
                .checked_sub(1)
                .filter(|i| case.day <= periods[*i].last_day)
            else {
                continue;
            };
            all[i].push(case);
            by_group
                .entry(case.group)
                .or_insert_with(|| vec![Vec::new(); periods.len()])[i]
                .push(case);
        }
        Buckets { all, by_group }
    }

    fn table(&self, measure: Measure) -> TrendTable {
        let series = |buckets: &[Vec<&Case<'_>>]| -> Vec<Option<f64>> {
            buckets.iter().map(|cases| value(measure, cases)).collect()
        };
        TrendTable {
            all: series(&self.all),
            split: self
                .by_group
                .iter()
                .map(|(code, buckets)| TrendSeries {
                    code: (*code).to_owned(),
                    values: series(buckets),
                })
                .collect(),
        }
    }
}

/// A figure over the cases of one period; `None` when there is nothing to measure.
fn value(measure: Measure, cases: &[&Case<'_>]) -> Option<f64> {
    let delays: Vec<u64> = cases.iter().filter_map(|c| c.delay_days).collect();
    let n = cases.len() as u64;
    let with_drd = delays.len() as u64;
    let on_drd = delays.iter().filter(|d| **d == 0).count() as u64;
    let lost: u64 = delays.iter().sum();
    let median = || {
        let mut waits: Vec<f64> = cases.iter().filter_map(|c| c.wait).collect();
        waits.sort_by(f64::total_cmp);
        nearest_rank(&waits, 50).map(round2)
    };
    match measure {
        Measure::Discharges => (n > 0).then_some(n as f64),
        Measure::OnDrd => percent(on_drd, with_drd),
        Measure::Delayed => percent(with_drd - on_drd, with_drd),
        Measure::AverageDelay => (with_drd > 0).then(|| round2(lost as f64 / with_drd as f64)),
        Measure::BedDaysLost => (with_drd > 0).then_some(lost as f64),
        Measure::Pathway(p) => percent(
            cases.iter().filter(|c| c.pathway == Some(p)).count() as u64,
            n,
        ),
        Measure::ReferralMedian | Measure::HandoverMedian => median(),
        Measure::AtHome91 => {
            let done: Vec<Reablement> = cases
                .iter()
                .filter_map(|c| c.reablement)
                .filter(|r| *r != Reablement::FollowUpIncomplete)
                .collect();
            let home = done.iter().filter(|r| **r == Reablement::AtHome).count() as u64;
            percent(home, done.len() as u64)
        }
        Measure::TasksOnTime => {
            let on_time = cases
                .iter()
                .filter(|c| c.task_end == Some(TaskEnd::OnTime))
                .count() as u64;
            let late = cases
                .iter()
                .filter(|c| c.task_end == Some(TaskEnd::Late))
                .count() as u64;
            percent(on_time, on_time + late)
        }
        // Counted at the end of each period, not over cases (see `trend`).
        Measure::ReviewsOverdue => None,
    }
}

impl Trend {
    /// Each figure's table by week and by month as CSV: (file name, text), in the order of
    /// [`trend_csv_files`]. Columns: the period, its first and last day, whether it is
    /// partial, the whole scope, then one per site or service; empty cells have no value.
    pub fn csv(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in &self.figures {
            for (by, periods, table) in [
                ("week", &self.weeks, &f.by_week),
                ("month", &self.months, &f.by_month),
            ] {
                let mut header = vec!["period", "first_day", "last_day", "partial", "all"];
                header.extend(table.split.iter().map(|s| s.code.as_str()));
                let rows = periods
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let mut row = vec![
                            p.label.clone(),
                            p.first_day.to_string(),
                            p.last_day.to_string(),
                            p.partial.to_string(),
                            opt_num(table.all.get(i).copied().flatten()),
                        ];
                        row.extend(
                            table
                                .split
                                .iter()
                                .map(|s| opt_num(s.values.get(i).copied().flatten())),
                        );
                        row
                    })
                    .collect();
                out.push((
                    format!("trend_{}_by_{by}.csv", f.key),
                    to_csv(&header, rows),
                ));
            }
        }
        out
    }
}
