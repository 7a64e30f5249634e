//! Hostile input at scale: every decoder and parser reachable from outside a Carewoven
//! service (command requests, event envelopes, feed and audit messages, feed cursors, page
//! tokens, bearer tokens, the trust and rest-hook files, the FHIR and web APIs' query
//! strings), fed arbitrary and structure-aware inputs, each under `catch_unwind`, a
//! watchdog for hangs and a counting allocator. `just fuzz`; a short run is a test.

pub mod alloc;
pub mod engine;
pub mod mutate;
pub mod protogen;
pub mod rng;
pub mod targets;

pub use engine::{Options, Report, Target, Verdict, run_one, run_target};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Bytes one input may have live at once while it is decoded before it counts as over the
/// bound: 64 MiB, 256 times the largest request a service accepts (`MAX_REQUEST_BYTES`).
pub const ALLOC_BOUND: usize = 64 * 1024 * 1024;
