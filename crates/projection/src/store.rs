//! Opening, checking and fingerprinting a views file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use sha2::{Digest, Sha256};

use crate::tables::{
    BOARD, CASELOAD, FORMAT, FORMAT_VERSION, INBOX, INBOX_CLOSED, META, POSITION, RECORDS, SKIPPED,
    WORKLIST,
};

/// Open (or create) a views file and check it is ours, in the format this build writes. A
/// corrupt or foreign file is refused with an error naming it, never a panic.
pub fn open(path: &Path) -> Result<Database> {
    let db = Database::create(path).with_context(|| {
        format!(
            "opening views file {}: not a readable redb file",
            path.display()
        )
    })?;
    let read = db
        .begin_read()
        .with_context(|| format!("reading views file {}", path.display()))?;
    let tables: Vec<String> = read
        .list_tables()
        .with_context(|| format!("listing tables of views file {}", path.display()))?
        .map(|t| t.name().to_owned())
        .collect();
    drop(read);
    if tables.is_empty() {
        let write = db.begin_write()?;
        {
            let mut meta = write.open_table(META)?;
            meta.insert(FORMAT, FORMAT_VERSION)?;
            meta.insert(POSITION, 0)?;
            meta.insert(SKIPPED, 0)?;
            write.open_table(RECORDS)?;
            write.open_table(BOARD)?;
            write.open_table(CASELOAD)?;
            write.open_table(INBOX)?;
            write.open_table(INBOX_CLOSED)?;
            write.open_table(WORKLIST)?;
        }
        write.commit()?;
        return Ok(db);
    }
    let read = db.begin_read()?;
    let format = read
        .open_table(META)
        .ok()
        .and_then(|meta| meta.get(FORMAT).ok().flatten().map(|v| v.value()));
    match format {
        Some(FORMAT_VERSION) => {}
        Some(other) => bail!(
            "views file {} has format {other}; this build reads format {FORMAT_VERSION} (rebuild it)",
            path.display()
        ),
        None => bail!(
            "{} is a redb file but not a Carewoven views file (tables: {})",
            path.display(),
            tables.join(", ")
        ),
    }
    drop(read);
    Ok(db)
}

/// The log position the file has applied.
pub fn position(db: &Database) -> Result<u64> {
    let read = db.begin_read()?;
    let meta = read.open_table(META)?;
    Ok(meta.get(POSITION)?.map_or(0, |v| v.value()))
}

/// A SHA-256 over every view table and the position, in key order. Two files with the same
/// digest answer every query the same way.
pub fn digest(db: &Database) -> Result<String> {
    let read = db.begin_read()?;
    let mut h = Sha256::new();
    let meta = read.open_table(META)?;
    for entry in meta.iter()? {
        let (k, v) = entry?;
        h.update(k.value().as_bytes());
        h.update(v.value().to_le_bytes());
    }
    for table in [RECORDS, BOARD] {
        h.update(table.name().as_bytes());
        for entry in read.open_table(table)?.iter()? {
            let (k, v) = entry?;
            h.update(k.value().to_le_bytes());
            h.update((v.value().len() as u64).to_le_bytes());
            h.update(v.value());
        }
    }
    h.update(CASELOAD.name().as_bytes());
    for entry in read.open_table(CASELOAD)?.iter()? {
        let (k, _) = entry?;
        let (owner, person) = k.value();
        h.update(owner.as_bytes());
        h.update([0]);
        h.update(person.to_le_bytes());
    }
    for table in [INBOX, INBOX_CLOSED] {
        h.update(table.name().as_bytes());
        for entry in read.open_table(table)?.iter()? {
            let (k, v) = entry?;
            let (service, referral) = k.value();
            h.update(service.as_bytes());
            h.update([0]);
            h.update(referral.to_le_bytes());
            h.update((v.value().len() as u64).to_le_bytes());
            h.update(v.value());
        }
    }
    h.update(WORKLIST.name().as_bytes());
    for entry in read.open_table(WORKLIST)?.iter()? {
        let (k, v) = entry?;
        let (list, sort, item) = k.value();
        h.update(list.as_bytes());
        h.update([0]);
        h.update(sort.as_bytes());
        h.update([0]);
        h.update(item.to_le_bytes());
        h.update((v.value().len() as u64).to_le_bytes());
        h.update(v.value());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_corrupt_and_foreign_files_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let corrupt = dir.path().join("corrupt.redb");
        std::fs::write(&corrupt, b"this is not a database at all, just bytes").expect("write");
        let err = open(&corrupt).expect_err("corrupt file refused");
        assert!(format!("{err:#}").contains("corrupt.redb"), "{err:#}");

        let foreign = dir.path().join("foreign.redb");
        {
            let db = Database::create(&foreign).expect("create");
            let w = db.begin_write().expect("write");
            w.open_table(redb::TableDefinition::<u64, u64>::new("something_else"))
                .expect("table");
            w.commit().expect("commit");
        }
        let err = open(&foreign).expect_err("foreign file refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("foreign.redb") && text.contains("not a Carewoven"),
            "{text}"
        );

        let fresh = dir.path().join("views.redb");
        let db = open(&fresh).expect("fresh file");
        assert_eq!(position(&db).expect("position"), 0);
        drop(db);
        let db = open(&fresh).expect("reopen");
        assert_eq!(digest(&db).expect("digest").len(), 64);
    }
}
