//! Sending the plans through the command API, with retries, progress and a summary.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carewoven_proto::v1;
use serde_json::{Value, json};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::auth::Auth;
use crate::output::{exit_code, status_json, status_lines};
use crate::parse::{date_string, timestamp};
use crate::registry;
use crate::rpc::{Client, Ctx, Rpc};

use super::Options;
use super::access::user_for;
use super::organisations::ORGANISATIONS;
use super::plan::{Config, Op, PersonPlan, Slot, plan_person};
use super::stats::Stats;

pub(super) struct Failure {
    pub(super) person: u32,
    pub(super) nhs_number: String,
    pub(super) step: String,
    pub(super) command_id: Uuid,
    pub(super) status: Status,
}

#[derive(Default)]
pub(super) struct Totals {
    pub(super) sent: AtomicU64,
    pub(super) appended: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) retries: AtomicU64,
}

/// Ids the server gave this person's aggregates, by plan slot.
pub(super) struct Ids {
    pub(super) person: String,
    pub(super) slots: HashMap<Slot, String>,
}

impl Ids {
    pub(super) fn get(&self, slot: Slot) -> String {
        self.slots.get(&slot).cloned().unwrap_or_default()
    }
}

pub(super) fn build(op: &Op, context: Option<v1::CommandContext>, ids: &Ids) -> Rpc {
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
        Op::RaiseFlag(_, flag) => Rpc::RaiseRiskFlag(v1::RaiseRiskFlagRequest {
            context,
            person_id,
            flag: Some(flag),
        }),
        Op::CreateTask(_, task) => Rpc::CreateTask(v1::CreateTaskRequest {
            context,
            person_id,
            task: Some(task),
        }),
        Op::TaskStatus { task, status } => Rpc::ChangeTaskStatus(v1::ChangeTaskStatusRequest {
            context,
            person_id,
            task_id: ids.get(Slot::Task(task)),
            status: status.to_i32(),
            reason: String::new(),
        }),
    }
}

/// Retried with the same command id (safe: the server recognises its own earlier attempt).
pub(super) fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded
    )
}

pub(super) const ATTEMPTS: u32 = 5;

pub(super) async fn send_person(
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

pub(super) fn print_summary(summary: &Value, s: &Stats) {
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
         risk flags {}, tasks {} ({} completed), late-recorded commands {}",
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
        s.risk_flags,
        s.tasks,
        s.tasks_completed,
        s.late_recorded,
    );
}
