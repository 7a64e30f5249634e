//! The subject scheme. Every event is published on
//!
//! ```text
//! cw.evt.<person_id>.<aggregate_kind>.<aggregate_id>.<event_type>
//! ```
//!
//! so a consumer filters by person (`cw.evt.<person>.>`), by aggregate kind
//! (`cw.evt.*.referral.>`), by aggregate (`cw.evt.<person>.referral.<id>.*`) or by event type
//! (`cw.evt.*.*.*.discharge_agreed`). Identifiers are UUIDs and codes, never personal data.

use carewoven_domain::AggregateKind;
use uuid::Uuid;

pub const EVENT_PREFIX: &str = "cw.evt";
/// Every event subject.
pub const ALL_EVENTS: &str = "cw.evt.>";

pub fn event(person: Uuid, kind: AggregateKind, aggregate: Uuid, event_type: &str) -> String {
    format!(
        "{EVENT_PREFIX}.{person}.{}.{aggregate}.{event_type}",
        kind.as_str()
    )
}

/// All events of one aggregate.
pub fn aggregate(person: Uuid, kind: AggregateKind, aggregate: Uuid) -> String {
    format!("{EVENT_PREFIX}.{person}.{}.{aggregate}.*", kind.as_str())
}

/// All events about one person.
pub fn person(person: Uuid) -> String {
    format!("{EVENT_PREFIX}.{person}.>")
}

/// All events of one aggregate kind.
pub fn kind(kind: AggregateKind) -> String {
    format!("{EVENT_PREFIX}.*.{}.>", kind.as_str())
}

/// All events of one type.
pub fn event_type(event_type: &str) -> String {
    format!("{EVENT_PREFIX}.*.*.*.{event_type}")
}

/// The subject of the registration event: it exists exactly when the person does.
pub fn person_registered(person: Uuid) -> String {
    event(person, AggregateKind::Person, person, "person_registered")
}

/// Split an event subject into (person, kind, aggregate, event type).
pub fn parse_event(subject: &str) -> Option<(Uuid, AggregateKind, Uuid, &str)> {
    let mut parts = subject.strip_prefix("cw.evt.")?.split('.');
    let person = parts.next()?.parse().ok()?;
    let kind = AggregateKind::parse(parts.next()?)?;
    let aggregate = parts.next()?.parse().ok()?;
    let event_type = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((person, kind, aggregate, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects_round_trip() {
        let (p, a) = (Uuid::now_v7(), Uuid::now_v7());
        let s = event(p, AggregateKind::DischargeEpisode, a, "discharge_agreed");
        assert_eq!(
            parse_event(&s),
            Some((p, AggregateKind::DischargeEpisode, a, "discharge_agreed"))
        );
        assert_eq!(parse_event("cw.evt.x"), None);
    }
}
