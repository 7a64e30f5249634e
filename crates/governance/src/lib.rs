//! Carewoven's information-governance rules (domain.md, "Information-governance rules"), as
//! pure functions over a fold of the event log.
//!
//! [`Governance`] is folded from events in log order ([`Governance::apply`]). It knows the
//! registry (organisations, their services, their data-sharing agreements) and, per person,
//! which organisations have a **legitimate relationship** (care team, referral, discharge
//! episode) and which objections are active. From it:
//!
//! - [`Governance::authorise`] decides whether an organisation may issue a command;
//! - [`Governance::may_read`] whether it may read a person's record;
//! - [`Governance::disclosure`] what, if anything, a partner is sent of one event.
//!
//! Like the domain crate this does no IO and reads no clock: "today" is an argument.

use std::collections::{BTreeSet, HashMap};

use carewoven_domain::assessment::AssessmentCommand;
use carewoven_domain::care_team::{CareTeamCommand, CareTeamEvent, MemberRef};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, ConsentTerms, DataClass, Purpose};
use carewoven_domain::discharge::{DischargeCommand, DischargeEvent};
use carewoven_domain::organisation::{Organisation, OrganisationEvent, SharingAgreement};
use carewoven_domain::person::PersonEvent;
use carewoven_domain::referral::{ReferralCommand, ReferralEvent};
use carewoven_domain::values::{Code, NhsNumber};
use carewoven_domain::{AggregateKind, AggregateState, Command, Event, RecordedEvent};
use chrono::NaiveDate;
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

/// Who is calling: an authenticated organisation, the user within it, and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub organisation: Code,
    pub user: Option<Code>,
    pub roles: Vec<Role>,
}

impl Identity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Why an access is refused. The message names no person and no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable machine-readable reason (for `google.rpc.ErrorInfo` and audit).
    pub reason: &'static str,
    pub message: String,
}

impl Denial {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Denial {
            reason,
            message: message.into(),
        }
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
        Event::Person(_) => DataClass::Demographics,
        Event::Referral(_) => DataClass::Referrals,
        Event::Assessment(_) => DataClass::Assessments,
        Event::CarePlan(_) => DataClass::CarePlan,
        Event::CareTeam(_) => DataClass::CareTeam,
        Event::Discharge(_) => DataClass::Discharge,
        Event::Meeting(_) => DataClass::Meetings,
        Event::Feedback(_) => DataClass::Feedback,
        Event::Consent(_) | Event::Organisation(_) => return None,
    })
}

/// The event types [`Governance::apply`] acts on.
const GOVERNANCE_EVENT_TYPES: [&str; 20] = [
    "person_registered",
    "person_details_corrected",
    "referral_submitted",
    "referral_rejected",
    "referral_cancelled",
    "referral_entered_in_error",
    "care_team_member_added",
    "care_team_member_removed",
    "person_admitted",
    "service_requested",
    "discharge_agreed",
    "handover_accepted",
    "consent_recorded",
    "consent_withdrawn",
    "organisation_registered",
    "organisation_service_added",
    "sharing_agreement_recorded",
    "sharing_agreement_ended",
    // Not acted on today, listed so a future rule on them is not silently skipped:
    "care_coordinator_named",
    "care_coordinator_unassigned",
];

/// The purposes under which partners receive feeds and read records: individual care.
const CARE_PURPOSES: [Purpose; 2] = [Purpose::DirectCare, Purpose::CareCoordination];

#[derive(Debug, Clone, Default)]
struct ReferralLink {
    from: Option<Code>,
    /// The organisation that owned the receiving service when the referral was made.
    to: Option<Code>,
    /// Rejected, cancelled or entered in error: no longer a ground for a relationship.
    closed_early: bool,
}

#[derive(Debug, Clone, Default)]
struct EpisodeLink {
    managing: Option<Code>,
    /// Organisations of services requested or agreed, and the one that accepted handover.
    receiving: BTreeSet<Code>,
}

#[derive(Debug, Clone)]
struct ConsentLink {
    terms: ConsentTerms,
    withdrawn: bool,
}

/// What governance knows about one person.
#[derive(Debug, Clone, Default)]
struct PersonAccess {
    nhs_number: Option<NhsNumber>,
    referrals: HashMap<Uuid, ReferralLink>,
    care_team: Vec<MemberRef>,
    episodes: HashMap<Uuid, EpisodeLink>,
    consents: HashMap<Uuid, ConsentLink>,
}

impl PersonAccess {
    fn related_orgs(&self) -> BTreeSet<Code> {
        let mut orgs: BTreeSet<Code> = self
            .care_team
            .iter()
            .map(|m| m.organisation.clone())
            .collect();
        for r in self.referrals.values().filter(|r| !r.closed_early) {
            orgs.extend(r.from.iter().cloned());
            orgs.extend(r.to.iter().cloned());
        }
        for e in self.episodes.values() {
            orgs.extend(e.managing.iter().cloned());
            orgs.extend(e.receiving.iter().cloned());
        }
        orgs
    }

    fn on_care_team(&self, org: &Code) -> bool {
        self.care_team.iter().any(|m| &m.organisation == org)
    }

    /// An active objection to `org` for individual care on `day`, covering `class` (an
    /// objection naming no data classes covers all; consent events themselves are covered by
    /// any objection).
    fn objects_to(&self, org: &Code, day: NaiveDate, class: Option<DataClass>) -> bool {
        self.consents.values().any(|c| {
            let t = &c.terms;
            !c.withdrawn
                && t.decision == ConsentDecision::Deny
                && CARE_PURPOSES.contains(&t.purpose)
                && t.partners.contains(org)
                && t.valid_from <= day
                && t.valid_until.is_none_or(|until| day <= until)
                && (t.data_classes.is_empty()
                    || class.is_none_or(|class| t.data_classes.contains(&class)))
        })
    }
}

/// The governance state folded from the log.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    orgs: HashMap<Code, Organisation>,
    service_owner: HashMap<Code, Code>,
    org_ids: HashMap<Uuid, Code>,
    people: HashMap<Uuid, PersonAccess>,
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
    pub fn undecodable(&self, person: Uuid) -> Option<u64> {
        self.undecodable.get(&person).copied()
    }

    /// Fold one event in (events must come in log order).
    pub fn apply(&mut self, recorded: &RecordedEvent) {
        self.position = self.position.max(recorded.sequence);
        let meta = &recorded.meta;
        if let Event::Organisation(e) = &recorded.event {
            self.apply_registry(meta.aggregate_id, e);
            return;
        }
        let owner = |service: &Code| self.service_owner.get(service).cloned();
        let mut links = self.people.remove(&meta.person_id).unwrap_or_default();
        match &recorded.event {
            Event::Person(PersonEvent::Registered { profile }) => {
                links.nhs_number = Some(profile.nhs_number.clone());
            }
            Event::Person(PersonEvent::DetailsCorrected { correction, .. }) => {
                if let Some(nhs) = &correction.nhs_number {
                    links.nhs_number = Some(nhs.clone());
                }
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
                    _ => {}
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
        self.people.insert(meta.person_id, links);
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
    pub fn nhs_number(&self, person: Uuid) -> Option<&NhsNumber> {
        self.people.get(&person).and_then(|p| p.nhs_number.as_ref())
    }

    /// Organisations with a legitimate relationship with the person now.
    pub fn related_orgs(&self, person: Uuid) -> BTreeSet<Code> {
        self.people
            .get(&person)
            .map(PersonAccess::related_orgs)
            .unwrap_or_default()
    }

    /// Whether `org` has a legitimate relationship with the person now.
    pub fn related(&self, person: Uuid, org: &Code) -> bool {
        self.people
            .get(&person)
            .is_some_and(|p| p.related_orgs().contains(org))
    }

    /// The agreement under which `org` may receive or read for individual care on `day`.
    pub fn agreement_in_force(&self, org: &Code, day: NaiveDate) -> Option<&SharingAgreement> {
        self.orgs.get(org).and_then(|o| {
            o.agreements_in_force(day)
                .find(|a| a.purposes.iter().any(|p| CARE_PURPOSES.contains(p)))
        })
    }

    /// May `who` read this person's record on `day`? A legitimate relationship, no objection
    /// to that organisation, and a data-sharing agreement in force.
    pub fn may_read(&self, who: &Identity, person: Uuid, day: NaiveDate) -> Result<(), Denial> {
        let org = &who.organisation;
        let Some(access) = self.people.get(&person) else {
            return Err(no_relationship(org));
        };
        if !access.related_orgs().contains(org) {
            return Err(no_relationship(org));
        }
        if access.objects_to(org, day, None) {
            return Err(Denial::new(
                "OBJECTION",
                format!("the person has objected to sharing with {org}"),
            ));
        }
        if self.agreement_in_force(org, day).is_none() {
            return Err(Denial::new(
                "NO_AGREEMENT_IN_FORCE",
                format!("{org} has no data-sharing agreement for individual care in force"),
            ));
        }
        Ok(())
    }

    /// What `partner` is sent of `event` on `day`, deciding at delivery time. Call it after
    /// the event has been applied, with `was_related` telling whether the partner had a
    /// relationship just before it: the event that starts a relationship and the event that
    /// ends it are delivered, nothing after the end and nothing before the start.
    pub fn disclosure(
        &self,
        recorded: &RecordedEvent,
        partner: &Code,
        was_related: bool,
        day: NaiveDate,
    ) -> Option<Disclosure> {
        if recorded.meta.aggregate_kind == AggregateKind::Organisation {
            return None;
        }
        let access = self.people.get(&recorded.meta.person_id)?;
        if !was_related && !access.related_orgs().contains(partner) {
            return None;
        }
        let class = data_class(&recorded.event);
        if access.objects_to(partner, day, class) {
            return None;
        }
        let org = self.orgs.get(partner)?;
        let for_care = |a: &&SharingAgreement| a.purposes.iter().any(|p| CARE_PURPOSES.contains(p));
        // Covered by an agreement on the (UK) day it was recorded: an agreement that starts
        // later does not reach back, but a renewal does not cut off what its predecessor
        // covered.
        let recorded_on = carewoven_domain::values::uk_date(recorded.meta.recorded_at);
        if !org.agreements_in_force(recorded_on).any(|a| for_care(&a)) {
            return None;
        }
        // And by an agreement in force today; every one in force counts for data classes.
        let now: Vec<&SharingAgreement> = org.agreements_in_force(day).filter(for_care).collect();
        if now.is_empty() {
            return None;
        }
        Some(match class {
            Some(class) if now.iter().any(|a| a.data_classes.contains(&class)) => Disclosure::Full,
            _ => Disclosure::IdentifiersOnly,
        })
    }

    /// May `who` issue `command` against its aggregate's current `state`?
    ///
    /// A command is allowed only to an organisation with a role in that aggregate: the
    /// referrer or the receiving service's organisation for a referral, the organisation
    /// whose site manages a discharge episode, care-team members for the plan and the team,
    /// and an organisation with a legitimate relationship for the rest. The registry is
    /// changed only under the `governance` role.
    pub fn authorise(
        &self,
        who: &Identity,
        command: &Command,
        state: Option<&AggregateState>,
    ) -> Result<(), Denial> {
        let org = &who.organisation;
        if let Command::Organisation { .. } = command {
            return if who.has(Role::Governance) {
                Ok(())
            } else {
                Err(Denial::new(
                    "GOVERNANCE_ROLE_REQUIRED",
                    "only a caller with the governance role may change the registry",
                ))
            };
        }
        if !self.orgs.contains_key(org) {
            return Err(Denial::new(
                "ORGANISATION_NOT_REGISTERED",
                format!("organisation {org} is not registered"),
            ));
        }
        let related = |person: Uuid| {
            if self.related(person, org) {
                Ok(())
            } else {
                Err(no_relationship(org))
            }
        };
        match command {
            Command::Person { person_id, command } => match command {
                carewoven_domain::person::PersonCommand::Register { .. } => Ok(()),
                _ => related(*person_id),
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
                        if !self.service_owner.contains_key(&referral.to_service) {
                            return Err(Denial::new(
                                "SERVICE_NOT_REGISTERED",
                                format!(
                                    "service {} is not registered (referral.to_service)",
                                    referral.to_service
                                ),
                            ));
                        }
                        return Ok(());
                    }
                    (_, Some(AggregateState::Referral(r))) => {
                        (&r.details.from_organisation, &r.details.to_service)
                    }
                    // Existence is checked by `decide`, which names the missing referral.
                    _ => return Ok(()),
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
                person_id, command, ..
            } => match command {
                AssessmentCommand::Contribute { organisation, .. } if organisation != org => {
                    Err(Denial::new(
                        "NOT_THE_CONTRIBUTOR",
                        format!("{org} may only record its own contribution (organisation)"),
                    ))
                }
                _ => related(*person_id),
            },
            Command::CarePlan { person_id, .. } => {
                if self.on_care_team(*person_id, org) {
                    Ok(())
                } else {
                    Err(not_on_team(org))
                }
            }
            Command::CareTeam { person_id, command } => {
                let team_empty = self
                    .people
                    .get(person_id)
                    .is_none_or(|p| p.care_team.is_empty());
                match command {
                    // The first member is added by an organisation with a relationship (for
                    // example the hospital managing the discharge); after that, by members.
                    CareTeamCommand::AddMember { .. } if team_empty => related(*person_id),
                    _ if self.on_care_team(*person_id, org) => Ok(()),
                    _ => Err(not_on_team(org)),
                }
            }
            Command::Consent { person_id, .. }
            | Command::Meeting { person_id, .. }
            | Command::Feedback { person_id, .. } => related(*person_id),
            Command::Discharge {
                person_id, command, ..
            } => {
                let site = match (command, state) {
                    (DischargeCommand::Admit { site, .. }, _) => site,
                    (_, Some(AggregateState::Discharge(e))) => &e.site,
                    _ => return Ok(()),
                };
                let manager = self.service_owner.get(site);
                let allowed = match command {
                    DischargeCommand::Admit { .. } => manager == Some(org),
                    // The organisation of the agreed service, or one already caring for the
                    // person: accepting a handover must not be a way to gain a relationship.
                    DischargeCommand::AcceptHandover { organisation } => {
                        organisation == org
                            && (matches!(state, Some(AggregateState::Discharge(e))
                                if e.service.as_ref().and_then(|s| self.service_owner.get(s))
                                    == Some(org))
                                || self.related(*person_id, org))
                    }
                    DischargeCommand::CompleteHomeAssessment { .. } => {
                        manager == Some(org)
                            || matches!(state, Some(AggregateState::Discharge(e))
                                if e.handover_organisation.as_ref() == Some(org))
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
                                "{org} may only accept handover for itself (step.accept_handover.organisation)"
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

    fn on_care_team(&self, person: Uuid, org: &Code) -> bool {
        self.people
            .get(&person)
            .is_some_and(|p| p.on_care_team(org))
    }
}

fn no_relationship(org: &Code) -> Denial {
    Denial::new(
        "NO_LEGITIMATE_RELATIONSHIP",
        format!("{org} has no legitimate relationship with this person"),
    )
}

fn not_on_team(org: &Code) -> Denial {
    Denial::new(
        "NOT_ON_CARE_TEAM",
        format!("only care-team members may do this; {org} is not on the care team"),
    )
}

#[cfg(test)]
mod tests;
