//! The command service: gRPC in, decide, append to JetStream, reply.
//!
//! `main` parses configuration and calls [`run`]; everything testable lives here.

mod error;
mod handler;
mod ids;
mod server;
mod service;

pub use error::{domain_status, log_status};
pub use handler::Handler;
pub use ids::Ids;
pub use server::{Config, MIN_KEY_LEN, TEST_KEY, run};
