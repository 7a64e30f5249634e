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

/// A replay in progress: pull the selected events one by one with [`Replay::next`].
pub struct Replay {
    selection: Selection,
    messages: Option<consumer::pull::Ordered>,
    state: Progress,
}

impl Replay {
    /// Check the selection, note where the log ends now, and position a reader.
    pub async fn start(
        js: &jetstream::Context,
        stream: &str,
        selection: &Selection,
    ) -> Result<Self> {
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
        let mut messages = None;
        if end >= start {
            let mut consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subjects: selection.server_filters(),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ..Default::default()
                })
                .await
                .context("creating an ordered consumer")?;
            if consumer
                .info()
                .await
                .context("reading the consumer")?
                .num_pending
                > 0
            {
                messages = Some(consumer.messages().await.context("reading the log")?);
            }
        }
        if messages.is_none() {
            state.position = end;
        }
        Ok(Replay {
            selection: selection.clone(),
            messages,
            state,
        })
    }

    pub fn progress(&self) -> Progress {
        self.state
    }

    /// The next selected event, or `None` at the end of the replay.
    pub async fn next(&mut self) -> Result<Option<RecordedEvent>> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                return Ok(None);
            };
            let Some(message) = messages.next().await else {
                self.finish();
                return Ok(None);
            };
            let message = message.map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if sequence > self.state.end {
                self.finish();
                return Ok(None);
            }
            self.state.position = sequence;
            if pending == 0 || sequence == self.state.end {
                self.finish();
            }
            if !self.selection.subject_matches(message.subject.as_str()) {
                continue;
            }
            let event = carewoven_eventlog::decode(sequence, &message.payload)?;
            if self.selection.matches(&event) {
                self.state.emitted += 1;
                return Ok(Some(event));
            }
        }
    }

    fn finish(&mut self) {
        self.messages = None;
        self.state.position = self.state.end;
    }
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
    let mut replay = Replay::start(js, stream, selection).await?;
    let mut last_report = 0;
    while let Some(event) = replay.next().await? {
        emit(event)?;
        let p = replay.progress();
        if p.position >= last_report + 10_000 {
            last_report = p.position;
            progress(&p);
        }
    }
    let done = replay.progress();
    progress(&done);
    Ok(done)
}
