//! Analysts replay the event history for service reviews (domain.md, "Service-review
//! metrics").
//!
//! This crate is pure like the domain crate: no IO, no async, no clock. The caller reads the
//! events (from the log or a file) and passes them in; the report comes back as data, JSON or
//! one self-contained HTML page.

pub mod report;

pub use report::{
    NhsTables, Report, Trend, nhs_tables, opted_out, service_review, to_html, to_json, trend,
};
