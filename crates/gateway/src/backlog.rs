//! The feed backlog of partners that read durably from NATS: each partner's pull consumer
//! `<ORG>` on `CW_FEED` (`deploy/README.md`, "Partners"), sampled every
//! [`SAMPLE_INTERVAL`] into `carewoven_feed_consumer_backlog{partner}` (messages not yet
//! delivered plus delivered and not yet acknowledged). A registered organisation without
//! such a consumer has no sample. Organisation codes only: nothing about a person.

use std::time::Duration;

use async_nats::jetstream::stream;
use carewoven_access::AccessIndex;
use tokio_util::sync::CancellationToken;

/// How often the partners' consumers are looked at.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Sample until `stop`.
pub async fn run(access: AccessIndex, feed: stream::Stream<()>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let partners: Vec<String> = access.with(|g| {
            g.organisations()
                .map(|o| o.code.as_str().to_owned())
                .collect()
        });
        for partner in partners {
            // Not found (no durable reader) and a broker fault alike leave no sample.
            let Ok(info) = feed.consumer_info(&partner).await else {
                continue;
            };
            let backlog = info.num_pending + info.num_ack_pending as u64;
            metrics::gauge!("carewoven_feed_consumer_backlog", "partner" => partner)
                .set(backlog as f64);
        }
    }
}
