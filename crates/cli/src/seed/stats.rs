//! What the history contains: counts of what a plan sends, summed over a run.

use std::collections::BTreeMap;

use carewoven_domain::values::uk_date;
use carewoven_proto::v1::progress_discharge_request as pd;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::enums::{Decision, ReferralAction};

use super::plan::{Op, PersonPlan};

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
    pub risk_flags: u64,
    pub tasks: u64,
    pub tasks_completed: u64,
}

impl Stats {
    pub(super) fn add(&mut self, o: &Stats) {
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
            feedback,
            risk_flags,
            tasks,
            tasks_completed
        );
        for (a, b) in self.pathways.iter_mut().zip(o.pathways) {
            *a += b;
        }
    }

    pub(super) fn json(&self) -> Value {
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
            "risk_flags": self.risk_flags,
            "tasks": self.tasks,
            "tasks_completed": self.tasks_completed,
        })
    }
}

#[derive(Default)]
pub(super) struct EpisodeFacts {
    pub(super) admitted_at: Option<DateTime<Utc>>,
    pub(super) drd: Option<NaiveDate>,
    pub(super) pathway: Option<i32>,
    pub(super) discharged_at: Option<DateTime<Utc>>,
    pub(super) ended: bool,
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
                Op::RaiseFlag(..) => s.risk_flags += 1,
                Op::CreateTask(..) => s.tasks += 1,
                Op::TaskStatus {
                    status: crate::enums::TaskStatus::Completed,
                    ..
                } => s.tasks_completed += 1,
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
