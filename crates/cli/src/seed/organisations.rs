//! The synthetic organisations, their services and sites, and the word lists people are
//! made from.

use crate::enums::OrgType;
use crate::registry::OrgSpec;

pub(super) const HOSPITALS: [&str; 3] = ["SYN-HOSP-NORTH", "SYN-HOSP-CITY", "SYN-HOSP-SOUTH"];
pub(super) const GPS: [&str; 6] = [
    "SYN-GP-ASH",
    "SYN-GP-BIRCH",
    "SYN-GP-CEDAR",
    "SYN-GP-ELM",
    "SYN-GP-HAZEL",
    "SYN-GP-OAK",
];
pub(super) const COUNCIL: &str = "SYN-ASC";
pub(super) const D2A_SERVICE: &str = "SYN-ASC-D2A";
pub(super) const ASC_FRONT_DOOR: &str = "SYN-ASC-SPA";
pub(super) const COMMUNITY: &str = "SYN-COMM";
pub(super) const COMMUNITY_NURSING: &str = "SYN-COMM-NURSING";
pub(super) const COMMUNITY_FALLS: &str = "SYN-COMM-FALLS";
pub(super) const REHAB_BEDS: &str = "SYN-COMM-REHAB-BEDS";
pub(super) const REABLEMENT: [&str; 2] = ["SYN-REABLE-EAST", "SYN-REABLE-WEST"];
pub(super) const HOME_CARE: [&str; 2] = ["SYN-HOMECARE-AMBER", "SYN-HOMECARE-BLUE"];
pub(super) const CARE_HOMES: [&str; 3] = [
    "SYN-CAREHOME-LARCH",
    "SYN-CAREHOME-MAPLE",
    "SYN-CAREHOME-ROWAN",
];
/// The organisations that act in the seed, with the services and sites each owns. (The
/// analytics and research organisations are only named in objections: not registered.)
pub const ORGANISATIONS: [OrgSpec; 21] = {
    const fn org(
        code: &'static str,
        name: &'static str,
        org_type: OrgType,
        services: &'static [&'static str],
    ) -> OrgSpec {
        OrgSpec {
            code,
            name,
            org_type,
            services,
        }
    }
    use OrgType as T;
    [
        org(
            HOSPITALS[0],
            "Synthetic North Hospital",
            T::NhsTrust,
            &[HOSPITALS[0]],
        ),
        org(
            HOSPITALS[1],
            "Synthetic City Hospital",
            T::NhsTrust,
            &[HOSPITALS[1]],
        ),
        org(
            HOSPITALS[2],
            "Synthetic South Hospital",
            T::NhsTrust,
            &[HOSPITALS[2]],
        ),
        org(
            GPS[0],
            "Synthetic Ash Surgery",
            T::GeneralPractice,
            &[GPS[0]],
        ),
        org(
            GPS[1],
            "Synthetic Birch Surgery",
            T::GeneralPractice,
            &[GPS[1]],
        ),
        org(
            GPS[2],
            "Synthetic Cedar Surgery",
            T::GeneralPractice,
            &[GPS[2]],
        ),
        org(
            GPS[3],
            "Synthetic Elm Surgery",
            T::GeneralPractice,
            &[GPS[3]],
        ),
        org(
            GPS[4],
            "Synthetic Hazel Surgery",
            T::GeneralPractice,
            &[GPS[4]],
        ),
        org(
            GPS[5],
            "Synthetic Oak Surgery",
            T::GeneralPractice,
            &[GPS[5]],
        ),
        org(
            COUNCIL,
            "Synthetic Council Adult Social Care",
            T::LocalAuthority,
            &[COUNCIL, D2A_SERVICE, ASC_FRONT_DOOR],
        ),
        org(
            COMMUNITY,
            "Synthetic Community Health Services",
            T::CommunityProvider,
            &[COMMUNITY, COMMUNITY_NURSING, COMMUNITY_FALLS],
        ),
        org(
            REHAB_BEDS,
            "Synthetic Community Rehabilitation Beds",
            T::CommunityProvider,
            &[REHAB_BEDS],
        ),
        org(
            REABLEMENT[0],
            "Synthetic Reablement East",
            T::CareProvider,
            &[REABLEMENT[0]],
        ),
        org(
            REABLEMENT[1],
            "Synthetic Reablement West",
            T::CareProvider,
            &[REABLEMENT[1]],
        ),
        org(
            HOME_CARE[0],
            "Synthetic Home Care Amber",
            T::CareProvider,
            &[HOME_CARE[0]],
        ),
        org(
            HOME_CARE[1],
            "Synthetic Home Care Blue",
            T::CareProvider,
            &[HOME_CARE[1]],
        ),
        org(
            CARE_HOMES[0],
            "Synthetic Larch Care Home",
            T::CareProvider,
            &[CARE_HOMES[0]],
        ),
        org(
            CARE_HOMES[1],
            "Synthetic Maple Care Home",
            T::CareProvider,
            &[CARE_HOMES[1]],
        ),
        org(
            CARE_HOMES[2],
            "Synthetic Rowan Care Home",
            T::CareProvider,
            &[CARE_HOMES[2]],
        ),
        // Secondary users named in national data opt-outs (an objection's partners must be
        // registered organisations). They hold no ground and provide no care.
        org(ANALYTICS, "Synthetic ICB Analytics", T::Other, &[]),
        org(RESEARCH, "Synthetic Research Environment", T::Other, &[]),
    ]
};
pub(super) const ANALYTICS: &str = "SYN-ICB-ANALYTICS";
pub(super) const RESEARCH: &str = "SYN-RESEARCH-SDE";

pub(super) const GIVEN: [&str; 24] = [
    "Ada", "Albert", "Beryl", "Cyril", "Doris", "Edna", "Ernest", "Florence", "Gladys", "Harold",
    "Ivy", "Jean", "Kenneth", "Lilian", "Mabel", "Norman", "Olive", "Percy", "Rose", "Stanley",
    "Thelma", "Vera", "Walter", "Winifred",
];
pub(super) const FAMILY: [&str; 12] = [
    "Example",
    "Sample",
    "Testcase",
    "Placeholder",
    "Fictional",
    "Madeup",
    "Synthetic",
    "Dummyfield",
    "Specimen",
    "Mockford",
    "Pretendwell",
    "Imaginary",
];
pub(super) const WARDS: [&str; 5] = [
    "Ward 7 (care of older people)",
    "Ward 12 (acute medicine)",
    "Ward 3 (orthopaedics)",
    "Ward 9 (respiratory)",
    "Ward 4 (stroke)",
];
pub(super) const WHAT_MATTERS: [&str; 6] = [
    "Getting back to my allotment",
    "Seeing my grandchildren on Sundays",
    "Walking the dog round the park again",
    "Staying in my own home with my cat",
    "Going to the lunch club on Wednesdays",
    "Being able to make my own cup of tea",
];
