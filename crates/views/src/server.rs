use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use carewoven_proto::v1::query_service_server::QueryServiceServer;
use carewoven_proto::v1::views_admin_server::ViewsAdminServer;
use carewoven_service::ServiceConfig;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use carewoven_access::{AccessIndex, AuditLog, Authenticator, Gatekeeper};
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
    /// NATS, stream, replicas (of the audit stream, `CW_AUDIT`), timeout, trust and access
    /// settings, as every service has them.
    #[command(flatten)]
    pub service: ServiceConfig,
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
    /// Also serve the read-only FHIR R4 API (`carewoven-fhir`) on this address, with the
    /// same tokens, authorisation and audit as the queries. Off when unset.
    #[arg(long, env = "CAREWOVEN_VIEWS_FHIR_LISTEN")]
    pub fhir_listen: Option<String>,
    /// The gateway (`http://host:port`), whose access list the FHIR API serves as
    /// `AuditEvent` (with the caller's token). Without it, `AuditEvent` is not served.
    #[arg(long, env = "CAREWOVEN_VIEWS_FHIR_AUDIT_SERVER")]
    pub fhir_audit_server: Option<String>,
    /// Also serve the web screens (`carewoven-web`: the live discharge board, care records,
    /// referral inbox, caseload) on this address, with the same tokens, authorisation and
    /// audit as the queries. Off when unset.
    #[arg(long, env = "CAREWOVEN_VIEWS_WEB_LISTEN")]
    pub web_listen: Option<String>,
    /// The gateway (`http://host:port`), whose access list the screens show as "who accessed
    /// this record" (with the caller's token). Without it, that list is not shown.
    #[arg(long, env = "CAREWOVEN_VIEWS_WEB_AUDIT_SERVER")]
    pub web_audit_server: Option<String>,
    /// The command service (`http://host:port`), to which the referral inbox sends accept
    /// and reject decisions (with the caller's token). Without it, the screens are read-only.
    #[arg(long, env = "CAREWOVEN_VIEWS_WEB_COMMANDS_SERVER")]
    pub web_commands_server: Option<String>,
}

impl Config {
    /// Defaults for tests and benchmarks: one NATS URL, a views file, and trust in the fixed
    /// test issuer (`carewoven_access::token::testing`), whose private key is public
    /// (`test-util`).
    #[cfg(feature = "test-util")]
    pub fn new(nats_url: impl Into<String>, file: PathBuf) -> Self {
        Config {
            service: ServiceConfig::for_nats(nats_url),
            file,
            skip_undecodable: false,
            page_token_key: None,
            fhir_listen: None,
            fhir_audit_server: None,
            web_listen: None,
            web_audit_server: None,
            web_commands_server: None,
        }
    }
}

/// Serve the views until `shutdown` completes. The projector runs beside the gRPC server.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth = Authenticator::new(config.service.verifier()?);
    let timeout = config.service.timeout();
    let db = tokio::task::block_in_place(|| store::open(&config.file))?;
    let position = store::position(&db)?;
    tracing::info!(file = %config.file.display(), position, "views file open");
    let views = Views::new(config.file.clone(), db, position);

    let stop = carewoven_service::stop_on(shutdown);
    let client = config.service.connect("carewoven-views").await?;
    let js = async_nats::jetstream::new(client.clone());
    // Access decisions follow the same log as the views; reads are audited in CW_AUDIT.
    let audit = AuditLog::attach(client.clone(), config.service.replicas, timeout).await?;
    let access = AccessIndex::start_with(
        js.clone(),
        &config.service.stream,
        config
            .service
            .access
            .index_options("carewoven-views", &audit),
        stop.clone(),
    )
    .await?;
    let tally = audit.start_tally_flusher();
    let guard = Guard::new(auth.clone(), access.clone(), audit.clone(), timeout);
    let on_undecodable = if config.skip_undecodable {
        OnUndecodable::Skip
    } else {
        OnUndecodable::Stop
    };
    let projector = tokio::spawn(projector::run(
        views.clone(),
        js.clone(),
        config.service.stream.clone(),
        on_undecodable,
        stop.clone(),
    ));

    // Calls without a valid token are refused (and counted) before anything is decoded.
    let gate = |action, service| Gatekeeper::new(auth.clone(), audit.clone(), action, service);
    let queries = Arc::new(Queries::new(
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
    ));
    let fhir = match &config.fhir_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding the FHIR API to {addr}: {e}"))?;
            let audit = lazy_channel("the FHIR audit server", &config.fhir_audit_server, timeout)?;
            let stopped = stop.clone();
            Some(tokio::spawn(carewoven_fhir::serve(
                listener,
                queries.clone(),
                audit,
                async move { stopped.cancelled().await },
            )))
        }
        None => None,
    };
    let web = match &config.web_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding the web screens to {addr}: {e}"))?;
            let upstreams = carewoven_web::Upstreams {
                audit: lazy_channel("the web audit server", &config.web_audit_server, timeout)?,
                commands: lazy_channel(
                    "the web commands server",
                    &config.web_commands_server,
                    timeout,
                )?,
            };
            let stopped = stop.clone();
            Some(tokio::spawn(carewoven_web::serve(
                listener,
                queries.clone(),
                upstreams,
                async move { stopped.cancelled().await },
            )))
        }
        None => None,
    };
    let queries =
        QueryServiceServer::from_arc(queries).max_decoding_message_size(MAX_REQUEST_BYTES);
    let queries = InterceptedService::new(
        queries,
        gate(AuditAction::RecordRead, QueryServiceServer::<Queries>::NAME),
    );
    let admin = ViewsAdminServer::new(Admin::new(
        views.clone(),
        js,
        config.service.stream.clone(),
        on_undecodable,
        guard,
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let admin = InterceptedService::new(
        admin,
        gate(AuditAction::Unspecified, ViewsAdminServer::<Admin>::NAME),
    );
    tracing::info!(addr = %listener.local_addr()?, "views service listening");
    carewoven_service::metrics::serve_metrics(&config.service.metrics, stop.clone()).await?;
    // A stopped projector makes the queries stale, not the admin API (which rebuilds).
    let vitals = carewoven_service::Vitals::new()
        .nats(&client)
        .follower("access index", access.follow_health(), &[])
        .follower(
            "views projector",
            views.projector_health.clone(),
            &[QueryServiceServer::<Queries>::NAME],
        );
    carewoven_service::serve_with(
        listener,
        Routes::new(queries).add_service(admin),
        &[
            QueryServiceServer::<Queries>::NAME,
            ViewsAdminServer::<Admin>::NAME,
        ],
        carewoven_service::caught_up(access, timeout, stop.clone()),
        vitals,
        stop.clone(),
        None,
    )
    .await?;
    stop.cancel();
    if let Some(fhir) = fhir
        && let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(30), fhir).await
    {
        tracing::warn!(error = %e, "the FHIR API had stopped");
    }
    if let Some(web) = web
        && let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(30), web).await
    {
        tracing::warn!(error = %e, "the web screens had stopped");
    }
    match tokio::time::timeout(Duration::from_secs(30), projector).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "projector had stopped"),
        Ok(_) => {}
        Err(_) => tracing::warn!("projector did not stop within 30 s"),
    }
    tally.finish().await;
    Ok(())
}

/// A channel to `url`, if given, connected on first use (`what` names it in an error).
fn lazy_channel(
    what: &str,
    url: &Option<String>,
    timeout: Duration,
) -> anyhow::Result<Option<tonic::transport::Channel>> {
    url.as_ref()
        .map(|url| {
            Ok(tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| anyhow::anyhow!("{what} {url}: {e}"))?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy())
        })
        .transpose()
}
