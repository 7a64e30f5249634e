//! The command line: global options, one subcommand per `CommandService` RPC, and the reads
//! (`record`, `board`, `inbox`, `caseload`, `feed`, `who-accessed`, `find-person`, `status`).

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::enums::{
    AccessRole, AssessmentKind, DataClass, Decision, DelayReason, FeedbackSource, IdentityLevel,
    OrgType, Outcome, Pathway, Priority, ProxyScope, Purpose, ReferralAction, Role,
};
use crate::parse;
use carewoven_proto::v1;

const DATE_HELP: &str = "Dates are YYYY-MM-DD, or today, yesterday, tomorrow, today+N, today-N. \
Instants are RFC 3339 (2026-11-26T10:30:00Z) or `now`. To retry a command safely, repeat it \
with the same --command-id and the same resolved values (not `now`/`today` on another day).";

/// carectl: send Carewoven care-coordination commands over gRPC.
///
/// Every command carries a command id (idempotency key). Unless --command-id is given, a fresh
/// UUIDv7 is used and printed, so a failed or timed-out command can be retried with it.
#[derive(Debug, Parser)]
#[command(name = "carectl", version, after_help = DATE_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Command service address.
    #[arg(
        long,
        env = "CAREWOVEN_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Views (query) service address: record, board, inbox, caseload, find-person, status.
    #[arg(
        long,
        env = "CAREWOVEN_VIEWS_SERVER",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub views_server: String,
    /// Partner-feed gateway address: feed, who-accessed, status.
    #[arg(
        long,
        env = "CAREWOVEN_GATEWAY_SERVER",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    pub gateway_server: String,
    /// Acting organisation code (for example an ODS code). It must be the organisation the
    /// bearer token names. Default: the organisation of --token; with --issuer-dir or no
    /// credentials, DEMO-HOSP (registry commands: CW-GOV, the development registrar).
    #[arg(long, env = "CAREWOVEN_ORG", global = true, value_name = "ORG")]
    pub org: Option<String>,
    /// Bearer token to send with every call (from your identity provider). It names one
    /// organisation; demo and seed act as several and need --issuer-dir instead.
    #[arg(
        long,
        env = "CAREWOVEN_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "JWT"
    )]
    pub token: Option<String>,
    /// Development only: a token issuer's directory (from `carectl keys generate`). carectl
    /// mints a short-lived token for the organisation each call acts as (registry commands
    /// get the governance role). Services accept them only if they trust the issuer's
    /// trusted-keys.json (CAREWOVEN_TRUSTED_KEYS); never trust a development issuer in
    /// production. --token, if given, is used instead for single commands.
    #[arg(long, env = "CAREWOVEN_ISSUER_DIR", global = true, value_name = "DIR")]
    pub issuer_dir: Option<PathBuf>,
    /// Acting user code within the organisation (a code, never a name).
    #[arg(
        long,
        env = "CAREWOVEN_USER",
        default_value = "demo-user",
        global = true
    )]
    pub user: String,
    /// Idempotency key (UUID); default: a fresh UUIDv7, printed with the result.
    #[arg(long, global = true, value_name = "UUID")]
    pub command_id: Option<Uuid>,
    /// Groups the commands of one piece of work; default: the command id.
    #[arg(long, global = true, value_name = "UUID")]
    pub correlation_id: Option<Uuid>,
    /// The event or command that caused this one; default: the command id.
    #[arg(long, global = true, value_name = "UUID")]
    pub causation_id: Option<Uuid>,
    /// When it happened in the world, if earlier than now (RFC 3339).
    #[arg(long, global = true, value_name = "INSTANT", value_parser = parse::instant)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Machine-readable output: one JSON object on stdout (streams, `board --watch` and
    /// `feed`: one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// gRPC deadline per call in seconds (for wait-ready: the overall deadline).
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a person once (NHS number, name, date of birth, what matters, carers).
    RegisterPerson(RegisterPerson),
    /// Correct a person's details: only the fields given are replaced.
    CorrectPerson(CorrectPerson),
    /// Emergency ("break glass") access to a person's record, stating why, for 1-24 hours.
    BreakGlass(BreakGlass),
    /// Make a referral from an organisation to a service.
    MakeReferral(MakeReferral),
    /// Move a referral through its life cycle.
    Referral(ProgressReferral),
    /// Request an assessment by one or more organisations (joint assessment).
    RequestAssessment(RequestAssessment),
    /// Record one assessing organisation's contribution.
    ContributeAssessment(ContributeAssessment),
    /// Complete an assessment with findings (and, for Care Act needs, eligibility inputs).
    CompleteAssessment(CompleteAssessment),
    /// Cancel a requested assessment.
    CancelAssessment(CancelAssessment),
    /// Have another organisation assess in place of a named assessor that cannot take part.
    ReplaceAssessor(ReplaceAssessor),
    /// Agree the person's shared care plan.
    AgreeCarePlan(AgreeCarePlan),
    /// Revise the care plan from a known version (a stale version is refused: ABORTED).
    ReviseCarePlan(ReviseCarePlan),
    /// Add an organisation or practitioner to the care team.
    AddTeamMember(AddTeamMember),
    /// Remove a member from the care team.
    RemoveTeamMember(RemoveTeamMember),
    /// Name a current care-team member as the care coordinator.
    NameCoordinator(NameCoordinator),
    /// Record consent or an objection (deny) to sharing.
    RecordConsent(RecordConsent),
    /// Withdraw a consent.
    WithdrawConsent(WithdrawConsent),
    /// Admit a person, opening a discharge episode.
    Admit(Admit),
    /// Progress a discharge episode by one step.
    Discharge(Discharge),
    /// Record a multi-agency meeting with decisions and actions.
    RecordMeeting(RecordMeeting),
    /// Mark one meeting action complete.
    CompleteAction(CompleteAction),
    /// Record feedback from the person or a carer.
    Feedback(Feedback),
    /// Raise a risk flag (frailty with its score, falls risk, lives alone, ...).
    RaiseFlag(RaiseFlag),
    /// End a risk flag, with a reason.
    EndFlag(EndFlag),
    /// Create a task about a person for an owner organisation (optionally a practitioner),
    /// on its own or from a plan activity, a meeting action, a handover or a cohort.
    CreateTask(CreateTask),
    /// Change a task's status (its owner; the organisation that asked may cancel), with a
    /// reason for on-hold, cancelled and failed.
    TaskStatus(TaskStatusArgs),
    /// Give a task to another owner, with a reason.
    ReassignTask(ReassignTask),
    /// Name a carer with proxy access to the person's record (the person themself, with a
    /// citizen token, or the governance role). A new grant replaces the carer's scope.
    GrantProxy(GrantProxy),
    /// End a carer's proxy access.
    RevokeProxy(RevokeProxy),
    /// The registry (governance role): organisations, their services and data-sharing
    /// agreements.
    #[command(subcommand)]
    Org(Org),
    /// Wait until the server's gRPC health service reports SERVING.
    WaitReady,
    /// Development token issuer keys, and the services' NATS identities.
    #[command(subcommand)]
    Keys(Keys),
    /// Print a bearer token for --org, minted with --issuer-dir (development only); with
    /// --citizen, a citizen token for a person, minted with a citizens issuer.
    ///
    /// For other tools (grpcurl, scripts): `grpcurl -H "authorization: Bearer $(carectl
    /// token --org DEMO-HOSP)" ...`.
    Token(TokenArgs),
    /// Load a small synthetic demo through the real API (re-runnable: a second run on the
    /// same day returns duplicates). Needs --issuer-dir.
    ///
    /// First registers the demo organisations (DEMO-HOSP, DEMO-GP, DEMO-ASC, DEMO-COMM,
    /// DEMO-ASC-REABLE) with their services and data-sharing agreements, as the development
    /// registrar CW-GOV with the governance role (idempotent). Then registers a fictional
    /// person (Ada Example, test-range NHS number) and takes them through admission, care
    /// team, referral, joint Care Act assessment, care plan, discharge to assess on pathway
    /// 1, handover and consent. Each step acts as the organisation entitled to it (with a
    /// token minted for it), so --org, --user, --token, --command-id, --correlation-id,
    /// --causation-id and --occurred-at are ignored. Command ids, dates and instants derive
    /// from the demo day only (the discharge is recorded at 00:00 UTC of that day), so a
    /// re-run on the same day sends identical commands.
    Demo(Demo),
    /// Load a synthetic multi-organisation history through the real API (deterministic).
    ///
    /// Plans a plausible journey for each of --people fictional people (test-range NHS numbers)
    /// over the --days before the anchor day: registration, care team and coordinator,
    /// referrals (some rejected or cancelled), Care Act needs assessments, admissions and
    /// discharge to assess (pathway mix about 50/45/4/1, DRD-to-discharge delays with reasons,
    /// provider fall-through, deterioration, deaths, self-discharges, handover, home
    /// assessment, readmissions, long stays), consents and opt-out style objections, meetings
    /// and feedback. Each fact's real-world time goes in occurred_at and its own date fields,
    /// all before the anchor day; some facts are recorded late on purpose. The same --seed,
    /// --anchor-day and --days give the same commands and command ids, so a second run against
    /// the same server appends nothing (every command is a duplicate). It first registers its
    /// organisations, services and data-sharing agreements (idempotent, as the registrar
    /// CW-GOV), then each step acts as an organisation entitled to it, with a token minted
    /// from --issuer-dir (required), so --org, --user, --token, --command-id,
    /// --correlation-id, --causation-id and --occurred-at are ignored.
    Seed(Seed),
    #[command(flatten)]
    Read(Read),
}

/// The reads: views, the partner feed, the access list and the services' status.
#[derive(Debug, Subcommand)]
pub enum Read {
    /// A person's shared care record, section by section (--json: the whole record).
    ///
    /// Shown only to an organisation with a legitimate relationship and no objection from
    /// the person; otherwise PERMISSION_DENIED, the same as for a person who does not exist.
    /// With a citizen's --token and no id: the person's own record.
    Record(RecordArgs),
    /// The discharge board: everyone from "discharge ready" until their episode closes
    /// (through handover and the home assessment) whom the acting organisation may see,
    /// every page, sorted; --watch shows it live until Ctrl-C.
    Board(BoardArgs),
    /// Referrals to a service the acting organisation owns (by default those awaiting a
    /// decision), by priority (stat first) then age (oldest first).
    Inbox(InboxArgs),
    /// The people a care coordinator, or an organisation on their care teams, is responsible
    /// for (the acting organisation's own caseload only).
    Caseload(CaseloadArgs),
    /// One of the acting organisation's worklists, by due date: its open tasks, care-plan
    /// reviews due, people on its care teams with no coordinator, assessments awaiting its
    /// contribution.
    Worklist(WorklistArgs),
    /// The acting organisation's partner feed, in order, each item with its number and
    /// cursor. Without --follow it stops at the live end: when no item has arrived for
    /// --idle-ms (the gateway does not announce the end), or after --limit items. Resume
    /// with the last cursor (--cursor) or number (--after): no gap, no duplicate.
    Feed(FeedArgs),
    /// Who accessed a person's record, and when: reads, feed deliveries and refused
    /// attempts, oldest first (every page). With a citizen's --token and no id: their own.
    WhoAccessed(WhoAccessedArgs),
    /// A demographics trace: the person id for an NHS number and date of birth (both must
    /// match; a mismatch and an unknown number are the same NOT_FOUND). Finding a person
    /// gives no access to their record.
    FindPerson(FindPersonArgs),
    /// Health of the command service, the views and the gateway, and how far the views have
    /// applied the log (ViewsAdmin.Status: governance role; --issuer-dir mints it).
    Status,
}

#[derive(Debug, Args)]
pub struct PersonRef {
    /// The person's id (from register-person's reply).
    #[arg(long, visible_alias = "person", value_name = "UUID")]
    pub person_id: Uuid,
}

#[derive(Debug, Args)]
pub struct RegisterPerson {
    /// Ten digits with a modulus-11 check digit (test data: numbers starting 999 only).
    #[arg(long)]
    pub nhs_number: String,
    #[arg(long)]
    pub given_name: String,
    #[arg(long)]
    pub family_name: String,
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub date_of_birth: NaiveDate,
    #[arg(long)]
    pub contact: Option<String>,
    /// What matters to the person, in their words.
    #[arg(long)]
    pub what_matters: Option<String>,
    #[arg(long)]
    pub communication_needs: Option<String>,
    /// A carer as "NAME|RELATIONSHIP|CONTACT" (contact optional); repeat for more.
    #[arg(long = "carer", value_name = "NAME|RELATIONSHIP|CONTACT", value_parser = parse::carer)]
    pub carers: Vec<v1::Carer>,
    /// The GP practice the person is registered with (a registered general practice).
    #[arg(long, value_name = "ORG")]
    pub registered_gp: Option<String>,
}

#[derive(Debug, Args)]
pub struct BreakGlass {
    #[command(flatten)]
    pub person: PersonRef,
    /// Why access is needed now (audited and reviewed by governance).
    #[arg(long)]
    pub reason: String,
    /// How long, from 1 to 24 hours.
    #[arg(long, default_value_t = 4)]
    pub hours: u32,
}

#[derive(Debug, Args)]
pub struct CorrectPerson {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long)]
    pub nhs_number: Option<String>,
    #[arg(long)]
    pub given_name: Option<String>,
    #[arg(long)]
    pub family_name: Option<String>,
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub date_of_birth: Option<NaiveDate>,
    #[arg(long)]
    pub contact: Option<String>,
    #[arg(long)]
    pub what_matters: Option<String>,
    #[arg(long)]
    pub communication_needs: Option<String>,
    /// Replace the carers with these "NAME|RELATIONSHIP|CONTACT" items; repeat for more.
    #[arg(long = "carer", value_name = "NAME|RELATIONSHIP|CONTACT", value_parser = parse::carer,
          conflicts_with = "clear_carers")]
    pub carers: Vec<v1::Carer>,
    /// Replace the carers with an empty list.
    #[arg(long)]
    pub clear_carers: bool,
    /// A change of practice (registered GP or governance role only).
    #[arg(long, value_name = "ORG")]
    pub registered_gp: Option<String>,
    /// The record's version the correction is based on (the care record's person_version).
    #[arg(long, value_name = "N")]
    pub based_on_version: u64,
    /// Why the details are corrected.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct MakeReferral {
    #[command(flatten)]
    pub person: PersonRef,
    /// Referring organisation; default: the acting organisation (--org).
    #[arg(long = "from", value_name = "ORG")]
    pub from_organisation: Option<String>,
    /// The service referred to (single point of access code).
    #[arg(long, value_name = "SERVICE")]
    pub to_service: String,
    #[arg(long, value_enum)]
    pub priority: Priority,
    #[arg(long)]
    pub reason: String,
    /// The (rejected) referral this one replaces.
    #[arg(long, value_name = "REFERRAL_ID")]
    pub replaces: Option<Uuid>,
}

#[derive(Debug, Args)]
pub struct ProgressReferral {
    /// What to do with the referral.
    #[arg(value_enum)]
    pub action: ReferralAction,
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_name = "UUID")]
    pub referral_id: Uuid,
    /// Required for reject, hold, fail, cancel and entered-in-error.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RequestAssessment {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_enum)]
    pub kind: AssessmentKind,
    /// An assessing organisation; repeat for a joint assessment.
    #[arg(long = "assessor", value_name = "ORG", required = true)]
    pub assessors: Vec<String>,
    /// The referral that prompted it.
    #[arg(long, value_name = "UUID")]
    pub referral_id: Option<Uuid>,
    /// When the assessment is due.
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub due_by: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct AssessmentRef {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_name = "UUID")]
    pub assessment_id: Uuid,
}

#[derive(Debug, Args)]
pub struct ContributeAssessment {
    #[command(flatten)]
    pub assessment: AssessmentRef,
    /// The contributing organisation; default: the acting organisation (--org).
    #[arg(long, value_name = "ORG")]
    pub organisation: Option<String>,
    #[arg(long)]
    pub summary: String,
}

#[derive(Debug, Args)]
pub struct CompleteAssessment {
    #[command(flatten)]
    pub assessment: AssessmentRef,
    #[arg(long)]
    pub summary: String,
    /// A Care Act outcome the person cannot achieve; repeat for more.
    #[arg(long = "outcome", value_enum)]
    pub outcomes: Vec<Outcome>,
    /// The impact on wellbeing (required for Care Act assessments).
    #[arg(long)]
    pub wellbeing_impact: Option<String>,
    /// The needs arise from a physical or mental impairment or illness.
    #[arg(long = "impairment")]
    pub needs_arise_from_impairment_or_illness: bool,
    /// Not achieving the outcomes significantly affects wellbeing.
    #[arg(long = "significant-impact")]
    pub significant_impact_on_wellbeing: bool,
}

#[derive(Debug, Args)]
pub struct CancelAssessment {
    #[command(flatten)]
    pub assessment: AssessmentRef,
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ReplaceAssessor {
    #[command(flatten)]
    pub assessment: AssessmentRef,
    /// The assessing organisation to replace.
    #[arg(long)]
    pub replaced: String,
    /// The organisation that assesses instead.
    #[arg(long)]
    pub by: String,
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct Plan {
    /// A goal in the person's own words; repeat for more.
    #[arg(long = "goal", required = true)]
    pub goals: Vec<String>,
    /// An activity as "DESCRIPTION|RESPONSIBLE_ORG"; repeat for more.
    #[arg(long = "activity", value_name = "DESCRIPTION|ORG", value_parser = parse::activity)]
    pub activities: Vec<v1::Activity>,
    /// When the plan is next reviewed (not in the past).
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub review_date: NaiveDate,
}

#[derive(Debug, Args)]
pub struct AgreeCarePlan {
    #[command(flatten)]
    pub person: PersonRef,
    #[command(flatten)]
    pub plan: Plan,
}

#[derive(Debug, Args)]
pub struct ReviseCarePlan {
    #[command(flatten)]
    pub person: PersonRef,
    /// The plan version this revision was made from.
    #[arg(long, value_name = "VERSION")]
    pub based_on_version: u32,
    /// Goals and review date as revised; each --activity is added to the plan (a revision
    /// never replaces the activities: it adds, changes or ends them by name).
    #[command(flatten)]
    pub plan: Plan,
    /// End an activity: "INDEX|completed|REASON" (or cancelled, stopped; INDEX from 0).
    #[arg(long = "end-activity", value_name = "INDEX|STATUS|REASON", value_parser = parse::activity_end)]
    pub end_activities: Vec<v1::ActivityEnd>,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct Member {
    /// The member organisation.
    #[arg(long = "member", value_name = "ORG")]
    pub organisation: String,
    /// Optional practitioner code within the organisation.
    #[arg(long, value_name = "CODE")]
    pub practitioner: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddTeamMember {
    #[command(flatten)]
    pub person: PersonRef,
    #[command(flatten)]
    pub member: Member,
    #[arg(long, value_enum)]
    pub role: Role,
    /// Member since (not in the future).
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub since: NaiveDate,
}

#[derive(Debug, Args)]
pub struct RemoveTeamMember {
    #[command(flatten)]
    pub person: PersonRef,
    #[command(flatten)]
    pub member: Member,
    /// Member until (not in the future).
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub until: NaiveDate,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct NameCoordinator {
    #[command(flatten)]
    pub person: PersonRef,
    #[command(flatten)]
    pub member: Member,
}

#[derive(Debug, Args)]
pub struct RecordConsent {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_enum)]
    pub decision: Decision,
    #[arg(long, value_enum)]
    pub purpose: Purpose,
    /// A partner organisation covered; repeat for more.
    #[arg(long = "partner", value_name = "ORG", required = true)]
    pub partners: Vec<String>,
    /// A data class covered; repeat for more (none: every data class).
    #[arg(long = "data-class", value_enum)]
    pub data_classes: Vec<DataClass>,
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub valid_from: NaiveDate,
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub valid_until: Option<NaiveDate>,
    /// Mental capacity to make this decision was assessed.
    #[arg(long)]
    pub capacity_assessed: bool,
}

#[derive(Debug, Args)]
pub struct WithdrawConsent {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_name = "UUID")]
    pub consent_id: Uuid,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct Admit {
    #[command(flatten)]
    pub person: PersonRef,
    /// The admitting site; default: the acting organisation (--org).
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    #[arg(long)]
    pub ward: Option<String>,
    /// When the person was admitted (RFC 3339 or `now`; not in the future).
    #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
    pub admitted_at: DateTime<Utc>,
}

#[derive(Debug, Args)]
pub struct Discharge {
    #[command(subcommand)]
    pub step: DischargeStep,
}

#[derive(Debug, Args)]
pub struct EpisodeRef {
    #[command(flatten)]
    pub person: PersonRef,
    /// The discharge episode (from admit's reply).
    #[arg(long, visible_alias = "episode", value_name = "UUID")]
    pub episode_id: Uuid,
}

#[derive(Debug, Subcommand)]
pub enum DischargeStep {
    /// Set the expected discharge date (admitted -> planning).
    ExpectedDate {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_parser = parse::date, value_name = "DATE")]
        expected: NaiveDate,
    },
    /// Record the Discharge Ready Date: the day the person no longer meets the criteria to
    /// reside.
    Ready {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long = "drd", visible_alias = "discharge-ready-date",
              value_parser = parse::date, value_name = "DATE")]
        discharge_ready_date: NaiveDate,
    },
    /// Assign the discharge-to-assess pathway (0-3).
    Pathway {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_enum)]
        pathway: Pathway,
    },
    /// Request the service the person needs to leave hospital.
    RequestService {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_name = "SERVICE")]
        service: String,
    },
    /// Agree the discharge with a service for a planned date.
    Agree {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_name = "SERVICE")]
        service: String,
        /// The planned discharge date (not in the past).
        #[arg(long, value_parser = parse::date, value_name = "DATE")]
        planned_for: NaiveDate,
    },
    /// The agreed provider fell through (back to awaiting service).
    FallThrough {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long)]
        reason: String,
    },
    /// The person deteriorated (back to planning; a later DRD supersedes the old one).
    Deteriorated {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long)]
        reason: String,
    },
    /// Record why a ready person is not yet discharged.
    Delay {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_enum)]
        reason: DelayReason,
        #[arg(long)]
        note: Option<String>,
    },
    /// The person left hospital.
    Discharged {
        #[command(flatten)]
        episode: EpisodeRef,
        /// When the person left (RFC 3339 or `now`).
        #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
        discharged_at: DateTime<Utc>,
        /// Where to, e.g. "Home".
        #[arg(long)]
        destination: String,
        /// The UK Core DischargeDestinationEngland code: 19 usual place of residence, 29
        /// temporary residence, 51 another NHS hospital, 54 NHS care home, 65 local authority
        /// residential care, 85 independent care home, 88 hospice, 99 not known (docs/codes/).
        #[arg(long, value_name = "CODE")]
        destination_code: Option<String>,
    },
    /// The receiving organisation accepted the handover.
    Handover {
        #[command(flatten)]
        episode: EpisodeRef,
        /// Accepting organisation; default: the acting organisation (--org).
        #[arg(long, value_name = "ORG")]
        organisation: Option<String>,
    },
    /// The assessment at home was completed.
    HomeAssessment {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_parser = parse::date, value_name = "DATE")]
        completed_on: NaiveDate,
        #[arg(long)]
        outcome: String,
    },
    /// Close the episode.
    Close {
        #[command(flatten)]
        episode: EpisodeRef,
    },
    /// The person died (terminal).
    Died {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
        died_at: DateTime<Utc>,
    },
    /// The person discharged themselves (terminal).
    SelfDischarged {
        #[command(flatten)]
        episode: EpisodeRef,
        #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
        left_at: DateTime<Utc>,
    },
}

#[derive(Debug, Args)]
pub struct RecordMeeting {
    #[command(flatten)]
    pub person: PersonRef,
    /// When the meeting was held (RFC 3339 or `now`).
    #[arg(long, value_parser = parse::instant, value_name = "INSTANT")]
    pub held_at: DateTime<Utc>,
    /// An attending organisation; repeat for more.
    #[arg(long = "attendee", value_name = "ORG")]
    pub attendees: Vec<String>,
    /// A decision taken; repeat for more.
    #[arg(long = "decision")]
    pub decisions: Vec<String>,
    /// An action as "DESCRIPTION|OWNER_ORG|DUE_DATE"; repeat for more (numbered from 1).
    #[arg(long = "action", value_name = "DESCRIPTION|OWNER|DUE", value_parser = parse::meeting_action)]
    pub actions: Vec<v1::MeetingAction>,
}

#[derive(Debug, Args)]
pub struct CompleteAction {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_name = "UUID")]
    pub meeting_id: Uuid,
    /// The 1-based number of the action in the meeting record.
    #[arg(long, value_name = "N")]
    pub action: u32,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct RaiseFlag {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_enum)]
    pub flag: crate::enums::RiskFlag,
    /// Clinical Frailty Scale score, 1 to 9 (frailty only).
    #[arg(long)]
    pub frailty_score: Option<u32>,
    /// YYYY-MM-DD (default: today).
    #[arg(long)]
    pub start: Option<NaiveDate>,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateTask {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long)]
    pub description: String,
    /// Who is to do it: ORG or ORG/PRACTITIONER (with a legitimate relationship).
    #[arg(long, value_name = "ORG[/PRACTITIONER]", value_parser = parse::member_ref)]
    pub owner: v1::MemberRef,
    /// YYYY-MM-DD, today or later.
    #[arg(long)]
    pub due: NaiveDate,
    #[arg(long, value_enum, default_value = "routine")]
    pub priority: crate::enums::Priority,
    /// From the care plan's activity: VERSION:INDEX (index from 0).
    #[arg(long, value_name = "VERSION:INDEX", group = "basis")]
    pub plan_activity: Option<String>,
    /// From a meeting's action: MEETING-UUID:N (N from 1).
    #[arg(long, value_name = "UUID:N", group = "basis")]
    pub meeting_action: Option<String>,
    /// From a discharge episode's handover.
    #[arg(long, value_name = "UUID", group = "basis")]
    pub handover_episode: Option<Uuid>,
    /// From a cohort's outreach.
    #[arg(long, value_name = "UUID", group = "basis")]
    pub cohort: Option<Uuid>,
}

#[derive(Debug, Args)]
pub struct TaskStatusArgs {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_name = "UUID")]
    pub task_id: Uuid,
    #[arg(long, value_enum)]
    pub status: crate::enums::TaskStatus,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReassignTask {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_name = "UUID")]
    pub task_id: Uuid,
    #[arg(long, value_name = "ORG[/PRACTITIONER]", value_parser = parse::member_ref)]
    pub owner: v1::MemberRef,
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct EndFlag {
    #[command(flatten)]
    pub person: PersonRef,
    /// The flag's id (from raise-flag's reply).
    #[arg(long, value_name = "UUID")]
    pub flag_id: Uuid,
    /// YYYY-MM-DD (default: today).
    #[arg(long)]
    pub end: Option<NaiveDate>,
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct Feedback {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long, value_enum)]
    pub source: FeedbackSource,
    #[arg(long)]
    pub anonymous: bool,
    #[arg(long)]
    pub text: String,
    /// 1 (poor) to 5 (excellent); omit for no rating.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub rating: Option<u32>,
}

#[derive(Debug, Args)]
pub struct GrantProxy {
    #[command(flatten)]
    pub person: PersonRef,
    /// The carer's own NHS number (they act with their own citizen identity).
    #[arg(long)]
    pub carer_nhs_number: String,
    #[arg(long)]
    pub carer_name: String,
    /// What the carer may do; repeat for more.
    #[arg(long = "scope", value_enum, required = true)]
    pub scope: Vec<ProxyScope>,
}

#[derive(Debug, Args)]
pub struct RevokeProxy {
    #[command(flatten)]
    pub person: PersonRef,
    #[arg(long)]
    pub carer_nhs_number: String,
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum Org {
    /// Register an organisation with the services (and sites) it owns.
    Register(OrgRegister),
    /// Add a service (or site) to a registered organisation.
    AddService(OrgService),
    /// Data-sharing agreements.
    #[command(subcommand)]
    Agreement(OrgAgreement),
}

#[derive(Debug, Args)]
pub struct OrgCode {
    /// The organisation's code (for example an ODS code).
    #[arg(long, value_name = "ORG")]
    pub code: String,
}

#[derive(Debug, Args)]
pub struct OrgRegister {
    #[command(flatten)]
    pub org: OrgCode,
    #[arg(long)]
    pub name: String,
    #[arg(long = "type", value_enum, default_value = "other")]
    pub org_type: OrgType,
    /// A service or site it owns (referrals are sent to services; episodes are managed at
    /// sites); repeat for more.
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct OrgService {
    #[command(flatten)]
    pub org: OrgCode,
    #[arg(long, value_name = "SERVICE")]
    pub service: String,
}

#[derive(Debug, Subcommand)]
pub enum OrgAgreement {
    /// Record a data-sharing agreement: what the organisation may receive and for how long.
    Record(AgreementRecord),
    /// End an agreement before its expiry.
    End(AgreementEnd),
}

#[derive(Debug, Args)]
pub struct AgreementRecord {
    #[command(flatten)]
    pub org: OrgCode,
    /// The agreement's reference, unique within the organisation.
    #[arg(long)]
    pub reference: String,
    /// A purpose covered; repeat for more.
    #[arg(long = "purpose", value_enum, required = true)]
    pub purposes: Vec<Purpose>,
    /// A data class covered; repeat for more.
    #[arg(
        long = "data-class",
        value_enum,
        required_unless_present = "all_data_classes"
    )]
    pub data_classes: Vec<DataClass>,
    /// Cover every data class.
    #[arg(long, conflicts_with = "data_classes")]
    pub all_data_classes: bool,
    /// First day in force.
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub valid_from: NaiveDate,
    /// The first day it is no longer in force.
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub expires_on: NaiveDate,
}

#[derive(Debug, Args)]
pub struct AgreementEnd {
    #[command(flatten)]
    pub org: OrgCode,
    #[arg(long)]
    pub reference: String,
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Generate a development token issuer (Ed25519) into a directory: issuer.key.pem (keep
    /// secret, owner-only) and trusted-keys.json (give it to services as
    /// CAREWOVEN_TRUSTED_KEYS). Refuses to overwrite an existing key.
    Generate {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The key id tokens name in their header (default: carewoven-dev, or
        /// carewoven-dev-citizens with --citizens).
        #[arg(long)]
        kid: Option<String>,
        /// The issuer tokens name (`iss`) (default: carewoven-dev-issuer, or
        /// carewoven-dev-citizen-issuer with --citizens).
        #[arg(long)]
        issuer: Option<String>,
        /// An issuer for citizens (people acting for themselves or as a proxy): its
        /// trust-file entry says `"subjects": "citizens"`, and it mints only citizen tokens.
        #[arg(long)]
        citizens: bool,
    },
    /// Add the keys of other trust files to one (created if missing), so services trust
    /// several issuers: an entry with the same key id is replaced if it is the same key and
    /// refused if it is another. Safe to repeat.
    Trust {
        /// The trust file to update.
        #[arg(long, value_name = "FILE")]
        into: PathBuf,
        /// Trust files whose keys to add.
        #[arg(value_name = "FILE", required = true)]
        from: Vec<PathBuf>,
    },
    /// Make one NATS nkey pair per identity of deploy/accounts.conf (commands, views,
    /// analyst, gateway, ops, backup) into a directory: <name>.nk, the seed (owner-only; give it to
    /// that service as CAREWOVEN_NATS_NKEY_SEED), <name>.pub, and public-keys.env with the
    /// public keys the server configurations read (CAREWOVEN_NATS_<NAME>_NKEY). Existing
    /// seeds are kept, so only missing identities are made; remove one's .nk to rotate it.
    Nats {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A role besides acting for the organisation; repeat for more.
    #[arg(long = "role", value_enum)]
    pub roles: Vec<AccessRole>,
    /// How long the token is valid; at most 12 hours, the longest the services accept by
    /// default (`CAREWOVEN_MAX_TOKEN_LIFETIME_SECS`).
    #[arg(long, default_value_t = 3600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=43_200))]
    pub ttl_secs: u64,
    /// A citizen token (a person acting for themselves or as a proxy) instead of an
    /// organisation's: --issuer-dir must be a citizens issuer (keys generate --citizens).
    #[arg(long, requires = "nhs_number", conflicts_with = "roles")]
    pub citizen: bool,
    /// The person's NHS number (test data: the 999 range only).
    #[arg(long, requires = "citizen")]
    pub nhs_number: Option<String>,
    /// How well the person's identity was proven.
    #[arg(long, value_enum, default_value = "P9", requires = "citizen")]
    pub identity_level: IdentityLevel,
    /// The identity provider's subject id for the person (default: a fresh one; give the
    /// same one to act under the same pseudonym).
    #[arg(long, requires = "citizen")]
    pub subject: Option<String>,
}

#[derive(Debug, Args)]
pub struct Demo {
    /// The demo's day (default: today, UTC): all its dates and ids derive from it. A past day
    /// only replays a demo already loaded on that day (planned dates cannot be in the past).
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub day: Option<NaiveDate>,
    /// Register this NHS number instead of one derived from the day (test range 999 only).
    #[arg(long)]
    pub nhs_number: Option<String>,
}

#[derive(Debug, Args)]
pub struct Seed {
    /// How many people (person i is the same in every run with the same seed and anchor).
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::seed::MAX_PEOPLE)))]
    pub people: u32,
    /// The seed of the history.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many days of history, ending the day before the anchor day.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(14..=3650))]
    pub days: u32,
    /// How many people's command sequences are sent at once (each person's in order).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// The anchor day (default: today, UTC): the history ends at its 00:00 UTC. The same seed
    /// and anchor day give the same history. Care plans are reviewed 90-180 days after it and
    /// tasks are due 7-42 days after it, so a fresh load needs an anchor day within the last 7
    /// days; a re-run any day later only repeats (duplicates).
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub anchor_day: Option<NaiveDate>,
}

/// Read-your-writes for the views' reads.
#[derive(Debug, Args)]
pub struct MinPosition {
    /// Wait (up to --timeout-secs) until the views have applied the log this far: a command
    /// reply's log position.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_log_position: u64,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The person's id (omit with a citizen's token to read your own record).
    #[arg(value_name = "PERSON_ID")]
    pub person_id: Option<Uuid>,
    #[command(flatten)]
    pub at: MinPosition,
}

/// How `board` sorts its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BoardSort {
    /// Longest delayed first.
    Days,
    /// Earliest Discharge Ready Date first.
    Drd,
    /// By site and ward, then longest delayed first.
    Site,
}

#[derive(Debug, Args)]
pub struct BoardArgs {
    /// Only this site.
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// Only this pathway.
    #[arg(long, value_enum)]
    pub pathway: Option<Pathway>,
    /// Only this status (discharge_ready, pathway_assigned, awaiting_service,
    /// discharge_agreed, discharged, handover_accepted, home_assessment_completed).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only entries with this delay reason recorded.
    #[arg(long, value_enum)]
    pub delay_reason: Option<DelayReason>,
    #[arg(long, value_enum, default_value = "days")]
    pub sort: BoardSort,
    /// Stay connected and show each change as it happens (until Ctrl-C): the table is
    /// redrawn on a terminal; otherwise (and with --json) one line per change.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub at: MinPosition,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// The service whose inbox to read (owned by the acting organisation).
    #[arg(long, value_name = "SERVICE")]
    pub service: String,
    /// Which referrals: by default those awaiting a decision (submitted or received);
    /// `open` (not yet ended), `all`, or one status (submitted, received, accepted,
    /// in_progress, on_hold, completed, rejected, failed, cancelled, entered_in_error).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    #[command(flatten)]
    pub at: MinPosition,
}

#[derive(Debug, Args)]
pub struct WorklistArgs {
    #[arg(value_enum)]
    pub kind: crate::enums::Worklist,
    /// Only items due from / to these days (inclusive).
    #[arg(long)]
    pub due_from: Option<NaiveDate>,
    #[arg(long)]
    pub due_to: Option<NaiveDate>,
    /// Only items past their due date.
    #[arg(long)]
    pub overdue: bool,
    /// Tasks only: one practitioner's.
    #[arg(long)]
    pub practitioner: Option<String>,
    #[command(flatten)]
    pub at: MinPosition,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CaseloadOwner {
    /// A named care coordinator: ORG or ORG/PRACTITIONER.
    #[arg(long, value_name = "ORG[/PRACTITIONER]", value_parser = parse::member_ref)]
    pub coordinator: Option<v1::MemberRef>,
    /// An organisation on people's care teams.
    #[arg(long, value_name = "ORG")]
    pub organisation: Option<String>,
}

#[derive(Debug, Args)]
pub struct CaseloadArgs {
    #[command(flatten)]
    pub owner: CaseloadOwner,
    #[command(flatten)]
    pub at: MinPosition,
}

#[derive(Debug, Args)]
pub struct FeedArgs {
    /// Resume after the item with this cursor (from a previous run's output).
    #[arg(long, value_name = "CURSOR", conflicts_with = "after")]
    pub cursor: Option<String>,
    /// Resume after the item with this number (0: from the first item).
    #[arg(long, value_name = "N")]
    pub after: Option<u64>,
    /// Keep going: print new items as they are delivered, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Without --follow: the live end is reached when no item has arrived for this long.
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub idle_ms: u64,
    /// Stop after this many items.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct WhoAccessedArgs {
    /// The person's id (omit with a citizen's token for your own record).
    #[arg(value_name = "PERSON_ID")]
    pub person_id: Option<Uuid>,
}

#[derive(Debug, Args)]
pub struct FindPersonArgs {
    /// Ten digits with a modulus-11 check digit.
    #[arg(long)]
    pub nhs_number: String,
    #[arg(long, value_parser = parse::date, value_name = "DATE")]
    pub date_of_birth: NaiveDate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"))
    }

    const P: &str = "0190f3a4-1b2c-7d3e-8f40-123456789abc";

    #[test]
    fn repeated_and_composite_options() {
        let cli = parse(&[
            "carectl",
            "agree-care-plan",
            "--person-id",
            P,
            "--goal",
            "Get back to my allotment",
            "--goal",
            "Cook my own tea",
            "--activity",
            "Daily reablement visits|COUNCIL-REABLE",
            "--review-date",
            "2026-12-01",
            "--json",
        ]);
        assert!(cli.global.json);
        let Command::AgreeCarePlan(a) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(a.plan.goals.len(), 2);
        assert_eq!(
            a.plan.activities[0].responsible_organisation,
            "COUNCIL-REABLE"
        );
    }

    #[test]
    fn discharge_steps_and_globals_after_subcommand() {
        let cli = parse(&[
            "carectl",
            "discharge",
            "pathway",
            "--person-id",
            P,
            "--episode-id",
            P,
            "--pathway",
            "1",
            "--org",
            "DEMO-HOSP",
            "--timeout-secs",
            "3",
        ]);
        assert_eq!(cli.global.timeout_secs, 3);
        let Command::Discharge(Discharge {
            step: DischargeStep::Pathway { pathway, .. },
        }) = cli.command
        else {
            panic!("wrong command")
        };
        assert_eq!(pathway, Pathway::P1);
        assert!(Cli::try_parse_from(["carectl", "referral", "approve", "--person-id", P]).is_err());
        let cli = parse(&[
            "carectl",
            "referral",
            "entered-in-error",
            "--person-id",
            P,
            "--referral-id",
            P,
            "--reason",
            "wrong person",
        ]);
        assert!(matches!(
            cli.command,
            Command::Referral(ProgressReferral {
                action: ReferralAction::EnteredInError,
                ..
            })
        ));
    }
}
