//! One target per decoder or parser reachable from outside, each calling the functions the
//! services call, in the order they call them.

use std::sync::LazyLock;

use carewoven_access::Authenticator;
use carewoven_access::token::{AUDIENCE, Verifier};
use carewoven_domain::values::Code;
use carewoven_domain::{DecideContext, DomainError};
use carewoven_gateway::evaluator::{FIRST_HEADER, NUMBER_HEADER, decode_batch};
use carewoven_gateway::feed::{CursorKey, decode_feed_message};
use carewoven_governance::Governance;
use carewoven_proto::convert::{CommandRequest, decode_event, encode_event, parse_context_with};
use carewoven_proto::v1;
use carewoven_views::paging::PageTokens;
use chrono::Utc;
use prost::Message;
use serde_json::{Value, json};

use crate::engine::{Target, Verdict};
use crate::mutate::{arbitrary, ascii, mutate};
use crate::protogen::{self, deep_groups, deep_lengths, encoded, nhs_number};
use crate::rng::Rng;

/// Every target, in the order a run takes them.
pub fn all() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(Commands),
        Box::new(Events),
        Box::new(FeedMessages),
        Box::new(AuditMessages),
        Box::new(Cursors),
        Box::new(PageTokenTarget),
        Box::new(Bearer),
        Box::new(TrustFiles),
        Box::new(RestHooks),
        Box::new(FhirQueries),
        Box::new(WebRequests),
    ]
}

pub fn by_name(name: &str) -> Option<Box<dyn Target>> {
    all().into_iter().find(|t| t.name() == name)
}

/// A protobuf input for `message`: arbitrary bytes, a generated message, or a generated one
/// mutated, nested deep or repeated towards the request limit.
fn protobuf_input(rng: &mut Rng, message: &str, out: &mut Vec<u8>) {
    match rng.below(100) {
        0..=19 => arbitrary(rng, out),
        20..=49 => out.extend(encoded(rng, &protogen::message(message))),
        50..=93 => {
            let mut m = encoded(rng, &protogen::message(message));
            mutate(rng, &mut m);
            out.extend(m);
        }
        94..=96 => {
            let inner = encoded(rng, &protogen::message(message));
            let depth = rng.range(50, 20_000) as usize;
            out.extend(deep_groups(rng, &inner, depth));
        }
        _ => {
            let inner = encoded(rng, &protogen::message(message));
            let field = 1 + rng.below(15) as u8;
            let depth = rng.range(10, 2_000) as usize;
            out.extend(deep_lengths(field, &inner, depth));
        }
    }
    out.truncate(carewoven_proto::MAX_REQUEST_BYTES);
}

/// Text input: arbitrary bytes, printable noise, or `valid` mutated at the byte level.
fn text_input(rng: &mut Rng, valid: String, out: &mut Vec<u8>) {
    match rng.below(100) {
        0..=9 => arbitrary(rng, out),
        10..=19 => ascii(rng, out),
        20..=44 => out.extend(valid.into_bytes()),
        _ => {
            let mut v = valid.into_bytes();
            mutate(rng, &mut v);
            out.extend(v);
        }
    }
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

// ---------------------------------------------------------------------------------------------
// Command requests: the gRPC body decoded as the RPC's request type (the codec), then the
// handler's order: context (with the caller's organisation and user), occurred_at, the
// domain command; and, for what converts, `decide` on no state and `evolve` of its events.

static ORG: LazyLock<Code> = LazyLock::new(|| code("DEMO-HOSP"));
static USER: LazyLock<Code> = LazyLock::new(|| code("COORDINATOR-1"));
static IDS: LazyLock<carewoven_commands::Ids> =
    LazyLock::new(|| carewoven_commands::Ids::new(b"fuzz-id-key-fuzz-id-key-fuzz-id-key".to_vec()));

fn code(raw: &str) -> Code {
    Code::parse("code", raw).unwrap_or_else(|e| panic!("{raw} is a code: {e}"))
}

/// A refusal of a request's form must be INVALID_ARGUMENT naming the field.
fn form_refusal(e: &DomainError) -> Verdict {
    let status = carewoven_commands::domain_status(e);
    match e {
        DomainError::Invalid { field, .. }
            if !field.is_empty()
                && status.code() == tonic::Code::InvalidArgument
                && status.message().starts_with(field.as_str()) =>
        {
            Verdict::Refused
        }
        _ => Verdict::Unclear(format!(
            "a malformed request answered {:?} {:?} (INVALID_ARGUMENT naming the field expected)",
            status.code(),
            status.message()
        )),
    }
}

fn command<R: CommandRequest + Message + Default>(bytes: &[u8]) -> Verdict {
    // The codec: a body that is not an `R` is INVALID_ARGUMENT naming `R`.
    let Ok(request) = R::decode(bytes) else {
        return Verdict::Refused;
    };
    let now = Utc::now();
    let ctx = match parse_context_with(request.context(), &ORG, Some(&USER)) {
        Ok(ctx) => ctx,
        Err(e) => return form_refusal(&e),
    };
    if let Err(e) = ctx.check_occurred_at(now) {
        return form_refusal(&e);
    }
    let command = match request.to_command(&IDS.for_command(ctx.command_id)) {
        Ok(c) => c,
        Err(e) => return form_refusal(&e),
    };
    let _ = request.wire_field("date_of_birth");
    let _ = command.target();
    let decided = carewoven_domain::decide(
        None,
        &command,
        &DecideContext {
            now,
            actor: ctx.actor.clone(),
        },
    );
    match decided {
        Ok(events) => {
            let mut state = None;
            for event in &events {
                match carewoven_domain::evolve(state, event) {
                    Ok(s) => state = Some(s),
                    Err(e) => {
                        return Verdict::Unclear(format!(
                            "evolve refused an event decide produced: {e}"
                        ));
                    }
                }
            }
            Verdict::Accepted
        }
        Err(e) => {
            let status = carewoven_commands::domain_status(&e);
            if matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal) {
                Verdict::Unclear(format!("decide's refusal is {:?}", status.code()))
            } else {
                Verdict::Refused
            }
        }
    }
}

macro_rules! requests {
    ($($name:ident),* $(,)?) => {
        const REQUESTS: &[(&str, fn(&[u8]) -> Verdict)] = &[
            $((stringify!($name), command::<v1::$name>),)*
        ];
    };
}

requests!(
    RegisterPersonRequest,
    CorrectPersonDetailsRequest,
    AssertEmergencyAccessRequest,
    GrantProxyRequest,
    RevokeProxyRequest,
    MakeReferralRequest,
    ProgressReferralRequest,
    RequestAssessmentRequest,
    ContributeToAssessmentRequest,
    CompleteAssessmentRequest,
    ReplaceAssessorRequest,
    CancelAssessmentRequest,
    AgreeCarePlanRequest,
    ReviseCarePlanRequest,
    AddCareTeamMemberRequest,
    RemoveCareTeamMemberRequest,
    NameCareCoordinatorRequest,
    RecordConsentRequest,
    WithdrawConsentRequest,
    AdmitPersonRequest,
    ProgressDischargeRequest,
    RecordMeetingRequest,
    CompleteMeetingActionRequest,
    RaiseRiskFlagRequest,
    EndRiskFlagRequest,
    CreateTaskRequest,
    ChangeTaskStatusRequest,
    ReassignTaskRequest,
    RecordFeedbackRequest,
    RegisterOrganisationRequest,
    AddOrganisationServiceRequest,
    RecordSharingAgreementRequest,
    EndSharingAgreementRequest,
);

/// Every `CommandService` request type: the first byte picks it, the rest is the body.
pub struct Commands;

impl Target for Commands {
    fn name(&self) -> &'static str {
        "command"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let which = rng.below(REQUESTS.len());
        out.push(which as u8);
        protobuf_input(rng, REQUESTS[which].0, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Some((&which, body)) = input.split_first() else {
            return Verdict::Refused;
        };
        let (_, run) = REQUESTS[usize::from(which) % REQUESTS.len()];
        run(body)
    }
}

// ---------------------------------------------------------------------------------------------
// Events from the log: `carewoven_eventlog::decode` as every follower calls it; what decodes
// must round-trip, fold into an aggregate (or be refused by `evolve`) and into the
// governance fold the access index and the gateway keep.

pub struct Events;

const SEQUENCE: u64 = 4_242;

impl Target for Events {
    fn name(&self) -> &'static str {
        "event"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        if rng.chance(40) {
            // A clean envelope whose kind is its event's, so that it decodes whole.
            let bytes = encoded(rng, &protogen::message("EventEnvelope"));
            if let Ok(mut envelope) = v1::EventEnvelope::decode(bytes.as_slice()) {
                for kind in protogen::KINDS {
                    envelope.aggregate_kind = kind.to_owned();
                    if carewoven_proto::convert::from_envelope(&envelope)
                        != Err(carewoven_proto::convert::DecodeError::KindMismatch)
                    {
                        break;
                    }
                }
                let mut bytes = envelope.encode_to_vec();
                if rng.chance(50) {
                    mutate(rng, &mut bytes);
                }
                out.extend(bytes);
                return;
            }
        }
        protobuf_input(rng, "EventEnvelope", out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        match carewoven_eventlog::decode(SEQUENCE, input) {
            Err(carewoven_eventlog::LogError::Undecodable { sequence, reason })
                if sequence == SEQUENCE && !reason.is_empty() =>
            {
                Verdict::Refused
            }
            Err(e) => Verdict::Unclear(format!("not an Undecodable naming the sequence: {e}")),
            Ok(recorded) => {
                let again = encode_event(&recorded.meta, &recorded.event);
                match decode_event(&again) {
                    Ok((meta, event)) if meta == recorded.meta && event == recorded.event => {}
                    _ => return Verdict::Unclear("a decoded event does not round-trip".into()),
                }
                let _ = carewoven_domain::evolve(None, &recorded.event);
                let _ = carewoven_governance::data_class(&recorded.event);
                let mut fold = Governance::new();
                fold.apply(&recorded);
                Verdict::Accepted
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stored feed messages: `decode_batch` and a subscription's `decode_feed_message` (headers,
// numbering), then the FHIR notification the rest hooks POST for the items.

static CURSORS: LazyLock<CursorKey> =
    LazyLock::new(|| CursorKey::new(b"fuzz-cursor-key-fuzz-cursor-key!".to_vec()));

pub struct FeedMessages;

impl Target for FeedMessages {
    fn name(&self) -> &'static str {
        "feed"
    }

    /// `[flags][header number: 8][expected: 8][payload]`.
    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let first = match rng.below(6) {
            0 => u64::MAX,
            1 => u64::MAX - rng.range(0, 3),
            2 => 0,
            _ => rng.range(1, 1_000),
        };
        let n = rng.below(5) as u64;
        let last = first.wrapping_add(n).wrapping_sub(1);
        let expected = match rng.below(4) {
            0 => rng.next_u64(),
            _ => first.wrapping_add(rng.range(0, n.max(1))),
        };
        let flags = rng.byte();
        let header = if rng.chance(80) { last } else { rng.next_u64() };
        out.push(flags);
        out.extend(header.to_be_bytes());
        out.extend(expected.to_be_bytes());
        if rng.chance(25) {
            protobuf_input(
                rng,
                if flags & 1 == 1 {
                    "FeedBatch"
                } else {
                    "FeedItem"
                },
                out,
            );
            return;
        }
        let items: Vec<v1::FeedItem> = (0..n)
            .map(|i| {
                let envelope = v1::EventEnvelope::decode(
                    encoded(rng, &protogen::message("EventEnvelope")).as_slice(),
                )
                .ok();
                v1::FeedItem {
                    number: first.wrapping_add(i),
                    event: envelope,
                    disclosure: rng.below(4) as i32,
                    ..v1::FeedItem::default()
                }
            })
            .collect();
        let mut payload = if flags & 1 == 1 {
            v1::FeedBatch { first, last, items }.encode_to_vec()
        } else {
            items.into_iter().next().unwrap_or_default().encode_to_vec()
        };
        if rng.chance(50) {
            mutate(rng, &mut payload);
        }
        out.extend(payload);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        if input.len() < 17 {
            return Verdict::Refused;
        }
        let flags = input[0];
        let header = u64::from_be_bytes(input[1..9].try_into().unwrap_or_default());
        let expected = u64::from_be_bytes(input[9..17].try_into().unwrap_or_default());
        let payload = &input[17..];
        let mut headers = async_nats::HeaderMap::new();
        if flags & 1 == 1 {
            headers.insert(FIRST_HEADER, "1");
        }
        if flags & 2 == 0 {
            headers.insert(NUMBER_HEADER, header.to_string().as_str());
        } else if flags & 4 == 4 {
            // A header as NATS delivers it: never a line break inside.
            let raw = lossy(&input[1..9]).replace(['\r', '\n'], "");
            headers.insert(NUMBER_HEADER, raw.as_str());
        }
        let headers = (flags & 8 == 0).then_some(&headers);
        if let Ok(batch) = decode_batch(headers, payload) {
            for item in &batch.items {
                let _ = carewoven_fhir::subscription::event_resources(item);
            }
        }
        match decode_feed_message(headers, payload, "DEMO-HOSP", expected, &CURSORS) {
            Ok(items) => {
                let status = v1::FeedStatus {
                    organisation: "DEMO-HOSP".into(),
                    last_number: items.last().map_or(0, |i| i.number),
                    ..v1::FeedStatus::default()
                };
                let _ = carewoven_fhir::subscription::notification(
                    "http://fhir.example/fhir",
                    &status,
                    carewoven_fhir::subscription::Kind::EventNotification,
                    expected,
                    &items,
                );
                Verdict::Accepted
            }
            Err(s)
                if matches!(s.code(), tonic::Code::DataLoss | tonic::Code::Aborted)
                    && !s.message().is_empty() =>
            {
                Verdict::Refused
            }
            Err(s) => Verdict::Unclear(format!("{:?} {:?}", s.code(), s.message())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Audit messages (`CW_AUDIT`, alone or grouped), as the access list and the sweep read them.

pub struct AuditMessages;

impl Target for AuditMessages {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let group = rng.chance(50);
        out.push(u8::from(group));
        protobuf_input(rng, if group { "AuditGroup" } else { "AuditEvent" }, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Some((&group, payload)) = input.split_first() else {
            return Verdict::Refused;
        };
        let subject = if group & 1 == 1 {
            carewoven_access::audit::GROUP_SUBJECT.to_owned()
        } else {
            "cw.audit.none.DEMO-HOSP.read".to_owned()
        };
        match carewoven_access::audit::decode_message(&subject, payload) {
            Ok(records) => {
                for r in &records {
                    let subject = carewoven_access::audit::event_subject(r);
                    if let Ok(person) = uuid::Uuid::parse_str(&r.person_id) {
                        let filter = carewoven_access::audit::person_filter(person);
                        let _ = carewoven_access::audit::subject_matches(&filter, &subject);
                    }
                }
                Verdict::Accepted
            }
            Err(_) => Verdict::Refused,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Feed cursors (`SubscribeRequest.cursor`): the gateway's signed `v1.<n>.<hmac>`.

const ORGS: [&str; 4] = ["DEMO-HOSP", "GP-A", "LA-1", ""];

fn interesting_u64(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => u64::MAX,
        1 => 0,
        2 => u64::from(u32::MAX) + 1,
        _ => rng.range(1, 100_000),
    }
}

pub struct Cursors;

impl Target for Cursors {
    fn name(&self) -> &'static str {
        "cursor"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        out.push(rng.below(ORGS.len()) as u8);
        let issued_to = rng.pick(&ORGS);
        let valid = CURSORS.cursor(issued_to, interesting_u64(rng));
        let valid = match rng.below(5) {
            0 => format!("  {valid}\t"),
            1 => valid.to_uppercase(),
            2 => valid.replacen("v1.", "v1.+", 1),
            _ => valid,
        };
        text_input(rng, valid, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Some((&org, cursor)) = input.split_first() else {
            return Verdict::Refused;
        };
        let org = ORGS[usize::from(org) % ORGS.len()];
        match CURSORS.verify(org, &lossy(cursor)) {
            Some(_) => Verdict::Accepted,
            // The gateway answers INVALID_ARGUMENT naming `cursor`.
            None => Verdict::Refused,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The views' page tokens (every paged query's `page_token`).

static PAGES: LazyLock<PageTokens> =
    LazyLock::new(|| PageTokens::new(b"fuzz-page-key-fuzz-page-key-fuzz".to_vec()));

const FILTERS: [&str; 4] = [
    "board|SITE-1|1",
    "inbox|SVC-REABLE|open",
    "caseload|LA-1",
    "",
];

pub struct PageTokenTarget;

impl Target for PageTokenTarget {
    fn name(&self) -> &'static str {
        "page_token"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        out.push(rng.below(FILTERS.len()) as u8);
        let cursor = match rng.below(4) {
            0 => u128::MAX,
            1 => 0,
            _ => u128::from(rng.next_u64()),
        };
        let valid = PAGES.issue(cursor, FILTERS[rng.below(FILTERS.len())]);
        text_input(rng, valid, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Some((&filters, token)) = input.split_first() else {
            return Verdict::Refused;
        };
        let filters = FILTERS[usize::from(filters) % FILTERS.len()];
        match PAGES.read(&lossy(token), filters) {
            Ok(_) => Verdict::Accepted,
            Err(s)
                if s.code() == tonic::Code::InvalidArgument
                    && s.message().starts_with("page_token") =>
            {
                Verdict::Refused
            }
            Err(s) => Verdict::Unclear(format!("{:?} {:?}", s.code(), s.message())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens: the `authorization` header through `Authenticator::identify`, with a trust
// file of an organisations issuer and a citizens issuer (fixed keys, so every input can be
// made again), tokens signed by them or by an untrusted key with generated claims.

struct Keys {
    organisations: carewoven_access::Issuer,
    citizens: carewoven_access::Issuer,
    untrusted: carewoven_access::Issuer,
    trust_json: String,
    auth: Authenticator,
}

fn issuer(seed: u8, kid: &str, name: &str) -> carewoven_access::Issuer {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let private = signing
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap_or_else(|e| panic!("encoding a key: {e}"));
    let public = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap_or_else(|e| panic!("encoding a key: {e}"));
    carewoven_access::Issuer::from_pem(kid, name, &private, &public)
        .unwrap_or_else(|e| panic!("a fixed issuer: {e}"))
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let organisations = issuer(1, "org-key", "https://idp.example");
    let citizens = issuer(2, "cit-key", "https://login.example").for_citizens();
    let untrusted = issuer(3, "org-key", "https://idp.example");
    let trust = carewoven_access::token::TrustFile {
        keys: vec![organisations.trusted_key(), citizens.trusted_key()],
    };
    let trust_json = serde_json::to_string(&trust).unwrap_or_default();
    let verifier = Verifier::new(&trust).unwrap_or_else(|e| panic!("the fuzz trust file: {e}"));
    Keys {
        organisations,
        citizens,
        untrusted,
        trust_json,
        auth: Authenticator::new(verifier),
    }
});

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// A JSON value that is usually right for the claim and sometimes anything but.
fn claim(rng: &mut Rng, right: Value) -> Option<Value> {
    match rng.below(20) {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(-1)),
        3 => Some(json!(u64::MAX)),
        4 => Some(json!(1.5e300)),
        5 => Some(json!(["a", {"b": [1, 2, 3]}])),
        6 => Some(json!("x".repeat(rng.below(5_000)))),
        7 => Some(deep_json(rng.range(10, 300) as usize)),
        _ => Some(right),
    }
}

fn deep_json(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

fn claims(rng: &mut Rng, citizen: bool) -> Value {
    let now = now_secs();
    let iat = now - rng.below(600) as i64;
    let exp = match rng.below(6) {
        0 => now - 3_600,
        1 => now + 30 * 24 * 3_600,
        _ => now + 600,
    };
    let iss = if citizen {
        "https://login.example"
    } else {
        "https://idp.example"
    };
    let mut fields = vec![
        ("iss", json!(iss)),
        (
            "aud",
            json!(if rng.chance(90) { AUDIENCE } else { "other" }),
        ),
        ("exp", json!(exp)),
        ("iat", json!(iat)),
    ];
    if rng.chance(20) {
        fields.push(("nbf", json!(now + rng.below(120) as i64 - 60)));
    }
    if citizen {
        fields.push(("sub", json!(format!("subject-{}", rng.below(1000)))));
        fields.push(("nhs_number", json!(nhs_number(rng))));
        fields.push((
            "identity_level",
            json!(*rng.pick(&["P0", "P5", "P9", "p9", "P10"])),
        ));
    } else {
        fields.push((
            "sub",
            json!(*rng.pick(&["DEMO-HOSP", "GP-A", "CITIZEN", "bad code!"])),
        ));
        if rng.chance(50) {
            fields.push(("user", json!("COORDINATOR-1")));
        }
        if rng.chance(30) {
            fields.push((
                "roles",
                json!([*rng.pick(&["governance", "analyst", "root"])]),
            ));
        }
    }
    let mut object = serde_json::Map::new();
    for (name, right) in fields {
        if let Some(v) = claim(rng, right) {
            object.insert(name.to_owned(), v);
        }
    }
    Value::Object(object)
}

pub struct Bearer;

impl Target for Bearer {
    fn name(&self) -> &'static str {
        "bearer"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let keys = &*KEYS;
        let (signer, citizen) = match rng.below(10) {
            0..=4 => (&keys.organisations, rng.chance(10)),
            5..=7 => (&keys.citizens, rng.chance(90)),
            _ => (&keys.untrusted, rng.chance(50)),
        };
        let token = signer.sign(&claims(rng, citizen)).unwrap_or_default();
        let token = match rng.below(8) {
            0 => {
                // Another header: alg none, an unknown kid, a header that is not JSON.
                let parts: Vec<&str> = token.splitn(2, '.').collect();
                let header = *rng.pick(&[
                    "eyJhbGciOiJub25lIn0",
                    "eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUifQ",
                    "bm90IGpzb24",
                    "",
                ]);
                format!("{header}.{}", parts.get(1).copied().unwrap_or(""))
            }
            _ => token,
        };
        let prefix = *rng.pick(&["Bearer ", "Bearer ", "bearer ", "Basic ", "Bearer  ", ""]);
        text_input(rng, format!("{prefix}{token}"), out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let mut metadata = tonic::metadata::MetadataMap::new();
        // What cannot be an HTTP header value never reaches the service.
        let Ok(value) = tonic::metadata::MetadataValue::try_from(input) else {
            return Verdict::Refused;
        };
        metadata.insert("authorization", value);
        match KEYS.auth.identify(&metadata) {
            Ok(_) => Verdict::Accepted,
            Err(e) if !e.reason().is_empty() && !e.to_string().is_empty() => Verdict::Refused,
            Err(e) => Verdict::Unclear(format!("{e:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The trust file (`--trusted-keys`) and the rest-hook endpoints file (`--rest-hooks`).

pub struct TrustFiles;

impl Target for TrustFiles {
    fn name(&self) -> &'static str {
        "trust_file"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let valid = match rng.below(5) {
            0 => {
                let v: Value = serde_json::from_str(&KEYS.trust_json).unwrap_or_default();
                let mut v = v;
                if let Some(keys) = v["keys"].as_array_mut() {
                    for k in keys.iter_mut() {
                        let field = *rng.pick(&["kid", "issuer", "public_key_pem", "subjects"]);
                        k[field] = claim(rng, k[field].clone()).unwrap_or(Value::Null);
                    }
                }
                v.to_string()
            }
            1 => format!("{{\"keys\": {}}}", deep_json(rng.range(10, 5_000) as usize)),
            2 => {
                let n = rng.below(200);
                let entry: Value = serde_json::from_str(&KEYS.trust_json).unwrap_or_default();
                let one = entry["keys"][0].clone();
                json!({ "keys": vec![one; n] }).to_string()
            }
            _ => KEYS.trust_json.clone(),
        };
        text_input(rng, valid, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Ok(text) = std::str::from_utf8(input) else {
            // `read_to_string` refuses a file that is not UTF-8, naming it.
            return Verdict::Refused;
        };
        match Verifier::from_json(text) {
            Ok(_) => Verdict::Accepted,
            Err(e) if !e.to_string().is_empty() => Verdict::Refused,
            Err(e) => Verdict::Unclear(format!("{e:?}")),
        }
    }
}

pub struct RestHooks;

impl Target for RestHooks {
    fn name(&self) -> &'static str {
        "rest_hooks"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let mut object = serde_json::Map::new();
        for _ in 0..rng.below(6) {
            let org = (*rng.pick(&["DEMO-HOSP", "GP-A", "", "bad org", "LA-1"])).to_owned();
            let url = *rng.pick(&[
                "http://127.0.0.1:8080/hook",
                "https://partner.example/hook",
                "http://[::1]:9/x",
                "http://",
                "not a url",
                "http://a:99999999/",
                "http://user@host/%zz",
            ]);
            object.insert(org, json!(url));
        }
        let valid = match rng.below(6) {
            0 => deep_json(rng.range(10, 5_000) as usize).to_string(),
            1 => json!({"DEMO-HOSP": ["http://x/"]}).to_string(),
            _ => Value::Object(object).to_string(),
        };
        text_input(rng, valid, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Ok(text) = std::str::from_utf8(input) else {
            return Verdict::Refused;
        };
        match carewoven_gateway::rest_hook::parse_endpoints(text, &"rest-hooks.json") {
            Ok(_) => Verdict::Accepted,
            Err(e) if format!("{e:#}").contains("rest-hooks.json") => Verdict::Refused,
            Err(e) => Verdict::Unclear(format!("the error does not name the file: {e:#}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Query strings and headers of the FHIR API and the web screens' JSON API.

fn query_string(rng: &mut Rng, names: &[&str]) -> String {
    let mut parts = Vec::new();
    for _ in 0..rng.below(5) {
        let name = match rng.below(10) {
            0 => "_format".to_owned(),
            1 => "unknown".to_owned(),
            2 => "%70atient".to_owned(),
            _ => (*rng.pick(names)).to_owned(),
        };
        let value = match rng.below(12) {
            0 => format!("{}|{}", carewoven_fhir::codes::NHS_NUMBER, nhs_number(rng)),
            1 => format!("Patient/{}", uuid::Uuid::from_u64_pair(rng.next_u64(), 1)),
            2 => uuid::Uuid::from_u64_pair(rng.next_u64(), 2).to_string(),
            3 => "1990-01-01".to_owned(),
            4 => rng.next_u64().to_string(),
            5 => "18446744073709551616".to_owned(),
            6 => "%ff%fe%00".to_owned(),
            7 => "0".to_owned(),
            8 => (*rng.pick(&["1", "PATHWAY_2", "DELAY_REASON_PATHWAY_1_NEW_CARE", "open"]))
                .to_owned(),
            9 => "application/fhir+json".to_owned(),
            10 => "a+b%2Bc".to_owned(),
            _ => String::new(),
        };
        parts.push(if rng.chance(95) {
            format!("{name}={value}")
        } else {
            name
        });
    }
    parts.join(if rng.chance(95) { "&" } else { ";" })
}

const FHIR_TYPES: [&str; 8] = [
    "Patient",
    "Subscription",
    "AuditEvent",
    "CarePlan",
    "Observation",
    "Task",
    "Unknown",
    "",
];

/// `[route][type][text]`; headers carry `text` where the route is a header.
pub struct FhirQueries;

fn header_map(name: &'static str, value: &[u8]) -> Option<axum::http::HeaderMap> {
    let value = axum::http::HeaderValue::from_bytes(value).ok()?;
    let mut h = axum::http::HeaderMap::new();
    h.insert(axum::http::HeaderName::from_static(name), value);
    Some(h)
}

fn fhir_verdict<T>(result: Result<T, carewoven_fhir::api::Failure>) -> Verdict {
    match result {
        Ok(_) => Verdict::Accepted,
        Err(f) => {
            let _ = f.outcome();
            match f.status().as_u16() {
                400 if f.expression().is_some_and(|e| !e.is_empty()) => Verdict::Refused,
                404 => Verdict::Refused,
                s => Verdict::Unclear(format!("{s} without a named parameter: {:?}", f.outcome())),
            }
        }
    }
}

impl Target for FhirQueries {
    fn name(&self) -> &'static str {
        "fhir_query"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let route = rng.below(4) as u8;
        let rtype = rng.below(FHIR_TYPES.len()) as u8;
        out.push(route);
        out.push(rtype);
        let valid = match route {
            0 => query_string(rng, &["patient", "identifier", "birthdate"]),
            1 => query_string(rng, &["eventsSinceNumber", "eventsUntilNumber"]),
            2 => rng.next_u64().to_string(),
            _ => "fhir.example:8080".to_owned(),
        };
        text_input(rng, valid, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let [route, rtype, text @ ..] = input else {
            return Verdict::Refused;
        };
        match route % 4 {
            0 => {
                let rtype = FHIR_TYPES[usize::from(*rtype) % FHIR_TYPES.len()];
                fhir_verdict(carewoven_fhir::api::search_query(rtype, Some(&lossy(text))))
            }
            1 => fhir_verdict(carewoven_fhir::api::events_query(Some(&lossy(text)))),
            2 => match header_map("carewoven-min-log-position", text) {
                None => Verdict::Refused,
                Some(h) => fhir_verdict(carewoven_fhir::api::min_position(&h)),
            },
            _ => match header_map("host", text) {
                None => Verdict::Refused,
                Some(h) => {
                    let base = carewoven_fhir::api::base(&h);
                    if base.starts_with("http://") && base.ends_with("/fhir") {
                        Verdict::Accepted
                    } else {
                        Verdict::Unclear(format!("a base URL {base:?}"))
                    }
                }
            },
        }
    }
}

/// `[route][parts separated by 0x00]`.
pub struct WebRequests;

fn web_verdict<T>(result: Result<T, carewoven_web::api::Failure>) -> Verdict {
    match result {
        Ok(_) => Verdict::Accepted,
        Err(f) => {
            let _ = f.body();
            match f.status().as_u16() {
                400 if f.field().is_some_and(|e| !e.is_empty()) => Verdict::Refused,
                s => Verdict::Unclear(format!("{s} without a named field: {:?}", f.body())),
            }
        }
    }
}

impl Target for WebRequests {
    fn name(&self) -> &'static str {
        "web_request"
    }

    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let route = rng.below(5) as u8;
        out.push(route);
        let id = || uuid::Uuid::from_u64_pair(1, 2).to_string();
        let valid = match route {
            0 => query_string(rng, &["site", "pathway", "delay_reason"]),
            1 => id(),
            2 => query_string(rng, &["service", "status", "page_token"]),
            3 => query_string(rng, &["organisation", "coordinator", "practitioner"]),
            _ => {
                let body = match rng.below(5) {
                    0 => String::new(),
                    1 => json!({"reason": "no capacity"}).to_string(),
                    2 => json!({"reason": 5}).to_string(),
                    3 => deep_json(rng.range(10, 3_000) as usize).to_string(),
                    _ => "{\"reason\": \"\\ud800\"}".to_owned(),
                };
                let decision = *rng.pick(&["accept", "reject", "maybe"]);
                format!("{}\0{}\0{decision}\0{body}", id(), id())
            }
        };
        text_input(rng, valid, out);
    }

    fn run(&self, input: &[u8]) -> Verdict {
        let Some((route, rest)) = input.split_first() else {
            return Verdict::Refused;
        };
        let text = lossy(rest);
        let headers = axum::http::HeaderMap::new();
        use carewoven_web::api as web;
        match route % 5 {
            0 => web_verdict(web::board_request(Some(&text), &headers)),
            1 => web_verdict(web::record_request(&text, &headers)),
            2 => web_verdict(web::inbox_request(Some(&text), &headers)),
            3 => web_verdict(web::caseload_request(Some(&text), &headers)),
            _ => {
                let mut parts = rest.splitn(4, |b| *b == 0);
                let person = lossy(parts.next().unwrap_or_default());
                let referral = lossy(parts.next().unwrap_or_default());
                let decision = lossy(parts.next().unwrap_or_default());
                let body = parts.next().unwrap_or_default();
                web_verdict(web::decision_request(&person, &referral, &decision, body))
            }
        }
    }
}
