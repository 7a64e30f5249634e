//! UK Core DischargeDestinationEngland: the destination of a patient on completion of a
//! hospital provider spell (NHS Data Dictionary, DISCHARGE DESTINATION CODE (HOSPITAL PROVIDER
//! SPELL)), CodeSystem version 1.0.0 as published by HL7 UK in the UK Core (FHIR R4). Source
//! and licence: `docs/codes/discharge-destination-england.md`.

use super::Concept;
use crate::DomainError;

/// The CodeSystem's canonical URL (a FHIR `Coding.system`).
pub const SYSTEM: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland";
/// The UK Core value set `Encounter.hospitalization.dischargeDisposition` is bound to.
pub const VALUE_SET: &str = "https://fhir.hl7.org.uk/ValueSet/UKCore-DischargeDestination";

const fn c(code: &'static str, display: &'static str) -> Concept {
    Concept {
        system: SYSTEM,
        code,
        display,
    }
}

/// Every code of the CodeSystem, in code order.
pub const CONCEPTS: [Concept; 21] = [
    c(
        "19",
        "Usual place of residence unless listed below, for example, a private dwelling whether \
owner occupied or owned by Local Authority, housing association or other landlord. This \
includes wardened accommodation but not residential accommodation where health care is \
provided. It also includes patients with no fixed abode.",
    ),
    c(
        "29",
        "Temporary place of residence when usually resident elsewhere (includes hotel, \
residential Educational Establishment)",
    ),
    c(
        "30",
        "Repatriation from high security psychiatric accommodation in an NHS Hospital Provider \
(NHS Trust or NHS Foundation Trust)",
    ),
    c("37", "Court"),
    c("38", "Penal establishment or police station"),
    c("48", "High Security Psychiatric Hospital, Scotland"),
    c(
        "49",
        "NHS other Hospital Provider - high security psychiatric accommodation",
    ),
    c("50", "NHS other Hospital Provider - medium secure unit"),
    c(
        "51",
        "NHS other Hospital Provider - Ward for general patients or the younger physically \
disabled",
    ),
    c(
        "52",
        "NHS other Hospital Provider - Ward for maternity patients or Neonates",
    ),
    c(
        "53",
        "NHS other Hospital Provider - Ward for patients who are mentally ill or have Learning \
Disabilities",
    ),
    c("54", "NHS run Care Home"),
    c(
        "65",
        "Local Authority residential accommodation i.e. where care is provided",
    ),
    c("66", "Local Authority foster care"),
    c("79", "Not applicable - Patient died or stillbirth"),
    c("84", "Non-NHS run hospital - medium secure unit"),
    c("85", "Non-NHS (other than Local Authority) run Care Home"),
    c("87", "Non-NHS run hospital"),
    c("88", "Non-NHS (other than Local Authority) run Hospice"),
    c(
        "98",
        "Not applicable - Hospital Provider Spell not finished at episode end (i.e. not \
discharged) or current episode unfinished",
    ),
    c("99", "Not known"),
];

/// A discharge destination code from [`CONCEPTS`]. Only [`DischargeDestination::parse`] makes
/// one, so holding one means the code is on the list.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DischargeDestination(&'static str);

impl std::fmt::Debug for DischargeDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DischargeDestination({})", self.0)
    }
}

impl DischargeDestination {
    /// Usual place of residence (19).
    pub const USUAL_RESIDENCE: DischargeDestination = DischargeDestination("19");
    /// Temporary place of residence (29).
    pub const TEMPORARY_RESIDENCE: DischargeDestination = DischargeDestination("29");
    /// NHS run care home (54).
    pub const NHS_CARE_HOME: DischargeDestination = DischargeDestination("54");
    /// Local Authority residential accommodation where care is provided (65).
    pub const LOCAL_AUTHORITY_RESIDENTIAL: DischargeDestination = DischargeDestination("65");
    /// Non-NHS (other than Local Authority) run care home (85).
    pub const INDEPENDENT_CARE_HOME: DischargeDestination = DischargeDestination("85");
    /// Non-NHS (other than Local Authority) run hospice (88).
    pub const INDEPENDENT_HOSPICE: DischargeDestination = DischargeDestination("88");
    /// NHS other hospital provider, general ward (51).
    pub const OTHER_NHS_HOSPITAL: DischargeDestination = DischargeDestination("51");

    /// Parse a code (exactly as listed: `"19"`, not `"019"`), naming `field` on refusal.
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        CONCEPTS
            .iter()
            .find(|c| c.code == raw)
            .map(|c| DischargeDestination(c.code))
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    "is not a UK Core DischargeDestinationEngland code (for example 19, usual \
place of residence)",
                )
            })
    }

    pub fn code(self) -> &'static str {
        self.0
    }

    pub fn concept(self) -> Concept {
        *CONCEPTS
            .iter()
            .find(|c| c.code == self.0)
            .expect("a DischargeDestination is always on the list")
    }

    pub fn display(self) -> &'static str {
        self.concept().display
    }

    /// A care home or other residential setting where care is provided (54, 65, 85).
    pub fn is_care_home(self) -> bool {
        matches!(self.0, "54" | "65" | "85")
    }

    /// The person's own or a temporary home (19, 29): "at home" for the reablement outcome.
    pub fn is_home(self) -> bool {
        matches!(self.0, "19" | "29")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_code_parses_and_nothing_else() {
        for c in CONCEPTS {
            let d = DischargeDestination::parse("destination_code", c.code).expect("listed");
            assert_eq!(d.code(), c.code);
            assert_eq!(d.display(), c.display);
            assert_eq!(d.concept().system, SYSTEM);
        }
        for bad in ["", "019", "20", "home", "19 ", "1"] {
            let err = DischargeDestination::parse("destination_code", bad).expect_err("not listed");
            assert!(
                matches!(&err, DomainError::Invalid { field, .. } if field == "destination_code"),
                "{bad:?}: {err:?}"
            );
        }
        let codes: Vec<&str> = CONCEPTS.iter().map(|c| c.code).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted, "unique and in code order");
        for named in [
            DischargeDestination::USUAL_RESIDENCE,
            DischargeDestination::TEMPORARY_RESIDENCE,
            DischargeDestination::NHS_CARE_HOME,
            DischargeDestination::LOCAL_AUTHORITY_RESIDENTIAL,
            DischargeDestination::INDEPENDENT_CARE_HOME,
            DischargeDestination::INDEPENDENT_HOSPICE,
            DischargeDestination::OTHER_NHS_HOSPITAL,
        ] {
            assert!(codes.contains(&named.code()));
        }
    }
}
