//! Value parsers for command-line options: dates, instants, `|`-separated composite items and
//! NHS-number check digits. Each parser returns a `String` error, which clap prints as the
//! reason an option was refused.

use carewoven_proto::v1;
use chrono::{DateTime, Days, NaiveDate, Utc};
use prost_types::Timestamp;

/// Split a `|`-separated item into exactly `min..=max` trimmed parts (missing trailing parts
/// are returned as empty strings).
pub fn split_pipe(raw: &str, min: usize, max: usize, shape: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = raw.split('|').map(|p| p.trim().to_owned()).collect();
    if parts.len() < min || parts.len() > max {
        return Err(format!("expected {shape}, got {} part(s)", parts.len()));
    }
    if parts.iter().take(min).any(String::is_empty) {
        return Err(format!("expected {shape}; a required part is empty"));
    }
    let mut parts = parts;
    parts.resize(max, String::new());
    Ok(parts)
}

/// `"NAME|RELATIONSHIP[|CONTACT]"`.
pub fn carer(raw: &str) -> Result<v1::Carer, String> {
    let p = split_pipe(raw, 2, 3, "NAME|RELATIONSHIP[|CONTACT]")?;
    let [name, relationship, contact] = <[String; 3]>::try_from(p).map_err(|_| "bad carer")?;
    Ok(v1::Carer {
        name,
        relationship,
        contact,
    })
}

/// `"DESCRIPTION|RESPONSIBLE_ORGANISATION"`.
pub fn activity(raw: &str) -> Result<v1::Activity, String> {
    let p = split_pipe(raw, 2, 2, "DESCRIPTION|RESPONSIBLE_ORGANISATION")?;
    let [description, responsible_organisation] =
        <[String; 2]>::try_from(p).map_err(|_| "bad activity")?;
    Ok(v1::Activity {
        description,
        responsible_organisation,
        ..Default::default()
    })
}

/// `"INDEX|STATUS|REASON"`, STATUS completed, cancelled or stopped.
pub fn activity_end(raw: &str) -> Result<v1::ActivityEnd, String> {
    let p = split_pipe(raw, 3, 3, "INDEX|STATUS|REASON")?;
    let [index, status, reason] = <[String; 3]>::try_from(p).map_err(|_| "bad activity end")?;
    let index = index
        .parse()
        .map_err(|_| format!("INDEX must be a number from 0, not {index:?}"))?;
    let status = match status.as_str() {
        "completed" => v1::ActivityStatus::Completed,
        "cancelled" => v1::ActivityStatus::Cancelled,
        "stopped" => v1::ActivityStatus::Stopped,
        other => {
            return Err(format!(
                "STATUS must be completed, cancelled or stopped, not {other:?}"
            ));
        }
    };
    Ok(v1::ActivityEnd {
        index,
        status: status as i32,
        reason,
    })
}

/// `"DESCRIPTION|OWNER_ORGANISATION|DUE_BY"` (DUE_BY as for any date option).
pub fn meeting_action(raw: &str) -> Result<v1::MeetingAction, String> {
    let p = split_pipe(raw, 3, 3, "DESCRIPTION|OWNER|DUE_BY")?;
    let [description, owner, due] = <[String; 3]>::try_from(p).map_err(|_| "bad action")?;
    Ok(v1::MeetingAction {
        description,
        owner,
        due_by: date_string(&date_on(&due, today())?),
    })
}

/// `"ORG"` or `"ORG/PRACTITIONER"`: a care-team member.
pub fn member_ref(raw: &str) -> Result<v1::MemberRef, String> {
    let (organisation, practitioner) = match raw.trim().split_once('/') {
        Some((o, p)) => (o.trim(), p.trim()),
        None => (raw.trim(), ""),
    };
    if organisation.is_empty() || (raw.contains('/') && practitioner.is_empty()) {
        return Err("expected ORG or ORG/PRACTITIONER".to_owned());
    }
    Ok(v1::MemberRef {
        organisation: organisation.to_owned(),
        practitioner: practitioner.to_owned(),
    })
}

/// Today on the UK calendar (the day the services decide with).
pub fn today() -> NaiveDate {
    carewoven_domain::values::uk_date(Utc::now())
}

/// A calendar date: `YYYY-MM-DD`, or `today`, `yesterday`, `tomorrow`, `today+N`, `today-N`.
pub fn date(raw: &str) -> Result<NaiveDate, String> {
    date_on(raw, today())
}

/// [`date`] with relative forms resolved against `today`.
pub fn date_on(raw: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let raw = raw.trim();
    let relative = |days: &str, add: bool| -> Result<NaiveDate, String> {
        let n: u64 = days
            .parse()
            .map_err(|_| format!("`{raw}`: expected today+N or today-N"))?;
        let shifted = if add {
            today.checked_add_days(Days::new(n))
        } else {
            today.checked_sub_days(Days::new(n))
        };
        shifted.ok_or_else(|| format!("`{raw}` is out of range"))
    };
    match raw {
        "today" => Ok(today),
        "yesterday" => relative("1", false),
        "tomorrow" => relative("1", true),
        _ => {
            if let Some(n) = raw.strip_prefix("today+") {
                relative(n, true)
            } else if let Some(n) = raw.strip_prefix("today-") {
                relative(n, false)
            } else {
                NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                    .ok()
                    .filter(|_| raw.len() == 10)
                    .ok_or_else(|| {
                        format!("`{raw}`: expected YYYY-MM-DD, today, yesterday, tomorrow, today+N or today-N")
                    })
            }
        }
    }
}

/// The wire form of a date.
pub fn date_string(d: &NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// An optional date's wire form: empty means "not given".
pub fn opt_date_string(d: Option<&NaiveDate>) -> String {
    d.map(date_string).unwrap_or_default()
}

/// An instant: RFC 3339 (`2026-11-26T10:30:00Z`, any offset) or `now`.
pub fn instant(raw: &str) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if raw == "now" {
        return Ok(Utc::now());
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{raw}`: expected an RFC 3339 instant or `now` ({e})"))
}

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The NHS-number modulus-11 check digit for nine leading digits: weights 10 down to 2,
/// check = 11 - (sum mod 11), where 11 gives 0 and 10 means no valid number starts so.
pub fn nhs_check_digit(first_nine: &str) -> Option<u8> {
    if first_nine.len() != 9 || !first_nine.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first_nine
        .bytes()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

/// A valid test-range NHS number (starting 999) derived from `seed`: digits 4-8 are the seed
/// (mod 100 000), digit 9 the first of 0-9 that gives a valid check digit (at most one fails,
/// since the weight-2 position shifts the sum by distinct residues), so different seeds below
/// 100 000 never share a number.
pub fn test_nhs_number(seed: u64) -> String {
    let base = seed % 100_000;
    (0..10)
        .find_map(|j| {
            let nine = format!("999{base:05}{j}");
            nhs_check_digit(&nine).map(|check| format!("{nine}{check}"))
        })
        .unwrap_or_else(|| "9990001235".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    #[test]
    fn pipe_items_split_and_trim() {
        let c = carer("Sam Example | daughter | 07700 900123").expect("carer");
        assert_eq!(c.name, "Sam Example");
        assert_eq!(c.relationship, "daughter");
        assert_eq!(c.contact, "07700 900123");
        let c = carer("Sam Example|daughter").expect("carer without contact");
        assert_eq!(c.contact, "");
        assert!(carer("Sam Example").is_err());
        assert!(carer("|daughter").is_err());
        assert!(carer("a|b|c|d").is_err());

        let a = activity("Daily reablement visits|COUNCIL-REABLE").expect("activity");
        assert_eq!(a.description, "Daily reablement visits");
        assert_eq!(a.responsible_organisation, "COUNCIL-REABLE");
        assert!(activity("no organisation").is_err());

        let m = meeting_action("Arrange key safe|COUNCIL-ASC|2026-12-01").expect("action");
        assert_eq!(m.description, "Arrange key safe");
        assert_eq!(m.owner, "COUNCIL-ASC");
        assert_eq!(m.due_by, "2026-12-01");
        assert!(meeting_action("Arrange key safe|COUNCIL-ASC").is_err());
        assert!(meeting_action("Arrange key safe|COUNCIL-ASC|01/12/2026").is_err());
    }

    #[test]
    fn members() {
        let m = member_ref("ASC/sw-12").expect("with practitioner");
        assert_eq!(
            (m.organisation.as_str(), m.practitioner.as_str()),
            ("ASC", "sw-12")
        );
        assert_eq!(member_ref("ASC").expect("org only").practitioner, "");
        assert!(member_ref("ASC/").is_err());
        assert!(member_ref("/sw-12").is_err());
    }

    #[test]
    fn dates_absolute_and_relative() {
        let today = d("2026-03-01");
        assert_eq!(date_on("2026-11-26", today), Ok(d("2026-11-26")));
        assert_eq!(date_on("today", today), Ok(today));
        assert_eq!(date_on("yesterday", today), Ok(d("2026-02-28")));
        assert_eq!(date_on("tomorrow", today), Ok(d("2026-03-02")));
        assert_eq!(date_on("today+42", today), Ok(d("2026-04-12")));
        assert_eq!(date_on("today-3", today), Ok(d("2026-02-26")));
        assert!(date_on("2026-2-3", today).is_err());
        assert!(date_on("2026-02-30", today).is_err());
        assert!(date_on("today+x", today).is_err());
        assert_eq!(date_string(&d("2026-01-05")), "2026-01-05");
        assert_eq!(opt_date_string(None), "");
    }

    #[test]
    fn instants() {
        let t = instant("2026-11-26T10:30:00+01:00").expect("rfc3339");
        assert_eq!(t.to_rfc3339(), "2026-11-26T09:30:00+00:00");
        assert_eq!(timestamp(t).seconds, t.timestamp());
        assert!(instant("2026-11-26 10:30").is_err());
        assert!(instant("now").is_ok());
    }

    #[test]
    fn check_digits() {
        assert_eq!(nhs_check_digit("999000123"), Some(5));
        // 943 476 5919 is the NHS's published example number.
        assert_eq!(nhs_check_digit("943476591"), Some(9));
        assert_eq!(nhs_check_digit("12345678"), None);
        assert_eq!(nhs_check_digit("99900012x"), None);
        for seed in [0, 1, 7, 12_345, 999_999, 1_000_000, 20_000] {
            let n = test_nhs_number(seed);
            assert_eq!(n.len(), 10);
            assert!(n.starts_with("999"));
            let check = nhs_check_digit(&n[..9]).expect("valid prefix");
            assert_eq!(n.as_bytes()[9] - b'0', check);
        }
        // Distinct seeds give distinct numbers, even where a prefix has no check digit.
        let numbers: std::collections::HashSet<String> = (0..5_000).map(test_nhs_number).collect();
        assert_eq!(numbers.len(), 5_000);
    }
}
