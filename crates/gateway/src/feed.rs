//! `FeedService.Subscribe`: a partner's own feed over gRPC server streaming, resumable by
//! cursor or number; and `AuditService.ListRecordAccess`.
//!
//! A cursor is `v1.<number>.<hex HMAC>` where the HMAC (keyed with the gateway's cursor key)
//! covers the organisation and the number: a partner cannot forge one, nor use another
//! partner's. Each subscription reads the feed stream with its own pull consumer and a small
//! bounded channel, so a slow or stalled subscriber holds back only itself. A stored message
//! carries several consecutive items (`FeedBatch`); resuming after a number inside one starts
//! at that message and skips the items up to the number, so nothing is missed or repeated.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use carewoven_access::audit::AuditRecord;
use carewoven_access::grpc::{permission_denied, unauthenticated};
use carewoven_access::{AccessIndex, AuditLog, Authenticator};
use carewoven_governance::{Denial, Identity, Role};
use carewoven_proto::v1::{
    self, audit_service_server::AuditService, feed_service_server::FeedService,
};
use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::access_list::AccessList;
use crate::evaluator::{
    FeedHead, NUMBER_HEADER, decode_batch, feed_filter, feed_head, feed_subject,
};

/// Items buffered per subscriber before its reader waits.
const SUBSCRIBER_BUFFER: usize = 64;

#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl CursorKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        CursorKey(key.into())
    }

    fn mac(&self, org: &str, number: u64) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"carewoven.cursor.v1:");
        mac.update(org.as_bytes());
        mac.update(b":");
        mac.update(&number.to_be_bytes());
        mac
    }

    pub fn cursor(&self, org: &str, number: u64) -> String {
        let tag = self.mac(org, number).finalize().into_bytes();
        let hex: String = tag[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("v1.{number}.{hex}")
    }

    /// The number a cursor stands for, if this gateway issued it to `org`.
    pub fn verify(&self, org: &str, cursor: &str) -> Option<u64> {
        let mut parts = cursor.trim().split('.');
        let (Some("v1"), Some(number), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let number: u64 = number.parse().ok()?;
        if hex.len() != 32 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..16)
            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect();
        self.mac(org, number)
            .verify_truncated_left(&bytes?)
            .ok()
            .map(|()| number)
    }
}

#[derive(Clone)]
pub struct Feeds {
    pub auth: Authenticator,
    pub access: AccessIndex,
    pub audit: AuditLog,
    pub access_list: AccessList,
    pub feed: stream::Stream<()>,
    pub cursors: CursorKey,
    /// Rest-hook deliveries, for `GetFeedStatus`.
    pub hooks: crate::rest_hook::Hooks,
    pub deadline: Duration,
    /// Subscriptions end when this is cancelled (shutdown).
    pub stop: tokio_util::sync::CancellationToken,
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<v1::FeedItem, Status>> + Send>>;

impl Feeds {
    async fn identify<T>(
        &self,
        request: &Request<T>,
        action: v1::AuditAction,
    ) -> Result<Identity, Status> {
        match self.auth.identify(request.metadata()) {
            Ok(identity) => Ok(identity),
            Err(e) => {
                let record = AuditRecord::refused(None, None, action, e.reason())
                    .caller(request.remote_addr().map(|a| a.ip()));
                self.audit.record_refusal(&record).await;
                Err(unauthenticated(&e))
            }
        }
    }

    /// Refuses (audited) an organisation that is not registered.
    async fn registered(&self, who: &Identity, action: v1::AuditAction) -> Result<(), Status> {
        let org = who.organisation.as_str();
        let registered = self
            .access
            .check(self.deadline, |g| {
                g.organisation(&who.organisation)
                    .map(|_| ())
                    .ok_or_else(|| {
                        Denial::new(
                            "ORGANISATION_NOT_REGISTERED",
                            format!("organisation {org} is not registered"),
                        )
                    })
            })
            .await;
        match registered {
            Ok(()) => Ok(()),
            Err(carewoven_access::AccessError::Denied(d)) => {
                Err(self.refuse(who, None, action, d).await)
            }
            Err(e) => Err(e.to_status()),
        }
    }

    async fn refuse(
        &self,
        who: &Identity,
        person: Option<Uuid>,
        action: v1::AuditAction,
        denial: Denial,
    ) -> Status {
        self.audit
            .record_refusal(&AuditRecord::refused(
                Some(who),
                person,
                action,
                denial.audit_reason(),
            ))
            .await;
        permission_denied(&denial)
    }
}

#[tonic::async_trait]
impl FeedService for Feeds {
    type SubscribeStream = ItemStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let action = v1::AuditAction::FeedSubscribe;
        let who = self.identify(&request, action).await?;
        let org = who.organisation.as_str().to_owned();
        self.registered(&who, action).await?;
        let req = request.get_ref();
        let after = if !req.cursor.is_empty() {
            if req.after_number != 0 {
                return Err(Status::invalid_argument(
                    "after_number: give either cursor or after_number, not both",
                ));
            }
            self.cursors.verify(&org, &req.cursor).ok_or_else(|| {
                Status::invalid_argument(
                    "cursor: not a cursor this gateway issued to your organisation",
                )
            })?
        } else {
            req.after_number
        };
        let head = feed_head(&self.feed, &org)
            .await
            .map_err(|e| Status::unavailable(format!("the feed stream: {e:#}")))?;
        if after > head.number {
            return Err(Status::out_of_range(format!(
                "cursor: item {after} is beyond the end of your feed (its last item is {})",
                head.number
            )));
        }
        let mut messages = messages_after(&self.feed, &org, after, head)
            .await
            .map_err(|e| Status::unavailable(format!("the feed stream: {e:#}")))?;
        let mut record = AuditRecord::permitted(&who, None, action);
        record.feed_number = after;
        self.audit.record(&record).await?;
        tracing::info!(organisation = %org, after, "feed subscription");

        let (tx, rx) = tokio::sync::mpsc::channel(SUBSCRIBER_BUFFER);
        let cursors = self.cursors.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            // Operators' gauges, by organisation code (never anything about a person).
            let _open = OpenSubscription::new(&org);
            let backlog =
                metrics::gauge!("carewoven_feed_backlog_batches", "partner" => org.clone());
            let mut expected = after + 1;
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable(
                            "the gateway is shutting down; resume from your last cursor",
                        ))).await;
                        return;
                    }
                };
                if let Some(Ok(message)) = &next
                    && let Ok(info) = message.info()
                {
                    backlog.set(info.pending as f64);
                }
                let items = match next {
                    Some(Ok(message)) => decode_items(&message, &org, expected, &cursors),
                    Some(Err(e)) => Err(Status::unavailable(format!("the feed stream: {e}"))),
                    None => Err(Status::unavailable("the feed stream ended")),
                };
                let items = match items {
                    Ok(items) => items,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for item in items {
                    expected = item.number + 1;
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_feed_status(
        &self,
        request: Request<v1::GetFeedStatusRequest>,
    ) -> Result<Response<v1::FeedStatus>, Status> {
        // Nothing about a person is read: the feed's length and the caller's own delivery.
        let action = v1::AuditAction::FeedSubscribe;
        let who = self.identify(&request, action).await?;
        self.registered(&who, action).await?;
        let org = who.organisation.as_str().to_owned();
        let head = feed_head(&self.feed, &org)
            .await
            .map_err(|e| Status::unavailable(format!("the feed stream: {e:#}")))?;
        Ok(Response::new(v1::FeedStatus {
            rest_hook: self.hooks.status(&org),
            organisation: org,
            last_number: head.number,
        }))
    }
}

/// An open subscription, counted in `carewoven_feed_subscriptions_open` while it lives.
struct OpenSubscription(metrics::Gauge);

impl OpenSubscription {
    fn new(org: &str) -> Self {
        let gauge =
            metrics::gauge!("carewoven_feed_subscriptions_open", "partner" => org.to_owned());
        gauge.increment(1.0);
        OpenSubscription(gauge)
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// `org`'s stored feed messages from the one holding item `after + 1` (`after` at most the
/// feed's last item `head.number`), then live, on an ordered consumer of their own.
pub(crate) async fn messages_after(
    feed: &stream::Stream<()>,
    org: &str,
    after: u64,
    head: FeedHead,
) -> anyhow::Result<consumer::pull::Ordered> {
    let deliver_policy = if after == 0 {
        consumer::DeliverPolicy::All
    } else {
        let start_sequence = message_after(feed, org, after, head).await?;
        consumer::DeliverPolicy::ByStartSequence { start_sequence }
    };
    let consumer = feed
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: feed_filter(org),
            deliver_policy,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// The stream sequence to read `org`'s feed from to resume after item `after` (at most the
/// feed's last item `head.number`): just after the message whose last item it is, or else
/// the message holding it (found by bisection over the feed stream, a few direct gets).
async fn message_after(
    feed: &stream::Stream<()>,
    org: &str,
    after: u64,
    head: FeedHead,
) -> anyhow::Result<u64> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    if after == head.number {
        return Ok(head.stream_sequence + 1);
    }
    match feed
        .direct_get_last_for_subject(feed_subject(org, after))
        .await
    {
        Ok(m) => return Ok(m.sequence + 1),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // The first of org's messages whose last item is at least `after + 1`.
    let filter = feed_filter(org);
    let (mut lo, mut hi) = (1u64, head.stream_sequence);
    let mut found = head.stream_sequence;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let m = feed
            .direct_get_next_for_subject(filter.clone(), Some(mid))
            .await?;
        let last: u64 = m
            .headers
            .get(NUMBER_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("a feed message without a {NUMBER_HEADER} header"))?;
        if last > after {
            found = m.sequence;
            hi = mid - 1; // mid >= lo >= 1
        } else {
            lo = m.sequence + 1;
        }
    }
    Ok(found)
}

/// The items of one stored feed message from `expected` on (earlier ones, in the message a
/// resumed subscription starts with, were received already), each with its cursor.
pub(crate) fn decode_items(
    message: &async_nats::jetstream::Message,
    org: &str,
    expected: u64,
    cursors: &CursorKey,
) -> Result<Vec<v1::FeedItem>, Status> {
    decode_feed_message(
        message.headers.as_ref(),
        message.payload.as_ref(),
        org,
        expected,
        cursors,
    )
}

/// [`decode_items`] of a stored message's headers and payload.
pub fn decode_feed_message(
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    org: &str,
    expected: u64,
    cursors: &CursorKey,
) -> Result<Vec<v1::FeedItem>, Status> {
    let batch = decode_batch(headers, payload)
        .map_err(|e| Status::data_loss(format!("an undecodable feed message: {e}")))?;
    let header: Option<u64> = headers
        .and_then(|h| h.get(NUMBER_HEADER))
        .and_then(|v| v.as_str().parse().ok());
    // Checked arithmetic: a stored message is not trusted to keep its numbers below
    // u64::MAX (an overflow would panic in a build with overflow checks, or wrap).
    let consecutive = batch
        .items
        .iter()
        .enumerate()
        .all(|(i, item)| batch.first.checked_add(i as u64) == Some(item.number));
    let span = match batch.last.checked_sub(batch.first) {
        Some(d) => d.checked_add(1),
        None => Some(0),
    };
    let whole = consecutive && Some(batch.items.len() as u64) == span && header == Some(batch.last);
    if !whole || batch.first > expected || batch.last < expected {
        // Never hand a subscriber a gap or a repeat: end the stream; resuming finds it.
        return Err(Status::aborted(format!(
            "feed items {}..{} found where {expected} was expected; resume from your last cursor",
            batch.first, batch.last
        )));
    }
    Ok(batch
        .items
        .into_iter()
        .filter(|item| item.number >= expected)
        .map(|mut item| {
            item.cursor = cursors.cursor(org, item.number);
            item
        })
        .collect())
}

#[tonic::async_trait]
impl AuditService for Feeds {
    async fn list_record_access(
        &self,
        request: Request<v1::ListRecordAccessRequest>,
    ) -> Result<Response<v1::RecordAccessPage>, Status> {
        let action = v1::AuditAction::AuditRead;
        let who = self.identify(&request, action).await?;
        let req = request.get_ref();
        let own = carewoven_access::citizen::own_record(
            &self.access,
            &who,
            &req.person_id,
            self.deadline,
        )
        .await?;
        let person = match own {
            Some(own) => own,
            None => Uuid::parse_str(req.person_id.trim())
                .map_err(|_| Status::invalid_argument("person_id: must be a UUID"))?,
        };
        let limit = page_limit(req.limit)?;
        // The person themself (or their proxy), an organisation caring for them, or
        // governance (subject access requests).
        if !who.has(Role::Governance) {
            let allowed = self
                .access
                .check(self.deadline, |g| {
                    g.may_list_record_access(&who, person, chrono::Utc::now())
                })
                .await;
            if let Err(e) = allowed {
                return Err(match e {
                    carewoven_access::AccessError::Denied(d) => {
                        self.refuse(&who, Some(person), action, d).await
                    }
                    e => e.to_status(),
                });
            }
        }
        self.access_list
            .current(self.deadline)
            .await
            .map_err(|e| Status::unavailable(format!("the access list: {e:#}")))?;
        let (entries, more) = self
            .access_list
            .for_person(person, req.after, req.after_delivery, limit)
            .map_err(|e| Status::unavailable(format!("the access list: {e:#}")))?;
        let detail = self
            .access
            .with(|g| carewoven_access::citizen::audit_detail(g, &who, person, "ListRecordAccess"));
        self.audit
            .record(&AuditRecord::permitted(&who, Some(person), action).detail(detail))
            .await?;
        Ok(Response::new(v1::RecordAccessPage {
            entries: entries
                .into_iter()
                .map(|e| v1::RecordAccessEntry {
                    position: e.position,
                    event: Some(e.event),
                    delivery_position: e.delivery_position,
                })
                .collect(),
            more,
        }))
    }

    async fn list_emergency_access(
        &self,
        request: Request<v1::ListEmergencyAccessRequest>,
    ) -> Result<Response<v1::EmergencyAccessPage>, Status> {
        let action = v1::AuditAction::AuditRead;
        let who = self.identify(&request, action).await?;
        let req = request.get_ref();
        let limit = page_limit(req.limit)?;
        if !who.has(Role::Governance) {
            let denial = Denial::new(
                "GOVERNANCE_ROLE_REQUIRED",
                "only the governance role reviews emergency access",
            );
            return Err(self.refuse(&who, None, action, denial).await);
        }
        // Current with the log's end, so a review sees every assertion made so far.
        self.access
            .catch_up(self.deadline)
            .await
            .map_err(|e| e.to_status())?;
        let now = chrono::Utc::now();
        let (entries, more) = self.access.with(|g| {
            let mut after = g
                .emergency_accesses()
                .iter()
                .filter(|e| e.position > req.after);
            let entries: Vec<v1::EmergencyAccessEntry> = after
                .by_ref()
                .take(limit)
                .map(|e| v1::EmergencyAccessEntry {
                    person_id: e.person.to_string(),
                    organisation: e.organisation.as_str().to_owned(),
                    asserted_at: Some(carewoven_proto::convert::timestamp(e.asserted_at)),
                    expires_at: Some(carewoven_proto::convert::timestamp(e.expires_at)),
                    log_position: e.position,
                    in_force: now < e.expires_at,
                })
                .collect();
            (entries, after.next().is_some())
        });
        self.audit
            .record(&AuditRecord::permitted(&who, None, action).detail("ListEmergencyAccess"))
            .await?;
        Ok(Response::new(v1::EmergencyAccessPage { entries, more }))
    }
}

/// A listing's `limit`: 0 means 100, at most 1000.
fn page_limit(raw: u32) -> Result<usize, Status> {
    match raw {
        0 => Ok(100),
        n if n > 1000 => Err(Status::invalid_argument("limit: at most 1000")),
        n => Ok(n as usize),
    }
}
