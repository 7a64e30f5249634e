//! Unit tests of the governance rules, driven by events built directly (no log, no IO).
//!
//! The world: five registered organisations, each with one service, and people identified by
//! fixed UUIDs. Events are applied in order through [`World::record`]; [`World::deliver`]
//! answers what a partner is sent of one event, as a feed would (relationship just before
//! the event, decision after applying it).

use std::collections::BTreeSet;

use carewoven_domain::assessment::{AssessmentEvent, AssessmentKind, AssessmentRequest};
use carewoven_domain::care_plan::{CarePlanCommand, CarePlanEvent, PlanContent};
use carewoven_domain::care_team::{CareTeamRole, MemberRef};
use carewoven_domain::consent::ConsentCommand;
use carewoven_domain::discharge::{DischargeEpisode, DischargeStatus};
use carewoven_domain::feedback::{FeedbackCommand, FeedbackEvent, FeedbackRecord, FeedbackSource};
use carewoven_domain::meeting::{MeetingCommand, MeetingEvent, MeetingRecord};
use carewoven_domain::organisation::{OrganisationCommand, OrganisationProfile, OrganisationType};
use carewoven_domain::person::{Correction, PersonCommand, Profile};
use carewoven_domain::referral::{NewReferral, Priority, Referral, ReferralStatus};
use carewoven_domain::values::{LongText, ShortText};
use carewoven_domain::{EventMeta, REGISTRY_PERSON, SCHEMA_VERSION};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;

mod citizens;

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

fn code(raw: &str) -> Code {
    Code::parse("code", raw).expect("code")
}

fn text(raw: &str) -> LongText {
    LongText::parse("text", raw).expect("text")
}

fn short(raw: &str) -> ShortText {
    ShortText::parse("text", raw).expect("text")
}

fn day(raw: &str) -> NaiveDate {
    raw.parse().expect("date")
}

fn at(raw: &str) -> DateTime<Utc> {
    raw.parse().expect("instant")
}

/// The day most tests run on; events are recorded on it at 10:00 UTC unless a test says not.
const TODAY: &str = "2026-06-01";

fn today() -> NaiveDate {
    day(TODAY)
}

/// Midday UTC of `d` (the same UK calendar day all year).
fn noon(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(12, 0, 0).expect("midday").and_utc()
}

/// Organisations and their one service each.
const ORGS: [(&str, &str); 5] = [
    ("GP", "GP-SURGERY"),
    ("HOSP", "HOSP-WARD"),
    ("COUNCIL", "COUNCIL-REABLE"),
    ("CARE", "CARE-HOME"),
    ("OTHER", "OTHER-SVC"),
];

const P: Uuid = Uuid::from_u128(0x100);
const Q: Uuid = Uuid::from_u128(0x200);
/// A person with a referral (GP -> COUNCIL) but nobody on the care team.
const R: Uuid = Uuid::from_u128(0x300);

fn agg(n: u128) -> Uuid {
    Uuid::from_u128(0xA000 + n)
}

fn all_classes() -> Vec<DataClass> {
    ALL_DATA_CLASSES.to_vec()
}

fn member(org: &str, practitioner: Option<&str>) -> MemberRef {
    MemberRef {
        organisation: code(org),
        practitioner: practitioner.map(code),
    }
}

fn new_referral(from: &str, to_service: &str) -> NewReferral {
    NewReferral {
        from_organisation: code(from),
        to_service: code(to_service),
        priority: Priority::Routine,
        reason: text("needs reablement after discharge"),
        replaces: None,
    }
}

fn profile(n: u32) -> Profile {
    Profile {
        nhs_number: NhsNumber::synthetic(n),
        given_name: short("Test"),
        family_name: short("Person"),
        date_of_birth: day("1940-02-03"),
        contact: None,
        what_matters: None,
        communication_needs: None,
        carers: Vec::new(),
        registered_gp: None,
    }
}

fn plan() -> PlanContent {
    PlanContent {
        goals: vec![text("to get home")],
        activities: Vec::new(),
        review_date: day("2026-09-01"),
    }
}

fn meeting_record() -> MeetingRecord {
    MeetingRecord {
        held_at: at("2026-05-30T10:00:00Z"),
        attendees: vec![code("HOSP")],
        decisions: vec![text("discharge on pathway 1")],
        actions: Vec::new(),
    }
}

fn feedback_record() -> FeedbackRecord {
    FeedbackRecord {
        source: FeedbackSource::Person,
        anonymous: false,
        text: text("the handover went well"),
        rating: Some(5),
    }
}

/// An objection (`Deny` for direct care) to `partners`, for `classes` (empty: all), in force
/// since the start of the year with no end.
fn objection(partners: &[&str], classes: &[DataClass]) -> ConsentTerms {
    ConsentTerms {
        decision: ConsentDecision::Deny,
        purpose: Purpose::DirectCare,
        partners: partners.iter().map(|p| code(p)).collect(),
        data_classes: classes.to_vec(),
        valid_from: day("2026-01-01"),
        valid_until: None,
        capacity_assessed: true,
    }
}

fn permit(partners: &[&str]) -> ConsentTerms {
    ConsentTerms {
        decision: ConsentDecision::Permit,
        ..objection(partners, &[])
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

fn registered(n: u32) -> Event {
    Event::Person(PersonEvent::Registered {
        profile: profile(n),
    })
}

fn registered_with_gp(n: u32, gp: &str) -> Event {
    Event::Person(PersonEvent::Registered {
        profile: Profile {
            registered_gp: Some(code(gp)),
            ..profile(n)
        },
    })
}

fn corrected() -> Event {
    Event::Person(PersonEvent::DetailsCorrected {
        correction: Correction {
            given_name: Some(short("Corrected")),
            ..Correction::default()
        },
        reason: text("misspelt"),
    })
}

fn submitted(from: &str, to_service: &str) -> Event {
    Event::Referral(ReferralEvent::Submitted {
        referral: new_referral(from, to_service),
    })
}

fn referral(e: ReferralEvent) -> Event {
    Event::Referral(e)
}

fn rejected() -> Event {
    referral(ReferralEvent::Rejected {
        reason: text("no capacity"),
    })
}

fn cancelled() -> Event {
    referral(ReferralEvent::Cancelled {
        reason: text("no longer needed"),
    })
}

fn entered_in_error() -> Event {
    referral(ReferralEvent::EnteredInError {
        reason: text("wrong person"),
    })
}

fn added(org: &str, practitioner: Option<&str>) -> Event {
    Event::CareTeam(CareTeamEvent::MemberAdded {
        member: member(org, practitioner),
        role: CareTeamRole::Other,
        since: day("2026-05-01"),
    })
}

fn removed(org: &str, practitioner: Option<&str>) -> Event {
    Event::CareTeam(CareTeamEvent::MemberRemoved {
        member: member(org, practitioner),
        until: today(),
        reason: text("no longer involved"),
    })
}

fn coordinator(org: &str) -> Event {
    Event::CareTeam(CareTeamEvent::CoordinatorNamed {
        member: member(org, None),
    })
}

fn plan_agreed() -> Event {
    Event::CarePlan(CarePlanEvent::Agreed {
        plan_version: 1,
        plan: plan(),
    })
}

fn plan_revised(version: u32) -> Event {
    Event::CarePlan(CarePlanEvent::Revised {
        plan_version: version,
        plan: plan(),
        reason: text("review"),
        changes: Vec::new(),
    })
}

fn admitted(site: &str) -> Event {
    Event::Discharge(DischargeEvent::Admitted {
        site: code(site),
        ward: None,
        admitted_at: at("2026-05-20T08:00:00Z"),
    })
}

fn discharge(e: DischargeEvent) -> Event {
    Event::Discharge(e)
}

fn consent_recorded(terms: ConsentTerms) -> Event {
    Event::Consent(ConsentEvent::Recorded { terms })
}

fn consent_withdrawn() -> Event {
    Event::Consent(ConsentEvent::Withdrawn {
        reason: text("changed their mind"),
    })
}

fn contribution() -> Event {
    Event::Assessment(AssessmentEvent::ContributionRecorded {
        organisation: code("COUNCIL"),
        summary: text("manages stairs with help"),
    })
}

fn meeting() -> Event {
    Event::Meeting(MeetingEvent::Recorded {
        meeting: meeting_record(),
    })
}

fn feedback() -> Event {
    Event::Feedback(FeedbackEvent::Recorded {
        feedback: feedback_record(),
    })
}

fn date_set() -> Event {
    discharge(DischargeEvent::ExpectedDischargeDateSet {
        expected: day("2026-06-05"),
    })
}

// ---------------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------------

struct World {
    gov: Governance,
    sequence: u64,
    /// `recorded_at` (and `occurred_at`) of the next events.
    now: DateTime<Utc>,
}

impl World {
    /// The organisations registered, no agreements.
    fn registry() -> Self {
        let mut w = World {
            gov: Governance::new(),
            sequence: 0,
            now: at("2026-06-01T10:00:00Z"),
        };
        for (org, service) in ORGS {
            w.register(org, &[service]);
        }
        w
    }

    /// The organisations registered, each with a direct-care agreement for every data class
    /// for the whole of 2026.
    fn standard() -> Self {
        let mut w = World::registry();
        for (org, _) in ORGS {
            w.agree(org, "DSA-1", all_classes(), "2026-01-01", "2027-01-01");
        }
        w
    }

    fn org_id(org: &str) -> Uuid {
        // Distinct per code, stable within a test.
        let n = org.bytes().fold(0u128, |acc, b| {
            acc.wrapping_mul(131).wrapping_add(u128::from(b))
        });
        Uuid::from_u128(0xF000_0000 + n)
    }

    fn record(&mut self, person: Uuid, aggregate: Uuid, event: Event) -> RecordedEvent {
        self.sequence += 1;
        let recorded = RecordedEvent {
            sequence: self.sequence,
            meta: EventMeta {
                event_id: Uuid::from_u128(0xE000_0000 + u128::from(self.sequence)),
                aggregate_id: aggregate,
                aggregate_kind: event.kind(),
                person_id: person,
                version: 1,
                command_id: Uuid::from_u128(u128::from(self.sequence)),
                correlation_id: Uuid::from_u128(u128::from(self.sequence)),
                causation_id: Uuid::from_u128(u128::from(self.sequence)),
                organisation: code("HOSP"),
                user: code("user-1"),
                occurred_at: self.now,
                recorded_at: self.now,
                schema_version: SCHEMA_VERSION,
            },
            event,
        };
        self.gov.apply(&recorded);
        recorded
    }

    /// Apply `event` and say what `partner` is sent of it on `on`, as a feed would.
    fn deliver_on(
        &mut self,
        partner: &str,
        person: Uuid,
        aggregate: Uuid,
        event: Event,
        on: NaiveDate,
    ) -> Option<Disclosure> {
        let partner = code(partner);
        let was_related = self.gov.related(person, &partner, self.now);
        let recorded = self.record(person, aggregate, event);
        self.gov
            .disclosure(&recorded, &partner, was_related, noon(on))
    }

    fn deliver(
        &mut self,
        partner: &str,
        person: Uuid,
        aggregate: Uuid,
        event: Event,
    ) -> Option<Disclosure> {
        self.deliver_on(partner, person, aggregate, event, today())
    }

    fn registry_event(&mut self, org: &str, event: OrganisationEvent) -> RecordedEvent {
        self.record(
            REGISTRY_PERSON,
            World::org_id(org),
            Event::Organisation(event),
        )
    }

    fn register(&mut self, org: &str, services: &[&str]) {
        self.registry_event(
            org,
            OrganisationEvent::Registered {
                code: code(org),
                profile: OrganisationProfile {
                    name: short("Synthetic organisation"),
                    org_type: OrganisationType::Other,
                },
                services: services.iter().map(|s| code(s)).collect(),
            },
        );
    }

    fn agree_for(
        &mut self,
        org: &str,
        reference: &str,
        purposes: Vec<Purpose>,
        classes: Vec<DataClass>,
        from: &str,
        expires: &str,
    ) {
        self.registry_event(
            org,
            OrganisationEvent::AgreementRecorded {
                agreement: SharingAgreement {
                    reference: code(reference),
                    purposes,
                    data_classes: classes,
                    valid_from: day(from),
                    expires_on: day(expires),
                },
            },
        );
    }

    fn agree(
        &mut self,
        org: &str,
        reference: &str,
        classes: Vec<DataClass>,
        from: &str,
        expires: &str,
    ) {
        self.agree_for(
            org,
            reference,
            vec![Purpose::DirectCare],
            classes,
            from,
            expires,
        );
    }

    fn end_agreement(&mut self, org: &str, reference: &str) {
        self.registry_event(
            org,
            OrganisationEvent::AgreementEnded {
                reference: code(reference),
                reason: text("superseded"),
            },
        );
    }

    fn related(&self, person: Uuid) -> BTreeSet<String> {
        self.gov
            .related_orgs(person, self.now)
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect()
    }
}

fn set(orgs: &[&str]) -> BTreeSet<String> {
    orgs.iter().map(|o| (*o).to_owned()).collect()
}

fn identity(org: &str) -> Identity {
    Identity {
        organisation: code(org),
        user: Some(code("user-1")),
        roles: Vec::new(),
        citizen: None,
    }
}

fn with_roles(org: &str, roles: &[Role]) -> Identity {
    Identity {
        roles: roles.to_vec(),
        ..identity(org)
    }
}

// ---------------------------------------------------------------------------------------------
// The fold: registry, identifiers, position
// ---------------------------------------------------------------------------------------------

#[test]
fn the_registry_knows_organisations_services_and_agreements() {
    let mut w = World::standard();
    w.registry_event(
        "COUNCIL",
        OrganisationEvent::ServiceAdded {
            service: code("COUNCIL-OT"),
        },
    );
    assert_eq!(w.gov.organisations().count(), ORGS.len());
    for (org, service) in ORGS {
        assert_eq!(
            w.gov.service_owner(&code(service)),
            Some(&code(org)),
            "{service}"
        );
        assert!(w.gov.organisation(&code(org)).is_some(), "{org}");
        assert!(
            w.gov.agreement_in_force(&code(org), today()).is_some(),
            "{org}"
        );
    }
    assert_eq!(
        w.gov.service_owner(&code("COUNCIL-OT")),
        Some(&code("COUNCIL"))
    );
    assert_eq!(w.gov.service_owner(&code("NOBODY-SVC")), None);
    assert!(w.gov.organisation(&code("UNREG")).is_none());

    // A service belongs to the first organisation that registered it, whichever way.
    w.register("LATE", &["HOSP-WARD", "LATE-SVC"]);
    w.registry_event(
        "LATE",
        OrganisationEvent::ServiceAdded {
            service: code("COUNCIL-OT"),
        },
    );
    assert_eq!(w.gov.service_owner(&code("HOSP-WARD")), Some(&code("HOSP")));
    assert_eq!(
        w.gov.service_owner(&code("COUNCIL-OT")),
        Some(&code("COUNCIL"))
    );
    assert_eq!(w.gov.service_owner(&code("LATE-SVC")), Some(&code("LATE")));

    // Registry facts about an organisation never registered are ignored.
    w.agree("GHOST", "DSA-1", all_classes(), "2026-01-01", "2027-01-01");
    assert!(w.gov.organisation(&code("GHOST")).is_none());
    assert!(w.gov.agreement_in_force(&code("GHOST"), today()).is_none());
}

#[test]
fn the_fold_tracks_nhs_number_and_log_position() {
    let mut w = World::registry();
    let before = w.gov.position();
    assert_eq!(Governance::new().position(), 0);
    assert!(before > 0);
    assert_eq!(w.gov.nhs_number(P), None);
    w.record(P, P, registered(1));
    assert_eq!(w.gov.nhs_number(P), Some(NhsNumber::synthetic(1)));
    // A correction without an NHS number keeps it; one with it replaces it.
    w.record(P, P, corrected());
    assert_eq!(w.gov.nhs_number(P), Some(NhsNumber::synthetic(1)));
    w.record(
        P,
        P,
        Event::Person(PersonEvent::DetailsCorrected {
            correction: Correction {
                nhs_number: Some(NhsNumber::synthetic(2)),
                ..Correction::default()
            },
            reason: text("transposed digits"),
        }),
    );
    assert_eq!(w.gov.nhs_number(P), Some(NhsNumber::synthetic(2)));
    assert_eq!(w.gov.nhs_number(Q), None);
    assert_eq!(w.gov.position(), before + 3);
}

#[test]
fn roles_parse_and_print() {
    for role in [Role::Governance, Role::Analyst] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    assert_eq!(Role::parse("admin"), None);
    assert_eq!(Role::parse("Governance"), None);
    let who = with_roles("GOV", &[Role::Analyst]);
    assert!(who.has(Role::Analyst));
    assert!(!who.has(Role::Governance));
}

#[test]
fn every_event_has_its_data_class() {
    let org_event = Event::Organisation(OrganisationEvent::ServiceAdded { service: code("X") });
    let cases: Vec<(Event, Option<DataClass>)> = vec![
        (registered(1), Some(DataClass::Demographics)),
        (corrected(), Some(DataClass::Demographics)),
        (
            submitted("GP", "COUNCIL-REABLE"),
            Some(DataClass::Referrals),
        ),
        (rejected(), Some(DataClass::Referrals)),
        (contribution(), Some(DataClass::Assessments)),
        (plan_agreed(), Some(DataClass::CarePlan)),
        (added("GP", None), Some(DataClass::CareTeam)),
        (admitted("HOSP-WARD"), Some(DataClass::Discharge)),
        (meeting(), Some(DataClass::Meetings)),
        (feedback(), Some(DataClass::Feedback)),
        (consent_recorded(permit(&["GP"])), None),
        (consent_withdrawn(), None),
        (org_event, None),
    ];
    for (event, class) in cases {
        assert_eq!(data_class(&event), class, "{}", event.name());
    }
}

// ---------------------------------------------------------------------------------------------
// Relationships
// ---------------------------------------------------------------------------------------------

type Step = (u128, Event, &'static [&'static str]);

#[test]
fn relationships_start_and_end_with_their_grounds() {
    let scenarios: Vec<(&str, Vec<Step>)> = vec![
        (
            "referral: the receiving service's owner, not the referrer, until rejected",
            vec![
                (1, submitted("GP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (1, referral(ReferralEvent::Received), &["COUNCIL"]),
                (1, rejected(), &[]),
            ],
        ),
        (
            "referral: until cancelled",
            vec![
                (1, submitted("GP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (1, referral(ReferralEvent::Received), &["COUNCIL"]),
                (1, referral(ReferralEvent::Accepted), &["COUNCIL"]),
                (1, cancelled(), &[]),
            ],
        ),
        (
            "referral: a completed referral stays a ground (for the set period)",
            vec![
                (1, submitted("HOSP", "CARE-HOME"), &["CARE"]),
                (1, referral(ReferralEvent::Accepted), &["CARE"]),
                (1, referral(ReferralEvent::Started), &["CARE"]),
                (1, referral(ReferralEvent::Completed), &["CARE"]),
                (1, entered_in_error(), &[]),
            ],
        ),
        (
            "referral: a failed referral stays a ground (for the set period)",
            vec![
                (1, submitted("GP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (1, referral(ReferralEvent::Started), &["COUNCIL"]),
                (
                    1,
                    referral(ReferralEvent::Failed {
                        reason: text("provider withdrew"),
                    }),
                    &["COUNCIL"],
                ),
            ],
        ),
        (
            "referral: to an unregistered service relates nobody",
            vec![(1, submitted("GP", "NOBODY-SVC"), &[])],
        ),
        (
            "care team: organisation and practitioner memberships",
            vec![
                (0, added("HOSP", None), &["HOSP"]),
                (0, added("HOSP", Some("dr-1")), &["HOSP"]),
                (0, added("COUNCIL", None), &["COUNCIL", "HOSP"]),
                (0, coordinator("COUNCIL"), &["COUNCIL", "HOSP"]),
                (0, removed("HOSP", None), &["COUNCIL", "HOSP"]),
                (0, removed("COUNCIL", None), &["HOSP"]),
                (0, removed("HOSP", Some("dr-1")), &[]),
                (0, added("HOSP", None), &["HOSP"]),
            ],
        ),
        (
            "discharge: site owner, requested and agreed services' owners, handover organisation",
            vec![
                (2, admitted("HOSP-WARD"), &["HOSP"]),
                (2, date_set(), &["HOSP"]),
                (
                    2,
                    discharge(DischargeEvent::ServiceRequested {
                        service: code("COUNCIL-REABLE"),
                    }),
                    &["COUNCIL", "HOSP"],
                ),
                (
                    2,
                    discharge(DischargeEvent::DischargeAgreed {
                        service: code("CARE-HOME"),
                        planned_for: day("2026-06-03"),
                    }),
                    &["CARE", "COUNCIL", "HOSP"],
                ),
                (
                    2,
                    discharge(DischargeEvent::Discharged {
                        discharged_at: at("2026-06-03T12:00:00Z"),
                        destination: short("home"),
                        destination_code: None,
                    }),
                    &["CARE", "COUNCIL", "HOSP"],
                ),
                (
                    2,
                    discharge(DischargeEvent::HandoverAccepted {
                        organisation: code("GP"),
                    }),
                    &["CARE", "COUNCIL", "GP", "HOSP"],
                ),
                // Closed: the grounds last the set period after it.
                (
                    2,
                    discharge(DischargeEvent::Closed),
                    &["CARE", "COUNCIL", "GP", "HOSP"],
                ),
            ],
        ),
        (
            "discharge: an admission at an unregistered site relates nobody",
            vec![
                (2, admitted("NOWHERE"), &[]),
                (
                    2,
                    discharge(DischargeEvent::ServiceRequested {
                        service: code("NOBODY-SVC"),
                    }),
                    &[],
                ),
            ],
        ),
        (
            "several grounds: related until every one has ended",
            vec![
                (1, submitted("GP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (0, added("GP", None), &["COUNCIL", "GP"]),
                (3, submitted("GP", "CARE-HOME"), &["CARE", "COUNCIL", "GP"]),
                (1, rejected(), &["CARE", "GP"]),
                (0, removed("GP", None), &["CARE"]),
                (3, cancelled(), &[]),
            ],
        ),
        (
            "several grounds: referral and discharge episode",
            vec![
                (1, submitted("HOSP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (2, admitted("HOSP-WARD"), &["COUNCIL", "HOSP"]),
                (
                    2,
                    discharge(DischargeEvent::ServiceRequested {
                        service: code("COUNCIL-REABLE"),
                    }),
                    &["COUNCIL", "HOSP"],
                ),
                (1, entered_in_error(), &["COUNCIL", "HOSP"]),
            ],
        ),
        (
            "one referral rejected, another still open",
            vec![
                (1, submitted("GP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (3, submitted("GP", "COUNCIL-REABLE"), &["COUNCIL"]),
                (1, rejected(), &["COUNCIL"]),
                (3, rejected(), &[]),
            ],
        ),
    ];
    for (name, steps) in scenarios {
        let mut w = World::standard();
        w.record(Q, Q, added("OTHER", None));
        for (i, (aggregate, event, expected)) in steps.into_iter().enumerate() {
            let what = event.name();
            // Aggregate 0 is the care team, whose id is the person's.
            let aggregate = if aggregate == 0 { P } else { agg(aggregate) };
            w.record(P, aggregate, event);
            let expected = set(expected);
            assert_eq!(w.related(P), expected, "{name}: step {i} ({what})");
            for (org, _) in ORGS {
                assert_eq!(
                    w.gov.related(P, &code(org), w.now),
                    expected.contains(org),
                    "{name}: step {i} ({what}): related(P, {org})"
                );
            }
            // Nothing leaks to another person.
            assert_eq!(w.related(Q), set(&["OTHER"]), "{name}: step {i}");
        }
    }
    assert!(World::standard().related(P).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Command authorisation
// ---------------------------------------------------------------------------------------------

fn org_command(command: OrganisationCommand) -> Command {
    Command::Organisation {
        organisation_id: World::org_id("NEW"),
        command,
    }
}

fn register_org() -> Command {
    org_command(OrganisationCommand::Register {
        code: code("NEW"),
        profile: OrganisationProfile {
            name: short("New partner"),
            org_type: OrganisationType::Voluntary,
        },
        services: vec![code("NEW-SVC")],
    })
}

fn person_command(person: Uuid, command: PersonCommand) -> Command {
    Command::Person {
        person_id: person,
        command,
    }
}

fn register_person(person: Uuid) -> Command {
    person_command(
        person,
        PersonCommand::Register {
            person_id: person,
            profile: profile(7),
        },
    )
}

fn correct_person(person: Uuid) -> Command {
    person_command(
        person,
        PersonCommand::Correct {
            correction: Correction {
                given_name: Some(short("Corrected")),
                ..Correction::default()
            },
            reason: text("misspelt"),
            based_on_version: 1,
        },
    )
}

fn referral_command(person: Uuid, command: ReferralCommand) -> Command {
    Command::Referral {
        person_id: person,
        referral_id: agg(1),
        command,
    }
}

fn make(person: Uuid, from: &str, to_service: &str) -> Command {
    referral_command(
        person,
        ReferralCommand::Make {
            referral: new_referral(from, to_service),
        },
    )
}

/// The referral GP -> COUNCIL-REABLE, received.
fn referral_state() -> Option<AggregateState> {
    Some(AggregateState::Referral(Referral {
        details: new_referral("GP", "COUNCIL-REABLE"),
        status: ReferralStatus::Received,
        resume_to: None,
    }))
}

fn assessment(person: Uuid, command: AssessmentCommand) -> Command {
    Command::Assessment {
        person_id: person,
        assessment_id: agg(4),
        command,
    }
}

fn request_assessment(person: Uuid) -> Command {
    assessment(
        person,
        AssessmentCommand::Request {
            request: AssessmentRequest {
                kind: AssessmentKind::CareActNeeds,
                assessors: vec![code("COUNCIL")],
                referral_id: None,
                due_by: None,
            },
        },
    )
}

fn contribute(person: Uuid, as_org: &str) -> Command {
    assessment(
        person,
        AssessmentCommand::Contribute {
            organisation: code(as_org),
            summary: text("observed at home"),
        },
    )
}

fn agree_plan(person: Uuid) -> Command {
    Command::CarePlan {
        person_id: person,
        command: CarePlanCommand::Agree { plan: plan() },
    }
}

fn team(person: Uuid, command: CareTeamCommand) -> Command {
    Command::CareTeam {
        person_id: person,
        command,
    }
}

fn add_member(person: Uuid, org: &str) -> Command {
    team(
        person,
        CareTeamCommand::AddMember {
            member: member(org, None),
            role: CareTeamRole::SocialWorker,
            since: today(),
        },
    )
}

fn remove_member(person: Uuid, org: &str) -> Command {
    team(
        person,
        CareTeamCommand::RemoveMember {
            member: member(org, None),
            until: today(),
            reason: text("no longer involved"),
        },
    )
}

fn record_permit(person: Uuid) -> Command {
    Command::Consent {
        person_id: person,
        consent_id: agg(5),
        command: ConsentCommand::Record {
            terms: permit(&["HOSP"]),
        },
    }
}

fn record_meeting(person: Uuid) -> Command {
    Command::Meeting {
        person_id: person,
        meeting_id: agg(6),
        command: MeetingCommand::Record {
            meeting: meeting_record(),
        },
    }
}

fn record_feedback(person: Uuid) -> Command {
    Command::Feedback {
        person_id: person,
        feedback_id: agg(7),
        command: FeedbackCommand::Record {
            feedback: feedback_record(),
        },
    }
}

fn episode(person: Uuid, command: DischargeCommand) -> Command {
    Command::Discharge {
        person_id: person,
        episode_id: agg(2),
        command,
    }
}

fn admit(person: Uuid, site: &str) -> Command {
    episode(
        person,
        DischargeCommand::Admit {
            site: code(site),
            ward: None,
            admitted_at: at("2026-06-01T08:00:00Z"),
        },
    )
}

fn accept_handover(person: Uuid, org: &str) -> Command {
    episode(
        person,
        DischargeCommand::AcceptHandover {
            organisation: code(org),
        },
    )
}

fn complete_home_assessment(person: Uuid) -> Command {
    episode(
        person,
        DischargeCommand::CompleteHomeAssessment {
            completed_on: today(),
            outcome: text("managing well"),
        },
    )
}

/// The episode at HOSP-WARD, discharged with COUNCIL's reablement agreed, handover accepted
/// by `handover` if any.
fn episode_state(handover: Option<&str>) -> Option<AggregateState> {
    Some(AggregateState::Discharge(DischargeEpisode {
        site: code("HOSP-WARD"),
        ward: None,
        admitted_at: at("2026-05-20T08:00:00Z"),
        status: if handover.is_some() {
            DischargeStatus::HandoverAccepted
        } else {
            DischargeStatus::Discharged
        },
        expected_discharge_date: None,
        discharge_ready_date: Some(day("2026-05-28")),
        superseded_drds: Vec::new(),
        pathway: None,
        service: Some(code("COUNCIL-REABLE")),
        planned_for: Some(day("2026-05-30")),
        delay_reasons: Vec::new(),
        discharged_at: Some(at("2026-05-30T12:00:00Z")),
        handover_organisation: handover.map(code),
    }))
}

/// P: referral GP -> COUNCIL, HOSP on the care team, an episode at HOSP-WARD with COUNCIL's
/// service agreed. R: referral GP -> COUNCIL, nobody on the care team. Q: nothing.
fn authorisation_world() -> World {
    let mut w = World::standard();
    w.record(P, P, registered_with_gp(1, "GP"));
    w.record(P, agg(1), submitted("GP", "COUNCIL-REABLE"));
    w.record(P, P, added("HOSP", None));
    w.record(P, agg(2), admitted("HOSP-WARD"));
    w.record(
        P,
        agg(2),
        discharge(DischargeEvent::DischargeAgreed {
            service: code("COUNCIL-REABLE"),
            planned_for: day("2026-05-30"),
        }),
    );
    w.record(R, R, registered(2));
    w.record(R, agg(11), submitted("GP", "COUNCIL-REABLE"));
    w.record(Q, Q, registered(3));
    w
}

const OK: Result<(), &str> = Ok(());
const NO_RELATIONSHIP: Result<(), &str> = Err("NO_LEGITIMATE_RELATIONSHIP");
const NOT_ON_TEAM: Result<(), &str> = Err("NOT_ON_CARE_TEAM");
const NO_ROLE_IN_REFERRAL: Result<(), &str> = Err("NO_ROLE_IN_REFERRAL");
const NO_ROLE_IN_DISCHARGE: Result<(), &str> = Err("NO_ROLE_IN_DISCHARGE");
const NOT_REGISTERED: Result<(), &str> = Err("ORGANISATION_NOT_REGISTERED");
const ROLE_REQUIRED: Result<(), &str> = Err("GOVERNANCE_ROLE_REQUIRED");

/// A table of authorisation cases over [`authorisation_world`]: each `check` is one case,
/// named in a failure by its line.
struct Cases {
    world: World,
    failures: Vec<String>,
    count: usize,
}

impl Cases {
    fn new() -> Self {
        Cases {
            world: authorisation_world(),
            failures: Vec::new(),
            count: 0,
        }
    }

    #[track_caller]
    fn check(
        &mut self,
        who: Identity,
        command: Command,
        state: Option<AggregateState>,
        expect: Result<(), &'static str>,
    ) {
        let line = std::panic::Location::caller().line();
        self.count += 1;
        let got = self
            .world
            .gov
            .authorise(&who, &command, state.as_ref(), self.world.now);
        if got.clone().map_err(|d| d.reason) != expect {
            self.failures.push(format!(
                "line {line}: {} {command:?}: expected {expect:?}, got {got:?}",
                who.organisation
            ));
        }
        if let Err(denial) = &got {
            // A refusal names no person.
            assert!(!denial.message.is_empty(), "line {line}");
            for person in [P, Q, R] {
                assert!(!denial.message.contains(&person.to_string()), "line {line}");
            }
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failures.len(),
            self.count,
            self.failures.join("\n")
        );
    }
}

fn id(org: &str) -> Identity {
    identity(org)
}

#[test]
fn registry_commands_need_the_governance_role() {
    let agreement = org_command(OrganisationCommand::RecordAgreement {
        agreement: SharingAgreement {
            reference: code("DSA-2"),
            purposes: vec![Purpose::DirectCare],
            data_classes: all_classes(),
            valid_from: today(),
            expires_on: day("2027-06-01"),
        },
    });
    let end = org_command(OrganisationCommand::EndAgreement {
        reference: code("DSA-1"),
        reason: text("superseded"),
    });
    let add = org_command(OrganisationCommand::AddService {
        service: code("GP-EXTRA"),
    });
    let governance = |org| with_roles(org, &[Role::Governance]);
    let mut t = Cases::new();
    t.check(governance("GOV"), register_org(), None, OK);
    t.check(governance("GP"), agreement.clone(), None, OK);
    t.check(
        with_roles("GOV", &[Role::Analyst, Role::Governance]),
        end.clone(),
        None,
        OK,
    );
    // The role suffices: the registry's maintainer need not be a registered partner.
    t.check(governance("UNREG"), add.clone(), None, OK);
    t.check(id("GP"), register_org(), None, ROLE_REQUIRED);
    t.check(id("GP"), add.clone(), None, ROLE_REQUIRED);
    t.check(id("GP"), agreement, None, ROLE_REQUIRED);
    t.check(with_roles("GP", &[Role::Analyst]), end, None, ROLE_REQUIRED);
    t.check(id("UNREG"), add, None, ROLE_REQUIRED);
    t.finish();
}

#[test]
fn person_and_referral_commands() {
    let cmd = |command| referral_command(P, command);
    let receive = || cmd(ReferralCommand::Receive);
    let accept = || cmd(ReferralCommand::Accept);
    let reject = || {
        cmd(ReferralCommand::Reject {
            reason: text("full"),
        })
    };
    let cancel = || {
        cmd(ReferralCommand::Cancel {
            reason: text("not needed"),
        })
    };
    let in_error = || {
        cmd(ReferralCommand::MarkEnteredInError {
            reason: text("wrong person"),
        })
    };
    let contact_only = |person| {
        person_command(
            person,
            PersonCommand::Correct {
                correction: Correction {
                    contact: Some(text("new address")),
                    ..Correction::default()
                },
                reason: text("moved"),
                based_on_version: 1,
            },
        )
    };
    let mut t = Cases::new();
    // Unregistered organisations may do nothing.
    t.check(id("UNREG"), register_person(Q), None, NOT_REGISTERED);
    t.check(
        id("UNREG"),
        make(P, "UNREG", "COUNCIL-REABLE"),
        None,
        NOT_REGISTERED,
    );
    // Person: any registered organisation registers.
    t.check(id("OTHER"), register_person(Q), None, OK);
    // Identity fields: the registered GP practice only (or governance, below).
    t.check(id("GP"), correct_person(P), None, OK);
    t.check(
        id("HOSP"),
        correct_person(P),
        None,
        Err("IDENTITY_CORRECTION_NOT_ALLOWED"),
    );
    t.check(
        id("COUNCIL"),
        correct_person(P),
        None,
        Err("IDENTITY_CORRECTION_NOT_ALLOWED"),
    );
    // Other details: any related organisation.
    t.check(id("HOSP"), contact_only(P), None, OK);
    t.check(id("COUNCIL"), contact_only(P), None, OK);
    t.check(id("OTHER"), contact_only(P), None, NO_RELATIONSHIP);
    t.check(id("OTHER"), correct_person(P), None, NO_RELATIONSHIP);
    t.check(id("GP"), correct_person(Q), None, NO_RELATIONSHIP);
    // The same answer for a person who does not exist.
    let nobody = Uuid::from_u128(0xDEAD);
    t.check(id("OTHER"), contact_only(nobody), None, NO_RELATIONSHIP);
    // Making a referral: from oneself; no relationship needed (registration of the service
    // is `check_references`).
    t.check(id("GP"), make(P, "GP", "COUNCIL-REABLE"), None, OK);
    t.check(id("OTHER"), make(Q, "OTHER", "CARE-HOME"), None, OK);
    t.check(
        id("HOSP"),
        make(P, "GP", "COUNCIL-REABLE"),
        None,
        Err("NOT_THE_REFERRER"),
    );
    t.check(
        id("COUNCIL"),
        make(P, "GP", "COUNCIL-REABLE"),
        None,
        Err("NOT_THE_REFERRER"),
    );
    // The receiving service's organisation moves the referral on.
    t.check(id("COUNCIL"), receive(), referral_state(), OK);
    t.check(id("COUNCIL"), accept(), referral_state(), OK);
    t.check(id("COUNCIL"), reject(), referral_state(), OK);
    t.check(id("GP"), receive(), referral_state(), NO_ROLE_IN_REFERRAL);
    t.check(id("GP"), accept(), referral_state(), NO_ROLE_IN_REFERRAL);
    t.check(id("GP"), reject(), referral_state(), NO_ROLE_IN_REFERRAL);
    // Unrelated: the uniform answer, not the role in the referral.
    t.check(id("OTHER"), accept(), referral_state(), NO_RELATIONSHIP);
    // HOSP is related to the person (care team) but has no role in this referral.
    t.check(id("HOSP"), receive(), referral_state(), NO_ROLE_IN_REFERRAL);
    // Only the referrer cancels; either party marks it entered in error.
    t.check(id("GP"), cancel(), referral_state(), OK);
    t.check(
        id("COUNCIL"),
        cancel(),
        referral_state(),
        NO_ROLE_IN_REFERRAL,
    );
    t.check(id("HOSP"), cancel(), referral_state(), NO_ROLE_IN_REFERRAL);
    t.check(id("GP"), in_error(), referral_state(), OK);
    t.check(id("COUNCIL"), in_error(), referral_state(), OK);
    t.check(id("OTHER"), in_error(), referral_state(), NO_RELATIONSHIP);
    // A referral that does not exist: `decide` names it to a related caller only.
    t.check(id("COUNCIL"), accept(), None, OK);
    t.check(id("OTHER"), accept(), None, NO_RELATIONSHIP);
    t.finish();
}

#[test]
fn an_unrelated_referrer_may_still_cancel_its_own_referral() {
    let mut t = Cases::new();
    // R: GP referred to COUNCIL, but GP holds no ground for R.
    assert!(!t.world.gov.related(R, &code("GP"), t.world.now));
    let referral = Some(AggregateState::Referral(Referral {
        details: new_referral("GP", "COUNCIL-REABLE"),
        status: ReferralStatus::Submitted,
        resume_to: None,
    }));
    let cancel = referral_command(
        R,
        ReferralCommand::Cancel {
            reason: text("sent by mistake"),
        },
    );
    t.check(id("GP"), cancel, referral.clone(), OK);
    t.check(
        id("GP"),
        referral_command(R, ReferralCommand::Accept),
        referral,
        NO_RELATIONSHIP,
    );
    t.finish();
}

#[test]
fn assessment_care_plan_consent_meeting_and_feedback_commands() {
    let unknown = Uuid::from_u128(0x999);
    let mut t = Cases::new();
    t.check(id("COUNCIL"), request_assessment(P), None, OK);
    t.check(id("OTHER"), request_assessment(P), None, NO_RELATIONSHIP);
    t.check(id("COUNCIL"), contribute(P, "COUNCIL"), None, OK);
    t.check(
        id("GP"),
        contribute(P, "COUNCIL"),
        None,
        Err("NOT_THE_CONTRIBUTOR"),
    );
    t.check(id("OTHER"), contribute(P, "OTHER"), None, NO_RELATIONSHIP);
    // The plan: care-team members only, not every related organisation.
    t.check(id("HOSP"), agree_plan(P), None, OK);
    t.check(id("GP"), agree_plan(P), None, NOT_ON_TEAM);
    t.check(id("OTHER"), agree_plan(P), None, NO_RELATIONSHIP);
    t.check(id("GP"), agree_plan(R), None, NO_RELATIONSHIP);
    // Meetings, feedback: a legitimate relationship with this person.
    t.check(id("HOSP"), record_meeting(P), None, OK);
    t.check(id("CARE"), record_meeting(P), None, NO_RELATIONSHIP);
    t.check(id("COUNCIL"), record_feedback(P), None, OK);
    t.check(id("OTHER"), record_feedback(P), None, NO_RELATIONSHIP);
    t.check(id("HOSP"), record_feedback(R), None, NO_RELATIONSHIP);
    // A permit consent: a related organisation.
    t.check(id("HOSP"), record_permit(P), None, OK);
    t.check(id("OTHER"), record_permit(P), None, NO_RELATIONSHIP);
    t.check(id("GP"), record_permit(unknown), None, NO_RELATIONSHIP);
    t.finish();
}

#[test]
fn objections_belong_to_the_person() {
    let governance = with_roles("GOV", &[Role::Governance]);
    let objection_to = |partners: &[&str]| Command::Consent {
        person_id: P,
        consent_id: agg(5),
        command: ConsentCommand::Record {
            terms: objection(partners, &[]),
        },
    };
    let withdraw = Command::Consent {
        person_id: P,
        consent_id: agg(5),
        command: ConsentCommand::Withdraw {
            reason: text("changed their mind"),
        },
    };
    let state = |partners: &[&str]| {
        Some(AggregateState::Consent(
            carewoven_domain::consent::Consent {
                terms: objection(partners, &[]),
                withdrawn: false,
            },
        ))
    };
    let mut t = Cases::new();
    // Recorded by the registered GP on the person's behalf, or the governance role.
    t.check(id("GP"), objection_to(&["OTHER"]), None, OK);
    t.check(governance.clone(), objection_to(&["HOSP"]), None, OK);
    // Not by another related organisation, nor an unrelated one.
    t.check(
        id("HOSP"),
        objection_to(&["OTHER"]),
        None,
        Err("OBJECTION_NOT_YOURS"),
    );
    t.check(id("OTHER"), objection_to(&["HOSP"]), None, NO_RELATIONSHIP);
    // Withdrawn: never by the organisation it names, nor by another related one.
    t.check(
        id("HOSP"),
        withdraw.clone(),
        state(&["HOSP"]),
        Err("OBJECTION_NOT_YOURS"),
    );
    t.check(
        id("COUNCIL"),
        withdraw.clone(),
        state(&["HOSP"]),
        Err("OBJECTION_NOT_YOURS"),
    );
    t.check(
        id("OTHER"),
        withdraw.clone(),
        state(&["HOSP"]),
        NO_RELATIONSHIP,
    );
    t.check(id("GP"), withdraw.clone(), state(&["HOSP"]), OK);
    t.check(
        id("GP"),
        withdraw.clone(),
        state(&["GP", "HOSP"]),
        Err("OBJECTION_NAMES_YOU"),
    );
    t.check(governance.clone(), withdraw, state(&["GP"]), OK);
    // The governance role does not act for care.
    t.check(
        governance.clone(),
        record_permit(P),
        None,
        Err("NOT_A_CARE_ROLE"),
    );
    t.check(
        governance.clone(),
        agree_plan(P),
        None,
        Err("NOT_A_CARE_ROLE"),
    );
    t.check(governance, correct_person(P), None, OK);
    t.finish();
}

#[test]
fn an_objected_to_organisation_may_not_write_to_the_record() {
    let mut t = Cases::new();
    t.world
        .record(P, agg(50), consent_recorded(objection(&["HOSP"], &[])));
    // HOSP manages the episode and is on the care team, but the person objected to it:
    // it is told what an unrelated organisation is told; the audit keeps the cause.
    t.check(id("HOSP"), agree_plan(P), None, NO_RELATIONSHIP);
    t.check(id("HOSP"), record_meeting(P), None, NO_RELATIONSHIP);
    t.check(id("HOSP"), add_member(P, "COUNCIL"), None, NO_RELATIONSHIP);
    let denial = t
        .world
        .gov
        .authorise(&id("HOSP"), &record_meeting(P), None, t.world.now)
        .expect_err("objected to");
    assert_eq!(denial.audit_reason(), "OBJECTION");
    // Others are unaffected.
    t.check(id("COUNCIL"), record_meeting(P), None, OK);
    t.finish();
}

#[test]
fn care_team_commands() {
    let name = |person, org| {
        team(
            person,
            CareTeamCommand::NameCoordinator {
                member: member(org, None),
            },
        )
    };
    let mut t = Cases::new();
    // R's team is empty: COUNCIL (receiving R's referral) may add itself; GP (the referrer,
    // with no ground) may not.
    t.check(id("COUNCIL"), add_member(R, "COUNCIL"), None, OK);
    t.check(id("COUNCIL"), add_member(R, "HOSP"), None, NOT_ON_TEAM);
    t.check(id("GP"), add_member(R, "COUNCIL"), None, NO_RELATIONSHIP);
    t.check(id("OTHER"), add_member(R, "OTHER"), None, NO_RELATIONSHIP);
    t.check(id("GP"), add_member(Q, "GP"), None, NO_RELATIONSHIP);
    t.check(id("GP"), remove_member(R, "GP"), None, NO_RELATIONSHIP);
    t.check(id("GP"), name(R, "GP"), None, NO_RELATIONSHIP);
    // P's team has HOSP: members add anyone...
    t.check(id("HOSP"), add_member(P, "COUNCIL"), None, OK);
    t.check(id("HOSP"), add_member(P, "OTHER"), None, OK);
    // ...and the registered GP and a receiving service may always add themselves, so
    // nobody can lock them out by joining first...
    t.check(id("GP"), add_member(P, "GP"), None, OK);
    t.check(id("COUNCIL"), add_member(P, "COUNCIL"), None, OK);
    // ...but not others.
    t.check(id("COUNCIL"), add_member(P, "CARE"), None, NOT_ON_TEAM);
    t.check(id("OTHER"), add_member(P, "OTHER"), None, NO_RELATIONSHIP);
    t.check(id("HOSP"), remove_member(P, "HOSP"), None, OK);
    t.check(id("GP"), remove_member(P, "HOSP"), None, NOT_ON_TEAM);
    t.check(id("HOSP"), name(P, "HOSP"), None, OK);
    t.check(id("GP"), name(P, "HOSP"), None, NOT_ON_TEAM);
    t.finish();
}

#[test]
fn the_managing_hospital_can_join_a_team_squatted_by_another() {
    let mut w = World::standard();
    w.record(P, P, registered(1));
    w.record(P, agg(1), submitted("GP", "COUNCIL-REABLE"));
    // COUNCIL, receiving the referral, joins first and alone.
    w.record(P, P, added("COUNCIL", None));
    w.record(P, agg(2), admitted("HOSP-WARD"));
    let mut t = Cases {
        world: w,
        failures: Vec::new(),
        count: 0,
    };
    t.check(id("HOSP"), add_member(P, "HOSP"), None, OK);
    t.finish();
}

#[test]
fn discharge_commands() {
    let ready = || {
        episode(
            P,
            DischargeCommand::MarkDischargeReady {
                discharge_ready_date: today(),
            },
        )
    };
    let close = || episode(P, DischargeCommand::Close);
    let discharged = || episode_state(None);
    let handed_over = || episode_state(Some("COUNCIL"));
    let mut t = Cases::new();
    // Admission: at a site registered to the caller (it starts the hospital-stay ground).
    t.check(id("HOSP"), admit(Q, "HOSP-WARD"), None, OK);
    t.check(
        id("COUNCIL"),
        admit(P, "HOSP-WARD"),
        None,
        NO_ROLE_IN_DISCHARGE,
    );
    t.check(id("COUNCIL"), admit(Q, "HOSP-WARD"), None, NO_RELATIONSHIP);
    t.check(id("HOSP"), admit(P, "NOWHERE"), None, NO_ROLE_IN_DISCHARGE);
    t.check(id("HOSP"), admit(P, "HOSP"), None, NO_ROLE_IN_DISCHARGE);
    // Other steps: the organisation owning the episode's site.
    t.check(id("HOSP"), ready(), discharged(), OK);
    t.check(id("COUNCIL"), ready(), discharged(), NO_ROLE_IN_DISCHARGE);
    t.check(id("OTHER"), close(), discharged(), NO_RELATIONSHIP);
    t.check(id("HOSP"), close(), handed_over(), OK);
    t.check(id("COUNCIL"), close(), handed_over(), NO_ROLE_IN_DISCHARGE);
    // Handover: only the organisation owning the agreed service, for itself.
    t.check(
        id("COUNCIL"),
        accept_handover(P, "COUNCIL"),
        discharged(),
        OK,
    );
    t.check(
        id("HOSP"),
        accept_handover(P, "COUNCIL"),
        discharged(),
        NO_ROLE_IN_DISCHARGE,
    );
    t.check(
        id("HOSP"),
        accept_handover(P, "HOSP"),
        discharged(),
        NO_ROLE_IN_DISCHARGE,
    );
    t.check(
        id("COUNCIL"),
        accept_handover(P, "CARE"),
        discharged(),
        NO_ROLE_IN_DISCHARGE,
    );
    // Related (registered GP) but not the agreed provider: refused, so the provider is not
    // locked out.
    t.check(
        id("GP"),
        accept_handover(P, "GP"),
        discharged(),
        NO_ROLE_IN_DISCHARGE,
    );
    // Pathway 0 (no service agreed): the registered GP or a care-team member takes it.
    let home = || {
        episode_state(None).map(|s| match s {
            AggregateState::Discharge(mut e) => {
                e.service = None;
                AggregateState::Discharge(e)
            }
            other => other,
        })
    };
    t.check(id("GP"), accept_handover(P, "GP"), home(), OK);
    t.check(id("HOSP"), accept_handover(P, "HOSP"), home(), OK);
    t.check(
        id("COUNCIL"),
        accept_handover(P, "COUNCIL"),
        home(),
        NO_ROLE_IN_DISCHARGE,
    );
    // Home assessment: the managing organisation or the one that accepted handover.
    t.check(id("HOSP"), complete_home_assessment(P), handed_over(), OK);
    t.check(
        id("COUNCIL"),
        complete_home_assessment(P),
        handed_over(),
        OK,
    );
    t.check(
        id("CARE"),
        complete_home_assessment(P),
        handed_over(),
        NO_RELATIONSHIP,
    );
    t.check(
        id("COUNCIL"),
        complete_home_assessment(P),
        discharged(),
        NO_ROLE_IN_DISCHARGE,
    );
    // An episode that does not exist is left to `decide`, for a related caller only.
    t.check(id("HOSP"), close(), None, OK);
    t.check(id("OTHER"), close(), None, NO_RELATIONSHIP);
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// Disclosure (partner feeds)
// ---------------------------------------------------------------------------------------------

use Disclosure::{Full, IdentifiersOnly};

#[test]
fn delivery_follows_the_relationship_from_start_to_end() {
    let mut w = World::standard();
    // Before any relationship: nothing.
    assert_eq!(w.deliver("COUNCIL", P, P, registered(1)), None);
    assert_eq!(w.deliver("COUNCIL", P, P, added("HOSP", None)), None);
    assert_eq!(w.deliver("COUNCIL", P, P, plan_agreed()), None);
    // The event that starts it is delivered, and what follows.
    assert_eq!(
        w.deliver("COUNCIL", P, P, added("COUNCIL", None)),
        Some(Full)
    );
    assert_eq!(w.deliver("COUNCIL", P, P, plan_revised(2)), Some(Full));
    assert_eq!(w.deliver("COUNCIL", P, P, corrected()), Some(Full));
    // The event that ends it is delivered (was_related), nothing after it.
    assert_eq!(
        w.deliver("COUNCIL", P, P, removed("COUNCIL", None)),
        Some(Full)
    );
    assert!(!w.gov.related(P, &code("COUNCIL"), w.now));
    assert_eq!(w.deliver("COUNCIL", P, P, plan_revised(3)), None);
    assert_eq!(w.deliver("COUNCIL", P, P, coordinator("HOSP")), None);
    // Meanwhile HOSP, still on the team, is sent everything.
    assert_eq!(w.deliver("HOSP", P, P, plan_revised(4)), Some(Full));
    // Another person's events never reach a partner related only to P.
    w.record(P, P, added("COUNCIL", None));
    assert_eq!(w.deliver("COUNCIL", Q, Q, registered(2)), None);
    assert_eq!(w.deliver("COUNCIL", Q, Q, added("HOSP", None)), None);
}

#[test]
fn delivery_starts_with_the_referral_and_ends_with_its_rejection() {
    let mut w = World::standard();
    let r = agg(1);
    assert_eq!(
        w.deliver("COUNCIL", P, r, submitted("GP", "COUNCIL-REABLE")),
        Some(Full)
    );
    // The referrer is related from the same event; a third party is not.
    let last = w.record(P, r, referral(ReferralEvent::Received));
    assert_eq!(
        w.gov.disclosure(&last, &code("GP"), true, noon(today())),
        Some(Full)
    );
    assert_eq!(
        w.gov.disclosure(&last, &code("CARE"), false, noon(today())),
        None
    );
    assert_eq!(w.deliver("COUNCIL", P, r, rejected()), Some(Full));
    assert_eq!(w.deliver("COUNCIL", P, P, corrected()), None);
    assert_eq!(w.deliver("GP", P, P, corrected()), None);
}

/// A consent record and what it does to a partner on the care team: whether the consent
/// event and the events after it are withheld.
#[test]
fn an_objection_stops_delivery_and_its_withdrawal_restores_it() {
    let cases: Vec<(&str, ConsentTerms, bool)> = vec![
        (
            "objection to the partner for direct care",
            objection(&["COUNCIL"], &[]),
            true,
        ),
        (
            "objection naming several partners",
            objection(&["CARE", "COUNCIL"], &[]),
            true,
        ),
        (
            "objection for care coordination",
            ConsentTerms {
                purpose: Purpose::CareCoordination,
                ..objection(&["COUNCIL"], &[])
            },
            true,
        ),
        (
            "objection that ends today still applies today",
            ConsentTerms {
                valid_until: Some(today()),
                ..objection(&["COUNCIL"], &[])
            },
            true,
        ),
        (
            "objection starting today applies today",
            ConsentTerms {
                valid_from: today(),
                ..objection(&["COUNCIL"], &[])
            },
            true,
        ),
        (
            "objection to other partners",
            objection(&["CARE", "GP"], &[]),
            false,
        ),
        ("a permit is no objection", permit(&["COUNCIL"]), false),
        (
            "objection to research only",
            ConsentTerms {
                purpose: Purpose::Research,
                ..objection(&["COUNCIL"], &[])
            },
            false,
        ),
        (
            "objection to planning only",
            ConsentTerms {
                purpose: Purpose::Planning,
                ..objection(&["COUNCIL"], &[])
            },
            false,
        ),
        (
            "objection not yet in force",
            ConsentTerms {
                valid_from: day("2026-06-02"),
                ..objection(&["COUNCIL"], &[])
            },
            false,
        ),
        (
            "objection that has expired",
            ConsentTerms {
                valid_until: Some(day("2026-05-31")),
                ..objection(&["COUNCIL"], &[])
            },
            false,
        ),
    ];
    let council = identity("COUNCIL");
    for (name, terms, blocks) in cases {
        let mut w = World::standard();
        let consent = agg(5);
        w.record(P, P, added("HOSP", None));
        w.record(P, P, added("COUNCIL", None));
        let recorded = w.deliver("COUNCIL", P, consent, consent_recorded(terms));
        let next = w.deliver("COUNCIL", P, P, plan_agreed());
        let read = w
            .gov
            .may_read(&council, P, noon(today()))
            .map_err(|d| d.audit_reason());
        if blocks {
            assert_eq!(recorded, None, "{name}: the consent event itself");
            assert_eq!(next, None, "{name}: the event after it");
            assert_eq!(read, Err("OBJECTION"), "{name}: reading (audited cause)");
            // The objection is to COUNCIL only: HOSP still gets everything.
            assert_eq!(
                w.deliver("HOSP", P, P, plan_revised(2)),
                Some(Full),
                "{name}"
            );
            // Still related: the objection stops sharing, not the relationship.
            assert!(w.gov.related(P, &code("COUNCIL"), w.now), "{name}");
        } else {
            assert_eq!(
                recorded,
                Some(IdentifiersOnly),
                "{name}: the consent event itself"
            );
            assert_eq!(next, Some(Full), "{name}: the event after it");
            assert_eq!(read, Ok(()), "{name}: reading");
        }
        // Withdrawal (of an objection or not) leaves delivery on.
        assert_eq!(
            w.deliver("COUNCIL", P, consent, consent_withdrawn()),
            Some(IdentifiersOnly),
            "{name}: the withdrawal"
        );
        assert_eq!(
            w.deliver("COUNCIL", P, P, plan_revised(3)),
            Some(Full),
            "{name}: after withdrawal"
        );
        assert_eq!(
            w.gov.may_read(&council, P, noon(today())),
            Ok(()),
            "{name}: reading after withdrawal"
        );
    }
}

#[test]
fn one_withdrawal_does_not_lift_another_objection() {
    let mut w = World::standard();
    w.record(P, P, added("COUNCIL", None));
    w.record(P, agg(5), consent_recorded(objection(&["COUNCIL"], &[])));
    w.record(
        P,
        agg(6),
        consent_recorded(objection(&["COUNCIL"], &[DataClass::CarePlan])),
    );
    assert_eq!(w.deliver("COUNCIL", P, agg(6), consent_withdrawn()), None);
    assert_eq!(w.deliver("COUNCIL", P, P, plan_agreed()), None);
    assert_eq!(
        w.deliver("COUNCIL", P, agg(5), consent_withdrawn()),
        Some(IdentifiersOnly)
    );
    assert_eq!(w.deliver("COUNCIL", P, P, plan_revised(2)), Some(Full));
}

#[test]
fn an_objection_limited_to_data_classes_withholds_only_those() {
    let mut w = World::standard();
    w.record(P, P, added("COUNCIL", None));
    let terms = objection(&["COUNCIL"], &[DataClass::CarePlan, DataClass::Meetings]);
    // Consent events are covered by any objection, including this one.
    assert_eq!(
        w.deliver("COUNCIL", P, agg(5), consent_recorded(terms)),
        None
    );
    assert_eq!(w.deliver("COUNCIL", P, P, plan_agreed()), None);
    assert_eq!(w.deliver("COUNCIL", P, agg(6), meeting()), None);
    assert_eq!(
        w.deliver("COUNCIL", P, P, coordinator("COUNCIL")),
        Some(Full)
    );
    assert_eq!(w.deliver("COUNCIL", P, P, corrected()), Some(Full));
    assert_eq!(
        w.deliver("COUNCIL", P, agg(2), admitted("HOSP-WARD")),
        Some(Full)
    );
    assert_eq!(w.deliver("COUNCIL", P, agg(7), feedback()), Some(Full));
    // The withdrawal is applied before it is delivered: nothing objects to it any more.
    assert_eq!(
        w.deliver("COUNCIL", P, agg(5), consent_withdrawn()),
        Some(IdentifiersOnly)
    );
    assert_eq!(w.deliver("COUNCIL", P, P, plan_revised(2)), Some(Full));
}

/// COUNCIL on P's care team, with only the agreement the test records.
fn partner_world() -> World {
    let mut w = World::registry();
    w.record(P, P, added("COUNCIL", None));
    w
}

#[test]
fn a_lapsed_agreement_suspends_delivery() {
    let mut w = partner_world();
    w.agree(
        "COUNCIL",
        "DSA-1",
        all_classes(),
        "2026-01-01",
        "2026-07-01",
    );
    let event = w.record(P, P, plan_agreed());
    let council = code("COUNCIL");
    let on = |d: &str| w.gov.disclosure(&event, &council, true, noon(day(d)));
    assert_eq!(on("2026-06-01"), Some(Full));
    assert_eq!(on("2026-06-30"), Some(Full), "the last day in force");
    assert_eq!(on("2026-07-01"), None, "the expiry day");
    assert_eq!(on("2026-12-01"), None);
    let read = |d: &str| {
        w.gov
            .may_read(&identity("COUNCIL"), P, noon(day(d)))
            .map_err(|d| d.reason)
    };
    assert_eq!(read("2026-06-30"), Ok(()));
    assert_eq!(read("2026-07-01"), Err("NO_AGREEMENT_IN_FORCE"));
}

#[test]
fn an_agreement_does_not_reach_back_before_it_started() {
    let mut w = partner_world();
    w.agree(
        "COUNCIL",
        "DSA-1",
        all_classes(),
        "2026-06-15",
        "2027-01-01",
    );
    let council = code("COUNCIL");
    // Recorded on 1 June, before the agreement: never, even once it is in force.
    let before = w.record(P, P, plan_agreed());
    for d in ["2026-06-01", "2026-06-14", "2026-06-15", "2026-06-20"] {
        assert_eq!(
            w.gov.disclosure(&before, &council, true, noon(day(d))),
            None,
            "{d}"
        );
    }
    // Recorded on its first day and after: delivered.
    for (recorded, expected) in [
        ("2026-06-15T00:00:00Z", Some(Full)),
        ("2026-06-16T10:00:00Z", Some(Full)),
    ] {
        w.now = at(recorded);
        let event = w.record(P, P, plan_revised(2));
        assert_eq!(
            w.gov
                .disclosure(&event, &council, true, noon(day("2026-06-20"))),
            expected,
            "{recorded}"
        );
    }
}

#[test]
fn an_ended_agreement_stops_delivery_and_reading() {
    let mut w = partner_world();
    w.agree(
        "COUNCIL",
        "DSA-1",
        all_classes(),
        "2026-01-01",
        "2027-01-01",
    );
    let council = identity("COUNCIL");
    assert_eq!(w.deliver("COUNCIL", P, P, plan_agreed()), Some(Full));
    assert_eq!(w.gov.may_read(&council, P, noon(today())), Ok(()));
    w.end_agreement("COUNCIL", "DSA-1");
    assert_eq!(w.deliver("COUNCIL", P, P, plan_revised(2)), None);
    assert_eq!(
        w.gov
            .may_read(&council, P, noon(today()))
            .map_err(|d| d.reason),
        Err("NO_AGREEMENT_IN_FORCE")
    );
    assert!(
        w.gov
            .agreement_in_force(&code("COUNCIL"), today())
            .is_none()
    );
}

#[test]
fn only_agreements_for_individual_care_count() {
    let cases: Vec<(&str, Vec<Purpose>, Option<Disclosure>)> = vec![
        ("direct care", vec![Purpose::DirectCare], Some(Full)),
        (
            "care coordination",
            vec![Purpose::CareCoordination],
            Some(Full),
        ),
        (
            "research and direct care",
            vec![Purpose::Research, Purpose::DirectCare],
            Some(Full),
        ),
        ("research", vec![Purpose::Research], None),
        (
            "research and planning",
            vec![Purpose::Research, Purpose::Planning],
            None,
        ),
    ];
    for (name, purposes, expected) in cases {
        let mut w = partner_world();
        w.agree_for(
            "COUNCIL",
            "DSA-1",
            purposes,
            all_classes(),
            "2026-01-01",
            "2027-01-01",
        );
        assert_eq!(
            w.deliver("COUNCIL", P, P, plan_agreed()),
            expected,
            "{name}"
        );
        let read = w
            .gov
            .may_read(&identity("COUNCIL"), P, noon(today()))
            .map_err(|d| d.reason);
        let expected_read = if expected.is_some() {
            Ok(())
        } else {
            Err("NO_AGREEMENT_IN_FORCE")
        };
        assert_eq!(read, expected_read, "{name}");
    }
}

#[test]
fn data_classes_outside_the_agreement_are_sent_as_identifiers_only() {
    let events = || -> Vec<(u128, Event, Option<DataClass>)> {
        vec![
            (0, corrected(), Some(DataClass::Demographics)),
            (
                1,
                referral(ReferralEvent::Received),
                Some(DataClass::Referrals),
            ),
            (4, contribution(), Some(DataClass::Assessments)),
            (0, plan_agreed(), Some(DataClass::CarePlan)),
            (0, coordinator("COUNCIL"), Some(DataClass::CareTeam)),
            (2, date_set(), Some(DataClass::Discharge)),
            (6, meeting(), Some(DataClass::Meetings)),
            (7, feedback(), Some(DataClass::Feedback)),
            (5, consent_recorded(permit(&["GP"])), None),
            (5, consent_withdrawn(), None),
        ]
    };
    let agreements: Vec<Vec<DataClass>> = vec![
        vec![DataClass::Referrals, DataClass::CareTeam],
        vec![DataClass::Demographics],
        vec![
            DataClass::Discharge,
            DataClass::Meetings,
            DataClass::Feedback,
            DataClass::Assessments,
        ],
        all_classes(),
    ];
    for classes in agreements {
        let mut w = partner_world();
        w.agree(
            "COUNCIL",
            "DSA-1",
            classes.clone(),
            "2026-01-01",
            "2027-01-01",
        );
        for (aggregate, event, class) in events() {
            let name = event.name();
            let aggregate = if aggregate == 0 { P } else { agg(aggregate) };
            let expected = match class {
                Some(class) if classes.contains(&class) => Full,
                _ => IdentifiersOnly,
            };
            assert_eq!(
                w.deliver("COUNCIL", P, aggregate, event),
                Some(expected),
                "{name} under {classes:?}"
            );
        }
    }
}

#[test]
fn registry_events_are_never_disclosed() {
    let mut w = World::standard();
    w.record(P, P, added("COUNCIL", None));
    let events = vec![
        w.registry_event(
            "COUNCIL",
            OrganisationEvent::ServiceAdded {
                service: code("COUNCIL-OT"),
            },
        ),
        w.registry_event(
            "COUNCIL",
            OrganisationEvent::AgreementRecorded {
                agreement: SharingAgreement {
                    reference: code("DSA-2"),
                    purposes: vec![Purpose::DirectCare],
                    data_classes: all_classes(),
                    valid_from: today(),
                    expires_on: day("2027-06-01"),
                },
            },
        ),
    ];
    w.register("NEWCO", &["NEWCO-SVC"]);
    for event in &events {
        for partner in ["COUNCIL", "HOSP", "NEWCO"] {
            for was_related in [false, true] {
                assert_eq!(
                    w.gov
                        .disclosure(event, &code(partner), was_related, noon(today())),
                    None,
                    "{} to {partner}",
                    event.event.name()
                );
            }
        }
    }
}

// Suspected bugs in lib.rs: each test states the behaviour the rules call for.

#[test]
fn overlapping_agreements_disclose_every_class_either_covers() {
    // Terms change by recording a new agreement (a new reference); until the old one is
    // ended both are in force, and the wider one must not be ignored.
    let mut w = partner_world();
    w.agree(
        "COUNCIL",
        "DSA-1",
        vec![DataClass::CareTeam],
        "2026-01-01",
        "2027-01-01",
    );
    w.agree(
        "COUNCIL",
        "DSA-2",
        vec![DataClass::CareTeam, DataClass::CarePlan],
        "2026-05-01",
        "2027-05-01",
    );
    assert_eq!(w.deliver("COUNCIL", P, P, plan_agreed()), Some(Full));
}

#[test]
fn a_renewed_agreement_still_covers_events_recorded_under_the_one_it_renews() {
    let mut w = partner_world();
    w.agree(
        "COUNCIL",
        "DSA-2026",
        all_classes(),
        "2026-01-01",
        "2026-07-01",
    );
    w.agree(
        "COUNCIL",
        "DSA-2027",
        all_classes(),
        "2026-07-01",
        "2027-07-01",
    );
    w.now = at("2026-06-30T22:00:00Z");
    let event = w.record(P, P, plan_agreed());
    // Delivered late (the partner's consumer was down overnight): coverage never lapsed.
    assert_eq!(
        w.gov
            .disclosure(&event, &code("COUNCIL"), true, noon(day("2026-07-01"))),
        Some(Full)
    );
}

#[test]
fn the_no_reach_back_check_uses_the_uk_day() {
    let mut w = partner_world();
    w.agree(
        "COUNCIL",
        "DSA-1",
        all_classes(),
        "2026-07-01",
        "2027-07-01",
    );
    // 23:30 UTC on 30 June is 00:30 BST on 1 July, the agreement's first day.
    w.now = at("2026-06-30T23:30:00Z");
    let event = w.record(P, P, plan_agreed());
    let uk_day = carewoven_domain::values::uk_date(event.meta.recorded_at);
    assert_eq!(uk_day, day("2026-07-01"));
    assert_eq!(
        w.gov
            .disclosure(&event, &code("COUNCIL"), true, noon(uk_day)),
        Some(Full)
    );
}

// ---------------------------------------------------------------------------------------------
// Reading a record
// ---------------------------------------------------------------------------------------------

#[test]
fn reading_needs_a_relationship_no_objection_and_an_agreement() {
    let mut w = World::registry();
    for org in ["GP", "HOSP", "OTHER"] {
        w.agree(org, "DSA-1", all_classes(), "2026-01-01", "2027-01-01");
    }
    // COUNCIL: related, no agreement. GP: related (registered GP), agreement. HOSP:
    // related, objected to (told what an unrelated organisation is told). OTHER: agreement,
    // unrelated. CARE: nothing.
    w.record(P, P, registered_with_gp(1, "GP"));
    w.record(P, agg(1), submitted("GP", "COUNCIL-REABLE"));
    w.record(P, P, added("HOSP", None));
    w.record(P, agg(5), consent_recorded(objection(&["HOSP"], &[])));
    let cases = [
        ("GP", P, Ok(())),
        ("HOSP", P, Err("NO_LEGITIMATE_RELATIONSHIP")),
        ("COUNCIL", P, Err("NO_AGREEMENT_IN_FORCE")),
        ("OTHER", P, Err("NO_LEGITIMATE_RELATIONSHIP")),
        ("CARE", P, Err("NO_LEGITIMATE_RELATIONSHIP")),
        ("UNREG", P, Err("NO_LEGITIMATE_RELATIONSHIP")),
        ("GP", Q, Err("NO_LEGITIMATE_RELATIONSHIP")),
    ];
    for (org, person, expected) in cases {
        let got = w.gov.may_read(&identity(org), person, noon(today()));
        assert_eq!(got.clone().map_err(|d| d.reason), expected, "{org}");
        if let Err(denial) = got {
            assert!(denial.message.contains(org), "{}", denial.message);
            assert!(!denial.message.contains(&person.to_string()));
        }
    }
    // An objection to GP starting tomorrow lets GP read today, not tomorrow.
    w.record(
        P,
        agg(6),
        consent_recorded(ConsentTerms {
            valid_from: day("2026-06-02"),
            ..objection(&["GP"], &[])
        }),
    );
    let gp = identity("GP");
    assert_eq!(w.gov.may_read(&gp, P, noon(today())), Ok(()));
    assert_eq!(
        w.gov
            .may_read(&gp, P, noon(day("2026-06-02")))
            .map_err(|d| d.audit_reason()),
        Err("OBJECTION")
    );
    // COUNCIL's relationship ends with the referral.
    let council = identity("COUNCIL");
    w.record(P, agg(1), cancelled());
    assert_eq!(
        w.gov
            .may_read(&council, P, noon(today()))
            .map_err(|d| d.reason),
        Err("NO_LEGITIMATE_RELATIONSHIP")
    );
}

// ---------------------------------------------------------------------------------------------
// Property: care-team membership
// ---------------------------------------------------------------------------------------------

const TEAM_ORGS: [&str; 3] = ["GP", "HOSP", "COUNCIL"];
const PRACTITIONERS: [Option<&str>; 3] = [None, Some("dr-1"), Some("dr-2")];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For any sequence of additions and removals the care team accepts, an organisation is
    /// related exactly when it has a current member, and a feed sends it exactly the events
    /// from the one that made it a member to the one that removed its last member.
    #[test]
    fn related_is_having_a_current_care_team_member(
        ops in prop::collection::vec((any::<bool>(), 0..TEAM_ORGS.len(), 0..PRACTITIONERS.len()), 0..60)
    ) {
        let mut w = World::standard();
        let mut members: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (add, o, p) in ops {
            let (org, practitioner) = (TEAM_ORGS[o], PRACTITIONERS[p]);
            // Only what the care team itself accepts: no double adds, no removal of a
            // non-member.
            let event = match (add, members.contains(&(o, p))) {
                (true, false) => {
                    members.insert((o, p));
                    added(org, practitioner)
                }
                (false, true) => {
                    members.remove(&(o, p));
                    removed(org, practitioner)
                }
                _ => continue,
            };
            let before: Vec<bool> = TEAM_ORGS.iter().map(|t| w.gov.related(P, &code(t), w.now)).collect();
            let recorded = w.record(P, P, event);
            let mut expected_set = BTreeSet::new();
            for (i, team_org) in TEAM_ORGS.iter().enumerate() {
                let expected = members.iter().any(|(m, _)| *m == i);
                prop_assert_eq!(w.gov.related(P, &code(team_org), w.now), expected, "{}", team_org);
                if expected {
                    expected_set.insert((*team_org).to_owned());
                }
                let sent = w.gov.disclosure(&recorded, &code(team_org), before[i], noon(today()));
                prop_assert_eq!(sent.is_some(), before[i] || expected, "{}", team_org);
            }
            prop_assert_eq!(w.related(P), expected_set);
        }
    }
}

/// `relevant` names only real event types, and every type `apply` acts on.
#[test]
fn relevant_event_types_are_real_and_cover_the_fold() {
    for t in super::GOVERNANCE_EVENT_TYPES {
        assert!(carewoven_domain::EVENT_TYPES.contains(&t), "{t}");
    }
    for t in [
        "referral_submitted",
        "care_team_member_removed",
        "consent_recorded",
        "person_admitted",
        "handover_accepted",
        "sharing_agreement_ended",
        "assessment_requested",
        "assessor_replaced",
        "assessment_completed",
        "assessment_cancelled",
    ] {
        assert!(Governance::relevant(t), "{t}");
    }
    for t in [
        "expected_discharge_date_set",
        "care_plan_revised",
        "meeting_recorded",
    ] {
        assert!(!Governance::relevant(t), "{t}");
    }
}

// ---------------------------------------------------------------------------------------------
// Grounds with time: the set period, the registered GP, emergency access
// ---------------------------------------------------------------------------------------------

#[test]
fn grounds_end_the_set_period_after_a_terminal_state() {
    let mut w = World::standard();
    w.record(P, P, registered(1));
    w.record(P, agg(1), submitted("GP", "COUNCIL-REABLE"));
    w.record(P, agg(2), admitted("HOSP-WARD"));
    w.record(
        P,
        agg(2),
        discharge(DischargeEvent::DischargeAgreed {
            service: code("CARE-HOME"),
            planned_for: day("2026-06-02"),
        }),
    );
    w.record(P, agg(1), referral(ReferralEvent::Completed));
    w.record(P, agg(2), discharge(DischargeEvent::Closed));
    let closed = w.now;
    let period = TimeDelta::days(DEFAULT_RELATIONSHIP_PERIOD_DAYS);
    for org in ["COUNCIL", "HOSP", "CARE"] {
        assert!(w.gov.related(P, &code(org), closed), "{org} at the end");
        assert!(
            w.gov
                .related(P, &code(org), closed + period - TimeDelta::seconds(1)),
            "{org} just before the period is over"
        );
        assert!(
            !w.gov.related(P, &code(org), closed + period),
            "{org} once it is over"
        );
    }
    assert_eq!(
        w.gov.grounds(P, &code("HOSP"), closed),
        BTreeSet::from([Ground::HospitalStay])
    );
    // The period is a deployment setting.
    let mut short = World {
        gov: Governance::with_settings(Settings {
            relationship_period: TimeDelta::days(1),
        }),
        sequence: 0,
        now: w.now,
    };
    for (org, service) in ORGS {
        short.register(org, &[service]);
    }
    short.record(P, agg(2), admitted("HOSP-WARD"));
    short.record(P, agg(2), discharge(DischargeEvent::Closed));
    assert!(
        !short
            .gov
            .related(P, &code("HOSP"), short.now + TimeDelta::days(1))
    );
}

#[test]
fn an_event_recorded_after_the_period_is_not_delivered() {
    let mut w = World::standard();
    w.record(P, P, registered(1));
    w.record(P, agg(2), admitted("HOSP-WARD"));
    w.record(P, agg(2), discharge(DischargeEvent::Closed));
    w.now += TimeDelta::days(DEFAULT_RELATIONSHIP_PERIOD_DAYS + 1);
    w.record(P, P, added("GP", None));
    // HOSP's ground lapsed before this event was recorded: nothing, and no backfill later.
    assert_eq!(w.deliver("HOSP", P, P, plan_agreed()), None);
    assert_eq!(w.deliver("GP", P, P, plan_revised(2)), Some(Full));
}

#[test]
fn the_registered_gp_holds_a_standing_ground_until_a_change_of_practice() {
    let mut w = World::standard();
    w.record(P, P, registered_with_gp(1, "GP"));
    assert_eq!(
        w.gov.grounds(P, &code("GP"), w.now),
        BTreeSet::from([Ground::RegisteredGp])
    );
    assert_eq!(w.gov.registered_gp(P), Some(code("GP")));
    w.record(
        P,
        P,
        Event::Person(PersonEvent::DetailsCorrected {
            correction: Correction {
                registered_gp: Some(code("OTHER")),
                ..Correction::default()
            },
            reason: text("moved practice"),
        }),
    );
    assert!(!w.gov.related(P, &code("GP"), w.now));
    assert!(w.gov.related(P, &code("OTHER"), w.now));
}

fn typed_world(types: &[(&str, OrganisationType)]) -> World {
    let mut w = World::standard();
    for (org, org_type) in types {
        w.registry_event(
            org,
            OrganisationEvent::Registered {
                code: code(org),
                profile: OrganisationProfile {
                    name: short("Typed"),
                    org_type: *org_type,
                },
                services: vec![code(&format!("{org}-SVC"))],
            },
        );
        w.agree(org, "DSA-1", all_classes(), "2026-01-01", "2027-01-01");
    }
    w
}

#[test]
fn emergency_access_is_for_direct_care_providers_and_expires() {
    let mut w = typed_world(&[
        ("TRUST", OrganisationType::NhsTrust),
        ("VOL", OrganisationType::Voluntary),
    ]);
    w.record(P, P, registered(1));
    let assert_cmd = |hours| {
        person_command(
            P,
            PersonCommand::AssertEmergencyAccess {
                reason: text("unconscious in A&E"),
                hours,
            },
        )
    };
    let person = Some(AggregateState::Person(carewoven_domain::person::Person {
        profile: profile(1),
        corrections: 0,
        proxies: Vec::new(),
        version: 1,
    }));
    assert_eq!(
        w.gov
            .authorise(&id("TRUST"), &assert_cmd(4), person.as_ref(), w.now),
        Ok(())
    );
    let refused = w
        .gov
        .authorise(&id("VOL"), &assert_cmd(4), person.as_ref(), w.now)
        .expect_err("not a direct-care provider");
    // VOL has no ground: the uniform answer, the real cause audited.
    assert_eq!(refused.reason, "NO_LEGITIMATE_RELATIONSHIP");
    assert_eq!(refused.audit_reason(), "NOT_A_DIRECT_CARE_PROVIDER");
    let asserted = w.now;
    w.record(
        P,
        P,
        Event::Person(PersonEvent::EmergencyAccessAsserted {
            organisation: code("TRUST"),
            reason: text("unconscious in A&E"),
            expires_at: asserted + TimeDelta::hours(4),
        }),
    );
    assert_eq!(
        w.gov.grounds(P, &code("TRUST"), asserted),
        BTreeSet::from([Ground::EmergencyAccess])
    );
    assert_eq!(w.gov.may_read(&id("TRUST"), P, asserted), Ok(()));
    assert!(
        w.gov
            .may_read(&id("TRUST"), P, asserted + TimeDelta::hours(4))
            .is_err()
    );
    assert_eq!(w.gov.emergency_accesses().len(), 1);
    assert_eq!(w.gov.emergency_accesses()[0].organisation, code("TRUST"));
    // Emergency access never becomes a standing place on the care team.
    assert_eq!(
        w.gov
            .authorise(&id("TRUST"), &add_member(P, "TRUST"), None, asserted)
            .map_err(|d| d.reason),
        Err("NOT_ON_CARE_TEAM")
    );
}

#[test]
fn referenced_organisations_and_services_must_be_registered() {
    let w = typed_world(&[("SURGERY", OrganisationType::GeneralPractice)]);
    let field = |c: &Command| match w.gov.check_references(c) {
        Ok(()) => None,
        Err(DomainError::Invalid { field, .. }) => Some(field),
        Err(e) => Some(format!("{e}")),
    };
    assert_eq!(field(&add_member(P, "HOSP")), None);
    assert_eq!(
        field(&add_member(P, "NOBODY")),
        Some("member.organisation".to_owned())
    );
    assert_eq!(field(&make(P, "GP", "COUNCIL-REABLE")), None);
    assert_eq!(
        field(&make(P, "GP", "NOBODY-SVC")),
        Some("to_service".to_owned())
    );
    // An organisation's code is not one of its services.
    assert_eq!(
        field(&make(P, "GP", "COUNCIL")),
        Some("to_service".to_owned())
    );
    let consent = Command::Consent {
        person_id: P,
        consent_id: agg(5),
        command: ConsentCommand::Record {
            terms: objection(&["HOSP", "NOBODY"], &[]),
        },
    };
    assert_eq!(field(&consent), Some("partners[1]".to_owned()));
    let mut record = meeting_record();
    record.attendees.push(code("NOBODY"));
    let meeting = Command::Meeting {
        person_id: P,
        meeting_id: agg(6),
        command: MeetingCommand::Record { meeting: record },
    };
    assert_eq!(field(&meeting), Some("attendees[1]".to_owned()));
    let register = |gp: &str| {
        person_command(
            P,
            PersonCommand::Register {
                person_id: P,
                profile: Profile {
                    registered_gp: Some(code(gp)),
                    ..profile(1)
                },
            },
        )
    };
    assert_eq!(field(&register("SURGERY")), None);
    // GP is registered, but as another type in this world.
    assert_eq!(field(&register("GP")), Some("registered_gp".to_owned()));
    assert_eq!(field(&register("NOBODY")), Some("registered_gp".to_owned()));
    // A service already owned by another organisation cannot be claimed again.
    let claim = org_command(OrganisationCommand::AddService {
        service: code("HOSP-WARD"),
    });
    assert!(matches!(
        w.gov.check_references(&claim),
        Err(DomainError::AlreadyExists { .. })
    ));
    let register_claiming = org_command(OrganisationCommand::Register {
        code: code("NEW"),
        profile: OrganisationProfile {
            name: short("New"),
            org_type: OrganisationType::Voluntary,
        },
        services: vec![code("NEW-SVC"), code("CARE-HOME")],
    });
    assert!(matches!(
        w.gov.check_references(&register_claiming),
        Err(DomainError::AlreadyExists { .. })
    ));
    assert_eq!(w.gov.check_references(&register_org()), Ok(()));
}

#[test]
fn a_read_withholds_classes_outside_the_agreement_and_under_a_partial_objection() {
    let mut w = World::registry();
    w.agree(
        "HOSP",
        "DSA-1",
        vec![
            DataClass::Demographics,
            DataClass::Discharge,
            DataClass::CarePlan,
        ],
        "2026-01-01",
        "2027-01-01",
    );
    w.record(P, P, added("HOSP", None));
    let scope = w.gov.read_scope(&id("HOSP"), P, w.now).expect("readable");
    assert!(scope.allows(DataClass::Discharge));
    assert!(!scope.allows(DataClass::Assessments));
    assert_eq!(
        scope.withheld.len(),
        8,
        "risk flags and tasks are withheld too"
    );
    w.record(
        P,
        agg(5),
        consent_recorded(objection(&["HOSP"], &[DataClass::CarePlan])),
    );
    let scope = w.gov.read_scope(&id("HOSP"), P, w.now).expect("readable");
    assert!(!scope.allows(DataClass::CarePlan));
    assert!(scope.allows(DataClass::Demographics));
}

#[test]
fn an_undecodable_event_closes_only_its_persons_record() {
    let mut w = World::standard();
    w.record(P, P, added("HOSP", None));
    w.record(Q, Q, added("HOSP", None));
    w.gov.mark_undecodable(P, 99);
    assert_eq!(w.gov.position(), 99);
    assert_eq!(
        w.gov.may_read(&id("HOSP"), P, w.now).map_err(|d| d.reason),
        Err("RECORD_UNREADABLE")
    );
    // An unrelated organisation learns nothing from it.
    assert_eq!(
        w.gov.may_read(&id("OTHER"), P, w.now).map_err(|d| d.reason),
        Err("NO_LEGITIMATE_RELATIONSHIP")
    );
    assert_eq!(
        w.gov
            .authorise(&id("HOSP"), &record_meeting(P), None, w.now)
            .map_err(|d| d.reason),
        Err("RECORD_UNREADABLE")
    );
    assert_eq!(
        w.gov
            .authorise(&id("OTHER"), &record_meeting(P), None, w.now)
            .map_err(|d| d.reason),
        Err("NO_LEGITIMATE_RELATIONSHIP")
    );
    let event = w.record(P, P, plan_agreed());
    assert_eq!(w.gov.disclosure(&event, &code("HOSP"), true, w.now), None);
    // Q is untouched.
    assert_eq!(w.gov.may_read(&id("HOSP"), Q, w.now), Ok(()));
}

#[test]
fn a_trace_needs_the_nhs_number_and_date_of_birth() {
    let mut w = World::standard();
    w.record(P, P, registered(1));
    let nhs = NhsNumber::synthetic(1);
    assert_eq!(w.gov.find_person(&nhs, day("1940-02-03")), Some(P));
    assert_eq!(w.gov.find_person(&nhs, day("1940-02-04")), None);
    assert_eq!(
        w.gov
            .find_person(&NhsNumber::synthetic(2), day("1940-02-03")),
        None
    );
    // A corrected number is found under the new number only.
    w.record(
        P,
        P,
        Event::Person(PersonEvent::DetailsCorrected {
            correction: Correction {
                nhs_number: Some(NhsNumber::synthetic(5)),
                ..Correction::default()
            },
            reason: text("typo"),
        }),
    );
    assert_eq!(w.gov.find_person(&nhs, day("1940-02-03")), None);
    assert_eq!(
        w.gov
            .find_person(&NhsNumber::synthetic(5), day("1940-02-03")),
        Some(P)
    );
}

#[test]
fn grounds_that_end_with_time_are_listed_once_in_order() {
    let mut w = World::standard();
    w.record(P, agg(2), admitted("HOSP-WARD"));
    w.record(P, agg(2), discharge(DischargeEvent::Closed));
    let closed = w.now;
    w.record(
        Q,
        Q,
        Event::Person(PersonEvent::EmergencyAccessAsserted {
            organisation: code("CARE"),
            reason: text("collapsed"),
            expires_at: closed + TimeDelta::hours(2),
        }),
    );
    let period = TimeDelta::days(DEFAULT_RELATIONSHIP_PERIOD_DAYS);
    let ended = w
        .gov
        .grounds_ended(closed, closed + period)
        .expect("in memory");
    assert_eq!(
        ended
            .iter()
            .map(|e| (e.person, e.organisation.as_str(), e.ground))
            .collect::<Vec<_>>(),
        vec![
            (Q, "CARE", Ground::EmergencyAccess),
            (P, "HOSP", Ground::HospitalStay),
        ]
    );
    assert_eq!(ended[1].ended_at, closed + period);
    // A window that stops before the end lists nothing; the next one lists it.
    assert!(
        w.gov
            .grounds_ended(closed, closed + TimeDelta::hours(1))
            .expect("in memory")
            .is_empty()
    );
    assert_eq!(
        w.gov
            .grounds_ended(closed + TimeDelta::hours(1), closed + TimeDelta::hours(3))
            .expect("in memory")
            .len(),
        1
    );
}
