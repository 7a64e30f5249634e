//! The audit stream: who accessed which person's record, when, for what purpose, and with
//! what outcome. One protobuf `AuditEvent` per message on
//! `cw.audit.<person|none>.<organisation>.<action>`, in its own JetStream stream (`CW_AUDIT`,
//! file storage, no deletes, no purges), so "who accessed this person's record" is one
//! subject-filtered read.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use carewoven_governance::Identity;
use carewoven_proto::v1;
use prost::Message;
use uuid::Uuid;

pub const AUDIT_STREAM: &str = "CW_AUDIT";
pub const AUDIT_SUBJECTS: &str = "cw.audit.>";
/// The person token for accesses that name no person.
pub const NO_PERSON: &str = "none";
/// The organisation token for calls without a valid identity.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The subject filter for every access to one person's record.
pub fn person_filter(person: Uuid) -> String {
    format!("cw.audit.{person}.>")
}

fn action_token(action: v1::AuditAction) -> &'static str {
    match action {
        v1::AuditAction::Unspecified => "unspecified",
        v1::AuditAction::RecordRead => "record_read",
        v1::AuditAction::FeedDelivery => "feed_delivery",
        v1::AuditAction::AuditRead => "audit_read",
        v1::AuditAction::Command => "command",
        v1::AuditAction::FeedSubscribe => "feed_subscribe",
        v1::AuditAction::Replay => "replay",
    }
}

/// One access to record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub who: Option<Identity>,
    pub person: Option<Uuid>,
    pub action: v1::AuditAction,
    pub purpose: v1::Purpose,
    pub outcome: v1::AuditOutcome,
    pub reason: String,
    pub detail: String,
    pub log_position: u64,
    pub feed_number: u64,
    pub disclosure: v1::Disclosure,
}

impl AuditRecord {
    fn new(who: Option<&Identity>, person: Option<Uuid>, action: v1::AuditAction) -> Self {
        AuditRecord {
            who: who.cloned(),
            person,
            action,
            purpose: v1::Purpose::DirectCare,
            outcome: v1::AuditOutcome::Permitted,
            reason: String::new(),
            detail: String::new(),
            log_position: 0,
            feed_number: 0,
            disclosure: v1::Disclosure::Unspecified,
        }
    }

    /// A permitted access for individual care.
    pub fn permitted(who: &Identity, person: Option<Uuid>, action: v1::AuditAction) -> Self {
        Self::new(Some(who), person, action)
    }

    /// A refused access (`who` is `None` when the caller could not be identified).
    pub fn refused(
        who: Option<&Identity>,
        person: Option<Uuid>,
        action: v1::AuditAction,
        reason: &str,
    ) -> Self {
        AuditRecord {
            outcome: v1::AuditOutcome::Refused,
            reason: reason.to_owned(),
            ..Self::new(who, person, action)
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    fn organisation(&self) -> &str {
        self.who
            .as_ref()
            .map(|w| w.organisation.as_str())
            .unwrap_or(UNAUTHENTICATED)
    }

    pub fn subject(&self) -> String {
        let person = self
            .person
            .map(|p| p.to_string())
            .unwrap_or_else(|| NO_PERSON.to_owned());
        format!(
            "cw.audit.{person}.{}.{}",
            self.organisation(),
            action_token(self.action)
        )
    }

    pub fn to_event(&self) -> v1::AuditEvent {
        let now = chrono::Utc::now();
        v1::AuditEvent {
            audit_id: Uuid::now_v7().to_string(),
            at: Some(carewoven_proto::convert::timestamp(now)),
            organisation: self.organisation().to_owned(),
            user: self
                .who
                .as_ref()
                .and_then(|w| w.user.as_ref())
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
            person_id: self.person.map(|p| p.to_string()).unwrap_or_default(),
            action: self.action as i32,
            purpose: self.purpose as i32,
            outcome: self.outcome as i32,
            reason: self.reason.clone(),
            detail: self.detail.clone(),
            log_position: self.log_position,
            feed_number: self.feed_number,
            disclosure: self.disclosure as i32,
        }
    }
}

/// Writes to and reads from the audit stream.
#[derive(Clone)]
pub struct AuditLog {
    js: jetstream::Context,
    stream: stream::Stream<()>,
    timeout: Duration,
}

impl AuditLog {
    fn stream_config(replicas: usize) -> stream::Config {
        stream::Config {
            name: AUDIT_STREAM.to_owned(),
            subjects: vec![AUDIT_SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Create or update the audit stream: for the stream's owner, the command service.
    pub async fn open(
        client: async_nats::Client,
        replicas: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let created = js
            .create_or_update_stream(Self::stream_config(replicas))
            .await
            .context("creating the audit stream")?;
        Self::handle(js, created.config.name, timeout).await
    }

    /// Use the audit stream, creating it (never updating it) if it does not exist yet: for
    /// the services that only append to it (views, gateway, analyst). Their NATS identities
    /// may create the stream but not change it (deploy/accounts.conf), since an update could
    /// lower its limits and so remove records.
    pub async fn attach(
        client: async_nats::Client,
        replicas: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let missing = match js.get_stream(AUDIT_STREAM).await {
            Ok(_) => false,
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    true
                }
                _ => return Err(e).context("opening the audit stream"),
            },
        };
        if missing {
            // Another service may create it at the same time: then it exists, and that
            // is all this needs.
            if let Err(create) = js.create_stream(Self::stream_config(replicas)).await {
                js.get_stream(AUDIT_STREAM)
                    .await
                    .with_context(|| format!("creating the audit stream: {create}"))?;
            }
        }
        Self::handle(js, AUDIT_STREAM.to_owned(), timeout).await
    }

    async fn handle(
        js: jetstream::Context,
        name: String,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let stream = js
            .get_stream_no_info(name)
            .await
            .context("opening the audit stream")?;
        Ok(AuditLog {
            js,
            stream,
            timeout,
        })
    }

    /// Record one access and wait until it is stored: a read is answered only once its
    /// audit is durable.
    pub async fn record(&self, record: &AuditRecord) -> Result<u64, tonic::Status> {
        let ack = self.publish(record).await?;
        let ack = tokio::time::timeout(self.timeout, ack)
            .await
            .map_err(|_| tonic::Status::unavailable("the audit stream did not acknowledge"))?
            .map_err(|e| tonic::Status::unavailable(format!("the audit stream: {e}")))?;
        Ok(ack.sequence)
    }

    /// Record a refusal, best effort: the refusal stands even if the audit stream cannot be
    /// reached (nothing was disclosed or changed), so a failure is only logged.
    pub async fn record_refusal(&self, record: &AuditRecord) {
        if let Err(e) = self.record(record).await {
            tracing::warn!(
                action = action_token(record.action),
                detail = %record.detail,
                error = %e.message(),
                "could not audit a refusal"
            );
        }
    }

    /// Send one record; the returned future resolves when it is stored.
    pub async fn publish(&self, record: &AuditRecord) -> Result<PublishAckFuture, tonic::Status> {
        self.js
            .publish(record.subject(), record.to_event().encode_to_vec().into())
            .await
            .map_err(|e| tonic::Status::unavailable(format!("the audit stream: {e}")))
    }

    /// Every access to `person`'s record after audit position `after`, oldest first, at
    /// most `limit`; and whether more follow.
    pub async fn for_person(
        &self,
        person: Uuid,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<(Vec<(u64, v1::AuditEvent)>, bool)> {
        use futures::StreamExt;
        let info = self.stream.clone().get_info().await?;
        let last = info.state.last_sequence;
        if after >= last {
            return Ok((Vec::new(), false));
        }
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: person_filter(person),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await?;
        let mut consumer = consumer;
        if consumer.info().await?.num_pending == 0 {
            return Ok((Vec::new(), false));
        }
        let mut messages = consumer.messages().await?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(self.timeout, messages.next()).await;
            let Ok(Some(message)) = next else { break };
            let message = message?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let sequence = info.stream_sequence;
            let pending = info.pending;
            out.push((sequence, v1::AuditEvent::decode(message.payload.as_ref())?));
            if out.len() > limit {
                out.truncate(limit);
                return Ok((out, true));
            }
            if pending == 0 {
                break;
            }
        }
        Ok((out, false))
    }
}
