//! A hospital stay: admission, discharge to assess, delays, handover and what follows.

use carewoven_domain::values::uk_date;
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use chrono::{DateTime, NaiveDate, Utc};

use crate::enums::{DelayReason, FeedbackSource, Pathway, Priority, ReferralAction, Role};
use crate::parse::{date_string, timestamp};

use super::community::care_act_assessment;
use super::organisations::{
    CARE_HOMES, COMMUNITY, COUNCIL, D2A_SERVICE, HOME_CARE, REABLEMENT, REHAB_BEDS, WARDS,
};
use super::plan::{Gen, Op, add_days, at, hours, minutes};
use super::rng::Rng;

/// One discharge episode from admission. Returns the discharge instant if the person went home
/// (or onward) within the window.
pub(super) fn episode(
    g: &mut Gen,
    admitted_at: DateTime<Utc>,
    site: &'static str,
) -> Option<DateTime<Utc>> {
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
            DelayReason::AwaitingMedicinesToTakeHome,
            DelayReason::IndividualOrFamilyNotInAgreement,
            DelayReason::AwaitingMedicalDecision,
            DelayReason::AwaitingDiagnosticTest,
        ],
        Pathway::P1 => &[
            DelayReason::Pathway1ContinuingRehabilitation,
            DelayReason::Pathway1NewCare,
            DelayReason::AwaitingTherapyDecision,
            DelayReason::AwaitingEquipmentOrAdaptations,
            DelayReason::AwaitingTransport,
            DelayReason::AwaitingReferralToTransferHub,
            DelayReason::AwaitingTransferHubConfirmation,
        ],
        Pathway::P2 => &[
            DelayReason::Pathway2Bed,
            DelayReason::AwaitingTherapyDecision,
        ],
        Pathway::P3 => &[
            DelayReason::Pathway3CareHome,
            DelayReason::IndividualOrFamilyNotInAgreement,
            DelayReason::AwaitingTherapyDecision,
            DelayReason::HomelessOrNoRecourseToPublicFunds,
            DelayReason::AwaitingContinuingHealthcareDecision,
            DelayReason::SafeguardingOrCourtOfProtection,
        ],
    };
    let mut delay_steps = 0;
    let mut record_delay = |g: &mut Gen, t: &mut DateTime<Utc>, day: NaiveDate| -> bool {
        *t = (*t).max(at(day, 9, 0)) + minutes(g.rng.range(0, 480));
        let reason = *g.rng.pick(reasons);
        let note = match reason {
            DelayReason::Pathway1ContinuingRehabilitation => {
                "No reablement capacity until next week"
            }
            DelayReason::Pathway1NewCare => "Home care package being sourced",
            DelayReason::Pathway3CareHome => "Family visiting care homes",
            DelayReason::AwaitingEquipmentOrAdaptations => "Hospital bed and hoist on order",
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
                        DelayReason::Pathway3CareHome.to_i32()
                    } else if pathway == Pathway::P2 {
                        DelayReason::Pathway2Bed.to_i32()
                    } else {
                        DelayReason::Pathway1NewCare.to_i32()
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
    // Text and UK Core DischargeDestinationEngland code.
    let (destination, destination_code) = match pathway {
        Pathway::P0 | Pathway::P1 => ("Usual place of residence", "19"),
        Pathway::P2 => ("Community rehabilitation bed", "51"),
        Pathway::P3 => ("Care home (discharge to assess)", "85"),
    };
    if !g.discharge(
        ep,
        "discharged",
        site,
        discharged_at,
        pd::Step::Discharge(pd::Discharge {
            discharged_at: Some(timestamp(discharged_at)),
            destination: destination.into(),
            destination_code: destination_code.into(),
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

pub(super) fn pick_pathway(rng: &mut Rng) -> Pathway {
    match rng.bucket(&[0.50, 0.95, 0.99, 1.0]) {
        0 => Pathway::P0,
        1 => Pathway::P1,
        2 => Pathway::P2,
        _ => Pathway::P3,
    }
}
