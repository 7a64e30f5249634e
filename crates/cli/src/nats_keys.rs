//! `carectl keys nats`: one NATS nkey pair per Carewoven identity of `deploy/accounts.conf`.
//!
//! For each identity `<name>` the output directory holds `<name>.nk`, the seed (`SU...`,
//! owner-only: give it to that service in `CAREWOVEN_NATS_NKEY_SEED`), and `<name>.pub`, the
//! public key (`U...`). `public-keys.env` collects the public keys under the names the
//! server configurations read (`CAREWOVEN_NATS_<NAME>_NKEY=U...`). Seeds never leave the
//! directory and are never printed.
//!
//! An identity whose seed already exists is kept (its public files are rewritten from it),
//! so running the command again is safe and makes only what is missing; to rotate one
//! identity, remove its `.nk` and run again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

/// The identities, as named in `deploy/accounts.conf` (`CW_<NAME>`), with what each is for.
pub const IDENTITIES: [(&str, &str); 6] = [
    ("commands", "carewoven-commands"),
    ("views", "carewoven-views"),
    ("analyst", "carewoven-analyst"),
    ("gateway", "carewoven-gateway"),
    (
        "ops",
        "the operator (partners' consumers, stream information)",
    ),
    (
        "backup",
        "carewoven-admin backup and restore (snapshots of every stream)",
    ),
];

/// File collecting every public key as the server configurations' environment variables.
pub const PUBLIC_KEYS_ENV: &str = "public-keys.env";

/// One identity's key pair on disk.
#[derive(Debug)]
pub struct Identity {
    pub name: &'static str,
    pub public_key: String,
    /// The environment variable the server configurations read its public key from.
    pub env_var: String,
    pub seed_file: PathBuf,
    /// Made now (false: an existing seed was kept).
    pub created: bool,
}

/// The environment variable holding `name`'s public key, e.g. `CAREWOVEN_NATS_VIEWS_NKEY`.
pub fn env_var(name: &str) -> String {
    format!("CAREWOVEN_NATS_{}_NKEY", name.to_ascii_uppercase())
}

/// Make every missing identity in `out` and return all of them.
pub fn generate(out: &Path) -> Result<Vec<Identity>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut identities = Vec::new();
    for (name, _) in IDENTITIES {
        let seed_file = out.join(format!("{name}.nk"));
        let (pair, created) = if seed_file.exists() {
            (read_seed(&seed_file)?, false)
        } else {
            let pair = nkeys::KeyPair::new_user();
            let seed = pair
                .seed()
                .map_err(|e| anyhow::anyhow!("a new nkey has no seed: {e}"))?;
            write_new_private(&seed_file, format!("{seed}\n").as_bytes())?;
            (pair, true)
        };
        let public_key = pair.public_key();
        std::fs::write(out.join(format!("{name}.pub")), format!("{public_key}\n"))
            .with_context(|| format!("writing {name}.pub in {}", out.display()))?;
        identities.push(Identity {
            name,
            env_var: env_var(name),
            public_key,
            seed_file,
            created,
        });
    }
    let env: String = identities
        .iter()
        .map(|i| format!("{}={}\n", i.env_var, i.public_key))
        .collect();
    std::fs::write(out.join(PUBLIC_KEYS_ENV), env)
        .with_context(|| format!("writing {PUBLIC_KEYS_ENV} in {}", out.display()))?;
    Ok(identities)
}

/// A user seed from its file; anything else is refused (a public key, another kind of key).
fn read_seed(path: &Path) -> Result<nkeys::KeyPair> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let pair = nkeys::KeyPair::from_seed(text.trim())
        .map_err(|e| anyhow::anyhow!("{} does not hold an nkey seed: {e}", path.display()))?;
    if pair.key_pair_type() != nkeys::KeyPairType::User {
        bail!(
            "{} holds a seed that is not a user's (SU...)",
            path.display()
        );
    }
    Ok(pair)
}

/// Create `path` owner-only; an existing file is never overwritten.
#[cfg(unix)]
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(not(unix))]
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// What `carectl keys nats` prints: public keys and file names, never a seed.
pub fn report(out: &Path, identities: &[Identity], as_json: bool) -> String {
    if as_json {
        let list: Vec<_> = identities
            .iter()
            .map(|i| {
                json!({"identity": i.name, "public_key": i.public_key, "env": i.env_var,
                       "seed_file": i.seed_file.display().to_string(), "created": i.created})
            })
            .collect();
        return json!({"directory": out.display().to_string(), "identities": list,
                      "public_keys_env": out.join(PUBLIC_KEYS_ENV).display().to_string()})
        .to_string();
    }
    let mut text = format!("NATS identities in {}:\n", out.display());
    for i in identities {
        let what = IDENTITIES
            .iter()
            .find(|(n, _)| *n == i.name)
            .map_or("", |(_, w)| w);
        text.push_str(&format!(
            "  {:<9} {}  {}  ({}; {})\n",
            i.name,
            i.public_key,
            i.env_var,
            what,
            if i.created { "new" } else { "kept" }
        ));
    }
    text.push_str(&format!(
        "the server reads the public keys (all in {}); give each service its own seed \
         (<name>.nk, owner-only) in CAREWOVEN_NATS_NKEY_SEED",
        out.join(PUBLIC_KEYS_ENV).display()
    ));
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn makes_each_identity_once_and_keeps_existing_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path()).unwrap();
        assert_eq!(first.len(), IDENTITIES.len());
        assert!(
            first
                .iter()
                .all(|i| i.created && i.public_key.starts_with('U'))
        );
        let mut keys: Vec<&str> = first.iter().map(|i| i.public_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys.len(),
            IDENTITIES.len(),
            "every identity has its own key"
        );

        // Rotating one identity: remove its seed and run again.
        std::fs::remove_file(dir.path().join("views.nk")).unwrap();
        let second = generate(dir.path()).unwrap();
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.name, b.name);
            if a.name == "views" {
                assert!(b.created);
                assert_ne!(a.public_key, b.public_key);
            } else {
                assert!(!b.created);
                assert_eq!(a.public_key, b.public_key);
            }
        }
        let env = std::fs::read_to_string(dir.path().join(PUBLIC_KEYS_ENV)).unwrap();
        for i in &second {
            assert!(env.contains(&format!("{}={}\n", i.env_var, i.public_key)));
            let seed = std::fs::read_to_string(&i.seed_file).unwrap();
            assert!(seed.starts_with("SU"));
            assert!(!env.contains(seed.trim()), "no seed in the public file");
            let public = std::fs::read_to_string(dir.path().join(format!("{}.pub", i.name)));
            assert_eq!(public.unwrap().trim(), i.public_key);
        }
        for as_json in [false, true] {
            let text = report(dir.path(), &second, as_json);
            for i in &second {
                let seed = std::fs::read_to_string(&i.seed_file).unwrap();
                assert!(!text.contains(seed.trim()), "seeds are never printed");
                assert!(text.contains(&i.public_key));
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn seeds_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for i in generate(dir.path()).unwrap() {
            let mode = std::fs::metadata(&i.seed_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is readable by others",
                i.seed_file.display()
            );
        }
    }

    #[test]
    fn refuses_a_file_that_is_not_a_user_seed() {
        let dir = tempfile::tempdir().unwrap();
        let public = nkeys::KeyPair::new_user().public_key();
        std::fs::write(dir.path().join("commands.nk"), public).unwrap();
        assert!(generate(dir.path()).is_err());
    }
}
