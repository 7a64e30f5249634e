use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use carewoven_eventlog::{EventLog, LogConfig};
use carewoven_proto::v1::command_service_server::CommandServiceServer;
use carewoven_service::ServiceConfig;
use tokio::net::TcpListener;
use tonic::Status;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use carewoven_access::{AccessIndex, AuditLog, Authenticator, Gatekeeper};

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
    /// NATS, stream, replicas, timeout, trust and access settings, as every service has them.
    #[command(flatten)]
    pub service: ServiceConfig,
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
}

impl Config {
    /// Defaults, pointed at one NATS URL, trusting the fixed test issuers (for tests and
    /// benchmarks: `test-util`).
    #[cfg(feature = "test-util")]
    pub fn for_nats(url: impl Into<String>) -> Self {
        Config {
            service: ServiceConfig::for_nats(url),
            person_id_key: TEST_KEY.to_owned(),
            shutdown_grace_secs: 30,
        }
    }

    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            stream: self.service.stream.clone(),
            replicas: self.service.replicas,
            timeout: self.service.timeout(),
            ..LogConfig::default()
        }
    }
}

/// Open the event log, retrying until NATS answers.
async fn open_log(config: &Config) -> anyhow::Result<EventLog> {
    let client = config.service.connect("carewoven-commands").await?;
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
/// return once in-flight commands have finished (or the grace period ends). Health says
/// `SERVING` once the access index has caught up with the log.
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
    let verifier = config.service.verifier()?;
    let stop = carewoven_service::stop_on(shutdown);
    let log = tokio::select! {
        log = open_log(&config) => log?,
        _ = stop.cancelled() => return Ok(()),
    };
    tracing::info!(stream = log.stream_name(), "event log ready");
    let timeout = config.service.timeout();
    let nats = log.client().clone();
    let js = async_nats::jetstream::new(nats.clone());
    let audit = AuditLog::open(log.client().clone(), config.service.replicas, timeout).await?;
    let access = AccessIndex::start_with(
        js,
        log.stream_name(),
        config
            .service
            .access
            .index_options("carewoven-commands", &audit),
        stop.clone(),
    )
    .await?;
    let tally = audit.start_tally_flusher();
    let handler = Handler::new(
        log,
        Ids::new(config.person_id_key.as_bytes()),
        timeout,
        access.clone(),
        audit.clone(),
    );

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
    tracing::info!(%local, "command service listening");
    carewoven_service::metrics::serve_metrics(&config.service.metrics, stop.clone()).await?;
    let vitals = carewoven_service::Vitals::new().nats(&nats).follower(
        "access index",
        access.follow_health(),
        &[],
    );
    carewoven_service::serve_with(
        listener,
        Routes::new(commands),
        &[CommandServiceServer::<Commands>::NAME],
        carewoven_service::caught_up(access, timeout, stop.clone()),
        vitals,
        stop,
        Some(Duration::from_secs(config.shutdown_grace_secs)),
    )
    .await?;
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
