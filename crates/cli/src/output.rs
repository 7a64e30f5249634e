//! Printing replies and refusals, and the exit codes they map to.

use std::process::ExitCode;

use carewoven_proto::v1::CommandReply;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

/// Exit code for a refused or failed call: 2 when the command itself was refused (fix it
/// before retrying), 3 when retrying may succeed, 1 otherwise.
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unauthenticated
        | Code::PermissionDenied => 2,
        Code::Aborted | Code::Unavailable => 3,
        _ => 1,
    }
}

/// The canonical upper-case gRPC code name.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

pub fn reply_json(reply: &CommandReply) -> Value {
    json!({
        "command_id": reply.command_id,
        "aggregate_kind": reply.aggregate_kind,
        "aggregate_id": reply.aggregate_id,
        "person_id": reply.person_id,
        "first_version": reply.first_version,
        "last_version": reply.last_version,
        "log_position": reply.log_position,
        "event_ids": reply.event_ids,
        "event_types": reply.event_types,
        "duplicate": reply.duplicate,
    })
}

pub fn versions(reply: &CommandReply) -> String {
    if reply.first_version == reply.last_version {
        reply.first_version.to_string()
    } else {
        format!("{}..{}", reply.first_version, reply.last_version)
    }
}

pub fn reply_table(reply: &CommandReply) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    let rows: [(&str, String); 8] = [
        ("command id", reply.command_id.clone()),
        ("aggregate kind", reply.aggregate_kind.clone()),
        ("aggregate id", reply.aggregate_id.clone()),
        ("person id", reply.person_id.clone()),
        ("versions", versions(reply)),
        ("log position", reply.log_position.to_string()),
        ("event types", reply.event_types.join("\n")),
        (
            "duplicate",
            if reply.duplicate {
                "yes (already accepted; nothing new appended)".to_owned()
            } else {
                "no".to_owned()
            },
        ),
    ];
    for (k, v) in rows {
        table.add_row(vec![k.to_owned(), v]);
    }
    table
}

/// Print an accepted command's reply.
pub fn print_reply(reply: &CommandReply, json: bool) {
    if json {
        println!("{}", reply_json(reply));
    } else {
        println!("{}", reply_table(reply));
    }
}

/// The status code, message and decoded `google.rpc` details as JSON.
pub fn status_json(status: &Status) -> Value {
    let details = status.get_error_details();
    let bad_request: Vec<Value> = details
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect()
        })
        .unwrap_or_default();
    let preconditions: Vec<Value> = details
        .precondition_failure()
        .map(|p| {
            p.violations
                .iter()
                .map(|v| json!({"type": v.r#type, "subject": v.subject, "description": v.description}))
                .collect()
        })
        .unwrap_or_default();
    let resource = details.resource_info().map(|r| {
        json!({
            "resource_type": r.resource_type,
            "resource_name": r.resource_name,
            "owner": r.owner,
            "description": r.description,
        })
    });
    let error_info = details.error_info().map(|e| {
        let mut metadata: Vec<(&String, &String)> = e.metadata.iter().collect();
        metadata.sort();
        let metadata: serde_json::Map<String, Value> = metadata
            .into_iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({"reason": e.reason, "domain": e.domain, "metadata": metadata})
    });
    json!({
        "code": code_name(status.code()),
        "code_number": status.code() as i32,
        "message": status.message(),
        "details": {
            "bad_request": bad_request,
            "precondition_failure": preconditions,
            "resource_info": resource,
            "error_info": error_info,
        },
    })
}

/// Human-readable lines for a refusal: code, message, then one line per detail.
pub fn status_lines(status: &Status) -> Vec<String> {
    let v = status_json(status);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut lines = vec![format!(
        "{}: {}",
        code_name(status.code()),
        status.message()
    )];
    let d = &v["details"];
    for f in d["bad_request"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  bad request: field `{}`: {}",
            s(&f["field"]),
            s(&f["description"])
        ));
    }
    for p in d["precondition_failure"].as_array().into_iter().flatten() {
        let subject = s(&p["subject"]);
        let subject = if subject.is_empty() {
            String::new()
        } else {
            format!(" ({subject})")
        };
        lines.push(format!(
            "  precondition failed: {}{subject}: {}",
            s(&p["type"]),
            s(&p["description"])
        ));
    }
    let r = &d["resource_info"];
    if r.is_object() {
        lines.push(format!(
            "  resource: {} {}: {}",
            s(&r["resource_type"]),
            s(&r["resource_name"]),
            s(&r["description"])
        ));
    }
    let e = &d["error_info"];
    if e.is_object() {
        let meta: Vec<String> = e["metadata"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        lines.push(format!(
            "  error info: {} ({}) {}",
            s(&e["reason"]),
            s(&e["domain"]),
            meta.join(" ")
        ));
    }
    lines
}

/// Print a refused or failed call (JSON on stdout with --json, else lines on stderr) and
/// return the exit code it maps to.
pub fn report_status(status: &Status, command_id: Uuid, json: bool) -> ExitCode {
    let code = exit_code(status.code());
    if json {
        println!(
            "{}",
            json!({"command_id": command_id.to_string(), "error": status_json(status)})
        );
    } else {
        eprintln!("error: {}", status_lines(status).join("\n"));
        eprintln!("command id: {command_id}");
        if code == 3 || status.code() == Code::DeadlineExceeded {
            eprintln!("retry safely with: --command-id {command_id} (and the same arguments)");
        }
    }
    ExitCode::from(code)
}

/// Print a refused or failed read (no command id: nothing was sent to change anything) and
/// return the exit code it maps to.
pub fn report_refusal(status: &Status, json: bool) -> ExitCode {
    if json {
        println!("{}", json!({"error": status_json(status)}));
    } else {
        eprintln!("error: {}", status_lines(status).join("\n"));
    }
    ExitCode::from(exit_code(status.code()))
}

/// An error and its sources, joined with ": " (repeated messages are shown once).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Print an error that is not a gRPC status (connection, address, deadline of wait-ready).
pub fn report_error(error: &anyhow::Error, json: bool) {
    let mut causes: Vec<String> = Vec::new();
    for cause in error.chain().map(ToString::to_string) {
        if causes.last() != Some(&cause) {
            causes.push(cause);
        }
    }
    let message = causes.join(": ");
    if json {
        println!(
            "{}",
            json!({"error": {"code": "CLIENT", "message": message, "causes": causes}})
        );
    } else {
        eprintln!("error: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(Code::InvalidArgument), 2);
        assert_eq!(exit_code(Code::FailedPrecondition), 2);
        assert_eq!(exit_code(Code::NotFound), 2);
        assert_eq!(exit_code(Code::AlreadyExists), 2);
        assert_eq!(exit_code(Code::PermissionDenied), 2);
        assert_eq!(exit_code(Code::Unauthenticated), 2);
        assert_eq!(exit_code(Code::OutOfRange), 2);
        assert_eq!(exit_code(Code::Aborted), 3);
        assert_eq!(exit_code(Code::Unavailable), 3);
        assert_eq!(exit_code(Code::Internal), 1);
        assert_eq!(exit_code(Code::DeadlineExceeded), 1);
    }

    #[test]
    fn details_are_decoded() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "profile.nhs_number: check digit does not match",
            ErrorDetails::with_bad_request_violation(
                "profile.nhs_number",
                "check digit does not match",
            ),
        );
        let v = status_json(&status);
        assert_eq!(v["code"], "INVALID_ARGUMENT");
        assert_eq!(
            v["details"]["bad_request"][0]["field"],
            "profile.nhs_number"
        );
        assert!(v["details"]["resource_info"].is_null());
        let lines = status_lines(&status);
        assert!(lines[1].contains("profile.nhs_number"));

        let status = Status::with_error_details(
            Code::FailedPrecondition,
            "discharge.lifecycle: cannot close",
            ErrorDetails::with_precondition_failure_violation(
                "discharge.lifecycle",
                "",
                "cannot close",
            ),
        );
        let v = status_json(&status);
        assert_eq!(
            v["details"]["precondition_failure"][0]["type"],
            "discharge.lifecycle"
        );

        let status = Status::with_error_details(
            Code::Aborted,
            "version conflict",
            ErrorDetails::with_error_info(
                "VERSION_CONFLICT",
                "carewoven",
                [("current_version".to_owned(), "3".to_owned())],
            ),
        );
        let v = status_json(&status);
        assert_eq!(
            v["details"]["error_info"]["metadata"]["current_version"],
            "3"
        );
        assert!(status_lines(&status)[1].contains("current_version=3"));
    }

    #[test]
    fn reply_renders() {
        let reply = CommandReply {
            command_id: "c".into(),
            aggregate_kind: "referral".into(),
            first_version: 2,
            last_version: 3,
            event_types: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(versions(&reply), "2..3");
        let v = reply_json(&reply);
        assert_eq!(v["event_types"][1], "b");
        assert_eq!(v["duplicate"], false);
        assert!(reply_table(&reply).to_string().contains("referral"));
    }
}
