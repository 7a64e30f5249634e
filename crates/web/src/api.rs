//! The page and its JSON API under `/api/`.
//!
//! Every read goes through the views' own `QueryService` in this process with the caller's
//! bearer token (the `Authorization` header, never a URL), so the refusals are the gRPC
//! API's: 401 without a valid token, 403 for what the caller may not do, 400 naming the
//! field, and a person the caller may not read answered exactly as one that does not exist
//! (404, the same bytes). URLs carry only codes (site, service, organisation), enum names and
//! ids (UUIDs); names, NHS numbers and free text travel in answers and request bodies only,
//! and nothing here logs a request.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, command_service_client::CommandServiceClient,
    query_service_server::QueryService,
};
use futures::StreamExt;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::Upstreams;
use crate::assets;
use crate::json::{Named, to_json};

/// Request header: wait until the views have applied the log this far (a command reply's
/// `log_position`), as `min_log_position` does on gRPC.
pub const MIN_LOG_POSITION: &str = "carewoven-min-log-position";
/// The denial reason that must look like "no such person".
const NO_RELATIONSHIP: &str = "NO_LEGITIMATE_RELATIONSHIP";
/// Newline-delimited JSON: the board stream, one `BoardUpdate` a line.
const NDJSON: &str = "application/x-ndjson";
const JSON: &str = "application/json";
/// Scripts, styles and connections from this origin only; nothing inline, no frames, no
/// plugins, no forms posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Api<Q> {
    queries: Arc<Q>,
    audit: Option<AuditServiceClient<Channel>>,
    commands: Option<CommandServiceClient<Channel>>,
}

/// The page (at `/` and the screens' paths), its assets, and the JSON API, answering from
/// `queries` and the `upstreams`.
pub fn router<Q: QueryService>(queries: Arc<Q>, upstreams: Upstreams) -> Router {
    let api = Arc::new(Api {
        queries,
        audit: upstreams.audit.map(AuditServiceClient::new),
        commands: upstreams.commands.map(CommandServiceClient::new),
    });
    let page = || get(|| async { asset(assets::INDEX_HTML, "text/html; charset=utf-8") });
    Router::new()
        .route("/", page())
        .route("/record/{id}", page())
        .route("/inbox", page())
        .route("/caseload", page())
        .route(
            "/app.js",
            get(|| async { asset(assets::APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(assets::APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/board/watch", get(watch_board::<Q>))
        .route("/api/record/{person}", get(record::<Q>))
        .route("/api/record/{person}/access", get(access::<Q>))
        .route("/api/inbox", get(inbox::<Q>))
        .route("/api/caseload", get(caseload::<Q>))
        .route(
            "/api/referrals/{person}/{referral}/{decision}",
            post(decide::<Q>),
        )
        .fallback(|| async { Failure::new(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .layer(middleware::from_fn(security_headers))
        .with_state(api)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Headers on every answer: the policy, no referrer, no sniffing, no framing, and answers
/// of the API never stored.
async fn security_headers(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if api || !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An error answer: `{code, message, field}` with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming the offending field or parameter.
    fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Failure {
            field: Some(field.to_owned()),
            ..Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                format!("{field}: {reason}"),
            )
        }
    }

    /// The one answer for a person who does not exist and one the caller may not read.
    fn no_such_person() -> Self {
        Failure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such person, or not one whose record you may read",
        )
    }

    /// The answer's `error` object.
    pub fn body(&self) -> Value {
        json!({ "code": self.code, "message": self.message, "field": self.field })
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The field or parameter the failure names, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = answer(self.status, &json!({ "error": self.body() }));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"carewoven\""),
            );
        }
        response
    }
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

fn ok<M: Named>(message: &M) -> Result<Response, Failure> {
    let body = to_json(message).ok_or_else(|| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the answer could not be rendered",
        )
    })?;
    Ok(answer(StatusCode::OK, &body))
}

/// A gRPC answer as HTTP. `rename` maps a gRPC field name to the parameter it came from.
fn from_status(status: &tonic::Status, rename: &dyn Fn(&str) -> String) -> Failure {
    let details = status.get_error_details();
    let reason = details
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    match status.code() {
        Code::Unauthenticated => Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            status.message(),
        ),
        Code::PermissionDenied if reason == NO_RELATIONSHIP => Failure::no_such_person(),
        Code::NotFound => Failure::no_such_person(),
        Code::PermissionDenied => {
            Failure::new(StatusCode::FORBIDDEN, "permission_denied", status.message())
        }
        Code::InvalidArgument => {
            let field = details
                .bad_request()
                .and_then(|b| b.field_violations.first())
                .map(|v| rename(&v.field))
                .unwrap_or_default();
            Failure {
                field: Some(field).filter(|f| !f.is_empty()),
                ..Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    status.message(),
                )
            }
        }
        Code::FailedPrecondition => Failure::new(
            StatusCode::CONFLICT,
            "failed_precondition",
            status.message(),
        ),
        Code::Aborted | Code::AlreadyExists => {
            Failure::new(StatusCode::CONFLICT, "aborted", status.message())
        }
        Code::DeadlineExceeded => Failure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            status.message(),
        ),
        Code::Unavailable => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            status.message(),
        ),
        _ => Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            status.message(),
        ),
    }
}

fn same(field: &str) -> String {
    field.to_owned()
}

/// A gRPC request carrying the caller's bearer token (the services decide with it).
fn request<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn min_position(headers: &HeaderMap) -> Result<u64, Failure> {
    match headers.get(MIN_LOG_POSITION) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Failure::invalid(MIN_LOG_POSITION, "must be a log position (a whole number)")
            }),
    }
}

/// The query string's parameters, each at most once, only those `allowed`.
fn parameters(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, Failure> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        if name.is_empty() {
            return Err(Failure::invalid(
                "query",
                "has a parameter without a name (nothing before `=`)",
            ));
        }
        if !allowed.contains(&name.as_str()) {
            return Err(Failure::invalid(
                &name,
                format!("is not a parameter here (allowed: {})", allowed.join(", ")),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Failure::invalid(&name, "may be given only once"));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn person_id(raw: &str) -> Result<String, Failure> {
    raw.parse::<uuid::Uuid>()
        .map(|u| u.to_string())
        .map_err(|_| Failure::invalid("person_id", "is not a valid id (a UUID)"))
}

/// `0`..`3` (or the enum's name) as a pathway; empty is any.
fn pathway(raw: &str) -> Result<v1::Pathway, Failure> {
    let by_digit = match raw {
        "" => Some(v1::Pathway::Unspecified),
        "0" => Some(v1::Pathway::Pathway0),
        "1" => Some(v1::Pathway::Pathway1),
        "2" => Some(v1::Pathway::Pathway2),
        "3" => Some(v1::Pathway::Pathway3),
        _ => None,
    };
    by_digit
        .or_else(|| v1::Pathway::from_str_name(raw))
        .ok_or_else(|| Failure::invalid("pathway", "must be 0, 1, 2 or 3"))
}

/// A delay reason by its enum name (`DELAY_REASON_PATHWAY_1_NEW_CARE`); empty is any.
fn delay_reason(raw: &str) -> Result<v1::DelayReason, Failure> {
    if raw.is_empty() {
        return Ok(v1::DelayReason::Unspecified);
    }
    v1::DelayReason::from_str_name(raw).ok_or_else(|| {
        Failure::invalid(
            "delay_reason",
            "must be a delay reason's name (DELAY_REASON_...)",
        )
    })
}

/// `/api/board/watch`'s query (`site`, `pathway`, `delay_reason`) and headers as the
/// `WatchDischargeBoard` request.
pub fn board_request(
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Result<v1::WatchDischargeBoardRequest, Failure> {
    let params = parameters(raw, &["site", "pathway", "delay_reason"])?;
    Ok(v1::WatchDischargeBoardRequest {
        site: param(&params, "site").to_owned(),
        pathway: pathway(param(&params, "pathway"))? as i32,
        delay_reason: delay_reason(param(&params, "delay_reason"))? as i32,
        min_log_position: min_position(headers)?,
    })
}

/// `/api/record/<person>` as the `GetCareRecord` request.
pub fn record_request(
    person: &str,
    headers: &HeaderMap,
) -> Result<v1::GetCareRecordRequest, Failure> {
    Ok(v1::GetCareRecordRequest {
        person_id: person_id(person)?,
        min_log_position: min_position(headers)?,
    })
}

/// `/api/inbox`'s query (`service`, `status`, `page_token`) and headers as the
/// `ListReferralInbox` request.
pub fn inbox_request(
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Result<v1::ListReferralInboxRequest, Failure> {
    let params = parameters(raw, &["service", "status", "page_token"])?;
    Ok(v1::ListReferralInboxRequest {
        service: param(&params, "service").to_owned(),
        status: param(&params, "status").to_owned(),
        page_size: 500,
        page_token: param(&params, "page_token").to_owned(),
        min_log_position: min_position(headers)?,
    })
}

/// `/api/caseload`'s query (`organisation`, or `coordinator` with `practitioner`) and
/// headers as the `GetCaseload` request.
pub fn caseload_request(
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Result<v1::GetCaseloadRequest, Failure> {
    use v1::get_caseload_request::Owner;
    let params = parameters(raw, &["organisation", "coordinator", "practitioner"])?;
    let owner = match (
        param(&params, "organisation"),
        param(&params, "coordinator"),
    ) {
        (org, "") if !org.is_empty() => Owner::Organisation(org.to_owned()),
        ("", org) if !org.is_empty() => Owner::Coordinator(v1::MemberRef {
            organisation: org.to_owned(),
            practitioner: param(&params, "practitioner").to_owned(),
        }),
        _ => {
            return Err(Failure::invalid(
                "organisation",
                "give either organisation or coordinator (an organisation code)",
            ));
        }
    };
    Ok(v1::GetCaseloadRequest {
        owner: Some(owner),
        min_log_position: min_position(headers)?,
    })
}

/// A decision's path (`<person>/<referral>/accept|reject`) and body (`{"reason": "..."}`)
/// as the `ProgressReferral` request, with a fresh command id.
pub fn decision_request(
    person: &str,
    referral: &str,
    decision: &str,
    body: &[u8],
) -> Result<v1::ProgressReferralRequest, Failure> {
    let action = match decision {
        "accept" => v1::ReferralAction::Accept,
        "reject" => v1::ReferralAction::Reject,
        _ => return Err(Failure::invalid("decision", "must be accept or reject")),
    };
    let person = person_id(person)?;
    let referral = referral
        .parse::<uuid::Uuid>()
        .map(|u| u.to_string())
        .map_err(|_| Failure::invalid("referral_id", "is not a valid id (a UUID)"))?;
    let reason = if body.is_empty() {
        String::new()
    } else {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| Failure::invalid("body", "must be JSON: {\"reason\": \"...\"}"))?;
        match value.get("reason") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Failure::invalid("reason", "must be text")),
        }
    };
    Ok(v1::ProgressReferralRequest {
        context: Some(v1::CommandContext {
            command_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        person_id: person,
        referral_id: referral,
        action: action as i32,
        reason,
    })
}

async fn watch_board<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let message = board_request(raw.as_deref(), &headers)?;
    let stream = api
        .queries
        .watch_discharge_board(request(&headers, message))
        .await
        .map_err(|s| from_status(&s, &same))?
        .into_inner();
    // One JSON line per update; a failure after the start is the last line, then the end.
    let lines = stream.map(|item| {
        let value = match item {
            Ok(update) => to_json(&update).unwrap_or(Value::Null),
            Err(status) => json!({ "error": from_status(&status, &same).body() }),
        };
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut response = Body::from_stream(lines).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(response)
}

async fn record<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path(person): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let message = record_request(&person, &headers)?;
    let record = api
        .queries
        .get_care_record(request(&headers, message))
        .await
        .map_err(|s| from_status(&s, &same))?;
    ok(record.get_ref())
}

async fn access<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path(person): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let person = person_id(&person)?;
    let Some(mut client) = api.audit.clone() else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "who accessed a record is not shown here: no gateway is configured (--web-audit-server)",
        ));
    };
    let message = v1::ListRecordAccessRequest {
        person_id: person,
        after: 0,
        limit: 1000,
        after_delivery: 0,
    };
    let page = client
        .list_record_access(request(&headers, message))
        .await
        .map_err(|s| from_status(&s, &same))?;
    ok(page.get_ref())
}

async fn inbox<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let message = inbox_request(raw.as_deref(), &headers)?;
    let page = api
        .queries
        .list_referral_inbox(request(&headers, message))
        .await
        .map_err(|s| from_status(&s, &same))?;
    ok(page.get_ref())
}

async fn caseload<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let message = caseload_request(raw.as_deref(), &headers)?;
    let rename = |f: &str| match f {
        "coordinator.organisation" => "coordinator".to_owned(),
        "coordinator.practitioner" => "practitioner".to_owned(),
        other => other.to_owned(),
    };
    let caseload = api
        .queries
        .get_caseload(request(&headers, message))
        .await
        .map_err(|s| from_status(&s, &rename))?;
    ok(caseload.get_ref())
}

/// Accept or reject a referral: `{"reason": "..."}` (required to reject), sent to the
/// command service as `ProgressReferral` with the caller's token and a fresh command id.
async fn decide<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path((person, referral, decision)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let message = decision_request(&person, &referral, &decision, &body)?;
    let Some(mut client) = api.commands.clone() else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "decisions cannot be sent from here: no command service is configured (--web-commands-server)",
        ));
    };
    let reply = client
        .progress_referral(request(&headers, message))
        .await
        .map_err(|s| match from_status(&s, &same) {
            f if f.status == StatusCode::NOT_FOUND => Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such referral, or not one you may decide",
            ),
            f => f,
        })?;
    ok(reply.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_and_refuse_what_is_not_allowed() {
        let p = parameters(Some("site=HOSP-A&pathway=1"), &["site", "pathway"]).expect("ok");
        assert_eq!(param(&p, "site"), "HOSP-A");
        assert_eq!(param(&p, "pathway"), "1");
        let p = parameters(Some("service=A%2DB+C"), &["service"]).expect("ok");
        assert_eq!(param(&p, "service"), "A-B C");
        let bad = parameters(Some("nhs_number=9990000018"), &["site"]).expect_err("refused");
        assert_eq!(bad.field.as_deref(), Some("nhs_number"));
        let twice = parameters(Some("site=a&site=b"), &["site"]).expect_err("refused");
        assert_eq!(twice.status, StatusCode::BAD_REQUEST);
        assert_eq!(pathway("2").expect("ok"), v1::Pathway::Pathway2);
        assert_eq!(
            pathway("7").expect_err("refused").field.as_deref(),
            Some("pathway")
        );
    }

    #[test]
    fn no_relationship_and_nobody_are_the_same_answer() {
        let denied = tonic::Status::with_error_details(
            Code::PermissionDenied,
            "HOSP-B has no legitimate relationship with person x",
            tonic_types::ErrorDetails::with_error_info(NO_RELATIONSHIP, "carewoven", []),
        );
        let missing = tonic::Status::not_found("person x not found");
        assert_eq!(from_status(&denied, &same), from_status(&missing, &same));
        assert_eq!(
            from_status(&tonic::Status::unauthenticated("no token"), &same).status,
            StatusCode::UNAUTHORIZED
        );
    }
}
