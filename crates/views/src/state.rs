//! What the projector, the queries and the rebuild share.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use carewoven_eventlog::follow::FollowHealth;
use redb::Database;
use tokio::sync::{Mutex, broadcast, watch};

use crate::project::BoardChange;

/// The board changes one committed transaction caused, with its log position.
#[derive(Debug, Clone)]
pub struct BoardBatch {
    pub position: u64,
    pub changes: Vec<BoardChange>,
}

pub struct Views {
    pub path: PathBuf,
    db: RwLock<Arc<Database>>,
    /// The log position the views have applied; queries wait on it for read-your-writes.
    position: watch::Sender<u64>,
    /// Board changes, for watchers.
    board: broadcast::Sender<Arc<BoardBatch>>,
    /// Held by the live projector while it applies a batch; a rebuild takes it to swap files.
    pub writer: Mutex<()>,
    /// Why the projector stopped, if it did (for example an undecodable event).
    pub stopped: RwLock<Option<String>>,
    /// Whether the live projector is reading the log (the service's health).
    pub projector_health: FollowHealth,
}

impl Views {
    pub fn new(path: PathBuf, db: Database, position: u64) -> Arc<Self> {
        let (position, _) = watch::channel(position);
        let (board, _) = broadcast::channel(1024);
        Arc::new(Views {
            path,
            db: RwLock::new(Arc::new(db)),
            position,
            board,
            writer: Mutex::new(()),
            stopped: RwLock::new(None),
            projector_health: FollowHealth::new(),
        })
    }

    /// The database currently serving. Queries hold their own `Arc`, so a swap never cuts a
    /// query off.
    pub fn db(&self) -> Arc<Database> {
        self.db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn swap(&self, db: Database, position: u64) {
        *self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(db);
        self.position.send_replace(position);
    }

    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    pub fn watch_position(&self) -> watch::Receiver<u64> {
        self.position.subscribe()
    }

    pub fn subscribe_board(&self) -> broadcast::Receiver<Arc<BoardBatch>> {
        self.board.subscribe()
    }

    /// Announce a committed batch.
    pub fn committed(&self, position: u64, changes: Vec<BoardChange>) {
        self.position.send_replace(position);
        if !changes.is_empty() {
            let _ = self.board.send(Arc::new(BoardBatch { position, changes }));
        }
    }

    pub fn stop_reason(&self) -> Option<String> {
        self.stopped
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
