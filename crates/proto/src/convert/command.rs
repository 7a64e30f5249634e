//! Command requests -> domain commands.
//!
//! Conversions check form only (required, well-formed, known, within bounds) and name the
//! offending field by its proto path; rules that need the clock or state stay in `decide`.

use carewoven_domain::AggregateKind;
use carewoven_domain::assessment::AssessmentCommand;
use carewoven_domain::care_plan::CarePlanCommand;
use carewoven_domain::care_team::CareTeamCommand;
use carewoven_domain::consent::ConsentCommand;
use carewoven_domain::discharge::{DelayReason, DischargeCommand, DischargeDestination};
use carewoven_domain::feedback::FeedbackCommand;
use carewoven_domain::flag::FlagCommand;
use carewoven_domain::meeting::MeetingCommand;
use carewoven_domain::organisation::OrganisationCommand;
use carewoven_domain::person::{PersonCommand, Profile};
use carewoven_domain::referral::ReferralCommand;
use carewoven_domain::task::TaskCommand;
use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
use carewoven_domain::{Actor, Command, DomainError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::req_msg;
use super::wire::{
    opt, opt_instant, req_date, req_enum, req_instant, req_uuid, required, wire_enum,
};
use crate::v1;
use crate::v1::progress_discharge_request::Step;

/// The validated [`v1::CommandContext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedContext {
    pub command_id: Uuid,
    /// Defaults to the command id.
    pub correlation_id: Uuid,
    /// Defaults to the command id.
    pub causation_id: Uuid,
    pub actor: Actor,
    /// When it happened in the world, if the caller said.
    pub occurred_at: Option<DateTime<Utc>>,
}

impl ParsedContext {
    /// Refuse an `occurred_at` after `now` (beyond the allowed clock skew) or before
    /// 1900-01-01, naming `context.occurred_at` (the check needs the clock, so the service
    /// calls it with its `now` right after parsing).
    pub fn check_occurred_at(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        carewoven_domain::values::check_occurred_at("context.occurred_at", self.occurred_at, now)
    }
}

/// Validate a command's context. Fields are named `context.<field>`.
pub fn parse_context(ctx: Option<&v1::CommandContext>) -> Result<ParsedContext, DomainError> {
    let ctx = ctx.ok_or_else(|| required("context"))?;
    let command_id = req_uuid("context.command_id", &ctx.command_id)?;
    let or_command_id =
        |field: &str, raw: &str| opt(field, raw, req_uuid).map(|id| id.unwrap_or(command_id));
    Ok(ParsedContext {
        command_id,
        correlation_id: or_command_id("context.correlation_id", &ctx.correlation_id)?,
        causation_id: or_command_id("context.causation_id", &ctx.causation_id)?,
        actor: Actor {
            organisation: Code::parse("context.organisation", &ctx.organisation)?,
            user: Code::parse("context.user", &ctx.user)?,
        },
        occurred_at: opt_instant("context.occurred_at", ctx.occurred_at.as_ref())?,
    })
}

/// Validate a command's context for an authenticated caller: the organisation is the
/// caller's (an empty `context.organisation` takes it), and an empty `context.user` takes
/// the token's user when it has one.
pub fn parse_context_with(
    ctx: Option<&v1::CommandContext>,
    organisation: &Code,
    user: Option<&Code>,
) -> Result<ParsedContext, DomainError> {
    let raw = ctx.ok_or_else(|| required("context"))?;
    let mut filled = raw.clone();
    filled.organisation = organisation.as_str().to_owned();
    if filled.user.trim().is_empty()
        && let Some(user) = user
    {
        filled.user = user.as_str().to_owned();
    }
    parse_context(Some(&filled))
}

/// Where commands that create an aggregate get its id.
pub trait IdSource {
    /// The id of the referral, assessment, consent, discharge episode, meeting or feedback
    /// this command creates. The service derives it from the command id, so a retried
    /// command addresses the aggregate its first attempt created.
    fn new_aggregate_id(&self, kind: AggregateKind, person_id: Uuid) -> Uuid;
    /// The person id for an NHS number (so registering twice addresses the same person).
    fn person_id_for(&self, nhs: &NhsNumber) -> Uuid;
    /// The aggregate id of the organisation with this code.
    fn organisation_id_for(&self, code: &Code) -> Uuid;
}

/// A request message of the command service.
pub trait CommandRequest {
    fn context(&self) -> Option<&v1::CommandContext>;

    /// The domain command the request asks for. Does not look at the context.
    fn to_command(&self, ids: &dyn IdSource) -> Result<Command, DomainError>;

    /// Where the fields that `decide` names (in domain words, such as `date_of_birth`) sit in
    /// this request (`profile`), so a refusal names the request's own field path.
    fn domain_field_prefix(&self) -> Option<String> {
        None
    }

    /// A field `decide` named, as a path in this request.
    fn wire_field(&self, domain_field: &str) -> String {
        match self.domain_field_prefix() {
            Some(prefix) => format!("{prefix}.{domain_field}"),
            None => domain_field.to_owned(),
        }
    }

    /// Context and command together, the context checked first.
    fn parse(&self, ids: &dyn IdSource) -> Result<(ParsedContext, Command), DomainError> {
        let context = parse_context(self.context())?;
        Ok((context, self.to_command(ids)?))
    }
}

/// Implements [`CommandRequest`] for a request message with a `context` field.
macro_rules! command_request {
    ($request:ty, |$r:ident, $ids:ident| $body:block) => {
        command_request!($request, prefix(_r) None, |$r, $ids| $body);
    };
    ($request:ty, prefix($p:ident) $prefix:expr, |$r:ident, $ids:ident| $body:block) => {
        impl CommandRequest for $request {
            fn context(&self) -> Option<&v1::CommandContext> {
                self.context.as_ref()
            }

            fn domain_field_prefix(&self) -> Option<String> {
                let $p = self;
                $prefix
            }

            fn to_command(&self, $ids: &dyn IdSource) -> Result<Command, DomainError> {
                let $r = self;
                $body
            }
        }
    };
}

fn person_id(raw: &str) -> Result<Uuid, DomainError> {
    req_uuid("person_id", raw)
}

fn reason(raw: &str) -> Result<LongText, DomainError> {
    LongText::parse("reason", raw)
}

// ---------------------------------------------------------------------------------------------
// Person

command_request!(v1::RegisterPersonRequest, prefix(_r) Some("profile".to_owned()), |r, ids| {
    let profile: Profile = req_msg("profile", r.profile.as_ref())?;
    let person_id = ids.person_id_for(&profile.nhs_number);
    Ok(Command::Person {
        person_id,
        command: PersonCommand::Register { person_id, profile },
    })
});

command_request!(v1::CorrectPersonDetailsRequest, |r, _ids| {
    Ok(Command::Person {
        person_id: person_id(&r.person_id)?,
        command: PersonCommand::Correct {
            correction: req_msg("correction", r.correction.as_ref())?,
            reason: reason(&r.reason)?,
            based_on_version: r.based_on_version,
        },
    })
});

command_request!(v1::AssertEmergencyAccessRequest, |r, _ids| {
    Ok(Command::Person {
        person_id: person_id(&r.person_id)?,
        command: PersonCommand::AssertEmergencyAccess {
            reason: reason(&r.reason)?,
            hours: r.hours,
        },
    })
});

command_request!(v1::GrantProxyRequest, prefix(_r) Some("grant".to_owned()), |r, _ids| {
    Ok(Command::Person {
        person_id: person_id(&r.person_id)?,
        command: PersonCommand::GrantProxy {
            grant: req_msg("grant", r.grant.as_ref())?,
        },
    })
});

command_request!(v1::RevokeProxyRequest, |r, _ids| {
    Ok(Command::Person {
        person_id: person_id(&r.person_id)?,
        command: PersonCommand::RevokeProxy {
            carer_nhs_number: NhsNumber::parse("carer_nhs_number", &r.carer_nhs_number)?,
            reason: reason(&r.reason)?,
        },
    })
});

// ---------------------------------------------------------------------------------------------
// Referral

command_request!(v1::MakeReferralRequest, prefix(_r) Some("referral".to_owned()), |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let referral = req_msg("referral", r.referral.as_ref())?;
    Ok(Command::Referral {
        person_id,
        referral_id: ids.new_aggregate_id(AggregateKind::Referral, person_id),
        command: ReferralCommand::Make { referral },
    })
});

command_request!(v1::ProgressReferralRequest, |r, _ids| {
    Ok(Command::Referral {
        person_id: person_id(&r.person_id)?,
        referral_id: req_uuid("referral_id", &r.referral_id)?,
        command: referral_action(r)?,
    })
});

fn referral_action(r: &v1::ProgressReferralRequest) -> Result<ReferralCommand, DomainError> {
    use ReferralCommand as C;
    use v1::ReferralAction as A;
    let reason = || reason(&r.reason);
    Ok(match wire_enum("action", r.action)? {
        A::Unspecified => return Err(required("action")),
        A::Receive => C::Receive,
        A::Accept => C::Accept,
        A::Reject => C::Reject { reason: reason()? },
        A::Start => C::Start,
        A::Hold => C::Hold { reason: reason()? },
        A::Resume => C::Resume,
        A::Complete => C::Complete,
        A::Fail => C::Fail { reason: reason()? },
        A::Cancel => C::Cancel { reason: reason()? },
        A::MarkEnteredInError => C::MarkEnteredInError { reason: reason()? },
    })
}

// ---------------------------------------------------------------------------------------------
// Assessment

command_request!(v1::RequestAssessmentRequest, prefix(_r) Some("request".to_owned()), |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let request = req_msg("request", r.request.as_ref())?;
    Ok(Command::Assessment {
        person_id,
        assessment_id: ids.new_aggregate_id(AggregateKind::Assessment, person_id),
        command: AssessmentCommand::Request { request },
    })
});

fn assessment(
    person: &str,
    assessment: &str,
    command: AssessmentCommand,
) -> Result<Command, DomainError> {
    Ok(Command::Assessment {
        person_id: person_id(person)?,
        assessment_id: req_uuid("assessment_id", assessment)?,
        command,
    })
}

command_request!(v1::ContributeToAssessmentRequest, |r, _ids| {
    let command = AssessmentCommand::Contribute {
        organisation: Code::parse("organisation", &r.organisation)?,
        summary: LongText::parse("summary", &r.summary)?,
    };
    assessment(&r.person_id, &r.assessment_id, command)
});

command_request!(v1::CompleteAssessmentRequest, |r, _ids| {
    let command = AssessmentCommand::Complete {
        findings: req_msg("findings", r.findings.as_ref())?,
    };
    assessment(&r.person_id, &r.assessment_id, command)
});

command_request!(v1::ReplaceAssessorRequest, |r, _ids| {
    let command = AssessmentCommand::ReplaceAssessor {
        replaced: Code::parse("replaced", &r.replaced)?,
        by: Code::parse("by", &r.by)?,
        reason: reason(&r.reason)?,
    };
    assessment(&r.person_id, &r.assessment_id, command)
});

command_request!(v1::CancelAssessmentRequest, |r, _ids| {
    let command = AssessmentCommand::Cancel {
        reason: reason(&r.reason)?,
    };
    assessment(&r.person_id, &r.assessment_id, command)
});

// ---------------------------------------------------------------------------------------------
// Care plan and care team: one per person, addressed by the person id.

command_request!(v1::AgreeCarePlanRequest, |r, _ids| {
    Ok(Command::CarePlan {
        person_id: person_id(&r.person_id)?,
        command: CarePlanCommand::Agree {
            plan: req_msg("plan", r.plan.as_ref())?,
        },
    })
});

command_request!(v1::ReviseCarePlanRequest, |r, _ids| {
    Ok(Command::CarePlan {
        person_id: person_id(&r.person_id)?,
        command: CarePlanCommand::Revise {
            based_on_version: r.based_on_version,
            plan: req_msg("plan", r.plan.as_ref())?,
            reason: reason(&r.reason)?,
            changes: super::values::activity_changes("activity_changes", &r.activity_changes)?,
        },
    })
});

command_request!(v1::AddCareTeamMemberRequest, |r, _ids| {
    Ok(Command::CareTeam {
        person_id: person_id(&r.person_id)?,
        command: CareTeamCommand::AddMember {
            member: req_msg("member", r.member.as_ref())?,
            role: req_enum("role", r.role)?,
            since: req_date("since", &r.since)?,
        },
    })
});

command_request!(v1::RemoveCareTeamMemberRequest, |r, _ids| {
    Ok(Command::CareTeam {
        person_id: person_id(&r.person_id)?,
        command: CareTeamCommand::RemoveMember {
            member: req_msg("member", r.member.as_ref())?,
            until: req_date("until", &r.until)?,
            reason: reason(&r.reason)?,
        },
    })
});

command_request!(v1::NameCareCoordinatorRequest, |r, _ids| {
    Ok(Command::CareTeam {
        person_id: person_id(&r.person_id)?,
        command: CareTeamCommand::NameCoordinator {
            member: req_msg("member", r.member.as_ref())?,
        },
    })
});

// ---------------------------------------------------------------------------------------------
// Consent

command_request!(v1::RecordConsentRequest, prefix(_r) Some("terms".to_owned()), |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let terms = req_msg("terms", r.terms.as_ref())?;
    Ok(Command::Consent {
        person_id,
        consent_id: ids.new_aggregate_id(AggregateKind::Consent, person_id),
        command: ConsentCommand::Record { terms },
    })
});

command_request!(v1::WithdrawConsentRequest, |r, _ids| {
    Ok(Command::Consent {
        person_id: person_id(&r.person_id)?,
        consent_id: req_uuid("consent_id", &r.consent_id)?,
        command: ConsentCommand::Withdraw {
            reason: reason(&r.reason)?,
        },
    })
});

// ---------------------------------------------------------------------------------------------
// Discharge

command_request!(v1::AdmitPersonRequest, |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let command = DischargeCommand::Admit {
        site: Code::parse("site", &r.site)?,
        ward: opt("ward", &r.ward, ShortText::parse)?,
        admitted_at: req_instant("admitted_at", r.admitted_at.as_ref())?,
    };
    Ok(Command::Discharge {
        person_id,
        episode_id: ids.new_aggregate_id(AggregateKind::DischargeEpisode, person_id),
        command,
    })
});

command_request!(v1::ProgressDischargeRequest, prefix(r) r.step.as_ref().map(|s| format!("step.{}", step_name(s))), |r, _ids| {
    Ok(Command::Discharge {
        person_id: person_id(&r.person_id)?,
        episode_id: req_uuid("episode_id", &r.episode_id)?,
        command: discharge_step(r.step.as_ref().ok_or_else(|| required("step"))?)?,
    })
});

/// One step of a discharge episode; fields are named `step.<case>.<field>`.
fn discharge_step(step: &Step) -> Result<DischargeCommand, DomainError> {
    use DischargeCommand as C;
    Ok(match step {
        Step::SetExpectedDischargeDate(s) => C::SetExpectedDischargeDate {
            expected: req_date("step.set_expected_discharge_date.expected", &s.expected)?,
        },
        Step::MarkDischargeReady(s) => C::MarkDischargeReady {
            discharge_ready_date: req_date(
                "step.mark_discharge_ready.discharge_ready_date",
                &s.discharge_ready_date,
            )?,
        },
        Step::AssignPathway(s) => C::AssignPathway {
            pathway: req_enum("step.assign_pathway.pathway", s.pathway)?,
        },
        Step::RequestService(s) => C::RequestService {
            service: Code::parse("step.request_service.service", &s.service)?,
        },
        Step::AgreeDischarge(s) => C::AgreeDischarge {
            service: Code::parse("step.agree_discharge.service", &s.service)?,
            planned_for: req_date("step.agree_discharge.planned_for", &s.planned_for)?,
        },
        Step::RecordProviderFallThrough(s) => C::RecordProviderFallThrough {
            reason: LongText::parse("step.record_provider_fall_through.reason", &s.reason)?,
        },
        Step::RecordDeterioration(s) => C::RecordDeterioration {
            reason: LongText::parse("step.record_deterioration.reason", &s.reason)?,
        },
        Step::RecordDelayReason(s) => C::RecordDelayReason {
            reason: national_delay_reason("step.record_delay_reason.reason", s.reason)?,
            note: opt("step.record_delay_reason.note", &s.note, LongText::parse)?,
        },
        Step::Discharge(s) => C::Discharge {
            discharged_at: req_instant("step.discharge.discharged_at", s.discharged_at.as_ref())?,
            destination: ShortText::parse("step.discharge.destination", &s.destination)?,
            destination_code: opt(
                "step.discharge.destination_code",
                &s.destination_code,
                DischargeDestination::parse,
            )?,
        },
        Step::AcceptHandover(s) => C::AcceptHandover {
            organisation: Code::parse("step.accept_handover.organisation", &s.organisation)?,
        },
        Step::CompleteHomeAssessment(s) => C::CompleteHomeAssessment {
            completed_on: req_date(
                "step.complete_home_assessment.completed_on",
                &s.completed_on,
            )?,
            outcome: LongText::parse("step.complete_home_assessment.outcome", &s.outcome)?,
        },
        Step::Close(_) => C::Close,
        Step::RecordDeath(s) => C::RecordDeath {
            died_at: req_instant("step.record_death.died_at", s.died_at.as_ref())?,
        },
        Step::RecordSelfDischarge(s) => C::RecordSelfDischarge {
            left_at: req_instant("step.record_self_discharge.left_at", s.left_at.as_ref())?,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Meeting

command_request!(v1::RecordMeetingRequest, prefix(_r) Some("meeting".to_owned()), |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let meeting = req_msg("meeting", r.meeting.as_ref())?;
    Ok(Command::Meeting {
        person_id,
        meeting_id: ids.new_aggregate_id(AggregateKind::Meeting, person_id),
        command: MeetingCommand::Record { meeting },
    })
});

command_request!(v1::CompleteMeetingActionRequest, |r, _ids| {
    Ok(Command::Meeting {
        person_id: person_id(&r.person_id)?,
        meeting_id: req_uuid("meeting_id", &r.meeting_id)?,
        command: MeetingCommand::CompleteAction {
            action: r.action,
            note: opt("note", &r.note, LongText::parse)?,
        },
    })
});

// ---------------------------------------------------------------------------------------------
// Risk flags

command_request!(v1::RaiseRiskFlagRequest, prefix(_r) Some("flag".to_owned()), |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let flag = req_msg("flag", r.flag.as_ref())?;
    Ok(Command::Flag {
        person_id,
        flag_id: ids.new_aggregate_id(AggregateKind::Flag, person_id),
        command: FlagCommand::Raise { flag },
    })
});

command_request!(v1::EndRiskFlagRequest, |r, _ids| {
    Ok(Command::Flag {
        person_id: person_id(&r.person_id)?,
        flag_id: req_uuid("flag_id", &r.flag_id)?,
        command: FlagCommand::End {
            end: req_date("end", &r.end)?,
            reason: reason(&r.reason)?,
        },
    })
});

// ---------------------------------------------------------------------------------------------
// Tasks

command_request!(v1::CreateTaskRequest, |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let task = req_msg("task", r.task.as_ref())?;
    Ok(Command::Task {
        person_id,
        task_id: ids.new_aggregate_id(AggregateKind::Task, person_id),
        command: TaskCommand::Create { task },
    })
});

command_request!(v1::ChangeTaskStatusRequest, |r, _ids| {
    Ok(Command::Task {
        person_id: person_id(&r.person_id)?,
        task_id: req_uuid("task_id", &r.task_id)?,
        command: TaskCommand::ChangeStatus {
            status: req_enum("status", r.status)?,
            reason: opt("reason", &r.reason, LongText::parse)?,
        },
    })
});

command_request!(v1::ReassignTaskRequest, |r, _ids| {
    Ok(Command::Task {
        person_id: person_id(&r.person_id)?,
        task_id: req_uuid("task_id", &r.task_id)?,
        command: TaskCommand::Reassign {
            owner: req_msg("owner", r.owner.as_ref())?,
            reason: reason(&r.reason)?,
        },
    })
});

// ---------------------------------------------------------------------------------------------
// Feedback

command_request!(v1::RecordFeedbackRequest, prefix(_r) Some("feedback".to_owned()), |r, ids| {
    let person_id = person_id(&r.person_id)?;
    let feedback = req_msg("feedback", r.feedback.as_ref())?;
    Ok(Command::Feedback {
        person_id,
        feedback_id: ids.new_aggregate_id(AggregateKind::Feedback, person_id),
        command: FeedbackCommand::Record { feedback },
    })
});

// ---------------------------------------------------------------------------------------------
// Organisations (the registry)

fn organisation(ids: &dyn IdSource, raw: &str) -> Result<(Code, Uuid), DomainError> {
    let code = Code::parse("code", raw)?;
    let id = ids.organisation_id_for(&code);
    Ok((code, id))
}

command_request!(v1::RegisterOrganisationRequest, |r, ids| {
    let (code, organisation_id) = organisation(ids, &r.code)?;
    Ok(Command::Organisation {
        organisation_id,
        command: OrganisationCommand::Register {
            code,
            profile: req_msg("profile", r.profile.as_ref())?,
            services: super::values::code_list("services", &r.services)?,
        },
    })
});

command_request!(v1::AddOrganisationServiceRequest, |r, ids| {
    let (_, organisation_id) = organisation(ids, &r.code)?;
    Ok(Command::Organisation {
        organisation_id,
        command: OrganisationCommand::AddService {
            service: Code::parse("service", &r.service)?,
        },
    })
});

command_request!(v1::RecordSharingAgreementRequest, prefix(_r) Some("agreement".to_owned()), |r, ids| {
    let (_, organisation_id) = organisation(ids, &r.code)?;
    Ok(Command::Organisation {
        organisation_id,
        command: OrganisationCommand::RecordAgreement {
            agreement: req_msg("agreement", r.agreement.as_ref())?,
        },
    })
});

command_request!(v1::EndSharingAgreementRequest, |r, ids| {
    let (_, organisation_id) = organisation(ids, &r.code)?;
    Ok(Command::Organisation {
        organisation_id,
        command: OrganisationCommand::EndAgreement {
            reference: Code::parse("reference", &r.reference)?,
            reason: reason(&r.reason)?,
        },
    })
});

/// The oneof case name of a discharge step, as in the proto.
fn step_name(step: &v1::progress_discharge_request::Step) -> &'static str {
    use v1::progress_discharge_request::Step;
    match step {
        Step::SetExpectedDischargeDate(_) => "set_expected_discharge_date",
        Step::MarkDischargeReady(_) => "mark_discharge_ready",
        Step::AssignPathway(_) => "assign_pathway",
        Step::RequestService(_) => "request_service",
        Step::AgreeDischarge(_) => "agree_discharge",
        Step::RecordProviderFallThrough(_) => "record_provider_fall_through",
        Step::RecordDeterioration(_) => "record_deterioration",
        Step::RecordDelayReason(_) => "record_delay_reason",
        Step::Discharge(_) => "discharge",
        Step::AcceptHandover(_) => "accept_handover",
        Step::CompleteHomeAssessment(_) => "complete_home_assessment",
        Step::Close(_) => "close",
        Step::RecordDeath(_) => "record_death",
        Step::RecordSelfDischarge(_) => "record_self_discharge",
    }
}

/// A delay reason in a new command: a national value, or a legacy one with a national
/// equivalent (read as it); the legacy OTHER, which has none, is refused naming `field`.
fn national_delay_reason(field: &str, raw: i32) -> Result<DelayReason, DomainError> {
    let reason: DelayReason = req_enum(field, raw)?;
    if !reason.is_national() {
        return Err(DomainError::invalid(
            field,
            "DELAY_REASON_OTHER is no longer accepted: choose a reason from the national list",
        ));
    }
    Ok(reason)
}
