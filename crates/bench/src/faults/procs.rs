//! The processes a fault is injected into: nats-server nodes started from the shipped
//! configurations (`deploy/`), and the Carewoven services as child processes, each of which
//! can be killed with SIGKILL (as a crash would), paused with SIGSTOP, resumed and started
//! again on the same port with the same state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use carewoven_testkit::broker::Identities;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How often a wait polls its condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Send `signal` (`TERM`, `STOP`, `CONT`) to a process this run started.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// The last `lines` lines of a log file (for error messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Remove every `CAREWOVEN_*` variable this process inherited, so a child sees only what the
/// suite sets.
fn clean_env(command: &mut tokio::process::Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CAREWOVEN_") {
            command.env_remove(key);
        }
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The secrets of one run: NATS identities (nkeys, `deploy/accounts.conf`), the trust file of
/// the fixed test token issuer, and the services' keys.
pub struct Keys {
    pub ids: Identities,
    pub trust_file: PathBuf,
    person_id_key: String,
    page_token_key: String,
    cursor_key: String,
}

impl Keys {
    pub fn new(root: &Path) -> Result<Self> {
        let trust_file = root.join("trusted-keys.json");
        std::fs::write(
            &trust_file,
            serde_json::to_vec_pretty(&carewoven_access::token::testing::trust())?,
        )?;
        Ok(Keys {
            ids: Identities::new(),
            trust_file,
            person_id_key: random_hex(32)?,
            page_token_key: random_hex(32)?,
            cursor_key: random_hex(32)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// nats-server

/// One nats-server, from a configuration file of `deploy/` (or a copy), with its own store
/// directory and port, kept across restarts.
pub struct NatsNode {
    /// The `server_name` of its configuration.
    pub name: String,
    config: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    pub store: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
    paused: bool,
}

impl NatsNode {
    pub fn new(
        name: &str,
        config: PathBuf,
        env: Vec<(String, String)>,
        port: u16,
        store: PathBuf,
        log: PathBuf,
    ) -> Self {
        NatsNode {
            name: name.to_owned(),
            config,
            env,
            port,
            store,
            log,
            child: None,
            paused: false,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Start with another configuration file from now on.
    pub fn set_config(&mut self, config: PathBuf) {
        self.config = config;
    }

    /// Start (or start again, on the same port with the same store) and wait until it
    /// accepts connections.
    pub fn start(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = std::process::Command::new(carewoven_testkit::nats_server_binary());
        command
            .arg("-c")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CAREWOVEN_NATS_STORE", &self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .context("starting nats-server (scripts/tools installs the pinned one)")?;
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} exited ({status}); its log ends:\n{}",
                    self.name,
                    tail(&self.log, 20)
                );
            }
            ensure!(Instant::now() < deadline, "{} did not start", self.name);
            std::thread::park_timeout(POLL);
        }
        Ok(())
    }

    /// SIGKILL and wait for the exit: a crash (what the server had not fsynced is lost).
    pub fn kill9(&mut self) {
        if self.paused {
            let _ = self.resume();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (a graceful restart's first half, as an operator does).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::park_timeout(POLL);
            }
        }
        Ok(())
    }

    /// SIGSTOP: the process stays, answers nothing, and its peers see it silent.
    pub fn pause(&mut self) -> Result<()> {
        let pid = self.pid().context("not running")?;
        signal(pid, "STOP")?;
        self.paused = true;
        Ok(())
    }

    pub fn resume(&mut self) -> Result<()> {
        let pid = self.pid().context("not running")?;
        signal(pid, "CONT")?;
        self.paused = false;
        Ok(())
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------------
// The services

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Commands,
    Views,
    Gateway,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Commands => "commands",
            Kind::Views => "views",
            Kind::Gateway => "gateway",
        }
    }

    /// The API whose health says the service is ready.
    pub fn health(self) -> &'static str {
        match self {
            Kind::Commands => "carewoven.v1.CommandService",
            Kind::Views => "carewoven.v1.QueryService",
            Kind::Gateway => "carewoven.v1.FeedService",
        }
    }
}

/// Which executables run the services.
#[derive(Clone, Debug)]
pub enum Binaries {
    /// The release binaries in this directory (`carewoven-commands`, `carewoven-views serve`,
    /// `carewoven-gateway`): what `just faults` runs.
    Release(PathBuf),
    /// This executable's `serve <kind>` mode (the faults binary): the same libraries' `run`
    /// behind the same flags, for the short version in the default test run, where the
    /// release binaries are not built.
    SelfHosted(PathBuf),
}

impl Binaries {
    fn command(&self, kind: Kind) -> Result<tokio::process::Command> {
        Ok(match self {
            Binaries::Release(dir) => {
                let path = dir.join(format!("carewoven-{}", kind.name()));
                let path = std::fs::canonicalize(&path)
                    .with_context(|| format!("{} (run `just build`)", path.display()))?;
                let mut c = tokio::process::Command::new(path);
                if kind == Kind::Views {
                    c.arg("serve");
                }
                c
            }
            Binaries::SelfHosted(exe) => {
                let mut c = tokio::process::Command::new(exe);
                c.arg("serve").arg(kind.name());
                c
            }
        })
    }
}

/// One service instance: a name (its state directory and log), a kind and a fixed address,
/// so that a restart is the same instance again.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub kind: Kind,
    pub addr: String,
}

/// A running service process.
pub struct ServiceProc {
    pub instance: Instance,
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

impl ServiceProc {
    pub async fn channel(&self) -> Result<Channel> {
        Ok(
            Channel::from_shared(format!("http://{}", self.instance.addr))?
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await?,
        )
    }

    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ends:\n{}",
                self.instance.name,
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Wait until its health check says SERVING.
    pub async fn wait_serving(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(channel) = self.channel().await
                && let Ok(r) = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: self.instance.kind.health().into(),
                    })
                    .await
                && r.get_ref().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return Ok(());
            }
            self.check_running()?;
            ensure!(
                Instant::now() < deadline,
                "{} did not serve within {timeout:?}; its log ends:\n{}",
                self.instance.name,
                tail(&self.log, 30)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL and wait: a crash at whatever it was doing.
    pub async fn kill9(mut self) -> Result<Instance> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(self.instance)
    }

    /// SIGTERM and wait: a graceful stop.
    pub async fn stop(mut self) -> Result<Instance> {
        signal(self.pid, "TERM")?;
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                eprintln!(
                    "{} did not stop within 60 s; killing it",
                    self.instance.name
                );
                self.child.kill().await?;
            }
        }
        Ok(self.instance)
    }
}

/// Starts service instances against one NATS (a URL list for a cluster).
pub struct Spawner {
    pub binaries: Binaries,
    pub root: PathBuf,
    pub nats_url: String,
    pub replicas: u8,
    /// `CAREWOVEN_NATS_TIMEOUT_SECS` of every service.
    pub nats_timeout_secs: u64,
    pub seeds: HashMap<Kind, String>,
    trust_file: PathBuf,
    person_id_key: String,
    page_token_key: String,
    cursor_key: String,
}

impl Spawner {
    pub fn new(
        binaries: Binaries,
        root: &Path,
        nats_url: String,
        replicas: u8,
        keys: &Keys,
    ) -> Self {
        let seeds = [Kind::Commands, Kind::Views, Kind::Gateway]
            .into_iter()
            .map(|k| (k, keys.ids.seed(k.name())))
            .collect();
        Spawner {
            binaries,
            root: root.to_path_buf(),
            nats_url,
            replicas,
            nats_timeout_secs: 5,
            seeds,
            trust_file: keys.trust_file.clone(),
            person_id_key: keys.person_id_key.clone(),
            page_token_key: keys.page_token_key.clone(),
            cursor_key: keys.cursor_key.clone(),
        }
    }

    /// A new instance on a free port.
    pub fn instance(&self, kind: Kind, name: &str) -> Result<Instance> {
        Ok(Instance {
            name: name.to_owned(),
            kind,
            addr: format!("127.0.0.1:{}", carewoven_testkit::free_port()?),
        })
    }

    pub fn state_dir(&self, instance: &Instance) -> PathBuf {
        self.root.join("state").join(&instance.name)
    }

    /// The views file of a views instance.
    pub fn views_file(&self, instance: &Instance) -> PathBuf {
        self.state_dir(instance).join("views.redb")
    }

    /// Start `instance` (again: same address, same state directory) without waiting.
    pub fn spawn(&self, instance: Instance) -> Result<ServiceProc> {
        let state = self.state_dir(&instance);
        std::fs::create_dir_all(&state)?;
        std::fs::create_dir_all(self.root.join("logs"))?;
        let log = self.root.join(format!("logs/{}.log", instance.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = self.binaries.command(instance.kind)?;
        clean_env(&mut command);
        match instance.kind {
            Kind::Commands => {
                command
                    .env("CAREWOVEN_COMMANDS_LISTEN", &instance.addr)
                    .env("CAREWOVEN_PERSON_ID_KEY", &self.person_id_key);
            }
            Kind::Views => {
                command
                    .env("CAREWOVEN_VIEWS_LISTEN", &instance.addr)
                    .env("CAREWOVEN_VIEWS_FILE", state.join("views.redb"))
                    .env("CAREWOVEN_PAGE_TOKEN_KEY", &self.page_token_key);
            }
            Kind::Gateway => {
                command
                    .env("CAREWOVEN_GATEWAY_LISTEN", &instance.addr)
                    .env("CAREWOVEN_CURSOR_KEY", &self.cursor_key)
                    .env("CAREWOVEN_GATEWAY_CHECKPOINT", state.join("evaluator.redb"))
                    .env("CAREWOVEN_ACCESS_LIST_FILE", state.join("access-list.redb"));
            }
        }
        command
            .env("CAREWOVEN_ACCESS_CHECKPOINT", state.join("access.redb"))
            .env("CAREWOVEN_NATS_URL", &self.nats_url)
            .env("CAREWOVEN_NATS_NKEY_SEED", &self.seeds[&instance.kind])
            .env("CAREWOVEN_REPLICAS", self.replicas.to_string())
            .env(
                "CAREWOVEN_NATS_TIMEOUT_SECS",
                self.nats_timeout_secs.to_string(),
            )
            .env("CAREWOVEN_TRUSTED_KEYS", &self.trust_file)
            .env("RUST_LOG", "info")
            .current_dir(&state)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", instance.name))?;
        let pid = child.id().context("a child pid")?;
        Ok(ServiceProc {
            instance,
            child,
            pid,
            log,
        })
    }

    /// Start `instance` and wait until it serves.
    pub async fn start(&self, instance: Instance) -> Result<ServiceProc> {
        let mut service = self.spawn(instance)?;
        service.wait_serving(Duration::from_secs(120)).await?;
        Ok(service)
    }
}
