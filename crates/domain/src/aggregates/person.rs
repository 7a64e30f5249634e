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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub profile: Profile,
    pub corrections: u32,
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
            (None, PersonCommand::AssertEmergencyAccess { .. }) => Err(DomainError::NotFound {
                what: "person",
                id: String::new(),
            }),
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
                version: 1,
            }),
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
        }
    }
}
