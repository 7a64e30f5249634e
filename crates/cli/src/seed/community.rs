//! Community referrals from the GP practice and the Care Act needs assessments that follow.

use carewoven_domain::values::uk_date;
use carewoven_proto::v1;
use chrono::{DateTime, TimeDelta, Utc};

use crate::enums::{AssessmentKind, Outcome, Priority, ReferralAction, Role};
use crate::parse::date_string;

use super::organisations::{
    ASC_FRONT_DOOR, COMMUNITY, COMMUNITY_FALLS, COMMUNITY_NURSING, COUNCIL,
};
use super::plan::{Gen, Op, add_days, hours, member, minutes};

/// A GP referral to adult social care or a community service, with a Care Act needs
/// assessment when social care accepts it.
pub(super) fn community_referral(g: &mut Gen, t0: DateTime<Utc>) {
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
pub(super) fn care_act_assessment(
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
