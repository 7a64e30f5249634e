//! People's own access: a citizen identity as the person themself or as their proxy.
//!
//! The world is [`authorisation_world`]: P is registered with NHS number `synthetic(1)`,
//! R with `synthetic(2)`, Q with `synthetic(3)`. The carer is `synthetic(50)`; a stranger
//! `synthetic(60)` is nobody's person or proxy.

use carewoven_domain::person::{ProxyGrant, ProxyScope};

use super::*;

fn citizen(n: u32, level: IdentityLevel) -> Identity {
    Identity::citizen(
        Citizen {
            nhs_number: NhsNumber::synthetic(n),
            level,
            subject: format!("subject-{n}"),
        },
        code(&format!("CIT-{n}")),
    )
}

/// P themself, the carer, a stranger, and nobody (a citizen for a person who does not
/// exist).
fn person_p(level: IdentityLevel) -> Identity {
    citizen(1, level)
}

fn carer(level: IdentityLevel) -> Identity {
    citizen(50, level)
}

fn stranger() -> Identity {
    citizen(60, IdentityLevel::P9)
}

const NOBODY: Uuid = Uuid::from_u128(0xDEAD);

fn grant(scope: &[ProxyScope]) -> Event {
    Event::Person(PersonEvent::ProxyGranted {
        grant: ProxyGrant {
            carer_nhs_number: NhsNumber::synthetic(50),
            carer_name: short("Bea Example"),
            scope: scope.to_vec(),
        },
    })
}

fn revoked() -> Event {
    Event::Person(PersonEvent::ProxyRevoked {
        carer_nhs_number: NhsNumber::synthetic(50),
        reason: text("moved away"),
    })
}

fn decide(w: &World, who: &Identity, command: &Command) -> Result<(), &'static str> {
    w.gov
        .authorise(who, command, None, w.now)
        .map_err(|d| d.reason)
}

fn read(w: &World, who: &Identity, person: Uuid) -> Result<ReadScope, &'static str> {
    w.gov.read_scope(who, person, w.now).map_err(|d| d.reason)
}

fn correct(person: Uuid, correction: Correction) -> Command {
    person_command(
        person,
        PersonCommand::Correct {
            correction,
            reason: text("in my own words"),
            based_on_version: 1,
        },
    )
}

fn what_matters(person: Uuid) -> Command {
    correct(
        person,
        Correction {
            what_matters: Some(text("being home for the grandchildren")),
            communication_needs: Some(text("large print")),
            ..Correction::default()
        },
    )
}

fn objection_to(person: Uuid, org: &str) -> Command {
    Command::Consent {
        person_id: person,
        consent_id: agg(20),
        command: ConsentCommand::Record {
            terms: objection(&[org], &[]),
        },
    }
}

fn withdraw(person: Uuid) -> Command {
    Command::Consent {
        person_id: person,
        consent_id: agg(20),
        command: ConsentCommand::Withdraw {
            reason: text("changed my mind"),
        },
    }
}

fn feedback_as(person: Uuid, source: FeedbackSource) -> Command {
    Command::Feedback {
        person_id: person,
        feedback_id: agg(21),
        command: FeedbackCommand::Record {
            feedback: FeedbackRecord {
                source,
                ..feedback_record()
            },
        },
    }
}

fn grant_command(person: Uuid) -> Command {
    person_command(
        person,
        PersonCommand::GrantProxy {
            grant: ProxyGrant {
                carer_nhs_number: NhsNumber::synthetic(50),
                carer_name: short("Bea Example"),
                scope: vec![ProxyScope::ReadRecord],
            },
        },
    )
}

fn revoke_command(person: Uuid) -> Command {
    person_command(
        person,
        PersonCommand::RevokeProxy {
            carer_nhs_number: NhsNumber::synthetic(50),
            reason: text("moved away"),
        },
    )
}

#[test]
fn identity_levels_parse_print_and_order() {
    for level in [IdentityLevel::P0, IdentityLevel::P5, IdentityLevel::P9] {
        assert_eq!(IdentityLevel::parse(level.as_str()), Some(level));
    }
    assert_eq!(IdentityLevel::parse("P3"), None);
    assert_eq!(IdentityLevel::parse("p9"), None);
    assert!(IdentityLevel::P0 < IdentityLevel::P5 && IdentityLevel::P5 < IdentityLevel::P9);
}

#[test]
fn a_citizen_acts_as_the_reserved_organisation_under_a_pseudonym_and_debug_hides_them() {
    let who = person_p(IdentityLevel::P9);
    assert_eq!(who.organisation.as_str(), "CITIZEN");
    assert_eq!(who.user.as_ref().map(Code::as_str), Some("CIT-1"));
    assert!(who.roles.is_empty());
    let shown = format!("{who:?}");
    let nhs = NhsNumber::synthetic(1);
    assert!(!shown.contains(nhs.as_str()), "{shown}");
    assert!(!shown.contains("subject-1"), "{shown}");
}

#[test]
fn the_person_reads_their_whole_record_and_nobody_else_s() {
    let w = authorisation_world();
    let p9 = person_p(IdentityLevel::P9);
    // Their own: everything, with no agreement to limit it.
    assert_eq!(read(&w, &p9, P), Ok(ReadScope::default()));
    assert_eq!(
        w.gov.standing(p9.citizen.as_ref().expect("a citizen"), P),
        Some(Standing::Person)
    );
    assert_eq!(
        w.gov.own_person(p9.citizen.as_ref().expect("a citizen")),
        Some(P)
    );
    // Another person's, and a person who does not exist: the same answer.
    assert_eq!(read(&w, &p9, Q), Err("NO_LEGITIMATE_RELATIONSHIP"));
    assert_eq!(read(&w, &p9, NOBODY), Err("NO_LEGITIMATE_RELATIONSHIP"));
    assert_eq!(
        w.gov
            .read_scope(&p9, Q, w.now)
            .expect_err("refused")
            .message,
        w.gov
            .read_scope(&p9, NOBODY, w.now)
            .expect_err("refused")
            .message
    );
    // Lower levels read nothing, and are told so whoever the person is.
    for level in [IdentityLevel::P5, IdentityLevel::P0] {
        let who = person_p(level);
        for person in [P, Q, NOBODY] {
            assert_eq!(read(&w, &who, person), Err("IDENTITY_LEVEL_TOO_LOW"));
        }
    }
    // Access lists alike.
    let list = |who: &Identity, person| {
        w.gov
            .may_list_record_access(who, person, w.now)
            .map_err(|d| d.reason)
    };
    assert_eq!(list(&p9, P), Ok(()));
    assert_eq!(list(&p9, Q), Err("NO_LEGITIMATE_RELATIONSHIP"));
    assert_eq!(list(&p9, NOBODY), Err("NO_LEGITIMATE_RELATIONSHIP"));
    assert_eq!(
        list(&person_p(IdentityLevel::P5), P),
        Err("IDENTITY_LEVEL_TOO_LOW")
    );
    // Organisations keep their rule: related and not objected to.
    assert_eq!(list(&identity("HOSP"), P), Ok(()));
    assert_eq!(
        list(&identity("OTHER"), P),
        Err("NO_LEGITIMATE_RELATIONSHIP")
    );
}

#[test]
fn the_person_follows_their_current_nhs_number() {
    let mut w = authorisation_world();
    let old = person_p(IdentityLevel::P9);
    w.record(
        P,
        P,
        Event::Person(PersonEvent::DetailsCorrected {
            correction: Correction {
                nhs_number: Some(NhsNumber::synthetic(70)),
                ..Correction::default()
            },
            reason: text("duplicate number"),
        }),
    );
    assert_eq!(read(&w, &old, P), Err("NO_LEGITIMATE_RELATIONSHIP"));
    assert_eq!(
        w.gov.own_person(old.citizen.as_ref().expect("a citizen")),
        None
    );
    let new = citizen(70, IdentityLevel::P9);
    assert_eq!(read(&w, &new, P), Ok(ReadScope::default()));
}

#[test]
fn what_citizens_may_ask_of_the_command_service() {
    let w = authorisation_world();
    let p9 = person_p(IdentityLevel::P9);
    let p5 = person_p(IdentityLevel::P5);
    let p0 = person_p(IdentityLevel::P0);
    let cases: Vec<(&Identity, Command, Result<(), &str>)> = vec![
        // Feedback from P5 up, as the person.
        (&p9, feedback_as(P, FeedbackSource::Person), Ok(())),
        (&p5, feedback_as(P, FeedbackSource::Person), Ok(())),
        (
            &p0,
            feedback_as(P, FeedbackSource::Person),
            Err("IDENTITY_LEVEL_TOO_LOW"),
        ),
        (
            &p9,
            feedback_as(P, FeedbackSource::Carer),
            Err("FEEDBACK_SOURCE_MISMATCH"),
        ),
        // What matters to them, at P9; never identity, contact or carers.
        (&p9, what_matters(P), Ok(())),
        (&p5, what_matters(P), Err("IDENTITY_LEVEL_TOO_LOW")),
        (
            &p9,
            correct_person(P),
            Err("IDENTITY_CORRECTION_NOT_ALLOWED"),
        ),
        (
            &p9,
            correct(
                P,
                Correction {
                    nhs_number: Some(NhsNumber::synthetic(80)),
                    ..Correction::default()
                },
            ),
            Err("IDENTITY_CORRECTION_NOT_ALLOWED"),
        ),
        (
            &p9,
            correct(
                P,
                Correction {
                    contact: Some(text("a new address")),
                    ..Correction::default()
                },
            ),
            Err("CORRECTION_NOT_OPEN_TO_CITIZENS"),
        ),
        // Their own objections and consents, both ways, and proxy grants.
        (&p9, objection_to(P, "HOSP"), Ok(())),
        (&p9, record_permit(P), Ok(())),
        (&p9, withdraw(P), Ok(())),
        (&p5, objection_to(P, "HOSP"), Err("IDENTITY_LEVEL_TOO_LOW")),
        (&p9, grant_command(P), Ok(())),
        (&p9, revoke_command(P), Ok(())),
        (&p5, grant_command(P), Err("IDENTITY_LEVEL_TOO_LOW")),
        // Nothing else, whoever the person is.
        (&p9, register_person(P), Err("NOT_OPEN_TO_CITIZENS")),
        (
            &p9,
            make(P, "GP", "COUNCIL-REABLE"),
            Err("NOT_OPEN_TO_CITIZENS"),
        ),
        (&p9, agree_plan(P), Err("NOT_OPEN_TO_CITIZENS")),
        (&p9, add_member(P, "HOSP"), Err("NOT_OPEN_TO_CITIZENS")),
        (&p9, record_meeting(P), Err("NOT_OPEN_TO_CITIZENS")),
        (&p9, admit(P, "HOSP-WARD"), Err("NOT_OPEN_TO_CITIZENS")),
        (&p9, register_org(), Err("NOT_OPEN_TO_CITIZENS")),
        (
            &p9,
            person_command(
                P,
                PersonCommand::AssertEmergencyAccess {
                    reason: text("let me in"),
                    hours: 1,
                },
            ),
            Err("NOT_OPEN_TO_CITIZENS"),
        ),
    ];
    for (who, command, expected) in &cases {
        assert_eq!(decide(&w, who, command), *expected, "{command:?}");
    }
    // For another person, or one who does not exist, every open command gets the answer an
    // unrelated organisation gets.
    for person in [Q, NOBODY] {
        for command in [
            feedback_as(person, FeedbackSource::Person),
            what_matters(person),
            objection_to(person, "HOSP"),
            withdraw(person),
            grant_command(person),
            revoke_command(person),
        ] {
            assert_eq!(
                decide(&w, &p9, &command),
                Err("NO_LEGITIMATE_RELATIONSHIP"),
                "{command:?}"
            );
            assert_eq!(
                decide(&w, &stranger(), &command),
                Err("NO_LEGITIMATE_RELATIONSHIP")
            );
        }
    }
}

#[test]
fn a_proxy_acts_within_its_scope_until_revoked() {
    let mut w = authorisation_world();
    let c9 = carer(IdentityLevel::P9);
    let c5 = carer(IdentityLevel::P5);
    let open = [
        feedback_as(P, FeedbackSource::Carer),
        what_matters(P),
        objection_to(P, "HOSP"),
        withdraw(P),
    ];
    // Before any grant the carer is nobody to P.
    assert_eq!(read(&w, &c9, P), Err("NO_LEGITIMATE_RELATIONSHIP"));
    for command in &open {
        assert_eq!(decide(&w, &c9, command), Err("NO_LEGITIMATE_RELATIONSHIP"));
    }

    // Granted: read record and feedback only.
    w.record(P, P, grant(&[ProxyScope::ReadRecord, ProxyScope::Feedback]));
    assert!(w.gov.acts_as_proxy(&c9, P));
    assert!(!w.gov.acts_as_proxy(&person_p(IdentityLevel::P9), P));
    assert_eq!(read(&w, &c9, P), Ok(ReadScope::default()));
    assert_eq!(read(&w, &c5, P), Err("IDENTITY_LEVEL_TOO_LOW"));
    assert_eq!(
        w.gov
            .may_list_record_access(&c9, P, w.now)
            .map_err(|d| d.reason),
        Err("OUTSIDE_PROXY_SCOPE")
    );
    assert_eq!(decide(&w, &c9, &open[0]), Ok(()));
    assert_eq!(decide(&w, &c5, &open[0]), Ok(()));
    assert_eq!(
        decide(&w, &c9, &feedback_as(P, FeedbackSource::Person)),
        Err("FEEDBACK_SOURCE_MISMATCH")
    );
    for command in &open[1..] {
        assert_eq!(
            decide(&w, &c9, command),
            Err("OUTSIDE_PROXY_SCOPE"),
            "{command:?}"
        );
    }
    // A proxy never grants or revokes, whatever its scope; and is nobody to anyone else.
    w.record(P, P, grant(&ProxyScope::ALL));
    for command in &open {
        assert_eq!(decide(&w, &c9, command), Ok(()), "{command:?}");
    }
    assert_eq!(decide(&w, &c9, &grant_command(P)), Err("PERSON_ONLY"));
    assert_eq!(decide(&w, &c9, &revoke_command(P)), Err("PERSON_ONLY"));
    assert_eq!(read(&w, &c9, Q), Err("NO_LEGITIMATE_RELATIONSHIP"));

    // Revoked: nobody again.
    w.record(P, P, revoked());
    assert!(!w.gov.acts_as_proxy(&c9, P));
    assert_eq!(read(&w, &c9, P), Err("NO_LEGITIMATE_RELATIONSHIP"));
    for command in &open {
        assert_eq!(decide(&w, &c9, command), Err("NO_LEGITIMATE_RELATIONSHIP"));
    }
}

#[test]
fn proxy_grants_are_the_person_s_or_the_governance_role_s() {
    let w = authorisation_world();
    // GP is P's registered GP and HOSP is on P's care team: neither may grant or revoke.
    for org in ["GP", "HOSP"] {
        assert_eq!(
            decide(&w, &identity(org), &grant_command(P)),
            Err("PERSON_ONLY")
        );
        assert_eq!(
            decide(&w, &identity(org), &revoke_command(P)),
            Err("PERSON_ONLY")
        );
    }
    // An unrelated organisation is told what it is told for anything else.
    assert_eq!(
        decide(&w, &identity("OTHER"), &grant_command(P)),
        Err("NO_LEGITIMATE_RELATIONSHIP")
    );
    let gov = with_roles("GOV", &[Role::Governance]);
    assert_eq!(decide(&w, &gov, &grant_command(P)), Ok(()));
    assert_eq!(decide(&w, &gov, &revoke_command(P)), Ok(()));
}

#[test]
fn proxy_events_are_contact_data_and_followed_by_the_fold() {
    for event in [grant(&[ProxyScope::ReadRecord]), revoked()] {
        assert_eq!(data_class(&event), Some(DataClass::Contact));
        assert!(Governance::relevant(event.name()), "{}", event.name());
    }
}

#[test]
fn an_unreadable_record_is_closed_to_its_person_too_and_says_so_only_to_them() {
    let mut w = authorisation_world();
    w.gov.mark_undecodable(P, 999);
    assert_eq!(
        read(&w, &person_p(IdentityLevel::P9), P),
        Err("RECORD_UNREADABLE")
    );
    assert_eq!(read(&w, &stranger(), P), Err("NO_LEGITIMATE_RELATIONSHIP"));
    assert_eq!(
        decide(&w, &person_p(IdentityLevel::P9), &what_matters(P)),
        Err("RECORD_UNREADABLE")
    );
}
