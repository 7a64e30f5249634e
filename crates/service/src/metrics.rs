//! Prometheus metrics for operators: the `/metrics` endpoint ([`MetricsConfig`],
//! [`serve_metrics`]) and the RPC metrics of every gRPC call ([`RpcMetricsLayer`], which
//! [`crate::serve`] puts around every service's APIs).
//!
//! The libraries record through the `metrics` facade (a no-op until a recorder is
//! installed); a service given `--metrics-listen` installs the Prometheus recorder once per
//! process and serves its text format on `http://<addr>/metrics`. Every metric is listed in
//! ARCHITECTURE.md ("Observability") and the README.
//!
//! Labels are never people-level: RPC and service names, gRPC codes, follower names and
//! organisation codes only, never a person id, NHS number, name or free text. The RPC labels
//! come from a fixed list (the methods Carewoven's, health's and reflection's descriptors
//! declare): any other path is counted as `unknown`, so a caller cannot grow the label set.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body::{Body, Frame};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where to serve `/metrics`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsConfig {
    /// Address to serve Prometheus metrics on (`http://<addr>/metrics`), for operators only:
    /// bind it to a private interface. Unset: no metrics endpoint.
    #[arg(long, env = "CAREWOVEN_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Latency buckets (seconds) of every histogram: from a fraction of a millisecond (a read
/// from memory) to the 60 s a call may wait at most.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The process's Prometheus recorder, installed on first use.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "carewoven_grpc_requests_total",
        "gRPC calls finished, by service, rpc and gRPC code"
    );
    describe_histogram!(
        "carewoven_grpc_request_duration_seconds",
        Unit::Seconds,
        "time until a gRPC call's response began (the whole call for unary RPCs), by service and rpc"
    );
    describe_gauge!(
        "carewoven_grpc_open_streams",
        "gRPC responses still being sent (open subscriptions and watches), by service and rpc"
    );
    describe_gauge!(
        "carewoven_follower_lag_events",
        "events in the log after the last one a follower handed out, by follower"
    );
    describe_gauge!(
        "carewoven_follower_lag_seconds",
        Unit::Seconds,
        "age of the newest event a follower handed out while more were waiting (0 when caught up), by follower"
    );
    describe_histogram!(
        "carewoven_audit_write_duration_seconds",
        Unit::Seconds,
        "time from submitting an audit record to its being stored in CW_AUDIT"
    );
    describe_counter!(
        "carewoven_audit_write_failures_total",
        "audit records that could not be stored (the read they guard was refused)"
    );
    describe_gauge!(
        "carewoven_feed_subscriptions_open",
        "open FeedService.Subscribe streams, by partner organisation code"
    );
    describe_gauge!(
        "carewoven_feed_backlog_batches",
        "feed messages stored for a partner that its subscription has not yet been sent, by partner organisation code"
    );
    describe_gauge!(
        "carewoven_feed_consumer_backlog",
        "messages on a partner's durable consumer on CW_FEED not yet delivered or acknowledged, by partner organisation code"
    );
    describe_gauge!(
        "carewoven_health_serving",
        "1 while health reports the whole server SERVING, else 0"
    );
}

/// Serve `/metrics` on `config.metrics_listen` (if set) until `stop`; returns at once.
/// Fails if the address cannot be bound, so a mistyped address stops the service at start.
pub async fn serve_metrics(config: &MetricsConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = config.metrics_listen else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    serve_metrics_on(listener, stop)
}

/// [`serve_metrics`] on a bound listener.
pub fn serve_metrics_on(listener: TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
    let handle = recorder()?;
    let local = listener.local_addr()?;
    let upkeep = handle.clone();
    let until = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                _ = until.cancelled() => return,
            }
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    tracing::info!(%local, "metrics on http://{local}/metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

/// The gRPC methods whose names may appear in labels: `/package.Service/Method`.
fn known_methods() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known = HashSet::new();
        for set in [
            carewoven_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = match package.as_str() {
                        "" => service.name().to_owned(),
                        p => format!("{p}.{}", service.name()),
                    };
                    for method in service.method {
                        known.insert(format!("/{service_name}/{}", method.name()));
                    }
                }
            }
        }
        known
    })
}

/// The (service, rpc) labels of a request path.
fn labels(path: &str) -> (String, String) {
    if known_methods().contains(path)
        && let Some((service, rpc)) = path.trim_start_matches('/').split_once('/')
    {
        return (service.to_owned(), rpc.to_owned());
    }
    ("unknown".to_owned(), "unknown".to_owned())
}

/// The `grpc-status` code's name, as the metrics say it.
fn code_name(code: &[u8]) -> &'static str {
    let code = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.trim().parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    match code {
        Some(tonic::Code::Ok) => "OK",
        Some(tonic::Code::Cancelled) => "CANCELLED",
        Some(tonic::Code::Unknown) => "UNKNOWN",
        Some(tonic::Code::InvalidArgument) => "INVALID_ARGUMENT",
        Some(tonic::Code::DeadlineExceeded) => "DEADLINE_EXCEEDED",
        Some(tonic::Code::NotFound) => "NOT_FOUND",
        Some(tonic::Code::AlreadyExists) => "ALREADY_EXISTS",
        Some(tonic::Code::PermissionDenied) => "PERMISSION_DENIED",
        Some(tonic::Code::ResourceExhausted) => "RESOURCE_EXHAUSTED",
        Some(tonic::Code::FailedPrecondition) => "FAILED_PRECONDITION",
        Some(tonic::Code::Aborted) => "ABORTED",
        Some(tonic::Code::OutOfRange) => "OUT_OF_RANGE",
        Some(tonic::Code::Unimplemented) => "UNIMPLEMENTED",
        Some(tonic::Code::Internal) => "INTERNAL",
        Some(tonic::Code::Unavailable) => "UNAVAILABLE",
        Some(tonic::Code::DataLoss) => "DATA_LOSS",
        Some(tonic::Code::Unauthenticated) => "UNAUTHENTICATED",
        None => "UNKNOWN",
    }
}

/// The tower layer recording every call's metrics: `carewoven_grpc_requests_total` (by
/// code, when the call ends), `carewoven_grpc_request_duration_seconds` (until the response
/// began) and `carewoven_grpc_open_streams` (while the response is being sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, rpc) = labels(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            metrics::histogram!(
                "carewoven_grpc_request_duration_seconds",
                "service" => service.clone(),
                "rpc" => rpc.clone()
            )
            .record(started.elapsed().as_secs_f64());
            // A refusal before any message (trailers-only) carries its code in the headers.
            let code = response
                .headers()
                .get("grpc-status")
                .map(|c| code_name(c.as_bytes()));
            let call = Arc::new(Call { service, rpc });
            let (parts, body) = response.into_parts();
            let metered = match code {
                Some(code) => {
                    call.finished(code);
                    MeteredBody {
                        inner: Box::pin(body),
                        call: None,
                    }
                }
                None => {
                    call.gauge().increment(1.0);
                    MeteredBody {
                        inner: Box::pin(body),
                        call: Some(call),
                    }
                }
            };
            Ok(http::Response::from_parts(parts, metered))
        })
    }
}

#[derive(Debug)]
struct Call {
    service: String,
    rpc: String,
}

impl Call {
    fn finished(&self, code: &'static str) {
        metrics::counter!(
            "carewoven_grpc_requests_total",
            "service" => self.service.clone(),
            "rpc" => self.rpc.clone(),
            "code" => code
        )
        .increment(1);
    }

    fn gauge(&self) -> metrics::Gauge {
        metrics::gauge!(
            "carewoven_grpc_open_streams",
            "service" => self.service.clone(),
            "rpc" => self.rpc.clone()
        )
    }
}

/// A response body that records its call's code when its trailers pass (or `CANCELLED` if
/// it is dropped before them: the client went away).
pub struct MeteredBody<R> {
    inner: Pin<Box<R>>,
    /// Set until the call's outcome is recorded.
    call: Option<Arc<Call>>,
}

impl<R> MeteredBody<R> {
    fn end(&mut self, code: &'static str) {
        if let Some(call) = self.call.take() {
            call.gauge().decrement(1.0);
            call.finished(code);
        }
    }
}

impl<R> Drop for MeteredBody<R> {
    fn drop(&mut self) {
        self.end("CANCELLED");
    }
}

impl<R: Body> Body for MeteredBody<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or("UNKNOWN", |c| code_name(c.as_bytes()));
                    this.end(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.end("UNKNOWN"),
            Poll::Ready(None) => this.end("OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_methods_are_labels() {
        assert_eq!(
            labels("/carewoven.v1.CommandService/RegisterPerson"),
            (
                "carewoven.v1.CommandService".into(),
                "RegisterPerson".into()
            )
        );
        assert_eq!(
            labels("/grpc.health.v1.Health/Watch"),
            ("grpc.health.v1.Health".into(), "Watch".into())
        );
        for path in [
            "/carewoven.v1.CommandService/Nope",
            "/x/y",
            "/9990000018",
            "",
        ] {
            assert_eq!(labels(path), ("unknown".into(), "unknown".into()), "{path}");
        }
    }

    #[test]
    fn codes_have_their_names() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"7"), "PERMISSION_DENIED");
        assert_eq!(code_name(b"x"), "UNKNOWN");
    }
}
