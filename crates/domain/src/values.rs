//! Validated value types. Each `parse` names the field it was given, so a refusal tells the
//! caller exactly which input was wrong.

use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;

use crate::DomainError;

/// Longest short text (names, roles, destinations), in characters.
pub const SHORT_TEXT_MAX: usize = 200;
/// Longest free text (reasons, summaries, what matters), in characters.
pub const LONG_TEXT_MAX: usize = 4000;
/// Longest code (organisation, service, practitioner, user), in characters.
pub const CODE_MAX: usize = 64;
/// Most items in any list inside one command.
pub const LIST_MAX: usize = 50;

/// An identifier code for an organisation, service, practitioner or user, for example an ODS
/// code such as `RXH01`. ASCII letters, digits, `-` and `_`; never personal data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(String);

impl Code {
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(DomainError::invalid(field, "is required"));
        }
        if raw.len() > CODE_MAX {
            return Err(DomainError::invalid(
                field,
                format!("is longer than {CODE_MAX} characters"),
            ));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(DomainError::invalid(
                field,
                "may contain only ASCII letters, digits, '-' and '_'",
            ));
        }
        Ok(Code(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reserved organisation code people act under when they act for themselves or as a
    /// proxy ([`crate::organisation::CITIZEN_CODE`]).
    pub fn citizen() -> Code {
        Code(crate::organisation::CITIZEN_CODE.to_owned())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bounded_text(field: &str, raw: &str, max: usize) -> Result<String, DomainError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    if text.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(DomainError::invalid(field, "contains control characters"));
    }
    Ok(text.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
                bounded_text(field, raw, $max).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Free text may be personal data: Debug never prints it.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<{} chars>)", stringify!($name), self.0.chars().count())
            }
        }
    };
}

text_type!(
    /// Non-empty text of at most [`SHORT_TEXT_MAX`] characters.
    ShortText,
    SHORT_TEXT_MAX
);
text_type!(
    /// Non-empty text of at most [`LONG_TEXT_MAX`] characters.
    LongText,
    LONG_TEXT_MAX
);

/// An NHS number: ten digits whose last is a modulus-11 check digit.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts ten digits, optionally grouped 3-3-4 with spaces or hyphens.
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.is_empty() {
            return Err(DomainError::invalid(field, "is required"));
        }
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::invalid(field, "must be exactly 10 digits"));
        }
        let bytes = digits.as_bytes();
        let expected = check_digit(
            bytes[..9]
                .try_into()
                .map_err(|_| DomainError::invalid(field, "must be exactly 10 digits"))?,
        );
        match expected {
            Some(check) if check == bytes[9] - b'0' => Ok(NhsNumber(digits)),
            _ => Err(DomainError::invalid(field, "check digit does not match")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Numbers starting 999 are reserved for testing.
    pub fn is_test_number(&self) -> bool {
        self.0.starts_with("999")
    }
}

/// The modulus-11 check digit for nine leading digits, or `None` when no valid number starts
/// with them (the remainder would give 10).
pub fn check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

impl NhsNumber {
    /// The `n`-th synthetic NHS number from the 999 range reserved for testing, with a valid
    /// check digit: distinct for every `n` below 100,000. For tests, demos and benchmarks.
    pub fn synthetic(n: u32) -> NhsNumber {
        // Ten consecutive bodies give ten distinct check sums modulo 11, so at most one of
        // them has no valid check digit: block n always holds a valid number.
        let base = u64::from(n % 100_000) * 10;
        for body in base..base + 10 {
            let digits = format!("999{body:06}");
            let mut first_nine = [0u8; 9];
            first_nine.copy_from_slice(&digits.as_bytes()[..9]);
            if let Some(check) = check_digit(&first_nine) {
                return NhsNumber(format!("{digits}{check}"));
            }
        }
        unreachable!("ten consecutive bodies always include a valid one")
    }
}

/// NHS numbers are personal data: Debug shows only whether it is a test number.
impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_test_number() {
            write!(f, "NhsNumber(test)")
        } else {
            write!(f, "NhsNumber(<redacted>)")
        }
    }
}

/// A list bounded to [`LIST_MAX`] items, each parsed with `parse` under `field[i]`.
pub fn parse_list<T, R>(
    field: &str,
    raw: &[R],
    mut parse: impl FnMut(&str, &R) -> Result<T, DomainError>,
) -> Result<Vec<T>, DomainError> {
    if raw.len() > LIST_MAX {
        return Err(DomainError::invalid(
            field,
            format!("has more than {LIST_MAX} items"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, item)| parse(&format!("{field}[{i}]"), item))
        .collect()
}

/// The calendar date in the UK (GMT, or BST from 01:00 UTC on the last Sunday of March to
/// 01:00 UTC on the last Sunday of October). Care happens on UK calendar days: at 00:30 BST
/// "today" is already the next day, while the UTC date is still the previous one.
pub fn uk_date(now: DateTime<Utc>) -> NaiveDate {
    use chrono::{Datelike, Duration, TimeZone, Weekday};
    let last_sunday = |month: u32| {
        let mut day = NaiveDate::from_ymd_opt(now.year(), month, 31).unwrap_or(NaiveDate::MIN);
        while day.weekday() != Weekday::Sun {
            day = day.pred_opt().unwrap_or(day);
        }
        Utc.from_utc_datetime(&day.and_hms_opt(1, 0, 0).unwrap_or_default())
    };
    if now >= last_sunday(3) && now < last_sunday(10) {
        (now + Duration::hours(1)).date_naive()
    } else {
        now.date_naive()
    }
}

/// Refuse a date after today (the UK calendar day).
pub fn not_future_date(
    field: &str,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    if date > uk_date(now) {
        return Err(DomainError::invalid(field, "cannot be in the future"));
    }
    Ok(())
}

/// How far ahead of the service's clock a reported instant may be (clock skew between
/// partners' systems).
pub const CLOCK_SKEW_SECS: i64 = 300;

/// Refuse an instant after now, beyond a small allowance for clock skew.
pub fn not_future_instant(
    field: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    if at > now + chrono::Duration::seconds(CLOCK_SKEW_SECS) {
        return Err(DomainError::invalid(field, "cannot be in the future"));
    }
    Ok(())
}

/// Bound the real-world time a caller gives for a command (`context.occurred_at`): not after
/// now plus [`CLOCK_SKEW_SECS`], not before 1900-01-01 (nothing in a care record happened
/// earlier). `None` (not given) is always fine.
pub fn check_occurred_at(
    field: &str,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    let Some(at) = at else { return Ok(()) };
    not_future_instant(field, at, now)?;
    let earliest = DateTime::<Utc>::from_naive_utc_and_offset(
        NaiveDate::from_ymd_opt(1900, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default(),
        Utc,
    );
    if at < earliest {
        return Err(DomainError::invalid(field, "cannot be before 1900-01-01"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurred_at_is_bounded_by_now_with_skew_and_by_1900() {
        let now: DateTime<Utc> = "2026-05-01T12:00:00Z".parse().expect("instant");
        let at = |s: &str| Some(s.parse::<DateTime<Utc>>().expect("instant"));
        let check = |a| check_occurred_at("context.occurred_at", a, now);
        let refused = |a| match check(a) {
            Err(DomainError::Invalid { field, reason }) => {
                assert_eq!(field, "context.occurred_at");
                reason
            }
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(check(None).is_ok());
        assert!(check(at("2026-05-01T12:00:00Z")).is_ok());
        assert!(check(at("2026-05-01T12:05:00Z")).is_ok(), "within the skew");
        assert_eq!(
            refused(at("2026-05-01T12:05:01Z")),
            "cannot be in the future"
        );
        assert_eq!(
            refused(at("2999-01-01T00:00:00Z")),
            "cannot be in the future"
        );
        assert!(check(at("1900-01-01T00:00:00Z")).is_ok());
        assert!(check(at("1941-03-02T08:00:00Z")).is_ok());
        assert_eq!(
            refused(at("1899-12-31T23:59:59Z")),
            "cannot be before 1900-01-01"
        );
        assert_eq!(
            refused(at("0001-01-01T00:00:00Z")),
            "cannot be before 1900-01-01"
        );
    }

    #[test]
    fn nhs_numbers_are_checked() {
        // 943 476 5919 is the NHS Digital documentation example; 999 numbers are test numbers.
        assert!(NhsNumber::parse("n", "943 476 5919").is_ok());
        let test = NhsNumber::parse("n", "9990001235");
        assert!(matches!(test, Ok(ref n) if n.is_test_number()), "{test:?}");
        assert!(NhsNumber::parse("n", "9434765918").is_err());
        assert!(NhsNumber::parse("n", "94347659").is_err());
        assert!(NhsNumber::parse("n", "94347659x9").is_err());
        assert!(NhsNumber::parse("n", "").is_err());
    }

    #[test]
    fn synthetic_numbers_are_valid_distinct_test_numbers() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..5000 {
            let nhs = NhsNumber::synthetic(n);
            assert!(nhs.is_test_number());
            assert!(
                NhsNumber::parse("n", nhs.as_str()).is_ok(),
                "{}",
                nhs.as_str()
            );
            assert!(seen.insert(nhs.as_str().to_owned()));
        }
    }

    #[test]
    fn the_uk_day_follows_british_summer_time() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
        let day = |s: &str| s.parse::<NaiveDate>().expect("date");
        // 23:30 UTC on 30 June is 00:30 BST on 1 July.
        assert_eq!(uk_date(at("2026-06-30T23:30:00Z")), day("2026-07-01"));
        // In winter the UK day is the UTC day.
        assert_eq!(uk_date(at("2026-12-30T23:30:00Z")), day("2026-12-30"));
        // 2026: BST from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(uk_date(at("2026-03-29T00:59:00Z")), day("2026-03-29"));
        assert_eq!(uk_date(at("2026-03-29T23:30:00Z")), day("2026-03-30"));
        assert_eq!(uk_date(at("2026-10-24T23:30:00Z")), day("2026-10-25"));
        assert_eq!(uk_date(at("2026-10-25T23:30:00Z")), day("2026-10-25"));
    }

    #[test]
    fn debug_never_shows_personal_text() {
        let name = ShortText::parse("name", "Ada Example").expect("valid");
        assert!(!format!("{name:?}").contains("Ada"));
        let nhs = NhsNumber::parse("n", "9990001235").expect("valid");
        assert!(!format!("{nhs:?}").contains("999"));
    }

    #[test]
    fn text_bounds() {
        assert!(ShortText::parse("f", "   ").is_err());
        assert!(ShortText::parse("f", &"x".repeat(SHORT_TEXT_MAX)).is_ok());
        assert!(ShortText::parse("f", &"x".repeat(SHORT_TEXT_MAX + 1)).is_err());
        assert!(ShortText::parse("f", "bad\u{0}").is_err());
        assert!(Code::parse("f", "RXH01").is_ok());
        assert!(Code::parse("f", "R X").is_err());
    }
}
