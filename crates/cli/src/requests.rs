//! Build each RPC's request from its parsed subcommand.

use anyhow::{Result, bail};
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use clap::ValueEnum;

use crate::cli::{self, Command, DischargeStep, Member, Plan};
use crate::enums::DataClass;
use crate::parse::{date_string, opt_date_string, timestamp, today};
use crate::rpc::{Ctx, Rpc};

fn text(o: Option<String>) -> String {
    o.unwrap_or_default()
}

fn member(m: Member) -> Option<v1::MemberRef> {
    Some(v1::MemberRef {
        organisation: m.organisation,
        practitioner: text(m.practitioner),
    })
}

fn plan(p: Plan) -> Option<v1::PlanContent> {
    Some(v1::PlanContent {
        goals: p.goals,
        activities: p.activities,
        review_date: date_string(&p.review_date),
    })
}

/// The request for an RPC subcommand (`wait-ready` and `demo` are not single RPCs).
pub fn build(command: Command, ctx: &Ctx) -> Result<Rpc> {
    let context = ctx.wire();
    let acting = || ctx.organisation.clone();
    Ok(match command {
        Command::RegisterPerson(a) => Rpc::RegisterPerson(v1::RegisterPersonRequest {
            context,
            profile: Some(v1::Profile {
                nhs_number: a.nhs_number,
                given_name: a.given_name,
                family_name: a.family_name,
                date_of_birth: date_string(&a.date_of_birth),
                contact: text(a.contact),
                what_matters: text(a.what_matters),
                communication_needs: text(a.communication_needs),
                carers: a.carers,
                registered_gp: text(a.registered_gp),
            }),
        }),
        Command::BreakGlass(a) => Rpc::AssertEmergencyAccess(v1::AssertEmergencyAccessRequest {
            context,
            person_id: a.person.person_id.to_string(),
            reason: a.reason,
            hours: a.hours,
        }),
        Command::CorrectPerson(a) => {
            let carers = (a.clear_carers || !a.carers.is_empty())
                .then_some(v1::CarerList { carers: a.carers });
            Rpc::CorrectPersonDetails(v1::CorrectPersonDetailsRequest {
                context,
                person_id: a.person.person_id.to_string(),
                correction: Some(v1::Correction {
                    nhs_number: a.nhs_number,
                    given_name: a.given_name,
                    family_name: a.family_name,
                    date_of_birth: a.date_of_birth.as_ref().map(date_string),
                    contact: a.contact,
                    what_matters: a.what_matters,
                    communication_needs: a.communication_needs,
                    carers,
                    registered_gp: a.registered_gp,
                }),
                reason: text(a.reason),
                based_on_version: a.based_on_version,
            })
        }
        Command::MakeReferral(a) => Rpc::MakeReferral(v1::MakeReferralRequest {
            context,
            person_id: a.person.person_id.to_string(),
            referral: Some(v1::Referral {
                from_organisation: a.from_organisation.unwrap_or_else(acting),
                to_service: a.to_service,
                priority: a.priority.to_i32(),
                reason: a.reason,
                replaces: a.replaces.map(|u| u.to_string()).unwrap_or_default(),
            }),
        }),
        Command::Referral(a) => Rpc::ProgressReferral(v1::ProgressReferralRequest {
            context,
            person_id: a.person.person_id.to_string(),
            referral_id: a.referral_id.to_string(),
            action: a.action.to_i32(),
            reason: text(a.reason),
        }),
        Command::RequestAssessment(a) => Rpc::RequestAssessment(v1::RequestAssessmentRequest {
            context,
            person_id: a.person.person_id.to_string(),
            request: Some(v1::AssessmentRequest {
                kind: a.kind.to_i32(),
                assessors: a.assessors,
                referral_id: a.referral_id.map(|u| u.to_string()).unwrap_or_default(),
                due_by: opt_date_string(a.due_by.as_ref()),
            }),
        }),
        Command::ContributeAssessment(a) => {
            Rpc::ContributeToAssessment(v1::ContributeToAssessmentRequest {
                context,
                person_id: a.assessment.person.person_id.to_string(),
                assessment_id: a.assessment.assessment_id.to_string(),
                organisation: a.organisation.unwrap_or_else(acting),
                summary: a.summary,
            })
        }
        Command::CompleteAssessment(a) => Rpc::CompleteAssessment(v1::CompleteAssessmentRequest {
            context,
            person_id: a.assessment.person.person_id.to_string(),
            assessment_id: a.assessment.assessment_id.to_string(),
            findings: Some(v1::Findings {
                summary: a.summary,
                outcomes_not_achieved: a.outcomes.iter().map(|o| o.to_i32()).collect(),
                wellbeing_impact: text(a.wellbeing_impact),
                needs_arise_from_impairment_or_illness: a.needs_arise_from_impairment_or_illness,
                significant_impact_on_wellbeing: a.significant_impact_on_wellbeing,
            }),
        }),
        Command::CancelAssessment(a) => Rpc::CancelAssessment(v1::CancelAssessmentRequest {
            context,
            person_id: a.assessment.person.person_id.to_string(),
            assessment_id: a.assessment.assessment_id.to_string(),
            reason: a.reason,
        }),
        Command::ReplaceAssessor(a) => Rpc::ReplaceAssessor(v1::ReplaceAssessorRequest {
            context,
            person_id: a.assessment.person.person_id.to_string(),
            assessment_id: a.assessment.assessment_id.to_string(),
            replaced: a.replaced,
            by: a.by,
            reason: a.reason,
        }),
        Command::AgreeCarePlan(a) => Rpc::AgreeCarePlan(v1::AgreeCarePlanRequest {
            context,
            person_id: a.person.person_id.to_string(),
            plan: plan(a.plan),
        }),
        Command::ReviseCarePlan(a) => {
            use v1::activity_change::Change;
            let mut plan = plan(a.plan);
            let added = plan
                .as_mut()
                .map(|p| std::mem::take(&mut p.activities))
                .unwrap_or_default();
            let activity_changes = added
                .into_iter()
                .map(Change::Add)
                .chain(a.end_activities.into_iter().map(Change::End))
                .map(|c| v1::ActivityChange { change: Some(c) })
                .collect();
            Rpc::ReviseCarePlan(v1::ReviseCarePlanRequest {
                context,
                person_id: a.person.person_id.to_string(),
                based_on_version: a.based_on_version,
                plan,
                reason: text(a.reason),
                activity_changes,
            })
        }
        Command::AddTeamMember(a) => Rpc::AddCareTeamMember(v1::AddCareTeamMemberRequest {
            context,
            person_id: a.person.person_id.to_string(),
            member: member(a.member),
            role: a.role.to_i32(),
            since: date_string(&a.since),
        }),
        Command::RemoveTeamMember(a) => {
            Rpc::RemoveCareTeamMember(v1::RemoveCareTeamMemberRequest {
                context,
                person_id: a.person.person_id.to_string(),
                member: member(a.member),
                until: date_string(&a.until),
                reason: text(a.reason),
            })
        }
        Command::NameCoordinator(a) => Rpc::NameCareCoordinator(v1::NameCareCoordinatorRequest {
            context,
            person_id: a.person.person_id.to_string(),
            member: member(a.member),
        }),
        Command::RecordConsent(a) => Rpc::RecordConsent(v1::RecordConsentRequest {
            context,
            person_id: a.person.person_id.to_string(),
            terms: Some(v1::ConsentTerms {
                decision: a.decision.to_i32(),
                purpose: a.purpose.to_i32(),
                partners: a.partners,
                data_classes: a.data_classes.iter().map(|d| d.to_i32()).collect(),
                valid_from: date_string(&a.valid_from),
                valid_until: opt_date_string(a.valid_until.as_ref()),
                capacity_assessed: a.capacity_assessed,
            }),
        }),
        Command::WithdrawConsent(a) => Rpc::WithdrawConsent(v1::WithdrawConsentRequest {
            context,
            person_id: a.person.person_id.to_string(),
            consent_id: a.consent_id.to_string(),
            reason: text(a.reason),
        }),
        Command::Admit(a) => Rpc::AdmitPerson(v1::AdmitPersonRequest {
            context,
            person_id: a.person.person_id.to_string(),
            site: a.site.unwrap_or_else(acting),
            ward: text(a.ward),
            admitted_at: Some(timestamp(a.admitted_at)),
        }),
        Command::Discharge(cli::Discharge { step }) => {
            let (episode, step) = discharge_step(step, &ctx.organisation);
            Rpc::ProgressDischarge(v1::ProgressDischargeRequest {
                context,
                person_id: episode.person.person_id.to_string(),
                episode_id: episode.episode_id.to_string(),
                step: Some(step),
            })
        }
        Command::RecordMeeting(a) => Rpc::RecordMeeting(v1::RecordMeetingRequest {
            context,
            person_id: a.person.person_id.to_string(),
            meeting: Some(v1::MeetingRecord {
                held_at: Some(timestamp(a.held_at)),
                attendees: a.attendees,
                decisions: a.decisions,
                actions: a.actions,
            }),
        }),
        Command::CompleteAction(a) => {
            Rpc::CompleteMeetingAction(v1::CompleteMeetingActionRequest {
                context,
                person_id: a.person.person_id.to_string(),
                meeting_id: a.meeting_id.to_string(),
                action: a.action,
                note: text(a.note),
            })
        }
        Command::Feedback(a) => Rpc::RecordFeedback(v1::RecordFeedbackRequest {
            context,
            person_id: a.person.person_id.to_string(),
            feedback: Some(v1::FeedbackRecord {
                source: a.source.to_i32(),
                anonymous: a.anonymous,
                text: a.text,
                rating: a.rating.unwrap_or(0),
            }),
        }),
        Command::RaiseFlag(a) => Rpc::RaiseRiskFlag(v1::RaiseRiskFlagRequest {
            context,
            person_id: a.person.person_id.to_string(),
            flag: Some(v1::RiskFlag {
                code: a.flag.to_i32(),
                frailty_score: a.frailty_score.unwrap_or(0),
                start: a.start.unwrap_or_else(today).to_string(),
                note: a.note.unwrap_or_default(),
            }),
        }),
        Command::CreateTask(a) => {
            use v1::task_basis::Basis;
            let pair = |raw: &str, what: &str| -> Result<(String, u32)> {
                raw.rsplit_once(':')
                    .and_then(|(l, r)| Some((l.to_owned(), r.parse().ok()?)))
                    .ok_or_else(|| anyhow::anyhow!("expected {what}"))
            };
            let basis = if let Some(raw) = &a.plan_activity {
                let (version, activity) = pair(raw, "--plan-activity VERSION:INDEX")?;
                let plan_version = version
                    .parse()
                    .map_err(|_| anyhow::anyhow!("expected --plan-activity VERSION:INDEX"))?;
                Some(Basis::PlanActivity(v1::PlanActivityRef {
                    plan_version,
                    activity,
                }))
            } else if let Some(raw) = &a.meeting_action {
                let (meeting_id, action) = pair(raw, "--meeting-action UUID:N")?;
                Some(Basis::MeetingAction(v1::MeetingActionRef {
                    meeting_id,
                    action,
                }))
            } else if let Some(e) = a.handover_episode {
                Some(Basis::HandoverEpisodeId(e.to_string()))
            } else {
                a.cohort.map(|c| Basis::CohortId(c.to_string()))
            };
            Rpc::CreateTask(v1::CreateTaskRequest {
                context,
                person_id: a.person.person_id.to_string(),
                task: Some(v1::Task {
                    description: a.description,
                    owner: Some(a.owner),
                    due: a.due.to_string(),
                    priority: a.priority.to_i32(),
                    basis: basis.map(|b| v1::TaskBasis { basis: Some(b) }),
                }),
            })
        }
        Command::TaskStatus(a) => Rpc::ChangeTaskStatus(v1::ChangeTaskStatusRequest {
            context,
            person_id: a.person.person_id.to_string(),
            task_id: a.task_id.to_string(),
            status: a.status.to_i32(),
            reason: a.reason.unwrap_or_default(),
        }),
        Command::ReassignTask(a) => Rpc::ReassignTask(v1::ReassignTaskRequest {
            context,
            person_id: a.person.person_id.to_string(),
            task_id: a.task_id.to_string(),
            owner: Some(a.owner),
            reason: a.reason,
        }),
        Command::EndFlag(a) => Rpc::EndRiskFlag(v1::EndRiskFlagRequest {
            context,
            person_id: a.person.person_id.to_string(),
            flag_id: a.flag_id.to_string(),
            end: a.end.unwrap_or_else(today).to_string(),
            reason: a.reason,
        }),
        Command::GrantProxy(a) => Rpc::GrantProxy(v1::GrantProxyRequest {
            context,
            person_id: a.person.person_id.to_string(),
            grant: Some(v1::ProxyGrant {
                carer_nhs_number: a.carer_nhs_number,
                carer_name: a.carer_name,
                scope: a.scope.iter().map(|s| s.to_i32()).collect(),
            }),
        }),
        Command::RevokeProxy(a) => Rpc::RevokeProxy(v1::RevokeProxyRequest {
            context,
            person_id: a.person.person_id.to_string(),
            carer_nhs_number: a.carer_nhs_number,
            reason: a.reason,
        }),
        Command::Org(org) => registry(org, context),
        Command::WaitReady
        | Command::Demo(_)
        | Command::Seed(_)
        | Command::Keys(_)
        | Command::Token(_)
        | Command::Read(_) => bail!("not a single command"),
    })
}

/// The registry commands.
fn registry(org: cli::Org, context: Option<v1::CommandContext>) -> Rpc {
    use cli::{Org, OrgAgreement};
    match org {
        Org::Register(a) => Rpc::RegisterOrganisation(v1::RegisterOrganisationRequest {
            context,
            code: a.org.code,
            profile: Some(v1::OrganisationProfile {
                name: a.name,
                org_type: a.org_type.to_i32(),
            }),
            services: a.services,
        }),
        Org::AddService(a) => Rpc::AddOrganisationService(v1::AddOrganisationServiceRequest {
            context,
            code: a.org.code,
            service: a.service,
        }),
        Org::Agreement(OrgAgreement::Record(a)) => {
            let data_classes = if a.all_data_classes {
                DataClass::value_variants()
                    .iter()
                    .map(|d| d.to_i32())
                    .collect()
            } else {
                a.data_classes.iter().map(|d| d.to_i32()).collect()
            };
            Rpc::RecordSharingAgreement(v1::RecordSharingAgreementRequest {
                context,
                code: a.org.code,
                agreement: Some(v1::SharingAgreement {
                    reference: a.reference,
                    purposes: a.purposes.iter().map(|p| p.to_i32()).collect(),
                    data_classes,
                    valid_from: date_string(&a.valid_from),
                    expires_on: date_string(&a.expires_on),
                }),
            })
        }
        Org::Agreement(OrgAgreement::End(a)) => {
            Rpc::EndSharingAgreement(v1::EndSharingAgreementRequest {
                context,
                code: a.org.code,
                reference: a.reference,
                reason: a.reason,
            })
        }
    }
}

/// The episode a discharge step addresses and the step's oneof value.
fn discharge_step(step: DischargeStep, acting: &str) -> (cli::EpisodeRef, pd::Step) {
    use DischargeStep as S;
    match step {
        S::ExpectedDate { episode, expected } => (
            episode,
            pd::Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
                expected: date_string(&expected),
            }),
        ),
        S::Ready {
            episode,
            discharge_ready_date,
        } => (
            episode,
            pd::Step::MarkDischargeReady(pd::MarkDischargeReady {
                discharge_ready_date: date_string(&discharge_ready_date),
            }),
        ),
        S::Pathway { episode, pathway } => (
            episode,
            pd::Step::AssignPathway(pd::AssignPathway {
                pathway: pathway.to_i32(),
            }),
        ),
        S::RequestService { episode, service } => (
            episode,
            pd::Step::RequestService(pd::RequestService { service }),
        ),
        S::Agree {
            episode,
            service,
            planned_for,
        } => (
            episode,
            pd::Step::AgreeDischarge(pd::AgreeDischarge {
                service,
                planned_for: date_string(&planned_for),
            }),
        ),
        S::FallThrough { episode, reason } => (
            episode,
            pd::Step::RecordProviderFallThrough(pd::RecordProviderFallThrough { reason }),
        ),
        S::Deteriorated { episode, reason } => (
            episode,
            pd::Step::RecordDeterioration(pd::RecordDeterioration { reason }),
        ),
        S::Delay {
            episode,
            reason,
            note,
        } => (
            episode,
            pd::Step::RecordDelayReason(pd::RecordDelayReason {
                reason: reason.to_i32(),
                note: text(note),
            }),
        ),
        S::Discharged {
            episode,
            discharged_at,
            destination,
            destination_code,
        } => (
            episode,
            pd::Step::Discharge(pd::Discharge {
                discharged_at: Some(timestamp(discharged_at)),
                destination,
                destination_code: destination_code.unwrap_or_default(),
            }),
        ),
        S::Handover {
            episode,
            organisation,
        } => (
            episode,
            pd::Step::AcceptHandover(pd::AcceptHandover {
                organisation: organisation.unwrap_or_else(|| acting.to_owned()),
            }),
        ),
        S::HomeAssessment {
            episode,
            completed_on,
            outcome,
        } => (
            episode,
            pd::Step::CompleteHomeAssessment(pd::CompleteHomeAssessment {
                completed_on: date_string(&completed_on),
                outcome,
            }),
        ),
        S::Close { episode } => (episode, pd::Step::Close(pd::CloseEpisode {})),
        S::Died { episode, died_at } => (
            episode,
            pd::Step::RecordDeath(pd::RecordDeath {
                died_at: Some(timestamp(died_at)),
            }),
        ),
        S::SelfDischarged { episode, left_at } => (
            episode,
            pd::Step::RecordSelfDischarge(pd::RecordSelfDischarge {
                left_at: Some(timestamp(left_at)),
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use uuid::Uuid;

    const P: &str = "0190f3a4-1b2c-7d3e-8f40-123456789abc";

    fn rpc(args: &[&str]) -> Rpc {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        let ctx = Ctx {
            command_id: Uuid::nil(),
            correlation_id: None,
            causation_id: None,
            organisation: "DEMO-ASC".into(),
            user: "u1".into(),
            occurred_at: None,
        };
        build(cli.command, &ctx).expect("an rpc")
    }

    #[test]
    fn discharge_step_becomes_the_oneof() {
        let Rpc::ProgressDischarge(r) = rpc(&[
            "carectl",
            "discharge",
            "handover",
            "--person-id",
            P,
            "--episode-id",
            P,
        ]) else {
            panic!("wrong rpc")
        };
        assert_eq!(
            r.step,
            Some(pd::Step::AcceptHandover(pd::AcceptHandover {
                organisation: "DEMO-ASC".into()
            }))
        );
        let context = r.context.expect("context");
        assert_eq!(context.command_id, Uuid::nil().to_string());
        assert_eq!(context.correlation_id, "");
    }

    #[test]
    fn correction_sends_only_given_fields() {
        let Rpc::CorrectPersonDetails(r) = rpc(&[
            "carectl",
            "correct-person",
            "--based-on-version",
            "3",
            "--person-id",
            P,
            "--given-name",
            "Ada",
            "--clear-carers",
        ]) else {
            panic!("wrong rpc")
        };
        let c = r.correction.expect("correction");
        assert_eq!(c.given_name.as_deref(), Some("Ada"));
        assert_eq!(c.family_name, None);
        assert_eq!(c.carers, Some(v1::CarerList { carers: vec![] }));
    }

    #[test]
    fn registry_commands() {
        let Rpc::RecordSharingAgreement(r) = rpc(&[
            "carectl",
            "org",
            "agreement",
            "record",
            "--code",
            "DEMO-GP",
            "--reference",
            "DSA-1",
            "--purpose",
            "direct-care",
            "--all-data-classes",
            "--valid-from",
            "2026-01-01",
            "--expires-on",
            "2027-01-01",
        ]) else {
            panic!("wrong rpc")
        };
        let a = r.agreement.expect("agreement");
        assert_eq!(r.code, "DEMO-GP");
        assert_eq!(a.data_classes.len(), 11);
        assert_eq!(a.purposes, [v1::Purpose::DirectCare as i32]);
        let rpc = rpc(&[
            "carectl",
            "org",
            "register",
            "--code",
            "DEMO-GP",
            "--name",
            "Demo practice",
            "--type",
            "general-practice",
            "--service",
            "DEMO-GP",
        ]);
        assert!(rpc.is_registry());
        let Rpc::RegisterOrganisation(r) = rpc else {
            panic!("wrong rpc")
        };
        assert_eq!(r.services, ["DEMO-GP"]);
        assert_eq!(
            r.profile.expect("profile").org_type,
            v1::OrganisationType::GeneralPractice as i32
        );
        assert!(
            Cli::try_parse_from([
                "carectl",
                "org",
                "agreement",
                "record",
                "--code",
                "X",
                "--reference",
                "R",
                "--purpose",
                "direct-care",
                "--valid-from",
                "today",
                "--expires-on",
                "today+1",
            ])
            .is_err(),
            "data classes are required"
        );
    }

    #[test]
    fn consent_enums_and_lists() {
        let Rpc::RecordConsent(r) = rpc(&[
            "carectl",
            "record-consent",
            "--person-id",
            P,
            "--decision",
            "permit",
            "--purpose",
            "direct-care",
            "--partner",
            "DEMO-GP",
            "--partner",
            "DEMO-ASC",
            "--data-class",
            "discharge",
            "--valid-from",
            "2026-01-02",
        ]) else {
            panic!("wrong rpc")
        };
        let t = r.terms.expect("terms");
        assert_eq!(t.decision, v1::ConsentDecision::Permit as i32);
        assert_eq!(t.partners, ["DEMO-GP", "DEMO-ASC"]);
        assert_eq!(t.data_classes, [v1::DataClass::Discharge as i32]);
        assert_eq!(t.valid_until, "");
    }
}
