//! `carectl seed`: a synthetic, multi-organisation history driven through the real command API.
//!
//! For each of `--people` fictional people (test-range NHS numbers, obviously invented family
//! names) it plans a plausible journey over the `--days` before the anchor day: registration
//! and care team, GP and hospital referrals (some rejected, some cancelled, most completed),
//! Care Act needs assessments, admissions with discharge to assess (expected date, Discharge
//! Ready Date, pathway mix about 50/45/4/1, delays with their reasons, provider fall-through,
//! deterioration with a later DRD, deaths, self-discharges, handover, home assessment,
//! closure), readmissions, consents and national-data-opt-out style objections, multi-agency
//! meetings and feedback. Every fact carries its real-world time in `occurred_at` and in its
//! own date and time fields; some groups of facts are sent after facts that happened later
//! (late-recorded facts).
//!
//! Deterministic: a person's plan is a pure function of the seed, the anchor day, the number
//! of days and the person's index (a SplitMix64 stream), and every command id is a UUIDv8 over
//! SHA-256 of the same inputs and the step name. The same `--seed`, `--anchor-day` and
//! `--days` therefore send the same commands with the same content, and a second run against
//! the same server appends nothing (every command is answered as a duplicate). `--people`
//! only chooses how many people: person `i` is the same in a run of 40 and a run of 400.
//! Every instant lies before 00:00 UTC of the anchor day, so nothing is in the future.
//!
//! Under information governance: the seed first registers its organisations, the services and
//! sites each owns, and their data-sharing agreements ([`crate::registry`], idempotent). Each
//! command is then sent as an organisation entitled to it, following the rules of
//! `carewoven_governance` (mirrored in [`access::Access`] for the commands the seed sends): a
//! fact that needs a legitimate relationship the organisation does not have yet (a GP practice
//! registers a person but is related to them only once it refers them or joins their care
//! team) is recorded as soon as it has one, so it is recorded late; care-team changes are made
//! by a member (the first member by an organisation with a relationship).
//!
//! The parts: [`organisations`] (who acts, and the word lists people are made from), [`rng`],
//! [`plan`] (one person's story, with [`community`] referrals and assessments and hospital
//! [`discharge`] episodes), [`access`] (who may send each step, hence the send order),
//! [`stats`] (what a history contains) and [`send`] (the run).

mod access;
mod community;
mod discharge;
mod organisations;
mod plan;
mod rng;
mod send;
mod stats;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::NaiveDate;

pub use send::run;

/// Changing this namespace starts a fresh, non-colliding series of seed command ids.
const NAMESPACE: &str = "carewoven.carectl.seed.v1";

/// Synthetic people use NHS numbers `NhsNumber::synthetic(FIRST_INDEX..)`, clear of the
/// demo's (which derive from days since 2000, below 20,000).
const FIRST_INDEX: u32 = 20_000;
/// Each seed (modulo 8) starts its people in its own block of this many numbers.
const BLOCK: u32 = 10_000;
/// How many synthetic numbers the seed draws from (20,000..100,000).
pub const MAX_PEOPLE: u32 = 80_000;

/// What `carectl seed` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub people: u32,
    pub seed: u64,
    pub days: u32,
    pub concurrency: usize,
    pub anchor: NaiveDate,
    pub json: bool,
    pub timeout: Duration,
}
