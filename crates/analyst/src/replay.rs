//! Replay a slice of the log, in log order, from any position: the last position emitted is
//! the cursor to resume from.

use anyhow::{Context, Result};
use async_nats::jetstream;
use carewoven_domain::RecordedEvent;
use carewoven_eventlog::follow::{FollowOptions, Follower, LogMessage};
use tokio_util::sync::CancellationToken;

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
    follower: Option<Follower>,
    batch: std::collections::VecDeque<LogMessage>,
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
        let mut handle = js
            .get_stream(stream)
            .await
            .context("opening the event stream")?;
        let last = handle
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
        let mut follower = None;
        if end >= start {
            let mut f = Follower::open(
                js,
                stream,
                start,
                FollowOptions {
                    server_filters: selection.server_filters(),
                    ..FollowOptions::default()
                },
                "analyst replay",
                CancellationToken::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
            // Nothing selected at all: do not wait for events that are not there.
            if f.has_pending()
                .await
                .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?
            {
                follower = Some(f);
            }
        }
        if follower.is_none() {
            state.position = end;
        }
        Ok(Replay {
            selection: selection.clone(),
            follower,
            batch: std::collections::VecDeque::new(),
            state,
        })
    }

    pub fn progress(&self) -> Progress {
        self.state
    }

    /// The next selected event, or `None` at the end of the replay.
    pub async fn next(&mut self) -> Result<Option<RecordedEvent>> {
        loop {
            let message = match self.batch.pop_front() {
                Some(m) => m,
                None => {
                    let Some(follower) = self.follower.as_mut() else {
                        return Ok(None);
                    };
                    match follower.next_batch().await {
                        Some(b) => self.batch.extend(b.messages),
                        None => self.finish(),
                    }
                    continue;
                }
            };
            let (sequence, pending) = (message.sequence, message.pending);
            if sequence > self.state.end {
                self.finish();
                return Ok(None);
            }
            self.state.position = sequence;
            if pending == 0 || sequence == self.state.end {
                self.finish();
            }
            if !self.selection.subject_matches(&message.subject) {
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
        self.follower = None;
        self.batch.clear();
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
