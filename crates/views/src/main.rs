//! carewoven-views: serve the coordinated views, rebuild them, or fingerprint a views file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use carewoven_proto::v1::{self, views_admin_client::ViewsAdminClient};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Carewoven views service (redb projections, gRPC queries)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Consume the event log and serve the views.
    Serve {
        #[arg(
            long,
            env = "CAREWOVEN_VIEWS_LISTEN",
            default_value = "127.0.0.1:50052"
        )]
        listen: String,
        /// Log as JSON lines.
        #[arg(long, env = "CAREWOVEN_LOG_JSON")]
        log_json: bool,
        #[command(flatten)]
        config: carewoven_views::Config,
    },
    /// Rebuild a running service's views from the start of the log into a fresh file and
    /// swap it in, showing progress. Ctrl-C interrupts; running it again resumes.
    Rebuild {
        #[arg(
            long,
            env = "CAREWOVEN_VIEWS_SERVER",
            default_value = "http://127.0.0.1:50052"
        )]
        server: String,
        /// Start again from the beginning instead of resuming an interrupted rebuild.
        #[arg(long)]
        fresh: bool,
        /// A bearer token with the governance role (only governance may rebuild).
        #[arg(long, env = "CAREWOVEN_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Print a digest of every view table of a (not running) views file.
    Digest { file: PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            listen,
            log_json,
            config,
        } => {
            carewoven_service::init_tracing(log_json);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            carewoven_views::run(listener, config, carewoven_service::shutdown_signal()).await
        }
        Command::Rebuild {
            server,
            fresh,
            token,
        } => rebuild(&server, fresh, &token).await,
        Command::Digest { file } => {
            let db = carewoven_views::store::open(&file)?;
            println!(
                "{}  position={}",
                carewoven_views::store::digest(&db)?,
                carewoven_views::store::position(&db)?
            );
            Ok(())
        }
    }
}

async fn rebuild(server: &str, fresh: bool, token: &str) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(server.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let mut admin = ViewsAdminClient::new(channel);
    let mut progress = admin
        .rebuild(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::RebuildRequest { fresh }),
            token,
        ))
        .await
        .context("starting the rebuild")?
        .into_inner();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events  {msg}")
            .context("progress bar template")?,
    );
    while let Some(p) = progress.message().await.context("rebuild failed")? {
        bar.set_length(p.target_position);
        bar.set_position(p.applied_position);
        bar.set_message(format!(
            "{:.0} events/s, ETA {:.0} s",
            p.events_per_second, p.eta_seconds
        ));
        if p.swapped {
            bar.finish_and_clear();
            println!(
                "rebuilt views swapped in at log position {} ({:.0} events/s)",
                p.applied_position, p.events_per_second
            );
            return Ok(());
        }
    }
    anyhow::bail!("the rebuild ended without swapping in the new file")
}
