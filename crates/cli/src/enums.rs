//! Command-line value enums and their protobuf counterparts. Every enum maps one-to-one onto
//! the proto enum's specified values (UNSPECIFIED is never sent).

use carewoven_proto::v1;
use clap::ValueEnum;

/// Declare a clap value enum and its mapping to a proto enum (sent as `i32`).
macro_rules! value_enum {
    ($(#[$doc:meta])* $name:ident => $wire:ty { $($(#[$vdoc:meta])* $variant:ident = $w:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub fn wire(self) -> $wire {
                match self {
                    $($name::$variant => <$wire>::$w,)+
                }
            }

            pub fn to_i32(self) -> i32 {
                self.wire() as i32
            }
        }
    };
}

value_enum!(Priority => v1::Priority {
    Routine = Routine,
    Urgent = Urgent,
    Asap = Asap,
    Stat = Stat,
});

value_enum!(ReferralAction => v1::ReferralAction {
    Receive = Receive,
    Accept = Accept,
    /// Needs --reason.
    Reject = Reject,
    Start = Start,
    /// Needs --reason.
    Hold = Hold,
    Resume = Resume,
    Complete = Complete,
    /// Needs --reason.
    Fail = Fail,
    /// Needs --reason.
    Cancel = Cancel,
    /// Needs --reason.
    EnteredInError = MarkEnteredInError,
});

value_enum!(AssessmentKind => v1::AssessmentKind {
    /// Care Act 2014 s.9 needs assessment.
    CareActNeeds = CareActNeeds,
    /// Care Act 2014 s.10 carer's assessment.
    Carers = Carers,
    Health = Health,
    Therapy = Therapy,
});

value_enum!(Outcome => v1::CareActOutcome {
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

value_enum!(Role => v1::CareTeamRole {
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

value_enum!(RiskFlag => v1::RiskFlagCode {
    /// With --frailty-score (Clinical Frailty Scale, 1 to 9).
    Frailty = Frailty,
    FallsRisk = FallsRisk,
    ClinicallyExtremelyVulnerable = ClinicallyExtremelyVulnerable,
    LivesAlone = LivesAlone,
    SafeguardingConcern = SafeguardingConcern,
    EndOfLife = EndOfLife,
});

value_enum!(Decision => v1::ConsentDecision {
    Permit = Permit,
    /// An objection.
    Deny = Deny,
});

value_enum!(Purpose => v1::Purpose {
    DirectCare = DirectCare,
    CareCoordination = CareCoordination,
    Research = Research,
    Planning = Planning,
});

value_enum!(
    /// A task's status (FHIR Task.status).
    TaskStatus => v1::TaskStatus {
    Requested = Requested,
    Accepted = Accepted,
    InProgress = InProgress,
    OnHold = OnHold,
    Completed = Completed,
    Cancelled = Cancelled,
    Failed = Failed,
});

value_enum!(
    /// Which of an organisation's worklists.
    Worklist => v1::WorklistKind {
    Tasks = Tasks,
    ReviewsDue = ReviewsDue,
    NoCoordinator = NoCoordinator,
    AwaitingContribution = AwaitingContribution,
});

value_enum!(DataClass => v1::DataClass {
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

value_enum!(
    /// Discharge-to-assess pathway (DHSC hospital discharge guidance).
    Pathway => v1::Pathway {
    /// Home, no new or extra support.
    #[value(name = "0")]
    P0 = Pathway0,
    /// Home with new or extra health and/or social care.
    #[value(name = "1")]
    P1 = Pathway1,
    /// Short-term bed-based rehabilitation or reablement.
    #[value(name = "2")]
    P2 = Pathway2,
    /// Care-home placement, usually to assess long-term needs.
    #[value(name = "3")]
    P3 = Pathway3,
});

// The national list (acute discharge sitrep, October 2023; docs/codes/). Carewoven's earlier
// values are not offered: stored events keep decoding, but new records use national reasons.
value_enum!(DelayReason => v1::DelayReason {
    /// Awaiting a medical decision/intervention, including writing the discharge summary.
    AwaitingMedicalDecision = AwaitingMedicalDecision,
    /// Awaiting a therapy decision/intervention to proceed with discharge.
    AwaitingTherapyDecision = AwaitingTherapyDecision,
    /// Awaiting referral to the care transfer hub (community single point of access).
    AwaitingReferralToTransferHub = AwaitingReferralToTransferHub,
    AwaitingMedicinesToTakeHome = AwaitingMedicinesToTakeHome,
    AwaitingTransport = AwaitingPatientTransport,
    /// Awaiting the hub's or receiving service's confirmation that the referral is actioned.
    AwaitingTransferHubConfirmation = AwaitingTransferHubConfirmation,
    /// Pathway 1: resource to start new care at home (not continuing rehabilitation).
    #[value(name = "pathway-1-new-care")]
    Pathway1NewCare = Pathway1NewCare,
    /// Pathway 1: resource to continue rehabilitation, reablement and recovery at home.
    #[value(name = "pathway-1-continuing-rehabilitation")]
    Pathway1ContinuingRehabilitation = Pathway1ContinuingRehabilitation,
    /// Pathway 2: a rehabilitation, reablement and recovery bed.
    #[value(name = "pathway-2-bed")]
    Pathway2Bed = Pathway2Bed,
    /// Pathway 3: a residential or nursing home bed, likely permanent.
    #[value(name = "pathway-3-care-home")]
    Pathway3CareHome = Pathway3CareHome,
    /// Pathway 3: a residential or nursing home bed for end-of-life care.
    #[value(name = "pathway-3-end-of-life")]
    Pathway3EndOfLife = Pathway3EndOfLife,
    AwaitingEquipmentOrAdaptations = AwaitingEquipmentOrAdaptations,
    IndividualOrFamilyNotInAgreement = IndividualOrFamilyNotInAgreement,
    HomelessOrNoRecourseToPublicFunds = HomelessOrNoRecourseToPublicFunds,
    SafeguardingOrCourtOfProtection = SafeguardingOrCourtOfProtection,
    /// Repatriation or transfer to another acute trust.
    Repatriation = Repatriation,
    AwaitingDiagnosticTest = AwaitingDiagnosticTest,
    /// Remains in a non-specialist acute bed to avoid spreading infection.
    InfectionControl = InfectionControl,
    /// Awaiting the outcome of an NHS Continuing Healthcare funding decision.
    AwaitingContinuingHealthcareDecision = AwaitingContinuingHealthcareDecision,
    NoPlan = NoPlan,
});

value_enum!(FeedbackSource => v1::FeedbackSource {
    Person = Person,
    Carer = Carer,
});

value_enum!(ProxyScope => v1::ProxyScope {
    /// Read the person's whole care record and plan.
    ReadRecord = ReadRecord,
    /// See who accessed the person's record.
    AccessList = AccessList,
    /// Give feedback as the person's carer.
    Feedback = Feedback,
    /// Record and withdraw the person's objections and consents.
    Consents = Consents,
    /// Record what matters to the person and their communication needs.
    WhatMatters = WhatMatters,
});

/// How well a citizen's identity was proven (NHS login's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentityLevel {
    /// High: may read their record and change what is theirs.
    #[value(name = "P9")]
    P9,
    /// Medium: may give feedback.
    #[value(name = "P5")]
    P5,
    /// Low: nothing.
    #[value(name = "P0")]
    P0,
}

impl IdentityLevel {
    pub fn level(self) -> carewoven_governance::IdentityLevel {
        match self {
            IdentityLevel::P9 => carewoven_governance::IdentityLevel::P9,
            IdentityLevel::P5 => carewoven_governance::IdentityLevel::P5,
            IdentityLevel::P0 => carewoven_governance::IdentityLevel::P0,
        }
    }
}

value_enum!(OrgType => v1::OrganisationType {
    NhsTrust = NhsTrust,
    GeneralPractice = GeneralPractice,
    LocalAuthority = LocalAuthority,
    CommunityProvider = CommunityProvider,
    CareProvider = CareProvider,
    Voluntary = Voluntary,
    Other = Other,
});

/// A role a token grants besides acting for its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessRole {
    /// Maintains the registry (organisations, services, agreements).
    Governance,
    /// Replays history for service reviews.
    Analyst,
}

impl AccessRole {
    pub fn role(self) -> carewoven_governance::Role {
        match self {
            AccessRole::Governance => carewoven_governance::Role::Governance,
            AccessRole::Analyst => carewoven_governance::Role::Analyst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<E: ValueEnum>(s: &str) -> E {
        E::from_str(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_map_to_proto_values() {
        assert_eq!(parse::<Priority>("urgent").wire(), v1::Priority::Urgent);
        assert_eq!(parse::<Pathway>("1").wire(), v1::Pathway::Pathway1);
        assert_eq!(parse::<Pathway>("0").to_i32(), 1);
        assert_eq!(
            parse::<Role>("social-worker").wire(),
            v1::CareTeamRole::SocialWorker
        );
        assert_eq!(
            parse::<Outcome>("managing-nutrition").wire(),
            v1::CareActOutcome::ManagingNutrition
        );
        assert_eq!(
            parse::<Outcome>("maintaining-a-habitable-home").wire(),
            v1::CareActOutcome::MaintainingAHabitableHome
        );
        assert_eq!(
            parse::<ReferralAction>("entered-in-error").wire(),
            v1::ReferralAction::MarkEnteredInError
        );
        assert_eq!(
            parse::<AssessmentKind>("care-act-needs").wire(),
            v1::AssessmentKind::CareActNeeds
        );
        assert_eq!(
            parse::<DelayReason>("pathway-1-new-care").wire(),
            v1::DelayReason::Pathway1NewCare
        );
        assert_eq!(
            parse::<Purpose>("direct-care").wire(),
            v1::Purpose::DirectCare
        );
        assert_eq!(
            parse::<DataClass>("care-plan").wire(),
            v1::DataClass::CarePlan
        );
        assert_eq!(parse::<Decision>("deny").wire(), v1::ConsentDecision::Deny);
        assert_eq!(
            parse::<FeedbackSource>("carer").wire(),
            v1::FeedbackSource::Carer
        );
        assert!(Pathway::from_str("4", false).is_err());
    }

    #[test]
    fn no_value_maps_to_unspecified() {
        assert!(Outcome::value_variants().iter().all(|o| o.to_i32() != 0));
        assert!(Role::value_variants().iter().all(|o| o.to_i32() != 0));
        assert!(
            DelayReason::value_variants()
                .iter()
                .all(|o| o.to_i32() != 0)
        );
        assert!(DataClass::value_variants().iter().all(|o| o.to_i32() != 0));
        assert!(
            ReferralAction::value_variants()
                .iter()
                .all(|o| o.to_i32() != 0)
        );
        assert!(OrgType::value_variants().iter().all(|o| o.to_i32() != 0));
        assert_eq!(Outcome::value_variants().len(), 10);
        assert_eq!(DelayReason::value_variants().len(), 20);
    }
}
