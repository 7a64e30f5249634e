//! Kill -9 of each service in turn (one of the two command-service instances, the views, the
//! gateway) at a random moment under load, started again with the same state. After every
//! round, with the load paused: the views equal a clean rebuild of the same log, every feed
//! is numbered without gaps or repeats and holds each event owed to it once, and every
//! acknowledged command is in the log once. A round where any of these fails is a mismatch.

use std::time::Duration;

use anyhow::Result;

use super::broker::single_node;
use super::procs::{Keys, Kind};
use super::{Converged, Options, World};

pub struct Report {
    pub rounds: usize,
    pub mismatches: usize,
    /// Each mismatching round: what was killed and what the check found.
    pub failures: Vec<String>,
    pub last: Converged,
    pub refusals: String,
    pub unexpected: Vec<String>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "faults-services: rounds={} mismatches={}",
            self.rounds, self.mismatches
        )
    }

    pub fn detail(&self) -> String {
        let mut out = format!(
            "  load refusals (retried with the same id): {}{}\n{}",
            self.refusals,
            if self.unexpected.is_empty() {
                String::new()
            } else {
                format!(" UNEXPECTED: {:?}", self.unexpected)
            },
            self.last.detail()
        );
        for f in &self.failures {
            out.push_str(&format!("\n  MISMATCH {f}"));
        }
        out
    }
}

pub async fn run(options: &Options) -> Result<Report> {
    let root = World::root(options, "services")?;
    let keys = Keys::new(root.path())?;
    let mut node = single_node(root.path(), &keys, root.path().join("nats"))?;
    node.start()?;
    let mut world = World::start(options, root, keys, vec![node], 1).await?;
    let mut load = world.load()?;
    load.progress(options.phase_acks, options.timeout).await?;
    let mut failures = Vec::new();
    for round in 0..options.rounds {
        let kind = [Kind::Commands, Kind::Views, Kind::Gateway][round % 3];
        let index = (round / 3) % 2;
        // A random moment within the next second of load.
        let delay = world.rng.below(1000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        world.crash_and_restart(kind, index).await?;
        load.progress(options.phase_acks, options.timeout).await?;
        let converged = world.converge_paused(&mut load, true).await?;
        if !converged.ok() {
            failures.push(format!(
                "round {round} (kill -9 {} after {delay} ms):\n{}",
                kind.name(),
                converged.detail()
            ));
        }
    }
    let tally = load.finish(options.timeout).await;
    // The commands sent after the last round's check, checked too.
    let converged = world
        .converge(&tally.acked, tally.unexpected_count, false)
        .await?;
    if !converged.ok() {
        failures.push(format!("after the last round:\n{}", converged.detail()));
    }
    world.finish().await?;
    Ok(Report {
        rounds: options.rounds,
        mismatches: failures.len(),
        failures,
        last: converged,
        refusals: tally.refusals(),
        unexpected: tally.unexpected,
    })
}
