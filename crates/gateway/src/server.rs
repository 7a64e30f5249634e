//! Configuration and the gateway's `run`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use carewoven_access::{AccessConfig, AccessIndex, AuditLog, Authenticator, Gatekeeper};
use carewoven_proto::MAX_REQUEST_BYTES;
use carewoven_proto::v1::AuditAction;
use carewoven_proto::v1::audit_service_server::AuditServiceServer;
use carewoven_proto::v1::feed_service_server::FeedServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use crate::evaluator::{Clock, Evaluator, Progress, open_feed_stream, system_clock};
use crate::feed::{CursorKey, Feeds};

/// The cursor key `Config::for_nats` uses: for tests and benchmarks only (`test-util`).
#[cfg(feature = "test-util")]
pub const TEST_CURSOR_KEY: &str = "carewoven-test-cursor-key-not-for-real-feeds";
pub const MIN_KEY_LEN: usize = 32;

#[derive(Clone, clap::Args)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "CAREWOVEN_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS nkey seed to authenticate with, when the server requires it
    /// (every configuration in `deploy/`: this service's own identity, gateway.nk from
    /// `carectl keys nats`).
    #[arg(long, env = "CAREWOVEN_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// JetStream stream holding the event log.
    #[arg(long, env = "CAREWOVEN_STREAM", default_value = "CAREWOVEN")]
    pub stream: String,
    /// Replicas of the feed and audit streams (3 on a three-node cluster).
    #[arg(long, env = "CAREWOVEN_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Seconds to wait for NATS before answering UNAVAILABLE.
    #[arg(long, env = "CAREWOVEN_NATS_TIMEOUT_SECS", default_value_t = 5)]
    pub nats_timeout_secs: u64,
    /// Secret key signing feed cursors (at least 32 characters; the same on every instance).
    #[arg(long, env = "CAREWOVEN_CURSOR_KEY", hide_env_values = true)]
    pub cursor_key: String,
    /// The token issuers' public keys (JSON trust file).
    #[arg(long, env = "CAREWOVEN_TRUSTED_KEYS")]
    pub trusted_keys: Option<std::path::PathBuf>,
    /// Trusted keys given in memory (tests and benchmarks); overrides `trusted_keys`.
    #[arg(skip)]
    pub trust: Option<carewoven_access::token::TrustFile>,
    /// The clock deciding agreement expiry (tests move it).
    #[arg(skip = system_clock())]
    pub clock: Clock,
    /// Seconds between sweeps recording grounds that ended with time (audit
    /// RELATIONSHIP_ENDED).
    #[arg(long, env = "CAREWOVEN_SWEEP_INTERVAL_SECS", default_value_t = 60)]
    pub sweep_interval_secs: u64,
    /// The access-list index (redb; derived from the audit stream and the feeds, rebuilt
    /// when missing). Unset: a temporary file, rebuilt at every start.
    #[arg(long, env = "CAREWOVEN_ACCESS_LIST_FILE")]
    pub access_list_file: Option<std::path::PathBuf>,
    /// Where the feed evaluator persists its fold and the feeds' numbers (redb, made if
    /// missing; deleting it rebuilds it from the log). A restart then costs the events since
    /// the last save. Unset: the evaluator folds the whole log at every start.
    #[arg(long, env = "CAREWOVEN_GATEWAY_CHECKPOINT")]
    pub evaluator_checkpoint: Option<std::path::PathBuf>,
    /// Token lifetime, and undecodable events the access index and the evaluator may treat
    /// as applied (`--index-skip-undecodable`: that person's deliveries resume).
    #[command(flatten)]
    pub access: AccessConfig,
}

impl Config {
    /// Defaults for one NATS URL, trusting the fixed test issuer (tests and benchmarks:
    /// `test-util`).
    #[cfg(feature = "test-util")]
    pub fn for_nats(url: impl Into<String>) -> Self {
        Config {
            nats_url: url.into(),
            nats_nkey_seed: None,
            stream: "CAREWOVEN".to_owned(),
            replicas: 1,
            nats_timeout_secs: 5,
            cursor_key: TEST_CURSOR_KEY.to_owned(),
            trusted_keys: None,
            trust: Some(carewoven_access::token::testing::trust()),
            clock: system_clock(),
            sweep_interval_secs: 60,
            access_list_file: None,
            evaluator_checkpoint: None,
            access: AccessConfig::default(),
        }
    }

    fn verifier(&self) -> anyhow::Result<carewoven_access::Verifier> {
        self.access
            .verifier(self.trust.as_ref(), self.trusted_keys.as_deref())
    }
}

/// A handle on a running gateway (tests and benchmarks watch its progress).
#[derive(Clone)]
pub struct Gateway {
    pub progress: watch::Receiver<Progress>,
}

/// Serve the feed and audit APIs on `listener` and run the evaluator until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (progress, _) = watch::channel(Progress::default());
    serve(listener, config, shutdown, progress).await
}

/// [`run`], reporting the evaluator's progress on `progress`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: watch::Sender<Progress>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.cursor_key.len() >= MIN_KEY_LEN,
        "--cursor-key (CAREWOVEN_CURSOR_KEY) must be at least {MIN_KEY_LEN} characters"
    );
    let verifier = config.verifier()?;
    let local: SocketAddr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let timeout = Duration::from_secs(config.nats_timeout_secs);
    let client = carewoven_eventlog::connect(
        &config.nats_url,
        "carewoven-gateway",
        timeout,
        config.nats_nkey_seed.as_deref(),
    )
    .await?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(timeout);
    // The event stream is the command service's; wait until it exists.
    let mut delay = Duration::from_millis(100);
    loop {
        match js.get_stream_no_info(&config.stream).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, stream = %config.stream, "event stream not ready; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let feed = open_feed_stream(&js, config.replicas).await?;
    let audit = AuditLog::attach(client.clone(), config.replicas, timeout).await?;
    let access = AccessIndex::start_with(
        js.clone(),
        &config.stream,
        config.access.index_options("carewoven-gateway", &audit),
        stop.clone(),
    )
    .await?;
    let tally = audit.start_tally_flusher();
    let access_list = crate::access_list::AccessList::start(
        js.clone(),
        config.access_list_file.as_deref(),
        stop.clone(),
    )
    .await?;

    let evaluator = Evaluator::new(
        js.clone(),
        config.stream.clone(),
        feed.clone(),
        audit.clone(),
        config.clock.clone(),
        progress,
    )
    .skipping(
        config
            .access
            .index_skip_undecodable
            .iter()
            .copied()
            .collect(),
    )
    .governed_by(config.access.governance())
    .checkpointed(
        config.evaluator_checkpoint.clone(),
        config.access.access_cache_people,
    );
    let evaluating = tokio::spawn(evaluator.run(stop.clone()));
    let sweeping = tokio::spawn(crate::sweep::run(
        access.clone(),
        audit.clone(),
        js.clone(),
        config.clock.clone(),
        Duration::from_secs(config.sweep_interval_secs.max(1)),
        timeout,
        stop.clone(),
    ));

    let auth = Authenticator::new(verifier);
    // Calls without a valid token are refused (and counted) before anything is decoded.
    let gate = |action, service| Gatekeeper::new(auth.clone(), audit.clone(), action, service);
    let feed_gate = gate(AuditAction::FeedSubscribe, FeedServiceServer::<Feeds>::NAME);
    let audit_gate = gate(AuditAction::AuditRead, AuditServiceServer::<Feeds>::NAME);
    let feeds = Feeds {
        auth,
        access,
        audit,
        access_list,
        feed,
        cursors: CursorKey::new(config.cursor_key.as_bytes()),
        deadline: timeout,
        stop: stop.clone(),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FeedServiceServer<Feeds>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(carewoven_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    tracing::info!(%local, "gateway listening");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(InterceptedService::new(
            FeedServiceServer::new(feeds.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
            feed_gate,
        ))
        .add_service(InterceptedService::new(
            AuditServiceServer::new(feeds).max_decoding_message_size(MAX_REQUEST_BYTES),
            audit_gate,
        ))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.clone().cancelled_owned(),
        )
        .await
        .context("serving gRPC")?;
    stop.cancel();
    let _ = evaluating.await;
    let _ = sweeping.await;
    tally.finish().await;
    tracing::info!("gateway stopped");
    Ok(())
}
