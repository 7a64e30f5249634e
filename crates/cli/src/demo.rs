//! `carectl demo`: one synthetic person's journey through the real command API.
//!
//! Re-runnable: every command id is a UUIDv8 over SHA-256 of a fixed namespace, the demo day,
//! the NHS number and the step name, and every field (dates and instants included) derives
//! from the demo day only. A second run on the same day therefore sends byte-identical
//! commands and the server answers each as a duplicate. Aggregate ids are never derived here:
//! they come from each reply (the person id is the server's, derived from the NHS number).
//! By default the NHS number is derived from the day too, so a run on a later day registers a
//! fresh synthetic person instead of colliding with an earlier one.
//!
//! Under information governance: the demo organisations are registered first
//! ([`crate::registry`], idempotent), and each step acts as an organisation entitled to it
//! (with a token minted for it): the hospital admits first, which gives it the relationship
//! it needs to start the care team; later members are added by members; the council, which
//! owns the discharge-to-assess service, receives and accepts the referral; the community
//! team joins the care team before contributing to the joint assessment; the hospital, whose
//! site manages the episode, takes every discharge step; the reablement service accepts the
//! handover for itself.

use std::process::ExitCode;
use std::time::Duration;

use carewoven_proto::v1::{self, CommandReply, progress_discharge_request as pd};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::Status;
use uuid::Uuid;

use crate::auth::Auth;
use crate::enums::OrgType;
use crate::enums::{
    AssessmentKind, Decision, DelayReason, Outcome, Pathway, Priority, Purpose, ReferralAction,
    Role,
};
use crate::output::{exit_code, reply_json, status_json, status_lines, versions};
use crate::parse::{date_string, nhs_check_digit, test_nhs_number, timestamp};
use crate::registry::{self, OrgSpec};
use crate::rpc::{Client, Ctx, Rpc};

/// Changing this namespace starts a fresh, non-colliding series of demo command ids.
const NAMESPACE: &str = "carewoven.carectl.demo.v1";

const HOSPITAL: &str = "DEMO-HOSP";
const GP: &str = "DEMO-GP";
const COUNCIL: &str = "DEMO-ASC";
const COMMUNITY: &str = "DEMO-COMM";
const D2A_SERVICE: &str = "DEMO-ASC-D2A";
const REABLEMENT: &str = "DEMO-ASC-REABLE";
const SOCIAL_WORKER: &str = "DEMO-SW-01";

/// The demo's organisations and the services and sites each owns.
pub const ORGANISATIONS: [OrgSpec; 5] = [
    OrgSpec {
        code: HOSPITAL,
        name: "Demo General Hospital NHS Trust",
        org_type: OrgType::NhsTrust,
        services: &[HOSPITAL],
    },
    OrgSpec {
        code: GP,
        name: "Demo Medical Practice",
        org_type: OrgType::GeneralPractice,
        services: &[GP],
    },
    OrgSpec {
        code: COUNCIL,
        name: "Demo Council Adult Social Care",
        org_type: OrgType::LocalAuthority,
        services: &[COUNCIL, D2A_SERVICE],
    },
    OrgSpec {
        code: COMMUNITY,
        name: "Demo Community Health Services",
        org_type: OrgType::CommunityProvider,
        services: &[COMMUNITY],
    },
    OrgSpec {
        code: REABLEMENT,
        name: "Demo Council Reablement Service",
        org_type: OrgType::LocalAuthority,
        services: &[REABLEMENT],
    },
];

const GIVEN_NAME: &str = "Ada";
const FAMILY_NAME: &str = "Example";

/// A plausible acting user code per organisation (codes, never names).
fn user_for(org: &str) -> &'static str {
    match org {
        HOSPITAL => "hosp-flow-01",
        GP => "gp-01",
        COUNCIL => "asc-sw-01",
        COMMUNITY => "comm-nurse-01",
        REABLEMENT => "reable-01",
        _ => "demo-user",
    }
}

/// The deterministic command id of one demo step.
pub fn command_id(day: NaiveDate, nhs_number: &str, step: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(NAMESPACE.as_bytes())
        .chain_update([0])
        .chain_update(date_string(&day).as_bytes())
        .chain_update([0])
        .chain_update(nhs_number.as_bytes())
        .chain_update([0])
        .chain_update(step.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

/// The default synthetic NHS number for a demo day (test range 999, valid check digit).
pub fn nhs_number_for(day: NaiveDate) -> String {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    let days = (day - epoch).num_days().unsigned_abs();
    test_nhs_number(days)
}

/// The demo registers synthetic people only: a 999 test-range number with a valid check digit.
pub fn check_nhs_number(n: &str) -> anyhow::Result<()> {
    let valid = n.len() == 10
        && n.starts_with("999")
        && nhs_check_digit(&n[..9]).is_some_and(|c| n.as_bytes()[9] == b'0' + c);
    anyhow::ensure!(
        valid,
        "the demo registers synthetic people only: --nhs-number must be ten digits starting 999 \
         with a valid check digit"
    );
    Ok(())
}

/// Dates and instants of the demo, all derived from its day.
struct Clock {
    day: NaiveDate,
}

impl Clock {
    fn date(&self, offset_days: i64) -> String {
        let shifted = if offset_days >= 0 {
            self.day
                .checked_add_days(Days::new(offset_days.unsigned_abs()))
        } else {
            self.day
                .checked_sub_days(Days::new(offset_days.unsigned_abs()))
        };
        date_string(&shifted.unwrap_or(self.day))
    }

    fn instant(&self, offset_days: i64, hour: u32, minute: u32) -> Option<prost_types::Timestamp> {
        let date = if offset_days >= 0 {
            self.day
                .checked_add_days(Days::new(offset_days.unsigned_abs()))
        } else {
            self.day
                .checked_sub_days(Days::new(offset_days.unsigned_abs()))
        }
        .unwrap_or(self.day);
        let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or_default();
        Some(timestamp(DateTime::<Utc>::from_naive_utc_and_offset(
            date.and_time(time),
            Utc,
        )))
    }
}

struct Failure {
    step: &'static str,
    command_id: Uuid,
    status: Status,
}

struct Runner<'a> {
    client: &'a mut Client,
    auth: &'a Auth,
    timeout: Duration,
    json: bool,
    day: NaiveDate,
    nhs_number: String,
    correlation_id: Uuid,
    previous: Option<Uuid>,
    steps: Vec<Value>,
    duplicates: usize,
}

impl Runner<'_> {
    /// Send one step as `org`, print it, and return its reply.
    async fn step(
        &mut self,
        step: &'static str,
        org: &'static str,
        build: impl FnOnce(Option<v1::CommandContext>) -> Rpc,
    ) -> Result<CommandReply, Failure> {
        let command_id = command_id(self.day, &self.nhs_number, step);
        let ctx = Ctx {
            command_id,
            correlation_id: Some(self.correlation_id),
            causation_id: self.previous,
            organisation: org.to_owned(),
            user: user_for(org).to_owned(),
            occurred_at: None,
        };
        let token = self
            .auth
            .token(org, user_for(org), &[])
            .map_err(|e| Failure {
                step,
                command_id,
                status: Status::unauthenticated(format!("{e:#}")),
            })?;
        let reply = build(ctx.wire())
            .send(self.client, self.timeout, token.as_deref())
            .await
            .map_err(|status| Failure {
                step,
                command_id,
                status,
            })?;
        self.previous = Some(command_id);
        if reply.duplicate {
            self.duplicates += 1;
        }
        let n = self.steps.len() + 1;
        if !self.json {
            println!(
                "{n:>2}. {step:<26} {org:<16} {:<17} {:<36} v{:<6} {}{}",
                reply.aggregate_kind,
                reply.aggregate_id,
                versions(&reply),
                reply.event_types.join(","),
                if reply.duplicate { "  (duplicate)" } else { "" }
            );
        }
        let mut row = json!({"step": step, "organisation": org});
        if let (Some(row), Value::Object(fields)) = (row.as_object_mut(), reply_json(&reply)) {
            row.extend(fields);
        }
        self.steps.push(row);
        Ok(reply)
    }
}

/// Ids captured from replies.
#[derive(Default)]
struct Ids {
    person: String,
    referral: String,
    assessment: String,
    care_plan: String,
    episode: String,
    consent: String,
}

impl Ids {
    fn rows(&self) -> [(&'static str, &str); 6] {
        [
            ("person id", &self.person),
            ("referral id", &self.referral),
            ("assessment id", &self.assessment),
            ("care plan id", &self.care_plan),
            ("discharge episode id", &self.episode),
            ("consent id", &self.consent),
        ]
    }
}

fn discharge(context: Option<v1::CommandContext>, ids: &Ids, step: pd::Step) -> Rpc {
    Rpc::ProgressDischarge(v1::ProgressDischargeRequest {
        context,
        person_id: ids.person.clone(),
        episode_id: ids.episode.clone(),
        step: Some(step),
    })
}

fn member(organisation: &str, practitioner: &str) -> Option<v1::MemberRef> {
    Some(v1::MemberRef {
        organisation: organisation.to_owned(),
        practitioner: practitioner.to_owned(),
    })
}

async fn add_member(
    run: &mut Runner<'_>,
    ids: &Ids,
    step: &'static str,
    acting: &'static str,
    member: Option<v1::MemberRef>,
    role: Role,
    since: String,
) -> Result<CommandReply, Failure> {
    run.step(step, acting, |context| {
        Rpc::AddCareTeamMember(v1::AddCareTeamMemberRequest {
            context,
            person_id: ids.person.clone(),
            member,
            role: role.to_i32(),
            since,
        })
    })
    .await
}

async fn journey(run: &mut Runner<'_>, ids: &mut Ids) -> Result<(), Failure> {
    let clock = Clock { day: run.day };
    let nhs_number = run.nhs_number.clone();

    let reply = run
        .step("register-person", HOSPITAL, |context| {
            Rpc::RegisterPerson(v1::RegisterPersonRequest {
                context,
                profile: Some(v1::Profile {
                    nhs_number,
                    given_name: GIVEN_NAME.into(),
                    family_name: FAMILY_NAME.into(),
                    date_of_birth: "1941-03-02".into(),
                    contact: "07700 900456".into(),
                    what_matters: "Getting back to my allotment and having my grandchildren \
                                   round on Sundays"
                        .into(),
                    communication_needs: "Hard of hearing: please face me and speak clearly".into(),
                    registered_gp: GP.into(),
                    carers: vec![v1::Carer {
                        name: "Sam Example".into(),
                        relationship: "daughter".into(),
                        contact: "07700 900123".into(),
                    }],
                }),
            })
        })
        .await?;
    ids.person = reply.person_id;

    // The admission gives the hospital a legitimate relationship (it manages the episode at
    // its site), so it may start the care team.
    let reply = run
        .step("admit", HOSPITAL, |context| {
            Rpc::AdmitPerson(v1::AdmitPersonRequest {
                context,
                person_id: ids.person.clone(),
                site: HOSPITAL.into(),
                ward: "Ward 7 (care of older people)".into(),
                admitted_at: clock.instant(-4, 14, 30),
            })
        })
        .await?;
    ids.episode = reply.aggregate_id;

    // (step, acting organisation, member, practitioner, role, since): the first member is
    // added by the hospital, which has a relationship; later ones by a member.
    let team: [(&'static str, &'static str, &str, &str, Role, String); 3] = [
        (
            "add-member-hospital",
            HOSPITAL,
            HOSPITAL,
            "",
            Role::HospitalTeam,
            clock.date(-4),
        ),
        (
            "add-member-gp",
            HOSPITAL,
            GP,
            "",
            Role::GeneralPractice,
            "2012-09-01".into(),
        ),
        (
            "add-member-social-worker",
            HOSPITAL,
            COUNCIL,
            SOCIAL_WORKER,
            Role::SocialWorker,
            clock.date(-2),
        ),
    ];
    for (step, acting, org, practitioner, role, since) in team {
        add_member(
            run,
            ids,
            step,
            acting,
            member(org, practitioner),
            role,
            since,
        )
        .await?;
    }
    run.step("name-coordinator", COUNCIL, |context| {
        Rpc::NameCareCoordinator(v1::NameCareCoordinatorRequest {
            context,
            person_id: ids.person.clone(),
            member: member(COUNCIL, SOCIAL_WORKER),
        })
    })
    .await?;

    let reply = run
        .step("make-referral", HOSPITAL, |context| {
            Rpc::MakeReferral(v1::MakeReferralRequest {
                context,
                person_id: ids.person.clone(),
                referral: Some(v1::Referral {
                    from_organisation: HOSPITAL.into(),
                    to_service: D2A_SERVICE.into(),
                    priority: Priority::Urgent.to_i32(),
                    reason: "Admitted after a fall at home; will need support to return home \
                             (discharge to assess)"
                        .into(),
                    replaces: String::new(),
                }),
            })
        })
        .await?;
    ids.referral = reply.aggregate_id;
    for (step, action) in [
        ("referral-receive", ReferralAction::Receive),
        ("referral-accept", ReferralAction::Accept),
    ] {
        run.step(step, COUNCIL, |context| {
            Rpc::ProgressReferral(v1::ProgressReferralRequest {
                context,
                person_id: ids.person.clone(),
                referral_id: ids.referral.clone(),
                action: action.to_i32(),
                reason: String::new(),
            })
        })
        .await?;
    }

    let reply = run
        .step("request-assessment", COUNCIL, |context| {
            Rpc::RequestAssessment(v1::RequestAssessmentRequest {
                context,
                person_id: ids.person.clone(),
                request: Some(v1::AssessmentRequest {
                    kind: AssessmentKind::CareActNeeds.to_i32(),
                    assessors: vec![COUNCIL.into(), COMMUNITY.into()],
                    referral_id: ids.referral.clone(),
                    due_by: clock.date(2),
                }),
            })
        })
        .await?;
    ids.assessment = reply.aggregate_id;
    // The community team joins the care team (added by the council, a member) so that it
    // has a relationship with the person before it contributes.
    add_member(
        run,
        ids,
        "add-member-community",
        COUNCIL,
        member(COMMUNITY, ""),
        Role::CommunityNursing,
        clock.date(-1),
    )
    .await?;
    let contributions = [
        (
            "contribute-council",
            COUNCIL,
            "Needs help with washing, dressing and preparing meals since the fall; keen to \
             regain independence",
        ),
        (
            "contribute-community",
            COMMUNITY,
            "Mobilising with a frame; wound on left shin healing; needs daily checks for two \
             weeks",
        ),
    ];
    for (step, org, summary) in contributions {
        run.step(step, org, |context| {
            Rpc::ContributeToAssessment(v1::ContributeToAssessmentRequest {
                context,
                person_id: ids.person.clone(),
                assessment_id: ids.assessment.clone(),
                organisation: org.into(),
                summary: summary.into(),
            })
        })
        .await?;
    }
    run.step("complete-assessment", COUNCIL, |context| {
        Rpc::CompleteAssessment(v1::CompleteAssessmentRequest {
            context,
            person_id: ids.person.clone(),
            assessment_id: ids.assessment.clone(),
            findings: Some(v1::Findings {
                summary: "Joint Care Act needs assessment: eligible for reablement at home".into(),
                outcomes_not_achieved: [
                    Outcome::ManagingNutrition,
                    Outcome::PersonalHygiene,
                    Outcome::BeingAppropriatelyClothed,
                ]
                .iter()
                .map(|o| o.to_i32())
                .collect(),
                wellbeing_impact: "Cannot wash, dress or cook safely alone, so cannot go home \
                                   without support"
                    .into(),
                needs_arise_from_impairment_or_illness: true,
                significant_impact_on_wellbeing: true,
            }),
        })
    })
    .await?;

    let reply = run
        .step("agree-care-plan", COUNCIL, |context| {
            Rpc::AgreeCarePlan(v1::AgreeCarePlanRequest {
                context,
                person_id: ids.person.clone(),
                plan: Some(v1::PlanContent {
                    goals: vec![
                        "Get back to my allotment".into(),
                        "Make my own breakfast again".into(),
                    ],
                    activities: vec![
                        v1::Activity {
                            description: "Daily reablement visits".into(),
                            responsible_organisation: REABLEMENT.into(),
                            ..Default::default()
                        },
                        v1::Activity {
                            description: "Wound checks for two weeks".into(),
                            responsible_organisation: COMMUNITY.into(),
                            ..Default::default()
                        },
                        v1::Activity {
                            description: "Medication review after discharge".into(),
                            responsible_organisation: GP.into(),
                            ..Default::default()
                        },
                    ],
                    review_date: clock.date(42),
                }),
            })
        })
        .await?;
    ids.care_plan = reply.aggregate_id;

    let steps: Vec<(&'static str, &'static str, pd::Step)> = vec![
        (
            "discharge-expected-date",
            HOSPITAL,
            pd::Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
                expected: clock.date(0),
            }),
        ),
        (
            "discharge-ready",
            HOSPITAL,
            pd::Step::MarkDischargeReady(pd::MarkDischargeReady {
                discharge_ready_date: clock.date(-1),
            }),
        ),
        (
            "discharge-pathway",
            HOSPITAL,
            pd::Step::AssignPathway(pd::AssignPathway {
                pathway: Pathway::P1.to_i32(),
            }),
        ),
        (
            "discharge-request-service",
            HOSPITAL,
            pd::Step::RequestService(pd::RequestService {
                service: REABLEMENT.into(),
            }),
        ),
        (
            "discharge-delay",
            HOSPITAL,
            pd::Step::RecordDelayReason(pd::RecordDelayReason {
                reason: DelayReason::Pathway1NewCare.to_i32(),
                note: "Reablement package starts tomorrow morning at the earliest".into(),
            }),
        ),
        (
            "discharge-agree",
            HOSPITAL,
            pd::Step::AgreeDischarge(pd::AgreeDischarge {
                service: REABLEMENT.into(),
                planned_for: clock.date(0),
            }),
        ),
        (
            // "Now", anchored to the start of the demo day so a re-run is identical.
            "discharge-discharged",
            HOSPITAL,
            pd::Step::Discharge(pd::Discharge {
                discharged_at: clock.instant(0, 0, 0),
                destination: "Home".into(),
                destination_code: "19".into(),
            }),
        ),
        (
            "discharge-handover",
            REABLEMENT,
            pd::Step::AcceptHandover(pd::AcceptHandover {
                organisation: REABLEMENT.into(),
            }),
        ),
    ];
    for (step, org, body) in steps {
        run.step(step, org, |context| discharge(context, ids, body))
            .await?;
    }

    let reply = run
        .step("record-consent", COUNCIL, |context| {
            Rpc::RecordConsent(v1::RecordConsentRequest {
                context,
                person_id: ids.person.clone(),
                terms: Some(v1::ConsentTerms {
                    decision: Decision::Permit.to_i32(),
                    purpose: Purpose::DirectCare.to_i32(),
                    partners: vec![GP.into(), COUNCIL.into()],
                    data_classes: vec![],
                    valid_from: clock.date(0),
                    valid_until: clock.date(365),
                    capacity_assessed: true,
                }),
            })
        })
        .await?;
    ids.consent = reply.aggregate_id;
    Ok(())
}

/// Run the demo; prints as it goes and returns the exit code.
pub async fn run(
    client: &mut Client,
    auth: &Auth,
    server: &str,
    timeout: Duration,
    json: bool,
    day: NaiveDate,
    nhs_number: Option<String>,
) -> ExitCode {
    let nhs_number = nhs_number.unwrap_or_else(|| nhs_number_for(day));
    let registry = match registry::ensure(client, auth, &ORGANISATIONS, timeout).await {
        Ok(outcome) => outcome,
        Err(f) => {
            if json {
                println!(
                    "{}",
                    json!({"failed_step": f.step, "command_id": f.command_id.to_string(),
                           "error": status_json(&f.status)})
                );
            } else {
                eprintln!(
                    "demo registry set-up `{}` failed (command id {}):\n{}",
                    f.step,
                    f.command_id,
                    status_lines(&f.status).join("\n")
                );
            }
            return ExitCode::from(exit_code(f.status.code()));
        }
    };
    let mut runner = Runner {
        client,
        auth,
        timeout,
        json,
        day,
        nhs_number: nhs_number.clone(),
        correlation_id: command_id(day, &nhs_number, "correlation"),
        previous: None,
        steps: Vec::new(),
        duplicates: 0,
    };
    if !json {
        println!(
            "Carewoven demo at {server}, day {}: {GIVEN_NAME} {FAMILY_NAME} (fictional), NHS \
             number {nhs_number} (test range)\ncorrelation id {}\n{}\n",
            date_string(&day),
            runner.correlation_id,
            registry.line()
        );
    }
    let mut ids = Ids::default();
    let outcome = journey(&mut runner, &mut ids).await;
    let summary = json!({
        "day": date_string(&day),
        "name": format!("{GIVEN_NAME} {FAMILY_NAME}"),
        "nhs_number": nhs_number,
        "correlation_id": runner.correlation_id.to_string(),
        "ids": ids.rows().iter().map(|(k, v)| (k.replace(' ', "_"), Value::String((*v).to_owned()))).collect::<serde_json::Map<_, _>>(),
        "steps": runner.steps,
        "duplicates": runner.duplicates,
        "registry": registry.json(),
    });
    match outcome {
        Ok(()) => {
            if json {
                println!("{summary}");
            } else {
                let mut table = Table::new();
                table.load_preset(UTF8_BORDERS_ONLY);
                for (k, v) in ids.rows() {
                    table.add_row(vec![k, v]);
                }
                table.add_row(vec![
                    "steps".to_owned(),
                    format!(
                        "{} ({} new, {} duplicates)",
                        runner.steps.len(),
                        runner.steps.len() - runner.duplicates,
                        runner.duplicates
                    ),
                ]);
                println!("\n{table}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure {
            step,
            command_id,
            status,
        }) => {
            if json {
                let mut out = summary;
                if let Some(o) = out.as_object_mut() {
                    o.insert("failed_step".into(), json!(step));
                    o.insert("command_id".into(), json!(command_id.to_string()));
                    o.insert("error".into(), status_json(&status));
                }
                println!("{out}");
            } else {
                eprintln!(
                    "\ndemo step `{step}` failed (command id {command_id}):\n{}",
                    status_lines(&status).join("\n")
                );
            }
            ExitCode::from(exit_code(status.code()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_numbers_are_accepted() {
        assert!(check_nhs_number("9990001235").is_ok());
        assert!(check_nhs_number("9990001236").is_err());
        assert!(check_nhs_number("9434765919").is_err());
        assert!(check_nhs_number("999000123").is_err());
        assert!(check_nhs_number("999000123x").is_err());
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        let nhs = nhs_number_for(day);
        let a = command_id(day, &nhs, "admit");
        assert_eq!(a, command_id(day, &nhs, "admit"));
        assert_eq!(a.get_version_num(), 8);
        assert_ne!(a, command_id(day, &nhs, "discharge-ready"));
        assert_ne!(a, command_id(day.succ_opt().expect("next"), &nhs, "admit"));
    }

    #[test]
    fn demo_nhs_numbers_are_valid_test_numbers() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        for offset in 0..400 {
            let d = day.checked_add_days(Days::new(offset)).expect("date");
            let n = nhs_number_for(d);
            assert!(n.starts_with("999"));
            assert_eq!(Some(n.as_bytes()[9] - b'0'), nhs_check_digit(&n[..9]));
        }
        assert_ne!(
            nhs_number_for(day),
            nhs_number_for(day.succ_opt().expect("next"))
        );
    }

    #[test]
    fn clock_is_anchored_to_the_day() {
        let clock = Clock {
            day: NaiveDate::from_ymd_opt(2026, 3, 1).expect("date"),
        };
        assert_eq!(clock.date(-1), "2026-02-28");
        assert_eq!(clock.date(42), "2026-04-12");
        let midnight = clock.instant(0, 0, 0).expect("instant");
        assert_eq!(midnight.seconds % 86_400, 0);
        assert_eq!(
            clock.instant(-4, 14, 30).expect("instant").seconds,
            midnight.seconds - 4 * 86_400 + 14 * 3600 + 30 * 60
        );
    }
}
