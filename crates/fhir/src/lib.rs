//! A read-only FHIR R4 (UK Core) REST API over the coordinated views.
//!
//! [`map`] is the mapping, written once, from a care record as the views answer it to FHIR
//! resources ([`codes`]: every system URL and code mapping it uses, including the one
//! function that codes discharge destinations); [`api`] is the HTTP surface (axum), which
//! reads through the views' own `QueryService` with the caller's token, so authentication,
//! authorisation and the read audit are the gRPC API's, not a copy. The views service serves
//! it beside its gRPC port (`carewoven-views serve --fhir-listen`). [`subscription`] shows each
//! partner's feed as a Subscription (HL7 Subscriptions R5 Backport, R4 shape): its `$status`
//! and `$events` read the gateway's `FeedService` with the caller's token, and the gateway's
//! rest-hook delivery builds its notifications with the same functions.

pub mod api;
pub mod capability;
pub mod codes;
pub mod map;
pub mod subscription;

use std::future::Future;
use std::sync::Arc;

use carewoven_proto::v1::query_service_server::QueryService;
use tokio::net::TcpListener;

pub use api::{FHIR_JSON, MIN_LOG_POSITION, router};

/// Serve the FHIR API on `listener` from `queries` (and `AuditEvent` from the gateway's
/// access list on `audit`, if given) until `shutdown` completes; requests in flight finish
/// first.
pub async fn serve<Q: QueryService>(
    listener: TcpListener,
    queries: Arc<Q>,
    audit: Option<tonic::transport::Channel>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "FHIR API listening");
    axum::serve(listener, router(queries, audit))
        .with_graceful_shutdown(shutdown)
        .await
}
