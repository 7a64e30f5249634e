//! Human-readable pieces the reads share: tables, instants, enum labels.

use std::fmt::Write as _;

use carewoven_proto::v1;
use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

/// A table with `headers`, wrapped to the terminal's width when there is one.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    table
}

/// A table of `items`, one row each, or `None` when there are none.
pub fn rows<T>(headers: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> Option<Table> {
    if items.is_empty() {
        return None;
    }
    let mut t = table(headers);
    for item in items {
        t.add_row(row(item));
    }
    Some(t)
}

/// A table of `items`, one row each (only the headers when there are none).
pub fn table_of<T>(headers: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> Table {
    rows(headers, items, row).unwrap_or_else(|| table(headers))
}

/// A two-column table of names and values (empty values left out).
pub fn fields(rows: &[(&str, String)]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (name, value) in rows {
        if !value.is_empty() {
            table.add_row(vec![(*name).to_owned(), value.clone()]);
        }
    }
    table
}

/// A section heading, then `body`, or "(none)".
pub fn section(out: &mut String, heading: &str, body: Option<Table>) {
    let _ = writeln!(out, "\n{heading}");
    match body {
        Some(t) => {
            let _ = writeln!(out, "{t}");
        }
        None => out.push_str("  (none)\n"),
    }
}

/// An instant as `2026-11-26 10:30:00Z`; empty when unset.
pub fn instant(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `WHAT by WHO at WHEN: NOTE` (the note left out when empty): one step of a history.
pub fn happened(what: &str, by: &str, at: Option<&prost_types::Timestamp>, note: &str) -> String {
    let note = if note.is_empty() {
        String::new()
    } else {
        format!(": {note}")
    };
    format!("{what} by {by} at {}{note}", instant(at))
}

/// A protobuf enum value's name without its type prefix, lower case with hyphens
/// (`PATHWAY_1` → `1`, `DELAY_REASON_PATHWAY_1_NEW_CARE` → `pathway-1-new-care`).
pub fn label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

macro_rules! labels {
    ($($f:ident => $t:ident, $prefix:literal;)+) => {
        $(pub fn $f(value: i32) -> String {
            match v1::$t::try_from(value) {
                Ok(v1::$t::Unspecified) => String::new(),
                Ok(v) => label(v.as_str_name(), $prefix),
                Err(_) => format!("({value})"),
            }
        })+
    };
}

labels! {
    pathway => Pathway, "PATHWAY_";
    delay_reason => DelayReason, "DELAY_REASON_";
    priority => Priority, "PRIORITY_";
    data_class => DataClass, "DATA_CLASS_";
    care_team_role => CareTeamRole, "CARE_TEAM_ROLE_";
    assessment_kind => AssessmentKind, "ASSESSMENT_KIND_";
    outcome => CareActOutcome, "CARE_ACT_OUTCOME_";
    decision => ConsentDecision, "CONSENT_DECISION_";
    purpose => Purpose, "PURPOSE_";
    feedback_source => FeedbackSource, "FEEDBACK_SOURCE_";
    proxy_scope => ProxyScope, "PROXY_SCOPE_";
    audit_action => AuditAction, "AUDIT_ACTION_";
    audit_outcome => AuditOutcome, "AUDIT_OUTCOME_";
    disclosure => Disclosure, "DISCLOSURE_";
    task_status => TaskStatus, "TASK_STATUS_";
    risk_flag => RiskFlagCode, "RISK_FLAG_CODE_";
}

/// Labels of repeated enum values, comma-separated.
pub fn list(values: &[i32], f: fn(i32) -> String) -> String {
    values.iter().map(|v| f(*v)).collect::<Vec<_>>().join(", ")
}

/// A care-team member as `ORG` or `ORG/PRACTITIONER`.
pub fn member(m: Option<&v1::MemberRef>) -> String {
    match m {
        Some(m) if m.practitioner.is_empty() => m.organisation.clone(),
        Some(m) => format!("{}/{}", m.organisation, m.practitioner),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_like_the_command_line() {
        assert_eq!(pathway(v1::Pathway::Pathway1 as i32), "1");
        assert_eq!(
            delay_reason(v1::DelayReason::Pathway1NewCare as i32),
            "pathway-1-new-care"
        );
        assert_eq!(priority(v1::Priority::Unspecified as i32), "");
        assert_eq!(priority(99), "(99)");
        assert_eq!(
            instant(Some(&prost_types::Timestamp {
                seconds: 0,
                nanos: 0
            })),
            "1970-01-01 00:00:00Z"
        );
        assert_eq!(instant(None), "");
        let m = v1::MemberRef {
            organisation: "ASC".into(),
            practitioner: "sw-1".into(),
        };
        assert_eq!(member(Some(&m)), "ASC/sw-1");
    }
}
