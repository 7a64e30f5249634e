//! Carewoven's information-governance rules (domain.md, "Information-governance rules"), as
//! pure functions over a fold of the event log.
//!
//! [`Governance`] is folded from events in log order ([`Governance::apply`]). It knows the
//! registry (organisations, their services, their data-sharing agreements) and, per person,
//! the **grounds** of each organisation's legitimate relationship (ig-model.md: registered
//! GP, care team, hospital stay, receiving a discharge, receiving a referral, emergency
//! access), when each started and when it ends, and which objections are active. From it:
//!
//! - [`Governance::authorise`] decides whether an organisation may issue a command;
//! - [`Governance::check_references`] whether every organisation and service a command names
//!   is registered;
//! - [`Governance::read_scope`] / [`Governance::may_read`] whether, and how much of, a
//!   person's record an organisation may read;
//! - [`Governance::disclosure`] what, if anything, a partner is sent of one event.
//!
//! Like the domain crate this does no IO and reads no clock: "now" is an argument, and
//! every decision is a function of the log prefix and that instant, so it can be replayed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

mod citizen;
mod people;
pub use citizen::{Citizen, IdentityLevel, Standing};
use people::People;
pub use people::{
    AssessmentLink, ConsentLink, EpisodeLink, PeopleStore, PersonAccess, PersonRef, ReferralLink,
    Unsaved,
};

use carewoven_domain::assessment::{AssessmentCommand, AssessmentEvent};
use carewoven_domain::care_plan::CarePlanCommand;
use carewoven_domain::care_team::{CareTeamCommand, CareTeamEvent};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, ConsentTerms, DataClass, Purpose};
use carewoven_domain::discharge::{DischargeCommand, DischargeEvent};
use carewoven_domain::meeting::MeetingCommand;
use carewoven_domain::organisation::{
    Organisation, OrganisationCommand, OrganisationEvent, OrganisationType, SharingAgreement,
};
use carewoven_domain::person::{PersonCommand, PersonEvent};
use carewoven_domain::referral::{ReferralCommand, ReferralEvent};
use carewoven_domain::task::{TaskCommand, TaskStatus};
use carewoven_domain::values::uk_date;
use carewoven_domain::values::{Code, NhsNumber};
use carewoven_domain::{AggregateKind, AggregateState, Command, DomainError, Event, RecordedEvent};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use uuid::Uuid;

/// What a caller may do besides acting for its organisation (token claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Maintains the registry: organisations, services, data-sharing agreements. May ask who
    /// accessed any person's record (subject access requests).
    Governance,
    /// Replays history for service reviews (secondary use, opted-out people excluded).
    Analyst,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "governance" => Some(Role::Governance),
            "analyst" => Some(Role::Analyst),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Governance => "governance",
            Role::Analyst => "analyst",
        }
    }
}

/// Who is calling: an authenticated organisation, the user within it, and its roles; or a
/// person with a citizen identity ([`Identity::citizen`]: organisation `CITIZEN`, user a
/// pseudonym, no roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub organisation: Code,
    pub user: Option<Code>,
    pub roles: Vec<Role>,
    /// Set for a person acting for themselves or as someone's proxy; `None` for an
    /// organisation.
    pub citizen: Option<Citizen>,
}

impl Identity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Why an access is refused. The message names no person and no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable machine-readable reason told to the caller (`google.rpc.ErrorInfo`).
    pub reason: &'static str,
    pub message: String,
    /// The real reason, for the audit record only, when the caller is told less (an
    /// organisation the person objected to is told what an unrelated one is told).
    pub cause: Option<&'static str>,
}

impl Denial {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Denial {
            reason,
            message: message.into(),
            cause: None,
        }
    }

    /// The reason the audit records: the real one.
    pub fn audit_reason(&self) -> &'static str {
        self.cause.unwrap_or(self.reason)
    }
}

/// How much of an event a partner is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// The whole event: its data class is in the partner's agreement.
    Full,
    /// Identifiers only: the event type, ids and times, never its content.
    IdentifiersOnly,
}

/// The data class an event's content belongs to, if any. `None`: registry facts and consent
/// decisions, which partners receive as identifiers only.
pub fn data_class(event: &Event) -> Option<DataClass> {
    Some(match event {
        // Who broke the glass is care-team business: the coordinator is told through it.
        Event::Person(PersonEvent::EmergencyAccessAsserted { .. }) => DataClass::CareTeam,
        // Carers are contact data, as in the profile.
        Event::Person(PersonEvent::ProxyGranted { .. } | PersonEvent::ProxyRevoked { .. }) => {
            DataClass::Contact
        }
        Event::Person(_) => DataClass::Demographics,
        Event::Referral(_) => DataClass::Referrals,
        Event::Assessment(_) => DataClass::Assessments,
        Event::CarePlan(_) => DataClass::CarePlan,
        Event::CareTeam(_) => DataClass::CareTeam,
        Event::Discharge(_) => DataClass::Discharge,
        Event::Meeting(_) => DataClass::Meetings,
        Event::Feedback(_) => DataClass::Feedback,
        Event::Flag(_) => DataClass::RiskFlags,
        Event::Task(_) => DataClass::Tasks,
        Event::Consent(_) | Event::Organisation(_) => return None,
    })
}

/// The event types [`Governance::apply`] acts on.
const GOVERNANCE_EVENT_TYPES: [&str; 33] = [
    "person_registered",
    "person_details_corrected",
    "emergency_access_asserted",
    "proxy_granted",
    "proxy_revoked",
    "referral_submitted",
    "referral_rejected",
    "referral_completed",
    "referral_failed",
    "referral_cancelled",
    "referral_entered_in_error",
    "care_team_member_added",
    "care_team_member_removed",
    "care_coordinator_named",
    "person_admitted",
    "service_requested",
    "discharge_agreed",
    "handover_accepted",
    "discharge_episode_closed",
    "person_died",
    "person_self_discharged",
    "consent_recorded",
    "consent_withdrawn",
    // The assessing ground.
    "assessment_requested",
    "assessor_replaced",
    "assessment_completed",
    "assessment_cancelled",
    "organisation_registered",
    "organisation_service_added",
    "sharing_agreement_recorded",
    "sharing_agreement_ended",
    // Not acted on today, listed so a future rule on them is not silently skipped:
    "care_coordinator_unassigned",
    "person_discharged",
];

/// The purposes under which partners receive feeds and read records: individual care.
const CARE_PURPOSES: [Purpose; 2] = [Purpose::DirectCare, Purpose::CareCoordination];

/// Deployment settings of the relationship model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a hospital stay, a receiving role in a discharge, or a completed or failed
    /// referral remains a ground after its episode or referral reached a terminal state.
    pub relationship_period: TimeDelta,
}

/// The default [`Settings::relationship_period`]: 28 days.
pub const DEFAULT_RELATIONSHIP_PERIOD_DAYS: i64 = 28;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            relationship_period: TimeDelta::days(DEFAULT_RELATIONSHIP_PERIOD_DAYS),
        }
    }
}

/// A ground for a legitimate relationship (ig-model.md, "Legitimate relationship").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ground {
    /// The practice recorded as the person's GP.
    RegisteredGp,
    /// A member organisation of the person's care team.
    CareTeam,
    /// The organisation owning the site of a discharge episode.
    HospitalStay,
    /// The owner of a service requested or agreed in a discharge, or the handover
    /// organisation.
    ReceivingDischarge,
    /// The owner of a referral's receiving service.
    ReceivingReferral,
    /// Emergency ("break glass") access, until it expires.
    EmergencyAccess,
    /// An organisation named to assess (or contribute to a joint assessment), until the
    /// assessment is completed or cancelled, or it is replaced.
    Assessing,
}

impl Ground {
    pub fn as_str(self) -> &'static str {
        match self {
            Ground::RegisteredGp => "registered_gp",
            Ground::CareTeam => "care_team",
            Ground::HospitalStay => "hospital_stay",
            Ground::ReceivingDischarge => "receiving_discharge",
            Ground::ReceivingReferral => "receiving_referral",
            Ground::EmergencyAccess => "emergency_access",
            Ground::Assessing => "assessing",
        }
    }

    /// A ground that lets its organisation add itself to the care team. Emergency access
    /// does not: it must not turn into a standing relationship.
    fn may_join_team(self) -> bool {
        !matches!(self, Ground::EmergencyAccess | Ground::CareTeam)
    }
}

impl fmt::Display for Ground {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Organisation types registered as providing direct care: they may assert emergency access.
/// Voluntary and other organisations may not.
pub fn provides_direct_care(org_type: OrganisationType) -> bool {
    matches!(
        org_type,
        OrganisationType::NhsTrust
            | OrganisationType::GeneralPractice
            | OrganisationType::LocalAuthority
            | OrganisationType::CommunityProvider
            | OrganisationType::CareProvider
    )
}

/// One emergency access assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyAccess {
    pub person: Uuid,
    pub organisation: Code,
    pub asserted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Log position of the assertion.
    pub position: u64,
}

/// A ground that ended with time ([`Governance::grounds_ended`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedGround {
    pub person: Uuid,
    pub organisation: Code,
    pub ground: Ground,
    pub ended_at: DateTime<Utc>,
}

impl PersonAccess {
    /// The grounds `org` holds at `at`.
    fn grounds(&self, org: &Code, at: DateTime<Utc>, settings: &Settings) -> BTreeSet<Ground> {
        let lasts = |ended: Option<DateTime<Utc>>| {
            ended.is_none_or(|ended| at < ended + settings.relationship_period)
        };
        let mut grounds = BTreeSet::new();
        if self.registered_gp.as_ref() == Some(org) {
            grounds.insert(Ground::RegisteredGp);
        }
        if self.on_care_team(org) {
            grounds.insert(Ground::CareTeam);
        }
        for e in self.episodes.values().filter(|e| lasts(e.ended_at)) {
            if e.managing.as_ref() == Some(org) {
                grounds.insert(Ground::HospitalStay);
            }
            if e.receiving.contains(org) {
                grounds.insert(Ground::ReceivingDischarge);
            }
        }
        if self
            .referrals
            .values()
            .any(|r| r.to.as_ref() == Some(org) && !r.closed_early && lasts(r.finished_at))
        {
            grounds.insert(Ground::ReceivingReferral);
        }
        if self
            .emergency
            .iter()
            .any(|(o, expires)| o == org && at < *expires)
        {
            grounds.insert(Ground::EmergencyAccess);
        }
        if self
            .assessments
            .values()
            .any(|a| !a.ended && a.assessors.contains(org))
        {
            grounds.insert(Ground::Assessing);
        }
        grounds
    }

    /// Every organisation that may hold a ground (a superset; filter with `grounds`).
    fn candidates(&self) -> BTreeSet<Code> {
        let mut orgs: BTreeSet<Code> = self
            .care_team
            .iter()
            .map(|m| m.organisation.clone())
            .collect();
        orgs.extend(self.registered_gp.iter().cloned());
        for r in self.referrals.values() {
            orgs.extend(r.to.iter().cloned());
        }
        for e in self.episodes.values() {
            orgs.extend(e.managing.iter().cloned());
            orgs.extend(e.receiving.iter().cloned());
        }
        orgs.extend(self.emergency.iter().map(|(o, _)| o.clone()));
        for a in self.assessments.values().filter(|a| !a.ended) {
            orgs.extend(a.assessors.iter().cloned());
        }
        orgs
    }

    fn related_orgs(&self, at: DateTime<Utc>, settings: &Settings) -> BTreeSet<Code> {
        self.candidates()
            .into_iter()
            .filter(|o| !self.grounds(o, at, settings).is_empty())
            .collect()
    }

    fn on_care_team(&self, org: &Code) -> bool {
        self.care_team.iter().any(|m| &m.organisation == org)
    }

    /// Active objections to `org` for individual care on `day` (consent ids and terms).
    fn objections_to<'a>(
        &'a self,
        org: &'a Code,
        day: NaiveDate,
    ) -> impl Iterator<Item = &'a ConsentTerms> + 'a {
        self.consents.values().filter_map(move |c| {
            let t = &c.terms;
            (!c.withdrawn
                && t.decision == ConsentDecision::Deny
                && CARE_PURPOSES.contains(&t.purpose)
                && t.partners.contains(org)
                && t.valid_from <= day
                && t.valid_until.is_none_or(|until| day <= until))
            .then_some(t)
        })
    }

    /// An active objection to `org` for individual care on `day`, covering `class` (an
    /// objection naming no data classes covers all; `None`, consent events themselves and
    /// whole-record decisions, is covered by any objection).
    fn objects_to(&self, org: &Code, day: NaiveDate, class: Option<DataClass>) -> bool {
        self.objections_to(org, day).any(|t| {
            t.data_classes.is_empty() || class.is_none_or(|class| t.data_classes.contains(&class))
        })
    }

    /// An objection to `org` covering the whole record.
    fn objects_to_all(&self, org: &Code, day: NaiveDate) -> bool {
        self.objections_to(org, day)
            .any(|t| t.data_classes.is_empty())
    }
}

/// How much of a record a reader may see: every data class but those withheld.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadScope {
    /// Classes outside the reader's agreements, or under a partial objection to it.
    pub withheld: BTreeSet<DataClass>,
}

impl ReadScope {
    pub fn allows(&self, class: DataClass) -> bool {
        !self.withheld.contains(&class)
    }
}

/// Every data class, in a fixed order.
pub const ALL_DATA_CLASSES: [DataClass; 11] = [
    DataClass::Demographics,
    DataClass::Contact,
    DataClass::Referrals,
    DataClass::Assessments,
    DataClass::CarePlan,
    DataClass::CareTeam,
    DataClass::Discharge,
    DataClass::Meetings,
    DataClass::Feedback,
    DataClass::RiskFlags,
    DataClass::Tasks,
];

/// The governance state folded from the log.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    settings: Settings,
    orgs: HashMap<Code, Organisation>,
    service_owner: HashMap<Code, Code>,
    org_ids: HashMap<Uuid, Code>,
    /// Per person: in memory, or in a checkpoint store behind a bounded cache.
    people: People,
    emergency: Vec<EmergencyAccess>,
    /// People with an event the follower could not decode, and the first such position:
    /// their record is closed to everyone (it may have been an objection), nobody else's.
    undecodable: HashMap<Uuid, u64>,
    /// Log position of the last event applied.
    position: u64,
}

impl Governance {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_settings(settings: Settings) -> Self {
        Governance {
            settings,
            ..Self::default()
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Log position of the last event applied (0: none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether an event of this type can change what [`Governance::apply`] knows. Others
    /// (most of the log: dates, pathways, assessments, plans...) are only counted, so a
    /// follower may skip decoding them. Keep in step with `apply`.
    pub fn relevant(event_type: &str) -> bool {
        GOVERNANCE_EVENT_TYPES.contains(&event_type)
    }

    /// Record that the event at `position` about `person` could not be decoded. From then on
    /// every decision about that person fails closed ([`Governance::undecodable`]); other
    /// people are unaffected. The position still counts as applied.
    pub fn mark_undecodable(&mut self, person: Uuid, position: u64) {
        self.position = self.position.max(position);
        self.undecodable.entry(person).or_insert(position);
    }

    /// The first undecodable event about this person, if any.
    ///
    /// A person the checkpoint store cannot read counts too (position 0): fail closed.
    pub fn undecodable(&self, person: Uuid) -> Option<u64> {
        if let Some(position) = self.undecodable.get(&person) {
            return Some(*position);
        }
        self.people.get(person).is_err().then_some(0)
    }

    /// Count the log up to `position` as applied: the events between cannot change access
    /// (see [`Governance::relevant`]).
    pub fn skip_to(&mut self, position: u64) {
        self.position = self.position.max(position);
    }

    /// Every person with an undecodable event, and its first position (for a checkpoint).
    pub fn undecodable_people(&self) -> &HashMap<Uuid, u64> {
        &self.undecodable
    }

    /// Keep people's state in `store`, with at most `cache` people read back from it held
    /// in memory. Call it on an empty fold, before [`Governance::restore`] and `apply`.
    pub fn with_store(mut self, store: std::sync::Arc<dyn PeopleStore>, cache: usize) -> Self {
        self.people.store = Some((store, people::Cache::new(cache)));
        self
    }

    /// Restore, from a checkpoint taken at `position`, what is kept outside the people
    /// store: the registry (its events, in log order: pass each to `apply`), the emergency
    /// accesses and the undecodable people.
    pub fn restore(
        &mut self,
        position: u64,
        emergency: Vec<EmergencyAccess>,
        undecodable: HashMap<Uuid, u64>,
    ) {
        self.position = position;
        self.emergency = emergency;
        self.undecodable = undecodable;
    }

    /// Apply a registry event from a checkpoint (it changes no person), without moving the
    /// position.
    pub fn restore_registry(&mut self, recorded: &RecordedEvent) {
        if let Event::Organisation(e) = &recorded.event {
            self.apply_registry(recorded.meta.aggregate_id, e);
        }
    }

    /// Hand what changed since the last save to the store's owner, with the position it
    /// brings the store to. Until [`Governance::end_save`] it is still read from memory.
    /// `None` when nothing changed, a save is in progress, or there is no store.
    pub fn begin_save(&mut self) -> Option<Unsaved> {
        if self.people.store.is_none()
            || !self.people.saving.people.is_empty()
            || !self.people.saving.nhs_numbers.is_empty()
        {
            return None;
        }
        let people = std::mem::take(&mut self.people.unsaved);
        let nhs_numbers = std::mem::take(&mut self.people.nhs_unsaved);
        self.people.saving = Unsaved {
            people: std::sync::Arc::new(people),
            nhs_numbers: std::sync::Arc::new(nhs_numbers),
            position: self.position,
        };
        Some(self.people.saving.clone())
    }

    /// The save begun last is stored (`true`) or failed (`false`: it is kept to be saved
    /// again with the next).
    pub fn end_save(&mut self, stored: bool) {
        let saving = std::mem::take(&mut self.people.saving);
        if stored {
            return;
        }
        let people = std::sync::Arc::try_unwrap(saving.people).unwrap_or_else(|p| (*p).clone());
        for (id, p) in people {
            self.people.unsaved.entry(id).or_insert(p);
        }
        let nhs = std::sync::Arc::try_unwrap(saving.nhs_numbers).unwrap_or_else(|n| (*n).clone());
        for (n, p) in nhs {
            self.people.nhs_unsaved.entry(n).or_insert(p);
        }
    }

    /// People held in memory: changed since the last save, being saved, and cached.
    pub fn people_in_memory(&self) -> usize {
        self.people.unsaved.len() + self.people.saving.people.len() + self.people.cached()
    }

    /// Changed since the last save.
    pub fn unsaved(&self) -> usize {
        self.people.unsaved.len()
    }

    /// The person's state, wherever it is held; `None` also when the store cannot read it
    /// ([`Governance::undecodable`] then says so).
    pub fn person(&self, person: Uuid) -> Option<PersonRef<'_>> {
        self.people.get(person).ok().flatten()
    }

    fn person_by_nhs_number(&self, nhs: &NhsNumber) -> Option<Uuid> {
        self.people.by_nhs_number(nhs).ok().flatten()
    }

    /// The store failed while applying an event about `person`: their record is closed, as
    /// for an undecodable event.
    fn store_failed(&mut self, person: Uuid, position: u64, _reason: &str) {
        self.undecodable.entry(person).or_insert(position);
    }

    /// Fold one event in (events must come in log order).
    pub fn apply(&mut self, recorded: &RecordedEvent) {
        self.position = self.position.max(recorded.sequence);
        let meta = &recorded.meta;
        if let Event::Organisation(e) = &recorded.event {
            self.apply_registry(meta.aggregate_id, e);
            return;
        }
        let at = meta.recorded_at;
        let owner = |service: &Code| self.service_owner.get(service).cloned();
        let mut links = match self.people.take(meta.person_id) {
            Ok(links) => links,
            Err(e) => {
                // The store could not give the person's state: fail closed for them.
                self.store_failed(meta.person_id, recorded.sequence, &e.0);
                return;
            }
        };
        match &recorded.event {
            Event::Person(PersonEvent::Registered { profile }) => {
                links.nhs_number = Some(profile.nhs_number.clone());
                links.date_of_birth = Some(profile.date_of_birth);
                links.registered_gp = profile.registered_gp.clone();
                self.people
                    .set_nhs_number(profile.nhs_number.clone(), Some(meta.person_id));
            }
            Event::Person(PersonEvent::DetailsCorrected { correction, .. }) => {
                if let Some(nhs) = &correction.nhs_number {
                    if let Some(old) = links.nhs_number.replace(nhs.clone()) {
                        self.people.set_nhs_number(old, None);
                    }
                    self.people
                        .set_nhs_number(nhs.clone(), Some(meta.person_id));
                }
                if let Some(dob) = correction.date_of_birth {
                    links.date_of_birth = Some(dob);
                }
                if let Some(gp) = &correction.registered_gp {
                    links.registered_gp = Some(gp.clone());
                }
            }
            Event::Person(PersonEvent::EmergencyAccessAsserted {
                organisation,
                expires_at,
                ..
            }) => {
                links.emergency.push((organisation.clone(), *expires_at));
                self.emergency.push(EmergencyAccess {
                    person: meta.person_id,
                    organisation: organisation.clone(),
                    asserted_at: at,
                    expires_at: *expires_at,
                    position: recorded.sequence,
                });
            }
            Event::Person(PersonEvent::ProxyGranted { grant }) => {
                let scope = grant.scope.clone();
                match links
                    .proxies
                    .iter_mut()
                    .find(|(carer, _)| carer == &grant.carer_nhs_number)
                {
                    Some((_, granted)) => *granted = scope,
                    None => links.proxies.push((grant.carer_nhs_number.clone(), scope)),
                }
            }
            Event::Person(PersonEvent::ProxyRevoked {
                carer_nhs_number, ..
            }) => {
                links.proxies.retain(|(carer, _)| carer != carer_nhs_number);
            }
            Event::Referral(e) => {
                let link = links.referrals.entry(meta.aggregate_id).or_default();
                match e {
                    ReferralEvent::Submitted { referral } => {
                        link.from = Some(referral.from_organisation.clone());
                        link.to = owner(&referral.to_service);
                    }
                    ReferralEvent::Rejected { .. }
                    | ReferralEvent::Cancelled { .. }
                    | ReferralEvent::EnteredInError { .. } => link.closed_early = true,
                    ReferralEvent::Completed | ReferralEvent::Failed { .. } => {
                        link.finished_at.get_or_insert(at);
                    }
                    _ => {}
                }
            }
            Event::CareTeam(CareTeamEvent::MemberAdded { member, .. })
                if !links.care_team.contains(member) =>
            {
                links.care_team.push(member.clone());
            }
            Event::CareTeam(CareTeamEvent::MemberRemoved { member, .. }) => {
                links.care_team.retain(|m| m != member);
                if links.coordinator.as_ref() == Some(&member.organisation)
                    && !links.on_care_team(&member.organisation)
                {
                    links.coordinator = None;
                }
            }
            Event::CareTeam(CareTeamEvent::CoordinatorNamed { member }) => {
                links.coordinator = Some(member.organisation.clone());
            }
            Event::Discharge(e) => {
                let link = links.episodes.entry(meta.aggregate_id).or_default();
                match e {
                    DischargeEvent::Admitted { site, .. } => link.managing = owner(site),
                    DischargeEvent::ServiceRequested { service }
                    | DischargeEvent::DischargeAgreed { service, .. } => {
                        link.receiving.extend(owner(service));
                    }
                    DischargeEvent::HandoverAccepted { organisation } => {
                        link.receiving.insert(organisation.clone());
                    }
                    DischargeEvent::Closed
                    | DischargeEvent::Died { .. }
                    | DischargeEvent::SelfDischarged { .. } => {
                        link.ended_at.get_or_insert(at);
                    }
                    _ => {}
                }
            }
            Event::Assessment(e) => {
                let link = links.assessments.entry(meta.aggregate_id).or_default();
                match e {
                    AssessmentEvent::Requested { request } => {
                        link.requested_by = Some(meta.organisation.clone());
                        link.assessors = request.assessors.clone();
                    }
                    AssessmentEvent::AssessorReplaced { replaced, by, .. } => {
                        for a in &mut link.assessors {
                            if a == replaced {
                                *a = by.clone();
                            }
                        }
                    }
                    AssessmentEvent::Completed { .. } | AssessmentEvent::Cancelled { .. } => {
                        link.ended = true;
                    }
                    AssessmentEvent::ContributionRecorded { .. }
                    | AssessmentEvent::EligibilityDetermined { .. } => {}
                }
            }
            Event::Consent(ConsentEvent::Recorded { terms }) => {
                links.consents.insert(
                    meta.aggregate_id,
                    ConsentLink {
                        terms: terms.clone(),
                        withdrawn: false,
                    },
                );
            }
            Event::Consent(ConsentEvent::Withdrawn { .. }) => {
                if let Some(c) = links.consents.get_mut(&meta.aggregate_id) {
                    c.withdrawn = true;
                }
            }
            _ => {}
        }
        self.people.put(meta.person_id, links);
    }

    fn apply_registry(&mut self, organisation_id: Uuid, event: &OrganisationEvent) {
        let code = match event {
            OrganisationEvent::Registered { code, services, .. } => {
                for s in services {
                    // A service belongs to the first organisation that registered it.
                    self.service_owner
                        .entry(s.clone())
                        .or_insert_with(|| code.clone());
                }
                self.org_ids.insert(organisation_id, code.clone());
                code.clone()
            }
            _ => match self.org_ids.get(&organisation_id) {
                Some(code) => code.clone(),
                None => return,
            },
        };
        let state = self.orgs.remove(&code);
        let folded = carewoven_domain::evolve(
            state.clone().map(AggregateState::Organisation),
            &Event::Organisation(event.clone()),
        );
        // The log only holds events `decide` produced, so a fact that does not fold cannot
        // occur; if it did, it is ignored rather than widening anyone's access.
        if let Ok(AggregateState::Organisation(org)) = folded {
            if let OrganisationEvent::ServiceAdded { service } = event {
                self.service_owner
                    .entry(service.clone())
                    .or_insert_with(|| org.code.clone());
            }
            self.orgs.insert(code, org);
        } else if let Some(previous) = state {
            self.orgs.insert(code, previous);
        }
    }

    /// The registered organisation, if any.
    pub fn organisation(&self, code: &Code) -> Option<&Organisation> {
        self.orgs.get(code)
    }

    /// Every registered organisation, by code.
    pub fn organisations(&self) -> impl Iterator<Item = &Organisation> {
        self.orgs.values()
    }

    /// The organisation a service or site belongs to.
    pub fn service_owner(&self, service: &Code) -> Option<&Code> {
        self.service_owner.get(service)
    }

    /// The person's NHS number, as the log last recorded it.
    pub fn nhs_number(&self, person: Uuid) -> Option<NhsNumber> {
        self.person(person).and_then(|p| p.nhs_number.clone())
    }

    /// The person with this NHS number and date of birth, as a demographics trace finds
    /// them: both must match, and a mismatch is indistinguishable from no such person.
    pub fn find_person(&self, nhs: &NhsNumber, date_of_birth: NaiveDate) -> Option<Uuid> {
        let person = self.person_by_nhs_number(nhs)?;
        (self.person(person)?.date_of_birth == Some(date_of_birth)).then_some(person)
    }

    /// The organisation named as the person's care coordinator, if any.
    pub fn coordinator(&self, person: Uuid) -> Option<Code> {
        self.person(person).and_then(|p| p.coordinator.clone())
    }

    /// The person's registered GP practice, if any.
    pub fn registered_gp(&self, person: Uuid) -> Option<Code> {
        self.person(person).and_then(|p| p.registered_gp.clone())
    }

    /// Every emergency access asserted, in log order (for the governance role's review).
    pub fn emergency_accesses(&self) -> &[EmergencyAccess] {
        &self.emergency
    }

    /// Every ground that ends with time in `(after, until]`: a hospital stay or receiving
    /// role the set period after its episode's terminal state, a completed or failed
    /// referral the set period after it, an emergency access at its expiry. Ordered by the
    /// instant it ended, then person and organisation. Grounds ended by an event (a
    /// care-team removal, a rejected referral) are not listed: the event is their end.
    ///
    /// With a store, fails if the store cannot say who may have such a ground.
    pub fn grounds_ended(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<EndedGround>, String> {
        let period = self.settings.relationship_period;
        let mut out = Vec::new();
        let mut push = |person: Uuid, organisation: &Code, ground: Ground, ended_at| {
            if after < ended_at && ended_at <= until {
                out.push(EndedGround {
                    person,
                    organisation: organisation.clone(),
                    ground,
                    ended_at,
                });
            }
        };
        let candidates = self
            .people
            .ending_between(after - period, until)
            .map_err(|e| e.0)?;
        for person in &candidates {
            let Some(p) = self.person(*person) else {
                continue;
            };
            for e in p.episodes.values() {
                let Some(ended) = e.ended_at else { continue };
                if let Some(m) = &e.managing {
                    push(*person, m, Ground::HospitalStay, ended + period);
                }
                for r in &e.receiving {
                    push(*person, r, Ground::ReceivingDischarge, ended + period);
                }
            }
            for r in p.referrals.values().filter(|r| !r.closed_early) {
                if let (Some(to), Some(finished)) = (&r.to, r.finished_at) {
                    push(*person, to, Ground::ReceivingReferral, finished + period);
                }
            }
            for (org, expires) in &p.emergency {
                push(*person, org, Ground::EmergencyAccess, *expires);
            }
        }
        out.sort_by(|a, b| {
            (a.ended_at, a.person, a.organisation.as_str()).cmp(&(
                b.ended_at,
                b.person,
                b.organisation.as_str(),
            ))
        });
        out.dedup();
        Ok(out)
    }

    /// Organisations with a legitimate relationship with the person at `at`.
    pub fn related_orgs(&self, person: Uuid, at: DateTime<Utc>) -> BTreeSet<Code> {
        self.person(person)
            .map(|p| p.related_orgs(at, &self.settings))
            .unwrap_or_default()
    }

    /// The grounds `org` holds for the person at `at` (empty: no relationship).
    pub fn grounds(&self, person: Uuid, org: &Code, at: DateTime<Utc>) -> BTreeSet<Ground> {
        self.person(person)
            .map(|p| p.grounds(org, at, &self.settings))
            .unwrap_or_default()
    }

    /// Whether `org` has a legitimate relationship with the person at `at`.
    pub fn related(&self, person: Uuid, org: &Code, at: DateTime<Utc>) -> bool {
        !self.grounds(person, org, at).is_empty()
    }

    /// Whether an objection to `org` covering the whole record is active on `at`'s UK day.
    pub fn objects_to(&self, person: Uuid, org: &Code, at: DateTime<Utc>) -> bool {
        self.person(person)
            .is_some_and(|p| p.objects_to_all(org, uk_date(at)))
    }

    /// The agreement under which `org` may receive or read for individual care on `day`.
    pub fn agreement_in_force(&self, org: &Code, day: NaiveDate) -> Option<&SharingAgreement> {
        self.agreements_in_force(org, day).next()
    }

    fn agreements_in_force(
        &self,
        org: &Code,
        day: NaiveDate,
    ) -> impl Iterator<Item = &SharingAgreement> {
        self.orgs.get(org).into_iter().flat_map(move |o| {
            o.agreements_in_force(day)
                .filter(|a| a.purposes.iter().any(|p| CARE_PURPOSES.contains(p)))
        })
    }

    /// May `who` read this person's record at `now`? A legitimate relationship, no objection
    /// to that organisation covering the whole record, and a data-sharing agreement for
    /// individual care in force on the UK day. The answer says which data classes are
    /// withheld: those outside every agreement in force and those under a partial objection.
    ///
    /// A caller without a ground, one the person objected to, and a caller asking about a
    /// person who does not exist all get the same denial (the audit keeps the real cause).
    pub fn read_scope(
        &self,
        who: &Identity,
        person: Uuid,
        now: DateTime<Utc>,
    ) -> Result<ReadScope, Denial> {
        if let Some(citizen) = &who.citizen {
            return self.citizen_read_scope(citizen, person);
        }
        let org = &who.organisation;
        let day = uk_date(now);
        let Some(access) = self.person(person) else {
            return Err(no_relationship(org));
        };
        if access.grounds(org, now, &self.settings).is_empty() {
            return Err(no_relationship(org));
        }
        if self.undecodable(person).is_some() {
            return Err(record_unreadable());
        }
        if access.objects_to_all(org, day) {
            return Err(no_relationship(org).because("OBJECTION"));
        }
        let agreements: Vec<&SharingAgreement> = self.agreements_in_force(org, day).collect();
        if agreements.is_empty() {
            return Err(Denial::new(
                "NO_AGREEMENT_IN_FORCE",
                format!("{org} has no data-sharing agreement for individual care in force"),
            ));
        }
        let withheld = ALL_DATA_CLASSES
            .into_iter()
            .filter(|class| {
                !agreements.iter().any(|a| a.data_classes.contains(class))
                    || access.objects_to(org, day, Some(*class))
            })
            .collect();
        Ok(ReadScope { withheld })
    }

    /// [`Governance::read_scope`], when only yes or no matters.
    pub fn may_read(&self, who: &Identity, person: Uuid, now: DateTime<Utc>) -> Result<(), Denial> {
        self.read_scope(who, person, now).map(|_| ())
    }

    /// What `partner` is sent of `event`, deciding at delivery time (`now`, for the
    /// agreements). Call it after the event has been applied, with `was_related` telling
    /// whether the partner had a relationship just before it: the event that starts a
    /// relationship and the event that ends it are delivered, nothing after the end and
    /// nothing before the start. Grounds are judged at the event's recorded time, so a
    /// ground that lapsed with the set period carries nothing recorded after it.
    pub fn disclosure(
        &self,
        recorded: &RecordedEvent,
        partner: &Code,
        was_related: bool,
        now: DateTime<Utc>,
    ) -> Option<Disclosure> {
        if recorded.meta.aggregate_kind == AggregateKind::Organisation {
            return None;
        }
        let person = recorded.meta.person_id;
        if self.undecodable(person).is_some() {
            return None;
        }
        let access = self.person(person)?;
        let at = recorded.meta.recorded_at;
        if !was_related && access.grounds(partner, at, &self.settings).is_empty() {
            return None;
        }
        let day = uk_date(now);
        let class = data_class(&recorded.event);
        if access.objects_to(partner, day, class) {
            return None;
        }
        // Covered by an agreement on the (UK) day it was recorded: an agreement that starts
        // later does not reach back, but a renewal does not cut off what its predecessor
        // covered.
        self.agreements_in_force(partner, uk_date(at)).next()?;
        // And by an agreement in force today; every one in force counts for data classes.
        let now: Vec<&SharingAgreement> = self.agreements_in_force(partner, day).collect();
        if now.is_empty() {
            return None;
        }
        Some(match class {
            Some(class) if now.iter().any(|a| a.data_classes.contains(&class)) => Disclosure::Full,
            _ => Disclosure::IdentifiersOnly,
        })
    }

    /// Every organisation and service `command` names must be registered (and a registered
    /// GP must be a general practice); a service may belong to one organisation only.
    /// Refusals name the command's own field (`member.organisation`, `attendees[2]`...).
    pub fn check_references(&self, command: &Command) -> Result<(), DomainError> {
        let org = |field: String, code: &Code| -> Result<(), DomainError> {
            if self.orgs.contains_key(code) {
                Ok(())
            } else {
                Err(DomainError::invalid(
                    field,
                    format!("{code} is not a registered organisation"),
                ))
            }
        };
        let service = |field: String, code: &Code| -> Result<(), DomainError> {
            if self.service_owner.contains_key(code) {
                Ok(())
            } else {
                Err(DomainError::invalid(
                    field,
                    format!("{code} is not a registered service"),
                ))
            }
        };
        let practice = |field: &str, code: &Code| -> Result<(), DomainError> {
            match self.orgs.get(code) {
                Some(o) if o.profile.org_type == OrganisationType::GeneralPractice => Ok(()),
                Some(_) => Err(DomainError::invalid(
                    field,
                    format!("{code} is not registered as a general practice"),
                )),
                None => org(field.to_owned(), code),
            }
        };
        match command {
            Command::Person { command, .. } => match command {
                PersonCommand::Register { profile, .. } => {
                    if let Some(gp) = &profile.registered_gp {
                        practice("registered_gp", gp)?;
                    }
                }
                PersonCommand::Correct { correction, .. } => {
                    if let Some(gp) = &correction.registered_gp {
                        practice("correction.registered_gp", gp)?;
                    }
                }
                PersonCommand::AssertEmergencyAccess { .. }
                | PersonCommand::GrantProxy { .. }
                | PersonCommand::RevokeProxy { .. } => {}
            },
            Command::Referral { command, .. } => {
                if let ReferralCommand::Make { referral } = command {
                    service("to_service".to_owned(), &referral.to_service)?;
                }
            }
            Command::Assessment { command, .. } => match command {
                AssessmentCommand::Request { request } => {
                    for (i, a) in request.assessors.iter().enumerate() {
                        org(format!("assessors[{i}]"), a)?;
                    }
                }
                AssessmentCommand::Contribute { organisation, .. } => {
                    org("organisation".to_owned(), organisation)?;
                }
                AssessmentCommand::ReplaceAssessor { by, .. } => {
                    org("by".to_owned(), by)?;
                }
                _ => {}
            },
            Command::CarePlan { command, .. } => {
                let plan = match command {
                    CarePlanCommand::Agree { plan } | CarePlanCommand::Revise { plan, .. } => plan,
                };
                for (i, a) in plan.activities.iter().enumerate() {
                    org(
                        format!("plan.activities[{i}].responsible_organisation"),
                        &a.responsible_organisation,
                    )?;
                }
                if let CarePlanCommand::Revise { changes, .. } = command {
                    use carewoven_domain::care_plan::ActivityChange as A;
                    for (i, change) in changes.iter().enumerate() {
                        let (path, a) = match change {
                            A::Add { activity } => ("add", activity),
                            A::Update { activity, .. } => ("update.activity", activity),
                            A::End { .. } => continue,
                        };
                        org(
                            format!("activity_changes[{i}].{path}.responsible_organisation"),
                            &a.responsible_organisation,
                        )?;
                    }
                }
            }
            Command::CareTeam { command, .. } => {
                if let CareTeamCommand::AddMember { member, .. } = command {
                    org("member.organisation".to_owned(), &member.organisation)?;
                }
            }
            Command::Consent { command, .. } => {
                if let carewoven_domain::consent::ConsentCommand::Record { terms } = command {
                    for (i, p) in terms.partners.iter().enumerate() {
                        org(format!("partners[{i}]"), p)?;
                    }
                }
            }
            Command::Discharge { command, .. } => match command {
                DischargeCommand::RequestService { service: s }
                | DischargeCommand::AgreeDischarge { service: s, .. } => {
                    service("service".to_owned(), s)?;
                }
                DischargeCommand::AcceptHandover { organisation } => {
                    org("organisation".to_owned(), organisation)?;
                }
                _ => {}
            },
            Command::Meeting { command, .. } => {
                if let MeetingCommand::Record { meeting } = command {
                    for (i, a) in meeting.attendees.iter().enumerate() {
                        org(format!("attendees[{i}]"), a)?;
                    }
                    for (i, a) in meeting.actions.iter().enumerate() {
                        org(format!("actions[{i}].owner"), &a.owner)?;
                    }
                }
            }
            Command::Feedback { .. } | Command::Flag { .. } => {}
            Command::Task { command, .. } => match command {
                TaskCommand::Create { task } => org(
                    "task.owner.organisation".to_owned(),
                    &task.owner.organisation,
                )?,
                TaskCommand::Reassign { owner, .. } => {
                    org("owner.organisation".to_owned(), &owner.organisation)?
                }
                TaskCommand::ChangeStatus { .. } => {}
            },
            Command::Organisation { command, .. } => {
                let (field, services): (&str, Vec<&Code>) = match command {
                    OrganisationCommand::Register { code, services, .. } => {
                        // Re-registering an organisation is the domain's refusal; a service
                        // owned by another organisation is refused here.
                        let taken = services.iter().enumerate().find(|(_, s)| {
                            self.service_owner
                                .get(*s)
                                .is_some_and(|owner| owner != code)
                        });
                        if let Some((i, s)) = taken {
                            return Err(service_taken(format!("services[{i}]"), s));
                        }
                        ("services", Vec::new())
                    }
                    OrganisationCommand::AddService { service } => ("service", vec![service]),
                    _ => ("", Vec::new()),
                };
                if let Some(s) = services
                    .into_iter()
                    .find(|s| self.service_owner.contains_key(*s))
                {
                    return Err(service_taken(field.to_owned(), s));
                }
            }
        }
        Ok(())
    }

    /// May `who` issue `command` against its aggregate's current `state`, at `now`?
    ///
    /// A command is allowed only to an organisation with a role in that aggregate (see the
    /// authorisation table in ARCHITECTURE.md): the receiving service's organisation (and
    /// the referrer, to cancel) for a referral; the organisation whose site manages a
    /// discharge episode, and the agreed service's owner for the handover; care-team members
    /// for the plan and the team, to which the managing hospital, the registered GP and a
    /// receiving service may always add themselves; an organisation with a legitimate
    /// relationship for the rest. Identity fields are corrected only by the registered GP or
    /// the governance role, and objections recorded or withdrawn only by the governance
    /// role or the registered GP on the person's behalf, never by an organisation they
    /// name. An organisation the person objected to may not write to the record at all.
    /// The registry is changed only under the `governance` role.
    ///
    /// An organisation without a ground is refused the same way whether or not the person
    /// or the aggregate exists.
    pub fn authorise(
        &self,
        who: &Identity,
        command: &Command,
        state: Option<&AggregateState>,
        now: DateTime<Utc>,
    ) -> Result<(), Denial> {
        if let Some(citizen) = &who.citizen {
            return self.authorise_citizen(citizen, command);
        }
        let org = &who.organisation;
        let governance = who.has(Role::Governance);
        if let Command::Organisation { .. } = command {
            return if governance {
                Ok(())
            } else {
                Err(Denial::new(
                    "GOVERNANCE_ROLE_REQUIRED",
                    "only a caller with the governance role may change the registry",
                ))
            };
        }
        let person = command.target().person_id;
        // The governance role acts on identity and objections only, never for care.
        if governance {
            if self.undecodable(person).is_some() {
                return Err(record_unreadable());
            }
            return self.authorise_governance(command, state);
        }
        if !self.orgs.contains_key(org) {
            return Err(Denial::new(
                "ORGANISATION_NOT_REGISTERED",
                format!("organisation {org} is not registered"),
            ));
        }
        let grounds = self.grounds(person, org, now);
        // Fail closed for this person only; told as such only to those it would concern.
        if self.undecodable(person).is_some() {
            return Err(if grounds.is_empty() {
                no_relationship(org).because("RECORD_UNREADABLE")
            } else {
                record_unreadable()
            });
        }
        let decision = self.authorise_org(who, command, state, &grounds, now);
        match decision {
            Err(d) if grounds.is_empty() => Err(no_relationship(org).because(d.audit_reason())),
            other => other,
        }
    }

    fn authorise_governance(
        &self,
        command: &Command,
        state: Option<&AggregateState>,
    ) -> Result<(), Denial> {
        let allowed = match command {
            Command::Person { command, .. } => matches!(
                command,
                PersonCommand::Correct { .. }
                    | PersonCommand::GrantProxy { .. }
                    | PersonCommand::RevokeProxy { .. }
            ),
            Command::Consent { command, .. } => match (command, state) {
                (carewoven_domain::consent::ConsentCommand::Record { terms }, _) => {
                    terms.decision == ConsentDecision::Deny
                }
                (_, Some(AggregateState::Consent(c))) => c.terms.decision == ConsentDecision::Deny,
                // The consent does not exist: `decide` names it.
                (_, None) => true,
                _ => false,
            },
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Denial::new(
                "NOT_A_CARE_ROLE",
                "the governance role corrects identity and records objections; it does not act for care",
            ))
        }
    }

    fn authorise_org(
        &self,
        who: &Identity,
        command: &Command,
        state: Option<&AggregateState>,
        grounds: &BTreeSet<Ground>,
        now: DateTime<Utc>,
    ) -> Result<(), Denial> {
        let org = &who.organisation;
        let person = command.target().person_id;
        let access = self.person(person);
        let day = uk_date(now);
        let related = || {
            if grounds.is_empty() {
                Err(no_relationship(org))
            } else {
                Ok(())
            }
        };
        // Objected to: nothing may be written by it, whatever its ground (making a referral
        // to another service is the exception: it shares nothing with the objected-to).
        let objected = access.as_ref().is_some_and(|p| p.objects_to_all(org, day));
        let making_referral = matches!(
            command,
            Command::Referral {
                command: ReferralCommand::Make { .. },
                ..
            }
        );
        if objected && !making_referral {
            return Err(no_relationship(org).because("OBJECTION"));
        }
        let is_gp = grounds.contains(&Ground::RegisteredGp);
        let on_team = grounds.contains(&Ground::CareTeam);
        match command {
            Command::Person { command, .. } => match command {
                PersonCommand::Register { .. } => Ok(()),
                PersonCommand::Correct { correction, .. } => {
                    related()?;
                    if correction.touches_identity() && !is_gp {
                        Err(Denial::new(
                            "IDENTITY_CORRECTION_NOT_ALLOWED",
                            format!(
                                "only the registered GP practice or the governance role may correct the NHS number, name, date of birth or registered practice; {org} is not the registered practice"
                            ),
                        ))
                    } else {
                        Ok(())
                    }
                }
                PersonCommand::GrantProxy { .. } | PersonCommand::RevokeProxy { .. } => {
                    Err(Denial::new(
                        "PERSON_ONLY",
                        "only the person themself (or the governance role) may grant or revoke proxy access",
                    ))
                }
                PersonCommand::AssertEmergencyAccess { .. } => {
                    let direct = self
                        .orgs
                        .get(org)
                        .is_some_and(|o| provides_direct_care(o.profile.org_type));
                    if direct {
                        Ok(())
                    } else {
                        Err(Denial::new(
                            "NOT_A_DIRECT_CARE_PROVIDER",
                            format!(
                                "{org} is not registered as providing direct care and may not assert emergency access"
                            ),
                        ))
                    }
                }
            },
            Command::Referral { command, .. } => {
                let (from, to_service) = match (command, state) {
                    (ReferralCommand::Make { referral }, _) => {
                        if &referral.from_organisation != org {
                            return Err(Denial::new(
                                "NOT_THE_REFERRER",
                                format!(
                                    "{org} may only make referrals from itself (referral.from_organisation)"
                                ),
                            ));
                        }
                        return Ok(());
                    }
                    (_, Some(AggregateState::Referral(r))) => {
                        (&r.details.from_organisation, &r.details.to_service)
                    }
                    // The referral does not exist: `decide` names it, to a related caller.
                    _ => return related(),
                };
                let receiver = self.service_owner.get(to_service);
                let is_receiver = receiver == Some(org);
                let is_referrer = from == org;
                let allowed = match command {
                    ReferralCommand::Cancel { .. } => is_referrer,
                    ReferralCommand::MarkEnteredInError { .. } => is_referrer || is_receiver,
                    _ => is_receiver,
                };
                if allowed {
                    Ok(())
                } else {
                    Err(Denial::new(
                        "NO_ROLE_IN_REFERRAL",
                        match command {
                            ReferralCommand::Cancel { .. } => {
                                format!(
                                    "only the referring organisation may cancel; {org} is not it"
                                )
                            }
                            _ => format!(
                                "only the receiving service's organisation may do this; {org} is not it"
                            ),
                        },
                    ))
                }
            }
            Command::Assessment {
                command,
                assessment_id,
                ..
            } => match command {
                AssessmentCommand::Contribute { organisation, .. } if organisation != org => {
                    Err(Denial::new(
                        "NOT_THE_CONTRIBUTOR",
                        format!("{org} may only record its own contribution (organisation)"),
                    ))
                }
                // The requester replaces an assessor, or an assessor hands its place on.
                AssessmentCommand::ReplaceAssessor { replaced, .. } => {
                    related()?;
                    let requester = access
                        .as_ref()
                        .and_then(|p| p.assessments.get(assessment_id))
                        .and_then(|a| a.requested_by.clone());
                    if requester.as_ref() == Some(org) || replaced == org {
                        Ok(())
                    } else {
                        Err(Denial::new(
                            "NOT_THE_REQUESTER",
                            format!(
                                "only the organisation that requested the assessment, or the replaced assessor itself, may replace an assessor; {org} is neither (replaced)"
                            ),
                        ))
                    }
                }
                _ => related(),
            },
            Command::CarePlan { .. } => {
                if on_team {
                    Ok(())
                } else {
                    Err(not_on_team(org))
                }
            }
            Command::CareTeam { command, .. } => match command {
                _ if on_team => Ok(()),
                // The managing hospital, the registered GP and a receiving service may always
                // add themselves, so nobody can lock them out by joining first.
                CareTeamCommand::AddMember { member, .. }
                    if &member.organisation == org && grounds.iter().any(|g| g.may_join_team()) =>
                {
                    Ok(())
                }
                _ => Err(not_on_team(org)),
            },
            Command::Consent { command, .. } => {
                use carewoven_domain::consent::ConsentCommand as C;
                let terms = match (command, state) {
                    (C::Record { terms }, _) => terms,
                    (C::Withdraw { .. }, Some(AggregateState::Consent(c))) => &c.terms,
                    _ => return related(),
                };
                related()?;
                if terms.decision != ConsentDecision::Deny {
                    return Ok(());
                }
                // An objection belongs to the person: the registered GP may record or
                // withdraw it on their behalf; never an organisation it names.
                if !is_gp {
                    Err(Denial::new(
                        "OBJECTION_NOT_YOURS",
                        "an objection is recorded or withdrawn by the person, the registered GP practice on their behalf, or the governance role",
                    ))
                } else if matches!(command, C::Withdraw { .. }) && terms.partners.contains(org) {
                    Err(Denial::new(
                        "OBJECTION_NAMES_YOU",
                        format!("{org} is named in this objection and may not withdraw it"),
                    ))
                } else {
                    Ok(())
                }
            }
            Command::Meeting { .. } | Command::Feedback { .. } | Command::Flag { .. } => related(),
            Command::Task { command, .. } => {
                related()?;
                // The owner must be able to act on the person: a task is never a way to
                // hand an organisation a record it has no ground for.
                let owner_related = |field: &str, owner: &Code| {
                    if self.related(person, owner, now) && !self.objects_to(person, owner, now) {
                        Ok(())
                    } else {
                        Err(Denial::new(
                            "OWNER_HAS_NO_RELATIONSHIP",
                            format!(
                                "{owner} has no legitimate relationship with this person, so cannot own a task about them ({field})"
                            ),
                        ))
                    }
                };
                let task = match state {
                    Some(AggregateState::Task(t)) => t,
                    _ => {
                        return match command {
                            TaskCommand::Create { task } => {
                                owner_related("task.owner.organisation", &task.owner.organisation)
                            }
                            // The task does not exist: `decide` names it.
                            _ => Ok(()),
                        };
                    }
                };
                let is_owner = &task.task.owner.organisation == org;
                let is_requester = &task.requester == org;
                match command {
                    TaskCommand::Create { .. } => Ok(()),
                    TaskCommand::ChangeStatus { status, .. } => {
                        if is_owner || (is_requester && *status == TaskStatus::Cancelled) {
                            Ok(())
                        } else {
                            Err(Denial::new(
                                "NOT_THE_TASK_OWNER",
                                format!(
                                    "only the task's owner may change its status (the organisation that asked for it may cancel it); {org} is neither"
                                ),
                            ))
                        }
                    }
                    TaskCommand::Reassign { owner, .. } => {
                        if is_owner || is_requester {
                            owner_related("owner.organisation", &owner.organisation)
                        } else {
                            Err(Denial::new(
                                "NOT_THE_TASK_OWNER",
                                format!(
                                    "only the task's owner or the organisation that asked for it may reassign it; {org} is neither"
                                ),
                            ))
                        }
                    }
                }
            }
            Command::Discharge { command, .. } => {
                let (site, episode) = match (command, state) {
                    (DischargeCommand::Admit { site, .. }, _) => (site, None),
                    (_, Some(AggregateState::Discharge(e))) => (&e.site, Some(e)),
                    _ => return related(),
                };
                let manager = self.service_owner.get(site);
                let allowed = match command {
                    DischargeCommand::Admit { .. } => manager == Some(org),
                    // Only the organisation owning the agreed service: accepting a handover
                    // must not be a way to gain a relationship or lock the provider out.
                    // With no service agreed (pathway 0, home with no new support), the
                    // registered GP or a care-team member takes the handover.
                    DischargeCommand::AcceptHandover { organisation } => {
                        organisation == org
                            && match episode.and_then(|e| e.service.as_ref()) {
                                Some(service) => self.service_owner.get(service) == Some(org),
                                None => is_gp || on_team,
                            }
                    }
                    DischargeCommand::CompleteHomeAssessment { .. } => {
                        manager == Some(org)
                            || episode
                                .is_some_and(|e| e.handover_organisation.as_ref() == Some(org))
                    }
                    _ => manager == Some(org),
                };
                if allowed {
                    Ok(())
                } else {
                    Err(Denial::new(
                        "NO_ROLE_IN_DISCHARGE",
                        match command {
                            DischargeCommand::Admit { .. } => {
                                format!("site {site} is not registered to {org} (site)")
                            }
                            DischargeCommand::AcceptHandover { .. } => format!(
                                "only the organisation owning the agreed service may accept handover; {org} is not it (step.accept_handover.organisation)"
                            ),
                            _ => format!(
                                "only the organisation managing the discharge episode may do this; {org} is not it"
                            ),
                        },
                    ))
                }
            }
            Command::Organisation { .. } => Ok(()),
        }
    }
}

impl Denial {
    /// The same answer, auditing `cause` as the real reason.
    pub fn because(mut self, cause: &'static str) -> Self {
        if cause != self.reason {
            self.cause = Some(cause);
        }
        self
    }
}

fn no_relationship(org: &Code) -> Denial {
    Denial::new(
        "NO_LEGITIMATE_RELATIONSHIP",
        format!("{org} has no legitimate relationship with this person"),
    )
}

fn record_unreadable() -> Denial {
    Denial::new(
        "RECORD_UNREADABLE",
        "this record cannot be decided on: an event in it could not be read; the operator has been told",
    )
}

fn not_on_team(org: &Code) -> Denial {
    Denial::new(
        "NOT_ON_CARE_TEAM",
        format!("only care-team members may do this; {org} is not on the care team"),
    )
}

fn service_taken(field: String, service: &Code) -> DomainError {
    DomainError::AlreadyExists {
        what: "service (owned by another organisation)",
        id: format!("{service} ({field})"),
    }
}

#[cfg(test)]
mod tests;
