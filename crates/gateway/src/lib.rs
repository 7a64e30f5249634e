//! carewoven-gateway: partner feeds under information governance.
//!
//! - [`evaluator`]: follows the log, decides per event and partner at delivery time
//!   (relationship, objection, agreement purposes, data classes and expiry), stores each
//!   delivery on the partner's NATS subjects (`cw.feed.<ORG>.<number>`) and audits it.
//! - [`feed`]: `FeedService.Subscribe` (gRPC server streaming, per-partner numbering,
//!   resumable by signed cursor or number) and `AuditService.ListRecordAccess`.
//! - [`server`]: configuration and `run(listener, config, shutdown)`.
//! - [`rest_hook`]: each configured partner's feed POSTed to its endpoint as FHIR
//!   notifications, in order, retried until taken.
//! - [`backlog`]: with metrics on, each durable partner consumer's backlog.

pub mod access_list;
pub mod backlog;
pub mod evaluator;
pub mod feed;
pub mod rest_hook;
pub mod server;
pub mod sweep;

pub use server::{Config, Gateway, run};
