//! National code lists Carewoven records against, each with its code, display and system URL,
//! so every mapping (protobuf, the report, FHIR) takes them from one place. The lists and
//! their sources are documented in `docs/codes/`.
//!
//! - [`delay_reason`]: reasons a person ready for discharge is still in hospital, as in NHS
//!   England's acute discharge situation report (the list as revised in October 2023).
//! - [`discharge_destination`]: where a person went on leaving hospital, UK Core
//!   DischargeDestinationEngland (NHS Data Dictionary, DISCHARGE DESTINATION CODE (HOSPITAL
//!   PROVIDER SPELL)).

pub mod delay_reason;
pub mod discharge_destination;

/// One entry of a code list: what a FHIR `Coding` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concept {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}
