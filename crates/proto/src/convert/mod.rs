//! Conversions between the generated wire types ([`crate::v1`]) and the pure domain.
//!
//! Wire -> domain checks everything the wire cannot express (UUIDs, dates, codes, text
//! bounds, required fields, enum values) and refuses with [`DomainError::Invalid`] naming the
//! field by its proto path in snake_case (`profile.carers[1].name`). Rules that need the clock
//! or the aggregate's state stay in the domain's `decide`.
//!
//! [`DomainError::Invalid`]: carewoven_domain::DomainError::Invalid

mod command;
mod event;
mod values;
mod wire;

#[cfg(test)]
mod tests;

pub use command::{CommandRequest, IdSource, ParsedContext, parse_context, parse_context_with};
pub use event::{DecodeError, decode_event, encode_event, from_envelope, to_envelope};
pub use values::{FromWire, care_team_role_from_wire, data_class_to_wire, delay_reason_wire};
pub use wire::timestamp;
