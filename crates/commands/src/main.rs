//! carewoven-commands: parse configuration, set up tracing, bind, run.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Carewoven command service (gRPC)")]
struct Cli {
    /// Address to listen on for gRPC.
    #[arg(
        long,
        env = "CAREWOVEN_COMMANDS_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    listen: String,
    /// Log as JSON lines.
    #[arg(long, env = "CAREWOVEN_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    config: carewoven_commands::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    carewoven_commands::run(listener, cli.config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight commands");
}
