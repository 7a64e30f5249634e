//! Who carectl acts as. Every call to the command service carries a bearer token:
//!
//! - `--token` (CAREWOVEN_TOKEN): a token from the deployment's identity provider, sent as is;
//!   it names one organisation, so it suits single commands;
//! - `--issuer-dir` (CAREWOVEN_ISSUER_DIR): a development convenience. The directory holds a
//!   token issuer's private key (`carectl keys generate`), and carectl mints a short-lived
//!   token for whichever organisation a command acts as. `demo` and `seed` act as several
//!   organisations and so need it. Services trust the issuer only if its `trusted-keys.json`
//!   is in their CAREWOVEN_TRUSTED_KEYS; no production service should trust a development
//!   issuer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use carewoven_access::Issuer;
use carewoven_governance::Role;

/// How long a minted token is valid.
pub const MINTED_TTL: Duration = Duration::from_secs(15 * 60);
/// A cached minted token is replaced when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

enum Source {
    None,
    Token(String),
    Issuer(Box<Issuer>),
}

/// Minted tokens by (organisation, user, roles), with when each expires.
type Minted = HashMap<(String, String, Vec<&'static str>), (String, Instant)>;

/// The credentials of one carectl run.
pub struct Auth {
    source: Source,
    minted: Mutex<Minted>,
}

impl Auth {
    /// `--token` wins over `--issuer-dir` (`demo` and `seed` pass only the issuer).
    pub fn new(token: Option<&str>, issuer_dir: Option<&Path>) -> Result<Self> {
        let source = match (token, issuer_dir) {
            (Some(t), _) if !t.trim().is_empty() => Source::Token(t.trim().to_owned()),
            (_, Some(dir)) => {
                Source::Issuer(Box::new(Issuer::from_dir(dir).with_context(|| {
                    format!("loading the token issuer in {}", dir.display())
                })?))
            }
            _ => Source::None,
        };
        Ok(Self::from_source(source))
    }

    /// Mint tokens with `issuer` (tests).
    #[cfg(test)]
    pub fn with_issuer(issuer: Issuer) -> Self {
        Self::from_source(Source::Issuer(Box::new(issuer)))
    }

    fn from_source(source: Source) -> Self {
        Auth {
            source,
            minted: Mutex::default(),
        }
    }

    /// Whether any credentials were given.
    pub fn is_none(&self) -> bool {
        matches!(self.source, Source::None)
    }

    /// The organisation the `--token` names, read without verifying it (the server verifies):
    /// the default acting organisation when `--org` is not given. A citizen token acts as
    /// the reserved organisation `CITIZEN`.
    pub fn token_organisation(&self) -> Option<String> {
        let Source::Token(token) = &self.source else {
            return None;
        };
        if self.is_citizen_token() {
            return Some(carewoven_domain::organisation::CITIZEN_CODE.to_owned());
        }
        jsonwebtoken::dangerous::insecure_decode_claims::<carewoven_access::token::Claims>(token)
            .ok()
            .map(|c| c.sub)
    }

    /// Whether the `--token` is a citizen's (its user is the server's pseudonym for them, so
    /// carectl sends no user of its own).
    pub fn is_citizen_token(&self) -> bool {
        let Source::Token(token) = &self.source else {
            return false;
        };
        jsonwebtoken::dangerous::insecure_decode_claims::<carewoven_access::citizen::CitizenClaims>(
            token,
        )
        .is_ok()
    }

    /// The bearer token to send when acting as `organisation` (user `user`) with `roles`:
    /// the `--token` as given, a minted one, or none without credentials.
    pub fn token(&self, organisation: &str, user: &str, roles: &[Role]) -> Result<Option<String>> {
        let issuer = match &self.source {
            Source::None => return Ok(None),
            Source::Token(t) => return Ok(Some(t.clone())),
            Source::Issuer(issuer) => issuer,
        };
        let mut names: Vec<&'static str> = roles.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let key = (organisation.to_owned(), user.to_owned(), names);
        let mut minted = self.minted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((token, expires)) = minted.get(&key)
            && expires.saturating_duration_since(Instant::now()) > RENEW_BEFORE
        {
            return Ok(Some(token.clone()));
        }
        let user = (!user.is_empty()).then_some(user);
        let token = issuer.token(organisation, user, roles, MINTED_TTL)?;
        minted.insert(key, (token.clone(), Instant::now() + MINTED_TTL));
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_reused_per_identity_and_verify() {
        let auth = Auth::with_issuer(carewoven_access::token::testing::issuer());
        let a = auth
            .token("ORG-A", "u1", &[])
            .expect("mint")
            .expect("a token");
        assert_eq!(
            auth.token("ORG-A", "u1", &[]).expect("mint"),
            Some(a.clone())
        );
        let gov = auth
            .token("ORG-A", "u1", &[Role::Governance])
            .expect("mint")
            .expect("a token");
        assert_ne!(a, gov);
        let verifier = carewoven_access::token::testing::verifier();
        let identity = verifier.verify(&gov).expect("valid");
        assert_eq!(identity.organisation.as_str(), "ORG-A");
        assert!(identity.has(Role::Governance));
        assert_eq!(
            identity.user.map(|u| u.as_str().to_owned()),
            Some("u1".into())
        );
    }

    #[test]
    fn a_citizen_token_acts_as_citizen_with_no_user() {
        let token = carewoven_access::citizen::testing::token(
            "9990001235",
            carewoven_governance::IdentityLevel::P9,
        );
        let auth = Auth::new(Some(&token), None).expect("auth");
        assert!(auth.is_citizen_token());
        assert_eq!(auth.token_organisation().as_deref(), Some("CITIZEN"));
        let org = carewoven_access::token::testing::issuer()
            .token("ORG-B", None, &[], Duration::from_secs(60))
            .expect("token");
        assert!(
            !Auth::new(Some(&org), None)
                .expect("auth")
                .is_citizen_token()
        );
    }

    #[test]
    fn a_given_token_is_sent_as_is_and_names_its_organisation() {
        let token = carewoven_access::token::testing::issuer()
            .token("ORG-B", None, &[], Duration::from_secs(60))
            .expect("token");
        let auth = Auth::new(Some(&token), None).expect("auth");
        assert_eq!(auth.token_organisation().as_deref(), Some("ORG-B"));
        assert_eq!(
            auth.token("SOMEONE-ELSE", "", &[]).expect("token"),
            Some(token)
        );
        let none = Auth::new(None, None).expect("auth");
        assert!(none.is_none());
        assert_eq!(none.token("X", "", &[]).expect("nothing"), None);
    }
}
