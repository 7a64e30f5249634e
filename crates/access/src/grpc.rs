//! Identity on gRPC calls, the statuses for refusals, and callers' deadlines.

use std::time::{Duration, Instant};

use carewoven_governance::{Denial, Identity};
use carewoven_proto::v1;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::audit::AuditLog;
use crate::token::{TokenError, Verifier};

/// Longest any service waits on a caller's behalf, whatever deadline (`grpc-timeout`) the
/// caller sets.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The `authorization` metadata key.
pub const AUTHORIZATION: &str = "authorization";

/// Authenticates calls by their bearer token.
#[derive(Clone)]
pub struct Authenticator {
    verifier: Verifier,
}

impl Authenticator {
    pub fn new(verifier: Verifier) -> Self {
        Authenticator { verifier }
    }

    /// The caller's identity, or why there is none.
    pub fn identify(&self, metadata: &MetadataMap) -> Result<Identity, TokenError> {
        let raw = metadata
            .get(AUTHORIZATION)
            .ok_or(TokenError::Missing)?
            .to_str()
            .map_err(|_| TokenError::Malformed)?;
        let token = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .ok_or(TokenError::Missing)?
            .trim();
        self.verifier.verify(token)
    }
}

/// Refuses calls without a valid bearer token before anything else is done (the request is
/// not even decoded), counting each refusal by the caller's address in the audit
/// ([`AuditLog::count_unauthenticated`]: a bounded number of records a minute). Put in
/// front of every Carewoven API (`InterceptedService`), never of health or reflection.
#[derive(Clone)]
pub struct Gatekeeper {
    auth: Authenticator,
    audit: AuditLog,
    action: v1::AuditAction,
    service: &'static str,
}

impl Gatekeeper {
    /// Refusals are audited as `action` on `service` (the gRPC service name).
    pub fn new(
        auth: Authenticator,
        audit: AuditLog,
        action: v1::AuditAction,
        service: &'static str,
    ) -> Self {
        Gatekeeper {
            auth,
            audit,
            action,
            service,
        }
    }
}

impl Interceptor for Gatekeeper {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        match self.auth.identify(request.metadata()) {
            Ok(_) => Ok(request),
            Err(e) => {
                self.audit.count_unauthenticated(
                    request.remote_addr().map(|a| a.ip()),
                    self.action,
                    e.reason(),
                    self.service,
                );
                Err(unauthenticated(&e))
            }
        }
    }
}

/// The caller's deadline (`grpc-timeout`), at most [`MAX_WAIT`]; `None` without one (or with
/// one that is not a gRPC timeout).
pub fn caller_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = raw.split_at(raw.len().checked_sub(1)?);
    // The gRPC spec allows at most 8 digits.
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let value: u64 = value.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    };
    Some(timeout.min(MAX_WAIT))
}

/// `wait` from now, at most [`MAX_WAIT`]: never overflows, whatever the caller asked for.
pub fn wait_until(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait.min(MAX_WAIT)).unwrap_or(now)
}

/// UNAUTHENTICATED, saying what is wrong with the token (never echoing it).
pub fn unauthenticated(e: &TokenError) -> Status {
    Status::with_error_details(
        Code::Unauthenticated,
        e.to_string(),
        ErrorDetails::with_error_info(e.reason(), "carewoven", []),
    )
}

/// PERMISSION_DENIED with the denial's reason.
pub fn permission_denied(d: &Denial) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        d.message.clone(),
        ErrorDetails::with_error_info(d.reason, "carewoven", []),
    )
}

/// Attach a bearer token to a request (clients, tests, carectl).
pub fn with_token<T>(mut request: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert(AUTHORIZATION, value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(raw: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", raw.parse().expect("ascii"));
        caller_timeout(&metadata)
    }

    #[test]
    fn callers_deadlines_are_capped_and_never_overflow() {
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("99999999H"), Some(MAX_WAIT));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(timeout("999999999999999999999H"), None);
        assert_eq!(timeout("H"), None);
        assert_eq!(timeout("5x"), None);
        let until = wait_until(Duration::MAX);
        assert!(until <= Instant::now() + MAX_WAIT);
    }
}
