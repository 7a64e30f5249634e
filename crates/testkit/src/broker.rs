//! The NATS identities of `deploy/accounts.conf` for tests of the shipped configurations:
//! fresh nkey pairs per test (public keys to the server, each seed to its service), and a
//! stock async-nats client that records what the server refused it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::{Client, Event, ServerError};
use tokio::sync::mpsc;

use crate::{ConfiguredServer, free_port, repo_root};

/// The identities, as `carectl keys nats` makes them (`CW_<NAME>` accounts).
pub const IDENTITIES: [&str; 6] = ["commands", "views", "analyst", "gateway", "ops", "backup"];

/// How long to wait for the server to say something it must say.
const WAIT: Duration = Duration::from_secs(10);

/// One fresh nkey pair per identity.
pub struct Identities {
    pairs: Vec<(&'static str, nkeys::KeyPair)>,
}

impl Default for Identities {
    fn default() -> Self {
        Self::new()
    }
}

impl Identities {
    pub fn new() -> Self {
        Identities {
            pairs: IDENTITIES
                .iter()
                .map(|&name| (name, nkeys::KeyPair::new_user()))
                .collect(),
        }
    }

    /// The seed of `name` (`SU...`), for its service.
    pub fn seed(&self, name: &str) -> String {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, pair)| pair.seed().ok())
            .unwrap_or_else(|| panic!("no identity {name}"))
    }

    /// The public keys as the configurations read them (`CAREWOVEN_NATS_<NAME>_NKEY`).
    pub fn env(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|(name, pair)| {
                (
                    format!("CAREWOVEN_NATS_{}_NKEY", name.to_ascii_uppercase()),
                    pair.public_key(),
                )
            })
            .collect()
    }

    /// A stock client connected as `name`.
    pub async fn connect(&self, name: &str, url: &str) -> Result<Watched> {
        Watched::connect(async_nats::ConnectOptions::with_nkey(self.seed(name)), url)
            .await
            .with_context(|| format!("connecting as {name}"))
    }
}

/// `deploy/nats-server.conf` on a free port with `ids`' public keys.
pub fn single_node(ids: &Identities) -> Result<ConfiguredServer> {
    let port = free_port()?;
    let mut env = ids.env();
    env.push(("CAREWOVEN_NATS_PORT".into(), port.to_string()));
    ConfiguredServer::start(&repo_root().join("deploy/nats-server.conf"), &env, port)
}

/// A client and the errors the server sent it (`-ERR`), in order.
pub struct Watched {
    pub client: Client,
    rx: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Watched {
    pub async fn connect(options: async_nats::ConnectOptions, url: &str) -> Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = options
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let Event::ServerError(ServerError::Other(error)) = event {
                        let _ = tx.send(error);
                    }
                }
            })
            .connect(url)
            .await?;
        Ok(Watched {
            client,
            rx,
            seen: Vec::new(),
        })
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        let mut js = async_nats::jetstream::new(self.client.clone());
        js.set_timeout(Duration::from_secs(5));
        js
    }

    /// Wait until the server has said `needle`.
    pub async fn expect(&mut self, needle: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.seen.iter().any(|e| e.contains(needle)) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(error)) => self.seen.push(error),
                Ok(None) => bail!("the connection ended before the server said {needle:?}"),
                Err(_) => bail!(
                    "the server did not say {needle:?} within {WAIT:?}; it said {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Wait until the server has refused a publish to `subject`.
    pub async fn publish_refused(&mut self, subject: &str) -> Result<()> {
        self.expect(&format!(
            "Permissions Violation for Publish to \"{subject}\""
        ))
        .await
    }

    /// Every error the server has sent so far.
    pub fn drain(&mut self) -> Vec<String> {
        while let Ok(error) = self.rx.try_recv() {
            self.seen.push(error);
        }
        self.seen.clone()
    }
}

/// Lines of a server log that report a refusal (permissions, authorization).
pub fn violations(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Violation") || l.contains("authentication error"))
        .collect()
}

/// Client and route ports of a three-node cluster on loopback (`deploy/cluster/`).
pub struct ClusterPorts {
    pub clients: Vec<u16>,
    pub routes: Vec<u16>,
}

impl ClusterPorts {
    /// Six distinct free ports: all six listeners are held until each has its port, since
    /// one free port after another may be the same port twice (seen: a duplicate route).
    pub fn new() -> Result<Self> {
        let held: Vec<std::net::TcpListener> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()?;
        drop(held);
        Ok(ClusterPorts {
            clients: ports[..3].to_vec(),
            routes: ports[3..].to_vec(),
        })
    }

    /// The environment of a node that requires and presents the route credentials
    /// `user`/`password` (in the route URLs, as deploy/cluster/n1.conf says).
    pub fn env(&self, ids: &Identities, user: &str, password: &str) -> Vec<(String, String)> {
        let mut env = ids.env();
        env.push(("CAREWOVEN_NATS_ROUTE_USER".into(), user.into()));
        env.push(("CAREWOVEN_NATS_ROUTE_PASSWORD".into(), password.into()));
        for i in 0..3 {
            let n = i + 1;
            env.push((
                format!("CAREWOVEN_NATS_PORT_{n}"),
                self.clients[i].to_string(),
            ));
            env.push((
                format!("CAREWOVEN_NATS_ROUTE_PORT_{n}"),
                self.routes[i].to_string(),
            ));
            env.push((
                format!("CAREWOVEN_NATS_ROUTE_{n}"),
                format!(
                    "nats-route://{user}:{password}@127.0.0.1:{}",
                    self.routes[i]
                ),
            ));
        }
        env
    }

    /// Start node `n` (1, 2 or 3) of `deploy/cluster/` with `env`.
    pub fn start(&self, n: usize, env: &[(String, String)]) -> Result<ConfiguredServer> {
        ConfiguredServer::start(
            &repo_root().join(format!("deploy/cluster/n{n}.conf")),
            env,
            self.clients[n - 1],
        )
    }
}
