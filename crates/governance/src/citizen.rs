//! People's own access (co-production, Caldicott principle 8): a person authenticated with a
//! citizen identity reads their own record, sees who accessed it, gives feedback, records
//! what matters to them and their own objections and consents, and names carers with proxy
//! access (ig-model.md, "Identities": Person, Proxy).
//!
//! A citizen identity is the person themself for person P while its NHS number is P's
//! current one (as the log last recorded it), and P's proxy while P has an active proxy grant
//! for its NHS number. Anyone else, and anyone asking about a person who does not exist, gets
//! the answer an unrelated organisation gets: `NO_LEGITIMATE_RELATIONSHIP`, so nothing says
//! whether the person exists. Checks that do not depend on the person (is the command open
//! to citizens at all, is the identity proven well enough) come first.

use std::fmt;

use carewoven_domain::Command;
use carewoven_domain::consent::ConsentCommand;
use carewoven_domain::feedback::{FeedbackCommand, FeedbackSource};
use carewoven_domain::person::{PersonCommand, ProxyScope};
use carewoven_domain::values::{Code, NhsNumber};
use uuid::Uuid;

use crate::{Denial, Governance, Identity, ReadScope, no_relationship, record_unreadable};

/// How well a citizen's identity was proven, as NHS login's identity levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityLevel {
    /// Low: not verified. Allows nothing here.
    P0,
    /// Medium: verified with a low-risk check. May give feedback.
    P5,
    /// High: verified against photo ID. May read the record and change what is theirs.
    P9,
}

impl IdentityLevel {
    pub fn parse(raw: &str) -> Option<IdentityLevel> {
        match raw {
            "P0" => Some(IdentityLevel::P0),
            "P5" => Some(IdentityLevel::P5),
            "P9" => Some(IdentityLevel::P9),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityLevel::P0 => "P0",
            IdentityLevel::P5 => "P5",
            IdentityLevel::P9 => "P9",
        }
    }
}

impl fmt::Display for IdentityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person authenticated by an issuer trusted for citizens.
#[derive(Clone, PartialEq, Eq)]
pub struct Citizen {
    /// The person's own NHS number, from the identity provider.
    pub nhs_number: NhsNumber,
    pub level: IdentityLevel,
    /// The identity provider's opaque subject id. Never recorded: events and audit records
    /// carry a pseudonym derived from it ([`Identity::user`]).
    pub subject: String,
}

/// The NHS number and the subject are personal data: Debug shows neither.
impl fmt::Debug for Citizen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Citizen")
            .field("nhs_number", &self.nhs_number)
            .field("level", &self.level)
            .field("subject", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// A citizen's identity: they act as the reserved organisation `CITIZEN`, as user
    /// `pseudonym` (derived from the subject; never the NHS number or a name), with no roles.
    pub fn citizen(citizen: Citizen, pseudonym: Code) -> Identity {
        Identity {
            organisation: Code::citizen(),
            user: Some(pseudonym),
            roles: Vec::new(),
            citizen: Some(citizen),
        }
    }
}

/// What a citizen is to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The person themself.
    Person,
    /// A carer the person named, with what they may do.
    Proxy(Vec<ProxyScope>),
}

impl Standing {
    /// The audit's word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Standing::Person => "self",
            Standing::Proxy(_) => "proxy",
        }
    }

    fn may(&self, scope: ProxyScope) -> bool {
        match self {
            Standing::Person => true,
            Standing::Proxy(granted) => granted.contains(&scope),
        }
    }
}

/// What a citizen asks to do, and what it needs.
struct Need {
    level: IdentityLevel,
    /// What a proxy needs in its scope; `None`: only the person themself.
    scope: Option<ProxyScope>,
}

fn level_too_low(needed: IdentityLevel, has: IdentityLevel) -> Denial {
    Denial::new(
        "IDENTITY_LEVEL_TOO_LOW",
        format!(
            "this needs an identity verified to level {needed} (the token's identity_level is {has})"
        ),
    )
}

fn not_for_citizens() -> Denial {
    Denial::new(
        "NOT_OPEN_TO_CITIZENS",
        "a citizen identity may read their own record and access list, give feedback, record what matters to them, record and withdraw their own objections and consents, and grant or revoke proxy access; nothing else",
    )
}

fn outside_scope(scope: ProxyScope) -> Denial {
    Denial::new(
        "OUTSIDE_PROXY_SCOPE",
        format!("the person did not give their proxy this ({scope:?}) in its scope"),
    )
}

impl Governance {
    /// The person whose current NHS number is the citizen's, if registered.
    pub fn own_person(&self, citizen: &Citizen) -> Option<Uuid> {
        let person = self.person_by_nhs_number(&citizen.nhs_number)?;
        (self.nhs_number(person).as_ref() == Some(&citizen.nhs_number)).then_some(person)
    }

    /// What the citizen is to `person`: the person themself, their proxy, or nothing (also
    /// when the person does not exist).
    pub fn standing(&self, citizen: &Citizen, person: Uuid) -> Option<Standing> {
        let access = self.person(person)?;
        if access.nhs_number.as_ref() == Some(&citizen.nhs_number) {
            return Some(Standing::Person);
        }
        access
            .proxies
            .iter()
            .find(|(carer, _)| carer == &citizen.nhs_number)
            .map(|(_, scope)| Standing::Proxy(scope.clone()))
    }

    /// `who`'s standing towards `person` if `who` is a citizen acting as a proxy.
    pub fn acts_as_proxy(&self, who: &Identity, person: Uuid) -> bool {
        who.citizen
            .as_ref()
            .and_then(|c| self.standing(c, person))
            .is_some_and(|s| matches!(s, Standing::Proxy(_)))
    }

    /// A citizen's standing towards `person`, allowed `scope` at `level` or above. Checked in
    /// an order that reveals nothing: the level first (whoever the person is), then whether
    /// the citizen is the person or their proxy (refused as an unrelated organisation is),
    /// then the record's readability and the proxy's scope.
    fn citizen_may(
        &self,
        citizen: &Citizen,
        person: Uuid,
        level: IdentityLevel,
        scope: Option<ProxyScope>,
    ) -> Result<Standing, Denial> {
        if citizen.level < level {
            return Err(level_too_low(level, citizen.level));
        }
        let standing = self
            .standing(citizen, person)
            .ok_or_else(|| no_relationship(&Code::citizen()))?;
        if self.undecodable(person).is_some() {
            return Err(record_unreadable());
        }
        match (scope, &standing) {
            (None, Standing::Proxy(_)) => Err(Denial::new(
                "PERSON_ONLY",
                "only the person themself (or the governance role) may grant or revoke proxy access",
            )),
            (Some(s), _) if !standing.may(s) => Err(outside_scope(s)),
            _ => Ok(standing),
        }
    }

    /// A citizen reading `person`'s record: the whole record, for the person themself or a
    /// proxy with the read-record scope, at P9.
    pub(crate) fn citizen_read_scope(
        &self,
        citizen: &Citizen,
        person: Uuid,
    ) -> Result<ReadScope, Denial> {
        self.citizen_may(
            citizen,
            person,
            IdentityLevel::P9,
            Some(ProxyScope::ReadRecord),
        )
        .map(|_| ReadScope::default())
    }

    /// May `who` see who accessed `person`'s record (`AuditService.ListRecordAccess`)? An
    /// organisation with a legitimate relationship the person has not objected to (refused,
    /// either way, as an unrelated one is); the person themself, or a proxy with the
    /// access-list scope, at P9. The governance role is decided by the caller.
    pub fn may_list_record_access(
        &self,
        who: &Identity,
        person: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Denial> {
        if let Some(citizen) = &who.citizen {
            return self
                .citizen_may(
                    citizen,
                    person,
                    IdentityLevel::P9,
                    Some(ProxyScope::AccessList),
                )
                .map(|_| ());
        }
        let denied = no_relationship(&who.organisation);
        if !self.related(person, &who.organisation, now) {
            Err(denied)
        } else if self.objects_to(person, &who.organisation, now) {
            Err(denied.because("OBJECTION"))
        } else {
            Ok(())
        }
    }

    /// May a citizen issue `command`? Feedback (P5; as the person, or as their carer with
    /// that scope), what matters to them and their communication needs (never identity,
    /// contact or carers), their own objections and consents, and (the person only) proxy
    /// grants, each at P9. Everything else is refused.
    pub(crate) fn authorise_citizen(
        &self,
        citizen: &Citizen,
        command: &Command,
    ) -> Result<(), Denial> {
        let p9 = |scope| Need {
            level: IdentityLevel::P9,
            scope,
        };
        let need = match command {
            Command::Person { command, .. } => match command {
                PersonCommand::Correct { correction, .. } => {
                    if correction.touches_identity() {
                        return Err(Denial::new(
                            "IDENTITY_CORRECTION_NOT_ALLOWED",
                            "the NHS number, name, date of birth and registered practice are corrected by the registered GP practice or the governance role, not by the person",
                        ));
                    }
                    if correction.contact.is_some() || correction.carers.is_some() {
                        return Err(Denial::new(
                            "CORRECTION_NOT_OPEN_TO_CITIZENS",
                            "a person may correct what matters to them and their communication needs (correction.what_matters, correction.communication_needs); contact details and carers are corrected by an organisation caring for them",
                        ));
                    }
                    p9(Some(ProxyScope::WhatMatters))
                }
                PersonCommand::GrantProxy { .. } | PersonCommand::RevokeProxy { .. } => p9(None),
                PersonCommand::Register { .. } | PersonCommand::AssertEmergencyAccess { .. } => {
                    return Err(not_for_citizens());
                }
            },
            Command::Consent { command, .. } => match command {
                ConsentCommand::Record { .. } | ConsentCommand::Withdraw { .. } => {
                    p9(Some(ProxyScope::Consents))
                }
            },
            Command::Feedback { .. } => Need {
                level: IdentityLevel::P5,
                scope: Some(ProxyScope::Feedback),
            },
            _ => return Err(not_for_citizens()),
        };
        let person = command.target().person_id;
        let standing = self.citizen_may(citizen, person, need.level, need.scope)?;
        if let Command::Feedback {
            command: FeedbackCommand::Record { feedback },
            ..
        } = command
        {
            let expected = match standing {
                Standing::Person => FeedbackSource::Person,
                Standing::Proxy(_) => FeedbackSource::Carer,
            };
            if feedback.source != expected {
                return Err(Denial::new(
                    "FEEDBACK_SOURCE_MISMATCH",
                    match expected {
                        FeedbackSource::Person => {
                            "feedback.source must be FEEDBACK_SOURCE_PERSON: you are the person"
                        }
                        FeedbackSource::Carer => {
                            "feedback.source must be FEEDBACK_SOURCE_CARER: you act as the person's carer"
                        }
                    },
                ));
            }
        }
        Ok(())
    }
}
