//! Who is calling, what they may see, and the record of it, for every Carewoven service.
//!
//! - [`token`]: organisation identity by signed bearer tokens (JWT, EdDSA), checked against
//!   configured public keys; the development issuer.
//! - [`citizen`]: citizen identity (a person, or a carer as their proxy) from issuers
//!   trusted for citizens; pseudonyms; minting citizen tokens.
//! - [`grpc`]: reading the identity of a gRPC call; the one mapping of identity and
//!   authorisation failures to UNAUTHENTICATED and PERMISSION_DENIED.
//! - [`index`]: the [`carewoven_governance::Governance`] fold, kept by following the event
//!   log, and access checks that confirm a refusal against the log's end.
//! - [`audit`]: the audit stream (`CW_AUDIT`): every record read, feed delivery and refused
//!   access.

pub mod audit;
pub mod citizen;
pub mod grpc;
pub mod index;
pub mod token;

/// The environment variable setting how many days a hospital stay, a receiving role in a
/// discharge, or a completed or failed referral stays a ground after its terminal state.
pub const RELATIONSHIP_PERIOD_ENV: &str = "CAREWOVEN_RELATIONSHIP_PERIOD_DAYS";

/// The governance settings of this deployment: [`RELATIONSHIP_PERIOD_ENV`] (whole days, 0
/// to 3650; default 28). Every service reads the same variable, so commands, views and
/// feeds decide alike; a value that is not a number in range is an error at start-up.
pub fn governance_settings() -> anyhow::Result<carewoven_governance::Settings> {
    let mut settings = carewoven_governance::Settings::default();
    if let Ok(raw) = std::env::var(RELATIONSHIP_PERIOD_ENV) {
        let days: i64 = raw
            .trim()
            .parse()
            .ok()
            .filter(|d| (0..=3650).contains(d))
            .ok_or_else(|| {
                anyhow::anyhow!("{RELATIONSHIP_PERIOD_ENV} must be whole days from 0 to 3650")
            })?;
        settings.relationship_period = chrono::TimeDelta::days(days);
    }
    Ok(settings)
}

pub use audit::{AuditLog, AuditRecord};
pub use grpc::Authenticator;
pub use index::{AccessError, AccessIndex};
pub use token::{Issuer, Verifier};

/// Resolves on Ctrl-C or SIGTERM: the shutdown signal every service's `main` passes to `run`.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}

/// Set up tracing for a service binary: `RUST_LOG` (default `info`), as JSON lines if asked.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}
