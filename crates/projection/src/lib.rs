//! The coordinated views' projection, apart from any service: the redb tables ([`tables`]),
//! the fold of one recorded event into every view ([`project`]) and opening, checking and
//! digesting a views file ([`store`]), and what a record puts on organisations' worklists
//! ([`worklist`]). The views service keeps its files with it; the
//! analyst builds throw-away as-of views with the same code; the benchmarks measure it.
//! Nothing here follows the log, serves gRPC or reads the clock.

pub mod project;
pub mod store;
pub mod tables;
pub mod worklist;
