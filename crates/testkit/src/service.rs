//! Starting a Carewoven service in this process and waiting until it is healthy.
//!
//! Every service's `run(listener, config, shutdown)` is started the same way: bind a
//! loopback port first (so a client's connection waits for the server rather than failing),
//! spawn `run`, then watch the gRPC health service until the service's name is `SERVING`,
//! within [`START_DEADLINE`]. No polling and no sleeps: the health `Watch` stream says when
//! the status changes, and the service ending while it starts ends the wait at once with its
//! error.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long a service is given to become healthy (it connects to NATS, opens its streams and
/// catches its access index up with the log).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// Wait until the health service at `addr` says `service` is `SERVING`, watching its status
/// (not polling), for at most `timeout`. A name the server does not know fails at once.
pub async fn wait_serving(addr: SocketAddr, service: &str, timeout: Duration) -> Result<()> {
    let watch = async {
        let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
        let mut updates = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .with_context(|| format!("watching the health of {service}"))?
            .into_inner();
        while let Some(status) = updates.message().await? {
            if status.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        bail!("the health stream of {service} ended before it was serving")
    };
    tokio::time::timeout(timeout, watch)
        .await
        .with_context(|| format!("{service} did not become healthy within {timeout:?}"))?
}

/// A service running in this process on a loopback port, until [`Running::stop`] (or the
/// test's runtime ends).
pub struct Running {
    pub addr: SocketAddr,
    service: String,
    channel: Channel,
    stop: CancellationToken,
    task: JoinHandle<Result<()>>,
}

impl Running {
    /// Bind a loopback port, spawn `run(listener, stop)` and wait until the health service
    /// says `service` (its gRPC name, e.g. `carewoven.v1.QueryService`) is serving.
    pub async fn start<F, Fut>(service: &str, run: F) -> Result<Self>
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let mut task = tokio::spawn(run(listener, stop.clone()));
        tokio::select! {
            ready = wait_serving(addr, service, START_DEADLINE) => {
                if let Err(e) = ready {
                    stop.cancel();
                    return Err(e);
                }
            }
            ended = &mut task => {
                let error = match ended {
                    Ok(Ok(())) => anyhow::anyhow!("{service} stopped while starting"),
                    Ok(Err(e)) => e.context(format!("{service} failed while starting")),
                    Err(e) => anyhow::anyhow!("{service} panicked while starting: {e}"),
                };
                return Err(error);
            }
        }
        Ok(Running {
            addr,
            service: service.to_owned(),
            channel: Channel::from_shared(format!("http://{addr}"))?.connect_lazy(),
            stop,
            task,
        })
    }

    /// A channel to the service (connected on first use; clones share the connection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Whether `run` has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ask the service to stop and wait until `run` has returned, with its result.
    pub async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.task
            .await
            .with_context(|| format!("{} panicked", self.service))?
            .with_context(|| format!("{} failed", self.service))
    }
}
