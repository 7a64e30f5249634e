//! Code systems, identifier systems and the few code mappings the resources use: one place,
//! so a reader finds every system URL the API emits here (and in `docs/fhir-mapping.md`).

use carewoven_proto::v1;
use serde_json::{Value, json};

/// NHS number (UK Core `Patient.identifier:nhsNumber`).
pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// UK Core DischargeDestinationEngland (the NHS Data Model and Dictionary's discharge
/// destination codes), bound to `Encounter.hospitalization.dischargeDisposition`.
pub const DISCHARGE_DESTINATION_ENGLAND: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland";
/// The UK Core profiles the resources claim (`meta.profile`).
pub const UK_CORE: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-";

/// Carewoven's own namespace for identifiers, code systems and extensions that have no
/// national equivalent (yet).
pub const BASE: &str = "https://carewoven.org/fhir";

/// Identifier system of organisation codes (an ODS code where the deployment uses them).
pub fn organisation_system() -> String {
    format!("{BASE}/Id/organisation")
}
/// Identifier system of service codes (a single point of access, a team).
pub fn service_system() -> String {
    format!("{BASE}/Id/service")
}
/// Identifier system of sites (where a hospital stay is).
pub fn site_system() -> String {
    format!("{BASE}/Id/site")
}
/// Identifier system of practitioners: `<organisation>/<practitioner code>`.
pub fn practitioner_system() -> String {
    format!("{BASE}/Id/practitioner")
}
/// A Carewoven code system by name (`d2a-pathway`, `d2a-status`, ...).
pub fn system(name: &str) -> String {
    format!("{BASE}/CodeSystem/{name}")
}
/// A Carewoven extension by name.
pub fn extension(name: &str) -> String {
    format!("{BASE}/StructureDefinition/{name}")
}

pub fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

/// The discharge destination as a UK Core DischargeDestinationEngland coding, and the text
/// as recorded: the code recorded with the discharge when there is one (the domain's list,
/// `carewoven_domain::codes::discharge_destination`), else read from the text of a discharge
/// recorded before destinations were coded.
pub fn discharge_destination_coded(text: &str, code: &str) -> Value {
    use carewoven_domain::codes::discharge_destination::{DischargeDestination, SYSTEM};
    match DischargeDestination::parse("discharge_destination_code", code) {
        Ok(coded) => json!({
            "coding": [coding(SYSTEM, coded.code(), coded.display())],
            "text": text,
        }),
        Err(_) => discharge_destination(text),
    }
}

/// A destination recorded as free text only (before destinations were coded) as a UK Core
/// DischargeDestinationEngland coding, and the text as recorded.
///
/// Recognised: the usual place of residence ("home"), a temporary residence, a care home, a
/// hospice, another hospital or a rehabilitation bed, and death; anything else is "99 Not
/// known", with the text kept.
pub fn discharge_destination(text: &str) -> Value {
    let t = text.to_lowercase();
    let has = |w: &str| t.contains(w);
    let (code, display) = if has("care home") || has("nursing home") || has("residential") {
        ("85", "Non-NHS (other than Local Authority) run Care Home")
    } else if has("hospice") {
        ("88", "Non-NHS (other than Local Authority) run Hospice")
    } else if has("died") || has("death") {
        ("79", "Not applicable - PATIENT died or still birth")
    } else if has("temporary") || has("hotel") {
        (
            "29",
            "Temporary place of residence when usually resident elsewhere",
        )
    } else if has("usual place of residence") || has("home") {
        ("19", "Usual place of residence")
    } else if has("rehabilitation bed") || has("community hospital") || has("hospital") {
        (
            "51",
            "NHS other Hospital Provider - ward for general PATIENTS or the younger physically disabled",
        )
    } else {
        ("99", "Not known")
    };
    json!({
        "coding": [coding(DISCHARGE_DESTINATION_ENGLAND, code, display)],
        "text": text,
    })
}

/// The D2A pathway as a Carewoven coding (DHSC hospital discharge guidance).
pub fn pathway(raw: i32) -> Option<Value> {
    let (code, display) = match v1::Pathway::try_from(raw).ok()? {
        v1::Pathway::Unspecified => return None,
        v1::Pathway::Pathway0 => ("0", "Pathway 0: home, no new or extra support"),
        v1::Pathway::Pathway1 => ("1", "Pathway 1: home with new or extra support"),
        v1::Pathway::Pathway2 => ("2", "Pathway 2: short-term bed-based care"),
        v1::Pathway::Pathway3 => ("3", "Pathway 3: care home placement"),
    };
    Some(coding(&system("d2a-pathway"), code, display))
}

/// A delay reason as the national sitrep concept (`carewoven_domain::codes::delay_reason`:
/// Carewoven's system URL, the sitrep's heading as display). The views hold the national
/// wire values (legacy ones are mapped when projected).
pub fn delay_reason(raw: i32) -> Value {
    use carewoven_domain::codes::delay_reason::{DelayReason, SYSTEM};
    let wire = v1::DelayReason::try_from(raw).unwrap_or(v1::DelayReason::Unspecified);
    let found = DelayReason::NATIONAL
        .into_iter()
        .chain([DelayReason::Other])
        .find(|r| carewoven_proto::convert::delay_reason_wire(*r) == wire);
    match found {
        Some(r) => coding(SYSTEM, r.code(), r.display()),
        None => json!({ "system": SYSTEM, "code": "unspecified" }),
    }
}

/// HL7's practitioner-role CodeSystem (FHIR R4 PractitionerRole.code's example value set).
pub const PRACTITIONER_ROLE: &str = "http://terminology.hl7.org/CodeSystem/practitioner-role";

/// A care-team member's role as the codings of `CareTeam.participant.role`: Carewoven's
/// own code, and HL7's practitioner-role code where one exists for the role.
pub fn care_team_role(raw: i32) -> Vec<Value> {
    let Some(role) = carewoven_proto::convert::care_team_role_from_wire(raw) else {
        return vec![json!({ "system": system("care-team-role"), "code": "unspecified" })];
    };
    let mut codings = vec![coding(
        &system("care-team-role"),
        role.code(),
        role.display(),
    )];
    if let Some(code) = role.practitioner_role() {
        codings.push(json!({ "system": PRACTITIONER_ROLE, "code": code }));
    }
    codings
}

pub fn assessment_kind(raw: i32) -> Value {
    use v1::AssessmentKind as K;
    let (code, display) = match K::try_from(raw).unwrap_or(K::Unspecified) {
        K::Unspecified => ("unspecified", "Assessment"),
        K::CareActNeeds => ("care-act-needs", "Care Act 2014 s.9 needs assessment"),
        K::Carers => ("carers", "Care Act 2014 s.10 carer's assessment"),
        K::Health => ("health", "Health assessment"),
        K::Therapy => ("therapy", "Therapy assessment"),
    };
    coding(&system("assessment-kind"), code, display)
}

/// The Care Act 2014 eligibility outcomes (Care and Support (Eligibility Criteria)
/// Regulations 2015, reg. 2(2)).
pub fn care_act_outcome(raw: i32) -> Value {
    use v1::CareActOutcome as O;
    let (code, display) = match O::try_from(raw).unwrap_or(O::Unspecified) {
        O::Unspecified => ("unspecified", "Unspecified outcome"),
        O::ManagingNutrition => ("managing-nutrition", "Managing and maintaining nutrition"),
        O::PersonalHygiene => ("personal-hygiene", "Maintaining personal hygiene"),
        O::ManagingToiletNeeds => ("managing-toilet-needs", "Managing toilet needs"),
        O::BeingAppropriatelyClothed => {
            ("being-appropriately-clothed", "Being appropriately clothed")
        }
        O::UsingTheHomeSafely => (
            "using-the-home-safely",
            "Being able to make use of the home safely",
        ),
        O::MaintainingAHabitableHome => (
            "maintaining-a-habitable-home",
            "Maintaining a habitable home environment",
        ),
        O::FamilyAndPersonalRelationships => (
            "family-and-personal-relationships",
            "Developing and maintaining family or other personal relationships",
        ),
        O::WorkTrainingEducationVolunteering => (
            "work-training-education-volunteering",
            "Accessing and engaging in work, training, education or volunteering",
        ),
        O::UsingCommunityServices => (
            "using-community-services",
            "Making use of necessary facilities or services in the local community",
        ),
        O::CaringResponsibilities => (
            "caring-responsibilities",
            "Carrying out any caring responsibilities for a child",
        ),
    };
    coding(&system("care-act-outcome"), code, display)
}

pub fn purpose(raw: i32) -> Value {
    use v1::Purpose as P;
    let code = match P::try_from(raw).unwrap_or(P::Unspecified) {
        P::Unspecified => "unspecified",
        P::DirectCare => "direct-care",
        P::CareCoordination => "care-coordination",
        P::Research => "research",
        P::Planning => "planning",
    };
    json!({ "system": system("purpose"), "code": code })
}

pub fn data_class(raw: i32) -> Value {
    use v1::DataClass as C;
    let code = match C::try_from(raw).unwrap_or(C::Unspecified) {
        C::Unspecified => "unspecified",
        C::Demographics => "demographics",
        C::Contact => "contact",
        C::Referrals => "referrals",
        C::Assessments => "assessments",
        C::CarePlan => "care-plan",
        C::CareTeam => "care-team",
        C::Discharge => "discharge",
        C::Meetings => "meetings",
        C::Feedback => "feedback",
        C::RiskFlags => "risk-flags",
        C::Tasks => "tasks",
    };
    json!({ "system": system("data-class"), "code": code })
}

/// FHIR request-priority.
pub fn priority(raw: i32) -> Option<&'static str> {
    match v1::Priority::try_from(raw).ok()? {
        v1::Priority::Unspecified => None,
        v1::Priority::Routine => Some("routine"),
        v1::Priority::Urgent => Some("urgent"),
        v1::Priority::Asap => Some("asap"),
        v1::Priority::Stat => Some("stat"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> String {
        discharge_destination(text)["coding"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn destinations_seen_in_practice_are_coded() {
        assert_eq!(code("Home"), "19");
        assert_eq!(code("Usual place of residence"), "19");
        assert_eq!(code("Care home (discharge to assess)"), "85");
        assert_eq!(code("Nursing home"), "85");
        assert_eq!(code("Community rehabilitation bed"), "51");
        assert_eq!(code("Hospice"), "88");
        assert_eq!(code("Staying at a hotel"), "29");
        assert_eq!(code("somewhere else"), "99");
        assert_eq!(discharge_destination("Home")["text"], "Home");
    }

    #[test]
    fn care_team_roles_carry_hl7_practitioner_role_codes_only_where_one_exists() {
        let pharmacist = care_team_role(v1::CareTeamRole::Pharmacist as i32);
        assert_eq!(pharmacist.len(), 2);
        assert_eq!(pharmacist[0]["code"], "pharmacist");
        assert_eq!(pharmacist[1]["system"], PRACTITIONER_ROLE);
        assert_eq!(pharmacist[1]["code"], "pharmacist");
        let housing = care_team_role(v1::CareTeamRole::HousingOfficer as i32);
        assert_eq!(housing.len(), 1);
        assert_eq!(housing[0]["code"], "housing-officer");
        assert_eq!(housing[0]["display"], "Housing officer");
        assert_eq!(care_team_role(0)[0]["code"], "unspecified");
        assert_eq!(care_team_role(12345)[0]["code"], "unspecified");
    }
}
