//! Configuration and the gateway's `run`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use carewoven_access::{AccessIndex, AuditLog, Authenticator, Gatekeeper};
use carewoven_proto::MAX_REQUEST_BYTES;
use carewoven_proto::v1::AuditAction;
use carewoven_proto::v1::audit_service_server::AuditServiceServer;
use carewoven_proto::v1::feed_service_server::FeedServiceServer;
use carewoven_service::ServiceConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use crate::evaluator::{Clock, Evaluator, Progress, open_feed_stream, system_clock};
use crate::feed::{CursorKey, Feeds};

/// The cursor key `Config::for_nats` uses: for tests and benchmarks only (`test-util`).
#[cfg(feature = "test-util")]
pub const TEST_CURSOR_KEY: &str = "carewoven-test-cursor-key-not-for-real-feeds";
pub const MIN_KEY_LEN: usize = 32;

#[derive(Clone, clap::Args)]
pub struct Config {
    /// NATS, stream, replicas (of the feed and audit streams), timeout, trust and access
    /// settings, as every service has them. `--index-skip-undecodable` applies to the
    /// evaluator too (that person's deliveries resume).
    #[command(flatten)]
    pub service: ServiceConfig,
    /// Secret key signing feed cursors (at least 32 characters; the same on every instance).
    #[arg(long, env = "CAREWOVEN_CURSOR_KEY", hide_env_values = true)]
    pub cursor_key: String,
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
    /// Partners' rest-hook endpoints: a JSON file `{"ORG": "http://host:port/path"}`. Each
    /// named partner's feed is POSTed there as FHIR notifications, in order, retried until
    /// taken. Unset: no rest-hook delivery (partners read `$events` or `Subscribe`).
    #[arg(long, env = "CAREWOVEN_REST_HOOKS", requires = "rest_hook_state")]
    pub rest_hooks: Option<std::path::PathBuf>,
    /// Where the last number each endpoint acknowledged is kept (redb, made if missing), so a
    /// restart resumes after it. Required with `--rest-hooks`.
    #[arg(long, env = "CAREWOVEN_REST_HOOK_STATE")]
    pub rest_hook_state: Option<std::path::PathBuf>,
    /// First wait after a failed notification; it doubles with each failure in a row.
    #[arg(long, env = "CAREWOVEN_REST_HOOK_RETRY_MS", default_value_t = 500)]
    pub rest_hook_retry_ms: u64,
    /// The longest wait between attempts.
    #[arg(
        long,
        env = "CAREWOVEN_REST_HOOK_RETRY_MAX_MS",
        default_value_t = 60_000
    )]
    pub rest_hook_retry_max_ms: u64,
    /// The FHIR API's base URL, written into notifications (`fullUrl`).
    #[arg(
        long,
        env = "CAREWOVEN_FHIR_BASE_URL",
        default_value = "http://localhost/fhir"
    )]
    pub fhir_base_url: String,
}

impl Config {
    /// Defaults for one NATS URL, trusting the fixed test issuer (tests and benchmarks:
    /// `test-util`).
    #[cfg(feature = "test-util")]
    pub fn for_nats(url: impl Into<String>) -> Self {
        Config {
            service: ServiceConfig::for_nats(url),
            cursor_key: TEST_CURSOR_KEY.to_owned(),
            clock: system_clock(),
            sweep_interval_secs: 60,
            access_list_file: None,
            evaluator_checkpoint: None,
            rest_hooks: None,
            rest_hook_state: None,
            rest_hook_retry_ms: 500,
            rest_hook_retry_max_ms: 60_000,
            fhir_base_url: "http://localhost/fhir".to_owned(),
        }
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
    let endpoints = match &config.rest_hooks {
        Some(path) => crate::rest_hook::read_endpoints(path)?,
        None => Default::default(),
    };
    let verifier = config.service.verifier()?;
    let local: SocketAddr = listener.local_addr()?;
    let stop = carewoven_service::stop_on(shutdown);
    let timeout = config.service.timeout();
    let client = config.service.connect("carewoven-gateway").await?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(timeout);
    // The event stream is the command service's; wait until it exists.
    let mut delay = Duration::from_millis(100);
    loop {
        match js.get_stream_no_info(&config.service.stream).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, stream = %config.service.stream, "event stream not ready; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let feed = open_feed_stream(&js, config.service.replicas).await?;
    let audit = AuditLog::attach(client.clone(), config.service.replicas, timeout).await?;
    let access = AccessIndex::start_with(
        js.clone(),
        &config.service.stream,
        config
            .service
            .access
            .index_options("carewoven-gateway", &audit),
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

    // The evaluator reads the log on a connection of its own (see `evaluator.rs`).
    let mut reader = async_nats::jetstream::new(
        config
            .service
            .connect("carewoven-gateway-evaluator")
            .await?,
    );
    reader.set_timeout(timeout);
    let evaluator = Evaluator::new(
        js.clone(),
        config.service.stream.clone(),
        feed.clone(),
        audit.clone(),
        config.clock.clone(),
        progress,
    )
    .reading_from(reader)
    .skipping(
        config
            .service
            .access
            .index_skip_undecodable
            .iter()
            .copied()
            .collect(),
    )
    .governed_by(config.service.access.governance())
    .checkpointed(
        config.evaluator_checkpoint.clone(),
        config.service.access.access_cache_people,
    );
    let evaluator_health = evaluator.follow_health();
    let access_health = access.follow_health();
    let sampled_access = access.clone();
    let sampled_feed = feed.clone();
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
    let cursors = CursorKey::new(config.cursor_key.as_bytes());
    let hooks = crate::rest_hook::Hooks::default();
    let delivery = if endpoints.is_empty() {
        None
    } else {
        let state = config
            .rest_hook_state
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--rest-hooks needs --rest-hook-state"))?;
        let delivery = crate::rest_hook::Delivery::open(
            feed.clone(),
            hooks.clone(),
            cursors.clone(),
            crate::rest_hook::Retry {
                initial: Duration::from_millis(config.rest_hook_retry_ms.max(1)),
                max: Duration::from_millis(
                    config
                        .rest_hook_retry_max_ms
                        .max(config.rest_hook_retry_ms.max(1)),
                ),
            },
            config.fhir_base_url.trim_end_matches('/').to_owned(),
            state,
        )?;
        Some(delivery)
    };
    let feeds = Feeds {
        auth,
        access,
        audit,
        access_list,
        feed,
        cursors,
        hooks,
        deadline: timeout,
        stop: stop.clone(),
    };
    let ready = carewoven_service::caught_up(feeds.access.clone(), timeout, stop.clone());
    let apis = Routes::new(InterceptedService::new(
        FeedServiceServer::new(feeds.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
        feed_gate,
    ))
    .add_service(InterceptedService::new(
        AuditServiceServer::new(feeds).max_decoding_message_size(MAX_REQUEST_BYTES),
        audit_gate,
    ));
    tracing::info!(%local, "gateway listening");
    carewoven_service::metrics::serve_metrics(&config.service.metrics, stop.clone()).await?;
    // After the recorder is installed, so the deliveries' gauges report.
    let mut delivering = Vec::new();
    if let Some(delivery) = delivery {
        for (org, endpoint) in endpoints {
            tracing::info!(organisation = %org, "rest-hook delivery");
            delivering.push(tokio::spawn(delivery.clone().run(
                org,
                endpoint,
                stop.clone(),
            )));
        }
    }
    let sampling = config.service.metrics.metrics_listen.is_some().then(|| {
        tokio::spawn(crate::backlog::run(
            sampled_access,
            sampled_feed,
            stop.clone(),
        ))
    });
    // The evaluator stopping holds back the feeds, not the access audit.
    let vitals = carewoven_service::Vitals::new()
        .nats(&client)
        .follower("access index", access_health, &[])
        .follower(
            "gateway evaluator",
            evaluator_health,
            &[FeedServiceServer::<Feeds>::NAME],
        );
    carewoven_service::serve_with(
        listener,
        apis,
        &[
            FeedServiceServer::<Feeds>::NAME,
            AuditServiceServer::<Feeds>::NAME,
        ],
        ready,
        vitals,
        stop.clone(),
        None,
    )
    .await?;
    stop.cancel();
    let _ = evaluating.await;
    let _ = sweeping.await;
    for task in delivering {
        let _ = task.await;
    }
    if let Some(sampling) = sampling {
        let _ = sampling.await;
    }
    tally.finish().await;
    tracing::info!("gateway stopped");
    Ok(())
}
