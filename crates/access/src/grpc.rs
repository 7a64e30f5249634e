//! Identity on gRPC calls and the statuses for refusals.

use carewoven_governance::{Denial, Identity};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::token::{TokenError, Verifier};

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
