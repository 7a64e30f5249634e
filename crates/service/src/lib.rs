//! The shell every Carewoven service runs in, so each service's `run` holds only what is its
//! own:
//!
//! - [`ServiceConfig`]: the NATS, stream, replicas, timeout and trust settings (and the
//!   access settings of [`AccessConfig`]) every service flattens into its flags, with the
//!   same flags and environment variables everywhere; [`TrustConfig`] alone for a service
//!   whose NATS settings are its tool's (`carewoven-analyst serve`).
//! - [`serve`] / [`serve_with`]: a service's APIs beside gRPC health and reflection (`v1`
//!   and `v1alpha`, listing only the services this port serves), with RPC metrics and
//!   graceful shutdown: health says `SERVING` only once the service is ready (for a service
//!   with an access index, once it has caught up with the log's end at start) and while its
//!   [`Vitals`] hold (NATS reachable, followers reading the log), `NOT_SERVING` otherwise
//!   and as soon as shutdown begins; the listener then stops accepting and in-flight calls
//!   finish.
//! - [`metrics`]: the `/metrics` endpoint (`--metrics-listen`) and the RPC metrics layer.
//! - [`stop_on`], [`shutdown_signal`] (Ctrl-C or SIGTERM) and [`init_tracing`] for the thin
//!   `main`s.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use carewoven_access::token::TrustFile;
use carewoven_access::{AccessConfig, AccessIndex, Verifier};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

pub mod metrics;
pub mod vitals;

pub use metrics::MetricsConfig;
pub use vitals::Vitals;

/// Who may call: the token issuers' public keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrustConfig {
    /// The token issuers' public keys (JSON trust file, see ARCHITECTURE.md, "Identity").
    /// Required: every call must carry a bearer token signed by one of them.
    #[arg(long, env = "CAREWOVEN_TRUSTED_KEYS")]
    pub trusted_keys: Option<PathBuf>,
    /// Trusted keys given in memory (tests and benchmarks); overrides `trusted_keys`.
    #[arg(skip)]
    pub trust: Option<TrustFile>,
}

impl TrustConfig {
    /// Trust the fixed test issuers (`carewoven_access::token::testing`): tests and
    /// benchmarks only.
    #[cfg(feature = "test-util")]
    pub fn for_tests() -> Self {
        TrustConfig {
            trusted_keys: None,
            trust: Some(carewoven_access::token::testing::trust()),
        }
    }

    /// The verifier for bearer tokens, with `access`'s token lifetime.
    pub fn verifier(&self, access: &AccessConfig) -> anyhow::Result<Verifier> {
        access.verifier(self.trust.as_ref(), self.trusted_keys.as_deref())
    }
}

/// The settings every service shares, flattened into its flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceConfig {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "CAREWOVEN_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS nkey seed to authenticate with, when the server requires it (every
    /// configuration in `deploy/`: this service's own identity, `<service>.nk` from
    /// `carectl keys nats`).
    #[arg(long, env = "CAREWOVEN_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// JetStream stream holding the event log.
    #[arg(long, env = "CAREWOVEN_STREAM", default_value = "CAREWOVEN")]
    pub stream: String,
    /// Replicas of the streams the service creates or attaches to (the event log, the audit
    /// and feed streams): 1 on one server, 3 on a three-node NATS cluster. The same on
    /// every service.
    #[arg(long, env = "CAREWOVEN_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Seconds to wait for NATS (connecting, an append or the audit stream's
    /// acknowledgement, confirming a refusal against the log's end) before answering
    /// UNAVAILABLE.
    #[arg(long, env = "CAREWOVEN_NATS_TIMEOUT_SECS", default_value_t = 5)]
    pub nats_timeout_secs: u64,
    #[command(flatten)]
    pub trust: TrustConfig,
    /// Token lifetime, the undecodable events the access index may treat as applied, and
    /// the governance settings.
    #[command(flatten)]
    pub access: AccessConfig,
    /// Where to serve Prometheus metrics (`--metrics-listen`).
    #[command(flatten)]
    pub metrics: MetricsConfig,
}

impl ServiceConfig {
    /// Defaults, pointed at one NATS URL, trusting the fixed test issuers: tests and
    /// benchmarks only.
    #[cfg(feature = "test-util")]
    pub fn for_nats(url: impl Into<String>) -> Self {
        ServiceConfig {
            nats_url: url.into(),
            nats_nkey_seed: None,
            stream: "CAREWOVEN".to_owned(),
            replicas: 1,
            nats_timeout_secs: 5,
            trust: TrustConfig::for_tests(),
            access: AccessConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }

    /// How long to wait for NATS.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.nats_timeout_secs)
    }

    /// The verifier for bearer tokens.
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        self.trust.verifier(&self.access)
    }

    /// Connect to NATS as `name` (the connection name the server shows), with this
    /// service's identity.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        Ok(carewoven_eventlog::connect(
            &self.nats_url,
            name,
            self.timeout(),
            self.nats_nkey_seed.as_deref(),
        )
        .await?)
    }
}

/// A token cancelled when `shutdown` completes: what `run` passes to the parts of a service
/// that must stop with it.
pub fn stop_on(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    stop
}

/// Resolves when the access index has caught up with the log's end as it was at start:
/// until then the service is not ready to decide (health stays `NOT_SERVING`). Retried with
/// backoff while NATS does not answer or the index cannot reach the end; never resolves if
/// `stop` is cancelled first.
pub async fn caught_up(access: AccessIndex, timeout: Duration, stop: CancellationToken) {
    let mut delay = Duration::from_millis(100);
    loop {
        match access.catch_up(timeout).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the access index has not caught up yet; not serving");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => std::future::pending::<()>().await,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// [`serve_with`] without vitals: health follows `ready` and shutdown only.
pub async fn serve(
    listener: TcpListener,
    apis: Routes,
    names: &[&'static str],
    ready: impl Future<Output = ()> + Send + 'static,
    stop: CancellationToken,
    grace: Option<Duration>,
) -> anyhow::Result<()> {
    serve_with(listener, apis, names, ready, Vitals::new(), stop, grace).await
}

/// The gRPC names reflection lists on a port serving `names`: those, health and reflection.
fn reflected(names: &[&'static str]) -> Vec<&'static str> {
    let mut listed = names.to_vec();
    listed.extend([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    listed
}

fn reflection_builder(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(carewoven_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in reflected(names) {
        builder = builder.with_service_name(name);
    }
    builder
}

/// Serve `apis` (the service's own gRPC services, named `names` in health) on `listener`
/// beside gRPC health and reflection, until `stop` is cancelled. Every call is counted and
/// timed ([`metrics::RpcMetricsLayer`]).
///
/// Health reports every name, and the server as a whole (`""`), `NOT_SERVING` until `ready`
/// resolves; from then on `SERVING` while `vitals` hold for it (checked every
/// [`vitals::CHECK_INTERVAL`]) and `NOT_SERVING` while one does not. Once `stop` is
/// cancelled it reports `NOT_SERVING` again, the listener stops accepting and `serve_with`
/// returns when in-flight calls have finished, or after `grace` if one is given.
/// Reflection (`grpc.reflection.v1` and `v1alpha`) lists `names`, health and reflection.
pub async fn serve_with(
    listener: TcpListener,
    apis: Routes,
    names: &[&'static str],
    ready: impl Future<Output = ()> + Send + 'static,
    vitals: Vitals,
    stop: CancellationToken,
    grace: Option<Duration>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let reflection_v1 = reflection_builder(names)
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection_builder(names)
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;
    // The server as a whole ("") says the same as its APIs.
    let names: Vec<&'static str> = std::iter::once("").chain(names.iter().copied()).collect();
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in &names {
        health
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
    ::metrics::gauge!("carewoven_health_serving").set(0.0);

    let reporter = health.clone();
    let watched = names.clone();
    let until = stop.clone();
    let becoming_ready = tokio::spawn(async move {
        tokio::select! {
            () = ready => {}
            _ = until.cancelled() => return,
        }
        tracing::info!(%local, "ready");
        // From now on health says what the vitals say, name by name.
        let mut said: Vec<Option<bool>> = vec![None; watched.len()];
        let mut tick = tokio::time::interval(vitals::CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = until.cancelled() => return,
            }
            for (name, said) in watched.iter().zip(said.iter_mut()) {
                let failing = vitals.failing(name);
                let serving = failing.is_none();
                if *said == Some(serving) {
                    continue;
                }
                if name.is_empty() {
                    match &failing {
                        None => tracing::info!(%local, "serving"),
                        Some(why) => tracing::warn!(%local, reason = %why, "not serving"),
                    }
                    ::metrics::gauge!("carewoven_health_serving").set(if serving {
                        1.0
                    } else {
                        0.0
                    });
                }
                let status = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                // Shutdown has the last word.
                if until.is_cancelled() {
                    return;
                }
                reporter.set_service_status(*name, status).await;
                *said = Some(serving);
            }
        }
    });
    // Shutdown begins: health says so first, then the listener stops accepting.
    let shutting_down = {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            becoming_ready.abort();
            let _ = becoming_ready.await;
            ::metrics::gauge!("carewoven_health_serving").set(0.0);
            for name in names {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
        }
    };
    let server = tonic::transport::Server::builder()
        .layer(metrics::RpcMetricsLayer)
        .add_routes(apis)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutting_down,
        );
    match grace {
        None => server.await.context("serving gRPC")?,
        Some(grace) => {
            let mut server = std::pin::pin!(server);
            tokio::select! {
                result = &mut server => result.context("serving gRPC")?,
                _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
                }
            }
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM: the shutdown signal every service's `main` passes to `run`.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}

/// Set up tracing for a service binary: `RUST_LOG` (default `info`), as JSON lines if asked.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}
