//! Person / care record: registered once ("tell the story once"), corrected by new events.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use uuid::Uuid;

use crate::values::{Code, LongText, NhsNumber, ShortText, not_future_date};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carer {
    pub name: ShortText,
    pub relationship: ShortText,
    pub contact: Option<ShortText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub nhs_number: NhsNumber,
    pub given_name: ShortText,
    pub family_name: ShortText,
    pub date_of_birth: NaiveDate,
    pub contact: Option<LongText>,
    pub what_matters: Option<LongText>,
    pub communication_needs: Option<LongText>,
    pub carers: Vec<Carer>,
    /// The GP practice the person is registered with (an organisation code): a standing
    /// ground for a legitimate relationship (ig-model.md).
    pub registered_gp: Option<Code>,
}

/// The longest emergency ("break glass") access one assertion can give.
pub const EMERGENCY_ACCESS_MAX_HOURS: u32 = 24;

/// A correction replaces the fields it carries; absent fields stay as they were.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Correction {
    pub nhs_number: Option<NhsNumber>,
    pub given_name: Option<ShortText>,
    pub family_name: Option<ShortText>,
    pub date_of_birth: Option<NaiveDate>,
    pub contact: Option<LongText>,
    pub what_matters: Option<LongText>,
    pub communication_needs: Option<LongText>,
    pub carers: Option<Vec<Carer>>,
    /// A change of practice.
    pub registered_gp: Option<Code>,
}

impl Correction {
    pub fn is_empty(&self) -> bool {
        *self == Correction::default()
    }

    /// Whether it changes who the person is (NHS number, name, date of birth) or their
    /// registered practice: only the registered GP or the governance role may do that.
    pub fn touches_identity(&self) -> bool {
        self.nhs_number.is_some()
            || self.given_name.is_some()
            || self.family_name.is_some()
            || self.date_of_birth.is_some()
            || self.registered_gp.is_some()
    }
}

/// What a carer the person named may do for them (ig-model.md, "Proxy").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyScope {
    /// Read the person's whole care record and plan.
    ReadRecord,
    /// See who accessed the person's record, and when.
    AccessList,
    /// Give feedback as the person's carer.
    Feedback,
    /// Record and withdraw the person's objections and consents.
    Consents,
    /// Record what matters to the person and their communication needs.
    WhatMatters,
}

impl ProxyScope {
    pub const ALL: [ProxyScope; 5] = [
        ProxyScope::ReadRecord,
        ProxyScope::AccessList,
        ProxyScope::Feedback,
        ProxyScope::Consents,
        ProxyScope::WhatMatters,
    ];
}

/// A carer's proxy access, as the person granted it. The carer is known by their own NHS
/// number: they act with their own citizen identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyGrant {
    pub carer_nhs_number: NhsNumber,
    pub carer_name: ShortText,
    /// Distinct, in [`ProxyScope`] order.
    pub scope: Vec<ProxyScope>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonCommand {
    Register {
        person_id: Uuid,
        profile: Profile,
    },
    Correct {
        correction: Correction,
        reason: LongText,
        /// The version of the person's record the correction was based on: a stale one is a
        /// version conflict, never a silent overwrite.
        based_on_version: u64,
    },
    /// Emergency ("break glass") access by the acting organisation, for at most
    /// [`EMERGENCY_ACCESS_MAX_HOURS`], stating why.
    AssertEmergencyAccess {
        reason: LongText,
        hours: u32,
    },
    /// The person names a carer with proxy access (a new grant to an active proxy replaces
    /// its scope).
    GrantProxy {
        grant: ProxyGrant,
    },
    /// The person ends a carer's proxy access.
    RevokeProxy {
        carer_nhs_number: NhsNumber,
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonEvent {
    Registered {
        profile: Profile,
    },
    DetailsCorrected {
        correction: Correction,
        reason: LongText,
    },
    EmergencyAccessAsserted {
        organisation: Code,
        reason: LongText,
        expires_at: DateTime<Utc>,
    },
    ProxyGranted {
        grant: ProxyGrant,
    },
    ProxyRevoked {
        carer_nhs_number: NhsNumber,
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub profile: Profile,
    pub corrections: u32,
    /// Active proxy grants, in the order first granted.
    pub proxies: Vec<ProxyGrant>,
    /// The aggregate's version: the number of its events.
    pub version: u64,
}

fn check_date_of_birth(
    field: &str,
    dob: NaiveDate,
    ctx: &DecideContext,
) -> Result<(), DomainError> {
    not_future_date(field, dob, ctx.now)?;
    if dob.year() < 1890 {
        return Err(DomainError::invalid(field, "is before 1890"));
    }
    Ok(())
}

impl Aggregate for Person {
    const KIND: AggregateKind = AggregateKind::Person;
    type Command = PersonCommand;
    type Event = PersonEvent;

    fn decide(
        state: Option<&Self>,
        command: &PersonCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<PersonEvent>, DomainError> {
        match (state, command) {
            (Some(_), PersonCommand::Register { person_id, .. }) => {
                Err(DomainError::AlreadyExists {
                    what: "person",
                    id: person_id.to_string(),
                })
            }
            (None, PersonCommand::Register { profile, .. }) => {
                check_date_of_birth("date_of_birth", profile.date_of_birth, ctx)?;
                Ok(vec![PersonEvent::Registered {
                    profile: profile.clone(),
                }])
            }
            (None, PersonCommand::Correct { .. }) => Err(DomainError::NotFound {
                what: "person",
                id: String::new(),
            }),
            (
                None,
                PersonCommand::AssertEmergencyAccess { .. }
                | PersonCommand::GrantProxy { .. }
                | PersonCommand::RevokeProxy { .. },
            ) => Err(DomainError::NotFound {
                what: "person",
                id: String::new(),
            }),
            (Some(person), PersonCommand::GrantProxy { grant }) => {
                if grant.carer_nhs_number == person.profile.nhs_number {
                    return Err(DomainError::invalid(
                        "carer_nhs_number",
                        "is the person's own NHS number: a proxy is someone else",
                    ));
                }
                if grant.scope.is_empty() {
                    return Err(DomainError::invalid(
                        "scope",
                        "needs at least one thing the carer may do",
                    ));
                }
                let mut scope = grant.scope.clone();
                scope.sort_unstable();
                scope.dedup();
                let grant = ProxyGrant {
                    scope,
                    ..grant.clone()
                };
                if person.proxies.contains(&grant) {
                    return Err(DomainError::rule(
                        "proxy.unchanged",
                        "this carer already has exactly this proxy access",
                    ));
                }
                Ok(vec![PersonEvent::ProxyGranted { grant }])
            }
            (
                Some(person),
                PersonCommand::RevokeProxy {
                    carer_nhs_number,
                    reason,
                },
            ) => {
                if !person
                    .proxies
                    .iter()
                    .any(|p| &p.carer_nhs_number == carer_nhs_number)
                {
                    return Err(DomainError::rule(
                        "proxy.lifecycle",
                        "no carer with that NHS number has proxy access (carer_nhs_number)",
                    ));
                }
                Ok(vec![PersonEvent::ProxyRevoked {
                    carer_nhs_number: carer_nhs_number.clone(),
                    reason: reason.clone(),
                }])
            }
            (Some(_), PersonCommand::AssertEmergencyAccess { reason, hours }) => {
                if *hours == 0 || *hours > EMERGENCY_ACCESS_MAX_HOURS {
                    return Err(DomainError::invalid(
                        "hours",
                        format!("must be from 1 to {EMERGENCY_ACCESS_MAX_HOURS}"),
                    ));
                }
                Ok(vec![PersonEvent::EmergencyAccessAsserted {
                    organisation: ctx.actor.organisation.clone(),
                    reason: reason.clone(),
                    expires_at: ctx.now + TimeDelta::hours(i64::from(*hours)),
                }])
            }
            (
                Some(person),
                PersonCommand::Correct {
                    correction,
                    reason,
                    based_on_version,
                },
            ) => {
                if *based_on_version == 0 {
                    return Err(DomainError::invalid(
                        "based_on_version",
                        "is required: the version of the record the correction was based on",
                    ));
                }
                if *based_on_version != person.version {
                    return Err(DomainError::VersionConflict {
                        expected: *based_on_version,
                        actual: person.version,
                    });
                }
                if correction.is_empty() {
                    return Err(DomainError::invalid(
                        "correction",
                        "must change at least one field",
                    ));
                }
                if let Some(dob) = correction.date_of_birth {
                    check_date_of_birth("correction.date_of_birth", dob, ctx)?;
                }
                Ok(vec![PersonEvent::DetailsCorrected {
                    correction: correction.clone(),
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &PersonEvent) -> Result<Self, ReplayError> {
        match (state, event) {
            (None, PersonEvent::Registered { profile }) => Ok(Person {
                profile: profile.clone(),
                corrections: 0,
                proxies: Vec::new(),
                version: 1,
            }),
            (Some(mut person), PersonEvent::ProxyGranted { grant }) => {
                match person
                    .proxies
                    .iter_mut()
                    .find(|p| p.carer_nhs_number == grant.carer_nhs_number)
                {
                    Some(existing) => *existing = grant.clone(),
                    None => person.proxies.push(grant.clone()),
                }
                person.version += 1;
                Ok(person)
            }
            (
                Some(mut person),
                PersonEvent::ProxyRevoked {
                    carer_nhs_number, ..
                },
            ) => {
                person
                    .proxies
                    .retain(|p| &p.carer_nhs_number != carer_nhs_number);
                person.version += 1;
                Ok(person)
            }
            (Some(mut person), PersonEvent::EmergencyAccessAsserted { .. }) => {
                person.version += 1;
                Ok(person)
            }
            (Some(mut person), PersonEvent::DetailsCorrected { correction, .. }) => {
                let p = &mut person.profile;
                let c = correction.clone();
                if let Some(v) = c.nhs_number {
                    p.nhs_number = v;
                }
                if let Some(v) = c.given_name {
                    p.given_name = v;
                }
                if let Some(v) = c.family_name {
                    p.family_name = v;
                }
                if let Some(v) = c.date_of_birth {
                    p.date_of_birth = v;
                }
                if let Some(v) = c.contact {
                    p.contact = Some(v);
                }
                if let Some(v) = c.what_matters {
                    p.what_matters = Some(v);
                }
                if let Some(v) = c.communication_needs {
                    p.communication_needs = Some(v);
                }
                if let Some(v) = c.carers {
                    p.carers = v;
                }
                if let Some(v) = c.registered_gp {
                    p.registered_gp = Some(v);
                }
                person.corrections += 1;
                person.version += 1;
                Ok(person)
            }
            (state, event) => Err(ReplayError {
                event: event.name(),
                state: format!("{:?}", state.map(|_| "person")),
            }),
        }
    }
}

impl PersonEvent {
    pub fn name(&self) -> &'static str {
        match self {
            PersonEvent::Registered { .. } => "person_registered",
            PersonEvent::DetailsCorrected { .. } => "person_details_corrected",
            PersonEvent::EmergencyAccessAsserted { .. } => "emergency_access_asserted",
            PersonEvent::ProxyGranted { .. } => "proxy_granted",
            PersonEvent::ProxyRevoked { .. } => "proxy_revoked",
        }
    }
}
