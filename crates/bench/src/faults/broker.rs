//! One nats-server with `sync_interval: always` (`deploy/nats-server.conf`), killed with
//! SIGKILL under load and started again on the same store: every acknowledged command must
//! be in the log afterwards (an acknowledgement means fsynced).

use std::time::Duration;

use anyhow::Result;

use super::procs::{Keys, NatsNode};
use super::{Converged, Options, World};

pub struct Report {
    pub kills: usize,
    pub converged: Converged,
    pub unavailable_s: f64,
    pub refusals: String,
    pub acked_after_retry: u64,
    pub unexpected: Vec<String>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "faults-broker: acked={} lost={}",
            self.converged.log.acked, self.converged.log.lost
        )
    }

    pub fn detail(&self) -> String {
        format!(
            "  kills={} duplicated={} unavailable_s={:.1} acked_after_retry={} refusals: {}{}\n{}",
            self.kills,
            self.converged.log.duplicated,
            self.unavailable_s,
            self.acked_after_retry,
            self.refusals,
            if self.unexpected.is_empty() {
                String::new()
            } else {
                format!(" UNEXPECTED: {:?}", self.unexpected)
            },
            self.converged.detail()
        )
    }
}

/// `deploy/nats-server.conf` on a free port, its store in `root`.
pub fn single_node(
    root: &std::path::Path,
    keys: &Keys,
    store: std::path::PathBuf,
) -> Result<NatsNode> {
    let port = carewoven_testkit::free_port()?;
    let mut env = keys.ids.env();
    env.push(("CAREWOVEN_NATS_PORT".into(), port.to_string()));
    std::fs::create_dir_all(root.join("logs"))?;
    Ok(NatsNode::new(
        "carewoven-1",
        carewoven_testkit::repo_root().join("deploy/nats-server.conf"),
        env,
        port,
        store,
        root.join("logs/nats.log"),
    ))
}

pub async fn run(options: &Options) -> Result<Report> {
    let root = World::root(options, "broker")?;
    let keys = Keys::new(root.path())?;
    let mut node = single_node(root.path(), &keys, root.path().join("nats"))?;
    node.start()?;
    let mut world = World::start(options, root, keys, vec![node], 1).await?;
    let load = world.load()?;
    load.progress(options.phase_acks, options.timeout).await?;
    for _ in 0..options.broker_kills {
        // A random moment within the next 300 ms of load.
        tokio::time::sleep(Duration::from_millis(world.rng.below(300))).await;
        world.nodes[0].kill9();
        world.nodes[0].start()?;
        load.progress(options.phase_acks, options.timeout).await?;
    }
    let tally = load.finish(options.timeout).await;
    let converged = world
        .converge(&tally.acked, tally.unexpected_count, false)
        .await?;
    world.finish().await?;
    Ok(Report {
        kills: options.broker_kills,
        converged,
        unavailable_s: tally.unavailable_secs(),
        refusals: tally.refusals(),
        acked_after_retry: tally.acked_after_retry,
        unexpected: tally.unexpected,
    })
}
