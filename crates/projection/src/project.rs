//! The projection: folds one recorded event into every view, inside the caller's write
//! transaction.
//!
//! Every view is a pure function of the events applied so far, in log order. Nothing here
//! reads the clock, draws random numbers or iterates a hash map, so applying the same events
//! (in one transaction or many, after a crash or from scratch) gives byte-identical tables.
//! Lists inside a stored record are kept in the order their first event arrived.
//!
//! Lenient by design: an event whose aggregate the views have not seen (for example because
//! its first event was skipped as undecodable) still lands, on a view created from nothing,
//! rather than stopping the projection.

use carewoven_domain::assessment::AssessmentEvent;
use carewoven_domain::care_plan::CarePlanEvent;
use carewoven_domain::care_team::{CareTeamEvent, CareTeamRole};
use carewoven_domain::consent::ConsentEvent;
use carewoven_domain::discharge::{DelayReason, DischargeEvent, DischargeStatus, Pathway};
use carewoven_domain::feedback::FeedbackEvent;
use carewoven_domain::flag::FlagEvent;
use carewoven_domain::meeting::MeetingEvent;
use carewoven_domain::person::PersonEvent;
use carewoven_domain::referral::{ReferralEvent, ReferralStatus};
use carewoven_domain::task::{TaskEvent, TaskStatus};
use carewoven_domain::values::uk_date;
use carewoven_domain::{Event, EventMeta, RecordedEvent};
use carewoven_proto::convert::timestamp;
use carewoven_proto::v1;
use chrono::NaiveDate;
use prost::Message;
use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use crate::tables::{self, BOARD, CASELOAD, INBOX, INBOX_CLOSED, RECORDS, WORKLIST};

/// A change to the discharge board caused by one event, for the live watch stream.
// Not boxed: the service hands the entry straight to the watch stream, and the enum is the
// agreed interface.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BoardChange {
    /// The episode joined the board, or its entry changed. The entry is as stored:
    /// `days_delayed` and `hours_since_discharge` are left for the reader to compute.
    Upsert(v1::BoardEntry),
    /// The episode (by id) left the board.
    Removed(Uuid),
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// redb refused to open, read or write a table.
    #[error("view storage failed: {0}")]
    Storage(String),
    /// A stored value does not decode as the message its table holds.
    #[error("stored value in table {table} does not decode: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl From<redb::TableError> for ProjectError {
    fn from(e: redb::TableError) -> Self {
        ProjectError::Storage(e.to_string())
    }
}

impl From<redb::StorageError> for ProjectError {
    fn from(e: redb::StorageError) -> Self {
        ProjectError::Storage(e.to_string())
    }
}

/// Table names for [`ProjectError::Corrupt`] (the same strings as in [`crate::tables`]).
const RECORDS_NAME: &str = "care_records";

/// Episodes in these states are on the board: from "discharge ready" until the episode
/// closes, through the handover and the home assessment (the "assess" half of discharge to
/// assess).
pub const ON_BOARD: [DischargeStatus; 7] = [
    DischargeStatus::DischargeReady,
    DischargeStatus::PathwayAssigned,
    DischargeStatus::AwaitingService,
    DischargeStatus::DischargeAgreed,
    DischargeStatus::Discharged,
    DischargeStatus::HandoverAccepted,
    DischargeStatus::HomeAssessmentCompleted,
];

/// Apply one event to every view, inside the caller's write transaction. Returns the board
/// changes it caused (for the live watch stream), in the order they happened.
pub fn apply(
    txn: &WriteTransaction,
    event: &RecordedEvent,
) -> Result<Vec<BoardChange>, ProjectError> {
    let meta = &event.meta;
    if meta.aggregate_kind == carewoven_domain::AggregateKind::Organisation {
        // Registry facts are about no person: no view shows them.
        return Ok(Vec::new());
    }
    let mut record = load_record(txn, meta.person_id)?;
    record.person_id = meta.person_id.to_string();
    // Worklists follow from the record: what it put on them before and after the event.
    let listed_before = affects_worklists(&event.event).then(|| crate::worklist::items(&record));
    let mut changes = Vec::new();
    match &event.event {
        Event::Person(e) => person(&mut record, meta, e),
        Event::Referral(e) => {
            let status = referral(&mut record, meta, e);
            sync_inbox(txn, meta, &record, status)?;
        }
        Event::Assessment(e) => assessment(&mut record, meta, e),
        Event::CarePlan(e) => care_plan(&mut record, meta, e),
        Event::CareTeam(e) => {
            let previous_coordinator = record
                .care_team
                .as_ref()
                .and_then(|t| t.coordinator.clone());
            care_team(&mut record, e);
            sync_caseload(txn, meta.person_id, previous_coordinator, &record, e)?;
        }
        Event::Consent(e) => consent(&mut record, meta, e),
        Event::Organisation(_) => {}
        Event::Discharge(e) => {
            discharge(&mut record, meta, e);
            if let Some(change) = sync_board(txn, meta, &record)? {
                changes.push(change);
            }
        }
        Event::Meeting(e) => meeting(&mut record, meta, e),
        Event::Feedback(e) => feedback(&mut record, meta, e),
        Event::Flag(e) => flag(&mut record, meta, e),
        Event::Task(e) => task(&mut record, meta, e),
    }
    if let Some(before) = listed_before {
        sync_worklists(txn, before, crate::worklist::items(&record))?;
    }
    save_record(txn, meta.person_id, &record)?;
    Ok(changes)
}

// ---------------------------------------------------------------------------------------------
// Storage

fn load_record(txn: &WriteTransaction, person: Uuid) -> Result<v1::CareRecord, ProjectError> {
    let table = txn.open_table(RECORDS)?;
    let Some(stored) = table.get(person.as_u128())? else {
        return Ok(v1::CareRecord::default());
    };
    v1::CareRecord::decode(stored.value()).map_err(|e| ProjectError::Corrupt {
        table: RECORDS_NAME,
        reason: format!("person {person}: {e}"),
    })
}

fn save_record(
    txn: &WriteTransaction,
    person: Uuid,
    record: &v1::CareRecord,
) -> Result<(), ProjectError> {
    let mut table = txn.open_table(RECORDS)?;
    table.insert(person.as_u128(), record.encode_to_vec().as_slice())?;
    Ok(())
}

/// The item matching `is`, appended from `new` when there is none.
fn entry<T>(items: &mut Vec<T>, is: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> &mut T {
    let index = match items.iter().position(is) {
        Some(i) => i,
        None => {
            items.push(new());
            items.len() - 1
        }
    };
    &mut items[index]
}

// ---------------------------------------------------------------------------------------------
// Wire helpers (the proto crate's enum mapping is private to it)

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn pathway(p: Pathway) -> i32 {
    match p {
        Pathway::P0 => v1::Pathway::Pathway0,
        Pathway::P1 => v1::Pathway::Pathway1,
        Pathway::P2 => v1::Pathway::Pathway2,
        Pathway::P3 => v1::Pathway::Pathway3,
    }
    .into()
}

fn delay_reason(r: DelayReason) -> i32 {
    // The same wire value the event carries (national values; see carewoven-proto).
    carewoven_proto::convert::delay_reason_wire(r).into()
}

fn care_team_role(r: CareTeamRole) -> i32 {
    use v1::CareTeamRole as W;
    match r {
        CareTeamRole::GeneralPractice => W::GeneralPractice,
        CareTeamRole::HospitalTeam => W::HospitalTeam,
        CareTeamRole::CommunityNursing => W::CommunityNursing,
        CareTeamRole::SocialWorker => W::SocialWorker,
        CareTeamRole::Therapist => W::Therapist,
        CareTeamRole::MentalHealth => W::MentalHealth,
        CareTeamRole::Voluntary => W::Voluntary,
        CareTeamRole::Carer => W::Carer,
        CareTeamRole::Other => W::Other,
        CareTeamRole::Psychologist => W::Psychologist,
        CareTeamRole::Psychiatrist => W::Psychiatrist,
        CareTeamRole::Pharmacist => W::Pharmacist,
        CareTeamRole::HousingOfficer => W::HousingOfficer,
        CareTeamRole::OccupationalTherapist => W::OccupationalTherapist,
        CareTeamRole::Physiotherapist => W::Physiotherapist,
        CareTeamRole::Nurse => W::Nurse,
        CareTeamRole::SupportWorker => W::SupportWorker,
        CareTeamRole::Doctor => W::Doctor,
        CareTeamRole::SpeechAndLanguageTherapist => W::SpeechAndLanguageTherapist,
        CareTeamRole::Dietitian => W::Dietitian,
        CareTeamRole::SocialPrescribingLinkWorker => W::SocialPrescribingLinkWorker,
        CareTeamRole::Advocate => W::Advocate,
        CareTeamRole::CarePractitioner => W::CarePractitioner,
    }
    .into()
}

// ---------------------------------------------------------------------------------------------
// Person

/// Who corrected which fields, when and why, and the values those fields had before
/// (`before`: the profile as it was).
fn correction_view(
    meta: &EventMeta,
    c: &v1::Correction,
    reason: &str,
    before: &v1::Profile,
) -> v1::CorrectionView {
    let named = [
        ("nhs_number", c.nhs_number.is_some()),
        ("given_name", c.given_name.is_some()),
        ("family_name", c.family_name.is_some()),
        ("date_of_birth", c.date_of_birth.is_some()),
        ("contact", c.contact.is_some()),
        ("what_matters", c.what_matters.is_some()),
        ("communication_needs", c.communication_needs.is_some()),
        ("carers", c.carers.is_some()),
        ("registered_gp", c.registered_gp.is_some()),
    ];
    v1::CorrectionView {
        organisation: meta.organisation.as_str().to_owned(),
        user: meta.user.as_str().to_owned(),
        recorded_at: Some(timestamp(meta.recorded_at)),
        occurred_at: Some(timestamp(meta.occurred_at)),
        fields: named
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| (*name).to_owned())
            .collect(),
        person_version: meta.version,
        event_id: meta.event_id.to_string(),
        reason: reason.to_owned(),
        previous: Some(previous_values(c, before)),
    }
}

/// The fields `c` corrects, as they were in `before`; every other field empty.
fn previous_values(c: &v1::Correction, before: &v1::Profile) -> v1::Profile {
    let pick = |set: bool, value: &String| if set { value.clone() } else { String::new() };
    v1::Profile {
        nhs_number: pick(c.nhs_number.is_some(), &before.nhs_number),
        given_name: pick(c.given_name.is_some(), &before.given_name),
        family_name: pick(c.family_name.is_some(), &before.family_name),
        date_of_birth: pick(c.date_of_birth.is_some(), &before.date_of_birth),
        contact: pick(c.contact.is_some(), &before.contact),
        what_matters: pick(c.what_matters.is_some(), &before.what_matters),
        communication_needs: pick(c.communication_needs.is_some(), &before.communication_needs),
        carers: if c.carers.is_some() {
            before.carers.clone()
        } else {
            Vec::new()
        },
        registered_gp: pick(c.registered_gp.is_some(), &before.registered_gp),
    }
}

fn person(record: &mut v1::CareRecord, meta: &EventMeta, e: &PersonEvent) {
    record.person_version = meta.version;
    match e {
        PersonEvent::Registered { profile } => record.profile = Some(profile.into()),
        PersonEvent::EmergencyAccessAsserted {
            organisation,
            reason,
            expires_at,
        } => record.emergency_accesses.push(v1::EmergencyAccessView {
            organisation: organisation.as_str().to_owned(),
            reason: reason.as_str().to_owned(),
            asserted_at: Some(timestamp(meta.recorded_at)),
            expires_at: Some(timestamp(*expires_at)),
        }),
        PersonEvent::DetailsCorrected { correction, reason } => {
            let c = v1::Correction::from(correction);
            let p = record.profile.get_or_insert_with(Default::default);
            record
                .corrections
                .push(correction_view(meta, &c, reason.as_str(), p));
            let fields = [
                (c.nhs_number, &mut p.nhs_number),
                (c.given_name, &mut p.given_name),
                (c.family_name, &mut p.family_name),
                (c.date_of_birth, &mut p.date_of_birth),
                (c.contact, &mut p.contact),
                (c.what_matters, &mut p.what_matters),
                (c.communication_needs, &mut p.communication_needs),
                (c.registered_gp, &mut p.registered_gp),
            ];
            for (value, field) in fields {
                if let Some(value) = value {
                    *field = value;
                }
            }
            if let Some(list) = c.carers {
                p.carers = list.carers;
            }
            record.profile_corrections += 1;
        }
        PersonEvent::ProxyGranted { grant } => {
            let view = v1::ProxyView {
                grant: Some(grant.into()),
                granted_at: Some(timestamp(meta.recorded_at)),
            };
            let carer = grant.carer_nhs_number.as_str();
            match record.proxies.iter_mut().find(|p| {
                p.grant
                    .as_ref()
                    .is_some_and(|g| g.carer_nhs_number == carer)
            }) {
                Some(existing) => *existing = view,
                None => record.proxies.push(view),
            }
        }
        PersonEvent::ProxyRevoked {
            carer_nhs_number, ..
        } => record.proxies.retain(|p| {
            p.grant
                .as_ref()
                .is_none_or(|g| g.carer_nhs_number != carer_nhs_number.as_str())
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Referrals and the inbox

/// Updates the referral's view and returns its new status.
fn referral(record: &mut v1::CareRecord, meta: &EventMeta, e: &ReferralEvent) -> ReferralStatus {
    use ReferralEvent as E;
    use ReferralStatus as S;
    let id = meta.aggregate_id.to_string();
    let at = timestamp(meta.occurred_at);
    let view = entry(
        &mut record.referrals,
        |r| r.referral_id == id,
        || v1::ReferralView {
            referral_id: id.clone(),
            ..Default::default()
        },
    );
    let mut given = String::new();
    let status = match e {
        E::Submitted { referral } => {
            view.referral = Some(referral.into());
            view.submitted_at = Some(at);
            S::Submitted
        }
        E::Received => S::Received,
        E::Accepted => S::Accepted,
        E::Rejected { reason } => {
            given = reason.as_str().to_owned();
            S::Rejected
        }
        E::Started => S::InProgress,
        E::PutOnHold { reason } => {
            given = reason.as_str().to_owned();
            view.resumes_to = view.status.clone();
            S::OnHold
        }
        E::Resumed => {
            let back = std::mem::take(&mut view.resumes_to);
            if back == S::InProgress.as_str() {
                S::InProgress
            } else {
                S::Accepted
            }
        }
        E::Completed => S::Completed,
        E::Failed { reason } => {
            given = reason.as_str().to_owned();
            S::Failed
        }
        E::Cancelled { reason } => {
            given = reason.as_str().to_owned();
            S::Cancelled
        }
        E::EnteredInError { reason } => {
            given = reason.as_str().to_owned();
            S::EnteredInError
        }
    };
    if !given.is_empty() {
        view.reason.clone_from(&given);
    }
    view.status = status.as_str().to_owned();
    view.updated_at = Some(at);
    view.history.push(v1::ReferralStatusChange {
        status: view.status.clone(),
        reason: given,
        organisation: meta.organisation.as_str().to_owned(),
        at: Some(at),
    });
    status
}

/// A referral is in its receiving service's inbox: an open one in `INBOX`, an ended one in
/// `INBOX_CLOSED` (so the everyday triage list never scans the service's history).
fn sync_inbox(
    txn: &WriteTransaction,
    meta: &EventMeta,
    record: &v1::CareRecord,
    status: ReferralStatus,
) -> Result<(), ProjectError> {
    let id = meta.aggregate_id.to_string();
    let Some(view) = record.referrals.iter().find(|r| r.referral_id == id) else {
        return Ok(());
    };
    // Without its submission the views do not know the receiving service.
    let Some(details) = view.referral.as_ref() else {
        return Ok(());
    };
    let mut open = txn.open_table(INBOX)?;
    let mut closed = txn.open_table(INBOX_CLOSED)?;
    let key = (details.to_service.as_str(), meta.aggregate_id.as_u128());
    let entry = v1::InboxEntry {
        referral_id: id.clone(),
        person_id: record.person_id.clone(),
        from_organisation: details.from_organisation.clone(),
        priority: details.priority,
        status: view.status.clone(),
        submitted_at: view.submitted_at,
        age_hours: 0,
        reason: view.reason.clone(),
        to_service: details.to_service.clone(),
        updated_at: view.updated_at,
    };
    let (into, from) = if status.is_terminal() {
        (&mut closed, &mut open)
    } else {
        (&mut open, &mut closed)
    };
    from.remove(key)?;
    into.insert(key, entry.encode_to_vec().as_slice())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Assessments

fn assessment(record: &mut v1::CareRecord, meta: &EventMeta, e: &AssessmentEvent) {
    use AssessmentEvent as E;
    let id = meta.aggregate_id.to_string();
    let at = timestamp(meta.occurred_at);
    let view = entry(
        &mut record.assessments,
        |a| a.assessment_id == id,
        || v1::AssessmentView {
            assessment_id: id.clone(),
            ..Default::default()
        },
    );
    match e {
        E::Requested { request } => {
            view.request = Some(request.into());
            view.status = "requested".to_owned();
            view.requested_at = Some(at);
        }
        E::ContributionRecorded {
            organisation,
            summary,
        } => {
            if !view.contributors.iter().any(|c| c == organisation.as_str()) {
                view.contributors.push(organisation.as_str().to_owned());
            }
            view.contributions.push(v1::AssessmentContribution {
                organisation: organisation.as_str().to_owned(),
                summary: summary.as_str().to_owned(),
                recorded_at: Some(timestamp(meta.recorded_at)),
            });
        }
        E::Completed { findings } => {
            view.findings = Some(findings.into());
            view.status = "completed".to_owned();
            view.completed_at = Some(at);
        }
        E::EligibilityDetermined { eligibility } => {
            view.eligible = Some(eligibility.eligible);
            view.eligibility_reasons = eligibility.reasons.clone();
        }
        E::Cancelled { .. } => view.status = "cancelled".to_owned(),
        E::AssessorReplaced {
            replaced,
            by,
            reason,
        } => {
            if let Some(request) = view.request.as_mut() {
                for assessor in &mut request.assessors {
                    if assessor == replaced.as_str() {
                        *assessor = by.as_str().to_owned();
                    }
                }
            }
            view.contributors.retain(|c| c != replaced.as_str());
            view.assessor_replacements.push(v1::AssessorReplacement {
                replaced: replaced.as_str().to_owned(),
                by: by.as_str().to_owned(),
                reason: reason.as_str().to_owned(),
                organisation: meta.organisation.as_str().to_owned(),
                at: Some(at),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Care plan

fn care_plan(record: &mut v1::CareRecord, meta: &EventMeta, e: &CarePlanEvent) {
    let (version, plan, reason, changes) = match e {
        CarePlanEvent::Agreed { plan_version, plan } => {
            (*plan_version, plan, String::new(), Vec::new())
        }
        CarePlanEvent::Revised {
            plan_version,
            plan,
            reason,
            changes,
        } => (
            *plan_version,
            plan,
            reason.as_str().to_owned(),
            changes.iter().map(v1::ActivityChange::from).collect(),
        ),
    };
    let plan = v1::PlanContent::from(plan);
    let view = record.care_plan.get_or_insert_with(Default::default);
    view.version = version;
    view.plan = Some(plan.clone());
    view.history.push(v1::PlanVersion {
        version,
        plan: Some(plan),
        reason,
        organisation: meta.organisation.as_str().to_owned(),
        recorded_at: Some(timestamp(meta.recorded_at)),
        activity_changes: changes,
    });
}

// ---------------------------------------------------------------------------------------------
// Care team and caseloads

fn care_team(record: &mut v1::CareRecord, e: &CareTeamEvent) {
    let team = record.care_team.get_or_insert_with(Default::default);
    match e {
        CareTeamEvent::MemberAdded {
            member,
            role,
            since,
        } => team.members.push(v1::CareTeamMember {
            member: Some(member.into()),
            role: care_team_role(*role),
            since: date(*since),
        }),
        CareTeamEvent::MemberRemoved { member, .. } => {
            let member = v1::MemberRef::from(member);
            team.members.retain(|m| m.member.as_ref() != Some(&member));
        }
        CareTeamEvent::CoordinatorNamed { member } => team.coordinator = Some(member.into()),
        CareTeamEvent::CoordinatorUnassigned { .. } => team.coordinator = None,
    }
}

fn coordinator_key(member: &v1::MemberRef) -> String {
    tables::coordinator_key(&member.organisation, &member.practitioner)
}

/// Keeps the caseload keys in step with the (already updated) care team.
fn sync_caseload(
    txn: &WriteTransaction,
    person: Uuid,
    previous_coordinator: Option<v1::MemberRef>,
    record: &v1::CareRecord,
    e: &CareTeamEvent,
) -> Result<(), ProjectError> {
    let person = person.as_u128();
    let mut table = txn.open_table(CASELOAD)?;
    let has_member_from = |organisation: &str| {
        record.care_team.as_ref().is_some_and(|t| {
            t.members.iter().any(|m| {
                m.member
                    .as_ref()
                    .is_some_and(|m| m.organisation == organisation)
            })
        })
    };
    match e {
        CareTeamEvent::MemberAdded { member, .. } => {
            let key = tables::organisation_key(member.organisation.as_str());
            table.insert((key.as_str(), person), ())?;
        }
        CareTeamEvent::MemberRemoved { member, .. } => {
            // Another practitioner from the same organisation keeps it on the team.
            if !has_member_from(member.organisation.as_str()) {
                let key = tables::organisation_key(member.organisation.as_str());
                table.remove((key.as_str(), person))?;
            }
        }
        CareTeamEvent::CoordinatorNamed { member } => {
            let new = v1::MemberRef::from(member);
            if let Some(previous) = previous_coordinator.filter(|p| *p != new) {
                table.remove((coordinator_key(&previous).as_str(), person))?;
            }
            table.insert((coordinator_key(&new).as_str(), person), ())?;
        }
        CareTeamEvent::CoordinatorUnassigned { member } => {
            let member = v1::MemberRef::from(member);
            table.remove((coordinator_key(&member).as_str(), person))?;
            if let Some(previous) = previous_coordinator {
                table.remove((coordinator_key(&previous).as_str(), person))?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Consents, meetings, feedback

fn consent(record: &mut v1::CareRecord, meta: &EventMeta, e: &ConsentEvent) {
    let id = meta.aggregate_id.to_string();
    let view = entry(
        &mut record.consents,
        |c| c.consent_id == id,
        || v1::ConsentView {
            consent_id: id.clone(),
            ..Default::default()
        },
    );
    match e {
        ConsentEvent::Recorded { terms } => {
            view.terms = Some(terms.into());
            view.recorded_at = Some(timestamp(meta.recorded_at));
        }
        ConsentEvent::Withdrawn { .. } => view.withdrawn = true,
    }
}

fn meeting(record: &mut v1::CareRecord, meta: &EventMeta, e: &MeetingEvent) {
    let id = meta.aggregate_id.to_string();
    let view = entry(
        &mut record.meetings,
        |m| m.meeting_id == id,
        || v1::MeetingView {
            meeting_id: id.clone(),
            ..Default::default()
        },
    );
    match e {
        MeetingEvent::Recorded { meeting } => view.meeting = Some(meeting.into()),
        MeetingEvent::ActionCompleted { action, note } => {
            view.completed_actions.push(*action);
            view.completions.push(v1::ActionCompletion {
                action: *action,
                note: note
                    .as_ref()
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                organisation: meta.organisation.as_str().to_owned(),
                user: meta.user.as_str().to_owned(),
                completed_at: Some(timestamp(meta.occurred_at)),
            });
        }
    }
}

fn feedback(record: &mut v1::CareRecord, meta: &EventMeta, e: &FeedbackEvent) {
    let id = meta.aggregate_id.to_string();
    let view = entry(
        &mut record.feedback,
        |f| f.feedback_id == id,
        || v1::FeedbackView {
            feedback_id: id.clone(),
            ..Default::default()
        },
    );
    match e {
        FeedbackEvent::Recorded { feedback } => {
            view.feedback = Some(feedback.into());
            view.recorded_at = Some(timestamp(meta.recorded_at));
        }
    }
}

fn flag(record: &mut v1::CareRecord, meta: &EventMeta, e: &FlagEvent) {
    let id = meta.aggregate_id.to_string();
    let view = entry(
        &mut record.risk_flags,
        |f| f.flag_id == id,
        || v1::RiskFlagView {
            flag_id: id.clone(),
            ..Default::default()
        },
    );
    match e {
        FlagEvent::Raised { flag } => {
            view.flag = Some(flag.into());
            view.organisation = meta.organisation.as_str().to_owned();
            view.user = meta.user.as_str().to_owned();
            view.recorded_at = Some(timestamp(meta.recorded_at));
        }
        FlagEvent::Ended { end, reason } => {
            view.end = date(*end);
            view.end_reason = reason.as_str().to_owned();
            view.ended_by = meta.organisation.as_str().to_owned();
        }
    }
}

fn task_status(s: TaskStatus) -> i32 {
    use v1::TaskStatus as W;
    match s {
        TaskStatus::Requested => W::Requested,
        TaskStatus::Accepted => W::Accepted,
        TaskStatus::InProgress => W::InProgress,
        TaskStatus::OnHold => W::OnHold,
        TaskStatus::Completed => W::Completed,
        TaskStatus::Cancelled => W::Cancelled,
        TaskStatus::Failed => W::Failed,
    }
    .into()
}

fn task(record: &mut v1::CareRecord, meta: &EventMeta, e: &TaskEvent) {
    let id = meta.aggregate_id.to_string();
    let at = timestamp(meta.recorded_at);
    let view = entry(
        &mut record.tasks,
        |t| t.task_id == id,
        || v1::TaskView {
            task_id: id.clone(),
            ..Default::default()
        },
    );
    let step = |status: TaskStatus, reason: String| v1::TaskStatusStep {
        status: task_status(status),
        reason,
        organisation: meta.organisation.as_str().to_owned(),
        user: meta.user.as_str().to_owned(),
        at: Some(at),
    };
    match e {
        TaskEvent::Created { task, requester } => {
            view.task = Some(task.into());
            view.status = task_status(TaskStatus::Requested);
            view.requester = requester.as_str().to_owned();
            view.user = meta.user.as_str().to_owned();
            view.created_at = Some(at);
            view.history
                .push(step(TaskStatus::Requested, String::new()));
        }
        TaskEvent::StatusChanged { status, reason } => {
            view.status = task_status(*status);
            view.history.push(step(
                *status,
                reason
                    .as_ref()
                    .map(|r| r.as_str().to_owned())
                    .unwrap_or_default(),
            ));
            if status.is_final() {
                view.ended_at = Some(at);
            }
        }
        TaskEvent::Reassigned { owner, reason } => {
            let to: v1::MemberRef = owner.into();
            let task = view.task.get_or_insert_with(Default::default);
            view.reassignments.push(v1::TaskReassignment {
                from: task.owner.replace(to.clone()),
                to: Some(to),
                reason: reason.as_str().to_owned(),
                organisation: meta.organisation.as_str().to_owned(),
                at: Some(at),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Worklists

/// Events that can change what a record puts on a worklist.
fn affects_worklists(event: &Event) -> bool {
    matches!(
        event,
        Event::Task(_) | Event::CarePlan(_) | Event::CareTeam(_) | Event::Assessment(_)
    )
}

/// Take off the worklists what the record no longer puts there, and put on what it now does
/// (an item whose content changed is written again under its key).
fn sync_worklists(
    txn: &WriteTransaction,
    before: crate::worklist::Items,
    after: crate::worklist::Items,
) -> Result<(), ProjectError> {
    if before == after {
        return Ok(());
    }
    let mut table = txn.open_table(WORKLIST)?;
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        table.remove((key.0.as_str(), key.1.as_str(), key.2))?;
    }
    for (key, value) in &after {
        if before.get(key) != Some(value) {
            table.insert((key.0.as_str(), key.1.as_str(), key.2), value.as_slice())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Discharge episodes and the board

/// Mirrors the domain's `DischargeEpisode::evolve`.
fn discharge(record: &mut v1::CareRecord, meta: &EventMeta, e: &DischargeEvent) {
    use DischargeEvent as E;
    use DischargeStatus as S;
    let id = meta.aggregate_id.to_string();
    let ep = entry(
        &mut record.discharge_episodes,
        |d| d.episode_id == id,
        || v1::EpisodeView {
            episode_id: id.clone(),
            ..Default::default()
        },
    );
    let status = match e {
        E::Admitted {
            site,
            ward,
            admitted_at,
        } => {
            ep.site = site.as_str().to_owned();
            ep.ward = ward
                .as_ref()
                .map(|w| w.as_str().to_owned())
                .unwrap_or_default();
            ep.admitted_at = Some(timestamp(*admitted_at));
            S::Admitted
        }
        E::ExpectedDischargeDateSet { expected } => {
            ep.expected_discharge_date = date(*expected);
            S::Planning
        }
        E::DischargeReady {
            discharge_ready_date,
            ..
        } => {
            ep.discharge_ready_date = date(*discharge_ready_date);
            S::DischargeReady
        }
        E::PathwayAssigned { pathway: p } => {
            ep.pathway = pathway(*p);
            S::PathwayAssigned
        }
        E::ServiceRequested { service } => {
            ep.service = service.as_str().to_owned();
            S::AwaitingService
        }
        E::DischargeAgreed {
            service,
            planned_for,
        } => {
            ep.service = service.as_str().to_owned();
            ep.planned_for = date(*planned_for);
            S::DischargeAgreed
        }
        E::ProviderFellThrough { .. } => {
            ep.planned_for.clear();
            S::AwaitingService
        }
        E::Deteriorated { .. } => {
            let drd = std::mem::take(&mut ep.discharge_ready_date);
            if !drd.is_empty() {
                ep.superseded_discharge_ready_dates.push(drd);
            }
            ep.pathway = v1::Pathway::Unspecified.into();
            ep.service.clear();
            ep.planned_for.clear();
            S::Planning
        }
        E::DelayReasonRecorded { reason, note } => {
            // The only event that leaves the status as it was.
            ep.delay_reasons.push(delay_reason(*reason));
            ep.delay_notes.push(v1::DelayNote {
                reason: delay_reason(*reason),
                note: note
                    .as_ref()
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                recorded_at: Some(timestamp(meta.recorded_at)),
                organisation: meta.organisation.as_str().to_owned(),
            });
            return;
        }
        E::Discharged {
            discharged_at,
            destination,
            destination_code,
        } => {
            ep.discharged_at = Some(timestamp(*discharged_at));
            ep.discharge_destination = destination.as_str().to_owned();
            ep.discharge_destination_code = destination_code
                .map(|c| c.code().to_owned())
                .unwrap_or_default();
            // Pathway 0 needs no new support, so no home assessment.
            let p0 = ep.pathway == pathway(Pathway::P0);
            ep.home_assessment_due = if p0 {
                String::new()
            } else {
                uk_date(*discharged_at)
                    .succ_opt()
                    .map(date)
                    .unwrap_or_default()
            };
            S::Discharged
        }
        E::HandoverAccepted { organisation } => {
            ep.handover_organisation = organisation.as_str().to_owned();
            S::HandoverAccepted
        }
        E::HomeAssessmentCompleted {
            completed_on,
            outcome,
        } => {
            ep.home_assessment_completed_on = date(*completed_on);
            ep.home_assessment_outcome = outcome.as_str().to_owned();
            S::HomeAssessmentCompleted
        }
        E::Closed => S::Closed,
        E::Died { .. } => S::Died,
        E::SelfDischarged { .. } => S::SelfDischarged,
    };
    ep.status = status.as_str().to_owned();
}

fn board_entry(person_id: &str, ep: &v1::EpisodeView) -> v1::BoardEntry {
    v1::BoardEntry {
        episode_id: ep.episode_id.clone(),
        person_id: person_id.to_owned(),
        site: ep.site.clone(),
        ward: ep.ward.clone(),
        pathway: ep.pathway,
        status: ep.status.clone(),
        discharge_ready_date: ep.discharge_ready_date.clone(),
        days_delayed: 0,
        delay_reasons: ep.delay_reasons.clone(),
        service: ep.service.clone(),
        planned_for: ep.planned_for.clone(),
        discharged_at: ep.discharged_at,
        hours_since_discharge: 0,
        delay_notes: ep.delay_notes.clone(),
        // Names and the NHS number are added when read, for callers whose agreement covers
        // demographics: stored entries carry none.
        given_name: String::new(),
        family_name: String::new(),
        nhs_number: String::new(),
        handover_organisation: ep.handover_organisation.clone(),
        home_assessment_due: ep.home_assessment_due.clone(),
        home_assessment_completed_on: ep.home_assessment_completed_on.clone(),
    }
}

/// Puts the episode on the board, updates it, or takes it off; reports only real changes.
fn sync_board(
    txn: &WriteTransaction,
    meta: &EventMeta,
    record: &v1::CareRecord,
) -> Result<Option<BoardChange>, ProjectError> {
    let id = meta.aggregate_id.to_string();
    let Some(ep) = record
        .discharge_episodes
        .iter()
        .find(|d| d.episode_id == id)
    else {
        return Ok(None);
    };
    let key = meta.aggregate_id.as_u128();
    let mut table = txn.open_table(BOARD)?;
    if ON_BOARD.iter().any(|s| s.as_str() == ep.status) {
        let entry = board_entry(&record.person_id, ep);
        let bytes = entry.encode_to_vec();
        let unchanged = table
            .get(key)?
            .is_some_and(|stored| stored.value() == bytes.as_slice());
        if unchanged {
            return Ok(None);
        }
        table.insert(key, bytes.as_slice())?;
        Ok(Some(BoardChange::Upsert(entry)))
    } else if table.remove(key)?.is_some() {
        Ok(Some(BoardChange::Removed(meta.aggregate_id)))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use carewoven_domain::assessment::{
        AssessmentKind, AssessmentRequest, CareActOutcome, Eligibility, Findings,
    };
    use carewoven_domain::care_plan::{Activity, PlanContent};
    use carewoven_domain::care_team::MemberRef;
    use carewoven_domain::consent::{ConsentDecision, ConsentTerms, DataClass, Purpose};
    use carewoven_domain::feedback::{FeedbackRecord, FeedbackSource};
    use carewoven_domain::meeting::{MeetingAction, MeetingRecord};
    use carewoven_domain::person::{Carer, Correction, Profile};
    use carewoven_domain::referral::{NewReferral, Priority};
    use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use redb::{Database, ReadableDatabase};

    use super::*;

    // -----------------------------------------------------------------------------------------
    // Builders

    fn code(s: &str) -> Code {
        Code::parse("code", s).expect("valid code")
    }

    fn short(s: &str) -> ShortText {
        ShortText::parse("short", s).expect("valid short text")
    }

    fn long(s: &str) -> LongText {
        LongText::parse("long", s).expect("valid long text")
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("valid instant")
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn member(org: &str, practitioner: Option<&str>) -> MemberRef {
        MemberRef {
            organisation: code(org),
            practitioner: practitioner.map(code),
        }
    }

    /// A hand-written log: numbers events and each aggregate's versions as the event log would.
    #[derive(Default)]
    struct Log {
        sequence: u64,
        versions: BTreeMap<Uuid, u64>,
        events: Vec<RecordedEvent>,
    }

    impl Log {
        fn push(
            &mut self,
            person: Uuid,
            aggregate: Uuid,
            org: &str,
            event: Event,
        ) -> RecordedEvent {
            self.sequence += 1;
            let sequence = self.sequence;
            let version = self.versions.entry(aggregate).or_default();
            *version += 1;
            let occurred_at = base() + Duration::minutes(i64::try_from(sequence).expect("small"));
            let recorded = RecordedEvent {
                sequence,
                meta: EventMeta {
                    event_id: id(0xE000_0000 + u128::from(sequence)),
                    aggregate_id: aggregate,
                    aggregate_kind: event.kind(),
                    person_id: person,
                    version: *version,
                    command_id: id(0xC000_0000 + u128::from(sequence)),
                    correlation_id: id(0xC000_0000 + u128::from(sequence)),
                    causation_id: id(0xC000_0000 + u128::from(sequence)),
                    organisation: code(org),
                    user: code("user1"),
                    occurred_at,
                    recorded_at: occurred_at + Duration::seconds(30),
                    schema_version: 1,
                },
                event,
            };
            self.events.push(recorded.clone());
            recorded
        }
    }

    fn open() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("views.redb")).expect("create database");
        (dir, db)
    }

    /// Applies one event in its own committed transaction.
    fn apply_one(db: &Database, event: &RecordedEvent) -> Vec<BoardChange> {
        let txn = db.begin_write().expect("begin write");
        let changes = apply(&txn, event).expect("apply");
        txn.commit().expect("commit");
        changes
    }

    fn record(db: &Database, person: Uuid) -> v1::CareRecord {
        let txn = db.begin_read().expect("begin read");
        let table = txn.open_table(RECORDS).expect("records table");
        let bytes = table
            .get(person.as_u128())
            .expect("get")
            .expect("record present");
        v1::CareRecord::decode(bytes.value()).expect("decodes")
    }

    #[derive(Debug, PartialEq, Eq, Default)]
    struct Dump {
        records: Vec<(u128, Vec<u8>)>,
        board: Vec<(u128, Vec<u8>)>,
        caseload: Vec<(String, u128)>,
        inbox: Vec<(String, u128, Vec<u8>)>,
        inbox_closed: Vec<(String, u128, Vec<u8>)>,
    }

    fn bytes_table(
        txn: &redb::ReadTransaction,
        def: redb::TableDefinition<u128, &[u8]>,
    ) -> Vec<(u128, Vec<u8>)> {
        match txn.open_table(def) {
            Ok(table) => table
                .iter()
                .expect("iter")
                .map(|row| {
                    let (k, v) = row.expect("row");
                    (k.value(), v.value().to_vec())
                })
                .collect(),
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
    }

    fn dump(db: &Database) -> Dump {
        let txn = db.begin_read().expect("begin read");
        let mut out = Dump {
            records: bytes_table(&txn, RECORDS),
            board: bytes_table(&txn, BOARD),
            ..Dump::default()
        };
        if let Ok(table) = txn.open_table(CASELOAD) {
            for row in table.iter().expect("iter") {
                let (k, ()) = row.map(|(k, _)| (k, ())).expect("row");
                let (owner, person) = k.value();
                out.caseload.push((owner.to_owned(), person));
            }
        }
        for (def, rows) in [
            (INBOX, &mut out.inbox),
            (INBOX_CLOSED, &mut out.inbox_closed),
        ] {
            if let Ok(table) = txn.open_table(def) {
                for row in table.iter().expect("iter") {
                    let (k, v) = row.expect("row");
                    let (service, referral) = k.value();
                    rows.push((service.to_owned(), referral, v.value().to_vec()));
                }
            }
        }
        out
    }

    fn caseload_of(db: &Database, person: Uuid) -> Vec<String> {
        dump(db)
            .caseload
            .into_iter()
            .filter(|(_, p)| *p == person.as_u128())
            .map(|(owner, _)| owner)
            .collect()
    }

    fn board(db: &Database) -> Vec<v1::BoardEntry> {
        dump(db)
            .board
            .iter()
            .map(|(_, v)| v1::BoardEntry::decode(v.as_slice()).expect("decodes"))
            .collect()
    }

    fn upserted(changes: &[BoardChange]) -> &v1::BoardEntry {
        match changes {
            [BoardChange::Upsert(entry)] => entry,
            other => panic!("expected one upsert, got {other:?}"),
        }
    }

    fn profile() -> Profile {
        Profile {
            nhs_number: NhsNumber::parse("nhs_number", "9990001235").expect("valid test number"),
            given_name: short("Ada"),
            family_name: short("Example"),
            date_of_birth: ymd(1941, 5, 17),
            contact: Some(long("01632 960000")),
            what_matters: Some(long("Getting back to my garden")),
            communication_needs: None,
            carers: Vec::new(),
            registered_gp: None,
        }
    }

    fn plan(goal: &str) -> PlanContent {
        PlanContent {
            goals: vec![long(goal)],
            activities: vec![Activity {
                description: long("Daily visits"),
                responsible_organisation: code("HOMECARE1"),
                status: carewoven_domain::care_plan::ActivityStatus::NotStarted,
                status_reason: None,
            }],
            review_date: ymd(2026, 6, 1),
        }
    }

    fn new_referral(priority: Priority) -> NewReferral {
        NewReferral {
            from_organisation: code("RXH01"),
            to_service: code("SPA01"),
            priority,
            reason: long("Needs support at home"),
            replaces: None,
        }
    }

    fn admitted() -> Event {
        Event::Discharge(DischargeEvent::Admitted {
            site: code("RXH01"),
            ward: Some(short("Ward 7")),
            admitted_at: base(),
        })
    }

    fn d(e: DischargeEvent) -> Event {
        Event::Discharge(e)
    }

    fn r(e: ReferralEvent) -> Event {
        Event::Referral(e)
    }

    fn t(e: CareTeamEvent) -> Event {
        Event::CareTeam(e)
    }

    // -----------------------------------------------------------------------------------------
    // Board

    #[test]
    fn pathway_1_episode_joins_the_board_at_discharge_ready_and_leaves_when_closed() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let (person, ep) = (id(1), id(100));
        let mut step = |event: Event| apply_one(&db, &log.push(person, ep, "RXH01", event));

        assert!(step(admitted()).is_empty());
        assert!(
            step(d(DischargeEvent::ExpectedDischargeDateSet {
                expected: ymd(2026, 3, 9)
            }))
            .is_empty()
        );

        let changes = step(d(DischargeEvent::DischargeReady {
            discharge_ready_date: ymd(2026, 3, 10),
            supersedes: None,
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.episode_id, ep.to_string());
        assert_eq!(entry.person_id, person.to_string());
        assert_eq!(entry.site, "RXH01");
        assert_eq!(entry.ward, "Ward 7");
        assert_eq!(entry.status, "discharge_ready");
        assert_eq!(entry.discharge_ready_date, "2026-03-10");
        assert_eq!(entry.pathway, i32::from(v1::Pathway::Unspecified));

        let changes = step(d(DischargeEvent::PathwayAssigned {
            pathway: Pathway::P1,
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "pathway_assigned");
        assert_eq!(entry.pathway, i32::from(v1::Pathway::Pathway1));

        let changes = step(d(DischargeEvent::DelayReasonRecorded {
            reason: DelayReason::Pathway1NewCare,
            note: Some(long("No home care package until Thursday")),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "pathway_assigned");
        assert_eq!(
            entry.delay_reasons,
            vec![i32::from(v1::DelayReason::Pathway1NewCare)]
        );
        // The note says why, with who recorded it (here the site acts).
        assert_eq!(entry.delay_notes.len(), 1);
        assert_eq!(
            entry.delay_notes[0].reason,
            i32::from(v1::DelayReason::Pathway1NewCare)
        );
        assert_eq!(
            entry.delay_notes[0].note,
            "No home care package until Thursday"
        );
        assert_eq!(entry.delay_notes[0].organisation, "RXH01");
        assert!(entry.delay_notes[0].recorded_at.is_some());
        // Stored entries never carry names: they are added when read, for callers whose
        // agreement covers demographics.
        assert!(entry.given_name.is_empty() && entry.nhs_number.is_empty());

        let changes = step(d(DischargeEvent::ServiceRequested {
            service: code("HOMECARE1"),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "awaiting_service");
        assert_eq!(entry.service, "HOMECARE1");

        let changes = step(d(DischargeEvent::DischargeAgreed {
            service: code("HOMECARE1"),
            planned_for: ymd(2026, 3, 12),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "discharge_agreed");
        assert_eq!(entry.planned_for, "2026-03-12");

        let changes = step(d(DischargeEvent::ProviderFellThrough {
            reason: long("Provider withdrew"),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "awaiting_service");
        assert_eq!(entry.planned_for, "");
        assert_eq!(entry.service, "HOMECARE1");

        let changes = step(d(DischargeEvent::DischargeAgreed {
            service: code("HOMECARE2"),
            planned_for: ymd(2026, 3, 13),
        }));
        assert_eq!(upserted(&changes).service, "HOMECARE2");

        let discharged_at = base() + Duration::days(12);
        let discharged = log.push(
            person,
            ep,
            "RXH01",
            d(DischargeEvent::Discharged {
                discharged_at,
                destination: short("Home"),
                destination_code: Some(
                    carewoven_domain::discharge::DischargeDestination::USUAL_RESIDENCE,
                ),
            }),
        );
        let changes = apply_one(&db, &discharged);
        let entry = upserted(&changes);
        assert_eq!(entry.status, "discharged");
        assert_eq!(entry.discharged_at, Some(timestamp(discharged_at)));
        assert_eq!(entry.days_delayed, 0);
        assert_eq!(entry.hours_since_discharge, 0);
        // Pathway 1: assessed at home the day after discharge (UK calendar).
        let day_after = uk_date(discharged_at).succ_opt().map(date).unwrap();
        assert_eq!(entry.home_assessment_due, day_after);
        // Still on the board after discharge, exactly as returned.
        assert_eq!(board(&db), vec![entry.clone()]);
        // A redelivered event that changes nothing reports nothing.
        assert!(apply_one(&db, &discharged).is_empty());

        let mut step = |event: Event| apply_one(&db, &log.push(person, ep, "HOMECARE2", event));
        // The "assess" half: the board follows the episode to the home assessment.
        let changes = step(d(DischargeEvent::HandoverAccepted {
            organisation: code("HOMECARE2"),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "handover_accepted");
        assert_eq!(entry.handover_organisation, "HOMECARE2");
        assert_eq!(entry.home_assessment_due, day_after);
        let changes = step(d(DischargeEvent::HomeAssessmentCompleted {
            completed_on: ymd(2026, 3, 16),
            outcome: long("Managing well"),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "home_assessment_completed");
        assert_eq!(entry.home_assessment_completed_on, "2026-03-16");
        assert_eq!(board(&db), vec![entry.clone()]);
        assert_eq!(
            step(d(DischargeEvent::Closed)),
            vec![BoardChange::Removed(ep)]
        );
        assert!(board(&db).is_empty());

        let view = &record(&db, person).discharge_episodes[0];
        assert_eq!(view.status, "closed");
        assert_eq!(view.expected_discharge_date, "2026-03-09");
        assert_eq!(view.handover_organisation, "HOMECARE2");
        assert_eq!(view.home_assessment_completed_on, "2026-03-16");
        assert_eq!(view.home_assessment_outcome, "Managing well");
        assert_eq!(view.home_assessment_due, day_after);
        assert_eq!(view.delay_notes.len(), 1);
        assert_eq!(view.discharged_at, Some(timestamp(discharged_at)));
        assert_eq!(view.admitted_at, Some(timestamp(base())));
    }

    #[test]
    fn deterioration_leaves_the_board_and_a_new_drd_supersedes_the_old() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let (person, ep) = (id(2), id(200));
        let mut step = |event: Event| apply_one(&db, &log.push(person, ep, "RXH01", event));

        step(admitted());
        step(d(DischargeEvent::ExpectedDischargeDateSet {
            expected: ymd(2026, 3, 9),
        }));
        step(d(DischargeEvent::DischargeReady {
            discharge_ready_date: ymd(2026, 3, 10),
            supersedes: None,
        }));
        step(d(DischargeEvent::PathwayAssigned {
            pathway: Pathway::P2,
        }));
        step(d(DischargeEvent::ServiceRequested {
            service: code("REHAB1"),
        }));

        assert_eq!(
            step(d(DischargeEvent::Deteriorated {
                reason: long("Chest infection"),
            })),
            vec![BoardChange::Removed(ep)]
        );
        let view = record(&db, person).discharge_episodes[0].clone();
        assert_eq!(view.status, "planning");
        assert_eq!(view.discharge_ready_date, "");
        assert_eq!(view.superseded_discharge_ready_dates, vec!["2026-03-10"]);
        assert_eq!(view.pathway, i32::from(v1::Pathway::Unspecified));
        assert_eq!(view.service, "");
        assert!(board(&db).is_empty());
        assert!(
            step(d(DischargeEvent::ExpectedDischargeDateSet {
                expected: ymd(2026, 3, 15),
            }))
            .is_empty()
        );

        let changes = step(d(DischargeEvent::DischargeReady {
            discharge_ready_date: ymd(2026, 3, 14),
            supersedes: Some(ymd(2026, 3, 10)),
        }));
        let entry = upserted(&changes);
        assert_eq!(entry.status, "discharge_ready");
        assert_eq!(entry.discharge_ready_date, "2026-03-14");
        assert_eq!(entry.pathway, i32::from(v1::Pathway::Unspecified));
        assert_eq!(entry.service, "");
        let view = record(&db, person).discharge_episodes[0].clone();
        assert_eq!(view.discharge_ready_date, "2026-03-14");
        assert_eq!(view.superseded_discharge_ready_dates, vec!["2026-03-10"]);

        assert_eq!(
            step(d(DischargeEvent::Died {
                died_at: base() + Duration::days(15),
            })),
            vec![BoardChange::Removed(ep)]
        );
        assert_eq!(record(&db, person).discharge_episodes[0].status, "died");
    }

    // -----------------------------------------------------------------------------------------
    // Caseload

    #[test]
    fn caseload_follows_the_coordinator_and_the_organisations_on_the_team() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let (person, other, team, other_team) = (id(3), id(4), id(300), id(400));
        let (a1, a2, b) = (
            member("ORGA", Some("P1")),
            member("ORGA", Some("P2")),
            member("ORGB", None),
        );
        let added = |m: &MemberRef| {
            t(CareTeamEvent::MemberAdded {
                member: m.clone(),
                role: CareTeamRole::SocialWorker,
                since: ymd(2026, 1, 5),
            })
        };
        let removed = |m: &MemberRef| {
            t(CareTeamEvent::MemberRemoved {
                member: m.clone(),
                until: ymd(2026, 2, 5),
                reason: long("Moved on"),
            })
        };
        // Someone else whose team also has ORGB.
        apply_one(&db, &log.push(other, other_team, "ORGB", added(&b)));
        let mut step = |event: Event| apply_one(&db, &log.push(person, team, "ORGA", event));

        step(added(&a1));
        step(added(&a2));
        step(added(&b));

        assert_eq!(
            caseload_of(&db, person),
            vec!["organisation:ORGA", "organisation:ORGB"]
        );

        step(t(CareTeamEvent::CoordinatorNamed { member: a1.clone() }));
        assert_eq!(
            caseload_of(&db, person),
            vec![
                "coordinator:ORGA/P1",
                "organisation:ORGA",
                "organisation:ORGB"
            ]
        );

        step(t(CareTeamEvent::CoordinatorNamed { member: b.clone() }));
        assert_eq!(
            caseload_of(&db, person),
            vec!["coordinator:ORGB", "organisation:ORGA", "organisation:ORGB"]
        );

        // Two practitioners from ORGA: removing one keeps the organisation on the team.
        step(removed(&a1));
        assert_eq!(
            caseload_of(&db, person),
            vec!["coordinator:ORGB", "organisation:ORGA", "organisation:ORGB"]
        );
        step(removed(&a2));
        assert_eq!(
            caseload_of(&db, person),
            vec!["coordinator:ORGB", "organisation:ORGB"]
        );

        step(removed(&b));
        step(t(CareTeamEvent::CoordinatorUnassigned {
            member: b.clone(),
        }));
        assert!(caseload_of(&db, person).is_empty());
        assert_eq!(caseload_of(&db, other), vec!["organisation:ORGB"]);

        let team = record(&db, person).care_team.expect("care team");
        assert!(team.members.is_empty());
        assert_eq!(team.coordinator, None);
        let team = record(&db, other).care_team.expect("care team");
        assert_eq!(team.members.len(), 1);
        assert_eq!(
            team.members[0],
            v1::CareTeamMember {
                member: Some(v1::MemberRef {
                    organisation: "ORGB".into(),
                    practitioner: String::new(),
                }),
                role: i32::from(v1::CareTeamRole::SocialWorker),
                since: "2026-01-05".into(),
            }
        );
    }

    // -----------------------------------------------------------------------------------------
    // Referrals and inbox

    #[test]
    fn inbox_holds_open_referrals_and_keeps_ended_ones_apart() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let person = id(5);
        let (r1, r2, r3) = (id(501), id(502), id(503));
        let inbox = |db: &Database| -> Vec<(String, Uuid, v1::InboxEntry)> {
            dump(db)
                .inbox
                .into_iter()
                .map(|(s, r, v)| {
                    let entry = v1::InboxEntry::decode(v.as_slice()).expect("decodes");
                    (s, Uuid::from_u128(r), entry)
                })
                .collect()
        };
        let mut step = |referral: Uuid, event: ReferralEvent| {
            let changes = apply_one(&db, &log.push(person, referral, "SPA01", r(event)));
            assert!(changes.is_empty());
        };

        step(
            r1,
            ReferralEvent::Submitted {
                referral: new_referral(Priority::Urgent),
            },
        );
        let entries = inbox(&db);
        assert_eq!(entries.len(), 1);
        let (service, referral, entry) = &entries[0];
        assert_eq!((service.as_str(), *referral), ("SPA01", r1));
        assert_eq!(entry.referral_id, r1.to_string());
        assert_eq!(entry.person_id, person.to_string());
        assert_eq!(entry.from_organisation, "RXH01");
        assert_eq!(entry.priority, i32::from(v1::Priority::Urgent));
        assert_eq!(entry.status, "submitted");
        assert_eq!(entry.age_hours, 0);
        let submitted_at = entry.submitted_at.expect("submitted_at");

        let status_of = |db: &Database, referral: Uuid| {
            inbox(db)
                .into_iter()
                .find(|(_, r, _)| *r == referral)
                .map(|(_, _, e)| e.status)
        };
        step(r1, ReferralEvent::Received);
        assert_eq!(status_of(&db, r1).as_deref(), Some("received"));
        step(r1, ReferralEvent::Accepted);
        step(r1, ReferralEvent::Started);
        step(
            r1,
            ReferralEvent::PutOnHold {
                reason: long("Person in hospital"),
            },
        );
        assert_eq!(status_of(&db, r1).as_deref(), Some("on_hold"));
        step(r1, ReferralEvent::Resumed);
        assert_eq!(status_of(&db, r1).as_deref(), Some("in_progress"));
        step(r1, ReferralEvent::Completed);
        assert!(inbox(&db).is_empty());

        step(
            r2,
            ReferralEvent::Submitted {
                referral: new_referral(Priority::Stat),
            },
        );
        assert_eq!(status_of(&db, r2).as_deref(), Some("submitted"));
        step(
            r2,
            ReferralEvent::Rejected {
                reason: long("Out of area"),
            },
        );
        assert!(inbox(&db).is_empty());

        // Resume returns to where the hold began: accepted before a start, in progress after.
        step(
            r3,
            ReferralEvent::Submitted {
                referral: new_referral(Priority::Routine),
            },
        );
        step(r3, ReferralEvent::Received);
        step(r3, ReferralEvent::Accepted);
        step(
            r3,
            ReferralEvent::PutOnHold {
                reason: long("Wait"),
            },
        );
        step(r3, ReferralEvent::Resumed);
        assert_eq!(status_of(&db, r3).as_deref(), Some("accepted"));
        step(
            r3,
            ReferralEvent::PutOnHold {
                reason: long("Wait"),
            },
        );
        step(r3, ReferralEvent::Resumed);
        assert_eq!(status_of(&db, r3).as_deref(), Some("accepted"));
        step(r3, ReferralEvent::Started);
        step(
            r3,
            ReferralEvent::PutOnHold {
                reason: long("Wait"),
            },
        );
        step(r3, ReferralEvent::Resumed);
        assert_eq!(status_of(&db, r3).as_deref(), Some("in_progress"));
        step(
            r3,
            ReferralEvent::PutOnHold {
                reason: long("Wait"),
            },
        );
        step(r3, ReferralEvent::Resumed);
        assert_eq!(status_of(&db, r3).as_deref(), Some("in_progress"));
        step(
            r3,
            ReferralEvent::Cancelled {
                reason: long("No longer needed"),
            },
        );
        assert!(inbox(&db).is_empty());

        // Ended referrals are kept apart, each with its last reason.
        let closed: Vec<(Uuid, String, String)> = dump(&db)
            .inbox_closed
            .into_iter()
            .map(|(_, r, v)| {
                let e = v1::InboxEntry::decode(v.as_slice()).expect("decodes");
                (Uuid::from_u128(r), e.status, e.reason)
            })
            .collect();
        let mut expected = vec![
            (r1, "completed".to_owned(), "Person in hospital".to_owned()),
            (r2, "rejected".to_owned(), "Out of area".to_owned()),
            (r3, "cancelled".to_owned(), "No longer needed".to_owned()),
        ];
        expected.sort();
        assert_eq!(closed, expected);

        let views = record(&db, person).referrals;
        let statuses: Vec<&str> = views.iter().map(|v| v.status.as_str()).collect();
        assert_eq!(statuses, vec!["completed", "rejected", "cancelled"]);
        // Each referral's history says who changed its status, when and why.
        let history: Vec<(&str, &str)> = views[0]
            .history
            .iter()
            .map(|h| (h.status.as_str(), h.reason.as_str()))
            .collect();
        assert_eq!(
            history,
            vec![
                ("submitted", ""),
                ("received", ""),
                ("accepted", ""),
                ("in_progress", ""),
                ("on_hold", "Person in hospital"),
                ("in_progress", ""),
                ("completed", ""),
            ]
        );
        assert!(
            views[0]
                .history
                .iter()
                .all(|h| h.organisation == "SPA01" && h.at.is_some())
        );
        assert_eq!(views[1].reason, "Out of area");
        assert_eq!(views[0].submitted_at, Some(submitted_at));
        assert!(views[0].updated_at.expect("updated_at").seconds > submitted_at.seconds);
        assert_eq!(
            views[1].referral.as_ref().map(|r| r.priority),
            Some(i32::from(v1::Priority::Stat))
        );
    }

    #[test]
    fn resume_target_matches_the_domain_for_every_hold_pattern() {
        use carewoven_domain::Aggregate;
        use carewoven_domain::referral::Referral;
        // Fold the same streams through the domain and compare each resume.
        let mut patterns: Vec<Vec<ReferralEvent>> = Vec::new();
        for holds_before in 0..3 {
            for started in [false, true] {
                for holds_after in 0..3 {
                    let mut events = vec![
                        ReferralEvent::Submitted {
                            referral: new_referral(Priority::Routine),
                        },
                        ReferralEvent::Received,
                        ReferralEvent::Accepted,
                    ];
                    let hold = || ReferralEvent::PutOnHold { reason: long("w") };
                    for _ in 0..holds_before {
                        events.extend([hold(), ReferralEvent::Resumed]);
                    }
                    if started {
                        events.push(ReferralEvent::Started);
                    }
                    for _ in 0..holds_after {
                        events.extend([hold(), ReferralEvent::Resumed]);
                    }
                    patterns.push(events);
                }
            }
        }
        for (n, events) in patterns.into_iter().enumerate() {
            let (_dir, db) = open();
            let mut log = Log::default();
            let person = id(900 + n as u128);
            let referral = id(9000 + n as u128);
            let mut state = None;
            for event in &events {
                let next = Referral::evolve(state, event).expect("valid stream");
                apply_one(
                    &db,
                    &log.push(person, referral, "HOSP", Event::Referral(event.clone())),
                );
                let view = record(&db, person);
                assert_eq!(view.referrals[0].status, next.status.as_str(), "{events:?}");
                state = Some(next);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Care record

    #[test]
    fn care_plan_history_keeps_every_version() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let (person, plan_id) = (id(6), id(600));
        let agreed = log.push(
            person,
            plan_id,
            "GP001",
            Event::CarePlan(CarePlanEvent::Agreed {
                plan_version: 1,
                plan: plan("Walk to the shop"),
            }),
        );
        let revised = log.push(
            person,
            plan_id,
            "COUNCIL1",
            Event::CarePlan(CarePlanEvent::Revised {
                plan_version: 2,
                plan: plan("Walk to the park"),
                reason: long("Progressing well"),
                changes: Vec::new(),
            }),
        );
        let again = log.push(
            person,
            plan_id,
            "CNURSE1",
            Event::CarePlan(CarePlanEvent::Revised {
                plan_version: 3,
                plan: plan("Walk to the library"),
                reason: long("New goal"),
                changes: Vec::new(),
            }),
        );
        for event in [&agreed, &revised, &again] {
            assert!(apply_one(&db, event).is_empty());
        }

        let view = record(&db, person).care_plan.expect("care plan");
        assert_eq!(view.version, 3);
        assert_eq!(
            view.plan,
            Some(v1::PlanContent::from(&plan("Walk to the library")))
        );
        let summary: Vec<(u32, &str, &str)> = view
            .history
            .iter()
            .map(|v| (v.version, v.reason.as_str(), v.organisation.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "", "GP001"),
                (2, "Progressing well", "COUNCIL1"),
                (3, "New goal", "CNURSE1"),
            ]
        );
        assert_eq!(
            view.history[1].plan,
            Some(v1::PlanContent::from(&plan("Walk to the park")))
        );
        assert_eq!(
            view.history[0].recorded_at,
            Some(timestamp(agreed.meta.recorded_at))
        );
        assert_eq!(
            view.history[2].recorded_at,
            Some(timestamp(again.meta.recorded_at))
        );
    }

    #[test]
    fn corrections_replace_only_the_fields_they_carry() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let person = id(7);
        let mut step = |event: PersonEvent| {
            apply_one(
                &db,
                &log.push(person, person, "GP001", Event::Person(event)),
            )
        };
        step(PersonEvent::Registered { profile: profile() });
        let carer = Carer {
            name: short("Bea Example"),
            relationship: short("Daughter"),
            contact: None,
        };
        step(PersonEvent::DetailsCorrected {
            correction: Correction {
                given_name: Some(short("Adaline")),
                carers: Some(vec![carer.clone()]),
                ..Correction::default()
            },
            reason: long("Typo"),
        });
        step(PersonEvent::DetailsCorrected {
            correction: Correction {
                communication_needs: Some(long("Hard of hearing")),
                ..Correction::default()
            },
            reason: long("Added"),
        });

        let record = record(&db, person);
        assert_eq!(record.person_id, person.to_string());
        assert_eq!(record.profile_corrections, 2);
        let p = record.profile.expect("profile");
        assert_eq!(p.nhs_number, "9990001235");
        assert_eq!(p.given_name, "Adaline");
        assert_eq!(p.family_name, "Example");
        assert_eq!(p.date_of_birth, "1941-05-17");
        assert_eq!(p.what_matters, "Getting back to my garden");
        assert_eq!(p.communication_needs, "Hard of hearing");
        assert_eq!(p.carers, vec![v1::Carer::from(&carer)]);
        // Each correction says why, and what the corrected fields were before (only those).
        let first = &record.corrections[0];
        assert_eq!(first.reason, "Typo");
        assert_eq!(first.fields, vec!["given_name", "carers"]);
        assert_eq!(
            first.previous,
            Some(v1::Profile {
                given_name: "Ada".to_owned(),
                ..v1::Profile::default()
            })
        );
        let second = &record.corrections[1];
        assert_eq!(second.reason, "Added");
        assert_eq!(
            second.previous,
            Some(v1::Profile::default()),
            "communication needs were empty before"
        );
    }

    #[test]
    fn assessments_consents_meetings_and_feedback_are_projected() {
        let (_dir, db) = open();
        let mut log = Log::default();
        let person = id(8);
        let (assessment_id, consent_id, meeting_id, feedback_id) =
            (id(801), id(802), id(803), id(804));
        let findings = Findings {
            summary: long("Needs help with meals and washing"),
            outcomes_not_achieved: vec![
                CareActOutcome::ManagingNutrition,
                CareActOutcome::PersonalHygiene,
            ],
            wellbeing_impact: Some(long("Significant")),
            needs_arise_from_impairment_or_illness: true,
            significant_impact_on_wellbeing: true,
        };
        let eligibility = Eligibility::determine(&findings);
        let mut step = |aggregate: Uuid, org: &str, event: Event| {
            apply_one(&db, &log.push(person, aggregate, org, event))
        };
        let a = Event::Assessment;
        step(
            assessment_id,
            "COUNCIL1",
            a(AssessmentEvent::Requested {
                request: AssessmentRequest {
                    kind: AssessmentKind::CareActNeeds,
                    assessors: vec![code("COUNCIL1"), code("CNURSE1")],
                    referral_id: None,
                    due_by: Some(ymd(2026, 3, 20)),
                },
            }),
        );
        for org in ["COUNCIL1", "CNURSE1"] {
            step(
                assessment_id,
                org,
                a(AssessmentEvent::ContributionRecorded {
                    organisation: code(org),
                    summary: long(&format!("Seen by {org}")),
                }),
            );
        }
        step(
            assessment_id,
            "COUNCIL1",
            a(AssessmentEvent::Completed {
                findings: findings.clone(),
            }),
        );
        step(
            assessment_id,
            "COUNCIL1",
            a(AssessmentEvent::EligibilityDetermined {
                eligibility: eligibility.clone(),
            }),
        );

        let terms = ConsentTerms {
            decision: ConsentDecision::Deny,
            purpose: Purpose::CareCoordination,
            partners: vec![code("VOL01")],
            data_classes: vec![DataClass::Contact],
            valid_from: ymd(2026, 2, 1),
            valid_until: None,
            capacity_assessed: true,
        };
        step(
            consent_id,
            "GP001",
            Event::Consent(ConsentEvent::Recorded {
                terms: terms.clone(),
            }),
        );
        step(
            consent_id,
            "GP001",
            Event::Consent(ConsentEvent::Withdrawn {
                reason: long("Changed mind"),
            }),
        );

        let meeting_record = MeetingRecord {
            held_at: base(),
            attendees: vec![code("GP001"), code("COUNCIL1")],
            decisions: vec![long("Start reablement")],
            actions: vec![
                MeetingAction {
                    description: long("Book visit"),
                    owner: code("GP001"),
                    due_by: ymd(2026, 3, 5),
                },
                MeetingAction {
                    description: long("Order rail"),
                    owner: code("COUNCIL1"),
                    due_by: ymd(2026, 3, 6),
                },
            ],
        };
        step(
            meeting_id,
            "GP001",
            Event::Meeting(MeetingEvent::Recorded {
                meeting: meeting_record.clone(),
            }),
        );
        step(
            meeting_id,
            "COUNCIL1",
            Event::Meeting(MeetingEvent::ActionCompleted {
                action: 2,
                note: Some(long("Rail fitted")),
            }),
        );

        let feedback_record = FeedbackRecord {
            source: FeedbackSource::Carer,
            anonymous: true,
            text: long("Kind staff"),
            rating: Some(5),
        };
        let feedback_event = log.push(
            person,
            feedback_id,
            "GP001",
            Event::Feedback(FeedbackEvent::Recorded {
                feedback: feedback_record.clone(),
            }),
        );
        apply_one(&db, &feedback_event);

        let record = record(&db, person);
        let view = &record.assessments[0];
        assert_eq!(view.assessment_id, assessment_id.to_string());
        assert_eq!(view.status, "completed");
        assert_eq!(view.contributors, vec!["COUNCIL1", "CNURSE1"]);
        let said: Vec<(&str, &str)> = view
            .contributions
            .iter()
            .map(|c| (c.organisation.as_str(), c.summary.as_str()))
            .collect();
        assert_eq!(
            said,
            vec![
                ("COUNCIL1", "Seen by COUNCIL1"),
                ("CNURSE1", "Seen by CNURSE1")
            ]
        );
        assert!(view.contributions.iter().all(|c| c.recorded_at.is_some()));
        assert_eq!(view.findings, Some(v1::Findings::from(&findings)));
        assert_eq!(view.eligible, Some(true));
        assert_eq!(view.eligibility_reasons, eligibility.reasons);
        assert!(view.requested_at.is_some());
        let seconds = |ts: Option<prost_types::Timestamp>| ts.expect("set").seconds;
        assert!(seconds(view.completed_at) > seconds(view.requested_at));

        let view = &record.consents[0];
        assert_eq!(view.terms, Some(v1::ConsentTerms::from(&terms)));
        assert!(view.withdrawn);
        assert!(view.recorded_at.is_some());

        let view = &record.meetings[0];
        assert_eq!(view.meeting, Some(v1::MeetingRecord::from(&meeting_record)));
        assert_eq!(view.completed_actions, vec![2]);
        assert_eq!(view.completions.len(), 1);
        let done = &view.completions[0];
        assert_eq!(
            (done.action, done.note.as_str(), done.organisation.as_str()),
            (2, "Rail fitted", "COUNCIL1")
        );
        assert!(!done.user.is_empty() && done.completed_at.is_some());

        let view = &record.feedback[0];
        assert_eq!(view.feedback_id, feedback_id.to_string());
        assert_eq!(
            view.feedback,
            Some(v1::FeedbackRecord::from(&feedback_record))
        );
        assert_eq!(
            view.recorded_at,
            Some(timestamp(feedback_event.meta.recorded_at))
        );
    }

    #[test]
    fn a_corrupt_record_is_reported_not_overwritten() {
        let (_dir, db) = open();
        let person = id(9);
        let txn = db.begin_write().expect("begin write");
        {
            let mut table = txn.open_table(RECORDS).expect("records");
            table
                .insert(person.as_u128(), [0xff_u8, 0xff, 0xff].as_slice())
                .expect("insert");
        }
        let mut log = Log::default();
        let event = log.push(
            person,
            person,
            "GP001",
            Event::Person(PersonEvent::Registered { profile: profile() }),
        );
        match apply(&txn, &event) {
            Err(ProjectError::Corrupt { table, .. }) => assert_eq!(table, "care_records"),
            other => panic!("expected a corrupt record, got {other:?}"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Determinism

    /// Events touching every view, for two people, interleaved.
    fn mixed_log() -> Vec<RecordedEvent> {
        let mut log = Log::default();
        let (p1, p2) = (id(11), id(12));
        let (team1, team2, ep1, ep2, ref1, ref2, plan1) = (
            id(1101),
            id(1201),
            id(1102),
            id(1202),
            id(1103),
            id(1203),
            id(1104),
        );
        let (a1, a2) = (member("ORGA", Some("P1")), member("ORGA", Some("P2")));
        log.push(
            p1,
            p1,
            "GP001",
            Event::Person(PersonEvent::Registered { profile: profile() }),
        );
        log.push(
            p2,
            p2,
            "GP001",
            Event::Person(PersonEvent::Registered { profile: profile() }),
        );
        for (person, team) in [(p1, team1), (p2, team2)] {
            for m in [&a1, &a2] {
                log.push(
                    person,
                    team,
                    "ORGA",
                    t(CareTeamEvent::MemberAdded {
                        member: m.clone(),
                        role: CareTeamRole::CommunityNursing,
                        since: ymd(2026, 1, 2),
                    }),
                );
            }
            log.push(
                person,
                team,
                "ORGA",
                t(CareTeamEvent::CoordinatorNamed { member: a1.clone() }),
            );
        }
        log.push(
            p1,
            team1,
            "ORGA",
            t(CareTeamEvent::CoordinatorNamed { member: a2.clone() }),
        );
        log.push(
            p1,
            plan1,
            "GP001",
            Event::CarePlan(CarePlanEvent::Agreed {
                plan_version: 1,
                plan: plan("Stay at home"),
            }),
        );
        for (person, referral) in [(p1, ref1), (p2, ref2)] {
            log.push(
                person,
                referral,
                "RXH01",
                r(ReferralEvent::Submitted {
                    referral: new_referral(Priority::Asap),
                }),
            );
        }
        log.push(p1, ref1, "SPA01", r(ReferralEvent::Received));
        for (person, ep) in [(p1, ep1), (p2, ep2)] {
            log.push(person, ep, "RXH01", admitted());
            log.push(
                person,
                ep,
                "RXH01",
                d(DischargeEvent::ExpectedDischargeDateSet {
                    expected: ymd(2026, 3, 4),
                }),
            );
            log.push(
                person,
                ep,
                "RXH01",
                d(DischargeEvent::DischargeReady {
                    discharge_ready_date: ymd(2026, 3, 5),
                    supersedes: None,
                }),
            );
        }
        log.push(
            p2,
            ep2,
            "RXH01",
            d(DischargeEvent::PathwayAssigned {
                pathway: Pathway::P0,
            }),
        );
        log.push(
            p1,
            ep1,
            "RXH01",
            d(DischargeEvent::DelayReasonRecorded {
                reason: DelayReason::AwaitingTherapyDecision,
                note: Some(long("Awaiting OT")),
            }),
        );
        log.push(
            p2,
            ep2,
            "RXH01",
            d(DischargeEvent::Discharged {
                discharged_at: base() + Duration::days(5),
                destination: short("Home"),
                destination_code: Some(
                    carewoven_domain::discharge::DischargeDestination::USUAL_RESIDENCE,
                ),
            }),
        );
        log.push(
            p1,
            ep1,
            "RXH01",
            d(DischargeEvent::Deteriorated {
                reason: long("Fall"),
            }),
        );
        log.push(
            p2,
            ref2,
            "SPA01",
            r(ReferralEvent::Rejected {
                reason: long("Duplicate"),
            }),
        );
        log.push(
            p1,
            team1,
            "ORGA",
            t(CareTeamEvent::MemberRemoved {
                member: a1.clone(),
                until: ymd(2026, 2, 1),
                reason: long("Left"),
            }),
        );
        log.events
    }

    #[test]
    fn rebuild_and_crash_resume_give_byte_identical_tables() {
        let events = mixed_log();

        // One transaction per event, as the live projector runs.
        let (_d1, live) = open();
        let live_changes: Vec<Vec<BoardChange>> =
            events.iter().map(|e| apply_one(&live, e)).collect();

        // A clean rebuild in one big transaction.
        let (_d2, rebuilt) = open();
        let txn = rebuilt.begin_write().expect("begin write");
        let rebuilt_changes: Vec<Vec<BoardChange>> = events
            .iter()
            .map(|e| apply(&txn, e).expect("apply"))
            .collect();
        txn.commit().expect("commit");

        // A crash mid-way: a transaction that never commits, then resume from the last commit.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("views.redb");
        let half = events.len() / 2;
        {
            let db = Database::create(&path).expect("create");
            for e in &events[..half] {
                apply_one(&db, e);
            }
            let txn = db.begin_write().expect("begin write");
            for e in &events[half..] {
                apply(&txn, e).expect("apply");
            }
            txn.abort().expect("abort");
        }
        let resumed = Database::create(&path).expect("reopen");
        for e in &events[half..] {
            apply_one(&resumed, e);
        }

        let expected = dump(&live);
        assert!(!expected.records.is_empty());
        assert!(!expected.board.is_empty());
        assert!(!expected.caseload.is_empty());
        assert!(!expected.inbox.is_empty());
        assert_eq!(dump(&rebuilt), expected);
        assert_eq!(dump(&resumed), expected);
        assert_eq!(rebuilt_changes, live_changes);

        // And the interesting end state of the mix.
        let (p1, p2) = (id(11), id(12));
        assert_eq!(
            caseload_of(&live, p1),
            vec!["coordinator:ORGA/P2", "organisation:ORGA"]
        );
        assert_eq!(
            caseload_of(&live, p2),
            vec!["coordinator:ORGA/P1", "organisation:ORGA"]
        );
        let on_board: Vec<(String, String)> = board(&live)
            .into_iter()
            .map(|e| (e.person_id, e.status))
            .collect();
        assert_eq!(on_board, vec![(p2.to_string(), "discharged".to_owned())]);
        assert_eq!(expected.inbox.len(), 1);
        assert_eq!(expected.inbox[0].1, id(1103).as_u128());
    }
}
