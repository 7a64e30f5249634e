//! The coordinated views as they stood at a given time, in two senses:
//!
//! - **recorded**: what we knew then (events the log had recorded by then);
//! - **occurred**: what had happened by then, including facts recorded later.
//!
//! Either way the selected events are applied in log order (each aggregate's versions in
//! order) with the same projection the live views use, into a throw-away redb file.

use anyhow::{Context, Result};
use async_nats::jetstream;
use carewoven_domain::RecordedEvent;
use carewoven_proto::v1;
use chrono::{DateTime, Utc};
use prost::Message;
use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use crate::replay::replay;
use crate::selection::Selection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sense {
    Recorded,
    Occurred,
}

/// Whether an event counts as of `at`.
pub fn counts(e: &RecordedEvent, at: DateTime<Utc>, sense: Sense) -> bool {
    match sense {
        Sense::Recorded => e.meta.recorded_at <= at,
        Sense::Occurred => e.meta.occurred_at <= at,
    }
}

/// Views built from the selected events, in a temporary file.
pub struct AsOf {
    _dir: tempfile::TempDir,
    db: redb::Database,
}

impl AsOf {
    /// Build the views as of `at` from the events `selection` picks.
    pub async fn build(
        js: &jetstream::Context,
        stream: &str,
        selection: &Selection,
        at: DateTime<Utc>,
        sense: Sense,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("a temporary directory for the as-of views")?;
        let db = carewoven_projection::store::open(&dir.path().join("asof.redb"))?;
        let txn = db.begin_write()?;
        replay(
            js,
            stream,
            selection,
            |e| {
                if counts(&e, at, sense) {
                    carewoven_projection::project::apply(&txn, &e)?;
                }
                Ok(())
            },
            |_| {},
        )
        .await?;
        txn.commit()?;
        Ok(AsOf { _dir: dir, db })
    }

    pub fn care_record(&self, person: Uuid) -> Result<Option<v1::CareRecord>> {
        let read = self.db.begin_read()?;
        let table = read.open_table(carewoven_projection::tables::RECORDS)?;
        let Some(bytes) = table.get(person.as_u128())? else {
            return Ok(None);
        };
        Ok(Some(v1::CareRecord::decode(bytes.value())?))
    }

    pub fn board(&self) -> Result<Vec<v1::BoardEntry>> {
        let read = self.db.begin_read()?;
        let table = read.open_table(carewoven_projection::tables::BOARD)?;
        let mut entries = Vec::new();
        for item in table.iter()? {
            let (_, value) = item?;
            entries.push(v1::BoardEntry::decode(value.value())?);
        }
        Ok(entries)
    }
}
