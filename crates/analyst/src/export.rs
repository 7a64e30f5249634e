//! Exports for analysts' own tools, in constant memory. Secondary use: the national data
//! opt-out applies (opted-out people are left out), identifiers are pseudonymised with a
//! keyed hash that is stable across exports, and no personal data (names, NHS numbers, free
//! text) is ever written, only event metadata and coded fields.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use carewoven_domain::consent::{ConsentDecision, ConsentEvent, Purpose};
use carewoven_domain::discharge::DischargeEvent;
use carewoven_domain::referral::ReferralEvent;
use carewoven_domain::{Event, RecordedEvent};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

/// Keyed pseudonyms: the same id and key always give the same pseudonym; without the key a
/// pseudonym cannot be linked back.
#[derive(Clone)]
pub struct Pseudonyms {
    key: Vec<u8>,
}

impl Pseudonyms {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Pseudonyms { key: key.into() }
    }

    pub fn of(&self, id: Uuid) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.finalize().into_bytes()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// People who object to secondary use: an active (not withdrawn) objection for research or
/// planning.
#[derive(Debug, Default)]
pub struct OptOuts {
    objections: std::collections::HashMap<Uuid, Uuid>,
    withdrawn: HashSet<Uuid>,
}

impl OptOuts {
    /// Feed every consent event, in log order.
    pub fn observe(&mut self, e: &RecordedEvent) {
        match &e.event {
            Event::Consent(ConsentEvent::Recorded { terms })
                if terms.decision == ConsentDecision::Deny
                    && matches!(terms.purpose, Purpose::Research | Purpose::Planning) =>
            {
                self.objections
                    .insert(e.meta.aggregate_id, e.meta.person_id);
            }
            Event::Consent(ConsentEvent::Withdrawn { .. }) => {
                self.withdrawn.insert(e.meta.aggregate_id);
            }
            _ => {}
        }
    }

    pub fn people(&self) -> HashSet<Uuid> {
        self.objections
            .iter()
            .filter(|(consent, _)| !self.withdrawn.contains(consent))
            .map(|(_, person)| *person)
            .collect()
    }
}

/// One exported row: metadata and coded fields only.
#[derive(Debug, Serialize)]
pub struct Row {
    pub log_position: u64,
    pub event_type: &'static str,
    pub aggregate_kind: &'static str,
    pub aggregate: String,
    pub person: String,
    pub version: u64,
    pub organisation: String,
    pub occurred_at: String,
    pub recorded_at: String,
    pub pathway: Option<u8>,
    pub priority: Option<&'static str>,
    pub delay_reason: Option<String>,
    pub discharge_ready_date: Option<String>,
}

/// One event's row. A registry event (an organisation, its services and agreements) belongs
/// to no person: its `person` is empty.
pub fn row(e: &RecordedEvent, pseudonyms: &Pseudonyms) -> Row {
    let person = if e.meta.person_id == carewoven_domain::REGISTRY_PERSON {
        String::new()
    } else {
        pseudonyms.of(e.meta.person_id)
    };
    let mut r = Row {
        log_position: e.sequence,
        event_type: e.event.name(),
        aggregate_kind: e.meta.aggregate_kind.as_str(),
        aggregate: pseudonyms.of(e.meta.aggregate_id),
        person,
        version: e.meta.version,
        organisation: e.meta.organisation.as_str().to_owned(),
        occurred_at: e.meta.occurred_at.to_rfc3339(),
        recorded_at: e.meta.recorded_at.to_rfc3339(),
        pathway: None,
        priority: None,
        delay_reason: None,
        discharge_ready_date: None,
    };
    match &e.event {
        Event::Discharge(DischargeEvent::PathwayAssigned { pathway }) => {
            r.pathway = Some(pathway.number());
        }
        Event::Discharge(DischargeEvent::DelayReasonRecorded { reason, .. }) => {
            r.delay_reason = Some(carewoven_history::report::delay_reason_name(*reason).to_owned());
        }
        Event::Discharge(DischargeEvent::DischargeReady {
            discharge_ready_date,
            ..
        }) => r.discharge_ready_date = Some(discharge_ready_date.to_string()),
        Event::Referral(ReferralEvent::Submitted { referral }) => {
            r.priority = Some(match referral.priority {
                carewoven_domain::referral::Priority::Routine => "routine",
                carewoven_domain::referral::Priority::Urgent => "urgent",
                carewoven_domain::referral::Priority::Asap => "asap",
                carewoven_domain::referral::Priority::Stat => "stat",
            });
        }
        _ => {}
    }
    r
}

/// A file written under a temporary name in the same directory and renamed into place only
/// when complete: a failed or interrupted export never leaves a file that looks finished.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Refuses an existing `path` unless `force`; refuses an unwritable directory.
    pub fn create(path: &Path, force: bool) -> Result<Self> {
        if path.exists() && !force {
            bail!(
                "{} already exists; pass --force to replace it",
                path.display()
            );
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".carewoven-partial-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        Ok(AtomicFile {
            tmp,
            path: path.to_owned(),
        })
    }

    pub fn writer(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Flush to disk and move into place.
    pub fn commit(mut self) -> Result<()> {
        self.tmp.as_file_mut().flush()?;
        self.tmp
            .as_file()
            .sync_all()
            .context("flushing the export to disk")?;
        self.tmp
            .persist(&self.path)
            .map_err(|e| anyhow::anyhow!("moving the export into place: {e}"))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
    /// Apache Parquet with the schema in [`crate::parquet_out::SCHEMA`].
    Parquet,
}

/// Writes rows one at a time (constant memory).
pub enum RowWriter<W: Write + Send> {
    Jsonl(std::io::BufWriter<W>),
    Csv(Box<csv::Writer<W>>),
    Parquet(Box<crate::parquet_out::ParquetRows<W>>),
}

impl<W: Write + Send> RowWriter<W> {
    pub fn new(format: Format, out: W) -> Result<Self> {
        Ok(match format {
            Format::Jsonl => RowWriter::Jsonl(std::io::BufWriter::new(out)),
            Format::Csv => RowWriter::Csv(Box::new(csv::Writer::from_writer(out))),
            Format::Parquet => {
                RowWriter::Parquet(Box::new(crate::parquet_out::ParquetRows::new(out)?))
            }
        })
    }

    pub fn write(&mut self, row: &Row) -> Result<()> {
        match self {
            RowWriter::Jsonl(w) => {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")?;
            }
            RowWriter::Csv(w) => w.serialize(row)?,
            RowWriter::Parquet(w) => w.write(row)?,
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        match self {
            RowWriter::Jsonl(mut w) => w.flush()?,
            RowWriter::Csv(mut w) => w.flush()?,
            RowWriter::Parquet(w) => w.finish()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let id = Uuid::from_u128(42);
        let a = Pseudonyms::new(b"key-one".to_vec());
        assert_eq!(a.of(id), a.of(id));
        assert_eq!(a.of(id).len(), 24);
        assert_ne!(a.of(id), Pseudonyms::new(b"key-two".to_vec()).of(id));
        assert!(!a.of(id).contains(&id.to_string()[..8]));
    }

    #[test]
    fn an_existing_file_is_refused_without_force_and_nothing_partial_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.csv");
        std::fs::write(&path, "old").expect("write");
        assert!(AtomicFile::create(&path, false).is_err());
        let mut f = AtomicFile::create(&path, true).expect("forced");
        f.writer().write_all(b"new").expect("write");
        // Before commit the old file is untouched.
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old");
        f.commit().expect("commit");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        // Dropped without commit: no partial file remains.
        let other = dir.path().join("other.csv");
        drop(AtomicFile::create(&other, false).expect("create"));
        assert!(!other.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(AtomicFile::create(Path::new("/proc/definitely/not/writable.csv"), false).is_err());
    }
}
