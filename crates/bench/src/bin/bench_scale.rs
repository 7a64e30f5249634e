//! `just bench-scale`: the whole system on one machine at ten million events about a million
//! people, with the services as the real release binaries (separate processes, real NATS
//! with the shipped accounts and nkey identities, real redb files, gRPC over loopback TCP).
//!
//! 1. Starts its own nats-server (the pinned binary) on a free loopback port with a fresh
//!    store, from a copy of `deploy/nats-server.conf` and `deploy/accounts.conf`; NATS
//!    identities from `carectl keys nats`, a token issuer from `carectl keys generate`.
//! 2. Registers the organisations the synthetic log names (GPs, trusts, councils, providers)
//!    with data-sharing agreements through the command service, then generates the log
//!    straight into JetStream (`generator.rs`, the commands identity, async publish with a
//!    window) with the scale mix: most people registered with a GP, short stories mixed in
//!    to reach `--people`, recorded over the last eleven months. The agreements start on the
//!    day of the `--tail-events`th event from the end, so every event is folded and judged
//!    but only the tail is owed to partners (a bounded feed backlog). Generation runs with
//!    nats-server's default sync (fsync every two minutes) for speed; every measurement
//!    after it runs on a restarted server with the shipped `sync_interval: always`.
//! 3. Measures and prints one line each (with detail lines indented below):
//!    - `scale-rebuild: events_per_s=<n> ratio_1m_10m=<r>`: `carewoven-views rebuild` with
//!      a tenth of the events and with all (ratio = rate at all / rate at a tenth);
//!    - `scale-start: cold|warm commands=<s> views=<s> gateway=<s>`: process spawn to
//!      serving with a current access index (health SERVING and a probe that only succeeds
//!      once the index has applied the log's last event); cold = first start with an empty
//!      state directory, warm = second start with the same directory;
//!    - `scale-rss: commands=<MiB> views=<MiB> gateway=<MiB>`: VmHWM of the warm processes
//!      once current;
//!    - `scale-query: p99_ratio=<r>`: GetCareRecord p99 against the health check of the same
//!      views process, `--clients` concurrent clients;
//!    - `scale-gateway-restart: s=<s>`: gateway spawn to the first of `--new-events` events
//!      appended while it was stopped stored in a partner feed.
//!
//! A phase that does not finish within `--phase-timeout-secs` prints what it measured
//! (`>N`) and the run carries on.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream;
use carewoven_access::Issuer;
use carewoven_bench::generator::{GENERAL_PRACTICES, Generator, Mix, ORGANISATIONS, Rng};
use carewoven_governance::Role;
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, command_service_client::CommandServiceClient,
    query_service_client::QueryServiceClient, views_admin_client::ViewsAdminClient,
};
use chrono::{Days, Utc};
use clap::Parser;
use futures::TryStreamExt;
use hdrhistogram::Histogram;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The general practice of the probe people: registered by the log's last event, so a
/// decision about them shows whether a service has applied the whole log.
const PROBE_GP: &str = "GP-SCALE";
/// An organisation with no relationship to the probe people.
const STRANGER: &str = "CAREHOME-2";
const GOVERNANCE_ORG: &str = "CW-GOV";
const POLL: Duration = Duration::from_millis(10);

#[derive(Parser)]
#[command(about = "Ten million events on one machine: starts, memory, rebuild, queries, restart")]
struct Args {
    /// Events in the synthetic log.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// People the events are about (about; short stories are mixed in to reach it).
    #[arg(long, default_value_t = 1_000_000)]
    people: u64,
    /// Seed of the synthetic log.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Events at the end of the log recorded on or after the day the agreements start
    /// (owed to partners on the gateway's first start; everything before is judged only).
    #[arg(long, default_value_t = 20_000)]
    tail_events: u64,
    /// Events appended while the gateway is stopped, for the restart phase.
    #[arg(long, default_value_t = 1000)]
    new_events: u64,
    /// Concurrent query clients (one HTTP/2 connection each).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured queries per client, for each of the two RPCs.
    #[arg(long, default_value_t = 300)]
    queries_per_client: u64,
    /// Longest wait for one phase (a start, a rebuild, the gateway's backlog).
    #[arg(long, default_value_t = 480)]
    phase_timeout_secs: u64,
    /// Where the store, keys, state and logs go (a fresh directory inside it).
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    dir: PathBuf,
    /// Keep that directory at the end (it is removed otherwise).
    #[arg(long)]
    keep: bool,
    /// The release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Extra argument for carewoven-commands (repeatable; `{state}` is its state directory).
    #[arg(long, allow_hyphen_values = true)]
    commands_arg: Vec<String>,
    /// Extra argument for `carewoven-views serve`.
    #[arg(long, allow_hyphen_values = true)]
    views_arg: Vec<String>,
    /// Extra argument for carewoven-gateway.
    #[arg(long, allow_hyphen_values = true)]
    gateway_arg: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Commands,
    Views,
    Gateway,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Commands => "commands",
            Kind::Views => "views",
            Kind::Gateway => "gateway",
        }
    }
    fn health(self) -> &'static str {
        match self {
            Kind::Commands => "carewoven.v1.CommandService",
            Kind::Views => "carewoven.v1.QueryService",
            Kind::Gateway => "carewoven.v1.FeedService",
        }
    }
}

/// A measured duration, or how long we waited without it happening.
#[derive(Clone, Copy)]
enum Took {
    Secs(f64),
    TimedOut(f64),
}

impl Took {
    fn ok(self) -> bool {
        matches!(self, Took::Secs(_))
    }
}

impl std::fmt::Display for Took {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Took::Secs(s) => write!(f, "{s:.2}"),
            Took::TimedOut(s) => write!(f, ">{s:.0}"),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Send SIGTERM to a child we started (graceful shutdown: services finish, NATS flushes).
fn terminate(pid: u32) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    ensure!(status.success(), "kill -TERM {pid} failed");
    Ok(())
}

fn vm_hwm_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_disk_gib(path: &Path) -> Result<f64> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .context("running df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let avail: f64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .context("parsing df")?;
    Ok(avail / (1024.0 * 1024.0))
}

/// A spinner with the elapsed time, for the phases that wait.
fn spinner(message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

async fn sleep_poll() {
    tokio::time::sleep(POLL).await;
}

/// Clears its spinner when dropped (on every way out of a wait).
struct Finish(indicatif::ProgressBar);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

// ---------------------------------------------------------------------------------------------
// NATS

struct Nats {
    child: Option<tokio::process::Child>,
    port: u16,
    root: PathBuf,
    env: Vec<(String, String)>,
    seeds: HashMap<String, String>,
}

impl Nats {
    /// Start nats-server with `config` (in `root`) and wait until it accepts connections.
    async fn start(&mut self, config: &str, has_log: bool) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("logs/nats.log"))?;
        let child = tokio::process::Command::new(carewoven_testkit::nats_server_binary())
            .arg("-c")
            .arg(self.root.join(config))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CAREWOVEN_NATS_PORT", self.port.to_string())
            .env("CAREWOVEN_NATS_STORE", self.root.join("nats"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting nats-server (./scripts/tools installs the pinned one)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
                && let Ok(client) = self.connect("ops").await
            {
                // JetStream has recovered the store once it answers for the stream.
                let js = jetstream::new(client);
                if !has_log || js.get_stream("CAREWOVEN").await.is_ok() {
                    return Ok(());
                }
            }
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "nats-server exited ({status}):\n{}",
                    tail(&self.root.join("logs/nats.log"), 30)
                );
            }
            ensure!(Instant::now() < deadline, "nats-server did not start");
            sleep_poll().await;
        }
    }

    /// SIGTERM and wait: the server writes its indexes and syncs before it exits.
    async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                terminate(pid)?;
            }
            tokio::time::timeout(Duration::from_secs(300), child.wait())
                .await
                .context("nats-server did not stop")??;
        }
        Ok(())
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn connect(&self, identity: &str) -> Result<async_nats::Client> {
        let seed = self.seeds.get(identity).context("no such identity")?;
        Ok(async_nats::ConnectOptions::with_nkey(seed.clone())
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url())
            .await?)
    }
}

// ---------------------------------------------------------------------------------------------
// The services as child processes

struct Service {
    kind: Kind,
    child: tokio::process::Child,
    pid: u32,
    addr: String,
    spawned: Instant,
    log: PathBuf,
}

impl Service {
    async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }

    fn hwm(&self) -> f64 {
        vm_hwm_mib(self.pid).unwrap_or(f64::NAN)
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "carewoven-{} exited ({status}); its log ends:\n{}",
                self.kind.name(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// Poll the health check until SERVING; seconds since spawn.
    async fn wait_serving(&mut self, timeout: Duration) -> Result<Took> {
        let deadline = self.spawned + timeout;
        loop {
            if let Ok(channel) = self.channel().await
                && let Ok(r) = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: self.kind.health().into(),
                    })
                    .await
                && r.get_ref().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return Ok(Took::Secs(self.spawned.elapsed().as_secs_f64()));
            }
            self.check_running()?;
            if Instant::now() > deadline {
                return Ok(Took::TimedOut(timeout.as_secs_f64()));
            }
            sleep_poll().await;
        }
    }

    /// SIGTERM and wait for the exit.
    async fn stop(mut self) -> Result<()> {
        terminate(self.pid)?;
        match tokio::time::timeout(Duration::from_secs(120), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                eprintln!(
                    "carewoven-{} did not stop within 120 s; killing it",
                    self.kind.name()
                );
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

struct Bench {
    args: Args,
    root: PathBuf,
    nats: Nats,
    issuer: Issuer,
    tokens: HashMap<String, MetadataValue<Ascii>>,
    person_id_key: String,
    page_token_key: String,
    cursor_key: String,
    /// The probe person registered by the log's last event (so far), and that event's stream
    /// sequence.
    probe: (String, u64),
}

impl Bench {
    fn token(&mut self, org: &str) -> Result<MetadataValue<Ascii>> {
        if let Some(t) = self.tokens.get(org) {
            return Ok(t.clone());
        }
        let roles: &[Role] = if org == GOVERNANCE_ORG {
            &[Role::Governance]
        } else {
            &[]
        };
        let token = self
            .issuer
            .token(org, Some("bench"), roles, Duration::from_secs(6 * 3600))?;
        let value: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
        self.tokens.insert(org.to_owned(), value.clone());
        Ok(value)
    }

    fn request<T>(
        &mut self,
        org: &str,
        message: T,
        timeout: Duration,
    ) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.token(org)?);
        request.set_timeout(timeout);
        Ok(request)
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }

    async fn spawn(&self, kind: Kind, state: &str) -> Result<Service> {
        let state_dir = self.state_dir(state);
        std::fs::create_dir_all(&state_dir)?;
        let port = carewoven_testkit::free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let log = self.root.join(format!("logs/{state}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let bin = self.args.bin_dir.join(format!("carewoven-{}", kind.name()));
        let bin = std::fs::canonicalize(&bin)
            .with_context(|| format!("{} (run `just build`)", bin.display()))?;
        let mut command = tokio::process::Command::new(bin);
        let extra = match kind {
            Kind::Commands => {
                command
                    .env("CAREWOVEN_COMMANDS_LISTEN", &addr)
                    .env("CAREWOVEN_PERSON_ID_KEY", &self.person_id_key);
                &self.args.commands_arg
            }
            Kind::Views => {
                command
                    .arg("serve")
                    .arg("--listen")
                    .arg(&addr)
                    .arg("--file")
                    .arg(state_dir.join("views.redb"))
                    .env("CAREWOVEN_PAGE_TOKEN_KEY", &self.page_token_key);
                &self.args.views_arg
            }
            Kind::Gateway => {
                command
                    .env("CAREWOVEN_GATEWAY_LISTEN", &addr)
                    .env("CAREWOVEN_CURSOR_KEY", &self.cursor_key)
                    .env(
                        "CAREWOVEN_GATEWAY_CHECKPOINT",
                        state_dir.join("evaluator.redb"),
                    )
                    .env(
                        "CAREWOVEN_ACCESS_LIST_FILE",
                        state_dir.join("access-list.redb"),
                    );
                &self.args.gateway_arg
            }
        };
        for a in extra {
            command.arg(a.replace("{state}", &state_dir.display().to_string()));
        }
        let seed = self
            .nats
            .seeds
            .get(kind.name())
            .context("a NATS identity per service")?;
        // Every service keeps its access index in a checkpoint in its state directory, as
        // `./dev up` does: a warm start is one with that file present.
        command
            .env("CAREWOVEN_ACCESS_CHECKPOINT", state_dir.join("access.redb"))
            .current_dir(&state_dir)
            .env("CAREWOVEN_NATS_URL", self.nats.url())
            .env("CAREWOVEN_NATS_NKEY_SEED", seed)
            .env(
                "CAREWOVEN_TRUSTED_KEYS",
                self.root.join("keys/issuer/trusted-keys.json"),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let child = command.spawn()?;
        let pid = child.id().context("a child pid")?;
        Ok(Service {
            kind,
            child,
            pid,
            addr,
            spawned,
            log,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.phase_timeout_secs)
    }

    /// Spawn `kind` and wait until it serves with a current access index: health SERVING,
    /// then the probe. (serving, current) in seconds since spawn.
    async fn start(&mut self, kind: Kind, state: &str) -> Result<(Service, Took, Took)> {
        let mut service = self.spawn(kind, state).await?;
        let _bar = Finish(spinner(format!(
            "starting carewoven-{} ({state}), waiting for it to serve with a current index",
            kind.name()
        )));
        let timeout = self.timeout();
        let serving = service.wait_serving(timeout).await?;
        if !serving.ok() {
            return Ok((service, serving, serving));
        }
        let deadline = service.spawned + timeout;
        let channel = service.channel().await?;
        let (person, position) = self.probe.clone();
        loop {
            let call = Duration::from_secs(30);
            let outcome: std::result::Result<(), tonic::Status> = match kind {
                // A command by an organisation with no relationship to the probe person is
                // refused only after the index has applied the log up to its end
                // (`AccessIndex::check` confirms refusals there); it appends nothing.
                Kind::Commands => {
                    let request = self.request(
                        STRANGER,
                        v1::RecordFeedbackRequest {
                            context: Some(v1::CommandContext {
                                command_id: uuid::Uuid::new_v4().to_string(),
                                organisation: STRANGER.to_owned(),
                                user: "bench".to_owned(),
                                ..Default::default()
                            }),
                            person_id: person.clone(),
                            feedback: Some(v1::FeedbackRecord {
                                source: v1::FeedbackSource::Person as i32,
                                anonymous: false,
                                text: "Probe".to_owned(),
                                rating: 0,
                            }),
                        },
                        call,
                    )?;
                    match CommandServiceClient::new(channel.clone())
                        .record_feedback(request)
                        .await
                    {
                        Ok(_) => bail!("the probe command was accepted: the probe is broken"),
                        Err(s) if s.code() == Code::PermissionDenied => Ok(()),
                        Err(s) => Err(s),
                    }
                }
                // The probe person's record, read as their practice at the log's last
                // position: the projection and the access index have both applied it.
                Kind::Views => {
                    let request = self.request(
                        PROBE_GP,
                        v1::GetCareRecordRequest {
                            person_id: person.clone(),
                            min_log_position: position,
                        },
                        Duration::from_secs(60),
                    )?;
                    QueryServiceClient::new(channel.clone())
                        .get_care_record(request)
                        .await
                        .map(drop)
                }
                // Who accessed the probe person's record, asked by their practice: allowed
                // only once the gateway's index knows the registration.
                Kind::Gateway => {
                    let request = self.request(
                        PROBE_GP,
                        v1::ListRecordAccessRequest {
                            person_id: person.clone(),
                            after: 0,
                            limit: 1,
                            ..Default::default()
                        },
                        call,
                    )?;
                    AuditServiceClient::new(channel.clone())
                        .list_record_access(request)
                        .await
                        .map(drop)
                }
            };
            match outcome {
                Ok(()) => {
                    let current = Took::Secs(service.spawned.elapsed().as_secs_f64());
                    return Ok((service, serving, current));
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unauthenticated | Code::InvalidArgument | Code::Unimplemented
                    ) =>
                {
                    bail!("the {} probe is broken: {s:?}", kind.name())
                }
                Err(_) => {}
            }
            service.check_running()?;
            if Instant::now() > deadline {
                return Ok((service, serving, Took::TimedOut(timeout.as_secs_f64())));
            }
            sleep_poll().await;
        }
    }

    async fn commands_client(&self, service: &Service) -> Result<CommandServiceClient<Channel>> {
        Ok(CommandServiceClient::new(service.channel().await?))
    }

    /// Register every organisation of the synthetic log and the probe practice, each with an
    /// agreement for direct care over every data class from `valid_from` for a year ahead.
    async fn register_registry(&mut self, valid_from: chrono::NaiveDate) -> Result<()> {
        let mut service = self.spawn(Kind::Commands, "commands-registry").await?;
        ensure!(
            service.wait_serving(Duration::from_secs(60)).await?.ok(),
            "the command service did not start"
        );
        let mut client = self.commands_client(&service).await?;
        let expires = carewoven_domain::values::uk_date(Utc::now()) + Days::new(365);
        let orgs: Vec<&str> = ORGANISATIONS.iter().copied().chain([PROBE_GP]).collect();
        for code in orgs {
            use v1::OrganisationType as T;
            let org_type = match code {
                c if c.starts_with("GP-") => T::GeneralPractice,
                "RXH01" | "RXH02" | "RYJ01" | "RAL01" => T::NhsTrust,
                "COUNCIL1" | "ASC-D2A" => T::LocalAuthority,
                "CNURSE-1" | "THERAPY-2" | "MH-TEAM-1" | "SPA01" | "COMMHOSP-1" => {
                    T::CommunityProvider
                }
                "AGEUK-1" => T::Voluntary,
                _ => T::CareProvider,
            };
            let ctx = || v1::CommandContext {
                command_id: uuid::Uuid::new_v4().to_string(),
                organisation: GOVERNANCE_ORG.to_owned(),
                user: "bench".to_owned(),
                ..Default::default()
            };
            let register = self.request(
                GOVERNANCE_ORG,
                v1::RegisterOrganisationRequest {
                    context: Some(ctx()),
                    code: code.to_owned(),
                    profile: Some(v1::OrganisationProfile {
                        name: format!("Synthetic organisation {code}"),
                        org_type: org_type as i32,
                    }),
                    services: vec![code.to_owned()],
                },
                Duration::from_secs(30),
            )?;
            client
                .register_organisation(register)
                .await
                .with_context(|| format!("registering {code}"))?;
            let agreement = self.request(
                GOVERNANCE_ORG,
                v1::RecordSharingAgreementRequest {
                    context: Some(ctx()),
                    code: code.to_owned(),
                    agreement: Some(v1::SharingAgreement {
                        reference: format!("{code}-DSA"),
                        purposes: vec![v1::Purpose::DirectCare as i32],
                        data_classes: (1..=11).collect(),
                        valid_from: valid_from.to_string(),
                        expires_on: expires.to_string(),
                    }),
                },
                Duration::from_secs(30),
            )?;
            client
                .record_sharing_agreement(agreement)
                .await
                .with_context(|| format!("recording {code}'s agreement"))?;
        }
        service.stop().await
    }

    async fn last_sequence(&self) -> Result<u64> {
        let js = jetstream::new(self.nats.connect("commands").await?);
        Ok(js
            .get_stream("CAREWOVEN")
            .await?
            .info()
            .await?
            .state
            .last_sequence)
    }

    /// Messages in `CW_FEED` in all and in the probe practice's feed (the operator's view).
    async fn feed_counts(&self, js: &jetstream::Context) -> Result<(u64, u64)> {
        let stream = match js.get_stream("CW_FEED").await {
            Ok(s) => s,
            Err(_) => return Ok((0, 0)),
        };
        let all = stream.get_info().await?.state.last_sequence;
        let mut subjects = stream
            .info_with_subjects(format!("cw.feed.{PROBE_GP}.>"))
            .await?;
        let mut probe = 0u64;
        while let Some((_, n)) = subjects.try_next().await? {
            probe += n as u64;
        }
        Ok((all, probe))
    }

    /// Wait until the probe practice's feed holds `n` items; seconds since `since`.
    async fn wait_probe_feed(&self, n: u64, since: Instant, service: &mut Service) -> Result<Took> {
        let js = jetstream::new(self.nats.connect("ops").await?);
        let deadline = Instant::now() + self.timeout();
        let _bar = Finish(spinner(format!(
            "waiting for the gateway to deliver the log's last event ({n} in the probe feed)"
        )));
        loop {
            if self.feed_counts(&js).await?.1 >= n {
                return Ok(Took::Secs(since.elapsed().as_secs_f64()));
            }
            service.check_running()?;
            if Instant::now() > deadline {
                return Ok(Took::TimedOut(since.elapsed().as_secs_f64()));
            }
            sleep_poll().await;
        }
    }

    /// `carewoven-views rebuild` against `service`; (events/s over the whole rebuild, the
    /// service's own figure, position, seconds).
    async fn rebuild(&mut self, service: &Service) -> Result<Option<(f64, String, u64, f64)>> {
        let token = self.token(GOVERNANCE_ORG)?;
        let token = token.to_str()?.trim_start_matches("Bearer ").to_owned();
        let bin = std::fs::canonicalize(self.args.bin_dir.join("carewoven-views"))?;
        let started = Instant::now();
        let child = tokio::process::Command::new(bin)
            .arg("rebuild")
            .arg("--server")
            .arg(format!("http://{}", service.addr))
            .arg("--fresh")
            .env("CAREWOVEN_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let out = match tokio::time::timeout(self.timeout(), child.wait_with_output()).await {
            Ok(out) => out?,
            Err(_) => return Ok(None),
        };
        let secs = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        ensure!(out.status.success(), "the rebuild failed: {stdout}");
        // "rebuilt views swapped in at log position N (R events/s)"
        let line = stdout
            .lines()
            .find(|l| l.starts_with("rebuilt views swapped in"))
            .with_context(|| format!("no result from the rebuild: {stdout}"))?;
        let position: u64 = line
            .split("log position ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .context("the rebuild's position")?;
        let theirs = line
            .split('(')
            .nth(1)
            .map(|r| r.trim_end_matches(')').to_owned())
            .unwrap_or_default();
        Ok(Some((position as f64 / secs, theirs, position, secs)))
    }

    /// Wait until the views have applied the log up to `position` (ViewsAdmin.Status).
    async fn wait_views_at(&mut self, service: &mut Service, position: u64) -> Result<Took> {
        let mut admin = ViewsAdminClient::new(service.channel().await?);
        let deadline = Instant::now() + self.timeout();
        let started = Instant::now();
        let _bar = Finish(spinner(format!(
            "waiting for the views to apply the log up to {position}"
        )));
        loop {
            let request = self.request(
                GOVERNANCE_ORG,
                v1::ViewsStatusRequest {},
                Duration::from_secs(10),
            )?;
            if let Ok(s) = admin.status(request).await
                && s.get_ref().log_position >= position
            {
                return Ok(Took::Secs(started.elapsed().as_secs_f64()));
            }
            service.check_running()?;
            if Instant::now() > deadline {
                return Ok(Took::TimedOut(started.elapsed().as_secs_f64()));
            }
            sleep_poll().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Query latency (as bench-views)

/// `clients` tasks, each issuing `per_client` calls of `op(client, random)` one after another;
/// latencies in microseconds and calls per second.
async fn concurrent<F, Fut>(clients: usize, per_client: u64, op: F) -> Result<(Histogram<u64>, f64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(0xC11E_0000 + c as u64);
                let mut h = Histogram::<u64>::new(3)?;
                for _ in 0..per_client {
                    let t = Instant::now();
                    op(c, rng.next()).await?;
                    h.record(t.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok(h)
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    let rate = (clients as u64 * per_client) as f64 / started.elapsed().as_secs_f64();
    Ok((all, rate))
}

async fn query_ratio(
    bench: &mut Bench,
    service: &Service,
    readers: Vec<(String, &'static str)>,
) -> Result<(f64, String)> {
    let (clients, per_client) = (bench.args.clients, bench.args.queries_per_client);
    let mut tokens = HashMap::new();
    for gp in GENERAL_PRACTICES {
        tokens.insert(gp, bench.token(gp)?);
    }
    let tokens = Arc::new(tokens);
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(service.channel().await?);
    }
    let health: Arc<Vec<HealthClient<Channel>>> =
        Arc::new(channels.iter().cloned().map(HealthClient::new).collect());
    let queries: Arc<Vec<QueryServiceClient<Channel>>> =
        Arc::new(channels.into_iter().map(QueryServiceClient::new).collect());
    let readers = Arc::new(readers);
    let noop = {
        let health = health.clone();
        move |c: usize, _r: u64| {
            let mut client = health[c].clone();
            async move {
                client
                    .check(HealthCheckRequest {
                        service: Kind::Views.health().into(),
                    })
                    .await?;
                Ok(())
            }
        }
    };
    let record = {
        let queries = queries.clone();
        move |c: usize, r: u64| {
            let mut client = queries[c].clone();
            let (person_id, gp) = &readers[(r % readers.len() as u64) as usize];
            let mut request = tonic::Request::new(v1::GetCareRecordRequest {
                person_id: person_id.clone(),
                min_log_position: 0,
            });
            request
                .metadata_mut()
                .insert("authorization", tokens[gp].clone());
            async move {
                let reply = client.get_care_record(request).await?;
                std::hint::black_box(reply);
                Ok(())
            }
        }
    };
    let noop = Arc::new(noop);
    let record = Arc::new(record);
    let warm = (per_client / 10).max(10);
    {
        let (n, r) = (noop.clone(), record.clone());
        concurrent(clients, warm, move |c, x| n(c, x)).await?;
        concurrent(clients, warm, move |c, x| r(c, x)).await?;
    }
    let n = noop.clone();
    let (base, base_rate) = concurrent(clients, per_client, move |c, x| n(c, x)).await?;
    let r = record.clone();
    let (ours, our_rate) = concurrent(clients, per_client, move |c, x| r(c, x)).await?;
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    let detail = format!(
        "  query (µs, {clients} clients, {per_client} calls each): health-check baseline p50={} p99={} ({base_rate:.0}/s); GetCareRecord p50={} p99={} ({our_rate:.0}/s)",
        q(&base, 0.5),
        q(&base, 0.99),
        q(&ours, 0.5),
        q(&ours, 0.99),
    );
    Ok((q(&ours, 0.99) as f64 / q(&base, 0.99).max(1) as f64, detail))
}

// ---------------------------------------------------------------------------------------------

fn phase(name: &str, started: Instant) {
    println!(
        "phase {name}: done at {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.events >= 100, "--events must be at least 100");
    ensure!(args.people > 0, "--people must be positive");
    let run_started = Instant::now();
    let repo = carewoven_testkit::repo_root();
    let bin_dir = if args.bin_dir.is_absolute() {
        args.bin_dir.clone()
    } else {
        repo.join(&args.bin_dir)
    };
    for b in ["commands", "views", "gateway"] {
        let p = bin_dir.join(format!("carewoven-{b}"));
        ensure!(p.exists(), "{} is missing: run `just build`", p.display());
    }
    let carectl = bin_dir.join("carectl");
    ensure!(
        carectl.exists(),
        "{} is missing: run `just build`",
        carectl.display()
    );

    std::fs::create_dir_all(&args.dir)?;
    let dir = tempfile::Builder::new()
        .prefix("carewoven-bench-scale-")
        .tempdir_in(&args.dir)?;
    let root = dir.path().to_path_buf();
    // Roughly 0.6 KiB per event in JetStream and 0.5 KiB in each views file.
    let need_gib = args.events as f64 * 2.0 / (1024.0 * 1024.0);
    let free = free_disk_gib(&root)?;
    println!(
        "bench-scale: {} cores, {} events about {} people, seed {}, in {} ({free:.0} GiB free, about {need_gib:.1} GiB needed)",
        cores(),
        args.events,
        args.people,
        args.seed,
        root.display()
    );
    ensure!(
        free > need_gib * 1.2,
        "not enough free disk in {}: {free:.1} GiB free, about {need_gib:.1} GiB needed",
        root.display()
    );
    for d in ["logs", "keys", "state", "nats"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::remove_dir(root.join("nats"))?;

    // Identities: NATS nkeys per service, a development token issuer.
    let run = |args: &[&std::ffi::OsStr]| -> Result<()> {
        let out = std::process::Command::new(&carectl).args(args).output()?;
        ensure!(
            out.status.success(),
            "carectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let nats_keys = root.join("keys/nats");
    let issuer_dir = root.join("keys/issuer");
    run(&[
        "keys".as_ref(),
        "nats".as_ref(),
        "--out".as_ref(),
        nats_keys.as_os_str(),
    ])?;
    run(&[
        "keys".as_ref(),
        "generate".as_ref(),
        "--out".as_ref(),
        issuer_dir.as_os_str(),
    ])?;
    let mut env = Vec::new();
    for line in std::fs::read_to_string(nats_keys.join("public-keys.env"))?.lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut seeds = HashMap::new();
    for name in ["commands", "views", "analyst", "gateway", "ops"] {
        let seed = std::fs::read_to_string(nats_keys.join(format!("{name}.nk")))?;
        seeds.insert(name.to_owned(), seed.trim().to_owned());
    }
    // The shipped configuration, and the same without `sync_interval: always` for generating.
    let shipped = std::fs::read_to_string(repo.join("deploy/nats-server.conf"))?;
    std::fs::copy(
        repo.join("deploy/accounts.conf"),
        root.join("accounts.conf"),
    )?;
    std::fs::write(root.join("nats-always.conf"), &shipped)?;
    let fast = shipped.replace("  sync_interval: always\n", "");
    ensure!(
        fast != shipped,
        "deploy/nats-server.conf no longer sets sync_interval: always"
    );
    std::fs::write(root.join("nats-default-sync.conf"), fast)?;

    let mut bench = Bench {
        nats: Nats {
            child: None,
            port: carewoven_testkit::free_port()?,
            root: root.clone(),
            env,
            seeds,
        },
        issuer: Issuer::from_dir(&issuer_dir)?,
        tokens: HashMap::new(),
        person_id_key: random_hex(32)?,
        page_token_key: random_hex(32)?,
        cursor_key: random_hex(32)?,
        probe: (String::new(), 0),
        root: root.clone(),
        args: Args { bin_dir, ..args },
    };
    let result = measure(&mut bench, run_started).await;
    let _ = bench.nats.stop().await;
    if bench.args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    } else {
        drop(dir);
    }
    println!(
        "bench-scale: finished in {:.0} s",
        run_started.elapsed().as_secs_f64()
    );
    result
}

async fn measure(bench: &mut Bench, run_started: Instant) -> Result<()> {
    let events = bench.args.events;
    let new_events = bench.args.new_events.max(1);
    let tail_events = bench.args.tail_events.min(events / 2);
    let mut summary: Vec<(u8, String)> = Vec::new();

    // The log's timeline: recorded over the last eleven months, the appended events after.
    let now = Utc::now();
    let span = chrono::Duration::days(330);
    let planned = events + new_events + 10;
    let step =
        chrono::Duration::microseconds(span.num_microseconds().unwrap_or(0) / planned as i64);
    let mix = Mix {
        start: now - span - chrono::Duration::days(2),
        step,
        registered_gp_per_mille: 950,
        people_per_events: Some((bench.args.people, events)),
    };
    let agreements_from =
        carewoven_domain::values::uk_date(mix.start + step * (events - tail_events) as i32);

    // Registry, then the log, under the server's default sync.
    bench.nats.start("nats-default-sync.conf", false).await?;
    bench.register_registry(agreements_from).await?;
    let registry = bench.last_sequence().await?;
    println!(
        "registry: {} organisations with agreements for direct care from {agreements_from} ({registry} events); generating under nats-server's default sync (fsync every 2 min)",
        ORGANISATIONS.len() + 1
    );
    phase("registry", run_started);

    let client = bench.nats.connect("commands").await?;
    let mut generator = Generator::new(&client, bench.args.seed, mix);
    let first = events / 10;
    generator.run(first - 1).await?;
    let (person, n) = generator.register(PROBE_GP).await?;
    bench.probe = (person.to_string(), registry + n);
    ensure!(
        bench.last_sequence().await? == registry + first,
        "the stream does not hold the generated events"
    );
    println!(
        "generated: {first} events at {:.0}/s",
        first as f64 / generator.generated().secs
    );
    phase("generate (first tenth)", run_started);

    // Rebuild with a tenth of the log: a views service on it, current first, then rebuilt.
    let small = {
        let mut views = bench.spawn(Kind::Views, "views-tenth").await?;
        ensure!(
            views.wait_serving(bench.timeout()).await?.ok(),
            "the views service did not start"
        );
        let caught_up = bench.wait_views_at(&mut views, registry + first).await?;
        println!("  views with a tenth of the log current after {caught_up} s");
        let r = bench.rebuild(&views).await?;
        views.stop().await?;
        std::fs::remove_dir_all(bench.state_dir("views-tenth"))?;
        r
    };
    if let Some((rate, theirs, position, secs)) = &small {
        println!(
            "  rebuild at {position} events: {rate:.0} events/s ({secs:.1} s; the service says {theirs})"
        );
    }
    phase("rebuild (first tenth)", run_started);

    generator.run(events - first - 1).await?;
    let (person, n) = generator.register(PROBE_GP).await?;
    bench.probe = (person.to_string(), registry + n);
    let last = bench.last_sequence().await?;
    ensure!(
        last == registry + events,
        "the stream holds {last} events, expected {}",
        registry + events
    );
    let g = generator.generated();
    let bytes: u64 = g.sizes.iter().map(|&s| u64::from(s)).sum();
    println!(
        "generated: {} events in {:.0} s ({:.0}/s), {} people ({} registered with a GP), {} aggregates, payload avg {:.0} B",
        g.events,
        g.secs,
        g.events as f64 / g.secs,
        g.persons.len(),
        g.registered.len(),
        g.aggregates,
        bytes as f64 / g.events.max(1) as f64
    );
    phase("generate", run_started);

    // Everything from here on under the shipped configuration.
    if let Some(pid) = bench.nats.child.as_ref().and_then(|c| c.id()) {
        println!(
            "  nats-server VmHWM while generating {:.0} MiB",
            vm_hwm_mib(pid).unwrap_or(f64::NAN)
        );
    }
    let t = Instant::now();
    bench.nats.stop().await?;
    bench.nats.start("nats-always.conf", true).await?;
    println!(
        "nats-server restarted with sync_interval: always in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Starts: commands, views, each cold then warm.
    let mut cold = HashMap::new();
    let mut warm = HashMap::new();
    let mut rss = HashMap::new();
    for kind in [Kind::Commands, Kind::Views] {
        let (service, serving, current) = bench.start(kind, kind.name()).await?;
        println!(
            "  {} cold: serving after {serving} s, current after {current} s, VmHWM {:.0} MiB",
            kind.name(),
            service.hwm()
        );
        cold.insert(kind, current);
        service.stop().await?;
        let (service, serving, current) = bench.start(kind, kind.name()).await?;
        let hwm = service.hwm();
        println!(
            "  {} warm: serving after {serving} s, current after {current} s, VmHWM {hwm:.0} MiB",
            kind.name()
        );
        warm.insert(kind, current);
        rss.insert(kind, hwm);
        phase(&format!("{} starts", kind.name()), run_started);
        if kind == Kind::Commands {
            service.stop().await?;
            continue;
        }
        // The warm views: queries, then the rebuild with the whole log.
        let mut readers: Vec<(String, &'static str)> = Vec::new();
        let registered = &generator.generated().registered;
        let mut rng = Rng::new(0x9EAD);
        for _ in 0..registered.len().min(100_000) {
            let (p, gp) = registered[rng.below(registered.len() as u64) as usize];
            readers.push((p.to_string(), gp));
        }
        ensure!(!readers.is_empty(), "nobody is registered with a GP");
        let bar = Finish(spinner("GetCareRecord and health-check latency".to_owned()));
        let (ratio, detail) = query_ratio(bench, &service, readers).await?;
        drop(bar);
        println!("{detail}");
        let line = format!("scale-query: p99_ratio={ratio:.2}");
        println!("{line}");
        summary.push((3, line));
        println!("  views VmHWM after the queries {:.0} MiB", service.hwm());
        phase("queries", run_started);
        let big = bench.rebuild(&service).await?;
        println!("  views VmHWM after the rebuild {:.0} MiB", service.hwm());
        service.stop().await?;
        let line = match (&small, &big) {
            (Some((r1, _, p1, _)), Some((r10, theirs, p10, secs))) => {
                println!(
                    "  rebuild at {p10} events: {r10:.0} events/s ({secs:.1} s; the service says {theirs}); at {p1}: {r1:.0} events/s"
                );
                format!(
                    "scale-rebuild: events_per_s={r10:.0} ratio_1m_10m={:.2}",
                    r10 / r1
                )
            }
            (Some((r1, ..)), None) => format!(
                "scale-rebuild: events_per_s=<{:.0} ratio_1m_10m=<{:.2}",
                events as f64 / bench.args.phase_timeout_secs as f64,
                events as f64 / bench.args.phase_timeout_secs as f64 / r1
            ),
            _ => "scale-rebuild: events_per_s=timeout ratio_1m_10m=timeout".to_owned(),
        };
        println!("{line}");
        summary.push((2, line));
        phase("rebuild", run_started);
    }

    // The gateway: cold (its first start: the tail is owed to partners), warm, restart.
    let (mut service, serving, current) = bench.start(Kind::Gateway, "gateway").await?;
    let caught_up = bench
        .wait_probe_feed(1, service.spawned, &mut service)
        .await?;
    println!(
        "  gateway cold: serving after {serving} s, current after {current} s, feeds caught up (the log's last event delivered) after {caught_up} s, VmHWM {:.0} MiB",
        service.hwm()
    );
    cold.insert(Kind::Gateway, current);
    service.stop().await?;
    let (mut service, serving, current) = bench.start(Kind::Gateway, "gateway").await?;
    warm.insert(Kind::Gateway, current);
    // One more probe registration; delivered once the evaluator is through the whole log.
    let (person, n) = generator.register(PROBE_GP).await?;
    bench.probe = (person.to_string(), registry + n);
    let caught_up = bench
        .wait_probe_feed(2, service.spawned, &mut service)
        .await?;
    let hwm = service.hwm();
    println!(
        "  gateway warm: serving after {serving} s, current after {current} s, one new event delivered after {caught_up} s, VmHWM {hwm:.0} MiB"
    );
    rss.insert(Kind::Gateway, hwm);
    service.stop().await?;
    phase("gateway starts", run_started);

    let show = |m: &HashMap<Kind, Took>| {
        format!(
            "commands={} views={} gateway={}",
            m[&Kind::Commands],
            m[&Kind::Views],
            m[&Kind::Gateway]
        )
    };
    for (order, line) in [
        (0, format!("scale-start: cold {}", show(&cold))),
        (0, format!("scale-start: warm {}", show(&warm))),
        (
            1,
            format!(
                "scale-rss: commands={:.0} views={:.0} gateway={:.0}",
                rss[&Kind::Commands],
                rss[&Kind::Views],
                rss[&Kind::Gateway]
            ),
        ),
    ] {
        println!("{line}");
        summary.push((order, line));
    }

    // Restart with new events since the gateway stopped: the first is a registration with
    // the probe practice, the rest carry on the stories under way.
    let ops = jetstream::new(bench.nats.connect("ops").await?);
    let (before, _) = bench.feed_counts(&ops).await?;
    generator.register(PROBE_GP).await?;
    if new_events > 1 {
        generator.run(new_events - 1).await?;
    }
    let mut service = bench.spawn(Kind::Gateway, "gateway").await?;
    let deadline = Instant::now() + bench.timeout();
    let bar = Finish(spinner(format!(
        "gateway restarted with {new_events} new events; waiting for the first delivery"
    )));
    let restart = loop {
        if bench.feed_counts(&ops).await?.0 > before {
            break Took::Secs(service.spawned.elapsed().as_secs_f64());
        }
        service.check_running()?;
        if Instant::now() > deadline {
            break Took::TimedOut(service.spawned.elapsed().as_secs_f64());
        }
        sleep_poll().await;
    };
    drop(bar);
    service.stop().await?;
    let line = format!("scale-gateway-restart: s={restart}");
    println!("{line}");
    summary.push((4, line));
    phase("gateway restart", run_started);

    if let Some(pid) = bench.nats.child.as_ref().and_then(|c| c.id()) {
        println!(
            "  nats-server VmHWM {:.0} MiB (since its restart under always); this benchmark's own {:.0} MiB",
            vm_hwm_mib(pid).unwrap_or(f64::NAN),
            vm_hwm_mib(std::process::id()).unwrap_or(f64::NAN)
        );
    }
    println!("summary ({events} events):");
    summary.sort_by_key(|(order, _)| *order);
    for (_, line) in summary {
        println!("{line}");
    }
    Ok(())
}
