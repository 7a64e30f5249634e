//! Reasons a person who no longer meets the criteria to reside is still in hospital: the
//! national list of NHS England's acute discharge situation report (the daily discharge sitrep)
//! as revised in October 2023. Source and the mapping from Carewoven's earlier list:
//! `docs/codes/discharge-delay-reasons.md`.
//!
//! The sitrep publishes its reasons as headings, without codes and without a FHIR CodeSystem,
//! so Carewoven gives each a stable code under its own system URL ([`SYSTEM`]); the display is
//! the sitrep's heading.

use super::Concept;

/// Carewoven's system URL for the sitrep delay reasons (no national CodeSystem exists).
pub const SYSTEM: &str = "urn:carewoven:codesystem:acute-discharge-sitrep-delay-reason:2023-10";

/// A delay reason. Every variant but [`DelayReason::Other`] is on the national list;
/// `Other` exists only for events recorded before Carewoven followed the national list (its
/// old "other" has no national equivalent) and is refused for new records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DelayReason {
    AwaitingMedicalDecision,
    AwaitingTherapyDecision,
    AwaitingReferralToTransferHub,
    AwaitingMedicinesToTakeHome,
    AwaitingTransport,
    AwaitingTransferHubConfirmation,
    /// Pathway 1, new care at home (not a continuation of rehabilitation).
    Pathway1NewCare,
    /// Pathway 1, continuing rehabilitation, reablement and recovery at home.
    Pathway1ContinuingRehabilitation,
    Pathway2Bed,
    Pathway3CareHome,
    Pathway3EndOfLife,
    AwaitingEquipmentOrAdaptations,
    IndividualOrFamilyNotInAgreement,
    HomelessOrNoRecourseToPublicFunds,
    SafeguardingOrCourtOfProtection,
    Repatriation,
    AwaitingDiagnosticTest,
    InfectionControl,
    AwaitingContinuingHealthcareDecision,
    NoPlan,
    /// Recorded before the national list; no national equivalent. Not accepted for new records.
    Other,
}

const fn c(code: &'static str, display: &'static str) -> Concept {
    Concept {
        system: SYSTEM,
        code,
        display,
    }
}

impl DelayReason {
    /// The national list, in the sitrep's order (without the legacy [`DelayReason::Other`]).
    pub const NATIONAL: [DelayReason; 20] = [
        DelayReason::AwaitingMedicalDecision,
        DelayReason::AwaitingTherapyDecision,
        DelayReason::AwaitingReferralToTransferHub,
        DelayReason::AwaitingMedicinesToTakeHome,
        DelayReason::AwaitingTransport,
        DelayReason::AwaitingTransferHubConfirmation,
        DelayReason::Pathway1NewCare,
        DelayReason::Pathway1ContinuingRehabilitation,
        DelayReason::Pathway2Bed,
        DelayReason::Pathway3CareHome,
        DelayReason::Pathway3EndOfLife,
        DelayReason::AwaitingEquipmentOrAdaptations,
        DelayReason::IndividualOrFamilyNotInAgreement,
        DelayReason::HomelessOrNoRecourseToPublicFunds,
        DelayReason::SafeguardingOrCourtOfProtection,
        DelayReason::Repatriation,
        DelayReason::AwaitingDiagnosticTest,
        DelayReason::InfectionControl,
        DelayReason::AwaitingContinuingHealthcareDecision,
        DelayReason::NoPlan,
    ];

    /// On the national list (everything but the legacy `Other`).
    pub fn is_national(self) -> bool {
        self != DelayReason::Other
    }

    /// Code, display and system.
    pub fn concept(self) -> Concept {
        use DelayReason as R;
        match self {
            R::AwaitingMedicalDecision => c(
                "awaiting_medical_decision",
                "Awaiting a medical decision/intervention including writing the discharge summary",
            ),
            R::AwaitingTherapyDecision => c(
                "awaiting_therapy_decision",
                "Awaiting a therapy decision/intervention to proceed with discharge, including \
writing onward referrals, equipment ordering",
            ),
            R::AwaitingReferralToTransferHub => c(
                "awaiting_referral_to_transfer_hub",
                "Awaiting referral to care transfer hub (community single point of access) or \
receiving service",
            ),
            R::AwaitingMedicinesToTakeHome => c(
                "awaiting_medicines_to_take_home",
                "Awaiting medicines to take home",
            ),
            R::AwaitingTransport => c("awaiting_transport", "Awaiting transport"),
            R::AwaitingTransferHubConfirmation => c(
                "awaiting_transfer_hub_confirmation",
                "Awaiting confirmation from care transfer hub or receiving service that referral \
received and actioned",
            ),
            R::Pathway1NewCare => c(
                "pathway_1_new_care",
                "Pathway 1: awaiting availability of resource for assessment and start of care at \
home (not a continuation of rehabilitation, reablement and recovery)",
            ),
            R::Pathway1ContinuingRehabilitation => c(
                "pathway_1_continuing_rehabilitation",
                "Pathway 1: awaiting availability of resource for continuation of rehabilitation, \
reablement and recovery at home",
            ),
            R::Pathway2Bed => c(
                "pathway_2_bed",
                "Pathway 2: awaiting availability of a rehabilitation, reablement and recovery bed \
in a community bedded setting",
            ),
            R::Pathway3CareHome => c(
                "pathway_3_care_home",
                "Pathway 3: awaiting availability of a bed in a residential or nursing home that is \
likely to be a permanent placement",
            ),
            R::Pathway3EndOfLife => c(
                "pathway_3_end_of_life",
                "Pathway 3: awaiting availability of a bed in a residential or nursing home for \
end-of-life care",
            ),
            R::AwaitingEquipmentOrAdaptations => c(
                "awaiting_equipment_or_adaptations",
                "Awaiting equipment and adaptations to housing",
            ),
            R::IndividualOrFamilyNotInAgreement => c(
                "individual_or_family_not_in_agreement",
                "Individual/family not in agreement with discharge plans",
            ),
            R::HomelessOrNoRecourseToPublicFunds => c(
                "homeless_or_no_recourse_to_public_funds",
                "Homeless/no right of recourse to public funds/no place to discharge to/lack of \
housing offers when previous residence no longer suitable",
            ),
            R::SafeguardingOrCourtOfProtection => c(
                "safeguarding_or_court_of_protection",
                "Safeguarding concern preventing discharge or Court of Protection",
            ),
            R::Repatriation => c(
                "repatriation",
                "Repatriation/transfer to another acute trust for specialist treatment or ongoing \
treatment",
            ),
            R::AwaitingDiagnosticTest => c("awaiting_diagnostic_test", "Awaiting diagnostic test"),
            R::InfectionControl => c(
                "infection_control",
                "Remains in non-specialist acute bed to avoid spread of infectious disease and \
because there is no other suitable location to discharge to",
            ),
            R::AwaitingContinuingHealthcareDecision => c(
                "awaiting_continuing_healthcare_decision",
                "Awaiting outcome of decision for NHS Continuing Healthcare funding",
            ),
            R::NoPlan => c("no_plan", "No plan"),
            R::Other => c(
                "other",
                "Other (recorded before Carewoven followed the national list; no national \
equivalent)",
            ),
        }
    }

    /// The stable code (snake_case), as the report and exports show it.
    pub fn code(self) -> &'static str {
        self.concept().code
    }

    pub fn display(self) -> &'static str {
        self.concept().display
    }

    /// Find a reason by its code.
    pub fn from_code(code: &str) -> Option<DelayReason> {
        Self::NATIONAL
            .into_iter()
            .chain([DelayReason::Other])
            .find(|r| r.code() == code)
    }
}

/// Carewoven's delay reasons before the national list (wire values 1 to 11), and the national
/// reason each is read as. `Other` has no national equivalent and stays `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyDelayReason {
    AwaitingAssessment,
    AwaitingHomeCare,
    AwaitingReablement,
    AwaitingBedBasedRehabilitation,
    AwaitingCareHomePlacement,
    AwaitingEquipment,
    AwaitingHousing,
    AwaitingTransport,
    AwaitingMedication,
    PersonOrFamilyChoice,
    Other,
}

impl LegacyDelayReason {
    /// The documented mapping (`docs/codes/discharge-delay-reasons.md`).
    pub fn national(self) -> DelayReason {
        use DelayReason as N;
        use LegacyDelayReason as L;
        match self {
            // An assessment in hospital before discharge can proceed: the therapy decision.
            L::AwaitingAssessment => N::AwaitingTherapyDecision,
            // A new package of care at home.
            L::AwaitingHomeCare => N::Pathway1NewCare,
            // Reablement at home continues recovery.
            L::AwaitingReablement => N::Pathway1ContinuingRehabilitation,
            L::AwaitingBedBasedRehabilitation => N::Pathway2Bed,
            L::AwaitingCareHomePlacement => N::Pathway3CareHome,
            L::AwaitingEquipment => N::AwaitingEquipmentOrAdaptations,
            L::AwaitingHousing => N::HomelessOrNoRecourseToPublicFunds,
            L::AwaitingTransport => N::AwaitingTransport,
            L::AwaitingMedication => N::AwaitingMedicinesToTakeHome,
            L::PersonOrFamilyChoice => N::IndividualOrFamilyNotInAgreement,
            L::Other => N::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut codes: Vec<&str> = DelayReason::NATIONAL.iter().map(|r| r.code()).collect();
        codes.push(DelayReason::Other.code());
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for r in DelayReason::NATIONAL {
            assert!(r.is_national());
            assert_eq!(DelayReason::from_code(r.code()), Some(r));
            assert_eq!(r.concept().system, SYSTEM);
        }
        assert!(!DelayReason::Other.is_national());
    }

    #[test]
    fn legacy_reasons_map_to_national_ones_except_other() {
        use LegacyDelayReason as L;
        let all = [
            L::AwaitingAssessment,
            L::AwaitingHomeCare,
            L::AwaitingReablement,
            L::AwaitingBedBasedRehabilitation,
            L::AwaitingCareHomePlacement,
            L::AwaitingEquipment,
            L::AwaitingHousing,
            L::AwaitingTransport,
            L::AwaitingMedication,
            L::PersonOrFamilyChoice,
        ];
        for l in all {
            assert!(l.national().is_national(), "{l:?}");
        }
        assert_eq!(L::Other.national(), DelayReason::Other);
        assert_eq!(L::AwaitingHomeCare.national(), DelayReason::Pathway1NewCare);
    }
}
