use thiserror::Error;

/// Why a command was refused, in domain words. Each variant maps to exactly one gRPC code at
/// the service boundary.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A field's value is malformed, missing or out of bounds.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The command names an aggregate that does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The command would create something that already exists.
    #[error("{what} {id} already exists")]
    AlreadyExists { what: &'static str, id: String },
    /// A rule of the domain, usually the life cycle, forbids the command in this state.
    #[error("{rule}: {detail}")]
    Rule { rule: &'static str, detail: String },
    /// The command was based on a version of the aggregate that is no longer current.
    #[error("version conflict: based on version {expected}, current is {actual}")]
    VersionConflict { expected: u64, actual: u64 },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn rule(rule: &'static str, detail: impl Into<String>) -> Self {
        DomainError::Rule {
            rule,
            detail: detail.into(),
        }
    }
}

/// An event could not be folded into state: the log holds something `decide` never produces.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot apply {event} to {state}")]
pub struct ReplayError {
    pub event: &'static str,
    pub state: String,
}
