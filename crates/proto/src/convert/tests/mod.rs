//! Tests for the conversions: value constructors and fixtures shared by the event and command
//! tests. Only NHS numbers from the 999 test range appear here.

#![allow(clippy::unwrap_used)]

mod codes;
mod commands;
mod events;

use carewoven_domain::DomainError;
use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// Valid test NHS numbers (mod-11 check digits 5 and 3).
const NHS_A: &str = "9990001235";
const NHS_B: &str = "9990001243";

fn code(raw: &str) -> Code {
    Code::parse("code", raw).unwrap()
}

fn short(raw: &str) -> ShortText {
    ShortText::parse("short", raw).unwrap()
}

fn long(raw: &str) -> LongText {
    LongText::parse("long", raw).unwrap()
}

fn nhs(raw: &str) -> NhsNumber {
    assert!(raw.starts_with("999"), "tests use only 999 test numbers");
    NhsNumber::parse("nhs_number", raw).unwrap()
}

fn date(raw: &str) -> NaiveDate {
    raw.parse().unwrap()
}

/// An instant with sub-second precision, so nanoseconds are exercised.
fn instant(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, nanos).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn invalid(field: &str, reason: &str) -> DomainError {
    DomainError::invalid(field, reason)
}
