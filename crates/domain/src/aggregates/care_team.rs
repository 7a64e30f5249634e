//! Care team and coordinator (CareTeam, EpisodeOfCare.careManager). Members are
//! organisations or practitioners with a role and a period; one named care coordinator is the
//! single point of contact and must be a current member.

use chrono::NaiveDate;

use crate::values::{Code, LongText, not_future_date};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

/// A member's role on the care team: the organisations and the professions that integrated
/// teams (hospital, primary care, community, mental health, social care, housing, voluntary)
/// name. `docs/codes/care-team-roles.md` lists them with their FHIR mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CareTeamRole {
    GeneralPractice,
    HospitalTeam,
    CommunityNursing,
    SocialWorker,
    Therapist,
    MentalHealth,
    Voluntary,
    Carer,
    Other,
    Psychologist,
    Psychiatrist,
    Pharmacist,
    HousingOfficer,
    OccupationalTherapist,
    Physiotherapist,
    Nurse,
    SupportWorker,
    Doctor,
    SpeechAndLanguageTherapist,
    Dietitian,
    SocialPrescribingLinkWorker,
    Advocate,
    CarePractitioner,
}

impl CareTeamRole {
    /// Every role, in wire order.
    pub const ALL: [CareTeamRole; 23] = [
        CareTeamRole::GeneralPractice,
        CareTeamRole::HospitalTeam,
        CareTeamRole::CommunityNursing,
        CareTeamRole::SocialWorker,
        CareTeamRole::Therapist,
        CareTeamRole::MentalHealth,
        CareTeamRole::Voluntary,
        CareTeamRole::Carer,
        CareTeamRole::Other,
        CareTeamRole::Psychologist,
        CareTeamRole::Psychiatrist,
        CareTeamRole::Pharmacist,
        CareTeamRole::HousingOfficer,
        CareTeamRole::OccupationalTherapist,
        CareTeamRole::Physiotherapist,
        CareTeamRole::Nurse,
        CareTeamRole::SupportWorker,
        CareTeamRole::Doctor,
        CareTeamRole::SpeechAndLanguageTherapist,
        CareTeamRole::Dietitian,
        CareTeamRole::SocialPrescribingLinkWorker,
        CareTeamRole::Advocate,
        CareTeamRole::CarePractitioner,
    ];

    /// Carewoven's code for the role (its CodeSystem `care-team-role`).
    pub fn code(self) -> &'static str {
        match self {
            CareTeamRole::GeneralPractice => "general-practice",
            CareTeamRole::HospitalTeam => "hospital-team",
            CareTeamRole::CommunityNursing => "community-nursing",
            CareTeamRole::SocialWorker => "social-worker",
            CareTeamRole::Therapist => "therapist",
            CareTeamRole::MentalHealth => "mental-health",
            CareTeamRole::Voluntary => "voluntary",
            CareTeamRole::Carer => "carer",
            CareTeamRole::Other => "other",
            CareTeamRole::Psychologist => "psychologist",
            CareTeamRole::Psychiatrist => "psychiatrist",
            CareTeamRole::Pharmacist => "pharmacist",
            CareTeamRole::HousingOfficer => "housing-officer",
            CareTeamRole::OccupationalTherapist => "occupational-therapist",
            CareTeamRole::Physiotherapist => "physiotherapist",
            CareTeamRole::Nurse => "nurse",
            CareTeamRole::SupportWorker => "support-worker",
            CareTeamRole::Doctor => "doctor",
            CareTeamRole::SpeechAndLanguageTherapist => "speech-and-language-therapist",
            CareTeamRole::Dietitian => "dietitian",
            CareTeamRole::SocialPrescribingLinkWorker => "social-prescribing-link-worker",
            CareTeamRole::Advocate => "advocate",
            CareTeamRole::CarePractitioner => "care-practitioner",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            CareTeamRole::GeneralPractice => "General practice",
            CareTeamRole::HospitalTeam => "Hospital team",
            CareTeamRole::CommunityNursing => "Community nursing",
            CareTeamRole::SocialWorker => "Social worker",
            CareTeamRole::Therapist => "Therapist",
            CareTeamRole::MentalHealth => "Mental health team",
            CareTeamRole::Voluntary => "Voluntary or community organisation",
            CareTeamRole::Carer => "Carer",
            CareTeamRole::Other => "Other",
            CareTeamRole::Psychologist => "Psychologist",
            CareTeamRole::Psychiatrist => "Psychiatrist",
            CareTeamRole::Pharmacist => "Pharmacist",
            CareTeamRole::HousingOfficer => "Housing officer",
            CareTeamRole::OccupationalTherapist => "Occupational therapist",
            CareTeamRole::Physiotherapist => "Physiotherapist",
            CareTeamRole::Nurse => "Nurse",
            CareTeamRole::SupportWorker => "Support worker",
            CareTeamRole::Doctor => "Doctor",
            CareTeamRole::SpeechAndLanguageTherapist => "Speech and language therapist",
            CareTeamRole::Dietitian => "Dietitian",
            CareTeamRole::SocialPrescribingLinkWorker => "Social prescribing link worker",
            CareTeamRole::Advocate => "Advocate",
            CareTeamRole::CarePractitioner => "Care practitioner (home care or reablement)",
        }
    }

    /// The code in HL7's practitioner-role CodeSystem
    /// (`http://terminology.hl7.org/CodeSystem/practitioner-role`: doctor, nurse,
    /// pharmacist, researcher, teacher, ict) where one exists for the role.
    pub fn practitioner_role(self) -> Option<&'static str> {
        match self {
            CareTeamRole::CommunityNursing => Some("nurse"),
            CareTeamRole::Psychiatrist => Some("doctor"),
            CareTeamRole::Pharmacist => Some("pharmacist"),
            CareTeamRole::Nurse => Some("nurse"),
            CareTeamRole::Doctor => Some("doctor"),
            _ => None,
        }
    }
}

/// A member is an organisation, or a practitioner within one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberRef {
    pub organisation: Code,
    pub practitioner: Option<Code>,
}

impl std::fmt::Display for MemberRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.practitioner {
            Some(p) => write!(f, "{}/{}", self.organisation, p),
            None => write!(f, "{}", self.organisation),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member: MemberRef,
    pub role: CareTeamRole,
    pub since: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CareTeamCommand {
    AddMember {
        member: MemberRef,
        role: CareTeamRole,
        since: NaiveDate,
    },
    RemoveMember {
        member: MemberRef,
        until: NaiveDate,
        reason: LongText,
    },
    NameCoordinator {
        member: MemberRef,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CareTeamEvent {
    MemberAdded {
        member: MemberRef,
        role: CareTeamRole,
        since: NaiveDate,
    },
    MemberRemoved {
        member: MemberRef,
        until: NaiveDate,
        reason: LongText,
    },
    CoordinatorNamed {
        member: MemberRef,
    },
    /// The coordinator left the team; nobody is named until a new coordinator is.
    CoordinatorUnassigned {
        member: MemberRef,
    },
}

impl CareTeamEvent {
    pub fn name(&self) -> &'static str {
        match self {
            CareTeamEvent::MemberAdded { .. } => "care_team_member_added",
            CareTeamEvent::MemberRemoved { .. } => "care_team_member_removed",
            CareTeamEvent::CoordinatorNamed { .. } => "care_coordinator_named",
            CareTeamEvent::CoordinatorUnassigned { .. } => "care_coordinator_unassigned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareTeam {
    pub members: Vec<Member>,
    pub coordinator: Option<MemberRef>,
}

impl CareTeam {
    pub fn member(&self, r: &MemberRef) -> Option<&Member> {
        self.members.iter().find(|m| &m.member == r)
    }
}

impl Aggregate for CareTeam {
    const KIND: AggregateKind = AggregateKind::CareTeam;
    type Command = CareTeamCommand;
    type Event = CareTeamEvent;

    fn decide(
        state: Option<&Self>,
        command: &CareTeamCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<CareTeamEvent>, DomainError> {
        match command {
            CareTeamCommand::AddMember {
                member,
                role,
                since,
            } => {
                not_future_date("since", *since, ctx.now)?;
                if state.and_then(|t| t.member(member)).is_some() {
                    return Err(DomainError::rule(
                        "care_team.membership",
                        format!("{member} is already a member"),
                    ));
                }
                Ok(vec![CareTeamEvent::MemberAdded {
                    member: member.clone(),
                    role: *role,
                    since: *since,
                }])
            }
            CareTeamCommand::RemoveMember {
                member,
                until,
                reason,
            } => {
                let team = state.ok_or(DomainError::NotFound {
                    what: "care team",
                    id: String::new(),
                })?;
                let Some(current) = team.member(member) else {
                    return Err(DomainError::rule(
                        "care_team.membership",
                        format!("{member} is not a member"),
                    ));
                };
                not_future_date("until", *until, ctx.now)?;
                if *until < current.since {
                    return Err(DomainError::invalid("until", "is before the member joined"));
                }
                let mut events = vec![CareTeamEvent::MemberRemoved {
                    member: member.clone(),
                    until: *until,
                    reason: reason.clone(),
                }];
                if team.coordinator.as_ref() == Some(member) {
                    events.push(CareTeamEvent::CoordinatorUnassigned {
                        member: member.clone(),
                    });
                }
                Ok(events)
            }
            CareTeamCommand::NameCoordinator { member } => {
                let team = state.ok_or(DomainError::NotFound {
                    what: "care team",
                    id: String::new(),
                })?;
                if team.member(member).is_none() {
                    return Err(DomainError::rule(
                        "care_team.coordinator",
                        format!("{member} must be a current member to be named coordinator"),
                    ));
                }
                if team.coordinator.as_ref() == Some(member) {
                    return Err(DomainError::rule(
                        "care_team.coordinator",
                        format!("{member} is already the coordinator"),
                    ));
                }
                Ok(vec![CareTeamEvent::CoordinatorNamed {
                    member: member.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &CareTeamEvent) -> Result<Self, ReplayError> {
        let err = || ReplayError {
            event: event.name(),
            state: "care team".into(),
        };
        match (state, event) {
            (
                state,
                CareTeamEvent::MemberAdded {
                    member,
                    role,
                    since,
                },
            ) => {
                let mut team = state.unwrap_or(CareTeam {
                    members: Vec::new(),
                    coordinator: None,
                });
                team.members.push(Member {
                    member: member.clone(),
                    role: *role,
                    since: *since,
                });
                Ok(team)
            }
            (None, _) => Err(err()),
            (Some(mut team), CareTeamEvent::MemberRemoved { member, .. }) => {
                let before = team.members.len();
                team.members.retain(|m| &m.member != member);
                if team.members.len() == before {
                    return Err(err());
                }
                Ok(team)
            }
            (Some(mut team), CareTeamEvent::CoordinatorNamed { member }) => {
                team.coordinator = Some(member.clone());
                Ok(team)
            }
            (Some(mut team), CareTeamEvent::CoordinatorUnassigned { .. }) => {
                team.coordinator = None;
                Ok(team)
            }
        }
    }
}
