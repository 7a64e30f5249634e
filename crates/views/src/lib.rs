//! The views service: consumes the JetStream event log and keeps the coordinated views in
//! redb, then serves them over gRPC to authenticated callers, each seeing only the people it
//! may read, every read audited ([`guard`]).

pub mod admin;
pub mod errors;
pub mod guard;
pub mod paging;
pub mod projector;
pub mod query;
mod server;
pub mod state;

/// The projection lives in its own crate (the analyst and the benchmarks use it without the
/// service); re-exported so `crate::tables` and `carewoven_views::store` keep their paths.
pub use carewoven_projection::{project, store, tables};

pub use server::{Config, run};
