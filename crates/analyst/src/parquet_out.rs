//! Apache Parquet export with a declared schema, written in row groups so memory stays
//! constant however long the export.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::export::Row;

/// The declared schema of an export: one row per event, no personal data.
pub const SCHEMA: &str = "
message carewoven_event_export {
  REQUIRED INT64 log_position;
  REQUIRED BYTE_ARRAY event_type (UTF8);
  REQUIRED BYTE_ARRAY aggregate_kind (UTF8);
  REQUIRED BYTE_ARRAY aggregate (UTF8);
  REQUIRED BYTE_ARRAY person (UTF8);
  REQUIRED INT64 version;
  REQUIRED BYTE_ARRAY organisation (UTF8);
  REQUIRED INT64 occurred_at (TIMESTAMP(MICROS,true));
  REQUIRED INT64 recorded_at (TIMESTAMP(MICROS,true));
  OPTIONAL INT32 pathway;
  OPTIONAL BYTE_ARRAY priority (UTF8);
  OPTIONAL BYTE_ARRAY delay_reason (UTF8);
  OPTIONAL BYTE_ARRAY discharge_ready_date (UTF8);
}
";

/// Rows per row group: the most held in memory at once.
pub const ROW_GROUP: usize = 65_536;

#[derive(Default)]
struct Columns {
    log_position: Vec<i64>,
    event_type: Vec<ByteArray>,
    aggregate_kind: Vec<ByteArray>,
    aggregate: Vec<ByteArray>,
    person: Vec<ByteArray>,
    version: Vec<i64>,
    organisation: Vec<ByteArray>,
    occurred_at: Vec<i64>,
    recorded_at: Vec<i64>,
    pathway: Optional<i32>,
    priority: Optional<ByteArray>,
    delay_reason: Optional<ByteArray>,
    discharge_ready_date: Optional<ByteArray>,
}

/// Values of an optional column with their definition levels (1 present, 0 null).
struct Optional<T> {
    values: Vec<T>,
    levels: Vec<i16>,
}

impl<T> Default for Optional<T> {
    fn default() -> Self {
        Optional {
            values: Vec::new(),
            levels: Vec::new(),
        }
    }
}

impl<T> Optional<T> {
    fn push(&mut self, value: Option<T>) {
        match value {
            Some(v) => {
                self.values.push(v);
                self.levels.push(1);
            }
            None => self.levels.push(0),
        }
    }
}

fn micros(rfc3339: &str) -> Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(rfc3339)
        .context("a stored time")?
        .timestamp_micros())
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(s.as_bytes().to_vec())
}

pub struct ParquetRows<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    columns: Columns,
    rows: usize,
}

impl<W: Write + Send> ParquetRows<W> {
    pub fn new(out: W) -> Result<Self> {
        let schema = Arc::new(parse_message_type(SCHEMA).context("the export schema")?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        Ok(ParquetRows {
            writer: SerializedFileWriter::new(out, schema, props)?,
            columns: Columns::default(),
            rows: 0,
        })
    }

    pub fn write(&mut self, row: &Row) -> Result<()> {
        let c = &mut self.columns;
        c.log_position.push(i64::try_from(row.log_position)?);
        c.event_type.push(text(row.event_type));
        c.aggregate_kind.push(text(row.aggregate_kind));
        c.aggregate.push(text(&row.aggregate));
        c.person.push(text(&row.person));
        c.version.push(i64::try_from(row.version)?);
        c.organisation.push(text(&row.organisation));
        c.occurred_at.push(micros(&row.occurred_at)?);
        c.recorded_at.push(micros(&row.recorded_at)?);
        c.pathway.push(row.pathway.map(i32::from));
        c.priority.push(row.priority.map(text));
        c.delay_reason.push(row.delay_reason.as_deref().map(text));
        c.discharge_ready_date
            .push(row.discharge_ready_date.as_deref().map(text));
        self.rows += 1;
        if self.rows == ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let c = std::mem::take(&mut self.columns);
        let mut group = self.writer.next_row_group()?;
        macro_rules! required {
            ($ty:ty, $values:expr) => {{
                let mut col = group.next_column()?.context("a column")?;
                col.typed::<$ty>().write_batch(&$values, None, None)?;
                col.close()?;
            }};
        }
        macro_rules! optional {
            ($ty:ty, $opt:expr) => {{
                let mut col = group.next_column()?.context("a column")?;
                col.typed::<$ty>()
                    .write_batch(&$opt.values, Some(&$opt.levels), None)?;
                col.close()?;
            }};
        }
        required!(Int64Type, c.log_position);
        required!(ByteArrayType, c.event_type);
        required!(ByteArrayType, c.aggregate_kind);
        required!(ByteArrayType, c.aggregate);
        required!(ByteArrayType, c.person);
        required!(Int64Type, c.version);
        required!(ByteArrayType, c.organisation);
        required!(Int64Type, c.occurred_at);
        required!(Int64Type, c.recorded_at);
        optional!(Int32Type, c.pathway);
        optional!(ByteArrayType, c.priority);
        optional!(ByteArrayType, c.delay_reason);
        optional!(ByteArrayType, c.discharge_ready_date);
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}
