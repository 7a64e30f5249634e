//! Small holes, closed, end to end (real nats-server; the command service, the views and the
//! gateway over gRPC on loopback): callers' deadlines are capped, malformed and oversized
//! requests are refused with the right code, and tokens have a maximum lifetime.

#![allow(clippy::unwrap_used)]

use carewoven_access::grpc::with_token;
use carewoven_access::token::{AUDIENCE, Claims, testing};
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, feed_service_client::FeedServiceClient,
    query_service_client::QueryServiceClient,
};
use carewoven_testkit::*;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// NATS, the command service (standard organisations registered), the views and the gateway.
struct World {
    stack: Stack,
    views: Running,
    gateway: Running,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let Services {
            stack,
            views,
            gateway,
            dir,
            ..
        } = Services::start().await.unwrap();
        World {
            stack,
            views,
            gateway,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.gateway.stop().await.unwrap();
        self.views.stop().await.unwrap();
        self.stack.service.stop().await.unwrap();
    }

    /// A person admitted to HOSP-A (so HOSP-A may read their record); their id and the log
    /// position of the admission.
    async fn admitted(&mut self, n: u32) -> (String, u64) {
        let mut c = self.stack.client.clone();
        let person = register(&mut c, n).await.unwrap();
        let reply = c
            .admit_person(signed(v1::AdmitPersonRequest {
                context: ctx("HOSP-A"),
                person_id: person.clone(),
                site: "HOSP-A".into(),
                ward: "Ward 7".into(),
                admitted_at: ts_hours_ago(2),
            }))
            .await
            .unwrap()
            .into_inner();
        (person, reply.log_position)
    }
}

/// `message` as HOSP-A, with a raw `grpc-timeout` header.
fn with_timeout<T>(message: T, timeout: &str) -> tonic::Request<T> {
    let mut request = as_org("HOSP-A", message);
    request
        .metadata_mut()
        .insert("grpc-timeout", timeout.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_grpc_timeout_is_capped_not_a_panic() {
    let mut w = World::start().await;
    let (person, at) = w.admitted(1).await;
    let mut queries = QueryServiceClient::new(w.views.channel());
    let mut audit = AuditServiceClient::new(w.gateway.channel());
    // The largest timeout gRPC allows (8 digits of hours), and one beyond what it allows
    // (which once overflowed the views' deadline arithmetic).
    for (n, timeout) in (100..).zip(["99999999H", "99999999999999H", "18446744073709551615H"]) {
        let read = queries
            .get_care_record(with_timeout(
                v1::GetCareRecordRequest {
                    person_id: person.clone(),
                    min_log_position: at,
                },
                timeout,
            ))
            .await
            .unwrap_or_else(|s| panic!("views with grpc-timeout {timeout}: {s:?}"));
        assert_eq!(read.get_ref().person_id, person);
        let mut c = w.stack.client.clone();
        let mut command = signed(register_request(n));
        command
            .metadata_mut()
            .insert("grpc-timeout", timeout.parse().unwrap());
        c.register_person(command)
            .await
            .unwrap_or_else(|s| panic!("commands with grpc-timeout {timeout}: {s:?}"));
        audit
            .list_record_access(with_timeout(
                v1::ListRecordAccessRequest {
                    person_id: person.clone(),
                    ..Default::default()
                },
                timeout,
            ))
            .await
            .unwrap_or_else(|s| panic!("gateway with grpc-timeout {timeout}: {s:?}"));
    }
    w.stop().await;
}

/// A codec sending and receiving raw bytes: lets a test send what no generated client would.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, n).to_vec()))
    }
}

/// Call `path` with `body` as the request message, as HOSP-A (or without a token).
async fn raw_call(
    channel: &Channel,
    path: &'static str,
    body: &[u8],
    token: bool,
    streaming: bool,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body.to_vec());
    if token {
        request = with_token(request, &carewoven_testkit::partners::token("HOSP-A"));
    }
    let path = PathAndQuery::from_static(path);
    if streaming {
        match grpc.server_streaming(request, path, Raw).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                match stream.message().await {
                    Err(status) => status,
                    Ok(m) => panic!("a malformed request was answered: {m:?}"),
                }
            }
            Err(status) => status,
        }
    } else {
        grpc.unary(request, path, Raw)
            .await
            .expect_err("a malformed request was answered")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_body_is_invalid_argument_naming_the_request() {
    let w = World::start().await;
    let command_channel = Channel::from_shared(format!("http://{}", w.stack.service.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let views = w.views.channel();
    let gateway = w.gateway.channel();
    let before = w.stack.count().await;
    let calls: [(&Channel, &'static str, &str, bool); 5] = [
        (
            &command_channel,
            "/carewoven.v1.CommandService/RegisterPerson",
            "RegisterPersonRequest",
            false,
        ),
        (
            &views,
            "/carewoven.v1.QueryService/GetCareRecord",
            "GetCareRecordRequest",
            false,
        ),
        (
            &views,
            "/carewoven.v1.ViewsAdmin/Status",
            "ViewsStatusRequest",
            false,
        ),
        (
            &gateway,
            "/carewoven.v1.AuditService/ListRecordAccess",
            "ListRecordAccessRequest",
            false,
        ),
        (
            &gateway,
            "/carewoven.v1.FeedService/Subscribe",
            "SubscribeRequest",
            true,
        ),
    ];
    // An unterminated varint; a length-delimited field longer than the body.
    for garbage in [&b"\xff\xff\xff\xff"[..], &b"\x0a\x05\x01"[..]] {
        for (channel, path, name, streaming) in &calls {
            let status = raw_call(channel, path, garbage, true, *streaming).await;
            assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
            assert!(
                status.message().starts_with(&format!("{name}: ")),
                "{path}: names the request: {status:?}"
            );
            let violations = status.get_details_bad_request().unwrap().field_violations;
            assert_eq!(violations[0].field, *name, "{path}: {status:?}");
            // Without a token the body is not even looked at.
            let status = raw_call(channel, path, garbage, false, *streaming).await;
            assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
        }
    }
    assert_eq!(w.stack.count().await, before, "nothing appended");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_by_every_api() {
    let w = World::start().await;
    let huge = "x".repeat(carewoven_proto::MAX_REQUEST_BYTES + 1);
    let refused = |status: tonic::Status, what: &str| {
        assert!(
            matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{what}: {status:?}"
        );
    };
    let mut queries = QueryServiceClient::new(w.views.channel());
    let status = queries
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: huge.clone(),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap_err();
    refused(status, "QueryService");
    let status = queries
        .list_referral_inbox(as_org(
            "HOSP-A",
            v1::ListReferralInboxRequest {
                service: huge.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    refused(status, "QueryService inbox");
    let mut audit = AuditServiceClient::new(w.gateway.channel());
    let status = audit
        .list_record_access(as_org(
            "HOSP-A",
            v1::ListRecordAccessRequest {
                person_id: huge.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    refused(status, "AuditService");
    let mut feeds = FeedServiceClient::new(w.gateway.channel());
    let status = match feeds
        .subscribe(as_org(
            "HOSP-A",
            v1::SubscribeRequest {
                cursor: huge.clone(),
                after_number: 0,
            },
        ))
        .await
    {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    refused(status, "FeedService");
    // Just under the limit is decoded (and refused for what it says, not its size).
    let status = queries
        .get_care_record(as_org(
            "HOSP-A",
            v1::GetCareRecordRequest {
                person_id: "x".repeat(carewoven_proto::MAX_REQUEST_BYTES - 16),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    w.stop().await;
}

fn claims(org: &str, iat: u64, exp: u64) -> Claims {
    Claims {
        iss: testing::TEST_ISSUER.into(),
        sub: org.into(),
        aud: AUDIENCE.into(),
        exp,
        iat,
        nbf: None,
        user: Some("tester".into()),
        roles: vec![],
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn lifetime_refusal(status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "TOKEN_LIFETIME_TOO_LONG", "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_allowed_is_unauthenticated() {
    let mut w = World::start().await;
    let (person, at) = w.admitted(2).await;
    let issuer = testing::issuer();
    let now = now_secs();
    let hours = |h: u64| h * 3600;
    let long = issuer
        .sign(&claims("HOSP-A", now, now + hours(13)))
        .unwrap();
    let twelve = issuer
        .sign(&claims("HOSP-A", now, now + hours(12)))
        .unwrap();
    let before = w.stack.count().await;
    let mut c = w.stack.client.clone();
    let status = c
        .register_person(with_token(tonic::Request::new(register_request(3)), &long))
        .await
        .unwrap_err();
    lifetime_refusal(&status);
    assert_eq!(w.stack.count().await, before, "nothing appended");
    let read = |token: &str| {
        with_token(
            tonic::Request::new(v1::GetCareRecordRequest {
                person_id: person.clone(),
                min_log_position: at,
            }),
            token,
        )
    };
    let mut queries = QueryServiceClient::new(w.views.channel());
    lifetime_refusal(&queries.get_care_record(read(&long)).await.unwrap_err());
    let mut audit = AuditServiceClient::new(w.gateway.channel());
    let status = audit
        .list_record_access(with_token(
            tonic::Request::new(v1::ListRecordAccessRequest {
                person_id: person.clone(),
                ..Default::default()
            }),
            &long,
        ))
        .await
        .unwrap_err();
    lifetime_refusal(&status);
    // Twelve hours is the default limit, and accepted.
    queries.get_care_record(read(&twelve)).await.unwrap();
    c.register_person(with_token(
        tonic::Request::new(register_request(3)),
        &twelve,
    ))
    .await
    .unwrap();

    // The limit is a setting: an hour here, so a two-hour token is refused.
    let mut config = w.stack.config();
    config.service.access.max_token_lifetime_secs = hours(1);
    w.stack.restart_service(config).await.unwrap();
    let two = issuer.sign(&claims("HOSP-A", now, now + hours(2))).unwrap();
    let mut c = w.stack.client.clone();
    let status = c
        .register_person(with_token(tonic::Request::new(register_request(4)), &two))
        .await
        .unwrap_err();
    lifetime_refusal(&status);
    // The test tokens (an hour) are within it.
    c.register_person(signed(register_request(4)))
        .await
        .unwrap();
    w.stop().await;
}
