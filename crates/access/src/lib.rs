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
pub mod checkpoint;
pub mod citizen;
pub mod grpc;
pub mod index;
pub mod token;

pub use audit::{AuditLog, AuditRecord, TallyFlusher};
pub use grpc::{Authenticator, Gatekeeper};
pub use index::{AccessError, AccessIndex, DEFAULT_CACHE_PEOPLE, IndexOptions};
pub use token::{Issuer, Verifier};

/// The access settings every service that authorises shares (flattened into its flags).
#[derive(Debug, Clone, clap::Args)]
pub struct AccessConfig {
    /// Longest a bearer token may live, in seconds: a token whose `exp - iat` (or
    /// `exp - now`) is longer is refused (UNAUTHENTICATED, TOKEN_LIFETIME_TOO_LONG).
    #[arg(long, env = "CAREWOVEN_MAX_TOKEN_LIFETIME_SECS", default_value_t = token::DEFAULT_MAX_LIFETIME.as_secs())]
    pub max_token_lifetime_secs: u64,
    /// Log sequences (comma-separated) of events the access index cannot decode that it may
    /// treat as applied, after an operator has looked at them: the person's record, closed
    /// by such an event, opens again. Each skip is audited (CW_AUDIT, UNDECODABLE_SKIPPED).
    #[arg(long, env = "CAREWOVEN_INDEX_SKIP_UNDECODABLE", value_delimiter = ',')]
    pub index_skip_undecodable: Vec<u64>,
    /// Days a hospital stay, a receiving role in a discharge, or a completed or failed
    /// referral remains a ground for a relationship after its terminal state. Set it the
    /// same on every service, so commands, views and feeds decide alike.
    #[arg(long, env = "CAREWOVEN_RELATIONSHIP_PERIOD_DAYS",
          default_value_t = carewoven_governance::DEFAULT_RELATIONSHIP_PERIOD_DAYS,
          value_parser = clap::value_parser!(i64).range(0..=3650))]
    pub relationship_period_days: i64,
    /// Where the access index persists its fold (a redb file, made if missing): a start
    /// then costs the events since the last save, not the whole log. Without it the index
    /// lives in memory and folds the whole log at every start. Deleting the file rebuilds
    /// it from the log.
    #[arg(long, env = "CAREWOVEN_ACCESS_CHECKPOINT")]
    pub access_checkpoint: Option<std::path::PathBuf>,
    /// With a checkpoint, most people's access state held in memory (the rest is read from
    /// the file when needed).
    #[arg(long, env = "CAREWOVEN_ACCESS_CACHE_PEOPLE", default_value_t = DEFAULT_CACHE_PEOPLE)]
    pub access_cache_people: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            max_token_lifetime_secs: token::DEFAULT_MAX_LIFETIME.as_secs(),
            index_skip_undecodable: Vec::new(),
            relationship_period_days: carewoven_governance::DEFAULT_RELATIONSHIP_PERIOD_DAYS,
            access_checkpoint: None,
            access_cache_people: DEFAULT_CACHE_PEOPLE,
        }
    }
}

impl AccessConfig {
    /// The verifier for bearer tokens: keys in memory (tests) or the trust file, with this
    /// configuration's token lifetime.
    pub fn verifier(
        &self,
        trust: Option<&token::TrustFile>,
        path: Option<&std::path::Path>,
    ) -> anyhow::Result<Verifier> {
        Ok(Verifier::configured(trust, path)?
            .with_max_lifetime(std::time::Duration::from_secs(self.max_token_lifetime_secs)))
    }

    /// The governance settings of this deployment.
    pub fn governance(&self) -> carewoven_governance::Settings {
        carewoven_governance::Settings {
            relationship_period: chrono::TimeDelta::days(self.relationship_period_days),
        }
    }

    /// The index options for `service`, auditing skips in `audit`.
    pub fn index_options(&self, service: &'static str, audit: &AuditLog) -> IndexOptions {
        IndexOptions {
            settings: self.governance(),
            skip_undecodable: self.index_skip_undecodable.iter().copied().collect(),
            audit: Some(audit.clone()),
            service,
            checkpoint: self.access_checkpoint.clone(),
            cache_people: self.access_cache_people,
        }
    }
}
