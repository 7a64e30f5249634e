//! Shared parts of the benchmarks.

pub mod child;
pub mod faults;
pub mod generator;
