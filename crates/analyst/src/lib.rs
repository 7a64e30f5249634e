//! Analysts' tools over the event log, without touching the live services: replay any slice
//! of the history, and export it for their own tools under the national data opt-out.

pub mod asof;
pub mod export;
pub mod parquet_out;
pub mod replay;
pub mod selection;
pub mod service;

use std::collections::HashSet;

use anyhow::Result;
use async_nats::jetstream;
use uuid::Uuid;

/// Everyone with an active objection to secondary use, as of the log's end.
pub async fn opted_out(js: &jetstream::Context, stream: &str) -> Result<HashSet<Uuid>> {
    let mut opt_outs = export::OptOuts::default();
    let consents = selection::Selection {
        event_types: vec!["consent_recorded".into(), "consent_withdrawn".into()],
        ..Default::default()
    };
    replay::replay(
        js,
        stream,
        &consents,
        |e| {
            opt_outs.observe(&e);
            Ok(())
        },
        |_| {},
    )
    .await?;
    Ok(opt_outs.people())
}
