//! Helpers shared by the domain crate's integration tests: a fixed clock, value constructors
//! and an independent modulus-11 NHS number generator.

#![allow(dead_code, clippy::unwrap_used)]

use carewoven_domain::values::{Code, LongText, NhsNumber, ShortText};
use carewoven_domain::{Actor, DecideContext};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

/// The fixed "now" every test decides against: midday, 15 June 2025 (UTC).
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 15, 12, 0, 0).unwrap()
}

pub fn today() -> NaiveDate {
    carewoven_domain::values::uk_date(now())
}

/// `today() + days` (negative for the past).
pub fn day(days: i64) -> NaiveDate {
    today() + Duration::days(days)
}

/// `now() + hours` (negative for the past).
pub fn hours(h: i64) -> DateTime<Utc> {
    now() + Duration::hours(h)
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn ctx() -> DecideContext {
    ctx_at(now())
}

pub fn ctx_at(now: DateTime<Utc>) -> DecideContext {
    DecideContext {
        now,
        actor: Actor {
            organisation: code("RXH01"),
            user: code("user-1"),
        },
    }
}

pub fn code(raw: &str) -> Code {
    Code::parse("code", raw).unwrap()
}

pub fn short(raw: &str) -> ShortText {
    ShortText::parse("short", raw).unwrap()
}

pub fn long(raw: &str) -> LongText {
    LongText::parse("long", raw).unwrap()
}

pub fn nhs(raw: &str) -> NhsNumber {
    assert!(raw.starts_with("999"), "tests use only 999 test numbers");
    NhsNumber::parse("nhs_number", raw).unwrap()
}

/// The modulus-11 check digit, computed independently of the crate: weights 10..2 over the
/// first nine digits, check = 11 - sum % 11, 11 -> 0, 10 -> no valid number.
pub fn mod11_check(first_nine: &str) -> Option<u32> {
    assert_eq!(first_nine.len(), 9);
    let sum: u32 = first_nine
        .chars()
        .zip((2..=10u32).rev())
        .map(|(c, w)| c.to_digit(10).unwrap() * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => Some(c),
    }
}

/// A valid test NHS number (starting 999) derived from `n`, skipping prefixes with no valid
/// check digit.
pub fn test_nhs_number(n: u32) -> String {
    let mut n = n % 1_000_000;
    loop {
        let first_nine = format!("999{n:06}");
        if let Some(check) = mod11_check(&first_nine) {
            return format!("{first_nine}{check}");
        }
        n = (n + 1) % 1_000_000;
    }
}
