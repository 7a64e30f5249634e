//! `HistoryService`: replay over gRPC server streaming, for callers with the `analyst` role.

use std::pin::Pin;

use async_nats::jetstream;
use carewoven_access::AuditLog;
use carewoven_access::Authenticator;
use carewoven_access::audit::AuditRecord;
use carewoven_access::grpc::{permission_denied, unauthenticated};
use carewoven_domain::AggregateKind;
use carewoven_governance::{Denial, Role};
use carewoven_proto::v1::{self, history_service_server::HistoryService};
use carewoven_service::TrustConfig;
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::replay::Replay;
use crate::selection::{Selection, SelectionError};

/// Who may replay: bearer tokens signed by these keys, with the `analyst` role. (The
/// analyst's NATS settings are its tool's, shared by every subcommand: only the trust
/// settings come from the service shell.)
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// The token issuers' public keys (as for the command service). Required: every replay
    /// must carry a bearer token with the `analyst` role.
    #[command(flatten)]
    pub trust: TrustConfig,
    /// Longest a bearer token may live, in seconds (`exp - iat`, and `exp - now`).
    #[arg(long, env = "CAREWOVEN_MAX_TOKEN_LIFETIME_SECS", default_value_t = carewoven_access::token::DEFAULT_MAX_LIFETIME.as_secs())]
    pub max_token_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            trust: TrustConfig::default(),
            max_token_lifetime_secs: carewoven_access::token::DEFAULT_MAX_LIFETIME.as_secs(),
        }
    }
}

impl AuthConfig {
    /// Trust the fixed test issuer (`carewoven_access::token::testing`): tests only
    /// (`test-util`).
    #[cfg(feature = "test-util")]
    pub fn for_tests() -> Self {
        AuthConfig {
            trust: TrustConfig::for_tests(),
            ..AuthConfig::default()
        }
    }

    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let access = carewoven_access::AccessConfig {
            max_token_lifetime_secs: self.max_token_lifetime_secs,
            ..Default::default()
        };
        Ok(Authenticator::new(self.trust.verifier(&access)?))
    }
}

pub struct History {
    js: jetstream::Context,
    stream: String,
    auth: Authenticator,
    audit: AuditLog,
    stop: CancellationToken,
}

impl History {
    pub fn new(
        js: jetstream::Context,
        stream: String,
        auth: Authenticator,
        audit: AuditLog,
        stop: CancellationToken,
    ) -> Self {
        History {
            js,
            stream,
            auth,
            audit,
            stop,
        }
    }

    /// Replay is secondary use of everyone's history: only for the `analyst` role. Every
    /// replay and every refusal is audited (purpose: planning).
    async fn authorise<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let action = v1::AuditAction::Replay;
        let identity = match self.auth.identify(request.metadata()) {
            Ok(identity) => identity,
            Err(e) => {
                let record = AuditRecord::refused(None, None, action, e.reason())
                    .caller(request.remote_addr().map(|a| a.ip()));
                self.audit.record_refusal(&record).await;
                return Err(unauthenticated(&e));
            }
        };
        if identity.has(Role::Analyst) {
            let mut record = AuditRecord::permitted(&identity, None, action).detail("Replay");
            record.purpose = v1::Purpose::Planning;
            self.audit.record(&record).await?;
            Ok(())
        } else {
            self.audit
                .record_refusal(&AuditRecord::refused(
                    Some(&identity),
                    None,
                    action,
                    "ANALYST_ROLE_REQUIRED",
                ))
                .await;
            Err(permission_denied(&Denial::new(
                "ANALYST_ROLE_REQUIRED",
                format!(
                    "replaying history needs the analyst role; {}'s token does not grant it",
                    identity.organisation
                ),
            )))
        }
    }
}

fn invalid(field: &str, reason: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

fn instant(
    field: &str,
    t: &Option<prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, Status> {
    match t {
        None => Ok(None),
        Some(t) => DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX))
            .map(Some)
            .ok_or_else(|| invalid(field, "is not a valid time")),
    }
}

/// The request as a checked selection, refusing bad input with the field named.
pub fn selection(r: &v1::ReplayRequest) -> Result<Selection, Status> {
    let kind = if r.aggregate_kind.is_empty() {
        None
    } else {
        Some(
            AggregateKind::parse(&r.aggregate_kind)
                .ok_or_else(|| invalid("aggregate_kind", "is not a known aggregate kind"))?,
        )
    };
    let person = if r.person_id.is_empty() {
        None
    } else {
        Some(
            r.person_id
                .parse()
                .map_err(|_| invalid("person_id", "is not a valid UUID"))?,
        )
    };
    let selection = Selection {
        from_sequence: r.from_position,
        to_sequence: (r.to_position > 0).then_some(r.to_position),
        recorded_from: instant("recorded_from", &r.recorded_from)?,
        recorded_to: instant("recorded_to", &r.recorded_to)?,
        event_types: r.event_types.clone(),
        organisation: (!r.organisation.is_empty()).then(|| r.organisation.clone()),
        kind,
        person,
    };
    selection.validate().map_err(|e| match e {
        SelectionError::EmptyRange("log positions") => invalid("to_position", &e.to_string()),
        SelectionError::EmptyRange(_) => invalid("recorded_to", &e.to_string()),
        SelectionError::UnknownEventType(..) => invalid("event_types", &e.to_string()),
    })?;
    Ok(selection)
}

type ReplayStream = Pin<Box<dyn Stream<Item = Result<v1::ReplayedEvent, Status>> + Send>>;

#[tonic::async_trait]
impl HistoryService for History {
    type ReplayStream = ReplayStream;

    async fn replay(
        &self,
        request: Request<v1::ReplayRequest>,
    ) -> Result<Response<ReplayStream>, Status> {
        self.authorise(&request).await?;
        let selection = selection(request.get_ref())?;
        let excluded = crate::opted_out(&self.js, &self.stream)
            .await
            .map_err(|e| Status::unavailable(format!("reading consents: {e:#}")))?;
        let mut replay = Replay::start(&self.js, &self.stream, &selection)
            .await
            .map_err(|e| Status::unavailable(format!("starting the replay: {e:#}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    n = replay.next() => n,
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("shutting down; resume from the last log_position + 1"))).await;
                        return;
                    }
                };
                match next {
                    Ok(Some(event)) => {
                        if excluded.contains(&event.meta.person_id) {
                            continue;
                        }
                        let item = v1::ReplayedEvent {
                            log_position: event.sequence,
                            envelope: Some(carewoven_proto::convert::to_envelope(
                                &event.meta,
                                &event.event,
                            )),
                        };
                        if tx.send(Ok(item)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(Status::unavailable(format!("{e:#}")))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Serve `HistoryService` (with health and reflection) until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    js: jetstream::Context,
    stream: String,
    auth: &AuthConfig,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use carewoven_proto::v1::history_service_server::HistoryServiceServer;
    use tonic::server::NamedService;
    let auth = auth.authenticator()?;
    let nats = js.client();
    let audit = AuditLog::attach(nats.clone(), 1, std::time::Duration::from_secs(10)).await?;
    let tally = audit.start_tally_flusher();
    // Calls without a valid token are refused (and counted) before anything is decoded.
    let gate = carewoven_access::Gatekeeper::new(
        auth.clone(),
        audit.clone(),
        v1::AuditAction::Replay,
        HistoryServiceServer::<History>::NAME,
    );
    let history = tonic::service::interceptor::InterceptedService::new(
        HistoryServiceServer::new(History::new(js, stream, auth, audit, stop.clone()))
            .max_decoding_message_size(carewoven_proto::MAX_REQUEST_BYTES),
        gate,
    );
    // Replay reads the log itself: ready as soon as it listens, serving while NATS is
    // reachable.
    carewoven_service::serve_with(
        listener,
        tonic::service::Routes::new(history),
        &[HistoryServiceServer::<History>::NAME],
        async {},
        carewoven_service::Vitals::new().nats(&nats),
        stop,
        None,
    )
    .await?;
    tally.finish().await;
    Ok(())
}
