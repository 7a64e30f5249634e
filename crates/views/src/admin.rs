//! Rebuild from the start of the log into a fresh file, then swap it in without stopping
//! queries. Interrupted (the caller goes away, or the service stops), the fresh file keeps
//! its position and the next rebuild resumes from it. Only callers with the governance role
//! may rebuild or ask for the status.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use async_nats::jetstream;
use carewoven_proto::v1::{self, views_admin_server::ViewsAdmin};
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use carewoven_eventlog::follow::{FollowOptions, Follower};
use tokio_util::sync::CancellationToken;

use crate::guard::Guard;
use crate::projector::{LogMessage, MAX_BATCH, OnUndecodable, apply_batch};
use crate::state::Views;
use crate::store;

pub fn rebuild_path(live: &std::path::Path) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(".rebuild");
    PathBuf::from(name)
}

pub struct Admin {
    views: Arc<Views>,
    js: jetstream::Context,
    stream: String,
    on_undecodable: OnUndecodable,
    running: Arc<tokio::sync::Mutex<()>>,
    /// Only callers with the governance role may rebuild or ask for the status.
    guard: Guard,
}

impl Admin {
    pub fn new(
        views: Arc<Views>,
        js: jetstream::Context,
        stream: String,
        on_undecodable: OnUndecodable,
        guard: Guard,
    ) -> Self {
        Admin {
            views,
            js,
            stream,
            on_undecodable,
            running: Arc::new(tokio::sync::Mutex::new(())),
            guard,
        }
    }
}

/// Rebuild, reporting progress on `progress`. Returns `Ok(false)` when interrupted because
/// the progress receiver went away.
pub async fn rebuild(
    views: Arc<Views>,
    js: jetstream::Context,
    stream: String,
    fresh: bool,
    on_undecodable: OnUndecodable,
    progress: mpsc::Sender<v1::RebuildProgress>,
) -> Result<bool> {
    let path = rebuild_path(&views.path);
    if fresh && path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    let db = tokio::task::block_in_place(|| store::open(&path))?;
    let mut applied = store::position(&db)?;
    let target = js
        .get_stream(&stream)
        .await
        .context("opening the event stream")?
        .info()
        .await
        .context("reading the stream's last sequence")?
        .state
        .last_sequence;
    let started = Instant::now();
    let resumed_at = applied;
    let report = |applied: u64, target: u64, swapped: bool| {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = (applied.saturating_sub(resumed_at)) as f64 / secs;
        let eta = if rate > 0.0 {
            target.saturating_sub(applied) as f64 / rate
        } else {
            0.0
        };
        v1::RebuildProgress {
            applied_position: applied,
            target_position: target,
            events_per_second: rate,
            eta_seconds: eta,
            swapped,
        }
    };
    if progress.send(report(applied, target, false)).await.is_err() {
        return Ok(false);
    }
    let mut follower = Follower::open(
        &js,
        &stream,
        applied + 1,
        FollowOptions {
            max_batch: MAX_BATCH,
            ..FollowOptions::default()
        },
        "views rebuild",
        CancellationToken::new(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("reading the event stream: {e}"))?;
    let mut last_report = Instant::now();
    // Catch up to the log's end as it was when we started, without pausing the live views;
    // then, with the live projector paused, to wherever it has got to, and swap.
    let mut guard = None;
    loop {
        let goal = if guard.is_some() {
            views.position()
        } else {
            target
        };
        if applied >= goal {
            if guard.is_some() {
                break;
            }
            guard = Some(views.writer.lock().await);
            continue;
        }
        let Some(read) = follower.next_batch().await else {
            anyhow::bail!("the event stream ended during the rebuild");
        };
        let batch: Vec<LogMessage> = read
            .messages
            .into_iter()
            .map(|m| LogMessage {
                sequence: m.sequence,
                payload: m.payload,
            })
            .collect();
        let (position, _) =
            tokio::task::block_in_place(|| apply_batch(&db, &batch, on_undecodable))?;
        applied = position;
        if last_report.elapsed().as_millis() >= 200 {
            last_report = Instant::now();
            if progress
                .send(report(applied, target.max(applied), false))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
    }
    std::fs::rename(&path, &views.path)
        .with_context(|| format!("moving {} over {}", path.display(), views.path.display()))?;
    views.swap(db, applied);
    drop(guard);
    tracing::info!(position = applied, "rebuilt views swapped in");
    let _ = progress
        .send(report(applied, target.max(applied), true))
        .await;
    Ok(true)
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<v1::RebuildProgress, Status>> + Send>>;

#[tonic::async_trait]
impl ViewsAdmin for Admin {
    type RebuildStream = ProgressStream;

    async fn rebuild(
        &self,
        request: Request<v1::RebuildRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        self.guard.administrator(request.metadata())?;
        let Ok(running) = self.running.clone().try_lock_owned() else {
            return Err(Status::failed_precondition("a rebuild is already running"));
        };
        let (progress_tx, mut progress_rx) = mpsc::channel(16);
        let (tx, rx) = mpsc::channel::<Result<v1::RebuildProgress, Status>>(16);
        let views = self.views.clone();
        let js = self.js.clone();
        let stream = self.stream.clone();
        let fresh = request.get_ref().fresh;
        let on_undecodable = self.on_undecodable;
        let work = tokio::spawn(rebuild(
            views,
            js,
            stream,
            fresh,
            on_undecodable,
            progress_tx,
        ));
        tokio::spawn(async move {
            let _running = running;
            while let Some(p) = progress_rx.recv().await {
                if tx.send(Ok(p)).await.is_err() {
                    // The caller went away: dropping the receiver interrupts the rebuild.
                    drop(progress_rx);
                    let _ = work.await;
                    return;
                }
            }
            match work.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("rebuild failed: {e:#}"))))
                        .await;
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("rebuild task failed: {e}"))))
                        .await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn status(
        &self,
        request: Request<v1::ViewsStatusRequest>,
    ) -> Result<Response<v1::ViewsStatus>, Status> {
        self.guard.administrator(request.metadata())?;
        let last = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .info()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .state
            .last_sequence;
        let db = self.views.db();
        let skipped = tokio::task::block_in_place(|| -> Result<u64, redb::Error> {
            use redb::ReadableDatabase;
            let read = db.begin_read()?;
            let meta = read.open_table(crate::tables::META)?;
            Ok(meta.get(crate::tables::SKIPPED)?.map_or(0, |v| v.value()))
        })
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::ViewsStatus {
            log_position: self.views.position(),
            log_last_sequence: last,
            file: self.views.path.display().to_string(),
            skipped_events: skipped,
        }))
    }
}
