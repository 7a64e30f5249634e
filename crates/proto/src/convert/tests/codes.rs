//! National codes on the wire: events stored in the shape written before them keep decoding
//! (legacy delay reasons read as national ones, a discharge without a destination code), and
//! new commands are held to the national lists, naming the field they refuse.

use carewoven_domain::discharge::{
    DelayReason, DischargeCommand, DischargeDestination, DischargeEvent,
};
use carewoven_domain::{Command, DomainError, Event};
use prost::Message;

use super::{id, instant, short};
use crate::convert::{CommandRequest, DecodeError, IdSource, decode_event, to_envelope};
use crate::v1;
use crate::v1::event_envelope::Event as W;
use crate::v1::progress_discharge_request as pd;

/// An envelope as a build before the national codes wrote it, around `event`.
fn old_envelope(event: W) -> v1::EventEnvelope {
    let placeholder = Event::Discharge(DischargeEvent::Closed);
    let meta = carewoven_domain::EventMeta {
        event_id: id(1),
        aggregate_id: id(2),
        aggregate_kind: placeholder.kind(),
        person_id: id(3),
        version: 4,
        command_id: id(4),
        correlation_id: id(5),
        causation_id: id(6),
        organisation: super::code("RXH01"),
        user: super::code("user-1"),
        occurred_at: instant(1_750_000_000, 0),
        recorded_at: instant(1_750_000_100, 0),
        schema_version: 1,
    };
    let mut envelope = to_envelope(&meta, &placeholder);
    envelope.event = Some(event);
    envelope
}

fn decoded(envelope: &v1::EventEnvelope) -> Event {
    decode_event(&envelope.encode_to_vec())
        .expect("an old-shape event decodes")
        .1
}

#[test]
fn legacy_delay_reasons_in_stored_events_decode_to_national_ones() {
    use DelayReason as N;
    // The mapping of docs/codes/discharge-delay-reasons.md, written out by hand: the stored
    // value (Carewoven's list before October 2023's national one) and what it now reads as.
    let table = [
        (1, N::AwaitingTherapyDecision),
        (2, N::Pathway1NewCare),
        (3, N::Pathway1ContinuingRehabilitation),
        (4, N::Pathway2Bed),
        (5, N::Pathway3CareHome),
        (6, N::AwaitingEquipmentOrAdaptations),
        (7, N::HomelessOrNoRecourseToPublicFunds),
        (8, N::AwaitingTransport),
        (9, N::AwaitingMedicinesToTakeHome),
        (10, N::IndividualOrFamilyNotInAgreement),
        (11, N::Other),
    ];
    for (stored, national) in table {
        let envelope = old_envelope(W::DelayReasonRecorded(v1::DelayReasonRecorded {
            reason: stored,
            note: "waiting".to_owned(),
        }));
        let event = decoded(&envelope);
        let Event::Discharge(DischargeEvent::DelayReasonRecorded { reason, note }) = &event else {
            panic!("{stored}: decoded as {event:?}");
        };
        assert_eq!(*reason, national, "stored value {stored}");
        assert_eq!(note.as_ref().map(|n| n.as_str()), Some("waiting"));
        // Written again, it carries the national value (OTHER, with none, keeps 11).
        let again = to_envelope(&decode_event(&envelope.encode_to_vec()).unwrap().0, &event);
        let Some(W::DelayReasonRecorded(m)) = again.event else {
            panic!("re-encoded as another event");
        };
        if stored == 11 {
            assert_eq!(m.reason, 11);
        } else {
            assert!(m.reason >= 12, "{stored} re-encoded as {}", m.reason);
            assert_eq!(
                decoded(&old_envelope(W::DelayReasonRecorded(m))),
                event,
                "the national value reads back as the same reason"
            );
        }
    }
    // Every value the schema defines decodes to something (no value falls through).
    for raw in 1..=31 {
        let envelope = old_envelope(W::DelayReasonRecorded(v1::DelayReasonRecorded {
            reason: raw,
            note: String::new(),
        }));
        decoded(&envelope);
    }
    // A value beyond the schema is malformed, never guessed.
    let envelope = old_envelope(W::DelayReasonRecorded(v1::DelayReasonRecorded {
        reason: 32,
        note: String::new(),
    }));
    assert!(matches!(
        decode_event(&envelope.encode_to_vec()),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn a_stored_discharge_without_a_destination_code_decodes() {
    let message = v1::PersonDischarged {
        discharged_at: Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        }),
        destination: "Home".to_owned(),
        destination_code: String::new(),
    };
    // Byte for byte what the old schema (fields 1 and 2 only) wrote: no field 3 on the wire.
    let bytes = message.encode_to_vec();
    assert!(!bytes.contains(&((3 << 3) | 2)), "no destination_code tag");
    let event = decoded(&old_envelope(W::PersonDischarged(message)));
    assert_eq!(
        event,
        Event::Discharge(DischargeEvent::Discharged {
            discharged_at: instant(1_750_000_000, 0),
            destination: short("Home"),
            destination_code: None,
        })
    );

    let coded = v1::PersonDischarged {
        discharged_at: Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        }),
        destination: "Care home".to_owned(),
        destination_code: "85".to_owned(),
    };
    assert!(matches!(
        decoded(&old_envelope(W::PersonDischarged(coded))),
        Event::Discharge(DischargeEvent::Discharged {
            destination_code: Some(d),
            ..
        }) if d == DischargeDestination::INDEPENDENT_CARE_HOME
    ));

    let tampered = v1::PersonDischarged {
        discharged_at: Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        }),
        destination: "Home".to_owned(),
        destination_code: "home".to_owned(),
    };
    match decode_event(&old_envelope(W::PersonDischarged(tampered)).encode_to_vec()) {
        Err(DecodeError::Malformed(why)) => {
            assert!(why.contains("person_discharged.destination_code"), "{why}")
        }
        other => panic!("expected malformed, got {other:?}"),
    }
}

struct Ids;

impl IdSource for Ids {
    fn new_aggregate_id(
        &self,
        _kind: carewoven_domain::AggregateKind,
        _person: uuid::Uuid,
    ) -> uuid::Uuid {
        id(9)
    }

    fn person_id_for(&self, _nhs: &carewoven_domain::values::NhsNumber) -> uuid::Uuid {
        id(3)
    }

    fn organisation_id_for(&self, _code: &carewoven_domain::values::Code) -> uuid::Uuid {
        id(7)
    }
}

fn step(step: pd::Step) -> Result<Command, DomainError> {
    let request = v1::ProgressDischargeRequest {
        context: Some(v1::CommandContext {
            command_id: "00000000-0000-0000-0000-0000000000c1".to_owned(),
            organisation: "RXH01".to_owned(),
            user: "user-1".to_owned(),
            ..Default::default()
        }),
        person_id: id(3).to_string(),
        episode_id: id(9).to_string(),
        step: Some(step),
    };
    request.to_command(&Ids)
}

fn discharge(code: &str) -> pd::Step {
    pd::Step::Discharge(pd::Discharge {
        discharged_at: Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        }),
        destination: "Home".to_owned(),
        destination_code: code.to_owned(),
    })
}

fn delay(reason: i32) -> pd::Step {
    pd::Step::RecordDelayReason(pd::RecordDelayReason {
        reason,
        note: String::new(),
    })
}

#[test]
fn commands_take_only_listed_destination_codes_and_name_the_field() {
    for bad in ["20", "019", "home", "1 9", "999"] {
        match step(discharge(bad)) {
            Err(DomainError::Invalid { field, reason }) => {
                assert_eq!(field, "step.discharge.destination_code", "{bad}");
                assert!(reason.contains("DischargeDestinationEngland"), "{reason}");
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    let Ok(Command::Discharge { command, .. }) = step(discharge("19")) else {
        panic!("19 refused");
    };
    assert!(matches!(
        command,
        DischargeCommand::Discharge {
            destination_code: Some(DischargeDestination::USUAL_RESIDENCE),
            ..
        }
    ));
    // Not coded at all is still allowed (the code is optional).
    let Ok(Command::Discharge { command, .. }) = step(discharge("")) else {
        panic!("no code refused");
    };
    assert!(matches!(
        command,
        DischargeCommand::Discharge {
            destination_code: None,
            ..
        }
    ));
}

#[test]
fn commands_take_national_delay_reasons_and_read_legacy_ones_as_national() {
    let reason_of = |raw| match step(delay(raw)) {
        Ok(Command::Discharge {
            command: DischargeCommand::RecordDelayReason { reason, .. },
            ..
        }) => Ok(reason),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(
        reason_of(v1::DelayReason::Pathway3EndOfLife.into()),
        Ok(DelayReason::Pathway3EndOfLife)
    );
    // An older client's value with a national equivalent is read as it.
    assert_eq!(
        reason_of(v1::DelayReason::AwaitingHomeCare.into()),
        Ok(DelayReason::Pathway1NewCare)
    );
    // The old OTHER has none: refused, naming the field.
    match reason_of(v1::DelayReason::Other.into()) {
        Err(DomainError::Invalid { field, .. }) => {
            assert_eq!(field, "step.record_delay_reason.reason")
        }
        other => panic!("OTHER accepted: {other:?}"),
    }
    assert!(matches!(
        reason_of(0),
        Err(DomainError::Invalid { field, .. }) if field == "step.record_delay_reason.reason"
    ));
}

#[test]
fn every_care_team_role_round_trips_and_has_its_own_code() {
    use carewoven_domain::care_team::CareTeamRole;
    let mut codes = std::collections::BTreeSet::new();
    for role in CareTeamRole::ALL {
        let wire: i32 = crate::convert::values::care_team_role_wire(role);
        assert_ne!(wire, 0, "{role:?} has a wire value");
        assert_eq!(
            crate::convert::care_team_role_from_wire(wire),
            Some(role),
            "{role:?}"
        );
        assert!(codes.insert(role.code()), "{} is used twice", role.code());
        assert!(!role.display().is_empty());
    }
    // Every wire value names a role (nothing on the wire without a domain role).
    for wire in 1..=i32::try_from(CareTeamRole::ALL.len()).unwrap() {
        assert!(
            crate::convert::care_team_role_from_wire(wire).is_some(),
            "{wire}"
        );
    }
    assert_eq!(crate::convert::care_team_role_from_wire(0), None);
    assert_eq!(crate::convert::care_team_role_from_wire(9999), None);
    assert_eq!(
        CareTeamRole::Pharmacist.practitioner_role(),
        Some("pharmacist")
    );
    assert_eq!(CareTeamRole::Psychologist.practitioner_role(), None);
}
