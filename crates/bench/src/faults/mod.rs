//! The fault-injection suite (`just faults`; a short version in the default test run,
//! `crates/bench/tests/faults.rs`). Every scenario runs real processes: nats-server from the
//! shipped configurations (`deploy/`, nkey identities), the Carewoven services as child
//! processes (the release binaries, or this crate's `faults serve <kind>`, the same
//! libraries behind the same flags), a steady command load over gRPC on loopback
//! ([`load`]), and afterwards the checks of [`check`]:
//!
//! - [`cluster`]: a three-node cluster (`deploy/cluster/`, R3) under load from two
//!   command-service instances: kill -9 a follower of the event stream, then its leader,
//!   restarting each; SIGSTOP a node (the leader) for longer than the election timeout and
//!   resume it. `faults-cluster: acked= lost= duplicated= unavailable_s=`.
//! - [`broker`]: one node with `sync_interval: always` (`deploy/nats-server.conf`), kill -9
//!   under load and restart. `faults-broker: acked= lost=`.
//! - [`services`]: kill -9 of the command service, the views and the gateway in turn, at
//!   random moments under load; after every round the views equal a clean rebuild and the
//!   feeds hold everything once. `faults-services: rounds= mismatches=`.
//! - [`disk`]: the store on a small loopback filesystem that fills up (root), or JetStream's
//!   `max_file_store` reached (otherwise): refusals are clear, nothing acknowledged is
//!   lost, the services recover when space returns. `faults-disk: ...`.

pub mod broker;
pub mod check;
pub mod cluster;
pub mod disk;
pub mod load;
pub mod procs;
pub mod services;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use check::{FeedCheck, FeedScan, LogCheck, LogScan};
use load::{LOAD_ORG, Load};
use procs::{Binaries, Keys, Kind, NatsNode, POLL, ServiceProc, Spawner};

/// Sizes and places of a run.
#[derive(Clone, Debug)]
pub struct Options {
    pub binaries: Binaries,
    /// Concurrent load workers (one command in flight each).
    pub workers: usize,
    /// Commands acknowledged under load in each phase (before, during and after a fault).
    pub phase_acks: u64,
    /// Service kill rounds (`services`).
    pub rounds: usize,
    /// Broker kills (`broker`).
    pub broker_kills: usize,
    /// How long a node stays paused (`cluster`): longer than the election timeout.
    pub pause: Duration,
    /// Seed of the random moments.
    pub seed: u64,
    /// Where the stores, state and logs go (a fresh directory inside it).
    pub dir: PathBuf,
    /// Keep that directory.
    pub keep: bool,
    /// Longest wait for any recovery.
    pub timeout: Duration,
}

impl Options {
    /// The short version (the default test run).
    pub fn short(binaries: Binaries) -> Self {
        Options {
            binaries,
            workers: 4,
            phase_acks: 30,
            rounds: 3,
            broker_kills: 1,
            pause: Duration::from_secs(10),
            seed: 13,
            dir: std::env::temp_dir(),
            keep: false,
            timeout: Duration::from_secs(90),
        }
    }
}

/// What the convergence check found at one point.
#[derive(Debug, Clone)]
pub struct Converged {
    pub log: LogCheck,
    pub feeds: FeedCheck,
    /// The views' (digest, position) and a clean rebuild's.
    pub views: (String, u64),
    pub reference: (String, u64),
    /// Load refusals the client did not expect (neither retryable nor acknowledged).
    pub unexpected: u64,
}

impl Converged {
    pub fn views_equal(&self) -> bool {
        self.views == self.reference
    }

    pub fn ok(&self) -> bool {
        self.log.lost == 0
            && self.log.duplicated == 0
            && self.log.duplicated_any == 0
            && self.feeds.ok()
            && self.views_equal()
            && self.unexpected == 0
    }

    /// The detail lines printed under a scenario's figure.
    pub fn detail(&self) -> String {
        format!(
            "  log: acked={} lost={} duplicated={} (any command id appended twice: {})\n  views: digest {} at {}, clean rebuild {} at {} ({})\n  feeds: partners={} items={} out_of_order={} repeated={} missing={}",
            self.log.acked,
            self.log.lost,
            self.log.duplicated,
            self.log.duplicated_any,
            &self.views.0[..12.min(self.views.0.len())],
            self.views.1,
            &self.reference.0[..12.min(self.reference.0.len())],
            self.reference.1,
            if self.views_equal() {
                "equal"
            } else {
                "DIFFERENT"
            },
            self.feeds.partners,
            self.feeds.items,
            self.feeds.out_of_order,
            self.feeds.repeated,
            self.feeds.missing,
        )
    }
}

/// One run's processes: NATS nodes, two command-service instances, the views and the
/// gateway, and the incremental readers the checks use.
pub struct World {
    pub options: Options,
    pub nodes: Vec<NatsNode>,
    pub spawner: Spawner,
    pub commands: Vec<Option<ServiceProc>>,
    pub commands_addrs: Vec<String>,
    pub views: Option<ServiceProc>,
    pub gateway: Option<ServiceProc>,
    pub log: LogScan,
    pub feeds: FeedScan,
    pub keys: Keys,
    pub rng: crate::generator::Rng,
    root: Option<tempfile::TempDir>,
}

impl World {
    /// A fresh directory for one scenario.
    pub fn root(options: &Options, name: &str) -> Result<tempfile::TempDir> {
        std::fs::create_dir_all(&options.dir)?;
        Ok(tempfile::Builder::new()
            .prefix(&format!("carewoven-faults-{name}-"))
            .tempdir_in(&options.dir)?)
    }

    /// Start the services on running `nodes`: the first command service (which creates the
    /// streams), the registry, the second, the views and the gateway.
    pub async fn start(
        options: &Options,
        root: tempfile::TempDir,
        keys: Keys,
        nodes: Vec<NatsNode>,
        replicas: u8,
    ) -> Result<Self> {
        let url = nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",");
        let spawner = Spawner::new(
            options.binaries.clone(),
            root.path(),
            url.clone(),
            replicas,
            &keys,
        );
        let first = spawner
            .start(spawner.instance(Kind::Commands, "commands-1")?)
            .await?;
        let mut client = CommandServiceClient::new(first.channel().await?);
        carewoven_testkit::register_standard_orgs(&mut client)
            .await
            .context("registering the organisations")?;
        let second = spawner
            .start(spawner.instance(Kind::Commands, "commands-2")?)
            .await?;
        let views = spawner
            .start(spawner.instance(Kind::Views, "views")?)
            .await?;
        let gateway = spawner
            .start(spawner.instance(Kind::Gateway, "gateway")?)
            .await?;
        let commands_addrs = vec![first.instance.addr.clone(), second.instance.addr.clone()];
        let log = LogScan::new(&url, &keys.ids.seed("views")).await?;
        let feeds = FeedScan::new(&url, &keys.ids.seed("gateway")).await?;
        Ok(World {
            options: options.clone(),
            nodes,
            spawner,
            commands: vec![Some(first), Some(second)],
            commands_addrs,
            views: Some(views),
            gateway: Some(gateway),
            log,
            feeds,
            keys,
            rng: crate::generator::Rng::new(options.seed),
            root: Some(root),
        })
    }

    /// The load against both command-service instances.
    pub fn load(&self) -> Result<Load> {
        Load::start(&self.commands_addrs, self.options.workers)
    }

    /// Kill -9 a service and start it again (same address and state), once it serves.
    pub async fn crash_and_restart(&mut self, kind: Kind, index: usize) -> Result<()> {
        let slot = match kind {
            Kind::Commands => &mut self.commands[index],
            Kind::Views => &mut self.views,
            Kind::Gateway => &mut self.gateway,
        };
        let instance = slot.take().context("not running")?.kill9().await?;
        let restarted = self.spawner.start(instance).await?;
        *match kind {
            Kind::Commands => &mut self.commands[index],
            Kind::Views => &mut self.views,
            Kind::Gateway => &mut self.gateway,
        } = Some(restarted);
        Ok(())
    }

    /// [`World::converge`] with the load paused meanwhile (resumed after).
    pub async fn converge_paused(&mut self, load: &mut Load, restart: bool) -> Result<Converged> {
        load.pause().await;
        let acked = load.acked_ids().await;
        let unexpected = load.unexpected().await;
        let converged = self.converge(&acked, unexpected, restart).await;
        load.resume().await;
        converged
    }

    /// With the log still: wait until the views and the gateway have caught up with it,
    /// stop the views (a closed file can be digested), compare with a clean rebuild, and
    /// check the log for `acked` and the feeds; then start the views again (if `restart`).
    pub async fn converge(
        &mut self,
        acked: &std::collections::HashSet<uuid::Uuid>,
        unexpected: u64,
        restart: bool,
    ) -> Result<Converged> {
        let end = self.log.catch_up().await?;
        let timeout = self.options.timeout;
        let views = self.views.as_mut().context("the views are not running")?;
        let mut admin = v1::views_admin_client::ViewsAdminClient::new(views.channel().await?);
        let deadline = Instant::now() + timeout;
        loop {
            let request = carewoven_access::grpc::with_token(
                tonic::Request::new(v1::ViewsStatusRequest {}),
                &carewoven_testkit::governance_token(),
            );
            if let Ok(s) = admin.status(request).await
                && s.get_ref().log_position >= end
            {
                break;
            }
            views.check_running()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the views did not reach the log's end ({end}) within {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        // The gateway has caught up once the practice's feed holds the last event about a
        // person (every such event is owed to it); if it never does, the check says what
        // is missing.
        let owed_last = self.log.person_events.last().copied().unwrap_or(0);
        let deadline = Instant::now() + timeout;
        loop {
            self.feeds.catch_up().await?;
            if self.feeds.max_position(LOAD_ORG) >= owed_last || Instant::now() > deadline {
                break;
            }
            if let Some(g) = self.gateway.as_mut() {
                g.check_running()?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let instance = self.views.take().context("views")?.stop().await?;
        let file = self.spawner.views_file(&instance);
        let digest = check::views_digest(&file)?;
        if restart {
            self.views = Some(self.spawner.start(instance).await?);
        }
        Ok(Converged {
            log: self.log.check(acked),
            feeds: self.feeds.check(LOAD_ORG, &self.log.person_events),
            views: digest,
            reference: self.log.reference_digest()?,
            unexpected,
        })
    }

    /// Stop everything; keep the directory if asked (and say where).
    pub async fn finish(mut self) -> Result<()> {
        for service in [self.gateway.take(), self.views.take()]
            .into_iter()
            .chain(self.commands.iter_mut().map(Option::take))
            .flatten()
        {
            service.stop().await?;
        }
        for node in &mut self.nodes {
            node.kill9();
        }
        // The directory goes (or is kept, with `keep`) when the world is dropped.
        Ok(())
    }

    /// The run's directory (logs in `logs/`).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.root.as_ref().map(|r| r.path())
    }

    /// A log file's last lines, for failures.
    pub fn nats_log_tail(&self, i: usize) -> String {
        procs::tail(self.nodes[i].log(), 20)
    }
}

impl Drop for World {
    /// A run that failed keeps its directory when asked to (its logs say why).
    fn drop(&mut self) {
        if let Some(root) = self.root.take()
            && self.options.keep
        {
            eprintln!("  kept {}", root.keep().display());
        }
    }
}
