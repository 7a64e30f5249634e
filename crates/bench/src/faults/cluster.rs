//! A three-node cluster from `deploy/cluster/` (routes with credentials, nkey identities),
//! every stream replicated three times, under load from two command-service instances:
//! kill -9 a follower of the event stream and restart it, then its leader, then SIGSTOP the
//! (new) leader for longer than the election timeout and resume it. Commands refused
//! meanwhile are retried with the same id; afterwards every acknowledged id is in the log
//! once, the views equal a clean rebuild and the feeds hold everything once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carewoven_testkit::broker::ClusterPorts;

use super::procs::{Keys, NatsNode, POLL};
use super::{Converged, Options, World};

pub struct Report {
    pub converged: Converged,
    pub unavailable_s: f64,
    pub refusals: String,
    pub acked_after_retry: u64,
    pub unexpected: Vec<String>,
    /// What was done, in order, with how long each recovery took.
    pub steps: Vec<String>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "faults-cluster: acked={} lost={} duplicated={} unavailable_s={:.1}",
            self.converged.log.acked,
            self.converged.log.lost,
            self.converged.log.duplicated,
            self.unavailable_s
        )
    }

    pub fn detail(&self) -> String {
        format!(
            "  {}\n  refused and retried with the same id: {} (acknowledged after a retry: {}){}\n{}",
            self.steps.join("\n  "),
            self.refusals,
            self.acked_after_retry,
            if self.unexpected.is_empty() {
                String::new()
            } else {
                format!(" UNEXPECTED: {:?}", self.unexpected)
            },
            self.converged.detail()
        )
    }
}

/// The event stream's leader and replicas as the cluster reports them.
async fn placement(
    js: &async_nats::jetstream::Context,
) -> Result<(Option<String>, Vec<(String, bool)>)> {
    let info = js.get_stream_no_info("CAREWOVEN").await?.get_info().await?;
    let cluster = info.cluster.context("no cluster information")?;
    Ok((
        cluster.leader,
        cluster
            .replicas
            .iter()
            .map(|r| (r.name.clone(), r.current))
            .collect(),
    ))
}

/// Wait until the stream has a leader and two current replicas; the leader's name.
async fn wait_healthy(js: &async_nats::jetstream::Context, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((Some(leader), replicas)) = placement(js).await
            && replicas.len() == 2
            && replicas.iter().all(|(_, current)| *current)
        {
            return Ok(leader);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the event stream did not get a leader and two current replicas within {timeout:?}: {:?}",
            placement(js).await.ok()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn node_index(nodes: &[NatsNode], name: &str) -> Result<usize> {
    nodes
        .iter()
        .position(|n| n.name == name)
        .with_context(|| format!("no node named {name}"))
}

pub async fn run(options: &Options) -> Result<Report> {
    let root = World::root(options, "cluster")?;
    let keys = Keys::new(root.path())?;
    let ports = ClusterPorts::new()?;
    let env = ports.env(
        &keys.ids,
        "carewoven-route",
        "a-route-secret-for-the-faults",
    );
    std::fs::create_dir_all(root.path().join("logs"))?;
    let mut nodes: Vec<NatsNode> = (1..=3)
        .map(|n| {
            NatsNode::new(
                &format!("carewoven-n{n}"),
                carewoven_testkit::repo_root().join(format!("deploy/cluster/n{n}.conf")),
                env.clone(),
                ports.clients[n - 1],
                root.path().join(format!("nats-n{n}")),
                root.path().join(format!("logs/nats-n{n}.log")),
            )
        })
        .collect();
    for node in &mut nodes {
        node.start()?;
    }
    let mut world = World::start(options, root, keys, nodes, 3).await?;
    let url = world.spawner.nats_url.clone();
    let ops = super::check::connect(&url, &world.keys.ids.seed("ops")).await?;
    let timeout = options.timeout;
    let mut steps = Vec::new();
    let load = world.load()?;
    load.progress(options.phase_acks, timeout).await?;

    // 1. A follower, then 2. the leader: kill -9, load goes on, restart, catch up.
    for role in ["follower", "leader"] {
        let leader = wait_healthy(&ops, timeout).await?;
        let victim = if role == "leader" {
            node_index(&world.nodes, &leader)?
        } else {
            (node_index(&world.nodes, &leader)? + 1) % 3
        };
        let name = world.nodes[victim].name.clone();
        let t = Instant::now();
        world.nodes[victim].kill9();
        load.progress(options.phase_acks, timeout).await?;
        let served = t.elapsed().as_secs_f64();
        world.nodes[victim].start()?;
        let leader = wait_healthy(&ops, timeout).await?;
        steps.push(format!(
            "kill -9 {role} {name}: {} commands acknowledged {served:.1} s after; restarted, current again after {:.1} s (leader {leader})",
            options.phase_acks,
            t.elapsed().as_secs_f64()
        ));
        load.progress(options.phase_acks, timeout).await?;
    }

    // 3. SIGSTOP the leader for longer than the election timeout, then SIGCONT.
    let leader = wait_healthy(&ops, timeout).await?;
    let victim = node_index(&world.nodes, &leader)?;
    let t = Instant::now();
    world.nodes[victim].pause()?;
    load.progress(options.phase_acks, timeout).await?;
    let served = t.elapsed().as_secs_f64();
    // The pause is the fault itself: it lasts `pause` whatever happens meanwhile.
    if let Some(rest) = options.pause.checked_sub(t.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let new_leader = placement(&ops).await.ok().and_then(|(l, _)| l);
    world.nodes[victim].resume()?;
    let healthy = wait_healthy(&ops, timeout).await?;
    steps.push(format!(
        "SIGSTOP leader {leader} for {:.1} s: {} commands acknowledged {served:.1} s after (leader meanwhile {}); SIGCONT, current again after {:.1} s (leader {healthy})",
        options.pause.as_secs_f64(),
        options.phase_acks,
        new_leader.as_deref().unwrap_or("none"),
        t.elapsed().as_secs_f64()
    ));
    load.progress(options.phase_acks, timeout).await?;

    let tally = load.finish(timeout).await;
    let converged = world
        .converge(&tally.acked, tally.unexpected_count, false)
        .await?;
    world.finish().await?;
    Ok(Report {
        converged,
        unavailable_s: tally.unavailable_secs(),
        refusals: tally.refusals(),
        acked_after_retry: tally.acked_after_retry,
        unexpected: tally.unexpected,
        steps,
    })
}
