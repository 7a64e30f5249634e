//! A partner organisation (FHIR Organization + HealthcareService), its services and its
//! data-sharing agreements. Registry facts, not care records: the aggregate belongs to no
//! person (its events carry the nil person id).
//!
//! An agreement names the purposes and data classes the partner may receive and the period
//! it is in force; outside them a partner is sent identifiers only, and once it lapses
//! nothing (domain.md, "Information-governance rules").

use chrono::NaiveDate;

use crate::consent::{DataClass, Purpose};
use crate::values::{Code, LIST_MAX, LongText, ShortText};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

/// The reserved organisation code under which people act for themselves (a citizen
/// identity, or a carer as their proxy): it is in every such event's `meta.organisation`,
/// so no organisation may be registered with it (in any letter case).
pub const CITIZEN_CODE: &str = "CITIZEN";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrganisationType {
    NhsTrust,
    GeneralPractice,
    LocalAuthority,
    CommunityProvider,
    CareProvider,
    Voluntary,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationProfile {
    pub name: ShortText,
    pub org_type: OrganisationType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingAgreement {
    /// The agreement's reference, unique within the organisation.
    pub reference: Code,
    pub purposes: Vec<Purpose>,
    pub data_classes: Vec<DataClass>,
    pub valid_from: NaiveDate,
    /// The first day it is no longer in force.
    pub expires_on: NaiveDate,
}

impl SharingAgreement {
    /// In force on `day` (valid from its first day up to, not including, its expiry).
    pub fn in_force_on(&self, day: NaiveDate) -> bool {
        self.valid_from <= day && day < self.expires_on
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganisationCommand {
    Register {
        code: Code,
        profile: OrganisationProfile,
        services: Vec<Code>,
    },
    AddService {
        service: Code,
    },
    RecordAgreement {
        agreement: SharingAgreement,
    },
    EndAgreement {
        reference: Code,
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganisationEvent {
    Registered {
        code: Code,
        profile: OrganisationProfile,
        services: Vec<Code>,
    },
    ServiceAdded {
        service: Code,
    },
    AgreementRecorded {
        agreement: SharingAgreement,
    },
    AgreementEnded {
        reference: Code,
        reason: LongText,
    },
}

impl OrganisationEvent {
    pub fn name(&self) -> &'static str {
        match self {
            OrganisationEvent::Registered { .. } => "organisation_registered",
            OrganisationEvent::ServiceAdded { .. } => "organisation_service_added",
            OrganisationEvent::AgreementRecorded { .. } => "sharing_agreement_recorded",
            OrganisationEvent::AgreementEnded { .. } => "sharing_agreement_ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementState {
    pub agreement: SharingAgreement,
    pub ended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub code: Code,
    pub profile: OrganisationProfile,
    pub services: Vec<Code>,
    pub agreements: Vec<AgreementState>,
}

impl Organisation {
    /// The agreements not ended and in force on `day`.
    pub fn agreements_in_force(&self, day: NaiveDate) -> impl Iterator<Item = &SharingAgreement> {
        self.agreements
            .iter()
            .filter(move |a| !a.ended && a.agreement.in_force_on(day))
            .map(|a| &a.agreement)
    }
}

fn check_services(services: &[Code]) -> Result<(), DomainError> {
    if services.len() > LIST_MAX {
        return Err(DomainError::invalid(
            "services",
            format!("has more than {LIST_MAX} entries"),
        ));
    }
    for (i, s) in services.iter().enumerate() {
        if services[..i].contains(s) {
            return Err(DomainError::invalid(
                format!("services[{i}]"),
                format!("{s} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_agreement(a: &SharingAgreement) -> Result<(), DomainError> {
    if a.purposes.is_empty() {
        return Err(DomainError::invalid(
            "purposes",
            "name at least one purpose",
        ));
    }
    if a.data_classes.is_empty() {
        return Err(DomainError::invalid(
            "data_classes",
            "name at least one data class",
        ));
    }
    if a.expires_on <= a.valid_from {
        return Err(DomainError::invalid(
            "expires_on",
            "must be after valid_from",
        ));
    }
    Ok(())
}

impl Aggregate for Organisation {
    const KIND: AggregateKind = AggregateKind::Organisation;
    type Command = OrganisationCommand;
    type Event = OrganisationEvent;

    fn decide(
        state: Option<&Self>,
        command: &OrganisationCommand,
        _ctx: &DecideContext,
    ) -> Result<Vec<OrganisationEvent>, DomainError> {
        use OrganisationCommand as C;
        use OrganisationEvent as E;
        match (state, command) {
            (
                None,
                C::Register {
                    code,
                    profile,
                    services,
                },
            ) => {
                if code.as_str().eq_ignore_ascii_case(CITIZEN_CODE) {
                    return Err(DomainError::invalid(
                        "code",
                        format!(
                            "{CITIZEN_CODE} is reserved: it names people acting for themselves"
                        ),
                    ));
                }
                check_services(services)?;
                Ok(vec![E::Registered {
                    code: code.clone(),
                    profile: profile.clone(),
                    services: services.clone(),
                }])
            }
            (Some(_), C::Register { .. }) => Err(DomainError::AlreadyExists {
                what: "organisation",
                id: String::new(),
            }),
            (None, _) => Err(DomainError::NotFound {
                what: "organisation",
                id: String::new(),
            }),
            (Some(org), C::AddService { service }) => {
                if org.services.contains(service) {
                    return Err(DomainError::rule(
                        "organisation.service",
                        format!("service {service} is already registered"),
                    ));
                }
                if org.services.len() >= LIST_MAX * 20 {
                    return Err(DomainError::rule(
                        "organisation.service",
                        "the organisation has too many services",
                    ));
                }
                Ok(vec![E::ServiceAdded {
                    service: service.clone(),
                }])
            }
            (Some(org), C::RecordAgreement { agreement }) => {
                check_agreement(agreement)?;
                if org
                    .agreements
                    .iter()
                    .any(|a| a.agreement.reference == agreement.reference)
                {
                    return Err(DomainError::rule(
                        "organisation.agreement",
                        format!(
                            "agreement {} is already recorded; record a new reference to change its terms",
                            agreement.reference
                        ),
                    ));
                }
                Ok(vec![E::AgreementRecorded {
                    agreement: agreement.clone(),
                }])
            }
            (Some(org), C::EndAgreement { reference, reason }) => {
                match org
                    .agreements
                    .iter()
                    .find(|a| &a.agreement.reference == reference)
                {
                    None => Err(DomainError::NotFound {
                        what: "sharing agreement",
                        id: reference.to_string(),
                    }),
                    Some(a) if a.ended => Err(DomainError::rule(
                        "organisation.agreement",
                        format!("agreement {reference} has already ended"),
                    )),
                    Some(_) => Ok(vec![E::AgreementEnded {
                        reference: reference.clone(),
                        reason: reason.clone(),
                    }]),
                }
            }
        }
    }

    fn evolve(state: Option<Self>, event: &OrganisationEvent) -> Result<Self, ReplayError> {
        use OrganisationEvent as E;
        let mismatch = |state: &str| ReplayError {
            event: event.name(),
            state: state.to_owned(),
        };
        match (state, event) {
            (
                None,
                E::Registered {
                    code,
                    profile,
                    services,
                },
            ) => Ok(Organisation {
                code: code.clone(),
                profile: profile.clone(),
                services: services.clone(),
                agreements: Vec::new(),
            }),
            (None, _) => Err(mismatch("none")),
            (Some(_), E::Registered { .. }) => Err(mismatch("organisation")),
            (Some(mut org), E::ServiceAdded { service }) => {
                org.services.push(service.clone());
                Ok(org)
            }
            (Some(mut org), E::AgreementRecorded { agreement }) => {
                org.agreements.push(AgreementState {
                    agreement: agreement.clone(),
                    ended: false,
                });
                Ok(org)
            }
            (Some(mut org), E::AgreementEnded { reference, .. }) => {
                match org
                    .agreements
                    .iter_mut()
                    .find(|a| &a.agreement.reference == reference)
                {
                    Some(a) => a.ended = true,
                    None => return Err(mismatch("organisation without that agreement")),
                }
                Ok(org)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Actor;
    use chrono::{TimeZone, Utc};

    fn ctx() -> DecideContext {
        DecideContext {
            now: Utc
                .with_ymd_and_hms(2026, 11, 26, 10, 0, 0)
                .single()
                .expect("time"),
            actor: Actor {
                organisation: Code::parse("o", "GOV").expect("code"),
                user: Code::parse("u", "admin").expect("code"),
            },
        }
    }

    fn code(s: &str) -> Code {
        Code::parse("c", s).expect("code")
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn registered() -> Organisation {
        let events = Organisation::decide(
            None,
            &OrganisationCommand::Register {
                code: code("RXX"),
                profile: OrganisationProfile {
                    name: ShortText::parse("n", "Synthetic Trust").expect("name"),
                    org_type: OrganisationType::NhsTrust,
                },
                services: vec![code("RXX-WARD")],
            },
            &ctx(),
        )
        .expect("register");
        crate::replay::<Organisation>(&events)
            .expect("replay")
            .expect("state")
    }

    fn agreement(reference: &str) -> SharingAgreement {
        SharingAgreement {
            reference: code(reference),
            purposes: vec![Purpose::DirectCare],
            data_classes: vec![DataClass::Discharge],
            valid_from: day("2026-01-01"),
            expires_on: day("2027-01-01"),
        }
    }

    #[test]
    fn registration_records_code_and_services() {
        let org = registered();
        assert_eq!(org.code, code("RXX"));
        assert_eq!(org.services, vec![code("RXX-WARD")]);
    }

    #[test]
    fn the_citizen_code_is_reserved_in_any_case() {
        for reserved in ["CITIZEN", "citizen", "Citizen"] {
            let refused = Organisation::decide(
                None,
                &OrganisationCommand::Register {
                    code: code(reserved),
                    profile: OrganisationProfile {
                        name: ShortText::parse("n", "Not a citizen").expect("name"),
                        org_type: OrganisationType::Other,
                    },
                    services: vec![],
                },
                &ctx(),
            );
            assert!(
                matches!(&refused, Err(DomainError::Invalid { field, .. }) if field == "code"),
                "{reserved}: {refused:?}"
            );
        }
    }

    #[test]
    fn agreements_are_checked_and_end_once() {
        let org = registered();
        let mut bad = agreement("A1");
        bad.expires_on = bad.valid_from;
        let refused = Organisation::decide(
            Some(&org),
            &OrganisationCommand::RecordAgreement { agreement: bad },
            &ctx(),
        );
        assert!(
            matches!(refused, Err(DomainError::Invalid { field, .. }) if field == "expires_on")
        );

        let events = Organisation::decide(
            Some(&org),
            &OrganisationCommand::RecordAgreement {
                agreement: agreement("A1"),
            },
            &ctx(),
        )
        .expect("record");
        let org = Organisation::evolve(Some(org), &events[0]).expect("evolve");
        assert_eq!(org.agreements_in_force(day("2026-06-01")).count(), 1);
        assert_eq!(org.agreements_in_force(day("2027-01-01")).count(), 0);

        let again = Organisation::decide(
            Some(&org),
            &OrganisationCommand::RecordAgreement {
                agreement: agreement("A1"),
            },
            &ctx(),
        );
        assert!(matches!(again, Err(DomainError::Rule { .. })));

        let end = OrganisationCommand::EndAgreement {
            reference: code("A1"),
            reason: LongText::parse("r", "superseded").expect("text"),
        };
        let events = Organisation::decide(Some(&org), &end, &ctx()).expect("end");
        let org = Organisation::evolve(Some(org), &events[0]).expect("evolve");
        assert_eq!(org.agreements_in_force(day("2026-06-01")).count(), 0);
        assert!(matches!(
            Organisation::decide(Some(&org), &end, &ctx()),
            Err(DomainError::Rule { .. })
        ));
    }
}
