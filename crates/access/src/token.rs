//! Organisation identity: signed bearer tokens (JWT, EdDSA / Ed25519).
//!
//! A token's header names its key (`kid`); the key must be in the configured trust file with
//! the issuer the token claims. Claims: `iss`, `sub` (the organisation code), `aud`
//! (`carewoven`), `exp`, `iat`, optional `nbf`, `user` and `roles`. An unknown key, a bad
//! signature, another audience or issuer, an expired or not-yet-valid token are refused, and
//! so is a token that lives longer than the services allow (`exp - iat`, or what is left of
//! it, `exp - now`, above [`DEFAULT_MAX_LIFETIME`] unless configured otherwise): a stolen
//! token is useful for hours at most.
//!
//! The development issuer ([`Issuer`]) signs tokens from a private key file; production
//! deployments use their identity provider and only configure its public keys.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carewoven_domain::values::Code;
use carewoven_governance::{Identity, Role};
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The audience every Carewoven token names.
pub const AUDIENCE: &str = "carewoven";

/// Allowed clock skew between the issuer and the services, in seconds.
const LEEWAY_SECS: u64 = 30;

/// Longest a token may live unless a service is configured otherwise
/// (`--max-token-lifetime-secs`, `CAREWOVEN_MAX_TOKEN_LIFETIME_SECS`): 12 hours.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token (send `authorization: Bearer <token>`)")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience or issuer")]
    WrongAudienceOrIssuer,
    #[error("the token's claims are not valid: {0}")]
    BadClaims(String),
    #[error("the token lives longer than this service allows ({max_secs} s at most)")]
    LifetimeTooLong { max_secs: u64 },
    #[error(
        "the token's issuer is not trusted for this kind of identity (citizen tokens come only from issuers trusted for citizens, organisation tokens only from the others)"
    )]
    WrongIssuerKind,
}

impl TokenError {
    /// Stable reason for `google.rpc.ErrorInfo` and the audit.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "TOKEN_MISSING",
            TokenError::Malformed => "TOKEN_MALFORMED",
            TokenError::UnknownKey => "TOKEN_UNKNOWN_KEY",
            TokenError::BadSignature => "TOKEN_BAD_SIGNATURE",
            TokenError::Expired => "TOKEN_EXPIRED",
            TokenError::NotYetValid => "TOKEN_NOT_YET_VALID",
            TokenError::WrongAudienceOrIssuer => "TOKEN_WRONG_AUDIENCE_OR_ISSUER",
            TokenError::BadClaims(_) => "TOKEN_BAD_CLAIMS",
            TokenError::LifetimeTooLong { .. } => "TOKEN_LIFETIME_TOO_LONG",
            TokenError::WrongIssuerKind => "TOKEN_WRONG_ISSUER_KIND",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The organisation code.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// One trusted public key, as in the trust file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustedKey {
    pub kid: String,
    pub issuer: String,
    pub public_key_pem: String,
    /// Whom its tokens identify: `organisations` (the default) or `citizens`.
    #[serde(default)]
    pub subjects: crate::citizen::Subjects,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrustFile {
    pub keys: Vec<TrustedKey>,
}

struct Trusted {
    issuer: String,
    key: DecodingKey,
    subjects: crate::citizen::Subjects,
}

/// Verifies bearer tokens against the trusted keys. Verified tokens are remembered until
/// they expire, so a client reusing its token costs one signature check.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<HashMap<String, Trusted>>,
    cache: Arc<Mutex<HashMap<String, (Identity, u64)>>>,
    max_lifetime_secs: u64,
}

const CACHE_MAX: usize = 10_000;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Verifier {
    pub fn new(trust: &TrustFile) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for k in &trust.keys {
            let key = DecodingKey::from_ed_pem(k.public_key_pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!("trusted key {}: not an Ed25519 public key PEM: {e}", k.kid)
            })?;
            keys.insert(
                k.kid.clone(),
                Trusted {
                    issuer: k.issuer.clone(),
                    key,
                    subjects: k.subjects,
                },
            );
        }
        anyhow::ensure!(!keys.is_empty(), "the trust file names no keys");
        Ok(Verifier {
            keys: Arc::new(keys),
            cache: Arc::default(),
            max_lifetime_secs: DEFAULT_MAX_LIFETIME.as_secs(),
        })
    }

    /// Refuse tokens living longer than `max` (default [`DEFAULT_MAX_LIFETIME`]).
    pub fn with_max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime_secs = max.as_secs();
        self.cache = Arc::default();
        self
    }

    /// The verifier a service is configured with: keys given in memory (tests) or the trust
    /// file (`--trusted-keys`, `CAREWOVEN_TRUSTED_KEYS`). One of them is required.
    pub fn configured(
        trust: Option<&TrustFile>,
        path: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        match (trust, path) {
            (Some(trust), _) => Self::new(trust),
            (None, Some(path)) => Self::from_file(path),
            (None, None) => Err(anyhow::anyhow!(
                "--trusted-keys (CAREWOVEN_TRUSTED_KEYS) is required: every call is authenticated"
            )),
        }
    }

    /// Read a trust file (JSON: `{"keys": [{"kid", "issuer", "public_key_pem"}]}`).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading trust file {}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| anyhow::anyhow!("trust file {}: {e}", path.display()))
    }

    /// A trust file's text, parsed and its keys loaded (what [`Verifier::from_file`] does
    /// with the file it reads).
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let trust: TrustFile = serde_json::from_str(text)?;
        Self::new(&trust)
    }

    /// The identity a token proves.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let now = now_secs();
        if let Some((identity, exp)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            && now <= exp.saturating_add(LEEWAY_SECS)
        {
            return Ok(identity.clone());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::BadSignature);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let trusted = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[trusted.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Claims>(token, &trusted.key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => TokenError::Expired,
                    K::ImmatureSignature => TokenError::NotYetValid,
                    K::InvalidSignature => TokenError::BadSignature,
                    K::InvalidAudience | K::InvalidIssuer => TokenError::WrongAudienceOrIssuer,
                    K::MissingRequiredClaim(c) => {
                        TokenError::BadClaims(format!("missing claim {c}"))
                    }
                    K::Json(_) | K::InvalidClaimFormat(_) => {
                        TokenError::BadClaims("claims of the wrong type".to_owned())
                    }
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        // `exp - iat` bounds what the issuer granted; `exp - now` what is left of it (a token
        // claiming an old `iat` with a far `exp` is refused too).
        let too_long = |span: u64| span > self.max_lifetime_secs;
        if too_long(claims.exp.saturating_sub(claims.iat))
            || too_long(claims.exp.saturating_sub(now).saturating_sub(LEEWAY_SECS))
        {
            return Err(TokenError::LifetimeTooLong {
                max_secs: self.max_lifetime_secs,
            });
        }
        // A citizens issuer signs citizen tokens only; an organisations issuer, the others.
        if let Some(identity) = crate::citizen::identity(token, trusted.subjects, &claims)? {
            return Ok(self.remember(token, identity, claims.exp));
        }
        let organisation = Code::parse("sub", &claims.sub)
            .map_err(|_| TokenError::BadClaims("sub is not an organisation code".to_owned()))?;
        let user = match &claims.user {
            Some(u) => Some(
                Code::parse("user", u)
                    .map_err(|_| TokenError::BadClaims("user is not a code".to_owned()))?,
            ),
            None => None,
        };
        let mut roles = Vec::new();
        for r in &claims.roles {
            roles.push(
                Role::parse(r)
                    .ok_or_else(|| TokenError::BadClaims(format!("unknown role {r:?}")))?,
            );
        }
        let identity = Identity {
            organisation,
            user,
            roles,
            citizen: None,
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, exp)| *exp >= now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), (identity.clone(), claims.exp));
        Ok(identity)
    }

    /// Remember a verified token's identity until it expires.
    fn remember(&self, token: &str, identity: Identity, exp: u64) -> Identity {
        let now = now_secs();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, exp)| *exp >= now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), (identity.clone(), exp));
        identity
    }
}

/// A token issuer holding an Ed25519 private key: the development and test identity
/// provider (`carectl token`, `./dev up`, the test suites).
#[derive(Clone)]
pub struct Issuer {
    kid: String,
    issuer: String,
    key: EncodingKey,
    public_key_pem: String,
    subjects: crate::citizen::Subjects,
}

/// A new issuer's files: its private key (keep secret) and the trust file for services.
pub struct IssuerFiles {
    pub private_key_pem: String,
    pub trust: TrustFile,
}

impl Issuer {
    /// Generate a fresh Ed25519 key pair.
    pub fn generate(kid: &str, issuer: &str) -> anyhow::Result<(Self, IssuerFiles)> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let private_key_pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the private key: {e}"))?
            .to_string();
        let public_key_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
        let me = Self::from_pem(kid, issuer, &private_key_pem, &public_key_pem)?;
        let trust = TrustFile {
            keys: vec![me.trusted_key()],
        };
        Ok((
            me,
            IssuerFiles {
                private_key_pem,
                trust,
            },
        ))
    }

    pub fn from_pem(
        kid: &str,
        issuer: &str,
        private_key_pem: &str,
        public_key_pem: &str,
    ) -> anyhow::Result<Self> {
        Ok(Issuer {
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            key: EncodingKey::from_ed_pem(private_key_pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("not an Ed25519 private key PEM: {e}"))?,
            public_key_pem: public_key_pem.to_owned(),
            subjects: crate::citizen::Subjects::default(),
        })
    }

    /// This issuer, for citizens: its trust-file entry says so, and it mints citizen tokens
    /// ([`crate::citizen::citizen_token`]).
    pub fn for_citizens(mut self) -> Self {
        self.subjects = crate::citizen::Subjects::Citizens;
        self
    }

    /// Whom this issuer's tokens identify.
    pub fn subjects(&self) -> crate::citizen::Subjects {
        self.subjects
    }

    /// The issuer its tokens name (`iss`).
    pub fn name(&self) -> &str {
        &self.issuer
    }

    /// The trust-file entry for this issuer's public key.
    pub fn trusted_key(&self) -> TrustedKey {
        TrustedKey {
            kid: self.kid.clone(),
            issuer: self.issuer.clone(),
            public_key_pem: self.public_key_pem.clone(),
            subjects: self.subjects,
        }
    }

    /// Sign claims as they are (tests use this to make expired or odd tokens).
    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| anyhow::anyhow!("signing a token: {e}"))
    }

    /// A token for `organisation`, valid for `ttl`.
    pub fn token(
        &self,
        organisation: &str,
        user: Option<&str>,
        roles: &[Role],
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = now_secs();
        self.sign(&Claims {
            iss: self.issuer.clone(),
            sub: organisation.to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: now + ttl.as_secs(),
            iat: now,
            nbf: None,
            user: user.map(str::to_owned),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        })
    }

    /// Write the private key and the trust file into `dir` (`issuer.key.pem`,
    /// `trusted-keys.json`), the private key readable by the owner only.
    pub fn write_files(dir: &Path, files: &IssuerFiles) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let key_path = dir.join("issuer.key.pem");
        write_private(&key_path, files.private_key_pem.as_bytes())?;
        std::fs::write(
            dir.join("trusted-keys.json"),
            serde_json::to_vec_pretty(&files.trust)?,
        )?;
        Ok(())
    }

    /// Load an issuer from a directory written by [`Issuer::write_files`].
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let private = std::fs::read_to_string(dir.join("issuer.key.pem"))
            .map_err(|e| anyhow::anyhow!("reading {}/issuer.key.pem: {e}", dir.display()))?;
        let trust: TrustFile = serde_json::from_str(
            &std::fs::read_to_string(dir.join("trusted-keys.json"))
                .map_err(|e| anyhow::anyhow!("reading {}/trusted-keys.json: {e}", dir.display()))?,
        )?;
        let first = trust
            .keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("{}/trusted-keys.json names no key", dir.display()))?;
        let issuer = Self::from_pem(&first.kid, &first.issuer, &private, &first.public_key_pem)?;
        Ok(match first.subjects {
            crate::citizen::Subjects::Citizens => issuer.for_citizens(),
            crate::citizen::Subjects::Organisations => issuer,
        })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(kid: &str) -> (Issuer, Verifier) {
        let (issuer, files) = Issuer::generate(kid, "test-issuer").expect("generate");
        let verifier = Verifier::new(&files.trust).expect("verifier");
        (issuer, verifier)
    }

    #[test]
    fn a_good_token_proves_its_organisation_and_roles() {
        let (issuer, verifier) = issuer("k1");
        let token = issuer
            .token(
                "RXX",
                Some("u1"),
                &[Role::Governance],
                Duration::from_secs(60),
            )
            .expect("token");
        let id = verifier.verify(&token).expect("valid");
        assert_eq!(id.organisation.as_str(), "RXX");
        assert!(id.has(Role::Governance));
    }

    #[test]
    fn forged_expired_and_unknown_key_tokens_are_refused() {
        let (issuer, verifier) = issuer("k1");
        let token = issuer
            .token("RXX", None, &[], Duration::from_secs(60))
            .expect("token");
        // Forged: the payload says another organisation, the signature is the original's.
        let parts: Vec<&str> = token.split('.').collect();
        let other = issuer
            .token("EVIL", None, &[], Duration::from_secs(60))
            .expect("token");
        let other_payload = other.split('.').nth(1).expect("payload");
        let forged = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
        assert_eq!(verifier.verify(&forged), Err(TokenError::BadSignature));

        let now = now_secs();
        let expired = issuer
            .sign(&Claims {
                iss: "test-issuer".into(),
                sub: "RXX".into(),
                aud: AUDIENCE.into(),
                exp: now - 3600,
                iat: now - 7200,
                nbf: None,
                user: None,
                roles: vec![],
            })
            .expect("sign");
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));

        // Same kid, another key: the signature does not verify.
        let (stranger, _) = issuer_with_kid("k1");
        let token = stranger
            .token("RXX", None, &[], Duration::from_secs(60))
            .expect("token");
        assert_eq!(verifier.verify(&token), Err(TokenError::BadSignature));
        // Unknown kid.
        let (stranger, _) = issuer_with_kid("k2");
        let token = stranger
            .token("RXX", None, &[], Duration::from_secs(60))
            .expect("token");
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));
        assert_eq!(verifier.verify("not-a-jwt"), Err(TokenError::Malformed));
    }

    fn claims(iat: u64, exp: u64) -> Claims {
        Claims {
            iss: "test-issuer".into(),
            sub: "RXX".into(),
            aud: AUDIENCE.into(),
            exp,
            iat,
            nbf: None,
            user: None,
            roles: vec![],
        }
    }

    #[test]
    fn a_token_living_longer_than_allowed_is_refused() {
        let (issuer, verifier) = issuer("k1");
        let now = now_secs();
        let hour = 3600;
        let too_long = Err(TokenError::LifetimeTooLong {
            max_secs: 12 * hour,
        });
        // Exactly the default lifetime is accepted; a second more is not.
        let ok = issuer.sign(&claims(now, now + 12 * hour)).expect("sign");
        assert!(verifier.verify(&ok).is_ok());
        let long = issuer
            .sign(&claims(now, now + 12 * hour + 1))
            .expect("sign");
        assert_eq!(verifier.verify(&long), too_long);
        assert_eq!(
            TokenError::LifetimeTooLong { max_secs: 1 }.reason(),
            "TOKEN_LIFETIME_TOO_LONG"
        );
        // An `iat` in the future does not buy a longer life: `exp - now` is bounded too.
        let ahead = issuer
            .sign(&claims(now + 6 * hour, now + 13 * hour))
            .expect("sign");
        assert!(matches!(
            verifier.verify(&ahead),
            Err(TokenError::LifetimeTooLong { .. })
        ));
        // Configurable per service.
        let strict = verifier
            .clone()
            .with_max_lifetime(Duration::from_secs(hour));
        assert!(matches!(
            strict.verify(&ok),
            Err(TokenError::LifetimeTooLong { .. })
        ));
        let short = issuer
            .token("RXX", None, &[], Duration::from_secs(hour))
            .expect("token");
        assert!(strict.verify(&short).is_ok());
    }

    fn issuer_with_kid(kid: &str) -> (Issuer, Verifier) {
        let (issuer, files) = Issuer::generate(kid, "test-issuer").expect("generate");
        (issuer, Verifier::new(&files.trust).expect("verifier"))
    }
}

/// A fixed issuer for tests and benchmarks only, like the command service's `TEST_KEY`: its
/// private key is public, so no deployment may trust it (`./dev up` generates its own). Only
/// with the `test-util` feature, which no release binary enables.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::{Issuer, TrustFile, Verifier};

    pub const TEST_KID: &str = "carewoven-test";
    pub const TEST_ISSUER: &str = "carewoven-test-issuer";
    const PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIA2nw12vhOkj514Xjwv6jjLWhI423x0i3MgIk52t7N9m
-----END PRIVATE KEY-----
";
    const PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAazorNnm+ZcmS4ZSPdtm0ufvn4uEpsvmpH/mmxrTbkoQ=
-----END PUBLIC KEY-----
";

    pub fn issuer() -> Issuer {
        Issuer::from_pem(TEST_KID, TEST_ISSUER, PRIVATE_KEY_PEM, PUBLIC_KEY_PEM)
            .expect("the embedded test key is a valid Ed25519 key")
    }

    pub fn trust() -> TrustFile {
        TrustFile {
            keys: vec![
                issuer().trusted_key(),
                crate::citizen::testing::issuer().trusted_key(),
            ],
        }
    }

    pub fn verifier() -> Verifier {
        Verifier::new(&trust()).expect("the embedded test key is valid")
    }
}
