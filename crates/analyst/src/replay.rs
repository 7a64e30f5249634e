//! Replay a slice of the log, in log order, from any position: the last position emitted is
//! the cursor to resume from.

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use carewoven_domain::RecordedEvent;
use futures::StreamExt;

use crate::selection::Selection;

#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Last log position looked at.
    pub position: u64,
    /// Where this replay ends.
    pub end: u64,
    /// Events selected so far.
    pub emitted: u64,
}

/// Replay `selection`, calling `emit` for each selected event in log order and `progress`
/// now and then. Ends at the selection's end, or at the log's end when the replay started.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    selection: &Selection,
    mut emit: impl FnMut(RecordedEvent) -> Result<()>,
    mut progress: impl FnMut(&Progress),
) -> Result<Progress> {
    selection.validate()?;
    let mut stream = js
        .get_stream(stream)
        .await
        .context("opening the event stream")?;
    let last = stream
        .info()
        .await
        .context("reading the log's end")?
        .state
        .last_sequence;
    let start = selection.from_sequence.max(1);
    let end = selection.to_sequence.map_or(last, |t| t.min(last));
    let mut state = Progress {
        position: start.saturating_sub(1),
        end,
        emitted: 0,
    };
    if end < start {
        progress(&state);
        return Ok(state);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: selection.subject_filters(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer")?;
    let mut consumer = consumer;
    if consumer
        .info()
        .await
        .context("reading the consumer")?
        .num_pending
        == 0
    {
        state.position = end;
        progress(&state);
        return Ok(state);
    }
    let mut messages = consumer.messages().await.context("reading the log")?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let sequence = info.stream_sequence;
        let pending = info.pending;
        if sequence > end {
            break;
        }
        let event = carewoven_eventlog::decode(sequence, &message.payload)?;
        state.position = sequence;
        if selection.matches(&event) {
            emit(event)?;
            state.emitted += 1;
        }
        if sequence.is_multiple_of(1000) || pending == 0 {
            progress(&state);
        }
        if pending == 0 || sequence == end {
            break;
        }
    }
    state.position = end;
    progress(&state);
    Ok(state)
}
