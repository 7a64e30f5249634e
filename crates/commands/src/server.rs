use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use carewoven_eventlog::{EventLog, LogConfig};
use carewoven_proto::v1::command_service_server::CommandServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use carewoven_access::{AccessConfig, AccessIndex, AuditLog, Authenticator, Gatekeeper};

use crate::handler::Handler;
use crate::ids::Ids;
use crate::service::Commands;

/// The key `Config::for_nats` uses: for tests and benchmarks only (`test-util`).
#[cfg(feature = "test-util")]
pub const TEST_KEY: &str = "carewoven-test-key-not-for-real-records";
/// Shortest accepted `--person-id-key`.
pub const MIN_KEY_LEN: usize = 32;

/// Largest gRPC request the service decodes (the same for every Carewoven service). Larger
/// ones are refused before any work is done.
pub use carewoven_proto::MAX_REQUEST_BYTES;

/// Service configuration, from flags or environment (see `main.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "CAREWOVEN_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS nkey seed to authenticate with, when the server requires it
    /// (every configuration in `deploy/`: this service's own identity, commands.nk from
    /// `carectl keys nats`).
    #[arg(long, env = "CAREWOVEN_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// JetStream stream holding the event log.
    #[arg(long, env = "CAREWOVEN_STREAM", default_value = "CAREWOVEN")]
    pub stream: String,
    /// Stream replicas: 1 on one server, 3 on a three-node NATS cluster.
    #[arg(long, env = "CAREWOVEN_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Seconds to wait for NATS before answering UNAVAILABLE.
    #[arg(long, env = "CAREWOVEN_NATS_TIMEOUT_SECS", default_value_t = 5)]
    pub nats_timeout_secs: u64,
    /// Secret key for deriving person ids from NHS numbers. Must be the same for every
    /// instance and never change; keep it out of source control in production.
    #[arg(
        long,
        env = "CAREWOVEN_PERSON_ID_KEY",
        default_value = "carewoven-development-key",
        hide_env_values = true
    )]
    pub person_id_key: String,
    /// Seconds to let in-flight commands finish on shutdown.
    #[arg(long, env = "CAREWOVEN_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// The token issuers' public keys (JSON trust file, see ARCHITECTURE.md, "Identity").
    /// Required: every call must carry a bearer token signed by one of them.
    #[arg(long, env = "CAREWOVEN_TRUSTED_KEYS")]
    pub trusted_keys: Option<std::path::PathBuf>,
    /// Trusted keys given in memory (tests and benchmarks); overrides `trusted_keys`.
    #[arg(skip)]
    pub trust: Option<carewoven_access::token::TrustFile>,
    #[command(flatten)]
    pub access: AccessConfig,
}

impl Config {
    /// Defaults, pointed at one NATS URL, trusting the fixed test issuers (for tests and
    /// benchmarks: `test-util`).
    #[cfg(feature = "test-util")]
    pub fn for_nats(url: impl Into<String>) -> Self {
        Config {
            nats_url: url.into(),
            nats_nkey_seed: None,
            stream: "CAREWOVEN".to_owned(),
            replicas: 1,
            nats_timeout_secs: 5,
            person_id_key: TEST_KEY.to_owned(),
            shutdown_grace_secs: 30,
            trusted_keys: None,
            trust: Some(carewoven_access::token::testing::trust()),
            access: AccessConfig::default(),
        }
    }

    /// The verifier for bearer tokens.
    pub fn verifier(&self) -> anyhow::Result<carewoven_access::Verifier> {
        self.access
            .verifier(self.trust.as_ref(), self.trusted_keys.as_deref())
    }

    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            stream: self.stream.clone(),
            replicas: self.replicas,
            timeout: Duration::from_secs(self.nats_timeout_secs),
            ..LogConfig::default()
        }
    }
}

/// Open the event log, retrying until NATS answers.
async fn open_log(config: &Config) -> anyhow::Result<EventLog> {
    let client = carewoven_eventlog::connect(
        &config.nats_url,
        "carewoven-commands",
        Duration::from_secs(config.nats_timeout_secs),
        config.nats_nkey_seed.as_deref(),
    )
    .await?;
    let mut delay = Duration::from_millis(100);
    loop {
        match EventLog::open(client.clone(), config.log_config()).await {
            Ok(log) => return Ok(log),
            Err(e @ carewoven_eventlog::LogError::Refused(_)) => {
                return Err(anyhow::anyhow!(e).context("opening the event log"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "event log not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Serve the command API on `listener` until `shutdown` completes, then stop accepting and
/// return once in-flight commands have finished (or the grace period ends).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    anyhow::ensure!(
        config.person_id_key.len() >= MIN_KEY_LEN,
        "--person-id-key (CAREWOVEN_PERSON_ID_KEY) must be at least {MIN_KEY_LEN} characters"
    );
    let verifier = config.verifier()?;
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let log = tokio::select! {
        log = open_log(&config) => log?,
        _ = stop.cancelled() => return Ok(()),
    };
    tracing::info!(stream = log.stream_name(), "event log ready");
    let timeout = Duration::from_secs(config.nats_timeout_secs);
    let js = async_nats::jetstream::new(log.client().clone());
    let audit = AuditLog::open(log.client().clone(), config.replicas, timeout).await?;
    let access = AccessIndex::start_with(
        js,
        log.stream_name(),
        config.access.index_options("carewoven-commands", &audit),
        stop.clone(),
    )
    .await?;
    let tally = audit.start_tally_flusher();
    let handler = Handler::new(
        log,
        Ids::new(config.person_id_key.as_bytes()),
        timeout,
        access,
        audit.clone(),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CommandServiceServer<Commands>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(carewoven_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let auth = Authenticator::new(verifier);
    // Calls without a valid token are refused (and counted) before anything is decoded.
    let commands = InterceptedService::new(
        CommandServiceServer::new(Commands::new(handler, auth.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        Gatekeeper::new(
            auth,
            audit,
            carewoven_proto::v1::AuditAction::Command,
            CommandServiceServer::<Commands>::NAME,
        ),
    );

    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(commands)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.clone().cancelled_owned(),
        );
    tracing::info!(%local, "command service listening");
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => result.context("serving gRPC")?,
        _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "in-flight commands did not finish within the grace period");
        }
    }
    tally.finish().await;
    tracing::info!("command service stopped");
    Ok(())
}

/// Log a command's outcome: identifiers and codes only, never personal data.
pub(crate) fn trace_outcome(rpc: &str, result: &Result<carewoven_proto::v1::CommandReply, Status>) {
    match result {
        Ok(reply) => tracing::info!(
            rpc,
            aggregate_kind = %reply.aggregate_kind,
            aggregate_id = %reply.aggregate_id,
            log_position = reply.log_position,
            duplicate = reply.duplicate,
            "command accepted"
        ),
        Err(status) => tracing::info!(rpc, code = ?status.code(), "command refused"),
    }
}
