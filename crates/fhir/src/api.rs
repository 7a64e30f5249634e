//! The HTTP surface: routes, parameters, and errors as `OperationOutcome`.
//!
//! Every read goes through the views' own `QueryService` in this process (`GetCareRecord`,
//! `FindPerson`), with the caller's bearer token: the same authentication, authorisation
//! (relationship, objections, agreements, data classes) and read audit as a gRPC call, and
//! nothing of its own. What a caller may not read is answered as if it did not exist: a read
//! is 404, a search an empty `searchset` Bundle, the same bytes whether the person exists
//! or not.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, feed_service_client::FeedServiceClient,
    query_service_server::QueryService,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::capability;
use crate::map;
use crate::subscription::{self, Kind};

/// `Content-Type` of every answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Request header: wait until the views have applied the log this far (a command reply's
/// `log_position`), as `min_log_position` does on gRPC.
pub const MIN_LOG_POSITION: &str = "carewoven-min-log-position";
/// The denial reason that must look like "no such person".
const NO_RELATIONSHIP: &str = "NO_LEGITIMATE_RELATIONSHIP";

struct Api<Q> {
    queries: Arc<Q>,
    /// The gateway's access list, for `AuditEvent` (not served without one).
    audit: Option<AuditServiceClient<Channel>>,
    /// The gateway's feeds, for `Subscription` (not served without one).
    feeds: Option<FeedServiceClient<Channel>>,
}

/// The FHIR routes under `/fhir`, answering from `queries`, and `AuditEvent` and
/// `Subscription` from the gateway's `AuditService` and `FeedService` at `gateway` if there
/// is one.
pub fn router<Q: QueryService>(queries: Arc<Q>, gateway: Option<Channel>) -> Router {
    let api = Arc::new(Api {
        queries,
        audit: gateway.clone().map(AuditServiceClient::new),
        feeds: gateway.map(FeedServiceClient::new),
    });
    Router::new()
        .route("/fhir/metadata", get(metadata::<Q>))
        .route("/fhir/{rtype}", get(search::<Q>))
        .route("/fhir/{rtype}/{id}", get(read::<Q>))
        .route("/fhir/{rtype}/{id}/{op}", get(operation::<Q>))
        .route("/fhir/{rtype}/{id}/_history/{vid}", get(vread::<Q>))
        .fallback(|| async {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not-supported",
                "no such endpoint: see /fhir/metadata for what this server supports",
                None,
            )
            .into_response()
        })
        .with_state(api)
}

/// An error answer: an `OperationOutcome` with its HTTP status.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    expression: Option<String>,
}

impl Failure {
    fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        expression: Option<&str>,
    ) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
            expression: expression.map(str::to_owned),
        }
    }

    /// 400 naming the offending parameter.
    fn parameter(name: &str, reason: impl std::fmt::Display) -> Self {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{name}: {reason}"),
            Some(name),
        )
    }

    fn not_found(what: &str) -> Self {
        Failure::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} is not known to this server, or not readable by this caller"),
            None,
        )
    }

    /// The answer's body.
    pub fn outcome(&self) -> Value {
        let mut issue = json!({
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
        });
        if let Some(e) = &self.expression {
            issue["expression"] = json!([e]);
        }
        json!({ "resourceType": "OperationOutcome", "issue": [issue] })
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The parameter or field the failure names, if any (the `OperationOutcome`'s
    /// `expression`).
    pub fn expression(&self) -> Option<&str> {
        self.expression.as_deref()
    }

    /// Whether this is the "no relationship" refusal, which must look like absence.
    fn is_absence(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = fhir(self.status, &self.outcome());
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"carewoven\""),
            );
        }
        response
    }
}

fn fhir(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// The views' answer as HTTP. `field` renames a gRPC field to the FHIR parameter it came
/// from; `what` names the resource asked for in a 404.
fn from_status(status: &tonic::Status, what: &str, field: &dyn Fn(&str) -> String) -> Failure {
    let reason = status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    match status.code() {
        Code::Unauthenticated => {
            Failure::new(StatusCode::UNAUTHORIZED, "login", status.message(), None)
        }
        Code::PermissionDenied if reason == NO_RELATIONSHIP => Failure::not_found(what),
        Code::PermissionDenied => Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{reason}: {}", status.message()),
            None,
        ),
        Code::NotFound => Failure::not_found(what),
        Code::InvalidArgument => {
            let details = status.get_error_details();
            let grpc_field = details
                .bad_request()
                .and_then(|b| b.field_violations.first())
                .map(|v| v.field.clone())
                .unwrap_or_default();
            let name = field(&grpc_field);
            Failure::parameter(&name, status.message())
        }
        Code::DeadlineExceeded => Failure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            status.message(),
            None,
        ),
        Code::Unavailable | Code::Aborted => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            status.message(),
            None,
        ),
        _ => Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            status.message(),
            None,
        ),
    }
}

/// A gRPC request carrying the caller's bearer token (the views decide with it).
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

/// The `carewoven-min-log-position` header (0 without one).
pub fn min_position(headers: &HeaderMap) -> Result<u64, Failure> {
    match headers.get(MIN_LOG_POSITION) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Failure::parameter(MIN_LOG_POSITION, "must be a log position (a whole number)")
            }),
    }
}

/// The base URL as the caller addressed it (for `fullUrl` and links).
pub fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

fn uuid(name: &str, raw: &str) -> Result<String, Failure> {
    raw.parse::<uuid::Uuid>()
        .map(|u| u.to_string())
        .map_err(|_| Failure::parameter(name, "is not a valid id (a UUID)"))
}

impl<Q: QueryService> Api<Q> {
    /// The record as the caller may see it.
    async fn record(
        &self,
        headers: &HeaderMap,
        person: &str,
        what: &str,
        id_param: &str,
    ) -> Result<v1::CareRecord, Failure> {
        let min_log_position = min_position(headers)?;
        let message = v1::GetCareRecordRequest {
            person_id: person.to_owned(),
            min_log_position,
        };
        let rename = |f: &str| match f {
            "person_id" => id_param.to_owned(),
            other => other.to_owned(),
        };
        self.queries
            .get_care_record(request(headers, message))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| from_status(&s, what, &rename))
    }
}

impl<Q> Api<Q> {
    /// Who accessed the person's record (the first 1,000 entries), as the gateway's access
    /// list answers the caller: the gateway decides who may see it.
    async fn accesses(&self, headers: &HeaderMap, person: &str) -> Result<Vec<Value>, Failure> {
        let Some(mut client) = self.audit.clone() else {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not-supported",
                "AuditEvent is not served here: this server has no access list configured",
                None,
            ));
        };
        let message = v1::ListRecordAccessRequest {
            person_id: person.to_owned(),
            after: 0,
            limit: 1000,
            after_delivery: 0,
        };
        let rename = |f: &str| match f {
            "person_id" => "patient".to_owned(),
            other => other.to_owned(),
        };
        let page = client
            .list_record_access(request(headers, message))
            .await
            .map_err(|s| from_status(&s, "AuditEvent", &rename))?
            .into_inner();
        Ok(page
            .entries
            .iter()
            .filter_map(|e| e.event.as_ref())
            .filter_map(|e| map::audit_event(person, e))
            .collect())
    }
}

/// How long `$events` may take to read its range from the gateway.
const EVENTS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl<Q> Api<Q> {
    /// The caller's own feed status, from the gateway with the caller's token (the gateway
    /// authenticates, and answers only about the caller's own feed).
    async fn feed_status(&self, headers: &HeaderMap) -> Result<v1::FeedStatus, Failure> {
        let Some(mut client) = self.feeds.clone() else {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not-supported",
                "Subscription is not served here: this server has no gateway configured",
                None,
            ));
        };
        client
            .get_feed_status(request(headers, v1::GetFeedStatusRequest {}))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| from_status(&s, "Subscription", &str::to_owned))
    }

    /// The feed status if `id` is the caller's own subscription; anyone else's is 404, the
    /// same as one that does not exist.
    async fn own_subscription(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<v1::FeedStatus, Failure> {
        let status = self.feed_status(headers).await?;
        if status.organisation == id {
            Ok(status)
        } else {
            Err(Failure::not_found(&format!("Subscription/{id}")))
        }
    }

    /// The caller's feed items `since..=until` (both within the feed), read from the
    /// gateway's `Subscribe` with the caller's token.
    async fn feed_items(
        &self,
        headers: &HeaderMap,
        since: u64,
        until: u64,
    ) -> Result<Vec<v1::FeedItem>, Failure> {
        let mut client = self.feeds.clone().ok_or_else(|| {
            Failure::new(StatusCode::NOT_FOUND, "not-supported", "no gateway", None)
        })?;
        let read = async {
            let mut stream = client
                .subscribe(request(
                    headers,
                    v1::SubscribeRequest {
                        cursor: String::new(),
                        after_number: since - 1,
                    },
                ))
                .await?
                .into_inner();
            let mut items = Vec::new();
            while items.len() as u64 <= until - since {
                match stream.message().await? {
                    Some(item) => items.push(item),
                    None => return Err(tonic::Status::unavailable("the feed ended early")),
                }
            }
            Ok(items)
        };
        match tokio::time::timeout(EVENTS_TIMEOUT, read).await {
            Ok(result) => result
                .map_err(|s| from_status(&s, "Subscription", &|_| "eventsSinceNumber".to_owned())),
            Err(_) => Err(Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the feed did not deliver the range in time",
                None,
            )),
        }
    }
}

/// A whole number parameter of at least 1.
fn event_number(params: &[(String, String)], name: &str) -> Result<Option<u64>, Failure> {
    match params.iter().find(|(n, _)| n == name) {
        None => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| Failure::parameter(name, "must be an event number (1 or more)")),
    }
}

fn bundle(kind: &str, base: &str, self_link: &str, entries: Vec<Value>) -> Value {
    let mut b = json!({
        "resourceType": "Bundle",
        "type": kind,
        "link": [{ "relation": "self", "url": format!("{base}/{self_link}") }],
        "entry": entries,
    });
    if kind == "searchset" || kind == "history" {
        let total = b["entry"].as_array().map_or(0, Vec::len);
        b["total"] = json!(total);
    }
    if b["entry"].as_array().is_some_and(Vec::is_empty)
        && let Some(o) = b.as_object_mut()
    {
        o.remove("entry");
    }
    b
}

fn search_entry(base: &str, resource: Value, mode: &str) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap_or_default();
    let id = resource["id"].as_str().unwrap_or_default();
    json!({
        "fullUrl": format!("{base}/{rtype}/{id}"),
        "resource": resource,
        "search": { "mode": mode },
    })
}

/// Parameters of a query string, each name once; `allowed` are the only names accepted.
fn parameters(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, Failure> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let name = name.into_owned();
        if name.is_empty() {
            return Err(Failure::parameter(
                "query",
                "has a parameter without a name (nothing before `=`)",
            ));
        }
        if name == "_format" {
            match value.as_ref() {
                "json" | "application/json" | "application/fhir+json" => continue,
                _ => return Err(Failure::parameter("_format", "only JSON is served")),
            }
        }
        if !allowed.contains(&name.as_str()) {
            return Err(Failure::parameter(
                &name,
                format!(
                    "is not a supported search parameter here (supported: {})",
                    allowed.join(", ")
                ),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Failure::parameter(&name, "may be given only once"));
        }
        out.push((name, value.into_owned()));
    }
    Ok(out)
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, Failure> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Failure::parameter(name, "is required"))
}

fn known_type(rtype: &str) -> Result<(), Failure> {
    if map::TYPES.contains(&rtype) || rtype == "AuditEvent" {
        Ok(())
    } else {
        Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("resource type {rtype} is not served here: see /fhir/metadata"),
            None,
        ))
    }
}

async fn metadata<Q: QueryService>(State(api): State<Arc<Api<Q>>>, headers: HeaderMap) -> Response {
    fhir(
        StatusCode::OK,
        &capability::statement(&base(&headers), api.audit.is_some()),
    )
}

/// What a search asks for, read from its resource type and query string before anything
/// is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchQuery {
    /// The caller's own Subscription (no parameters).
    Subscription,
    /// A trace: `identifier=<NHS number system>|<number>` and `birthdate`.
    Patient {
        nhs_number: String,
        birthdate: String,
    },
    /// Any other type: `patient=` the person's id (`Patient/<id>` or the bare id).
    ByPatient { person: String },
}

/// Parse a search's resource type and query string: unknown types are 404, unknown or
/// repeated parameters and malformed values 400 naming the parameter.
pub fn search_query(rtype: &str, raw: Option<&str>) -> Result<SearchQuery, Failure> {
    if rtype == "Subscription" {
        parameters(raw, &[])?;
        return Ok(SearchQuery::Subscription);
    }
    known_type(rtype)?;
    if rtype == "Patient" {
        let params = parameters(raw, &["identifier", "birthdate"])?;
        let identifier = required(&params, "identifier")?;
        let Some(nhs) = identifier.strip_prefix(&format!("{}|", crate::codes::NHS_NUMBER)) else {
            return Err(Failure::parameter(
                "identifier",
                format!("must be {}|<NHS number>", crate::codes::NHS_NUMBER),
            ));
        };
        // A trace needs the date of birth as well as the number, as FindPerson does.
        let birthdate = required(&params, "birthdate")?;
        return Ok(SearchQuery::Patient {
            nhs_number: nhs.to_owned(),
            birthdate: birthdate.to_owned(),
        });
    }
    let params = parameters(raw, &["patient"])?;
    let patient = required(&params, "patient")?;
    let person = uuid(
        "patient",
        patient.strip_prefix("Patient/").unwrap_or(patient),
    )?;
    Ok(SearchQuery::ByPatient { person })
}

/// Parse `$events`' query string: `eventsSinceNumber` (default 1) and `eventsUntilNumber`
/// (if given, not less than the first).
pub fn events_query(raw: Option<&str>) -> Result<(u64, Option<u64>), Failure> {
    let params = parameters(raw, &["eventsSinceNumber", "eventsUntilNumber"])?;
    let since = event_number(&params, "eventsSinceNumber")?.unwrap_or(1);
    let asked_until = event_number(&params, "eventsUntilNumber")?;
    if asked_until.is_some_and(|u| u < since) {
        return Err(Failure::parameter(
            "eventsUntilNumber",
            "must not be less than eventsSinceNumber",
        ));
    }
    Ok((since, asked_until))
}

async fn search<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path(rtype): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let query = search_query(&rtype, raw.as_deref())?;
    let base = base(&headers);
    let echo = raw.clone().unwrap_or_default();
    let self_link = if echo.is_empty() {
        rtype.clone()
    } else {
        format!("{rtype}?{echo}")
    };
    let empty = || {
        fhir(
            StatusCode::OK,
            &bundle("searchset", &base, &self_link, Vec::new()),
        )
    };
    let person = match query {
        SearchQuery::Subscription => {
            // The caller's own subscription: there is one per partner organisation.
            let status = api.feed_status(&headers).await?;
            let entries = vec![search_entry(
                &base,
                subscription::subscription(&status),
                "match",
            )];
            return Ok(fhir(
                StatusCode::OK,
                &bundle("searchset", &base, "Subscription", entries),
            ));
        }
        SearchQuery::Patient {
            nhs_number,
            birthdate,
        } => {
            let rename = |f: &str| match f {
                "nhs_number" => "identifier".to_owned(),
                "date_of_birth" => "birthdate".to_owned(),
                other => other.to_owned(),
            };
            let found = api
                .queries
                .find_person(request(
                    &headers,
                    v1::FindPersonRequest {
                        nhs_number,
                        date_of_birth: birthdate,
                    },
                ))
                .await;
            let person = match found {
                Ok(reply) => reply.into_inner().person_id,
                Err(s) => {
                    let failure = from_status(&s, "Patient", &rename);
                    return if failure.is_absence() {
                        Ok(empty())
                    } else {
                        Err(failure)
                    };
                }
            };
            return match api.record(&headers, &person, "Patient", "identifier").await {
                Ok(record) => {
                    let entries = vec![search_entry(&base, map::patient(&record), "match")];
                    Ok(fhir(
                        StatusCode::OK,
                        &bundle("searchset", &base, &self_link, entries),
                    ))
                }
                // Found by the trace but not readable: the same as not found.
                Err(f) if f.is_absence() => Ok(empty()),
                Err(f) => Err(f),
            };
        }
        SearchQuery::ByPatient { person } => person,
    };
    if rtype == "AuditEvent" {
        return match api.accesses(&headers, &person).await {
            Ok(entries) => Ok(fhir(
                StatusCode::OK,
                &bundle(
                    "searchset",
                    &base,
                    &self_link,
                    entries
                        .into_iter()
                        .map(|r| search_entry(&base, r, "match"))
                        .collect(),
                ),
            )),
            Err(f) if f.is_absence() => Ok(empty()),
            Err(f) => Err(f),
        };
    }
    match api.record(&headers, &person, &rtype, "patient").await {
        Ok(record) => {
            let entries = map::resources(&record, &rtype)
                .into_iter()
                .map(|r| search_entry(&base, r, "match"))
                .collect();
            Ok(fhir(
                StatusCode::OK,
                &bundle("searchset", &base, &self_link, entries),
            ))
        }
        Err(f) if f.is_absence() => Ok(empty()),
        Err(f) => Err(f),
    }
}

/// The types a read by id is served for: those whose id is the person's (the record is
/// found by it). Other resources are found by `?patient=`.
const READABLE: [&str; 3] = ["Patient", "CarePlan", "CareTeam"];

fn readable_type(rtype: &str) -> Result<(), Failure> {
    known_type(rtype)?;
    if READABLE.contains(&rtype) {
        Ok(())
    } else {
        Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("{rtype} is found by search (?patient=), not read by id"),
            None,
        ))
    }
}

async fn read<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path((rtype, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    if rtype == "Subscription" {
        let status = api.own_subscription(&headers, &id).await?;
        return Ok(fhir(StatusCode::OK, &subscription::subscription(&status)));
    }
    readable_type(&rtype)?;
    let person = uuid("id", &id)?;
    let what = format!("{rtype}/{person}");
    let record = api.record(&headers, &person, &what, "id").await?;
    let resource = map::resources(&record, &rtype)
        .into_iter()
        .next()
        .ok_or_else(|| Failure::not_found(&what))?;
    Ok(fhir(StatusCode::OK, &resource))
}

async fn operation<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path((rtype, id, op)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let base = base(&headers);
    match (rtype.as_str(), op.as_str()) {
        ("Subscription", "$status") => {
            parameters(raw.as_deref(), &[])?;
            let status = api.own_subscription(&headers, &id).await?;
            let parameters = subscription::status_parameters(
                &status,
                Kind::QueryStatus,
                status.last_number,
                &[],
            );
            Ok(fhir(
                StatusCode::OK,
                &bundle(
                    "searchset",
                    &base,
                    &format!("Subscription/{id}/$status"),
                    vec![search_entry(&base, parameters, "match")],
                ),
            ))
        }
        ("Subscription", "$events") => {
            let (since, asked_until) = events_query(raw.as_deref())?;
            let status = api.own_subscription(&headers, &id).await?;
            // At most MAX_EVENTS, and never beyond the feed's end.
            let until = asked_until
                .unwrap_or(u64::MAX)
                .min(status.last_number)
                .min(since.saturating_add(subscription::MAX_EVENTS - 1));
            let items = if since <= until {
                api.feed_items(&headers, since, until).await?
            } else {
                Vec::new()
            };
            let mut body = subscription::notification(
                &base,
                &status,
                Kind::QueryEvent,
                status.last_number,
                &items,
            );
            let mut links = vec![
                json!({ "relation": "self", "url": format!("{base}/Subscription/{id}/$events?eventsSinceNumber={since}&eventsUntilNumber={until}") }),
            ];
            if until < asked_until.unwrap_or(status.last_number) {
                let mut next = format!(
                    "{base}/Subscription/{id}/$events?eventsSinceNumber={}",
                    until + 1
                );
                if let Some(u) = asked_until {
                    next.push_str(&format!("&eventsUntilNumber={u}"));
                }
                links.push(json!({ "relation": "next", "url": next }));
            }
            body["link"] = json!(links);
            Ok(fhir(StatusCode::OK, &body))
        }
        ("Patient", "$everything") => {
            let person = uuid("id", &id)?;
            let what = format!("Patient/{person}");
            let record = api.record(&headers, &person, &what, "id").await?;
            let entries = map::everything(&record)
                .into_iter()
                .map(|r| search_entry(&base, r, "match"))
                .collect();
            Ok(fhir(
                StatusCode::OK,
                &bundle(
                    "searchset",
                    &base,
                    &format!("Patient/{person}/$everything"),
                    entries,
                ),
            ))
        }
        ("CarePlan", "_history") => {
            let person = uuid("id", &id)?;
            let what = format!("CarePlan/{person}");
            let record = api.record(&headers, &person, &what, "id").await?;
            let versions = map::care_plan_history(&record);
            if versions.is_empty() {
                return Err(Failure::not_found(&what));
            }
            // Newest first, as a history Bundle is ordered.
            let entries = versions
                .into_iter()
                .rev()
                .map(|(version, at, resource)| {
                    let mut response = json!({
                        "status": if version == 1 { "201 Created" } else { "200 OK" },
                        "etag": format!("W/\"{version}\""),
                    });
                    if let Some(at) = at {
                        response["lastModified"] = json!(at);
                    }
                    json!({
                        "fullUrl": format!("{base}/CarePlan/{person}"),
                        "resource": resource,
                        "request": {
                            "method": if version == 1 { "POST" } else { "PUT" },
                            "url": if version == 1 { "CarePlan".to_owned() } else { format!("CarePlan/{person}") },
                        },
                        "response": response,
                    })
                })
                .collect();
            Ok(fhir(
                StatusCode::OK,
                &bundle(
                    "history",
                    &base,
                    &format!("CarePlan/{person}/_history"),
                    entries,
                ),
            ))
        }
        _ => {
            known_type(&rtype)?;
            Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not-supported",
                format!("{rtype}/<id>/{op} is not supported: see /fhir/metadata"),
                None,
            ))
        }
    }
}

async fn vread<Q: QueryService>(
    State(api): State<Arc<Api<Q>>>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    if rtype != "CarePlan" {
        known_type(&rtype)?;
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("versions are kept for CarePlan only, not {rtype}"),
            None,
        ));
    }
    let person = uuid("id", &id)?;
    let version: u32 = vid
        .parse()
        .map_err(|_| Failure::parameter("vid", "is not a version number"))?;
    let what = format!("CarePlan/{person}/_history/{vid}");
    let record = api.record(&headers, &person, &what, "id").await?;
    map::care_plan_history(&record)
        .into_iter()
        .find(|(v, _, _)| *v == version)
        .map(|(_, _, resource)| fhir(StatusCode::OK, &resource))
        .ok_or_else(|| Failure::not_found(&what))
}
