//! Citizen identity: a person authenticated by an identity provider trusted for citizens
//! (as NHS login is), acting for themselves or as a carer the person named as their proxy.
//!
//! A trust-file key says whom its tokens identify (`"subjects": "organisations"`, the
//! default, or `"citizens"`). A citizen token is accepted only from a citizens key and an
//! organisation token only from an organisations key: a citizen issuer cannot mint
//! organisation tokens, nor the other way round (`TOKEN_WRONG_ISSUER_KIND`). Besides `iss`,
//! `sub` (the provider's opaque subject id), `aud`, `exp`, `iat` and optional `nbf`, checked
//! as for every token, a citizen token carries `nhs_number` (with a valid check digit) and
//! `identity_level` (`P0`, `P5`, `P9`), and no `user` or `roles`.
//!
//! The caller then acts as the reserved organisation `CITIZEN` with, as its user, a
//! pseudonym derived from the issuer and subject ([`pseudonym`]): events and audit records
//! never carry the NHS number or a name for who acted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carewoven_domain::organisation::CITIZEN_CODE;
use carewoven_domain::values::{Code, NhsNumber};
use carewoven_governance::{Citizen, Governance, Identity, IdentityLevel, Standing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::token::{AUDIENCE, Claims, Issuer, TokenError};

/// Whom a trusted key's tokens identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subjects {
    /// Organisations (`sub` is the organisation code): every trust file before citizens.
    #[default]
    Organisations,
    /// People (`sub` is the provider's subject id, with `nhs_number` and `identity_level`).
    Citizens,
}

/// A citizen token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CitizenClaims {
    pub iss: String,
    /// The identity provider's opaque subject id (never the NHS number).
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub nhs_number: String,
    /// `P0`, `P5` or `P9`.
    pub identity_level: String,
}

/// The claims that make a token a citizen's, read from a token whose signature and standard
/// claims have already been verified.
#[derive(Deserialize)]
struct CitizenPart {
    #[serde(default)]
    nhs_number: Option<serde_json::Value>,
    #[serde(default)]
    identity_level: Option<serde_json::Value>,
}

/// The longest subject id accepted.
const SUBJECT_MAX: usize = 256;

/// The pseudonym a citizen acts under: `CIT-` and 24 hex digits of a hash of the issuer and
/// the subject. Stable for a person's identity at one provider; it names nobody, and is not
/// derived from the NHS number.
pub fn pseudonym(issuer: &str, subject: &str) -> Option<Code> {
    let mut hash = Sha256::new();
    hash.update(b"carewoven.citizen.v1\0");
    hash.update(issuer.as_bytes());
    hash.update(b"\0");
    hash.update(subject.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Code::parse("user", &format!("CIT-{hex}")).ok()
}

/// The identity a verified token proves if it is a citizen's (`None`: an organisation's,
/// to be read by the caller), refusing a token of the other kind than its key's.
pub(crate) fn identity(
    token: &str,
    subjects: Subjects,
    claims: &Claims,
) -> Result<Option<Identity>, TokenError> {
    // The signature over these very bytes has just been checked.
    let part: CitizenPart = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| TokenError::BadClaims("claims of the wrong type".to_owned()))?;
    let citizen_token = part.nhs_number.is_some() || part.identity_level.is_some();
    match (subjects, citizen_token) {
        (Subjects::Organisations, false) => {
            if claims.sub.trim().eq_ignore_ascii_case(CITIZEN_CODE) {
                return Err(TokenError::BadClaims(format!(
                    "sub {CITIZEN_CODE} is reserved for citizen identities"
                )));
            }
            Ok(None)
        }
        (Subjects::Organisations, true) | (Subjects::Citizens, false) => {
            Err(TokenError::WrongIssuerKind)
        }
        (Subjects::Citizens, true) => {
            if claims.user.is_some() || !claims.roles.is_empty() {
                return Err(TokenError::BadClaims(
                    "a citizen token carries no user or roles".to_owned(),
                ));
            }
            let text = |v: Option<serde_json::Value>| match v {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            };
            let nhs_number = text(part.nhs_number)
                .and_then(|raw| NhsNumber::parse("nhs_number", &raw).ok())
                .ok_or_else(|| {
                    TokenError::BadClaims("nhs_number is not a valid NHS number".to_owned())
                })?;
            let level = text(part.identity_level)
                .and_then(|raw| IdentityLevel::parse(&raw))
                .ok_or_else(|| {
                    TokenError::BadClaims("identity_level must be P0, P5 or P9".to_owned())
                })?;
            let subject = claims.sub.trim();
            if subject.is_empty() || subject.len() > SUBJECT_MAX {
                return Err(TokenError::BadClaims(format!(
                    "sub must be 1 to {SUBJECT_MAX} characters"
                )));
            }
            let pseudonym = pseudonym(&claims.iss, subject)
                .ok_or_else(|| TokenError::BadClaims("no pseudonym".to_owned()))?;
            Ok(Some(Identity::citizen(
                Citizen {
                    nhs_number,
                    level,
                    subject: subject.to_owned(),
                },
                pseudonym,
            )))
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A citizen token from `issuer` (which must be a citizens issuer) for the person with
/// `nhs_number`, proven to `level`, with the provider's `subject` id, valid for `ttl`.
pub fn citizen_token(
    issuer: &Issuer,
    subject: &str,
    nhs_number: &NhsNumber,
    level: IdentityLevel,
    ttl: Duration,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        issuer.subjects() == Subjects::Citizens,
        "this issuer is trusted for organisations, not citizens (carectl keys generate --citizens)"
    );
    let now = now_secs();
    issuer.sign(&CitizenClaims {
        iss: issuer.name().to_owned(),
        sub: subject.to_owned(),
        aud: AUDIENCE.to_owned(),
        exp: now + ttl.as_secs(),
        iat: now,
        nbf: None,
        nhs_number: nhs_number.as_str().to_owned(),
        identity_level: level.as_str().to_owned(),
    })
}

/// A citizen asking about "my own record" (an empty `person_id`): the person whose current
/// NHS number is theirs. `None` when the caller is not a citizen or named a person (the
/// caller parses `person_id` as usual). A citizen who is no registered person gets the nil
/// id, which every decision then refuses exactly as it refuses a person who does not exist.
pub async fn own_record(
    access: &crate::AccessIndex,
    who: &Identity,
    person_id: &str,
    deadline: Duration,
) -> Result<Option<Uuid>, tonic::Status> {
    let Some(citizen) = who.citizen.as_ref().filter(|_| person_id.trim().is_empty()) else {
        return Ok(None);
    };
    // A fresh registration is found: "not found" is confirmed against the log's end.
    let own = access
        .check(deadline, |g| {
            g.own_person(citizen)
                .ok_or_else(|| carewoven_governance::Denial::new("NOT_FOUND", "not found"))
        })
        .await;
    match own {
        Ok(person) => Ok(Some(person)),
        Err(crate::AccessError::Denied(_)) => Ok(Some(Uuid::nil())),
        Err(e) => Err(e.to_status()),
    }
}

/// The audit detail of an access by `who` to `person`: `rpc`, and for a citizen whether
/// they acted as the person themself (`self`) or as a proxy (`proxy` and the carer's
/// pseudonym). Never an NHS number.
pub fn audit_detail(g: &Governance, who: &Identity, person: Uuid, rpc: &str) -> String {
    let Some(citizen) = &who.citizen else {
        return rpc.to_owned();
    };
    let user = who.user.as_ref().map(Code::as_str).unwrap_or_default();
    match g.standing(citizen, person) {
        Some(Standing::Person) => format!("{rpc} self"),
        Some(Standing::Proxy(_)) => format!("{rpc} proxy {user}"),
        None => format!("{rpc} citizen"),
    }
}

/// A fixed citizens issuer for tests and benchmarks only, beside [`crate::token::testing`]:
/// its private key is public, so no deployment may trust it (`./dev up` generates its own).
/// Only with the `test-util` feature, which no release binary enables.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::time::Duration;

    use carewoven_domain::values::NhsNumber;
    use carewoven_governance::IdentityLevel;

    use super::{CitizenClaims, citizen_token};
    use crate::token::{AUDIENCE, Issuer};

    pub const TEST_CITIZEN_KID: &str = "carewoven-test-citizens";
    pub const TEST_CITIZEN_ISSUER: &str = "carewoven-test-citizen-issuer";
    const PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGWqn/4bcoto6D4BwGF8K12vntO7VAJEUdAJOwvCQYs1
-----END PRIVATE KEY-----
";
    const PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA79N1gvpyLdtpNLkMUcYYmGxyt4NOt6CXxYiTI+WGlho=
-----END PUBLIC KEY-----
";

    /// The test citizens issuer (in [`crate::token::testing::trust`]).
    pub fn issuer() -> Issuer {
        Issuer::from_pem(
            TEST_CITIZEN_KID,
            TEST_CITIZEN_ISSUER,
            PRIVATE_KEY_PEM,
            PUBLIC_KEY_PEM,
        )
        .expect("the embedded test key is a valid Ed25519 key")
        .for_citizens()
    }

    /// The subject id the test provider gives the person with `nhs_number`: opaque, and not
    /// the NHS number.
    pub fn subject(nhs_number: &str) -> String {
        let tag: u64 = nhs_number.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("test-subject-{tag:016x}")
    }

    /// A citizen token for the person with `nhs_number` at `level`, valid for an hour.
    pub fn token(nhs_number: &str, level: IdentityLevel) -> String {
        let nhs = NhsNumber::parse("nhs_number", nhs_number).expect("a valid test NHS number");
        citizen_token(
            &issuer(),
            &subject(nhs_number),
            &nhs,
            level,
            Duration::from_secs(3600),
        )
        .expect("the test issuer signs")
    }

    /// The claims [`token`] signs, to alter before signing with another key.
    pub fn claims(nhs_number: &str, level: IdentityLevel) -> CitizenClaims {
        let now = super::now_secs();
        CitizenClaims {
            iss: TEST_CITIZEN_ISSUER.to_owned(),
            sub: subject(nhs_number),
            aud: AUDIENCE.to_owned(),
            exp: now + 3600,
            iat: now,
            nbf: None,
            nhs_number: nhs_number.to_owned(),
            identity_level: level.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TrustFile, Verifier};
    use carewoven_governance::Role;

    const NHS: &str = "9990001235";

    fn verifier() -> Verifier {
        crate::token::testing::verifier()
    }

    #[test]
    fn a_citizen_token_proves_the_person_under_a_pseudonym() {
        let id = verifier()
            .verify(&testing::token(NHS, IdentityLevel::P9))
            .expect("valid");
        assert_eq!(id.organisation.as_str(), CITIZEN_CODE);
        assert!(id.roles.is_empty());
        let citizen = id.citizen.as_ref().expect("a citizen");
        assert_eq!(citizen.nhs_number.as_str(), NHS);
        assert_eq!(citizen.level, IdentityLevel::P9);
        let user = id.user.as_ref().expect("a pseudonym");
        assert_eq!(
            Some(user),
            pseudonym(testing::TEST_CITIZEN_ISSUER, &testing::subject(NHS)).as_ref()
        );
        assert!(user.as_str().starts_with("CIT-") && !user.as_str().contains(NHS));
        // Cached, the same identity.
        let again = verifier()
            .verify(&testing::token(NHS, IdentityLevel::P9))
            .expect("valid");
        assert_eq!(again, id);
        // Another subject, another pseudonym.
        assert_ne!(pseudonym("iss", "a"), pseudonym("iss", "b"));
        assert_ne!(pseudonym("iss-1", "a"), pseudonym("iss-2", "a"));
    }

    #[test]
    fn each_issuer_mints_only_its_own_kind() {
        let v = verifier();
        // A citizen's claims signed by the organisations key (as its issuer).
        let forged = crate::token::testing::issuer()
            .sign(&CitizenClaims {
                iss: crate::token::testing::TEST_ISSUER.to_owned(),
                ..testing::claims(NHS, IdentityLevel::P9)
            })
            .expect("sign");
        assert_eq!(v.verify(&forged), Err(TokenError::WrongIssuerKind));
        // An organisation's claims signed by the citizens key.
        let org = testing::issuer()
            .token(
                "RXX",
                Some("u1"),
                &[Role::Governance],
                Duration::from_secs(60),
            )
            .expect("sign");
        assert_eq!(v.verify(&org), Err(TokenError::WrongIssuerKind));
        assert_eq!(
            TokenError::WrongIssuerKind.reason(),
            "TOKEN_WRONG_ISSUER_KIND"
        );
        // The organisations issuer may not name the reserved code either.
        let reserved = crate::token::testing::issuer()
            .token("CITIZEN", None, &[], Duration::from_secs(60))
            .expect("sign");
        assert!(matches!(v.verify(&reserved), Err(TokenError::BadClaims(_))));
        // A citizens issuer refuses to mint for organisations' issuers, and the helper
        // refuses an organisations issuer.
        assert!(
            citizen_token(
                &crate::token::testing::issuer(),
                "s",
                &NhsNumber::parse("n", NHS).expect("nhs"),
                IdentityLevel::P9,
                Duration::from_secs(60),
            )
            .is_err()
        );
    }

    #[test]
    fn citizen_claims_are_checked() {
        let v = verifier();
        let sign = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut claims =
                serde_json::to_value(testing::claims(NHS, IdentityLevel::P9)).expect("json");
            edit(&mut claims);
            testing::issuer().sign(&claims).expect("sign")
        };
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            matches!(v.verify(&sign(edit)), Err(TokenError::BadClaims(_)))
        };
        assert!(
            bad(&|c| c["nhs_number"] = "9990001236".into()),
            "check digit"
        );
        assert!(bad(&|c| c["nhs_number"] = 9990001235u64.into()), "a number");
        assert!(bad(&|c| c["identity_level"] = "P3".into()), "level");
        assert!(bad(&|c| c["user"] = "someone".into()), "user");
        assert!(
            bad(&|c| c["roles"] = serde_json::json!(["governance"])),
            "roles"
        );
        assert!(bad(&|c| c["sub"] = "".into()), "empty subject");
        assert!(bad(&|c| c["sub"] = "x".repeat(300).into()), "long subject");
        // A level alone still makes it a citizen token (refused without an NHS number).
        assert!(bad(&|c| {
            c.as_object_mut().expect("object").remove("nhs_number");
        }));
        // The standard claims are checked as for every token.
        let expired = sign(&|c| {
            c["exp"] = 1_000.into();
            c["iat"] = 900.into();
        });
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        let other_aud = sign(&|c| c["aud"] = "elsewhere".into());
        assert_eq!(v.verify(&other_aud), Err(TokenError::WrongAudienceOrIssuer));
        // Every level is accepted; what it allows is governance's business.
        for level in [IdentityLevel::P0, IdentityLevel::P5] {
            let id = v.verify(&testing::token(NHS, level)).expect("valid");
            assert_eq!(id.citizen.expect("citizen").level, level);
        }
    }

    #[test]
    fn trust_files_without_subjects_mean_organisations() {
        let json = r#"{"keys": [{"kid": "k", "issuer": "i", "public_key_pem": "p"}]}"#;
        let trust: TrustFile = serde_json::from_str(json).expect("parse");
        assert_eq!(trust.keys[0].subjects, Subjects::Organisations);
        let json = r#"{"keys": [{"kid": "k", "issuer": "i", "public_key_pem": "p", "subjects": "citizens"}]}"#;
        let trust: TrustFile = serde_json::from_str(json).expect("parse");
        assert_eq!(trust.keys[0].subjects, Subjects::Citizens);
        let json = r#"{"keys": [{"kid": "k", "issuer": "i", "public_key_pem": "p", "subjects": "robots"}]}"#;
        assert!(serde_json::from_str::<TrustFile>(json).is_err());
        // The test citizens issuer's entry says citizens.
        assert_eq!(testing::issuer().trusted_key().subjects, Subjects::Citizens);
    }
}
