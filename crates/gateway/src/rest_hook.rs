//! Rest-hook delivery of partners' feeds as FHIR notifications (HL7 Subscriptions R5
//! Backport, R4 shape: `carewoven_fhir::subscription`).
//!
//! The operator names each partner's endpoint in a JSON file (`--rest-hooks`: `{"ORG":
//! "http://host:port/path"}`). One task per partner follows its feed from the last number the
//! endpoint acknowledged (kept in a redb file, `--rest-hook-state`) and POSTs one
//! `event-notification` Bundle per item (`application/fhir+json`), in number order. A
//! notification that fails (no connection, a timeout, any status but 2xx) is sent again after
//! an exponential backoff up to a cap, for ever: nothing is skipped, the next item waits.
//! Meanwhile the partner's status (`FeedService.GetFeedStatus`, hence `Subscription.status`
//! and `$status`) says `failing` with the error count and the last error, and
//! `carewoven_rest_hook_backlog{partner}` counts the items not yet acknowledged. The number
//! is stored after the endpoint's 2xx, so a crash between the two sends that item again: at
//! least once across a crash (exactly once across a graceful restart); the partner dedupes by
//! `event-number`. Metric labels are organisation codes only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::stream;
use bytes::Bytes;
use carewoven_proto::v1;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio_util::sync::CancellationToken;

use crate::evaluator::feed_head;
use crate::feed::{CursorKey, decode_items, messages_after};

/// Per partner: the last number its endpoint acknowledged.
const DELIVERED: TableDefinition<&str, u64> = TableDefinition::new("delivered");
/// How long one POST may take before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// The partners' delivery status, shared with `FeedService.GetFeedStatus`.
#[derive(Clone, Default)]
pub struct Hooks(Arc<Mutex<BTreeMap<String, v1::RestHookStatus>>>);

impl Hooks {
    /// `org`'s delivery status (none: no endpoint configured for it).
    pub fn status(&self, org: &str) -> Option<v1::RestHookStatus> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(org)
            .cloned()
    }

    fn update(&self, org: &str, change: impl FnOnce(&mut v1::RestHookStatus)) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(all.entry(org.to_owned()).or_default());
    }
}

/// Backoff between attempts: doubling from `initial`, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub initial: Duration,
    pub max: Duration,
}

/// The operator's endpoints: organisation code → `http://` URL.
pub fn read_endpoints(path: &Path) -> anyhow::Result<BTreeMap<String, http::Uri>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the rest-hook endpoints {}", path.display()))?;
    parse_endpoints(&text, &path.display())
}

/// The endpoints file's text (`file` names it in errors), parsed and checked.
pub fn parse_endpoints(
    text: &str,
    file: &dyn std::fmt::Display,
) -> anyhow::Result<BTreeMap<String, http::Uri>> {
    let raw: BTreeMap<String, String> = serde_json::from_str(text)
        .with_context(|| format!("{file}: expected a JSON object of organisation code to URL"))?;
    raw.into_iter()
        .map(|(org, url)| {
            anyhow::ensure!(
                !org.is_empty() && org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "{file}: {org:?} is not an organisation code"
            );
            let uri: http::Uri = url
                .parse()
                .with_context(|| format!("{file}: {org}: {url:?} is not a URL"))?;
            anyhow::ensure!(
                uri.scheme_str() == Some("http") && uri.host().is_some(),
                "{file}: {org}: only http:// endpoints are supported"
            );
            Ok((org, uri))
        })
        .collect()
}

/// What every partner's delivery task shares.
#[derive(Clone)]
pub struct Delivery {
    pub feed: stream::Stream<()>,
    pub hooks: Hooks,
    pub cursors: CursorKey,
    pub retry: Retry,
    /// The FHIR API's base URL, for the notifications' `fullUrl`s.
    pub fhir_base: String,
    state: Arc<Database>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Delivery {
    /// Opens (or makes) the state file.
    pub fn open(
        feed: stream::Stream<()>,
        hooks: Hooks,
        cursors: CursorKey,
        retry: Retry,
        fhir_base: String,
        state: &Path,
    ) -> anyhow::Result<Self> {
        let db = Database::create(state)
            .with_context(|| format!("opening the rest-hook state {}", state.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(DELIVERED)?;
        txn.commit()?;
        Ok(Delivery {
            feed,
            hooks,
            cursors,
            retry,
            fhir_base,
            state: Arc::new(db),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    fn delivered(&self, org: &str) -> anyhow::Result<u64> {
        let txn = self.state.begin_read()?;
        let table = txn.open_table(DELIVERED)?;
        Ok(table.get(org)?.map_or(0, |v| v.value()))
    }

    fn store(&self, org: &str, number: u64) -> anyhow::Result<()> {
        let txn = self.state.begin_write()?;
        txn.open_table(DELIVERED)?.insert(org, number)?;
        txn.commit()?;
        Ok(())
    }

    /// Deliver `org`'s feed to `endpoint` until `stop`.
    pub async fn run(self, org: String, endpoint: http::Uri, stop: CancellationToken) {
        let backlog = metrics::gauge!("carewoven_rest_hook_backlog", "partner" => org.clone());
        let failures =
            metrics::counter!("carewoven_rest_hook_failures_total", "partner" => org.clone());
        let delivered_total =
            metrics::counter!("carewoven_rest_hook_delivered_total", "partner" => org.clone());
        let mut delay = self.retry.initial;
        let fail = |delay: &mut Duration, error: String| {
            tracing::warn!(organisation = %org, %error, "rest-hook delivery failed; retrying");
            failures.increment(1);
            self.hooks.update(&org, |s| {
                s.failing = true;
                s.consecutive_errors += 1;
                s.total_errors += 1;
                s.last_error = error;
                s.last_error_at = Some(carewoven_proto::convert::timestamp(chrono::Utc::now()));
            });
            let wait = *delay;
            *delay = (*delay * 2).min(self.retry.max);
            wait
        };
        self.hooks
            .update(&org, |s| s.endpoint = endpoint.to_string());
        loop {
            // (Re)start from what the endpoint acknowledged last.
            let started = async {
                let delivered = self.delivered(&org)?;
                let head = feed_head(&self.feed, &org).await?;
                anyhow::ensure!(
                    delivered <= head.number,
                    "the feed ends at {} but the endpoint acknowledged {delivered}: the feed stream lost items",
                    head.number
                );
                let messages = messages_after(&self.feed, &org, delivered, head).await?;
                Ok((delivered, head.number, messages))
            }
            .await;
            let (mut delivered, mut known, mut messages) = match started {
                Ok(s) => s,
                Err(e) => {
                    let wait = fail(&mut delay, format!("{e:#}"));
                    if pause(wait, &stop).await {
                        return;
                    }
                    continue;
                }
            };
            self.hooks.update(&org, |s| s.delivered_number = delivered);
            backlog.set(known.saturating_sub(delivered) as f64);
            'read: loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = stop.cancelled() => return,
                };
                let items = match next {
                    Some(Ok(message)) => decode_items(&message, &org, delivered + 1, &self.cursors)
                        .map_err(|s| s.message().to_owned()),
                    Some(Err(e)) => Err(format!("the feed stream: {e}")),
                    None => Err("the feed stream ended".to_owned()),
                };
                let items = match items {
                    Ok(items) => items,
                    Err(e) => {
                        let wait = fail(&mut delay, e);
                        if pause(wait, &stop).await {
                            return;
                        }
                        break 'read;
                    }
                };
                for item in items {
                    known = known.max(item.number);
                    backlog.set(known.saturating_sub(delivered) as f64);
                    let status = v1::FeedStatus {
                        organisation: org.clone(),
                        last_number: known,
                        rest_hook: self.hooks.status(&org),
                    };
                    let body = carewoven_fhir::subscription::notification(
                        &self.fhir_base,
                        &status,
                        carewoven_fhir::subscription::Kind::EventNotification,
                        item.number,
                        std::slice::from_ref(&item),
                    );
                    let body = Bytes::from(body.to_string());
                    // Until the endpoint takes it: nothing after it goes first.
                    loop {
                        match self.post(&endpoint, body.clone()).await {
                            Ok(()) => break,
                            Err(e) => {
                                let wait = fail(&mut delay, e);
                                if let Ok(head) = feed_head(&self.feed, &org).await {
                                    known = known.max(head.number);
                                    backlog.set(known.saturating_sub(delivered) as f64);
                                }
                                if pause(wait, &stop).await {
                                    return;
                                }
                            }
                        }
                    }
                    if let Err(e) = self.store(&org, item.number) {
                        // Delivered but not remembered: it would be sent again after a
                        // restart; say so, and keep going (at least once).
                        tracing::error!(organisation = %org, error = %format!("{e:#}"), "rest-hook state not stored");
                    }
                    delivered = item.number;
                    delivered_total.increment(1);
                    delay = self.retry.initial;
                    self.hooks.update(&org, |s| {
                        s.delivered_number = delivered;
                        s.failing = false;
                        s.consecutive_errors = 0;
                    });
                    backlog.set(known.saturating_sub(delivered) as f64);
                }
            }
        }
    }

    /// One POST; Ok on a 2xx answer.
    async fn post(&self, endpoint: &http::Uri, body: Bytes) -> Result<(), String> {
        let request = http::Request::post(endpoint.clone())
            .header(http::header::CONTENT_TYPE, carewoven_fhir::FHIR_JSON)
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let answer = tokio::time::timeout(POST_TIMEOUT, async {
            let response = self.client.request(request).await.map_err(|e| {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                text
            })?;
            let status = response.status();
            // Read the answer through, so the connection can be used again.
            let _ = response.into_body().collect().await;
            Ok::<_, String>(status)
        })
        .await
        .map_err(|_| format!("no answer within {POST_TIMEOUT:?}"))??;
        if answer.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered HTTP {answer}"))
        }
    }
}

/// Wait `wait` unless `stop` comes first (then true).
async fn pause(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.cancelled() => true,
    }
}
