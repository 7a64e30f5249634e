//! carewoven-gateway: parse configuration, set up tracing, bind, run.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Carewoven partner-feed gateway (gRPC and NATS)")]
struct Cli {
    /// Address to listen on for gRPC.
    #[arg(
        long,
        env = "CAREWOVEN_GATEWAY_LISTEN",
        default_value = "127.0.0.1:50053"
    )]
    listen: String,
    /// Log as JSON lines.
    #[arg(long, env = "CAREWOVEN_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    config: carewoven_gateway::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    carewoven_service::init_tracing(cli.log_json);
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    carewoven_gateway::run(listener, cli.config, carewoven_service::shutdown_signal()).await
}
