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
#[cfg(feature = "test-util")]
pub use server::TEST_KEY;
pub use server::{Config, MIN_KEY_LEN, run};
