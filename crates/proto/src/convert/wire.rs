//! Small, field-naming helpers shared by every conversion: identifiers, dates, instants,
//! optional text and enum values.

use carewoven_domain::DomainError;
use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
use chrono::{DateTime, NaiveDate, Utc};
use prost_types::Timestamp;
use uuid::Uuid;

/// The reason given for every missing required field.
const REQUIRED: &str = "is required";

pub(super) fn required(field: &str) -> DomainError {
    DomainError::invalid(field, REQUIRED)
}

/// `prefix.name`: the proto path of a field inside a message.
pub(super) fn at(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

/// A proto3 string whose empty value means "not given".
pub(super) fn opt<T>(
    field: &str,
    raw: &str,
    parse: impl FnOnce(&str, &str) -> Result<T, DomainError>,
) -> Result<Option<T>, DomainError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(field, raw).map(Some)
    }
}

/// A proto3 `optional` field: absent means "not given", present must be valid.
pub(super) fn present<T>(
    field: &str,
    raw: Option<&str>,
    parse: impl FnOnce(&str, &str) -> Result<T, DomainError>,
) -> Result<Option<T>, DomainError> {
    raw.map(|raw| parse(field, raw)).transpose()
}

pub(super) fn req_uuid(field: &str, raw: &str) -> Result<Uuid, DomainError> {
    if raw.is_empty() {
        return Err(required(field));
    }
    Uuid::parse_str(raw).map_err(|_| DomainError::invalid(field, "is not a valid UUID"))
}

pub(super) fn opt_uuid(field: &str, raw: &str) -> Result<Option<Uuid>, DomainError> {
    opt(field, raw, req_uuid)
}

/// A calendar date in exactly `YYYY-MM-DD` form.
pub(super) fn req_date(field: &str, raw: &str) -> Result<NaiveDate, DomainError> {
    if raw.is_empty() {
        return Err(required(field));
    }
    let shaped = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| DomainError::invalid(field, "must be a date in YYYY-MM-DD form"))
}

pub(super) fn opt_date(field: &str, raw: &str) -> Result<Option<NaiveDate>, DomainError> {
    opt(field, raw, req_date)
}

/// An instant as a protobuf timestamp.
/// A protobuf timestamp of an instant.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    let mut ts = Timestamp {
        seconds: at.timestamp(),
        // At most 1_999_999_999 (a leap second), which fits; `normalize` carries it over.
        nanos: at.timestamp_subsec_nanos() as i32,
    };
    ts.normalize();
    ts
}

/// A required timestamp, refused when missing or outside what the domain can represent.
pub(super) fn req_instant(
    field: &str,
    ts: Option<&Timestamp>,
) -> Result<DateTime<Utc>, DomainError> {
    let ts = ts.ok_or_else(|| required(field))?;
    u32::try_from(ts.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| DomainError::invalid(field, "is not a valid timestamp or is out of range"))
}

pub(super) fn opt_instant(
    field: &str,
    ts: Option<&Timestamp>,
) -> Result<Option<DateTime<Utc>>, DomainError> {
    ts.map(|ts| req_instant(field, Some(ts))).transpose()
}

/// A generated enumeration's value, refusing integers this schema does not know.
pub(super) fn wire_enum<W: TryFrom<i32>>(field: &str, raw: i32) -> Result<W, DomainError> {
    W::try_from(raw).map_err(|_| DomainError::invalid(field, format!("unknown value {raw}")))
}

/// A domain enumeration with a generated counterpart whose `UNSPECIFIED` (0) means "missing".
pub(super) trait WireEnum: Sized + Copy {
    type Wire: TryFrom<i32> + Into<i32>;

    /// `None` for `UNSPECIFIED`.
    fn from_wire(wire: Self::Wire) -> Option<Self>;
    fn to_wire(self) -> Self::Wire;

    fn to_i32(self) -> i32 {
        self.to_wire().into()
    }
}

pub(super) fn req_enum<E: WireEnum>(field: &str, raw: i32) -> Result<E, DomainError> {
    E::from_wire(wire_enum(field, raw)?).ok_or_else(|| required(field))
}

/// Domain value -> the string carried on the wire; `None` becomes the empty string.
pub(super) trait WireString {
    fn wire(&self) -> String;
}

macro_rules! wire_string_via_as_str {
    ($($t:ty),+) => {
        $(impl WireString for $t {
            fn wire(&self) -> String {
                self.as_str().to_owned()
            }
        })+
    };
}
wire_string_via_as_str!(Code, ShortText, LongText, NhsNumber);

impl WireString for NaiveDate {
    fn wire(&self) -> String {
        self.format("%Y-%m-%d").to_string()
    }
}

impl WireString for Uuid {
    fn wire(&self) -> String {
        self.to_string()
    }
}

impl<T: WireString> WireString for Option<T> {
    fn wire(&self) -> String {
        self.as_ref().map_or_else(String::new, WireString::wire)
    }
}
