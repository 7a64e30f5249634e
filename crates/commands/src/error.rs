//! The one mapping from refusals to gRPC status codes, with standard `google.rpc` details.
//!
//! INVALID_ARGUMENT names the field (BadRequest); FAILED_PRECONDITION names the rule
//! (PreconditionFailure); NOT_FOUND and ALREADY_EXISTS name the resource (ResourceInfo);
//! ABORTED means a concurrent change won and the caller may retry; UNAVAILABLE means the log
//! could not be reached and the caller may retry with the same command id.

use carewoven_domain::{DomainError, ReplayError};
use carewoven_eventlog::LogError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub fn domain_status(e: &DomainError) -> Status {
    match e {
        DomainError::Invalid { field, reason } => Status::with_error_details(
            Code::InvalidArgument,
            format!("{field}: {reason}"),
            ErrorDetails::with_bad_request_violation(field, reason),
        ),
        DomainError::NotFound { what, id } => Status::with_error_details(
            Code::NotFound,
            format!("{what} {id} not found"),
            ErrorDetails::with_resource_info(*what, id, "", "does not exist"),
        ),
        DomainError::AlreadyExists { what, id } => Status::with_error_details(
            Code::AlreadyExists,
            format!("{what} {id} already exists"),
            ErrorDetails::with_resource_info(*what, id, "", "already exists"),
        ),
        DomainError::Rule { rule, detail } => Status::with_error_details(
            Code::FailedPrecondition,
            format!("{rule}: {detail}"),
            ErrorDetails::with_precondition_failure_violation(*rule, "", detail),
        ),
        DomainError::VersionConflict { expected, actual } => Status::with_error_details(
            Code::Aborted,
            e.to_string(),
            ErrorDetails::with_error_info(
                "VERSION_CONFLICT",
                "carewoven",
                [
                    ("based_on_version".to_owned(), expected.to_string()),
                    ("current_version".to_owned(), actual.to_string()),
                ],
            ),
        ),
    }
}

pub fn log_status(e: &LogError) -> Status {
    match e {
        LogError::Unavailable(detail) | LogError::Busy(detail) => Status::unavailable(format!(
            "event log unavailable, retry with the same command_id: {detail}"
        )),
        LogError::Conflict => Status::with_error_details(
            Code::Aborted,
            "the aggregate changed concurrently; decide again and retry",
            ErrorDetails::with_error_info("CONCURRENT_APPEND", "carewoven", []),
        ),
        LogError::Undecodable { .. } => Status::data_loss(e.to_string()),
        LogError::Refused(detail) => {
            Status::internal(format!("event log refused the append: {detail}"))
        }
    }
}

pub fn replay_status(e: &ReplayError) -> Status {
    Status::data_loss(format!("the aggregate's history cannot be replayed: {e}"))
}
