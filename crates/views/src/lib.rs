//! The views service: consumes the JetStream event log and keeps the coordinated views in
//! redb, then serves them over gRPC to authenticated callers, each seeing only the people it
//! may read, every read audited ([`guard`]).

pub mod admin;
pub mod errors;
pub mod guard;
pub mod paging;
pub mod project;
pub mod projector;
pub mod query;
mod server;
pub mod state;
pub mod store;
pub mod tables;

pub use server::{Config, run};
