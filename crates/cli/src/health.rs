//! `wait-ready`: poll grpc.health.v1 until the command service reports SERVING.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::rpc::endpoint;

/// The service name checked first; the server's overall status ("") is the fallback when the
/// server does not know that name.
pub const SERVICE: &str = "carewoven.v1.CommandService";

const POLL_INTERVAL: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Ready {
    pub service: &'static str,
    pub waited: Duration,
    pub attempts: u32,
}

/// Poll until SERVING or until `deadline` has passed.
pub async fn wait_ready(server: &str, deadline: Duration) -> Result<Ready> {
    let start = Instant::now();
    let until = start + deadline;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = until.saturating_duration_since(Instant::now());
        let probe_timeout = remaining.min(PROBE_TIMEOUT).max(Duration::from_millis(50));
        let outcome = match tokio::time::timeout(probe_timeout, probe(server, probe_timeout)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {probe_timeout:?}")),
        };
        let last = match outcome {
            Ok(service) => {
                return Ok(Ready {
                    service,
                    waited: start.elapsed(),
                    attempts,
                });
            }
            Err(why) => why,
        };
        let remaining = until.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            bail!(
                "{server} was not ready within {}s ({attempts} attempts; last: {last})",
                deadline.as_secs()
            );
        }
        tokio::time::sleep(remaining.min(POLL_INTERVAL)).await;
    }
}

/// One check: the service name that reported SERVING, or why not.
async fn probe(server: &str, timeout: Duration) -> Result<&'static str, String> {
    let mut client = health_client(server, timeout).await?;
    for service in [SERVICE, ""] {
        match check_with(&mut client, service).await {
            Ok(ServingStatus::Serving) => {
                return Ok(if service.is_empty() {
                    "(server)"
                } else {
                    SERVICE
                });
            }
            Ok(status) => {
                let name = if service.is_empty() {
                    "server"
                } else {
                    service
                };
                return Err(format!("{name} is {}", status.as_str_name()));
            }
            // The server does not know the service name: fall back to the overall status.
            Err(status) if status.code() == Code::NotFound && !service.is_empty() => {}
            Err(status) => return Err(format!("health check failed: {status}")),
        }
    }
    Err("health service knows neither the command service nor the server".to_owned())
}

async fn health_client(server: &str, timeout: Duration) -> Result<HealthClient<Channel>, String> {
    let channel = endpoint(server, timeout)
        .map_err(|e| format!("{e:#}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {}", crate::output::chain(&e)))?;
    Ok(HealthClient::new(channel))
}

async fn check_with(
    client: &mut HealthClient<Channel>,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    Ok(client.check(request).await?.into_inner().status())
}

/// The health `service` at `server` reports (`SERVING`, `NOT_SERVING` ...), or why it could
/// not be asked.
pub async fn check(
    server: &str,
    service: &str,
    timeout: Duration,
) -> Result<ServingStatus, String> {
    let mut client = health_client(server, timeout).await?;
    check_with(&mut client, service).await.map_err(|s| {
        format!(
            "health check failed: {}: {}",
            crate::output::code_name(s.code()),
            s.message()
        )
    })
}
