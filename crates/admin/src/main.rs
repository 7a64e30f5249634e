//! `carewoven-admin backup | restore | verify` (deploy/README.md, "Backup and restore").

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use carewoven_admin::{Connection, STREAMS, manifest};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "carewoven-admin",
    version,
    about = "Backup and restore of Carewoven's JetStream streams (the event log, the audit, the partners' feeds)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot the streams into a new directory: one file per stream and manifest.json
    Backup {
        #[command(flatten)]
        nats: NatsArgs,
        /// The directory to write (created; must not hold a backup already)
        #[arg(long)]
        out: PathBuf,
        /// The streams, in the order they are taken (the event log last)
        #[arg(long, value_delimiter = ',', default_values_t = STREAMS.map(String::from))]
        streams: Vec<String>,
        /// Leave the streams' consumers (the partners' durable consumers on CW_FEED) out
        #[arg(long)]
        no_consumers: bool,
    },
    /// Check a backup's files, restore it onto a server without its streams, and check
    /// that each restored stream's state is the manifest's
    Restore {
        #[command(flatten)]
        nats: NatsArgs,
        /// The backup directory
        #[arg(long)]
        from: PathBuf,
    },
    /// Check a backup's files against its manifest (sizes and SHA-256), without a server
    Verify {
        /// The backup directory
        dir: PathBuf,
    },
}

#[derive(Args)]
struct NatsArgs {
    /// NATS server URL
    #[arg(
        long,
        env = "CAREWOVEN_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// The backup identity's nkey seed (SU...; `carectl keys nats` writes backup.nk)
    #[arg(long, env = "CAREWOVEN_NATS_NKEY_SEED", hide_env_values = true)]
    nats_nkey_seed: Option<String>,
    /// Seconds to wait for each answer of the server
    #[arg(long, env = "CAREWOVEN_NATS_TIMEOUT_SECS", default_value_t = 30)]
    timeout_secs: u64,
}

impl NatsArgs {
    fn connection(self) -> Connection {
        Connection {
            url: self.nats_url,
            nkey_seed: self.nats_nkey_seed,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carewoven-admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    match command {
        Command::Backup {
            nats,
            out,
            streams,
            no_consumers,
        } => {
            let report =
                carewoven_admin::backup(&nats.connection(), &out, &streams, !no_consumers).await?;
            let m = &report.manifest;
            let bytes: u64 = m.streams.iter().map(|s| s.bytes).sum();
            println!(
                "backed up {} stream(s) from nats-server {} into {} ({})",
                m.streams.len(),
                m.server.version,
                report.dir.display(),
                rate(bytes, started.elapsed())
            );
            for s in &m.streams {
                println!(
                    "  {:<10} {:>10} messages  seq {}..{}  {} bytes  {}  sha256 {}",
                    s.name,
                    s.state.messages,
                    s.state.first_seq,
                    s.state.last_seq,
                    s.bytes,
                    s.file,
                    s.sha256
                );
            }
        }
        Command::Restore { nats, from } => {
            let restored = carewoven_admin::restore(&nats.connection(), &from).await?;
            let bytes: u64 = manifest::Manifest::read(&from)?
                .streams
                .iter()
                .map(|s| s.bytes)
                .sum();
            println!(
                "restored {} stream(s) from {}; each matches the manifest ({})",
                restored.len(),
                from.display(),
                rate(bytes, started.elapsed())
            );
            for s in &restored {
                println!(
                    "  {:<10} {:>10} messages  seq {}..{}  created anew {}",
                    s.name, s.state.messages, s.state.first_seq, s.state.last_seq, s.created
                );
            }
        }
        Command::Verify { dir } => {
            let (m, checked) = manifest::verify(&dir)?;
            println!(
                "{}: {} file(s) match the manifest (taken {} from nats-server {} by {})",
                dir.display(),
                checked.len(),
                m.finished_at,
                m.server.version,
                m.tool
            );
            for c in &checked {
                println!(
                    "  {:<10} {} ({} bytes)",
                    c.stream,
                    c.file.display(),
                    c.bytes
                );
            }
        }
    }
    Ok(())
}

/// Bytes of snapshot in `elapsed`, for the operator's record.
fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!(
        "{bytes} bytes of snapshots in {secs:.2} s, {:.1} MB/s",
        bytes as f64 / secs / 1e6
    )
}
