//! carectl: send every Carewoven command, and read every view, from the terminal.
//!
//! Exit codes: 0 accepted (or answered); 2 refused (INVALID_ARGUMENT, NOT_FOUND,
//! ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE, UNAUTHENTICATED, PERMISSION_DENIED; also
//! bad command-line usage);
//! 3 retryable (ABORTED, UNAVAILABLE, cannot connect, not ready); 1 anything else.

mod auth;
mod cli;
mod demo;
mod enums;
mod health;
mod nats_keys;
mod output;
mod parse;
mod reads;
mod registry;
mod requests;
mod rpc;
mod seed;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use carewoven_access::Issuer;
use carewoven_governance::Role;
use clap::Parser;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::auth::Auth;
use crate::cli::{Cli, Command, Global, Keys};
use crate::rpc::Ctx;

/// Exit code when the server cannot be reached or is not ready.
const UNREACHABLE: u8 = 3;
/// Exit code for a refusal or bad usage.
const REFUSED: u8 = 2;
/// What to say when a call without credentials is refused as unauthenticated.
const CREDENTIALS_HINT: &str = "every call needs a bearer token: --token (CAREWOVEN_TOKEN), or \
in development --issuer-dir (CAREWOVEN_ISSUER_DIR)";
/// The acting organisation when neither --org nor --token names one.
const DEFAULT_ORG: &str = "DEMO-HOSP";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Cli { global: g, command } = Cli::parse();
    let timeout = Duration::from_secs(g.timeout_secs);

    match command {
        Command::WaitReady => match health::wait_ready(&g.server, timeout).await {
            Ok(ready) => {
                if g.json {
                    println!(
                        "{}",
                        json!({"ready": true, "server": g.server, "service": ready.service,
                               "waited_ms": ready.waited.as_millis(), "attempts": ready.attempts})
                    );
                } else {
                    println!(
                        "ready: {} is SERVING at {} (after {:.1}s, {} attempt(s))",
                        ready.service,
                        g.server,
                        ready.waited.as_secs_f64(),
                        ready.attempts
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                output::report_error(&e, g.json);
                ExitCode::from(UNREACHABLE)
            }
        },
        Command::Keys(Keys::Nats { out }) => match nats_keys::generate(&out) {
            Ok(identities) => {
                println!("{}", nats_keys::report(&out, &identities, g.json));
                ExitCode::SUCCESS
            }
            Err(e) => {
                output::report_error(&e, g.json);
                ExitCode::from(REFUSED)
            }
        },
        Command::Keys(Keys::Trust { into, from }) => match trust_keys(&into, &from) {
            Ok(kids) => {
                if g.json {
                    println!(
                        "{}",
                        json!({"trust_file": into.display().to_string(), "kids": kids})
                    );
                } else {
                    println!("{} now trusts: {}", into.display(), kids.join(", "));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                output::report_error(&e, g.json);
                ExitCode::from(REFUSED)
            }
        },
        Command::Keys(Keys::Generate {
            out,
            kid,
            issuer,
            citizens,
        }) => {
            let (default_kid, default_issuer) = if citizens {
                ("carewoven-dev-citizens", "carewoven-dev-citizen-issuer")
            } else {
                ("carewoven-dev", "carewoven-dev-issuer")
            };
            let kid = kid.unwrap_or_else(|| default_kid.to_owned());
            let issuer = issuer.unwrap_or_else(|| default_issuer.to_owned());
            match generate_keys(&out, &kid, &issuer, citizens) {
                Ok(()) => {
                    if g.json {
                        println!(
                            "{}",
                            json!({"directory": out.display().to_string(), "kid": kid,
                                   "issuer": issuer, "citizens": citizens,
                                   "private_key": out.join("issuer.key.pem").display().to_string(),
                                   "trusted_keys": out.join("trusted-keys.json").display().to_string()})
                        );
                    } else {
                        println!(
                            "development token issuer `{issuer}` (key id {kid}) written to {}:\n  \
                             issuer.key.pem     private key (owner-only; keep it secret)\n  \
                             trusted-keys.json  give it to the services: \
                             CAREWOVEN_TRUSTED_KEYS={}\n\
                             mint tokens with: carectl --issuer-dir {} ...",
                            out.display(),
                            out.join("trusted-keys.json").display(),
                            out.display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    output::report_error(&e, g.json);
                    ExitCode::from(REFUSED)
                }
            }
        }
        Command::Token(t) if t.citizen => {
            let ttl = Duration::from_secs(t.ttl_secs);
            match mint_citizen(&g, &t, ttl) {
                Ok((subject, token)) => {
                    if g.json {
                        println!(
                            "{}",
                            json!({"token": token, "organisation": carewoven_domain::organisation::CITIZEN_CODE,
                                   "subject": subject, "identity_level": t.identity_level.level().as_str(),
                                   "ttl_secs": t.ttl_secs})
                        );
                    } else {
                        println!("{token}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    output::report_error(&e, g.json);
                    ExitCode::from(REFUSED)
                }
            }
        }
        Command::Token(t) => {
            let roles: Vec<Role> = t.roles.iter().map(|r| r.role()).collect();
            match mint(&g, &roles, Duration::from_secs(t.ttl_secs)) {
                Ok((org, token)) => {
                    if g.json {
                        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                        println!(
                            "{}",
                            json!({"token": token, "organisation": org, "user": g.user,
                                   "roles": roles, "ttl_secs": t.ttl_secs})
                        );
                    } else {
                        println!("{token}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    output::report_error(&e, g.json);
                    ExitCode::from(REFUSED)
                }
            }
        }
        Command::Demo(d) => {
            if let Some(n) = &d.nhs_number
                && let Err(e) = demo::check_nhs_number(n)
            {
                output::report_error(&e, g.json);
                return ExitCode::from(REFUSED);
            }
            let auth = match minting_auth(&g, "demo") {
                Ok(a) => a,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::from(REFUSED);
                }
            };
            let mut client = match rpc::connect(&g.server, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::from(UNREACHABLE);
                }
            };
            let day = d.day.unwrap_or_else(parse::today);
            demo::run(
                &mut client,
                &auth,
                &g.server,
                timeout,
                g.json,
                day,
                d.nhs_number,
            )
            .await
        }
        Command::Seed(s) => {
            let anchor = s.anchor_day.unwrap_or_else(parse::today);
            if anchor > parse::today() {
                output::report_error(
                    &anyhow::anyhow!("--anchor-day cannot be in the future"),
                    g.json,
                );
                return ExitCode::from(REFUSED);
            }
            let auth = match minting_auth(&g, "seed") {
                Ok(a) => a,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::from(REFUSED);
                }
            };
            let client = match rpc::connect(&g.server, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::from(UNREACHABLE);
                }
            };
            let options = seed::Options {
                people: s.people,
                seed: s.seed,
                days: s.days,
                concurrency: usize::try_from(s.concurrency).unwrap_or(16),
                anchor,
                json: g.json,
                timeout,
            };
            seed::run(client, auth, options).await
        }
        Command::Read(read) => reads::run(g, read, timeout).await,
        command => single(g, command, timeout).await,
    }
}

/// One RPC subcommand, with the token for its acting organisation.
async fn single(g: Global, command: Command, timeout: Duration) -> ExitCode {
    let command_id = g.command_id.unwrap_or_else(Uuid::now_v7);
    let registry = matches!(command, Command::Org(_));
    let prepared = Auth::new(g.token.as_deref(), g.issuer_dir.as_deref()).and_then(|auth| {
        let org = acting_org(&g, &auth, registry)?;
        Ok((auth, org))
    });
    let (auth, organisation) = match prepared {
        Ok(p) => p,
        Err(e) => {
            output::report_error(&e, g.json);
            return ExitCode::from(REFUSED);
        }
    };
    // A citizen acts under the pseudonym the server derives from their token.
    let user = if auth.is_citizen_token() {
        String::new()
    } else {
        g.user.clone()
    };
    let ctx = Ctx {
        command_id,
        correlation_id: g.correlation_id,
        causation_id: g.causation_id,
        organisation,
        user,
        occurred_at: g.occurred_at.map(parse::timestamp),
    };
    let request = match requests::build(command, &ctx) {
        Ok(r) => r,
        Err(e) => {
            output::report_error(&e, g.json);
            return ExitCode::FAILURE;
        }
    };
    let roles: &[Role] = if request.is_registry() {
        &[Role::Governance]
    } else {
        &[]
    };
    let token = match auth.token(&ctx.organisation, &ctx.user, roles) {
        Ok(t) => t,
        Err(e) => {
            output::report_error(&e, g.json);
            return ExitCode::from(REFUSED);
        }
    };
    let mut client = match rpc::connect(&g.server, timeout).await {
        Ok(c) => c,
        Err(e) => {
            output::report_error(&e, g.json);
            if !g.json {
                eprintln!("command id: {command_id} (nothing was sent)");
            }
            return ExitCode::from(UNREACHABLE);
        }
    };
    match request.send(&mut client, timeout, token.as_deref()).await {
        Ok(reply) => {
            output::print_reply(&reply, g.json);
            ExitCode::SUCCESS
        }
        Err(status) => {
            let code = output::report_status(&status, command_id, g.json);
            if status.code() == Code::Unauthenticated && auth.is_none() && !g.json {
                eprintln!("hint: {CREDENTIALS_HINT}");
            }
            code
        }
    }
}

/// The organisation a single command acts as: --org, else the one the --token names, else
/// the default (the registrar for registry commands).
fn acting_org(g: &Global, auth: &Auth, registry: bool) -> anyhow::Result<String> {
    match (&g.org, auth.token_organisation()) {
        (Some(org), Some(named)) if *org != named => anyhow::bail!(
            "--org {org} is not the organisation the token names ({named}); a token acts for \
             its own organisation only"
        ),
        (Some(org), _) => Ok(org.clone()),
        (None, Some(named)) => Ok(named),
        (None, None) if registry => Ok(registry::REGISTRAR.to_owned()),
        (None, None) => Ok(DEFAULT_ORG.to_owned()),
    }
}

/// Credentials for `demo` and `seed`, which act as several organisations: --issuer-dir only.
fn minting_auth(g: &Global, what: &str) -> anyhow::Result<Auth> {
    let Some(dir) = &g.issuer_dir else {
        anyhow::bail!(
            "{what} acts as several organisations and mints a token for each: give \
             --issuer-dir (CAREWOVEN_ISSUER_DIR), a development issuer the services trust \
             (carectl keys generate)"
        );
    };
    Auth::new(None, Some(dir))
}

/// `carectl token`: a token for --org from --issuer-dir.
fn mint(g: &Global, roles: &[Role], ttl: Duration) -> anyhow::Result<(String, String)> {
    let Some(dir) = &g.issuer_dir else {
        anyhow::bail!(
            "carectl token mints with a development issuer: give --issuer-dir (CAREWOVEN_ISSUER_DIR)"
        );
    };
    let Some(org) = &g.org else {
        anyhow::bail!("name the organisation the token is for: --org (CAREWOVEN_ORG)");
    };
    let issuer = Issuer::from_dir(dir)?;
    anyhow::ensure!(
        issuer.subjects() == carewoven_access::citizen::Subjects::Organisations,
        "{} is an issuer for citizens: mint with --citizen, or use an organisations issuer",
        dir.display()
    );
    let user = (!g.user.is_empty()).then_some(g.user.as_str());
    Ok((org.clone(), issuer.token(org, user, roles, ttl)?))
}

/// `carectl token --citizen`: a citizen token from --issuer-dir (a citizens issuer); returns
/// the subject id it names and the token.
fn mint_citizen(g: &Global, t: &cli::TokenArgs, ttl: Duration) -> anyhow::Result<(String, String)> {
    let Some(dir) = &g.issuer_dir else {
        anyhow::bail!(
            "carectl token --citizen mints with a development citizens issuer: give --issuer-dir \
             (carectl keys generate --citizens)"
        );
    };
    let raw = t.nhs_number.as_deref().unwrap_or_default();
    let nhs = carewoven_domain::values::NhsNumber::parse("--nhs-number", raw)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        nhs.is_test_number(),
        "--nhs-number: the development issuer mints for test-range numbers (999...) only"
    );
    let issuer = Issuer::from_dir(dir)?;
    let subject = t
        .subject
        .clone()
        .unwrap_or_else(|| format!("dev-{}", Uuid::now_v7()));
    let token = carewoven_access::citizen::citizen_token(
        &issuer,
        &subject,
        &nhs,
        t.identity_level.level(),
        ttl,
    )?;
    Ok((subject, token))
}

/// `carectl keys trust`: add the keys of `from` to the trust file `into`; returns every key id
/// it then trusts.
fn trust_keys(into: &Path, from: &[std::path::PathBuf]) -> anyhow::Result<Vec<String>> {
    use carewoven_access::token::TrustFile;
    let read = |path: &Path| -> anyhow::Result<TrustFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let mut trust = if into.exists() {
        read(into)?
    } else {
        TrustFile::default()
    };
    for path in from {
        for key in read(path)?.keys {
            match trust.keys.iter_mut().find(|k| k.kid == key.kid) {
                Some(known) if known.public_key_pem.trim() != key.public_key_pem.trim() => {
                    anyhow::bail!(
                        "key id {} from {} is already trusted in {} with another key; give one of \
                         the issuers another --kid",
                        key.kid,
                        path.display(),
                        into.display()
                    );
                }
                Some(known) => *known = key,
                None => trust.keys.push(key),
            }
        }
    }
    // The services must be able to load it.
    carewoven_access::Verifier::new(&trust)?;
    let tmp = into.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&trust)?)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, into).map_err(|e| anyhow::anyhow!("writing {}: {e}", into.display()))?;
    Ok(trust.keys.into_iter().map(|k| k.kid).collect())
}

/// `carectl keys generate`: a fresh development issuer, never over an existing one.
fn generate_keys(out: &Path, kid: &str, issuer: &str, citizens: bool) -> anyhow::Result<()> {
    for name in ["issuer.key.pem", "trusted-keys.json"] {
        let path = out.join(name);
        anyhow::ensure!(
            !path.exists(),
            "{} already exists; refusing to overwrite a token issuer (tokens it signed would \
             stop verifying). Remove it first to start again",
            path.display()
        );
    }
    let (generated, mut files) = Issuer::generate(kid, issuer)?;
    if citizens {
        files.trust.keys = vec![generated.for_citizens().trusted_key()];
    }
    Issuer::write_files(out, &files)
        .map_err(|e| anyhow::anyhow!("writing the issuer into {}: {e}", out.display()))
}
