//! `just faults`: the fault-injection suite (`carewoven_bench::faults`). Prints one line per
//! scenario, with detail lines indented below:
//!
//! - `faults-cluster: acked=<n> lost=<n> duplicated=<n> unavailable_s=<s>`
//! - `faults-broker: acked=<n> lost=<n>`
//! - `faults-services: rounds=<n> mismatches=<n>`
//! - `faults-disk: mode=<loopback|max_file_store> acked=<n> lost=<n> refused=<code> recovered_s=<s>`
//!
//! and exits non-zero if anything acknowledged was lost or duplicated, a round mismatched,
//! or a refusal was unclear. `faults serve <commands|views|gateway>` runs one service from
//! the libraries (same flags and environment as the release binaries): the short version in
//! the default test run uses it, since the release binaries are not built there.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carewoven_bench::faults::{self, Options, disk::Mode, procs::Binaries};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    about = "Fault injection: cluster node kills and pauses, broker and service crashes, a full disk"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenarios to run (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Commands acknowledged under load in each phase.
    #[arg(long, default_value_t = 300)]
    phase_acks: u64,
    /// Service kill rounds.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Broker kills.
    #[arg(long, default_value_t = 3)]
    broker_kills: usize,
    /// Seconds a cluster node stays paused (longer than the election timeout).
    #[arg(long, default_value_t = 12)]
    pause_secs: u64,
    /// How the disk fills.
    #[arg(long, value_enum, default_value_t = DiskMode::Auto)]
    disk: DiskMode,
    /// Seed of the random moments.
    #[arg(long, default_value_t = 13)]
    seed: u64,
    /// Longest wait for any recovery.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// The release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Run the services from this binary (`faults serve`) instead of the release binaries.
    #[arg(long)]
    self_hosted: bool,
    /// Where the stores, state and logs go.
    #[arg(long, env = "TMPDIR", default_value = "/tmp")]
    dir: PathBuf,
    /// Keep each scenario's directory.
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Cluster,
    Broker,
    Services,
    Disk,
}

#[derive(Clone, Copy, ValueEnum)]
enum DiskMode {
    Auto,
    Loopback,
    Limit,
}

// Parsed once at start-up: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run one service (what the release binary runs, from the same libraries).
    #[command(hide = true)]
    Serve {
        #[command(subcommand)]
        service: Service,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Service {
    Commands {
        #[arg(long, env = "CAREWOVEN_COMMANDS_LISTEN")]
        listen: String,
        #[command(flatten)]
        config: carewoven_commands::Config,
    },
    Views {
        #[arg(long, env = "CAREWOVEN_VIEWS_LISTEN")]
        listen: String,
        #[command(flatten)]
        config: carewoven_views::Config,
    },
    Gateway {
        #[arg(long, env = "CAREWOVEN_GATEWAY_LISTEN")]
        listen: String,
        #[command(flatten)]
        config: carewoven_gateway::Config,
    },
}

async fn serve(service: Service) -> Result<()> {
    carewoven_service::init_tracing(false);
    let shutdown = carewoven_service::shutdown_signal();
    let bind = |listen: String| async move {
        tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))
    };
    match service {
        Service::Commands { listen, config } => {
            carewoven_commands::run(bind(listen).await?, config, shutdown).await
        }
        Service::Views { listen, config } => {
            carewoven_views::run(bind(listen).await?, config, shutdown).await
        }
        Service::Gateway { listen, config } => {
            carewoven_gateway::run(bind(listen).await?, config, shutdown).await
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Serve { service }) = cli.command {
        return serve(service).await;
    }
    let args = cli.run;
    let binaries = if args.self_hosted {
        Binaries::SelfHosted(std::env::current_exe()?)
    } else {
        let dir = if args.bin_dir.is_absolute() {
            args.bin_dir.clone()
        } else {
            carewoven_testkit::repo_root().join(&args.bin_dir)
        };
        Binaries::Release(dir)
    };
    let options = Options {
        binaries,
        workers: args.workers,
        phase_acks: args.phase_acks,
        rounds: args.rounds,
        broker_kills: args.broker_kills,
        pause: Duration::from_secs(args.pause_secs),
        seed: args.seed,
        dir: args.dir,
        keep: args.keep,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let wanted = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    let mut failed = Vec::new();
    let started = Instant::now();
    println!(
        "faults: {} workers, {} acknowledged commands per phase, {:?}",
        options.workers, options.phase_acks, options.binaries
    );
    if wanted(Scenario::Cluster) {
        let t = Instant::now();
        let r = faults::cluster::run(&options)
            .await
            .context("the cluster scenario")?;
        println!(
            "{}\n{}\n  ({:.0} s)",
            r.line(),
            r.detail(),
            t.elapsed().as_secs_f64()
        );
        if !r.converged.ok() || r.converged.log.duplicated > 0 {
            failed.push("cluster");
        }
    }
    if wanted(Scenario::Broker) {
        let t = Instant::now();
        let r = faults::broker::run(&options)
            .await
            .context("the broker scenario")?;
        println!(
            "{}\n{}\n  ({:.0} s)",
            r.line(),
            r.detail(),
            t.elapsed().as_secs_f64()
        );
        if !r.converged.ok() {
            failed.push("broker");
        }
    }
    if wanted(Scenario::Services) {
        let t = Instant::now();
        let r = faults::services::run(&options)
            .await
            .context("the services scenario")?;
        println!(
            "{}\n{}\n  ({:.0} s)",
            r.line(),
            r.detail(),
            t.elapsed().as_secs_f64()
        );
        if r.mismatches > 0 {
            failed.push("services");
        }
    }
    if wanted(Scenario::Disk) {
        let mode = match args.disk {
            DiskMode::Auto => Mode::Auto,
            DiskMode::Loopback => Mode::Loopback,
            DiskMode::Limit => Mode::Limit,
        };
        let t = Instant::now();
        let r = faults::disk::run(&options, mode)
            .await
            .context("the disk scenario")?;
        println!(
            "{}\n{}\n  ({:.0} s)",
            r.line(),
            r.detail(),
            t.elapsed().as_secs_f64()
        );
        if !r.converged.ok() || !r.refusal_clear() {
            failed.push("disk");
        }
    }
    println!(
        "faults: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}
