//! Test kit: a real nats-server per test, on a free loopback port, with a fresh store
//! directory that is removed afterwards; Carewoven's services started in-process and waited
//! on until healthy ([`service`]); the NATS identities of `deploy/` ([`broker`]).
//!
//! The binary is the pinned one the justfile installs (`.tools/venv/bin/nats-server`), or
//! whatever `CAREWOVEN_NATS_SERVER` names. Nothing here depends on a server started by hand.
//!
//! Behind the `test-util` feature, for tests and benchmarks only: tokens from the fixed test
//! issuers and partner set-up ([`partners`]), and the end-to-end stack with the requests the
//! journeys send ([`stack`], re-exported here). The feature turns on the services' own
//! `test-util` features (their fixed test keys and test configurations); no release binary
//! depends on it.

pub mod broker;
#[cfg(feature = "test-util")]
pub mod partners;
pub mod service;
#[cfg(feature = "test-util")]
pub mod stack;

pub use service::{Running, START_DEADLINE, wait_serving};
#[cfg(feature = "test-util")]
pub use stack::*;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server version the project pins (see the justfile and `scripts/tools`).
pub const PINNED_NATS_SERVER: &str = "2.15.1";

/// How the server persists JetStream writes before acknowledging them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync every write before the ack: an acknowledged write survives a crash.
    Always,
    /// The server default: fsync every two minutes; a machine crash can lose acked writes.
    Default,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub sync: SyncPolicy,
    /// Extra lines appended to the generated server configuration.
    pub extra_config: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            extra_config: String::new(),
        }
    }
}

/// A running nats-server. Killed and its store removed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: Options,
}

/// Find the nats-server binary: `CAREWOVEN_NATS_SERVER`, then the project's pinned tools
/// directory, then `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAREWOVEN_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/nats-server");
    if pinned.exists() {
        return pinned;
    }
    PathBuf::from("nats-server")
}

/// Wait for `condition` to hold, polling, until `deadline` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

impl NatsServer {
    /// Start with `sync_interval: always`.
    pub fn start() -> Result<Self> {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("carewoven-nats-")
            .tempdir()
            .context("creating the store directory")?;
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            options,
        };
        server.spawn(None)?;
        Ok(server)
    }

    fn spawn(&mut self, port: Option<u16>) -> Result<()> {
        let store = self.dir.path().join("jetstream");
        let ports_dir = self.dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir)?;
        for entry in std::fs::read_dir(&ports_dir)? {
            std::fs::remove_file(entry?.path())?;
        }
        let sync = match self.options.sync {
            SyncPolicy::Always => "  sync_interval: always\n",
            SyncPolicy::Default => "",
        };
        let listen = match port {
            Some(p) => format!("127.0.0.1:{p}"),
            None => "127.0.0.1:-1".to_owned(),
        };
        let config = format!(
            "listen: \"{listen}\"\nmax_payload: 1MB\nports_file_dir: \"{}\"\njetstream {{\n  store_dir: \"{}\"\n{sync}  limits {{ batch {{ max_inflight_per_stream: 1000, max_inflight_total: 4000 }} }}\n}}\n{}\n",
            ports_dir.display(),
            store.display(),
            self.options.extra_config
        );
        let config_path = self.dir.path().join("nats.conf");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(self.dir.path().join("nats.log"))?;
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (run `just tools` to install the pinned nats-server {PINNED_NATS_SERVER})",
                    binary.display()
                )
            })?;
        self.child = Some(child);
        let mut found = None;
        let started = wait_until("nats-server's ports file", Duration::from_secs(20), || {
            found = read_port(&ports_dir);
            found.is_some()
        });
        if let Err(e) = started {
            let log = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
            return Err(e.context(format!("nats-server did not start; its log:\n{log}")));
        }
        self.port = found.context("no port")?;
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until(
            "nats-server to accept connections",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(&addr).is_ok(),
        )?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Kill the server (as a crash would) and wait for it to exit. The store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port with the same store.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let port = self.port;
        self.spawn(Some(port))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().next()?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    // {"nats":["nats://127.0.0.1:41234"],...}
    let start = text.find("nats://")? + "nats://".len();
    let rest = &text[start..];
    let end = rest.find('"')?;
    rest[..end].rsplit(':').next()?.parse().ok()
}

/// A nats-server started from one of the project's own configuration files (for example
/// `deploy/nats-server.conf`), with the environment variables that file reads. Killed on drop;
/// its store directory is a fresh temporary directory, removed on drop.
pub struct ConfiguredServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ConfiguredServer {
    /// Start `config` with `env` set, plus `CAREWOVEN_NATS_STORE` pointing at a fresh store,
    /// and wait until it accepts connections on `port`.
    pub fn start(config: &Path, env: &[(String, String)], port: u16) -> Result<Self> {
        Self::start_with_args(config, env, port, &[])
    }

    /// [`ConfiguredServer::start`] with extra command-line arguments (for example `-m <port>`
    /// for the monitoring endpoint).
    pub fn start_with_args(
        config: &Path,
        env: &[(String, String)],
        port: u16,
        args: &[String],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("carewoven-nats-")
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("nats.log"))?;
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(config)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CAREWOVEN_NATS_STORE", dir.path().join("jetstream"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting nats-server with {}", config.display()))?;
        let mut server = ConfiguredServer { child, port, dir };
        let addr = format!("127.0.0.1:{port}");
        let ready = wait_until(
            "nats-server to accept connections",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(&addr).is_ok(),
        );
        if let Err(e) = ready {
            let _ = server.child.kill();
            let log =
                std::fs::read_to_string(server.dir.path().join("nats.log")).unwrap_or_default();
            return Err(e.context(format!(
                "{} did not start; its log:\n{log}",
                config.display()
            )));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log so far (useful in assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

impl Drop for ConfiguredServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (for reaching `deploy/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free TCP port on 127.0.0.1, for services under test that must be told a port up front.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_restarts_and_cleans_up() -> Result<()> {
        let mut server = NatsServer::start()?;
        let port = server.port();
        let dir = server.dir.path().to_path_buf();
        assert!(server.is_running());
        server.restart()?;
        assert_eq!(server.port(), port);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        drop(server);
        assert!(!dir.exists(), "store directory removed");
        Ok(())
    }
}
