//! `carectl feed`: the acting organisation's partner feed (FeedService.Subscribe), each item
//! with its number and cursor, from the start or after a cursor or number.
//!
//! The gateway streams the stored items and then live ones without marking where the stored
//! ones end, so without `--follow` the live end is taken to be reached when no item has
//! arrived for `--idle-ms` (or after `--limit` items). Resuming with the last item's cursor
//! (or number) continues with the next item: no gap, no duplicate.

use std::process::ExitCode;
use std::time::Duration;

use carewoven_proto::v1::{self, feed_service_client::FeedServiceClient};

use super::show::{self, instant};
use super::{Failure, Reader, json, progress};
use crate::cli::FeedArgs;

/// Why reading stopped.
enum End {
    Idle,
    Limit,
    Closed,
    Interrupted,
}

pub async fn run(r: &Reader, a: FeedArgs) -> Result<ExitCode, Failure> {
    let mut client = FeedServiceClient::new(r.gateway().await?);
    let request = r.stream_request(
        v1::SubscribeRequest {
            cursor: a.cursor.clone().unwrap_or_default(),
            after_number: a.after.unwrap_or(0),
        },
        &[],
    )?;
    let mut items = client.subscribe(request).await?.into_inner();
    let idle = Duration::from_millis(a.idle_ms);
    let bar = progress::counter("feed items");
    let mut count = 0u64;
    let mut last: Option<(u64, String)> = None;
    let end = loop {
        if a.limit.is_some_and(|limit| count >= limit) {
            break End::Limit;
        }
        let wait = async {
            if a.follow {
                Ok(items.message().await)
            } else {
                tokio::time::timeout(idle, items.message()).await
            }
        };
        let next = tokio::select! {
            n = wait => match n {
                Ok(n) => n,
                Err(_) => break End::Idle,
            },
            _ = tokio::signal::ctrl_c() => break End::Interrupted,
        };
        let item = match next {
            Ok(Some(item)) => item,
            Ok(None) => break End::Closed,
            Err(status) => {
                bar.finish_and_clear();
                resume_hint(r, &last);
                return Err(Failure::Status(status));
            }
        };
        count += 1;
        bar.inc(1);
        let text = if r.json() {
            json::value(&item).map_err(Failure::Client)?.to_string()
        } else {
            line(&item)
        };
        bar.suspend(|| println!("{text}"));
        last = Some((item.number, item.cursor));
    };
    bar.finish_and_clear();
    if !r.json() {
        let why = match end {
            End::Idle => format!("the live end (no item for {}ms)", a.idle_ms),
            End::Limit => "--limit".to_owned(),
            End::Closed => "the gateway closing the feed".to_owned(),
            End::Interrupted => "Ctrl-C".to_owned(),
        };
        eprintln!("{count} item(s); stopped at {why}");
        resume_hint(r, &last);
    }
    Ok(ExitCode::SUCCESS)
}

/// Where to resume (human output only; stderr, which carries no personal data).
fn resume_hint(r: &Reader, last: &Option<(u64, String)>) {
    if let (false, Some((number, cursor))) = (r.json(), last) {
        eprintln!("last item {number}; resume with: carectl feed --cursor {cursor}");
    }
}

/// One item as a line: number, cursor, what and whom it is about.
pub fn line(item: &v1::FeedItem) -> String {
    let ids = item.identifiers.clone().unwrap_or_default();
    format!(
        "#{} {} person {} nhs {} {} {} v{} occurred {} log {} {} cursor {}",
        item.number,
        ids.event_type,
        ids.person_id,
        ids.nhs_number,
        ids.aggregate_kind,
        ids.aggregate_id,
        ids.version,
        instant(ids.occurred_at.as_ref()),
        item.log_position,
        show::disclosure(item.disclosure),
        item.cursor,
    )
}
