//! The value messages of `common.proto`, both ways, and the enumerations.
//!
//! Wire -> domain goes through [`FromWire`], which validates and names each field by its
//! proto path under the prefix it is given; domain -> wire is a plain `From`.

use carewoven_domain::DomainError;
use carewoven_domain::assessment::{AssessmentKind, AssessmentRequest, CareActOutcome, Findings};
use carewoven_domain::care_plan::{Activity, ActivityChange, ActivityStatus, PlanContent};
use carewoven_domain::care_team::{CareTeamRole, MemberRef};
use carewoven_domain::consent::{ConsentDecision, ConsentTerms, DataClass, Purpose};
use carewoven_domain::discharge::{DelayReason, LegacyDelayReason, Pathway};
use carewoven_domain::feedback::{FeedbackRecord, FeedbackSource};
use carewoven_domain::flag::{RiskFlag, RiskFlagCode};
use carewoven_domain::meeting::{MeetingAction, MeetingRecord};
use carewoven_domain::organisation::{OrganisationProfile, OrganisationType, SharingAgreement};
use carewoven_domain::person::{Carer, Correction, Profile, ProxyGrant, ProxyScope};
use carewoven_domain::referral::{NewReferral, Priority};
use carewoven_domain::task::{TaskBasis, TaskContent, TaskStatus};
use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText, parse_list};

use super::wire::{
    WireEnum, WireString, at, opt, opt_date, opt_uuid, present, req_date, req_enum, req_instant,
    required, timestamp,
};
use crate::v1;

/// Build a domain value from its wire message, naming fields under `field`.
pub trait FromWire<W>: Sized {
    fn from_wire(field: &str, wire: &W) -> Result<Self, DomainError>;
}

/// A required sub-message: missing is refused as `field` "is required".
pub(super) fn req_msg<T: FromWire<W>, W>(field: &str, wire: Option<&W>) -> Result<T, DomainError> {
    T::from_wire(field, wire.ok_or_else(|| required(field))?)
}

/// A repeated sub-message field.
fn msg_list<T: FromWire<W>, W>(field: &str, wire: &[W]) -> Result<Vec<T>, DomainError> {
    parse_list(field, wire, T::from_wire)
}

/// A repeated code field.
pub(super) fn code_list(field: &str, raw: &[String]) -> Result<Vec<Code>, DomainError> {
    parse_list(field, raw, |f, s| Code::parse(f, s))
}

fn long_list(field: &str, raw: &[String]) -> Result<Vec<LongText>, DomainError> {
    parse_list(field, raw, |f, s| LongText::parse(f, s))
}

fn enum_list<E: WireEnum>(field: &str, raw: &[i32]) -> Result<Vec<E>, DomainError> {
    parse_list(field, raw, |f, v| req_enum(f, *v))
}

fn wire_list<'a, D: 'a, W: From<&'a D>>(items: &'a [D]) -> Vec<W> {
    items.iter().map(W::from).collect()
}

fn wire_strings<T: WireString>(items: &[T]) -> Vec<String> {
    items.iter().map(WireString::wire).collect()
}

fn enum_i32s<E: WireEnum>(items: &[E]) -> Vec<i32> {
    items.iter().map(|e| e.to_i32()).collect()
}

// ---------------------------------------------------------------------------------------------
// Enumerations

macro_rules! wire_enum_map {
    ($domain:ident => $wire:ident { $($d:ident = $w:ident),+ $(,)? }) => {
        impl WireEnum for $domain {
            type Wire = v1::$wire;

            fn from_wire(wire: v1::$wire) -> Option<Self> {
                match wire {
                    v1::$wire::Unspecified => None,
                    $(v1::$wire::$w => Some($domain::$d),)+
                }
            }

            fn to_wire(self) -> v1::$wire {
                match self {
                    $($domain::$d => v1::$wire::$w,)+
                }
            }
        }
    };
}

wire_enum_map!(Priority => Priority {
    Routine = Routine,
    Urgent = Urgent,
    Asap = Asap,
    Stat = Stat,
});

wire_enum_map!(AssessmentKind => AssessmentKind {
    CareActNeeds = CareActNeeds,
    Carers = Carers,
    Health = Health,
    Therapy = Therapy,
});

wire_enum_map!(CareActOutcome => CareActOutcome {
    ManagingNutrition = ManagingNutrition,
    PersonalHygiene = PersonalHygiene,
    ManagingToiletNeeds = ManagingToiletNeeds,
    BeingAppropriatelyClothed = BeingAppropriatelyClothed,
    UsingTheHomeSafely = UsingTheHomeSafely,
    MaintainingAHabitableHome = MaintainingAHabitableHome,
    FamilyAndPersonalRelationships = FamilyAndPersonalRelationships,
    WorkTrainingEducationVolunteering = WorkTrainingEducationVolunteering,
    UsingCommunityServices = UsingCommunityServices,
    CaringResponsibilities = CaringResponsibilities,
});

wire_enum_map!(CareTeamRole => CareTeamRole {
    GeneralPractice = GeneralPractice,
    HospitalTeam = HospitalTeam,
    CommunityNursing = CommunityNursing,
    SocialWorker = SocialWorker,
    Therapist = Therapist,
    MentalHealth = MentalHealth,
    Voluntary = Voluntary,
    Carer = Carer,
    Other = Other,
    Psychologist = Psychologist,
    Psychiatrist = Psychiatrist,
    Pharmacist = Pharmacist,
    HousingOfficer = HousingOfficer,
    OccupationalTherapist = OccupationalTherapist,
    Physiotherapist = Physiotherapist,
    Nurse = Nurse,
    SupportWorker = SupportWorker,
    Doctor = Doctor,
    SpeechAndLanguageTherapist = SpeechAndLanguageTherapist,
    Dietitian = Dietitian,
    SocialPrescribingLinkWorker = SocialPrescribingLinkWorker,
    Advocate = Advocate,
    CarePractitioner = CarePractitioner,
});

/// A care-team role from its wire value (`None` for unspecified or unknown).
pub fn care_team_role_from_wire(raw: i32) -> Option<CareTeamRole> {
    v1::CareTeamRole::try_from(raw)
        .ok()
        .and_then(CareTeamRole::from_wire)
}

#[cfg(test)]
pub(crate) fn care_team_role_wire(role: CareTeamRole) -> i32 {
    role.to_i32()
}

wire_enum_map!(ConsentDecision => ConsentDecision {
    Permit = Permit,
    Deny = Deny,
});

wire_enum_map!(Purpose => Purpose {
    DirectCare = DirectCare,
    CareCoordination = CareCoordination,
    Research = Research,
    Planning = Planning,
});

wire_enum_map!(DataClass => DataClass {
    Demographics = Demographics,
    Contact = Contact,
    Referrals = Referrals,
    Assessments = Assessments,
    CarePlan = CarePlan,
    CareTeam = CareTeam,
    Discharge = Discharge,
    Meetings = Meetings,
    Feedback = Feedback,
    RiskFlags = RiskFlags,
    Tasks = Tasks,
});

wire_enum_map!(TaskStatus => TaskStatus {
    Requested = Requested,
    Accepted = Accepted,
    InProgress = InProgress,
    OnHold = OnHold,
    Completed = Completed,
    Cancelled = Cancelled,
    Failed = Failed,
});

wire_enum_map!(RiskFlagCode => RiskFlagCode {
    Frailty = Frailty,
    FallsRisk = FallsRisk,
    ClinicallyExtremelyVulnerable = ClinicallyExtremelyVulnerable,
    LivesAlone = LivesAlone,
    SafeguardingConcern = SafeguardingConcern,
    EndOfLife = EndOfLife,
});

wire_enum_map!(Pathway => Pathway {
    P0 = Pathway0,
    P1 = Pathway1,
    P2 = Pathway2,
    P3 = Pathway3,
});

/// Delay reasons: the national values both ways; the legacy values 1 to 11 (stored events,
/// older clients) are read as the national reason [`LegacyDelayReason::national`] documents.
/// Only the legacy `Other` is written back as its old value (it has no national one).
impl WireEnum for DelayReason {
    type Wire = v1::DelayReason;

    fn from_wire(wire: v1::DelayReason) -> Option<Self> {
        use DelayReason as N;
        use LegacyDelayReason as L;
        use v1::DelayReason as W;
        let legacy = |l: L| Some(l.national());
        match wire {
            W::Unspecified => None,
            W::AwaitingAssessment => legacy(L::AwaitingAssessment),
            W::AwaitingHomeCare => legacy(L::AwaitingHomeCare),
            W::AwaitingReablement => legacy(L::AwaitingReablement),
            W::AwaitingBedBasedRehabilitation => legacy(L::AwaitingBedBasedRehabilitation),
            W::AwaitingCareHomePlacement => legacy(L::AwaitingCareHomePlacement),
            W::AwaitingEquipment => legacy(L::AwaitingEquipment),
            W::AwaitingHousing => legacy(L::AwaitingHousing),
            W::AwaitingTransport => legacy(L::AwaitingTransport),
            W::AwaitingMedication => legacy(L::AwaitingMedication),
            W::PersonOrFamilyChoice => legacy(L::PersonOrFamilyChoice),
            W::Other => legacy(L::Other),
            W::AwaitingMedicalDecision => Some(N::AwaitingMedicalDecision),
            W::AwaitingTherapyDecision => Some(N::AwaitingTherapyDecision),
            W::AwaitingReferralToTransferHub => Some(N::AwaitingReferralToTransferHub),
            W::AwaitingMedicinesToTakeHome => Some(N::AwaitingMedicinesToTakeHome),
            W::AwaitingPatientTransport => Some(N::AwaitingTransport),
            W::AwaitingTransferHubConfirmation => Some(N::AwaitingTransferHubConfirmation),
            W::Pathway1NewCare => Some(N::Pathway1NewCare),
            W::Pathway1ContinuingRehabilitation => Some(N::Pathway1ContinuingRehabilitation),
            W::Pathway2Bed => Some(N::Pathway2Bed),
            W::Pathway3CareHome => Some(N::Pathway3CareHome),
            W::Pathway3EndOfLife => Some(N::Pathway3EndOfLife),
            W::AwaitingEquipmentOrAdaptations => Some(N::AwaitingEquipmentOrAdaptations),
            W::IndividualOrFamilyNotInAgreement => Some(N::IndividualOrFamilyNotInAgreement),
            W::HomelessOrNoRecourseToPublicFunds => Some(N::HomelessOrNoRecourseToPublicFunds),
            W::SafeguardingOrCourtOfProtection => Some(N::SafeguardingOrCourtOfProtection),
            W::Repatriation => Some(N::Repatriation),
            W::AwaitingDiagnosticTest => Some(N::AwaitingDiagnosticTest),
            W::InfectionControl => Some(N::InfectionControl),
            W::AwaitingContinuingHealthcareDecision => {
                Some(N::AwaitingContinuingHealthcareDecision)
            }
            W::NoPlan => Some(N::NoPlan),
        }
    }

    fn to_wire(self) -> v1::DelayReason {
        delay_reason_wire(self)
    }
}

/// The wire value written for a delay reason (the national value; `Other` keeps its legacy
/// value). Public so the projection writes the same values into views.
pub fn delay_reason_wire(reason: DelayReason) -> v1::DelayReason {
    use DelayReason as N;
    use v1::DelayReason as W;
    match reason {
        N::AwaitingMedicalDecision => W::AwaitingMedicalDecision,
        N::AwaitingTherapyDecision => W::AwaitingTherapyDecision,
        N::AwaitingReferralToTransferHub => W::AwaitingReferralToTransferHub,
        N::AwaitingMedicinesToTakeHome => W::AwaitingMedicinesToTakeHome,
        N::AwaitingTransport => W::AwaitingPatientTransport,
        N::AwaitingTransferHubConfirmation => W::AwaitingTransferHubConfirmation,
        N::Pathway1NewCare => W::Pathway1NewCare,
        N::Pathway1ContinuingRehabilitation => W::Pathway1ContinuingRehabilitation,
        N::Pathway2Bed => W::Pathway2Bed,
        N::Pathway3CareHome => W::Pathway3CareHome,
        N::Pathway3EndOfLife => W::Pathway3EndOfLife,
        N::AwaitingEquipmentOrAdaptations => W::AwaitingEquipmentOrAdaptations,
        N::IndividualOrFamilyNotInAgreement => W::IndividualOrFamilyNotInAgreement,
        N::HomelessOrNoRecourseToPublicFunds => W::HomelessOrNoRecourseToPublicFunds,
        N::SafeguardingOrCourtOfProtection => W::SafeguardingOrCourtOfProtection,
        N::Repatriation => W::Repatriation,
        N::AwaitingDiagnosticTest => W::AwaitingDiagnosticTest,
        N::InfectionControl => W::InfectionControl,
        N::AwaitingContinuingHealthcareDecision => W::AwaitingContinuingHealthcareDecision,
        N::NoPlan => W::NoPlan,
        N::Other => W::Other,
    }
}

wire_enum_map!(OrganisationType => OrganisationType {
    NhsTrust = NhsTrust,
    GeneralPractice = GeneralPractice,
    LocalAuthority = LocalAuthority,
    CommunityProvider = CommunityProvider,
    CareProvider = CareProvider,
    Voluntary = Voluntary,
    Other = Other,
});

wire_enum_map!(FeedbackSource => FeedbackSource {
    Person = Person,
    Carer = Carer,
});

wire_enum_map!(ProxyScope => ProxyScope {
    ReadRecord = ReadRecord,
    AccessList = AccessList,
    Feedback = Feedback,
    Consents = Consents,
    WhatMatters = WhatMatters,
});

impl FromWire<v1::ProxyGrant> for ProxyGrant {
    fn from_wire(field: &str, w: &v1::ProxyGrant) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(ProxyGrant {
            carer_nhs_number: NhsNumber::parse(&f("carer_nhs_number"), &w.carer_nhs_number)?,
            carer_name: ShortText::parse(&f("carer_name"), &w.carer_name)?,
            scope: enum_list(&f("scope"), &w.scope)?,
        })
    }
}

impl From<&ProxyGrant> for v1::ProxyGrant {
    fn from(g: &ProxyGrant) -> Self {
        v1::ProxyGrant {
            carer_nhs_number: g.carer_nhs_number.wire(),
            carer_name: g.carer_name.wire(),
            scope: enum_i32s(&g.scope),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Person

impl FromWire<v1::Carer> for Carer {
    fn from_wire(field: &str, w: &v1::Carer) -> Result<Self, DomainError> {
        Ok(Carer {
            name: ShortText::parse(&at(field, "name"), &w.name)?,
            relationship: ShortText::parse(&at(field, "relationship"), &w.relationship)?,
            contact: opt(&at(field, "contact"), &w.contact, ShortText::parse)?,
        })
    }
}

impl From<&Carer> for v1::Carer {
    fn from(c: &Carer) -> Self {
        v1::Carer {
            name: c.name.wire(),
            relationship: c.relationship.wire(),
            contact: c.contact.wire(),
        }
    }
}

impl FromWire<v1::Profile> for Profile {
    fn from_wire(field: &str, w: &v1::Profile) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(Profile {
            nhs_number: NhsNumber::parse(&f("nhs_number"), &w.nhs_number)?,
            given_name: ShortText::parse(&f("given_name"), &w.given_name)?,
            family_name: ShortText::parse(&f("family_name"), &w.family_name)?,
            date_of_birth: req_date(&f("date_of_birth"), &w.date_of_birth)?,
            contact: opt(&f("contact"), &w.contact, LongText::parse)?,
            what_matters: opt(&f("what_matters"), &w.what_matters, LongText::parse)?,
            communication_needs: opt(
                &f("communication_needs"),
                &w.communication_needs,
                LongText::parse,
            )?,
            carers: msg_list(&f("carers"), &w.carers)?,
            registered_gp: opt(&f("registered_gp"), &w.registered_gp, Code::parse)?,
        })
    }
}

impl From<&Profile> for v1::Profile {
    fn from(p: &Profile) -> Self {
        v1::Profile {
            nhs_number: p.nhs_number.wire(),
            given_name: p.given_name.wire(),
            family_name: p.family_name.wire(),
            date_of_birth: p.date_of_birth.wire(),
            contact: p.contact.wire(),
            what_matters: p.what_matters.wire(),
            communication_needs: p.communication_needs.wire(),
            carers: wire_list(&p.carers),
            registered_gp: p.registered_gp.wire(),
        }
    }
}

impl FromWire<v1::Correction> for Correction {
    fn from_wire(field: &str, w: &v1::Correction) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(Correction {
            nhs_number: present(&f("nhs_number"), w.nhs_number.as_deref(), NhsNumber::parse)?,
            given_name: present(&f("given_name"), w.given_name.as_deref(), ShortText::parse)?,
            family_name: present(
                &f("family_name"),
                w.family_name.as_deref(),
                ShortText::parse,
            )?,
            date_of_birth: present(&f("date_of_birth"), w.date_of_birth.as_deref(), req_date)?,
            contact: present(&f("contact"), w.contact.as_deref(), LongText::parse)?,
            what_matters: present(
                &f("what_matters"),
                w.what_matters.as_deref(),
                LongText::parse,
            )?,
            communication_needs: present(
                &f("communication_needs"),
                w.communication_needs.as_deref(),
                LongText::parse,
            )?,
            carers: w
                .carers
                .as_ref()
                .map(|list| msg_list(&at(&f("carers"), "carers"), &list.carers))
                .transpose()?,
            registered_gp: present(&f("registered_gp"), w.registered_gp.as_deref(), Code::parse)?,
        })
    }
}

impl From<&Correction> for v1::Correction {
    fn from(c: &Correction) -> Self {
        v1::Correction {
            nhs_number: c.nhs_number.as_ref().map(WireString::wire),
            given_name: c.given_name.as_ref().map(WireString::wire),
            family_name: c.family_name.as_ref().map(WireString::wire),
            date_of_birth: c.date_of_birth.as_ref().map(WireString::wire),
            contact: c.contact.as_ref().map(WireString::wire),
            what_matters: c.what_matters.as_ref().map(WireString::wire),
            communication_needs: c.communication_needs.as_ref().map(WireString::wire),
            carers: c.carers.as_ref().map(|carers| v1::CarerList {
                carers: wire_list(carers),
            }),
            registered_gp: c.registered_gp.as_ref().map(WireString::wire),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Referral

impl FromWire<v1::Referral> for NewReferral {
    fn from_wire(field: &str, w: &v1::Referral) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(NewReferral {
            from_organisation: Code::parse(&f("from_organisation"), &w.from_organisation)?,
            to_service: Code::parse(&f("to_service"), &w.to_service)?,
            priority: req_enum(&f("priority"), w.priority)?,
            reason: LongText::parse(&f("reason"), &w.reason)?,
            replaces: opt_uuid(&f("replaces"), &w.replaces)?,
        })
    }
}

impl From<&NewReferral> for v1::Referral {
    fn from(r: &NewReferral) -> Self {
        v1::Referral {
            from_organisation: r.from_organisation.wire(),
            to_service: r.to_service.wire(),
            priority: r.priority.to_i32(),
            reason: r.reason.wire(),
            replaces: r.replaces.wire(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Assessment

impl FromWire<v1::AssessmentRequest> for AssessmentRequest {
    fn from_wire(field: &str, w: &v1::AssessmentRequest) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(AssessmentRequest {
            kind: req_enum(&f("kind"), w.kind)?,
            assessors: code_list(&f("assessors"), &w.assessors)?,
            referral_id: opt_uuid(&f("referral_id"), &w.referral_id)?,
            due_by: opt_date(&f("due_by"), &w.due_by)?,
        })
    }
}

impl From<&AssessmentRequest> for v1::AssessmentRequest {
    fn from(r: &AssessmentRequest) -> Self {
        v1::AssessmentRequest {
            kind: r.kind.to_i32(),
            assessors: wire_strings(&r.assessors),
            referral_id: r.referral_id.wire(),
            due_by: r.due_by.wire(),
        }
    }
}

impl FromWire<v1::Findings> for Findings {
    fn from_wire(field: &str, w: &v1::Findings) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(Findings {
            summary: LongText::parse(&f("summary"), &w.summary)?,
            outcomes_not_achieved: enum_list(
                &f("outcomes_not_achieved"),
                &w.outcomes_not_achieved,
            )?,
            wellbeing_impact: opt(&f("wellbeing_impact"), &w.wellbeing_impact, LongText::parse)?,
            needs_arise_from_impairment_or_illness: w.needs_arise_from_impairment_or_illness,
            significant_impact_on_wellbeing: w.significant_impact_on_wellbeing,
        })
    }
}

impl From<&Findings> for v1::Findings {
    fn from(f: &Findings) -> Self {
        v1::Findings {
            summary: f.summary.wire(),
            outcomes_not_achieved: enum_i32s(&f.outcomes_not_achieved),
            wellbeing_impact: f.wellbeing_impact.wire(),
            needs_arise_from_impairment_or_illness: f.needs_arise_from_impairment_or_illness,
            significant_impact_on_wellbeing: f.significant_impact_on_wellbeing,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Care plan

impl FromWire<v1::Activity> for Activity {
    fn from_wire(field: &str, w: &v1::Activity) -> Result<Self, DomainError> {
        let status_field = at(field, "status");
        let status: v1::ActivityStatus = super::wire::wire_enum(&status_field, w.status)?;
        Ok(Activity {
            description: LongText::parse(&at(field, "description"), &w.description)?,
            responsible_organisation: Code::parse(
                &at(field, "responsible_organisation"),
                &w.responsible_organisation,
            )?,
            // Unspecified is "not started": plans agreed before statuses existed.
            status: ActivityStatus::from_wire(status).unwrap_or(ActivityStatus::NotStarted),
            status_reason: opt(
                &at(field, "status_reason"),
                &w.status_reason,
                LongText::parse,
            )?,
        })
    }
}

impl From<&Activity> for v1::Activity {
    fn from(a: &Activity) -> Self {
        v1::Activity {
            description: a.description.wire(),
            responsible_organisation: a.responsible_organisation.wire(),
            status: a.status.to_i32(),
            status_reason: a.status_reason.wire(),
        }
    }
}

wire_enum_map!(ActivityStatus => ActivityStatus {
    NotStarted = NotStarted,
    Scheduled = Scheduled,
    InProgress = InProgress,
    OnHold = OnHold,
    Completed = Completed,
    Cancelled = Cancelled,
    Stopped = Stopped,
});

impl FromWire<v1::ActivityChange> for ActivityChange {
    fn from_wire(field: &str, w: &v1::ActivityChange) -> Result<Self, DomainError> {
        use v1::activity_change::Change;
        match &w.change {
            None => Err(required(&at(field, "change"))),
            Some(Change::Add(a)) => Ok(ActivityChange::Add {
                activity: Activity::from_wire(&at(field, "add"), a)?,
            }),
            Some(Change::Update(u)) => Ok(ActivityChange::Update {
                index: u.index,
                activity: req_msg(&at(field, "update.activity"), u.activity.as_ref())?,
            }),
            Some(Change::End(e)) => Ok(ActivityChange::End {
                index: e.index,
                status: req_enum(&at(field, "end.status"), e.status)?,
                reason: LongText::parse(&at(field, "end.reason"), &e.reason)?,
            }),
        }
    }
}

impl From<&ActivityChange> for v1::ActivityChange {
    fn from(c: &ActivityChange) -> Self {
        use v1::activity_change::Change;
        let change = match c {
            ActivityChange::Add { activity } => Change::Add(activity.into()),
            ActivityChange::Update { index, activity } => Change::Update(v1::ActivityUpdate {
                index: *index,
                activity: Some(activity.into()),
            }),
            ActivityChange::End {
                index,
                status,
                reason,
            } => Change::End(v1::ActivityEnd {
                index: *index,
                status: status.to_i32(),
                reason: reason.wire(),
            }),
        };
        v1::ActivityChange {
            change: Some(change),
        }
    }
}

/// A repeated activity-change field.
pub(super) fn activity_changes(
    field: &str,
    wire: &[v1::ActivityChange],
) -> Result<Vec<ActivityChange>, DomainError> {
    msg_list(field, wire)
}

impl FromWire<v1::PlanContent> for PlanContent {
    fn from_wire(field: &str, w: &v1::PlanContent) -> Result<Self, DomainError> {
        Ok(PlanContent {
            goals: long_list(&at(field, "goals"), &w.goals)?,
            activities: msg_list(&at(field, "activities"), &w.activities)?,
            review_date: req_date(&at(field, "review_date"), &w.review_date)?,
        })
    }
}

impl From<&PlanContent> for v1::PlanContent {
    fn from(p: &PlanContent) -> Self {
        v1::PlanContent {
            goals: wire_strings(&p.goals),
            activities: wire_list(&p.activities),
            review_date: p.review_date.wire(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Care team

impl FromWire<v1::MemberRef> for MemberRef {
    fn from_wire(field: &str, w: &v1::MemberRef) -> Result<Self, DomainError> {
        Ok(MemberRef {
            organisation: Code::parse(&at(field, "organisation"), &w.organisation)?,
            practitioner: opt(&at(field, "practitioner"), &w.practitioner, Code::parse)?,
        })
    }
}

impl From<&MemberRef> for v1::MemberRef {
    fn from(m: &MemberRef) -> Self {
        v1::MemberRef {
            organisation: m.organisation.wire(),
            practitioner: m.practitioner.wire(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Consent

impl FromWire<v1::ConsentTerms> for ConsentTerms {
    fn from_wire(field: &str, w: &v1::ConsentTerms) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(ConsentTerms {
            decision: req_enum(&f("decision"), w.decision)?,
            purpose: req_enum(&f("purpose"), w.purpose)?,
            partners: code_list(&f("partners"), &w.partners)?,
            data_classes: enum_list(&f("data_classes"), &w.data_classes)?,
            valid_from: req_date(&f("valid_from"), &w.valid_from)?,
            valid_until: opt_date(&f("valid_until"), &w.valid_until)?,
            capacity_assessed: w.capacity_assessed,
        })
    }
}

impl From<&ConsentTerms> for v1::ConsentTerms {
    fn from(t: &ConsentTerms) -> Self {
        v1::ConsentTerms {
            decision: t.decision.to_i32(),
            purpose: t.purpose.to_i32(),
            partners: wire_strings(&t.partners),
            data_classes: enum_i32s(&t.data_classes),
            valid_from: t.valid_from.wire(),
            valid_until: t.valid_until.wire(),
            capacity_assessed: t.capacity_assessed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Meeting

impl FromWire<v1::MeetingAction> for MeetingAction {
    fn from_wire(field: &str, w: &v1::MeetingAction) -> Result<Self, DomainError> {
        Ok(MeetingAction {
            description: LongText::parse(&at(field, "description"), &w.description)?,
            owner: Code::parse(&at(field, "owner"), &w.owner)?,
            due_by: req_date(&at(field, "due_by"), &w.due_by)?,
        })
    }
}

impl From<&MeetingAction> for v1::MeetingAction {
    fn from(a: &MeetingAction) -> Self {
        v1::MeetingAction {
            description: a.description.wire(),
            owner: a.owner.wire(),
            due_by: a.due_by.wire(),
        }
    }
}

impl FromWire<v1::MeetingRecord> for MeetingRecord {
    fn from_wire(field: &str, w: &v1::MeetingRecord) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(MeetingRecord {
            held_at: req_instant(&f("held_at"), w.held_at.as_ref())?,
            attendees: code_list(&f("attendees"), &w.attendees)?,
            decisions: long_list(&f("decisions"), &w.decisions)?,
            actions: msg_list(&f("actions"), &w.actions)?,
        })
    }
}

impl From<&MeetingRecord> for v1::MeetingRecord {
    fn from(m: &MeetingRecord) -> Self {
        v1::MeetingRecord {
            held_at: Some(timestamp(m.held_at)),
            attendees: wire_strings(&m.attendees),
            decisions: wire_strings(&m.decisions),
            actions: wire_list(&m.actions),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Feedback

impl FromWire<v1::FeedbackRecord> for FeedbackRecord {
    fn from_wire(field: &str, w: &v1::FeedbackRecord) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(FeedbackRecord {
            source: req_enum(&f("source"), w.source)?,
            anonymous: w.anonymous,
            text: LongText::parse(&f("text"), &w.text)?,
            rating: rating(&f("rating"), w.rating)?,
        })
    }
}

impl FromWire<v1::RiskFlag> for RiskFlag {
    fn from_wire(field: &str, w: &v1::RiskFlag) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(RiskFlag {
            code: req_enum(&f("code"), w.code)?,
            // 0 is "not given"; the domain decides which flags need one and its range.
            frailty_score: match w.frailty_score {
                0 => None,
                n => Some(u8::try_from(n).unwrap_or(u8::MAX)),
            },
            start: req_date(&f("start"), &w.start)?,
            note: opt(&f("note"), &w.note, LongText::parse)?,
        })
    }
}

impl From<&RiskFlag> for v1::RiskFlag {
    fn from(r: &RiskFlag) -> Self {
        v1::RiskFlag {
            code: r.code.to_i32(),
            frailty_score: r.frailty_score.map_or(0, u32::from),
            start: r.start.wire(),
            note: r.note.wire(),
        }
    }
}

impl FromWire<v1::Task> for TaskContent {
    fn from_wire(field: &str, w: &v1::Task) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        use v1::task_basis::Basis;
        let basis = match w.basis.as_ref().and_then(|b| b.basis.as_ref()) {
            None => TaskBasis::Standalone,
            Some(Basis::PlanActivity(a)) => TaskBasis::PlanActivity {
                plan_version: match a.plan_version {
                    0 => {
                        return Err(DomainError::invalid(
                            f("basis.plan_activity.plan_version"),
                            "is required (plan versions start at 1)",
                        ));
                    }
                    v => v,
                },
                activity: a.activity,
            },
            Some(Basis::MeetingAction(m)) => TaskBasis::MeetingAction {
                meeting_id: super::wire::req_uuid(
                    &f("basis.meeting_action.meeting_id"),
                    &m.meeting_id,
                )?,
                action: match m.action {
                    0 => {
                        return Err(DomainError::invalid(
                            f("basis.meeting_action.action"),
                            "is required (actions are numbered from 1)",
                        ));
                    }
                    n => n,
                },
            },
            Some(Basis::HandoverEpisodeId(id)) => TaskBasis::Handover {
                episode_id: super::wire::req_uuid(&f("basis.handover_episode_id"), id)?,
            },
            Some(Basis::CohortId(id)) => TaskBasis::Cohort {
                cohort_id: super::wire::req_uuid(&f("basis.cohort_id"), id)?,
            },
        };
        Ok(TaskContent {
            description: LongText::parse(&f("description"), &w.description)?,
            owner: req_msg(&f("owner"), w.owner.as_ref())?,
            due: req_date(&f("due"), &w.due)?,
            priority: req_enum(&f("priority"), w.priority)?,
            basis,
        })
    }
}

impl From<&TaskContent> for v1::Task {
    fn from(t: &TaskContent) -> Self {
        use v1::task_basis::Basis;
        let basis = match &t.basis {
            TaskBasis::Standalone => None,
            TaskBasis::PlanActivity {
                plan_version,
                activity,
            } => Some(Basis::PlanActivity(v1::PlanActivityRef {
                plan_version: *plan_version,
                activity: *activity,
            })),
            TaskBasis::MeetingAction { meeting_id, action } => {
                Some(Basis::MeetingAction(v1::MeetingActionRef {
                    meeting_id: meeting_id.to_string(),
                    action: *action,
                }))
            }
            TaskBasis::Handover { episode_id } => {
                Some(Basis::HandoverEpisodeId(episode_id.to_string()))
            }
            TaskBasis::Cohort { cohort_id } => Some(Basis::CohortId(cohort_id.to_string())),
        };
        v1::Task {
            description: t.description.wire(),
            owner: Some((&t.owner).into()),
            due: t.due.wire(),
            priority: t.priority.to_i32(),
            basis: basis.map(|basis| v1::TaskBasis { basis: Some(basis) }),
        }
    }
}

/// 0 means no rating; otherwise 1 to 5.
fn rating(field: &str, raw: u32) -> Result<Option<u8>, DomainError> {
    match raw {
        0 => Ok(None),
        1..=5 => Ok(u8::try_from(raw).ok()),
        _ => Err(DomainError::invalid(field, "must be between 1 and 5")),
    }
}

impl From<&FeedbackRecord> for v1::FeedbackRecord {
    fn from(r: &FeedbackRecord) -> Self {
        v1::FeedbackRecord {
            source: r.source.to_i32(),
            anonymous: r.anonymous,
            text: r.text.wire(),
            rating: r.rating.map_or(0, u32::from),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Organisations

impl FromWire<v1::OrganisationProfile> for OrganisationProfile {
    fn from_wire(field: &str, w: &v1::OrganisationProfile) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(OrganisationProfile {
            name: ShortText::parse(&f("name"), &w.name)?,
            org_type: req_enum(&f("org_type"), w.org_type)?,
        })
    }
}

impl From<&OrganisationProfile> for v1::OrganisationProfile {
    fn from(p: &OrganisationProfile) -> Self {
        v1::OrganisationProfile {
            name: p.name.as_str().to_owned(),
            org_type: p.org_type.to_i32(),
        }
    }
}

impl FromWire<v1::SharingAgreement> for SharingAgreement {
    fn from_wire(field: &str, w: &v1::SharingAgreement) -> Result<Self, DomainError> {
        let f = |name: &str| at(field, name);
        Ok(SharingAgreement {
            reference: Code::parse(&f("reference"), &w.reference)?,
            purposes: enum_list(&f("purposes"), &w.purposes)?,
            data_classes: enum_list(&f("data_classes"), &w.data_classes)?,
            valid_from: req_date(&f("valid_from"), &w.valid_from)?,
            expires_on: req_date(&f("expires_on"), &w.expires_on)?,
        })
    }
}

impl From<&SharingAgreement> for v1::SharingAgreement {
    fn from(a: &SharingAgreement) -> Self {
        v1::SharingAgreement {
            reference: a.reference.as_str().to_owned(),
            purposes: enum_i32s(&a.purposes),
            data_classes: enum_i32s(&a.data_classes),
            valid_from: a.valid_from.wire(),
            expires_on: a.expires_on.wire(),
        }
    }
}

/// A data class as its wire enumeration value (for `CareRecord.withheld_classes`).
pub fn data_class_to_wire(class: DataClass) -> i32 {
    class.to_i32()
}
