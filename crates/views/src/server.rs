use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use carewoven_proto::v1::query_service_server::QueryServiceServer;
use carewoven_proto::v1::views_admin_server::ViewsAdminServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use carewoven_access::{AccessConfig, AccessIndex, AuditLog, Authenticator, Gatekeeper};
use carewoven_proto::MAX_REQUEST_BYTES;
use carewoven_proto::v1::AuditAction;

use crate::admin::Admin;
use crate::guard::Guard;
use crate::paging::PageTokens;
use crate::projector::{self, OnUndecodable};
use crate::query::Queries;
use crate::state::Views;
use crate::store;

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
    /// (every configuration in `deploy/`: this service's own identity, views.nk from
    /// `carectl keys nats`).
    #[arg(long, env = "CAREWOVEN_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// JetStream stream holding the event log.
    #[arg(long, env = "CAREWOVEN_STREAM", default_value = "CAREWOVEN")]
    pub stream: String,
    /// The views file (redb). Derived data: delete it and the views are rebuilt from the log.
    #[arg(long, env = "CAREWOVEN_VIEWS_FILE", default_value = "views.redb")]
    pub file: PathBuf,
    /// Skip (and log) events that cannot be decoded instead of stopping the projector at
    /// them. Access decisions are not affected: see `--index-skip-undecodable`.
    #[arg(long, env = "CAREWOVEN_SKIP_UNDECODABLE")]
    pub skip_undecodable: bool,
    /// Secret for signing page tokens; set the same on every instance behind one address.
    /// Unset, each process draws a random one (its tokens do not survive a restart).
    #[arg(long, env = "CAREWOVEN_PAGE_TOKEN_KEY", hide_env_values = true)]
    pub page_token_key: Option<String>,
    /// Replicas of the audit stream (`CW_AUDIT`): 1 on one server, 3 on a three-node NATS
    /// cluster. The same as the command service's.
    #[arg(long, env = "CAREWOVEN_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Seconds to wait for NATS (connecting, the audit stream's acknowledgement, confirming
    /// a refusal against the log's end) before answering UNAVAILABLE.
    #[arg(long, env = "CAREWOVEN_NATS_TIMEOUT_SECS", default_value_t = 5)]
    pub nats_timeout_secs: u64,
    /// The token issuers' public keys (JSON trust file, see ARCHITECTURE.md, "Identity").
    /// Required: every call must carry a bearer token signed by one of them.
    #[arg(long, env = "CAREWOVEN_TRUSTED_KEYS")]
    pub trusted_keys: Option<PathBuf>,
    /// Trusted keys given in memory (tests and benchmarks); overrides `trusted_keys`.
    #[arg(skip)]
    pub trust: Option<carewoven_access::token::TrustFile>,
    #[command(flatten)]
    pub access: AccessConfig,
}

impl Config {
    /// Defaults for tests and benchmarks: one NATS URL, a views file, and trust in the fixed
    /// test issuer (`carewoven_access::token::testing`), whose private key is public
    /// (`test-util`).
    #[cfg(feature = "test-util")]
    pub fn new(nats_url: impl Into<String>, file: PathBuf) -> Self {
        Config {
            nats_url: nats_url.into(),
            nats_nkey_seed: None,
            stream: "CAREWOVEN".to_owned(),
            file,
            skip_undecodable: false,
            page_token_key: None,
            replicas: 1,
            nats_timeout_secs: 5,
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
}

/// Serve the views until `shutdown` completes. The projector runs beside the gRPC server.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = Authenticator::new(config.verifier()?);
    let timeout = Duration::from_secs(config.nats_timeout_secs);
    let db = tokio::task::block_in_place(|| store::open(&config.file))?;
    let position = store::position(&db)?;
    tracing::info!(file = %config.file.display(), position, "views file open");
    let views = Views::new(config.file.clone(), db, position);

    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let client = carewoven_eventlog::connect(
        &config.nats_url,
        "carewoven-views",
        timeout,
        config.nats_nkey_seed.as_deref(),
    )
    .await?;
    let js = async_nats::jetstream::new(client.clone());
    // Access decisions follow the same log as the views; reads are audited in CW_AUDIT.
    let audit = AuditLog::attach(client, config.replicas, timeout).await?;
    let access = AccessIndex::start_with(
        js.clone(),
        &config.stream,
        config.access.index_options("carewoven-views", &audit),
        stop.clone(),
    )
    .await?;
    let tally = audit.start_tally_flusher();
    let guard = Guard::new(auth.clone(), access, audit.clone(), timeout);
    let on_undecodable = if config.skip_undecodable {
        OnUndecodable::Skip
    } else {
        OnUndecodable::Stop
    };
    let projector = tokio::spawn(projector::run(
        views.clone(),
        js.clone(),
        config.stream.clone(),
        on_undecodable,
        stop.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<QueryServiceServer<Queries>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(carewoven_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    // Calls without a valid token are refused (and counted) before anything is decoded.
    let gate = |action, service| Gatekeeper::new(auth.clone(), audit.clone(), action, service);
    let queries = QueryServiceServer::new(Queries::new(
        views.clone(),
        PageTokens::new(match &config.page_token_key {
            Some(key) => key.as_bytes().to_vec(),
            None => [
                uuid::Uuid::new_v4().into_bytes(),
                uuid::Uuid::new_v4().into_bytes(),
            ]
            .concat(),
        }),
        stop.clone(),
        guard.clone(),
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let queries = InterceptedService::new(
        queries,
        gate(AuditAction::RecordRead, QueryServiceServer::<Queries>::NAME),
    );
    let admin = ViewsAdminServer::new(Admin::new(
        views.clone(),
        js,
        config.stream.clone(),
        on_undecodable,
        guard,
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let admin = InterceptedService::new(
        admin,
        gate(AuditAction::Unspecified, ViewsAdminServer::<Admin>::NAME),
    );
    tracing::info!(addr = %listener.local_addr()?, "views service listening");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(queries)
        .add_service(admin)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.clone().cancelled_owned(),
        )
        .await
        .context("serving gRPC")?;
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(30), projector).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "projector had stopped"),
        Ok(_) => {}
        Err(_) => tracing::warn!("projector did not stop within 30 s"),
    }
    tally.finish().await;
    Ok(())
}
