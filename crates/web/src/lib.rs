//! The web screens: the live discharge-to-assess board, a person's shared care record, a
//! service's referral inbox and a coordinator's caseload, in the browser, served by the views
//! service itself (`carewoven-views serve --web-listen`).
//!
//! [`assets`] is the front end: one HTML page, one stylesheet and one script, compiled in
//! and served under a strict Content-Security-Policy. [`api`] is the small JSON API the page
//! reads: every read goes through the views' own `QueryService` in this process with the
//! caller's bearer token, as the FHIR API does, so authentication, authorisation (legitimate
//! relationship, objections, agreements, data classes) and the read audit are the gRPC
//! API's; this crate adds no access rule of its own. Who accessed a record comes from the
//! gateway's `AuditService`, referral decisions go to the command service, both over gRPC
//! with the caller's token. [`json`] renders proto messages as JSON, once.

pub mod api;
pub mod assets;
pub mod json;

use std::future::Future;
use std::sync::Arc;

use carewoven_proto::v1::query_service_server::QueryService;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use api::{MIN_LOG_POSITION, router};

/// The other services the screens call, with the caller's token.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    /// The gateway, whose `AuditService` answers who accessed a record (not shown without).
    pub audit: Option<Channel>,
    /// The command service, to accept or reject referrals (read-only screens without).
    pub commands: Option<Channel>,
}

/// Serve the screens on `listener` from `queries` until `shutdown` completes; requests in
/// flight (open board streams included) finish first.
pub async fn serve<Q: QueryService>(
    listener: TcpListener,
    queries: Arc<Q>,
    upstreams: Upstreams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "web screens listening");
    axum::serve(listener, router(queries, upstreams))
        .with_graceful_shutdown(shutdown)
        .await
}
